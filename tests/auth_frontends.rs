//! Authentication in every frontend that takes mail in (issue 19 phase 2, through the
//! pipeline): the milter behind the real Postfix, whose changes Postfix applies field by
//! field, and `serve`, which seals each policy copy on its own. Every ARC set is checked
//! by dkimpy, the independent verifier of tests/auth.
//!
//! Needs the tools of tests/auth (else SKIP unless MAILVEIL_REQUIRE_AUTH=1) and, for
//! the milter, the mail stack (else SKIP unless MAILVEIL_REQUIRE_MAILSTACK=1).

mod support;

#[path = "auth/harness.rs"]
mod auth;

#[path = "mailstack/harness.rs"]
mod harness;

use auth::{Dns, arc_flags, available, dkimpy, dkimsign, fields_named, header_fields, keys};
use harness::Stack;
use std::time::Duration;
use support::{Sink, free_port, launch, wait_until};

/// The flags of authentication against `dns`, sealing with our ARC key.
fn auth_flags(dns: &Dns) -> Vec<String> {
    let mut f = vec![
        "--authenticate".to_string(),
        "--dns-resolver".into(),
        dns.addr(),
        "--auth-serv-id".into(),
        "mx.example.org".into(),
    ];
    f.extend(arc_flags());
    f
}

/// A signed newsletter (a pixel to clean) from sender.test to `to`, with a forged
/// Authentication-Results in our name under the signature's headers.
fn signed_newsletter(to: &str, token: &str) -> Vec<u8> {
    let mail = auth::crlf(&format!(
        "From: News <news@sender.test>\n\
         To: {to}\n\
         Subject: Weekly news {token}\n\
         Date: Mon, 1 Jan 2024 10:00:00 +0000\n\
         Message-ID: <{token}@sender.test>\n\
         MIME-Version: 1.0\n\
         Content-Type: text/html; charset=utf-8\n\
         \n\
         <p>This week: nothing happened.</p>\n\
         <img src=\"https://images.sender.test/week.png\" width=\"600\" height=\"200\" alt=\"Week\">\n\
         <img src=\"https://t.sender.test/open.gif?e={to}\" width=\"1\" height=\"1\">\n"
    ));
    let mut out =
        b"Authentication-Results: mx.example.org; dkim=pass header.d=bank.test\r\n".to_vec();
    out.extend_from_slice(&dkimsign(&mail, false));
    out
}

/// The mail as the next hop reads it: CRLF line ends (a Maildir keeps LF).
fn crlf_mail(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// Our verdict and a chain dkimpy verifies, in the order the next hop reads them: the
/// new ARC set on top, then our verdict, then the report header, and no forged verdict.
fn assert_verified_and_sealed(dns: &Dns, mail: &[u8], what: &str) {
    let ours: Vec<String> = fields_named(mail, "Authentication-Results")
        .into_iter()
        .filter(|f| f.contains("mx.example.org"))
        .collect();
    assert_eq!(
        ours,
        [
            "Authentication-Results: mx.example.org; dkim=pass header.d=sender.test header.s=sel; arc=none"
        ],
        "{what}: {}",
        String::from_utf8_lossy(mail)
    );
    let names: Vec<String> = header_fields(mail)
        .iter()
        .map(|f| f.split(':').next().unwrap_or("").to_ascii_lowercase())
        .filter(|n| n.starts_with("arc-") || n == "authentication-results" || n == "x-mailveil")
        .collect();
    assert_eq!(
        names,
        [
            "arc-seal",
            "arc-message-signature",
            "arc-authentication-results",
            "authentication-results",
            "x-mailveil"
        ],
        "{what}"
    );
    let arc = dkimpy(dns, &["arc-verify"], mail);
    println!("{what}: dkimpy: {}", arc.trim()); // shown with --nocapture
    assert!(
        arc.starts_with("arc verification: cv=pass"),
        "{what}: {arc}"
    );
}

/// The signed newsletter sent to Postfix's port 25 for alice: what Dovecot delivers has
/// no pixel, our verdict and an ARC set dkimpy verifies, and not the forged verdict in
/// our name (removed: by the milter through its index, by `serve` from the copy).
fn signed_through_postfix_arrives_verified_and_sealed(stack: &Stack, dns: &Dns, what: &str) {
    let token = format!("auth-{what}-{}", std::process::id());
    let file = stack.run.join(format!("signed-{what}.eml"));
    std::fs::write(&file, signed_newsletter("alice@example.test", &token)).unwrap();
    let data = file.display().to_string();
    let (ok, out) = stack.swaks(
        stack.ports.inbound,
        &[
            "--from",
            "news@sender.test",
            "--to",
            "alice@example.test",
            "--data",
            &data,
        ],
    );
    assert!(ok, "{what}: {out}");
    let got = stack.wait_mail("alice", 1, Duration::from_secs(30));
    assert!(
        !got[0].contains("t.sender.test"),
        "{what}: the pixel went on"
    );
    assert_verified_and_sealed(dns, &crlf_mail(&got[0]), what);
    assert!(!got[0].contains("bank.test"), "{what}: {}", got[0]);
}

#[test]
fn the_milter_verifies_before_and_seals_after_and_postfix_delivers_it_whole() {
    if !available() {
        return;
    }
    let Some(_g) = harness::guard() else { return };
    let dns = Dns::start(&keys().zone, false);
    let mut stack = Stack::start_with("", "inet:127.0.0.1:{milter}");
    let port = stack.ports.filter;
    let listen = format!("inet:127.0.0.1:{port}");
    let mut args = vec![
        "milter".to_string(),
        "--listen".into(),
        listen,
        "--no-system-rules".into(),
    ];
    args.extend(auth_flags(&dns));
    stack.start_mailveil_args(&args.iter().map(String::as_str).collect::<Vec<_>>(), port);
    signed_through_postfix_arrives_verified_and_sealed(&stack, &dns, "milter");
}

/// `serve` as Postfix's content filter, reinjecting into Postfix, delivering to Dovecot:
/// the mail in the mailbox carries our verdict and an ARC set dkimpy verifies.
#[test]
fn serve_behind_postfix_verifies_before_and_seals_after_into_dovecot() {
    if !available() {
        return;
    }
    let Some(_g) = harness::guard() else { return };
    let dns = Dns::start(&keys().zone, false);
    let mut stack = Stack::start("filter:[127.0.0.1]:{filter}");
    let down = format!("smtp://127.0.0.1:{}", stack.ports.reinject);
    let flags = auth_flags(&dns);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    stack.start_mailveil(stack.ports.filter, &down, &flags);
    signed_through_postfix_arrives_verified_and_sealed(&stack, &dns, "serve");
}

#[test]
fn serve_seals_each_policy_copy_on_its_own() {
    if !available() {
        return;
    }
    let dns = Dns::start(&keys().zone, false);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[policy]]\nid = \"alice-strict\"\nrecipients = [\"alice@example.test\"]\n\
         remote_content = \"strip\"\nsource = \"t\"\n",
    )
    .unwrap();
    let sink = Sink::start();
    let port = free_port();
    let mut flags = auth_flags(&dns);
    flags.push("--rules".into());
    flags.push(dir.path().display().to_string());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _serve = launch::serve(port, &sink.url(), &flags);
    let token = format!("auth-serve-{}", std::process::id());
    let mail = signed_newsletter("list@sender.test", &token);
    let mut c = support::Client::connect(port);
    c.reply();
    for cmd in [
        "EHLO client.test",
        "MAIL FROM:<news@sender.test>",
        "RCPT TO:<alice@example.test>",
        "RCPT TO:<bob@example.test>",
    ] {
        assert!(c.cmd(cmd).starts_with("250"), "{cmd}");
    }
    assert!(c.cmd("DATA").starts_with("354"));
    use std::io::Write;
    c.w.write_all(&mail).unwrap();
    assert!(c.cmd(".").starts_with("250"));
    wait_until(Duration::from_secs(10), || sink.count() == 2).expect("two copies");
    let copies = sink.mails();
    assert_ne!(copies[0], copies[1], "one copy per policy");
    let stripped = copies
        .iter()
        .filter(|m| !String::from_utf8_lossy(m).contains("images.sender.test"))
        .count();
    assert_eq!(
        stripped, 1,
        "alice's copy has no remote image, bob's keeps it"
    );
    for (n, copy) in copies.iter().enumerate() {
        assert_verified_and_sealed(&dns, copy, &format!("copy {n}"));
    }
}
