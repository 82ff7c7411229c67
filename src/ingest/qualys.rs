//! Qualys VM XML (ASSET_DATA_REPORT). Detections come per host, their details in a glossary at the end,
//! so detections are held (compactly) until the glossary has been read.

use super::xml::{attr, drive, opt, strip_html, XmlEv};
use super::{parse_time, ParseError, Sink};
use crate::model::{AssetKind, Category, RawAsset, RawFinding, Severity};
use std::collections::HashMap;
use std::io::BufRead;

#[derive(Default)]
struct Host {
    ip: Option<String>,
    dns: Option<String>,
    netbios: Option<String>,
    os: Option<String>,
    idx: Option<u32>,
}

#[derive(Default)]
struct Info {
    asset: u32,
    qid: String,
    kind: String,
    port: Option<i32>,
    proto: Option<String>,
    status: Option<String>,
    cvss_final: Option<f64>,
    pos: u64,
}

#[derive(Default)]
struct Details {
    title: String,
    severity: Option<String>,
    category: Option<String>,
    threat: Option<String>,
    impact: Option<String>,
    solution: Option<String>,
    cves: Vec<String>,
    cvss: Option<f64>,
    cvss3: Option<f64>,
    exploit: bool,
}

fn host_asset(h: &Host) -> RawAsset {
    let name = h.dns.clone().or_else(|| h.netbios.clone()).or_else(|| h.ip.clone()).unwrap_or_default();
    let mut a = RawAsset::named(AssetKind::Host, name);
    if let Some(ip) = &h.ip {
        a.ips.push(ip.clone());
    }
    if let Some(d) = &h.dns {
        if d.contains('.') {
            a.fqdn = Some(d.clone());
            a.hostname = d.split('.').next().map(str::to_string);
        } else {
            a.hostname = Some(d.clone());
        }
    } else if let Some(n) = &h.netbios {
        a.hostname = Some(n.to_ascii_lowercase());
    }
    a.os = h.os.clone();
    a
}

pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<(), ParseError> {
    let mut seen_root = false;
    let mut host: Option<Host> = None;
    let mut info: Option<Info> = None;
    let mut infos: Vec<Info> = Vec::new();
    let mut details: HashMap<String, Details> = HashMap::new();
    let mut cur: Option<(String, Details)> = None;
    let mut in_cve_list = false;
    let mut generated = None;
    drive(input, |ev, pos| {
        match ev {
            XmlEv::Open(name, e) => match name {
                "ASSET_DATA_REPORT" => seen_root = true,
                "HOST" => host = Some(Host::default()),
                "VULN_INFO" => {
                    let h = match host.as_mut() {
                        Some(h) => h,
                        None => return Err(ParseError::at_byte(pos, "<VULN_INFO> outside <HOST>")),
                    };
                    if h.idx.is_none() {
                        h.idx = Some(sink.asset(host_asset(h)));
                    }
                    info = Some(Info { asset: h.idx.unwrap(), pos, ..Default::default() });
                }
                "VULN_DETAILS" => {
                    let id = attr(e, "id").unwrap_or_default();
                    cur = Some((id.trim_start_matches("qid_").to_string(), Details::default()));
                }
                "CVE_ID_LIST" => in_cve_list = true,
                _ => {}
            },
            XmlEv::Close(name, text) => {
                if let Some(i) = info.as_mut() {
                    match name {
                        "QID" => i.qid = text.trim().to_string(),
                        "TYPE" => i.kind = text.trim().to_string(),
                        "PORT" => i.port = text.trim().parse().ok(),
                        "PROTOCOL" => i.proto = opt(text),
                        "VULN_STATUS" => i.status = opt(text),
                        "CVSS3_FINAL" => i.cvss_final = text.trim().parse().ok(),
                        "CVSS_FINAL" => {
                            if i.cvss_final.is_none() {
                                i.cvss_final = text.trim().parse().ok()
                            }
                        }
                        "VULN_INFO" => infos.push(info.take().unwrap()),
                        _ => {}
                    }
                    return Ok(());
                }
                if let Some((qid, d)) = cur.as_mut() {
                    match name {
                        "QID" => {
                            if qid.is_empty() {
                                *qid = text.trim().to_string()
                            }
                        }
                        "TITLE" => d.title = text.trim().to_string(),
                        "SEVERITY" => d.severity = opt(text),
                        "CATEGORY" => d.category = opt(text),
                        "THREAT" => d.threat = opt(text).map(|t| strip_html(&t)),
                        "IMPACT" => d.impact = opt(text).map(|t| strip_html(&t)),
                        "SOLUTION" => d.solution = opt(text).map(|t| strip_html(&t)),
                        "ID" if in_cve_list => {
                            let c = text.trim().to_ascii_uppercase();
                            if c.starts_with("CVE-") && !d.cves.contains(&c) {
                                d.cves.push(c);
                            }
                        }
                        "CVE_ID_LIST" => in_cve_list = false,
                        "BASE" | "CVSS_BASE" => {
                            if d.cvss.is_none() {
                                d.cvss = text.trim().parse().ok()
                            }
                        }
                        "CVSS3_BASE" => d.cvss3 = text.trim().parse().ok(),
                        "EXPLT" => d.exploit = true,
                        "VULN_DETAILS" => {
                            let (q, d) = cur.take().unwrap();
                            details.insert(q, d);
                        }
                        _ => {}
                    }
                    return Ok(());
                }
                if let Some(h) = host.as_mut() {
                    match name {
                        "IP" => h.ip = opt(text),
                        "DNS" => h.dns = opt(text),
                        "NETBIOS" => h.netbios = opt(text),
                        "OPERATING_SYSTEM" => h.os = opt(text),
                        "HOST" => {
                            let h = host.take().unwrap();
                            if h.idx.is_none() {
                                sink.asset(host_asset(&h));
                            }
                        }
                        _ => {}
                    }
                    return Ok(());
                }
                if name == "GENERATION_DATETIME" {
                    generated = parse_time(text);
                }
            }
        }
        Ok(())
    })?;
    if !seen_root {
        return Err(ParseError::new("byte 0", "not a Qualys ASSET_DATA_REPORT"));
    }
    if let Some(t) = generated {
        sink.scan_time(t);
    }
    for i in infos {
        if i.status.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("fixed")) {
            sink.skip(format!("byte {}", i.pos), format!("QID {} reported as Fixed by Qualys: not a present finding", i.qid), String::new());
            continue;
        }
        let d = match details.get(&i.qid) {
            Some(d) => d,
            None => {
                sink.skip(
                    format!("byte {}", i.pos),
                    format!("QID {} has no entry in the report's glossary", i.qid),
                    String::new(),
                );
                continue;
            }
        };
        let title = if d.title.is_empty() { format!("QID {}", i.qid) } else { d.title.clone() };
        let mut f = RawFinding::new(i.asset, i.qid.clone(), title, Category::Vulnerability);
        let sev = d.severity.clone().unwrap_or_default();
        f.severity = if i.kind == "Ig" {
            Severity::Info
        } else {
            match sev.as_str() {
                "5" => Severity::Critical,
                "4" => Severity::High,
                "3" => Severity::Medium,
                "2" => Severity::Low,
                _ => Severity::Info,
            }
        };
        f.raw_severity = format!("{sev} ({})", i.kind);
        f.cves = d.cves.clone();
        f.cvss_score = d.cvss3.or(d.cvss).or(i.cvss_final);
        f.description = match (&d.threat, &d.impact) {
            (Some(t), Some(im)) if im != "N/A" => Some(format!("{t}\n\nImpact: {im}")),
            (Some(t), _) => Some(t.clone()),
            (None, im) => im.clone(),
        };
        f.solution = d.solution.clone().filter(|s| s != "N/A");
        f.port = i.port;
        f.protocol = i.proto.clone();
        f.exploit_available = Some(d.exploit);
        f.raw_id = format!("QID {}/{}/{}", i.qid, i.port.unwrap_or(0), i.proto.clone().unwrap_or_default());
        let _ = &d.category;
        sink.finding(f);
    }
    Ok(())
}
