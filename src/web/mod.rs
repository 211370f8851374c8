//! The dashboard (`/dashboard`) and Prometheus metrics (`/metrics`) as one axum
//! [`Router`], served alone by `mailveil dashboard` / `mailveil serve --dashboard-listen`,
//! or merged into another service (the image proxy) with `.merge(web::router(state))`.
//!
//! Access: clients on loopback, or any client that sends `Authorization: Bearer <token>`
//! when a token is configured. The peer address comes from axum's `ConnectInfo`; a
//! server that does not provide it (not served with
//! `into_make_service_with_connect_info::<SocketAddr>()`) is treated as remote, so only
//! the token opens it.
//!
//! The page is self-contained: inline CSS, an inline SVG chart drawn on the server, no
//! script, and a Content-Security-Policy that forbids any other load.

mod dashboard;
pub mod metrics;

use crate::store::ReportStore;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the routes need.
#[derive(Clone)]
pub struct WebState {
    /// The report store; without one the dashboard says so.
    pub store: Option<Arc<dyn ReportStore>>,
    /// The bearer token for non-loopback clients (none: loopback only).
    pub token: Option<String>,
}

/// `/dashboard`, `/dashboard/` and `/metrics`, with the access check on all of them.
/// Installs the metrics recorder if nothing has yet.
pub fn router(state: WebState) -> Router {
    metrics::install();
    let token = state.token.clone().map(Arc::new);
    Router::new()
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/", get(dashboard::page))
        .route("/metrics", get(metrics_page))
        .layer(middleware::from_fn_with_state(token, guard))
        .with_state(Arc::new(state))
}

/// Reads a token file: the first line, trimmed. Empty is an error.
pub fn read_token(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("token file {} is empty", path.display()));
    }
    Ok(token)
}

/// Serves the router on `listen` until the future is dropped.
pub async fn serve(listen: SocketAddr, state: WebState) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%listen, token = state.token.is_some(), "dashboard listening");
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .map_err(|e| format!("dashboard: {e}"))
}

async fn guard(State(token): State<Option<Arc<String>>>, req: Request, next: Next) -> Response {
    let loopback = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(a)| match a.ip() {
            std::net::IpAddr::V4(v4) => v4.is_loopback(),
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        });
    let bearer_ok = token.as_deref().is_some_and(|t| {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), t.as_bytes()))
    });
    if !(loopback || bearer_ok) {
        let mut resp = (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"mailveil\""),
        );
        return resp;
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics_page() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
