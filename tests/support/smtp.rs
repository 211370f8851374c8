//! SMTP on loopback: a sink that keeps what it is sent (the downstream of `serve`), a
//! line client, and a sender of whole mails.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An SMTP (and LMTP) server that accepts everything and keeps each message, unstuffed,
/// and every command line with the number of the connection it came on.
pub struct Sink {
    /// Where it listens.
    pub port: u16,
    mails: Arc<Mutex<Vec<Vec<u8>>>>,
    log: Arc<Mutex<Vec<(usize, String)>>>,
    /// The command lines that came in one write with the line after them.
    batched: Arc<Mutex<Vec<(usize, String)>>>,
    connections: Arc<AtomicUsize>,
}

/// How a [`Sink`] behaves where it is not a plain accept-all server.
#[derive(Clone, Default)]
pub struct SinkOptions {
    /// Close a connection that sent nothing for this long, with `421` first (what
    /// Postfix's smtpd does at `smtpd_timeout`).
    pub idle_close: Option<Duration>,
    /// The reply to RSET (default `250 2.0.0 Ok`).
    pub rset_reply: Option<&'static str>,
    /// Announce XFORWARD (and take it).
    pub xforward: bool,
    /// Answer the first command after each RSET with `421` and close: a connection
    /// that died while it was idle, noticed only when it is used again.
    pub die_after_rset: bool,
    /// Announce PIPELINING.
    pub pipelining: bool,
}

impl Sink {
    /// Starts a sink on a free port.
    pub fn start() -> Sink {
        Sink::start_with(SinkOptions::default())
    }

    /// Starts a sink on a free port that behaves as `options` say.
    pub fn start_with(options: SinkOptions) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let batched = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let shared = (
            Arc::clone(&mails),
            Arc::clone(&log),
            Arc::clone(&connections),
            Arc::clone(&batched),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (kept, log, count) = (Arc::clone(&shared.0), Arc::clone(&shared.1), &shared.2);
                let batched = Arc::clone(&shared.3);
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let options = options.clone();
                std::thread::spawn(move || {
                    let logs = Logs {
                        all: &log,
                        batched: &batched,
                    };
                    let _ = session(conn, n, &options, &kept, logs);
                });
            }
        });
        Sink {
            port,
            mails,
            log,
            batched,
            connections,
        }
    }

    /// The messages received so far.
    pub fn mails(&self) -> Vec<Vec<u8>> {
        self.mails.lock().unwrap().clone()
    }

    /// The messages received so far, as text.
    pub fn texts(&self) -> Vec<String> {
        self.mails()
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    }

    /// How many messages it received.
    pub fn count(&self) -> usize {
        self.mails.lock().unwrap().len()
    }

    /// How many connections it accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every command line so far (the message data excluded), with the number of its
    /// connection (1 for the first accepted).
    pub fn commands(&self) -> Vec<(usize, String)> {
        self.log.lock().unwrap().clone()
    }

    /// The command lines that came in the same write as the line after them (a client
    /// pipelining), with the number of their connection.
    pub fn batched(&self) -> Vec<(usize, String)> {
        self.batched.lock().unwrap().clone()
    }

    /// Its address as `serve --downstream` takes it.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
}

/// Where a sink session notes the command lines it reads.
#[derive(Clone, Copy)]
struct Logs<'a> {
    all: &'a Mutex<Vec<(usize, String)>>,
    batched: &'a Mutex<Vec<(usize, String)>>,
}

fn session(
    conn: TcpStream,
    n: usize,
    options: &SinkOptions,
    kept: &Mutex<Vec<Vec<u8>>>,
    logs: Logs,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(options.idle_close.unwrap_or(Duration::from_secs(60))))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    w.write_all(b"220 sink.test ESMTP\r\n")?;
    let mut line = String::new();
    let mut after_rset = false;
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e)
                if options.idle_close.is_some()
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
            {
                // Idle too long: say so and close, as Postfix does.
                w.write_all(b"421 4.4.2 sink.test Error: timeout exceeded\r\n")?;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        logs.all
            .lock()
            .unwrap()
            .push((n, line.trim_end().to_string()));
        if !r.buffer().is_empty() {
            logs.batched
                .lock()
                .unwrap()
                .push((n, line.trim_end().to_string()));
        }
        if options.die_after_rset && after_rset {
            w.write_all(b"421 4.4.2 sink.test closing\r\n")?;
            return Ok(());
        }
        after_rset = cmd == "RSET";
        if cmd.starts_with("EHLO") || cmd.starts_with("LHLO") {
            let xforward: &[u8] = if options.xforward {
                b"250-XFORWARD NAME ADDR PROTO HELO IDENT\r\n"
            } else {
                b""
            };
            let pipelining: &[u8] = if options.pipelining {
                b"250-PIPELINING\r\n"
            } else {
                b""
            };
            w.write_all(
                &[
                    b"250-sink.test\r\n",
                    xforward,
                    pipelining,
                    b"250 8BITMIME\r\n",
                ]
                .concat(),
            )?;
        } else if cmd == "DATA" {
            w.write_all(b"354 go\r\n")?;
            let mut msg = Vec::new();
            let mut l = Vec::new();
            loop {
                l.clear();
                if r.read_until(b'\n', &mut l)? == 0 || l == b".\r\n" {
                    break;
                }
                msg.extend_from_slice(if l.starts_with(b"..") { &l[1..] } else { &l });
            }
            kept.lock().unwrap().push(msg);
            w.write_all(b"250 2.0.0 queued\r\n")?;
        } else if cmd == "RSET" && options.rset_reply.is_some() {
            let reply = options.rset_reply.unwrap_or_default();
            w.write_all(format!("{reply}\r\n").as_bytes())?;
        } else if cmd == "QUIT" {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"250 2.0.0 Ok\r\n")?;
        }
    }
}

/// A line-oriented SMTP client.
pub struct Client {
    /// The reading half.
    pub r: BufReader<TcpStream>,
    /// The writing half.
    pub w: TcpStream,
}

impl Client {
    /// Connects to 127.0.0.1:`port` (replies must come within 30 s).
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }

    /// One reply, all its lines; "" at EOF.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    /// Sends one command line; returns its reply.
    pub fn cmd(&mut self, c: &str) -> String {
        self.w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    /// EHLO, MAIL, RCPT, DATA with `body` (dot-stuffing not needed for these bodies);
    /// returns the reply to the final dot.
    pub fn send_mail(&mut self, body: &str) -> String {
        assert!(self.cmd("EHLO client.test").starts_with("250"));
        assert!(self.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
        assert!(self.cmd("RCPT TO:<b@example.net>").starts_with("250"));
        assert!(self.cmd("DATA").starts_with("354"));
        self.w.write_all(body.as_bytes()).unwrap();
        self.cmd(".")
    }
}

/// Sends one mail from `from` to `to` over a session of its own (dot-stuffed, CRLF
/// ended); returns the reply to the final dot ("" when the session ended before it).
pub fn send(port: u16, from: &str, to: &str, mail: &[u8]) -> String {
    let mut c = Client::connect(port);
    c.reply();
    for cmd in [
        "EHLO client.test".to_string(),
        format!("MAIL FROM:<{from}>"),
        format!("RCPT TO:<{to}>"),
    ] {
        let r = c.cmd(&cmd);
        if !r.starts_with("250") {
            return r;
        }
    }
    let r = c.cmd("DATA");
    if !r.starts_with("354") {
        return r;
    }
    let mut data = Vec::new();
    for line in mail.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    if !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    c.w.write_all(&data).unwrap();
    let done = c.reply();
    let _ = c.w.write_all(b"QUIT\r\n");
    done
}
