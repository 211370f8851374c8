//! Every way in gets the same features (issue 16): a table of frontends x features.
//! Each test below is one feature, and loops over the ways in, sending the same mail
//! with the same flags through each:
//!
//! - `filter`: the real binary on a pipe;
//! - `serve`: the real binary in front of an SMTP sink;
//! - `milter`: the real binary behind the real Postfix of tests/mailstack
//!   (`smtpd_milters`), delivering to the real Dovecot;
//! - `imap`: a mail delivered to the real Dovecot over LMTP, then the real sweep.
//!
//! The milter and the sweep need the mail stack: without it they say SKIPPED and the
//! table runs for the other two, unless MAILVEIL_REQUIRE_MAILSTACK=1.

mod support;

#[path = "mailstack/harness.rs"]
mod harness;

use harness::Stack;
use std::process::{Command, Stdio};
use std::sync::MutexGuard;
use std::time::Duration;
use support::{Daemon, Esp, MAILVEIL, Sink, free_port, launch, mail, send, wait_until};

/// The milter's deliveries go to alice, the sweep's mailbox is bob's: one stack serves
/// both without the sweep seeing what the milter delivered.
const ALICE: &str = "alice@example.test";
const BOB: &str = "bob@example.test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Filter,
    Serve,
    Milter,
    Imap,
}

const WAYS: [Way; 4] = [Way::Filter, Way::Serve, Way::Milter, Way::Imap];

/// What became of a mail.
#[derive(Debug)]
enum Delivery {
    /// Delivered: the mail as its reader gets it.
    Delivered(String),
    /// Not delivered (a temporary failure; for the sweep: left where it was), and why.
    Refused(String),
}

impl Delivery {
    fn text(&self, way: Way) -> &str {
        match self {
            Delivery::Delivered(t) => t,
            Delivery::Refused(why) => panic!("{way:?}: not delivered: {why}"),
        }
    }
}

/// The real parts the ways in need, for one test.
struct Bench {
    /// The mail stack (and the lock that keeps other stacks off the machine).
    stack: Option<(Stack, MutexGuard<'static, ()>)>,
    /// The `mailveil` of the last delivery (a daemon records its report after it
    /// answered: it must outlive the checks).
    daemon: Option<Daemon>,
    dir: tempfile::TempDir,
    sweeps: usize,
}

impl Bench {
    fn new() -> Bench {
        let stack = harness::guard().map(|g| (Stack::start_with("", "inet:127.0.0.1:{milter}"), g));
        Bench {
            stack,
            daemon: None,
            dir: tempfile::tempdir().unwrap(),
            sweeps: 0,
        }
    }

    /// Whether `way` can run here.
    fn has(&self, way: Way) -> bool {
        matches!(way, Way::Filter | Way::Serve) || self.stack.is_some()
    }

    /// The ways in that run here.
    fn ways(&self) -> Vec<Way> {
        WAYS.into_iter().filter(|w| self.has(*w)).collect()
    }

    /// Sends `mail` (marked with `token`) in through `way` with `flags`.
    fn deliver(&mut self, way: Way, flags: &[&str], mail: &[u8], token: &str) -> Delivery {
        self.daemon = None;
        match way {
            Way::Filter => filter(flags, mail),
            Way::Serve => {
                let sink = Sink::start();
                let port = free_port();
                let d = launch::serve(port, &sink.url(), flags);
                let reply = send(port, "news@sender.example", ALICE, mail);
                self.daemon = Some(d);
                match reply.get(..1) {
                    Some("2") => Delivery::Delivered(sink.texts().pop().unwrap()),
                    Some("4") => Delivery::Refused(reply),
                    _ => panic!("serve: {reply}"),
                }
            }
            Way::Milter => self.milter(flags, mail, token),
            Way::Imap => self.sweep(flags, mail, token),
        }
    }

    fn milter(&mut self, flags: &[&str], mail: &[u8], token: &str) -> Delivery {
        let stack = &mut self.stack.as_mut().unwrap().0;
        let port = stack.ports.filter;
        stack.kill_mailveil();
        let listen = format!("inet:127.0.0.1:{port}");
        let mut args = vec!["milter", "--listen", &listen, "--no-system-rules"];
        args.extend_from_slice(flags);
        stack.start_mailveil_args(&args, port);
        let file = stack.run.join(format!("{token}.eml"));
        std::fs::write(&file, mail).unwrap();
        let data = file.display().to_string();
        let from = ["--from", "news@sender.example", "--to", ALICE];
        let (ok, out) = stack.swaks(
            stack.ports.inbound,
            &[&from[..], &["--data", &data]].concat(),
        );
        if !ok {
            assert!(out.contains("<** 4"), "milter: {out}");
            return Delivery::Refused(out);
        }
        Delivery::Delivered(mailbox_wait(stack, "alice", token))
    }

    fn sweep(&mut self, flags: &[&str], mail: &[u8], token: &str) -> Delivery {
        let stack = &mut self.stack.as_mut().unwrap().0;
        let file = stack.run.join(format!("{token}.eml"));
        std::fs::write(&file, mail).unwrap();
        let out = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{}", stack.ports.lmtp)])
            .args([
                "--protocol",
                "LMTP",
                "--from",
                "news@sender.example",
                "--to",
                BOB,
            ])
            .arg("--data")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "LMTP: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        mailbox_wait(stack, "bob", token);
        self.sweeps += 1;
        let pass = stack.run.join("bob-password");
        std::fs::write(&pass, "secret\n").unwrap();
        let state = self.dir.path().join(format!("state-{}.json", self.sweeps));
        let out = Command::new(MAILVEIL)
            .args([
                "imap",
                "--server",
                &format!("imap://127.0.0.1:{}", stack.ports.imap),
            ])
            .args(["--user", BOB, "--no-system-rules", "--password-file"])
            .arg(&pass)
            .arg("--state")
            .arg(&state)
            .args(flags)
            .env("MAILVEIL_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Delivery::Refused(log);
        }
        Delivery::Delivered(mailbox(stack, "bob", token).unwrap_or_else(|| panic!("{log}")))
    }
}

/// The filter on a pipe: 0 is a delivery, 75 a refusal.
fn filter(flags: &[&str], mail: &[u8]) -> Delivery {
    use std::io::Write;
    let mut child = Command::new(MAILVEIL)
        .args(["filter", "--no-system-rules", "--recipient", ALICE])
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(mail).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Delivery::Delivered(String::from_utf8_lossy(&out.stdout).into_owned()),
        Some(75) => Delivery::Refused(stderr),
        other => panic!("filter exited {other:?}: {stderr}"),
    }
}

/// The one message in `user`'s Maildir that carries `token`, if any.
fn mailbox(stack: &Stack, user: &str, token: &str) -> Option<String> {
    let found: Vec<String> = stack
        .maildir(user)
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter(|m| m.contains(token))
        .collect();
    assert!(
        found.len() <= 1,
        "{user}: {} messages with {token}",
        found.len()
    );
    found.into_iter().next()
}

fn mailbox_wait(stack: &Stack, user: &str, token: &str) -> String {
    let mut got = None;
    wait_until(Duration::from_secs(30), || {
        got = mailbox(stack, user, token);
        got.is_some()
    });
    got.unwrap_or_else(|| {
        panic!(
            "{user}: no mail {token}\n{}\n{}",
            harness::tail(&stack.postfix_log(), 20),
            harness::tail(&stack.mailveil_log(), 20)
        )
    })
}

/// A token for one delivery: unique in the mailboxes of this run.
fn token(feature: &str, way: Way) -> String {
    format!("{feature}-{way:?}-{}", std::process::id()).to_lowercase()
}

fn newsletter(way: Way, token: &str, image: &str) -> Vec<u8> {
    let to = if way == Way::Imap { BOB } else { ALICE };
    mail::newsletter(to, token, image)
}

#[test]
fn reports_are_recorded_from_every_way_in() {
    let mut bench = Bench::new();
    for way in bench.ways() {
        let t = token("report", way);
        let db = bench.dir.path().join(format!("{t}.sqlite"));
        let db = db.display().to_string();
        let mail = newsletter(way, &t, "https://images.example/sale.png");
        bench
            .deliver(way, &["--report-db", &db], &mail, &t)
            .text(way);
        // a daemon records after it answered: the report may come a moment later
        let mut record = serde_json::Value::Null;
        wait_until(Duration::from_secs(10), || {
            let out = Command::new(MAILVEIL)
                .args(["report", "--report-db", &db, "--format", "json"])
                .args(["--message-id", &format!("{t}@sender.example")])
                .output()
                .unwrap();
            record = serde_json::from_slice(&out.stdout).unwrap_or_default();
            record.as_array().is_some_and(|a| a.len() == 1)
        })
        .unwrap_or_else(|| panic!("{way:?}: not recorded: {record}"));
        let m = &record[0];
        assert!(m["blocked"].as_i64().unwrap() >= 1, "{way:?}: {m}");
        assert!(
            m["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["kind"] == "pixel" || f["kind"] == "recipient-token"),
            "{way:?}: {m}"
        );
    }
}

#[test]
fn the_banner_from_every_way_in() {
    let mut bench = Bench::new();
    for way in bench.ways() {
        for on in [true, false] {
            let t = token(&format!("banner{on}"), way);
            let mail = newsletter(way, &t, "https://images.example/sale.png");
            let flags: &[&str] = if on { &["--banner"] } else { &[] };
            let d = bench.deliver(way, flags, &mail, &t);
            let got = d.text(way);
            assert_eq!(
                got.contains("data-mailveil-banner"),
                on,
                "{way:?} --banner {on}: {got}"
            );
            assert!(!got.contains("t.example/open.gif"), "{way:?}: {got}");
        }
    }
}

/// The proxy flags: URLs signed for a proxy at `base` with a key in `dir`, fetches to
/// loopback allowed (the fake ESP), the cache in `dir`.
fn proxy_flags(dir: &std::path::Path, mode: &str) -> Vec<String> {
    let key = dir.join("proxy.key");
    std::fs::write(
        &key,
        "6d61696c7665696c2074657374206b6579206f662033322062797465732121\n",
    )
    .unwrap();
    let cache = dir.join("cache");
    vec![
        "--remote-content".into(),
        mode.into(),
        "--proxy-base".into(),
        "http://127.0.0.1:9/mv".into(),
        "--proxy-key-file".into(),
        key.display().to_string(),
        "--proxy-allow-net".into(),
        "127.0.0.0/8".into(),
        "--proxy-cache-dir".into(),
        cache.display().to_string(),
    ]
}

#[test]
fn prefetch_fetches_each_image_once_at_delivery_from_every_way_in() {
    let mut bench = Bench::new();
    let esp = Esp::start();
    let flags = proxy_flags(bench.dir.path(), "prefetch");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    for way in bench.ways() {
        let t = token("prefetch", way);
        let path = format!("/img/{t}.png");
        let mail = newsletter(way, &t, &esp.url(&path));
        let got = bench.deliver(way, &flags, &mail, &t).text(way).to_string();
        assert!(got.contains("http://127.0.0.1:9/mv/i/"), "{way:?}: {got}");
        assert!(
            !got.contains(&esp.url(&path)),
            "{way:?}: the image URL left: {got}"
        );
        // fetched at delivery, before the mail was handed on; once
        assert_eq!(esp.hits_for(&path).len(), 1, "{way:?}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(esp.hits_for(&path).len(), 1, "{way:?}: fetched again");
        assert!(esp.hits_for("/track/open.php").is_empty());
    }
}

#[test]
fn proxy_rewrites_without_fetching_from_every_way_in() {
    let mut bench = Bench::new();
    let esp = Esp::start();
    let flags = proxy_flags(bench.dir.path(), "proxy");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    for way in bench.ways() {
        let t = token("proxy", way);
        let path = format!("/img/{t}.png");
        let mail = newsletter(way, &t, &esp.url(&path));
        let got = bench.deliver(way, &flags, &mail, &t).text(way).to_string();
        assert!(got.contains("http://127.0.0.1:9/mv/i/"), "{way:?}: {got}");
        assert!(!got.contains(&esp.url(&path)), "{way:?}: {got}");
        assert!(
            esp.hits_for(&path).is_empty(),
            "{way:?}: fetched at delivery"
        );
    }
}

#[test]
fn signed_mail_is_kept_or_cleaned_as_asked_from_every_way_in() {
    let mut bench = Bench::new();
    for way in bench.ways() {
        for (flags, cleaned) in [(&["--signed", "clean"][..], true), (&[][..], false)] {
            let t = token(&format!("signed{cleaned}"), way);
            let to = if way == Way::Imap { BOB } else { ALICE };
            let d = bench.deliver(way, flags, &mail::signed(to, &t), &t);
            let got = d.text(way);
            assert_eq!(
                got.contains("signed-original.eml"),
                cleaned,
                "{way:?} {flags:?}: {got}"
            );
        }
    }
}

#[test]
fn on_error_passes_wrapped_or_fails_temporarily_from_every_way_in() {
    let mut bench = Bench::new();
    for way in bench.ways() {
        // --max-time 0: every mail is out of time, so none can be read
        let t = token("tempfail", way);
        let mail = newsletter(way, &t, "https://images.example/sale.png");
        let d = bench.deliver(
            way,
            &["--max-time", "0", "--on-error", "tempfail"],
            &mail,
            &t,
        );
        assert!(matches!(d, Delivery::Refused(_)), "{way:?}: {d:?}");
        if way == Way::Milter {
            let stack = &bench.stack.as_ref().unwrap().0;
            assert!(mailbox(stack, "alice", &t).is_none(), "delivered anyway");
        }
        let t = token("pass", way);
        let mail = newsletter(way, &t, "https://images.example/sale.png");
        let d = bench.deliver(way, &["--max-time", "0", "--on-error", "pass"], &mail, &t);
        if way == Way::Imap {
            // the sweep never replaces a mail by its wrapper: it is left as it was
            assert!(matches!(d, Delivery::Refused(_)), "{d:?}");
            continue;
        }
        let got = d.text(way);
        assert!(got.contains("error=time-limit"), "{way:?}: {got}");
        assert!(got.contains("original.eml"), "{way:?}: {got}");
    }
}

#[test]
fn read_receipts_are_stripped_when_asked_from_every_way_in() {
    let mut bench = Bench::new();
    for way in bench.ways() {
        for on in [true, false] {
            let t = token(&format!("receipt{on}"), way);
            let mail = newsletter(way, &t, "https://images.example/sale.png");
            let flags: &[&str] = if on { &["--strip-read-receipts"] } else { &[] };
            let d = bench.deliver(way, flags, &mail, &t);
            let got = d.text(way);
            assert_eq!(
                !got.contains("Disposition-Notification-To:"),
                on,
                "{way:?} --strip-read-receipts {on}: {got}"
            );
        }
    }
}

#[test]
fn campaign_parameters_are_kept_when_asked_from_every_way_in() {
    let mut bench = Bench::new();
    for way in bench.ways() {
        for on in [true, false] {
            let t = token(&format!("campaign{on}"), way);
            let mail = newsletter(way, &t, "https://images.example/sale.png");
            let flags: &[&str] = if on { &["--keep-campaign-params"] } else { &[] };
            let d = bench.deliver(way, flags, &mail, &t);
            let got = d.text(way);
            assert_eq!(
                got.contains("utm_source=news"),
                on,
                "{way:?} --keep-campaign-params {on}: {got}"
            );
            assert!(got.contains("https://shop.example/sale"), "{way:?}: {got}");
        }
    }
}

/// A newsletter whose only link is an opaque click tracker (no destination in view),
/// in its text part and its HTML part.
fn opaque_click(way: Way, token: &str) -> Vec<u8> {
    let to = if way == Way::Imap { BOB } else { ALICE };
    let click = "https://news.us1.list-manage.com/track/click?u=1&id=2&e=3";
    format!(
        "From: News <news@sender.example>\r\nTo: {to}\r\nSubject: Read more {token}\r\n\
         Message-ID: <{token}@sender.example>\r\nDate: Mon, 30 Nov 2026 08:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nRead: {click}\r\n\
         --b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p><a href=\"{}\">Read</a></p>\r\n--b--\r\n",
        click.replace('&', "&amp;")
    )
    .into_bytes()
}

/// Issue 18, item 6: with the link shield on, an opaque click tracker goes through the
/// shield from every way in, in text/plain as in HTML; nothing is fetched at delivery.
#[test]
fn opaque_click_trackers_are_shielded_from_every_way_in() {
    let mut bench = Bench::new();
    let mut flags = proxy_flags(bench.dir.path(), "proxy");
    flags.push("--shield-links".into());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    for way in bench.ways() {
        let t = token("shield", way);
        let got = bench
            .deliver(way, &flags, &opaque_click(way, &t), &t)
            .text(way)
            .to_string();
        assert!(
            !got.contains("list-manage.com/track/click"),
            "{way:?}: the tracker left in view: {got}"
        );
        let (plain, html) = got.split_once("text/html").expect("two parts");
        for (part, text) in [("text", plain), ("html", html)] {
            assert!(
                text.contains("http://127.0.0.1:9/mv/l/"),
                "{way:?}: the {part} link not shielded: {got}"
            );
        }
    }
}
