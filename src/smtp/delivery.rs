//! The end of one mail transaction: clean the message and hand it to the downstream,
//! one copy per group of recipients that share a `[[policy]]`, and say what each
//! recipient's copy became.
//!
//! RCPT went downstream live, before the message was there (and with it the `From:`
//! that sender policies read), so every recipient sits in the one open downstream
//! transaction. With one policy group (the common case) that transaction takes the
//! cleaned copy, as it always did. With more, it is reset (RSET) and each group gets a
//! transaction of its own on the same connection, one after the other: XFORWARD, the
//! same MAIL FROM, the group's RCPTs, DATA with the group's copy. A recipient's outcome
//! is its group's answer, or the refusal its replayed RCPT got. Groups are cleaned and
//! sent one at a time, so at most one cleaned copy is held at once.

use super::conn::Shared;
use super::downstream::{DownError, Downstream};
use super::session::{Rcpt, Reply, Session, Transaction, down_unreachable};
use mailveil_core::{Envelope, HEADER_NAME, OnError, VERSION, clean_for, policy_groups};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, info, warn};

/// One cleaned copy, ready to send.
struct Copy {
    bytes: Vec<u8>,
    findings: String,
    tempfail: bool,
    record: Option<crate::store::MailRecord>,
    clean_us: u64,
}

/// What became of one copy, for the log line.
struct Sent {
    rcpts: usize,
    out_size: usize,
    findings: String,
    clean_us: u64,
    downstream: String,
}

/// Cleans the message and hands it to the downstream; returns the replies for the
/// client (one, or one per recipient for LMTP clients). Ends the transaction.
pub async fn deliver(
    shared: &Shared,
    down: &mut Option<Downstream>,
    session: &mut Session,
    raw: Vec<u8>,
    peer: &str,
) -> Vec<Reply> {
    let started = Instant::now();
    let Some(tx) = session.transaction() else {
        return vec![Reply::new(503, "5.5.1 No transaction")];
    };
    let tx = Transaction {
        chunks: Vec::new(),
        ..tx.clone()
    };
    let queue_id = session
        .queue_id()
        .map(str::to_string)
        .or_else(|| received_queue_id(&raw))
        .unwrap_or_default();
    // Our records match the unquoted mailbox; the wire gets the RFC 5321 form.
    let envelope = Envelope {
        sender: tx.sender.as_ref().map(|m| m.address()),
        recipients: tx.rcpts.iter().map(|r| r.mailbox.address()).collect(),
    };
    let groups = policy_groups(&raw, &envelope, &shared.rules.get());
    let raw = Arc::new(raw);
    let mut outcomes: Vec<Option<Reply>> = vec![None; tx.rcpts.len()];
    let mut sent = Vec::with_capacity(groups.len());
    if groups.len() > 1 {
        reset(down).await;
    }
    for group in &groups {
        let copy = clean_caught(shared, &raw, &envelope, group).await;
        let downstream = if copy.tempfail {
            if groups.len() == 1 {
                reset(down).await;
            }
            let r = Reply::new(451, "4.3.0 Message could not be cleaned, try again later");
            for &i in group {
                outcomes[i] = Some(r.clone());
            }
            "not sent (on_error=tempfail)".to_string()
        } else {
            let mut said = Vec::new();
            let replies = if groups.len() == 1 {
                send_open(down, &copy.bytes, group.len(), &mut said).await
            } else {
                send_group(down, session.xforward(), &tx, group, &copy.bytes, &mut said).await
            };
            for (&i, r) in group.iter().zip(replies) {
                outcomes[i] = r;
            }
            if said.is_empty() {
                crate::web::metrics::downstream_reply(0);
                "failed or not connected".to_string()
            } else {
                said.join(" | ")
            }
        };
        if let (Some(reports), Some(mut record)) = (shared.reports.clone(), copy.record) {
            record.downstream = group
                .first()
                .and_then(|&i| outcomes[i].as_ref())
                .map(|r| i64::from(r.code));
            // After delivery and off the reply path: a store failure never affects mail.
            tokio::spawn(async move {
                match reports.store.record(&record).await {
                    Ok(id) => debug!(report_id = id, findings = record.findings.len(), "recorded"),
                    Err(e) => warn!("report not recorded: {e}"),
                }
            });
        }
        sent.push(Sent {
            rcpts: group.len(),
            out_size: copy.bytes.len(),
            findings: copy.findings,
            clean_us: copy.clean_us,
            downstream,
        });
    }
    let outcomes: Vec<Reply> = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(down_unreachable))
        .collect();
    let answers = session.data_replies(&outcomes);
    let codes: Vec<u16> = answers.iter().map(|r| r.code).collect();
    let from = tx
        .sender
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let [queue_id, from] = crate::printable::all([&queue_id, &from]);
    for (n, s) in sent.iter().enumerate() {
        info!(
            queue_id = %queue_id,
            from = %from,
            rcpts = s.rcpts,
            copy = %format!("{}/{}", n + 1, sent.len()),
            size = raw.len(),
            out_size = s.out_size,
            findings = %s.findings,
            ms = started.elapsed().as_millis() as u64,
            clean_us = s.clean_us,
            downstream = %s.downstream,
            reply = ?codes,
            %peer,
            "mail"
        );
    }
    session.end_transaction();
    answers
}

/// The copy for the transaction that is open downstream (every recipient in it): the
/// outcome per recipient (`None`: not known). What the downstream said goes to `said`.
async fn send_open(
    down: &mut Option<Downstream>,
    bytes: &[u8],
    n: usize,
    said: &mut Vec<String>,
) -> Vec<Option<Reply>> {
    let Some(d) = down.as_mut() else {
        return vec![None; n];
    };
    match d.data(bytes, n).await {
        Ok(replies) => spread(replies, n, said),
        Err(e) => {
            debug!("downstream DATA failed: {e}");
            *down = None;
            vec![None; n]
        }
    }
}

/// One group's own transaction: MAIL, the group's RCPTs, DATA. The outcome per member.
async fn send_group(
    down: &mut Option<Downstream>,
    xforward: &[(String, String)],
    tx: &Transaction,
    group: &[usize],
    bytes: &[u8],
    said: &mut Vec<String>,
) -> Vec<Option<Reply>> {
    let mut out: Vec<Option<Reply>> = vec![None; group.len()];
    let Some(d) = down.as_mut() else {
        return out;
    };
    let result = replay(d, xforward, tx, group, bytes, &mut out, said).await;
    if let Err(e) = result {
        debug!("downstream failed in a policy group's transaction: {e}");
        *down = None;
    }
    out
}

async fn replay(
    d: &mut Downstream,
    xforward: &[(String, String)],
    tx: &Transaction,
    group: &[usize],
    bytes: &[u8],
    out: &mut [Option<Reply>],
    said: &mut Vec<String>,
) -> Result<(), DownError> {
    let mail = d.mail(tx.sender.as_ref(), &tx.params, xforward).await?;
    if !mail.is_positive() {
        said.push(format!("MAIL {} {}", mail.code, mail.text()));
        out.fill(Some(mail));
        return Ok(());
    }
    let mut accepted = Vec::with_capacity(group.len());
    for (slot, &i) in group.iter().enumerate() {
        let rcpt: &Rcpt = &tx.rcpts[i];
        let reply = d.rcpt(rcpt).await?;
        if reply.is_positive() {
            accepted.push(slot);
        } else {
            said.push(format!("RCPT {} {}", reply.code, reply.text()));
            out[slot] = Some(reply);
        }
    }
    if accepted.is_empty() {
        return d.rset().await;
    }
    let replies = spread(d.data(bytes, accepted.len()).await?, accepted.len(), said);
    for (slot, r) in accepted.into_iter().zip(replies) {
        out[slot] = r;
    }
    Ok(())
}

/// The downstream's replies after the data, one per recipient: LMTP gives one each;
/// SMTP (or a refused DATA) one for all. Counted in the metrics and noted in `said`.
fn spread(replies: Vec<Reply>, n: usize, said: &mut Vec<String>) -> Vec<Option<Reply>> {
    for r in &replies {
        crate::web::metrics::downstream_reply(r.code);
        said.push(format!("{} {}", r.code, r.text()));
    }
    if replies.len() == n {
        return replies.into_iter().map(Some).collect();
    }
    vec![replies.into_iter().next(); n]
}

/// Ends an open downstream transaction (RSET); a connection that fails it is dropped.
async fn reset(down: &mut Option<Downstream>) {
    if let Some(d) = down.as_mut().filter(|d| d.in_transaction())
        && d.rset().await.is_err()
    {
        *down = None;
    }
}

/// Runs the core on a blocking thread with any panic caught, so one mail cannot take the
/// server down: the copy for `group` (indices into the envelope's recipients), the
/// findings summary, whether the policy asks for a temporary failure, and the record
/// for the report store (when one is configured). Counts the copy in the metrics.
async fn clean_caught(
    shared: &Shared,
    raw: &Arc<Vec<u8>>,
    envelope: &Envelope,
    group: &[usize],
) -> Copy {
    let cleaning = Instant::now();
    let policy = shared.policy.clone();
    let rules = shared.rules.get();
    let input = Arc::clone(raw);
    let envelope = envelope.clone();
    let group = group.to_vec();
    let debug = shared.reports.as_ref().map(|r| r.debug);
    let job = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        catch_unwind(AssertUnwindSafe(|| {
            clean_for(&input, &envelope, &group, &policy, &rules)
        }))
        .map(|cleaned| {
            let elapsed = started.elapsed();
            crate::web::metrics::mail_cleaned(&cleaned.report, elapsed);
            let record = debug.map(|debug| {
                crate::store::MailRecord::from_report(
                    &cleaned.report,
                    &envelope,
                    &input,
                    crate::store::now(),
                    elapsed.as_millis() as i64,
                    debug,
                )
            });
            (cleaned, record)
        })
    });
    let (bytes, findings, tempfail, record) = match job.await {
        Ok(Ok((cleaned, record))) => {
            let summary = cleaned.report.header_value();
            if let Some(err) = &cleaned.report.error {
                warn!("mail passed unchanged: {err}");
            }
            if let Some((proxy, deadline)) = &shared.prefetch {
                // MPP: fetch what the mail will show now, before it is delivered.
                let p = proxy.prefetch(&cleaned.report, *deadline).await;
                if p.urls + p.skipped > 0 {
                    tracing::info!(
                        urls = p.urls,
                        fetched = p.fetched,
                        cached = p.cached,
                        failed = p.failed,
                        late = p.late,
                        skipped = p.skipped,
                        ms = p.elapsed.as_millis() as u64,
                        "prefetch"
                    );
                }
            }
            (cleaned.bytes, summary, cleaned.tempfail, record)
        }
        _ => {
            warn!("cleaning panicked; mail passed unchanged");
            crate::web::metrics::mail_error("internal");
            let tempfail = shared.policy.on_error == OnError::Tempfail;
            let mut out = format!("{HEADER_NAME}: v={VERSION}; error=internal\r\n").into_bytes();
            out.extend_from_slice(raw);
            (out, format!("v={VERSION}; error=internal"), tempfail, None)
        }
    };
    Copy {
        bytes,
        findings,
        tempfail,
        record,
        // End of DATA to the handoff downstream: what mailveil adds to each mail.
        clean_us: cleaning.elapsed().as_micros() as u64,
    }
}

/// The queue id from the top `Received:` header (`... with ESMTP id 4Xyz...;`).
pub fn received_queue_id(raw: &[u8]) -> Option<String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(raw.len().min(64 * 1024));
    let head = String::from_utf8_lossy(&raw[..head_end.min(64 * 1024)]);
    let mut lines = head.split('\n');
    let mut received = String::new();
    for line in lines.by_ref() {
        if line.len() >= 9 && line[..9].eq_ignore_ascii_case("received:") {
            received.push_str(line);
            break;
        }
    }
    if received.is_empty() {
        return None;
    }
    for line in lines {
        if line.starts_with([' ', '\t']) {
            received.push(' ');
            received.push_str(line);
        } else {
            break;
        }
    }
    let mut words = received.split_ascii_whitespace();
    while let Some(w) = words.next() {
        if w == "id" {
            let id = words.next()?.trim_end_matches(';');
            return (!id.is_empty()).then(|| id.to_string());
        }
    }
    None
}
