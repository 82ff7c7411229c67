//! Mobilisation: routing, plans, SLAs, exceptions, the board's moves, fix plans and the audit log.

use crate::common::*;
use ctem::routing;
use ctem::store::exceptions::{self, Request, Target};
use ctem::store::work::{self, move_items, plan, Change, Selection};
use ctem::store::Store;
use std::path::Path;
use std::process::Command;

fn sample() -> (tempfile::TempDir, Store) {
    let d = tmpdir();
    let db = d.path().join("s.duckdb");
    ctem::generator::demo::load(&db, &Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data")).unwrap();
    let mut s = Store::open(&db, false).unwrap();
    s.actor = "tester".into();
    (d, s)
}

/// Everything a plan may change, as text.
fn digest(s: &Store) -> Vec<String> {
    let mut v = strings(s, "SELECT concat_ws('|', work_item_id, status, priority, team, due_date, updated_at, title) FROM work_items ORDER BY work_item_id");
    v.extend(strings(s, "SELECT concat_ws('|', work_item_id, finding_id) FROM work_item_findings ORDER BY ALL"));
    v.push(count(s, "SELECT count(*) FROM audit_log").to_string());
    v
}

const RULES: &str = r#"
[routing]
min_priority = "P2"

[[routing.rule]]
name = "containers"
category = "vulnerability"
tool = "trivy"
team = "platform-containers"
jira_project = "CONT"

[[routing.rule]]
name = "payments"
business_unit = "payments"
team = "@owner"
servicenow_group = "Payments Ops"

[routing.default]
team = "secops"
jira_project = "SEC"
"#;

#[test]
fn routing_gives_every_open_p1_p2_finding_exactly_one_owned_work_item_and_plans_are_idempotent() {
    let (_d, s) = sample();
    // The sample estate's own plan (default routing) first: every fingerprint has one open work item.
    assert_eq!(count(&s, &format!("SELECT count(*) FROM (SELECT fingerprint FROM work_items WHERE {} GROUP BY 1 HAVING count(*) > 1)", work::OPEN_WORK)), 0);
    assert!(count(&s, "SELECT count(*) FROM audit_log WHERE action = 'findings_added'") > 0, "later scans grow existing work items");
    s.conn.execute_batch("DELETE FROM work_item_findings; DELETE FROM work_items; DELETE FROM audit_log;").unwrap();

    let (r, _) = routing::parse(RULES, "config.toml").unwrap();
    let dry = plan(&s, &r, "config.toml", &Selection::Open { min_priority: r.min_priority.clone() }, None, false).unwrap();
    assert_eq!(count(&s, "SELECT count(*) FROM work_items"), 0, "a dry run changes nothing");
    let p = plan(&s, &r, "config.toml", &Selection::Open { min_priority: r.min_priority.clone() }, None, true).unwrap();
    assert_eq!((p.new_items(), p.grown_items()), (dry.new_items(), 0));
    let p12 = count(&s, "SELECT count(*) FROM findings WHERE status IN ('open', 'reopened', 'mitigated') AND priority IN ('P1', 'P2')");
    assert!(p12 > 500, "{p12}");
    assert_eq!(count(&s, "SELECT count(DISTINCT finding_id) FROM work_item_findings"), p12);
    assert_eq!(count(&s, "SELECT count(*) FROM (SELECT finding_id FROM work_item_findings GROUP BY 1 HAVING count(*) > 1)"), 0);
    assert_eq!(count(&s, "SELECT count(*) FROM work_items WHERE team IS NULL OR team = '' OR team = '(no owner)'"), 0);
    // First match wins: trivy vulnerabilities to the container team, payments to the asset owner, the rest to secops.
    let by_rule = strings(&s, "SELECT rule || ' ' || team || ' ' || coalesce(jira_project, '-') || ' ' || coalesce(snow_group, '-') FROM work_items GROUP BY ALL ORDER BY 1");
    assert!(by_rule.contains(&"containers platform-containers CONT -".to_string()), "{by_rule:?}");
    assert!(by_rule.contains(&"default secops SEC -".to_string()), "{by_rule:?}");
    assert!(by_rule.iter().any(|r| r.starts_with("payments payments-") && r.ends_with("- Payments Ops")), "{by_rule:?}");
    assert_eq!(
        count(&s, "SELECT count(*) FROM work_item_findings wf JOIN work_items w USING (work_item_id) JOIN findings f USING (finding_id)
                   WHERE w.rule = 'containers' AND NOT (list_contains(f.sources, 'trivy') AND f.category = 'vulnerability')"),
        0
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM work_item_findings wf JOIN work_items w USING (work_item_id) JOIN findings f USING (finding_id)
                   JOIN assets a ON a.asset_id = f.asset_id WHERE w.rule = 'payments' AND (a.business_unit <> 'Payments' OR a.owner <> w.team)"),
        0
    );
    // Every new work item is in the audit log; a second apply changes nothing at all.
    assert_eq!(count(&s, "SELECT count(*) FROM audit_log WHERE action = 'created'"), p.new_items() as i64);
    let before = digest(&s);
    let again = plan(&s, &r, "config.toml", &Selection::Open { min_priority: "P2".into() }, None, true).unwrap();
    assert_eq!((again.new_items(), again.grown_items(), again.already), (0, 0, p12));
    assert_eq!(digest(&s), before);
    assert!(again.items.iter().all(|i| i.change != Change::New));
}

#[test]
fn sla_due_dates_follow_the_policy_and_the_kev_cap() {
    let (_d, s) = sample();
    type Row = (i64, String, chrono::NaiveDate, Option<chrono::NaiveDate>, Option<chrono::NaiveDate>, Option<chrono::NaiveDate>, chrono::NaiveDate, String);
    let rows = |s: &Store| -> Vec<Row> {
        let mut st = s
            .conn
            .prepare(
                "SELECT f.finding_id, f.priority, CAST(f.first_seen AS DATE), CAST(f.reopened_at AS DATE), f.kev_added, f.kev_due, s.due_date, s.due_by
                 FROM finding_sla s JOIN findings f USING (finding_id)",
            )
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))).unwrap().map(|r| r.unwrap()).collect()
    };
    let check = |s: &Store, days: [i64; 4], restart: bool| {
        let rows = rows(s);
        assert!(rows.len() > 8000, "{}", rows.len());
        let mut capped = 0;
        for (id, prio, first, reopened, added, due, got, by) in rows {
            let start = if restart { reopened.unwrap_or(first) } else { first };
            let n = prio[1..].parse::<usize>().unwrap() - 1;
            let policy = start + chrono::Duration::days(days[n]);
            // A KEV deadline already past: the entry's own window from the first sighting, or two weeks
            // when the entry has none (its due date is not after the day it was added).
            let window = |d: chrono::NaiveDate| match added {
                Some(a) if d > a => (d - a).num_days(),
                _ => 14,
            };
            let cap = due.map(|d| if d >= start { d } else { start + chrono::Duration::days(window(d)) });
            let want = cap.map(|c| c.min(policy)).unwrap_or(policy);
            assert_eq!(got, want, "finding {id}: {prio} first seen {first}, KEV {added:?}..{due:?}");
            if cap.is_some_and(|c| c < policy) {
                capped += 1;
                assert_eq!(by, "kev");
            }
        }
        capped
    };
    let capped = check(&s, [7, 30, 90, 180], true);
    assert!(capped > 0, "some KEV due dates come before the policy's");
    // The sample's KEV snapshot has entries due before they were added (emergency directive deadlines):
    // their findings get two weeks, not a deadline on the day they were found.
    assert!(
        count(&s, "SELECT count(*) FROM finding_sla s JOIN findings f USING (finding_id)
                   WHERE f.kev_due <= f.kev_added AND s.kev_cap = CAST(s.clock_start + INTERVAL 14 DAY AS DATE)") > 0
    );
    // Another policy, with reopened findings keeping their first clock.
    let sla = routing::Sla { days: [3, 14, 60, 120], reopened: "keep".into(), max_acceptance_days: 365 };
    assert!(sla.store(&s.conn).unwrap());
    assert!(!sla.store(&s.conn).unwrap(), "storing the same policy again changes nothing");
    check(&s, [3, 14, 60, 120], false);
    // Work items are due when their most urgent finding is.
    work::refresh_store(&s).unwrap();
    assert_eq!(
        count(&s, "SELECT count(*) FROM work_items w JOIN (SELECT wf.work_item_id, min(s.due_date) AS due FROM work_item_findings wf JOIN finding_sla s USING (finding_id) GROUP BY 1) x USING (work_item_id)
                   WHERE w.status NOT IN ('verified', 'risk_accepted', 'false_positive') AND w.due_date <> x.due"),
        0
    );
    assert!(count(&s, "SELECT count(*) FROM audit_log WHERE action = 'due_date'") > 0, "due-date changes are audited");
    // MTTR: the fixed findings of the sample, per priority and team.
    assert_eq!(count(&s, "SELECT count(*) FROM remediation_times"), count(&s, "SELECT count(*) FROM findings WHERE status = 'fixed'"));
}

fn open_ids(s: &Store, n: usize) -> Vec<i64> {
    strings(s, &format!("SELECT finding_id::VARCHAR FROM findings WHERE status = 'open' AND priority = 'P3' ORDER BY finding_id LIMIT {n}")).iter().map(|x| x.parse().unwrap()).collect()
}

#[test]
fn exceptions_take_two_people_and_expire_back_into_the_queue() {
    let (_d, s) = sample();
    let ids = open_ids(&s, 3);
    let now = chrono::Utc::now().naive_utc();
    let req = |approver: Option<&str>| Request {
        kind: "risk_accepted".into(),
        justification: "internal test hosts, isolated VLAN; WAF in front".into(),
        requester: "ana".into(),
        approver: approver.map(String::from),
        expires: Some(now + chrono::Duration::days(30)),
        target: Target::Findings(ids.clone()),
    };
    let queue = |s: &Store| count(s, "SELECT count(*) FROM findings WHERE status IN ('open', 'reopened', 'mitigated')");
    let q0 = queue(&s);
    assert!(exceptions::add(&s, &req(None), 365).unwrap_err().to_string().contains("approver is required"));
    assert!(exceptions::add(&s, &req(Some("Ana")), 365).unwrap_err().to_string().contains("must differ"));
    assert_eq!(queue(&s), q0, "refused exceptions change nothing");
    assert_eq!(count(&s, "SELECT count(*) FROM exceptions"), 0);
    let g = exceptions::add(&s, &req(Some("ben")), 365).unwrap();
    assert_eq!((g.findings, g.skipped), (3, 0));
    assert_eq!(queue(&s), q0 - 3);
    assert_eq!(strings(&s, &format!("SELECT DISTINCT status FROM findings WHERE finding_id IN ({})", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","))), vec!["accepted"]);
    assert_eq!(
        strings(&s, "SELECT concat_ws(' ', kind, status, findings, held, requester, approver, age_days, days_to_expiry) FROM exception_list"),
        vec!["risk_accepted active 3 3 ana ben 0 30"]
    );
    // Time passes: the exception expires and its findings come back as they were.
    s.conn.execute_batch("UPDATE exceptions SET expires_at = current_timestamp::TIMESTAMP - INTERVAL 1 HOUR").unwrap();
    let ended = exceptions::expire_due(&s).unwrap();
    assert_eq!(ended, vec![(g.exception_id, 3)]);
    ctem::risk::rescore_store(&s).unwrap();
    assert_eq!(queue(&s), q0);
    assert_eq!(strings(&s, "SELECT status FROM exceptions"), vec!["expired"]);
    assert_eq!(strings(&s, "SELECT action || ': ' || detail FROM audit_log WHERE entity = 'exception' AND action = 'expired'"), vec!["expired: expiry: 3 findings back in the queue"]);

    // A whole work item as a false positive: the card moves, cannot be moved back while the exception
    // holds it, and returns to triage when the exception is revoked.
    let wi = count(&s, "SELECT min(work_item_id) FROM work_board WHERE status = 'new' AND open_findings > 0");
    let g = exceptions::add(
        &s,
        &Request { kind: "false_positive".into(), justification: "backported fix: the distro patched it".into(), requester: "ana".into(), approver: Some("ben".into()), expires: None, target: Target::WorkItem(wi) },
        365,
    )
    .unwrap();
    assert_eq!(strings(&s, &format!("SELECT status FROM work_items WHERE work_item_id = {wi}")), vec!["false_positive"]);
    let m = move_items(&s, &[wi], "in_progress").unwrap();
    assert!(m.refused[0].1.contains(&format!("exception #{} holds it", g.exception_id)), "{m:?}");
    assert_eq!(exceptions::revoke(&s, g.exception_id, "vendor says otherwise").unwrap(), g.findings);
    assert_eq!(strings(&s, &format!("SELECT status FROM work_items WHERE work_item_id = {wi}")), vec!["triaged"]);
    assert!(exceptions::revoke(&s, g.exception_id, "").unwrap_err().to_string().contains("already revoked"));
}

#[test]
fn board_moves_are_checked_against_the_findings_and_audited() {
    let (_d, s) = sample();
    let wi = count(&s, "SELECT min(work_item_id) FROM work_board WHERE status = 'new' AND open_findings > 1");
    let m = move_items(&s, &[wi], "verified").unwrap();
    assert!(m.moved.is_empty());
    assert!(m.refused[0].1.contains("findings still open (last seen 2026-11-"), "{m:?}");
    assert!(move_items(&s, &[wi], "risk_accepted").unwrap().refused[0].1.contains("needs an exception"));
    assert!(move_items(&s, &[wi], "assigned").unwrap().refused[0].1.contains("no assignee"));
    assert!(move_items(&s, &[wi], "shipped").unwrap_err().to_string().contains("unknown status 'shipped'"));
    work::assign(&s, wi, "dana@example.com").unwrap();
    assert_eq!(move_items(&s, &[wi], "in_progress").unwrap().moved, vec![wi]);
    assert_eq!(move_items(&s, &[wi, 999_999], "fixed").unwrap().refused, vec![(999_999, "no such work item".to_string())]);
    let h: Vec<String> = work::history(&s.conn, "work_item", wi).unwrap().iter().filter(|e| e.actor == "tester").map(|e| e.what()).collect();
    assert_eq!(
        h,
        vec![
            "assignee: dana@example.com",
            "status: new -> assigned (follows the assignee)",
            "status: assigned -> in_progress",
            "status: in_progress -> fixed",
        ]
    );
    // A fixed card's open findings await a rescan.
    assert!(count(&s, "SELECT count(*) FROM finding_verification WHERE state = 'awaiting_rescan'") > 0);
}

fn nessus(items: &[&str], end: &str) -> String {
    let mut s = String::from("<?xml version=\"1.0\" ?>\n<NessusClientData_v2><Report name=\"t\">\n<ReportHost name=\"10.0.0.1\"><HostProperties><tag name=\"host-ip\">10.0.0.1</tag>");
    s.push_str(&format!("<tag name=\"HOST_END\">{end}</tag></HostProperties>\n"));
    for id in items {
        s.push_str(&format!(
            "<ReportItem port=\"443\" svc_name=\"www\" protocol=\"tcp\" severity=\"4\" pluginID=\"{id}\" pluginName=\"Check {id}\" pluginFamily=\"Misc.\"><solution>Apply vendor patch {id} from the advisory.</solution><description>d</description></ReportItem>\n"
        ));
    }
    s.push_str("</ReportHost>\n</Report></NessusClientData_v2>\n");
    s
}

#[test]
fn rescans_verify_work_items_and_regressions_reopen_them() {
    let s = mem();
    let d = tmpdir();
    import(&s, &write(d.path(), "w1.nessus", &nessus(&["1", "2"], "Mon Nov  2 10:00:00 2026")));
    let p = plan(&s, &Default::default(), "c", &Selection::Open { min_priority: "P4".into() }, None, true).unwrap();
    assert_eq!(p.new_items(), 2);
    let wi = count(&s, "SELECT w.work_item_id FROM work_items w JOIN work_item_findings USING (work_item_id) JOIN findings f USING (finding_id) WHERE f.vuln_id = '2'");
    assert!(strings(&s, &format!("SELECT title FROM work_items WHERE work_item_id = {wi}"))[0].contains("Apply vendor patch 2"));
    import(&s, &write(d.path(), "w2.nessus", &nessus(&["1"], "Mon Nov  9 10:00:00 2026")));
    assert_eq!(strings(&s, &format!("SELECT status FROM work_items WHERE work_item_id = {wi}")), vec!["verified"]);
    import(&s, &write(d.path(), "w3.nessus", &nessus(&["1", "2"], "Mon Nov 16 10:00:00 2026")));
    assert_eq!(strings(&s, &format!("SELECT status FROM work_items WHERE work_item_id = {wi}")), vec!["triaged"]);
    let h: Vec<String> = work::history(&s.conn, "work_item", wi).unwrap().iter().filter(|e| e.action == "status").map(|e| format!("{} {}", e.actor, e.what())).collect();
    assert_eq!(h, ["rescan status: new -> verified (rescans no longer see its 1 finding(s))", "rescan status: verified -> triaged (regression: 1 finding(s) seen again)"]);
    // The reopened finding's SLA clock restarted at the rescan that saw it again.
    assert_eq!(strings(&s, "SELECT CAST(clock_start AS VARCHAR) FROM finding_sla JOIN findings USING (finding_id) WHERE vuln_id = '2'"), vec!["2026-11-16"]);
}

#[test]
fn fix_plans_name_the_file_and_the_change_for_real_trivy_misconfigurations() {
    let s = mem();
    import_ok(&s, "trivy/misconfigurations_and_secrets.json");
    import_ok(&s, "trivy/issue_10991.json");
    plan(&s, &Default::default(), "c", &Selection::Open { min_priority: "P4".into() }, None, true).unwrap();
    let item = |vuln: &str| count(&s, &format!("SELECT min(work_item_id) FROM work_item_findings JOIN findings USING (finding_id) WHERE vuln_id = '{vuln}'"));
    let text = |id: i64| ctem::fixplan::for_work_item(&s.conn, id).unwrap().text();
    // Trivy's Dockerfile check: no code in the report, so the line to add and where.
    let t = text(item("DS002"));
    assert!(t.contains("DS002: run the image as a non-root user in Dockerfile"), "{t}");
    assert!(t.contains("--- a/Dockerfile\n  +++ b/Dockerfile\n  @@ before the first CMD or ENTRYPOINT, or at the end (the report carries no code) @@\n  +USER 10001:10001"), "{t}");
    // Trivy k8s: the offending lines are in the report, so a real diff against them.
    let t = text(item("AVD-KSV-0014"));
    assert!(t.contains("KSV014: make the container's root file system read-only in StatefulSet/vault line 224"), "{t}");
    assert!(
        t.contains("@@ -224,5 +224,7 @@\n                   - args:\n                       - \"/usr/local/bin/docker-entrypoint.sh vault server -dev \\n\"\n  +                  securityContext:\n  +                    readOnlyRootFilesystem: true\n                     command:"),
        "{t}"
    );
    // A package: the exact upgrade.
    let t = text(item("CVE-2021-33503"));
    assert!(t.contains("Upgrade urllib3 from 1.26.3 to 1.26.5"), "{t}");
    assert!(t.contains("Verify\n  Rescan requirements.txt with trivy"), "{t}");
}

#[test]
fn bad_routing_rules_are_refused_with_their_line() {
    let d = tmpdir();
    let cfg = d.path().join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    let db = d.path().join("t.duckdb");
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_ctem")).env_remove("CTEM_DB").env("CTEM_CONFIG_DIR", &cfg).env("CTEM_DATA_DIR", d.path()).arg("--db").arg(&db).args(args).output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    std::fs::write(cfg.join("config.toml"), "theme = \"default\"\n\n[[routing.rule]]\nteam = \"web\"\nbuisness_unit = \"payments\"\n").unwrap();
    let (ok, _, err) = run(&["plan"]);
    assert!(!ok);
    assert!(err.contains("config.toml line 5") && err.contains("buisness_unit"), "{err}");
    std::fs::write(cfg.join("config.toml"), "[[routing.rule]]\nscope = \"crown-jewels\"\nteam = \"web\"\n").unwrap();
    let (ok, _, err) = run(&["plan"]);
    assert!(!ok);
    assert!(err.contains("config.toml line 1: routing rule 'rule 1': no scope named 'crown-jewels'"), "{err}");
    std::fs::write(cfg.join("config.toml"), "[[routing.rule]]\ncategory = \"secret\"\nteam = \"appsec\"\n").unwrap();
    let (ok, out, err) = run(&["plan"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("Plan for open findings P3 and above: 0 new work items"), "{out}");
}
