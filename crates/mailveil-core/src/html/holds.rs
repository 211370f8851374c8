//! Images that look hidden, held to the end of the part: one that the same mail also
//! shows elsewhere (a logo in a desktop and a mobile copy of a block, only one of which a
//! layout shows) is content the reader's client loads anyway, so it stays; one that is
//! nowhere shown goes, as it would have at once.
//!
//! lol_html writes an element before the part has been read to its end, so a held image
//! is written between two markers (`<!--mailveil-hold:N-->`) and judged like any other
//! element meanwhile (its `srcset`, `style`...); the end of the pass keeps what is
//! between the markers or removes it. Only under `--remote-content keep`: there a kept
//! image keeps its URL, the same as the copy shown elsewhere. A part that already holds
//! the marker text (a sender's forgery) holds nothing: its images go at once.

use super::{HtmlContext, SEPARATOR, State};
use crate::policy::RemoteContent;
use crate::report::{Action, Finding, FindingKind};
use lol_html::html_content::{ContentType, Element};
use std::cell::RefCell;
use std::collections::HashSet;
use std::ops::Range;

const OPEN: &str = "mailveil-hold:";
const CLOSE: &str = "mailveil-hold-end:";

/// A held image.
#[derive(Debug)]
pub(super) struct Hold {
    /// The finding it gets if it goes.
    finding: Finding,
    /// The byte before it in the input is a `<`.
    after_lt: bool,
    /// The findings its own attributes made (`usize::MAX` while it is being judged).
    pub findings: Range<usize>,
}

/// Whether markers can be written into this input.
pub(super) fn can_hold(input: &[u8]) -> bool {
    memchr::memmem::find(input, OPEN.as_bytes()).is_none()
}

/// Holds `el`, which would go with `finding`; `false` when it cannot be held (it goes now).
pub(super) fn hold(
    el: &mut Element,
    finding: Finding,
    ctx: &HtmlContext,
    state: &RefCell<State>,
) -> bool {
    let mut st = state.borrow_mut();
    if !st.can_hold || ctx.policy.remote_content != RemoteContent::Keep {
        return false;
    }
    let i = st.holds.len();
    el.before(&format!("<!--{OPEN}{i}-->"), ContentType::Html);
    el.after(&format!("<!--{CLOSE}{i}-->"), ContentType::Html);
    let start = st.findings.len();
    let after_lt = st.after_lt;
    st.holds.push(Hold {
        finding,
        after_lt,
        findings: start..usize::MAX,
    });
    st.changed = true;
    true
}

/// Decides the held images: the ones whose URL another element of the part loads stay,
/// the others go (with their findings replaced by the pixel finding).
pub(super) fn finish(out: &mut Vec<u8>, state: &RefCell<State>) {
    let mut st = state.borrow_mut();
    if st.holds.is_empty() {
        return;
    }
    let holds = std::mem::take(&mut st.holds);
    let held = |i: usize| holds.iter().any(|h| h.findings.contains(&i));
    let shown: HashSet<&str> = st
        .findings
        .iter()
        .enumerate()
        .filter(|(i, f)| {
            f.kind == FindingKind::RemoteContent && f.action != Action::Strip && !held(*i)
        })
        .filter_map(|(_, f)| f.url.as_deref())
        .collect();
    let keep: Vec<bool> = holds
        .iter()
        .map(|h| h.finding.url.as_deref().is_some_and(|u| shown.contains(u)))
        .collect();
    drop(shown);
    *out = resolve(out, &keep, &holds);
    // The findings of removed images go; each gets its pixel finding instead.
    let mut drop_at: Vec<Range<usize>> = holds
        .iter()
        .zip(&keep)
        .filter(|(_, k)| !**k)
        .map(|(h, _)| h.findings.start..h.findings.end.min(st.findings.len()))
        .collect();
    drop_at.sort_by_key(|r| std::cmp::Reverse(r.start));
    for r in drop_at {
        st.findings.drain(r);
    }
    st.findings.extend(
        holds
            .into_iter()
            .zip(keep)
            .filter(|(_, k)| !k)
            .map(|(h, _)| h.finding),
    );
}

/// `out` with the markers of held image `i` removed, and what lies between them too
/// unless `keep[i]`.
fn resolve(out: &[u8], keep: &[bool], holds: &[Hold]) -> Vec<u8> {
    let mut result = Vec::with_capacity(out.len());
    let mut at = 0;
    let open = format!("<!--{OPEN}");
    while let Some(pos) = memchr::memmem::find(&out[at..], open.as_bytes()) {
        let start = at + pos;
        let digits_from = start + open.len();
        let digits = out[digits_from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let index = std::str::from_utf8(&out[digits_from..digits_from + digits])
            .ok()
            .and_then(|d| d.parse::<usize>().ok())
            .filter(|&i| i < keep.len() && out[digits_from + digits..].starts_with(b"-->"));
        let Some(i) = index else {
            result.extend_from_slice(&out[at..digits_from]);
            at = digits_from;
            continue;
        };
        let close = format!("<!--{CLOSE}{i}-->");
        let body_from = digits_from + digits + 3;
        let Some(close_at) = memchr::memmem::find(&out[body_from..], close.as_bytes()) else {
            // No end marker (cannot happen: lol_html writes both): remove the marker.
            result.extend_from_slice(&out[at..start]);
            at = body_from;
            continue;
        };
        result.extend_from_slice(&out[at..start]);
        if keep[i] {
            result.extend_from_slice(&out[body_from..body_from + close_at]);
        } else if holds[i].after_lt {
            result.extend_from_slice(SEPARATOR.as_bytes());
        }
        at = body_from + close_at + close.len();
    }
    result.extend_from_slice(&out[at..]);
    result
}
