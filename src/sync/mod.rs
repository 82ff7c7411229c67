//! Ticket sync with Jira Cloud and ServiceNow, both ways.
//!
//! Each run, per tracker: (1) calls left unfinished by an earlier run are settled by searching for
//! their fingerprint (allowing for search lag) before anything is created again; (2) the tracker's
//! changes since the last watermark are read; (3) work items without a ticket are created, with the
//! fingerprint in the create call itself (Jira label, ServiceNow `correlation_id`); (4) local status
//! changes are pushed as transitions, and added findings as comments; (5) the tracker's changes are
//! applied: a ticket closed as done moves its work item to `fixed`, a reopened one reopens it. A change
//! made on both sides since the last sync is a conflict for a person, never overwritten. Every call is
//! written to `sync_outbox` before it is made and its outcome after, so a killed run resumes.

pub mod http;
pub mod jira;
pub mod snow;

use crate::store::work::audit;
use crate::store::Store;
use anyhow::bail;
use http::{CallError, Http, Policy, Secret};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// A status category both trackers can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    New,
    InProgress,
    Done,
}

impl Category {
    pub fn of(local: &str) -> Category {
        match local {
            "new" | "triaged" => Category::New,
            "assigned" | "in_progress" => Category::InProgress,
            _ => Category::Done,
        }
    }
    pub fn jira(self) -> &'static str {
        match self {
            Category::New => "new",
            Category::InProgress => "indeterminate",
            Category::Done => "done",
        }
    }
}

/// A ticket to create.
#[derive(Debug, Clone)]
pub struct NewTicket {
    pub work_item_id: i64,
    pub fingerprint: String,
    pub title: String,
    pub sections: Vec<(String, Vec<String>)>,
    pub plan: Option<String>,
    pub priority: Option<String>,
    pub due: Option<chrono::NaiveDate>,
    pub assignee: Option<String>,
    pub project: Option<String>,
    pub group: Option<String>,
    pub team: Option<String>,
    pub fix_kind: Option<String>,
}

/// A ticket as the tracker shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub fingerprint: String,
    pub key: String,
    pub id: String,
    pub url: String,
    pub status: String,
    /// Jira statusCategory key, ServiceNow state value.
    pub category: String,
    pub assignee: Option<String>,
    pub resolution: Option<String>,
    pub updated: String,
    pub comments: Option<i64>,
}

/// The label / correlation id of a work item: stable, short, free of spaces.
pub fn ticket_fingerprint(work_fingerprint: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(work_fingerprint.as_bytes());
    format!("ctem-{}", &hex::encode(h)[..20])
}

// ---------------------------------------------------------------------------------------------------
// Configuration

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct JiraDef {
    url: Option<String>,
    user: Option<String>,
    token: Option<String>,
    token_file: Option<String>,
    project: Option<String>,
    issue_type: Option<String>,
    priorities: Option<BTreeMap<String, String>>,
    link_base: Option<String>,
    /// More fields set on every issue created (`customfield_10042 = "{team}"`); values may name
    /// {work_item}, {priority}, {team}, {fix_kind}.
    fields: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SnowDef {
    url: Option<String>,
    user: Option<String>,
    password: Option<String>,
    password_file: Option<String>,
    table: Option<String>,
    states: Option<BTreeMap<String, String>>,
    fixed_states: Option<Vec<String>>,
    open_states: Option<Vec<String>>,
    close_code: Option<String>,
    /// More fields set on every record created (`category = "security"`), with the same placeholders.
    fields: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SyncDef {
    search_lag_secs: Option<f64>,
    max_retries: Option<u32>,
    timeout_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
struct Top {
    jira: Option<JiraDef>,
    servicenow: Option<SnowDef>,
    sync: Option<SyncDef>,
}

pub struct JiraCfg {
    pub url: reqwest::Url,
    pub user: String,
    pub token: Secret,
    pub project: Option<String>,
    pub issue_type: String,
    pub priorities: [String; 4],
    pub link_base: String,
    pub fields: BTreeMap<String, serde_json::Value>,
}

pub struct SnowCfg {
    pub url: reqwest::Url,
    pub user: String,
    pub password: Secret,
    pub table: String,
    pub states: BTreeMap<String, String>,
    pub fixed_states: Vec<String>,
    pub open_states: Vec<String>,
    pub close_code: String,
    pub fields: BTreeMap<String, serde_json::Value>,
}

pub struct SyncConfig {
    pub jira: Option<JiraCfg>,
    pub snow: Option<SnowCfg>,
    pub search_lag: Duration,
    pub policy: Policy,
}

/// A secret kept in a file (or in config.toml itself) must not be readable by others.
fn private_file(path: &std::path::Path, what: &str) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!("{} holds the {what} and is readable by others (mode {mode:o}); chmod 600 it", path.display()));
        }
    }
    Ok(())
}

fn read_secret(path: &str, what: &str) -> Result<Secret, String> {
    let p = std::path::PathBuf::from(path);
    private_file(&p, what)?;
    let t = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(Secret::new(t.trim().to_string()))
}

/// The OS keyring's entry for a tracker user (service `ctem`, account `jira:USER`), if there is one.
pub fn keyring_secret(system: &str, user: &str) -> Option<Secret> {
    let e = keyring::Entry::new("ctem", &format!("{system}:{user}")).ok()?;
    e.get_password().ok().filter(|p| !p.is_empty()).map(Secret::new)
}

/// Keep a tracker secret in the OS keyring.
pub fn store_keyring_secret(system: &str, user: &str, secret: &Secret) -> anyhow::Result<()> {
    let hint = "the OS keyring may not be available in this session; use the environment or a mode-600 file instead";
    let e = keyring::Entry::new("ctem", &format!("{system}:{user}")).map_err(|e| anyhow::anyhow!("keyring: {e} ({hint})"))?;
    e.set_password(secret.expose()).map_err(|e| anyhow::anyhow!("keyring: {e} ({hint})"))?;
    Ok(())
}

/// `[jira.fields]` / `[servicenow.fields]` as JSON values; the fields ctem sets itself are refused.
fn extra_fields(f: Option<BTreeMap<String, toml::Value>>, system: &str) -> Result<BTreeMap<String, serde_json::Value>, String> {
    let own = ["project", "issuetype", "summary", "description", "labels", "correlation_id", "short_description", "state"];
    let mut out = BTreeMap::new();
    for (k, v) in f.unwrap_or_default() {
        if own.contains(&k.as_str()) {
            return Err(format!("[{system}.fields] {k}: ctem sets this field itself"));
        }
        out.insert(k, serde_json::to_value(v).map_err(|e| format!("[{system}.fields]: {e}"))?);
    }
    Ok(out)
}

/// Fill `{work_item}`, `{priority}`, `{team}`, `{fix_kind}` in string values of extra fields.
pub fn fill_fields(fields: &BTreeMap<String, serde_json::Value>, t: &NewTicket) -> serde_json::Map<String, serde_json::Value> {
    fn fill(v: &serde_json::Value, t: &NewTicket) -> serde_json::Value {
        match v {
            serde_json::Value::String(s) => serde_json::Value::String(
                s.replace("{work_item}", &t.work_item_id.to_string())
                    .replace("{priority}", t.priority.as_deref().unwrap_or(""))
                    .replace("{team}", t.team.as_deref().unwrap_or(""))
                    .replace("{fix_kind}", t.fix_kind.as_deref().unwrap_or("")),
            ),
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(|x| fill(x, t)).collect()),
            serde_json::Value::Object(o) => serde_json::Value::Object(o.iter().map(|(k, x)| (k.clone(), fill(x, t))).collect()),
            x => x.clone(),
        }
    }
    fields.iter().map(|(k, v)| (k.clone(), fill(v, t))).collect()
}

/// A tracker's secret: the environment, then config.toml, then a private file, then the OS keyring.
fn secret(from_env: Option<String>, inline: Option<String>, file: Option<String>, system: &str, user: &str, names: (&str, &str, &str)) -> Result<Secret, String> {
    let (what, var, key) = names;
    if let Some(t) = from_env.filter(|s| !s.is_empty()) {
        return Ok(Secret::new(t));
    }
    match (inline, file) {
        (Some(t), _) => Ok(Secret::new(t)),
        (None, Some(f)) => read_secret(&f, &format!("{system} {what}")),
        (None, None) => keyring_secret(system, user)
            .ok_or_else(|| format!("{system}: no {what} ({var}, the OS keyring (`ctem sync store-secret {system}`), or [{system}] {key} with mode 600)")),
    }
}

/// Read `[jira]`, `[servicenow]` and `[sync]` from config.toml (`text` at `path`) and the environment
/// (`CTEM_JIRA_*`, `CTEM_SNOW_*` win). A tracker is configured when its URL is set; then its user and
/// secret must be too.
pub fn config(text: Option<&str>, path: &std::path::Path, env: &dyn Fn(&str) -> Option<String>) -> Result<SyncConfig, String> {
    let file = path.display().to_string();
    let top: Top = match text {
        Some(t) => toml::from_str(t).map_err(|e| {
            let line = e.span().map(|s| crate::config::line_of(t, s.start)).unwrap_or(1);
            format!("{file} line {line}: {}", e.message().lines().next().unwrap_or(""))
        })?,
        None => Top::default(),
    };
    let j = top.jira.unwrap_or_default();
    let sn = top.servicenow.unwrap_or_default();
    let sy = top.sync.unwrap_or_default();
    if j.token.is_some() || sn.password.is_some() {
        private_file(path, "tracker credentials")?;
    }
    let pick = |e: &str, v: Option<String>| env(e).filter(|s| !s.trim().is_empty()).or(v.filter(|s| !s.trim().is_empty()));
    let jira = match pick("CTEM_JIRA_URL", j.url) {
        None => None,
        Some(url) => {
            let url = http::check_url(&url, "jira")?;
            let user = pick("CTEM_JIRA_USER", j.user).ok_or("jira: no user (CTEM_JIRA_USER or [jira] user)")?;
            let token = secret(env("CTEM_JIRA_TOKEN"), j.token, j.token_file, "jira", &user, ("API token", "CTEM_JIRA_TOKEN", "token_file"))?;
            let pr = j.priorities.unwrap_or_default();
            let defaults = ["Highest", "High", "Medium", "Low"];
            let priorities: [String; 4] = std::array::from_fn(|i| pr.get(&format!("P{}", i + 1)).cloned().unwrap_or_else(|| defaults[i].to_string()));
            Some(JiraCfg {
                url,
                user,
                token,
                project: pick("CTEM_JIRA_PROJECT", j.project),
                issue_type: j.issue_type.unwrap_or_else(|| "Task".into()),
                priorities,
                link_base: j.link_base.unwrap_or_else(|| "ctem://work-item".into()),
                fields: extra_fields(j.fields, "jira")?,
            })
        }
    };
    let snow = match pick("CTEM_SNOW_URL", sn.url) {
        None => None,
        Some(url) => {
            let url = http::check_url(&url, "servicenow")?;
            let user = pick("CTEM_SNOW_USER", sn.user).ok_or("servicenow: no user (CTEM_SNOW_USER or [servicenow] user)")?;
            let password = secret(env("CTEM_SNOW_PASSWORD"), sn.password, sn.password_file, "servicenow", &user, ("password", "CTEM_SNOW_PASSWORD", "password_file"))?;
            // Incident states: 1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed, 8 Canceled.
            let mut states: BTreeMap<String, String> = [("new", "1"), ("triaged", "1"), ("assigned", "2"), ("in_progress", "2"), ("fixed", "6"), ("verified", "7"), ("risk_accepted", "7"), ("false_positive", "7")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            for (k, v) in sn.states.unwrap_or_default() {
                if !crate::store::work::STATUSES.contains(&k.as_str()) {
                    return Err(format!("{file}: [servicenow.states] {k}: not a work item status ({})", crate::store::work::STATUSES.join(", ")));
                }
                states.insert(k, v);
            }
            Some(SnowCfg {
                url,
                user,
                password,
                table: pick("CTEM_SNOW_TABLE", sn.table).unwrap_or_else(|| "incident".into()),
                states,
                fixed_states: sn.fixed_states.unwrap_or_else(|| vec!["6".into(), "7".into()]),
                open_states: sn.open_states.unwrap_or_else(|| vec!["1".into(), "2".into(), "3".into()]),
                close_code: sn.close_code.unwrap_or_else(|| "Solved (Permanently)".into()),
                fields: extra_fields(sn.fields, "servicenow")?,
            })
        }
    };
    let mut policy = Policy::default();
    if let Some(m) = sy.max_retries {
        policy.max_retries = m.min(20);
    }
    if let Some(t) = sy.timeout_secs {
        policy.timeout = Duration::from_secs(t.clamp(1, 600));
    }
    Ok(SyncConfig { jira, snow, search_lag: Duration::from_secs_f64(sy.search_lag_secs.unwrap_or(5.0).clamp(0.0, 300.0)), policy })
}

// ---------------------------------------------------------------------------------------------------
// The run

pub enum Tracker {
    Jira(jira::Jira, Option<String>),
    Snow(snow::Snow),
}

impl Tracker {
    pub fn system(&self) -> &'static str {
        match self {
            Tracker::Jira(..) => "jira",
            Tracker::Snow(_) => "servicenow",
        }
    }

    fn http(&self) -> &Http {
        match self {
            Tracker::Jira(j, _) => &j.http,
            Tracker::Snow(s) => &s.http,
        }
    }

    /// The remote category a local status corresponds to.
    fn category_for(&self, local: &str) -> String {
        match self {
            Tracker::Jira(..) => Category::of(local).jira().to_string(),
            Tracker::Snow(s) => s.states.get(local).cloned().unwrap_or_default(),
        }
    }

    /// What a remote category means locally, given the work item's status now (None: nothing to do).
    fn local_for(&self, remote: &str, now: &str) -> Option<&'static str> {
        let done_now = matches!(now, "fixed" | "verified" | "risk_accepted" | "false_positive");
        let (is_done, is_open) = match self {
            Tracker::Jira(..) => (remote == "done", remote == "new" || remote == "indeterminate"),
            Tracker::Snow(s) => (s.fixed_states.iter().any(|x| x == remote), s.open_states.iter().any(|x| x == remote)),
        };
        if is_done && !done_now {
            Some("fixed")
        } else if is_open && done_now && now != "risk_accepted" && now != "false_positive" {
            Some("in_progress")
        } else {
            None
        }
    }

    async fn find(&self, fps: &[String]) -> Result<Vec<Remote>, CallError> {
        let mut out = Vec::new();
        for chunk in fps.chunks(50) {
            out.extend(match self {
                Tracker::Jira(j, _) => j.find(chunk).await?,
                Tracker::Snow(s) => s.find(chunk).await?,
            });
        }
        Ok(out)
    }

    async fn changed_since(&self, w: Option<&str>) -> Result<Vec<Remote>, CallError> {
        match self {
            Tracker::Jira(j, _) => j.changed_since(w).await,
            Tracker::Snow(s) => s.changed_since(w).await,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub system: String,
    pub created: usize,
    pub adopted: usize,
    pub pushed: usize,
    pub commented: usize,
    pub pulled: usize,
    pub conflicts: usize,
    pub failed: Vec<(i64, String)>,
    pub interrupted: bool,
    /// Why the run stopped for this tracker (unreachable, credentials refused ...).
    pub error: Option<String>,
    pub requests: usize,
    pub throttled: usize,
    /// `--dry-run`: the requests that would be sent.
    pub dry: Vec<String>,
}

impl Outcome {
    pub fn line(&self) -> String {
        if let Some(e) = &self.error {
            return format!("{}: {e}; nothing further was sent ({} requests)", self.system, self.requests);
        }
        let mut s = format!(
            "{}: {} created, {} found after an unfinished call, {} status changes pushed, {} comments, {} changes pulled, {} conflicts, {} failed; {} requests",
            self.system, self.created, self.adopted, self.pushed, self.commented, self.pulled, self.conflicts, self.failed.len(), self.requests
        );
        if self.throttled > 0 {
            s.push_str(&format!(" ({} throttled and retried)", self.throttled));
        }
        if self.interrupted {
            s.push_str("; interrupted: the next run resumes");
        }
        s
    }
}

pub struct Options {
    pub dry_run: bool,
    /// Only this tracker (`jira` or `servicenow`).
    pub only: Option<String>,
    /// Overrides the configured call budget (tests stop a run part-way with it).
    pub call_budget: Option<usize>,
    /// Counts the requests made, for a progress display.
    pub progress: Option<std::sync::Arc<std::sync::atomic::AtomicUsize>>,
}

/// Work items a tracker should hold a ticket for: every one not closed before it was ever synced.
const WANTED: &str = "w.status NOT IN ('verified', 'risk_accepted', 'false_positive')";

pub fn run(store: &Store, cfg: &SyncConfig, opts: &Options) -> anyhow::Result<Vec<Outcome>> {
    if store.read_only && !opts.dry_run {
        bail!("read-only: tickets cannot be pushed (open without --read-only, or use --dry-run)");
    }
    if cfg.jira.is_none() && cfg.snow.is_none() {
        bail!("no tracker configured: set CTEM_JIRA_URL/USER/TOKEN or CTEM_SNOW_URL/USER/PASSWORD, or [jira]/[servicenow] in config.toml");
    }
    let mut policy = cfg.policy.clone();
    if opts.call_budget.is_some() {
        policy.call_budget = opts.call_budget;
    }
    policy.progress = opts.progress.clone();
    let mut trackers = Vec::new();
    if let Some(j) = &cfg.jira {
        if opts.only.as_deref().is_none_or(|o| o == "jira") {
            let http = Http::new(&j.user, j.token.clone(), policy.clone())?;
            let mut jc = jira::Jira::new(j.url.clone(), http, j.issue_type.clone(), j.priorities.clone(), j.link_base.clone());
            jc.fields = j.fields.clone();
            trackers.push(Tracker::Jira(jc, j.project.clone()));
        }
    }
    if let Some(s) = &cfg.snow {
        if opts.only.as_deref().is_none_or(|o| o == "servicenow") {
            let http = Http::new(&s.user, s.password.clone(), policy.clone())?;
            trackers.push(Tracker::Snow(snow::Snow {
                base: s.url.clone(),
                http,
                table: s.table.clone(),
                states: s.states.clone(),
                fixed_states: s.fixed_states.clone(),
                open_states: s.open_states.clone(),
                close_code: s.close_code.clone(),
                fields: s.fields.clone(),
                users: Default::default(),
            }));
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut out: Vec<Outcome> = Vec::new();
    // A change pulled from one tracker is pushed to the other in a second pass of the same run.
    for pass in 0..2 {
        let mut pulled = 0;
        for t in &trackers {
            let o = rt.block_on(sync_one(store, t, cfg.search_lag, opts.dry_run))?;
            let stop = o.interrupted;
            pulled += o.pulled;
            match out.iter_mut().find(|x| x.system == o.system) {
                Some(x) if pass > 0 => {
                    x.created += o.created;
                    x.adopted += o.adopted;
                    x.pushed += o.pushed;
                    x.commented += o.commented;
                    x.pulled += o.pulled;
                    x.conflicts = o.conflicts;
                    x.failed = o.failed;
                    x.interrupted = o.interrupted;
                    x.error = x.error.take().or(o.error);
                    x.requests = o.requests;
                    x.throttled = o.throttled;
                }
                _ => out.push(o),
            }
            if stop {
                return Ok(out);
            }
        }
        if pulled == 0 || trackers.len() < 2 || opts.dry_run {
            break;
        }
    }
    Ok(out)
}

struct Item {
    id: i64,
    fingerprint: String,
}

fn work_items_wanted(store: &Store) -> anyhow::Result<Vec<Item>> {
    let mut st = store.conn.prepare(&format!(
        "SELECT w.work_item_id, coalesce(w.fingerprint, 'pick|' || w.work_item_id) FROM work_items w WHERE {WANTED} ORDER BY w.work_item_id"
    ))?;
    let v = st
        .query_map([], |r| Ok(Item { id: r.get(0)?, fingerprint: r.get(1)? }))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

/// The tickets for these work items ((id, fingerprint) pairs), read in a few queries for all of them.
fn new_tickets(store: &Store, want: &[(i64, String)], project: Option<&str>) -> anyhow::Result<Vec<NewTicket>> {
    if want.is_empty() {
        return Ok(Vec::new());
    }
    let c = &store.conn;
    let ids = want.iter().map(|w| w.0.to_string()).collect::<Vec<_>>().join(",");
    type Head = (String, Option<String>, Option<chrono::NaiveDate>, Option<String>, Option<String>, Option<String>, Option<String>, i64, i64, i64, String);
    let mut st = c.prepare(&format!(
        "SELECT work_item_id, title, priority, due_date, assignee, team, jira_project, snow_group, findings, open_findings, assets, sla, fix_kind FROM work_board WHERE work_item_id IN ({ids})"
    ))?;
    let heads: HashMap<i64, (Head, Option<String>)> = st
        .query_map([], |r| Ok((r.get(0)?, ((r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?), r.get(12)?))))?
        .collect::<Result<_, _>>()?;
    let mut st = c.prepare(&format!(
        "SELECT work_item_id, line FROM (
           SELECT wf.work_item_id,
                  f.asset_name || ' — ' || f.title || coalesce(' (' || nullif(array_to_string(f.cves, ', '), '') || ')', '') || ', risk ' || coalesce(CAST(round(f.risk_score) AS VARCHAR), '-') AS line,
                  row_number() OVER (PARTITION BY wf.work_item_id ORDER BY f.risk_score DESC NULLS LAST, f.finding_id) AS rn
           FROM work_item_findings wf JOIN findings f USING (finding_id)
           WHERE wf.work_item_id IN ({ids}) AND f.status IN ('open', 'reopened', 'mitigated'))
         WHERE rn <= 25 ORDER BY work_item_id, rn"
    ))?;
    let mut lines: HashMap<i64, Vec<String>> = HashMap::new();
    for r in st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
        let (id, l) = r?;
        lines.entry(id).or_default().push(l);
    }
    let mut st = c.prepare(&format!(
        "SELECT wf.work_item_id, arg_max(f.risk_factors, coalesce(f.risk_score, 0)) FROM work_item_findings wf JOIN findings f USING (finding_id)
         WHERE wf.work_item_id IN ({ids}) GROUP BY 1"
    ))?;
    let why: HashMap<i64, Option<String>> = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for (id, fp) in want {
        let Some(((title, priority, due, assignee, team, jira_project, group, n, open, assets, sla), fix_kind)) = heads.get(id).cloned() else { continue };
        let mut summary = vec![
            format!("{} · team {} · {open} of {n} findings open on {assets} assets", priority.clone().unwrap_or_else(|| "-".into()), team.clone().unwrap_or_else(|| "-".into())),
            format!("ctem work item #{id}"),
        ];
        if let Some(d) = due {
            summary.push(format!("due {d} (SLA {sla})"));
        }
        let mut sections = vec![("Work item".to_string(), summary), (format!("Findings ({open} open)"), lines.remove(id).unwrap_or_default())];
        if let Some(Some(w)) = why.get(id) {
            sections.push(("Why this priority (most urgent finding)".into(), w.split("; ").map(String::from).collect()));
        }
        let plan = if n > 0 { crate::fixplan::for_work_item(c, *id).ok().map(|p| p.text()) } else { None };
        out.push(NewTicket {
            work_item_id: *id,
            fingerprint: fp.clone(),
            title,
            sections,
            plan,
            priority,
            due,
            assignee,
            project: jira_project.or(project.map(String::from)),
            group,
            team,
            fix_kind,
        });
    }
    Ok(out)
}

fn outbox_add(store: &Store, system: &str, id: i64, action: &str, detail: Option<&str>, fp: &str) -> anyhow::Result<i64> {
    let oid: i64 = store.conn.query_row("SELECT nextval('seq_outbox')", [], |r| r.get(0))?;
    store.conn.execute(
        "INSERT INTO sync_outbox VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, current_timestamp::TIMESTAMP, current_timestamp::TIMESTAMP, NULL)",
        duckdb::params![oid, system, id, action, detail, fp],
    )?;
    Ok(oid)
}

fn outbox_set(store: &Store, ids: &[i64], state: &str, error: Option<&str>) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let list = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let bump = if state == "sent" { ", attempts = attempts + 1" } else { "" };
    store.conn.execute(
        &format!("UPDATE sync_outbox SET state = ?, error = ?, updated_at = current_timestamp::TIMESTAMP{bump} WHERE outbox_id IN ({list})"),
        duckdb::params![state, error],
    )?;
    Ok(())
}

/// Record (or refresh) the ticket of a work item.
fn save_ticket(store: &Store, system: &str, id: i64, r: &Remote, synced_status: &str, findings: i64) -> anyhow::Result<()> {
    let c = &store.conn;
    c.execute("DELETE FROM tickets WHERE system = ? AND work_item_id = ?", duckdb::params![system, id])?;
    c.execute(
        "INSERT INTO tickets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp::TIMESTAMP, NULL)",
        duckdb::params![id, system, r.key, r.id, r.url, r.fingerprint, r.status, r.category, r.assignee, r.resolution, r.comments, r.updated, synced_status, findings],
    )?;
    Ok(())
}

fn ticket_error(store: &Store, system: &str, id: i64, fp: &str, err: &str) -> anyhow::Result<()> {
    let c = &store.conn;
    let n = c.execute("UPDATE tickets SET error = ? WHERE system = ? AND work_item_id = ?", duckdb::params![err, system, id])?;
    if n == 0 {
        c.execute(
            "INSERT INTO tickets (work_item_id, system, fingerprint, error, last_synced) VALUES (?, ?, ?, ?, current_timestamp::TIMESTAMP)",
            duckdb::params![id, system, fp, err],
        )?;
    }
    Ok(())
}

struct Known {
    key: String,
    id: String,
    category: String,
    synced_status: String,
    synced_findings: i64,
}

fn known_tickets(store: &Store, system: &str) -> anyhow::Result<HashMap<i64, Known>> {
    let mut st = store.conn.prepare(
        "SELECT work_item_id, ticket_key, ticket_id, coalesce(remote_category, ''), coalesce(synced_status, 'new'), coalesce(synced_findings, 0)
         FROM tickets WHERE system = ? AND ticket_key IS NOT NULL",
    )?;
    let v = st
        .query_map([system], |r| Ok((r.get::<_, i64>(0)?, Known { key: r.get(1)?, id: r.get(2)?, category: r.get(3)?, synced_status: r.get(4)?, synced_findings: r.get(5)? })))?
        .collect::<Result<HashMap<_, _>, _>>()?;
    Ok(v)
}

/// The outcome of one create, in the store: the ticket and its outbox row, or the error. Returns the
/// ticket's key when it was created. An interrupted call is left as sent: the next run finds out by
/// fingerprint what became of it.
fn record_create(
    store: &Store,
    sys: &str,
    oid: i64,
    n: &NewTicket,
    r: Result<Remote, CallError>,
    o: &mut Outcome,
    known: &mut HashMap<i64, Known>,
) -> anyhow::Result<Option<String>> {
    match r {
        Ok(remote) => {
            save_ticket(store, sys, n.work_item_id, &remote, "new", 0)?;
            outbox_set(store, &[oid], "done", None)?;
            o.created += 1;
            let key = remote.key.clone();
            known.insert(n.work_item_id, Known { key: remote.key, id: remote.id, category: remote.category, synced_status: "new".into(), synced_findings: 0 });
            return Ok(Some(key));
        }
        Err(CallError::Interrupted) => {}
        Err(CallError::Uncertain(m)) => outbox_set(store, &[oid], "uncertain", Some(&m))?,
        Err(e) => {
            let m = e.to_string();
            outbox_set(store, &[oid], "failed", Some(&m))?;
            ticket_error(store, sys, n.work_item_id, &n.fingerprint, &m)?;
            o.failed.push((n.work_item_id, m));
        }
    }
    Ok(None)
}

/// Calls in flight at once to one tracker where the API takes one record a call.
const PARALLEL_CALLS: usize = 6;

/// What a sync run sends for one work item that has a ticket: a status move, a comment about findings
/// that joined it, and the finding count the ticket was last told.
struct Push {
    id: i64,
    key: String,
    /// The tracker's id for the ticket (ServiceNow sys_id).
    rid: String,
    local: String,
    /// The tracker category to move the ticket to.
    target: Option<String>,
    note: Option<String>,
    comment: Option<String>,
    findings: i64,
    recount: bool,
}

async fn sync_one(store: &Store, t: &Tracker, lag: Duration, dry_run: bool) -> anyhow::Result<Outcome> {
    let sys = t.system();
    let mut o = Outcome { system: sys.into(), ..Default::default() };
    let r = sync_steps(store, t, lag, dry_run, &mut o).await;
    o.requests = t.http().calls();
    o.throttled = t.http().throttled.load(std::sync::atomic::Ordering::Relaxed);
    match r {
        Ok(()) => {}
        Err(e) if e.downcast_ref::<CallError>() == Some(&CallError::Interrupted) => o.interrupted = true,
        // A tracker that refuses or cannot be reached stops its own sync, not the others'.
        Err(e) => match e.downcast_ref::<CallError>() {
            Some(c) => o.error = Some(c.to_string()),
            None => return Err(e),
        },
    }
    if !dry_run {
        let n = store.conn.execute("UPDATE sync_state SET last_run = current_timestamp::TIMESTAMP WHERE system = ?", [sys])?;
        if n == 0 {
            store.conn.execute("INSERT INTO sync_state VALUES (?, NULL, current_timestamp::TIMESTAMP)", [sys])?;
        }
    }
    Ok(o)
}

/// A remote call's error as the run's error when it ends the run (interrupted, or the tracker is unreachable).
fn fatal(e: CallError) -> anyhow::Error {
    anyhow::Error::new(e)
}

impl std::error::Error for CallError {}

/// Calls left unfinished (sent, or uncertain): look for their tickets by fingerprint, several times to
/// allow for search lag; a create found is adopted, one not found is made pending again.
async fn settle(store: &Store, t: &Tracker, lag: Duration, o: &mut Outcome) -> anyhow::Result<()> {
    let sys = t.system();
    let c = &store.conn;
    let mut st = c.prepare("SELECT outbox_id, work_item_id, action, fingerprint FROM sync_outbox WHERE system = ? AND state IN ('sent', 'uncertain') ORDER BY outbox_id")?;
    let open: Vec<(i64, i64, String, String)> = st.query_map([sys], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?;
    let creates: Vec<&(i64, i64, String, String)> = open.iter().filter(|x| x.2 == "create").collect();
    if !creates.is_empty() {
        let fps: Vec<String> = creates.iter().map(|x| x.3.clone()).collect();
        // Search results lag behind writes: look again a few times before concluding "not created".
        let mut found: HashMap<String, Remote> = HashMap::new();
        let waits = [Duration::ZERO, lag / 4, lag / 2, lag];
        for w in waits {
            tokio::time::sleep(w).await;
            let missing: Vec<String> = fps.iter().filter(|f| !found.contains_key(*f)).cloned().collect();
            if missing.is_empty() {
                break;
            }
            for r in t.find(&missing).await.map_err(fatal)? {
                found.entry(r.fingerprint.clone()).or_insert(r);
            }
        }
        for (oid, id, _, fp) in creates {
            match found.get(fp) {
                Some(r) => {
                    save_ticket(store, sys, *id, r, "new", 0)?;
                    outbox_set(store, &[*oid], "done", Some("found by fingerprint after an unfinished call"))?;
                    o.adopted += 1;
                }
                None => outbox_set(store, &[*oid], "pending", Some("not found by fingerprint after an unfinished call: created again"))?,
            }
        }
    }
    for (oid, _, action, _) in &open {
        match action.as_str() {
            "create" => {}
            // A transition to the same status is harmless to repeat; a comment is not repeated.
            "transition" => outbox_set(store, &[*oid], "pending", None)?,
            _ => outbox_set(store, &[*oid], "done", Some("outcome unknown; not repeated"))?,
        }
    }
    Ok(())
}

async fn sync_steps(store: &Store, t: &Tracker, lag: Duration, dry_run: bool, o: &mut Outcome) -> anyhow::Result<()> {
    let sys = t.system();
    let c = &store.conn;
    let actor = sys;

    // 1. Calls an earlier run left unfinished: find their tickets before anything is created again.
    if !dry_run {
        settle(store, t, lag, o).await?;
    }

    // 2. What changed in the tracker since the last watermark (read before anything is pushed).
    let watermark: Option<String> = c.query_row("SELECT max(watermark) FROM sync_state WHERE system = ?", [sys], |r| r.get(0)).ok().flatten();
    let since = watermark.as_deref().map(|w| match t {
        // JQL takes dates; a day's overlap covers time zones (changes are applied idempotently).
        Tracker::Jira(..) => chrono::NaiveDate::parse_from_str(&w[..10.min(w.len())], "%Y-%m-%d").map(|d| (d - chrono::Duration::days(1)).to_string()).unwrap_or_default(),
        Tracker::Snow(_) => w.to_string(),
    });
    let mut remote_changes = match t.changed_since(since.as_deref().filter(|s| !s.is_empty())).await {
        Ok(v) => v,
        // A dry run shows what would be sent even when the tracker cannot be read now.
        Err(e) if dry_run && e != CallError::Interrupted => {
            o.dry.push(format!("(could not read the tracker's changes: {e}; the requests below assume none)"));
            Vec::new()
        }
        Err(e) => return Err(fatal(e)),
    };
    let mut known = known_tickets(store, sys)?;
    // Tickets whose state is not known (a conflict settled in the tracker's favour): read them too.
    let unknown: Vec<String> = {
        let mut st = c.prepare("SELECT fingerprint FROM tickets WHERE system = ? AND ticket_key IS NOT NULL AND coalesce(remote_category, '') = ''")?;
        st.query_map([sys], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    if !unknown.is_empty() {
        let seen: std::collections::HashSet<String> = remote_changes.iter().map(|r| r.fingerprint.clone()).collect();
        remote_changes.extend(t.find(&unknown).await.map_err(fatal)?.into_iter().filter(|r| !seen.contains(&r.fingerprint)));
    }
    let items = work_items_wanted(store)?;
    let status_of: HashMap<i64, String> = {
        let mut st = c.prepare("SELECT work_item_id, status FROM work_items")?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
    };
    let by_fp: HashMap<String, i64> = {
        let mut st = c.prepare("SELECT fingerprint, work_item_id FROM tickets WHERE system = ? AND ticket_key IS NOT NULL")?;
        st.query_map([sys], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
    };
    let conflicted: std::collections::HashSet<i64> = {
        let mut st = c.prepare("SELECT DISTINCT work_item_id FROM sync_conflicts WHERE system = ? AND resolved_at IS NULL")?;
        st.query_map([sys], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    let mut new_conflicts: Vec<(i64, String, String)> = Vec::new();
    let mut to_apply: Vec<(i64, Remote)> = Vec::new();
    for r in &remote_changes {
        let Some(&id) = by_fp.get(&r.fingerprint) else { continue };
        let Some(k) = known.get(&id) else { continue };
        if r.category == k.category || conflicted.contains(&id) {
            continue;
        }
        let local = status_of.get(&id).cloned().unwrap_or_default();
        let local_changed = t.category_for(&local) != t.category_for(&k.synced_status);
        if local_changed && t.category_for(&local) != r.category {
            new_conflicts.push((id, local, r.status.clone()));
        } else {
            to_apply.push((id, r.clone()));
        }
    }
    if !dry_run {
        for (id, local, remote) in &new_conflicts {
            let cat = remote_changes.iter().find(|r| by_fp.get(&r.fingerprint) == Some(id)).map(|r| r.category.clone());
            c.execute(
                "INSERT INTO sync_conflicts VALUES (?, ?, 'status', ?, ?, ?, current_timestamp::TIMESTAMP, NULL, NULL)",
                duckdb::params![sys, id, local, remote, cat],
            )?;
        }
    }
    o.conflicts = new_conflicts.len() + conflicted.len();
    let blocked: std::collections::HashSet<i64> = conflicted.iter().copied().chain(new_conflicts.iter().map(|x| x.0)).chain(to_apply.iter().map(|x| x.0)).collect();

    // 3. Creates: work items without a ticket (and without a create under way).
    let pending_creates: std::collections::HashSet<i64> = {
        let mut st = c.prepare("SELECT work_item_id FROM sync_outbox WHERE system = ? AND action = 'create' AND state IN ('pending', 'sent', 'uncertain')")?;
        st.query_map([sys], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    let project = match t {
        Tracker::Jira(_, p) => p.clone(),
        _ => None,
    };
    let mut want: Vec<(i64, i64, String)> = Vec::new();
    {
        let mut st = c.prepare("SELECT outbox_id, work_item_id, fingerprint FROM sync_outbox WHERE system = ? AND action = 'create' AND state = 'pending' ORDER BY outbox_id")?;
        let pend: Vec<(i64, i64, String)> = st.query_map([sys], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        for (oid, id, fp) in pend {
            if known.contains_key(&id) {
                outbox_set(store, &[oid], "done", Some("the ticket exists"))?;
                continue;
            }
            want.push((oid, id, fp));
        }
    }
    // The intent for every new ticket, written in one transaction before any call.
    let fresh: Vec<&Item> = items.iter().filter(|it| !known.contains_key(&it.id) && !pending_creates.contains(&it.id)).collect();
    if !dry_run && !fresh.is_empty() {
        c.execute_batch("BEGIN TRANSACTION")?;
        let r = (|| -> anyhow::Result<Vec<(i64, i64, String)>> {
            let mut v = Vec::new();
            for it in &fresh {
                let fp = ticket_fingerprint(&it.fingerprint);
                v.push((outbox_add(store, sys, it.id, "create", None, &fp)?, it.id, fp));
            }
            Ok(v)
        })();
        match r {
            Ok(v) => {
                c.execute_batch("COMMIT")?;
                want.extend(v);
            }
            Err(e) => {
                let _ = c.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    } else {
        want.extend(fresh.iter().map(|it| (0, it.id, ticket_fingerprint(&it.fingerprint))));
    }
    let oid_of: HashMap<i64, i64> = want.iter().map(|w| (w.1, w.0)).collect();
    let creates: Vec<(i64, NewTicket)> = new_tickets(store, &want.iter().map(|w| (w.1, w.2.clone())).collect::<Vec<_>>(), project.as_deref())?
        .into_iter()
        .map(|n| (oid_of[&n.work_item_id], n))
        .collect();
    match t {
        Tracker::Jira(j, _) => {
            let (ok, missing): (Vec<_>, Vec<_>) = creates.into_iter().partition(|(_, n)| n.project.is_some());
            for (oid, n) in missing {
                let e = "no Jira project: set [jira] project, CTEM_JIRA_PROJECT or the routing rule's jira_project";
                if !dry_run {
                    outbox_set(store, &[oid], "failed", Some(e))?;
                    ticket_error(store, sys, n.work_item_id, &n.fingerprint, e)?;
                }
                o.failed.push((n.work_item_id, e.into()));
            }
            for batch in ok.chunks(50) {
                let tickets: Vec<NewTicket> = batch.iter().map(|x| x.1.clone()).collect();
                if dry_run {
                    // The bodies as they would be sent: assignees looked up (a read) like a real run does.
                    let mut updates = Vec::new();
                    for n in &tickets {
                        let account = match (&n.assignee, &n.project) {
                            (Some(a), Some(p)) => j.account(p, a).await.ok().flatten(),
                            _ => None,
                        };
                        updates.push(j.create_body(n, account.as_deref()));
                    }
                    let body = serde_json::json!({"issueUpdates": updates});
                    o.dry.push(format!("POST {}/rest/api/3/issue/bulk\n{}", j.base.as_str().trim_end_matches('/'), serde_json::to_string_pretty(&body)?));
                    continue;
                }
                let oids: Vec<i64> = batch.iter().map(|x| x.0).collect();
                outbox_set(store, &oids, "sent", None)?;
                let results = j.create(&tickets).await;
                if results.iter().any(|r| matches!(r, Err(CallError::Interrupted))) {
                    return Err(fatal(CallError::Interrupted));
                }
                // The outcomes of the batch in one transaction, then the links back.
                let mut links = Vec::new();
                c.execute_batch("BEGIN TRANSACTION")?;
                for ((oid, n), r) in batch.iter().zip(results) {
                    if let Some(key) = record_create(store, sys, *oid, n, r, o, &mut known)? {
                        links.push((key, n.work_item_id, n.title.clone(), n.fingerprint.clone()));
                    }
                }
                c.execute_batch("COMMIT")?;
                for chunk in links.chunks(PARALLEL_CALLS) {
                    let results = futures_util::future::join_all(chunk.iter().map(|(key, id, title, fp)| j.remote_link(key, *id, title, fp))).await;
                    for ((key, ..), r) in chunk.iter().zip(results) {
                        match r {
                            Err(CallError::Interrupted) => return Err(fatal(CallError::Interrupted)),
                            Err(e) => tracing::warn!("remote link for {key}: {e}"),
                            Ok(_) => {}
                        }
                    }
                }
            }
        }
        Tracker::Snow(s) => {
            if dry_run {
                for (_, n) in &creates {
                    let user = match &n.assignee {
                        Some(a) => s.user(a).await.ok().flatten(),
                        None => None,
                    };
                    o.dry.push(format!("POST {}/api/now/table/{}\n{}", s.base.as_str().trim_end_matches('/'), s.table, serde_json::to_string_pretty(&s.create_body(n, user.as_deref()))?));
                }
            }
            // The Table API creates one record a call: a few calls at a time, each written to the outbox
            // as sent before any goes out.
            for chunk in creates.chunks(PARALLEL_CALLS).filter(|_| !dry_run) {
                let oids: Vec<i64> = chunk.iter().map(|x| x.0).collect();
                outbox_set(store, &oids, "sent", None)?;
                let results = futures_util::future::join_all(chunk.iter().map(|(_, n)| s.create(n))).await;
                let mut interrupted = false;
                for ((oid, n), r) in chunk.iter().zip(results) {
                    interrupted |= matches!(r, Err(CallError::Interrupted));
                    record_create(store, sys, *oid, n, r, o, &mut known)?;
                }
                if interrupted {
                    return Err(fatal(CallError::Interrupted));
                }
            }
        }
    }

    // Creates whose answers were lost in this run: settled now, so one run converges.
    if !dry_run {
        let uncertain: i64 = c.query_row("SELECT count(*) FROM sync_outbox WHERE system = ? AND action = 'create' AND state IN ('sent', 'uncertain')", [sys], |r| r.get(0))?;
        if uncertain > 0 {
            settle(store, t, lag, o).await?;
            for (id, k) in known_tickets(store, sys)? {
                known.entry(id).or_insert(k);
            }
        }
    }

    // 4. Local changes: status moves and added findings. Planned first, then sent a few work items at a
    //    time (each one's transition before its comment), every call written to the outbox as sent
    //    before any of them goes out.
    let counts: HashMap<i64, i64> = {
        let mut st = c.prepare("SELECT work_item_id, findings FROM work_board")?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
    };
    let mut ids: Vec<i64> = known.keys().copied().collect();
    ids.sort();
    let mut pushes: Vec<Push> = Vec::new();
    for id in ids {
        if blocked.contains(&id) {
            continue;
        }
        let k = &known[&id];
        let local = status_of.get(&id).cloned().unwrap_or_default();
        let target = t.category_for(&local);
        let mut p = Push { id, key: k.key.clone(), rid: k.id.clone(), local: local.clone(), target: None, note: None, comment: None, findings: 0, recount: false };
        if target != k.category && !target.is_empty() {
            if dry_run {
                o.dry.push(match t {
                    Tracker::Jira(j, _) => format!("POST {}/rest/api/3/issue/{}/transitions\n(to a '{target}' status; the transition id is looked up on the issue)", j.base.as_str().trim_end_matches('/'), k.key),
                    Tracker::Snow(s) => format!("PATCH {}/api/now/table/{}/{}\n{{\"state\": \"{target}\"}}", s.base.as_str().trim_end_matches('/'), s.table, k.id),
                });
                continue;
            }
            p.note = match local.as_str() {
                "verified" => Some("Verified fixed: the latest scans no longer see these findings (ctem)".to_string()),
                "fixed" => Some("Marked fixed in ctem; the next rescan confirms it".to_string()),
                _ => None,
            };
            p.target = Some(target);
        } else if k.synced_status != local && !dry_run {
            // Same category on both sides: agreed.
            c.execute("UPDATE tickets SET synced_status = ? WHERE system = ? AND work_item_id = ?", duckdb::params![local, sys, id])?;
        }
        if dry_run {
            continue;
        }
        let n = counts.get(&id).copied().unwrap_or(0);
        if k.synced_findings > 0 && n > k.synced_findings {
            p.comment = Some(format!("{} more finding(s) joined this work item in ctem ({} now)", n - k.synced_findings, n));
        }
        p.findings = n;
        p.recount = k.synced_findings != n;
        if p.target.is_some() || p.comment.is_some() || p.recount {
            pushes.push(p);
        }
    }
    for chunk in pushes.chunks(PARALLEL_CALLS) {
        let mut oids: Vec<(Option<i64>, Option<i64>)> = Vec::new();
        for p in chunk {
            let tr = match &p.target {
                Some(_) => Some(outbox_add(store, sys, p.id, "transition", Some(&p.local), &p.key)?),
                None => None,
            };
            let cm = match &p.comment {
                Some(text) => Some(outbox_add(store, sys, p.id, "comment", Some(text), &p.key)?),
                None => None,
            };
            oids.push((tr, cm));
        }
        let sent: Vec<i64> = oids.iter().flat_map(|(a, b)| a.iter().chain(b.iter()).copied()).collect();
        if !sent.is_empty() {
            outbox_set(store, &sent, "sent", None)?;
        }
        let results = futures_util::future::join_all(chunk.iter().map(|p| async move {
            let moved = match (&p.target, t) {
                (None, _) => None,
                (Some(_), Tracker::Jira(j, _)) => Some(j.transition(&p.key, Category::of(&p.local), p.note.as_deref()).await),
                (Some(_), Tracker::Snow(s)) => Some(s.set_state(&p.rid, &p.local, p.note.as_deref()).await),
            };
            let commented = match (&p.comment, t) {
                (None, _) => None,
                (Some(text), Tracker::Jira(j, _)) => Some(j.comment(&p.key, text).await),
                (Some(text), Tracker::Snow(s)) => Some(s.comment(&p.rid, text).await),
            };
            (moved, commented)
        }))
        .await;
        let mut interrupted = false;
        for ((p, (tr_oid, cm_oid)), (moved, commented)) in chunk.iter().zip(oids).zip(results) {
            // An interrupted call stays `sent`: the next run looks again.
            let mut cut = false;
            if let (Some(oid), Some(r)) = (tr_oid, moved) {
                match r {
                    Ok(name) => {
                        outbox_set(store, &[oid], "done", None)?;
                        c.execute(
                            "UPDATE tickets SET remote_category = ?, remote_status = ?, synced_status = ?, last_synced = current_timestamp::TIMESTAMP, error = NULL WHERE system = ? AND work_item_id = ?",
                            duckdb::params![p.target, name, p.local, sys, p.id],
                        )?;
                        o.pushed += 1;
                    }
                    Err(CallError::Interrupted) => cut = true,
                    Err(e) => {
                        let m = e.to_string();
                        outbox_set(store, &[oid], if matches!(e, CallError::Uncertain(_)) { "uncertain" } else { "failed" }, Some(&m))?;
                        c.execute("UPDATE tickets SET error = ? WHERE system = ? AND work_item_id = ?", duckdb::params![m, sys, p.id])?;
                        o.failed.push((p.id, m));
                    }
                }
            }
            if let (Some(oid), Some(r)) = (cm_oid, commented) {
                match r {
                    Ok(()) => {
                        outbox_set(store, &[oid], "done", None)?;
                        o.commented += 1;
                    }
                    Err(CallError::Interrupted) => cut = true,
                    Err(e) => outbox_set(store, &[oid], "failed", Some(&e.to_string()))?,
                }
            }
            if cut {
                interrupted = true;
            } else if p.recount {
                c.execute("UPDATE tickets SET synced_findings = ? WHERE system = ? AND work_item_id = ?", duckdb::params![p.findings, sys, p.id])?;
            }
        }
        if interrupted {
            return Err(fatal(CallError::Interrupted));
        }
    }

    // 5. The tracker's changes, applied.
    if !dry_run {
        for (id, r) in &to_apply {
            let local = status_of.get(id).cloned().unwrap_or_default();
            let mut synced = local.clone();
            if let Some(next) = t.local_for(&r.category, &local) {
                c.execute("UPDATE work_items SET status = ?, updated_at = current_timestamp::TIMESTAMP, closed_at = NULL WHERE work_item_id = ?", duckdb::params![next, id])?;
                audit(c, actor, "work_item", *id, "status", Some(&local), Some(next), Some(&format!("{} is {} in {sys}", r.key, r.status)))?;
                synced = next.to_string();
                o.pulled += 1;
            }
            c.execute(
                "UPDATE tickets SET remote_category = ?, remote_status = ?, remote_assignee = ?, remote_resolution = ?, remote_comments = coalesce(?, remote_comments),
                        remote_updated = ?, synced_status = ?, last_synced = current_timestamp::TIMESTAMP
                 WHERE system = ? AND work_item_id = ?",
                duckdb::params![r.category, r.status, r.assignee, r.resolution, r.comments, r.updated, synced, sys, id],
            )?;
        }
        if let Some(w) = remote_changes.iter().map(|r| r.updated.clone()).filter(|u| !u.is_empty()).max() {
            c.execute("DELETE FROM sync_state WHERE system = ?", [sys])?;
            c.execute("INSERT INTO sync_state VALUES (?, ?, current_timestamp::TIMESTAMP)", duckdb::params![sys, w])?;
        }
        c.execute("UPDATE tickets SET last_synced = current_timestamp::TIMESTAMP WHERE system = ? AND ticket_key IS NOT NULL AND error IS NULL", [sys])?;
    }
    Ok(())
}

/// Settle a conflict: keep the local status (pushed next sync) or take the tracker's.
pub fn resolve(store: &Store, system: &str, id: i64, keep: &str) -> anyhow::Result<String> {
    if store.read_only {
        bail!("read-only: conflicts cannot be resolved");
    }
    let c = &store.conn;
    let (local, remote): (String, String) = c
        .query_row(
            "SELECT local_value, remote_value FROM sync_conflicts WHERE system = ? AND work_item_id = ? AND resolved_at IS NULL ORDER BY detected_at DESC LIMIT 1",
            duckdb::params![system, id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|_| anyhow::anyhow!("no open conflict for work item #{id} in {system}"))?;
    match keep {
        // The ticket's state is taken as known, so the local status differs from it and is pushed.
        "local" => {
            c.execute(
                "UPDATE tickets SET remote_category = (SELECT remote_category FROM sync_conflicts WHERE system = ? AND work_item_id = ? AND resolved_at IS NULL ORDER BY detected_at DESC LIMIT 1)
                 WHERE system = ? AND work_item_id = ?",
                duckdb::params![system, id, system, id],
            )?;
        }
        // The ticket's state is forgotten and the local one taken as agreed, so the next sync reads the
        // ticket and applies it.
        "remote" => {
            c.execute(
                "UPDATE tickets SET remote_category = '', synced_status = (SELECT status FROM work_items WHERE work_item_id = ?) WHERE system = ? AND work_item_id = ?",
                duckdb::params![id, system, id],
            )?;
        }
        k => bail!("--keep local or --keep remote, not '{k}'"),
    }
    c.execute(
        "UPDATE sync_conflicts SET resolved_at = current_timestamp::TIMESTAMP, resolution = ? WHERE system = ? AND work_item_id = ? AND resolved_at IS NULL",
        duckdb::params![format!("kept {keep} by {}", store.actor), system, id],
    )?;
    audit(c, &store.actor, "work_item", id, "conflict", Some(&local), Some(&remote), Some(&format!("{system}: kept {keep}")))?;
    Ok(format!("conflict on #{id} ({system}: local {local}, remote {remote}) resolved: {keep} kept; the next sync carries it over"))
}

/// What is waiting, failing or in conflict, as text (the console's sync overlay).
pub fn status_text(c: &duckdb::Connection) -> anyhow::Result<String> {
    use std::fmt::Write;
    let mut out = String::new();
    let mut st = c.prepare(
        "SELECT system, count(*) FILTER (WHERE ticket_key IS NOT NULL), count(*) FILTER (WHERE error IS NOT NULL), strftime(max(last_synced), '%Y-%m-%d %H:%M')
         FROM tickets GROUP BY system ORDER BY system",
    )?;
    let rows: Vec<(String, i64, i64, Option<String>)> = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?;
    if rows.is_empty() {
        writeln!(out, "No tickets yet. `:sync` (or `ctem sync`) creates them; configure [jira] / [servicenow] in config.toml or CTEM_JIRA_* / CTEM_SNOW_*.")?;
    }
    for (s, n, e, last) in rows {
        writeln!(out, "{s}: {n} tickets, {e} with errors, last synced {}", last.unwrap_or_else(|| "never".into()))?;
    }
    let mut st = c.prepare("SELECT system, action, state, count(*) FROM sync_outbox WHERE state <> 'done' GROUP BY ALL ORDER BY ALL")?;
    let rows: Vec<(String, String, String, i64)> = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?;
    writeln!(out, "\nOutbox not done: {}", if rows.is_empty() { "none".to_string() } else { String::new() })?;
    for (s, a, stt, n) in rows {
        writeln!(out, "  {s} {a} {stt}: {n}")?;
    }
    let mut st = c.prepare(
        "SELECT system, work_item_id, local_value, remote_value, strftime(detected_at, '%Y-%m-%d %H:%M') FROM sync_conflicts WHERE resolved_at IS NULL ORDER BY detected_at",
    )?;
    let rows: Vec<(String, i64, String, String, String)> = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?.collect::<Result<_, _>>()?;
    writeln!(out, "\nConflicts (changed on both sides; `ctem sync resolve ID --system S --keep local|remote`): {}", rows.len())?;
    for (s, id, l, r, at) in rows {
        writeln!(out, "  #{id} {s}: here {l}, there {r} (since {at})")?;
    }
    let mut st = c.prepare("SELECT system, work_item_id, error FROM tickets WHERE error IS NOT NULL ORDER BY work_item_id LIMIT 50")?;
    let rows: Vec<(String, i64, String)> = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    writeln!(out, "\nFailures: {}", rows.len())?;
    for (s, id, e) in rows {
        writeln!(out, "  #{id} {s}: {e}")?;
    }
    Ok(out)
}
