use chrono::{Duration, NaiveDate, NaiveDateTime};
use std::fmt;

/// How a field compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Int,
    Float,
    /// critical > high > medium > low > info
    Severity,
    /// P1 > P2 > P3 > P4 (P1 is the most urgent)
    Priority,
    Time,
    Bool,
    /// VARCHAR[]: `=` tests membership, `~` matches any element.
    List,
    /// A saved query (`saved=NAME`): the rows whose key the query's result names.
    Saved,
}

/// A field a filter may name: its name, the other names it answers to and the SQL expression behind it.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub sql: &'static str,
    pub kind: FieldKind,
}

/// A value bound to a `?` of the compiled SQL, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
    Float(f64),
    Time(NaiveDateTime),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Compiled {
    /// A boolean SQL expression; `true` for an empty filter.
    pub sql: String,
    pub params: Vec<Param>,
}

/// A filter that does not parse: where (0-based character offset) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterError {
    pub pos: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.pos + 1, self.message)
    }
}

impl std::error::Error for FilterError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Word { text: String, quoted: bool },
    Op(String),
}

fn err<T>(pos: usize, message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError { pos, message: message.into() })
}

const OP_CHARS: &[char] = &['=', '!', '<', '>', '~', ':'];

fn lex(input: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push((i, Tok::LParen));
            i += 1;
        } else if c == ')' {
            out.push((i, Tok::RParen));
            i += 1;
        } else if c == '"' || c == '\'' {
            let start = i;
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return err(start, "unterminated quote"),
                    Some('\\') if chars.get(i + 1).is_some() => {
                        s.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push((start, Tok::Word { text: s, quoted: true }));
        } else if OP_CHARS.contains(&c) {
            let start = i;
            let mut s = String::new();
            while i < chars.len() && OP_CHARS.contains(&chars[i]) {
                s.push(chars[i]);
                i += 1;
            }
            let op = match s.as_str() {
                "=" | "==" | ":" => "=",
                "!=" | "<>" => "!=",
                "<" => "<",
                "<=" => "<=",
                ">" => ">",
                ">=" => ">=",
                "~" | "=~" => "~",
                "!~" => "!~",
                _ => return err(start, format!("unknown operator '{s}' (use = != < <= > >= ~ !~)")),
            };
            out.push((start, Tok::Op(op.to_string())));
        } else {
            let start = i;
            let mut s = String::new();
            while i < chars.len() {
                let ch = chars[i];
                if ch.is_whitespace() || ch == '(' || ch == ')' || OP_CHARS.contains(&ch) || ch == '"' {
                    break;
                }
                s.push(ch);
                i += 1;
            }
            out.push((start, Tok::Word { text: s, quoted: false }));
        }
    }
    Ok(out)
}

struct Parser<'a> {
    toks: Vec<(usize, Tok)>,
    i: usize,
    end: usize,
    fields: &'a [Field],
    text_fields: &'a [&'a str],
    now: NaiveDateTime,
    params: Vec<Param>,
}

fn keyword(t: &Tok, k: &str) -> bool {
    matches!(t, Tok::Word { text, quoted: false } if text.eq_ignore_ascii_case(k))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.1)
    }
    fn pos(&self) -> usize {
        self.toks.get(self.i).map(|t| t.0).unwrap_or(self.end)
    }

    fn or_expr(&mut self) -> Result<String, FilterError> {
        let mut parts = vec![self.and_expr()?];
        while self.peek().is_some_and(|t| keyword(t, "or")) {
            self.i += 1;
            parts.push(self.and_expr()?);
        }
        Ok(if parts.len() == 1 { parts.pop().unwrap() } else { format!("({})", parts.join(" OR ")) })
    }

    fn and_expr(&mut self) -> Result<String, FilterError> {
        let mut parts = vec![self.unary()?];
        loop {
            match self.peek() {
                Some(t) if keyword(t, "and") => {
                    self.i += 1;
                    parts.push(self.unary()?);
                }
                // Juxtaposition means "and": `log4j sev>=high`.
                Some(t) if !keyword(t, "or") && *t != Tok::RParen => parts.push(self.unary()?),
                _ => break,
            }
        }
        Ok(if parts.len() == 1 { parts.pop().unwrap() } else { format!("({})", parts.join(" AND ")) })
    }

    fn unary(&mut self) -> Result<String, FilterError> {
        let pos = self.pos();
        match self.peek().cloned() {
            None => err(pos, "expected a word or a condition"),
            Some(t) if keyword(&t, "not") => {
                self.i += 1;
                Ok(format!("(NOT coalesce({}, false))", self.unary()?))
            }
            Some(Tok::LParen) => {
                self.i += 1;
                let e = self.or_expr()?;
                match self.peek() {
                    Some(Tok::RParen) => {
                        self.i += 1;
                        Ok(e)
                    }
                    _ => err(self.pos(), "missing ')'"),
                }
            }
            Some(Tok::RParen) => err(pos, "unexpected ')'"),
            Some(Tok::Op(o)) => err(pos, format!("'{o}' needs a field before it (e.g. sev{o}high)")),
            Some(t) if keyword(&t, "and") || keyword(&t, "or") => err(pos, "expected a condition before 'and'/'or'"),
            Some(Tok::Word { text, .. }) => {
                self.i += 1;
                if let Some(Tok::Op(op)) = self.peek().cloned() {
                    let op_pos = self.pos();
                    self.i += 1;
                    let vpos = self.pos();
                    let value = match self.peek().cloned() {
                        Some(Tok::Word { text, .. }) => {
                            self.i += 1;
                            text
                        }
                        _ => return err(vpos, format!("'{op}' needs a value after it")),
                    };
                    self.condition(pos, &text, op_pos, &op, vpos, &value)
                } else {
                    Ok(self.bare(&text))
                }
            }
        }
    }

    fn bare(&mut self, word: &str) -> String {
        // A CVE id (or its start) searches the CVE lists, when the table has them.
        if word.len() >= 4 && word[..4].eq_ignore_ascii_case("cve-") {
            if let Some(f) = self.fields.iter().find(|f| f.name == "cve" && f.kind == FieldKind::List) {
                self.params.push(Param::Text(format!("%{}%", like_escape(&word.to_ascii_uppercase()))));
                return format!("array_to_string(coalesce({}, []), ' ') LIKE ? ESCAPE '\\'", f.sql);
            }
        }
        // ILIKE per field: no lower-cased copies of a million strings. A word with no wildcard
        // character needs no ESCAPE clause, and the engine matches faster without one.
        let pat = format!("%{}%", like_escape(word));
        let escape = if word.contains(['%', '_', '\\']) { " ESCAPE '\\'" } else { "" };
        let parts: Vec<String> = self
            .text_fields
            .iter()
            .map(|e| {
                self.params.push(Param::Text(pat.clone()));
                format!("{e} ILIKE ?{escape}")
            })
            .collect();
        if parts.is_empty() { "true".into() } else { format!("({})", parts.join(" OR ")) }
    }

    fn field(&self, pos: usize, name: &str) -> Result<Field, FilterError> {
        let n = name.to_ascii_lowercase();
        self.fields
            .iter()
            .find(|f| f.name == n || f.aliases.contains(&n.as_str()))
            .copied()
            .ok_or_else(|| {
                let names: Vec<&str> = self.fields.iter().map(|f| f.name).collect();
                FilterError { pos, message: format!("unknown field '{name}' (fields: {})", names.join(", ")) }
            })
    }

    fn condition(
        &mut self,
        fpos: usize,
        fname: &str,
        op_pos: usize,
        op: &str,
        vpos: usize,
        value: &str,
    ) -> Result<String, FilterError> {
        let f = self.field(fpos, fname)?;
        let e = f.sql;
        if f.kind == FieldKind::Saved {
            let name = value.to_ascii_lowercase();
            if name.is_empty() || name.len() > 40 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return err(vpos, format!("'{value}' is not the name of a saved query (letters, digits, _)"));
            }
            // The name is checked above to be a plain identifier: it can only name a saved query's view.
            let m = format!("{e} IN (SELECT finding_id FROM \"saved_{name}\")");
            return match op {
                "=" => Ok(m),
                "!=" => Ok(format!("(NOT {m})")),
                _ => err(op_pos, format!("'{op}' does not apply to saved (use = or !=)")),
            };
        }
        if op == "~" || op == "!~" {
            if let Err(x) = regex::Regex::new(value) {
                let first = x.to_string().lines().last().unwrap_or("").trim().to_string();
                return err(vpos, format!("bad regular expression: {first}"));
            }
            let target = match f.kind {
                FieldKind::List => format!("array_to_string(coalesce({e}, []), ' ')"),
                _ => format!("coalesce(CAST({e} AS VARCHAR), '')"),
            };
            self.params.push(Param::Text(value.to_string()));
            let m = format!("regexp_matches({target}, ?, 'i')");
            return Ok(if op == "~" { m } else { format!("(NOT {m})") });
        }
        let sql_op = if op == "!=" { "<>" } else { op };
        match f.kind {
            FieldKind::Text => {
                if value.contains('*') && (op == "=" || op == "!=") {
                    let pat = like_escape(value).replace('*', "%");
                    self.params.push(Param::Text(pat));
                    let m = format!("coalesce({e}, '') ILIKE ? ESCAPE '\\'");
                    return Ok(if op == "=" { m } else { format!("(NOT {m})") });
                }
                self.params.push(Param::Text(value.to_lowercase()));
                Ok(match op {
                    "=" => format!("lower({e}) = ?"),
                    "!=" => format!("coalesce(lower({e}) <> ?, true)"),
                    _ => format!("lower({e}) {sql_op} ?"),
                })
            }
            FieldKind::Int | FieldKind::Float => {
                let v: f64 = value
                    .parse()
                    .map_err(|_| FilterError { pos: vpos, message: format!("'{value}' is not a number") })?;
                if f.kind == FieldKind::Int && v.fract() == 0.0 {
                    self.params.push(Param::Int(v as i64));
                } else {
                    self.params.push(Param::Float(v));
                }
                Ok(if op == "!=" { format!("coalesce({e} <> ?, true)") } else { format!("{e} {sql_op} ?") })
            }
            FieldKind::Severity => {
                let r = severity_rank(value).ok_or_else(|| FilterError {
                    pos: vpos,
                    message: format!("'{value}' is not a severity (critical, high, medium, low, info)"),
                })?;
                // Stored severities are the five lower-case words: an IN list over them is far cheaper
                // on a million rows than ranking every row.
                let names = ["info", "low", "medium", "high", "critical"];
                let keep: Vec<&str> = (0..5i64)
                    .filter(|&k| match op {
                        "=" => k == r,
                        "!=" => k != r,
                        ">" => k > r,
                        ">=" => k >= r,
                        "<" => k < r,
                        _ => k <= r,
                    })
                    .map(|k| names[k as usize])
                    .collect();
                if keep.is_empty() {
                    return Ok("false".into());
                }
                let marks = vec!["?"; keep.len()].join(", ");
                for k in keep {
                    self.params.push(Param::Text(k.to_string()));
                }
                Ok(format!("{e} IN ({marks})"))
            }
            FieldKind::Priority => {
                let v = value.trim_start_matches(['p', 'P']);
                let n: i64 = match v.parse() {
                    Ok(n) if (1..=4).contains(&n) => n,
                    _ => return err(vpos, format!("'{value}' is not a priority (P1 to P4)")),
                };
                // P1 is the highest: `prio>=p2` means P1 or P2, so the comparison turns round.
                let flipped = match op {
                    ">" => "<",
                    ">=" => "<=",
                    "<" => ">",
                    "<=" => ">=",
                    o => if o == "!=" { "<>" } else { o },
                };
                self.params.push(Param::Int(n));
                Ok(format!("TRY_CAST(substr({e}, 2) AS INTEGER) {flipped} ?"))
            }
            FieldKind::Bool => {
                let b = match value.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "y" | "1" | "on" => true,
                    "false" | "no" | "n" | "0" | "off" => false,
                    _ => return err(vpos, format!("'{value}' is not true or false")),
                };
                match op {
                    "=" => {
                        self.params.push(Param::Bool(b));
                        Ok(format!("coalesce({e}, false) = ?"))
                    }
                    "!=" => {
                        self.params.push(Param::Bool(b));
                        Ok(format!("coalesce({e}, false) <> ?"))
                    }
                    _ => err(op_pos, format!("'{op}' does not apply to {} (use = or !=)", f.name)),
                }
            }
            FieldKind::List => {
                let m = if value.contains('*') {
                    self.params.push(Param::Text(format!("%|{}|%", like_escape(&value.to_lowercase()).replace('*', "%"))));
                    format!("('|' || lower(array_to_string(coalesce({e}, []), '|')) || '|') LIKE ? ESCAPE '\\'")
                } else {
                    self.params.push(Param::Text(value.to_lowercase()));
                    format!("list_contains(list_transform(coalesce({e}, []), lambda x: lower(x)), ?)")
                };
                match op {
                    "=" => Ok(m),
                    "!=" => Ok(format!("(NOT {m})")),
                    _ => err(op_pos, format!("'{op}' does not apply to the list {} (use =, != or ~)", f.name)),
                }
            }
            FieldKind::Time => self.time(e, op, sql_op, op_pos, vpos, value),
            FieldKind::Saved => unreachable!("saved queries are compiled above"),
        }
    }

    fn time(&mut self, e: &str, op: &str, sql_op: &str, op_pos: usize, vpos: usize, value: &str) -> Result<String, FilterError> {
        if let Some(age) = parse_age(value) {
            // A relative value is an age: `first_seen<7d` = first seen less than 7 days ago.
            let cutoff = self.now - age;
            let flipped = match op {
                "<" => ">",
                "<=" => ">=",
                ">" => "<",
                ">=" => "<=",
                _ => {
                    return err(op_pos, format!("use < or > with an age like {value} (e.g. first_seen<{value} for newer than {value})"));
                }
            };
            self.params.push(Param::Time(cutoff));
            return Ok(format!("{e} {flipped} ?"));
        }
        let t = parse_when(value).ok_or_else(|| FilterError {
            pos: vpos,
            message: format!("'{value}' is not a date (YYYY-MM-DD, 'YYYY-MM-DD HH:MM', or an age like 7d, 24h, 2w)"),
        })?;
        if op == "=" || op == "!=" {
            // A date names the whole day.
            if value.len() == 10 {
                self.params.push(Param::Time(t));
                self.params.push(Param::Time(t + Duration::days(1)));
                let m = format!("({e} >= ? AND {e} < ?)");
                return Ok(if op == "=" { m } else { format!("(NOT coalesce({m}, false))") });
            }
        }
        self.params.push(Param::Time(t));
        Ok(format!("{e} {sql_op} ?"))
    }
}

fn like_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c == '_' || c == '\\' {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// critical 4 .. info 0; prefixes accepted (`crit`, `med`).
pub fn severity_rank(v: &str) -> Option<i64> {
    let v = v.to_ascii_lowercase();
    if v.is_empty() {
        return None;
    }
    for (name, r) in [("critical", 4), ("high", 3), ("medium", 2), ("low", 1), ("info", 0)] {
        if name.starts_with(&v) {
            return Some(r);
        }
    }
    match v.as_str() {
        "moderate" | "warning" => Some(2),
        "informational" | "none" | "negligible" => Some(0),
        _ => None,
    }
}

fn parse_age(v: &str) -> Option<Duration> {
    let unit = v.chars().last()?;
    let n: i64 = v[..v.len() - unit.len_utf8()].parse().ok()?;
    if !(0..=100_000).contains(&n) {
        return None;
    }
    Some(match unit {
        'm' => Duration::minutes(n),
        'h' => Duration::hours(n),
        'd' => Duration::days(n),
        'w' => Duration::weeks(n),
        'y' => Duration::days(365 * n),
        _ => return None,
    })
}

fn parse_when(v: &str) -> Option<NaiveDateTime> {
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0);
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, f) {
            return Some(t);
        }
    }
    None
}

/// Compile `input` against the fields of one table. Bare words match any of `text_fields` (SQL expressions).
pub fn compile(input: &str, fields: &[Field], text_fields: &[&str], now: NaiveDateTime) -> Result<Compiled, FilterError> {
    let toks = lex(input)?;
    if toks.is_empty() {
        return Ok(Compiled { sql: "true".into(), params: Vec::new() });
    }
    let mut p = Parser { toks, i: 0, end: input.chars().count(), fields, text_fields, now, params: Vec::new() };
    let sql = p.or_expr()?;
    if p.i < p.toks.len() {
        let pos = p.pos();
        return err(pos, "unexpected ')'");
    }
    Ok(Compiled { sql, params: p.params })
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &[Field] = &[
        Field { name: "severity", aliases: &["sev"], sql: "severity", kind: FieldKind::Severity },
        Field { name: "host", aliases: &["asset"], sql: "asset_name", kind: FieldKind::Text },
        Field { name: "first_seen", aliases: &[], sql: "first_seen", kind: FieldKind::Time },
        Field { name: "cvss", aliases: &[], sql: "cvss_score", kind: FieldKind::Float },
        Field { name: "sources", aliases: &["source"], sql: "sources", kind: FieldKind::List },
        Field { name: "kev", aliases: &[], sql: "kev", kind: FieldKind::Bool },
        Field { name: "cve", aliases: &[], sql: "cves", kind: FieldKind::List },
        Field { name: "priority", aliases: &["prio"], sql: "priority", kind: FieldKind::Priority },
    ];

    fn now() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap().and_hms_opt(12, 0, 0).unwrap()
    }

    fn c(s: &str) -> Result<Compiled, FilterError> {
        compile(s, F, &["title", "asset_name"], now())
    }

    #[test]
    fn empty_is_true() {
        assert_eq!(c("  ").unwrap().sql, "true");
    }

    #[test]
    fn bare_word_searches_text_fields() {
        let r = c("log4j").unwrap();
        assert!(r.sql.contains("title") && r.sql.contains("asset_name"), "{}", r.sql);
        assert_eq!(r.params, vec![Param::Text("%log4j%".into()), Param::Text("%log4j%".into())]);
        assert!(!r.sql.contains("ESCAPE"), "{}", r.sql);
        let r = c("100%_x").unwrap();
        assert!(r.sql.contains("ESCAPE"), "{}", r.sql);
        assert_eq!(r.params[0], Param::Text("%100\\%\\_x%".into()));
        let r = c("CVE-2021-44").unwrap();
        assert_eq!(r.params, vec![Param::Text("%CVE-2021-44%".into())]);
    }

    #[test]
    fn severity_is_ordinal() {
        let r = c("sev>=high").unwrap();
        assert_eq!(r.sql, "severity IN (?, ?)");
        assert_eq!(r.params, vec![Param::Text("high".into()), Param::Text("critical".into())]);
        assert_eq!(c("sev=crit").unwrap().params, vec![Param::Text("critical".into())]);
        assert_eq!(c("sev>crit").unwrap().sql, "false");
    }

    #[test]
    fn relative_age_turns_round() {
        let r = c("first_seen<7d").unwrap();
        assert_eq!(r.sql, "first_seen > ?");
        assert_eq!(r.params, vec![Param::Time(now() - Duration::days(7))]);
    }

    #[test]
    fn boolean_structure_and_precedence() {
        let r = c("sev=high and (host=web01 or not kev=true) cvss>7.5").unwrap();
        assert!(r.sql.starts_with("(severity IN (?) AND ("), "{}", r.sql);
        assert!(r.sql.contains(" OR (NOT coalesce("), "{}", r.sql);
        assert_eq!(r.params.len(), 4);
        assert_eq!(r.params[3], Param::Float(7.5));
    }

    #[test]
    fn values_are_never_sql_text() {
        let r = c("host=\"x' OR 1=1 --\"").unwrap();
        assert!(!r.sql.contains("OR 1=1"));
        assert_eq!(r.params, vec![Param::Text("x' or 1=1 --".into())]);
    }

    #[test]
    fn priority_is_reversed() {
        let r = c("prio>=p2").unwrap();
        assert!(r.sql.ends_with("<= ?"), "{}", r.sql);
        assert_eq!(r.params, vec![Param::Int(2)]);
    }

    #[test]
    fn errors_have_positions() {
        let e = c("sevr>=high").unwrap_err();
        assert_eq!(e.pos, 0);
        assert!(e.message.contains("unknown field 'sevr'"), "{}", e.message);
        let e = c("sev>=urgent").unwrap_err();
        assert_eq!(e.pos, 5);
        let e = c("(sev=high").unwrap_err();
        assert!(e.message.contains("missing ')'"));
        let e = c("host~\"(\"").unwrap_err();
        assert!(e.message.contains("bad regular expression"), "{}", e.message);
        let e = c("cvss>high").unwrap_err();
        assert_eq!(e.to_string(), "column 6: 'high' is not a number");
        let e = c("first_seen=7d").unwrap_err();
        assert!(e.message.contains("use < or >"));
        assert!(c("sev>=").unwrap_err().message.contains("needs a value"));
    }

    #[test]
    fn list_membership_and_globs() {
        let r = c("source=nessus").unwrap();
        assert!(r.sql.starts_with("list_contains"), "{}", r.sql);
        let r = c("host=web*").unwrap();
        assert_eq!(r.params, vec![Param::Text("web%".into())]);
    }

    #[test]
    fn dates_name_whole_days() {
        let r = c("first_seen=2026-11-01").unwrap();
        assert_eq!(r.params.len(), 2);
    }
}
