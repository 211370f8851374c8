//! A host prefilter in front of the pixel and redirect rule lookups (issue 17): whether
//! any of those rules' host globs matches a URL's host, asked before the lookups build
//! their key (`host` + path and query, lowercased) and before a URL is split again to
//! find its host. Most hosts in mail are named by no rule; for them nothing is built.
//!
//! It answers from the rule index itself (a hash lookup per dot-suffix and one for the
//! first label, then the candidates' host globs), so it costs nothing to build: an
//! automaton of the globs' literals was tried first and cost 2 to 12 million
//! instructions at every `mailveil filter` start (ContiguousNFA and DFA), more than it
//! saved on a mail. A "no" here is a "no" of the full lookup for every path: the
//! property test below holds it to that.

use super::{UrlGlobs, lowercase};

impl super::Rules {
    /// Whether a pixel or redirect rule may match a URL on `host`: when not,
    /// [`super::Rules::match_pixel`], [`super::Rules::match_redirect`] and
    /// [`super::Rules::redirect_exception`] find nothing there, whatever the path, and
    /// need not be asked.
    pub fn may_name_host(&self, host: &str) -> bool {
        let lower = lowercase(host);
        // As `UrlGlobs::matches` reads it: up to its first `/`.
        let h = lower.split('/').next().unwrap_or_default();
        self.pixel_set.names_host(h) || self.redirect_set.names_host(h)
    }
}

impl UrlGlobs {
    /// Whether a host glob matches `h` (lowercase, no `/`): the candidates
    /// `UrlGlobs::matches` takes before it looks at the path.
    fn names_host(&self, h: &str) -> bool {
        let any = |list: &[usize]| list.iter().any(|&i| self.globs[i].0.matches(h));
        if any(&self.always) {
            return true;
        }
        let mut suffix = h;
        loop {
            if self.by_suffix.get(suffix).is_some_and(|l| any(l)) {
                return true;
            }
            match suffix.split_once('.') {
                Some((_, rest)) => suffix = rest,
                None => break,
            }
        }
        h.split_once('.')
            .and_then(|(label, _)| self.by_label.get(label))
            .is_some_and(|l| any(l))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RuleSource, Rules};
    use proptest::prelude::*;

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
