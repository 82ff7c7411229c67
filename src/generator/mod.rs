//! Deterministic generators: the sample estate in `sample-data/` and large estates for benchmarks.
//! Same seed, same bytes: the committed sample data can be regenerated and compared.

pub mod bench;
pub mod catalog;
pub mod demo;
pub mod estate;
pub mod sample;

/// SplitMix64: small, fast and reproducible across platforms.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
    /// True with probability p.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// XML text escaping for generated reports.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            _ => o.push(c),
        }
    }
    o
}

/// Open a file for writing, gzip-compressed (deterministically: no name, mtime 0) when the name ends in `.gz`.
pub fn create(path: &std::path::Path) -> std::io::Result<Box<dyn std::io::Write>> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::GzBuilder::new().mtime(0).write(f, flate2::Compression::new(6))))
    } else {
        Ok(Box::new(f))
    }
}
