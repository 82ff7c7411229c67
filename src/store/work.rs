//! Work items: units of remediation with an owner, a priority, a due date and a status.
//!
//! `plan` routes open findings (by the `[routing]` rules) and groups them by the fix that removes them:
//! one work item per fix and team, keyed by a fingerprint, so a finding that joins a fix group later joins
//! that group's work item and applying a plan twice changes nothing. Hand-picked findings become one work
//! item per team. Every change is written to `audit_log`; `refresh` keeps priorities, due dates and
//! verification in step with the findings after every import and rescore.

use super::views::{compile_scope, inline_values, param_value, scope_cond};
use super::Store;
use crate::query::Compiled;
use crate::routing::Routing;
use chrono::NaiveDate;
use duckdb::{params, Connection};

/// Every status, in board order.
pub const STATUSES: [&str; 8] = ["new", "triaged", "assigned", "in_progress", "fixed", "verified", "risk_accepted", "false_positive"];

/// Statuses in which a work item still holds its findings.
pub const OPEN_WORK: &str = "status NOT IN ('verified', 'risk_accepted', 'false_positive')";
/// Findings that still need work.
const OPEN_F: &str = "status IN ('open', 'reopened', 'mitigated')";

/// What is handed over.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Hand-picked findings (marks in the queue): one work item per team.
    Findings(Vec<i64>),
    /// Every open finding a fix closes (a fix group), within the active scope.
    Fix { kind: String, fix: String },
    /// Every open finding at `min_priority` or more urgent (`ctem plan`).
    Open { min_priority: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    New,
    Grown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanItem {
    pub change: Change,
    /// The existing work item (grown), or the one created (new, after apply).
    pub work_item_id: Option<i64>,
    pub team: String,
    pub assignee: Option<String>,
    pub rule: String,
    pub title: String,
    pub priority: Option<String>,
    pub due: Option<NaiveDate>,
    /// Findings the item gets.
    pub findings: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub items: Vec<PlanItem>,
    /// Open work items per team that the plan leaves as they are.
    pub unchanged: Vec<(String, i64)>,
    /// Selected findings already held by an open work item.
    pub already: i64,
    /// Selected findings no longer open.
    pub closed: i64,
    pub applied: bool,
}

impl Plan {
    pub fn new_items(&self) -> usize {
        self.items.iter().filter(|i| i.change == Change::New).count()
    }

    pub fn grown_items(&self) -> usize {
        self.items.iter().filter(|i| i.change == Change::Grown).count()
    }

    /// One line for the console's status bar.
    pub fn message(&self) -> String {
        if self.items.is_empty() {
            return format!("nothing handed over: {} already in open work items, {} no longer open", self.already, self.closed);
        }
        let n: i64 = self.items.iter().map(|i| i.findings).sum();
        let mut teams: Vec<&str> = self.items.iter().map(|i| i.team.as_str()).collect();
        teams.sort();
        teams.dedup();
        let (new, grown) = (self.new_items(), self.grown_items());
        let mut m = String::new();
        if new > 0 {
            m.push_str(&format!("{new} new work item{}", if new == 1 { "" } else { "s" }));
        }
        if grown > 0 {
            if !m.is_empty() {
                m.push_str(", ");
            }
            m.push_str(&format!("{grown} grown"));
        }
        m.push_str(&format!(" ({n} findings) for {} in Mobilization", teams.join(", ")));
        if self.already > 0 {
            m.push_str(&format!("; {} already in open work items", self.already));
        }
        if self.closed > 0 {
            m.push_str(&format!("; {} no longer open", self.closed));
        }
        m
    }
}

/// Record one change in the audit log.
#[allow(clippy::too_many_arguments)]
pub fn audit(c: &Connection, actor: &str, entity: &str, id: i64, action: &str, old: Option<&str>, new: Option<&str>, detail: Option<&str>) -> Result<(), duckdb::Error> {
    c.execute(
        "INSERT INTO audit_log VALUES (current_timestamp::TIMESTAMP, ?, ?, ?, ?, ?, ?, ?)",
        params![actor, entity, id, action, old, new, detail],
    )?;
    Ok(())
}

/// Run `f` in a transaction.
pub(crate) fn in_tx<T>(c: &Connection, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    c.execute_batch("BEGIN TRANSACTION")?;
    match f() {
        Ok(v) => {
            c.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// A named scope's asset condition with its values written in (for routing rules).
fn scope_sql(c: &Connection, name: &str) -> Result<String, String> {
    let s = super::scopes::get(c, name).map_err(|e| e.to_string())?.ok_or_else(|| format!("no scope named '{name}'"))?;
    let comp = compile_scope(&s.filter, chrono::Utc::now().naive_utc()).map_err(|e| format!("scope '{name}': {}", e.message))?;
    let (sql, left) = inline_values(comp.sql, comp.params.iter().map(param_value).collect());
    if !left.is_empty() {
        return Err(format!("scope '{name}' has values that cannot be written into a rule"));
    }
    Ok(sql)
}

/// Hand a selection to mobilisation, routed by the store's rules.
pub fn hand_off(store: &Store, sel: &Selection, scope: Option<&Compiled>) -> anyhow::Result<Plan> {
    plan(store, &store.routing, "config.toml", sel, scope, true)
}

/// What a selection would become (`apply` false), or make it so (`apply` true), in one transaction.
pub fn plan(store: &Store, routing: &Routing, file: &str, sel: &Selection, scope: Option<&Compiled>, apply: bool) -> anyhow::Result<Plan> {
    if apply && store.read_only {
        anyhow::bail!("read-only: work items cannot be created or changed (open without --read-only)");
    }
    let c = &store.conn;
    let case = routing.case_sql(&|n| scope_sql(c, n), file).map_err(anyhow::Error::msg)?;
    let values = routing.values_sql();
    let actor = store.actor.clone();
    in_tx(c, || {
        c.execute_batch("CREATE OR REPLACE TEMP TABLE plan_pick (finding_id BIGINT)")?;
        let source = match sel {
            Selection::Findings(ids) => {
                let mut app = c.appender("plan_pick")?;
                for id in ids {
                    app.append_row(params![id])?;
                }
                app.flush()?;
                format!("{} findings picked in the queue", ids.len())
            }
            Selection::Fix { kind, fix } => {
                let mut sql = format!("INSERT INTO plan_pick SELECT finding_id FROM findings WHERE fix_kind = ? AND fix = ? AND {OPEN_F}");
                let mut p: Vec<duckdb::types::Value> = vec![kind.clone().into(), fix.clone().into()];
                if let Some(s) = scope {
                    sql.push_str(&format!(" AND {}", scope_cond("asset_id", s)));
                    p.extend(s.params.iter().map(param_value));
                }
                c.execute(&sql, duckdb::params_from_iter(p.iter()))?;
                format!("fix group: {fix}")
            }
            Selection::Open { min_priority } => {
                let mut sql = format!("INSERT INTO plan_pick SELECT finding_id FROM findings WHERE {OPEN_F} AND priority <= ?");
                let mut p: Vec<duckdb::types::Value> = vec![min_priority.clone().into()];
                if let Some(s) = scope {
                    sql.push_str(&format!(" AND {}", scope_cond("asset_id", s)));
                    p.extend(s.params.iter().map(param_value));
                }
                c.execute(&sql, duckdb::params_from_iter(p.iter()))?;
                format!("plan: open findings {min_priority} and above")
            }
        };
        let closed: i64 = c.query_row(
            &format!("SELECT count(*) FROM plan_pick p LEFT JOIN findings f USING (finding_id) WHERE f.status IS NULL OR NOT f.{OPEN_F}"),
            [],
            |r| r.get(0),
        )?;
        c.execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE plan_held AS
             SELECT DISTINCT wf.finding_id FROM work_item_findings wf JOIN work_items w USING (work_item_id) WHERE w.{OPEN_WORK};"
        ))?;
        let already: i64 = c.query_row(
            &format!("SELECT count(DISTINCT p.finding_id) FROM plan_pick p JOIN findings f USING (finding_id) JOIN plan_held h USING (finding_id) WHERE f.{OPEN_F}"),
            [],
            |r| r.get(0),
        )?;
        let key = match sel {
            Selection::Findings(_) => "'team|' || team",
            _ => "CASE WHEN fix IS NOT NULL THEN 'fix|' || team || '|' || fix_kind || '|' || fix ELSE 'vuln|' || team || '|' || vuln_id END",
        };
        c.execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE plan_rows AS
             SELECT f.finding_id, x.rule_no, CASE WHEN r.rule_team = '@owner' THEN coalesce(a.owner, '(no owner)') ELSE r.rule_team END AS team,
                    f.fix_kind, f.fix, f.fix_target, f.priority, coalesce(f.risk_score, 0) AS risk, f.title, f.vuln_id, s.due_date
             FROM (SELECT f.finding_id, {case} AS rule_no
                   FROM plan_pick p JOIN findings f USING (finding_id) LEFT JOIN assets a ON a.asset_id = f.asset_id
                   WHERE f.{OPEN_F} AND f.finding_id NOT IN (SELECT finding_id FROM plan_held)) x
             JOIN findings f USING (finding_id) LEFT JOIN assets a ON a.asset_id = f.asset_id
             JOIN {values} ON r.rule_no = x.rule_no
             LEFT JOIN finding_sla s ON s.finding_id = f.finding_id;
             ALTER TABLE plan_rows ADD COLUMN gkey VARCHAR;
             UPDATE plan_rows SET gkey = {key};
             CREATE OR REPLACE TEMP TABLE plan_groups AS
             SELECT g.*, e.work_item_id AS existing_id FROM (
               SELECT gkey, team, min(rule_no) AS rule_no, count(*) AS n, min(priority) AS priority, min(due_date) AS due,
                      CASE WHEN count(DISTINCT fix) = 1 AND count(fix) = count(*) THEN any_value(fix_kind) END AS fix_kind,
                      CASE WHEN count(DISTINCT fix) = 1 AND count(fix) = count(*) THEN any_value(fix) END AS fix,
                      CASE WHEN count(DISTINCT fix) = 1 AND count(fix) = count(*) THEN arg_max(fix_target, version_key(fix_target)) END AS fix_target,
                      CASE WHEN count(DISTINCT fix) = 1 AND count(fix) = count(*) THEN fix_label(any_value(fix_kind), any_value(fix), fix_target)
                           WHEN count(*) = 1 THEN any_value(title)
                           ELSE count(*) || ' findings, most urgent: ' || arg_max(title, risk) END AS title,
                      max(risk) AS top_risk
               FROM plan_rows GROUP BY gkey, team) g
             LEFT JOIN (SELECT fingerprint, min(work_item_id) AS work_item_id FROM work_items
                        WHERE {OPEN_WORK} AND fingerprint IS NOT NULL GROUP BY fingerprint) e ON e.fingerprint = g.gkey;"
        ))?;
        if apply {
            // Ids in the plan's order (most urgent first), so the same estate always numbers alike.
            let n: i64 = c.query_row("SELECT count(*) FROM plan_groups WHERE existing_id IS NULL", [], |r| r.get(0))?;
            c.execute_batch(&format!(
                "CREATE OR REPLACE TEMP TABLE plan_ids AS SELECT nextval('seq_work_item') AS work_item_id FROM range({n});
                 CREATE OR REPLACE TEMP TABLE plan_new AS
                 SELECT i.work_item_id, g.gkey, g.team
                 FROM (SELECT work_item_id, row_number() OVER (ORDER BY work_item_id) AS rn FROM plan_ids) i
                 JOIN (SELECT gkey, team, row_number() OVER (ORDER BY priority NULLS LAST, top_risk DESC, team, gkey) AS rn
                       FROM plan_groups WHERE existing_id IS NULL) g USING (rn);
                 DROP TABLE plan_ids;"
            ))?;
            c.execute(
                &format!(
                    "INSERT INTO work_items (work_item_id, title, fix_kind, fix, fix_target, owner, team, assignee, priority, status, due_date,
                                             source, rule, jira_project, snow_group, fingerprint, created_at, updated_at)
                     SELECT n.work_item_id, g.title, g.fix_kind, g.fix, g.fix_target, g.team, g.team, r.assignee, g.priority,
                            CASE WHEN r.assignee IS NULL THEN 'new' ELSE 'assigned' END, g.due, ?, r.rule_name, r.jira_project, r.snow_group,
                            CASE WHEN g.gkey LIKE 'team|%' THEN 'pick|' || n.work_item_id ELSE g.gkey END,
                            current_timestamp::TIMESTAMP, current_timestamp::TIMESTAMP
                     FROM plan_new n JOIN plan_groups g USING (gkey, team) JOIN {values} ON r.rule_no = g.rule_no"
                ),
                params![source],
            )?;
            c.execute_batch(
                "INSERT INTO work_item_findings
                 SELECT coalesce(g.existing_id, n.work_item_id), p.finding_id, current_timestamp::TIMESTAMP
                 FROM plan_rows p JOIN plan_groups g USING (gkey, team) LEFT JOIN plan_new n USING (gkey, team);",
            )?;
            c.execute(
                "INSERT INTO audit_log
                 SELECT current_timestamp::TIMESTAMP, ?, 'work_item', n.work_item_id, 'created', NULL, w.status,
                        g.n || ' findings; team ' || g.team || ' by rule ' || w.rule || '; ' || w.source
                 FROM plan_new n JOIN plan_groups g USING (gkey, team) JOIN work_items w ON w.work_item_id = n.work_item_id",
                params![actor],
            )?;
            c.execute(
                "INSERT INTO audit_log
                 SELECT current_timestamp::TIMESTAMP, ?, 'work_item', existing_id, 'findings_added', NULL, NULL, '+' || n || ' findings'
                 FROM plan_groups WHERE existing_id IS NOT NULL",
                params![actor],
            )?;
            c.execute_batch(
                "UPDATE work_items SET updated_at = current_timestamp::TIMESTAMP
                 WHERE work_item_id IN (SELECT existing_id FROM plan_groups WHERE existing_id IS NOT NULL);",
            )?;
            refresh(c)?;
        }
        let mut st = c.prepare(&format!(
            "SELECT g.existing_id IS NULL, coalesce(g.existing_id, {}), g.team, r.assignee, r.rule_name, g.title, g.priority, g.due, g.n
             FROM plan_groups g JOIN {values} ON r.rule_no = g.rule_no {}
             ORDER BY g.priority NULLS LAST, g.top_risk DESC, g.team, g.title",
            if apply { "n.work_item_id" } else { "NULL::BIGINT" },
            if apply { "LEFT JOIN plan_new n USING (gkey, team)" } else { "" }
        ))?;
        let items = st
            .query_map([], |r| {
                Ok(PlanItem {
                    change: if r.get::<_, bool>(0)? { Change::New } else { Change::Grown },
                    work_item_id: r.get(1)?,
                    team: r.get(2)?,
                    assignee: r.get(3)?,
                    rule: r.get(4)?,
                    title: r.get(5)?,
                    priority: r.get(6)?,
                    due: r.get(7)?,
                    findings: r.get(8)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = c.prepare(&format!(
            "SELECT team, count(*) FROM work_items WHERE {OPEN_WORK}
               AND work_item_id NOT IN (SELECT existing_id FROM plan_groups WHERE existing_id IS NOT NULL)
               {} GROUP BY team ORDER BY team",
            if apply { "AND work_item_id NOT IN (SELECT work_item_id FROM plan_new)" } else { "" }
        ))?;
        let unchanged = st.query_map([], |r| Ok((r.get::<_, Option<String>>(0)?.unwrap_or_default(), r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
        c.execute_batch("DROP TABLE IF EXISTS plan_pick; DROP TABLE IF EXISTS plan_held; DROP TABLE IF EXISTS plan_rows; DROP TABLE IF EXISTS plan_groups; DROP TABLE IF EXISTS plan_new;")?;
        Ok(Plan { items, unchanged, already, closed, applied: apply })
    })
}

/// Keep work items in step with their findings (call inside a transaction): a verified item whose
/// findings are seen again is reopened; an open item whose findings rescans no longer see is verified;
/// priorities, due dates and package targets follow the open findings. Every change is audited.
pub fn refresh(c: &Connection) -> Result<(), duckdb::Error> {
    c.execute_batch(
        "CREATE OR REPLACE TEMP TABLE wr_state AS
         SELECT w.work_item_id, w.status,
                count(*) FILTER (WHERE f.status IN ('open', 'reopened', 'mitigated')) AS open_n,
                count(*) FILTER (WHERE f.status = 'fixed') AS fixed_n,
                count(*) FILTER (WHERE f.status = 'reopened') AS reopened_n
         FROM work_items w JOIN work_item_findings wf USING (work_item_id) JOIN findings f USING (finding_id)
         WHERE w.status NOT IN ('risk_accepted', 'false_positive')
         GROUP BY ALL;",
    )?;
    c.execute(
        "INSERT INTO audit_log SELECT current_timestamp::TIMESTAMP, 'rescan', 'work_item', work_item_id, 'status', status, 'triaged',
                'regression: ' || open_n || ' finding(s) seen again'
         FROM wr_state WHERE status = 'verified' AND open_n > 0",
        [],
    )?;
    c.execute_batch(
        "UPDATE work_items SET status = 'triaged', closed_at = NULL, updated_at = current_timestamp::TIMESTAMP
         WHERE work_item_id IN (SELECT work_item_id FROM wr_state WHERE status = 'verified' AND open_n > 0);",
    )?;
    c.execute(
        "INSERT INTO audit_log SELECT current_timestamp::TIMESTAMP, 'rescan', 'work_item', work_item_id, 'status', status, 'verified',
                'rescans no longer see its ' || fixed_n || ' finding(s)'
         FROM wr_state WHERE status <> 'verified' AND open_n = 0 AND fixed_n > 0",
        [],
    )?;
    c.execute_batch(
        "UPDATE work_items SET status = 'verified', closed_at = current_timestamp::TIMESTAMP, updated_at = current_timestamp::TIMESTAMP
         WHERE work_item_id IN (SELECT work_item_id FROM wr_state WHERE status <> 'verified' AND open_n = 0 AND fixed_n > 0);
         CREATE OR REPLACE TEMP TABLE wr_now AS
         SELECT wf.work_item_id, min(f.priority) AS priority, min(s.due_date) AS due,
                arg_max(f.fix_target, version_key(f.fix_target)) AS target,
                fix_label(any_value(f.fix_kind), any_value(f.fix), f.fix_target) AS label
         FROM work_item_findings wf JOIN work_items w USING (work_item_id) JOIN findings f USING (finding_id)
         LEFT JOIN finding_sla s ON s.finding_id = f.finding_id
         WHERE w.status NOT IN ('verified', 'risk_accepted', 'false_positive') AND f.status IN ('open', 'reopened', 'mitigated')
         GROUP BY wf.work_item_id;",
    )?;
    c.execute(
        "INSERT INTO audit_log
         SELECT current_timestamp::TIMESTAMP, 'rescore', 'work_item', w.work_item_id, 'priority', w.priority, n.priority, 'follows its findings'
         FROM work_items w JOIN wr_now n USING (work_item_id) WHERE w.priority IS DISTINCT FROM n.priority
         UNION ALL
         SELECT current_timestamp::TIMESTAMP, 'rescore', 'work_item', w.work_item_id, 'due_date', CAST(w.due_date AS VARCHAR), CAST(n.due AS VARCHAR), 'SLA of its findings'
         FROM work_items w JOIN wr_now n USING (work_item_id) WHERE w.due_date IS DISTINCT FROM n.due",
        [],
    )?;
    c.execute_batch(
        "UPDATE work_items w SET priority = n.priority, due_date = n.due, updated_at = current_timestamp::TIMESTAMP
         FROM wr_now n WHERE w.work_item_id = n.work_item_id AND (w.priority IS DISTINCT FROM n.priority OR w.due_date IS DISTINCT FROM n.due);
         UPDATE work_items w SET fix_target = n.target, title = n.label
         FROM wr_now n WHERE w.work_item_id = n.work_item_id AND w.fix_kind = 'package_upgrade' AND n.target IS NOT NULL
           AND w.fix_target IS DISTINCT FROM n.target;
         DROP TABLE wr_state; DROP TABLE wr_now;",
    )?;
    Ok(())
}

/// `refresh` in its own transaction (after imports and rescoring).
pub fn refresh_store(store: &Store) -> anyhow::Result<()> {
    if store.read_only {
        return Ok(());
    }
    in_tx(&store.conn, || Ok(refresh(&store.conn)?))
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Moves {
    pub moved: Vec<i64>,
    /// (work item, reason)
    pub refused: Vec<(i64, String)>,
}

impl Moves {
    pub fn message(&self, to: &str) -> String {
        let mut m = match self.moved.len() {
            0 => String::from("nothing moved"),
            1 => format!("#{} moved to {to}", self.moved[0]),
            n => format!("{n} work items moved to {to}"),
        };
        if let Some((id, why)) = self.refused.first() {
            m.push_str(&format!("; #{id} refused: {why}"));
            if self.refused.len() > 1 {
                m.push_str(&format!(" (and {} more refused)", self.refused.len() - 1));
            }
        }
        m
    }
}

/// The work item's status now, or why it may not move to `to`.
fn may_move(c: &Connection, id: i64, to: &str) -> anyhow::Result<Result<String, String>> {
    let row: Option<(String, Option<String>, i64, i64, Option<String>)> = c
        .query_row(
            "SELECT w.status, w.assignee, b.open_findings, b.findings,
                    (SELECT strftime(max(f.last_seen), '%Y-%m-%d') || ' by ' || array_to_string(arg_max(f.sources, f.last_seen), ', ')
                     FROM work_item_findings wf JOIN findings f USING (finding_id)
                     WHERE wf.work_item_id = w.work_item_id AND f.status IN ('open', 'reopened', 'mitigated'))
             FROM work_items w JOIN work_board b USING (work_item_id) WHERE w.work_item_id = ?",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .map(Some)
        .or_else(|e| if matches!(e, duckdb::Error::QueryReturnedNoRows) { Ok(None) } else { Err(e) })?;
    let Some((from, assignee, open, total, seen)) = row else { return Ok(Err("no such work item".into())) };
    if from == to {
        return Ok(Err(format!("already {to}")));
    }
    if from == "risk_accepted" || from == "false_positive" {
        let ex: Option<i64> = c
            .query_row("SELECT max(exception_id) FROM exceptions WHERE work_item_id = ? AND status = 'active'", params![id], |r| r.get(0))?;
        if let Some(e) = ex {
            return Ok(Err(format!("exception #{e} holds it; revoke the exception first")));
        }
    }
    let why = match to {
        "risk_accepted" | "false_positive" => Some(format!(
            "{to} needs an exception with a justification and an approver (`ctem exception add --work-item {id} --kind {to} ...`, or `x` on the board)"
        )),
        "verified" if open > 0 => Some(format!(
            "{open} of {total} findings still open (last seen {}); a rescan must confirm the fix",
            seen.unwrap_or_else(|| "recently".into())
        )),
        "verified" if total == 0 => Some("it holds no findings to verify".into()),
        "assigned" if assignee.is_none() => Some("no assignee: assign someone first".into()),
        _ => None,
    };
    Ok(match why {
        Some(w) => Err(w),
        None => Ok(from),
    })
}

/// Move work items to `to`, each checked against its findings; those that may not move are reported
/// with the reason. One transaction.
pub fn move_items(store: &Store, ids: &[i64], to: &str) -> anyhow::Result<Moves> {
    if store.read_only {
        anyhow::bail!("read-only: work items cannot be moved (open without --read-only)");
    }
    if !STATUSES.contains(&to) {
        anyhow::bail!("unknown status '{to}' (one of {})", STATUSES.join(", "));
    }
    let c = &store.conn;
    in_tx(c, || {
        let mut m = Moves::default();
        for &id in ids {
            let from = match may_move(c, id, to)? {
                Ok(from) => from,
                Err(why) => {
                    m.refused.push((id, why));
                    continue;
                }
            };
            c.execute(
                "UPDATE work_items SET status = ?, updated_at = current_timestamp::TIMESTAMP,
                        closed_at = CASE WHEN ? = 'verified' THEN current_timestamp::TIMESTAMP END
                 WHERE work_item_id = ?",
                params![to, to, id],
            )?;
            audit(c, &store.actor, "work_item", id, "status", Some(&from), Some(to), None)?;
            m.moved.push(id);
        }
        Ok(m)
    })
}

/// Set (or clear, with an empty name) the assignee; a `new` or `triaged` item becomes `assigned`.
pub fn assign(store: &Store, id: i64, who: &str) -> anyhow::Result<()> {
    if store.read_only {
        anyhow::bail!("read-only: work items cannot be changed (open without --read-only)");
    }
    let c = &store.conn;
    let who = who.trim();
    in_tx(c, || {
        let (old, status): (Option<String>, String) = c
            .query_row("SELECT assignee, status FROM work_items WHERE work_item_id = ?", params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|_| anyhow::anyhow!("no work item #{id}"))?;
        let new = (!who.is_empty()).then_some(who);
        if old.as_deref() == new {
            return Ok(());
        }
        c.execute("UPDATE work_items SET assignee = ?, updated_at = current_timestamp::TIMESTAMP WHERE work_item_id = ?", params![new, id])?;
        audit(c, &store.actor, "work_item", id, "assignee", old.as_deref(), new, None)?;
        let next = match (new.is_some(), status.as_str()) {
            (true, "new" | "triaged") => Some("assigned"),
            (false, "assigned") => Some("triaged"),
            _ => None,
        };
        if let Some(n) = next {
            c.execute("UPDATE work_items SET status = ? WHERE work_item_id = ?", params![n, id])?;
            audit(c, &store.actor, "work_item", id, "status", Some(&status), Some(n), Some("follows the assignee"))?;
        }
        Ok(())
    })
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub old: Option<String>,
    pub new: Option<String>,
    pub detail: Option<String>,
}

impl Event {
    pub fn line(&self) -> String {
        format!("{}  {:<10} {}", self.at, self.actor, self.what())
    }

    /// The change, without who and when.
    pub fn what(&self) -> String {
        let mut s = self.action.clone();
        match (&self.old, &self.new) {
            (Some(o), Some(n)) => s.push_str(&format!(": {o} -> {n}")),
            (None, Some(n)) => s.push_str(&format!(": {n}")),
            (Some(o), None) => s.push_str(&format!(": {o} -> (none)")),
            _ => {}
        }
        if let Some(d) = &self.detail {
            s.push_str(&format!(" ({d})"));
        }
        s
    }
}

/// The history of one entity, oldest first.
pub fn history(c: &Connection, entity: &str, id: i64) -> Result<Vec<Event>, duckdb::Error> {
    let mut st = c.prepare(
        "SELECT strftime(changed_at, '%Y-%m-%d %H:%M'), actor, action, old_value, new_value, detail FROM audit_log
         WHERE entity = ? AND entity_id = ? ORDER BY changed_at, rowid",
    )?;
    let v = st
        .query_map(params![entity, id], |r| {
            Ok(Event { at: r.get(0)?, actor: r.get(1)?, action: r.get(2)?, old: r.get(3)?, new: r.get(4)?, detail: r.get(5)? })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}
