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

/// Serves the router on `listen` until the future is dropped, with the head deadline and
/// connection cap of `limits` (slow clients, see [`crate::http`]).
pub async fn serve(
    listen: SocketAddr,
    state: WebState,
    limits: crate::http::HttpLimits,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%listen, token = state.token.is_some(), "dashboard listening");
    crate::http::serve(listener, router(state), limits)
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

    async fn status(addr: SocketAddr, path: &str, auth: Option<&str>) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let auth = auth
            .map(|a| format!("Authorization: Bearer {a}\r\n"))
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await.expect("read");
        String::from_utf8_lossy(&resp)
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn remote_clients_need_the_token_loopback_clients_do_not() {
        // Served without ConnectInfo: every client counts as remote.
        let app = router(WebState {
            store: None,
            token: Some("s3cret".into()),
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let remote = l.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(l, app).await });
        assert_eq!(status(remote, "/dashboard", None).await, 401);
        assert_eq!(status(remote, "/metrics", Some("wrong")).await, 401);
        assert_eq!(status(remote, "/dashboard", Some("s3cret")).await, 200);
        assert_eq!(status(remote, "/metrics", Some("s3cret")).await, 200);

        let app = router(WebState {
            store: None,
            token: None,
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let local = l.local_addr().expect("addr");
        tokio::spawn(async move { crate::http::serve(l, app, Default::default()).await });
        assert_eq!(status(local, "/dashboard", None).await, 200);
        assert_eq!(status(local, "/nowhere", None).await, 404);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
