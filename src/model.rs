//! Domain types shared by every layer. No I/O here.

use std::fmt;

/// Normalised severity, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Rank used for ordering in SQL (critical = 4 ... info = 0).
    pub fn rank(self) -> i32 {
        self as i32
    }

    /// Parse the many spellings scanners use ("HIGH", "Moderate", "Negligible", "error" ...).
    pub fn parse_loose(s: &str) -> Option<Severity> {
        let t = s.trim().to_ascii_lowercase();
        Some(match t.as_str() {
            "critical" | "crit" | "urgent" | "4" | "very high" => Severity::Critical,
            "high" | "important" | "error" | "serious" | "3" => Severity::High,
            "medium" | "moderate" | "warning" | "warn" | "2" => Severity::Medium,
            "low" | "minor" | "note" | "1" => Severity::Low,
            "info" | "informational" | "information" | "none" | "negligible" | "log" | "0"
            | "unknown" | "debug" | "untriaged" => Severity::Info,
            _ => return None,
        })
    }

    /// Severity band of a CVSS base score (v3 bands).
    pub fn from_cvss(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Info
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Vulnerability,
    Misconfiguration,
    Secret,
    Code,
    Web,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Vulnerability => "vulnerability",
            Category::Misconfiguration => "misconfiguration",
            Category::Secret => "secret",
            Category::Code => "code",
            Category::Web => "web",
        }
    }
    pub fn parse(s: &str) -> Option<Category> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "vulnerability" | "vuln" => Category::Vulnerability,
            "misconfiguration" | "misconfig" | "config" => Category::Misconfiguration,
            "secret" => Category::Secret,
            "code" | "sast" => Category::Code,
            "web" | "dast" => Category::Web,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssetKind {
    Host,
    ContainerImage,
    CloudResource,
    Repository,
    WebApp,
    K8sWorkload,
    Package,
}

impl AssetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AssetKind::Host => "host",
            AssetKind::ContainerImage => "container_image",
            AssetKind::CloudResource => "cloud_resource",
            AssetKind::Repository => "repository",
            AssetKind::WebApp => "web_app",
            AssetKind::K8sWorkload => "k8s_workload",
            AssetKind::Package => "package",
        }
    }
    pub fn parse(s: &str) -> Option<AssetKind> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "host" | "server" | "vm" => AssetKind::Host,
            "container_image" | "image" | "container" => AssetKind::ContainerImage,
            "cloud_resource" | "cloud" => AssetKind::CloudResource,
            "repository" | "repo" => AssetKind::Repository,
            "web_app" | "webapp" | "web" => AssetKind::WebApp,
            "k8s_workload" | "workload" | "k8s" => AssetKind::K8sWorkload,
            "package" => AssetKind::Package,
            _ => return None,
        })
    }
}

/// Kinds of identity a tool can give for an asset. Two records that share any identifier are one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKind {
    Hostname,
    Fqdn,
    Ip,
    CloudId,
    ImageDigest,
    ImageRef,
    RepoUrl,
    WebUrl,
    Workload,
    Name,
}

impl IdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Hostname => "hostname",
            IdKind::Fqdn => "fqdn",
            IdKind::Ip => "ip",
            IdKind::CloudId => "cloud_id",
            IdKind::ImageDigest => "image_digest",
            IdKind::ImageRef => "image_ref",
            IdKind::RepoUrl => "repo_url",
            IdKind::WebUrl => "web_url",
            IdKind::Workload => "workload",
            IdKind::Name => "name",
        }
    }
}

/// An asset as one report describes it.
#[derive(Debug, Clone, Default)]
pub struct RawAsset {
    pub kind: Option<AssetKind>,
    pub name: String,
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
    pub ips: Vec<String>,
    pub os: Option<String>,
    pub cloud_provider: Option<String>,
    pub account: Option<String>,
    pub region: Option<String>,
    pub tags: Vec<String>,
    /// Extra identifiers (cloud id, digest, repo url...). Hostname, FQDN and IPs are added from the fields above.
    pub ids: Vec<(IdKind, String)>,
}

impl RawAsset {
    pub fn named(kind: AssetKind, name: impl Into<String>) -> Self {
        RawAsset {
            kind: Some(kind),
            name: name.into(),
            ..Default::default()
        }
    }

    /// All identifiers, normalised (lower-case, trimmed), hostname/FQDN/IP included.
    pub fn identifiers(&self) -> Vec<(IdKind, String)> {
        let mut out: Vec<(IdKind, String)> = Vec::new();
        fn add(out: &mut Vec<(IdKind, String)>, k: IdKind, v: &str) {
            let v = v.trim().trim_end_matches('.').to_ascii_lowercase();
            if !v.is_empty() && !out.iter().any(|(k2, v2)| *k2 == k && *v2 == v) {
                out.push((k, v));
            }
        }
        let push = |out: &mut Vec<(IdKind, String)>, k: IdKind, v: &str| add(out, k, v);
        if let Some(h) = &self.hostname {
            push(&mut out, IdKind::Hostname, h);
        }
        if let Some(f) = &self.fqdn {
            push(&mut out, IdKind::Fqdn, f);
        }
        for ip in &self.ips {
            push(&mut out, IdKind::Ip, ip);
        }
        for (k, v) in &self.ids {
            push(&mut out, *k, v);
        }
        if out.is_empty() && !self.name.trim().is_empty() {
            push(&mut out, IdKind::Name, &self.name);
        }
        out
    }
}

/// What the tool says about the finding's applicability (VEX and scanner statuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applicability {
    Affected,
    NotAffected,
    FalsePositive,
}

/// A finding as one report gives it, normalised but not yet merged.
#[derive(Debug, Clone)]
pub struct RawFinding {
    /// Index of the asset in this report (returned by `Sink::asset`).
    pub asset: u32,
    /// The tool's own identifier: CVE, GHSA, plugin id, QID or rule id.
    pub vuln_id: String,
    pub cves: Vec<String>,
    pub aliases: Vec<String>,
    pub cwes: Vec<String>,
    pub title: String,
    pub description: Option<String>,
    pub severity: Severity,
    pub raw_severity: String,
    pub cvss_score: Option<f64>,
    pub cvss_vector: Option<String>,
    pub category: Category,
    pub package: Option<String>,
    pub installed_version: Option<String>,
    pub fixed_version: Option<String>,
    pub solution: Option<String>,
    pub port: Option<i32>,
    pub protocol: Option<String>,
    pub location: Option<String>,
    pub applicability: Applicability,
    pub exploit_available: Option<bool>,
    /// The tool's raw record id (e.g. pluginID@port, QID, result id), kept on the detection.
    pub raw_id: String,
    /// The buffers of the optional texts while they are None, for a finding reused by a parser (see
    /// `Sink::blank`): a report's findings then pass through a few thousand findings whose strings are
    /// written over, rather than allocating (and freeing on another thread) a dozen strings each.
    spare: Spare,
}

/// Buffers kept by a reused `RawFinding`, one per optional text.
#[derive(Debug, Clone, Default)]
struct Spare {
    description: String,
    cvss_vector: String,
    package: String,
    installed_version: String,
    fixed_version: String,
    solution: String,
    protocol: String,
    location: String,
}

/// Sets `slot` to `v` written into `spare`'s buffer.
fn put(slot: &mut Option<String>, spare: &mut String, v: &str) {
    put_parts(slot, spare, &[v]);
}

/// Sets `slot` to `parts` written one after another into `spare`'s buffer (no string made for them).
fn put_parts(slot: &mut Option<String>, spare: &mut String, parts: &[&str]) {
    let mut b = std::mem::take(spare);
    b.clear();
    for p in parts {
        b.push_str(p);
    }
    *slot = Some(b);
}

/// Empties `slot`, keeping its buffer in `spare`.
fn keep(slot: &mut Option<String>, spare: &mut String) {
    if let Some(b) = slot.take() {
        *spare = b;
    }
}

/// `set_description(v)` and the like: the optional text set to `v`, in the finding's spare buffer.
macro_rules! setters {
    ($($field:ident $set:ident),*) => {
        impl RawFinding {
            $(
                pub fn $set(&mut self, v: &str) {
                    put(&mut self.$field, &mut self.spare.$field, v);
                }
            )*
        }
    };
}

setters!(description set_description, cvss_vector set_cvss_vector, package set_package, installed_version set_installed_version,
    fixed_version set_fixed_version, solution set_solution, protocol set_protocol, location set_location);

impl RawFinding {
    /// The solution set to `parts` one after another ("Upgrade ", a package, " to ", a version), in the
    /// finding's spare buffer.
    pub fn set_solution_parts(&mut self, parts: &[&str]) {
        put_parts(&mut self.solution, &mut self.spare.solution, parts);
    }

    pub fn new(asset: u32, vuln_id: impl Into<String>, title: impl Into<String>, category: Category) -> Self {
        RawFinding {
            asset,
            vuln_id: vuln_id.into(),
            cves: Vec::new(),
            aliases: Vec::new(),
            cwes: Vec::new(),
            title: title.into(),
            description: None,
            severity: Severity::Info,
            raw_severity: String::new(),
            cvss_score: None,
            cvss_vector: None,
            category,
            package: None,
            installed_version: None,
            fixed_version: None,
            solution: None,
            port: None,
            protocol: None,
            location: None,
            applicability: Applicability::Affected,
            exploit_available: None,
            raw_id: String::new(),
            spare: Spare::default(),
        }
    }

    /// This finding made as `RawFinding::new(asset, "", "", category)` makes one, its strings and lists
    /// emptied in place and its optional texts' buffers kept for their setters.
    pub fn reset(&mut self, asset: u32, category: Category) {
        // Every field named, so that a new one cannot be left out.
        let RawFinding {
            asset: a,
            vuln_id,
            cves,
            aliases,
            cwes,
            title,
            description,
            severity,
            raw_severity,
            cvss_score,
            cvss_vector,
            category: c,
            package,
            installed_version,
            fixed_version,
            solution,
            port,
            protocol,
            location,
            applicability,
            exploit_available,
            raw_id,
            spare,
        } = self;
        *a = asset;
        *c = category;
        for s in [vuln_id, title, raw_severity, raw_id] {
            s.clear();
        }
        for l in [cves, aliases, cwes] {
            l.clear();
        }
        *severity = Severity::Info;
        *cvss_score = None;
        *port = None;
        *applicability = Applicability::Affected;
        *exploit_available = None;
        keep(description, &mut spare.description);
        keep(cvss_vector, &mut spare.cvss_vector);
        keep(package, &mut spare.package);
        keep(installed_version, &mut spare.installed_version);
        keep(fixed_version, &mut spare.fixed_version);
        keep(solution, &mut spare.solution);
        keep(protocol, &mut spare.protocol);
        keep(location, &mut spare.location);
    }
}

/// Pull every CVE id out of free text ("CVE-2021-44228, CVE-2021-45046").
pub fn extract_cves(text: &str, out: &mut Vec<String>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i + 9 <= b.len() {
        if (b[i] == b'C' || b[i] == b'c')
            && b[i + 1].eq_ignore_ascii_case(&b'V')
            && b[i + 2].eq_ignore_ascii_case(&b'E')
            && b[i + 3] == b'-'
        {
            let mut j = i + 4;
            let ys = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j - ys == 4 && j < b.len() && b[j] == b'-' {
                let ns = j + 1;
                let mut k = ns;
                while k < b.len() && b[k].is_ascii_digit() {
                    k += 1;
                }
                if k - ns >= 4 {
                    let id = format!("CVE-{}-{}", &text[ys..j], &text[ns..k]);
                    if !out.contains(&id) {
                        out.push(id);
                    }
                    i = k;
                    continue;
                }
            }
        }
        i += 1;
    }
}

/// Normalise a CWE reference ("CWE-79", "79", 79) to "CWE-79".
pub fn norm_cwe(s: &str) -> Option<String> {
    let t = s.trim();
    let digits = t
        .strip_prefix("CWE-")
        .or_else(|| t.strip_prefix("cwe-"))
        .unwrap_or(t);
    let d: String = digits.chars().take_while(|c| c.is_ascii_digit()).collect();
    if d.is_empty() {
        None
    } else {
        Some(format!("CWE-{d}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reset_finding_is_a_new_one_and_keeps_its_buffers() {
        let mut f = RawFinding::new(1, "CVE-2024-1", "openssl flaw", Category::Vulnerability);
        f.cves.push("CVE-2024-1".into());
        f.aliases.push("GHSA-xxxx".into());
        f.cwes.push("CWE-79".into());
        f.severity = Severity::High;
        f.raw_severity.push_str("HIGH");
        f.cvss_score = Some(7.5);
        f.port = Some(443);
        f.applicability = Applicability::NotAffected;
        f.exploit_available = Some(true);
        f.raw_id.push_str("img|CVE-2024-1|openssl");
        f.set_description(&"a long description ".repeat(20));
        f.set_cvss_vector("CVSS:3.1/AV:N");
        f.set_package("openssl");
        f.set_installed_version("3.0.2");
        f.set_fixed_version("3.0.3");
        f.set_solution_parts(&["Upgrade ", "openssl", " to ", "3.0.3"]);
        assert_eq!(f.solution.as_deref(), Some("Upgrade openssl to 3.0.3"));
        f.set_protocol("tcp");
        f.set_location("/usr/lib");
        let desc_cap = f.description.as_ref().unwrap().capacity();
        f.reset(7, Category::Secret);
        let mut blank = f.clone();
        blank.spare = Spare::default();
        assert_eq!(format!("{blank:?}"), format!("{:?}", RawFinding::new(7, "", "", Category::Secret)));
        // The description's buffer is written into again rather than allocated anew.
        f.set_description("short");
        assert_eq!(f.description.as_deref(), Some("short"));
        assert_eq!(f.description.as_ref().unwrap().capacity(), desc_cap);
        assert_eq!(f.package, None);
    }

    #[test]
    fn cves_from_text() {
        let mut v = Vec::new();
        extract_cves("fixes CVE-2021-44228,cve-2021-45046 and CVE-21-1 CVE-2014-0160.", &mut v);
        assert_eq!(v, vec!["CVE-2021-44228", "CVE-2021-45046", "CVE-2014-0160"]);
    }

    #[test]
    fn severity_spellings() {
        assert_eq!(Severity::parse_loose("Negligible"), Some(Severity::Info));
        assert_eq!(Severity::parse_loose("MODERATE"), Some(Severity::Medium));
        assert_eq!(Severity::from_cvss(9.8), Severity::Critical);
        assert!(Severity::Critical > Severity::High);
    }

    #[test]
    fn identifiers_normalised() {
        let mut a = RawAsset::named(AssetKind::Host, "Web01");
        a.fqdn = Some("Web01.Example.COM.".into());
        a.ips = vec!["10.0.0.5".into(), "10.0.0.5".into()];
        let ids = a.identifiers();
        assert_eq!(ids, vec![(IdKind::Fqdn, "web01.example.com".to_string()), (IdKind::Ip, "10.0.0.5".to_string())]);
    }
}
