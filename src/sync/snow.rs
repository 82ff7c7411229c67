//! ServiceNow Table API: a configurable table (`incident` by default), `correlation_id` carrying the
//! work item's fingerprint from the create call on, `assignment_group` from routing, states from
//! configuration, offset paging in a stable order, and the API's habits: every value a string, an empty
//! query sometimes answered with 404, unknown fields ignored (so the created record is checked).

use super::http::{CallError, Http};
use super::{NewTicket, Remote};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub struct Snow {
    pub base: reqwest::Url,
    pub http: Http,
    pub table: String,
    /// Local work item status -> the table's state value.
    pub states: BTreeMap<String, String>,
    /// Remote states that mean fixed / resolved, and those that mean open again.
    pub fixed_states: Vec<String>,
    pub open_states: Vec<String>,
    pub close_code: String,
    /// More fields for every created record (`[servicenow.fields]`).
    pub fields: BTreeMap<String, Value>,
    /// sys_id of each assignee looked up in `sys_user` this run (None: no such active user).
    pub users: std::sync::Mutex<std::collections::HashMap<String, Option<String>>>,
}

const FIELDS: &str = "sys_id,number,state,assigned_to,assignment_group,correlation_id,close_code,sys_updated_on";

fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        // A reference field: {link, value}, or {display_value, value}.
        Some(Value::Object(o)) => o.get("display_value").or_else(|| o.get("value")).and_then(Value::as_str).unwrap_or("").to_string(),
        Some(Value::Null) | None => String::new(),
        Some(x) => x.to_string(),
    }
}

impl Snow {
    fn table_url(&self, sys_id: Option<&str>) -> reqwest::Url {
        let mut u = self.base.clone();
        let p = match sys_id {
            Some(id) => format!("{}/api/now/table/{}/{id}", self.base.path().trim_end_matches('/'), self.table),
            None => format!("{}/api/now/table/{}", self.base.path().trim_end_matches('/'), self.table),
        };
        u.set_path(&p);
        u
    }

    fn remote(&self, r: &Value) -> Remote {
        let number = s(r, "number");
        let sys_id = s(r, "sys_id");
        Remote {
            fingerprint: s(r, "correlation_id"),
            url: format!("{}/nav_to.do?uri={}.do?sys_id={sys_id}", self.base.as_str().trim_end_matches('/'), self.table),
            key: if number.is_empty() { sys_id.clone() } else { number },
            id: sys_id,
            status: s(r, "state"),
            category: s(r, "state"),
            assignee: Some(s(r, "assigned_to")).filter(|a| !a.is_empty()),
            resolution: Some(s(r, "close_code")).filter(|a| !a.is_empty()),
            updated: s(r, "sys_updated_on"),
            comments: None,
        }
    }

    /// sys_id of the active user whose user name or e-mail is `who`, cached per run.
    pub async fn user(&self, who: &str) -> Result<Option<String>, CallError> {
        if let Some(v) = self.users.lock().expect("cache").get(who) {
            return Ok(v.clone());
        }
        // `^` separates terms of an encoded query: a name holding one cannot be looked up safely.
        if who.contains('^') {
            return Ok(None);
        }
        let mut u = self.base.clone();
        u.set_path(&format!("{}/api/now/table/sys_user", self.base.path().trim_end_matches('/')));
        u.query_pairs_mut()
            .append_pair("sysparm_query", &format!("active=true^user_name={who}^ORemail={who}"))
            .append_pair("sysparm_fields", "sys_id")
            .append_pair("sysparm_limit", "1");
        let (st, v) = self.http.call_accepting(Method::GET, &u, None, true, &[404]).await?;
        let id = if st.as_u16() == 404 {
            None
        } else {
            v.pointer("/result/0/sys_id").and_then(Value::as_str).map(String::from)
        };
        self.users.lock().expect("cache").insert(who.to_string(), id.clone());
        Ok(id)
    }

    /// The record for a work item (also what `--dry-run` prints). Values are strings, as the API wants.
    /// `user`: the assignee's sys_id, when `sys_user` knows them.
    pub fn create_body(&self, t: &NewTicket, user: Option<&str>) -> Value {
        let (impact, urgency) = match t.priority.as_deref() {
            Some("P1") => ("1", "1"),
            Some("P2") => ("1", "2"),
            Some("P3") => ("2", "2"),
            _ => ("3", "3"),
        };
        let mut text = String::new();
        for (h, lines) in &t.sections {
            text.push_str(h);
            text.push('\n');
            for l in lines {
                text.push_str(&format!("  - {l}\n"));
            }
        }
        if let Some(p) = &t.plan {
            text.push_str("\nFix plan\n");
            text.push_str(p);
        }
        let mut b = json!({
            "short_description": t.title.chars().take(160).collect::<String>(),
            "description": text,
            "correlation_id": t.fingerprint,
            "correlation_display": "ctem",
            "impact": impact,
            "urgency": urgency,
        });
        if let Some(g) = &t.group {
            b["assignment_group"] = json!(g);
        }
        if let Some(u) = user {
            b["assigned_to"] = json!(u);
        }
        if let Some(d) = t.due {
            b["due_date"] = json!(format!("{} 23:59:59", d.format("%Y-%m-%d")));
        }
        if let Some(st) = self.states.get("new") {
            b["state"] = json!(st);
        }
        for (k, v) in super::fill_fields(&self.fields, t) {
            // The Table API takes strings.
            b[k] = match v {
                Value::String(s) => Value::String(s),
                other => Value::String(other.to_string()),
            };
        }
        b
    }

    pub async fn create(&self, t: &NewTicket) -> Result<Remote, CallError> {
        let mut u = self.table_url(None);
        u.query_pairs_mut().append_pair("sysparm_fields", FIELDS).append_pair("sysparm_exclude_reference_link", "true");
        // An assignee the instance does not know (or may not be looked up) leaves the record unassigned.
        let user = match &t.assignee {
            Some(a) => match self.user(a).await {
                Ok(u) => u,
                Err(CallError::Interrupted) => return Err(CallError::Interrupted),
                Err(e) => {
                    tracing::warn!("servicenow: looking up the assignee in sys_user: {e}");
                    None
                }
            },
            None => None,
        };
        let (_, v) = self.http.call(Method::POST, &u, Some(&self.create_body(t, user.as_deref())), false).await?;
        let r = v.get("result").cloned().unwrap_or(Value::Null);
        let remote = self.remote(&r);
        if remote.id.is_empty() {
            return Err(CallError::Uncertain("the created record came back without a sys_id".into()));
        }
        if remote.fingerprint != t.fingerprint {
            // Unknown fields are ignored, not refused: without correlation_id duplicates cannot be ruled out.
            return Err(CallError::Refused { status: 201, message: format!("{} {} was created but the table kept no correlation_id; check the table's fields", self.table, remote.key) });
        }
        Ok(remote)
    }

    async fn query(&self, q: &str) -> Result<Vec<Remote>, CallError> {
        let mut out = Vec::new();
        let limit = 100usize;
        let mut offset = 0usize;
        loop {
            let mut u = self.table_url(None);
            u.query_pairs_mut()
                .append_pair("sysparm_query", q)
                .append_pair("sysparm_fields", FIELDS)
                .append_pair("sysparm_exclude_reference_link", "true")
                .append_pair("sysparm_limit", &limit.to_string())
                .append_pair("sysparm_offset", &offset.to_string());
            // Some instances answer "nothing matched" (or an offset past the end) with 404.
            let (st, v) = self.http.call_accepting(Method::GET, &u, None, true, &[404]).await?;
            if st.as_u16() == 404 {
                break;
            }
            let rows = v.get("result").and_then(Value::as_array).cloned().unwrap_or_default();
            let n = rows.len();
            out.extend(rows.iter().map(|r| self.remote(r)).filter(|r| r.fingerprint.starts_with("ctem-")));
            if n < limit {
                break;
            }
            offset += n;
        }
        Ok(out)
    }

    pub async fn find(&self, fingerprints: &[String]) -> Result<Vec<Remote>, CallError> {
        if fingerprints.is_empty() {
            return Ok(Vec::new());
        }
        self.query(&format!("correlation_idIN{}^ORDERBYsys_id", fingerprints.join(","))).await
    }

    /// Records ctem created, changed since `since` (`YYYY-MM-DD HH:MM:SS`, UTC), oldest first.
    pub async fn changed_since(&self, since: Option<&str>) -> Result<Vec<Remote>, CallError> {
        let q = match since {
            Some(w) => format!("correlation_idSTARTSWITHctem-^sys_updated_on>={w}^ORDERBYsys_updated_on^ORDERBYsys_id"),
            None => "correlation_idSTARTSWITHctem-^ORDERBYsys_updated_on^ORDERBYsys_id".to_string(),
        };
        self.query(&q).await
    }

    /// Set the state for a local status (and, when resolving, the close code and notes incidents need).
    pub async fn set_state(&self, sys_id: &str, local: &str, note: Option<&str>) -> Result<String, CallError> {
        let Some(state) = self.states.get(local) else {
            return Err(CallError::Refused { status: 400, message: format!("no ServiceNow state is configured for '{local}' ([servicenow.states])") });
        };
        let mut b = json!({"state": state});
        if self.fixed_states.contains(state) {
            b["close_code"] = json!(self.close_code);
            b["close_notes"] = json!(note.unwrap_or("Fixed; ctem confirms it with the next rescan"));
        }
        if let Some(n) = note {
            b["work_notes"] = json!(n);
        }
        let u = self.table_url(Some(sys_id));
        self.http.call(Method::PATCH, &u, Some(&b), true).await?;
        Ok(state.clone())
    }

    pub async fn comment(&self, sys_id: &str, text: &str) -> Result<(), CallError> {
        let u = self.table_url(Some(sys_id));
        self.http.call(Method::PATCH, &u, Some(&json!({"work_notes": text})), false).await?;
        Ok(())
    }
}
