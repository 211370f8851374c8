//! The one fetcher of the proxy, for images, stylesheets, prefetch and the link shield:
//! no cookies, no referrer, one generic user agent, no environment proxy, redirects
//! followed by hand (each hop checked again), every address checked after DNS, time and
//! byte limits.

use super::guard::{Guard, Refusal};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// The user agent every request carries: the same for every reader and every mail.
pub const USER_AGENT: &str = "Mozilla/5.0 (compatible; mailveil-proxy)";

/// Bounds on one fetch.
#[derive(Debug, Clone)]
pub struct FetchLimits {
    /// TCP (and TLS) connect.
    pub connect: Duration,
    /// Each read.
    pub read: Duration,
    /// The whole fetch, redirects included.
    pub total: Duration,
    /// Largest body read; a larger one is cut off and refused.
    pub max_bytes: usize,
    /// Redirect hops followed for a resource.
    pub max_redirects: usize,
    /// Redirect hops followed by the link shield.
    pub max_link_hops: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            connect: Duration::from_secs(3),
            read: Duration::from_secs(5),
            total: Duration::from_secs(10),
            max_bytes: 5 << 20,
            max_redirects: 3,
            max_link_hops: 10,
        }
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The URL or an address it resolved to is not allowed.
    Refused(Refusal),
    /// The upstream answered with this status.
    Status(u16),
    /// The body is not an allowed type.
    Type,
    /// The body is larger than the cap.
    TooLarge,
    /// A time limit ran out.
    Timeout,
    /// More redirects than allowed, or a redirect without a usable Location.
    Redirects,
    /// Connection or protocol failure.
    Upstream(String),
}

impl FetchError {
    /// The `outcome` label of `mailveil_proxy_fetches_total`.
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::Refused(Refusal::Tracker) => "tracker",
            FetchError::Refused(_) => "refused",
            FetchError::Status(_) => "status",
            FetchError::Type => "type",
            FetchError::TooLarge => "too_large",
            FetchError::Timeout => "timeout",
            FetchError::Redirects => "redirects",
            FetchError::Upstream(_) => "upstream",
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Refused(r) => write!(f, "refused: {r}"),
            FetchError::Status(s) => write!(f, "upstream status {s}"),
            FetchError::Type => f.write_str("content type not allowed"),
            FetchError::TooLarge => f.write_str("body too large"),
            FetchError::Timeout => f.write_str("timed out"),
            FetchError::Redirects => f.write_str("too many or bad redirects"),
            FetchError::Upstream(e) => write!(f, "upstream error: {e}"),
        }
    }
}

/// What a resource fetch may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Raster images only (checked by their first bytes).
    Image,
    /// `text/css`.
    Style,
}

/// A fetched body with the type it is served as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The type, decided by mailveil (never the upstream's word alone).
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// The URL the body came from, after redirects.
    pub url: Url,
}

/// Marks a DNS answer with only forbidden addresses.
#[derive(Debug)]
struct Blocked;

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("address not allowed")
    }
}

impl std::error::Error for Blocked {}

/// Resolves names and drops every address the guard refuses: the connection goes only to
/// an address that was checked (no DNS-rebinding window).
struct GuardedResolver(Arc<Guard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.0);
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let ok: Vec<SocketAddr> = found.filter(|a| guard.permits(a.ip())).collect();
            if ok.is_empty() {
                return Err(Box::new(Blocked) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(ok.into_iter()) as Addrs)
        })
    }
}

/// The SSRF-safe HTTP client.
#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    guard: Arc<Guard>,
    limits: FetchLimits,
}

impl Fetcher {
    /// A fetcher with these address rules and limits.
    pub fn new(guard: Guard, limits: FetchLimits) -> Result<Fetcher, String> {
        let guard = Arc::new(guard);
        let resolver: Arc<dyn Resolve> = Arc::new(GuardedResolver(Arc::clone(&guard)));
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .no_proxy()
            .referer(false)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(limits.connect)
            .read_timeout(limits.read)
            .timeout(limits.total)
            .dns_resolver(resolver)
            .pool_max_idle_per_host(4)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Fetcher {
            client,
            guard,
            limits,
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &FetchLimits {
        &self.limits
    }

    /// One request, after the URL check.
    async fn request(&self, url: &Url) -> Result<reqwest::Response, FetchError> {
        self.guard.check_url(url).map_err(FetchError::Refused)?;
        self.client
            .get(url.clone())
            .header(
                reqwest::header::ACCEPT,
                "image/avif,image/webp,image/*,text/css;q=0.5",
            )
            .send()
            .await
            .map_err(map_error)
    }

    /// Fetches a resource: redirects followed (each hop checked), body capped, type
    /// checked.
    pub async fn fetch(&self, url: &str, accept: Accept) -> Result<Fetched, FetchError> {
        let url = Url::parse(url).map_err(|_| FetchError::Refused(Refusal::Host))?;
        match tokio::time::timeout(self.limits.total, self.fetch_inner(url, accept)).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout),
        }
    }

    async fn fetch_inner(&self, mut url: Url, accept: Accept) -> Result<Fetched, FetchError> {
        let mut hops = 0;
        let mut resp = loop {
            let resp = self.request(&url).await?;
            match redirect_target(&url, &resp) {
                Some(next) => {
                    hops += 1;
                    if hops > self.limits.max_redirects {
                        return Err(FetchError::Redirects);
                    }
                    url = next.ok_or(FetchError::Redirects)?;
                }
                None => break resp,
            }
        };
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        let declared = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let type_ok = match accept {
            Accept::Image => {
                (declared.starts_with("image/") && !declared.contains("svg"))
                    || declared == "application/octet-stream"
                    || declared.is_empty()
            }
            Accept::Style => declared == "text/css",
        };
        if !type_ok {
            return Err(FetchError::Type);
        }
        if resp
            .content_length()
            .is_some_and(|n| n > self.limits.max_bytes as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(map_error)? {
            if body.len() + chunk.len() > self.limits.max_bytes {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let content_type = match accept {
            Accept::Image => sniff_image(&body).ok_or(FetchError::Type)?.to_string(),
            Accept::Style => "text/css; charset=utf-8".to_string(),
        };
        Ok(Fetched {
            content_type,
            body,
            url,
        })
    }

    /// The link shield: follows the redirect chain from `url` (each hop checked, bodies
    /// not read) and returns where it ends. A hop the guard refuses, or a Location that is
    /// not http(s), ends the chain there without a request to it; the flag says the
    /// guard stopped it (the caller shows the destination rather than sending the reader).
    pub async fn follow(&self, url: &str) -> Result<(String, bool), FetchError> {
        let start = Url::parse(url).map_err(|_| FetchError::Refused(Refusal::Host))?;
        let work = async {
            let mut url = start;
            for _ in 0..self.limits.max_link_hops {
                if self.guard.check_url(&url).is_err() {
                    return Ok((url.to_string(), true));
                }
                let resp = self.request(&url).await?;
                match redirect_target(&url, &resp) {
                    Some(Some(next)) => url = next,
                    Some(None) => {
                        // A Location we cannot parse as a URL relative to this one.
                        return Err(FetchError::Redirects);
                    }
                    None => return Ok((url.to_string(), false)),
                }
            }
            Err(FetchError::Redirects)
        };
        match tokio::time::timeout(self.limits.total, work).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout),
        }
    }
}

/// `None`: not a redirect; `Some(None)`: a redirect without a usable Location.
fn redirect_target(base: &Url, resp: &reqwest::Response) -> Option<Option<Url>> {
    if !resp.status().is_redirection() || resp.status() == reqwest::StatusCode::NOT_MODIFIED {
        return None;
    }
    let loc = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok());
    Some(loc.and_then(|l| base.join(l.trim()).ok()))
}

fn map_error(e: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if s.downcast_ref::<Blocked>().is_some() {
            return FetchError::Refused(Refusal::Address);
        }
        source = s.source();
    }
    if e.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Upstream(e.without_url().to_string())
    }
}

/// The raster type of a body by its first bytes; `None` for anything else (SVG, HTML).
pub fn sniff_image(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some("image/webp")
    } else if b.len() >= 12 && &b[4..8] == b"ftyp" && matches!(&b[8..12], b"avif" | b"avis") {
        Some("image/avif")
    } else if b.starts_with(b"BM") && b.len() >= 26 {
        Some("image/bmp")
    } else if b.starts_with(&[0, 0, 1, 0]) && b.len() >= 22 {
        Some("image/x-icon")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_raster_images_are_recognised() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff_image(b"GIF89a\x01\x00"), Some("image/gif"));
        assert_eq!(sniff_image(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"\0\0\0\x1cftypavif\0\0"), Some("image/avif"));
        assert_eq!(
            sniff_image(b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
            None
        );
        assert_eq!(sniff_image(b"<html><script>"), None);
        assert_eq!(sniff_image(b""), None);
    }
}
