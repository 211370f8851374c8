//! The top header block, read from the bytes: where each field starts and ends, and
//! fields added on top or taken out with every other byte kept. The core has the same
//! reader but keeps it private (it stays pure and small); this one serves the
//! authentication layer, which edits only whole header fields.

use std::ops::Range;

/// One header field: its name and the byte range of the whole field, line break included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub name: String,
    pub range: Range<usize>,
    /// Where the value starts (after the colon).
    pub value_start: usize,
}

impl Field {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    pub fn value<'m>(&self, msg: &'m [u8]) -> &'m [u8] {
        &msg[self.value_start..self.range.end]
    }
}

/// Where the header block starts: after an mbox `From ` line (procmail hands these
/// over), which is no header and never signed.
pub(crate) fn header_start(msg: &[u8]) -> usize {
    if msg.starts_with(b"From ") {
        msg.iter()
            .position(|&b| b == b'\n')
            .map_or(msg.len(), |i| i + 1)
    } else {
        0
    }
}

/// The line ending the message uses (that of its first line); CRLF when it has none.
pub(crate) fn eol(msg: &[u8]) -> &'static [u8] {
    match msg.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && msg[i - 1] == b'\r' => b"\r\n",
        Some(_) => b"\n",
        None => b"\r\n",
    }
}

/// The fields of the header block.
pub(crate) fn fields(msg: &[u8]) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    let mut at = header_start(msg);
    while at < msg.len() {
        let end = msg[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(msg.len(), |i| at + i + 1);
        let line = &msg[at..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some(last) = out.last_mut() {
                last.range.end = end;
            }
        } else if let Some(colon) = content.iter().position(|&b| b == b':') {
            out.push(Field {
                name: String::from_utf8_lossy(&content[..colon])
                    .trim()
                    .to_string(),
                range: at..end,
                value_start: at + colon + 1,
            });
        } else {
            break; // not a header line: the body starts without a blank line
        }
        at = end;
    }
    out
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
    let drop: Vec<Range<usize>> = fields(msg)
        .into_iter()
        .filter(|f| f.is(name))
        .map(|f| f.range)
        .collect();
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
    fn fields_with_continuations_and_an_mbox_line() {
        let raw = b"From x Mon Jan 1\nA: 1\n 2\nB:3\n\nbody";
        let f = fields(raw);
        assert_eq!(f.len(), 2);
        assert_eq!(&raw[f[0].range.clone()], b"A: 1\n 2\n");
        assert_eq!(f[0].value(raw), b" 1\n 2\n");
        assert_eq!(f[1].name, "B");
        assert_eq!(eol(raw), b"\n");
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
