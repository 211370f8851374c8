//! The `mailveil` command: parses flags and hands the work to the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use mailveil::printable::printable;
use mailveil::{
    Envelope, OnError, Policy, RemoteContent, SignedContent, TooLarge, clean, rule_files,
};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod import;
mod limit_args;
mod report_cmd;

use limit_args::LimitArgs;

/// sysexits.h EX_TEMPFAIL: the MDA (sieve, procmail, maildrop) keeps the mail and retries.
const EX_TEMPFAIL: u8 = 75;

#[derive(Parser)]
#[command(
    name = "mailveil",
    version,
    about = "Removes what lets a sender watch the reader: tracking pixels, remote content, read receipts."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Clean one mail: read it on stdin, write it on stdout (for sieve, procmail, maildrop).
    Filter(FilterArgs),
    /// Run the SMTP/LMTP content filter (Postfix content_filter, or in front of Dovecot LMTP).
    Serve(ServeArgs),
    /// Run the image proxy and link shield alone (`serve` starts it itself with --proxy-listen).
    Proxy(ProxyArgs),
    /// What was blocked, from whom, over time: totals, top senders and trackers, per day.
    Report(report_cmd::ReportArgs),
    /// Serve the dashboard (/dashboard) and metrics (/metrics) over HTTP.
    Dashboard(report_cmd::DashboardArgs),
    /// Run as a milter (Postfix smtpd_milters, Sendmail INPUT_MAIL_FILTER).
    Milter(MilterArgs),
    /// Clean the mail already in an IMAP mailbox (once, or watching with IDLE).
    Imap(ImapArgs),
    /// Work with rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// ARC signing keys: make one, print its DNS record (docs/authentication.md).
    ArcKey {
        #[command(subcommand)]
        command: mailveil::auth::keys::Command,
    },
}

#[derive(Args)]
struct FilterArgs {
    /// The recipient's address (repeatable): URLs carrying it, plain, encoded or hashed, are trackers.
    #[arg(long = "recipient", value_name = "ADDR")]
    recipients: Vec<String>,
    /// A directory of *.toml rule files added on top of the shipped rules (repeatable).
    #[arg(long = "rules", value_name = "DIR")]
    rules: Vec<PathBuf>,
    /// What happens to remote content that is not a known tracker.
    #[arg(long, value_name = "keep|strip", default_value = "keep")]
    remote_content: RemoteContent,
    /// Signed mail (PGP/MIME, S/MIME): keep it byte for byte, or clean it and attach the
    /// signed original. Default: clean under --remote-content strip, keep under keep.
    #[arg(long, value_name = "keep|clean")]
    signed: Option<SignedContent>,
    /// Write every finding as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report_json: Option<PathBuf>,
    /// Remove read-receipt requests (Disposition-Notification-To, Return-Receipt-To).
    #[arg(long)]
    strip_read_receipts: bool,
    /// When a mail cannot be read: deliver it as an attachment (with an error header) or exit 75.
    #[arg(long, value_name = "pass|tempfail", default_value = "pass")]
    on_error: String,
    /// Keep aggregate campaign parameters (utm_*) in links; subscriber ids still go.
    #[arg(long)]
    keep_campaign_params: bool,
    #[command(flatten)]
    limits: LimitArgs,
    /// Do not read the system rules directory (/etc/mailveil/rules.d).
    #[arg(long)]
    no_system_rules: bool,
    /// Record this mail's report: an SQLite file path or postgres://...
    #[arg(long, value_name = "PATH|URL")]
    report_db: Option<String>,
    /// Days of reports kept in --report-db (older ones are purged).
    #[arg(long, value_name = "DAYS", default_value_t = mailveil::store::DEFAULT_RETENTION_DAYS)]
    retention_days: u32,
    /// Keep full URLs (query strings included) in the report store.
    #[arg(long)]
    report_debug: bool,
    /// Put a short note of what was removed at the top of cleaned HTML mails.
    #[arg(long)]
    banner: bool,
    #[command(flatten)]
    auth: mailveil::auth::Settings,
}

#[derive(Args)]
struct ServeArgs {
    /// The configuration file (TOML); the flags below override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:10025.
    #[arg(long, value_name = "IP:PORT")]
    listen: Option<String>,
    /// Where cleaned mail goes: smtp://IP:PORT, lmtp://IP:PORT or lmtp:unix:/path.
    #[arg(long, value_name = "URL")]
    downstream: Option<String>,
    /// A directory of *.toml rule files added on top of the shipped rules (repeatable).
    #[arg(long = "rules", value_name = "DIR")]
    rules: Vec<PathBuf>,
    /// What happens to remote content that is not a known tracker (default: prefetch
    /// when a proxy is configured, keep otherwise).
    #[arg(long, value_name = "keep|strip|proxy|prefetch")]
    remote_content: Option<RemoteContent>,
    /// Start the image proxy on this address.
    #[arg(long, value_name = "IP:PORT")]
    proxy_listen: Option<String>,
    /// The proxy's public base URL, as mail clients reach it.
    #[arg(long, value_name = "URL")]
    proxy_base: Option<String>,
    /// File holding the HMAC key of proxy URLs (e.g. `openssl rand -hex 32`).
    #[arg(long, value_name = "FILE")]
    proxy_key_file: Option<PathBuf>,
    /// A network the proxy may fetch from although it is not public (repeatable).
    #[arg(long = "proxy-allow-net", value_name = "CIDR")]
    proxy_allow_net: Vec<String>,
    /// The proxy's cache directory.
    #[arg(long, value_name = "DIR")]
    proxy_cache_dir: Option<PathBuf>,
    /// Send opaque click trackers through the proxy's link shield.
    #[arg(long)]
    shield_links: bool,
    /// A client network allowed to connect (repeatable; replaces the config's list).
    #[arg(long = "allow", value_name = "CIDR")]
    allow: Vec<String>,
    /// Do not read the system rules directory (/etc/mailveil/rules.d).
    #[arg(long)]
    no_system_rules: bool,
    /// Check the configuration, rules and TLS files, then exit (1 on any error).
    #[arg(long)]
    check: bool,
    /// Record every mail's report: an SQLite file path or postgres://...
    #[arg(long, value_name = "PATH|URL")]
    report_db: Option<String>,
    /// Days of reports kept (purged at start and daily; default 90).
    #[arg(long, value_name = "DAYS")]
    retention_days: Option<u32>,
    /// Put a short note of what was removed at the top of cleaned HTML mails.
    #[arg(long)]
    banner: bool,
    /// Serve the dashboard and /metrics on this address (HTTP).
    #[arg(long, value_name = "IP:PORT")]
    dashboard_listen: Option<String>,
    /// The bearer token non-loopback dashboard clients must send (first line of FILE).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Args)]
struct MilterArgs {
    /// Where to listen: inet:127.0.0.1:8891 (or inet:8891@127.0.0.1) or unix:/path.
    #[arg(long, value_name = "SOCKET", default_value = "inet:127.0.0.1:8891")]
    listen: mailveil::milter::Listen,
    /// A directory of *.toml rule files added on top of the shipped rules (repeatable).
    #[arg(long = "rules", value_name = "DIR")]
    rules: Vec<PathBuf>,
    /// What happens to remote content that is not a known tracker.
    #[arg(long, value_name = "keep|strip", default_value = "keep")]
    remote_content: RemoteContent,
    /// When a mail cannot be cleaned: pass it on unchanged (with an error header) or tempfail.
    #[arg(long, value_name = "pass|tempfail", default_value = "pass")]
    on_error: OnErrorArg,
    /// Remove read-receipt requests (Disposition-Notification-To, Return-Receipt-To).
    #[arg(long)]
    strip_read_receipts: bool,
    /// Keep aggregate campaign parameters (utm_*) in links; subscriber ids still go.
    #[arg(long)]
    keep_campaign_params: bool,
    #[command(flatten)]
    limits: LimitArgs,
    /// Do not read the system rules directory (/etc/mailveil/rules.d).
    #[arg(long)]
    no_system_rules: bool,
    /// A client network allowed to connect over TCP (repeatable; default: loopback only).
    #[arg(long = "allow", value_name = "CIDR")]
    allow: Vec<String>,
    /// Connections served at once; past it a new one is closed at once (the MTA applies
    /// its milter_default_action).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Memory for mail in flight, all connections together; a mail takes about 3 times
    /// its size. A mail that does not fit now gets a temporary failure; one that could
    /// never fit is handled as too large.
    #[arg(long, value_name = "BYTES", default_value_t = 192 << 20)]
    max_inflight_bytes: usize,
    /// Disk for mails too large to clean in memory, all connections together: such a
    /// mail is spooled to a private file as it arrives and goes on wrapped (the original
    /// attached to a note). Past it a mail gets a temporary failure.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    max_spool_bytes: u64,
    /// Seconds the MTA has to send the next command.
    #[arg(long, value_name = "SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
    /// Seconds from the first byte of a frame to its last (and for the MTA to take each
    /// reply frame).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    frame_timeout: u64,
}

#[derive(Args)]
struct ImapArgs {
    /// The server: imaps://HOST[:PORT] (TLS), or imap://HOST[:PORT] (plain, loopback tests).
    #[arg(long, value_name = "URL")]
    server: String,
    /// The login name.
    #[arg(long, value_name = "USER")]
    user: String,
    /// A file holding the password (first line). The password never appears in logs.
    #[arg(long, value_name = "FILE")]
    password_file: PathBuf,
    /// A folder to clean (repeatable; default INBOX).
    #[arg(long = "folder", value_name = "NAME")]
    folders: Vec<String>,
    /// After the sweep, stay connected (IDLE) and clean new mail as it arrives.
    #[arg(long)]
    watch: bool,
    /// Only mail whose internal date is on or after this day (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Move originals to this folder instead of deleting them.
    #[arg(long, value_name = "FOLDER")]
    keep_originals: Option<String>,
    /// The state file (UIDs already handled, per folder and UIDVALIDITY).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// A directory of *.toml rule files added on top of the shipped rules (repeatable).
    #[arg(long = "rules", value_name = "DIR")]
    rules: Vec<PathBuf>,
    /// What happens to remote content that is not a known tracker.
    #[arg(long, value_name = "keep|strip", default_value = "keep")]
    remote_content: RemoteContent,
    /// Remove read-receipt requests.
    #[arg(long)]
    strip_read_receipts: bool,
    /// Do not read the system rules directory (/etc/mailveil/rules.d).
    #[arg(long)]
    no_system_rules: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Args)]
struct ProxyArgs {
    /// Address to listen on, e.g. 127.0.0.1:8025.
    #[arg(long, value_name = "IP:PORT")]
    listen: std::net::SocketAddr,
    /// The public base URL, as mail clients reach the proxy.
    #[arg(long, value_name = "URL")]
    base: String,
    /// File holding the HMAC key (the same as the filter's).
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
    /// A key of an earlier epoch whose URLs are still served, during a grace period
    /// after a rotation (repeatable; never signs).
    #[arg(long = "previous-key-file", value_name = "FILE")]
    previous_key_files: Vec<PathBuf>,
    /// A network that may be fetched from although it is not public (repeatable).
    #[arg(long = "allow-net", value_name = "CIDR")]
    allow_net: Vec<ipnet::IpNet>,
    /// The cache directory.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// A directory of *.toml rule files added on top of the shipped rules (repeatable).
    #[arg(long = "rules", value_name = "DIR")]
    rules: Vec<PathBuf>,
    /// Do not read the system rules directory (/etc/mailveil/rules.d).
    #[arg(long)]
    no_system_rules: bool,
    /// Seconds a client has to send a whole request head (slow clients are closed).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Open connections at most; past it new clients wait until one closes.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(usize))]
    max_connections: usize,
    /// Seconds a write may wait for the client to read (clients that never read are closed).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnErrorArg {
    Pass,
    Tempfail,
}

impl From<OnErrorArg> for OnError {
    fn from(a: OnErrorArg) -> OnError {
        match a {
            OnErrorArg::Pass => OnError::PassUnchanged,
            OnErrorArg::Tempfail => OnError::Tempfail,
        }
    }
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILVEIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

/// A long-running mode's end: 0 when it stopped cleanly, 1 (with the reason) otherwise.
fn exit_code(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailveil: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The milter: exit 0 after SIGTERM, 1 when it cannot listen.
fn milter(args: MilterArgs) -> ExitCode {
    init_logs();
    let policy = Policy {
        banner: false,
        remote_content: args.remote_content,
        strip_read_receipts: args.strip_read_receipts,
        on_error: args.on_error.into(),
        links: args.limits.links(args.keep_campaign_params),
        limits: args.limits.limits(),
        proxy: None,
        signed: None,
    };
    let allow = match mailveil::allow_list::parse_or_loopback(&args.allow) {
        Ok(nets) => nets,
        Err(e) => {
            eprintln!("mailveil: --allow {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = mailveil::milter::Options {
        listen: args.listen,
        rules: args.rules,
        system_rules: !args.no_system_rules,
        policy,
        max_frame: mailveil::milter::codec::DEFAULT_MAX_FRAME,
        idle_timeout: Duration::from_secs(args.idle_timeout),
        frame_timeout: Duration::from_secs(args.frame_timeout),
        max_connections: args.max_connections as usize,
        max_inflight_bytes: args.max_inflight_bytes,
        allow,
        max_spool_bytes: args.max_spool_bytes,
    };
    exit_code(mailveil::milter::run(opts))
}

/// The IMAP sweep: exit 0 when every message was handled, 1 on an error.
fn imap(args: ImapArgs) -> ExitCode {
    init_logs();
    let policy = Policy {
        banner: false,
        remote_content: args.remote_content,
        strip_read_receipts: args.strip_read_receipts,
        links: args.limits.links(false),
        limits: args.limits.limits(),
        ..Policy::default()
    };
    let opts = mailveil::imap::Options {
        server: args.server,
        user: args.user,
        password_file: args.password_file,
        folders: if args.folders.is_empty() {
            vec!["INBOX".to_string()]
        } else {
            args.folders
        },
        watch: args.watch,
        since: args.since,
        keep_originals: args.keep_originals,
        state: args.state,
        rules: args.rules,
        system_rules: !args.no_system_rules,
        policy,
        progress: !args.quiet,
    };
    exit_code(mailveil::imap::run(opts))
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Check rule files: every error with its file and line. Exit 1 if any.
    Check {
        /// Directories to check (default: the shipped rules only).
        dirs: Vec<PathBuf>,
    },
    /// What mailveil would do with a link or image URL, and which rule decided it.
    Explain {
        /// The URL.
        url: String,
        /// The recipient's address (repeatable), for recipient-token detection.
        #[arg(long = "recipient", value_name = "ADDR")]
        recipients: Vec<String>,
        /// Extra rule directories.
        #[arg(long = "rules", value_name = "DIR")]
        rules: Vec<PathBuf>,
        /// Keep aggregate campaign parameters (utm_*).
        #[arg(long)]
        keep_campaign_params: bool,
    },
    /// How many trackers, pixel patterns, redirect formats and parameters are loaded.
    Stats {
        /// Extra rule directories.
        #[arg(long = "rules", value_name = "DIR")]
        rules: Vec<PathBuf>,
    },
    /// Convert a ClearURLs or $removeparam list into one rule file (stdout or --out).
    Import(import::ImportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Filter(args) => filter(args),
        Command::Serve(args) => serve(args),
        Command::Proxy(args) => proxy(args),
        Command::Report(args) => report_cmd::report(args),
        Command::Dashboard(args) => report_cmd::dashboard(args),
        Command::Milter(args) => milter(args),
        Command::Imap(args) => imap(args),
        Command::ArcKey { command } => match mailveil::auth::keys::run(command) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mailveil: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Rules { command } => match rules_command(command) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("mailveil: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Pipe mode. Exit 0 whenever a mail was written; 75 only when none could be.
fn filter(args: FilterArgs) -> ExitCode {
    // At most one byte past the limit is read before cleaning: a larger mail is not read
    // but wrapped as it streams (see `filter_too_large`), so the filter holds at most
    // --max-message-bytes of it, whatever its size.
    let max = args.limits.max_message_bytes;
    let mut stdin = std::io::stdin().lock();
    let mut raw = Vec::new();
    if let Err(e) = (&mut stdin)
        .take((max as u64).saturating_add(1))
        .read_to_end(&mut raw)
    {
        eprintln!("mailveil: cannot read the mail from stdin: {e}");
        return ExitCode::from(EX_TEMPFAIL);
    }
    let oversized = raw.len() > max;
    let (rules, errors) = rule_files::load(&args.rules, !args.no_system_rules);
    for e in &errors {
        eprintln!("mailveil: rule file skipped: {}", printable(&e.to_string()));
    }
    let policy = Policy {
        banner: args.banner,
        remote_content: args.remote_content,
        strip_read_receipts: args.strip_read_receipts,
        on_error: if args.on_error == "tempfail" {
            OnError::Tempfail
        } else {
            OnError::PassUnchanged
        },
        links: args.limits.links(args.keep_campaign_params),
        limits: args.limits.limits(),
        proxy: None,
        signed: args.signed,
    };
    let envelope = Envelope {
        sender: None,
        recipients: args.recipients,
    };
    let started = std::time::Instant::now();
    let mut out = std::io::stdout().lock();
    let report = if oversized {
        let t = TooLarge::new(&raw, &envelope, &policy, &rules);
        let report = t.report().clone();
        if t.tempfail() {
            eprintln!(
                "mailveil: the mail is larger than --max-message-bytes ({max}): not read \
                 (temporary failure)"
            );
            return ExitCode::from(EX_TEMPFAIL);
        }
        match filter_too_large(t, &raw, &mut stdin, &mut out) {
            Ok(total) => eprintln!(
                "mailveil: the mail is larger than --max-message-bytes ({max}): not read, \
                 {total} bytes streamed {}",
                if report.error.is_some() {
                    "into the attachment of a note (error=too-large)"
                } else {
                    "through"
                }
            ),
            Err(e) => {
                eprintln!("mailveil: cannot stream the mail from stdin to stdout: {e}");
                return ExitCode::from(EX_TEMPFAIL);
            }
        }
        report
    } else {
        // Authentication (off by default): verify, clean, record the verdict, seal.
        let cleaned = match mailveil::auth::around_filter(&args.auth, &raw, |raw| {
            clean(raw, &envelope, &policy, &rules)
        }) {
            Ok(cleaned) => cleaned,
            Err(e) => {
                eprintln!("mailveil: authentication: {e}");
                return ExitCode::from(EX_TEMPFAIL);
            }
        };
        if let Some(err) = &cleaned.report.error {
            eprintln!(
                "mailveil: mail could not be read ({}): delivered as an attachment",
                printable(err)
            );
            if cleaned.tempfail {
                return ExitCode::from(EX_TEMPFAIL);
            }
        }
        if let Err(e) = out.write_all(&cleaned.bytes).and_then(|()| out.flush()) {
            eprintln!("mailveil: cannot write the mail to stdout: {e}");
            return ExitCode::from(EX_TEMPFAIL);
        }
        cleaned.report
    };
    let elapsed = started.elapsed();
    if let Some(path) = &args.report_json {
        let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json) {
            eprintln!(
                "mailveil: cannot write the report to {}: {e}",
                path.display()
            );
        }
    }
    if let Some(location) = &args.report_db {
        // After the mail is written: a store failure is reported and changes nothing.
        let record = mailveil::store::MailRecord::from_report(
            &report,
            &envelope,
            &raw,
            mailveil::store::now(),
            elapsed.as_millis() as i64,
            args.report_debug,
        );
        if let Err(e) =
            report_cmd::record_one(location, &record, args.report_debug, args.retention_days)
        {
            eprintln!("mailveil: report not recorded: {e}");
        }
    }
    ExitCode::SUCCESS
}

/// Bytes of the mail encoded and written at a time.
const STREAM_CHUNK: usize = 64 * 1024;

/// Writes a mail too large to hold: the head, then `start` (what was read of the mail)
/// and the rest of stdin through the wrapper's encoder, a chunk at a time, so that
/// memory stays at what was read plus a chunk or two. Returns the bytes of the mail.
fn filter_too_large(
    mut t: TooLarge,
    start: &[u8],
    stdin: &mut impl Read,
    out: &mut impl Write,
) -> std::io::Result<u64> {
    let mut buf = Vec::with_capacity(2 * STREAM_CHUNK);
    out.write_all(t.head())?;
    for chunk in start[t.resume_at().min(start.len())..].chunks(STREAM_CHUNK) {
        buf.clear();
        t.feed(chunk, &mut buf);
        out.write_all(&buf)?;
    }
    let mut total = start.len() as u64;
    let mut input = vec![0u8; STREAM_CHUNK];
    loop {
        let n = match stdin.read(&mut input) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        buf.clear();
        t.feed(&input[..n], &mut buf);
        out.write_all(&buf)?;
    }
    buf.clear();
    t.finish(&mut buf);
    out.write_all(&buf)?;
    out.flush()?;
    Ok(total)
}

/// The SMTP frontend: exit 0 after a graceful shutdown, 1 on a configuration error.
fn serve(args: ServeArgs) -> ExitCode {
    let overrides = mailveil::smtp::config::Overrides {
        listen: args.listen,
        downstream: args.downstream,
        rules: args.rules,
        remote_content: args.remote_content,
        allowed_networks: args.allow,
        no_system_rules: args.no_system_rules,
        proxy_listen: args.proxy_listen,
        proxy_base: args.proxy_base,
        proxy_key_file: args.proxy_key_file,
        proxy_allow_net: args.proxy_allow_net,
        proxy_cache_dir: args.proxy_cache_dir,
        shield_links: args.shield_links,
        report_db: args.report_db,
        retention_days: args.retention_days,
        banner: args.banner,
        dashboard_listen: args.dashboard_listen,
        dashboard_token_file: args.token_file,
    };
    let config = match mailveil::smtp::config::Config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailveil: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.check {
        return match mailveil::smtp::check(&config) {
            Ok(rule_errors) if rule_errors.is_empty() => {
                println!("ok: listen {} -> {}", config.listen, config.downstream);
                ExitCode::SUCCESS
            }
            Ok(rule_errors) => {
                for e in rule_errors {
                    println!("{e}");
                }
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("mailveil: {e}");
                ExitCode::FAILURE
            }
        };
    }
    init_logs();
    exit_code(mailveil::smtp::run(config))
}

/// `mailveil proxy`: the image proxy and link shield alone.
fn proxy(args: ProxyArgs) -> ExitCode {
    init_logs();
    let keys = std::iter::once(&args.key_file)
        .chain(&args.previous_key_files)
        .map(|f| mailveil::proxy::read_key(f))
        .collect::<Result<Vec<_>, _>>();
    let mut keys = match keys {
        Ok(k) => k,
        Err(e) => {
            eprintln!("mailveil: {e}");
            return ExitCode::FAILURE;
        }
    };
    let key = keys.remove(0);
    let mut settings = mailveil::proxy::Settings::new(args.listen, &args.base, key);
    settings.previous_keys = keys;
    settings.allow = args.allow_net;
    settings.cache_dir = args.cache_dir;
    settings.http = mailveil::http::HttpLimits {
        header_timeout: std::time::Duration::from_secs(args.header_timeout),
        max_connections: args.max_connections.max(1),
        write_timeout: std::time::Duration::from_secs(args.write_timeout),
    };
    let (rules, errors) = rule_files::load(&args.rules, !args.no_system_rules);
    for e in &errors {
        eprintln!("mailveil: rule file skipped: {e}");
    }
    match mailveil::proxy::run(settings, rules) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailveil: {e}");
            ExitCode::FAILURE
        }
    }
}

fn rules_command(command: RulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        RulesCommand::Check { dirs } => {
            let (_, errors) = rule_files::load(&dirs, false);
            for e in &errors {
                println!("{e}");
            }
            if errors.is_empty() {
                println!("ok");
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::FAILURE)
            }
        }
        RulesCommand::Explain {
            url,
            recipients,
            rules,
            keep_campaign_params,
        } => {
            let (loaded, errors) = rule_files::load(&rules, true);
            for e in &errors {
                eprintln!("mailveil: rule file skipped: {e}");
            }
            let policy = mailveil::links::LinkPolicy {
                keep_campaign_params,
                ..Default::default()
            };
            print!(
                "{}",
                mailveil::explain::explain(&url, &recipients, &loaded, &policy)
            );
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Stats { rules } => {
            let (loaded, errors) = rule_files::load(&rules, true);
            for e in &errors {
                eprintln!("mailveil: rule file skipped: {e}");
            }
            let mut out = std::io::stdout().lock();
            write!(out, "{}", mailveil::explain::stats(&loaded)).context("writing stats")?;
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Import(args) => import::run(&args),
    }
}
