//! Jira Cloud REST v3: bulk create (50 per call) with the fingerprint label in the create itself,
//! search with `/rest/api/3/search/jql` and `nextPageToken`, transitions looked up per issue by the
//! target status category, assignees by accountId, comments and a remote link back to the work item.

use super::http::{CallError, Http};
use super::{Category, NewTicket, Remote};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct Jira {
    pub base: reqwest::Url,
    pub http: Http,
    pub issue_type: String,
    /// Jira priority names for P1..P4.
    pub priorities: [String; 4],
    pub link_base: String,
    /// More fields for every created issue (`[jira.fields]`).
    pub fields: std::collections::BTreeMap<String, Value>,
    accounts: Mutex<HashMap<(String, String), Option<String>>>,
}

/// Atlassian Document Format: paragraphs, a bullet list and code blocks from plain text sections.
pub fn adf(sections: &[(String, Vec<String>)], code: Option<&str>) -> Value {
    let text = |t: &str| json!({"type": "text", "text": if t.is_empty() { " " } else { t }});
    let mut content = Vec::new();
    for (head, lines) in sections {
        content.push(json!({"type": "heading", "attrs": {"level": 3}, "content": [text(head)]}));
        if lines.is_empty() {
            continue;
        }
        let items: Vec<Value> = lines.iter().map(|l| json!({"type": "listItem", "content": [{"type": "paragraph", "content": [text(l)]}]})).collect();
        content.push(json!({"type": "bulletList", "content": items}));
    }
    if let Some(c) = code.filter(|c| !c.trim().is_empty()) {
        content.push(json!({"type": "heading", "attrs": {"level": 3}, "content": [text("Fix plan")]}));
        content.push(json!({"type": "codeBlock", "content": [text(c)]}));
    }
    json!({"type": "doc", "version": 1, "content": content})
}

fn category_of(issue: &Value) -> String {
    issue.pointer("/fields/status/statusCategory/key").and_then(Value::as_str).unwrap_or("").to_string()
}

impl Jira {
    pub fn new(base: reqwest::Url, http: Http, issue_type: String, priorities: [String; 4], link_base: String) -> Jira {
        Jira { base, http, issue_type, priorities, link_base, fields: Default::default(), accounts: Mutex::new(HashMap::new()) }
    }

    fn url(&self, path: &str) -> reqwest::Url {
        let mut u = self.base.clone();
        u.set_path(&format!("{}{}", self.base.path().trim_end_matches('/'), path));
        u
    }

    /// The issue body for a work item (also what `--dry-run` prints).
    pub fn create_body(&self, t: &NewTicket, account: Option<&str>) -> Value {
        let mut fields = json!({
            "project": {"key": t.project.clone().unwrap_or_default()},
            "issuetype": {"name": self.issue_type},
            "summary": t.title.chars().take(250).collect::<String>(),
            "description": adf(&t.sections, t.plan.as_deref()),
            "labels": ["ctem", t.fingerprint],
        });
        if let Some(p) = t.priority.as_deref().and_then(|p| p.strip_prefix('P')).and_then(|n| n.parse::<usize>().ok()).filter(|n| (1..=4).contains(n)) {
            fields["priority"] = json!({"name": self.priorities[p - 1]});
        }
        if let Some(d) = t.due {
            fields["duedate"] = json!(d.format("%Y-%m-%d").to_string());
        }
        if let Some(a) = account {
            fields["assignee"] = json!({"id": a});
        }
        for (k, v) in super::fill_fields(&self.fields, t) {
            fields[k] = v;
        }
        json!({"fields": fields})
    }

    /// accountId of an assignee (by the assignable-user search of the project), cached per run.
    pub async fn account(&self, project: &str, who: &str) -> Result<Option<String>, CallError> {
        let k = (project.to_string(), who.to_string());
        if let Some(v) = self.accounts.lock().expect("cache").get(&k) {
            return Ok(v.clone());
        }
        let mut u = self.url("/rest/api/3/user/assignable/search");
        u.query_pairs_mut().append_pair("project", project).append_pair("query", who).append_pair("maxResults", "10");
        let (_, v) = self.http.call(Method::GET, &u, None, true).await?;
        let id = v.as_array().and_then(|a| {
            a.iter()
                .filter(|u| u.get("active").and_then(Value::as_bool).unwrap_or(true))
                .find_map(|u| u.get("accountId").and_then(Value::as_str).map(String::from))
        });
        self.accounts.lock().expect("cache").insert(k, id.clone());
        Ok(id)
    }

    /// Create up to 50 issues in one call; one result per input, in order.
    pub async fn create(&self, batch: &[NewTicket]) -> Vec<Result<Remote, CallError>> {
        let mut updates = Vec::new();
        for t in batch {
            let account = match (&t.assignee, &t.project) {
                (Some(a), Some(p)) => self.account(p, a).await.ok().flatten(),
                _ => None,
            };
            updates.push(self.create_body(t, account.as_deref()));
        }
        let url = self.url("/rest/api/3/issue/bulk");
        let body = json!({"issueUpdates": updates});
        // All failed: the same shape as a partial failure, with a 400.
        let v = match self.http.call_accepting(Method::POST, &url, Some(&body), false, &[400]).await {
            Ok((st, v)) if st.as_u16() == 400 && v.get("errors").and_then(Value::as_array).is_none() => {
                let m = super::http::error_text(&v);
                return batch.iter().map(|_| Err(CallError::Refused { status: 400, message: m.clone() })).collect();
            }
            Ok((_, v)) => v,
            Err(e) => return batch.iter().map(|_| Err(e.clone())).collect(),
        };
        bulk_results(batch, &v, &self.base)
    }

    /// Issues carrying these fingerprint labels.
    pub async fn find(&self, fingerprints: &[String]) -> Result<Vec<Remote>, CallError> {
        if fingerprints.is_empty() {
            return Ok(Vec::new());
        }
        let list = fingerprints.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", ");
        self.search(&format!("labels in ({list})")).await
    }

    /// Issues ctem created that changed since `since` (`yyyy-MM-dd HH:mm`, the server's time).
    pub async fn changed_since(&self, since: Option<&str>) -> Result<Vec<Remote>, CallError> {
        let jql = match since {
            Some(s) => format!("labels = ctem AND updated >= \"{s}\" ORDER BY updated ASC"),
            None => "labels = ctem ORDER BY updated ASC".to_string(),
        };
        self.search(&jql).await
    }

    async fn search(&self, jql: &str) -> Result<Vec<Remote>, CallError> {
        let url = self.url("/rest/api/3/search/jql");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"jql": jql, "maxResults": 100, "fields": ["status", "assignee", "labels", "updated", "comment", "summary", "resolution"]});
            if let Some(t) = &token {
                body["nextPageToken"] = json!(t);
            }
            // A search changes nothing: safe to repeat.
            let (_, v) = self.http.call(Method::POST, &url, Some(&body), true).await?;
            for i in v.get("issues").and_then(Value::as_array).into_iter().flatten() {
                let labels: Vec<&str> = i.pointer("/fields/labels").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
                let Some(fp) = labels.iter().find(|l| l.starts_with("ctem-")) else { continue };
                let key = i.get("key").and_then(Value::as_str).unwrap_or("").to_string();
                out.push(Remote {
                    fingerprint: fp.to_string(),
                    url: self.browse(&key),
                    key,
                    id: i.get("id").and_then(Value::as_str).unwrap_or("").to_string(),
                    status: i.pointer("/fields/status/name").and_then(Value::as_str).unwrap_or("").to_string(),
                    category: category_of(i),
                    assignee: i.pointer("/fields/assignee/displayName").and_then(Value::as_str).map(String::from),
                    resolution: i.pointer("/fields/resolution/name").and_then(Value::as_str).map(String::from),
                    updated: i.pointer("/fields/updated").and_then(Value::as_str).unwrap_or("").to_string(),
                    comments: i.pointer("/fields/comment/total").and_then(Value::as_i64),
                });
            }
            token = v.get("nextPageToken").and_then(Value::as_str).map(String::from);
            let last = v.get("isLast").and_then(Value::as_bool).unwrap_or(token.is_none());
            if token.is_none() || last {
                break;
            }
        }
        Ok(out)
    }

    fn browse(&self, key: &str) -> String {
        format!("{}/browse/{key}", self.base.as_str().trim_end_matches('/'))
    }

    /// Move an issue to a status of `target`'s category, by a transition this issue offers now.
    pub async fn transition(&self, key: &str, target: Category, note: Option<&str>) -> Result<String, CallError> {
        let url = self.url(&format!("/rest/api/3/issue/{key}/transitions"));
        let (_, v) = self.http.call(Method::GET, &url, None, true).await?;
        let want = target.jira();
        let Some(t) = v.get("transitions").and_then(Value::as_array).into_iter().flatten().find(|t| {
            t.pointer("/to/statusCategory/key").and_then(Value::as_str) == Some(want) && t.get("isAvailable").and_then(Value::as_bool).unwrap_or(true)
        }) else {
            return Err(CallError::Refused { status: 409, message: format!("{key} has no transition to a '{want}' status from where it is") });
        };
        let id = t.get("id").and_then(Value::as_str).unwrap_or("").to_string();
        let to = t.pointer("/to/name").and_then(Value::as_str).unwrap_or("").to_string();
        let mut body = json!({"transition": {"id": id}});
        if let Some(n) = note {
            body["update"] = json!({"comment": [{"add": {"body": adf(&[(n.to_string(), vec![])], None)}}]});
        }
        // Moving to the same status twice is harmless: retry like a read.
        self.http.call(Method::POST, &url, Some(&body), true).await?;
        Ok(to)
    }

    pub async fn comment(&self, key: &str, text: &str) -> Result<(), CallError> {
        let url = self.url(&format!("/rest/api/3/issue/{key}/comment"));
        self.http.call(Method::POST, &url, Some(&json!({"body": adf(&[(text.to_string(), vec![])], None)})), false).await?;
        Ok(())
    }

    /// The link back to the work item; the same `globalId` updates rather than duplicates.
    pub async fn remote_link(&self, key: &str, work_item: i64, title: &str, fingerprint: &str) -> Result<(), CallError> {
        let url = self.url(&format!("/rest/api/3/issue/{key}/remotelink"));
        let body = json!({
            "globalId": format!("ctem:{fingerprint}"),
            "application": {"type": "ctem", "name": "ctem"},
            "relationship": "remediates",
            "object": {"url": format!("{}/{work_item}", self.link_base.trim_end_matches('/')), "title": format!("ctem work item #{work_item}"), "summary": title}
        });
        self.http.call(Method::POST, &url, Some(&body), true).await?;
        Ok(())
    }
}

/// Map a bulk-create answer back to its inputs: `errors[].failedElementNumber` names the failed ones,
/// `issues` holds the others in input order.
pub fn bulk_results(batch: &[NewTicket], v: &Value, base: &reqwest::Url) -> Vec<Result<Remote, CallError>> {
    let mut failed: HashMap<usize, String> = HashMap::new();
    for e in v.get("errors").and_then(Value::as_array).into_iter().flatten() {
        if let Some(n) = e.get("failedElementNumber").and_then(Value::as_u64) {
            let msg = e.get("elementErrors").map(super::http::error_text).unwrap_or_default();
            failed.insert(n as usize, if msg.is_empty() { "refused".into() } else { msg });
        }
    }
    let mut ok = v.get("issues").and_then(Value::as_array).cloned().unwrap_or_default().into_iter();
    batch
        .iter()
        .enumerate()
        .map(|(i, t)| match failed.get(&i) {
            Some(m) => Err(CallError::Refused { status: 400, message: m.clone() }),
            None => match ok.next() {
                Some(issue) => {
                    let key = issue.get("key").and_then(Value::as_str).unwrap_or("").to_string();
                    Ok(Remote {
                        fingerprint: t.fingerprint.clone(),
                        url: format!("{}/browse/{key}", base.as_str().trim_end_matches('/')),
                        key,
                        id: issue.get("id").and_then(Value::as_str).unwrap_or("").to_string(),
                        status: String::new(),
                        category: "new".into(),
                        assignee: None,
                        resolution: None,
                        updated: String::new(),
                        comments: Some(0),
                    })
                }
                None => Err(CallError::Uncertain("the bulk answer lists fewer issues than were sent".into())),
            },
        })
        .collect()
}
