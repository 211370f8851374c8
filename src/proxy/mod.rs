//! The image proxy and link shield (DESIGN.md invariants 5 and 6): serves
//! `BASE/i/<sig>/<url>` (raster images), `BASE/s/<sig>/<url>` (stylesheets, their `url()`s
//! rewritten through the proxy) and `BASE/l/<sig>/<url>` (the link shield), and prefetches
//! a mail's proxied URLs at delivery.
//!
//! - [`guard`]: which URLs and addresses may be fetched (pure).
//! - [`fetch`]: the SSRF-safe fetcher.
//! - [`cache`]: the content-addressed disk cache.
//! - [`app`]: the axum routes.
//! - signing lives in the core ([`mailveil_core::proxy_url`]): the core writes the URLs
//!   that the proxy checks.

pub mod app;
pub mod cache;
pub mod fetch;
pub mod guard;

use cache::{Cache, Entry};
use fetch::{Accept, FetchError, Fetcher};
use mailveil_core::html::css::{self, CssDecision, CssEvent};
use mailveil_core::proxy_url::{self, ProxyConfig, ProxyKind};
use mailveil_core::{Action, Report, Rules};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The proxy's state: its configuration, fetcher, cache and rules (for the link shield).
pub struct Proxy {
    /// Base URL and key.
    pub config: ProxyConfig,
    /// The fetcher.
    pub fetcher: Fetcher,
    /// The cache, if any.
    pub cache: Option<Cache>,
    /// Rules, to clean the link shield's destinations.
    pub rules: Arc<Rules>,
    /// Fetches in flight, so that concurrent requests for one URL (a prefetch and an
    /// early open, a client asking twice) reach the sender once.
    pub inflight: InFlight,
}

/// The lock of one (kind, URL) fetch.
type FetchLock = Arc<tokio::sync::Mutex<()>>;

/// Per-URL locks of the fetches in flight.
#[derive(Default)]
pub struct InFlight(std::sync::Mutex<std::collections::HashMap<(ProxyKind, String), FetchLock>>);

impl InFlight {
    fn lock_for(&self, kind: ProxyKind, url: &str) -> FetchLock {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry((kind, url.to_string())).or_default())
    }

    fn release(&self, kind: ProxyKind, url: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (kind, url.to_string());
        // Called after the caller dropped its handle: only the map holds it when nobody
        // waits any more.
        if map.get(&key).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&key);
        }
    }
}

/// What a prefetch did for one mail.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PrefetchSummary {
    /// URLs to prefetch.
    pub urls: usize,
    /// Fetched now.
    pub fetched: usize,
    /// Already in the cache.
    pub cached: usize,
    /// Refused or failed (they stay proxied; the proxy answers an error on open).
    pub failed: usize,
    /// Not done by the deadline (served as `proxy` later).
    pub late: usize,
    /// Time spent.
    pub elapsed: Duration,
}

impl Proxy {
    /// The resource for a kind and URL: from the cache, or fetched (and cached).
    /// Returns whether it came from the cache.
    pub async fn resource(&self, kind: ProxyKind, url: &str) -> Result<(Entry, bool), FetchError> {
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(kind, url)) {
            return Ok((hit, true));
        }
        let lock = self.inflight.lock_for(kind, url);
        let result = {
            let _guard = lock.lock().await;
            match self.cache.as_ref().and_then(|c| c.get(kind, url)) {
                Some(hit) => Ok((hit, true)),
                None => self.fetch_and_store(kind, url).await,
            }
        };
        drop(lock);
        self.inflight.release(kind, url);
        result
    }

    async fn fetch_and_store(
        &self,
        kind: ProxyKind,
        url: &str,
    ) -> Result<(Entry, bool), FetchError> {
        let accept = match kind {
            ProxyKind::Style => Accept::Style,
            _ => Accept::Image,
        };
        let fetched = self.fetcher.fetch(url, accept).await?;
        let body = match kind {
            ProxyKind::Style => {
                let text = String::from_utf8_lossy(&fetched.body);
                rewrite_css(&self.config, &text, &fetched.url).into_bytes()
            }
            _ => fetched.body,
        };
        let entry = Entry {
            content_type: fetched.content_type,
            body,
        };
        if let Some(c) = &self.cache {
            c.put(kind, url, &entry);
        }
        Ok((entry, false))
    }

    /// Fetches every URL the report marks `prefetch` into the cache, waiting at most
    /// `deadline`; what is not done by then goes on in the background.
    pub async fn prefetch(
        self: &Arc<Self>,
        report: &Report,
        deadline: Duration,
    ) -> PrefetchSummary {
        let started = Instant::now();
        let mut items: Vec<(ProxyKind, String)> = report
            .findings
            .iter()
            .filter(|f| f.action == Action::Prefetch)
            .filter_map(|f| {
                let kind = if f.location == "link@href" || f.location.ends_with(":@import") {
                    ProxyKind::Style
                } else {
                    ProxyKind::Image
                };
                f.url.clone().map(|u| (kind, u))
            })
            .collect();
        items.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
        items.dedup();
        let mut summary = PrefetchSummary {
            urls: items.len(),
            ..PrefetchSummary::default()
        };
        let mut set = tokio::task::JoinSet::new();
        for (kind, url) in items {
            let me = Arc::clone(self);
            // Detached: a fetch that misses the deadline still fills the cache.
            let handle = tokio::spawn(async move {
                let r = me.resource(kind, &url).await;
                if let Err(e) = &r {
                    tracing::info!(
                        kind = kind.as_str(),
                        url_len = url.len(),
                        "prefetch failed: {e}"
                    );
                }
                if let (ProxyKind::Style, Ok((entry, _))) = (kind, &r) {
                    // What the stylesheet itself loads, one level deep.
                    for (k, u) in me.inner_urls(&entry.body) {
                        if let Err(e) = me.resource(k, &u).await {
                            tracing::info!(
                                kind = k.as_str(),
                                url_len = u.len(),
                                "prefetch failed: {e}"
                            );
                        }
                    }
                }
                r.map(|(_, hit)| hit)
            });
            set.spawn(handle);
        }
        let wait = async {
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok(Ok(true))) => summary.cached += 1,
                    Ok(Ok(Ok(false))) => summary.fetched += 1,
                    _ => summary.failed += 1,
                }
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        // Dropping the JoinSet aborts only the waiting wrappers, not the fetches.
        summary.late = summary.urls - summary.fetched - summary.cached - summary.failed;
        summary.elapsed = started.elapsed();
        summary
    }
}

impl Proxy {
    /// The proxied URLs in a stylesheet the proxy rewrote, as (kind, original URL).
    fn inner_urls(&self, css_bytes: &[u8]) -> Vec<(ProxyKind, String)> {
        let text = String::from_utf8_lossy(css_bytes);
        let mut out = Vec::new();
        css::scan_with(&text, &mut |ev| {
            if let CssEvent::Url { url, .. } = ev
                && let Some(found) = proxy_url::parse(&self.config, url)
            {
                out.push(found);
            }
            CssDecision::Keep
        });
        out
    }
}

/// A stylesheet served by the proxy: every URL in it resolved against the sheet's URL
/// and rewritten through the proxy (images `/i/`, `@import` `/s/`); script in CSS and
/// other schemes removed.
pub fn rewrite_css(cfg: &ProxyConfig, text: &str, base: &url::Url) -> String {
    let scan = css::scan_with(text, &mut |ev| match ev {
        CssEvent::Active { .. } => CssDecision::Remove,
        CssEvent::Url { url, property } => {
            let trimmed = url.trim();
            if trimmed.to_ascii_lowercase().starts_with("data:") || trimmed.starts_with('#') {
                return CssDecision::Keep;
            }
            match base.join(trimmed) {
                Ok(abs) if matches!(abs.scheme(), "http" | "https") => {
                    if proxy_url::is_proxied(cfg, abs.as_str()) {
                        return CssDecision::Keep;
                    }
                    let kind = if property == "@import" {
                        ProxyKind::Style
                    } else {
                        ProxyKind::Image
                    };
                    CssDecision::Replace(proxy_url::proxied(cfg, kind, abs.as_str()))
                }
                _ => CssDecision::Remove,
            }
        }
    });
    scan.apply(text).unwrap_or_else(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stylesheets_are_served_with_their_urls_through_the_proxy() {
        let cfg = ProxyConfig::new("http://127.0.0.1:8025", b"k".to_vec());
        let base = url::Url::parse("http://cdn.example/css/a.css").unwrap();
        let out = rewrite_css(
            &cfg,
            "@import 'b.css'; .x{background:url(../img/x.png)} .y{background:url(data:image/png;base64,AA)} .z{behavior:url(x.htc)} .w{background:url('javascript:alert(1)')}",
            &base,
        );
        assert!(out.contains(&proxy_url::proxied(
            &cfg,
            ProxyKind::Style,
            "http://cdn.example/css/b.css"
        )));
        assert!(out.contains(&proxy_url::proxied(
            &cfg,
            ProxyKind::Image,
            "http://cdn.example/img/x.png"
        )));
        assert!(out.contains("data:image/png"));
        assert!(
            !out.contains("x.htc") && !out.contains("javascript"),
            "{out}"
        );
        assert!(!out.contains("cdn.example"), "{out}");
    }
}

/// How to run the proxy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub listen: std::net::SocketAddr,
    /// The public base URL (signing and the path prefix).
    pub base: String,
    /// The HMAC key.
    pub key: Vec<u8>,
    /// Networks let through although not public (`--allow-net`).
    pub allow: Vec<ipnet::IpNet>,
    /// The cache directory; default: a fresh one under the temporary directory.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Cache size cap.
    pub cache_max_bytes: u64,
    /// Cache time to live.
    pub cache_ttl: Duration,
    /// Fetch limits.
    pub limits: fetch::FetchLimits,
    /// Bounds of the HTTP listener (request-head deadline, open connections).
    pub http: crate::http::HttpLimits,
}

impl Settings {
    /// Settings with the defaults for everything but the essentials.
    pub fn new(listen: std::net::SocketAddr, base: &str, key: Vec<u8>) -> Settings {
        Settings {
            listen,
            base: base.trim_end_matches('/').to_string(),
            key,
            allow: Vec::new(),
            cache_dir: None,
            cache_max_bytes: 512 << 20,
            cache_ttl: Duration::from_secs(30 * 86400),
            limits: fetch::FetchLimits::default(),
            http: crate::http::HttpLimits::default(),
        }
    }

    /// The configuration the core writes URLs with.
    pub fn proxy_config(&self) -> ProxyConfig {
        ProxyConfig::new(&self.base, self.key.clone())
    }
}

/// Reads a key file: its bytes without surrounding whitespace, at least 16 of them.
pub fn read_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let raw =
        std::fs::read(path).map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    let key = raw.trim_ascii().to_vec();
    if key.len() < 16 {
        return Err(format!(
            "key file {}: at least 16 bytes needed (e.g. `openssl rand -hex 32`)",
            path.display()
        ));
    }
    Ok(key)
}

/// Checks a base URL: http(s), no query or fragment.
pub fn check_base(base: &str) -> Result<(), String> {
    let u = url::Url::parse(base).map_err(|e| format!("proxy base {base:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") || u.query().is_some() || u.fragment().is_some() {
        return Err(format!(
            "proxy base {base:?}: expected http(s)://HOST[:PORT][/PATH]"
        ));
    }
    Ok(())
}

/// Builds the proxy's state.
pub fn build(settings: &Settings, rules: Arc<Rules>) -> Result<Arc<Proxy>, String> {
    check_base(&settings.base)?;
    let fetcher = Fetcher::new(
        guard::Guard {
            allow: settings.allow.clone(),
        },
        settings.limits.clone(),
    )?;
    let dir = settings.cache_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("mailveil-cache-{}", std::process::id()))
    });
    let cache = Cache::open(&dir, settings.cache_max_bytes, settings.cache_ttl)
        .map_err(|e| format!("cache {}: {e}", dir.display()))?;
    Ok(Arc::new(Proxy {
        config: settings.proxy_config(),
        fetcher,
        cache: Some(cache),
        rules,
        inflight: InFlight::default(),
    }))
}

/// Binds the listen address and serves in the background until the runtime ends, with
/// the head deadline and connection cap of `http` (slow clients, see [`crate::http`]).
pub async fn spawn(
    proxy: Arc<Proxy>,
    listen: std::net::SocketAddr,
    http: crate::http::HttpLimits,
) -> Result<std::net::SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = app::router(proxy);
    tokio::spawn(async move {
        if let Err(e) = crate::http::serve(listener, app, http).await {
            tracing::error!("proxy stopped: {e}");
        }
    });
    tracing::info!(listen = %addr, "proxy listening");
    Ok(addr)
}

/// `mailveil proxy`: serves until SIGTERM or Ctrl-C.
pub fn run(settings: Settings, rules: Rules) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let proxy = build(&settings, Arc::new(rules))?;
        spawn(proxy, settings.listen, settings.http).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}
