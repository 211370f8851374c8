//! A raw http(s) URL split into its pieces without re-encoding anything: what is not
//! removed must come back byte for byte, so nothing here goes through a serializer.

use std::borrow::Cow;
use url::Url;

/// The pieces of an absolute http(s) URL, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parts<'a> {
    /// `http` or `https` as written (case kept).
    pub scheme: &'a str,
    /// Everything between `//` and the path: userinfo, host, port.
    pub authority: &'a str,
    /// The host, lowercased (punycode where the URL parser gives it).
    pub host: String,
    /// The path as written (may be empty).
    pub path: &'a str,
    /// The query without `?`, if there is a `?`.
    pub query: Option<&'a str>,
    /// The fragment without `#`, if there is a `#`.
    pub fragment: Option<&'a str>,
    /// `path?query` as written: one piece of the URL, so it is never built.
    path_and_query: &'a str,
}

/// The host of an authority that is a plain DNS name (letters, digits, `-`, `.`, an
/// optional port, no user info, no IP literal, no percent or Unicode): there the URL
/// parser would give back the same name, lowercased, so its full parse (a measured 5% of
/// `clean()`, every link goes through here several times) is skipped. Anything else
/// takes the parser's road.
fn plain_host(authority: &str) -> Option<&str> {
    let (host, port) = match memchr::memchr(b':', authority.as_bytes()) {
        Some(i) => (&authority[..i], Some(&authority[i + 1..])),
        None => (authority, None),
    };
    if let Some(p) = port
        && !(p.is_empty()
            || (p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| n <= 65535)))
    {
        return None;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    // One pass over the bytes, label by label (three `split`s were a tenth of a link's
    // cost, issue 17): every label non-empty, of letters, digits and `-`; the last not
    // all digits (an IPv4 form the parser rewrites, `127.1`); none Punycode (`xn--`,
    // which the parser checks).
    let mut labels = name.as_bytes().split(|&b| b == b'.').peekable();
    while let Some(label) = labels.next() {
        let last = labels.peek().is_none();
        let junk = label.is_empty()
            || !label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            || (last && label.iter().all(u8::is_ascii_digit))
            || label
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"xn--"));
        if junk {
            return None;
        }
    }
    Some(host)
}

/// A query piece's raw name and value: split at the first `=` (none: all name).
pub(crate) fn name_and_value(piece: &str) -> (&str, &str) {
    // By byte: `=` is ASCII, and a char search was a tenth of a link's cost (issue 17).
    match memchr::memchr(b'=', piece.as_bytes()) {
        Some(i) => (&piece[..i], &piece[i + 1..]),
        None => (piece, ""),
    }
}

impl<'a> Parts<'a> {
    /// Splits `s` if it is an absolute http(s) URL that the URL parser accepts.
    pub fn parse(s: &'a str) -> Option<Parts<'a>> {
        let mut parts = Parts::split(s)?;
        parts.host = match plain_host(parts.authority) {
            Some(h) => h.to_ascii_lowercase(),
            None => {
                let parsed = Url::parse(s).ok()?;
                parsed.host_str()?.to_ascii_lowercase()
            }
        };
        (!parts.host.is_empty()).then_some(parts)
    }

    /// [`Parts::parse`] of what the URL parser wrote (`url.as_str()`), without parsing
    /// it again: its host is the one the parser found (issue 17).
    pub fn of_url(url: &'a Url) -> Option<Parts<'a>> {
        let mut parts = Parts::split(url.as_str())?;
        parts.host = url.host_str()?.to_ascii_lowercase();
        (!parts.host.is_empty()).then_some(parts)
    }

    /// The pieces of an http(s) URL as written; the host is left empty.
    fn split(s: &'a str) -> Option<Parts<'a>> {
        // By byte throughout: every search here is for ASCII, and char searches on
        // short strings cost more than the bytes they read (issue 17).
        let colon = memchr::memchr_iter(b':', s.as_bytes())
            .find(|&i| s.as_bytes()[i + 1..].starts_with(b"//"))?;
        let scheme = &s[..colon];
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        let rest = &s[colon + 3..];
        let auth_end = rest
            .bytes()
            .position(|b| matches!(b, b'/' | b'?' | b'#' | b'\\'))
            .unwrap_or(rest.len());
        let authority = &rest[..auth_end];
        let rest = &rest[auth_end..];
        let (before_frag, fragment) = match memchr::memchr(b'#', rest.as_bytes()) {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (path, query) = match memchr::memchr(b'?', before_frag.as_bytes()) {
            Some(i) => (&before_frag[..i], Some(&before_frag[i + 1..])),
            None => (before_frag, None),
        };
        Some(Parts {
            scheme,
            authority,
            host: String::new(),
            path,
            query,
            fragment,
            path_and_query: before_frag,
        })
    }

    /// `path?query`, as the rule patterns are matched against.
    pub fn path_and_query(&self) -> &'a str {
        self.path_and_query
    }

    /// The raw path segments (the leading `/` dropped; an empty path has none).
    pub fn segments(&self) -> Vec<&'a str> {
        let p = self.path.strip_prefix('/').unwrap_or(self.path);
        if p.is_empty() {
            Vec::new()
        } else {
            p.split('/').collect()
        }
    }

    /// The raw query pieces (split on `&`, empty pieces included).
    pub fn query_pieces(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.query.into_iter().flat_map(|q| q.split('&'))
    }

    /// The raw value of the first query parameter named `name` (exact name first, then
    /// ignoring ASCII case).
    pub fn param(&self, name: &str) -> Option<&'a str> {
        // One pass for both (two were most of the cost of looking for a redirect's
        // destination in a URL that has none, issue 17): the first exact name wins, and
        // failing that, the first name equal ignoring case.
        let mut folded = None;
        for piece in self.query_pieces() {
            let (n, v) = name_and_value(piece);
            let n = percent_decoded(n, true);
            if n == name {
                return Some(v);
            }
            if folded.is_none() && n.eq_ignore_ascii_case(name) {
                folded = Some(v);
            }
        }
        folded
    }

    /// Rebuilds the URL with another query (None: no `?` at all).
    pub fn with_query(&self, query: Option<&str>) -> String {
        let mut out =
            String::with_capacity(self.scheme.len() + self.authority.len() + self.path.len() + 64);
        out.push_str(self.scheme);
        out.push_str("://");
        out.push_str(self.authority);
        out.push_str(self.path);
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        if let Some(f) = self.fragment {
            out.push('#');
            out.push_str(f);
        }
        out
    }
}

/// Percent-decodes `s` (invalid escapes are kept as they are); with `plus`, `+` is a
/// space (form encoding, as servers read query values). Lossy on invalid UTF-8.
pub(crate) fn percent_decode_str(s: &str, plus: bool) -> String {
    // One allocation where the decoded bytes are UTF-8 (`from_utf8_lossy` then
    // `into_owned` copied them into a second).
    String::from_utf8(percent_decode_bytes(s.as_bytes(), plus))
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`percent_decode_str`], borrowed when there is nothing to decode (no `%`, and no `+`
/// when `plus`): then decoding gives the same text back. Query names are decoded for
/// every parameter of every link, and most hold neither.
pub(crate) fn percent_decoded(s: &str, plus: bool) -> Cow<'_, str> {
    let special = if plus {
        memchr::memchr2(b'%', b'+', s.as_bytes())
    } else {
        memchr::memchr(b'%', s.as_bytes())
    };
    match special {
        None => Cow::Borrowed(s),
        Some(_) => Cow::Owned(percent_decode_str(s, plus)),
    }
}

/// Percent-decodes bytes (invalid escapes kept).
pub(crate) fn percent_decode_bytes(b: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(byte) = escape_at(b, i)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(if plus && b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    out
}

/// The byte of a valid `%XX` escape starting at `i`.
fn escape_at(b: &[u8], i: usize) -> Option<u8> {
    let h = hex(*b.get(i + 1)?)?;
    let l = hex(*b.get(i + 2)?)?;
    Some(h << 4 | l)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The destination a redirect carried, if it is one a link may be rewritten to: an
/// absolute http(s) URL with a real host. Characters that cannot stand in a URL
/// (controls, space, `"`, `<`, `>`, backtick) are percent-encoded; nothing else changes.
pub(crate) fn valid_destination(decoded: &str) -> Option<String> {
    let d = decoded.trim_matches(|c: char| c.is_whitespace() || c.is_control());
    let lower = d.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return None;
    }
    let mut out = String::with_capacity(d.len());
    for c in d.chars() {
        if c.is_control() || matches!(c, ' ' | '"' | '<' | '>' | '`') {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    let parts = Parts::parse(&out)?;
    let host_ok = parts.host.len() <= 253
        && (parts.host.starts_with('[')
            || parts
                .host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
        && parts.host.contains(|c: char| c.is_ascii_alphanumeric());
    host_ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Borrowed or not, the decoding is the owned one's, with and without `+` as a
        /// space; invalid escapes and bytes that are not UTF-8 included.
        #[test]
        fn percent_decoded_is_percent_decode_str(
            parts in proptest::collection::vec(proptest::sample::select(&[
                "a", "%20", "%2", "%zz", "+", "%2B", "%C3%A9", "%FF", "é", "=", "&", "%",
            ][..]), 0..12),
            plus: bool,
        ) {
            let s: String = parts.concat();
            proptest::prop_assert_eq!(
                percent_decoded(&s, plus).into_owned(),
                percent_decode_str(&s, plus)
            );
        }
    }

    #[test]
    fn splits_without_reencoding() {
        let p = Parts::parse("HTTPS://User@Ex.example:8443/a%2Fb/c?x=1+2&y=%20#frag?x").unwrap();
        assert_eq!(p.scheme, "HTTPS");
        assert_eq!(p.authority, "User@Ex.example:8443");
        assert_eq!(p.host, "ex.example");
        assert_eq!(p.path, "/a%2Fb/c");
        assert_eq!(p.query, Some("x=1+2&y=%20"));
        assert_eq!(p.fragment, Some("frag?x"));
        assert_eq!(p.segments(), vec!["a%2Fb", "c"]);
        assert_eq!(p.param("x"), Some("1+2"));
        assert_eq!(
            p.with_query(Some("y=%20")),
            "HTTPS://User@Ex.example:8443/a%2Fb/c?y=%20#frag?x"
        );
        assert_eq!(Parts::parse("mailto:a@b.example"), None);
        assert_eq!(Parts::parse("javascript://x.example/%0aalert(1)"), None);
    }

    #[test]
    fn the_plain_host_road_agrees_with_the_url_parser() {
        for url in [
            "https://Www.Example.COM/a",
            "http://example.com:8080/?q",
            "http://example.com:/x",
            "http://example.com:99999/x",
            "http://example.com:8o/x",
            "https://example.com./x",
            "https://a..b.example/",
            "https://-a.example/",
            "https://127.1/x",
            "https://0x7f.0.0.1/",
            "https://1.2.3.4:80/",
            "https://xn--bcher-kva.example/",
            "https://b\u{fc}cher.example/",
            "https://ex%41mple.com/",
            "https://user:pw@example.com/",
            "https://[::1]/",
            "https://exa_mple.com/",
            "https://a.example\\evil.example/",
            "https:///nohost",
        ] {
            let expected = Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .filter(|h| !h.is_empty());
            assert_eq!(Parts::parse(url).map(|p| p.host), expected, "{url}");
        }
    }

    /// URL texts as a mail writes them: any case, IDNA, ports, user info, `\\`, percent
    /// escapes, dots, IPs, other schemes.
    fn url_texts() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let scheme = prop::sample::select(vec!["http", "HTTPS", "https", "ftp", "wss", "hTTp"]);
        let user = prop::sample::select(vec!["", "u@", "u:p@", "a%40b@", "x/y@"]);
        let host = prop::sample::select(vec![
            "Ex.example",
            "b\u{fc}cher.example",
            "xn--bcher-kva.example",
            "127.1",
            "[::1]",
            "ex%41mple.com",
            "a..b",
            "example.com.",
            "",
            "T.List-Manage.COM",
        ]);
        let port = prop::sample::select(vec!["", ":80", ":443", ":8080", ":", ":99999"]);
        let rest = "[/\\\\?#%a-cA-C0-9=&.]{0,12}";
        (scheme, user, host, port, rest).prop_map(|(s, u, h, p, r)| format!("{s}://{u}{h}{p}{r}"))
    }

    proptest::proptest! {
        /// Whichever road it takes, an http(s) URL's host is the one the parser finds.
        #[test]
        fn the_host_is_the_url_parsers(text in url_texts()) {
            let expected = Url::parse(&text)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .filter(|h| !h.is_empty());
            proptest::prop_assert_eq!(Parts::parse(&text).map(|p| p.host), expected);
        }

        /// A URL the parser read is split as its text would be: the split that skips
        /// the second parse gives the same pieces (issue 17).
        #[test]
        fn a_parsed_url_splits_as_its_text_does(text in url_texts()) {
            if let Ok(url) = Url::parse(&text) {
                proptest::prop_assert_eq!(Parts::of_url(&url), Parts::parse(url.as_str()));
                if let Some(p) = Parts::of_url(&url) {
                    let written = match url.query() {
                        Some(q) => format!("{}?{q}", url.path()),
                        None => url.path().to_string(),
                    };
                    proptest::prop_assert_eq!(p.path_and_query(), written);
                }
            }
        }

        /// `path?query` is the piece of the URL it always was built from (issue 17: it
        /// is no longer built).
        #[test]
        fn path_and_query_is_path_then_query(text in url_texts()) {
            if let Some(p) = Parts::parse(&text) {
                let built = match p.query {
                    Some(q) => format!("{}?{q}", p.path),
                    None => p.path.to_string(),
                };
                proptest::prop_assert_eq!(p.path_and_query(), built);
            }
        }

        /// One pass finds what the two passes found: the first exact name, else the
        /// first name equal ignoring case.
        #[test]
        fn param_finds_what_two_passes_found(
            pieces in proptest::collection::vec(
                (
                    proptest::sample::select(vec!["u", "U", "url", "Url", "URL", "%75rl", "%55RL", "r+l", "R+L", "x", ""]),
                    proptest::option::of("[a-z0-9]{1,2}"),
                ),
                0..7,
            ),
            name in proptest::sample::select(vec!["u", "url", "URL", "r l", "x"]),
        ) {
            let query: Vec<String> = pieces
                .iter()
                .map(|(n, v)| v.as_ref().map_or(n.to_string(), |v| format!("{n}={v}")))
                .collect();
            let query = query.join("&");
            let text = format!("https://t.example/p?{query}");
            let p = Parts::parse(&text).expect("an http URL");
            let two_passes = |exact: bool| {
                p.query_pieces().find_map(|piece| {
                    let (n, v) = name_and_value(piece);
                    let n = percent_decoded(n, true);
                    let hit = if exact { n == name } else { n.eq_ignore_ascii_case(name) };
                    hit.then_some(v)
                })
            };
            proptest::prop_assert_eq!(p.param(name), two_passes(true).or_else(|| two_passes(false)));
        }
    }

    #[test]
    fn destinations_must_be_absolute_http() {
        assert_eq!(
            valid_destination("https://a.example/x y").as_deref(),
            Some("https://a.example/x%20y")
        );
        assert!(valid_destination("javascript:alert(1)").is_none());
        assert!(valid_destination("//a.example/").is_none());
        assert!(valid_destination("https://").is_none());
        assert!(valid_destination("https://a.example&quot;/").is_none());
        assert!(valid_destination("www.example.com").is_none());
    }
}
