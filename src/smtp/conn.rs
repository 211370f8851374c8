//! Drives one client connection: reads commands, runs the [`Session`] state machine,
//! passes the envelope to the downstream as it arrives, reads the message, cleans it
//! and delivers it, and answers only after the downstream has answered.

use super::delivery::deliver;
use super::downstream::{Connector, Downstream, Timeouts};
use super::io::{Conn, DataDeadline, Io, ReadError};
use super::pool::Pool;
use super::session::{Rcpt, Reply, Session, Settings, Step, down_unreachable};
use mailveil_smtp::path::{Mailbox, Param};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// What every session of one server shares.
pub(crate) struct Shared {
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
    /// Downstream connections kept between sessions.
    pub pool: Arc<Pool>,
    /// Downstream timeouts.
    pub down_timeouts: Timeouts,
    /// What happens to each mail around and in the core.
    pub pipeline: Arc<crate::pipeline::Pipeline>,
    /// STARTTLS, when configured.
    pub tls: Option<TlsAcceptor>,
}

/// Resolves when the server starts shutting down.
async fn shutdown_signal(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|down| *down).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs one session to its end. Never panics on client input; errors end the session.
pub(crate) async fn run_session(
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
                    down = open(&shared).await;
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
                    shared.pool.give_back(d).await;
                }
                return;
            }
            Step::Mail { sender, params } => {
                let reply = mail(&shared, &mut down, &session, sender.as_ref(), &params).await;
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
        // Held back while the client's next pipelined command is already here.
        if conn.reply(&wire, t).await.is_err() {
            break;
        }
    }
    // After the client's last reply, before its connection closes: the connection is
    // in the pool by the time the client sees the end.
    if let Some(d) = down {
        shared.pool.give_back(d).await;
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

/// A kept connection from the pool, or a new one.
async fn open(shared: &Shared) -> Option<Downstream> {
    match shared.pool.take() {
        Some(d) => Some(d),
        None => connect(shared).await,
    }
}

/// A new connection.
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
/// timeout, in a session or in the pool) is given up and MAIL tried once more on a new
/// connection: the first command is where a dead one shows, before anything of this
/// transaction went downstream.
async fn mail(
    shared: &Shared,
    down: &mut Option<Downstream>,
    session: &Session,
    sender: Option<&Mailbox>,
    params: &[Param],
) -> Reply {
    for attempt in 0..2 {
        if down.is_none() {
            *down = if attempt == 0 {
                open(shared).await
            } else {
                connect(shared).await
            };
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

#[cfg(test)]
mod tests;
