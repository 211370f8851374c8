//! Host and path globs of the rule format, compiled to regex source.

/// Regex source for a host glob. A bare domain matches itself and every subdomain;
/// `=host` matches that host only; `*` matches any run of characters other than `/`.
pub fn host_regex(glob: &str) -> String {
    let glob = glob.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Some(exact) = glob.strip_prefix('=') {
        return glob_regex(exact.trim(), "[^/]*");
    }
    if glob.contains('*') {
        glob_regex(&glob, "[^/]*")
    } else {
        format!("(?:[^/]*\\.)?{}", regex::escape(&glob))
    }
}

/// Regex source for a path glob: case-insensitive prefix match, `*` = any run. The
/// reference [`PathGlob`] is held to.
#[cfg(test)]
pub fn path_regex(glob: &str) -> String {
    let glob = glob.trim().to_ascii_lowercase();
    let glob = if glob.starts_with('/') {
        glob
    } else {
        format!("/{glob}")
    };
    glob_regex(&glob, ".*")
}

/// Regex source for a parameter-name glob (whole name). The reference [`NameGlob`] is
/// held to.
#[cfg(test)]
pub fn name_regex(glob: &str) -> String {
    format!("^{}$", glob_regex(&glob.trim().to_ascii_lowercase(), ".*"))
}

fn glob_regex(glob: &str, star: &str) -> String {
    glob.split('*')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(star)
}

// The matchers below do what the regexes above do, without compiling a regex: rule
// globs are literals and stars, and compiling some 300 of them into regex sets was most
// of a `mailveil filter` process's start-up (issue 17). Written by hand because a glob
// crate's `*` and anchoring differ from the rule format's; the tests hold each one equal
// to its regex.

/// A host glob as [`host_regex`] reads it, matched against a whole lowercase host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostGlob {
    /// A bare domain: itself, or any host ending in `.` + it (`(?:[^/]*\.)?domain`).
    Domain(String),
    /// Literal pieces with a `*` (any run of characters other than `/`) between each two.
    Pieces(Vec<String>),
}

impl HostGlob {
    /// Reads a host glob of the rule format.
    pub fn new(glob: &str) -> HostGlob {
        let glob = glob.trim().trim_end_matches('.').to_ascii_lowercase();
        if let Some(exact) = glob.strip_prefix('=') {
            return HostGlob::Pieces(pieces(exact.trim()));
        }
        if glob.contains('*') {
            HostGlob::Pieces(pieces(&glob))
        } else {
            HostGlob::Domain(glob)
        }
    }

    /// Whether the whole of `host` (already lowercase) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostGlob::Domain(d) => host.strip_suffix(d.as_str()).is_some_and(|rest| {
                rest.is_empty() || (rest.ends_with('.') && !rest.contains('/'))
            }),
            HostGlob::Pieces(p) => star_match(p, host.as_bytes(), HOST),
        }
    }

    /// A name every matching host has as one of its dot-suffixes (itself, or what
    /// follows one of its dots), when the glob fixes one.
    pub fn suffix_key(&self) -> Option<&str> {
        match self {
            HostGlob::Domain(d) => Some(d),
            HostGlob::Pieces(p) if p.len() == 1 => Some(&p[0]),
            HostGlob::Pieces(p) => {
                let last = p.last()?;
                let (_, after) = last.split_once('.')?;
                (!after.is_empty()).then_some(after)
            }
        }
    }

    /// The first label (up to the first dot) every matching host has, when the glob
    /// fixes one.
    pub fn label_key(&self) -> Option<&str> {
        match self {
            HostGlob::Pieces(p) if p.len() > 1 => p[0].split_once('.').map(|(label, _)| label),
            _ => None,
        }
    }
}

/// A path glob as [`path_regex`] reads it, matched as a prefix of a lowercase path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGlob(Vec<String>);

impl PathGlob {
    /// Reads a path glob of the rule format (`None`: any path, the regex `/`).
    pub fn new(glob: Option<&str>) -> PathGlob {
        let Some(glob) = glob else {
            return PathGlob(vec!["/".to_string()]);
        };
        let glob = glob.trim().to_ascii_lowercase();
        if glob.starts_with('/') {
            PathGlob(pieces(&glob))
        } else {
            PathGlob(pieces(&format!("/{glob}")))
        }
    }

    /// Whether `path` (already lowercase) starts with a match (`*`: any run without a
    /// line feed, as the regex `.*`).
    pub fn matches_prefix(&self, path: &str) -> bool {
        star_match(&self.0, path.as_bytes(), PATH)
    }

    /// [`PathGlob::matches_prefix`] of `path_and_query` as the rule key writes it (a `/`
    /// before one that has none, ASCII-lowercased), compared in place: a lowercased copy
    /// of every URL a rule's host names was most of the rule lookup (issue 17).
    pub fn matches_url_path(&self, path_and_query: &str) -> bool {
        let Some((first, rest)) = self.0.split_first() else {
            return true; // no pieces: the empty prefix
        };
        let text = path_and_query.as_bytes();
        let first = match (text.first(), first.as_bytes()) {
            (Some(b'/'), f) => f,
            // The key's `/` is met by the first piece's own (every path glob has one).
            (_, [b'/', f @ ..]) => f,
            _ => return self.matches_prefix(&format!("/{}", path_and_query.to_ascii_lowercase())),
        };
        match strip_prefix(text, first, true) {
            Some(after) => after_star(rest, after, FOLDED_PATH),
            None => false,
        }
    }
}

/// A parameter-name glob as [`name_regex`] reads it in the name sets (bytes, ASCII
/// case-insensitive, `*` any run without `\r` or `\n`), matched against a whole name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameGlob(Vec<String>);

impl NameGlob {
    /// Reads a name glob of the rule format.
    pub fn new(glob: &str) -> NameGlob {
        NameGlob(pieces(&glob.trim().to_ascii_lowercase()))
    }

    /// The name itself, when the glob has no star (most have none): a hash key.
    pub fn literal(&self) -> Option<&str> {
        match self.0.as_slice() {
            [name] => Some(name),
            _ => None,
        }
    }

    /// Whether the whole of `name` (already ASCII-lowercased) matches.
    pub fn matches(&self, name: &str) -> bool {
        star_match(&self.0, name.as_bytes(), NAME)
    }
}

fn pieces(glob: &str) -> Vec<String> {
    glob.split('*').map(str::to_string).collect()
}

/// How a text is read against a glob's pieces.
#[derive(Clone, Copy)]
struct Mode {
    /// Bytes a star never takes in.
    not_in_star: &'static [u8],
    /// The match runs to the end of the text (else: a prefix of it).
    whole: bool,
    /// The text is compared as if ASCII-lowercased (the pieces are lowercase).
    fold: bool,
}

const HOST: Mode = Mode {
    not_in_star: b"/",
    whole: true,
    fold: false,
};
const PATH: Mode = Mode {
    not_in_star: b"\n",
    whole: false,
    fold: false,
};
const FOLDED_PATH: Mode = Mode { fold: true, ..PATH };
const NAME: Mode = Mode {
    not_in_star: b"\r\n",
    whole: true,
    fold: false,
};

/// Whether `text` matches the pieces with a star between each two (a star never takes
/// in a byte of `not_in_star`), to its end when `whole`, else as a prefix. Bytes are
/// compared as they are: pieces are whole UTF-8 and so are texts, so a star can only
/// end where a piece begins, on a character boundary.
fn star_match(pieces: &[String], text: &[u8], mode: Mode) -> bool {
    let Some((first, rest)) = pieces.split_first() else {
        return !mode.whole || text.is_empty();
    };
    match strip_prefix(text, first.as_bytes(), mode.fold) {
        Some(after) => after_star(rest, after, mode),
        None => false,
    }
}

/// `text` after `piece`, when it starts with it (ASCII case aside when `fold`).
fn strip_prefix<'t>(text: &'t [u8], piece: &[u8], fold: bool) -> Option<&'t [u8]> {
    let head = text.get(..piece.len())?;
    let same = if fold {
        head.eq_ignore_ascii_case(piece)
    } else {
        head == piece
    };
    same.then(|| &text[piece.len()..])
}

/// Whether `text` matches a star followed by `pieces[0]`, another star and
/// `pieces[1]`... (no star at all when `pieces` is empty). Each piece is taken at its
/// first occurrence the star before it can reach: a match that takes a later one within
/// reach can take the first as well, the star after it taking in the bytes between.
/// (Those hold no byte a star cannot take in: the star before the later occurrence took
/// in the first one's bytes up to it, and a piece that holds such a byte has no second
/// occurrence before it.) Trying every occurrence of every piece, as this did before,
/// is exponential in the stars: a rule host of 25 stars (`***...newsletter.*`) held the
/// rule fuzzer 36 s on a 13-byte host.
fn after_star(pieces: &[String], mut text: &[u8], mode: Mode) -> bool {
    for (i, next) in pieces.iter().enumerate() {
        let next = next.as_bytes();
        let reach = reach(text, mode);
        if i + 1 == pieces.len() && mode.whole {
            return last_piece_ends(text, next, reach, mode);
        }
        let window = &text[..(reach + next.len()).min(text.len())];
        match occurrences(window, next, mode.fold).next() {
            Some(at) if at <= reach => text = &text[at + next.len()..],
            _ => return false,
        }
    }
    !mode.whole || text.is_empty()
}

/// How far a star can take in `text`: up to the first byte it cannot.
fn reach(text: &[u8], mode: Mode) -> usize {
    match mode.not_in_star {
        [a] => memchr::memchr(*a, text),
        [a, b] => memchr::memchr2(*a, *b, text),
        set => text.iter().position(|c| set.contains(c)),
    }
    .unwrap_or(text.len())
}

/// Whether the last piece ends `text`, the star before it taking in what comes first.
fn last_piece_ends(text: &[u8], last: &[u8], reach: usize, mode: Mode) -> bool {
    text.len() >= last.len()
        && text.len() - last.len() <= reach
        && strip_prefix(&text[text.len() - last.len()..], last, mode.fold).is_some()
}

/// The starts of the non-overlapping occurrences of `needle` in `hay`, leftmost first,
/// as `memchr::memmem::find_iter` gives them (of `hay` ASCII-lowercased when `fold`),
/// without building a searcher for each search: hosts and rule pieces are short, and
/// that setup cost more than the search (issue 17).
fn occurrences<'a>(
    hay: &'a [u8],
    needle: &'a [u8],
    fold: bool,
) -> impl Iterator<Item = usize> + 'a {
    let mut at = 0;
    std::iter::from_fn(move || {
        let Some((&first, _)) = needle.split_first() else {
            // An empty needle occurs at every position, the end included.
            at += 1;
            return (at <= hay.len() + 1).then_some(at - 1);
        };
        let other = if fold {
            first.to_ascii_uppercase()
        } else {
            first
        };
        while at + needle.len() <= hay.len() {
            let i = at + memchr::memchr2(first, other, &hay[at..=hay.len() - needle.len()])?;
            if strip_prefix(&hay[i..], needle, fold).is_some() {
                at = i + needle.len();
                return Some(i);
            }
            at = i + 1;
        }
        None
    })
}

#[cfg(test)]
pub(crate) mod tests {
    #[test]
    fn occurrences_are_those_memmem_finds() {
        let cases: [(&str, &str); 9] = [
            ("", ""),
            ("abc", ""),
            ("aaaa", "aa"),
            ("aaa", "aa"),
            ("xaabaab", "aab"),
            ("ab", "abc"),
            ("click.x.click.y", "click."),
            ("a.b", "."),
            ("abcabc", "c"),
        ];
        for (hay, needle) in cases {
            let ours: Vec<usize> =
                super::occurrences(hay.as_bytes(), needle.as_bytes(), false).collect();
            let memmem: Vec<usize> =
                memchr::memmem::find_iter(hay.as_bytes(), needle.as_bytes()).collect();
            assert_eq!(ours, memmem, "{hay:?} {needle:?}");
        }
    }

    /// Host and path forms the matchers must read exactly as the regexes do.
    pub(crate) const HOSTS: &[&str] = &[
        "",
        "a",
        "x.a",
        "list-manage.com",
        "us3.list-manage.com",
        "evil-list-manage.com",
        "list-manage.com.evil.net",
        ".list-manage.com",
        "vk.com",
        "m.vk.com",
        "vk.com.evil.net",
        "newsletter.lidl.de",
        "x.newsletter.lidl.de",
        "u123.ct.sendgrid.net",
        "u.ct.sendgrid.net",
        "ct.sendgrid.net",
        "www.amazon.co.uk",
        "www.amazon.",
        "email.news.example",
        "email.",
        "a/b",
        "x.a/b",
        "x/y.a/b",
        "url1.x.com",
        "url.com",
        "t.sidekickopen12.com",
        "t.sidekickopen.com",
        "bücher.example",
        "x.bücher.example",
        "a\nb.com",
        "b.com\n",
        "list-manage.com.",
        "r.x",
        "rr.x",
        "aaa",
        "aaaa",
        "aa/aa",
        "aaxaa",
    ];
    pub(crate) const HOST_GLOBS: &[&str] = &[
        "list-manage.com",
        "=vk.com",
        "=newsletter.lidl.*",
        "u*.ct.sendgrid.net",
        "*.list-manage.com",
        "www.amazon.*",
        "email.*",
        "url*.*",
        "t.sidekickopen*.com",
        "r.*",
        "a/b",
        "=a/b",
        "*/b",
        "bücher.example",
        "*",
        "=",
        "",
        " List-Manage.COM. ",
        "*.*",
        "**.com",
        "b.com",
        "a*b*c",
        "*.a",
        "aa*aa",
        "=a*a*a",
        "*a/",
        "*/*",
    ];
    pub(crate) const PATHS: &[&str] = &[
        "/",
        "/track/open.php?u=1",
        "/track/opEn",
        "/ss/o/abc/3k5/def/ho.gif",
        "/ss/c/abc",
        "/a\nb/ho.gif",
        "/ss/o/x\n/ho.gif",
        "/x/",
        "",
        "/über/x",
        "/track/open\n.php",
        "/xx",
        "/xox",
        "/o\no",
        "/oo",
        "/\n/",
    ];
    pub(crate) const PATH_GLOBS: &[&str] = &[
        "/track/open",
        "/ss/o/*/ho.gif",
        "track/open.php",
        "/*",
        "*",
        "/",
        "/x/*/",
        "/*/*/",
        "/über",
        "/a\nb",
        "/x*x",
        "/*\n*/",
        "/*o*o",
    ];

    #[test]
    fn host_globs_read_hosts_as_their_regexes_do() {
        for g in HOST_GLOBS {
            let re = Regex::new(&format!("^{}$", host_regex(g))).unwrap();
            let glob = HostGlob::new(g);
            for h in HOSTS {
                assert_eq!(glob.matches(h), re.is_match(h), "glob {g:?} host {h:?}");
                if glob.matches(h) {
                    // The index keys hold for every host the glob matches.
                    if let Some(k) = glob.suffix_key() {
                        let dot_suffix = *h == k || h.ends_with(&format!(".{k}"));
                        assert!(dot_suffix, "suffix key {k:?} of {g:?} for {h:?}");
                    }
                    if let Some(k) = glob.label_key() {
                        assert_eq!(h.split('.').next(), Some(k), "label key of {g:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn path_globs_read_paths_as_their_regexes_do() {
        for g in PATH_GLOBS.iter().map(|g| Some(*g)).chain([None]) {
            let src = g.map_or_else(|| "/".to_string(), path_regex);
            let re = Regex::new(&format!("^{src}")).unwrap();
            let glob = PathGlob::new(g);
            for p in PATHS {
                assert_eq!(
                    glob.matches_prefix(p),
                    re.is_match(p),
                    "glob {g:?} path {p:?}"
                );
            }
        }
    }

    use super::*;
    use proptest::prelude::*;
    use regex::Regex;

    /// Bytes of globs and texts: letters, the dot, stars and the bytes a star cannot
    /// take in (`/`, `\n`, `\r`), so that pieces and texts hold them too.
    const GLOB_BYTES: &[&str] = &["a", "b", ".", "*", "/", "\n", "\r", "ab"];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Every matcher reads every glob as its regex does, whatever the stars and
        /// where the bytes a star cannot take in stand (seen failing with a piece taken
        /// at its last occurrence within reach instead of its first).
        #[test]
        fn the_matchers_are_their_regexes(
            glob in proptest::collection::vec(proptest::sample::select(GLOB_BYTES), 0..8),
            text in proptest::collection::vec(proptest::sample::select(GLOB_BYTES), 0..10),
        ) {
            let (glob, text) = (glob.concat(), text.concat().replace('*', ""));
            let host = Regex::new(&format!("^{}$", host_regex(&glob))).unwrap();
            prop_assert_eq!(HostGlob::new(&glob).matches(&text), host.is_match(&text), "host");
            let path = format!("/{text}");
            let path_re = Regex::new(&format!("^{}", path_regex(&glob))).unwrap();
            prop_assert_eq!(PathGlob::new(Some(&glob)).matches_prefix(&path), path_re.is_match(&path), "path");
            // As the name sets compiled it: over bytes, `.` taking no `\r` or `\n`.
            let name = regex::bytes::RegexBuilder::new(&name_regex(&glob))
                .case_insensitive(true)
                .unicode(false)
                .crlf(true)
                .build()
                .unwrap();
            prop_assert_eq!(NameGlob::new(&glob).matches(&text), name.is_match(text.as_bytes()), "name");
        }
    }

    /// Stars between repeated pieces: tried occurrence by occurrence, a glob of 25 stars
    /// against a 13-byte host, or `*a` ten times then `b` against sixty `a`, did not end
    /// (the first held the rule fuzzer 36 s); taken at their first occurrences, at once.
    #[test]
    fn many_stars_are_read_in_one_pass() {
        let stars = format!("{}newsletter.*", "*".repeat(25));
        assert!(!HostGlob::new(&stars).matches("a.b.c.example"));
        assert!(HostGlob::new(&stars).matches("x.newsletter.example"));
        let repeated = format!("{}*b", "*a".repeat(10));
        let aaa = "a".repeat(60);
        assert!(!HostGlob::new(&repeated).matches(&aaa));
        assert!(!NameGlob::new(&repeated).matches(&aaa));
        assert!(!PathGlob::new(Some(&format!("/{repeated}"))).matches_prefix(&format!("/{aaa}")));
        assert!(HostGlob::new(&repeated).matches(&format!("{aaa}b")));
    }

    fn host_matches(glob: &str, host: &str) -> bool {
        Regex::new(&format!("^{}$", host_regex(glob)))
            .unwrap()
            .is_match(host)
    }

    #[test]
    fn bare_domain_matches_itself_and_subdomains_only() {
        assert!(host_matches("list-manage.com", "list-manage.com"));
        assert!(host_matches("list-manage.com", "us3.list-manage.com"));
        assert!(!host_matches("list-manage.com", "evil-list-manage.com"));
        assert!(!host_matches("list-manage.com", "list-manage.com.evil.net"));
    }

    #[test]
    fn an_equals_sign_means_that_host_only() {
        assert!(host_matches("=vk.com", "vk.com"));
        assert!(!host_matches("=vk.com", "m.vk.com"));
        assert!(!host_matches("=vk.com", "vk.com.evil.net"));
        assert!(host_matches("=newsletter.lidl.*", "newsletter.lidl.de"));
        assert!(!host_matches("=newsletter.lidl.*", "x.newsletter.lidl.de"));
    }

    #[test]
    fn star_globs_stay_within_the_host() {
        assert!(host_matches("u*.ct.sendgrid.net", "u123.ct.sendgrid.net"));
        assert!(!host_matches("*.list-manage.com", "list-manage.com"));
        assert!(host_matches("www.amazon.*", "www.amazon.co.uk"));
    }

    #[test]
    fn path_is_a_case_insensitive_prefix() {
        let re = Regex::new(&format!("^{}", path_regex("/track/open"))).unwrap();
        assert!(re.is_match("/track/open.php?u=1"));
        let re = Regex::new(&format!("^{}", path_regex("/ss/o/*/ho.gif"))).unwrap();
        assert!(re.is_match("/ss/o/abc/3k5/def/ho.gif"));
        assert!(!re.is_match("/ss/c/abc"));
    }
}
