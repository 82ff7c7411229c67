//! Themes: styles named by role, loaded from TOML (embedded, or overridden from the config dir), with parents.

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use std::collections::HashMap;
use crate::config::line_of;
use std::path::Path;

/// Every role a theme may style. Widgets ask by role, never by colour.
pub const ROLES: &[&str] = &[
    "text", "dim", "border", "border_focus", "title", "title_focus", "header", "header_bar", "tab", "tab_active",
    "selection", "selection_unfocused", "mark", "column_header", "sort_indicator", "status", "key", "command",
    "input", "alert_error", "alert_warn", "alert_ok", "progress", "sev_critical", "sev_high", "sev_medium",
    "sev_low", "sev_info", "prio_p1", "prio_p2", "prio_p3", "prio_p4", "status_open", "status_fixed",
    "status_reopened", "status_other", "stage_standup", "stage_scoping", "stage_discovery",
    "stage_prioritization", "stage_validation", "stage_mobilization", "stage_sql", "sql_keyword", "sql_string",
    "sql_number", "sql_comment",
];

pub const BUILTIN: &[(&str, &str)] = &[
    ("default", include_str!("../../themes/default.toml")),
    ("light", include_str!("../../themes/light.toml")),
    ("high-contrast", include_str!("../../themes/high-contrast.toml")),
    ("monochrome", include_str!("../../themes/monochrome.toml")),
];

#[derive(Debug, Clone)]
pub struct Theme {
    pub name: String,
    styles: HashMap<&'static str, Style>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: Option<String>,
    parent: Option<String>,
    #[serde(default)]
    roles: HashMap<String, StyleSpec>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StyleSpec {
    Full(FullSpec),
    Fg(toml::Value),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FullSpec {
    fg: Option<toml::Value>,
    bg: Option<toml::Value>,
    #[serde(default)]
    bold: bool,
    #[serde(default)]
    dim: bool,
    #[serde(default)]
    italic: bool,
    #[serde(default)]
    underline: bool,
    #[serde(default)]
    reverse: bool,
}

/// Whether the terminal shows 24-bit colour; if not, hex colours are reduced to the 256-colour cube.
pub fn truecolor() -> bool {
    std::env::var("COLORTERM").map(|v| v == "truecolor" || v == "24bit").unwrap_or(false)
}

pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

fn named(s: &str) -> Option<Color> {
    Some(match s.to_ascii_lowercase().replace(['_', '-', ' '], "").as_str() {
        "reset" | "default" | "none" => Color::Reset,
        "black" => Color::Black,
        "red" => Color::Red,
        "green" => Color::Green,
        "yellow" => Color::Yellow,
        "blue" => Color::Blue,
        "magenta" => Color::Magenta,
        "cyan" => Color::Cyan,
        "gray" | "grey" => Color::Gray,
        "darkgray" | "darkgrey" => Color::DarkGray,
        "lightred" => Color::LightRed,
        "lightgreen" => Color::LightGreen,
        "lightyellow" => Color::LightYellow,
        "lightblue" => Color::LightBlue,
        "lightmagenta" => Color::LightMagenta,
        "lightcyan" => Color::LightCyan,
        "white" => Color::White,
        _ => return None,
    })
}

/// The nearest colour of the xterm 256-colour cube or grey ramp.
pub fn to_256(r: u8, g: u8, b: u8) -> u8 {
    let cube = |v: u8| -> u8 {
        if v < 48 {
            0
        } else if v < 115 {
            1
        } else {
            (v - 35) / 40
        }
    };
    let level = |i: u8| -> i32 { if i == 0 { 0 } else { 55 + 40 * i as i32 } };
    let (cr, cg, cb) = (cube(r), cube(g), cube(b));
    let cube_idx = 16 + 36 * cr + 6 * cg + cb;
    let (ri, gi_, bi) = (r as i32, g as i32, b as i32);
    let d = |x: i32, y: i32, z: i32| (x - ri).pow(2) + (y - gi_).pow(2) + (z - bi).pow(2);
    let cube_d = d(level(cr), level(cg), level(cb));
    let avg = (r as i32 + g as i32 + b as i32) / 3;
    let gi = if avg > 238 { 23 } else { ((avg - 3).max(0) / 10).min(23) };
    let gv = 8 + 10 * gi;
    let grey_d = d(gv, gv, gv);
    if grey_d < cube_d { 232 + gi as u8 } else { cube_idx }
}

fn color(v: &toml::Value, truecolor: bool) -> Result<Color, String> {
    match v {
        toml::Value::Integer(i) if (0..=255).contains(i) => Ok(Color::Indexed(*i as u8)),
        toml::Value::String(s) => {
            if let Some(hex) = s.strip_prefix('#') {
                if hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    let n = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                    let (r, g, b) = ((n >> 16) as u8, (n >> 8) as u8, n as u8);
                    return Ok(if truecolor { Color::Rgb(r, g, b) } else { Color::Indexed(to_256(r, g, b)) });
                }
                return Err(format!("'{s}' is not a #rrggbb colour"));
            }
            named(s).ok_or_else(|| format!("unknown colour '{s}'"))
        }
        other => Err(format!("{other} is not a colour (a name, 0-255 or #rrggbb)")),
    }
}

fn style(spec: &StyleSpec, truecolor: bool) -> Result<Style, String> {
    match spec {
        StyleSpec::Fg(v) => Ok(Style::default().fg(color(v, truecolor)?)),
        StyleSpec::Full(f) => {
            let mut s = Style::default();
            if let Some(c) = &f.fg {
                s = s.fg(color(c, truecolor)?);
            }
            if let Some(c) = &f.bg {
                s = s.bg(color(c, truecolor)?);
            }
            let mut m = Modifier::empty();
            for (on, bit) in [
                (f.bold, Modifier::BOLD),
                (f.dim, Modifier::DIM),
                (f.italic, Modifier::ITALIC),
                (f.underline, Modifier::UNDERLINED),
                (f.reverse, Modifier::REVERSED),
            ] {
                if on {
                    m |= bit;
                }
            }
            Ok(s.add_modifier(m))
        }
    }
}


/// Where theme sources come from: built-ins, shadowed by `<config>/themes/NAME.toml`.
pub struct ThemeSource<'a> {
    pub user_dir: Option<&'a Path>,
}

impl ThemeSource<'_> {
    fn text(&self, name: &str) -> Option<(String, String)> {
        if let Some(dir) = self.user_dir {
            let p = dir.join(format!("{name}.toml"));
            if let Ok(t) = std::fs::read_to_string(&p) {
                return Some((p.display().to_string(), t));
            }
        }
        BUILTIN.iter().find(|(n, _)| *n == name).map(|(n, t)| (format!("themes/{n}.toml (built in)"), t.to_string()))
    }

    /// Every theme name available.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        if let Some(dir) = self.user_dir {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "toml") {
                        if let Some(s) = p.file_stem() {
                            let s = s.to_string_lossy().to_string();
                            if !v.contains(&s) {
                                v.push(s);
                            }
                        }
                    }
                }
            }
        }
        v
    }

    /// Load a theme by name, following parents. Problems become warnings ("file line N: ..."); whatever
    /// could not be read falls back to the parent or the default theme.
    pub fn load(&self, name: &str, warnings: &mut Vec<String>) -> Theme {
        let truecolor = truecolor();
        let mut chain: Vec<(String, ThemeFile, String)> = Vec::new();
        let mut next = Some(name.to_string());
        while let Some(n) = next.take() {
            if chain.iter().any(|(x, _, _)| *x == n) || chain.len() > 8 {
                warnings.push(format!("theme '{n}': parent loop; stopped there"));
                break;
            }
            let Some((file, text)) = self.text(&n) else {
                warnings.push(format!("theme '{n}' not found; using default"));
                if n != "default" {
                    next = Some("default".into());
                }
                continue;
            };
            match toml::from_str::<ThemeFile>(&text) {
                Ok(tf) => {
                    next = tf.parent.clone();
                    chain.push((n, tf, file));
                }
                Err(e) => {
                    let line = e.span().map(|s| line_of(&text, s.start)).unwrap_or(1);
                    let msg = e.message().lines().next().unwrap_or("").to_string();
                    warnings.push(format!("{file} line {line}: {msg}; using default"));
                    if n != "default" {
                        next = Some("default".into());
                    }
                }
            }
        }
        let mut styles: HashMap<&'static str, Style> = ROLES.iter().map(|r| (*r, Style::default())).collect();
        for (_, tf, file) in chain.iter().rev() {
            let mut keys: Vec<&String> = tf.roles.keys().collect();
            keys.sort();
            for k in keys {
                let Some(role) = ROLES.iter().find(|r| **r == k.as_str()) else {
                    warnings.push(format!("{file}: unknown role '{k}' ignored"));
                    continue;
                };
                match style(&tf.roles[k], truecolor) {
                    Ok(s) => {
                        styles.insert(role, s);
                    }
                    Err(e) => warnings.push(format!("{file}: role '{k}': {e}")),
                }
            }
        }
        let shown = chain.first().and_then(|(_, tf, _)| tf.name.clone()).unwrap_or_else(|| name.to_string());
        Theme { name: shown, styles }
    }
}

impl Theme {
    pub fn get(&self, role: &str) -> Style {
        self.styles.get(role).copied().unwrap_or_default()
    }

    pub fn severity(&self, sev: &str) -> Style {
        match sev {
            "critical" => self.get("sev_critical"),
            "high" => self.get("sev_high"),
            "medium" => self.get("sev_medium"),
            "low" => self.get("sev_low"),
            _ => self.get("sev_info"),
        }
    }

    pub fn priority(&self, p: &str) -> Style {
        match p {
            "P1" => self.get("prio_p1"),
            "P2" => self.get("prio_p2"),
            "P3" => self.get("prio_p3"),
            _ => self.get("prio_p4"),
        }
    }

    pub fn status(&self, s: &str) -> Style {
        match s {
            "open" => self.get("status_open"),
            "fixed" => self.get("status_fixed"),
            "reopened" => self.get("status_reopened"),
            _ => self.get("status_other"),
        }
    }

    pub fn builtin(name: &str) -> Theme {
        let mut w = Vec::new();
        ThemeSource { user_dir: None }.load(name, &mut w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load_without_warnings() {
        for (n, _) in BUILTIN {
            let mut w = Vec::new();
            let t = ThemeSource { user_dir: None }.load(n, &mut w);
            assert!(w.is_empty(), "{n}: {w:?}");
            assert_eq!(t.name, *n);
        }
    }

    #[test]
    fn parent_roles_are_inherited() {
        let light = Theme::builtin("light");
        let default = Theme::builtin("default");
        assert_eq!(light.get("sql_keyword"), default.get("sql_keyword"));
        assert_ne!(light.get("border_focus"), default.get("border_focus"));
    }

    #[test]
    fn default_uses_only_ansi_colours() {
        let t = Theme::builtin("default");
        for r in ROLES {
            let s = t.get(r);
            for c in [s.fg, s.bg].into_iter().flatten() {
                assert!(!matches!(c, Color::Rgb(..) | Color::Indexed(_)), "{r} uses {c:?}");
            }
        }
    }

    #[test]
    fn bad_theme_warns_with_line_and_falls_back() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("broken.toml"), "name = \"broken\"\n[roles]\nsev_high = { fg = \"red\"\n").unwrap();
        let mut w = Vec::new();
        let t = ThemeSource { user_dir: Some(d.path()) }.load("broken", &mut w);
        assert_eq!(t.name, "default");
        assert!(w[0].contains("broken.toml line 3"), "{w:?}");
        std::fs::write(d.path().join("odd.toml"), "parent = \"default\"\n[roles]\nsev_high = \"ultraviolet\"\nnope = \"red\"\n").unwrap();
        let mut w = Vec::new();
        let t = ThemeSource { user_dir: Some(d.path()) }.load("odd", &mut w);
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(t.get("sev_high"), Theme::builtin("default").get("sev_high"));
    }

    #[test]
    fn hex_reduces_to_256() {
        assert_eq!(to_256(0xff, 0, 0), 196);
        assert_eq!(to_256(0, 0, 0), 16);
        assert_eq!(to_256(0x80, 0x80, 0x80), 244);
    }
}
