//! Who fixes what, and by when: the `[routing]` rules and the `[sla]` policy of `config.toml`.
//!
//! Rules are tried in order; the first whose every condition holds names the team (or `@owner`, the
//! asset's owner), an optional assignee, a Jira project and a ServiceNow assignment group. A rule with no
//! conditions matches everything; `[routing.default]` catches what no rule matched (by default: the
//! asset owner). Rules compile to one SQL `CASE`, so routing a million findings is one pass.

use crate::config::line_of;
use crate::model::Category;
use serde::Deserialize;

#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    name: Option<String>,
    scope: Option<String>,
    business_unit: Option<OneOrMany>,
    environment: Option<OneOrMany>,
    owner: Option<OneOrMany>,
    tag: Option<OneOrMany>,
    category: Option<OneOrMany>,
    tool: Option<OneOrMany>,
    team: String,
    assignee: Option<String>,
    jira_project: Option<String>,
    servicenow_group: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct DefaultDef {
    team: Option<String>,
    assignee: Option<String>,
    jira_project: Option<String>,
    servicenow_group: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RoutingDef {
    #[serde(default)]
    rule: Vec<toml::Spanned<RuleDef>>,
    default: Option<DefaultDef>,
    min_priority: Option<toml::Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct SlaDef {
    p1: Option<u32>,
    p2: Option<u32>,
    p3: Option<u32>,
    p4: Option<u32>,
    reopened: Option<toml::Spanned<String>>,
    max_acceptance_days: Option<u32>,
}

#[derive(Deserialize)]
struct Top {
    routing: Option<RoutingDef>,
    sla: Option<SlaDef>,
}

/// One routing rule, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    /// Line in the file (for messages).
    pub line: usize,
    pub scope: Option<String>,
    pub business_unit: Vec<String>,
    pub environment: Vec<String>,
    pub owner: Vec<String>,
    pub tag: Vec<String>,
    pub category: Vec<String>,
    pub tool: Vec<String>,
    /// A team name, or `@owner` for the asset's owner.
    pub team: String,
    pub assignee: Option<String>,
    pub jira_project: Option<String>,
    pub servicenow_group: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub rules: Vec<Rule>,
    pub default: Rule,
    /// Findings at this priority or more urgent become work items in `ctem plan`.
    pub min_priority: String,
}

impl Default for Routing {
    fn default() -> Self {
        Routing { rules: Vec::new(), default: default_rule(None), min_priority: "P3".into() }
    }
}

fn default_rule(d: Option<DefaultDef>) -> Rule {
    let d = d.unwrap_or(DefaultDef { team: None, assignee: None, jira_project: None, servicenow_group: None });
    Rule {
        name: "default".into(),
        line: 0,
        scope: None,
        business_unit: vec![],
        environment: vec![],
        owner: vec![],
        tag: vec![],
        category: vec![],
        tool: vec![],
        team: d.team.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| "@owner".into()),
        assignee: d.assignee.filter(|s| !s.trim().is_empty()),
        jira_project: d.jira_project.filter(|s| !s.trim().is_empty()),
        servicenow_group: d.servicenow_group.filter(|s| !s.trim().is_empty()),
    }
}

/// The SLA policy: days to fix per priority, and the clock of reopened findings.
#[derive(Debug, Clone, PartialEq)]
pub struct Sla {
    pub days: [u32; 4],
    /// `restart` (the clock starts again when a fixed finding comes back) or `keep` (first sighting).
    pub reopened: String,
    /// Longest risk acceptance an exception may grant.
    pub max_acceptance_days: u32,
}

impl Default for Sla {
    fn default() -> Self {
        Sla { days: [7, 30, 90, 180], reopened: "restart".into(), max_acceptance_days: 365 }
    }
}

const PRIORITIES: [&str; 4] = ["P1", "P2", "P3", "P4"];

/// Read `[routing]` and `[sla]` from the text of config.toml. Errors name the file and line.
pub fn parse(text: &str, file: &str) -> Result<(Routing, Sla), String> {
    let top: Top = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
        format!("{file} line {line}: {}", e.message().lines().next().unwrap_or(""))
    })?;
    let mut routing = Routing::default();
    if let Some(r) = top.routing {
        if let Some(p) = &r.min_priority {
            let v = p.get_ref().trim().to_ascii_uppercase();
            if !PRIORITIES.contains(&v.as_str()) {
                return Err(format!("{file} line {}: routing.min_priority must be P1, P2, P3 or P4, not '{}'", line_of(text, p.span().start), p.get_ref()));
            }
            routing.min_priority = v;
        }
        for (i, sp) in r.rule.into_iter().enumerate() {
            let line = line_of(text, sp.span().start);
            let d = sp.into_inner();
            let at = |what: String| format!("{file} line {line}: routing rule {}: {what}", i + 1);
            if d.team.trim().is_empty() {
                return Err(at("team is empty".into()));
            }
            let lower = |v: &Option<OneOrMany>| -> Vec<String> {
                v.as_ref().map(|v| v.values().iter().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect()).unwrap_or_default()
            };
            let category = lower(&d.category);
            for c in &category {
                if Category::parse(c).is_none() {
                    return Err(at(format!("unknown category '{c}' (vulnerability, misconfiguration, secret, code, web)")));
                }
            }
            routing.rules.push(Rule {
                name: d.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| format!("rule {}", i + 1)),
                line,
                scope: d.scope.clone().filter(|s| !s.trim().is_empty()),
                business_unit: lower(&d.business_unit),
                environment: lower(&d.environment),
                owner: lower(&d.owner),
                tag: lower(&d.tag),
                category,
                tool: lower(&d.tool),
                team: d.team.trim().to_string(),
                assignee: d.assignee.filter(|s| !s.trim().is_empty()),
                jira_project: d.jira_project.filter(|s| !s.trim().is_empty()),
                servicenow_group: d.servicenow_group.filter(|s| !s.trim().is_empty()),
            });
        }
        routing.default = default_rule(r.default);
    }
    let mut sla = Sla::default();
    if let Some(s) = top.sla {
        for (i, v) in [s.p1, s.p2, s.p3, s.p4].into_iter().enumerate() {
            if let Some(d) = v {
                if d == 0 || d > 3650 {
                    return Err(format!("{file}: sla.p{} must be between 1 and 3650 days, not {d}", i + 1));
                }
                sla.days[i] = d;
            }
        }
        if let Some(r) = s.reopened {
            let v = r.get_ref().trim().to_ascii_lowercase();
            if v != "restart" && v != "keep" {
                return Err(format!("{file} line {}: sla.reopened must be \"restart\" or \"keep\", not '{}'", line_of(text, r.span().start), r.get_ref()));
            }
            sla.reopened = v;
        }
        if let Some(m) = s.max_acceptance_days {
            sla.max_acceptance_days = m.clamp(1, 3650);
        }
    }
    Ok((routing, sla))
}

use crate::store::sql_literal as quote;

fn in_list(expr: &str, vals: &[String]) -> String {
    format!("{expr} IN ({})", vals.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", "))
}

impl Routing {
    /// Every rule then the default, numbered from 1.
    pub fn all(&self) -> impl Iterator<Item = (usize, &Rule)> {
        self.rules.iter().chain(std::iter::once(&self.default)).enumerate().map(|(i, r)| (i + 1, r))
    }

    /// An SQL expression over `f` (findings) and `a` (assets) giving the number of the first rule that
    /// matches. `scope_sql` resolves a scope name to its asset condition (inlined, no parameters).
    pub fn case_sql(&self, scope_sql: &dyn Fn(&str) -> Result<String, String>, file: &str) -> Result<String, String> {
        if self.rules.is_empty() {
            return Ok("1".into());
        }
        let mut out = String::from("CASE");
        for (n, r) in self.all() {
            if n == self.rules.len() + 1 {
                break;
            }
            let mut conds = Vec::new();
            if let Some(s) = &r.scope {
                let sql = scope_sql(s).map_err(|e| format!("{file} line {}: routing rule '{}': {e}", r.line, r.name))?;
                conds.push(format!("f.asset_id IN (SELECT asset_id FROM assets WHERE {sql})"));
            }
            if !r.business_unit.is_empty() {
                conds.push(in_list("lower(a.business_unit)", &r.business_unit));
            }
            if !r.environment.is_empty() {
                conds.push(in_list("lower(a.environment)", &r.environment));
            }
            if !r.owner.is_empty() {
                conds.push(in_list("lower(a.owner)", &r.owner));
            }
            if !r.tag.is_empty() {
                conds.push(format!(
                    "list_has_any(list_transform(coalesce(a.tags, []), lambda t: lower(t)), [{}])",
                    r.tag.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ")
                ));
            }
            if !r.category.is_empty() {
                conds.push(in_list("f.category", &r.category));
            }
            if !r.tool.is_empty() {
                conds.push(format!(
                    "list_has_any(list_transform(f.sources, lambda t: lower(t)), [{}])",
                    r.tool.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ")
                ));
            }
            let cond = if conds.is_empty() { "true".to_string() } else { conds.join(" AND ") };
            out.push_str(&format!(" WHEN {cond} THEN {n}"));
        }
        out.push_str(&format!(" ELSE {} END", self.rules.len() + 1));
        Ok(out)
    }

    /// `VALUES` rows of (rule_no, name, team, assignee, jira_project, snow_group).
    pub fn values_sql(&self) -> String {
        let opt = |o: &Option<String>| o.as_deref().map(quote).unwrap_or_else(|| "NULL::VARCHAR".into());
        let rows: Vec<String> = self
            .all()
            .map(|(n, r)| format!("({n}, {}, {}, {}, {}, {})", quote(&r.name), quote(&r.team), opt(&r.assignee), opt(&r.jira_project), opt(&r.servicenow_group)))
            .collect();
        format!("(VALUES {}) AS r(rule_no, rule_name, rule_team, assignee, jira_project, snow_group)", rows.join(", "))
    }
}

impl Sla {
    /// Write the policy into the store (the `finding_sla` view reads it) when it differs.
    pub fn store(&self, c: &duckdb::Connection) -> Result<bool, duckdb::Error> {
        let mut st = c.prepare("SELECT priority, days FROM sla_policy ORDER BY priority")?;
        let cur: Vec<(String, u32)> = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        let want: Vec<(String, u32)> = PRIORITIES.iter().zip(self.days).map(|(p, d)| (p.to_string(), d)).collect();
        let reopened: Option<String> = c.query_row("SELECT value FROM settings WHERE key = 'sla_reopened'", [], |r| r.get(0)).ok();
        let max: Option<String> = c.query_row("SELECT value FROM settings WHERE key = 'max_acceptance_days'", [], |r| r.get(0)).ok();
        if cur == want && reopened.as_deref() == Some(self.reopened.as_str()) && max == Some(self.max_acceptance_days.to_string()) {
            return Ok(false);
        }
        c.execute_batch("BEGIN TRANSACTION; DELETE FROM sla_policy; DELETE FROM settings WHERE key IN ('sla_reopened', 'max_acceptance_days');")?;
        for (p, d) in &want {
            c.execute("INSERT INTO sla_policy VALUES (?, ?)", duckdb::params![p, d])?;
        }
        c.execute("INSERT INTO settings VALUES ('sla_reopened', ?)", duckdb::params![self.reopened])?;
        c.execute("INSERT INTO settings VALUES ('max_acceptance_days', ?)", duckdb::params![self.max_acceptance_days.to_string()])?;
        c.execute_batch("COMMIT")?;
        Ok(true)
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_in_order_with_default() {
        let t = "[routing]\nmin_priority = \"p2\"\n[[routing.rule]]\nname = \"web\"\ncategory = \"web\"\nteam = \"appsec\"\njira_project = \"APPSEC\"\n[[routing.rule]]\nbusiness_unit = [\"Payments\", \"Cards\"]\nteam = \"@owner\"\n[routing.default]\nteam = \"platform\"\n[sla]\np1 = 5\nreopened = \"keep\"\n";
        let (r, s) = parse(t, "config.toml").unwrap();
        assert_eq!(r.min_priority, "P2");
        assert_eq!(r.rules.len(), 2);
        assert_eq!(r.rules[0].line, 3);
        assert_eq!(r.rules[1].name, "rule 2");
        assert_eq!(r.rules[1].business_unit, vec!["payments", "cards"]);
        assert_eq!(r.default.team, "platform");
        assert_eq!(s.days, [5, 30, 90, 180]);
        assert_eq!(s.reopened, "keep");
        let case = r.case_sql(&|_| Ok("true".into()), "c").unwrap();
        assert_eq!(case, "CASE WHEN f.category IN ('web') THEN 1 WHEN lower(a.business_unit) IN ('payments', 'cards') THEN 2 ELSE 3 END");
    }

    #[test]
    fn bad_rules_are_refused_with_their_line() {
        let e = parse("theme = \"x\"\n[[routing.rule]]\nteam = \"a\"\nsevrity = \"high\"\n", "/c/config.toml").unwrap_err();
        assert!(e.starts_with("/c/config.toml line 4:") && e.contains("sevrity"), "{e}");
        let e = parse("[[routing.rule]]\ncategory = \"vulns\"\nteam = \"a\"\n", "c").unwrap_err();
        assert!(e.contains("line 1") && e.contains("unknown category 'vulns'"), "{e}");
        let e = parse("[[routing.rule]]\nbusiness_unit = \"x\"\n", "c").unwrap_err();
        assert!(e.contains("line 1") && e.contains("team"), "{e}");
        let e = parse("[sla]\nreopened = \"sometimes\"\n", "c").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("[[routing.rule]]\nscope = \"nope\"\nteam = \"a\"\n", "c").unwrap();
        let err = e.0.case_sql(&|s| Err(format!("no scope named '{s}'")), "c").unwrap_err();
        assert_eq!(err, "c line 1: routing rule 'rule 1': no scope named 'nope'");
    }

    #[test]
    fn values_are_quoted_as_data() {
        let (r, _) = parse("[[routing.rule]]\nowner = \"o'brien\"\nteam = \"x'); DROP TABLE findings; --\"\n", "c").unwrap();
        let case = r.case_sql(&|_| Ok("true".into()), "c").unwrap();
        assert!(case.contains("'o''brien'"));
        assert!(r.values_sql().contains("'x''); DROP TABLE findings; --'"));
    }
}
