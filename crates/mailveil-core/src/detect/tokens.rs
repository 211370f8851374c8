//! Recipient tokens: the reader's address as it appears in tracking URLs: plain,
//! lowercased, URL-encoded, base64 (both alphabets, at every byte alignment), and the
//! MD5 / SHA-1 / SHA-256 hex digests that ESPs use as subscriber ids.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use md5::Md5;
use memchr::memmem::Finder;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;

/// Shorter addresses (and base64 runs) would match by chance.
const MIN_TOKEN_LEN: usize = 6;

/// A matcher for one message's recipient tokens. A message has a handful of forms to
/// look for and a few dozen URLs to look in: precompiled substring finders cost
/// nothing to build, where an automaton would cost more to build than it saves.
#[derive(Debug, Clone, Default)]
pub struct RecipientTokens {
    /// The tokens of each address, as the memo holds them.
    addresses: Vec<Arc<AddressTokens>>,
}

impl RecipientTokens {
    /// Builds the matcher for these addresses (duplicates and junk are fine).
    pub fn new<'a>(addresses: impl IntoIterator<Item = &'a str>) -> Self {
        let mut keys: Vec<&str> = addresses
            .into_iter()
            .map(|a| a.trim().trim_start_matches('<').trim_end_matches('>'))
            .filter(|a| a.len() >= MIN_TOKEN_LEN && a.contains('@'))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        // A lowercase address whose tokens another spelling of it already holds (the
        // envelope's `reader@x` and the header's `Reader@X`) is looked for once.
        let lowered: HashSet<String> = keys
            .iter()
            .filter(|k| k.bytes().any(|b| b.is_ascii_uppercase()))
            .map(|k| k.to_ascii_lowercase())
            .collect();
        keys.retain(|k| !lowered.contains(*k));
        RecipientTokens {
            addresses: keys.into_iter().map(memo::tokens_of).collect(),
        }
    }

    /// Whether `text` carries a recipient token.
    pub fn found_in(&self, text: &str) -> bool {
        self.addresses.iter().any(|a| a.found_in(text.as_bytes()))
    }

    /// Whether there is anything to look for.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }
}

/// The tokens of one address, built from that address alone.
#[derive(Debug)]
struct AddressTokens {
    /// Case-insensitive forms: the address, URL-encoded forms, hex digests.
    folded: Vec<Folded>,
    /// Case-sensitive forms: base64.
    exact: Vec<Finder<'static>>,
    /// The length of the shortest form: a shorter text (most query pieces and paths)
    /// holds none, and is not searched a dozen times (issue 17).
    shortest: usize,
}

impl AddressTokens {
    /// The forms of `addr` as written and lowercased (the same when it is lowercase).
    fn new(addr: &str) -> AddressTokens {
        let mut forms = vec![addr.to_string(), addr.to_ascii_lowercase()];
        forms.dedup();
        let mut folded = Vec::new();
        let mut exact = Vec::new();
        for form in forms.iter().map(String::as_str) {
            folded.push(form.to_string());
            folded.push(form.replace('@', "%40").replace('+', "%2B"));
            folded.push(form.replace('@', "%2540"));
            folded.push(hex(&Md5::digest(form.as_bytes())));
            folded.push(hex(&Sha1::digest(form.as_bytes())));
            folded.push(hex(&Sha256::digest(form.as_bytes())));
            exact.extend(base64_forms(form.as_bytes()));
        }
        let folded = usable(folded.into_iter().map(|f| f.to_ascii_lowercase()).collect());
        let exact = usable(exact);
        let shortest = folded.iter().chain(&exact).map(String::len).min();
        AddressTokens {
            folded: folded.iter().map(|p| Folded::new(p)).collect(),
            exact: exact
                .iter()
                .map(|p| Finder::new(p.as_bytes()).into_owned())
                .collect(),
            shortest: shortest.unwrap_or(usize::MAX),
        }
    }

    fn found_in(&self, text: &[u8]) -> bool {
        if text.len() < self.shortest {
            return false;
        }
        self.exact.iter().any(|f| f.find(text).is_some())
            || self.folded.iter().any(|f| f.found_in(text))
    }
}

/// Tokens built once per address (issue 17): hashing and encoding an address and
/// compiling a dozen finders for it cost more than most mails' whole link checks, and a
/// daemon sees the same few readers again and again. The memo maps an address to what is
/// built from that address alone, so it cannot give one reader's tokens for another's
/// mail, and the output of `clean()` is what it would be without it. One memo per
/// thread: no lock between the threads that clean mail. Bounded: a client that names
/// many recipients evicts the least recently used ones, nothing grows.
mod memo {
    use super::AddressTokens;
    use std::cell::RefCell;
    use std::sync::Arc;

    /// Addresses kept per thread: a site's regular readers, not a hostile envelope.
    pub(super) const CAPACITY: usize = 64;

    thread_local! {
        /// Least recently used first.
        static MEMO: RefCell<Vec<(String, Arc<AddressTokens>)>> =
            const { RefCell::new(Vec::new()) };
    }

    /// The tokens of `addr`, from the memo or built (and kept).
    pub(super) fn tokens_of(addr: &str) -> Arc<AddressTokens> {
        let hit = MEMO.with_borrow_mut(|memo| {
            let at = memo.iter().position(|(key, _)| key == addr)?;
            let entry = memo.remove(at);
            let tokens = Arc::clone(&entry.1);
            memo.push(entry);
            Some(tokens)
        });
        if let Some(tokens) = hit {
            return tokens;
        }
        let tokens = Arc::new(AddressTokens::new(addr));
        MEMO.with_borrow_mut(|memo| {
            if memo.len() >= CAPACITY {
                memo.remove(0);
            }
            memo.push((addr.to_string(), Arc::clone(&tokens)));
        });
        tokens
    }

    /// How many addresses this thread's memo holds.
    #[cfg(test)]
    pub(super) fn len() -> usize {
        MEMO.with_borrow(Vec::len)
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
    fn the_memo_is_bounded_and_keeps_each_address_apart() {
        let many: Vec<String> = (0..3 * memo::CAPACITY)
            .map(|i| format!("reader{i}@example.org"))
            .collect();
        let all = RecipientTokens::new(many.iter().map(String::as_str));
        assert!(memo::len() <= memo::CAPACITY);
        assert!(many.iter().all(|a| all.found_in(&format!("?e={a}"))));
        // Each address again, alone: its own tokens, no other's, from the memo or not.
        for (i, a) in many.iter().enumerate().rev() {
            let one = RecipientTokens::new([a.as_str()]);
            let other = &many[(i + 1) % many.len()];
            assert!(one.found_in(&format!("?e={a}&x=1")));
            assert!(!one.found_in(&format!("?e={other}")), "{a} matched {other}");
        }
        assert!(memo::len() <= memo::CAPACITY);
    }

    #[test]
    fn a_lowercase_spelling_another_address_covers_is_looked_for_once() {
        let t =
            RecipientTokens::new(["reader.name@example.org", ADDR, "<reader.name@example.org>"]);
        assert_eq!(t.addresses.len(), 1);
        assert!(t.found_in("https://t.example/o?e=reader.name%40example.org"));
        let sha1 = hex(&Sha1::digest(b"reader.name@example.org"));
        assert!(t.found_in(&format!("https://t.example/o/{sha1}")));
    }

    /// A text shorter than every form is not searched, and a text of exactly the
    /// shortest form's length is.
    #[test]
    fn the_shortest_form_bounds_what_is_searched() {
        let addr = "r@ex.io";
        let t = AddressTokens::new(addr);
        assert_eq!(t.shortest, addr.len());
        assert!(t.found_in(b"R@EX.IO"));
        assert!(!t.found_in(b"r@ex.i"));
        // The base64 forms of a 23-byte address encode 21, 21 and 18 of its bytes: 28,
        // 28 and 24 characters, longer than the address.
        let long = RecipientTokens::new([ADDR]);
        assert_eq!(long.addresses[0].shortest, ADDR.len());
    }

    #[test]
    fn no_addresses_match_nothing() {
        let t = RecipientTokens::new(["", "x@y"]);
        assert!(t.is_empty());
        assert!(!t.found_in("anything"));
    }
}
