//! A small streaming layer over quick-xml shared by the XML parsers.
//!
//! Hostile input: DOCTYPE declarations are skipped, entities other than the five predefined ones and
//! character references are never expanded (they stay as literal text), nesting depth is capped.

use super::ParseError;
use quick_xml::errors::SyntaxError;
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

/// How much of the input is parsed at a time: blocks end just before a `<`, so no text, reference or
/// tag is cut unless it holds a `<` of its own (a comment, CDATA section, DTD or quoted attribute
/// value), and then the block grows until it is whole.
const BLOCK: usize = 1 << 20;
/// One piece of markup or run of text longer than this is refused rather than buffered.
const MAX_PIECE: usize = 64 << 20;
const TOO_LONG: &str = "malformed XML: one text, comment, tag or CDATA section runs over 64 MiB";

/// Drive `on` over every element of the document. Errors carry the byte position.
///
/// The input is parsed in blocks borrowed from one buffer (events are not copied out of the stream
/// one by one); element names are matched here, across blocks.
pub fn drive<R: BufRead>(input: R, on: impl FnMut(XmlEv<'_, '_>, u64) -> Result<(), ParseError>) -> Result<(), ParseError> {
    drive_in_blocks(input, BLOCK, on)
}

fn drive_in_blocks<R: BufRead>(
    mut input: R,
    block: usize,
    mut on: impl FnMut(XmlEv<'_, '_>, u64) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let mut data: Vec<u8> = Vec::with_capacity(block + (block >> 2));
    // Byte position in the document of data[0].
    let mut base: u64 = 0;
    let mut at_eof = false;
    let mut names = String::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut text = String::new();
    let mut tstack: Vec<usize> = Vec::new();
    let mut seen_root = false;
    loop {
        // Fill to at least a block (the whole rest of the input at its end).
        grow(&mut input, &mut data, block, &mut at_eof).map_err(|e| ParseError::at_byte(base + data.len() as u64, e))?;
        let cut = if at_eof {
            data.len()
        } else {
            match memchr::memrchr(b'<', &data) {
                Some(i) if i > 0 => i,
                _ => {
                    // No place to cut yet.
                    read_on(&mut input, &mut data, &mut at_eof, base)?;
                    continue;
                }
            }
        };
        let mut r = Reader::from_reader(&data[..cut]);
        r.config_mut().check_end_names = false;
        r.config_mut().allow_unmatched_ends = true;
        // Where the unparsed rest of the block starts (all of it is parsed unless markup is cut).
        let mut done = cut;
        loop {
            let ev_start = r.buffer_position();
            let ev = match r.read_event() {
                Ok(ev) => ev,
                Err(e) => {
                    // quick-xml's syntax errors all mean the input ended inside markup, but one: a `<!`
                    // that opens no comment, CDATA section or DTD. That one is a cut too when fewer
                    // bytes than `<![CDATA[` (nine) were left to tell.
                    let cut_markup = match &e {
                        quick_xml::Error::Syntax(SyntaxError::InvalidBangMarkup) => cut - ev_start as usize <= 9,
                        quick_xml::Error::Syntax(_) => true,
                        _ => false,
                    };
                    if cut_markup && !at_eof {
                        // The block ends inside this piece of markup: parse it again with more input.
                        if cut - ev_start as usize > MAX_PIECE {
                            return Err(ParseError::at_byte(base + ev_start, TOO_LONG));
                        }
                        done = ev_start as usize;
                        break;
                    }
                    let m = e.to_string();
                    if cut_markup {
                        return Err(ParseError::at_byte(
                            base + cut as u64,
                            format!("truncated XML: the file ends inside a tag or comment ({m})"),
                        ));
                    }
                    return Err(ParseError::at_byte(base + r.error_position(), format!("malformed XML: {m}")));
                }
            };
            let pos = base + r.buffer_position();
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
                    let n = e.name().into_inner();
                    on(XmlEv::Open(n, &e), pos)?;
                    on(XmlEv::Close(n, ""), pos)?;
                }
                Event::End(e) => {
                    let found = e.name().into_inner();
                    let start = match stack.pop() {
                        Some(s) => s,
                        None => {
                            return Err(ParseError::at_byte(
                                base + ev_start,
                                format!("malformed XML: ill-formed document: close tag `</{found}>` does not match any open tag"),
                            ))
                        }
                    };
                    if found != &names[start..] {
                        return Err(ParseError::at_byte(
                            base + ev_start,
                            format!("malformed XML: ill-formed document: expected `</{}>`, but `</{found}>` was found", &names[start..]),
                        ));
                    }
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
                Event::Eof => break,
                // DOCTYPE (and any entity declarations in it), comments, PIs: ignored, never acted on.
                Event::DocType(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            }
        }
        if at_eof && done == data.len() {
            let pos = base + data.len() as u64;
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
        data.drain(..done);
        base += done as u64;
        if done == 0 {
            // Nothing could be parsed: the piece of markup at the start needs more than the buffer holds.
            read_on(&mut input, &mut data, &mut at_eof, base)?;
        }
    }
}

/// Buffer more of a piece that starts at `data[0]` (at byte `base`): twice as much, up to one byte over
/// the limit, and an error once it is over.
fn read_on<R: BufRead>(input: &mut R, data: &mut Vec<u8>, at_eof: &mut bool, base: u64) -> Result<(), ParseError> {
    if data.len() > MAX_PIECE {
        return Err(ParseError::at_byte(base, TOO_LONG));
    }
    let want = (data.len() * 2).clamp(1, MAX_PIECE + 1);
    grow(input, data, want, at_eof).map_err(|e| ParseError::at_byte(base, e))
}

/// Read until `data` holds `want` bytes or the input ends.
fn grow<R: BufRead>(input: &mut R, data: &mut Vec<u8>, want: usize, at_eof: &mut bool) -> Result<(), String> {
    while !*at_eof && data.len() < want {
        let got = match input.fill_buf() {
            Ok(b) => {
                data.extend_from_slice(b);
                b.len()
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read: {e}")),
        };
        input.consume(got);
        *at_eof = got == 0;
    }
    Ok(())
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

    /// Every event as text, with its position.
    fn events(doc: &[u8], block: usize) -> Result<Vec<String>, String> {
        let mut got = Vec::new();
        drive_in_blocks(std::io::BufReader::with_capacity(block, doc), block, |ev, pos| {
            got.push(match ev {
                XmlEv::Open(n, e) => format!("{pos} open {n} {:?}", attr(e, "a")),
                XmlEv::Close(n, t) => format!("{pos} close {n} {t:?}"),
            });
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok(got)
    }

    #[test]
    fn blocks_cut_anywhere_give_the_same_events() {
        // Markup holding `<` (comments, CDATA, the DTD, a quoted value) and texts with references,
        // cut at every size of block from 1 byte up.
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE r [ <!ENTITY e "x"> ]>
<r><!-- a <b> comment --><i a="1&amp;2 &lt; 3">caf&#233; &lt;é&gt; <![CDATA[<p>x</p> ]]> tail</i>
<i a='q>"'/><?pi <x> ?><i a="&e;"><j>é</j>and<k/>more</i ></r>
"#
        .as_bytes();
        let whole = events(doc, 1 << 20).unwrap();
        assert_eq!(whole.len(), 12, "{whole:#?}");
        assert!(whole.contains(&"170 close i \"café <é> <p>x</p>  tail\"".to_string()), "{whole:#?}");
        for block in 1..doc.len() + 2 {
            assert_eq!(events(doc, block).unwrap(), whole, "block of {block} bytes");
        }
    }

    #[test]
    fn errors_are_the_same_whatever_the_block() {
        for (doc, want) in [
            (&b"<r><a>1</b></r>"[..], "byte 7: malformed XML: ill-formed document: expected `</a>`, but `</b>` was found"),
            (b"<r></r></s>", "byte 7: malformed XML: ill-formed document: close tag `</s>` does not match any open tag"),
            (b"<r><a x='1'>t</a><!-- open", "byte 26: truncated XML: the file ends inside a tag or comment"),
            (b"<r><a><b>text", "byte 13: truncated XML: <b> and 2 enclosing element(s) never closed"),
        ] {
            for block in [1, 2, 3, 5, 8, 1 << 20] {
                let e = events(doc, block).unwrap_err();
                assert!(e.starts_with(want), "block {block}: {e}");
            }
        }
    }

    #[test]
    fn a_piece_over_64_mib_is_refused_where_it_starts() {
        let big = "x".repeat(MAX_PIECE + (1 << 20));
        for (doc, at) in [(format!("<r><a/><!--{big}--></r>"), 7), (format!("<r><a/>{big}</r>"), 7), (format!("<r><a/><b c='{big}'/></r>"), 7)] {
            let e = drive(std::io::BufReader::with_capacity(1 << 16, doc.as_bytes()), |_, _| Ok(())).unwrap_err().to_string();
            assert!(e.starts_with("byte ") && e.contains("runs over 64 MiB"), "{}", &e[..e.len().min(200)]);
            let pos: u64 = e["byte ".len()..].split(':').next().unwrap().parse().unwrap();
            assert!(pos <= at, "{e}");
        }
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
