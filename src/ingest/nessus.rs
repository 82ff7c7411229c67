//! Nessus `.nessus` v2 XML (NessusClientData_v2), streamed.

use super::xml::{attr, attrs, drive, local, opt, XmlEv};
use super::{parse_time, push_int, ParseError, Sink};
use crate::model::{norm_cwe, AssetKind, Category, IdKind, RawAsset, Severity};
use std::io::BufRead;

#[derive(Default)]
struct Host {
    name: String,
    ip: Option<String>,
    fqdn: Option<String>,
    netbios: Option<String>,
    os: Option<String>,
    end: Option<String>,
    idx: Option<u32>,
    cloud_id: Option<String>,
    system_type: Option<String>,
}

impl Host {
    /// Nessus WAS reports a web application as a ReportHost named by its URL.
    fn is_web_app(&self) -> bool {
        self.name.starts_with("http://") || self.name.starts_with("https://") || self.system_type.as_deref() == Some("web_application")
    }
}

fn host_asset(h: &Host) -> RawAsset {
    if h.is_web_app() {
        let url = if h.name.contains("://") { h.name.clone() } else { h.fqdn.clone().unwrap_or(h.name.clone()) };
        let mut a = RawAsset::named(AssetKind::WebApp, url.clone());
        a.ids.push((IdKind::WebUrl, url.trim_end_matches('/').to_string()));
        return a;
    }
    let mut a = RawAsset::named(AssetKind::Host, h.name.clone());
    let name_is_ip = h.name.parse::<std::net::IpAddr>().is_ok();
    if let Some(ip) = &h.ip {
        a.ips.push(ip.clone());
    }
    if name_is_ip {
        a.ips.push(h.name.clone());
    }
    match &h.fqdn {
        Some(f) if f.contains('.') => {
            a.fqdn = Some(f.clone());
            a.hostname = f.split('.').next().map(str::to_string);
        }
        Some(f) => a.hostname = Some(f.clone()),
        None => {
            if !name_is_ip {
                if h.name.contains('.') {
                    a.fqdn = Some(h.name.clone());
                    a.hostname = h.name.split('.').next().map(str::to_string);
                } else {
                    a.hostname = Some(h.name.clone());
                }
            }
        }
    }
    if a.hostname.is_none() {
        a.hostname = h.netbios.clone().map(|n| n.to_ascii_lowercase());
    }
    if let Some(f) = &a.fqdn {
        a.name = f.clone();
    } else if let Some(hn) = &a.hostname {
        a.name = hn.clone();
    }
    a.os = h.os.clone();
    if let Some(id) = &h.cloud_id {
        a.ids.push((IdKind::CloudId, id.clone()));
    }
    a
}

/// What a `<ReportItem>` holds besides its finding, which is filled where the sink keeps it
/// (`Sink::blank`, `Sink::current`). The texts' buffers serve every item in turn.
#[derive(Default)]
struct Item {
    open: bool,
    cvss2: Option<f64>,
    cvss3: Option<f64>,
    /// Whether the item had a CVSS v2 vector, a v3 vector, a synopsis (in the buffers that follow).
    has_v2: bool,
    has_v3: bool,
    has_synopsis: bool,
    v2: String,
    v3: String,
    synopsis: String,
}

impl Item {
    fn start(&mut self) {
        self.open = true;
        self.cvss2 = None;
        self.cvss3 = None;
        self.has_v2 = false;
        self.has_v3 = false;
        self.has_synopsis = false;
    }
}

/// `text` trimmed into `buf`; false (and `buf` untouched) when there is nothing left.
fn keep_text(buf: &mut String, text: &str) -> bool {
    let t = text.trim();
    if !t.is_empty() {
        buf.clear();
        buf.push_str(t);
    }
    !t.is_empty()
}

pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<(), ParseError> {
    let mut host: Option<Host> = None;
    let mut tag_name: Option<String> = None;
    let mut item = Item::default();
    let mut seen_root = false;
    let mut latest_end: Option<chrono::DateTime<chrono::Utc>> = None;
    drive(input, |ev, pos| {
        match ev {
            XmlEv::Open(name, e) => match name {
                "NessusClientData_v2" => seen_root = true,
                "ReportHost" => {
                    host = Some(Host {
                        name: attr(e, "name").unwrap_or_default(),
                        ..Default::default()
                    })
                }
                "tag" => tag_name = attr(e, "name"),
                "ReportItem" => {
                    let h = match host.as_mut() {
                        Some(h) => h,
                        None => return Err(ParseError::at_byte(pos, "<ReportItem> outside <ReportHost>")),
                    };
                    if h.idx.is_none() {
                        h.idx = Some(sink.asset(host_asset(h)));
                    }
                    let [plugin, port, proto, sev_attr, family, title] =
                        attrs(e, ["pluginID", "port", "protocol", "severity", "pluginFamily", "pluginName"]);
                    let plugin = plugin.unwrap_or_default();
                    let port: i32 = port.and_then(|p| p.parse().ok()).unwrap_or(0);
                    let proto = proto.unwrap_or_default();
                    let sev_attr = sev_attr.unwrap_or_default();
                    let family = family.unwrap_or_default();
                    let title = title.unwrap_or_default();
                    let cat = if family.starts_with("Web App") || h.is_web_app() { Category::Web } else { Category::Vulnerability };
                    // Written into a finding the sink lends (reused from an earlier batch): a Nessus
                    // report is up to millions of these.
                    let f = sink.blank(h.idx.unwrap(), cat);
                    f.vuln_id.push_str(&plugin);
                    f.title.push_str(&title);
                    f.severity = match sev_attr.as_str() {
                        "4" => Severity::Critical,
                        "3" => Severity::High,
                        "2" => Severity::Medium,
                        "1" => Severity::Low,
                        _ => Severity::Info,
                    };
                    f.raw_severity.push_str(&sev_attr);
                    f.port = Some(port);
                    if !proto.is_empty() {
                        f.set_protocol(&proto);
                    }
                    f.raw_id.push_str(&plugin);
                    f.raw_id.push('/');
                    push_int(&mut f.raw_id, port.into());
                    f.raw_id.push('/');
                    f.raw_id.push_str(&proto);
                    item.start();
                }
                _ => {}
            },
            XmlEv::Close(name, text) => match name {
                "tag" => {
                    if let (Some(h), Some(n)) = (host.as_mut(), tag_name.take()) {
                        let v = opt(text);
                        match n.as_str() {
                            "host-ip" => h.ip = v,
                            "host-fqdn" => h.fqdn = v,
                            "netbios-name" => h.netbios = v,
                            "operating-system" => h.os = v.map(|s| s.lines().next().unwrap_or("").to_string()),
                            "HOST_END" => h.end = v,
                            "aws-instance-instanceId" | "azure-vm-id" | "gcp-instance-id" => h.cloud_id = v,
                            "system-type" => h.system_type = v,
                            _ => {}
                        }
                    }
                }
                "HostProperties" => {
                    if let Some(h) = host.as_mut() {
                        if h.idx.is_none() {
                            h.idx = Some(sink.asset(host_asset(h)));
                        }
                        if let Some(t) = h.end.as_deref().and_then(parse_time) {
                            if latest_end.is_none_or(|l| t > l) {
                                latest_end = Some(t);
                            }
                        }
                    }
                }
                "ReportHost" => {
                    if let Some(h) = host.take() {
                        if h.idx.is_none() {
                            // A host with no items was still scanned: it belongs to the scan's scope.
                            sink.asset(host_asset(&h));
                        }
                    }
                }
                "ReportItem" => {
                    if std::mem::take(&mut item.open) {
                        if let Some(f) = sink.current() {
                            let it = &item;
                            if f.description.is_none() && it.has_synopsis {
                                f.set_description(&it.synopsis);
                            }
                            f.cvss_score = it.cvss3.or(it.cvss2);
                            let v2 = it.has_v2.then_some(it.v2.as_str());
                            let v3 = it.has_v3.then_some(it.v3.as_str());
                            if let Some(v) = if it.cvss3.is_some() { v3.or(v2) } else { v2.or(v3) } {
                                f.set_cvss_vector(v);
                            }
                        }
                        sink.commit();
                    }
                }
                _ => {
                    if let (true, Some(f)) = (item.open, sink.current()) {
                        let it = &mut item;
                        match local(name) {
                            "cve" => {
                                let c = text.trim().to_ascii_uppercase();
                                if c.starts_with("CVE-") && !f.cves.contains(&c) {
                                    f.cves.push(c);
                                }
                            }
                            "cwe" => {
                                if let Some(c) = norm_cwe(text) {
                                    if !f.cwes.contains(&c) {
                                        f.cwes.push(c);
                                    }
                                }
                            }
                            "description" => match text.trim() {
                                "" => f.description = None,
                                t => f.set_description(t),
                            },
                            // Only needed when there is no description (the usual order puts the description first).
                            "synopsis" if f.description.is_none() => it.has_synopsis = keep_text(&mut it.synopsis, text),
                            "solution" => match text.trim() {
                                "" | "n/a" => f.solution = None,
                                t => f.set_solution(t),
                            },
                            "cvss3_base_score" => it.cvss3 = text.trim().parse().ok(),
                            "cvss_base_score" => it.cvss2 = text.trim().parse().ok(),
                            "cvss3_vector" => it.has_v3 = keep_text(&mut it.v3, text),
                            "cvss_vector" => it.has_v2 = keep_text(&mut it.v2, text),
                            "exploit_available" => f.exploit_available = Some(text.trim() == "true"),
                            "xref" => {
                                if let Some(g) = text.trim().strip_prefix("GHSA:") {
                                    f.aliases.push(g.trim().to_string());
                                }
                            }
                            "patch_publication_date" | "plugin_output" => {}
                            _ => {}
                        }
                    }
                }
            },
        }
        Ok(())
    })?;
    if !seen_root {
        return Err(ParseError::new("byte 0", "not a Nessus v2 report (no <NessusClientData_v2> root)"));
    }
    if let Some(t) = latest_end {
        sink.scan_time(t);
    }
    Ok(())
}
