//! `mailveil serve`: an SMTP/LMTP content filter for Postfix's after-queue
//! `content_filter` (or in front of Dovecot's LMTP). Each mail is cleaned with
//! [`mailveil_core::clean`] and passed to the one configured downstream; the client gets
//! `250` only after the downstream accepted the mail, and `451` whenever that is not
//! known, so the sending MTA keeps the mail and retries (DESIGN.md invariants 1 and 7).
//!
//! - [`session`]: the protocol state machine, no I/O (the `mailveil-smtp` crate,
//!   re-exported here, so the fuzz crate can build it without the server).
//! - [`conn`]: drives one connection and the downstream for it.
//! - [`delivery`]: the end of a transaction: cleaning, one copy per policy group.
//! - [`downstream`]: the SMTP/LMTP client.
//! - [`listener`]: access control, session limit, graceful shutdown.
//! - [`config`]: the TOML file and flags.

pub mod config;
pub mod conn;
pub mod delivery;
pub mod downstream;
pub mod io;
pub mod listener;
pub mod tls;

pub use mailveil_smtp::session;

use config::Config;
use std::sync::Arc;

/// Loads what the server needs and reports every problem: the rules (errors are listed;
/// broken files are skipped) and the TLS files.
pub fn check(config: &Config) -> Result<Vec<String>, String> {
    let (_, rule_errors) = crate::rule_files::load(&config.rules, config.system_rules);
    if let Some(files) = &config.tls {
        tls::acceptor(files)?;
    }
    Ok(rule_errors.iter().map(ToString::to_string).collect())
}

/// Binds, loads rules and TLS, and serves until SIGTERM.
pub fn run(config: Config) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(run_async(config))
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

async fn run_async(config: Config) -> Result<(), String> {
    let (rules, errors) = crate::rule_files::LiveRules::load(&config.rules, config.system_rules);
    for e in &errors {
        tracing::warn!("rule file skipped: {e}");
    }
    let rules = Arc::new(rules);
    crate::reload::spawn(Arc::clone(&rules));
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let mut prefetch = None;
    if let Some(setup) = &config.proxy {
        let proxy = crate::proxy::build(&setup.settings, rules.get())?;
        crate::proxy::spawn(
            Arc::clone(&proxy),
            setup.settings.listen,
            setup.settings.http,
        )
        .await?;
        if config.policy.remote_content == mailveil_core::RemoteContent::Prefetch {
            prefetch = Some((proxy, setup.prefetch_deadline));
        }
    }
    let token = match &config.reports.dashboard_token_file {
        Some(path) => Some(crate::web::read_token(path)?),
        None => None,
    };
    let store: Option<Arc<dyn crate::store::ReportStore>> = match &config.reports.db {
        Some(location) => {
            let store = crate::store::open(location, config.reports.debug)
                .await
                .map_err(|e| e.to_string())?;
            let store: Arc<dyn crate::store::ReportStore> = Arc::new(store);
            tokio::spawn(crate::store::retention_task(
                Arc::clone(&store),
                config.reports.retention_days,
            ));
            Some(store)
        }
        None => None,
    };
    if let Some(listen) = config.reports.dashboard_listen {
        let state = crate::web::WebState {
            store: store.clone(),
            token,
            listen: Some(listen),
            hostnames: config.reports.dashboard_hostnames.clone(),
        };
        crate::web::metrics::install();
        let dash = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        tracing::info!(%listen, "dashboard listening");
        let limits = config.http;
        tokio::spawn(async move {
            let app = crate::web::router(state);
            if let Err(e) = crate::http::serve(dash, app, limits).await {
                tracing::warn!("dashboard stopped: {e}");
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
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
        down_timeouts: downstream::Timeouts {
            connect: config.downstream_connect_timeout,
            reply: config.downstream_timeout,
        },
        policy: config.policy.clone(),
        rules,
        tls,
        prefetch,
        reports: store.map(|store| conn::Reports {
            store,
            debug: config.reports.debug,
        }),
    });
    warn_if_over_fd_limit(config.max_sessions);
    tracing::info!(
        listen = %config.listen,
        downstream = %config.downstream,
        tls = shared.tls.is_some(),
        "listening"
    );
    listener::serve(
        listener,
        shared,
        listener::ListenerLimits {
            allowed: config.allowed_networks.clone(),
            max_sessions: config.max_sessions,
            shutdown_grace: config.shutdown_grace,
        },
    )
    .await
    .map_err(|e| format!("serve: {e}"))
}
