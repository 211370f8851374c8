//! A literal prefilter in front of the pixel and redirect rule index (issue 17): one pass
//! over a URL's host says whether any of those rules' host globs can match it. Most hosts
//! in mail are named by no rule; for them the rule lookups (a hash per dot-suffix, the
//! star globs tried on every host, the keys and copies they build) are skipped.
//!
//! It may answer "maybe" for a host no rule matches, never "no" for one a rule matches:
//! each glob gives one literal that every host it matches holds, anchored at the host's
//! start or end where the glob is, and a host holding none of them is matched by none.

use super::glob::HostGlob;
use aho_corasick::AhoCorasick;

/// Marks both ends of the host in the text searched. Host globs are matched against the
/// host up to its first `/` (see `UrlGlobs::matches`), so no host searched holds one.
const EDGE: u8 = b'/';

/// The longest host searched in place (a DNS name has at most 253 bytes); a longer one
/// is answered "maybe".
const MAX_HOST: usize = 256;

impl super::Rules {
    /// Whether a pixel or redirect rule may match a URL on `host`: when not,
    /// [`super::Rules::match_pixel`] and [`super::Rules::match_redirect`] find nothing
    /// there, whatever the path, and need not be asked.
    pub fn may_name_host(&self, host: &str) -> bool {
        self.host_prefilter.may_match(host)
    }
}

/// The literals of a set of host globs, one per glob, in one automaton.
#[derive(Debug, Clone)]
pub(super) struct HostPrefilter {
    /// `None` when the automaton could not be built (a rule set far larger than any
    /// shipped): every host is then a "maybe".
    literals: Option<AhoCorasick>,
}

impl HostPrefilter {
    /// The prefilter of these globs.
    pub(super) fn new<'a>(globs: impl Iterator<Item = &'a HostGlob>) -> HostPrefilter {
        let mut needles: Vec<Vec<u8>> = globs.map(needle).collect();
        needles.sort_unstable();
        needles.dedup();
        let literals = AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&needles)
            .ok();
        HostPrefilter { literals }
    }

    /// Whether a glob may match `host` (any case; cut at its first `/`, as the rule
    /// index reads it). `false` only when none can.
    pub(super) fn may_match(&self, host: &str) -> bool {
        let Some(literals) = &self.literals else {
            return true;
        };
        let host = host.split('/').next().unwrap_or_default().as_bytes();
        if host.len() > MAX_HOST {
            return true;
        }
        let mut buf = [0u8; MAX_HOST + 2];
        buf[0] = EDGE;
        for (to, from) in buf[1..].iter_mut().zip(host) {
            *to = from.to_ascii_lowercase();
        }
        buf[host.len() + 1] = EDGE;
        literals.is_match(&buf[..host.len() + 2])
    }
}

/// The literal every host matched by `glob` holds, in the text `/host/`: the glob's most
/// telling piece, with the edge it is anchored to. A piece counts by its letters and
/// digits; of two that hold as many, a last piece (a top-level domain, mostly) loses,
/// for hosts end in `.com` far more often than they hold any other piece.
fn needle(glob: &HostGlob) -> Vec<u8> {
    let edged = |before: bool, piece: &str, after: bool| {
        let mut n = Vec::with_capacity(piece.len() + 2);
        if before {
            n.push(EDGE);
        }
        n.extend_from_slice(piece.as_bytes());
        if after {
            n.push(EDGE);
        }
        n
    };
    let pieces = match glob {
        // Itself, or a host ending in `.` + it: either way the host ends with it.
        HostGlob::Domain(d) => return edged(false, d.as_str(), true),
        HostGlob::Pieces(p) => p,
    };
    let last = pieces.len() - 1;
    if last == 0 {
        return edged(true, &pieces[0], true);
    }
    let worth = |i: usize| {
        let letters = pieces[i].bytes().filter(u8::is_ascii_alphanumeric).count();
        2 * letters - usize::from(i == last && letters > 0)
    };
    let best = (0..=last).max_by_key(|&i| (worth(i), std::cmp::Reverse(i)));
    match best {
        Some(0) => edged(true, &pieces[0], false),
        Some(i) if i == last => edged(false, &pieces[last], true),
        Some(i) => edged(false, &pieces[i], false),
        None => vec![EDGE],
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RuleSource, Rules};
    use super::*;
    use proptest::prelude::*;

    fn needle_of(glob: &str) -> String {
        String::from_utf8(needle(&HostGlob::new(glob))).unwrap()
    }

    #[test]
    fn each_glob_gives_its_most_telling_piece_at_its_edge() {
        assert_eq!(needle_of("list-manage.com"), "list-manage.com/");
        assert_eq!(needle_of("=t.example"), "/t.example/");
        assert_eq!(needle_of("*.mkt*.com"), ".mkt");
        assert_eq!(needle_of("*.email.*"), ".email.");
        assert_eq!(needle_of("click.*"), "/click.");
        assert_eq!(needle_of("*.*.cleverreach.com"), ".cleverreach.com/");
        assert_eq!(needle_of("*x"), "x/");
    }

    #[test]
    fn hosts_holding_no_literal_are_matched_by_no_glob() {
        let globs: Vec<HostGlob> = ["list-manage.com", "*.mkt*.com", "click.*", "=t.example"]
            .into_iter()
            .map(HostGlob::new)
            .collect();
        let p = HostPrefilter::new(globs.iter());
        for host in [
            "us1.List-Manage.com",
            "a.mkt9.com",
            "CLICK.x.org",
            "t.example",
        ] {
            assert!(p.may_match(host), "{host}");
        }
        for host in [
            "cdn.example.com",
            "list-manage.com.evil",
            "xclick.example",
            "tt.example",
        ] {
            assert!(!p.may_match(host), "{host}");
            assert!(!globs.iter().any(|g| g.matches(&host.to_ascii_lowercase())));
        }
        assert!(p.may_match(&"a".repeat(MAX_HOST + 1)), "too long: maybe");
    }

    /// Host globs of every shape the format allows, beside the shipped ones: stars at
    /// either end and inside, exact hosts, IDNA, uppercase, trailing dots, a lone label.
    const ODD_GLOBS: &[&str] = &[
        "*.email.*",
        "=t.example",
        "=*.exact*.example",
        "a*b*c.example",
        "*x",
        "y*",
        "Upper.Example.",
        "xn--bcher-kva.example",
        "bücher.example",
        "*.*.deep.example",
        "localhost",
        "127.0.0.1",
        "=[::1]",
        "-",
    ];

    /// The shipped rules (the TOML files of the repository), and a set of odd globs.
    fn rule_sets() -> Vec<Rules> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .expect("the shipped rules")
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        let shipped: Vec<RuleSource> = files
            .iter()
            .map(|p| RuleSource {
                name: p.display().to_string(),
                text: std::fs::read_to_string(p).unwrap(),
            })
            .collect();
        let mut odd = String::from(
            "[[tracker]]\nid = \"t\"\nname = \"T\"\ncategory = \"esp\"\nsource = \"test\"\n",
        );
        for (i, g) in ODD_GLOBS.iter().enumerate() {
            odd.push_str(&format!(
                "[[pixel]]\nid = \"p{i}\"\ntracker = \"t\"\nhost = {g:?}\nsource = \"test\"\n\
                 [[redirect]]\nid = \"r{i}\"\ntracker = \"t\"\nhost = {g:?}\npath = \"/r\"\n\
                 opaque = true\nsource = \"test\"\n"
            ));
        }
        let odd = RuleSource {
            name: "odd".into(),
            text: odd,
        };
        vec![
            Rules::compile(&shipped).expect("shipped rules compile"),
            Rules::compile(&[odd]).expect("odd globs compile"),
        ]
    }

    static RULE_SETS: std::sync::LazyLock<Vec<Rules>> = std::sync::LazyLock::new(rule_sets);

    /// The host and path globs of a rule set's pixels and redirects.
    fn globs(rules: &Rules) -> Vec<(String, String)> {
        let pixels = rules.pixels.iter().map(|(e, _)| (&e.host, &e.path));
        let redirects = rules
            .redirects
            .iter()
            .map(|r| (&r.entry.host, &r.entry.path));
        pixels
            .chain(redirects)
            .map(|(h, p)| (h.clone(), p.clone().unwrap_or_default()))
            .collect()
    }

    /// A text a glob matches: each `*` filled in with `fill`, a subdomain before a bare
    /// domain, the case of each letter flipped where `flips` says.
    fn instance(glob: &str, fill: &str, sub: &str, flips: u64) -> String {
        let exact = glob.trim().starts_with('=');
        let g = glob.trim().trim_start_matches('=').trim_end_matches('.');
        let mut s = g.replace('*', fill);
        if !exact && !g.contains('*') && !sub.is_empty() {
            s = format!("{sub}.{s}");
        }
        s.chars()
            .enumerate()
            .map(|(i, c)| {
                if flips >> (i % 64) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }

    /// The hosts the rule lookups are given for a URL on `host`: the URL parser's (a
    /// fetched URL) and the link splitter's, in every spelling a mail may write.
    fn hosts_seen(host: &str, path: &str) -> Vec<String> {
        let mut seen = vec![host.to_string()];
        for url in [
            format!("https://{host}{path}"),
            format!("HTTP://user:pw@{host}:8080{path}?q=1#f"),
            format!("//{host}{path}"),
            format!("https:\\\\{host}\\{path}"),
        ] {
            if let Some(r) = crate::detect::remote_url(&url, &None) {
                seen.push(r.host().to_string());
            }
            if let Some(p) = crate::links::parts_host(&url) {
                seen.push(p);
            }
        }
        seen
    }

    /// The full lookups find nothing on a host the prefilter says no rule names.
    fn check(rules: &Rules, host: &str, path: &str) -> Result<(), TestCaseError> {
        if rules.may_name_host(host) {
            return Ok(());
        }
        for p in [path, "/", ""] {
            prop_assert!(rules.match_pixel(host, p).is_none(), "pixel {} {}", host, p);
            prop_assert!(
                rules.match_redirect(host, p).is_empty(),
                "redirect {} {}",
                host,
                p
            );
            prop_assert!(
                rules.redirect_exception(host, p).is_none(),
                "keep {} {}",
                host,
                p
            );
        }
        Ok(())
    }

    #[test]
    fn every_rule_is_found_on_an_instance_of_its_globs() {
        for rules in RULE_SETS.iter() {
            for (h, p) in globs(rules) {
                let host = instance(&h, "x", "", 0);
                let path = instance(&p, "x", "", 0);
                assert!(rules.may_name_host(&host), "{h} -> {host}");
                let found = rules.match_pixel(&host, &path).is_some()
                    || !rules.match_redirect(&host, &path).is_empty()
                    || rules.redirect_exception(&host, &path).is_some();
                assert!(found, "{h} {p} -> {host} {path}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Prefilter and full lookup give the full lookup's answers: on instances of
        /// every rule's globs (filled in, cased, on subdomains, through the URL parser
        /// and the link splitter) and on hosts of any shape.
        #[test]
        fn the_prefilter_never_hides_a_match(
            set in 0..2usize,
            pick in any::<prop::sample::Index>(),
            fill in "[a-z0-9.-]{0,6}",
            sub in "([a-z0-9-]{1,6}\\.){0,2}[a-z0-9-]{0,6}",
            flips in any::<u64>(),
            any_host in "[a-zA-Z0-9.*=:@\\[\\]ü-]{0,24}",
        ) {
            let rules = &RULE_SETS[set];
            let all = globs(rules);
            let (h, p) = &all[pick.index(all.len())];
            let host = instance(h, &fill, &sub, flips);
            let path = instance(p, &fill, "", flips);
            for seen in hosts_seen(&host, &format!("/{}", path.trim_start_matches('/'))) {
                check(rules, &seen, &path)?;
            }
            for seen in hosts_seen(&any_host, "/") {
                check(rules, &seen, &path)?;
            }
        }
    }
}
