//! Keys map to actions through one table, which also writes the help overlay and the status line.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::HashMap;

/// Everything a key can ask for. Panes interpret the movement and table actions for their focused list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Quit,
    ForceQuit,
    Suspend,
    Help,
    Command,
    Filter,
    Back,
    Tab(usize),
    NextTab,
    PrevTab,
    NextPane,
    PrevPane,
    Up,
    Down,
    PageUp,
    PageDown,
    HalfUp,
    HalfDown,
    Top,
    Bottom,
    Left,
    Right,
    Open,
    SortNext,
    SortReverse,
    Columns,
    Mark,
    RangeMark,
    ClearMarks,
    Copy,
    Export,
    Refresh,
    New,
    Edit,
    Delete,
    Activate,
    Run,
    HandOff,
    MoveForward,
    MoveBack,
    Assign,
    Except,
    Queues,
}

impl Action {
    /// The name used in `config.toml` `[keys]` and shown in help.
    pub fn name(self) -> String {
        match self {
            Action::Tab(n) => format!("tab_{}", n + 1),
            a => {
                let s = format!("{a:?}");
                let mut o = String::new();
                for (i, c) in s.chars().enumerate() {
                    if c.is_uppercase() && i > 0 {
                        o.push('_');
                    }
                    o.push(c.to_ascii_lowercase());
                }
                o
            }
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Action::Quit => "quit",
            Action::ForceQuit => "quit at once",
            Action::Suspend => "suspend to the shell (fg resumes)",
            Action::Help => "this help",
            Action::Command => "command line (:help lists commands)",
            Action::Filter => "filter the focused table",
            Action::Back => "back one level / close",
            Action::Tab(_) => "jump to tab",
            Action::NextTab => "next tab",
            Action::PrevTab => "previous tab",
            Action::NextPane => "next pane / view",
            Action::PrevPane => "previous pane / view",
            Action::Up => "up",
            Action::Down => "down",
            Action::PageUp => "page up",
            Action::PageDown => "page down",
            Action::HalfUp => "half page up",
            Action::HalfDown => "half page down",
            Action::Top => "first row",
            Action::Bottom => "last row",
            Action::Left => "previous column",
            Action::Right => "next column",
            Action::Open => "open the detail",
            Action::SortNext => "sort by the focused column (again: reverse)",
            Action::SortReverse => "reverse the sort",
            Action::Columns => "show / hide columns",
            Action::Mark => "mark the row",
            Action::RangeMark => "mark a range (from the last mark)",
            Action::ClearMarks => "clear marks",
            Action::Copy => "copy the focused cell (OSC 52)",
            Action::Export => "export the filtered rows (CSV / JSON)",
            Action::Refresh => "reload from the store",
            Action::New => "new",
            Action::Edit => "edit",
            Action::Delete => "delete",
            Action::Activate => "activate / use",
            Action::Run => "run",
            Action::HandOff => "hand the marked findings (or the fix group) to Mobilization as work items",
            Action::MoveForward => "board: move the card (or the marked cards) to the next status",
            Action::MoveBack => "board: move the card (or the marked cards) to the previous status",
            Action::Assign => "board: assign the card (or the marked cards)",
            Action::Queues => "saved queues: narrow the findings to a saved query's rows",
            Action::Except => "risk acceptance or false positive for the card, or the marked findings of the queue (needs an approver)",
        }
    }

    pub fn all() -> Vec<Action> {
        use Action::*;
        let mut v = vec![
            Quit, ForceQuit, Suspend, Help, Command, Filter, Back, NextTab, PrevTab, NextPane, PrevPane, Up, Down,
            PageUp, PageDown, HalfUp, HalfDown, Top, Bottom, Left, Right, Open, SortNext, SortReverse, Columns,
            Mark, RangeMark, ClearMarks, Copy, Export, Refresh, New, Edit, Delete, Activate, Run, HandOff,
            MoveForward, MoveBack, Assign, Except, Queues,
        ];
        for i in 0..7 {
            v.push(Tab(i));
        }
        v
    }
}

/// A key as written in config: `q`, `G`, `ctrl-e`, `shift-tab`, `f1`, `pgdn`, `enter`, `space`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub fn from_event(e: &KeyEvent) -> Key {
        let mut code = e.code;
        // Shift is carried by the character itself; Shift-Tab arrives as BackTab.
        if let KeyCode::Char(c) = code {
            if e.modifiers.contains(KeyModifiers::CONTROL) {
                code = KeyCode::Char(c.to_ascii_lowercase());
            }
        }
        Key { code, ctrl: e.modifiers.contains(KeyModifiers::CONTROL), alt: e.modifiers.contains(KeyModifiers::ALT) }
    }

    pub fn parse(s: &str) -> Result<Key, String> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = s.trim();
        loop {
            let l = rest.to_ascii_lowercase();
            if let Some(r) = l.strip_prefix("ctrl-").or_else(|| l.strip_prefix("c-")) {
                ctrl = true;
                rest = &rest[rest.len() - r.len()..];
            } else if let Some(r) = l.strip_prefix("alt-").or_else(|| l.strip_prefix("m-")) {
                alt = true;
                rest = &rest[rest.len() - r.len()..];
            } else {
                break;
            }
        }
        let lower = rest.to_ascii_lowercase();
        let code = match lower.as_str() {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "shift-tab" | "backtab" => KeyCode::BackTab,
            "space" => KeyCode::Char(' '),
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "pgup" | "pageup" => KeyCode::PageUp,
            "pgdn" | "pagedown" => KeyCode::PageDown,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "backspace" => KeyCode::Backspace,
            "delete" | "del" => KeyCode::Delete,
            f if f.starts_with('f') && f.len() > 1 && f[1..].chars().all(|c| c.is_ascii_digit()) => {
                KeyCode::F(f[1..].parse().map_err(|_| format!("bad key '{s}'"))?)
            }
            _ => {
                let mut cs = rest.chars();
                match (cs.next(), cs.next()) {
                    (Some(c), None) => KeyCode::Char(if ctrl { c.to_ascii_lowercase() } else { c }),
                    _ => return Err(format!("unknown key '{s}'")),
                }
            }
        };
        Ok(Key { code, ctrl, alt })
    }

    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::Char(' ') => "Space".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::Backspace => "BS".into(),
            KeyCode::Delete => "Del".into(),
            KeyCode::F(n) => format!("F{n}"),
            KeyCode::Char(c) => c.to_string(),
            other => format!("{other:?}"),
        };
        let mut s = String::new();
        if self.ctrl {
            s.push_str("C-");
        }
        if self.alt {
            s.push_str("M-");
        }
        s + &base
    }
}

#[derive(Debug, Clone)]
pub struct Keymap {
    map: HashMap<Key, Action>,
}

const DEFAULTS: &[(&str, Action)] = &[
    ("q", Action::Quit),
    ("ctrl-c", Action::ForceQuit),
    ("ctrl-z", Action::Suspend),
    ("?", Action::Help),
    ("f1", Action::Help),
    (":", Action::Command),
    ("/", Action::Filter),
    ("esc", Action::Back),
    ("1", Action::Tab(0)),
    ("2", Action::Tab(1)),
    ("3", Action::Tab(2)),
    ("4", Action::Tab(3)),
    ("5", Action::Tab(4)),
    ("6", Action::Tab(5)),
    ("7", Action::Tab(6)),
    ("]", Action::NextTab),
    ("[", Action::PrevTab),
    ("tab", Action::NextPane),
    ("shift-tab", Action::PrevPane),
    ("k", Action::Up),
    ("up", Action::Up),
    ("j", Action::Down),
    ("down", Action::Down),
    ("pgup", Action::PageUp),
    ("ctrl-b", Action::PageUp),
    ("pgdn", Action::PageDown),
    ("ctrl-f", Action::PageDown),
    ("ctrl-u", Action::HalfUp),
    ("ctrl-d", Action::HalfDown),
    ("g", Action::Top),
    ("home", Action::Top),
    ("G", Action::Bottom),
    ("end", Action::Bottom),
    ("h", Action::Left),
    ("left", Action::Left),
    ("l", Action::Right),
    ("right", Action::Right),
    ("enter", Action::Open),
    ("s", Action::SortNext),
    ("S", Action::SortReverse),
    ("c", Action::Columns),
    ("space", Action::Mark),
    ("v", Action::RangeMark),
    ("V", Action::ClearMarks),
    ("y", Action::Copy),
    ("ctrl-e", Action::Export),
    ("ctrl-r", Action::Refresh),
    ("f5", Action::Run),
    ("n", Action::New),
    ("e", Action::Edit),
    ("d", Action::Delete),
    ("a", Action::Activate),
    ("w", Action::HandOff),
    (">", Action::MoveForward),
    ("<", Action::MoveBack),
    ("A", Action::Assign),
    ("x", Action::Except),
    ("Q", Action::Queues),
];

impl Default for Keymap {
    fn default() -> Self {
        let map = DEFAULTS.iter().map(|(k, a)| (Key::parse(k).expect("default key"), *a)).collect();
        Keymap { map }
    }
}

impl Keymap {
    /// Defaults with the user's overrides (`action = "key"` or `action = ["key", "key"]`); an override
    /// replaces that action's default keys. Problems become warnings.
    pub fn with_overrides(overrides: &[(String, Vec<String>)], warnings: &mut Vec<String>) -> Keymap {
        let mut km = Keymap::default();
        let all = Action::all();
        for (name, keys) in overrides {
            let Some(action) = all.iter().find(|a| a.name() == *name).copied() else {
                warnings.push(format!("config [keys]: unknown action '{name}'"));
                continue;
            };
            let mut parsed = Vec::new();
            for k in keys {
                match Key::parse(k) {
                    Ok(key) => parsed.push(key),
                    Err(e) => warnings.push(format!("config [keys] {name}: {e}")),
                }
            }
            if parsed.is_empty() {
                continue;
            }
            km.map.retain(|_, a| *a != action);
            for key in parsed {
                km.map.insert(key, action);
            }
        }
        km
    }

    pub fn action(&self, e: &KeyEvent) -> Option<Action> {
        self.map.get(&Key::from_event(e)).copied()
    }

    /// The keys bound to an action, shortest first.
    pub fn keys_for(&self, a: Action) -> Vec<String> {
        let mut v: Vec<String> = self.map.iter().filter(|(_, x)| **x == a).map(|(k, _)| k.label()).collect();
        v.sort_by_key(|s| (s.chars().count(), s.clone()));
        v
    }

    pub fn first_key(&self, a: Action) -> String {
        self.keys_for(a).into_iter().next().unwrap_or_else(|| format!(":{}", a.name()))
    }

    /// Help lines: keys, then what they do, for every bound action (jump-to-tab folded into one line).
    pub fn help(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut tabs_done = false;
        for a in Action::all() {
            if let Action::Tab(_) = a {
                if tabs_done {
                    continue;
                }
                tabs_done = true;
                let ks: Vec<String> = (0..7).flat_map(|i| self.keys_for(Action::Tab(i))).collect();
                if !ks.is_empty() {
                    out.push((format!("{}-{}", ks[0], ks[ks.len() - 1]), "jump to tab".into()));
                }
                continue;
            }
            let ks = self.keys_for(a);
            if !ks.is_empty() {
                out.push((ks.join(" "), a.describe().to_string()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn defaults_map_common_keys() {
        let km = Keymap::default();
        assert_eq!(km.action(&ev(KeyCode::Char('j'), KeyModifiers::NONE)), Some(Action::Down));
        assert_eq!(km.action(&ev(KeyCode::Char('G'), KeyModifiers::SHIFT)), Some(Action::Bottom));
        assert_eq!(km.action(&ev(KeyCode::Char('c'), KeyModifiers::CONTROL)), Some(Action::ForceQuit));
        assert_eq!(km.action(&ev(KeyCode::F(1), KeyModifiers::NONE)), Some(Action::Help));
        assert_eq!(km.action(&ev(KeyCode::Char('3'), KeyModifiers::NONE)), Some(Action::Tab(2)));
        assert_eq!(km.action(&ev(KeyCode::BackTab, KeyModifiers::SHIFT)), Some(Action::PrevPane));
    }

    #[test]
    fn help_is_not_on_h() {
        let km = Keymap::default();
        assert_ne!(km.action(&ev(KeyCode::Char('h'), KeyModifiers::NONE)), Some(Action::Help));
        assert!(km.help().iter().any(|(k, d)| k.contains("F1") && d == "this help"));
    }

    #[test]
    fn overrides_replace_and_warn() {
        let mut w = Vec::new();
        let km = Keymap::with_overrides(
            &[("quit".into(), vec!["ctrl-q".into()]), ("fly".into(), vec!["x".into()]), ("copy".into(), vec!["ctrl-".into()])],
            &mut w,
        );
        assert_eq!(km.action(&ev(KeyCode::Char('q'), KeyModifiers::CONTROL)), Some(Action::Quit));
        assert_eq!(km.action(&ev(KeyCode::Char('q'), KeyModifiers::NONE)), None);
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(km.first_key(Action::Copy), "y");
    }

    #[test]
    fn action_names_round_trip() {
        assert_eq!(Action::SortNext.name(), "sort_next");
        assert_eq!(Action::Tab(0).name(), "tab_1");
    }
}
