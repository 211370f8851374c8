//! Text that came with a mail (header values, addresses, URLs, names from the report
//! store) made safe to print on a terminal or to write into one log line. A sender
//! controls these bytes: left raw, an escape sequence rewrites the terminal of whoever
//! reads the report, a line break forges a log line, and a bidi override makes
//! `moc.elpmaxe` read as `example.com`. Every frontend and `mailveil report` goes
//! through [`printable`].

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal or a log line as it is: C0 controls (tab and
/// line breaks included: a value is one line), DEL, C1 controls, and the characters that
/// reorder or break text without being seen (bidi marks, embeddings, overrides and
/// isolates; the Unicode line and paragraph separators).
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// `s` with every unsafe character written as a visible escape (`\x1b`, `\u{202e}`);
/// borrowed when there is none.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !is_unsafe(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// Several values made printable at once (for one log line).
pub fn all<S: AsRef<str>, const N: usize>(values: [S; N]) -> [String; N] {
    values.map(|s| printable(s.as_ref()).into_owned())
}

/// JSON text (as serde_json writes it: C0 controls inside strings already escaped) with
/// the other unsafe characters escaped too (`\u202e`): the same JSON value, safe on a
/// terminal. Outside strings JSON is ASCII, so every such character is inside one.
pub fn json_printable(json: &str) -> Cow<'_, str> {
    let escape = |c: char| is_unsafe(c) && c as u32 >= 0x7f;
    if !json.chars().any(escape) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if escape(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_escaped_the_rest_borrowed() {
        assert!(matches!(
            printable("Grüße, 日本 <a@b.example>"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("a\x1b[2Jb\r\nc\td\x7f\u{85}e"),
            "a\\x1b[2Jb\\x0d\\x0ac\\x09d\\x7f\\x85e"
        );
        assert_eq!(
            printable("pay\u{202e}gpj.exe\u{2066}x\u{2028}"),
            "pay\\u{202e}gpj.exe\\u{2066}x\\u{2028}"
        );
    }

    #[test]
    fn json_keeps_its_value() {
        let v = serde_json::json!({"s": "a\u{1b}b\u{9b}c\u{202e}d\u{7f}"});
        let text = serde_json::to_string_pretty(&v).unwrap();
        let safe = json_printable(&text);
        assert!(!safe.chars().any(is_unsafe_outside_layout), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, v);
    }

    fn is_unsafe_outside_layout(c: char) -> bool {
        c != '\n' && is_unsafe(c)
    }
}
