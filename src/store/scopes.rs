//! Named scopes: asset filters kept in the store, which every view can be narrowed to.

use crate::query::Compiled;
use crate::store::views::{compile_scope, param_value};
use duckdb::{params, Connection};

#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    pub id: i64,
    pub name: String,
    pub filter: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScopeCounts {
    pub scope: Scope,
    pub assets: i64,
    pub open_findings: i64,
    pub critical: i64,
    /// The filter no longer compiles (a field was renamed): shown, not hidden.
    pub error: Option<String>,
}

pub fn list(c: &Connection) -> Result<Vec<Scope>, duckdb::Error> {
    let mut st = c.prepare("SELECT scope_id, name, filter, coalesce(description, '') FROM scopes ORDER BY lower(name)")?;
    let v = st
        .query_map([], |r| Ok(Scope { id: r.get(0)?, name: r.get(1)?, filter: r.get(2)?, description: r.get(3)? }))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v)
}

pub fn get(c: &Connection, name: &str) -> Result<Option<Scope>, duckdb::Error> {
    Ok(list(c)?.into_iter().find(|s| s.name.eq_ignore_ascii_case(name)))
}

/// Counts of what a compiled scope covers.
pub fn counts(c: &Connection, scope: &Compiled) -> Result<(i64, i64, i64), duckdb::Error> {
    let mut p: Vec<duckdb::types::Value> = scope.params.iter().map(param_value).collect();
    p.extend(scope.params.iter().map(param_value));
    let sql = format!(
        "SELECT (SELECT count(*) FROM assets WHERE {0}),
                count(*), count(*) FILTER (WHERE severity = 'critical')
         FROM findings WHERE status IN ('open', 'reopened') AND asset_id IN (SELECT asset_id FROM assets WHERE {0})",
        scope.sql
    );
    c.query_row(&sql, duckdb::params_from_iter(p.iter()), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
}

pub fn list_with_counts(c: &Connection, now: chrono::NaiveDateTime) -> Result<Vec<ScopeCounts>, duckdb::Error> {
    let mut out = Vec::new();
    for s in list(c)? {
        match compile_scope(&s.filter, now) {
            Ok(comp) => {
                let (a, f, cr) = counts(c, &comp)?;
                out.push(ScopeCounts { scope: s, assets: a, open_findings: f, critical: cr, error: None });
            }
            Err(e) => out.push(ScopeCounts { scope: s, assets: 0, open_findings: 0, critical: 0, error: Some(e.to_string()) }),
        }
    }
    Ok(out)
}

/// Create or replace a scope by name, as of `now`. The filter must compile against the asset fields.
pub fn save(c: &Connection, name: &str, filter: &str, description: &str, now: chrono::NaiveDateTime) -> anyhow::Result<()> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 || name.chars().any(|ch| ch.is_control()) {
        anyhow::bail!("a scope needs a name of 1 to 64 printable characters");
    }
    compile_scope(filter, now).map_err(|e| anyhow::anyhow!("scope filter {e}"))?;
    match get(c, name)? {
        Some(s) => {
            c.execute(
                "UPDATE scopes SET name = ?, filter = ?, description = ?, updated_at = ? WHERE scope_id = ?",
                params![name, filter.trim(), description.trim(), now, s.id],
            )?;
        }
        None => {
            c.execute(
                "INSERT INTO scopes VALUES (nextval('seq_scope'), ?, ?, ?, ?, ?)",
                params![name, filter.trim(), description.trim(), now, now],
            )?;
        }
    }
    Ok(())
}

pub fn delete(c: &Connection, name: &str) -> Result<bool, duckdb::Error> {
    Ok(c.execute("DELETE FROM scopes WHERE lower(name) = lower(?)", params![name])? > 0)
}
