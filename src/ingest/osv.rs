//! OSV-Scanner JSON (`osv-scanner --format json`). One finding per alias group per package.

use super::jsonstream::number_lenient;
use super::{nonempty, ParseError, ParseOptions, Sink};
use crate::model::{norm_cwe, AssetKind, Category, IdKind, RawAsset, RawFinding, Severity};
use serde::Deserialize;
use std::cmp::Ordering;
use std::io::BufRead;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Out {
    results: Option<Vec<Res>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Res {
    source: Src,
    packages: Vec<Pkg>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Src {
    path: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Pkg {
    package: PkgInfo,
    vulnerabilities: Vec<Vuln>,
    groups: Vec<Group>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PkgInfo {
    name: String,
    version: Option<String>,
    ecosystem: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Group {
    ids: Vec<String>,
    aliases: Vec<String>,
    #[serde(deserialize_with = "number_lenient")]
    max_severity: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Vuln {
    id: String,
    aliases: Vec<String>,
    summary: Option<String>,
    details: Option<String>,
    severity: Vec<Sev>,
    affected: Vec<Affected>,
    database_specific: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Sev {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Affected {
    package: Option<PkgInfo>,
    ranges: Vec<Range>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Range {
    events: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Compare two version strings piece by piece (numbers numerically, the rest as text).
pub fn cmp_versions(a: &str, b: &str) -> Ordering {
    let split = |s: &str| -> Vec<String> {
        s.trim_start_matches('v').split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| !p.is_empty()).map(str::to_string).collect()
    };
    let (pa, pb) = (split(a), split(b));
    for (x, y) in pa.iter().zip(pb.iter()) {
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(i), Ok(j)) => i.cmp(&j),
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

/// The fixed version of the range that contains `installed`.
fn fixed_for(v: &Vuln, pkg: &str, installed: Option<&str>) -> Option<String> {
    let mut candidates = Vec::new();
    for a in &v.affected {
        if a.package.as_ref().is_some_and(|p| p.name != pkg) {
            continue;
        }
        for r in &a.ranges {
            let mut introduced: Option<String> = None;
            for e in &r.events {
                if let Some(i) = e.get("introduced").and_then(|x| x.as_str()) {
                    introduced = Some(i.to_string());
                }
                if let Some(f) = e.get("fixed").and_then(|x| x.as_str()) {
                    let contains = match installed {
                        Some(inst) => {
                            introduced.as_deref().is_none_or(|i| i == "0" || cmp_versions(inst, i) != Ordering::Less)
                                && cmp_versions(inst, f) == Ordering::Less
                        }
                        None => true,
                    };
                    if contains {
                        candidates.push(f.to_string());
                    }
                }
            }
        }
    }
    candidates.sort_by(|a, b| cmp_versions(a, b));
    candidates.into_iter().next()
}

pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink, opts: &ParseOptions) -> Result<(), ParseError> {
    let out: Out = super::jsonstream::run(input, |de| Out::deserialize(de))?;
    let results = match out.results {
        Some(r) => r,
        None => return Err(ParseError::new("line 1", "not an OSV-Scanner report (no \"results\")")),
    };
    let mut a = RawAsset::named(AssetKind::Repository, opts.asset_hint.clone().unwrap_or_default());
    if let Some(h) = &opts.asset_hint {
        a.ids.push((IdKind::Name, h.clone()));
    }
    let asset = sink.asset(a);
    for res in results {
        for p in res.packages {
            let mut groups: Vec<Vec<usize>> = Vec::new();
            let mut used = vec![false; p.vulnerabilities.len()];
            for g in &p.groups {
                let members: Vec<usize> = p
                    .vulnerabilities
                    .iter()
                    .enumerate()
                    .filter(|(i, v)| !used[*i] && (g.ids.contains(&v.id) || g.aliases.contains(&v.id)))
                    .map(|(i, _)| i)
                    .collect();
                for &m in &members {
                    used[m] = true;
                }
                if !members.is_empty() {
                    groups.push(members);
                }
            }
            for (i, u) in used.iter().enumerate() {
                if !u {
                    groups.push(vec![i]);
                }
            }
            for members in groups {
                let first = &p.vulnerabilities[members[0]];
                let title = nonempty(first.summary.clone()).unwrap_or_else(|| format!("{} in {}", first.id, p.package.name));
                let mut f = RawFinding::new(asset, first.id.clone(), title, Category::Vulnerability);
                let mut sev: Option<Severity> = None;
                let mut raw = String::new();
                let gmax = p.groups.iter().find(|g| g.ids.contains(&first.id)).and_then(|g| g.max_severity);
                for &m in &members {
                    let v = &p.vulnerabilities[m];
                    for id in std::iter::once(&v.id).chain(v.aliases.iter()) {
                        let up = id.to_ascii_uppercase();
                        if up.starts_with("CVE-") {
                            if !f.cves.contains(&up) {
                                f.cves.push(up);
                            }
                        } else if !f.aliases.contains(id) {
                            f.aliases.push(id.clone());
                        }
                    }
                    if let Some(ds) = &v.database_specific {
                        if let Some(s) = ds.get("severity").and_then(|s| s.as_str()) {
                            let parsed = Severity::parse_loose(s);
                            if parsed > sev {
                                sev = parsed;
                                raw = s.to_string();
                            }
                        }
                        for c in ds.get("cwe_ids").and_then(|c| c.as_array()).into_iter().flatten() {
                            if let Some(c) = c.as_str().and_then(norm_cwe) {
                                if !f.cwes.contains(&c) {
                                    f.cwes.push(c);
                                }
                            }
                        }
                    }
                    if f.cvss_vector.is_none() {
                        f.cvss_vector = v.severity.iter().find(|s| s.kind.starts_with("CVSS")).map(|s| s.score.clone());
                    }
                    if f.description.is_none() {
                        f.description = nonempty(v.details.clone());
                    }
                }
                f.cvss_score = gmax;
                f.severity = match (sev, gmax) {
                    (Some(s), _) => s,
                    (None, Some(g)) => Severity::from_cvss(g),
                    (None, None) => Severity::Medium,
                };
                f.raw_severity = if raw.is_empty() { gmax.map(|g| g.to_string()).unwrap_or_default() } else { raw };
                f.package = Some(p.package.name.clone());
                f.installed_version = p.package.version.clone();
                f.fixed_version = fixed_for(first, &p.package.name, p.package.version.as_deref());
                if let Some(fx) = &f.fixed_version {
                    f.solution = Some(format!("Upgrade {} to {}", p.package.name, fx));
                }
                f.location = Some(res.source.path.clone());
                f.raw_id = format!("{}|{}|{}|{}", first.id, p.package.ecosystem.clone().unwrap_or_default(), p.package.name, res.source.path);
                sink.finding(f);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cmp_versions;
    use std::cmp::Ordering;

    #[test]
    fn versions() {
        assert_eq!(cmp_versions("6.3.3", "6.5.8"), Ordering::Less);
        assert_eq!(cmp_versions("7.10.0", "7.4.5"), Ordering::Greater);
        assert_eq!(cmp_versions("v1.2", "1.2"), Ordering::Equal);
    }
}
