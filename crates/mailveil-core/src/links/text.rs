//! URLs in text/plain: where they start and end, for the plain-text rewriter.

use std::ops::Range;

/// Byte ranges of the http(s) URLs in `text`. A URL starts at `http://` or `https://`
/// (any case, not glued to a preceding letter or digit) and ends before whitespace,
/// `<`, `>`, `"` or a control character; trailing `.,;:!?'` are left out, and so is a
/// trailing `)` or `]` that closes nothing inside the URL (`(see https://a.example/x)`
/// keeps `https://a.example/x`, `https://en.wikipedia.org/wiki/A_(B)` keeps its `)`).
pub fn find_urls(text: &str) -> Vec<Range<usize>> {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = lower[from..].find("http") {
        let start = from + rel;
        let after_scheme = if lower[start..].starts_with("https://") {
            start + 8
        } else if lower[start..].starts_with("http://") {
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
    }
}
