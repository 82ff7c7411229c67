//! Prowler OCSF JSON (Detection Finding, class 2004). FAIL results are findings; PASS/MANUAL are not.

use super::jsonstream::Scanner;
use super::{nonempty, parse_time, ParseError, Sink};
use crate::model::{AssetKind, Category, IdKind, RawAsset, RawFinding, Severity};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::BufRead;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Ocsf {
    message: Option<String>,
    metadata: Option<Meta>,
    severity: Option<String>,
    status_code: Option<String>,
    finding_info: Option<Info>,
    resources: Vec<Resource>,
    cloud: Option<Cloud>,
    remediation: Option<Remediation>,
    risk_details: Option<String>,
    time_dt: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Meta {
    event_code: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Info {
    uid: Option<String>,
    title: Option<String>,
    desc: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Resource {
    uid: Option<String>,
    name: Option<String>,
    region: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Cloud {
    account: Option<Account>,
    provider: Option<String>,
    region: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Account {
    uid: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Remediation {
    desc: Option<String>,
}

pub fn parse(input: &mut dyn BufRead, sink: &mut dyn Sink) -> Result<(), ParseError> {
    let mut assets: HashMap<String, u32> = HashMap::new();
    let mut latest = None;
    let mut n = 0usize;
    let mut s = Scanner::new(input);
    if s.array()? {
        while s.element()? {
            let o: Ocsf = s.value()?;
            let i = n;
            n += 1;
            if let Some(t) = o.time_dt.as_deref().and_then(parse_time) {
                if latest.is_none_or(|l| t > l) {
                    latest = Some(t);
                }
            }
            if o.status_code.as_deref() != Some("FAIL") {
                continue;
            }
            let check = o.metadata.as_ref().and_then(|m| m.event_code.clone()).unwrap_or_default();
            if check.is_empty() {
                sink.skip(format!("finding {i}"), "FAIL result without metadata.event_code".into(), o.message.clone().unwrap_or_default());
                continue;
            }
            let account = o.cloud.as_ref().and_then(|c| c.account.as_ref()).and_then(|a| a.uid.clone());
            let provider = o.cloud.as_ref().and_then(|c| c.provider.clone());
            let res = o.resources.first();
            let uid = res
                .and_then(|r| r.uid.clone())
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| format!("{}:{}", provider.clone().unwrap_or_default(), account.clone().unwrap_or_default()));
            let region = res.and_then(|r| r.region.clone()).or_else(|| o.cloud.as_ref().and_then(|c| c.region.clone()));
            let idx = *assets.entry(uid.clone()).or_insert_with(|| {
                let name = res.and_then(|r| r.name.clone()).filter(|n| !n.is_empty()).unwrap_or_else(|| uid.clone());
                let mut a = RawAsset::named(AssetKind::CloudResource, name);
                a.ids.push((IdKind::CloudId, uid.clone()));
                a.cloud_provider = provider.clone();
                a.account = account.clone();
                a.region = region.clone();
                if let Some(k) = res.and_then(|r| r.kind.clone()) {
                    a.tags.push(format!("type:{k}"));
                }
                sink.asset(a)
            });
            let info = o.finding_info.as_ref();
            let title = info.and_then(|f| f.title.clone()).unwrap_or_else(|| check.clone());
            let mut f = RawFinding::new(idx, check.clone(), title, Category::Misconfiguration);
            let raw = o.severity.clone().unwrap_or_default();
            f.severity = Severity::parse_loose(&raw).unwrap_or(Severity::Medium);
            f.raw_severity = raw;
            f.description = match (nonempty(o.message.clone()), nonempty(o.risk_details.clone())) {
                (Some(m), Some(r)) => Some(format!("{m}\n\n{r}")),
                (m, r) => m.or(r).or_else(|| info.and_then(|f| f.desc.clone())),
            };
            f.solution = o.remediation.as_ref().and_then(|r| nonempty(r.desc.clone()));
            f.location = Some(uid.clone());
            f.raw_id = info.and_then(|f| f.uid.clone()).unwrap_or_else(|| format!("{check}|{uid}"));
            sink.finding(f);
        }
    }
    s.end()?;
    if let Some(t) = latest {
        sink.scan_time(t);
    }
    Ok(())
}
