//! A small streaming layer over quick-xml shared by the XML parsers.
//!
//! Hostile input: DOCTYPE declarations are skipped, entities other than the five predefined ones and
//! character references are never expanded (they stay as literal text), nesting depth is capped.

use super::ParseError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::io::BufRead;

pub const MAX_DEPTH: usize = 256;

/// What the driver hands to a parser.
pub enum XmlEv<'a, 'b> {
    /// An element opened (also sent for empty elements, followed at once by `Close`).
    Open(&'a str, &'a BytesStart<'b>),
    /// An element closed; `text` is the character data directly inside it (children's text excluded).
    Close(&'a str, &'a str),
}

/// Local part of a possibly prefixed name ("v:vulnerability" -> "vulnerability").
pub fn local(name: &str) -> &str {
    match name.rfind(':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// Read an attribute by name, entities resolved leniently.
pub fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    for a in e.attributes().with_checks(false).flatten() {
        if local(a.key.as_ref()) == name {
            return Some(unescape_lenient(&a.value));
        }
    }
    None
}

/// Several attributes in one pass over the element (`attr` per name rescans them all).
pub fn attrs<const N: usize>(e: &BytesStart<'_>, names: [&str; N]) -> [Option<String>; N] {
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    for a in e.attributes().with_checks(false).flatten() {
        let k = a.key.as_ref();
        let k = if k.contains(':') { local(k) } else { k };
        if let Some(i) = names.iter().position(|n| *n == k) {
            if out[i].is_none() {
                out[i] = Some(unescape_lenient(&a.value));
            }
        }
    }
    out
}

fn resolve_ref(name: &str, out: &mut String) {
    match name {
        "lt" => out.push('<'),
        "gt" => out.push('>'),
        "amp" => out.push('&'),
        "apos" => out.push('\''),
        "quot" => out.push('"'),
        _ => {
            let code = if let Some(h) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                u32::from_str_radix(h, 16).ok()
            } else if let Some(d) = name.strip_prefix('#') {
                d.parse::<u32>().ok()
            } else {
                None
            };
            match code.and_then(char::from_u32) {
                Some(c) => out.push(c),
                None => {
                    // Unknown entity: never expanded, kept as written.
                    out.push('&');
                    out.push_str(name);
                    out.push(';');
                }
            }
        }
    }
}

/// Resolve predefined and numeric references; anything else stays literal.
pub fn unescape_lenient(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find(';') {
            Some(j) if j <= 32 => {
                resolve_ref(&after[..j], &mut out);
                rest = &after[j + 1..];
            }
            _ => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Drive `on` over every element of the document. Errors carry the byte position.
pub fn drive<R: BufRead>(
    input: R,
    mut on: impl FnMut(XmlEv<'_, '_>, u64) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let mut r = Reader::from_reader(input);
    r.config_mut().check_end_names = true;
    let mut buf = Vec::with_capacity(8192);
    let mut names = String::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut text = String::new();
    let mut tstack: Vec<usize> = Vec::new();
    let mut seen_root = false;
    loop {
        buf.clear();
        let ev = match r.read_event_into(&mut buf) {
            Ok(ev) => ev,
            Err(e) => {
                let m = e.to_string();
                // quick-xml reports a file that stops inside a tag or comment as a syntax error at the end.
                if m.contains("end of input") || m.contains("unexpected end") || m.contains("UnexpectedEof") {
                    return Err(ParseError::at_byte(
                        r.buffer_position(),
                        format!("truncated XML: the file ends inside a tag or comment ({m})"),
                    ));
                }
                return Err(ParseError::at_byte(r.error_position(), format!("malformed XML: {m}")));
            }
        };
        let pos = r.buffer_position();
        match ev {
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(ParseError::at_byte(pos, "XML nested deeper than 256 levels"));
                }
                seen_root = true;
                let start = names.len();
                names.push_str(e.name().into_inner());
                stack.push(start);
                tstack.push(text.len());
                on(XmlEv::Open(&names[start..], &e), pos)?;
            }
            Event::Empty(e) => {
                seen_root = true;
                let n = e.name().into_inner().to_string();
                on(XmlEv::Open(&n, &e), pos)?;
                on(XmlEv::Close(&n, ""), pos)?;
            }
            Event::End(_) => {
                let start = match stack.pop() {
                    Some(s) => s,
                    None => return Err(ParseError::at_byte(pos, "malformed XML: unexpected closing tag")),
                };
                let tstart = tstack.pop().unwrap_or(0);
                on(XmlEv::Close(&names[start..], &text[tstart..]), pos)?;
                names.truncate(start);
                text.truncate(tstart);
            }
            Event::Text(t) => {
                if !stack.is_empty() {
                    text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if !stack.is_empty() {
                    text.push_str(&t);
                }
            }
            Event::GeneralRef(g) => {
                if !stack.is_empty() {
                    resolve_ref(&g, &mut text);
                }
            }
            Event::Eof => {
                if !stack.is_empty() {
                    let open = &names[*stack.last().unwrap()..];
                    return Err(ParseError::at_byte(
                        pos,
                        format!("truncated XML: <{open}> and {} enclosing element(s) never closed", stack.len() - 1),
                    ));
                }
                if !seen_root {
                    return Err(ParseError::at_byte(pos, "empty XML document"));
                }
                return Ok(());
            }
            // DOCTYPE (and any entity declarations in it), comments, PIs: ignored, never acted on.
            Event::DocType(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
}

/// Trimmed text or None.
pub fn opt(text: &str) -> Option<String> {
    let t = text.trim();
    if t.is_empty() { None } else { Some(t.to_string()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_never_expanded() {
        let doc = br#"<?xml version="1.0"?>
<!DOCTYPE r [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> <!ENTITY big "boom"> ]>
<r a="x&amp;y"><t>&xxe;&big;&lt;&#65;</t></r>"#;
        let mut got = Vec::new();
        drive(&doc[..], |ev, _| {
            if let XmlEv::Close(n, t) = ev {
                got.push((n.to_string(), t.to_string()));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(got[0], ("t".to_string(), "&xxe;&big;<A".to_string()));
    }

    #[test]
    fn truncated_is_error_with_position() {
        let doc = b"<r><a>1</a><b>";
        let e = drive(&doc[..], |_, _| Ok(())).unwrap_err();
        assert!(e.position.starts_with("byte "), "{e}");
        assert!(e.message.contains("truncated"), "{e}");
    }
}

/// The text of an HTML fragment as scanners embed it in reports: tags dropped, a space where one stood.
pub fn strip_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                if !out.ends_with(' ') && !out.ends_with('\n') {
                    out.push(' ');
                }
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}
