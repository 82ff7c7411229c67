//! HTTP for the trackers: one client per tracker, credentials that never print, `Retry-After` honoured
//! however long, exponential backoff with jitter otherwise, and a clear line between what may be
//! retried and what is uncertain. A request that was not sent (connection refused) and a read that
//! failed are retried; a create whose answer was lost is *uncertain*: the caller searches for it by
//! fingerprint before it tries again, never blindly.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A credential: `Debug` and `Display` print `[REDACTED]`.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The tracker refused the request (4xx): retrying the same request cannot help.
    Refused { status: u16, message: String },
    /// Sent, and what happened is unknown (timeout, connection dropped, 5xx after sending).
    Uncertain(String),
    /// Could not be sent at all, after retrying.
    Unreachable(String),
    /// The run's call budget is spent (a test stands in for a killed process this way).
    Interrupted,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Refused { status, message } => write!(f, "refused ({status}): {message}"),
            CallError::Uncertain(m) => write!(f, "outcome unknown: {m}"),
            CallError::Unreachable(m) => write!(f, "unreachable: {m}"),
            CallError::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// Retry policy. `backoff` is the first wait; each retry doubles it (with up to as much again of jitter).
#[derive(Debug, Clone)]
pub struct Policy {
    pub max_retries: u32,
    pub backoff: Duration,
    pub timeout: Duration,
    /// Stop after this many calls (None: no limit).
    pub call_budget: Option<usize>,
    /// Counts every call, for a progress display.
    pub progress: Option<std::sync::Arc<AtomicUsize>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { max_retries: 6, backoff: Duration::from_millis(500), timeout: Duration::from_secs(30), call_budget: None, progress: None }
    }
}

pub struct Http {
    client: reqwest::Client,
    user: String,
    secret: Secret,
    policy: Policy,
    calls: AtomicUsize,
    /// Requests retried after 429/503 and how long they waited, for the run's report.
    pub throttled: AtomicUsize,
}

/// Plain `http://` is for loopback addresses only (mock servers, local proxies); everything else is https.
pub fn check_url(url: &str, what: &str) -> Result<reqwest::Url, String> {
    let u = reqwest::Url::parse(url.trim_end_matches('/')).map_err(|e| format!("{what} url '{url}': {e}"))?;
    match u.scheme() {
        "https" => Ok(u),
        "http" => {
            let host = u.host_str().unwrap_or("");
            let loopback = host == "localhost" || host.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback { Ok(u) } else { Err(format!("{what} url '{url}': plain http is allowed only for loopback addresses; use https")) }
        }
        s => Err(format!("{what} url '{url}': unsupported scheme {s}")),
    }
}

/// A tracker's error body as one line: Jira `errorMessages`/`errors`, ServiceNow `error.message`/`detail`.
pub fn error_text(v: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(a) = v.get("errorMessages").and_then(Value::as_array) {
        parts.extend(a.iter().filter_map(Value::as_str).map(String::from));
    }
    if let Some(o) = v.get("errors").and_then(Value::as_object) {
        parts.extend(o.iter().map(|(k, m)| format!("{k}: {}", m.as_str().unwrap_or(&m.to_string()))));
    }
    if let Some(e) = v.get("error") {
        for k in ["message", "detail"] {
            if let Some(s) = e.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()) {
                parts.push(s.to_string());
            }
        }
    }
    let s = parts.join("; ");
    s.chars().take(300).collect()
}

impl Http {
    pub fn new(user: &str, secret: Secret, policy: Policy) -> anyhow::Result<Http> {
        // TLS is verified against the system's roots (with a custom CA bundle in SSL_CERT_FILE, as SOC
        // networks that intercept TLS need); HTTPS_PROXY / NO_PROXY are read from the environment.
        let client = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("ctem/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Http { client, user: user.to_string(), secret, policy, calls: AtomicUsize::new(0), throttled: AtomicUsize::new(0) })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    fn wait(&self, attempt: u32) -> Duration {
        let base = self.policy.backoff.saturating_mul(1u32 << attempt.min(10)).min(Duration::from_secs(60));
        base + Duration::from_millis(fastrand::u64(0..=base.as_millis() as u64))
    }

    /// One request with the retry policy. `idempotent` requests are retried after any failure; others
    /// only when the tracker said it did nothing (429, or 503 with Retry-After) or nothing was sent.
    pub async fn call(&self, method: Method, url: &reqwest::Url, body: Option<&Value>, idempotent: bool) -> Result<(StatusCode, Value), CallError> {
        self.call_accepting(method, url, body, idempotent, &[]).await
    }

    /// `call`, with these error statuses answered as results (a bulk create that failed as a whole
    /// still says which element failed why; ServiceNow answers an empty query with 404).
    pub async fn call_accepting(&self, method: Method, url: &reqwest::Url, body: Option<&Value>, idempotent: bool, accept: &[u16]) -> Result<(StatusCode, Value), CallError> {
        let mut attempt = 0u32;
        loop {
            if let Some(b) = self.policy.call_budget {
                if self.calls.load(Ordering::Relaxed) >= b {
                    return Err(CallError::Interrupted);
                }
            }
            self.calls.fetch_add(1, Ordering::Relaxed);
            if let Some(p) = &self.policy.progress {
                p.fetch_add(1, Ordering::Relaxed);
            }
            let mut rq = self.client.request(method.clone(), url.clone()).basic_auth(&self.user, Some(self.secret.expose())).header("Accept", "application/json");
            if let Some(b) = body {
                rq = rq.json(b);
            }
            match rq.send().await {
                Err(e) => {
                    let sent = !e.is_connect();
                    let msg = short(&e);
                    // A host that refuses connections is retried briefly; a dropped read longer.
                    let limit = if sent { self.policy.max_retries } else { self.policy.max_retries.min(2) };
                    if (!sent || idempotent) && attempt < limit {
                        tokio::time::sleep(self.wait(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(if sent { CallError::Uncertain(msg) } else { CallError::Unreachable(msg) });
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
                    let text = match resp.text().await {
                        Ok(t) => t,
                        Err(e) if idempotent && attempt < self.policy.max_retries => {
                            tokio::time::sleep(self.wait(attempt)).await;
                            attempt += 1;
                            let _ = e;
                            continue;
                        }
                        Err(e) => return Err(CallError::Uncertain(short(&e))),
                    };
                    let v: Value = if text.trim().is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text.chars().take(200).collect())) };
                    if status.is_success() || accept.contains(&status.as_u16()) {
                        return Ok((status, v));
                    }
                    let throttled = status == StatusCode::TOO_MANY_REQUESTS || (status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some());
                    if throttled && attempt < self.policy.max_retries.max(12) {
                        self.throttled.fetch_add(1, Ordering::Relaxed);
                        // However long the tracker asks for; backoff when it does not say.
                        let d = retry_after.map(Duration::from_secs).unwrap_or_else(|| self.wait(attempt));
                        tracing::info!("{} {} throttled ({}); waiting {:?}", method, url.path(), status.as_u16(), d);
                        tokio::time::sleep(d).await;
                        attempt += 1;
                        continue;
                    }
                    if status.is_server_error() {
                        if idempotent && attempt < self.policy.max_retries {
                            tokio::time::sleep(self.wait(attempt)).await;
                            attempt += 1;
                            continue;
                        }
                        return Err(CallError::Uncertain(format!("{} {}", status.as_u16(), error_text(&v))));
                    }
                    let mut message = error_text(&v);
                    if message.is_empty() {
                        message = status.canonical_reason().unwrap_or("error").to_string();
                    }
                    return Err(CallError::Refused { status: status.as_u16(), message });
                }
            }
        }
    }
}

/// An HTTP error in one line, without the URL's query (which never holds credentials here anyway).
fn short(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else {
        "connection failed"
    };
    match e.url() {
        Some(u) => format!("{kind} ({}{})", u.host_str().unwrap_or(""), u.path()),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[REDACTED] [REDACTED]");
    }

    #[test]
    fn http_only_for_loopback() {
        assert!(check_url("http://127.0.0.1:8080", "jira").is_ok());
        assert!(check_url("http://[::1]:8080", "jira").is_ok());
        assert!(check_url("http://localhost", "jira").is_ok());
        assert!(check_url("http://jira.example.com", "jira").unwrap_err().contains("only for loopback"));
        assert!(check_url("https://acme.atlassian.net/", "jira").is_ok());
    }

    #[test]
    fn error_bodies_become_one_line() {
        let j: Value = serde_json::json!({"errorMessages": ["Field 'priority' is required"], "errors": {"summary": "too long"}});
        assert_eq!(error_text(&j), "Field 'priority' is required; summary: too long");
        let s: Value = serde_json::json!({"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"});
        assert_eq!(error_text(&s), "User Not Authenticated; Required to provide Auth information");
    }
}
