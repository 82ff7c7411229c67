//! `ctem bench`: import throughput and peak memory on generated estates. Each import runs in a child
//! process (`ctem import`) whose peak resident memory is sampled from /proc.

use super::estate::write_week;
use crate::query::Compiled;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// The machine's busy CPU time so far, all cores, in seconds (everything but idle and waiting on
/// I/O, the hypervisor's stolen time included), and its number of cores.
fn machine_cpu() -> Option<(f64, usize)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<f64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let cores = stat.lines().filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)).count();
    // user nice system idle iowait irq softirq steal, in hundredths of a second
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().map(|&i| v.get(i).copied().unwrap_or(0.0)).sum();
    Some((busy / 100.0, cores.max(1)))
}

/// One import, timed in a child process, with what the machine did beside it.
struct Run {
    secs: f64,
    peak_kib: u64,
    /// The child's CPU seconds (sampled until it exits, so up to one sampling period short).
    cpu: f64,
    /// The share of the machine's cores that other processes (and the hypervisor) used meanwhile.
    others: Option<f64>,
    out: String,
}

fn timed_import(db: &std::path::Path, file: &std::path::Path) -> anyhow::Result<Run> {
    let exe = std::env::current_exe()?;
    let before = machine_cpu();
    let start = Instant::now();
    let mut child = Command::new(exe).arg("--db").arg(db).arg("import").arg(file).stdout(std::process::Stdio::piped()).spawn()?;
    let pid = child.id();
    let (mut peak, mut cpu) = (0, 0.0);
    loop {
        if let Some(k) = peak_rss_kib(pid) {
            peak = peak.max(k);
        }
        if let Some(c) = crate::store::import::cpu_seconds(&pid.to_string()) {
            cpu = c;
        }
        if let Some(status) = child.try_wait()? {
            let secs = start.elapsed().as_secs_f64();
            let others = before.zip(machine_cpu()).map(|((b0, n), (b1, _))| ((b1 - b0 - cpu) / (n as f64 * secs)).clamp(0.0, 1.0));
            let mut out = String::new();
            if let Some(mut so) = child.stdout.take() {
                use std::io::Read;
                so.read_to_string(&mut out)?;
            }
            if !status.success() {
                anyhow::bail!("import failed: {out}");
            }
            return Ok(Run { secs, peak_kib: peak, cpu, others, out });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A fixed piece of work whose speed tells how fast the machine is at the moment, as the GUIDE's
/// figure for these machines was measured: a million rows of a 12-column findings table loaded through
/// the Appender, strings formatted per row, into a fresh database file, and committed. Rows per second.
fn machine_reference(dir: &std::path::Path) -> anyhow::Result<f64> {
    const ROWS: u64 = 1_000_000;
    let path = dir.join("reference.duckdb");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(dir.join("reference.duckdb.wal"));
    let conn = duckdb::Connection::open(&path)?;
    conn.execute_batch(
        "CREATE TABLE findings (finding_id BIGINT, asset VARCHAR, vuln_id VARCHAR, title VARCHAR, severity VARCHAR,
         cvss DOUBLE, port INTEGER, protocol VARCHAR, package VARCHAR, version VARCHAR, status VARCHAR, first_seen TIMESTAMP)",
    )?;
    const SEV: [&str; 5] = ["critical", "high", "medium", "low", "info"];
    let seen = chrono::NaiveDate::from_ymd_opt(2026, 11, 2).and_then(|d| d.and_hms_opt(2, 0, 0)).unwrap_or_default();
    let t = Instant::now();
    conn.execute_batch("BEGIN TRANSACTION")?;
    {
        let mut app = conn.appender("findings")?;
        for i in 0..ROWS {
            app.append_row(duckdb::params![
                i as i64,
                format!("host-{:05}.example.internal", i % 20_000),
                format!("CVE-2025-{:05}", i % 7_919),
                format!("Synthetic check {} in package lib{}", i % 7_919, i % 613),
                SEV[(i % 5) as usize],
                (i % 100) as f64 / 10.0,
                (i % 65_536) as i32,
                "tcp",
                format!("lib{}", i % 613),
                format!("1.{}.{}", i % 17, i % 31),
                "open",
                seen
            ])?;
        }
        app.flush()?;
    }
    conn.execute_batch("COMMIT")?;
    let rate = ROWS as f64 / t.elapsed().as_secs_f64();
    drop(conn);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(dir.join("reference.duckdb.wal"));
    Ok(rate)
}

/// A generated estate file, written once and reused (the generator is deterministic). It is written
/// aside and moved into place when complete, so an interrupted run leaves no partial file to reuse.
fn estate_file(dir: &std::path::Path, n: usize, fmt: &str, week: usize) -> anyhow::Result<PathBuf> {
    let ext = match fmt {
        "nessus" => "nessus",
        "trivy" => "trivy.json",
        _ => "grype.json",
    };
    let path = dir.join(format!("estate-{n}-w{week}.{ext}"));
    if path.exists() {
        return Ok(path);
    }
    let part = dir.join(format!(".partial-{fmt}-{week}"));
    std::fs::create_dir_all(&part)?;
    let written = write_week(&part, n, fmt, week)?;
    std::fs::rename(&written, &path)?;
    let _ = std::fs::remove_dir(&part);
    Ok(path)
}

/// One import of the import benchmark, as the summary of several rounds needs it.
struct Timed {
    fmt: String,
    pass: &'static str,
    secs: f64,
    peak_mb: f64,
    cpu: f64,
}

/// The middle value (the mean of the two middle ones for an even count), and the smallest and largest.
fn median_range(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    let median = if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 };
    (median, v[0], v[v.len() - 1])
}

pub fn run(n: usize, dir: Option<PathBuf>, formats: &str, rounds: usize) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("ctem-bench"));
    std::fs::create_dir_all(&dir)?;
    println!("import benchmark: {n} findings per estate, files in {}", dir.display());
    // The estates are generated (once) before anything is timed.
    let fmts: Vec<&str> = formats.split(',').map(str::trim).filter(|f| !f.is_empty()).collect();
    let mut files = Vec::new();
    for fmt in &fmts {
        files.push((*fmt, estate_file(&dir, n, fmt, 0)?, estate_file(&dir, n, fmt, 1)?));
    }
    let mut refs = Vec::new();
    let mut reference = |when: &str| -> anyhow::Result<()> {
        let r = machine_reference(&dir)?;
        println!("machine reference {when}: {:.0}k rows/s (Appender, 1M rows of 12 columns; the GUIDE's figure for these machines: ~445k)", r / 1e3);
        refs.push(r);
        Ok(())
    };
    let mut timed = Vec::new();
    for round in 1..=rounds {
        if rounds > 1 {
            println!("round {round} of {rounds}");
        }
        reference("before")?;
        println!(
            "{:<8} {:>8} {:>8} {:>11} {:>9} {:>7} {:>7} {:>7}",
            "format", "file MB", "seconds", "findings/s", "peak MB", "CPU s", "others", "pass"
        );
        for (fmt, f0, f1) in &files {
            let db = dir.join(format!("bench-{fmt}.duckdb"));
            let _ = std::fs::remove_file(&db);
            let _ = std::fs::remove_file(dir.join(format!("bench-{fmt}.duckdb.wal")));
            for (label, f) in [("first", f0), ("rescan", f1)] {
                let mb = std::fs::metadata(f)?.len() as f64 / 1e6;
                let r = timed_import(&db, f)?;
                let others = r.others.map_or("-".to_string(), |o| format!("{:.0}%", o * 100.0));
                let peak_mb = r.peak_kib as f64 / 1024.0;
                println!(
                    "{:<8} {:>8.1} {:>8.2} {:>11.0} {:>9.1} {:>7.1} {:>7} {:>7}",
                    fmt,
                    mb,
                    r.secs,
                    n as f64 / r.secs,
                    peak_mb,
                    r.cpu,
                    others,
                    label
                );
                if let Some(l) = r.out.lines().next() {
                    println!("         {}", l.split(": ").skip(1).collect::<Vec<_>>().join(": "));
                }
                timed.push(Timed { fmt: fmt.to_string(), pass: label, secs: r.secs, peak_mb, cpu: r.cpu });
            }
        }
    }
    reference("after")?;
    println!("(others: the share of the machine's cores that other processes and the hypervisor used during the import)");
    if rounds > 1 {
        print!("{}", summary(n, rounds, &timed, &refs));
    }
    Ok(())
}

/// Medians and ranges of several rounds, per format and pass, in the order they ran.
fn summary(n: usize, rounds: usize, timed: &[Timed], refs: &[f64]) -> String {
    use std::fmt::Write;
    let (_, rlo, rhi) = median_range(refs.to_vec());
    let mut out = String::new();
    let _ = writeln!(out, "\nsummary of {rounds} rounds: median (range); machine reference {:.0}-{:.0}k rows/s", rlo / 1e3, rhi / 1e3);
    let _ = writeln!(out, "{:<8} {:<7} {:>19} {:>19} {:>17} {:>11}", "format", "pass", "seconds", "findings/s", "CPU s", "peak MB");
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for t in timed {
        if !keys.contains(&(t.fmt.as_str(), t.pass)) {
            keys.push((t.fmt.as_str(), t.pass));
        }
    }
    for key in keys {
        let of = |f: &dyn Fn(&Timed) -> f64| median_range(timed.iter().filter(|u| (u.fmt.as_str(), u.pass) == key).map(f).collect());
        let (s, slo, shi) = of(&|u| u.secs);
        let (r, rlo, rhi) = of(&|u| n as f64 / u.secs / 1e3);
        let (c, clo, chi) = of(&|u| u.cpu);
        let (_, plo, phi) = of(&|u| u.peak_mb);
        let _ = writeln!(
            out,
            "{:<8} {:<7} {:>19} {:>19} {:>17} {:>11}",
            key.0,
            key.1,
            format!("{s:.2} ({slo:.2}-{shi:.2})"),
            format!("{r:.0}k ({rlo:.0}-{rhi:.0}k)"),
            format!("{c:.1} ({clo:.1}-{chi:.1})"),
            format!("{plo:.0}-{phi:.0}")
        );
    }
    out
}

/// Records a parser hands over, counted and dropped.
#[derive(Default)]
struct Count {
    findings: u64,
    /// The finding `blank` lends, reset each time as an import's are, and whether it is lent.
    slot: Option<crate::model::RawFinding>,
    lent: bool,
    assets: u32,
    skipped: u64,
}

impl crate::ingest::Sink for Count {
    fn asset(&mut self, _: crate::model::RawAsset) -> u32 {
        self.assets += 1;
        self.assets - 1
    }
    fn refine_asset(&mut self, _: u32, _: crate::model::RawAsset) {}
    fn finding(&mut self, _: crate::model::RawFinding) {
        self.findings += 1;
    }
    fn blank(&mut self, asset: u32, category: crate::model::Category) -> &mut crate::model::RawFinding {
        let f = self.slot.get_or_insert_with(|| crate::model::RawFinding::new(asset, String::new(), String::new(), category));
        f.reset(asset, category);
        self.lent = true;
        f
    }
    fn current(&mut self) -> Option<&mut crate::model::RawFinding> {
        if self.lent { self.slot.as_mut() } else { None }
    }
    fn commit(&mut self) {
        if std::mem::take(&mut self.lent) {
            self.findings += 1;
        }
    }
    fn skip(&mut self, _: String, _: String, _: String) {
        self.skipped += 1;
    }
    fn scan_time(&mut self, _: chrono::DateTime<chrono::Utc>) {}
    fn tool(&mut self, _: &str) {}
}

/// The parsers alone: each format's generated file read and parsed into records on one thread, with no
/// store, hashing or staging (records are counted and dropped). Three runs each, the fastest shown: what
/// the parser thread of an import costs at best.
pub fn parse_only(n: usize, dir: Option<PathBuf>, formats: &str) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("ctem-bench"));
    std::fs::create_dir_all(&dir)?;
    println!("parser benchmark: {n} findings per estate, files in {}", dir.display());
    println!("{:<8} {:>10} {:>10} {:>12} {:>10}", "format", "file MB", "seconds", "records/s", "MB/s");
    for fmt in formats.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let file = estate_file(&dir, n, fmt, 0)?;
        let format = crate::ingest::Format::parse(fmt).ok_or_else(|| anyhow::anyhow!("unknown format {fmt}"))?;
        let mb = std::fs::metadata(&file)?.len() as f64 / 1e6;
        let mut best = f64::MAX;
        let mut records = 0;
        for _ in 0..3 {
            let mut input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&file)?);
            let mut sink = Count::default();
            let t = Instant::now();
            crate::ingest::parse(format, &mut input, &mut sink, &Default::default()).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            best = best.min(t.elapsed().as_secs_f64());
            records = sink.findings;
        }
        println!("{:<8} {:>10.1} {:>10.2} {:>12.0} {:>10.0}", fmt, mb, best, records as f64 / best, mb / best);
    }
    Ok(())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Console responsiveness on a store of `n` findings: keystroke to repainted frame (the store's answers
/// included), first frame, draw time at 200x60 and memory while paging. No terminal is needed: frames
/// are drawn into ratatui's TestBackend, the same drawing code the console runs.
pub fn console(n: usize, dir: Option<PathBuf>) -> anyhow::Result<()> {
    use crate::tui::app::App;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("ctem-bench"));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join(format!("console-{n}.duckdb"));
    if !db.exists() {
        let f = estate_file(&dir, n, "nessus", 0)?;
        let secs = timed_import(&db, &f)?.secs;
        println!("store of {n} findings built in {secs:.1}s ({})", db.display());
    }
    let store = crate::store::Store::open(&db, false)?;
    let t0 = Instant::now();
    let mut app = App::new(
        crate::tui::db::Db::start(store),
        "bench".into(),
        crate::tui::theme::Theme::builtin("default"),
        None,
        crate::tui::keymap::Keymap::default(),
    );
    let mut term = Terminal::new(TestBackend::new(200, 60))?;
    app.start(Some("discovery"), None);
    app.settle(Duration::from_secs(30));
    term.draw(|f| crate::tui::ui::draw(f, &mut app))?;
    app.settle(Duration::from_secs(30));
    term.draw(|f| crate::tui::ui::draw(f, &mut app))?;
    let first = t0.elapsed().as_secs_f64() * 1000.0;
    let rss0 = rss_kib();
    let mut draws = Vec::new();
    // Keystroke -> the frame that shows the new rows (the row count "N of M" may follow a moment later;
    // it is waited for before the next key, so it never overlaps the next measurement).
    let mut step = |app: &mut App, term: &mut Terminal<TestBackend>, k: KeyEvent| -> anyhow::Result<f64> {
        let s = Instant::now();
        app.on_key(k);
        let end = Instant::now() + Duration::from_secs(30);
        while app.tables.get("findings").is_some_and(|t| t.in_flight) && Instant::now() < end {
            if let Some(r) = app.db.recv_timeout(Duration::from_millis(5)) {
                app.on_resp(r);
            }
        }
        let d = Instant::now();
        term.draw(|f| crate::tui::ui::draw(f, app))?;
        draws.push(d.elapsed().as_secs_f64() * 1000.0);
        let ms = s.elapsed().as_secs_f64() * 1000.0;
        app.settle(Duration::from_secs(30));
        term.draw(|f| crate::tui::ui::draw(f, app))?;
        app.settle(Duration::from_secs(30));
        Ok(ms)
    };
    let key = |c: KeyCode| KeyEvent::new(c, KeyModifiers::NONE);
    let mut rows: Vec<(&str, Vec<f64>)> = Vec::new();
    let mut v = Vec::new();
    for _ in 0..300 {
        v.push(step(&mut app, &mut term, key(KeyCode::Char('j')))?);
    }
    rows.push(("scroll (j) x300", v));
    let mut v = Vec::new();
    for _ in 0..200 {
        v.push(step(&mut app, &mut term, key(KeyCode::PageDown))?);
    }
    rows.push(("page down x200", v));
    let rss1 = rss_kib();
    let mut v = Vec::new();
    for _ in 0..50 {
        v.push(step(&mut app, &mut term, key(KeyCode::PageUp))?);
    }
    rows.push(("page up x50", v));
    let mut v = Vec::new();
    for _ in 0..5 {
        v.push(step(&mut app, &mut term, key(KeyCode::Char('G')))?);
        v.push(step(&mut app, &mut term, key(KeyCode::Char('g')))?);
    }
    rows.push(("G / g (ends) x10", v));
    let mut v = Vec::new();
    for col in 0..5 {
        app.tables.get_mut("findings").map(|t| t.col_cursor = col);
        for _ in 0..2 {
            let ms = step(&mut app, &mut term, key(KeyCode::Char('s')))?;
            if std::env::var_os("CTEM_BENCH_VERBOSE").is_some() {
                let t = &app.tables["findings"];
                eprintln!("  sorted by column {col} ({}{}): {ms:.1} ms", t.view.columns[t.sort_col].name, if t.desc { " desc" } else { "" });
            }
            v.push(ms);
        }
    }
    rows.push(("sort by a column x10", v));
    let mut v = Vec::new();
    for _ in 0..3 {
        app.input = crate::tui::app::Input::None;
        step(&mut app, &mut term, key(KeyCode::Char('/')))?;
        for _ in 0..30 {
            step(&mut app, &mut term, key(KeyCode::Backspace))?;
        }
        for c in "sev>=high synthetic issue 42".chars() {
            let ms = step(&mut app, &mut term, key(KeyCode::Char(c)))?;
            if std::env::var_os("CTEM_BENCH_VERBOSE").is_some() {
                eprintln!("  typed {c:?}: {ms:.1} ms");
            }
            v.push(ms);
        }
        step(&mut app, &mut term, key(KeyCode::Enter))?;
    }
    rows.push(("typing a filter x84", v));
    let rss2 = rss_kib();
    println!("console benchmark: {n} findings, frames 200x60 (TestBackend)");
    println!("{:<24} {:>9} {:>9} {:>9}", "keystroke -> frame", "p50 ms", "p95 ms", "max ms");
    for (label, mut v) in rows {
        let (a, b, c) = (pct(&mut v, 0.5), pct(&mut v, 0.95), pct(&mut v, 1.0));
        println!("{label:<24} {a:>9.1} {b:>9.1} {c:>9.1}");
    }
    let (d50, d95, dmax) = (pct(&mut draws, 0.5), pct(&mut draws, 0.95), pct(&mut draws, 1.0));
    println!("{:<24} {d50:>9.2} {d95:>9.2} {dmax:>9.2}", "draw 200x60");
    println!("first frame with rows: {first:.0} ms");
    println!("RSS: {:.1} MB after the first frame, {:.1} MB after 500 rows and 200 pages, {:.1} MB at the end", rss0 as f64 / 1024.0, rss1 as f64 / 1024.0, rss2 as f64 / 1024.0);
    Ok(())
}

/// Prioritisation at scale: rescoring `n` findings (every score changing, and nothing changing), the
/// first page of the ranked queue, and fix groups, on a store of `n` generated findings with the sample
/// intel snapshot (CISA KEV, FIRST EPSS) loaded. Each figure is the median of several runs.
pub fn score(n: usize, dir: Option<PathBuf>) -> anyhow::Result<()> {
    use crate::store::views::{self, PageQuery};
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("ctem-bench"));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join(format!("score-{n}.duckdb"));
    if !db.exists() {
        let f = estate_file(&dir, n, "nessus", 0)?;
        let secs = timed_import(&db, &f)?.secs;
        println!("store of {n} findings built in {secs:.1}s ({})", db.display());
    }
    let mut store = crate::store::Store::open(&db, false)?;
    let intel = dir.join("intel");
    super::sample::write_intel(&intel)?;
    for f in ["known_exploited_vulnerabilities.json.gz", "epss_kev_nvd.csv.gz"] {
        crate::intel::load_file(&store, &intel.join(f))?;
    }
    let open = store.count("SELECT count(*) FROM findings WHERE status IN ('open', 'reopened')")?;
    let kev = store.count("SELECT count(*) FROM findings WHERE status IN ('open', 'reopened') AND kev")?;
    let time = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let t = Instant::now();
        f()?;
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let median = |mut v: Vec<f64>| pct(&mut v, 0.5);
    let mut rows: Vec<(String, f64, String)> = Vec::new();
    // Every score changes: alternate the severity weight.
    let mut v = Vec::new();
    for i in 0..5 {
        store.weights.severity = if i % 2 == 0 { 31.0 } else { 30.0 };
        let mut changed = 0;
        v.push(time(&mut || {
            changed = crate::risk::rescore(&store.conn, &store.weights)?;
            Ok(())
        })?);
        if changed as i64 != open {
            anyhow::bail!("expected every finding to be scored, {changed} of {open} were");
        }
    }
    rows.push(("rescore, every score changes".into(), median(v), "budget 1000 ms".into()));
    let mut v = Vec::new();
    for _ in 0..5 {
        v.push(time(&mut || {
            crate::risk::rescore_store(&store)?;
            Ok(())
        })?);
    }
    rows.push(("rescore, same weights again".into(), median(v), "incl. fix assignment and KEV/EPSS lookup".into()));
    let queue = views::queue();
    let now = chrono::Utc::now().naive_utc();
    for (label, filter) in [("first page of the ranked queue", ""), ("first page, filter kev=true", "kev=true"), ("first page, filter prio=P2 host~1", "prio=P2 host~1")] {
        let q = PageQuery {
            filter: queue.compile_filter(filter, now).map_err(|e| anyhow::anyhow!("{}", e.message))?,
            scope: None,
            sort_col: 0,
            desc: true,
            anchor: None,
            backward: false,
            limit: 60,
        };
        let mut v = Vec::new();
        let mut got = 0;
        for _ in 0..7 {
            v.push(time(&mut || {
                got = queue.fetch(&store.conn, &q)?.len();
                Ok(())
            })?);
        }
        rows.push((label.into(), median(v), format!("{got} rows; budget 100 ms")));
    }
    let mut v = Vec::new();
    let mut groups = 0;
    for _ in 0..5 {
        v.push(time(&mut || {
            groups = store.count("SELECT count(*) FROM (SELECT * FROM fix_groups)")?;
            Ok(())
        })?);
    }
    rows.push(("fix groups (the whole view)".into(), median(v), format!("{groups} groups; budget 1000 ms")));
    let fg = views::fix_groups();
    let q = PageQuery { filter: fg.compile_filter("", now).map_err(|e| anyhow::anyhow!("{}", e.message))?, scope: None, sort_col: 0, desc: true, anchor: None, backward: false, limit: 60 };
    let mut v = Vec::new();
    for _ in 0..5 {
        v.push(time(&mut || {
            fg.fetch(&store.conn, &q)?;
            Ok(())
        })?);
    }
    rows.push(("fix groups, console first page".into(), median(v), String::new()));

    // Mobilisation: the plan over every open finding P3 and above, applied once, then kept in step.
    use crate::store::work::{self, Selection};
    let routing = crate::routing::Routing::default();
    let sel = Selection::Open { min_priority: "P3".into() };
    let mut v = Vec::new();
    let mut items = 0;
    for _ in 0..3 {
        v.push(time(&mut || {
            items = work::plan(&store, &routing, "", &sel, None, false)?.items.len();
            Ok(())
        })?);
    }
    rows.push(("plan P3+ (dry run)".into(), median(v), format!("{items} work items to create or grow")));
    let mut created = 0;
    let ms = time(&mut || {
        created = work::plan(&store, &routing, "", &sel, None, true)?.new_items();
        Ok(())
    })?;
    rows.push(("plan P3+ --apply".into(), ms, format!("{created} work items created")));
    let mut v = Vec::new();
    for _ in 0..3 {
        v.push(time(&mut || {
            let p = work::plan(&store, &routing, "", &sel, None, true)?;
            if !p.items.is_empty() {
                anyhow::bail!("a second apply changed {} work items", p.items.len());
            }
            Ok(())
        })?);
    }
    rows.push(("plan P3+ --apply again".into(), median(v), "changes nothing".into()));
    let mut v = Vec::new();
    for _ in 0..5 {
        v.push(time(&mut || {
            work::refresh_store(&store)?;
            Ok(())
        })?);
    }
    rows.push(("work items refresh (after each import)".into(), median(v), "priorities, due dates, verification".into()));
    let all = Compiled { sql: "true".into(), params: Vec::new() };
    let today = chrono::Utc::now().date_naive();
    let mut v = Vec::new();
    let mut cards = 0;
    for _ in 0..5 {
        v.push(time(&mut || {
            cards = crate::tui::board::fetch(&store.conn, &all, None, today)?.iter().map(|c| c.total).sum::<i64>();
            Ok(())
        })?);
    }
    rows.push(("board, every column".into(), median(v), format!("{cards} cards")));
    // The SQL pane: a GROUP BY over every finding, as the console shows it (probe, then the first page).
    for (label, q) in [
        ("SQL pane: GROUP BY severity", "SELECT severity, count(*) AS n FROM findings GROUP BY ALL ORDER BY n DESC"),
        ("SQL pane: GROUP BY asset", "SELECT asset_name, count(*) AS n, max(risk_score) AS top FROM findings GROUP BY ALL ORDER BY top DESC"),
    ] {
        let mut v = Vec::new();
        let mut got = 0;
        for _ in 0..5 {
            v.push(time(&mut || {
                let view = views::sql_result(&store.conn, q)?;
                let pq = PageQuery { filter: Compiled { sql: "true".into(), params: Vec::new() }, scope: None, sort_col: usize::MAX, desc: false, anchor: None, backward: false, limit: 60 };
                got = view.fetch(&store.conn, &pq)?.len();
                Ok(())
            })?);
        }
        rows.push((label.into(), median(v), format!("first page, {got} rows; budget 1000 ms")));
    }
    // The stand-up: the console's summary pane and the full report, over the 24 hours up to the scan.
    if let Some((since, until)) = crate::tui::db::standup_window(&store)? {
        let mut v = Vec::new();
        let mut lines = 0;
        for _ in 0..5 {
            v.push(time(&mut || {
                let s = crate::tui::db::standup(&store, None, None)?;
                lines = s.by_severity.len();
                Ok(())
            })?);
        }
        rows.push(("stand-up pane (summary)".into(), median(v), format!("{lines} severities; budget 300 ms")));
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(time(&mut || {
                let r = crate::report::standup(&store, since, until, None, true)?;
                let _ = r.markdown();
                Ok(())
            })?);
        }
        rows.push(("report standup (markdown)".into(), median(v), "budget 300 ms".into()));
    }
    // Cancelling a running statement: the time from the interrupt to the statement's end.
    let mut v = Vec::new();
    for _ in 0..5 {
        let conn = store.conn.try_clone()?;
        let handle = conn.interrupt_handle();
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let r: Result<i64, _> = conn.query_row("SELECT sum(a.range * b.range) FROM range(200000000) a, range(100) b", [], |r| r.get(0));
            let _ = tx.send((r.is_err(), Instant::now()));
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let t = Instant::now();
        handle.interrupt();
        let (stopped, at) = rx.recv()?;
        let _ = worker.join();
        if !stopped {
            anyhow::bail!("the statement finished before it could be cancelled");
        }
        v.push(at.duration_since(t).as_secs_f64() * 1000.0);
    }
    rows.push(("SQL pane: cancel a running statement".into(), median(v), "interrupt to stop; budget 200 ms".into()));
    println!("prioritisation benchmark: {open} open findings ({kev} on CISA KEV), median of 5-7 runs");
    println!("{:<40} {:>9}  {}", "operation", "ms", "");
    for (l, ms, note) in rows {
        println!("{l:<40} {ms:>9.1}  {note}");
    }
    store.weights = Default::default();
    crate::risk::rescore_store(&store)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_take_the_middle_or_the_mean_of_the_two_middle_values() {
        assert_eq!(median_range(vec![7.95, 5.46, 5.64]), (5.64, 5.46, 7.95));
        assert_eq!(median_range(vec![6.0, 5.0, 8.0, 4.0]), (5.5, 4.0, 8.0));
        assert_eq!(median_range(Vec::new()), (0.0, 0.0, 0.0));
    }

    #[test]
    fn the_summary_shows_each_format_and_pass_once_with_its_median_and_range() {
        let t = |fmt: &str, pass, secs, cpu, peak_mb| Timed { fmt: fmt.into(), pass, secs, peak_mb, cpu };
        let timed = [
            t("nessus", "first", 5.0, 9.0, 340.0),
            t("nessus", "rescan", 4.0, 7.0, 350.0),
            t("grype", "first", 8.0, 14.4, 319.0),
            t("nessus", "first", 6.25, 11.0, 331.0),
            t("nessus", "rescan", 5.0, 7.6, 352.0),
            t("grype", "first", 5.0, 10.0, 333.0),
            t("nessus", "first", 5.5, 10.0, 345.0),
            t("grype", "first", 6.0, 10.9, 334.0),
        ];
        let out = summary(1_000_000, 3, &timed, &[430e3, 377e3, 425e3]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[1], "summary of 3 rounds: median (range); machine reference 377-430k rows/s");
        assert_eq!(lines.len(), 6, "{out}");
        let row = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>().join(" ");
        assert_eq!(row(lines[3]), "nessus first 5.50 (5.00-6.25) 182k (160-200k) 10.0 (9.0-11.0) 331-345");
        assert_eq!(row(lines[4]), "nessus rescan 4.50 (4.00-5.00) 225k (200-250k) 7.3 (7.0-7.6) 350-352");
        assert_eq!(row(lines[5]), "grype first 6.00 (5.00-8.00) 167k (125-200k) 10.9 (10.0-14.4) 319-334");
    }
}
