//! The top header block, read directly from the bytes: which fields are there and where
//! each one (with its folded continuation lines) starts and ends. Works on input that no
//! MIME parser accepts, so the error path can still find our own header. The core's one
//! header reader: what it judges a mail by and what frontends record of it
//! ([`MessageFacts`]) are read by it.

mod facts;

pub use facts::MessageFacts;
use std::ops::Range;

/// One header field: its name and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name as written, without surrounding whitespace.
    pub name: String,
    /// The byte range of the whole field, continuation lines and line break included.
    pub range: Range<usize>,
    /// Where the value starts: just after the colon.
    pub value_start: usize,
}

impl Field {
    /// Whether the field has this name (names are case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    /// The value as written: after the colon, continuation lines and line break included.
    pub fn value<'m>(&self, msg: &'m [u8]) -> &'m [u8] {
        &msg[self.value_start..self.range.end]
    }
}

/// The fields of the header block at the start of `raw` (after an mbox `From ` line).
pub fn fields(raw: &[u8]) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let end = raw[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| at + i + 1);
        let line = &raw[at..end];
        let content = trim_eol(line);
        if content.is_empty() {
            break; // end of the header block
        }
        if at == 0 && content.starts_with(b"From ") {
            // An mbox "From " line before the headers (procmail hands these over).
        } else if matches!(line[0], b' ' | b'\t') {
            if let Some(last) = out.last_mut() {
                last.range.end = end;
            }
        } else if let Some(colon) = content.iter().position(|&b| b == b':') {
            let name = String::from_utf8_lossy(&content[..colon])
                .trim()
                .to_string();
            out.push(Field {
                name,
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

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Where our header goes: on top, after an mbox `From ` line if there is one.
pub fn header_start(msg: &[u8]) -> usize {
    if msg.starts_with(b"From ") {
        msg.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1)
    } else {
        0
    }
}

/// The fields with this name (case-insensitive), in order.
pub fn named<'f>(fields: &'f [Field], name: &'f str) -> impl Iterator<Item = &'f Field> + 'f {
    fields.iter().filter(move |f| f.is(name))
}

/// A header field line, folded at `; ` so that no line exceeds 78 characters.
pub(crate) fn render(name: &str, value: &str, eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + value.len() + 8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    let mut line_len = name.len() + 2;
    for (i, piece) in value.split("; ").enumerate() {
        let piece = if i + 1 < value.split("; ").count() {
            format!("{piece};")
        } else {
            piece.to_string()
        };
        if i > 0 {
            if line_len + 1 + piece.len() > 78 {
                out.extend_from_slice(eol);
                out.push(b'\t');
                line_len = 1;
            } else {
                out.push(b' ');
                line_len += 1;
            }
        }
        out.extend_from_slice(piece.as_bytes());
        line_len += piece.len();
    }
    out.extend_from_slice(eol);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_include_their_continuation_lines() {
        let raw = b"From: a@b.c\r\nSubject: one\r\n two\r\nX-Mailveil: v=1\r\n\r\nbody";
        let f = fields(raw);
        assert_eq!(f.len(), 3);
        assert_eq!(&raw[f[1].range.clone()], b"Subject: one\r\n two\r\n");
        assert_eq!(named(&f, "x-mailveil").count(), 1);
    }

    #[test]
    fn mbox_from_lines_and_bare_lf_are_fine() {
        let raw = b"From someone Mon Jan 1 00:00:00 2024\nTo: x@y.z\n\nbody";
        let f = fields(raw);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].name, "To");
    }

    #[test]
    fn long_values_are_folded() {
        let v = format!(
            "v=0.1.0; pixel=2; {}",
            (0..10)
                .map(|i| format!("k{i}=value{i}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let out = String::from_utf8(render("X-Mailveil", &v, b"\r\n")).unwrap();
        assert!(out.lines().all(|l| l.len() <= 78), "{out}");
        assert!(out.ends_with("\r\n"));
        let unfolded = out.replace("\r\n\t", " ");
        assert_eq!(unfolded.trim_end(), format!("X-Mailveil: {v}"));
    }
}
