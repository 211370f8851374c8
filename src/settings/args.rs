//! The flags every subcommand that cleans mail shares (`filter`, `serve`, `milter`,
//! `imap`), as clap argument groups flattened into each: the low-level arguments that
//! [`super::Settings::load`] turns, with the configuration file under them, into the
//! settings the process runs with. A flag overrides the file's key of the same meaning.
//!
//! A switch the file can turn on (`banner = true`) can be turned off again for one run
//! with its `--no-` twin (`--no-banner`); of the two, the one given last wins.

use clap::Args;
use mailveil_core::{OnError, RemoteContent, SignedContent};
use serde::Deserialize;
use std::path::PathBuf;

/// What happens to a mail that cannot be read: one type for the flag and the key, so a
/// typo is a usage error everywhere (it once meant "pass" in `filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnErrorSetting {
    /// Deliver it wrapped: a note, the original attached, an error header.
    Pass,
    /// A temporary failure: the sender (or the delivery agent) retries.
    Tempfail,
}

impl From<OnErrorSetting> for OnError {
    fn from(s: OnErrorSetting) -> OnError {
        match s {
            OnErrorSetting::Pass => OnError::PassUnchanged,
            OnErrorSetting::Tempfail => OnError::Tempfail,
        }
    }
}

/// How log lines are written: one flag and one key for every long-running subcommand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `ts=... level=info target=... msg=mail queue_id=...`: one line per event, every
    /// value that needs it quoted.
    #[default]
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// A switch given as `--x` / `--no-x`: `None` when neither was given (the file decides).
pub(crate) fn switch(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// The flags of every subcommand that cleans mail.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Shared by filter, serve, milter and imap")]
pub(crate) struct CommonArgs {
    /// The configuration file (TOML; contrib/mailveil.toml lists every key); the flags
    /// override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check what the start would need, then exit (1 on any error): the configuration,
    /// every rule file (and how many rules of each kind load), the report store, the
    /// proxy's key and cache directory, the TLS files.
    #[arg(long)]
    pub check: bool,
    /// How log lines are written: logfmt (one `key=value` line per event) or json (one
    /// object per line, for log shippers). Default logfmt; key `log_format`.
    #[arg(long, value_enum, value_name = "logfmt|json")]
    pub log_format: Option<LogFormat>,
    /// A directory of *.toml rule files added on top of the shipped rules (repeatable).
    #[arg(long = "rules", value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    /// Do not read the system rules directory (/etc/mailveil/rules.d).
    #[arg(long)]
    pub no_system_rules: bool,
    /// What happens to remote content that is not a known tracker (default: prefetch
    /// when this process runs the proxy, keep otherwise).
    #[arg(long, value_name = "keep|strip|proxy|prefetch")]
    pub remote_content: Option<RemoteContent>,
    /// Signed mail (PGP/MIME, S/MIME): keep it byte for byte, or clean it and attach the
    /// signed original. Default: keep under --remote-content keep, clean otherwise.
    #[arg(long, value_name = "keep|clean")]
    pub signed: Option<SignedContent>,
    /// When a mail cannot be read: deliver it wrapped (the original attached to a note,
    /// an error header), or a temporary failure (default pass).
    #[arg(long, value_enum, value_name = "pass|tempfail")]
    pub on_error: Option<OnErrorSetting>,
    /// Remove read-receipt requests (Disposition-Notification-To, Return-Receipt-To).
    #[arg(long, overrides_with = "no_strip_read_receipts")]
    pub strip_read_receipts: bool,
    /// Keep read-receipt requests (when the configuration file removes them).
    #[arg(long, overrides_with = "strip_read_receipts")]
    pub no_strip_read_receipts: bool,
    /// Keep aggregate campaign parameters (utm_*) in links; subscriber ids still go.
    #[arg(long, overrides_with = "no_keep_campaign_params")]
    pub keep_campaign_params: bool,
    /// Remove campaign parameters too (when the configuration file keeps them).
    #[arg(long, overrides_with = "keep_campaign_params")]
    pub no_keep_campaign_params: bool,
    /// Put a short note of what was removed at the top of cleaned HTML mails.
    #[arg(long, overrides_with = "no_banner")]
    pub banner: bool,
    /// No banner (when the configuration file asks for one).
    #[arg(long, overrides_with = "banner")]
    pub no_banner: bool,
    /// Record every mail's report: an SQLite file path or postgres://...
    #[arg(long, value_name = "PATH|URL")]
    pub report_db: Option<String>,
    /// Days of reports kept in --report-db; older ones are purged (default 90).
    #[arg(long, value_name = "DAYS")]
    pub retention_days: Option<u32>,
    /// Keep full URLs (query strings included) in the report store.
    #[arg(long, overrides_with = "no_report_debug")]
    pub report_debug: bool,
    /// Cut URLs in the report store (when the configuration file keeps them whole).
    #[arg(long, overrides_with = "report_debug")]
    pub no_report_debug: bool,
    /// The image proxy's public base URL, as mail clients reach it (proxy URLs are
    /// signed for it; docs/proxy.md).
    #[arg(long, value_name = "URL")]
    pub proxy_base: Option<String>,
    /// File holding the HMAC key of proxy URLs (e.g. `openssl rand -hex 32`).
    #[arg(long, value_name = "FILE")]
    pub proxy_key_file: Option<PathBuf>,
    /// A network the proxy may fetch from although it is not public (repeatable;
    /// replaces the configuration's list).
    #[arg(long = "proxy-allow-net", value_name = "CIDR")]
    pub proxy_allow_net: Vec<String>,
    /// The proxy's cache directory (prefetch fills it; the proxy serves from it).
    #[arg(long, value_name = "DIR")]
    pub proxy_cache_dir: Option<PathBuf>,
    /// Send opaque click trackers through the proxy's link shield.
    #[arg(long, overrides_with = "no_shield_links")]
    pub shield_links: bool,
    /// Leave opaque click trackers as they are (when the configuration file shields them).
    #[arg(long, overrides_with = "shield_links")]
    pub no_shield_links: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The listeners a long-running mode starts beside its frontend (`serve`, `milter`,
/// `imap --watch`).
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Listeners (serve, milter, imap --watch)")]
pub(crate) struct ListenerArgs {
    /// Run the image proxy on this address (IP:PORT), in this process.
    #[arg(long, value_name = "IP:PORT")]
    pub proxy_listen: Option<String>,
    /// Serve the dashboard and /metrics on this address (HTTP).
    #[arg(long, value_name = "IP:PORT")]
    pub dashboard_listen: Option<String>,
    /// The bearer token non-loopback dashboard clients must send (first line of FILE).
    #[arg(long, alias = "dashboard-token-file", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// The authentication flags (`filter`, `serve`, `milter`): those of
/// [`crate::auth::Settings`], and a way to turn it off when the file turns it on.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Authentication (docs/authentication.md)")]
pub(crate) struct AuthArgs {
    #[command(flatten)]
    pub auth: crate::auth::Settings,
    /// No authentication (when the configuration file turns it on).
    #[arg(long, overrides_with = "authenticate")]
    pub no_authenticate: bool,
}

/// The bounds of one mail (docs/limits.md); each flag overrides the file's key.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Bounds of one mail (docs/limits.md)")]
pub(crate) struct LimitArgs {
    /// Time budget for one mail, in seconds (default 10; key `max_clean_secs`); past it
    /// the mail is delivered wrapped.
    #[arg(long, value_name = "SECS")]
    pub max_time: Option<u64>,
    /// Larger mails are not read: `serve` refuses them (552; default 50 MB), the other
    /// modes deliver them wrapped, `error=too-large` (default 128 MiB).
    #[arg(long, value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Deeper MIME nesting is an error (default 64).
    #[arg(long, value_name = "N")]
    pub max_depth: Option<usize>,
    /// More MIME parts than this is an error (default 5000).
    #[arg(long, value_name = "N")]
    pub max_parts: Option<usize>,
    /// A decoded HTML part larger than this is neutralised instead of rewritten
    /// (default 32 MiB).
    #[arg(long, value_name = "BYTES")]
    pub max_part_bytes: Option<usize>,
    /// Memory the HTML rewriter may use for one part; past it the part is neutralised
    /// (default 16 MiB).
    #[arg(long, value_name = "BYTES")]
    pub html_memory_bytes: Option<usize>,
    /// Findings listed in the report; the rest are counted (default 2000).
    #[arg(long, value_name = "N")]
    pub max_findings: Option<usize>,
    /// Redirect wrappers unwrapped inside one another; deeper links are kept (default 5).
    #[arg(long, value_name = "N")]
    pub max_unwrap_depth: Option<usize>,
}
