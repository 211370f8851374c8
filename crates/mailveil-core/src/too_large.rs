//! A mail over `max_message_bytes`: too large to hold, so it is not read, and it is
//! delivered as any mail that cannot be read is, so that nothing is lost and nothing
//! fetches: its header fields (but the MIME ones) on a note, the original attached byte
//! for byte (see `mime::attach`), `X-Mailveil: ...; error=too-large` on top. A frontend
//! holds only the start of the mail: [`TooLarge`] tells from it what to write first,
//! then turns the rest, fed a chunk at a time, into the output. Pure: no I/O.
//!
//! Three cases, from the start alone:
//! - the sender or recipients' policy leaves tracking alone (`[[allow]]`, a policy with
//!   `tracking = "keep"`): our header on top, the rest as it came (as for any such mail);
//! - the mail already is one of our wrappers (it passes a second mailveil): our header
//!   on top, the rest checked line by line to be the base64 of its original and its
//!   closing delimiter, and written as it came (idempotent). What turns out not to be
//!   (a forgery that begins as one) is kept from that line on inside the attachment,
//!   base64 as well: still nothing a client renders;
//! - else the wrapper: the rest base64-encoded into its attachment.
//!
//! The bytes are those [`crate::clean`] writes for the same mail held whole (the core
//! uses this for a mail over the limit, the tests compare it with the wrapper of a mail
//! that could not be read).

use crate::headers::{self, header_start};
use crate::mime::attach::{self, Base64Lines};
use crate::mime::transfer::Eol;
use crate::{Cleaned, Envelope, OnError, Policy, Report, Rules};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

/// The error code of a mail too large to hold.
pub(crate) const CODE: &str = "too-large";

/// Characters of a whole base64 line.
const FULL_LINE: usize = 76;

/// A mail too large to hold, written as it streams: first [`TooLarge::head`], then what
/// [`TooLarge::feed`] makes of the mail from byte [`TooLarge::resume_at`] on (the part
/// of the start not yet fed, then the rest as it arrives), then [`TooLarge::finish`].
#[derive(Debug)]
pub struct TooLarge {
    head: Vec<u8>,
    tail: Vec<u8>,
    resume_at: usize,
    body: Body,
    report: Report,
    tempfail: bool,
}

#[derive(Debug)]
enum Body {
    /// Written as it comes.
    Copy,
    /// Base64 into the attachment.
    Encode(Base64Lines),
    /// Our wrapper's base64 and closing delimiter, checked as they pass.
    Check(Check),
}

impl TooLarge {
    /// What to deliver for a mail too large to hold that begins with `start` (at least
    /// its header section when it has one; with some of the body, an earlier wrapper is
    /// known again), for all envelope recipients (the strictest of their policies).
    pub fn new(start: &[u8], envelope: &Envelope, policy: &Policy, rules: &Rules) -> TooLarge {
        let judged: Vec<&str> = envelope.recipients.iter().map(String::as_str).collect();
        TooLarge::for_recipients(start, envelope, &judged, policy, rules)
    }

    /// As [`TooLarge::new`], for the copy that goes to the `judged` recipients.
    pub(crate) fn for_recipients(
        start: &[u8],
        envelope: &Envelope,
        judged: &[&str],
        policy: &Policy,
        rules: &Rules,
    ) -> TooLarge {
        let eol = Eol::detect(start, Eol::CrLf).as_bytes();
        let section = section_end(start);
        let clean = |shell: &[u8]| {
            catch_unwind(AssertUnwindSafe(|| {
                crate::clean_message(shell, envelope, judged, policy, rules, Instant::now())
            }))
            .ok()
            .and_then(Result::ok)
        };
        // Tracking left alone on purpose: decided by the header fields alone.
        if let Some(probe) = clean(&start[..section]).filter(|c| c.report.skipped.is_some()) {
            let mut report = probe.report;
            report.changed = true;
            return TooLarge {
                head: probe.bytes,
                tail: Vec::new(),
                resume_at: section,
                body: Body::Copy,
                report,
                tempfail: false,
            };
        }
        if let Some(ws) = attach::wrapper_start(start, eol) {
            let shell = [&start[..ws.base64_at], &ws.after].concat();
            if let Some(c) = clean(&shell).filter(|c| c.bytes.ends_with(&ws.after)) {
                let mut report = c.report;
                report.changed = true;
                let mut head = c.bytes;
                head.truncate(head.len() - ws.after.len());
                return TooLarge {
                    head,
                    tail: ws.after,
                    resume_at: ws.base64_at,
                    body: Body::Check(Check::new(eol, ws.closing)),
                    report,
                    tempfail: false,
                };
            }
        }
        // The header read as lenient readers read it, as for any mail that cannot be read.
        let read = crate::lenient::wrapper_reading(&start[..section], eol);
        let headers_from = read.as_deref().unwrap_or(&start[..section]);
        let (before, after) = attach::wrapper_shell(headers_from, CODE, eol);
        let shell = [before, after.clone()].concat();
        let cleaned = clean(&shell)
            .filter(|c| c.bytes.ends_with(&after))
            .unwrap_or_else(|| crate::with_own_header(&shell, crate::error_report(CODE), policy));
        let mut report = cleaned.report;
        report.changed = true;
        let mut head = cleaned.bytes;
        head.truncate(head.len() - after.len());
        TooLarge {
            head,
            tail: after,
            resume_at: header_start(start),
            body: Body::Encode(Base64Lines::new(eol)),
            report,
            tempfail: policy.on_error == OnError::Tempfail,
        }
    }

    /// The bytes to write first: the header section (ours on top) and, when the mail
    /// is wrapped, the note and the attachment's header.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Where in the mail [`TooLarge::feed`] takes over: the bytes before it are in the
    /// head already (the header section, or an mbox `From ` line that stays on top).
    pub fn resume_at(&self) -> usize {
        self.resume_at
    }

    /// Whether the body changes (`false`: only the header section does, the rest of the
    /// mail is written as it came).
    pub fn rewrites_body(&self) -> bool {
        !matches!(self.body, Body::Copy)
    }

    /// What was found and done (`error=too-large` when wrapped).
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The policy asks for a temporary failure instead (frontends answer 4xx or exit 75
    /// and write nothing).
    pub fn tempfail(&self) -> bool {
        self.tempfail
    }

    /// Turns the next bytes of the mail into output, appended to `out` (about 4/3 of
    /// `chunk`, held back at most a line).
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        match &mut self.body {
            Body::Copy => out.extend_from_slice(chunk),
            Body::Encode(lines) => lines.feed(chunk, out),
            Body::Check(check) => {
                if let Some(unread) = check.feed(chunk, out) {
                    self.body = Body::Encode(check.give_up(&chunk[unread..], out));
                }
            }
        }
    }

    /// The end of the mail: what was held back, and the end of the wrapper.
    pub fn finish(self, out: &mut Vec<u8>) {
        match self.body {
            Body::Copy => {}
            Body::Encode(lines) => lines.finish(out),
            Body::Check(mut check) => {
                if !check.finish(out) {
                    check.give_up(&[], out).finish(out);
                }
            }
        }
        out.extend_from_slice(&self.tail);
    }
}

/// A mail over the limit held whole (the core's own callers): the same bytes a frontend
/// streams.
pub(crate) fn clean_whole(
    raw: &[u8],
    envelope: &Envelope,
    judged: &[&str],
    policy: &Policy,
    rules: &Rules,
) -> Cleaned {
    let mut t = TooLarge::for_recipients(raw, envelope, judged, policy, rules);
    let rest = &raw[t.resume_at.min(raw.len())..];
    let mut bytes = Vec::with_capacity(t.head.len() + rest.len() * 4 / 3 + rest.len() / 38 + 256);
    bytes.extend_from_slice(&t.head);
    t.feed(rest, &mut bytes);
    let (mut report, tempfail) = (t.report.clone(), t.tempfail);
    t.finish(&mut bytes);
    report.changed = bytes != raw;
    Cleaned {
        bytes,
        report,
        tempfail,
    }
}

/// The end of the header section at the start of a mail: after the blank line, or where
/// the header fields end when no blank line follows them.
fn section_end(start: &[u8]) -> usize {
    let end = headers::fields(start)
        .last()
        .map_or(header_start(start), |f| f.range.end);
    match &start[end..] {
        [b'\r', b'\n', ..] => end + 2,
        [b'\n', ..] => end + 1,
        _ => end,
    }
}

/// The rest of one of our wrappers, read line by line: whole base64 lines, at most one
/// shorter last line, the closing delimiter, nothing after it. Whole lines are written
/// at once; a shorter one is held until the closing delimiter follows it.
#[derive(Debug)]
struct Check {
    eol: &'static [u8],
    closing: Vec<u8>,
    /// Bytes read and not written: a held last line, the closing line (each with its
    /// line end), and the line being read.
    pending: Vec<u8>,
    /// Where the line being read starts in `pending`.
    line_at: usize,
    /// The length of the held last line (at the start of `pending`).
    held: Option<usize>,
    closed: bool,
    /// A line was written (the next one starts with a line end).
    written: bool,
}

impl Check {
    fn new(eol: &'static [u8], closing: Vec<u8>) -> Check {
        Check {
            eol,
            closing,
            pending: Vec::with_capacity(2 * (FULL_LINE + 2)),
            line_at: 0,
            held: None,
            closed: false,
            written: false,
        }
    }

    /// Reads `chunk`; `Some(i)` when the rest is not what our wrapper holds (the bytes of
    /// `chunk` from `i` on are not read, `pending` holds what was read and not written).
    fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let total = chunk.len();
        let longest = self.closing.len().max(FULL_LINE) + self.eol.len();
        while !chunk.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', chunk) else {
                self.pending.extend_from_slice(chunk);
                if self.pending.len() - self.line_at > longest {
                    return Some(total);
                }
                return None;
            };
            self.pending.extend_from_slice(&chunk[..=nl]);
            chunk = &chunk[nl + 1..];
            if !self.line_done(out) {
                return Some(total - chunk.len());
            }
        }
        None
    }

    /// Judges the line that just ended; `false` when it is not what our wrapper holds.
    fn line_done(&mut self, out: &mut Vec<u8>) -> bool {
        let line = &self.pending[self.line_at..];
        let Some(content) = line.strip_suffix(self.eol) else {
            return false;
        };
        if self.closed {
            return false;
        }
        if content == self.closing.as_slice() {
            self.closed = true;
            self.line_at = self.pending.len();
            return true;
        }
        if self.held.is_some() {
            return false;
        }
        if content.len() == FULL_LINE && content.iter().all(|&b| is_base64(b)) {
            if self.written {
                out.extend_from_slice(self.eol);
            }
            out.extend_from_slice(content);
            self.written = true;
            self.pending.clear();
            self.line_at = 0;
            return true;
        }
        if last_line(content, self.written) {
            self.held = Some(content.len());
            self.line_at = self.pending.len();
            return true;
        }
        false
    }

    /// The end of the mail: `true` (and the held line written) when the wrapper ended
    /// as ours does.
    fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        if !self.closed || self.line_at != self.pending.len() {
            return false;
        }
        if let Some(n) = self.held.filter(|&n| n > 0) {
            if self.written {
                out.extend_from_slice(self.eol);
            }
            out.extend_from_slice(&self.pending[..n]);
        }
        true
    }

    /// Not our wrapper after all: what was read and not written, and `rest`, go into the
    /// attachment as base64 after the lines written (each of whole 3-byte groups).
    fn give_up(&mut self, rest: &[u8], out: &mut Vec<u8>) -> Base64Lines {
        let mut lines = Base64Lines::after_lines(self.eol, self.written);
        lines.feed(&std::mem::take(&mut self.pending), out);
        lines.feed(rest, out);
        lines
    }
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

/// A last base64 line: groups of 4, padding only at its end; empty only when it is the
/// only line (an empty original).
fn last_line(content: &[u8], written: bool) -> bool {
    if content.is_empty() {
        return !written;
    }
    let data = content.strip_suffix(b"==").unwrap_or(content);
    let data = data.strip_suffix(b"=").unwrap_or(data);
    content.len() <= FULL_LINE
        && content.len().is_multiple_of(4)
        && data.iter().all(|&b| is_base64(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RuleSource, clean};
    use mail_parser::{MessageParser, MimeHeaders};

    const MAIL: &[u8] = b"X-Mailveil: v=0.0.1; pixel=0\r\n\
        From: news@sender.example\r\nTo: reader@example.org\r\nSubject: big\r\n\
        Disposition-Notification-To: news@sender.example\r\n\
        MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n\
        <p>Hi</p><img src=\"https://t.example/o.gif?e=reader@example.org\" width=1 height=1>\r\n";

    fn policy(limit: usize) -> Policy {
        let mut p = Policy {
            strip_read_receipts: true,
            ..Policy::default()
        };
        p.limits.max_message_bytes = limit;
        p
    }

    fn envelope() -> Envelope {
        Envelope::to(["reader@example.org"])
    }

    /// The output of a frontend that holds the first `held` bytes and then feeds the
    /// rest in chunks of `chunk` bytes.
    fn streamed(raw: &[u8], held: usize, chunk: usize, policy: &Policy, rules: &Rules) -> Vec<u8> {
        let held = held.min(raw.len());
        let mut t = TooLarge::new(&raw[..held], &envelope(), policy, rules);
        let mut out = t.head().to_vec();
        let from = t.resume_at();
        for piece in raw[from..].chunks(chunk.max(1)) {
            t.feed(piece, &mut out);
        }
        t.finish(&mut out);
        out
    }

    fn attached(out: &[u8]) -> Vec<u8> {
        let msg = MessageParser::default().parse(out).unwrap();
        let att: Vec<_> = msg.attachments().collect();
        assert_eq!(att.len(), 1, "{}", String::from_utf8_lossy(out));
        att[0].contents().to_vec()
    }

    #[test]
    fn streamed_bytes_are_those_of_the_wrapper_of_a_mail_held_whole() {
        let rules = Rules::default();
        let mut mbox = b"From news@sender.example Mon Jan  1 00:00:00 2024\n".to_vec();
        mbox.extend(String::from_utf8_lossy(MAIL).replace("\r\n", "\n").bytes());
        let mut long = MAIL.to_vec();
        long.extend(b"0123456789abcdef".repeat(4000));
        for raw in [MAIL, &mbox[..], &long[..]] {
            let p = policy(1 << 20);
            let judged = ["reader@example.org"];
            let whole = crate::fail_closed(raw, CODE, &envelope(), &judged, &p, &rules);
            let text = String::from_utf8_lossy(&whole.bytes);
            assert!(text.contains("error=too-large"), "{text}");
            assert!(!text.contains("Disposition-Notification-To"), "{text}");
            for (held, chunk) in [(raw.len(), 1 << 16), (200, 1), (300, 7), (400, 57)] {
                let out = streamed(raw, held, chunk, &p, &rules);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&whole.bytes),
                    "held {held}, chunks of {chunk}"
                );
            }
            // the core itself, for a mail over its limit, writes the same
            let small = policy(100);
            let over = clean(raw, &envelope(), &small, &rules);
            assert_eq!(over.bytes, whole.bytes);
            assert_eq!(over.report.error.as_deref(), Some(CODE));
            assert!(over.report.changed && !over.tempfail);
            let from_line = header_start(raw);
            assert_eq!(attached(&over.bytes), &raw[from_line..]);
        }
    }

    #[test]
    fn a_streamed_wrapper_cleaned_again_is_left_as_it_is() {
        let rules = Rules::default();
        let small = policy(100);
        let once = streamed(MAIL, 150, 13, &small, &rules);
        for limit in [100, 1 << 20] {
            let again = clean(&once, &envelope(), &policy(limit), &rules);
            assert_eq!(
                String::from_utf8_lossy(&again.bytes),
                String::from_utf8_lossy(&once),
                "limit {limit}"
            );
            assert_eq!(again.report.error.as_deref(), Some(CODE));
        }
        // streamed again, by a frontend holding less than the whole
        for (held, chunk) in [(2000, 3), (once.len(), 1000)] {
            let twice = streamed(&once, held, chunk, &small, &rules);
            assert_eq!(
                String::from_utf8_lossy(&twice),
                String::from_utf8_lossy(&once)
            );
        }
    }

    #[test]
    fn what_only_begins_as_our_wrapper_is_kept_inside_the_attachment() {
        let rules = Rules::default();
        let small = policy(100);
        let mut long = MAIL.to_vec();
        long.extend(b"0123456789abcdef".repeat(100));
        let once = streamed(&long, 150, 1000, &small, &rules);
        let text = String::from_utf8(once.clone()).unwrap();
        let closing = "\r\n--mailveil-original-0--\r\n";
        assert!(text.ends_with(closing), "{text}");
        let html = "--mailveil-original-0\r\nContent-Type: text/html\r\n\r\n\
                    <img src=\"https://t.example/forged.gif\">\r\n";
        let body = &text[..text.len() - closing.len()];
        let forged = [
            // a part slipped in before the closing delimiter
            format!("{body}\r\n{html}{}", &closing[2..]),
            // after it
            format!("{text}{html}"),
            // in the middle of the base64
            text.replacen(
                "\r\n",
                &format!("\r\n{html}"),
                text.matches("\r\n").count() - 4,
            ),
            // a line too long
            format!("{body}{}{closing}", "A".repeat(200)),
            // cut short
            body.to_string(),
        ];
        for (i, mail) in forged.iter().enumerate() {
            for (held, chunk) in [(mail.len(), 1 << 16), (2000, 5)] {
                let out = streamed(mail.as_bytes(), held, chunk, &small, &rules);
                let whole = clean(mail.as_bytes(), &envelope(), &small, &rules);
                assert_eq!(out, whole.bytes, "case {i}");
                let msg = MessageParser::default().parse(&out).unwrap();
                assert_eq!(
                    msg.parts.len(),
                    3,
                    "case {i}: {}",
                    String::from_utf8_lossy(&out)
                );
                assert!(
                    !msg.parts.iter().any(|p| p
                        .content_type()
                        .is_some_and(|c| c.subtype() == Some("html"))),
                    "case {i}"
                );
                let inside = attached(&out);
                // what the forgery added is there, raw, inside the attachment
                let tail: &[u8] = match i {
                    3 => &[b'A'; 200],
                    4 => b"",
                    _ => b"forged.gif",
                };
                assert!(
                    memchr::memmem::find(&inside, tail).is_some(),
                    "case {i}: {}",
                    String::from_utf8_lossy(&inside)
                );
                assert!(
                    !String::from_utf8_lossy(&out).contains("forged.gif"),
                    "case {i}"
                );
            }
        }
    }

    #[test]
    fn a_wrapper_with_a_second_content_type_on_top_is_not_ours() {
        let small = policy(100);
        let once = streamed(MAIL, 150, 1000, &small, &Rules::default());
        let mut forged = b"Content-Type: text/html\r\n".to_vec();
        forged.extend_from_slice(&once);
        let eol: &'static [u8] = b"\r\n";
        assert!(attach::wrapper_start(&once, eol).is_some());
        assert!(attach::wrapper_start(&forged, eol).is_none());
        // wrapped again: the forgery is the attachment
        let out = clean(&forged, &envelope(), &small, &Rules::default());
        assert_eq!(attached(&out.bytes), forged);
    }

    #[test]
    fn an_allowed_sender_keeps_the_mail_as_it_came_under_our_header() {
        let rules = Rules::compile(&[RuleSource {
            name: "allow.toml".into(),
            text: "[[allow]]\nid = \"news\"\nsenders = [\"sender.example\"]\nsource = \"t\"\n"
                .into(),
        }])
        .unwrap();
        let out = streamed(MAIL, 120, 9, &policy(100), &rules);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with(&format!(
                "X-Mailveil: v={}; skipped=allow:news\r\n",
                crate::VERSION
            )),
            "{text}"
        );
        let at = memchr::memmem::find(MAIL, b"From:").unwrap();
        assert!(out.ends_with(&MAIL[at..]));
        let t = TooLarge::new(&MAIL[..120], &envelope(), &policy(100), &rules);
        assert!(!t.rewrites_body() && !t.tempfail());
    }

    #[test]
    fn tempfail_is_said_before_anything_is_written() {
        let p = Policy {
            on_error: OnError::Tempfail,
            ..policy(100)
        };
        let t = TooLarge::new(MAIL, &envelope(), &p, &Rules::default());
        assert!(t.tempfail() && t.rewrites_body());
        assert_eq!(t.report().error.as_deref(), Some(CODE));
    }
}
