//! Downstream connections kept open between client sessions, as Postfix's own SMTP
//! client caches its connections: a client session takes an idle one (or dials), and
//! gives it back at its end. Connecting, the greeting and EHLO then cost once per
//! connection instead of once per mail (Postfix opens a session per mail to a content
//! filter).
//!
//! One client's envelope can never reach another's transaction: each transaction on a
//! kept connection begins with an `RSET` answered `2xx` (the downstream forgets the
//! transaction before and its XFORWARD attributes). A transaction left open is reset
//! before the connection is kept; after one that ended, the RSET goes in front of the
//! next MAIL in the same write when the downstream announced PIPELINING
//! (`Downstream::end_session`), and its reply is read before anything else. A kept
//! connection has no unread byte from the downstream, and has not failed once (any
//! error drops it, so its state is never a guess). Kept
//! connections wait at most [`IDLE_TIMEOUT`] (the downstream's own processes are
//! finite) and are reused for at most [`MAX_AGE`]. One taken from the pool that turns
//! out to be dead fails at its first command, MAIL, which is tried again once on a
//! fresh connection (see `conn::mail`): nothing is lost and the client waits for one
//! connect, no more.

use super::downstream::Downstream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a connection waits in the pool (Postfix's `smtp_connection_cache_time_limit`
/// is 2 s: long enough for the next session of a busy queue, short enough not to hold
/// the downstream's processes for nothing).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one connection is reused at most (Postfix's
/// `smtp_connection_reuse_time_limit`, 300 s).
pub(crate) const MAX_AGE: Duration = Duration::from_secs(300);

/// Idle downstream connections, at most `size` (0: none kept, every session dials).
pub(crate) struct Pool {
    size: usize,
    idle: Mutex<Vec<(Downstream, Instant)>>,
}

impl Pool {
    /// A pool that keeps at most `size` idle connections.
    pub(crate) fn new(size: usize) -> Pool {
        Pool {
            size,
            idle: Mutex::new(Vec::with_capacity(size)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Downstream, Instant)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently kept idle connection that is still fresh and from which the
    /// downstream has sent nothing (no `421` before its own idle close, no EOF).
    pub(crate) fn take(&self) -> Option<Downstream> {
        loop {
            let (mut down, since) = self.lock().pop()?;
            if since.elapsed() < IDLE_TIMEOUT && down.quiet() {
                return Some(down);
            }
            // Stale, closed, or it spoke out of turn: its state is unknown, it goes.
        }
    }

    /// Gives a connection back at the end of a client session: ended (`RSET`, now or in
    /// front of its next MAIL) and kept if there is room and it is young enough; closed
    /// otherwise.
    pub(crate) async fn give_back(&self, mut down: Downstream) {
        if self.size == 0 || down.age() >= MAX_AGE || self.lock().len() >= self.size {
            down.quit().await;
            return;
        }
        // A failed or refused RSET: the downstream's state is not known, drop it.
        if down.end_session().await.is_err() || !down.quiet() {
            return;
        }
        let full = {
            let mut idle = self.lock();
            if idle.len() < self.size {
                idle.push((down, Instant::now()));
                None
            } else {
                Some(down)
            }
        };
        if let Some(down) = full {
            down.quit().await;
        }
    }

    /// Closes (QUIT) the connections that waited longer than [`IDLE_TIMEOUT`].
    pub(crate) async fn expire(&self) {
        let old: Vec<Downstream> = {
            let mut idle = self.lock();
            let (old, fresh): (Vec<_>, Vec<_>) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|(_, since)| since.elapsed() >= IDLE_TIMEOUT);
            *idle = fresh;
            old.into_iter().map(|(d, _)| d).collect()
        };
        for d in old {
            d.quit().await;
        }
    }

    /// Closes every idle connection (the server is stopping).
    pub(crate) async fn close(&self) {
        let all = std::mem::take(&mut *self.lock());
        for (d, _) in all {
            d.quit().await;
        }
    }

    /// Closes idle connections as they pass [`IDLE_TIMEOUT`], until the process ends.
    pub(crate) async fn reap(&self) {
        let mut tick = tokio::time::interval(IDLE_TIMEOUT / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.expire().await;
        }
    }
}
