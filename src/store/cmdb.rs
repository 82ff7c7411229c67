//! CMDB asset import (`ctem import-assets`): owners, business units, environments, criticality,
//! internet exposure and tags, merged with scanner-discovered assets by identity. One transaction.

use crate::ingest::tenable_csv::{csv_err, reader, Header};
use crate::model::{AssetKind, IdKind, RawAsset};
use crate::store::Store;
use duckdb::params;
use serde::Deserialize;
use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;

/// Optional column mapping (`[columns] owner = "managed_by"`): our field -> header in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetMapping {
    #[serde(default)]
    pub columns: HashMap<String, String>,
}

const FIELDS: &[(&str, &[&str])] = &[
    ("name", &["name", "asset_name", "asset", "display_name"]),
    ("kind", &["kind", "type", "asset_type"]),
    ("hostname", &["hostname", "host_name", "host", "netbios"]),
    ("fqdn", &["fqdn", "dns", "dns_name"]),
    ("ip", &["ip", "ips", "ip_address", "ipv4"]),
    ("os", &["os", "operating_system"]),
    ("cloud_provider", &["cloud_provider", "provider"]),
    ("account", &["account", "cloud_account", "account_id"]),
    ("region", &["region"]),
    ("cloud_id", &["cloud_id", "resource_id", "ec2_identifier", "arn", "instance_id"]),
    ("image", &["image", "image_ref"]),
    ("workload", &["workload", "k8s_workload"]),
    ("image_digest", &["image_digest", "digest"]),
    ("repo_url", &["repo_url", "repository", "repository_url"]),
    ("url", &["url", "web_url"]),
    ("environment", &["environment", "env"]),
    ("business_unit", &["business_unit", "bu", "department"]),
    ("owner", &["owner", "owned_by", "managed_by", "team"]),
    ("criticality", &["criticality", "business_criticality", "tier"]),
    ("internet_facing", &["internet_facing", "external", "public", "exposure"]),
    ("tags", &["tags", "labels"]),
];

pub struct CmdbSummary {
    pub rows: usize,
    pub new: usize,
    pub matched: usize,
    pub skipped: Vec<String>,
}

fn parse_criticality(s: &str) -> Option<i32> {
    let t = s.trim().to_ascii_lowercase();
    match t.as_str() {
        "critical" | "crown jewel" | "tier0" | "tier 0" => Some(5),
        "high" | "tier1" | "tier 1" => Some(4),
        "medium" | "moderate" | "tier2" | "tier 2" => Some(3),
        "low" | "tier3" | "tier 3" => Some(2),
        "minimal" | "none" | "tier4" | "tier 4" => Some(1),
        _ => t.parse::<i32>().ok().filter(|v| (1..=5).contains(v)),
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" | "external" | "public" | "internet" => Some(true),
        "false" | "no" | "n" | "0" | "internal" | "private" => Some(false),
        _ => None,
    }
}

struct Row {
    a: RawAsset,
    environment: Option<String>,
    business_unit: Option<String>,
    owner: Option<String>,
    criticality: Option<i32>,
    internet_facing: Option<bool>,
}

pub fn import_assets(store: &Store, path: &Path, mapping: Option<&AssetMapping>) -> anyhow::Result<CmdbSummary> {
    if store.read_only {
        anyhow::bail!("the database is open read-only");
    }
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut input = BufReader::new(file);
    let mut rdr = reader(&mut input, None).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut recs = rdr.records();
    let header = match recs.next() {
        Some(Ok(h)) => Header::new(&h),
        Some(Err(e)) => anyhow::bail!("{}: {}", path.display(), csv_err(&e)),
        None => anyhow::bail!("{}: line 1: empty file", path.display()),
    };
    let mut cols: HashMap<&str, usize> = HashMap::new();
    for (field, aliases) in FIELDS {
        let explicit = mapping.and_then(|m| m.columns.get(*field));
        let idx = match explicit {
            Some(h) => Some(header.find(&[h.as_str()]).ok_or_else(|| {
                anyhow::anyhow!("{}: line 1: the mapping names column '{h}' for {field}, which the header does not have", path.display())
            })?),
            None => header.find(aliases),
        };
        if let Some(i) = idx {
            cols.insert(field, i);
        }
    }
    if let Some(m) = mapping {
        for k in m.columns.keys() {
            if !FIELDS.iter().any(|(f, _)| f == k) {
                anyhow::bail!("mapping: unknown field '{k}' (known: {})", FIELDS.iter().map(|f| f.0).collect::<Vec<_>>().join(", "));
            }
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut skipped = Vec::new();
    for rec in recs {
        let rec = rec.map_err(|e| anyhow::anyhow!("{}: {}", path.display(), csv_err(&e)))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let get = |f: &str| cols.get(f).and_then(|&i| rec.get(i)).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        let kind = match get("kind") {
            Some(k) => match AssetKind::parse(&k) {
                Some(k) => k,
                None => {
                    skipped.push(format!("line {line}: unknown asset kind '{k}'"));
                    continue;
                }
            },
            None => AssetKind::Host,
        };
        let mut a = RawAsset::named(kind, get("name").unwrap_or_default());
        a.hostname = get("hostname");
        a.fqdn = get("fqdn");
        if let Some(ips) = get("ip") {
            a.ips = ips.split([',', ';', ' ']).filter(|s| !s.is_empty()).map(str::to_string).collect();
        }
        a.os = get("os");
        a.cloud_provider = get("cloud_provider");
        a.account = get("account");
        a.region = get("region");
        if let Some(t) = get("tags") {
            a.tags = t.split([',', ';', '|']).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        }
        for (f, k) in [("cloud_id", IdKind::CloudId), ("image", IdKind::ImageRef), ("image_digest", IdKind::ImageDigest), ("repo_url", IdKind::RepoUrl), ("url", IdKind::WebUrl), ("workload", IdKind::Workload)] {
            if let Some(v) = get(f) {
                a.ids.push((k, v));
            }
        }
        if a.name.is_empty() {
            a.name = a.fqdn.clone().or(a.hostname.clone()).or(a.ips.first().cloned()).unwrap_or_default();
        }
        if a.identifiers().is_empty() {
            skipped.push(format!("line {line}: no name, hostname, FQDN, IP or resource id to identify the asset"));
            continue;
        }
        let crit = get("criticality");
        let criticality = match &crit {
            Some(c) => match parse_criticality(c) {
                Some(v) => Some(v),
                None => {
                    skipped.push(format!("line {line}: criticality '{c}' is not 1-5 or critical/high/medium/low/minimal"));
                    continue;
                }
            },
            None => None,
        };
        rows.push(Row {
            a,
            environment: get("environment").map(|e| e.to_ascii_lowercase()),
            business_unit: get("business_unit"),
            owner: get("owner"),
            criticality,
            internet_facing: get("internet_facing").and_then(|v| parse_bool(&v)),
        });
    }
    let c = &store.conn;
    c.execute_batch("BEGIN TRANSACTION")?;
    let r = (|| -> anyhow::Result<(usize, usize)> {
        c.execute_batch(
            r#"CREATE OR REPLACE TABLE stage_cmdb (rn INTEGER, name VARCHAR, kind VARCHAR, hostname VARCHAR, fqdn VARCHAR, ips VARCHAR,
                 os VARCHAR, cloud_provider VARCHAR, account VARCHAR, region VARCHAR, environment VARCHAR, business_unit VARCHAR,
                 owner VARCHAR, criticality INTEGER, internet_facing BOOLEAN, tags VARCHAR);
               CREATE OR REPLACE TABLE stage_cmdb_ids (rn INTEGER, id_kind VARCHAR, id_value VARCHAR);"#,
        )?;
        {
            let mut ar = c.appender("stage_cmdb")?;
            let mut ai = c.appender("stage_cmdb_ids")?;
            for (i, r) in rows.iter().enumerate() {
                let a = &r.a;
                ar.append_row(params![
                    i as i64,
                    a.name,
                    a.kind.map(|k| k.as_str()).unwrap_or("host"),
                    a.hostname.as_ref().map(|h| h.to_ascii_lowercase()),
                    a.fqdn.as_ref().map(|h| h.to_ascii_lowercase()),
                    a.ips.join(","),
                    a.os,
                    a.cloud_provider,
                    a.account,
                    a.region,
                    r.environment,
                    r.business_unit,
                    r.owner,
                    r.criticality,
                    r.internet_facing,
                    a.tags.join(",")
                ])?;
                for (k, v) in a.identifiers() {
                    ai.append_row(params![i as i64, k.as_str(), v])?;
                }
            }
            ar.flush()?;
            ai.flush()?;
        }
        c.execute_batch(
            r#"CREATE OR REPLACE TABLE stage_cmap AS
               WITH m AS (SELECT s.rn, min(i.asset_id) AS asset_id FROM stage_cmdb_ids s
                          JOIN asset_identifiers i ON i.id_kind = s.id_kind AND i.id_value = s.id_value GROUP BY s.rn)
               SELECT c.rn, m.asset_id, m.asset_id IS NULL AS is_new FROM stage_cmdb c LEFT JOIN m USING (rn);"#,
        )?;
        c.execute_batch(&super::number_new_assets("stage_cmap", "rn"))?;
        let lists = |col: &str| format!("CASE WHEN {col} = '' THEN []::VARCHAR[] ELSE string_split({col}, ',') END");
        let new = c.execute(
            &format!(
                r#"INSERT INTO assets (asset_id, name, kind, hostname, fqdn, ips, os, cloud_provider, account, region, environment,
                      business_unit, owner, criticality, internet_facing, tags, sources, in_cmdb)
                   SELECT m.asset_id, s.name, s.kind, s.hostname, s.fqdn, {}, s.os, s.cloud_provider, s.account, s.region,
                      s.environment, s.business_unit, s.owner, s.criticality, s.internet_facing, {}, ['cmdb'], true
                   FROM stage_cmap m JOIN stage_cmdb s USING (rn) WHERE m.is_new"#,
                lists("s.ips"),
                lists("s.tags")
            ),
            [],
        )?;
        let matched = c.execute(
            &format!(
                r#"UPDATE assets a SET
                     name = s.name, kind = s.kind,
                     hostname = coalesce(s.hostname, a.hostname), fqdn = coalesce(s.fqdn, a.fqdn),
                     ips = list_sort(list_distinct(list_concat(a.ips, {ips}))),
                     os = coalesce(a.os, s.os), cloud_provider = coalesce(s.cloud_provider, a.cloud_provider),
                     account = coalesce(s.account, a.account), region = coalesce(s.region, a.region),
                     environment = coalesce(s.environment, a.environment), business_unit = coalesce(s.business_unit, a.business_unit),
                     owner = coalesce(s.owner, a.owner), criticality = coalesce(s.criticality, a.criticality),
                     internet_facing = coalesce(s.internet_facing, a.internet_facing),
                     tags = list_sort(list_distinct(list_concat(a.tags, {tags}))),
                     sources = CASE WHEN list_contains(a.sources, 'cmdb') THEN a.sources ELSE list_append(a.sources, 'cmdb') END,
                     in_cmdb = true
                   FROM (SELECT DISTINCT ON (m.asset_id) m.asset_id, s.* FROM stage_cmap m JOIN stage_cmdb s USING (rn) WHERE NOT m.is_new ORDER BY m.asset_id, s.rn) s
                   WHERE a.asset_id = s.asset_id"#,
                ips = lists("s.ips"),
                tags = lists("s.tags")
            ),
            [],
        )?;
        c.execute_batch(
            r#"INSERT INTO asset_identifiers
               SELECT DISTINCT m.asset_id, s.id_kind, s.id_value, 'cmdb', current_timestamp::TIMESTAMP
               FROM stage_cmdb_ids s JOIN stage_cmap m USING (rn)
               WHERE NOT EXISTS (SELECT 1 FROM asset_identifiers i WHERE i.id_kind = s.id_kind AND i.id_value = s.id_value);
               UPDATE findings f SET asset_name = a.name FROM assets a
               WHERE f.asset_id = a.asset_id AND f.asset_name IS DISTINCT FROM a.name
                 AND a.asset_id IN (SELECT asset_id FROM stage_cmap);
               DROP TABLE stage_cmdb; DROP TABLE stage_cmdb_ids; DROP TABLE stage_cmap;"#,
        )?;
        Ok((new, matched))
    })();
    match r {
        Ok((new, matched)) => {
            c.execute_batch("COMMIT")?;
            // Criticality, exposure and environment feed the risk score.
            crate::risk::rescore_store_changed(store).map_err(|e| anyhow::anyhow!("{}: assets imported, but rescoring failed: {e}", path.display()))?;
            Ok(CmdbSummary { rows: rows.len(), new, matched, skipped })
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(anyhow::anyhow!("{}: {e}", path.display()))
        }
    }
}
