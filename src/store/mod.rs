//! The DuckDB store: the only place SQL is built.

pub mod cmdb;
pub mod controls;
pub mod fasthash;
pub mod import;
pub mod output;
pub mod schema;
pub mod scopes;
pub mod sqlguard;
pub mod exceptions;
pub mod views;
pub mod work;

use duckdb::{AccessMode, Config, Connection};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database {path} is in use by another ctem process{holder}; close it, or open a copy with --db")]
    Locked { path: String, holder: String },
    #[error("cannot open database {path}: {msg}")]
    Open { path: String, msg: String },
    #[error("database {path} was written by a newer ctem (schema version {found}, this build knows up to {known})")]
    TooNew { path: String, found: i32, known: i32 },
    #[error("{0}")]
    Sql(#[from] duckdb::Error),
}

pub struct Store {
    pub conn: Connection,
    pub path: PathBuf,
    pub read_only: bool,
    /// Risk weights used when the store rescores (after imports and intel loads).
    pub weights: crate::risk::Weights,
    /// Who is acting, as the audit log records it.
    pub actor: String,
    /// Routing rules of config.toml (who gets the work items made from a hand-off).
    pub routing: crate::routing::Routing,
}

/// SQL that gives the rows of the staging table `map` without an `asset_id` (assets not known
/// before) new ids from `seq_asset`, in the order of their `key` (the order their file names them):
/// the engine hands out a sequence's values to the rows of one statement in no fixed order, and the
/// same files should make the same store.
pub(crate) fn number_new_assets(map: &str, key: &str) -> String {
    format!(
        "CREATE OR REPLACE TEMP TABLE {map}_ids AS SELECT nextval('seq_asset') AS id FROM {map} WHERE asset_id IS NULL;
         UPDATE {map} m SET asset_id = n.id
         FROM (SELECT {key}, row_number() OVER (ORDER BY {key}) AS k FROM {map} WHERE asset_id IS NULL) r
         JOIN (SELECT id, row_number() OVER (ORDER BY id) AS k FROM {map}_ids) n USING (k)
         WHERE m.{key} = r.{key};
         DROP TABLE {map}_ids;"
    )
}

/// `s` as a SQL string literal, for the few statements that cannot take parameters (COPY targets,
/// rule tables compiled to SQL, values inlined for the planner). NUL characters are dropped.
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\0', "").replace('\'', "''"))
}

/// The name recorded in the audit log: `CTEM_USER`, else the login name.
pub fn default_actor() -> String {
    ["CTEM_USER", "USER", "USERNAME", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into())
}


fn classify_open_error(path: &Path, e: duckdb::Error) -> StoreError {
    let msg = e.to_string();
    let p = path.display().to_string();
    if msg.contains("Could not set lock") || msg.contains("Conflicting lock") {
        let holder = msg
            .split("PID ")
            .nth(1)
            .map(|rest| {
                let pid: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                format!(" (pid {pid})")
            })
            .unwrap_or_default();
        StoreError::Locked { path: p, holder }
    } else {
        StoreError::Open { path: p, msg: msg.lines().next().unwrap_or("").to_string() }
    }
}

impl Store {
    /// Open (creating if needed) and migrate. `read_only` opens without any write path.
    pub fn open(path: &Path, read_only: bool) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !read_only {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                    path: path.display().to_string(),
                    msg: e.to_string(),
                })?;
            }
        }
        if read_only && !path.exists() {
            return Err(StoreError::Open {
                path: path.display().to_string(),
                msg: "no such database (read-only mode does not create one)".into(),
            });
        }
        // Never fetch or load engine extensions from the network.
        let mut cfg = Config::default().enable_autoload_extension(false)?;
        if read_only {
            cfg = cfg.access_mode(AccessMode::ReadOnly)?;
        }
        let conn = Connection::open_with_flags(path, cfg).map_err(|e| classify_open_error(path, e))?;
        let store = Store { conn, path: path.to_path_buf(), read_only, weights: Default::default(), actor: default_actor(), routing: Default::default() };
        store.migrate()?;
        Ok(store)
    }

    /// Read-only, with no access to files or extensions outside the store (for `ctem query`).
    pub fn open_for_query(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Open { path: path.display().to_string(), msg: "no such database".into() });
        }
        Self::migrated_then(path, Self::open_restricted)
    }

    /// Read-only; a database from an earlier version is migrated first (which needs one write).
    pub fn open_for_reading(path: &Path) -> Result<Store, StoreError> {
        Self::migrated_then(path, |p| Store::open(p, true))
    }

    /// Open with `open`; if the schema needs upgrading, open once for writing to migrate, then again.
    fn migrated_then(path: &Path, open: impl Fn(&Path) -> Result<Store, StoreError>) -> Result<Store, StoreError> {
        match open(path) {
            Err(StoreError::Open { msg, .. }) if msg.contains("needs upgrading") => {
                drop(Store::open(path, false)?);
                open(path)
            }
            r => r,
        }
    }

    fn open_restricted(path: &Path) -> Result<Store, StoreError> {
        let cfg = Config::default()
            .enable_autoload_extension(false)?
            .access_mode(AccessMode::ReadOnly)?
            .enable_external_access(false)?;
        let conn = Connection::open_with_flags(path, cfg).map_err(|e| classify_open_error(path, e))?;
        let store = Store { conn, path: path.to_path_buf(), read_only: true, weights: Default::default(), actor: default_actor(), routing: Default::default() };
        store.migrate()?;
        Ok(store)
    }

    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory_with_flags(Config::default().enable_autoload_extension(false)?)?;
        let store = Store { conn, path: PathBuf::from(":memory:"), read_only: false, weights: Default::default(), actor: default_actor(), routing: Default::default() };
        store.migrate()?;
        Ok(store)
    }

    pub fn schema_version(&self) -> Result<i32, StoreError> {
        let exists: i64 = self.conn.query_row(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations' AND table_schema = 'main'",
            [],
            |r| r.get(0),
        )?;
        if exists == 0 {
            return Ok(0);
        }
        Ok(self
            .conn
            .query_row("SELECT coalesce(max(version), 0) FROM schema_migrations", [], |r| r.get(0))?)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let current = self.schema_version()?;
        let latest = schema::MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        if current > latest {
            return Err(StoreError::TooNew { path: self.path.display().to_string(), found: current, known: latest });
        }
        if current == latest {
            return Ok(());
        }
        if self.read_only {
            return Err(StoreError::Open {
                path: self.path.display().to_string(),
                msg: format!("schema version {current} needs upgrading to {latest}; open it once without --read-only"),
            });
        }
        self.conn.execute_batch("BEGIN TRANSACTION")?;
        let r = (|| -> Result<(), duckdb::Error> {
            self.conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL, description VARCHAR, applied_at TIMESTAMP NOT NULL)",
            )?;
            for (v, desc, sql) in schema::MIGRATIONS {
                if *v > current {
                    self.conn.execute_batch(sql)?;
                    self.conn.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, current_timestamp::TIMESTAMP)",
                        duckdb::params![v, desc],
                    )?;
                }
            }
            Ok(())
        })();
        match r {
            Ok(()) => {
                self.conn.execute_batch("COMMIT")?;
                // Written into the file now, so the write-ahead log never has to replay a schema change.
                self.conn.execute_batch("CHECKPOINT")?;
                Ok(())
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e.into())
            }
        }
    }

    pub fn count(&self, sql: &str) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(sql, [], |r| r.get(0))?)
    }
}
