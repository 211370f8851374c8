//! URLs of the image proxy and link shield: `BASE/<kind>/<signature>/<encoded URL>`.
//!
//! The encoded URL is the original URL in unpadded base64url; the signature is
//! HMAC-SHA256 over the kind, a colon and the encoded URL, also unpadded base64url. The
//! core writes these URLs, the proxy checks them (in constant time): only URLs that this
//! installation wrote are ever fetched.
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

/// Where the proxy is reached and the key its URLs are signed with.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ProxyConfig {
    /// The public base URL, as mail clients reach the proxy (no trailing slash needed).
    pub base: String,
    /// The HMAC key.
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

fn mac(key: &[u8], kind: ProxyKind, encoded: &str) -> HmacSha256 {
    // HMAC takes keys of any length; new_from_slice cannot fail for it.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(kind.as_str().as_bytes());
    m.update(b":");
    m.update(encoded.as_bytes());
    m
}

/// The signature of an encoded URL of a kind.
pub fn sign(key: &[u8], kind: ProxyKind, encoded: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, kind, encoded).finalize().into_bytes())
}

/// Whether `signature` is the full signature of the encoded URL of that kind, compared in
/// constant time. A truncated or padded signature fails.
pub fn verify(key: &[u8], kind: ProxyKind, signature: &str, encoded: &str) -> bool {
    let Ok(sig) = URL_SAFE_NO_PAD.decode(signature.as_bytes()) else {
        return false;
    };
    mac(key, kind, encoded).verify_slice(&sig).is_ok()
}

/// The proxy URL for `url`.
pub fn proxied(cfg: &ProxyConfig, kind: ProxyKind, url: &str) -> String {
    let enc = encode_url(url);
    let sig = sign(&cfg.key, kind, &enc);
    format!("{}/{}/{sig}/{enc}", cfg.base(), kind.as_str())
}

/// Whether `url` already points at the proxy (under its base), signed or not: such URLs
/// are left alone, so cleaning stays idempotent.
pub fn is_proxied(cfg: &ProxyConfig, url: &str) -> bool {
    let base = cfg.base();
    !base.is_empty()
        && url
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The kind and original URL of a proxy URL written with this configuration, when its
/// signature holds.
pub fn parse(cfg: &ProxyConfig, url: &str) -> Option<(ProxyKind, String)> {
    let rest = url.strip_prefix(cfg.base())?.strip_prefix('/')?;
    let mut it = rest.splitn(3, '/');
    let kind = ProxyKind::from_segment(it.next()?)?;
    let (sig, enc) = (it.next()?, it.next()?);
    check(&cfg.key, kind, sig, enc)
}

/// The original URL of `sig`/`enc` for a kind when the signature holds.
pub fn check(key: &[u8], kind: ProxyKind, sig: &str, enc: &str) -> Option<(ProxyKind, String)> {
    if !verify(key, kind, sig, enc) {
        return None;
    }
    decode_url(enc).map(|u| (kind, u))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ProxyConfig {
        ProxyConfig::new("https://mx.example/mv/", b"k3y".to_vec())
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
    fn recognises_its_own_base_only() {
        let c = cfg();
        assert!(is_proxied(&c, "https://mx.example/mv/i/x/y"));
        assert!(!is_proxied(&c, "https://mx.example/mvx/i/x/y"));
        assert!(!is_proxied(&c, "https://cdn.example/a.png"));
    }

    #[test]
    fn debug_hides_the_key() {
        assert!(!format!("{:?}", cfg()).contains("k3y"));
    }
}
