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

use super::parts::{Parts, percent_decode_str};
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
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

/// Why the link `url` (one stage of unwrapping) is functional, or `None`; the link
/// text counts for every stage.
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

/// Whether a link's text alone makes it functional (what `functional_reason` reads of
/// the text): when it does not, the decision made without the text stands.
pub(crate) fn text_is_functional(text: &str, rules: &crate::rules::Rules) -> bool {
    !text.is_empty()
        && (keyword(text).is_some() || rules.functional_match(&fold(text), None).is_some())
}

/// The first functional keyword in `text` (leftmost in the text).
pub(crate) fn keyword(text: &str) -> Option<&'static str> {
    let folded = fold(text);
    let search = searcher();
    if let Some(i) = search.stem(&folded) {
        return Some(FUNCTIONAL_STEMS[i]);
    }
    // Words: every run of non-alphanumerics becomes one space, with a space at both
    // ends, so that a phrase " opt in " matches whole words only.
    let mut words = String::with_capacity(folded.len() + 2);
    words.push(' ');
    for piece in folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        words.push_str(piece);
        words.push(' ');
    }
    search.word(&words).map(|i| FUNCTIONAL_WORDS[i])
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
/// at each position of the text, the few keywords that begin with the two bytes there.
/// Written by hand because every automaton crate builds its automaton at run time, and
/// even aho-corasick's cheapest (a noncontiguous NFA, 0.78 M instructions) was a sixth of
/// a `filter` process on a mail with links (issue 17); this index is some thousands.
struct Scan {
    /// Per bucket of [`Scan::bucket`], the keywords that begin with the bytes hashed
    /// there, in keyword order: the first one found at a position is the leftmost-first.
    buckets: Vec<Vec<(u16, Box<[u8]>)>>,
}

impl Scan {
    const BUCKETS: usize = 256;

    fn new(keywords: impl Iterator<Item = String>) -> Scan {
        let mut buckets = vec![Vec::new(); Self::BUCKETS];
        for (i, k) in keywords.enumerate() {
            let k = k.into_bytes();
            assert!(k.len() >= 2, "a functional keyword has two bytes or more");
            let i = u16::try_from(i).expect("fewer than 65,536 keywords");
            buckets[Self::bucket(k[0], k[1])].push((i, k.into_boxed_slice()));
        }
        Scan { buckets }
    }

    fn bucket(a: u8, b: u8) -> usize {
        usize::from(a.wrapping_mul(31) ^ b)
    }

    /// The keyword of the leftmost match, the first in keyword order of those starting
    /// there: what the leftmost-first automaton finds.
    fn find(&self, text: &str) -> Option<(usize, usize)> {
        let t = text.as_bytes();
        t.windows(2).enumerate().find_map(|(at, pair)| {
            self.buckets[Self::bucket(pair[0], pair[1])]
                .iter()
                .find(|(_, k)| t[at..].starts_with(k))
                .map(|(i, _)| (usize::from(*i), at))
        })
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
    stems: Scan::new(FUNCTIONAL_STEMS.iter().map(|s| s.to_string())),
    words: Scan::new(word_patterns()),
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
