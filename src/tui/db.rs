//! The store's thread: it owns the DuckDB connection and answers the console's requests over channels,
//! so the UI never waits on a query. Imports and exports run on their own threads with cloned connections.

use crate::query::Compiled;
use crate::store::import::{import_file, Outcome};
use crate::store::views::{param_value, Row, View};
use crate::store::{scopes, Store};
use crate::tui::table::{Fill, PageWant};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

/// Which table of which pane a page belongs to.
pub type TableId = &'static str;

pub enum Req {
    Page { table: TableId, view: View, want: PageWant },
    /// Every column of the rows with these keys (a column shown after the rows were fetched without it).
    Cells { table: TableId, generation: u64, view: View, keys: Vec<i64> },
    Count { table: TableId, generation: u64, view: View, filter: Compiled, scope: Option<Compiled> },
    Header { scope: Option<Compiled> },
    /// A finding's explanation; `panel` for the Prioritization side panel, else a detail overlay.
    Explain { finding_id: i64, panel: bool },
    AssetDetail { asset_id: i64 },
    ImportDetail { import_id: i64 },
    Scopes,
    SaveScope { name: String, filter: String, description: String },
    DeleteScope { name: String },
    /// `since`: an age (24h, 3d, 2w) or a date, counted back from the latest scan; default 24h.
    /// `record`: note this stand-up as held (the next one starts where its data ends).
    Standup { scope: Option<Compiled>, since: Option<String>, record: bool },
    Export { view: View, filter: Compiled, scope: Option<Compiled>, sort_col: usize, desc: bool, path: PathBuf, json: bool },
    Import { paths: Vec<PathBuf> },
    /// Run a statement from the SQL pane: a query becomes a paged view; a write runs only when the
    /// session allows writes; what the guard refuses never runs.
    Sql { text: String, write: bool, export_dir: PathBuf },
    /// Hand a selection of findings to Mobilization as work items.
    HandOff { selection: crate::store::work::Selection, scope: Option<Compiled> },
    /// The board's columns.
    Board { filter: Compiled, scope: Option<Compiled>, today: chrono::NaiveDate },
    MoveCards { ids: Vec<i64>, to: String },
    Assign { ids: Vec<i64>, who: String },
    /// An exception for a whole work item (the requester is the console's user).
    Except { target: crate::store::exceptions::Target, kind: String, expiry: Option<String>, approver: String, justification: String },
    /// A work item's findings, fix plan and history.
    Card { id: i64 },
    /// Sync the trackers in the background.
    Sync { cfg: Box<crate::sync::SyncConfig> },
    SyncStatus,
    /// Tables and views with their columns, for the schema browser.
    Schema,
    SaveQuery { name: String, sql: String, export_dir: PathBuf },
    LoadQuery { name: String },
    /// The saved queries, for the queue picker.
    SavedQueries,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub assets: i64,
    pub open: i64,
    /// critical, high, medium, low, info
    pub by_severity: [i64; 5],
    /// P1..P4 when the store has been scored.
    pub by_priority: Option<[i64; 4]>,
    pub last_import: Option<String>,
    pub latest_scan: Option<String>,
    pub fixed: i64,
    /// Regressions: reopened, or reopened and since mitigated.
    pub reopened: i64,
    /// Open findings whose scanner's later scan of their scope no longer covered the asset.
    pub not_covered: i64,
    /// Loaded exploit intel and its dates ("KEV 2025.08.25 · EPSS 2026-08-22"), None when none is loaded.
    pub intel: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Standup {
    pub since: Option<chrono::NaiveDateTime>,
    pub until: Option<chrono::NaiveDateTime>,
    /// (new, fixed, reopened) by severity, critical first.
    pub by_severity: Vec<(String, i64, i64, i64)>,
    /// (import id, one line about it), newest first.
    pub imports: Vec<(i64, String)>,
    pub open_now: i64,
    pub open_before: i64,
    /// New in the window by priority (P1..P4), and how many of them are on CISA KEV.
    pub new_by_priority: [i64; 4],
    pub new_kev: i64,
    /// Open P1 + P2 now and at the start of the window.
    pub p1_p2_now: i64,
    pub p1_p2_before: i64,
    /// Open P1 and P2 per day over the 30 days up to the window's end.
    pub trend_p1: Vec<i64>,
    pub trend_p2: Vec<i64>,
    /// When the stand-up this window starts from was held (None: the window is 24 hours or `:since`).
    pub last_standup: Option<chrono::NaiveDateTime>,
    /// Mean days from first seen to fixed of the P1 and P2 findings fixed in the 30 days up to the window's end.
    pub mttr_days: [Option<f64>; 2],
    /// Open findings past their SLA, and due within 3 days.
    pub sla_past_due: i64,
    pub sla_due_3d: i64,
    /// Active exceptions expiring within 7 days.
    pub exceptions_expiring: Vec<i64>,
    /// Work items whose ticket moved in a tracker.
    pub tickets_moved: Vec<i64>,
    /// Work items rescans verified, and reopened by regressions, in the window.
    pub work_verified: Vec<i64>,
    pub work_reopened: Vec<i64>,
}

pub enum Resp {
    Page { table: TableId, generation: u64, fill: Fill, rows: Vec<Row> },
    Cells { table: TableId, generation: u64, rows: Vec<Row> },
    Count { table: TableId, generation: u64, total: i64 },
    Header(Header),
    Detail { title: String, text: String, panel: bool },
    Scopes(Vec<scopes::ScopeCounts>),
    Standup(Standup),
    /// A background job moved on: (job id, label, done, total).
    Progress { job: u64, label: String, done: u64, total: u64 },
    JobDone { job: u64, message: String, ok: bool, changed: bool },
    /// Something worked and the user should know (scope saved ...).
    Info(String),
    /// Work items were created (or why not).
    HandedOff { message: String, ok: bool },
    Board(Vec<crate::tui::board::Column>),
    /// (name, description) of every table, view and column.
    Schema(Vec<(String, String)>),
    /// A saved query's text for the editor.
    QueryText(String),
    /// (name, whether its rows name findings, its SQL), by name.
    SavedQueries(Vec<(String, bool, String)>),
    /// Cards changed (moved, assigned, excepted), or why not.
    BoardChanged { message: String, error: bool },
    SqlView { view: View, millis: u128 },
    SqlDone { message: String },
    SqlError { message: String },
    /// A request made stale by a newer one; nothing to do.
    Skipped,
    Error { context: String, message: String },
}

pub struct Db {
    pub tx: Sender<Req>,
    pub rx: Receiver<Resp>,
    /// Requests sent and not yet answered (tests wait for zero).
    pub pending: usize,
    pub read_only: bool,
    /// Stops the statement the store's thread is running (the SQL pane's cancel).
    pub interrupt: Arc<duckdb::InterruptHandle>,
    /// Set by a cancel: pages and counts of the SQL result already queued are skipped.
    pub cancelled: Arc<AtomicBool>,
}

fn first_line(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").to_string()
}

impl Db {
    pub fn start(store: Store) -> Db {
        let (tx, rx_req) = channel::<Req>();
        let (tx_resp, rx) = channel::<Resp>();
        let read_only = store.read_only;
        let interrupt = store.conn.interrupt_handle();
        let cancelled = Arc::new(AtomicBool::new(false));
        let c2 = cancelled.clone();
        std::thread::Builder::new()
            .name("store".into())
            .spawn(move || worker(store, rx_req, tx_resp, c2))
            .expect("store thread");
        Db { tx, rx, pending: 0, read_only, interrupt, cancelled }
    }

    pub fn send(&mut self, r: Req) {
        if self.tx.send(r).is_ok() {
            self.pending += 1;
        }
    }

    /// Next answer without blocking.
    pub fn try_recv(&mut self) -> Option<Resp> {
        let r = self.rx.try_recv().ok()?;
        if !matches!(r, Resp::Progress { .. }) {
            self.pending = self.pending.saturating_sub(1);
        }
        Some(r)
    }

    pub fn recv_timeout(&mut self, d: std::time::Duration) -> Option<Resp> {
        let r = self.rx.recv_timeout(d).ok()?;
        if !matches!(r, Resp::Progress { .. }) {
            self.pending = self.pending.saturating_sub(1);
        }
        Some(r)
    }
}

static JOBS: AtomicU64 = AtomicU64::new(1);

/// Which table and generation a request serves, if it is a page or a count.
fn table_generation(r: &Req) -> Option<(TableId, u64)> {
    match r {
        Req::Page { table, want, .. } => Some((table, want.generation)),
        Req::Count { table, generation, .. } => Some((table, *generation)),
        _ => None,
    }
}

fn is_panel_detail(r: &Req) -> bool {
    matches!(r, Req::Explain { panel: true, .. })
}

fn worker(store: Store, rx: Receiver<Req>, tx: Sender<Resp>, cancelled: Arc<AtomicBool>) {
    let busy_import = Arc::new(AtomicBool::new(false));
    let mut queue: std::collections::VecDeque<Req> = std::collections::VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv() {
                Ok(r) => queue.push_back(r),
                Err(_) => return,
            }
        }
        while let Ok(r) = rx.try_recv() {
            queue.push_back(r);
        }
        let req = queue.pop_front().expect("queued request");
        // Typing a filter asks for a page per keystroke: pages and counts that a newer request for the
        // same table has made stale are answered as skipped, not run.
        // So is the side panel's detail when the cursor has already moved on.
        let stale = match table_generation(&req) {
            Some((t, g)) => queue.iter().any(|q| table_generation(q).is_some_and(|(t2, g2)| t2 == t && g2 > g)),
            None => is_panel_detail(&req) && queue.iter().any(is_panel_detail),
        };
        // A new statement clears a cancel; what the cancelled one still had queued is dropped.
        if matches!(req, Req::Sql { .. }) {
            cancelled.store(false, Ordering::SeqCst);
        }
        let stale = stale || (cancelled.load(Ordering::SeqCst) && table_generation(&req).is_some_and(|(t, _)| t == "sql"));
        if stale {
            if tx.send(Resp::Skipped).is_err() {
                return;
            }
            continue;
        }
        if let Some(r) = handle(&store, req, &tx, &busy_import) {
            if tx.send(r).is_err() {
                return;
            }
        }
    }
}

fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// Every table and view of the store, each followed by its columns (indented) with their types.
fn schema(c: &duckdb::Connection) -> Result<Vec<(String, String)>, duckdb::Error> {
    let mut st = c.prepare(
        "SELECT t.table_name, lower(t.table_type), c.column_name, c.data_type
         FROM information_schema.tables t JOIN information_schema.columns c USING (table_schema, table_name)
         WHERE t.table_schema = 'main' AND t.table_name NOT IN ('schema_migrations')
         ORDER BY t.table_type DESC, t.table_name, c.ordinal_position",
    )?;
    let rows: Vec<(String, String, String, String)> = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    let mut last = String::new();
    for (t, kind, col, ty) in rows {
        if t != last {
            out.push((t.clone(), if kind.contains("view") { "view".into() } else { "table".into() }));
            last = t.clone();
        }
        out.push((format!("  {col}"), format!("{ty} · {t}")));
    }
    Ok(out)
}

fn err(context: &str, e: &dyn std::fmt::Display) -> Resp {
    Resp::Error { context: context.to_string(), message: first_line(e) }
}

/// A background job that writes (an import, a sync): refused when read-only or when another runs;
/// otherwise its number and a store of its own on a second connection.
fn background(store: &Store, busy: &Arc<AtomicBool>, what: &str, refused: &str) -> Result<(u64, Store), Resp> {
    if store.read_only {
        return Err(err(what, &format!("read-only: {refused} (open without --read-only)")));
    }
    if busy.swap(true, Ordering::SeqCst) {
        return Err(err(what, &"an import or sync is already running; wait for it to finish"));
    }
    let conn = store.conn.try_clone().map_err(|e| {
        busy.store(false, Ordering::SeqCst);
        err(what, &e)
    })?;
    let st = Store { conn, path: store.path.clone(), read_only: false, weights: store.weights.clone(), actor: store.actor.clone(), routing: store.routing.clone() };
    Ok((JOBS.fetch_add(1, Ordering::Relaxed), st))
}

fn handle(store: &Store, req: Req, tx: &Sender<Resp>, busy_import: &Arc<AtomicBool>) -> Option<Resp> {
    let c = &store.conn;

    Some(match req {
        Req::Page { table, view, want } => match view.fetch(c, &want.query) {
            Ok(rows) => Resp::Page { table, generation: want.generation, fill: want.fill, rows },
            Err(e) => err(view.title, &e),
        },
        Req::Cells { table, generation, view, keys } => match view.rows_by_key(c, &keys) {
            Ok(rows) => Resp::Cells { table, generation, rows },
            Err(e) => err(view.title, &e),
        },
        Req::Count { table, generation, view, filter, scope } => match view.count(c, &filter, scope.as_ref()) {
            Ok(total) => Resp::Count { table, generation, total },
            Err(e) => err(view.title, &e),
        },
        Req::Header { scope } => match header(store, scope.as_ref()) {
            Ok(h) => Resp::Header(h),
            Err(e) => err("header", &e),
        },
        Req::Explain { finding_id, panel } => match crate::explain::explain(store, finding_id) {
            Ok(text) => Resp::Detail { title: format!("Finding {finding_id}"), text, panel },
            Err(e) => err("detail", &e),
        },
        Req::AssetDetail { asset_id } => match asset_detail(store, asset_id) {
            Ok(text) => Resp::Detail { title: format!("Asset {asset_id}"), text, panel: false },
            Err(e) => err("asset", &e),
        },
        Req::ImportDetail { import_id } => match import_detail(store, import_id) {
            Ok(text) => Resp::Detail { title: format!("Import {import_id}"), text, panel: false },
            Err(e) => err("import", &e),
        },
        Req::Scopes => match scopes::list_with_counts(c, now()) {
            Ok(v) => Resp::Scopes(v),
            Err(e) => err("scopes", &e),
        },
        Req::SaveScope { name, filter, description } => {
            if store.read_only {
                return Some(err("scope", &"read-only: scopes cannot be saved (open without --read-only)"));
            }
            match scopes::save(c, &name, &filter, &description, now()) {
                Ok(()) => Resp::Info(format!("scope '{name}' saved")),
                Err(e) => err("scope", &e),
            }
        }
        Req::HandOff { selection, scope } => match crate::store::work::hand_off(store, &selection, scope.as_ref()) {
            Ok(h) => Resp::HandedOff { message: h.message(), ok: !h.items.is_empty() },
            Err(e) => Resp::HandedOff { message: format!("hand-off: {}", first_line(e)), ok: false },
        },
        Req::Board { filter, scope, today } => match crate::tui::board::fetch(c, &filter, scope.as_ref(), today) {
            Ok(cols) => Resp::Board(cols),
            Err(e) => err("board", &e),
        },
        Req::MoveCards { ids, to } => match crate::store::work::move_items(store, &ids, &to) {
            Ok(m) => Resp::BoardChanged { message: m.message(&to), error: m.moved.is_empty() },
            Err(e) => Resp::BoardChanged { message: format!("move: {}", first_line(e)), error: true },
        },
        Req::Assign { ids, who } => {
            let mut done = 0;
            let mut fail = None;
            for id in &ids {
                match crate::store::work::assign(store, *id, &who) {
                    Ok(()) => done += 1,
                    Err(e) => fail = Some(format!("#{id}: {}", first_line(e))),
                }
            }
            let who = if who.trim().is_empty() { "nobody".to_string() } else { who.trim().to_string() };
            match fail {
                Some(f) => Resp::BoardChanged { message: format!("assign: {done} assigned to {who}; {f}"), error: true },
                None => Resp::BoardChanged { message: format!("{done} card{} assigned to {who}", if done == 1 { "" } else { "s" }), error: false },
            }
        }
        Req::Except { target, kind, expiry, approver, justification } => {
            let what = match &target {
                crate::store::exceptions::Target::WorkItem(id) => format!("#{id}"),
                crate::store::exceptions::Target::Findings(ids) if ids.len() == 1 => format!("finding {}", ids[0]),
                _ => "the marked findings".to_string(),
            };
            let now = now();
            let expires = match expiry.as_deref().map(|e| crate::store::exceptions::parse_expiry(e, now)) {
                Some(Err(e)) => return Some(Resp::BoardChanged { message: format!("exception: {e}"), error: true }),
                Some(Ok(t)) => Some(t),
                None => None,
            };
            let req = crate::store::exceptions::Request {
                kind,
                justification,
                requester: store.actor.clone(),
                approver: Some(approver),
                expires,
                target,
            };
            let max = crate::store::exceptions::max_days(c);
            match crate::store::exceptions::add(store, &req, max) {
                Ok(g) => {
                    if let Err(e) = crate::risk::rescore_store(store) {
                        tracing::warn!("rescore after an exception: {e}");
                    }
                    Resp::BoardChanged { message: format!("exception #{} for {what}: {} findings out of the queue", g.exception_id, g.findings), error: false }
                }
                Err(e) => Resp::BoardChanged { message: format!("exception: {}", first_line(e)), error: true },
            }
        }
        Req::Card { id } => match crate::mobilize::show(c, id) {
            Ok(text) => Resp::Detail { title: format!("Work item #{id}"), text, panel: false },
            Err(e) => err("work item", &e),
        },
        Req::DeleteScope { name } => {
            if store.read_only {
                return Some(err("scope", &"read-only: scopes cannot be deleted"));
            }
            match scopes::delete(c, &name) {
                Ok(true) => Resp::Info(format!("scope '{name}' deleted")),
                Ok(false) => err("scope", &format!("no scope named '{name}'")),
                Err(e) => err("scope", &e),
            }
        }
        Req::Sql { text, write, export_dir } => {
            use crate::store::sqlguard::{classify, error_with_position, Verdict};
            let t0 = std::time::Instant::now();
            match classify(&text, &export_dir) {
                Verdict::Refused(why) => Resp::SqlError { message: format!("refused: {why}") },
                // Prepared as typed first (nothing runs), so an error points into the user's own text.
                Verdict::Read => match c.prepare(&text).map(drop).and_then(|_| crate::store::views::sql_result(c, &text)) {
                    Ok(view) => Resp::SqlView { view, millis: t0.elapsed().as_millis() },
                    Err(e) => Resp::SqlError { message: error_with_position(&e.to_string(), 0) },
                },
                Verdict::Write if store.read_only => Resp::SqlError { message: "read-only: only queries run here (open without --read-only to change the store)".into() },
                Verdict::Write if !write => Resp::SqlError { message: "refused: this statement changes the store; `:sql write` allows that for this session".into() },
                Verdict::Write => match c.execute_batch(&text) {
                    Ok(()) => Resp::SqlDone { message: format!("statement ran in {} ms", t0.elapsed().as_millis()) },
                    Err(e) => Resp::SqlError { message: error_with_position(&e.to_string(), 0) },
                },
            }
        }
        Req::Standup { scope, since, record } => match standup(store, scope.as_ref(), since.as_deref()) {
            Ok(s) if record => {
                if let Some(u) = s.until {
                    if let Err(e) = crate::report::record_standup(store, u, "console", None) {
                        tracing::warn!("stand-up not recorded: {e}");
                    }
                }
                Resp::Standup(s)
            }
            Ok(s) => Resp::Standup(s),
            Err(e) => err("stand-up", &e),
        },
        Req::Export { view, path, .. } if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) => {
            if view.id != "sql" {
                return Some(err("export", &"Parquet is for the SQL pane's result; tables export CSV or JSON (or use `ctem export VIEW --format parquet`)"));
            }
            let job = JOBS.fetch_add(1, Ordering::Relaxed);
            let conn = match c.try_clone() {
                Ok(x) => x,
                Err(e) => return Some(err("export", &e)),
            };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let label = format!("export to {}", path.display());
                let _ = tx.send(Resp::Progress { job, label: label.clone(), done: 0, total: 0 });
                let tmp = path.with_extension("partial");
                let target = crate::store::sql_literal(&tmp.display().to_string());
                let r = conn
                    .execute_batch(&format!("COPY (SELECT * EXCLUDE (__rn) FROM {} ORDER BY __rn) TO {target} (FORMAT parquet)", view.from))
                    .map_err(anyhow::Error::from)
                    .and_then(|_| std::fs::rename(&tmp, &path).map_err(anyhow::Error::from))
                    .and_then(|_| Ok(conn.query_row(&format!("SELECT count(*) FROM {}", view.from), [], |r| r.get::<_, i64>(0))?));
                let msg = match &r {
                    Ok(n) => format!("exported {n} rows to {}", path.display()),
                    Err(e) => format!("export to {} failed: {}", path.display(), first_line(e)),
                };
                let _ = tx.send(Resp::JobDone { job, message: msg, ok: r.is_ok(), changed: false });
            });
            return None;
        }
        Req::Export { view, filter, scope, sort_col, desc, path, json } => {
            let job = JOBS.fetch_add(1, Ordering::Relaxed);
            let conn = match c.try_clone() {
                Ok(x) => x,
                Err(e) => return Some(err("export", &e)),
            };
            let total = view.count(c, &filter, scope.as_ref()).unwrap_or(0).max(0) as u64;
            let tx = tx.clone();
            std::thread::spawn(move || {
                let label = format!("export to {}", path.display());
                let r = (|| -> anyhow::Result<u64> {
                    let tmp = path.with_extension("partial");
                    let f = std::fs::File::create(&tmp)?;
                    let mut w = std::io::BufWriter::new(f);
                    let n = view.export(&conn, &filter, scope.as_ref(), sort_col, desc, json, &mut w, &mut |n| {
                        let _ = tx.send(Resp::Progress { job, label: label.clone(), done: n, total });
                    })?;
                    drop(w);
                    std::fs::rename(&tmp, &path)?;
                    Ok(n)
                })();
                let msg = match &r {
                    Ok(n) => format!("exported {n} rows to {}", path.display()),
                    Err(e) => format!("export to {} failed: {}", path.display(), first_line(e)),
                };
                let _ = tx.send(Resp::JobDone { job, message: msg, ok: r.is_ok(), changed: false });
            });
            return None;
        }
        Req::SaveQuery { name, sql, export_dir } => {
            if store.read_only {
                return Some(Resp::SqlError { message: "read-only: queries cannot be saved (open without --read-only)".into() });
            }
            match crate::store::sqlguard::save_query(c, &name, &sql, &export_dir) {
                Ok(true) => Resp::SqlDone { message: format!("saved as '{name}': `saved={name}` narrows the findings and the queue to its rows") },
                Ok(false) => Resp::SqlDone { message: format!("saved as '{name}' (view saved_{name}; no finding_id column, so it is not a queue)") },
                Err(e) => Resp::SqlError { message: format!("save: {e}") },
            }
        }
        Req::LoadQuery { name } => match c.query_row("SELECT sql FROM saved_queries WHERE name = lower(?)", duckdb::params![name], |r| r.get::<_, String>(0)) {
            Ok(t) => Resp::QueryText(t),
            Err(_) => Resp::SqlError { message: format!("no saved query '{name}'") },
        },
        Req::SavedQueries => {
            let list = || -> duckdb::Result<Vec<(String, bool, String)>> {
                let mut st = c.prepare("SELECT name, finding_ids, sql FROM saved_queries ORDER BY name")?;
                let v = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<Vec<_>, _>>()?;
                Ok(v)
            };
            match list() {
                Ok(v) => Resp::SavedQueries(v),
                Err(e) => err("saved queries", &e),
            }
        }
        Req::Schema => match schema(c) {
            Ok(v) => Resp::Schema(v),
            Err(e) => err("schema", &e),
        },
        Req::SyncStatus => match crate::sync::status_text(c) {
            Ok(text) => Resp::Detail { title: "Ticket sync".into(), text, panel: false },
            Err(e) => err("sync", &e),
        },
        Req::Sync { cfg } => {
            let (job, st) = match background(store, busy_import, "sync", "tickets cannot be pushed") {
                Ok(x) => x,
                Err(r) => return Some(r),
            };
            let tx = tx.clone();
            let busy = busy_import.clone();
            std::thread::spawn(move || {
                let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let done = Arc::new(AtomicBool::new(false));
                let (c2, d2, t2) = (calls.clone(), done.clone(), tx.clone());
                let ticker = std::thread::spawn(move || {
                    while !d2.load(Ordering::SeqCst) {
                        let n = c2.load(Ordering::Relaxed) as u64;
                        let _ = t2.send(Resp::Progress { job, label: format!("sync: {n} requests"), done: 0, total: 0 });
                        std::thread::sleep(std::time::Duration::from_millis(250));
                    }
                });
                let r = crate::sync::run(&st, &cfg, &crate::sync::Options { dry_run: false, only: None, call_budget: None, progress: Some(calls) });
                done.store(true, Ordering::SeqCst);
                let _ = ticker.join();
                busy.store(false, Ordering::SeqCst);
                let (message, ok) = match r {
                    Ok(v) => {
                        let ok = v.iter().all(|o| o.error.is_none() && o.failed.is_empty());
                        (v.iter().map(|o| o.line()).collect::<Vec<_>>().join(" · "), ok)
                    }
                    Err(e) => (format!("sync: {}", first_line(e)), false),
                };
                let _ = tx.send(Resp::JobDone { job, message, ok, changed: true });
            });
            return None;
        }
        Req::Import { paths } => {
            let (job, st) = match background(store, busy_import, "import", "imports are refused") {
                Ok(x) => x,
                Err(r) => return Some(r),
            };
            let tx = tx.clone();
            let busy = busy_import.clone();
            std::thread::spawn(move || {
                let files = match crate::cli::expand(&paths) {
                    Ok(f) => f,
                    Err(e) => {
                        busy.store(false, Ordering::SeqCst);
                        let _ = tx.send(Resp::JobDone { job, message: format!("import: {}", first_line(e)), ok: false, changed: false });
                        return;
                    }
                };
                let total: u64 = files.iter().map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
                let mut done_before = 0u64;
                let mut lines = Vec::new();
                let mut ok = true;
                let mut changed = false;
                for f in &files {
                    let progress = Arc::new(AtomicU64::new(0));
                    let opts = crate::ingest::ParseOptions { progress: Some(progress.clone()), ..Default::default() };
                    let label = format!("import {}", f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
                    let stop = Arc::new(AtomicBool::new(false));
                    let ticker = {
                        let (tx, progress, stop, label) = (tx.clone(), progress.clone(), stop.clone(), label.clone());
                        std::thread::spawn(move || {
                            while !stop.load(Ordering::Relaxed) {
                                let d = done_before + progress.load(Ordering::Relaxed);
                                let _ = tx.send(Resp::Progress { job, label: label.clone(), done: d, total });
                                std::thread::sleep(std::time::Duration::from_millis(100));
                            }
                        })
                    };
                    let s = import_file(&st, f, None, &opts);
                    stop.store(true, Ordering::Relaxed);
                    let _ = ticker.join();
                    done_before += std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
                    match s.outcome {
                        Outcome::Failed(_) => ok = false,
                        Outcome::Imported => changed = true,
                        Outcome::Unchanged(_) => {}
                    }
                    lines.push(s.line().lines().next().unwrap_or("").to_string());
                }
                busy.store(false, Ordering::SeqCst);
                let message = if lines.len() == 1 { lines.remove(0) } else { format!("{} files: {}", lines.len(), lines.join(" | ")) };
                let _ = tx.send(Resp::JobDone { job, message, ok, changed });
            });
            return None;
        }
    })
}

fn scope_cond(scope: Option<&Compiled>) -> (String, Vec<duckdb::types::Value>) {
    match scope {
        Some(s) => (format!("asset_id IN (SELECT asset_id FROM assets WHERE {})", s.sql), s.params.iter().map(param_value).collect()),
        None => ("true".into(), Vec::new()),
    }
}

fn header(store: &Store, scope: Option<&Compiled>) -> anyhow::Result<Header> {
    let c = &store.conn;
    let (cond, p) = scope_cond(scope);
    let mut h = Header::default();
    let sql = format!(
        "SELECT count(*) FILTER (WHERE status IN ('open', 'reopened')),
                count(*) FILTER (WHERE status IN ('open', 'reopened') AND severity = 'critical'),
                count(*) FILTER (WHERE status IN ('open', 'reopened') AND severity = 'high'),
                count(*) FILTER (WHERE status IN ('open', 'reopened') AND severity = 'medium'),
                count(*) FILTER (WHERE status IN ('open', 'reopened') AND severity = 'low'),
                count(*) FILTER (WHERE status IN ('open', 'reopened') AND severity = 'info'),
                count(*) FILTER (WHERE status = 'fixed'), count(*) FILTER (WHERE {regressed})
         FROM findings WHERE {cond}",
        regressed = crate::store::views::REGRESSED
    );
    c.query_row(&sql, duckdb::params_from_iter(p.iter()), |r| {
        h.open = r.get(0)?;
        for i in 0..5 {
            h.by_severity[i] = r.get(i + 1)?;
        }
        h.fixed = r.get(6)?;
        h.reopened = r.get(7)?;
        Ok(())
    })?;
    let has_priority: i64 = c.query_row(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'findings' AND column_name = 'priority'",
        [],
        |r| r.get(0),
    )?;
    if has_priority > 0 {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE priority = 'P1'), count(*) FILTER (WHERE priority = 'P2'),
                    count(*) FILTER (WHERE priority = 'P3'), count(*) FILTER (WHERE priority = 'P4')
             FROM findings WHERE status IN ('open', 'reopened') AND {cond}"
        );
        let v: [i64; 4] = c.query_row(&sql, duckdb::params_from_iter(p.iter()), |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]))?;
        h.by_priority = Some(v);
    }
    let sql = match scope {
        Some(s) => format!("SELECT count(*) FROM assets WHERE {}", s.sql),
        None => "SELECT count(*) FROM assets".into(),
    };
    let ap: Vec<duckdb::types::Value> = scope.map(|s| s.params.iter().map(param_value).collect()).unwrap_or_default();
    h.assets = c.query_row(&sql, duckdb::params_from_iter(ap.iter()), |r| r.get(0))?;
    let (li, ls): (Option<String>, Option<String>) = c.query_row(
        "SELECT strftime(max(finished_at), '%Y-%m-%d %H:%M'), strftime(max(scan_time), '%Y-%m-%d %H:%M') FROM imports",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    h.last_import = li;
    h.latest_scan = ls;
    let (sql, pp) = crate::store::views::inline_values(format!("SELECT count(*) FROM finding_verification WHERE state = 'not_covered' AND {cond}"), p.clone());
    h.not_covered = c.query_row(&sql, duckdb::params_from_iter(pp.iter()), |r| r.get(0))?;
    let feeds = crate::intel::freshness(c)?;
    let parts: Vec<String> = feeds
        .iter()
        .filter(|f| f.feed == "kev" || f.feed == "epss")
        .map(|f| {
            let when = f.date.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "undated".into());
            format!("{} {when}", f.feed.to_ascii_uppercase())
        })
        .collect();
    h.intel = if parts.is_empty() { None } else { Some(parts.join(" · ")) };
    Ok(h)
}

/// The stand-up window: the 24 hours up to the latest scan in the store (the data's clock, so a
/// replayed or offline estate reads the same as a live one).
pub fn standup_window(store: &Store) -> anyhow::Result<Option<(chrono::NaiveDateTime, chrono::NaiveDateTime)>> {
    let until: Option<chrono::NaiveDateTime> = store.conn.query_row("SELECT max(scan_time) FROM imports", [], |r| r.get(0))?;
    Ok(until.map(|u| (u - chrono::Duration::hours(24), u)))
}

/// The console's stand-up summary for the active scope.
pub fn standup(store: &Store, scope: Option<&Compiled>, since: Option<&str>) -> anyhow::Result<Standup> {
    let c = &store.conn;
    let mut s = Standup::default();
    let Some((_, until)) = standup_window(store)? else { return Ok(s) };
    let since = match since {
        Some(v) => crate::report::parse_since(v, until).map_err(anyhow::Error::msg)?,
        None => {
            let (since, held) = crate::report::default_since(store, until)?;
            s.last_standup = held;
            since
        }
    };
    s.since = Some(since);
    s.until = Some(until);
    let (cond, p) = scope_cond(scope);
    let sql = format!(
        "SELECT sev,
            count(*) FILTER (WHERE first_seen > $since AND first_seen <= $until),
            count(*) FILTER (WHERE status = 'fixed' AND fixed_at > $since AND fixed_at <= $until),
            count(*) FILTER (WHERE {regressed} AND last_seen > $since AND last_seen <= $until)
         FROM (SELECT *, severity AS sev FROM findings WHERE {cond}) f
         RIGHT JOIN (VALUES ('critical', 4), ('high', 3), ('medium', 2), ('low', 1), ('info', 0)) AS s(sev, r) USING (sev)
         GROUP BY sev, r ORDER BY r DESC",
        regressed = crate::store::views::REGRESSED
    );
    let sql = sql.replace("$since", &format!("TIMESTAMP '{}'", since.format("%Y-%m-%d %H:%M:%S"))).replace(
        "$until",
        &format!("TIMESTAMP '{}'", until.format("%Y-%m-%d %H:%M:%S")),
    );
    let mut st = c.prepare(&sql)?;
    s.by_severity = st
        .query_map(duckdb::params_from_iter(p.iter()), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let sql = format!(
        "SELECT count(*) FILTER (WHERE status IN ('open', 'reopened')),
                count(*) FILTER (WHERE first_seen <= TIMESTAMP '{s0}' AND (fixed_at IS NULL OR fixed_at > TIMESTAMP '{s0}')
                                 AND status NOT IN ('false_positive'))
         FROM findings WHERE {cond}",
        s0 = since.format("%Y-%m-%d %H:%M:%S")
    );
    let (a, b): (i64, i64) = c.query_row(&sql, duckdb::params_from_iter(p.iter()), |r| Ok((r.get(0)?, r.get(1)?)))?;
    s.open_now = a;
    s.open_before = b;
    let mut st = c.prepare(&format!(
        "SELECT import_id, strftime(scan_time, '%m-%d %H:%M') || '  ' || tool || '  ' || regexp_extract(file, '[^/]*$') || '  +' || new || ' new, ' || fixed || ' fixed, ' || reopened || ' reopened'
         FROM imports WHERE scan_time > TIMESTAMP '{}' ORDER BY scan_time DESC, import_id DESC LIMIT 20",
        since.format("%Y-%m-%d %H:%M:%S")
    ))?;
    s.imports = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let r = crate::report::standup(store, since, until, scope.map(|c| ("", c)), false)?;
    s.new_by_priority = r.new_by_priority;
    s.new_kev = r.new_kev_total;
    s.p1_p2_now = r.open_by_priority[0] + r.open_by_priority[1];
    s.p1_p2_before = r.p1_p2_at_start;
    s.trend_p1 = r.trend.iter().map(|t| t.1).collect();
    s.trend_p2 = r.trend.iter().map(|t| t.2).collect();
    s.mttr_days = r.mttr_days;
    s.sla_past_due = r.sla_past_due;
    s.sla_due_3d = r.sla_due_3d;
    s.exceptions_expiring = r.exceptions_expiring.iter().map(|e| e.0).collect();
    // One work item may move several times in the window: counted once.
    s.tickets_moved = r.tickets_moved.iter().map(|t| t.0).collect();
    s.tickets_moved.sort_unstable();
    s.tickets_moved.dedup();
    s.work_verified = r.work_verified_ids;
    s.work_reopened = r.work_reopened_ids;
    Ok(s)
}

fn asset_detail(store: &Store, asset_id: i64) -> anyhow::Result<String> {
    use std::fmt::Write;
    let c = &store.conn;
    let cols = [
        "name", "kind", "hostname", "fqdn", "array_to_string(ips, ', ')", "os", "cloud_provider", "account", "region",
        "environment", "business_unit", "owner", "criticality", "internet_facing", "array_to_string(tags, ', ')",
        "array_to_string(sources, ', ')", "in_cmdb", "first_seen", "last_seen",
    ];
    let labels = [
        "name", "kind", "hostname", "fqdn", "ips", "os", "cloud", "account", "region", "environment", "business unit",
        "owner", "criticality", "internet-facing", "tags", "sources", "in CMDB", "first seen", "last seen",
    ];
    let sql = format!("SELECT {} FROM assets WHERE asset_id = ?", cols.iter().map(|c| format!("CAST({c} AS VARCHAR)")).collect::<Vec<_>>().join(", "));
    let vals: Vec<Option<String>> = c.query_row(&sql, [asset_id], |r| (0..cols.len()).map(|i| r.get(i)).collect())?;
    let mut out = String::new();
    for (l, v) in labels.iter().zip(vals) {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            writeln!(out, "{l:<16} {v}")?;
        }
    }
    writeln!(out, "\nIdentifiers (how scanners' reports were matched to this asset):")?;
    let mut st = c.prepare("SELECT id_kind, id_value, coalesce(source, '') FROM asset_identifiers WHERE asset_id = ? ORDER BY id_kind, id_value")?;
    for r in st.query_map([asset_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))? {
        let (k, v, s) = r?;
        writeln!(out, "  {k:<12} {v}  ({s})")?;
    }
    writeln!(out, "\nOpen findings by severity:")?;
    let mut st = c.prepare(
        "SELECT severity, count(*) FROM findings WHERE asset_id = ? AND status IN ('open', 'reopened')
         GROUP BY severity ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END",
    )?;
    for r in st.query_map([asset_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (s, n) = r?;
        writeln!(out, "  {s:<9} {n}")?;
    }
    writeln!(out, "\nOpen findings, most severe first (id, severity, vulnerability, title, sources):")?;
    let mut st = c.prepare(
        "SELECT finding_id, severity, vuln_id, title, array_to_string(sources, ',') FROM findings
         WHERE asset_id = ? AND status IN ('open', 'reopened')
         ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 WHEN 'low' THEN 3 ELSE 4 END,
                  cvss_score DESC NULLS LAST, finding_id
         LIMIT 200",
    )?;
    for r in st.query_map([asset_id], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, String>(4)?))
    })? {
        let (id, sev, v, t, src) = r?;
        writeln!(out, "  {id:>8} {sev:<8} {v:<16} {t}  [{src}]")?;
    }
    Ok(out)
}

fn import_detail(store: &Store, import_id: i64) -> anyhow::Result<String> {
    use std::fmt::Write;
    let c = &store.conn;
    let mut out = String::new();
    let row: Vec<Option<String>> = c.query_row(
        "SELECT file, sha256, format, tool, CAST(scan_time AS VARCHAR), CAST(started_at AS VARCHAR), CAST(finished_at AS VARCHAR),
                CAST(records AS VARCHAR), CAST(new AS VARCHAR), CAST(seen_again AS VARCHAR), CAST(fixed AS VARCHAR),
                CAST(reopened AS VARCHAR), CAST(skipped AS VARCHAR), CAST(assets AS VARCHAR), CAST(bytes AS VARCHAR)
         FROM imports WHERE import_id = ?",
        [import_id],
        |r| (0..15).map(|i| r.get(i)).collect(),
    )?;
    let labels = ["file", "sha256", "format", "tool", "scan time", "started", "finished", "records", "new", "seen again", "fixed", "reopened", "skipped", "assets", "bytes"];
    for (l, v) in labels.iter().zip(row) {
        writeln!(out, "{l:<12} {}", v.unwrap_or_default())?;
    }
    let mut st = c.prepare("SELECT coalesce(position, ''), reason, coalesce(snippet, '') FROM quarantine WHERE import_id = ? LIMIT 50")?;
    let q: Vec<(String, String, String)> = st.query_map([import_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    if !q.is_empty() {
        writeln!(out, "\nSkipped records (quarantine):")?;
        for (p, r, s) in q {
            writeln!(out, "  {p}: {r}  {s}")?;
        }
    }
    Ok(out)
}
