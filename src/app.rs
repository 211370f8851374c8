//! The composition root: turns the parsed command line into a running process. For the
//! four subcommands that clean mail it loads the [`Settings`], builds what they share
//! ([`Services`]: the live rules and their reload, the report store and its retention,
//! the image proxy, the dashboard and /metrics, authentication, and from them the
//! [`Pipeline`]), then runs the one frontend asked for. No frontend starts a service or
//! knows another frontend; they all get the same pipeline.

use crate::cli::{Cli, Command, ProxyArgs, RulesCommand};
use crate::filter::EX_TEMPFAIL;
use crate::logs::LogStyle;
use crate::pipeline::{Pipeline, Prefetch, Reports};
use crate::printable::printable;
use crate::rule_files::{self, LiveRules};
use crate::settings::frontends::{self, FilterArgs, ImapArgs, MilterArgs, ServeArgs};
use crate::settings::{Mode, Settings};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

/// Seams for the tests, set only in code: the binary never sets one, and no flag or
/// environment variable reaches them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seams {
    /// Called by the IMAP sweep right after each APPEND the server confirmed, with the
    /// count so far, before anything else is recorded (a test kills the process there).
    pub imap_after_append: Option<fn(usize)>,
}

/// Runs what the command line asks for; the exit code says how it went.
pub fn run(cli: Cli) -> ExitCode {
    run_with(cli, Seams::default())
}

/// [`run`], with test seams.
pub fn run_with(cli: Cli, seams: Seams) -> ExitCode {
    match cli.command {
        Command::Filter(args) => filter(args),
        Command::Serve(args) => serve(args),
        Command::Milter(args) => milter(args),
        Command::Imap(args) => imap(args, seams),
        Command::Proxy(args) => proxy(args),
        Command::Report(args) => crate::report_cmd::report(args),
        Command::Dashboard(args) => crate::report_cmd::dashboard(args),
        Command::ArcKey { command } => match crate::auth::keys::run(command) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => failure(&e),
        },
        Command::Completions { shell } => {
            match crate::cli_docs::completions(shell, &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => failure(&e),
            }
        }
        Command::Man { dir } => match crate::cli_docs::man_pages(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => failure(&e),
        },
        Command::Rules { command } => match rules_command(command) {
            Ok(code) => code,
            Err(e) => failure(&format!("{e:#}")),
        },
    }
}

/// A failure before any mail: said on stderr, exit 1.
fn failure(why: &str) -> ExitCode {
    eprintln!("mailveil: {why}");
    ExitCode::FAILURE
}

/// A long-running mode's end: 0 when it stopped cleanly, 1 (with the reason) otherwise.
fn exit_code(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(&e),
    }
}

/// A rule set refused for its errors, for a start that cannot go on: every error, one
/// line each (file, line, column, what is wrong).
fn rule_errors(errors: &[mailveil_core::RuleError]) -> String {
    let mut text = format!(
        "not started: {} error(s) in the rule files (fix them; `mailveil rules check` \
         lists them):",
        errors.len()
    );
    for e in errors {
        text.push_str("\n  ");
        text.push_str(&printable(&e.to_string()));
    }
    text
}

/// What every frontend of one process shares, started.
pub(crate) struct Services {
    /// The core and everything around it.
    pub pipeline: Arc<Pipeline>,
}

impl Services {
    /// Loads the rules (reloaded while the process runs, for the long-running modes),
    /// opens the report store (with its retention task), builds and (where it listens)
    /// starts the proxy, starts the dashboard, sets up authentication, and puts the
    /// pipeline together. Must run inside the runtime that serves the frontend.
    pub(crate) async fn start(settings: &Settings) -> Result<Services, String> {
        let long_running = settings.mode.long_running();
        let rules = LiveRules::load(&settings.rules, settings.system_rules)
            .map_err(|errors| rule_errors(&errors))?;
        let rules = Arc::new(rules);
        if long_running {
            crate::reload::spawn(Arc::clone(&rules));
        }
        let auth = crate::auth::Authenticator::from_settings(&settings.auth)
            .map_err(|e| format!("authentication: {e}"))?;
        let (reports, store) = reports(settings).await?;
        let mut prefetch = None;
        if let Some(setup) = &settings.proxy {
            // The proxy's state is needed where it listens, or where prefetch fills its
            // cache; a process that only signs URLs needs just the key (in the policy).
            let prefetching =
                settings.policy.remote_content == mailveil_core::RemoteContent::Prefetch;
            if setup.listen.is_some() || prefetching {
                let proxy = crate::proxy::build(&setup.settings, rules.get())?;
                if let Some(listen) = setup.listen {
                    crate::proxy::spawn(Arc::clone(&proxy), listen, setup.settings.http).await?;
                }
                if prefetching {
                    prefetch = Some(Prefetch {
                        proxy,
                        deadline: setup.prefetch_deadline,
                    });
                }
            }
        }
        if let Some(dash) = &settings.dashboard {
            start_dashboard(dash, store, settings.http).await?;
        }
        let pipeline = Pipeline::new(rules, settings.policy.clone())
            .with_reports(reports)
            .with_prefetch(prefetch)
            .with_auth(auth)
            .with_inline_clean(settings.mode == Mode::Filter);
        Ok(Services {
            pipeline: Arc::new(pipeline),
        })
    }
}

/// The report store: opened now with its retention task where the process keeps
/// running; opened after the mail went out, once, where it ends with its mail.
async fn reports(
    settings: &Settings,
) -> Result<(Reports, Option<Arc<dyn crate::store::ReportStore>>), String> {
    let r = &settings.reports;
    let Some(location) = &r.db else {
        return Ok((Reports::Off, None));
    };
    if !settings.mode.long_running() {
        let reports = Reports::OnDemand {
            location: location.clone(),
            debug: r.debug,
            retention_days: r.retention_days,
        };
        return Ok((reports, None));
    }
    let store = crate::store::open(location, r.debug)
        .await
        .map_err(|e| e.to_string())?;
    let store: Arc<dyn crate::store::ReportStore> = Arc::new(store);
    tokio::spawn(crate::store::retention_task(
        Arc::clone(&store),
        r.retention_days,
    ));
    let reports = Reports::Store {
        store: Arc::clone(&store),
        debug: r.debug,
    };
    Ok((reports, Some(store)))
}

/// The dashboard and /metrics, in the background; the metrics recorder first, so that
/// nothing counted before the first request is lost.
async fn start_dashboard(
    dash: &crate::settings::DashboardSettings,
    store: Option<Arc<dyn crate::store::ReportStore>>,
    http: crate::http::HttpLimits,
) -> Result<(), String> {
    let token = match &dash.token_file {
        Some(path) => Some(crate::web::read_token(path)?),
        None => None,
    };
    crate::metrics::install();
    let state = crate::web::WebState {
        store,
        token,
        listen: Some(dash.listen),
        hostnames: dash.hostnames.clone(),
    };
    let listener = tokio::net::TcpListener::bind(dash.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", dash.listen))?;
    tracing::info!(listen = %dash.listen, "dashboard listening");
    tokio::spawn(async move {
        let app = crate::web::router(state);
        if let Err(e) = crate::http::serve(listener, app, http).await {
            tracing::warn!("dashboard stopped: {e}");
        }
    });
    Ok(())
}

/// How long a process that is done waits for the reports still being recorded.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// A runtime for a long-running mode.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Pipe mode. Exit 0 whenever a mail was written; 75 only when none could be (a
/// configuration error included: the delivery agent keeps the mail until it is fixed).
fn filter(args: FilterArgs) -> ExitCode {
    let tempfail = |why: &str| {
        eprintln!("mailveil: {why}");
        ExitCode::from(EX_TEMPFAIL)
    };
    let settings = match Settings::load(Mode::Filter, &args.common, None, Some(&args.auth)) {
        Ok((s, _)) => s,
        Err(e) => return tempfail(&e),
    };
    if args.common.check {
        return crate::check::run(&settings, None);
    }
    crate::logs::init(LogStyle::Pipe, settings.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return tempfail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async {
        match Services::start(&settings).await {
            Ok(services) => {
                let code = crate::filter::run(Arc::clone(&services.pipeline), &args).await;
                services.pipeline.keep_rules_until_exit();
                code
            }
            Err(e) => tempfail(&e),
        }
    })
}

/// The SMTP frontend: exit 0 after a graceful shutdown, 1 on a configuration error.
fn serve(args: ServeArgs) -> ExitCode {
    let loaded = Settings::load(
        Mode::Serve,
        &args.common,
        Some(&args.listeners),
        Some(&args.auth),
    )
    .and_then(|(settings, file)| {
        let config = frontends::serve(&file, &args, settings.max_message_bytes)?;
        Ok((settings, config))
    });
    let (settings, config) = match loaded {
        Ok(x) => x,
        Err(e) => return failure(&e),
    };
    if args.common.check {
        return crate::check::run(&settings, Some(&|| serve_check(&settings, &config)));
    }
    run_daemon(&settings, |pipeline| crate::smtp::run(config, pipeline))
}

/// Runs a long-running way in: the daemon's logs, the services started, `frontend`
/// served with the pipeline, then the reports of mails still in flight drained.
fn run_daemon<F, Fut>(settings: &Settings, frontend: F) -> ExitCode
where
    F: FnOnce(Arc<Pipeline>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    crate::logs::init(LogStyle::Daemon, settings.log_format);
    exit_code(runtime().and_then(|rt| {
        rt.block_on(async {
            let services = Services::start(settings).await?;
            let done = frontend(Arc::clone(&services.pipeline)).await;
            services.pipeline.drain(DRAIN).await;
            done
        })
    }))
}

/// What only `serve --check` checks: the listener's and downstream's settings, the TLS
/// files, the ARC key; the line the operator looks for.
fn serve_check(settings: &Settings, config: &crate::smtp::ServeConfig) -> Result<String, String> {
    crate::smtp::check(config)?;
    crate::auth::Authenticator::from_settings(&settings.auth)?;
    Ok(format!("listen {} -> {}", config.listen, config.downstream))
}

/// The milter: exit 0 after SIGTERM, 1 when it cannot start.
fn milter(args: MilterArgs) -> ExitCode {
    let loaded = Settings::load(
        Mode::Milter,
        &args.common,
        Some(&args.listeners),
        Some(&args.auth),
    )
    .and_then(|(settings, file)| Ok((settings, frontends::milter(&file, &args)?)));
    let (settings, opts) = match loaded {
        Ok(x) => x,
        Err(e) => return failure(&e),
    };
    if args.common.check {
        return crate::check::run(&settings, None);
    }
    run_daemon(&settings, |pipeline| crate::milter::run(opts, pipeline))
}

/// The IMAP sweep: exit 0 when every message was handled, 1 on an error.
fn imap(args: ImapArgs, seams: Seams) -> ExitCode {
    let mode = Mode::Imap { watch: args.watch };
    let loaded = Settings::load(mode, &args.common, Some(&args.listeners), None)
        .and_then(|(settings, file)| Ok((settings, frontends::imap(&file, &args)?)));
    let (settings, mut opts) = match loaded {
        Ok(x) => x,
        Err(e) => return failure(&e),
    };
    opts.after_append = seams.imap_after_append;
    if args.common.check {
        return crate::check::run(&settings, None);
    }
    run_daemon(&settings, |pipeline| crate::imap::run(opts, pipeline))
}

/// `mailveil proxy`: the image proxy and link shield alone.
fn proxy(args: ProxyArgs) -> ExitCode {
    let (settings, rules, system_rules, log_format) = match crate::settings::proxy_alone(&args) {
        Ok(x) => x,
        Err(e) => return failure(&e),
    };
    if args.check {
        return crate::check::proxy(&settings, &rules, system_rules);
    }
    let rules = match rule_files::load_strict(&rules, system_rules) {
        Ok(rules) => rules,
        Err(errors) => return failure(&rule_errors(&errors)),
    };
    crate::logs::init(LogStyle::Daemon, log_format);
    exit_code(crate::proxy::run(settings, rules))
}

fn rules_command(command: RulesCommand) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    match command {
        RulesCommand::Check {
            dirs,
            config,
            no_system_rules,
        } => {
            // No directory: what `serve` would load with this configuration.
            if !dirs.is_empty() {
                return Ok(crate::check::rules_command(&dirs, false));
            }
            let file = crate::settings::file::FileConfig::read(config.as_deref())
                .map_err(anyhow::Error::msg)?;
            let with_system = file.system_rules.unwrap_or(true) && !no_system_rules;
            Ok(crate::check::rules_command(
                &file.rules.unwrap_or_default(),
                with_system,
            ))
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
            let policy = mailveil_core::links::LinkPolicy {
                keep_campaign_params,
                ..Default::default()
            };
            print!(
                "{}",
                crate::explain::explain(&url, &recipients, &loaded, &policy)
            );
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Stats { rules } => {
            let (loaded, errors) = rule_files::load(&rules, true);
            for e in &errors {
                eprintln!("mailveil: rule file skipped: {e}");
            }
            let mut out = std::io::stdout().lock();
            write!(out, "{}", crate::explain::stats(&loaded)).context("writing stats")?;
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Import(args) => crate::import::run(&args),
    }
}
