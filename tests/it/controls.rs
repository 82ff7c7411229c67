//! The controls inventory: parsing (CSV and TOML), refusals with file and line, and coverage resolved
//! against the sample estate's assets.

use crate::common::*;
use ctem::store::controls;
use ctem::store::Store;
use std::path::Path;

fn sample() -> (tempfile::TempDir, Store) {
    let d = tmpdir();
    let db = d.path().join("s.duckdb");
    let text = ctem::generator::demo::load(&db, &Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data")).unwrap();
    assert!(text.contains("controls: 10 (0 warnings)"), "{text}");
    let s = Store::open(&db, false).unwrap();
    (d, s)
}

#[test]
fn sample_controls_cover_what_they_say() {
    let (_d, s) = sample();
    let covered = |id: &str| count(&s, &format!("SELECT count(*) FROM control_assets WHERE control_id = '{id}'"));
    let hosts = count(&s, "SELECT count(*) FROM assets WHERE kind = 'host'");
    // Every asset; the CIDR range of the data centre; internet-facing assets; one AWS account.
    assert_eq!(covered("ctl-mfa-sso"), count(&s, "SELECT count(*) FROM assets"));
    assert_eq!(covered("ctl-ngfw-dc"), count(&s, "SELECT count(*) FROM assets WHERE list_bool_or(list_transform(ips, lambda i: i LIKE '10.%'))"));
    assert_eq!(covered("ctl-waf-edge"), count(&s, "SELECT count(*) FROM assets WHERE internet_facing"));
    assert_eq!(covered("ctl-scp-guard"), count(&s, "SELECT count(*) FROM assets WHERE account = '111122223333'"));
    // The two EDR filters split the hosts between them.
    assert_eq!(covered("ctl-edr-win") + covered("ctl-edr-linux"), hosts);
    assert_eq!(covered("ctl-edr-win"), count(&s, "SELECT count(*) FROM assets WHERE kind = 'host' AND os ILIKE '%windows%'"));
    // A narrower CIDR covers fewer.
    assert!(covered("ctl-ips-core") < covered("ctl-ngfw-dc") && covered("ctl-ips-core") > 0);
    assert_eq!(strings(&s, "SELECT status FROM controls WHERE control_id = 'ctl-dlp-corp'"), vec!["disabled"]);
    // Coverage follows the assets: a new internet-facing asset from the CMDB is covered by the WAF after the next import.
    let d = tmpdir();
    let csv = d.path().join("cmdb.csv");
    std::fs::write(&csv, "name,kind,ip,internet_facing,business_unit\nedge-new-01,host,203.0.113.7,true,Payments\n").unwrap();
    let before = covered("ctl-waf-edge");
    ctem::store::cmdb::import_assets(&s, &csv, None).unwrap();
    assert_eq!(covered("ctl-waf-edge"), before + 1);
}

#[test]
fn toml_inventories_and_refusals_name_the_line() {
    let (_d, s) = sample();
    let d = tmpdir();
    let t = d.path().join("controls.toml");
    std::fs::write(
        &t,
        r#"[[control]]
control_id = "ctl-waf"
name = "WAF"
kind = "waf"
product = "aws_web_application_firewall"
mode = "block"
covers = "internet; tag:web"
status = "healthy"
"#,
    )
    .unwrap();
    let l = controls::import(&s, &t).unwrap();
    assert_eq!(l.controls, 1);
    assert_eq!(count(&s, "SELECT count(*) FROM controls"), 1, "the inventory is replaced");
    assert_eq!(
        count(&s, "SELECT count(*) FROM control_assets"),
        count(&s, "SELECT count(*) FROM assets WHERE internet_facing OR list_contains(tags, 'web')")
    );
    // Refusals: a malformed CIDR, an unknown kind, an unknown coverage term, a bad filter; nothing changes.
    let c = d.path().join("bad.csv");
    for (row, msg) in [
        ("ctl-x,X,ngfw,SC-7,block,10.0.0.0/33,healthy", "line 3 (ctl-x): `10.0.0.0/33` is not a valid CIDR range"),
        ("ctl-x,X,firewall,SC-7,block,*,healthy", "line 3 (ctl-x): kind `firewall` is not one of"),
        ("ctl-x,X,ngfw,SC-7,block,rack:12,healthy", "line 3 (ctl-x): unknown coverage `rack:`"),
        ("ctl-x,X,ngfw,SC-7,block,filter:sev>=high,healthy", "line 3 (ctl-x): filter `sev>=high`"),
        ("ctl-x,X,ngfw,SC-7,allow,*,healthy", "line 3 (ctl-x): mode `allow` must be block or detect"),
    ] {
        std::fs::write(&c, format!("control_id,name,kind,product,mode,covers,status\nctl-ok,OK,edr,SI-3,detect,*,healthy\n{row}\n")).unwrap();
        let e = controls::import(&s, &c).unwrap_err().to_string();
        assert!(e.starts_with(&c.display().to_string()) && e.contains(msg), "{e}");
        assert_eq!(strings(&s, "SELECT control_id FROM controls"), vec!["ctl-waf"]);
    }
    // A control that matches nothing loads, with a warning; never treated as covering everything.
    std::fs::write(&c, "control_id,name,kind,product,mode,covers,status\nctl-none,None,ngfw,SC-7,block,192.0.2.0/24,healthy\n").unwrap();
    let l = controls::import(&s, &c).unwrap();
    assert!(l.warnings.iter().any(|w| w == "ctl-none: covers no asset in the store"), "{:?}", l.warnings);
    assert_eq!(count(&s, "SELECT count(*) FROM control_assets"), 0);
}

#[test]
fn exposures_and_controls_meet_on_attack_techniques() {
    let (d, s) = sample();
    let fx = |n: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intel").join(n);
    for f in ["kev-07.28.2025_attack-16.1-enterprise.json.gz", "aws-12.12.2024_attack-16.1-enterprise.json.gz", "stix-capec.json.gz"] {
        ctem::intel::load_file(&s, &fx(f)).unwrap();
    }
    // The CTID KEV mapping puts Log4Shell (CVE-2021-44228) on T1190, exploitation.
    let log4j = count(
        &s,
        "SELECT min(f.finding_id) FROM findings f JOIN assets a USING (asset_id)
         WHERE list_contains(f.cves, 'CVE-2021-44228') AND f.status IN ('open', 'mitigated') AND a.internet_facing AND f.category = 'vulnerability' AND a.kind = 'host'",
    );
    let rows = strings(&s, &format!("SELECT relation || ' ' || source FROM exposure_techniques WHERE finding_id = {log4j} AND technique_id = 'T1190' ORDER BY 1"));
    assert!(rows.contains(&"exploitation_technique ctid:kev CVE-2021-44228".to_string()), "{rows:?}");
    // CWE -> CAPEC -> ATT&CK for findings that carry a CWE; exposed secrets are T1552.
    assert!(count(&s, "SELECT count(*) FROM exposure_techniques WHERE relation = 'capec'") > 100);
    assert_eq!(
        count(&s, "SELECT count(DISTINCT finding_id) FROM exposure_techniques WHERE technique_id = 'T1552'"),
        count(&s, "SELECT count(*) FROM findings WHERE category = 'secret' AND status IN ('open', 'reopened')")
    );
    // The AWS WAF protects T1190 significantly; healthy and blocking on the internet-facing assets.
    assert_eq!(
        strings(&s, "SELECT category || ' ' || strength FROM control_techniques WHERE control_id = 'ctl-waf-edge' AND technique_id = 'T1190'"),
        vec!["protect significant"]
    );
    let waf = "FROM control_coverage WHERE control_id = 'ctl-waf-edge' AND technique_id = 'T1190'";
    assert!(count(&s, &format!("SELECT sum(findings) {waf}")) > 10);
    // Its only exploitation technique is blocked by a healthy WAF on its asset: mitigated, lower score,
    // and it says so; still countable.
    let state = |s: &Store| strings(s, &format!("SELECT status || ' ' || coalesce(array_to_string(mitigated_by, ','), '-') FROM findings WHERE finding_id = {log4j}"));
    assert_eq!(state(&s), vec!["mitigated ctl-waf-edge"]);
    let f = strings(&s, &format!("SELECT risk_factors FROM findings WHERE finding_id = {log4j}"));
    assert!(f[0].contains("mitigated by ctl-waf-edge (blocks every exploitation technique) -30.0"), "{}", f[0]);
    assert!(count(&s, "SELECT count(*) FROM findings WHERE status = 'mitigated'") > 10);
    // A mitigated finding is still scored: its explanation shows the current score, not an old one.
    let why = ctem::explain::explain(&s, log4j).unwrap();
    assert!(why.contains("mitigated by ctl-waf-edge") && !why.contains("as last scored while open"), "{why}");
    // Disabled: it covers nothing and the finding is open again.
    let csv = d.path().join("c.csv");
    std::fs::write(&csv, "control_id,name,kind,product,mode,covers,status\nctl-waf-edge,WAF,waf,aws_web_application_firewall,block,internet,disabled\n").unwrap();
    controls::import(&s, &csv).unwrap();
    ctem::risk::rescore_store(&s).unwrap();
    assert_eq!(count(&s, &format!("SELECT count(*) {waf}")), 0);
    assert_eq!(state(&s), vec!["open -"]);
    assert!(!strings(&s, &format!("SELECT risk_factors FROM findings WHERE finding_id = {log4j}"))[0].contains("mitigated"));
    // A detect-only control never mitigates.
    std::fs::write(&csv, "control_id,name,kind,product,mode,covers,status\nctl-waf-edge,WAF,waf,aws_web_application_firewall,detect,internet,healthy\n").unwrap();
    controls::import(&s, &csv).unwrap();
    ctem::risk::rescore_store(&s).unwrap();
    assert_eq!(state(&s), vec!["open -"]);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE status = 'mitigated'"), 0);
    // Healthy and blocking again: mitigated again.
    std::fs::write(&csv, "control_id,name,kind,product,mode,covers,status\nctl-waf-edge,WAF,waf,aws_web_application_firewall,block,internet,healthy\n").unwrap();
    controls::import(&s, &csv).unwrap();
    ctem::risk::rescore_store(&s).unwrap();
    assert_eq!(state(&s), vec!["mitigated ctl-waf-edge"]);
}

#[test]
fn verification_states_from_rescans_and_work_items() {
    let (_d, s) = sample();
    let state = |st: &str| count(&s, &format!("SELECT count(*) FROM finding_verification WHERE state = '{st}'"));
    assert_eq!(state("verified"), count(&s, "SELECT count(*) FROM findings WHERE status = 'fixed'"));
    assert_eq!(state("regressed"), 150);
    // Prowler's last scan covered 96 of the 111 cloud resources it saw before: their findings cannot be confirmed.
    assert_eq!(state("not_covered"), 15);
    assert_eq!(strings(&s, "SELECT DISTINCT array_to_string(f.sources, ',') FROM finding_verification v JOIN findings f USING (finding_id) WHERE state = 'not_covered'"), vec!["prowler"]);
    // A work item marked fixed in a ticket: its open findings await a rescan.
    let id = count(&s, "SELECT min(work_item_id) FROM work_items WHERE fix = 'rebuild on a patched debian 12.2 base image'");
    let open = count(&s, &format!("SELECT count(*) FROM work_item_findings JOIN findings USING (finding_id) WHERE work_item_id = {id} AND status IN ('open', 'mitigated')"));
    assert!(open > 50, "{open}");
    let m = ctem::store::work::move_items(&s, &[id], "fixed").unwrap();
    assert_eq!(m.moved, vec![id]);
    assert_eq!(state("awaiting_rescan"), open);
}

#[test]
fn zap_scan_pair_verifies_fixes() {
    // The corpus's "second" ZAP scan is dated 18 June 2021 and the "first" 20 June: in time order, the
    // 20 June scan re-tests the application and 42 alert instances of 18 June are gone.
    let s = mem();
    let older = import_ok(&s, "zap/zap-results-second-scan.xml");
    assert_eq!((older.records, older.new), (126, 125));
    let newer = import_ok(&s, "zap/zap-results-first-scan.xml");
    assert_eq!((newer.new, newer.seen_again, newer.fixed, newer.reopened), (46, 83, 42, 0));
    let state = |st: &str| count(&s, &format!("SELECT count(*) FROM finding_verification WHERE state = '{st}'"));
    assert_eq!((state("verified"), state("regressed"), state("open")), (42, 0, 129));
    assert_eq!(strings(&s, "SELECT kind || ' ' || name FROM assets"), vec!["web_app http://bodgeit.securecodebox-demo.svc:8080"]);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE category = 'web' AND severity = 'high'"), 6);
    assert!(count(&s, "SELECT count(*) FROM findings WHERE len(cwes) > 0") > 100);
    // Importing the older scan again changes nothing, and it is said.
    let again = ctem::store::import::import_file(&s, &fixture("zap/zap-results-second-scan.xml"), None, &Default::default());
    assert!(matches!(again.outcome, ctem::store::import::Outcome::Unchanged(_)), "{}", again.line());
}

#[test]
fn user_mappings_add_and_override_with_their_source() {
    let (d, s) = sample();
    let fx = |n: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/intel").join(n);
    for f in ["kev-07.28.2025_attack-16.1-enterprise.json.gz", "aws-12.12.2024_attack-16.1-enterprise.json.gz"] {
        ctem::intel::load_file(&s, &fx(f)).unwrap();
    }
    let m = d.path().join("mine.csv");
    // Our NGFW blocks T1190 significantly (an IPS profile CTID does not know); CVE-2021-44228's secondary
    // impact T1496 does not apply here; a Nessus plugin gets a technique of its own.
    std::fs::write(
        &m,
        "applies_to,id,technique_id,relation,strength\ncontrol,ctl-ngfw-dc,T1190,protect,significant\ncve,CVE-2021-44228,T1496,none,\nvuln,57608,T1557,exploitation_technique,\n",
    )
    .unwrap();
    assert_eq!(controls::import_mappings(&s, &m).unwrap(), 3);
    assert_eq!(
        strings(&s, "SELECT category || ' ' || strength || ' ' || source FROM control_techniques WHERE control_id = 'ctl-ngfw-dc' AND technique_id = 'T1190'"),
        vec![format!("protect significant user: {} line 2", m.display())]
    );
    assert_eq!(count(&s, "SELECT count(*) FROM exposure_techniques e JOIN findings f USING (finding_id) WHERE list_contains(f.cves, 'CVE-2021-44228') AND e.technique_id = 'T1496'"), 0);
    assert!(count(&s, "SELECT count(*) FROM exposure_techniques WHERE technique_id = 'T1557' AND source LIKE 'user: %line 4'") > 0);
    // With the NGFW protecting T1190 on the data centre, internal Log4Shell findings are mitigated too.
    assert!(count(&s, "SELECT count(*) FROM findings WHERE status = 'mitigated' AND list_contains(mitigated_by, 'ctl-ngfw-dc')") > 0);
    // Bad rows are refused with their line, and the mappings loaded before stay.
    std::fs::write(&m, "applies_to,id,technique_id,relation,strength\ncontrol,ctl-ngfw-dc,T190,protect,significant\n").unwrap();
    let e = controls::import_mappings(&s, &m).unwrap_err().to_string();
    assert!(e.contains("line 2: `T190` is not an ATT&CK technique id"), "{e}");
    std::fs::write(&m, "applies_to,id,technique_id,relation,strength\ncve,CVE-2021-44228,T1190,protect,\n").unwrap();
    let e = controls::import_mappings(&s, &m).unwrap_err().to_string();
    assert!(e.contains("line 2: relation `protect` must be one of exploitation_technique"), "{e}");
    assert_eq!(count(&s, "SELECT count(*) FROM user_mappings"), 3);
}
