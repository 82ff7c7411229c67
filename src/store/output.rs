//! Run SQL and render results as a text table, CSV or JSON.

use duckdb::types::{TimeUnit, Value};
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    Table,
    Csv,
    Json,
}

impl OutFormat {
    pub fn parse(s: &str) -> Option<OutFormat> {
        match s {
            "table" => Some(OutFormat::Table),
            "csv" => Some(OutFormat::Csv),
            "json" => Some(OutFormat::Json),
            _ => None,
        }
    }
}

fn ts_string(unit: TimeUnit, v: i64) -> String {
    let micros = match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v / 1000,
    };
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| v.to_string())
}

/// Text of a value as a person reads it.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Boolean(b) => b.to_string(),
        Value::TinyInt(x) => x.to_string(),
        Value::SmallInt(x) => x.to_string(),
        Value::Int(x) => x.to_string(),
        Value::BigInt(x) => x.to_string(),
        Value::HugeInt(x) => x.to_string(),
        Value::UTinyInt(x) => x.to_string(),
        Value::USmallInt(x) => x.to_string(),
        Value::UInt(x) => x.to_string(),
        Value::UBigInt(x) => x.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Double(x) => {
            if x.fract() == 0.0 && x.abs() < 1e15 { format!("{x:.1}") } else { format!("{}", (x * 10000.0).round() / 10000.0) }
        }
        Value::Decimal(d) => d.to_string(),
        Value::Timestamp(u, x) => ts_string(*u, *x),
        Value::Text(s) => s.clone(),
        Value::Blob(b) => format!("<{} bytes>", b.len()),
        Value::Date32(d) => chrono::NaiveDate::from_num_days_from_ce_opt(*d + 719_163).map(|d| d.to_string()).unwrap_or_default(),
        Value::List(items) | Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(text).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Enum(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

pub fn json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::TinyInt(x) => J::from(*x),
        Value::SmallInt(x) => J::from(*x),
        Value::Int(x) => J::from(*x),
        Value::BigInt(x) => J::from(*x),
        Value::UTinyInt(x) => J::from(*x),
        Value::USmallInt(x) => J::from(*x),
        Value::UInt(x) => J::from(*x),
        Value::UBigInt(x) => J::from(*x),
        Value::Float(x) => serde_json::Number::from_f64(*x as f64).map(J::Number).unwrap_or(J::Null),
        Value::Double(x) => serde_json::Number::from_f64(*x).map(J::Number).unwrap_or(J::Null),
        Value::List(items) | Value::Array(items) => J::Array(items.iter().map(json).collect()),
        other => J::String(text(other)),
    }
}

/// Run one statement and write its result. Returns the number of rows written.
pub fn run_query(conn: &duckdb::Connection, sql: &str, fmt: OutFormat, out: &mut dyn Write) -> anyhow::Result<usize> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let names: Vec<String> = rows.as_ref().map(|s| s.column_names()).unwrap_or_default();
    let ncol = names.len();
    let mut n = 0usize;
    match fmt {
        OutFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(&names)?;
            while let Some(r) = rows.next()? {
                let rec: Vec<String> = (0..ncol).map(|i| r.get::<_, Value>(i).map(|v| text(&v)).unwrap_or_default()).collect();
                w.write_record(&rec)?;
                n += 1;
            }
            w.flush()?;
        }
        OutFormat::Json => {
            writeln!(out, "[")?;
            while let Some(r) = rows.next()? {
                let mut obj = serde_json::Map::new();
                for (i, name) in names.iter().enumerate() {
                    obj.insert(name.clone(), r.get::<_, Value>(i).map(|v| json(&v)).unwrap_or(serde_json::Value::Null));
                }
                if n > 0 {
                    writeln!(out, ",")?;
                }
                write!(out, "  {}", serde_json::Value::Object(obj))?;
                n += 1;
            }
            if n > 0 {
                writeln!(out)?;
            }
            writeln!(out, "]")?;
        }
        OutFormat::Table => {
            // Widths from the first 10,000 rows; longer results stream with those widths.
            let mut buf: Vec<Vec<String>> = Vec::new();
            let mut widths: Vec<usize> = names.iter().map(|h| h.chars().count()).collect();
            let mut more = true;
            while buf.len() < 10_000 {
                match rows.next()? {
                    Some(r) => {
                        let rec: Vec<String> = (0..ncol)
                            .map(|i| r.get::<_, Value>(i).map(|v| text(&v).replace('\n', " ")).unwrap_or_default())
                            .collect();
                        for (w, c) in widths.iter_mut().zip(&rec) {
                            *w = (*w).max(c.chars().count().min(60));
                        }
                        buf.push(rec);
                    }
                    None => {
                        more = false;
                        break;
                    }
                }
            }
            let line = |cells: &[String], out: &mut dyn Write| -> std::io::Result<()> {
                let parts: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| {
                        let t: String = if c.chars().count() > *w { c.chars().take(w.saturating_sub(1)).collect::<String>() + "…" } else { c.clone() };
                        format!("{t:<w$}", w = *w)
                    })
                    .collect();
                writeln!(out, "{}", parts.join("  ").trim_end())
            };
            line(&names, out)?;
            let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            writeln!(out, "{}", sep.join("  "))?;
            for r in &buf {
                line(r, out)?;
                n += 1;
            }
            if more {
                while let Some(r) = rows.next()? {
                    let rec: Vec<String> = (0..ncol)
                        .map(|i| r.get::<_, Value>(i).map(|v| text(&v).replace('\n', " ")).unwrap_or_default())
                        .collect();
                    line(&rec, out)?;
                    n += 1;
                }
            }
            writeln!(out, "({n} row{})", if n == 1 { "" } else { "s" })?;
        }
    }
    Ok(n)
}

/// At most `n` characters, with an ellipsis when cut.
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Stream a query's rows as JSON lines (one object per line). Returns the number of rows.
pub fn write_json_lines(conn: &duckdb::Connection, sql: &str, out: &mut dyn Write) -> anyhow::Result<usize> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let names: Vec<String> = rows.as_ref().map(|s| s.column_names()).unwrap_or_default();
    let mut n = 0;
    while let Some(r) = rows.next()? {
        let mut obj = serde_json::Map::new();
        for (i, name) in names.iter().enumerate() {
            obj.insert(name.clone(), r.get::<_, Value>(i).map(|v| json(&v)).unwrap_or(serde_json::Value::Null));
        }
        writeln!(out, "{}", serde_json::Value::Object(obj))?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}
