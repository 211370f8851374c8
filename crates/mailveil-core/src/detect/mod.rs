//! Detection: is a URL remote, is it a tracker, does it carry the reader's address.
//! Read-only: produces verdicts; the HTML rewriter decides what to do with them.

pub mod tokens;

use crate::report::FindingKind;
use crate::rules::Rules;
use std::cell::RefCell;
pub use tokens::RecipientTokens;
use url::Url;

/// A remote URL found in a place that fetches on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    /// The parsed URL (protocol-relative URLs are taken as https).
    pub url: Url,
}

impl RemoteUrl {
    /// The lowercased host, or "" for URLs without one.
    pub fn host(&self) -> &str {
        self.url.host_str().unwrap_or("")
    }

    /// Path plus `?query`.
    pub fn path_and_query(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_string(),
        }
    }
}

/// Why a URL is taken for a tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerVerdict {
    /// Pixel (by rule or shape) or recipient token.
    pub kind: FindingKind,
    /// Rule id or `heuristic:<name>`.
    pub rule: String,
    /// Tracker display name, where a rule names one.
    pub tracker: Option<String>,
}

/// How a URL is fetched on open, as far as the beacon heuristic cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// As an image (an `<img>`, a CSS background...). `sized`: the element is given a size
    /// a reader would see (see `html::visibility::visible_size`).
    Image {
        /// A width or height given, neither zero nor tiny.
        sized: bool,
    },
    /// As something else (a stylesheet, a font, media).
    Other,
}

/// What a URL may be resolved against: a `<base href>` seen earlier in the part.
pub type Base = Option<Url>;

/// Everything detection needs for one message.
#[derive(Debug)]
pub struct Detector<'r> {
    rules: &'r Rules,
    tokens: RecipientTokens,
    /// The last verdict of [`Detector::tracker_for`]: the element handler judges an
    /// image's source, then its attribute pass asks again for the same URL, and a
    /// verdict costs some 20,000 instructions (issue 17). One entry: bounded whatever
    /// the mail holds.
    last: RefCell<Option<(String, Fetch, Option<TrackerVerdict>)>>,
}

impl<'r> Detector<'r> {
    /// A detector for one message with these recipient addresses.
    pub fn new<'a>(rules: &'r Rules, recipients: impl IntoIterator<Item = &'a str>) -> Self {
        Detector {
            rules,
            tokens: RecipientTokens::new(recipients),
            last: RefCell::new(None),
        }
    }

    /// Tracker verdict for a remote URL in a place that fetches on open, by rule, by
    /// recipient token, or (for images, their size unknown) by the shape of open beacons.
    pub fn tracker(&self, remote: &RemoteUrl, image: bool) -> Option<TrackerVerdict> {
        let fetch = if image {
            Fetch::Image { sized: false }
        } else {
            Fetch::Other
        };
        self.tracker_for(remote, fetch)
    }

    /// [`Detector::tracker`] for a URL fetched as `fetch`.
    pub fn tracker_for(&self, remote: &RemoteUrl, fetch: Fetch) -> Option<TrackerVerdict> {
        let url = remote.url.as_str();
        if let Some((u, f, verdict)) = &*self.last.borrow()
            && u == url
            && *f == fetch
        {
            return verdict.clone();
        }
        let verdict = self.judge(remote, fetch);
        *self.last.borrow_mut() = Some((url.to_string(), fetch, verdict.clone()));
        verdict
    }

    /// [`Detector::tracker_for`], worked out.
    fn judge(&self, remote: &RemoteUrl, fetch: Fetch) -> Option<TrackerVerdict> {
        let path = remote.path_and_query();
        if let Some(m) = self.rules.match_pixel(remote.host(), &path) {
            return Some(TrackerVerdict {
                kind: FindingKind::Pixel,
                rule: m.rule.to_string(),
                tracker: Some(m.tracker.to_string()),
            });
        }
        // A click tracker in a place that fetches on open is hit when the mail is opened:
        // the ESP counts a click (or an open) that nobody made.
        if let Some(r) = crate::links::click_redirect_of(self.rules, &remote.url, &path) {
            return Some(TrackerVerdict {
                kind: FindingKind::Pixel,
                rule: r.entry.id.to_string(),
                tracker: Some(self.rules.tracker_name(&r.entry.tracker).to_string()),
            });
        }
        if self.carries_token(remote.url.as_str()) {
            return Some(TrackerVerdict {
                kind: FindingKind::RecipientToken,
                rule: "heuristic:recipient-token".into(),
                tracker: None,
            });
        }
        if let Fetch::Image { sized } = fetch
            && beacon(remote, sized)
        {
            return Some(TrackerVerdict {
                kind: FindingKind::Pixel,
                rule: "heuristic:beacon-url".into(),
                tracker: None,
            });
        }
        None
    }

    /// Whether a string (a URL, raw or percent-decoded) carries a recipient token.
    pub fn carries_token(&self, text: &str) -> bool {
        if self.tokens.is_empty() {
            return false;
        }
        if self.tokens.found_in(text) {
            return true;
        }
        if memchr::memchr(b'%', text.as_bytes()).is_none() {
            return false; // nothing to decode: the same text again
        }
        let decoded = percent_decode(text);
        decoded != text && self.tokens.found_in(&decoded)
    }
}

/// Parses `raw` (already entity-decoded) as a URL that a client would fetch over the
/// network: http(s), ftp, ws(s), protocol-relative `//host`, `view-source:` wrappers, or a
/// relative URL when a `<base>` makes it remote. `cid:`, `data:`, `#frag` and plain relative
/// URLs are not remote.
pub fn remote_url(raw: &str, base: &Base) -> Option<RemoteUrl> {
    // A scheme that is not fetched over the network ends it before the copy without
    // noise: a `data:` image is often tens of KB, with line breaks to filter out.
    if leading_scheme(raw, &mut [0; 16])
        .is_some_and(|scheme| !scheme.eq_ignore_ascii_case("view-source") && !network(scheme))
    {
        return None;
    }
    let cleaned = strip_url_noise(raw);
    let s = cleaned.as_str();
    if s.is_empty() || s.starts_with('#') {
        return None;
    }
    let lower = s.get(..16.min(s.len()))?.to_ascii_lowercase();
    if let Some(inner) = lower.strip_prefix("view-source:") {
        let _ = inner;
        return remote_url(&s[12..], base);
    }
    let slashes = s.starts_with("//")
        || s.starts_with("\\\\")
        || s.starts_with("/\\")
        || s.starts_with("\\/");
    let parsed = if slashes {
        Url::parse(&format!("https:{}", s.replace('\\', "/"))).ok()
    } else if has_scheme(s) {
        // Only a network scheme can be remote: a `data:` image (often tens of KB) or a
        // `mailto:` is not parsed at all (the parser percent-encodes it byte by byte).
        if !network(&s[..s.find(':').unwrap_or(0)]) {
            return None;
        }
        Url::parse(s).ok()
    } else {
        base.as_ref().and_then(|b| b.join(s).ok())
    }?;
    NETWORK_SCHEMES
        .contains(&parsed.scheme())
        .then_some(RemoteUrl { url: parsed })
}

/// The schemes a client fetches over the network.
const NETWORK_SCHEMES: &[&str] = &["http", "https", "ftp", "ws", "wss"];

/// Whether a scheme, in any case, is one of [`NETWORK_SCHEMES`].
fn network(scheme: &str) -> bool {
    NETWORK_SCHEMES
        .iter()
        .any(|n| scheme.eq_ignore_ascii_case(n))
}

/// The scheme of `raw` as [`has_scheme`] reads it once [`strip_url_noise`] has run,
/// read from its first characters alone into `buf` (`None` without one, or past 16
/// characters). A buffer, not a `String`: this runs for every URL.
fn leading_scheme<'b>(raw: &str, buf: &'b mut [u8; 16]) -> Option<&'b str> {
    let mut len = 0;
    let chars = raw.trim_start_matches(|c: char| c <= ' ').chars();
    for c in chars.filter(|c| !matches!(c, '\t' | '\n' | '\r')).take(17) {
        match c {
            ':' if buf[..len].first().is_some_and(u8::is_ascii_alphabetic) => {
                return std::str::from_utf8(&buf[..len]).ok();
            }
            c if (c.is_ascii_alphanumeric() || "+-.".contains(c)) && len < buf.len() => {
                buf[len] = c as u8;
                len += 1;
            }
            _ => return None,
        }
    }
    None
}

/// Whether `raw` has a URL scheme (`letters:`), whatever it is.
fn has_scheme(s: &str) -> bool {
    match s.find(':') {
        Some(i) if i > 0 => {
            s[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
                && s.as_bytes()[0].is_ascii_alphabetic()
        }
        _ => false,
    }
}

/// Browsers drop leading/trailing spaces and C0 controls and every tab and newline inside
/// a URL before parsing it; do the same, or `ht\ttp://` slips past.
pub fn strip_url_noise(raw: &str) -> String {
    let trimmed = raw.trim_matches(|c: char| c <= ' ');
    if memchr::memchr3(b'\t', b'\n', b'\r', trimmed.as_bytes()).is_none() {
        return trimmed.to_owned(); // the common case: one copy, no per-char filter
    }
    trimmed
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect()
}

/// Path segments and host labels that only open beacons use. Kept short on purpose:
/// content images never carry these names, and the known trackers are matched by rules.
const BEACON_SEGMENTS: &[&str] = &[
    "open",
    "opens",
    "open.php",
    "open.aspx",
    "open.gif",
    "open.png",
    "open.jpg",
    "openpixel",
    "open-pixel",
    "pixel",
    "pixel.gif",
    "pixel.png",
    "pixel.php",
    "beacon",
    "beacon.gif",
    "beacon.png",
    "track.gif",
    "tracking.gif",
    "trackopen",
    "trackingpixel",
    "tracking-pixel",
    "emailopen",
    "mailopen",
    "impression",
    "impression.gif",
    "imp.gif",
];
const BEACON_HOST_LABELS: &[&str] = &[
    "open", "opens", "pixel", "pixels", "beacon", "tracking", "track", "trk", "tracker",
];

/// The shape of an open beacon, for an image whose size is unknown: see [`beacon`].
pub fn beacon_shaped(remote: &RemoteUrl) -> bool {
    beacon(remote, false)
}

/// Whether an image URL has the marks of an open beacon: a path segment only beacons use
/// (`/open`, `/pixel.gif`, `/track/open`) on an image not given a size a reader would see
/// (`sized`) or with a per-recipient part (a query, or a last segment that is a token
/// rather than a file); or a beacon host (`open.`, `pixel.`, `track.`) with a
/// per-recipient part on an image not given a size. A host name alone is no mark:
/// senders serve their own content images from `track.` hosts too.
pub fn beacon(remote: &RemoteUrl, sized: bool) -> bool {
    let beacon_path = remote
        .url
        .path_segments()
        .into_iter()
        .flatten()
        .any(|seg| BEACON_SEGMENTS.iter().any(|b| seg.eq_ignore_ascii_case(b)));
    let part = per_recipient_part(&remote.url);
    // A known open path is a mark, unless the image is given a size a reader sees and
    // its URL is the same for every reader (a layout GIF named pixel.gif, stretched).
    if beacon_path {
        return !sized || part;
    }
    let host = remote.host();
    let beacon_host = host
        .split('.')
        .next()
        .is_some_and(|first| host.matches('.').count() >= 2 && BEACON_HOST_LABELS.contains(&first));
    beacon_host && !sized && part
}

/// File names that content is served under.
const FILE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "svg", "avif", "bmp", "ico", "css", "woff", "woff2",
    "ttf", "otf", "mp4", "webm",
];

/// Whether a URL carries what can tell one reader from another: a query, or a last path
/// segment that is not a file name (`/p9unqonzo5iqumomk5uq` rather than `/logo.png`).
fn per_recipient_part(url: &url::Url) -> bool {
    if url.query().is_some_and(|q| !q.is_empty()) {
        return true;
    }
    let last = url
        .path_segments()
        .and_then(|mut s| s.rfind(|seg| !seg.is_empty()))
        .unwrap_or("");
    let file = last.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && FILE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e))
    });
    !last.is_empty() && !file
}

/// Percent-decodes (lossy), for token search only.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (
                hexval(bytes[i + 1]),
                bytes.get(i + 2).and_then(|b| hexval(*b)),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hexval(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(s: &str) -> Option<String> {
        remote_url(s, &None).map(|r| r.url.to_string())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]
        /// The scheme read from the start of a URL is the one read after the whole of it
        /// is stripped of noise (seen failing with the leading blanks kept, and with a
        /// tab inside the scheme left in).
        #[test]
        fn the_leading_scheme_is_the_scheme_after_stripping(
            blanks in proptest::collection::vec(proptest::sample::select(&[
                " ", "\t", "\n", "\r", "\x01",
            ][..]), 0..3),
            scheme in proptest::collection::vec(proptest::sample::select(&[
                "data", "DATA", "http", "s", "view-source", "1", "+", "-", ".", "é", "/",
                "\\", " ", "\t", "\n", "\r", "\x01", "#", "x", "abcdefgh",
            ][..]), 0..5),
            colon in proptest::sample::select(&[":", "", "//"][..]),
            rest in proptest::sample::select(&["", "x:y", "image/png;base64,QUJD\n", " \n"][..]),
        ) {
            let raw = [blanks.concat(), scheme.concat(), colon.into(), rest.into()].concat();
            let s = strip_url_noise(&raw);
            let scheme = has_scheme(&s).then(|| s[..s.find(':').unwrap()].to_string());
            let mut buf = [0; 16];
            let leading = leading_scheme(&raw, &mut buf).map(str::to_owned);
            match &scheme {
                Some(x) if x.len() <= 16 => proptest::prop_assert_eq!(&leading, &scheme, "{:?}", raw),
                _ => proptest::prop_assert_eq!(&leading, &None, "{:?}", raw),
            }
        }
    }

    /// A `data:` URL, line breaks and all, is not remote, and a network URL behind noise
    /// still is.
    #[test]
    fn a_data_url_is_not_remote_without_being_copied() {
        let image = format!("\n da\nta:image/png;base64,{}", "QUJD\n".repeat(1000));
        assert_eq!(remote(&image), None);
        assert_eq!(
            remote(" \tht\ttps://t.example/o.gif"),
            Some("https://t.example/o.gif".into())
        );
        assert_eq!(remote("view-source:data:x"), None);
        assert_eq!(
            remote("VIEW-SOURCE:https://t.example/"),
            Some("https://t.example/".into())
        );
    }

    /// The last verdict is given again only for the same URL fetched the same way: the
    /// size of an image decides a beacon, the reader's address another URL.
    #[test]
    fn a_verdict_asked_again_is_the_one_worked_out() {
        let rules = Rules::default();
        let detector = Detector::new(&rules, ["reader@example.org"]);
        let pixel = remote_url("https://x.example/pixel.gif", &None).unwrap();
        let token = remote_url("https://x.example/a.png?e=reader@example.org", &None).unwrap();
        let rule = |v: Option<TrackerVerdict>| v.map(|v| v.rule);
        let bare = Fetch::Image { sized: false };
        let sized = Fetch::Image { sized: true };
        for _ in 0..2 {
            let beacon = Some("heuristic:beacon-url".to_string());
            assert_eq!(rule(detector.tracker_for(&pixel, bare)), beacon);
            assert_eq!(rule(detector.tracker_for(&pixel, bare)), beacon);
            assert_eq!(rule(detector.tracker_for(&pixel, sized)), None);
            assert_eq!(rule(detector.tracker_for(&pixel, Fetch::Other)), None);
            let found = Some("heuristic:recipient-token".to_string());
            assert_eq!(rule(detector.tracker_for(&token, sized)), found);
            assert_eq!(rule(detector.tracker_for(&pixel, sized)), None);
        }
    }

    #[test]
    fn remote_urls_are_recognised_in_all_their_spellings() {
        assert_eq!(
            remote("http://a.example/x").as_deref(),
            Some("http://a.example/x")
        );
        assert_eq!(
            remote("  HTTPS://A.example/x ").as_deref(),
            Some("https://a.example/x")
        );
        assert_eq!(
            remote("//a.example/x").as_deref(),
            Some("https://a.example/x")
        );
        assert_eq!(
            remote("ht\ntp://a.example/x").as_deref(),
            Some("http://a.example/x")
        );
        assert_eq!(
            remote("view-source:http://a.example/x").as_deref(),
            Some("http://a.example/x")
        );
        assert_eq!(
            remote("\\\\a.example/x").as_deref(),
            Some("https://a.example/x")
        );
    }

    #[test]
    fn local_urls_are_not_remote() {
        for s in [
            "cid:logo@x",
            "data:image/gif;base64,R0lG",
            "#top",
            "images/a.png",
            "mailto:a@b.c",
            "javascript:x",
            "",
        ] {
            assert_eq!(remote(s), None, "{s}");
        }
    }

    #[test]
    fn a_base_makes_relative_urls_remote() {
        let base = Some(Url::parse("http://sender.example/news/").unwrap());
        assert_eq!(
            remote_url("img/a.png", &base).unwrap().url.as_str(),
            "http://sender.example/news/img/a.png"
        );
    }

    #[test]
    fn beacon_shapes() {
        let yes = [
            "https://open.convertkit-mail.example/abc",
            "https://x.example/track/open",
            "https://x.example/e/pixel.gif?id=1",
        ];
        let no = [
            "https://cdn.example/img/hero.jpg",
            "https://open.example/logo.png",
            "https://x.example/music/track/cover.jpg",
            "https://track.shop.example/Image/files/9f2c4e1d7a.png",
        ];
        for s in yes {
            assert!(beacon_shaped(&remote_url(s, &None).unwrap()), "{s}");
        }
        for s in no {
            assert!(!beacon_shaped(&remote_url(s, &None).unwrap()), "{s}");
        }
    }

    /// Issue 18: content images on a sender's own `track.` host, given a visible size,
    /// are not beacons; the beacon's marks are.
    #[test]
    fn a_beacon_host_needs_a_beacon_mark() {
        let r = |s: &str| remote_url(s, &None).unwrap();
        let file = r("https://track.shop.example/Image/files/9f2c4e1d7a.png");
        assert!(!beacon(&file, true) && !beacon(&file, false));
        let token = r("https://track.shop.example/o/9f2c4e1d7a");
        assert!(beacon(&token, false), "a token, no size");
        assert!(!beacon(&token, true), "a token, but a size a reader sees");
        let query = r("https://pixel.shop.example/img.png?u=77");
        assert!(beacon(&query, false) && !beacon(&query, true));
        let path = r("https://cdn.shop.example/e/open.gif?id=7");
        assert!(
            beacon(&path, true),
            "a known open path with a per-recipient part"
        );
        let layout = r("https://media.shop.example/images/etc/pixel.gif");
        assert!(beacon(&layout, false), "unsized");
        assert!(
            !beacon(&layout, true),
            "a layout GIF named pixel.gif, the same for everyone, shown at a size"
        );
    }

    #[test]
    fn percent_decoding_is_lossy_but_safe() {
        assert_eq!(percent_decode("a%40b%2"), "a@b%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
