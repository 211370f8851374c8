//! Searching a message for its multipart boundaries. A message has one to a few: each
//! gets a substring finder, cheap to build. An Aho-Corasick automaton, which
//! `AhoCorasick::new` builds as a DFA for so few patterns, took longer to build (twice
//! per message) than all the searches it served: 10% of `clean()`, measured. A hostile
//! message with many boundaries still gets one automaton, so that each byte is read
//! once whatever their number.

use aho_corasick::AhoCorasick;
use memchr::memmem::Finder;

/// Past this many patterns, one automaton rather than a finder each.
const MAX_FINDERS: usize = 8;

pub(super) enum BoundarySearch {
    Few(Vec<Finder<'static>>),
    Many(AhoCorasick),
}

impl BoundarySearch {
    /// A search for `patterns`; `Err` when they are too many to search for at all.
    pub(super) fn new<P: AsRef<[u8]>>(patterns: &[P]) -> Result<Self, aho_corasick::BuildError> {
        if patterns.len() <= MAX_FINDERS && patterns.iter().all(|p| !p.as_ref().is_empty()) {
            let finders = patterns
                .iter()
                .map(|p| Finder::new(p.as_ref()).into_owned())
                .collect();
            return Ok(BoundarySearch::Few(finders));
        }
        AhoCorasick::new(patterns).map(BoundarySearch::Many)
    }

    /// Whether any pattern occurs in `hay`.
    pub(super) fn is_match(&self, hay: &[u8]) -> bool {
        match self {
            BoundarySearch::Few(finders) => finders.iter().any(|f| f.find(hay).is_some()),
            BoundarySearch::Many(ac) => ac.is_match(hay),
        }
    }

    /// Whether `pred(pattern, start, end)` holds for any occurrence of any pattern in
    /// `hay`, occurrences that overlap included.
    pub(super) fn any_occurrence(
        &self,
        hay: &[u8],
        mut pred: impl FnMut(usize, usize, usize) -> bool,
    ) -> bool {
        match self {
            BoundarySearch::Few(finders) => finders.iter().enumerate().any(|(i, f)| {
                let len = f.needle().len();
                let mut from = 0;
                while let Some(at) = hay.get(from..).and_then(|h| f.find(h)) {
                    let start = from + at;
                    if pred(i, start, start + len) {
                        return true;
                    }
                    from = start + 1; // the next one may overlap this one
                }
                false
            }),
            BoundarySearch::Many(ac) => ac
                .find_overlapping_iter(hay)
                .any(|m| pred(m.pattern().as_usize(), m.start(), m.end())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn occurrences(search: &BoundarySearch, hay: &[u8]) -> Vec<(usize, usize, usize)> {
        let mut seen = Vec::new();
        search.any_occurrence(hay, |p, s, e| {
            seen.push((p, s, e));
            false
        });
        seen.sort_unstable();
        seen
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// The finders find what the automaton finds: every occurrence, overlapping
        /// ones too (`----` inside `------`), of every pattern.
        #[test]
        fn finders_find_what_the_automaton_finds(
            patterns in proptest::collection::vec("[-ab]{1,5}", 1..=MAX_FINDERS),
            hay in "[-ab\n]{0,64}",
        ) {
            let few = BoundarySearch::new(&patterns).unwrap();
            prop_assert!(matches!(few, BoundarySearch::Few(_)));
            let many = BoundarySearch::Many(AhoCorasick::new(&patterns).unwrap());
            prop_assert_eq!(few.is_match(hay.as_bytes()), many.is_match(hay.as_bytes()));
            prop_assert_eq!(occurrences(&few, hay.as_bytes()), occurrences(&many, hay.as_bytes()));
        }
    }

    #[test]
    fn many_patterns_get_one_automaton() {
        let patterns: Vec<String> = (0..=MAX_FINDERS).map(|i| format!("--b{i}")).collect();
        let search = BoundarySearch::new(&patterns).unwrap();
        assert!(matches!(search, BoundarySearch::Many(_)));
        assert!(search.is_match(b"x\n--b8\n"));
        assert!(!search.is_match(b"x\n--c\n"));
    }
}
