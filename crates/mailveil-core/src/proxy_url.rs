//! URLs of the image proxy and link shield:
//! `BASE/<kind>/<key id>/<signature>/<encoded URL>`.
//!
//! - The **encoded URL** is the original URL in unpadded base64url.
//! - The **key id** names the key that signed (the key's epoch): eight base64url
//!   characters derived from the key by HMAC, which tell nothing about the key. The proxy
//!   checks a URL only with the key of that id among the keys it holds (the current one
//!   and those kept for a grace period after a rotation, docs/proxy.md): retiring a key
//!   retires every URL it signed.
//! - The **signature** is HMAC-SHA256, unpadded base64url, over a version tag, the
//!   **kind** (`i` image, `s` stylesheet, `l` link shield), the key id and the encoded
//!   URL: a signature made for an image is no signature for the link shield, nor for
//!   another URL, nor under another key.
//!
//! The core writes these URLs, the proxy checks them in constant time: only URLs this
//! installation wrote are ever fetched. The core trusts none of them in incoming mail:
//! [`own`] reads the URL that one of ours carries, and the cleaner judges that URL like
//! any other (issue 14: a reader of this server could otherwise mint a signed URL for a
//! tracker by mailing it to themselves, and mail it on).
//!
//! URLs written before key ids existed (`BASE/<kind>/<signature>/<encoded URL>`, MAC over
//! `kind:encoded`) are still checked, with every key held ([`check_legacy`]), so that
//! mail delivered before the upgrade keeps its images until that key is retired.
//!
//! ```
//! use mailveil_core::proxy_url::{ProxyConfig, ProxyKind, proxied, parse};
//! let cfg = ProxyConfig::new("https://mx.example/mv", b"secret".to_vec());
//! let u = proxied(&cfg, ProxyKind::Image, "http://cdn.example/a.png");
//! assert!(u.starts_with("https://mx.example/mv/i/"));
//! assert_eq!(
//!     parse(&cfg, &u),
//!     Some((ProxyKind::Image, "http://cdn.example/a.png".to_string()))
//! );
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of a key id (base64url of 6 bytes).
pub const KEY_ID_LEN: usize = 8;

/// Length of a full signature (base64url of 32 bytes, unpadded).
pub const SIGNATURE_LEN: usize = 43;

/// Where the proxy is reached and the key its URLs are signed with.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ProxyConfig {
    /// The public base URL, as mail clients reach the proxy (no trailing slash needed).
    pub base: String,
    /// The HMAC key that signs (the current one).
    pub key: Vec<u8>,
    /// Send opaque click trackers through the link shield (`BASE/l/...`).
    pub shield_links: bool,
}

impl ProxyConfig {
    /// A configuration without the link shield.
    pub fn new(base: &str, key: Vec<u8>) -> Self {
        ProxyConfig {
            base: base.trim_end_matches('/').to_string(),
            key,
            shield_links: false,
        }
    }

    fn base(&self) -> &str {
        self.base.trim_end_matches('/')
    }
}

impl std::fmt::Debug for ProxyConfig {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("base", &self.base)
            .field("key", &format_args!("<{} bytes>", self.key.len()))
            .field("shield_links", &self.shield_links)
            .finish()
    }
}

/// What a proxy URL serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// `i`: an image (raster types only).
    Image,
    /// `s`: a stylesheet (`<link rel=stylesheet>`, `@import`); its `url()`s are proxied too.
    Style,
    /// `l`: a link through the shield.
    Link,
}

impl ProxyKind {
    /// The path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyKind::Image => "i",
            ProxyKind::Style => "s",
            ProxyKind::Link => "l",
        }
    }

    /// The kind of a path segment.
    pub fn from_segment(s: &str) -> Option<Self> {
        match s {
            "i" => Some(ProxyKind::Image),
            "s" => Some(ProxyKind::Style),
            "l" => Some(ProxyKind::Link),
            _ => None,
        }
    }
}

/// The URL in unpadded base64url.
pub fn encode_url(url: &str) -> String {
    URL_SAFE_NO_PAD.encode(url.as_bytes())
}

/// The URL of an encoded segment, if it is valid base64url of UTF-8.
pub fn decode_url(encoded: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(encoded.as_bytes()).ok()?;
    String::from_utf8(bytes).ok()
}

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// The id of a key: the first 6 bytes of an HMAC of a fixed label under the key, in
/// base64url. Stable for a key, different across keys, and says nothing about the key.
pub fn key_id(key: &[u8]) -> String {
    let mut m = hmac(key);
    m.update(b"mailveil proxy key id");
    URL_SAFE_NO_PAD.encode(&m.finalize().into_bytes()[..6])
}

/// The MAC of this format: a version tag, then kind, key id and encoded URL, each ended
/// by a NUL (none of them can hold one), so no two inputs read alike.
fn mac(key: &[u8], kind: ProxyKind, id: &str, encoded: &str) -> HmacSha256 {
    let mut m = hmac(key);
    for part in ["mailveil-proxy/2", kind.as_str(), id, encoded] {
        m.update(part.as_bytes());
        m.update(b"\0");
    }
    m
}

/// The MAC of URLs written before key ids (`kind:encoded`); its input never starts like
/// the current one's (a kind letter, not `m`).
fn legacy_mac(key: &[u8], kind: ProxyKind, encoded: &str) -> HmacSha256 {
    let mut m = hmac(key);
    m.update(kind.as_str().as_bytes());
    m.update(b":");
    m.update(encoded.as_bytes());
    m
}

/// The signature of an encoded URL of a kind, under `key` (whose id it binds).
pub fn sign(key: &[u8], kind: ProxyKind, encoded: &str) -> String {
    let id = key_id(key);
    URL_SAFE_NO_PAD.encode(mac(key, kind, &id, encoded).finalize().into_bytes())
}

/// Whether `signature` is the full signature under `key` of the encoded URL of that
/// kind, compared in constant time. A truncated or padded signature fails.
pub fn verify(key: &[u8], kind: ProxyKind, signature: &str, encoded: &str) -> bool {
    let Ok(sig) = URL_SAFE_NO_PAD.decode(signature.as_bytes()) else {
        return false;
    };
    let id = key_id(key);
    mac(key, kind, &id, encoded).verify_slice(&sig).is_ok()
}

/// The proxy URL for `url`, signed with the configuration's key.
pub fn proxied(cfg: &ProxyConfig, kind: ProxyKind, url: &str) -> String {
    let enc = encode_url(url);
    let sig = sign(&cfg.key, kind, &enc);
    format!(
        "{}/{}/{}/{sig}/{enc}",
        cfg.base(),
        kind.as_str(),
        key_id(&cfg.key)
    )
}

/// The original URL of `id`/`sig`/`enc` for a kind, when `keys` holds a key of that id
/// and its signature holds. A key id nobody holds (a retired key) fails.
pub fn check(keys: &[Vec<u8>], kind: ProxyKind, id: &str, sig: &str, enc: &str) -> Option<String> {
    let key = keys.iter().find(|k| key_id(k) == id)?;
    if !verify(key, kind, sig, enc) {
        return None;
    }
    decode_url(enc)
}

/// The original URL of a URL written before key ids (`kind`/`sig`/`enc`), when one of
/// `keys` signed it.
pub fn check_legacy(keys: &[Vec<u8>], kind: ProxyKind, sig: &str, enc: &str) -> Option<String> {
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig.as_bytes()) else {
        return None;
    };
    if !keys
        .iter()
        .any(|k| legacy_mac(k, kind, enc).verify_slice(&sig).is_ok())
    {
        return None;
    }
    decode_url(enc)
}

/// The signature of a URL in the format before key ids, for tests of the upgrade path.
#[doc(hidden)]
pub fn sign_legacy(key: &[u8], kind: ProxyKind, encoded: &str) -> String {
    URL_SAFE_NO_PAD.encode(legacy_mac(key, kind, encoded).finalize().into_bytes())
}

/// The kind and original URL of a proxy URL written with this configuration's key, when
/// its signature holds.
pub fn parse(cfg: &ProxyConfig, url: &str) -> Option<(ProxyKind, String)> {
    let rest = url.strip_prefix(cfg.base())?.strip_prefix('/')?;
    let segs: Vec<&str> = rest.split('/').collect();
    let [kind, id, sig, enc] = segs[..] else {
        return None;
    };
    let kind = ProxyKind::from_segment(kind)?;
    check(std::slice::from_ref(&cfg.key), kind, id, sig, enc).map(|u| (kind, u))
}

/// What a URL found in a mail is to this installation's proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Own {
    /// Not a URL of the proxy.
    No,
    /// A URL of the proxy (whoever signed it, with whatever key, or nobody): the URL it
    /// carries, which the cleaner judges like any other.
    Carries {
        /// The kind its path names.
        kind: ProxyKind,
        /// The URL it carries.
        url: String,
    },
    /// Under one of the proxy's kinds, but no URL can be read from it: it can only fail
    /// on the proxy.
    Unreadable,
}

/// Whether `url` (entity-decoded) is a URL of the proxy of `cfg`, read the way a client
/// and the proxy read it rather than by its spelling: the scheme is ignored (http or
/// https reach the same reverse proxy), the host compared case-insensitively and without
/// a trailing dot, the port as parsed (`:443` on https is no port), and the path by
/// percent-decoded segments with empty ones dropped (`/mv//%69/...` is `/mv/i/...`).
pub fn own(cfg: &ProxyConfig, url: &str) -> Own {
    let (Ok(base), Ok(u)) = (url::Url::parse(cfg.base()), url::Url::parse(url.trim())) else {
        return Own::No;
    };
    if !matches!(u.scheme(), "http" | "https") || host_port(&u) != host_port(&base) {
        return Own::No;
    }
    let (base_segs, segs) = (segments(&base), segments(&u));
    let Some(rest) = segs.strip_prefix(&base_segs[..]) else {
        return Own::No;
    };
    let Some(kind) = rest
        .first()
        .and_then(|s| ProxyKind::from_segment(&s.to_ascii_lowercase()))
    else {
        return Own::No;
    };
    let carried = rest
        .last()
        .filter(|_| rest.len() >= 2)
        .and_then(|enc| decode_url(enc))
        .filter(|d| url::Url::parse(d).is_ok());
    match carried {
        Some(url) => Own::Carries { kind, url },
        None => Own::Unreadable,
    }
}

fn host_port(u: &url::Url) -> (String, Option<u16>) {
    let host = u
        .host_str()
        .unwrap_or("")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (host, u.port())
}

/// The path segments, percent-decoded (lossy), without empty ones.
fn segments(u: &url::Url) -> Vec<String> {
    u.path_segments()
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .map(crate::detect::percent_decode)
        .collect()
}

/// The URL carried by anything shaped like a proxy URL of any installation (no base, no
/// key): `.../<kind>/<key id>/<signature>/<encoded URL>` or the older
/// `.../<kind>/<signature>/<encoded URL>`, unwrapped as often as it nests. For reports,
/// which must keep neither a signature nor an encoded URL with its query. Not a check:
/// nothing it returns is trusted or fetched.
pub fn carried_by_shape(url: &str) -> Option<String> {
    let mut current = url.to_string();
    let mut found = None;
    for _ in 0..4 {
        match carried_once(&current) {
            Some(inner) => {
                current = inner.clone();
                found = Some(inner);
            }
            None => break,
        }
    }
    found
}

fn carried_once(url: &str) -> Option<String> {
    let u = url::Url::parse(url.trim()).ok()?;
    let segs: Vec<&str> = u.path_segments()?.collect();
    let b64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let (enc, before) = segs.split_last()?;
    let (sig, before) = before.split_last()?;
    if sig.len() != SIGNATURE_LEN || !b64(sig) {
        return None;
    }
    let kind_at = match before.split_last()? {
        (id, rest) if id.len() == KEY_ID_LEN && b64(id) => rest.last(),
        (kind, _) => Some(kind),
    };
    ProxyKind::from_segment(kind_at?)?;
    let carried = decode_url(enc)?;
    let parsed = url::Url::parse(&carried).ok()?;
    matches!(parsed.scheme(), "http" | "https").then_some(carried)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ProxyConfig {
        ProxyConfig::new("https://mx.example/mv/", b"k3y".to_vec())
    }

    fn parts(url: &str) -> (String, String, String) {
        let segs: Vec<&str> = url.rsplitn(4, '/').collect();
        (
            segs[2].to_string(),
            segs[1].to_string(),
            segs[0].to_string(),
        )
    }

    #[test]
    fn round_trips_and_keeps_the_kind() {
        let url = "https://cdn.example/a b.png?x=1&y=ü#f";
        for kind in [ProxyKind::Image, ProxyKind::Style, ProxyKind::Link] {
            let p = proxied(&cfg(), kind, url);
            assert!(p.starts_with(&format!("https://mx.example/mv/{}/", kind.as_str())));
            assert_eq!(parse(&cfg(), &p), Some((kind, url.to_string())));
        }
    }

    #[test]
    fn encoded_urls_need_no_escaping_in_html_or_css() {
        let p = proxied(&cfg(), ProxyKind::Image, "http://x.example/?a=\"<'>\\");
        assert!(
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || ":/._-".contains(c)),
            "{p}"
        );
    }

    #[test]
    fn refuses_forged_signature() {
        let enc = encode_url("http://x.example/a.png");
        let forged = sign(b"other key", ProxyKind::Image, &enc);
        assert!(!verify(b"k3y", ProxyKind::Image, &forged, &enc));
    }

    #[test]
    fn refuses_truncated_or_extended_signature() {
        let enc = encode_url("http://x.example/a.png");
        let sig = sign(b"k3y", ProxyKind::Image, &enc);
        assert_eq!(sig.len(), SIGNATURE_LEN);
        assert!(verify(b"k3y", ProxyKind::Image, &sig, &enc));
        assert!(!verify(
            b"k3y",
            ProxyKind::Image,
            &sig[..sig.len() - 2],
            &enc
        ));
        assert!(!verify(b"k3y", ProxyKind::Image, &sig[..8], &enc));
        assert!(!verify(b"k3y", ProxyKind::Image, "", &enc));
        assert!(!verify(b"k3y", ProxyKind::Image, &format!("{sig}AA"), &enc));
    }

    #[test]
    fn refuses_signature_of_another_kind_or_url() {
        let enc = encode_url("http://x.example/a.png");
        let sig = sign(b"k3y", ProxyKind::Image, &enc);
        assert!(!verify(b"k3y", ProxyKind::Link, &sig, &enc));
        assert!(!verify(b"k3y", ProxyKind::Style, &sig, &enc));
        let other = encode_url("http://x.example/b.png");
        assert!(!verify(b"k3y", ProxyKind::Image, &sig, &other));
    }

    #[test]
    fn key_ids_name_keys_without_telling_them() {
        let (a, b) = (key_id(b"k3y"), key_id(b"k3y2"));
        assert_eq!(a.len(), KEY_ID_LEN);
        assert_ne!(a, b);
        assert_eq!(a, key_id(b"k3y"));
        assert!(!a.contains("k3y"));
    }

    #[test]
    fn check_takes_the_key_of_the_id_and_refuses_retired_keys() {
        let old = ProxyConfig::new("https://mx.example/mv", b"old key".to_vec());
        let (id, sig, enc) = parts(&proxied(&old, ProxyKind::Image, "http://x.example/"));
        let held = vec![b"new key".to_vec(), b"old key".to_vec()];
        assert_eq!(
            check(&held, ProxyKind::Image, &id, &sig, &enc).as_deref(),
            Some("http://x.example/")
        );
        // The old key retired: its URLs no longer hold.
        let retired = vec![b"new key".to_vec()];
        assert_eq!(check(&retired, ProxyKind::Image, &id, &sig, &enc), None);
        // Another id in front of a good signature: no.
        let new_id = key_id(b"new key");
        assert_eq!(check(&held, ProxyKind::Image, &new_id, &sig, &enc), None);
        assert_eq!(check(&held, ProxyKind::Link, &id, &sig, &enc), None);
    }

    #[test]
    fn legacy_urls_hold_with_a_key_held_and_only_for_their_kind() {
        let enc = encode_url("http://x.example/a.png");
        let sig = sign_legacy(b"old key", ProxyKind::Image, &enc);
        let held = vec![b"new key".to_vec(), b"old key".to_vec()];
        assert!(check_legacy(&held, ProxyKind::Image, &sig, &enc).is_some());
        assert!(check_legacy(&held, ProxyKind::Link, &sig, &enc).is_none());
        assert!(check_legacy(&[b"new key".to_vec()], ProxyKind::Image, &sig, &enc).is_none());
        // A current signature is no legacy one, and the other way round.
        let id = key_id(b"old key");
        assert!(check(&held, ProxyKind::Image, &id, &sig, &enc).is_none());
        let current = sign(b"old key", ProxyKind::Image, &enc);
        assert!(check_legacy(&held, ProxyKind::Image, &current, &enc).is_none());
    }

    #[test]
    fn own_reads_the_carried_url_however_the_proxy_url_is_spelled() {
        let c = cfg();
        let dest = "http://t.example/o.gif?e=reader";
        let p = proxied(&c, ProxyKind::Image, dest);
        let carries = |kind| Own::Carries {
            kind,
            url: dest.to_string(),
        };
        assert_eq!(own(&c, &p), carries(ProxyKind::Image));
        let (id, sig, enc) = parts(&p);
        for spelled in [
            format!("HTTPS://MX.EXAMPLE/mv/i/{id}/{sig}/{enc}"),
            format!("http://mx.example./mv/i/{id}/{sig}/{enc}"),
            format!("https://mx.example:443/mv/i/{id}/{sig}/{enc}"),
            format!("https://mx.example/mv//i/{id}/{sig}/{enc}?x#y"),
            format!("https://mx.example/%6dv/%69/{id}/{sig}/{enc}"),
            format!("https://mx.example/mv/x/../i/{id}/{sig}/{enc}"),
            format!("https://mx.example/mv/i/forged/{enc}"),
            format!("https://mx.example/mv/i/{sig}/{enc}"),
        ] {
            assert_eq!(own(&c, &spelled), carries(ProxyKind::Image), "{spelled}");
        }
        assert_eq!(
            own(&c, &format!("https://mx.example/mv/l/{id}/{sig}/{enc}")),
            carries(ProxyKind::Link)
        );
        assert_eq!(own(&c, "https://mx.example/mv/i/x/y"), Own::Unreadable);
        assert_eq!(own(&c, "https://mx.example/mv/healthz"), Own::No);
        assert_eq!(own(&c, "https://mx.example/mvx/i/x/y"), Own::No);
        assert_eq!(own(&c, "https://mx.example:8443/mv/i/x/y"), Own::No);
        assert_eq!(own(&c, "https://cdn.example/a.png"), Own::No);
        assert_eq!(own(&c, "mailto:a@mx.example"), Own::No);
    }

    #[test]
    fn the_shape_of_any_proxy_url_gives_its_destination() {
        let other = ProxyConfig::new("https://elsewhere.example", b"x".to_vec());
        let dest = "https://t.example/o.gif?e=reader%40example.org";
        let p = proxied(&other, ProxyKind::Image, dest);
        assert_eq!(carried_by_shape(&p).as_deref(), Some(dest));
        let enc = encode_url(dest);
        let legacy = format!(
            "https://mx.example/mv/l/{}/{enc}",
            sign_legacy(b"k", ProxyKind::Link, &enc)
        );
        assert_eq!(carried_by_shape(&legacy).as_deref(), Some(dest));
        let nested = proxied(&other, ProxyKind::Link, &p);
        assert_eq!(carried_by_shape(&nested).as_deref(), Some(dest));
        assert_eq!(carried_by_shape("https://cdn.example/a/b/c.png"), None);
        assert_eq!(
            carried_by_shape(&format!("https://esp.example/c/{}/{enc}", "A".repeat(43))),
            None
        );
    }

    #[test]
    fn debug_hides_the_key() {
        assert!(!format!("{:?}", cfg()).contains("k3y"));
    }
}
