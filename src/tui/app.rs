//! Console state and everything that changes it: keys become actions, actions become state changes and
//! store requests; answers from the store come back through `on_resp`. Nothing here draws.

use crate::query::Compiled;
use crate::store::views::{self, compile_scope};
use crate::tui::db::{Db, Header, Req, Resp, Standup, TableId};
use crate::tui::keymap::{Action, Keymap};
use crate::tui::table::{PageWant, TableView};
use crate::tui::theme::{Theme, ThemeSource};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use tui_textarea::TextArea;

/// Keywords the SQL editor highlights.
const SQL_KEYWORDS: &str = r"(?i)\b(select|from|where|group|by|order|having|limit|offset|join|left|right|inner|outer|full|cross|on|using|as|and|or|not|in|is|null|like|ilike|between|case|when|then|else|end|with|union|all|distinct|insert|into|values|update|set|delete|create|drop|alter|table|view|copy|to|asc|desc|count|sum|avg|min|max|qualify|over|partition|window|filter|exists|true|false|describe|summarize|pivot|unpivot)\b";

pub const TABS: [&str; 7] = ["Stand-up", "Scoping", "Discovery", "Prioritization", "Validation", "Mobilization", "SQL"];
pub const DISCOVERY: [TableId; 3] = ["findings", "assets", "imports"];

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    None,
    Filter(String),
    Command(String),
    Export(String),
}

pub struct ScopeEditor {
    pub name: TextArea<'static>,
    pub filter: TextArea<'static>,
    pub description: TextArea<'static>,
    pub field: usize,
    pub error: Option<String>,
}

pub enum Overlay {
    None,
    Help { filter: String, scroll: usize },
    Detail { title: String, lines: Vec<String>, scroll: usize },
    Columns { cursor: usize },
    Scope(Box<ScopeEditor>),
    /// The schema browser: tables and views of the store with their columns; Enter inserts a name.
    Schema { items: Vec<(String, String)>, cursor: usize, filter: String },
    /// Saved queries: (name, whether its rows name findings, SQL). Enter narrows a findings list to one.
    Queues { items: Vec<(String, bool, String)>, cursor: usize },
}

pub struct SqlPane {
    pub editor: TextArea<'static>,
    pub editing: bool,
    pub status: Option<(String, bool)>,
    /// Statements that change the store run (`:sql write`, after a confirmation).
    pub write: bool,
    pub write_pending: bool,
    /// Statements run, oldest first, kept across sessions in `history_file`.
    pub history: Vec<String>,
    pub history_pos: Option<usize>,
    pub history_file: Option<PathBuf>,
    pub export_dir: PathBuf,
}

pub struct Job {
    pub label: String,
    pub done: u64,
    pub total: u64,
}

pub struct App {
    pub tab: usize,
    pub discovery: usize,
    /// Prioritization shows the ranked queue (0) or the fix groups (1).
    pub prio_view: usize,
    /// Mobilization shows the board (0), the work items (1), the exceptions (2) or open work by owner (3).
    pub mob_view: usize,
    pub board: crate::tui::board::Board,
    /// Validation shows fixes and regressions (0), the coverage matrix (1) or the controls (2).
    pub val_view: usize,
    pub theme: Theme,
    pub theme_dir: Option<PathBuf>,
    pub keymap: Keymap,
    pub db: Db,
    pub db_label: String,
    pub read_only: bool,
    pub header: Header,
    pub scope: Option<(String, Compiled)>,
    pub scopes: Vec<crate::store::scopes::ScopeCounts>,
    pub standup: Standup,
    /// The stand-up summary line under the cursor (counting only lines that open something), and
    /// whether the table of changes has the focus instead of the summary.
    pub standup_cursor: usize,
    pub standup_table: bool,
    /// The stand-up window's start (`:since`), counted back from the latest scan; None: 24 hours.
    pub standup_since: Option<String>,
    /// `:queue NAME` waits for the list of saved queries to check the name.
    pub pending_queue: Option<String>,
    pub tables: HashMap<TableId, TableView>,
    pub detail_for: Option<i64>,
    pub detail_text: String,
    pub input: Input,
    pub input_error: Option<String>,
    pub overlay: Overlay,
    pub message: Option<(String, bool)>,
    pub jobs: BTreeMap<u64, Job>,
    pub sql: SqlPane,
    pub quit: bool,
    pub quit_armed: bool,
    pub suspend: bool,
    pub dirty: bool,
    pub copy: Option<String>,
    pub delete_armed: Option<String>,
}

fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

fn one_line_area(text: &str) -> TextArea<'static> {
    let mut t = TextArea::new(vec![text.to_string()]);
    t.move_cursor(tui_textarea::CursorMove::End);
    t
}

impl App {
    pub fn new(db: Db, db_label: String, theme: Theme, theme_dir: Option<PathBuf>, keymap: Keymap) -> App {
        let read_only = db.read_only;
        let mut tables = HashMap::new();
        for v in [views::findings(), views::assets(), views::imports(), views::queue(), views::verification(), views::owners(), views::scopes(), views::fix_groups(), views::work_items(), views::exceptions(), views::controls(), views::matrix()] {
            tables.insert(v.id, TableView::new(v));
        }
        let mut editor = TextArea::new(vec![
            "-- F5 (or :run) runs the statement under the cursor; Esc leaves the editor".into(),
            "SELECT severity, count(*) AS open FROM findings".into(),
            "WHERE status IN ('open', 'reopened') GROUP BY ALL ORDER BY 2 DESC;".into(),
        ]);
        editor.move_cursor(tui_textarea::CursorMove::Bottom);
        let _ = editor.set_search_pattern(SQL_KEYWORDS);
        editor.set_search_style(theme.get("sql_keyword"));
        App {
            tab: 0,
            discovery: 0,
            prio_view: 0,
            mob_view: 0,
            board: Default::default(),
            val_view: 0,
            theme,
            theme_dir,
            keymap,
            db,
            db_label,
            read_only,
            header: Header::default(),
            scope: None,
            scopes: Vec::new(),
            standup: Standup::default(),
            standup_cursor: 0,
            standup_table: false,
            standup_since: None,
            pending_queue: None,
            tables,
            detail_for: None,
            detail_text: String::new(),
            input: Input::None,
            input_error: None,
            overlay: Overlay::None,
            message: None,
            jobs: BTreeMap::new(),
            sql: SqlPane {
                editor,
                editing: false,
                status: None,
                write: false,
                write_pending: false,
                history: Vec::new(),
                history_pos: None,
                history_file: None,
                export_dir: std::env::temp_dir().join("ctem-exports"),
            },
            quit: false,
            quit_armed: false,
            suspend: false,
            dirty: true,
            copy: None,
            delete_armed: None,
        }
    }

    /// First requests: header, stand-up, scopes, and the tables of the first tab.
    pub fn start(&mut self, start_tab: Option<&str>, scope: Option<&str>) {
        if let Some(t) = start_tab {
            if let Some(i) = TABS.iter().position(|n| n.to_ascii_lowercase().replace('-', "") == t.to_ascii_lowercase().replace('-', "")) {
                self.tab = i;
            }
        }
        self.db.send(Req::Scopes);
        if let Some(s) = scope {
            self.command(&format!("scope {s}"));
        } else {
            self.refresh_all();
        }
    }

    pub fn focused_table_id(&self) -> Option<TableId> {
        match self.tab {
            0 if self.standup_table => Some("standup"),
            0 => None,
            1 => Some("scopes"),
            2 => Some(DISCOVERY[self.discovery]),
            3 if self.prio_view == 1 => Some("fix_groups"),
            3 => Some("queue"),
            4 if self.val_view == 1 => Some("matrix"),
            4 if self.val_view == 2 => Some("controls"),
            4 => Some("verification"),
            5 if self.mob_view == 1 => Some("work_items"),
            5 if self.mob_view == 2 => Some("exceptions"),
            5 if self.mob_view == 3 => Some("owners"),
            6 if !self.sql.editing && self.tables.contains_key("sql") => Some("sql"),
            _ => None,
        }
    }

    pub fn focused(&mut self) -> Option<&mut TableView> {
        let id = self.focused_table_id()?;
        self.tables.get_mut(id)
    }

    fn send_page(&mut self, id: TableId, want: Option<PageWant>) {
        if let (Some(w), Some(t)) = (want, self.tables.get(id)) {
            let count = w.fill == crate::tui::table::Fill::Reset;
            let view = t.view.clone();
            let generation = w.generation;
            // The page first: the frame repaints with rows before the total is known.
            self.db.send(Req::Page { table: id, view: view.clone(), want: w });
            if count {
                let (filter, scope) = t.count_query();
                self.db.send(Req::Count { table: id, generation, view, filter, scope });
            }
        }
    }

    fn reload(&mut self, id: TableId) {
        let w = self.tables.get_mut(id).map(|t| t.reload());
        self.send_page(id, w);
    }

    /// Reload what the current tab shows (tables load on first sight, then on refresh).
    fn ensure_loaded(&mut self) {
        let ids: Vec<TableId> = match self.tab {
            0 => vec!["standup"],
            2 => vec![DISCOVERY[self.discovery]],
            _ => self.focused_table_id().into_iter().collect(),
        };
        for id in ids {
            if self.tables.get(id).is_some_and(|t| !t.loaded_once && !t.in_flight) {
                self.reload(id);
            }
        }
        if self.tab == 3 && self.prio_view == 0 {
            self.request_detail();
        }
        if self.board_visible() && !self.board.loaded && !self.board.in_flight {
            self.reload_board();
        }
    }

    pub fn refresh_all(&mut self) {
        let scope = self.scope.as_ref().map(|s| s.1.clone());
        self.db.send(Req::Header { scope: scope.clone() });
        for t in self.tables.values_mut() {
            t.loaded_once = false;
            t.in_flight = false;
        }
        self.board.loaded = false;
        self.board.in_flight = false;
        self.ensure_loaded();
        // The stand-up summary scans the store several times: after the rows on screen.
        self.db.send(Req::Standup { scope, since: self.standup_since.clone(), record: false });
    }

    fn set_scope(&mut self, scope: Option<(String, Compiled)>) {
        self.scope = scope;
        let c = self.scope.as_ref().map(|s| s.1.clone());
        for t in self.tables.values_mut() {
            t.scope_to(c.clone());
        }
        self.refresh_all();
    }

    /// Rebuild the stand-up table for the window the store reported.
    fn set_standup(&mut self, s: Standup) {
        if let (Some(since), Some(until)) = (s.since, s.until) {
            let mut t = TableView::new(views::changes(since, until));
            if let Some(old) = self.tables.get("standup") {
                t.filter_text = old.filter_text.clone();
                t.filter = old.filter.clone();
            }
            t.scope = self.scope.as_ref().map(|x| x.1.clone());
            self.tables.insert("standup", t);
            if self.tab == 0 {
                self.reload("standup");
            }
        }
        self.standup = s;
        let n = self.standup_jumps().len();
        self.standup_cursor = self.standup_cursor.min(n.saturating_sub(1));
    }

    /// A saved query as the queue: the focused findings list narrowed to its rows (the ranked queue
    /// when no findings list has the focus).
    fn use_queue(&mut self, name: &str) {
        let findings_list = matches!(self.focused_table_id(), Some("findings" | "queue" | "standup" | "verification"));
        if !findings_list {
            self.tab = 3;
            self.prio_view = 0;
        }
        self.apply_filter(&format!("saved={name}"));
        self.ensure_loaded();
        if self.input_error.is_none() {
            self.message = Some((format!("queue '{name}': the rows of saved_{name} (/ clears or changes the filter)"), false));
        } else {
            self.message = self.input_error.take().map(|e| (format!("queue '{name}': {e}"), true));
        }
    }

    /// What the stand-up summary lines open, in order.
    pub fn standup_jumps(&self) -> Vec<crate::tui::standup::Jump> {
        crate::tui::standup::items(&self.standup, &self.theme, 40).into_iter().filter_map(|i| i.jump).collect()
    }

    /// Keys on the stand-up summary; false when the key is not one of its own.
    fn standup_act(&mut self, a: Action) -> bool {
        let n = self.standup_jumps().len();
        let c = &mut self.standup_cursor;
        match a {
            Action::Up => *c = c.saturating_sub(1),
            Action::Down => *c = (*c + 1).min(n.saturating_sub(1)),
            Action::PageUp | Action::HalfUp | Action::Top => *c = 0,
            Action::PageDown | Action::HalfDown | Action::Bottom => *c = n.saturating_sub(1),
            Action::Open => self.open_standup_line(),
            Action::Filter => {
                // Filtering is for the table of changes.
                self.standup_table = true;
                return false;
            }
            _ => return false,
        }
        true
    }

    /// Enter on a summary line: the list of exactly the findings (or work items) it counts.
    fn open_standup_line(&mut self) {
        use crate::tui::standup::Target;
        let Some(j) = self.standup_jumps().into_iter().nth(self.standup_cursor) else { return };
        match j.target {
            Target::Changes => self.standup_table = true,
            Target::Findings => {
                self.tab = 2;
                self.discovery = 0;
            }
            Target::Queue => {
                self.tab = 3;
                self.prio_view = 0;
            }
            Target::WorkItems => {
                self.tab = 5;
                self.mob_view = 1;
            }
            Target::Exceptions => {
                self.tab = 5;
                self.mob_view = 2;
            }
        }
        self.apply_filter(&j.filter);
        self.ensure_loaded();
        let how = if j.filter.is_empty() { String::new() } else { format!(" · /{}", j.filter) };
        let back = if j.target == Target::Changes { " · Tab: back to the summary" } else { " · 1: back to the stand-up" };
        self.message = Some((format!("{}{how}{back}", j.what), false));
    }

    fn request_detail(&mut self) {
        let id = self.tables.get("queue").and_then(|t| t.selected()).map(|r| r.key);
        if id != self.detail_for {
            self.detail_for = id;
            self.detail_text.clear();
            if let Some(id) = id {
                self.db.send(Req::Explain { finding_id: id, panel: true });
            }
        }
    }

    pub fn on_resp(&mut self, r: Resp) {
        self.dirty = true;
        match r {
            Resp::Page { table, generation, fill, rows } => {
                let more = self.tables.get_mut(table).and_then(|t| t.receive(generation, fill, rows));
                self.send_page(table, more);
                if table == "queue" && self.tab == 3 {
                    self.request_detail();
                }
            }
            Resp::Cells { table, generation, rows } => {
                if let Some(t) = self.tables.get_mut(table) {
                    t.fill_cells(generation, rows);
                }
            }
            Resp::Count { table, generation, total } => {
                if let Some(t) = self.tables.get_mut(table) {
                    t.set_total(generation, total);
                }
            }
            Resp::Header(h) => self.header = h,
            Resp::Standup(s) => self.set_standup(s),
            Resp::Scopes(v) => self.scopes = v,
            Resp::Detail { title, text, panel } => {
                if panel {
                    self.detail_text = text;
                } else {
                    self.overlay = Overlay::Detail { title, lines: text.lines().map(str::to_string).collect(), scroll: 0 };
                }
            }
            Resp::HandedOff { message, ok } => {
                self.message = Some((message, !ok));
                if ok {
                    if let Some(t) = self.tables.get_mut("queue") {
                        t.marks.clear();
                    }
                    self.refresh_all();
                }
            }
            Resp::Board(cols) => self.board.receive(cols),
            Resp::QueryText(t) => {
                let mut ed = TextArea::new(t.lines().map(String::from).collect());
                let _ = ed.set_search_pattern(SQL_KEYWORDS);
                ed.set_search_style(self.theme.get("sql_keyword"));
                self.sql.editor = ed;
                self.sql.editing = true;
                self.tab = 6;
            }
            Resp::SavedQueries(items) => {
                if let Some(name) = self.pending_queue.take() {
                    match items.iter().find(|(n, ..)| n.eq_ignore_ascii_case(&name)) {
                        Some((n, true, _)) => {
                            let n = n.clone();
                            self.use_queue(&n);
                        }
                        Some((n, false, _)) => {
                            self.message = Some((format!("'{n}' has no finding_id column, so it is not a queue (:load {n} opens it)"), true));
                        }
                        None => {
                            let names: Vec<&str> = items.iter().filter(|i| i.1).map(|i| i.0.as_str()).collect();
                            let known = if names.is_empty() { "none yet".to_string() } else { names.join(", ") };
                            self.message = Some((format!("no saved query '{name}' (queues: {known})"), true));
                        }
                    }
                } else if items.is_empty() {
                    self.message = Some(("no saved queries yet: in the SQL pane, :save NAME keeps the statement under the cursor".into(), false));
                } else {
                    self.overlay = Overlay::Queues { items, cursor: 0 };
                }
            }
            Resp::Schema(items) => self.overlay = Overlay::Schema { items, cursor: 0, filter: String::new() },
            Resp::BoardChanged { message, error } => {
                self.message = Some((message, error));
                self.board.marks.clear();
                if !error {
                    if let Some(t) = self.tables.get_mut("queue") {
                        t.marks.clear();
                    }
                }
                self.refresh_all();
            }
            Resp::Info(m) => {
                self.message = Some((m, false));
                self.db.send(Req::Scopes);
                self.reload("scopes");
            }
            Resp::Error { context, message } => self.message = Some((format!("{context}: {message}"), true)),
            Resp::Progress { job, label, done, total } => {
                self.jobs.insert(job, Job { label, done, total });
            }
            Resp::JobDone { job, message, ok, changed } => {
                self.jobs.remove(&job);
                self.message = Some((message, !ok));
                if changed {
                    self.db.send(Req::Scopes);
                    self.refresh_all();
                }
            }
            Resp::SqlView { view, millis } => {
                let mut t = TableView::new(view);
                t.sort_col = usize::MAX;
                self.tables.insert("sql", t);
                self.sql.status = Some((format!("ran in {millis} ms"), false));
                self.sql.editing = false;
                self.reload("sql");
            }
            Resp::SqlDone { message } => {
                self.sql.status = Some((message, false));
                self.refresh_all();
            }
            Resp::SqlError { message } => self.sql.status = Some((message, true)),
            Resp::Skipped => {}
        }
    }

    /// Drain every answer that has arrived.
    pub fn pump(&mut self) {
        while let Some(r) = self.db.try_recv() {
            self.on_resp(r);
        }
    }

    /// Wait until the store has answered everything asked (tests and the first frame).
    pub fn settle(&mut self, max: std::time::Duration) {
        let end = std::time::Instant::now() + max;
        while self.db.pending > 0 && std::time::Instant::now() < end {
            if let Some(r) = self.db.recv_timeout(std::time::Duration::from_millis(20)) {
                self.on_resp(r);
            }
        }
    }

    pub fn on_key(&mut self, k: KeyEvent) {
        self.dirty = true;
        if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
            // In the SQL pane a running statement is cancelled, not the console.
            if self.tab == 6 && self.db.pending > 0 {
                self.cancel_sql();
                return;
            }
            self.quit = true;
            return;
        }
        if self.sql.write_pending {
            self.sql.write_pending = false;
            self.sql.write = matches!(k.code, KeyCode::Char('y') | KeyCode::Char('Y'));
            self.sql.status = Some((if self.sql.write { "writes allowed for this session (:sql read turns them off)".into() } else { "writes stay off".into() }, false));
            return;
        }
        if self.tab == 6 && k.code == KeyCode::Esc && self.db.pending > 0 && !self.sql.editing {
            self.cancel_sql();
            return;
        }
        if self.input != Input::None {
            self.input_key(k);
            return;
        }
        if !matches!(self.overlay, Overlay::None) {
            self.overlay_key(k);
            return;
        }
        if self.tab == 6 && self.sql.editing {
            self.sql_key(k);
            return;
        }
        if self.board.pending.is_some() {
            self.board_confirm(matches!(k.code, KeyCode::Enter | KeyCode::Char('y') | KeyCode::Char('Y')));
            return;
        }
        let Some(a) = self.keymap.action(&k) else { return };
        if a != Action::Quit {
            self.quit_armed = false;
        }
        if a != Action::Delete {
            self.delete_armed = None;
        }
        self.act(a);
    }

    /// Stop the statement the store is running (the engine is interrupted; the console stays).
    pub fn cancel_sql(&mut self) {
        self.db.cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
        self.db.interrupt.interrupt();
        self.sql.status = Some(("cancelled".into(), true));
    }

    /// Replace the editor's text with a statement from the history (`back`: older).
    fn recall(&mut self, back: bool) {
        let n = self.sql.history.len();
        if n == 0 {
            return;
        }
        let pos = match (self.sql.history_pos, back) {
            (None, true) => n - 1,
            (None, false) => return,
            (Some(p), true) => p.saturating_sub(1),
            (Some(p), false) if p + 1 >= n => {
                self.sql.history_pos = None;
                self.sql.editor = TextArea::default();
                return;
            }
            (Some(p), false) => p + 1,
        };
        self.sql.history_pos = Some(pos);
        let lines: Vec<String> = self.sql.history[pos].lines().map(String::from).collect();
        let mut ed = TextArea::new(lines);
        let _ = ed.set_search_pattern(SQL_KEYWORDS);
        ed.set_search_style(self.theme.get("sql_keyword"));
        ed.move_cursor(tui_textarea::CursorMove::Bottom);
        ed.move_cursor(tui_textarea::CursorMove::End);
        self.sql.editor = ed;
    }

    /// Load the history kept across sessions (one JSON string per line).
    pub fn load_history(&mut self, file: PathBuf) {
        if let Ok(t) = std::fs::read_to_string(&file) {
            self.sql.history = t.lines().filter_map(|l| serde_json::from_str::<String>(l).ok()).collect();
            let n = self.sql.history.len();
            if n > 500 {
                self.sql.history.drain(..n - 500);
            }
        }
        self.sql.history_file = Some(file);
    }

    fn remember(&mut self, text: &str) {
        if self.sql.history.last().map(String::as_str) == Some(text) {
            return;
        }
        self.sql.history.push(text.to_string());
        self.sql.history_pos = None;
        if let Some(f) = &self.sql.history_file {
            use std::io::Write;
            if let Ok(mut h) = std::fs::OpenOptions::new().create(true).append(true).open(f) {
                let _ = writeln!(h, "{}", serde_json::Value::String(text.to_string()));
            }
        }
    }

    fn sql_key(&mut self, k: KeyEvent) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Esc if self.db.pending > 0 => self.cancel_sql(),
            KeyCode::Esc => self.sql.editing = false,
            KeyCode::F(2) => self.db.send(Req::Schema),
            KeyCode::Char('p') if ctrl => self.recall(true),
            KeyCode::Char('n') if ctrl => self.recall(false),
            KeyCode::F(5) => self.run_sql(),
            KeyCode::Enter if ctrl => self.run_sql(),
            KeyCode::Char('r') if ctrl => self.run_sql(),
            _ => {
                self.sql.editor.input(k);
            }
        }
    }

    /// The statement under the cursor (statements split on `;` outside quotes and comments).
    pub fn statement_at_cursor(&self) -> String {
        // A selection runs as it is.
        if let Some(((r0, c0), (r1, c1))) = self.sql.editor.selection_range() {
            let lines = self.sql.editor.lines();
            let mut out = String::new();
            for r in r0..=r1.min(lines.len().saturating_sub(1)) {
                let chars: Vec<char> = lines[r].chars().collect();
                let a = if r == r0 { c0.min(chars.len()) } else { 0 };
                let b = if r == r1 { c1.min(chars.len()) } else { chars.len() };
                out.extend(&chars[a..b.max(a)]);
                if r != r1 {
                    out.push('\n');
                }
            }
            if !out.trim().is_empty() {
                return out.trim().trim_end_matches(';').trim().to_string();
            }
        }
        let lines = self.sql.editor.lines();
        let (row, col) = self.sql.editor.cursor();
        let mut stmts: Vec<(String, (usize, usize), (usize, usize))> = Vec::new();
        let mut cur = String::new();
        let mut start = (0usize, 0usize);
        let (mut in_s, mut in_d) = (false, false);
        for (r, line) in lines.iter().enumerate() {
            let chars: Vec<char> = line.chars().collect();
            let mut i = 0;
            while i < chars.len() {
                let ch = chars[i];
                if !in_s && !in_d && ch == '-' && chars.get(i + 1) == Some(&'-') {
                    break;
                }
                if ch == '\'' && !in_d {
                    in_s = !in_s;
                } else if ch == '"' && !in_s {
                    in_d = !in_d;
                }
                if ch == ';' && !in_s && !in_d {
                    stmts.push((std::mem::take(&mut cur), start, (r, i)));
                    start = (r, i + 1);
                } else {
                    cur.push(ch);
                }
                i += 1;
            }
            cur.push('\n');
        }
        stmts.push((cur, start, (usize::MAX, usize::MAX)));
        let pos = (row, col);
        let nonempty: Vec<&(String, (usize, usize), (usize, usize))> = stmts.iter().filter(|s| !s.0.trim().is_empty()).collect();
        nonempty
            .iter()
            .find(|s| pos >= s.1 && pos <= s.2)
            .or_else(|| nonempty.iter().rev().find(|s| s.1 <= pos))
            .or(nonempty.first())
            .map(|s| s.0.trim().to_string())
            .unwrap_or_default()
    }

    fn run_sql(&mut self) {
        let text = self.statement_at_cursor();
        if text.is_empty() {
            self.sql.status = Some(("nothing to run".into(), true));
            return;
        }
        self.sql.status = Some(("running… (Esc or C-c cancels)".into(), false));
        self.remember(&text);
        self.db.send(Req::Sql { text, write: self.sql.write, export_dir: self.sql.export_dir.clone() });
    }

    fn input_key(&mut self, k: KeyEvent) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let buf = match &mut self.input {
            Input::Filter(b) | Input::Command(b) | Input::Export(b) => b,
            Input::None => return,
        };
        let mut changed = false;
        match k.code {
            KeyCode::Esc => {
                // The filter stays as typed; commands and exports are dropped.
                self.input = Input::None;
                self.input_error = None;
                return;
            }
            KeyCode::Enter => {
                let text = buf.clone();
                let kind = std::mem::replace(&mut self.input, Input::None);
                self.input_error = None;
                match kind {
                    Input::Filter(_) => {}
                    Input::Command(_) => self.command(&text),
                    Input::Export(_) => self.export(&text),
                    Input::None => {}
                }
                return;
            }
            KeyCode::Backspace => {
                buf.pop();
                changed = true;
            }
            KeyCode::Char('u') if ctrl => {
                buf.clear();
                changed = true;
            }
            KeyCode::Char('w') if ctrl => {
                let t = buf.trim_end().to_string();
                let cut = t.rfind(' ').map(|i| i + 1).unwrap_or(0);
                buf.truncate(cut);
                changed = true;
            }
            KeyCode::Char(c) if !ctrl => {
                if buf.chars().count() < 500 {
                    buf.push(c);
                    changed = true;
                }
            }
            _ => {}
        }
        if changed {
            if let Input::Filter(text) = &self.input {
                let text = text.clone();
                self.apply_filter(&text);
            }
        }
    }

    /// Filter as the user types: a filter that does not parse shows its error and the rows stay.
    fn apply_filter(&mut self, text: &str) {
        if self.board_visible() {
            if self.board.set_filter(text) {
                self.reload_board();
            }
            self.input_error = self.board.filter_error.clone();
            return;
        }
        let Some(id) = self.focused_table_id() else { return };
        let want = self.tables.get_mut(id).and_then(|t| t.set_filter(text, now()));
        self.input_error = self.tables.get(id).and_then(|t| t.filter_error.as_ref()).map(|e| e.to_string());
        self.send_page(id, want);
    }

    fn overlay_key(&mut self, k: KeyEvent) {
        let action = self.keymap.action(&k);
        let ncols = self.focused_table_id().and_then(|id| self.tables.get(id)).map(|t| t.view.columns.len()).unwrap_or(0);
        match &mut self.overlay {
            Overlay::Help { filter, scroll } => match k.code {
                KeyCode::Esc | KeyCode::F(1) => self.overlay = Overlay::None,
                KeyCode::Char('?') if filter.is_empty() => self.overlay = Overlay::None,
                KeyCode::Down => *scroll += 1,
                KeyCode::Up => *scroll = scroll.saturating_sub(1),
                KeyCode::PageDown => *scroll += 10,
                KeyCode::PageUp => *scroll = scroll.saturating_sub(10),
                KeyCode::Backspace => {
                    filter.pop();
                    *scroll = 0;
                }
                KeyCode::Char(c) => {
                    filter.push(c);
                    *scroll = 0;
                }
                _ => {}
            },
            Overlay::Detail { scroll, lines, .. } => match (k.code, action) {
                (KeyCode::Esc, _) | (_, Some(Action::Quit)) | (_, Some(Action::Back)) => self.overlay = Overlay::None,
                (_, Some(Action::Down)) => *scroll = (*scroll + 1).min(lines.len().saturating_sub(1)),
                (_, Some(Action::Up)) => *scroll = scroll.saturating_sub(1),
                (_, Some(Action::PageDown)) | (_, Some(Action::HalfDown)) => *scroll = (*scroll + 10).min(lines.len().saturating_sub(1)),
                (_, Some(Action::PageUp)) | (_, Some(Action::HalfUp)) => *scroll = scroll.saturating_sub(10),
                (_, Some(Action::Top)) => *scroll = 0,
                (_, Some(Action::Bottom)) => *scroll = lines.len().saturating_sub(1),
                (_, Some(Action::Copy)) => {
                    self.copy = Some(lines.join("\n"));
                    self.message = Some(("detail copied to the clipboard (OSC 52)".into(), false));
                }
                _ => {}
            },
            Overlay::Queues { items, cursor } => match (k.code, action) {
                (KeyCode::Esc, _) | (_, Some(Action::Back)) | (_, Some(Action::Quit)) => self.overlay = Overlay::None,
                (_, Some(Action::Down)) => *cursor = (*cursor + 1).min(items.len().saturating_sub(1)),
                (_, Some(Action::Up)) => *cursor = cursor.saturating_sub(1),
                (KeyCode::Enter, _) => {
                    let chosen = items.get(*cursor).cloned();
                    self.overlay = Overlay::None;
                    if let Some((name, is_queue, _)) = chosen {
                        if is_queue {
                            self.use_queue(&name);
                        } else {
                            self.db.send(Req::LoadQuery { name });
                        }
                    }
                }
                _ => {}
            },
            Overlay::Schema { items, cursor, filter } => {
                let shown: Vec<usize> = items
                    .iter()
                    .enumerate()
                    .filter(|(_, (n, d))| filter.is_empty() || n.to_lowercase().contains(filter.as_str()) || d.to_lowercase().contains(filter.as_str()))
                    .map(|(i, _)| i)
                    .collect();
                match k.code {
                    KeyCode::Esc => self.overlay = Overlay::None,
                    KeyCode::Down => *cursor = (*cursor + 1).min(shown.len().saturating_sub(1)),
                    KeyCode::Up => *cursor = cursor.saturating_sub(1),
                    KeyCode::PageDown => *cursor = (*cursor + 10).min(shown.len().saturating_sub(1)),
                    KeyCode::PageUp => *cursor = cursor.saturating_sub(10),
                    KeyCode::Backspace => {
                        filter.pop();
                        *cursor = 0;
                    }
                    KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                        filter.push(c.to_ascii_lowercase());
                        *cursor = 0;
                    }
                    KeyCode::Enter => {
                        if let Some(&i) = shown.get(*cursor) {
                            let name = items[i].0.trim().to_string();
                            self.sql.editor.insert_str(&name);
                            self.sql.editing = true;
                            self.tab = 6;
                        }
                        self.overlay = Overlay::None;
                    }
                    _ => {}
                }
            }
            Overlay::Columns { cursor } => {
                let n = ncols;
                match (k.code, action) {
                    (KeyCode::Esc, _) | (KeyCode::Enter, _) | (_, Some(Action::Columns)) => self.overlay = Overlay::None,
                    (_, Some(Action::Down)) => *cursor = (*cursor + 1).min(n.saturating_sub(1)),
                    (_, Some(Action::Up)) => *cursor = cursor.saturating_sub(1),
                    (KeyCode::Char(' '), _) => {
                        let c = *cursor;
                        let id = self.focused_table_id();
                        let mut reload = None;
                        if let Some(t) = id.and_then(|id| self.tables.get_mut(id)) {
                            t.toggle_column(c);
                            let shown = t.view.columns.get(c).is_some_and(|col| col.visible && !col.always);
                            // Pages leave hidden columns out: fill the one just shown (a page already on
                            // its way would come without it: start over instead).
                            if shown && t.in_flight {
                                reload = id;
                            } else if shown && !t.rows.is_empty() {
                                let req = Req::Cells {
                                    table: id.unwrap_or_default(),
                                    generation: t.generation,
                                    view: t.view.clone(),
                                    keys: t.rows.iter().map(|r| r.key).collect(),
                                };
                                self.db.send(req);
                            }
                        }
                        if let Some(id) = reload {
                            self.reload(id);
                        }
                    }
                    _ => {}
                }
            }
            Overlay::Scope(ed) => {
                let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
                match k.code {
                    KeyCode::Esc => self.overlay = Overlay::None,
                    KeyCode::Tab | KeyCode::Down => ed.field = (ed.field + 1) % 3,
                    KeyCode::BackTab | KeyCode::Up => ed.field = (ed.field + 2) % 3,
                    KeyCode::Char('s') if ctrl => {
                        let name = ed.name.lines().join(" ").trim().to_string();
                        let filter = ed.filter.lines().join(" ").trim().to_string();
                        let desc = ed.description.lines().join(" ").trim().to_string();
                        match compile_scope(&filter, now()) {
                            Err(e) => ed.error = Some(format!("filter {e}")),
                            Ok(_) if name.is_empty() => ed.error = Some("a scope needs a name".into()),
                            Ok(_) => {
                                self.db.send(Req::SaveScope { name, filter, description: desc });
                                self.overlay = Overlay::None;
                            }
                        }
                    }
                    KeyCode::Enter => {}
                    _ => {
                        let ta = match ed.field {
                            0 => &mut ed.name,
                            1 => &mut ed.filter,
                            _ => &mut ed.description,
                        };
                        ta.input(k);
                        if ed.field == 1 {
                            let f = ed.filter.lines().join(" ");
                            ed.error = compile_scope(&f, now()).err().map(|e| format!("filter {e}"));
                        }
                    }
                }
            }
            Overlay::None => {}
        }
    }

    fn open_scope_editor(&mut self, name: &str, filter: &str, desc: &str) {
        if self.read_only {
            self.message = Some(("read-only: scopes cannot be changed".into(), true));
            return;
        }
        let mut filter_area = one_line_area(filter);
        filter_area.set_placeholder_text("e.g. bu=payments and env=prod, internet=true, tag=pci");
        self.overlay = Overlay::Scope(Box::new(ScopeEditor {
            name: one_line_area(name),
            filter: filter_area,
            description: one_line_area(desc),
            field: if name.is_empty() { 0 } else { 1 },
            error: None,
        }));
    }

    fn switch_tab(&mut self, t: usize) {
        self.tab = t.min(TABS.len() - 1);
        self.ensure_loaded();
    }

    fn move_focused(&mut self, f: impl FnOnce(&mut TableView) -> Option<PageWant>) {
        let Some(id) = self.focused_table_id() else { return };
        let w = self.tables.get_mut(id).and_then(f);
        self.send_page(id, w);
        if id == "queue" {
            self.request_detail();
        }
    }

    pub fn act(&mut self, a: Action) {
        if self.board_visible() && self.board_act(a) {
            return;
        }
        if self.tab == 0 && !self.standup_table && self.standup_act(a) {
            return;
        }
        match a {
            Action::Quit => {
                if !self.jobs.is_empty() && !self.quit_armed {
                    self.quit_armed = true;
                    self.message = Some(("a job is running: q again quits and the import rolls back".into(), true));
                } else {
                    self.quit = true;
                }
            }
            Action::ForceQuit => self.quit = true,
            Action::Suspend => self.suspend = true,
            Action::Help => self.overlay = Overlay::Help { filter: String::new(), scroll: 0 },
            Action::Command => self.input = Input::Command(String::new()),
            Action::Filter => {
                if let Some(t) = self.focused() {
                    let f = t.filter_text.clone();
                    self.input = Input::Filter(f);
                }
            }
            Action::Back => {
                self.message = None;
                self.quit_armed = false;
            }
            Action::Tab(n) => self.switch_tab(n),
            Action::NextTab => self.switch_tab((self.tab + 1) % TABS.len()),
            Action::PrevTab => self.switch_tab((self.tab + TABS.len() - 1) % TABS.len()),
            Action::NextPane | Action::PrevPane => {
                if self.tab == 0 {
                    self.standup_table = !self.standup_table;
                } else if self.tab == 2 {
                    self.discovery = if a == Action::NextPane { (self.discovery + 1) % 3 } else { (self.discovery + 2) % 3 };
                    self.ensure_loaded();
                } else if self.tab == 3 {
                    self.prio_view = 1 - self.prio_view;
                    self.ensure_loaded();
                } else if self.tab == 4 {
                    self.val_view = if a == Action::NextPane { (self.val_view + 1) % 3 } else { (self.val_view + 2) % 3 };
                    self.ensure_loaded();
                } else if self.tab == 5 {
                    self.mob_view = if a == Action::NextPane { (self.mob_view + 1) % 4 } else { (self.mob_view + 3) % 4 };
                    self.ensure_loaded();
                } else if self.tab == 6 {
                    self.sql.editing = !self.sql.editing;
                }
            }
            Action::Up => self.move_focused(|t| t.move_by(-1)),
            Action::Down => self.move_focused(|t| t.move_by(1)),
            Action::PageUp => self.move_focused(|t| {
                let h = t.height as i64;
                t.move_by(-h)
            }),
            Action::PageDown => self.move_focused(|t| {
                let h = t.height as i64;
                t.move_by(h)
            }),
            Action::HalfUp => self.move_focused(|t| {
                let h = (t.height / 2).max(1) as i64;
                t.move_by(-h)
            }),
            Action::HalfDown => self.move_focused(|t| {
                let h = (t.height / 2).max(1) as i64;
                t.move_by(h)
            }),
            Action::Top => self.move_focused(|t| t.home()),
            Action::Bottom => self.move_focused(|t| t.end()),
            Action::Left => {
                if let Some(t) = self.focused() {
                    t.col_cursor = t.col_cursor.saturating_sub(1);
                }
            }
            Action::Right => {
                if let Some(t) = self.focused() {
                    let n = t.visible_columns().len();
                    t.col_cursor = (t.col_cursor + 1).min(n.saturating_sub(1));
                }
            }
            Action::SortNext => self.move_focused(|t| Some(t.sort_focused())),
            Action::SortReverse => self.move_focused(|t| Some(t.reverse())),
            Action::Columns => {
                if self.focused_table_id().is_some() {
                    self.overlay = Overlay::Columns { cursor: 0 };
                }
            }
            Action::Mark => {
                if let Some(t) = self.focused() {
                    t.toggle_mark();
                }
                self.move_focused(|t| t.move_by(1));
            }
            Action::RangeMark => {
                if let Some(t) = self.focused() {
                    t.range_mark();
                }
            }
            Action::ClearMarks => {
                if let Some(t) = self.focused() {
                    t.marks.clear();
                    t.mark_anchor = None;
                }
            }
            Action::Copy => {
                if let Some((col, v)) = self.focused().and_then(|t| t.selected_cell()) {
                    self.message = Some((format!("copied {col} ({} chars) over OSC 52", v.chars().count()), false));
                    self.copy = Some(v);
                }
            }
            Action::Export => {
                if let Some(id) = self.focused_table_id() {
                    let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
                    self.input = Input::Export(format!("ctem-{id}-{stamp}.csv"));
                }
            }
            Action::Refresh => {
                self.db.send(Req::Scopes);
                self.refresh_all();
                self.message = Some(("reloaded from the store".into(), false));
            }
            Action::Open => self.open(),
            Action::New => {
                if self.tab == 1 {
                    self.open_scope_editor("", "", "");
                }
            }
            Action::Edit => {
                if self.tab == 1 {
                    if let Some(s) = self.selected_scope() {
                        self.open_scope_editor(&s.name, &s.filter, &s.description);
                    }
                } else if self.tab == 6 {
                    self.sql.editing = true;
                }
            }
            Action::Delete => {
                if self.tab == 1 {
                    if let Some(s) = self.selected_scope() {
                        if self.read_only {
                            self.message = Some(("read-only: scopes cannot be deleted".into(), true));
                        } else if self.delete_armed.as_deref() == Some(s.name.as_str()) {
                            self.delete_armed = None;
                            if self.scope.as_ref().is_some_and(|x| x.0 == s.name) {
                                self.set_scope(None);
                            }
                            self.db.send(Req::DeleteScope { name: s.name });
                        } else {
                            self.message = Some((format!("delete scope '{}'? press d again to confirm", s.name), true));
                            self.delete_armed = Some(s.name);
                        }
                    }
                }
            }
            Action::Activate => {
                if self.tab == 1 {
                    self.activate_selected_scope();
                }
            }
            Action::Run => {
                if self.tab == 6 {
                    self.run_sql();
                }
            }
            Action::HandOff => self.hand_off(),
            Action::Queues => self.db.send(Req::SavedQueries),
            Action::Except if self.tab == 3 && self.prio_view == 0 => {
                if self.read_only {
                    self.message = Some(("read-only: exceptions cannot be granted".into(), true));
                } else {
                    self.input = Input::Command("except risk_accepted 90d ".into());
                }
            }
            Action::MoveForward | Action::MoveBack | Action::Assign | Action::Except => {
                if self.tab == 5 {
                    self.message = Some(("on the board (Tab back to it): cards move, get assigned and excepted there".into(), true));
                }
            }
        }
    }

    /// Prioritization -> Mobilization: the marked findings (or the selected one), or the selected fix
    /// group, become work items, one per owner.
    fn hand_off(&mut self) {
        if self.tab != 3 {
            self.message = Some(("hand-off works from Prioritization: mark findings in the queue or pick a fix group".into(), true));
            return;
        }
        if self.read_only {
            self.message = Some(("read-only: work items cannot be created (open without --read-only)".into(), true));
            return;
        }
        let selection = if self.prio_view == 1 {
            let Some(row) = self.tables.get("fix_groups").and_then(|t| t.selected()) else { return };
            crate::store::work::Selection::Fix { kind: row.cells[5].clone(), fix: row.cells[8].clone() }
        } else {
            let Some(t) = self.tables.get("queue") else { return };
            let ids: Vec<i64> = if t.marks.is_empty() { t.selected().map(|r| vec![r.key]).unwrap_or_default() } else { t.marks.iter().copied().collect() };
            if ids.is_empty() {
                return;
            }
            crate::store::work::Selection::Findings(ids)
        };
        let scope = self.scope.as_ref().map(|s| s.1.clone());
        self.db.send(Req::HandOff { selection, scope });
        self.message = Some(("handing over to Mobilization…".into(), false));
    }

    fn selected_scope(&self) -> Option<crate::store::scopes::Scope> {
        let key = self.tables.get("scopes")?.selected()?.key;
        self.scopes.iter().find(|s| s.scope.id == key).map(|s| s.scope.clone())
    }

    fn activate_selected_scope(&mut self) {
        if let Some(s) = self.selected_scope() {
            let name = s.name.clone();
            self.command(&format!("scope {name}"));
        }
    }

    fn open(&mut self) {
        let Some(id) = self.focused_table_id() else {
            if self.tab == 6 {
                self.sql.editing = true;
            }
            return;
        };
        let Some(key) = self.tables.get(id).and_then(|t| t.selected()).map(|r| r.key) else { return };
        match id {
            "findings" | "queue" | "standup" | "verification" => {
                self.db.send(Req::Explain { finding_id: key, panel: false });
            }
            "assets" => self.db.send(Req::AssetDetail { asset_id: key }),
            "imports" => self.db.send(Req::ImportDetail { import_id: key }),
            "scopes" => self.activate_selected_scope(),
            "fix_groups" => {
                // Drill down: the queue narrowed to the findings this fix closes.
                let Some(row) = self.tables.get("fix_groups").and_then(|t| t.selected()) else { return };
                let (fix, key) = (row.cells[6].clone(), row.cells[8].clone());
                self.prio_view = 0;
                self.apply_filter(&format!("fix=\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\"")));
                self.message = Some((format!("findings closed by: {fix} (Tab: back to the fix groups)"), false));
            }
            "matrix" => {
                let Some(t) = self.tables.get("matrix") else { return };
                let technique = t.selected().map(|r| r.cells[1].clone()).unwrap_or_default();
                if technique.is_empty() {
                    return;
                }
                // On a control-kind cell: the exposures on assets that kind of control covers.
                let col = t.visible_columns().get(t.col_cursor).and_then(|&ci| t.view.columns.get(ci)).map(|c| c.name.to_string()).unwrap_or_default();
                let kind = views::MATRIX_KINDS.iter().find(|(c, _)| *c == col).map(|(_, k)| *k);
                self.tab = 3;
                self.prio_view = 0;
                match kind {
                    Some(k) => {
                        self.apply_filter(&format!("technique={technique} and control_kind={k}"));
                        self.message = Some((format!("open findings that expose {technique} on assets a healthy {k} control covers"), false));
                    }
                    None => {
                        self.apply_filter(&format!("technique={technique}"));
                        self.message = Some((format!("open findings that expose {technique}"), false));
                    }
                }
            }
            "work_items" => {
                self.tab = 3;
                self.prio_view = 0;
                self.apply_filter(&format!("work_item={key}"));
                self.message = Some((format!("findings of work item {key}"), false));
            }
            "owners" => {
                let owner = self.tables.get("owners").and_then(|t| t.selected()).map(|r| r.cells[0].clone()).unwrap_or_default();
                self.tab = 3;
                let f = if owner == "(no owner)" { "not owner~\".\"".to_string() } else { format!("owner=\"{}\"", owner.replace('"', "\\\"")) };
                self.apply_filter(&f);
                self.message = Some((format!("queue of {owner}"), false));
            }
            "sql" => {
                if let Some((col, v)) = self.tables.get("sql").and_then(|t| t.selected_cell()) {
                    self.overlay = Overlay::Detail { title: col, lines: v.lines().map(str::to_string).collect(), scroll: 0 };
                }
            }
            _ => {}
        }
    }

    fn export(&mut self, path: &str) {
        let path = path.trim();
        if path.is_empty() {
            return;
        }
        let Some(t) = self.focused_table_id().and_then(|id| self.tables.get(id)) else { return };
        let json = path.ends_with(".json") || path.ends_with(".jsonl");
        self.db.send(Req::Export {
            view: t.view.clone(),
            filter: t.filter.clone(),
            scope: t.scope.clone(),
            sort_col: t.sort_col,
            desc: t.desc,
            path: PathBuf::from(path),
            json,
        });
        self.message = Some((format!("exporting to {path}…"), false));
    }

    /// `:` commands: every action has one, so nothing depends on a key the terminal may not send.
    pub fn command(&mut self, line: &str) {
        let line = line.trim();
        let (cmd, rest) = line.split_once(' ').map(|(a, b)| (a, b.trim())).unwrap_or((line, ""));
        match cmd {
            "" => {}
            "q" | "quit" | "q!" => self.quit = true,
            "help" | "h" => self.overlay = Overlay::Help { filter: rest.to_string(), scroll: 0 },
            "theme" => {
                let src = ThemeSource { user_dir: self.theme_dir.as_deref() };
                if rest.is_empty() {
                    self.message = Some((format!("themes: {} (now {})", src.names().join(", "), self.theme.name), false));
                } else if !src.names().iter().any(|n| n == rest) {
                    self.message = Some((format!("no theme '{rest}' (themes: {})", src.names().join(", ")), true));
                } else {
                    let mut w = Vec::new();
                    self.theme = src.load(rest, &mut w);
                    self.message = Some((w.first().cloned().unwrap_or_else(|| format!("theme {rest}")), !w.is_empty()));
                }
            }
            "scope" => {
                let (sub, arg) = rest.split_once(' ').map(|(a, b)| (a, b.trim())).unwrap_or((rest, ""));
                match sub {
                    "" => {
                        let names: Vec<String> = self.scopes.iter().map(|s| s.scope.name.clone()).collect();
                        let now = self.scope.as_ref().map(|s| s.0.as_str()).unwrap_or("all");
                        self.message = Some((format!("scope: {now}; saved: {}", if names.is_empty() { "none".into() } else { names.join(", ") }), false));
                    }
                    "all" | "none" | "off" => {
                        self.set_scope(None);
                        self.message = Some(("scope: all assets".into(), false));
                    }
                    "new" => self.open_scope_editor(arg, "", ""),
                    "delete" => {
                        if self.read_only {
                            self.message = Some(("read-only: scopes cannot be deleted".into(), true));
                        } else {
                            self.db.send(Req::DeleteScope { name: arg.to_string() });
                        }
                    }
                    name => {
                        let name = if arg.is_empty() { name.to_string() } else { format!("{name} {arg}") };
                        match self.scopes.iter().find(|s| s.scope.name.eq_ignore_ascii_case(&name)) {
                            Some(s) => match compile_scope(&s.scope.filter, now()) {
                                Ok(c) => {
                                    let n = s.scope.name.clone();
                                    self.set_scope(Some((n.clone(), c)));
                                    self.message = Some((format!("scope: {n}"), false));
                                }
                                Err(e) => self.message = Some((format!("scope '{name}' filter {e}"), true)),
                            },
                            None => self.message = Some((format!("no scope named '{name}' (:scope new {name} creates it)"), true)),
                        }
                    }
                }
            }
            "import" => {
                if self.read_only {
                    self.message = Some(("read-only: imports are refused (open without --read-only)".into(), true));
                } else if rest.is_empty() {
                    self.message = Some(("usage: :import PATH [PATH...]".into(), true));
                } else {
                    let paths = rest.split_whitespace().map(PathBuf::from).collect();
                    self.db.send(Req::Import { paths });
                    self.message = Some(("import started".into(), false));
                }
            }
            "export" => {
                let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
                let id = self.focused_table_id().unwrap_or("view");
                let path = match rest {
                    "" | "csv" => format!("ctem-{id}-{stamp}.csv"),
                    "json" => format!("ctem-{id}-{stamp}.jsonl"),
                    p => p.to_string(),
                };
                self.export(&path);
            }
            "filter" => {
                if self.focused_table_id().is_some() {
                    self.apply_filter(rest);
                    if let Some(e) = self.input_error.take() {
                        self.message = Some((format!("filter {e}"), true));
                    }
                }
            }
            "sort" => {
                let (col, dir) = rest.split_once(' ').unwrap_or((rest, ""));
                let Some(id) = self.focused_table_id() else { return };
                let want = self.tables.get_mut(id).and_then(|t| {
                    let i = t.view.columns.iter().position(|c| c.name.eq_ignore_ascii_case(col))?;
                    t.sort_col = i;
                    t.desc = dir.eq_ignore_ascii_case("desc");
                    Some(t.reload())
                });
                if want.is_none() {
                    self.message = Some((format!("no column '{col}' here"), true));
                }
                self.send_page(id, want);
            }
            "columns" | "cols" => self.act(Action::Columns),
            "run" => {
                self.tab = 6;
                self.run_sql();
            }
            "schema" => {
                self.tab = 6;
                self.db.send(Req::Schema);
            }
            "save" if rest.is_empty() => self.message = Some(("usage: :save NAME (the statement under the cursor)".into(), true)),
            "save" => {
                let sql = self.statement_at_cursor();
                self.db.send(Req::SaveQuery { name: rest.to_string(), sql, export_dir: self.sql.export_dir.clone() });
            }
            "load" => self.db.send(Req::LoadQuery { name: rest.to_string() }),
            "queues" => self.db.send(Req::SavedQueries),
            "held" if self.read_only => self.message = Some(("read-only: the stand-up cannot be noted as held".into(), true)),
            "held" => {
                // The stand-up on screen was held: the next one starts from the data it covered.
                let scope = self.scope.as_ref().map(|s| s.1.clone());
                self.db.send(Req::Standup { scope, since: self.standup_since.clone(), record: true });
                let until = self.standup.until.map(|u| u.format("%m-%d %H:%M").to_string()).unwrap_or_default();
                self.message = Some((format!("stand-up noted as held: the next one shows what changed after the scans up to {until}"), false));
            }
            "since" => {
                let until = self.standup.until.unwrap_or_else(now);
                match rest {
                    "" | "default" | "last" => self.standup_since = None,
                    v => match crate::report::parse_since(v, until) {
                        Ok(_) => self.standup_since = Some(v.to_string()),
                        Err(e) => {
                            self.message = Some((format!("since: {e}"), true));
                            return;
                        }
                    },
                }
                self.tab = 0;
                let scope = self.scope.as_ref().map(|s| s.1.clone());
                self.db.send(Req::Standup { scope, since: self.standup_since.clone(), record: false });
                self.message = Some((
                    match &self.standup_since {
                        Some(v) => format!("stand-up window: {v} up to the latest scan"),
                        None => "stand-up window: since the last stand-up (24 h when there was none)".into(),
                    },
                    false,
                ));
            }
            "queue" if rest.is_empty() => self.db.send(Req::SavedQueries),
            "queue" => {
                // Checked against the saved queries first: an unknown name gets a clear answer.
                self.pending_queue = Some(rest.to_string());
                self.db.send(Req::SavedQueries);
            }
            "sql" => match rest {
                "write" if self.read_only => self.message = Some(("read-only: writes cannot be allowed (open without --read-only)".into(), true)),
                "write" => {
                    self.tab = 6;
                    self.sql.write_pending = true;
                    self.sql.status = Some(("allow statements that change the store for this session? y/n".into(), true));
                }
                "read" => {
                    self.sql.write = false;
                    self.sql.status = Some(("writes off: only queries run".into(), false));
                }
                _ => self.message = Some(("usage: :sql write | :sql read".into(), true)),
            },
            "refresh" | "reload" => self.act(Action::Refresh),
            "tab" => {
                let want = rest.to_ascii_lowercase().replace('-', "");
                match TABS.iter().position(|n| n.to_ascii_lowercase().replace('-', "").starts_with(&want) && !want.is_empty()) {
                    Some(i) => self.switch_tab(i),
                    None => self.message = Some((format!("no tab '{rest}'"), true)),
                }
            }
            other => {
                if self.board_command(other, rest) {
                } else if let Some(a) = Action::all().into_iter().find(|a| a.name() == other) {
                    self.act(a);
                } else {
                    self.message = Some((format!("unknown command ':{other}' (:help lists keys and commands)"), true));
                }
            }
        }
    }
}

pub const COMMANDS: &[(&str, &str)] = &[
    (":scope NAME | all", "narrow every pane to a saved scope"),
    (":scope new NAME", "create a scope (asset filter)"),
    (":scope delete NAME", "delete a scope"),
    (":import PATH...", "import reports in the background"),
    (":export [csv|json|PATH]", "export the filtered rows of the table"),
    (":filter EXPR", "filter the focused table"),
    (":sort COLUMN [asc|desc]", "sort the focused table"),
    (":theme [NAME]", "switch theme (no name: list)"),
    (":tab NAME", "jump to a tab"),
    (":run", "run the SQL statement under the cursor"),
    (":save NAME | :load NAME", "save the statement under the cursor as a named query (queues: saved=NAME) / load one"),
    (":held", "note the stand-up as held: the next one (here or `ctem report standup`) starts from the data it covered"),
    (":since 24h|3d|2w|DATE", "the stand-up window, counted back from the latest scan (:since alone: since the last stand-up, or 24h)"),
    (":queue [NAME]", "narrow the findings to a saved query's rows (no name: pick from the saved queues, also Q)"),
    (":schema", "browse the store's tables, views and columns (F2 in the editor); Enter inserts a name"),
    (":sql write | read", "allow (after a confirmation) or stop statements that change the store"),
    (":move STATUS", "board: move the card (or the marked cards) to a status"),
    (":sync [status]", "sync tickets with Jira / ServiceNow in the background; status: outbox, conflicts, failures"),
    (":assign NAME", "board: assign the card (or the marked cards); no name clears"),
    (":except KIND EXPIRY APPROVER WHY", "board card or marked queue findings: risk_accepted|false_positive, 90d|YYYY-MM-DD|-, approver, why"),
    (":refresh", "reload from the store"),
    (":q", "quit"),
];
