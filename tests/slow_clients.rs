//! `mailveil serve` under slow and hostile clients, as a process on loopback (issue 8):
//! idle and trickling connections do not lock a normal client out, a trickled command is
//! cut at its deadline however the bytes are spaced, an overlong line and an oversized
//! mail are refused without ending up downstream. Runs everywhere (no mail stack).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{Client, Daemon, Sink, free_port};

/// The server process; killed when dropped.
struct Serve {
    port: u16,
    _daemon: Daemon,
}

/// Starts `mailveil serve` with `listen`, `downstream` and the `extra` config lines.
fn serve(down: u16, extra: &str) -> Serve {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailveil.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{port}\"\ndownstream = \"smtp://127.0.0.1:{down}\"\n{extra}"),
    )
    .unwrap();
    let args = [
        "serve".to_string(),
        "--no-system-rules".into(),
        "--config".into(),
        config.display().to_string(),
    ];
    let daemon = Daemon::start_in(dir, &args, &[], &[port]);
    Serve {
        port,
        _daemon: daemon,
    }
}

const MAIL: &str = "From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nHello.\r\n";

/// Whether the server still holds the connection open: no EOF, no reset. Unread bytes
/// (the greeting, for clients that never read) are fine.
fn still_open(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let open = match s.peek(&mut b) {
        Ok(n) => n > 0,
        Err(e) => e.kind() == ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    open
}

#[test]
fn two_hundred_idle_clients_do_not_stop_a_normal_delivery() {
    let sink = Sink::start();
    let down = sink.port;
    // The default max_sessions; a command deadline long enough for the idle clients to
    // still be there when the normal client comes.
    let s = serve(down, "command_timeout_secs = 60\n");
    std::thread::sleep(Duration::from_millis(300)); // the readiness probe's session ends
    let mut idle = Vec::new();
    // 70 connect and never read or write.
    for _ in 0..70 {
        idle.push(TcpStream::connect(("127.0.0.1", s.port)).unwrap());
    }
    // 70 read the greeting and send nothing.
    for _ in 0..70 {
        let mut c = Client::connect(s.port);
        assert!(c.reply().starts_with("220"), "greeting under load");
        idle.push(c.w);
    }
    // 30 send half a command and stop.
    for _ in 0..30 {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.write_all(b"MAIL FROM:<slow@exa").unwrap();
        idle.push(c);
    }
    // 30 trickle a byte a second, never finishing their line.
    let tricklers: Vec<TcpStream> = (0..30)
        .map(|_| TcpStream::connect(("127.0.0.1", s.port)).unwrap())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let stop = Arc::clone(&stop);
        let mut socks: Vec<TcpStream> = tricklers.iter().map(|t| t.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for t in &mut socks {
                    let _ = t.write_all(b"N");
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));

    let started = Instant::now();
    let mut normal = Client::connect(s.port);
    let greeting = normal.reply();
    assert!(
        greeting.starts_with("220"),
        "normal client refused: {greeting:?}"
    );
    let reply = normal.send_mail(MAIL);
    let took = started.elapsed();
    assert!(reply.starts_with("250"), "delivery: {reply:?}");
    assert!(normal.cmd("QUIT").starts_with("221"));
    assert_eq!(sink.count(), 1, "the sink got the mail");

    // The 200 were still connected while the mail went through.
    let open = idle
        .iter()
        .chain(&tricklers)
        .filter(|c| still_open(c))
        .count();
    println!(
        "200 idle/trickling connections: {open} still open; normal delivery took {} ms",
        took.as_millis()
    );
    assert_eq!(open, 200, "the idle connections were held, not shed");
    assert!(took < Duration::from_secs(10), "delivery took {took:?}");
    stop.store(true, Ordering::SeqCst);
    trickle.join().unwrap();
}

#[test]
fn a_trickling_client_is_cut_at_the_command_deadline() {
    let down = Sink::start().port;
    let s = serve(down, "command_timeout_secs = 2\n");
    let mut c = Client::connect(s.port);
    assert!(c.reply().starts_with("220"));
    // A byte every 300 ms: a per-read timer of 2 s would never fire.
    let mut w = c.w.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..40 {
            if w.write_all(b"X").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let started = Instant::now();
    let reply = c.reply();
    let took = started.elapsed();
    assert!(reply.starts_with("421 4.4.2"), "{reply:?}");
    let mut rest = Vec::new();
    let _ = c.r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "closed after the 421");
    println!("trickling client cut after {} ms", took.as_millis());
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
        "cut after {took:?}, want about 2 s"
    );
    writer.join().unwrap();
}

#[test]
fn an_overlong_command_line_gets_500_and_the_session_goes_on() {
    let sink = Sink::start();
    let down = sink.port;
    let s = serve(down, "max_line_bytes = 1024\n");
    let mut c = Client::connect(s.port);
    assert!(c.reply().starts_with("220"));
    // Just under the limit is a command like any other.
    assert!(
        c.cmd(&format!("NOOP {}", "a".repeat(1000)))
            .starts_with("250")
    );
    let long = format!("MAIL FROM:<{}@example.org>", "a".repeat(5000));
    let reply = c.cmd(&long);
    assert!(reply.starts_with("500 5.5.2"), "{reply:?}");
    // The session goes on: a mail still goes through.
    assert!(c.send_mail(MAIL).starts_with("250"));
    assert_eq!(sink.count(), 1);
    // A client that keeps at it is cut like one sending any other bad command.
    let mut last = String::new();
    for _ in 0..25 {
        last = c.cmd(&long);
        if !last.starts_with("500") {
            break;
        }
    }
    assert!(last.starts_with("421 4.7.0"), "{last:?}");
    assert_eq!(c.reply(), "", "closed after too many errors");
}

#[test]
fn data_over_max_message_bytes_gets_552_and_nothing_goes_downstream() {
    let sink = Sink::start();
    let down = sink.port;
    let s = serve(down, "max_message_bytes = 10000\n");
    let mut c = Client::connect(s.port);
    assert!(c.reply().starts_with("220"));
    let mut big = String::from("Subject: big\r\n\r\n");
    for _ in 0..300 {
        big.push_str(&"x".repeat(98));
        big.push_str("\r\n");
    }
    let reply = c.send_mail(&big);
    assert!(reply.starts_with("552 5.3.4"), "{reply:?}");
    assert_eq!(sink.count(), 0, "nothing went downstream");
    // The session stays in step: the next mail is delivered.
    assert!(c.send_mail(MAIL).starts_with("250"));
    assert_eq!(sink.count(), 1);
    // MAIL FROM with a SIZE over the limit is refused up front.
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    let r = c.cmd("MAIL FROM:<a@example.org> SIZE=20000");
    assert!(r.starts_with("552"), "{r:?}");
}

#[test]
fn a_session_cap_over_the_open_files_limit_is_warned_about_at_start() {
    let down = Sink::start().port;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailveil.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndownstream = \"smtp://127.0.0.1:{down}\"\n\
             max_sessions = 100000000\n"
        ),
    )
    .unwrap();
    let args = [
        "serve".to_string(),
        "--no-system-rules".into(),
        "--config".into(),
        config.display().to_string(),
    ];
    let d = Daemon::start(&args, &[port]);
    support::wait_until(Duration::from_secs(5), || {
        d.log().contains("max_sessions needs about")
    });
    let log = d.log();
    assert!(
        log.contains("max_sessions needs about") && log.contains("open_files_limit"),
        "{log}"
    );
}
