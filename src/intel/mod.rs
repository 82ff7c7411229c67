//! Threat intelligence feeds, offline first: the CISA KEV catalog (JSON or CSV), FIRST EPSS scores (the
//! daily CSV, or a CVE,CVSS3,EPSS,EPSS Percentile compilation), the MITRE ATT&CK and CAPEC STIX bundles,
//! and CTID mapping files. Each file is recognised from its content, validated whole, and loaded in one
//! transaction that replaces the previous copy of that feed; a bad file leaves the previous intel in force.

pub mod update;

use crate::store::Store;
use anyhow::{anyhow, bail, Context};
use chrono::{NaiveDate, NaiveDateTime};
use duckdb::types::Value;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Feeds are small (ATT&CK, the largest, is ~45 MB); anything beyond this is refused rather than read.
pub(crate) const MAX_FEED_BYTES: u64 = 512 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub feed: String,
    pub version: Option<String>,
    pub date: Option<NaiveDateTime>,
    pub records: usize,
    /// Open findings rescored after the load.
    pub rescored: usize,
}

impl Loaded {
    pub fn line(&self, file: &str) -> String {
        format!(
            "{file}: {} {}{}: {} records; {} open findings rescored",
            self.feed,
            self.version.clone().map(|v| format!("version {v}")).unwrap_or_else(|| "(no version stated)".into()),
            self.date.map(|d| format!(" of {}", d.format("%Y-%m-%d"))).unwrap_or_default(),
            self.records,
            self.rescored
        )
    }
}

/// One parsed feed, ready to replace its predecessor.
enum Parsed {
    Kev { version: Option<String>, date: Option<NaiveDateTime>, rows: Vec<KevRow> },
    Epss { version: Option<String>, date: Option<NaiveDateTime>, rows: Vec<(String, f64, Option<f64>)> },
    Attack { version: Option<String>, date: Option<NaiveDateTime>, techniques: Vec<Technique>, tactics: Vec<(String, String, String)> },
    Capec { version: Option<String>, date: Option<NaiveDateTime>, rows: Vec<CapecRow> },
    Ctid { framework: String, version: Option<String>, date: Option<NaiveDateTime>, rows: Vec<CtidRow> },
}

struct KevRow {
    cve: String,
    vendor: Option<String>,
    product: Option<String>,
    name: Option<String>,
    added: NaiveDate,
    due: Option<NaiveDate>,
    ransomware: bool,
    action: Option<String>,
    cwes: Vec<String>,
}

struct Technique {
    id: String,
    name: String,
    tactics: Vec<String>,
    sub: bool,
    deprecated: bool,
    url: Option<String>,
}

struct CapecRow {
    id: String,
    name: String,
    cwes: Vec<String>,
    techniques: Vec<String>,
    deprecated: bool,
}

struct CtidRow {
    capability_id: String,
    group: Option<String>,
    description: Option<String>,
    mapping_type: Option<String>,
    technique: String,
    technique_name: Option<String>,
    category: Option<String>,
    value: Option<String>,
}

/// Read a feed file whole (gzip transparently), refusing files beyond `MAX_FEED_BYTES`.
fn read_feed(path: &Path) -> anyhow::Result<(Vec<u8>, String)> {
    let raw = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let sha = hex::encode(Sha256::digest(&raw));
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(MAX_FEED_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| anyhow!("{}: gzip stream broken after {} bytes: {e}", path.display(), out.len()))?;
        out
    } else {
        raw
    };
    if bytes.len() as u64 > MAX_FEED_BYTES {
        bail!("{}: larger than {} MB; not a feed this tool knows", path.display(), MAX_FEED_BYTES >> 20);
    }
    Ok((bytes, sha))
}

fn json_err(file: &str, e: serde_json::Error) -> anyhow::Error {
    anyhow!("{file} line {} column {}: {e}", e.line(), e.column())
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
        .ok()
        .or_else(|| NaiveDate::parse_from_str(s, "%m/%d/%Y").ok())
}

fn midnight(d: NaiveDate) -> NaiveDateTime {
    d.and_hms_opt(0, 0, 0).unwrap_or_default()
}

fn valid_cve(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() >= 13
        && s.starts_with("CVE-")
        && b[4..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'-'
        && b[9..].iter().all(u8::is_ascii_digit)
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|x| x.trim().to_string()).filter(|x| !x.is_empty())
}

fn split_cwes(s: &str) -> Vec<String> {
    s.split([',', ';']).map(|c| c.trim().to_string()).filter(|c| c.starts_with("CWE-")).collect()
}

// ---- recognition ------------------------------------------------------------------------------------

fn recognise(file: &str, bytes: &[u8]) -> anyhow::Result<Parsed> {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(8192)]).to_string();
    let trimmed = head.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        if head.contains("\"vulnerabilities\"") && (head.contains("catalogVersion") || head.contains("cveID")) {
            return kev_json(file, bytes);
        }
        if head.contains("\"mapping_objects\"") || head.contains("\"mapping_framework\"") {
            return ctid(file, bytes);
        }
        if head.contains("\"bundle\"") && head.contains("\"objects\"") {
            return stix(file, bytes);
        }
        bail!("{file}: JSON, but not a feed this tool knows (expected a CISA KEV catalog, a STIX bundle of ATT&CK or CAPEC, or a CTID mapping file)");
    }
    let first = trimmed.lines().next().unwrap_or("").trim();
    let lower = first.to_ascii_lowercase();
    if lower.starts_with("#model_version") || lower.starts_with("cve,epss") || lower.starts_with("cve,cvss3,epss") {
        return epss_csv(file, bytes);
    }
    if lower.starts_with("cveid,") {
        return kev_csv(file, bytes);
    }
    bail!("{file}: not a feed this tool knows (expected KEV JSON/CSV, EPSS CSV, ATT&CK or CAPEC STIX JSON, or a CTID mapping file)")
}

// ---- KEV ----------------------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KevCatalog {
    catalog_version: Option<String>,
    date_released: Option<String>,
    vulnerabilities: Vec<KevJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KevJson {
    #[serde(rename = "cveID")]
    cve_id: String,
    vendor_project: Option<String>,
    product: Option<String>,
    vulnerability_name: Option<String>,
    date_added: String,
    due_date: Option<String>,
    known_ransomware_campaign_use: Option<String>,
    required_action: Option<String>,
    #[serde(default)]
    cwes: Vec<String>,
}

fn kev_row(where_: &str, k: KevJson) -> anyhow::Result<KevRow> {
    let cve = k.cve_id.trim().to_ascii_uppercase();
    if !valid_cve(&cve) {
        bail!("{where_}: `{}` is not a CVE id", k.cve_id);
    }
    let added = parse_date(&k.date_added).ok_or_else(|| anyhow!("{where_} ({cve}): dateAdded `{}` is not a date", k.date_added))?;
    let due = match k.due_date.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(d) => Some(parse_date(d).ok_or_else(|| anyhow!("{where_} ({cve}): dueDate `{d}` is not a date"))?),
        None => None,
    };
    Ok(KevRow {
        cve,
        vendor: nonempty(k.vendor_project),
        product: nonempty(k.product),
        name: nonempty(k.vulnerability_name),
        added,
        due,
        ransomware: k.known_ransomware_campaign_use.as_deref().map(|s| s.trim().eq_ignore_ascii_case("known")).unwrap_or(false),
        action: nonempty(k.required_action),
        cwes: k.cwes.into_iter().filter(|c| c.starts_with("CWE-")).collect(),
    })
}

fn kev_json(file: &str, bytes: &[u8]) -> anyhow::Result<Parsed> {
    let cat: KevCatalog = serde_json::from_slice(bytes).map_err(|e| json_err(file, e))?;
    if cat.vulnerabilities.is_empty() {
        bail!("{file}: the KEV catalog lists no vulnerabilities");
    }
    let mut rows = Vec::with_capacity(cat.vulnerabilities.len());
    for (i, k) in cat.vulnerabilities.into_iter().enumerate() {
        rows.push(kev_row(&format!("{file}: vulnerabilities[{i}]"), k)?);
    }
    let date = cat
        .date_released
        .as_deref()
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok().map(|t| t.naive_utc()).or_else(|| parse_date(d).map(midnight)))
        .or_else(|| rows.iter().map(|r| r.added).max().map(midnight));
    Ok(Parsed::Kev { version: cat.catalog_version, date, rows })
}

fn kev_csv(file: &str, bytes: &[u8]) -> anyhow::Result<Parsed> {
    let mut rd = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let headers = rd.headers().map_err(|e| anyhow!("{file}: {e}"))?.clone();
    let idx = |n: &str| headers.iter().position(|h| h.trim() == n);
    let (Some(ci), Some(ai)) = (idx("cveID"), idx("dateAdded")) else {
        bail!("{file} line 1: a KEV CSV needs the columns cveID and dateAdded");
    };
    let get = |r: &csv::StringRecord, n: &str| idx(n).and_then(|i| r.get(i)).map(|s| s.to_string());
    let mut rows = Vec::new();
    for rec in rd.records() {
        let r = rec.map_err(|e| anyhow!("{file}: {e}"))?;
        let line = r.position().map(|p| p.line()).unwrap_or(0);
        let k = KevJson {
            cve_id: r.get(ci).unwrap_or("").to_string(),
            vendor_project: get(&r, "vendorProject"),
            product: get(&r, "product"),
            vulnerability_name: get(&r, "vulnerabilityName"),
            date_added: r.get(ai).unwrap_or("").to_string(),
            due_date: get(&r, "dueDate"),
            known_ransomware_campaign_use: get(&r, "knownRansomwareCampaignUse"),
            required_action: get(&r, "requiredAction"),
            cwes: get(&r, "cwes").map(|c| split_cwes(&c)).unwrap_or_default(),
        };
        rows.push(kev_row(&format!("{file} line {line}"), k)?);
    }
    if rows.is_empty() {
        bail!("{file}: the KEV catalog lists no vulnerabilities");
    }
    // The CSV form carries no catalog version: the newest entry dates it.
    let newest = rows.iter().map(|r| r.added).max();
    Ok(Parsed::Kev { version: newest.map(|d| d.format("%Y.%m.%d").to_string()), date: newest.map(midnight), rows })
}

// ---- EPSS ---------------------------------------------------------------------------------------------

fn epss_csv(file: &str, bytes: &[u8]) -> anyhow::Result<Parsed> {
    let text = std::str::from_utf8(bytes).map_err(|e| anyhow!("{file}: not UTF-8 text at byte {}", e.valid_up_to()))?;
    let text = text.trim_start_matches('\u{feff}');
    let mut version = None;
    let mut date = None;
    let mut body = text;
    let mut first_line = 1;
    if text.starts_with('#') {
        let (meta, rest) = text.split_once('\n').unwrap_or((text, ""));
        for part in meta.trim_start_matches('#').trim().split(',') {
            if let Some((k, v)) = part.split_once(':') {
                match k.trim() {
                    "model_version" => version = Some(v.trim().to_string()),
                    "score_date" => {
                        let v = v.trim();
                        date = chrono::DateTime::parse_from_rfc3339(v)
                            .map(|t| t.naive_utc())
                            .ok()
                            .or_else(|| chrono::DateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%z").ok().map(|t| t.naive_utc()))
                            .or_else(|| parse_date(v).map(midnight));
                        if date.is_none() {
                            bail!("{file} line 1: score_date `{v}` is not a date");
                        }
                    }
                    _ => {}
                }
            }
        }
        body = rest;
        first_line = 2;
    }
    let mut rd = csv::ReaderBuilder::new().flexible(true).from_reader(body.as_bytes());
    let headers = rd.headers().map_err(|e| anyhow!("{file} line {first_line}: {e}"))?.clone();
    let find = |names: &[&str]| headers.iter().position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)));
    let (Some(ci), Some(ei)) = (find(&["cve"]), find(&["epss"])) else {
        bail!("{file} line {first_line}: an EPSS file needs the columns cve and epss (got: {})", headers.iter().collect::<Vec<_>>().join(","));
    };
    let pi = find(&["percentile", "epss percentile"]);
    let mut rows = Vec::new();
    for rec in rd.records() {
        let r = rec.map_err(|e| anyhow!("{file}: {e}"))?;
        let line = r.position().map(|p| p.line() as usize + first_line - 1).unwrap_or(0);
        if r.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let cve = r.get(ci).unwrap_or("").trim().to_ascii_uppercase();
        if !valid_cve(&cve) {
            bail!("{file} line {line}: `{cve}` is not a CVE id");
        }
        let num = |i: usize, what: &str| -> anyhow::Result<f64> {
            let s = r.get(i).unwrap_or("").trim();
            let v: f64 = s.parse().map_err(|_| anyhow!("{file} line {line}: {what} `{s}` is not a number"))?;
            if !(0.0..=1.0).contains(&v) {
                bail!("{file} line {line}: {what} {v} is outside 0-1");
            }
            Ok(v)
        };
        let e = num(ei, "epss")?;
        let p = match pi {
            Some(i) if !r.get(i).unwrap_or("").trim().is_empty() => Some(num(i, "percentile")?),
            _ => None,
        };
        rows.push((cve, e, p));
    }
    if rows.is_empty() {
        bail!("{file}: no EPSS scores");
    }
    Ok(Parsed::Epss { version, date, rows })
}

// ---- STIX (ATT&CK, CAPEC) -----------------------------------------------------------------------------

#[derive(Deserialize)]
struct Bundle {
    #[serde(rename = "type")]
    typ: String,
    spec_version: Option<String>,
    objects: Vec<StixObject>,
}

#[derive(Deserialize)]
struct ExtRef {
    source_name: Option<String>,
    external_id: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize)]
struct KillChainPhase {
    kill_chain_name: String,
    phase_name: String,
}

#[derive(Deserialize)]
struct StixObject {
    #[serde(rename = "type")]
    typ: String,
    name: Option<String>,
    spec_version: Option<String>,
    modified: Option<String>,
    #[serde(default)]
    external_references: Vec<ExtRef>,
    #[serde(default)]
    kill_chain_phases: Vec<KillChainPhase>,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    x_mitre_deprecated: bool,
    #[serde(default)]
    x_mitre_is_subtechnique: bool,
    x_mitre_shortname: Option<String>,
    x_mitre_version: Option<String>,
    x_capec_version: Option<String>,
    x_capec_status: Option<String>,
}

fn stix(file: &str, bytes: &[u8]) -> anyhow::Result<Parsed> {
    let b: Bundle = serde_json::from_slice(bytes).map_err(|e| json_err(file, e))?;
    if b.typ != "bundle" {
        bail!("{file}: a STIX file must be a bundle (type is `{}`)", b.typ);
    }
    let spec = b.spec_version.clone().or_else(|| b.objects.iter().find_map(|o| o.spec_version.clone()));
    if let Some(s) = &spec {
        if !(s == "2.0" || s == "2.1") {
            bail!("{file}: STIX spec_version {s} is not supported (2.0 and 2.1 are)");
        }
    }
    let date = b
        .objects
        .iter()
        .filter_map(|o| o.modified.as_deref())
        .max()
        .and_then(|m| chrono::DateTime::parse_from_rfc3339(m).ok().map(|t| t.naive_utc()));
    let ext = |o: &StixObject, src: &str| -> Option<(String, Option<String>)> {
        o.external_references
            .iter()
            .find(|r| r.source_name.as_deref() == Some(src))
            .and_then(|r| r.external_id.clone().map(|id| (id, r.url.clone())))
    };
    let attack_n = b.objects.iter().filter(|o| o.typ == "attack-pattern" && ext(o, "mitre-attack").is_some()).count();
    let capec_n = b.objects.iter().filter(|o| o.typ == "attack-pattern" && ext(o, "capec").is_some()).count();
    if attack_n == 0 && capec_n == 0 {
        bail!("{file}: a STIX bundle with neither ATT&CK techniques nor CAPEC attack patterns");
    }
    if attack_n >= capec_n {
        let mut techniques = Vec::new();
        let mut tactics = Vec::new();
        let mut version = None;
        for o in &b.objects {
            match o.typ.as_str() {
                "attack-pattern" if !o.revoked => {
                    let Some((id, url)) = ext(o, "mitre-attack") else { continue };
                    techniques.push(Technique {
                        id,
                        name: o.name.clone().unwrap_or_default(),
                        tactics: o
                            .kill_chain_phases
                            .iter()
                            .filter(|k| k.kill_chain_name == "mitre-attack")
                            .map(|k| k.phase_name.clone())
                            .collect(),
                        sub: o.x_mitre_is_subtechnique,
                        deprecated: o.x_mitre_deprecated,
                        url,
                    });
                }
                "x-mitre-tactic" if !o.revoked => {
                    if let (Some((id, _)), Some(short)) = (ext(o, "mitre-attack"), o.x_mitre_shortname.clone()) {
                        tactics.push((id, short, o.name.clone().unwrap_or_default()));
                    }
                }
                "x-mitre-collection" => version = o.x_mitre_version.clone(),
                _ => {}
            }
        }
        if techniques.is_empty() {
            bail!("{file}: every ATT&CK technique in the bundle is revoked");
        }
        Ok(Parsed::Attack { version, date, techniques, tactics })
    } else {
        let mut rows = Vec::new();
        let mut version = None;
        for o in &b.objects {
            if o.typ != "attack-pattern" {
                continue;
            }
            let Some((id, _)) = ext(o, "capec") else { continue };
            if version.is_none() {
                version = o.x_capec_version.clone();
            }
            let refs = |src: &str| -> Vec<String> {
                o.external_references
                    .iter()
                    .filter(|r| r.source_name.as_deref() == Some(src))
                    .filter_map(|r| r.external_id.clone())
                    .collect()
            };
            let techniques = refs("ATTACK")
                .into_iter()
                .map(|t| if t.starts_with('T') { t } else { format!("T{t}") })
                .collect();
            rows.push(CapecRow {
                id,
                name: o.name.clone().unwrap_or_default(),
                cwes: refs("cwe"),
                techniques,
                deprecated: o.revoked || o.x_capec_status.as_deref() == Some("Deprecated"),
            });
        }
        Ok(Parsed::Capec { version, date, rows })
    }
}

// ---- CTID mappings --------------------------------------------------------------------------------

#[derive(Deserialize)]
struct CtidFile {
    metadata: CtidMeta,
    mapping_objects: Vec<CtidObject>,
}

#[derive(Deserialize)]
struct CtidMeta {
    mapping_framework: String,
    mapping_framework_version: Option<String>,
    attack_version: Option<String>,
    last_update: Option<String>,
    creation_date: Option<String>,
}

#[derive(Deserialize)]
struct CtidObject {
    capability_id: Option<String>,
    capability_group: Option<String>,
    capability_description: Option<String>,
    mapping_type: Option<String>,
    attack_object_id: Option<String>,
    attack_object_name: Option<String>,
    score_category: Option<String>,
    score_value: Option<String>,
    status: Option<String>,
}

fn ctid(file: &str, bytes: &[u8]) -> anyhow::Result<Parsed> {
    let f: CtidFile = serde_json::from_slice(bytes).map_err(|e| json_err(file, e))?;
    let framework = f.metadata.mapping_framework.trim().to_ascii_lowercase();
    if framework.is_empty() {
        bail!("{file}: metadata.mapping_framework is empty");
    }
    let mut rows = Vec::new();
    for o in f.mapping_objects {
        if o.status.as_deref() == Some("non_mappable") {
            continue;
        }
        let (Some(cap), Some(tech)) = (nonempty(o.capability_id), nonempty(o.attack_object_id)) else { continue };
        rows.push(CtidRow {
            capability_id: cap,
            group: nonempty(o.capability_group),
            description: nonempty(o.capability_description),
            mapping_type: nonempty(o.mapping_type),
            technique: tech,
            technique_name: nonempty(o.attack_object_name),
            category: nonempty(o.score_category),
            value: nonempty(o.score_value),
        });
    }
    if rows.is_empty() {
        bail!("{file}: no mappings");
    }
    let version = Some(format!(
        "{} {}{}",
        framework,
        f.metadata.mapping_framework_version.unwrap_or_default(),
        f.metadata.attack_version.map(|a| format!(" (ATT&CK {a})")).unwrap_or_default()
    ));
    let date = f.metadata.last_update.or(f.metadata.creation_date).and_then(|d| parse_date(&d)).map(midnight);
    Ok(Parsed::Ctid { framework, version, date, rows })
}

// ---- storing ------------------------------------------------------------------------------------------

const SEP: &str = "\u{1f}";

fn list(v: &[String]) -> Value {
    Value::Text(v.join(SEP))
}

fn opt(s: &Option<String>) -> Value {
    s.clone().map(Value::Text).unwrap_or(Value::Null)
}

fn date_v(d: Option<NaiveDate>) -> Value {
    d.map(|d| Value::Text(d.format("%Y-%m-%d").to_string())).unwrap_or(Value::Null)
}

/// Append rows to a temporary all-VARCHAR-or-DOUBLE table, then move them into the feed table.
fn stage(conn: &duckdb::Connection, ddl: &str, table: &str, rows: impl Iterator<Item = Vec<Value>>) -> Result<(), duckdb::Error> {
    conn.execute_batch(&format!("CREATE OR REPLACE TEMP TABLE {table} ({ddl})"))?;
    let mut app = conn.appender(table)?;
    for r in rows {
        app.append_row(duckdb::appender_params_from_iter(r))?;
    }
    app.flush()?;
    Ok(())
}

fn split(col: &str) -> String {
    format!("CASE WHEN {col} IS NULL OR {col} = '' THEN []::VARCHAR[] ELSE string_split({col}, chr(31)) END")
}

fn store_parsed(conn: &duckdb::Connection, p: &Parsed) -> Result<(String, Option<String>, Option<NaiveDateTime>, usize), duckdb::Error> {
    Ok(match p {
        Parsed::Kev { version, date, rows } => {
            stage(
                conn,
                "cve VARCHAR, vendor VARCHAR, product VARCHAR, name VARCHAR, added VARCHAR, due VARCHAR, rw BOOLEAN, action VARCHAR, cwes VARCHAR",
                "stage_kev",
                rows.iter().map(|r| {
                    vec![
                        Value::Text(r.cve.clone()),
                        opt(&r.vendor),
                        opt(&r.product),
                        opt(&r.name),
                        date_v(Some(r.added)),
                        date_v(r.due),
                        Value::Boolean(r.ransomware),
                        opt(&r.action),
                        list(&r.cwes),
                    ]
                }),
            )?;
            conn.execute_batch(&format!(
                "DELETE FROM kev;
                 INSERT INTO kev SELECT cve, any_value(vendor), any_value(product), any_value(name), min(added::DATE), min(due::DATE),
                        bool_or(rw), any_value(action), {} FROM stage_kev GROUP BY cve;
                 DROP TABLE stage_kev;",
                format!("list_distinct(flatten(list({})))", split("cwes"))
            ))?;
            ("kev".to_string(), version.clone(), *date, rows.len())
        }
        Parsed::Epss { version, date, rows } => {
            stage(
                conn,
                "cve VARCHAR, epss DOUBLE, pct DOUBLE",
                "stage_epss",
                rows.iter().map(|(c, e, p)| vec![Value::Text(c.clone()), Value::Double(*e), p.map(Value::Double).unwrap_or(Value::Null)]),
            )?;
            conn.execute_batch(
                "DELETE FROM epss;
                 INSERT INTO epss SELECT cve, max(epss), max(pct) FROM stage_epss GROUP BY cve;
                 DROP TABLE stage_epss;",
            )?;
            ("epss".to_string(), version.clone(), *date, rows.len())
        }
        Parsed::Attack { version, date, techniques, tactics } => {
            stage(
                conn,
                "id VARCHAR, name VARCHAR, tactics VARCHAR, sub BOOLEAN, dep BOOLEAN, url VARCHAR",
                "stage_tech",
                techniques.iter().map(|t| {
                    vec![
                        Value::Text(t.id.clone()),
                        Value::Text(t.name.clone()),
                        list(&t.tactics),
                        Value::Boolean(t.sub),
                        Value::Boolean(t.deprecated),
                        opt(&t.url),
                    ]
                }),
            )?;
            stage(
                conn,
                "id VARCHAR, short VARCHAR, name VARCHAR",
                "stage_tactic",
                tactics.iter().map(|(a, b, c)| vec![Value::Text(a.clone()), Value::Text(b.clone()), Value::Text(c.clone())]),
            )?;
            conn.execute_batch(&format!(
                "DELETE FROM attack_techniques; DELETE FROM attack_tactics;
                 INSERT INTO attack_techniques SELECT id, name, {}, sub, dep, url FROM stage_tech;
                 INSERT INTO attack_tactics SELECT id, short, name FROM stage_tactic;
                 DROP TABLE stage_tech; DROP TABLE stage_tactic;",
                split("tactics")
            ))?;
            ("attack".to_string(), version.clone(), *date, techniques.len())
        }
        Parsed::Capec { version, date, rows } => {
            stage(
                conn,
                "id VARCHAR, name VARCHAR, cwes VARCHAR, techs VARCHAR, dep BOOLEAN",
                "stage_capec",
                rows.iter().map(|r| {
                    vec![Value::Text(r.id.clone()), Value::Text(r.name.clone()), list(&r.cwes), list(&r.techniques), Value::Boolean(r.deprecated)]
                }),
            )?;
            conn.execute_batch(&format!(
                "DELETE FROM capec;
                 INSERT INTO capec SELECT id, name, {}, {}, dep FROM stage_capec;
                 DROP TABLE stage_capec;",
                split("cwes"),
                split("techs")
            ))?;
            ("capec".to_string(), version.clone(), *date, rows.len())
        }
        Parsed::Ctid { framework, version, date, rows } => {
            stage(
                conn,
                "cap VARCHAR, grp VARCHAR, descr VARCHAR, mtype VARCHAR, tech VARCHAR, tname VARCHAR, cat VARCHAR, val VARCHAR",
                "stage_ctid",
                rows.iter().map(|r| {
                    vec![
                        Value::Text(r.capability_id.clone()),
                        opt(&r.group),
                        opt(&r.description),
                        opt(&r.mapping_type),
                        Value::Text(r.technique.clone()),
                        opt(&r.technique_name),
                        opt(&r.category),
                        opt(&r.value),
                    ]
                }),
            )?;
            conn.execute("DELETE FROM ctid_mappings WHERE framework = ?", [framework])?;
            conn.execute(
                "INSERT INTO ctid_mappings SELECT ?, cap, grp, descr, mtype, tech, tname, cat, val FROM stage_ctid",
                [framework],
            )?;
            conn.execute_batch("DROP TABLE stage_ctid")?;
            (format!("ctid:{framework}"), version.clone(), *date, rows.len())
        }
    })
}

/// Load one feed file: recognise, validate whole, and replace the previous copy of the feed in one
/// transaction; then rescore.
pub fn load_file(store: &Store, path: &Path) -> anyhow::Result<Loaded> {
    if store.read_only {
        bail!("the database is open read-only: intel cannot be loaded");
    }
    let file = path.display().to_string();
    let (bytes, sha) = read_feed(path)?;
    let parsed = recognise(&file, &bytes)?;
    drop(bytes);
    let c = &store.conn;
    c.execute_batch("BEGIN TRANSACTION")?;
    let r = (|| -> Result<Loaded, duckdb::Error> {
        let (feed, version, date, records) = store_parsed(c, &parsed)?;
        c.execute("DELETE FROM intel_feeds WHERE feed = ?", [&feed])?;
        c.execute(
            "INSERT INTO intel_feeds VALUES (?, ?, ?, ?, ?, ?, current_timestamp::TIMESTAMP)",
            duckdb::params![
                feed,
                version,
                date.map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string()),
                file,
                sha,
                records as i64
            ],
        )?;
        Ok(Loaded { feed, version, date, records, rescored: 0 })
    })();
    match r {
        Ok(mut l) => {
            c.execute_batch("COMMIT")?;
            l.rescored = crate::risk::rescore_store(store).map_err(|e| anyhow!("{file}: loaded, but rescoring failed: {e}"))?;
            Ok(l)
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(anyhow!("{file}: store error, nothing loaded: {e}"))
        }
    }
}

/// A loaded feed and how old it is.
#[derive(Debug, Clone)]
pub struct Freshness {
    pub feed: String,
    pub version: Option<String>,
    pub date: Option<NaiveDateTime>,
    pub loaded_at: NaiveDateTime,
    pub records: i64,
}

pub fn freshness(conn: &duckdb::Connection) -> Result<Vec<Freshness>, duckdb::Error> {
    let mut st = conn.prepare("SELECT feed, version, feed_date, loaded_at, records FROM intel_feeds ORDER BY feed")?;
    let rows = st.query_map([], |r| {
        Ok(Freshness { feed: r.get(0)?, version: r.get(1)?, date: r.get(2)?, loaded_at: r.get(3)?, records: r.get(4)? })
    })?;
    rows.collect()
}

/// `ctem intel status`: every feed with its version, date and age.
pub fn status(conn: &duckdb::Connection, now: NaiveDateTime) -> anyhow::Result<String> {
    use std::fmt::Write;
    let f = freshness(conn)?;
    let mut out = String::new();
    if f.is_empty() {
        writeln!(out, "no intel loaded: `ctem intel load FILE...` (KEV, EPSS, ATT&CK, CAPEC, CTID) or `ctem intel update`")?;
        return Ok(out);
    }
    for x in f {
        let age = x.date.map(|d| format!("{} days old", (now - d).num_days())).unwrap_or_else(|| "date not stated".into());
        writeln!(
            out,
            "{:<16} {:<34} {:>9} records  {:<10} ({age}; loaded {})",
            x.feed,
            x.version.unwrap_or_else(|| "-".into()),
            x.records,
            x.date.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "-".into()),
            x.loaded_at.format("%Y-%m-%d %H:%M"),
        )?;
    }
    Ok(out)
}
