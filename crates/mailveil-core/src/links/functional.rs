//! Functional links: unsubscribe and preference links, sign-in and magic links,
//! confirm / verify / reset / activate links. They must keep working, so their
//! parameters are never stripped, even when they carry the reader's address (an
//! unsubscribe link that no longer says who unsubscribes does not unsubscribe).
//! Unwrapping a recoverable redirect around them is still done when the destination
//! itself is functional (it is where the click led anyway). When only a wrapper says so
//! (its URL is the one in `List-Unsubscribe`, or only its own URL has the keyword), the
//! link is kept wrapped and whole: that keeps the decision the same on a second run.
//!
//! A link is functional when
//! - it is one of the URLs in `List-Unsubscribe`, or has the same host and path as one
//!   of them, or
//! - its text, or its host, path and query (percent-decoded), say so: any of
//!   [`FUNCTIONAL_STEMS`] as a substring, or any of [`FUNCTIONAL_WORDS`] as a whole word
//!   (or a run of whole words). Text is lowercased and common accents are folded first,
//!   so the lists are written in plain ASCII.

use super::parts::{Parts, percent_decoded};
use crate::rules::Rules;
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use std::borrow::Cow;
use std::cell::OnceCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, OnceLock};

/// Distinctive unsubscribe / opt-out / preference-centre stems in common languages,
/// matched as substrings (they do not occur inside other words).
pub const FUNCTIONAL_STEMS: &[&str] = &[
    // English
    "unsubscrib",
    "optout",
    "opt-out",
    "opt_out",
    "opt out",
    "preference center",
    "preference-center",
    "preference_center",
    "preferencecenter",
    "preferences-center",
    "subscription center",
    "subscription-center",
    "subscriptioncenter",
    "manage subscription",
    "manage-subscription",
    "manage_subscription",
    "managesubscription",
    "email preferences",
    "email-preferences",
    "email_preferences",
    "emailpreferences",
    "list-unsubscribe",
    // Dutch (afmelden, uitschrijven), Danish/Norwegian (afmeld, avmeld)
    "afmeld",
    "uitschrijv",
    "avmeld",
    // German (abmelden, abbestellen, austragen aus dem Newsletter)
    "abmeld",
    "abbestell",
    "newsletter austragen",
    "newsletter-austragen",
    // French (se désabonner, désinscription)
    "desabonn",
    "desinscri",
    // Spanish (darse de baja, cancelar suscripción)
    "darse de baja",
    "darse-de-baja",
    "dar de baja",
    "date de baja",
    "cancelar suscripcion",
    "cancelar-suscripcion",
    "anular suscripcion",
    "anular-suscripcion",
    // Italian (disiscriviti, disiscrizione)
    "disiscriv",
    "disiscrizion",
    "annulla iscrizione",
    // Portuguese (cancelar inscrição, descadastrar)
    "cancelar inscricao",
    "cancelar-inscricao",
    "descadastr",
    // Swedish (avregistrera, avsluta prenumeration)
    "avregistrer",
    "avsluta prenumeration",
    "avprenumerer",
    // Polish, Czech, Hungarian, Finnish
    "wypisz",
    "odhlasit",
    "odhlaseni",
    "leiratkoz",
    "peruuta tilaus",
];

/// Words for preferences, sign-in / magic links and confirm / verify / reset / activate
/// links, matched as whole words (a space means consecutive words), so that `author`
/// is not `auth` and `reconfirmed` in an article slug is not `confirm`.
pub const FUNCTIONAL_WORDS: &[&str] = &[
    // preferences, opt-in
    "unsub",
    "preferences",
    "preference",
    "optin",
    "opt in",
    "double opt in",
    // confirm
    "confirm",
    "confirmation",
    "confirmer",
    "confirmar",
    "conferma",
    "confermare",
    "bestatigen",
    "bestaetigen",
    "bestatigung",
    "bevestig",
    "bevestigen",
    "bekraefta",
    "bekrafta",
    // verify, validate
    "verify",
    "verification",
    "verifizieren",
    "verifier",
    "verificar",
    "validate",
    "validation",
    // activate
    "activate",
    "activation",
    "aktivieren",
    "activer",
    "activar",
    "attiva",
    // reset, password
    "reset",
    "password",
    "passwort",
    "wachtwoord",
    "mot de passe",
    "contrasena",
    // sign-in, magic links
    "login",
    "log in",
    "logon",
    "signin",
    "sign in",
    "einloggen",
    "anmelden",
    "inloggen",
    "connexion",
    "se connecter",
    "iniciar sesion",
    "accedi",
    "magic link",
    "magiclink",
    "auth",
    "authenticate",
    "otp",
];

/// What makes one link functional besides its URL, read once per link: its text (folded,
/// and its rule and keyword found, once however many stages of unwrapping are asked
/// about), the message's `List-Unsubscribe` URLs and the rules (issue 17: the text was
/// folded and searched again for every stage).
pub(crate) struct Functional<'a> {
    link_text: Option<&'a str>,
    list_unsubscribe: &'a [String],
    rules: Option<&'a Rules>,
    /// The link text folded (`None`: no text).
    text_folded: OnceCell<Option<String>>,
    /// The `[[functional]]` rule the text matches.
    text_rule: OnceCell<Option<&'a str>>,
    /// The keyword of the text.
    text_keyword: OnceCell<Option<&'static str>>,
}

impl<'a> Functional<'a> {
    pub(crate) fn new(
        link_text: Option<&'a str>,
        list_unsubscribe: &'a [String],
        rules: Option<&'a Rules>,
    ) -> Functional<'a> {
        Functional {
            link_text,
            list_unsubscribe,
            rules,
            text_folded: OnceCell::new(),
            text_rule: OnceCell::new(),
            text_keyword: OnceCell::new(),
        }
    }

    /// Why the link `url` (one stage of unwrapping) is functional, or `None`; `parts` is
    /// `Parts::parse(url)` (the caller has it for the final URL). The link text counts
    /// for every stage. In order: a `[[functional]]` rule (text, then URL), the
    /// `List-Unsubscribe` URLs, a keyword of the text, a keyword of the URL.
    pub(crate) fn reason(&self, url: &str, parts: Option<&Parts<'_>>) -> Option<String> {
        // The URL is percent-decoded and folded once, without its scheme: that is what
        // the keyword search reads, and the rule match reads the scheme and `://` before
        // it (decoding and folding go byte by byte and character by character, and no
        // escape can span `://`, so the two pieces are the whole URL's).
        let (scheme, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, url),
        };
        let folded_rest = fold(&percent_decoded(rest, true));
        if let Some(rules) = self.rules {
            if let Some(id) = self.text_rule(rules) {
                return Some(format!("rule {id}"));
            }
            let folded_url = match scheme {
                Some(scheme) => {
                    let mut u = fold(&percent_decoded(scheme, true));
                    u.reserve(3 + folded_rest.len());
                    u.push_str("://");
                    u.push_str(&folded_rest);
                    Cow::Owned(u)
                }
                None => Cow::Borrowed(folded_rest.as_str()),
            };
            if let Some(id) = rules.functional_match(&folded_url, parts.map(|p| p.host.as_str())) {
                return Some(format!("rule {id}"));
            }
        }
        if let Some(reason) = self.list_unsubscribe_reason(url, parts) {
            return Some(reason);
        }
        if let Some(k) = self.text_keyword() {
            return Some(format!("link text: {k}"));
        }
        keyword_folded(&folded_rest).map(|k| format!("url: {k}"))
    }

    fn folded_text(&self) -> Option<&str> {
        self.text_folded
            .get_or_init(|| self.link_text.map(fold))
            .as_deref()
    }

    fn text_rule(&self, rules: &'a Rules) -> Option<&'a str> {
        *self
            .text_rule
            .get_or_init(|| rules.functional_match(self.folded_text().unwrap_or(""), None))
    }

    fn text_keyword(&self) -> Option<&'static str> {
        *self
            .text_keyword
            .get_or_init(|| self.folded_text().and_then(keyword_folded))
    }

    /// The URL is one of the `List-Unsubscribe` URLs, or has the host and path of one.
    fn list_unsubscribe_reason(&self, url: &str, parts: Option<&Parts<'_>>) -> Option<String> {
        for entry in self.list_unsubscribe {
            let lu = entry
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim();
            if url == lu {
                // The entry splits as the URL does: `parts`.
                if parts.is_some() {
                    return Some("list-unsubscribe".into());
                }
                continue;
            }
            let Some(p) = parts else {
                continue;
            };
            if p.path.len() <= 1 {
                continue;
            }
            let path = p.path.trim_end_matches('/');
            // The entry's path is a piece of it: an entry without this path anywhere
            // cannot have it, and is not split (most links share no path with the
            // header's URLs).
            if !lu.contains(path) {
                continue;
            }
            let Some(lu_parts) = Parts::parse(lu) else {
                continue;
            };
            if p.host == lu_parts.host && path == lu_parts.path.trim_end_matches('/') {
                return Some("list-unsubscribe (same host and path)".into());
            }
        }
        None
    }
}

/// Why the link `url` (one stage of unwrapping) is functional, or `None`; the link
/// text counts for every stage. [`Functional::reason`] for one URL.
#[cfg(test)]
pub(crate) fn functional_reason(
    url: &str,
    link_text: Option<&str>,
    list_unsubscribe: &[String],
    rules: Option<&Rules>,
) -> Option<String> {
    Functional::new(link_text, list_unsubscribe, rules).reason(url, Parts::parse(url).as_ref())
}

/// Whether a link's text alone makes it functional (what [`Functional::reason`] reads of
/// the text): when it does not, the decision made without the text stands.
pub(crate) fn text_is_functional(text: &str, rules: &Rules) -> bool {
    if text.is_empty() {
        return false;
    }
    let folded = fold(text);
    keyword_folded(&folded).is_some() || rules.functional_match(&folded, None).is_some()
}

/// The first functional keyword in `text` (leftmost in the text).
#[cfg(test)]
pub(crate) fn keyword(text: &str) -> Option<&'static str> {
    keyword_folded(&fold(text))
}

/// The shortest keyword: a folded text shorter than that has none (a word is searched
/// between spaces that its text need not have).
const SHORTEST: usize = {
    let stem = shortest(FUNCTIONAL_STEMS, false);
    let word = shortest(FUNCTIONAL_WORDS, false);
    if stem < word { stem } else { word }
};

/// [`keyword`] of a text already folded.
fn keyword_folded(folded: &str) -> Option<&'static str> {
    if folded.len() < SHORTEST {
        return None;
    }
    let search = searcher();
    if let Some(i) = search.stem(folded) {
        return Some(FUNCTIONAL_STEMS[i]);
    }
    search.word(&words(folded)).map(|i| FUNCTIONAL_WORDS[i])
}

/// The words of a folded text as they are searched: every run of non-alphanumerics
/// becomes one space, with a space at both ends, so that a phrase " opt in " matches
/// whole words only.
fn words(folded: &str) -> String {
    if folded.is_ascii() {
        // The same, byte by byte (an ASCII character is alphanumeric as a byte), over
        // spaces laid down first: a run of separators only moves past one of them.
        let mut words = vec![b' '; folded.len() + 2];
        let mut len = 1;
        let mut space = true;
        for &b in folded.as_bytes() {
            if b.is_ascii_alphanumeric() {
                words[len] = b;
                len += 1;
                space = false;
            } else if !space {
                len += 1;
                space = true;
            }
        }
        if !space {
            len += 1;
        }
        words.truncate(len);
        return String::from_utf8(words).expect("ASCII in, ASCII out");
    }
    let mut words = String::with_capacity(folded.len() + 2);
    words.push(' ');
    for piece in folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        words.push_str(piece);
        words.push(' ');
    }
    words
}

/// One automaton for the stems and one for the space-delimited words: a link is checked
/// in one pass over its text instead of one search per keyword.
struct Matchers {
    stems: AhoCorasick,
    words: AhoCorasick,
}

impl Matchers {
    fn build() -> Matchers {
        let build = |patterns: Vec<String>| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .kind(Some(AhoCorasickKind::DFA))
                .build(patterns)
                .expect("functional keywords are plain strings")
        };
        Matchers {
            stems: build(FUNCTIONAL_STEMS.iter().map(|s| s.to_string()).collect()),
            words: build(word_patterns().collect()),
        }
    }
}

/// The word keywords as they are searched: between spaces.
fn word_patterns() -> impl Iterator<Item = String> {
    FUNCTIONAL_WORDS.iter().map(|w| format!(" {w} "))
}

/// The keywords by their first two bytes: the first searches of a process look up,
/// at each position of the text that may begin one, the few keywords that begin with
/// the two bytes there.
/// Written by hand because every automaton crate builds its automaton at run time, and
/// even aho-corasick's cheapest (a noncontiguous NFA, 0.78 M instructions) was a sixth of
/// a `filter` process on a mail with links (issue 17); this index is some thousands.
///
/// Positions are skipped as Wu and Manber's search does: the window of the shortest
/// keyword's length at each position ends with two bytes, and a pair of bytes that no
/// keyword has that near its start proves that no keyword begins at this position or
/// the next few (issue 17: most of a link's URL begins no keyword).
struct Scan {
    /// Per bucket of [`Scan::bucket`], the keywords that begin with the bytes hashed
    /// there, in keyword order: the first one found at a position is the leftmost-first.
    buckets: Vec<Vec<(u16, Box<[u8]>)>>,
    /// The length of the shortest keyword: the window.
    shortest: usize,
    /// How far the window may move on, by the slot of its last two bytes: see
    /// [`shifts`].
    shift: &'static [u8; SHIFT_SLOTS],
}

/// The slots of a shift table: pairs of bytes are hashed to one of these.
const SHIFT_SLOTS: usize = 1 << 12;

/// The slot of the pair of bytes `a`, `b` (ASCII pairs share one only now and then).
const fn slot(a: u8, b: u8) -> usize {
    ((a as usize) << 5 ^ b as usize) & (SHIFT_SLOTS - 1)
}

/// Byte `i` of keyword `k`, as searched: with a space on both sides when `spaced`.
const fn keyword_byte(k: &[u8], i: usize, spaced: bool) -> u8 {
    if !spaced {
        k[i]
    } else if i == 0 || i == k.len() + 1 {
        b' '
    } else {
        k[i - 1]
    }
}

/// The length of the shortest keyword as searched.
const fn shortest(keywords: &[&str], spaced: bool) -> usize {
    let mut min = usize::MAX;
    let mut i = 0;
    while i < keywords.len() {
        if keywords[i].len() < min {
            min = keywords[i].len();
        }
        i += 1;
    }
    if spaced { min + 2 } else { min }
}

/// The shift table of [`Scan`], computed when compiling (no start-up cost for a
/// `filter` process): per slot of a pair of bytes, the least distance from where a
/// keyword has that pair (among its first `shortest` bytes) to the end of that
/// keyword's window, `shortest - 1` for a slot no keyword's pair falls in. Zero: a
/// keyword may begin at the window. Pairs that share a slot share the least shift,
/// which only makes the search look more often.
const fn shifts(keywords: &[&str], spaced: bool) -> [u8; SHIFT_SLOTS] {
    let shortest = shortest(keywords, spaced);
    assert!(shortest >= 2 && shortest <= 255);
    let mut table = [(shortest - 1) as u8; SHIFT_SLOTS];
    let mut i = 0;
    while i < keywords.len() {
        let k = keywords[i].as_bytes();
        let mut end = 1;
        while end < shortest {
            let s = slot(
                keyword_byte(k, end - 1, spaced),
                keyword_byte(k, end, spaced),
            );
            let shift = (shortest - 1 - end) as u8;
            if shift < table[s] {
                table[s] = shift;
            }
            end += 1;
        }
        i += 1;
    }
    table
}

static STEM_SHIFTS: [u8; SHIFT_SLOTS] = shifts(FUNCTIONAL_STEMS, false);
static WORD_SHIFTS: [u8; SHIFT_SLOTS] = shifts(FUNCTIONAL_WORDS, true);

impl Scan {
    const BUCKETS: usize = 256;

    /// The index of `keywords`, whose shift table is `shift`.
    fn new(keywords: impl Iterator<Item = String>, shift: &'static [u8; SHIFT_SLOTS]) -> Scan {
        let mut buckets = vec![Vec::new(); Self::BUCKETS];
        let mut shortest = usize::MAX;
        for (i, k) in keywords.enumerate() {
            let k = k.into_bytes();
            assert!(k.len() >= 2, "a functional keyword has two bytes or more");
            let i = u16::try_from(i).expect("fewer than 65,536 keywords");
            shortest = shortest.min(k.len());
            buckets[Self::bucket(k[0], k[1])].push((i, k.into_boxed_slice()));
        }
        Scan {
            buckets,
            shortest,
            shift,
        }
    }

    fn bucket(a: u8, b: u8) -> usize {
        usize::from(a.wrapping_mul(31) ^ b)
    }

    /// The keyword of the leftmost match, the first in keyword order of those starting
    /// there: what the leftmost-first automaton finds.
    fn find(&self, text: &str) -> Option<(usize, usize)> {
        let t = text.as_bytes();
        let window = self.shortest;
        // The last byte of the window that starts at `end + 1 - window`: every start
        // before that one was looked up or skipped by `shift`.
        let mut end = window - 1;
        while end < t.len() {
            let step = self.shift[slot(t[end - 1], t[end])];
            if step > 0 {
                end += usize::from(step);
                continue;
            }
            let at = end + 1 - window;
            let found = self.buckets[Self::bucket(t[at], t[at + 1])]
                .iter()
                .find(|(_, k)| t[at..].starts_with(k));
            if let Some((i, _)) = found {
                return Some((usize::from(*i), at));
            }
            end += 1;
        }
        None
    }
}

/// The index of the stems and the words.
struct Scans {
    stems: Scan,
    words: Scan,
}

/// Searches before the DFA is built. A `filter` process cleans one mail: building the
/// DFA (a quarter of such a process's instructions) costs it more than the DFA saves,
/// while a daemon searches millions of times. So the first searches use [`Scan`] (no
/// automaton to build), and the DFA is built once this many searches have shown it
/// pays, as the regex crate's lazy DFA does.
const SEARCHES_BEFORE_DFA: u32 = 4096;

static SCANS: LazyLock<Scans> = LazyLock::new(|| Scans {
    stems: Scan::new(FUNCTIONAL_STEMS.iter().map(|s| s.to_string()), &STEM_SHIFTS),
    words: Scan::new(word_patterns(), &WORD_SHIFTS),
});
static DFA: OnceLock<Matchers> = OnceLock::new();
static SEARCHES: AtomicU32 = AtomicU32::new(0);

/// What to search with: the DFA once built or due, the scan until then. Both find the
/// same leftmost-first keyword.
enum Searcher {
    Scan(&'static Scans),
    Dfa(&'static Matchers),
}

impl Searcher {
    /// The index in [`FUNCTIONAL_STEMS`] of the first stem in `folded`.
    fn stem(&self, folded: &str) -> Option<usize> {
        match self {
            Searcher::Scan(s) => s.stems.find(folded).map(|(i, _)| i),
            Searcher::Dfa(m) => m.stems.find(folded).map(|m| m.pattern().as_usize()),
        }
    }

    /// The index in [`FUNCTIONAL_WORDS`] of the first word in `words`.
    fn word(&self, words: &str) -> Option<usize> {
        match self {
            Searcher::Scan(s) => s.words.find(words).map(|(i, _)| i),
            Searcher::Dfa(m) => m.words.find(words).map(|m| m.pattern().as_usize()),
        }
    }
}

fn searcher() -> Searcher {
    if let Some(dfa) = DFA.get() {
        return Searcher::Dfa(dfa);
    }
    if SEARCHES.fetch_add(1, Ordering::Relaxed) < SEARCHES_BEFORE_DFA {
        return Searcher::Scan(&SCANS);
    }
    Searcher::Dfa(DFA.get_or_init(Matchers::build))
}

/// Lowercased, common Latin accents folded to ASCII, separators `_` and `-` kept.
pub(crate) fn fold(text: &str) -> String {
    if text.is_ascii() {
        // Whole bytes at a time: a URL is folded for every link (issue 17).
        let folded = text.to_ascii_lowercase();
        return if folded.bytes().any(|b| matches!(b, b'\t'..=b'\r')) {
            folded.replace(['\t', '\n', '\x0b', '\x0c', '\r'], " ")
        } else {
            folded
        };
    }
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ñ' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ý' | 'ÿ' => 'y',
            'ś' => 's',
            'ł' => 'l',
            'ě' => 'e',
            'š' => 's',
            'č' => 'c',
            'ř' => 'r',
            'ž' => 'z',
            'ő' => 'o',
            'ű' => 'u',
            c if c.is_whitespace() => ' ',
            c => c,
        })
        .collect()
}

/// The functional check as it was before issue 17's session 9 made it cheap, word for
/// word: the reference that [`Functional::reason`], [`fold`] and the scan must answer
/// as (see the tests).
#[cfg(test)]
pub(crate) mod reference {
    use super::{FUNCTIONAL_STEMS, FUNCTIONAL_WORDS, word_patterns};
    use crate::links::parts::{Parts, percent_decode_str};
    use std::sync::LazyLock;

    pub(crate) fn functional_reason(
        url: &str,
        link_text: Option<&str>,
        list_unsubscribe: &[String],
        rules: Option<&crate::rules::Rules>,
    ) -> Option<String> {
        let parts = Parts::parse(url);
        if let Some(rules) = rules {
            let folded_url = fold(&percent_decode_str(url, true));
            let text = link_text.map(fold).unwrap_or_default();
            let host = parts.as_ref().map(|p| p.host.as_str());
            if let Some(id) = rules
                .functional_match(&text, None)
                .or_else(|| rules.functional_match(&folded_url, host))
            {
                return Some(format!("rule {id}"));
            }
        }
        for entry in list_unsubscribe {
            let lu = entry
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim();
            let Some(lu_parts) = Parts::parse(lu) else {
                continue;
            };
            if url == lu {
                return Some("list-unsubscribe".into());
            }
            if let Some(p) = &parts
                && p.host == lu_parts.host
                && p.path.len() > 1
                && p.path.trim_end_matches('/') == lu_parts.path.trim_end_matches('/')
            {
                return Some("list-unsubscribe (same host and path)".into());
            }
        }
        if let Some(text) = link_text
            && let Some(k) = keyword(text)
        {
            return Some(format!("link text: {k}"));
        }
        let without_scheme = url.split_once("://").map_or(url, |(_, r)| r);
        keyword(&percent_decode_str(without_scheme, true)).map(|k| format!("url: {k}"))
    }

    pub(crate) fn keyword(text: &str) -> Option<&'static str> {
        let folded = fold(text);
        if let Some(i) = SCANS.0.find(&folded) {
            return Some(FUNCTIONAL_STEMS[i]);
        }
        let mut words = String::with_capacity(folded.len() + 2);
        words.push(' ');
        for piece in folded
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            words.push_str(piece);
            words.push(' ');
        }
        SCANS.1.find(&words).map(|i| FUNCTIONAL_WORDS[i])
    }

    /// The scan of every position, by hashed first two bytes.
    struct Scan {
        buckets: Vec<Vec<(u16, Box<[u8]>)>>,
    }

    impl Scan {
        fn new(keywords: impl Iterator<Item = String>) -> Scan {
            let mut buckets = vec![Vec::new(); 256];
            for (i, k) in keywords.enumerate() {
                let k = k.into_bytes();
                let i = u16::try_from(i).expect("fewer than 65,536 keywords");
                buckets[Self::bucket(k[0], k[1])].push((i, k.into_boxed_slice()));
            }
            Scan { buckets }
        }

        fn bucket(a: u8, b: u8) -> usize {
            usize::from(a.wrapping_mul(31) ^ b)
        }

        fn find(&self, text: &str) -> Option<usize> {
            let t = text.as_bytes();
            t.windows(2).enumerate().find_map(|(at, pair)| {
                self.buckets[Self::bucket(pair[0], pair[1])]
                    .iter()
                    .find(|(_, k)| t[at..].starts_with(k))
                    .map(|(i, _)| usize::from(*i))
            })
        }
    }

    static SCANS: LazyLock<(Scan, Scan)> = LazyLock::new(|| {
        (
            Scan::new(FUNCTIONAL_STEMS.iter().map(|s| s.to_string())),
            Scan::new(word_patterns()),
        )
    });

    pub(crate) fn fold(text: &str) -> String {
        if text.is_ascii() {
            return text
                .bytes()
                .map(|b| match b {
                    b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' => ' ',
                    b => char::from(b.to_ascii_lowercase()),
                })
                .collect();
        }
        text.chars()
            .flat_map(char::to_lowercase)
            .map(|c| match c {
                'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
                'ç' => 'c',
                'è' | 'é' | 'ê' | 'ë' => 'e',
                'ì' | 'í' | 'î' | 'ï' => 'i',
                'ñ' => 'n',
                'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
                'ù' | 'ú' | 'û' | 'ü' => 'u',
                'ý' | 'ÿ' => 'y',
                'ś' => 's',
                'ł' => 'l',
                'ě' => 'e',
                'š' => 's',
                'č' => 'c',
                'ř' => 'r',
                'ž' => 'z',
                'ő' => 'o',
                'ű' => 'u',
                c if c.is_whitespace() => ' ',
                c => c,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_in_many_languages() {
        for text in [
            "Unsubscribe",
            "Hier abmelden",
            "Newsletter abbestellen",
            "Afmelden",
            "Uitschrijven",
            "Se désabonner",
            "Désinscription",
            "Darse de baja",
            "Cancelar suscripción",
            "Disiscriviti",
            "Cancelar inscrição",
            "Avregistrera dig",
            "Manage subscription",
            "Update your email preferences",
            "Confirm your address",
            "Bestätigen",
            "Reset password",
            "Sign in",
            "Opt-out",
        ] {
            assert!(keyword(text).is_some(), "{text}");
        }
        for text in [
            "Read more",
            "The author speaks",
            "Reconfirmed: the deal",
            "Weiterlesen",
            "Shop now",
        ] {
            assert_eq!(keyword(text), None, "{text}");
        }
    }

    /// (keyword, start) of the first match by the DFA, as [`Scan::find`] gives it.
    fn by_dfa(ac: &AhoCorasick, text: &str) -> Option<(usize, usize)> {
        ac.find(text).map(|m| (m.pattern().as_usize(), m.start()))
    }

    /// The scan the first searches use and the DFA built later must answer alike, or a
    /// daemon's decisions would change after its first few thousand links.
    #[test]
    fn the_scan_and_the_dfa_find_the_same_keyword() {
        let dfa = Matchers::build();
        let keywords = FUNCTIONAL_STEMS.iter().chain(FUNCTIONAL_WORDS);
        let mut checked = 0;
        for a in keywords.clone() {
            for b in keywords.clone().step_by(7) {
                for text in [
                    format!(" {a} {b} "),
                    format!("x{a}{b}y"),
                    format!(" {b} x {a} "),
                    a.to_string(),
                    format!(" {a}"),
                ] {
                    assert_eq!(
                        SCANS.stems.find(&text),
                        by_dfa(&dfa.stems, &text),
                        "{text:?}"
                    );
                    assert_eq!(
                        SCANS.words.find(&text),
                        by_dfa(&dfa.words, &text),
                        "{text:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000);
    }

    /// Keywords that share their first bytes (`preferences`, `preference`), or that
    /// occur inside another (`opt in` in `double opt in`), are found as the DFA finds
    /// them: leftmost first, then the earlier keyword at one position.
    #[test]
    fn the_scan_takes_the_leftmost_then_the_first_keyword() {
        let dfa = Matchers::build();
        for text in [
            " double opt in ",
            " preferences ",
            " confirmation ",
            " authenticate ",
            "zzopt-outzz",
            "preference centerpreferencecenter",
            "",
            "a",
            " ",
        ] {
            assert_eq!(SCANS.stems.find(text), by_dfa(&dfa.stems, text), "{text:?}");
            assert_eq!(SCANS.words.find(text), by_dfa(&dfa.words, text), "{text:?}");
        }
        assert_eq!(
            SCANS
                .words
                .find(" double opt in ")
                .map(|(i, _)| FUNCTIONAL_WORDS[i]),
            Some("double opt in")
        );
    }

    proptest::proptest! {
        #[test]
        fn keyword_answers_alike_before_and_after_the_dfa(text in "[ a-z_-]{0,40}(unsub|opt|sign in|confirm|abmeld|pref)?[ a-z_-]{0,20}") {
            static BUILT_DFA: LazyLock<Matchers> = LazyLock::new(Matchers::build);
            let dfa = &*BUILT_DFA;
            proptest::prop_assert_eq!(SCANS.stems.find(&text), by_dfa(&dfa.stems, &text));
            let words = format!(" {text} ");
            proptest::prop_assert_eq!(SCANS.words.find(&words), by_dfa(&dfa.words, &words));
        }
    }

    /// The shift tables are sound: for every keyword, every pair of bytes among its
    /// first `shortest` ends no farther from the window's end than its slot says, and a
    /// slot no keyword's pair falls in moves the window by `shortest - 1`.
    #[test]
    fn the_shift_tables_fit_their_keywords() {
        for (scan, keywords) in [
            (
                &SCANS.stems,
                FUNCTIONAL_STEMS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            ),
            (&SCANS.words, word_patterns().collect()),
        ] {
            let n = scan.shortest;
            assert_eq!(n, keywords.iter().map(String::len).min().unwrap());
            let mut used = vec![false; SHIFT_SLOTS];
            for k in &keywords {
                let k = k.as_bytes();
                for end in 1..n {
                    let s = slot(k[end - 1], k[end]);
                    assert!(usize::from(scan.shift[s]) <= n - 1 - end, "{k:?} {end}");
                    used[s] = true;
                }
            }
            for (s, used) in used.iter().enumerate() {
                if !used {
                    assert_eq!(usize::from(scan.shift[s]), n - 1);
                }
            }
        }
    }

    /// Rules with `[[functional]]` words (one spanning the scheme, one with an accent)
    /// and hosts, and rules without any: the rule match reads the URL with its scheme.
    fn rule_sets() -> &'static [Option<crate::rules::Rules>; 3] {
        static SETS: LazyLock<[Option<crate::rules::Rules>; 3]> = LazyLock::new(|| {
            let compile = |text: &str| {
                crate::rules::Rules::compile(&[crate::rules::RuleSource {
                    name: "functional-test.toml".into(),
                    text: text.into(),
                }])
                .expect("test rules compile")
            };
            [
                None,
                Some(compile("")),
                Some(compile(
                    "[[functional]]\nid = \"cancel-de\"\nwords = [\"K\u{fc}ndigen\", \"abo beenden\"]\nsource = \"test\"\n\n\
                     [[functional]]\nid = \"scheme\"\nwords = [\"https://news\", \"p://l\"]\nsource = \"test\"\n\n\
                     [[functional]]\nid = \"hosts\"\nhosts = [\"account.shop.example\", \"*.list.example\"]\nsource = \"test\"\n",
                )),
            ]
        });
        &SETS
    }

    /// Pieces of URLs and link texts as mail writes them: keywords whole, cut and
    /// disguised (case, accents, escapes, `+`, controls, non-ASCII that lowercases to
    /// ASCII), separators, escapes valid and invalid.
    const PIECES: &[&str] = &[
        "/",
        "/u",
        "/u/abc",
        "/unsubscribe",
        "/Abmelden",
        "/d%C3%A9sabonner",
        "/D%C3%89SABONNER",
        "/p/42",
        "?",
        "&",
        "=",
        "e=1",
        "utm_source=x",
        "%20",
        "+",
        "%2B",
        "%",
        "%G1",
        "%E2%80",
        "%C3",
        "%2F",
        "sign",
        "in",
        "-",
        "_",
        " ",
        "\t",
        "\n",
        "\r",
        "opt",
        "out",
        "confirm",
        "Confirmed",
        "reconfirmed",
        "auth",
        "author",
        "\u{212a}",
        "\u{130}",
        "\u{c9}",
        "\u{fc}",
        "\u{df}",
        "\u{a0}",
        "K\u{fc}ndigen",
        "k%C3%BCndigen",
        "abo",
        "beenden",
        "#frag",
        "preferences",
        "preference center",
        "mot",
        "de",
        "passe",
        "otp",
        "x",
        "1",
        "ab",
        "list-unsubscribe",
        "Opt",
        "LOGIN",
        "log",
        "://",
        "news",
        "List.Example",
        "abbestellen",
    ];

    fn joined(max: usize) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop::collection::vec(prop::sample::select(PIECES), 0..max).prop_map(|p| p.concat())
    }

    /// A URL: scheme (or none, or a broken one), authority, then pieces.
    fn urls() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let scheme = prop::sample::select(vec![
            "https://",
            "http://",
            "HTTPS://",
            "hTtP://",
            "ftp://",
            "",
            "mailto:",
            "ht%74p://",
            "h+t://",
            "https:/",
            "x://a://",
            "https://news",
        ]);
        let host = prop::sample::select(vec![
            "list.example",
            "List.Example",
            "news.example",
            "account.shop.example",
            "a.list.example",
            "xn--bcher-kva.example",
            "b\u{fc}cher.example",
            "127.1",
            "[::1]",
            "ex%41mple.com",
            "",
            "user@list.example:8080",
        ]);
        (scheme, host, joined(10)).prop_map(|(s, h, rest)| format!("{s}{h}{rest}"))
    }

    /// `List-Unsubscribe` entries made from `url` (so that some match it exactly or by
    /// host and path) and others.
    fn entries(url: &str, picks: &[(u8, u8)]) -> Vec<String> {
        picks
            .iter()
            .map(|&(kind, wrap)| {
                let base = url.split(['?', '#']).next().unwrap_or(url);
                let entry = match kind % 9 {
                    0 => url.to_string(),
                    1 => format!("{base}/"),
                    2 => format!("{base}?other=1"),
                    3 => url.replacen("list.example", "news.example", 1),
                    4 => url.to_ascii_uppercase(),
                    5 => "mailto:u@list.example".to_string(),
                    6 => "https://list.example/u/abc?e=1".to_string(),
                    7 => base.trim_end_matches('/').to_string(),
                    _ => String::new(),
                };
                match wrap % 3 {
                    0 => entry,
                    1 => format!("<{entry}>"),
                    _ => format!(" < {entry} > "),
                }
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// The check answers as it did before it was made cheap, for every stage of a
        /// link (one `Functional` asked about several URLs, as `clean_link` does).
        #[test]
        fn the_check_answers_as_the_reference(
            urls in proptest::collection::vec(urls(), 1..4),
            text in proptest::option::of(joined(6)),
            picks in proptest::collection::vec((0u8..9, 0u8..3), 0..4),
            set in 0usize..3,
        ) {
            let lu = entries(&urls[0], &picks);
            let rules = rule_sets()[set].as_ref();
            let functional = Functional::new(text.as_deref(), &lu, rules);
            for url in &urls {
                let parts = Parts::parse(url);
                proptest::prop_assert_eq!(
                    functional.reason(url, parts.as_ref()),
                    reference::functional_reason(url, text.as_deref(), &lu, rules),
                    "{:?} {:?} {:?}", url, text, lu
                );
            }
            if let Some(rules) = rules
                && let Some(text) = text.as_deref()
            {
                let old = !text.is_empty()
                    && (reference::keyword(text).is_some()
                        || rules.functional_match(&reference::fold(text), None).is_some());
                proptest::prop_assert_eq!(text_is_functional(text, rules), old);
            }
        }

        /// Folding, decoding and the keyword search answer as the reference on any text.
        #[test]
        fn fold_decode_and_keyword_answer_as_the_reference(
            text in proptest::prop_oneof![joined(12), proptest::prelude::any::<String>()],
        ) {
            proptest::prop_assert_eq!(fold(&text), reference::fold(&text));
            proptest::prop_assert_eq!(percent_decoded(&text, true).into_owned(), super::super::parts::percent_decode_str(&text, true));
            proptest::prop_assert_eq!(keyword(&text), reference::keyword(&text));
        }
    }

    /// Cases the generators may miss: each of the check's answers, and the traps of
    /// each shortcut (an entry equal to a URL that does not parse, a path found in the
    /// entry's query, a scheme only the rule match reads).
    #[test]
    fn the_check_answers_as_the_reference_on_chosen_cases() {
        let lu = vec![
            "<mailto:unsub@list.example>".to_string(),
            " <https://list.example/u/abc?e=1> ".to_string(),
            "<https://other.example/x?next=/p/42>".to_string(),
            "ftp://list.example/u/abc".to_string(),
            "https:///nohost".to_string(),
        ];
        let texts = [
            None,
            Some(""),
            Some("Unsubscribe"),
            Some("Hier K\u{fc}ndigen"),
            Some("Read more"),
            Some("Se d\u{e9}sabonner"),
        ];
        let urls = [
            "https://list.example/u/abc?e=1",
            "https://list.example/u/abc/?utm_source=x",
            "https://LIST.example/u/abc",
            "https://other.example/p/42",
            "ftp://list.example/u/abc",
            "https:///nohost",
            "https://news.example/a",
            "HTTPS://NEWS.example/a",
            "https://account.shop.example/",
            "https://x.list.example/read",
            "https://shop.example/confirm?x=1",
            "https://shop.example/%43onfirm",
            "https://shop.example/sign+in",
            "https://shop.example/opt%20in",
            "https://shop.example/d%C3%A9sabonner",
            "https://shop.example/p?q=abo%20beenden",
            "http%3A//news.example/a",
            "news.example/login",
            "",
        ];
        for rules in rule_sets() {
            for text in texts {
                let functional = Functional::new(text, &lu, rules.as_ref());
                for url in urls {
                    assert_eq!(
                        functional.reason(url, Parts::parse(url).as_ref()),
                        reference::functional_reason(url, text, &lu, rules.as_ref()),
                        "{url:?} {text:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn list_unsubscribe_matches_exactly_or_by_host_and_path() {
        let lu = vec![
            "<mailto:unsub@list.example>".to_string(),
            "<https://list.example/u/abc?e=1>".to_string(),
        ];
        let r = |s: &str| functional_reason(s, None, &lu, None);
        assert!(r("https://list.example/u/abc?e=1").is_some());
        assert!(r("https://list.example/u/abc?e=1&utm_source=x").is_some());
        assert!(r("https://list.example/news/1").is_none());
    }
}
