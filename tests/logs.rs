//! Logs a machine can read, from a real `mailveil serve` with prefetch: one line per mail
//! in logfmt that a logfmt parser (the `logfmt` crate, not ours) reads back into the
//! values written, a tracker whose name has spaces, `;`, `=` and quotes included; the
//! queue id on every line about the mail (the prefetch lines too); a failed prefetch
//! names the host and the cause; `prefetched=` counts what was fetched, not what was
//! asked (the fake ESP on 127.0.0.1 refuses one image); `--log-format json` writes one
//! JSON object per line with the same fields.

mod support;

use std::collections::HashMap;
use support::*;

/// A tracker whose name a naive log line would break: spaces, `;`, `=` and quotes.
const TRACKER_NAME: &str = r#"Acme Mail; Open "Tracker" a=b"#;

fn rules() -> String {
    format!(
        "[[tracker]]\nid = \"acme\"\nname = '{TRACKER_NAME}'\ncategory = \"esp\"\nsource = \"test\"\n\n\
         [[pixel]]\nid = \"acme-open\"\ntracker = \"acme\"\nhost = \"127.0.0.1\"\npath = \"/track/open.php\"\nsource = \"test\"\n"
    )
}

/// Two images the ESP serves, one it refuses (404), one pixel of the tracker above; the
/// queue id in the top Received field, where `serve` reads it without XFORWARD.
fn newsletter(esp: &Esp) -> String {
    format!(
        "Received: from esp.example by mx.example with ESMTP id 4QxLogTest1; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
         From: News <news@sender.example>\r\nTo: reader@mailveil.test\r\nSubject: logs\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p>Hi</p><img src=\"{a}\" width=\"600\" alt=\"A\"><img src=\"{b}\" width=\"600\" alt=\"B\">\
         <img src=\"{gone}\" width=\"600\" alt=\"Gone\"><img src=\"{pixel}\" width=\"1\" height=\"1\">\r\n",
        a = esp.url("/img/a.png"),
        b = esp.url("/img/b.png"),
        gone = esp.url("/gone/c.png"),
        pixel = esp.url("/track/open.php?u=1"),
    )
}

/// `mailveil serve --remote-content prefetch` in front of a sink.
fn serve(extra: &[&str]) -> (Daemon, u16, Sink) {
    let dir = tempfile::tempdir().unwrap();
    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    std::fs::write(rules_dir.join("acme.toml"), rules()).unwrap();
    let key = dir.path().join("proxy.key");
    std::fs::write(&key, "6d61696c7665696c2074657374206b6579\n").unwrap();
    let sink = Sink::start();
    let smtp = free_port();
    let proxy = free_port();
    let mut args: Vec<String> = [
        "serve",
        "--no-system-rules",
        "--listen",
        &format!("127.0.0.1:{smtp}"),
        "--downstream",
        &sink.url(),
        "--remote-content",
        "prefetch",
        "--proxy-listen",
        &format!("127.0.0.1:{proxy}"),
        "--proxy-base",
        &format!("http://127.0.0.1:{proxy}"),
        "--proxy-allow-net",
        "127.0.0.0/8",
        "--proxy-key-file",
        &key.display().to_string(),
        "--rules",
        &rules_dir.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let cache = dir.path().as_os_str().to_owned();
    let daemon = Daemon::start_in(dir, &args, &[("CACHE_DIRECTORY", &cache)], &[smtp, proxy]);
    (daemon, smtp, sink)
}

/// One log line read by the logfmt crate: key to value (a key without `=` maps to "").
fn parse(line: &str) -> HashMap<String, String> {
    logfmt::parse(line)
        .into_iter()
        .map(|p| (p.key, p.val.unwrap_or_default()))
        .collect()
}

/// The delivered mail's `X-Mailveil` value, unfolded.
fn header(mail: &str) -> String {
    let msg = mail_parser::MessageParser::default()
        .parse(mail.as_bytes())
        .unwrap();
    msg.header_raw("X-Mailveil")
        .unwrap()
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn one_logfmt_line_per_mail_with_the_queue_id_on_every_line_and_prefetched_counts_what_was_fetched()
{
    let esp = Esp::start();
    let (daemon, port, sink) = serve(&[]);
    assert!(
        send(
            port,
            "news@sender.example",
            "reader@mailveil.test",
            newsletter(&esp).as_bytes()
        )
        .starts_with("250")
    );
    let delivered = sink.texts().pop().unwrap();
    let value = header(&delivered);
    // two images fetched; the refused one is fetched by the proxy on open: proxied
    assert!(value.contains("; prefetched=2;"), "{value}");
    assert!(value.contains("; proxied=1;"), "{value}");
    assert_eq!(
        esp.hits_for("/gone/c.png").len(),
        1,
        "the refused image was asked for"
    );
    let log = daemon.log();
    let lines: Vec<HashMap<String, String>> = log.lines().map(parse).collect();
    let mails: Vec<&HashMap<String, String>> = lines
        .iter()
        .filter(|l| l.get("msg").map(String::as_str) == Some("mail"))
        .collect();
    assert_eq!(mails.len(), 1, "one line per mail:\n{log}");
    let mail = mails[0];
    assert_eq!(mail["queue_id"], "4QxLogTest1", "{log}");
    assert_eq!(mail["frontend"], "serve");
    assert_eq!(mail["from"], "news@sender.example");
    assert_eq!(mail["level"], "info");
    // the findings field is the header, read back whole, the tracker's name included
    assert_eq!(mail["findings"], value, "{log}");
    assert!(
        mail["findings"].ends_with(&format!("trackers={TRACKER_NAME}")),
        "{log}"
    );
    // every line about the mail carries its queue id: the prefetch summary, the failure
    let prefetch = lines
        .iter()
        .find(|l| l.get("msg").map(String::as_str) == Some("prefetch"))
        .unwrap_or_else(|| panic!("no prefetch line:\n{log}"));
    assert_eq!(prefetch["queue_id"], "4QxLogTest1", "{log}");
    assert_eq!(prefetch["fetched"], "2", "{log}");
    assert_eq!(prefetch["failed"], "1", "{log}");
    let failed = lines
        .iter()
        .find(|l| l.get("msg").map(String::as_str) == Some("prefetch failed"))
        .unwrap_or_else(|| panic!("no prefetch failure line:\n{log}"));
    assert_eq!(failed["queue_id"], "4QxLogTest1", "{log}");
    assert_eq!(failed["host"], "127.0.0.1", "{log}");
    assert_eq!(failed["cause"], "status", "{log}");
    assert_eq!(failed["error"], "upstream status 404", "{log}");
}

#[test]
fn json_logs_are_one_object_per_line_with_the_same_fields() {
    let esp = Esp::start();
    let (daemon, port, _sink) = serve(&["--log-format", "json"]);
    assert!(
        send(
            port,
            "news@sender.example",
            "reader@mailveil.test",
            newsletter(&esp).as_bytes()
        )
        .starts_with("250")
    );
    let log = daemon.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let mail = lines
        .iter()
        .find(|l| l["message"] == "mail")
        .unwrap_or_else(|| panic!("no mail line:\n{log}"));
    assert_eq!(mail["queue_id"], "4QxLogTest1");
    assert!(
        mail["findings"]
            .as_str()
            .unwrap()
            .ends_with(&format!("trackers={TRACKER_NAME}")),
        "{log}"
    );
    let failed = lines
        .iter()
        .find(|l| l["message"] == "prefetch failed")
        .unwrap_or_else(|| panic!("no prefetch failure line:\n{log}"));
    assert_eq!(failed["queue_id"], "4QxLogTest1");
    assert_eq!(failed["host"], "127.0.0.1");
}
