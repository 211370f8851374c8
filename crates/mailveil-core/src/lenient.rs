//! Reading a mail as the most lenient common reader reads it. Mail clients, Python's
//! `email` and Node's parsers take a bare CR (one not followed by LF) for a line end;
//! mail-parser does not, so a mail written with bare CRs can hold headers, boundaries and
//! HTML that mailveil would not see and a client would show. Such a mail is read with
//! every bare CR made a line end, unless both readings find the same parts with the same
//! headers and content, and still do once cleaned: then its bytes stay as they came.

use crate::mime::structure::{TooComplex, usual};
use mail_parser::{Message, PartType};

/// How deep nested messages are compared; deeper ones count as read differently.
const MAX_COMPARE_DEPTH: usize = 8;

/// The mail as the lenient readers read it, when that differs from how mailveil reads
/// it as is: every bare CR replaced by the mail's line end. `None` when the mail is read
/// the same either way (or has no bare CR). Both readings are mail-parser's own, which
/// cannot be stopped once started: `Err` when either would cost more than a mail's
/// reading may (`usual`).
pub(crate) fn bare_cr_reading(raw: &[u8], eol: &[u8]) -> Result<Option<Vec<u8>>, TooComplex> {
    if !has_bare_cr(raw) {
        return Ok(None);
    }
    let normalised = normalise(raw, eol);
    let same = match (usual(raw)?, usual(&normalised)?) {
        (Some(a), Some(b)) => same_reading(&a, &b, 0),
        (None, None) => true,
        _ => false,
    };
    Ok((!same).then_some(normalised))
}

/// The reading a mail that cannot be cleaned keeps for the header of its wrapper: the
/// lenient one where it differs, and every bare CR a line end where the two readings
/// are too complex to compare (clients read them so). `None`: the mail as it is.
pub(crate) fn wrapper_reading(raw: &[u8], eol: &[u8]) -> Option<Vec<u8>> {
    bare_cr_reading(raw, eol).unwrap_or_else(|_| Some(normalise(raw, eol)))
}

pub(crate) fn has_bare_cr(raw: &[u8]) -> bool {
    // 32 bytes at a time, each with the byte after it, in fixed-size arrays: a fold the
    // compiler turns into vector compares. memchr stops at every CR of a CRLF mail,
    // about 90 instructions a line (a 20 KB mail of short lines: 33,000), and this runs
    // on every mail (issue 17).
    const W: usize = 32;
    let mut at = 0;
    while let Some(block) = raw.get(at..at + W + 1) {
        let block: &[u8; W + 1] = block.try_into().expect("W + 1 bytes");
        let (bytes, next) = (&block[..W], &block[1..]);
        let bare = bytes
            .iter()
            .zip(next)
            .fold(false, |any, (&b, &n)| any | ((b == b'\r') & (n != b'\n')));
        if bare {
            return true;
        }
        at += W;
    }
    let tail = &raw[at..];
    memchr::memchr_iter(b'\r', tail).any(|i| tail.get(i + 1) != Some(&b'\n'))
}

/// Every bare CR replaced by `eol`.
pub(crate) fn normalise(raw: &[u8], eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    for (i, &b) in raw.iter().enumerate() {
        if b == b'\r' && raw.get(i + 1) != Some(&b'\n') {
            out.extend_from_slice(eol);
        } else {
            out.push(b);
        }
    }
    out
}

/// Bytes with every line end (CRLF, LF, CR) written as LF, for comparing two readings.
fn unified(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' {
            out.push(b'\n');
            i += if bytes.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Whether two parses find the same parts, with the same header fields and the same
/// decoded content, line ends aside.
fn same_reading(a: &Message, b: &Message, depth: usize) -> bool {
    if depth > MAX_COMPARE_DEPTH || a.parts.len() != b.parts.len() {
        return false;
    }
    let (raw_a, raw_b): (&[u8], &[u8]) = (a.raw_message.as_ref(), b.raw_message.as_ref());
    a.parts.iter().zip(&b.parts).all(|(pa, pb)| {
        let field = |raw: &[u8], h: &mail_parser::Header| {
            let start = (h.offset_start as usize).min(raw.len());
            let end = (h.offset_end as usize).clamp(start, raw.len());
            (
                h.name.as_str().to_ascii_lowercase(),
                unified(&raw[start..end]),
            )
        };
        let headers_a: Vec<_> = pa.headers.iter().map(|h| field(raw_a, h)).collect();
        let headers_b: Vec<_> = pb.headers.iter().map(|h| field(raw_b, h)).collect();
        headers_a == headers_b
            && match (&pa.body, &pb.body) {
                (PartType::Text(x), PartType::Text(y)) | (PartType::Html(x), PartType::Html(y)) => {
                    unified(x.as_bytes()) == unified(y.as_bytes())
                }
                (PartType::Binary(x), PartType::Binary(y))
                | (PartType::InlineBinary(x), PartType::InlineBinary(y)) => {
                    unified(x) == unified(y)
                }
                (PartType::Message(x), PartType::Message(y)) => same_reading(x, y, depth + 1),
                (PartType::Multipart(x), PartType::Multipart(y)) => x == y,
                _ => false,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_cr_inside_html_text_is_read_as_is() {
        let raw = b"From: a@b.example\r\nContent-Type: text/html\r\n\r\n<p>a\rb</p>\r\n";
        assert_eq!(bare_cr_reading(raw, b"\r\n").unwrap(), None);
    }

    #[test]
    fn bare_cr_line_ends_are_read_as_line_ends() {
        let raw = b"From: a@b.example\rContent-Type: text/html\r\r<img src=\"https://t.example/o.gif\">\r";
        let read = bare_cr_reading(raw, b"\r\n")
            .unwrap()
            .expect("read differently");
        assert_eq!(
            read,
            b"From: a@b.example\r\nContent-Type: text/html\r\n\r\n<img src=\"https://t.example/o.gif\">\r\n"
        );
    }

    #[test]
    fn a_bare_cr_in_one_header_field_makes_a_new_field() {
        let raw =
            b"From: x@evil.example\rReply-To: a@bank.example\r\nTo: r@example.org\r\n\r\nhi\r\n";
        assert!(bare_cr_reading(raw, b"\r\n").unwrap().is_some());
    }

    proptest::proptest! {
        /// The block scan finds a bare CR exactly where a byte-by-byte look does: at
        /// every offset of a block, across block edges and in the last byte.
        #[test]
        fn the_block_scan_finds_exactly_the_bare_crs(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'\r', b'\n', b'a']),
                0..200,
            ),
        ) {
            let reference = (0..bytes.len())
                .any(|i| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
            proptest::prop_assert_eq!(has_bare_cr(&bytes), reference);
        }
    }

    #[test]
    fn one_bare_cr_anywhere_in_crlf_text_is_found() {
        let text = b"line of a mail\r\n".repeat(20);
        assert!(!has_bare_cr(&text));
        for at in 0..text.len() {
            let mut t = text.clone();
            match t[at] {
                // The CR of a CRLF left bare.
                b'\n' => t[at] = b'x',
                // A CR where a letter was (the LF after it stays with its own CR).
                b'\r' => continue,
                _ if t.get(at + 1) == Some(&b'\r') => continue,
                _ => t[at] = b'\r',
            }
            assert!(has_bare_cr(&t), "{at}");
        }
    }

    #[test]
    fn a_soft_break_written_with_a_bare_cr_is_read_as_one() {
        let raw = b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<img src=3D\"https://t.exa=\rmple/o.gif\">\r\n";
        assert!(bare_cr_reading(raw, b"\r\n").unwrap().is_some());
    }
}
