//! Import pipeline: a parser thread streams normalised records through a bounded channel to the store,
//! which appends them to staging tables and merges them with set-based SQL, all in one transaction per file.

use crate::ingest::{self, Format, ParseError, ParseOptions, Sink};
use crate::model::{Applicability, Category, IdKind, RawAsset, RawFinding, Severity};
use crate::store::fasthash::{FxBuild, FxMap};
use crate::store::Store;
use chrono::{DateTime, Utc};
use duckdb::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int32Array, Int8Array, StringArray, StringBuilder};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::params;
use sha2::Digest;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Findings per batch from the parser to the store, and batches in flight: they carry whole findings
/// (texts included), so this bounds memory as much as it smooths the hand-over.
const BATCH: usize = 4096;
const BATCHES_IN_FLIGHT: usize = 3;
/// Report rows per INSERT of new findings.
const INSERT_SLICE: i64 = 500_000;
/// The engine's memory limit while importing. The process stays under 500 MB on a 2 GB Nessus file:
/// the engine's working memory outside its cap (its vectors, compression state, spill buffers) and
/// what the allocator has yet to hand back come on top.
const DEFAULT_IMPORT_MEMORY: &str = "220MB";

/// Phase timings on stderr when `CTEM_PROFILE` is set (for benchmarking the import path).
struct Phases {
    on: bool,
    last: Instant,
    cpu: f64,
}

/// This process's resident memory and its peak so far, in MB (Linux; 0 elsewhere).
fn process_memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok()).unwrap_or(0)
    };
    (kb("VmRSS:") >> 10, kb("VmHWM:") >> 10)
}

/// CPU seconds this process has used, all threads (Linux; 0 elsewhere).
fn process_cpu() -> f64 {
    cpu_seconds("self").unwrap_or(0.0)
}

/// CPU seconds process `pid` ("self" for this one) has used so far, all threads, from `/proc` (Linux;
/// None elsewhere or once the process is gone).
pub(crate) fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces): utime is the 12th, stime the 13th.
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
}

impl Phases {
    fn new() -> Phases {
        let on = std::env::var_os("CTEM_PROFILE").is_some();
        Phases { on, last: Instant::now(), cpu: if on { process_cpu() } else { 0.0 } }
    }
    fn mark(&mut self, what: &str) {
        if self.on {
            let cpu = process_cpu();
            eprintln!("  {:>8.3}s  {:>6.2} cpu-s  {what}", self.last.elapsed().as_secs_f64(), cpu - self.cpu);
            self.cpu = cpu;
        }
        self.last = Instant::now();
    }
    /// `mark`, then what the engine holds in memory and in temporary files.
    fn mark_in(&mut self, c: &duckdb::Connection, what: &str) {
        self.mark(what);
        if self.on {
            let (mem, tmp): (i64, i64) = c
                .query_row("SELECT sum(memory_usage_bytes)::BIGINT, sum(temporary_storage_bytes)::BIGINT FROM duckdb_memory()", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap_or((-1, -1));
            let (rss, peak) = process_memory();
            eprintln!("             engine memory {} MB, temporary files {} MB; process {rss} MB, peak {peak} MB", mem >> 20, tmp >> 20);
            self.last = Instant::now();
            self.cpu = process_cpu();
        }
    }
}
/// Interned text beyond this many bytes is passed through without de-duplication (bounded memory).
const INTERN_LIMIT: usize = 8 << 20;
/// Quarantine rows kept per import (all skips are counted).
const QUARANTINE_LIMIT: u64 = 100_000;

/// What a report says about a vulnerability, as opposed to where it found it. Reports repeat it for
/// every asset (5,000 plugins over a million Nessus results), so it is staged once and referred to.
/// What may differ from one finding of it to the next is not part of it: the title and the solution
/// (tools name the package in them: "CVE-... in openssl 3.0.2"), the severity and the CVSS score.
#[derive(Clone)]
struct Def {
    /// The tool's name as the report gave it: with the id, it makes the vulnerability key of a
    /// finding that has no CVE or GHSA.
    tool: String,
    vuln_id: String,
    vuln_key: String,
    cves: Vec<String>,
    aliases: Vec<String>,
    cwes: Vec<String>,
    desc_t: Option<u32>,
    category: Category,
    exploit: Option<bool>,
}

impl Def {
    fn bytes(&self) -> usize {
        let l = |v: &[String]| v.iter().map(|s| s.len() + 24).sum::<usize>();
        self.tool.len() + self.vuln_id.len() + self.vuln_key.len() + l(&self.cves) + l(&self.aliases) + l(&self.cwes) + 160
    }

    /// Whether `f`, reported by `tool` with description `desc_t`, is this definition.
    fn is(&self, f: &RawFinding, tool: &str, desc_t: Option<u32>) -> bool {
        self.desc_t == desc_t
            && self.category == f.category
            && self.exploit == f.exploit_available
            && self.vuln_id == f.vuln_id
            && self.cves == f.cves
            && self.aliases == f.aliases
            && self.cwes == f.cwes
            && self.tool == tool
    }

    /// The hash of what `is` compares.
    fn hash_of(h: &FxBuild, f: &RawFinding, tool: &str, desc_t: Option<u32>) -> u64 {
        h.hash_one((desc_t, f.category as u8, f.exploit_available, &f.vuln_id, &f.cves, &f.aliases, &f.cwes, tool))
    }
}

/// Where on its asset a finding is: its location key and the package, versions and file or resource.
/// Most reports name few distinct places for many findings (the same packages on every image, none for
/// host checks), so they are staged once each and the staged rows stay narrow, which keeps the engine's
/// sort of the new findings cheap.
#[derive(Clone)]
struct Place {
    loc_key: String,
    package: Option<String>,
    installed_version: Option<String>,
    fixed_version: Option<String>,
    protocol: Option<String>,
    location: Option<String>,
}

impl Place {
    fn bytes(&self) -> usize {
        let o = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        self.loc_key.len() + o(&self.package) + o(&self.installed_version) + o(&self.fixed_version) + o(&self.protocol) + o(&self.location) + 160
    }

    /// Whether `f`, whose location key is `lk`, is at this place.
    fn is(&self, f: &RawFinding, lk: &str) -> bool {
        self.loc_key == lk
            && self.package == f.package
            && self.installed_version == f.installed_version
            && self.fixed_version == f.fixed_version
            && self.protocol == f.protocol
            && self.location == f.location
    }

    fn hash_of(h: &FxBuild, f: &RawFinding, lk: &str) -> u64 {
        h.hash_one((lk, &f.package, &f.installed_version, &f.fixed_version, &f.protocol, &f.location))
    }

    fn of(f: &RawFinding, lk: &str) -> Place {
        Place {
            loc_key: lk.to_string(),
            package: f.package.clone(),
            installed_version: f.installed_version.clone(),
            fixed_version: f.fixed_version.clone(),
            protocol: f.protocol.clone(),
            location: f.location.clone(),
        }
    }
}

/// The staged rows of a batch, as the columns of `stage_findings` (the appender takes whole columns:
/// far cheaper than binding every value of every row). The texts are copied into the columns.
#[derive(Default)]
struct Rows {
    seq: Vec<i32>,
    akey: Vec<i32>,
    def: Vec<i32>,
    /// The title as interned (`title_t`), else as written.
    title_t: Vec<Option<i32>>,
    title: StringBuilder,
    sol_t: Vec<Option<i32>>,
    /// The severity as its rank (critical 4 ... info 0): `sev_name` turns it back into the name.
    sev_rank: Vec<i8>,
    raw_severity: StringBuilder,
    cvss_score: Vec<Option<f64>>,
    /// The CVSS vector, interned with the texts.
    vec_t: Vec<Option<i32>>,
    place: Vec<i32>,
    port: Vec<Option<i32>>,
    /// Whether the tool says the asset is affected (VEX and tools' not-affected or false-positive marks).
    affected: Vec<bool>,
    raw_id: StringBuilder,
}

impl Rows {
    fn is_empty(&self) -> bool {
        self.seq.is_empty()
    }

    /// The rows so far as a batch, in the order and types of `stage_findings`; the columns start empty again.
    fn take(&mut self) -> Result<RecordBatch, duckdb::Error> {
        fn i32s(v: &mut Vec<i32>) -> ArrayRef {
            Arc::new(Int32Array::from(std::mem::take(v)))
        }
        fn opt_i32s(v: &mut Vec<Option<i32>>) -> ArrayRef {
            Arc::new(Int32Array::from(std::mem::take(v)))
        }
        batch(vec![
            ("seq", i32s(&mut self.seq)),
            ("akey", i32s(&mut self.akey)),
            ("def", i32s(&mut self.def)),
            ("title_t", opt_i32s(&mut self.title_t)),
            ("title", Arc::new(self.title.finish())),
            ("sol_t", opt_i32s(&mut self.sol_t)),
            ("sev_rank", Arc::new(Int8Array::from(std::mem::take(&mut self.sev_rank)))),
            ("raw_severity", Arc::new(self.raw_severity.finish())),
            ("cvss_score", Arc::new(Float64Array::from(std::mem::take(&mut self.cvss_score)))),
            ("vec_t", opt_i32s(&mut self.vec_t)),
            ("place", i32s(&mut self.place)),
            ("port", opt_i32s(&mut self.port)),
            ("affected", Arc::new(BooleanArray::from(std::mem::take(&mut self.affected)))),
            ("raw_id", Arc::new(self.raw_id.finish())),
        ])
    }
}

#[derive(Default)]
struct Batch {
    findings: Vec<RawFinding>,
    /// The hashes of each finding's texts (`TextHashes`), worked out on the parser's thread while the
    /// texts are still in its cache: the store's thread, the busier one on most reports, then reads a
    /// text only to compare it with the one of the same hash.
    hashes: Vec<TextHashes>,
    /// Whether the findings go back to the parser to be reused (it asked for them with `Sink::blank`)
    /// rather than being freed once staged.
    reuse: bool,
    /// The tool that reported them (a report may name its tool part-way).
    tool: String,
    skips: Vec<(String, String, String)>,
}

/// The identity key of the vulnerability: a CVE when the tool names one (so Nessus and Qualys agree),
/// else a GHSA/OSV id, else the tool's own rule or plugin id qualified by the tool.
pub fn vuln_key(f: &RawFinding, tool: &str) -> String {
    if f.category == Category::Vulnerability || f.category == Category::Web {
        if let Some(c) = f.cves.iter().min_by(|a, b| cve_order(a).cmp(&cve_order(b))) {
            return c.clone();
        }
        let ghsa = std::iter::once(&f.vuln_id).chain(f.aliases.iter()).find(|a| a.starts_with("GHSA-"));
        if let Some(g) = ghsa {
            return g.clone();
        }
    }
    format!("{}:{}", tool_family(tool), f.vuln_id)
}

fn cve_order(c: &str) -> (u32, u64) {
    let mut it = c.trim_start_matches("CVE-").splitn(2, '-');
    let y = it.next().and_then(|y| y.parse().ok()).unwrap_or(u32::MAX);
    let n = it.next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
    (y, n)
}

/// Tools whose ids share one namespace.
fn tool_family(tool: &str) -> String {
    let t = tool.to_ascii_lowercase();
    if t.contains("nessus") || t.contains("tenable") {
        "nessus".into()
    } else {
        t
    }
}

/// Where on the asset: the package and version for package vulnerabilities, nothing for host-level CVEs
/// (one CVE on one host is one exposure whatever port a scanner saw it on), the port for host checks
/// without a CVE, and the file, line or resource for everything else.
/// Written into `k` (cleared first): the import reuses one buffer for every finding.
fn loc_key_into(f: &RawFinding, k: &mut String) {
    use std::fmt::Write;
    k.clear();
    match f.category {
        Category::Vulnerability => {
            if let Some(p) = &f.package {
                k.push_str("pkg:");
                k.extend(p.chars().map(|c| c.to_ascii_lowercase()));
                k.push('@');
                k.push_str(f.installed_version.as_deref().unwrap_or_default());
            } else if f.cves.is_empty() && f.port.unwrap_or(0) > 0 {
                let _ = write!(k, "port:{}/{}", f.port.unwrap_or(0), f.protocol.as_deref().unwrap_or_default());
            }
        }
        _ => {
            k.push_str("loc:");
            k.extend(f.location.as_deref().unwrap_or_default().chars().map(|c| c.to_ascii_lowercase()));
            if f.port.unwrap_or(0) > 0 {
                let _ = write!(k, "|port:{}", f.port.unwrap_or(0));
            }
        }
    }
}

/// The hashes of a finding's description, solution, CVSS vector and title (0 for none), with the
/// hasher the store's interners use.
#[derive(Clone, Copy, Default)]
struct TextHashes([u64; 4]);

impl TextHashes {
    fn of(h: &FxBuild, f: &RawFinding) -> TextHashes {
        let o = |t: &Option<String>| t.as_deref().map_or(0, |t| h.hash_one(t));
        TextHashes([o(&f.description), o(&f.solution), o(&f.cvss_vector), h.hash_one(f.title.as_str())])
    }
}

/// The parser's side of an import: resolves asset identities inside the report and passes findings
/// on in batches (normalising and staging them runs on the store's thread, in parallel).
struct Collector {
    /// The hasher of the store's text interners.
    text_hasher: FxBuild,
    tx: SyncSender<Batch>,
    /// Batches' buffers come back once staged, to be filled again: a buffer of 4,096 findings is about
    /// 2 MB, and growing a new one for every batch copied it over and over into fresh memory. They come
    /// back with their findings when the parser reuses them (`Sink::blank`), empty otherwise.
    spare: Receiver<Vec<RawFinding>>,
    /// The batch being filled: its first `filled` findings are this batch's; any after them were staged
    /// in an earlier one and are reset and filled again in place (`Sink::blank`), rather than moved
    /// out and back (a finding is about 600 bytes, and comes back cold from the other core).
    batch: Batch,
    filled: usize,
    /// Whether the finding at `filled` is lent (`Sink::blank`) and not yet passed on.
    lent: bool,
    /// Whether the parser reuses findings.
    reuse: bool,
    tool: String,
    ids: FxMap<(IdKind, String), u32>,
    parent: Vec<u32>,
    assets: Vec<RawAsset>,
    scan_time: Option<DateTime<Utc>>,
    records: u64,
    skipped: u64,
    stem: String,
    receiver_gone: bool,
}

impl Collector {
    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    fn union(&mut self, a: u32, b: u32) -> u32 {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return ra;
        }
        let (keep, gone) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[gone as usize] = keep;
        keep
    }

    fn send(&mut self) {
        self.batch.findings.truncate(self.filled);
        self.filled = 0;
        if self.receiver_gone {
            self.batch.findings.clear();
            self.batch.hashes.clear();
            self.batch.skips.clear();
            return;
        }
        // A buffer back from the store: empty, or with its staged findings when the parser reuses them.
        let findings = self.spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH));
        let mut b = std::mem::replace(&mut self.batch, Batch { findings, hashes: Vec::with_capacity(BATCH), ..Default::default() });
        b.tool = self.tool.clone();
        b.reuse = self.reuse;
        if self.tx.send(b).is_err() {
            self.receiver_gone = true;
        }
    }

    fn merge_into(dst: &mut RawAsset, src: &RawAsset) {
        if dst.kind.is_none() {
            dst.kind = src.kind;
        }
        if dst.name.is_empty() {
            dst.name = src.name.clone();
        }
        macro_rules! fill {
            ($f:ident) => {
                if dst.$f.is_none() {
                    dst.$f = src.$f.clone();
                }
            };
        }
        fill!(hostname);
        fill!(fqdn);
        fill!(os);
        fill!(cloud_provider);
        fill!(account);
        fill!(region);
        for ip in &src.ips {
            if !dst.ips.contains(ip) {
                dst.ips.push(ip.clone());
            }
        }
        for t in &src.tags {
            if !dst.tags.contains(t) {
                dst.tags.push(t.clone());
            }
        }
        for id in &src.ids {
            if !dst.ids.contains(id) {
                dst.ids.push(id.clone());
            }
        }
    }

    fn link(&mut self, akey: u32, a: &RawAsset) -> u32 {
        let mut root = self.find(akey);
        for id in a.identifiers() {
            match self.ids.get(&id) {
                Some(&other) => root = self.union(root, other),
                None => {
                    self.ids.insert(id, root);
                }
            }
        }
        root
    }
}

impl Sink for Collector {
    fn asset(&mut self, a: RawAsset) -> u32 {
        // Same identity as an asset already seen in this report: reuse it.
        let known = a.identifiers().into_iter().find_map(|id| self.ids.get(&id).copied());
        if let Some(k) = known {
            let root = self.link(k, &a);
            Collector::merge_into(&mut self.assets[root as usize], &a);
            return root;
        }
        let idx = self.assets.len() as u32;
        self.parent.push(idx);
        self.assets.push(a.clone());
        self.link(idx, &a);
        idx
    }

    fn refine_asset(&mut self, idx: u32, a: RawAsset) {
        if idx as usize >= self.assets.len() {
            return;
        }
        let root = self.link(idx, &a);
        let mut cur = std::mem::take(&mut self.assets[root as usize]);
        Collector::merge_into(&mut cur, &a);
        if !a.name.is_empty() {
            cur.name = a.name.clone();
        }
        if a.kind.is_some() {
            cur.kind = a.kind;
        }
        self.assets[root as usize] = cur;
    }

    fn blank(&mut self, asset: u32, category: Category) -> &mut RawFinding {
        self.reuse = true;
        self.lent = true;
        let (i, v) = (self.filled, &mut self.batch.findings);
        if i < v.len() {
            v[i].reset(asset, category);
        } else {
            v.push(RawFinding::new(asset, String::new(), String::new(), category));
        }
        &mut v[i]
    }

    fn current(&mut self) -> Option<&mut RawFinding> {
        if self.lent { self.batch.findings.get_mut(self.filled) } else { None }
    }

    fn commit(&mut self) {
        if !std::mem::take(&mut self.lent) {
            return;
        }
        self.records += 1;
        let f = &self.batch.findings[self.filled];
        if f.asset as usize >= self.assets.len() {
            // The slot stays this batch's spare, for the next finding.
            let title = f.title.clone();
            self.skip(format!("record {}", self.records), "finding refers to no asset".into(), title);
            return;
        }
        self.batch.hashes.push(TextHashes::of(&self.text_hasher, f));
        self.filled += 1;
        if self.filled >= BATCH {
            self.send();
        }
    }

    /// Takes the next slot of the batch (a finding lent and not passed on is given up) and passes it on.
    fn finding(&mut self, f: RawFinding) {
        let (i, v) = (self.filled, &mut self.batch.findings);
        if i < v.len() {
            v[i] = f;
        } else {
            v.push(f);
        }
        self.lent = true;
        self.commit();
    }

    fn skip(&mut self, position: String, reason: String, snippet: String) {
        self.skipped += 1;
        if self.skipped <= QUARANTINE_LIMIT {
            self.batch.skips.push((position, reason, ingest::snippet(&snippet)));
        }
    }

    fn scan_time(&mut self, t: DateTime<Utc>) {
        if self.scan_time.is_none_or(|s| t > s) {
            self.scan_time = Some(t);
        }
    }

    fn tool(&mut self, name: &str) {
        let n = name.trim().to_ascii_lowercase();
        if !n.is_empty() && n != self.tool {
            // Findings so far were reported under the previous name.
            if !self.batch.findings.is_empty() {
                self.send();
            }
            self.tool = n;
        }
    }
}

/// The store's side of an import: keys, interned texts and definitions, and the staged rows of each
/// batch of findings, appended as columns.
#[derive(Default)]
struct Stager {
    texts: Interner<String>,
    /// Titles, interned while they fit (most reports repeat a vulnerability's title on every asset; some
    /// name the package and version in it, and then nearly every title is new and is staged inline).
    titles: Interner<String>,
    defs: Interner<Def>,
    places: Interner<Place>,
    seq: u32,
    rows: Rows,
    /// The location key of the finding being staged (one buffer for all of them).
    lk: String,
}

/// Values numbered the first time they are seen; the new ones wait in `out` to be staged. A value is
/// looked up by what it would be made from (its hash and a comparison), so one seen before costs no
/// allocation. Within a memory bound: beyond it, values are numbered and staged every time, which is
/// correct, only larger.
struct Interner<V> {
    /// Each known value with its hash and number.
    known: hashbrown::HashTable<(u64, u32, V)>,
    hasher: FxBuild,
    bytes: usize,
    next: u32,
    out: Vec<(u32, V)>,
}

impl<V> Default for Interner<V> {
    fn default() -> Self {
        Interner { known: hashbrown::HashTable::new(), hasher: FxBuild::default(), bytes: 0, next: 0, out: Vec::new() }
    }
}

impl<V: Clone> Interner<V> {
    fn find(&self, hash: u64, is: impl Fn(&V) -> bool) -> Option<u32> {
        self.known.find(hash, |(h, _, v)| *h == hash && is(v)).map(|(_, id, _)| *id)
    }

    /// The number of the value `is` recognises (`hash` being its hash), else a new one for `make()`,
    /// which costs `size` bytes to keep.
    fn id(&mut self, hash: u64, is: impl Fn(&V) -> bool, make: impl FnOnce() -> V, size: impl FnOnce(&V) -> usize) -> u32 {
        match self.find(hash, is) {
            Some(id) => id,
            None => self.add(hash, make(), size),
        }
    }

    /// A new number for `v`, which is not known (kept while within the bound).
    fn add(&mut self, hash: u64, v: V, size: impl FnOnce(&V) -> usize) -> u32 {
        let id = self.next;
        self.next += 1;
        if self.bytes < INTERN_LIMIT {
            self.bytes += size(&v);
            self.known.insert_unique(hash, (hash, id, v.clone()), |(h, _, _)| *h);
        }
        self.out.push((id, v));
        id
    }
}

impl Interner<String> {
    /// The number of a text whose hash (by this interner's hasher) is `h`.
    fn text(&mut self, h: u64, t: &str) -> u32 {
        self.id(h, |v| v == t, || t.to_string(), String::len)
    }

    /// The number of a text (hash `h`) if it has one or there is room to give it one; None once the
    /// memory bound is reached (the caller keeps the text itself). Counted with what the entry itself
    /// costs: these are titles, which are short, and there may be a million of them.
    fn try_text(&mut self, h: u64, t: &str) -> Option<u32> {
        if let Some(id) = self.find(h, |v| v == t) {
            return Some(id);
        }
        if self.bytes >= INTERN_LIMIT {
            return None;
        }
        Some(self.add(h, t.to_string(), |v| v.len() + 48))
    }
}

impl Stager {
    /// Stages `f`, whose texts hash to `th` (by `texts.hasher`, which `titles` shares).
    fn stage(&mut self, f: &RawFinding, th: TextHashes, tool: &str) {
        let [hd, hs, hv, ht] = th.0;
        let desc_t = f.description.as_deref().map(|d| self.texts.text(hd, d));
        let sol_t = f.solution.as_deref().map(|d| self.texts.text(hs, d));
        let vec_t = f.cvss_vector.as_deref().map(|d| self.texts.text(hv, d));
        let title_t = self.titles.try_text(ht, &f.title);
        self.seq += 1;
        let hash = Def::hash_of(&self.defs.hasher, f, tool, desc_t);
        let def = self.defs.id(
            hash,
            |d| d.is(f, tool, desc_t),
            || Def {
                tool: tool.to_string(),
                vuln_id: f.vuln_id.clone(),
                vuln_key: vuln_key(f, tool),
                cves: f.cves.clone(),
                aliases: f.aliases.clone(),
                cwes: f.cwes.clone(),
                desc_t,
                category: f.category,
                exploit: f.exploit_available,
            },
            Def::bytes,
        );
        loc_key_into(f, &mut self.lk);
        let lk = self.lk.as_str();
        let place = self.places.id(Place::hash_of(&self.places.hasher, f, lk), |p| p.is(f, lk), || Place::of(f, lk), Place::bytes);
        let r = &mut self.rows;
        r.seq.push(self.seq as i32);
        r.akey.push(f.asset as i32);
        r.def.push(def as i32);
        r.title_t.push(title_t.map(|t| t as i32));
        r.title.append_option(if title_t.is_some() { None } else { Some(&f.title) });
        r.sol_t.push(sol_t.map(|t| t as i32));
        r.sev_rank.push(f.severity.rank() as i8);
        r.raw_severity.append_value(&f.raw_severity);
        r.cvss_score.push(f.cvss_score.filter(|s| s.is_finite() && (0.0..=10.0).contains(s)));
        r.vec_t.push(vec_t.map(|t| t as i32));
        r.place.push(place as i32);
        r.port.push(f.port);
        r.affected.push(matches!(f.applicability, Applicability::Affected));
        r.raw_id.append_value(&f.raw_id);
    }
}

/// One asset (after identity resolution inside the report) as staged for the merge.
struct FinalAsset {
    root: u32,
    a: RawAsset,
    ids: Vec<(IdKind, String)>,
}

struct Final {
    akey_root: Vec<u32>,
    assets: Vec<FinalAsset>,
    tool: String,
    scan_time: Option<DateTime<Utc>>,
    records: u64,
    skipped: u64,
}

impl Collector {
    fn finish(mut self) -> Final {
        self.send();
        let n = self.assets.len() as u32;
        let akey_root: Vec<u32> = (0..n).map(|i| self.find(i)).collect();
        let mut by_root: HashMap<u32, RawAsset> = HashMap::new();
        for i in 0..n {
            let r = akey_root[i as usize];
            let a = std::mem::take(&mut self.assets[i as usize]);
            match by_root.get_mut(&r) {
                Some(dst) => Collector::merge_into(dst, &a),
                None => {
                    by_root.insert(r, a);
                }
            }
        }
        let mut assets = Vec::new();
        let mut roots: Vec<u32> = by_root.keys().copied().collect();
        roots.sort();
        for r in roots {
            let mut a = by_root.remove(&r).unwrap();
            if a.name.trim().is_empty() {
                a.name = a.fqdn.clone().or(a.hostname.clone()).or(a.ips.first().cloned()).unwrap_or_else(|| self.stem.clone());
            }
            let mut ids = a.identifiers();
            if ids.is_empty() {
                ids.push((IdKind::Name, a.name.to_ascii_lowercase()));
            }
            assets.push(FinalAsset { root: r, a, ids });
        }
        Final {
            akey_root,
            assets,
            tool: self.tool,
            scan_time: self.scan_time,
            records: self.records,
            skipped: self.skipped,
        }
    }
}

/// Shares the SHA-256 of the bytes read with the thread that reads them.
#[derive(Clone)]
struct HashHandle(Arc<Mutex<(sha2::Sha256, u64)>>);

struct Hashing<R> {
    inner: R,
    h: HashHandle,
    progress: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut g = self.h.0.lock().unwrap();
        g.0.update(&buf[..n]);
        g.1 += n as u64;
        if let Some(p) = &self.progress {
            p.store(g.1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// The bytes of a file, read (and hashed) on a separate thread in 1 MiB blocks. Blocks the parser has
/// finished with go back to the reader: fresh megabytes for every block cost a page fault per page.
/// Each block's bytes start at a page boundary inside it, so that a file opened for direct reads
/// (`SourceFile`) is read straight into it.
struct ChanReader {
    rx: Receiver<std::io::Result<Block>>,
    back: SyncSender<Vec<u8>>,
    cur: Block,
    pos: usize,
    eof: bool,
}

/// Bytes `start..end` of `buf` hold the data.
#[derive(Default)]
struct Block {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

const BLOCK: usize = 1 << 20;
/// Alignment of the blocks' data: a page, which direct reads need of the buffer's address and length.
const ALIGN: usize = 4096;

impl ChanReader {
    fn spawn<R: Read + Send + 'static>(mut inner: R) -> ChanReader {
        let (tx, rx) = sync_channel::<std::io::Result<Block>>(4);
        let (back, spare) = sync_channel::<Vec<u8>>(6);
        std::thread::spawn(move || {
            loop {
                let mut buf = spare.try_recv().unwrap_or_default();
                buf.resize(BLOCK, 0);
                // The page-aligned part of the block (a page shorter than it, wherever the block lies).
                let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
                let data = &mut buf[start..start + BLOCK - ALIGN];
                let mut n = 0;
                // Fill the block (short reads are common on pipes).
                while n < data.len() {
                    match inner.read(&mut data[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                let last = n == 0;
                if tx.send(Ok(Block { buf, start, end: start + n })).is_err() || last {
                    return;
                }
            }
        });
        ChanReader { rx, back, cur: Block::default(), pos: 0, eof: false }
    }
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChanReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos >= self.cur.end && !self.eof {
            match self.rx.recv() {
                Ok(Ok(b)) => {
                    if b.start == b.end {
                        self.eof = true;
                    }
                    self.pos = b.start;
                    let done = std::mem::replace(&mut self.cur, b);
                    if done.buf.capacity() >= BLOCK {
                        // The reader may have stopped (end of file): then the block is simply dropped.
                        let _ = self.back.try_send(done.buf);
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(std::io::Error::other("the file reader stopped before the end of the file")),
            }
        }
        Ok(&self.cur.buf[self.pos.min(self.cur.end)..self.cur.end])
    }
    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.cur.end);
    }
}

/// A report file as read by an import. A large regular file is read directly from the disk
/// (`O_DIRECT` on Linux) into the reader's page-aligned blocks: a report is read once, start to end,
/// and going through the page cache cost the reading thread more CPU than the hashing (allocating
/// and filling a page-cache page for every 4 KiB of a file not already cached, then copying it), on
/// a machine where the parser and the engine already want both cores. Where direct reads are refused
/// (a file system without them, or a read the device cannot align), it reopens the file and goes on
/// through the page cache from the same offset.
struct SourceFile {
    file: std::fs::File,
    path: PathBuf,
    pos: u64,
    direct: bool,
}

/// Files smaller than this are read through the page cache: the saving is too small to be worth
/// bypassing a cache that likely holds them.
const DIRECT_MIN: u64 = 16 << 20;

impl SourceFile {
    fn open(path: &Path) -> std::io::Result<SourceFile> {
        let src = |file, direct| SourceFile { file, path: path.to_path_buf(), pos: 0, direct };
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let big = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() >= DIRECT_MIN);
            if big && std::env::var_os("CTEM_NO_DIRECT_IO").is_none() {
                if let Ok(f) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path) {
                    return Ok(src(f, true));
                }
            }
        }
        Ok(src(std::fs::File::open(path)?, false))
    }
}

impl Read for SourceFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.file.read(buf) {
            Ok(n) => {
                self.pos += n as u64;
                Ok(n)
            }
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                let mut f = std::fs::File::open(&self.path)?;
                f.seek(std::io::SeekFrom::Start(self.pos))?;
                self.file = f;
                self.direct = false;
                self.read(buf)
            }
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Imported,
    /// The same bytes were imported before (import id).
    Unchanged(i64),
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub file: String,
    pub format: Option<Format>,
    pub tool: String,
    pub outcome: Outcome,
    pub import_id: Option<i64>,
    pub records: u64,
    pub new: u64,
    pub seen_again: u64,
    pub fixed: u64,
    pub reopened: u64,
    pub skipped: u64,
    pub assets: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub skip_reasons: Vec<(String, String)>,
    /// Something that went wrong after the import was committed (rescoring).
    pub warning: Option<String>,
}

impl Summary {
    fn failed(file: &str, format: Option<Format>, msg: String) -> Summary {
        Summary {
            file: file.to_string(),
            format,
            tool: format.map(|f| f.default_tool().to_string()).unwrap_or_default(),
            outcome: Outcome::Failed(msg),
            import_id: None,
            records: 0,
            new: 0,
            seen_again: 0,
            fixed: 0,
            reopened: 0,
            skipped: 0,
            assets: 0,
            bytes: 0,
            seconds: 0.0,
            skip_reasons: Vec::new(),
            warning: None,
        }
    }

    /// One line for the terminal.
    pub fn line(&self) -> String {
        match &self.outcome {
            Outcome::Imported => {
                let mut s = format!(
                    "{}: {} [{}] {} records: {} new, {} seen again, {} fixed, {} reopened, {} skipped; {} assets ({:.2}s)",
                    self.file,
                    self.format.map(|f| f.name()).unwrap_or("?"),
                    self.tool,
                    self.records,
                    self.new,
                    self.seen_again,
                    self.fixed,
                    self.reopened,
                    self.skipped,
                    self.assets,
                    self.seconds
                );
                for (pos, why) in self.skip_reasons.iter().take(5) {
                    s.push_str(&format!("\n  skipped at {pos}: {why}"));
                }
                if self.skipped > 5 {
                    s.push_str(&format!("\n  ... {} skipped in all (see the quarantine table)", self.skipped));
                }
                if let Some(w) = &self.warning {
                    s.push_str(&format!("\n  warning: {w}"));
                }
                s
            }
            Outcome::Unchanged(id) => format!("{}: unchanged, the same content was imported before (import {id}); nothing changed", self.file),
            Outcome::Failed(m) => format!("{}: not imported: {m}", self.file),
        }
    }
}

/// Import one file in one transaction. Errors in the file leave the store as it was.
pub fn import_file(store: &Store, path: &Path, forced: Option<Format>, opts: &ParseOptions) -> Summary {
    let started = Instant::now();
    let started_at = Utc::now();
    let display = path.display().to_string();
    if store.read_only {
        return Summary::failed(&display, forced, "the database is open read-only".into());
    }
    let file = match SourceFile::open(path) {
        Ok(f) => f,
        Err(e) => return Summary::failed(&display, forced, format!("cannot open: {e}")),
    };
    let hh = HashHandle(Arc::new(Mutex::new((sha2::Sha256::new(), 0))));
    // Reading and hashing run on their own thread, ahead of the parser.
    let mut raw = ChanReader::spawn(Hashing { inner: file, h: hh.clone(), progress: opts.progress.clone() });
    let gz = match raw.fill_buf() {
        Ok(b) => b.len() >= 2 && b[0] == 0x1f && b[1] == 0x8b,
        Err(e) => return Summary::failed(&display, forced, format!("cannot read: {e}")),
    };
    let mut input: Box<dyn BufRead + Send> = if gz {
        Box::new(BufReader::with_capacity(1 << 18, ingest::LimitedReader::new(flate2::bufread::MultiGzDecoder::new(raw))))
    } else {
        Box::new(raw)
    };
    let format = match forced {
        Some(f) => f,
        None => {
            let head = match input.fill_buf() {
                Ok(h) => h,
                Err(e) => return Summary::failed(&display, None, format!("byte 0: cannot read ({e})")),
            };
            match ingest::detect(head) {
                Some(f) => f,
                None if opts.mapping.is_some() => Format::GenericCsv,
                None => {
                    return Summary::failed(
                        &display,
                        None,
                        "format not recognised from its content; use --format (or --mapping for a CSV)".into(),
                    )
                }
            }
        }
    };
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
        .split('.')
        .next()
        .unwrap_or("")
        .to_string();
    let (tx, rx) = sync_channel::<Batch>(BATCHES_IN_FLIGHT);
    let (back, spare) = sync_channel::<Vec<RawFinding>>(BATCHES_IN_FLIGHT + 1);
    let text_hasher = FxBuild::default();
    let collector = Collector {
        text_hasher,
        tx,
        spare,
        batch: Batch { findings: Vec::with_capacity(BATCH), ..Default::default() },
        filled: 0,
        lent: false,
        reuse: false,
        tool: format.default_tool().to_string(),
        ids: FxMap::default(),
        parent: Vec::new(),
        assets: Vec::new(),
        scan_time: None,
        records: 0,
        skipped: 0,
        stem,
        receiver_gone: false,
    };
    let popts = opts.clone();
    let parser = std::thread::spawn(move || -> Result<Final, ParseError> {
        let mut c = collector;
        let t0 = Instant::now();
        ingest::parse(format, &mut input, &mut c, &popts)?;
        if std::env::var_os("CTEM_PROFILE").is_some() {
            eprintln!("  (parser thread done after {:.3}s)", t0.elapsed().as_secs_f64());
        }
        // Read what the parser left (trailing whitespace) so the hash covers the whole file.
        let mut sink = [0u8; 65536];
        loop {
            match input.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(ParseError::new("end of input", e.to_string())),
            }
        }
        Ok(c.finish())
    });
    let result = stage_and_merge(store, rx, back, parser, text_hasher, &hh, &display, format, started_at);
    match result {
        Ok(mut s) => {
            s.seconds = started.elapsed().as_secs_f64();
            s
        }
        Err(msg) => {
            let _ = store.conn.execute_batch("ROLLBACK");
            Summary::failed(&display, Some(format), msg)
        }
    }
}

fn ts(t: DateTime<Utc>) -> chrono::NaiveDateTime {
    t.naive_utc()
}

#[allow(clippy::too_many_arguments)]
fn stage_and_merge(
    store: &Store,
    rx: Receiver<Batch>,
    back: SyncSender<Vec<RawFinding>>,
    parser: std::thread::JoinHandle<Result<Final, ParseError>>,
    text_hasher: FxBuild,
    hh: &HashHandle,
    display: &str,
    format: Format,
    started_at: DateTime<Utc>,
) -> Result<Summary, String> {
    let c = &store.conn;
    let mut ph = Phases::new();
    let sql = |e: duckdb::Error| format!("store error: {e}");
    // Insertion order carries no meaning in the store; letting DuckDB drop it parallelises the merge.
    c.execute_batch("SET preserve_insertion_order = false").map_err(sql)?;
    // Bounded memory: the engine spills to disk beyond this (CTEM_MEMORY_LIMIT overrides, e.g. "2GB").
    let limit = std::env::var("CTEM_MEMORY_LIMIT").unwrap_or_else(|_| DEFAULT_IMPORT_MEMORY.to_string());
    c.execute("SET memory_limit = ?", params![limit]).map_err(sql)?;
    // The engine weighs zstd for every string segment it writes and, on findings and detections, never
    // picks it over its dictionary compression (the store is the same size); the weighing alone cost
    // about a tenth of writing a million findings.
    c.execute_batch("SET disabled_compression_methods = 'zstd'").map_err(sql)?;
    // The checkpoint at commit would also "vacuum": merge the table's row groups when new rows leave
    // a small one, rewriting a million rows to place 50,000 (1.2-1.5 s of a rescan's commit, against
    // 0.2 s without). Imports delete nothing, so there is nothing for it to reclaim.
    c.execute_batch("SET max_vacuum_tasks = 0").map_err(sql)?;
    c.execute_batch("BEGIN TRANSACTION").map_err(sql)?;
    c.execute_batch(STAGE_DDL).map_err(sql)?;
    let mut skip_reasons = Vec::new();
    let recv_result: Result<(), duckdb::Error> = (|| {
        let mut af = c.appender("stage_findings")?;
        let mut at = c.appender("stage_texts")?;
        let mut att = c.appender("stage_titles")?;
        let mut aq = c.appender("stage_skips")?;
        let mut ad = c.appender("stage_defs")?;
        let mut ap = c.appender("stage_places")?;
        let mut st = Stager::default();
        st.texts.hasher = text_hasher;
        st.titles.hasher = text_hasher;
        for b in rx.iter() {
            for (pos, why, snip) in &b.skips {
                if skip_reasons.len() < 20 {
                    skip_reasons.push((pos.clone(), why.clone()));
                }
                aq.append_row(params![pos, why, snip])?;
            }
            for (f, th) in b.findings.iter().zip(&b.hashes) {
                st.stage(f, *th, &b.tool);
            }
            // The buffer goes back to be refilled (the parser may have finished: then it is dropped),
            // with its findings when the parser reuses them. Otherwise they are freed here: freeing them
            // on the parser's thread, the busier one, made the 2.6M-finding Nessus import a second slower.
            let mut findings = b.findings;
            if !b.reuse {
                findings.clear();
            }
            let _ = back.try_send(findings);
            append_texts(&mut at, &mut st.texts.out)?;
            append_texts(&mut att, &mut st.titles.out)?;
            if !st.defs.out.is_empty() {
                ad.append_record_batch(def_batch(&st.defs.out)?)?;
                st.defs.out.clear();
            }
            if !st.places.out.is_empty() {
                ap.append_record_batch(place_batch(&st.places.out)?)?;
                st.places.out.clear();
            }
            if !st.rows.is_empty() {
                af.append_record_batch(st.rows.take()?)?;
            }
        }
        af.flush()?;
        ad.flush()?;
        ap.flush()?;
        at.flush()?;
        att.flush()?;
        aq.flush()?;
        Ok(())
    })();
    // Whatever happened, let the parser finish (it stops sending when we stop receiving).
    let parsed = parser.join().map_err(|_| "the parser stopped unexpectedly".to_string())?;
    ph.mark_in(c, "parse + append to staging");
    if ph.on {
        let n = |t: &str| c.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get::<_, i64>(0)).unwrap_or(-1);
        eprintln!(
            "  staged {} findings, {} definitions, {} places, {} texts, {} titles",
            n("stage_findings"),
            n("stage_defs"),
            n("stage_places"),
            n("stage_texts"),
            n("stage_titles")
        );
    }
    recv_result.map_err(sql)?;
    let fin = match parsed {
        Ok(f) => f,
        Err(e) => return Err(format!("{e}")),
    };
    let (sha, bytes) = {
        let g = hh.0.lock().unwrap();
        (hex::encode(g.0.clone().finalize()), g.1)
    };
    let prev: Option<i64> = c
        .query_row("SELECT min(import_id) FROM imports WHERE sha256 = ?", params![sha], |r| r.get(0))
        .map_err(sql)?;
    if let Some(p) = prev {
        c.execute_batch("ROLLBACK").map_err(sql)?;
        let mut s = Summary::failed(display, Some(format), String::new());
        s.outcome = Outcome::Unchanged(p);
        s.tool = fin.tool;
        return Ok(s);
    }
    // Stage the report's assets.
    {
        let mut aa = c.appender("stage_akeys").map_err(sql)?;
        for (k, r) in fin.akey_root.iter().enumerate() {
            aa.append_row(params![k as u32, r]).map_err(sql)?;
        }
        aa.flush().map_err(sql)?;
        let mut asa = c.appender("stage_assets").map_err(sql)?;
        let mut ai = c.appender("stage_ids").map_err(sql)?;
        for fa in &fin.assets {
            let a = &fa.a;
            asa.append_row(params![
                fa.root,
                a.kind.map(|k| k.as_str()).unwrap_or("host"),
                a.name,
                a.hostname.as_ref().map(|h| h.to_ascii_lowercase()),
                a.fqdn.as_ref().map(|h| h.trim_end_matches('.').to_ascii_lowercase()),
                a.ips.join(","),
                a.os,
                a.cloud_provider,
                a.account,
                a.region,
                a.tags.join(","),
                fa.ids.iter().map(|(k, v)| format!("{}={}", k.as_str(), v)).collect::<Vec<_>>().join(", ")
            ])
            .map_err(sql)?;
            for (k, v) in &fa.ids {
                ai.append_row(params![fa.root, k.as_str(), v]).map_err(sql)?;
            }
        }
        asa.flush().map_err(sql)?;
        ai.flush().map_err(sql)?;
    }
    ph.mark_in(c, "stage assets");
    let scan = ts(fin.scan_time.unwrap_or(started_at));
    let import_id: i64 = c.query_row("SELECT nextval('seq_import')", [], |r| r.get(0)).map_err(sql)?;
    let counts = merge(c, &store.weights, import_id, &fin.tool, scan, &mut ph).map_err(sql)?;
    let finished = Utc::now();
    c.execute(
        "INSERT INTO quarantine SELECT ?, ?, position, reason, snippet FROM stage_skips",
        params![import_id, display],
    )
    .map_err(sql)?;
    c.execute(
        "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            import_id,
            display,
            sha,
            bytes as i64,
            format.name(),
            fin.tool,
            scan,
            ts(started_at),
            ts(finished),
            fin.records as i64,
            counts.new as i64,
            counts.seen_again as i64,
            counts.fixed as i64,
            counts.reopened as i64,
            fin.skipped as i64,
            fin.assets.len() as i64
        ],
    )
    .map_err(sql)?;
    c.execute_batch(STAGE_DROP).map_err(sql)?;
    ph.mark_in(c, "import row");
    c.execute_batch("COMMIT").map_err(sql)?;
    ph.mark_in(c, "commit");
    // Scores are derived data: recomputed after the commit, in bounded slices of their own.
    let warning = crate::risk::rescore_store_changed(store).err().map(|e| {
        let file = display;
        tracing::warn!("{file}: imported, but rescoring failed: {e}");
        format!("imported, but rescoring failed ({e}); run `ctem score`")
    });
    ph.mark_in(c, "rescore");
    Ok(Summary {
        file: display.to_string(),
        format: Some(format),
        tool: fin.tool,
        outcome: Outcome::Imported,
        import_id: Some(import_id),
        records: fin.records,
        new: counts.new,
        seen_again: counts.seen_again,
        fixed: counts.fixed,
        reopened: counts.reopened,
        skipped: fin.skipped,
        assets: fin.assets.len() as u64,
        bytes,
        seconds: 0.0,
        skip_reasons,
        warning,
    })
}

/// Newly numbered texts appended to their staging table (`tid`, `txt`), and let go.
fn append_texts(to: &mut duckdb::Appender<'_>, out: &mut Vec<(u32, String)>) -> Result<(), duckdb::Error> {
    if !out.is_empty() {
        to.append_record_batch(batch(vec![("tid", ints(out, |(id, _)| Some(*id as i32))), ("txt", strs(out, |(_, t)| Some(t)))])?)?;
        out.clear();
    }
    Ok(())
}

fn strs<'a, T>(rows: &'a [T], f: impl Fn(&'a T) -> Option<&'a str>) -> ArrayRef {
    let bytes: usize = rows.iter().map(|r| f(r).map_or(0, str::len)).sum();
    let mut b = StringBuilder::with_capacity(rows.len(), bytes);
    for r in rows {
        b.append_option(f(r));
    }
    Arc::new(b.finish())
}

/// Lists as comma-joined texts (`split_list` takes them apart).
fn joined<'a, T>(rows: &'a [T], f: impl Fn(&'a T) -> &'a [String]) -> ArrayRef {
    Arc::new(rows.iter().map(|r| Some(f(r).join(","))).collect::<StringArray>())
}

fn ints<T>(rows: &[T], f: impl Fn(&T) -> Option<i32>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int32Array>())
}

fn batch(cols: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, duckdb::Error> {
    RecordBatch::try_from_iter(cols).map_err(|e| duckdb::Error::ToSqlConversionFailure(Box::new(e)))
}

/// New definitions as columns, in the order and types of `stage_defs`.
fn def_batch(defs: &[(u32, Def)]) -> Result<RecordBatch, duckdb::Error> {
    batch(vec![
        ("def", ints(defs, |(id, _)| Some(*id as i32))),
        ("vuln_id", strs(defs, |(_, d)| Some(&d.vuln_id))),
        ("vuln_key", strs(defs, |(_, d)| Some(&d.vuln_key))),
        ("cves", joined(defs, |(_, d)| &d.cves)),
        ("aliases", joined(defs, |(_, d)| &d.aliases)),
        ("cwes", joined(defs, |(_, d)| &d.cwes)),
        ("desc_t", ints(defs, |(_, d)| d.desc_t.map(|t| t as i32))),
        ("category", strs(defs, |(_, d)| Some(d.category.as_str()))),
        ("exploit", Arc::new(defs.iter().map(|(_, d)| d.exploit).collect::<BooleanArray>())),
    ])
}

/// New places as columns, in the order and types of `stage_places`.
fn place_batch(places: &[(u32, Place)]) -> Result<RecordBatch, duckdb::Error> {
    batch(vec![
        ("place", ints(places, |(id, _)| Some(*id as i32))),
        ("loc_key", strs(places, |(_, p)| Some(&p.loc_key))),
        ("package", strs(places, |(_, p)| p.package.as_deref())),
        ("installed_version", strs(places, |(_, p)| p.installed_version.as_deref())),
        ("fixed_version", strs(places, |(_, p)| p.fixed_version.as_deref())),
        ("protocol", strs(places, |(_, p)| p.protocol.as_deref())),
        ("location", strs(places, |(_, p)| p.location.as_deref())),
    ])
}

const STAGE_DDL: &str = r#"
CREATE OR REPLACE TEMP TABLE stage_findings (
    seq INTEGER, akey INTEGER, def INTEGER, title_t INTEGER, title VARCHAR, sol_t INTEGER, sev_rank TINYINT,
    raw_severity VARCHAR, cvss_score DOUBLE, vec_t INTEGER, place INTEGER, port INTEGER, affected BOOLEAN, raw_id VARCHAR);
CREATE OR REPLACE TEMP TABLE stage_places (
    place INTEGER, loc_key VARCHAR, package VARCHAR, installed_version VARCHAR, fixed_version VARCHAR, protocol VARCHAR,
    location VARCHAR);
CREATE OR REPLACE TEMP TABLE stage_defs (
    def INTEGER, vuln_id VARCHAR, vuln_key VARCHAR, cves VARCHAR, aliases VARCHAR, cwes VARCHAR,
    desc_t INTEGER, category VARCHAR, exploit BOOLEAN);
CREATE OR REPLACE TEMP TABLE stage_texts (tid INTEGER, txt VARCHAR);
CREATE OR REPLACE TEMP TABLE stage_titles (tid INTEGER, txt VARCHAR);
CREATE OR REPLACE TEMP TABLE stage_skips (position VARCHAR, reason VARCHAR, snippet VARCHAR);
CREATE OR REPLACE TEMP TABLE stage_akeys (akey INTEGER, root INTEGER);
CREATE OR REPLACE TEMP TABLE stage_assets (root INTEGER, kind VARCHAR, name VARCHAR, hostname VARCHAR, fqdn VARCHAR,
    ips VARCHAR, os VARCHAR, cloud_provider VARCHAR, account VARCHAR, region VARCHAR, tags VARCHAR, idents VARCHAR);
CREATE OR REPLACE TEMP TABLE stage_ids (root INTEGER, id_kind VARCHAR, id_value VARCHAR);
"#;

const STAGE_DROP: &str = r#"
DROP TABLE IF EXISTS stage_findings; DROP TABLE IF EXISTS stage_defs; DROP TABLE IF EXISTS stage_places; DROP TABLE IF EXISTS stage_dx; DROP TABLE IF EXISTS stage_texts; DROP TABLE IF EXISTS stage_titles; DROP TABLE IF EXISTS stage_skips;
DROP TABLE IF EXISTS stage_akeys; DROP TABLE IF EXISTS stage_assets; DROP TABLE IF EXISTS stage_ids;
DROP TABLE IF EXISTS stage_amap; DROP TABLE IF EXISTS stage_vk; DROP TABLE IF EXISTS stage_lk; DROP TABLE IF EXISTS stage_sf; DROP TABLE IF EXISTS stage_fd;
DROP TABLE IF EXISTS stage_new; DROP TABLE IF EXISTS stage_seqfid; DROP TABLE IF EXISTS stage_seen; DROP TABLE IF EXISTS stage_rs; DROP TABLE IF EXISTS stage_rv; DROP TABLE IF EXISTS stage_rtt; DROP TABLE IF EXISTS stage_ins; DROP TABLE IF EXISTS stage_di;
"#;

struct Counts {
    new: u64,
    seen_again: u64,
    fixed: u64,
    reopened: u64,
}

/// A finding's identity as stored in `findings.fingerprint`: its asset, vulnerability key and location
/// key (SQL over the given columns; the lookup of known findings and the insert of new ones must agree).
/// The md5 of the key as a UUID: 16 bytes the engine compares and writes as a number (32 hex digits as
/// text cost twice as much to write and to join on).
fn fingerprint(asset_id: &str, vuln_key: &str, loc_key: &str) -> String {
    format!("md5_number({asset_id}::VARCHAR || '|' || {vuln_key} || '|' || {loc_key})::UUID")
}

const SEV_RANK: &str = "CASE f.severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END";

/// A severity's name from its rank (the staged rows carry the rank only), as `Severity` maps them.
fn sev_name(rank: &str) -> String {
    let arms: String = Severity::ALL.iter().map(|s| format!(" WHEN {} THEN '{}'", s.rank(), s.as_str())).collect();
    format!("CASE {rank}{arms} END")
}

fn split_list(col: &str) -> String {
    format!("CASE WHEN {col} IS NULL OR {col} = '' THEN []::VARCHAR[] ELSE string_split({col}, ',') END")
}

fn merge(
    c: &duckdb::Connection,
    weights: &crate::risk::Weights,
    import_id: i64,
    tool: &str,
    scan: chrono::NaiveDateTime,
    ph: &mut Phases,
) -> Result<Counts, duckdb::Error> {
    // 1. Assets: match the report's assets to known ones by any shared identifier; create the rest.
    c.execute_batch(
        r#"
CREATE OR REPLACE TEMP TABLE stage_amap AS
WITH m AS (
    SELECT s.root, min(i.asset_id) AS asset_id
    FROM stage_ids s JOIN asset_identifiers i ON i.id_kind = s.id_kind AND i.id_value = s.id_value
    GROUP BY s.root)
SELECT a.root, m.asset_id, m.asset_id IS NULL AS is_new FROM stage_assets a LEFT JOIN m USING (root);
"#,
    )?;
    c.execute_batch(&super::number_new_assets("stage_amap", "root"))?;
    c.execute(
        &format!(
            r#"INSERT INTO assets (asset_id, name, kind, hostname, fqdn, ips, os, cloud_provider, account, region, tags, sources, first_seen, last_seen)
SELECT m.asset_id, s.name, s.kind, s.hostname, s.fqdn, {}, s.os, s.cloud_provider, s.account, s.region, {}, [CAST(? AS VARCHAR)], ?, ?
FROM stage_amap m JOIN stage_assets s USING (root) WHERE m.is_new"#,
            split_list("s.ips"),
            split_list("s.tags")
        ),
        params![tool, scan, scan],
    )?;
    c.execute(
        &format!(
            r#"UPDATE assets a SET
    hostname = coalesce(a.hostname, s.hostname),
    fqdn = coalesce(a.fqdn, s.fqdn),
    ips = list_sort(list_distinct(list_concat(a.ips, {ips}))),
    os = coalesce(s.os, a.os),
    cloud_provider = coalesce(a.cloud_provider, s.cloud_provider),
    account = coalesce(a.account, s.account),
    region = coalesce(a.region, s.region),
    tags = list_sort(list_distinct(list_concat(a.tags, {tags}))),
    sources = CASE WHEN list_contains(a.sources, ?) THEN a.sources ELSE list_append(a.sources, ?) END,
    first_seen = least(coalesce(a.first_seen, ?), ?),
    last_seen = greatest(coalesce(a.last_seen, ?), ?)
FROM (SELECT DISTINCT ON (m.asset_id) m.asset_id, s.* FROM stage_amap m JOIN stage_assets s USING (root) WHERE NOT m.is_new ORDER BY m.asset_id, s.root) s
WHERE a.asset_id = s.asset_id"#,
            ips = split_list("s.ips"),
            tags = split_list("s.tags")
        ),
        params![tool, tool, scan, scan, scan, scan],
    )?;
    c.execute(
        r#"INSERT INTO asset_identifiers
SELECT DISTINCT m.asset_id, s.id_kind, s.id_value, ?, ?
FROM stage_ids s JOIN stage_amap m USING (root)
WHERE NOT EXISTS (SELECT 1 FROM asset_identifiers i WHERE i.id_kind = s.id_kind AND i.id_value = s.id_value)"#,
        params![tool, scan],
    )?;
    c.execute(
        "INSERT INTO import_assets SELECT ?, m.asset_id, s.name, string_split(s.idents, ', ') FROM stage_amap m JOIN stage_assets s USING (root)",
        params![import_id],
    )?;
    ph.mark_in(c, "merge assets");
    // 2. Findings keyed by (asset, vulnerability, location). Narrow tables and hash aggregation only:
    //    the wide staged rows are touched once, when new findings are inserted. The vulnerability and
    //    location keys are numbered in their sort order (equal keys, equal numbers), so rows are grouped
    //    and ordered on integers; the keys themselves are joined back once per finding.
    c.execute_batch(
        r#"
CREATE OR REPLACE TEMP TABLE stage_vk AS SELECT def, vuln_key, dense_rank() OVER (ORDER BY vuln_key)::INTEGER AS vk FROM stage_defs;
CREATE OR REPLACE TEMP TABLE stage_lk AS SELECT place, loc_key, dense_rank() OVER (ORDER BY loc_key)::INTEGER AS lk FROM stage_places;
CREATE OR REPLACE TEMP TABLE stage_sf AS
SELECT f.seq, m.asset_id, v.vk, l.lk, f.sev_rank
FROM stage_findings f JOIN stage_vk v ON v.def = f.def JOIN stage_lk l ON l.place = f.place
JOIN stage_akeys k ON k.akey = f.akey JOIN stage_amap m ON m.root = k.root;
"#,
    )?;
    ph.mark_in(c, "keys of every row (stage_sf)");
    // One row per key in this report (the worst severity, then the first seen in the file), matched
    // with the known findings by fingerprint. What a rescan may change in a known finding is read here,
    // in the one join with the findings, so each update below joins only the findings it changes. It is
    // worked out on the findings' side of the join, so the join carries flags and numbers rather than
    // lists: the CVE list as its hash (a finding whose list hashes differently from the report's is
    // checked precisely when updated). The keys and fingerprints are not kept: only the numbers the
    // later steps need, so the table stays narrow (the engine spills what exceeds its cap).
    c.execute(
        &format!(
            "CREATE OR REPLACE TEMP TABLE stage_fd AS
             SELECT p.* EXCLUDE (fp), f.finding_id AS existing_id, f.was_fixed, f.was_open,
                    f.has_tool, f.old_sev_rank, f.old_cves_hash
             FROM (SELECT p.*, {fp} AS fp
                   FROM (SELECT asset_id, vk, lk, arg_max(seq, sev_rank::BIGINT * 4294967296 - seq) AS seq, count(*)::INTEGER AS n
                         FROM stage_sf GROUP BY asset_id, vk, lk) p
                   JOIN (SELECT DISTINCT vk, vuln_key FROM stage_vk) v USING (vk)
                   JOIN (SELECT DISTINCT lk, loc_key FROM stage_lk) l USING (lk)) p
             LEFT JOIN (SELECT f.fingerprint, f.finding_id, f.status = 'fixed' AND f.fixed_at < ? AS was_fixed,
                               f.status IN ('open', 'reopened', 'mitigated') AS was_open, list_contains(f.sources, ?) AS has_tool,
                               {SEV_RANK} AS old_sev_rank, hash(f.cves) AS old_cves_hash
                        FROM findings f) f ON f.fingerprint = p.fp",
            fp = fingerprint("p.asset_id", "v.vuln_key", "l.loc_key")
        ),
        params![scan, tool],
    )?;
    ph.mark_in(c, "one row per key, matched with known findings (stage_fd)");
    c.execute_batch(
        r#"
-- Ids for new findings after the highest id in use (one writer per database), in the order of their
-- vulnerability, so that the findings of one vulnerability are stored together.
CREATE OR REPLACE TEMP TABLE stage_new AS
SELECT seq, (SELECT coalesce(max(finding_id), 0) FROM findings) + row_number() OVER (ORDER BY vk, seq) AS fid
FROM stage_fd WHERE existing_id IS NULL;
"#,
    )?;
    ph.mark_in(c, "ids for new findings (stage_new)");
    let (new, reopened, seen_again): (i64, i64, i64) = c.query_row(
        r#"SELECT count(*) FILTER (WHERE existing_id IS NULL),
                  count(*) FILTER (WHERE existing_id IS NOT NULL AND was_fixed),
                  count(*) FILTER (WHERE existing_id IS NOT NULL AND NOT was_fixed)
           FROM stage_fd"#,
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    // Definitions with their lists and description, built once each rather than once per finding.
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE stage_dx AS
         SELECT v.def, v.vuln_id, {cves} AS cves, {aliases} AS aliases, {cwes} AS cwes, v.vuln_key, dt.txt AS description,
                v.category, v.exploit
         FROM stage_defs v LEFT JOIN stage_texts dt ON dt.tid = v.desc_t",
        cves = split_list("v.cves"),
        aliases = split_list("v.aliases"),
        cwes = split_list("v.cwes")
    ))?;
    // New findings in id order: the engine then keeps the findings of one vulnerability in the same
    // blocks, and its dictionaries hold a handful of descriptions per block instead of thousands (the
    // store is less than half the size, and written that much faster).
    c.execute_batch(
        "CREATE OR REPLACE TEMP TABLE stage_ins AS
         SELECT n.fid, d.asset_id, s.def, s.title_t, s.title, s.sol_t, s.sev_rank, s.cvss_score, s.vec_t, s.place, s.port, s.affected
         FROM stage_new n JOIN stage_fd d USING (seq) JOIN stage_findings s USING (seq) ORDER BY n.fid",
    )?;
    ph.mark_in(c, "new findings in id order");
    // The fix that removes each new open finding is assigned as it is inserted (the rescore assigns it
    // to the findings that have none).
    let inner = crate::risk::FixInputs {
        category: "x.category".into(),
        vuln_id: "x.vuln_id".into(),
        asset_name: "ac.name".into(),
        os: "ac.os".into(),
        asset_kind: "ac.kind".into(),
        severity: sev_name("i.sev_rank"),
        ..crate::risk::FixInputs::columns("i.", "asset_kind")
    };
    let outer = crate::risk::FixInputs { patch: "f.patch".into(), ..crate::risk::FixInputs::columns("f.", "asset_kind") };
    let (fix, fix_target) = crate::risk::fix_sql("f.fix_kind", &outer);
    // New findings are scored as they are inserted, with the rescore's expressions over the same inputs
    // (the asset context as it stands before the insert; KEV and EPSS once per definition), so the
    // rescore after the import only has what the import changed in known findings, or in an asset's
    // context, left to do.
    c.execute_batch(&crate::risk::at_insert::before_sql(weights))?;
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE stage_di AS {}",
        crate::risk::at_insert::def_intel_sql("stage_dx")
    ))?;
    let insert_sql = format!(
        r#"INSERT INTO findings (finding_id, fingerprint, asset_id, asset_name, sources, vuln_id, vuln_key, loc_key,
       cves, aliases, cwes, title, description, severity, cvss_score, cvss_vector, category,
       package, installed_version, fixed_version, solution, port, protocol, location,
       status, first_seen, last_seen, fixed_at, times_reopened, exploit_available, first_import_id, last_import_id,
       fix_kind, kev_cve, kev_added, kev_due, kev_ransomware, epss, epss_percentile, fix, fix_target,
       kev, internet_exposed, runtime, risk_score, priority, risk_factors)
SELECT f.* EXCLUDE (os, asset_kind, patch, mitigated_by, {parts}), {fix}, {fix_target}, {scores}
FROM ({rows}) f"#,
        parts = crate::risk::at_insert::part_columns(weights),
        rows = crate::risk::at_insert::relation(weights, &format!(r#"(
SELECT i.fid AS finding_id, {fp} AS fingerprint, i.asset_id, ac.name AS asset_name, [CAST(? AS VARCHAR)] AS sources,
       x.vuln_id, x.vuln_key, i.loc_key,
       x.cves, x.aliases, x.cwes, coalesce(tt.txt, i.title) AS title, x.description, {sev} AS severity, i.cvss_score, vt.txt AS cvss_vector, x.category,
       i.package, i.installed_version, i.fixed_version, st.txt AS solution, i.port, i.protocol, i.location,
       CASE WHEN i.affected THEN 'open' ELSE 'false_positive' END AS status,
       ?::TIMESTAMP AS first_seen, ?::TIMESTAMP AS last_seen, NULL::TIMESTAMP AS fixed_at, 0 AS times_reopened, x.exploit AS exploit_available,
       ?::BIGINT AS first_import_id, ?::BIGINT AS last_import_id, ac.os, ac.kind AS asset_kind, st.patch,
       CASE WHEN i.affected THEN {kind} END AS fix_kind,
       CASE WHEN i.affected THEN di.kcve END AS kev_cve, CASE WHEN i.affected THEN di.added END AS kev_added,
       CASE WHEN i.affected THEN di.due END AS kev_due, CASE WHEN i.affected THEN di.rw END AS kev_ransomware,
       CASE WHEN i.affected THEN di.epss END AS epss, CASE WHEN i.affected THEN di.pct END AS epss_percentile,
       NULL::VARCHAR[] AS mitigated_by
FROM (SELECT s.* EXCLUDE (place), p.* EXCLUDE (place)
      FROM (SELECT * FROM stage_ins WHERE fid > ? AND fid <= ? AND def >= ? AND def < ?) s JOIN stage_places p USING (place)) i
JOIN (SELECT * FROM stage_dx WHERE def >= ? AND def < ?) x ON x.def = i.def
JOIN assets ac ON ac.asset_id = i.asset_id
LEFT JOIN stage_di di ON di.def = i.def
LEFT JOIN stage_rs st ON st.tid = i.sol_t
LEFT JOIN stage_rv vt ON vt.tid = i.vec_t
LEFT JOIN stage_rtt tt ON tt.tid = i.title_t
) f
LEFT JOIN risk_actx a ON a.asset_id = f.asset_id"#,
            fp = fingerprint("i.asset_id", "x.vuln_key", "i.loc_key"),
            sev = sev_name("i.sev_rank"),
            kind = crate::risk::fix_kind_sql(&inner)
        )),
        fix = fix,
        fix_target = fix_target,
        scores = crate::risk::at_insert::columns(weights)
    );
    // The texts the new rows refer to themselves, once each and a table per use (each join of the
    // insert holds its table in memory: one of every text, joined three times, held them three times),
    // with a solution's patch text worked out once per distinct solution rather than once per finding.
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE stage_rs AS
         SELECT tid, txt, {patch} AS patch FROM stage_texts WHERE tid IN (SELECT sol_t FROM stage_ins);
         CREATE OR REPLACE TEMP TABLE stage_rv AS SELECT tid, txt FROM stage_texts WHERE tid IN (SELECT vec_t FROM stage_ins);
         CREATE OR REPLACE TEMP TABLE stage_rtt AS SELECT tid, txt FROM stage_titles WHERE tid IN (SELECT title_t FROM stage_ins);",
        patch = crate::risk::patch_sql("txt")
    ))?;
    // In slices of the ids, so no statement holds the whole report at once (bounded memory). The
    // definitions are held in memory by each statement (a hash table takes about twice the bytes it
    // holds, beside the places, texts and the rows being written): when a report has so many (one per
    // finding, say) that they would take more than an eighth of the engine's cap, the slices are also cut
    // by definition.
    let (ndefs, def_bytes): (i64, f64) = c.query_row(
        "SELECT count(*), coalesce(sum(length(vuln_id) + length(vuln_key) + coalesce(length(description), 0) + 16 * (len(cves) + len(aliases) + len(cwes)) + 64), 0)
         FROM stage_dx",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let budget = (crate::risk::memory_limit_bytes(c) / 8.0).max(1.0);
    let parts = ((def_bytes / budget).ceil() as i64).clamp(1, ndefs.max(1));
    let (min_fid, max_fid): (Option<i64>, Option<i64>) =
        c.query_row("SELECT min(fid), max(fid) FROM stage_new", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if let (Some(min_fid), Some(max_fid)) = (min_fid, max_fid) {
        for part in 0..parts {
            let (da, db) = (part * ndefs / parts, if part + 1 == parts { i64::from(i32::MAX) } else { (part + 1) * ndefs / parts });
            let mut lo = min_fid - 1;
            while lo < max_fid {
                let hi = lo + INSERT_SLICE;
                c.execute(&insert_sql, params![tool, scan, scan, import_id, import_id, lo, hi, da, db, da, db])?;
                lo = hi;
            }
        }
    }
    c.execute_batch(&crate::risk::at_insert::after_sql("stage_amap", min_fid.unwrap_or(i64::MAX)))?;
    // No later step reads these. Inside the import's transaction, though, the engine keeps a dropped
    // table's rows until the commit (a rollback would need them): dropping frees no memory here, and
    // every staged table stays in memory or spilled until the import ends.
    c.execute_batch("DROP TABLE stage_ins; DROP TABLE stage_rs; DROP TABLE stage_rv; DROP TABLE stage_rtt; DROP TABLE stage_di;")?;
    ph.mark_in(c, "insert new findings");
    // Findings seen again. Each column is written only where it changes: on a rescan most rows just
    // move `last_seen`, and rewriting list columns for a million rows is what makes updates slow. A change
    // that can move a finding's score (reopened, a CVE or a higher severity) clears it, for the rescore.
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE stage_seen AS
         SELECT p.existing_id AS fid, {sev} AS severity,
                p.was_fixed AS reopen,
                NOT s.affected AND p.was_open AS unaffected,
                NOT p.has_tool AS add_tool,
                CASE WHEN len(x.cves) > 0 AND hash(x.cves) IS DISTINCT FROM p.old_cves_hash THEN x.cves END AS add_cves,
                s.sev_rank > p.old_sev_rank AS raise
         FROM stage_fd p JOIN stage_findings s ON s.seq = p.seq JOIN stage_dx x ON x.def = s.def
         WHERE p.existing_id IS NOT NULL",
        sev = sev_name("s.sev_rank")
    ))?;
    c.execute(
        r#"UPDATE findings f SET
    status = CASE WHEN d.reopen THEN 'reopened' ELSE 'false_positive' END,
    times_reopened = f.times_reopened + CASE WHEN d.reopen THEN 1 ELSE 0 END,
    fixed_at = CASE WHEN d.reopen THEN NULL ELSE f.fixed_at END,
    reopened_at = CASE WHEN d.reopen THEN $1 ELSE f.reopened_at END,
    risk_score = NULL
FROM (SELECT fid, reopen FROM stage_seen WHERE reopen OR unaffected) d
WHERE f.finding_id = d.fid"#,
        params![scan],
    )?;
    c.execute(
        "UPDATE findings f SET sources = list_append(f.sources, $1) FROM (SELECT fid FROM stage_seen WHERE add_tool) d WHERE f.finding_id = d.fid",
        params![tool],
    )?;
    c.execute_batch(
        "UPDATE findings f SET cves = list_sort(list_distinct(list_concat(f.cves, d.add_cves))), risk_score = NULL
         FROM (SELECT fid, add_cves FROM stage_seen WHERE add_cves IS NOT NULL) d
         WHERE f.finding_id = d.fid AND NOT coalesce(list_has_all(f.cves, d.add_cves), false)",
    )?;
    c.execute_batch(
        "UPDATE findings f SET severity = d.severity, risk_score = NULL FROM (SELECT fid, severity FROM stage_seen WHERE raise) d WHERE f.finding_id = d.fid",
    )?;
    c.execute(
        "UPDATE findings f SET last_seen = greatest(f.last_seen, $1), last_import_id = $2 FROM stage_seen d WHERE f.finding_id = d.fid",
        params![scan, import_id],
    )?;
    ph.mark_in(c, "update seen-again findings");
    // 3. What this tool reported before on the assets it just scanned, and did not see now, is fixed.
    let fixed = c.execute(
        r#"UPDATE findings SET status = 'fixed', fixed_at = ?
WHERE status IN ('open', 'reopened', 'mitigated') AND last_seen < ? AND list_contains(sources, ?)
  AND asset_id IN (SELECT asset_id FROM stage_amap)"#,
        params![scan, scan, tool],
    )?;
    ph.mark_in(c, "mark fixed");
    // 4. Every sighting, for the record and for explanations. The finding of every row of the report:
    //    a key reported once (nearly all of them) is its own pick; only repeated keys need the join on
    //    the key. Then the sightings, in slices of the report (bounded memory).
    c.execute_batch(
        "CREATE OR REPLACE TEMP TABLE stage_seqfid AS
         SELECT d.seq, coalesce(d.existing_id, n.fid) AS finding_id FROM stage_fd d LEFT JOIN stage_new n USING (seq)
         UNION ALL
         SELECT r.seq, p.finding_id
         FROM stage_sf r
         JOIN (SELECT d.asset_id, d.vk, d.lk, d.seq AS pick, coalesce(d.existing_id, n.fid) AS finding_id
               FROM stage_fd d LEFT JOIN stage_new n USING (seq) WHERE d.n > 1) p
         USING (asset_id, vk, lk)
         WHERE r.seq <> p.pick",
    )?;
    c.execute_batch("DROP TABLE stage_sf; DROP TABLE stage_fd; DROP TABLE stage_new; DROP TABLE stage_seen;")?;
    ph.mark_in(c, "finding of every row");
    let det = format!(
        r#"INSERT INTO detections
SELECT $1, k.finding_id, $2, s.raw_id, x.vuln_id, x.cves, s.raw_severity, {sev} AS severity, sa.name, s.port, p.protocol, p.location, $3
FROM (SELECT * FROM stage_seqfid WHERE seq > $4 AND seq <= $5) k
JOIN (SELECT * FROM stage_findings WHERE seq > $4 AND seq <= $5) s ON s.seq = k.seq
JOIN stage_places p ON p.place = s.place
JOIN stage_dx x ON x.def = s.def
JOIN stage_akeys ak ON ak.akey = s.akey JOIN stage_assets sa ON sa.root = ak.root"#,
        sev = sev_name("s.sev_rank")
    );
    let max_seq: i64 = c.query_row("SELECT coalesce(max(seq), 0) FROM stage_findings", [], |r| r.get(0))?;
    let mut lo = 0i64;
    while lo < max_seq {
        let hi = lo + INSERT_SLICE;
        c.execute(&det, params![import_id, tool, scan, lo, hi])?;
        lo = hi;
    }
    ph.mark_in(c, "insert detections");
    Ok(Counts { new: new as u64, seen_again: seen_again as u64, fixed: fixed as u64, reopened: reopened as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    /// A file of `len` bytes that differ from block to block, so a block read twice or skipped shows.
    fn patterned(dir: &Path, len: usize) -> (PathBuf, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i as u64).wrapping_mul(2654435761).rotate_right(13) as u8).collect();
        let path = dir.join(format!("report-{len}.bin"));
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    #[test]
    fn a_file_reads_back_whole_and_hashed_however_it_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        // Below the direct-read size, just above it and not a multiple of a page, and several blocks long.
        for len in [0, 1, 5_000, DIRECT_MIN as usize + 12_345, 3 * BLOCK + 1] {
            let (path, want) = patterned(dir.path(), len);
            let hh = HashHandle(Arc::new(Mutex::new((sha2::Sha256::new(), 0))));
            let mut r = ChanReader::spawn(Hashing { inner: SourceFile::open(&path).unwrap(), h: hh.clone(), progress: None });
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            assert_eq!(got.len(), want.len(), "{len} bytes");
            assert!(got == want, "the bytes of a {len}-byte file differ");
            let g = hh.0.lock().unwrap();
            assert_eq!(g.1, len as u64);
            assert_eq!(hex::encode(g.0.clone().finalize()), hex::encode(sha2::Sha256::digest(&want)));
        }
    }

    #[test]
    fn a_read_direct_io_refuses_goes_on_through_the_page_cache_from_the_same_place() {
        let dir = tempfile::tempdir().unwrap();
        let (path, want) = patterned(dir.path(), DIRECT_MIN as usize + 777);
        let mut src = SourceFile::open(&path).unwrap();
        let mut got = Vec::new();
        // Page-aligned reads first (direct where the file system allows it), then reads at odd addresses
        // and lengths, which a direct read refuses.
        let mut buf = vec![0u8; 3 * ALIGN];
        let at = buf.as_ptr().align_offset(ALIGN);
        for _ in 0..3 {
            let n = src.read(&mut buf[at..at + ALIGN]).unwrap();
            got.extend_from_slice(&buf[at..at + n]);
        }
        loop {
            let n = src.read(&mut buf[at + 1..at + 1 + 1000]).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[at + 1..at + 1 + n]);
        }
        assert!(!src.direct, "direct reads stop after one is refused");
        assert_eq!(got.len(), want.len());
        assert!(got == want);
    }
}
