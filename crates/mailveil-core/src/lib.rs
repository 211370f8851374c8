//! The pure core of mailveil: [`clean`] takes the raw bytes of one message, its envelope,
//! the policy and the compiled rules, and returns the cleaned bytes and a report of every
//! finding. No network, no files, no global state but caches that change no output (a
//! bounded per-thread memo of each reader's recipient tokens, the functional-keyword
//! matcher; and one constant, the MIME structure parser's header table): every frontend (pipe, SMTP, milter, IMAP) calls this one function.
//!
//! ```
//! use mailveil_core::{clean, Envelope, Policy, Rules};
//!
//! let raw = b"From: news@sender.example\r\nTo: reader@example.org\r\n\
//! Content-Type: text/html\r\n\r\n<p>Hi</p><img src=\"https://t.example/open.gif?e=reader@example.org\" width=1 height=1>\r\n";
//! let out = clean(raw, &Envelope::to(["reader@example.org"]), &Policy::default(), &Rules::default());
//! let text = String::from_utf8(out.bytes).unwrap();
//! assert!(text.starts_with("X-Mailveil: v="));
//! assert!(!text.contains("t.example"));
//! assert!(text.contains("<p>Hi</p>"));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod detect;
mod envelope;
pub mod headers;
pub mod html;
mod lenient;
pub mod links;
mod memo;
mod mime;
mod policy;
pub mod proxy_sheet;
pub mod proxy_url;
mod report;
pub mod rules;
mod too_large;

pub use envelope::Envelope;
pub use headers::MessageFacts;
pub use policy::{Limits, OnError, Policy, RemoteContent, SignedContent};
pub use proxy_url::{ProxyConfig, ProxyKind};
pub use report::{
    Action, Finding, FindingKind, HEADER_NAME, Location, LocationKind, Report, UnknownName,
};
pub use rules::{RuleError, RuleSource, RuleText, Rules};
pub use too_large::TooLarge;

use headers::header_start;
use mime::transfer::Eol;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

/// The version written into the `X-Mailveil` header.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Headers that ask the reader's client to send a read receipt.
const READ_RECEIPT_HEADERS: &[&str] = &[
    "Disposition-Notification-To",
    "Return-Receipt-To",
    "X-Confirm-Reading-To",
];

/// The result of cleaning one message.
#[derive(Debug, Clone)]
pub struct Cleaned {
    /// The message to deliver: cleaned, or the original with an error header.
    pub bytes: Vec<u8>,
    /// What was found and done.
    pub report: Report,
    /// The policy asks for a temporary failure instead of passing an uncleanable
    /// message (frontends answer 4xx or exit 75); `bytes` is still a valid message.
    pub tempfail: bool,
}

/// Cleans one message. Never panics and never fails. A message that cannot be read
/// (too deep, too many parts, ambiguous, out of time) is delivered so that nothing is
/// lost and nothing fetches: its original, byte for byte, as an `application/octet-stream`
/// attachment of a short note, with `X-Mailveil: v=...; error=...` on top (and flagged
/// `tempfail` when the policy says so). A message over `max_message_bytes` is not read at
/// all and is delivered the same way, `error=too-large` ([`TooLarge`] writes the same
/// bytes for a frontend that streams it). Our header is always written by
/// this pass: an `X-Mailveil` header that came with the mail is removed. Idempotent:
/// cleaning the output again returns it byte for byte.
///
/// The `[[policy]]` entries are judged per envelope recipient, and the strictest of all
/// recipients' policies applies (one copy for everyone: what the milter must do). A
/// frontend that can deliver one copy per group of recipients uses [`policy_groups`]
/// and [`clean_for`].
pub fn clean(raw: &[u8], envelope: &Envelope, policy: &Policy, rules: &Rules) -> Cleaned {
    let everyone: Vec<usize> = (0..envelope.recipients.len()).collect();
    clean_for(raw, envelope, &everyone, policy, rules)
}

/// Like [`clean`], for the copy that goes to some of the envelope recipients only
/// (`group`: indices into `envelope.recipients`, one of [`policy_groups`]): the policy is
/// judged for them; every recipient still counts for recipient-token detection.
pub fn clean_for(
    raw: &[u8],
    envelope: &Envelope,
    group: &[usize],
    policy: &Policy,
    rules: &Rules,
) -> Cleaned {
    let judged: Vec<&str> = group
        .iter()
        .filter_map(|&i| envelope.recipients.get(i))
        .map(String::as_str)
        .collect();
    if raw.len() > policy.limits.max_message_bytes {
        // Not read: wrapped as it would be streamed (`filter` and the milter stream it).
        return too_large::clean_whole(raw, envelope, &judged, policy, rules);
    }
    let started = Instant::now();
    match catch_unwind(AssertUnwindSafe(|| {
        clean_message(raw, envelope, &judged, policy, rules, started)
    })) {
        Ok(Ok(cleaned)) => cleaned,
        Ok(Err(code)) => fail_closed(raw, code, envelope, &judged, policy, rules),
        Err(_) => fail_closed(raw, "internal", envelope, &judged, policy, rules),
    }
}

/// A mail that could not be read: the original as an attachment of a note (see
/// `mime::attach`), cleaned as any mail (its header fields: read receipts), with our
/// error header. A mail that is already such a wrapper is not wrapped again.
fn fail_closed(
    raw: &[u8],
    code: &'static str,
    envelope: &Envelope,
    judged: &[&str],
    policy: &Policy,
    rules: &Rules,
) -> Cleaned {
    let (wrapped, code) = match mime::attach::wrapped_error(raw) {
        Some(marked) => (raw.to_vec(), marked),
        None => {
            let eol = Eol::detect(raw, Eol::CrLf);
            let read = lenient::wrapper_reading(raw, eol.as_bytes());
            let head = read.as_deref().unwrap_or(raw);
            (
                mime::attach::wrap_message(raw, head, code, eol.as_bytes()),
                code,
            )
        }
    };
    // The wrapper is small work (a note, an attachment left alone): a fresh budget.
    let again = catch_unwind(AssertUnwindSafe(|| {
        clean_message(&wrapped, envelope, judged, policy, rules, Instant::now())
    }));
    let mut cleaned = match again {
        Ok(Ok(c)) => c,
        _ => with_own_header(&wrapped, error_report(code), policy),
    };
    cleaned.tempfail = policy.on_error == OnError::Tempfail;
    cleaned.report.changed = cleaned.bytes != raw;
    cleaned
}

fn clean_message(
    raw: &[u8],
    envelope: &Envelope,
    judged: &[&str],
    policy: &Policy,
    rules: &Rules,
    started: Instant,
) -> Result<Cleaned, &'static str> {
    let eol = Eol::detect(raw, Eol::CrLf);
    // Bare CRs that change what the mail holds: read it as clients read it. Those that
    // change nothing here can still change what the cleaned mail holds: a nested message
    // that both readings took for text (its mail cut short) is a message once cleaned, and
    // a bare CR then splits one of its fields for one reading only; then too, so that the
    // next pass reads what this one wrote (found by fuzzing: a second pass changed the mail).
    // A mail too complex to read both ways is refused.
    let too_complex = |_| mime::CleanError::TooComplex.code();
    // Looked for once: the whole mail is scanned for it (issue 17).
    let bare_cr = lenient::has_bare_cr(raw);
    let lenient_read = if bare_cr {
        lenient::bare_cr_reading(raw, eol.as_bytes()).map_err(too_complex)?
    } else {
        None
    };
    let read = match lenient_read {
        Some(read) => read,
        None => {
            let cleaned = clean_as_read(raw, eol, envelope, judged, policy, rules, started)?;
            let splits = bare_cr
                && cleaned.bytes != raw
                && lenient::bare_cr_reading(&cleaned.bytes, eol.as_bytes())
                    .map_err(too_complex)?
                    .is_some();
            if !splits {
                return Ok(cleaned);
            }
            lenient::normalise(raw, eol.as_bytes())
        }
    };
    let mut cleaned = clean_message(&read, envelope, judged, policy, rules, started)?;
    cleaned.report.changed = cleaned.bytes != raw;
    Ok(cleaned)
}

/// [`clean_message`] for a mail whose bare CRs, if any, read the same either way.
fn clean_as_read(
    raw: &[u8],
    eol: Eol,
    envelope: &Envelope,
    judged: &[&str],
    policy: &Policy,
    rules: &Rules,
    started: Instant,
) -> Result<Cleaned, &'static str> {
    let top = header_start(raw);
    if raw.get(top).is_some_and(|&b| b == b' ' || b == b'\t') {
        // A first line (after an mbox `From ` line) that begins with whitespace continues
        // no header. Once our header is on top it continues ours, and every later reader
        // (and our next pass) reads the mail that way: read it so now. That line goes
        // with our old header.
        let mut read_as = raw[..top].to_vec();
        read_as.extend_from_slice(format!("{HEADER_NAME}: v={VERSION}").as_bytes());
        read_as.extend_from_slice(eol.as_bytes());
        read_as.extend_from_slice(&raw[top..]);
        let mut cleaned = clean_message(&read_as, envelope, judged, policy, rules, started)?;
        cleaned.report.changed = cleaned.bytes != raw;
        return Ok(cleaned);
    }
    let facts = MessageFacts::read(raw);
    let mut addresses: Vec<String> = envelope.recipients.clone();
    addresses.extend(facts.recipients());
    let senders = senders_of(&facts, envelope);
    if let Some(id) = rules.allowed_sender(&senders) {
        return Ok(skipped(raw, format!("allow:{id}"), policy));
    }
    // Header addresses feed detection only: a sender writes them, so they never choose
    // a recipient's policy.
    let policy = &effective_policy(policy, rules, &senders, judged);
    if let Some(why) = &policy.1 {
        return Ok(skipped(raw, why.clone(), &policy.0));
    }
    let policy = &policy.0;
    let detector = detect::Detector::new(rules, addresses.iter().map(String::as_str));
    let list_unsubscribe = facts.list_unsubscribe();
    let mut report = Report::new();
    let deadline = started + policy.limits.max_time;
    let body = {
        let mut walk = mime::Walk::new(
            &detector,
            rules,
            &list_unsubscribe,
            policy,
            deadline,
            &mut report,
            eol,
        );
        mime::clean_parts(raw, "", 0, &mut walk)
    }
    .map_err(|e| e.code())?;
    let out = body.as_deref().unwrap_or(raw);
    let out_fields = headers::fields(out);
    let own: Vec<&headers::Field> = headers::named(&out_fields, HEADER_NAME).collect();
    let mut drop: Vec<std::ops::Range<usize>> = own.iter().map(|f| f.range.clone()).collect();
    let mut receipts_stripped = false;
    for name in READ_RECEIPT_HEADERS {
        for f in headers::named(&out_fields, name) {
            let action = if policy.strip_read_receipts {
                Action::Strip
            } else {
                Action::Keep
            };
            let value = String::from_utf8_lossy(&out[f.range.clone()]).into_owned();
            report.push(
                Finding {
                    kind: FindingKind::ReadReceipt,
                    part: "header".into(),
                    location: Location::header(&f.name),
                    url: value.split_once(':').map(|(_, v)| v.trim().to_string()),
                    rule: "header:read-receipt".into(),
                    tracker: None,
                    action,
                    params: Vec::new(),
                },
                policy.limits.max_findings,
            );
            if policy.strip_read_receipts {
                drop.push(f.range.clone());
                receipts_stripped = true;
            }
        }
    }
    // Our own wrapper of a mail that could not be read (a second pass): its error stays.
    if let Some(code) = mime::attach::wrapped_error(out) {
        report.error = Some(code.to_string());
    }
    // When this pass changed nothing, the counts of the pass that cleaned the mail are
    // kept (this pass cannot see what was removed): only counts, re-written by us; an
    // error or a skip is always this pass's own.
    let value = match own.as_slice() {
        [old] if body.is_none() && !receipts_stripped && report.error.is_none() => {
            report::carried_value(&out[old.range.clone()])
        }
        _ => None,
    }
    .unwrap_or_else(|| report.header_value());
    let header = headers::render(HEADER_NAME, &value, eol.as_bytes());
    let bytes = with_header(out, &header, &drop);
    report.changed = bytes != raw;
    Ok(Cleaned {
        bytes,
        report,
        tempfail: false,
    })
}

/// The envelope sender and the `From:`/`Sender:` addresses: what `[[allow]]` and the
/// sender side of `[[policy]]` match.
fn senders_of(facts: &MessageFacts, envelope: &Envelope) -> Vec<String> {
    let mut senders: Vec<String> = envelope.sender.iter().cloned().collect();
    senders.extend(facts.senders());
    senders
}

/// The envelope recipients of a mail grouped by the `[[policy]]` entries that apply to
/// them (indices into `envelope.recipients`, in order of first appearance): the
/// recipients of one group get the same cleaned copy ([`clean_for`]). One group when all
/// share a policy (the common case); none without recipients.
pub fn policy_groups(raw: &[u8], envelope: &Envelope, rules: &Rules) -> Vec<Vec<usize>> {
    let senders = senders_of(&MessageFacts::read(raw), envelope);
    let mut groups: Vec<(Vec<&str>, Vec<usize>)> = Vec::new();
    for (i, rcpt) in envelope.recipients.iter().enumerate() {
        let key: Vec<&str> = rules
            .policies_for(&senders, Some(rcpt))
            .map(|p| p.id.as_str())
            .collect();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// The policy for a mail to these envelope recipients: each recipient's own
/// ([`recipient_policy`]), and of those the [`stricter`] field by field. Tracking is
/// left alone (the second value: why) only when every recipient's policy says so.
fn effective_policy(
    base: &Policy,
    rules: &Rules,
    senders: &[String],
    recipients: &[&str],
) -> (Policy, Option<String>) {
    let mut each = recipients
        .iter()
        .map(|r| recipient_policy(base, rules, senders, Some(r)));
    let Some(first) = each.next() else {
        return recipient_policy(base, rules, senders, None);
    };
    each.fold(first, |(policy, keep), (other, other_keep)| {
        (
            stricter(policy, &other),
            keep.filter(|_| other_keep.is_some()),
        )
    })
}

/// The stricter of two recipients' policies: each field a `[[policy]]` can set takes the
/// value that removes more. A new policy field gets its line here.
fn stricter(mut a: Policy, b: &Policy) -> Policy {
    let rank = |r: RemoteContent| match r {
        RemoteContent::Keep => 0,
        RemoteContent::Proxy => 1,
        RemoteContent::Prefetch => 2,
        RemoteContent::Strip => 3,
    };
    // Resolved before remote_content changes: an unset `signed` follows it.
    if a.signed_content() == SignedContent::Clean || b.signed_content() == SignedContent::Clean {
        a.signed = Some(SignedContent::Clean);
    } else {
        a.signed = Some(SignedContent::Keep);
    }
    if rank(b.remote_content) > rank(a.remote_content) {
        a.remote_content = b.remote_content;
    }
    a.strip_read_receipts |= b.strip_read_receipts;
    a.links.keep_campaign_params &= b.links.keep_campaign_params;
    a
}

/// The policy for a mail from `senders` to one recipient (or to none known) after the
/// `[[policy]]` entries that apply, in order; the second value is set when one of them
/// says to leave tracking alone.
fn recipient_policy(
    base: &Policy,
    rules: &Rules,
    senders: &[String],
    recipient: Option<&str>,
) -> (Policy, Option<String>) {
    let mut policy = base.clone();
    for p in rules.policies_for(senders, recipient) {
        if let Some(choice) = p.remote_content {
            policy.remote_content = match choice {
                rules::RemoteChoice::Keep => RemoteContent::Keep,
                rules::RemoteChoice::Strip => RemoteContent::Strip,
            };
        }
        if let Some(choice) = p.signed {
            policy.signed = Some(match choice {
                rules::SignedChoice::Keep => SignedContent::Keep,
                rules::SignedChoice::Clean => SignedContent::Clean,
            });
        }
        if let Some(keep) = p.keep_campaign_params {
            policy.links.keep_campaign_params = keep;
        }
        if let Some(strip) = p.strip_read_receipts {
            policy.strip_read_receipts = strip;
        }
        if p.tracking == Some(rules::RuleAction::Keep) {
            return (policy, Some(format!("policy:{}", p.id)));
        }
    }
    (policy, None)
}

/// A mail this crate wrote, with its `X-Mailveil` field written anew for `report`, in
/// place (the other fields keep their order and bytes): for a step after the core that
/// learns what was really done (prefetch at delivery), so that the header says it.
/// Unchanged when the mail has no such field.
pub fn restate_header(bytes: &[u8], report: &Report) -> Vec<u8> {
    let fields = headers::fields(bytes);
    let Some(field) = headers::named(&fields, HEADER_NAME).next() else {
        return bytes.to_vec();
    };
    let eol = Eol::detect(bytes, Eol::CrLf);
    let header = headers::render(HEADER_NAME, &report.header_value(), eol.as_bytes());
    let mut out = Vec::with_capacity(bytes.len() + 16);
    out.extend_from_slice(&bytes[..field.range.start]);
    out.extend_from_slice(&header);
    out.extend_from_slice(&bytes[field.range.end..]);
    out
}

/// A mail let through on purpose: only our header changes.
fn skipped(raw: &[u8], why: String, policy: &Policy) -> Cleaned {
    let mut report = Report::new();
    report.skipped = Some(why);
    with_own_header(raw, report, policy)
}

fn error_report(code: &str) -> Report {
    let mut report = Report::new();
    report.error = Some(code.to_string());
    report
}

/// The message as it came with our header for `report` on top, in place of any
/// `X-Mailveil` header it came with; `tempfail` when it reports an error and the policy
/// says so.
fn with_own_header(raw: &[u8], mut report: Report, policy: &Policy) -> Cleaned {
    let fields = headers::fields(raw);
    let drop: Vec<std::ops::Range<usize>> = headers::named(&fields, HEADER_NAME)
        .map(|f| f.range.clone())
        .collect();
    let eol = Eol::detect(raw, Eol::CrLf);
    let header = headers::render(HEADER_NAME, &report.header_value(), eol.as_bytes());
    let bytes = with_header(raw, &header, &drop);
    report.changed = bytes != raw;
    Cleaned {
        bytes,
        tempfail: report.error.is_some() && policy.on_error == OnError::Tempfail,
        report,
    }
}

/// `header` inserted on top (after an mbox `From ` line), the `drop` ranges removed.
fn with_header(msg: &[u8], header: &[u8], drop: &[std::ops::Range<usize>]) -> Vec<u8> {
    let insert_at = header_start(msg);
    let mut drop = drop.to_vec();
    drop.sort_by_key(|r| r.start);
    let mut out = Vec::with_capacity(msg.len() + header.len());
    out.extend_from_slice(&msg[..insert_at]);
    out.extend_from_slice(header);
    let mut at = insert_at;
    for r in drop {
        if r.start < at {
            continue;
        }
        out.extend_from_slice(&msg[at..r.start]);
        at = r.end;
    }
    out.extend_from_slice(&msg[at..]);
    out
}
