//! Grype JSON (`grype -o json`): `matches` streamed; the scanned image comes from `source`.

use super::jsonstream::{number_lenient, Scanner};
use super::{trimmed, ParseError, Sink};
use crate::model::{AssetKind, Category, IdKind, RawAsset, Severity};
use serde::Deserialize;
use std::borrow::Cow;
use std::io::BufRead;

// A match's texts are borrowed from the record as read (copied only when they need unescaping): most
// are copied into the finding once, and the rest dropped.
#[derive(Deserialize, Default)]
#[serde(default)]
struct GMatch<'a> {
    #[serde(borrow)]
    vulnerability: GVuln<'a>,
    #[serde(rename = "relatedVulnerabilities", borrow)]
    related: Vec<GVuln<'a>>,
    #[serde(borrow)]
    artifact: GArtifact<'a>,
}

impl super::jsonstream::Record for GMatch<'static> {
    type Of<'a> = GMatch<'a>;
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GVuln<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    severity: Option<Cow<'a, str>>,
    #[serde(borrow)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow)]
    cvss: Vec<GCvss<'a>>,
    #[serde(borrow)]
    fix: Option<GFix<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GCvss<'a> {
    #[serde(borrow)]
    version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    vector: Option<Cow<'a, str>>,
    metrics: Option<GMetrics>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GMetrics {
    #[serde(rename = "baseScore", deserialize_with = "number_lenient")]
    base: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GFix<'a> {
    #[serde(borrow)]
    versions: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    state: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GArtifact<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    version: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    locations: Vec<GLoc<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GLoc<'a> {
    #[serde(borrow)]
    path: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GSource {
    #[serde(rename = "type")]
    kind: Option<String>,
    target: serde_json::Value,
}

fn best_cvss<'a>(list: &'a [GCvss<'_>]) -> Option<(f64, Option<&'a str>)> {
    let mut best: Option<(f64, Option<&str>, bool)> = None;
    for c in list {
        if let Some(s) = c.metrics.as_ref().and_then(|m| m.base) {
            let v3 = c.version.as_deref().is_some_and(|v| v.starts_with('3') || v.starts_with('4'));
            let better = match &best {
                None => true,
                Some((_, _, bv3)) => v3 && !bv3,
            };
            if better {
                best = Some((s, c.vector.as_deref(), v3));
            }
        }
    }
    best.map(|(s, v, _)| (s, v))
}

struct Ctx<'a> {
    sink: &'a mut dyn Sink,
    asset: u32,
    seen_matches: bool,
}

impl Ctx<'_> {
    fn on_match(&mut self, m: GMatch<'_>) {
        let GMatch { vulnerability: v, related, artifact } = m;
        let GArtifact { name, version, kind, locations } = artifact;
        let version = version.unwrap_or_default();
        let raw_sev = v.severity.as_deref().unwrap_or_default();
        // Written into a reused finding's buffers: a Grype report is a million of these.
        let f = self.sink.blank(self.asset, Category::Vulnerability);
        f.vuln_id.push_str(&v.id);
        for p in [&*v.id, " in ", &name, " ", &version] {
            f.title.push_str(p);
        }
        f.title.truncate(f.title.trim_end().len());
        for p in [&*v.id, "|", &name, "|", &version, "|", kind.as_deref().unwrap_or_default()] {
            f.raw_id.push_str(p);
        }
        f.severity = Severity::parse_loose(raw_sev).unwrap_or(Severity::Info);
        f.raw_severity.push_str(raw_sev);
        let push_id = |id: &str, cves: &mut Vec<String>, aliases: &mut Vec<String>| {
            let up = id.to_ascii_uppercase();
            if up.starts_with("CVE-") {
                if !cves.contains(&up) {
                    cves.push(up);
                }
            } else if !id.is_empty() && !aliases.iter().any(|a| a == id) {
                aliases.push(id.to_string());
            }
        };
        push_id(&f.vuln_id, &mut f.cves, &mut f.aliases);
        for r in &related {
            push_id(&r.id, &mut f.cves, &mut f.aliases);
        }
        if let Some(d) = trimmed(v.description.as_deref()).or_else(|| related.iter().find_map(|r| trimmed(r.description.as_deref()))) {
            f.set_description(d);
        }
        let cv = best_cvss(&v.cvss).or_else(|| related.iter().find_map(|r| best_cvss(&r.cvss)));
        if let Some((s, vec)) = cv {
            f.cvss_score = Some(s);
            if let Some(vec) = vec {
                f.set_cvss_vector(vec);
            }
        }
        if let Some(fix) = &v.fix {
            if fix.state.as_deref() == Some("fixed") || !fix.versions.is_empty() {
                if let Some(fx) = fix.versions.first() {
                    f.set_fixed_version(fx);
                    f.set_solution_parts(&["Upgrade ", &name, " to ", fx]);
                }
            }
        }
        if let Some(p) = locations.into_iter().next().and_then(|l| l.path) {
            f.set_location(&p);
        }
        if let Some(n) = trimmed(Some(&name)) {
            f.set_package(n);
        }
        if let Some(ver) = trimmed(Some(&version)) {
            f.set_installed_version(ver);
        }
        self.sink.commit();
    }
}

/// The distribution a report says the scanned image runs.
#[derive(Deserialize, Default)]
#[serde(default)]
struct GDistro {
    name: Option<String>,
    version: Option<String>,
}

fn source_asset(s: &GSource) -> RawAsset {
    let t = &s.target;
    let get = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_string).filter(|v| !v.is_empty());
    match s.kind.as_deref() {
        Some("image") => {
            let name = get("userInput").unwrap_or_default();
            let mut a = RawAsset::named(AssetKind::ContainerImage, name.clone());
            if !name.is_empty() {
                a.ids.push((IdKind::ImageRef, name));
            }
            if let Some(id) = get("imageID") {
                a.ids.push((IdKind::ImageDigest, id));
            }
            if let Some(d) = get("manifestDigest") {
                a.ids.push((IdKind::ImageDigest, d));
            }
            for d in t.get("repoDigests").and_then(|v| v.as_array()).into_iter().flatten() {
                if let Some((_, dg)) = d.as_str().unwrap_or("").split_once('@') {
                    a.ids.push((IdKind::ImageDigest, dg.to_string()));
                }
            }
            a
        }
        _ => {
            let name = t.as_str().map(str::to_string).or_else(|| get("userInput")).or_else(|| get("path")).unwrap_or_default();
            let mut a = RawAsset::named(AssetKind::Repository, name.clone());
            if !name.is_empty() {
                a.ids.push((IdKind::Name, name));
            }
            a
        }
    }
}

pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<(), ParseError> {
    // The scanned target is described after the matches: register a placeholder and refine it.
    let asset = sink.asset(RawAsset { kind: Some(AssetKind::ContainerImage), ..Default::default() });
    let mut ctx = Ctx { sink, asset, seen_matches: false };
    let mut s = Scanner::new(input);
    if !s.object()? {
        return Err(s.fail("not a Grype report (null)"));
    }
    while let Some(k) = s.key()? {
        match k.as_str() {
            "matches" => {
                ctx.seen_matches = true;
                if s.array()? {
                    while s.element()? {
                        s.with::<GMatch<'static>, _>(|m| ctx.on_match(m))?;
                    }
                }
            }
            "source" => {
                let src: GSource = s.value::<Option<GSource>>()?.unwrap_or_default();
                ctx.sink.refine_asset(ctx.asset, source_asset(&src));
            }
            "distro" => {
                if let Some(d) = s.value::<Option<GDistro>>()? {
                    let mut a = RawAsset::default();
                    a.os = match (d.name, d.version) {
                        (Some(n), Some(v)) if !n.is_empty() => Some(format!("{n} {v}")),
                        (Some(n), _) if !n.is_empty() => Some(n),
                        _ => None,
                    };
                    ctx.sink.refine_asset(ctx.asset, a);
                }
            }
            _ => s.skip()?,
        }
    }
    s.end()?;
    if !ctx.seen_matches {
        return Err(ParseError::new("end of input", "not a Grype report (no \"matches\")"));
    }
    Ok(())
}
