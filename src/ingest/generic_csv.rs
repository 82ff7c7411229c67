//! Generic CSV import for any tool, driven by a small TOML column mapping. Example (`wiz.toml`):
//!
//! ```toml
//! tool = "wiz"
//! asset_kind = "cloud_resource"     # host (default), container_image, cloud_resource, repository, web_app, k8s_workload
//! category = "misconfiguration"     # default for rows without a category column
//! skip_lines = 0                    # preamble lines before the header row
//! [columns]
//! asset = "Resource Name"           # required
//! asset_id = "Resource external ID" # cloud resource id, image digest... (optional)
//! vuln_id = "Control ID"            # required
//! title = "Title"
//! severity = "Severity"
//! status = "Status"                 # rows whose status is resolved/fixed/closed are not findings
//! ```

use super::tenable_csv::{csv_err, reader, Header};
use super::{ParseError, Sink};
use crate::model::{extract_cves, norm_cwe, AssetKind, Category, IdKind, RawAsset, RawFinding, Severity};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    #[serde(default = "default_tool")]
    pub tool: String,
    pub delimiter: Option<String>,
    #[serde(default)]
    pub skip_lines: usize,
    pub asset_kind: Option<String>,
    pub category: Option<String>,
    pub columns: Columns,
}

fn default_tool() -> String {
    "csv".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    pub asset: String,
    pub vuln_id: String,
    pub asset_id: Option<String>,
    pub ip: Option<String>,
    pub hostname: Option<String>,
    pub fqdn: Option<String>,
    pub cve: Option<String>,
    pub cwe: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub severity: Option<String>,
    pub cvss_score: Option<String>,
    pub cvss_vector: Option<String>,
    pub category: Option<String>,
    pub package: Option<String>,
    pub installed_version: Option<String>,
    pub fixed_version: Option<String>,
    pub solution: Option<String>,
    pub port: Option<String>,
    pub protocol: Option<String>,
    pub location: Option<String>,
    pub status: Option<String>,
    pub exploit: Option<String>,
}

impl Mapping {
    /// Load and check a mapping file; errors name the file and line.
    pub fn load(path: &Path) -> Result<Mapping, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Mapping::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Mapping, String> {
        let m: Mapping = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            match line {
                Some(l) => format!("line {l}: {}", e.message()),
                None => e.message().to_string(),
            }
        })?;
        if let Some(k) = &m.asset_kind {
            if AssetKind::parse(k).is_none() {
                return Err(format!("asset_kind '{k}' is not one of host, container_image, cloud_resource, repository, web_app, k8s_workload, package"));
            }
        }
        if let Some(c) = &m.category {
            if Category::parse(c).is_none() {
                return Err(format!("category '{c}' is not one of vulnerability, misconfiguration, secret, code, web"));
            }
        }
        if let Some(d) = &m.delimiter {
            if d.len() != 1 && d != "\\t" {
                return Err(format!("delimiter must be one character, not '{d}'"));
            }
        }
        Ok(m)
    }
}

pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink, m: &Mapping) -> Result<(), ParseError> {
    let mut skipped_lines = 0usize;
    for _ in 0..m.skip_lines {
        let mut line = String::new();
        let n = input.read_line(&mut line).map_err(|e| ParseError::new(format!("line {}", skipped_lines + 1), e.to_string()))?;
        if n == 0 {
            break;
        }
        skipped_lines += 1;
    }
    let delim = m.delimiter.as_deref().map(|d| if d == "\\t" { b'\t' } else { d.as_bytes()[0] });
    let mut rdr = reader(input, delim)?;
    let mut records = rdr.records();
    let hline = skipped_lines + 1;
    let header = match records.next() {
        Some(Ok(h)) => Header::new(&h),
        Some(Err(e)) => return Err(csv_err(&e)),
        None => return Err(ParseError::new(format!("line {hline}"), "no header row")),
    };
    let c = &m.columns;
    let col = |name: &Option<String>| -> Result<Option<usize>, ParseError> {
        match name {
            None => Ok(None),
            Some(n) => header
                .find(&[n.as_str()])
                .map(Some)
                .ok_or_else(|| ParseError::new(format!("line {hline}"), format!("the mapping names column '{n}', which the header does not have"))),
        }
    };
    let asset_c = col(&Some(c.asset.clone()))?.unwrap();
    let vuln_c = col(&Some(c.vuln_id.clone()))?.unwrap();
    let [asset_id_c, ip_c, hostname_c, fqdn_c, cve_c, cwe_c, title_c, desc_c, sev_c, cvss_c, vec_c, cat_c, pkg_c, inst_c, fix_c, sol_c, port_c, proto_c, loc_c, status_c, expl_c] = [
        &c.asset_id, &c.ip, &c.hostname, &c.fqdn, &c.cve, &c.cwe, &c.title, &c.description, &c.severity, &c.cvss_score,
        &c.cvss_vector, &c.category, &c.package, &c.installed_version, &c.fixed_version, &c.solution, &c.port, &c.protocol,
        &c.location, &c.status, &c.exploit,
    ]
    .map(|n| col(n));
    let (asset_id_c, ip_c, hostname_c, fqdn_c, cve_c, cwe_c, title_c, desc_c, sev_c) = (asset_id_c?, ip_c?, hostname_c?, fqdn_c?, cve_c?, cwe_c?, title_c?, desc_c?, sev_c?);
    let (cvss_c, vec_c, cat_c, pkg_c, inst_c, fix_c, sol_c, port_c, proto_c, loc_c, status_c, expl_c) = (cvss_c?, vec_c?, cat_c?, pkg_c?, inst_c?, fix_c?, sol_c?, port_c?, proto_c?, loc_c?, status_c?, expl_c?);
    let kind = m.asset_kind.as_deref().and_then(AssetKind::parse).unwrap_or(AssetKind::Host);
    let default_cat = m.category.as_deref().and_then(Category::parse).unwrap_or(Category::Vulnerability);
    sink.tool(&m.tool);
    let mut assets: HashMap<String, u32> = HashMap::new();
    for rec in records {
        let rec = rec.map_err(|e| csv_err(&e))?;
        let line = rec.position().map(|p| p.line() as usize + skipped_lines).unwrap_or(0);
        if rec.iter().all(|x| x.trim().is_empty()) {
            continue;
        }
        let get = |i: Option<usize>| i.and_then(|i| rec.get(i)).map(str::trim).filter(|v| !v.is_empty());
        let (asset_name, vuln_id) = match (get(Some(asset_c)), get(Some(vuln_c))) {
            (Some(a), Some(v)) => (a.to_string(), v.to_string()),
            (a, _) => {
                let what = if a.is_none() { &c.asset } else { &c.vuln_id };
                sink.skip(format!("line {line}"), format!("column '{what}' is empty"), super::snippet(&rec.iter().collect::<Vec<_>>().join(",")));
                continue;
            }
        };
        if let Some(s) = get(status_c) {
            let s = s.to_ascii_lowercase();
            if matches!(s.as_str(), "resolved" | "fixed" | "closed" | "pass" | "passed") {
                continue;
            }
        }
        let aid = get(asset_id_c).map(str::to_string);
        let akey = format!("{asset_name}|{}", aid.clone().unwrap_or_default());
        let idx = match assets.get(&akey) {
            Some(i) => *i,
            None => {
                let mut a = RawAsset::named(kind, asset_name.clone());
                if let Some(id) = &aid {
                    let k = match kind {
                        AssetKind::ContainerImage => IdKind::ImageDigest,
                        AssetKind::Repository => IdKind::RepoUrl,
                        AssetKind::WebApp => IdKind::WebUrl,
                        AssetKind::K8sWorkload => IdKind::Workload,
                        _ => IdKind::CloudId,
                    };
                    a.ids.push((k, id.clone()));
                }
                if let Some(ip) = get(ip_c) {
                    a.ips.extend(ip.split([',', ' ']).filter(|s| !s.is_empty()).map(str::to_string));
                }
                a.hostname = get(hostname_c).map(str::to_string);
                a.fqdn = get(fqdn_c).map(str::to_string);
                if kind == AssetKind::Host && a.hostname.is_none() && a.fqdn.is_none() && a.ips.is_empty() {
                    if asset_name.parse::<std::net::IpAddr>().is_ok() {
                        a.ips.push(asset_name.clone());
                    } else if asset_name.contains('.') {
                        a.fqdn = Some(asset_name.clone());
                    } else {
                        a.hostname = Some(asset_name.clone());
                    }
                }
                let i = sink.asset(a);
                assets.insert(akey, i);
                i
            }
        };
        let cat = get(cat_c).and_then(Category::parse).unwrap_or(default_cat);
        let title = get(title_c).unwrap_or(&vuln_id).to_string();
        let mut f = RawFinding::new(idx, vuln_id.clone(), title, cat);
        let raw = get(sev_c).unwrap_or("").to_string();
        f.cvss_score = get(cvss_c).and_then(|s| s.parse().ok());
        f.severity = Severity::parse_loose(&raw).or(f.cvss_score.map(Severity::from_cvss)).unwrap_or(Severity::Info);
        f.raw_severity = raw;
        if let Some(cv) = get(cve_c) {
            extract_cves(cv, &mut f.cves);
        }
        if vuln_id.to_ascii_uppercase().starts_with("CVE-") {
            extract_cves(&vuln_id, &mut f.cves);
        }
        if let Some(cw) = get(cwe_c) {
            f.cwes = cw.split([',', ' ', ';']).filter_map(norm_cwe).collect();
        }
        f.cvss_vector = get(vec_c).map(str::to_string);
        f.description = get(desc_c).map(str::to_string);
        f.package = get(pkg_c).map(str::to_string);
        f.installed_version = get(inst_c).map(str::to_string);
        f.fixed_version = get(fix_c).map(str::to_string);
        f.solution = get(sol_c).map(str::to_string);
        f.port = get(port_c).and_then(|p| p.parse().ok());
        f.protocol = get(proto_c).map(|p| p.to_ascii_lowercase());
        f.location = get(loc_c).map(str::to_string);
        f.exploit_available = get(expl_c).map(|e| matches!(e.to_ascii_lowercase().as_str(), "true" | "yes" | "1"));
        f.raw_id = format!("{}|{}|line {line}", vuln_id, asset_name);
        sink.finding(f);
    }
    Ok(())
}
