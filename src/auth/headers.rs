//! Whole header fields added on top or taken out, every other byte kept: what the
//! authentication layer does to a mail. Where the fields are is read by the core's one
//! header reader ([`mailveil_core::headers`]), which also skips an mbox `From ` line.

use mailveil_core::headers::named;
pub(crate) use mailveil_core::headers::{fields, header_start};
use std::ops::Range;

/// The line ending the message uses (that of its first line); CRLF when it has none.
pub(crate) fn eol(msg: &[u8]) -> &'static [u8] {
    match msg.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && msg[i - 1] == b'\r' => b"\r\n",
        Some(_) => b"\n",
        None => b"\r\n",
    }
}

/// `msg` with the given field ranges taken out.
pub(crate) fn without(msg: &[u8], drop: &[Range<usize>]) -> Vec<u8> {
    let mut drop = drop.to_vec();
    drop.sort_by_key(|r| r.start);
    let mut out = Vec::with_capacity(msg.len());
    let mut at = 0;
    for r in drop {
        if r.start < at {
            continue;
        }
        out.extend_from_slice(&msg[at..r.start]);
        at = r.end;
    }
    out.extend_from_slice(&msg[at..]);
    out
}

/// `msg` without any field of this name.
pub(crate) fn without_named(msg: &[u8], name: &str) -> Vec<u8> {
    let fields = fields(msg);
    let drop: Vec<Range<usize>> = named(&fields, name).map(|f| f.range.clone()).collect();
    without(msg, &drop)
}

/// `msg` with `head` (whole header fields, line breaks included) on top of its header
/// block, after an mbox `From ` line.
pub(crate) fn prepend(msg: &[u8], head: &[u8]) -> Vec<u8> {
    let at = header_start(msg);
    let mut out = Vec::with_capacity(msg.len() + head.len());
    out.extend_from_slice(&msg[..at]);
    out.extend_from_slice(head);
    out.extend_from_slice(&msg[at..]);
    out
}

/// Header text written with CRLF, in the message's own line ending.
pub(crate) fn with_eol(text: &str, eol: &[u8]) -> Vec<u8> {
    if eol == b"\r\n" {
        text.as_bytes().to_vec()
    } else {
        text.replace("\r\n", "\n").into_bytes()
    }
}

/// A header field `name: value`, folded at spaces so that lines stay within 78
/// characters where the pieces allow, never inside a quoted string; CRLF line ends.
/// Folding only turns a single space into CRLF TAB: a relaxed-canonicalised signature
/// over the unfolded value (the ARC seal's) covers the folded field just the same.
pub(crate) fn folded(name: &str, value: &str) -> String {
    let mut out = format!("{name}:");
    let mut line = out.len();
    for piece in unquoted_pieces(value) {
        if line + 1 + piece.len() > 78 && line > name.len() + 1 {
            out.push_str("\r\n\t");
            line = 1;
        } else {
            out.push(' ');
            line += 1;
        }
        out.push_str(piece);
        line += piece.len();
    }
    out.push_str("\r\n");
    out
}

/// `value` split at the single spaces that are outside quoted strings.
fn unquoted_pieces(value: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                pieces.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&value[start..]);
    pieces.retain(|p| !p.is_empty());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_ending_is_that_of_the_first_line() {
        assert_eq!(eol(b"From x Mon Jan 1\nA: 1\n 2\nB:3\n\nbody"), b"\n");
        assert_eq!(eol(b"A: 1\r\n\r\n"), b"\r\n");
    }

    #[test]
    fn prepend_goes_after_the_mbox_line_and_without_keeps_the_rest() {
        let raw = b"From x\nA: 1\nB: 2\n\nbody";
        assert_eq!(prepend(raw, b"Z: 0\n"), b"From x\nZ: 0\nA: 1\nB: 2\n\nbody");
        assert_eq!(without_named(raw, "a"), b"From x\nB: 2\n\nbody");
    }

    #[test]
    fn folding_keeps_quoted_strings_whole_and_lines_short() {
        let value = format!(
            "mx.example.org; dkim=fail reason=\"signature did not verify\" header.d={} header.s=s1",
            "d".repeat(60)
        );
        let out = folded("Authentication-Results", &value);
        assert!(out.contains("reason=\"signature did not verify\""), "{out}");
        assert!(out.lines().all(|l| l.len() <= 78), "{out}");
        let unfolded = out.replace("\r\n\t", " ");
        assert_eq!(unfolded, format!("Authentication-Results: {value}\r\n"));
    }
}
