//! The HTTP accept loop of the image proxy and the dashboard: an axum [`Router`] served
//! by hyper with what `axum::serve` leaves out (issue 8, slowloris):
//!
//! - a deadline for each request head ([`HttpLimits::header_timeout`]): a client that
//!   sends its headers a byte at a time, or opens a connection and sends nothing, or
//!   keeps an idle keep-alive connection, is closed when it passes;
//! - a cap on open connections ([`HttpLimits::max_connections`]): past it the listener
//!   stops accepting until one closes (new clients wait in the kernel's backlog, nobody
//!   is refused), so a flood of connections costs at most that many tasks and sockets;
//! - a write timeout ([`HttpLimits::write_timeout`], issue 14): a write that cannot go
//!   on for that long (the client stopped reading and the socket buffers are full) ends
//!   the connection, so clients that never read cannot hold slots (nginx's
//!   `send_timeout`: the time between two successful writes, not the whole response).
//!
//! HTTP/1.1 only: mail clients and reverse proxies fetch images over HTTP/1.1, and
//! hyper's head deadline exists for HTTP/1 only (an HTTP/2 prior-knowledge client would
//! otherwise get no deadline at all).

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Bounds of one HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time a client has to send a whole request head, from the moment the connection
    /// is open or idle (default 10 s; `http_header_timeout_secs`).
    pub header_timeout: Duration,
    /// Open connections at most (default 1000; `http_max_connections`).
    pub max_connections: usize,
    /// Time a write may wait for the client to read (default 30 s;
    /// `http_write_timeout_secs`).
    pub write_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 1000,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` until the future is dropped. Each request carries
/// the client's address as [`ConnectInfo<SocketAddr>`]. Returns only on a listener error
/// that is not about one connection.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    loop {
        // Wait for a free slot before accepting: at the cap, new clients queue in the
        // backlog instead of being refused.
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return Ok(());
        };
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: wait instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(ConnectInfo::<SocketAddr>(peer))),
        );
        let builder = Arc::clone(&builder);
        // tokio-io-timeout: the write deadline that hyper's server does not have.
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write_timeout));
        let stream = Box::pin(stream);
        tokio::spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "http connection ended: {e}");
            }
            drop(permit);
        });
    }
}
