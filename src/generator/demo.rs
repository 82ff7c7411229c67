//! Load the sample estate into a fresh database: CMDB first, then the scans week by week.

use crate::store::import::Outcome;
use crate::store::Store;
use std::fmt::Write;
use std::path::Path;

/// The sample estate's named scopes: (name, asset filter, description).
pub const SCOPES: &[(&str, &str, &str)] = &[
    ("payments-prod", "bu=payments and env=prod", "Payments in production: card processing and its data stores"),
    ("internet-facing", "internet=true", "Reachable from the internet (CMDB flag)"),
    ("pci", "tag=pci", "The cardholder data environment"),
    ("crown-jewels", "criticality>=5 and env=prod", "Production assets of the highest criticality"),
];

pub fn load(db: &Path, dir: &Path) -> anyhow::Result<String> {
    if db.exists() {
        std::fs::remove_file(db)?;
        let wal = db.with_extension("duckdb.wal");
        if wal.exists() {
            std::fs::remove_file(wal)?;
        }
    }
    let mut store = Store::open(db, false)?;
    store.actor = "demo".into();
    let mut out = String::new();
    let cmdb = dir.join("cmdb/assets.csv");
    if cmdb.exists() {
        let s = crate::store::cmdb::import_assets(&store, &cmdb, None)?;
        writeln!(out, "CMDB: {} assets ({} skipped)", s.rows, s.skipped.len())?;
    }
    let controls = dir.join("controls/controls.csv");
    if controls.exists() {
        let l = crate::store::controls::import(&store, &controls)?;
        writeln!(out, "controls: {} ({} warnings)", l.controls, l.warnings.len())?;
    }
    let intel = dir.join("intel");
    if intel.is_dir() {
        // Feeds only: the licence notices that travel with them are not loaded.
        let mut files: Vec<_> = std::fs::read_dir(&intel)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && !crate::cli::is_notice(p))
            .collect();
        files.sort();
        for f in files {
            let l = crate::intel::load_file(&store, &f)?;
            let name = f.strip_prefix(dir).map(|p| p.display().to_string()).unwrap_or_else(|_| f.display().to_string());
            writeln!(out, "{}", l.line(&name))?;
        }
    }
    let scans = dir.join("scans");
    let mut failed = 0;
    // Week by week, with the remediation plan applied after each week's scans (default routing: the
    // asset owner's team), so later scans verify, grow and reopen work items as they would in use.
    let mut weeks: Vec<std::path::PathBuf> = std::fs::read_dir(&scans)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    weeks.sort();
    if weeks.is_empty() {
        weeks.push(scans.clone());
    }
    let mut summaries = Vec::new();
    let mut plans = Vec::new();
    for w in &weeks {
        summaries.extend(crate::cli::load_dir(&store, w)?);
        let p = crate::store::work::plan(&store, &crate::routing::Routing::default(), "", &crate::store::work::Selection::Open { min_priority: "P3".into() }, None, true)?;
        plans.push((w.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(), p));
    }
    for s in summaries {
        if matches!(s.outcome, Outcome::Failed(_)) {
            failed += 1;
        }
        let name = Path::new(&s.file).strip_prefix(dir).map(|p| p.display().to_string()).unwrap_or(s.file.clone());
        let mut s2 = s.clone();
        s2.file = name;
        writeln!(out, "{}", s2.line())?;
    }
    for (week, p) in &plans {
        writeln!(out, "plan after {week}: {} new work items, {} grown, {} findings already held", p.new_items(), p.grown_items(), p.already)?;
    }
    if failed > 0 {
        anyhow::bail!("{failed} sample file(s) failed to import:\n{out}");
    }
    // The scopes a programme starts from, so the Scoping stage and `--scope` have something to narrow to
    // (defined as of the estate's latest scan, like the rest of it).
    let at: chrono::NaiveDateTime = store.conn.query_row("SELECT max(scan_time) FROM imports", [], |r| r.get(0))?;
    for (name, filter, description) in SCOPES {
        crate::store::scopes::save(&store.conn, name, filter, description, at)?;
    }
    writeln!(out, "scopes: {}", SCOPES.iter().map(|s| s.0).collect::<Vec<_>>().join(", "))?;
    let q = |sql: &str| store.count(sql).unwrap_or(0);
    writeln!(out, "\nSample estate loaded into {}", db.display())?;
    writeln!(
        out,
        "  {} assets, {} findings: {} open, {} reopened, {} fixed",
        q("SELECT count(*) FROM assets"),
        q("SELECT count(*) FROM findings"),
        q("SELECT count(*) FROM findings WHERE status = 'open'"),
        q("SELECT count(*) FROM findings WHERE status = 'reopened'"),
        q("SELECT count(*) FROM findings WHERE status = 'fixed'")
    )?;
    writeln!(
        out,
        "  open by severity: {} critical, {} high, {} medium, {} low, {} info",
        q("SELECT count(*) FROM findings WHERE status IN ('open','reopened') AND severity = 'critical'"),
        q("SELECT count(*) FROM findings WHERE status IN ('open','reopened') AND severity = 'high'"),
        q("SELECT count(*) FROM findings WHERE status IN ('open','reopened') AND severity = 'medium'"),
        q("SELECT count(*) FROM findings WHERE status IN ('open','reopened') AND severity = 'low'"),
        q("SELECT count(*) FROM findings WHERE status IN ('open','reopened') AND severity = 'info'")
    )?;
    writeln!(out, "  findings reported by more than one tool: {}", q("SELECT count(*) FROM findings WHERE len(sources) > 1"))?;
    writeln!(
        out,
        "  open by priority: {} P1, {} P2, {} P3, {} P4; {} open findings on CISA KEV",
        q("SELECT count(*) FROM findings WHERE status IN ('open','reopened') AND priority = 'P1'"),
        q("SELECT count(*) FROM findings WHERE status IN ('open','reopened') AND priority = 'P2'"),
        q("SELECT count(*) FROM findings WHERE status IN ('open','reopened') AND priority = 'P3'"),
        q("SELECT count(*) FROM findings WHERE status IN ('open','reopened') AND priority = 'P4'"),
        q("SELECT count(*) FROM findings WHERE status IN ('open','reopened') AND kev")
    )?;
    writeln!(
        out,
        "  work items: {} open ({} past their SLA), {} verified by rescans, {} reopened by regressions",
        q("SELECT count(*) FROM work_board WHERE status NOT IN ('verified', 'risk_accepted', 'false_positive')"),
        q("SELECT count(*) FROM work_board WHERE sla = 'breached'"),
        q("SELECT count(*) FROM work_items WHERE status = 'verified'"),
        q("SELECT count(DISTINCT entity_id) FROM audit_log WHERE entity = 'work_item' AND detail LIKE 'regression%'")
    )?;
    Ok(out)
}
