//! URLs in text/plain: where they start and end, for the plain-text rewriter.

use std::ops::Range;

/// Byte ranges of the http(s) URLs in `text`. A URL starts at `http://` or `https://`
/// (any case, not glued to a preceding letter or digit) and ends before whitespace,
/// `<`, `>`, `"` or a control character; trailing `.,;:!?'` are left out, and so is a
/// trailing `)` or `]` that closes nothing inside the URL (`(see https://a.example/x)`
/// keeps `https://a.example/x`, `https://en.wikipedia.org/wiki/A_(B)` keeps its `)`).
pub fn find_urls(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some((start, after_scheme)) = next_scheme(bytes, from) {
        let glued = start > 0 && bytes[start - 1].is_ascii_alphanumeric();
        let end = url_end(text, start, after_scheme);
        if !glued && end > after_scheme {
            out.push(start..end);
        }
        from = end.max(after_scheme);
    }
    out
}

/// Where the URL whose scheme ends at `after_scheme` ends: before whitespace, `<`, `>`,
/// `"` or a control character, trailing punctuation left out.
fn url_end(text: &str, start: usize, after_scheme: usize) -> usize {
    let mut end = after_scheme;
    for (i, c) in text[after_scheme..].char_indices() {
        if c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"') {
            break;
        }
        end = after_scheme + i + c.len_utf8();
    }
    trim_trailing(text, start, end)
}

/// Whether `bytes` hold an `http://` or `https://` (any case) where [`find_urls`]
/// would look.
pub(crate) fn has_scheme(bytes: &[u8]) -> bool {
    next_scheme(bytes, 0).is_some()
}

/// The first `http://` or `https://` (any case) that starts at `from` or later: where
/// it starts and where its `//` ends. Found by its `://`, which prose seldom holds:
/// looking for every `h` instead stopped about 1,000 times in a 20 KB text (issue 17).
fn next_scheme(bytes: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(rel) = memchr::memmem::find(bytes.get(at..)?, b"://") {
        let colon = at + rel;
        let start = [5, 4].into_iter().find_map(|n| {
            let start = colon.checked_sub(n).filter(|&s| s >= from)?;
            bytes[start..colon]
                .eq_ignore_ascii_case(&b"https"[..n])
                .then_some(start)
        });
        if let Some(start) = start {
            return Some((start, colon + 3));
        }
        at = colon + 1;
    }
    None
}

fn trim_trailing(text: &str, start: usize, mut end: usize) -> usize {
    loop {
        let url = &text[start..end];
        let Some(last) = url.chars().last() else {
            return end;
        };
        let strip = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' => true,
            ')' => url.matches('(').count() < url.matches(')').count(),
            ']' => url.matches('[').count() < url.matches(']').count(),
            _ => false,
        };
        if !strip {
            return end;
        }
        end -= last.len_utf8();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(text: &str) -> Vec<&str> {
        find_urls(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn finds_urls_and_trims_punctuation() {
        assert_eq!(
            urls(
                "Read https://a.example/x?y=1. Then (see http://b.example/p) and HTTPS://C.example/!"
            ),
            vec![
                "https://a.example/x?y=1",
                "http://b.example/p",
                "HTTPS://C.example/"
            ]
        );
        assert_eq!(
            urls("wiki https://en.wikipedia.org/wiki/A_(B), ok"),
            vec!["https://en.wikipedia.org/wiki/A_(B)"]
        );
        assert_eq!(
            urls("<https://a.example/x>\n\"http://b.example\""),
            vec!["https://a.example/x", "http://b.example"]
        );
        assert_eq!(
            urls("xhttp://a.example http:// https://é.example/ü"),
            vec!["https://é.example/ü"]
        );
        assert!(urls("no links, just http and https").is_empty());
        assert_eq!(
            urls("hhttps://a.example hTtP://b.example"),
            vec!["hTtP://b.example"]
        );
    }

    /// The scan before issue 17's: every `http` (any case) in turn, a URL where
    /// `http://` or `https://` begins there (where it ends is not what is compared).
    fn urls_by_every_http(text: &str) -> Vec<Range<usize>> {
        let bytes = text.as_bytes();
        let lower = bytes.to_ascii_lowercase();
        let (mut out, mut from) = (Vec::new(), 0);
        while let Some(rel) = lower[from..].windows(4).position(|w| w == b"http") {
            let start = from + rel;
            let after_scheme = if lower[start..].starts_with(b"https://") {
                start + 8
            } else if lower[start..].starts_with(b"http://") {
                start + 7
            } else {
                from = start + 4;
                continue;
            };
            let end = url_end(text, start, after_scheme);
            if !(start > 0 && bytes[start - 1].is_ascii_alphanumeric()) && end > after_scheme {
                out.push(start..end);
            }
            from = end.max(after_scheme);
        }
        out
    }

    proptest::proptest! {
        /// URLs are found where the scan of every `http` found them, in text made of
        /// the pieces that matter: schemes in any case, glued or not, cut short,
        /// nested, and the punctuation that ends a URL or not.
        #[test]
        fn urls_are_found_where_every_http_scan_finds_them(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "http", "https", "HTTPS", "hTtP", "://", ":", "/", "//", "h", "s", "x",
                    " ", ".", ")", "(", "\n", "a.example", "é", "<", "?u=",
                ]),
                0..24,
            ),
        ) {
            let text: String = pieces.concat();
            proptest::prop_assert_eq!(find_urls(&text), urls_by_every_http(&text));
            proptest::prop_assert_eq!(
                has_scheme(text.as_bytes()),
                text.to_ascii_lowercase().contains("http://")
                    || text.to_ascii_lowercase().contains("https://")
            );
        }
    }
}
