//! Work items: a selection of open findings handed from prioritisation to mobilisation, one work item
//! per asset owner, so each team gets one unit of remediation with its findings, priority and fix.

use super::views::{param_value, scope_cond};
use super::Store;
use crate::query::Compiled;
use duckdb::params;

/// What is handed over.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Hand-picked findings (marks in the queue).
    Findings(Vec<i64>),
    /// Every open finding a fix closes (a fix group), within the active scope.
    Fix { kind: String, fix: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct HandOff {
    /// (work item id, owner, findings, title)
    pub created: Vec<(i64, String, i64, String)>,
    /// Findings left out because an open work item already holds them.
    pub already: i64,
    /// Findings left out because they are no longer open.
    pub closed: i64,
}

impl HandOff {
    pub fn message(&self) -> String {
        if self.created.is_empty() {
            return format!(
                "nothing handed over: {} already in open work items, {} no longer open",
                self.already, self.closed
            );
        }
        let n: i64 = self.created.iter().map(|c| c.2).sum();
        let owners: Vec<&str> = self.created.iter().map(|c| c.1.as_str()).collect();
        let mut m = format!(
            "{} work item{} ({n} findings) for {} in Mobilization",
            self.created.len(),
            if self.created.len() == 1 { "" } else { "s" },
            owners.join(", ")
        );
        if self.already > 0 {
            m.push_str(&format!("; {} already in open work items", self.already));
        }
        if self.closed > 0 {
            m.push_str(&format!("; {} no longer open", self.closed));
        }
        m
    }
}

/// Statuses in which a work item still holds its findings.
pub const OPEN_WORK: &str = "status NOT IN ('verified', 'risk_accepted', 'false_positive')";

/// Create work items from a selection: open findings not already in an open work item, grouped by the
/// owner of their asset. One transaction.
pub fn hand_off(store: &Store, sel: &Selection, scope: Option<&Compiled>) -> anyhow::Result<HandOff> {
    if store.read_only {
        anyhow::bail!("read-only: work items cannot be created (open without --read-only)");
    }
    let c = &store.conn;
    c.execute_batch("BEGIN TRANSACTION")?;
    let r = (|| -> anyhow::Result<HandOff> {
        c.execute_batch("CREATE OR REPLACE TEMP TABLE wi_pick (finding_id BIGINT)")?;
        let source = match sel {
            Selection::Findings(ids) => {
                let mut app = c.appender("wi_pick")?;
                for id in ids {
                    app.append_row(params![id])?;
                }
                app.flush()?;
                format!("{} findings picked in the queue", ids.len())
            }
            Selection::Fix { kind, fix } => {
                let mut sql = "INSERT INTO wi_pick SELECT finding_id FROM findings WHERE fix_kind = ? AND fix = ? AND status IN ('open', 'reopened')".to_string();
                let mut p: Vec<duckdb::types::Value> = vec![kind.clone().into(), fix.clone().into()];
                if let Some(s) = scope {
                    sql.push_str(&format!(" AND {}", scope_cond("asset_id", s)));
                    p.extend(s.params.iter().map(param_value));
                }
                c.execute(&sql, duckdb::params_from_iter(p.iter()))?;
                format!("fix group: {fix}")
            }
        };
        let closed: i64 = c.query_row(
            "SELECT count(*) FROM wi_pick p LEFT JOIN findings f USING (finding_id) WHERE f.status IS NULL OR f.status NOT IN ('open', 'reopened')",
            [],
            |r| r.get(0),
        )?;
        let already: i64 = c.query_row(
            &format!(
                "SELECT count(DISTINCT p.finding_id) FROM wi_pick p JOIN findings f USING (finding_id)
                 JOIN work_item_findings wf ON wf.finding_id = p.finding_id JOIN work_items w USING (work_item_id)
                 WHERE f.status IN ('open', 'reopened') AND w.{OPEN_WORK}"
            ),
            [],
            |r| r.get(0),
        )?;
        c.execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE wi_sel AS
             SELECT DISTINCT f.finding_id, coalesce(a.owner, '(no owner)') AS owner
             FROM wi_pick p JOIN findings f USING (finding_id) LEFT JOIN assets a ON a.asset_id = f.asset_id
             WHERE f.status IN ('open', 'reopened')
               AND f.finding_id NOT IN (SELECT wf.finding_id FROM work_item_findings wf JOIN work_items w USING (work_item_id) WHERE w.{OPEN_WORK});
             CREATE OR REPLACE TEMP TABLE wi_new AS
             SELECT nextval('seq_work_item') AS work_item_id, * FROM (
               SELECT s.owner, count(*) AS n, min(f.priority) AS priority,
                      CASE WHEN count(DISTINCT f.fix) = 1 AND count(f.fix) = count(*) THEN any_value(f.fix) END AS fix,
                      CASE WHEN count(DISTINCT f.fix) = 1 AND count(f.fix) = count(*) THEN any_value(f.fix_kind) END AS fix_kind,
                      CASE WHEN count(DISTINCT f.fix) = 1 AND count(f.fix) = count(*)
                           THEN fix_label(any_value(f.fix_kind), any_value(f.fix), f.fix_target)
                           WHEN count(*) = 1 THEN any_value(f.title)
                           ELSE count(*) || ' findings, most urgent: ' || arg_max(f.title, coalesce(f.risk_score, 0)) END AS title
               FROM wi_sel s JOIN findings f USING (finding_id)
               GROUP BY s.owner ORDER BY s.owner);"
        ))?;
        c.execute(
            "INSERT INTO work_items (work_item_id, title, fix_kind, fix, owner, priority, status, source, created_at, updated_at)
             SELECT work_item_id, title, fix_kind, fix, owner, priority, 'new', ?, current_timestamp::TIMESTAMP, current_timestamp::TIMESTAMP FROM wi_new",
            params![source],
        )?;
        c.execute_batch(
            "INSERT INTO work_item_findings SELECT n.work_item_id, s.finding_id, current_timestamp::TIMESTAMP
             FROM wi_sel s JOIN wi_new n USING (owner);",
        )?;
        let mut st = c.prepare("SELECT work_item_id, owner, n, title FROM wi_new ORDER BY work_item_id")?;
        let created = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<Vec<_>, _>>()?;
        c.execute_batch("DROP TABLE wi_pick; DROP TABLE wi_sel; DROP TABLE wi_new;")?;
        Ok(HandOff { created, already, closed })
    })();
    match r {
        Ok(h) => {
            c.execute_batch("COMMIT")?;
            Ok(h)
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
