//! The stand-up summary: each line a fact about the window, and where it has findings (or work items)
//! behind it, the filtered list that shows exactly them. Drawing and the keys share this one list.

use crate::tui::db::Standup;
use crate::tui::theme::Theme;
use crate::tui::table::group;
use ratatui::text::{Line, Span};

/// The list a summary line opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The stand-up's own table of what changed in the window.
    Changes,
    /// Discovery: every finding, whatever its status.
    Findings,
    /// Prioritization: the ranked queue of open findings.
    Queue,
    /// Mobilization: work items, and exceptions.
    WorkItems,
    Exceptions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Jump {
    pub target: Target,
    /// A filter in the table's query language; empty shows the whole list.
    pub filter: String,
    /// What the list shows, for the status line.
    pub what: String,
}

pub struct Item {
    pub line: Line<'static>,
    pub jump: Option<Jump>,
}

fn jump(target: Target, filter: impl Into<String>, what: impl Into<String>) -> Option<Jump> {
    Some(Jump { target, filter: filter.into(), what: what.into() })
}

/// `id=1 or id=5 ...`: the rows a line counted by id.
fn ids(v: &[i64]) -> String {
    v.iter().map(|i| format!("id={i}")).collect::<Vec<_>>().join(" or ")
}

/// `label N`, the number in `role` when it is not zero.
fn count_line(t: &Theme, label: &'static str, n: i64, role: &str) -> Line<'static> {
    Line::from(vec![Span::raw(label), Span::styled(group(n as u64), if n > 0 { t.get(role) } else { t.get("alert_ok") })])
}

/// The summary for a panel `width` columns wide (the sparklines fill it).
pub fn items(s: &Standup, t: &Theme, width: u16) -> Vec<Item> {
    let mut out = Vec::new();
    let mut text = |line: Line<'static>| out.push(Item { line, jump: None });
    let (Some(since), Some(until)) = (s.since, s.until) else {
        text(Line::from("No scans in the store yet."));
        text(Line::from(""));
        text(Line::from(":import PATH loads scanner reports;"));
        text(Line::from("`ctem demo` loads the sample estate."));
        return out;
    };
    text(Line::from(Span::styled(format!("{} → {}", since.format("%m-%d %H:%M"), until.format("%m-%d %H:%M")), t.get("dim"))));
    let hours = (until - since).num_hours();
    let span = if hours % 24 == 0 { format!("{} d", hours / 24) } else { format!("{hours} h") };
    let span = if span == "1 d" { "24 h".to_string() } else { span };
    let about = match s.last_standup {
        Some(h) => format!("since the stand-up of {}", h.format("%m-%d %H:%M")),
        None => format!("{span} up to the latest scan"),
    };
    text(Line::from(Span::styled(about, t.get("dim"))));
    text(Line::from(Span::styled(format!("{:<9}{:>7}{:>7}{:>9}", "", "new", "fixed", "reopened"), t.get("column_header"))));
    let mut tot = (0, 0, 0);
    for (sev, n, fx, ro) in &s.by_severity {
        tot = (tot.0 + n, tot.1 + fx, tot.2 + ro);
        out.push(Item {
            line: Line::from(vec![
                Span::styled(format!("{sev:<9}"), t.severity(sev)),
                Span::raw(format!("{:>7}{:>7}{:>9}", group(*n as u64), group(*fx as u64), group(*ro as u64))),
            ]),
            jump: jump(Target::Changes, format!("sev={sev}"), format!("{sev} findings new, fixed or reopened in the window")),
        });
    }
    out.push(Item {
        line: Line::from(Span::styled(
            format!("{:<9}{:>7}{:>7}{:>9}", "total", group(tot.0 as u64), group(tot.1 as u64), group(tot.2 as u64)),
            t.get("header"),
        )),
        jump: jump(Target::Changes, "", "everything new, fixed or reopened in the window"),
    });
    let delta = s.open_now - s.open_before;
    out.push(Item {
        line: Line::from(vec![
            Span::raw(format!("open {} ", group(s.open_now as u64))),
            Span::styled(
                format!("({}{} in the window)", if delta >= 0 { "+" } else { "-" }, group(delta.unsigned_abs())),
                if delta > 0 { t.get("alert_warn") } else { t.get("alert_ok") },
            ),
        ]),
        jump: jump(Target::Queue, "", "every open finding, most urgent first"),
    });
    if s.new_by_priority.iter().sum::<i64>() > 0 || s.p1_p2_now > 0 {
        let mut v = vec![Span::raw("new ")];
        for (i, role) in ["prio_p1", "prio_p2", "prio_p3", "prio_p4"].iter().enumerate() {
            v.push(Span::styled(format!("P{} {} ", i + 1, group(s.new_by_priority[i] as u64)), t.get(role)));
        }
        out.push(Item { line: Line::from(v), jump: jump(Target::Changes, "change=new", "findings first seen in the window") });
        out.push(Item {
            line: count_line(t, "new on CISA KEV ", s.new_kev, "alert_error"),
            jump: jump(
                Target::Changes,
                "change=new and kev=true and (status=open or status=reopened)",
                "open findings on CISA KEV first seen in the window",
            ),
        });
        let d = s.p1_p2_now - s.p1_p2_before;
        out.push(Item {
            line: Line::from(vec![
                Span::raw(format!("open P1+P2 {} ", group(s.p1_p2_now as u64))),
                Span::styled(format!("({}{})", if d >= 0 { "+" } else { "-" }, group(d.unsigned_abs())), if d > 0 { t.get("alert_warn") } else { t.get("alert_ok") }),
            ]),
            jump: jump(Target::Queue, "prio>=P2", "open P1 and P2 findings"),
        });
        // The latest days that fit the panel.
        let n = (width as usize).saturating_sub(12).min(s.trend_p1.len());
        let tail = |v: &[i64]| v[v.len().saturating_sub(n)..].to_vec();
        out.push(Item {
            line: Line::from(vec![Span::styled(format!("P1 {n:>2}d "), t.get("prio_p1")), Span::raw(crate::report::spark(&tail(&s.trend_p1)))]),
            jump: jump(Target::Queue, "prio=P1", "open P1 findings"),
        });
        out.push(Item {
            line: Line::from(vec![Span::styled(format!("P2 {n:>2}d "), t.get("prio_p2")), Span::raw(crate::report::spark(&tail(&s.trend_p2)))]),
            jump: jump(Target::Queue, "prio=P2", "open P2 findings"),
        });
    }
    if s.mttr_days.iter().any(Option::is_some) {
        let m = |d: Option<f64>| d.map(|d| format!("{d:.1}d")).unwrap_or_else(|| "-".into());
        let from = until - chrono::Duration::days(30);
        out.push(Item {
            line: Line::from(vec![
                Span::raw("MTTR 30d "),
                Span::styled(format!("P1 {}", m(s.mttr_days[0])), t.get("prio_p1")),
                Span::raw(" · "),
                Span::styled(format!("P2 {}", m(s.mttr_days[1])), t.get("prio_p2")),
            ]),
            jump: jump(
                Target::Findings,
                format!("status=fixed and prio>=P2 and fixed_at>\"{}\" and fixed_at<=\"{}\"", from.format("%Y-%m-%d %H:%M:%S"), until.format("%Y-%m-%d %H:%M:%S")),
                "P1 and P2 findings fixed in the 30 days up to the window's end",
            ),
        });
    }
    // SLA dates are counted against the window's last day, as the report does.
    let day = until.date();
    if s.sla_past_due > 0 || s.sla_due_3d > 0 {
        out.push(Item {
            line: count_line(t, "SLA past due ", s.sla_past_due, "alert_error"),
            jump: jump(Target::Findings, format!("due<{day}"), format!("open findings due before {day}")),
        });
        out.push(Item {
            line: count_line(t, "SLA due within 3 days ", s.sla_due_3d, "alert_warn"),
            jump: jump(
                Target::Findings,
                format!("due>={day} and due<={}", day + chrono::Duration::days(3)),
                format!("open findings due {day} to {}", day + chrono::Duration::days(3)),
            ),
        });
    }
    // Counts of work items and exceptions: each opens the rows it counted, by id.
    let lists: [(&str, &Vec<i64>, &str, Target, &str); 4] = [
        ("exceptions expiring ≤7d ", &s.exceptions_expiring, "alert_warn", Target::Exceptions, "active exceptions expiring within 7 days"),
        ("work verified by rescans ", &s.work_verified, "alert_ok", Target::WorkItems, "work items rescans verified in the window"),
        ("work reopened (regressions) ", &s.work_reopened, "alert_warn", Target::WorkItems, "work items regressions reopened in the window"),
        ("tickets moved in trackers ", &s.tickets_moved, "key", Target::WorkItems, "work items whose ticket moved in Jira or ServiceNow"),
    ];
    for (label, v, role, target, what) in lists {
        if !v.is_empty() {
            out.push(Item {
                line: Line::from(vec![Span::raw(label), Span::styled(group(v.len() as u64), t.get(role))]),
                jump: jump(target, ids(v), what),
            });
        }
    }
    out.push(Item { line: Line::from(Span::styled("Imports in the window", t.get("column_header"))), jump: None });
    for (id, line) in &s.imports {
        out.push(Item { line: Line::from(Span::raw(line.clone())), jump: jump(Target::Findings, format!("import={id}"), format!("findings import {id} reported")) });
    }
    out
}
