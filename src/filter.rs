//! `mailveil filter`: the pipe frontend for sieve, procmail and maildrop. One mail on
//! stdin, through the [`Pipeline`], out on stdout. Its protocol is the exit status:
//! 0 whenever a mail was written (cleaned, or wrapped because it could not be read);
//! 75 (EX_TEMPFAIL) only when none could be, so the delivery agent keeps the mail and
//! retries. Its log is stderr, which the delivery agent keeps.
//!
//! A mail larger than `--max-message-bytes` is not read whole: at most one byte past
//! the limit is held, and the rest streams from stdin through the wrapper's encoder to
//! stdout, a chunk at a time ([`stream_too_large`]).

use crate::pipeline::{MailMeta, Outcome, Pipeline, Processed, Streamed};
use crate::printable::printable;
use crate::settings::frontends::FilterArgs;
use mailveil_core::{Envelope, TooLarge};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

/// sysexits.h EX_TEMPFAIL: the MDA (sieve, procmail, maildrop) keeps the mail and retries.
pub(crate) const EX_TEMPFAIL: u8 = 75;

/// Bytes of the mail encoded and written at a time.
const STREAM_CHUNK: usize = 64 * 1024;

/// Cleans the mail on stdin onto stdout. Runs on a runtime of its own thread: the
/// reads and writes of the pipe block it, and nothing else is running there.
pub(crate) async fn run(pipeline: Arc<Pipeline>, args: &FilterArgs) -> ExitCode {
    let max = pipeline.policy().limits.max_message_bytes;
    let mut stdin = std::io::stdin().lock();
    let mut raw = Vec::new();
    if let Err(e) = (&mut stdin)
        .take((max as u64).saturating_add(1))
        .read_to_end(&mut raw)
    {
        eprintln!("mailveil: cannot read the mail from stdin: {e}");
        return ExitCode::from(EX_TEMPFAIL);
    }
    let envelope = Envelope {
        sender: None,
        recipients: args.recipients.clone(),
    };
    let meta = MailMeta {
        frontend: "filter",
        queue_id: String::new(),
        peer: "stdin".into(),
    };
    let mut out = std::io::stdout().lock();
    let (done, outcome) = if raw.len() > max {
        let t = pipeline.too_large(&raw, &envelope);
        let report = t.report().clone();
        let tempfail = t.tempfail();
        let streamed = if tempfail {
            eprintln!(
                "mailveil: the mail is larger than --max-message-bytes ({max}): not read \
                 (temporary failure)"
            );
            Ok(0)
        } else {
            stream_too_large(t, &raw, &mut stdin, &mut out)
        };
        let (size, out_size) = match &streamed {
            Ok(total) => (*total, 0),
            Err(_) => (raw.len() as u64, 0),
        };
        let done = pipeline.streamed(
            Streamed {
                report: report.clone(),
                head: &raw,
                size,
                out_size,
                tempfail,
            },
            &envelope,
            meta,
        );
        match streamed {
            Err(e) => {
                eprintln!("mailveil: cannot stream the mail from stdin to stdout: {e}");
                finish(&pipeline, done, "exit 75 (not written)").await;
                return ExitCode::from(EX_TEMPFAIL);
            }
            Ok(_) if tempfail => {
                finish(&pipeline, done, "exit 75 (tempfail)").await;
                return ExitCode::from(EX_TEMPFAIL);
            }
            Ok(total) => {
                eprintln!(
                    "mailveil: the mail is larger than --max-message-bytes ({max}): not read, \
                     {total} bytes streamed {}",
                    if report.error.is_some() {
                        "into the attachment of a note (error=too-large)"
                    } else {
                        "through"
                    }
                );
                (done, "written (streamed)")
            }
        }
    } else {
        let mut done = pipeline.process(Arc::new(raw), envelope, meta).await;
        if let Some(err) = &done.cleaned.report.error {
            eprintln!(
                "mailveil: mail could not be read ({}): delivered as an attachment",
                printable(err)
            );
        }
        if done.cleaned.tempfail {
            finish(&pipeline, done, "exit 75 (tempfail)").await;
            return ExitCode::from(EX_TEMPFAIL);
        }
        if let Err(e) = out
            .write_all(&done.cleaned.bytes)
            .and_then(|()| out.flush())
        {
            eprintln!("mailveil: cannot write the mail to stdout: {e}");
            finish(&pipeline, done, "exit 75 (not written)").await;
            return ExitCode::from(EX_TEMPFAIL);
        }
        done.delivered();
        (done, "written")
    };
    if let Some(path) = &args.report_json {
        let json = serde_json::to_vec_pretty(&done.cleaned.report).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json) {
            eprintln!(
                "mailveil: cannot write the report to {}: {e}",
                path.display()
            );
        }
    }
    // After the mail is written: a store failure is reported and changes nothing.
    finish(&pipeline, done, outcome).await;
    ExitCode::SUCCESS
}

/// Finishes the mail and waits for its report to be recorded: the process ends next.
async fn finish(pipeline: &Pipeline, done: Processed, result: &str) {
    done.finish(Outcome::said(result));
    pipeline.drain(std::time::Duration::from_secs(30)).await;
}

/// Writes a mail too large to hold: the head, then `start` (what was read of the mail)
/// and the rest of stdin through the wrapper's encoder, a chunk at a time, so that
/// memory stays at what was read plus a chunk or two. Returns the bytes of the mail.
fn stream_too_large(
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
