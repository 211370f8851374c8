//! The SMTP/LMTP session as a state machine without I/O: a command line goes in, a
//! [`Step`] comes out that says what the connection driver must do (answer, ask the
//! downstream, read data, start TLS, close). Results from the downstream come back in
//! through methods that return the reply to send. Everything that decides *what* to say
//! lives here; the root crate's `smtp::conn` only moves bytes.

use crate::path::{self, EnvelopeError, Mailbox, Param};
use smtp_proto::Request;
use std::fmt;

/// One SMTP reply, possibly multi-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text lines (each may begin with an enhanced status code).
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Self {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 4xx.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// The wire form, CRLF-terminated.
    pub fn to_wire(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// The text of all lines, joined by a space (for logs).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// The enhanced status code at the start of the first line, if any (`4.2.2`).
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.lines.first()?.split(' ').next()?;
        let mut parts = first.split('.');
        let ok = parts.next().is_some_and(|c| matches!(c, "2" | "4" | "5"))
            && parts.next().is_some_and(|p| {
                !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())
            })
            && parts.next().is_some_and(|p| {
                !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())
            })
            && parts.next().is_none();
        ok.then_some(first)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.lines.len().max(1);
        for i in 0..n {
            let sep = if i + 1 < n { '-' } else { ' ' };
            let line = self.lines.get(i).map_or("", String::as_str);
            write!(f, "{}{}{}\r\n", self.code, sep, line)?;
        }
        Ok(())
    }
}

/// What the downstream announced in its EHLO/LHLO reply, reduced to what matters here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps {
    /// PIPELINING
    pub pipelining: bool,
    /// 8BITMIME
    pub eightbit: bool,
    /// SMTPUTF8
    pub smtputf8: bool,
    /// DSN (NOTIFY, ORCPT, RET, ENVID)
    pub dsn: bool,
    /// SIZE, with its limit (0 = no limit announced).
    pub size: Option<usize>,
    /// XFORWARD and the attribute names it accepts (upper case).
    pub xforward: Option<Vec<String>>,
}

impl Caps {
    /// Parses the lines of an EHLO/LHLO reply (the first line is the greeting).
    pub fn from_ehlo(reply: &Reply) -> Caps {
        let mut caps = Caps::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eightbit = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "SIZE" => {
                    caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                "XFORWARD" => {
                    caps.xforward = Some(words.map(str::to_ascii_uppercase).collect());
                }
                _ => {}
            }
        }
        caps
    }

    /// Whether a MAIL/RCPT parameter may be passed to this downstream: only those of
    /// extensions it announced (SIZE is ours to check; BODY=7BIT needs no extension).
    pub fn takes_param(&self, keyword: &str) -> bool {
        match keyword.to_ascii_uppercase().as_str() {
            "SIZE" => self.size.is_some(),
            "BODY" => self.eightbit,
            "SMTPUTF8" => self.smtputf8,
            "RET" | "ENVID" | "NOTIFY" | "ORCPT" => self.dsn,
            _ => false,
        }
    }
}

/// Greeting kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HELO: no extensions.
    Helo,
    /// EHLO: ESMTP.
    Ehlo,
    /// LHLO: LMTP, one reply per recipient after the data.
    Lhlo,
}

/// Settings the session needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our name.
    pub hostname: String,
    /// Largest message accepted.
    pub max_message_bytes: usize,
    /// STARTTLS can be offered.
    pub tls_available: bool,
    /// XFORWARD is accepted.
    pub xforward: bool,
}

/// A recipient (RCPT TO), as read from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rcpt {
    /// The mailbox (`Display` is the wire form, [`Mailbox::address`] the unquoted one).
    pub mailbox: Mailbox,
    /// The client's parameters, checked (`NOTIFY=NEVER`, `ORCPT=rfc822;x@y`).
    pub params: Vec<Param>,
}

/// The current mail transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transaction {
    /// MAIL FROM mailbox (`None` for the null sender of bounces).
    pub sender: Option<Mailbox>,
    /// MAIL FROM parameters, checked.
    pub params: Vec<Param>,
    /// Recipients the downstream accepted.
    pub rcpts: Vec<Rcpt>,
    /// BDAT chunks so far.
    pub chunks: Vec<u8>,
    /// BDAT passed the size limit (the rest is drained, the mail refused).
    pub too_big: bool,
    /// The MAIL was accepted downstream.
    pub mail_accepted: bool,
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this reply, read the next command.
    Reply(Reply),
    /// Send this reply and close the connection.
    Close(Reply),
    /// HELO/EHLO/LHLO: make sure the downstream is connected (to learn what it
    /// supports), then call [`Session::hello_reply`].
    Hello,
    /// Send `220`, then run the TLS handshake and call [`Session::tls_started`].
    StartTls,
    /// Pass MAIL FROM downstream (after XFORWARD), then call [`Session::mail_result`].
    Mail {
        /// Sender mailbox (`None`: the null sender).
        sender: Option<Mailbox>,
        /// The client's parameters, checked.
        params: Vec<Param>,
    },
    /// Pass RCPT TO downstream, then call [`Session::rcpt_result`].
    Rcpt(Rcpt),
    /// Send `354`, read the dot-terminated message, then deliver it.
    Data,
    /// Read a BDAT chunk of this many bytes (into the transaction unless `discard`);
    /// then answer `reply` (non-last chunk or error), or deliver (last chunk, no reply).
    Bdat {
        /// Chunk size.
        size: usize,
        /// Drop the bytes (error or over the limit).
        discard: bool,
        /// The reply after reading; `None` = deliver the collected message.
        reply: Option<Reply>,
    },
    /// Reset the downstream transaction (if any), then send the reply.
    Rset(Reply),
}

/// Too many errors in one session: the client is not an MTA that behaves.
const MAX_ERRORS: u32 = 20;

/// The session state.
#[derive(Debug)]
pub struct Session {
    settings: Settings,
    mode: Option<Mode>,
    tls: bool,
    tx: Option<Transaction>,
    xforward: Vec<(String, String)>,
    errors: u32,
}

impl Session {
    /// A new session (send [`Session::greeting`] first).
    pub fn new(settings: Settings) -> Self {
        Session {
            settings,
            mode: None,
            tls: false,
            tx: None,
            xforward: Vec::new(),
            errors: 0,
        }
    }

    /// The 220 greeting.
    pub fn greeting(&self) -> Reply {
        Reply::new(220, format!("{} ESMTP mailveil", self.settings.hostname))
    }

    /// The greeting mode, once the client said HELO/EHLO/LHLO.
    pub fn mode(&self) -> Option<Mode> {
        self.mode
    }

    /// Whether TLS is active.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The open transaction (after an accepted MAIL).
    pub fn transaction(&self) -> Option<&Transaction> {
        self.tx.as_ref()
    }

    /// Mutable access for the driver (BDAT chunks).
    pub fn transaction_mut(&mut self) -> Option<&mut Transaction> {
        self.tx.as_mut()
    }

    /// XFORWARD attributes received for the coming transaction.
    pub fn xforward(&self) -> &[(String, String)] {
        &self.xforward
    }

    /// The queue id from XFORWARD IDENT, if the client sent one.
    pub fn queue_id(&self) -> Option<&str> {
        self.xforward
            .iter()
            .find(|(k, _)| k == "IDENT")
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty() && *v != "[UNAVAILABLE]")
    }

    /// Whether a transaction is in progress (the driver finishes it before a shutdown).
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    fn error(&mut self, reply: Reply) -> Step {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            Step::Close(Reply::new(421, "4.7.0 Too many errors, closing"))
        } else {
            Step::Reply(reply)
        }
    }

    /// A command line longer than the limit arrived (the driver dropped it): `500`, the
    /// session goes on, and it counts as an error like any other bad command.
    pub fn line_too_long(&mut self) -> Step {
        self.error(Reply::new(500, "5.5.2 Line too long"))
    }

    /// Handles one command line (CRLF included).
    pub fn command(&mut self, line: &[u8]) -> Step {
        if let Some(rest) = strip_verb(line, b"XFORWARD") {
            return self.xforward_command(rest);
        }
        // The envelope is read by our own parser only (see `path`): what goes downstream
        // must mean what the client wrote.
        if path::is_verb(line, "MAIL") {
            return self.mail(line);
        }
        if path::is_verb(line, "RCPT") {
            return self.rcpt(line);
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(r) => r,
            Err(e) => return self.parse_error(e),
        };
        match request {
            Request::Ehlo { .. } => self.hello(Mode::Ehlo),
            Request::Helo { .. } => self.hello(Mode::Helo),
            Request::Lhlo { .. } => self.hello(Mode::Lhlo),
            Request::StartTls => {
                if !self.settings.tls_available || self.mode == Some(Mode::Helo) {
                    self.error(Reply::new(502, "5.5.1 STARTTLS not available"))
                } else if self.tls {
                    self.error(Reply::new(503, "5.5.1 TLS already active"))
                } else if self.tx.is_some() {
                    self.error(Reply::new(503, "5.5.1 STARTTLS inside a mail transaction"))
                } else {
                    Step::StartTls
                }
            }
            // A form `path::is_verb` did not take (smtp-proto is more lenient).
            Request::Mail { .. } | Request::Rcpt { .. } => {
                self.error(Reply::new(501, "5.5.4 Syntax error in parameters"))
            }
            Request::Data => match &self.tx {
                Some(t) if !t.rcpts.is_empty() && t.chunks.is_empty() => Step::Data,
                Some(t) if !t.chunks.is_empty() => {
                    self.error(Reply::new(503, "5.5.1 DATA after BDAT"))
                }
                Some(_) => self.error(Reply::new(554, "5.5.1 No valid recipients")),
                None => self.error(Reply::new(503, "5.5.1 Need MAIL and RCPT before DATA")),
            },
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last),
            Request::Rset => {
                self.end_transaction();
                Step::Rset(Reply::new(250, "2.0.0 Ok"))
            }
            Request::Noop { .. } => Step::Reply(Reply::new(250, "2.0.0 Ok")),
            Request::Quit => Step::Close(Reply::new(221, "2.0.0 Bye")),
            Request::Vrfy { .. } => Step::Reply(Reply::new(252, "2.5.0 Cannot verify")),
            Request::Help { .. } => Step::Reply(Reply::new(214, "2.0.0 See RFC 5321")),
            Request::Auth { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.error(Reply::new(502, "5.5.1 Command not implemented")),
        }
    }

    fn mail(&mut self, line: &[u8]) -> Step {
        if self.mode.is_none() {
            return self.error(Reply::new(503, "5.5.1 Say EHLO first"));
        }
        if self.tx.is_some() {
            return self.error(Reply::new(503, "5.5.1 Nested MAIL command"));
        }
        let (sender, params) = match path::parse_mail(line) {
            Ok(p) => p,
            Err(e) => return self.envelope_error(&e, false),
        };
        let size = find(&params, "SIZE").map_or(0, |v| v.parse::<u128>().unwrap_or(u128::MAX));
        if size > self.settings.max_message_bytes as u128 {
            return self.error(Reply::new(552, "5.3.4 Message size exceeds the limit"));
        }
        if sender.as_ref().is_some_and(|m| !m.is_ascii()) && find(&params, "SMTPUTF8").is_none() {
            return self.error(not_ascii());
        }
        Step::Mail { sender, params }
    }

    fn rcpt(&mut self, line: &[u8]) -> Step {
        let Some(tx) = self.tx.as_ref().filter(|t| t.mail_accepted) else {
            return self.error(Reply::new(503, "5.5.1 Need MAIL before RCPT"));
        };
        let utf8 = find(&tx.params, "SMTPUTF8").is_some();
        let (mailbox, params) = match path::parse_rcpt(line) {
            Ok(p) => p,
            Err(e) => return self.envelope_error(&e, true),
        };
        if !mailbox.is_ascii() && !utf8 {
            return self.error(not_ascii());
        }
        Step::Rcpt(Rcpt { mailbox, params })
    }

    fn envelope_error(&mut self, e: &EnvelopeError, rcpt: bool) -> Step {
        let reply = match e {
            EnvelopeError::Syntax if rcpt => {
                Reply::new(501, "5.5.4 Syntax: RCPT TO:<forward-path> [parameters]")
            }
            EnvelopeError::Syntax => {
                Reply::new(501, "5.5.4 Syntax: MAIL FROM:<reverse-path> [parameters]")
            }
            EnvelopeError::BadAddress if rcpt => {
                Reply::new(501, "5.1.3 Bad recipient address syntax")
            }
            EnvelopeError::BadAddress => Reply::new(501, "5.1.7 Bad sender address syntax"),
            EnvelopeError::BadParam => Reply::new(501, "5.5.4 Invalid parameter syntax"),
            EnvelopeError::UnknownParam(k) => {
                Reply::new(555, format!("5.5.4 Unsupported parameter {k}"))
            }
            EnvelopeError::DuplicateParam(k) => {
                Reply::new(501, format!("5.5.4 Parameter {k} given twice"))
            }
        };
        self.error(reply)
    }

    fn parse_error(&mut self, e: smtp_proto::Error) -> Step {
        use smtp_proto::Error as E;
        let reply = match e {
            E::UnknownCommand => Reply::new(500, "5.5.2 Command unrecognized"),
            E::InvalidSenderAddress => Reply::new(501, "5.1.7 Bad sender address syntax"),
            E::InvalidRecipientAddress => Reply::new(501, "5.1.3 Bad recipient address syntax"),
            E::SyntaxError { syntax } => Reply::new(501, format!("5.5.4 Syntax: {syntax}")),
            E::InvalidParameter { param } => {
                Reply::new(501, format!("5.5.4 Invalid parameter {param:?}"))
            }
            E::UnsupportedParameter { .. } => Reply::new(555, "5.5.4 Unsupported parameter"),
            E::ResponseTooLong => Reply::new(500, "5.5.2 Line too long"),
            E::NeedsMoreData { .. } | E::InvalidResponse { .. } => {
                Reply::new(500, "5.5.2 Syntax error")
            }
        };
        self.error(reply)
    }

    fn hello(&mut self, mode: Mode) -> Step {
        // A new greeting resets the transaction and the XFORWARD attributes (RFC 5321 4.1.4).
        self.end_transaction();
        self.mode = Some(mode);
        Step::Hello
    }

    /// The reply to HELO/EHLO/LHLO, given what the downstream supports (`None`: it
    /// could not be reached; mail will get 451 anyway, announce only our own features).
    pub fn hello_reply(&self, downstream: Option<&Caps>) -> Reply {
        let host = &self.settings.hostname;
        let mut lines = vec![host.clone()];
        if self.mode == Some(Mode::Helo) {
            return Reply::new(250, host.clone());
        }
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", self.settings.max_message_bytes));
        lines.push("ENHANCEDSTATUSCODES".into());
        lines.push("CHUNKING".into());
        if let Some(caps) = downstream {
            if caps.eightbit {
                lines.push("8BITMIME".into());
            }
            if caps.smtputf8 {
                lines.push("SMTPUTF8".into());
            }
            if caps.dsn {
                lines.push("DSN".into());
            }
            if self.settings.xforward && caps.xforward.is_some() {
                lines.push("XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT".into());
            }
        }
        if self.settings.tls_available && !self.tls {
            lines.push("STARTTLS".into());
        }
        Reply { code: 250, lines }
    }

    /// After a successful TLS handshake: everything is forgotten (RFC 3207 4.2).
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.mode = None;
        self.end_transaction();
    }

    fn xforward_command(&mut self, rest: &[u8]) -> Step {
        if !self.settings.xforward {
            return self.error(Reply::new(502, "5.5.1 Command not implemented"));
        }
        if self.mode.is_none() {
            return self.error(Reply::new(503, "5.5.1 Say EHLO first"));
        }
        if self.tx.is_some() {
            return self.error(Reply::new(503, "5.5.1 XFORWARD inside a mail transaction"));
        }
        let Ok(text) = std::str::from_utf8(rest) else {
            return self.error(Reply::new(501, "5.5.4 Bad XFORWARD syntax"));
        };
        let mut attrs = Vec::new();
        for word in text.split_ascii_whitespace() {
            let Some((k, v)) = word.split_once('=') else {
                return self.error(Reply::new(501, "5.5.4 Bad XFORWARD syntax"));
            };
            let k = k.to_ascii_uppercase();
            if !matches!(
                k.as_str(),
                "NAME" | "ADDR" | "PORT" | "PROTO" | "HELO" | "IDENT" | "SOURCE"
            ) {
                return self.error(Reply::new(501, "5.5.4 Bad XFORWARD attribute"));
            }
            attrs.push((k, v.to_string()));
        }
        if attrs.is_empty() {
            return self.error(Reply::new(501, "5.5.4 Bad XFORWARD syntax"));
        }
        for (k, v) in attrs {
            self.xforward.retain(|(old, _)| *old != k);
            self.xforward.push((k, v));
        }
        Step::Reply(Reply::new(250, "2.0.0 Ok"))
    }

    /// The downstream's answer to MAIL FROM (or the 451 for not reaching it).
    pub fn mail_result(
        &mut self,
        sender: Option<Mailbox>,
        params: Vec<Param>,
        reply: &Reply,
    ) -> Reply {
        if reply.is_positive() {
            self.tx = Some(Transaction {
                sender,
                params,
                mail_accepted: true,
                ..Transaction::default()
            });
        }
        pass_back(reply)
    }

    /// The downstream's answer to RCPT TO: passed back as it is, so the downstream
    /// decides who gets mail (a foreign domain included).
    pub fn rcpt_result(&mut self, rcpt: Rcpt, reply: &Reply) -> Reply {
        if reply.is_positive()
            && let Some(tx) = &mut self.tx
        {
            tx.rcpts.push(rcpt);
        }
        pass_back(reply)
    }

    fn bdat(&mut self, size: usize, last: bool) -> Step {
        let ready = self.tx.as_ref().is_some_and(|t| !t.rcpts.is_empty());
        if !ready {
            // The chunk is on its way anyway: read and drop it to stay in step.
            let reply = if self.tx.is_some() {
                Reply::new(554, "5.5.1 No valid recipients")
            } else {
                Reply::new(503, "5.5.1 Need MAIL and RCPT before BDAT")
            };
            self.errors += 1;
            return Step::Bdat {
                size,
                discard: true,
                reply: Some(reply),
            };
        }
        let max = self.settings.max_message_bytes;
        let Some(tx) = self.tx.as_mut() else {
            return Step::Reply(Reply::new(503, "5.5.1 Need MAIL before BDAT"));
        };
        if tx.chunks.len().saturating_add(size) > max {
            tx.too_big = true;
            tx.chunks = Vec::new();
        }
        let discard = tx.too_big;
        if !last {
            return Step::Bdat {
                size,
                discard,
                reply: Some(Reply::new(250, format!("2.0.0 {size} octets received"))),
            };
        }
        if discard {
            self.end_transaction();
            return Step::Bdat {
                size,
                discard,
                reply: Some(Reply::new(552, "5.3.4 Message size exceeds the limit")),
            };
        }
        Step::Bdat {
            size,
            discard,
            reply: None,
        }
    }

    /// Ends the transaction (after the data replies, RSET, a new greeting). The XFORWARD
    /// attributes belong to one transaction too.
    pub fn end_transaction(&mut self) -> Option<Transaction> {
        self.xforward.clear();
        self.tx.take()
    }

    /// The replies to the end of data, given the downstream's outcome for each accepted
    /// recipient (`outcomes[i]` for `rcpts[i]`; a missing one is not known: 451). LMTP
    /// clients get one reply per recipient; SMTP clients get one for the mail
    /// ([`combine`]).
    pub fn data_replies(&self, outcomes: &[Reply]) -> Vec<Reply> {
        let n = self.tx.as_ref().map_or(0, |t| t.rcpts.len());
        let per_rcpt: Vec<Reply> = (0..n)
            .map(|i| outcomes.get(i).map_or_else(down_unreachable, pass_back))
            .collect();
        if self.mode == Some(Mode::Lhlo) {
            return per_rcpt;
        }
        vec![combine(&per_rcpt)]
    }
}

/// The reply for a downstream that could not be reached or failed mid-way.
pub fn down_unreachable() -> Reply {
    Reply::new(451, "4.4.1 Downstream not available, try again later")
}

/// A downstream reply as passed to the client: 2xx and 5xx as they came (with an
/// enhanced code), any 4xx as 451 (the client keeps the mail and retries).
pub fn pass_back(down: &Reply) -> Reply {
    let text = down.text();
    let (code, default_enh) = match down.code {
        200..=299 => (down.code, "2.0.0"),
        400..=499 => (451, "4.3.0"),
        500..=599 => (down.code, "5.0.0"),
        _ => (451, "4.3.0"),
    };
    if down.enhanced().is_some() {
        Reply::new(code, text)
    } else {
        Reply::new(code, format!("{default_enh} {text}"))
    }
}

/// One reply for several recipients' outcomes (SMTP has one reply per mail): the
/// weakest. `250` only when every recipient's copy was accepted. Any transient failure
/// makes the whole mail transient (the client retries; recipients already delivered may
/// see it twice, which is better than losing it); else any refusal refuses the mail
/// (the sender gets a bounce, though some copies arrived: a `250` would lose the refused
/// ones without a word). Use an LMTP client transport to get per-recipient replies.
pub fn combine(per_rcpt: &[Reply]) -> Reply {
    let transient = per_rcpt.iter().find(|r| !r.is_positive() && r.code < 500);
    let refused = per_rcpt.iter().find(|r| r.code >= 500);
    match (transient, refused, per_rcpt.first()) {
        (Some(r), _, _) | (None, Some(r), _) => r.clone(),
        (None, None, Some(r)) if r.is_positive() => r.clone(),
        _ => down_unreachable(),
    }
}

fn strip_verb<'a>(line: &'a [u8], verb: &[u8]) -> Option<&'a [u8]> {
    let head = line.get(..verb.len())?;
    let next = line.get(verb.len())?;
    (head.eq_ignore_ascii_case(verb) && (*next == b' ' || *next == b'\t'))
        .then(|| line[verb.len() + 1..].trim_ascii_end())
}

/// The value of a parameter (`Some("")` for one without a value).
fn find<'a>(params: &'a [Param], keyword: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|p| p.keyword() == keyword)
        .map(|p| p.value().unwrap_or(""))
}

/// A non-ASCII address without SMTPUTF8 on the MAIL command (RFC 6531 3.5).
fn not_ascii() -> Reply {
    Reply::new(553, "5.6.7 Non-ASCII address needs SMTPUTF8")
}

#[cfg(test)]
mod tests;
