//! The flags of the four subcommands that clean mail, and the section each frontend
//! adds on top of [`super::Settings`]: what only its protocol needs (the SMTP listener
//! and downstream, the milter socket and budgets, the IMAP account).

use super::args::{AuthArgs, CommonArgs, ListenerArgs};
use super::file::FileConfig;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `mailveil filter`.
#[derive(Args, Debug, Clone)]
pub(crate) struct FilterArgs {
    /// The recipient's address (repeatable): URLs carrying it, plain, encoded or hashed,
    /// are trackers.
    #[arg(long = "recipient", value_name = "ADDR")]
    pub recipients: Vec<String>,
    /// Write every finding as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `mailveil serve`.
#[derive(Args, Debug, Clone)]
pub(crate) struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:10025.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// Where cleaned mail goes: smtp://IP:PORT, lmtp://IP:PORT or lmtp:unix:/path.
    #[arg(long, value_name = "URL")]
    pub downstream: Option<String>,
    /// A client network allowed to connect (repeatable; replaces the config's list).
    #[arg(long = "allow", value_name = "CIDR")]
    pub allow: Vec<String>,
    /// Idle downstream connections kept open for the next client session (default 10;
    /// 0: a new connection for every session).
    #[arg(long, value_name = "N")]
    pub downstream_pool: Option<usize>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub listeners: ListenerArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `mailveil milter`.
#[derive(Args, Debug, Clone)]
pub(crate) struct MilterArgs {
    /// Where to listen: inet:127.0.0.1:8891 (or inet:8891@127.0.0.1) or unix:/path
    /// (default inet:127.0.0.1:8891).
    #[arg(long, value_name = "SOCKET")]
    pub listen: Option<crate::milter::Listen>,
    /// A client network allowed to connect over TCP (repeatable; default: loopback only).
    #[arg(long = "allow", value_name = "CIDR")]
    pub allow: Vec<String>,
    /// Connections served at once (default 256); past it a new one is closed at once
    /// (the MTA applies its milter_default_action).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Memory for mail in flight, all connections together (default 192 MiB); a mail
    /// takes about 3 times its size. A mail that does not fit now gets a temporary
    /// failure; one that could never fit is handled as too large.
    #[arg(long, value_name = "BYTES")]
    pub max_inflight_bytes: Option<usize>,
    /// Disk for mails too large to clean in memory, all connections together (default
    /// 1 GiB): such a mail is spooled to a private file as it arrives and goes on wrapped
    /// (the original attached to a note). Past it a mail gets a temporary failure.
    #[arg(long, value_name = "BYTES")]
    pub max_spool_bytes: Option<u64>,
    /// Seconds the MTA has to send the next command (default 300).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: Option<u64>,
    /// Seconds from the first byte of a frame to its last, and for the MTA to take each
    /// reply frame (default 30).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub frame_timeout: Option<u64>,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub listeners: ListenerArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
}

/// `mailveil imap`.
#[derive(Args, Debug, Clone)]
pub(crate) struct ImapArgs {
    /// The server: imaps://HOST[:PORT] (TLS), or imap://HOST[:PORT] (plain, loopback tests).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The login name.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// A file holding the password (first line). The password never appears in logs.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// A folder to clean (repeatable; default INBOX).
    #[arg(long = "folder", value_name = "NAME")]
    pub folders: Vec<String>,
    /// After the sweep, stay connected (IDLE) and clean new mail as it arrives.
    #[arg(long)]
    pub watch: bool,
    /// Only mail whose internal date is on or after this day (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Move originals to this folder instead of deleting them.
    #[arg(long, value_name = "FOLDER")]
    pub keep_originals: Option<String>,
    /// The state file (UIDs already handled, per folder and UIDVALIDITY).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub listeners: ListenerArgs,
}

/// Idle downstream connections `serve` keeps by default: as many as the content-filter
/// concurrency the README suggests, so a busy queue's next session finds one.
const DEFAULT_DOWNSTREAM_POOL: usize = 10;

/// Seconds of a key that must be at least 1.
fn secs(v: Option<u64>, default: u64, name: &str) -> Result<Duration, String> {
    match v.unwrap_or(default) {
        0 => Err(format!("{name} must be at least 1")),
        n => Ok(Duration::from_secs(n)),
    }
}

/// `serve`'s own section: the listener, its clients, the downstream, the SMTP bounds.
pub(crate) fn serve(
    file: &FileConfig,
    args: &ServeArgs,
    max_message_bytes: usize,
) -> Result<crate::smtp::ServeConfig, String> {
    let listen = args
        .listen
        .clone()
        .or(file.listen.clone())
        .ok_or("no listen address (--listen or `listen` in the config)")?;
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| format!("listen {listen:?}: expected IP:PORT"))?;
    let downstream: crate::smtp::DownstreamAddr = args
        .downstream
        .clone()
        .or(file.downstream.clone())
        .ok_or("no downstream (--downstream or `downstream` in the config)")?
        .parse()?;
    // An empty list in the file lets nobody in; no list at all means loopback.
    let nets = if args.allow.is_empty() {
        file.allowed_networks
            .clone()
            .unwrap_or_else(|| crate::allow_list::LOOPBACK.map(String::from).to_vec())
    } else {
        args.allow.clone()
    };
    let allowed_networks = nets
        .iter()
        .map(|n| crate::allow_list::parse_net(n))
        .collect::<Result<Vec<_>, _>>()?;
    let hostname = file.hostname.clone().unwrap_or_else(|| "localhost".into());
    if hostname.is_empty() || hostname.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("hostname {hostname:?} is not a host name"));
    }
    let max_sessions = file
        .max_sessions
        .unwrap_or(crate::smtp::DEFAULT_MAX_SESSIONS);
    if max_sessions == 0 {
        return Err("max_sessions and max_message_bytes must be at least 1".into());
    }
    let max_transfers = file.max_transfers.unwrap_or(100);
    if max_transfers == 0 {
        return Err("max_transfers must be at least 1".into());
    }
    let max_line_bytes = file.max_line_bytes.unwrap_or(4096);
    if max_line_bytes < 512 {
        return Err("max_line_bytes must be at least 512 (RFC 5321)".into());
    }
    Ok(crate::smtp::ServeConfig {
        listen,
        downstream,
        hostname,
        allowed_networks,
        max_message_bytes,
        max_sessions,
        max_transfers,
        max_line_bytes,
        command_timeout: secs(file.command_timeout_secs, 300, "command_timeout_secs")?,
        data_timeout: secs(file.data_timeout_secs, 180, "data_timeout_secs")?,
        min_data_rate: file.min_data_rate.unwrap_or(500),
        downstream_connect_timeout: secs(
            file.downstream_connect_timeout_secs,
            30,
            "downstream_connect_timeout_secs",
        )?,
        downstream_timeout: secs(file.downstream_timeout_secs, 300, "downstream_timeout_secs")?,
        downstream_pool: args
            .downstream_pool
            .or(file.downstream_pool)
            .unwrap_or(DEFAULT_DOWNSTREAM_POOL),
        shutdown_grace: secs(file.shutdown_grace_secs, 60, "shutdown_grace_secs")?,
        xforward: file.xforward.unwrap_or(true),
        tls: file.tls.clone(),
    })
}

/// The milter's own section: its socket, clients, budgets and timeouts.
pub(crate) fn milter(
    file: &FileConfig,
    args: &MilterArgs,
) -> Result<crate::milter::Options, String> {
    let f = file.milter.clone().unwrap_or_default();
    let listen = match (&args.listen, &f.listen) {
        (Some(l), _) => l.clone(),
        (None, Some(l)) => l.parse()?,
        (None, None) => crate::milter::Listen::Inet(SocketAddr::from(([127, 0, 0, 1], 8891))),
    };
    let nets = if args.allow.is_empty() {
        f.allow.clone().unwrap_or_default()
    } else {
        args.allow.clone()
    };
    let allow = crate::allow_list::parse_or_loopback(&nets).map_err(|e| format!("--allow {e}"))?;
    let max_connections = args.max_connections.or(f.max_connections).unwrap_or(256);
    if max_connections == 0 {
        return Err("max_connections must be at least 1".into());
    }
    Ok(crate::milter::Options {
        listen,
        max_frame: crate::milter::codec::DEFAULT_MAX_FRAME,
        idle_timeout: secs(
            args.idle_timeout.or(f.idle_timeout_secs),
            300,
            "idle_timeout_secs",
        )?,
        frame_timeout: secs(
            args.frame_timeout.or(f.frame_timeout_secs),
            30,
            "frame_timeout_secs",
        )?,
        max_connections: max_connections as usize,
        max_inflight_bytes: args
            .max_inflight_bytes
            .or(f.max_inflight_bytes)
            .unwrap_or(192 << 20),
        allow,
        max_spool_bytes: args
            .max_spool_bytes
            .or(f.max_spool_bytes)
            .unwrap_or(1 << 30),
    })
}

/// The IMAP sweep's own section: the account, the folders, the state.
pub(crate) fn imap(file: &FileConfig, args: &ImapArgs) -> Result<crate::imap::Options, String> {
    let f = file.imap.clone().unwrap_or_default();
    let server = args
        .server
        .clone()
        .or(f.server)
        .ok_or("no server (--server or `server` in [imap])")?;
    let user = args
        .user
        .clone()
        .or(f.user)
        .ok_or("no user (--user or `user` in [imap])")?;
    let password_file = args
        .password_file
        .clone()
        .or(f.password_file)
        .ok_or("no password file (--password-file or `password_file` in [imap])")?;
    let folders = if !args.folders.is_empty() {
        args.folders.clone()
    } else {
        f.folders
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| vec!["INBOX".to_string()])
    };
    Ok(crate::imap::Options {
        server,
        user,
        password_file,
        folders,
        watch: args.watch,
        since: args.since.clone().or(f.since),
        keep_originals: args.keep_originals.clone().or(f.keep_originals),
        state: args.state.clone().or(f.state),
        progress: !args.quiet,
        after_append: None,
    })
}
