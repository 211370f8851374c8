//! CSS: find every URL a stylesheet or a `style` attribute would fetch (`url()`, `src()`,
//! `@import "..."`, `image-set("...")`, also behind CSS escapes, which the tokenizer undoes)
//! and remove the declarations or rules that hold the ones to strip. Removal is by byte
//! range into the original text, so untouched CSS keeps every byte.

use cssparser::{Parser, ParserInput, Token};
use std::ops::Range;

/// Deeper block nesting than this is hostile; such a statement is removed whole.
const MAX_NESTING: usize = 32;

/// Something in CSS that fetches or runs when the mail is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CssEvent<'a> {
    /// A URL, with the property (or `@import`) it belongs to, lowercased.
    Url {
        /// The URL as written (CSS escapes undone).
        url: &'a str,
        /// The property, or `@import`.
        property: &'a str,
    },
    /// `expression()`, `behavior`, `-moz-binding`: script in CSS.
    Active {
        /// What it is.
        what: &'a str,
    },
}

/// A rule in a stylesheet, for the visibility heuristics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleText {
    /// The selector list.
    pub selectors: String,
    /// The declarations.
    pub declarations: String,
    /// Whether the rule sits inside an `@media` (or other conditional) block: it applies
    /// to some layouts only (responsive show/hide).
    pub in_media: bool,
}

/// What to do with the statement or token of a CSS event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CssDecision {
    /// Leave it.
    Keep,
    /// Remove the whole declaration or rule that holds it.
    Remove,
    /// Replace the URL token (`url(...)` or the quoted string) by this URL, written as a
    /// quoted string (`url("...")` for an unquoted URL). Only for `CssEvent::Url`; the
    /// URL must need no CSS escaping (no quotes, backslashes or newlines).
    Replace(String),
}

/// The result of scanning CSS.
#[derive(Debug, Default)]
pub struct Scan {
    /// Byte ranges to remove (whole declarations or rules), sorted and disjoint.
    pub remove: Vec<Range<usize>>,
    /// URL tokens to replace, by byte range (outside the removed ranges), sorted.
    pub replace: Vec<(Range<usize>, String)>,
    /// Qualified rules seen (stylesheets only).
    pub rules: Vec<RuleText>,
}

impl Scan {
    /// The CSS with the ranges removed, or `None` when nothing is removed.
    pub fn apply(&self, css: &str) -> Option<String> {
        if self.remove.is_empty() && self.replace.is_empty() {
            return None;
        }
        let mut edits: Vec<(Range<usize>, &str)> =
            self.remove.iter().map(|r| (r.clone(), "")).collect();
        edits.extend(
            self.replace
                .iter()
                .filter(|(r, _)| {
                    !self
                        .remove
                        .iter()
                        .any(|d| d.start <= r.start && r.end <= d.end)
                })
                .map(|(r, s)| (r.clone(), s.as_str())),
        );
        edits.sort_by_key(|(r, _)| r.start);
        let mut out = String::with_capacity(css.len());
        let mut at = 0;
        for (r, new) in edits {
            if r.start < at {
                continue;
            }
            out.push_str(&css[at..r.start]);
            out.push_str(new);
            at = r.end;
        }
        out.push_str(&css[at..]);
        Some(out)
    }
}

/// Scans CSS (a stylesheet or a declaration list); `remove(event)` says whether the
/// statement holding that event goes.
pub fn scan(css: &str, remove: &mut dyn FnMut(CssEvent) -> bool) -> Scan {
    scan_with(css, &mut |ev| {
        if remove(ev) {
            CssDecision::Remove
        } else {
            CssDecision::Keep
        }
    })
}

/// Scans CSS like `scan`, where `decide(event)` may also replace a URL token.
pub fn scan_with(css: &str, decide: &mut dyn FnMut(CssEvent) -> CssDecision) -> Scan {
    if let Some(rules) = quiet::rules(css) {
        return Scan {
            rules,
            ..Scan::default()
        };
    }
    scan_tokens(css, decide)
}

/// [`scan_with`] by the tokenizer, whatever the sheet holds.
fn scan_tokens(css: &str, decide: &mut dyn FnMut(CssEvent) -> CssDecision) -> Scan {
    let mut input = ParserInput::new(css);
    let mut parser = Parser::new(&mut input);
    let mut scan = Scan::default();
    let mut walker = Walker {
        css,
        decide,
        scan: &mut scan,
    };
    walker.block(&mut parser, 0, false);
    scan.remove = merge(std::mem::take(&mut scan.remove));
    scan.replace.sort_by_key(|(r, _)| r.start);
    scan
}

/// Most sheets of mail (126 of the corpus's 150) hold nothing that fetches or runs: for
/// them only the rules matter (the visibility heuristics learn from them), and a scan of
/// their bytes for blocks, strings and comments finds the same rules as the tokenizer
/// at a fraction of its cost. Written by hand because the tokenizer is what it replaces;
/// it gives up (the tokenizer runs) on anything it is not certain of.
mod quiet {
    use super::{MAX_NESTING, RuleText, strip_comments};

    /// Nesting deeper than this goes to the tokenizer (which removes past `MAX_NESTING`).
    const MAX_DEPTH: usize = MAX_NESTING / 2;

    /// The rules the tokenizer's scan would report for `css`, when that scan certainly
    /// finds no event and removes nothing; `None` otherwise.
    pub(super) fn rules(css: &str) -> Option<Vec<RuleText>> {
        if css.contains('\\') || may_hold_event(css.as_bytes()) {
            return None;
        }
        let mut s = Splitter {
            css,
            b: css.as_bytes(),
            i: 0,
            rules: Vec::new(),
        };
        s.block(0, false)?;
        Some(s.rules)
    }

    /// Whether `b` holds a word without which no CSS event can happen, ASCII case aside:
    /// every URL or script needs `url(`, `src(`, `image-set(`, `expression(`, `@import`
    /// or a `behavior` / `-moz-binding` property (a backslash may spell any of them with
    /// escapes: `rules` refuses those first). Kept in step with `Walker::value_token`: a
    /// new kind of URL there needs its word here (the property test compares the two).
    fn may_hold_event(b: &[u8]) -> bool {
        let ends_at =
            |at: usize, w: &[u8]| at >= w.len() && b[at - w.len()..at].eq_ignore_ascii_case(w);
        let starts_at = |at: usize, w: &[u8]| {
            b.get(at..at + w.len())
                .is_some_and(|x| x.eq_ignore_ascii_case(w))
        };
        memchr::memchr_iter(b'(', b).any(|at| {
            [&b"url"[..], b"src", b"image-set", b"expression"]
                .iter()
                .any(|w| ends_at(at, w))
        }) || memchr::memchr_iter(b'@', b).any(|at| starts_at(at + 1, b"import"))
            || memchr::memchr2_iter(b'b', b'B', b)
                .any(|at| starts_at(at, b"behavior") || starts_at(at, b"binding"))
    }

    struct Splitter<'c> {
        css: &'c str,
        b: &'c [u8],
        i: usize,
        rules: Vec<RuleText>,
    }

    impl Splitter<'_> {
        /// Steps over a comment or a string starting at `i` (CSS has no escapes here:
        /// `rules` refused any backslash); whether there was one.
        fn skip_comment_or_string(&mut self) -> bool {
            let b = self.b;
            match b[self.i] {
                b'/' if b.get(self.i + 1) == Some(&b'*') => {
                    self.i = memchr::memmem::find(&b[self.i + 2..], b"*/")
                        .map_or(b.len(), |j| self.i + 2 + j + 2);
                    true
                }
                q @ (b'"' | b'\'') => {
                    self.i += 1;
                    while let Some(&c) = b.get(self.i) {
                        if matches!(c, b'\n' | b'\r' | b'\x0c') {
                            break; // a bad string ends before the newline
                        }
                        self.i += 1;
                        if c == q {
                            break;
                        }
                    }
                    true
                }
                _ => false,
            }
        }

        /// Reads statements to the end of a `{}` block (`depth` > 0: through its `}`) or
        /// of the sheet, as `Walker::block` does.
        fn block(&mut self, depth: usize, in_media: bool) -> Option<()> {
            let mut start = self.i;
            while self.i < self.b.len() {
                if self.skip_comment_or_string() {
                    continue;
                }
                match self.b[self.i] {
                    b';' => {
                        self.i += 1;
                        start = self.i;
                    }
                    b'{' => {
                        self.rule(start, depth, in_media)?;
                        start = self.i;
                    }
                    b'}' if depth > 0 => {
                        self.i += 1;
                        return Some(());
                    }
                    b'(' | b'[' => self.group(depth)?,
                    _ => self.i += 1,
                }
            }
            Some(())
        }

        /// A `{}` block whose statement began at `start`; its rule is noted after the
        /// rules inside it, as the tokenizer's walk does.
        fn rule(&mut self, start: usize, depth: usize, in_media: bool) -> Option<()> {
            if depth + 1 > MAX_DEPTH {
                return None;
            }
            let open = self.i + 1;
            let prelude = strip_comments(&self.css[start..self.i]).trim().to_string();
            let media = in_media || prelude.starts_with('@');
            self.i = open;
            self.block(depth + 1, media)?;
            let close = self.i;
            if !prelude.starts_with('@') && !prelude.is_empty() {
                let declarations = self.css.get(open..close - 1).unwrap_or("").to_string();
                self.rules.push(RuleText {
                    selectors: prelude,
                    declarations,
                    in_media,
                });
            }
            Some(())
        }

        /// A `()` or `[]` group (a function's arguments too) with everything in it,
        /// blocks of any kind included: only its own closer ends a block, as in the
        /// tokenizer (`cssparser`'s `consume_until_end_of_block`).
        fn group(&mut self, depth: usize) -> Option<()> {
            let mut open: Vec<u8> = Vec::new();
            while self.i < self.b.len() {
                if self.skip_comment_or_string() {
                    continue;
                }
                let c = self.b[self.i];
                self.i += 1;
                match c {
                    b'(' => open.push(b')'),
                    b'[' => open.push(b']'),
                    b'{' => open.push(b'}'),
                    b')' | b']' | b'}' if open.last() == Some(&c) => {
                        open.pop();
                        if open.is_empty() {
                            return Some(());
                        }
                    }
                    _ => {}
                }
                if depth + open.len() > MAX_DEPTH {
                    return None;
                }
            }
            Some(())
        }
    }
}

struct Walker<'c, 'f, 's> {
    css: &'c str,
    decide: &'f mut dyn FnMut(CssEvent) -> CssDecision,
    scan: &'s mut Scan,
}

/// What the statement being read has shown so far.
#[derive(Default)]
struct Statement {
    start: usize,
    property: Option<String>,
    significant: usize,
    import: bool,
    remove: bool,
}

impl Walker<'_, '_, '_> {
    /// Reads statements (rules, at-rules, declarations) until the end of a block.
    fn block(&mut self, p: &mut Parser, depth: usize, in_media: bool) {
        let mut st = Statement {
            start: p.position().byte_index(),
            ..Statement::default()
        };
        loop {
            let at = p.position().byte_index();
            let token = match p.next_including_whitespace_and_comments() {
                Ok(t) => t.clone(),
                Err(_) => break,
            };
            let significant = !matches!(token, Token::WhiteSpace(_) | Token::Comment(_));
            match token {
                Token::Semicolon => {
                    self.end_statement(&st, p.position().byte_index());
                    st = Statement {
                        start: p.position().byte_index(),
                        ..Statement::default()
                    };
                    continue;
                }
                Token::CurlyBracketBlock => {
                    let open = p.position().byte_index();
                    // Comments before a rule (`/*IPHONE STYLES*/@media ...`) are not its prelude.
                    let prelude = strip_comments(&self.css[st.start..open.saturating_sub(1)])
                        .trim()
                        .to_string();
                    // Rules inside any at-rule block (`@media`, `@supports`...) apply only
                    // where its condition holds: to some layouts, not to all.
                    let media = in_media || prelude.starts_with('@');
                    if depth >= MAX_NESTING {
                        st.remove = true;
                        let _ = p.parse_nested_block(|_np| Ok::<(), cssparser::ParseError<()>>(()));
                    } else {
                        let _ = p.parse_nested_block(|np| {
                            self.block(np, depth + 1, media);
                            Ok::<(), cssparser::ParseError<()>>(())
                        });
                    }
                    let close = p.position().byte_index();
                    if !prelude.starts_with('@') && !prelude.is_empty() {
                        let inner = self
                            .css
                            .get(open..close.saturating_sub(1))
                            .unwrap_or("")
                            .to_string();
                        self.scan.rules.push(RuleText {
                            selectors: prelude,
                            declarations: inner,
                            in_media,
                        });
                    }
                    self.end_statement(&st, close);
                    st = Statement {
                        start: close,
                        ..Statement::default()
                    };
                    continue;
                }
                Token::AtKeyword(ref k) if st.significant == 0 => {
                    st.import = k.eq_ignore_ascii_case("import")
                }
                Token::Ident(ref name) if st.significant == 0 => {
                    st.property = Some(name.to_ascii_lowercase())
                }
                Token::QuotedString(ref s) if st.import => {
                    let token_range = at..p.position().byte_index();
                    st.remove |= self.url(s, "@import", token_range);
                }
                _ => self.value_token(p, &token, at, &mut st, depth),
            }
            if significant {
                st.significant += 1;
            }
        }
        self.end_statement(&st, p.position().byte_index());
    }

    /// A token inside a statement's value: URLs, functions, nested parentheses.
    fn value_token(
        &mut self,
        p: &mut Parser,
        token: &Token,
        at: usize,
        st: &mut Statement,
        depth: usize,
    ) {
        // Borrowed, not copied: this runs for every token of every declaration.
        let property = if st.import {
            "@import"
        } else {
            st.property.as_deref().unwrap_or_default()
        };
        match token {
            Token::UnquotedUrl(u) => {
                let remove = self.url(u, property, at..p.position().byte_index());
                st.remove |= remove;
            }
            Token::Function(name) => {
                if name.eq_ignore_ascii_case("expression") {
                    st.remove |= self.active("expression()");
                }
                let strings_are_urls = name.eq_ignore_ascii_case("url")
                    || name.eq_ignore_ascii_case("src")
                    || ends_with_ignore_ascii_case(name, "image-set")
                    || st.import;
                st.remove |= self.nested_values(p, property, strings_are_urls, depth);
            }
            Token::ParenthesisBlock | Token::SquareBracketBlock => {
                st.remove |= self.nested_values(p, property, false, depth);
            }
            Token::Ident(_) | Token::Colon => {}
            _ => {}
        }
        if matches!(st.property.as_deref(), Some("behavior" | "-moz-binding"))
            && !st.remove
            && matches!(token, Token::UnquotedUrl(_) | Token::Function(_))
        {
            st.remove |= self.active("behavior");
        }
    }

    /// The inside of a function or parenthesis: any URL in it counts for the statement.
    fn nested_values(
        &mut self,
        p: &mut Parser,
        property: &str,
        strings_are_urls: bool,
        depth: usize,
    ) -> bool {
        if depth >= MAX_NESTING {
            let _ = p.parse_nested_block(|_np| Ok::<(), cssparser::ParseError<()>>(()));
            return true;
        }
        let mut remove = false;
        let _ = p.parse_nested_block(|np| {
            let mut inner = Statement {
                property: Some(property.to_string()),
                ..Statement::default()
            };
            loop {
                let at = np.position().byte_index();
                let token = match np.next_including_whitespace_and_comments() {
                    Ok(t) => t.clone(),
                    Err(_) => break,
                };
                match token {
                    Token::QuotedString(ref s) if strings_are_urls => {
                        inner.remove |= self.url(s, property, at..np.position().byte_index());
                    }
                    ref t => self.value_token(np, t, at, &mut inner, depth + 1),
                }
            }
            remove = inner.remove;
            Ok::<(), cssparser::ParseError<()>>(())
        });
        remove
    }

    /// Decides a URL whose token spans `token` (`url(...)` or a quoted string): whether
    /// its statement goes; a replacement is recorded.
    fn url(&mut self, url: &str, property: &str, token: Range<usize>) -> bool {
        match (self.decide)(CssEvent::Url { url, property }) {
            CssDecision::Keep => false,
            CssDecision::Remove => true,
            CssDecision::Replace(new) => {
                let quoted = self
                    .css
                    .get(token.clone())
                    .is_some_and(|t| t.starts_with('"') || t.starts_with('\''));
                let text = if quoted {
                    format!("\"{new}\"")
                } else {
                    format!("url(\"{new}\")")
                };
                self.scan.replace.push((token, text));
                false
            }
        }
    }

    fn active(&mut self, what: &'static str) -> bool {
        (self.decide)(CssEvent::Active { what }) != CssDecision::Keep
    }

    fn end_statement(&mut self, st: &Statement, end: usize) {
        if st.remove && end > st.start {
            self.scan.remove.push(st.start..end);
        }
    }
}

/// Whether `s` ends with `suffix`, ASCII case aside.
fn ends_with_ignore_ascii_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Sorts ranges and merges overlapping ones (an outer rule removed with inner removals).
fn merge(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start < last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Declarations of a declaration list as lowercased `(name, value)` pairs, without
/// `!important`. For the visibility heuristics; not a full CSS parser.
pub fn declarations(css: &str) -> Vec<(String, String)> {
    weighted_declarations(css)
        .into_iter()
        .map(|d| (d.name, d.value))
        .collect()
}

/// One declaration of a declaration list, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    /// The property.
    pub name: String,
    /// The value, without `!important`.
    pub value: String,
    /// Whether it was `!important`.
    pub important: bool,
}

/// Declarations with their `!important` flag, comments removed. For the visibility
/// heuristics; not a full CSS parser.
pub fn weighted_declarations(css: &str) -> Vec<Declaration> {
    let mut out = Vec::new();
    for_each_declaration(css, |d| {
        out.push(Declaration {
            name: d.name.to_ascii_lowercase(),
            value: d.value.to_ascii_lowercase(),
            important: d.important,
        });
    });
    out
}

/// One declaration as written: name and value trimmed, not lowercased, the value
/// without its `!important`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawDeclaration<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub important: bool,
}

/// Calls `f` with each declaration of `css`, comments removed, in order: what
/// [`weighted_declarations`] gives, lowercased by it, without copying anything (it runs
/// on the `style` of every element that can hide what it holds).
pub(crate) fn for_each_declaration(css: &str, mut f: impl FnMut(RawDeclaration)) {
    let css = strip_comments(css);
    // One pass over the bytes, noting the first `:` and the last `!` of each
    // declaration: `split`, `split_once` and `rsplit_once` searched each declaration
    // three times, a twentieth of `clean()` on the style attributes of mail.
    let bytes = css.as_bytes();
    let (mut start, mut colon, mut bang) = (0, None, None);
    // Jumps from one of the three bytes to the next; the end closes the last one.
    let stops = memchr::memchr3_iter(b';', b':', b'!', bytes).chain([bytes.len()]);
    for i in stops {
        match bytes.get(i) {
            None | Some(b';') => {
                if let Some(c) = colon {
                    f(declaration(
                        &css[start..i],
                        c - start,
                        bang.map(|b| b - start),
                    ));
                }
                (start, colon, bang) = (i + 1, None, None);
            }
            Some(b':') if colon.is_none() => colon = Some(i),
            Some(b'!') if colon.is_some() => bang = Some(i),
            _ => {}
        }
    }
}

/// One declaration `d` whose first `:` is at `colon` and last `!` after it at `bang`.
fn declaration(d: &str, colon: usize, bang: Option<usize>) -> RawDeclaration<'_> {
    let value = &d[colon + 1..];
    let flagged = bang.and_then(|b| {
        let flag = trim(&d[b + 1..]);
        flag.eq_ignore_ascii_case("important")
            .then(|| trim(&d[colon + 1..b]))
    });
    RawDeclaration {
        name: trim(&d[..colon]),
        value: flagged.unwrap_or_else(|| trim(value)),
        important: flagged.is_some(),
    }
}

/// `str::trim`, with a quick way out for the usual ASCII edges.
fn trim(s: &str) -> &str {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
    let b = s.as_bytes();
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |e| e + 1);
    let s = &s[start..end.max(start)];
    // Unicode white space (U+00A0, U+3000...) at an edge: `str::trim` knows it.
    if s.as_bytes().first().is_some_and(|c| *c >= 0x80)
        || s.as_bytes().last().is_some_and(|c| *c >= 0x80)
    {
        s.trim()
    } else {
        s
    }
}

/// `css` without its `/* ... */` comments (an unclosed one runs to the end).
pub fn strip_comments(css: &str) -> std::borrow::Cow<'_, str> {
    if !css.contains("/*") {
        return std::borrow::Cow::Borrowed(css);
    }
    let mut out = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        out.push(' ');
        rest = rest[i + 2..]
            .find("*/")
            .map_or("", |j| &rest[i + 2 + j + 2..]);
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_remote(css: &str) -> (Option<String>, Vec<String>) {
        let mut seen = Vec::new();
        let scan = scan(css, &mut |e| {
            match e {
                CssEvent::Url { url, property } => seen.push(format!("{property}:{url}")),
                CssEvent::Active { what } => seen.push(format!("active:{what}")),
            }
            match e {
                CssEvent::Url { url, .. } => url.contains("://"),
                CssEvent::Active { .. } => true,
            }
        });
        (scan.apply(css), seen)
    }

    #[test]
    fn inline_declarations_with_remote_urls_are_removed_and_the_rest_kept_byte_for_byte() {
        let (out, seen) = strip_remote(
            "color: red; background-image:url('http://t.example/p.gif');  font-size:12px",
        );
        assert_eq!(out.as_deref(), Some("color: red;  font-size:12px"));
        assert_eq!(seen, vec!["background-image:http://t.example/p.gif"]);
    }

    #[test]
    fn local_urls_and_unrelated_strings_stay() {
        let css = "background:url(cid:bg@x) no-repeat; font-family:\"http://not-a-url\"";
        let (out, _) = strip_remote(css);
        assert_eq!(out, None);
    }

    #[test]
    fn imports_font_faces_media_and_image_set_are_found() {
        let css = "@import 'http://a.example/i.css';\n@import url(http://b.example/j.css) screen;\n\
                   @font-face { font-family: x; src: url(\"http://c.example/f.woff\") format('woff') }\n\
                   @media print { #eoa { background-image: url(http://d.example/P) } }\n\
                   .h { background-image: image-set(\"http://e.example/1x.png\" 1x) }\n\
                   p { color: blue }";
        let (out, seen) = strip_remote(css);
        let out = out.unwrap();
        for host in [
            "a.example",
            "b.example",
            "c.example",
            "d.example",
            "e.example",
        ] {
            assert!(!out.contains(host), "{host} left in {out}");
            assert!(seen.iter().any(|s| s.contains(host)), "{host} not seen");
        }
        assert!(out.contains("p { color: blue }"));
        assert!(out.contains("font-family: x;"));
        assert!(out.contains("@media print { #eoa {"));
    }

    #[test]
    fn css_escapes_do_not_hide_urls() {
        let (out, seen) =
            strip_remote("background:\\75 rl(http://t.example/x); b: u\\rl(http://t.example/y)");
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(out.as_deref(), Some(""));
    }

    #[test]
    fn expressions_and_behaviors_are_removed() {
        let (out, _) =
            strip_remote("color:red;background-color:expression(alert(1));behavior:url(x.htc)");
        assert_eq!(out.as_deref(), Some("color:red;"));
    }

    #[test]
    fn rules_are_reported_with_their_media_context() {
        let s = scan(
            "#a,.b{display:none} @media (max-width:600px){ .m{display:block!important} }",
            &mut |_| false,
        );
        assert_eq!(s.rules.len(), 2);
        assert_eq!(s.rules[0].selectors, "#a,.b");
        assert!(!s.rules[0].in_media);
        assert_eq!(s.rules[1].selectors, ".m");
        assert!(s.rules[1].in_media);
    }

    #[test]
    fn hostile_nesting_is_bounded() {
        let css = format!(
            "{}background:url(http://t.example/x){}",
            "a{".repeat(200),
            "}".repeat(200)
        );
        let (out, _) = strip_remote(&css);
        assert!(!out.unwrap_or_default().contains("t.example"));
    }

    #[test]
    fn replaced_url_tokens_keep_every_other_byte() {
        let css = "a{background:url(http://x.example/a.png) no-repeat}\n\
                   @import 'http://x.example/s.css';\n\
                   b{background-image:image-set(\"http://x.example/1.png\" 1x, url('http://x.example/2.png') 2x)}\n\
                   c{background:u\\rl(http://t.example/p);color:red}";
        let s = scan_with(css, &mut |e| match e {
            CssEvent::Url { url, .. } if url.contains("t.example") => CssDecision::Remove,
            CssEvent::Url { url, .. } => CssDecision::Replace(format!("P/{}", &url[7..])),
            CssEvent::Active { .. } => CssDecision::Remove,
        });
        assert_eq!(
            s.apply(css).unwrap(),
            "a{background:url(\"P/x.example/a.png\") no-repeat}\n\
             @import \"P/x.example/s.css\";\n\
             b{background-image:image-set(\"P/x.example/1.png\" 1x, url(\"P/x.example/2.png\") 2x)}\n\
             c{color:red}"
        );
    }

    #[test]
    fn comments_before_a_media_block_keep_it_a_media_block() {
        let s = scan(
            ".a{display:none} /*PHONES*/@media only screen and (max-width:480px) { .a{display:block!important} }",
            &mut |_| false,
        );
        assert_eq!(s.rules.len(), 2, "{:?}", s.rules);
        assert!(!s.rules[0].in_media);
        assert_eq!(s.rules[1].selectors, ".a");
        assert!(s.rules[1].in_media);
        let s = scan(
            "@supports (display:grid) { .b{display:block} }",
            &mut |_| false,
        );
        assert!(s.rules[0].in_media);
    }

    #[test]
    fn declarations_carry_their_weight() {
        assert_eq!(
            weighted_declarations("display:none ! important;/* x */width: 0"),
            vec![
                Declaration {
                    name: "display".into(),
                    value: "none".into(),
                    important: true
                },
                Declaration {
                    name: "width".into(),
                    value: "0".into(),
                    important: false
                }
            ]
        );
    }

    /// What the tokenizer's scan gives, events included.
    fn by_tokens(css: &str) -> (Scan, usize) {
        let mut events = 0;
        let scan = scan_tokens(css, &mut |_| {
            events += 1;
            CssDecision::Remove
        });
        (scan, events)
    }

    /// Issue 17: a sheet the byte scan takes must give the tokenizer's rules, and the
    /// tokenizer must find nothing in it to remove.
    fn quiet_is_the_tokenizer(css: &str) -> Result<(), String> {
        let Some(rules) = quiet::rules(css) else {
            return Ok(());
        };
        let (scan, events) = by_tokens(css);
        if events != 0 || !scan.remove.is_empty() || !scan.replace.is_empty() {
            return Err(format!("{css:?}: the tokenizer found {events} events"));
        }
        if rules != scan.rules {
            return Err(format!("{css:?}: {rules:?} != {:?}", scan.rules));
        }
        Ok(())
    }

    #[test]
    fn quiet_sheets_give_the_tokenizers_rules() {
        let quiet = [
            "<!--\n body{margin:0} .a, td.b{display:none;width:1px}\n-->",
            "/*x*/@media only screen and (max-width:480px){ .m{display:block!important} /*}*/ }",
            "a{font-family:\"a}b\";x:'{'} b{c:d",
            "a{b:c\nd{e:'x\n}f{g:h}",
            "@font-face{font-family:x;src:local(\"y\")} p{color:rgb(1,2,3)}",
            "a[title=\"}\"]{b:c} x(}){d:e} [ { ] }{f:g} {h:i} ;}; j{k}",
            "a{b:c /* unclosed",
            "a{b{c{d:e}}} @supports (display:grid){.g{display:grid}}",
        ];
        for css in quiet {
            assert!(quiet::rules(css).is_some(), "{css}");
            quiet_is_the_tokenizer(css).unwrap();
        }
        // Anything that may fetch or run, spelled any way, or nested deep, is tokenized.
        let loud = [
            "a{background:URL(x)}",
            "a{b:u\\72l(x)}",
            "a{b:\\75 rl(x)}",
            "@IMPORT \"x.css\";",
            "a{b:-webkit-image-set(\"x\" 1x)}",
            "@font-face{src:url(x)}",
            "a{b:expression(1)}",
            "a{Behavior:x}",
            "a{-moz-binding:x}",
            "a{b:src(\"x\")}",
            &"a{".repeat(MAX_NESTING / 2 + 1),
            &"(".repeat(MAX_NESTING / 2 + 1),
        ];
        for css in loud {
            assert!(quiet::rules(css).is_none(), "{css}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        #[test]
        fn any_quiet_sheet_gives_the_tokenizers_rules(
            parts in proptest::collection::vec(proptest::sample::select(&[
                "a", ".b", "#c", " ", "\n", ",", ":", ";", "{", "}", "(", ")", "[", "]",
                "\"", "'", "/*", "*/", "/", "*", "@media (max-width:600px)", "@x", "<!--",
                "-->", "display:none", "width:0", "height:auto", "img", "é", "url", "src",
                "!important", "=", "\r", "\x0c", "rgb(1,2,3)", "f(", "image", "-set",
                "\"https://t.example/p.gif\"", "import", "@", "expression", "behavior",
            ][..]), 0..40)
        ) {
            let css: String = parts.concat();
            if let Err(e) = quiet_is_the_tokenizer(&css) {
                return Err(proptest::test_runner::TestCaseError::fail(e));
            }
        }
    }

    /// The split as it was written before the one-pass reading: the reference.
    fn reference_declarations(css: &str) -> Vec<RawDeclaration<'_>> {
        let mut out = Vec::new();
        let css: &str = match strip_comments(css) {
            std::borrow::Cow::Borrowed(c) => c,
            std::borrow::Cow::Owned(c) => c.leak(),
        };
        for d in css.split(';') {
            let Some((name, value)) = d.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let (value, important) = match value.rsplit_once('!') {
                Some((v, flag)) if flag.trim().eq_ignore_ascii_case("important") => {
                    (v.trim(), true)
                }
                _ => (value, false),
            };
            out.push(RawDeclaration {
                name: name.trim(),
                value,
                important,
            });
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn declarations_are_read_as_the_three_searches_read_them(
            parts in proptest::collection::vec(proptest::sample::select(&[
                "a", "display", "Width", " ", "\t", "\n", "\x0b", "\u{a0}", "\u{3000}", "é",
                ":", ";", "!", "! important", "!IMPORTANT", "important", "0", "none", "/*",
                "*/", "url(x;y)", "px", "::", ";;", "!!",
            ][..]), 0..24)
        ) {
            let css: String = parts.concat();
            let mut seen = Vec::new();
            for_each_declaration(&css, |d| seen.push((d.name.to_string(), d.value.to_string(), d.important)));
            let want: Vec<_> = reference_declarations(&css)
                .into_iter()
                .map(|d| (d.name.to_string(), d.value.to_string(), d.important))
                .collect();
            proptest::prop_assert_eq!(seen, want, "{:?}", css);
        }
    }

    #[test]
    fn declarations_are_split_and_lowercased() {
        assert_eq!(
            declarations("Display: NONE !important; width:1px"),
            vec![
                ("display".to_string(), "none".to_string()),
                ("width".to_string(), "1px".to_string())
            ]
        );
    }
}
