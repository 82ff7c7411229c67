//! Prioritisation on real data: CISA KEV and FIRST EPSS feeds, risk scores and their explanations,
//! fix groups, weight diffs, and feeds that are broken.

use crate::common::*;
use ctem::intel;
use ctem::risk::{self, Weights};
use ctem::store::Store;
use std::io::Write;
use std::path::{Path, PathBuf};

fn sample_intel(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data/intel").join(name)
}

fn intel_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intel").join(name)
}

const KEV_JSON: &str = "known_exploited_vulnerabilities.json.gz";
const EPSS: &str = "epss_kev_nvd.csv.gz";

fn load_real_intel(store: &Store) {
    let k = intel::load_file(store, &sample_intel(KEV_JSON)).unwrap();
    assert_eq!((k.feed.as_str(), k.version.as_deref(), k.records), ("kev", Some("2025.08.25"), 1404));
    let e = intel::load_file(store, &sample_intel(EPSS)).unwrap();
    assert_eq!((e.feed.as_str(), e.records), ("epss", 1556));
}

fn gunzip(p: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap()).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn kev_findings_outrank_non_kev_findings_of_equal_or_higher_cvss() {
    // (fixture, KEV findings, KEV/non-KEV pairs where the non-KEV finding has equal or higher CVSS)
    for (file, kevs, pairs) in [("qualys/Qualys_Sample_Report.xml", 5, 1425), ("tenable/nessus_new.csv", 2, 31)] {
        let s = mem();
        import_ok(&s, file);
        load_real_intel(&s);
        assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE kev AND status = 'open'"), kevs, "{file}");
        let pair = "FROM findings k JOIN findings n ON k.kev AND NOT n.kev AND coalesce(n.cvss_score, 0) >= coalesce(k.cvss_score, 0)
                    WHERE k.status = 'open' AND n.status = 'open'";
        assert_eq!(count(&s, &format!("SELECT count(*) {pair}")), pairs, "{file}");
        assert_eq!(count(&s, &format!("SELECT count(*) {pair} AND n.risk_score >= k.risk_score")), 0, "{file}: a KEV finding ranks below a non-KEV one");
        // Every KEV finding's explanation names KEV, its date added and due date.
        for f in strings(&s, "SELECT risk_factors FROM findings WHERE kev") {
            assert!(f.contains("KEV CVE-") && f.contains(" added 20") && f.contains(" due 20"), "{f}");
        }
        let id = count(&s, "SELECT min(finding_id) FROM findings WHERE kev");
        let text = ctem::explain::explain(&s, id).unwrap();
        assert!(text.contains("\nRisk ") && text.contains("CISA KEV CVE-"), "{text}");
    }
}

#[test]
fn exploited_findings_head_the_queue() {
    // Qualys: the five KEV findings (BlueKeep, EternalBlue twice, Shellshock, Heartbleed) are the top five.
    let s = mem();
    import_ok(&s, "qualys/Qualys_Sample_Report.xml");
    load_real_intel(&s);
    let top = strings(&s, "SELECT CAST(kev AS VARCHAR) FROM findings WHERE status = 'open' ORDER BY risk_score DESC, finding_id LIMIT 6");
    assert_eq!(top, vec!["true", "true", "true", "true", "true", "false"]);
    // Tenable CSV: CVE-2023-20867 (VMware Tools, CVSS 3.9, low) is exploited in the wild and ranks first.
    let s = mem();
    import_ok(&s, "tenable/nessus_new.csv");
    load_real_intel(&s);
    let f = strings(&s, "SELECT priority || ' ' || risk_factors FROM findings WHERE status = 'open' ORDER BY risk_score DESC, finding_id LIMIT 1");
    assert!(f[0].starts_with("P2 low CVSS 3.9 +11.7; KEV CVE-2023-20867 added 2023-06-23"), "{}", f[0]);
}

#[test]
fn higher_epss_outranks_the_same_cvss_with_lower_epss() {
    // Pairs of open findings on the same asset with the same CVSS, KEV standing and exposure, where
    // one's EPSS is clearly higher: the higher EPSS must rank higher (sample estate, real EPSS values).
    let d = tmpdir();
    let db = d.path().join("s.duckdb");
    ctem::generator::demo::load(&db, &Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data")).unwrap();
    let s = Store::open(&db, true).unwrap();
    let pairs = "FROM findings a JOIN findings b ON a.asset_id = b.asset_id AND a.cvss_score = b.cvss_score AND a.kev = b.kev
                   AND a.severity = b.severity AND coalesce(a.port, 0) = coalesce(b.port, 0) AND a.epss > b.epss + 0.05
                 WHERE a.status IN ('open', 'reopened') AND b.status IN ('open', 'reopened')
                   AND (a.risk_factors LIKE '%ransomware%') = (b.risk_factors LIKE '%ransomware%')";
    let n = count(&s, &format!("SELECT count(*) {pairs}"));
    assert!(n >= 10, "only {n} comparable pairs");
    assert_eq!(count(&s, &format!("SELECT count(*) {pairs} AND a.risk_score <= b.risk_score AND a.risk_score < 100")), 0);
    // The same, stated directly on two real EPSS values under the default weights.
    let w = Weights::default();
    assert!(w.epss * 0.94 > w.epss * 0.02);
    // No informational finding is P1, however exploited.
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE severity = 'info' AND priority IN ('P1', 'P2', 'P3')"), 0);
    assert!(count(&s, "SELECT count(*) FROM findings WHERE severity = 'info' AND status = 'open'") > 1000);
}

#[test]
fn an_informational_finding_is_never_p1_even_on_kev_and_exposed() {
    let s = mem();
    load_real_intel(&s);
    s.conn
        .execute_batch(
            "INSERT INTO assets (asset_id, name, kind, criticality, internet_facing) VALUES (1, 'edge', 'host', 5, true);
             INSERT INTO findings (finding_id, fingerprint, asset_id, asset_name, sources, vuln_id, vuln_key, loc_key, cves, title,
                                   severity, cvss_score, category, status, first_seen, last_seen, exploit_available, port)
             VALUES (1, uuid(), 1, 'edge', ['x'], 'CVE-2021-44228', 'CVE-2021-44228', '', ['CVE-2021-44228'], 'banner', 'info', 10.0,
                     'vulnerability', 'open', now()::TIMESTAMP, now()::TIMESTAMP, true, 443),
                    (2, uuid(), 1, 'edge', ['x'], 'CVE-2021-44228', 'CVE-2021-44228', 'p', ['CVE-2021-44228'], 'log4shell', 'critical', 10.0,
                     'vulnerability', 'open', now()::TIMESTAMP, now()::TIMESTAMP, true, 443);",
        )
        .unwrap();
    risk::rescore_store(&s).unwrap();
    let rows = strings(&s, "SELECT priority || ' ' || risk_score FROM findings ORDER BY finding_id");
    assert_eq!(rows, vec!["P4 100.0", "P1 100.0"]);
    let f = strings(&s, "SELECT risk_factors FROM findings WHERE finding_id = 1");
    assert!(f[0].ends_with("informational: never above P4"), "{}", f[0]);
    // Informational findings need no fix.
    assert_eq!(strings(&s, "SELECT fix_kind FROM findings ORDER BY finding_id"), vec!["informational", "vendor_patch"]);
}

#[test]
fn findings_without_cve_or_cvss_are_scored_and_say_what_was_missing() {
    let s = mem();
    import_ok(&s, "sarif/codeQL-output.sarif");
    load_real_intel(&s);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE status = 'open' AND risk_score IS NULL"), 0);
    let f = strings(&s, "SELECT DISTINCT risk_factors FROM findings ORDER BY 1 LIMIT 1");
    for part in ["(no CVSS: taken as", "no CVE: KEV and EPSS do not apply", "internet exposure unknown", "asset criticality unknown", "runtime unknown"] {
        assert!(f[0].contains(part), "{part} missing from {}", f[0]);
    }
}

#[test]
fn fix_groups_collapse_real_grype_and_trivy_findings() {
    let s = mem();
    import_ok(&s, "trivy/scheme_2_many_vulns.json");
    let rows = strings(&s, "SELECT kind || ' | ' || fix || ' | ' || findings || ' | ' || assets FROM fix_groups");
    assert_eq!(
        rows,
        vec![
            "base_image | rebuild on a patched alpine 3.9.4 base image | 3 | 1",
            "package_upgrade | upgrade org.apache.commons:commons-compress to 1.18 | 2 | 1",
        ]
    );
    let s = mem();
    import_ok(&s, "anchore_grype/many_vulns.json");
    // 752 actionable findings (negligible ones are informational) on Debian 10 packages with no fixed
    // version: one group per package, so a fixer sees 119 packages to watch, not 752 rows.
    assert_eq!(count(&s, "SELECT sum(findings) FROM fix_groups"), 752);
    assert_eq!(count(&s, "SELECT count(*) FROM fix_groups"), 119);
    assert_eq!(count(&s, "SELECT count(*) FROM fix_groups WHERE kind <> 'no_fix'"), 0);
    assert_eq!(
        strings(&s, "SELECT fix || ' ' || findings FROM fix_groups ORDER BY findings DESC, fix LIMIT 1"),
        vec!["no fixed version yet: imagemagick (debian 10) 34"]
    );
    // Findings with a fix: the upgrade names the highest fixed version the group needs.
    let s = mem();
    import_ok(&s, "anchore_grype/check_all_fields.json");
    assert_eq!(count(&s, "SELECT count(*) FROM fix_groups WHERE kind = 'package_upgrade'"), 2);
}

#[test]
fn sample_estate_base_image_fix_closes_hundreds_of_findings() {
    let d = tmpdir();
    let db = d.path().join("s.duckdb");
    let text = ctem::generator::demo::load(&db, &Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data")).unwrap();
    assert!(text.contains("intel/known_exploited_vulnerabilities.json.gz: kev version 2025.08.25"), "{text}");
    let s = Store::open(&db, true).unwrap();
    let top = strings(&s, "SELECT fix || ' | ' || kind || ' | ' || findings || ' | ' || assets FROM fix_groups LIMIT 1");
    assert_eq!(top, vec!["rebuild on a patched debian 12.2 base image | base_image | 435 | 119"]);
    // Groups are ordered by the risk they remove.
    assert_eq!(count(&s, "SELECT count(*) FROM (SELECT risk_removed, lag(risk_removed) OVER () AS prev FROM fix_groups) WHERE prev < risk_removed"), 0);
    assert!(count(&s, "SELECT count(*) FROM fix_group_owners") > count(&s, "SELECT count(*) FROM fix_groups"));
}

#[test]
fn weights_diff_shows_moves_and_changes_nothing() {
    let s = mem();
    import_ok(&s, "qualys/Qualys_Sample_Report.xml");
    load_real_intel(&s);
    let before = strings(&s, "SELECT finding_id || ':' || risk_score || ':' || priority FROM findings ORDER BY finding_id");
    let alt = Weights::parse("kev = 0\nepss = 0\n", "w.toml").unwrap();
    let out = risk::diff(&s, &alt, 5).unwrap();
    assert!(out.contains("Biggest moves in rank:"), "{out}");
    // Without KEV and EPSS points the KEV findings fall: at least one leaves P2 or better.
    let moved: i64 = out.lines().find(|l| l.starts_with("Biggest moves in rank: ")).unwrap()["Biggest moves in rank: ".len()..].parse().unwrap();
    assert!(moved > 0, "{out}");
    let after = strings(&s, "SELECT finding_id || ':' || risk_score || ':' || priority FROM findings ORDER BY finding_id");
    assert_eq!(before, after, "diff changed the store");
    // Without KEV and EPSS points every P1 (all of them KEV entries) leaves P1.
    let left: i64 = out.lines().find(|l| l.starts_with("Left P1: ")).unwrap()["Left P1: ".len()..].parse().unwrap();
    assert_eq!(left, 5, "{out}");
    assert!(out.contains("  P1         5 -> 0 "), "{out}");
}

#[test]
fn every_feed_kind_loads_from_the_real_files() {
    let s = mem();
    load_real_intel(&s);
    let l = intel::load_file(&s, &intel_fixture("known_exploited_vulnerabilities.csv.gz")).unwrap();
    assert_eq!((l.feed.as_str(), l.version.as_deref(), l.records), ("kev", Some("2025.08.25"), 1404));
    assert_eq!(count(&s, "SELECT count(*) FROM kev WHERE ransomware"), 293);
    assert_eq!(count(&s, "SELECT count(*) FROM kev WHERE len(cwes) > 0"), 1252);
    let a = intel::load_file(&s, &intel_fixture("enterprise-attack-techniques.json.gz")).unwrap();
    assert_eq!(a.feed, "attack");
    assert_eq!(count(&s, "SELECT count(*) FROM attack_techniques WHERE NOT deprecated"), 691);
    assert_eq!(count(&s, "SELECT count(*) FROM attack_techniques WHERE NOT deprecated AND NOT is_subtechnique"), 216);
    assert_eq!(count(&s, "SELECT count(*) FROM attack_tactics"), 14);
    assert_eq!(strings(&s, "SELECT name FROM attack_techniques WHERE technique_id = 'T1190'"), vec!["Exploit Public-Facing Application"]);
    assert_eq!(strings(&s, "SELECT array_to_string(tactics, ',') FROM attack_techniques WHERE technique_id = 'T1190'"), vec!["initial-access"]);
    let c = intel::load_file(&s, &intel_fixture("stix-capec.json.gz")).unwrap();
    assert_eq!((c.feed.as_str(), c.version.as_deref(), c.records), ("capec", Some("3.9"), 615));
    assert_eq!(count(&s, "SELECT count(*) FROM capec WHERE len(cwes) > 0"), 450);
    assert_eq!(count(&s, "SELECT count(*) FROM capec WHERE len(techniques) > 0"), 177);
    let k = intel::load_file(&s, &intel_fixture("kev-07.28.2025_attack-16.1-enterprise.json.gz")).unwrap();
    assert_eq!((k.feed.as_str(), k.records), ("ctid:kev", 1183));
    assert_eq!(count(&s, "SELECT count(DISTINCT capability_id) FROM ctid_mappings WHERE framework = 'kev'"), 419);
    let w = intel::load_file(&s, &intel_fixture("aws-12.12.2024_attack-16.1-enterprise.json.gz")).unwrap();
    assert_eq!(w.feed, "ctid:aws");
    // 30 AWS services are named, 20 of them with at least one mappable technique.
    assert_eq!(count(&s, "SELECT count(DISTINCT capability_id) FROM ctid_mappings WHERE framework = 'aws'"), 20);
    // Two CTID frameworks side by side; each feed recorded once with its version and date.
    let status = intel::status(&s.conn, chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap().and_hms_opt(0, 0, 0).unwrap()).unwrap();
    for feed in ["attack", "capec", "ctid:aws", "ctid:kev", "epss", "kev"] {
        assert_eq!(status.lines().filter(|l| l.starts_with(&format!("{feed} "))).count(), 1, "{status}");
    }
    assert!(status.contains("2025.08.25") && status.contains("455 days old"), "{status}");
}

#[test]
fn epss_daily_file_with_its_model_line() {
    let d = tmpdir();
    let p = d.path().join("epss_scores-2026-08-22.csv.gz");
    // Real scores from the KEV/EPSS compilation, written in the daily file's layout.
    let src = String::from_utf8(gunzip(&sample_intel(EPSS))).unwrap();
    let mut rd = csv::Reader::from_reader(src.as_bytes());
    let mut text = String::from("#model_version:v2025.03.14,score_date:2026-08-22T00:00:00+0000\ncve,epss,percentile\n");
    for r in rd.records().take(200) {
        let r = r.unwrap();
        text.push_str(&format!("{},{},{}\n", &r[0], &r[2], &r[3]));
    }
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap();
    let s = mem();
    let l = intel::load_file(&s, &p).unwrap();
    assert_eq!(l.version.as_deref(), Some("v2025.03.14"));
    assert_eq!(l.date.unwrap().format("%Y-%m-%d").to_string(), "2026-08-22");
    assert_eq!(l.records, 200);
}

#[test]
fn broken_feeds_are_refused_and_the_previous_intel_stays() {
    let s = mem();
    import_ok(&s, "qualys/Qualys_Sample_Report.xml");
    load_real_intel(&s);
    let scores = strings(&s, "SELECT finding_id || ':' || risk_score FROM findings ORDER BY 1");
    let d = tmpdir();
    let kev = gunzip(&sample_intel(KEV_JSON));
    // Truncated KEV JSON: the error names the file, line and column.
    let t = d.path().join("kev-truncated.json");
    std::fs::write(&t, &kev[..kev.len() / 2]).unwrap();
    let e = intel::load_file(&s, &t).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{} line ", t.display())) && e.contains("column"), "{e}");
    // A KEV entry with a broken date names the entry and the CVE.
    let bad = String::from_utf8(kev.clone()).unwrap().replacen("\"dateAdded\": \"2025-08-25\"", "\"dateAdded\": \"yesterday\"", 1);
    let b = d.path().join("kev-bad-date.json");
    std::fs::write(&b, bad).unwrap();
    let e = intel::load_file(&s, &b).unwrap_err().to_string();
    assert!(e.contains("vulnerabilities[0] (CVE-2025-48384): dateAdded `yesterday` is not a date"), "{e}");
    // EPSS with a score that is not a number: the line is named.
    let ep = d.path().join("epss.csv");
    std::fs::write(&ep, "#model_version:v2025.03.14,score_date:2026-08-22T00:00:00Z\ncve,epss,percentile\nCVE-2021-44228,0.9,0.99\nCVE-2014-0160,high,0.5\n").unwrap();
    let e = intel::load_file(&s, &ep).unwrap_err().to_string();
    assert!(e.contains("epss.csv line 4: epss `high` is not a number"), "{e}");
    // Out of range.
    std::fs::write(&ep, "cve,epss,percentile\nCVE-2021-44228,1.7,0.99\n").unwrap();
    assert!(intel::load_file(&s, &ep).unwrap_err().to_string().contains("line 2: epss 1.7 is outside 0-1"));
    // A STIX bundle of an unknown version.
    let st = d.path().join("attack.json");
    std::fs::write(&st, r#"{"type":"bundle","id":"bundle--1","spec_version":"3.0","objects":[]}"#).unwrap();
    assert!(intel::load_file(&s, &st).unwrap_err().to_string().contains("STIX spec_version 3.0 is not supported"));
    // A scanner report is not a feed.
    let e = intel::load_file(&s, &fixture("anchore_grype/check_all_fields.json")).unwrap_err().to_string();
    assert!(e.contains("not a feed this tool knows"), "{e}");
    // Nothing changed: the KEV and EPSS loaded before are in force and the scores are the same.
    assert_eq!(count(&s, "SELECT count(*) FROM kev"), 1404);
    assert_eq!(count(&s, "SELECT count(*) FROM epss"), 1556);
    assert_eq!(count(&s, "SELECT count(*) FROM intel_feeds"), 2);
    assert_eq!(scores, strings(&s, "SELECT finding_id || ':' || risk_score FROM findings ORDER BY 1"));
}

/// A one-shot HTTP server on 127.0.0.1 serving files by name (the feed mirror of `intel update`).
fn serve(files: Vec<(&'static str, Vec<u8>)>, requests: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let mut asked = Vec::new();
        for _ in 0..requests {
            let (mut sock, _) = l.accept().unwrap();
            let mut rd = BufReader::new(sock.try_clone().unwrap());
            let mut line = String::new();
            rd.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            loop {
                let mut h = String::new();
                if rd.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
            }
            asked.push(path.clone());
            match files.iter().find(|(n, _)| *n == path) {
                Some((_, body)) => {
                    write!(sock, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).unwrap();
                    sock.write_all(body).unwrap();
                }
                None => write!(sock, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap(),
            }
        }
        asked
    });
    (base, h)
}

#[test]
fn intel_update_downloads_from_a_mirror_and_loads() {
    let s = mem();
    let d = tmpdir();
    let epss_daily = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"#model_version:v2025.03.14,score_date:2026-08-22T00:00:00Z\ncve,epss,percentile\nCVE-2021-44228,0.94358,0.99953\n").unwrap();
        gz.finish().unwrap()
    };
    let (base, h) = serve(vec![
        ("known_exploited_vulnerabilities.json", gunzip(&sample_intel(KEV_JSON))),
        ("epss_scores-current.csv.gz", epss_daily),
        ("enterprise-attack.json", gunzip(&intel_fixture("enterprise-attack-techniques.json.gz"))),
        ("stix-capec.json", b"{\"type\":\"bundle\",\"id\":\"x\",\"objects\":[".to_vec()),
        ("kev-07.28.2025_attack-16.1-enterprise.json", gunzip(&intel_fixture("kev-07.28.2025_attack-16.1-enterprise.json.gz"))),
    ], intel::update::SOURCES.len());
    let (outcomes, offline) = intel::update::run(&s, d.path(), Some(&base)).unwrap();
    let asked = h.join().unwrap();
    assert_eq!(&asked[..4], &["known_exploited_vulnerabilities.json", "epss_scores-current.csv.gz", "enterprise-attack.json", "stix-capec.json"]);
    assert_eq!(asked.len(), 10);
    assert!(!offline);
    let r: Vec<String> = outcomes.iter().map(|o| format!("{}={}", o.feed, o.result.is_ok())).collect();
    assert_eq!(
        r,
        vec!["kev=true", "epss=true", "attack=true", "capec=false", "ctid:kev=true", "ctid:aws=false", "ctid:azure=false", "ctid:gcp=false", "ctid:m365=false", "ctid:nist_800_53=false"]
    );
    // A feed the mirror does not have says so.
    assert!(outcomes[5].result.as_ref().unwrap_err().contains("server answered 404"), "{:?}", outcomes[5].result);
    // The broken CAPEC download is refused with its position, and nothing of it is stored.
    assert!(outcomes[3].result.as_ref().unwrap_err().contains("line 1 column"), "{:?}", outcomes[3].result);
    assert_eq!(count(&s, "SELECT count(*) FROM capec"), 0);
    assert_eq!(count(&s, "SELECT count(*) FROM epss"), 1);
}

#[test]
fn intel_update_without_network_says_so() {
    let s = mem();
    let d = tmpdir();
    // A port nobody listens on: every connection is refused, as with no route to the internet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (outcomes, offline) = intel::update::run(&s, d.path(), Some(&format!("http://127.0.0.1:{port}"))).unwrap();
    assert!(offline);
    assert!(outcomes.iter().all(|o| o.result.is_err()));
    // Plain http is refused for anything but loopback; https is the only scheme for real mirrors.
    assert!(intel::update::url_for("https://x/y.json", Some("http://mirror.example.com")).unwrap_err().to_string().contains("only for loopback"));
    assert!(intel::update::url_for("https://x/y.json", Some("https://mirror.example.com/feeds/")).unwrap().ends_with("/feeds/y.json"));
}

#[test]
fn fix_group_is_one_work_item_per_owner_and_never_twice() {
    use ctem::store::work::{hand_off, Selection};
    let d = tmpdir();
    let db = d.path().join("s.duckdb");
    ctem::generator::demo::load(&db, &Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data")).unwrap();
    let s = Store::open(&db, false).unwrap();
    // The sample estate's plan (P3 and above) already holds most of the base-image group: one work item
    // per owning team. Handing the whole group over grows those items with its P4 findings.
    let fix = "rebuild on a patched debian 12.2 base image";
    let sizes = |s: &Store| strings(s, &format!("SELECT team || ' ' || open_findings FROM work_board WHERE fix = '{fix}' ORDER BY team"));
    assert_eq!(sizes(&s), vec!["corporate-platform 70", "logistics-platform 92", "payments-platform 125"]);
    let h = hand_off(&s, &Selection::Fix { kind: "base_image".into(), fix: fix.into() }, None).unwrap();
    assert_eq!((h.new_items(), h.grown_items(), h.already), (0, 3, 287), "{h:?}");
    assert_eq!(h.message(), "3 grown (159 findings) for corporate-platform, logistics-platform, payments-platform in Mobilization; 287 already in open work items");
    assert_eq!(sizes(&s), vec!["corporate-platform 126", "logistics-platform 139", "payments-platform 181"]);
    assert_eq!(strings(&s, &format!("SELECT DISTINCT title FROM work_items WHERE fix = '{fix}'")), vec![fix]);
    assert_eq!(strings(&s, &format!("SELECT DISTINCT fingerprint FROM work_items WHERE fix = '{fix}' AND team = 'payments-platform'")), vec![format!("fix|payments-platform|base_image|{fix}")]);
    // Every finding belongs to the work item of its asset's owner.
    assert_eq!(
        count(&s, "SELECT count(*) FROM work_item_findings wf JOIN work_items w USING (work_item_id) JOIN findings f USING (finding_id)
                   JOIN assets a ON a.asset_id = f.asset_id WHERE a.owner <> w.team"),
        0
    );
    // Handing the same group over again: nothing new.
    let h = hand_off(&s, &Selection::Fix { kind: "base_image".into(), fix: fix.into() }, None).unwrap();
    assert!(h.items.is_empty() && h.already == 446, "{h:?}");
    assert_eq!(h.message(), "nothing handed over: 446 already in open work items, 0 no longer open");
    // Hand-picked findings (P4, which the plan leaves in the queue): a fixed one is left out and said so.
    let open: Vec<i64> = strings(&s, "SELECT finding_id::VARCHAR FROM findings f JOIN assets a USING (asset_id) WHERE status = 'open' AND priority = 'P4' AND a.owner = 'payments-infra' ORDER BY risk_score DESC, finding_id LIMIT 2")
        .iter()
        .map(|x| x.parse().unwrap())
        .collect();
    let fixed = count(&s, "SELECT min(finding_id) FROM findings WHERE status = 'fixed'");
    let mut ids = open.clone();
    ids.push(fixed);
    let h = hand_off(&s, &Selection::Findings(ids), None).unwrap();
    assert_eq!(h.closed, 1);
    assert_eq!(h.items.len(), 1, "{h:?}");
    assert_eq!((h.items[0].team.as_str(), h.items[0].findings), ("payments-infra", 2));
    let id = h.items[0].work_item_id.unwrap();
    assert_eq!(strings(&s, &format!("SELECT fingerprint FROM work_items WHERE work_item_id = {id}")), vec![format!("pick|{id}")]);
    // Read-only stores refuse.
    drop(s);
    let ro = Store::open(&db, true).unwrap();
    assert!(hand_off(&ro, &Selection::Findings(open), None).unwrap_err().to_string().contains("read-only"));
}

/// Every score, priority, explanation and fix as stored.
fn scored(s: &Store) -> Vec<String> {
    strings(
        s,
        "SELECT concat_ws(' | ', finding_id, status, risk_score, priority, risk_factors, kev, epss, internet_exposed, runtime, fix_kind, fix, fix_target, mitigated_by)
         FROM findings ORDER BY finding_id",
    )
}

#[test]
fn the_rescore_after_an_import_scores_what_changed_and_agrees_with_a_full_rescore() {
    let d = tmpdir();
    let db = sample_db(d.path());
    let repo = sample_dir();
    let s = Store::open(&db, false).unwrap();
    // Three weeks of scans, each followed by a rescore of what it changed: the same as scoring everything.
    let after_imports = scored(&s);
    assert!(count(&s, "SELECT count(*) FROM findings WHERE status IN ('open', 'reopened') AND risk_score IS NULL") == 0);
    risk::rescore(&s.conn, &s.weights).unwrap();
    let full = scored(&s);
    assert_eq!(after_imports.len(), full.len());
    let differ: Vec<_> = after_imports.iter().zip(&full).filter(|(a, b)| a != b).take(3).collect();
    assert!(differ.is_empty(), "scores after the imports differ from a full rescore: {differ:?}");

    // The CMDB says one asset became internet-facing and critical: its findings, and only they, move.
    let (asset, name): (i64, String) = s
        .conn
        .query_row(
            "SELECT a.asset_id, a.name FROM assets a JOIN findings f USING (asset_id)
             WHERE f.status = 'open' AND NOT coalesce(a.internet_facing, false) AND a.criticality <= 3 AND a.kind = 'host'
             GROUP BY ALL ORDER BY count(*) DESC, a.asset_id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let before: f64 = s.conn.query_row("SELECT sum(risk_score) FROM findings WHERE asset_id = ? AND status = 'open'", [asset], |r| r.get(0)).unwrap();
    let others_before = strings(&s, &format!("SELECT concat_ws('|', finding_id, risk_score, risk_factors) FROM findings WHERE asset_id <> {asset} ORDER BY 1"));
    let csv = std::fs::read_to_string(repo.join("cmdb/assets.csv")).unwrap();
    let mut changed = 0;
    let edited: Vec<String> = csv
        .lines()
        .map(|l| {
            let mut cols: Vec<String> = l.split(',').map(String::from).collect();
            if cols[0] == name {
                changed += 1;
                let n = cols.len();
                cols[n - 3] = "5".into();
                cols[n - 2] = "true".into();
            }
            cols.join(",")
        })
        .collect();
    assert_eq!(changed, 1, "{name} in the CMDB");
    let f = write(d.path(), "assets.csv", &(edited.join("\n") + "\n"));
    ctem::store::cmdb::import_assets(&s, &f, None).unwrap();
    let after: f64 = s.conn.query_row("SELECT sum(risk_score) FROM findings WHERE asset_id = ? AND status = 'open'", [asset], |r| r.get(0)).unwrap();
    assert!(after > before, "{name}: {before} -> {after}");
    for f in strings(&s, &format!("SELECT risk_factors FROM findings WHERE asset_id = {asset} AND status = 'open'")) {
        assert!(f.contains("internet-facing (CMDB) +10.0") && f.contains("asset criticality 5 +10.0"), "{f}");
    }
    let others_after = strings(&s, &format!("SELECT concat_ws('|', finding_id, risk_score, risk_factors) FROM findings WHERE asset_id <> {asset} ORDER BY 1"));
    assert!(others_before == others_after, "findings of other assets moved");
    let now = scored(&s);
    risk::rescore(&s.conn, &s.weights).unwrap();
    assert!(now == scored(&s), "the rescore after the CMDB import differs from a full rescore");
}
