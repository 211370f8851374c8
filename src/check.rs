//! `--check`: what the start would need, looked at before the start, so that a restart
//! does not find it broken. The configuration was read and validated by the time this
//! runs (a proxy key that cannot be read, a bad address: `Settings::load` said so); here
//! the rest: the rule files (and how many rules of each kind load), the report store
//! (reachable, writable), the proxy's cache directory, the dashboard's token file.
//!
//! Nothing is created: `--check` may run as another user than the service (it should
//! run as the same one: `sudo -u mailveil mailveil serve --check ...`), and a store or a
//! cache directory it made would belong to the wrong user. Every problem is listed, not
//! only the first, each naming its path or URL.

use crate::printable::printable;
use crate::rule_files;
use crate::settings::Settings;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// How long a PostgreSQL store has to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What was found: a line per thing that is fine, one per problem.
#[derive(Default)]
struct Findings {
    ok: Vec<String>,
    errors: Vec<String>,
}

impl Findings {
    fn add(&mut self, result: Result<String, String>) {
        match result {
            Ok(line) => self.ok.push(line),
            Err(e) => self.errors.push(e),
        }
    }

    /// Prints `ok: ...` lines on stdout and the problems on stderr; exit 1 on any.
    fn finish(self) -> ExitCode {
        for line in &self.ok {
            println!("ok: {line}");
        }
        for e in &self.errors {
            eprintln!("mailveil: {e}");
        }
        if self.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}

/// `filter`, `serve`, `milter`, `imap` with `--check`; `frontend` adds what only one
/// frontend has (serve's TLS files and listener line).
pub(crate) fn run(
    settings: &Settings,
    frontend: Option<&dyn Fn() -> Result<String, String>>,
) -> ExitCode {
    let mut found = Findings::default();
    found.add(rules(&settings.rules, settings.system_rules));
    if let Some(db) = &settings.reports.db {
        found.add(block_on(store(db)));
    }
    if let Some(setup) = &settings.proxy {
        let prefetching = settings.policy.remote_content == mailveil_core::RemoteContent::Prefetch;
        // The cache is opened where the proxy listens or prefetch fills it.
        if setup.listen.is_some() || prefetching {
            found.add(cache(setup.settings.cache_dir.as_deref()));
        } else {
            found.add(Ok(
                "proxy key read (URLs signed for a separate proxy)".into()
            ));
        }
    }
    if let Some(dash) = &settings.dashboard
        && let Some(token) = &dash.token_file
    {
        found.add(crate::web::read_token(token).map(|_| "dashboard token read".into()));
    }
    if let Some(check) = frontend {
        found.add(check());
    }
    found.finish()
}

/// `mailveil proxy --check`.
pub(crate) fn proxy(
    settings: &crate::proxy::Settings,
    dirs: &[PathBuf],
    with_system: bool,
) -> ExitCode {
    let mut found = Findings::default();
    found.add(rules(dirs, with_system));
    found.add(cache(settings.cache_dir.as_deref()));
    found.add(Ok(format!("proxy listen {}", settings.listen)));
    found.finish()
}

/// `mailveil dashboard --check`.
pub(crate) fn dashboard(db: &str, token: Option<&Path>) -> ExitCode {
    let mut found = Findings::default();
    found.add(block_on(store(db)));
    if let Some(token) = token {
        found.add(crate::web::read_token(token).map(|_| "dashboard token read".into()));
    }
    found.finish()
}

/// `mailveil rules check`: every error, or the counts.
pub(crate) fn rules_command(dirs: &[PathBuf], with_system: bool) -> ExitCode {
    match rule_files::load_strict(dirs, with_system) {
        Ok(_) => {
            println!("ok: {}", rules(dirs, with_system).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                println!("{}", printable(&e.to_string()));
            }
            ExitCode::FAILURE
        }
    }
}

/// The rules the process would load (strictly: as at start), and their counts per kind.
fn rules(dirs: &[PathBuf], with_system: bool) -> Result<String, String> {
    let rules = rule_files::load_strict(dirs, with_system).map_err(|errors| {
        let mut text = format!("{} error(s) in the rule files:", errors.len());
        for e in errors {
            text.push_str("\n  ");
            text.push_str(&printable(&e.to_string()));
        }
        text
    })?;
    let s = rules.summary();
    let from: Vec<String> = std::iter::once("shipped".to_string())
        .chain(
            rule_files::layers(dirs, with_system)
                .iter()
                .map(|d| printable(&d.display().to_string()).into_owned()),
        )
        .collect();
    Ok(format!(
        "rules from {}: {} trackers, {} pixel patterns, {} redirect formats, {} parameter \
         rules, {} exceptions, {} allow entries, {} policies, {} functional-link rules",
        from.join(", "),
        s.trackers,
        s.pixels,
        s.redirects,
        s.params,
        s.keeps,
        s.allows,
        s.policies,
        s.functional
    ))
}

/// The proxy's cache directory (configured, or the default the start would take).
fn cache(configured: Option<&Path>) -> Result<String, String> {
    let dir = match configured {
        Some(d) => d.to_path_buf(),
        None => crate::proxy::cache::default_dir(|k| std::env::var_os(k))?,
    };
    crate::proxy::cache::check_dir(&dir)?;
    Ok(format!("proxy cache {} writable", dir.display()))
}

/// Runs a check that needs the async store client.
fn block_on(
    f: impl std::future::Future<Output = Result<String, String>>,
) -> Result<String, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(f)
}

/// The report store: a PostgreSQL server reachable (and its schema in place or
/// creatable, as the start does), or an SQLite file writable or creatable.
async fn store(location: &str) -> Result<String, String> {
    if location.starts_with("postgres://") || location.starts_with("postgresql://") {
        let shown = without_password(location);
        let named = |e: &dyn std::fmt::Display| format!("report store {shown}: {e}");
        // One connection first, for the cause (the pool retries until its timeout).
        sqlx::any::install_default_drivers();
        let once = <sqlx::AnyConnection as sqlx::Connection>::connect(location);
        match tokio::time::timeout(CONNECT_TIMEOUT, once).await {
            Ok(Ok(c)) => drop(c),
            Ok(Err(e)) => return Err(named(&format!("not reachable: {e}"))),
            Err(_) => {
                return Err(named(&format!(
                    "not reachable: no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        }
        return match tokio::time::timeout(CONNECT_TIMEOUT, crate::store::open(location, false))
            .await
        {
            Ok(Ok(_)) => Ok(format!("report store {shown} reachable")),
            Ok(Err(e)) => Err(named(&format!("not writable: {e}"))),
            Err(_) => Err(named(&format!(
                "not reachable: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        };
    }
    let Some(path) = sqlite_path(location) else {
        // `sqlite::memory:` and the like: nothing on disk to check.
        return crate::store::open(location, false)
            .await
            .map(|_| format!("report store {location}"))
            .map_err(|e| format!("report store {location}: {e}"));
    };
    sqlite_writable(&path).map_err(|e| format!("report store {}: {e}", path.display()))?;
    Ok(format!("report store {} writable", path.display()))
}

/// The file of an SQLite location: a path, or `sqlite:PATH` / `sqlite://PATH` with
/// options after `?`; `None` for an in-memory database.
fn sqlite_path(location: &str) -> Option<PathBuf> {
    let rest = match location.strip_prefix("sqlite:") {
        Some(rest) => rest.strip_prefix("//").unwrap_or(rest),
        None => return Some(PathBuf::from(location)),
    };
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && !path.contains(":memory:") && !rest.contains("mode=memory"))
        .then(|| PathBuf::from(path))
}

/// An existing file must open for writing (it is not truncated) in a directory that
/// takes SQLite's journal; a missing one, a directory that takes a new file.
fn sqlite_writable(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if path.exists() {
        if !path.is_file() {
            return Err("not a regular file".into());
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("not writable: {e}"))?;
    } else if !dir.is_dir() {
        return Err(format!(
            "cannot be created: {} is not a directory",
            dir.display()
        ));
    }
    tempfile::tempfile_in(dir).map(drop).map_err(|e| {
        format!(
            "{} does not take new files (SQLite's journal, or the store itself): {e}",
            dir.display()
        )
    })
}

/// A database URL with its password (if any) replaced by `***`: a check's output goes to
/// terminals and logs.
fn without_password(location: &str) -> String {
    match url::Url::parse(location) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(an unparsable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_locations_and_passwords() {
        assert_eq!(
            sqlite_path("/var/lib/m.sqlite"),
            Some("/var/lib/m.sqlite".into())
        );
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.db?mode=rwc"),
            Some("/tmp/x.db".into())
        );
        assert_eq!(sqlite_path("sqlite:x.db"), Some("x.db".into()));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(
            without_password("postgres://u:secret@127.0.0.1:5/db"),
            "postgres://u:***@127.0.0.1:5/db"
        );
    }
}
