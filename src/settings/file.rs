//! The configuration file (TOML), as written: one file for every subcommand. Every key
//! is optional and an unknown key is an error (a typo must not silently mean the
//! default). The flat keys are those `serve` has always read, now read by every
//! subcommand where they apply; keys that belong to one frontend only and that `serve`
//! never had live in a table named for that frontend (`[milter]`, `[imap]`), after the
//! flat keys, as TOML wants tables last.

use super::args::OnErrorSetting;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The file. Key names and meanings are those of `contrib/mailveil.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    // ---- serve's own (the SMTP/LMTP listener and its downstream)
    /// `IP:PORT` to listen on.
    pub listen: Option<String>,
    /// `smtp://IP:PORT`, `lmtp://IP:PORT` or `lmtp:unix:/path`.
    pub downstream: Option<String>,
    /// The name in the greeting, in EHLO replies and in our EHLO/LHLO downstream.
    pub hostname: Option<String>,
    /// Client networks allowed to connect (CIDR). Default: loopback only.
    pub allowed_networks: Option<Vec<String>>,
    /// Concurrent sessions; more get `421` and are closed (default 1000).
    pub max_sessions: Option<usize>,
    /// Mails received (DATA, BDAT) at once; more get `451` (default 100).
    pub max_transfers: Option<usize>,
    /// Longest command line, CRLF included (default 4096; at least 512, RFC 5321).
    pub max_line_bytes: Option<usize>,
    /// Seconds a whole command line may take to arrive, however slowly it trickles.
    pub command_timeout_secs: Option<u64>,
    /// Seconds to wait for each read of message data.
    pub data_timeout_secs: Option<u64>,
    /// Bytes per second message data must average after the first `data_timeout_secs`.
    pub min_data_rate: Option<u64>,
    /// Seconds to wait for the downstream to connect.
    pub downstream_connect_timeout_secs: Option<u64>,
    /// Seconds to wait for each downstream reply (also after the final dot).
    pub downstream_timeout_secs: Option<u64>,
    /// Idle downstream connections kept for the next client session (0: none).
    pub downstream_pool: Option<usize>,
    /// Seconds that sessions in flight get to finish after SIGTERM.
    pub shutdown_grace_secs: Option<u64>,
    /// Accept Postfix's XFORWARD attributes and pass them on (default true).
    pub xforward: Option<bool>,

    // ---- every frontend: the bounds of one mail
    /// Largest message: `serve` refuses larger ones (announced with SIZE); the others
    /// deliver them wrapped, unread (`error=too-large`).
    pub max_message_bytes: Option<usize>,
    /// Time budget for cleaning one message, in seconds (`--max-time`).
    pub max_clean_secs: Option<u64>,
    /// MIME nesting levels of one mail.
    pub max_depth: Option<usize>,
    /// MIME parts of one mail.
    pub max_parts: Option<usize>,
    /// Decoded size of one HTML part.
    pub max_part_bytes: Option<usize>,
    /// Memory lol_html may use for one HTML part.
    pub html_memory_bytes: Option<usize>,
    /// Findings listed per mail (the rest are counted).
    pub max_findings: Option<usize>,
    /// Redirect wrappers unwrapped inside one another.
    pub max_unwrap_depth: Option<usize>,

    // ---- every frontend: the rules and the policy
    /// Rule directories added on top of the shipped rules.
    pub rules: Option<Vec<PathBuf>>,
    /// Read `/etc/mailveil/rules.d` (default true).
    pub system_rules: Option<bool>,
    /// `keep`, `strip`, `proxy` or `prefetch`.
    pub remote_content: Option<String>,
    /// Signed mail: `keep` or `clean`.
    pub signed: Option<String>,
    /// Remove read-receipt requests.
    pub strip_read_receipts: Option<bool>,
    /// Keep aggregate campaign parameters (utm_*) in links.
    pub keep_campaign_params: Option<bool>,
    /// `pass` or `tempfail`.
    pub on_error: Option<OnErrorSetting>,
    /// Put a short note of what was removed at the top of cleaned HTML mails.
    pub banner: Option<bool>,
    /// How log lines are written: `logfmt` or `json`.
    pub log_format: Option<super::args::LogFormat>,

    // ---- every frontend: the HTTP listeners (proxy, dashboard)
    /// Seconds an HTTP client has to send a request head.
    pub http_header_timeout_secs: Option<u64>,
    /// Open HTTP connections per listener.
    pub http_max_connections: Option<usize>,
    /// Seconds an HTTP write may wait for the client to read.
    pub http_write_timeout_secs: Option<u64>,

    // ---- every frontend: the image proxy
    /// `IP:PORT` the image proxy listens on (the long-running modes start it).
    pub proxy_listen: Option<String>,
    /// The proxy's public base URL, as mail clients reach it.
    pub proxy_base: Option<String>,
    /// File holding the HMAC key of proxy URLs.
    pub proxy_key_file: Option<PathBuf>,
    /// Keys of earlier epochs whose URLs are still served (never sign).
    pub proxy_previous_key_files: Option<Vec<PathBuf>>,
    /// Networks the proxy may fetch from although they are not public (CIDR).
    pub proxy_allow_net: Option<Vec<String>>,
    /// The proxy's cache directory.
    pub proxy_cache_dir: Option<PathBuf>,
    /// The proxy cache's size cap in bytes.
    pub proxy_cache_max_bytes: Option<u64>,
    /// Days a cached resource is served.
    pub proxy_cache_days: Option<u64>,
    /// Milliseconds a mail may wait at delivery for its prefetch (default 2000).
    pub prefetch_deadline_ms: Option<u64>,
    /// URLs prefetched for one mail (default 100).
    pub prefetch_max_urls: Option<usize>,
    /// Prefetches in flight to one upstream host (default 6).
    pub prefetch_per_host: Option<usize>,
    /// Send opaque click trackers through the link shield.
    pub shield_links: Option<bool>,

    // ---- every frontend: reports and the dashboard
    /// The report store: a file path (SQLite) or `postgres://...`.
    pub report_db: Option<String>,
    /// Days of reports kept (default 90).
    pub retention_days: Option<u32>,
    /// Keep full URLs in the report store (`report_debug` is the same key).
    #[serde(alias = "report_debug")]
    pub debug: Option<bool>,
    /// `IP:PORT` for the dashboard and /metrics (the long-running modes serve it).
    pub dashboard_listen: Option<String>,
    /// A file holding the bearer token non-loopback dashboard clients must send.
    pub dashboard_token_file: Option<PathBuf>,
    /// Host names the dashboard answers to besides its listen address.
    pub dashboard_hostnames: Option<Vec<String>>,

    // ---- filter, serve, milter: authentication (docs/authentication.md)
    /// Verify DKIM and ARC before cleaning, record the verdict.
    pub authenticate: Option<bool>,
    /// The DNS server for key lookups, `IP:PORT`.
    pub dns_resolver: Option<String>,
    /// Seconds all key lookups of one mail may take together.
    pub dns_timeout: Option<u64>,
    /// The name in our Authentication-Results.
    pub auth_serv_id: Option<String>,
    /// The ARC key (PEM).
    pub arc_key: Option<PathBuf>,
    /// The selector the ARC key is published under.
    pub arc_selector: Option<String>,
    /// The domain the ARC key is published under.
    pub arc_domain: Option<String>,

    // ---- tables, last
    /// STARTTLS certificate and key of `serve` (PEM).
    pub tls: Option<TlsFiles>,
    /// The milter's own keys.
    pub milter: Option<MilterFile>,
    /// The IMAP sweep's own keys.
    pub imap: Option<ImapFile>,
}

/// Paths of the STARTTLS certificate chain and private key, PEM.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[milter]`: the keys of the milter's flags of the same names.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MilterFile {
    /// `inet:IP:PORT`, `inet:PORT@IP` or `unix:/path`.
    pub listen: Option<String>,
    /// Client networks that may connect over TCP (CIDR).
    pub allow: Option<Vec<String>>,
    /// Connections served at once.
    pub max_connections: Option<u32>,
    /// Memory for mail in flight, all connections together.
    pub max_inflight_bytes: Option<usize>,
    /// Disk for mails too large to clean in memory, all connections together.
    pub max_spool_bytes: Option<u64>,
    /// Seconds the MTA has to send the next command.
    pub idle_timeout_secs: Option<u64>,
    /// Seconds from the first byte of a frame to its last.
    pub frame_timeout_secs: Option<u64>,
}

/// `[imap]`: the keys of the IMAP sweep's flags of the same names.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImapFile {
    /// `imaps://HOST[:PORT]` or `imap://HOST[:PORT]`.
    pub server: Option<String>,
    /// The login name.
    pub user: Option<String>,
    /// A file holding the password (first line).
    pub password_file: Option<PathBuf>,
    /// Folders to clean (default INBOX).
    pub folders: Option<Vec<String>>,
    /// The state file.
    pub state: Option<PathBuf>,
    /// Move originals to this folder instead of deleting them.
    pub keep_originals: Option<String>,
    /// Only mail on or after this day (YYYY-MM-DD).
    pub since: Option<String>,
}

impl FileConfig {
    /// Reads and parses the file; `None` is an empty configuration.
    pub(crate) fn read(path: Option<&Path>) -> Result<FileConfig, String> {
        let Some(p) = path else {
            return Ok(FileConfig::default());
        };
        let text =
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
    }
}
