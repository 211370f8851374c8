//! The decoders: one function per way a redirect carries its destination. Where the
//! destination sits (query parameter or path segment) and which decoder applies come
//! from the rule entry (`param` / `segment`, `encoding`, `field`); nothing here knows an
//! ESP by name. Every decoder is bounded (input, zlib output, JSON depth) and returns
//! `None` rather than a guess: the caller then keeps the original link.

use super::parts::{Parts, percent_decode_bytes, percent_decode_str, valid_destination};
use crate::rules::RedirectEncoding;
use crate::rules::schema::RedirectEntry;
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use std::io::Read;

/// Largest carrier (encoded destination) looked at.
const MAX_CARRIER: usize = 32 * 1024;
/// Largest zlib output accepted (a bigger one is a bomb, not a link).
pub(crate) const MAX_INFLATED: u64 = 64 * 1024;

/// What a recoverable redirect rule found in a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Carried {
    /// The destination, validated as an absolute http(s) URL.
    Destination(String),
    /// The parameter or segment that should carry it is not there (a plain link on a
    /// host that also serves redirects, like `www.amazon.com/gp/r.html`).
    Absent,
    /// It is there but does not decode to a valid destination.
    Undecodable,
}

/// What the URL that matched `entry` carries: each candidate parameter in turn, each
/// candidate encoding in turn, the first valid destination wins. An opaque rule with
/// candidates unwraps only a destination in plain view; otherwise it stays opaque.
pub(crate) fn destination(entry: &RedirectEntry, parts: &Parts<'_>) -> Carried {
    let encodings = entry.candidate_encodings();
    let field = entry.field.as_deref();
    if entry.candidate_params().next().is_some() {
        let mut present = false;
        for name in entry.candidate_params() {
            let Some(raw) = parts.param(name).filter(|v| !v.is_empty()) else {
                continue;
            };
            present = true;
            if raw.len() > MAX_CARRIER {
                continue;
            }
            for &encoding in &encodings {
                if let Some(d) = decode(encoding, raw, true, field, parts)
                    .as_deref()
                    .and_then(valid_destination)
                {
                    return Carried::Destination(d);
                }
            }
        }
        return if present || entry.opaque {
            Carried::Undecodable
        } else {
            Carried::Absent
        };
    }
    if entry.opaque {
        return Carried::Undecodable;
    }
    let segments = parts.segments();
    let Some(index) = entry.segment.and_then(|s| segment_index(s, &segments)) else {
        return Carried::Absent;
    };
    let single = segments[index];
    let rest = segments[index..].join("/");
    if rest.len() > MAX_CARRIER {
        return Carried::Undecodable;
    }
    for &encoding in &encodings {
        let std_alphabet = matches!(
            encoding,
            RedirectEncoding::Base64 | RedirectEncoding::Convertkit
        );
        // Standard base64 may hold '/', which splits it over several segments: the
        // destination is then the rest of the path.
        let whole = if std_alphabet && rest != single {
            decode(encoding, &rest, false, field, parts).and_then(|d| valid_destination(&d))
        } else {
            None
        };
        let found = whole.or_else(|| {
            decode(encoding, single, false, field, parts)
                .as_deref()
                .and_then(valid_destination)
        });
        if let Some(d) = found {
            return Carried::Destination(d);
        }
    }
    Carried::Undecodable
}

/// Resolves a rule's segment number (0-based, -1 = last non-empty) to an index.
fn segment_index(segment: i32, segments: &[&str]) -> Option<usize> {
    if segment >= 0 {
        let i = usize::try_from(segment).ok()?;
        (i < segments.len() && !segments[i].is_empty()).then_some(i)
    } else {
        let from_end = usize::try_from(segment.unsigned_abs()).ok()?;
        let non_empty: Vec<usize> = (0..segments.len())
            .filter(|&i| !segments[i].is_empty())
            .collect();
        non_empty.len().checked_sub(from_end).map(|k| non_empty[k])
    }
}

/// Applies one encoding to the raw carrier text. `in_query`: the carrier is a query
/// value (form encoding: `+` is a space for plain text).
fn decode(
    encoding: RedirectEncoding,
    raw: &str,
    in_query: bool,
    field: Option<&str>,
    parts: &Parts<'_>,
) -> Option<String> {
    match encoding {
        RedirectEncoding::Plain => Some(plain(raw, in_query)),
        RedirectEncoding::Base64
        | RedirectEncoding::Base64url
        | RedirectEncoding::Sailthru
        | RedirectEncoding::Convertkit => base64_text(raw).map(|s| trim_attribute_junk(&s)),
        RedirectEncoding::Mailjet => {
            base64_text(raw).map(|s| trim_attribute_junk(&htmlize::unescape_attribute(s)))
        }
        RedirectEncoding::Base64Json => base64_json(raw, field),
        RedirectEncoding::ZlibBase64urlQuery => zlib_query(raw, field.unwrap_or("l")),
        RedirectEncoding::Postmark => postmark(parts.segments().first().copied()?, raw),
    }
}

/// A percent-encoded URL (Google `q=`, SafeLinks `url=`, SES `/L0/<url>/`). Decoded
/// twice when the first pass still leaves an encoded scheme (`https%3A%2F%2F`).
pub(crate) fn plain(raw: &str, form: bool) -> String {
    let once = percent_decode_str(raw, form);
    let lower = once
        .get(..10)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if lower.starts_with("http%3a") || lower.starts_with("https%3a") {
        percent_decode_str(&once, false)
    } else {
        once
    }
}

/// Lenient base64: either alphabet, padding optional, possibly percent-encoded
/// (`%3D`), ending at the first character outside the alphabets (Substack appends
/// `.<signature>`). Returns UTF-8 text.
pub(crate) fn base64_bytes(raw: &str) -> Option<Vec<u8>> {
    let unescaped = percent_decode_bytes(raw.as_bytes(), false);
    let text: String = unescaped
        .iter()
        .map(|&b| if b == b' ' { '+' } else { b as char })
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_' | '='))
        .filter(|&c| c != '=')
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    if text.len() < 4 || text.len() % 4 == 1 {
        return None;
    }
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(text.as_bytes()).ok()
}

fn base64_text(raw: &str) -> Option<String> {
    String::from_utf8(base64_bytes(raw)?).ok()
}

/// Junk that some ESPs captured with the href: a closing quote, raw or as an entity.
fn trim_attribute_junk(s: &str) -> String {
    let mut s = s.trim();
    loop {
        let before = s.len();
        for junk in ["&quot;", "&#34;", "&#x22;", "\"", "'"] {
            s = s.strip_suffix(junk).unwrap_or(s);
        }
        if s.len() == before {
            return s.to_string();
        }
    }
}

/// Base64 of a JSON object; `field` is a dotted path, and a step whose value is a
/// string holding JSON descends into it (Mandrill: `p.url`, where `p` is JSON text).
/// Without a field, the first top-level string that is a valid destination.
fn base64_json(raw: &str, field: Option<&str>) -> Option<String> {
    let bytes = base64_bytes(raw)?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match field {
        Some(path) => json_path(&value, path),
        None => value.as_object()?.values().find_map(|v| {
            let s = v.as_str()?;
            valid_destination(s).map(|_| s.to_string())
        }),
    }
}

fn json_path(value: &serde_json::Value, path: &str) -> Option<String> {
    let mut current = value.clone();
    for key in path.split('.') {
        if let serde_json::Value::String(s) = &current {
            current = serde_json::from_str(s).ok()?;
        }
        current = current.get(key)?.clone();
    }
    current.as_str().map(str::to_string)
}

/// Mailgun: base64url(zlib(`l=<dest>&r=<recipient>&...`)); the output is capped.
fn zlib_query(raw: &str, field: &str) -> Option<String> {
    let compressed = base64_bytes(raw)?;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(compressed.as_slice())
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut out)
        .ok()?;
    if out.len() as u64 > MAX_INFLATED {
        return None;
    }
    let query = String::from_utf8(out).ok()?;
    query.split('&').find_map(|piece| {
        let (n, v) = piece.split_once('=')?;
        (percent_decode_str(n, true) == field).then(|| plain(v, true))
    })
}

/// Postmark: `/<marker>/<percent-encoded destination without scheme>/...`; the marker
/// (`2s`, `3s`, `3ts`, `2sm`, `3`...) has an `s` when the destination is https.
fn postmark(marker: &str, raw: &str) -> Option<String> {
    if !marker.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut dest = percent_decode_str(raw, false);
    let host_part = dest.split(['/', '?', '#']).next().unwrap_or("");
    if host_part.contains('%') {
        dest = percent_decode_str(&dest, false);
    }
    let lower = dest
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Some(dest);
    }
    let scheme = if marker.contains('s') {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{dest}"))
}
