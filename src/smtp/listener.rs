//! The accept loop: access control before the greeting, the session limit, and the
//! graceful shutdown on SIGTERM (no new connections; sessions in flight finish their
//! transaction, then get `421`).

use super::conn::{Shared, run_session};
use ipnet::IpNet;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

/// Limits of the accept loop.
pub struct ListenerLimits {
    /// Client networks allowed to connect.
    pub allowed: Vec<IpNet>,
    /// Concurrent sessions.
    pub max_sessions: usize,
    /// Time sessions get to finish after SIGTERM.
    pub shutdown_grace: Duration,
}

/// Serves until SIGTERM or SIGINT, then drains.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    limits: ListenerLimits,
) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let sessions = Arc::new(Semaphore::new(limits.max_sessions));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: wait instead of spinning.
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if !crate::allow_list::allowed(&limits.allowed, peer.ip()) {
                    warn!(%peer, "refused: client not in allowed_networks");
                    refuse(stream, b"554 5.7.1 Access denied\r\n");
                    continue;
                }
                let Ok(permit) = Arc::clone(&sessions).try_acquire_owned() else {
                    warn!(%peer, "refused: too many sessions");
                    refuse(stream, b"421 4.3.2 Too many sessions, try again later\r\n");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = Arc::clone(&shared);
                let stop = stop_rx.clone();
                tasks.spawn(async move {
                    run_session(shared, Box::new(stream), peer.to_string(), stop).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    info!(
        sessions = tasks.len(),
        "shutting down: no new connections, finishing sessions in flight"
    );
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            sessions = tasks.len(),
            "shutdown grace time over, closing the rest (their mail was not acknowledged)"
        );
        tasks.abort_all();
    }
    info!("stopped");
    Ok(())
}

/// Answers a refused client without a task: one non-blocking write (a fresh socket's
/// send buffer takes a short line), then close. Refused clients cost nothing that lasts.
fn refuse(stream: TcpStream, line: &[u8]) {
    let _ = stream.try_write(line);
    drop(stream);
}
