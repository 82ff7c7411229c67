//! The controls inventory: the defences deployed (EDR, WAF, NGFW, IPS, e-mail gateway, MFA, cloud
//! guardrails, DLP), what each is (a CTID capability id or a NIST 800-53 control), whether it blocks
//! or only detects, its health, and which assets it covers. `ctem import-controls FILE` (CSV, or TOML
//! `[[control]]` tables) replaces the inventory in one transaction; coverage is resolved against the
//! assets into `control_assets` and kept current as assets change.

use super::Store;
use anyhow::{anyhow, bail};
use duckdb::params;
use serde::Deserialize;
use std::path::Path;

pub const KINDS: &[&str] = &["edr", "waf", "ngfw", "ips", "email_gateway", "mfa", "cloud_guardrail", "dlp", "other"];

/// One term of `covers` (terms are separated by `;`).
#[derive(Debug, Clone, PartialEq)]
pub enum Cover {
    All,
    Scope(String),
    Tag(String),
    Cidr(ipnet::IpNet),
    Account(String),
    BusinessUnit(String),
    Environment(String),
    Kind(String),
    /// Case-insensitive part of the asset's operating system.
    Os(String),
    /// Assets flagged internet-facing in the CMDB.
    Internet,
    /// Assets matching an expression of the filter language (as scopes are written).
    Filter(String),
}

impl Cover {
    pub fn parse(term: &str) -> Result<Cover, String> {
        let t = term.trim();
        if t == "*" {
            return Ok(Cover::All);
        }
        if t.eq_ignore_ascii_case("internet") || t.eq_ignore_ascii_case("internet-facing") {
            return Ok(Cover::Internet);
        }
        if let Some((k, v)) = t.split_once(':').filter(|(k, _)| !k.contains(['.', '/', ' ']) || k.trim().eq_ignore_ascii_case("filter")) {
            let v = v.trim();
            if v.is_empty() {
                return Err(format!("`{t}` names nothing after the colon"));
            }
            return Ok(match k.trim().to_ascii_lowercase().as_str() {
                "scope" => Cover::Scope(v.into()),
                "tag" => Cover::Tag(v.into()),
                "account" => Cover::Account(v.into()),
                "bu" | "business_unit" => Cover::BusinessUnit(v.into()),
                "env" | "environment" => Cover::Environment(v.into()),
                "kind" => Cover::Kind(v.into()),
                "os" => Cover::Os(v.into()),
                "filter" => {
                    super::views::compile_scope(v, chrono::Utc::now().naive_utc()).map_err(|e| format!("filter `{v}`: {}", e.message))?;
                    Cover::Filter(v.into())
                }
                other => return Err(format!("unknown coverage `{other}:` (use *, internet, scope:, filter:, tag:, account:, bu:, env:, kind:, os: or a CIDR range)")),
            });
        }
        if t.contains('/') || t.parse::<std::net::IpAddr>().is_ok() {
            let net: Option<ipnet::IpNet> =
                if t.contains('/') { t.parse::<ipnet::IpNet>().ok() } else { t.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from) };
            return net.map(Cover::Cidr).ok_or_else(|| format!("`{t}` is not a valid CIDR range"));
        }
        Err(format!("`{t}` is not a coverage term (use *, internet, scope:NAME, tag:X, account:X, bu:X, env:X, kind:X, os:X or a CIDR range)"))
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Raw {
    control_id: String,
    name: Option<String>,
    kind: String,
    product: Option<String>,
    mode: String,
    covers: String,
    status: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Control {
    pub control_id: String,
    pub name: String,
    pub kind: String,
    pub product: Option<String>,
    pub mode: String,
    pub covers: Vec<Cover>,
    pub covers_text: String,
    pub status: String,
}

fn check(raw: Raw, at: &str) -> Result<Control, String> {
    let id = raw.control_id.trim().to_string();
    if id.is_empty() {
        return Err(format!("{at}: control_id is empty"));
    }
    let kind = raw.kind.trim().to_ascii_lowercase();
    if !KINDS.contains(&kind.as_str()) {
        return Err(format!("{at} ({id}): kind `{}` is not one of {}", raw.kind, KINDS.join(", ")));
    }
    let mode = raw.mode.trim().to_ascii_lowercase();
    if mode != "block" && mode != "detect" {
        return Err(format!("{at} ({id}): mode `{}` must be block or detect", raw.mode));
    }
    let status = raw.status.trim().to_ascii_lowercase();
    if !["healthy", "degraded", "disabled"].contains(&status.as_str()) {
        return Err(format!("{at} ({id}): status `{}` must be healthy, degraded or disabled", raw.status));
    }
    let mut covers = Vec::new();
    for term in raw.covers.split(';').filter(|t| !t.trim().is_empty()) {
        covers.push(Cover::parse(term).map_err(|e| format!("{at} ({id}): {e}"))?);
    }
    if covers.is_empty() {
        return Err(format!("{at} ({id}): covers is empty (use * for every asset)"));
    }
    Ok(Control {
        control_id: id,
        name: raw.name.unwrap_or_default().trim().to_string(),
        kind,
        product: raw.product.map(|p| p.trim().to_string()).filter(|p| !p.is_empty()),
        mode,
        covers_text: raw.covers.trim().to_string(),
        covers,
        status,
    })
}

/// A product as the CTID mappings spell it: lower case, NIST 800-53 ids zero-padded (`SC-7` -> `sc-07`,
/// `SC-7(10)` -> `sc-07(10)`).
pub fn product_key(p: &str) -> String {
    let p = p.trim().to_ascii_lowercase();
    let b = p.as_bytes();
    if b.len() >= 4 && b[0].is_ascii_alphabetic() && b[1].is_ascii_alphabetic() && b[2] == b'-' && b[3].is_ascii_digit() && (b.len() == 4 || !b[4].is_ascii_digit()) {
        return format!("{}0{}", &p[..3], &p[3..]);
    }
    p
}

/// Parse an inventory: CSV with a header row, or TOML with `[[control]]` tables.
pub fn parse(path: &Path) -> Result<Vec<Control>, String> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: {e}"))?;
    let is_toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml")) || text.trim_start().starts_with("[[control");
    let mut out = Vec::new();
    if is_toml {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            control: Vec<toml::Value>,
        }
        let doc: Doc = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| crate::config::line_of(&text, s.start)).unwrap_or(1);
            format!("{file} line {line}: {}", e.message().lines().next().unwrap_or(""))
        })?;
        for (i, v) in doc.control.into_iter().enumerate() {
            let raw: Raw = v.try_into().map_err(|e: toml::de::Error| format!("{file}: control {}: {}", i + 1, e.message()))?;
            out.push(check(raw, &format!("{file}: control {}", i + 1))?);
        }
    } else {
        let mut rd = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        for rec in rd.deserialize::<Raw>() {
            let raw = rec.map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                format!("{file} line {line}: {e}")
            })?;
            let line = out.len() + 2;
            out.push(check(raw, &format!("{file} line {line}"))?);
        }
    }
    if out.is_empty() {
        return Err(format!("{file}: no controls"));
    }
    let mut ids: Vec<&str> = out.iter().map(|c| c.control_id.as_str()).collect();
    ids.sort();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("{file}: control_id {} appears twice", w[0]));
    }
    Ok(out)
}

/// Resolve every control's coverage against the assets into `control_assets`. Returns warnings for
/// controls that cover nothing (never silently treated as covering everything).
pub fn refresh_coverage(conn: &duckdb::Connection) -> anyhow::Result<Vec<String>> {
    let controls: Vec<(String, String)> = {
        let mut st = conn.prepare("SELECT control_id, covers FROM controls ORDER BY control_id")?;
        let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        v
    };
    conn.execute_batch("DELETE FROM control_assets")?;
    if controls.is_empty() {
        return Ok(Vec::new());
    }
    // Asset addresses for CIDR terms, read once.
    let ips: Vec<(i64, Vec<std::net::IpAddr>)> = {
        let mut st = conn.prepare("SELECT asset_id, array_to_string(ips, ' ') FROM assets WHERE len(ips) > 0")?;
        let v = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
            .filter_map(|r| r.ok())
            .map(|(id, s)| (id, s.split(' ').filter_map(|x| x.parse().ok()).collect()))
            .collect();
        v
    };
    let mut warnings = Vec::new();
    let now = chrono::Utc::now().naive_utc();
    let mut app_rows: Vec<(String, i64)> = Vec::new();
    for (id, covers) in controls {
        let terms: Vec<Cover> = covers.split(';').filter(|t| !t.trim().is_empty()).filter_map(|t| Cover::parse(t).ok()).collect();
        let mut conds: Vec<(String, Vec<duckdb::types::Value>)> = Vec::new();
        for t in &terms {
            match t {
                Cover::All => conds.push(("true".into(), vec![])),
                Cover::Internet => conds.push(("internet_facing".into(), vec![])),
                Cover::Tag(v) => conds.push(("list_contains(tags, ?)".into(), vec![v.clone().into()])),
                Cover::Account(v) => conds.push(("account = ?".into(), vec![v.clone().into()])),
                Cover::BusinessUnit(v) => conds.push(("lower(business_unit) = lower(?)".into(), vec![v.clone().into()])),
                Cover::Environment(v) => conds.push(("lower(environment) = lower(?)".into(), vec![v.clone().into()])),
                Cover::Kind(v) => conds.push(("kind = ?".into(), vec![v.clone().into()])),
                Cover::Os(v) => conds.push(("os ILIKE ?".into(), vec![format!("%{v}%").into()])),
                Cover::Filter(f) => match super::views::compile_scope(f, now) {
                    Ok(c) => conds.push((format!("({})", c.sql), c.params.iter().map(super::views::param_value).collect())),
                    Err(e) => warnings.push(format!("{id}: filter `{f}` does not compile ({}); it covers nothing", e.message)),
                },
                Cover::Scope(name) => match super::scopes::get(conn, name)? {
                    Some(sc) => match super::views::compile_scope(&sc.filter, now) {
                        Ok(c) => conds.push((format!("({})", c.sql), c.params.iter().map(super::views::param_value).collect())),
                        Err(e) => warnings.push(format!("{id}: scope '{name}' does not compile ({}); it covers nothing", e.message)),
                    },
                    None => warnings.push(format!("{id}: no scope named '{name}'; that term covers nothing")),
                },
                Cover::Cidr(net) => {
                    for (aid, addrs) in &ips {
                        if addrs.iter().any(|a| net.contains(a)) {
                            app_rows.push((id.clone(), *aid));
                        }
                    }
                }
            }
        }
        for (cond, p) in conds {
            conn.execute(
                &format!("INSERT INTO control_assets SELECT ?, asset_id FROM assets WHERE {cond}"),
                duckdb::params_from_iter(std::iter::once(duckdb::types::Value::from(id.clone())).chain(p)),
            )?;
        }
    }
    {
        let mut app = conn.appender("control_assets")?;
        for (id, aid) in &app_rows {
            app.append_row(params![id, aid])?;
        }
        app.flush()?;
    }
    // One row per (control, asset).
    conn.execute_batch(
        "CREATE OR REPLACE TEMP TABLE ca_dedup AS SELECT DISTINCT control_id, asset_id FROM control_assets;
         DELETE FROM control_assets; INSERT INTO control_assets SELECT * FROM ca_dedup; DROP TABLE ca_dedup;",
    )?;
    let mut st = conn.prepare(
        "SELECT c.control_id FROM controls c WHERE NOT EXISTS (SELECT 1 FROM control_assets a WHERE a.control_id = c.control_id) ORDER BY 1",
    )?;
    for id in st.query_map([], |r| r.get::<_, String>(0))? {
        warnings.push(format!("{}: covers no asset in the store", id?));
    }
    Ok(warnings)
}

#[derive(Debug)]
pub struct Loaded {
    pub controls: usize,
    pub warnings: Vec<String>,
}

/// Replace the controls inventory with `path` (one transaction) and resolve its coverage.
pub fn import(store: &Store, path: &Path) -> anyhow::Result<Loaded> {
    if store.read_only {
        bail!("the database is open read-only: controls cannot be imported");
    }
    let controls = parse(path).map_err(|e| anyhow!(e))?;
    let mut warnings = Vec::new();
    let known_products: Vec<String> = {
        let mut st = store.conn.prepare("SELECT DISTINCT lower(capability_id) FROM ctid_mappings")?;
        let v = st.query_map([], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
        v
    };
    for c in &controls {
        if let Some(p) = &c.product {
            if !known_products.is_empty() && !known_products.contains(&product_key(p)) {
                warnings.push(format!("{}: product `{p}` is not in the loaded CTID mappings; no techniques are known for it", c.control_id));
            }
        }
    }
    let conn = &store.conn;
    conn.execute_batch("BEGIN TRANSACTION")?;
    let r = (|| -> anyhow::Result<Vec<String>> {
        conn.execute_batch("DELETE FROM controls")?;
        let now = chrono::Utc::now().naive_utc();
        let src = path.display().to_string();
        for c in &controls {
            conn.execute(
                "INSERT INTO controls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![c.control_id, c.name, c.kind, c.product, c.product.as_deref().map(product_key), c.mode, c.covers_text, c.status, src, now],
            )?;
        }
        refresh_coverage(conn)
    })();
    match r {
        Ok(w) => {
            conn.execute_batch("COMMIT")?;
            warnings.extend(w);
            // What the controls mitigate changes with them.
            crate::risk::rescore_store(store)?;
            Ok(Loaded { controls: controls.len(), warnings })
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Load a user mapping file (CSV: `applies_to,id,technique_id,relation,strength`) that adds to or
/// overrides the technique mappings: `applies_to` is `cve`, `cwe`, `vuln` (a scanner's id) for what
/// findings expose, or `control` / `product` for what controls do; `relation` is
/// `exploitation_technique`, `primary_impact` or `secondary_impact` for findings, `protect`, `detect` or
/// `respond` for controls, or `none` to remove a mapping the feeds make. A row for a pair the feeds also
/// map replaces it. Each row records its file and line as its source. Loading a file again replaces
/// its rows (one transaction); then everything is rescored.
pub fn import_mappings(store: &Store, path: &Path) -> anyhow::Result<usize> {
    if store.read_only {
        bail!("the database is open read-only: mappings cannot be imported");
    }
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("{file}: {e}"))?;
    #[derive(Deserialize)]
    struct Row {
        applies_to: String,
        id: String,
        technique_id: String,
        relation: String,
        strength: Option<String>,
    }
    let mut rows = Vec::new();
    let mut rd = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    for (i, rec) in rd.deserialize::<Row>().enumerate() {
        let line = i + 2;
        let r = rec.map_err(|e| anyhow!("{file} line {}: {e}", e.position().map(|p| p.line()).unwrap_or(line as u64)))?;
        let at = format!("{file} line {line}");
        let applies = r.applies_to.to_ascii_lowercase();
        let finding_side = match applies.as_str() {
            "cve" | "cwe" | "vuln" => true,
            "control" | "product" => false,
            other => bail!("{at}: applies_to `{other}` must be cve, cwe, vuln, control or product"),
        };
        let t = r.technique_id.trim().to_ascii_uppercase();
        let b = t.as_bytes();
        let ok = b.len() >= 5 && b[0] == b'T' && b[1..5].iter().all(u8::is_ascii_digit)
            && (b.len() == 5 || (b.len() == 9 && b[5] == b'.' && b[6..].iter().all(u8::is_ascii_digit)));
        if !ok {
            bail!("{at}: `{}` is not an ATT&CK technique id (T1190, T1059.001)", r.technique_id);
        }
        let rel = r.relation.to_ascii_lowercase();
        let allowed: &[&str] = if finding_side {
            &["exploitation_technique", "primary_impact", "secondary_impact", "none"]
        } else {
            &["protect", "detect", "respond", "none"]
        };
        if !allowed.contains(&rel.as_str()) {
            bail!("{at}: relation `{rel}` must be one of {}", allowed.join(", "));
        }
        let strength = r.strength.map(|s| s.to_ascii_lowercase()).filter(|s| !s.is_empty());
        if let Some(s) = &strength {
            if !["minimal", "partial", "significant"].contains(&s.as_str()) {
                bail!("{at}: strength `{s}` must be minimal, partial or significant");
            }
        }
        let id = if applies == "product" { product_key(&r.id) } else { r.id.trim().to_string() };
        if id.is_empty() {
            bail!("{at}: id is empty");
        }
        rows.push((applies, id, t, rel, strength, at));
    }
    if rows.is_empty() {
        bail!("{file}: no mappings");
    }
    let c = &store.conn;
    c.execute_batch("BEGIN TRANSACTION")?;
    let r = (|| -> anyhow::Result<()> {
        c.execute("DELETE FROM user_mappings WHERE source LIKE ? ESCAPE '\\'", params![format!("{} line %", file.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))])?;
        let mut app = c.appender("user_mappings")?;
        for (a, id, t, rel, s, at) in &rows {
            app.append_row(params![a, id, t, rel, s, format!("user: {at}")])?;
        }
        app.flush()?;
        Ok(())
    })();
    match r {
        Ok(()) => c.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    crate::risk::rescore_store(store)?;
    Ok(rows.len())
}
