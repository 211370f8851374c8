//! The settings of every subcommand that cleans mail, built in one place: the
//! configuration file ([`file`]) under the flags ([`args`]), validated before anything
//! listens or reads a mail. [`Settings::load`] builds what every frontend shares: the
//! [`Policy`] (with its [`Limits`], link policy, proxy, banner, signed-mail and error
//! policy), the rule directories, the report store, the proxy, the dashboard and
//! authentication. Each frontend adds its own section on top ([`frontends`]).
//!
//! Where the subcommands differ, they differ in [`Mode`], and only there.

pub(crate) mod args;
pub(crate) mod file;
pub(crate) mod frontends;

use crate::http::HttpLimits;
use args::{AuthArgs, CommonArgs, ListenerArgs, switch};
use file::FileConfig;
use mailveil_core::links::LinkPolicy;
use mailveil_core::{Limits, OnError, Policy, RemoteContent, SignedContent};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Which subcommand runs: what decides the few defaults and permissions that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `mailveil filter`: one mail, stdin to stdout.
    Filter,
    /// `mailveil serve`: the SMTP/LMTP content filter.
    Serve,
    /// `mailveil milter`.
    Milter,
    /// `mailveil imap`, once (`watch: false`) or watching.
    Imap {
        /// `--watch`: it keeps running.
        watch: bool,
    },
}

/// The core's default size bound (128 MiB).
const CORE_MAX_MESSAGE_BYTES: usize = 128 << 20;
/// `serve`'s SMTP size limit by default (announced with SIZE).
const SERVE_MAX_MESSAGE_BYTES: usize = 50 << 20;

impl Mode {
    /// The name in logs and errors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Filter => "filter",
            Mode::Serve => "serve",
            Mode::Milter => "milter",
            Mode::Imap { .. } => "imap",
        }
    }

    /// Whether the process keeps running, and so may run the proxy and the dashboard
    /// beside its frontend (a `filter` or a single sweep ends with its mail).
    pub(crate) fn long_running(self) -> bool {
        !matches!(self, Mode::Filter | Mode::Imap { watch: false })
    }

    /// Whether it authenticates mail (docs/authentication.md): those that receive mail
    /// on its way in. The IMAP sweep reads mail a provider already took in, long after
    /// the keys it was signed with may have changed: it does not.
    pub(crate) fn authenticates(self) -> bool {
        !matches!(self, Mode::Imap { .. })
    }

    /// The size limit when none is configured: `serve` announces 50 MB with SIZE and
    /// refuses larger mail; the others take what comes and wrap what is larger than
    /// the core's bound.
    fn default_max_message_bytes(self) -> usize {
        match self {
            Mode::Serve => SERVE_MAX_MESSAGE_BYTES,
            _ => CORE_MAX_MESSAGE_BYTES,
        }
    }

    /// The core's bound for a configured limit: `serve` refuses larger mail before it
    /// is cleaned, so the core never sees it and keeps at least its own default; for
    /// the others the limit is the core's (past it, a mail is wrapped unread).
    fn core_max_message_bytes(self, configured: usize) -> usize {
        match self {
            Mode::Serve => configured.max(CORE_MAX_MESSAGE_BYTES),
            _ => configured,
        }
    }

    /// Remote content when none is chosen: prefetch (MPP) when this process runs the
    /// proxy, so what it proxies it also serves; keep otherwise.
    fn default_remote_content(self, proxy: Option<&ProxySetup>) -> RemoteContent {
        match proxy {
            Some(p) if p.listen.is_some() => RemoteContent::Prefetch,
            _ => RemoteContent::Keep,
        }
    }
}

/// The image proxy: what signs its URLs, what prefetch fills, and (long-running modes)
/// where it listens.
#[derive(Debug, Clone)]
pub(crate) struct ProxySetup {
    /// Where this process runs the proxy; `None`: URLs are signed for a separately
    /// running `mailveil proxy` (and prefetch fills the cache that one serves from).
    pub listen: Option<SocketAddr>,
    /// The proxy's settings (its `listen` is meaningful only with `listen` above).
    pub settings: crate::proxy::Settings,
    /// Per-mail prefetch deadline.
    pub prefetch_deadline: Duration,
}

/// Where reports go and how long they stay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReportSettings {
    /// The store location (file path or `postgres://...`); None: nothing is recorded.
    pub db: Option<String>,
    /// Days kept.
    pub retention_days: u32,
    /// Keep full URLs.
    pub debug: bool,
}

/// The dashboard and /metrics listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DashboardSettings {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The bearer token file.
    pub token_file: Option<PathBuf>,
    /// Host names it answers to besides its listen address.
    pub hostnames: Vec<String>,
}

/// What every frontend shares, validated.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The subcommand.
    pub mode: Mode,
    /// The cleaning policy.
    pub policy: Policy,
    /// The configured size limit (`serve`'s SMTP limit; the core's for the others).
    pub max_message_bytes: usize,
    /// Extra rule directories.
    pub rules: Vec<PathBuf>,
    /// Read the system rules directory.
    pub system_rules: bool,
    /// The report store.
    pub reports: ReportSettings,
    /// The image proxy, when configured.
    pub proxy: Option<ProxySetup>,
    /// The dashboard, when this process serves it.
    pub dashboard: Option<DashboardSettings>,
    /// Authentication (off unless `authenticate`).
    pub auth: crate::auth::Settings,
    /// Bounds of the HTTP listeners (proxy, dashboard).
    pub http: HttpLimits,
    /// How log lines are written.
    pub log_format: args::LogFormat,
}

impl Settings {
    /// Reads the file named by `--config` (if any), lays the flags over it and
    /// validates. Returns the file too: the frontend's own section is read from it.
    pub(crate) fn load(
        mode: Mode,
        common: &CommonArgs,
        listeners: Option<&ListenerArgs>,
        auth: Option<&AuthArgs>,
    ) -> Result<(Settings, FileConfig), String> {
        let file = FileConfig::read(common.config.as_deref())?;
        let settings = Settings::build(mode, &file, common, listeners, auth)?;
        Ok((settings, file))
    }

    /// Lays the flags over a parsed file and validates.
    pub(crate) fn build(
        mode: Mode,
        file: &FileConfig,
        common: &CommonArgs,
        listeners: Option<&ListenerArgs>,
        auth: Option<&AuthArgs>,
    ) -> Result<Settings, String> {
        let no_listeners = ListenerArgs::default();
        let listeners = listeners.unwrap_or(&no_listeners);
        if !mode.long_running() {
            // A flag that cannot be honoured is an error; the same keys in a file that
            // a daemon shares are that daemon's, and left to it.
            if listeners.proxy_listen.is_some() || listeners.dashboard_listen.is_some() {
                return Err(format!(
                    "{} ends with its mail: --proxy-listen and --dashboard-listen need a \
                     long-running mode (serve, milter, imap --watch)",
                    mode.name()
                ));
            }
        }
        let http = http_limits(file)?;
        let max_message_bytes = common
            .limits
            .max_message_bytes
            .or(file.max_message_bytes)
            .unwrap_or(mode.default_max_message_bytes());
        if max_message_bytes == 0 {
            return Err("max_message_bytes must be at least 1".into());
        }
        let limits = core_limits(mode, file, common, max_message_bytes)?;
        let proxy = proxy_setup(mode, file, common, listeners, http)?;
        let remote_content = match (common.remote_content, file.remote_content.as_deref()) {
            (Some(r), _) => r,
            (None, Some(s)) => s.parse()?,
            (None, None) => mode.default_remote_content(proxy.as_ref()),
        };
        if remote_content.proxies() && proxy.is_none() {
            return Err(format!(
                "remote content {} needs the proxy: --proxy-base and --proxy-key-file \
                 (and --proxy-listen to run it in this process)",
                if remote_content == RemoteContent::Proxy {
                    "proxy"
                } else {
                    "prefetch"
                }
            ));
        }
        let signed = match (common.signed, file.signed.as_deref()) {
            (Some(s), _) => Some(s),
            (None, Some(s)) => Some(s.parse::<SignedContent>()?),
            (None, None) => None,
        };
        let on_error: OnError = common
            .on_error
            .or(file.on_error)
            .map_or(OnError::PassUnchanged, OnError::from);
        let flag_or_key = |flag: Option<bool>, key: Option<bool>| flag.or(key).unwrap_or(false);
        let shield_links = flag_or_key(
            switch(common.shield_links, common.no_shield_links),
            file.shield_links,
        );
        let mut rules = file.rules.clone().unwrap_or_default();
        rules.extend(common.rules.iter().cloned());
        let reports = ReportSettings {
            db: common.report_db.clone().or(file.report_db.clone()),
            retention_days: common
                .retention_days
                .or(file.retention_days)
                .unwrap_or(crate::store::DEFAULT_RETENTION_DAYS),
            debug: flag_or_key(
                switch(common.report_debug, common.no_report_debug),
                file.debug,
            ),
        };
        if reports.retention_days == 0 {
            return Err("retention_days must be at least 1".into());
        }
        let dashboard = dashboard(mode, file, listeners)?;
        let auth = auth_settings(mode, file, auth);
        Ok(Settings {
            mode,
            policy: Policy {
                remote_content,
                banner: flag_or_key(switch(common.banner, common.no_banner), file.banner),
                strip_read_receipts: flag_or_key(
                    switch(common.strip_read_receipts, common.no_strip_read_receipts),
                    file.strip_read_receipts,
                ),
                on_error,
                signed,
                links: LinkPolicy {
                    keep_campaign_params: flag_or_key(
                        switch(common.keep_campaign_params, common.no_keep_campaign_params),
                        file.keep_campaign_params,
                    ),
                    max_unwrap_depth: common
                        .limits
                        .max_unwrap_depth
                        .or(file.max_unwrap_depth)
                        .unwrap_or(LinkPolicy::default().max_unwrap_depth),
                },
                limits,
                proxy: proxy.as_ref().map(|p| mailveil_core::ProxyConfig {
                    shield_links,
                    ..p.settings.proxy_config()
                }),
            },
            max_message_bytes,
            rules,
            system_rules: file.system_rules.unwrap_or(true) && !common.no_system_rules,
            reports,
            proxy,
            dashboard,
            auth,
            http,
            log_format: common.log_format.or(file.log_format).unwrap_or_default(),
        })
    }
}

/// The core's bounds of one mail (docs/limits.md): flag, else key, else the default.
fn core_limits(
    mode: Mode,
    file: &FileConfig,
    common: &CommonArgs,
    max_message_bytes: usize,
) -> Result<Limits, String> {
    let d = Limits::default();
    let flags = &common.limits;
    let max_time = match (flags.max_time, file.max_clean_secs) {
        // `--max-time 0` is allowed (every mail out of time: how a failure is tried)
        (Some(secs), _) => Duration::from_secs(secs),
        (None, Some(0)) => return Err("max_clean_secs must be at least 1".into()),
        (None, Some(secs)) => Duration::from_secs(secs),
        (None, None) => d.max_time,
    };
    Ok(Limits {
        max_message_bytes: mode.core_max_message_bytes(max_message_bytes),
        max_part_bytes: flags
            .max_part_bytes
            .or(file.max_part_bytes)
            .unwrap_or(d.max_part_bytes),
        max_depth: flags.max_depth.or(file.max_depth).unwrap_or(d.max_depth),
        max_parts: flags.max_parts.or(file.max_parts).unwrap_or(d.max_parts),
        html_memory_bytes: flags
            .html_memory_bytes
            .or(file.html_memory_bytes)
            .unwrap_or(d.html_memory_bytes),
        max_time,
        max_findings: flags
            .max_findings
            .or(file.max_findings)
            .unwrap_or(d.max_findings),
    })
}

/// The head deadline and connection cap of the HTTP listeners.
fn http_limits(file: &FileConfig) -> Result<HttpLimits, String> {
    let default = HttpLimits::default();
    let at_least_one = |v: Option<u64>, name: &str| match v {
        Some(0) => Err(format!("{name} must be at least 1")),
        v => Ok(v),
    };
    Ok(HttpLimits {
        header_timeout: at_least_one(file.http_header_timeout_secs, "http_header_timeout_secs")?
            .map_or(default.header_timeout, Duration::from_secs),
        max_connections: match file.http_max_connections {
            Some(0) => return Err("http_max_connections must be at least 1".into()),
            v => v.unwrap_or(default.max_connections),
        },
        write_timeout: at_least_one(file.http_write_timeout_secs, "http_write_timeout_secs")?
            .map_or(default.write_timeout, Duration::from_secs),
    })
}

/// The proxy part: base and key file together, or neither; the listen address only with
/// them, and only where the process keeps running (a `filter` or a single sweep signs
/// URLs for a separately running `mailveil proxy`; the `proxy_listen` key of a file it
/// shares with a daemon is that daemon's).
fn proxy_setup(
    mode: Mode,
    file: &FileConfig,
    common: &CommonArgs,
    listeners: &ListenerArgs,
    http: HttpLimits,
) -> Result<Option<ProxySetup>, String> {
    let listen = match (&listeners.proxy_listen, &file.proxy_listen) {
        (Some(l), _) => Some(l.clone()),
        (None, Some(l)) if mode.long_running() => Some(l.clone()),
        _ => None,
    };
    let base = common.proxy_base.clone().or(file.proxy_base.clone());
    let key_file = common
        .proxy_key_file
        .clone()
        .or(file.proxy_key_file.clone());
    let (base, key_file) = match (base, key_file) {
        (None, None) if listen.is_none() => return Ok(None),
        (Some(b), Some(k)) => (b, k),
        _ => {
            return Err(if listen.is_some() {
                "the proxy needs all of --proxy-listen, --proxy-base and --proxy-key-file".into()
            } else {
                "the proxy needs both --proxy-base and --proxy-key-file".into()
            });
        }
    };
    let listen = listen
        .map(|l| {
            l.parse::<SocketAddr>()
                .map_err(|_| format!("proxy listen {l:?}: expected IP:PORT"))
        })
        .transpose()?;
    crate::proxy::check_base(&base)?;
    let key = crate::proxy::read_key(&key_file)?;
    let unbound = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut settings = crate::proxy::Settings::new(listen.unwrap_or(unbound), &base, key);
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
    let nets = if common.proxy_allow_net.is_empty() {
        file.proxy_allow_net.clone().unwrap_or_default()
    } else {
        common.proxy_allow_net.clone()
    };
    settings.allow = nets
        .iter()
        .map(|n| crate::allow_list::parse_net(n))
        .collect::<Result<Vec<_>, _>>()?;
    settings.cache_dir = common
        .proxy_cache_dir
        .clone()
        .or(file.proxy_cache_dir.clone());
    if let Some(b) = file.proxy_cache_max_bytes {
        settings.cache_max_bytes = b;
    }
    if let Some(d) = file.proxy_cache_days {
        settings.cache_ttl = Duration::from_secs(d * 86400);
    }
    settings.http = http;
    Ok(Some(ProxySetup {
        listen,
        settings,
        prefetch_deadline: Duration::from_millis(file.prefetch_deadline_ms.unwrap_or(2000)),
    }))
}

/// `mailveil proxy`: the proxy's settings and the rules it judges with, from the same
/// keys the mail frontends read, the flags over them.
pub(crate) fn proxy_alone(
    args: &crate::cli::ProxyArgs,
) -> Result<(crate::proxy::Settings, Vec<PathBuf>, bool, args::LogFormat), String> {
    let file = FileConfig::read(args.config.as_deref())?;
    let common = CommonArgs {
        proxy_base: args.base.clone(),
        proxy_key_file: args.key_file.clone(),
        proxy_allow_net: args.allow_net.clone(),
        proxy_cache_dir: args.cache_dir.clone(),
        ..CommonArgs::default()
    };
    let listeners = ListenerArgs {
        proxy_listen: args.listen.clone(),
        ..ListenerArgs::default()
    };
    let file_http = http_limits(&file)?;
    let http = HttpLimits {
        header_timeout: args
            .header_timeout
            .map_or(file_http.header_timeout, Duration::from_secs),
        max_connections: args
            .max_connections
            .map_or(file_http.max_connections, |n| n.max(1)),
        write_timeout: args
            .write_timeout
            .map_or(file_http.write_timeout, Duration::from_secs),
    };
    let setup = proxy_setup(Mode::Serve, &file, &common, &listeners, http)?
        .ok_or("no proxy: --proxy-base and --proxy-key-file (or their keys) are needed")?;
    let Some(listen) = setup.listen else {
        return Err("no listen address: --proxy-listen or `proxy_listen`".into());
    };
    let mut settings = setup.settings;
    settings.listen = listen;
    for f in &args.previous_key_files {
        settings.previous_keys.push(crate::proxy::read_key(f)?);
    }
    let mut rules = file.rules.clone().unwrap_or_default();
    rules.extend(args.rules.iter().cloned());
    let system_rules = file.system_rules.unwrap_or(true) && !args.no_system_rules;
    let log_format = args.log_format.or(file.log_format).unwrap_or_default();
    Ok((settings, rules, system_rules, log_format))
}

/// The dashboard, where the process keeps running and a listen address is given.
fn dashboard(
    mode: Mode,
    file: &FileConfig,
    listeners: &ListenerArgs,
) -> Result<Option<DashboardSettings>, String> {
    let listen = match (&listeners.dashboard_listen, &file.dashboard_listen) {
        (Some(l), _) => l.clone(),
        (None, Some(l)) if mode.long_running() => l.clone(),
        _ => return Ok(None),
    };
    let listen = listen
        .parse::<SocketAddr>()
        .map_err(|_| format!("dashboard_listen {listen:?}: expected IP:PORT"))?;
    Ok(Some(DashboardSettings {
        listen,
        token_file: listeners
            .token_file
            .clone()
            .or(file.dashboard_token_file.clone()),
        hostnames: file.dashboard_hostnames.clone().unwrap_or_default(),
    }))
}

/// Authentication: the flags over the file's keys, where the mode authenticates.
fn auth_settings(mode: Mode, file: &FileConfig, flags: Option<&AuthArgs>) -> crate::auth::Settings {
    if !mode.authenticates() {
        return crate::auth::Settings::default();
    }
    let none = AuthArgs::default();
    let f = flags.unwrap_or(&none);
    crate::auth::Settings {
        authenticate: switch(f.auth.authenticate, f.no_authenticate)
            .or(file.authenticate)
            .unwrap_or(false),
        dns_resolver: f.auth.dns_resolver.clone().or(file.dns_resolver.clone()),
        dns_timeout: f.auth.dns_timeout.or(file.dns_timeout),
        auth_serv_id: f.auth.auth_serv_id.clone().or(file.auth_serv_id.clone()),
        arc_key: f.auth.arc_key.clone().or(file.arc_key.clone()),
        arc_selector: f.auth.arc_selector.clone().or(file.arc_selector.clone()),
        arc_domain: f.auth.arc_domain.clone().or(file.arc_domain.clone()),
    }
}

#[cfg(test)]
mod tests;
