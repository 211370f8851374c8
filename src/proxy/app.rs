//! The HTTP side: a chain of early-return guards per request (signature under a key
//! held, URL check, tracker check, fetch, type, size), generic error texts, and strict
//! response headers.
//!
//! Paths: `/<kind>/<key id>/<sig>/<enc>`, and `/<kind>/<sig>/<enc>` for URLs written
//! before key ids (checked against every key held). The kind is in the path and in the
//! signature: an image signature is refused by the link shield and the other way round.

use super::Proxy;
use super::fetch::FetchError;
use super::guard::Refusal;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mailveil_core::links::{self, LinkContext, LinkPolicy};
use mailveil_core::proxy_url::{self, ProxyKind};
use std::sync::Arc;

/// The CSP of every response: nothing may load or run from what the proxy serves.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

/// The routes, under the path of the base URL (so a reverse proxy can pass paths as is).
pub fn router(proxy: Arc<Proxy>) -> Router {
    let routes = Router::new()
        .route("/i/{id}/{sig}/{enc}", get(image))
        .route("/s/{id}/{sig}/{enc}", get(style))
        .route("/l/{id}/{sig}/{enc}", get(link))
        .route("/i/{sig}/{enc}", get(image_legacy))
        .route("/s/{sig}/{enc}", get(style_legacy))
        .route("/l/{sig}/{enc}", get(link_legacy))
        .route("/healthz", get(|| async { "ok" }));
    let prefix = url::Url::parse(&proxy.config.base)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    let app = if prefix.is_empty() {
        routes
    } else {
        Router::new().nest(&prefix, routes)
    };
    app.fallback(|| async { plain(StatusCode::NOT_FOUND, "not found") })
        .with_state(proxy)
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    let mut r = (status, text).into_response();
    secure(r.headers_mut());
    r
}

fn secure(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
}

fn error(e: &FetchError) -> Response {
    let status = match e {
        FetchError::Refused(_) => StatusCode::FORBIDDEN,
        FetchError::Type => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        FetchError::TooLarge => StatusCode::BAD_GATEWAY,
        FetchError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        FetchError::Status(404) => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_GATEWAY,
    };
    let text = match e {
        FetchError::Refused(Refusal::Address) => "address not allowed",
        FetchError::Refused(Refusal::Tracker) => "a tracker",
        FetchError::Refused(_) => "url not allowed",
        FetchError::Type => "type not allowed",
        FetchError::TooLarge => "too large",
        FetchError::Timeout => "timeout",
        _ => "upstream error",
    };
    plain(status, text)
}

/// A signed path: key id (none for the format before key ids), signature, encoded URL.
struct Signed {
    id: Option<String>,
    sig: String,
    enc: String,
}

/// The original URL of a signed path, or `None` (a 404, like any unknown path): the
/// signature must be one of this kind under a key held (a retired key's id is unknown).
fn verified(proxy: &Proxy, kind: ProxyKind, s: &Signed) -> Option<String> {
    match &s.id {
        Some(id) => proxy_url::check(&proxy.keys, kind, id, &s.sig, &s.enc),
        None => proxy_url::check_legacy(&proxy.keys, kind, &s.sig, &s.enc),
    }
}

async fn resource(proxy: Arc<Proxy>, kind: ProxyKind, signed: Signed) -> Response {
    let Some(url) = verified(&proxy, kind, &signed) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let started = std::time::Instant::now();
    match proxy.resource(kind, &url).await {
        Ok((entry, hit)) => {
            if hit {
                crate::metrics::proxy_cache_hit();
            }
            tracing::info!(
                kind = kind.as_str(),
                bytes = entry.body.len(),
                cache = if hit { "hit" } else { "miss" },
                ms = started.elapsed().as_millis() as u64,
                "served"
            );
            let mut r = entry.body.into_response();
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&entry.content_type) {
                h.insert(header::CONTENT_TYPE, v);
            }
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=86400"),
            );
            secure(h);
            r
        }
        Err(e) => {
            tracing::info!(
                kind = kind.as_str(),
                ms = started.elapsed().as_millis() as u64,
                "refused: {e}"
            );
            error(&e)
        }
    }
}

type Current = Path<(String, String, String)>;
type Legacy = Path<(String, String)>;

fn current((id, sig, enc): (String, String, String)) -> Signed {
    Signed {
        id: Some(id),
        sig,
        enc,
    }
}

fn legacy((sig, enc): (String, String)) -> Signed {
    Signed { id: None, sig, enc }
}

async fn image(State(p): State<Arc<Proxy>>, Path(x): Current) -> Response {
    resource(p, ProxyKind::Image, current(x)).await
}

async fn style(State(p): State<Arc<Proxy>>, Path(x): Current) -> Response {
    resource(p, ProxyKind::Style, current(x)).await
}

async fn image_legacy(State(p): State<Arc<Proxy>>, Path(x): Legacy) -> Response {
    resource(p, ProxyKind::Image, legacy(x)).await
}

async fn style_legacy(State(p): State<Arc<Proxy>>, Path(x): Legacy) -> Response {
    resource(p, ProxyKind::Style, legacy(x)).await
}

async fn link(State(p): State<Arc<Proxy>>, Path(x): Current, req: Parts) -> Response {
    shield(p, current(x), &req).await
}

async fn link_legacy(State(p): State<Arc<Proxy>>, Path(x): Legacy, req: Parts) -> Response {
    shield(p, legacy(x), &req).await
}

/// Whether a request is a navigation (a click), by `Sec-Fetch-Dest` where the client
/// sends it: a shield URL loaded as an image, a script or by `fetch()` would follow a
/// click tracker on open and send the reader's client on to wherever it ends.
fn navigation(req: &Parts) -> bool {
    req.headers
        .get("sec-fetch-dest")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|d| matches!(d, "document" | "iframe" | "frame"))
}

/// The link shield: follow the chain here, clean the destination, send the reader there.
/// Only for what the core shields: a click tracker whose destination is not in its URL
/// (by the loaded rules); any other signed URL gets the page naming it, never a redirect.
async fn shield(p: Arc<Proxy>, signed: Signed, req: &Parts) -> Response {
    let Some(url) = verified(&p, ProxyKind::Link, &signed) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    if !navigation(req) {
        tracing::info!("link shield: refused, not a navigation");
        return plain(StatusCode::FORBIDDEN, "not a navigation");
    }
    if !opaque_click_tracker(&p, &url) {
        tracing::info!("link shield: not a click tracker, shown");
        return named(&clean_destination(&p, &url));
    }
    let started = std::time::Instant::now();
    let (dest, stopped) = match p.fetcher.follow(&url).await {
        Ok(d) => d,
        Err(e) => {
            tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                "link shield failed: {e}"
            );
            return error(&e);
        }
    };
    let dest = clean_destination(&p, &dest);
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "link shield: redirected"
    );
    let lower = dest.to_ascii_lowercase();
    if !stopped && (lower.starts_with("http://") || lower.starts_with("https://")) {
        let mut r = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(&dest) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        secure(r.headers_mut());
        return r;
    }
    named(&dest)
}

/// A small page naming where a link leads, without sending the reader there.
fn named(dest: &str) -> Response {
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>Link</title><p>This link leads to:</p><p><code>{}</code></p>",
        escape_html(dest)
    );
    let mut r = page.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(r.headers_mut());
    r
}

fn link_context<'a>(
    p: &'a Proxy,
    detector: &'a mailveil_core::detect::Detector<'a>,
    policy: &'a LinkPolicy,
) -> LinkContext<'a> {
    LinkContext {
        rules: &p.rules,
        detector,
        policy,
        link_text: None,
        list_unsubscribe: &[],
    }
}

/// Whether the loaded rules call `url` a click tracker whose destination only the
/// tracker knows: the links the core sends through the shield.
fn opaque_click_tracker(p: &Proxy, url: &str) -> bool {
    let detector = mailveil_core::detect::Detector::new(&p.rules, std::iter::empty::<&str>());
    let policy = LinkPolicy::default();
    links::clean_link(url, &link_context(p, &detector, &policy)).opaque()
}

/// The destination without identifying parameters (the core's link cleaning, with the
/// loaded rules; the recipient is not known here, so no recipient tokens).
pub fn clean_destination(p: &Proxy, dest: &str) -> String {
    let detector = mailveil_core::detect::Detector::new(&p.rules, std::iter::empty::<&str>());
    let policy = LinkPolicy::default();
    links::clean_link(dest, &link_context(p, &detector, &policy))
        .url
        .unwrap_or_else(|| dest.to_string())
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
