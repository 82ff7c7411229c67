//! OpenVAS / Greenbone XML report (`<report>` with `<results><result>`), streamed.

use super::xml::{attr, drive, opt, XmlEv};
use super::{parse_time, ParseError, Sink};
use crate::model::{AssetKind, Category, RawAsset, RawFinding, Severity};
use std::collections::HashMap;
use std::io::BufRead;

#[derive(Default)]
struct Res {
    host: Option<String>,
    hostname: Option<String>,
    port: Option<String>,
    oid: String,
    name: String,
    cvss: Option<f64>,
    tags: Option<String>,
    cves: Vec<String>,
    threat: Option<String>,
    severity: Option<f64>,
    description: Option<String>,
    id: String,
    pos: u64,
}

fn tag_field(tags: &str, key: &str) -> Option<String> {
    for part in tags.split('|') {
        if let Some(v) = part.trim_start().strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
            let clean = v.split_whitespace().collect::<Vec<_>>().join(" ");
            if !clean.is_empty() {
                return Some(clean);
            }
        }
    }
    None
}

pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<(), ParseError> {
    let mut seen_report = false;
    let mut depth_in_result = 0usize;
    let mut r: Option<Res> = None;
    let mut in_nvt = false;
    let mut in_host = false;
    let mut hosts: HashMap<String, u32> = HashMap::new();
    let mut scan_time = None;
    let mut stack_depth = 0usize;
    drive(input, |ev, pos| {
        match ev {
            XmlEv::Open(name, e) => {
                stack_depth += 1;
                match name {
                    "report" => seen_report = true,
                    "result" if r.is_none() => {
                        r = Some(Res { id: attr(e, "id").unwrap_or_default(), pos, ..Default::default() });
                        depth_in_result = stack_depth;
                    }
                    "nvt" if r.is_some() => {
                        in_nvt = true;
                        if let Some(x) = r.as_mut() {
                            x.oid = attr(e, "oid").unwrap_or_default();
                        }
                    }
                    "host" if r.is_some() => in_host = true,
                    "ref" if in_nvt => {
                        if attr(e, "type").is_some_and(|t| t.eq_ignore_ascii_case("cve")) {
                            if let (Some(x), Some(id)) = (r.as_mut(), attr(e, "id")) {
                                let c = id.trim().to_ascii_uppercase();
                                if !x.cves.contains(&c) {
                                    x.cves.push(c);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            XmlEv::Close(name, text) => {
                let closing_depth = stack_depth;
                stack_depth = stack_depth.saturating_sub(1);
                if let Some(x) = r.as_mut() {
                    match name {
                        "host" if in_host => {
                            x.host = opt(text);
                            in_host = false;
                        }
                        "hostname" if in_host => x.hostname = opt(text),
                        "port" => x.port = opt(text),
                        "name" if in_nvt => x.name = text.trim().to_string(),
                        "cvss_base" if in_nvt => x.cvss = text.trim().parse().ok(),
                        "tags" if in_nvt => x.tags = opt(text),
                        "cve" if in_nvt => {
                            for c in text.split(',') {
                                let c = c.trim().to_ascii_uppercase();
                                if c.starts_with("CVE-") && !x.cves.contains(&c) {
                                    x.cves.push(c);
                                }
                            }
                        }
                        "nvt" => in_nvt = false,
                        "threat" => x.threat = opt(text),
                        "severity" if !in_nvt => x.severity = text.trim().parse().ok(),
                        "description" if !in_nvt => x.description = opt(text),
                        "result" if closing_depth == depth_in_result => {
                            let x = r.take().unwrap();
                            emit(x, sink, &mut hosts);
                        }
                        _ => {}
                    }
                } else if matches!(name, "scan_start" | "creation_time") && scan_time.is_none() {
                    scan_time = parse_time(text);
                } else if name == "scan_end" {
                    if let Some(t) = parse_time(text) {
                        scan_time = Some(t);
                    }
                }
            }
        }
        Ok(())
    })?;
    if !seen_report {
        return Err(ParseError::new("byte 0", "not an OpenVAS/Greenbone report (no <report> element)"));
    }
    if let Some(t) = scan_time {
        sink.scan_time(t);
    }
    Ok(())
}

fn emit(x: Res, sink: &mut dyn Sink, hosts: &mut HashMap<String, u32>) {
    let host = match x.host.clone() {
        Some(h) => h,
        None => {
            sink.skip(format!("byte {}", x.pos), format!("result {} names no host", x.id), x.name.clone());
            return;
        }
    };
    let key = format!("{host}|{}", x.hostname.clone().unwrap_or_default());
    let idx = *hosts.entry(key).or_insert_with(|| {
        let mut a = RawAsset::named(AssetKind::Host, host.clone());
        if host.parse::<std::net::IpAddr>().is_ok() || host.chars().all(|c| c.is_ascii_digit() || c == '.') {
            a.ips.push(host.clone());
        } else {
            a.hostname = Some(host.clone());
        }
        if let Some(hn) = &x.hostname {
            if hn.contains('.') {
                a.fqdn = Some(hn.clone());
            } else {
                a.hostname = Some(hn.clone());
            }
            a.name = hn.clone();
        }
        sink.asset(a)
    });
    let title = if x.name.is_empty() { x.oid.clone() } else { x.name.clone() };
    let mut f = RawFinding::new(idx, x.oid.clone(), title, Category::Vulnerability);
    let threat = x.threat.clone().unwrap_or_default();
    f.severity = match x.severity.or(x.cvss) {
        Some(s) if threat != "Log" && s > 0.0 => Severity::from_cvss(s),
        _ => Severity::parse_loose(&threat).unwrap_or(Severity::Info),
    };
    f.raw_severity = format!("{threat} {}", x.severity.map(|s| s.to_string()).unwrap_or_default()).trim().to_string();
    f.cvss_score = x.cvss.or(x.severity);
    f.cves = x.cves;
    if let Some(tags) = &x.tags {
        f.solution = tag_field(tags, "solution");
        let summary = tag_field(tags, "summary");
        let insight = tag_field(tags, "insight");
        f.description = match (summary, insight) {
            (Some(s), Some(i)) => Some(format!("{s}\n\n{i}")),
            (s, i) => s.or(i),
        };
        f.cvss_vector = tag_field(tags, "cvss_base_vector");
    }
    if f.description.is_none() {
        f.description = x.description.clone();
    }
    if let Some(p) = &x.port {
        let mut it = p.splitn(2, '/');
        let num = it.next().unwrap_or("");
        f.port = num.parse().ok().or(Some(0));
        f.protocol = it.next().map(str::to_string);
    }
    f.raw_id = format!("{}/{}", x.oid, x.port.clone().unwrap_or_default());
    sink.finding(f);
}
