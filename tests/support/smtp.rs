//! SMTP on loopback: a sink that keeps what it is sent (the downstream of `serve`), a
//! line client, and a sender of whole mails.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An SMTP (and LMTP) server that accepts everything and keeps each message, unstuffed.
pub struct Sink {
    /// Where it listens.
    pub port: u16,
    mails: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Sink {
    /// Starts a sink on a free port.
    pub fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&mails);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let kept = Arc::clone(&kept);
                std::thread::spawn(move || {
                    let _ = session(conn, &kept);
                });
            }
        });
        Sink { port, mails }
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

    /// Its address as `serve --downstream` takes it.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
}

fn session(conn: TcpStream, kept: &Mutex<Vec<Vec<u8>>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    w.write_all(b"220 sink.test ESMTP\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("EHLO") || cmd.starts_with("LHLO") {
            w.write_all(b"250-sink.test\r\n250 8BITMIME\r\n")?;
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
