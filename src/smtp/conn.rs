//! Drives one client connection: reads commands, runs the [`Session`] state machine,
//! passes the envelope to the downstream as it arrives, reads the message, cleans it
//! and delivers it, and answers only after the downstream has answered.

use super::downstream::{Connector, DownError, Downstream, Timeouts};
use super::io::{Conn, DataDeadline, Io, ReadError};
use super::session::{Rcpt, Reply, Session, Settings, Step, down_unreachable};
use mailveil_core::{Envelope, HEADER_NAME, OnError, Policy, VERSION, clean};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

/// What every session of one server shares.
pub struct Shared {
    /// Protocol settings.
    pub settings: Settings,
    /// Time for a whole command line (and for each reply write).
    pub command_timeout: Duration,
    /// Wait for each read of message data.
    pub data_timeout: Duration,
    /// Average bytes per second message data must arrive at (0: no floor).
    pub min_data_rate: u64,
    /// Longest command line accepted, CRLF included.
    pub max_line_bytes: usize,
    /// One permit per mail being received (DATA or BDAT) at once: what bounds memory
    /// (`max_transfers` x `max_message_bytes`), however many sessions sit idle.
    pub transfers: Arc<Semaphore>,
    /// Where mail goes.
    pub connector: Arc<dyn Connector>,
    /// Downstream timeouts.
    pub down_timeouts: Timeouts,
    /// Cleaning policy.
    pub policy: Policy,
    /// Compiled rules, swapped on reload.
    pub rules: Arc<crate::rule_files::LiveRules>,
    /// STARTTLS, when configured.
    pub tls: Option<TlsAcceptor>,
    /// The image proxy and the per-mail prefetch deadline, when `prefetch` is on.
    pub prefetch: Option<(Arc<crate::proxy::Proxy>, Duration)>,
    /// Where each mail's report is recorded, when a report store is configured.
    pub reports: Option<Reports>,
}

/// The report store and how to fill it.
#[derive(Clone)]
pub struct Reports {
    /// The store.
    pub store: Arc<dyn crate::store::ReportStore>,
    /// Keep full URLs.
    pub debug: bool,
}

/// Resolves when the server starts shutting down.
async fn shutdown_signal(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|down| *down).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs one session to its end. Never panics on client input; errors end the session.
pub async fn run_session(
    shared: Arc<Shared>,
    stream: Box<dyn Io>,
    peer: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn = Conn::new(stream);
    let mut session = Session::new(shared.settings.clone());
    let mut down: Option<Downstream> = None;
    // Held from the first BDAT chunk to the end of the transaction.
    let mut transfer: Option<OwnedSemaphorePermit> = None;
    let t = shared.command_timeout;
    debug!(%peer, "session start");
    if conn.write(&session.greeting().to_wire(), t).await.is_err() {
        return;
    }
    loop {
        let stopping = *shutdown.borrow();
        if stopping && !session.in_transaction() {
            let _ = conn.write(b"421 4.3.2 Service shutting down\r\n", t).await;
            break;
        }
        let read = tokio::select! {
            r = conn.read_line(shared.max_line_bytes, t) => r,
            () = shutdown_signal(&mut shutdown), if !stopping && !session.in_transaction() => continue,
        };
        let step = match read {
            Ok(line) => session.command(&line),
            // Counted as an error: a client that keeps sending overlong lines is cut.
            Err(ReadError::TooLong) => session.line_too_long(),
            Err(ReadError::Timeout) => {
                let _ = conn.write(b"421 4.4.2 Timeout, closing\r\n", t).await;
                break;
            }
            Err(e) => {
                debug!(%peer, "client gone: {e}");
                break;
            }
        };
        let replies: Vec<Reply> = match step {
            Step::Reply(r) => vec![r],
            Step::Close(r) => {
                let _ = conn.write(&r.to_wire(), t).await;
                break;
            }
            Step::Hello => {
                if let Some(d) = down.as_mut().filter(|d| d.in_transaction())
                    && d.rset().await.is_err()
                {
                    down = None;
                }
                if down.is_none() {
                    down = connect(&shared).await;
                }
                vec![session.hello_reply(down.as_ref().map(Downstream::caps))]
            }
            Step::StartTls => {
                let Some(acceptor) = shared.tls.clone() else {
                    break;
                };
                if conn
                    .write(b"220 2.0.0 Ready to start TLS\r\n", t)
                    .await
                    .is_err()
                {
                    break;
                }
                // Whatever the client pipelined in plaintext after STARTTLS is dropped.
                let stream = conn.into_stream();
                match tokio::time::timeout(t, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        conn = Conn::new(Box::new(tls));
                        session.tls_started();
                        continue;
                    }
                    Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => debug!(%peer, "TLS handshake timed out"),
                }
                if let Some(d) = down {
                    d.quit().await;
                }
                return;
            }
            Step::Mail { sender, params } => {
                let reply = mail(&shared, &mut down, &session, &sender, &params).await;
                vec![session.mail_result(sender, params, &reply)]
            }
            Step::Rcpt(rcpt) => {
                let reply = rcpt_downstream(&mut down, &rcpt).await;
                vec![session.rcpt_result(rcpt, &reply)]
            }
            Step::Data => {
                let Ok(_permit) = Arc::clone(&shared.transfers).try_acquire_owned() else {
                    abandon(&mut down, &mut session).await;
                    let r = busy(&peer);
                    if conn.write(&r.to_wire(), t).await.is_err() {
                        break;
                    }
                    continue;
                };
                if conn
                    .write(b"354 End data with <CR><LF>.<CR><LF>\r\n", t)
                    .await
                    .is_err()
                {
                    break;
                }
                let body = match conn
                    .read_data(shared.settings.max_message_bytes, data_deadline(&shared))
                    .await
                {
                    Ok(body) => body,
                    Err(e) => {
                        // Nothing was sent downstream yet: the mail stays with the client.
                        warn!(%peer, "message not received: {e}");
                        if matches!(e, ReadError::Timeout) {
                            let _ = conn.write(b"421 4.4.2 Timeout, closing\r\n", t).await;
                        }
                        break;
                    }
                };
                if body.too_big {
                    abandon(&mut down, &mut session).await;
                    vec![Reply::new(552, "5.3.4 Message size exceeds the limit")]
                } else {
                    deliver(&shared, &mut down, &mut session, body.bytes, &peer).await
                }
            }
            Step::Bdat {
                size,
                mut discard,
                mut reply,
            } => {
                if !discard && transfer.is_none() {
                    transfer = Arc::clone(&shared.transfers).try_acquire_owned().ok();
                    if transfer.is_none() {
                        // The chunk is on its way: read and drop it, then refuse the mail.
                        discard = true;
                        reply = Some(busy(&peer));
                        session.end_transaction();
                    }
                }
                let mut chunks = session
                    .transaction_mut()
                    .map(|tx| std::mem::take(&mut tx.chunks))
                    .unwrap_or_default();
                if let Err(e) = conn
                    .read_chunk(size, &mut chunks, discard, data_deadline(&shared))
                    .await
                {
                    warn!(%peer, "BDAT chunk not received: {e}");
                    if matches!(e, ReadError::Timeout) {
                        let _ = conn.write(b"421 4.4.2 Timeout, closing\r\n", t).await;
                    }
                    break;
                }
                match reply {
                    Some(r) => {
                        if !r.is_positive() && !session.in_transaction() {
                            abandon(&mut down, &mut session).await;
                        } else if let Some(tx) = session.transaction_mut() {
                            tx.chunks = chunks;
                        }
                        vec![r]
                    }
                    None => deliver(&shared, &mut down, &mut session, chunks, &peer).await,
                }
            }
            Step::Rset(r) => {
                if let Some(d) = down.as_mut().filter(|d| d.in_transaction())
                    && d.rset().await.is_err()
                {
                    down = None;
                }
                vec![r]
            }
        };
        if !session.in_transaction() {
            transfer = None;
        }
        let wire: Vec<u8> = replies.iter().flat_map(Reply::to_wire).collect();
        if conn.write(&wire, t).await.is_err() {
            break;
        }
    }
    if let Some(d) = down {
        d.quit().await;
    }
    conn.shutdown().await;
    debug!(%peer, "session end");
}

/// The reply when `max_transfers` mails are already being received: the client keeps
/// the mail and retries.
fn busy(peer: &str) -> Reply {
    warn!(%peer, "mail refused for now: max_transfers mails are being received");
    Reply::new(451, "4.3.2 Too many mails in transfer, try again later")
}

fn data_deadline(shared: &Shared) -> DataDeadline {
    DataDeadline {
        idle: shared.data_timeout,
        min_rate: shared.min_data_rate,
    }
}

async fn connect(shared: &Shared) -> Option<Downstream> {
    match Downstream::connect(
        shared.connector.as_ref(),
        &shared.settings.hostname,
        shared.down_timeouts,
    )
    .await
    {
        Ok(d) => Some(d),
        Err(e) => {
            warn!("downstream not available: {e}");
            None
        }
    }
}

/// MAIL FROM downstream. A connection that broke while idle (the downstream's own idle
/// timeout) is redialled once.
async fn mail(
    shared: &Shared,
    down: &mut Option<Downstream>,
    session: &Session,
    sender: &str,
    params: &[String],
) -> Reply {
    for attempt in 0..2 {
        if down.is_none() {
            *down = connect(shared).await;
        }
        let Some(d) = down.as_mut() else {
            return down_unreachable();
        };
        match d.mail(sender, params, session.xforward()).await {
            Ok(r) if r.code == 421 && attempt == 0 => *down = None,
            Ok(r) => return r,
            Err(e) => {
                debug!("downstream MAIL failed: {e}");
                *down = None;
            }
        }
    }
    down_unreachable()
}

async fn rcpt_downstream(down: &mut Option<Downstream>, rcpt: &Rcpt) -> Reply {
    let Some(d) = down.as_mut() else {
        return down_unreachable();
    };
    match d.rcpt(rcpt).await {
        Ok(r) => r,
        Err(e) => {
            warn!("downstream RCPT failed: {e}");
            *down = None;
            down_unreachable()
        }
    }
}

/// Ends a transaction that will not be delivered, here and downstream.
async fn abandon(down: &mut Option<Downstream>, session: &mut Session) {
    session.end_transaction();
    if let Some(d) = down.as_mut().filter(|d| d.in_transaction())
        && d.rset().await.is_err()
    {
        *down = None;
    }
}

/// Cleans the message and hands it to the downstream; returns the replies for the
/// client (one, or one per recipient for LMTP clients). Ends the transaction.
async fn deliver(
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
    let queue_id = session
        .queue_id()
        .map(str::to_string)
        .or_else(|| received_queue_id(&raw))
        .unwrap_or_default();
    let sender = tx.sender.clone();
    let rcpts = tx.rcpts.len();
    let envelope = Envelope {
        sender: (!sender.is_empty()).then(|| sender.clone()),
        recipients: tx.rcpts.iter().map(|r| r.address.clone()).collect(),
    };
    let size = raw.len();
    let cleaning = std::time::Instant::now();
    let (bytes, findings, tempfail, record) = clean_caught(shared, raw, envelope).await;
    // End of DATA to the handoff downstream: what mailveil adds to each mail.
    let clean_us = cleaning.elapsed().as_micros() as u64;
    let (replies, downstream_reply) = if tempfail {
        abandon_keep_tx(down).await;
        let r = Reply::new(451, "4.3.0 Message could not be cleaned, try again later");
        (vec![r], "not sent (on_error=tempfail)".to_string())
    } else {
        match down.as_mut() {
            None => (vec![], "not connected".to_string()),
            Some(d) => match d.data(&bytes, rcpts).await {
                Ok(outcomes) => {
                    let text = outcomes
                        .iter()
                        .map(|r| format!("{} {}", r.code, r.text()))
                        .collect::<Vec<_>>()
                        .join(" | ");
                    (outcomes, text)
                }
                Err(e) => {
                    *down = None;
                    (vec![], error_text(&e))
                }
            },
        }
    };
    let answers = session.data_replies(&replies);
    let codes: Vec<u16> = answers.iter().map(|r| r.code).collect();
    if !tempfail {
        for r in &replies {
            crate::web::metrics::downstream_reply(r.code);
        }
        if replies.is_empty() {
            crate::web::metrics::downstream_reply(0);
        }
    }
    if let (Some(reports), Some(mut record)) = (shared.reports.clone(), record) {
        record.downstream = replies.first().map(|r| i64::from(r.code));
        // After delivery and off the reply path: a store failure never affects mail.
        tokio::spawn(async move {
            match reports.store.record(&record).await {
                Ok(id) => debug!(report_id = id, findings = record.findings.len(), "recorded"),
                Err(e) => warn!("report not recorded: {e}"),
            }
        });
    }
    let [queue_id, sender] = crate::printable::all([&queue_id, &sender]);
    info!(
        queue_id = %queue_id,
        from = %sender,
        rcpts,
        size,
        out_size = bytes.len(),
        findings = %findings,
        ms = started.elapsed().as_millis() as u64,
        clean_us,
        downstream = %downstream_reply,
        reply = ?codes,
        %peer,
        "mail"
    );
    session.end_transaction();
    answers
}

async fn abandon_keep_tx(down: &mut Option<Downstream>) {
    if let Some(d) = down.as_mut().filter(|d| d.in_transaction())
        && d.rset().await.is_err()
    {
        *down = None;
    }
}

fn error_text(e: &DownError) -> String {
    format!("failed: {e}")
}

/// Runs the core on a blocking thread with any panic caught, so one mail cannot take the
/// server down. Returns the bytes to deliver, the findings summary, whether the
/// policy asks for a temporary failure, and the record for the report store (when one
/// is configured). Counts the mail in the metrics.
async fn clean_caught(
    shared: &Shared,
    raw: Vec<u8>,
    envelope: Envelope,
) -> (Vec<u8>, String, bool, Option<crate::store::MailRecord>) {
    let raw = Arc::new(raw);
    let policy = shared.policy.clone();
    let rules = shared.rules.get();
    let input = Arc::clone(&raw);
    let debug = shared.reports.as_ref().map(|r| r.debug);
    let job = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        catch_unwind(AssertUnwindSafe(|| {
            clean(&input, &envelope, &policy, &rules)
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
    match job.await {
        Ok(Ok((cleaned, record))) => {
            let summary = cleaned.report.header_value();
            if let Some(err) = &cleaned.report.error {
                warn!("mail passed unchanged: {err}");
            }
            if let Some((proxy, deadline)) = &shared.prefetch {
                // MPP: fetch what the mail will show now, before it is delivered.
                let p = proxy.prefetch(&cleaned.report, *deadline).await;
                if p.urls > 0 {
                    tracing::info!(
                        urls = p.urls,
                        fetched = p.fetched,
                        cached = p.cached,
                        failed = p.failed,
                        late = p.late,
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
            out.extend_from_slice(&raw);
            (out, format!("v={VERSION}; error=internal"), tempfail, None)
        }
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

#[cfg(test)]
mod tests;
