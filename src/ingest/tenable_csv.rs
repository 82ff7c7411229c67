//! Tenable / Nessus CSV exports: Nessus and Tenable.sc ("Plugin ID,CVE,..." or "Plugin,Plugin Name,...")
//! and Tenable.io / Tenable VM (`asset.*`, `definition.*`, often `;`-delimited).
//! Exports repeat a plugin once per CVE: rows of one plugin on one host and port are folded into one finding.

use super::{parse_time, ParseError, Sink};
use crate::model::{extract_cves, norm_cwe, AssetKind, Category, RawAsset, RawFinding, Severity};
use std::collections::HashMap;
use std::io::BufRead;

/// Column lookup by any of several header names (case-insensitive).
pub struct Header {
    idx: HashMap<String, usize>,
}

impl Header {
    pub fn new(rec: &csv::StringRecord) -> Self {
        let mut idx = HashMap::new();
        for (i, h) in rec.iter().enumerate() {
            idx.entry(h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase()).or_insert(i);
        }
        Header { idx }
    }
    pub fn find(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|n| self.idx.get(&n.to_ascii_lowercase()).copied())
    }
    pub fn get<'r>(&self, rec: &'r csv::StringRecord, names: &[&str]) -> Option<&'r str> {
        let v = rec.get(self.find(names)?)?.trim();
        if v.is_empty() { None } else { Some(v) }
    }
}

/// Guess the delimiter from the header line.
pub fn sniff_delimiter(first_line: &str) -> u8 {
    let c = |ch| first_line.matches(ch).count();
    let (comma, semi, tab) = (c(','), c(';'), c('\t'));
    if semi > comma && semi >= tab {
        b';'
    } else if tab > comma {
        b'\t'
    } else {
        b','
    }
}

/// Build a CSV reader over `input`, sniffing the delimiter from the first line.
pub fn reader(input: &mut dyn BufRead, delimiter: Option<u8>) -> Result<csv::Reader<&mut dyn BufRead>, ParseError> {
    let d = match delimiter {
        Some(d) => d,
        None => {
            let buf = input.fill_buf().map_err(|e| ParseError::new("line 1", format!("cannot read: {e}")))?;
            let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
            sniff_delimiter(&String::from_utf8_lossy(&buf[..end]))
        }
    };
    Ok(csv::ReaderBuilder::new().delimiter(d).flexible(true).has_headers(false).from_reader(input))
}

pub fn csv_err(e: &csv::Error) -> ParseError {
    match e.position() {
        Some(p) => ParseError::new(format!("line {}", p.line()), e.to_string()),
        None => ParseError::new("file", e.to_string()),
    }
}

const PLUGIN: &[&str] = &["Plugin ID", "Plugin", "definition.id"];
const NAME: &[&str] = &["Name", "Plugin Name", "definition.name"];
const SEVERITY: &[&str] = &["Risk", "Severity", "Risk Factor", "definition.severity", "severity"];
const HOST: &[&str] = &["Host", "asset.name", "IP Address", "asset.display_ipv4_address"];
const IP: &[&str] = &["IP Address", "asset.display_ipv4_address"];
const FQDN: &[&str] = &["FQDN", "DNS Name", "asset.display_fqdn"];
const NETBIOS: &[&str] = &["NetBios", "NetBIOS Name", "asset.netbios_name"];
const HOSTNAME: &[&str] = &["asset.host_name"];
const OS: &[&str] = &["OS", "asset.operating_system"];
const PORT: &[&str] = &["Port", "port"];
const PROTO: &[&str] = &["Protocol", "protocol"];
const CVE: &[&str] = &["CVE", "definition.cve"];
const CVSS3: &[&str] = &["CVSS3 Base Score", "CVSS V3 Base Score", "definition.cvss3.base_score"];
const CVSS2: &[&str] = &["CVSS", "CVSS Base Score", "CVSS V2 Base Score", "definition.cvss2.base_score"];
const V3: &[&str] = &["CVSS3 Vector", "CVSS V3 Vector", "definition.cvss3.base_vector"];
const V2: &[&str] = &["CVSS Vector", "CVSS V2 Vector", "definition.cvss2.base_vector"];
const SYNOPSIS: &[&str] = &["Synopsis", "definition.synopsis"];
const DESCRIPTION: &[&str] = &["Description", "definition.description"];
const SOLUTION: &[&str] = &["Solution", "definition.solution"];
const EXPLOIT: &[&str] = &["Exploit Available", "Exploit?", "definition.exploited_by_nessus"];
const STATE: &[&str] = &["Vulnerability State", "state"];
const CWE: &[&str] = &["definition.cwe", "CWE"];
const SEEN: &[&str] = &["Last Observed", "Last Found", "last_seen", "Host End"];
const FAMILY: &[&str] = &["Family", "Plugin Family", "definition.family"];

pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<(), ParseError> {
    let mut rdr = reader(input, None)?;
    let mut records = rdr.records();
    let header = match records.next() {
        Some(Ok(h)) => Header::new(&h),
        Some(Err(e)) => return Err(csv_err(&e)),
        None => return Err(ParseError::new("line 1", "empty CSV file")),
    };
    if header.find(PLUGIN).is_none() {
        return Err(ParseError::new("line 1", "not a Tenable/Nessus export: no \"Plugin ID\", \"Plugin\" or \"definition.id\" column"));
    }
    let mut hosts: HashMap<String, u32> = HashMap::new();
    let mut folded: HashMap<(u32, String, i32, String), RawFinding> = HashMap::new();
    let mut order: Vec<(u32, String, i32, String)> = Vec::new();
    let mut latest = None;
    for rec in records {
        let rec = rec.map_err(|e| csv_err(&e))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.iter().all(|c| c.trim().is_empty()) {
            continue; // blank trailing rows in Tenable.sc exports
        }
        let plugin = match header.get(&rec, PLUGIN) {
            Some(p) => p.to_string(),
            None => {
                sink.skip(format!("line {line}"), "row has no plugin id".into(), super::snippet(&rec.iter().collect::<Vec<_>>().join(",")));
                continue;
            }
        };
        let host = header.get(&rec, HOST).or(header.get(&rec, FQDN)).or(header.get(&rec, IP)).map(str::to_string);
        let host = match host {
            Some(h) => h,
            None => {
                sink.skip(format!("line {line}"), format!("plugin {plugin}: row names no host"), String::new());
                continue;
            }
        };
        if header.get(&rec, STATE).is_some_and(|s| s.eq_ignore_ascii_case("fixed")) {
            sink.skip(format!("line {line}"), format!("plugin {plugin} on {host}: state Fixed, not a present finding"), String::new());
            continue;
        }
        if let Some(t) = header.get(&rec, SEEN).and_then(parse_time) {
            if latest.is_none_or(|l| t > l) {
                latest = Some(t);
            }
        }
        let ip = header.get(&rec, IP).map(str::to_string);
        let fqdn = header.get(&rec, FQDN).map(str::to_string);
        let key = format!("{host}|{}|{}", ip.clone().unwrap_or_default(), fqdn.clone().unwrap_or_default());
        let idx = match hosts.get(&key) {
            Some(i) => *i,
            None => {
                let mut a = RawAsset::named(AssetKind::Host, fqdn.clone().unwrap_or(host.clone()));
                if let Some(ip) = &ip {
                    a.ips.push(ip.clone());
                }
                if host.parse::<std::net::IpAddr>().is_ok() {
                    a.ips.push(host.clone());
                } else if fqdn.is_none() {
                    if host.contains('.') { a.fqdn = Some(host.clone()) } else { a.hostname = Some(host.clone()) }
                }
                if let Some(f) = &fqdn {
                    a.fqdn = Some(f.clone());
                }
                a.hostname = a.hostname.clone().or(header.get(&rec, HOSTNAME).map(str::to_string)).or(header.get(&rec, NETBIOS).map(|n| n.to_ascii_lowercase()));
                a.os = header.get(&rec, OS).map(|o| o.lines().next().unwrap_or("").to_string());
                let i = sink.asset(a);
                hosts.insert(key, i);
                i
            }
        };
        let port: i32 = header.get(&rec, PORT).and_then(|p| p.parse().ok()).unwrap_or(0);
        let proto = header.get(&rec, PROTO).unwrap_or("").to_ascii_lowercase();
        let k = (idx, plugin.clone(), port, proto.clone());
        let f = match folded.get_mut(&k) {
            Some(f) => f,
            None => {
                let title = header.get(&rec, NAME).unwrap_or(&plugin).to_string();
                let cat = if header.get(&rec, FAMILY).is_some_and(|f| f.starts_with("Web App")) { Category::Web } else { Category::Vulnerability };
                let mut f = RawFinding::new(idx, plugin.clone(), title, cat);
                let raw = header.get(&rec, SEVERITY).unwrap_or("").to_string();
                f.severity = Severity::parse_loose(&raw).unwrap_or(Severity::Info);
                f.raw_severity = raw;
                let c3: Option<f64> = header.get(&rec, CVSS3).and_then(|s| s.parse().ok());
                let c2: Option<f64> = header.get(&rec, CVSS2).and_then(|s| s.parse().ok());
                f.cvss_score = c3.or(c2);
                f.cvss_vector = if c3.is_some() { header.get(&rec, V3).map(str::to_string) } else { header.get(&rec, V2).map(str::to_string) };
                f.description = header.get(&rec, DESCRIPTION).or(header.get(&rec, SYNOPSIS)).map(str::to_string);
                f.solution = header.get(&rec, SOLUTION).filter(|s| *s != "n/a").map(str::to_string);
                f.port = Some(port);
                f.protocol = if proto.is_empty() { None } else { Some(proto.clone()) };
                f.exploit_available = header.get(&rec, EXPLOIT).map(|e| matches!(e.to_ascii_lowercase().as_str(), "true" | "yes"));
                f.raw_id = format!("{plugin}/{port}/{proto}");
                order.push(k.clone());
                folded.entry(k.clone()).or_insert(f)
            }
        };
        if let Some(c) = header.get(&rec, CVE) {
            extract_cves(c, &mut f.cves);
        }
        if let Some(c) = header.get(&rec, CWE) {
            for part in c.split([',', ' ']) {
                if let Some(c) = norm_cwe(part) {
                    if !f.cwes.contains(&c) {
                        f.cwes.push(c);
                    }
                }
            }
        }
    }
    if let Some(t) = latest {
        sink.scan_time(t);
    }
    for k in order {
        if let Some(f) = folded.remove(&k) {
            sink.finding(f);
        }
    }
    Ok(())
}
