//! Charsets of HTML parts. lol_html rewrites ASCII-compatible encodings in place, so most
//! parts are never transcoded and untouched text keeps its bytes. The others (UTF-16,
//! ISO-2022-JP) are transcoded to UTF-8 for the rewrite and encoded back where
//! encoding_rs can (ISO-2022-JP), or labelled UTF-8 (UTF-16 has no encoder).

use encoding_rs::{Encoding, ISO_2022_JP, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252};

/// How a part's bytes are handed to the rewriter and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Rewrite the bytes as they are, in this ASCII-compatible encoding.
    InPlace(&'static Encoding),
    /// Transcode to UTF-8, rewrite, encode back to the same charset.
    RoundTrip(&'static Encoding),
    /// Transcode to UTF-8, rewrite, and relabel the part `charset=utf-8`.
    ToUtf8(&'static Encoding),
}

/// The plan for a part with this `charset` label (or none) and these bytes.
/// The encoding a `charset` parameter names, if it names one.
pub fn named(label: Option<&str>) -> Option<&'static Encoding> {
    label.and_then(|l| Encoding::for_label(l.trim().trim_matches('"').as_bytes()))
}

pub fn plan(label: Option<&str>, bytes: &[u8]) -> Plan {
    match named(label) {
        Some(e) if e == UTF_16BE || e == UTF_16LE => Plan::ToUtf8(e),
        Some(e) if e == ISO_2022_JP => Plan::RoundTrip(e),
        Some(e) if e.is_ascii_compatible() => Plan::InPlace(e),
        // "replacement" labels, unknown labels and no label: bytes are what they are.
        // UTF-8 when they are, else windows-1252, which maps every byte to a character and
        // back, so text the rewrite does not touch keeps its bytes.
        _ => match std::str::from_utf8(bytes) {
            Ok(_) => Plan::InPlace(UTF_8),
            Err(_) => Plan::InPlace(WINDOWS_1252),
        },
    }
}

/// UTF-8 text of a part under a transcoding plan.
pub fn to_utf8(bytes: &[u8], enc: &'static Encoding) -> String {
    let (text, _, _) = enc.decode(bytes);
    text.into_owned()
}

/// Bytes of rewritten UTF-8 text under a plan, in the part's charset when it has one.
pub fn from_utf8(text: &str, plan: Plan) -> Vec<u8> {
    match plan {
        Plan::RoundTrip(enc) => enc.encode(text).0.into_owned(),
        _ => text.as_bytes().to_vec(),
    }
}

/// A part header with its `charset` parameter set to `utf-8` (for UTF-16 parts that come
/// out as UTF-8). The header otherwise keeps its bytes.
pub fn relabel_utf8(header: &[u8]) -> Vec<u8> {
    let lower: Vec<u8> = header.to_ascii_lowercase();
    let Some(at) = find(&lower, b"charset=") else {
        return header.to_vec();
    };
    let start = at + b"charset=".len();
    let mut end = start;
    if header.get(start) == Some(&b'"') {
        end = start
            + 1
            + header[start + 1..]
                .iter()
                .position(|&b| b == b'"')
                .map_or(0, |p| p + 1);
    } else {
        while end < header.len() && !matches!(header[end], b';' | b' ' | b'\t' | b'\r' | b'\n') {
            end += 1;
        }
    }
    let mut out = header[..start].to_vec();
    out.extend_from_slice(b"utf-8");
    out.extend_from_slice(&header[end..]);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_by_label() {
        assert_eq!(plan(Some("windows-1252"), b""), Plan::InPlace(WINDOWS_1252));
        assert_eq!(plan(Some("ISO-8859-1"), b""), Plan::InPlace(WINDOWS_1252));
        assert_eq!(
            plan(Some("\"shift_jis\""), b""),
            Plan::InPlace(encoding_rs::SHIFT_JIS)
        );
        assert_eq!(plan(Some("iso-2022-jp"), b""), Plan::RoundTrip(ISO_2022_JP));
        assert_eq!(plan(Some("utf-16le"), b""), Plan::ToUtf8(UTF_16LE));
        assert_eq!(
            plan(Some("x-unknown-charset"), "é".as_bytes()),
            Plan::InPlace(UTF_8)
        );
        assert_eq!(plan(None, b"\xe9t\xe9"), Plan::InPlace(WINDOWS_1252));
    }

    #[test]
    fn iso_2022_jp_round_trips() {
        let text = "こんにちは <img>";
        let bytes = from_utf8(text, Plan::RoundTrip(ISO_2022_JP));
        assert!(bytes.is_ascii());
        assert_eq!(to_utf8(&bytes, ISO_2022_JP), text);
    }

    #[test]
    fn relabel_replaces_only_the_charset_value() {
        let h = b"Content-Type: text/html; charset=\"UTF-16\"; format=flowed\r\n";
        assert_eq!(
            relabel_utf8(h),
            b"Content-Type: text/html; charset=utf-8; format=flowed\r\n".to_vec()
        );
        let h = b"Content-Type: text/html;\r\n\tcharset=utf-16le\r\n";
        assert_eq!(
            relabel_utf8(h),
            b"Content-Type: text/html;\r\n\tcharset=utf-8\r\n".to_vec()
        );
    }
}
