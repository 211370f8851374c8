//! URL regexes of other lists (`^https?:\/\/(?:[a-z0-9-]+\.)*?amazon(?:\.[a-z]{2,}){1,}\/s\?`)
//! as mailveil host and path globs, when the translation is exact (or narrower).

use super::pattern::{self, Node};

/// Stands for a "any top-level domain" suffix such as `(?:\.[a-z]{2,}){1,}`.
const TLD: char = '\u{E000}';
const TLD_FORMS: &[&str] = &[
    r"(?:\.[a-z]{2,}){1,}",
    r"(?:\.[a-z]{2,})+",
    r"(?:\.[a-z]{2,}){1,}?",
    r"(?:\.[a-z]{2,})+?",
];
const SCHEMES: &[&str] = &[r"https?:\/\/", "https?://"];
/// Any number of subdomain labels.
const SUB_ANY: &[&str] = &[
    r"(?:[a-z0-9-]+\.)*?",
    r"(?:[a-z0-9-]+\.)*",
    r"([a-z0-9-]+\.)*?",
    r"([a-z0-9-]+\.)*",
    r"(?:[a-z0-9\-]+\.)*?",
    r"(?:[a-z0-9\-]+\.)*",
];
/// At least one subdomain label.
const SUB_SOME: &[&str] = &[
    r"(?:[a-z0-9-]+\.)+?",
    r"(?:[a-z0-9-]+\.)+",
    r"([a-z0-9-]+\.)+?",
    r"([a-z0-9-]+\.)+",
    r"([a-z0-9-.]*\.)",
    r"(?:[a-z0-9-.]*\.)",
];
/// Any run of host characters without a `/` (`bugtracker\.[^/]*`): the glob `*`.
const STAR: char = '\u{E001}';
const STAR_FORMS: &[&str] = &[r"[^/]*", r"[^\/]*", r"[^/]*?", r"[^\/]*?"];
/// The same with at least one character: `*` matches more (the empty run), so only
/// where matching more is the safe side (exceptions).
const STAR_SOME_FORMS: &[&str] = &[r"[^/]+", r"[^\/]+", r"[^/]+?", r"[^\/]+?"];

#[derive(Clone, Copy)]
enum Sub {
    /// The host as written.
    Exact,
    /// The host and its subdomains.
    Any,
    /// Subdomains only.
    Some,
}

/// Where a URL regex applies.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// mailveil host globs; empty: every host.
    pub hosts: Vec<String>,
    /// mailveil path globs (prefix matches); empty: every path.
    pub paths: Vec<String>,
}

/// Whether `re` matches every URL.
pub fn is_everything(re: &str) -> bool {
    matches!(re.trim(), ".*" | "^.*" | "^.*$" | ".*?" | "^.*?")
}

/// How exactly a URL regex must translate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Never more than the regex matches (rules, provider scopes, redirects). A regex not
    /// anchored at the start is read as anchored: that matches less.
    Exact,
    /// At least what the regex matches (exceptions: matching more removes less).
    Loose,
}

/// The host globs of an anchored URL regex, and the nodes that follow the host.
pub fn split(re: &str) -> Result<(Vec<String>, Vec<Node>), String> {
    split_fit(re, Fit::Exact)
}

/// [`split`], exactly or loosely.
pub fn split_fit(re: &str, fit: Fit) -> Result<(Vec<String>, Vec<Node>), String> {
    let rest = match (re.trim().strip_prefix('^'), fit) {
        (Some(r), _) => r,
        (None, Fit::Exact) => re.trim(),
        (None, Fit::Loose) => {
            return Err(
                "not anchored at the start of the URL, so it also matches URLs inside other URLs"
                    .into(),
            );
        }
    };
    let rest = SCHEMES
        .iter()
        .find_map(|s| rest.strip_prefix(s))
        .ok_or("does not start with https?:// (mailveil rules cover both schemes)")?;
    let (sub, rest) = if let Some(r) = SUB_ANY.iter().find_map(|s| rest.strip_prefix(s)) {
        (Sub::Any, r)
    } else if let Some(r) = SUB_SOME.iter().find_map(|s| rest.strip_prefix(s)) {
        (Sub::Some, r)
    } else {
        (Sub::Exact, rest)
    };
    let mut rest = rest.to_string();
    for form in TLD_FORMS {
        rest = rest.replace(form, &TLD.to_string());
    }
    // Runs of host characters: only before the first `/` (in the host).
    let host_end = rest
        .find(r"\/")
        .or_else(|| rest.find('/'))
        .unwrap_or(rest.len());
    let (mut host, tail) = (rest[..host_end].to_string(), rest[host_end..].to_string());
    for form in STAR_FORMS {
        host = host.replace(form, &STAR.to_string());
    }
    if fit == Fit::Loose {
        for form in STAR_SOME_FORMS {
            host = host.replace(form, &STAR.to_string());
        }
    }
    let rest = format!("{host}{tail}");
    let nodes = pattern::parse_seq(&rest)?;
    let host_len = nodes
        .iter()
        .position(|n| !is_host_node(n))
        .unwrap_or(nodes.len());
    if host_len == 0 {
        return Err("no plain host name after the scheme".into());
    }
    let mut widen = false;
    if let Some(next) = nodes.get(host_len)
        && !ends_host(next)
        && !pattern::is_any_run(next)
        && !matches!(next, Node::Lit('/' | '?') | Node::End)
        && !is_optional_slash(next)
    {
        // Loosely: what follows may run on in the host (`gcsip\.com[^?]*`), so the host
        // glob gets a `*` at its end.
        if fit == Fit::Loose {
            widen = true;
        } else {
            let why = match pattern::globs(std::slice::from_ref(next), &|_| None) {
                Err(e) => e,
                Ok(_) => "a character that is not part of a host name".into(),
            };
            return Err(format!("in the host: {why}"));
        }
    }
    // An unescaped '.' between host characters ("twitter.com") stands for any one
    // character; reading it as a dot matches less than the source, never more.
    let host_nodes: Vec<Node> = nodes[..host_len]
        .iter()
        .map(|n| match n {
            Node::Any => Node::Lit('.'),
            n => n.clone(),
        })
        .collect();
    let mut host_nodes = host_nodes;
    if widen {
        host_nodes.push(Node::Lit(STAR));
    }
    let names = pattern::globs(&host_nodes, &|c| (c == STAR).then_some("*"))?;
    let mut hosts = Vec::new();
    for h in names {
        hosts.extend(host_globs(&h, sub)?);
    }
    pattern::dedup(&mut hosts);
    if hosts.iter().any(|h| {
        h.trim_start_matches('=')
            .chars()
            .all(|c| c == '*' || c == '.')
    }) {
        return Err("the host part matches every host".into());
    }
    Ok((hosts, nodes[host_len..].to_vec()))
}

/// Host and path globs for a URL regex (a provider's `urlPattern`).
pub fn scope(re: &str) -> Result<Scope, String> {
    if is_everything(re) {
        return Ok(Scope::default());
    }
    let (hosts, rest) = split(re)?;
    let paths = paths(&rest)?;
    Ok(Scope { hosts, paths })
}

/// Host and path globs that cover at least what a URL regex matches (an exception): a
/// path that has no exact glob is cut at what it has, or widened where it has none.
pub fn loose_scope(re: &str) -> Result<Scope, String> {
    if is_everything(re) {
        return Ok(Scope::default());
    }
    let (hosts, rest) = split_fit(re, Fit::Loose)?;
    let paths = match paths(&rest) {
        Ok(p) => p,
        Err(_) => loose_paths(&rest),
    };
    Ok(Scope { hosts, paths })
}

/// Path globs that cover at least the nodes after a host: the exact globs where they
/// exist, `*` for what has none; every path when the host is not followed by one.
fn loose_paths(rest: &[Node]) -> Vec<String> {
    if !matches!(rest.first(), Some(Node::Lit('/'))) {
        return Vec::new();
    }
    let mut nodes = rest.to_vec();
    if nodes.last() == Some(&Node::End) {
        nodes.pop(); // a prefix match covers the anchored one
    }
    let mut paths = match pattern::loose_globs(&nodes) {
        Ok(p) => p,
        Err(_) => return Vec::new(),
    };
    if paths.iter().any(|p| p.contains(TLD)) || paths.iter().all(|p| p == "/" || p == "/*") {
        return Vec::new();
    }
    let all = paths.clone();
    paths.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q.as_str())));
    paths
}

impl Scope {
    /// Whether every URL matching `host` (a glob of [`split`]) and `path` is in this scope.
    pub fn covers(&self, host: &str, path: Option<&str>) -> bool {
        let host_ok = self.hosts.is_empty() || self.hosts.iter().any(|h| host_within(host, h));
        let path_ok = self.paths.is_empty()
            || path.is_some_and(|p| {
                self.paths
                    .iter()
                    .any(|q| p.starts_with(q.as_str()) && !q.contains('*'))
            });
        host_ok && path_ok
    }
}

/// Whether some URL may match both host glob `h1` with path `p1` and `h2` with `p2`
/// (true when unsure).
pub fn may_overlap(h1: &str, p1: Option<&str>, h2: &str, p2: Option<&str>) -> bool {
    let hosts = h1.contains('*') || h2.contains('*') || host_within(h1, h2) || host_within(h2, h1);
    let literal = |p: &str| p.split('*').next().unwrap_or("").to_ascii_lowercase();
    let paths = match (p1, p2) {
        (Some(a), Some(b)) => {
            let (a, b) = (literal(a), literal(b));
            a.starts_with(&b) || b.starts_with(&a)
        }
        _ => true,
    };
    hosts && paths
}

/// Whether every host that glob `a` matches is matched by glob `b` (false when unsure).
/// `=host` matches that host only.
pub fn host_within(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    if b.starts_with('=') {
        return false; // one host: only itself is within it
    }
    if let Some(x) = a.strip_prefix('=') {
        // `=x` is within whatever holds `x`, and a single name within what matches it.
        return host_within(x, b) || (!x.contains('*') && glob_matches(b, x));
    }
    match b.strip_prefix('*') {
        // `*.example.*` holds `docs.example.*` and `*.docs.example.*`: what `a` adds in
        // front stays within one host, which `*` matches.
        Some(rest) => a.len() > rest.len() && a.ends_with(rest),
        // A bare domain: itself and its subdomains.
        None => !b.contains('*') && a.ends_with(&format!(".{b}")),
    }
}

/// Whether host glob `glob` (not `=`) matches the host name `host`.
fn glob_matches(glob: &str, host: &str) -> bool {
    if !glob.contains('*') {
        return host == glob || host.ends_with(&format!(".{glob}"));
    }
    // `*` is any run of characters (a host name has no `/`): the first piece anchors
    // the start, the last the end, the others are found in order.
    let pieces: Vec<&str> = glob.split('*').collect();
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if host.len() < first.len() + last.len() || !host.starts_with(first) || !host.ends_with(last) {
        return false;
    }
    let mut middle = &host[first.len()..host.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match middle.find(piece) {
            Some(i) => middle = &middle[i + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Path globs for the nodes after a host; empty when the regex says nothing about the path.
pub fn paths(rest: &[Node]) -> Result<Vec<String>, String> {
    match rest {
        [] | [Node::End] => return Ok(Vec::new()),
        [n] if is_optional_slash(n) => return Ok(Vec::new()),
        [g @ Node::Group { .. }] if ends_host(g) => return Ok(Vec::new()),
        [Node::Lit('/'), ..] => {}
        _ => return Err("something other than a path follows the host".into()),
    }
    if rest.last() == Some(&Node::End) {
        return Err("the path is anchored at its end (mailveil paths are prefixes)".into());
    }
    let mut paths = pattern::globs(rest, &|_| None)?;
    if paths.iter().any(|p| p.contains(TLD)) {
        return Err("a domain pattern inside the path".into());
    }
    if paths.iter().all(|p| p == "/" || p == "/*") {
        paths.clear();
    }
    // Paths are prefixes: "/redirect" adds nothing to "/redirec".
    let all = paths.clone();
    paths.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q.as_str())));
    Ok(paths)
}

/// `\/?`
fn is_optional_slash(n: &Node) -> bool {
    matches!(n, Node::Repeat { node, min: 0, max: Some(1) } if **node == Node::Lit('/'))
}

/// `(?:\/|\?|$)` and the like: the host ends here, nothing said about the path.
fn ends_host(node: &Node) -> bool {
    match node {
        Node::Group { alts, .. } => alts.iter().all(|a| {
            matches!(
                a.as_slice(),
                [Node::Lit('/' | '?' | '#' | ':')] | [Node::End]
            )
        }),
        _ => false,
    }
}

fn is_host_node(n: &Node) -> bool {
    match n {
        Node::Lit(c) => is_host_char(*c),
        Node::Any => true,
        Node::Class {
            negated: false,
            chars: Some(chars),
        } => chars.iter().all(|c| is_host_char(*c) && *c != '.'),
        Node::Group { alts, .. } => alts.iter().all(|a| a.iter().all(is_host_node)),
        Node::Repeat {
            node,
            min: 0,
            max: Some(1),
        } => is_host_node(node),
        _ => false,
    }
}

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == TLD || c == STAR
}

fn host_globs(h: &str, sub: Sub) -> Result<Vec<String>, String> {
    let (base, tld) = match h.strip_suffix(TLD) {
        Some(b) => (b, true),
        None => (h, false),
    };
    if base.contains(TLD) {
        return Err("a top-level-domain pattern in the middle of the host".into());
    }
    if base.is_empty() || base.starts_with('.') || base.ends_with('.') || base.contains("..") {
        return Err(format!("{base:?} is not a host name"));
    }
    Ok(match (sub, tld) {
        (Sub::Any, true) => vec![format!("{base}.*"), format!("*.{base}.*")],
        (Sub::Some, true) => vec![format!("*.{base}.*")],
        // A glob with `*` matches at its own position only: add its subdomains.
        (Sub::Any, false) if base.contains('*') => vec![base.to_string(), format!("*.{base}")],
        (Sub::Any, false) => vec![base.to_string()],
        (Sub::Some, false) => vec![format!("*.{base}")],
        (Sub::Exact, true) => vec![format!("={base}.*")],
        (Sub::Exact, false) => vec![format!("={base}")],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plain_domain_patterns_translate() {
        let s = scope(r"^https?:\/\/(?:[a-z0-9-]+\.)*?amazon(?:\.[a-z]{2,}){1,}").unwrap();
        assert_eq!(s.hosts, hosts(&["amazon.*", "*.amazon.*"]));
        assert!(s.paths.is_empty());
        let s = scope(r"^https?:\/\/(?:[a-z0-9-]+\.)*?shop\.example\/x\?").unwrap();
        assert_eq!(s.hosts, hosts(&["shop.example"]));
        assert_eq!(s.paths, hosts(&["/x?"]));
        let s = scope(r"^https?:\/\/(?:[a-z0-9-]+\.)*?(?:news|mail)\.example\.com").unwrap();
        assert_eq!(s.hosts, hosts(&["news.example.com", "mail.example.com"]));
        assert_eq!(scope(".*").unwrap(), Scope::default());
        // An unescaped dot in a host is read as a dot (narrower than "any character").
        let s = scope(r"^https?:\/\/(?:[a-z0-9-]+\.)*?social.example").unwrap();
        assert_eq!(s.hosts, hosts(&["social.example"]));
        let s = scope(r"^https?:\/\/(?:[a-z0-9-]+\.)*?x\.example\/redirect?").unwrap();
        assert_eq!(s.paths, hosts(&["/redirec"]));
    }

    #[test]
    fn scopes_know_what_they_cover() {
        let s = scope(r"^https?:\/\/(?:[a-z0-9-]+\.)*?google(?:\.[a-z]{2,}){1,}").unwrap();
        assert!(s.covers("docs.google.*", None));
        assert!(s.covers("*.google.*", Some("/url?")));
        assert!(!s.covers("google.com", None)); // unsure: refused
        assert!(!s.covers("evilgoogle.*", None));
        let s = scope(r"^https?:\/\/(?:[a-z0-9-]+\.)*?shop\.example\/s\?").unwrap();
        assert!(s.covers("www.shop.example", Some("/s?q=1")));
        assert!(!s.covers("shop.example", Some("/r?")));
        assert!(!s.covers("shop.example", None));
        assert!(!s.covers("notshop.example", Some("/s?")));
    }

    #[test]
    fn exact_hosts_are_written_with_an_equals_sign() {
        let s = scope(r"^https?:\/\/(?:www\.)?example\.com").unwrap();
        assert_eq!(s.hosts, hosts(&["=example.com", "=www.example.com"]));
        let s = scope(r"^https?:\/\/newsletter\.lidl(?:\.[a-z]{2,}){1,}").unwrap();
        assert_eq!(s.hosts, hosts(&["=newsletter.lidl.*"]));
        // Not anchored: read as anchored, which matches less.
        let s = scope(r"https?:\/\/outgoing\.example\.net\/").unwrap();
        assert_eq!(s.hosts, hosts(&["=outgoing.example.net"]));
        let s = scope(r"^https?:\/\/l[a-c]?\.example\.com").unwrap();
        assert_eq!(s.hosts.len(), 4);
        let s = scope(r"^https?:\/\/bugtracker\.[^/]*\/").unwrap();
        assert_eq!(s.hosts, hosts(&["=bugtracker.*"]));
    }

    #[test]
    fn broader_patterns_are_refused() {
        for re in [
            r"^https:\/\/(?:[a-z0-9-]+\.)*?example\.com",
            r"^https?:\/\/[^/]+\.example\.com",
            r"^https?:\/\/(?:[a-z0-9-]+\.)*?example\.com\/a$",
            r"^https?:\/\/(?:[a-z0-9-]+\.)*?exa_ple\.com",
            r"^https?:\/\/[^/]*\/x",
        ] {
            assert!(scope(re).is_err(), "{re}");
        }
    }

    #[test]
    fn exceptions_are_read_at_least_as_widely() {
        let s = loose_scope(r"^https?:\/\/(?:[a-z0-9-]+\.)*?x\.example\/.*?comment-list.json\?")
            .unwrap();
        assert_eq!(s.hosts, hosts(&["x.example"]));
        assert_eq!(s.paths, hosts(&["/*comment-list*json?"]));
        let s = loose_scope(r"^https?:\/\/(?:[a-z0-9-]+\.)*?gcsip\.(?:com|nl)[^?]*\?.*?&?ref_?=.")
            .unwrap();
        assert_eq!(
            s.hosts,
            hosts(&["gcsip.com*", "*.gcsip.com*", "gcsip.nl*", "*.gcsip.nl*"])
        );
        assert!(
            s.paths.is_empty(),
            "what follows the host is no path: every path"
        );
        let s = loose_scope(r"^https?:\/\/([a-z0-9-\.])*(chat|drive)\.example\.com\/videoplayback");
        assert!(s.is_err() || s.unwrap().paths == hosts(&["/videoplayback"]));
        assert!(loose_scope(r"https?:\/\/x\.example").is_err(), "unanchored");
        assert!(loose_scope(r"^https?:\/\/[^/]+\/a").is_err(), "every host");
    }
}
