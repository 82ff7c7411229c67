//! The tables the console shows, described once: columns, filterable fields, the scope link, and
//! keyset paging (the store serves only the window on screen, never whole result sets).

use crate::query::{self, Compiled, Field, FieldKind, Param};
use duckdb::types::{TimeUnit, Value};
use duckdb::Connection;
use std::borrow::Cow;

#[derive(Debug, Clone)]
pub struct Column {
    pub name: Cow<'static, str>,
    /// Display expression.
    pub sql: Cow<'static, str>,
    /// Sort expression when it differs (severity sorts by rank, not by name).
    pub sort: Option<Cow<'static, str>>,
    pub width: u16,
    pub visible: bool,
    pub right: bool,
    /// Fetched with every page even when hidden: a pane acts on its value, or the rows cannot be
    /// fetched again by key (a SQL result). Other hidden columns are left out of pages.
    pub always: bool,
}

fn col(name: &'static str, sql: &'static str, width: u16) -> Column {
    Column { name: Cow::Borrowed(name), sql: Cow::Borrowed(sql), sort: None, width, visible: true, right: false, always: false }
}

/// A column of a result whose shape is only known at run time (the SQL pane).
pub fn dynamic_column(name: String, sql: String, width: u16) -> Column {
    Column { name: Cow::Owned(name), sql: Cow::Owned(sql), sort: None, width, visible: true, right: false, always: true }
}

const SEV_RANK: &str = "(CASE severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END)";

#[derive(Debug, Clone)]
pub struct View {
    pub id: &'static str,
    pub title: &'static str,
    /// `FROM ...` target: a table name or a parenthesised subquery with an alias.
    pub from: String,
    pub base_where: String,
    /// Unique row key (BIGINT).
    pub key: &'static str,
    pub columns: Vec<Column>,
    pub fields: Vec<Field>,
    pub text_fields: Vec<&'static str>,
    /// Column index and descending.
    pub default_sort: (usize, bool),
    /// Expression giving the asset id that scopes narrow on.
    pub scope_asset: Option<&'static str>,
    /// What the list holds, said when a filter matches nothing (the row may be in another list).
    pub holds: Option<&'static str>,
}

pub fn finding_fields() -> Vec<Field> {
    use FieldKind::*;
    vec![
        Field { name: "id", aliases: &["finding_id"], sql: "finding_id", kind: Int },
        Field { name: "severity", aliases: &["sev"], sql: "severity", kind: Severity },
        Field { name: "status", aliases: &["state"], sql: "status", kind: Text },
        Field { name: "host", aliases: &["asset", "asset_name"], sql: "asset_name", kind: Text },
        Field { name: "asset_id", aliases: &[], sql: "asset_id", kind: Int },
        Field { name: "vuln", aliases: &["vuln_id", "plugin", "rule"], sql: "vuln_id", kind: Text },
        Field { name: "cve", aliases: &["cves"], sql: "cves", kind: List },
        Field { name: "cwe", aliases: &["cwes"], sql: "cwes", kind: List },
        Field { name: "title", aliases: &[], sql: "title", kind: Text },
        Field { name: "source", aliases: &["sources", "tool"], sql: "sources", kind: List },
        Field { name: "category", aliases: &["cat"], sql: "category", kind: Text },
        Field { name: "package", aliases: &["pkg"], sql: "package", kind: Text },
        Field { name: "version", aliases: &["installed_version"], sql: "installed_version", kind: Text },
        Field { name: "fixed_version", aliases: &["fixed", "fixed_in"], sql: "fixed_version", kind: Text },
        Field { name: "port", aliases: &[], sql: "port", kind: Int },
        Field { name: "location", aliases: &["loc", "file"], sql: "location", kind: Text },
        Field { name: "cvss", aliases: &["cvss_score"], sql: "cvss_score", kind: Float },
        Field { name: "first_seen", aliases: &["age", "found"], sql: "first_seen", kind: Time },
        Field { name: "last_seen", aliases: &["seen"], sql: "last_seen", kind: Time },
        Field { name: "fixed_at", aliases: &[], sql: "fixed_at", kind: Time },
        Field { name: "reopened", aliases: &["times_reopened"], sql: "times_reopened", kind: Int },
        Field { name: "exploit", aliases: &["exploit_available"], sql: "exploit_available", kind: Bool },
        Field { name: "risk", aliases: &["risk_score", "score"], sql: "risk_score", kind: Float },
        Field { name: "priority", aliases: &["prio", "p"], sql: "priority", kind: Priority },
        Field { name: "kev", aliases: &[], sql: "kev", kind: Bool },
        Field { name: "epss", aliases: &[], sql: "epss", kind: Float },
        Field { name: "exposed", aliases: &["internet", "internet_exposed"], sql: "internet_exposed", kind: Bool },
        Field { name: "runtime", aliases: &["running"], sql: "runtime", kind: Bool },
        Field { name: "fix", aliases: &["fix_key"], sql: "fix", kind: Text },
        Field { name: "fix_kind", aliases: &[], sql: "fix_kind", kind: Text },
        Field { name: "technique", aliases: &["attack", "ttp"], sql: "(SELECT list(DISTINCT e.technique_id) FROM exposure_techniques e WHERE e.finding_id = f.finding_id)", kind: List },
        Field { name: "control_kind", aliases: &["covered_by"], sql: "(SELECT list(DISTINCT c.kind) FROM control_assets ca JOIN controls c ON c.control_id = ca.control_id WHERE ca.asset_id = f.asset_id AND c.status = 'healthy')", kind: List },
        Field { name: "work_item", aliases: &["wi", "work"], sql: "(SELECT max(wf.work_item_id) FROM work_item_findings wf WHERE wf.finding_id = f.finding_id)", kind: Int },
        Field { name: "saved", aliases: &["query"], sql: "finding_id", kind: Saved },
        Field { name: "due", aliases: &["sla_due", "due_date"], sql: "(SELECT s.due_date FROM finding_sla s WHERE s.finding_id = f.finding_id)", kind: Time },
        Field { name: "import", aliases: &["import_id"], sql: "(SELECT list(DISTINCT CAST(d.import_id AS VARCHAR)) FROM detections d WHERE d.finding_id = f.finding_id)", kind: List },
        Field { name: "owner", aliases: &[], sql: "(SELECT a.owner FROM assets a WHERE a.asset_id = f.asset_id)", kind: Text },
        Field { name: "bu", aliases: &["business_unit"], sql: "(SELECT a.business_unit FROM assets a WHERE a.asset_id = f.asset_id)", kind: Text },
        Field { name: "env", aliases: &["environment"], sql: "(SELECT a.environment FROM assets a WHERE a.asset_id = f.asset_id)", kind: Text },
    ]
}

pub fn asset_fields() -> Vec<Field> {
    use FieldKind::*;
    vec![
        Field { name: "id", aliases: &["asset_id"], sql: "asset_id", kind: Int },
        Field { name: "name", aliases: &["host", "asset"], sql: "name", kind: Text },
        Field { name: "kind", aliases: &["type"], sql: "kind", kind: Text },
        Field { name: "hostname", aliases: &[], sql: "hostname", kind: Text },
        Field { name: "fqdn", aliases: &[], sql: "fqdn", kind: Text },
        Field { name: "ip", aliases: &["ips"], sql: "ips", kind: List },
        Field { name: "os", aliases: &[], sql: "os", kind: Text },
        Field { name: "cloud", aliases: &["cloud_provider", "provider"], sql: "cloud_provider", kind: Text },
        Field { name: "account", aliases: &[], sql: "account", kind: Text },
        Field { name: "region", aliases: &[], sql: "region", kind: Text },
        Field { name: "env", aliases: &["environment"], sql: "environment", kind: Text },
        Field { name: "bu", aliases: &["business_unit", "unit"], sql: "business_unit", kind: Text },
        Field { name: "owner", aliases: &[], sql: "owner", kind: Text },
        Field { name: "criticality", aliases: &["crit"], sql: "criticality", kind: Int },
        Field { name: "internet", aliases: &["internet_facing", "exposed"], sql: "internet_facing", kind: Bool },
        Field { name: "tag", aliases: &["tags"], sql: "tags", kind: List },
        Field { name: "source", aliases: &["sources"], sql: "sources", kind: List },
        Field { name: "cmdb", aliases: &["in_cmdb"], sql: "in_cmdb", kind: Bool },
        Field { name: "first_seen", aliases: &[], sql: "first_seen", kind: Time },
        Field { name: "last_seen", aliases: &["seen"], sql: "last_seen", kind: Time },
    ]
}

fn finding_columns() -> Vec<Column> {
    vec![
        Column { right: true, ..col("id", "finding_id", 7) },
        Column { sort: Some(Cow::Borrowed(SEV_RANK)), ..col("sev", "severity", 8) },
        col("status", "status", 8),
        col("asset", "asset_name", 22),
        col("vuln", "vuln_id", 16),
        col("title", "title", 40),
        col("sources", "array_to_string(sources, ',')", 12),
        Column { visible: false, ..col("category", "category", 10) },
        Column { visible: false, ..col("package", "package", 16) },
        Column { visible: false, ..col("version", "installed_version", 12) },
        Column { visible: false, ..col("fixed", "fixed_version", 12) },
        Column { visible: false, right: true, ..col("port", "port", 5) },
        Column { visible: false, right: true, ..col("cvss", "cvss_score", 4) },
        Column { sort: Some(Cow::Borrowed("first_seen")), ..col("first_seen", "strftime(first_seen, '%Y-%m-%d')", 10) },
        Column { visible: false, sort: Some(Cow::Borrowed("last_seen")), ..col("last_seen", "strftime(last_seen, '%Y-%m-%d')", 10) },
        Column { visible: false, right: true, ..col("reopened", "times_reopened", 3) },
        Column { visible: false, right: true, sort: Some(Cow::Borrowed("coalesce(risk_score, -1)")), ..col("risk", "round(risk_score)::INTEGER", 5) },
        Column { visible: false, ..col("prio", "priority", 4) },
        Column { visible: false, ..col("kev", "CASE WHEN kev THEN 'KEV' ELSE '' END", 3) },
        Column { visible: false, right: true, sort: Some(Cow::Borrowed("coalesce(epss, -1)")), ..col("epss", "epss::DECIMAL(5,3)", 5) },
        Column { visible: false, ..col("fix", "fix", 30) },
    ]
}

/// What a bare word searches: the title and the host (a word that starts `CVE-` searches the CVEs).
pub fn finding_text_fields() -> Vec<&'static str> {
    vec!["title", "asset_name"]
}

/// Every finding.
pub fn findings() -> View {
    View {
        id: "findings",
        title: "Findings",
        from: "findings f".into(),
        base_where: "true".into(),
        key: "finding_id",
        columns: finding_columns(),
        fields: finding_fields(),
        text_fields: finding_text_fields(),
        default_sort: (0, false),
        scope_asset: Some("asset_id"),
        holds: None,
    }
}

/// The expression that orders the open queue: the risk score (unscored findings last).
pub const QUEUE_RANK: &str = "coalesce(risk_score, -1)";

/// Open and reopened findings, highest risk first.
pub fn queue() -> View {
    let mut columns = finding_columns();
    let order = ["risk", "prio", "sev", "kev", "epss", "asset", "title", "vuln", "cvss", "sources", "first_seen"];
    for c in columns.iter_mut() {
        c.visible = order[..8].contains(&c.name.as_ref());
    }
    columns.sort_by_key(|c| order.iter().position(|o| *o == c.name).unwrap_or(order.len()));
    View {
        id: "queue",
        title: "Open queue",
        from: "findings f".into(),
        base_where: "status IN ('open', 'reopened')".into(),
        key: "finding_id",
        columns,
        fields: finding_fields(),
        text_fields: finding_text_fields(),
        default_sort: (0, true),
        scope_asset: Some("asset_id"),
        holds: Some("only open findings here: mitigated, fixed and excepted ones are in Discovery"),
    }
}

/// Open findings grouped by the fix that removes them (the `fix_groups` view, narrowed by scope).
pub fn fix_groups() -> View {
    use FieldKind::*;
    View {
        id: "fix_groups",
        title: "Fix groups",
        from: "(SELECT (hash(kind || fix_key) >> 1)::BIGINT AS group_key, * FROM (
                  SELECT fix_label(f.fix_kind, f.fix, f.fix_target) AS fix,
                         f.fix_kind AS kind,
                         count(*) AS findings,
                         count(DISTINCT f.asset_id) AS assets,
                         round(sum(coalesce(f.risk_score, 0)), 1) AS risk_removed,
                         count(*) FILTER (WHERE f.priority = 'P1') AS p1,
                         count(*) FILTER (WHERE f.kev) AS kev,
                         string_agg(DISTINCT a.owner, ', ' ORDER BY a.owner) AS owners,
                         f.fix AS fix_key
                  FROM findings f LEFT JOIN assets a ON a.asset_id = f.asset_id
                  WHERE f.status IN ('open', 'reopened') AND f.fix IS NOT NULL AND {scope}
                  GROUP BY f.fix_kind, f.fix)) fg"
            .into(),
        base_where: "true".into(),
        key: "group_key",
        columns: vec![
            Column { right: true, ..col("risk", "round(risk_removed)::BIGINT", 7) },
            Column { right: true, ..col("findings", "findings", 8) },
            Column { right: true, ..col("assets", "assets", 6) },
            Column { right: true, ..col("P1", "p1", 5) },
            Column { right: true, ..col("KEV", "kev", 5) },
            col("kind", "kind", 15),
            col("fix", "fix", 50),
            col("owners", "owners", 30),
            Column { visible: false, always: true, ..col("fix_key", "fix_key", 30) },
        ],
        fields: vec![
            Field { name: "fix", aliases: &[], sql: "fix", kind: Text },
            Field { name: "kind", aliases: &["fix_kind"], sql: "kind", kind: Text },
            Field { name: "findings", aliases: &[], sql: "findings", kind: Int },
            Field { name: "assets", aliases: &[], sql: "assets", kind: Int },
            Field { name: "risk", aliases: &["risk_removed"], sql: "risk_removed", kind: Float },
            Field { name: "p1", aliases: &[], sql: "p1", kind: Int },
            Field { name: "kev", aliases: &[], sql: "kev", kind: Int },
            Field { name: "owner", aliases: &["owners"], sql: "owners", kind: Text },
        ],
        text_fields: vec!["fix", "owners"],
        default_sort: (0, true),
        scope_asset: Some("asset_id"),
        holds: None,
    }
}

/// Assets with their open findings.
pub fn assets() -> View {
    View {
        id: "assets",
        title: "Assets",
        from: "(SELECT a.*, coalesce(o.n, 0) AS open_findings, coalesce(o.crit, 0) AS open_critical FROM assets a LEFT JOIN (SELECT asset_id, count(*) AS n, count(*) FILTER (WHERE severity = 'critical') AS crit FROM findings WHERE status IN ('open', 'reopened') GROUP BY asset_id) o USING (asset_id)) av".into(),
        base_where: "true".into(),
        key: "asset_id",
        columns: vec![
            Column { right: true, ..col("id", "asset_id", 6) },
            col("name", "name", 26),
            col("kind", "kind", 14),
            col("env", "environment", 7),
            col("bu", "business_unit", 10),
            col("owner", "owner", 14),
            Column { right: true, ..col("crit", "criticality", 4) },
            col("inet", "CASE WHEN internet_facing THEN 'yes' WHEN internet_facing = false THEN 'no' ELSE '?' END", 4),
            Column { right: true, ..col("open", "open_findings", 5) },
            Column { right: true, ..col("critical", "open_critical", 4) },
            col("sources", "array_to_string(sources, ',')", 14),
            Column { visible: false, ..col("ips", "array_to_string(ips, ',')", 16) },
            Column { visible: false, ..col("os", "os", 18) },
            Column { visible: false, ..col("account", "account", 12) },
            Column { visible: false, ..col("region", "region", 10) },
            Column { visible: false, ..col("tags", "array_to_string(tags, ',')", 16) },
            Column { visible: false, sort: Some(Cow::Borrowed("last_seen")), ..col("last_seen", "strftime(last_seen, '%Y-%m-%d')", 10) },
        ],
        fields: {
            let mut f = asset_fields();
            f.push(Field { name: "open", aliases: &["open_findings"], sql: "open_findings", kind: FieldKind::Int });
            f
        },
        text_fields: vec!["name", "owner", "array_to_string(ips, ' ')", "business_unit"],
        default_sort: (8, true),
        scope_asset: Some("asset_id"),
        holds: None,
    }
}

/// Import history.
pub fn imports() -> View {
    use FieldKind::*;
    View {
        id: "imports",
        title: "Imports",
        from: "imports".into(),
        base_where: "true".into(),
        key: "import_id",
        columns: vec![
            Column { right: true, ..col("id", "import_id", 4) },
            Column { sort: Some(Cow::Borrowed("finished_at")), ..col("imported", "strftime(finished_at, '%Y-%m-%d %H:%M')", 16) },
            Column { sort: Some(Cow::Borrowed("scan_time")), ..col("scan", "strftime(scan_time, '%Y-%m-%d')", 10) },
            col("tool", "tool", 10),
            col("file", "regexp_extract(file, '[^/]*$')", 30),
            Column { right: true, ..col("records", "records", 7) },
            Column { right: true, ..col("new", "new", 6) },
            Column { right: true, ..col("again", "seen_again", 6) },
            Column { right: true, ..col("fixed", "fixed", 6) },
            Column { right: true, ..col("reopen", "reopened", 6) },
            Column { right: true, ..col("skip", "skipped", 5) },
            Column { visible: false, ..col("format", "format", 10) },
            Column { visible: false, ..col("sha256", "sha256", 16) },
        ],
        fields: vec![
            Field { name: "id", aliases: &[], sql: "import_id", kind: Int },
            Field { name: "tool", aliases: &[], sql: "tool", kind: Text },
            Field { name: "file", aliases: &[], sql: "file", kind: Text },
            Field { name: "format", aliases: &[], sql: "format", kind: Text },
            Field { name: "scan", aliases: &["scan_time"], sql: "scan_time", kind: Time },
            Field { name: "imported", aliases: &["finished_at"], sql: "finished_at", kind: Time },
            Field { name: "new", aliases: &[], sql: "new", kind: Int },
            Field { name: "fixed", aliases: &[], sql: "fixed", kind: Int },
            Field { name: "skipped", aliases: &[], sql: "skipped", kind: Int },
        ],
        text_fields: vec!["file", "tool"],
        default_sort: (0, true),
        scope_asset: None,
        holds: None,
    }
}

pub fn param_value(p: &Param) -> Value {
    match p {
        Param::Text(s) => Value::Text(s.clone()),
        Param::Int(i) => Value::BigInt(*i),
        Param::Float(f) => Value::Double(*f),
        Param::Bool(b) => Value::Boolean(*b),
        Param::Time(t) => Value::Timestamp(TimeUnit::Microsecond, t.and_utc().timestamp_micros()),
    }
}

/// A value as an SQL literal, quoted so that it can only ever be data (standard SQL strings: the only
/// special character is the quote, which is doubled). None for values kept as parameters.
fn literal(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => "NULL".into(),
        Value::Boolean(b) => b.to_string(),
        Value::BigInt(i) => i.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Double(f) if f.is_finite() => format!("{f:?}::DOUBLE"),
        Value::Text(t) if !t.contains('\0') => crate::store::sql_literal(t),
        Value::Timestamp(TimeUnit::Microsecond, us) => format!("make_timestamp({us}::BIGINT)"),
        _ => return None,
    })
}

/// The engine plans a statement before it sees parameter values, so a `title ILIKE ?` cannot use its
/// fast substring search nor a `key < ?` skip row groups. Pages and counts therefore go to the engine
/// with their values written in as literals (see `literal`); the statement text outside the values is
/// the compiler's own. Falls back to parameters if any value cannot be written safely.
pub fn inline_values(sql: String, params: Vec<Value>) -> (String, Vec<Value>) {
    let lits: Option<Vec<String>> = params.iter().map(literal).collect();
    let Some(lits) = lits else { return (sql, params) };
    // Placeholders are the `?` outside quoted text; the compiler never writes one inside.
    let mut out = String::with_capacity(sql.len() + 16 * lits.len());
    let mut it = lits.into_iter();
    let mut in_quote = false;
    for ch in sql.chars() {
        match ch {
            '\'' => {
                in_quote = !in_quote;
                out.push(ch);
            }
            '?' if !in_quote => match it.next() {
                Some(l) => out.push_str(&l),
                None => return (sql, params),
            },
            _ => out.push(ch),
        }
    }
    if it.next().is_some() {
        return (sql, params);
    }
    (out, Vec::new())
}

/// Keys looked at first when a filtered page is sorted by the key.
const KEY_PROBE: i64 = 1 << 16;

/// One page request. `after`/`before` are the (sort value, key) of the row the page continues from.
#[derive(Debug, Clone)]
pub struct PageQuery {
    pub filter: Compiled,
    /// Compiled against `asset_fields()`.
    pub scope: Option<Compiled>,
    pub sort_col: usize,
    pub desc: bool,
    pub anchor: Option<(Value, i64)>,
    /// Rows before the anchor (returned in display order) instead of after it.
    pub backward: bool,
    pub limit: usize,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub key: i64,
    pub sort: Value,
    pub cells: Vec<String>,
}

impl View {
    pub fn sort_expr(&self, i: usize) -> String {
        match self.columns.get(i) {
            Some(c) => c.sort.clone().unwrap_or_else(|| c.sql.clone()).into_owned(),
            None => self.key.to_string(),
        }
    }

    pub fn compile_filter(&self, text: &str, now: chrono::NaiveDateTime) -> Result<Compiled, query::FilterError> {
        query::compile(text, &self.fields, &self.text_fields, now)
    }

    /// `FROM` target and WHERE clause (without keyset), and their parameters in order. A `from` with a
    /// `{scope}` placeholder (aggregating views) takes the scope condition inside; others get it outside.
    pub fn where_clause(&self, filter: &Compiled, scope: Option<&Compiled>) -> (String, Vec<Value>) {
        let (from, mut params) = self.from_part(scope);
        let mut w = format!("{from} WHERE ({}) AND ({})", self.base_where, filter.sql);
        params.extend(filter.params.iter().map(param_value));
        if !self.from.contains("{scope}") {
            if let (Some(s), Some(a)) = (scope, self.scope_asset) {
                w.push_str(&format!(" AND {}", scope_cond(a, s)));
                params.extend(s.params.iter().map(param_value));
            }
        }
        (w, params)
    }

    /// Every column as text, for display and export.
    fn text_columns(&self) -> String {
        self.columns.iter().map(|c| format!("CAST({} AS VARCHAR)", c.sql)).collect::<Vec<_>>().join(", ")
    }

    /// The columns a page carries: hidden ones are left out (a million-row findings table has a dozen;
    /// building them for every page is most of a page's cost) unless marked `always`.
    fn page_columns(&self) -> String {
        self.columns
            .iter()
            .map(|c| if c.visible || c.always { format!("CAST({} AS VARCHAR)", c.sql) } else { "NULL::VARCHAR".to_string() })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn page_sql(&self, q: &PageQuery) -> (String, Vec<Value>) {
        let s = self.sort_expr(q.sort_col);
        let (mut w, mut params) = self.where_clause(&q.filter, q.scope.as_ref());
        let key = self.key;
        if s == key {
            // Sorted by the key itself: a plain range on a non-null column (zone maps skip row groups).
            let dir_desc = q.desc ^ q.backward;
            let (cmp, d) = if dir_desc { ("<", "DESC") } else { (">", "ASC") };
            if let Some((_, k)) = &q.anchor {
                w.push_str(&format!(" AND {key} {cmp} ?"));
                params.push(Value::BigInt(*k));
            }
            let (from, from_params) = self.from_part(q.scope.as_ref());
            params.extend(from_params);
            let sql = format!(
                "WITH page AS (SELECT {key} AS __k FROM {w} ORDER BY {key} {d} LIMIT {limit})
                 SELECT page.__k, page.__k, {cols} FROM page JOIN {from} ON {key} = page.__k ORDER BY page.__k {d}",
                cols = self.page_columns(),
                limit = q.limit
            );
            return (sql, params);
        }
        // Order: non-null sort values first, then by value, then by key, in the requested direction.
        // Walking backwards reverses every part and the caller flips the rows.
        let forward_desc = q.desc;
        let dir_desc = forward_desc ^ q.backward;
        let (cmp, kcmp) = if dir_desc { ("<", "<") } else { (">", ">") };
        if let Some((v, k)) = &q.anchor {
            let null_anchor = matches!(v, Value::Null);
            if !q.backward {
                if null_anchor {
                    w.push_str(&format!(" AND ({s}) IS NULL AND {key} {kcmp} ?"));
                    params.push(Value::BigInt(*k));
                } else {
                    w.push_str(&format!(" AND (({s}) IS NULL OR ({s}) {cmp} ? OR (({s}) = ? AND {key} {kcmp} ?))"));
                    params.extend([v.clone(), v.clone(), Value::BigInt(*k)]);
                }
            } else if null_anchor {
                w.push_str(&format!(" AND (({s}) IS NOT NULL OR {key} {kcmp} ?)"));
                params.push(Value::BigInt(*k));
            } else {
                w.push_str(&format!(" AND ({s}) IS NOT NULL AND (({s}) {cmp} ? OR (({s}) = ? AND {key} {kcmp} ?))"));
                params.extend([v.clone(), v.clone(), Value::BigInt(*k)]);
            }
        }
        let d = if dir_desc { "DESC" } else { "ASC" };
        // NULLS FIRST/LAST rather than an `IS NULL` sort key: one key fewer to compare, and the top-N
        // on a column of few values (status, severity) takes half the time.
        let nulls = if q.backward { "FIRST" } else { "LAST" };
        // Two steps: find the page's keys with only the sort value in hand, then build the display
        // columns for those rows alone (formatting a million rows to keep two hundred is the slow part).
        let (from, from_params) = self.from_part(q.scope.as_ref());
        params.extend(from_params);
        let sql = format!(
            "WITH page AS (SELECT {key} AS __k, {s} AS __s FROM {w} ORDER BY {s} {d} NULLS {nulls}, {key} {d} LIMIT {limit})
             SELECT page.__k, page.__s, {cols} FROM page JOIN {from} ON {key} = page.__k
             ORDER BY page.__s {d} NULLS {nulls}, page.__k {d}",
            cols = self.page_columns(),
            limit = q.limit
        );
        (sql, params)
    }

    /// The `FROM` target alone (scope placeholder filled) and its parameters.
    fn from_part(&self, scope: Option<&Compiled>) -> (String, Vec<Value>) {
        if self.from.contains("{scope}") {
            match scope {
                Some(s) => {
                    // Each placeholder takes the scope's parameters again.
                    let n = self.from.matches("{scope}").count();
                    let p: Vec<Value> = (0..n).flat_map(|_| s.params.iter().map(param_value)).collect();
                    (self.from.replace("{scope}", &scope_cond("asset_id", s)), p)
                }
                None => (self.from.replace("{scope}", "true"), Vec::new()),
            }
        } else {
            (self.from.clone(), Vec::new())
        }
    }

    pub fn fetch(&self, c: &Connection, q: &PageQuery) -> Result<Vec<Row>, duckdb::Error> {
        // Sorted by the key with a filter: look in the next stretch of keys first. When matches are
        // common the page is there and the engine skips every other row group; otherwise the whole
        // range is searched as usual.
        if self.sort_expr(q.sort_col) == self.key && q.filter.sql != "true" && !self.from.contains('(') {
            let desc = q.desc ^ q.backward;
            let start = match &q.anchor {
                Some((_, k)) => Some(*k),
                None => {
                    let agg = if desc { "max" } else { "min" };
                    let v: Option<i64> = c.query_row(&format!("SELECT {agg}({}) FROM {}", self.key, self.from), [], |r| r.get(0))?;
                    v.map(|v| if desc { v + 1 } else { v - 1 })
                }
            };
            if let Some(start) = start {
                let mut probe = q.clone();
                let (op, bound) = if desc { (">", start.saturating_sub(KEY_PROBE)) } else { ("<", start.saturating_add(KEY_PROBE)) };
                probe.filter.sql = format!("({}) AND {} {op} ?", q.filter.sql, self.key);
                probe.filter.params.push(Param::Int(bound));
                let rows = self.fetch_plain(c, &probe)?;
                if rows.len() >= q.limit {
                    return Ok(rows);
                }
            }
        }
        self.fetch_plain(c, q)
    }

    fn fetch_plain(&self, c: &Connection, q: &PageQuery) -> Result<Vec<Row>, duckdb::Error> {
        let (sql, params) = self.page_sql(q);
        let (sql, params) = inline_values(sql, params);
        let mut stmt = c.prepare(&sql)?;
        let n = self.columns.len();
        let mut rows: Vec<Row> = stmt
            .query_map(duckdb::params_from_iter(params.iter()), |r| {
                let key: i64 = r.get(0)?;
                let sort: Value = r.get(1)?;
                let mut cells = Vec::with_capacity(n);
                for i in 0..n {
                    let v: Option<String> = r.get(2 + i)?;
                    cells.push(v.unwrap_or_default());
                }
                Ok(Row { key, sort, cells })
            })?
            .collect::<Result<_, _>>()?;
        if q.backward {
            rows.reverse();
        }
        Ok(rows)
    }

    /// The rows with these keys, every column filled.
    pub fn rows_by_key(&self, c: &Connection, keys: &[i64]) -> Result<Vec<Row>, duckdb::Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let list = keys.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",");
        let (from, params) = self.from_part(None);
        let sql = format!(
            "SELECT {key}, {cols} FROM (SELECT unnest([{list}]::BIGINT[]) AS __k) page JOIN {from} ON {key} = page.__k",
            key = self.key,
            cols = self.text_columns()
        );
        let (sql, params) = inline_values(sql, params);
        let mut stmt = c.prepare(&sql)?;
        let n = self.columns.len();
        let rows = stmt
            .query_map(duckdb::params_from_iter(params.iter()), |r| {
                let key: i64 = r.get(0)?;
                let cells = (0..n).map(|i| r.get::<_, Option<String>>(1 + i).map(Option::unwrap_or_default)).collect::<Result<Vec<_>, _>>()?;
                Ok(Row { key, sort: Value::Null, cells })
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    pub fn count(&self, c: &Connection, filter: &Compiled, scope: Option<&Compiled>) -> Result<i64, duckdb::Error> {
        let (w, params) = self.where_clause(filter, scope);
        let (sql, params) = inline_values(format!("SELECT count(*) FROM {w}"), params);
        c.query_row(&sql, duckdb::params_from_iter(params.iter()), |r| r.get(0))
    }

    /// Write every row that passes the filter (all columns, visible or not) as CSV or JSON lines,
    /// streaming from the engine; `progress` is called every 10,000 rows.
    pub fn export(
        &self,
        c: &Connection,
        filter: &Compiled,
        scope: Option<&Compiled>,
        sort_col: usize,
        desc: bool,
        json: bool,
        out: &mut dyn std::io::Write,
        progress: &mut dyn FnMut(u64),
    ) -> anyhow::Result<u64> {
        let (w, params) = self.where_clause(filter, scope);
        let s = self.sort_expr(sort_col);
        let d = if desc { "DESC" } else { "ASC" };
        let sql = format!("SELECT {} FROM {w} ORDER BY {s} {d} NULLS LAST, {} {d}", self.text_columns(), self.key);
        let mut stmt = c.prepare(&sql)?;
        let mut rows = stmt.query(duckdb::params_from_iter(params.iter()))?;
        let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_ref()).collect();
        let mut n = 0u64;
        if json {
            while let Some(r) = rows.next()? {
                let vals: Vec<Option<String>> = (0..names.len()).map(|i| r.get(i)).collect::<Result<_, _>>()?;
                let mut m = serde_json::Map::new();
                for (k, v) in names.iter().zip(vals) {
                    m.insert(k.to_string(), v.map(serde_json::Value::String).unwrap_or(serde_json::Value::Null));
                }
                serde_json::to_writer(&mut *out, &m)?;
                out.write_all(b"\n")?;
                n += 1;
                if n % 10_000 == 0 {
                    progress(n);
                }
            }
        } else {
            let mut w = csv::Writer::from_writer(&mut *out);
            w.write_record(&names)?;
            while let Some(r) = rows.next()? {
                let vals: Vec<Option<String>> = (0..names.len()).map(|i| r.get(i)).collect::<Result<_, _>>()?;
                w.write_record(vals.iter().map(|v| v.as_deref().unwrap_or("")))?;
                n += 1;
                if n % 10_000 == 0 {
                    progress(n);
                }
            }
            w.flush()?;
        }
        out.flush()?;
        progress(n);
        Ok(n)
    }
}

/// `expr` names an asset in the scope.
pub fn scope_cond(expr: &str, s: &Compiled) -> String {
    format!("{expr} IN (SELECT asset_id FROM assets WHERE {})", s.sql)
}

/// The asset filter of a scope, compiled.
pub fn compile_scope(filter: &str, now: chrono::NaiveDateTime) -> Result<Compiled, query::FilterError> {
    query::compile(filter, &asset_fields(), &["name", "owner", "business_unit", "environment"], now)
}

/// A finding that came back after a fix: still reopened, or reopened and since mitigated by a control
/// (as `finding_verification` counts it).
pub const REGRESSED: &str = "(status = 'reopened' OR (status = 'mitigated' AND times_reopened > 0))";

/// What changed in a window: new, fixed and reopened findings. `since`/`until` come from the store's own
/// clock (scan times), never from user text.
pub fn changes(since: chrono::NaiveDateTime, until: chrono::NaiveDateTime) -> View {
    let s = since.format("%Y-%m-%d %H:%M:%S").to_string();
    let u = until.format("%Y-%m-%d %H:%M:%S").to_string();
    let from = format!(
        "(SELECT *, CASE WHEN first_seen > TIMESTAMP '{s}' AND first_seen <= TIMESTAMP '{u}' THEN 'new'
                    WHEN status = 'fixed' AND fixed_at > TIMESTAMP '{s}' AND fixed_at <= TIMESTAMP '{u}' THEN 'fixed'
                    ELSE 'reopened' END AS change
          FROM findings
          WHERE (first_seen > TIMESTAMP '{s}' AND first_seen <= TIMESTAMP '{u}')
             OR (status = 'fixed' AND fixed_at > TIMESTAMP '{s}' AND fixed_at <= TIMESTAMP '{u}')
             OR ({REGRESSED} AND last_seen > TIMESTAMP '{s}' AND last_seen <= TIMESTAMP '{u}')) f"
    );
    let mut columns = vec![col("change", "change", 8)];
    columns.extend(finding_columns().into_iter().filter(|c| c.name != "status"));
    let mut fields = finding_fields();
    fields.push(Field { name: "change", aliases: &[], sql: "change", kind: FieldKind::Text });
    View {
        id: "changes",
        title: "What changed",
        from,
        base_where: "true".into(),
        key: "finding_id",
        columns,
        fields,
        text_fields: finding_text_fields(),
        default_sort: (2, true),
        scope_asset: Some("asset_id"),
        holds: None,
    }
}

/// Rescan evidence: findings a later scan no longer saw (fixed) and ones that came back (regressions).
pub fn verification() -> View {
    let mut columns = vec![
        Column { right: true, ..col("id", "finding_id", 7) },
        Column { sort: Some(Cow::Borrowed(SEV_RANK)), ..col("sev", "severity", 8) },
        col("state", "state", 11),
        col("asset", "asset_name", 20),
        col("vuln", "vuln_id", 16),
        col("title", "title", 30),
        Column { sort: Some(Cow::Borrowed("coalesce(fixed_at, last_seen)")), ..col("verified", "strftime(coalesce(fixed_at, last_seen), '%Y-%m-%d')", 10) },
        col("by", "array_to_string(sources, ',')", 10),
        Column { right: true, ..col("reopened", "times_reopened", 3) },
    ];
    columns[5].visible = true;
    View {
        id: "verification",
        title: "Rescan verification",
        from: "(SELECT f.*, v.state FROM findings f JOIN finding_verification v USING (finding_id)) f".into(),
        base_where: "state <> 'open'".into(),
        key: "finding_id",
        columns,
        fields: {
            let mut f = finding_fields();
            f.push(Field { name: "state", aliases: &["verification"], sql: "state", kind: FieldKind::Text });
            f
        },
        text_fields: finding_text_fields(),
        default_sort: (6, true),
        scope_asset: Some("asset_id"),
        holds: None,
    }
}

/// Open work by owner (from the CMDB): the remediation board's rows.
pub fn owners() -> View {
    use FieldKind::*;
    View {
        id: "owners",
        title: "Open work by owner",
        from: "(SELECT row_number() OVER (ORDER BY owner) AS owner_key, * FROM (
                  SELECT coalesce(a.owner, '(no owner)') AS owner,
                         count(*) AS open,
                         count(*) FILTER (WHERE f.severity = 'critical') AS critical,
                         count(*) FILTER (WHERE f.severity = 'high') AS high,
                         count(*) FILTER (WHERE f.status = 'reopened') AS reopened,
                         count(DISTINCT f.asset_id) AS assets,
                         min(f.first_seen) AS oldest,
                         string_agg(DISTINCT a.business_unit, ',') AS units
                  FROM findings f JOIN assets a USING (asset_id)
                  WHERE f.status IN ('open', 'reopened') AND {scope}
                  GROUP BY ALL)) ow"
            .into(),
        base_where: "true".into(),
        key: "owner_key",
        columns: vec![
            col("owner", "owner", 22),
            Column { right: true, ..col("open", "open", 7) },
            Column { right: true, ..col("critical", "critical", 8) },
            Column { right: true, ..col("high", "high", 6) },
            Column { right: true, ..col("reopened", "reopened", 8) },
            Column { right: true, ..col("assets", "assets", 6) },
            Column { sort: Some(Cow::Borrowed("oldest")), ..col("oldest", "strftime(oldest, '%Y-%m-%d')", 10) },
            col("units", "units", 16),
        ],
        fields: vec![
            Field { name: "owner", aliases: &[], sql: "owner", kind: Text },
            Field { name: "open", aliases: &[], sql: "open", kind: Int },
            Field { name: "critical", aliases: &["crit"], sql: "critical", kind: Int },
            Field { name: "high", aliases: &[], sql: "high", kind: Int },
            Field { name: "oldest", aliases: &[], sql: "oldest", kind: Time },
            Field { name: "bu", aliases: &["units"], sql: "units", kind: Text },
        ],
        text_fields: vec!["owner", "units"],
        default_sort: (2, true),
        scope_asset: Some("asset_id"),
        holds: None,
    }
}

/// The coverage matrix's columns: (header, control kind). Short headers so that every kind fits on an
/// 80-column terminal.
pub const MATRIX_KINDS: [(&str, &str); 8] =
    [("waf", "waf"), ("fw", "ngfw"), ("ips", "ips"), ("edr", "edr"), ("mfa", "mfa"), ("eml", "email_gateway"), ("cld", "cloud_guardrail"), ("dlp", "dlp")];

/// ATT&CK tactic order (the kill chain), for grouping techniques.
const TACTICS: &str = "['reconnaissance', 'resource-development', 'initial-access', 'execution', 'persistence', 'privilege-escalation', 'defense-evasion', 'credential-access', 'discovery', 'lateral-movement', 'collection', 'command-and-control', 'exfiltration', 'impact']";

/// The coverage matrix: one row per ATT&CK technique that open findings in scope expose, grouped by
/// tactic, with one column per kind of control: the best coverage a healthy control of that kind gives
/// on the exposed assets (`P+` protects significantly, `P` partially, `p` minimally or unrated; `D+`,
/// `D`, `d` the same for detection, and for a protecting control deployed in detect mode; `R` respond;
/// `·` nothing). Rows with exposures and no blocking protection at least partial are open paths.
pub fn matrix() -> View {
    use FieldKind::*;
    let kinds = MATRIX_KINDS;
    let pivot: String = kinds.iter().map(|(c, k)| format!(", max(v.r) FILTER (WHERE v.kind = '{k}') AS k_{c}")).collect();
    let from = format!(
        "(SELECT row_number() OVER (ORDER BY tactic_pos, technique_id) AS mkey, * FROM (
            SELECT x.technique_id, coalesce(t.name, x.technique_id) AS name,
                   coalesce(ta.name, coalesce(t.tactics[1], '(no tactic)')) AS tactic,
                   coalesce(list_position({TACTICS}, t.tactics[1]), 99) AS tactic_pos,
                   x.exposures, x.assets,
                   coalesce(max(v.r) FILTER (WHERE v.blocking), 0) >= 5 AS protected{pivot}
            FROM (SELECT e.technique_id, count(DISTINCT e.finding_id) AS exposures, count(DISTINCT f.asset_id) AS assets
                  FROM exposure_techniques e JOIN findings f ON f.finding_id = e.finding_id
                  WHERE {{scope}} GROUP BY e.technique_id) x
            LEFT JOIN attack_techniques t ON t.technique_id = x.technique_id
            LEFT JOIN attack_tactics ta ON ta.shortname = t.tactics[1]
            LEFT JOIN (
                SELECT e.technique_id, c.kind, c.mode = 'block' AS blocking,
                       max(CASE WHEN ct.category = 'protect' AND c.mode = 'block' THEN
                                     CASE ct.strength WHEN 'significant' THEN 6 WHEN 'partial' THEN 5 ELSE 4 END
                                WHEN ct.category IN ('protect', 'detect') THEN
                                     CASE ct.strength WHEN 'significant' THEN 3 WHEN 'partial' THEN 2 ELSE 1 END
                                WHEN ct.category = 'respond' THEN 0 END) AS r
                FROM exposure_techniques e
                JOIN findings f ON f.finding_id = e.finding_id
                JOIN control_assets ca USING (asset_id)
                JOIN controls c ON c.control_id = ca.control_id AND c.status = 'healthy'
                JOIN control_techniques ct ON ct.control_id = c.control_id AND ct.technique_id = e.technique_id
                WHERE {{scope}}
                GROUP BY ALL
            ) v ON v.technique_id = x.technique_id
            GROUP BY ALL)) mx"
    );
    let cell = |c: &'static str| -> Column {
        let sql = format!("CASE k_{c} WHEN 6 THEN 'P+' WHEN 5 THEN 'P' WHEN 4 THEN 'p' WHEN 3 THEN 'D+' WHEN 2 THEN 'D' WHEN 1 THEN 'd' WHEN 0 THEN 'R' ELSE '·' END");
        Column { sql: Cow::Owned(sql), sort: Some(Cow::Owned(format!("coalesce(k_{c}, -1)"))), ..col(c, "", 3) }
    };
    let mut columns = vec![
        Column { sort: Some(Cow::Borrowed("mkey")), ..col("tactic", "tactic", 10) },
        col("technique", "technique_id", 9),
        col("name", "name", 14),
        Column { right: true, ..col("exp", "exposures", 5) },
        Column { visible: false, right: true, ..col("assets", "assets", 6) },
        col("path", "CASE WHEN protected THEN '' ELSE 'OPEN' END", 4),
    ];
    for (c, _) in kinds {
        columns.push(cell(c));
    }
    View {
        id: "matrix",
        title: "Coverage matrix",
        from,
        base_where: "true".into(),
        key: "mkey",
        columns,
        fields: vec![
            Field { name: "tactic", aliases: &[], sql: "tactic", kind: Text },
            Field { name: "technique", aliases: &["id"], sql: "technique_id", kind: Text },
            Field { name: "name", aliases: &[], sql: "name", kind: Text },
            Field { name: "exposed", aliases: &["exposures"], sql: "exposures", kind: Int },
            Field { name: "protected", aliases: &[], sql: "protected", kind: Bool },
        ],
        text_fields: vec!["technique_id", "name", "tactic"],
        default_sort: (0, false),
        scope_asset: Some("asset_id"),
        holds: None,
    }
}

/// The controls inventory with the number of assets each covers.
pub fn controls() -> View {
    use FieldKind::*;
    View {
        id: "controls",
        title: "Controls",
        from: "(SELECT row_number() OVER (ORDER BY c.control_id) AS control_key, c.*, coalesce(n.assets, 0) AS assets
                FROM controls c LEFT JOIN (SELECT control_id, count(*) AS assets FROM control_assets GROUP BY control_id) n
                USING (control_id)) cv"
            .into(),
        base_where: "true".into(),
        key: "control_key",
        columns: vec![
            col("control", "control_id", 16),
            col("kind", "kind", 15),
            col("product", "product", 28),
            col("mode", "mode", 6),
            col("status", "status", 8),
            Column { right: true, ..col("assets", "assets", 6) },
            col("name", "name", 40),
            col("covers", "covers", 30),
        ],
        fields: vec![
            Field { name: "control", aliases: &["id", "control_id"], sql: "control_id", kind: Text },
            Field { name: "kind", aliases: &[], sql: "kind", kind: Text },
            Field { name: "product", aliases: &[], sql: "product", kind: Text },
            Field { name: "mode", aliases: &[], sql: "mode", kind: Text },
            Field { name: "status", aliases: &[], sql: "status", kind: Text },
            Field { name: "assets", aliases: &[], sql: "assets", kind: Int },
        ],
        text_fields: vec!["control_id", "name", "product"],
        default_sort: (0, false),
        scope_asset: None,
        holds: None,
    }
}

/// Work items handed over from Prioritization, newest first.
/// Filter fields of work items (the board and the work items table).
pub fn work_fields() -> Vec<Field> {
    use FieldKind::*;
    vec![
        Field { name: "id", aliases: &["work_item"], sql: "work_item_id", kind: Int },
        Field { name: "priority", aliases: &["prio", "p"], sql: "priority", kind: Priority },
        Field { name: "status", aliases: &[], sql: "status", kind: Text },
        Field { name: "team", aliases: &["owner"], sql: "team", kind: Text },
        Field { name: "assignee", aliases: &["who"], sql: "assignee", kind: Text },
        Field { name: "title", aliases: &[], sql: "title", kind: Text },
        Field { name: "sla", aliases: &[], sql: "sla", kind: Text },
        Field { name: "open", aliases: &[], sql: "open_findings", kind: Int },
        Field { name: "findings", aliases: &[], sql: "findings", kind: Int },
        Field { name: "kev", aliases: &[], sql: "kev", kind: Bool },
        Field { name: "fix_kind", aliases: &["kind"], sql: "fix_kind", kind: Text },
        Field { name: "rule", aliases: &[], sql: "rule", kind: Text },
        Field { name: "jira", aliases: &["jira_project"], sql: "jira_project", kind: Text },
        Field { name: "created", aliases: &[], sql: "created_at", kind: Time },
    ]
}

pub fn work_items() -> View {
    View {
        id: "work_items",
        title: "Work items",
        from: "(SELECT * FROM work_board WHERE work_item_id IN
                  (SELECT wf.work_item_id FROM work_item_findings wf JOIN findings f USING (finding_id) WHERE {scope})) wi"
            .into(),
        base_where: "true".into(),
        key: "work_item_id",
        columns: vec![
            Column { right: true, ..col("id", "work_item_id", 5) },
            col("prio", "priority", 4),
            col("status", "status", 11),
            col("team", "team", 18),
            col("assignee", "assignee", 14),
            Column { sort: Some(Cow::Borrowed("due_date")), ..col("due", "strftime(due_date, '%Y-%m-%d')", 10) },
            col("sla", "sla", 8),
            Column { right: true, ..col("open", "open_findings", 5) },
            Column { right: true, visible: false, ..col("findings", "findings", 8) },
            Column { right: true, visible: false, ..col("assets", "assets", 6) },
            col("title", "title", 50),
            Column { visible: false, ..col("rule", "rule", 12) },
            Column { visible: false, ..col("jira", "jira_project", 8) },
            Column { sort: Some(Cow::Borrowed("created_at")), visible: false, ..col("created", "strftime(created_at, '%Y-%m-%d %H:%M')", 16) },
            Column { visible: false, ..col("source", "source", 30) },
        ],
        fields: work_fields(),
        text_fields: vec!["title", "team", "assignee"],
        default_sort: (0, true),
        scope_asset: None,
        holds: None,
    }
}

/// Risk acceptances and false positives with their age and expiry.
pub fn exceptions() -> View {
    use FieldKind::*;
    View {
        id: "exceptions",
        title: "Exceptions",
        from: "exception_list".into(),
        base_where: "true".into(),
        key: "exception_id",
        columns: vec![
            Column { right: true, ..col("id", "exception_id", 4) },
            col("kind", "kind", 14),
            col("status", "status", 8),
            Column { right: true, ..col("findings", "findings", 8) },
            Column { right: true, ..col("held", "held", 5) },
            col("requester", "requester", 12),
            col("approver", "approver", 12),
            Column { right: true, ..col("age", "age_days", 4) },
            Column { sort: Some(Cow::Borrowed("expires_at")), ..col("expires", "strftime(expires_at, '%Y-%m-%d')", 10) },
            Column { right: true, ..col("left", "days_to_expiry", 5) },
            col("justification", "justification", 40),
            Column { visible: false, ..col("selection", "selection", 30) },
        ],
        fields: vec![
            Field { name: "id", aliases: &["exception"], sql: "exception_id", kind: Int },
            Field { name: "kind", aliases: &[], sql: "kind", kind: Text },
            Field { name: "status", aliases: &[], sql: "status", kind: Text },
            Field { name: "requester", aliases: &[], sql: "requester", kind: Text },
            Field { name: "approver", aliases: &[], sql: "approver", kind: Text },
            Field { name: "justification", aliases: &["why"], sql: "justification", kind: Text },
            Field { name: "left", aliases: &["days_to_expiry"], sql: "days_to_expiry", kind: Int },
        ],
        text_fields: vec!["justification", "requester", "approver"],
        default_sort: (8, false),
        scope_asset: None,
        holds: None,
    }
}

/// Findings of one asset (asset detail).
pub fn asset_findings(asset_id: i64) -> View {
    let mut v = findings();
    v.id = "asset_findings";
    v.title = "Findings of the asset";
    v.base_where = format!("asset_id = {asset_id}");
    v.default_sort = (1, true);
    v
}

/// Saved scopes.
pub fn scopes() -> View {
    use FieldKind::*;
    View {
        id: "scopes",
        title: "Scopes",
        from: "scopes".into(),
        base_where: "true".into(),
        key: "scope_id",
        columns: vec![
            col("name", "name", 16),
            col("filter", "filter", 40),
            col("description", "description", 24),
            Column { sort: Some(Cow::Borrowed("updated_at")), ..col("updated", "strftime(updated_at, '%Y-%m-%d')", 10) },
        ],
        fields: vec![
            Field { name: "name", aliases: &[], sql: "name", kind: Text },
            Field { name: "filter", aliases: &[], sql: "filter", kind: Text },
        ],
        text_fields: vec!["name", "filter", "description"],
        default_sort: (0, false),
        scope_asset: None,
        holds: None,
    }
}

/// Statements whose rows can be paged as a subquery.
pub fn is_query(sql: &str) -> bool {
    let first = sql
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .flat_map(|l| l.split_whitespace())
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(first.as_str(), "SELECT" | "WITH" | "FROM" | "VALUES" | "TABLE" | "DESCRIBE" | "SHOW" | "SUMMARIZE" | "(")
}

/// A view over the result of a user's query, paged by row number. The statement runs once to learn
/// its columns; each page runs it again with a window, so no result is ever held whole.
pub fn sql_result(c: &Connection, sql: &str) -> Result<View, duckdb::Error> {
    let body = sql.trim().trim_end_matches(';').trim().to_string();
    let probe = format!("SELECT * FROM ({body}) LIMIT 0");
    let mut st = c.prepare(&probe)?;
    let _ = st.query([])?;
    let names: Vec<String> = st.column_names();
    let columns = names
        .iter()
        .map(|n| {
            let quoted = format!("\"{}\"", n.replace('"', "\"\""));
            let w = (n.chars().count() as u16).clamp(6, 24);
            dynamic_column(n.clone(), quoted, w)
        })
        .collect();
    Ok(View {
        id: "sql",
        title: "Result",
        from: format!("(SELECT row_number() OVER () AS __rn, * FROM ({body})) q"),
        base_where: "true".into(),
        key: "__rn",
        columns,
        fields: Vec::new(),
        text_fields: Vec::new(),
        default_sort: (usize::MAX, false),
        scope_asset: None,
        holds: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlined_values_stay_data() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (id BIGINT, s VARCHAR, ts TIMESTAMP); INSERT INTO t VALUES (1, 'a''b?c', TIMESTAMP '2026-11-23 10:00:00'), (2, 'x', NULL);").unwrap();
        for hostile in ["a'b?c", "'; DROP TABLE t; --", "\\' OR 1=1 --", "?", "é ' \u{1F600}"] {
            let (sql, p) = inline_values("SELECT count(*) FROM t WHERE s = ? AND id > ?".into(), vec![Value::Text(hostile.into()), Value::BigInt(0)]);
            assert!(p.is_empty(), "{sql}");
            let n: i64 = c.query_row(&sql, [], |r| r.get(0)).unwrap();
            assert_eq!(n, if hostile == "a'b?c" { 1 } else { 0 }, "{sql}");
        }
        let us = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap().and_hms_opt(9, 0, 0).unwrap().and_utc().timestamp_micros();
        let (sql, _) = inline_values("SELECT count(*) FROM t WHERE ts > ? AND s <> '?'".into(), vec![Value::Timestamp(TimeUnit::Microsecond, us)]);
        assert_eq!(c.query_row(&sql, [], |r| r.get::<_, i64>(0)).unwrap(), 1, "{sql}");
        // A NUL byte stays a parameter.
        let (_, p) = inline_values("SELECT ?".into(), vec![Value::Text("a\0b".into())]);
        assert_eq!(p.len(), 1);
        // Table still there.
        assert_eq!(c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).unwrap(), 2);
    }
}
