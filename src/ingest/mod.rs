//! Scanner report parsers. Each parser streams its input and hands normalised records to a [`Sink`].
//! Nothing here touches the store.

pub mod cyclonedx;
pub mod generic_csv;
pub mod grype;
pub mod jsonstream;
pub mod nessus;
pub mod openvas;
pub mod osv;
pub mod prowler;
pub mod qualys;
pub mod sarif;
pub mod tenable_csv;
pub mod trivy;
pub mod xml;
pub mod zap;

use crate::model::{RawAsset, RawFinding};
use chrono::{DateTime, Utc};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// Receives what a parser understood from one report.
pub trait Sink {
    /// Register an asset; returns its index for [`RawFinding::asset`]. Registering the same asset twice is fine.
    fn asset(&mut self, a: RawAsset) -> u32;
    /// Add what was learned later about an asset registered earlier (reports that name their target last).
    fn refine_asset(&mut self, idx: u32, a: RawAsset);
    fn finding(&mut self, f: RawFinding);
    /// A finding to fill where it lies, then pass on with `commit`, as `RawFinding::new(asset, "", "",
    /// category)` makes it; it may be one passed before, reset, whose buffers its setters
    /// (`set_description`...) and `String::push_str` write into without allocating. Until `commit`,
    /// the next `blank` returns the same finding again.
    fn blank(&mut self, asset: u32, category: crate::model::Category) -> &mut RawFinding;
    /// The finding `blank` lent and not yet passed on, to go on filling it.
    fn current(&mut self) -> Option<&mut RawFinding>;
    /// Pass on the finding `blank` returned last, as `finding` does.
    fn commit(&mut self);
    /// A record that could not be understood: kept in quarantine with its position and reason.
    fn skip(&mut self, position: String, reason: String, snippet: String);
    /// The time the scan ran, when the report says.
    fn scan_time(&mut self, t: DateTime<Utc>);
    /// The tool that produced the report, when the report says (e.g. the SARIF driver name).
    fn tool(&mut self, name: &str);
}

/// Why a file could not be imported, with where in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub position: String,
    pub message: String,
}

impl ParseError {
    pub fn new(position: impl Into<String>, message: impl Into<String>) -> Self {
        ParseError {
            position: position.into(),
            message: message.into(),
        }
    }
    pub fn at_byte(pos: u64, message: impl Into<String>) -> Self {
        ParseError::new(format!("byte {pos}"), message)
    }
    pub fn json(e: &serde_json::Error) -> Self {
        let msg = e.to_string();
        // serde_json appends " at line L column C"; keep the message clean and the position separate.
        let clean = match msg.rfind(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        if e.line() == 0 {
            ParseError::new("end of input", clean)
        } else {
            ParseError::new(format!("line {}, column {}", e.line(), e.column()), clean)
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.position, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Supported input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Nessus,
    TenableCsv,
    Qualys,
    OpenVas,
    Trivy,
    Grype,
    Sarif,
    CycloneDxJson,
    CycloneDxXml,
    Osv,
    ProwlerOcsf,
    GenericCsv,
    Zap,
}

impl Format {
    pub const ALL: [Format; 13] = [
        Format::Nessus,
        Format::TenableCsv,
        Format::Qualys,
        Format::OpenVas,
        Format::Trivy,
        Format::Grype,
        Format::Sarif,
        Format::CycloneDxJson,
        Format::CycloneDxXml,
        Format::Osv,
        Format::ProwlerOcsf,
        Format::GenericCsv,
        Format::Zap,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Nessus => "nessus",
            Format::TenableCsv => "tenable-csv",
            Format::Qualys => "qualys",
            Format::OpenVas => "openvas",
            Format::Trivy => "trivy",
            Format::Grype => "grype",
            Format::Sarif => "sarif",
            Format::CycloneDxJson => "cyclonedx-json",
            Format::CycloneDxXml => "cyclonedx-xml",
            Format::Osv => "osv",
            Format::ProwlerOcsf => "prowler-ocsf",
            Format::GenericCsv => "csv",
            Format::Zap => "zap",
        }
    }

    /// The tool recorded as the source when the report does not name one.
    pub fn default_tool(self) -> &'static str {
        match self {
            Format::Nessus | Format::TenableCsv => "nessus",
            Format::Qualys => "qualys",
            Format::OpenVas => "openvas",
            Format::Trivy => "trivy",
            Format::Grype => "grype",
            Format::Sarif => "sarif",
            Format::CycloneDxJson | Format::CycloneDxXml => "cyclonedx",
            Format::Osv => "osv-scanner",
            Format::ProwlerOcsf => "prowler",
            Format::GenericCsv => "csv",
            Format::Zap => "zap",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        let s = s.trim().to_ascii_lowercase();
        Format::ALL.into_iter().find(|f| f.name() == s).or(match s.as_str() {
            "tenable" | "nessus-csv" => Some(Format::TenableCsv),
            "cyclonedx" => Some(Format::CycloneDxJson),
            "osv-scanner" => Some(Format::Osv),
            "prowler" | "ocsf" => Some(Format::ProwlerOcsf),
            "generic-csv" => Some(Format::GenericCsv),
            _ => None,
        })
    }
}

/// Options a parser may need beyond the input itself.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Name of the asset for reports that do not say what they scanned (SARIF without provenance, `trivy fs .`).
    pub asset_hint: Option<String>,
    /// Column mapping for the generic CSV importer.
    pub mapping: Option<generic_csv::Mapping>,
    /// Bytes of the file read so far, for progress bars.
    pub progress: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

/// Upper bound on the decompressed bytes read from one input (guards against decompression bombs).
pub const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024 * 1024;

/// A reader that fails once more than `limit` bytes have passed through it.
pub struct LimitedReader<R> {
    inner: R,
    left: u64,
}

impl<R> LimitedReader<R> {
    pub fn new(inner: R) -> Self {
        LimitedReader { inner, left: MAX_INPUT_BYTES }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other("input larger than the import limit (64 GiB decompressed)"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Open a file for parsing, decompressing gzip transparently (detected by magic bytes, not by name).
/// The hash is of the bytes on disk.
pub fn open_input(path: &Path) -> io::Result<Box<dyn BufRead + Send>> {
    let f = File::open(path)?;
    let mut raw = BufReader::with_capacity(1 << 18, f);
    let gz = {
        let head = raw.fill_buf()?;
        head.len() >= 2 && head[0] == 0x1f && head[1] == 0x8b
    };
    if gz {
        let dec = flate2::bufread::MultiGzDecoder::new(raw);
        Ok(Box::new(BufReader::with_capacity(
            1 << 18,
            LimitedReader {
                inner: dec,
                left: MAX_INPUT_BYTES,
            },
        )))
    } else {
        Ok(Box::new(raw))
    }
}

/// Detect a report's format from its first bytes.
pub fn detect(head: &[u8]) -> Option<Format> {
    let text = String::from_utf8_lossy(head);
    let t = text.trim_start_matches('\u{feff}').trim_start();
    if t.starts_with('<') {
        if t.contains("<NessusClientData_v2") {
            return Some(Format::Nessus);
        }
        if t.contains("<OWASPZAPReport") {
            return Some(Format::Zap);
        }
        if t.contains("<ASSET_DATA_REPORT") {
            return Some(Format::Qualys);
        }
        if t.contains("<bom") && t.contains("cyclonedx") {
            return Some(Format::CycloneDxXml);
        }
        if t.contains("<report") && (t.contains("<nvt") || t.contains("<omp") || t.contains("<gmp") || t.contains("<results")) {
            return Some(Format::OpenVas);
        }
        return None;
    }
    if t.starts_with('{') || t.starts_with('[') {
        let has = |k: &str| t.contains(k);
        if has("\"bomFormat\"") && has("CycloneDX") {
            return Some(Format::CycloneDxJson);
        }
        if has("\"runs\"") && (has("sarif") || has("\"2.1.0\"")) {
            return Some(Format::Sarif);
        }
        if has("\"matches\"") && (has("\"artifact\"") || has("\"descriptor\"") || has("\"vulnerability\"")) {
            return Some(Format::Grype);
        }
        if has("\"SchemaVersion\"") || has("\"ArtifactName\"") || has("\"ClusterName\"")
            || (has("\"Target\"") && (has("\"Vulnerabilities\"") || has("\"Misconfigurations\"") || has("\"Secrets\"")))
        {
            return Some(Format::Trivy);
        }
        if has("\"results\"") && has("\"packages\"") && has("\"source\"") {
            return Some(Format::Osv);
        }
        if has("\"finding_info\"") && (has("\"class_uid\"") || has("\"status_code\"")) {
            return Some(Format::ProwlerOcsf);
        }
        return None;
    }
    // CSV: look at the header line.
    let first = t.lines().next().unwrap_or("");
    if first.contains("Plugin ID")
        || first.contains("definition.id")
        || first.contains("Plugin\"")
        || (first.starts_with("Plugin,") && first.contains("Plugin Name"))
    {
        return Some(Format::TenableCsv);
    }
    None
}

/// Run the parser for `format` over `input`.
pub fn parse(
    format: Format,
    input: &mut dyn BufRead,
    sink: &mut dyn Sink,
    opts: &ParseOptions,
) -> Result<(), ParseError> {
    match format {
        Format::Nessus => nessus::parse(input, sink),
        Format::TenableCsv => tenable_csv::parse(input, sink),
        Format::Qualys => qualys::parse(input, sink),
        Format::OpenVas => openvas::parse(input, sink),
        Format::Trivy => trivy::parse(input, sink, opts),
        Format::Grype => grype::parse(input, sink),
        Format::Sarif => sarif::parse(input, sink, opts),
        Format::CycloneDxJson => cyclonedx::parse_json(input, sink, opts),
        Format::CycloneDxXml => cyclonedx::parse_xml(input, sink, opts),
        Format::Osv => osv::parse(input, sink, opts),
        Format::ProwlerOcsf => prowler::parse(input, sink),
        Format::Zap => zap::parse(input, sink),
        Format::GenericCsv => match &opts.mapping {
            Some(m) => generic_csv::parse(input, sink, m),
            None => Err(ParseError::new(
                "file",
                "this CSV is not a known scanner export: give a column mapping with --mapping FILE.toml",
            )),
        },
    }
}

/// Parse an RFC 3339 / ISO 8601 timestamp leniently (with or without zone, fractional seconds).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S %z") {
        return Some(t.with_timezone(&Utc));
    }
    // Nessus: "Mon Jul  1 11:40:48 2013"
    let squashed = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&squashed, "%a %b %d %H:%M:%S %Y") {
        return Some(t.and_utc());
    }
    // The same with a weekday that does not match the date: the date wins.
    if let Some((_, rest)) = squashed.split_once(' ') {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(rest, "%b %d %H:%M:%S %Y") {
            return Some(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    None
}

/// Keep a short, single-line excerpt of a bad record for the quarantine.
pub fn snippet(s: &str) -> String {
    let one: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
    one
}

/// `n` in decimal, appended to `s` (as `format!` writes it).
pub fn push_int(s: &mut String, n: i64) {
    if n < 0 {
        s.push('-');
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    s.extend(digits[i..].iter().map(|&d| d as char));
}

/// Treat empty strings as absent.
pub fn nonempty(s: Option<String>) -> Option<String> {
    s.and_then(|v| {
        let t = v.trim();
        if t.is_empty() { None } else if t.len() == v.len() { Some(v) } else { Some(t.to_string()) }
    })
}

/// `nonempty` for a borrowed text, still borrowed (for a finding's setters, which copy it).
pub fn trimmed(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_int_writes_what_format_writes() {
        for n in [0i64, 7, 80, 65535, -1, -443, i64::MIN, i64::MAX] {
            let mut s = String::from("x");
            push_int(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }

    #[test]
    fn detects_by_content() {
        assert_eq!(detect(b"<?xml version=\"1.0\" ?>\n<NessusClientData_v2>"), Some(Format::Nessus));
        assert_eq!(detect(b"{\"SchemaVersion\": 2, \"ArtifactName\": \"x\"}"), Some(Format::Trivy));
        assert_eq!(detect(b"{\"matches\": [{\"vulnerability\": {}}]}"), Some(Format::Grype));
        assert_eq!(detect(b"hello"), None);
    }

    #[test]
    fn times() {
        assert!(parse_time("Mon Jul  1 11:40:48 2013").is_some());
        assert!(parse_time("2024-01-15T08:58:29.82753744Z").is_some());
        assert!(parse_time("2025-02-14T14:27:03.913874").is_some());
        assert!(parse_time("nope").is_none());
    }
}
