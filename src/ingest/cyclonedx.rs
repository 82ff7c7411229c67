//! CycloneDX SBOM/VEX with vulnerabilities, JSON (1.4+) and XML (1.2 vulnerability extension and 1.4+).
//! VEX `analysis.state` of `not_affected` or `false_positive` marks the finding as not open;
//! `resolved` means it is no longer present.

use super::jsonstream::number_lenient;
use super::xml::{attr, drive, local, opt, XmlEv};
use super::{nonempty, parse_time, ParseError, ParseOptions, Sink};
use crate::model::{norm_cwe, Applicability, AssetKind, Category, IdKind, RawAsset, RawFinding, Severity};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::BufRead;

#[derive(Debug, Clone, Default)]
struct Component {
    name: String,
    version: Option<String>,
    purl: Option<String>,
}

#[derive(Debug, Default)]
struct Vuln {
    id: String,
    refs: Vec<String>,
    score: Option<f64>,
    score_is_v3: bool,
    vector: Option<String>,
    severity: Option<String>,
    cwes: Vec<String>,
    description: Option<String>,
    recommendation: Option<String>,
    state: Option<String>,
    affects: Vec<String>,
}

fn main_asset(meta: Option<&Component>, kind: Option<&str>, hint: &Option<String>) -> RawAsset {
    let name = hint.clone().or_else(|| meta.map(|c| c.name.clone())).unwrap_or_default();
    let is_image = matches!(kind, Some("container")) || meta.and_then(|c| c.purl.as_deref()).is_some_and(|p| p.starts_with("pkg:oci/"));
    let mut a = RawAsset::named(if is_image { AssetKind::ContainerImage } else { AssetKind::Repository }, name.clone());
    if is_image {
        if !name.is_empty() {
            a.ids.push((IdKind::ImageRef, name.clone()));
        }
        if let Some(v) = meta.and_then(|c| c.version.clone()).filter(|v| v.starts_with("sha256:")) {
            a.ids.push((IdKind::ImageDigest, v));
        }
        if let Some(p) = meta.and_then(|c| c.purl.clone()) {
            if let Some(d) = p.split('@').nth(1).map(|d| d.split('?').next().unwrap_or("").replace("%3A", ":")) {
                if d.starts_with("sha256:") {
                    a.ids.push((IdKind::ImageDigest, d));
                }
            }
        }
    } else if !name.is_empty() {
        a.ids.push((IdKind::Name, name));
    }
    a
}

fn emit(sink: &mut dyn Sink, asset: u32, v: &Vuln, comps: &HashMap<String, Component>, pos: &str) {
    let state = v.state.as_deref().unwrap_or("").to_ascii_lowercase();
    if state == "resolved" || state == "resolved_with_pedigree" {
        sink.skip(pos.to_string(), format!("{}: VEX state '{state}', not present", v.id), String::new());
        return;
    }
    let targets: Vec<Option<&Component>> = if v.affects.is_empty() {
        vec![None]
    } else {
        v.affects.iter().map(|r| comps.get(r)).collect()
    };
    for c in targets {
        let pkg = c.map(|c| c.name.clone());
        let title = match &c {
            Some(c) => format!("{} in {} {}", v.id, c.name, c.version.clone().unwrap_or_default()).trim_end().to_string(),
            None => v.id.clone(),
        };
        let mut f = RawFinding::new(asset, v.id.clone(), title, Category::Vulnerability);
        let up = v.id.to_ascii_uppercase();
        if up.starts_with("CVE-") {
            f.cves.push(up);
        } else {
            f.aliases.push(v.id.clone());
        }
        for r in &v.refs {
            let u = r.to_ascii_uppercase();
            if u.starts_with("CVE-") {
                if !f.cves.contains(&u) {
                    f.cves.push(u);
                }
            } else if !f.aliases.contains(r) {
                f.aliases.push(r.clone());
            }
        }
        let sev = v.severity.clone().unwrap_or_default();
        f.severity = Severity::parse_loose(&sev)
            .or(v.score.map(Severity::from_cvss))
            .unwrap_or(Severity::Info);
        f.raw_severity = sev;
        f.cvss_score = v.score;
        f.cvss_vector = v.vector.clone();
        f.cwes = v.cwes.clone();
        f.description = v.description.clone();
        f.solution = v.recommendation.clone();
        f.package = pkg;
        f.installed_version = c.and_then(|c| c.version.clone());
        f.location = c.and_then(|c| c.purl.clone());
        f.applicability = match state.as_str() {
            "not_affected" => Applicability::NotAffected,
            "false_positive" => Applicability::FalsePositive,
            _ => Applicability::Affected,
        };
        f.raw_id = format!("{}|{}", v.id, c.map(|c| c.purl.clone().unwrap_or(c.name.clone())).unwrap_or_default());
        sink.finding(f);
    }
}

// ---------- JSON ----------

#[derive(Deserialize, Default)]
#[serde(default)]
struct JBom {
    #[serde(rename = "bomFormat")]
    bom_format: Option<String>,
    metadata: Option<JMeta>,
    components: Option<Vec<JComp>>,
    vulnerabilities: Option<Vec<JVuln>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JMeta {
    timestamp: Option<String>,
    component: Option<JComp>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JComp {
    #[serde(rename = "bom-ref")]
    bom_ref: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    name: String,
    group: Option<String>,
    version: Option<String>,
    purl: Option<String>,
    components: Option<Vec<JComp>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JVuln {
    id: String,
    references: Option<Vec<JRef>>,
    ratings: Option<Vec<JRating>>,
    cwes: Option<Vec<serde_json::Value>>,
    description: Option<String>,
    detail: Option<String>,
    recommendation: Option<String>,
    analysis: Option<JAnalysis>,
    affects: Option<Vec<JAffects>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JRef {
    id: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JRating {
    #[serde(deserialize_with = "number_lenient")]
    score: Option<f64>,
    severity: Option<String>,
    method: Option<String>,
    vector: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JAnalysis {
    state: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JAffects {
    #[serde(rename = "ref")]
    reference: String,
}

fn collect(c: &JComp, out: &mut HashMap<String, Component>) {
    let name = match &c.group {
        Some(g) if !g.is_empty() => format!("{g}:{}", c.name),
        _ => c.name.clone(),
    };
    let comp = Component { name, version: c.version.clone(), purl: c.purl.clone() };
    if let Some(r) = &c.bom_ref {
        out.insert(r.clone(), comp.clone());
    }
    if let Some(p) = &c.purl {
        out.entry(p.clone()).or_insert(comp);
    }
    for sub in c.components.iter().flatten() {
        collect(sub, out);
    }
}

fn rating_rank(r: &JRating) -> i32 {
    match r.method.as_deref().unwrap_or("") {
        "CVSSv4" => 4,
        "CVSSv31" | "CVSSv3" => 3,
        "CVSSv2" => 1,
        _ => 0,
    }
}

pub fn parse_json(input: &mut dyn BufRead, sink: &mut dyn Sink, opts: &ParseOptions) -> Result<(), ParseError> {
    let bom: JBom = super::jsonstream::run(input, |de| JBom::deserialize(de))?;
    if bom.bom_format.as_deref() != Some("CycloneDX") {
        return Err(ParseError::new("line 1", "not a CycloneDX document (bomFormat is not \"CycloneDX\")"));
    }
    let mut comps = HashMap::new();
    for c in bom.components.iter().flatten() {
        collect(c, &mut comps);
    }
    let meta_comp = bom.metadata.as_ref().and_then(|m| m.component.as_ref());
    if let Some(t) = bom.metadata.as_ref().and_then(|m| m.timestamp.as_deref()).and_then(parse_time) {
        sink.scan_time(t);
    }
    let mc = meta_comp.map(|c| Component { name: c.name.clone(), version: c.version.clone(), purl: c.purl.clone() });
    let asset = sink.asset(main_asset(mc.as_ref(), meta_comp.and_then(|c| c.kind.as_deref()), &opts.asset_hint));
    for (i, jv) in bom.vulnerabilities.unwrap_or_default().into_iter().enumerate() {
        if jv.id.is_empty() {
            sink.skip(format!("vulnerabilities[{i}]"), "vulnerability without an id".into(), String::new());
            continue;
        }
        let mut v = Vuln { id: jv.id.clone(), ..Default::default() };
        v.refs = jv.references.iter().flatten().map(|r| r.id.clone()).filter(|r| !r.is_empty()).collect();
        let ratings = jv.ratings.unwrap_or_default();
        if let Some(best) = ratings.iter().filter(|r| r.score.is_some()).max_by_key(|r| rating_rank(r)) {
            v.score = best.score;
            v.vector = best.vector.clone();
            v.score_is_v3 = rating_rank(best) >= 3;
        }
        // Severity: the worst any source gave, as scanners do.
        v.severity = ratings
            .iter()
            .filter_map(|r| r.severity.as_deref().and_then(Severity::parse_loose).map(|s| (s, r.severity.clone().unwrap())))
            .max_by_key(|(s, _)| *s)
            .map(|(_, raw)| raw);
        v.cwes = jv
            .cwes
            .iter()
            .flatten()
            .filter_map(|c| norm_cwe(&c.as_str().map(str::to_string).unwrap_or_else(|| c.to_string())))
            .collect();
        v.description = nonempty(jv.description.clone()).or(nonempty(jv.detail.clone()));
        v.recommendation = nonempty(jv.recommendation.clone());
        v.state = jv.analysis.and_then(|a| a.state);
        v.affects = jv.affects.iter().flatten().map(|a| a.reference.clone()).collect();
        emit(sink, asset, &v, &comps, &format!("vulnerabilities[{i}]"));
    }
    Ok(())
}

// ---------- XML ----------

pub fn parse_xml(input: &mut dyn BufRead, sink: &mut dyn Sink, opts: &ParseOptions) -> Result<(), ParseError> {
    let mut comps: HashMap<String, Component> = HashMap::new();
    // (bom-ref, component, its element depth, group)
    let mut comp_stack: Vec<(Option<String>, Component, usize, Option<String>)> = Vec::new();
    let mut depth = 0usize;
    let mut in_metadata = false;
    let mut meta_comp: Option<Component> = None;
    let mut meta_kind: Option<String> = None;
    let mut pending: Vec<(Vuln, Option<Component>, String)> = Vec::new();
    let mut cur: Option<(Vuln, u64)> = None;
    let mut rating_score: Option<f64> = None;
    let mut rating_method: Option<String> = None;
    let mut rating_vector: Option<String> = None;
    let mut rating_sev: Option<String> = None;
    let mut seen_bom = false;
    let mut timestamp = None;
    drive(input, |ev, pos| {
        match ev {
            XmlEv::Open(name, e) => match { depth += 1; local(name) } {
                "bom" => seen_bom = true,
                "metadata" => in_metadata = true,
                "component" => {
                    if in_metadata && comp_stack.is_empty() {
                        meta_kind = attr(e, "type");
                    }
                    comp_stack.push((attr(e, "bom-ref"), Component::default(), depth, None));
                }
                "vulnerability" => cur = Some((Vuln::default(), pos)),
                "rating" => {
                    rating_score = None;
                    rating_method = None;
                    rating_vector = None;
                    rating_sev = None;
                }
                _ => {}
            },
            XmlEv::Close(name, text) => {
                let l = local(name);
                let my_depth = depth;
                depth = depth.saturating_sub(1);
                if let Some((v, _)) = cur.as_mut() {
                    match l {
                        "id" if v.id.is_empty() => v.id = text.trim().to_string(),
                        "id" => {
                            let t = text.trim().to_string();
                            if !t.is_empty() && t != v.id {
                                v.refs.push(t);
                            }
                        }
                        "score" if !text.trim().is_empty() => rating_score = text.trim().parse().ok(),
                        "base" => rating_score = text.trim().parse().ok(),
                        "severity" => rating_sev = opt(text),
                        "method" => rating_method = opt(text),
                        "vector" => rating_vector = opt(text),
                        "rating" => {
                            let v3 = rating_method.as_deref().is_some_and(|m| m.starts_with("CVSSv3") || m.starts_with("CVSSv4"));
                            if rating_score.is_some() && (v.score.is_none() || (v3 && !v.score_is_v3)) {
                                v.score = rating_score;
                                v.vector = rating_vector.clone();
                                v.score_is_v3 = v3;
                            }
                            if let Some(s) = &rating_sev {
                                let new = Severity::parse_loose(s);
                                let old = v.severity.as_deref().and_then(Severity::parse_loose);
                                if new > old {
                                    v.severity = Some(s.clone());
                                }
                            }
                        }
                        "cwe" => {
                            if let Some(c) = norm_cwe(text) {
                                v.cwes.push(c);
                            }
                        }
                        "description" => v.description = opt(text),
                        "detail" if v.description.is_none() => v.description = opt(text),
                        "recommendation" => v.recommendation = opt(text),
                        "state" => v.state = opt(text),
                        "ref" => {
                            if let Some(r) = opt(text) {
                                v.affects.push(r);
                            }
                        }
                        "vulnerability" => {
                            let (v, p) = cur.take().unwrap();
                            let enclosing = comp_stack.last().map(|(_, c, _, _)| c.clone());
                            pending.push((v, enclosing, format!("byte {p}")));
                        }
                        _ => {}
                    }
                    return Ok(());
                }
                match l {
                    "timestamp" if in_metadata => timestamp = parse_time(text),
                    "name" | "version" | "purl" | "group" => {
                        // Only the component's own fields, not those of its licenses, hashes or suppliers.
                        if let Some((_, c, d, g)) = comp_stack.last_mut() {
                            if my_depth == *d + 1 {
                                match l {
                                    "name" => c.name = text.trim().to_string(),
                                    "version" => c.version = opt(text),
                                    "purl" => c.purl = opt(text),
                                    _ => *g = opt(text),
                                }
                            }
                        }
                    }
                    "component" => {
                        if let Some((r, mut c, _, g)) = comp_stack.pop() {
                            if let Some(g) = g {
                                c.name = format!("{g}:{}", c.name);
                            }
                            if in_metadata && comp_stack.is_empty() {
                                meta_comp = Some(c);
                            } else {
                                if let Some(r) = r {
                                    comps.insert(r, c.clone());
                                }
                                if let Some(p) = &c.purl {
                                    comps.entry(p.clone()).or_insert(c);
                                }
                            }
                        }
                    }
                    "metadata" => in_metadata = false,
                    _ => {}
                }
            }
        }
        Ok(())
    })?;
    if !seen_bom {
        return Err(ParseError::new("byte 0", "not a CycloneDX XML document (no <bom>)"));
    }
    if let Some(t) = timestamp {
        sink.scan_time(t);
    }
    let asset = sink.asset(main_asset(meta_comp.as_ref(), meta_kind.as_deref(), &opts.asset_hint));
    for (v, enclosing, pos) in pending {
        if v.id.is_empty() {
            sink.skip(pos, "vulnerability without an id".into(), String::new());
            continue;
        }
        if v.affects.is_empty() {
            if let Some(c) = enclosing {
                let key = format!("__enclosing__{}", c.name);
                let mut local_comps = HashMap::new();
                local_comps.insert(key.clone(), c);
                let v2 = Vuln { affects: vec![key], ..v };
                emit(sink, asset, &v2, &local_comps, &pos);
                continue;
            }
        }
        emit(sink, asset, &v, &comps, &pos);
    }
    Ok(())
}
