//! The element handler: every tag and attribute that fetches on open.

use super::visibility::{ImageAttrs, invisible, visible_size};
use super::{
    DEADLINE_MSG, HtmlContext, SEPARATOR, State, css, css_event, escape_attr, fetch_verdict,
    finding, proxied_url, unescape_attr, unescape_attr_in_place, unwrap_own,
};
use crate::detect::{Base, Fetch, RemoteUrl, remote_url};
use crate::report::{Action, FindingKind, Location, LocationKind};
use lol_html::HandlerResult;
use lol_html::html_content::{ContentType, Element};
use std::borrow::Cow;
use std::cell::RefCell;
use std::time::Instant;
use url::Url;

/// Elements that run code or embed documents: always removed, content and all.
pub(super) const ACTIVE_TAGS: &[&str] = &[
    "script",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "bgsound",
    "portal",
    "fencedframe",
];

/// `<link rel>` values that make a client fetch without showing anything.
const HINT_RELS: &[&str] = &[
    "prefetch",
    "preload",
    "dns-prefetch",
    "preconnect",
    "prerender",
    "modulepreload",
    "icon",
    "shortcut",
    "apple-touch-icon",
    "apple-touch-icon-precomposed",
    "mask-icon",
    "manifest",
    "alternate",
    "search",
    "pingback",
    "import",
    "subresource",
    "next",
    "prev",
];

/// The kind of place an attribute of [`FETCH_ATTRS`] (or a fetching `href`) is.
fn fetch_kind(attr: &str) -> LocationKind {
    match attr {
        "poster" => LocationKind::Poster,
        "background" => LocationKind::Background,
        _ => LocationKind::Source,
    }
}

/// Attributes that fetch what they name when the element is shown.
const FETCH_ATTRS: &[&str] = &[
    "src",
    "lowsrc",
    "dynsrc",
    "poster",
    "background",
    "data",
    "codebase",
    "xlink:href",
];

/// Whether an element's `href` is something other than a link: SVG's `<image>`,
/// `<use>`... fetch it on open, and on any other element but a link it is junk that
/// carries a URL (and must not become an image's source on a later pass). `<a>`,
/// `<area>` and VML buttons are links (`links`); `<link>` and `<base>` are handled apart.
fn href_may_fetch(tag: &str) -> bool {
    !matches!(tag, "a" | "area" | "link" | "base") && !tag.starts_with("v:")
}

/// Check the clock every this many elements.
const CLOCK_EVERY: u32 = 256;

pub(super) fn on_element(
    el: &mut Element,
    source: Source,
    ctx: &HtmlContext,
    state: &RefCell<State>,
) -> HandlerResult {
    tick(ctx, state)?;
    if el.removed() {
        return Ok(()); // inside an element removed with its content: never written
    }
    let tag = source.tag_name(el);
    let attrs = Attrs::read(el, source);
    // Whether this element changes, apart from the ones before it.
    let before = std::mem::replace(&mut state.borrow_mut().changed, false);
    let result = judge(el, &tag, &attrs, ctx, state);
    let mut st = state.borrow_mut();
    // The findings of a held image end here (see `super::holds`).
    let end = st.findings.len();
    if let Some(h) = st.holds.last_mut()
        && h.findings.end == usize::MAX
    {
        h.findings.end = end;
    }
    // Junk names carrying markup or a URL (`<a "="<img src=`) mean nothing to a browser
    // but are what a lenient reader may take for a tag: they go even when nothing else
    // on the element changes (found by the property test).
    st.changed |= attrs.hide_markup();
    if st.changed && !el.removed() {
        drop_junk_names(el, &attrs);
    }
    st.changed |= before;
    result
}

/// Removes an element, content and all, keeping a text `<` before it from joining what
/// follows it into a new tag.
fn remove(el: &mut Element, state: &RefCell<State>) {
    if el.can_have_content() {
        // Its text still reaches the text handlers, but is never written: it is not the
        // text of a link around it (an unclosed `<a>` before a `<frameset>` took an
        // "Unsubscribe" inside it for its own; found by fuzzing).
        state.borrow().anchor.set(None);
    }
    if state.borrow().after_lt {
        el.replace(SEPARATOR, ContentType::Html);
    } else {
        el.remove();
    }
}

/// A changed start tag is written anew from its attribute list. Names that are not
/// plain (`?x=1<link`, bytes invalid in the part's charset, `host.example` left by a
/// broken quote) do not come back the same from that, and the next pass would read
/// another tag: they go. No client gives such a name a meaning. From a junk name that
/// carries markup or a URL on, the rest of the tag is what a lenient reader may take for
/// other tags (`<a "="<img src="http://t/p">` reads as names `https:`, `t`, `p` to a
/// browser): all of it goes. A `<` in a value kept is written `&lt;`, the same value to
/// a browser, no tag to a reader that looks for tags in the text (`alt="<img src=..."`).
fn drop_junk_names(el: &mut Element, attrs: &Attrs) {
    let dropped: Vec<&str> = attrs
        .list
        .iter()
        .map(|(n, _)| n.as_ref())
        .filter(|n| !plain_name(n) || !attrs.names().any(|j| j == *n))
        .collect();
    for name in &dropped {
        el.remove_attribute(name);
    }
    let keep = |n: &str| plain_name(n) && !dropped.contains(&n);
    let quote = |v: &str| v.replace('"', "&quot;").replace('<', "&lt;");
    // lol_html refuses to remove some names (one starting with `=`, bytes it cannot
    // encode back) and writes the rest joined by spaces: `a/="x` comes out as `a ="x`,
    // which the next pass reads as a value of `a` (found by fuzzing). Write the start
    // tag ourselves then, from the names kept only.
    if el.attributes().iter().any(|a| !keep(&a.name())) {
        let mut tag = format!("<{}", el.tag_name());
        for a in el.attributes().iter().filter(|a| keep(&a.name())) {
            tag.push(' ');
            tag.push_str(&a.name());
            tag.push_str("=\"");
            tag.push_str(&quote(&a.value()));
            tag.push('"');
        }
        if el.is_self_closing() {
            tag.push_str(" /");
        }
        tag.push('>');
        el.start_tag().replace(&tag, ContentType::Html);
        return;
    }
    let marked: Vec<(String, String)> = el
        .attributes()
        .iter()
        .filter(|a| a.value().contains('<'))
        .map(|a| (a.name(), quote(&a.value())))
        .collect();
    for (name, value) in marked {
        let _ = el.set_attribute(&name, &value);
    }
}

/// Whether an attribute value holds what a reader looking for tags takes for one.
fn holds_markup(value: &str) -> bool {
    // Runs on every value of every element: `split` finds each `<` by memchr.
    value.split('<').skip(1).any(|rest| {
        rest.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || matches!(b, b'/' | b'!' | b'?'))
    })
}

/// Whether `hay` holds `needle` (ASCII), whatever the case: without a lowercased copy
/// of every `style` attribute.
fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// An attribute name that serializes and parses back the same.
fn plain_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(plain_name_byte)
}

fn plain_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'_')
}

/// Everything the element handler decides for one element.
fn judge(
    el: &mut Element,
    tag: &str,
    attrs: &Attrs,
    ctx: &HtmlContext,
    state: &RefCell<State>,
) -> HandlerResult {
    if !dedupe_attrs(el, attrs, ctx, state) {
        return Ok(());
    }
    if ACTIVE_TAGS.contains(&tag) {
        let url = ["src", "data", "code", "codebase"]
            .iter()
            .find_map(|a| attrs.get(a))
            .map(unescape_attr);
        remove_element(
            el,
            state,
            ctx,
            FindingKind::ActiveContent,
            tag,
            url,
            format!("element:{tag}"),
        );
        return Ok(());
    }
    match tag {
        "meta" => meta(el, attrs, ctx, state),
        "base" => base(el, attrs, ctx, state),
        "link" => link(el, attrs, ctx, state),
        _ => {}
    }
    if el.removed() {
        return Ok(());
    }
    if attrs.is_empty() && !matches!(tag, "a" | "area") {
        return Ok(()); // nothing on it can fetch, hide or track
    }
    event_handlers(el, attrs, tag, ctx, state);
    // `manifest` fetches on `<html>`; anywhere else it is junk that carries a URL.
    if attrs.has("manifest") {
        strip_attr(
            el,
            attrs,
            state,
            ctx,
            tag,
            "manifest",
            FindingKind::Prefetch,
        );
    }
    track_hidden_container(el, attrs, tag, state);
    let mut seen = None;
    let mut fetch = Fetch::Image { sized: false };
    if is_image(attrs, tag) {
        match image(el, attrs, tag, ctx, state) {
            Image::Removed => return Ok(()),
            Image::Kept { src, sized } => {
                seen = src;
                fetch = Fetch::Image { sized };
            }
        }
    }
    // Most elements hold none of these: asked of the mask first, `fetch_attr` (a large
    // frame) is entered only for an attribute that is there (issue 17).
    for attr in FETCH_ATTRS.iter().filter(|a| attrs.has(a)) {
        let known = seen.take_if(|(a, _)| a == attr).map(|(_, r)| r);
        fetch_attr(el, attrs, tag, attr, (known, fetch), ctx, state);
    }
    if attrs.has("href") && href_may_fetch(tag) {
        let known = seen.take_if(|(a, _)| *a == "href").map(|(_, r)| r);
        fetch_attr(el, attrs, tag, "href", (known, fetch), ctx, state);
    }
    if matches!(tag, "a" | "area") || (tag.starts_with("v:") && attrs.has("href")) {
        resolve_link(el, attrs, tag, ctx, state);
        // Reads `href` again: resolve_link may have just rewritten it.
        super::links::on_link(el, tag, ctx, state);
    }
    for attr in ["srcset", "imagesrcset"] {
        srcset(el, attrs, tag, attr, fetch, ctx, state);
    }
    style_attr(el, attrs, tag, ctx, state);
    Ok(())
}

/// At most this many names given twice on one element are repaired; more is hostile
/// markup, and the element goes.
const MAX_DUPLICATE_NAMES: usize = 32;

/// An attribute given twice (`<img src=a src=b>`): browsers take the first, some
/// parsers the last, and lol_html's `set_attribute` rewrites only the first. Keep the
/// first and drop the rest, so that what is judged is what every client sees. Returns
/// whether the element stays.
fn dedupe_attrs(
    el: &mut Element,
    attrs: &Attrs,
    ctx: &HtmlContext,
    state: &RefCell<State>,
) -> bool {
    let dups = attrs.duplicates();
    if dups.is_empty() {
        return true;
    }
    if dups.len() > MAX_DUPLICATE_NAMES {
        let tag = el.tag_name();
        remove_element(
            el,
            state,
            ctx,
            FindingKind::ActiveContent,
            &tag,
            None,
            "heuristic:duplicate-attributes".into(),
        );
        return false;
    }
    for name in dups {
        let first = attrs.get(name).unwrap_or_default();
        el.remove_attribute(name);
        let _ = el.set_attribute(name, first);
    }
    state.borrow_mut().changed = true;
    true
}

/// The document lol_html reads, as given to it: attributes are read from it in place.
#[derive(Clone, Copy)]
pub(super) struct Source<'i> {
    bytes: &'i [u8],
    /// The whole document as text, when lol_html's reading of any part of it is its
    /// bytes as written: all ASCII (in any ASCII-compatible charset), or valid UTF-8
    /// read as UTF-8. Checked once here rather than for each attribute.
    text: Option<&'i str>,
    utf8: bool,
}

impl<'i> Source<'i> {
    /// `utf8`: whether lol_html decodes the document as UTF-8.
    pub(super) fn new(bytes: &'i [u8], utf8: bool) -> Self {
        let text = std::str::from_utf8(bytes)
            .ok()
            .filter(|t| utf8 || t.is_ascii());
        Source { bytes, text, utf8 }
    }

    /// The element's name as `tag_name()` gives it (lowercase), borrowed from the start
    /// tag where it is plain and ends where every reader ends it.
    fn tag_name(self, el: &Element) -> Cow<'i, str> {
        let start = el.source_location().bytes().start;
        let name = self
            .bytes
            .get(start + 1..)
            .and_then(|rest| {
                let end = rest.iter().position(|b| !plain_name_byte(*b))?;
                matches!(rest[end], b' ' | b'\t' | b'\n' | b'\x0c' | b'/' | b'>')
                    .then(|| std::str::from_utf8(&rest[..end]).ok())?
            })
            .filter(|n| !n.is_empty() && self.bytes[start] == b'<');
        let tag = match name {
            Some(n) if !n.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Borrowed(n),
            Some(n) => Cow::Owned(n.to_ascii_lowercase()),
            None => Cow::Owned(el.tag_name()),
        };
        debug_assert_eq!(tag, el.tag_name());
        tag
    }

    /// The text at `loc` as lol_html's own reading gives it, borrowed where that is the
    /// bytes as written. lol_html decodes with BOM sniffing, so a value that starts with
    /// U+FEFF is left to it (it drops the BOM).
    fn text(self, loc: Option<lol_html::html_content::SourceLocation>) -> Option<&'i str> {
        let range = loc?.bytes();
        let text = match self.text {
            // Attributes start and end at ASCII delimiters: always a char boundary.
            Some(doc) => doc.get(range)?,
            None => std::str::from_utf8(self.bytes.get(range)?)
                .ok()
                .filter(|t| t.is_ascii())?,
        };
        (!(self.utf8 && text.starts_with('\u{feff}'))).then_some(text)
    }
}

/// The element's attributes, read once. lol_html's `get_attribute` lowercases and
/// allocates the asked name and scans the list at every call; the handler asks for
/// some twenty names per element, most of them absent. Values keep their entities.
///
/// From a junk name that carries markup or a URL on (see [`drop_junk_names`]), the
/// attributes are not judged: they all go, and what is judged is what is left.
pub(super) struct Attrs<'i> {
    list: Vec<(Cow<'i, str>, Cow<'i, str>)>,
    /// Where the hidden markup starts (`list.len()` when there is none).
    cut: usize,
    /// [`name_bit`] of every name judged: most names asked for are absent, and a clear
    /// bit says so without comparing strings.
    mask: u64,
}

/// One of 64 bits for an attribute name, from its length and end bytes (a summary, not
/// an identity: names that share a bit are told apart by comparing them).
fn name_bit(name: &str) -> u64 {
    let b = name.as_bytes();
    let (first, last) = (b.first().copied(), b.last().copied());
    let mix = (b.len() as u32).wrapping_mul(7)
        ^ u32::from(first.unwrap_or(0))
        ^ u32::from(last.unwrap_or(0)).wrapping_mul(3);
    1 << (mix & 63)
}

/// One attribute as lol_html's `name()` and `value()` give it, borrowed from the
/// document where they can be: those two allocate a `String` each, for every attribute
/// of every element: a quarter of the allocations of `clean()` on the corpus.
fn read_attr<'i>(
    a: &lol_html::html_content::Attribute,
    source: Source<'i>,
) -> (Cow<'i, str>, Cow<'i, str>) {
    let name = match source.text(a.name_source_location()) {
        Some(n) if !n.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Borrowed(n),
        _ => Cow::Owned(a.name()),
    };
    let value = match a.value_source_location() {
        // Unchanged and written without a value (`<div hidden>`): lol_html's is empty.
        None if a.name_source_location().is_some() => Cow::Borrowed(""),
        loc => source
            .text(loc)
            .map_or_else(|| Cow::Owned(a.value()), Cow::Borrowed),
    };
    debug_assert_eq!(
        (name.as_ref(), value.as_ref()),
        (a.name().as_str(), a.value().as_str())
    );
    (name, value)
}

impl<'i> Attrs<'i> {
    fn read(el: &Element, source: Source<'i>) -> Attrs<'i> {
        let list: Vec<(Cow<'i, str>, Cow<'i, str>)> = el
            .attributes()
            .iter()
            .map(|a| read_attr(a, source))
            .collect();
        let cut = list
            .iter()
            .position(|(n, v)| {
                !plain_name(n) && [n, v].iter().any(|s| s.contains('<') || s.contains("://"))
            })
            .unwrap_or(list.len());
        let mask = list[..cut].iter().fold(0, |m, (n, _)| m | name_bit(n));
        Attrs { list, cut, mask }
    }

    /// The attributes judged: those before the hidden markup.
    fn judged(&self) -> &[(Cow<'i, str>, Cow<'i, str>)] {
        &self.list[..self.cut]
    }

    /// Whether the tag hides markup: a junk name carrying it, or a value holding it.
    fn hide_markup(&self) -> bool {
        self.cut < self.list.len() || self.judged().iter().any(|(_, v)| holds_markup(v))
    }

    /// The first value of `name` (lowercase), as written.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        if self.mask & name_bit(name) == 0 {
            return None;
        }
        self.judged()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.mask & name_bit(name) != 0 && self.judged().iter().any(|(n, _)| n == name)
    }

    fn is_empty(&self) -> bool {
        self.judged().is_empty()
    }

    /// Plain attribute names (the only ones a client acts on) given more than once,
    /// each once, in order of first appearance. Garbage names are left alone: rewriting
    /// them would re-serialize bytes that are not valid in the part's charset, and two
    /// different invalid names could come out the same on the next pass.
    fn duplicates(&self) -> Vec<&str> {
        let l = &self.list;
        // The common case, a few attributes: compare pairs, allocate nothing.
        if l.len() <= 8 && !(1..l.len()).any(|i| l[..i].iter().any(|(n, _)| *n == l[i].0)) {
            return Vec::new();
        }
        let mut seen = std::collections::HashSet::with_capacity(self.list.len());
        let mut dups: Vec<&str> = Vec::new();
        for (n, _) in self.list.iter().filter(|(n, _)| plain_name(n)) {
            if !seen.insert(n.as_ref()) && !dups.contains(&n.as_ref()) {
                dups.push(n);
                if dups.len() > MAX_DUPLICATE_NAMES {
                    break;
                }
            }
        }
        dups
    }

    /// The names judged.
    fn names(&self) -> impl Iterator<Item = &str> {
        self.judged().iter().map(|(n, _)| n.as_ref())
    }
}

/// An element that hides its content raises the hidden depth until its end tag: an image
/// inside it cannot be seen, but a client still fetches it: a pixel.
fn track_hidden_container(el: &mut Element, attrs: &Attrs, tag: &str, state: &RefCell<State>) {
    if !el.can_have_content() || el.is_self_closing() {
        return;
    }
    let (style, class, id) = (
        attrs.get("style").map(unescape_attr_in_place),
        attrs.get("class"),
        attrs.get("id"),
    );
    let hides = {
        let st = state.borrow();
        let element = super::visibility::Element {
            tag,
            style: style.as_deref(),
            class,
            id,
            hidden: attrs.has("hidden"),
        };
        super::visibility::hides_content(&element, &st.sheets).is_some()
    };
    if !hides {
        return;
    }
    let depth = std::rc::Rc::clone(&state.borrow().hidden_depth);
    let on_end = std::rc::Rc::clone(&depth);
    let registered = el.end_tag_handlers().map(|handlers| {
        handlers.push(Box::new(move |_end| {
            on_end.set(on_end.get().saturating_sub(1));
            Ok(())
        }));
    });
    if registered.is_some() {
        depth.set(depth.get() + 1);
    }
}

fn tick(ctx: &HtmlContext, state: &RefCell<State>) -> HandlerResult {
    let mut st = state.borrow_mut();
    st.elements = st.elements.wrapping_add(1);
    if st.elements.is_multiple_of(CLOCK_EVERY) && Instant::now() > ctx.deadline {
        return Err(DEADLINE_MSG.into());
    }
    Ok(())
}

fn is_image(attrs: &Attrs, tag: &str) -> bool {
    match tag {
        "img" | "image" | "feimage" => true,
        "input" => attrs
            .get("type")
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("image")),
        _ => false,
    }
}

/// What [`image`] did.
enum Image {
    Removed,
    /// The element stays (or is held); the remote URL of its source attribute, when it
    /// has one, so that the attribute pass does not parse it again; whether it is given
    /// a size a reader would see.
    Kept {
        src: Option<(&'static str, RemoteUrl)>,
        sized: bool,
    },
}

/// An image element: a tracker or an invisible image goes whole; a content image keeps
/// its place (and alt text) and loses its URL only under `strip`.
fn image(
    el: &mut Element,
    attrs: &Attrs,
    tag: &str,
    ctx: &HtmlContext,
    state: &RefCell<State>,
) -> Image {
    let base = state.borrow().base.clone();
    let style = attrs.get("style").map(unescape_attr);
    let image_attrs = ImageAttrs {
        tag,
        width: attrs.get("width"),
        height: attrs.get("height"),
        style: style.as_deref(),
        class: attrs.get("class"),
        id: attrs.get("id"),
        hidden: attrs.has("hidden"),
    };
    let sized = visible_size(&image_attrs, &state.borrow().sheets);
    // Every source an image names is judged, not only the first: removing a stripped
    // `src` must not make an `href` behind it the source on the next pass.
    let mut first: Option<(&'static str, RemoteUrl)> = None;
    for src_attr in ["src", "href", "xlink:href", "lowsrc", "dynsrc"] {
        let Some(value) = attrs.get(src_attr) else {
            continue;
        };
        let Some(remote) = remote_url(&unescape_attr(value), &base) else {
            continue;
        };
        // Our own proxy's URL is judged by the URL it carries; one that carries none is
        // stripped by the attribute pass.
        let Ok(remote) = unwrap_own(Cow::Owned(remote), ctx).map(Cow::into_owned) else {
            continue;
        };
        if ctx
            .rules
            .allowed_url(remote.host(), remote.url.as_str())
            .is_some()
        {
            continue;
        }
        if let Some(v) = ctx.detector.tracker_for(&remote, Fetch::Image { sized }) {
            let f = finding(
                ctx,
                v.kind,
                Location::attribute(LocationKind::Source, tag, src_attr),
                Some(remote.url.as_str().to_owned()),
                v.rule,
                v.tracker,
                Action::Strip,
            );
            remove(el, state);
            let mut st = state.borrow_mut();
            st.findings.push(f);
            st.changed = true;
            return Image::Removed;
        }
        first.get_or_insert((src_attr, remote));
    }
    let Some((src_attr, remote)) = first else {
        return Image::Kept { src: None, sized };
    };
    let location = Location::attribute(LocationKind::Source, tag, src_attr);
    // Inside an element no layout shows, an image is a pixel only if it is not given a
    // size a reader would see: a sized one is content whose showing rule we missed.
    let reason = {
        let st = state.borrow();
        if st.hidden_depth.get() > 0 && !sized {
            Some("hidden-ancestor")
        } else {
            invisible(&image_attrs, &st.sheets)
        }
    };
    if let Some(reason) = reason.filter(|_| !is_spacer(&remote.url)) {
        let f = finding(
            ctx,
            FindingKind::Pixel,
            location,
            Some(remote.url.as_str().to_owned()),
            format!("heuristic:{reason}"),
            None,
            Action::Strip,
        );
        if super::holds::hold(el, f.clone(), ctx, state) {
            // Decided at the end of the part: kept if the same image is shown elsewhere.
            return Image::Kept {
                src: Some((src_attr, remote)),
                sized,
            };
        }
        remove(el, state);
        let mut st = state.borrow_mut();
        st.findings.push(f);
        st.changed = true;
        return Image::Removed;
    }
    Image::Kept {
        src: Some((src_attr, remote)),
        sized,
    }
}

/// Static spacer GIFs (`spacer.gif`, `blank.gif`, no query) are layout, not beacons: the
/// same file for every reader.
fn is_spacer(url: &Url) -> bool {
    if url.query().is_some() {
        return false;
    }
    let name = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("")
        .to_ascii_lowercase();
    let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s);
    [
        "spacer",
        "blank",
        "clear",
        "transparent",
        "trans",
        "shim",
        "spc",
        "space",
        "empty",
    ]
    .iter()
    .any(|p| {
        stem.strip_prefix(p)
            .is_some_and(|rest| rest.chars().all(|c| !c.is_alphabetic()))
    })
}

/// A fetching attribute: strip it when its URL is a tracker or the policy strips content.
fn fetch_attr(
    el: &mut Element,
    attrs: &Attrs,
    tag: &str,
    attr: &str,
    (known, fetch): (Option<RemoteUrl>, Fetch),
    ctx: &HtmlContext,
    state: &RefCell<State>,
) {
    let Some(value) = attrs.get(attr) else {
        return;
    };
    let raw = unescape_attr(value);
    let base = state.borrow().base.clone();
    let Some(remote) = known.or_else(|| remote_url(&raw, &base)) else {
        return;
    };
    let location = Location::attribute(fetch_kind(attr), tag, attr);
    let f = fetch_verdict(&remote, fetch, location, ctx);
    let mut st = state.borrow_mut();
    if f.action == Action::Strip {
        el.remove_attribute(attr);
        st.changed = true;
    } else if let Some(p) = proxied_url(&f, ctx) {
        let _ = el.set_attribute(attr, &escape_attr(&p));
        st.changed = true;
    } else if base.is_some() && remote_url(&raw, &None).is_none() {
        // Relative URL made remote by a removed <base>: write it absolute. (Without a
        // base, `remote` was read from `raw` alone: absolute, and not parsed again.)
        let _ = el.set_attribute(attr, &escape_attr(remote.url.as_str()));
        st.changed = true;
    }
    st.findings.push(f);
}

/// `srcset` candidates are judged one by one; the attribute keeps the ones that stay.
fn srcset(
    el: &mut Element,
    attrs: &Attrs,
    tag: &str,
    attr: &str,
    fetch: Fetch,
    ctx: &HtmlContext,
    state: &RefCell<State>,
) {
    let Some(value) = attrs.get(attr) else {
        return;
    };
    let raw = unescape_attr(value);
    let base = state.borrow().base.clone();
    let location = Location::attribute(LocationKind::Srcset, tag, attr);
    let mut kept = Vec::new();
    let mut dropped = false;
    let mut findings = Vec::new();
    for (url, descriptor) in srcset_candidates(&raw) {
        match remote_url(url, &base) {
            Some(remote) => {
                let f = fetch_verdict(&remote, fetch, location.clone(), ctx);
                if f.action == Action::Strip {
                    dropped = true;
                } else if let Some(p) = proxied_url(&f, ctx) {
                    dropped = true; // the attribute is rewritten
                    kept.push(format!("{p} {descriptor}").trim_end().to_string());
                } else {
                    kept.push(
                        format!("{} {descriptor}", remote.url.as_str())
                            .trim_end()
                            .to_string(),
                    );
                }
                findings.push(f);
            }
            None => kept.push(format!("{url} {descriptor}").trim_end().to_string()),
        }
    }
    let mut st = state.borrow_mut();
    st.findings.extend(findings);
    if dropped {
        if kept.is_empty() {
            el.remove_attribute(attr);
        } else {
            let _ = el.set_attribute(attr, &escape_attr(&kept.join(", ")));
        }
        st.changed = true;
    }
}

/// Splits a srcset into (URL, descriptor) pairs (HTML's "parse a srcset attribute",
/// simplified: URLs end at whitespace, a trailing comma ends a candidate).
fn srcset_candidates(value: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            break;
        }
        let url_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let mut url = &rest[..url_end];
        let mut after = &rest[url_end..];
        if let Some(stripped) = url.strip_suffix(',') {
            url = stripped.trim_end_matches(',');
            out.push((url, ""));
            rest = after;
            continue;
        }
        let desc_end = after.find(',').unwrap_or(after.len());
        out.push((url, after[..desc_end].trim()));
        after = &after[desc_end..];
        rest = after;
    }
    out
}

fn style_attr(
    el: &mut Element,
    attrs: &Attrs,
    tag: &str,
    ctx: &HtmlContext,
    state: &RefCell<State>,
) {
    let Some(value) = attrs.get("style") else {
        return;
    };
    let css_text = unescape_attr_in_place(value);
    if !css_text.contains('(') && !contains_ignore_case(&css_text, "behavior") {
        return; // no url(), image-set(), expression(): nothing fetches
    }
    let base = state.borrow().base.clone();
    let mut findings = Vec::new();
    let scan = css::scan_with(&css_text, &mut |ev| {
        css_event(ev, Some(tag), &base, ctx, &mut findings)
    });
    let mut st = state.borrow_mut();
    st.findings.extend(findings);
    if let Some(new) = scan.apply(&css_text) {
        let _ = el.set_attribute("style", &escape_attr(&new));
        st.changed = true;
    }
}

fn meta(el: &mut Element, attrs: &Attrs, ctx: &HtmlContext, state: &RefCell<State>) {
    let equiv = attrs
        .get("http-equiv")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if matches!(equiv.as_str(), "refresh" | "link" | "set-cookie") {
        let content = attrs.get("content").map(unescape_attr);
        remove_element(
            el,
            state,
            ctx,
            FindingKind::Refresh,
            "meta",
            content,
            format!("element:meta-{equiv}"),
        );
    }
}

/// `<base href>` would turn every relative URL into a request to the sender: remember it
/// to resolve relative links and images, and remove it.
fn base(el: &mut Element, attrs: &Attrs, ctx: &HtmlContext, state: &RefCell<State>) {
    let Some(href) = attrs.get("href") else {
        return;
    };
    let href = unescape_attr(href);
    let url = Url::parse(crate::detect::strip_url_noise(&href).as_str()).ok();
    if let Some(u) = &url
        && state.borrow().base.is_none()
    {
        state.borrow_mut().base = Some(u.clone());
    }
    remove_element(
        el,
        state,
        ctx,
        FindingKind::Base,
        "base",
        Some(href),
        "element:base".into(),
    );
}

fn link(el: &mut Element, attrs: &Attrs, ctx: &HtmlContext, state: &RefCell<State>) {
    let rel = attrs.get("rel").unwrap_or_default().to_ascii_lowercase();
    let href = attrs.get("href").map(unescape_attr);
    let rels: Vec<&str> = rel.split_ascii_whitespace().collect();
    if rels.contains(&"stylesheet") {
        let base = state.borrow().base.clone();
        let Some(href) = href else { return };
        if href.trim().to_ascii_lowercase().starts_with("cid:") {
            // An attached stylesheet is not inspected; its url()s would load on open.
            remove_element(
                el,
                state,
                ctx,
                FindingKind::RemoteContent,
                "link",
                Some(href),
                "element:link-stylesheet-cid".into(),
            );
            return;
        }
        if let Some(remote) = remote_url(&href, &base) {
            let location = Location::attribute(LocationKind::Stylesheet, "link", "href");
            let f = fetch_verdict(&remote, Fetch::Other, location, ctx);
            let strip = f.action == Action::Strip;
            let proxied = proxied_url(&f, ctx);
            if strip {
                remove(el, state);
            } else if let Some(p) = &proxied {
                let _ = el.set_attribute("href", &escape_attr(p));
            }
            let mut st = state.borrow_mut();
            st.changed |= strip || proxied.is_some();
            st.findings.push(f);
        }
    } else if rels.iter().any(|r| HINT_RELS.contains(r)) {
        remove_element(
            el,
            state,
            ctx,
            FindingKind::Prefetch,
            "link",
            href,
            format!("element:link-{}", rels.join("-")),
        );
    }
}

/// Event handler attributes (`onload`, `onerror`...) are script; `ping` reports clicks.
fn event_handlers(
    el: &mut Element,
    attrs: &Attrs,
    tag: &str,
    ctx: &HtmlContext,
    state: &RefCell<State>,
) {
    let names = attrs
        .names()
        .filter(|n| (n.len() > 2 && n.starts_with("on")) || *n == "ping");
    for name in names {
        let kind = FindingKind::ActiveContent;
        strip_attr(el, attrs, state, ctx, tag, name, kind);
    }
}

/// A relative link under a removed `<base>` is written absolute, so it still leads
/// where it led.
fn resolve_link(
    el: &mut Element,
    attrs: &Attrs,
    tag: &str,
    ctx: &HtmlContext,
    state: &RefCell<State>,
) {
    let Some(href) = attrs.get("href") else {
        return;
    };
    let base: Base = state.borrow().base.clone();
    let Some(b) = base else {
        return;
    };
    let href = unescape_attr(href);
    let trimmed = href.trim();
    if trimmed.is_empty()
        || trimmed.starts_with('#')
        || crate::detect::remote_url(trimmed, &None).is_some()
        || trimmed.contains(':')
    {
        return;
    }
    if let Ok(abs) = b.join(trimmed) {
        let _ = el.set_attribute("href", &escape_attr(abs.as_str()));
        let mut st = state.borrow_mut();
        st.changed = true;
        st.findings.push(finding(
            ctx,
            FindingKind::Base,
            Location::attribute(LocationKind::Link, tag, "href"),
            Some(abs.to_string()),
            "element:base".into(),
            None,
            Action::Resolve,
        ));
    }
}

/// Removes one attribute; the finding is `tag@attr`, rule `attribute:attr`.
fn strip_attr(
    el: &mut Element,
    attrs: &Attrs,
    state: &RefCell<State>,
    ctx: &HtmlContext,
    tag: &str,
    attr: &str,
    kind: FindingKind,
) {
    let url = attrs.get(attr).map(unescape_attr);
    el.remove_attribute(attr);
    let mut st = state.borrow_mut();
    st.changed = true;
    let url = if kind == FindingKind::ActiveContent {
        None
    } else {
        url
    };
    st.findings.push(finding(
        ctx,
        kind,
        Location::attribute(LocationKind::Attribute, tag, attr),
        url,
        format!("attribute:{attr}"),
        None,
        Action::Strip,
    ));
}

fn remove_element(
    el: &mut Element,
    state: &RefCell<State>,
    ctx: &HtmlContext,
    kind: FindingKind,
    tag: &str,
    url: Option<String>,
    rule: String,
) {
    remove(el, state);
    let mut st = state.borrow_mut();
    st.changed = true;
    st.findings.push(finding(
        ctx,
        kind,
        Location::element(tag),
        url,
        rule,
        None,
        Action::Strip,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srcset_candidates_are_split() {
        assert_eq!(
            srcset_candidates("a.png 1x, http://t.example/b.png 2x,c.png"),
            vec![
                ("a.png", "1x"),
                ("http://t.example/b.png", "2x"),
                ("c.png", "")
            ]
        );
        assert_eq!(
            srcset_candidates("http://x.example/a.png,"),
            vec![("http://x.example/a.png", "")]
        );
    }

    #[test]
    fn behavior_is_found_in_any_case() {
        assert!(contains_ignore_case(
            "color:red;BeHaViOr:url(x.htc)",
            "behavior"
        ));
        assert!(contains_ignore_case("behavior", "behavior"));
        assert!(!contains_ignore_case("behavio", "behavior"));
        assert!(!contains_ignore_case("béhavior", "behavior"));
    }

    #[test]
    fn spacers_are_recognised_by_name_without_query() {
        let u = |s| Url::parse(s).unwrap();
        assert!(is_spacer(&u("https://cdn.example/img/spacer.gif")));
        assert!(is_spacer(&u("https://cdn.example/blank_1.png")));
        assert!(!is_spacer(&u("https://cdn.example/spacer.gif?u=123")));
        assert!(!is_spacer(&u("https://cdn.example/open.gif")));
        assert!(!is_spacer(&u("https://cdn.example/clearance-sale.jpg")));
    }
}
