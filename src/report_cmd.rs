//! `mailveil report` and `mailveil dashboard`: the report store read back.
//!
//! What the store holds came with mail (sender domains, Message-IDs, URLs): every text of
//! it goes through [`printable`] before it is printed (no escape sequence, line break or
//! bidi override reaches the terminal), JSON escapes the same characters, and CSV cells
//! that a spreadsheet would run as a formula are quoted with a leading `'`.

use crate::printable::{json_printable, printable};
use crate::store::{self, MailRecord, ReportStore, Summary, day};
use clap::Args;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Where reports are when no --report-db is given.
pub(crate) const DEFAULT_DB: &str = "/var/lib/mailveil/reports.sqlite";

#[derive(Args)]
pub(crate) struct ReportArgs {
    /// The report store: an SQLite file path or postgres://...
    #[arg(long, value_name = "PATH|URL", default_value = DEFAULT_DB)]
    report_db: String,
    /// First day of the period (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE", conflicts_with = "days")]
    since: Option<String>,
    /// The last N days, today included (default 30).
    #[arg(long, value_name = "N")]
    days: Option<u32>,
    /// table, json or csv.
    #[arg(long, value_name = "table|json|csv", default_value = "table")]
    format: String,
    /// How many senders and trackers to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    top: usize,
    /// Show one mail's findings instead of a summary.
    #[arg(long, value_name = "ID")]
    message_id: Option<String>,
}

#[derive(Args)]
pub(crate) struct DashboardArgs {
    /// Address to listen on.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8026")]
    listen: SocketAddr,
    /// The report store: an SQLite file path or postgres://...
    #[arg(long, value_name = "PATH|URL", default_value = DEFAULT_DB)]
    report_db: String,
    /// Bearer token for non-loopback clients (first line of FILE).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// A host name the dashboard answers to besides its address (repeatable).
    #[arg(long = "hostname", value_name = "NAME")]
    hostnames: Vec<String>,
    /// Check that the report store can be opened and the token read, then exit (1 on
    /// any error).
    #[arg(long)]
    check: bool,
    /// How log lines are written: logfmt (default) or json.
    #[arg(long, value_enum, value_name = "logfmt|json", default_value = "logfmt")]
    log_format: crate::settings::args::LogFormat,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

pub(crate) fn report(args: ReportArgs) -> ExitCode {
    match report_inner(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mailveil: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report_inner(args: &ReportArgs) -> Result<ExitCode, String> {
    let format = args.format.as_str();
    if !matches!(format, "table" | "json" | "csv") {
        return Err(format!("--format {format:?}: expected table, json or csv"));
    }
    let until = store::now() + 1;
    let since = match (&args.since, args.days) {
        (Some(d), _) => day::parse_date(d)?,
        (None, n) => (until.div_euclid(86_400) - i64::from(n.unwrap_or(30).max(1)) + 1) * 86_400,
    };
    let rt = runtime()?;
    let out = rt.block_on(async {
        let s = store::open(&args.report_db, false)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(id) = &args.message_id {
            let mails = s.by_message_id(id).await.map_err(|e| e.to_string())?;
            if mails.is_empty() {
                return Err(format!(
                    "no mail with Message-ID {id:?} in the report store"
                ));
            }
            return Ok(render_mails(&mails, format));
        }
        let summary = s
            .summary(since, until, args.top)
            .await
            .map_err(|e| e.to_string())?;
        Ok(render_summary(&summary, format))
    })?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("writing the report: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// One CSV cell: printable, quoted when needed, and a cell a spreadsheet would read as a
/// formula (starting with `=`, `+`, `-`, `@`, tab or CR) kept as text with a leading `'`.
fn csv_field(s: &str) -> String {
    let text = printable(s);
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let text = if formula {
        format!("'{text}")
    } else {
        text.into_owned()
    };
    if formula || text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// JSON of a report, with what could act on a terminal escaped (the same JSON value).
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    json_printable(&text).into_owned() + "\n"
}

/// What the per-day columns count, under the table: "blocked" as docs/reports.md and
/// the `X-Mailveil` header define it, the same number the dashboard's chart draws.
const PER_DAY_NOTE: &str = "blocked: findings acted on (tracking pixels and recipient tokens \
stripped, links unwrapped or cleaned of tracking parameters);\nknown trackers: those of them \
that belong to a known tracker or ESP\n";

fn render_summary(s: &Summary, format: &str) -> String {
    let t = &s.totals;
    match format {
        "json" => json(s),
        "csv" => {
            let mut out = String::from("section,name,mails,blocked,trackers\n");
            let mut row = |section: &str, name: &str, mails: i64, blocked: i64, trackers: i64| {
                out.push_str(&format!(
                    "{section},{},{mails},{blocked},{trackers}\n",
                    csv_field(name)
                ));
            };
            row("total", "all", t.mails, t.blocked, t.mails_with_trackers);
            for (k, n) in &t.by_kind {
                row("kind", k, 0, *n, 0);
            }
            for (k, n) in &t.by_action {
                row("action", k, 0, *n, 0);
            }
            for r in &s.top_senders {
                row("sender", &r.name, r.mails, r.blocked, 0);
            }
            for r in &s.top_trackers {
                row("tracker", &r.name, r.mails, r.blocked, 0);
            }
            for d in &s.per_day {
                row("day", &d.date, d.mails, d.blocked, d.trackers);
            }
            out
        }
        _ => {
            let mut out = format!(
                "mailveil report {} .. {} (UTC)\n\n",
                day::date_of(s.since),
                day::date_of(s.until - 1)
            );
            out.push_str(&format!(
                "mails             {:>8}\nmails cleaned     {:>8}\nwith trackers     {:>8}\nfindings          {:>8}\nblocked           {:>8}\nerrors            {:>8}\n",
                t.mails, t.mails_cleaned, t.mails_with_trackers, t.findings, t.blocked, t.errors
            ));
            if !t.by_kind.is_empty() {
                out.push_str("\nblocked by kind\n");
                for (k, n) in &t.by_kind {
                    let k = printable(k);
                    out.push_str(&format!("  {k:<22}{n:>8}\n"));
                }
            }
            let mut list = |title: &str, rows: &[store::Ranked]| {
                if rows.is_empty() {
                    return;
                }
                out.push_str(&format!("\n{title:<32}{:>8}{:>9}\n", "mails", "blocked"));
                for r in rows {
                    let name = if r.name.is_empty() {
                        "(none)".into()
                    } else {
                        printable(&r.name)
                    };
                    out.push_str(&format!("  {name:<30}{:>8}{:>9}\n", r.mails, r.blocked));
                }
            };
            list("senders that track (From: domain)", &s.top_senders);
            list("top trackers and ESPs", &s.top_trackers);
            if !s.per_day.is_empty() {
                out.push_str(&format!(
                    "\n{:<12}{:>8}{:>9}{:>16}\n",
                    "day", "mails", "blocked", "known trackers"
                ));
                for d in &s.per_day {
                    out.push_str(&format!(
                        "{:<12}{:>8}{:>9}{:>16}\n",
                        printable(&d.date),
                        d.mails,
                        d.blocked,
                        d.trackers
                    ));
                }
                out.push_str(PER_DAY_NOTE);
            }
            out
        }
    }
}

fn render_mails(mails: &[MailRecord], format: &str) -> String {
    match format {
        "json" => json(mails),
        "csv" => {
            let mut out =
                String::from("message_id,time,kind,action,part,location,tracker,rule,url\n");
            for m in mails {
                for f in &m.findings {
                    out.push_str(&format!(
                        "{},{},{},{},{},{},{},{},{}\n",
                        csv_field(m.message_id.as_deref().unwrap_or("")),
                        m.time,
                        csv_field(&f.kind),
                        csv_field(&f.action),
                        csv_field(&f.part),
                        csv_field(&f.location),
                        csv_field(f.tracker.as_deref().unwrap_or("")),
                        csv_field(&f.rule),
                        csv_field(f.url.as_deref().unwrap_or(""))
                    ));
                }
            }
            out
        }
        _ => {
            let mut out = String::new();
            for m in mails {
                out.push_str(&format!(
                    "Message-ID <{}>\n  time      {}\n  from      {}\n  to        {}\n  size      {}\n  trackers  {}\n  blocked   {} of {} findings\n",
                    printable(m.message_id.as_deref().unwrap_or("")),
                    day::datetime_of(m.time),
                    if m.sender.is_empty() { "<>".into() } else { printable(&m.sender) },
                    printable(&m.recipient),
                    m.size,
                    if m.trackers.is_empty() { "none".into() } else { printable(&m.trackers.join(", ")).into_owned() },
                    m.blocked,
                    m.findings_total
                ));
                if let Some(e) = &m.error {
                    out.push_str(&format!("  error     {}\n", printable(e)));
                }
                for f in &m.findings {
                    out.push_str(&format!(
                        "  - {:<9} {:<15} part {} {}{}{}\n",
                        printable(&f.action),
                        printable(&f.kind),
                        printable(&f.part),
                        printable(&f.location),
                        f.tracker
                            .as_deref()
                            .map(|t| format!(" [{}]", printable(t)))
                            .unwrap_or_default(),
                        f.url
                            .as_deref()
                            .map(|u| format!(" {}", printable(u)))
                            .unwrap_or_default()
                    ));
                }
                out.push('\n');
            }
            out
        }
    }
}

pub(crate) fn dashboard(args: DashboardArgs) -> ExitCode {
    if args.check {
        return crate::check::dashboard(&args.report_db, args.token_file.as_deref());
    }
    crate::logs::init(crate::logs::LogStyle::Daemon, args.log_format);
    let run = async {
        let token = match &args.token_file {
            Some(p) => Some(crate::web::read_token(p)?),
            None => None,
        };
        let s = store::open(&args.report_db, false)
            .await
            .map_err(|e| e.to_string())?;
        let state = crate::web::WebState {
            store: Some(Arc::new(s) as Arc<dyn ReportStore>),
            token,
            listen: Some(args.listen),
            hostnames: args.hostnames.clone(),
        };
        tokio::select! {
            r = crate::web::serve(args.listen, state, Default::default()) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    };
    match runtime().and_then(|rt| rt.block_on(run)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailveil: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{csv_field, render_summary};
    use crate::store::{DayCount, Ranked, Summary};

    /// Issue 15: the per-day table's last column was headed "trackers" and held the
    /// findings blocked of known trackers; it says so now, and what "blocked" is.
    #[test]
    fn the_table_says_what_its_columns_count() {
        let s = Summary {
            since: 86_400,
            until: 2 * 86_400,
            top_senders: vec![Ranked {
                name: "example.co.uk".into(),
                mails: 1,
                blocked: 8,
            }],
            per_day: vec![DayCount {
                date: "1970-01-02".into(),
                mails: 1,
                blocked: 8,
                trackers: 2,
            }],
            ..Summary::default()
        };
        let table = render_summary(&s, "table");
        assert!(
            table.contains("senders that track (From: domain)"),
            "{table}"
        );
        assert!(
            table.contains("day            mails  blocked  known trackers\n1970-01-02         1        8               2\n"),
            "{table}"
        );
        assert!(table.contains("blocked: findings acted on (tracking pixels"));
        assert!(table.contains("known trackers: those of them that belong to a known tracker"));
    }

    #[test]
    fn csv_cells_are_printable_and_never_formulas() {
        assert_eq!(csv_field("example.org"), "example.org");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("=1+2"), "\"'=1+2\"");
        assert_eq!(
            csv_field("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        for lead in ["+", "-", "@", "\t", "\r"] {
            let cell = csv_field(&format!("{lead}cmd|' /C calc'!A0"));
            assert!(cell.starts_with("\"'"), "{cell}");
        }
        assert_eq!(
            csv_field("a\x1b[2Jb\u{202e}c\nd"),
            "a\\x1b[2Jb\\u{202e}c\\x0ad"
        );
    }
}
