//! Streaming helpers for large JSON reports: visit the elements of a big array one at a time
//! instead of building the whole document in memory.

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

/// A seed that deserializes a JSON array (or `null`) element by element, handing each to `f`.
pub struct Each<T, F> {
    f: F,
    _t: PhantomData<T>,
}

impl<T, F> Each<T, F> {
    pub fn new(f: F) -> Self {
        Each { f, _t: PhantomData }
    }
}

impl<'de, T: Deserialize<'de>, F: FnMut(T)> DeserializeSeed<'de> for Each<T, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Deserialize<'de>, F: FnMut(T)> Visitor<'de> for Each<T, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(x) = seq.next_element::<T>()? {
            (self.f)(x);
        }
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Deserialize a value that may be a string or a number into a string.
pub fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum SN {
        S(String),
        N(serde_json::Number),
        B(bool),
    }
    Ok(match Option::<SN>::deserialize(d)? {
        Some(SN::S(s)) => Some(s),
        Some(SN::N(n)) => Some(n.to_string()),
        Some(SN::B(b)) => Some(b.to_string()),
        None => None,
    })
}

/// Deserialize a number that may be written as a string ("7.5").
pub fn number_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(string_or_number(d)?.and_then(|s| s.trim().parse().ok()))
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
