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
];

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

/// The host globs of an anchored URL regex, and the nodes that follow the host.
pub fn split(re: &str) -> Result<(Vec<String>, Vec<Node>), String> {
    let rest = re
        .trim()
        .strip_prefix('^')
        .ok_or("not anchored at the start of the URL")?;
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
    let nodes = pattern::parse_seq(&rest)?;
    let host_len = nodes
        .iter()
        .position(|n| !is_host_node(n))
        .unwrap_or(nodes.len());
    if host_len == 0 {
        return Err("no plain host name after the scheme".into());
    }
    if let Some(next) = nodes.get(host_len)
        && !ends_host(next)
        && !pattern::is_any_run(next)
        && !matches!(next, Node::Lit('/' | '?') | Node::End)
        && !is_optional_slash(next)
    {
        let why = match pattern::globs(std::slice::from_ref(next), &|_| None) {
            Err(e) => e,
            Ok(_) => "a character that is not part of a host name".into(),
        };
        return Err(format!("in the host: {why}"));
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
    let names = pattern::globs(&host_nodes, &|_| None)?;
    let mut hosts = Vec::new();
    for h in names {
        hosts.extend(host_globs(&h, sub)?);
    }
    pattern::dedup(&mut hosts);
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

impl Scope {
    /// Whether every URL matching `host` (a glob of [`split`]) and `path` is in this scope.
    pub fn covers(&self, host: &str, path: Option<&str>) -> bool {
        let host_ok = self.hosts.is_empty() || self.hosts.iter().any(|h| host_within(host, h));
        let path_ok = self.paths.is_empty()
            || path.is_some_and(|p| self.paths.iter().any(|q| p.starts_with(q.as_str())));
        host_ok && path_ok
    }
}

/// Whether every host that glob `a` matches is matched by glob `b` (false when unsure).
pub fn host_within(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match b.strip_prefix('*') {
        // `*.example.*` holds `docs.example.*` and `*.docs.example.*`: what `a` adds in
        // front stays within one host, which `*` matches.
        Some(rest) => a.len() > rest.len() && a.ends_with(rest),
        // A bare domain: itself and its subdomains.
        None => !b.contains('*') && a.ends_with(&format!(".{b}")),
    }
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
        Node::Group {
            capture: false,
            alts,
        } => alts.iter().all(|a| a.iter().all(is_host_node)),
        Node::Repeat {
            node,
            min: 0,
            max: Some(1),
        } => is_host_node(node),
        _ => false,
    }
}

fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == TLD
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
        (Sub::Exact, true) => vec![format!("{base}.*")],
        (Sub::Any, false) => vec![base.to_string()],
        (Sub::Some, false) => vec![format!("*.{base}")],
        (Sub::Exact, false) => {
            return Err(format!(
                "only the exact host {base}, and a mailveil host glob also matches its subdomains"
            ));
        }
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
    fn broader_or_exact_host_patterns_are_refused() {
        for re in [
            r"^https?:\/\/(?:www\.)?example\.com",
            r"https?:\/\/example\.com",
            r"^https:\/\/(?:[a-z0-9-]+\.)*?example\.com",
            r"^https?:\/\/[^/]+\.example\.com",
            r"^https?:\/\/(?:[a-z0-9-]+\.)*?example\.com\/a$",
            r"^https?:\/\/l[a-z]?\.example\.com",
            r"^https?:\/\/(?:[a-z0-9-]+\.)*?exa_ple\.com",
        ] {
            assert!(scope(re).is_err(), "{re}");
        }
    }
}
