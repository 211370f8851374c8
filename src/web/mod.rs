//! The dashboard (`/dashboard`) and Prometheus metrics (`/metrics`) as one axum
//! [`Router`], served alone by `mailveil dashboard` / `mailveil serve --dashboard-listen`,
//! or merged into another service (the image proxy) with `.merge(web::router(state))`.
//!
//! Host: every request must name the dashboard in its `Host` header (issue 14, DNS
//! rebinding: a page on `evil.example`, whose name an attacker points at 127.0.0.1,
//! would otherwise read the dashboard through the reader's browser, as a loopback
//! client): an IP literal that is the listen address (any, when it listens on all
//! addresses), `localhost` when it listens on loopback or all addresses, or a name
//! configured with `dashboard_hostnames` (`--hostname`). Others get 421.
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
    /// Where the dashboard listens (`None`: not known, any IP literal is taken).
    pub listen: Option<SocketAddr>,
    /// Host names it answers to besides its address (`dashboard_hostnames`).
    pub hostnames: Vec<String>,
}

/// What the guard checks: the token and the names the dashboard answers to.
struct Access {
    token: Option<String>,
    listen: Option<SocketAddr>,
    hostnames: Vec<String>,
}

/// The host of a `Host` header value, lowercased, without port, brackets or a trailing
/// dot.
fn host_of(value: &str) -> String {
    let v = value.trim();
    let host = if let Some(rest) = v.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match v.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => v,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl Access {
    /// Whether a `Host` header names this dashboard (see the module's doc). An IP
    /// literal involves no DNS, so no rebinding; a name must be configured.
    fn host_allowed(&self, value: Option<&str>) -> bool {
        let Some(host) = value.map(host_of).filter(|h| !h.is_empty()) else {
            return false;
        };
        let listen_ip = self.listen.map(|a| a.ip());
        let anywhere = listen_ip.is_none_or(|ip| ip.is_unspecified());
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return anywhere || listen_ip == Some(ip);
        }
        if host == "localhost" && (anywhere || listen_ip.is_some_and(|ip| ip.is_loopback())) {
            return true;
        }
        self.hostnames.iter().any(|n| host_of(n) == host)
    }
}

/// `/dashboard`, `/dashboard/` and `/metrics`, with the access check on all of them.
/// Installs the metrics recorder if nothing has yet.
pub fn router(state: WebState) -> Router {
    crate::metrics::install();
    let access = Arc::new(Access {
        token: state.token.clone(),
        listen: state.listen,
        hostnames: state.hostnames.clone(),
    });
    Router::new()
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/", get(dashboard::page))
        .route("/metrics", get(metrics_page))
        .layer(middleware::from_fn_with_state(access, guard))
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
    let state = WebState {
        listen: state.listen.or(Some(listen)),
        ..state
    };
    crate::http::serve(listener, router(state), limits)
        .await
        .map_err(|e| format!("dashboard: {e}"))
}

async fn guard(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if !access.host_allowed(host) {
        return (StatusCode::MISDIRECTED_REQUEST, "unknown host\n").into_response();
    }
    let token = access.token.as_deref();
    let loopback = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(a)| match a.ip() {
            std::net::IpAddr::V4(v4) => v4.is_loopback(),
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        });
    let bearer_ok = token.is_some_and(|t| {
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
        crate::metrics::render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn status(addr: SocketAddr, path: &str, auth: Option<&str>) -> u16 {
        status_for(addr, path, auth, &addr.to_string()).await
    }

    async fn status_for(addr: SocketAddr, path: &str, auth: Option<&str>, host: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let auth = auth
            .map(|a| format!("Authorization: Bearer {a}\r\n"))
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n");
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
            listen: None,
            hostnames: Vec::new(),
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

        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let local = l.local_addr().expect("addr");
        let app = router(WebState {
            store: None,
            token: None,
            listen: Some(local),
            hostnames: Vec::new(),
        });
        tokio::spawn(async move { crate::http::serve(l, app, Default::default()).await });
        assert_eq!(status(local, "/dashboard", None).await, 200);
        assert_eq!(status(local, "/nowhere", None).await, 404);
    }

    /// Issue 14: a page on a name that an attacker points at 127.0.0.1 read the
    /// dashboard through the reader's browser (a loopback client, so no token needed).
    #[tokio::test]
    async fn only_requests_naming_the_dashboard_are_answered() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let local = l.local_addr().expect("addr");
        let app = router(WebState {
            store: None,
            token: Some("s3cret".into()),
            listen: Some(local),
            hostnames: vec!["Stats.Example.org".into()],
        });
        tokio::spawn(async move { crate::http::serve(l, app, Default::default()).await });
        let port = local.port();
        for host in [
            format!("127.0.0.1:{port}"),
            "127.0.0.1".into(),
            format!("localhost:{port}"),
            "stats.example.org".into(),
            format!("STATS.example.org.:{port}"),
        ] {
            assert_eq!(
                status_for(local, "/dashboard", None, &host).await,
                200,
                "{host}"
            );
        }
        for host in [
            format!("evil.example:{port}"),
            "127.0.0.2".into(),
            "stats.example.org.evil.example".into(),
            "".into(),
        ] {
            assert_eq!(
                status_for(local, "/dashboard", None, &host).await,
                421,
                "{host}"
            );
            assert_eq!(
                status_for(local, "/metrics", Some("s3cret"), &host).await,
                421,
                "{host}"
            );
        }
    }

    #[test]
    fn host_headers_are_read_without_port_or_dot() {
        assert_eq!(host_of("Example.ORG.:8026"), "example.org");
        assert_eq!(host_of("[::1]:8026"), "::1");
        assert_eq!(host_of("127.0.0.1"), "127.0.0.1");
        let any = Access {
            token: None,
            listen: Some("0.0.0.0:8026".parse().unwrap()),
            hostnames: Vec::new(),
        };
        assert!(any.host_allowed(Some("10.1.2.3:8026")));
        assert!(any.host_allowed(Some("[::1]:8026")));
        assert!(!any.host_allowed(Some("rebind.example")));
        assert!(!any.host_allowed(None));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
