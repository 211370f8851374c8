//! The command line: the subcommands and their flags. `main.rs` parses [`Cli`] and hands
//! it to [`crate::app::run`]. The flags of the four subcommands that clean mail are in
//! [`crate::settings`] (they share most of them, and the configuration file).

use crate::settings::frontends::{FilterArgs, ImapArgs, MilterArgs, ServeArgs};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// `mailveil`: what the user asked for.
#[derive(Parser)]
#[command(
    name = "mailveil",
    version,
    about = "Removes what lets a sender watch the reader: tracking pixels, remote content, read receipts."
)]
pub struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Clean one mail: read it on stdin, write it on stdout (for sieve, procmail, maildrop).
    Filter(FilterArgs),
    /// Run the SMTP/LMTP content filter (Postfix content_filter, or in front of Dovecot LMTP).
    Serve(ServeArgs),
    /// Run the image proxy and link shield alone (the long-running modes start it
    /// themselves with --proxy-listen).
    Proxy(ProxyArgs),
    /// What was blocked, from whom, over time: totals, top senders and trackers, per day.
    Report(crate::report_cmd::ReportArgs),
    /// Serve the dashboard (/dashboard) and metrics (/metrics) over HTTP.
    Dashboard(crate::report_cmd::DashboardArgs),
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
        command: crate::auth::keys::Command,
    },
    /// Print the completion script for a shell on stdout (the package installs them).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (mailveil.1 and one per subcommand) into a directory; what
    /// the package build (contrib/deb/build.sh) runs.
    #[command(hide = true)]
    Man {
        /// The directory (created when missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `mailveil proxy`: the flags take the names the other subcommands give the proxy's
/// settings (`--proxy-base`...); the short ones of earlier versions stay as aliases. The
/// configuration file's `proxy_*`, `rules`, `system_rules` and `http_*` keys are read
/// too, so the proxy and the mail frontends that sign its URLs can share one file.
#[derive(Args)]
pub(crate) struct ProxyArgs {
    /// The configuration file (TOML); the flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration, the key, the cache directory and the rule files, then
    /// exit (1 on any error).
    #[arg(long)]
    pub check: bool,
    /// How log lines are written: logfmt (default) or json (key `log_format`).
    #[arg(long, value_enum, value_name = "logfmt|json")]
    pub log_format: Option<crate::settings::args::LogFormat>,
    /// Address to listen on, e.g. 127.0.0.1:8025.
    #[arg(long = "proxy-listen", alias = "listen", value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// The public base URL, as mail clients reach the proxy.
    #[arg(long = "proxy-base", alias = "base", value_name = "URL")]
    pub base: Option<String>,
    /// File holding the HMAC key (the same as the one that signs the mail's URLs).
    #[arg(long = "proxy-key-file", alias = "key-file", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// A key of an earlier epoch whose URLs are still served, during a grace period
    /// after a rotation (repeatable; never signs; added to the file's list).
    #[arg(
        long = "proxy-previous-key-file",
        alias = "previous-key-file",
        value_name = "FILE"
    )]
    pub previous_key_files: Vec<PathBuf>,
    /// A network that may be fetched from although it is not public (repeatable;
    /// replaces the file's list).
    #[arg(long = "proxy-allow-net", alias = "allow-net", value_name = "CIDR")]
    pub allow_net: Vec<String>,
    /// The cache directory (the one prefetch fills, where mail is cleaned with
    /// --remote-content prefetch).
    #[arg(long = "proxy-cache-dir", alias = "cache-dir", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// A directory of *.toml rule files added on top of the shipped rules (repeatable).
    #[arg(long = "rules", value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    /// Do not read the system rules directory (/etc/mailveil/rules.d).
    #[arg(long)]
    pub no_system_rules: bool,
    /// Seconds a client has to send a whole request head, slow clients are closed
    /// (default 10; key `http_header_timeout_secs`).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: Option<u64>,
    /// Open connections at most; past it new clients wait until one closes (default
    /// 1000; key `http_max_connections`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(usize))]
    pub max_connections: Option<usize>,
    /// Seconds a write may wait for the client to read, clients that never read are
    /// closed (default 30; key `http_write_timeout_secs`).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub write_timeout: Option<u64>,
}

#[derive(Subcommand)]
pub(crate) enum RulesCommand {
    /// Check rule files: every error with its file and line, and how many rules of each
    /// kind load. Exit 1 if any error.
    Check {
        /// Directories to check on top of the shipped rules (default: what `serve` would
        /// load: the shipped rules, /etc/mailveil/rules.d and the configuration's `rules`).
        dirs: Vec<PathBuf>,
        /// The configuration file whose `rules` and `system_rules` are honoured (when no
        /// directory is given).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Do not read the system rules directory (/etc/mailveil/rules.d).
        #[arg(long)]
        no_system_rules: bool,
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
    Import(crate::import::ImportArgs),
}
