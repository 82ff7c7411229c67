//! The sample estate: deterministic, in sync with `sample-data/`, and rich enough for every stage.

use crate::common::*;
use std::path::Path;

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    ctem::cli::expand(&[dir.to_path_buf()]).unwrap()
}

#[test]
fn committed_sample_data_matches_the_generator() {
    let d = tmpdir();
    ctem::generator::sample::write(d.path()).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data");
    let mine: Vec<_> = files_under(d.path()).iter().map(|p| p.strip_prefix(d.path()).unwrap().to_path_buf()).collect();
    let theirs: Vec<_> = files_under(&repo).iter().map(|p| p.strip_prefix(&repo).unwrap().to_path_buf()).filter(|p| !p.starts_with("README.md")).collect();
    assert_eq!(mine, theirs, "regenerate with: cargo run --release -- generate sample-data");
    for rel in mine {
        let a = std::fs::read(d.path().join(&rel)).unwrap();
        let b = std::fs::read(repo.join(&rel)).unwrap();
        assert!(a == b, "{} differs from the generator's output", rel.display());
    }
}

#[test]
fn demo_loads_every_stage() {
    let d = tmpdir();
    let db = sample_db(d.path());
    let s = ctem::store::Store::open(&db, true).unwrap();
    let assets = count(&s, "SELECT count(*) FROM assets");
    assert!((1400..=1600).contains(&assets), "about 1,500 assets, got {assets}");
    assert_eq!(count(&s, "SELECT count(DISTINCT business_unit) FROM assets WHERE business_unit IS NOT NULL"), 3);
    assert_eq!(strings(&s, "SELECT DISTINCT environment FROM assets WHERE environment IS NOT NULL ORDER BY 1"), vec!["dev", "prod", "staging"]);
    // Scanner assets merged into CMDB assets, not duplicated.
    assert_eq!(count(&s, "SELECT count(*) FROM assets WHERE NOT in_cmdb"), 0, "every scanned asset matches a CMDB record");
    // Five kinds of tool.
    let tools = strings(&s, "SELECT DISTINCT tool FROM imports ORDER BY 1");
    for t in ["gitleaks", "nessus", "prowler", "qualys", "semgrep oss", "trivy"] {
        assert!(tools.iter().any(|x| x == t), "{t} in {tools:?}");
    }
    for cat in ["vulnerability", "misconfiguration", "secret", "code"] {
        assert!(count(&s, &format!("SELECT count(*) FROM findings WHERE category = '{cat}'")) > 0, "{cat}");
    }
    // The lifecycle shows fixed and reopened findings, and some findings come from two tools.
    assert!(count(&s, "SELECT count(*) FROM findings WHERE status = 'fixed'") > 100);
    assert!(count(&s, "SELECT count(*) FROM findings WHERE status = 'reopened' AND times_reopened >= 1") > 10);
    assert!(count(&s, "SELECT count(*) FROM findings WHERE list_contains(sources, 'nessus') AND list_contains(sources, 'qualys')") > 100);
    assert_eq!(count(&s, "SELECT count(*) FROM quarantine"), 0);
    // The intel snapshot is loaded and scores the estate offline.
    assert_eq!(strings(&s, "SELECT feed FROM intel_feeds ORDER BY 1"), vec!["attack", "ctid:aws", "ctid:kev", "ctid:nist_800_53", "epss", "kev"]);
    // With ATT&CK and the CTID mappings, the controls' coverage is known: some exposures are mitigated.
    assert!(count(&s, "SELECT count(*) FROM findings WHERE status = 'mitigated'") > 10);
    assert!(count(&s, "SELECT count(*) FROM findings WHERE status IN ('open', 'reopened') AND kev") > 100);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE status IN ('open', 'reopened') AND priority IS NULL"), 0);
}
