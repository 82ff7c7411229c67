//! Command-line interface.

use crate::ingest::{generic_csv::Mapping, Format, ParseOptions};
use crate::paths::Paths;
use crate::store::import::{import_file, Outcome, Summary};
use crate::store::output::{run_query, OutFormat};
use crate::store::Store;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(name = "ctem", version, about = "Continuous Threat Exposure Management from the terminal")]
pub struct Cli {
    /// Database file (default: ctem.duckdb in the user's data directory)
    #[arg(long, global = true, env = "CTEM_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Open the database without any write path
    #[arg(long, global = true)]
    pub read_only: bool,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Import scanner reports (files or directories; .gz read transparently; format detected from content)
    Import {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Force a format: nessus, tenable-csv, qualys, openvas, trivy, grype, sarif, cyclonedx-json, cyclonedx-xml, osv, prowler-ocsf, csv
        #[arg(long)]
        format: Option<String>,
        /// Column mapping (TOML) for CSV files from other tools
        #[arg(long, value_name = "FILE")]
        mapping: Option<PathBuf>,
        /// Name of the scanned asset, for reports that do not say (SARIF without provenance, `trivy fs .`, OSV)
        #[arg(long, value_name = "NAME")]
        asset: Option<String>,
    },
    /// Load a CMDB export (CSV) of assets with owners, business units, environments, criticality and exposure
    ImportAssets {
        file: PathBuf,
        /// Column mapping (TOML, `[columns] owner = "managed_by"`)
        #[arg(long, value_name = "FILE")]
        mapping: Option<PathBuf>,
    },
    /// Load the controls inventory (CSV or TOML): replaces the previous one; prints what each covers
    ImportControls { file: PathBuf },
    /// Load technique mappings of your own (CSV: applies_to,id,technique_id,relation,strength) that add to or override the feeds'
    ImportMappings { file: PathBuf },
    /// Run SQL against the store (read-only unless --write)
    Query {
        sql: String,
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
        format: String,
        /// Allow statements that change the store
        #[arg(long)]
        write: bool,
    },
    /// Version, every path, database size and counts
    Info,
    /// Show a finding, every detection of it and why they were merged
    Explain { finding_id: i64 },
    /// Load the sample estate into a fresh database and summarise it
    Demo {
        /// Do not open the console; print the summary only
        #[arg(long)]
        no_console: bool,
        /// Use the sample estate in this directory instead of generating it
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
    },
    /// Write the deterministic sample estate, or a large estate for benchmarks
    Generate {
        /// Output directory
        out: PathBuf,
        /// Write a benchmark estate with this many findings instead of the sample estate
        #[arg(long)]
        findings: Option<usize>,
        /// Benchmark estate format: nessus, trivy or grype
        #[arg(long, default_value = "nessus")]
        format: String,
    },
    /// Threat intelligence: load feed files (KEV, EPSS, ATT&CK, CAPEC, CTID), download them, show freshness
    Intel {
        #[command(subcommand)]
        cmd: IntelCmd,
    },
    /// Recompute risk scores now, or with --weights FILE --diff show how the ranking would move (changing nothing)
    Score {
        /// Weights file (TOML; the `[weights]` keys of config.toml)
        #[arg(long, value_name = "FILE")]
        weights: Option<PathBuf>,
        /// Compare the ranking under --weights with the stored one
        #[arg(long, requires = "weights")]
        diff: bool,
        /// How many findings each list of the diff shows
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Open findings grouped by the fix that removes them, most risk removed first
    Fixes {
        /// Show only the first N groups
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// One row per fix and asset owner
        #[arg(long)]
        by_owner: bool,
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
        format: String,
    },
    /// Reports for chat, e-mail and scripts
    Report {
        #[command(subcommand)]
        cmd: ReportCmd,
    },
    /// Write a table or view of the SQL contract to a file (CSV, JSON lines or Parquet), streaming
    Export {
        /// A table or view (`findings`, `assets`, `fix_groups`, `work_items` ...)
        view: String,
        #[arg(long, default_value = "csv", value_parser = ["csv", "json", "parquet"])]
        format: String,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Turn open findings into work items by the routing rules of config.toml: prints what would be new,
    /// grown and unchanged per team; --apply makes it so
    Plan {
        /// Create and update the work items
        #[arg(long)]
        apply: bool,
        /// Only findings of this saved scope
        #[arg(long)]
        scope: Option<String>,
        /// Findings at this priority or more urgent (default: routing.min_priority, else P3)
        #[arg(long, value_parser = ["P1", "P2", "P3", "P4"])]
        min_priority: Option<String>,
        /// Rows of the item list to print
        #[arg(long, default_value_t = 40)]
        limit: usize,
    },
    /// Work items: list, show one (findings, fix plan, history), move, assign
    Work {
        #[command(subcommand)]
        cmd: WorkCmd,
    },
    /// Named scopes (asset filters every view and report can be narrowed to): list, add, remove
    Scope {
        #[command(subcommand)]
        cmd: Option<ScopeCmd>,
    },
    /// Risk acceptances and false positives: grant (two people), list, revoke
    Exception {
        #[command(subcommand)]
        cmd: ExceptionCmd,
    },
    /// SLA policy, breaches, what falls due within 3 days, and time to fix by priority and team
    Sla,
    /// The audit log of work items, exceptions and statuses (newest first)
    Audit {
        /// work_item or exception
        #[arg(long)]
        entity: Option<String>,
        #[arg(long)]
        id: Option<i64>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
        format: String,
    },
    /// Sync work items with Jira and ServiceNow: push new tickets and status changes, then pull the
    /// trackers' changes; conflicts are listed for a person to resolve
    Sync {
        #[command(subcommand)]
        cmd: Option<SyncCmd>,
        /// Print exactly what would be sent, change nothing
        #[arg(long)]
        dry_run: bool,
        /// Only this tracker: jira or servicenow
        #[arg(long, value_parser = ["jira", "servicenow"])]
        system: Option<String>,
    },
    /// Measure import throughput on generated estates (prints numbers; see README)
    #[command(hide = true)]
    Bench {
        #[arg(long, default_value_t = 1_000_000)]
        findings: usize,
        /// Directory for generated files and the database
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Which formats: nessus,trivy,grype
        #[arg(long, default_value = "nessus,trivy,grype")]
        formats: String,
        /// Measure the console (keystroke to frame) on a store of --findings instead
        #[arg(long)]
        console: bool,
        /// Measure rescoring, the ranked queue and fix groups on a store of --findings instead
        #[arg(long)]
        score: bool,
        /// Measure the parsers alone (no store) on the estate files of --formats instead
        #[arg(long)]
        parse: bool,
        /// Import rounds (each: a machine reference, then every format's first import and rescan);
        /// with more than one, a summary of medians and ranges follows
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        runs: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkCmd {
    /// Work items with status, priority, due date and SLA state
    List {
        /// Only this status (new, triaged, assigned, in_progress, fixed, verified, risk_accepted, false_positive), or `open`
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        team: Option<String>,
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
        format: String,
    },
    /// One work item: its findings, its fix plan and its history
    Show { id: i64 },
    /// Move work items to a status (refused, with the reason, where their findings say otherwise)
    Move {
        #[arg(required = true)]
        ids: Vec<i64>,
        #[arg(long)]
        to: String,
    },
    /// Set the assignee (an empty name clears it)
    Assign { id: i64, who: String },
}

#[derive(Subcommand, Debug)]
pub enum ScopeCmd {
    /// Every scope with the assets, open findings and open critical findings it covers (the default)
    List {
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
        format: String,
    },
    /// Create a scope, or replace the one of that name
    Add {
        name: String,
        /// A filter over asset fields: bu, env, tag, kind, internet, owner, criticality, cloud, account ...
        /// e.g. "bu=payments and env=prod" or "internet=true or tag=pci"
        filter: String,
        /// What the scope is for (kept when a scope is replaced without one)
        #[arg(long)]
        description: Option<String>,
    },
    /// Remove a scope (its assets and findings stay)
    Rm { name: String },
}

#[derive(Subcommand, Debug)]
pub enum ExceptionCmd {
    /// Grant an exception: the findings leave the queue until it expires or is revoked
    Add {
        /// risk_accepted or false_positive
        #[arg(long)]
        kind: String,
        /// Finding ids (repeat or separate with commas)
        #[arg(long, value_delimiter = ',')]
        finding: Vec<i64>,
        /// Every finding of a work item (the work item moves to the exception's status)
        #[arg(long)]
        work_item: Option<i64>,
        /// Findings matching a filter (`vuln=12345 and host~dev`)
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        justification: String,
        /// Who asks (default: you, as the audit log names you)
        #[arg(long)]
        requester: Option<String>,
        /// Who approves: someone other than the requester
        #[arg(long)]
        approver: Option<String>,
        /// 90d, 12w, 6m or YYYY-MM-DD (required for risk acceptance)
        #[arg(long)]
        expires: Option<String>,
    },
    /// Exceptions with their age and expiry (active ones unless --all)
    List {
        #[arg(long)]
        all: bool,
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
        format: String,
    },
    /// End an exception now: its findings come back to the queue
    Revoke {
        id: i64,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SyncCmd {
    /// Tickets per work item, pending and failed outbox entries, open conflicts
    Status,
    /// Keep a tracker's token or password in the OS keyring (read from standard input, never echoed)
    StoreSecret {
        #[arg(value_parser = ["jira", "servicenow"])]
        system: String,
        /// The tracker user (default: CTEM_JIRA_USER / CTEM_SNOW_USER or the config's user)
        #[arg(long)]
        user: Option<String>,
    },
    /// Settle a conflict: keep the local status (pushed next sync) or the tracker's (applied next sync)
    Resolve {
        work_item: i64,
        #[arg(long, value_parser = ["jira", "servicenow"])]
        system: String,
        #[arg(long, value_parser = ["local", "remote"])]
        keep: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReportCmd {
    /// What changed: new findings by priority, new exploited ones, regressions, fixes, biggest open fixes, 30-day trend
    Standup {
        /// Window start: an age back from the latest scan (24h, 3d, 2w) or a date; default 24h
        #[arg(long)]
        since: Option<String>,
        /// Narrow to a saved scope
        #[arg(long)]
        scope: Option<String>,
        #[arg(long, default_value = "md", value_parser = ["md", "json"])]
        format: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum IntelCmd {
    /// Load feed files (format recognised from content; .gz read transparently); each replaces its feed
    Load {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Download the KEV, EPSS, ATT&CK, CAPEC and CTID feeds from their official addresses and load them
    /// (HTTPS_PROXY honoured; CTEM_INTEL_MIRROR names a mirror holding the same file names)
    Update,
    /// Every loaded feed with its version, date and age
    Status,
}

/// Open the store read-only; a database from an older version is migrated first unless --read-only.
pub(crate) fn open_for_read(cli: &Cli, paths: &Paths) -> anyhow::Result<Store> {
    let db = db_path(cli, paths);
    Ok(if cli.read_only { Store::open(&db, true)? } else { Store::open_for_reading(&db)? })
}

/// Open the store for writing with the risk weights of config.toml (its warnings go to stderr).
fn open_rw(cli: &Cli, paths: &Paths) -> anyhow::Result<Store> {
    Ok(open_rw_cfg(cli, paths)?.0)
}

/// `open_rw`, also returning the configuration.
pub(crate) fn open_rw_cfg(cli: &Cli, paths: &Paths) -> anyhow::Result<(Store, crate::config::Config)> {
    let mut warnings = Vec::new();
    let cfg = crate::config::Config::load(&paths.config_file(), &mut warnings);
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let mut store = Store::open(&db_path(cli, paths), cli.read_only)?;
    apply_config(&mut store, &cfg);
    Ok((store, cfg))
}

/// `[sql]` limits on the engine (memory, threads).
pub fn apply_sql_limits(store: &Store, cfg: &crate::config::Config) {
    if let Some(m) = &cfg.sql_memory_limit {
        if let Err(e) = store.conn.execute("SET memory_limit = ?", duckdb::params![m]) {
            tracing::warn!("[sql] memory_limit: {e}");
        }
    }
    if let Some(t) = cfg.sql_threads {
        if let Err(e) = store.conn.execute_batch(&format!("SET threads = {t}")) {
            tracing::warn!("[sql] threads: {e}");
        }
    }
}

/// Give an opened store what config.toml says: weights, routing, the SLA policy, the audit name; and
/// expire the exceptions whose date has passed (their findings come back to the queue).
pub fn apply_config(store: &mut Store, cfg: &crate::config::Config) {
    store.weights = cfg.weights.clone();
    store.routing = cfg.routing.clone();
    apply_sql_limits(store, cfg);
    if let Some(u) = &cfg.user {
        store.actor = u.clone();
    }
    if store.read_only {
        return;
    }
    if cfg.routing_error.is_none() {
        if let Err(e) = cfg.sla.store(&store.conn) {
            tracing::warn!("SLA policy not stored: {e}");
        }
    }
    match crate::store::exceptions::expire_due(store) {
        Ok(v) if !v.is_empty() => {
            if let Err(e) = crate::risk::rescore_store(store) {
                tracing::warn!("rescore after expired exceptions: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("exceptions not expired: {e}"),
    }
}

pub fn db_path(cli: &Cli, paths: &Paths) -> PathBuf {
    cli.db.clone().unwrap_or_else(|| paths.default_db())
}

/// A readme or licence notice kept next to reports or feeds (`README.md`, `CTID-LICENSE.txt`, `NOTICE`):
/// skipped when a directory is walked; named on its own it is read like any file.
pub fn is_notice(p: &Path) -> bool {
    let name = p.file_name().map(|n| n.to_string_lossy().to_ascii_uppercase()).unwrap_or_default();
    let ext = p.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("md") => true,
        None | Some("txt") => ["LICENSE", "LICENCE", "NOTICE", "README", "COPYING"].iter().any(|w| name.contains(w)),
        _ => false,
    }
}

/// Files named, and the files below directories named (sorted; hidden files, readmes and licence
/// notices left out).
pub fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            let mut files = Vec::new();
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).with_context(|| format!("{}", d.display()))? {
                    let e = e?;
                    let path = e.path();
                    if e.file_name().to_string_lossy().starts_with('.') {
                        continue;
                    }
                    if path.is_dir() {
                        stack.push(path);
                    } else if !is_notice(&path) {
                        files.push(path);
                    }
                }
            }
            files.sort();
            out.extend(files);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    Ok(out)
}

pub fn import_paths(store: &Store, files: &[PathBuf], format: Option<Format>, opts: &ParseOptions) -> Vec<Summary> {
    files.iter().map(|f| import_file(store, f, format, opts)).collect()
}

/// Logs go to a file in the data directory, never to the terminal while the console runs.
fn init_file_log(paths: &Paths) {
    let _ = std::fs::create_dir_all(&paths.data_dir);
    if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open(paths.log_file()) {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(f))
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CTEM_LOG").unwrap_or_else(|_| "info".into()))
            .try_init();
    }
}

fn console(db: &Path, read_only: bool, paths: &Paths) -> anyhow::Result<i32> {
    init_file_log(paths);
    crate::tui::run(db, read_only, paths)?;
    Ok(0)
}

pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let paths = Paths::discover();
    let Some(cmd) = &cli.cmd else {
        return console(&db_path(&cli, &paths), cli.read_only, &paths);
    };
    match cmd {
        Cmd::Import { paths: inputs, format, mapping, asset } => {
            let fmt = match format {
                Some(f) => Some(Format::parse(f).with_context(|| format!("unknown format '{f}'"))?),
                None => None,
            };
            let mapping = match mapping {
                Some(m) => Some(Mapping::load(m).map_err(anyhow::Error::msg)?),
                None => None,
            };
            let files = expand(inputs)?;
            let store = open_rw(&cli, &paths)?;
            let opts = ParseOptions { asset_hint: asset.clone(), mapping, progress: None };
            let mut failed = 0;
            for s in import_paths(&store, &files, fmt, &opts) {
                match s.outcome {
                    Outcome::Failed(_) => {
                        failed += 1;
                        eprintln!("{}", s.line());
                    }
                    _ => println!("{}", s.line()),
                }
            }
            Ok(if failed > 0 { 1 } else { 0 })
        }
        Cmd::ImportAssets { file, mapping } => {
            let m = match mapping {
                Some(p) => {
                    let t = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
                    Some(toml::from_str::<crate::store::cmdb::AssetMapping>(&t).map_err(|e| anyhow::anyhow!("{}: {}", p.display(), e.message()))?)
                }
                None => None,
            };
            let store = open_rw(&cli, &paths)?;
            let s = crate::store::cmdb::import_assets(&store, file, m.as_ref())?;
            println!("{}: {} assets: {} new, {} matched to known assets, {} rows skipped", file.display(), s.rows, s.new, s.matched, s.skipped.len());
            for w in &s.skipped {
                println!("  skipped {w}");
            }
            Ok(0)
        }
        Cmd::ImportControls { file } => {
            let store = open_rw(&cli, &paths)?;
            let l = crate::store::controls::import(&store, file)?;
            println!("{}: {} controls", file.display(), l.controls);
            let mut st = store.conn.prepare(
                "SELECT c.control_id, c.kind, c.mode, c.status, count(a.asset_id) FROM controls c
                 LEFT JOIN control_assets a USING (control_id) GROUP BY ALL ORDER BY c.control_id",
            )?;
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, i64>(4)?)))?;
            for r in rows {
                let (id, kind, mode, status, n) = r?;
                println!("  {id:<20} {kind:<16} {mode:<7} {status:<9} covers {n} assets");
            }
            for w in &l.warnings {
                eprintln!("warning: {w}");
            }
            Ok(0)
        }
        Cmd::ImportMappings { file } => {
            let store = open_rw(&cli, &paths)?;
            let n = crate::store::controls::import_mappings(&store, file)?;
            println!("{}: {n} mappings", file.display());
            Ok(0)
        }
        Cmd::Query { sql, format, write } => {
            use crate::store::sqlguard::{classify, error_with_position, Verdict};
            // Without --write the engine itself is read-only and cannot reach files; with it, the same
            // rule as the console's: no attaching, extensions, settings or files outside the export directory.
            let store = if *write {
                if let Verdict::Refused(why) = classify(sql, &paths.data_dir.join("exports")) {
                    bail!("refused: {why}");
                }
                Store::open(&db_path(&cli, &paths), cli.read_only)?
            } else {
                if classify(sql, &paths.data_dir.join("exports")) == Verdict::Write {
                    bail!("refused: this statement changes the store; add --write to allow it");
                }
                Store::open_for_query(&db_path(&cli, &paths))?
            };
            let mut warnings = Vec::new();
            apply_sql_limits(&store, &crate::config::Config::load(&paths.config_file(), &mut warnings));
            let fmt = OutFormat::parse(format).unwrap_or(OutFormat::Table);
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            run_query(&store.conn, sql, fmt, &mut lock).map_err(|e| anyhow::anyhow!("{}", error_with_position(&e.to_string(), 0)))?;
            Ok(0)
        }
        Cmd::Info => {
            print!("{}", info(&cli, &paths)?);
            Ok(0)
        }
        Cmd::Explain { finding_id } => {
            let store = open_for_read(&cli, &paths)?;
            print!("{}", crate::explain::explain(&store, *finding_id)?);
            Ok(0)
        }
        Cmd::Demo { no_console, data } => {
            let db = cli.db.clone().unwrap_or_else(|| paths.demo_db());
            let dir = match data {
                Some(d) => d.clone(),
                None => {
                    let d = paths.sample_dir();
                    crate::generator::sample::write(&d)?;
                    d
                }
            };
            let text = crate::generator::demo::load(&db, &dir)?;
            if *no_console {
                print!("{text}");
                return Ok(0);
            }
            console(&db, cli.read_only, &paths)
        }
        Cmd::Generate { out, findings, format } => {
            match findings {
                None => {
                    crate::generator::sample::write(out)?;
                    println!("sample estate written to {}", out.display());
                }
                Some(n) => {
                    let f = crate::generator::estate::write(out, *n, format)?;
                    println!("{} findings written to {}", n, f.display());
                }
            }
            Ok(0)
        }
        Cmd::Intel { cmd } => intel(&cli, &paths, cmd),
        Cmd::Report { cmd: ReportCmd::Standup { since, scope, format } } => {
            let since_given = since.clone();
            let store = open_for_read(&cli, &paths)?;
            let until: Option<chrono::NaiveDateTime> = store.conn.query_row("SELECT max(scan_time) FROM imports", [], |r| r.get(0))?;
            let Some(until) = until else { bail!("nothing imported yet: no stand-up to report") };
            // Without --since: what changed since the last stand-up (or in the 24 hours up to the latest scan).
            let (since, held) = match since {
                Some(s) => (crate::report::parse_since(s, until).map_err(|e| anyhow::anyhow!("--since {e}"))?, None),
                None => crate::report::default_since(&store, until)?,
            };
            let compiled = match scope {
                Some(name) => {
                    let sc = crate::store::scopes::get(&store.conn, name)?.with_context(|| format!("no scope named '{name}' (ctem query \"SELECT name FROM scopes\")"))?;
                    let c = crate::store::views::compile_scope(&sc.filter, chrono::Utc::now().naive_utc())
                        .map_err(|e| anyhow::anyhow!("scope '{name}': {}", e.message))?;
                    Some((sc.name, c))
                }
                None => None,
            };
            let mut r = crate::report::standup(&store, since, until, compiled.as_ref().map(|(n, c)| (n.as_str(), c)), true)?;
            r.last_standup = held;
            if format == "json" {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", r.markdown());
            }
            // The report was read from a read-only store; noting it as held needs a moment of writing,
            // skipped when another process has the database.
            if since_given.is_none() && !cli.read_only {
                drop(store);
                let noted = Store::open(&db_path(&cli, &paths), false)
                    .map_err(anyhow::Error::from)
                    .and_then(|s| crate::report::record_standup(&s, until, "report", r.scope.as_deref()));
                if let Err(e) = noted {
                    tracing::warn!("stand-up not recorded: {e}");
                }
            }
            Ok(0)
        }
        Cmd::Export { view, format, out } => {
            let store = open_for_read(&cli, &paths)?;
            let known: i64 = store.conn.query_row(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?",
                [view],
                |r| r.get(0),
            )?;
            if known == 0 {
                bail!("no table or view named '{view}' (ctem query \"SELECT table_name FROM information_schema.tables\")");
            }
            let path = out.display().to_string();
            let table = format!("\"{}\"", view.replace('"', "\"\""));
            if format == "json" {
                // JSON lines, streamed row by row.
                let file = std::fs::File::create(out).with_context(|| path.clone())?;
                let mut w = std::io::BufWriter::new(file);
                let n = crate::store::output::write_json_lines(&store.conn, &format!("SELECT * FROM {table}"), &mut w)
                    .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
                println!("{n} rows of {view} written to {path} ({format})");
                return Ok(0);
            }
            let fmt = if format == "parquet" { "FORMAT parquet" } else { "FORMAT csv, HEADER true" };
            let n = store.conn.execute(
                &format!("COPY (SELECT * FROM {table}) TO {} ({fmt})", crate::store::sql_literal(&path)),
                [],
            ).map_err(|e| anyhow::anyhow!("{path}: {}", first_line(&e.to_string())))?;
            println!("{n} rows of {view} written to {path} ({format})");
            Ok(0)
        }
        Cmd::Score { weights, diff, top } => {
            if let Some(wf) = weights {
                let alt = crate::risk::Weights::load(wf).map_err(anyhow::Error::msg)?;
                if !*diff {
                    bail!("--weights is for trying weights out with --diff; to change the weights in use, edit [weights] in {}", paths.config_file().display());
                }
                let store = open_for_read(&cli, &paths)?;
                print!("{}", crate::risk::diff(&store, &alt, *top)?);
                return Ok(0);
            }
            let store = open_rw(&cli, &paths)?;
            let t = std::time::Instant::now();
            let n = crate::risk::rescore_store(&store)?;
            println!("{n} open findings scored in {:.2} s", t.elapsed().as_secs_f64());
            print!("{}", crate::risk::summary(&store)?);
            Ok(0)
        }
        Cmd::Fixes { top, by_owner, format } => {
            let store = Store::open_for_query(&db_path(&cli, &paths))?;
            let sql = if *by_owner {
                format!("SELECT fix, kind, owner, findings, assets, risk_removed FROM fix_group_owners LIMIT {top}")
            } else {
                format!("SELECT fix, kind, findings, assets, risk_removed, p1, kev, array_to_string(owners, ', ') AS owners FROM fix_groups LIMIT {top}")
            };
            let fmt = OutFormat::parse(format).unwrap_or(OutFormat::Table);
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            run_query(&store.conn, &sql, fmt, &mut lock)?;
            Ok(0)
        }
        Cmd::Plan { apply, scope, min_priority, limit } => crate::mobilize::plan(&cli, &paths, *apply, scope.as_deref(), min_priority.as_deref(), *limit),
        Cmd::Work { cmd } => crate::mobilize::work(&cli, &paths, cmd),
        Cmd::Scope { cmd } => scope(&cli, &paths, cmd.as_ref().unwrap_or(&ScopeCmd::List { format: "table".into() })),
        Cmd::Exception { cmd } => crate::mobilize::exception(&cli, &paths, cmd),
        Cmd::Sla => crate::mobilize::sla(&cli, &paths),
        Cmd::Audit { entity, id, limit, format } => crate::mobilize::audit(&cli, &paths, entity.as_deref(), *id, *limit, format),
        Cmd::Sync { cmd, dry_run, system } => crate::mobilize::sync(&cli, &paths, cmd.as_ref(), *dry_run, system.clone()),
        Cmd::Bench { findings, dir, formats, console, score, parse, runs } => {
            if *parse {
                crate::generator::bench::parse_only(*findings, dir.clone(), formats)?;
                return Ok(0);
            }
            if *score {
                crate::generator::bench::score(*findings, dir.clone())?;
                return Ok(0);
            }
            if *console {
                crate::generator::bench::console(*findings, dir.clone())?;
                return Ok(0);
            }
            crate::generator::bench::run(*findings, dir.clone(), formats, *runs as usize)?;
            Ok(0)
        }
    }
}

fn scope(cli: &Cli, paths: &Paths, cmd: &ScopeCmd) -> anyhow::Result<i32> {
    use crate::store::scopes;
    let now = chrono::Utc::now().naive_utc();
    match cmd {
        ScopeCmd::List { format } => {
            let store = open_for_read(cli, paths)?;
            let rows = scopes::list_with_counts(&store.conn, now)?;
            if rows.is_empty() {
                println!("no scopes yet: ctem scope add NAME \"bu=payments and env=prod\"");
                return Ok(0);
            }
            // Shown through the query printer, so every format reads the same columns.
            let lit = crate::store::sql_literal;
            let values: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "({}, {}, {}::BIGINT, {}::BIGINT, {}::BIGINT, {})",
                        lit(&r.scope.name),
                        lit(&r.scope.filter),
                        r.assets,
                        r.open_findings,
                        r.critical,
                        lit(r.error.as_deref().map(|e| format!("filter no longer valid: {e}")).as_deref().unwrap_or(&r.scope.description))
                    )
                })
                .collect();
            let sql = format!("SELECT * FROM (VALUES {}) t(name, filter, assets, open_findings, critical, description)", values.join(", "));
            let fmt = crate::store::output::OutFormat::parse(format).unwrap_or(crate::store::output::OutFormat::Table);
            crate::store::output::run_query(&store.conn, &sql, fmt, &mut std::io::stdout().lock())?;
            Ok(0)
        }
        ScopeCmd::Add { name, filter, description } => {
            let store = open_rw(cli, paths)?;
            let existed = scopes::get(&store.conn, name)?;
            let description = description.clone().or_else(|| existed.as_ref().map(|s| s.description.clone())).unwrap_or_default();
            scopes::save(&store.conn, name, filter, &description, now)?;
            let compiled = crate::store::views::compile_scope(filter, now).map_err(|e| anyhow::anyhow!("scope filter {e}"))?;
            let (assets, open, critical) = scopes::counts(&store.conn, &compiled)?;
            println!(
                "scope '{}' {}: {assets} assets, {open} open findings ({critical} critical)",
                name.trim(),
                if existed.is_some() { "replaced" } else { "saved" }
            );
            Ok(0)
        }
        ScopeCmd::Rm { name } => {
            let store = open_rw(cli, paths)?;
            if !scopes::delete(&store.conn, name)? {
                anyhow::bail!("no scope named '{name}' (ctem scope list)");
            }
            println!("scope '{name}' removed");
            Ok(0)
        }
    }
}

fn intel(cli: &Cli, paths: &Paths, cmd: &IntelCmd) -> anyhow::Result<i32> {
    match cmd {
        IntelCmd::Load { files } => {
            let store = open_rw(cli, paths)?;
            let mut failed = 0;
            for f in expand(files)? {
                match crate::intel::load_file(&store, &f) {
                    Ok(l) => println!("{}", l.line(&f.display().to_string())),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{}", first_line(&format!("{e:#}")));
                    }
                }
            }
            if failed > 0 {
                eprintln!("{failed} feed file(s) not loaded; the intel loaded before stays in force for those feeds");
            }
            Ok(if failed > 0 { 1 } else { 0 })
        }
        IntelCmd::Update => {
            let store = open_rw(cli, paths)?;
            let mirror = std::env::var("CTEM_INTEL_MIRROR").ok().filter(|m| !m.is_empty());
            let (outcomes, offline) = crate::intel::update::run(&store, &paths.data_dir.join("intel"), mirror.as_deref())?;
            if offline {
                eprintln!(
                    "no network: none of the feed servers could be reached ({}).\nOffline, download the files elsewhere and load them with `ctem intel load FILE...`; the intel loaded before stays in force.",
                    outcomes.first().and_then(|o| o.result.as_ref().err().cloned()).unwrap_or_default()
                );
                return Ok(1);
            }
            let mut failed = 0;
            for o in outcomes {
                match o.result {
                    Ok(l) => println!("{}", l.line(&o.url)),
                    Err(e) => {
                        failed += 1;
                        eprintln!("{}: not updated: {}", o.feed, first_line(&e));
                    }
                }
            }
            Ok(if failed > 0 { 1 } else { 0 })
        }
        IntelCmd::Status => {
            let store = open_for_read(cli, paths)?;
            print!("{}", crate::intel::status(&store.conn, chrono::Utc::now().naive_utc())?);
            Ok(0)
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().filter(|l| !l.trim().is_empty()).take(3).collect::<Vec<_>>().join(" ")
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

fn info(cli: &Cli, paths: &Paths) -> anyhow::Result<String> {
    use std::fmt::Write;
    let mut s = String::new();
    let db = db_path(cli, paths);
    writeln!(s, "ctem {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(s, "database     {}", db.display())?;
    writeln!(s, "data dir     {}", paths.data_dir.display())?;
    writeln!(s, "config dir   {}", paths.config_dir.display())?;
    writeln!(s, "config file  {}{}", paths.config_file().display(), if paths.config_file().exists() { "" } else { " (absent: defaults in use)" })?;
    writeln!(s, "log file     {}", paths.log_file().display())?;
    writeln!(s, "themes       built in: default, light, high-contrast, monochrome; overrides in {}", paths.config_dir.join("themes").display())?;
    writeln!(s, "sample data  {}", paths.sample_dir().display())?;
    if !db.exists() {
        writeln!(s, "the database does not exist yet: `ctem import FILE` or `ctem demo` creates one")?;
        return Ok(s);
    }
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    writeln!(s, "db size      {}", human(size))?;
    let store = Store::open(&db, true)?;
    writeln!(s, "schema       version {}", store.schema_version()?)?;
    let q = |sql: &str| store.count(sql).unwrap_or(0);
    writeln!(s, "assets       {}", q("SELECT count(*) FROM assets"))?;
    writeln!(s, "findings     {} ({} open, {} fixed, {} reopened)", q("SELECT count(*) FROM findings"), q("SELECT count(*) FROM findings WHERE status = 'open'"), q("SELECT count(*) FROM findings WHERE status = 'fixed'"), q("SELECT count(*) FROM findings WHERE status = 'reopened'"))?;
    writeln!(s, "detections   {}", q("SELECT count(*) FROM detections"))?;
    writeln!(s, "imports      {} (quarantined records: {})", q("SELECT count(*) FROM imports"), q("SELECT count(*) FROM quarantine"))?;
    let last: Option<String> = store
        .conn
        .query_row("SELECT strftime(max(finished_at), '%Y-%m-%d %H:%M:%S') FROM imports", [], |r| r.get(0))
        .ok()
        .flatten();
    if let Some(l) = last {
        writeln!(s, "last import  {l} UTC")?;
    }
    Ok(s)
}

/// Load the sample estate: used by `ctem demo` and the tests.
pub fn load_dir(store: &Store, dir: &Path) -> anyhow::Result<Vec<Summary>> {
    let files = expand(&[dir.to_path_buf()])?;
    Ok(import_paths(store, &files, None, &ParseOptions::default()))
}
