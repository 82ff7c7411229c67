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
    for sub in ["import", "import-assets", "query", "info", "explain", "demo", "generate"] {
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
