//! The pure core of mailveil: [`clean`] takes the raw bytes of one message, its envelope,
//! the policy and the compiled rules, and returns the cleaned bytes and a report of every
//! finding. No network, no files, no global state: every frontend (pipe, SMTP, milter,
//! IMAP) calls this one function.
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
mod headers;
pub mod html;
pub mod links;
mod mime;
mod policy;
pub mod proxy_url;
mod report;
pub mod rules;

pub use envelope::Envelope;
pub use policy::{Limits, OnError, Policy, RemoteContent};
pub use proxy_url::{ProxyConfig, ProxyKind};
pub use report::{Action, Finding, FindingKind, HEADER_NAME, Report};
pub use rules::{RuleError, RuleSource, Rules};

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

/// Headers whose addresses are the reader's (besides the envelope recipients).
const RECIPIENT_HEADERS: &[&str] = &["To", "Delivered-To", "X-Original-To", "Envelope-To"];

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

/// Cleans one message. Never panics and never fails: a message that cannot be cleaned
/// comes back unchanged with `X-Mailveil: v=...; error=...` on top (or flagged
/// `tempfail` when the policy says so). Idempotent: cleaning the output again returns it
/// byte for byte.
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
    let started = Instant::now();
    let judged: Vec<&str> = group
        .iter()
        .filter_map(|&i| envelope.recipients.get(i))
        .map(String::as_str)
        .collect();
    match catch_unwind(AssertUnwindSafe(|| {
        clean_message(raw, envelope, &judged, policy, rules, started)
    })) {
        Ok(cleaned) => cleaned,
        Err(_) => failed(raw, "internal", policy),
    }
}

fn clean_message(
    raw: &[u8],
    envelope: &Envelope,
    judged: &[&str],
    policy: &Policy,
    rules: &Rules,
    started: Instant,
) -> Cleaned {
    if raw.len() > policy.limits.max_message_bytes {
        return failed(raw, mime::CleanError::TooLarge.code(), policy);
    }
    let top = header_start(raw);
    if raw.get(top).is_some_and(|&b| b == b' ' || b == b'\t') {
        // A first line (after an mbox `From ` line) that begins with whitespace continues
        // no header. Once our header is on top it continues ours, and every later reader
        // (and our next pass) reads the mail that way: read it so now. That line goes
        // with our old header.
        let eol = Eol::detect(raw, Eol::CrLf);
        let mut read_as = raw[..top].to_vec();
        read_as.extend_from_slice(format!("{HEADER_NAME}: v={VERSION}").as_bytes());
        read_as.extend_from_slice(eol.as_bytes());
        read_as.extend_from_slice(&raw[top..]);
        return clean_message(&read_as, envelope, judged, policy, rules, started);
    }
    let eol = Eol::detect(raw, Eol::CrLf);
    let fields = headers::fields(raw);
    let mut addresses: Vec<String> = envelope.recipients.clone();
    for name in RECIPIENT_HEADERS {
        for f in headers::named(&fields, name) {
            addresses.extend(addresses_in(&raw[f.range.clone()]));
        }
    }
    let senders = senders_of(raw, &fields, envelope);
    if let Some(id) = rules.allowed_sender(&senders) {
        return skipped(raw, format!("allow:{id}"));
    }
    // Header addresses feed detection only: a sender writes them, so they never choose
    // a recipient's policy.
    let policy = &effective_policy(policy, rules, &senders, judged);
    if let Some(why) = &policy.1 {
        return skipped(raw, why.clone());
    }
    let policy = &policy.0;
    let detector = detect::Detector::new(rules, addresses.iter().map(String::as_str));
    let list_unsubscribe: Vec<String> = headers::named(&fields, "List-Unsubscribe")
        .flat_map(|f| bracketed(&raw[f.range.clone()]))
        .collect();
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
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => return failed(raw, e.code(), policy),
    };
    let out = body.as_deref().unwrap_or(raw);
    let out_fields = headers::fields(out);
    let mut drop: Vec<std::ops::Range<usize>> = headers::named(&out_fields, HEADER_NAME)
        .map(|f| f.range.clone())
        .collect();
    let had_own_header = !drop.is_empty();
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
                    location: format!("header:{}", f.name),
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
    if body.is_none() && !receipts_stripped && had_own_header {
        return Cleaned {
            bytes: raw.to_vec(),
            report,
            tempfail: false,
        };
    }
    let header = headers::render(HEADER_NAME, &report.header_value(), eol.as_bytes());
    let bytes = with_header(out, &header, &drop);
    report.changed = bytes != raw;
    Cleaned {
        bytes,
        report,
        tempfail: false,
    }
}

/// The envelope sender and the `From:`/`Sender:` addresses: what `[[allow]]` and the
/// sender side of `[[policy]]` match.
fn senders_of(raw: &[u8], fields: &[headers::Field], envelope: &Envelope) -> Vec<String> {
    let mut senders: Vec<String> = envelope.sender.iter().cloned().collect();
    for name in ["From", "Sender"] {
        for f in headers::named(fields, name) {
            senders.extend(addresses_in(&raw[f.range.clone()]));
        }
    }
    senders
}

/// The envelope recipients of a mail grouped by the `[[policy]]` entries that apply to
/// them (indices into `envelope.recipients`, in order of first appearance): the
/// recipients of one group get the same cleaned copy ([`clean_for`]). One group when all
/// share a policy (the common case); none without recipients.
pub fn policy_groups(raw: &[u8], envelope: &Envelope, rules: &Rules) -> Vec<Vec<usize>> {
    let fields = headers::fields(raw);
    let senders = senders_of(raw, &fields, envelope);
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

/// A mail let through on purpose: only the header is added (and not twice).
fn skipped(raw: &[u8], why: String) -> Cleaned {
    let mut report = Report::new();
    report.skipped = Some(why);
    untouched(raw, report, false)
}

/// The original message with an error header on top (or as it came, if it already
/// carries our header: that keeps the error path idempotent too).
fn failed(raw: &[u8], code: &str, policy: &Policy) -> Cleaned {
    let mut report = Report::new();
    report.error = Some(code.to_string());
    untouched(raw, report, policy.on_error == OnError::Tempfail)
}

/// The message as it came, with the report's header on top unless it already carries one.
fn untouched(raw: &[u8], mut report: Report, tempfail: bool) -> Cleaned {
    let fields = headers::fields(raw);
    let bytes = if headers::named(&fields, HEADER_NAME).next().is_some() {
        raw.to_vec()
    } else {
        let eol = Eol::detect(raw, Eol::CrLf);
        let header = headers::render(HEADER_NAME, &report.header_value(), eol.as_bytes());
        with_header(raw, &header, &[])
    };
    report.changed = bytes != raw;
    Cleaned {
        bytes,
        report,
        tempfail,
    }
}

/// Where our header goes: on top, after an mbox `From ` line if there is one.
fn header_start(msg: &[u8]) -> usize {
    if msg.starts_with(b"From ") {
        msg.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1)
    } else {
        0
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

/// The `<...>` items of a header field (List-Unsubscribe URLs).
fn bracketed(field: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(field);
    text.split('<')
        .skip(1)
        .filter_map(|s| s.split_once('>'))
        .map(|(u, _)| u.split_whitespace().collect::<String>())
        .collect()
}

/// Mail addresses in a header field (`Name <a@b>`, `a@b, c@d`).
fn addresses_in(field: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(field);
    let value = text.split_once(':').map_or("", |(_, v)| v);
    value
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '<' | '>' | '"' | ';' | '(' | ')'))
        .filter(|w| w.contains('@') && w.len() >= 6)
        .map(str::to_string)
        .collect()
}
