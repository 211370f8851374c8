//! `mailveil milter` with the real parts: Postfix using it as `smtpd_milters` (no
//! content filter) delivering to Dovecot LMTP, and `miltertest` driving it directly.
//! Skips when they are not installed, unless MAILVEIL_REQUIRE_MAILSTACK=1.

#[path = "mailstack/harness.rs"]
mod harness;

use harness::{MAILVEIL, Stack, free_port, guard, header, imap_fetch, tail, wait_until};
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn swaks(stack: &Stack, extra: &[&str], body: &str) -> (bool, String) {
    let mut args = vec![
        "--from",
        "news@sender.example",
        "--to",
        "alice@example.test,bob@example.test",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--body", body]);
    stack.swaks(stack.ports.inbound, &args)
}

#[test]
fn postfix_smtpd_milter_delivers_tracked_mail_cleaned_to_dovecot() {
    let Some(_g) = guard() else { return };
    // content_filter empty: the milter is the only way mailveil sees the mail
    let mut stack = Stack::start_with("", "inet:127.0.0.1:{milter}");
    let port = stack.ports.filter;
    let listen = format!("inet:127.0.0.1:{port}");
    stack.start_mailveil_args(
        &[
            "milter",
            "--listen",
            &listen,
            "--no-system-rules",
            "--strip-read-receipts",
        ],
        port,
    );
    let token = format!("milter{}", std::process::id());
    let mid = format!("Message-Id: <{token}@sender.example>");
    let subject = format!("Subject: {token}");
    let body = format!(
        "<html><body><p>Hello {token}, the content stays.</p>\
         <img src=\"https://t.example/open.gif?e=alice@example.test\" width=\"1\" height=\"1\">\
         </body></html>"
    );
    let started = Instant::now();
    let (ok, out) = swaks(
        &stack,
        &[
            "--header",
            &subject,
            "--header",
            &mid,
            "--add-header",
            "Disposition-Notification-To: news@sender.example",
            "--add-header",
            "MIME-Version: 1.0",
            "--add-header",
            "Content-Type: text/html; charset=utf-8",
        ],
        &body,
    );
    assert!(ok, "{out}");
    for user in ["alice", "bob"] {
        let msgs = stack.wait_mail(user, 1, Duration::from_secs(30));
        assert_eq!(msgs.len(), 1, "{user}");
        let msg = &msgs[0];
        assert_eq!(header(msg, "X-Mailveil").len(), 1, "{msg}");
        assert!(header(msg, "X-Mailveil")[0].starts_with("v="), "{msg}");
        assert!(!msg.contains("t.example/open.gif"), "tracker left:\n{msg}");
        assert!(
            msg.contains(&format!("Hello {token}, the content stays.")),
            "{msg}"
        );
        assert_eq!(
            header(msg, "Message-Id"),
            [format!("<{token}@sender.example>").as_str()]
        );
        assert!(
            header(msg, "Disposition-Notification-To").is_empty(),
            "read receipt kept:\n{msg}"
        );
        // one Postfix hop (no reinjection), then LMTP
        assert_eq!(header(msg, "Received").len(), 2, "{msg}");
    }
    eprintln!(
        "MILTER: submitted -> cleaned in both Maildirs in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let fetched = imap_fetch(stack.ports.imap, "alice@example.test", "secret", &token);
    assert_eq!(fetched.len(), 1);
    assert!(fetched[0].contains("X-Mailveil: v="));

    // A plain mail: only the header is added, the body arrives byte for byte.
    let plain_body = "Just text.\nSee https://example.org/page?utm_source=x\n";
    let (ok, out) = swaks(&stack, &["--header", "Subject: plain-milter"], plain_body);
    assert!(ok, "{out}");
    let msgs = stack.wait_mail("alice", 2, Duration::from_secs(30));
    let plain = msgs
        .iter()
        .find(|m| m.contains("Subject: plain-milter"))
        .expect("plain mail");
    assert_eq!(header(plain, "X-Mailveil").len(), 1, "{plain}");
    assert!(plain.contains("Just text.\n"), "{plain}");

    let log = stack.mailveil_log();
    assert!(
        log.lines()
            .any(|l| l.contains(" mail ") && l.contains("body_replaced=true")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(" mail ") && l.contains("headers_removed=1")),
        "{log}"
    );
    assert!(
        stack.postfix_log().contains("status=sent"),
        "{}",
        tail(&stack.postfix_log(), 20)
    );
    assert_eq!(stack.queued(), 0);
}

#[test]
fn a_mail_that_cannot_be_cleaned_is_tempfailed_or_passed_as_the_policy_says() {
    let Some(_g) = guard() else { return };
    let mut stack = Stack::start_with("", "inet:127.0.0.1:{milter}");
    let port = stack.ports.filter;
    let listen = format!("inet:127.0.0.1:{port}");
    // every mail is "too large" for this milter: cleaning fails
    let args = |on_error: &'static str| {
        vec![
            "milter".to_string(),
            "--listen".into(),
            listen.clone(),
            "--no-system-rules".into(),
            "--max-message-bytes".into(),
            "100".into(),
            "--on-error".into(),
            on_error.into(),
        ]
    };
    let tempfail = args("tempfail");
    stack.start_mailveil_args(
        &tempfail.iter().map(String::as_str).collect::<Vec<_>>(),
        port,
    );
    let body = "x".repeat(300);
    let (ok, out) = swaks(&stack, &["--header", "Subject: too-big-tempfail"], &body);
    assert!(!ok, "accepted although the milter said tempfail:\n{out}");
    assert!(out.contains("<** 451"), "{out}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(stack.maildir("alice").is_empty(), "nothing delivered");
    // on_error = pass: delivered as it came, with the error in the report header
    stack.kill_mailveil();
    let pass = args("pass");
    stack.start_mailveil_args(&pass.iter().map(String::as_str).collect::<Vec<_>>(), port);
    let (ok, out) = swaks(&stack, &["--header", "Subject: too-big-pass"], &body);
    assert!(ok, "{out}");
    let msgs = stack.wait_mail("alice", 1, Duration::from_secs(30));
    let x = header(&msgs[0], "X-Mailveil");
    assert_eq!(x.len(), 1, "{}", msgs[0]);
    assert!(x[0].contains("error=too-large"), "{}", msgs[0]);
    assert!(msgs[0].contains(&body), "body as it came");
}

/// Runs the Lua script against a milter listening on `listen` (miltertest's `socket`).
fn miltertest_against(listen: &str, socket: &str, ready: impl Fn() -> bool) {
    let mut child = Command::new(MAILVEIL)
        .args([
            "milter",
            "--listen",
            listen,
            "--no-system-rules",
            "--strip-read-receipts",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let up = wait_until(Duration::from_secs(20), ready);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/mailstack/mailveil-milter.lua"
    );
    let started = Instant::now();
    let out = up.map(|()| {
        Command::new("miltertest")
            .args(["-D", &format!("socket={socket}"), "-s", script])
            .output()
            .unwrap()
    });
    let took = started.elapsed();
    let _ = child.kill();
    let milter_out = child.wait_with_output().unwrap();
    let out = out.unwrap_or_else(|| panic!("milter did not listen on {listen}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PASS all"),
        "miltertest: {}\n{stdout}{}\n--- milter:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&milter_out.stderr)
    );
    eprintln!(
        "MILTERTEST ({listen}): {} checks passed in {:.3} s",
        stdout.matches("PASS ").count() - 1,
        took.as_secs_f64()
    );
}

fn miltertest_installed() -> bool {
    if Path::new("/usr/bin/miltertest").exists() {
        return true;
    }
    let msg = "miltertest not installed (tests/mailstack/ci.sh installs it)";
    if std::env::var("MAILVEIL_REQUIRE_MAILSTACK").as_deref() == Ok("1") {
        panic!("{msg} -- MAILVEIL_REQUIRE_MAILSTACK=1");
    }
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {msg}");
    false
}

#[test]
fn miltertest_drives_the_milter_over_tcp() {
    if !miltertest_installed() {
        return;
    }
    let port = free_port();
    miltertest_against(
        &format!("inet:127.0.0.1:{port}"),
        &format!("inet:{port}@127.0.0.1"),
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
}

#[test]
fn miltertest_drives_the_milter_over_a_unix_socket() {
    if !miltertest_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("milter.sock");
    let path = sock.display().to_string();
    miltertest_against(&format!("unix:{path}"), &format!("unix:{path}"), || {
        std::os::unix::net::UnixStream::connect(&sock).is_ok()
    });
}
