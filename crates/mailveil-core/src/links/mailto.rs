//! `mailto:` links whose body or subject carry a URL (a "share by e-mail" link:
//! `mailto:?subject=...&body=Look%20https%3A%2F%2Fshop.example%2F%3Futm_source%3Dx`): each
//! URL in a header field's value is cleaned like any other link, and the mailto still
//! opens the same message, minus the tracking. Fields without a changed URL, and the
//! address part, keep every byte.

use super::{LinkContext, LinkOutcome, clean_link, parts::percent_decode_str, text::find_urls};

/// Longest field value looked at.
const MAX_VALUE: usize = 16 * 1024;

/// The outcome for a `mailto:` URL, `None` for anything else.
pub(super) fn clean(url: &str, ctx: &LinkContext<'_>) -> Option<LinkOutcome> {
    let scheme = url.get(..7)?;
    if !scheme.eq_ignore_ascii_case("mailto:") {
        return None;
    }
    let (head, query) = url.split_once('?')?;
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut steps = Vec::new();
    let mut changed = false;
    let mut fields = Vec::new();
    for field in query.split('&') {
        let Some((name, value)) = field.split_once('=') else {
            fields.push(field.to_string());
            continue;
        };
        match clean_value(value, ctx, &mut steps) {
            Some(new) if value.len() <= MAX_VALUE => {
                fields.push(format!("{name}={new}"));
                changed = true;
            }
            _ => fields.push(field.to_string()),
        }
    }
    let url = changed.then(|| {
        let mut out = format!("{head}?{}", fields.join("&"));
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
        out
    });
    Some(LinkOutcome { url, steps })
}

/// The value with each URL in it cleaned, re-encoded; `None` when no URL changed.
fn clean_value(
    value: &str,
    ctx: &LinkContext<'_>,
    steps: &mut Vec<super::LinkStep>,
) -> Option<String> {
    if value.len() > MAX_VALUE {
        return None;
    }
    // RFC 6068: percent-encoding only; `+` is a plus.
    let text = percent_decode_str(value, false);
    let inner = LinkContext {
        link_text: None,
        ..*ctx
    };
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut changed = false;
    for r in find_urls(&text) {
        let outcome = clean_link(&text[r.clone()], &inner);
        steps.extend(outcome.steps);
        if let Some(new) = outcome.url {
            out.push_str(&text[at..r.start]);
            out.push_str(&new);
            at = r.end;
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&text[at..]);
    Some(encode(&out))
}

/// Percent-encodes a header field value of a mailto URL: everything but unreserved
/// characters and the few delimiters that are safe inside a query value.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$'()*,;:@/?=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
