//! OWASP ZAP XML report (`<OWASPZAPReport>` with `<site>` and `<alertitem>`), streamed. Each site is a
//! web application asset; each alert instance (URI, method, parameter) is one finding.

use super::xml::{attrs, drive, opt, strip_html, XmlEv};
use super::{ParseError, Sink};
use crate::model::{AssetKind, Category, IdKind, RawAsset, RawFinding, Severity};
use std::io::BufRead;

#[derive(Default)]
struct Alert {
    plugin: String,
    name: String,
    risk: Option<u8>,
    risk_desc: Option<String>,
    desc: Option<String>,
    solution: Option<String>,
    cwe: Option<String>,
    instances: Vec<(String, Option<String>, Option<String>)>,
    pos: u64,
}

pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<(), ParseError> {
    let mut seen = false;
    let mut site: Option<u32> = None;
    let mut alert: Option<Alert> = None;
    let mut inst: Option<(String, Option<String>, Option<String>)> = None;
    drive(input, |ev, pos| {
        match ev {
            XmlEv::Open(name, e) => match name {
                "OWASPZAPReport" => {
                    seen = true;
                    let [generated] = attrs(e, ["generated"]);
                    if let Some(t) = generated.and_then(|g| chrono::NaiveDateTime::parse_from_str(g.trim(), "%a, %d %b %Y %H:%M:%S").ok()) {
                        sink.scan_time(t.and_utc());
                    }
                }
                "site" => {
                    let [n, host] = attrs(e, ["name", "host"]);
                    let url = n.unwrap_or_default();
                    let mut a = RawAsset::named(AssetKind::WebApp, url.clone());
                    a.ids.push((IdKind::WebUrl, url.trim_end_matches('/').to_ascii_lowercase()));
                    if let Some(h) = host.filter(|h| !h.is_empty()) {
                        if h.parse::<std::net::IpAddr>().is_ok() {
                            a.ips.push(h);
                        } else {
                            a.hostname = Some(h);
                        }
                    }
                    site = Some(sink.asset(a));
                }
                "alertitem" => alert = Some(Alert { pos, ..Default::default() }),
                "instance" if alert.is_some() => inst = Some((String::new(), None, None)),
                _ => {}
            },
            XmlEv::Close(name, text) => {
                if let Some((uri, method, param)) = inst.as_mut() {
                    match name {
                        "uri" => *uri = text.trim().to_string(),
                        "method" => *method = opt(text),
                        "param" => *param = opt(text),
                        "instance" => {
                            if let (Some(a), Some(i)) = (alert.as_mut(), inst.take()) {
                                a.instances.push(i);
                            }
                        }
                        _ => {}
                    }
                    return Ok(());
                }
                if let Some(a) = alert.as_mut() {
                    match name {
                        "pluginid" => a.plugin = text.trim().to_string(),
                        "alert" | "name" if a.name.is_empty() => a.name = text.trim().to_string(),
                        "riskcode" => a.risk = text.trim().parse().ok(),
                        "riskdesc" => a.risk_desc = opt(text),
                        "desc" => a.desc = opt(text).map(|d| strip_html(&d)),
                        "solution" => a.solution = opt(text).map(|d| strip_html(&d)),
                        "cweid" => a.cwe = opt(text).filter(|c| c != "-1" && c != "0"),
                        "alertitem" => {
                            let a = alert.take().unwrap_or_default();
                            match site {
                                Some(s) => emit(a, s, sink),
                                None => sink.skip(format!("byte {}", a.pos), "alert outside a <site>".into(), a.name.clone()),
                            }
                        }
                        _ => {}
                    }
                }
                if name == "site" {
                    site = None;
                }
            }
        }
        Ok(())
    })?;
    if !seen {
        return Err(ParseError::new("byte 0", "not an OWASP ZAP report (no <OWASPZAPReport> element)"));
    }
    Ok(())
}

fn emit(a: Alert, site: u32, sink: &mut dyn Sink) {
    if a.plugin.is_empty() {
        sink.skip(format!("byte {}", a.pos), "alert without a pluginid".into(), a.name.clone());
        return;
    }
    let severity = match a.risk {
        Some(3) => Severity::High,
        Some(2) => Severity::Medium,
        Some(1) => Severity::Low,
        _ => Severity::Info,
    };
    let instances = if a.instances.is_empty() { vec![(String::new(), None, None)] } else { a.instances.clone() };
    for (uri, method, param) in instances {
        let mut f = RawFinding::new(site, format!("zap-{}", a.plugin), a.name.clone(), Category::Web);
        f.severity = severity;
        f.raw_severity = a.risk_desc.clone().unwrap_or_else(|| a.risk.map(|r| r.to_string()).unwrap_or_default());
        f.description = a.desc.clone();
        f.solution = a.solution.clone();
        f.cwes = a.cwe.iter().map(|c| format!("CWE-{c}")).collect();
        let mut loc = format!("{} {uri}", method.clone().unwrap_or_else(|| "GET".into()));
        if let Some(p) = &param {
            loc.push_str(&format!(" ({p})"));
        }
        f.location = Some(loc.trim().to_string());
        f.raw_id = format!("{}|{}|{}|{}", a.plugin, uri, method.unwrap_or_default(), param.unwrap_or_default());
        sink.finding(f);
    }
}
