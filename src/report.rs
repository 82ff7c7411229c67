//! `ctem report standup`: what changed in a window (by default the 24 hours up to the latest scan, the
//! data's own clock), for chat or e-mail (Markdown) or for scripts (JSON): new findings by priority, the
//! new ones that are exploited in the wild (CISA KEV), regressions, fixes confirmed by a rescan, the
//! biggest open fixes, and the 30-day trend of open P1/P2 findings with the time taken to fix them.

use duckdb::OptionalExt;
use crate::query::Compiled;
use crate::store::views::{inline_values, param_value};
use crate::store::Store;
use chrono::NaiveDateTime;
use serde::Serialize;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub finding_id: i64,
    pub priority: Option<String>,
    pub risk: Option<f64>,
    pub asset: Option<String>,
    pub title: String,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Standup {
    pub since: NaiveDateTime,
    pub until: NaiveDateTime,
    pub scope: Option<String>,
    /// P1..P4 open now.
    pub open_by_priority: [i64; 4],
    /// P1 and P2 open at the start of the window.
    pub p1_p2_at_start: i64,
    /// New in the window, P1..P4.
    pub new_by_priority: [i64; 4],
    pub new_kev: Vec<Line>,
    /// New findings on KEV (all of them; `new_kev` lists the first ten).
    pub new_kev_total: i64,
    /// The most urgent new findings not on KEV.
    pub new_top: Vec<Line>,
    pub regressions: i64,
    pub regressions_top: Vec<Line>,
    pub fixed: i64,
    /// (fix, findings, assets, risk removed)
    pub top_fixes: Vec<(String, i64, i64, f64)>,
    /// (day, open P1, open P2) for the 30 days up to `until`.
    pub trend: Vec<(String, i64, i64)>,
    /// Mean days from first seen to fixed, for P1 and P2 findings fixed in the 30 days up to `until`.
    pub mttr_days: [Option<f64>; 2],
    /// Open findings past their SLA due date on the window's last day, of which became overdue in the
    /// window, and due within the 3 days after it.
    pub sla_past_due: i64,
    pub sla_became_overdue: i64,
    pub sla_due_3d: i64,
    /// Work items the rescans verified, and reopened by regressions, since the window's start.
    pub work_verified: i64,
    pub work_reopened: i64,
    pub work_verified_ids: Vec<i64>,
    pub work_reopened_ids: Vec<i64>,
    /// Work items whose ticket moved in Jira or ServiceNow since the window's start: (work item, what).
    pub tickets_moved: Vec<(i64, String)>,
    /// Active exceptions expiring within 7 days: (id, kind, findings, expiry date).
    pub exceptions_expiring: Vec<(i64, String, i64, String)>,
    /// When the stand-up the window starts from was held (the default window after an earlier stand-up).
    pub last_standup: Option<NaiveDateTime>,
}

fn ts(t: NaiveDateTime) -> String {
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S"))
}

/// Where a stand-up's window starts by default: at the data the last stand-up covered (the latest scan
/// it saw, when that is older than `until`), else 24 hours before `until`. Also when that stand-up was held.
pub fn default_since(store: &Store, until: NaiveDateTime) -> anyhow::Result<(NaiveDateTime, Option<NaiveDateTime>)> {
    let last: Option<(NaiveDateTime, NaiveDateTime)> = store
        .conn
        .query_row(
            "SELECT data_until, held_at FROM standup_log WHERE data_until < ? ORDER BY data_until DESC, held_at DESC LIMIT 1",
            duckdb::params![until],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match last {
        Some((from, held)) => (from, Some(held)),
        None => (until - chrono::Duration::hours(24), None),
    })
}

/// Note that a stand-up covered the data up to `until` (nothing on a read-only store).
pub fn record_standup(store: &Store, until: NaiveDateTime, via: &str, scope: Option<&str>) -> anyhow::Result<()> {
    if store.read_only {
        return Ok(());
    }
    store.conn.execute(
        "INSERT INTO standup_log VALUES (current_timestamp::TIMESTAMP, ?, ?, ?)",
        duckdb::params![until, via, scope],
    )?;
    Ok(())
}

/// Parse `--since`: an age (`24h`, `3d`, `2w`) back from `until`, or a date / date-time.
pub fn parse_since(s: &str, until: NaiveDateTime) -> Result<NaiveDateTime, String> {
    let s = s.trim();
    if let Some(num) = s.strip_suffix(['h', 'd', 'w']) {
        if let Ok(n) = num.parse::<i64>() {
            let hours = match s.chars().last() {
                Some('h') => n,
                Some('d') => n * 24,
                _ => n * 24 * 7,
            };
            return Ok(until - chrono::Duration::hours(hours));
        }
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default()))
        .map_err(|_| format!("'{s}': give an age (24h, 3d, 2w) or a date (2026-11-22)"))
}

fn lines(store: &Store, sql: &str, params: &[duckdb::types::Value]) -> anyhow::Result<Vec<Line>> {
    let (sql, params) = inline_values(sql.to_string(), params.to_vec());
    let mut st = store.conn.prepare(&sql)?;
    let v = st
        .query_map(duckdb::params_from_iter(params.iter()), |r| {
            Ok(Line { finding_id: r.get(0)?, priority: r.get(1)?, risk: r.get(2)?, asset: r.get(3)?, title: r.get(4)?, detail: r.get(5)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// Build the stand-up for `[since, until]`, narrowed to `scope` (an asset filter) when given. Without
/// `lists`, only the counts and the trend (the console's summary).
pub fn standup(store: &Store, since: NaiveDateTime, until: NaiveDateTime, scope: Option<(&str, &Compiled)>, lists: bool) -> anyhow::Result<Standup> {
    let c = &store.conn;
    let (cond, p): (String, Vec<duckdb::types::Value>) = match scope {
        Some((_, s)) => (format!("asset_id IN (SELECT asset_id FROM assets WHERE {})", s.sql), s.params.iter().map(param_value).collect()),
        None => ("true".into(), Vec::new()),
    };
    let (s0, s1) = (ts(since), ts(until));
    let open = "status IN ('open', 'reopened')";
    let prio_counts = |extra: &str| -> anyhow::Result<[i64; 4]> {
        let (sql, pp) = inline_values(
            format!(
                "SELECT count(*) FILTER (WHERE priority = 'P1'), count(*) FILTER (WHERE priority = 'P2'),
                        count(*) FILTER (WHERE priority = 'P3'), count(*) FILTER (WHERE priority = 'P4')
                 FROM findings WHERE {cond} AND {extra}"
            ),
            p.clone(),
        );
        Ok(c.query_row(&sql, duckdb::params_from_iter(pp.iter()), |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]))?)
    };
    let open_by_priority = prio_counts(open)?;
    let new_by_priority = prio_counts(&format!("first_seen > {s0} AND first_seen <= {s1}"))?;
    let count = |extra: &str| -> anyhow::Result<i64> {
        let (sql, pp) = inline_values(format!("SELECT count(*) FROM findings WHERE {cond} AND {extra}"), p.clone());
        Ok(c.query_row(&sql, duckdb::params_from_iter(pp.iter()), |r| r.get(0))?)
    };
    let p1_p2_at_start = count(&format!(
        "priority IN ('P1', 'P2') AND first_seen <= {s0} AND (fixed_at IS NULL OR fixed_at > {s0}) AND status <> 'false_positive'"
    ))?;
    let regressed = crate::store::views::REGRESSED;
    let regressions = count(&format!("{regressed} AND last_seen > {s0} AND last_seen <= {s1}"))?;
    let new_kev_total = count(&format!("{open} AND kev AND first_seen > {s0} AND first_seen <= {s1}"))?;
    let fixed = count(&format!("status = 'fixed' AND fixed_at > {s0} AND fixed_at <= {s1}"))?;
    let pick = "finding_id, priority, risk_score, asset_name, title";
    let list = |sql: String| -> anyhow::Result<Vec<Line>> { if lists { lines(store, &sql, &p) } else { Ok(Vec::new()) } };
    let new_kev = list(format!(
        "SELECT {pick}, kev_cve || ', KEV due ' || strftime(kev_due, '%Y-%m-%d') || CASE WHEN kev_ransomware THEN ', ransomware' ELSE '' END
         FROM findings WHERE {cond} AND {open} AND kev AND first_seen > {s0} AND first_seen <= {s1}
         ORDER BY risk_score DESC, finding_id LIMIT 10"
    ))?;
    let new_top = list(format!(
        "SELECT {pick}, NULL::VARCHAR FROM findings WHERE {cond} AND {open} AND NOT coalesce(kev, false) AND first_seen > {s0} AND first_seen <= {s1}
         ORDER BY risk_score DESC, finding_id LIMIT 10"
    ))?;
    let regressions_top = list(format!(
        "SELECT {pick}, 'reopened ' || times_reopened || 'x' FROM findings
         WHERE {cond} AND {regressed} AND last_seen > {s0} AND last_seen <= {s1}
         ORDER BY risk_score DESC, finding_id LIMIT 10"
    ))?;
    let top_fixes = if !lists { Vec::new() } else {
        let (sql, pp) = inline_values(
            format!(
                "SELECT fix_label(fix_kind, fix, fix_target),
                        count(*), count(DISTINCT asset_id), round(sum(coalesce(risk_score, 0)), 1) AS r
                 FROM findings WHERE {cond} AND {open} AND fix IS NOT NULL GROUP BY fix_kind, fix ORDER BY r DESC LIMIT 5"
            ),
            p.clone(),
        );
        let mut st = c.prepare(&sql)?;
        let v = st
            .query_map(duckdb::params_from_iter(pp.iter()), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        v
    };
    // Open P1/P2 per day: +1 when first seen, -1 when fixed, summed up to each day. Priorities are the
    // current ones (a finding fixed keeps its last priority).
    let trend = {
        let start = until - chrono::Duration::days(29);
        let (sql, mut pp) = (
            format!(
                "WITH ev AS (
                   SELECT first_seen AS t, priority, 1 AS x FROM findings WHERE {cond} AND priority IN ('P1', 'P2') AND status <> 'false_positive'
                   UNION ALL
                   SELECT fixed_at, priority, -1 FROM findings WHERE {cond} AND priority IN ('P1', 'P2') AND fixed_at IS NOT NULL AND status = 'fixed'
                 ),
                 agg AS (SELECT date_trunc('day', t) AS d, sum(x) FILTER (WHERE priority = 'P1') AS p1,
                                sum(x) FILTER (WHERE priority = 'P2') AS p2 FROM ev GROUP BY 1),
                 base AS (SELECT coalesce(sum(p1), 0) AS b1, coalesce(sum(p2), 0) AS b2 FROM agg WHERE d < {d0}),
                 days AS (SELECT unnest(generate_series({d0}, {s1}, INTERVAL 1 DAY)) AS d)
                 SELECT strftime(days.d, '%Y-%m-%d'),
                        (base.b1 + sum(coalesce(agg.p1, 0)) OVER (ORDER BY days.d))::BIGINT,
                        (base.b2 + sum(coalesce(agg.p2, 0)) OVER (ORDER BY days.d))::BIGINT
                 FROM days LEFT JOIN agg ON agg.d = days.d CROSS JOIN base ORDER BY days.d",
                d0 = ts(start.date().and_hms_opt(0, 0, 0).unwrap_or(start)),
            ),
            p.clone(),
        );
        pp.extend(p.iter().cloned());
        let (sql, pp) = inline_values(sql, pp);
        let mut st = c.prepare(&sql)?;
        let v = st
            .query_map(duckdb::params_from_iter(pp.iter()), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        v
    };
    let mttr_days = {
        let (sql, pp) = inline_values(
            format!(
                "SELECT avg(epoch(fixed_at - first_seen)) FILTER (WHERE priority = 'P1') / 86400.0,
                        avg(epoch(fixed_at - first_seen)) FILTER (WHERE priority = 'P2') / 86400.0
                 FROM findings WHERE {cond} AND status = 'fixed' AND fixed_at > {s1} - INTERVAL 30 DAY AND fixed_at <= {s1}"
            ),
            p.clone(),
        );
        c.query_row(&sql, duckdb::params_from_iter(pp.iter()), |r| Ok([r.get(0)?, r.get(1)?]))?
    };
    let (sla_past_due, sla_became_overdue, sla_due_3d) = {
        let u = format!("CAST({s1} AS DATE)");
        let (sql, pp) = inline_values(
            format!(
                "SELECT count(*) FILTER (WHERE due_date < {u}), count(*) FILTER (WHERE due_date < {u} AND due_date >= CAST({s0} AS DATE)),
                        count(*) FILTER (WHERE due_date >= {u} AND due_date <= {u} + 3)
                 FROM finding_sla WHERE {cond}"
            ),
            p.clone(),
        );
        c.query_row(&sql, duckdb::params_from_iter(pp.iter()), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
    };
    let work_ids = |cond: &str| -> anyhow::Result<Vec<i64>> {
        let mut st = c.prepare(&format!(
            "SELECT DISTINCT entity_id FROM audit_log
             WHERE entity = 'work_item' AND action = 'status' AND actor = 'rescan' AND changed_at > {s0} AND {cond} ORDER BY 1"
        ))?;
        let v = st.query_map([], |r| r.get(0))?.collect::<Result<Vec<i64>, _>>()?;
        Ok(v)
    };
    let work_verified_ids = work_ids("new_value = 'verified'")?;
    let work_reopened_ids = work_ids("detail LIKE 'regression%'")?;
    let (work_verified, work_reopened) = (work_verified_ids.len() as i64, work_reopened_ids.len() as i64);
    let tickets_moved = {
        let mut st = c.prepare(&format!(
            "SELECT entity_id, actor || ': ' || coalesce(detail, '') || ' (' || coalesce(old_value, '') || ' -> ' || coalesce(new_value, '') || ')'
             FROM audit_log WHERE entity = 'work_item' AND actor IN ('jira', 'servicenow') AND changed_at > {s0} ORDER BY changed_at DESC LIMIT 20"
        ))?;
        let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        v
    };
    let exceptions_expiring = {
        let mut st = c.prepare(
            "SELECT exception_id, kind, findings, strftime(expires_at, '%Y-%m-%d') FROM exception_list
             WHERE status = 'active' AND expires_at IS NOT NULL AND expires_at <= current_timestamp::TIMESTAMP + INTERVAL 7 DAY
             ORDER BY expires_at, exception_id",
        )?;
        let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<Vec<_>, _>>()?;
        v
    };
    Ok(Standup {
        sla_past_due,
        sla_became_overdue,
        sla_due_3d,
        work_verified,
        work_reopened,
        work_verified_ids,
        work_reopened_ids,
        tickets_moved,
        exceptions_expiring,
        last_standup: None,
        since,
        until,
        scope: scope.map(|s| s.0.to_string()),
        open_by_priority,
        p1_p2_at_start,
        new_by_priority,
        new_kev,
        new_kev_total,
        new_top,
        regressions,
        regressions_top,
        fixed,
        top_fixes,
        trend,
        mttr_days,
    })
}

fn group(n: i64) -> String {
    crate::tui::table::group(n.max(0) as u64)
}

pub fn spark(v: &[i64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (lo, hi) = (v.iter().copied().min().unwrap_or(0), v.iter().copied().max().unwrap_or(0));
    v.iter()
        .map(|&x| if hi == lo { BARS[0] } else { BARS[(((x - lo) as f64 / (hi - lo) as f64) * 7.0).round() as usize] })
        .collect()
}

fn line_md(l: &Line) -> String {
    format!(
        "- #{} {} {:.0} {} — {}{}",
        l.finding_id,
        l.priority.clone().unwrap_or_else(|| "-".into()),
        l.risk.unwrap_or(0.0),
        l.asset.clone().unwrap_or_default(),
        l.title,
        l.detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default()
    )
}

impl Standup {
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let f = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M").to_string();
        let _ = writeln!(o, "# Stand-up {} → {} (scope: {})\n", f(self.since), f(self.until), self.scope.as_deref().unwrap_or("all"));
        if let Some(h) = self.last_standup {
            let _ = writeln!(o, "Since the stand-up held {} (it covered the scans up to {}).\n", f(h), f(self.since));
        }
        let [p1, p2, p3, p4] = self.open_by_priority;
        let _ = writeln!(
            o,
            "Open: P1 {}, P2 {}, P3 {}, P4 {}. P1 + P2: {} now, {} at the start of the window.\n",
            group(p1),
            group(p2),
            group(p3),
            group(p4),
            group(p1 + p2),
            group(self.p1_p2_at_start)
        );
        let [n1, n2, n3, n4] = self.new_by_priority;
        let _ = writeln!(o, "## New: {} findings (P1 {}, P2 {}, P3 {}, P4 {})\n", group(n1 + n2 + n3 + n4), group(n1), group(n2), group(n3), group(n4));
        if !self.new_kev.is_empty() {
            let _ = writeln!(o, "Exploited in the wild (CISA KEV): {}, most urgent first:", group(self.new_kev_total));
            for l in &self.new_kev {
                let _ = writeln!(o, "{}", line_md(l));
            }
            let _ = writeln!(o);
        }
        if !self.new_top.is_empty() {
            let _ = writeln!(o, "Most urgent of the others:");
            for l in &self.new_top {
                let _ = writeln!(o, "{}", line_md(l));
            }
            let _ = writeln!(o);
        }
        let _ = writeln!(
            o,
            "## SLA: {} open findings past due ({} became overdue in the window), {} due within 3 days\n",
            group(self.sla_past_due),
            group(self.sla_became_overdue),
            group(self.sla_due_3d)
        );
        if self.work_verified + self.work_reopened > 0 {
            let _ = writeln!(o, "Work items verified by rescans: {}; reopened by regressions: {}\n", group(self.work_verified), group(self.work_reopened));
        }
        if !self.tickets_moved.is_empty() {
            let _ = writeln!(o, "Tickets moved in Jira or ServiceNow:");
            for (id, what) in &self.tickets_moved {
                let _ = writeln!(o, "- work item #{id}: {what}");
            }
            let _ = writeln!(o);
        }
        if !self.exceptions_expiring.is_empty() {
            let _ = writeln!(o, "Exceptions expiring within 7 days:");
            for (id, kind, n, when) in &self.exceptions_expiring {
                let _ = writeln!(o, "- #{id} {} on {} findings, expires {when}", kind.replace('_', " "), group(*n));
            }
            let _ = writeln!(o);
        }
        let _ = writeln!(o, "## Regressions: {} findings came back after a fix\n", group(self.regressions));
        for l in &self.regressions_top {
            let _ = writeln!(o, "{}", line_md(l));
        }
        if !self.regressions_top.is_empty() {
            let _ = writeln!(o);
        }
        let _ = writeln!(o, "## Fixed, confirmed by a rescan: {}\n", group(self.fixed));
        if !self.top_fixes.is_empty() {
            let _ = writeln!(o, "## Biggest open fixes\n");
            for (fix, n, a, r) in &self.top_fixes {
                let _ = writeln!(o, "- {fix}: {} findings on {} assets (risk {:.0})", group(*n), group(*a), r);
            }
            let _ = writeln!(o);
        }
        if let (Some(first), Some(last)) = (self.trend.first(), self.trend.last()) {
            let p1: Vec<i64> = self.trend.iter().map(|t| t.1).collect();
            let p2: Vec<i64> = self.trend.iter().map(|t| t.2).collect();
            let _ = writeln!(o, "## Trend {} → {}\n", first.0, last.0);
            let _ = writeln!(o, "    open P1  {}  {} → {}", spark(&p1), group(first.1), group(last.1));
            let _ = writeln!(o, "    open P2  {}  {} → {}", spark(&p2), group(first.2), group(last.2));
            let m = |v: Option<f64>| v.map(|d| format!("{d:.1} days")).unwrap_or_else(|| "none fixed".into());
            let _ = writeln!(o, "\nMean time to fix (fixed in the last 30 days): P1 {}, P2 {}", m(self.mttr_days[0]), m(self.mttr_days[1]));
        }
        o
    }
}
