//! What a sender writes never reaches a log line raw: the queue id `serve` takes from a
//! mail's Received header and the envelope sender, the queue id the MTA hands the milter.
//! Control characters and bidi overrides are escaped (`\x0b`, `\u{202e}`), so a value
//! cannot forge a log line or reorder what the reader sees. With the real parts: swaks
//! to `mailveil serve` delivering to Dovecot LMTP, and a milter client over TCP.

mod support;

#[path = "mailstack/harness.rs"]
mod harness;

use harness::{Stack, free_port, guard};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The characters that must not be in a log line: C0 controls but the line break, DEL,
/// C1 controls, bidi marks, embeddings, overrides and isolates.
fn raw_control(log: &str) -> Option<char> {
    log.chars().find(|&c| {
        (c < ' ' && c != '\n')
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
            || c == '\u{200e}'
            || c == '\u{200f}'
    })
}

#[test]
fn serve_logs_the_queue_id_of_a_received_header_escaped() {
    let Some(_g) = guard() else { return };
    let mut stack = Stack::start("");
    let down = format!("lmtp://127.0.0.1:{}", stack.ports.lmtp);
    let port = stack.ports.filter;
    stack.start_mailveil(port, &down, &[]);
    // a client talking to serve directly: serve reads the queue id from the Received
    // header, which the sender wrote (vertical tab, bidi override, a fake second line)
    let received = "Received: from a.example by b.example with ESMTP \
                    id Q1\u{0b}\u{202e}X\u{1}Y; Mon, 1 Jan 2024 00:00:00 +0000";
    let (ok, out) = stack.swaks(
        port,
        &[
            "--from",
            "news@sender.example",
            "--to",
            "alice@example.test",
            "--add-header",
            received,
            "--body",
            "hello",
        ],
    );
    assert!(ok, "{out}");
    stack.wait_mail("alice", 1, Duration::from_secs(30));
    let log = stack.mailveil_log();
    let line = log
        .lines()
        .find(|l| l.contains(" msg=mail ") && l.contains("queue_id"))
        .unwrap_or_else(|| panic!("no mail line:\n{log}"));
    // escaped (`\x0b`), then quoted for logfmt (its backslashes escaped in turn): a
    // logfmt reader gets the escaped text back
    assert!(
        line.contains(r#"queue_id="Q1\\x0b\\u{202e}X\\x01Y""#),
        "{line}"
    );
    assert_eq!(raw_control(&log), None, "{log}");
}

fn frame(cmd: u8, data: &[u8]) -> Vec<u8> {
    let mut out = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(cmd);
    out.extend_from_slice(data);
    out
}

/// Reads one reply frame's command byte.
fn reply(s: &mut TcpStream) -> u8 {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut data = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut data).unwrap();
    data[0]
}

#[test]
fn the_milter_logs_the_queue_id_macro_escaped() {
    let port = free_port();
    let milter = support::launch::milter(port, &[]);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut o = Vec::new();
    for v in [6u32, 0x1ff, 0x1f_ffff] {
        o.extend_from_slice(&v.to_be_bytes());
    }
    s.write_all(&frame(b'O', &o)).unwrap();
    assert_eq!(reply(&mut s), b'O');
    // macro `i` (the queue id) for the MAIL step, as the MTA sends it: no reply
    s.write_all(&frame(
        b'D',
        "Mi\0Q2\u{202e}Z\r\nforged line\u{1b}[31m\0".as_bytes(),
    ))
    .unwrap();
    for (cmd, data) in [
        (b'M', &b"<a@sender.example>\0"[..]),
        (b'R', b"<alice@example.test>\0"),
        (b'L', b"Subject\0 hi\0"),
        (b'N', b""),
        (b'B', b"text\r\n"),
    ] {
        s.write_all(&frame(cmd, data)).unwrap();
        assert_eq!(reply(&mut s), b'c');
    }
    s.write_all(&frame(b'E', b"")).unwrap();
    while !matches!(reply(&mut s), b'c' | b't') {}
    s.write_all(&frame(b'Q', b"")).unwrap();
    drop(s);
    let text = milter.log();
    drop(milter);
    let line = text
        .lines()
        .find(|l| l.contains(" msg=mail "))
        .unwrap_or_else(|| panic!("no mail line:\n{text}"));
    // the same field, written the same way, as serve's (every frontend's mail line is
    // the pipeline's): escaped, never raw
    assert!(
        line.contains(r#"queue_id="Q2\\u{202e}Z\\x0d\\x0aforged line\\x1b[31m" "#),
        "{line}"
    );
    assert_eq!(raw_control(&text), None, "{text}");
}
