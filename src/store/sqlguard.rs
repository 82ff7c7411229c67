//! What a statement typed by a person may do. Reads run; writes run only when the session allows them
//! (`:sql write`, `ctem query --write`); attaching databases, installing or loading extensions,
//! changing settings and touching files outside the export directory never run from here.

use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Read,
    Write,
    Refused(String),
}

/// The statement with comments removed and string literals blanked (kept as `''`), for keyword checks.
fn skeleton(sql: &str) -> String {
    let b: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            '-' if b.get(i + 1) == Some(&'-') => {
                while i < b.len() && b[i] != '\n' {
                    i += 1;
                }
            }
            '/' if b.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == '*' && b[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
                out.push(' ');
            }
            '\'' => {
                i += 1;
                while i < b.len() {
                    if b[i] == '\'' && b.get(i + 1) == Some(&'\'') {
                        i += 2;
                    } else if b[i] == '\'' {
                        break;
                    } else {
                        i += 1;
                    }
                }
                i += 1;
                out.push_str("''");
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

const READS: &[&str] = &["SELECT", "WITH", "FROM", "VALUES", "TABLE", "DESCRIBE", "SHOW", "SUMMARIZE", "EXPLAIN", "PIVOT", "UNPIVOT", "("];
const WRITES: &[&str] = &[
    "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "TRUNCATE", "MERGE", "VACUUM", "CHECKPOINT", "BEGIN", "COMMIT", "ROLLBACK",
    "ABORT", "START", "END", "COMMENT", "GRANT", "REVOKE", "ANALYZE", "PREPARE", "EXECUTE", "DEALLOCATE", "UPSERT", "REPLACE",
];
const NEVER: &[&str] = &["ATTACH", "DETACH", "INSTALL", "LOAD", "FORCE", "EXPORT", "IMPORT", "SET", "RESET", "PRAGMA", "CALL", "USE"];
const FILE_FUNCTIONS: &[&str] = &[
    "read_csv", "read_csv_auto", "read_json", "read_json_auto", "read_json_objects", "read_ndjson", "read_ndjson_auto", "read_ndjson_objects",
    "read_parquet", "parquet_scan", "parquet_metadata", "parquet_schema", "parquet_file_metadata", "parquet_kv_metadata", "read_text",
    "read_blob", "glob", "sniff_csv", "read_xlsx", "iceberg_scan", "delta_scan", "sqlite_scan", "sqlite_attach", "postgres_scan", "mysql_scan",
    "getenv", "read_file",
];

/// Classify one statement. `export_dir` is the one place `COPY ... TO` may write.
pub fn classify(sql: &str, export_dir: &Path) -> Verdict {
    let sk = skeleton(sql);
    let body = sk.trim().trim_end_matches(';');
    if body.contains(';') {
        return Verdict::Refused("one statement at a time: put the cursor on the one to run".into());
    }
    let upper = body.to_ascii_uppercase();
    let first = upper.split(|c: char| c.is_whitespace() || c == '(').find(|w| !w.is_empty()).unwrap_or(if upper.starts_with('(') { "(" } else { "" });
    let first = if upper.trim_start().starts_with('(') { "(" } else { first };
    if first.is_empty() {
        return Verdict::Refused("nothing to run".into());
    }
    if NEVER.contains(&first) {
        return Verdict::Refused(format!("{first} is not allowed here: attaching databases, extensions and settings are not changed from the console"));
    }
    let words: Vec<String> = upper.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').filter(|w| !w.is_empty()).map(String::from).collect();
    for f in FILE_FUNCTIONS {
        let f_up = f.to_ascii_uppercase();
        if let Some(pos) = words.iter().position(|w| *w == f_up) {
            // A call, not a column of that name.
            let after = upper.split(&f_up).nth(1).unwrap_or("");
            if after.trim_start().starts_with('(') || pos + 1 < words.len() && after.trim_start().starts_with('(') {
                return Verdict::Refused(format!("{f}() reaches outside the store; import files with `:import` instead"));
            }
        }
    }
    // A file named in FROM / JOIN (the engine would read it).
    let orig_up = sql.to_ascii_uppercase();
    for kw in ["FROM", "JOIN"] {
        let mut rest = orig_up.as_str();
        while let Some(i) = rest.find(kw) {
            let after = rest[i + kw.len()..].trim_start();
            let boundary = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
            if boundary && (after.starts_with('\'') || after.starts_with("\"/") || after.starts_with("\"./")) {
                return Verdict::Refused("reading files from a query is not allowed here; import them with `:import`".into());
            }
            rest = &rest[i + kw.len()..];
        }
    }
    if first == "COPY" {
        if !upper.contains(" TO ") && !upper.contains(")TO ") {
            return Verdict::Refused("COPY ... FROM reads files: import them with `:import` instead".into());
        }
        // The target: the first string literal after TO.
        let target = sql
            .to_ascii_uppercase()
            .rfind(" TO ")
            .and_then(|i| sql[i + 4..].trim_start().strip_prefix('\'').map(|s| s.split('\'').next().unwrap_or("").to_string()));
        let Some(t) = target else { return Verdict::Refused("COPY ... TO needs a file name in quotes".into()) };
        let p = Path::new(&t);
        let p = if p.is_absolute() { p.to_path_buf() } else { export_dir.join(p) };
        let inside = p.parent().and_then(|d| std::fs::create_dir_all(d).ok().and_then(|_| d.canonicalize().ok())).zip(std::fs::create_dir_all(export_dir).ok().and_then(|_| export_dir.canonicalize().ok()));
        return match inside {
            Some((d, e)) if d.starts_with(&e) => Verdict::Write,
            _ => Verdict::Refused(format!("COPY ... TO writes only inside the export directory {}", export_dir.display())),
        };
    }
    if !WRITES.contains(&first) {
        // Anything else runs as a query (wrapped in a SELECT, so it cannot change anything): a typo
        // gets the engine's syntax error with its position.
        if READS.contains(&first) && first == "WITH" && words.iter().any(|w| matches!(w.as_str(), "INSERT" | "UPDATE" | "DELETE")) {
            return Verdict::Write;
        }
        return Verdict::Read;
    }
    if READS.contains(&first) {
        // A data-changing statement inside a WITH is still a write.
        if first == "WITH" && words.iter().any(|w| matches!(w.as_str(), "INSERT" | "UPDATE" | "DELETE")) {
            return Verdict::Write;
        }
        return Verdict::Read;
    }
    Verdict::Write
}

/// An engine error as one line with its position: `Parser Error: syntax error at or near "FORM" (line 1,
/// column 10)`. `shift` is how many characters the statement was moved right on its first line.
pub fn error_with_position(e: &str, shift: usize) -> String {
    let first = e.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    let lines: Vec<&str> = e.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if let Some(rest) = l.strip_prefix("LINE ") {
            let (n, text) = rest.split_once(':').unwrap_or(("", ""));
            let Ok(line) = n.trim().parse::<usize>() else { continue };
            if let Some(caret) = lines.get(i + 1).and_then(|c| c.find('^')) {
                // The caret counts from the start of "LINE n: ".
                let prefix = l.len() - text.len() + 1;
                let mut col = caret.saturating_sub(prefix) + 1;
                if line == 1 {
                    col = col.saturating_sub(shift).max(1);
                }
                return format!("{first} (line {line}, column {col})");
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Verdict {
        classify(s, &std::env::temp_dir().join("ctem-guard-test"))
    }

    #[test]
    fn reads_writes_and_refusals() {
        assert_eq!(v("SELECT severity, count(*) FROM findings GROUP BY ALL"), Verdict::Read);
        assert_eq!(v("-- comment\nWITH x AS (SELECT 1) SELECT * FROM x"), Verdict::Read);
        assert_eq!(v("FROM findings LIMIT 3;"), Verdict::Read);
        assert_eq!(v("SELECT 'DROP TABLE x; ATTACH' AS s"), Verdict::Read);
        assert_eq!(v("DELETE FROM findings"), Verdict::Write);
        assert_eq!(v("drop table findings"), Verdict::Write);
        assert!(matches!(v("ATTACH 'x.db' AS x"), Verdict::Refused(m) if m.starts_with("ATTACH is not allowed")));
        assert!(matches!(v("INSTALL httpfs"), Verdict::Refused(_)));
        assert!(matches!(v("load httpfs"), Verdict::Refused(_)));
        assert!(matches!(v("SET enable_external_access = true"), Verdict::Refused(_)));
        assert!(matches!(v("SELECT * FROM read_csv('/etc/passwd')"), Verdict::Refused(m) if m.contains("read_csv()")));
        assert!(matches!(v("SELECT * FROM '/etc/passwd'"), Verdict::Refused(_)));
        assert!(matches!(v("SELECT getenv('CTEM_JIRA_TOKEN')"), Verdict::Refused(_)));
        assert!(matches!(v("COPY findings TO '/tmp/x.csv'"), Verdict::Refused(m) if m.contains("export directory")));
        assert!(matches!(v("COPY findings TO '../x.csv'"), Verdict::Refused(_)));
        assert_eq!(v("COPY (SELECT * FROM findings) TO 'f.parquet' (FORMAT parquet)"), Verdict::Write);
        assert!(matches!(v("COPY findings FROM 'x.csv'"), Verdict::Refused(_)));
        assert!(matches!(v("SELECT 1; DROP TABLE findings"), Verdict::Refused(m) if m.starts_with("one statement")));
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = format!("Parser Error: syntax error at or near \"FORM\"\n\nLINE 1: SELECT * FROM (SELECT * FORM findings) LIMIT 0\n{}^", " ".repeat(32));
        let e = e.as_str();
        assert_eq!(error_with_position(e, 15), "Parser Error: syntax error at or near \"FORM\" (line 1, column 10)");
        assert_eq!(error_with_position("Catalog Error: Table with name x does not exist!", 0), "Catalog Error: Table with name x does not exist!");
    }
}

/// Save a query under a name: the view `saved_<name>` and a row of `saved_queries`. Only a read may be
/// saved. Returns whether its result has a `finding_id` column (then `saved=<name>` narrows queues).
pub fn save_query(c: &duckdb::Connection, name: &str, sql: &str, export_dir: &Path) -> Result<bool, String> {
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || name.len() > 40 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("'{name}': a saved query's name is letters, digits and _ (at most 40)"));
    }
    if classify(sql, export_dir) != Verdict::Read {
        return Err("only a query can be saved".into());
    }
    let body = sql.trim().trim_end_matches(';').trim();
    let cols: Vec<String> = {
        let mut st = c.prepare(&format!("SELECT * FROM ({body}) LIMIT 0")).map_err(|e| error_with_position(&e.to_string(), 15))?;
        let _ = st.query([]).map_err(|e| e.to_string())?;
        st.column_names()
    };
    let ids = cols.iter().any(|c| c == "finding_id");
    let run = || -> Result<(), duckdb::Error> {
        c.execute_batch("BEGIN TRANSACTION")?;
        c.execute_batch(&format!("CREATE OR REPLACE VIEW \"saved_{name}\" AS {body}"))?;
        c.execute("DELETE FROM saved_queries WHERE name = ?", duckdb::params![name])?;
        c.execute("INSERT INTO saved_queries VALUES (?, ?, ?, current_timestamp::TIMESTAMP)", duckdb::params![name, body, ids])?;
        c.execute_batch("COMMIT")
    };
    if let Err(e) = run() {
        let _ = c.execute_batch("ROLLBACK");
        return Err(e.to_string());
    }
    Ok(ids)
}
