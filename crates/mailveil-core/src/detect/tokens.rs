//! Recipient tokens: the reader's address as it appears in tracking URLs: plain,
//! lowercased, URL-encoded, base64 (both alphabets, at every byte alignment), and the
//! MD5 / SHA-1 / SHA-256 hex digests that ESPs use as subscriber ids.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use md5::Md5;
use memchr::memmem::Finder;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Shorter addresses (and base64 runs) would match by chance.
const MIN_TOKEN_LEN: usize = 6;

/// A matcher for one message's recipient tokens. A message has a handful of forms to
/// look for and a few dozen URLs to look in: precompiled substring finders cost
/// nothing to build, where an automaton would cost more to build than it saves.
#[derive(Debug, Clone, Default)]
pub struct RecipientTokens {
    /// Case-insensitive forms: the address, URL-encoded forms, hex digests.
    folded: Vec<Folded>,
    /// Case-sensitive forms: base64.
    exact: Vec<Finder<'static>>,
}

impl RecipientTokens {
    /// Builds the matcher for these addresses (duplicates and junk are fine).
    pub fn new<'a>(addresses: impl IntoIterator<Item = &'a str>) -> Self {
        let mut folded = Vec::new();
        let mut exact = Vec::new();
        // The envelope and the headers name the same reader again and again, mostly in
        // lowercase already: each spelling is hashed and encoded once.
        let mut forms: Vec<String> = Vec::new();
        for addr in addresses {
            let addr = addr.trim().trim_start_matches('<').trim_end_matches('>');
            if addr.len() < MIN_TOKEN_LEN || !addr.contains('@') {
                continue;
            }
            forms.push(addr.to_string());
            forms.push(addr.to_ascii_lowercase());
        }
        forms.sort_unstable();
        forms.dedup();
        for form in forms.iter().map(String::as_str) {
            folded.push(form.to_string());
            folded.push(form.replace('@', "%40").replace('+', "%2B"));
            folded.push(form.replace('@', "%2540"));
            folded.push(hex(&Md5::digest(form.as_bytes())));
            folded.push(hex(&Sha1::digest(form.as_bytes())));
            folded.push(hex(&Sha256::digest(form.as_bytes())));
            exact.extend(base64_forms(form.as_bytes()));
        }
        let folded = folded.into_iter().map(|f| f.to_ascii_lowercase()).collect();
        RecipientTokens {
            folded: usable(folded).iter().map(|p| Folded::new(p)).collect(),
            exact: finders(exact),
        }
    }

    /// Whether `text` carries a recipient token.
    pub fn found_in(&self, text: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        if self.exact.iter().any(|f| f.find(text.as_bytes()).is_some()) {
            return true;
        }
        self.folded.iter().any(|f| f.found_in(text.as_bytes()))
    }

    /// Whether there is anything to look for.
    pub fn is_empty(&self) -> bool {
        self.folded.is_empty() && self.exact.is_empty()
    }
}

/// The base64 runs that appear in any base64 text containing `bytes`, whatever the
/// alignment of `bytes` inside the encoded data: for each of the three alignments,
/// the encoding of the whole 3-byte groups.
fn base64_forms(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for skip in 0..3 {
        let rest = &bytes[skip.min(bytes.len())..];
        let whole = rest.len() / 3 * 3;
        if whole < 9 {
            continue;
        }
        let chunk = &rest[..whole];
        out.push(STANDARD_NO_PAD.encode(chunk));
        out.push(URL_SAFE_NO_PAD.encode(chunk));
    }
    out
}

fn finders(patterns: Vec<String>) -> Vec<Finder<'static>> {
    usable(patterns)
        .iter()
        .map(|p| Finder::new(p.as_bytes()).into_owned())
        .collect()
}

/// The patterns worth looking for, once each.
fn usable(mut patterns: Vec<String>) -> Vec<String> {
    patterns.sort();
    patterns.dedup();
    patterns.retain(|p| p.len() >= MIN_TOKEN_LEN);
    patterns
}

/// A lowercase pattern found in any ASCII case without lowercasing a copy of each text
/// (issue 17): its longest run of bytes that have no case (`@`, `%40`, the digits of a
/// digest) is searched as it is, and the whole pattern compared around each hit.
#[derive(Debug, Clone)]
struct Folded {
    pattern: Vec<u8>,
    /// Where the run starts in the pattern, and its finder; `None`: the pattern is all
    /// letters (a digest of only a-f, in theory), searched in a lowercased copy.
    anchor: Option<(usize, Finder<'static>)>,
}

impl Folded {
    fn new(pattern: &str) -> Folded {
        let bytes = pattern.as_bytes();
        let mut best: Option<(usize, usize)> = None;
        let mut i = 0;
        while i < bytes.len() {
            let run = bytes[i..]
                .iter()
                .take_while(|b| !b.is_ascii_alphabetic())
                .count();
            if run > best.map_or(0, |(_, len)| len) {
                best = Some((i, run));
            }
            i += run.max(1);
        }
        Folded {
            pattern: bytes.to_vec(),
            anchor: best.map(|(at, len)| (at, Finder::new(&bytes[at..at + len]).into_owned())),
        }
    }

    /// Whether `text`, ASCII-lowercased, holds the pattern.
    fn found_in(&self, text: &[u8]) -> bool {
        let Some((at, finder)) = &self.anchor else {
            return Finder::new(&self.pattern)
                .find(&text.to_ascii_lowercase())
                .is_some();
        };
        // Every hit of the run, overlapping ones too (`00` twice in `000`).
        let mut from = *at;
        while let Some(hit) = text.get(from..).and_then(|t| finder.find(t)) {
            let start = from + hit - at;
            if text
                .get(start..start + self.pattern.len())
                .is_some_and(|t| t.eq_ignore_ascii_case(&self.pattern))
            {
                return true;
            }
            from += hit + 1;
        }
        false
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: &str = "Reader.Name@example.org";

    fn tokens() -> RecipientTokens {
        RecipientTokens::new([ADDR])
    }

    #[test]
    fn plain_lowercase_and_url_encoded_forms_match() {
        let t = tokens();
        assert!(t.found_in("https://t.example/o?e=reader.name@example.org"));
        assert!(t.found_in("https://t.example/o?e=Reader.Name%40example.org"));
        assert!(!t.found_in("https://t.example/o?e=someone.else%40example.org"));
    }

    #[test]
    fn digests_match_in_either_case() {
        let t = tokens();
        let md5 = hex(&Md5::digest(b"reader.name@example.org"));
        let sha256 = hex(&Sha256::digest(b"reader.name@example.org")).to_uppercase();
        assert!(t.found_in(&format!("https://p.example/i/{md5}.gif")));
        assert!(t.found_in(&format!("https://p.example/i?h={sha256}")));
    }

    #[test]
    fn base64_matches_at_every_alignment_inside_larger_data() {
        let t = tokens();
        for prefix in ["", "x", "xy", "{\"r\":\""] {
            let blob =
                URL_SAFE_NO_PAD.encode(format!("{prefix}reader.name@example.org\",\"id\":7}}"));
            assert!(
                t.found_in(&format!("https://x.example/c/{blob}")),
                "prefix {prefix:?}"
            );
        }
    }

    proptest::proptest! {
        /// Searched in place in any case, each form is found where a search of the
        /// lowercased text finds it, overlapping runs and all.
        #[test]
        fn the_in_place_search_finds_what_a_lowercased_copy_finds(
            pattern in "[a-f0-9@.%]{6,12}",
            text in "[a-fA-F0-9@.%x]{0,40}",
            flips in proptest::prelude::any::<u64>(),
            at in 0usize..40,
        ) {
            let pattern = pattern.to_ascii_lowercase();
            let cased: String = pattern
                .chars()
                .enumerate()
                .map(|(i, c)| if flips >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c })
                .collect();
            let at = at.min(text.len());
            for t in [text.clone(), format!("{}{cased}{}", &text[..at], &text[at..])] {
                let copy = t.to_ascii_lowercase().contains(&pattern);
                proptest::prop_assert_eq!(Folded::new(&pattern).found_in(t.as_bytes()), copy);
            }
        }
    }

    #[test]
    fn all_letter_forms_are_found_in_any_case_too() {
        let f = Folded::new("abcdef");
        assert!(f.anchor.is_none());
        assert!(f.found_in(b"x/ABCdef/y") && !f.found_in(b"abcde-f"));
        let overlapping = Folded::new("a00b00c");
        assert!(overlapping.found_in(b"000A00B00C"));
    }

    #[test]
    fn no_addresses_match_nothing() {
        let t = RecipientTokens::new(["", "x@y"]);
        assert!(t.is_empty());
        assert!(!t.found_in("anything"));
    }
}
