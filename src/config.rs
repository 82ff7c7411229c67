//! `config.toml` in the config directory: theme, key overrides and console defaults.
//! A file with errors gives one-line warnings naming the file and line, and the defaults.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub theme: String,
    /// action name -> keys
    pub keys: Vec<(String, Vec<String>)>,
    /// Tab the console opens on (`standup`, `discovery` ...).
    pub start_tab: Option<String>,
    /// Scope activated at start.
    pub scope: Option<String>,
    /// Risk factor weights and priority thresholds (`[weights]`).
    pub weights: crate::risk::Weights,
    /// Routing rules (`[routing]`) and SLA policy (`[sla]`).
    pub routing: crate::routing::Routing,
    pub sla: crate::routing::Sla,
    /// Why `[routing]`/`[sla]` were not usable: commands that route refuse to run while it is set.
    pub routing_error: Option<String>,
    /// Name recorded in the audit log (`user = "..."`; default: the login name).
    pub user: Option<String>,
    /// Limits for statements typed in the SQL pane and `ctem query` (`[sql] memory_limit`, `threads`).
    pub sql_memory_limit: Option<String>,
    pub sql_threads: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            theme: "default".into(),
            keys: Vec::new(),
            start_tab: None,
            scope: None,
            weights: Default::default(),
            routing: Default::default(),
            sla: Default::default(),
            routing_error: None,
            user: None,
            sql_memory_limit: None,
            sql_threads: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Keys {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Console {
    start_tab: Option<String>,
    scope: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Sql {
    memory_limit: Option<String>,
    threads: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    theme: Option<String>,
    #[serde(default)]
    keys: BTreeMap<String, Keys>,
    #[serde(default)]
    console: Console,
    /// Checked and read by `risk::Weights::parse`.
    #[serde(default)]
    weights: Option<toml::Value>,
    /// Checked and read by `routing::parse`.
    #[serde(default)]
    routing: Option<toml::Value>,
    #[serde(default)]
    sla: Option<toml::Value>,
    user: Option<String>,
    /// Checked and read by `sync::config` when a sync runs.
    #[serde(default)]
    sql: Sql,
    #[serde(default, rename = "jira")]
    _jira: Option<toml::Value>,
    #[serde(default, rename = "servicenow")]
    _servicenow: Option<toml::Value>,
    #[serde(default, rename = "sync")]
    _sync: Option<toml::Value>,
}

pub const EXAMPLE: &str = r#"# ctem configuration
theme = "default"          # default, light, high-contrast, monochrome, or a file in themes/
# user = "dana"            # your name in the audit log (default: the login name)

[console]
start_tab = "standup"      # standup, scoping, discovery, prioritization, validation, mobilization, sql
# scope = "prod"           # scope activated at start

[weights]                  # risk score: points per factor (0-100) and priority thresholds
# severity = 30            # CVSS 10 earns this much (CVSS / 10 of it; severity stands in without CVSS)
# kev = 35                 # listed in CISA KEV
# ransomware = 5           # KEV entry with known ransomware use
# epss = 25                # EPSS probability 1.0 earns this much
# exploit = 10             # the scanner reports a public exploit (not in KEV)
# internet = 10            # internet-facing asset, public IP, or a cloud exposure finding
# criticality = 10         # asset criticality 5: +10, 1: -10
# runtime = 5              # running workload or listening service
# non_production = 10      # subtracted for dev, test, staging
# mitigated = 30           # subtracted when healthy blocking controls protect against every exploitation technique
# p1 = 70                  # score thresholds of P1, P2, P3 (info findings are always P4)
# p2 = 45
# p3 = 25

[routing]                  # who fixes what: the first matching rule wins
# min_priority = "P3"      # `ctem plan` makes work items for findings at this priority or above
# [[routing.rule]]
# name = "payments web"
# business_unit = "payments"        # each condition: a value or a list of values
# environment = ["prod"]
# category = ["web", "code"]        # vulnerability, misconfiguration, secret, code, web
# tool = "zap"                      # also: scope, owner, tag
# team = "appsec"                   # or "@owner": the asset's owner
# assignee = "dana@example.com"
# jira_project = "APPSEC"
# servicenow_group = "AppSec L2"
# [routing.default]
# team = "@owner"

[sla]                      # days to fix by priority; a CISA KEV due date caps them
# p1 = 7
# p2 = 30
# p3 = 90
# p4 = 180
# reopened = "restart"     # restart: a reopened finding's clock starts again; keep: it counts from first sighting
# max_acceptance_days = 365

[sql]                      # limits for statements typed in the SQL pane and `ctem query`
# memory_limit = "2GB"
# threads = 2

[keys]                     # action = "key" or ["key", "key"]; replaces the action's default keys
# quit = ["q", "ctrl-q"]
# export = "ctrl-x"
"#;

/// The 1-based line of a byte offset (for "file line N" warnings).
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

impl Config {
    pub fn parse(text: &str, file: &str, warnings: &mut Vec<String>) -> Config {
        let f: File = match toml::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
                let msg = e.message().lines().next().unwrap_or("").to_string();
                warnings.push(format!("{file} line {line}: {msg}; using defaults"));
                return Config::default();
            }
        };
        let (routing, sla, routing_error) = if f.routing.is_some() || f.sla.is_some() {
            match crate::routing::parse(text, file) {
                Ok((r, s)) => (r, s, None),
                Err(e) => {
                    warnings.push(format!("{e}; routing and SLAs unusable until fixed"));
                    (Default::default(), Default::default(), Some(e))
                }
            }
        } else {
            (Default::default(), Default::default(), None)
        };
        let memory_ok = |m: &str| {
            let t = m.trim().to_ascii_uppercase();
            let num: String = t.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let unit = t[num.len()..].trim();
            !num.is_empty() && ["", "B", "KB", "MB", "GB", "TB", "KIB", "MIB", "GIB", "TIB"].contains(&unit)
        };
        let sql_memory_limit = match f.sql.memory_limit {
            Some(m) if memory_ok(&m) => Some(m.trim().to_string()),
            Some(m) => {
                warnings.push(format!("{file}: [sql] memory_limit '{m}' is not a size like \"2GB\"; the engine's default applies"));
                None
            }
            None => None,
        };
        let sql_threads = match f.sql.threads {
            Some(n) if (1..=256).contains(&n) => Some(n),
            Some(n) => {
                warnings.push(format!("{file}: [sql] threads {n} is not between 1 and 256; the engine's default applies"));
                None
            }
            None => None,
        };
        Config {
            sql_memory_limit,
            sql_threads,
            routing,
            sla,
            routing_error,
            user: f.user.filter(|u| !u.trim().is_empty()),
            theme: f.theme.unwrap_or_else(|| "default".into()),
            keys: f
                .keys
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        match v {
                            Keys::One(s) => vec![s],
                            Keys::Many(v) => v,
                        },
                    )
                })
                .collect(),
            start_tab: f.console.start_tab,
            scope: f.console.scope,
            weights: match &f.weights {
                None => Default::default(),
                Some(_) => crate::risk::Weights::parse(text, file).unwrap_or_else(|e| {
                    warnings.push(format!("{e}; using the default weights"));
                    Default::default()
                }),
            },
        }
    }

    /// Read `path` if it exists (a missing file is the defaults, silently).
    pub fn load(path: &Path, warnings: &mut Vec<String>) -> Config {
        match std::fs::read_to_string(path) {
            Ok(t) => Config::parse(&t, &path.display().to_string(), warnings),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => {
                warnings.push(format!("{}: {e}; using defaults", path.display()));
                Config::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_cleanly() {
        let mut w = Vec::new();
        let c = Config::parse(EXAMPLE, "config.toml", &mut w);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.start_tab.as_deref(), Some("standup"));
    }

    #[test]
    fn keys_accept_one_or_many() {
        let mut w = Vec::new();
        let c = Config::parse("[keys]\nquit = [\"q\", \"ctrl-q\"]\nexport = \"ctrl-x\"\n", "c", &mut w);
        assert_eq!(c.keys, vec![("export".into(), vec!["ctrl-x".into()]), ("quit".into(), vec!["q".into(), "ctrl-q".into()])]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let mut w = Vec::new();
        let c = Config::parse("theme = \"light\"\n\n[console]\nstart = 3\n", "/x/config.toml", &mut w);
        assert_eq!(c, Config::default());
        assert!(w[0].starts_with("/x/config.toml line 4:"), "{w:?}");
    }
}
