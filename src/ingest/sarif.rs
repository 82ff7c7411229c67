//! SARIF 2.1.0 from any tool (CodeQL, Semgrep, Checkov, tfsec, KICS, gitleaks...).

use super::jsonstream::number_lenient;
use super::{nonempty, ParseError, ParseOptions, Sink};
use crate::model::{norm_cwe, AssetKind, Category, IdKind, RawAsset, RawFinding, Severity};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::BufRead;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Log {
    version: Option<String>,
    runs: Option<Vec<Run>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Run {
    tool: Tool,
    results: Option<Vec<Res>>,
    invocations: Option<Vec<Invocation>>,
    #[serde(rename = "versionControlProvenance")]
    vcp: Option<Vec<Vcp>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Invocation {
    #[serde(rename = "endTimeUtc")]
    end: Option<String>,
    #[serde(rename = "startTimeUtc")]
    start: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Vcp {
    #[serde(rename = "repositoryUri")]
    repo: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Tool {
    driver: Driver,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Driver {
    name: String,
    rules: Option<Vec<Rule>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Msg {
    text: Option<String>,
    markdown: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Rule {
    id: String,
    name: Option<String>,
    #[serde(rename = "shortDescription")]
    short: Option<Msg>,
    #[serde(rename = "fullDescription")]
    full: Option<Msg>,
    help: Option<Msg>,
    #[serde(rename = "defaultConfiguration")]
    default: Option<Config>,
    properties: Option<Props>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    level: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Props {
    #[serde(rename = "security-severity", deserialize_with = "number_lenient")]
    security_severity: Option<f64>,
    tags: Option<Vec<String>>,
    cwe: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Res {
    #[serde(rename = "ruleId")]
    rule_id: Option<String>,
    #[serde(rename = "ruleIndex")]
    rule_index: Option<usize>,
    rule: Option<RuleRef>,
    level: Option<String>,
    message: Msg,
    locations: Option<Vec<Loc>>,
    kind: Option<String>,
    suppressions: Option<Vec<serde_json::Value>>,
    #[serde(rename = "baselineState")]
    baseline: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RuleRef {
    id: Option<String>,
    index: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Loc {
    #[serde(rename = "physicalLocation")]
    physical: Option<Phys>,
    #[serde(rename = "logicalLocations")]
    logical: Option<Vec<Logical>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Logical {
    #[serde(rename = "fullyQualifiedName")]
    fqn: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Phys {
    #[serde(rename = "artifactLocation")]
    artifact: Option<Art>,
    region: Option<Region>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Art {
    uri: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Region {
    #[serde(rename = "startLine")]
    start_line: Option<i64>,
}

fn category_for(tool: &str, rule: &str, tags: &[String]) -> Category {
    let t = tool.to_ascii_lowercase();
    if ["checkov", "tfsec", "kics", "terrascan", "trivy", "kube-linter", "kubesec", "cfn", "tflint"]
        .iter()
        .any(|k| t.contains(k))
    {
        return Category::Misconfiguration;
    }
    if ["gitleaks", "trufflehog", "detect-secrets", "secret"].iter().any(|k| t.contains(k))
        || rule.to_ascii_lowercase().contains("secret")
            && tags.iter().any(|g| g.eq_ignore_ascii_case("secret") || g.eq_ignore_ascii_case("secrets"))
    {
        return Category::Secret;
    }
    Category::Code
}

fn level_severity(level: &str) -> Severity {
    match level {
        "error" => Severity::High,
        "warning" => Severity::Medium,
        "note" => Severity::Low,
        _ => Severity::Info,
    }
}

pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink, opts: &ParseOptions) -> Result<(), ParseError> {
    let log: Log = super::jsonstream::run(input, |de| Log::deserialize(de))?;
    let runs = match log.runs {
        Some(r) => r,
        None => return Err(ParseError::new("line 1", "not a SARIF log (no \"runs\")")),
    };
    if let Some(v) = &log.version {
        if !v.starts_with("2.") {
            return Err(ParseError::new("line 1", format!("SARIF version {v} is not supported (2.1.0 is)")));
        }
    }
    for (ri, run) in runs.into_iter().enumerate() {
        let tool = if run.tool.driver.name.is_empty() { "sarif".to_string() } else { run.tool.driver.name.clone() };
        sink.tool(&tool);
        // When the tool ran: the scan time of the import.
        for inv in run.invocations.iter().flatten() {
            if let Some(t) = inv.end.as_deref().or(inv.start.as_deref()).and_then(super::parse_time) {
                sink.scan_time(t);
            }
        }
        let repo = run.vcp.iter().flatten().find_map(|v| v.repo.clone());
        let mut a = RawAsset::named(AssetKind::Repository, opts.asset_hint.clone().or(repo.clone()).unwrap_or_default());
        if let Some(r) = &repo {
            a.ids.push((IdKind::RepoUrl, r.trim_end_matches(".git").to_string()));
        } else if let Some(h) = &opts.asset_hint {
            a.ids.push((IdKind::Name, h.clone()));
        }
        let asset = sink.asset(a);
        let rules = run.tool.driver.rules.unwrap_or_default();
        let by_id: HashMap<&str, usize> = rules.iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect();
        for (i, res) in run.results.unwrap_or_default().into_iter().enumerate() {
            if res.kind.as_deref().is_some_and(|k| k != "fail") {
                continue; // pass / notApplicable / informational are not findings
            }
            if res.suppressions.as_ref().is_some_and(|s| !s.is_empty()) || res.baseline.as_deref() == Some("absent") {
                continue;
            }
            let rid = res
                .rule_id
                .clone()
                .or_else(|| res.rule.as_ref().and_then(|r| r.id.clone()));
            let ridx = res.rule_index.or_else(|| res.rule.as_ref().and_then(|r| r.index));
            let rule = ridx.and_then(|x| rules.get(x)).or_else(|| rid.as_deref().and_then(|id| by_id.get(id).map(|&x| &rules[x])));
            let rule_id = match rid.or_else(|| rule.map(|r| r.id.clone())) {
                Some(r) if !r.is_empty() => r,
                _ => {
                    sink.skip(
                        format!("run {ri}, result {i}"),
                        "result has no ruleId".into(),
                        res.message.text.clone().unwrap_or_default(),
                    );
                    continue;
                }
            };
            let tags: Vec<String> = rule.and_then(|r| r.properties.as_ref()).and_then(|p| p.tags.clone()).unwrap_or_default();
            let title = rule
                .and_then(|r| r.short.as_ref().and_then(|m| nonempty(m.text.clone())))
                .or_else(|| rule.and_then(|r| r.name.clone()))
                .or_else(|| res.message.text.as_ref().map(|t| t.lines().next().unwrap_or("").to_string()))
                .unwrap_or_else(|| rule_id.clone());
            let mut f = RawFinding::new(asset, rule_id.clone(), title.trim().to_string(), category_for(&tool, &rule_id, &tags));
            let level = res
                .level
                .clone()
                .or_else(|| rule.and_then(|r| r.default.as_ref().and_then(|d| d.level.clone())))
                .unwrap_or_else(|| "warning".into());
            let sec = rule.and_then(|r| r.properties.as_ref()).and_then(|p| p.security_severity);
            f.severity = match sec {
                Some(s) => Severity::from_cvss(s),
                None => level_severity(&level),
            };
            f.raw_severity = match sec {
                Some(s) => format!("{level} (security-severity {s})"),
                None => level,
            };
            let msg = res.message.text.clone().or(res.message.markdown.clone());
            let full = rule.and_then(|r| r.full.as_ref().and_then(|m| nonempty(m.text.clone())));
            f.description = match (msg, full) {
                (Some(m), Some(fd)) if m.trim() != fd.trim() => Some(format!("{m}\n\n{fd}")),
                (m, fd) => m.or(fd),
            };
            f.solution = rule.and_then(|r| r.help.as_ref().and_then(|m| nonempty(m.text.clone())));
            for t in &tags {
                let l = t.to_ascii_lowercase();
                if let Some(rest) = l.strip_prefix("external/cwe/").or_else(|| if l.starts_with("cwe-") { Some(&l[..]) } else { None }) {
                    if let Some(c) = norm_cwe(&rest.to_ascii_uppercase()) {
                        if !f.cwes.contains(&c) {
                            f.cwes.push(c);
                        }
                    }
                }
            }
            if let Some(cwe) = rule.and_then(|r| r.properties.as_ref()).and_then(|p| p.cwe.clone()) {
                let items: Vec<String> = match cwe {
                    serde_json::Value::Array(a) => a.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect(),
                    serde_json::Value::String(s) => vec![s],
                    other => vec![other.to_string()],
                };
                for c in items.iter().filter_map(|c| norm_cwe(c)) {
                    if !f.cwes.contains(&c) {
                        f.cwes.push(c);
                    }
                }
            }
            let loc = res.locations.as_ref().and_then(|l| l.first());
            let phys = loc.and_then(|l| l.physical.as_ref());
            let uri = phys.and_then(|p| p.artifact.as_ref()).and_then(|a| a.uri.clone());
            let line = phys.and_then(|p| p.region.as_ref()).and_then(|r| r.start_line);
            f.location = match (uri, line) {
                (Some(u), Some(l)) => Some(format!("{u}:{l}")),
                (Some(u), None) => Some(u),
                (None, _) => loc.and_then(|l| l.logical.as_ref()).and_then(|v| v.first()).and_then(|l| l.fqn.clone().or(l.name.clone())),
            };
            f.raw_id = format!("{}|{}", rule_id, f.location.clone().unwrap_or_default());
            sink.finding(f);
        }
    }
    Ok(())
}
