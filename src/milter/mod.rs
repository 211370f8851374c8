//! `mailveil milter`: the Sendmail/Postfix milter protocol (version 6), written by hand
//! (no GPL crate). The MTA hands over envelope, headers and body; at end of message the
//! mail goes through the [`Pipeline`] (the core, authentication, prefetch, the report)
//! and only what changed goes back: our header fields on top (SMFIR_INSHEADER: the
//! report header, and with authentication the verdict and the ARC set above it), removed
//! or changed headers (SMFIR_CHGHEADER: read receipts, Authentication-Results forged in
//! our name) and the new body (SMFIR_REPLBODY, in chunks of at most 64 KiB). When a mail
//! cannot be read it goes on as the core delivers it (the original attached to a note,
//! an error header), or gets a temporary failure, as the policy says.
//!
//! A mail that cannot be cleaned in memory (over `--max-message-bytes`, or larger than
//! the memory budget can ever hold) is written to a private spool file as it arrives
//! ([`spool`]) and, at end of message, goes back wrapped the same way
//! ([`mailveil_core::TooLarge`]): its header fields changed as the wrapper needs, the
//! body replaced by the note and the original in base64, streamed from the spool.
//!
//! Bounds, so that clients cannot take the memory or the connections of the host: a
//! client network list (TCP), a connection limit (past it a new connection is closed at
//! once, and the MTA applies its `milter_default_action`), a memory budget shared by all
//! connections (a mail that does not fit gets a temporary failure), an idle timeout
//! between frames and a frame timeout from a frame's first byte to its last (and for
//! each reply frame written), so a client trickling bytes cannot hold a frame open.
//!
//! - [`codec`]: frames and commands, sans I/O.
//! - [`session`]: the per-connection state machine and the reply plan, sans I/O.
//! - [`budget`]: the shared memory budget.
//! - [`spool`]: the private spool files of mails too large to hold, and their disk cap.
//! - this module: the listener (TCP or unix socket) and the connection loop.

pub(crate) mod budget;
pub(crate) mod codec;
pub(crate) mod session;
pub(crate) mod spool;

use crate::pipeline::{MailMeta, Outcome, Pipeline, Streamed};
use crate::printable::printable;
use budget::{Budget, Held};
use codec::{Command, Decoder, Reply};
use ipnet::IpNet;
use session::{Plan, Session, Step};
use spool::{Spool, SpoolDir};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

/// Bytes read from a connection at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Where the milter listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listen {
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

/// What the milter's protocol side runs with (the policy and the rest are the
/// pipeline's).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Where it listens.
    pub listen: Listen,
    /// Frames announced longer than this close the connection (checked before reading them).
    pub max_frame: usize,
    /// Time, 'between frames', the MTA has to send the next command.
    pub idle_timeout: Duration,
    /// Time from the first byte of a frame to its last; also for each reply frame to be
    /// taken by the MTA.
    pub frame_timeout: Duration,
    /// Connections served at once; past it new ones are closed at once.
    pub max_connections: usize,
    /// The memory budget of mail in flight, all connections together (see [`budget`]).
    pub max_inflight_bytes: usize,
    /// Client networks that may connect over TCP (a unix socket is guarded by its
    /// file permissions).
    pub allow: Vec<IpNet>,
    /// The bytes all spool files may hold together (see [`spool`]).
    pub max_spool_bytes: u64,
}

/// The limits of one connection.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    idle: Duration,
    frame: Duration,
}

struct Shared {
    /// The core and everything around it, shared with the other frontends.
    pipeline: Arc<Pipeline>,
    max_frame: usize,
    timeouts: Timeouts,
    budget: Arc<Budget>,
    spool: SpoolDir,
}

/// A bound listener.
enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// An accepted connection.
enum Stream {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    async fn bind(listen: &Listen) -> Result<Listener, String> {
        match listen {
            Listen::Inet(addr) => tokio::net::TcpListener::bind(addr)
                .await
                .map(Listener::Tcp)
                .map_err(|e| format!("cannot listen on {addr}: {e}")),
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
                tokio::net::UnixListener::bind(path)
                    .map(Listener::Unix)
                    .map_err(|e| format!("cannot listen on {}: {e}", path.display()))
            }
        }
    }

    async fn accept(&self) -> std::io::Result<Stream> {
        match self {
            Listener::Tcp(l) => l.accept().await.map(|(s, peer)| Stream::Tcp(s, peer)),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
        }
    }
}

/// Binds and serves until SIGTERM or SIGINT, every mail through `pipeline`.
pub(crate) async fn run(opts: Options, pipeline: Arc<Pipeline>) -> Result<(), String> {
    let shared = Arc::new(Shared {
        pipeline,
        max_frame: opts.max_frame,
        timeouts: Timeouts {
            idle: opts.idle_timeout,
            frame: opts.frame_timeout,
        },
        budget: Budget::new(opts.max_inflight_bytes),
        spool: SpoolDir::create(opts.max_spool_bytes)?,
    });
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let listener = Listener::bind(&opts.listen).await?;
    info!(
        listen = %opts.listen,
        max_connections = opts.max_connections,
        max_inflight_bytes = opts.max_inflight_bytes,
        spool = %shared.spool.path().display(),
        max_spool_bytes = opts.max_spool_bytes,
        "milter listening"
    );
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    if let Some((stream, permit)) = admit(stream, &opts.allow, &slots) {
                        let shared = Arc::clone(&shared);
                        tasks.spawn(async move {
                            match stream {
                                Stream::Tcp(s, peer) => connection(shared, s, peer.to_string()).await,
                                Stream::Unix(s) => connection(shared, s, "unix".into()).await,
                            }
                            drop(permit);
                        });
                    }
                }
                Err(e) => {
                    // EMFILE and friends: wait instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    if let Listen::Unix(path) = &opts.listen {
        let _ = std::fs::remove_file(path);
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

/// The access checks before a connection is served: its network, then a free slot. A
/// refused connection is closed at once, before any frame: the MTA sees the milter
/// unavailable and applies its `milter_default_action` (Postfix: tempfail by default).
fn admit(
    stream: Stream,
    allow: &[IpNet],
    slots: &Arc<Semaphore>,
) -> Option<(Stream, OwnedSemaphorePermit)> {
    if let Stream::Tcp(_, peer) = &stream
        && !crate::allow_list::allowed(allow, peer.ip())
    {
        warn!(%peer, "refused: client not in --allow");
        return None;
    }
    let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
        match &stream {
            Stream::Tcp(_, peer) => warn!(%peer, "refused: --max-connections reached"),
            Stream::Unix(_) => warn!("refused: --max-connections reached"),
        }
        return None;
    };
    if let Stream::Tcp(s, _) = &stream {
        let _ = s.set_nodelay(true);
    }
    Some((stream, permit))
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    stream: S,
    peer: String,
) {
    if let Err(e) = serve_connection(&shared, stream, &peer).await {
        warn!("milter connection closed: {e}");
    }
}

/// The mail of one connection, what it holds of the budget, and its spool.
struct Current {
    held: Held,
    /// A charge was refused: the mail went to the spool.
    over_budget: bool,
    /// The spool of a mail not held in memory.
    spool: Option<Spool>,
}

impl Current {
    /// Charges what the session is about to keep of `cmd`; past the budget the session
    /// keeps nothing more of this mail in memory: it goes to the spool.
    fn charge(&mut self, cmd: &Command, session: &mut Session) {
        if session.spooling() {
            return;
        }
        let fits = match cmd {
            Command::Header { name, value } => self.held.add_fields(name.len() + value.len() + 3),
            Command::Body(chunk) => self.held.add_body(chunk.len()),
            _ => true,
        };
        if !fits {
            // the body's share went back with the refusal
            self.over_budget = true;
            session.spool();
        }
    }

    /// Appends what the session spilled to this mail's spool (made on first use).
    async fn spill(&mut self, session: &mut Session, dir: &SpoolDir) {
        let bytes = session.take_spill();
        if !bytes.is_empty() {
            let spool = self.spool.get_or_insert_with(|| dir.file());
            spool.append(&bytes).await;
        }
    }

    /// The mail is answered or gone: everything is given back.
    fn end(&mut self) {
        self.held.release();
        self.over_budget = false;
        self.spool = None;
    }
}

/// Drives one MTA connection until it quits or breaks the protocol.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    mut stream: S,
    peer: &str,
) -> Result<(), String> {
    let mut decoder = Decoder::new(shared.max_frame);
    let mut session = Session::new(shared.pipeline.policy().limits.max_message_bytes);
    let mut current = Current {
        held: Held::new(Arc::clone(&shared.budget)),
        over_budget: false,
        spool: None,
    };
    let mut buf = vec![0u8; READ_CHUNK];
    // When the frame now in the decoder began: it must be whole within the frame timeout.
    let mut frame_began: Option<Instant> = None;
    loop {
        let deadline = match frame_began {
            Some(t) => t + shared.timeouts.frame,
            None => Instant::now() + shared.timeouts.idle,
        };
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) if frame_began.is_some() => {
                return Err("a frame did not arrive whole within the frame timeout".into());
            }
            Err(_) => return Err("idle timeout waiting for the MTA".into()),
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => n,
        };
        decoder.push(&buf[..n]);
        let mut decoded = false;
        loop {
            let cmd = match decoder.next_command() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => return Err(format!("protocol error: {e}")),
            };
            decoded = true;
            if matches!(
                cmd,
                Command::Mail { .. } | Command::Abort | Command::QuitNewConnection
            ) {
                current.end();
            }
            current.charge(&cmd, &mut session);
            let size = session.size();
            let step = session.handle(cmd);
            // over a limit: the mail goes to the spool, and once written there, its
            // body's share of the budget comes back
            current.spill(&mut session, &shared.spool).await;
            if session.spooling() {
                current.held.release_body();
            }
            match step {
                Step::Reply(replies) => {
                    send(
                        &mut stream,
                        &Plan::send(replies),
                        &[],
                        shared.timeouts.frame,
                    )
                    .await?;
                }
                Step::Close => {
                    stream.flush().await.map_err(|e| e.to_string())?;
                    return Ok(());
                }
                Step::Clean(msg) if msg.spooled => {
                    let spool = current.spool.take();
                    if current.over_budget && shared.budget.could_hold(size) {
                        let (plan, _) = busy(&msg, size, &shared.budget);
                        send(&mut stream, &plan, &[], shared.timeouts.frame).await?;
                    } else {
                        if current.over_budget {
                            warn!(
                                queue_id = %printable(msg.queue_id.as_deref().unwrap_or_default()),
                                size,
                                "mail larger than a third of --max-inflight-bytes: \
                                 handled as too large"
                            );
                        }
                        too_large(shared, msg, spool, &mut stream, peer).await?;
                    }
                    current.end();
                }
                Step::Clean(msg) => {
                    end_of_message(shared, msg, &mut stream, peer).await?;
                    current.end();
                }
            }
        }
        frame_began = match frame_began {
            _ if decoder.buffered() == 0 => None,
            Some(t) if !decoded => Some(t),
            _ => Some(Instant::now()),
        };
    }
}

/// Writes the plan's replies, a frame (or a few small ones) at a time; each write must
/// be taken within the frame timeout, so an MTA that stops reading frees its connection.
async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    plan: &Plan,
    cleaned: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    let mut out = Vec::new();
    let mut replies = plan.replies(cleaned).peekable();
    while let Some(r) = replies.next() {
        codec::encode(&r, &mut out);
        if out.len() >= codec::MAX_BODY_CHUNK || replies.peek().is_none() {
            match tokio::time::timeout(timeout, stream.write_all(&out)).await {
                Err(_) => {
                    return Err("the MTA did not take a reply within the frame timeout".into());
                }
                Ok(Err(e)) => return Err(format!("write: {e}")),
                Ok(Ok(())) => out.clear(),
            }
        }
    }
    Ok(())
}

/// The header section of a spooled mail is read back whole, up to this size; a larger
/// one gets a temporary failure (Postfix's own `header_size_limit` is 100 KiB a field).
const MAX_SPOOLED_HEAD: usize = 1 << 20;
/// Bytes of a spooled mail's body read with its header section: enough to know one of
/// our wrappers again (its note and attachment header are about 1 KiB).
const SPOOLED_BODY_START: usize = 16 * 1024;

/// A spooled mail at end of message: the wrapper of [`mailveil_core::TooLarge`], its
/// header changes first, then the new body streamed from the spool in REPLBODY frames,
/// then the verdict. What cannot be done right (the spool failed or is over its cap,
/// a header section past [`MAX_SPOOLED_HEAD`], an MTA that does not allow the changes)
/// gets a temporary failure: the mail never goes on unwrapped.
async fn too_large<S: AsyncWrite + Unpin>(
    shared: &Shared,
    mut msg: session::Message,
    spool: Option<Spool>,
    stream: &mut S,
    peer: &str,
) -> Result<(), String> {
    let queue_id = printable(msg.queue_id.as_deref().unwrap_or_default()).into_owned();
    let tempfail = |why: &str| {
        warn!(
            queue_id,
            "mail too large to hold not delivered: {why} (temporary failure)"
        );
        Plan::verdict(Reply::Tempfail)
    };
    let mut spool = match spool {
        Some(s) if s.error().is_none() => s,
        Some(s) => {
            let plan = tempfail(s.error().unwrap_or_default());
            return send(stream, &plan, &[], shared.timeouts.frame).await;
        }
        None => {
            let plan = tempfail("nothing was spooled");
            return send(stream, &plan, &[], shared.timeouts.frame).await;
        }
    };
    let spooled = spool.len();
    let start = match read_start(&mut spool).await {
        Ok(start) => start,
        Err(why) => {
            let plan = tempfail(&why);
            return send(stream, &plan, &[], shared.timeouts.frame).await;
        }
    };
    let (pipeline, envelope) = (Arc::clone(&shared.pipeline), msg.envelope());
    let decided = tokio::task::spawn_blocking(move || {
        let t = pipeline.too_large(&start, &envelope);
        (t, start)
    })
    .await;
    let Ok((mut t, start)) = decided else {
        let plan = tempfail("the wrapping task failed");
        return send(stream, &plan, &[], shared.timeouts.frame).await;
    };
    let head_end = head_end(&start);
    // What the record keeps of it (Message-ID, Subject): the header section alone.
    let head = start[..head_end].to_vec();
    let envelope = msg.envelope();
    let meta = MailMeta {
        frontend: "milter",
        queue_id: msg.queue_id.clone().unwrap_or_default(),
        peer: peer.to_string(),
    };
    let streamed = |out_size: u64, tempfail: bool| Streamed {
        report: t.report().clone(),
        head: &head,
        size: spooled,
        out_size,
        tempfail,
    };
    if t.tempfail() {
        let done = shared.pipeline.streamed(streamed(0, true), &envelope, meta);
        done.finish(Outcome::said(format!("tempfail spooled={spooled}")));
        return send(
            stream,
            &Plan::verdict(Reply::Tempfail),
            &[],
            shared.timeouts.frame,
        )
        .await;
    }
    msg.fields = session::split_message(&head).0;
    let (new_fields, body_start) = session::split_message(t.head());
    let (headers, mut changes) = session::header_changes(&msg, &new_fields);
    let rewrites = t.rewrites_body();
    if changes.not_allowed || (rewrites && msg.actions & codec::action::CHGBODY == 0) {
        let plan = tempfail("the MTA does not allow the changes the wrapper needs");
        return send(stream, &plan, &[], shared.timeouts.frame).await;
    }
    let mut out_size = (t.head().len() - body_start.len()) as u64;
    let done = shared
        .pipeline
        .streamed(streamed(0, false), &envelope, meta);
    send(stream, &Plan::send(headers), &[], shared.timeouts.frame).await?;
    if rewrites {
        // The spool file is read on from where the start ended.
        let mut out = Vec::with_capacity(3 * codec::MAX_BODY_CHUNK);
        out.extend_from_slice(body_start);
        t.feed(&start[t.resume_at().min(start.len())..], &mut out);
        drop(start);
        let file = spool.file().map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            out_size += send_body(stream, &mut out, false, shared.timeouts.frame).await?;
            let n = spool::read_full(file, &mut buf)
                .await
                .map_err(|e| format!("reading the spool back: {e}"))?;
            if n == 0 {
                break;
            }
            t.feed(&buf[..n], &mut out);
        }
        t.finish(&mut out);
        out_size += send_body(stream, &mut out, true, shared.timeouts.frame).await?;
        changes.body_replaced = true;
    }
    let mut done = done;
    done.sent(out_size);
    done.finish(Outcome::said(format!(
        "continue spooled={spooled} {}",
        changes.summary()
    )));
    send(
        stream,
        &Plan::verdict(Reply::Continue),
        &[],
        shared.timeouts.frame,
    )
    .await
}

/// The start of a spooled mail: its header section (up to [`MAX_SPOOLED_HEAD`]) and up
/// to [`SPOOLED_BODY_START`] bytes of its body; the file is left where the start ends.
async fn read_start(spool: &mut Spool) -> Result<Vec<u8>, String> {
    let file = spool
        .rewind()
        .await
        .map_err(|e| format!("reading the spool back: {e}"))?;
    let mut start = Vec::new();
    loop {
        let at = start.len();
        start.resize(at + READ_CHUNK, 0);
        let n = spool::read_full(file, &mut start[at..])
            .await
            .map_err(|e| format!("reading the spool back: {e}"))?;
        start.truncate(at + n);
        let ended = n < READ_CHUNK;
        match find_head_end(&start) {
            Some(end) if ended || start.len() >= end + SPOOLED_BODY_START => return Ok(start),
            None if ended => return Ok(start),
            None if start.len() > MAX_SPOOLED_HEAD => {
                return Err(format!("a header section over {MAX_SPOOLED_HEAD} bytes"));
            }
            _ => {}
        }
    }
}

/// Where the header section of a spooled mail ends: after the blank line the session
/// wrote after the fields (every field ends with CRLF there), or at the end of `start`.
fn find_head_end(start: &[u8]) -> Option<usize> {
    if start.starts_with(b"\r\n") {
        return Some(2);
    }
    start
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

fn head_end(start: &[u8]) -> usize {
    find_head_end(start).unwrap_or(start.len())
}

/// Sends `out` as REPLBODY frames of [`codec::MAX_BODY_CHUNK`] bytes, keeping what does
/// not fill one (unless `last`); each frame must be taken within the frame timeout.
/// Returns the bytes sent.
async fn send_body<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    last: bool,
    timeout: Duration,
) -> Result<u64, String> {
    let mut frame = Vec::with_capacity(codec::MAX_BODY_CHUNK + 5);
    let mut sent = 0;
    while out.len() - sent >= codec::MAX_BODY_CHUNK || (last && sent < out.len()) {
        let n = (out.len() - sent).min(codec::MAX_BODY_CHUNK);
        frame.clear();
        codec::encode(
            &Reply::ReplaceBody(out[sent..sent + n].to_vec()),
            &mut frame,
        );
        match tokio::time::timeout(timeout, stream.write_all(&frame)).await {
            Err(_) => return Err("the MTA did not take a reply within the frame timeout".into()),
            Ok(Err(e)) => return Err(format!("write: {e}")),
            Ok(Ok(())) => sent += n,
        }
    }
    out.drain(..sent);
    Ok(sent as u64)
}

/// A mail that would fit the budget alone, but not now: a temporary failure (the MTA
/// retries later, when other mails are done).
fn busy(msg: &session::Message, size: usize, budget: &Budget) -> (Plan, Vec<u8>) {
    warn!(
        queue_id = %printable(msg.queue_id.as_deref().unwrap_or_default()),
        size,
        in_use = budget.in_use(),
        limit = budget.limit(),
        "mail refused for now: --max-inflight-bytes reached (temporary failure)"
    );
    (Plan::verdict(Reply::Tempfail), Vec::new())
}

/// Cleans the mail through the pipeline, plans the replies (off the async threads: the
/// mail is dropped there, so only the cleaned bytes are held while they are written),
/// sends them, and finishes the mail.
async fn end_of_message<S: AsyncWrite + Unpin>(
    shared: &Shared,
    msg: session::Message,
    stream: &mut S,
    peer: &str,
) -> Result<(), String> {
    let queue_id = msg.queue_id.clone().unwrap_or_default();
    let meta = MailMeta {
        frontend: "milter",
        queue_id: queue_id.clone(),
        peer: peer.to_string(),
    };
    let envelope = msg.envelope();
    let msg = Arc::new(msg);
    let done = shared
        .pipeline
        .process(Arc::clone(&msg), envelope, meta)
        .await;
    let planned = tokio::task::spawn_blocking(move || {
        let plan = session::eom_plan(&msg, &done.cleaned);
        drop(msg);
        (plan, done)
    })
    .await;
    let Ok((plan, mut done)) = planned else {
        // Only the blocking pool failing gets here: nothing was planned, nothing goes
        // on uncleaned.
        warn!("planning the replies failed: temporary failure");
        let plan = Plan::verdict(Reply::Tempfail);
        return send(stream, &plan, &[], shared.timeouts.frame).await;
    };
    let changes = &plan.changes;
    if changes.not_allowed {
        warn!(
            queue_id = %printable(&queue_id),
            "the MTA did not allow every change the cleaning needs (milter actions)"
        );
    }
    let verdict = if plan.verdict == Some(Reply::Tempfail) {
        "tempfail"
    } else {
        "continue"
    };
    // What the milter answers is decided: the mail is finished before the answer goes
    // (an MTA that drops the connection then is logged with it).
    let result = format!("{verdict} {}", changes.summary());
    let bytes = std::mem::take(&mut done.cleaned.bytes);
    done.finish(Outcome::said(result));
    send(stream, &plan, &bytes, shared.timeouts.frame).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use codec::DEFAULT_MAX_FRAME;

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

    fn shared(max_frame: usize, budget: usize) -> Shared {
        let rules = Arc::new(crate::rule_files::LiveRules::load(&[], false).unwrap());
        Shared {
            pipeline: Arc::new(Pipeline::new(rules, mailveil_core::Policy::default())),
            max_frame,
            timeouts: Timeouts {
                idle: Duration::from_secs(5),
                frame: Duration::from_secs(5),
            },
            budget: Budget::new(budget),
            spool: SpoolDir::create_in(&std::env::temp_dir(), 1 << 30).unwrap(),
        }
    }

    fn frame(cmd: u8, data: &[u8]) -> Vec<u8> {
        let mut out = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(cmd);
        out.extend_from_slice(data);
        out
    }

    #[tokio::test]
    async fn a_whole_conversation_over_a_duplex_stream() {
        let shared = shared(DEFAULT_MAX_FRAME, 1 << 30);
        let (mut mta, milter) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(async move { serve_connection(&shared, milter, "test").await });
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
    }

    #[tokio::test]
    async fn an_oversize_frame_closes_the_connection() {
        let shared = shared(1000, 1 << 30);
        let (mut mta, milter) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move { serve_connection(&shared, milter, "test").await });
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
