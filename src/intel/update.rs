//! `ctem intel update`: download the feeds from their official addresses (or a mirror named by
//! `CTEM_INTEL_MIRROR`), then load them exactly as `ctem intel load` would. Proxies come from
//! `HTTPS_PROXY`/`NO_PROXY`; TLS is always verified; plain http is accepted only for loopback mirrors.

use super::{load_file, Loaded, MAX_FEED_BYTES};
use crate::store::Store;
use anyhow::{anyhow, bail};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const SOURCES: &[(&str, &str)] = &[
    ("kev", "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json"),
    ("epss", "https://epss.empiricalsecurity.com/epss_scores-current.csv.gz"),
    ("attack", "https://raw.githubusercontent.com/mitre/cti/master/enterprise-attack/enterprise-attack.json"),
    ("capec", "https://raw.githubusercontent.com/mitre/cti/master/capec/2.1/stix-capec.json"),
    // CTID Mappings Explorer publishes each mapping release under its own versioned path; these are the
    // releases this version of ctem knows (newer ones load with `ctem intel load`).
    ("ctid:kev", "https://raw.githubusercontent.com/center-for-threat-informed-defense/mappings-explorer/main/mappings/kev/attack-16.1/kev-07.28.2025/enterprise/kev-07.28.2025_attack-16.1-enterprise.json"),
    ("ctid:aws", "https://raw.githubusercontent.com/center-for-threat-informed-defense/mappings-explorer/main/mappings/aws/attack-16.1/aws-12.12.2024/enterprise/aws-12.12.2024_attack-16.1-enterprise.json"),
    ("ctid:azure", "https://raw.githubusercontent.com/center-for-threat-informed-defense/mappings-explorer/main/mappings/azure/attack-16.1/azure-04.26.2025/enterprise/azure-04.26.2025_attack-16.1-enterprise.json"),
    ("ctid:gcp", "https://raw.githubusercontent.com/center-for-threat-informed-defense/mappings-explorer/main/mappings/gcp/attack-16.1/gcp-03.06.2025/enterprise/gcp-03.06.2025_attack-16.1-enterprise.json"),
    ("ctid:m365", "https://raw.githubusercontent.com/center-for-threat-informed-defense/mappings-explorer/main/mappings/m365/attack-16.1/m365-07.18.2025/enterprise/m365-07.18.2025_attack-16.1-enterprise.json"),
    ("ctid:nist_800_53", "https://raw.githubusercontent.com/center-for-threat-informed-defense/mappings-explorer/main/mappings/nist_800_53/attack-16.1/nist_800_53-rev5/enterprise/nist_800_53-rev5_attack-16.1-enterprise.json"),
];

pub struct Outcome {
    pub feed: &'static str,
    pub url: String,
    pub result: Result<Loaded, String>,
}

fn file_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or("feed")
}

/// The address to fetch a feed from: the official one, or the same file name under a mirror.
pub fn url_for(official: &str, mirror: Option<&str>) -> anyhow::Result<String> {
    let url = match mirror {
        Some(m) => format!("{}/{}", m.trim_end_matches('/'), file_name(official)),
        None => official.to_string(),
    };
    let parsed = reqwest::Url::parse(&url).map_err(|e| anyhow!("{url}: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            let host = parsed.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
            let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false);
            if !loopback {
                bail!("{url}: plain http is accepted only for loopback addresses; use https");
            }
        }
        s => bail!("{url}: unsupported scheme {s}"),
    }
    Ok(url)
}

/// Whether an error means the network is not there (as opposed to a server answering badly).
fn unreachable(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout()
}

async fn fetch(client: &reqwest::Client, url: &str, dest: &Path) -> Result<(), (bool, String)> {
    use std::io::Write;
    let resp = client.get(url).send().await.map_err(|e| (unreachable(&e), format!("{url}: {}", short(&e))))?;
    if !resp.status().is_success() {
        return Err((false, format!("{url}: server answered {}", resp.status())));
    }
    let tmp = dest.with_extension("part");
    let mut f = std::fs::File::create(&tmp).map_err(|e| (false, format!("{}: {e}", tmp.display())))?;
    let mut resp = resp;
    let mut total = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| (unreachable(&e), format!("{url}: download broken: {}", short(&e))))? {
        total += chunk.len() as u64;
        if total > MAX_FEED_BYTES {
            let _ = std::fs::remove_file(&tmp);
            return Err((false, format!("{url}: larger than {} MB; refused", MAX_FEED_BYTES >> 20)));
        }
        f.write_all(&chunk).map_err(|e| (false, format!("{}: {e}", tmp.display())))?;
    }
    f.flush().map_err(|e| (false, format!("{}: {e}", tmp.display())))?;
    drop(f);
    std::fs::rename(&tmp, dest).map_err(|e| (false, format!("{}: {e}", dest.display())))?;
    Ok(())
}

/// The first line of an HTTP error, without any URL credentials (reqwest strips them) or body.
fn short(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s.lines().next().unwrap_or("").to_string()
}

/// Download every feed into `cache` and load it. Returns one outcome per feed and whether the network
/// was unreachable for all of them.
pub fn run(store: &Store, cache: &Path, mirror: Option<&str>) -> anyhow::Result<(Vec<Outcome>, bool)> {
    std::fs::create_dir_all(cache).map_err(|e| anyhow!("{}: {e}", cache.display()))?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
        .user_agent(concat!("ctem/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut out = Vec::new();
    let mut offline = 0;
    // A host that could not be reached is not tried again for the next feeds (no long wait per feed).
    let mut unreachable_hosts: Vec<(String, String)> = Vec::new();
    for (feed, official) in SOURCES {
        let url = url_for(official, mirror)?;
        let dest: PathBuf = cache.join(file_name(&url));
        let host = reqwest::Url::parse(&url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
        let got = match unreachable_hosts.iter().find(|(h, _)| *h == host) {
            Some((_, msg)) => Err((true, format!("{url}: not tried, {host} was unreachable ({msg})"))),
            None => rt.block_on(fetch(&client, &url, &dest)),
        };
        if let Err((true, msg)) = &got {
            if !unreachable_hosts.iter().any(|(h, _)| *h == host) {
                unreachable_hosts.push((host.clone(), msg.rsplit(": ").next().unwrap_or("").to_string()));
            }
        }
        let result = match got {
            Ok(()) => load_file(store, &dest).map_err(|e| e.to_string()),
            Err((net, msg)) => {
                if net {
                    offline += 1;
                }
                Err(msg)
            }
        };
        out.push(Outcome { feed, url, result });
    }
    Ok((out, offline == SOURCES.len()))
}
