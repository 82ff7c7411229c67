use ctem::ingest::{Format, ParseOptions};
use ctem::store::import::{import_file, Outcome, Summary};
use ctem::store::Store;
use std::path::{Path, PathBuf};

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scanners").join(rel)
}

pub fn mem() -> Store {
    Store::open_in_memory().expect("in-memory store")
}

pub fn import(store: &Store, path: &Path) -> Summary {
    import_file(store, path, None, &ParseOptions::default())
}

pub fn import_ok(store: &Store, rel: &str) -> Summary {
    let s = import(store, &fixture(rel));
    assert_eq!(s.outcome, Outcome::Imported, "{}", s.line());
    s
}

#[allow(dead_code)]
pub fn import_as(store: &Store, path: &Path, f: Format, opts: &ParseOptions) -> Summary {
    import_file(store, path, Some(f), opts)
}

pub fn count(store: &Store, sql: &str) -> i64 {
    store.count(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

pub fn strings(store: &Store, sql: &str) -> Vec<String> {
    let mut st = store.conn.prepare(sql).unwrap();
    let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

pub fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// The committed sample estate.
pub fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data")
}

/// The sample estate loaded as `ctem demo` loads it, into `dir/demo.duckdb`; every file must import.
pub fn sample_db(dir: &Path) -> PathBuf {
    let db = dir.join("demo.duckdb");
    let text = ctem::generator::demo::load(&db, &sample_dir()).unwrap();
    assert!(!text.contains("not imported"), "{text}");
    db
}
