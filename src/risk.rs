//! Contextual risk: a 0-100 score and a priority P1-P4 per open finding, computed from exploit evidence
//! (CISA KEV, FIRST EPSS, the scanner's own exploit flag), severity, internet exposure, asset criticality,
//! environment and runtime presence, with every factor's contribution written out in `risk_factors`.
//! One set-based statement scores every open finding; it also assigns each finding the fix that removes it.

use crate::store::Store;
use std::fmt::Write;

/// Factor weights (points) and priority thresholds. Defaults are documented in README.md.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// Points for a CVSS 10 (scaled by CVSS / 10; severity stands in when there is no CVSS).
    pub severity: f64,
    /// In the CISA KEV catalog.
    pub kev: f64,
    /// Extra for KEV entries with known ransomware campaign use.
    pub ransomware: f64,
    /// Points for an EPSS probability of 1 (scaled by the probability).
    pub epss: f64,
    /// The scanner reports a public exploit (and the CVE is not in KEV).
    pub exploit: f64,
    /// Reachable from the internet (CMDB flag, public IP, cloud exposure finding).
    pub internet: f64,
    /// Asset criticality 5 gets +this, 1 gets -this, 3 nothing.
    pub criticality: f64,
    /// The vulnerable component runs (a deployed workload, a listening service).
    pub runtime: f64,
    /// Subtracted for development, test and staging assets.
    pub non_production: f64,
    /// Subtracted when healthy blocking controls on the asset protect significantly against every
    /// technique that exploits the finding (the finding is then `mitigated`).
    pub mitigated: f64,
    pub p1: f64,
    pub p2: f64,
    pub p3: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            severity: 30.0,
            kev: 35.0,
            ransomware: 5.0,
            epss: 25.0,
            exploit: 10.0,
            internet: 10.0,
            criticality: 10.0,
            runtime: 5.0,
            non_production: 10.0,
            mitigated: 30.0,
            p1: 70.0,
            p2: 45.0,
            p3: 25.0,
        }
    }
}

pub const FACTORS: &[&str] = &[
    "severity", "kev", "ransomware", "epss", "exploit", "internet", "criticality", "runtime", "non_production", "mitigated", "p1", "p2", "p3",
];

/// The 1-based line where `key = ...` is written (for errors that come after parsing).
fn key_line(text: &str, key: &str) -> usize {
    find_key_line(text, key).unwrap_or(1)
}

fn find_key_line(text: &str, key: &str) -> Option<usize> {
    for (i, l) in text.lines().enumerate() {
        let t = l.trim_start();
        let t = t.strip_prefix('"').unwrap_or(t);
        if let Some(rest) = t.strip_prefix(key) {
            let rest = rest.strip_prefix('"').unwrap_or(rest).trim_start();
            if rest.starts_with('=') {
                return Some(i + 1);
            }
        }
    }
    None
}

impl Weights {
    /// Parse weights from TOML: keys at the top level or under `[weights]`. Unknown factors, values that
    /// are not numbers, out of the range 0-100 or thresholds out of order are refused with their line.
    pub fn parse(text: &str, file: &str) -> Result<Weights, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| crate::config::line_of(text, s.start)).unwrap_or(1);
            format!("{file} line {line}: {}", e.message().lines().next().unwrap_or(""))
        })?;
        let table = match table.get("weights") {
            Some(toml::Value::Table(t)) => t.clone(),
            Some(_) => return Err(format!("{file} line {}: `weights` must be a table", key_line(text, "weights"))),
            None => table,
        };
        let mut w = Weights::default();
        for (k, v) in &table {
            let line = key_line(text, k);
            let x = match v {
                toml::Value::Integer(i) => *i as f64,
                toml::Value::Float(f) => *f,
                _ => return Err(format!("{file} line {line}: `{k}` must be a number")),
            };
            if !(0.0..=100.0).contains(&x) || x.is_nan() {
                return Err(format!("{file} line {line}: `{k}` = {x} is out of range (0 to 100)"));
            }
            let slot = match k.as_str() {
                "severity" => &mut w.severity,
                "kev" => &mut w.kev,
                "ransomware" => &mut w.ransomware,
                "epss" => &mut w.epss,
                "exploit" => &mut w.exploit,
                "internet" => &mut w.internet,
                "criticality" => &mut w.criticality,
                "runtime" => &mut w.runtime,
                "non_production" => &mut w.non_production,
                "mitigated" => &mut w.mitigated,
                "p1" => &mut w.p1,
                "p2" => &mut w.p2,
                "p3" => &mut w.p3,
                _ => {
                    return Err(format!("{file} line {line}: unknown factor `{k}` (known: {})", FACTORS.join(", ")));
                }
            };
            *slot = x;
        }
        if !(w.p1 > w.p2 && w.p2 > w.p3 && w.p3 > 0.0) {
            let line = ["p1", "p2", "p3"].iter().find_map(|k| find_key_line(text, k)).unwrap_or(1);
            return Err(format!(
                "{file} line {line}: priority thresholds must satisfy p1 > p2 > p3 > 0 (got p1 {}, p2 {}, p3 {})",
                w.p1, w.p2, w.p3
            ));
        }
        Ok(w)
    }

    pub fn load(path: &std::path::Path) -> Result<Weights, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Weights::parse(&text, &path.display().to_string())
    }
}

/// SQL literal for a weight.
fn n(x: f64) -> String {
    format!("{x:.4}::DOUBLE")
}

/// Findings that are scored: open, reopened, and mitigated by controls (still exposures, lowered).
const OPEN: &str = "status IN ('open', 'reopened', 'mitigated')";

/// Private, loopback, link-local and shared address space (a public IP is anything else).
const PRIVATE_IP: &str = r"regexp_matches(ip, '^(10\.|127\.|169\.254\.|192\.168\.|172\.(1[6-9]|2[0-9]|3[01])\.|100\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\.|0\.|::1$|f[cd]|fe80|localhost)')";

/// Misconfiguration findings that say a resource is reachable from the internet (cloud posture checks).
const EXPOSURE_TITLE: &str = "(title ILIKE '%public%' OR title ILIKE '%internet%' OR title ILIKE '%0.0.0.0/0%' OR title ILIKE '%::/0%' OR title ILIKE '%open to the world%' OR title ILIKE '%anonymous access%')";

/// The score of one finding and the parts of its explanation, as SQL in two layers: `parts`, the
/// select-list items that work out each factor once from a finding `f` and its asset context
/// `risk_actx a`; then the score, priority and explanation over a relation `f` holding the finding's
/// columns and those parts (see `layered`). Each factor's points are computed once per finding, not
/// once per place they are used.
struct Exprs {
    /// (name, SQL over `f` and `a`), in order; `raw` is over the others.
    parts: Vec<(&'static str, String)>,
    raw: String,
    score: String,
    prio: String,
    exposed: String,
    running: String,
    factors: String,
}

impl Exprs {
    /// An expression over the layered relation written instead over `findings f` joined with
    /// `risk_actx a` directly, each part in place (for updates, where joining the computed rows back to
    /// the findings costs more than working a part out several times).
    fn inline(&self, expr: &str) -> String {
        let mut out = expr.replace("f.r_raw", &format!("({})", self.raw));
        for (name, sql) in self.parts.iter().rev() {
            out = out.replace(&format!("f.{name}"), &format!("({sql})"));
        }
        out
    }
}

fn exprs(w: &Weights) -> Exprs {
    let base = "coalesce(f.cvss_score, CASE f.severity WHEN 'critical' THEN 9.0 WHEN 'high' THEN 7.0 WHEN 'medium' THEN 5.0 WHEN 'low' THEN 3.0 ELSE 0.0 END)";
    let parts = vec![
        ("r_base", base.to_string()),
        ("p_sev", format!("round({} * {base} / 10, 1)", n(w.severity))),
        (
            "p_kev",
            format!("(CASE WHEN f.kev_cve IS NOT NULL THEN {} + CASE WHEN f.kev_ransomware THEN {} ELSE 0 END ELSE 0 END)", n(w.kev), n(w.ransomware)),
        ),
        ("p_epss", format!("round({} * coalesce(f.epss, 0), 1)", n(w.epss))),
        ("r_expl", "(coalesce(f.exploit_available, false) AND f.kev_cve IS NULL)".to_string()),
        ("r_run", "(a.running OR (a.kind = 'host' AND coalesce(f.port, 0) > 0))".to_string()),
        ("a_running", "a.running".to_string()),
        ("a_kind", "a.kind".to_string()),
        ("a_exposed", "a.exposed".to_string()),
        ("a_points", "a.points".to_string()),
        ("a_text", "a.text".to_string()),
    ];
    let p_expl = format!("(CASE WHEN f.r_expl THEN {} ELSE 0 END)", n(w.exploit));
    let p_run = format!("(CASE WHEN f.r_run THEN {} ELSE 0 END)", n(w.runtime));
    let p_mit = format!("(CASE WHEN f.mitigated_by IS NOT NULL THEN -{} ELSE 0 END)", n(w.mitigated));
    // Asset-level points and their text (exposure, criticality, environment) come from `risk_actx`.
    let raw = format!("round(f.p_sev + f.p_kev + f.p_epss + {p_expl} + f.a_points + {p_run} + {p_mit}, 1)");
    let run_text = format!(
        "CASE WHEN f.a_running THEN concat('running workload +', {run}::DECIMAL(6,1))
              WHEN f.a_kind = 'host' AND f.port > 0 THEN concat('listening service ', f.port, '/', coalesce(f.protocol, 'tcp'), ' +', {run}::DECIMAL(6,1))
              ELSE 'runtime unknown' END",
        run = n(w.runtime)
    );
    let score = "least(100, greatest(0, f.r_raw))".to_string();
    let prio = format!(
        "CASE WHEN f.severity = 'info' THEN 'P4' WHEN f.r_raw >= {p1} THEN 'P1' WHEN f.r_raw >= {p2} THEN 'P2' WHEN f.r_raw >= {p3} THEN 'P3' ELSE 'P4' END",
        p1 = n(w.p1),
        p2 = n(w.p2),
        p3 = n(w.p3)
    );
    let factors = format!(
        r#"concat_ws('; ',
         concat(f.severity, CASE WHEN f.cvss_score IS NOT NULL THEN concat(' CVSS ', f.cvss_score) ELSE concat(' (no CVSS: taken as ', f.r_base, ')') END,
                ' +', f.p_sev::DECIMAL(6,1)),
         CASE WHEN f.kev_cve IS NOT NULL THEN concat('KEV ', f.kev_cve, ' added ', f.kev_added, ' due ', f.kev_due,
                                      CASE WHEN f.kev_ransomware THEN ', known ransomware use' ELSE '' END, ' +', f.p_kev::DECIMAL(6,1))
              WHEN len(f.cves) = 0 THEN 'no CVE: KEV and EPSS do not apply' ELSE 'not in KEV' END,
         CASE WHEN f.epss IS NOT NULL THEN concat('EPSS ', f.epss::DECIMAL(6,3),
                                                  CASE WHEN f.epss_percentile IS NOT NULL THEN concat(' (percentile ', (f.epss_percentile * 100)::DECIMAL(4,0), ')') ELSE '' END,
                                                  ' +', f.p_epss::DECIMAL(6,1))
              WHEN len(f.cves) > 0 THEN 'no EPSS score' END,
         CASE WHEN f.r_expl THEN concat('exploit reported by the scanner +', {p_expl}::DECIMAL(6,1)) END,
         f.a_text,
         {run_text},
         CASE WHEN f.mitigated_by IS NOT NULL THEN concat('mitigated by ', array_to_string(f.mitigated_by, ', '), ' (blocks every exploitation technique) ', {p_mit}::DECIMAL(6,1)) END,
         CASE WHEN f.r_raw > 100 THEN 'capped at 100' WHEN f.r_raw < 0 THEN 'floored at 0' END,
         CASE WHEN f.severity = 'info' THEN 'informational: never above P4' END
       )"#
    );
    Exprs { parts, raw, score, prio, exposed: "f.a_exposed".into(), running: "f.r_run".into(), factors }
}

/// The findings of `rel` (a FROM clause naming a finding `f` and its asset context `a`, with any
/// WHERE) with their columns and the parts of their score, as a relation to alias `f` for the score,
/// priority and explanation expressions.
fn layered(e: &Exprs, rel: &str) -> String {
    let parts: Vec<String> = e.parts.iter().map(|(name, sql)| format!("{sql} AS {name}")).collect();
    format!("SELECT *, {raw} AS r_raw FROM (SELECT f.*, {parts} FROM {rel}) f", raw = e.raw, parts = parts.join(", "))
}

/// The per-asset context scores read, built once per rescore: exposure (the CMDB flag, a public IP, an
/// open cloud-exposure finding), criticality and environment with their points and text, and whether the
/// asset is a running workload.
fn asset_context_sql(w: &Weights) -> String {
    let nonprod = "lower(environment) IN ('dev', 'development', 'test', 'testing', 'staging', 'stage', 'qa', 'uat', 'sandbox')";
    format!(
        "CREATE OR REPLACE TEMP TABLE risk_actx AS
         WITH c AS (
           SELECT a.asset_id, a.kind, a.criticality, a.internet_facing, a.environment, a.business_unit,
                  list_filter(a.ips, lambda ip: NOT {PRIVATE_IP})[1] AS public_ip, x.ex_title
           FROM assets a
           LEFT JOIN (SELECT asset_id, min(title) AS ex_title FROM findings
                      WHERE {OPEN} AND category = 'misconfiguration' AND {EXPOSURE_TITLE} GROUP BY asset_id) x USING (asset_id)
         ),
         p AS (
           SELECT *,
                  coalesce(internet_facing, false) OR public_ip IS NOT NULL OR ex_title IS NOT NULL AS exposed,
                  CASE WHEN criticality IS NOT NULL THEN round({crit} * (least(greatest(criticality, 1), 5) - 3) / 2, 1) ELSE 0 END AS p_crit,
                  CASE WHEN {nonprod} THEN -{np} ELSE 0 END AS p_env
           FROM c
         )
         SELECT asset_id, kind, exposed, kind = 'k8s_workload' AS running,
                CASE WHEN exposed THEN {net} ELSE 0 END + p_crit + p_env AS points,
                concat_ws('; ',
                  CASE WHEN internet_facing THEN concat('internet-facing (CMDB) +', {net}::DECIMAL(6,1))
                       WHEN public_ip IS NOT NULL THEN concat('public IP ', public_ip, ' +', {net}::DECIMAL(6,1))
                       WHEN ex_title IS NOT NULL THEN concat('cloud exposure: ', ex_title, ' +', {net}::DECIMAL(6,1))
                       WHEN internet_facing = false THEN 'not internet-facing (CMDB)' ELSE 'internet exposure unknown' END,
                  CASE WHEN criticality IS NOT NULL THEN concat(coalesce(business_unit || ' ', ''), 'asset criticality ', criticality, CASE WHEN p_crit >= 0 THEN ' +' ELSE ' ' END, p_crit::DECIMAL(6,1))
                       ELSE concat(coalesce(business_unit || ' ', ''), 'asset criticality unknown') END,
                  CASE WHEN p_env <> 0 THEN concat(environment, ' environment ', p_env::DECIMAL(6,1)) END
                ) AS text
         FROM p",
        crit = n(w.criticality),
        np = n(w.non_production),
        net = n(w.internet),
    )
}

/// KEV and EPSS for the open findings in `ids` (a finding with several CVEs takes the earliest KEV
/// entry and the highest EPSS).
fn intel_sql(ids: &str) -> String {
    format!(
        "CREATE OR REPLACE TEMP TABLE risk_fi AS
         WITH fc AS (SELECT finding_id, unnest(cves) AS cve FROM findings WHERE {OPEN} AND len(cves) > 0 AND {ids}),
         k AS (SELECT fc.finding_id, min(k.cve) AS kcve, min(k.date_added) AS added, min(k.due_date) AS due, bool_or(k.ransomware) AS rw
               FROM fc JOIN kev k USING (cve) GROUP BY fc.finding_id),
         e AS (SELECT fc.finding_id, max(e.epss) AS epss, arg_max(e.percentile, e.epss) AS pct
               FROM fc JOIN epss e USING (cve) GROUP BY fc.finding_id)
         SELECT finding_id, k.kcve, k.added, k.due, k.rw, e.epss, e.pct FROM k FULL OUTER JOIN e USING (finding_id);
         UPDATE findings SET kev_cve = i.kcve, kev_added = i.added, kev_due = i.due, kev_ransomware = i.rw, epss = i.epss, epss_percentile = i.pct
         FROM risk_fi i
         WHERE findings.finding_id = i.finding_id
           AND (findings.kev_cve IS DISTINCT FROM i.kcve OR findings.kev_added IS DISTINCT FROM i.added OR findings.kev_due IS DISTINCT FROM i.due
                OR findings.kev_ransomware IS DISTINCT FROM i.rw OR findings.epss IS DISTINCT FROM i.epss
                OR findings.epss_percentile IS DISTINCT FROM i.pct);
         UPDATE findings SET kev_cve = NULL, kev_added = NULL, kev_due = NULL, kev_ransomware = NULL, epss = NULL, epss_percentile = NULL
         WHERE {OPEN} AND {ids} AND (kev_cve IS NOT NULL OR epss IS NOT NULL) AND finding_id NOT IN (SELECT finding_id FROM risk_fi);"
    )
}

/// Findings whose every exploitation technique is protected with significant strength by a healthy
/// blocking control deployed on their asset become `mitigated` (with the controls in `mitigated_by`);
/// when that stops being true (a control degraded, disabled or no longer covering the asset) they are
/// open again. Findings with no known exploitation technique are never mitigated.
const MITIGATE: &str = "
CREATE OR REPLACE TEMP TABLE risk_mit AS
WITH ex AS (SELECT DISTINCT finding_id, technique_id FROM exposure_techniques WHERE relation = 'exploitation_technique'),
prot AS (
    SELECT e.finding_id, e.technique_id, list(DISTINCT c.control_id) AS ctl
    FROM ex e JOIN findings f ON f.finding_id = e.finding_id
    JOIN control_assets ca ON ca.asset_id = f.asset_id
    JOIN controls c ON c.control_id = ca.control_id AND c.status = 'healthy' AND c.mode = 'block'
    JOIN control_techniques ct ON ct.control_id = c.control_id AND ct.technique_id = e.technique_id
                               AND ct.category = 'protect' AND ct.strength = 'significant'
    GROUP BY e.finding_id, e.technique_id
),
agg AS (
    SELECT e.finding_id, count(*) AS n, count(p.technique_id) AS np, list_sort(list_distinct(flatten(list(p.ctl)))) AS ctl
    FROM ex e LEFT JOIN prot p ON p.finding_id = e.finding_id AND p.technique_id = e.technique_id
    GROUP BY e.finding_id
)
SELECT finding_id, ctl FROM agg WHERE n > 0 AND n = np;
UPDATE findings SET status = 'mitigated', mitigated_by = m.ctl FROM risk_mit m
WHERE findings.finding_id = m.finding_id AND (findings.status IN ('open', 'reopened') OR findings.mitigated_by IS DISTINCT FROM m.ctl);
UPDATE findings SET status = CASE WHEN times_reopened > 0 THEN 'reopened' ELSE 'open' END, mitigated_by = NULL
WHERE status = 'mitigated' AND finding_id NOT IN (SELECT finding_id FROM risk_mit);
DROP TABLE risk_mit;";

/// `SELECT finding_id, score, prio` for every open finding under `w` (needs `risk_actx`).
fn scored_select(w: &Weights) -> String {
    let e = exprs(w);
    format!(
        "SELECT f.finding_id, {} AS score, {} AS prio FROM ({}) f",
        e.score,
        e.prio,
        layered(&e, &format!("findings f JOIN risk_actx a ON a.asset_id = f.asset_id WHERE f.{OPEN}"))
    )
}

/// The columns a finding's fix is computed from, as SQL expressions (the rescore reads them from the
/// stored finding and its asset; the import from the rows it is inserting).
pub struct FixInputs {
    pub severity: String,
    pub category: String,
    pub package: String,
    pub fixed_version: String,
    pub location: String,
    pub title: String,
    pub vuln_id: String,
    pub asset_name: String,
    pub os: String,
    pub asset_kind: String,
    /// The vendor's patch as a fix: `patch_sql` of the solution, the only use of the solution (a relation
    /// with a column of it per distinct solution saves working it out for every finding).
    pub patch: String,
}

impl FixInputs {
    /// The inputs as the like-named columns of one relation (`{p}severity`, ..., `{p}os`), the asset's
    /// kind as `{p}{asset_kind}`.
    pub fn columns(p: &str, asset_kind: &str) -> FixInputs {
        let c = |n: &str| format!("{p}{n}");
        FixInputs {
            patch: patch_sql(&c("solution")),
            severity: c("severity"),
            category: c("category"),
            package: c("package"),
            fixed_version: c("fixed_version"),
            location: c("location"),
            title: c("title"),
            vuln_id: c("vuln_id"),
            asset_name: c("asset_name"),
            os: c("os"),
            asset_kind: c(asset_kind),
        }
    }
}

/// The kind of fix that removes a finding (SQL over `FixInputs`).
pub fn fix_kind_sql(c: &FixInputs) -> String {
    let FixInputs { severity: sev, category: cat, package: pkg, fixed_version: fixed, asset_kind: kind, location: loc, .. } = c;
    format!(
        r#"CASE
             WHEN {sev} = 'info' THEN 'informational'
             WHEN {cat} = 'vulnerability' AND {pkg} IS NOT NULL AND {fixed} IS NULL THEN 'no_fix'
             WHEN {cat} = 'vulnerability' AND {pkg} IS NOT NULL
                  AND {kind} IN ('container_image', 'k8s_workload')
                  AND ({loc} IS NULL OR regexp_matches({loc}, '^/?(var/lib/dpkg/|lib/apk/db/|var/lib/rpm/|usr/lib/sysimage/rpm/)'))
                  THEN 'base_image'
             WHEN {cat} = 'vulnerability' AND {pkg} IS NOT NULL AND {fixed} IS NOT NULL THEN 'package_upgrade'
             WHEN {cat} = 'vulnerability' THEN 'vendor_patch'
             WHEN {cat} = 'misconfiguration'
                  AND regexp_matches(coalesce({loc}, ''), '(\.tf|\.tfvars|\.hcl|\.ya?ml|\.json|\.bicep|Dockerfile)(:[0-9]+)?( \(.*\))?$')
                  THEN 'iac_rule'
             WHEN {cat} = 'misconfiguration' THEN 'config_change'
             WHEN {cat} = 'secret' THEN 'secret_rotation'
             ELSE 'code_fix' END"#
    )
}

/// A solution's first line as the fix of a vendor patch, or NULL when there is no solution worth quoting
/// (none, or a short one without a version number: "Upgrade", "Apply the patch"); SQL over `sol`.
pub fn patch_sql(sol: &str) -> String {
    format!(
        r#"CASE WHEN {sol} IS NULL OR (length(trim({sol})) < 30 AND NOT regexp_matches({sol}, '[0-9]')) THEN NULL
                ELSE left(trim(replace(replace(split_part(trim({sol}), chr(10), 1), chr(13), ''), chr(9), ' ')), 160) END"#
    )
}

/// The fix itself and its target version, given the fix kind `kind` (SQL over `FixInputs`).
pub fn fix_sql(kind: &str, c: &FixInputs) -> (String, String) {
    let FixInputs { os, package: pkg, patch, title, vuln_id: vid, asset_name: asset, location: loc, fixed_version, .. } = c;
    let fix = format!(
        r#"CASE {kind}
         WHEN 'base_image' THEN 'rebuild on a patched ' || coalesce({os}, 'base image') || ' base image'
         WHEN 'package_upgrade' THEN 'upgrade ' || {pkg}
         WHEN 'no_fix' THEN 'no fixed version yet: ' || {pkg} || coalesce(' (' || {os} || ')', '')
         WHEN 'vendor_patch' THEN coalesce({patch}, {title})
         WHEN 'iac_rule' THEN 'fix ' || {vid} || ' in ' || {asset} || ':'
              || coalesce(nullif(regexp_extract(regexp_extract({loc}, '^[^: ]+'), '^(.*)/[^/]*$', 1), ''), '.')
         WHEN 'config_change' THEN {title}
         WHEN 'secret_rotation' THEN 'rotate the ' || {title} || ' in ' || {asset}
         WHEN 'code_fix' THEN 'fix ' || {vid} || ' in ' || {asset} END"#
    );
    let target = format!("CASE WHEN {kind} = 'package_upgrade' THEN trim(string_split({fixed_version}, ',')[-1]) END");
    (fix, target)
}

/// The fix that removes each open finding not yet assigned one (fixes depend on the finding and its asset,
/// not on intel or weights, so they are assigned once, when a finding is imported or else here; a package
/// that had no fixed version is looked at again once a scanner reports one). Informational findings need
/// no fix.
fn assign_fixes_sql(ids: &str) -> String {
    let inputs = FixInputs { os: "a.os".into(), asset_kind: "a.kind".into(), ..FixInputs::columns("f.", "kind") };
    let outer = FixInputs::columns("", "kind");
    let (fix, target) = fix_sql("fix_kind", &outer);
    format!(
        r#"UPDATE findings SET fix_kind = r.fix_kind, fix = r.fix, fix_target = r.fix_target
FROM (
  SELECT finding_id, fix_kind, {fix} AS fix, {target} AS fix_target
  FROM (
    SELECT f.finding_id, f.severity, f.category, f.package, f.fixed_version, f.solution, f.title, f.vuln_id, f.location,
           f.asset_name, a.os, a.kind, {kind} AS fix_kind
    FROM findings f LEFT JOIN assets a ON a.asset_id = f.asset_id
    WHERE (f.fix_kind IS NULL OR (f.fix_kind = 'no_fix' AND f.fixed_version IS NOT NULL))
      AND f.status IN ('open', 'reopened') AND {ids}
  )
) r
WHERE findings.finding_id = r.finding_id"#,
        kind = fix_kind_sql(&inputs)
    )
}

/// Scoring findings as they are inserted, with the expressions the rescore uses, so that an import does
/// not leave a million rows for the rescore to update afterwards.
pub mod at_insert {
    use super::*;

    /// KEV and EPSS per definition of the staged report (`defs`: a relation with `def` and `cves`),
    /// exactly as `intel_sql` works them out per finding: the earliest KEV entry, the highest EPSS.
    pub fn def_intel_sql(defs: &str) -> String {
        format!(
            "WITH dc AS (SELECT def, unnest(cves) AS cve FROM {defs} WHERE len(cves) > 0),
             k AS (SELECT dc.def, min(k.cve) AS kcve, min(k.date_added) AS added, min(k.due_date) AS due, bool_or(k.ransomware) AS rw
                   FROM dc JOIN kev k USING (cve) GROUP BY dc.def),
             e AS (SELECT dc.def, max(e.epss) AS epss, arg_max(e.percentile, e.epss) AS pct
                   FROM dc JOIN epss e USING (cve) GROUP BY dc.def)
             SELECT def, k.kcve, k.added, k.due, k.rw, e.epss, e.pct FROM k FULL OUTER JOIN e USING (def)"
        )
    }

    /// The columns `relation` adds to the rows it is given (to leave out of an insert).
    pub fn part_columns(w: &Weights) -> String {
        let e = exprs(w);
        e.parts.iter().map(|(name, _)| *name).chain(["r_raw"]).collect::<Vec<_>>().join(", ")
    }

    /// The rows of `rel` (a FROM clause naming rows `f` with the findings' columns and the asset context
    /// `risk_actx a`) with the parts of their score, as a relation to alias `f` for `columns`.
    pub fn relation(w: &Weights, rel: &str) -> String {
        layered(&exprs(w), rel)
    }

    /// The rescore's columns (`kev, internet_exposed, runtime, risk_score, priority, risk_factors`, in
    /// that order) as SQL over `relation` aliased `f`: set for open findings, NULL for the rest, as the
    /// rescore leaves them.
    pub fn columns(w: &Weights) -> String {
        let e = exprs(w);
        let open = "f.status = 'open'";
        format!(
            "CASE WHEN {open} THEN f.kev_cve IS NOT NULL END, CASE WHEN {open} THEN {} END, CASE WHEN {open} THEN {} END,
             CASE WHEN {open} THEN {} END, CASE WHEN {open} THEN {} END, CASE WHEN {open} THEN {} END",
            e.exposed, e.running, e.score, e.prio, e.factors
        )
    }

    /// Statements run before the insert (in the import's transaction): the asset context, and the
    /// weights recorded when nothing was ever scored (so the rescore after the import knows what the
    /// new scores were computed with).
    pub fn before_sql(w: &Weights) -> String {
        format!(
            "{ctx};
             INSERT INTO settings SELECT 'score_weights', '{key}'
             WHERE NOT EXISTS (SELECT 1 FROM settings WHERE key = 'score_weights')
               AND NOT EXISTS (SELECT 1 FROM findings WHERE risk_score IS NOT NULL);",
            ctx = asset_context_sql(w),
            key = weights_key(w).replace('\'', "''")
        )
    }

    /// Statements run after the insert: the context of the assets whose every score was computed by
    /// this insert (`assets`: a relation with `asset_id`; `first_new`: the first new finding id) is
    /// recorded, so the rescore after the import leaves their findings alone unless the context moved.
    pub fn after_sql(assets: &str, first_new: i64) -> String {
        format!(
            "INSERT INTO risk_context
             SELECT a.asset_id, a.kind, a.exposed, a.running, a.points, a.text FROM risk_actx a
             WHERE a.asset_id IN (SELECT asset_id FROM {assets})
               AND a.asset_id NOT IN (SELECT asset_id FROM risk_context)
               AND a.asset_id NOT IN (SELECT asset_id FROM findings WHERE risk_score IS NOT NULL AND finding_id < {first_new});
             DROP TABLE risk_actx;"
        )
    }
}

/// Which open findings a rescore scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every one (intel, weights or controls changed, or asked for).
    All,
    /// Those whose inputs may have changed since they were last scored: findings without a score (new,
    /// reopened, or changed by a rescan: imports clear the score of what they change) and every finding of
    /// an asset whose context (exposure, criticality, environment, runtime) is not what it was at the last
    /// rescore. Everything when the weights are not those of the last rescore.
    Changed,
}

/// The weights as stored with the scores they produced.
fn weights_key(w: &Weights) -> String {
    format!("{w:?}")
}

/// Score every open finding (and assign fixes to those without one) and store the result. Runs in its
/// own transactions, one per slice of the id range, so the engine's working set stays bounded (imports
/// run under a memory cap) and readers never wait long; scores are derived data, so a slice interrupted
/// part-way is simply recomputed next time. Returns the number of open findings scored.
pub fn rescore(conn: &duckdb::Connection, w: &Weights) -> Result<usize, duckdb::Error> {
    rescore_scope(conn, w, Scope::All)
}

/// Score the open findings of `scope` (see `rescore`).
pub fn rescore_scope(conn: &duckdb::Connection, w: &Weights, scope: Scope) -> Result<usize, duckdb::Error> {
    // Assets change with imports: the controls' coverage follows, and with it what is mitigated.
    if let Err(e) = crate::store::controls::refresh_coverage(conn) {
        tracing::warn!("control coverage not refreshed: {e}");
    }
    let t = std::time::Instant::now();
    conn.execute_batch(&asset_context_sql(w))?;
    if std::env::var_os("CTEM_PROFILE").is_some() {
        eprintln!("  asset context {:?}", t.elapsed());
    }
    let last_weights: Option<String> =
        conn.query_row("SELECT max(value) FROM settings WHERE key = 'score_weights'", [], |r| r.get(0))?;
    let all = scope == Scope::All || last_weights.as_deref() != Some(weights_key(w).as_str());
    // The findings to score, as a condition on `findings` (unqualified) and on `findings f`.
    let (dirty, f_dirty) = if all {
        ("TRUE".to_string(), "TRUE".to_string())
    } else {
        conn.execute_batch(
            "CREATE OR REPLACE TEMP TABLE risk_moved AS
             SELECT a.asset_id FROM risk_actx a LEFT JOIN risk_context c USING (asset_id)
             WHERE c.asset_id IS NULL OR a.kind IS DISTINCT FROM c.kind OR a.exposed IS DISTINCT FROM c.exposed
                OR a.running IS DISTINCT FROM c.running OR a.points IS DISTINCT FROM c.points OR a.text IS DISTINCT FROM c.text",
        )?;
        let cond = |q: &str| format!("({q}risk_score IS NULL OR {q}asset_id IN (SELECT asset_id FROM risk_moved))");
        (cond(""), cond("f."))
    };
    let (lo, hi): (Option<i64>, Option<i64>) = conn.query_row(
        &format!("SELECT min(finding_id), max(finding_id) FROM findings WHERE {OPEN} AND {dirty}"),
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let e = exprs(w);
    let mut scored = 0;
    let slice = slice_size(conn);
    let (mut a, hi) = match (lo, hi) {
        (Some(lo), Some(hi)) => (lo, hi),
        _ => (1, 0),
    };
    while a <= hi {
        let b = a.saturating_add(slice - 1).min(hi);
        let ids = format!("finding_id BETWEEN {a} AND {b}");
        let sql = format!(
            "UPDATE findings AS f SET risk_score = {}, priority = {}, kev = f.kev_cve IS NOT NULL, internet_exposed = {},
                    runtime = {}, risk_factors = {}
             FROM risk_actx a WHERE a.asset_id = f.asset_id AND f.{OPEN} AND f.{ids} AND {f_dirty}",
            e.inline(&e.score),
            e.inline(&e.prio),
            e.inline(&e.exposed),
            e.inline(&e.running),
            e.inline(&e.factors)
        );
        conn.execute_batch("BEGIN TRANSACTION")?;
        let prof = std::env::var_os("CTEM_PROFILE").is_some();
        let r = (|| -> Result<usize, duckdb::Error> {
            let t = std::time::Instant::now();
            conn.execute(&assign_fixes_sql(&format!("f.{ids}")), [])?;
            let t1 = t.elapsed();
            conn.execute_batch(&intel_sql(&format!("{ids} AND {dirty}")))?;
            let t2 = t.elapsed();
            let n = conn.execute(&sql, [])?;
            if prof {
                eprintln!("  slice {a}-{b}: fixes {:?}, intel {:?}, score {:?}", t1, t2 - t1, t.elapsed() - t2);
            }
            Ok(n)
        })();
        match r {
            Ok(n) => {
                let t = std::time::Instant::now();
                conn.execute_batch("COMMIT")?;
                if prof {
                    eprintln!("  commit {:?}", t.elapsed());
                }
                scored += n;
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
        a = b.saturating_add(1);
    }
    // Mitigation reads the techniques the scores' inputs imply; the findings whose status it changes are
    // scored again (the mitigation factor).
    let has_controls: i64 = conn.query_row("SELECT count(*) FROM controls", [], |r| r.get(0))?;
    let mitigated: i64 = conn.query_row("SELECT count(*) FROM findings WHERE status = 'mitigated'", [], |r| r.get(0))?;
    if has_controls > 0 || mitigated > 0 {
        let sql = format!(
            "BEGIN TRANSACTION;
             CREATE OR REPLACE TEMP TABLE risk_before AS SELECT finding_id, status FROM findings WHERE {OPEN};
             {MITIGATE}
             CREATE OR REPLACE TEMP TABLE risk_changed AS
               SELECT f.finding_id FROM findings f JOIN risk_before b USING (finding_id) WHERE f.status <> b.status;
             UPDATE findings AS f SET risk_score = {}, priority = {}, risk_factors = {}
             FROM risk_actx a WHERE a.asset_id = f.asset_id AND f.finding_id IN (SELECT finding_id FROM risk_changed);
             DROP TABLE risk_before; DROP TABLE risk_changed;
             COMMIT;",
            e.inline(&e.score),
            e.inline(&e.prio),
            e.inline(&e.factors)
        );
        if let Err(err) = conn.execute_batch(&sql) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(err);
        }
    }
    // What the scores were computed from, for the next rescore to tell what changed.
    let save = format!(
        "BEGIN TRANSACTION;
         DELETE FROM risk_context;
         INSERT INTO risk_context SELECT asset_id, kind, exposed, running, points, text FROM risk_actx;
         DELETE FROM settings WHERE key = 'score_weights';
         INSERT INTO settings VALUES ('score_weights', '{}');
         COMMIT;",
        weights_key(w).replace('\'', "''")
    );
    if let Err(err) = conn.execute_batch(&save) {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(err);
    }
    conn.execute_batch("DROP TABLE IF EXISTS risk_fi; DROP TABLE IF EXISTS risk_actx; DROP TABLE IF EXISTS risk_moved")?;
    Ok(scored)
}

/// Findings scored per transaction: about one per KiB of the engine's memory limit (imports run under a
/// cap), between 100,000 and 1,000,000. Fewer slices are faster; smaller ones keep memory bounded.
fn slice_size(conn: &duckdb::Connection) -> i64 {
    ((memory_limit_bytes(conn) / 1024.0) as i64).clamp(100_000, 1_000_000)
}

/// The engine's memory limit in bytes (0 when it cannot be read).
pub fn memory_limit_bytes(conn: &duckdb::Connection) -> f64 {
    let limit: String = conn.query_row("SELECT current_setting('memory_limit')", [], |r| r.get(0)).unwrap_or_default();
    let mut parts = limit.split_whitespace();
    let v: f64 = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0.0);
    let unit = match parts.next().unwrap_or("") {
        "KiB" | "KB" => 1024.0,
        "MiB" | "MB" => 1024.0 * 1024.0,
        "GiB" | "GB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" | "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    };
    v * unit
}

/// Rescore every open finding with the store's weights. Must not be called inside a transaction.
pub fn rescore_store(store: &Store) -> Result<usize, duckdb::Error> {
    rescore_store_scope(store, Scope::All)
}

/// Rescore what an import of findings or assets may have changed (see `Scope::Changed`).
pub fn rescore_store_changed(store: &Store) -> Result<usize, duckdb::Error> {
    rescore_store_scope(store, Scope::Changed)
}

fn rescore_store_scope(store: &Store, scope: Scope) -> Result<usize, duckdb::Error> {
    // Expired exceptions put their findings back before they are scored.
    if let Err(e) = crate::store::exceptions::expire_due(store) {
        tracing::warn!("exceptions not expired: {e}");
    }
    let n = rescore_scope(&store.conn, &store.weights, scope)?;
    if let Err(e) = crate::store::work::refresh_store(store) {
        tracing::warn!("work items not refreshed: {e}");
    }
    Ok(n)
}

/// `ctem score --weights FILE --diff`: how the ranking would move under other weights, changing nothing.
pub fn diff(store: &Store, alt: &Weights, top: usize) -> anyhow::Result<String> {
    let c = &store.conn;
    let sql = format!(
        r#"WITH alt AS ({}),
cur AS (SELECT finding_id, coalesce(risk_score, 0) AS score, coalesce(priority, 'P4') AS prio, title, asset_name FROM findings WHERE {OPEN}),
j AS (
    SELECT cur.finding_id, cur.title, cur.asset_name, cur.score AS old_score, cur.prio AS old_prio,
           alt.score AS new_score, alt.prio AS new_prio,
           row_number() OVER (ORDER BY cur.score DESC, cur.finding_id) AS old_rank,
           row_number() OVER (ORDER BY alt.score DESC, cur.finding_id) AS new_rank
    FROM cur JOIN alt USING (finding_id)
)
SELECT finding_id, title, asset_name, old_score, old_prio, new_score, new_prio, old_rank, new_rank FROM j"#,
        scored_select(alt)
    );
    c.execute_batch(&asset_context_sql(alt))?;
    c.execute_batch(&format!("CREATE OR REPLACE TEMP TABLE score_diff AS {sql}"))?;
    let mut out = String::new();
    let counts = |col: &str| -> anyhow::Result<Vec<i64>> {
        let mut v = Vec::new();
        for p in ["P1", "P2", "P3", "P4"] {
            v.push(c.query_row(&format!("SELECT count(*) FROM score_diff WHERE {col} = ?"), [p], |r| r.get(0))?);
        }
        Ok(v)
    };
    let (old, new) = (counts("old_prio")?, counts("new_prio")?);
    let total: i64 = c.query_row("SELECT count(*) FROM score_diff", [], |r| r.get(0))?;
    writeln!(out, "{total} open findings; priorities now -> under the new weights:")?;
    for (i, p) in ["P1", "P2", "P3", "P4"].iter().enumerate() {
        writeln!(out, "  {p}  {:>8} -> {:<8} ({:+})", old[i], new[i], new[i] - old[i])?;
    }
    let list = |title: &str, cond: &str, order: &str, out: &mut String| -> anyhow::Result<()> {
        let n: i64 = c.query_row(&format!("SELECT count(*) FROM score_diff WHERE {cond}"), [], |r| r.get(0))?;
        writeln!(out, "\n{title}: {n}")?;
        let mut st = c.prepare(&format!(
            "SELECT finding_id, old_score, new_score, old_prio, new_prio, old_rank, new_rank, asset_name, title
             FROM score_diff WHERE {cond} ORDER BY {order} LIMIT {top}"
        ))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let (os, ns): (f64, f64) = (r.get(1)?, r.get(2)?);
            let (op, np): (String, String) = (r.get(3)?, r.get(4)?);
            let (or, nr): (i64, i64) = (r.get(5)?, r.get(6)?);
            let asset: Option<String> = r.get(7)?;
            let t: String = r.get(8)?;
            writeln!(
                out,
                "  #{id:<8} {op} {os:>5.1} -> {np} {ns:>5.1}  rank {or} -> {nr}  {}  {}",
                asset.unwrap_or_default(),
                crate::store::output::clip(&t, 60)
            )?;
        }
        Ok(())
    };
    list("Entered P1", "new_prio = 'P1' AND old_prio <> 'P1'", "new_score DESC, finding_id", &mut out)?;
    list("Left P1", "old_prio = 'P1' AND new_prio <> 'P1'", "old_score DESC, finding_id", &mut out)?;
    list("Biggest moves in rank", "old_rank <> new_rank", "abs(old_rank - new_rank) DESC, finding_id", &mut out)?;
    c.execute_batch("DROP TABLE score_diff; DROP TABLE risk_actx")?;
    Ok(out)
}

/// Human summary of the stored scores: counts per priority.
pub fn summary(store: &Store) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut st = store.conn.prepare(&format!(
        "SELECT priority, count(*), count(*) FILTER (WHERE kev), round(avg(risk_score), 1) FROM findings WHERE {OPEN} GROUP BY priority ORDER BY priority"
    ))?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let p: Option<String> = r.get(0)?;
        let (n, k): (i64, i64) = (r.get(1)?, r.get(2)?);
        let avg: Option<f64> = r.get(3)?;
        writeln!(out, "  {:<3} {n:>9} findings ({k} in KEV), mean score {:.1}", p.unwrap_or_else(|| "-".into()), avg.unwrap_or(0.0))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_sections() {
        assert_eq!(Weights::parse("", "w").unwrap(), Weights::default());
        let w = Weights::parse("[weights]\nkev = 50\nepss = 12.5\n", "w").unwrap();
        assert_eq!((w.kev, w.epss), (50.0, 12.5));
        let w = Weights::parse("kev = 40\n", "w").unwrap();
        assert_eq!(w.kev, 40.0);
    }

    #[test]
    fn bad_weights_name_the_line() {
        let e = Weights::parse("kev = 40\n\nexploitability = 3\n", "w.toml").unwrap_err();
        assert!(e.starts_with("w.toml line 3: unknown factor `exploitability`"), "{e}");
        let e = Weights::parse("kev = 40\nepss = 250\n", "w.toml").unwrap_err();
        assert!(e.starts_with("w.toml line 2: `epss` = 250 is out of range"), "{e}");
        let e = Weights::parse("kev = \"high\"\n", "w.toml").unwrap_err();
        assert!(e.contains("line 1: `kev` must be a number"), "{e}");
        let e = Weights::parse("p1 = 20\np2 = 45\n", "w.toml").unwrap_err();
        assert!(e.contains("line 1: priority thresholds"), "{e}");
        let e = Weights::parse("kev = [\n", "w.toml").unwrap_err();
        assert!(e.starts_with("w.toml line "), "{e}");
    }
}
