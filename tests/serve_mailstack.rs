//! `mailveil serve` with the real parts: Postfix (after-queue content_filter and
//! reinjection), Dovecot (LMTP into Maildir, IMAP), swaks and smtp-source, all on
//! 127.0.0.1. Skips when they are not installed, unless MAILVEIL_REQUIRE_MAILSTACK=1.

#[path = "mailstack/harness.rs"]
mod harness;

use harness::{Stack, free_port, guard, header, imap_fetch, tail, wait_until};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const FILTER: &str = "filter:[127.0.0.1]:{filter}";

fn tracked_body(token: &str) -> String {
    format!(
        "<html><body><p>Hello {token}, the content stays.</p>\
         <img src=\"https://t.example/open.gif?e=alice@example.test\" width=\"1\" height=\"1\">\
         </body></html>"
    )
}

fn swaks_tracked(stack: &Stack, port: u16, to: &str, token: &str) -> (bool, String) {
    let mid = format!("<{token}@sender.example>");
    let subject = format!("Subject: {token}");
    let message_id = format!("Message-Id: {mid}");
    let body = tracked_body(token);
    stack.swaks(
        port,
        &[
            "--from",
            "news@sender.example",
            "--to",
            to,
            "--header",
            &subject,
            "--header",
            &message_id,
            "--add-header",
            "MIME-Version: 1.0",
            "--add-header",
            "Content-Type: text/html; charset=utf-8",
            "--body",
            &body,
        ],
    )
}

fn assert_cleaned(msg: &str, token: &str) {
    assert_eq!(
        header(msg, "X-Mailveil").len(),
        1,
        "one X-Mailveil header:\n{msg}"
    );
    assert!(header(msg, "X-Mailveil")[0].starts_with("v="), "{msg}");
    assert!(
        !msg.contains("t.example/open.gif"),
        "tracker still there:\n{msg}"
    );
    assert!(
        msg.contains(&format!("Hello {token}, the content stays.")),
        "content lost:\n{msg}"
    );
    assert_eq!(
        header(msg, "Message-ID"),
        [format!("<{token}@sender.example>").as_str()],
        "Message-ID changed:\n{msg}"
    );
    assert_eq!(
        header(msg, "To"),
        ["alice@example.test,bob@example.test"],
        "{msg}"
    );
}

#[test]
fn tracked_mail_through_postfix_and_reinjection_arrives_cleaned() {
    let Some(_g) = guard() else { return };
    let mut stack = Stack::start(FILTER);
    let down = format!("smtp://127.0.0.1:{}", stack.ports.reinject);
    stack.start_mailveil(stack.ports.filter, &down, &[]);
    let token = format!("e2e{}", std::process::id());
    let (ok, out) = swaks_tracked(
        &stack,
        stack.ports.inbound,
        "alice@example.test,bob@example.test",
        &token,
    );
    assert!(ok, "{out}");
    for user in ["alice", "bob"] {
        let msgs = stack.wait_mail(user, 1, Duration::from_secs(30));
        assert_eq!(msgs.len(), 1, "{user} got {} copies", msgs.len());
        let msg = &msgs[0];
        assert_cleaned(msg, &token);
        // went through the filter and was reinjected: two Postfix hops and the LMTP hop
        assert!(header(msg, "Received").len() >= 3, "{msg}");
    }
    // read back over IMAP
    let fetched = imap_fetch(stack.ports.imap, "alice@example.test", "secret", &token);
    assert_eq!(fetched.len(), 1);
    assert!(fetched[0].contains("X-Mailveil: v="));
    assert!(!fetched[0].contains("t.example/open.gif"));
    // one log line for the mail, with Postfix's queue id (from XFORWARD)
    let log = stack.mailveil_log();
    let line = log
        .lines()
        .find(|l| l.contains(": mail queue_id="))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(!line.contains("queue_id= "), "queue id missing: {line}");
    assert!(line.contains("rcpts=2"), "{line}");
    assert!(line.contains("recipient-token=1"), "{line}");
    // the XFORWARD attributes reached the reinjection smtpd
    assert!(
        stack.postfix_log().contains("orig_queue_id="),
        "{}",
        tail(&stack.postfix_log(), 20)
    );
    assert_eq!(stack.queued(), 0);
}

#[test]
fn lmtp_direct_postfix_speaks_lmtp_to_mailveil_which_delivers_to_dovecot() {
    let Some(_g) = guard() else { return };
    let mut stack = Stack::start("lmtp:[127.0.0.1]:{filter}");
    let down = format!("lmtp:unix:{}", stack.lmtp_socket().display());
    stack.start_mailveil(stack.ports.filter, &down, &[]);
    let token = format!("lmtp{}", std::process::id());
    let (ok, out) = swaks_tracked(
        &stack,
        stack.ports.inbound,
        "alice@example.test,bob@example.test",
        &token,
    );
    assert!(ok, "{out}");
    for user in ["alice", "bob"] {
        let msgs = stack.wait_mail(user, 1, Duration::from_secs(30));
        assert_eq!(msgs.len(), 1);
        assert_cleaned(&msgs[0], &token);
    }
    let fetched = imap_fetch(stack.ports.imap, "bob@example.test", "secret", &token);
    assert_eq!(fetched.len(), 1);
    assert!(fetched[0].contains("X-Mailveil: v="));
    assert!(stack.postfix_log().contains("status=sent"));
}

#[test]
fn two_thousand_mails_through_the_chain_each_delivered_once() {
    let Some(_g) = guard() else { return };
    let mut stack = Stack::start(FILTER);
    let down = format!("smtp://127.0.0.1:{}", stack.ports.reinject);
    stack.start_mailveil(stack.ports.filter, &down, &[]);
    let n = 2000;
    let started = Instant::now();
    let out = std::process::Command::new("smtp-source")
        .args(["-s", "20", "-m", &n.to_string(), "-l", "5000"])
        .args([
            "-M",
            "client.example.org",
            "-f",
            "sender@example.org",
            "-t",
            "bench@example.test",
        ])
        .arg(format!("127.0.0.1:{}", stack.ports.inbound))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let accepted = started.elapsed();
    stack.wait_mail("bench", n, Duration::from_secs(240));
    let delivered = started.elapsed();
    // nothing more arrives later (no duplicates), the queue is empty
    std::thread::sleep(Duration::from_secs(2));
    let files = stack.maildir("bench");
    let mut ids = HashSet::new();
    for f in &files {
        let msg = std::fs::read_to_string(f).unwrap();
        assert!(
            msg.contains("X-Mailveil: v="),
            "not filtered: {}",
            f.display()
        );
        let id = header(&msg, "Message-Id")
            .first()
            .map(|s| s.to_string())
            .unwrap_or_default();
        assert!(ids.insert(id.clone()), "duplicate Message-Id {id}");
    }
    assert_eq!(files.len(), n, "files");
    assert_eq!(ids.len(), n, "distinct Message-Ids");
    assert_eq!(stack.queued(), 0);
    let mails_logged = stack
        .mailveil_log()
        .lines()
        .filter(|l| l.contains("reply=[250]"))
        .count();
    assert_eq!(mails_logged, n);
    eprintln!(
        "LOAD: {n} mails accepted by Postfix in {:.1} s, all {n} in the Maildir after {:.1} s ({:.0} mails/s end to end)",
        accepted.as_secs_f64(),
        delivered.as_secs_f64(),
        n as f64 / delivered.as_secs_f64()
    );
}

#[test]
fn downstream_down_means_451_and_queued_then_all_arrive_once() {
    let Some(_g) = guard() else { return };
    let mut stack = Stack::start(FILTER);
    let down = format!("lmtp:unix:{}", stack.lmtp_socket().display());
    stack.start_mailveil(stack.ports.filter, &down, &[]);
    stack.script("dovecot-down.sh");
    // straight to mailveil: the client is told to retry
    let (ok, out) = swaks_tracked(&stack, stack.ports.filter, "alice@example.test", "direct");
    assert!(!ok);
    assert!(out.contains("<** 451 4.4.1"), "{out}");
    // through Postfix: deferred, kept in the queue, nothing delivered
    let n = 5;
    for i in 0..n {
        let (ok, out) = swaks_tracked(
            &stack,
            stack.ports.inbound,
            "alice@example.test",
            &format!("held{i}x"),
        );
        assert!(ok, "{out}");
    }
    wait_until(Duration::from_secs(30), || {
        stack.postfix_log().matches("status=deferred").count() >= n
    })
    .unwrap_or_else(|| panic!("not deferred:\n{}", tail(&stack.postfix_log(), 20)));
    assert_eq!(stack.queued(), n, "{}", stack.postqueue("-p"));
    assert!(
        stack.postqueue("-p").contains("451"),
        "{}",
        stack.postqueue("-p")
    );
    assert!(stack.maildir("alice").is_empty());
    // downstream back, flush: every mail arrives, once
    stack.script("dovecot-up.sh");
    stack.postqueue("-f");
    stack.wait_mail("alice", n, Duration::from_secs(60));
    wait_until(Duration::from_secs(20), || stack.queued() == 0).expect("queue drained");
    std::thread::sleep(Duration::from_secs(2));
    let msgs: Vec<String> = stack
        .maildir("alice")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(msgs.len(), n, "none twice");
    for i in 0..n {
        let want = format!("Subject: held{i}x");
        assert_eq!(
            msgs.iter().filter(|m| m.contains(&want)).count(),
            1,
            "{want}"
        );
    }
}

/// A TCP relay between Postfix and mailveil that can freeze a session in the middle of
/// the message data, so the test can kill mailveil at exactly that point.
struct CutProxy {
    cut: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
}

impl CutProxy {
    fn start(listen: u16, target: u16) -> CutProxy {
        let cut = Arc::new(AtomicBool::new(true));
        let frozen = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind(("127.0.0.1", listen)).unwrap();
        let (c, f) = (Arc::clone(&cut), Arc::clone(&frozen));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let (c, f) = (Arc::clone(&c), Arc::clone(&f));
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    // client -> server, freezing 2000 bytes into the data when cutting
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 8192];
                    let mut body_sent: Option<usize> = None;
                    loop {
                        let n = match c_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let mut chunk = &buf[..n];
                        if c.load(Ordering::SeqCst) {
                            if body_sent.is_none() {
                                seen.extend_from_slice(chunk);
                                if let Some(p) = seen.windows(6).position(|w| w == b"DATA\r\n") {
                                    // body starts after the 354, in a later read
                                    let _ = p;
                                    body_sent = Some(0);
                                    if s_out.write_all(chunk).is_err() {
                                        break;
                                    }
                                    continue;
                                }
                            } else if let Some(sent) = body_sent.as_mut() {
                                let room = 2000usize.saturating_sub(*sent);
                                if chunk.len() > room {
                                    chunk = &chunk[..room];
                                    let _ = s_out.write_all(chunk);
                                    f.store(true, Ordering::SeqCst);
                                    // hold the rest: wait until the server side dies
                                    let mut sink = [0u8; 8192];
                                    while c_in.read(&mut sink).map(|n| n > 0).unwrap_or(false) {}
                                    break;
                                }
                                *sent += chunk.len();
                            }
                        }
                        if s_out.write_all(chunk).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Both);
                });
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(Shutdown::Both);
                });
            }
        });
        CutProxy { cut, frozen }
    }
}

#[test]
fn sigkill_in_the_middle_of_data_loses_nothing() {
    let Some(_g) = guard() else { return };
    // Postfix -> proxy (filter port) -> mailveil (its own port) -> reinjection -> Dovecot
    let mut stack = Stack::start(FILTER);
    let mv_port = free_port();
    let proxy = CutProxy::start(stack.ports.filter, mv_port);
    let down = format!("smtp://127.0.0.1:{}", stack.ports.reinject);
    stack.start_mailveil(mv_port, &down, &[]);
    let big = "x".repeat(76);
    let body: String = (0..2000).map(|i| format!("line {i} {big}\n")).collect();
    let body_file = stack.run.join("big-body.txt");
    std::fs::write(&body_file, body).unwrap();
    let body_arg = format!("@{}", body_file.display());
    let (ok, out) = stack.swaks(
        stack.ports.inbound,
        &[
            "--from",
            "a@sender.example",
            "--to",
            "alice@example.test",
            "--header",
            "Subject: killed-mid-data",
            "--body",
            &body_arg,
        ],
    );
    assert!(ok, "{out}");
    wait_until(Duration::from_secs(30), || {
        proxy.frozen.load(Ordering::SeqCst)
    })
    .expect("Postfix started the data");
    stack.kill_mailveil();
    wait_until(Duration::from_secs(30), || {
        stack.postfix_log().contains("status=deferred")
    })
    .unwrap_or_else(|| panic!("not deferred:\n{}", tail(&stack.postfix_log(), 20)));
    assert_eq!(stack.queued(), 1);
    assert!(stack.maildir("alice").is_empty());
    // mailveil back, no more cutting, Postfix retries
    proxy.cut.store(false, Ordering::SeqCst);
    stack.start_mailveil(mv_port, &down, &[]);
    stack.postqueue("-f");
    let msgs = stack.wait_mail("alice", 1, Duration::from_secs(60));
    wait_until(Duration::from_secs(20), || stack.queued() == 0).expect("queue drained");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(stack.maildir("alice").len(), 1, "exactly once");
    assert!(msgs[0].contains("line 1999 "), "complete");
    assert!(msgs[0].contains("X-Mailveil: v="));
}

#[test]
fn foreign_recipient_is_for_the_downstream_to_decide() {
    let Some(_g) = guard() else { return };
    let mut stack = Stack::start("");
    let down = format!("lmtp://127.0.0.1:{}", stack.ports.lmtp);
    stack.start_mailveil(stack.ports.filter, &down, &[]);
    let (ok, out) = stack.swaks(
        stack.ports.filter,
        &[
            "--from",
            "a@sender.example",
            "--to",
            "someone@foreign.example",
            "--body",
            "relay?",
        ],
    );
    assert!(!ok);
    // Dovecot knows no such user: its refusal comes back as it is
    assert!(out.contains("<** 550 5.1.1"), "{out}");
    let (ok, out) = stack.swaks(
        stack.ports.filter,
        &[
            "--from",
            "a@sender.example",
            "--to",
            "bob@example.test",
            "--body",
            "local",
        ],
    );
    assert!(ok, "{out}");
    stack.wait_mail("bob", 1, Duration::from_secs(20));
}
