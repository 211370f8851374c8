//! Images that cannot be seen: the tell of an open pixel whose URL no rule knows.
//! Size by attribute or CSS (0-3 px), display:none, visibility:hidden, opacity:0,
//! max-height:0, off-screen positioning, the `hidden` attribute, and classes or ids
//! that a `<style>` rule hides. Known false positives are kept: wide 1 px rules and
//! spacers (one side large), and images that some layout of the mail shows.
//!
//! "Hidden" means hidden in **every** layout the mail defines: a hiding declaration
//! counts only when nothing can override it, by the cascade's own terms:
//! - inline `display:none` is overridden by a stylesheet rule with `!important` that may
//!   match the element (the desktop/mobile alternate: `@media (max-width:480px)
//!   { .mobile { display:block !important } }`);
//! - a stylesheet rule that hides is overridden by the element's inline style, by a later
//!   or more specific rule, or by one in an `@media` block: any rule that may match the
//!   element and shows it, with at least its weight;
//! - the `hidden` attribute is overridden by any author rule that shows the element.
//!
//! A rule "may match" when the last compound of its selector names one of the element's
//! classes (also `[class="x"]`, `[class~=x]`, `[class*=x]`...), its id, its tag, or
//! nothing at all (`*`, `[hidden]`): generous on purpose, since a show rule we miss costs a
//! visible image. A rule "hides for certain" only when its selector is one class, one id
//! or one tag, with no context, pseudo-class or attribute condition, outside `@media`.

use super::css::{RawDeclaration, RuleText, for_each_declaration};
use std::borrow::Cow;
// Keys come from the sender's stylesheets: seeded per process (foldhash, hashbrown's
// own default), not Fx, so that no sheet can be written to collide; and not SipHash,
// a tenth of the element handler's lookups (issue 17).
use foldhash::{HashMap, HashSet};

/// Properties that can hide an element, as bits.
const DISPLAY: u8 = 1;
const VISIBILITY: u8 = 2;
const OPACITY: u8 = 4;
const MAX_HEIGHT: u8 = 8;
const MAX_WIDTH: u8 = 16;
const HEIGHT: u8 = 32;
const WIDTH: u8 = 64;
const ALL: u8 = 127;
/// What hides the content of an element (an image inside it).
const CONTENT: u8 = DISPLAY | VISIBILITY;

/// At most this many substring selectors (`[class*=x]`) are kept; past it, any element
/// may be shown by one (a hostile sheet makes every image count as visible, never the
/// other way round).
const MAX_SUBSTRINGS: usize = 256;
/// At most this many hiding rules per class, id or tag.
const MAX_HIDES_PER_KEY: usize = 16;

fn prop_bit(name: &str) -> u8 {
    match name {
        "display" => DISPLAY,
        "visibility" => VISIBILITY,
        "opacity" => OPACITY,
        "max-height" => MAX_HEIGHT,
        "max-width" => MAX_WIDTH,
        "height" => HEIGHT,
        "width" => WIDTH,
        _ => 0,
    }
}

/// `s` lowercased (ASCII), copied only when it has an uppercase letter.
fn ascii_lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// `prefix` and `name` lowercased, in one string (`.class`, `#id`): one allocation, not
/// the two of `format!` over `to_lowercase`, for every class and id of every rule.
fn lowercase_key(prefix: char, name: &str) -> String {
    let mut key = String::with_capacity(name.len() + 1);
    key.push(prefix);
    if name.is_ascii() {
        key.extend(name.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        key.push_str(&name.to_lowercase());
    }
    key
}

/// Whether `value` of the property `bit` hides the element.
fn hiding_value(bit: u8, value: &str) -> bool {
    match bit {
        DISPLAY => value == "none",
        VISIBILITY => value == "hidden" || value == "collapse",
        OPACITY => value.parse::<f32>().is_ok_and(|o| o <= 0.01),
        _ => px(value) == Some(0),
    }
}

/// Props set to a hiding and to a showing value by a declaration list, each split by
/// weight, after the cascade inside the list (the last declaration of a property wins,
/// an `!important` one over any other).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Effect {
    hide: Weights,
    show: Weights,
}

/// Property bits by weight.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Weights {
    normal: u8,
    important: u8,
}

impl Weights {
    fn any(self) -> u8 {
        self.normal | self.important
    }
    fn add(&mut self, other: Weights) {
        self.normal |= other.normal;
        self.important |= other.important;
    }
}

/// (hides, important) of the last declaration of each property, per bit index.
type Last = [Option<(bool, bool)>; 8];

fn effect(css: &str) -> Effect {
    let mut last: Last = [None; 8];
    for_each_declaration(css, |d| {
        note_effect(&mut last, prop_bit(&ascii_lowercase(d.name)), d);
    });
    effect_of(&last)
}

/// One declaration of property `bit` (0: none that hides) for [`effect`].
fn note_effect(last: &mut Last, bit: u8, d: RawDeclaration) {
    if bit == 0 || d.value.is_empty() {
        return;
    }
    let slot = &mut last[bit.trailing_zeros() as usize];
    if slot.is_some_and(|(_, important)| important && !d.important) {
        return;
    }
    *slot = Some((hiding_value(bit, &ascii_lowercase(d.value)), d.important));
}

/// [`effect`], remembered for the style attributes this thread has read lately. Mail
/// repeats its inline styles (two thirds of their bytes in the corpus repeat a style of
/// the same part), and reading them was most of judging whether an element hides what it
/// holds (issue 17). At most [`MEMO_BYTES`] of styles, none longer than
/// [`MEMO_STYLE_LEN`].
fn remembered_effect(css: &str) -> Effect {
    thread_local! {
        static MEMO: std::cell::RefCell<crate::memo::Memo<Effect>> =
            std::cell::RefCell::new(crate::memo::Memo::new(MEMO_BYTES, MEMO_STYLE_LEN));
    }
    MEMO.with_borrow_mut(|memo| memo.get(css, effect))
}

/// What [`remembered_effect`] holds at most, in bytes of style text, and the longest
/// style it keeps.
const MEMO_BYTES: usize = 256 * 1024;
const MEMO_STYLE_LEN: usize = 4096;

/// [`effect`] and [`size_effect`] of a rule's declarations, read once (both run on
/// every rule of every sheet).
fn rule_effects(css: &str) -> (Effect, (Weights, Weights)) {
    let mut last: Last = [None; 8];
    let mut sizes = (Weights::default(), Weights::default());
    for_each_declaration(css, |d| {
        let bit = prop_bit(&ascii_lowercase(d.name));
        note_effect(&mut last, bit, d);
        note_size(&mut sizes, bit, d);
    });
    (effect_of(&last), sizes)
}

/// The effect of the last declaration of each property: (hides, important) per bit index.
fn effect_of(last: &[Option<(bool, bool)>; 8]) -> Effect {
    let mut e = Effect::default();
    for (i, v) in last.iter().enumerate() {
        let bit = 1u8 << i;
        match v {
            Some((true, false)) => e.hide.normal |= bit,
            Some((true, true)) => e.hide.important |= bit,
            Some((false, false)) => e.show.normal |= bit,
            Some((false, true)) => e.show.important |= bit,
            None => {}
        }
    }
    e
}

/// A rule that hides for certain what its one class, id or tag names.
#[derive(Debug, Clone)]
struct Hide {
    /// A tag the selector also names (`img.px`).
    tag: Option<String>,
    props: Weights,
}

/// Rules that may match an element, by what they name: property bits by weight. A rule
/// is filed under each class and id of its subject, else its `[class*=x]`-like
/// substrings, else its tag, else `[hidden]`, else it may match any element.
#[derive(Debug, Default, Clone)]
struct Index {
    /// `.class`, `#id` (lowercased), `tag` or `[hidden]`.
    keys: HashMap<String, Weights>,
    /// Substring selectors on `class` or `id` (lowercased).
    substrings: Vec<(String, Weights)>,
    /// Rules that may match any element (`*`, too many substrings).
    any: Weights,
}

impl Index {
    fn note(&mut self, s: &Subject, w: Weights) {
        let keys: Vec<String> = s
            .classes
            .iter()
            .map(|c| lowercase_key('.', c))
            .chain(s.ids.iter().map(|i| lowercase_key('#', i)))
            .collect();
        if !keys.is_empty() {
            for k in keys {
                self.keys.entry(k).or_default().add(w);
            }
        } else if !s.substrings.is_empty() {
            if self.substrings.len() + s.substrings.len() > MAX_SUBSTRINGS {
                self.any.add(w);
            } else {
                self.substrings
                    .extend(s.substrings.iter().map(|v| (v.clone(), w)));
            }
        } else if let Some(t) = &s.tag {
            self.keys.entry(t.clone()).or_default().add(w);
        } else if s.hidden_attr {
            self.keys.entry("[hidden]".into()).or_default().add(w);
        } else {
            self.any.add(w);
        }
    }

    /// What rules that may match the element give.
    fn on(&self, el: &Element) -> Weights {
        let mut w = self.any;
        if self.keys.is_empty() && self.substrings.is_empty() {
            return w;
        }
        el.any_key(true, |key| {
            if let Some(s) = self.keys.get(key) {
                w.add(*s);
            }
            false
        });
        if let Some(s) = self.keys.get(&*ascii_lowercase(el.tag)) {
            w.add(*s);
        }
        if el.hidden
            && let Some(s) = self.keys.get("[hidden]")
        {
            w.add(*s);
        }
        if !self.substrings.is_empty() {
            let attrs = el.attr_text();
            for (sub, s) in &self.substrings {
                if attrs.iter().any(|a| a.contains(sub.as_str())) {
                    w.add(*s);
                }
            }
        }
        w
    }
}

/// A rule's `width` and `height`: set to a length (the element gets that size) or to
/// `auto`, by weight. A zero is a hiding value, not a size.
#[cfg(test)]
fn size_effect(css: &str) -> (Weights, Weights) {
    let mut sizes = (Weights::default(), Weights::default());
    for_each_declaration(css, |d| {
        note_size(&mut sizes, prop_bit(&ascii_lowercase(d.name)), d);
    });
    sizes
}

/// One declaration of property `bit` for [`size_effect`]: (sized, auto-sized).
fn note_size((sized, auto_sized): &mut (Weights, Weights), bit: u8, d: RawDeclaration) {
    if bit != WIDTH && bit != HEIGHT {
        return;
    }
    let target = match &*ascii_lowercase(d.value) {
        "auto" => auto_sized,
        "" | "inherit" | "initial" | "unset" | "revert" => return,
        v if hiding_value(bit, v) => return,
        _ => sized,
    };
    if d.important {
        target.important |= bit;
    } else {
        target.normal |= bit;
    }
}

/// What a message's stylesheets hide for certain, and what they may show.
#[derive(Debug, Default, Clone)]
pub struct HiddenSelectors {
    /// `.class`, `#id` (as written) or `tag` → rules that hide it for certain.
    hides: HashMap<String, Vec<Hide>>,
    /// What rules may show on an element (a display, visibility... that does not hide).
    shows: Index,
    /// What rules may give an element as its width or height: an explicit length, or
    /// `auto` (the size of what it loads). Either beats the `width`/`height` attributes.
    sized: Index,
    auto_sized: Index,
    /// Classes and ids (lowercased) an `@media` rule names: their sizes differ by layout.
    responsive: HashSet<String>,
    responsive_substrings: Vec<String>,
}

/// The last compound selector of one complex selector, as far as visibility cares.
#[derive(Debug, Default, PartialEq, Eq)]
struct Subject {
    tag: Option<String>,
    classes: Vec<String>,
    ids: Vec<String>,
    /// `[class*=x]`, `[class^=x]`, `[id$=x]`...: values that the attribute contains.
    substrings: Vec<String>,
    /// Pseudo-classes, other attribute conditions: the rule matches in some states only.
    conditional: bool,
    /// The rule asks for the `hidden` attribute (`[hidden]`).
    hidden_attr: bool,
    /// `::before` and the like: the rule is about generated content, not the element.
    pseudo_element: bool,
    /// Compounds before the subject (`.a .b`): the rule matches in some places only.
    context: bool,
}

impl HiddenSelectors {
    /// Learns from the rules of one `<style>` block.
    pub fn learn(&mut self, rules: &[RuleText]) {
        for rule in rules {
            // Once per rule, not once per selector of its list.
            let (e, (sized, auto_sized)) = rule_effects(&rule.declarations);
            // Nothing to note from such a rule: its selectors are not read (most rules
            // of a newsletter's sheet set colours, fonts and spacing).
            if !rule.in_media && (e.show.any() | e.hide.any() | sized.any() | auto_sized.any()) == 0
            {
                continue;
            }
            for selector in split_top(&rule.selectors, ',') {
                let s = subject(selector);
                if s.pseudo_element {
                    continue;
                }
                if rule.in_media {
                    self.note_responsive(&s);
                }
                if e.show.any() != 0 {
                    self.shows.note(&s, e.show);
                }
                if sized.any() != 0 {
                    self.sized.note(&s, sized);
                }
                if auto_sized.any() != 0 {
                    self.auto_sized.note(&s, auto_sized);
                }
                if !rule.in_media && e.hide.any() != 0 {
                    self.note_hide(&s, e.hide);
                }
            }
        }
    }

    fn note_responsive(&mut self, s: &Subject) {
        for c in &s.classes {
            self.responsive.insert(lowercase_key('.', c));
        }
        for i in &s.ids {
            self.responsive.insert(lowercase_key('#', i));
        }
        if self.responsive_substrings.len() + s.substrings.len() <= MAX_SUBSTRINGS {
            self.responsive_substrings
                .extend(s.substrings.iter().cloned());
        }
    }

    fn note_hide(&mut self, s: &Subject, w: Weights) {
        if s.context || s.conditional || !s.substrings.is_empty() {
            return;
        }
        let key = match (s.classes.as_slice(), s.ids.as_slice(), &s.tag) {
            ([c], [], _) => format!(".{c}"),
            ([], [i], _) => format!("#{i}"),
            ([], [], Some(t)) => t.clone(),
            _ => return,
        };
        let tag = if s.classes.len() + s.ids.len() == 1 {
            s.tag.clone()
        } else {
            None
        };
        let list = self.hides.entry(key).or_default();
        if list.len() < MAX_HIDES_PER_KEY {
            list.push(Hide { tag, props: w });
        }
    }

    /// What rules hide on the element for certain.
    fn hides_on(&self, el: &Element) -> Weights {
        let mut w = Weights::default();
        if self.hides.is_empty() {
            return w; // no keys to build: most elements of most mails
        }
        let tag = ascii_lowercase(el.tag);
        let mut visit = |key: &str| {
            for h in self.hides.get(key).into_iter().flatten() {
                if h.tag.as_deref().is_none_or(|t| t == tag) {
                    w.add(h.props);
                }
            }
            false
        };
        el.any_key(false, &mut visit);
        visit(&tag);
        w
    }

    /// Whether a media rule names the element: its size differs between layouts.
    fn responsive(&self, el: &Element) -> bool {
        if self.responsive.is_empty() && self.responsive_substrings.is_empty() {
            return false;
        }
        el.any_key(true, |k| self.responsive.contains(k))
            || (!self.responsive_substrings.is_empty() && {
                let attrs = el.attr_text();
                self.responsive_substrings
                    .iter()
                    .any(|s| attrs.iter().any(|a| a.contains(s.as_str())))
            })
    }
}

/// The attributes of an element that decide whether it is shown.
#[derive(Debug, Default, Clone, Copy)]
#[allow(missing_docs)] // the HTML attributes of the same names
pub struct Element<'a> {
    pub tag: &'a str,
    pub style: Option<&'a str>,
    pub class: Option<&'a str>,
    pub id: Option<&'a str>,
    pub hidden: bool,
}

impl Element<'_> {
    /// Calls `f` with each `.class` and `#id` key, lowercased or as written, until it
    /// says so; whether it did. Written into one buffer: this runs for every element
    /// with a class while a sheet hides or shows something.
    fn any_key(&self, lowercase: bool, mut f: impl FnMut(&str) -> bool) -> bool {
        let mut key = String::new();
        let mut visit = |prefix: char, name: &str| {
            key.clear();
            key.push(prefix);
            if !lowercase {
                key.push_str(name);
            } else if name.is_ascii() {
                key.extend(name.bytes().map(|b| char::from(b.to_ascii_lowercase())));
            } else {
                key.push_str(&name.to_lowercase());
            }
            f(&key)
        };
        self.class
            .unwrap_or("")
            .split_ascii_whitespace()
            .any(|c| visit('.', c))
            || self.id.is_some_and(|i| visit('#', i.trim()))
    }

    fn attr_text(&self) -> Vec<String> {
        [self.class, self.id]
            .into_iter()
            .flatten()
            .map(str::to_lowercase)
            .collect()
    }
}

/// Why the element is hidden in every layout the mail defines, looking at the
/// properties `props` only, or `None`.
fn hidden_everywhere(el: &Element, sheets: &HiddenSelectors, props: u8) -> Option<&'static str> {
    let mut inline = el.style.map(remembered_effect).unwrap_or_default();
    if sheets.responsive(el) {
        // A media rule names it: its inline sizes (width:0, max-height:0 on desktop) are
        // the one layout's, and the other's rule sets its own.
        let sizes = MAX_HEIGHT | MAX_WIDTH | HEIGHT | WIDTH;
        inline.hide.normal &= !sizes;
        inline.hide.important &= !sizes;
    }
    let shows = sheets.shows.on(el);
    let hides = sheets.hides_on(el);
    // Inline style: beaten only by an `!important` stylesheet rule (or not at all).
    if inline.hide.important & props != 0 {
        return Some("css-hidden");
    }
    if inline.hide.normal & props & !shows.important != 0 {
        return Some("css-hidden");
    }
    // A stylesheet rule: beaten by the inline style, or by another rule that may match
    // with at least its weight (their order and specificity are not weighed here).
    let important = hides.important & props & !inline.show.important & !shows.important;
    let normal = hides.normal & props & !inline.show.any() & !shows.any();
    if important | normal != 0 {
        return Some("stylesheet-hidden");
    }
    // `hidden`: the user agent's `display:none`, beaten by any author rule.
    if el.hidden && props & DISPLAY != 0 && (inline.show.any() | shows.any()) & DISPLAY == 0 {
        return Some("hidden-attribute");
    }
    None
}

/// The attributes of an image that decide whether it can be seen.
#[derive(Debug, Default, Clone, Copy)]
#[allow(missing_docs)] // the HTML attributes of the same names
pub struct ImageAttrs<'a> {
    pub tag: &'a str,
    pub width: Option<&'a str>,
    pub height: Option<&'a str>,
    pub style: Option<&'a str>,
    pub class: Option<&'a str>,
    pub id: Option<&'a str>,
    pub hidden: bool,
}

impl<'a> ImageAttrs<'a> {
    fn element(&self) -> Element<'a> {
        Element {
            tag: if self.tag.is_empty() { "img" } else { self.tag },
            style: self.style,
            class: self.class,
            id: self.id,
            hidden: self.hidden,
        }
    }
}

/// The width and height an image is given (CSS over attributes), each `None` when not
/// given or not in px; and whether each is given at all.
struct Size {
    width: Option<u32>,
    height: Option<u32>,
    width_given: bool,
    height_given: bool,
}

fn size(img: &ImageAttrs, sheets: &HiddenSelectors) -> Size {
    // An image that an @media rule names is responsive: its inline CSS (width:0 on
    // desktop) says nothing about tracking, its attributes still do.
    // The last `width` and `height` of the inline style, lowercased (a list of every
    // declaration, each copied, was built for these two).
    let (mut css_width, mut css_height) = (None, None);
    if let Some(style) = img.style.filter(|_| !sheets.responsive(&img.element())) {
        for_each_declaration(style, |d| match ascii_lowercase(d.name).as_ref() {
            "width" => css_width = Some(d.value.to_ascii_lowercase()),
            "height" => css_height = Some(d.value.to_ascii_lowercase()),
            _ => {}
        });
    }
    size_with(img, sheets, |name| match name {
        "width" => css_width.as_deref(),
        _ => css_height.as_deref(),
    })
}

/// [`size`], the inline style's last value of a side given by `css`.
fn size_with<'c>(
    img: &ImageAttrs,
    sheets: &HiddenSelectors,
    css: impl Fn(&str) -> Option<&'c str>,
) -> Size {
    let el = img.element();
    let (sized, auto_sized) = (sheets.sized.on(&el), sheets.auto_sized.on(&el));
    // The cascade for one side: an !important rule beats the inline style, which beats
    // any other rule, which beats the attribute. A length makes a size given (its value
    // unknown here); `auto` takes the attribute's away (the size of what loads).
    let side = |bit: u8, name: &str, attr: Option<&str>| -> (Option<u32>, bool) {
        if sized.important & bit != 0 {
            return (None, true);
        }
        if auto_sized.important & bit != 0 {
            return (None, false);
        }
        if let Some(v) = css(name) {
            return (px(v), true);
        }
        if sized.normal & bit != 0 {
            return (None, true);
        }
        if auto_sized.normal & bit != 0 {
            return (None, false);
        }
        (attr.and_then(px), attr.is_some())
    };
    let (width, width_given) = side(WIDTH, "width", img.width);
    let (height, height_given) = side(HEIGHT, "height", img.height);
    Size {
        width,
        height,
        width_given,
        height_given,
    }
}

/// Why an image's size cannot be seen (`zero-size`, `tiny-size`), or `None`.
fn unseen_size(s: &Size) -> Option<&'static str> {
    if s.width == Some(0) || s.height == Some(0) {
        return Some("zero-size");
    }
    let tiny = |v: Option<u32>| v.is_some_and(|v| v <= 3);
    let sized_tiny = (tiny(s.width) && tiny(s.height))
        || (tiny(s.width) && !s.height_given)
        || (tiny(s.height) && !s.width_given);
    sized_tiny.then_some("tiny-size")
}

/// Whether the image is given a size a reader would see: a width or a height, neither
/// zero nor tiny. An image without one takes the size of what it loads, which for an
/// open pixel is 1x1.
pub fn visible_size(img: &ImageAttrs, sheets: &HiddenSelectors) -> bool {
    let s = size(img, sheets);
    (s.width_given || s.height_given) && unseen_size(&s).is_none()
}

/// Why an image cannot be seen, or `None` if it can.
pub fn invisible(img: &ImageAttrs, sheets: &HiddenSelectors) -> Option<&'static str> {
    let el = img.element();
    if img.hidden && hidden_everywhere(&el, sheets, DISPLAY) == Some("hidden-attribute") {
        return Some("hidden-attribute");
    }
    if let Some(r) = unseen_size(&size(img, sheets)) {
        return Some(r);
    }
    if let Some(r) = hidden_everywhere(&el, sheets, ALL) {
        return Some(r);
    }
    let responsive = sheets.responsive(&el);
    let decls = if responsive {
        Vec::new()
    } else {
        img.style.map(super::css::declarations).unwrap_or_default()
    };
    if off_screen(&decls) {
        return Some("off-screen");
    }
    None
}

/// Why an element hides everything inside it in every layout (an `<img>` in it is never
/// seen, but a client still fetches it), or `None`. Only `display:none`,
/// `visibility:hidden` and the `hidden` attribute count, by inline style, attribute or a
/// stylesheet rule that no other rule can override.
pub fn hides_content(el: &Element, sheets: &HiddenSelectors) -> Option<&'static str> {
    hidden_everywhere(el, sheets, CONTENT).map(|_| "hidden-ancestor")
}

fn off_screen(decls: &[(String, String)]) -> bool {
    let positioned = decls
        .iter()
        .any(|(n, v)| n == "position" && (v == "absolute" || v == "fixed"));
    positioned
        && decls.iter().any(|(n, v)| {
            matches!(n.as_str(), "left" | "top" | "right" | "bottom")
                && v.strip_prefix('-').and_then(px).is_some_and(|d| d >= 500)
        })
}

/// A length in CSS px from an attribute (`1`, `1px`) or CSS value; `None` for
/// percentages, `auto` and the like.
fn px(value: &str) -> Option<u32> {
    let v = value.trim();
    let v = v.strip_suffix("px").unwrap_or(v).trim();
    if v.is_empty() || v.contains('%') {
        return None;
    }
    let n: f32 = v.parse().ok()?;
    (n >= 0.0).then_some(n.round() as u32)
}

/// Splits `s` at `sep` outside parentheses, brackets and quotes.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None, 0);
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), '\\') => {
                chars.next();
            }
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '\\') => {
                chars.next();
            }
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => depth -= 1,
            (None, c) if c == sep && depth <= 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The subject (last compound) of one complex selector.
fn subject(selector: &str) -> Subject {
    let sel = selector.trim();
    // Compounds are separated by whitespace or a combinator outside brackets/parens.
    let mut last_start = 0;
    let (mut depth, mut quote) = (0i32, None);
    let bytes = sel.as_bytes();
    let mut i = 0;
    let mut context = false;
    while i < bytes.len() {
        let b = bytes[i];
        match (quote, b) {
            (Some(q), b) if b == q => quote = None,
            (Some(_), b'\\') => i += 1,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'\\') => i += 1,
            (None, b'(' | b'[') => depth += 1,
            (None, b')' | b']') => depth -= 1,
            (None, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | b'>' | b'+' | b'~') if depth <= 0 => {
                let rest = sel[i + 1..].trim_start_matches(|c: char| {
                    c.is_whitespace() || matches!(c, '>' | '+' | '~')
                });
                if !rest.is_empty() {
                    context = true;
                    last_start = sel.len() - rest.len();
                    i = last_start;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut s = compound(&sel[last_start.min(sel.len())..]);
    s.context = context;
    s
}

/// Parses one compound selector (`img.a#b[class~=c]:hover`).
fn compound(c: &str) -> Subject {
    let mut s = Subject::default();
    let chars: Vec<char> = c.chars().collect();
    let mut i = 0;
    let ident = |i: &mut usize| -> String {
        let mut out = String::new();
        while *i < chars.len() {
            let ch = chars[*i];
            if ch == '\\' && *i + 1 < chars.len() {
                out.push(chars[*i + 1]);
                *i += 2;
            } else if ch.is_alphanumeric() || ch == '-' || ch == '_' || !ch.is_ascii() {
                out.push(ch);
                *i += 1;
            } else {
                break;
            }
        }
        out
    };
    while i < chars.len() {
        match chars[i] {
            '*' => i += 1,
            '.' => {
                i += 1;
                let name = ident(&mut i);
                if !name.is_empty() {
                    s.classes.push(name);
                }
            }
            '#' => {
                i += 1;
                let name = ident(&mut i);
                if !name.is_empty() {
                    s.ids.push(name);
                }
            }
            '[' => {
                let end = chars[i..]
                    .iter()
                    .position(|&ch| ch == ']')
                    .map_or(chars.len(), |p| i + p);
                let inner: String = chars[i + 1..end.min(chars.len())].iter().collect();
                attribute(&inner, &mut s);
                i = end + 1;
            }
            ':' => {
                let element = chars.get(i + 1) == Some(&':');
                i += if element { 2 } else { 1 };
                let name = ident(&mut i).to_ascii_lowercase();
                if element
                    || matches!(
                        name.as_str(),
                        "before" | "after" | "first-line" | "first-letter"
                    )
                {
                    s.pseudo_element = true;
                } else {
                    s.conditional = true;
                }
                if chars.get(i) == Some(&'(') {
                    let mut depth = 0;
                    while i < chars.len() {
                        match chars[i] {
                            '(' => depth += 1,
                            ')' => {
                                depth -= 1;
                                if depth == 0 {
                                    i += 1;
                                    break;
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                }
            }
            ch if ch.is_alphanumeric() || ch == '-' || ch == '_' || ch == '\\' => {
                let from = i;
                let name = ident(&mut i);
                if i == from {
                    // A `\` that ends the selector escapes nothing: `ident` reads no
                    // character, and this loop read it again forever (found by fuzzing).
                    i += 1;
                }
                if s.tag.is_none() && !name.is_empty() {
                    s.tag = Some(name.to_ascii_lowercase());
                }
            }
            _ => i += 1,
        }
    }
    s
}

/// One `[attr op value]` of a compound.
fn attribute(inner: &str, s: &mut Subject) {
    let ops = ["~=", "|=", "^=", "$=", "*=", "="];
    let found = ops
        .iter()
        .filter_map(|op| inner.find(op).map(|at| (at, *op)))
        .min_by_key(|(at, op)| (*at, std::cmp::Reverse(op.len())));
    let Some((at, op)) = found else {
        // `[class]`, `[hidden]`: presence only. On class or id it adds nothing to match.
        let name = inner.trim().to_ascii_lowercase();
        if name == "hidden" {
            s.hidden_attr = true;
        }
        if name != "class" && name != "id" {
            s.conditional = true;
        }
        return;
    };
    let name = inner[..at].trim().to_ascii_lowercase();
    let mut value = inner[at + op.len()..].trim();
    // A trailing ` i` / ` s` flag.
    if let Some((v, flag)) = value.rsplit_once(char::is_whitespace)
        && matches!(flag, "i" | "s" | "I" | "S")
    {
        value = v.trim();
    }
    let value = value.trim_matches(|c| c == '"' || c == '\'');
    match (name.as_str(), op) {
        ("class", "=" | "~=") => {
            s.classes
                .extend(value.split_ascii_whitespace().map(str::to_string));
            if op == "=" {
                s.conditional = true; // the whole attribute must equal it
            }
        }
        ("id", "=") => s.ids.push(value.to_string()),
        ("class" | "id", _) if !value.is_empty() => {
            s.substrings.push(value.to_lowercase());
        }
        _ => s.conditional = true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A selector that ends in `\\` (an escape of nothing) is read to its end: the tag
    /// reader read the backslash again forever, and a sender's `<style>` held `clean()`
    /// (found by the clean_bytes fuzz target; seed `regress-selector-ends-in-backslash`).
    #[test]
    fn a_selector_ending_in_a_backslash_is_read_to_its_end() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let read: Vec<Subject> = ["img\\", "\\", ".a \\", "p\\x"]
                .into_iter()
                .map(subject)
                .collect();
            sheets("img\\ { display: none } \\{display:none}");
            let _ = tx.send(read);
        });
        let read = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("still reading the selector after a minute");
        assert_eq!(read[0].tag.as_deref(), Some("img"));
        assert_eq!(read[1].tag, None);
        assert!(read[2].context);
        assert_eq!(read[3].tag.as_deref(), Some("px"));
    }

    fn sheets(css: &str) -> HiddenSelectors {
        let scan = super::super::css::scan(css, &mut |_| false);
        let mut h = HiddenSelectors::default();
        h.learn(&scan.rules);
        h
    }

    fn check(img: ImageAttrs) -> Option<&'static str> {
        invisible(&img, &HiddenSelectors::default())
    }

    fn el<'a>(tag: &'a str, class: Option<&'a str>, style: Option<&'a str>) -> Element<'a> {
        Element {
            tag,
            class,
            style,
            ..Element::default()
        }
    }

    #[test]
    fn tiny_and_zero_images_are_invisible() {
        assert_eq!(
            check(ImageAttrs {
                width: Some("1"),
                height: Some("1"),
                ..Default::default()
            }),
            Some("tiny-size")
        );
        assert_eq!(
            check(ImageAttrs {
                width: Some("0"),
                height: Some("0"),
                ..Default::default()
            }),
            Some("zero-size")
        );
        assert_eq!(
            check(ImageAttrs {
                style: Some("width:1px;height:1px"),
                ..Default::default()
            }),
            Some("tiny-size")
        );
        assert_eq!(
            check(ImageAttrs {
                width: Some("2"),
                ..Default::default()
            }),
            Some("tiny-size")
        );
    }

    #[test]
    fn wide_rules_and_tall_gradients_are_visible() {
        for (w, h) in [("620", "1"), ("1", "100"), ("100%", "1")] {
            assert_eq!(
                check(ImageAttrs {
                    width: Some(w),
                    height: Some(h),
                    ..Default::default()
                }),
                None,
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn css_hiding_is_invisible() {
        for style in [
            "display:none",
            "visibility: hidden",
            "opacity:0",
            "max-height:0px;overflow:hidden",
            "position:absolute;left:-9999px",
        ] {
            assert!(
                check(ImageAttrs {
                    style: Some(style),
                    ..Default::default()
                })
                .is_some(),
                "{style}"
            );
        }
        assert_eq!(
            check(ImageAttrs {
                style: Some("display:block;opacity:1"),
                ..Default::default()
            }),
            None
        );
    }

    #[test]
    fn containers_hide_by_display_visibility_attribute_or_class_but_not_responsively() {
        let s = sheets(
            ".gone{display:none} @media (max-width:480px) { .mobile{display:block!important} }",
        );
        let hides = |style, class, hidden| {
            hides_content(
                &Element {
                    tag: "div",
                    style,
                    class,
                    hidden,
                    id: None,
                },
                &s,
            )
            .is_some()
        };
        assert!(hides(Some("display:none"), None, false));
        assert!(hides(Some("visibility:hidden"), None, false));
        assert!(hides(None, None, true));
        assert!(hides(None, Some("a gone"), false));
        assert!(!hides(Some("display:none"), Some("mobile"), false));
        assert!(!hides(Some("width:0;mso-hide:all"), None, false));
    }

    #[test]
    fn inline_hiding_yields_only_to_an_important_rule() {
        let s = sheets(
            "@media screen and (max-width:600px) { .m { display:block } .n { display:block !important } }",
        );
        assert!(hides_content(&el("td", Some("m"), Some("display:none")), &s).is_some());
        assert!(hides_content(&el("td", Some("n"), Some("display:none")), &s).is_none());
        assert!(
            hides_content(&el("td", Some("n"), Some("display:none !important")), &s).is_some(),
            "an important inline declaration beats any stylesheet"
        );
    }

    #[test]
    fn a_comment_before_a_media_block_does_not_make_its_rules_unconditional() {
        let s = sheets(
            ".show_div{display:none;}/*IPHONE STYLES*/@media only screen and (max-width: 480px) { .st-hide{ display: none !important;} *[class=\"show_div\"] { display: block !important; } }",
        );
        assert!(hides_content(&el("td", Some("st-hide"), None), &s).is_none());
        assert!(
            hides_content(&el("td", Some("show_div"), Some("display:none;")), &s).is_none(),
            "an attribute selector in a media query shows it on phones"
        );
    }

    #[test]
    fn a_stylesheet_hide_yields_to_inline_style_and_other_rules() {
        let s = sheets(
            ".px{display:none} .hard{display:none!important} .later{display:none} .later{display:block} [hidden]{display:block}",
        );
        assert_eq!(
            hides_content(&el("div", Some("px"), None), &s),
            Some("hidden-ancestor")
        );
        assert!(hides_content(&el("div", Some("px"), Some("display:block")), &s).is_none());
        assert!(hides_content(&el("div", Some("hard"), Some("display:block")), &s).is_some());
        assert!(
            hides_content(
                &el("div", Some("hard"), Some("display:block!important")),
                &s
            )
            .is_none()
        );
        assert!(hides_content(&el("div", Some("later"), None), &s).is_none());
        let hidden = Element {
            tag: "div",
            hidden: true,
            ..Element::default()
        };
        assert!(
            hides_content(&hidden, &s).is_none(),
            "[hidden]{{display:block}}"
        );
        assert!(hides_content(&hidden, &HiddenSelectors::default()).is_some());
    }

    #[test]
    fn only_plain_selectors_hide_for_certain() {
        let s = sheets(
            ".wrap .a{display:none} .b:hover{display:none} u + .body .c{display:none} [class=d]{display:none} .e::before{display:none} img.f{display:none}",
        );
        for class in ["a", "b", "c", "d", "e"] {
            assert!(
                hides_content(&el("div", Some(class), None), &s).is_none(),
                "{class}"
            );
        }
        assert!(hides_content(&el("img", Some("f"), None), &s).is_some());
        assert!(hides_content(&el("div", Some("f"), None), &s).is_none());
    }

    #[test]
    fn stylesheet_classes_hide_unless_a_media_query_shows_them() {
        let s = sheets(
            "#_eoa_img, .px {display:none} @media (max-width:600px) { .mobile-logo { display:block !important } }",
        );
        let img = |class, id| ImageAttrs {
            class,
            id,
            ..Default::default()
        };
        assert_eq!(
            invisible(&img(None, Some("_eoa_img")), &s),
            Some("stylesheet-hidden")
        );
        assert_eq!(
            invisible(&img(Some("x px"), None), &s),
            Some("stylesheet-hidden")
        );
        let logo = ImageAttrs {
            class: Some("mobile-logo"),
            style: Some("display:none;width:0;max-height:0"),
            ..Default::default()
        };
        assert_eq!(invisible(&logo, &s), None);
    }

    #[test]
    fn visible_sizes() {
        let s = HiddenSelectors::default();
        let v = |w, h| {
            visible_size(
                &ImageAttrs {
                    width: w,
                    height: h,
                    ..Default::default()
                },
                &s,
            )
        };
        assert!(v(Some("564.0"), Some("88")));
        assert!(v(Some("100%"), None));
        assert!(v(None, Some("266")));
        assert!(!v(None, None));
        assert!(!v(Some("1"), Some("1")));
        assert!(!v(Some("0"), Some("40")));
    }

    /// A stylesheet's width or height beats the attributes (found in a real newsletter:
    /// `<img width="0" height="0" class="webonly">` under `.webonly{width:100%;height:auto}`).
    #[test]
    fn stylesheet_sizes_beat_size_attributes() {
        let s =
            sheets(".webonly{width:100%;height:auto} img{height:auto} .big{width:300px!important}");
        let img = |class, w, h, style| ImageAttrs {
            tag: "img",
            class,
            width: w,
            height: h,
            style,
            ..Default::default()
        };
        assert_eq!(
            invisible(&img(Some("webonly"), Some("0"), Some("0"), None), &s),
            None
        );
        assert!(visible_size(
            &img(Some("webonly"), Some("0"), Some("0"), None),
            &s
        ));
        // `height:auto` on every image: a 1x1 pixel stays 1 px wide, and tiny.
        assert_eq!(
            invisible(&img(None, Some("1"), Some("1"), None), &s),
            Some("tiny-size")
        );
        // An !important length beats inline style too.
        assert_eq!(
            invisible(
                &img(Some("big"), None, None, Some("width:1px;height:1px")),
                &s
            ),
            None
        );
    }

    #[test]
    fn selectors_are_read_to_their_subject() {
        let s = subject("body[yahoo] *[class].showForMobile");
        assert_eq!(s.classes, ["showForMobile"]);
        assert!(s.context && !s.conditional);
        let s = subject("table[class~=devicewidth] > td#x:first-child");
        assert_eq!(
            (s.tag.as_deref(), s.ids.as_slice()),
            (Some("td"), &["x".to_string()][..])
        );
        assert!(s.conditional);
        let s = subject("*[class*=\"content\"]");
        assert_eq!(s.substrings, ["content"]);
        assert_eq!(
            split_top("a, :not(.b, .c), d", ','),
            ["a", " :not(.b, .c)", " d"]
        );
    }

    /// `effect` before it read declarations in place: every declaration copied and
    /// lowercased, then looked at. Kept here to hold the new one equal to it.
    fn effect_by_copies(css: &str) -> Effect {
        let css = super::super::css::strip_comments(css);
        let decls = css.split(';').filter_map(|d| {
            let (name, value) = d.split_once(':')?;
            let value = value.trim().to_ascii_lowercase();
            let (value, important) = match value.rsplit_once('!') {
                Some((v, flag)) if flag.trim() == "important" => (v.trim().to_string(), true),
                _ => (value, false),
            };
            Some((name.trim().to_ascii_lowercase(), value, important))
        });
        let mut last: [Option<(bool, bool)>; 8] = [None; 8];
        for (name, value, important) in decls {
            let bit = prop_bit(&name);
            if bit == 0 || value.is_empty() {
                continue;
            }
            let slot = &mut last[bit.trailing_zeros() as usize];
            if slot.is_some_and(|(_, imp)| imp && !important) {
                continue;
            }
            *slot = Some((hiding_value(bit, &value), important));
        }
        // the fold into an Effect was not changed: shared with the code under test
        effect_of(&last)
    }

    /// `size_effect` before it read declarations in place.
    fn size_effect_by_copies(css: &str) -> (Weights, Weights) {
        let (mut sized, mut auto_sized) = (Weights::default(), Weights::default());
        for d in super::super::css::weighted_declarations(css) {
            let bit = match d.name.as_str() {
                "width" => WIDTH,
                "height" => HEIGHT,
                _ => continue,
            };
            let target = match d.value.as_str() {
                "auto" => &mut auto_sized,
                "" | "inherit" | "initial" | "unset" | "revert" => continue,
                v if hiding_value(bit, v) => continue,
                _ => &mut sized,
            };
            if d.important {
                target.important |= bit;
            } else {
                target.normal |= bit;
            }
        }
        (sized, auto_sized)
    }

    #[test]
    fn lowercase_keys_are_the_formatted_ones() {
        for name in ["Hide", "ärger", "ÄRGER-x_1", "", "İ"] {
            assert_eq!(
                lowercase_key('.', name),
                format!(".{}", name.to_lowercase())
            );
        }
    }

    #[test]
    fn keys_are_each_class_then_the_id() {
        let el = Element {
            tag: "td",
            class: Some(" Hide\tÄrger x "),
            id: Some(" Main "),
            ..Element::default()
        };
        let keys = |lowercase| {
            let mut seen = Vec::new();
            el.any_key(lowercase, |k| {
                seen.push(k.to_string());
                false
            });
            seen
        };
        assert_eq!(keys(true), [".hide", ".ärger", ".x", "#main"]);
        assert_eq!(keys(false), [".Hide", ".Ärger", ".x", "#Main"]);
        assert!(el.any_key(true, |k| k == ".x"));
        assert!(!el.any_key(true, |k| k == ".X"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]
        /// Issue 17: an image's size is read from its style's last `width` and `height`
        /// in place; it is what the list of every declaration gave.
        #[test]
        fn size_in_place_is_size_by_declarations(
            css in "((WIDTH|width|Height|height|max-width|color)( )?:( )?(0|1PX|2px|20Px|auto|50%|é|)( ?!important)?( ?/\\*x)?;?){0,5}",
            width in proptest::option::of("(0|1|3|40|40px)"),
            height in proptest::option::of("(0|1|3|40|40px)"),
        ) {
            let img = ImageAttrs {
                tag: "img",
                width: width.as_deref(),
                height: height.as_deref(),
                style: Some(&css),
                ..ImageAttrs::default()
            };
            let sheets = HiddenSelectors::default();
            let decls = super::super::css::declarations(&css);
            let by_declarations = size_with(&img, &sheets, |name| {
                decls.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
            });
            let s = size(&img, &sheets);
            proptest::prop_assert_eq!(
                (s.width, s.height, s.width_given, s.height_given),
                (by_declarations.width, by_declarations.height, by_declarations.width_given, by_declarations.height_given)
            );
        }
    }

    /// The memo gives what reading gives, also once it has been dropped for holding
    /// too much (more distinct styles than it holds, read twice over), and for styles
    /// too long to keep.
    #[test]
    fn remembered_effects_are_the_effects_read() {
        let styles: Vec<String> = (0..20_000)
            .map(|i| match i % 5 {
                4 => format!("display:none;{}width:{i}px", " ".repeat(MEMO_STYLE_LEN)),
                0 => format!("display:none; width:{i}px"),
                1 => format!("DISPLAY: block !important; height:{}px", i % 3),
                2 => format!("opacity:0.{}; color:#{i:06}", i % 10),
                _ => format!("visibility:hidden; max-width:{}px", i % 2),
            })
            .collect();
        assert!(styles.iter().map(String::len).sum::<usize>() > 2 * MEMO_BYTES);
        for _ in 0..2 {
            for s in &styles {
                assert_eq!(remembered_effect(s), effect(s), "{s}");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Issue 17: the style of every element is read in place now; what it gives
        /// must be what the copies gave, whatever the case, spacing, comments and flags.
        #[test]
        fn effect_in_place_is_effect_by_copies(
            css in "(( |\\t)?(DiSplay|display|VISIBILITY|opacity|Max-Height|max-width|height|WIDTH|color|x)( )?:( )?(none|NONE|hidden|Collapse|0|0PX|0px|1px|20Px|0\\.0|1E-3|inf|block|auto|AUTO|Inherit|unset|é|)( ?! ?(important|IMPORTANT|imp))?( ?/\\*[a-z;:]*(\\*/)?)?;?){0,6}"
        ) {
            proptest::prop_assert_eq!(effect(&css), effect_by_copies(&css));
            proptest::prop_assert_eq!(size_effect(&css), size_effect_by_copies(&css));
            proptest::prop_assert_eq!(rule_effects(&css), (effect(&css), size_effect(&css)));
        }
    }
}
