//! `mailveil imap`: cleans the mail already in an IMAP mailbox, for people whose mail is
//! kept by a provider where no filter can be put in front. For each message not seen
//! before (UID and UIDVALIDITY in a local state file), it fetches the message without
//! setting `\Seen`, cleans it through the [`Pipeline`] (the core, prefetch, the
//! report), and when that changes it,
//! APPENDs the cleaned copy with the same flags and internal date, and only after the
//! server confirmed the APPEND moves the original away (to `--keep-originals`, or
//! `\Deleted` + UID EXPUNGE). The state is written after every message, so a sweep can
//! be stopped at any point and resumed; an original whose APPEND had started is checked
//! against the copies already in the folder, so nothing is appended twice.
//!
//! - [`plan`]: state, decisions, conversions (pure).
//! - [`client`]: the IMAP commands.

pub(crate) mod client;
pub(crate) mod plan;

use crate::pipeline::{MailMeta, Outcome, Pipeline};
use client::{Caps, Imap};
use mailveil_core::Envelope;
use plan::{Decision, State};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// What the sweep's IMAP side runs with (the policy and the rest are the pipeline's).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// `imaps://HOST[:PORT]` or `imap://HOST[:PORT]`.
    pub server: String,
    /// The login name.
    pub user: String,
    /// The file holding the password.
    pub password_file: PathBuf,
    /// The folders swept.
    pub folders: Vec<String>,
    /// Stay connected and clean new mail as it arrives.
    pub watch: bool,
    /// `YYYY-MM-DD`.
    pub since: Option<String>,
    /// Move originals here instead of deleting them.
    pub keep_originals: Option<String>,
    /// The state file.
    pub state: Option<PathBuf>,
    /// Show a progress bar for the first sweep (only on a terminal).
    pub progress: bool,
    /// A test seam, set only in code (never by a flag or the environment): called right
    /// after each APPEND the server confirmed, with their count so far, before anything
    /// else is recorded: the worst moment for the process to die.
    pub after_append: Option<fn(usize)>,
}

/// Counts of one sweep.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    looked_at: usize,
    cleaned: usize,
    unchanged: usize,
    finished_moves: usize,
    errors: usize,
}

struct Ctx {
    opts: Options,
    password: String,
    pipeline: Arc<Pipeline>,
    envelope: Envelope,
    since: Option<String>,
    state_path: PathBuf,
    state: State,
    appends: usize,
}

/// The directory of the sweep's state files when `--state` is not given, from the
/// environment through `env`: `$STATE_DIRECTORY` (systemd's `StateDirectory=`, the first
/// of a `:` list; the unit's user has no home), else `$XDG_STATE_HOME/mailveil`, else
/// `~/.local/state/mailveil`. Relative values are ignored (systemd sets absolute ones).
fn default_state_dir(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let absolute = |name: &str| {
        env(name)
            .and_then(|v| v.to_string_lossy().split(':').next().map(PathBuf::from))
            .filter(|p| p.is_absolute())
    };
    if let Some(dir) = absolute("STATE_DIRECTORY") {
        return dir;
    }
    absolute("XDG_STATE_HOME")
        .or_else(|| absolute("HOME").map(|h| h.join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("mailveil")
}

fn default_state_path(opts: &Options) -> PathBuf {
    let base = default_state_dir(|name| std::env::var_os(name));
    let host = plan::parse_server(&opts.server)
        .map(|(_, h, p)| format!("{h}_{p}"))
        .unwrap_or_default();
    let name: String = format!("imap-{}@{host}.json", opts.user)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    base.join(name)
}

/// Writes the state atomically: a temporary file beside it, synced, then renamed.
fn save_state(path: &Path, state: &State) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(state.to_text().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs one sweep, or sweeps and then watches (IDLE) until killed, every mail through
/// `pipeline`.
pub(crate) async fn run(opts: Options, pipeline: Arc<Pipeline>) -> Result<(), String> {
    let password = std::fs::read_to_string(&opts.password_file)
        .map_err(|e| format!("{}: {e}", opts.password_file.display()))?
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    if password.is_empty() {
        return Err(format!(
            "{}: no password in it",
            opts.password_file.display()
        ));
    }
    plan::parse_server(&opts.server)?;
    let since = opts.since.as_deref().map(plan::imap_date).transpose()?;
    let state_path = opts
        .state
        .clone()
        .unwrap_or_else(|| default_state_path(&opts));
    let state = match std::fs::read_to_string(&state_path) {
        Ok(text) => State::parse(&text).map_err(|e| format!("{}: {e}", state_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
        Err(e) => return Err(format!("{}: {e}", state_path.display())),
    };
    // The login name is the reader's address at most providers: recipient-token detection.
    let envelope = Envelope::to(opts.user.contains('@').then(|| opts.user.clone()));
    let mut ctx = Ctx {
        password,
        pipeline,
        envelope,
        since,
        state_path,
        state,
        appends: 0,
        opts,
    };
    if !ctx.opts.watch {
        let mut session = login(&ctx).await?;
        let counts = sweep_all(&mut ctx, &mut session, true).await?;
        let _ = session.logout().await;
        info!(
            looked_at = counts.looked_at,
            cleaned = counts.cleaned,
            unchanged = counts.unchanged,
            finished_moves = counts.finished_moves,
            errors = counts.errors,
            "sweep done"
        );
        return if counts.errors == 0 {
            Ok(())
        } else {
            Err(format!("{} messages could not be handled", counts.errors))
        };
    }
    watch(&mut ctx).await
}

async fn login(ctx: &Ctx) -> Result<Imap, String> {
    let mut session = client::connect(&ctx.opts.server, &ctx.opts.user, &ctx.password).await?;
    if let Some(keep) = &ctx.opts.keep_originals {
        // Fails when it exists: fine.
        let _ = session.create(keep).await;
        client::drain(&mut session);
    }
    Ok(session)
}

async fn sweep_all(ctx: &mut Ctx, session: &mut Imap, first: bool) -> Result<Counts, String> {
    let caps = client::caps(session).await?;
    let mut total = Counts::default();
    for folder in ctx.opts.folders.clone() {
        let c = sweep_folder(ctx, session, caps, &folder, first).await?;
        total.looked_at += c.looked_at;
        total.cleaned += c.cleaned;
        total.unchanged += c.unchanged;
        total.finished_moves += c.finished_moves;
        total.errors += c.errors;
    }
    Ok(total)
}

/// One pass over one folder: every UID not recorded yet.
async fn sweep_folder(
    ctx: &mut Ctx,
    session: &mut Imap,
    caps: Caps,
    folder: &str,
    show_progress: bool,
) -> Result<Counts, String> {
    let mbox = session
        .select(folder)
        .await
        .map_err(|e| format!("SELECT {folder}: {e}"))?;
    client::drain(session);
    let uidvalidity = mbox.uid_validity.unwrap_or(0);
    let query = match &ctx.since {
        Some(d) => format!("SINCE {d}"),
        None => "ALL".to_string(),
    };
    let all = client::uid_search(session, &query).await?;
    let todo = plan::todo(all, ctx.state.folder(folder, uidvalidity));
    let bar = if show_progress && ctx.opts.progress && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(todo.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(folder.to_string());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut counts = Counts::default();
    for uid in todo {
        bar.inc(1);
        if ctx.state.folder(folder, uidvalidity).is_done(uid) {
            continue; // recorded meanwhile (a copy found by a resumed move)
        }
        counts.looked_at += 1;
        match one(ctx, session, caps, folder, uidvalidity, uid).await {
            Ok(Done::Cleaned) => counts.cleaned += 1,
            Ok(Done::Unchanged) => counts.unchanged += 1,
            Ok(Done::FinishedMove) => counts.finished_moves += 1,
            Ok(Done::Failed) => counts.errors += 1,
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        }
    }
    bar.finish_and_clear();
    if counts.looked_at > 0 {
        info!(
            folder,
            looked_at = counts.looked_at,
            cleaned = counts.cleaned,
            unchanged = counts.unchanged,
            finished_moves = counts.finished_moves,
            "folder swept"
        );
    }
    Ok(counts)
}

/// What became of one message.
enum Done {
    Cleaned,
    Unchanged,
    FinishedMove,
    /// Could not be cleaned: left as it is (recorded so it is not tried forever, unless
    /// the policy says tempfail: then the next sweep tries again).
    Failed,
}

fn record(ctx: &mut Ctx, folder: &str, uidvalidity: u32, uid: u32) -> Result<(), String> {
    ctx.state.folder(folder, uidvalidity).mark(uid);
    save_state(&ctx.state_path, &ctx.state)
}

/// One message: fetched, through the pipeline, then replaced, left, or its earlier
/// move finished; its report and log line once that is done.
async fn one(
    ctx: &mut Ctx,
    session: &mut Imap,
    caps: Caps,
    folder: &str,
    uidvalidity: u32,
    uid: u32,
) -> Result<Done, String> {
    let Some(msg) = client::fetch(session, uid).await? else {
        record(ctx, folder, uidvalidity, uid)?;
        return Ok(Done::Unchanged);
    };
    let raw = Arc::new(msg.raw);
    let meta = MailMeta {
        frontend: "imap",
        queue_id: format!("{folder}/{uid}"),
        peer: ctx.opts.server.clone(),
    };
    let processed = ctx
        .pipeline
        .process(Arc::clone(&raw), ctx.envelope.clone(), meta)
        .await;
    let original = Original {
        uid,
        raw: &raw,
        flags: &msg.flags,
        internal_date: msg.internal_date.as_deref(),
    };
    let (done, result) = handle(
        ctx,
        session,
        caps,
        folder,
        uidvalidity,
        &original,
        &processed.cleaned,
    )
    .await?;
    let mut processed = processed;
    processed.delivered();
    processed.finish(Outcome::said(result));
    Ok(done)
}

/// A message as fetched.
struct Original<'a> {
    uid: u32,
    raw: &'a [u8],
    flags: &'a [String],
    internal_date: Option<&'a str>,
}

/// What to do with a cleaned message, done: the outcome and its words for the log.
async fn handle(
    ctx: &mut Ctx,
    session: &mut Imap,
    caps: Caps,
    folder: &str,
    uidvalidity: u32,
    msg: &Original<'_>,
    cleaned: &mailveil_core::Cleaned,
) -> Result<(Done, String), String> {
    let (uid, raw) = (msg.uid, msg.raw);
    if let Some(e) = &cleaned.report.error {
        if cleaned.tempfail {
            warn!(
                folder,
                uid, "could not be cleaned ({e}); left as it is, tried again next sweep"
            );
            return Ok((Done::Failed, "left (tempfail)".into()));
        }
        warn!(folder, uid, "could not be cleaned ({e}); left as it is");
        record(ctx, folder, uidvalidity, uid)?;
        return Ok((Done::Failed, "left".into()));
    }
    let changed = cleaned.report.changed
        && !plan::same_message(&cleaned.bytes, raw)
        && !plan::only_header_added(raw, &cleaned.bytes);
    let pending = ctx.state.folder(folder, uidvalidity).is_pending(uid);
    let mut candidates = Vec::new();
    if changed && pending {
        // Where an earlier run may have put the copy: same Message-ID, or (without
        // one) among the newest messages, which came after the original.
        let found = match plan::message_id(raw) {
            Some(mid) => {
                let query = format!("HEADER Message-ID {}", plan::quote(&mid));
                client::uid_search(session, &query).await?
            }
            None => {
                let mut newer = client::uid_search(session, &format!("UID {}:*", uid + 1)).await?;
                let keep_from = newer.len().saturating_sub(plan::MAX_CANDIDATES);
                newer.split_off(keep_from)
            }
        };
        for other in found {
            if other == uid || ctx.state.folder(folder, uidvalidity).is_done(other) {
                continue;
            }
            if candidates.len() == plan::MAX_CANDIDATES {
                break;
            }
            if let Some(f) = client::fetch(session, other).await? {
                candidates.push((other, f.raw));
            }
        }
    }
    match plan::decide(changed, pending, &cleaned.bytes, &candidates) {
        Decision::Skip => {
            record(ctx, folder, uidvalidity, uid)?;
            Ok((Done::Unchanged, "unchanged".into()))
        }
        Decision::FinishMove { copy_uid } => {
            info!(
                folder,
                uid, copy_uid, "cleaned copy already there: finishing the move"
            );
            record(ctx, folder, uidvalidity, copy_uid)?;
            client::remove_original(session, caps, uid, ctx.opts.keep_originals.as_deref()).await?;
            record(ctx, folder, uidvalidity, uid)?;
            Ok((
                Done::FinishedMove,
                format!("replaced by uid {copy_uid} (move finished)"),
            ))
        }
        Decision::Replace => {
            ctx.state.folder(folder, uidvalidity).mark_pending(uid);
            save_state(&ctx.state_path, &ctx.state)?;
            let flags = plan::append_flags(msg.flags);
            let new_uid =
                client::append(session, folder, &flags, msg.internal_date, &cleaned.bytes).await?;
            client::drain(session);
            ctx.appends += 1;
            if let Some(hook) = ctx.opts.after_append {
                hook(ctx.appends);
            }
            if let Some(new_uid) = new_uid {
                record(ctx, folder, uidvalidity, new_uid)?;
            }
            client::remove_original(session, caps, uid, ctx.opts.keep_originals.as_deref()).await?;
            record(ctx, folder, uidvalidity, uid)?;
            Ok((
                Done::Cleaned,
                match new_uid {
                    Some(n) => format!("replaced by uid {n}"),
                    None => "replaced".into(),
                },
            ))
        }
    }
}

/// Sweep, then IDLE on the first folder and sweep again whenever the server says
/// something changed (or every few minutes); reconnect with backoff on any error.
async fn watch(ctx: &mut Ctx) -> Result<(), String> {
    let mut backoff = Duration::from_secs(1);
    let mut first = true;
    loop {
        match watch_once(ctx, &mut first, &mut backoff).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                warn!("connection lost or failed: {e}; reconnecting in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

async fn watch_once(ctx: &mut Ctx, first: &mut bool, backoff: &mut Duration) -> Result<(), String> {
    let mut session = login(ctx).await?;
    sweep_all(ctx, &mut session, *first).await?;
    *first = false;
    *backoff = Duration::from_secs(1);
    let folder = ctx.opts.folders[0].clone();
    loop {
        session
            .select(&folder)
            .await
            .map_err(|e| format!("SELECT {folder}: {e}"))?;
        client::drain(&mut session);
        let mut idle = session.idle();
        idle.init().await.map_err(|e| format!("IDLE: {e}"))?;
        info!(folder, "idle: waiting for new mail");
        {
            // The stop source must live until the wait ends: dropping it interrupts.
            let (wait, stop) = idle.wait_with_timeout(Duration::from_secs(20 * 60));
            let r = wait.await.map_err(|e| format!("IDLE: {e}"))?;
            drop(stop);
            let _ = r;
        }
        session = idle.done().await.map_err(|e| format!("IDLE DONE: {e}"))?;
        client::drain(&mut session);
        sweep_all(ctx, &mut session, false).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::default_state_dir;
    use std::path::Path;

    fn env(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<std::ffi::OsString> {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| std::ffi::OsString::from(v))
        }
    }

    /// Under systemd (`StateDirectory=mailveil`, a system user without a home) the state
    /// goes where the unit lets it write; elsewhere under the user's state directory.
    #[test]
    fn the_state_follows_systemds_state_directory_then_the_users() {
        let systemd = env(&[
            ("STATE_DIRECTORY", "/var/lib/mailveil:/var/lib/other"),
            ("XDG_STATE_HOME", "/home/u/.state"),
            ("HOME", "/nonexistent"),
        ]);
        assert_eq!(default_state_dir(systemd), Path::new("/var/lib/mailveil"));
        let user = env(&[("STATE_DIRECTORY", "relative"), ("HOME", "/home/u")]);
        assert_eq!(
            default_state_dir(user),
            Path::new("/home/u/.local/state/mailveil")
        );
        let xdg = env(&[("XDG_STATE_HOME", "/home/u/.state"), ("HOME", "/home/u")]);
        assert_eq!(default_state_dir(xdg), Path::new("/home/u/.state/mailveil"));
        assert_eq!(default_state_dir(env(&[])), Path::new("./mailveil"));
    }
}
