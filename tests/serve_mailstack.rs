//! `mailveil serve` with the real parts: Postfix (after-queue content_filter and
//! reinjection), Dovecot (LMTP into Maildir, IMAP), swaks and smtp-source, all on
//! 127.0.0.1. Skips when they are not installed, unless MAILVEIL_REQUIRE_MAILSTACK=1.

mod support;

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
        .find(|l| l.contains(" msg=mail queue_id="))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(!line.contains("queue_id=\"\""), "queue id missing: {line}");
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
    // Postfix logs the delivery once Dovecot answered, which may be after the Maildir
    // file is there.
    wait_until(Duration::from_secs(10), || {
        stack.postfix_log().contains("status=sent")
    })
    .unwrap_or_else(|| panic!("{}", tail(&stack.postfix_log(), 20)));
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

/// Aliases for the envelope tests: a quoted local part that is alice's, and a catch-all
/// domain that is bob's (the shape that turned a quoting bug into an open relay).
const ALIASES: &str = "/^\"?john smith\"?@example\\.test$/ alice@example.test\n\
    /^postmaster@example\\.test$/ alice@example.test\n/@catchall\\.example$/ bob@example.test";

/// The MAIL and RCPT commands the reinjection smtpd received, as its debug log shows.
fn reinjected_envelope(stack: &Stack) -> Vec<String> {
    stack
        .postfix_log()
        .lines()
        .filter_map(|l| l.split_once("]: ").map(|(_, cmd)| cmd))
        .filter(|c| c.starts_with("< ") && (c.contains(": MAIL FROM:") || c.contains(": RCPT TO:")))
        .filter_map(|c| c.split_once("]: ").map(|(_, cmd)| cmd.to_string()))
        .collect()
}

#[test]
fn the_envelope_reaches_postfix_meaning_what_the_client_sent() {
    let Some(_g) = guard() else { return };
    let env = [
        ("PF_ALIAS_REGEXP", ALIASES),
        ("PF_ALIAS_DOMAINS", "catchall.example"),
        ("PF_REINJECT_DEBUG", "1"),
    ];
    let mut stack = Stack::start_env(FILTER, "", &env);
    let down = format!("smtp://127.0.0.1:{}", stack.ports.reinject);
    stack.start_mailveil(stack.ports.filter, &down, &[]);
    // Through the whole chain: a quoted local part arrives for its own mailbox.
    let (ok, out) = stack.swaks(
        stack.ports.inbound,
        &[
            "--from",
            "news@sender.example",
            "--to",
            "\"john smith\"@example.test",
            "--header",
            "Subject: quoted-local-part",
            "--body",
            "for john",
        ],
    );
    assert!(ok, "{out}");
    let msgs = stack.wait_mail("alice", 1, Duration::from_secs(30));
    assert!(
        msgs[0].contains("Subject: quoted-local-part"),
        "{}",
        msgs[0]
    );
    assert!(msgs[0].contains("X-Mailveil: v="), "{}", msgs[0]);
    // Straight to mailveil, paths an attacker writes: with Postfix behind, they must not
    // become an outside recipient (a relay) or DSN parameters.
    let (ok, out) = stack.swaks(
        stack.ports.filter,
        &[
            "--from",
            "\"x> RET=FULL ENVID=e\"@sender.example",
            "--to",
            "\"victim@evil.example> ORCPT=rfc822;a\"@catchall.example",
            "--header",
            "Subject: injection",
            "--body",
            "relay?",
        ],
    );
    assert!(ok, "{out}");
    let msgs = stack.wait_mail("bob", 1, Duration::from_secs(30));
    assert!(msgs[0].contains("Subject: injection"), "{}", msgs[0]);
    let (ok, out) = stack.swaks(
        stack.ports.filter,
        &[
            "--from",
            "a@sender.example",
            "--to",
            "postmaster",
            "--body",
            "pm",
        ],
    );
    assert!(ok, "{out}");
    stack.wait_mail("alice", 2, Duration::from_secs(30));
    // The reinjection smtpd got exactly the client's paths and no parameter that was
    // not the client's own (Postfix, the client in the chain, adds an ORCPT of its own).
    let seen = reinjected_envelope(&stack);
    for want in [
        "RCPT TO:<\"john smith\"@example.test> ORCPT=rfc822;\"john+20smith\"@example.test",
        "MAIL FROM:<\"x> RET=FULL ENVID=e\"@sender.example>",
        "RCPT TO:<\"victim@evil.example> ORCPT=rfc822;a\"@catchall.example>",
        "RCPT TO:<postmaster>",
    ] {
        assert!(seen.iter().any(|s| s == want), "{want} not in {seen:#?}");
    }
    let log = stack.postfix_log();
    assert!(
        !log.contains("to=<victim@evil.example>"),
        "{}",
        tail(&log, 40)
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.contains("RET=FULL ENVID=e@") || s.contains("<victim@"))
    );
    assert!(
        log.contains("orig_to=<\"john smith\"@example.test>"),
        "{}",
        tail(&log, 40)
    );
}

/// Alice's policy strips remote content; bob's keeps it.
fn policy_rules(stack: &Stack) -> String {
    let dir = stack.run.join("rules");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("policies.toml"),
        "[[policy]]\nid = \"alice-strict\"\nrecipients = [\"alice@example.test\"]\n\
         remote_content = \"strip\"\nsource = \"test\"\n\n\
         [[policy]]\nid = \"bob-keep\"\nrecipients = [\"bob@example.test\"]\n\
         remote_content = \"keep\"\nsource = \"test\"\n",
    )
    .unwrap();
    dir.display().to_string()
}

/// One mail to alice and bob with a content image; each must get the copy of their
/// own policy, once.
fn send_to_alice_and_bob(stack: &Stack, token: &str) {
    let body = format!(
        "<html><body><p>Sale {token}</p>\
         <img src=\"https://images.shop.example/sale.png\" alt=\"Sale\"></body></html>"
    );
    let subject = format!("Subject: {token}");
    let (ok, out) = stack.swaks(
        stack.ports.inbound,
        &[
            "--from",
            "news@shop.example",
            "--to",
            "alice@example.test,bob@example.test",
            "--header",
            &subject,
            "--add-header",
            "MIME-Version: 1.0",
            "--add-header",
            "Content-Type: text/html; charset=utf-8",
            "--body",
            &body,
        ],
    );
    assert!(ok, "{out}");
    let alice = stack.wait_mail("alice", 1, Duration::from_secs(30));
    let bob = stack.wait_mail("bob", 1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        (stack.maildir("alice").len(), stack.maildir("bob").len()),
        (1, 1)
    );
    for m in [&alice[0], &bob[0]] {
        assert!(m.contains(&format!("Sale {token}")), "{m}");
        assert_eq!(header(m, "X-Mailveil").len(), 1, "{m}");
    }
    assert!(
        !alice[0].contains("images.shop.example"),
        "alice strips:\n{}",
        alice[0]
    );
    assert!(
        bob[0].contains("images.shop.example/sale.png"),
        "bob keeps:\n{}",
        bob[0]
    );
    assert_eq!(stack.queued(), 0);
}

#[test]
fn recipients_under_different_policies_each_get_their_own_copy() {
    let Some(_g) = guard() else { return };
    let mut stack = Stack::start(FILTER);
    let down = format!("smtp://127.0.0.1:{}", stack.ports.reinject);
    let rules = policy_rules(&stack);
    stack.start_mailveil(stack.ports.filter, &down, &["--rules", &rules]);
    send_to_alice_and_bob(&stack, "policy-smtp");
    // Two copies, one per policy, each with its one recipient; one 250 for Postfix.
    let log = stack.mailveil_log();
    let copies: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" msg=mail queue_id="))
        .collect();
    assert_eq!(copies.len(), 2, "{log}");
    assert!(
        copies
            .iter()
            .all(|l| l.contains("rcpts=1") && l.contains("reply=[250]"))
    );
    assert_eq!(stack.postfix_log().matches("status=sent").count(), 4);
}

#[test]
fn an_lmtp_client_gets_one_reply_per_recipient_across_policy_copies() {
    let Some(_g) = guard() else { return };
    let mut stack = Stack::start("lmtp:[127.0.0.1]:{filter}");
    let down = format!("lmtp:unix:{}", stack.lmtp_socket().display());
    let rules = policy_rules(&stack);
    stack.start_mailveil(stack.ports.filter, &down, &["--rules", &rules]);
    send_to_alice_and_bob(&stack, "policy-lmtp");
    // Postfix's LMTP client read one reply per recipient, each the one for its copy.
    let log = stack.postfix_log();
    for user in ["alice", "bob"] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("to=<{user}@example.test>"))
                    && l.contains("status=sent")
                    && l.contains(&format!("<{user}@example.test>"))
                    && l.contains("Saved")),
            "{user}:\n{}",
            tail(&log, 30)
        );
    }
}
