//! The HTTP side: a chain of early-return guards per request (signature, URL check,
//! fetch, type, size), generic error texts, and strict response headers.

use super::Proxy;
use super::fetch::FetchError;
use super::guard::Refusal;
use axum::Router;
use axum::extract::{Path, State};
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
        .route("/i/{sig}/{enc}", get(image))
        .route("/s/{sig}/{enc}", get(style))
        .route("/l/{sig}/{enc}", get(link))
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
        FetchError::Refused(_) => "url not allowed",
        FetchError::Type => "type not allowed",
        FetchError::TooLarge => "too large",
        FetchError::Timeout => "timeout",
        _ => "upstream error",
    };
    plain(status, text)
}

/// The original URL of a signed path, or `None` (a 404, like any unknown path).
fn verified(proxy: &Proxy, kind: ProxyKind, sig: &str, enc: &str) -> Option<String> {
    proxy_url::check(&proxy.config.key, kind, sig, enc).map(|(_, u)| u)
}

async fn resource(proxy: Arc<Proxy>, kind: ProxyKind, sig: String, enc: String) -> Response {
    let Some(url) = verified(&proxy, kind, &sig, &enc) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let started = std::time::Instant::now();
    match proxy.resource(kind, &url).await {
        Ok((entry, hit)) => {
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

async fn image(State(p): State<Arc<Proxy>>, Path((sig, enc)): Path<(String, String)>) -> Response {
    resource(p, ProxyKind::Image, sig, enc).await
}

async fn style(State(p): State<Arc<Proxy>>, Path((sig, enc)): Path<(String, String)>) -> Response {
    resource(p, ProxyKind::Style, sig, enc).await
}

/// The link shield: follow the chain here, clean the destination, send the reader there.
async fn link(State(p): State<Arc<Proxy>>, Path((sig, enc)): Path<(String, String)>) -> Response {
    let Some(url) = verified(&p, ProxyKind::Link, &sig, &enc) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
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
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>Link</title><p>This link leads to:</p><p><code>{}</code></p>",
        escape_html(&dest)
    );
    let mut r = page.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(r.headers_mut());
    r
}

/// The destination without identifying parameters (the core's link cleaning, with the
/// loaded rules; the recipient is not known here, so no recipient tokens).
pub fn clean_destination(p: &Proxy, dest: &str) -> String {
    let detector = mailveil_core::detect::Detector::new(&p.rules, std::iter::empty::<&str>());
    let policy = LinkPolicy::default();
    let ctx = LinkContext {
        rules: &p.rules,
        detector: &detector,
        policy: &policy,
        link_text: None,
        list_unsubscribe: &[],
    };
    links::clean_link(dest, &ctx)
        .url
        .unwrap_or_else(|| dest.to_string())
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
