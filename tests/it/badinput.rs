//! Malformed, truncated and hostile input: clear errors with positions, nothing half imported.

use crate::common::*;
use ctem::store::import::Outcome;

fn failed(msg: &Outcome) -> String {
    match msg {
        Outcome::Failed(m) => m.clone(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn truncated_nessus_imports_nothing_and_names_the_byte() {
    let s = mem();
    let full = std::fs::read_to_string(fixture("tenable/nessus_v_unknown.xml")).unwrap();
    let d = tmpdir();
    let cut = write(d.path(), "cut.nessus", &full[..full.len() / 2]);
    let r = import(&s, &cut);
    let m = failed(&r.outcome);
    assert!(m.contains("byte ") && m.contains("truncated"), "{m}");
    assert!(r.line().contains("cut.nessus"), "{}", r.line());
    assert_eq!(count(&s, "SELECT count(*) FROM findings"), 0);
    assert_eq!(count(&s, "SELECT count(*) FROM assets"), 0);
    assert_eq!(count(&s, "SELECT count(*) FROM imports"), 0);
    // The store is usable afterwards and the good file imports.
    let ok = import(&s, &fixture("tenable/nessus_v_unknown.xml"));
    assert_eq!(ok.outcome, Outcome::Imported);
}

#[test]
fn malformed_json_names_line_and_column() {
    let s = mem();
    let d = tmpdir();
    let p = write(d.path(), "bad.json", "{\"SchemaVersion\": 2, \"ArtifactName\": \"x\",\n \"Results\": [ {\"Target\": \"a\", \"Vulnerabilities\": [ {\"VulnerabilityID\": } ] } ] }");
    let m = failed(&import(&s, &p).outcome);
    assert!(m.contains("line 2, column"), "{m}");
    assert_eq!(count(&s, "SELECT count(*) FROM findings"), 0);
}

#[test]
fn external_entities_are_never_expanded() {
    let s = mem();
    let d = tmpdir();
    let secret = write(d.path(), "secret.txt", "TOP-SECRET-CONTENT");
    let doc = format!(
        r#"<?xml version="1.0"?>
<!DOCTYPE NessusClientData_v2 [ <!ENTITY xxe SYSTEM "file://{}"> <!ENTITY lol "lollollol"> ]>
<NessusClientData_v2><Report name="x"><ReportHost name="10.9.9.9"><HostProperties><tag name="host-ip">10.9.9.9</tag></HostProperties>
<ReportItem port="0" svc_name="general" protocol="tcp" severity="2" pluginID="1" pluginName="&xxe;&lol;"><description>&xxe;</description></ReportItem>
</ReportHost></Report></NessusClientData_v2>"#,
        secret.display()
    );
    let p = write(d.path(), "xxe.nessus", &doc);
    let r = import(&s, &p);
    assert_eq!(r.outcome, Outcome::Imported, "{}", r.line());
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE title LIKE '%TOP-SECRET%' OR description LIKE '%TOP-SECRET%' OR title LIKE '%lollollol%'"), 0);
    assert_eq!(strings(&s, "SELECT title FROM findings"), vec!["&xxe;&lol;"]);
}

#[test]
fn unknown_content_is_refused_with_a_hint() {
    let s = mem();
    let d = tmpdir();
    let p = write(d.path(), "notes.txt", "just some notes\n");
    let m = failed(&import(&s, &p).outcome);
    assert!(m.contains("--format"), "{m}");
}

#[test]
fn bad_records_are_quarantined_with_position() {
    let s = mem();
    let d = tmpdir();
    let p = write(
        d.path(),
        "x.sarif",
        r#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"Semgrep"}},"results":[
        {"ruleId":"r1","message":{"text":"ok"},"locations":[{"physicalLocation":{"artifactLocation":{"uri":"a.py"},"region":{"startLine":3}}}]},
        {"message":{"text":"no rule"}}]}]}"#,
    );
    let r = import(&s, &p);
    assert_eq!((r.records, r.skipped), (1, 1), "{}", r.line());
    assert!(r.line().contains("run 0, result 1"), "{}", r.line());
    assert_eq!(count(&s, "SELECT count(*) FROM quarantine WHERE reason LIKE '%ruleId%' AND position = 'run 0, result 1'"), 1);
}

#[test]
fn gzip_is_read_transparently_and_garbage_gzip_fails_cleanly() {
    use std::io::Write;
    let s = mem();
    let d = tmpdir();
    let raw = std::fs::read(fixture("anchore_grype/check_all_fields.json")).unwrap();
    let p = d.path().join("grype.json.gz");
    let mut e = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::fast());
    e.write_all(&raw).unwrap();
    e.finish().unwrap();
    let r = import(&s, &p);
    assert_eq!((r.outcome.clone(), r.records), (Outcome::Imported, 6), "{}", r.line());
    let bad = d.path().join("bad.json.gz");
    std::fs::write(&bad, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 5]).unwrap();
    let r = import(&s, &bad);
    assert!(matches!(r.outcome, Outcome::Failed(_)), "{}", r.line());
}
