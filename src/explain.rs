//! `ctem explain`: a finding, every detection of it, and why the detections were merged.

use crate::store::output::text;
use crate::store::Store;
use duckdb::params;
use duckdb::types::Value;
use std::fmt::Write;

pub fn explain(store: &Store, finding_id: i64) -> anyhow::Result<String> {
    let c = &store.conn;
    let mut out = String::new();
    let cols = [
        "finding_id", "fingerprint", "asset_id", "asset_name", "sources", "vuln_id", "cves", "aliases", "cwes", "title",
        "severity", "cvss_score", "cvss_vector", "category", "package", "installed_version", "fixed_version", "port",
        "protocol", "location", "status", "first_seen", "last_seen", "fixed_at", "times_reopened", "exploit_available",
        "vuln_key", "loc_key", "solution",
    ];
    let sql = format!("SELECT {} FROM findings WHERE finding_id = ?", cols.join(", "));
    let row: Option<Vec<Value>> = {
        let mut st = c.prepare(&sql)?;
        let mut rows = st.query(params![finding_id])?;
        match rows.next()? {
            Some(r) => Some((0..cols.len()).map(|i| r.get::<_, Value>(i).unwrap_or(Value::Null)).collect()),
            None => None,
        }
    };
    let row = match row {
        Some(r) => r,
        None => anyhow::bail!("no finding with id {finding_id}"),
    };
    let get = |name: &str| text(&row[cols.iter().position(|c| *c == name).unwrap()]);
    writeln!(out, "Finding {}: {}", get("finding_id"), get("title"))?;
    risk_section(c, finding_id, &mut out)?;
    for k in &cols[1..cols.len() - 3] {
        let v = get(k);
        if !v.is_empty() && v != "[]" {
            writeln!(out, "  {k:<18} {v}")?;
        }
    }
    let sol = get("solution");
    if !sol.is_empty() {
        writeln!(out, "  {:<18} {}", "solution", sol.lines().next().unwrap_or(""))?;
    }
    let asset_id: i64 = get("asset_id").parse().unwrap_or(0);

    writeln!(out, "\nDetections:")?;
    let mut st = c.prepare(
        r#"SELECT d.import_id, d.tool, i.file, d.seen_at, d.vuln_id, d.cves, d.raw_severity, d.raw_id, d.asset_ref,
                  list_sort(ia.identifiers)
           FROM detections d JOIN imports i USING (import_id)
           LEFT JOIN import_assets ia ON ia.import_id = d.import_id AND ia.asset_id = ?
           WHERE d.finding_id = ? ORDER BY d.seen_at, d.import_id"#,
    )?;
    let mut rows = st.query(params![asset_id, finding_id])?;
    let mut per_tool: Vec<(String, String, Vec<String>, Vec<String>)> = Vec::new();
    while let Some(r) = rows.next()? {
        let v: Vec<Value> = (0..10).map(|i| r.get::<_, Value>(i).unwrap_or(Value::Null)).collect();
        writeln!(
            out,
            "  import {} {} {} saw {} (raw id {}, severity {}) on '{}' [{}]",
            text(&v[0]),
            text(&v[3]),
            text(&v[1]),
            text(&v[4]),
            text(&v[7]),
            text(&v[6]),
            text(&v[8]),
            text(&v[2])
        )?;
        let ids: Vec<String> = match &v[9] {
            Value::List(l) => l.iter().map(text).collect(),
            _ => vec![],
        };
        let cves: Vec<String> = match &v[5] {
            Value::List(l) => l.iter().map(text).collect(),
            _ => vec![],
        };
        let tool = text(&v[1]);
        if !per_tool.iter().any(|p| p.0 == tool && p.1 == text(&v[4])) {
            per_tool.push((tool, text(&v[4]), ids, cves));
        }
    }
    writeln!(out, "\nWhy these are one finding:")?;
    let vk = get("vuln_key");
    let lk = get("loc_key");
    writeln!(out, "  key = (asset {}, vulnerability {}, location {})", asset_id, vk, if lk.is_empty() { "host-wide".to_string() } else { lk.clone() })?;
    if per_tool.len() <= 1 {
        writeln!(out, "  reported by one tool only; every detection above carried the same key")?;
    } else {
        // Which identifiers tied the asset together across tools.
        let all_ids: Vec<&Vec<String>> = per_tool.iter().map(|p| &p.2).collect();
        let shared: Vec<&String> = all_ids[0].iter().filter(|i| all_ids[1..].iter().all(|o| o.contains(i))).collect();
        if shared.is_empty() {
            writeln!(out, "  asset: the tools named it differently; they were tied through identifiers already linked to asset {asset_id} (earlier imports or the CMDB)")?;
        } else {
            writeln!(out, "  asset: every tool named it with {}", shared.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "))?;
        }
        for (tool, vid, ids, cves) in &per_tool {
            let via = if vk.starts_with("CVE-") && cves.contains(&vk) {
                format!("its id {vid} lists {vk}")
            } else if vid == &vk || vk.ends_with(&format!(":{vid}")) {
                format!("its id {vid} is the key")
            } else {
                format!("its id {vid} is an alias of {vk}")
            };
            writeln!(out, "  {tool}: {via}; asset identifiers {}", if ids.is_empty() { "-".into() } else { ids.join(", ") })?;
        }
    }
    Ok(out)
}

/// The risk score with each factor's contribution, the exploit intel behind it, and the fix.
fn risk_section(c: &duckdb::Connection, finding_id: i64, out: &mut String) -> anyhow::Result<()> {
    type Risk = (Option<f64>, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>, String);
    let r: Risk = c.query_row(
        "SELECT risk_score, priority, risk_factors, fix_kind, fix, fix_target, status FROM findings WHERE finding_id = ?",
        params![finding_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
    )?;
    let (score, prio, factors, kind, fix, target, status) = r;
    match (score, factors) {
        (Some(s), Some(f)) => {
            let open = matches!(status.as_str(), "open" | "reopened" | "mitigated");
            writeln!(
                out,
                "\nRisk {s:.1} of 100, {}{}",
                prio.unwrap_or_default(),
                if open { "" } else { " (as last scored while open)" }
            )?;
            for part in f.split("; ") {
                writeln!(out, "  {part}")?;
            }
        }
        _ => writeln!(out, "\nRisk: not scored (only open findings are scored)")?,
    }
    let kev: Vec<(String, Option<String>, Option<String>, Option<String>)> = {
        let mut st = c.prepare(
            "SELECT k.cve, k.name, strftime(k.due_date, '%Y-%m-%d'), k.required_action
             FROM kev k WHERE k.cve IN (SELECT unnest(cves) FROM findings WHERE finding_id = ?) ORDER BY k.cve",
        )?;
        let rows = st.query_map(params![finding_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (cve, name, due, action) in kev {
        writeln!(out, "  CISA KEV {cve}: {}", name.unwrap_or_default())?;
        if let Some(a) = action {
            writeln!(out, "    required action (due {}): {a}", due.unwrap_or_else(|| "-".into()))?;
        }
    }
    if let (Some(k), Some(f)) = (kind, fix) {
        let (n, a): (i64, i64) = c.query_row(
            "SELECT count(*), count(DISTINCT asset_id) FROM findings WHERE fix = ? AND fix_kind = ? AND status IN ('open', 'reopened')",
            params![f, k],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let fix_text = match target {
            Some(t) if k == "package_upgrade" => format!("{f} (to {t} or later)"),
            _ => f,
        };
        writeln!(out, "Fix ({}): {fix_text}", k.replace('_', " "))?;
        writeln!(out, "  the same fix closes {n} open findings on {a} assets")?;
    }
    Ok(())
}
