//! The configuration of `mailveil serve`: a TOML file (unknown keys are errors) with a
//! few command-line flags on top. Validation happens here, before anything listens.

use ipnet::IpNet;
use mailveil_core::links::LinkPolicy;
use mailveil_core::{Limits, OnError, Policy, RemoteContent};
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Concurrent sessions by default. A session is a tokio task and two descriptors, so
/// idle ones are cheap; the cap is what keeps a flood of them from exhausting the file
/// descriptors, and it sits well above Postfix's default of 100 content-filter
/// processes so that idle or slow clients do not lock that traffic out.
pub const DEFAULT_MAX_SESSIONS: usize = 1000;

/// Where cleaned mail goes: the one server that receives everything this filter accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownstreamAddr {
    /// `smtp://HOST:PORT`: an SMTP server (Postfix's reinjection smtpd).
    Smtp(SocketAddr),
    /// `lmtp://HOST:PORT`: an LMTP server (Dovecot's LMTP), one reply per recipient.
    LmtpTcp(SocketAddr),
    /// `lmtp:unix:/path`: an LMTP server on a unix socket.
    LmtpUnix(PathBuf),
}

impl DownstreamAddr {
    /// LMTP answers once per recipient after the final dot.
    pub fn is_lmtp(&self) -> bool {
        !matches!(self, DownstreamAddr::Smtp(_))
    }
}

impl FromStr for DownstreamAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let addr = |rest: &str| {
            rest.trim_end_matches('/')
                .parse::<SocketAddr>()
                .map_err(|_| format!("downstream {s:?}: expected IP:PORT (numeric, no DNS)"))
        };
        if let Some(rest) = s.strip_prefix("smtp://") {
            Ok(DownstreamAddr::Smtp(addr(rest)?))
        } else if let Some(rest) = s.strip_prefix("lmtp://") {
            Ok(DownstreamAddr::LmtpTcp(addr(rest)?))
        } else if let Some(rest) = s.strip_prefix("lmtp:unix:") {
            if rest.is_empty() {
                return Err(format!("downstream {s:?}: empty socket path"));
            }
            Ok(DownstreamAddr::LmtpUnix(PathBuf::from(rest)))
        } else {
            Err(format!(
                "downstream {s:?}: expected smtp://IP:PORT, lmtp://IP:PORT or lmtp:unix:/path"
            ))
        }
    }
}

impl fmt::Display for DownstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownstreamAddr::Smtp(a) => write!(f, "smtp://{a}"),
            DownstreamAddr::LmtpTcp(a) => write!(f, "lmtp://{a}"),
            DownstreamAddr::LmtpUnix(p) => write!(f, "lmtp:unix:{}", p.display()),
        }
    }
}

/// The configuration file as written. Every key is optional; `listen` and `downstream`
/// must come from the file or the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `IP:PORT` to listen on.
    pub listen: Option<String>,
    /// `smtp://IP:PORT`, `lmtp://IP:PORT` or `lmtp:unix:/path`.
    pub downstream: Option<String>,
    /// The name in the greeting, in EHLO replies and in our EHLO/LHLO downstream.
    pub hostname: Option<String>,
    /// Client networks allowed to connect (CIDR). Default: loopback only.
    pub allowed_networks: Option<Vec<String>>,
    /// Largest message accepted, in bytes (announced with SIZE).
    pub max_message_bytes: Option<usize>,
    /// Concurrent sessions; more get `421` and are closed (default 1000).
    pub max_sessions: Option<usize>,
    /// Mails received (DATA, BDAT) at once; more get `451` (default 100). Bounds memory
    /// at about `max_transfers` x `max_message_bytes`.
    pub max_transfers: Option<usize>,
    /// Longest command line, CRLF included (default 4096; at least 512, RFC 5321).
    pub max_line_bytes: Option<usize>,
    /// Seconds a whole command line may take to arrive, however slowly it trickles.
    pub command_timeout_secs: Option<u64>,
    /// Seconds to wait for each read of message data.
    pub data_timeout_secs: Option<u64>,
    /// Bytes per second message data must average after the first `data_timeout_secs`
    /// (default 500, Postfix's `smtpd_min_data_rate`; 0: no floor).
    pub min_data_rate: Option<u64>,
    /// Seconds an HTTP client (proxy, dashboard) has to send a request head (default 10).
    pub http_header_timeout_secs: Option<u64>,
    /// Open HTTP connections per listener (proxy, dashboard; default 1000).
    pub http_max_connections: Option<usize>,
    /// Seconds an HTTP write may wait for the client to read (default 30).
    pub http_write_timeout_secs: Option<u64>,
    /// Seconds to wait for the downstream to connect.
    pub downstream_connect_timeout_secs: Option<u64>,
    /// Seconds to wait for each downstream reply (also after the final dot).
    pub downstream_timeout_secs: Option<u64>,
    /// Seconds that sessions in flight get to finish after SIGTERM.
    pub shutdown_grace_secs: Option<u64>,
    /// Accept Postfix's XFORWARD attributes and pass them to a downstream that announces
    /// XFORWARD (default true).
    pub xforward: Option<bool>,
    /// Rule directories added on top of the shipped rules.
    pub rules: Option<Vec<PathBuf>>,
    /// Read `/etc/mailveil/rules.d` (default true).
    pub system_rules: Option<bool>,
    /// `keep` or `strip`.
    pub remote_content: Option<String>,
    /// Signed mail: `keep` (byte for byte) or `clean` (the signed original attached);
    /// default `clean` unless remote content is kept.
    pub signed: Option<String>,
    /// Remove read-receipt requests.
    pub strip_read_receipts: Option<bool>,
    /// Keep aggregate campaign parameters (utm_*) in links; subscriber ids still go.
    pub keep_campaign_params: Option<bool>,
    /// `pass` (original + error header, the default) or `tempfail` (answer 451).
    pub on_error: Option<String>,
    /// Time budget for cleaning one message, in seconds.
    pub max_clean_secs: Option<u64>,
    /// MIME nesting levels of one mail (default 64); deeper: passed unchanged.
    pub max_depth: Option<usize>,
    /// MIME parts of one mail (default 5000); more: passed unchanged.
    pub max_parts: Option<usize>,
    /// Decoded size of one HTML part (default 32 MiB); larger: neutralised.
    pub max_part_bytes: Option<usize>,
    /// Memory lol_html may use for one HTML part (default 16 MiB); past it: neutralised.
    pub html_memory_bytes: Option<usize>,
    /// Findings listed per mail (default 2000); the rest are counted.
    pub max_findings: Option<usize>,
    /// Redirect wrappers unwrapped inside one another (default 5).
    pub max_unwrap_depth: Option<usize>,
    /// STARTTLS certificate and key (PEM).
    pub tls: Option<TlsFiles>,
    /// `IP:PORT` the image proxy listens on (starts it; needs the base and key file).
    pub proxy_listen: Option<String>,
    /// The proxy's public base URL, as mail clients reach it.
    pub proxy_base: Option<String>,
    /// File holding the HMAC key of proxy URLs.
    pub proxy_key_file: Option<PathBuf>,
    /// Keys of earlier epochs whose URLs are still served (a grace period after a
    /// rotation); they never sign.
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
    /// URLs prefetched for one mail (default 100); the rest load on open.
    pub prefetch_max_urls: Option<usize>,
    /// Prefetches in flight to one upstream host (default 6).
    pub prefetch_per_host: Option<usize>,
    /// Send opaque click trackers through the link shield.
    pub shield_links: Option<bool>,
    /// The report store: a file path (SQLite) or `postgres://...`. None: no reports.
    pub report_db: Option<String>,
    /// Days of reports kept (default 90); older ones are purged at start and daily.
    pub retention_days: Option<u32>,
    /// Keep full URLs (with their query strings, where tokens are) in the report store.
    pub debug: Option<bool>,
    /// Put a short note of what was removed at the top of cleaned HTML mails.
    pub banner: Option<bool>,
    /// `IP:PORT` for the dashboard and /metrics (HTTP). None: not served.
    pub dashboard_listen: Option<String>,
    /// A file holding the bearer token that non-loopback dashboard clients must send.
    pub dashboard_token_file: Option<PathBuf>,
    /// Host names the dashboard answers to besides its listen address (DNS rebinding).
    pub dashboard_hostnames: Option<Vec<String>>,
}

/// Paths of the STARTTLS certificate chain and private key, PEM.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Flags that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--downstream`
    pub downstream: Option<String>,
    /// `--rules` (added to the file's list)
    pub rules: Vec<PathBuf>,
    /// `--remote-content`
    pub remote_content: Option<RemoteContent>,
    /// `--allow` (replaces the file's list)
    pub allowed_networks: Vec<String>,
    /// `--no-system-rules`
    pub no_system_rules: bool,
    /// `--proxy-listen`
    pub proxy_listen: Option<String>,
    /// `--proxy-base`
    pub proxy_base: Option<String>,
    /// `--proxy-key-file`
    pub proxy_key_file: Option<PathBuf>,
    /// `--proxy-allow-net` (replaces the file's list)
    pub proxy_allow_net: Vec<String>,
    /// `--proxy-cache-dir`
    pub proxy_cache_dir: Option<PathBuf>,
    /// `--shield-links`
    pub shield_links: bool,
    /// `--report-db`
    pub report_db: Option<String>,
    /// `--retention-days`
    pub retention_days: Option<u32>,
    /// `--banner`
    pub banner: bool,
    /// `--dashboard-listen`
    pub dashboard_listen: Option<String>,
    /// `--token-file`
    pub dashboard_token_file: Option<PathBuf>,
}

/// The image proxy that `serve` starts, and how long delivery waits for a prefetch.
#[derive(Debug, Clone)]
pub struct ProxySetup {
    /// The proxy's settings.
    pub settings: crate::proxy::Settings,
    /// Per-mail prefetch deadline.
    pub prefetch_deadline: Duration,
}

/// Where reports go and how long they stay; where the dashboard listens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportSettings {
    /// The store location (file path or `postgres://...`); None: nothing is recorded.
    pub db: Option<String>,
    /// Days kept.
    pub retention_days: u32,
    /// Keep full URLs.
    pub debug: bool,
    /// The dashboard and /metrics listener.
    pub dashboard_listen: Option<SocketAddr>,
    /// The dashboard's bearer token file.
    pub dashboard_token_file: Option<PathBuf>,
    /// Host names the dashboard answers to besides its listen address.
    pub dashboard_hostnames: Vec<String>,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The only server mail is passed to.
    pub downstream: DownstreamAddr,
    /// Our name.
    pub hostname: String,
    /// Who may connect.
    pub allowed_networks: Vec<IpNet>,
    /// Largest message accepted.
    pub max_message_bytes: usize,
    /// Concurrent sessions.
    pub max_sessions: usize,
    /// Mails received at once.
    pub max_transfers: usize,
    /// Longest command line.
    pub max_line_bytes: usize,
    /// Time for a whole command line.
    pub command_timeout: Duration,
    /// Wait for each read of message data.
    pub data_timeout: Duration,
    /// Average bytes per second of message data (0: no floor).
    pub min_data_rate: u64,
    /// Bounds of the HTTP listeners (proxy, dashboard).
    pub http: crate::http::HttpLimits,
    /// Wait for the downstream to connect.
    pub downstream_connect_timeout: Duration,
    /// Wait for each downstream reply.
    pub downstream_timeout: Duration,
    /// Time sessions get to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Accept and pass on XFORWARD.
    pub xforward: bool,
    /// Extra rule directories.
    pub rules: Vec<PathBuf>,
    /// Read the system rules directory.
    pub system_rules: bool,
    /// The cleaning policy.
    pub policy: Policy,
    /// STARTTLS files, if STARTTLS is offered.
    pub tls: Option<TlsFiles>,
    /// The image proxy, if configured.
    pub proxy: Option<ProxySetup>,
    /// Reports and the dashboard.
    pub reports: ReportSettings,
}

/// The SMTP size limit (default 50 MB).
fn max_message_bytes_of(file: &FileConfig) -> usize {
    file.max_message_bytes.unwrap_or(50 << 20)
}

/// The core's bounds of one mail (docs/limits.md), from the file's keys.
fn core_limits(file: &FileConfig, max_message_bytes: usize) -> Result<Limits, String> {
    let d = Limits::default();
    let max_time = match file.max_clean_secs.unwrap_or(d.max_time.as_secs()) {
        0 => return Err("max_clean_secs must be at least 1".into()),
        n => Duration::from_secs(n),
    };
    Ok(Limits {
        // The server refuses larger mail before cleaning; the core never sees it.
        max_message_bytes: max_message_bytes.max(d.max_message_bytes),
        max_part_bytes: file.max_part_bytes.unwrap_or(d.max_part_bytes),
        max_depth: file.max_depth.unwrap_or(d.max_depth),
        max_parts: file.max_parts.unwrap_or(d.max_parts),
        html_memory_bytes: file.html_memory_bytes.unwrap_or(d.html_memory_bytes),
        max_time,
        max_findings: file.max_findings.unwrap_or(d.max_findings),
    })
}

/// The head deadline and connection cap of the HTTP listeners.
fn http_limits(file: &FileConfig) -> Result<crate::http::HttpLimits, String> {
    let default = crate::http::HttpLimits::default();
    let header_timeout = match file.http_header_timeout_secs {
        None => default.header_timeout,
        Some(0) => return Err("http_header_timeout_secs must be at least 1".into()),
        Some(n) => Duration::from_secs(n),
    };
    let max_connections = match file.http_max_connections {
        None => default.max_connections,
        Some(0) => return Err("http_max_connections must be at least 1".into()),
        Some(n) => n,
    };
    let write_timeout = match file.http_write_timeout_secs {
        None => default.write_timeout,
        Some(0) => return Err("http_write_timeout_secs must be at least 1".into()),
        Some(n) => Duration::from_secs(n),
    };
    Ok(crate::http::HttpLimits {
        header_timeout,
        max_connections,
        write_timeout,
    })
}

/// The proxy part of the configuration: all of listen, base and key file, or none.
fn proxy_setup(file: &FileConfig, o: &Overrides) -> Result<Option<ProxySetup>, String> {
    let listen = o.proxy_listen.clone().or(file.proxy_listen.clone());
    let base = o.proxy_base.clone().or(file.proxy_base.clone());
    let key_file = o.proxy_key_file.clone().or(file.proxy_key_file.clone());
    let (listen, base, key_file) = match (listen, base, key_file) {
        (None, None, None) => return Ok(None),
        (Some(l), Some(b), Some(k)) => (l, b, k),
        _ => {
            return Err(
                "the proxy needs all of --proxy-listen, --proxy-base and --proxy-key-file".into(),
            );
        }
    };
    let listen: SocketAddr = listen
        .parse()
        .map_err(|_| format!("proxy listen {listen:?}: expected IP:PORT"))?;
    crate::proxy::check_base(&base)?;
    let key = crate::proxy::read_key(&key_file)?;
    let mut settings = crate::proxy::Settings::new(listen, &base, key);
    for f in file.proxy_previous_key_files.iter().flatten() {
        settings.previous_keys.push(crate::proxy::read_key(f)?);
    }
    let d = crate::proxy::PrefetchLimits::default();
    settings.prefetch = crate::proxy::PrefetchLimits {
        max_urls: file.prefetch_max_urls.unwrap_or(d.max_urls),
        per_host: match file.prefetch_per_host.unwrap_or(d.per_host) {
            0 => return Err("prefetch_per_host must be at least 1".into()),
            n => n,
        },
    };
    let nets = if o.proxy_allow_net.is_empty() {
        file.proxy_allow_net.clone().unwrap_or_default()
    } else {
        o.proxy_allow_net.clone()
    };
    settings.allow = nets
        .iter()
        .map(|n| parse_net(n))
        .collect::<Result<Vec<_>, _>>()?;
    settings.cache_dir = o.proxy_cache_dir.clone().or(file.proxy_cache_dir.clone());
    if let Some(b) = file.proxy_cache_max_bytes {
        settings.cache_max_bytes = b;
    }
    if let Some(d) = file.proxy_cache_days {
        settings.cache_ttl = Duration::from_secs(d * 86400);
    }
    Ok(Some(ProxySetup {
        settings,
        prefetch_deadline: Duration::from_millis(file.prefetch_deadline_ms.unwrap_or(2000)),
    }))
}

impl Config {
    /// Reads the file (if any), applies the flags, validates.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, String> {
        let file = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| format!("{}: {e}", p.display()))?
            }
            None => FileConfig::default(),
        };
        Config::build(file, overrides)
    }

    /// Applies the flags to a parsed file and validates.
    pub fn build(file: FileConfig, o: &Overrides) -> Result<Config, String> {
        let http = http_limits(&file)?;
        let max_message_bytes = max_message_bytes_of(&file);
        let limits = core_limits(&file, max_message_bytes)?;
        let mut proxy = proxy_setup(&file, o)?;
        if let Some(p) = proxy.as_mut() {
            p.settings.http = http;
        }
        let listen = o
            .listen
            .clone()
            .or(file.listen)
            .ok_or("no listen address (--listen or `listen` in the config)")?;
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| format!("listen {listen:?}: expected IP:PORT"))?;
        let downstream: DownstreamAddr = o
            .downstream
            .clone()
            .or(file.downstream)
            .ok_or("no downstream (--downstream or `downstream` in the config)")?
            .parse()?;
        let nets = if o.allowed_networks.is_empty() {
            file.allowed_networks
                .unwrap_or_else(|| crate::allow_list::LOOPBACK.map(String::from).to_vec())
        } else {
            o.allowed_networks.clone()
        };
        let allowed_networks = nets
            .iter()
            .map(|n| parse_net(n))
            .collect::<Result<Vec<_>, _>>()?;
        let remote_content = match (o.remote_content, file.remote_content.as_deref()) {
            (Some(r), _) => r,
            (None, Some(s)) => s.parse()?,
            // With a proxy, MPP is the default.
            (None, None) if proxy.is_some() => RemoteContent::Prefetch,
            (None, None) => RemoteContent::Keep,
        };
        if remote_content.proxies() && proxy.is_none() {
            return Err("remote content proxy|prefetch needs --proxy-listen, --proxy-base and --proxy-key-file".into());
        }
        let signed = file
            .signed
            .as_deref()
            .map(str::parse::<mailveil_core::SignedContent>)
            .transpose()?;
        let shield_links = o.shield_links || file.shield_links.unwrap_or(false);
        let on_error = match file.on_error.as_deref() {
            None | Some("pass") => OnError::PassUnchanged,
            Some("tempfail") => OnError::Tempfail,
            Some(other) => return Err(format!("on_error {other:?}: expected pass or tempfail")),
        };
        let secs = |v: Option<u64>, default: u64, name: &str| match v.unwrap_or(default) {
            0 => Err(format!("{name} must be at least 1")),
            n => Ok(Duration::from_secs(n)),
        };
        let mut rules = file.rules.unwrap_or_default();
        rules.extend(o.rules.iter().cloned());
        let hostname = file.hostname.unwrap_or_else(|| "localhost".into());
        if hostname.is_empty() || hostname.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!("hostname {hostname:?} is not a host name"));
        }
        let max_sessions = file.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
        if max_sessions == 0 || max_message_bytes == 0 {
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
        let dashboard_listen = match o.dashboard_listen.clone().or(file.dashboard_listen) {
            Some(a) => Some(
                a.parse::<SocketAddr>()
                    .map_err(|_| format!("dashboard_listen {a:?}: expected IP:PORT"))?,
            ),
            None => None,
        };
        let reports = ReportSettings {
            db: o.report_db.clone().or(file.report_db),
            retention_days: o
                .retention_days
                .or(file.retention_days)
                .unwrap_or(crate::store::DEFAULT_RETENTION_DAYS),
            debug: file.debug.unwrap_or(false),
            dashboard_listen,
            dashboard_token_file: o.dashboard_token_file.clone().or(file.dashboard_token_file),
            dashboard_hostnames: file.dashboard_hostnames.unwrap_or_default(),
        };
        if reports.retention_days == 0 {
            return Err("retention_days must be at least 1".into());
        }
        Ok(Config {
            reports,
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
            http,
            downstream_connect_timeout: secs(
                file.downstream_connect_timeout_secs,
                30,
                "downstream_connect_timeout_secs",
            )?,
            downstream_timeout: secs(file.downstream_timeout_secs, 300, "downstream_timeout_secs")?,
            shutdown_grace: secs(file.shutdown_grace_secs, 60, "shutdown_grace_secs")?,
            xforward: file.xforward.unwrap_or(true),
            rules,
            system_rules: file.system_rules.unwrap_or(true) && !o.no_system_rules,
            policy: Policy {
                remote_content,
                banner: o.banner || file.banner.unwrap_or(false),
                strip_read_receipts: file.strip_read_receipts.unwrap_or(false),
                on_error,
                signed,
                links: mailveil_core::links::LinkPolicy {
                    keep_campaign_params: file.keep_campaign_params.unwrap_or(false),
                    max_unwrap_depth: file
                        .max_unwrap_depth
                        .unwrap_or(LinkPolicy::default().max_unwrap_depth),
                },
                limits,
                proxy: proxy.as_ref().map(|p| mailveil_core::ProxyConfig {
                    shield_links,
                    ..p.settings.proxy_config()
                }),
            },
            tls: file.tls,
            proxy,
        })
    }

    /// Whether a client address may connect.
    pub fn allows(&self, ip: IpAddr) -> bool {
        allowed(&self.allowed_networks, ip)
    }
}

pub use crate::allow_list::allowed;
use crate::allow_list::parse_net;

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(listen: &str, down: &str) -> Overrides {
        Overrides {
            listen: Some(listen.into()),
            downstream: Some(down.into()),
            ..Overrides::default()
        }
    }

    #[test]
    fn downstream_forms() {
        assert_eq!(
            "smtp://127.0.0.1:10026".parse::<DownstreamAddr>(),
            Ok(DownstreamAddr::Smtp("127.0.0.1:10026".parse().unwrap()))
        );
        assert_eq!(
            "lmtp:unix:/run/dovecot/lmtp".parse::<DownstreamAddr>(),
            Ok(DownstreamAddr::LmtpUnix("/run/dovecot/lmtp".into()))
        );
        assert!(
            "lmtp://[::1]:24"
                .parse::<DownstreamAddr>()
                .unwrap()
                .is_lmtp()
        );
        assert!(
            "smtp://mail.example.org:25"
                .parse::<DownstreamAddr>()
                .is_err()
        );
        assert!("http://127.0.0.1:1".parse::<DownstreamAddr>().is_err());
    }

    #[test]
    fn defaults_allow_loopback_only() {
        let c = Config::build(
            FileConfig::default(),
            &flags("127.0.0.1:10025", "smtp://127.0.0.1:10026"),
        )
        .unwrap();
        assert!(c.allows("127.0.0.1".parse().unwrap()));
        assert!(c.allows("::1".parse().unwrap()));
        assert!(c.allows("::ffff:127.0.0.5".parse().unwrap()));
        assert!(!c.allows("192.168.1.1".parse().unwrap()));
        assert!(!c.allows("10.0.0.1".parse().unwrap()));
        assert_eq!(c.policy.on_error, OnError::PassUnchanged);
    }

    #[test]
    fn file_keys_and_unknown_keys() {
        let f: FileConfig = toml::from_str(
            r#"
            listen = "127.0.0.1:10025"
            downstream = "lmtp://127.0.0.1:24"
            allowed_networks = ["127.0.0.2/32", "10.1.2.3"]
            on_error = "tempfail"
            remote_content = "strip"
            signed = "keep"
            [tls]
            cert = "/etc/ssl/c.pem"
            key = "/etc/ssl/k.pem"
            "#,
        )
        .unwrap();
        let c = Config::build(f, &Overrides::default()).unwrap();
        assert!(c.allows("10.1.2.3".parse().unwrap()));
        assert!(!c.allows("127.0.0.1".parse().unwrap()));
        assert_eq!(c.policy.on_error, OnError::Tempfail);
        assert_eq!(c.policy.remote_content, RemoteContent::Strip);
        assert_eq!(c.policy.signed, Some(mailveil_core::SignedContent::Keep));
        assert!(c.tls.is_some());
        assert!(toml::from_str::<FileConfig>("listne = \"x\"").is_err());
        assert!(
            Config::build(
                toml::from_str("on_error = \"drop\"").unwrap(),
                &flags("127.0.0.1:1", "smtp://127.0.0.1:2")
            )
            .is_err()
        );
    }

    #[test]
    fn limit_keys_reach_the_core_and_slow_client_keys_the_server() {
        let f: FileConfig = toml::from_str(
            r#"
            max_depth = 10
            max_parts = 20
            max_part_bytes = 1000
            html_memory_bytes = 2000
            max_findings = 30
            max_unwrap_depth = 2
            max_clean_secs = 3
            max_line_bytes = 1024
            min_data_rate = 100
            http_header_timeout_secs = 4
            http_max_connections = 50
            "#,
        )
        .unwrap();
        let c = Config::build(f, &flags("127.0.0.1:10025", "smtp://127.0.0.1:10026")).unwrap();
        let l = &c.policy.limits;
        assert_eq!(
            (
                l.max_depth,
                l.max_parts,
                l.max_part_bytes,
                l.html_memory_bytes
            ),
            (10, 20, 1000, 2000)
        );
        assert_eq!(l.max_findings, 30);
        assert_eq!(l.max_time, Duration::from_secs(3));
        assert_eq!(c.policy.links.max_unwrap_depth, 2);
        assert_eq!((c.max_line_bytes, c.min_data_rate), (1024, 100));
        assert_eq!(c.http.header_timeout, Duration::from_secs(4));
        assert_eq!(c.http.max_connections, 50);
        // The defaults: what docs/limits.md lists.
        let d = Config::build(
            FileConfig::default(),
            &flags("127.0.0.1:10025", "smtp://127.0.0.1:10026"),
        )
        .unwrap();
        assert_eq!(d.max_sessions, 1000);
        assert_eq!(d.max_transfers, 100);
        assert_eq!(d.max_line_bytes, 4096);
        assert_eq!(d.min_data_rate, 500);
        assert_eq!(d.policy.limits.max_parts, Limits::default().max_parts);
        assert_eq!(d.http, crate::http::HttpLimits::default());
        for bad in [
            "max_line_bytes = 100",
            "http_max_connections = 0",
            "http_header_timeout_secs = 0",
        ] {
            let f: FileConfig = toml::from_str(bad).unwrap();
            assert!(
                Config::build(f, &flags("127.0.0.1:1", "smtp://127.0.0.1:2")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn proxy_keys_mirror_the_flags_and_make_prefetch_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
        let f: FileConfig = toml::from_str(&format!(
            r#"
            proxy_listen = "127.0.0.1:8025"
            proxy_base = "https://mail.example.org/mv"
            proxy_key_file = "{}"
            proxy_allow_net = ["192.168.7.0/24"]
            prefetch_deadline_ms = 1500
            shield_links = true
            "#,
            key.display()
        ))
        .unwrap();
        let c = Config::build(f, &flags("127.0.0.1:10025", "smtp://127.0.0.1:10026")).unwrap();
        assert_eq!(c.policy.remote_content, RemoteContent::Prefetch);
        let p = c.policy.proxy.as_ref().unwrap();
        assert_eq!(p.base, "https://mail.example.org/mv");
        assert!(p.shield_links);
        assert_eq!(p.key, b"0123456789abcdef0123456789abcdef");
        let setup = c.proxy.unwrap();
        assert_eq!(setup.prefetch_deadline, Duration::from_millis(1500));
        assert_eq!(
            setup.settings.allow,
            vec!["192.168.7.0/24".parse::<IpNet>().unwrap()]
        );
        // Proxying without a proxy, or half a proxy configuration, is an error.
        let mut o = flags("127.0.0.1:10025", "smtp://127.0.0.1:10026");
        o.remote_content = Some(RemoteContent::Proxy);
        assert!(Config::build(FileConfig::default(), &o).is_err());
        o.proxy_listen = Some("127.0.0.1:8025".into());
        assert!(Config::build(FileConfig::default(), &o).is_err());
        // A short key is refused.
        std::fs::write(&key, "short").unwrap();
        o.proxy_base = Some("http://127.0.0.1:8025".into());
        o.proxy_key_file = Some(key);
        assert!(Config::build(FileConfig::default(), &o).is_err());
    }
}
