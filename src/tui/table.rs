//! The one table widget: a window of rows served by the store (keyset pages), a cursor, sorting,
//! column visibility, a filter, marks. It holds at most `MAX_WINDOW` rows whatever the table's size.

use crate::query::{Compiled, FilterError};
use crate::store::views::{PageQuery, Row, View};
use crate::tui::theme::Theme;
use duckdb::types::Value;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Widget};
use std::collections::BTreeSet;
use unicode_width::UnicodeWidthStr;

pub const PAGE: usize = 200;
pub const MAX_WINDOW: usize = 3 * PAGE;

/// Where a page lands in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// A fresh start at the top.
    Reset,
    Append,
    Prepend,
    /// The last rows of the table.
    End,
}

/// A page the table wants; the app sends it to the store and hands the answer back with `receive`.
#[derive(Debug, Clone)]
pub struct PageWant {
    pub generation: u64,
    pub fill: Fill,
    pub query: PageQuery,
}

#[derive(Debug, Clone)]
pub struct TableView {
    pub view: View,
    pub filter_text: String,
    pub filter: Compiled,
    pub filter_error: Option<FilterError>,
    pub scope: Option<Compiled>,
    pub sort_col: usize,
    pub desc: bool,
    pub rows: Vec<Row>,
    /// Absolute index of `rows[0]`.
    pub win_start: usize,
    /// Absolute index of the selected row.
    pub cursor: usize,
    /// Absolute index of the first row on screen.
    pub top: usize,
    pub total: Option<i64>,
    /// Whether the window reaches the first / last row of the table.
    pub at_start: bool,
    pub at_end: bool,
    pub col_cursor: usize,
    pub marks: BTreeSet<i64>,
    pub mark_anchor: Option<usize>,
    pub generation: u64,
    pub in_flight: bool,
    /// Rows on screen at the last draw.
    pub height: usize,
    pub loaded_once: bool,
}

impl TableView {
    pub fn new(view: View) -> TableView {
        let (sort_col, desc) = view.default_sort;
        TableView {
            view,
            filter_text: String::new(),
            filter: Compiled { sql: "true".into(), params: Vec::new() },
            filter_error: None,
            scope: None,
            sort_col,
            desc,
            rows: Vec::new(),
            win_start: 0,
            cursor: 0,
            top: 0,
            total: None,
            at_start: true,
            at_end: false,
            col_cursor: 0,
            marks: BTreeSet::new(),
            mark_anchor: None,
            generation: 0,
            in_flight: false,
            height: 20,
            loaded_once: false,
        }
    }

    fn query(&self, anchor: Option<(Value, i64)>, backward: bool) -> PageQuery {
        PageQuery {
            filter: self.filter.clone(),
            scope: self.scope.clone(),
            sort_col: self.sort_col,
            desc: self.desc,
            anchor,
            backward,
            limit: PAGE,
        }
    }

    /// Start over from the first row (after a filter, sort or scope change, or a refresh).
    pub fn reload(&mut self) -> PageWant {
        self.generation += 1;
        self.in_flight = true;
        self.total = None;
        PageWant { generation: self.generation, fill: Fill::Reset, query: self.query(None, false) }
    }

    /// Keep the cursor where it is (by key) when reloading in place is not possible: start at the top.
    pub fn set_filter(&mut self, text: &str, now: chrono::NaiveDateTime) -> Option<PageWant> {
        match self.view.compile_filter(text, now) {
            // The same condition (a space typed, say): nothing to ask the store.
            Ok(c) if c == self.filter && self.loaded_once => {
                self.filter_text = text.to_string();
                self.filter_error = None;
                None
            }
            Ok(c) => {
                self.filter_text = text.to_string();
                self.filter = c;
                self.filter_error = None;
                self.cursor = 0;
                self.top = 0;
                Some(self.reload())
            }
            Err(e) => {
                // The previous results stay.
                self.filter_error = Some(e);
                None
            }
        }
    }

    /// Narrow to a scope (tables without an asset link ignore it); the caller reloads.
    pub fn scope_to(&mut self, scope: Option<Compiled>) {
        if self.view.scope_asset.is_some() {
            self.scope = scope;
            self.cursor = 0;
            self.top = 0;
            self.marks.clear();
        }
    }

    pub fn visible_columns(&self) -> Vec<usize> {
        (0..self.view.columns.len()).filter(|&i| self.view.columns[i].visible).collect()
    }

    /// Sort by the focused column; the same column again reverses.
    pub fn sort_focused(&mut self) -> PageWant {
        let vis = self.visible_columns();
        let c = vis.get(self.col_cursor).copied().unwrap_or(0);
        if c == self.sort_col {
            self.desc = !self.desc;
        } else {
            self.sort_col = c;
            self.desc = false;
        }
        self.cursor = 0;
        self.top = 0;
        self.reload()
    }

    pub fn reverse(&mut self) -> PageWant {
        self.desc = !self.desc;
        self.cursor = 0;
        self.top = 0;
        self.reload()
    }

    pub fn toggle_column(&mut self, i: usize) {
        if let Some(c) = self.view.columns.get_mut(i) {
            c.visible = !c.visible;
        }
        if self.visible_columns().is_empty() {
            self.view.columns[0].visible = true;
        }
        self.col_cursor = self.col_cursor.min(self.visible_columns().len().saturating_sub(1));
    }

    /// Cells fetched for rows already in the window (a column just shown). Keys not in the window
    /// any more are ignored, the sort value stays.
    pub fn fill_cells(&mut self, generation: u64, rows: Vec<Row>) {
        if generation != self.generation {
            return;
        }
        let mut by_key: std::collections::HashMap<i64, Vec<String>> = rows.into_iter().map(|r| (r.key, r.cells)).collect();
        for r in &mut self.rows {
            if let Some(c) = by_key.remove(&r.key) {
                r.cells = c;
            }
        }
    }

    pub fn selected(&self) -> Option<&Row> {
        self.cursor.checked_sub(self.win_start).and_then(|i| self.rows.get(i))
    }

    pub fn selected_cell(&self) -> Option<(String, String)> {
        let r = self.selected()?;
        let vis = self.visible_columns();
        let c = *vis.get(self.col_cursor)?;
        Some((self.view.columns[c].name.to_string(), r.cells[c].clone()))
    }

    pub fn count_query(&self) -> (Compiled, Option<Compiled>) {
        (self.filter.clone(), self.scope.clone())
    }

    /// The store answered a page.
    pub fn receive(&mut self, generation: u64, fill: Fill, rows: Vec<Row>) -> Option<PageWant> {
        if generation != self.generation {
            return None;
        }
        self.in_flight = false;
        self.loaded_once = true;
        let n = rows.len();
        match fill {
            Fill::Reset => {
                self.rows = rows;
                self.win_start = 0;
                self.at_start = true;
                self.at_end = n < PAGE;
                if self.at_end {
                    self.total = Some(n as i64);
                }
            }
            Fill::End => {
                self.rows = rows;
                self.at_end = true;
                self.at_start = n < PAGE;
                self.win_start = match self.total {
                    Some(t) => (t as usize).saturating_sub(n),
                    None if self.at_start => 0,
                    None => self.win_start.max(self.cursor.saturating_sub(n)),
                };
                self.cursor = self.win_start + n.saturating_sub(1);
            }
            Fill::Append => {
                if n < PAGE {
                    self.at_end = true;
                    self.total.get_or_insert((self.win_start + self.rows.len() + n) as i64);
                }
                self.rows.extend(rows);
                if self.rows.len() > MAX_WINDOW {
                    let drop = self.rows.len() - MAX_WINDOW;
                    self.rows.drain(..drop);
                    self.win_start += drop;
                    self.at_start = false;
                }
            }
            Fill::Prepend => {
                if n < PAGE {
                    self.at_start = true;
                }
                self.win_start = self.win_start.saturating_sub(n);
                let mut v = rows;
                v.append(&mut self.rows);
                self.rows = v;
                if self.rows.len() > MAX_WINDOW {
                    self.rows.truncate(MAX_WINDOW);
                    self.at_end = false;
                }
            }
        }
        self.clamp();
        self.need_more()
    }

    fn last_index(&self) -> usize {
        (self.win_start + self.rows.len()).saturating_sub(1)
    }

    fn clamp(&mut self) {
        if self.rows.is_empty() {
            self.cursor = 0;
            self.top = 0;
            return;
        }
        self.cursor = self.cursor.clamp(self.win_start, self.last_index());
        let h = self.height.max(1);
        if self.cursor < self.top {
            self.top = self.cursor;
        }
        if self.cursor >= self.top + h {
            self.top = self.cursor + 1 - h;
        }
        if self.top < self.win_start {
            self.top = self.win_start;
        }
    }

    /// A page to fetch when the cursor comes near an edge of the window.
    fn need_more(&mut self) -> Option<PageWant> {
        if self.in_flight || self.rows.is_empty() {
            return None;
        }
        let h = self.height.max(1);
        if !self.at_end && self.cursor + 2 * h >= self.win_start + self.rows.len() {
            let last = self.rows.last()?;
            let q = self.query(Some((last.sort.clone(), last.key)), false);
            self.in_flight = true;
            return Some(PageWant { generation: self.generation, fill: Fill::Append, query: q });
        }
        if !self.at_start && self.top < self.win_start + h {
            let first = self.rows.first()?;
            let q = self.query(Some((first.sort.clone(), first.key)), true);
            self.in_flight = true;
            return Some(PageWant { generation: self.generation, fill: Fill::Prepend, query: q });
        }
        None
    }

    /// Move by `delta` rows (clamped to what is loaded; the edge pages load as you go).
    pub fn move_by(&mut self, delta: i64) -> Option<PageWant> {
        if self.rows.is_empty() {
            return None;
        }
        let target = (self.cursor as i64 + delta).max(0) as usize;
        self.cursor = target;
        self.clamp();
        self.need_more()
    }

    pub fn home(&mut self) -> Option<PageWant> {
        if self.at_start {
            self.cursor = 0;
            self.top = 0;
            self.clamp();
            return self.need_more();
        }
        self.cursor = 0;
        self.top = 0;
        Some(self.reload())
    }

    pub fn end(&mut self) -> Option<PageWant> {
        if self.at_end {
            self.cursor = self.last_index();
            self.clamp();
            return self.need_more();
        }
        self.generation += 1;
        self.in_flight = true;
        Some(PageWant { generation: self.generation, fill: Fill::End, query: self.query(None, true) })
    }

    pub fn set_total(&mut self, generation: u64, total: i64) {
        if generation == self.generation {
            self.total = Some(total);
        }
    }

    pub fn toggle_mark(&mut self) {
        if let Some(k) = self.selected().map(|r| r.key) {
            if !self.marks.remove(&k) {
                self.marks.insert(k);
            }
            self.mark_anchor = Some(self.cursor);
        }
    }

    /// Mark every loaded row between the last mark and the cursor.
    pub fn range_mark(&mut self) {
        let Some(a) = self.mark_anchor else {
            self.toggle_mark();
            return;
        };
        let (lo, hi) = if a <= self.cursor { (a, self.cursor) } else { (self.cursor, a) };
        for i in lo..=hi {
            if let Some(r) = i.checked_sub(self.win_start).and_then(|j| self.rows.get(j)) {
                self.marks.insert(r.key);
            }
        }
        self.mark_anchor = Some(self.cursor);
    }

    /// "row 12 of 1,204,331" for titles.
    pub fn position(&self) -> String {
        let total = match self.total {
            Some(t) => group(t as u64),
            None if self.loaded_once => "…".into(),
            None => "loading".into(),
        };
        if self.rows.is_empty() {
            return if self.total == Some(0) { "no rows".into() } else { total };
        }
        format!("{} of {}", group(self.cursor as u64 + 1), total)
    }

    pub fn draw(&mut self, area: Rect, buf: &mut Buffer, theme: &Theme, focused: bool, title: &str) {
        let border = if focused { theme.get("border_focus") } else { theme.get("border") };
        let title_style = if focused { theme.get("title_focus") } else { theme.get("title") };
        let mut spans = vec![Span::styled(format!(" {title} "), title_style)];
        if !self.filter_text.is_empty() {
            spans.push(Span::styled(format!("/{} ", self.filter_text), theme.get("key")));
        }
        if !self.marks.is_empty() {
            spans.push(Span::styled(format!("[{} marked] ", self.marks.len()), theme.get("mark")));
        }
        let pos = Span::styled(format!(" {} ", self.position()), theme.get("dim"));
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(border)
            .title(Line::from(spans))
            .title_bottom(Line::from(pos).right_aligned());
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 2 || inner.width < 4 {
            return;
        }
        self.height = (inner.height - 1) as usize;
        self.clamp();
        let vis = self.visible_columns();
        // Column widths: declared widths, the last visible column takes what is left.
        let mut widths: Vec<u16> = vis.iter().map(|&i| self.view.columns[i].width).collect();
        let gaps = vis.len().saturating_sub(1) as u16;
        let used: u16 = widths.iter().sum::<u16>().saturating_add(gaps).saturating_add(2);
        if used < inner.width {
            if let Some(last) = widths.last_mut() {
                *last += inner.width - used;
            }
        } else {
            // Too wide: take space from the widest columns first (a long title gives way before an id).
            let mut over = used - inner.width;
            while over > 0 {
                let Some((i, w)) = widths.iter().copied().enumerate().max_by_key(|(_, w)| *w) else { break };
                if w <= 8 {
                    break;
                }
                let cut = over.min(w - 8).min(4.max(over / 2));
                widths[i] -= cut;
                over -= cut;
            }
        }
        let mut x = inner.x + 2;
        let right = inner.x + inner.width;
        let mut col_x = Vec::new();
        for w in &widths {
            col_x.push(x);
            x = x.saturating_add(*w + 1);
        }
        // Header.
        let hs = theme.get("column_header");
        for (j, &ci) in vis.iter().enumerate() {
            let cx = col_x[j];
            if cx >= right {
                break;
            }
            let c = &self.view.columns[ci];
            let mut label = c.name.to_string();
            if ci == self.sort_col {
                label.push(if self.desc { '▼' } else { '▲' });
            }
            let mut st = hs;
            if focused && j == self.col_cursor {
                st = st.add_modifier(Modifier::UNDERLINED);
            }
            let w = widths[j].min(right - cx);
            put(buf, cx, inner.y, &fit(&label, w as usize, c.right), w, st);
        }
        if self.rows.is_empty() {
            let msg = if self.in_flight && !self.loaded_once {
                "loading…".to_string()
            } else if !self.filter_text.is_empty() {
                format!("no rows match /{}", self.filter_text)
            } else {
                "no rows".to_string()
            };
            put(buf, inner.x + 2, inner.y + 1, &msg, inner.width.saturating_sub(2), theme.get("dim"));
            if let (Some(h), false, true) = (self.view.holds, self.filter_text.is_empty(), inner.height > 2) {
                put(buf, inner.x + 2, inner.y + 2, h, inner.width.saturating_sub(2), theme.get("dim"));
            }
            return;
        }
        let sel = if focused { theme.get("selection") } else { theme.get("selection_unfocused") };
        for line in 0..self.height {
            let abs = self.top + line;
            let Some(row) = abs.checked_sub(self.win_start).and_then(|i| self.rows.get(i)) else { break };
            let y = inner.y + 1 + line as u16;
            let is_sel = abs == self.cursor;
            let marked = self.marks.contains(&row.key);
            let base = if is_sel { sel } else { Style::default() };
            if is_sel {
                buf.set_style(Rect { x: inner.x, y, width: inner.width, height: 1 }, sel);
            }
            if marked {
                put(buf, inner.x, y, "●", 1, theme.get("mark").patch(base));
            }
            for (j, &ci) in vis.iter().enumerate() {
                let cx = col_x[j];
                if cx >= right {
                    break;
                }
                let c = &self.view.columns[ci];
                let v = &row.cells[ci];
                let mut st = match c.name.as_ref() {
                    "sev" | "severity" => theme.severity(v),
                    "prio" | "priority" => theme.priority(v),
                    "status" => theme.status(v),
                    // The coverage matrix: open attack paths stand out, protection reads as good news.
                    "path" if v == "OPEN" => theme.get("alert_error"),
                    _ if self.view.id == "matrix" && v.starts_with('P') => theme.get("alert_ok"),
                    _ if self.view.id == "matrix" && v.starts_with(['D', 'd']) => theme.get("alert_warn"),
                    _ => Style::default(),
                };
                if is_sel {
                    st = st.patch(sel);
                }
                let w = widths[j].min(right - cx);
                put(buf, cx, y, &fit(v, w as usize, c.right), w, st);
            }
        }
    }
}

/// Thousands separators: 1,204,331.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            o.push(',');
        }
        o.push(c);
    }
    o
}

/// Cut or pad to `w` display columns; cut text ends with '…'. Control characters never reach the terminal.
pub fn fit(s: &str, w: usize, right: bool) -> String {
    let clean: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let width = UnicodeWidthStr::width(clean.as_str());
    if width <= w {
        let pad = " ".repeat(w - width);
        return if right { pad + &clean } else { clean + &pad };
    }
    if w == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for ch in clean.chars() {
        let cw = unicode_width::UnicodeWidthChar::width(ch).unwrap_or(0);
        if used + cw > w - 1 {
            break;
        }
        out.push(ch);
        used += cw;
    }
    out.push('…');
    used += 1;
    out + &" ".repeat(w.saturating_sub(used))
}

pub fn put(buf: &mut Buffer, x: u16, y: u16, s: &str, w: u16, style: Style) {
    let area = buf.area;
    if y >= area.y + area.height || x >= area.x + area.width {
        return;
    }
    let w = w.min(area.x + area.width - x);
    buf.set_stringn(x, y, s, w as usize, style);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_and_pads_by_display_width() {
        assert_eq!(fit("abc", 5, false), "abc  ");
        assert_eq!(fit("abc", 5, true), "  abc");
        assert_eq!(fit("abcdef", 4, false), "abc…");
        assert_eq!(fit("a\x1b[31mb", 8, false), "a [31mb ");
        assert_eq!(fit("日本語", 4, false), "日… ");
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(group(1204331), "1,204,331");
        assert_eq!(group(12), "12");
    }
}
