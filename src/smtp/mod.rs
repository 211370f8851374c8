//! `mailveil serve`'s SMTP side: an SMTP/LMTP content filter for Postfix's after-queue
//! `content_filter` (or in front of Dovecot's LMTP). Each mail goes through the
//! [`Pipeline`] and on to the one configured downstream; the client gets `250` only
//! after the downstream accepted the mail, and `451` whenever that is not known, so the
//! sending MTA keeps the mail and retries (docs/architecture.md, invariants 1 and 7).
//!
//! - [`session`]: the protocol state machine, no I/O (the `mailveil-smtp` crate,
//!   re-exported here, so the fuzz crate can build it without the server).
//! - [`conn`]: drives one connection and the downstream for it.
//! - [`delivery`]: the end of a transaction: one copy per policy group, each through
//!   the pipeline and to the downstream.
//! - [`downstream`]: the SMTP/LMTP client.
//! - [`pool`]: downstream connections kept between client sessions.
//! - [`listener`]: access control, session limit, graceful shutdown.
//! - [`config`]: what the SMTP side runs with.

pub(crate) mod config;
pub(crate) mod conn;
pub(crate) mod delivery;
pub(crate) mod downstream;
pub(crate) mod io;
pub(crate) mod listener;
pub(crate) mod pool;
pub(crate) mod tls;

pub(crate) use config::{DEFAULT_MAX_SESSIONS, DownstreamAddr, ServeConfig};
pub(crate) use mailveil_smtp::session;

use crate::pipeline::Pipeline;
use std::sync::Arc;

/// Checks what only the SMTP side loads: the TLS files.
pub(crate) fn check(config: &ServeConfig) -> Result<(), String> {
    if let Some(files) = &config.tls {
        tls::acceptor(files)?;
    }
    Ok(())
}

/// Each session holds two descriptors (the client and the downstream); a cap the
/// process cannot reach would end in failed accepts (EMFILE) instead of a clean `421`.
fn warn_if_over_fd_limit(max_sessions: usize) {
    let Some(limit) = open_files_limit() else {
        return;
    };
    let needed = max_sessions.saturating_mul(2).saturating_add(64);
    if needed as u64 > limit {
        tracing::warn!(
            max_sessions,
            open_files_limit = limit,
            "max_sessions needs about {needed} file descriptors, more than the limit \
             (ulimit -n, LimitNOFILE=): lower max_sessions or raise the limit"
        );
    }
}

/// The soft limit on open files, from /proc (Linux; `None` elsewhere or unlimited).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Binds, loads TLS, and serves until SIGTERM, every mail through `pipeline`.
pub(crate) async fn run(config: ServeConfig, pipeline: Arc<Pipeline>) -> Result<(), String> {
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let pool = Arc::new(pool::Pool::new(config.downstream_pool));
    let reaper = tokio::spawn({
        let pool = Arc::clone(&pool);
        async move { pool.reap().await }
    });
    let shared = Arc::new(conn::Shared {
        settings: session::Settings {
            hostname: config.hostname.clone(),
            max_message_bytes: config.max_message_bytes,
            tls_available: tls.is_some(),
            xforward: config.xforward,
        },
        command_timeout: config.command_timeout,
        data_timeout: config.data_timeout,
        min_data_rate: config.min_data_rate,
        max_line_bytes: config.max_line_bytes,
        transfers: Arc::new(tokio::sync::Semaphore::new(config.max_transfers)),
        connector: Arc::new(downstream::Dialer(config.downstream.clone())),
        pool: Arc::clone(&pool),
        down_timeouts: downstream::Timeouts {
            connect: config.downstream_connect_timeout,
            reply: config.downstream_timeout,
        },
        pipeline,
        tls,
    });
    warn_if_over_fd_limit(config.max_sessions);
    tracing::info!(
        listen = %config.listen,
        downstream = %config.downstream,
        downstream_pool = config.downstream_pool,
        tls = shared.tls.is_some(),
        "listening"
    );
    let served = listener::serve(
        listener,
        shared,
        listener::ListenerLimits {
            allowed: config.allowed_networks.clone(),
            max_sessions: config.max_sessions,
            shutdown_grace: config.shutdown_grace,
        },
    )
    .await
    .map_err(|e| format!("serve: {e}"));
    reaper.abort();
    pool.close().await;
    served
}
