//! Hot reload in `mailveil serve`: a rule file dropped into the watched directory applies
//! to the next mail; a broken edit keeps the last good set (and mail flows); SIGHUP
//! reloads too. Loopback only, with a capturing SMTP sink as the downstream.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};
use support::{Sink, free_port, launch};

fn send(port: u16, body: &str) -> String {
    support::send(
        port,
        "news@sender.example",
        "r@example.org",
        body.as_bytes(),
    )
}

const MAIL: &str = "From: news@sender.example\r\nTo: r@example.org\r\nSubject: reload\r\nContent-Type: text/html\r\n\r\n<p>hi</p><img src=\"https://t.acme.example/o/42\" alt=\"\" width=\"600\">";
const RULE: &str = "[[tracker]]\nid = \"acme\"\nname = \"ACME\"\ncategory = \"esp\"\nsource = \"test\"\n\n[[pixel]]\nid = \"acme-open\"\ntracker = \"acme\"\nhost = \"t.acme.example\"\nsource = \"test\"\n";

/// Sends the mail until the delivered copy satisfies `want` (reloads are asynchronous).
fn delivered_until(port: u16, sink: &Sink, want: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        assert!(send(port, MAIL).starts_with("250"));
        let last = sink.texts().pop().unwrap();
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
    let sink = Sink::start();
    let port = free_port();
    let rules = dir.path().display().to_string();
    let serve = launch::serve(port, &sink.url(), &["--rules", &rules]);
    // No rule yet: the image is content.
    assert!(send(port, MAIL).starts_with("250"));
    assert!(sink.texts()[0].contains("t.acme.example"));
    // A new rule file applies to the next mails, without a restart.
    std::fs::write(dir.path().join("acme.toml"), RULE).unwrap();
    let cleaned = delivered_until(port, &sink, |m| !m.contains("t.acme.example"));
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
        !sink.texts().pop().unwrap().contains("t.acme.example"),
        "a broken file dropped the good rules"
    );
    // Fixed with the rule removed, then SIGHUP: the image is content again.
    std::fs::write(dir.path().join("acme.toml"), "# nothing\n").unwrap();
    let pid = serve.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    delivered_until(port, &sink, |m| m.contains("t.acme.example"));
}
