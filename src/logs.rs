//! The log lines: on stderr (the journal under systemd), one line per event, in logfmt by
//! default or JSON (`--log-format json`, key `log_format`) for log shippers.
//!
//! logfmt: `ts=... level=info target=mailveil::pipeline msg=mail queue_id=B53ED9942ED ...`.
//! A value is written bare when it is made of printable characters other than space,
//! `=`, `;`, `"` and `\`; any other value is quoted, as a JSON string (`"` and `\`
//! escaped, control characters as `\n`, `\u001b`), and the characters that reorder text
//! unseen (bidi overrides) escaped as well (`\u202e`): a value is one field of one line,
//! whatever a sender put in it. The formatter is written here because the logfmt
//! formatter crate (tracing-logfmt) leaves `;` and `\` bare and escapes the Rust way
//! (`\u{202e}`), which logfmt readers do not undo.
//!
//! The pipe filter writes the same fields after `mailveil: ` (what a delivery agent's
//! log has always shown), warnings only by default.

use crate::settings::args::LogFormat;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Who writes the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogStyle {
    /// A daemon's: timestamp, level, target, fields; `info` by default.
    Daemon,
    /// The pipe filter's, for the delivery agent's log: `mailveil: ` and the fields,
    /// warnings and errors only by default (a clean delivery says nothing).
    Pipe,
}

/// Installs the log subscriber on stderr; `MAILVEIL_LOG` sets the level: a level
/// (`debug`), or targets with levels (`mailveil::smtp=trace,warn`). A value that does
/// not read keeps the default. These are `Targets` directives, not `EnvFilter`'s: its
/// span and field filters were never used, and the feature that brings them compiles
/// every regex of the process into a full DFA (a tenth of a `filter` process, issue 17).
pub(crate) fn init(style: LogStyle, format: LogFormat) {
    let default = match style {
        LogStyle::Daemon => LevelFilter::INFO,
        LogStyle::Pipe => LevelFilter::WARN,
    };
    let filter = std::env::var("MAILVEIL_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default));
    // Every level reaches the filter: the builder's own maximum (info) would hide debug.
    let builder = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .finish()
            .with(filter)
            .try_init(),
        LogFormat::Logfmt => builder
            .fmt_fields(Logfmt)
            .event_format(LogfmtEvent { style })
            .finish()
            .with(filter)
            .try_init(),
    };
}

/// Writes `key=value` with the value quoted where logfmt needs it (see the module).
pub(crate) fn pair(out: &mut impl fmt::Write, key: &str, value: &str) -> fmt::Result {
    out.write_str(key)?;
    out.write_char('=')?;
    if !value.is_empty() && !value.chars().any(needs_quotes) {
        return out.write_str(value);
    }
    let json = serde_json::to_string(value).map_err(|_| fmt::Error)?;
    out.write_str(&crate::printable::json_printable(&json))
}

/// Whether a character makes a logfmt value need quotes.
fn needs_quotes(c: char) -> bool {
    c <= ' ' || matches!(c, '=' | ';' | '"' | '\\') || crate::printable::is_unsafe(c)
}

/// The fields of an event (or a span) as logfmt pairs; the message as `msg`.
struct Pairs<'a, W: fmt::Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: fmt::Write> Pairs<'_, W> {
    fn write(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        let key = match field.name() {
            "message" => "msg",
            name => name,
        };
        if !self.first {
            self.result = self.out.write_char(' ');
        }
        self.first = false;
        if self.result.is_ok() {
            self.result = pair(self.out, key, value);
        }
    }
}

impl<W: fmt::Write> Visit for Pairs<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

/// The field formatter (spans' fields too).
struct Logfmt;

impl<'w> FormatFields<'w> for Logfmt {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> fmt::Result {
        let mut pairs = Pairs {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut pairs);
        pairs.result
    }
}

/// One event, one line.
struct LogfmtEvent {
    style: LogStyle,
}

impl<S, N> FormatEvent<S, N> for LogfmtEvent
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let level = meta.level().as_str().to_ascii_lowercase();
        let mut line = String::with_capacity(256);
        match self.style {
            LogStyle::Pipe => {
                line.push_str("mailveil: ");
                pair(&mut line, "level", &level)?;
            }
            LogStyle::Daemon => {
                let mut ts = String::new();
                tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut ts))?;
                pair(&mut line, "ts", &ts)?;
                line.push(' ');
                pair(&mut line, "level", &level)?;
                line.push(' ');
                pair(&mut line, "target", meta.target())?;
            }
        }
        line.push(' ');
        let mut pairs = Pairs {
            out: &mut line,
            first: true,
            result: Ok(()),
        };
        event.record(&mut pairs);
        pairs.result?;
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(value: &str) -> String {
        let mut s = String::new();
        pair(&mut s, "k", value).unwrap();
        s
    }

    #[test]
    fn a_value_is_bare_only_when_nothing_in_it_needs_quotes() {
        assert_eq!(quoted("B53ED9942ED"), "k=B53ED9942ED");
        assert_eq!(quoted("news@sender.example"), "k=news@sender.example");
        assert_eq!(quoted(""), r#"k="""#);
        assert_eq!(quoted("a b"), r#"k="a b""#);
        assert_eq!(quoted("v=0.1.0"), r#"k="v=0.1.0""#);
        assert_eq!(quoted("Acme;Beta"), r#"k="Acme;Beta""#);
        assert_eq!(quoted(r#"say "hi""#), r#"k="say \"hi\"""#);
        assert_eq!(quoted(r"C:\x"), r#"k="C:\\x""#);
        assert_eq!(quoted("a\r\nb\u{1b}"), r#"k="a\r\nb\u001b""#);
        assert_eq!(quoted("moc\u{202e}x"), r#"k="moc\u202ex""#);
    }
}
