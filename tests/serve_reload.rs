//! Hot reload in `mailveil serve`: a rule file dropped into the watched directory applies
//! to the next mail; a broken edit keeps the last good set (and mail flows); SIGHUP
//! reloads too. Loopback only, with a capturing SMTP sink as the downstream.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAILVEIL: &str = env!("CARGO_BIN_EXE_mailveil");

struct Serve(Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An SMTP downstream that keeps every message it receives.
fn sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&got);
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let _ = w.write_all(b"220 sink\r\n");
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    let cmd = line.trim_end().to_ascii_uppercase();
                    line.clear();
                    if cmd.starts_with("EHLO") {
                        let _ = w.write_all(b"250-sink\r\n250 8BITMIME\r\n");
                    } else if cmd == "DATA" {
                        let _ = w.write_all(b"354 go\r\n");
                        let mut data = String::new();
                        let mut l = String::new();
                        while r.read_line(&mut l).unwrap_or(0) > 0 && l != ".\r\n" {
                            data.push_str(&l);
                            l.clear();
                        }
                        store.lock().unwrap().push(data);
                        let _ = w.write_all(b"250 2.0.0 kept\r\n");
                    } else if cmd == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        let _ = w.write_all(b"250 2.0.0 Ok\r\n");
                    }
                }
            });
        }
    });
    (port, got)
}

fn send(port: u16, body: &str) -> String {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    };
    reply();
    for c in [
        "EHLO test.example",
        "MAIL FROM:<news@sender.example>",
        "RCPT TO:<r@example.org>",
        "DATA",
    ] {
        w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        reply();
    }
    w.write_all(format!("{body}\r\n.\r\n").as_bytes()).unwrap();
    let last = reply();
    w.write_all(b"QUIT\r\n").unwrap();
    last
}

const MAIL: &str = "From: news@sender.example\r\nTo: r@example.org\r\nSubject: reload\r\nContent-Type: text/html\r\n\r\n<p>hi</p><img src=\"https://t.acme.example/o/42\" alt=\"\" width=\"600\">";
const RULE: &str = "[[tracker]]\nid = \"acme\"\nname = \"ACME\"\ncategory = \"esp\"\nsource = \"test\"\n\n[[pixel]]\nid = \"acme-open\"\ntracker = \"acme\"\nhost = \"t.acme.example\"\nsource = \"test\"\n";

/// Sends the mail until the delivered copy satisfies `want` (reloads are asynchronous).
fn delivered_until(
    port: u16,
    got: &Arc<Mutex<Vec<String>>>,
    want: impl Fn(&str) -> bool,
) -> String {
    let start = Instant::now();
    loop {
        assert!(send(port, MAIL).starts_with("250"));
        let last = got.lock().unwrap().last().cloned().unwrap();
        if want(&last) {
            return last;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "rules never reloaded:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn rules_reload_on_change_keep_the_last_good_set_and_reload_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (down, got) = sink();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(MAILVEIL)
        .args([
            "serve",
            "--no-system-rules",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--downstream",
            &format!("smtp://127.0.0.1:{down}"),
        ])
        .arg("--rules")
        .arg(dir.path())
        .env("MAILVEIL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let serve = Serve(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "not listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    // No rule yet: the image is content.
    assert!(send(port, MAIL).starts_with("250"));
    assert!(got.lock().unwrap()[0].contains("t.acme.example"));
    // A new rule file applies to the next mails, without a restart.
    std::fs::write(dir.path().join("acme.toml"), RULE).unwrap();
    let cleaned = delivered_until(port, &got, |m| !m.contains("t.acme.example"));
    assert!(cleaned.contains("trackers=ACME"));
    // A broken edit: the last good set stays, mail still flows and is still cleaned.
    std::fs::write(
        dir.path().join("acme.toml"),
        RULE.replace("host =", "hots ="),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(send(port, MAIL).starts_with("250"));
    assert!(
        !got.lock()
            .unwrap()
            .last()
            .unwrap()
            .contains("t.acme.example"),
        "a broken file dropped the good rules"
    );
    // Fixed with the rule removed, then SIGHUP: the image is content again.
    std::fs::write(dir.path().join("acme.toml"), "# nothing\n").unwrap();
    let pid = serve.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    delivered_until(port, &got, |m| m.contains("t.acme.example"));
}
