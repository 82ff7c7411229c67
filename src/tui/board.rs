//! The remediation board: work items as cards in columns by status, with owner, due date and SLA colour.
//! Keys move the cursor between columns and cards, move cards along the workflow (bulk moves of marked
//! cards ask first), assign, raise an exception, filter by team, owner or priority, and open a card for
//! its findings, fix plan and history. The store checks every move against the card's findings.

use crate::query::{self, Compiled};
use crate::store::views::{param_value, scope_cond, work_fields};
use crate::store::work::STATUSES;
use crate::tui::app::App;
use crate::tui::db::Req;
use crate::tui::keymap::Action;
use crate::tui::theme::Theme;
use chrono::NaiveDate;
use duckdb::Connection;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;
use std::collections::BTreeSet;
use unicode_width::UnicodeWidthStr;

/// Cards fetched per column (the header shows the column's full count).
const PER_COLUMN: usize = 200;
/// Lines per card, and the blank between cards.
const CARD: u16 = 3;

#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    pub id: i64,
    pub title: String,
    pub priority: Option<String>,
    pub team: Option<String>,
    pub assignee: Option<String>,
    pub due: Option<NaiveDate>,
    pub days_left: Option<i64>,
    pub open: i64,
    pub findings: i64,
    pub kev: bool,
    /// Tracker tickets (`SEC-12 INC0010001`) and whether the last sync of one failed.
    pub tickets: Option<String>,
    pub sync_error: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub status: &'static str,
    pub total: i64,
    /// Cards of the column past their SLA (all of them, not only those fetched).
    pub breached: i64,
    pub cards: Vec<Card>,
}

/// SLA state of a card in a column.
pub fn sla(status: &str, c: &Card) -> &'static str {
    if matches!(status, "fixed" | "verified" | "risk_accepted" | "false_positive") {
        return "none";
    }
    match c.days_left {
        None => "none",
        Some(d) if d < 0 => "breached",
        Some(d) if d <= 3 => "due_soon",
        _ => "ok",
    }
}

/// A bulk move waiting for its confirmation.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub ids: Vec<i64>,
    pub to: &'static str,
}

pub struct Board {
    pub cols: Vec<Column>,
    pub col: usize,
    pub row: Vec<usize>,
    pub marks: BTreeSet<i64>,
    pub filter_text: String,
    pub filter: Compiled,
    pub filter_error: Option<String>,
    pub loaded: bool,
    pub in_flight: bool,
    pub pending: Option<Pending>,
    /// The day SLAs are counted to (today; tests pin it).
    pub today: NaiveDate,
    /// First visible column, and first visible card per column.
    pub left: usize,
    pub top: Vec<usize>,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            cols: STATUSES.iter().map(|s| Column { status: s, total: 0, breached: 0, cards: Vec::new() }).collect(),
            col: 0,
            row: vec![0; STATUSES.len()],
            marks: BTreeSet::new(),
            filter_text: String::new(),
            filter: Compiled { sql: "true".into(), params: Vec::new() },
            filter_error: None,
            loaded: false,
            in_flight: false,
            pending: None,
            today: chrono::Utc::now().date_naive(),
            left: 0,
            top: vec![0; STATUSES.len()],
        }
    }
}

impl Board {
    pub fn selected(&self) -> Option<&Card> {
        self.cols.get(self.col)?.cards.get(self.row[self.col])
    }

    /// Marked cards, else the selected one.
    pub fn targets(&self) -> Vec<i64> {
        if self.marks.is_empty() {
            self.selected().map(|c| vec![c.id]).unwrap_or_default()
        } else {
            self.marks.iter().copied().collect()
        }
    }

    pub fn set_filter(&mut self, text: &str) -> bool {
        match query::compile(text, &work_fields(), &["title", "team", "assignee"], chrono::Utc::now().naive_utc()) {
            Ok(c) => {
                self.filter_text = text.to_string();
                self.filter = c;
                self.filter_error = None;
                true
            }
            Err(e) => {
                self.filter_text = text.to_string();
                self.filter_error = Some(e.to_string());
                false
            }
        }
    }

    pub fn receive(&mut self, cols: Vec<Column>) {
        self.cols = cols;
        self.loaded = true;
        self.in_flight = false;
        for (i, c) in self.cols.iter().enumerate() {
            self.row[i] = self.row[i].min(c.cards.len().saturating_sub(1));
        }
        let present: BTreeSet<i64> = self.cols.iter().flat_map(|c| c.cards.iter().map(|k| k.id)).collect();
        self.marks.retain(|m| present.contains(m));
    }
}

/// The board's columns from the store.
pub fn fetch(c: &Connection, filter: &Compiled, scope: Option<&Compiled>, today: NaiveDate) -> Result<Vec<Column>, duckdb::Error> {
    let mut params: Vec<duckdb::types::Value> = filter.params.iter().map(param_value).collect();
    let scope_sql = match scope {
        Some(s) => {
            params.extend(s.params.iter().map(param_value));
            format!(" AND work_item_id IN (SELECT wf.work_item_id FROM work_item_findings wf JOIN findings f USING (finding_id) WHERE {})", scope_cond("f.asset_id", s))
        }
        None => String::new(),
    };
    let sql = format!(
        "SELECT status, work_item_id, title, priority, team, assignee, due_date, CAST(due_date - DATE '{today}' AS BIGINT), open_findings, findings, kev,
                (SELECT string_agg(t.ticket_key, ' ' ORDER BY t.system) FROM tickets t WHERE t.work_item_id = work_board.work_item_id AND t.ticket_key IS NOT NULL),
                (SELECT count(*) > 0 FROM tickets t WHERE t.work_item_id = work_board.work_item_id AND t.error IS NOT NULL),
                count(*) OVER (PARTITION BY status),
                count(*) FILTER (WHERE status NOT IN ('fixed', 'verified', 'risk_accepted', 'false_positive') AND due_date < DATE '{today}') OVER (PARTITION BY status)
         FROM work_board WHERE ({}){scope_sql}
         QUALIFY row_number() OVER (PARTITION BY status ORDER BY
                   CASE WHEN status IN ('verified', 'risk_accepted', 'false_positive') THEN -epoch(coalesce(closed_at, updated_at)) END,
                   priority NULLS LAST, due_date NULLS LAST, work_item_id) <= {PER_COLUMN}
         ORDER BY status, CASE WHEN status IN ('verified', 'risk_accepted', 'false_positive') THEN -epoch(coalesce(closed_at, updated_at)) END,
                  priority NULLS LAST, due_date NULLS LAST, work_item_id",
        filter.sql
    );
    let mut st = c.prepare(&sql)?;
    let mut cols: Vec<Column> = STATUSES.iter().map(|s| Column { status: s, total: 0, breached: 0, cards: Vec::new() }).collect();
    let rows = st.query_map(duckdb::params_from_iter(params.iter()), |r| {
        Ok((
            r.get::<_, String>(0)?,
            Card {
                id: r.get(1)?,
                title: r.get(2)?,
                priority: r.get(3)?,
                team: r.get(4)?,
                assignee: r.get(5)?,
                due: r.get(6)?,
                days_left: r.get(7)?,
                open: r.get(8)?,
                findings: r.get(9)?,
                kev: r.get(10)?,
                tickets: r.get(11)?,
                sync_error: r.get(12)?,
            },
            r.get::<_, i64>(13)?,
            r.get::<_, i64>(14)?,
        ))
    })?;
    for r in rows {
        let (status, card, total, breached) = r?;
        if let Some(col) = cols.iter_mut().find(|c| c.status == status) {
            col.total = total;
            col.breached = breached;
            col.cards.push(card);
        }
    }
    Ok(cols)
}

impl App {
    pub fn board_visible(&self) -> bool {
        self.tab == 5 && self.mob_view == 0
    }

    pub fn reload_board(&mut self) {
        let scope = self.scope.as_ref().map(|s| s.1.clone());
        self.board.in_flight = true;
        self.db.send(Req::Board { filter: self.board.filter.clone(), scope, today: self.board.today });
    }

    /// Keys on the board; false when the action is not the board's (the app handles it).
    pub fn board_act(&mut self, a: Action) -> bool {
        let b = &mut self.board;
        let n = b.cols.len();
        match a {
            Action::Left => b.col = (b.col + n - 1) % n,
            Action::Right => b.col = (b.col + 1) % n,
            Action::Up => b.row[b.col] = b.row[b.col].saturating_sub(1),
            Action::Down => b.row[b.col] = (b.row[b.col] + 1).min(b.cols[b.col].cards.len().saturating_sub(1)),
            Action::PageUp | Action::HalfUp => b.row[b.col] = b.row[b.col].saturating_sub(5),
            Action::PageDown | Action::HalfDown => b.row[b.col] = (b.row[b.col] + 5).min(b.cols[b.col].cards.len().saturating_sub(1)),
            Action::Top => b.row[b.col] = 0,
            Action::Bottom => b.row[b.col] = b.cols[b.col].cards.len().saturating_sub(1),
            Action::Mark => {
                if let Some(id) = b.selected().map(|c| c.id) {
                    if !b.marks.remove(&id) {
                        b.marks.insert(id);
                    }
                    b.row[b.col] = (b.row[b.col] + 1).min(b.cols[b.col].cards.len().saturating_sub(1));
                }
            }
            Action::ClearMarks => b.marks.clear(),
            Action::Refresh => self.reload_board(),
            Action::Filter => self.input = crate::tui::app::Input::Filter(self.board.filter_text.clone()),
            Action::Open => {
                if let Some(id) = b.selected().map(|c| c.id) {
                    self.db.send(Req::Card { id });
                }
            }
            Action::MoveForward | Action::MoveBack => {
                let from = b.cols[b.col].status;
                let flow = ["new", "triaged", "assigned", "in_progress", "fixed", "verified"];
                let Some(i) = flow.iter().position(|s| *s == from) else {
                    self.message = Some((format!("{from} cards leave through their exception: revoke it (ctem exception revoke)"), true));
                    return true;
                };
                let to = if a == Action::MoveForward { flow.get(i + 1) } else { i.checked_sub(1).map(|j| &flow[j]) };
                let Some(to) = to else { return true };
                self.move_cards(to);
            }
            Action::Assign => {
                if self.board.targets().is_empty() {
                    return true;
                }
                self.input = crate::tui::app::Input::Command("assign ".into());
            }
            Action::Except => {
                if self.board.selected().is_none() {
                    return true;
                }
                self.input = crate::tui::app::Input::Command("except risk_accepted 90d ".into());
            }
            _ => return false,
        }
        true
    }

    /// The answer to a pending bulk move: Enter or `y` confirms, anything else cancels.
    pub fn board_confirm(&mut self, yes: bool) {
        let Some(p) = self.board.pending.take() else { return };
        if yes {
            self.message = Some((format!("moving {} cards to {}…", p.ids.len(), p.to), false));
            self.db.send(Req::MoveCards { ids: p.ids, to: p.to.to_string() });
        } else {
            self.message = Some(("move cancelled".into(), false));
        }
    }

    /// Move the marked cards (or the selected one) to `to`; more than one card asks first.
    pub fn move_cards(&mut self, to: &str) {
        if self.read_only {
            self.message = Some(("read-only: cards cannot be moved (open without --read-only)".into(), true));
            return;
        }
        let Some(to) = STATUSES.iter().find(|s| **s == to).copied() else {
            self.message = Some((format!("unknown status '{to}' ({})", STATUSES.join(", ")), true));
            return;
        };
        let ids = self.board.targets();
        match ids.len() {
            0 => {}
            1 => self.db.send(Req::MoveCards { ids, to: to.to_string() }),
            n => {
                self.message = Some((format!("move {n} marked cards to {to}? Enter or y confirms, any other key cancels"), false));
                self.board.pending = Some(Pending { ids, to });
            }
        }
    }

    /// `:assign NAME` and `:except KIND EXPIRY APPROVER JUSTIFICATION`.
    pub fn board_command(&mut self, cmd: &str, rest: &str) -> bool {
        match cmd {
            "move" => {
                if self.board_visible() {
                    self.move_cards(rest.trim());
                } else {
                    self.message = Some(("move: on the board (Mobilization)".into(), true));
                }
            }
            "sync" => {
                if rest.trim() == "status" {
                    self.db.send(Req::SyncStatus);
                } else if self.read_only {
                    self.message = Some(("read-only: tickets cannot be pushed (open without --read-only)".into(), true));
                } else {
                    match crate::mobilize::sync_config(&crate::paths::Paths::discover()) {
                        Ok(cfg) if cfg.jira.is_none() && cfg.snow.is_none() => {
                            self.message = Some(("sync: no tracker configured (CTEM_JIRA_URL/USER/TOKEN, CTEM_SNOW_URL/USER/PASSWORD, or [jira]/[servicenow] in config.toml)".into(), true));
                        }
                        Ok(cfg) => {
                            self.db.send(Req::Sync { cfg: Box::new(cfg) });
                            self.message = Some(("sync started".into(), false));
                        }
                        Err(e) => self.message = Some((format!("sync: {e}"), true)),
                    }
                }
            }
            "assign" => {
                let ids = self.board.targets();
                if !self.board_visible() || ids.is_empty() {
                    self.message = Some(("assign: select a card on the board first".into(), true));
                } else if self.read_only {
                    self.message = Some(("read-only: cards cannot be assigned".into(), true));
                } else {
                    self.db.send(Req::Assign { ids, who: rest.trim().to_string() });
                }
            }
            "except" => {
                let mut it = rest.split_whitespace();
                let (kind, expiry, approver) = (it.next().unwrap_or(""), it.next().unwrap_or(""), it.next().unwrap_or(""));
                let justification = it.collect::<Vec<_>>().join(" ");
                // A card on the board, or the marked (else the selected) findings of the queue.
                let target = if self.board_visible() {
                    self.board.selected().map(|c| crate::store::exceptions::Target::WorkItem(c.id))
                } else if self.tab == 3 && self.prio_view == 0 {
                    self.tables.get("queue").and_then(|t| {
                        let mut ids: Vec<i64> = t.marks.iter().copied().collect();
                        if ids.is_empty() {
                            ids.extend(t.selected().map(|r| r.key));
                        }
                        (!ids.is_empty()).then_some(crate::store::exceptions::Target::Findings(ids))
                    })
                } else {
                    None
                };
                let Some(target) = target else {
                    self.message = Some(("except: select a card on the board, or findings in the queue, first".into(), true));
                    return true;
                };
                if approver.is_empty() {
                    self.message = Some(("usage: :except risk_accepted|false_positive 90d|YYYY-MM-DD|- APPROVER JUSTIFICATION".into(), true));
                    return true;
                }
                if self.read_only {
                    self.message = Some(("read-only: exceptions cannot be granted".into(), true));
                    return true;
                }
                self.db.send(Req::Except {
                    target,
                    kind: kind.to_string(),
                    expiry: (expiry != "-").then(|| expiry.to_string()),
                    approver: approver.to_string(),
                    justification,
                });
            }
            _ => return false,
        }
        true
    }
}

fn clip(s: &str, w: usize) -> String {
    if s.width() <= w {
        return s.to_string();
    }
    let mut out = String::new();
    for ch in s.chars() {
        if out.width() + ch.to_string().width() + 1 > w {
            break;
        }
        out.push(ch);
    }
    out.push('…');
    out
}

fn label(status: &str) -> String {
    status.replace('_', " ").to_uppercase()
}

/// Draw the board into `area`.
pub fn draw(f: &mut Frame, app: &mut App, area: Rect) {
    let t: Theme = app.theme.clone();
    let b = &mut app.board;
    let open: i64 = b.cols.iter().filter(|c| !matches!(c.status, "verified" | "risk_accepted" | "false_positive")).map(|c| c.total).sum();
    let breached: i64 = b.cols.iter().map(|c| c.breached).sum();
    let mut title = vec![Span::styled(" Board ", t.get("title_focus")), Span::styled(format!("{open} open · {breached} past SLA "), t.get("dim"))];
    if !b.filter_text.is_empty() {
        title.push(Span::styled(format!("· /{} ", b.filter_text), t.get("key")));
    }
    if !b.marks.is_empty() {
        title.push(Span::styled(format!("· {} marked ", b.marks.len()), t.get("mark")));
    }
    let block = Block::default().borders(Borders::ALL).border_style(t.get("border_focus")).title(Line::from(title));
    let inner = block.inner(area);
    f.render_widget(block, area);
    if inner.width < 10 || inner.height < 5 {
        return;
    }
    if !b.loaded {
        f.render_widget(Paragraph::new(Span::styled("loading…", t.get("dim"))), inner);
        return;
    }
    let n = b.cols.len();
    let shown = ((inner.width / 24) as usize).clamp(1, n);
    if b.col < b.left {
        b.left = b.col;
    }
    if b.col >= b.left + shown {
        b.left = b.col + 1 - shown;
    }
    b.left = b.left.min(n - shown);
    let w = inner.width / shown as u16;
    let per = ((inner.height.saturating_sub(2)) / (CARD + 1)).max(1) as usize;
    for (i, ci) in (b.left..b.left + shown).enumerate() {
        let x = inner.x + i as u16 * w;
        let cw = if i + 1 == shown { inner.width - i as u16 * w } else { w };
        let col = &b.cols[ci];
        let focus = ci == b.col;
        let mut head = format!("{} {}", label(col.status), col.total);
        if col.total as usize > col.cards.len() {
            head.push_str(&format!(" ({} shown)", col.cards.len()));
        }
        if i == 0 && b.left > 0 {
            head = format!("‹ {head}");
        }
        if i + 1 == shown && b.left + shown < n {
            head = format!("{head} ›");
        }
        let hs = if focus { t.get("title_focus") } else { t.get("column_header") };
        f.render_widget(Paragraph::new(Span::styled(clip(&head, cw as usize - 1), hs)), Rect { x, y: inner.y, width: cw - 1, height: 1 });
        f.render_widget(Paragraph::new(Span::styled("─".repeat(cw as usize - 1), t.get("border"))), Rect { x, y: inner.y + 1, width: cw - 1, height: 1 });
        // Keep the focused card in view.
        let row = b.row[ci];
        if row < b.top[ci] {
            b.top[ci] = row;
        }
        if row >= b.top[ci] + per {
            b.top[ci] = row + 1 - per;
        }
        if col.cards.is_empty() {
            f.render_widget(Paragraph::new(Span::styled("(none)", t.get("dim"))), Rect { x, y: inner.y + 2, width: cw - 1, height: 1 });
        }
        for (k, card) in col.cards.iter().enumerate().skip(b.top[ci]).take(per) {
            let y = inner.y + 2 + ((k - b.top[ci]) as u16) * (CARD + 1);
            let cwid = (cw - 1) as usize;
            let selected = focus && k == row;
            let marked = b.marks.contains(&card.id);
            let state = sla(col.status, card);
            let due = match (card.due, card.days_left, state) {
                (_, Some(d), "breached") => format!("{}d late", -d),
                (_, Some(0), "due_soon") => "due today".into(),
                (_, Some(d), "due_soon") => format!("due {d}d"),
                (Some(d), _, _) => d.format("%m-%d").to_string(),
                _ => String::new(),
            };
            let due_style = match state {
                "breached" => t.get("alert_error"),
                "due_soon" => t.get("alert_warn"),
                _ => t.get("dim"),
            };
            let prio = card.priority.clone().unwrap_or_else(|| "--".into());
            let prio_style = t.get(&format!("prio_{}", prio.to_ascii_lowercase()));
            let mut l1 = vec![
                Span::styled(if marked { "✓" } else { " " }, t.get("mark")),
                Span::styled(format!("#{} ", card.id), t.get("dim")),
                Span::styled(prio, prio_style),
            ];
            if card.kev {
                l1.push(Span::styled(" KEV", t.get("sev_critical")));
            }
            if card.sync_error {
                l1.push(Span::styled(" sync!", t.get("alert_error")));
            } else if let Some(k) = &card.tickets {
                let used: usize = l1.iter().map(|s| s.width()).sum();
                let room = cwid.saturating_sub(used + due.width() + 2);
                if room >= 4 {
                    l1.push(Span::styled(format!(" {}", clip(k, room)), t.get("dim")));
                }
            }
            let used: usize = l1.iter().map(|s| s.width()).sum();
            let pad = cwid.saturating_sub(used + due.width());
            l1.push(Span::raw(" ".repeat(pad)));
            l1.push(Span::styled(clip(&due, cwid.saturating_sub(used)), due_style));
            let l2 = Line::from(Span::styled(format!(" {}", clip(&card.title, cwid - 1)), t.get("text")));
            let who = match (&card.team, &card.assignee) {
                (Some(tm), Some(a)) => format!("{tm} · {a}"),
                (Some(tm), None) => tm.clone(),
                (None, Some(a)) => a.clone(),
                _ => "(no owner)".into(),
            };
            let count = if card.open == card.findings { format!("{} open", card.open) } else { format!("{}/{} open", card.open, card.findings) };
            let room = cwid.saturating_sub(count.width() + 2);
            let who = clip(&who, room);
            let l3 = Line::from(vec![
                Span::styled(format!(" {who}"), t.get("dim")),
                Span::raw(" ".repeat(cwid.saturating_sub(who.width() + 1 + count.width()))),
                Span::styled(count, t.get("dim")),
            ]);
            let mut p = Paragraph::new(vec![Line::from(l1), l2, l3]);
            if selected {
                p = p.style(t.get("selection"));
            } else if marked {
                p = p.style(Style::default().patch(t.get("selection_unfocused")));
            }
            let h = CARD.min(inner.y + inner.height - y);
            f.render_widget(p, Rect { x, y, width: cw - 1, height: h });
        }
    }
}
