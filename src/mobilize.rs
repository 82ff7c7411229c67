//! The mobilisation commands: `ctem plan`, `ctem work`, `ctem exception`, `ctem sla`, `ctem audit`.

use crate::cli::{open_for_read, open_rw_cfg, Cli, ExceptionCmd, SyncCmd, WorkCmd};
use crate::paths::Paths;
use crate::store::exceptions::{self, Request, Target};
use crate::store::output::{run_query, OutFormat};
use crate::store::views::{compile_scope, finding_fields, finding_text_fields, param_value};
use crate::store::work::{self, Change, Selection};
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::io::Write;

use crate::store::sql_literal as q;

fn print_query(c: &duckdb::Connection, sql: &str, format: &str) -> anyhow::Result<usize> {
    let fmt = OutFormat::parse(format).unwrap_or(OutFormat::Table);
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    run_query(c, sql, fmt, &mut lock)
}

pub fn plan(cli: &Cli, paths: &Paths, apply: bool, scope: Option<&str>, min: Option<&str>, limit: usize) -> anyhow::Result<i32> {
    let (store, cfg) = open_rw_cfg(cli, paths)?;
    if let Some(e) = &cfg.routing_error {
        bail!("{e}");
    }
    let scope = match scope {
        Some(name) => {
            let s = crate::store::scopes::get(&store.conn, name)?.with_context(|| format!("no scope named '{name}'"))?;
            Some(compile_scope(&s.filter, chrono::Utc::now().naive_utc()).map_err(|e| anyhow::anyhow!("scope '{name}': {}", e.message))?)
        }
        None => None,
    };
    let min = min.map(String::from).unwrap_or_else(|| cfg.routing.min_priority.clone());
    let file = paths.config_file().display().to_string();
    let p = work::plan(&store, &cfg.routing, &file, &Selection::Open { min_priority: min.clone() }, scope.as_ref(), apply)?;
    let mut out = std::io::stdout().lock();
    let (nf, gf): (i64, i64) = (
        p.items.iter().filter(|i| i.change == Change::New).map(|i| i.findings).sum(),
        p.items.iter().filter(|i| i.change == Change::Grown).map(|i| i.findings).sum(),
    );
    let unchanged: i64 = p.unchanged.iter().map(|u| u.1).sum();
    writeln!(
        out,
        "{} open findings {min} and above: {} new work items ({nf} findings), {} grown (+{gf} findings), {unchanged} unchanged; {} findings already held",
        if apply { "Applied to" } else { "Plan for" },
        p.new_items(),
        p.grown_items(),
        p.already
    )?;
    writeln!(out, "routing: {} rule{} and the default ({})", cfg.routing.rules.len(), if cfg.routing.rules.len() == 1 { "" } else { "s" }, cfg.routing.default.team)?;
    let mut teams: BTreeMap<String, [i64; 5]> = BTreeMap::new();
    for i in &p.items {
        let e = teams.entry(i.team.clone()).or_default();
        match i.change {
            Change::New => {
                e[0] += 1;
                e[1] += i.findings;
            }
            Change::Grown => {
                e[2] += 1;
                e[3] += i.findings;
            }
        }
    }
    for (t, n) in &p.unchanged {
        teams.entry(t.clone()).or_default()[4] += n;
    }
    if !teams.is_empty() {
        writeln!(out, "\n{:<24} {:>5} {:>9} {:>6} {:>9} {:>10}", "team", "new", "findings", "grown", "+findings", "unchanged")?;
        for (t, n) in &teams {
            writeln!(out, "{:<24} {:>5} {:>9} {:>6} {:>9} {:>10}", crate::store::output::clip(t, 24), n[0], n[1], n[2], n[3], n[4])?;
        }
    }
    if !p.items.is_empty() {
        writeln!(out, "\n{:<6} {:>6} {:<4} {:<10} {:>8} {:<18} title", "change", "item", "prio", "due", "findings", "team")?;
        for i in p.items.iter().take(limit) {
            writeln!(
                out,
                "{:<6} {:>6} {:<4} {:<10} {:>8} {:<18} {}",
                if i.change == Change::New { "new" } else { "grown" },
                i.work_item_id.map(|w| format!("#{w}")).unwrap_or_else(|| "-".into()),
                i.priority.as_deref().unwrap_or("-"),
                i.due.map(|d| d.to_string()).unwrap_or_else(|| "-".into()),
                if i.change == Change::New { i.findings.to_string() } else { format!("+{}", i.findings) },
                crate::store::output::clip(&i.team, 18),
                i.title
            )?;
        }
        if p.items.len() > limit {
            writeln!(out, "... and {} more (--limit)", p.items.len() - limit)?;
        }
    }
    if !apply && !p.items.is_empty() {
        writeln!(out, "\nNothing changed: run `ctem plan --apply` to create and update these work items.")?;
    }
    Ok(0)
}

pub fn work(cli: &Cli, paths: &Paths, cmd: &WorkCmd) -> anyhow::Result<i32> {
    match cmd {
        WorkCmd::List { status, team, format } => {
            let store = open_for_read(cli, paths)?;
            let mut w = vec!["true".to_string()];
            match status.as_deref() {
                Some("open") => w.push(format!("{}", work::OPEN_WORK)),
                Some(s) if work::STATUSES.contains(&s) => w.push(format!("status = {}", q(s))),
                Some(s) => bail!("unknown status '{s}' (open, {})", work::STATUSES.join(", ")),
                None => {}
            }
            if let Some(t) = team {
                w.push(format!("lower(team) = lower({})", q(t)));
            }
            let sql = format!(
                "SELECT work_item_id AS id, status, priority AS prio, team, assignee, due_date AS due, days_left, sla, open_findings AS open,
                        findings, assets, title
                 FROM work_board WHERE {} ORDER BY status IN ('verified', 'risk_accepted', 'false_positive'), priority NULLS LAST, due_date NULLS LAST, work_item_id",
                w.join(" AND ")
            );
            print_query(&store.conn, &sql, format)?;
            Ok(0)
        }
        WorkCmd::Show { id } => {
            let store = open_for_read(cli, paths)?;
            print!("{}", show(&store.conn, *id)?);
            Ok(0)
        }
        WorkCmd::Move { ids, to } => {
            let (store, _) = open_rw_cfg(cli, paths)?;
            let m = work::move_items(&store, ids, to)?;
            for id in &m.moved {
                println!("#{id} -> {to}");
            }
            for (id, why) in &m.refused {
                eprintln!("#{id} not moved: {why}");
            }
            Ok(if m.refused.is_empty() { 0 } else { 1 })
        }
        WorkCmd::Assign { id, who } => {
            let (store, _) = open_rw_cfg(cli, paths)?;
            work::assign(&store, *id, who)?;
            println!("#{id} assigned to {}", if who.trim().is_empty() { "nobody" } else { who.trim() });
            Ok(0)
        }
    }
}

/// A work item as text: summary, findings, fix plan, history (shared with the console's card view).
pub fn show(c: &duckdb::Connection, id: i64) -> anyhow::Result<String> {
    type Head = (String, Option<String>, String, Option<String>, Option<String>, Option<chrono::NaiveDate>, Option<i32>, String, i64, i64, i64, Option<String>, Option<String>, Option<String>, String);
    let h: Head = c
        .query_row(
            "SELECT title, priority, status, team, assignee, due_date, days_left, sla, findings, open_findings, assets, rule, jira_project, snow_group,
                    strftime(created_at, '%Y-%m-%d %H:%M')
             FROM work_board WHERE work_item_id = ?",
            duckdb::params![id],
            |r| {
                Ok((
                    r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?,
                    r.get(12)?, r.get(13)?, r.get(14)?,
                ))
            },
        )
        .map_err(|_| anyhow::anyhow!("no work item #{id}"))?;
    let mut s = format!("#{id} {}\n", h.0);
    s.push_str(&format!(
        "{} · {} · team {}{} · {} of {} findings open on {} assets\n",
        h.1.as_deref().unwrap_or("-"),
        h.2,
        h.3.as_deref().unwrap_or("-"),
        h.4.as_deref().map(|a| format!(" · {a}")).unwrap_or_default(),
        h.9,
        h.8,
        h.10
    ));
    if let Some(d) = h.5 {
        let left = h.6.unwrap_or(0);
        s.push_str(&format!(
            "due {d} ({}){}\n",
            if left < 0 { format!("{} days overdue", -left) } else { format!("{left} days left") },
            if h.7 == "breached" { " · SLA BREACHED" } else { "" }
        ));
    }
    s.push_str(&format!(
        "routed by {}{}{} · created {}\n",
        h.11.as_deref().unwrap_or("hand-off"),
        h.12.as_deref().map(|p| format!(" · Jira {p}")).unwrap_or_default(),
        h.13.as_deref().map(|g| format!(" · ServiceNow {g}")).unwrap_or_default(),
        h.14
    ));
    s.push_str("\nFindings\n");
    let mut st = c.prepare(
        "SELECT f.finding_id, f.status, coalesce(f.priority, '-'), coalesce(CAST(f.risk_score AS VARCHAR), '-'), f.asset_name, f.vuln_id, f.title,
                coalesce(CAST(sl.due_date AS VARCHAR), '')
         FROM work_item_findings wf JOIN findings f USING (finding_id) LEFT JOIN finding_sla sl ON sl.finding_id = f.finding_id
         WHERE wf.work_item_id = ? ORDER BY f.status IN ('open', 'reopened', 'mitigated') DESC, coalesce(f.risk_score, 0) DESC, f.finding_id LIMIT 21",
    )?;
    let rows = st
        .query_map(duckdb::params![id], |r| {
            Ok(format!(
                "  {:>7} {:<9} {:<3} {:>5} {:<24} {:<18} {}{}",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                crate::store::output::clip(&r.get::<_, String>(4)?, 24),
                crate::store::output::clip(&r.get::<_, String>(5)?, 18),
                r.get::<_, String>(6)?,
                { let d: String = r.get(7)?; if d.is_empty() { d } else { format!(" (due {d})") } }
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (i, r) in rows.iter().enumerate() {
        if i == 20 {
            s.push_str(&format!("  ... and {} more\n", h.8 - 20));
            break;
        }
        s.push_str(r);
        s.push('\n');
    }
    s.push('\n');
    match crate::fixplan::for_work_item(c, id) {
        Ok(p) => s.push_str(&p.text()),
        Err(e) => s.push_str(&format!("Fix plan unavailable: {e}")),
    }
    let mut st = c.prepare(
        "SELECT system, coalesce(ticket_key, '(not created)'), coalesce(remote_status, ''), coalesce(remote_assignee, ''), coalesce(remote_resolution, ''),
                coalesce(strftime(last_synced, '%Y-%m-%d %H:%M'), 'never'), error, url
         FROM tickets WHERE work_item_id = ? ORDER BY system",
    )?;
    let tickets: Vec<String> = st
        .query_map(duckdb::params![id], |r| {
            let (sys, key, status, who, res, last, err, url): (String, String, String, String, String, String, Option<String>, Option<String>) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?);
            let mut l = format!("  {sys:<10} {key:<12} {status}");
            if !who.is_empty() {
                l.push_str(&format!(" · {who}"));
            }
            if !res.is_empty() {
                l.push_str(&format!(" · {res}"));
            }
            l.push_str(&format!(" · synced {last}"));
            if let Some(u) = url {
                l.push_str(&format!(" · {u}"));
            }
            if let Some(e) = err {
                l.push_str(&format!("\n    last sync failed: {e}"));
            }
            Ok(l)
        })?
        .collect::<Result<_, _>>()?;
    if !tickets.is_empty() {
        s.push_str("\n\nTickets\n");
        s.push_str(&tickets.join("\n"));
    }
    s.push_str("\n\nHistory\n");
    for e in work::history(c, "work_item", id)? {
        s.push_str(&format!("  {}\n", e.line()));
    }
    Ok(s)
}

pub fn exception(cli: &Cli, paths: &Paths, cmd: &ExceptionCmd) -> anyhow::Result<i32> {
    match cmd {
        ExceptionCmd::Add { kind, finding, work_item, filter, justification, requester, approver, expires } => {
            let (store, cfg) = open_rw_cfg(cli, paths)?;
            let now = chrono::Utc::now().naive_utc();
            let chosen = [!finding.is_empty(), work_item.is_some(), filter.is_some()].iter().filter(|b| **b).count();
            if chosen != 1 {
                bail!("name what is excepted: exactly one of --finding, --work-item or --filter");
            }
            let target = if let Some(w) = work_item {
                Target::WorkItem(*w)
            } else if let Some(f) = filter {
                let comp = crate::query::compile(f, &finding_fields(), &finding_text_fields(), now).map_err(|e| anyhow::anyhow!("--filter: {}", e.message))?;
                Target::Filter { sql: comp.sql, params: comp.params.iter().map(param_value).collect(), text: f.clone() }
            } else {
                Target::Findings(finding.clone())
            };
            let expires = match expires {
                Some(e) => Some(exceptions::parse_expiry(e, now).map_err(anyhow::Error::msg)?),
                None => None,
            };
            let req = Request {
                kind: kind.clone(),
                justification: justification.clone(),
                requester: requester.clone().unwrap_or_else(|| store.actor.clone()),
                approver: approver.clone(),
                expires,
                target,
            };
            let g = exceptions::add(&store, &req, cfg.sla.max_acceptance_days)?;
            crate::risk::rescore_store(&store)?;
            println!(
                "exception #{}: {} findings {}{}{}",
                g.exception_id,
                g.findings,
                if kind == "risk_accepted" { "accepted" } else { "marked false positive" },
                expires.map(|e| format!(" until {}", e.format("%Y-%m-%d"))).unwrap_or_default(),
                if g.skipped > 0 { format!("; {} selected findings were not open", g.skipped) } else { String::new() }
            );
            Ok(0)
        }
        ExceptionCmd::List { all, format } => {
            let store = open_for_read(cli, paths)?;
            let sql = format!(
                "SELECT exception_id AS id, kind, status, findings, held, requester, approver, strftime(created_at, '%Y-%m-%d') AS created,
                        age_days, strftime(expires_at, '%Y-%m-%d') AS expires, days_to_expiry, selection, justification
                 FROM exception_list {} ORDER BY status <> 'active', expires_at NULLS LAST, exception_id",
                if *all { "" } else { "WHERE status = 'active'" }
            );
            print_query(&store.conn, &sql, format)?;
            Ok(0)
        }
        ExceptionCmd::Revoke { id, reason } => {
            let (store, _) = open_rw_cfg(cli, paths)?;
            let n = exceptions::revoke(&store, *id, reason)?;
            crate::risk::rescore_store(&store)?;
            println!("exception #{id} revoked: {n} findings back in the queue");
            Ok(0)
        }
    }
}

pub fn sla(cli: &Cli, paths: &Paths) -> anyhow::Result<i32> {
    let store = open_for_read(cli, paths)?;
    let c = &store.conn;
    let reopened: String = c.query_row("SELECT coalesce(max(value), 'restart') FROM settings WHERE key = 'sla_reopened'", [], |r| r.get(0))?;
    let policy: Vec<String> = {
        let mut st = c.prepare("SELECT priority || ' ' || days || 'd' FROM sla_policy ORDER BY priority")?;
        st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    println!("SLA policy: {} (capped by CISA KEV due dates; reopened findings: clock {}s)\n", policy.join(", "), if reopened == "keep" { "keep" } else { "restart" });
    println!("Open findings");
    print_query(
        c,
        "SELECT priority AS prio, count(*) AS open, count(*) FILTER (WHERE breached) AS breached,
                count(*) FILTER (WHERE NOT breached AND days_left <= 3) AS due_3d, count(*) FILTER (WHERE due_by = 'kev') AS kev_capped,
                min(due_date) AS earliest_due
         FROM finding_sla GROUP BY priority ORDER BY priority",
        "table",
    )?;
    println!("\nOpen work items by team");
    print_query(
        c,
        "SELECT coalesce(team, '(none)') AS team, count(*) AS items, count(*) FILTER (WHERE sla = 'breached') AS breached,
                count(*) FILTER (WHERE sla = 'due_soon') AS due_3d, sum(open_findings) AS open_findings, min(due_date) AS earliest_due
         FROM work_board WHERE status NOT IN ('fixed', 'verified', 'risk_accepted', 'false_positive') GROUP BY ALL ORDER BY breached DESC, team",
        "table",
    )?;
    println!("\nTime to fix (findings fixed in the last 90 days)");
    print_query(
        c,
        "SELECT coalesce(priority, '-') AS prio, team, count(*) AS fixed, round(median(days_to_fix), 1) AS median_days,
                round(avg(days_to_fix), 1) AS mean_days,
                count(*) FILTER (WHERE days_to_fix > p.days) AS late
         FROM remediation_times r LEFT JOIN sla_policy p USING (priority)
         WHERE fixed_at >= current_timestamp::TIMESTAMP - INTERVAL 90 DAY GROUP BY ALL ORDER BY prio, team",
        "table",
    )?;
    println!("\nMean time to fix by month");
    print_query(
        c,
        "PIVOT (SELECT month, coalesce(priority, '-') AS prio, days_to_fix FROM remediation_times WHERE month >= date_trunc('month', CAST(current_timestamp::TIMESTAMP AS DATE)) - INTERVAL 5 MONTH)
         ON prio USING round(avg(days_to_fix), 1) GROUP BY month ORDER BY month",
        "table",
    )?;
    Ok(0)
}

pub fn audit(cli: &Cli, paths: &Paths, entity: Option<&str>, id: Option<i64>, limit: usize, format: &str) -> anyhow::Result<i32> {
    let store = open_for_read(cli, paths)?;
    let mut w = vec!["true".to_string()];
    if let Some(e) = entity {
        w.push(format!("entity = {}", q(e)));
    }
    if let Some(i) = id {
        w.push(format!("entity_id = {i}"));
    }
    let sql = format!(
        "SELECT strftime(changed_at, '%Y-%m-%d %H:%M:%S') AS at, actor, entity, entity_id AS id, action, old_value AS old, new_value AS new, detail
         FROM audit_log WHERE {} ORDER BY changed_at DESC, rowid DESC LIMIT {limit}",
        w.join(" AND ")
    );
    print_query(&store.conn, &sql, format)?;
    Ok(0)
}

/// The sync configuration from config.toml and the environment.
pub fn sync_config(paths: &Paths) -> anyhow::Result<crate::sync::SyncConfig> {
    let path = paths.config_file();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!("{}: {e}", path.display()),
    };
    crate::sync::config(text.as_deref(), &path, &|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)
}

pub fn sync(cli: &Cli, paths: &Paths, cmd: Option<&SyncCmd>, dry_run: bool, system: Option<String>) -> anyhow::Result<i32> {
    match cmd {
        Some(SyncCmd::Status) => {
            let store = open_for_read(cli, paths)?;
            println!("Tickets");
            print_query(
                &store.conn,
                "SELECT system, count(*) FILTER (WHERE ticket_key IS NOT NULL) AS tickets, count(*) FILTER (WHERE error IS NOT NULL) AS errors,
                        strftime(max(last_synced), '%Y-%m-%d %H:%M') AS last_synced FROM tickets GROUP BY system ORDER BY system",
                "table",
            )?;
            println!("\nOutbox (not done)");
            print_query(&store.conn, "SELECT system, action, state, count(*) AS n, any_value(error) AS example FROM sync_outbox WHERE state <> 'done' GROUP BY ALL ORDER BY ALL", "table")?;
            println!("\nOpen conflicts");
            print_query(
                &store.conn,
                "SELECT system, work_item_id, field, local_value AS local, remote_value AS remote, strftime(detected_at, '%Y-%m-%d %H:%M') AS detected FROM sync_conflicts WHERE resolved_at IS NULL ORDER BY detected_at",
                "table",
            )?;
            Ok(0)
        }
        Some(SyncCmd::StoreSecret { system, user }) => {
            let var = if system == "jira" { "CTEM_JIRA_USER" } else { "CTEM_SNOW_USER" };
            let user = match user.clone().or_else(|| std::env::var(var).ok()) {
                Some(u) => u,
                None => {
                    let text = std::fs::read_to_string(paths.config_file()).unwrap_or_default();
                    let v: toml::Value = toml::from_str(&text).unwrap_or(toml::Value::Table(Default::default()));
                    let sec = if system == "jira" { "jira" } else { "servicenow" };
                    v.get(sec).and_then(|t| t.get("user")).and_then(|u| u.as_str()).map(String::from).with_context(|| format!("which user? --user, {var} or [{sec}] user"))?
                }
            };
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let secret = crate::sync::http::Secret::new(line.trim().to_string());
            if secret.expose().is_empty() {
                bail!("nothing on standard input: pipe the token in (`ctem sync store-secret {system} < token.txt`)");
            }
            crate::sync::store_keyring_secret(system, &user, &secret)?;
            println!("{system} secret for {user} kept in the OS keyring");
            Ok(0)
        }
        Some(SyncCmd::Resolve { work_item, system, keep }) => {
            let (store, _) = open_rw_cfg(cli, paths)?;
            println!("{}", crate::sync::resolve(&store, system, *work_item, keep)?);
            Ok(0)
        }
        None => {
            let cfg = sync_config(paths)?;
            let (store, _) = if dry_run { (open_for_read(cli, paths)?, crate::config::Config::default()) } else { open_rw_cfg(cli, paths)? };
            let out = crate::sync::run(&store, &cfg, &crate::sync::Options { dry_run, only: system, call_budget: None, progress: None })?;
            let mut failed = 0;
            for o in &out {
                for d in &o.dry {
                    println!("{d}\n");
                }
                if dry_run {
                    if let Some(e) = &o.error {
                        println!("{}: {e}", o.system);
                    }
                    let n = o.dry.iter().filter(|d| !d.starts_with('(')).count();
                    println!("{}: {n} requests would be sent (dry run: nothing sent, nothing changed)", o.system);
                    continue;
                }
                println!("{}", o.line());
                if o.error.is_some() {
                    failed += 1;
                }
                for (id, e) in &o.failed {
                    eprintln!("  #{id}: {e}");
                }
                failed += o.failed.len();
            }
            Ok(if failed > 0 { 1 } else { 0 })
        }
    }
}
