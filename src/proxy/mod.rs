//! The image proxy and link shield (docs/architecture.md, invariants 5 and 6): serves
//! `BASE/i/<sig>/<url>` (raster images), `BASE/s/<sig>/<url>` (stylesheets, their `url()`s
//! rewritten through the proxy) and `BASE/l/<sig>/<url>` (the link shield), and prefetches
//! a mail's proxied URLs at delivery.
//!
//! - [`guard`]: which URLs and addresses may be fetched (pure).
//! - [`fetch`]: the SSRF-safe fetcher.
//! - [`cache`]: the content-addressed disk cache, in a private directory.
//! - [`app`]: the axum routes.
//! - signing lives in the core ([`mailveil_core::proxy_url`]): the core writes the URLs
//!   that the proxy checks.

pub mod app;
pub mod cache;
pub mod fetch;
pub mod guard;

use cache::{Cache, Entry};
use fetch::{Accept, FetchError, Fetcher};
use mailveil_core::detect::{Detector, remote_url};
use mailveil_core::proxy_sheet;
use mailveil_core::proxy_url::{ProxyConfig, ProxyKind};
use mailveil_core::{Action, Report, Rules};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The proxy's state: its configuration, fetcher, cache and rules (for the link shield).
pub struct Proxy {
    /// Base URL and the key that signs.
    pub config: ProxyConfig,
    /// Every key whose URLs are served: the one that signs, then those kept for a grace
    /// period after a rotation (docs/proxy.md). A URL of any other key id is refused.
    pub keys: Vec<Vec<u8>>,
    /// The fetcher.
    pub fetcher: Fetcher,
    /// The cache, if any.
    pub cache: Option<Cache>,
    /// Rules, to clean the link shield's destinations.
    pub rules: Arc<Rules>,
    /// Fetches in flight, so that concurrent requests for one URL (a prefetch and an
    /// early open, a client asking twice) reach the sender once.
    pub inflight: InFlight,
    /// Bounds of prefetch.
    pub prefetch_limits: PrefetchLimits,
    /// Prefetches in flight per upstream host.
    pub hosts: HostSlots,
}

/// Bounds of prefetch (issue 14): one mail must not make the proxy fetch without end,
/// nor fall on one host with every fetch at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefetchLimits {
    /// URLs prefetched for one mail, stylesheets' images included (default 100); the
    /// rest are fetched on open, as under `proxy` (`prefetch_max_urls`).
    pub max_urls: usize,
    /// Prefetches in flight to one upstream host, across all mails (default 6, what a
    /// browser opens to one host; `prefetch_per_host`).
    pub per_host: usize,
}

impl Default for PrefetchLimits {
    fn default() -> Self {
        PrefetchLimits {
            max_urls: 100,
            per_host: 6,
        }
    }
}

/// A semaphore per upstream host, dropped when nobody holds or waits for it.
#[derive(Default)]
pub struct HostSlots(
    std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
);

/// A slot of one host; frees it (and the host's entry, when unused) on drop.
pub struct HostSlot<'a> {
    slots: &'a HostSlots,
    host: String,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl HostSlots {
    /// Waits for a slot of `host` (at most `per_host` are held at once).
    pub async fn acquire(&self, host: &str, per_host: usize) -> HostSlot<'_> {
        let sem = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(
                map.entry(host.to_string())
                    .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(per_host.max(1)))),
            )
        };
        // The semaphore is never closed: acquire cannot fail.
        let permit = sem.acquire_owned().await.ok();
        HostSlot {
            slots: self,
            host: host.to_string(),
            permit,
        }
    }

    /// Hosts with a semaphore now (for tests: the map does not grow without end).
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no host has a semaphore now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for HostSlot<'_> {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut map = self.slots.0.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds it when nobody else holds or waits.
        if map
            .get(&self.host)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            map.remove(&self.host);
        }
    }
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
    /// Beyond the per-mail cap, not prefetched (fetched on open).
    pub skipped: usize,
    /// The URLs (as the report has them) in the cache by the deadline, sorted: fetched
    /// now or already there.
    pub ready: Vec<String>,
    /// Time spent.
    pub elapsed: Duration,
}

impl Proxy {
    /// The resource for a kind and URL: from the cache, or fetched (and cached).
    /// Returns whether it came from the cache. A URL the loaded rules call a tracker is
    /// refused, whoever signed it: the core judged it when the mail came (with the
    /// reader's address), and rules learnt since are applied here.
    pub async fn resource(&self, kind: ProxyKind, url: &str) -> Result<(Entry, bool), FetchError> {
        if let Some(rule) = self.tracker(kind, url) {
            tracing::info!(kind = kind.as_str(), %rule, "refused: a tracker");
            crate::metrics::proxy_fetch("tracker");
            return Err(FetchError::Refused(guard::Refusal::Tracker));
        }
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

    /// The rule by which the loaded rules (no reader's address here) call `url` a
    /// tracker where it loads as `kind`.
    pub fn tracker(&self, kind: ProxyKind, url: &str) -> Option<String> {
        let remote = remote_url(url, &None)?;
        let detector = Detector::new(&self.rules, std::iter::empty::<&str>());
        detector
            .tracker(&remote, kind == ProxyKind::Image)
            .map(|v| v.rule)
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
        let fetched = self.fetcher.fetch(url, accept).await;
        crate::metrics::proxy_fetch(match &fetched {
            Ok(_) => "ok",
            Err(e) => e.label(),
        });
        let fetched = fetched?;
        let body = match kind {
            ProxyKind::Style => {
                let text = String::from_utf8_lossy(&fetched.body);
                proxy_sheet::rewrite(&self.config, &self.rules, &text, &fetched.url).into_bytes()
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

    /// One prefetch: from the cache, or fetched holding a slot of its host.
    async fn prefetch_one(&self, kind: ProxyKind, url: &str) -> Result<(Entry, bool), FetchError> {
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(kind, url)) {
            return Ok((hit, true));
        }
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        let _slot = self
            .hosts
            .acquire(&host, self.prefetch_limits.per_host)
            .await;
        self.resource(kind, url).await
    }

    /// Fetches every URL the report marks `prefetch` into the cache, at most
    /// `prefetch_limits.max_urls` of them (stylesheets' images included) and at most
    /// `prefetch_limits.per_host` at once to one host, waiting at most `deadline`; what is
    /// not done by then goes on in the background and is served from the cache later.
    /// `queue_id` names the mail on every log line about it. The summary lists the URLs
    /// that were in the cache by the deadline ([`PrefetchSummary::ready`]).
    pub async fn prefetch(
        self: &Arc<Self>,
        report: &Report,
        deadline: Duration,
        queue_id: &str,
    ) -> PrefetchSummary {
        let started = Instant::now();
        let mut items = prefetch_items(report);
        let max = self.prefetch_limits.max_urls;
        let skipped = items.len().saturating_sub(max);
        items.truncate(max);
        // What the stylesheets load counts against the same cap.
        let budget = Arc::new(std::sync::atomic::AtomicUsize::new(max - items.len()));
        let mut summary = PrefetchSummary {
            urls: items.len(),
            skipped,
            ..PrefetchSummary::default()
        };
        let queue_id: Arc<str> = Arc::from(queue_id);
        let mut set = tokio::task::JoinSet::new();
        for (kind, url) in items {
            let me = Arc::clone(self);
            let budget = Arc::clone(&budget);
            let queue_id = Arc::clone(&queue_id);
            // Detached: a fetch that misses the deadline still fills the cache.
            let handle = tokio::spawn(async move {
                let r = me.prefetch_one(kind, &url).await;
                if let Err(e) = &r {
                    failed(&queue_id, kind, &url, e);
                }
                if let (ProxyKind::Style, Ok((entry, _))) = (kind, &r) {
                    // What the stylesheet itself loads, one level deep.
                    for (k, u) in me.inner_urls(&entry.body) {
                        let take = budget.fetch_update(
                            std::sync::atomic::Ordering::Relaxed,
                            std::sync::atomic::Ordering::Relaxed,
                            |n| n.checked_sub(1),
                        );
                        if take.is_err() {
                            break;
                        }
                        if let Err(e) = me.prefetch_one(k, &u).await {
                            failed(&queue_id, k, &u, &e);
                        }
                    }
                }
                (url, r.map(|(_, hit)| hit))
            });
            set.spawn(handle);
        }
        let wait = async {
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok((url, Ok(hit)))) => {
                        if hit {
                            summary.cached += 1;
                        } else {
                            summary.fetched += 1;
                        }
                        summary.ready.push(url);
                    }
                    _ => summary.failed += 1,
                }
            }
        };
        let _ = tokio::time::timeout(deadline, wait).await;
        // Dropping the JoinSet aborts only the waiting wrappers, not the fetches.
        summary.late = summary.urls - summary.fetched - summary.cached - summary.failed;
        summary.elapsed = started.elapsed();
        summary.ready.sort();
        summary
    }
}

/// The log line of a prefetch that failed: the mail, the host, and why.
fn failed(queue_id: &str, kind: ProxyKind, url: &str, e: &FetchError) {
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    tracing::info!(
        queue_id = %crate::printable::printable(queue_id),
        kind = kind.as_str(),
        host = %crate::printable::printable(&host),
        cause = e.label(),
        error = %crate::printable::printable(&e.to_string()),
        "prefetch failed"
    );
}

/// What a report asks to prefetch: each URL marked `prefetch` with the kind the core
/// wrote its proxy URL as (`/i/` or `/s/`, from the finding's location kind), each once,
/// sorted. Only images and style sheets: a link is followed on a click, and fetching it
/// at delivery would be the click.
fn prefetch_items(report: &Report) -> Vec<(ProxyKind, String)> {
    let mut items: Vec<(ProxyKind, String)> = report
        .findings
        .iter()
        .filter(|f| f.action == Action::Prefetch)
        .filter_map(|f| Some((f.location.kind().proxy_kind()?, f.url.clone()?)))
        .filter(|(kind, _)| matches!(kind, ProxyKind::Image | ProxyKind::Style))
        .collect();
    items.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
    items.dedup();
    items
}

impl Proxy {
    /// The proxied URLs in a stylesheet the proxy rewrote, as (kind, original URL).
    fn inner_urls(&self, css_bytes: &[u8]) -> Vec<(ProxyKind, String)> {
        proxy_sheet::proxied_urls(&self.config, &String::from_utf8_lossy(css_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailveil_core::proxy_url;

    /// The proxy prefetches each URL as the kind the core wrote it as, told by the
    /// finding's location kind. It used to read the location's label: a declaration
    /// whose (escaped) property name ends in `:@import` was prefetched as a style sheet
    /// while the mail had it as an image.
    #[test]
    fn prefetch_takes_each_url_as_the_kind_the_core_wrote() {
        let cfg = ProxyConfig::new("https://mx.example/mv", b"k".to_vec());
        let policy = mailveil_core::Policy {
            remote_content: mailveil_core::RemoteContent::Prefetch,
            proxy: Some(cfg.clone()),
            ..mailveil_core::Policy::default()
        };
        let html = r#"<link rel="stylesheet" href="http://cdn.example/a.css">
<style>@import 'http://cdn.example/b.css'; .x{background:url(http://cdn.example/c.png)}</style>
<img src="http://cdn.example/d.png" width="50" height="50">
<p style="x\:\@import: url(http://cdn.example/e.png)">t</p>
<table><tr><td background="http://cdn.example/f.png">x</td></tr></table>
<a href="https://click.example/ls/click?upn=abcdefghijklmnopqrstuvwxyz">go</a>"#;
        let raw = format!(
            "From: a@b.example\r\nTo: r@x.example\r\nContent-Type: text/html\r\n\r\n{html}\r\n"
        );
        let out = mailveil_core::clean(
            raw.as_bytes(),
            &mailveil_core::Envelope::to(["r@x.example"]),
            &policy,
            &Rules::default(),
        );
        let text = String::from_utf8_lossy(&out.bytes);
        // Every proxy URL in the mail: up to the first character no proxy URL holds.
        let mut written: Vec<(ProxyKind, String)> = text
            .match_indices(&cfg.base)
            .map(|(at, _)| {
                let rest = &text[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "-_/:.".contains(c)))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .filter_map(|u| proxy_url::parse(&cfg, u))
            .collect();
        written.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
        written.dedup();
        let url = |k: ProxyKind, u: &str| (k, format!("http://cdn.example/{u}"));
        assert_eq!(
            written,
            [
                url(ProxyKind::Image, "c.png"),
                url(ProxyKind::Image, "d.png"),
                url(ProxyKind::Image, "e.png"),
                url(ProxyKind::Image, "f.png"),
                url(ProxyKind::Style, "a.css"),
                url(ProxyKind::Style, "b.css"),
            ],
            "{text}"
        );
        assert_eq!(prefetch_items(&out.report), written);
    }

    /// Per-host slots bound what is in flight to one host, and go when unused.
    #[tokio::test]
    async fn host_slots_bound_one_host_and_are_dropped_when_unused() {
        let slots = HostSlots::default();
        let a1 = slots.acquire("a.example", 2).await;
        let a2 = slots.acquire("a.example", 2).await;
        let b = slots.acquire("b.example", 2).await;
        assert_eq!(slots.len(), 2);
        let third =
            tokio::time::timeout(Duration::from_millis(50), slots.acquire("a.example", 2)).await;
        assert!(
            third.is_err(),
            "a third slot of one host while two are held"
        );
        drop((a1, b));
        assert_eq!(slots.len(), 1);
        let a3 = slots.acquire("a.example", 2).await;
        drop((a2, a3));
        assert!(slots.is_empty());
    }
}

/// How to run the proxy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub listen: std::net::SocketAddr,
    /// The public base URL (signing and the path prefix).
    pub base: String,
    /// The HMAC key that signs (and checks).
    pub key: Vec<u8>,
    /// Keys of earlier epochs whose URLs are still served during a grace period after a
    /// rotation (`proxy_previous_key_files`); they never sign.
    pub previous_keys: Vec<Vec<u8>>,
    /// Networks let through although not public (`--allow-net`).
    pub allow: Vec<ipnet::IpNet>,
    /// The cache directory; default: a private one ([`cache::default_dir`]).
    pub cache_dir: Option<std::path::PathBuf>,
    /// Cache size cap.
    pub cache_max_bytes: u64,
    /// Cache time to live.
    pub cache_ttl: Duration,
    /// Fetch limits.
    pub limits: fetch::FetchLimits,
    /// Bounds of the HTTP listener (request-head deadline, open connections).
    pub http: crate::http::HttpLimits,
    /// Bounds of prefetch.
    pub prefetch: PrefetchLimits,
}

impl Settings {
    /// Settings with the defaults for everything but the essentials.
    pub fn new(listen: std::net::SocketAddr, base: &str, key: Vec<u8>) -> Settings {
        Settings {
            listen,
            base: base.trim_end_matches('/').to_string(),
            key,
            previous_keys: Vec::new(),
            allow: Vec::new(),
            cache_dir: None,
            cache_max_bytes: 512 << 20,
            cache_ttl: Duration::from_secs(30 * 86400),
            limits: fetch::FetchLimits::default(),
            http: crate::http::HttpLimits::default(),
            prefetch: PrefetchLimits::default(),
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
    let dir = match &settings.cache_dir {
        Some(d) => d.clone(),
        None => cache::default_dir(|k| std::env::var_os(k))?,
    };
    let cache = Cache::open(&dir, settings.cache_max_bytes, settings.cache_ttl)
        .map_err(|e| format!("cache {}: {e}", dir.display()))?;
    tracing::info!(dir = %dir.display(), "proxy cache");
    let mut keys = vec![settings.key.clone()];
    keys.extend(settings.previous_keys.iter().cloned());
    Ok(Arc::new(Proxy {
        config: settings.proxy_config(),
        keys,
        fetcher,
        cache: Some(cache),
        rules,
        inflight: InFlight::default(),
        prefetch_limits: settings.prefetch,
        hosts: HostSlots::default(),
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
