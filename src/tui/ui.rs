//! Drawing: reads the state, never changes what the user sees next (only the table heights it measured).

use crate::tui::app::{App, Input, Overlay, COMMANDS, DISCOVERY, TABS};
use crate::tui::keymap::Action;
use crate::tui::table::{fit, group};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;
use unicode_width::UnicodeWidthStr;

pub const MIN_W: u16 = 80;
pub const MIN_H: u16 = 24;

pub fn draw(f: &mut Frame, app: &mut App) {
    let area = f.area();
    if area.width < MIN_W || area.height < MIN_H {
        let msg = format!("terminal too small: {}x{}, ctem needs at least {MIN_W}x{MIN_H}", area.width, area.height);
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }).style(app.theme.get("alert_warn")), area);
        return;
    }
    let [header, tabs, body, status] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1), Constraint::Min(1), Constraint::Length(1)]).areas(area);
    draw_header(f, app, header);
    draw_tabs(f, app, tabs);
    match app.tab {
        0 => draw_standup(f, app, body),
        1 => draw_scoping(f, app, body),
        2 => draw_discovery(f, app, body),
        3 => draw_prioritization(f, app, body),
        4 => draw_validation(f, app, body),
        5 => draw_mobilization(f, app, body),
        _ => draw_sql(f, app, body),
    }
    draw_status(f, app, status);
    draw_overlay(f, app, body);
}

fn draw_header(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let h = &app.header;
    // Narrow terminals keep what matters: scope, open counts, freshness.
    let wide = area.width >= 120;
    let mut spans = vec![Span::styled(" ctem ", t.get("header"))];
    if wide {
        spans.push(Span::styled(format!("{} ", app.db_label), t.get("dim")));
    }
    if app.read_only {
        spans.push(Span::styled(if wide { "[read-only] " } else { "[ro] " }, t.get("alert_warn")));
    }
    let scope = app.scope.as_ref().map(|s| s.0.as_str()).unwrap_or("all");
    spans.push(Span::styled("scope ", t.get("dim")));
    spans.push(Span::styled(format!("{scope} "), t.get("key")));
    spans.push(Span::styled(format!("│ {} open ", group(h.open as u64)), t.get("header")));
    let sep = if wide { " " } else { "" };
    // Narrow terminals show priorities instead of severities once the store is scored.
    let show_severity = area.width >= 150 || h.by_priority.is_none();
    for (i, (l, role)) in [("C", "sev_critical"), ("H", "sev_high"), ("M", "sev_medium"), ("L", "sev_low"), ("I", "sev_info")].iter().enumerate() {
        if show_severity {
            spans.push(Span::styled(format!("{l}{sep}{} ", group(h.by_severity[i] as u64)), t.get(role)));
        }
    }
    if let Some(p) = h.by_priority {
        spans.push(Span::raw("│ "));
        for (i, role) in ["prio_p1", "prio_p2", "prio_p3", "prio_p4"].iter().enumerate() {
            spans.push(Span::styled(format!("P{}{} ", i + 1, if wide { format!(" {}", group(p[i] as u64)) } else { format!(":{}", group(p[i] as u64)) }), t.get(role)));
        }
    }
    if wide {
        spans.push(Span::styled(format!("│ {} assets ", group(h.assets as u64)), t.get("dim")));
    }
    match (&h.latest_scan, &h.last_import) {
        (Some(s), Some(i)) if wide => spans.push(Span::styled(format!("│ scan {s} · imported {i}"), t.get("dim"))),
        (Some(s), Some(_)) => spans.push(Span::styled(format!("│ scan {}", s.get(5..10).unwrap_or(s)), t.get("dim"))),
        _ => spans.push(Span::styled("│ no imports yet: :import PATH", t.get("alert_warn"))),
    }
    f.render_widget(Paragraph::new(Line::from(spans)).style(t.get("header_bar")), area);
}

fn draw_tabs(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let mut spans = Vec::new();
    let compact = area.width < 110;
    for (i, name) in TABS.iter().enumerate() {
        let label = if compact && i == 3 { "Priority" } else if compact && i == 5 { "Mobilize" } else { name };
        let st = if i == app.tab { t.get("tab_active") } else { t.get("tab") };
        spans.push(Span::styled(format!(" {} {label} ", i + 1), st));
        spans.push(Span::raw(" "));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn key(app: &App, a: Action) -> String {
    app.keymap.first_key(a)
}

fn draw_status(f: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    // An input line takes the status line.
    let (prompt, buf) = match &app.input {
        Input::Filter(b) => ("/", b.as_str()),
        Input::Command(b) => (":", b.as_str()),
        Input::Export(b) => ("export to: ", b.as_str()),
        Input::None => ("", ""),
    };
    if !prompt.is_empty() {
        let mut spans = vec![Span::styled(prompt, t.get("key")), Span::styled(buf.to_string(), t.get("input")), Span::styled("█", t.get("dim"))];
        if let Some(e) = &app.input_error {
            spans.push(Span::styled(format!("  {e}"), t.get("alert_error")));
        } else if matches!(app.input, Input::Filter(_)) {
            spans.push(Span::styled("  Enter/Esc close (the filter stays) · C-u clear", t.get("dim")));
        }
        f.render_widget(Paragraph::new(Line::from(spans)), area);
        return;
    }
    let mut right: Vec<Span> = Vec::new();
    if let Some((_, j)) = app.jobs.iter().next().filter(|(_, j)| j.total == 0) {
        // Work of unknown size (a sync): what has been done so far.
        right.push(Span::styled(format!("{} … ", j.label), t.get("progress")));
    } else if let Some((_, j)) = app.jobs.iter().next() {
        let pct = if j.total > 0 { (j.done as f64 / j.total as f64).min(1.0) } else { 0.0 };
        let w = 12usize;
        let filled = (pct * w as f64).round() as usize;
        right.push(Span::styled(format!("{} ", j.label), t.get("dim")));
        right.push(Span::styled("█".repeat(filled), t.get("progress")));
        right.push(Span::styled("░".repeat(w - filled), t.get("dim")));
        right.push(Span::styled(format!(" {:>3.0}% ", pct * 100.0), t.get("dim")));
    }
    let rw: u16 = right.iter().map(|s| s.width() as u16).sum();
    let left: Vec<Span> = if let Some((m, err)) = &app.message {
        vec![Span::styled(format!(" {m}"), if *err { t.get("alert_error") } else { t.get("alert_ok") })]
    } else {
        // Each hint with how much it is needed (see `fit_hints`).
        let hints: Vec<(String, &str, u8)> = if app.tab == 6 && app.sql.editing {
            vec![("F5".into(), "run", VIEW), ("Esc".into(), "leave editor", VIEW)]
        } else {
            let mut v = vec![
                (format!("{}/{}", key(app, Action::Down), key(app, Action::Up)), "move", MOVE),
                (key(app, Action::Filter), "filter", FILTER),
                (key(app, Action::SortNext), "sort", SORT),
                (key(app, Action::Open), "open", VIEW),
            ];
            match app.tab {
                0 if !app.standup_table => {
                    v = vec![
                        (format!("{}/{}", key(app, Action::Down), key(app, Action::Up)), "line", MOVE),
                        (key(app, Action::Open), "open its findings", VIEW),
                        (key(app, Action::NextPane), "table", VIEW),
                    ];
                }
                0 => v.push((key(app, Action::NextPane), "summary", VIEW)),
                1 => {
                    v.push((key(app, Action::New), "new", VIEW));
                    v.push((key(app, Action::Edit), "edit", VIEW));
                    v.push((key(app, Action::Activate), "use", VIEW));
                }
                2 => v.push((key(app, Action::NextPane), "view", VIEW)),
                3 => {
                    // The ranked queue is rarely re-sorted; its hand-off keys matter more here.
                    v.retain(|h| h.1 != "sort");
                    v.push((key(app, Action::NextPane), if app.prio_view == 0 { "groups" } else { "queue" }, VIEW));
                    if app.prio_view == 0 {
                        v.push((key(app, Action::Mark), "mark", VIEW));
                    }
                    v.push((key(app, Action::HandOff), "hand off", VIEW));
                }
                4 => v.push((key(app, Action::NextPane), ["matrix", "controls", "fixes"][app.val_view], VIEW)),
                5 if app.mob_view == 0 => {
                    v = vec![
                        (format!("{}{}{}{}", key(app, Action::Left), key(app, Action::Down), key(app, Action::Up), key(app, Action::Right)), "move", MOVE),
                        (format!("{}/{}", key(app, Action::MoveForward), key(app, Action::MoveBack)), "status", VIEW),
                        (key(app, Action::Open), "open", VIEW),
                        (key(app, Action::Assign), "assign", VIEW),
                        (key(app, Action::Except), "except", VIEW),
                        // Cards are found by filtering (owner, team, SLA): it matters as much as the moves.
                        (key(app, Action::Filter), "filter", VIEW),
                        (key(app, Action::NextPane), "list", VIEW),
                        (key(app, Action::Mark), "mark", VIEW),
                    ];
                }
                5 => v.push((key(app, Action::NextPane), ["board", "exceptions", "by owner", "board"][app.mob_view], VIEW)),
                6 => v.push((key(app, Action::Edit), "edit SQL", VIEW)),
                _ => v.push((key(app, Action::Mark), "mark", VIEW)),
            }
            v.push((key(app, Action::Help), "help", ALWAYS));
            v.push((key(app, Action::Quit), "quit", ALWAYS));
            v.push((key(app, Action::Columns), "cols", COLS));
            v
        };
        let mut s = vec![Span::raw(" ")];
        for (k, d) in fit_hints(hints, area.width.saturating_sub(rw) as usize) {
            s.push(Span::styled(k, t.get("key")));
            s.push(Span::styled(format!(" {d}  "), t.get("status")));
        }
        s
    };
    let [l, r] = Layout::horizontal([Constraint::Min(1), Constraint::Length(rw)]).areas(area);
    f.render_widget(Paragraph::new(Line::from(left)), l);
    f.render_widget(Paragraph::new(Line::from(right)), r);
}

// How much a key hint on the status line is needed: when the line is too narrow for all of them,
// hints are left out whole, the least needed first (and of those, the last first). Help lists every key.
/// The column picker.
const COLS: u8 = 0;
/// Moving: the same keys in every list.
const MOVE: u8 = 1;
const FILTER: u8 = 2;
const SORT: u8 = 3;
/// What this view does that the others do not.
const VIEW: u8 = 4;
/// Help and quit: never left out.
const ALWAYS: u8 = u8::MAX;

/// The hints that fit `room` columns (drawn as a space, then `key desc` with two spaces between
/// hints), in their order, leaving out whole hints by how little they are needed (`COLS` ... `VIEW`).
fn fit_hints(mut hints: Vec<(String, &str, u8)>, room: usize) -> Vec<(String, &str)> {
    let width = |h: &[(String, &str, u8)]| h.iter().map(|(k, d, _)| k.width() + d.width() + 3).sum::<usize>().saturating_sub(1);
    while width(&hints) > room {
        let least = hints.iter().enumerate().filter(|(_, h)| h.2 != ALWAYS).min_by_key(|(i, h)| (h.2, std::cmp::Reverse(*i)));
        match least {
            Some((i, _)) => {
                hints.remove(i);
            }
            None => break,
        }
    }
    hints.into_iter().map(|(k, d, _)| (k, d)).collect()
}

fn table(f: &mut Frame, app: &mut App, id: &str, area: Rect, focused: bool, title: &str) {
    let theme = app.theme.clone();
    if let Some(t) = app.tables.get_mut(id) {
        t.draw(area, f.buffer_mut(), &theme, focused, title);
    } else {
        let b = Block::default().borders(Borders::ALL).border_style(theme.get("border")).title(format!(" {title} "));
        f.render_widget(b, area);
    }
}

/// The rows of a picker list that fit `h` lines with the cursor in sight, with their indices.
fn picker_rows<T>(items: &[T], cursor: usize, h: usize) -> impl Iterator<Item = (usize, &T)> {
    let top = cursor.saturating_sub(h.saturating_sub(1));
    items.iter().enumerate().skip(top).take(h)
}

fn panel<'a>(app: &App, title: &str) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(app.theme.get("border"))
        .title(Span::styled(format!(" {title} "), app.theme.get("title")))
}

fn draw_standup(f: &mut Frame, app: &mut App, area: Rect) {
    let side = if area.width >= 120 { 44 } else { 36 };
    let [left, right] = Layout::horizontal([Constraint::Length(side), Constraint::Min(20)]).areas(area);
    let summary_focus = !app.standup_table;
    let items = crate::tui::standup::items(&app.standup, &app.theme, side);
    // The cursor counts the lines that open something.
    let mut at = None;
    let mut lines = Vec::with_capacity(items.len());
    let mut k = 0;
    for (i, it) in items.into_iter().enumerate() {
        let mut line = it.line;
        if it.jump.is_some() {
            if k == app.standup_cursor && summary_focus {
                line = line.style(app.theme.get("selection"));
                at = Some(i);
            }
            k += 1;
        }
        lines.push(line);
    }
    let inner_h = left.height.saturating_sub(2) as usize;
    let scroll = at.map(|i| i.saturating_sub(inner_h.saturating_sub(1))).unwrap_or(0);
    let border = if summary_focus { app.theme.get("border_focus") } else { app.theme.get("border") };
    let block = panel(app, "What changed").border_style(border);
    f.render_widget(Paragraph::new(lines).scroll((scroll as u16, 0)).block(block), left);
    table(f, app, "standup", right, !summary_focus, "New, fixed and reopened");
}

fn draw_scoping(f: &mut Frame, app: &mut App, area: Rect) {
    let [top, bottom] = Layout::vertical([Constraint::Percentage(55), Constraint::Min(6)]).areas(area);
    table(f, app, "scopes", top, true, "Scopes");
    let t = app.theme.clone();
    let mut lines: Vec<Line> = vec![Line::from(Span::styled(
        format!("{:<20}{:>9}{:>12}{:>10}  filter", "scope", "assets", "open", "critical"),
        t.get("column_header"),
    ))];
    let active = app.scope.as_ref().map(|s| s.0.clone());
    for s in &app.scopes {
        let mark = if active.as_deref() == Some(s.scope.name.as_str()) { "▶ " } else { "  " };
        match &s.error {
            Some(e) => lines.push(Line::from(Span::styled(format!("{mark}{:<18} {e}", fit(&s.scope.name, 18, false)), t.get("alert_error")))),
            None => lines.push(Line::from(vec![
                Span::styled(format!("{mark}{}", fit(&s.scope.name, 18, false)), t.get("key")),
                Span::raw(format!("{:>9}{:>12}", group(s.assets as u64), group(s.open_findings as u64))),
                Span::styled(format!("{:>10}", group(s.critical as u64)), t.get("sev_critical")),
                Span::styled(format!("  {}", s.scope.filter), t.get("dim")),
            ])),
        }
    }
    if app.scopes.is_empty() {
        lines.push(Line::from("No scopes yet. n creates one: a filter over assets, e.g."));
        lines.push(Line::from(Span::styled("  bu=payments and env=prod", t.get("key"))));
        lines.push(Line::from(Span::styled("  internet=true or tag=pci", t.get("key"))));
        lines.push(Line::from(Span::styled("  kind=container_image owner~platform", t.get("key"))));
    }
    f.render_widget(Paragraph::new(lines).block(panel(app, "Coverage per scope (open findings)")), bottom);
}

fn draw_discovery(f: &mut Frame, app: &mut App, area: Rect) {
    let title = DISCOVERY
        .iter()
        .enumerate()
        .map(|(i, n)| if i == app.discovery { format!("[{}]", cap(n)) } else { cap(n) })
        .collect::<Vec<_>>()
        .join(" ");
    let id = DISCOVERY[app.discovery];
    table(f, app, id, area, true, &title);
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn draw_prioritization(f: &mut Frame, app: &mut App, area: Rect) {
    let intel = match &app.header.intel {
        Some(i) => format!("intel {i}"),
        None => "no exploit intel loaded: ctem intel load".to_string(),
    };
    if app.prio_view == 1 {
        let title = format!("Fix groups, most risk removed first · Enter: findings it closes · Tab: queue · {intel}");
        table(f, app, "fix_groups", area, true, &title);
        return;
    }
    let (top, bottom) = if area.width >= 150 {
        let [a, b] = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(area);
        (a, b)
    } else {
        let [a, b] = Layout::vertical([Constraint::Percentage(58), Constraint::Min(5)]).areas(area);
        (a, b)
    };
    let title = format!("Open queue by risk · Tab: fix groups · {intel}");
    table(f, app, "queue", top, true, &title);
    let text = if app.detail_text.is_empty() { "…".to_string() } else { app.detail_text.clone() };
    f.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }).block(panel(app, "Why this rank")), bottom);
}

fn draw_validation(f: &mut Frame, app: &mut App, area: Rect) {
    let [top, rest] = Layout::vertical([Constraint::Length(3), Constraint::Min(4)]).areas(area);
    let t = app.theme.clone();
    let h = &app.header;
    let line = Line::from(vec![
        Span::styled(format!(" {} ", group(h.fixed as u64)), t.get("status_fixed")),
        Span::raw("fixed, verified by a rescan   "),
        Span::styled(format!("{} ", group(h.reopened as u64)), t.get("status_reopened")),
        Span::raw("regressed   "),
        Span::styled(format!("{} ", group(h.not_covered as u64)), t.get("alert_warn")),
        Span::raw("no longer scanned"),
    ]);
    f.render_widget(Paragraph::new(line).block(panel(app, "Rescan verification")), top);
    match app.val_view {
        1 => table(
            f,
            app,
            "matrix",
            rest,
            true,
            "Coverage matrix: ATT&CK techniques exposed × controls (P protect, D detect, + significant; OPEN: no blocking protection) · Enter: findings · Tab: controls",
        ),
        2 => table(f, app, "controls", rest, true, "Controls deployed and the assets each covers (Tab: fixes and regressions)"),
        _ => table(f, app, "verification", rest, true, "Verified fixes, regressions, fixes awaiting a rescan, assets no longer scanned (Tab: coverage matrix)"),
    }
}

fn draw_mobilization(f: &mut Frame, app: &mut App, area: Rect) {
    match app.mob_view {
        0 => crate::tui::board::draw(f, app, area),
        1 => table(f, app, "work_items", area, true, "Work items (Enter: its findings · Tab: exceptions)"),
        2 => table(f, app, "exceptions", area, true, "Exceptions: risk acceptances and false positives, with age and expiry (Tab: open work by owner)"),
        _ => table(f, app, "owners", area, true, "Open work by owner (Enter: that owner's queue · Tab: board)"),
    }
}

fn draw_sql(f: &mut Frame, app: &mut App, area: Rect) {
    let [ed, res] = Layout::vertical([Constraint::Length(8), Constraint::Min(4)]).areas(area);
    let t = app.theme.clone();
    let mut title = vec![Span::styled(" SQL ", if app.sql.editing { t.get("title_focus") } else { t.get("title") })];
    if let Some((m, err)) = &app.sql.status {
        title.push(Span::styled(format!("{m} "), if *err { t.get("alert_error") } else { t.get("dim") }));
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(if app.sql.editing { t.get("border_focus") } else { t.get("border") })
        .title(Line::from(title));
    app.sql.editor.set_block(block);
    app.sql.editor.set_cursor_line_style(Style::default());
    app.sql.editor.set_cursor_style(if app.sql.editing { Style::default().add_modifier(Modifier::REVERSED) } else { Style::default() });
    f.render_widget(&app.sql.editor, ed);
    if app.tables.contains_key("sql") {
        let focused = !app.sql.editing;
        table(f, app, "sql", res, focused, "Result");
    } else {
        let lines = vec![
            Line::from("Enter or e edits; F5, C-Enter or :run runs the statement under the cursor."),
            Line::from("F2 (or :schema) browses the tables, views and columns; C-p / C-n recall earlier statements."),
            Line::from("Only queries run until `:sql write`; Esc or C-c cancels a running statement."),
        ];
        f.render_widget(Paragraph::new(lines).block(panel(app, "Result")), res);
    }
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

fn draw_overlay(f: &mut Frame, app: &mut App, body: Rect) {
    let t = app.theme.clone();
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help { filter, scroll } => {
            let r = centered(body, 76, body.height);
            let mut rows: Vec<(String, String)> = app.keymap.help();
            rows.extend(COMMANDS.iter().map(|(a, b)| (a.to_string(), b.to_string())));
            let fl = filter.to_lowercase();
            let lines: Vec<Line> = rows
                .into_iter()
                .filter(|(k, d)| fl.is_empty() || k.to_lowercase().contains(&fl) || d.to_lowercase().contains(&fl))
                .skip(*scroll)
                .map(|(k, d)| Line::from(vec![Span::styled(format!("{:<24}", k), t.get("key")), Span::raw(d)]))
                .collect();
            let title = if filter.is_empty() { " Keys (type to filter, Esc closes) ".to_string() } else { format!(" Keys matching '{filter}' ") };
            f.render_widget(Clear, r);
            f.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).border_style(t.get("border_focus")).title(title)), r);
        }
        Overlay::Detail { title, lines, scroll } => {
            let r = centered(body, body.width.saturating_sub(4), body.height);
            let shown: Vec<Line> = lines.iter().skip(*scroll).map(|l| Line::from(l.replace('\t', "    "))).collect();
            let b = Block::default()
                .borders(Borders::ALL)
                .border_style(t.get("border_focus"))
                .title(Span::styled(format!(" {title} "), t.get("title_focus")))
                .title_bottom(Line::from(Span::styled(format!(" {}/{} · Esc closes · y copies ", scroll + 1, lines.len()), t.get("dim"))).right_aligned());
            f.render_widget(Clear, r);
            f.render_widget(Paragraph::new(shown).wrap(Wrap { trim: false }).block(b), r);
        }
        Overlay::Schema { items, cursor, filter } => {
            let r = centered(body, 64, body.height.saturating_sub(2));
            let shown: Vec<&(String, String)> = items
                .iter()
                .filter(|(n, d)| filter.is_empty() || n.to_lowercase().contains(filter.as_str()) || d.to_lowercase().contains(filter.as_str()))
                .collect();
            let h = r.height.saturating_sub(2) as usize;
            let lines: Vec<Line> = picker_rows(&shown, *cursor, h)
                .map(|(i, (n, d))| {
                    let st = if i == *cursor { t.get("selection") } else if n.starts_with(' ') { Style::default() } else { t.get("header") };
                    Line::from(vec![Span::styled(format!("{n:<34}"), st), Span::styled(format!(" {d}"), t.get("dim"))])
                })
                .collect();
            let title = if filter.is_empty() { " Schema (type to filter · Enter inserts · Esc) ".to_string() } else { format!(" Schema /{filter} ({} shown) ", shown.len()) };
            f.render_widget(Clear, r);
            f.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).border_style(t.get("border_focus")).title(title)), r);
        }
        Overlay::Queues { items, cursor } => {
            let r = centered(body, 70, (items.len() as u16 + 2).min(body.height.saturating_sub(2)));
            let h = r.height.saturating_sub(2) as usize;
            let lines: Vec<Line> = picker_rows(items, *cursor, h)
                .map(|(i, (name, is_queue, sql))| {
                    let st = if i == *cursor { t.get("selection") } else { t.get("key") };
                    let kind = if *is_queue { "queue" } else { "query" };
                    let sql1 = sql.split_whitespace().collect::<Vec<_>>().join(" ");
                    Line::from(vec![Span::styled(format!("{} ", fit(name, 20, false)), st), Span::styled(format!("{kind:<6}"), t.get("dim")), Span::raw(sql1)])
                })
                .collect();
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines)
                    .block(Block::default().borders(Borders::ALL).border_style(t.get("border_focus")).title(" Saved queues · Enter narrows the findings (a query opens in SQL) ")),
                r,
            );
        }
        Overlay::Columns { cursor } => {
            let Some(tv) = app.focused_table_id().and_then(|id| app.tables.get(id)) else { return };
            let cols: Vec<(String, bool)> = tv.view.columns.iter().map(|c| (c.name.to_string(), c.visible)).collect();
            let r = centered(body, 34, cols.len() as u16 + 2);
            // At 80x24 a findings table has more columns than lines: the list follows the cursor.
            let lines: Vec<Line> = picker_rows(&cols, *cursor, r.height.saturating_sub(2) as usize)
                .map(|(i, (n, v))| {
                    let st = if i == *cursor { t.get("selection") } else { Style::default() };
                    Line::from(Span::styled(format!("[{}] {n:<26}", if *v { "x" } else { " " }), st))
                })
                .collect();
            f.render_widget(Clear, r);
            f.render_widget(
                Paragraph::new(lines).block(Block::default().borders(Borders::ALL).border_style(t.get("border_focus")).title(" Columns (Space toggles) ")),
                r,
            );
        }
        Overlay::Scope(_) => {
            let r = centered(body, 72, 13);
            f.render_widget(Clear, r);
            let outer = Block::default()
                .borders(Borders::ALL)
                .border_style(t.get("border_focus"))
                .title(" Scope (Tab: next field · C-s save · Esc cancel) ");
            let inner = outer.inner(r);
            f.render_widget(outer, r);
            let [a, b, c, d] = Layout::vertical([Constraint::Length(3), Constraint::Length(3), Constraint::Length(3), Constraint::Min(1)]).areas(inner);
            if let Overlay::Scope(ed) = &mut app.overlay {
                let labels = ["name", "asset filter (bu, env, tag, kind, internet, owner ...)", "description"];
                for (i, area) in [a, b, c].into_iter().enumerate() {
                    let ta = match i {
                        0 => &mut ed.name,
                        1 => &mut ed.filter,
                        _ => &mut ed.description,
                    };
                    let focus = ed.field == i;
                    ta.set_block(
                        Block::default()
                            .borders(Borders::ALL)
                            .border_style(if focus { t.get("border_focus") } else { t.get("border") })
                            .title(labels[i]),
                    );
                    ta.set_cursor_style(if focus { Style::default().add_modifier(Modifier::REVERSED) } else { Style::default() });
                    ta.set_cursor_line_style(Style::default());
                    f.render_widget(&*ta, area);
                }
                let msg = match &ed.error {
                    Some(e) => Span::styled(e.clone(), t.get("alert_error")),
                    None => Span::styled("the filter is valid", t.get("alert_ok")),
                };
                f.render_widget(Paragraph::new(Line::from(msg)), d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints() -> Vec<(String, &'static str, u8)> {
        vec![
            ("j/k".into(), "move", MOVE),
            ("/".into(), "filter", FILTER),
            ("Enter".into(), "open", VIEW),
            ("w".into(), "hand off", VIEW),
            ("?".into(), "help", ALWAYS),
            ("q".into(), "quit", ALWAYS),
            ("c".into(), "cols", COLS),
        ]
    }

    fn line(h: &[(String, &str)]) -> String {
        h.iter().map(|(k, d)| format!("{k} {d}")).collect::<Vec<_>>().join("  ")
    }

    #[test]
    fn status_hints_are_left_out_whole_least_needed_first() {
        // The line starts with a space.
        let all = "j/k move  / filter  Enter open  w hand off  ? help  q quit  c cols";
        assert_eq!(line(&fit_hints(hints(), all.len() + 1)), all);
        assert_eq!(line(&fit_hints(hints(), all.len())), "j/k move  / filter  Enter open  w hand off  ? help  q quit");
        assert_eq!(line(&fit_hints(hints(), 50)), "/ filter  Enter open  w hand off  ? help  q quit");
        // Of hints needed alike, the last goes first; help and quit stay however narrow the line.
        assert_eq!(line(&fit_hints(hints(), 30)), "Enter open  ? help  q quit");
        assert_eq!(line(&fit_hints(hints(), 5)), "? help  q quit");
    }
}
