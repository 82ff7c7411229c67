//! Streaming helpers for large JSON reports: the elements of a big array are read one at a time,
//! never the whole document.

use serde::de::Deserializer;

/// Deserialize a number that may be written as a string ("7.5"); anything else that is not a number
/// (a boolean, a string that is not one, null) is None, and an object or array is an error. Read
/// without buffering the value or trying it against several types: reports carry one per finding.
pub fn number_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number, a string or a boolean")
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.trim().parse().ok())
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

/// Run a JSON deserialization over a reader and map serde errors to positioned parse errors.
/// The reader is wrapped in a concrete `BufReader`: the standard library reads single bytes from it
/// without a call per byte, which serde_json's reader depends on (3-4x faster than a `dyn Read`).
pub fn run<R: std::io::Read, T>(
    input: R,
    f: impl FnOnce(&mut serde_json::Deserializer<serde_json::de::IoRead<std::io::BufReader<R>>>) -> Result<T, serde_json::Error>,
) -> Result<T, super::ParseError> {
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, input));
    let v = f(&mut de).map_err(|e| super::ParseError::json(&e))?;
    de.end().map_err(|e| super::ParseError::json(&e))?;
    Ok(v)
}

/// The largest single record (one element of a report's big array) read into memory at once.
const MAX_RECORD: usize = 256 << 20;

/// A reader of a JSON document's outer structure: objects and arrays are walked key by key and element
/// by element, and each value the caller wants is cut out whole and parsed from its own bytes. Parsing
/// from a byte slice is several times faster than from a stream (strings are scanned in blocks, not byte
/// by byte), and memory stays bounded by the largest record, never the document. Positions in errors are
/// the document's: line and column, as serde_json counts them.
pub struct Scanner<R> {
    input: R,
    /// Line and column (1-based) of the next byte.
    line: u64,
    col: u64,
    /// Whether the container being walked has yielded an item yet (commas go between items).
    first: Vec<bool>,
    buf: Vec<u8>,
    /// The largest record read into memory.
    max: usize,
}

/// A record type for `Scanner::with`, named apart from the lifetime of the bytes it borrows.
pub trait Record {
    type Of<'a>: serde::Deserialize<'a>;
}

/// An owned type as a `Record` (it borrows nothing).
pub struct Owned<T>(std::marker::PhantomData<T>);

impl<T: serde::de::DeserializeOwned> Record for Owned<T> {
    type Of<'a> = T;
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// The bytes buffered, read when there are none (empty at the end of the input); a read error is
/// reported at the position reached.
fn fill<R: std::io::BufRead>(input: &mut R, line: u64, col: u64) -> Result<&[u8], super::ParseError> {
    let failed = |e: std::io::Error| super::ParseError::new(format!("line {line}, column {col}"), format!("cannot read: {e}"));
    loop {
        match input.fill_buf() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(e)),
            Ok(_) => break,
        }
    }
    input.fill_buf().map_err(failed)
}

/// The line and column after `bytes`, given those before them.
fn after(line: u64, col: u64, bytes: &[u8]) -> (u64, u64) {
    match memchr::memrchr(b'\n', bytes) {
        Some(last) => (line + memchr::memchr_iter(b'\n', bytes).count() as u64, (bytes.len() - last) as u64),
        None => (line, col + bytes.len() as u64),
    }
}

/// A parse error of a value cut out at `line`, `col`, placed in the whole input.
fn json_error(e: serde_json::Error, line: u64, col: u64) -> super::ParseError {
    let msg = e.to_string();
    let clean = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    let (l, c) = if e.line() <= 1 { (line, col + e.column().saturating_sub(1) as u64) } else { (line + e.line() as u64 - 1, e.column() as u64) };
    super::ParseError::new(format!("line {l}, column {c}"), clean)
}

impl<R: std::io::BufRead> Scanner<R> {
    pub fn new(input: R) -> Self {
        Scanner::with_limit(input, MAX_RECORD)
    }

    /// A scanner that refuses records over `max` bytes.
    pub fn with_limit(input: R, max: usize) -> Self {
        Scanner { input, line: 1, col: 1, first: Vec::new(), buf: Vec::new(), max }
    }

    /// An error at the position reached (also for what the caller finds wrong with the document).
    pub fn fail(&self, msg: impl Into<String>) -> super::ParseError {
        super::ParseError::new(format!("line {}, column {}", self.line, self.col), msg)
    }

    /// The next byte that is not whitespace, not consumed (None at the end of the input).
    pub fn peek(&mut self) -> Result<Option<u8>, super::ParseError> {
        loop {
            let chunk = fill(&mut self.input, self.line, self.col)?;
            if chunk.is_empty() {
                return Ok(None);
            }
            let n = chunk.iter().position(|&b| !is_ws(b));
            let skip = n.unwrap_or(chunk.len());
            let (line, col) = after(self.line, self.col, &chunk[..skip]);
            let next = n.map(|i| chunk[i]);
            self.input.consume(skip);
            self.line = line;
            self.col = col;
            if let Some(b) = next {
                return Ok(Some(b));
            }
        }
    }

    fn expect(&mut self, want: u8, what: &str) -> Result<(), super::ParseError> {
        match self.peek()? {
            Some(b) if b == want => {
                self.input.consume(1);
                self.col += 1;
                Ok(())
            }
            Some(_) => Err(self.fail(format!("expected {what}"))),
            None => Err(self.fail("EOF while parsing a value")),
        }
    }

    /// Cut the next value out of the input into `self.buf` (its line and column are returned).
    fn raw(&mut self) -> Result<(u64, u64), super::ParseError> {
        let first = self.peek()?.ok_or_else(|| self.fail("EOF while parsing a value"))?;
        let at = (self.line, self.col);
        self.buf.clear();
        let scalar = !matches!(first, b'{' | b'[' | b'"');
        let mut depth = 0usize;
        let mut in_str = false;
        let mut escaped = false;
        let mut started = false;
        loop {
            let chunk = fill(&mut self.input, self.line, self.col)?;
            if chunk.is_empty() {
                if scalar && started {
                    (self.line, self.col) = after(self.line, self.col, &self.buf);
                    return Ok(at);
                }
                // Truncated: report where the input ended.
                (self.line, self.col) = after(self.line, self.col, &self.buf);
                return Err(self.fail(if in_str { "EOF while parsing a string" } else { "EOF while parsing a value" }));
            }
            let mut i = 0;
            let mut done = false;
            while i < chunk.len() {
                if escaped {
                    escaped = false;
                    i += 1;
                    continue;
                }
                if in_str {
                    match memchr::memchr2(b'"', b'\\', &chunk[i..]) {
                        Some(k) => {
                            i += k;
                            if chunk[i] == b'\\' {
                                escaped = true;
                            } else {
                                in_str = false;
                                if depth == 0 {
                                    i += 1;
                                    done = true;
                                    break;
                                }
                            }
                            i += 1;
                        }
                        None => i = chunk.len(),
                    }
                    continue;
                }
                let b = chunk[i];
                if scalar {
                    if is_ws(b) || matches!(b, b',' | b'}' | b']') {
                        done = true;
                        break;
                    }
                    started = true;
                    i += 1;
                    continue;
                }
                match b {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            i += 1;
                            done = true;
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            let too_big = self.buf.len() + i > self.max;
            if !too_big {
                self.buf.extend_from_slice(&chunk[..i]);
            }
            self.input.consume(i);
            if too_big {
                return Err(self.fail(format!("a single record is larger than {} MiB", self.max >> 20)));
            }
            if done {
                (self.line, self.col) = after(self.line, self.col, &self.buf);
                return Ok(at);
            }
        }
    }

    /// Parse the next value (a record, or any small value) as `T`.
    pub fn value<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, super::ParseError> {
        self.with::<Owned<T>, _>(|v| v)
    }

    /// Hand the next value to `f`, with its strings borrowed from the input where they need no
    /// unescaping (for records whose texts are mostly copied elsewhere or dropped).
    ///
    /// A value that lies whole in the bytes the input has buffered is parsed where it lies: serde_json
    /// finds its end, nothing is copied or scanned twice. One cut by the end of the buffer (and a
    /// number, which could be cut without looking so) is cut out whole into the scanner's own buffer
    /// first. Errors are placed in the document either way.
    pub fn with<F: Record, U>(&mut self, mut f: impl for<'a> FnMut(F::Of<'a>) -> U) -> Result<U, super::ParseError> {
        self.shrink();
        let first = self.peek()?.ok_or_else(|| self.fail("EOF while parsing a value"))?;
        if !matches!(first, b'-' | b'0'..=b'9') {
            let (out, used, end) = {
                let chunk = fill(&mut self.input, self.line, self.col)?;
                let mut values = serde_json::Deserializer::from_slice(chunk).into_iter::<F::Of<'_>>();
                let parsed = values.next();
                let used = values.byte_offset();
                let out = match parsed {
                    Some(Ok(v)) => Some(f(v)),
                    // Cut by the end of what is buffered (or the input's): read it whole below.
                    Some(Err(e)) if e.is_eof() => None,
                    Some(Err(e)) => return Err(json_error(e, self.line, self.col)),
                    None => None,
                };
                (out, used, after(self.line, self.col, &chunk[..used]))
            };
            if let Some(out) = out {
                (self.line, self.col) = end;
                self.input.consume(used);
                return Ok(out);
            }
        }
        let (line, col) = self.raw()?;
        let v = serde_json::from_slice::<F::Of<'_>>(&self.buf).map_err(|e| json_error(e, line, col))?;
        Ok(f(v))
    }

    /// After a very large record, its buffer is not kept for the small ones that usually follow.
    fn shrink(&mut self) {
        if self.buf.capacity() > 16 << 20 {
            self.buf = Vec::new();
        }
    }

    /// Skip the next value.
    pub fn skip(&mut self) -> Result<(), super::ParseError> {
        self.value::<serde::de::IgnoredAny>().map(|_| ())
    }

    /// Enter an object; false (and nothing to walk) when the value is `null`.
    pub fn object(&mut self) -> Result<bool, super::ParseError> {
        self.open(b'{', "an object")
    }

    /// Enter an array; false (and nothing to walk) when the value is `null`.
    pub fn array(&mut self) -> Result<bool, super::ParseError> {
        self.open(b'[', "an array")
    }

    fn open(&mut self, b: u8, what: &str) -> Result<bool, super::ParseError> {
        if self.peek()? == Some(b'n') {
            let () = self.value::<()>()?;
            return Ok(false);
        }
        self.expect(b, what)?;
        self.first.push(true);
        Ok(true)
    }

    /// Before the next item of the container being walked: false at its end (which is consumed).
    fn item(&mut self, close: u8) -> Result<bool, super::ParseError> {
        let first = *self.first.last().unwrap_or(&true);
        match self.peek()? {
            Some(b) if b == close => {
                self.input.consume(1);
                self.col += 1;
                self.first.pop();
                return Ok(false);
            }
            None => return Err(self.fail("EOF while parsing a value")),
            _ => {}
        }
        if !first {
            self.expect(b',', if close == b'}' { "`,` or `}`" } else { "`,` or `]`" })?;
        }
        if let Some(f) = self.first.last_mut() {
            *f = false;
        }
        Ok(true)
    }

    /// The next key of the object being walked (its value comes next), or None at its end.
    pub fn key(&mut self) -> Result<Option<String>, super::ParseError> {
        if !self.item(b'}')? {
            return Ok(None);
        }
        if self.peek()? != Some(b'"') {
            return Err(self.fail("key must be a string"));
        }
        let k: String = self.value()?;
        self.expect(b':', "`:`")?;
        Ok(Some(k))
    }

    /// Whether the array being walked has another element (which comes next).
    pub fn element(&mut self) -> Result<bool, super::ParseError> {
        self.item(b']')
    }

    /// Only whitespace may follow the document.
    pub fn end(&mut self) -> Result<(), super::ParseError> {
        match self.peek()? {
            None => Ok(()),
            Some(_) => Err(self.fail("trailing characters")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Scanner;
    use std::io::BufReader;

    #[test]
    fn lenient_numbers() {
        #[derive(serde::Deserialize)]
        struct S {
            #[serde(default, deserialize_with = "super::number_lenient")]
            v: Option<f64>,
        }
        let v = |doc: &str| serde_json::from_str::<S>(doc).map(|s| s.v);
        assert_eq!(v(r#"{"v": 7.5}"#).unwrap(), Some(7.5));
        assert_eq!(v(r#"{"v": " 9.8 "}"#).unwrap(), Some(9.8));
        assert_eq!(v(r#"{"v": 10}"#).unwrap(), Some(10.0));
        assert_eq!(v(r#"{"v": -1}"#).unwrap(), Some(-1.0));
        assert_eq!(v(r#"{"v": "n/a"}"#).unwrap(), None);
        assert_eq!(v(r#"{"v": true}"#).unwrap(), None);
        assert_eq!(v(r#"{"v": null}"#).unwrap(), None);
        assert_eq!(v(r#"{}"#).unwrap(), None);
        assert!(v(r#"{"v": {"x": 1}}"#).is_err());
        assert!(v(r#"{"v": [1]}"#).is_err());
    }

    /// Every element of the document's `items` array, read through a buffer of `cap` bytes (so values
    /// and escapes are cut across reads), with the key seen before it.
    fn walk(doc: &str, cap: usize) -> Result<(Option<String>, Vec<serde_json::Value>), String> {
        let mut s = Scanner::new(BufReader::with_capacity(cap, doc.as_bytes()));
        let (mut name, mut items) = (None, Vec::new());
        if s.object().map_err(|e| e.to_string())? {
            while let Some(k) = s.key().map_err(|e| e.to_string())? {
                match k.as_str() {
                    "name" => name = s.value().map_err(|e| e.to_string())?,
                    "items" => {
                        if s.array().map_err(|e| e.to_string())? {
                            while s.element().map_err(|e| e.to_string())? {
                                items.push(s.value().map_err(|e| e.to_string())?);
                            }
                        }
                    }
                    _ => s.skip().map_err(|e| e.to_string())?,
                }
            }
        }
        s.end().map_err(|e| e.to_string())?;
        Ok((name, items))
    }

    const DOC: &str = r#" { "skip": {"a": [1, {"b": "]}"}], "c": "\"{"}, "name" : "x\"y\\",
        "items": [ {"s": "brackets ]}[{ and \"quotes\" and \\"}, 12.5e3, "plain", null, true, [], {"u": "\u00e9\ud83d\ude00"} ],
        "after": -3 } "#;

    #[test]
    fn values_are_cut_whole_whatever_the_read_size() {
        let want: serde_json::Value = serde_json::from_str(DOC).unwrap();
        for cap in [1, 2, 3, 7, 64, 1 << 16] {
            let (name, items) = walk(DOC, cap).unwrap();
            assert_eq!(name.as_deref(), Some("x\"y\\"), "read size {cap}");
            assert_eq!(serde_json::Value::Array(items), want["items"], "read size {cap}");
        }
    }

    #[derive(serde::Deserialize)]
    struct Rec<'a> {
        #[serde(borrow)]
        s: std::borrow::Cow<'a, str>,
    }

    impl super::Record for Rec<'static> {
        type Of<'a> = Rec<'a>;
    }

    #[test]
    fn records_lent_to_a_closure_borrow_what_needs_no_unescaping() {
        let doc = r#"[{"s": "plain"}, {"s": "esc\"aped"}, {"s": "caf\u00e9"}, {"s": "last"}]"#;
        for cap in [1, 2, 5, 16, 1 << 16] {
            let mut s = Scanner::new(BufReader::with_capacity(cap, doc.as_bytes()));
            let mut got = Vec::new();
            assert!(s.array().unwrap());
            while s.element().unwrap() {
                s.with::<Rec<'static>, _>(|r| got.push((r.s.to_string(), matches!(r.s, std::borrow::Cow::Borrowed(_))))).unwrap();
            }
            s.end().unwrap();
            let texts: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
            assert_eq!(texts, ["plain", "esc\"aped", "café", "last"], "read size {cap}");
            // Read whole, the plain texts are borrowed from the input as it lies; escaped ones are not.
            if cap == 1 << 16 {
                assert_eq!(got.iter().map(|(_, b)| *b).collect::<Vec<_>>(), [true, false, false, true]);
            }
        }
    }

    #[test]
    fn null_and_empty_arrays_have_no_elements() {
        assert_eq!(walk(r#"{"items": null}"#, 4).unwrap().1.len(), 0);
        assert_eq!(walk(r#"{"items": [ ]}"#, 4).unwrap().1.len(), 0);
        assert_eq!(walk("{}", 4).unwrap(), (None, vec![]));
    }

    /// serde_json's own message and position for the whole document.
    fn whole(doc: &str) -> String {
        let e = serde_json::from_str::<serde_json::Value>(doc).unwrap_err();
        let m = e.to_string();
        format!("line {}, column {}: {}", e.line(), e.column(), &m[..m.rfind(" at line ").unwrap()])
    }

    #[test]
    fn errors_carry_the_documents_line_and_column() {
        // Inside a record on the third line, and in a record spanning lines: the position is the
        // document's, as serde_json gives it for the whole document.
        for doc in ["{\"name\": \"n\",\n\"items\": [1,\n  {\"a\": tru}]}", "{\"items\": [{\n\"a\": 1,\n\"b\": }]}", "{\"items\": [\"\\q\"]}", "{\"items\": [{\"a\": tru}]}"] {
            assert_eq!(walk(doc, 3).unwrap_err(), whole(doc), "{doc}");
        }
        // Structure between records.
        assert_eq!(walk("{\"items\": [1 2]}", 3).unwrap_err(), "line 1, column 14: expected `,` or `]`");
        assert_eq!(walk("{\"items\": [1]} x", 3).unwrap_err(), "line 1, column 16: trailing characters");
        assert_eq!(walk("{\"items\" [1]}", 3).unwrap_err(), "line 1, column 10: expected `:`");
    }

    #[test]
    fn a_record_over_the_limit_is_refused_without_being_read_whole() {
        let big = format!("{{\"items\": [1, \"{}\", 2]}}", "x".repeat(3 << 20));
        let mut s = Scanner::with_limit(BufReader::with_capacity(1 << 16, big.as_bytes()), 2 << 20);
        assert!(s.object().unwrap() && s.key().unwrap().as_deref() == Some("items") && s.array().unwrap());
        assert!(s.element().unwrap());
        assert_eq!(s.value::<u32>().unwrap(), 1);
        assert!(s.element().unwrap());
        let e = s.value::<String>().unwrap_err().to_string();
        assert!(e.ends_with("a single record is larger than 2 MiB"), "{e}");
        assert!(s.buf.len() <= 2 << 20);
    }

    #[test]
    fn truncation_is_reported_where_the_input_ends() {
        assert_eq!(walk("{\"items\": [{\"a\": \"abc", 4).unwrap_err(), "line 1, column 22: EOF while parsing a string");
        assert_eq!(walk("{\"items\": [{\"a\": [1,\n2", 4).unwrap_err(), "line 2, column 2: EOF while parsing a value");
        assert_eq!(walk("{\"items\": [1,", 4).unwrap_err(), "line 1, column 14: EOF while parsing a value");
        assert_eq!(walk("{\"items\": [1", 4).unwrap_err(), "line 1, column 13: EOF while parsing a value");
    }
}
