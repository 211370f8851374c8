//! Links in HTML and plain text: every `href` of `<a>`, `<area>` and Outlook's VML buttons,
//! and every URL in text/plain, goes through `links::clean_link`.
//!
//! An `<a>` whose parameters would be removed waits for its text: "Unsubscribe" or
//! "Abmelden" makes it a functional link whose parameters stay. lol_html writes the start
//! tag before the text arrives, so the `href` gets a marker that the end of the pass
//! replaces with the decided URL: one pass, no second parse.

use super::{HtmlContext, State, escape_attr, unescape_attr};
use crate::detect::Detector;
use crate::links::{self, LinkContext, LinkOutcome, LinkPolicy, LinkStep};
use crate::report::{Action, Finding, FindingKind, Location, LocationKind};
use crate::rules::Rules;
use lol_html::html_content::{ContentType, Element, TextChunk, TextType};
use std::cell::RefCell;

const MARKER: &str = "mailveil-pending-link:";

/// A link whose decision waits for its text.
#[derive(Debug)]
pub(super) struct Pending {
    original: String,
    location: Location,
    text: String,
    /// The decision without the text, which stands unless the text is functional.
    outcome: LinkOutcome,
    /// It was a URL of our own proxy, read back to the URL it carries (already reported).
    own: bool,
}

/// Whether one link's findings say it was unwrapped or cleaned: what the banner counts,
/// once per link however many steps it took (a redirect unwrapped, then its parameters
/// cleaned, is one link).
fn link_cleaned(found: &[Finding]) -> bool {
    found.iter().any(|f| {
        matches!(
            (f.kind, f.action),
            (FindingKind::ClickRedirect, Action::Unwrap)
                | (FindingKind::TrackingParam, Action::Clean)
        )
    })
}

fn link_context<'a>(ctx: &'a HtmlContext, text: Option<&'a str>) -> LinkContext<'a> {
    LinkContext {
        rules: ctx.rules,
        detector: ctx.detector,
        policy: &ctx.policy.links,
        link_text: text,
        list_unsubscribe: ctx.list_unsubscribe,
    }
}

/// The `href` of a link element. A URL of our own proxy is judged by the URL it carries,
/// like any other link, and replaced by what that gives (see [`own_destination`]).
pub(super) fn on_link(el: &mut Element, tag: &str, ctx: &HtmlContext, state: &RefCell<State>) {
    if tag == "a" {
        let mut st = state.borrow_mut();
        st.anchor.set(None);
        st.shown_url = None;
    }
    let Some(value) = el.get_attribute("href") else {
        return;
    };
    let written = unescape_attr(&value);
    let own = own_destination(ctx.policy.proxy.as_ref(), &written);
    let raw = own.clone().unwrap_or_else(|| written.clone());
    let location = Location::attribute(LocationKind::Link, tag, "href");
    if allowed(ctx.rules, &raw) {
        if own.is_some() {
            let _ = el.set_attribute("href", &escape_attr(&raw));
            let mut st = state.borrow_mut();
            st.changed = true;
            st.findings.push(own_finding(&raw, &location, ctx.part));
            st.links_cleaned += 1;
        }
        return;
    }
    let outcome = links::clean_link(&raw, &link_context(ctx, None));
    let mut st = state.borrow_mut();
    if tag == "a" && outcome.removed_params().next().is_some() {
        let i = st.pending.len();
        if own.is_some() {
            st.findings.push(own_finding(&raw, &location, ctx.part));
        }
        st.pending.push(Pending {
            original: raw,
            location,
            text: String::new(),
            outcome,
            own: own.is_some(),
        });
        st.anchor.set(Some(i));
        let anchor = std::rc::Rc::clone(&st.anchor);
        if let Some(handlers) = el.end_tag_handlers() {
            handlers.push(Box::new(move |_end| {
                if anchor.get() == Some(i) {
                    anchor.set(None);
                }
                Ok(())
            }));
        }
        let marker = format!("{MARKER}{i}:");
        let _ = el.set_attribute("href", &marker);
        st.shown_url = Some((escape_attr(&written), marker));
        st.changed = true;
        return;
    }
    let shielded = shield(ctx.policy.proxy.as_ref(), &outcome, &raw);
    let unwrapped = own
        .as_ref()
        .filter(|_| outcome.url.is_none() && shielded.is_none());
    let new = shielded.as_ref().or(outcome.url.as_ref()).or(unwrapped);
    let mut own_unwrapped = false;
    if let Some(url) = new.filter(|u| **u != written) {
        let _ = el.set_attribute("href", &escape_attr(url));
        st.changed = true;
        if tag == "a" && shielded.is_none() {
            st.shown_url = Some((escape_attr(&written), escape_attr(url)));
        }
        if own.is_some() {
            st.findings.push(own_finding(&raw, &location, ctx.part));
            own_unwrapped = true;
        }
    }
    let part = ctx.part;
    let mut found = findings(outcome.steps, outcome.url.as_deref(), &raw, &location, part);
    if shielded.is_some() {
        shielded_findings(&mut found);
    }
    if own_unwrapped || link_cleaned(&found) {
        st.links_cleaned += 1;
    }
    st.findings.extend(found);
}

/// The URL a link of our own proxy carries (through every level it nests), or `None`
/// for any other link, or one of ours that carries nothing readable (it stays: the proxy
/// can only answer it 404). Whoever signed it, it is not trusted: a reader of this
/// server can have the proxy sign a shield URL for any click tracker by mailing it to
/// themselves (issue 14), so the carried URL is cleaned like any other link.
fn own_destination(cfg: Option<&crate::proxy_url::ProxyConfig>, raw: &str) -> Option<String> {
    let cfg = cfg?;
    let mut current = crate::detect::strip_url_noise(raw);
    let mut found = None;
    for _ in 0..super::MAX_OWN_NESTING {
        match crate::proxy_url::own(cfg, &current) {
            crate::proxy_url::Own::Carries { url, .. } => {
                found = Some(url.clone());
                current = url;
            }
            _ => break,
        }
    }
    found
}

/// The finding of a link that pointed at our own proxy and now leads where its URL
/// said (the report names that URL, never the proxy URL with its signature).
fn own_finding(dest: &str, location: &Location, part: &str) -> Finding {
    Finding {
        kind: FindingKind::ClickRedirect,
        part: part.to_string(),
        location: location.clone(),
        url: Some(dest.to_string()),
        rule: OWN_URL_RULE.into(),
        tracker: None,
        action: Action::Unwrap,
        params: Vec::new(),
    }
}

/// The rule of a link of our own proxy read back to the URL it carries.
const OWN_URL_RULE: &str = "proxy:own-url";

/// The link-shield URL for a link that ends at an opaque click tracker, when the policy
/// shields links (`ProxyConfig::shield_links`).
fn shield(
    proxy: Option<&crate::proxy_url::ProxyConfig>,
    outcome: &LinkOutcome,
    original: &str,
) -> Option<String> {
    let cfg = proxy.filter(|c| c.shield_links)?;
    if !outcome.opaque() {
        return None;
    }
    let url = outcome.url.as_deref().unwrap_or(original).trim();
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://"))
        || crate::proxy_url::own(cfg, url) != crate::proxy_url::Own::No
    {
        return None;
    }
    Some(crate::proxy_url::proxied(
        cfg,
        crate::proxy_url::ProxyKind::Link,
        url,
    ))
}

/// A shielded opaque redirect is reported as proxied, not kept.
fn shielded_findings(found: &mut [Finding]) {
    for f in found.iter_mut() {
        if f.kind == FindingKind::ClickRedirect && f.action == Action::Keep {
            f.action = Action::Proxy;
        }
    }
}

/// Whether an `[[allow]]` rule exempts this URL.
fn allowed(rules: &Rules, url: &str) -> bool {
    rules.has_allows()
        && crate::detect::remote_url(url, &None)
            .is_some_and(|r| rules.allowed_url(r.host(), r.url.as_str()).is_some())
}

/// Text inside an `<a>`: collected for a link whose decision waits, and rewritten where
/// it shows the link's own URL (text arrives in chunks: buffered to the node's end).
pub(super) fn on_anchor_text(t: &mut TextChunk, state: &RefCell<State>) {
    // Raw text inside the link (`<noscript>`, `<style>`) is their handlers' to rewrite:
    // two handlers replacing one chunk would lose the first one's work.
    if !matches!(t.text_type(), TextType::Data | TextType::RCData) {
        return;
    }
    // Fields borrowed one by one: the shown URL and its replacement were cloned for
    // every chunk of a link's text (issue 17).
    let mut guard = state.borrow_mut();
    let st = &mut *guard;
    if let Some(i) = st.anchor.get()
        && let Some(p) = st.pending.get_mut(i)
    {
        p.text.push_str(t.as_str());
    }
    let Some((shown, replacement)) = &st.shown_url else {
        return;
    };
    st.text_buf.push_str(t.as_str());
    if !t.last_in_text_node() {
        t.remove();
        return;
    }
    let text = std::mem::take(&mut st.text_buf);
    if text.contains(shown.as_str()) {
        t.replace(
            &text.replace(shown.as_str(), replacement),
            ContentType::Html,
        );
        st.changed = true;
    } else if text.len() != t.as_str().len() {
        t.replace(&text, ContentType::Html);
    }
}

/// Decides the waiting links now that their text is known and writes their URLs over the
/// markers in `out` (in the part's encoding).
pub(super) fn finish(
    out: &mut Vec<u8>,
    ctx: &HtmlContext,
    state: &RefCell<State>,
    encoding: &'static encoding_rs::Encoding,
) {
    let pending = std::mem::take(&mut state.borrow_mut().pending);
    if pending.is_empty() {
        return;
    }
    let mut urls = Vec::with_capacity(pending.len());
    for p in pending {
        let text = htmlize::unescape(p.text.as_str()).into_owned();
        let outcome = if links::text_is_functional(text.trim(), ctx.rules) {
            links::clean_link(&p.original, &link_context(ctx, Some(text.trim())))
        } else {
            p.outcome
        };
        let shielded = shield(ctx.policy.proxy.as_ref(), &outcome, &p.original);
        let url = shielded
            .clone()
            .or_else(|| outcome.url.clone())
            .unwrap_or_else(|| p.original.clone());
        urls.push(encoding.encode(&escape_attr(&url)).0.into_owned());
        let mut found = findings(
            outcome.steps,
            outcome.url.as_deref(),
            &p.original,
            &p.location,
            ctx.part,
        );
        if shielded.is_some() {
            shielded_findings(&mut found);
        }
        let mut st = state.borrow_mut();
        if p.own || link_cleaned(&found) {
            st.links_cleaned += 1;
        }
        st.findings.extend(found);
    }
    *out = replace_markers(out, &urls);
}

/// `out` with each `MARKER<i>:` replaced by `urls[i]`.
fn replace_markers(out: &[u8], urls: &[Vec<u8>]) -> Vec<u8> {
    let marker = MARKER.as_bytes();
    // One searcher for every marker: built for each, it cost more than the search.
    let finder = memchr::memmem::Finder::new(marker);
    let mut result = Vec::with_capacity(out.len() + urls.iter().map(Vec::len).sum::<usize>());
    let mut at = 0;
    while let Some(pos) = finder.find(&out[at..]) {
        let start = at + pos;
        let digits_from = start + marker.len();
        let digits_len = out[digits_from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = digits_from + digits_len;
        let index = std::str::from_utf8(&out[digits_from..end])
            .ok()
            .and_then(|d| d.parse::<usize>().ok());
        result.extend_from_slice(&out[at..start]);
        match (index, out.get(end)) {
            (Some(i), Some(b':')) if i < urls.len() => {
                result.extend_from_slice(&urls[i]);
                at = end + 1;
            }
            _ => {
                result.extend_from_slice(marker);
                at = digits_from;
            }
        }
    }
    result.extend_from_slice(&out[at..]);
    result
}

/// Report findings for what `clean_link` did to one link: its `steps`, taken (their
/// strings move into the findings instead of being copied, issue 17), and `url`, the
/// new URL if it changed.
pub(crate) fn findings(
    steps: Vec<LinkStep>,
    url: Option<&str>,
    original: &str,
    location: &Location,
    part: &str,
) -> Vec<Finding> {
    let base = |kind, rule: String, tracker: Option<String>, action, url: &str| Finding {
        kind,
        part: part.to_string(),
        location: location.clone(),
        url: Some(url.to_string()),
        rule,
        tracker,
        action,
        params: Vec::new(),
    };
    let mut out = Vec::with_capacity(steps.len().min(4));
    let mut removed: Vec<String> = Vec::new();
    let mut param_rule: Option<(String, Option<String>)> = None;
    for step in steps {
        match step {
            LinkStep::Unwrapped { rule, tracker, .. } => out.push(base(
                FindingKind::ClickRedirect,
                rule,
                Some(tracker),
                Action::Unwrap,
                original,
            )),
            LinkStep::Opaque { rule, tracker } => out.push(base(
                FindingKind::ClickRedirect,
                rule,
                Some(tracker),
                Action::Keep,
                original,
            )),
            LinkStep::ParamRemoved {
                name,
                rule,
                tracker,
            } => {
                removed.push(name);
                if param_rule.is_none() || tracker.is_some() {
                    param_rule = Some((rule, tracker));
                }
            }
            LinkStep::TokenKept { place } => out.push(base(
                FindingKind::RecipientToken,
                format!("{}:{place}", links::TOKEN_HEURISTIC),
                None,
                Action::Keep,
                original,
            )),
            LinkStep::DepthLimit { max } => out.push(base(
                FindingKind::ClickRedirect,
                format!("limit:unwrap-depth-{max}"),
                None,
                Action::Keep,
                original,
            )),
            LinkStep::Functional { .. } => {}
        }
    }
    if let Some((rule, tracker)) = param_rule {
        let mut f = base(
            FindingKind::TrackingParam,
            rule,
            tracker,
            Action::Clean,
            url.unwrap_or(original),
        );
        f.params = removed;
        out.push(f);
    }
    out
}

/// Rewrites the URLs of plain text; `None` when nothing changed.
pub fn rewrite_text_links(
    text: &str,
    rules: &Rules,
    detector: &Detector,
    policy: &LinkPolicy,
    list_unsubscribe: &[String],
    part: &str,
) -> (Option<String>, Vec<Finding>) {
    let mut found = Vec::new();
    let new = rewrite_text_links_until(
        text,
        rules,
        detector,
        policy,
        list_unsubscribe,
        part,
        None,
        None,
        &mut |f| found.push(f),
    )
    .unwrap_or_default(); // without a deadline it cannot give up
    (new, found)
}

/// [`rewrite_text_links`] that gives up with `HtmlError::Deadline` once `deadline` has
/// passed (the clock is read every 256 URLs): a text part of nothing but links must not
/// outlast the time budget (issue 8). Findings go to `note` as they are made: a part of
/// a million links must not hold a million findings (the report keeps a bounded number).
/// A URL of our own proxy (`proxy`) is replaced by the URL it carries, cleaned.
#[allow(clippy::too_many_arguments)] // the context of one part; each argument is read
pub(crate) fn rewrite_text_links_until(
    text: &str,
    rules: &Rules,
    detector: &Detector,
    policy: &LinkPolicy,
    list_unsubscribe: &[String],
    part: &str,
    proxy: Option<&crate::proxy_url::ProxyConfig>,
    deadline: Option<std::time::Instant>,
    note: &mut dyn FnMut(Finding),
) -> Result<Option<String>, super::HtmlError> {
    let ctx = &LinkContext {
        rules,
        detector,
        policy,
        link_text: None,
        list_unsubscribe,
    };
    let ranges = links::find_urls(text);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut changed = false;
    for (i, r) in ranges.into_iter().enumerate() {
        if i % 256 == 255 && deadline.is_some_and(|d| std::time::Instant::now() > d) {
            return Err(super::HtmlError::Deadline);
        }
        let written = &text[r.clone()];
        let own = own_destination(proxy, written);
        let url = own.as_deref().unwrap_or(written);
        if allowed(ctx.rules, url) && own.is_none() {
            continue;
        }
        let outcome = links::clean_link(url, ctx);
        // With the link shield on, an opaque click tracker in text goes through it too:
        // a reader clicks a URL in plain text as readily as a link in HTML.
        let shielded = shield(proxy, &outcome, url);
        if own.is_some() {
            note(own_finding(url, &Location::text(), part));
        }
        let mut found = findings(
            outcome.steps,
            outcome.url.as_deref(),
            url,
            &Location::text(),
            part,
        );
        if shielded.is_some() {
            shielded_findings(&mut found);
        }
        found.into_iter().for_each(&mut *note);
        let new = shielded
            .as_deref()
            .or(outcome.url.as_deref())
            .or(own.as_deref());
        if let Some(new) = new.filter(|n| *n != written) {
            out.push_str(&text[at..r.start]);
            out.push_str(new);
            at = r.end;
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    out.push_str(&text[at..]);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_replaced_and_strangers_left() {
        let out = b"<a href=\"mailveil-pending-link:0:\">x</a><a href=\"mailveil-pending-link:7:\">y</a>mailveil-pending-link:1:";
        let urls = vec![
            b"https://a.example/".to_vec(),
            b"https://b.example/".to_vec(),
        ];
        let r = String::from_utf8(replace_markers(out, &urls)).unwrap();
        assert_eq!(
            r,
            "<a href=\"https://a.example/\">x</a><a href=\"mailveil-pending-link:7:\">y</a>https://b.example/"
        );
    }

    /// Issue 8: a text/plain part of a million links ran 112 s past a 10 s budget.
    #[test]
    fn text_links_give_up_at_the_deadline() {
        let rules = Rules::default();
        let detector = Detector::new(&rules, ["reader@example.org"]);
        let policy = LinkPolicy::default();
        let text = "https://a.example/?u=reader@example.org\n".repeat(300);
        let past = Some(std::time::Instant::now());
        let run = |deadline, found: &mut usize| {
            rewrite_text_links_until(
                &text,
                &rules,
                &detector,
                &policy,
                &[],
                "1",
                None,
                deadline,
                &mut |_| *found += 1,
            )
        };
        assert_eq!(run(past, &mut 0), Err(super::super::HtmlError::Deadline));
        let mut found = 0;
        let new = run(None, &mut found).unwrap();
        assert!(found > 0);
        assert!(!new.unwrap().contains("reader@"));
        let short = "https://a.example/?u=reader@example.org\n".repeat(255);
        assert!(
            rewrite_text_links_until(
                &short,
                &rules,
                &detector,
                &policy,
                &[],
                "1",
                None,
                past,
                &mut |_| {}
            )
            .is_ok(),
            "the clock is read every 256 URLs"
        );
    }
}
