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
    while let Some(rel) = find_http(&bytes[from..]) {
        let start = from + rel;
        let after_scheme = if starts_with_ignoring_case(&bytes[start..], b"https://") {
            start + 8
        } else if starts_with_ignoring_case(&bytes[start..], b"http://") {
            start + 7
        } else {
            from = start + 4;
            continue;
        };
        let glued = start > 0 && bytes[start - 1].is_ascii_alphanumeric();
        let mut end = after_scheme;
        for (i, c) in text[after_scheme..].char_indices() {
            if c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"') {
                break;
            }
            end = after_scheme + i + c.len_utf8();
        }
        end = trim_trailing(text, start, end);
        if !glued && end > after_scheme {
            out.push(start..end);
        }
        from = end.max(after_scheme);
    }
    out
}

/// Where `http` (any case) first occurs in `bytes`: the `h`s found by memchr, each
/// checked in place (no lowercased copy of a whole text part, issue 17).
pub(crate) fn find_http(bytes: &[u8]) -> Option<usize> {
    memchr::memchr2_iter(b'h', b'H', bytes)
        .find(|&i| starts_with_ignoring_case(&bytes[i + 1..], b"ttp"))
}

fn starts_with_ignoring_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes
        .get(..prefix.len())
        .is_some_and(|b| b.eq_ignore_ascii_case(prefix))
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

    #[test]
    fn http_is_found_in_any_case_where_a_scan_of_every_window_finds_it() {
        let texts: [&[u8]; 8] = [
            b"",
            b"htt",
            b"http",
            b"xxHTTP",
            b"hhttp",
            b"ht\xfftp hTtP",
            b"h\nttp",
            b"HtTphttp",
        ];
        for t in texts {
            let scan = t.windows(4).position(|w| w.eq_ignore_ascii_case(b"http"));
            assert_eq!(find_http(t), scan, "{:?}", String::from_utf8_lossy(t));
        }
    }
}
