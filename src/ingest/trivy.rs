//! Trivy JSON: legacy array (before 0.20), SchemaVersion 2, and both `trivy k8s` layouts
//! (old: ClusterName + Vulnerabilities/Misconfigurations; new: ClusterName + Resources).
//! Results are streamed one at a time.

use super::jsonstream::{number_lenient, Scanner};
use super::{nonempty, parse_time, trimmed, ParseError, ParseOptions, Sink};
use crate::model::{
    norm_cwe, Applicability, AssetKind, Category, IdKind, RawAsset, RawFinding, Severity,
};
use serde::Deserialize;
use std::io::BufRead;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TResult {
    #[serde(rename = "Target")]
    target: String,
    #[serde(rename = "Class")]
    class: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Vulnerabilities")]
    vulns: Option<Vec<TVuln>>,
    #[serde(rename = "Misconfigurations")]
    misconfigs: Option<Vec<TMisconf>>,
    #[serde(rename = "Secrets")]
    secrets: Option<Vec<TSecret>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TVuln {
    #[serde(rename = "VulnerabilityID")]
    id: String,
    #[serde(rename = "VendorIDs")]
    vendor_ids: Option<Vec<String>>,
    #[serde(rename = "PkgName")]
    pkg: Option<String>,
    #[serde(rename = "PkgPath")]
    pkg_path: Option<String>,
    #[serde(rename = "InstalledVersion")]
    installed: Option<String>,
    #[serde(rename = "FixedVersion")]
    fixed: Option<String>,
    #[serde(rename = "Status", deserialize_with = "not_affected")]
    not_affected: bool,
    #[serde(rename = "Title")]
    title: Option<String>,
    #[serde(rename = "Description")]
    description: Option<String>,
    #[serde(rename = "Severity")]
    severity: Option<String>,
    #[serde(rename = "CweIDs")]
    cwes: Option<Vec<String>>,
    #[serde(rename = "CVSS")]
    cvss: CvssPick,
}

/// Whether a string value (or a key) is `want`, read without keeping it; null is not.
fn str_is<'de, D: serde::Deserializer<'de>>(d: D, want: &'static str) -> Result<bool, D::Error> {
    struct V(&'static str);
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E>(self, v: &str) -> Result<bool, E> {
            Ok(v == self.0)
        }
        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    d.deserialize_any(V(want))
}

/// Whether a vulnerability's `Status` says the package is not affected.
fn not_affected<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    str_is(d, "not_affected")
}

/// The CVSS entry a finding takes from the `CVSS` object keyed by source: NVD's, else the first (in the
/// report's order) with a v3 score, else the first. Only that entry is kept.
#[derive(Default)]
struct CvssPick(Option<TCvss>);

impl<'de> Deserialize<'de> for CvssPick {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IsNvd(bool);
        impl<'de> Deserialize<'de> for IsNvd {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                str_is(d, "nvd").map(IsNvd)
            }
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CvssPick;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of CVSS scores by source")
            }
            fn visit_unit<E>(self) -> Result<CvssPick, E> {
                Ok(CvssPick(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<CvssPick, A::Error> {
                let (mut nvd, mut v3, mut first) = (None, None, None);
                while let Some(IsNvd(is_nvd)) = m.next_key()? {
                    let c: TCvss = m.next_value()?;
                    if is_nvd {
                        nvd = Some(c);
                    } else if v3.is_none() && c.v3.is_some() {
                        v3 = Some(c);
                    } else if first.is_none() {
                        first = Some(c);
                    }
                }
                Ok(CvssPick(nvd.or(v3).or(first)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TCvss {
    #[serde(rename = "V3Score", deserialize_with = "number_lenient")]
    v3: Option<f64>,
    #[serde(rename = "V3Vector")]
    v3v: Option<String>,
    #[serde(rename = "V2Score", deserialize_with = "number_lenient")]
    v2: Option<f64>,
    #[serde(rename = "V2Vector")]
    v2v: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TMisconf {
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "AVDID")]
    avdid: Option<String>,
    #[serde(rename = "Title")]
    title: Option<String>,
    #[serde(rename = "Description")]
    description: Option<String>,
    #[serde(rename = "Message")]
    message: Option<String>,
    #[serde(rename = "Resolution")]
    resolution: Option<String>,
    #[serde(rename = "Severity")]
    severity: Option<String>,
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "CauseMetadata")]
    cause: Option<TCause>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TCause {
    #[serde(rename = "Resource")]
    resource: Option<String>,
    #[serde(rename = "StartLine")]
    start: Option<i64>,
    #[serde(rename = "Code")]
    code: Option<TCode>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TCode {
    #[serde(rename = "Lines")]
    lines: Option<Vec<TLine>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TLine {
    #[serde(rename = "Number")]
    number: i64,
    #[serde(rename = "Content")]
    content: String,
    #[serde(rename = "Truncated")]
    truncated: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TSecret {
    #[serde(rename = "RuleID")]
    rule: String,
    #[serde(rename = "Category")]
    category: Option<String>,
    #[serde(rename = "Severity")]
    severity: Option<String>,
    #[serde(rename = "Title")]
    title: Option<String>,
    #[serde(rename = "StartLine")]
    start: Option<i64>,
    // `Match` holds the secret itself (partly masked): deliberately never read.
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TMeta {
    #[serde(rename = "ImageID")]
    image_id: Option<String>,
    #[serde(rename = "RepoDigests")]
    repo_digests: Option<Vec<String>>,
    #[serde(rename = "RepoTags")]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "RepoURL")]
    repo_url: Option<String>,
    #[serde(rename = "OS")]
    os: Option<TOs>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TOs {
    #[serde(rename = "Family")]
    family: Option<String>,
    #[serde(rename = "Name")]
    name: Option<String>,
}

/// A workload in a `trivy k8s` report (both layouts).
#[derive(Deserialize, Default)]
#[serde(default)]
struct TResource {
    #[serde(rename = "Namespace")]
    namespace: Option<String>,
    #[serde(rename = "Kind")]
    kind: Option<String>,
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "Results")]
    results: Option<Vec<TResult>>,
}

fn sev(s: Option<String>) -> (Severity, String) {
    let raw = s.unwrap_or_default();
    (Severity::parse_loose(&raw).unwrap_or(Severity::Info), raw)
}

struct Ctx<'a> {
    sink: &'a mut dyn Sink,
    artifact: Option<String>,
    artifact_type: Option<String>,
    meta: TMeta,
    cluster: Option<String>,
    asset: Option<u32>,
    hint: Option<String>,
}

impl Ctx<'_> {
    /// The report's own asset (image, repository, filesystem), created on first need.
    fn report_asset(&mut self, first_target: &str) -> u32 {
        if let Some(i) = self.asset {
            return i;
        }
        let name = self
            .hint
            .clone()
            .or_else(|| self.artifact.clone().filter(|a| !a.is_empty() && a != "."))
            .unwrap_or_else(|| first_target.split(" (").next().unwrap_or(first_target).to_string());
        let is_image = self.artifact_type.as_deref() == Some("container_image")
            || self.meta.image_id.is_some()
            || (self.artifact_type.is_none() && first_target.contains(" ("));
        let mut a = if is_image {
            let mut a = RawAsset::named(AssetKind::ContainerImage, name.clone());
            a.ids.push((IdKind::ImageRef, name.clone()));
            if let Some(id) = &self.meta.image_id {
                a.ids.push((IdKind::ImageDigest, id.clone()));
            }
            for d in self.meta.repo_digests.iter().flatten() {
                if let Some((_, dg)) = d.split_once('@') {
                    a.ids.push((IdKind::ImageDigest, dg.to_string()));
                }
            }
            for t in self.meta.repo_tags.iter().flatten() {
                a.ids.push((IdKind::ImageRef, t.clone()));
            }
            a
        } else {
            let mut a = RawAsset::named(AssetKind::Repository, name.clone());
            if let Some(u) = &self.meta.repo_url {
                a.ids.push((IdKind::RepoUrl, u.clone()));
            } else {
                a.ids.push((IdKind::Name, name.clone()));
            }
            a
        };
        if let Some(os) = &self.meta.os {
            a.os = match (&os.family, &os.name) {
                (Some(f), Some(n)) => Some(format!("{f} {n}")),
                (Some(f), None) => Some(f.clone()),
                _ => None,
            };
        }
        let i = self.sink.asset(a);
        self.asset = Some(i);
        i
    }

    fn resource(&mut self, r: TResource) {
        let ns = r.namespace.unwrap_or_default();
        let kind = r.kind.unwrap_or_default();
        let name = r.name.unwrap_or_default();
        let cluster = self.cluster.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| "cluster".into());
        let wl = if ns.is_empty() { format!("{kind}/{name}") } else { format!("{ns}/{kind}/{name}") };
        let mut a = RawAsset::named(AssetKind::K8sWorkload, wl.clone());
        a.ids.push((IdKind::Workload, format!("{cluster}/{wl}")));
        // The workload's image OS, from an OS-package target such as "registry/app:1.2 (debian 12.2)".
        a.os = r.results.iter().flatten().find_map(|res| {
            if res.class.as_deref() != Some("os-pkgs") {
                return None;
            }
            let (_, rest) = res.target.rsplit_once(" (")?;
            rest.strip_suffix(')').map(str::to_string).filter(|s| !s.is_empty())
        });
        let idx = self.sink.asset(a);
        for res in r.results.unwrap_or_default() {
            self.result(idx, res);
        }
    }

    fn result(&mut self, asset: u32, r: TResult) {
        let target = r.target.clone();
        let lang = r.class.as_deref() == Some("lang-pkgs");
        for v in r.vulns.unwrap_or_default() {
            // Written into a reused finding's buffers (a Trivy report is up to millions of these); the
            // parsed strings are freed here, on this thread.
            let raw = v.severity.as_deref().unwrap_or_default();
            let pkg = trimmed(v.pkg.as_deref());
            let f = self.sink.blank(asset, Category::Vulnerability);
            f.vuln_id.push_str(&v.id);
            match &v.title {
                Some(t) => f.title.push_str(t),
                None => {
                    for p in [&*v.id, " in ", pkg.unwrap_or("")] {
                        f.title.push_str(p);
                    }
                }
            }
            for p in [&*target, "|", &v.id, "|", pkg.unwrap_or("")] {
                f.raw_id.push_str(p);
            }
            f.severity = Severity::parse_loose(raw).unwrap_or(Severity::Info);
            f.raw_severity.push_str(raw);
            let up = v.id.to_ascii_uppercase();
            if up.starts_with("CVE-") {
                f.cves.push(up);
            } else {
                f.aliases.push(v.id.clone());
            }
            for vid in v.vendor_ids.iter().flatten() {
                if vid.to_ascii_uppercase().starts_with("CVE-") && !f.cves.contains(vid) {
                    f.cves.push(vid.to_ascii_uppercase());
                }
            }
            f.cwes.extend(v.cwes.iter().flatten().filter_map(|c| norm_cwe(c)));
            if let Some(d) = trimmed(v.description.as_deref()) {
                f.set_description(d);
            }
            if let Some(i) = trimmed(v.installed.as_deref()) {
                f.set_installed_version(i);
            }
            if let Some(fx) = trimmed(v.fixed.as_deref()) {
                f.set_fixed_version(fx);
                f.set_solution_parts(&["Upgrade ", pkg.unwrap_or(""), " to ", fx]);
            }
            if let Some(p) = pkg {
                f.set_package(p);
            }
            if let Some(c) = &v.cvss.0 {
                f.cvss_score = c.v3.or(c.v2);
                if let Some(vec) = if c.v3.is_some() { &c.v3v } else { &c.v2v } {
                    f.set_cvss_vector(vec);
                }
            }
            if v.not_affected {
                f.applicability = Applicability::NotAffected;
            }
            if lang {
                f.set_location(v.pkg_path.as_deref().filter(|p| !p.is_empty()).unwrap_or(&target));
            }
            self.sink.commit();
        }
        for mut m in r.misconfigs.unwrap_or_default() {
            match m.status.as_deref() {
                Some("PASS") | Some("EXCEPTION") => continue,
                _ => {}
            }
            let (severity, raw) = sev(m.severity.take());
            let id = m.avdid.clone().filter(|a| !a.is_empty()).unwrap_or_else(|| m.id.clone());
            let title = m.title.clone().unwrap_or_else(|| id.clone());
            let mut f = RawFinding::new(asset, id.clone(), title, Category::Misconfiguration);
            f.severity = severity;
            f.raw_severity = raw;
            f.description = match (m.description.clone(), m.message.clone()) {
                (Some(d), Some(msg)) => Some(format!("{msg}\n\n{d}")),
                (d, msg) => d.or(msg),
            };
            f.solution = nonempty(m.resolution.clone());
            // The offending lines, kept with their numbers: fix plans write their change against them.
            let code = crate::fixplan::code_block(
                m.cause.as_ref().and_then(|c| c.code.as_ref()).and_then(|c| c.lines.as_ref()).into_iter().flatten().filter(|l| !l.truncated && l.number > 0).map(|l| (l.number, l.content.as_str())),
            );
            if let Some(code) = code {
                f.description = Some(format!("{}{code}", f.description.take().unwrap_or_default()));
            }
            let (resource, line) = m.cause.as_ref().map(|c| (c.resource.clone(), c.start)).unwrap_or((None, None));
            let mut loc = target.clone();
            if let Some(l) = line.filter(|l| *l > 0) {
                loc = format!("{loc}:{l}");
            }
            if let Some(res) = resource.filter(|r| !r.is_empty()) {
                loc = format!("{loc} ({res})");
            }
            f.location = Some(loc);
            f.raw_id = format!("{}|{}|{}", m.kind.clone().unwrap_or_default(), m.id, target);
            self.sink.finding(f);
        }
        for mut s in r.secrets.unwrap_or_default() {
            let (severity, raw) = sev(s.severity.take());
            let title = s.title.clone().unwrap_or_else(|| s.rule.clone());
            let mut f = RawFinding::new(asset, s.rule.clone(), title, Category::Secret);
            f.severity = severity;
            f.raw_severity = raw;
            f.description = s.category.clone().map(|c| format!("{c} secret found in {target}"));
            f.solution = Some("Revoke and rotate the credential, then remove it from the file and its history".into());
            f.location = Some(match s.start {
                Some(l) => format!("{target}:{l}"),
                None => target.clone(),
            });
            f.raw_id = format!("{}|{}|{}", s.rule, target, s.start.unwrap_or(0));
            self.sink.finding(f);
        }
    }
}

/// The results of a `Results` array (or of the legacy layout's top-level array), one at a time.
fn results<R: BufRead>(s: &mut Scanner<R>, ctx: &mut Ctx<'_>) -> Result<(), ParseError> {
    if s.array()? {
        while s.element()? {
            let r: TResult = s.value()?;
            let a = ctx.report_asset(&r.target);
            ctx.result(a, r);
        }
    }
    Ok(())
}

pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink, opts: &ParseOptions) -> Result<(), ParseError> {
    let mut ctx = Ctx {
        sink,
        artifact: None,
        artifact_type: None,
        meta: TMeta::default(),
        cluster: None,
        asset: None,
        hint: opts.asset_hint.clone(),
    };
    let mut s = Scanner::new(input);
    match s.peek()? {
        // Legacy layout: a bare array of results.
        Some(b'[') => results(&mut s, &mut ctx)?,
        Some(b'{') => {
            s.object()?;
            let mut known = false;
            while let Some(k) = s.key()? {
                match k.as_str() {
                    "SchemaVersion" => {
                        known = true;
                        s.skip()?;
                    }
                    "CreatedAt" => {
                        if let Some(t) = s.value::<Option<String>>()?.as_deref().and_then(parse_time) {
                            ctx.sink.scan_time(t);
                        }
                    }
                    "ArtifactName" => {
                        known = true;
                        ctx.artifact = s.value()?;
                    }
                    "ArtifactType" => ctx.artifact_type = s.value()?,
                    "Metadata" => ctx.meta = s.value::<Option<TMeta>>()?.unwrap_or_default(),
                    "Results" => {
                        known = true;
                        results(&mut s, &mut ctx)?;
                    }
                    "ClusterName" => {
                        known = true;
                        ctx.cluster = s.value()?;
                    }
                    "Resources" | "Vulnerabilities" | "Misconfigurations" => {
                        known = true;
                        if s.array()? {
                            while s.element()? {
                                let r: TResource = s.value()?;
                                ctx.resource(r);
                            }
                        }
                    }
                    _ => s.skip()?,
                }
            }
            if !known {
                return Err(ParseError::new("end of input", "not a Trivy report (no Results, ArtifactName or ClusterName)"));
            }
        }
        _ => return Err(s.fail("expected a Trivy report (object or legacy array)")),
    }
    s.end()
}
