//! The real binary: exit codes, messages, a database held by another process, a killed import.

use crate::common::*;
use std::process::Command;

fn ctem() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ctem"));
    c.env_remove("CTEM_DB");
    c
}

#[test]
fn version_and_help() {
    let o = ctem().arg("--version").output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("ctem "));
    for sub in ["import", "import-assets", "query", "info", "explain", "demo", "generate", "intel", "score", "fixes", "scope"] {
        let o = ctem().args([sub, "--help"]).output().unwrap();
        assert!(o.status.success(), "{sub} --help");
    }
}

#[test]
fn import_query_info_explain_round_trip() {
    let d = tmpdir();
    let db = d.path().join("t.duckdb");
    let o = ctem().arg("--db").arg(&db).arg("import").arg(fixture("tenable/nessus_v_unknown.xml")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("296 records: 296 new"), "{out}");
    let o = ctem().arg("--db").arg(&db).args(["query", "SELECT severity, count(*) AS n FROM findings GROUP BY 1 ORDER BY 1", "--format", "json"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let total: i64 = v.as_array().unwrap().iter().map(|r| r["n"].as_i64().unwrap()).sum();
    assert!(total > 0 && total <= 296);
    let o = ctem().arg("--db").arg(&db).args(["query", "SELECT count(*) AS n FROM assets", "--format", "csv"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "n\n7\n");
    // Writes are refused without --write.
    let o = ctem().arg("--db").arg(&db).args(["query", "DELETE FROM findings"]).output().unwrap();
    assert!(!o.status.success());
    let o = ctem().arg("--db").arg(&db).args(["query", "SELECT count(*) FROM findings", "--format", "csv"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("\n"));
    let o = ctem().arg("--db").arg(&db).arg("info").output().unwrap();
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(info.contains("assets       7") && info.contains("imports      1"), "{info}");
    let o = ctem().arg("--db").arg(&db).args(["explain", "1"]).output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("Detections:"));
    let o = ctem().arg("--db").arg(&db).args(["explain", "999999"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no finding with id 999999"));
}

#[test]
fn a_failed_file_does_not_stop_the_others_and_sets_the_exit_code() {
    let d = tmpdir();
    let db = d.path().join("t.duckdb");
    let bad = write(d.path(), "bad.json", "{\"matches\": [ {\"vulnerability\": ");
    let o = ctem().arg("--db").arg(&db).arg("import").arg(&bad).arg(fixture("anchore_grype/check_all_fields.json")).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.json") && err.contains("not imported"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("6 records"));
}

#[test]
fn database_held_by_another_process_gives_a_clear_message() {
    let d = tmpdir();
    let db = d.path().join("held.duckdb");
    let held = ctem::store::Store::open(&db, false).unwrap();
    let o = ctem().arg("--db").arg(&db).arg("import").arg(fixture("anchore_grype/check_all_fields.json")).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in use by another ctem process"), "{err}");
    drop(held);
}

#[test]
fn killed_import_leaves_nothing_and_can_be_run_again() {
    let d = tmpdir();
    let db = d.path().join("k.duckdb");
    let file = ctem::generator::estate::write(d.path(), 300_000, "nessus").unwrap();
    let mut child = ctem().arg("--db").arg(&db).arg("import").arg(&file).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let s = ctem::store::Store::open(&db, false).expect("the database opens after a kill");
    assert_eq!(count(&s, "SELECT count(*) FROM imports"), 0);
    assert_eq!(count(&s, "SELECT count(*) FROM findings"), 0);
    drop(s);
    let o = ctem().arg("--db").arg(&db).arg("import").arg(&file).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("300000 records: 300000 new"));
}

#[test]
fn intel_score_and_fixes_from_the_command_line() {
    let d = tmpdir();
    let db = d.path().join("t.duckdb");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = ctem().arg("--db").arg(&db).arg("import").arg(fixture("qualys/Qualys_Sample_Report.xml")).output().unwrap();
    assert!(o.status.success());
    let o = ctem().arg("--db").arg(&db).args(["intel", "load"]).arg(root.join("sample-data/intel")).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("kev version 2025.08.25 of 2025-08-25: 1404 records") && out.contains("epss"), "{out}");
    // A bad feed next to a good one: exit 1, the message names the file; the good one loads.
    let bad = d.path().join("kev.json");
    std::fs::write(&bad, "{\"catalogVersion\": \"x\", \"vulnerabilities\": [").unwrap();
    let o = ctem().arg("--db").arg(&db).args(["intel", "load"]).arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{} line 1 column", bad.display())) && err.contains("stays in force"), "{err}");
    let o = ctem().arg("--db").arg(&db).args(["intel", "status"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    // Every feed of the sample's snapshot, one line each (the licence notices beside them are not feeds).
    for feed in ["attack ", "ctid:aws ", "ctid:kev ", "ctid:nist_800_53 ", "epss ", "kev "] {
        assert!(out.lines().any(|l| l.starts_with(feed)), "{feed}\n{out}");
    }
    // explain shows the breakdown.
    let id = String::from_utf8_lossy(
        &ctem().arg("--db").arg(&db).args(["query", "SELECT min(finding_id) FROM findings WHERE kev", "--format", "csv"]).output().unwrap().stdout,
    )
    .lines()
    .nth(1)
    .unwrap()
    .to_string();
    let o = ctem().arg("--db").arg(&db).args(["explain", &id]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("\nRisk ") && out.contains("KEV CVE-"), "{out}");
    // A weights file with an unknown factor is refused with its line; a good one diffs.
    let w = d.path().join("w.toml");
    std::fs::write(&w, "[weights]\nkev = 10\nexploitability = 5\n").unwrap();
    let o = ctem().arg("--db").arg(&db).args(["score", "--diff", "--weights"]).arg(&w).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("w.toml line 3: unknown factor `exploitability`"), "{err}");
    std::fs::write(&w, "[weights]\nkev = 10\n").unwrap();
    let o = ctem().arg("--db").arg(&db).args(["score", "--diff", "--weights"]).arg(&w).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("Entered P1:") && out.contains("Left P1:"), "{out}");
    let o = ctem().arg("--db").arg(&db).arg("score").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("290 open findings scored"), "{}", String::from_utf8_lossy(&o.stdout));
    let o = ctem().arg("--db").arg(&db).args(["fixes", "--top", "3", "--format", "csv"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("fix,kind,findings,assets,risk_removed,p1,kev,owners\n") && out.lines().count() == 4, "{out}");
}

#[test]
fn standup_report_and_export_for_scripts() {
    let d = tmpdir();
    let db = d.path().join("s.duckdb");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    ctem::generator::demo::load(&db, &root.join("sample-data")).unwrap();
    let o = ctem().arg("--db").arg(&db).args(["report", "standup"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.starts_with("# Stand-up 2026-11-22 06:00 → 2026-11-23 06:00 (scope: all)"), "{md}");
    for part in ["## New: ", "Exploited in the wild (CISA KEV)", "## Regressions: 150 findings", "## Biggest open fixes", "rebuild on a patched debian 12.2 base image", "## Trend", "Mean time to fix"] {
        assert!(md.contains(part), "{part} missing:\n{md}");
    }
    // The SLA line names the same numbers SQL counts over `finding_sla` on the window's last day.
    let s = ctem::store::Store::open(&db, true).unwrap();
    let past = count(&s, "SELECT count(*) FROM finding_sla WHERE due_date < DATE '2026-11-23'");
    let soon = count(&s, "SELECT count(*) FROM finding_sla WHERE due_date BETWEEN DATE '2026-11-23' AND DATE '2026-11-26'");
    drop(s);
    assert!(past > 0 && soon > 0);
    assert!(md.contains(&format!("## SLA: {past} open findings past due (0 became overdue in the window), {soon} due within 3 days")), "{md}");
    // JSON for scripts, with a scope and a longer window.
    let s = ctem::store::Store::open(&db, false).unwrap();
    ctem::store::scopes::save(&s.conn, "payments", "bu=payments", "", chrono::Utc::now().naive_utc()).unwrap();
    drop(s);
    let o = ctem().arg("--db").arg(&db).args(["report", "standup", "--since", "7d", "--scope", "payments", "--format", "json"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["scope"], "payments");
    assert_eq!(v["since"], "2026-11-16T06:00:00");
    assert_eq!(v["trend"].as_array().unwrap().len(), 30);
    assert!(v["new_kev"].as_array().unwrap().iter().all(|l| l["asset"].as_str().unwrap().starts_with("pay")), "{v}");
    let o = ctem().arg("--db").arg(&db).args(["report", "standup", "--scope", "nope"]).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no scope named 'nope'"));
    // The default report is a stand-up held: the next one starts where the data of the last one ended.
    let s = ctem::store::Store::open(&db, false).unwrap();
    assert_eq!(count(&s, "SELECT count(*) FROM standup_log WHERE via = 'report' AND data_until = TIMESTAMP '2026-11-23 06:00:00'"), 1);
    assert_eq!(count(&s, "SELECT count(*) FROM standup_log"), 1, "a report with --since is not a stand-up held");
    s.conn.execute_batch("INSERT INTO standup_log VALUES (TIMESTAMP '2026-11-16 09:05:00', TIMESTAMP '2026-11-16 06:00:00', 'console', NULL)").unwrap();
    let new_since = count(&s, "SELECT count(*) FROM findings WHERE first_seen > TIMESTAMP '2026-11-16 06:00:00' AND first_seen <= TIMESTAMP '2026-11-23 06:00:00'");
    drop(s);
    let o = ctem().arg("--db").arg(&db).args(["report", "standup", "--format", "json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["since"].as_str(), v["last_standup"].as_str()), (Some("2026-11-16T06:00:00"), Some("2026-11-16T09:05:00")));
    assert_eq!(v["new_by_priority"].as_array().unwrap().iter().map(|n| n.as_i64().unwrap()).sum::<i64>(), new_since);
    let o = ctem().arg("--db").arg(&db).args(["report", "standup"]).output().unwrap();
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.starts_with("# Stand-up 2026-11-16 06:00 → 2026-11-23 06:00 (scope: all)\n\nSince the stand-up held 2026-11-16 09:05"), "{md}");
    // Export: CSV, JSON lines and Parquet of a view; unknown names refused.
    for (fmt, file) in [("csv", "f.csv"), ("json", "f.json"), ("parquet", "f.parquet")] {
        let out = d.path().join(file);
        let o = ctem().arg("--db").arg(&db).args(["export", "fix_groups", "--format", fmt, "--out"]).arg(&out).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("141 rows of fix_groups written to"), "{}", String::from_utf8_lossy(&o.stdout));
        assert!(std::fs::metadata(&out).unwrap().len() > 1000);
    }
    let csv = std::fs::read_to_string(d.path().join("f.csv")).unwrap();
    assert!(csv.starts_with("fix,kind,findings,assets,risk_removed,p1,kev,owners,fix_key\n"), "{}", &csv[..200]);
    let o = ctem().arg("--db").arg(&db).args(["export", "findings; DROP TABLE findings", "--out"]).arg(d.path().join("x.csv")).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no table or view named"));
}

#[test]
fn scopes_are_kept_from_the_command_line() {
    let d = tmpdir();
    let db = d.path().join("s.duckdb");
    let run = |args: &[&str]| {
        let o = ctem().arg("--db").arg(&db).args(args).output().unwrap();
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    let cmdb = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data/cmdb/assets.csv");
    assert_eq!(run(&["import-assets", cmdb.to_str().unwrap()]).0, 0);
    let (code, out, _) = run(&["scope"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("no scopes yet"), "{out}");
    let (code, out, err) = run(&["scope", "add", "payments-prod", "bu=payments and env=prod", "--description", "card processing"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "scope 'payments-prod' saved: 254 assets, 0 open findings (0 critical)");
    // Replacing the filter keeps the description.
    let (_, out, _) = run(&["scope", "add", "Payments-Prod", "bu=payments and env=prod and internet=true"]);
    assert_eq!(out.trim(), "scope 'Payments-Prod' replaced: 41 assets, 0 open findings (0 critical)");
    let (_, out, _) = run(&["scope", "list", "--format", "csv"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["name,filter,assets,open_findings,critical,description", "Payments-Prod,bu=payments and env=prod and internet=true,41,0,0,card processing"]
    );
    // A filter over a field assets do not have is refused, naming the field and the ones there are.
    let (code, _, err) = run(&["scope", "add", "x", "colour=blue"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown field 'colour'") && err.contains("bu, owner"), "{err}");
    assert_eq!(run(&["scope", "rm", "payments-prod"]).1.trim(), "scope 'payments-prod' removed");
    let (code, _, err) = run(&["scope", "rm", "payments-prod"]);
    assert_eq!(code, 1);
    assert!(err.contains("no scope named 'payments-prod'"), "{err}");
}

#[test]
fn a_report_with_a_vulnerability_per_finding_imports_under_the_memory_cap() {
    // 200,000 Grype matches, each its own advisory with its own description and fix: everything a
    // report says about a vulnerability is per finding here, 160 MB of it, under the engine's 200 MB cap
    // (the insert ran out of it when the definitions' texts were joined three times in one statement).
    let d = tmpdir();
    let n = 200_000;
    let mut doc = String::with_capacity(170 << 20);
    doc.push_str("{\"matches\":[");
    for i in 0..n {
        if i > 0 {
            doc.push(',');
        }
        let sev = ["Low", "Medium", "High", "Critical"][i % 4];
        let m = serde_json::json!({
            "vulnerability": {"id": format!("CVE-2099-{}", 100000 + i), "severity": sev,
                "description": format!("Advisory {i}: a crafted request to component {i} overflows a buffer in its parser, letting a remote attacker run code as the service user. Every advisory in this report is distinct, as in a report of one vulnerability per package, and about as long as the descriptions advisories carry: the affected versions, the conditions, the impact and the fixed release ({i}.1) are all spelt out in prose."),
                "cvss": [{"version": "3.1", "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "metrics": {"baseScore": 5.0 + (i % 50) as f64 / 10.0}}],
                "fix": {"versions": [format!("{i}.1")], "state": "fixed"}},
            "relatedVulnerabilities": [],
            "artifact": {"name": format!("pkg{i}"), "version": format!("{i}.0"), "type": "java-archive", "locations": [{"path": format!("/app/lib/pkg{i}.jar")}]}
        });
        doc.push_str(&m.to_string());
    }
    doc.push_str("],\"source\":{\"type\":\"image\",\"target\":{\"userInput\":\"registry.test/many:1.0\",\"imageID\":\"sha256:0123456789abcdef\"}}}\n");
    let f = write(d.path(), "many.grype.json", &doc);
    drop(doc);
    let db = d.path().join("m.duckdb");
    let o = ctem().env_remove("CTEM_MEMORY_LIMIT").arg("--db").arg(&db).arg("import").arg(&f).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("200000 records: 200000 new"), "{out}");
    let q = |sql: &str| {
        let o = ctem().arg("--db").arg(&db).args(["query", sql, "--format", "csv"]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().skip(1).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(q("SELECT count(DISTINCT description), count(DISTINCT vuln_id), count(*) FROM findings"), "200000,200000,200000");
    assert_eq!(
        q("SELECT vuln_id || '|' || severity || '|' || fix || '|' || left(description, 40) FROM findings WHERE package = 'pkg77777'"),
        "CVE-2099-177777|medium|upgrade pkg77777|Advisory 77777: a crafted request to com"
    );
    assert_eq!(q("SELECT count(*) FROM detections"), "200000");
    // Titles are interned while they fit and kept inline after: the first and the last read the same.
    assert_eq!(
        q("SELECT string_agg(title, ' / ' ORDER BY vuln_id) FROM findings WHERE package IN ('pkg0', 'pkg199999')"),
        "CVE-2099-100000 in pkg0 0.0 / CVE-2099-299999 in pkg199999 199999.0"
    );
    assert_eq!(q("SELECT count(*) FROM findings WHERE title IS NULL OR title NOT LIKE vuln_id || ' in ' || package || ' %'"), "0");
}
