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
            p1: 70.0,
            p2: 45.0,
            p3: 25.0,
        }
    }
}

pub const FACTORS: &[&str] = &[
    "severity", "kev", "ransomware", "epss", "exploit", "internet", "criticality", "runtime", "non_production", "p1", "p2", "p3",
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

const OPEN: &str = "status IN ('open', 'reopened')";

/// Private, loopback, link-local and shared address space (a public IP is anything else).
const PRIVATE_IP: &str = r"regexp_matches(ip, '^(10\.|127\.|169\.254\.|192\.168\.|172\.(1[6-9]|2[0-9]|3[01])\.|100\.(6[4-9]|[7-9][0-9]|1[01][0-9]|12[0-7])\.|0\.|::1$|f[cd]|fe80|localhost)')";

/// Misconfiguration findings that say a resource is reachable from the internet (cloud posture checks).
const EXPOSURE_TITLE: &str = "(title ILIKE '%public%' OR title ILIKE '%internet%' OR title ILIKE '%0.0.0.0/0%' OR title ILIKE '%::/0%' OR title ILIKE '%open to the world%' OR title ILIKE '%anonymous access%')";

/// `SELECT finding_id, score, prio, ...` for every open finding under `w`: the one scoring query.
pub fn scored_sql(w: &Weights) -> String {
    format!(
        r#"WITH
af AS (
    SELECT asset_id, kind, os, criticality, internet_facing, environment, owner,
           list_filter(ips, lambda ip: NOT {PRIVATE_IP})[1] AS public_ip
    FROM assets
),
ex AS (
    SELECT asset_id, min(title) AS ex_title FROM findings
    WHERE {OPEN} AND category = 'misconfiguration' AND {EXPOSURE_TITLE}
    GROUP BY asset_id
),
fc AS (SELECT finding_id, unnest(cves) AS cve FROM findings WHERE {OPEN} AND len(cves) > 0),
k AS (
    SELECT fc.finding_id, min(k.date_added) AS added, min(k.due_date) AS due, bool_or(k.ransomware) AS rw,
           min(k.cve) AS kcve
    FROM fc JOIN kev k USING (cve) GROUP BY fc.finding_id
),
e AS (
    SELECT fc.finding_id, max(e.epss) AS epss, arg_max(e.percentile, e.epss) AS pct
    FROM fc JOIN epss e USING (cve) GROUP BY fc.finding_id
),
s AS (
    SELECT f.finding_id, f.severity, f.cvss_score, len(f.cves) AS ncves,
           coalesce(f.cvss_score, CASE f.severity WHEN 'critical' THEN 9.0 WHEN 'high' THEN 7.0 WHEN 'medium' THEN 5.0
                                                  WHEN 'low' THEN 3.0 ELSE 0.0 END) AS base,
           k.finding_id IS NOT NULL AS is_kev, k.added, k.due, coalesce(k.rw, false) AS rw, k.kcve,
           e.epss, e.pct,
           coalesce(f.exploit_available, false) AS expl,
           CASE WHEN a.internet_facing THEN 'internet-facing (CMDB)'
                WHEN a.public_ip IS NOT NULL THEN 'public IP ' || a.public_ip
                WHEN x.ex_title IS NOT NULL THEN 'cloud exposure: ' || x.ex_title END AS exposure,
           coalesce(a.internet_facing = false, false) AS not_exposed,
           a.criticality, a.environment,
           CASE WHEN a.kind = 'k8s_workload' THEN 'running workload'
                WHEN a.kind = 'host' AND f.port > 0 THEN concat('listening service ', f.port, '/', coalesce(f.protocol, 'tcp')) END AS run_why
    FROM findings f
    LEFT JOIN af a USING (asset_id)
    LEFT JOIN k USING (finding_id)
    LEFT JOIN e USING (finding_id)
    LEFT JOIN ex x USING (asset_id)
    WHERE f.{OPEN}
),
p AS (
    SELECT *,
           round({sev} * base / 10, 1) AS p_sev,
           CASE WHEN is_kev THEN {kev} + CASE WHEN rw THEN {rw} ELSE 0 END ELSE 0 END AS p_kev,
           round({epss} * coalesce(epss, 0), 1) AS p_epss,
           CASE WHEN expl AND NOT is_kev THEN {expl} ELSE 0 END AS p_expl,
           CASE WHEN exposure IS NOT NULL THEN {net} ELSE 0 END AS p_net,
           CASE WHEN criticality IS NOT NULL THEN round({crit} * (least(greatest(criticality, 1), 5) - 3) / 2, 1) ELSE 0 END AS p_crit,
           CASE WHEN run_why IS NOT NULL THEN {run} ELSE 0 END AS p_run,
           CASE WHEN lower(environment) IN ('dev', 'development', 'test', 'testing', 'staging', 'stage', 'qa', 'uat', 'sandbox')
                THEN -{nonprod} ELSE 0 END AS p_env
    FROM s
),
t AS (
    SELECT *, round(p_sev + p_kev + p_epss + p_expl + p_net + p_crit + p_run + p_env, 1) AS raw FROM p
)
SELECT finding_id,
       least(100, greatest(0, raw)) AS score,
       CASE WHEN severity = 'info' THEN 'P4'
            WHEN least(100, raw) >= {p1} THEN 'P1' WHEN raw >= {p2} THEN 'P2' WHEN raw >= {p3} THEN 'P3' ELSE 'P4' END AS prio,
       is_kev, epss, pct, exposure IS NOT NULL AS exposed, run_why IS NOT NULL AS running,
       concat_ws('; ',
         concat(severity, CASE WHEN cvss_score IS NOT NULL THEN concat(' CVSS ', cvss_score) ELSE concat(' (no CVSS: taken as ', base, ')') END,
                ' +', p_sev::DECIMAL(6,1)),
         CASE WHEN is_kev THEN concat('KEV ', kcve, ' added ', added, ' due ', due,
                                      CASE WHEN rw THEN ', known ransomware use' ELSE '' END, ' +', p_kev::DECIMAL(6,1))
              WHEN ncves = 0 THEN 'no CVE: KEV and EPSS do not apply' ELSE 'not in KEV' END,
         CASE WHEN epss IS NOT NULL THEN concat('EPSS ', epss::DECIMAL(6,3), CASE WHEN pct IS NOT NULL THEN concat(' (percentile ', (pct * 100)::DECIMAL(4,0), ')') ELSE '' END,
                                                ' +', p_epss::DECIMAL(6,1))
              WHEN ncves > 0 THEN 'no EPSS score' END,
         CASE WHEN expl AND NOT is_kev THEN concat('exploit reported by the scanner +', p_expl::DECIMAL(6,1)) END,
         CASE WHEN exposure IS NOT NULL THEN concat(exposure, ' +', p_net::DECIMAL(6,1))
              WHEN not_exposed THEN 'not internet-facing (CMDB)' ELSE 'internet exposure unknown' END,
         CASE WHEN criticality IS NOT NULL THEN concat('asset criticality ', criticality, CASE WHEN p_crit >= 0 THEN ' +' ELSE ' ' END, p_crit::DECIMAL(6,1))
              ELSE 'asset criticality unknown' END,
         CASE WHEN run_why IS NOT NULL THEN concat(run_why, ' +', p_run::DECIMAL(6,1)) ELSE 'runtime unknown' END,
         CASE WHEN p_env <> 0 THEN concat(environment, ' environment ', p_env::DECIMAL(6,1)) END,
         CASE WHEN raw > 100 THEN 'capped at 100' WHEN raw < 0 THEN 'floored at 0' END,
         CASE WHEN severity = 'info' THEN 'informational: never above P4' END
       ) AS factors
FROM t"#,
        sev = n(w.severity),
        kev = n(w.kev),
        rw = n(w.ransomware),
        epss = n(w.epss),
        expl = n(w.exploit),
        net = n(w.internet),
        crit = n(w.criticality),
        run = n(w.runtime),
        nonprod = n(w.non_production),
        p1 = n(w.p1),
        p2 = n(w.p2),
        p3 = n(w.p3),
    )
}

/// The fix that removes each open finding not yet assigned one (fixes depend on the finding and its asset,
/// not on intel or weights, so they are assigned once; a package that had no fixed version is looked at
/// again once a scanner reports one). Informational findings need no fix.
const ASSIGN_FIXES: &str = r#"UPDATE findings SET fix_kind = r.fix_kind, fix = r.fix, fix_target = r.fix_target
FROM (
  SELECT finding_id, fix_kind,
       CASE fix_kind
         WHEN 'base_image' THEN 'rebuild on a patched ' || coalesce(os, 'base image') || ' base image'
         WHEN 'package_upgrade' THEN 'upgrade ' || package
         WHEN 'no_fix' THEN 'no fixed version yet: ' || package || coalesce(' (' || os || ')', '')
         WHEN 'vendor_patch' THEN
           CASE WHEN solution IS NULL OR (length(trim(solution)) < 30 AND NOT regexp_matches(solution, '[0-9]'))
                THEN title
                ELSE left(regexp_replace(trim(split_part(trim(solution), chr(10), 1)), '\s+', ' ', 'g'), 160) END
         WHEN 'iac_rule' THEN 'fix ' || vuln_id || ' in ' || asset_name || ':'
              || coalesce(nullif(regexp_extract(regexp_extract(location, '^[^: ]+'), '^(.*)/[^/]*$', 1), ''), '.')
         WHEN 'config_change' THEN title
         WHEN 'secret_rotation' THEN 'rotate the ' || title || ' in ' || asset_name
         WHEN 'code_fix' THEN 'fix ' || vuln_id || ' in ' || asset_name END AS fix,
       CASE WHEN fix_kind = 'package_upgrade' THEN trim(string_split(fixed_version, ',')[-1]) END AS fix_target
  FROM (
    SELECT f.finding_id, f.package, f.fixed_version, f.solution, f.title, f.vuln_id, f.location, f.asset_name, a.os,
           CASE
             WHEN f.severity = 'info' THEN 'informational'
             WHEN f.category = 'vulnerability' AND f.package IS NOT NULL AND f.fixed_version IS NULL THEN 'no_fix'
             WHEN f.category = 'vulnerability' AND f.package IS NOT NULL
                  AND a.kind IN ('container_image', 'k8s_workload')
                  AND (f.location IS NULL OR regexp_matches(f.location, '^/?(var/lib/dpkg/|lib/apk/db/|var/lib/rpm/|usr/lib/sysimage/rpm/)'))
                  THEN 'base_image'
             WHEN f.category = 'vulnerability' AND f.package IS NOT NULL AND f.fixed_version IS NOT NULL THEN 'package_upgrade'
             WHEN f.category = 'vulnerability' THEN 'vendor_patch'
             WHEN f.category = 'misconfiguration'
                  AND regexp_matches(coalesce(f.location, ''), '(\.tf|\.tfvars|\.hcl|\.ya?ml|\.json|\.bicep|Dockerfile)(:[0-9]+)?( \(.*\))?$')
                  THEN 'iac_rule'
             WHEN f.category = 'misconfiguration' THEN 'config_change'
             WHEN f.category = 'secret' THEN 'secret_rotation'
             ELSE 'code_fix' END AS fix_kind
    FROM findings f LEFT JOIN assets a ON a.asset_id = f.asset_id
    WHERE (f.fix_kind IS NULL OR (f.fix_kind = 'no_fix' AND f.fixed_version IS NOT NULL))
      AND f.status IN ('open', 'reopened')
  )
) r
WHERE findings.finding_id = r.finding_id"#;

pub fn assign_fixes(conn: &duckdb::Connection) -> Result<usize, duckdb::Error> {
    conn.execute(ASSIGN_FIXES, [])
}

/// Score every open finding and store what changed (one statement). Returns the number of findings changed.
/// Runs inside the caller's transaction when there is one.
pub fn rescore(conn: &duckdb::Connection, w: &Weights) -> Result<usize, duckdb::Error> {
    let sql = format!(
        r#"UPDATE findings SET risk_score = r.score, priority = r.prio, kev = r.is_kev, epss = r.epss,
       epss_percentile = r.pct, internet_exposed = r.exposed, runtime = r.running, risk_factors = r.factors
FROM ({}) r
WHERE findings.finding_id = r.finding_id
  AND (findings.risk_factors IS DISTINCT FROM r.factors OR findings.risk_score IS DISTINCT FROM r.score
       OR findings.priority IS DISTINCT FROM r.prio)"#,
        scored_sql(w)
    );
    if std::env::var_os("CTEM_PROFILE").is_some() {
        eprintln!("{sql}");
    }
    conn.execute(&sql, [])
}

/// Assign fixes to new findings, then rescore with the store's weights. Returns the findings whose score changed.
pub fn rescore_store(store: &Store) -> Result<usize, duckdb::Error> {
    assign_fixes(&store.conn)?;
    rescore(&store.conn, &store.weights)
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
        scored_sql(alt)
    );
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
    c.execute_batch("DROP TABLE score_diff")?;
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
