//! `ctem bench`: import throughput and peak memory on generated estates. Each import runs in a child
//! process (`ctem import`) whose peak resident memory is sampled from /proc.

use super::estate::write_week;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn timed_import(db: &std::path::Path, file: &std::path::Path) -> anyhow::Result<(f64, u64, String)> {
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let mut child = Command::new(exe).arg("--db").arg(db).arg("import").arg(file).stdout(std::process::Stdio::piped()).spawn()?;
    let pid = child.id();
    let mut peak = 0;
    loop {
        if let Some(k) = peak_rss_kib(pid) {
            peak = peak.max(k);
        }
        if let Some(status) = child.try_wait()? {
            let secs = start.elapsed().as_secs_f64();
            let mut out = String::new();
            if let Some(mut so) = child.stdout.take() {
                use std::io::Read;
                so.read_to_string(&mut out)?;
            }
            if !status.success() {
                anyhow::bail!("import failed: {out}");
            }
            return Ok((secs, peak, out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run(n: usize, dir: Option<PathBuf>, formats: &str) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| std::env::temp_dir().join("ctem-bench"));
    std::fs::create_dir_all(&dir)?;
    println!("import benchmark: {n} findings per estate, files in {}", dir.display());
    println!("{:<8} {:>10} {:>10} {:>12} {:>14} {:>10}", "format", "file MB", "seconds", "findings/s", "peak RSS MB", "pass");
    for fmt in formats.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let f0 = dir.join(format!("estate-{n}-w0.{}", match fmt { "nessus" => "nessus", "trivy" => "trivy.json", _ => "grype.json" }));
        let f0 = if f0.exists() { f0 } else { write_week(&dir, n, fmt, 0)? };
        let f1 = write_week(&dir, n, fmt, 1)?;
        let db = dir.join(format!("bench-{fmt}.duckdb"));
        let _ = std::fs::remove_file(&db);
        let _ = std::fs::remove_file(dir.join(format!("bench-{fmt}.duckdb.wal")));
        for (label, f) in [("first", &f0), ("rescan", &f1)] {
            let mb = std::fs::metadata(f)?.len() as f64 / 1e6;
            let (secs, peak, out) = timed_import(&db, f)?;
            println!("{:<8} {:>10.1} {:>10.2} {:>12.0} {:>14.1} {:>10}", format!("{fmt}"), mb, secs, n as f64 / secs, peak as f64 / 1024.0, label);
            if let Some(l) = out.lines().next() {
                println!("         {}", l.split(": ").skip(1).collect::<Vec<_>>().join(": "));
            }
        }
    }
    Ok(())
}
