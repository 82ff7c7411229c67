//! Exceptions: risk acceptance and false positives, each with a justification, a requester, an approver
//! who is someone else, and (for risk acceptance) an expiry. Excepted findings leave the queue; when the
//! exception expires or is revoked they come back as they were.

use super::work::{audit, in_tx};
use super::Store;
use chrono::NaiveDateTime;
use duckdb::{params, Connection};

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Findings(Vec<i64>),
    WorkItem(i64),
    /// Findings matching a filter (SQL condition over `findings`, with its text for the record).
    Filter { sql: String, params: Vec<duckdb::types::Value>, text: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `risk_accepted` or `false_positive`.
    pub kind: String,
    pub justification: String,
    pub requester: String,
    pub approver: Option<String>,
    pub expires: Option<NaiveDateTime>,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Granted {
    pub exception_id: i64,
    pub findings: i64,
    /// Selected findings that were not open (already fixed or excepted).
    pub skipped: i64,
}

/// Check a request against the rules; `now` and `max_days` bound the expiry.
pub fn check(r: &Request, now: NaiveDateTime, max_days: u32) -> Result<(), String> {
    if r.kind != "risk_accepted" && r.kind != "false_positive" {
        return Err(format!("unknown exception kind '{}' (risk_accepted or false_positive)", r.kind));
    }
    if r.justification.trim().chars().count() < 10 {
        return Err("a justification is required (at least 10 characters: why, and what compensates)".into());
    }
    let requester = r.requester.trim();
    if requester.is_empty() {
        return Err("a requester is required".into());
    }
    let Some(approver) = r.approver.as_deref().map(str::trim).filter(|a| !a.is_empty()) else {
        return Err("an approver is required: exceptions take two people".into());
    };
    if approver.eq_ignore_ascii_case(requester) {
        return Err(format!("the approver must differ from the requester ({requester} cannot approve their own exception)"));
    }
    match r.expires {
        None if r.kind == "risk_accepted" => return Err("risk acceptance needs an expiry (--expires 90d or a date)".into()),
        Some(e) if e <= now => return Err(format!("the expiry {} is not in the future", e.format("%Y-%m-%d"))),
        Some(e) if e > now + chrono::Duration::days(max_days as i64) => {
            return Err(format!("the expiry {} is beyond the policy's {max_days} days", e.format("%Y-%m-%d")));
        }
        _ => {}
    }
    Ok(())
}

/// Grant an exception: its open findings become `accepted` (or `false_positive`). One transaction;
/// the caller rescores afterwards.
pub fn add(store: &Store, r: &Request, max_days: u32) -> anyhow::Result<Granted> {
    if store.read_only {
        anyhow::bail!("read-only: exceptions cannot be granted (open without --read-only)");
    }
    let now = chrono::Utc::now().naive_utc();
    check(r, now, max_days).map_err(anyhow::Error::msg)?;
    let c = &store.conn;
    let status = if r.kind == "risk_accepted" { "accepted" } else { "false_positive" };
    in_tx(c, || {
        c.execute_batch("CREATE OR REPLACE TEMP TABLE ex_pick (finding_id BIGINT)")?;
        let (selection, work_item) = match &r.target {
            Target::Findings(ids) => {
                let mut app = c.appender("ex_pick")?;
                for id in ids {
                    app.append_row(params![id])?;
                }
                app.flush()?;
                let shown: Vec<String> = ids.iter().take(20).map(|i| i.to_string()).collect();
                (format!("findings {}{}", shown.join(","), if ids.len() > 20 { ",..." } else { "" }), None)
            }
            Target::WorkItem(id) => {
                let st: String = c
                    .query_row("SELECT status FROM work_items WHERE work_item_id = ?", params![id], |r| r.get(0))
                    .map_err(|_| anyhow::anyhow!("no work item #{id}"))?;
                if st == "verified" {
                    anyhow::bail!("work item #{id} is verified fixed: nothing to except");
                }
                c.execute("INSERT INTO ex_pick SELECT finding_id FROM work_item_findings WHERE work_item_id = ?", params![id])?;
                (format!("work item #{id}"), Some(*id))
            }
            Target::Filter { sql, params: p, text } => {
                c.execute(&format!("INSERT INTO ex_pick SELECT finding_id FROM findings WHERE {sql}"), duckdb::params_from_iter(p.iter()))?;
                (format!("filter: {text}"), None)
            }
        };
        let (total, open): (i64, i64) = c.query_row(
            "SELECT count(DISTINCT p.finding_id), count(DISTINCT p.finding_id) FILTER (WHERE f.status IN ('open', 'reopened', 'mitigated'))
             FROM ex_pick p LEFT JOIN findings f USING (finding_id)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if open == 0 {
            anyhow::bail!("none of the {total} selected findings is open: nothing to except");
        }
        let id: i64 = c.query_row("SELECT nextval('seq_exception')", [], |r| r.get(0))?;
        c.execute(
            "INSERT INTO exceptions VALUES (?, ?, ?, ?, ?, current_timestamp::TIMESTAMP, ?, 'active', NULL, ?, ?)",
            params![id, r.kind, r.justification.trim(), r.requester.trim(), r.approver.as_deref().map(str::trim), r.expires, work_item, selection],
        )?;
        c.execute(
            "INSERT INTO exception_findings SELECT DISTINCT ?, f.finding_id, f.status FROM ex_pick p JOIN findings f USING (finding_id)
             WHERE f.status IN ('open', 'reopened', 'mitigated')",
            params![id],
        )?;
        c.execute(
            "UPDATE findings SET status = ?, mitigated_by = NULL WHERE finding_id IN (SELECT finding_id FROM exception_findings WHERE exception_id = ?)",
            params![status, id],
        )?;
        let until = r.expires.map(|e| e.format("%Y-%m-%d").to_string());
        audit(
            c,
            &store.actor,
            "exception",
            id,
            "created",
            None,
            Some(&r.kind),
            Some(&format!(
                "{open} findings; requested by {}, approved by {}{}; {}",
                r.requester.trim(),
                r.approver.as_deref().unwrap_or("").trim(),
                until.as_deref().map(|u| format!(", until {u}")).unwrap_or_default(),
                r.justification.trim()
            )),
        )?;
        if let Some(w) = work_item {
            let old: String = c.query_row("SELECT status FROM work_items WHERE work_item_id = ?", params![w], |r| r.get(0))?;
            c.execute(
                "UPDATE work_items SET status = ?, closed_at = current_timestamp::TIMESTAMP, updated_at = current_timestamp::TIMESTAMP WHERE work_item_id = ?",
                params![r.kind, w],
            )?;
            audit(c, &store.actor, "work_item", w, "status", Some(&old), Some(&r.kind), Some(&format!("exception #{id}")))?;
        }
        c.execute_batch("DROP TABLE ex_pick")?;
        Ok(Granted { exception_id: id, findings: open, skipped: total - open })
    })
}

/// End exceptions (expired or revoked): their findings that are still excepted come back as they were,
/// and a work item they had closed returns to `triaged`. Call inside a transaction.
fn end(c: &Connection, actor: &str, ids_sql: &str, new_status: &str, why: &str) -> Result<Vec<(i64, i64)>, duckdb::Error> {
    c.execute_batch(&format!("CREATE OR REPLACE TEMP TABLE ex_end AS SELECT exception_id, kind, work_item_id FROM exceptions WHERE {ids_sql}"))?;
    let mut st = c.prepare(
        "SELECT e.exception_id, count(f.finding_id) FROM ex_end e LEFT JOIN exception_findings ef USING (exception_id)
         LEFT JOIN findings f ON f.finding_id = ef.finding_id AND f.status = CASE e.kind WHEN 'risk_accepted' THEN 'accepted' ELSE 'false_positive' END
         GROUP BY e.exception_id ORDER BY 1",
    )?;
    let ended = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<(i64, i64)>, _>>()?;
    if ended.is_empty() {
        c.execute_batch("DROP TABLE ex_end")?;
        return Ok(ended);
    }
    c.execute_batch(
        "UPDATE findings f SET status = CASE WHEN ef.prior_status = 'reopened' THEN 'reopened' ELSE 'open' END, risk_score = NULL
         FROM exception_findings ef JOIN ex_end e USING (exception_id)
         WHERE f.finding_id = ef.finding_id AND f.status = CASE e.kind WHEN 'risk_accepted' THEN 'accepted' ELSE 'false_positive' END;",
    )?;
    c.execute(
        "INSERT INTO audit_log SELECT current_timestamp::TIMESTAMP, ?, 'work_item', w.work_item_id, 'status', w.status, 'triaged', ? || ' of exception #' || e.exception_id
         FROM work_items w JOIN ex_end e ON e.work_item_id = w.work_item_id AND w.status = e.kind",
        params![actor, why],
    )?;
    c.execute_batch(
        "UPDATE work_items w SET status = 'triaged', closed_at = NULL, updated_at = current_timestamp::TIMESTAMP
         FROM ex_end e WHERE e.work_item_id = w.work_item_id AND w.status = e.kind;",
    )?;
    for (id, n) in &ended {
        audit(c, actor, "exception", *id, new_status, Some("active"), Some(new_status), Some(&format!("{why}: {n} findings back in the queue")))?;
    }
    c.execute(
        "UPDATE exceptions SET status = ?, ended_at = current_timestamp::TIMESTAMP WHERE exception_id IN (SELECT exception_id FROM ex_end)",
        params![new_status],
    )?;
    c.execute_batch("DROP TABLE ex_end")?;
    Ok(ended)
}

/// Expire the exceptions whose date has passed. Returns (exception, findings returned) for each.
pub fn expire_due(store: &Store) -> anyhow::Result<Vec<(i64, i64)>> {
    if store.read_only {
        return Ok(Vec::new());
    }
    let c = &store.conn;
    let due: i64 = c.query_row(
        "SELECT count(*) FROM exceptions WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= current_timestamp::TIMESTAMP",
        [],
        |r| r.get(0),
    )?;
    if due == 0 {
        return Ok(Vec::new());
    }
    in_tx(c, || {
        Ok(end(
            c,
            "expiry",
            "status = 'active' AND expires_at IS NOT NULL AND expires_at <= current_timestamp::TIMESTAMP",
            "expired",
            "expiry",
        )?)
    })
}

/// Revoke an active exception now. Returns the findings returned to the queue.
pub fn revoke(store: &Store, id: i64, reason: &str) -> anyhow::Result<i64> {
    if store.read_only {
        anyhow::bail!("read-only: exceptions cannot be revoked (open without --read-only)");
    }
    let c = &store.conn;
    let st: String = c
        .query_row("SELECT status FROM exceptions WHERE exception_id = ?", params![id], |r| r.get(0))
        .map_err(|_| anyhow::anyhow!("no exception #{id}"))?;
    if st != "active" {
        anyhow::bail!("exception #{id} is already {st}");
    }
    let why = if reason.trim().is_empty() { "revoked".to_string() } else { format!("revoked ({})", reason.trim()) };
    let ended = in_tx(c, || Ok(end(c, &store.actor, &format!("exception_id = {id}"), "revoked", &why)?))?;
    Ok(ended.first().map(|e| e.1).unwrap_or(0))
}

/// The longest risk acceptance the stored policy allows (`[sla] max_acceptance_days`).
pub fn max_days(c: &Connection) -> u32 {
    c.query_row("SELECT TRY_CAST(max(value) AS INTEGER) FROM settings WHERE key = 'max_acceptance_days'", [], |r| r.get::<_, Option<u32>>(0))
        .ok()
        .flatten()
        .unwrap_or(365)
}

/// Parse an expiry: `90d`, `12w`, `6m` (months of 30 days) from now, or a date `YYYY-MM-DD`.
pub fn parse_expiry(s: &str, now: NaiveDateTime) -> Result<NaiveDateTime, String> {
    let t = s.trim();
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(23, 59, 59).expect("valid time"));
    }
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num.parse().map_err(|_| format!("'{s}': an expiry is 90d, 12w, 6m or a date YYYY-MM-DD"))?;
    let days = match unit {
        "d" => n,
        "w" => n * 7,
        "m" => n * 30,
        "y" => n * 365,
        _ => return Err(format!("'{s}': an expiry is 90d, 12w, 6m or a date YYYY-MM-DD")),
    };
    Ok(now + chrono::Duration::days(days.min(36500)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: &str, requester: &str, approver: Option<&str>, days: Option<i64>, now: NaiveDateTime) -> Request {
        Request {
            kind: kind.into(),
            justification: "internal only; WAF rule 9001 blocks the path".into(),
            requester: requester.into(),
            approver: approver.map(String::from),
            expires: days.map(|d| now + chrono::Duration::days(d)),
            target: Target::Findings(vec![1]),
        }
    }

    #[test]
    fn two_people_and_an_expiry() {
        let now = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap().and_hms_opt(9, 0, 0).unwrap();
        assert!(check(&req("risk_accepted", "ana", Some("ben"), Some(90), now), now, 365).is_ok());
        assert!(check(&req("risk_accepted", "ana", None, Some(90), now), now, 365).unwrap_err().contains("approver is required"));
        assert!(check(&req("risk_accepted", "ana", Some(" ANA "), Some(90), now), now, 365).unwrap_err().contains("must differ"));
        assert!(check(&req("risk_accepted", "ana", Some("ben"), None, now), now, 365).unwrap_err().contains("needs an expiry"));
        assert!(check(&req("risk_accepted", "ana", Some("ben"), Some(400), now), now, 365).unwrap_err().contains("beyond"));
        assert!(check(&req("risk_accepted", "ana", Some("ben"), Some(-1), now), now, 365).unwrap_err().contains("not in the future"));
        assert!(check(&req("false_positive", "ana", Some("ben"), None, now), now, 365).is_ok());
        assert_eq!(parse_expiry("2w", now).unwrap(), now + chrono::Duration::days(14));
        assert_eq!(parse_expiry("2027-01-31", now).unwrap().format("%F").to_string(), "2027-01-31");
        assert!(parse_expiry("soon", now).is_err());
    }
}
