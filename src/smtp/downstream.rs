//! The client side: one connection to the configured downstream (Postfix's reinjection
//! smtpd over SMTP, or Dovecot over LMTP), held for the length of one client session
//! and then kept in the [`super::pool`] for the next one.
//! The envelope is passed on meaning what the client sent: each path written again in
//! its RFC 5321 form from the parsed mailbox (`mailveil_smtp::path`), and only the
//! client's own, checked parameters of extensions the downstream announced (Dovecot's
//! LMTP has no SIZE and answers `555` to it).

use super::config::DownstreamAddr;
use super::io::{Conn, Io, ReadError, stuff};
use super::session::{Caps, Rcpt, Reply};
use mailveil_smtp::path::{Mailbox, Param, mail_command, rcpt_command};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::{Duration, Instant};

/// A boxed future, for the object-safe [`Connector`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Opens a byte stream to the downstream. The real one dials TCP or a unix socket;
/// tests plug in an in-memory server.
pub trait Connector: Send + Sync {
    /// A new stream.
    fn connect(&self) -> BoxFuture<'_, io::Result<Box<dyn Io>>>;
    /// Whether the downstream speaks LMTP.
    fn lmtp(&self) -> bool;
}

/// Dials the configured address.
pub struct Dialer(pub DownstreamAddr);

impl Connector for Dialer {
    fn connect(&self) -> BoxFuture<'_, io::Result<Box<dyn Io>>> {
        Box::pin(async move {
            let stream: Box<dyn Io> = match &self.0 {
                DownstreamAddr::Smtp(a) | DownstreamAddr::LmtpTcp(a) => {
                    let s = tokio::net::TcpStream::connect(a).await?;
                    s.set_nodelay(true)?;
                    Box::new(s)
                }
                DownstreamAddr::LmtpUnix(p) => Box::new(tokio::net::UnixStream::connect(p).await?),
            };
            Ok(stream)
        })
    }
    fn lmtp(&self) -> bool {
        self.0.is_lmtp()
    }
}

/// Why talking to the downstream failed (every kind means: answer 451).
#[derive(Debug)]
pub enum DownError {
    /// Could not connect, or the greeting was not 220.
    Connect(String),
    /// No reply in time.
    Timeout,
    /// The connection broke or the peer spoke nonsense.
    Broken(String),
}

impl std::fmt::Display for DownError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownError::Connect(e) => write!(f, "connect: {e}"),
            DownError::Timeout => f.write_str("timeout"),
            DownError::Broken(e) => write!(f, "connection broken: {e}"),
        }
    }
}

impl From<ReadError> for DownError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Timeout => DownError::Timeout,
            other => DownError::Broken(other.to_string()),
        }
    }
}

/// Timeouts for the downstream.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Connecting plus the greeting.
    pub connect: Duration,
    /// Each reply, including the one(s) after the final dot.
    pub reply: Duration,
}

/// Longest reply line accepted from the downstream.
const MAX_REPLY_LINE: usize = 4096;
/// Most lines in one reply.
const MAX_REPLY_LINES: usize = 100;

/// An open downstream session.
pub struct Downstream {
    conn: Conn,
    caps: Caps,
    lmtp: bool,
    timeouts: Timeouts,
    /// A MAIL was accepted and not yet ended by the data or RSET.
    in_transaction: bool,
    /// Kept by the pool after a transaction that ended: its RSET goes in front of the
    /// next MAIL, in the same write ([`Downstream::end_session`]).
    reset_due: bool,
    /// When it was opened (a pooled connection is reused for a limited time).
    opened: Instant,
}

impl Downstream {
    /// Connects, reads the greeting, says EHLO (or LHLO).
    pub async fn connect(
        connector: &dyn Connector,
        helo_name: &str,
        timeouts: Timeouts,
    ) -> Result<Downstream, DownError> {
        let stream = tokio::time::timeout(timeouts.connect, connector.connect())
            .await
            .map_err(|_| DownError::Connect("timeout".into()))?
            .map_err(|e| DownError::Connect(e.to_string()))?;
        let mut conn = Conn::new(stream);
        let greeting = read_reply(&mut conn, timeouts.connect).await?;
        if greeting.code != 220 {
            return Err(DownError::Connect(format!(
                "greeting {}",
                greeting.to_string().trim_end()
            )));
        }
        let lmtp = connector.lmtp();
        let verb = if lmtp { "LHLO" } else { "EHLO" };
        let mut down = Downstream {
            conn,
            caps: Caps::default(),
            lmtp,
            timeouts,
            in_transaction: false,
            reset_due: false,
            opened: Instant::now(),
        };
        let reply = down.command(&format!("{verb} {helo_name}\r\n")).await?;
        if !reply.is_positive() {
            return Err(DownError::Connect(format!("{verb}: {}", reply.text())));
        }
        down.caps = Caps::from_ehlo(&reply);
        Ok(down)
    }

    /// What the downstream announced.
    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// Whether a MAIL transaction is open downstream.
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// How long ago it was opened.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// No transaction open, nothing unread and the downstream has neither spoken nor
    /// closed since its last reply: what an idle connection must be to be used again.
    pub fn quiet(&mut self) -> bool {
        !self.in_transaction && self.conn.quiet()
    }

    async fn command(&mut self, line: &str) -> Result<Reply, DownError> {
        self.send(line).await?;
        self.reply().await
    }

    /// Writes command lines (one, or a pipelined batch).
    async fn send(&mut self, lines: &str) -> Result<(), DownError> {
        self.conn
            .write(lines.as_bytes(), self.timeouts.reply)
            .await
            .map_err(|e| DownError::Broken(e.to_string()))
    }

    /// The next reply.
    async fn reply(&mut self) -> Result<Reply, DownError> {
        read_reply(&mut self.conn, self.timeouts.reply).await
    }

    fn keep<'a>(&self, params: &'a [Param]) -> Vec<&'a Param> {
        params
            .iter()
            .filter(|p| self.caps.takes_param(p.keyword()))
            .collect()
    }

    /// XFORWARD (the attributes the downstream takes), then MAIL FROM. A mail that
    /// needs SMTPUTF8 from a downstream that did not announce it is refused here. A
    /// downstream that announced PIPELINING gets the XFORWARD lines and MAIL in one
    /// write, as Postfix's own SMTP client sends them, behind the RSET due from the
    /// session before (if any), and the replies are read in order: one round trip
    /// instead of one per line. A refused RSET or XFORWARD is an error either way (the
    /// caller drops the connection, so a MAIL accepted after it never gets its data).
    pub async fn mail(
        &mut self,
        sender: Option<&Mailbox>,
        params: &[Param],
        xforward: &[(String, String)],
    ) -> Result<Reply, DownError> {
        if params.iter().any(|p| p.keyword() == "SMTPUTF8") && !self.caps.smtputf8 {
            return Ok(Reply::new(555, "5.5.4 SMTPUTF8 not supported downstream"));
        }
        let xforward = self.xforward_lines(xforward);
        let mail = mail_command(sender, self.keep(params));
        let reply = if self.caps.pipelining {
            let rset = std::mem::take(&mut self.reset_due);
            let batch: String = rset
                .then_some("RSET\r\n")
                .into_iter()
                .chain(xforward.iter().map(String::as_str))
                .chain([mail.as_str()])
                .collect();
            self.send(&batch).await?;
            if rset {
                rset_accepted(self.reply().await?)?;
            }
            for _ in &xforward {
                xforward_accepted(self.reply().await?)?;
            }
            self.reply().await?
        } else {
            if std::mem::take(&mut self.reset_due) {
                rset_accepted(self.command("RSET\r\n").await?)?;
            }
            for line in &xforward {
                xforward_accepted(self.command(line).await?)?;
            }
            self.command(&mail).await?
        };
        self.in_transaction = reply.is_positive();
        Ok(reply)
    }

    /// The XFORWARD lines for the attributes the downstream takes (none without
    /// XFORWARD). Postfix limits such a line to 512 bytes: the attributes go in pieces.
    fn xforward_lines(&self, xforward: &[(String, String)]) -> Vec<String> {
        let Some(accepted) = &self.caps.xforward else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        let mut line = String::new();
        for (k, v) in xforward.iter().filter(|(k, _)| accepted.contains(k)) {
            let attr = format!("{k}={v}");
            if !line.is_empty() && line.len() + attr.len() > 400 {
                lines.push(format!("XFORWARD{line}\r\n"));
                line.clear();
            }
            line.push(' ');
            line.push_str(&attr);
        }
        if !line.is_empty() {
            lines.push(format!("XFORWARD{line}\r\n"));
        }
        lines
    }

    /// RCPT TO.
    pub async fn rcpt(&mut self, rcpt: &Rcpt) -> Result<Reply, DownError> {
        let line = rcpt_command(&rcpt.mailbox, self.keep(&rcpt.params));
        self.command(&line).await
    }

    /// DATA, the message, the final dot; the outcome per accepted recipient (LMTP: one
    /// reply each; SMTP: one reply for all). `Ok` with a non-2xx reply is the downstream
    /// refusing; `Err` is not knowing (answer 451).
    pub async fn data(&mut self, message: &[u8], rcpts: usize) -> Result<Vec<Reply>, DownError> {
        let reply = self.command("DATA\r\n").await?;
        if reply.code != 354 {
            self.in_transaction = false;
            return Ok(vec![reply]);
        }
        let stuffed = stuff(message);
        let parts: [&[u8]; 2] = [&stuffed.body, stuffed.end];
        self.conn
            .write_parts(&parts, self.timeouts.reply.max(Duration::from_secs(60)))
            .await
            .map_err(|e| DownError::Broken(e.to_string()))?;
        let n = if self.lmtp { rcpts.max(1) } else { 1 };
        let mut replies = Vec::with_capacity(n);
        for _ in 0..n {
            replies.push(read_reply(&mut self.conn, self.timeouts.reply).await?);
        }
        self.in_transaction = false;
        Ok(replies)
    }

    /// RSET (ends a transaction the client gave up).
    pub async fn rset(&mut self) -> Result<(), DownError> {
        self.in_transaction = false;
        self.reset_due = false;
        rset_accepted(self.command("RSET\r\n").await?)
    }

    /// Ends a client session's use of the connection, for the pool to keep it: its
    /// downstream state is reset before anyone else's transaction can begin. A
    /// transaction still open is reset now. One that ended (its data answered) leaves
    /// only attributes such as XFORWARD behind, and to a downstream that announced
    /// PIPELINING the RSET for them waits for the connection's next use (as Postfix's
    /// SMTP client resets a cached session when it reuses it) and goes in front of the
    /// next MAIL, in the same write (as KumoMTA sends it): a round trip per mail saved.
    /// Its reply is read first, and anything but `2xx` drops the connection before that
    /// MAIL's transaction gets a recipient (`conn::mail` then dials afresh).
    pub async fn end_session(&mut self) -> Result<(), DownError> {
        if self.in_transaction || !self.caps.pipelining {
            return self.rset().await;
        }
        self.reset_due = true;
        Ok(())
    }

    /// QUIT and close (best effort).
    pub async fn quit(mut self) {
        let t = self.timeouts.reply.min(Duration::from_secs(5));
        if self.conn.write(b"QUIT\r\n", t).await.is_ok() {
            let _ = read_reply(&mut self.conn, t).await;
        }
        self.conn.shutdown().await;
    }
}

/// A refused RSET is an error: the downstream's state is not known, the connection is
/// given up.
fn rset_accepted(reply: Reply) -> Result<(), DownError> {
    if reply.is_positive() {
        Ok(())
    } else {
        Err(DownError::Broken(format!("RSET: {}", reply.text())))
    }
}

/// A refused XFORWARD is an error: the connection is given up.
fn xforward_accepted(reply: Reply) -> Result<(), DownError> {
    if reply.is_positive() {
        Ok(())
    } else {
        Err(DownError::Broken(format!(
            "XFORWARD refused: {}",
            reply.text()
        )))
    }
}

/// Reads one (possibly multi-line) reply.
pub async fn read_reply(conn: &mut Conn, timeout: Duration) -> Result<Reply, DownError> {
    let mut lines = Vec::new();
    loop {
        let raw = conn.read_line(MAX_REPLY_LINE, timeout).await?;
        let text = String::from_utf8_lossy(&raw);
        let text = text.trim_end_matches(['\r', '\n']);
        let bytes = text.as_bytes();
        let code = text
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c))
            .ok_or_else(|| DownError::Broken("malformed reply".into()))?;
        let more = bytes.get(3) == Some(&b'-');
        if bytes.len() > 3 && !more && bytes[3] != b' ' {
            return Err(DownError::Broken("malformed reply".into()));
        }
        lines.push(text.get(4..).unwrap_or("").to_string());
        if lines.len() > MAX_REPLY_LINES {
            return Err(DownError::Broken("reply too long".into()));
        }
        if !more {
            return Ok(Reply { code, lines });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

    /// Hands out one in-memory stream, whose other end the test plays.
    struct One(Mutex<Option<DuplexStream>>);

    impl Connector for One {
        fn connect(&self) -> BoxFuture<'_, io::Result<Box<dyn Io>>> {
            let s = self.0.lock().unwrap().take();
            Box::pin(async move { Ok(Box::new(s.expect("one connection")) as Box<dyn Io>) })
        }
        fn lmtp(&self) -> bool {
            false
        }
    }

    const T: Timeouts = Timeouts {
        connect: Duration::from_secs(5),
        reply: Duration::from_secs(5),
    };

    /// A downstream that announces `caps`, answers XFORWARD with `xforward_code`, and
    /// notes, when XFORWARD comes, whether MAIL followed it before any reply was sent.
    async fn downstream(
        caps: &'static str,
        xforward_code: u16,
    ) -> (Downstream, tokio::task::JoinHandle<bool>) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let (r, mut w) = tokio::io::split(theirs);
            let mut r = BufReader::new(r);
            let mut line = String::new();
            w.write_all(b"220 test\r\n").await.unwrap();
            r.read_line(&mut line).await.unwrap();
            w.write_all(format!("250-test\r\n{caps}250 8BITMIME\r\n").as_bytes())
                .await
                .unwrap();
            line.clear();
            r.read_line(&mut line).await.unwrap();
            assert!(line.starts_with("XFORWARD NAME=client.example"), "{line}");
            // Before answering XFORWARD: is MAIL already on its way?
            line.clear();
            let wait = Duration::from_millis(300);
            let pipelined = tokio::time::timeout(wait, r.read_line(&mut line))
                .await
                .is_ok();
            w.write_all(format!("{xforward_code} 2.0.0 x\r\n").as_bytes())
                .await
                .unwrap();
            if !pipelined {
                let _ = r.read_line(&mut line).await;
            }
            if !line.starts_with("MAIL FROM:<a@b.example>") {
                return pipelined;
            }
            w.write_all(b"250 2.1.0 Ok\r\n").await.unwrap();
            pipelined
        });
        let d = Downstream::connect(&One(Mutex::new(Some(ours))), "mv.example", T)
            .await
            .unwrap();
        (d, server)
    }

    fn sender() -> Mailbox {
        Mailbox::new("a", Some("b.example")).unwrap()
    }

    fn xforward() -> Vec<(String, String)> {
        vec![("NAME".into(), "client.example".into())]
    }

    #[tokio::test]
    async fn xforward_and_mail_are_pipelined_when_the_downstream_announced_it() {
        let caps = "250-PIPELINING\r\n250-XFORWARD NAME ADDR\r\n";
        let (mut d, server) = downstream(caps, 250).await;
        let reply = d.mail(Some(&sender()), &[], &xforward()).await.unwrap();
        assert_eq!(reply.code, 250);
        assert!(d.in_transaction());
        assert!(server.await.unwrap(), "MAIL came before the XFORWARD reply");
    }

    #[tokio::test]
    async fn without_pipelining_each_line_waits_for_its_reply() {
        let (mut d, server) = downstream("250-XFORWARD NAME ADDR\r\n", 250).await;
        let reply = d.mail(Some(&sender()), &[], &xforward()).await.unwrap();
        assert_eq!(reply.code, 250);
        assert!(
            !server.await.unwrap(),
            "MAIL was sent before XFORWARD was answered"
        );
    }

    #[tokio::test]
    async fn a_refused_xforward_is_an_error_pipelined_or_not() {
        for caps in [
            "250-PIPELINING\r\n250-XFORWARD NAME\r\n",
            "250-XFORWARD NAME\r\n",
        ] {
            let (mut d, server) = downstream(caps, 550).await;
            let sent = d.mail(Some(&sender()), &[], &xforward()).await;
            assert!(matches!(sent, Err(DownError::Broken(e)) if e.contains("XFORWARD refused")));
            drop(d);
            let _ = server.await;
        }
    }
}
