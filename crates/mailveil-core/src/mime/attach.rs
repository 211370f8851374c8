//! Keeping what mailveil will not show as it came: an entity (a whole mail that could
//! not be read, a signed entity) becomes a non-rendered attachment,
//! `application/octet-stream` in base64, so that no client opens it on its own and its
//! bytes come back exactly when it is saved. Each such attachment carries
//! `X-Mailveil-Original`: `error=<code>` for a mail that could not be read (the next pass
//! knows it for ours and does not wrap it again), `signed` for a signed original.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mail_parser::{MessageParser, MimeHeaders, PartType};

/// The header that marks an attachment holding an original.
pub(crate) const ORIGINAL_HEADER: &str = "X-Mailveil-Original";

/// The error codes a wrapped mail may name (the `CleanError` codes and `internal`).
const ERROR_CODES: &[&str] = &[
    "unparseable",
    "too-deep",
    "too-many-parts",
    "time-limit",
    "ambiguous-mime",
    "internal",
];

const WRAP_NOTE: &str = "mailveil could not read this message ({code}), so it could not remove what\n\
would tell its sender that you opened it. So that nothing in it reaches out,\n\
the message is attached as it arrived, unopened and unchanged: original.eml.\n\
Open that attachment only if you trust its sender: your mail program may then\n\
load remote images and other content from it.\n";

const OPAQUE_NOTE: &str = "This part was signed with S/MIME in a form that mailveil does not unpack\n\
(application/pkcs7-mime), so it could not remove what would tell its sender\n\
that you opened it. So that nothing in it reaches out, it is attached as it\n\
arrived, unopened and unchanged, signature included: signed-original.eml.\n\
Open that attachment only if you trust its sender.\n";

const SIGNED_DESCRIPTION: &str =
    "the signed original, byte for byte (mailveil cleaned the copy shown)";

/// The note of a wrapped mail, with its error code.
pub(crate) fn wrap_note(code: &str) -> String {
    WRAP_NOTE.replace("{code}", code)
}

/// A `text/plain` part (header and body, no final line end) with `text`, its line ends
/// written as `eol`.
pub(crate) fn note_part(text: &str, eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 96);
    out.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii");
    out.extend_from_slice(eol);
    out.extend_from_slice(b"Content-Transfer-Encoding: 7bit");
    out.extend_from_slice(eol);
    out.extend_from_slice(eol);
    for line in text.trim_end().split('\n') {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(eol);
    }
    out.truncate(out.len() - eol.len());
    out
}

/// The note of an opaque S/MIME part.
pub(crate) fn opaque_note(eol: &[u8]) -> Vec<u8> {
    note_part(OPAQUE_NOTE, eol)
}

/// An `application/octet-stream` attachment (header and body, no final line end) whose
/// base64 body is `original`, byte for byte.
pub(crate) fn attachment(original: &[u8], file: &str, marker: &str, eol: &[u8]) -> Vec<u8> {
    let encoded = STANDARD.encode(original);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 38 + 320);
    let mut line = |s: &str| {
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(eol);
    };
    line(&format!(
        "Content-Type: application/octet-stream; name=\"{file}\""
    ));
    line(&format!(
        "Content-Disposition: attachment; filename=\"{file}\""
    ));
    line("Content-Transfer-Encoding: base64");
    if marker == "signed" {
        line(&format!("Content-Description: {SIGNED_DESCRIPTION}"));
    }
    line(&format!("{ORIGINAL_HEADER}: {marker}"));
    out.extend_from_slice(eol);
    for (i, chunk) in encoded.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(chunk);
    }
    out
}

/// The attachment of a signed original.
pub(crate) fn signed_original(original: &[u8], eol: &[u8]) -> Vec<u8> {
    attachment(original, "signed-original.eml", "signed", eol)
}

/// A boundary for a new multipart: `prefix-N`, the first N whose delimiter occurs in
/// none of `parts`, and that is neither a prefix of an `existing` boundary nor starts
/// with one (a lenient reader could take one for the other).
pub(crate) fn boundary(prefix: &str, parts: &[&[u8]], existing: &[Vec<u8>]) -> String {
    (0u32..)
        .map(|n| format!("{prefix}-{n}"))
        .find(|b| {
            let delimiter = format!("--{b}");
            !parts
                .iter()
                .any(|p| memchr::memmem::find(p, delimiter.as_bytes()).is_some())
                && !existing
                    .iter()
                    .any(|e| e.starts_with(b.as_bytes()) || b.as_bytes().starts_with(e))
        })
        .unwrap_or_else(|| prefix.to_string())
}

/// The body of a multipart holding `parts`, closed, ending with a line end.
pub(crate) fn multipart_body(parts: &[&[u8]], boundary: &str, eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 64).sum());
    for p in parts {
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(eol);
        out.extend_from_slice(p);
        out.extend_from_slice(eol);
    }
    out.extend_from_slice(b"--");
    out.extend_from_slice(boundary.as_bytes());
    out.extend_from_slice(b"--");
    out.extend_from_slice(eol);
    out
}

/// A whole mail that could not be read, delivered so that nothing is lost and nothing
/// fetches: its header fields (but the MIME ones and `X-Mailveil`) on a
/// `multipart/mixed` of a note and the original as an attachment. `headers_from` is the
/// mail as its header is read (bare CRs made line ends); `original` the bytes received.
pub(crate) fn wrap_message(
    original: &[u8],
    headers_from: &[u8],
    code: &str,
    eol: &[u8],
) -> Vec<u8> {
    let top = crate::headers::header_start(headers_from);
    let fields = crate::headers::fields(headers_from);
    let mut out = Vec::with_capacity(original.len() * 4 / 3 + 2048);
    out.extend_from_slice(&headers_from[..top]);
    for f in &fields {
        let name = f.name.to_ascii_lowercase();
        if name.starts_with("content-")
            || name == "mime-version"
            || name == crate::HEADER_NAME.to_ascii_lowercase()
        {
            continue;
        }
        let field = &headers_from[f.range.clone()];
        out.extend_from_slice(field);
        if !field.ends_with(b"\n") {
            out.extend_from_slice(eol);
        }
    }
    // What follows the mbox `From ` line is kept; the line itself stays on top.
    let original = &original[crate::headers::header_start(original)..];
    let note = note_part(&wrap_note(code), eol);
    let att = attachment(original, "original.eml", &format!("error={code}"), eol);
    let b = boundary("mailveil-original", &[&note], &[]);
    out.extend_from_slice(b"MIME-Version: 1.0");
    out.extend_from_slice(eol);
    out.extend_from_slice(format!("Content-Type: multipart/mixed; boundary=\"{b}\"").as_bytes());
    out.extend_from_slice(eol);
    out.extend_from_slice(eol);
    out.extend_from_slice(&multipart_body(&[&note, &att], &b, eol));
    out
}

/// The error code of a mail that is one of our wrappers (`wrap_message`): a
/// `multipart/mixed` of a text part and an attachment marked `error=<code>`.
pub(crate) fn wrapped_error(raw: &[u8]) -> Option<&'static str> {
    let marker = format!("{ORIGINAL_HEADER}: error=");
    memchr::memmem::find(raw, marker.as_bytes())?;
    let msg = MessageParser::default().parse(raw)?;
    let root = msg.parts.first()?;
    let is = |p: &mail_parser::MessagePart, t: &str, s: &str| {
        p.content_type().is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case(t)
                && c.subtype().is_some_and(|x| x.eq_ignore_ascii_case(s))
        })
    };
    let PartType::Multipart(children) = &root.body else {
        return None;
    };
    if !is(root, "multipart", "mixed") || children.len() != 2 {
        return None;
    }
    let note = msg.parts.get(children[0] as usize)?;
    let att = msg.parts.get(children[1] as usize)?;
    if !is(note, "text", "plain") || !is(att, "application", "octet-stream") {
        return None;
    }
    let value = att
        .headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(ORIGINAL_HEADER))
        .map(|h| {
            let start = (h.offset_start as usize).min(raw.len());
            let end = (h.offset_end as usize).clamp(start, raw.len());
            String::from_utf8_lossy(&raw[start..end]).trim().to_string()
        })?;
    let code = value.strip_prefix("error=")?;
    ERROR_CODES.iter().copied().find(|c| *c == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_mail_is_known_again_and_holds_the_original() {
        let original =
            b"From: a@b.example\r\nSubject: hi\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n";
        let w = wrap_message(original, original, "too-deep", b"\r\n");
        assert_eq!(wrapped_error(&w), Some("too-deep"));
        let text = String::from_utf8(w.clone()).unwrap();
        assert!(text.starts_with("From: a@b.example\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"));
        assert!(!text.contains("text/html"));
        let msg = MessageParser::default().parse(&w).unwrap();
        let att = msg.attachments().next().unwrap();
        assert_eq!(att.contents(), original);
        assert_eq!(wrapped_error(original), None);
    }

    #[test]
    fn boundaries_avoid_what_is_there() {
        let b = boundary("mv", &[b"x\r\n--mv-0\r\n"], &[b"mv-1".to_vec()]);
        assert_eq!(b, "mv-2");
    }
}
