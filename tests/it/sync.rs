//! Ticket sync against mock Jira Cloud and ServiceNow servers on 127.0.0.1 that answer with the
//! documented shapes and misbehave as the real ones do: 429 with Retry-After, partial bulk failures,
//! search results that lag behind writes, and answers dropped after a create succeeded. Requests to the
//! Jira mock are checked against Atlassian's published OpenAPI document.

use crate::common::*;
use ctem::store::Store;
use ctem::sync::http::{Policy, Secret};
use ctem::sync::{self, JiraCfg, Options, SnowCfg, SyncConfig};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------------------------
// A small HTTP/1.1 server

struct Req {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
    body: Value,
}

enum Resp {
    Json(u16, Value, Vec<(String, String)>),
    Empty(u16),
    /// Close the connection without answering (the work was done).
    Drop,
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

fn serve(handler: Arc<dyn Fn(&Req) -> Resp + Send + Sync>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for sock in l.incoming() {
            let Ok(mut sock) = sock else { continue };
            let h = handler.clone();
            std::thread::spawn(move || {
                let mut rd = BufReader::new(sock.try_clone().unwrap());
                let mut line = String::new();
                if rd.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let target = parts.next().unwrap_or("/").to_string();
                let mut headers = HashMap::new();
                loop {
                    let mut h = String::new();
                    if rd.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                    }
                }
                let n: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                let mut body = vec![0u8; n];
                rd.read_exact(&mut body).unwrap();
                let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
                let query = qs.split('&').filter(|p| !p.is_empty()).filter_map(|p| p.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect();
                let req = Req { method, path: decode(path), query, headers, body: serde_json::from_slice(&body).unwrap_or(Value::Null) };
                let (status, body, extra) = match h(&req) {
                    Resp::Drop => return,
                    Resp::Empty(s) => (s, String::new(), vec![]),
                    Resp::Json(s, v, e) => (s, v.to_string(), e),
                };
                let mut head = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
                for (k, v) in extra {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = sock.write_all(head.as_bytes());
                let _ = sock.write_all(body.as_bytes());
            });
        }
    });
    base
}

fn basic(user: &str, secret: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
}

// ------------------------------------------------------------------------------------------------
// Mock Jira Cloud

#[derive(Clone)]
struct Issue {
    id: String,
    key: String,
    labels: Vec<String>,
    summary: String,
    status: &'static str,
    updated: u64,
    visible_at: Instant,
    comments: usize,
    assignee: Option<String>,
}

#[derive(Default)]
struct Faults {
    /// Every Nth request answers 429 with Retry-After.
    throttle_every: usize,
    /// Every Nth create is done and its answer dropped.
    drop_every_create: usize,
    /// How long a new issue stays out of search results.
    search_lag: Duration,
}

struct JiraState {
    issues: Vec<Issue>,
    requests: usize,
    creates: usize,
    clock: u64,
    faults: Faults,
    log: Vec<(String, String, Value, Vec<String>)>,
    links: BTreeMap<String, String>,
}

const CATS: [(&str, &str, &str); 3] = [("To Do", "new", "11"), ("In Progress", "indeterminate", "21"), ("Done", "done", "31")];

fn cat(status: &str) -> &'static str {
    CATS.iter().find(|c| c.0 == status).map(|c| c.1).unwrap_or("new")
}

fn stamp(t: u64) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap().and_hms_opt(8, 0, 0).unwrap();
    format!("{}.000+0000", (base + chrono::Duration::seconds(t as i64)).format("%Y-%m-%dT%H:%M:%S"))
}

fn jira_issue_json(i: &Issue, base: &str) -> Value {
    json!({
        "id": i.id, "key": i.key, "self": format!("{base}/rest/api/3/issue/{}", i.id),
        "fields": {
            "summary": i.summary, "labels": i.labels, "updated": stamp(i.updated),
            "status": {"name": i.status, "statusCategory": {"key": cat(i.status), "id": 2, "name": i.status}},
            "assignee": null, "comment": {"total": i.comments, "comments": []}
        }
    })
}

fn jira_mock(faults: Faults, token: &str) -> (String, Arc<Mutex<JiraState>>) {
    let st = Arc::new(Mutex::new(JiraState { issues: Vec::new(), requests: 0, creates: 0, clock: 0, faults, log: Vec::new(), links: BTreeMap::new() }));
    let s2 = st.clone();
    let auth = basic("bot@example.com", token);
    let base_cell: Arc<Mutex<String>> = Arc::new(Mutex::new(String::new()));
    let bc = base_cell.clone();
    let base = serve(Arc::new(move |r: &Req| {
        let base = bc.lock().unwrap().clone();
        let mut s = s2.lock().unwrap();
        s.requests += 1;
        let qk: Vec<String> = r.query.keys().cloned().collect();
        s.log.push((r.method.clone(), r.path.clone(), r.body.clone(), qk));
        if r.headers.get("authorization") != Some(&auth) {
            return Resp::Json(401, json!({"errorMessages": ["You are not authenticated. Authentication required to perform this operation."], "errors": {}}), vec![]);
        }
        if s.faults.throttle_every > 0 && s.requests % s.faults.throttle_every == 0 {
            return Resp::Json(429, json!({"errorMessages": ["Rate limit exceeded."]}), vec![("Retry-After".into(), "1".into()), ("RateLimit-Reason".into(), "jira-burst-based".into())]);
        }
        let seg: Vec<&str> = r.path.trim_start_matches("/rest/api/3/").split('/').collect();
        match (r.method.as_str(), seg.as_slice()) {
            ("POST", ["issue", "bulk"]) => {
                s.creates += 1;
                let drop = s.faults.drop_every_create > 0 && s.creates % s.faults.drop_every_create == 0;
                let mut issues = Vec::new();
                let mut errors = Vec::new();
                let updates = r.body["issueUpdates"].as_array().cloned().unwrap_or_default();
                for (i, u) in updates.iter().enumerate() {
                    let f = &u["fields"];
                    let summary = f["summary"].as_str().unwrap_or("").to_string();
                    if f["project"]["key"].as_str() != Some("SEC") {
                        errors.push(json!({"failedElementNumber": i, "status": 400, "elementErrors": {"errorMessages": [], "errors": {"project": "valid project is required"}}}));
                        continue;
                    }
                    if summary.contains("FAILME") {
                        errors.push(json!({"failedElementNumber": i, "status": 400, "elementErrors": {"errorMessages": [], "errors": {"summary": "The summary contains a word the workflow refuses."}}}));
                        continue;
                    }
                    let n = s.issues.len() + 10001;
                    s.clock += 1;
                    let lag = s.faults.search_lag;
                    let issue = Issue {
                        id: n.to_string(),
                        key: format!("SEC-{}", n - 10000),
                        labels: f["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_string()).collect(),
                        summary,
                        status: "To Do",
                        updated: s.clock,
                        visible_at: Instant::now() + lag,
                        comments: 0,
                        assignee: f.pointer("/assignee/id").and_then(|v| v.as_str()).map(String::from),
                    };
                    issues.push(json!({"id": issue.id, "key": issue.key, "self": format!("{base}/rest/api/3/issue/{}", issue.id)}));
                    s.issues.push(issue);
                }
                if drop {
                    return Resp::Drop;
                }
                let status = if issues.is_empty() && !errors.is_empty() { 400 } else { 201 };
                Resp::Json(status, json!({"issues": issues, "errors": errors}), vec![])
            }
            ("POST", ["search", "jql"]) => {
                let jql = r.body["jql"].as_str().unwrap_or("").to_string();
                let start: usize = r.body["nextPageToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
                let max = r.body["maxResults"].as_u64().unwrap_or(50) as usize;
                let now = Instant::now();
                let want: Option<Vec<String>> = jql.split_once("labels in (").map(|(_, rest)| rest.split(')').next().unwrap_or("").split(',').map(|x| x.trim().trim_matches('"').to_string()).collect());
                let since: Option<String> = jql.split_once("updated >= \"").map(|(_, r)| r.split('"').next().unwrap_or("").to_string());
                if want.is_none() && !jql.contains("labels = ctem") {
                    return Resp::Json(400, json!({"errorMessages": ["Unbounded JQL queries are not allowed here."]}), vec![]);
                }
                let hits: Vec<&Issue> = s
                    .issues
                    .iter()
                    .filter(|i| i.visible_at <= now)
                    .filter(|i| want.as_ref().is_none_or(|w| i.labels.iter().any(|l| w.contains(l))))
                    .filter(|i| since.as_ref().is_none_or(|d| stamp(i.updated)[..d.len().min(10)] >= d[..d.len().min(10)]))
                    .collect();
                let page: Vec<Value> = hits.iter().skip(start).take(max).map(|i| jira_issue_json(i, &base)).collect();
                let mut v = json!({"issues": page, "isLast": start + max >= hits.len()});
                if start + max < hits.len() {
                    v["nextPageToken"] = json!((start + max).to_string());
                }
                Resp::Json(200, v, vec![])
            }
            (m, ["issue", key, "transitions"]) => {
                let Some(idx) = s.issues.iter().position(|i| i.key == *key) else {
                    return Resp::Json(404, json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}), vec![]);
                };
                if m == "GET" {
                    let from = s.issues[idx].status;
                    // A workflow that cannot reach Done from here (summary says NODONE).
                    let no_done = s.issues[idx].summary.contains("NODONE");
                    let ts: Vec<Value> = CATS
                        .iter()
                        .filter(|c| c.0 != from && !(no_done && c.1 == "done"))
                        .map(|c| json!({"id": c.2, "name": format!("Move to {}", c.0), "to": {"id": c.2, "name": c.0, "statusCategory": {"key": c.1, "id": 1}}, "isAvailable": true, "hasScreen": false}))
                        .collect();
                    return Resp::Json(200, json!({"transitions": ts}), vec![]);
                }
                let id = r.body["transition"]["id"].as_str().unwrap_or("");
                let Some(c) = CATS.iter().find(|c| c.2 == id) else {
                    return Resp::Json(400, json!({"errorMessages": ["Transition id is not valid for this issue."], "errors": {}}), vec![]);
                };
                s.clock += 1;
                let clock = s.clock;
                let i = &mut s.issues[idx];
                i.status = c.0;
                i.updated = clock;
                if !r.body["update"]["comment"].is_null() {
                    i.comments += 1;
                }
                Resp::Empty(204)
            }
            ("POST", ["issue", key, "comment"]) => match s.issues.iter_mut().find(|i| i.key == *key) {
                Some(i) => {
                    i.comments += 1;
                    Resp::Json(201, json!({"id": "1", "body": r.body["body"]}), vec![])
                }
                None => Resp::Json(404, json!({"errorMessages": ["Issue does not exist"], "errors": {}}), vec![]),
            },
            ("POST", ["issue", key, "remotelink"]) => {
                let g = r.body["globalId"].as_str().unwrap_or("").to_string();
                let existed = s.links.insert(g, key.to_string()).is_some();
                Resp::Json(if existed { 200 } else { 201 }, json!({"id": 1, "self": format!("{base}/rest/api/3/issue/{key}/remotelink/1")}), vec![])
            }
            ("GET", ["user", "assignable", "search"]) => {
                // The project's assignable users: only alice.
                let q = r.query.get("query").cloned().unwrap_or_default();
                if q == "alice@example.com" {
                    Resp::Json(200, json!([{"accountId": "acct-alice", "accountType": "atlassian", "active": true, "displayName": "Alice"}]), vec![])
                } else {
                    Resp::Json(200, json!([]), vec![])
                }
            }
            _ => Resp::Json(404, json!({"errorMessages": [format!("no mock for {} {}", r.method, r.path)]}), vec![]),
        }
    }));
    *base_cell.lock().unwrap() = base.clone();
    (base, st)
}

/// Every request the Jira mock received exists in the published OpenAPI document, with a body whose
/// keys the operation's request schema defines and query parameters the operation declares.
fn check_against_openapi(log: &[(String, String, Value, Vec<String>)]) {
    let gz = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jira/jira-cloud-platform-swagger-v3.v3.json.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
    let spec: Value = serde_json::from_str(&text).unwrap();
    let schema = |r: &str| spec.pointer(&r.trim_start_matches('#').replace("/components", "/components")).cloned().unwrap_or(Value::Null);
    let props = |s: &Value| -> Vec<String> {
        let s = if let Some(r) = s.get("$ref").and_then(Value::as_str) { schema(r) } else { s.clone() };
        s.get("properties").and_then(Value::as_object).map(|o| o.keys().cloned().collect()).unwrap_or_default()
    };
    let mut checked = 0;
    for (method, path, body, query) in log {
        let m = method.to_ascii_lowercase();
        let op = spec["paths"].as_object().unwrap().iter().find_map(|(tpl, item)| {
            let a: Vec<&str> = tpl.split('/').collect();
            let b: Vec<&str> = path.split('/').collect();
            (a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.starts_with('{') || x == y)).then(|| item.get(&m)).flatten()
        });
        let op = op.unwrap_or_else(|| panic!("{method} {path} is not in the Jira OpenAPI document"));
        if let Some(s) = op.pointer("/requestBody/content/application~1json/schema") {
            let allowed = props(s);
            if let Some(o) = body.as_object() {
                for k in o.keys() {
                    assert!(allowed.contains(k), "{method} {path}: body key '{k}' is not in the request schema ({allowed:?})");
                }
            }
            if path.ends_with("/issue/bulk") {
                let item = props(&schema("#/components/schemas/IssueUpdateDetails"));
                for u in body["issueUpdates"].as_array().unwrap() {
                    for k in u.as_object().unwrap().keys() {
                        assert!(item.contains(k), "bulk issue key '{k}' not in IssueUpdateDetails");
                    }
                }
            }
        }
        let params: Vec<String> = op.get("parameters").and_then(Value::as_array).into_iter().flatten().filter_map(|p| {
            let p = if let Some(r) = p.get("$ref").and_then(Value::as_str) { schema(r) } else { p.clone() };
            (p["in"] == "query").then(|| p["name"].as_str().unwrap_or("").to_string())
        }).collect();
        for q in query {
            assert!(params.contains(q), "{method} {path}: query parameter '{q}' not declared ({params:?})");
        }
        checked += 1;
    }
    assert!(checked > 0);
}

// ------------------------------------------------------------------------------------------------
// Mock ServiceNow

#[derive(Clone)]
struct Record {
    sys_id: String,
    number: String,
    state: String,
    correlation_id: String,
    group: String,
    assigned_to: String,
    updated: u64,
    visible_at: Instant,
    notes: usize,
}

struct SnowState {
    records: Vec<Record>,
    requests: usize,
    creates: usize,
    clock: u64,
    faults: Faults,
}

fn snow_stamp(t: u64) -> String {
    let base = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap().and_hms_opt(8, 0, 0).unwrap();
    (base + chrono::Duration::seconds(t as i64)).format("%Y-%m-%d %H:%M:%S").to_string()
}

fn snow_json(r: &Record) -> Value {
    // Every value a string, as the Table API answers.
    json!({"sys_id": r.sys_id, "number": r.number, "state": r.state, "correlation_id": r.correlation_id,
           "assignment_group": r.group, "assigned_to": r.assigned_to, "sys_updated_on": snow_stamp(r.updated)})
}

fn snow_mock(faults: Faults, password: &str) -> (String, Arc<Mutex<SnowState>>) {
    let st = Arc::new(Mutex::new(SnowState { records: Vec::new(), requests: 0, creates: 0, clock: 0, faults }));
    let s2 = st.clone();
    let auth = basic("ctem.integration", password);
    let not_found = || Resp::Json(404, json!({"error": {"message": "No Record found", "detail": "Records matching query not found. Check query parameter or offset parameter"}, "status": "failure"}), vec![]);
    let base = serve(Arc::new(move |r: &Req| {
        let mut s = s2.lock().unwrap();
        s.requests += 1;
        if r.headers.get("authorization") != Some(&auth) {
            return Resp::Json(401, json!({"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"}), vec![]);
        }
        if s.faults.throttle_every > 0 && s.requests % s.faults.throttle_every == 0 {
            return Resp::Json(429, json!({"error": {"message": "Too many requests", "detail": null}, "status": "failure"}), vec![("Retry-After".into(), "1".into())]);
        }
        let seg: Vec<&str> = r.path.trim_start_matches("/api/now/table/").split('/').collect();
        if seg[0] == "sys_user" && r.method == "GET" {
            // One active user; other names are answered as the Table API answers an empty match.
            let q = r.query.get("sysparm_query").cloned().unwrap_or_default();
            if q == "active=true^user_name=alice@example.com^ORemail=alice@example.com" {
                return Resp::Json(200, json!({"result": [{"sys_id": "a11ce000000000000000000000000001"}]}), vec![]);
            }
            return not_found();
        }
        if seg[0] != "incident" {
            return Resp::Json(400, json!({"error": {"message": "Invalid table", "detail": null}, "status": "failure"}), vec![]);
        }
        match (r.method.as_str(), seg.len()) {
            ("POST", 1) => {
                s.creates += 1;
                s.clock += 1;
                let n = s.records.len() + 1;
                let rec = Record {
                    sys_id: format!("{:032x}", n * 7919),
                    number: format!("INC{:07}", 10000 + n),
                    state: r.body["state"].as_str().unwrap_or("1").to_string(),
                    correlation_id: r.body["correlation_id"].as_str().unwrap_or("").to_string(),
                    group: r.body["assignment_group"].as_str().unwrap_or("").to_string(),
                    assigned_to: r.body["assigned_to"].as_str().unwrap_or("").to_string(),
                    updated: s.clock,
                    visible_at: Instant::now() + s.faults.search_lag,
                    notes: 0,
                };
                let v = snow_json(&rec);
                s.records.push(rec);
                if s.faults.drop_every_create > 0 && s.creates % s.faults.drop_every_create == 0 {
                    return Resp::Drop;
                }
                Resp::Json(201, json!({"result": v}), vec![])
            }
            ("GET", 1) => {
                let q = r.query.get("sysparm_query").cloned().unwrap_or_default();
                let limit: usize = r.query.get("sysparm_limit").and_then(|v| v.parse().ok()).unwrap_or(10000);
                let offset: usize = r.query.get("sysparm_offset").and_then(|v| v.parse().ok()).unwrap_or(0);
                let now = Instant::now();
                let mut hits: Vec<&Record> = s.records.iter().filter(|x| x.visible_at <= now).collect();
                for part in q.split('^') {
                    if let Some(list) = part.strip_prefix("correlation_idIN") {
                        let l: Vec<&str> = list.split(',').collect();
                        hits.retain(|x| l.contains(&x.correlation_id.as_str()));
                    } else if let Some(p) = part.strip_prefix("correlation_idSTARTSWITH") {
                        hits.retain(|x| x.correlation_id.starts_with(p));
                    } else if let Some(w) = part.strip_prefix("sys_updated_on>=") {
                        hits.retain(|x| snow_stamp(x.updated).as_str() >= w);
                    }
                }
                hits.sort_by_key(|x| (x.updated, x.sys_id.clone()));
                let page: Vec<Value> = hits.iter().skip(offset).take(limit).map(|x| snow_json(x)).collect();
                if page.is_empty() {
                    return not_found();
                }
                Resp::Json(200, json!({"result": page}), vec![("X-Total-Count".into(), hits.len().to_string())])
            }
            ("PATCH", 2) => {
                s.clock += 1;
                let clock = s.clock;
                match s.records.iter_mut().find(|x| x.sys_id == seg[1]) {
                    Some(x) => {
                        if let Some(st) = r.body["state"].as_str() {
                            x.state = st.to_string();
                        }
                        if r.body.get("work_notes").is_some() {
                            x.notes += 1;
                        }
                        x.updated = clock;
                        let v = snow_json(x);
                        Resp::Json(200, json!({"result": v}), vec![])
                    }
                    None => Resp::Json(404, json!({"error": {"message": "No Record found", "detail": "Record doesn't exist or ACL restricts the record retrieval"}, "status": "failure"}), vec![]),
                }
            }
            _ => Resp::Json(405, json!({"error": {"message": "Method not supported", "detail": null}, "status": "failure"}), vec![]),
        }
    }));
    (base, st)
}

// ------------------------------------------------------------------------------------------------

fn store_with_items(n: usize) -> Store {
    let s = mem();
    s.conn
        .execute_batch(&format!(
            "INSERT INTO work_items (work_item_id, title, owner, team, assignee, priority, status, due_date, source, fingerprint, snow_group, created_at, updated_at)
             SELECT i, 'upgrade openssl on batch ' || i || CASE WHEN i % 97 = 0 THEN ' FAILME' ELSE '' END, 'platform', 'platform',
                    CASE WHEN i % 5 = 0 THEN 'alice@example.com' WHEN i % 7 = 0 THEN 'nobody@example.com' END, 'P' || (1 + i % 4), 'new',
                    DATE '2026-12-01' + CAST(i % 30 AS INTEGER), 'test', 'fix|platform|package_upgrade|openssl ' || i, 'Platform Ops',
                    current_timestamp::TIMESTAMP, current_timestamp::TIMESTAMP
             FROM range(1, {}) t(i)",
            n + 1
        ))
        .unwrap();
    s
}

fn cfg(jira: Option<&str>, snow: Option<&str>, token: &str) -> SyncConfig {
    SyncConfig {
        jira: jira.map(|u| JiraCfg {
            url: reqwest::Url::parse(u).unwrap(),
            user: "bot@example.com".into(),
            token: Secret::new(token),
            project: Some("SEC".into()),
            issue_type: "Task".into(),
            priorities: ["Highest".into(), "High".into(), "Medium".into(), "Low".into()],
            link_base: "ctem://work-item".into(),
            fields: [("customfield_10042".to_string(), json!("team {team}, {priority}"))].into_iter().collect(),
        }),
        snow: snow.map(|u| SnowCfg {
            url: reqwest::Url::parse(u).unwrap(),
            user: "ctem.integration".into(),
            password: Secret::new(token),
            table: "incident".into(),
            states: [("new", "1"), ("triaged", "1"), ("assigned", "2"), ("in_progress", "2"), ("fixed", "6"), ("verified", "7"), ("risk_accepted", "7"), ("false_positive", "7")]
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            fixed_states: vec!["6".into(), "7".into()],
            open_states: vec!["1".into(), "2".into(), "3".into()],
            close_code: "Solved (Permanently)".into(),
            fields: [("category".to_string(), json!("security"))].into_iter().collect(),
        }),
        search_lag: Duration::from_millis(600),
        policy: Policy { max_retries: 6, backoff: Duration::from_millis(20), timeout: Duration::from_secs(5), call_budget: None, progress: None },
    }
}

/// Run until a run completes, stopping each run after a random number of calls (a killed process).
fn sync_with_kills(s: &Store, c: &SyncConfig, seed: u64) -> (usize, usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kills = 0;
    for round in 0..200 {
        let budget = if round < 12 { Some(rng.usize(5..400)) } else { None };
        let out = sync::run(s, c, &Options { dry_run: false, only: None, call_budget: budget, progress: None }).unwrap();
        if out.iter().any(|o| o.interrupted) {
            kills += 1;
            continue;
        }
        return (round + 1, kills);
    }
    panic!("sync never completed");
}

const TOKEN: &str = "tok-3f9a1c";

#[test]
fn thousand_work_items_reach_both_trackers_once_through_faults_and_kills() {
    let s = store_with_items(1000);
    let (jira, js) = jira_mock(Faults { throttle_every: 401, drop_every_create: 3, search_lag: Duration::from_millis(300) }, TOKEN);
    let (snow, ss) = snow_mock(Faults { throttle_every: 307, drop_every_create: 41, search_lag: Duration::from_millis(300) }, TOKEN);
    let c = cfg(Some(&jira), Some(&snow), TOKEN);
    let (runs, kills) = sync_with_kills(&s, &c, 7);
    assert!(kills >= 5, "{kills} kills in {runs} runs");

    // Exactly one ticket per work item in each tracker (the FAILME ones refused by Jira, said so).
    let refused: Vec<i64> = (1..=1000).filter(|i| i % 97 == 0).collect();
    {
        let j = js.lock().unwrap();
        let mut per: HashMap<String, usize> = HashMap::new();
        for i in &j.issues {
            for l in i.labels.iter().filter(|l| l.starts_with("ctem-")) {
                *per.entry(l.clone()).or_default() += 1;
            }
        }
        assert_eq!(per.len(), 1000 - refused.len());
        assert!(per.values().all(|n| *n == 1), "duplicates: {:?}", per.iter().filter(|x| *x.1 > 1).collect::<Vec<_>>());
        assert!(j.log.iter().any(|l| l.1.ends_with("/remotelink")));
        check_against_openapi(&j.log);
        let r = ss.lock().unwrap();
        let mut per: HashMap<&str, usize> = HashMap::new();
        for x in &r.records {
            *per.entry(x.correlation_id.as_str()).or_default() += 1;
        }
        assert_eq!(per.len(), 1000);
        assert!(per.values().all(|n| *n == 1));
        assert!(r.records.iter().all(|x| x.group == "Platform Ops"));
    }
    assert_eq!(count(&s, "SELECT count(*) FROM tickets WHERE system = 'jira' AND ticket_key IS NOT NULL"), 1000 - refused.len() as i64);
    let missing = strings(&s, "SELECT w.work_item_id || ' ' || coalesce(t.error, '-') || ' | ' || coalesce((SELECT string_agg(action || ':' || state || ':' || coalesce(error, ''), ', ') FROM sync_outbox o WHERE o.work_item_id = w.work_item_id AND o.system = 'servicenow'), '')
                                FROM work_items w LEFT JOIN tickets t ON t.work_item_id = w.work_item_id AND t.system = 'servicenow' WHERE t.ticket_key IS NULL");
    assert!(missing.is_empty(), "{missing:?}");
    assert_eq!(count(&s, "SELECT count(*) FROM tickets WHERE system = 'servicenow' AND ticket_key IS NOT NULL"), 1000);
    // The refused ones carry Jira's reason and no key: nothing is marked synced that was not.
    assert_eq!(
        strings(&s, "SELECT DISTINCT error FROM tickets WHERE system = 'jira' AND ticket_key IS NULL"),
        vec!["refused (400): summary: The summary contains a word the workflow refuses."]
    );
    assert_eq!(count(&s, "SELECT count(*) FROM sync_outbox WHERE state IN ('pending', 'sent', 'uncertain')"), 0);

    // Changes on both sides: 100 work items move locally, 100 tickets are closed in Jira, 50 incidents
    // resolved in ServiceNow, and one item changes on both sides.
    s.conn.execute_batch("UPDATE work_items SET status = 'in_progress' WHERE work_item_id BETWEEN 1 AND 100").unwrap();
    let keys: HashMap<i64, (String, String)> = {
        let mut st = s.conn.prepare("SELECT work_item_id, system, ticket_key FROM tickets WHERE ticket_key IS NOT NULL").unwrap();
        let rows: Vec<(i64, String, String)> = st.query_map([], |r| Ok((r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap()))).unwrap().map(|r| r.unwrap()).collect();
        let mut m: HashMap<i64, (String, String)> = HashMap::new();
        for (id, sys, key) in rows {
            let e = m.entry(id).or_default();
            if sys == "jira" { e.0 = key } else { e.1 = key }
        }
        m
    };
    // Assignees: the tracker's own user id where it knows the person, unassigned where it does not.
    {
        let j = js.lock().unwrap();
        let r = ss.lock().unwrap();
        for (id, (jk, sk)) in &keys {
            let want_j = (id % 5 == 0).then(|| "acct-alice".to_string());
            if !jk.is_empty() {
                assert_eq!(j.issues.iter().find(|i| &i.key == jk).unwrap().assignee, want_j, "Jira issue of work item {id}");
            }
            let want_s = if id % 5 == 0 { "a11ce000000000000000000000000001" } else { "" };
            assert_eq!(r.records.iter().find(|x| &x.number == sk).unwrap().assigned_to, want_s, "incident of work item {id}");
        }
    }
    {
        let mut j = js.lock().unwrap();
        for id in 201..=300 {
            let k = keys[&id].0.clone();
            j.clock += 1;
            let clock = j.clock;
            if let Some(i) = j.issues.iter_mut().find(|i| i.key == k) {
                i.status = "Done";
                i.updated = clock;
            }
        }
        // Work item 50 moved locally and its ticket closed remotely: a conflict.
        let k = keys[&50].0.clone();
        j.clock += 1;
        let clock = j.clock;
        let i = j.issues.iter_mut().find(|i| i.key == k).unwrap();
        i.status = "Done";
        i.updated = clock;
        let mut r = ss.lock().unwrap();
        for id in 401..=450 {
            let k = keys[&id].1.clone();
            r.clock += 1;
            let clock = r.clock;
            let x = r.records.iter_mut().find(|x| x.number == k).unwrap();
            x.state = "6".into();
            x.updated = clock;
        }
    }
    sync_with_kills(&s, &c, 11);
    {
        let j = js.lock().unwrap();
        let by_key: HashMap<&str, &Issue> = j.issues.iter().map(|i| (i.key.as_str(), i)).collect();
        for id in (1..=100).filter(|i| *i != 50 && i % 97 != 0) {
            assert_eq!(by_key[keys[&id].0.as_str()].status, "In Progress", "work item {id}");
        }
        let r = ss.lock().unwrap();
        for id in 1..=100 {
            assert_eq!(r.records.iter().find(|x| x.number == keys[&id].1).unwrap().state, "2", "incident of work item {id}");
        }
    }
    // Closed in a tracker: the work item is fixed, awaiting verification, and the other tracker follows.
    // (Work item 291 has no Jira ticket: Jira refused it.)
    assert_eq!(count(&s, "SELECT count(*) FROM work_items WHERE status = 'fixed' AND (work_item_id BETWEEN 201 AND 300 OR work_item_id BETWEEN 401 AND 450)"), 149);
    assert_eq!(count(&s, "SELECT count(*) FROM audit_log WHERE actor IN ('jira', 'servicenow') AND new_value = 'fixed'"), 149);
    {
        let r = ss.lock().unwrap();
        for id in (201..=300).filter(|i| i % 97 != 0) {
            assert_eq!(r.records.iter().find(|x| x.number == keys[&id].1).unwrap().state, "6", "incident of work item {id} resolved after Jira closed it");
        }
        let j = js.lock().unwrap();
        for id in (401..=450).filter(|i| i % 97 != 0) {
            assert_eq!(j.issues.iter().find(|i| i.key == keys[&id].0).unwrap().status, "Done");
        }
    }
    // The stand-up names the tickets that moved in the trackers.
    let now = chrono::Utc::now().naive_utc();
    let st = ctem::report::standup(&s, now - chrono::Duration::hours(24), now, None, true).unwrap();
    assert_eq!(st.tickets_moved.len(), 20, "the 20 latest");
    assert!(st.markdown().contains("Tickets moved in Jira or ServiceNow:\n- work item #"), "{}", st.markdown());
    // Both sides changed work item 50: a conflict, nothing overwritten, until a person decides.
    assert_eq!(strings(&s, "SELECT system || ' ' || local_value || ' / ' || remote_value FROM sync_conflicts WHERE resolved_at IS NULL"), vec!["jira in_progress / Done"]);
    assert_eq!(strings(&s, "SELECT status FROM work_items WHERE work_item_id = 50"), vec!["in_progress"]);
    assert_eq!(js.lock().unwrap().issues.iter().find(|i| i.key == keys[&50].0).unwrap().status, "Done");
    println!("{}", sync::resolve(&s, "jira", 50, "local").unwrap());
    sync_with_kills(&s, &c, 13);
    assert_eq!(js.lock().unwrap().issues.iter().find(|i| i.key == keys[&50].0).unwrap().status, "In Progress");
    assert_eq!(count(&s, "SELECT count(*) FROM sync_conflicts WHERE resolved_at IS NULL"), 0);
}

#[test]
fn refusals_are_per_work_item_and_secrets_never_show() {
    let s = store_with_items(30);
    let (jira, js) = jira_mock(Faults::default(), TOKEN);
    let (snow, _ss) = snow_mock(Faults::default(), TOKEN);
    // Wrong credentials: every item says so, nothing is marked synced, and the secret is nowhere.
    let bad = cfg(Some(&jira), Some(&snow), "wrong-secret-123");
    let out = sync::run(&s, &bad, &Options { dry_run: false, only: None, call_budget: None, progress: None }).unwrap();
    let text = out.iter().map(|o| format!("{} {:?}", o.line(), o.failed)).collect::<Vec<_>>().join("\n");
    assert_eq!(out.len(), 2, "one tracker failing does not stop the other");
    assert!(text.contains("jira: refused (401): You are not authenticated") && text.contains("servicenow: refused (401): User Not Authenticated"), "{text}");
    assert!(!text.contains("wrong-secret-123"), "{text}");
    assert_eq!(count(&s, "SELECT count(*) FROM tickets WHERE ticket_key IS NOT NULL"), 0);
    assert!(!format!("{:?}", bad.jira.as_ref().unwrap().token).contains("wrong"));
    // An unknown project: a clear message per work item; the other tracker goes on.
    let mut c = cfg(Some(&jira), Some(&snow), TOKEN);
    c.jira.as_mut().unwrap().project = Some("NOPE".into());
    let out = sync::run(&s, &c, &Options { dry_run: false, only: None, call_budget: None, progress: None }).unwrap();
    let j = out.iter().find(|o| o.system == "jira").unwrap();
    assert_eq!(j.failed.len(), 30);
    assert!(j.failed[0].1.contains("project: valid project is required"), "{:?}", j.failed[0]);
    assert_eq!(out.iter().find(|o| o.system == "servicenow").unwrap().created, 30);
    assert_eq!(js.lock().unwrap().issues.len(), 0);
    // A workflow without a way to Done: that work item says so, the others move.
    let c = cfg(Some(&jira), None, TOKEN);
    s.conn.execute_batch("UPDATE work_items SET title = title || ' NODONE' WHERE work_item_id = 3").unwrap();
    let out = sync::run(&s, &c, &Options { dry_run: false, only: None, call_budget: None, progress: None }).unwrap();
    assert_eq!(out[0].created, 30, "{}", out[0].line());
    s.conn.execute_batch("UPDATE work_items SET status = 'fixed' WHERE work_item_id IN (2, 3, 4)").unwrap();
    let out = sync::run(&s, &c, &Options { dry_run: false, only: None, call_budget: None, progress: None }).unwrap();
    assert_eq!(out[0].pushed, 2, "{}", out[0].line());
    assert_eq!(out[0].failed.len(), 1);
    assert!(out[0].failed[0].1.contains("has no transition to a 'done' status"), "{:?}", out[0].failed);
    assert_eq!(strings(&s, "SELECT error FROM tickets WHERE system = 'jira' AND work_item_id = 3"), vec!["refused (409): SEC-3 has no transition to a 'done' status from where it is"]);
    let detail = ctem::mobilize::show(&s.conn, 3).unwrap();
    assert!(detail.contains("\nTickets\n  jira       SEC-3 ") && detail.contains("last sync failed: refused (409)"), "{detail}");
    // Read-only stores refuse to push.
    drop(s);
    let ro = mem();
    let ro = Store { read_only: true, ..ro };
    assert!(sync::run(&ro, &c, &Options { dry_run: false, only: None, call_budget: None, progress: None }).unwrap_err().to_string().starts_with("read-only: tickets cannot be pushed"));
    let s = store_with_items(30);
    // A dry run prints what would be sent and sends no write.
    let (jira, js) = jira_mock(Faults::default(), TOKEN);
    let before = js.lock().unwrap().log.len();
    let c = cfg(Some(&jira), None, TOKEN);
    let out = sync::run(&s, &c, &Options { dry_run: true, only: None, call_budget: None, progress: None }).unwrap();
    let dry = out[0].dry.join("\n");
    assert!(dry.starts_with(&format!("POST {jira}/rest/api/3/issue/bulk")), "{dry}");
    assert!(dry.contains("\"labels\": [\n          \"ctem\",\n          \"ctem-") && dry.contains("\"duedate\": \"2026-12-02\""), "{dry}");
    assert!(dry.contains("\"customfield_10042\": \"team platform, P2\""), "{dry}");
    assert!(!dry.contains(TOKEN));
    let compact: String = dry.split_whitespace().collect();
    assert_eq!(compact.matches("\"assignee\":{\"id\":\"acct-alice\"}").count(), 6, "assignees are looked up as a real run does: {dry}");
    assert!(
        js.lock().unwrap().log[before..].iter().all(|l| l.1.ends_with("/search/jql") || l.1.ends_with("/user/assignable/search")),
        "a dry run only reads"
    );
    assert_eq!(js.lock().unwrap().issues.len(), 0);
}

#[test]
fn tracker_credentials_come_from_the_environment_or_a_private_file() {
    let d = tmpdir();
    let path = d.path().join("config.toml");
    let env = |k: &str| match k {
        "CTEM_JIRA_URL" => Some("https://acme.atlassian.net".to_string()),
        "CTEM_JIRA_USER" => Some("bot@acme.com".to_string()),
        "CTEM_JIRA_TOKEN" => Some("t0ken".to_string()),
        "CTEM_JIRA_PROJECT" => Some("SEC".to_string()),
        _ => None,
    };
    let c = sync::config(None, &path, &env).unwrap();
    let j = c.jira.unwrap();
    assert_eq!((j.user.as_str(), j.project.as_deref(), j.token.expose()), ("bot@acme.com", Some("SEC"), "t0ken"));
    assert!(c.snow.is_none());
    // A token in a config file readable by others is refused.
    let text = "[servicenow]\nurl = \"https://acme.service-now.com\"\nuser = \"svc\"\npassword = \"pw\"\n";
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = sync::config(Some(text), &path, &|_| None).err().unwrap();
        assert!(e.contains("readable by others (mode 644)") && !e.contains("pw\""), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let c = sync::config(Some(text), &path, &|_| None).unwrap();
    assert_eq!(c.snow.unwrap().table, "incident");
    // Plain http only for loopback.
    let e = sync::config(Some("[jira]\nurl = \"http://jira.acme.com\"\n"), &path, &|_| None).err().unwrap();
    assert!(e.contains("only for loopback"), "{e}");
    let e = sync::config(Some("[servicenow]\nurl = \"https://x.service-now.com\"\nuser = \"u\"\npassword_file = \"/nonexistent\"\nstates = { shipped = \"9\" }\n"), &path, &|_| None).err().unwrap();
    assert!(e.contains("/nonexistent"), "{e}");
}


#[test]
fn console_sync_runs_in_the_background_and_the_board_shows_tickets() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ctem::tui::app::{App, Overlay};
    use ctem::tui::db::{Db, Req};
    let s = store_with_items(6);
    let (jira, js) = jira_mock(Faults::default(), TOKEN);
    let mut app = App::new(Db::start(s), "t".into(), ctem::tui::theme::Theme::builtin("default"), None, ctem::tui::keymap::Keymap::default());
    app.board.today = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    app.start(None, None);
    app.settle(Duration::from_secs(10));
    app.db.send(Req::Sync { cfg: Box::new(cfg(Some(&jira), None, TOKEN)) });
    app.settle(Duration::from_secs(30));
    let (m, err) = app.message.clone().unwrap();
    assert!(!err && m.starts_with("jira: 6 created"), "{m}");
    assert!(app.jobs.is_empty());
    assert_eq!(js.lock().unwrap().issues.len(), 6);
    app.on_key(KeyEvent::new(KeyCode::Char('6'), KeyModifiers::NONE));
    app.settle(Duration::from_secs(10));
    let keys: Vec<String> = app.board.cols[0].cards.iter().filter_map(|c| c.tickets.clone()).collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("SEC-")));
    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 40)).unwrap();
    term.draw(|f| ctem::tui::ui::draw(f, &mut app)).unwrap();
    let buf = term.backend().buffer().clone();
    let text: String = (0..buf.area.height).map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol().to_string()).collect::<String>() + "\n").collect();
    assert!(text.contains("SEC-"), "{text}");
    app.command("sync status");
    app.settle(Duration::from_secs(10));
    match &app.overlay {
        Overlay::Detail { title, lines, .. } => {
            assert_eq!(title, "Ticket sync");
            assert!(lines[0].starts_with("jira: 6 tickets, 0 with errors"), "{lines:?}");
        }
        _ => panic!("no sync overlay"),
    }
}

#[test]
fn findings_joining_a_ticketed_work_item_are_told_once_with_its_status_move() {
    let s = store_with_items(14);
    let add_findings = |from: i64| {
        s.conn
            .execute_batch(&format!(
                "INSERT INTO findings (finding_id, fingerprint, asset_id, asset_name, sources, vuln_id, vuln_key, loc_key, title, severity, category, status, first_seen, last_seen)
                 SELECT i, uuid(), 1, 'web-01', ['test'], 'CVE-2026-' || i, 'CVE-2026-' || i, '', 'finding ' || i, 'high', 'vulnerability', 'open',
                        TIMESTAMP '2026-11-20', TIMESTAMP '2026-11-20'
                 FROM range({from}, {from} + 14) t(i);
                 INSERT INTO work_item_findings (work_item_id, finding_id, added_at) SELECT i - {from} + 1, i, current_timestamp::TIMESTAMP FROM range({from}, {from} + 14) t(i);"
            ))
            .unwrap();
    };
    add_findings(1);
    let (jira, js) = jira_mock(Faults::default(), TOKEN);
    let (snow, ss) = snow_mock(Faults::default(), TOKEN);
    let c = cfg(Some(&jira), Some(&snow), TOKEN);
    let opts = || Options { dry_run: false, only: None, call_budget: None, progress: None };
    let out = sync::run(&s, &c, &opts()).unwrap();
    assert!(out.iter().all(|o| o.created == 14 && o.commented == 0), "{:?}", out.iter().map(|o| o.line()).collect::<Vec<_>>());
    assert_eq!(count(&s, "SELECT count(*) FROM tickets WHERE synced_findings = 1"), 28);
    // Every work item gains a finding; half of them also start moving. More items than calls in flight.
    add_findings(101);
    s.conn.execute_batch("UPDATE work_items SET status = 'in_progress' WHERE work_item_id <= 7").unwrap();
    let out = sync::run(&s, &c, &opts()).unwrap();
    for o in &out {
        assert_eq!((o.pushed, o.commented, o.failed.len()), (7, 14, 0), "{}", o.line());
    }
    {
        let j = js.lock().unwrap();
        assert!(j.issues.iter().all(|i| i.comments == 1), "one comment per Jira issue");
        assert_eq!(j.issues.iter().filter(|i| i.status == "In Progress").count(), 7);
        let r = ss.lock().unwrap();
        assert!(r.records.iter().all(|x| x.notes == 1), "one work note per incident");
    }
    assert_eq!(count(&s, "SELECT count(*) FROM sync_outbox WHERE action IN ('transition', 'comment') AND state <> 'done'"), 0);
    assert_eq!(count(&s, "SELECT count(*) FROM sync_outbox WHERE action = 'comment'"), 28);
    assert_eq!(count(&s, "SELECT count(*) FROM tickets WHERE synced_findings = 2"), 28);
    // Nothing new: nothing is said again.
    let out = sync::run(&s, &c, &opts()).unwrap();
    assert!(out.iter().all(|o| o.pushed == 0 && o.commented == 0), "{:?}", out.iter().map(|o| o.line()).collect::<Vec<_>>());
    assert!(js.lock().unwrap().issues.iter().all(|i| i.comments == 1));
}
