//! The end of one mail transaction: clean the message through the pipeline and hand it
//! to the downstream, one copy per group of recipients that share a `[[policy]]`, and
//! say what each recipient's copy became.
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
use crate::pipeline::{MailMeta, Outcome, Processed};
use mailveil_core::{Envelope, MessageFacts};
use std::sync::Arc;
use tracing::debug;

/// What became of one copy, for its log line.
struct Sent {
    copy: Processed,
    /// The downstream's words (or why nothing was sent).
    said: String,
    /// Its replies after the data (`None`: the copy was not handed over).
    replies: Option<Vec<u16>>,
    /// The reply of the copy's first recipient, for the report store.
    code: Option<u16>,
}

/// Cleans the message and hands it to the downstream; returns the replies for the
/// client (one, or one per recipient for LMTP clients). Ends the transaction.
pub(crate) async fn deliver(
    shared: &Shared,
    down: &mut Option<Downstream>,
    session: &mut Session,
    raw: Vec<u8>,
    peer: &str,
) -> Vec<Reply> {
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
        .or_else(|| MessageFacts::read(&raw).received_id())
        .unwrap_or_default();
    // Our records match the unquoted mailbox; the wire gets the RFC 5321 form.
    let envelope = Envelope {
        sender: tx.sender.as_ref().map(|m| m.address()),
        recipients: tx.rcpts.iter().map(|r| r.mailbox.address()).collect(),
    };
    let meta = MailMeta {
        frontend: "serve",
        queue_id,
        peer: peer.to_string(),
    };
    let pipeline = &shared.pipeline;
    let mail = pipeline.receive(Arc::new(raw), envelope, meta).await;
    let groups = pipeline.groups(&mail);
    let mut outcomes: Vec<Option<Reply>> = vec![None; tx.rcpts.len()];
    let mut sent: Vec<Sent> = Vec::with_capacity(groups.len());
    if groups.len() > 1 {
        reset(down).await;
    }
    for (n, group) in groups.iter().enumerate() {
        let mut copy = pipeline.clean(&mail, group, (n + 1, groups.len())).await;
        let (said, replies) = if copy.cleaned.tempfail {
            if groups.len() == 1 {
                reset(down).await;
            }
            let r = Reply::new(451, "4.3.0 Message could not be cleaned, try again later");
            for &i in group {
                outcomes[i] = Some(r.clone());
            }
            ("not sent (tempfail)".to_string(), None)
        } else {
            let mut said = Vec::new();
            let mut codes = Vec::new();
            let bytes = &copy.cleaned.bytes;
            let replies = if groups.len() == 1 {
                send_open(down, bytes, group.len(), &mut said, &mut codes).await
            } else {
                send_group(
                    down,
                    session.xforward(),
                    &tx,
                    group,
                    bytes,
                    &mut said,
                    &mut codes,
                )
                .await
            };
            for (&i, r) in group.iter().zip(replies) {
                outcomes[i] = r;
            }
            let said = if said.is_empty() {
                "failed or not connected".to_string()
            } else {
                said.join(" | ")
            };
            (said, Some(codes))
        };
        // One cleaned copy held at a time: this one is sent.
        copy.delivered();
        let code = group
            .first()
            .and_then(|&i| outcomes[i].as_ref())
            .map(|r| r.code);
        sent.push(Sent {
            copy,
            said,
            replies,
            code,
        });
    }
    let outcomes: Vec<Reply> = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(down_unreachable))
        .collect();
    let answers = session.data_replies(&outcomes);
    let codes: Vec<u16> = answers.iter().map(|r| r.code).collect();
    for s in sent {
        // After delivery and off the reply path: a store failure never affects mail.
        s.copy.finish(Outcome {
            code: s.code,
            downstream: s.replies,
            result: format!("downstream={} reply={codes:?}", s.said),
        });
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
    codes: &mut Vec<u16>,
) -> Vec<Option<Reply>> {
    let Some(d) = down.as_mut() else {
        return vec![None; n];
    };
    match d.data(bytes, n).await {
        Ok(replies) => spread(replies, n, said, codes),
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
    codes: &mut Vec<u16>,
) -> Vec<Option<Reply>> {
    let mut out: Vec<Option<Reply>> = vec![None; group.len()];
    let Some(d) = down.as_mut() else {
        return out;
    };
    let result = replay(d, xforward, tx, group, bytes, &mut out, (said, codes)).await;
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
    (said, codes): (&mut Vec<String>, &mut Vec<u16>),
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
    let replies = spread(
        d.data(bytes, accepted.len()).await?,
        accepted.len(),
        said,
        codes,
    );
    for (slot, r) in accepted.into_iter().zip(replies) {
        out[slot] = r;
    }
    Ok(())
}

/// The downstream's replies after the data, one per recipient: LMTP gives one each;
/// SMTP (or a refused DATA) one for all. Noted in `said` and `codes`.
fn spread(
    replies: Vec<Reply>,
    n: usize,
    said: &mut Vec<String>,
    codes: &mut Vec<u16>,
) -> Vec<Option<Reply>> {
    for r in &replies {
        codes.push(r.code);
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
