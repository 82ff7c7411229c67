//! Re-import lifecycle and cross-tool de-duplication.

use crate::common::*;
use ctem::store::import::Outcome;

fn nessus(hosts: &[(&str, &str, &[(&str, &str, &[&str])])], end: &str) -> String {
    let mut s = String::from("<?xml version=\"1.0\" ?>\n<NessusClientData_v2><Report name=\"t\">\n");
    for (ip, fqdn, items) in hosts {
        s.push_str(&format!(
            "<ReportHost name=\"{ip}\"><HostProperties><tag name=\"host-ip\">{ip}</tag><tag name=\"host-fqdn\">{fqdn}</tag><tag name=\"HOST_END\">{end}</tag></HostProperties>\n"
        ));
        for (id, sev, cves) in items.iter() {
            s.push_str(&format!("<ReportItem port=\"443\" svc_name=\"www\" protocol=\"tcp\" severity=\"{sev}\" pluginID=\"{id}\" pluginName=\"Check {id}\" pluginFamily=\"Misc.\">"));
            for c in cves.iter() {
                s.push_str(&format!("<cve>{c}</cve>"));
            }
            s.push_str("<description>d</description></ReportItem>\n");
        }
        s.push_str("</ReportHost>\n");
    }
    s.push_str("</Report></NessusClientData_v2>\n");
    s
}

#[test]
fn seen_fixed_and_reopened_across_scans() {
    let s = mem();
    let d = tmpdir();
    let w1 = write(d.path(), "w1.nessus", &nessus(&[("10.0.0.1", "a.example.com", &[("1", "3", &["CVE-2021-0001"]), ("2", "2", &[])]), ("10.0.0.2", "b.example.com", &[("1", "3", &["CVE-2021-0001"])])], "Mon Nov  2 10:00:00 2026"));
    let w2 = write(d.path(), "w2.nessus", &nessus(&[("10.0.0.1", "a.example.com", &[("1", "3", &["CVE-2021-0001"])]), ("10.0.0.2", "b.example.com", &[])], "Mon Nov  9 10:00:00 2026"));
    let w3 = write(d.path(), "w3.nessus", &nessus(&[("10.0.0.1", "a.example.com", &[("1", "3", &["CVE-2021-0001"]), ("2", "2", &[])]), ("10.0.0.2", "b.example.com", &[])], "Mon Nov 16 10:00:00 2026"));
    let r1 = import(&s, &w1);
    assert_eq!((r1.new, r1.seen_again, r1.fixed, r1.reopened), (3, 0, 0, 0), "{}", r1.line());
    let r2 = import(&s, &w2);
    assert_eq!((r2.new, r2.seen_again, r2.fixed, r2.reopened), (0, 1, 2, 0), "{}", r2.line());
    let r3 = import(&s, &w3);
    assert_eq!((r3.new, r3.seen_again, r3.fixed, r3.reopened), (0, 1, 0, 1), "{}", r3.line());
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE status = 'reopened' AND times_reopened = 1 AND vuln_id = '2'"), 1);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE status = 'fixed' AND fixed_at = TIMESTAMP '2026-11-09 10:00:00'"), 1);
    // first_seen stays, last_seen moves.
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE vuln_id = '1' AND asset_name = 'a.example.com' AND first_seen = TIMESTAMP '2026-11-02 10:00:00' AND last_seen = TIMESTAMP '2026-11-16 10:00:00'"), 1);
    // The same content again changes nothing and says so.
    let again = import(&s, &w3);
    assert!(matches!(again.outcome, Outcome::Unchanged(3)), "{}", again.line());
    assert!(again.line().contains("unchanged"));
    assert_eq!(count(&s, "SELECT count(*) FROM imports"), 3);
    // An older scan imported late does not re-open or fix anything.
    let late = write(d.path(), "late.nessus", &nessus(&[("10.0.0.2", "b.example.com", &[("1", "3", &["CVE-2021-0001"])])], "Tue Nov  3 10:00:00 2026"));
    let rl = import(&s, &late);
    assert_eq!((rl.reopened, rl.fixed), (0, 0), "{}", rl.line());
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE asset_name = 'b.example.com' AND status = 'fixed'"), 1);
}

#[test]
fn same_cve_on_same_host_from_nessus_and_qualys_is_one_finding() {
    let s = mem();
    let d = tmpdir();
    let n = write(d.path(), "n.nessus", &nessus(&[("10.1.1.1", "web01.corp.example", &[("73412", "3", &["CVE-2014-0160"])])], "Mon Nov  2 10:00:00 2026"));
    let q = write(
        d.path(),
        "q.xml",
        r#"<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE ASSET_DATA_REPORT SYSTEM "https://qualysguard.qualys.com/asset_data_report.dtd">
<ASSET_DATA_REPORT><HEADER><GENERATION_DATETIME>2026-11-02T12:00:00Z</GENERATION_DATETIME></HEADER>
<HOST_LIST><HOST><IP>10.1.1.1</IP><TRACKING_METHOD>IP</TRACKING_METHOD><OPERATING_SYSTEM><![CDATA[Ubuntu]]></OPERATING_SYSTEM>
<VULN_INFO_LIST><VULN_INFO><QID id="qid_42430">42430</QID><TYPE>Vuln</TYPE><PORT>443</PORT><PROTOCOL>tcp</PROTOCOL></VULN_INFO></VULN_INFO_LIST></HOST></HOST_LIST>
<GLOSSARY><VULN_DETAILS_LIST><VULN_DETAILS id="qid_42430"><QID id="qid_42430">42430</QID><TITLE><![CDATA[OpenSSL Heartbleed]]></TITLE><SEVERITY>4</SEVERITY>
<CVE_ID_LIST><CVE_ID><ID><![CDATA[CVE-2014-0160]]></ID></CVE_ID></CVE_ID_LIST></VULN_DETAILS></VULN_DETAILS_LIST></GLOSSARY></ASSET_DATA_REPORT>"#,
    );
    import(&s, &n);
    let rq = import(&s, &q);
    assert_eq!((rq.new, rq.seen_again), (0, 1), "{}", rq.line());
    assert_eq!(count(&s, "SELECT count(*) FROM findings"), 1);
    assert_eq!(count(&s, "SELECT count(*) FROM assets"), 1, "the IP ties Qualys' host to Nessus' FQDN host");
    assert_eq!(strings(&s, "SELECT array_to_string(sources, ',') FROM findings"), vec!["nessus,qualys"]);
    let id: i64 = count(&s, "SELECT finding_id FROM findings");
    let text = ctem::explain::explain(&s, id).unwrap();
    assert!(text.contains("nessus") && text.contains("qualys"), "{text}");
    assert!(text.contains("CVE-2014-0160"), "{text}");
    assert!(text.contains("ip=10.1.1.1"), "{text}");
}

#[test]
fn ghsa_and_cve_aliases_are_one_finding() {
    let s = mem();
    let d = tmpdir();
    let trivy = write(d.path(), "t.json", r#"{"SchemaVersion":2,"CreatedAt":"2026-11-02T10:00:00Z","ArtifactName":"app:1","ArtifactType":"container_image","Metadata":{"ImageID":"sha256:abc"},
"Results":[{"Target":"app/package-lock.json","Class":"lang-pkgs","Type":"npm","Vulnerabilities":[{"VulnerabilityID":"CVE-2021-23337","PkgName":"lodash","InstalledVersion":"4.17.20","FixedVersion":"4.17.21","Severity":"HIGH"}]}]}"#);
    let grype = write(d.path(), "g.json", r#"{"matches":[{"vulnerability":{"id":"GHSA-35jh-r3h4-6jhm","severity":"High","fix":{"versions":["4.17.21"],"state":"fixed"}},
"relatedVulnerabilities":[{"id":"CVE-2021-23337","severity":"High"}],"artifact":{"name":"lodash","version":"4.17.20","type":"npm"}}],
"source":{"type":"image","target":{"userInput":"app:1","imageID":"sha256:abc"}}}"#);
    import(&s, &trivy);
    let r = import(&s, &grype);
    assert_eq!((r.new, r.seen_again), (0, 1), "{}", r.line());
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE len(sources) = 2 AND fixed_version = '4.17.21'"), 1);
}

#[test]
fn a_rescan_raises_severity_adds_cves_and_rescores_but_never_lowers() {
    let s = mem();
    let d = tmpdir();
    let host = |items: &[(&str, &str, &[&str])], end: &str| nessus(&[("10.0.0.7", "g.example.com", items)], end);
    let w1 = write(d.path(), "w1.nessus", &host(&[("7", "2", &["CVE-2021-0007"]), ("8", "3", &["CVE-2021-0008"])], "Mon Nov  2 10:00:00 2026"));
    // The same two vulnerabilities: the first now critical with a second CVE, the second reported lower.
    let w2 = write(d.path(), "w2.nessus", &host(&[("7", "4", &["CVE-2021-0007", "CVE-2022-0077"]), ("8", "1", &["CVE-2021-0008"])], "Mon Nov  9 10:00:00 2026"));
    let r1 = import(&s, &w1);
    assert_eq!(r1.new, 2, "{}", r1.line());
    let score = |v: &str| -> f64 {
        s.conn.query_row("SELECT risk_score FROM findings WHERE vuln_id = ?", [v], |r| r.get(0)).unwrap()
    };
    let (s7, s8) = (score("7"), score("8"));
    let r2 = import(&s, &w2);
    assert_eq!((r2.new, r2.seen_again, r2.fixed), (0, 2, 0), "{}", r2.line());
    assert_eq!(strings(&s, "SELECT severity || ' ' || array_to_string(cves, ',') FROM findings ORDER BY vuln_id"), vec![
        "critical CVE-2021-0007,CVE-2022-0077",
        "high CVE-2021-0008"
    ]);
    // Scored again with what changed; the finding that did not change keeps its score.
    assert!(score("7") > s7, "{} -> {}", s7, score("7"));
    assert_eq!(score("8"), s8);
    // A later scan naming only one of the CVEs, and one twice: the finding keeps both, once each.
    let w3 = write(d.path(), "w3.nessus", &host(&[("7", "4", &["CVE-2021-0007"]), ("8", "3", &["CVE-2021-0008", "CVE-2021-0008"])], "Mon Nov 16 10:00:00 2026"));
    let r3 = import(&s, &w3);
    assert_eq!((r3.new, r3.seen_again), (0, 2), "{}", r3.line());
    assert_eq!(strings(&s, "SELECT array_to_string(cves, ',') FROM findings ORDER BY vuln_id"), vec!["CVE-2021-0007,CVE-2022-0077", "CVE-2021-0008"]);
    let f7 = strings(&s, "SELECT risk_factors FROM findings WHERE vuln_id = '7'");
    assert!(f7[0].starts_with("critical (no CVSS: taken as 9.0)"), "{f7:?}");
    // Every sighting is kept with what the tool said at the time.
    assert_eq!(strings(&s, "SELECT d.severity FROM detections d JOIN findings f USING (finding_id) WHERE f.vuln_id = '7' ORDER BY d.import_id"), vec!["medium", "critical", "critical"]);
}

#[test]
fn a_store_with_hex_fingerprints_is_converted_and_keeps_matching() {
    let d = tmpdir();
    let db = d.path().join("v12.duckdb");
    let w1 = write(d.path(), "w1.nessus", &nessus(&[("10.0.0.1", "a.example.com", &[("1", "3", &["CVE-2021-0001"]), ("2", "2", &[])])], "Mon Nov  2 10:00:00 2026"));
    let w2 = write(d.path(), "w2.nessus", &nessus(&[("10.0.0.1", "a.example.com", &[("1", "3", &["CVE-2021-0001"])])], "Mon Nov  9 10:00:00 2026"));
    let key = "asset_id::VARCHAR || '|' || vuln_key || '|' || loc_key";
    // A store as schema version 12 left it: the fingerprint the md5 of the key in 32 hex digits, and one
    // row whose fingerprint ctem did not write.
    {
        let s = ctem::store::Store::open(&db, false).unwrap();
        assert_eq!(import(&s, &w1).new, 2);
        s.conn
            .execute_batch(&format!(
                "INSERT INTO findings (finding_id, fingerprint, asset_id, asset_name, sources, vuln_id, vuln_key, loc_key, title, severity, category, status, first_seen, last_seen)
                 SELECT 99, fingerprint, asset_id, asset_name, sources, 'x', 'x', '', 't', 'low', category, 'accepted', first_seen, last_seen FROM findings LIMIT 1;
                 ALTER TABLE findings ALTER COLUMN fingerprint SET DATA TYPE VARCHAR USING CASE WHEN finding_id = 99 THEN 'typed by hand' ELSE md5({key}) END;
                 DELETE FROM schema_migrations WHERE version = 13;
                 CHECKPOINT;"
            ))
            .unwrap();
    }
    let s = ctem::store::Store::open(&db, false).unwrap();
    assert_eq!(s.schema_version().unwrap(), 13);
    assert_eq!(
        strings(&s, &format!("SELECT typeof(fingerprint) || ' ' || (fingerprint = md5_number({key})::UUID) FROM findings ORDER BY finding_id")),
        ["UUID true", "UUID true", "UUID false"]
    );
    assert_eq!(strings(&s, "SELECT fingerprint FROM findings WHERE finding_id = 99"), ["00000000-0000-0000-0000-000000000000"]);
    // The converted fingerprints are the ones imports compute: the next scan sees one again and fixes one.
    let r2 = import(&s, &w2);
    assert_eq!((r2.new, r2.seen_again, r2.fixed), (0, 1, 1), "{}", r2.line());
}

#[test]
fn new_assets_are_numbered_in_the_order_their_file_names_them() {
    // Enough hosts that the engine works on them in parallel; the sample CMDB for the same from a CSV.
    let d = tmpdir();
    let hosts: Vec<(String, String)> = (0..3000).map(|i| (format!("10.7.{}.{}", i / 250, i % 250), format!("n{i:04}.example.net"))).collect();
    let items: &[(&str, &str, &[&str])] = &[("1", "3", &[])];
    let spec: Vec<(&str, &str, &[(&str, &str, &[&str])])> = hosts.iter().map(|(ip, f)| (ip.as_str(), f.as_str(), items)).collect();
    let file = write(d.path(), "many.nessus", &nessus(&spec, "Mon Nov  2 10:00:00 2026"));
    let cmdb = sample_dir().join("cmdb/assets.csv");
    let in_file: Vec<String> = std::fs::read_to_string(&cmdb).unwrap().lines().skip(1).map(|l| l.split(',').next().unwrap().to_string()).collect();
    for _ in 0..2 {
        let s = mem();
        assert_eq!(import(&s, &file).new, 3000);
        let names = strings(&s, "SELECT name FROM assets ORDER BY asset_id");
        let expected: Vec<&str> = hosts.iter().map(|(_, f)| f.as_str()).collect();
        assert!(names == expected, "asset ids out of the report's order: first {:?}", &names[..5]);
        let s = mem();
        ctem::store::cmdb::import_assets(&s, &cmdb, None).unwrap();
        let names = strings(&s, "SELECT name FROM assets ORDER BY asset_id");
        assert!(names == in_file, "asset ids out of the CMDB's order: first {:?}", &names[..5]);
    }
}
