//! `mailveil milter`: the Sendmail/Postfix milter protocol (version 6), written by hand
//! (no GPL crate). The MTA hands over envelope, headers and body; at end of message the
//! mail is cleaned with [`mailveil_core::clean`] and only what changed goes back: the
//! report header on top (SMFIR_INSHEADER), removed or changed headers (SMFIR_CHGHEADER)
//! and the new body (SMFIR_REPLBODY, in chunks of at most 64 KiB). When a mail cannot be
//! cleaned it passes unchanged with an error header, or gets a temporary failure, as the
//! policy says.
//!
//! - [`codec`]: frames and commands, sans I/O.
//! - [`session`]: the per-connection state machine and the reply plan, sans I/O.
//! - this module: the listener (TCP or unix socket) and the connection loop.

pub mod codec;
pub mod session;

use crate::rule_files::LiveRules;
use codec::{Decoder, Reply};
use mailveil_core::Policy;
use session::{Session, Step};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tracing::{info, warn};

/// Where the milter listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `inet:HOST:PORT` or Sendmail's `inet:PORT@HOST`.
    Inet(SocketAddr),
    /// `unix:/path` (or `local:/path`).
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("bad listen address {s:?}: use inet:127.0.0.1:8891 or unix:/path");
        if let Some(path) = s.strip_prefix("unix:").or_else(|| s.strip_prefix("local:")) {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        let rest = s.strip_prefix("inet:").ok_or_else(bad)?;
        if let Some((port, host)) = rest.split_once('@') {
            let host = if host == "localhost" {
                "127.0.0.1"
            } else {
                host
            };
            return format!("{host}:{port}")
                .parse()
                .map(Listen::Inet)
                .map_err(|_| bad());
        }
        rest.parse().map(Listen::Inet).map_err(|_| bad())
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Inet(a) => write!(f, "inet:{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Everything the milter needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: Listen,
    pub rules: Vec<PathBuf>,
    pub system_rules: bool,
    pub policy: Policy,
    /// Frames announced longer than this close the connection (checked before reading them).
    pub max_frame: usize,
    /// The MTA must send something within this time.
    pub timeout: Duration,
}

struct Shared {
    policy: Policy,
    /// Reloaded on SIGHUP and when a rule file changes (as for `serve`).
    rules: Arc<LiveRules>,
    max_frame: usize,
    timeout: Duration,
}

/// Loads the rules, binds, and serves until SIGTERM or SIGINT.
pub fn run(opts: Options) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(run_async(opts))
}

async fn run_async(opts: Options) -> Result<(), String> {
    let (rules, errors) = LiveRules::load(&opts.rules, opts.system_rules);
    for e in &errors {
        warn!("rule file skipped: {e}");
    }
    let rules = Arc::new(rules);
    crate::reload::spawn(Arc::clone(&rules));
    let shared = Arc::new(Shared {
        policy: opts.policy.clone(),
        rules,
        max_frame: opts.max_frame,
        timeout: opts.timeout,
    });
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut tasks = JoinSet::new();
    match &opts.listen {
        Listen::Inet(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            info!(listen = %opts.listen, "milter listening");
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            tasks.spawn(connection(Arc::clone(&shared), stream));
                        }
                        Err(e) => {
                            warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        }
        Listen::Unix(path) => {
            // A stale socket from an earlier run would make bind fail.
            if std::fs::symlink_metadata(path)
                .map(|m| {
                    use std::os::unix::fs::FileTypeExt;
                    m.file_type().is_socket()
                })
                .unwrap_or(false)
            {
                let _ = std::fs::remove_file(path);
            }
            let listener = tokio::net::UnixListener::bind(path)
                .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
            info!(listen = %opts.listen, "milter listening");
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            tasks.spawn(connection(Arc::clone(&shared), stream));
                        }
                        Err(e) => {
                            warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
            let _ = std::fs::remove_file(path);
        }
    }
    info!(
        connections = tasks.len(),
        "shutting down: finishing mails in flight"
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(shared: Arc<Shared>, stream: S) {
    if let Err(e) = serve_connection(&shared, stream).await {
        warn!("milter connection closed: {e}");
    }
}

/// Drives one MTA connection until it quits or breaks the protocol.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    mut stream: S,
) -> Result<(), String> {
    let mut decoder = Decoder::new(shared.max_frame);
    let mut session = Session::new(shared.policy.limits.max_message_bytes);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let n = match tokio::time::timeout(shared.timeout, stream.read(&mut buf)).await {
            Err(_) => return Err("timeout waiting for the MTA".into()),
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => n,
        };
        decoder.push(&buf[..n]);
        loop {
            let cmd = match decoder.next_command() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => return Err(format!("protocol error: {e}")),
            };
            let replies = match session.handle(cmd) {
                Step::Reply(r) => r,
                Step::Close => {
                    stream.flush().await.map_err(|e| e.to_string())?;
                    return Ok(());
                }
                Step::Clean(msg) => end_of_message(shared, msg).await,
            };
            out.clear();
            for r in &replies {
                codec::encode(r, &mut out);
            }
            if !out.is_empty() {
                stream
                    .write_all(&out)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            }
        }
    }
}

async fn end_of_message(shared: &Shared, msg: session::Message) -> Vec<Reply> {
    let policy = shared.policy.clone();
    let rules = shared.rules.get();
    let queue_id = msg.queue_id.clone().unwrap_or_default();
    let rcpts = msg.recipients.len();
    // End of message to the replies: what mailveil adds to each mail.
    let cleaning = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let cleaned = session::clean_message(&msg, &policy, &rules);
        let (replies, changes) = session::eom_replies(&msg, &cleaned);
        (replies, changes, cleaned.report)
    })
    .await;
    let clean_us = cleaning.elapsed().as_micros() as u64;
    match result {
        Ok((replies, changes, report)) => {
            if changes.not_allowed {
                warn!(
                    queue_id,
                    "the MTA did not allow every change the cleaning needs (milter actions)"
                );
            }
            info!(
                queue_id,
                rcpts,
                findings = report.findings.len(),
                error = report.error.as_deref().unwrap_or("-"),
                body_replaced = changes.body_replaced,
                headers_added = changes.headers_added,
                headers_changed = changes.headers_changed,
                headers_removed = changes.headers_removed,
                clean_us,
                verdict = if replies.last() == Some(&Reply::Tempfail) {
                    "tempfail"
                } else {
                    "continue"
                },
                "mail"
            );
            replies
        }
        Err(e) => {
            // clean() catches its own panics; this is the blocking pool failing.
            warn!(queue_id, "cleaning task failed: {e}");
            if shared.policy.on_error == mailveil_core::OnError::Tempfail {
                vec![Reply::Tempfail]
            } else {
                vec![Reply::Continue]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codec::{Command, DEFAULT_MAX_FRAME};

    #[test]
    fn listen_addresses() {
        assert_eq!(
            "inet:127.0.0.1:8891".parse::<Listen>(),
            Ok(Listen::Inet("127.0.0.1:8891".parse().unwrap()))
        );
        assert_eq!(
            "inet:8891@127.0.0.1".parse::<Listen>(),
            Ok(Listen::Inet("127.0.0.1:8891".parse().unwrap()))
        );
        assert_eq!(
            "unix:/run/mailveil.sock".parse::<Listen>(),
            Ok(Listen::Unix("/run/mailveil.sock".into()))
        );
        assert!("127.0.0.1:8891".parse::<Listen>().is_err());
        assert!("unix:".parse::<Listen>().is_err());
    }

    fn frame(cmd: u8, data: &[u8]) -> Vec<u8> {
        let mut out = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(cmd);
        out.extend_from_slice(data);
        out
    }

    #[tokio::test]
    async fn a_whole_conversation_over_a_duplex_stream() {
        let shared = Shared {
            policy: Policy::default(),
            rules: Arc::new(LiveRules::load(&[], false).0),
            max_frame: DEFAULT_MAX_FRAME,
            timeout: Duration::from_secs(5),
        };
        let (mut mta, milter) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(async move { serve_connection(&shared, milter).await });
        let mut input = frame(b'O', &[0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff]);
        input.extend(frame(b'M', b"<news@sender.example>\0"));
        input.extend(frame(b'R', b"<alice@example.test>\0"));
        input.extend(frame(b'L', b"Content-Type\0 text/html\0"));
        input.extend(frame(b'N', b""));
        input.extend(frame(
            b'B',
            b"<p>Hi</p><img src=\"https://t.example/o.gif?u=alice@example.test\" width=1 height=1>\r\n",
        ));
        input.extend(frame(b'E', b""));
        input.extend(frame(b'Q', b""));
        mta.write_all(&input).await.unwrap();
        let mut got = Vec::new();
        mta.read_to_end(&mut got).await.unwrap();
        server.await.unwrap().unwrap();
        let mut d = ReplyReader(got);
        let replies: Vec<(u8, Vec<u8>)> = std::iter::from_fn(|| d.next()).collect();
        let cmds: Vec<u8> = replies.iter().map(|r| r.0).collect();
        // O, c (mail), c (rcpt), c (header), c (eoh), c (body), then i, b, c
        assert_eq!(cmds, b"Occcccibc");
        let body = String::from_utf8_lossy(&replies[7].1);
        assert!(body.contains("<p>Hi</p>"), "{body}");
        assert!(!body.contains("t.example"), "{body}");
        let _ = Command::Quit;
    }

    #[tokio::test]
    async fn an_oversize_frame_closes_the_connection() {
        let shared = Shared {
            policy: Policy::default(),
            rules: Arc::new(LiveRules::load(&[], false).0),
            max_frame: 1000,
            timeout: Duration::from_secs(5),
        };
        let (mut mta, milter) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move { serve_connection(&shared, milter).await });
        mta.write_all(&0x7fff_ffffu32.to_be_bytes()).await.unwrap();
        let err = server.await.unwrap().unwrap_err();
        assert!(err.contains("above the limit"), "{err}");
    }

    struct ReplyReader(Vec<u8>);
    impl ReplyReader {
        fn next(&mut self) -> Option<(u8, Vec<u8>)> {
            let len = u32::from_be_bytes(self.0.get(..4)?.try_into().ok()?) as usize;
            let frame: Vec<u8> = self.0.drain(..4 + len).skip(4).collect();
            Some((frame[0], frame[1..].to_vec()))
        }
    }
}
