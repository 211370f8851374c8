//! The HTML rewrite of one part: one streaming lol_html pass that finds every way the
//! markup makes a client fetch something on open (../corpus/vectors.md sections A and C)
//! and strips trackers, or all remote content under `--remote-content strip`.
//!
//! Attribute values arrive with their entities (lol_html does not decode them): they
//! are decoded before a URL is read and re-escaped when an attribute is written.

mod banner;
pub mod css;
mod elements;
mod holds;
mod links;
pub use links::rewrite_text_links;
pub(crate) use links::rewrite_text_links_until;
pub mod visibility;

use crate::detect::{Base, Detector, Fetch, RemoteUrl, remote_url};
use crate::policy::{Policy, RemoteContent};
use crate::report::{Action, Finding, FindingKind, Location, LocationKind};
use lol_html::html_content::{Comment, ContentType, TextChunk};
use lol_html::{
    AsciiCompatibleEncoding, HtmlRewriter, MemorySettings, Settings, doc_comments, element, text,
};
use std::borrow::Cow;
use std::cell::RefCell;
use std::time::Instant;
use visibility::HiddenSelectors;

/// What one part's rewrite needs to know.
pub(crate) struct HtmlContext<'a> {
    pub detector: &'a Detector<'a>,
    pub rules: &'a crate::rules::Rules,
    pub list_unsubscribe: &'a [String],
    pub policy: &'a Policy,
    /// The MIME part number, for findings.
    pub part: &'a str,
    pub deadline: Instant,
    /// The part's Content-Language, for the banner.
    pub language: Option<&'a str>,
}

/// Why a part could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HtmlError {
    /// lol_html refused the input (an ambiguous parse in strict mode, the memory limit):
    /// attacker-controlled, so the part is neutralised rather than passed on.
    Refused(String),
    /// The time budget ran out.
    Deadline,
}

/// The result of rewriting one part.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// New bytes, or `None` when nothing had to change.
    pub bytes: Option<Vec<u8>>,
    pub findings: Vec<Finding>,
}

/// Mutable state shared by the handlers of one pass.
#[derive(Default)]
struct State {
    base: Base,
    /// Shared with the passes over fragments (conditional comments, `<noscript>`), which
    /// copy it only when a sheet of their own teaches them something.
    sheets: std::rc::Rc<HiddenSelectors>,
    style_buf: String,
    raw_text_buf: String,
    findings: Vec<Finding>,
    changed: bool,
    elements: u32,
    /// Links whose decision waits for their text, and the one collecting text now.
    pending: Vec<links::Pending>,
    /// Shared with the end-tag handler of that `<a>`, which clears it: text after the
    /// link's end (say inside a removed element, whose links get no handler) is not
    /// the link's text.
    anchor: std::rc::Rc<std::cell::Cell<Option<usize>>>,
    /// In the current `<a>`: its old URL as written in text, and what replaces it.
    shown_url: Option<(String, String)>,
    text_buf: String,
    /// Banner: `<html lang>`, a `<body>` was seen, a note from an earlier pass was seen,
    /// the widest fixed width of the layout (`banner::fixed_width`), and the links
    /// unwrapped or cleaned, each once (one link can give several findings).
    lang: Option<String>,
    saw_body: bool,
    saw_banner: bool,
    widest: Option<u32>,
    layout_slots: u32,
    links_cleaned: usize,
    /// How many open elements hide their content (decremented by end-tag handlers,
    /// which must own what they touch).
    hidden_depth: std::rc::Rc<std::cell::Cell<u32>>,
    /// The byte just before the current tag or comment is a `<` (see `SEPARATOR`).
    after_lt: bool,
    /// Images that look hidden, held until the end of the part (`holds`).
    holds: Vec<holds::Hold>,
    /// The input holds no hold marker of its own, so markers can be written.
    can_hold: bool,
}

/// Written in place of a removed element or comment that follows a text `<`: without
/// it, `<<embed ...>p` would become `<p`, a tag the next pass reads (found by fuzzing).
const SEPARATOR: &str = "<!---->";

/// Whether the input byte before `at` is a `<`: text, since a tag cannot end in one. Read
/// from the source position rather than from a text handler, which would make lol_html
/// hand over every text chunk of the part (5% of `clean()`, measured).
fn after_lt(input: &[u8], at: std::ops::Range<usize>) -> bool {
    at.start
        .checked_sub(1)
        .and_then(|i| input.get(i))
        .is_some_and(|&b| b == b'<')
}

const DEADLINE_MSG: &str = "mailveil: time budget exceeded";

/// Rewrites an HTML part given in `encoding` (ASCII-compatible); output is in the same
/// encoding, and bytes of everything not rewritten are the input's bytes.
pub(crate) fn rewrite(
    input: &[u8],
    encoding: &'static encoding_rs::Encoding,
    ctx: &HtmlContext,
) -> Result<Outcome, HtmlError> {
    let state = RefCell::new(State::default());
    let bytes = run(input, encoding, ctx, &state, true)?;
    let st = state.into_inner();
    // A link held for its text can come back as it was (its text made it functional):
    // then nothing changed, and the part must stay as it is for the pass to be idempotent.
    let changed = st.changed && bytes != input;
    Ok(Outcome {
        bytes: changed.then_some(bytes),
        findings: st.findings,
    })
}

fn run(
    input: &[u8],
    encoding: &'static encoding_rs::Encoding,
    ctx: &HtmlContext,
    state: &RefCell<State>,
    top: bool,
) -> Result<Vec<u8>, HtmlError> {
    let banner = top && ctx.policy.banner;
    state.borrow_mut().can_hold = holds::can_hold(input);
    let ascii =
        AsciiCompatibleEncoding::new(encoding).unwrap_or_else(AsciiCompatibleEncoding::utf_8);
    let source = elements::Source::new(input, ascii == AsciiCompatibleEncoding::utf_8());
    let mut out = Vec::with_capacity(input.len());
    let mut settings = Settings::new()
        .with_encoding(ascii)
        .with_strict(true)
        .with_memory_settings(
            MemorySettings::new()
                .with_max_allowed_memory_usage(ctx.policy.limits.html_memory_bytes),
        )
        .append_element_content_handler(element!("*", |el| {
            state.borrow_mut().after_lt = after_lt(input, el.source_location().bytes());
            elements::on_element(el, source, ctx, state)
        }))
        .append_element_content_handler(text!("style", |t| on_style_text(t, ctx, state)))
        .append_element_content_handler(text!("noscript", |t| on_noscript_text(t, ctx, state)))
        .append_element_content_handler(text!("a", |t| {
            links::on_anchor_text(t, state);
            Ok(())
        }))
        .append_document_content_handler(doc_comments!(|c| {
            state.borrow_mut().after_lt = after_lt(input, c.source_location().bytes());
            on_comment(c, ctx, state)
        }));
    if banner {
        settings = settings
            .append_element_content_handler(element!("html[lang]", |el| {
                state.borrow_mut().lang = el.get_attribute("lang");
                Ok(())
            }))
            .append_element_content_handler(element!("body", |el| {
                let mut st = state.borrow_mut();
                if !st.saw_body {
                    st.saw_body = true;
                    el.prepend(banner::SLOT, ContentType::Html);
                }
                Ok(())
            }))
            .append_element_content_handler(element!("[data-mailveil-banner]", |_el| {
                state.borrow_mut().saw_banner = true;
                Ok(())
            }))
            .append_element_content_handler(element!(banner::LAYOUT_ELEMENTS, |el| {
                banner::on_layout_element(el, state);
                Ok(())
            }));
    }
    let mut rewriter = HtmlRewriter::new(settings, |chunk: &[u8]| out.extend_from_slice(chunk));
    let result = rewriter.write(input).and_then(|()| rewriter.end());
    result.map_err(|e| match e {
        lol_html::errors::RewritingError::ContentHandlerError(err)
            if err.to_string() == DEADLINE_MSG =>
        {
            HtmlError::Deadline
        }
        other => HtmlError::Refused(other.to_string()),
    })?;
    links::finish(&mut out, ctx, state, encoding);
    holds::finish(&mut out, state);
    if banner {
        let mut st = state.borrow_mut();
        let note = if st.saw_banner {
            None
        } else {
            let lang = st.lang.as_deref().or(ctx.language);
            banner::html(&st.findings, st.links_cleaned, st.widest, lang)
        };
        let layout = st.layout_slots.checked_sub(1);
        if !banner::fill(&mut out, note.as_deref(), layout)
            && let Some(note) = &note
        {
            out.splice(0..0, note.bytes());
        }
        if note.is_some() {
            st.changed = true;
        }
    }
    Ok(out)
}

/// Rewrites a fragment of HTML found inside a comment or raw text (Outlook conditional
/// comments, `<noscript>`), inheriting what the outer pass learned. `None`: unchanged.
fn rewrite_fragment(
    html: &str,
    ctx: &HtmlContext,
    outer: &RefCell<State>,
) -> Result<Option<String>, HtmlError> {
    let inner = {
        let o = outer.borrow();
        RefCell::new(State {
            base: o.base.clone(),
            sheets: o.sheets.clone(),
            ..State::default()
        })
    };
    let bytes = run(html.as_bytes(), encoding_rs::UTF_8, ctx, &inner, false)?;
    let inner = inner.into_inner();
    let mut o = outer.borrow_mut();
    o.findings.extend(inner.findings);
    o.links_cleaned += inner.links_cleaned;
    Ok(inner
        .changed
        .then(|| String::from_utf8_lossy(&bytes).into_owned()))
}

/// `<style>` text arrives in chunks: buffer to the last one, then rewrite the sheet.
fn on_style_text(
    t: &mut TextChunk,
    ctx: &HtmlContext,
    state: &RefCell<State>,
) -> lol_html::HandlerResult {
    let mut st = state.borrow_mut();
    if !t.last_in_text_node() {
        st.style_buf.push_str(t.as_str());
        t.remove();
        return Ok(());
    }
    let split = !st.style_buf.is_empty();
    let mut sheet = std::mem::take(&mut st.style_buf);
    sheet.push_str(t.as_str());
    let base = st.base.clone();
    let mut findings = Vec::new();
    // One sheet can hold a million URLs: read the clock every 256 of them (issue 8).
    let (mut seen, mut late) = (0u32, false);
    let scan = css::scan_with(&sheet, &mut |ev| {
        seen = seen.wrapping_add(1);
        late = late || (seen.is_multiple_of(256) && Instant::now() > ctx.deadline);
        if late {
            return css::CssDecision::Keep;
        }
        css_event(ev, None, &base, ctx, &mut findings)
    });
    if late {
        return Err(DEADLINE_MSG.into());
    }
    if !scan.rules.is_empty() {
        std::rc::Rc::make_mut(&mut st.sheets).learn(&scan.rules);
    }
    st.findings.extend(findings);
    match scan.apply(&sheet) {
        Some(new) => {
            t.replace(&new, ContentType::Html);
            st.changed = true;
        }
        None if split => t.replace(&sheet, ContentType::Html),
        None => {}
    }
    Ok(())
}

/// `<noscript>` is raw text to lol_html but markup to a mail client with scripts off.
fn on_noscript_text(
    t: &mut TextChunk,
    ctx: &HtmlContext,
    state: &RefCell<State>,
) -> lol_html::HandlerResult {
    let buffered = {
        let mut st = state.borrow_mut();
        st.raw_text_buf.push_str(t.as_str());
        if !t.last_in_text_node() {
            t.remove();
            return Ok(());
        }
        std::mem::take(&mut st.raw_text_buf)
    };
    let split = buffered.len() != t.as_str().len();
    match rewrite_fragment(&buffered, ctx, state) {
        Ok(Some(new)) => {
            t.replace(&new, ContentType::Html);
            state.borrow_mut().changed = true;
        }
        Ok(None) if split => t.replace(&buffered, ContentType::Html),
        Ok(None) => {}
        Err(HtmlError::Deadline) => return Err(DEADLINE_MSG.into()),
        Err(HtmlError::Refused(_)) => {
            t.remove();
            state.borrow_mut().changed = true;
        }
    }
    Ok(())
}

/// Outlook reads markup inside `<!--[if mso]> ... <![endif]-->` (VML backgrounds,
/// buttons); rewrite it like the rest.
fn on_comment(
    c: &mut Comment,
    ctx: &HtmlContext,
    state: &RefCell<State>,
) -> lol_html::HandlerResult {
    let after_lt = state.borrow().after_lt;
    let text = c.text();
    let Some((head, inner, tail)) = split_conditional(&text) else {
        return Ok(());
    };
    if !fragment_may_fetch(inner) {
        return Ok(()); // `<table><tr><td>` scaffolding: most conditional comments
    }
    let (findings_before, links_before) = {
        let st = state.borrow();
        (st.findings.len(), st.links_cleaned)
    };
    match rewrite_fragment(inner, ctx, state) {
        Ok(Some(new)) => {
            if c.set_text(&format!("{head}{new}{tail}")).is_err() {
                remove_comment(c, after_lt);
                // What the fragment found went with it, as when it is refused: a URL it
                // kept is shown nowhere now, and counted as shown it kept a held copy
                // that the next pass removes (found by fuzzing: not idempotent).
                let mut st = state.borrow_mut();
                st.findings.truncate(findings_before);
                st.links_cleaned = links_before;
            }
            state.borrow_mut().changed = true;
        }
        Ok(None) => {}
        Err(HtmlError::Deadline) => return Err(DEADLINE_MSG.into()),
        Err(HtmlError::Refused(_)) => {
            remove_comment(c, after_lt);
            state.borrow_mut().changed = true;
        }
    }
    Ok(())
}

fn remove_comment(c: &mut Comment, after_lt: bool) {
    if after_lt {
        c.replace(SEPARATOR, ContentType::Html);
    } else {
        c.remove();
    }
}

/// Whether a fragment could make a client fetch or run anything: a URL needs an
/// attribute value (`=`), a CSS function (`(`) or an at-rule (`@import "..."`); without
/// any of them only an element that is active by itself could. A fragment without
/// these is left as it is, without a rewriter of its own.
fn fragment_may_fetch(html: &str) -> bool {
    if html.bytes().any(|b| matches!(b, b'=' | b'(' | b'@')) {
        return true;
    }
    // `<` then a tag name, at each `<`: a `format!` of `<{tag}` per tag and fragment
    // was a quarter of the formatting in the corpus's HTML passes (issue 17).
    let lower = html.to_ascii_lowercase();
    memchr::memchr_iter(b'<', lower.as_bytes()).any(|i| {
        let after = &lower.as_bytes()[i + 1..];
        elements::ACTIVE_TAGS
            .iter()
            .any(|t| after.starts_with(t.as_bytes()))
    })
}

/// `[if mso]>` + markup + `<![endif]` of a downlevel-hidden conditional comment.
fn split_conditional(text: &str) -> Option<(&str, &str, &str)> {
    let trimmed = text.trim_start();
    if !trimmed.get(..3)?.eq_ignore_ascii_case("[if") {
        return None;
    }
    // The condition ends at the first `]>`, with no markup before it. Without one
    // (`<!--[if<img ...>`, or a `]]>` further on), no client is known to read the rest
    // as markup; rewrite it as markup anyway, all of it (fail closed; found by fuzzing).
    let start = text.len() - trimmed.len() + 3;
    let open = match text[start..].find(['<', '>']) {
        Some(i) if text[start..start + i].ends_with(']') && text.as_bytes()[start + i] == b'>' => {
            start + i + 1
        }
        _ => start,
    };
    let close = text
        .rfind("<![endif]")
        .filter(|&c| c >= open && text[c + 9..].trim().is_empty())
        .unwrap_or(text.len());
    Some((&text[..open], &text[open..close], &text[close..]))
}

/// Decides a CSS event: from the `style` attribute of `tag`, or with no tag from a
/// `<style>` sheet.
fn css_event(
    ev: css::CssEvent,
    tag: Option<&str>,
    base: &Base,
    ctx: &HtmlContext,
    findings: &mut Vec<Finding>,
) -> css::CssDecision {
    match ev {
        css::CssEvent::Active { what } => {
            findings.push(finding(
                ctx,
                FindingKind::ActiveContent,
                Location::css(LocationKind::CssScript, tag, None),
                None,
                format!("css:{what}"),
                None,
                Action::Strip,
            ));
            css::CssDecision::Remove
        }
        css::CssEvent::Url { url, property } => {
            let Some(remote) = remote_url(url, base) else {
                return css::CssDecision::Keep;
            };
            let kind = css_url_kind(property);
            let fetch = if kind == LocationKind::CssImport {
                Fetch::Other
            } else {
                Fetch::Image { sized: false }
            };
            let loc = Location::css(kind, tag, Some(property));
            let f = fetch_verdict(&remote, fetch, loc, ctx);
            let decision = match f.action {
                Action::Strip => css::CssDecision::Remove,
                _ => match proxied_url(&f, ctx) {
                    Some(p) => css::CssDecision::Replace(p),
                    None => css::CssDecision::Keep,
                },
            };
            findings.push(f);
            decision
        }
    }
}

/// The kind of place of a URL in CSS, by the property the scanner gives it: a style
/// sheet for `@import`, an image for anything else. Mail and the proxy's sheets both.
pub(crate) fn css_url_kind(property: &str) -> LocationKind {
    if property == "@import" {
        LocationKind::CssImport
    } else {
        LocationKind::CssUrl
    }
}

/// The verdict on a remote URL in a place that fetches on open: a tracker is stripped;
/// other content follows the remote-content policy. A URL of our own proxy is judged by
/// the URL it carries (the finding names that URL), one it carries none of is stripped.
fn fetch_verdict(
    remote: &RemoteUrl,
    fetch: Fetch,
    location: Location,
    ctx: &HtmlContext,
) -> Finding {
    let remote = match unwrap_own(Cow::Borrowed(remote), ctx) {
        Ok(r) => r,
        Err(()) => {
            return finding(
                ctx,
                FindingKind::RemoteContent,
                location,
                None,
                "proxy:unreadable".into(),
                None,
                Action::Strip,
            );
        }
    };
    let url = Some(remote.url.as_str().to_owned());
    if let Some(id) = ctx.rules.allowed_url(remote.host(), remote.url.as_str()) {
        return finding(
            ctx,
            FindingKind::RemoteContent,
            location,
            url,
            format!("allow:{id}"),
            None,
            Action::Keep,
        );
    }
    match ctx.detector.tracker_for(&remote, fetch) {
        Some(v) => finding(ctx, v.kind, location, url, v.rule, v.tracker, Action::Strip),
        None => {
            let action = match (ctx.policy.remote_content, &ctx.policy.proxy) {
                (RemoteContent::Keep, _) => Action::Keep,
                (RemoteContent::Proxy, Some(_)) => Action::Proxy,
                (RemoteContent::Prefetch, Some(_)) => Action::Prefetch,
                // Proxying without a proxy configured: nothing may fetch on open.
                (RemoteContent::Strip | RemoteContent::Proxy | RemoteContent::Prefetch, _) => {
                    Action::Strip
                }
            };
            finding(
                ctx,
                FindingKind::RemoteContent,
                location,
                url,
                "policy:remote-content".into(),
                None,
                action,
            )
        }
    }
}

/// How many proxy URLs inside one another are read before giving up (the proxy never
/// signs one of its own URLs, so more than one level is crafted).
pub(crate) const MAX_OWN_NESTING: usize = 4;

/// The URL a remote URL stands for: itself, or, for a URL of our own proxy (whoever
/// signed it), the URL it carries. A signature is no reason to trust a URL in incoming
/// mail: anyone with a mailbox here can have one made for a tracker (issue 14), so what
/// it carries is judged like any other URL, then signed again or stripped. `Err`: a URL
/// of our proxy that carries nothing readable (it could only fail there).
/// A URL that is not ours comes back as it was given, borrowed or owned: most are not,
/// and copying each to judge it was wasted (issue 17).
pub(super) fn unwrap_own<'r>(
    remote: Cow<'r, RemoteUrl>,
    ctx: &HtmlContext,
) -> Result<Cow<'r, RemoteUrl>, ()> {
    let Some(cfg) = &ctx.policy.proxy else {
        return Ok(remote);
    };
    let mut current = remote;
    for _ in 0..MAX_OWN_NESTING {
        match crate::proxy_url::own(cfg, current.url.as_str()) {
            crate::proxy_url::Own::No => return Ok(current),
            crate::proxy_url::Own::Unreadable => return Err(()),
            crate::proxy_url::Own::Carries { url, .. } => {
                current = Cow::Owned(remote_url(&url, &None).ok_or(())?);
            }
        }
    }
    Err(())
}

/// The proxy URL that replaces a remote URL the verdict sends through the proxy: an
/// image (`/i/`) or a stylesheet (`/s/`) of the URL the finding judged, by the kind of
/// its location (the proxy prefetches by the same).
fn proxied_url(f: &Finding, ctx: &HtmlContext) -> Option<String> {
    if !matches!(f.action, Action::Proxy | Action::Prefetch) {
        return None;
    }
    let cfg = ctx.policy.proxy.as_ref()?;
    let kind = f.location.kind().proxy_kind()?;
    Some(crate::proxy_url::proxied(cfg, kind, f.url.as_deref()?))
}

fn finding(
    ctx: &HtmlContext,
    kind: FindingKind,
    location: Location,
    url: Option<String>,
    rule: String,
    tracker: Option<String>,
    action: Action,
) -> Finding {
    Finding {
        kind,
        part: ctx.part.to_string(),
        location,
        url,
        rule,
        tracker,
        action,
        params: Vec::new(),
    }
}

/// Escapes a value for a double-quoted attribute (lol_html escapes only `"`). `"` too:
/// link URLs decided at the end of the pass are written over a marker inside lol_html's
/// quotes, not through `set_attribute`, and a `"` there would end the attribute (found
/// by fuzzing). One pass into one string: this runs for every URL written.
fn escape_attr(value: &str) -> String {
    let bytes = value.as_bytes();
    // The next special byte from `from`: found with memchr rather than byte by byte
    // (every rewritten URL is escaped, issue 17); `"` only before the next of the others.
    let next = |from: usize| {
        let rest = &bytes[from..];
        let other = memchr::memchr3(b'&', b'<', b'>', rest);
        memchr::memchr(b'"', &rest[..other.unwrap_or(rest.len())])
            .or(other)
            .map(|i| from + i)
    };
    let mut out = String::with_capacity(value.len() + 16);
    let mut at = 0;
    while let Some(i) = next(at) {
        out.push_str(&value[at..i]);
        out.push_str(match bytes[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            _ => "&quot;",
        });
        at = i + 1;
    }
    out.push_str(&value[at..]);
    out
}

/// Decodes entities of an attribute value as a browser would.
fn unescape_attr(value: &str) -> String {
    unescape_attr_in_place(value).into_owned()
}

/// [`unescape_attr`], borrowing the value when it holds no entity (most do).
fn unescape_attr_in_place(value: &str) -> Cow<'_, str> {
    htmlize::unescape_attribute(value)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod deadline_tests {
    use super::*;

    /// Issue 8: a 20 MB `<style>` sheet of URLs was scanned to its end past the budget.
    #[test]
    fn a_style_sheet_of_urls_gives_up_at_the_deadline() {
        let rules = crate::rules::Rules::default();
        let detector = Detector::new(&rules, ["reader@example.org"]);
        let policy = Policy::default();
        let ctx = |deadline| HtmlContext {
            detector: &detector,
            rules: &rules,
            list_unsubscribe: &[],
            policy: &policy,
            part: "1",
            deadline,
            language: None,
        };
        let mut html = String::from("<style>");
        for i in 0..300 {
            html.push_str(&format!(
                ".c{i}{{background:url(https://cdn.example/{i}.png)}}"
            ));
        }
        html.push_str("</style><p>x</p>");
        let past = ctx(Instant::now());
        let r = rewrite(html.as_bytes(), encoding_rs::UTF_8, &past);
        assert_eq!(r.err(), Some(HtmlError::Deadline));
        let later = ctx(Instant::now() + std::time::Duration::from_secs(60));
        assert!(rewrite(html.as_bytes(), encoding_rs::UTF_8, &later).is_ok());
    }
}

#[cfg(test)]
mod escape_tests {
    /// Issue 17: `escape_attr` in one pass must give what the four replacements gave.
    fn by_replacements(value: &str) -> String {
        value
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }

    proptest::proptest! {
        /// The search at each `<` finds what a search for each `<tag` found (issue 17).
        #[test]
        fn fragment_may_fetch_finds_what_a_search_per_tag_found(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "<", "<<", "script", "SCRIPT", "<ifr", "ame", "iframe", "frame", "em", "bed",
                    "<Embed", "object", "x", " ", "<p>", "applet", "\u{e9}", "<\u{e9}",
                ]),
                0..10,
            ),
        ) {
            let html = pieces.concat();
            let lower = html.to_ascii_lowercase();
            let per_tag = super::elements::ACTIVE_TAGS
                .iter()
                .any(|t| lower.contains(&format!("<{t}")));
            let active = html.bytes().any(|b| matches!(b, b'=' | b'(' | b'@')) || per_tag;
            proptest::prop_assert_eq!(super::fragment_may_fetch(&html), active);
        }

        #[test]
        fn escape_attr_is_the_four_replacements(value in "[a&<>\"'é;=/ ]{0,24}") {
            proptest::prop_assert_eq!(super::escape_attr(&value), by_replacements(&value));
        }
    }

    #[test]
    fn escape_attr_escapes_every_special_byte() {
        assert_eq!(
            super::escape_attr(r#"a&b<c>d"e&amp;"#),
            "a&amp;b&lt;c&gt;d&quot;e&amp;amp;"
        );
        assert_eq!(super::escape_attr("é"), "é");
    }
}

#[cfg(test)]
mod fragment_tests {
    use super::fragment_may_fetch;

    #[test]
    fn only_scaffolding_is_left_without_a_rewrite() {
        assert!(!fragment_may_fetch("<table><tr><td>"));
        assert!(!fragment_may_fetch("</td></tr></table>\n"));
        assert!(fragment_may_fetch(
            r#"<v:fill src="https://t.example/o.gif"/>"#
        ));
        assert!(fragment_may_fetch(
            "<style>@import 'https://t.example/a.css';</style>"
        ));
        assert!(fragment_may_fetch("<div style=background:url(x)>"));
        assert!(fragment_may_fetch("<SCRIPT>alert`1`</SCRIPT>"));
        assert!(fragment_may_fetch("<IFrame srcdoc>"));
    }
}

#[cfg(test)]
mod duplicate_attribute_tests {
    use crate::{Envelope, Policy, RemoteContent, clean, rules::Rules};

    fn strip(html: &str) -> String {
        let raw = format!(
            "From: a@sender.example\r\nTo: reader@example.org\r\nContent-Type: text/html\r\n\r\n{html}\r\n"
        );
        let policy = Policy {
            remote_content: RemoteContent::Strip,
            ..Policy::default()
        };
        let rules = Rules::compile(&[]).unwrap();
        let out = clean(
            raw.as_bytes(),
            &Envelope::to(["reader@example.org"]),
            &policy,
            &rules,
        );
        String::from_utf8(out.bytes).unwrap()
    }

    #[test]
    fn a_second_src_is_dropped_not_left_behind() {
        let out = strip(r#"<img src="cid:a" alt=x src="https://t.example/o.gif">"#);
        assert!(!out.contains("t.example"), "{out}");
        assert!(out.contains(r#"src="cid:a""#), "{out}");
        // Idempotent: the second pass finds nothing more to do.
        assert_eq!(
            strip(out.split("\r\n\r\n").nth(1).unwrap().trim_end())
                .split("\r\n\r\n")
                .nth(1),
            out.split("\r\n\r\n").nth(1)
        );
    }

    #[test]
    fn every_source_of_an_image_is_judged() {
        // Found by the clean_bytes fuzz target: `src` stripped on the first pass made
        // the `href` behind it the image's source on the second.
        let out = strip(
            r#"<p>x</p><img src="https://cdn.example/a.png" href="https://t.example/o.gif?e=reader@example.org">"#,
        );
        assert!(!out.contains("<img"), "{out}");
        assert!(out.contains("recipient-token=1"), "{out}");
        let body = out.split("\r\n\r\n").nth(1).unwrap().trim_end();
        let again = strip(body);
        assert_eq!(
            again.split("\r\n\r\n").nth(1),
            Some(format!("{body}\r\n").as_str())
        );
    }

    #[test]
    fn junk_href_and_manifest_go_under_strip() {
        let out = strip(
            r#"<a href="x" manifest="https://t.example/m">a</a><p <link href="https://t.example/s.css">p</p>"#,
        );
        assert!(!out.contains("t.example"), "{out}");
        assert!(out.contains(">p</p>"), "{out}");
    }

    #[test]
    fn a_quote_in_a_held_link_stays_inside_its_attribute() {
        // Found by the clean_mime fuzz target: a URL decided at the end of the pass is
        // written over a marker inside lol_html's double quotes.
        let out =
            strip(r#"<a href='https://a.example/?x="1"&amp;e=reader@example.org' onclick=x>a</a>"#);
        assert!(
            out.contains(r#"href="https://a.example/?x=&quot;1&quot;""#),
            "{out}"
        );
        assert!(!out.contains("onclick"), "{out}");
    }

    #[test]
    fn noscript_inside_a_held_link_is_still_rewritten() {
        // Found by the clean_mime fuzz target: the link's text handler replaced the
        // chunk the noscript handler had rewritten.
        let out = strip(
            r#"<a href="https://x.example/?e=reader@example.org">see <noscript><img src="https://t.example/ns.gif"></noscript></a>"#,
        );
        assert!(!out.contains("t.example"), "{out}");
        assert!(!out.contains("reader@example.org\""), "{out}");
    }

    #[test]
    fn text_after_a_held_link_is_not_its_text() {
        // Found by the clean_mime fuzz target: links inside a removed element get no
        // handler, and their text ("Unsubscribe") went to the link before them.
        let out = strip(
            r#"<a href="https://shop.example/i?e=reader@example.org&amp;id=7">item</a><frameset><a href="https://n.example/u">Unsubscribe</a></frameset>"#,
        );
        assert!(
            out.contains(r#"<a href="https://shop.example/i?id=7">item</a>"#),
            "{out}"
        );
    }

    #[test]
    fn an_element_with_many_repeated_names_goes() {
        let attrs: String = (0..40).map(|i| format!(" a{i}=1 a{i}=2")).collect();
        let out = strip(&format!("<p>keep</p><div{attrs}>x</div>"));
        assert!(!out.contains("a39"), "{out}");
        assert!(out.contains("<p>keep</p>"));
    }
}

#[cfg(test)]
mod held_link_tests {
    use crate::{Envelope, Policy, clean, rules::Rules};

    /// Found by the clean_bytes fuzz target: a link whose parameters would go waits for
    /// its text; functional text puts it back as it was. A second pass must then see no
    /// change at all, or it rewrites the X-Mailveil header with an empty report.
    #[test]
    fn a_held_link_put_back_as_it_was_is_no_change() {
        let rules = Rules::compile(&[crate::rules::RuleSource {
            name: "t.toml".into(),
            text: "[[param]]\nid = \"eid\"\nsource = \"test\"\nnames = [\"mc_eid\"]\nclass = \"subscriber\"\n".into(),
        }])
        .unwrap();
        let raw = "From: a@sender.example\r\nTo: reader@example.org\r\nContent-Type: text/html\r\n\r\n\
            <img src=\"https://t.example/o.gif\" width=\"1\" height=\"1\">\
            <a href=\"https://shop.example/?mc_eid=x\">Wypisz</a>\r\n";
        let env = Envelope::to(["reader@example.org"]);
        let once = clean(raw.as_bytes(), &env, &Policy::default(), &rules);
        let out = String::from_utf8_lossy(&once.bytes).into_owned();
        assert!(out.starts_with("X-Mailveil: v=0.1.0; pixel=1"), "{out}");
        assert!(
            out.contains("\"https://shop.example/?mc_eid=x\">Wypisz"),
            "{out}"
        );
        let twice = clean(&once.bytes, &env, &Policy::default(), &rules);
        assert_eq!(twice.bytes, once.bytes);
    }
}
