//! Every supported format on real files from the corpus: what a user sees after `ctem import`.

use crate::common::*;
use ctem::ingest::{generic_csv::Mapping, Format, ParseOptions};

#[test]
fn nessus_v2_hosts_and_items() {
    let s = mem();
    let r = import_ok(&s, "tenable/nessus_v_unknown.xml");
    assert_eq!(r.format, Some(Format::Nessus));
    assert_eq!(r.records, 296);
    assert_eq!(r.assets, 7);
    assert_eq!(count(&s, "SELECT count(*) FROM assets WHERE kind = 'host'"), 7);
    assert_eq!(count(&s, "SELECT count(*) FROM detections"), 296);
    // The host with the RDP finding is known by name, IP and OS.
    let host = strings(&s, "SELECT asset_name FROM findings WHERE vuln_id = '58453' LIMIT 1");
    assert!(!host.is_empty());
    assert_eq!(count(&s, "SELECT count(*) FROM assets WHERE list_contains(ips, '10.31.112.29') AND os LIKE 'Microsoft Windows Server 2008 R2%'"), 1);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE severity = 'medium'"), count(&s, "SELECT count(DISTINCT finding_id) FROM findings f WHERE severity='medium'"));
}

#[test]
fn nessus_was_is_a_web_app() {
    let s = mem();
    let r = import_ok(&s, "tenable/nessus_was_many_vuln.xml");
    assert_eq!((r.records, r.assets), (5, 1));
    assert_eq!(count(&s, "SELECT count(*) FROM assets WHERE kind = 'web_app' AND name = 'http://google.com/'"), 1);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE category = 'web'"), 5);
}

#[test]
fn qualys_glossary_resolves_titles_cves_and_kev_cves() {
    let s = mem();
    let r = import_ok(&s, "qualys/Qualys_Sample_Report.xml");
    assert_eq!(r.format, Some(Format::Qualys));
    assert_eq!(r.assets, 7);
    assert_eq!(r.records + r.skipped, 301, "{}", r.line());
    assert!(count(&s, "SELECT count(*) FROM findings WHERE list_contains(cves, 'CVE-2014-0160')") >= 1);
    assert!(count(&s, "SELECT count(*) FROM findings WHERE list_contains(cves, 'CVE-2017-0144')") >= 1);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE title LIKE 'QID %'"), 0, "every QID resolved from the glossary");
    assert_eq!(count(&s, "SELECT count(*) FROM assets WHERE fqdn = 'demo13.s02.sjc01.qualys.com'"), 1);
}

#[test]
fn openvas_results() {
    let s = mem();
    let r = import_ok(&s, "openvas/many_vuln.xml");
    assert_eq!(r.format, Some(Format::OpenVas));
    assert_eq!(r.records, 44);
    assert_eq!(r.assets, 1);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE list_contains(cves, 'CVE-1999-0618') AND port = 512"), 1);
}

#[test]
fn trivy_every_layout() {
    let s = mem();
    let r = import_ok(&s, "trivy/scheme_2_many_vulns.json");
    assert_eq!((r.records, r.assets), (5, 1));
    assert_eq!(count(&s, "SELECT count(*) FROM assets WHERE kind = 'container_image' AND name = 'teamdojo:latest'"), 1);
    let r = import_ok(&s, "trivy/legacy_many_vulns.json");
    assert_eq!(r.records, 93);
    let r = import_ok(&s, "trivy/misconfigurations_and_secrets.json");
    assert_eq!(r.records, 5);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE category = 'secret'"), 2);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE category = 'misconfiguration' AND vuln_id = 'DS002'"), 1);
    // The secret itself is never stored.
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE description LIKE '%GITHUB_PAT%' OR location LIKE '%GITHUB_PAT%'"), 0);
    let r = import_ok(&s, "trivy/issue_10991.json");
    assert_eq!(r.records, 37);
    assert_eq!(r.assets, 13);
    assert_eq!(count(&s, "SELECT count(*) FROM assets WHERE kind = 'k8s_workload'"), 13);
    let r = import_ok(&s, "trivy/all_statuses.json");
    assert_eq!(r.records, 8);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE status = 'false_positive' AND last_import_id = (SELECT max(import_id) FROM imports)"), 1, "not_affected is not open");
}

#[test]
fn trivy_cvss_is_nvds_else_the_first_source_with_v3_in_the_reports_order() {
    let d = tmpdir();
    let vuln = |id: &str, cvss: &str| {
        format!(r#"{{"VulnerabilityID":"{id}","PkgName":"p-{id}","InstalledVersion":"1","Severity":"HIGH","CVSS":{cvss}}}"#)
    };
    let vulns = [
        vuln("CVE-2024-0001", r#"{"ghsa":{"V3Score":5.5,"V3Vector":"CVSS:3.1/G"},"nvd":{"V3Score":9.8,"V3Vector":"CVSS:3.1/N"}}"#),
        vuln("CVE-2024-0002", r#"{"redhat":{"V2Score":4.3,"V2Vector":"AV:N/R"},"ghsa":{"V3Score":"6.1","V3Vector":"CVSS:3.1/G"},"bitnami":{"V3Score":7.0}}"#),
        vuln("CVE-2024-0003", r#"{"redhat":{"V2Score":4.3,"V2Vector":"AV:N/R"},"alma":{"V2Score":5.0}}"#),
        vuln("CVE-2024-0004", "null"),
        vuln("CVE-2024-0005", r#"{"nvd":{"V3Score":"n/a"}}"#),
    ];
    let doc = format!(r#"{{"SchemaVersion":2,"ArtifactName":"img:1","Results":[{{"Target":"img:1 (debian 12)","Class":"os-pkgs","Vulnerabilities":[{}]}}]}}"#, vulns.join(","));
    let f = write(d.path(), "cvss.json", &doc);
    let s = mem();
    let r = import(&s, &f);
    assert_eq!(r.records, 5, "{}", r.line());
    let got = strings(&s, "SELECT concat_ws(' ', vuln_id, coalesce(cvss_score::VARCHAR, '-'), coalesce(cvss_vector, '-')) FROM findings ORDER BY vuln_id");
    assert_eq!(
        got,
        [
            "CVE-2024-0001 9.8 CVSS:3.1/N",
            "CVE-2024-0002 6.1 CVSS:3.1/G",
            "CVE-2024-0003 4.3 AV:N/R",
            "CVE-2024-0004 - -",
            "CVE-2024-0005 - -",
        ]
    );
}

#[test]
fn grype_matches_and_same_package_in_two_paths_is_one_finding() {
    let s = mem();
    let r = import_ok(&s, "anchore_grype/check_all_fields.json");
    // The last two matches are the same advisory on the same package (two matchers): one finding.
    assert_eq!((r.records, r.new), (6, 5));
    assert_eq!(count(&s, "SELECT count(*) FROM assets WHERE kind = 'container_image' AND name = 'vulnerable-image:latest'"), 1);
    let r = import_ok(&s, "anchore_grype/same_cve_different_paths.json");
    assert_eq!(r.records, 2);
    assert_eq!(r.new, 1, "one package version, one fix: one finding");
    assert_eq!(count(&s, "SELECT count(*) FROM detections d JOIN findings f USING (finding_id) WHERE f.vuln_id = 'CVE-2021-33574' AND d.import_id = (SELECT max(import_id) FROM imports)"), 2);
    let r = import_ok(&s, "anchore_grype/many_vulns.json");
    assert_eq!(r.records, 1509);
}

#[test]
fn grype_texts_with_escapes_are_unescaped() {
    // A match's texts are borrowed from the record when they need no unescaping: these all need it.
    let s = mem();
    let d = tmpdir();
    let f = write(
        d.path(),
        "g.json",
        r#"{"matches":[{"vulnerability":{"id":"CVE-2024-1\u0032","severity":"Hi\u0067h","description":"line one\nline \"two\"",
            "cvss":[{"version":"3.1","vector":"CVSS:3.1\/AV:N","metrics":{"baseScore":7.5}}],"fix":{"versions":["1.0\u002e1"],"state":"fixed"}},
          "artifact":{"name":"lib\\x","version":"1.0","type":"npm","locations":[{"path":"\/app\/package.json"}]}}]}"#,
    );
    let r = import(&s, &f);
    assert_eq!(r.new, 1, "{}", r.line());
    assert_eq!(
        strings(&s, "SELECT concat_ws(' | ', vuln_id, severity, title, description, cvss_vector, package, fixed_version, solution, location) FROM findings"),
        ["CVE-2024-12 | high | CVE-2024-12 in lib\\x 1.0 | line one\nline \"two\" | CVSS:3.1/AV:N | lib\\x | 1.0.1 | Upgrade lib\\x to 1.0.1 | /app/package.json"]
    );
}

#[test]
fn sarif_codeql_semgrep_and_spec_example() {
    let s = mem();
    let opts = ParseOptions { asset_hint: Some("good-app".into()), mapping: None, progress: None };
    let r = import_as(&s, &fixture("sarif/codeQL-output.sarif"), Format::Sarif, &opts);
    assert_eq!(r.records, 72, "{}", r.line());
    assert_eq!(r.tool, "codeql");
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE category = 'code' AND location LIKE 'good/db_init.py:%'"), count(&s, "SELECT count(*) FROM findings WHERE location LIKE 'good/db_init.py:%'"));
    let r = import_ok(&s, "sarif/semgrepowasp-benchmark-sample.sarif");
    assert_eq!(r.records, 1768);
    import_ok(&s, "sarif/appendix_k.sarif");
}

#[test]
fn cyclonedx_json_xml_and_vex() {
    let s = mem();
    let r = import_ok(&s, "cyclonedx/valid-vulnerability-1.4.json");
    assert_eq!(r.records, 1);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE status = 'false_positive' AND list_contains(cves, 'CVE-2018-7489')"), 1, "VEX not_affected is not open");
    let r = import_ok(&s, "cyclonedx/issue_9277.json");
    assert_eq!(r.records, 14);
    let r = import_ok(&s, "cyclonedx/grype.xml");
    assert_eq!(r.format, Some(Format::CycloneDxXml));
    assert_eq!(r.records, 327);
    // Package names come from the component itself, never from its nested license names.
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE package = 'libc6' AND installed_version = '2.28-10'"), 19);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE package IN ('BSD', 'MIT', 'public-domain')"), 0);
}

#[test]
fn osv_groups_aliases_into_one_finding() {
    let s = mem();
    let opts = ParseOptions { asset_hint: Some("cardmarket-api".into()), mapping: None, progress: None };
    let r = import_as(&s, &fixture("osv_scanner/many_findings.json"), Format::Osv, &opts);
    assert!(r.records < 66 && r.records > 0, "{}", r.line());
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE list_contains(cves, 'CVE-2022-31090') AND package = 'guzzlehttp/guzzle' AND fixed_version = '6.5.8'"), 1);
}

#[test]
fn prowler_ocsf_fail_results_only() {
    let s = mem();
    let r = import_ok(&s, "prowler/example_output_aws.ocsf.json");
    assert_eq!(r.records, 2);
    let r = import_ok(&s, "aws_prowler_v3plus/many_vuln_after_4_5_0.ocsf.json");
    assert_eq!(r.records, 3);
    assert_eq!(count(&s, "SELECT count(*) FROM findings WHERE category = 'misconfiguration'"), 5);
}

#[test]
fn tenable_csv_exports() {
    let s = mem();
    let r = import_ok(&s, "tenable/nessus_many_vuln.csv");
    assert_eq!(r.format, Some(Format::TenableCsv));
    assert_eq!(r.records, 4, "blank trailing rows are not records: {}", r.line());
    let r = import_ok(&s, "tenable/tenable_many_vuln.csv");
    // Three (host, IP) pairs, but two of them share the FQDN ip-192-168-1-110...: one machine.
    assert_eq!(r.assets, 2);
    assert_eq!(count(&s, "SELECT count(*) FROM assets WHERE fqdn = 'ip-192-168-1-110.us-west-2.compute.internal' AND len(ips) = 2"), 1);
    let r = import_ok(&s, "tenable/nessus_new.csv");
    // 99 distinct hosts (name, FQDN and IP all differ); the export's anonymised asset.id repeats
    // across some of them, so it is not trusted as an identity.
    assert_eq!(r.assets, 99);
    assert!(count(&s, "SELECT count(*) FROM findings WHERE list_contains(cves, 'CVE-2008-5161')") >= 1);
    assert_eq!(count(&s, "SELECT count(*) FROM findings f JOIN imports i ON f.first_import_id = i.import_id WHERE i.file LIKE '%nessus_new.csv' AND len(f.cves) > 0"), 50);
}

#[test]
fn generic_csv_with_mapping() {
    let s = mem();
    let m = Mapping::parse(
        r#"tool = "wiz"
asset_kind = "cloud_resource"
category = "misconfiguration"
[columns]
asset = "Resource Name"
asset_id = "Resource external ID"
vuln_id = "Title"
title = "Title"
severity = "Severity"
status = "Status"
description = "Description"
solution = "Remediation Recommendation"
"#,
    )
    .unwrap();
    let opts = ParseOptions { asset_hint: None, mapping: Some(m), progress: None };
    let r = import_as(&s, &fixture("wiz/multiple_findings.csv"), Format::GenericCsv, &opts);
    assert_eq!(r.tool, "wiz", "{}", r.line());
    assert_eq!(r.records, 97, "98 rows, one RESOLVED: {}", r.line());
    assert!(count(&s, "SELECT count(*) FROM findings WHERE list_contains(sources, 'wiz')") > 0);
}

#[test]
fn mapping_errors_name_the_line() {
    let e = Mapping::parse("tool = \"x\"\n[columns]\nasset = \"A\"\nvuln_id = \"B\"\nnonsense = \"C\"\n").unwrap_err();
    assert!(e.contains("line 5"), "{e}");
}

/// Grype and Trivy findings are written into findings reused from earlier batches: over several
/// batches in which each optional field is set on some findings and not others, every finding must
/// carry exactly its own fields.
#[test]
fn findings_reused_across_batches_carry_only_their_own_fields() {
    let n = 20_000;
    let has = |i: usize| (i % 2 == 0, i % 3 == 0, i % 5 == 0, i % 7 == 0); // description, fix, CVSS, location
    let d = tmpdir();
    let mut grype = String::from("{\"matches\":[");
    let mut trivy = String::from("[");
    for i in 0..n {
        let (desc, fix, cvss, loc) = has(i);
        let mut v = serde_json::json!({"id": format!("CVE-2099-{}", 100000 + i), "severity": "High"});
        let mut t = serde_json::json!({"VulnerabilityID": format!("CVE-2099-{}", 100000 + i), "PkgName": format!("pkg{}", i % 50),
            "InstalledVersion": format!("1.{i}"), "Severity": "HIGH"});
        if desc {
            v["description"] = format!("advisory {i}").into();
            t["Description"] = format!("advisory {i}").into();
        }
        if fix {
            v["fix"] = serde_json::json!({"versions": [format!("2.{i}")], "state": "fixed"});
            t["FixedVersion"] = format!("2.{i}").into();
        }
        if cvss {
            v["cvss"] = serde_json::json!([{"version": "3.1", "vector": format!("CVSS:3.1/AV:N/{i}"), "metrics": {"baseScore": 7.5}}]);
            t["CVSS"] = serde_json::json!({"nvd": {"V3Vector": format!("CVSS:3.1/AV:N/{i}"), "V3Score": 7.5}});
        }
        if loc {
            t["PkgPath"] = format!("app/{i}/package.json").into();
        }
        let locations = if loc { serde_json::json!([{"path": format!("/lib/{i}.jar")}]) } else { serde_json::json!([]) };
        let m = serde_json::json!({"vulnerability": v, "relatedVulnerabilities": [],
            "artifact": {"name": format!("pkg{}", i % 50), "version": format!("1.{i}"), "type": "java-archive", "locations": locations}});
        grype.push_str(&format!("{}{m}", if i > 0 { "," } else { "" }));
        trivy.push_str(&format!("{}{t}", if i > 0 { "," } else { "" }));
    }
    grype.push_str("],\"source\":{\"type\":\"image\",\"target\":{\"userInput\":\"registry.test/reuse:1\"}}}");
    trivy.push(']');
    let trivy = format!("{{\"SchemaVersion\":2,\"ArtifactName\":\"app\",\"ArtifactType\":\"filesystem\",\"Results\":[{{\"Target\":\"package-lock.json\",\"Class\":\"lang-pkgs\",\"Type\":\"npm\",\"Vulnerabilities\":{trivy}}}]}}");
    for (name, doc, tool) in [("reuse.grype.json", grype, "grype"), ("reuse.trivy.json", trivy, "trivy")] {
        let s = mem();
        let r = import(&s, &write(d.path(), name, &doc));
        assert_eq!(r.new, n as u64, "{}", r.line());
        // Every finding against what its number says it has.
        let wrong = count(
            &s,
            "SELECT count(*) FROM (SELECT f.*, CAST(split_part(vuln_id, '-', 3) AS INTEGER) - 100000 AS i FROM findings f) f
             WHERE (description IS NOT NULL) <> (i % 2 = 0) OR coalesce(description <> 'advisory ' || i, false)
                OR (fixed_version IS NOT NULL) <> (i % 3 = 0) OR coalesce(fixed_version <> '2.' || i, false)
                OR (solution IS NOT NULL) <> (i % 3 = 0) OR coalesce(solution <> 'Upgrade ' || package || ' to 2.' || i, false)
                OR (cvss_vector IS NOT NULL) <> (i % 5 = 0) OR coalesce(cvss_vector <> 'CVSS:3.1/AV:N/' || i, false)
                OR package <> 'pkg' || (i % 50) OR installed_version <> '1.' || i OR cves <> [vuln_id] OR aliases <> []",
        );
        assert_eq!(wrong, 0, "{tool}");
        let loc = if tool == "grype" { "'/lib/' || i || '.jar'" } else { "'app/' || i || '/package.json'" };
        let alt = if tool == "grype" { "NULL" } else { "'package-lock.json'" };
        let wrong_loc = count(
            &s,
            &format!(
                "SELECT count(*) FROM (SELECT f.*, CAST(split_part(vuln_id, '-', 3) AS INTEGER) - 100000 AS i FROM findings f) f
                 WHERE location IS DISTINCT FROM (CASE WHEN i % 7 = 0 THEN {loc} ELSE {alt} END)"
            ),
        );
        assert_eq!(wrong_loc, 0, "{tool}");
        assert_eq!(count(&s, "SELECT count(DISTINCT raw_id) FROM detections"), n as i64, "{tool}");
    }
}

/// Nessus items are written into reused findings too, and carry what belongs to one item (its synopsis,
/// its two CVSS vectors) beside the finding: every item must end with exactly its own fields.
#[test]
fn nessus_findings_reused_across_batches_carry_only_their_own_fields() {
    let n = 20_000;
    let d = tmpdir();
    let mut doc = String::from(
        r#"<?xml version="1.0" ?><NessusClientData_v2><Report name="reuse"><ReportHost name="10.9.9.9"><HostProperties><tag name="host-ip">10.9.9.9</tag></HostProperties>"#,
    );
    for i in 0..n {
        let proto = if i % 13 == 0 { "" } else if i % 2 == 0 { "tcp" } else { "udp" };
        doc.push_str(&format!(
            r#"<ReportItem port="443" svc_name="www" protocol="{proto}" severity="2" pluginID="{}" pluginName="check {i}" pluginFamily="General">"#,
            100000 + i
        ));
        if i % 2 == 0 {
            doc.push_str(&format!("<description>advisory {i}</description>"));
        } else if i % 11 == 0 {
            doc.push_str(&format!("<synopsis> synopsis {i} </synopsis>"));
        }
        match i % 3 {
            0 => doc.push_str(&format!("<solution>fix {i}</solution>")),
            1 => doc.push_str("<solution>n/a</solution>"),
            _ => {}
        }
        if i % 5 == 0 {
            doc.push_str(&format!("<cvss3_base_score>7.5</cvss3_base_score><cvss3_vector>CVSS:3.0/AV:N/{i}</cvss3_vector>"));
        }
        if i % 7 == 0 {
            doc.push_str(&format!("<cvss_base_score>5.0</cvss_base_score><cvss_vector>AV:N/{i}</cvss_vector>"));
        }
        if i % 4 == 0 {
            doc.push_str(&format!("<cve>CVE-2099-{i}</cve>"));
        }
        doc.push_str("</ReportItem>");
    }
    doc.push_str("</ReportHost></Report></NessusClientData_v2>");
    let s = mem();
    let r = import(&s, &write(d.path(), "reuse.nessus", &doc));
    assert_eq!(r.new, n as u64, "{}", r.line());
    let wrong = count(
        &s,
        "SELECT count(*) FROM (SELECT f.*, CAST(vuln_id AS INTEGER) - 100000 AS i FROM findings f) f
         WHERE description IS DISTINCT FROM CASE WHEN i % 2 = 0 THEN 'advisory ' || i WHEN i % 11 = 0 THEN 'synopsis ' || i END
            OR solution IS DISTINCT FROM CASE WHEN i % 3 = 0 THEN 'fix ' || i END
            OR cvss_vector IS DISTINCT FROM CASE WHEN i % 5 = 0 THEN 'CVSS:3.0/AV:N/' || i WHEN i % 7 = 0 THEN 'AV:N/' || i END
            OR cvss_score IS DISTINCT FROM CASE WHEN i % 5 = 0 THEN 7.5 WHEN i % 7 = 0 THEN 5.0 END
            OR protocol IS DISTINCT FROM CASE WHEN i % 13 = 0 THEN NULL WHEN i % 2 = 0 THEN 'tcp' ELSE 'udp' END
            OR cves <> CASE WHEN i % 4 = 0 THEN ['CVE-2099-' || i] ELSE [] END
            OR title <> 'check ' || i OR port <> 443",
    );
    assert_eq!(wrong, 0);
    assert_eq!(
        count(&s, "SELECT count(*) FROM detections WHERE raw_id = CAST(CAST(vuln_id AS INTEGER) AS VARCHAR) || '/443/' || coalesce(protocol, '')"),
        n as i64
    );
}
