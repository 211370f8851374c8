//! `serve` keeps downstream connections between client sessions (`downstream_pool`):
//! one connection carries the mails of many sessions, a connection the downstream
//! closed or that fails its RSET is never used again, no mail is lost or refused for
//! it, and one client's envelope never reaches another's transaction. Against the real
//! `mailveil` binary and the loopback SMTP sink of tests/support, which counts the
//! connections it accepts and logs every command per connection.

mod support;

use std::time::Duration;
use support::launch::serve;
use support::smtp::SinkOptions;
use support::{Client, Sink, free_port};

const MAIL: &str = "From: a@example.org\r\nTo: b@example.net\r\nSubject: pool\r\n\r\nhello\r\n";

/// One whole client session: EHLO, one mail, QUIT, and the end of the connection (the
/// server has given its downstream connection back by then).
fn session(port: u16, from: &str, to: &str) -> String {
    let mut c = Client::connect(port);
    c.reply();
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    assert!(c.cmd(&format!("RCPT TO:<{to}>")).starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.w.write_all_str(MAIL);
    let done = c.cmd(".");
    assert!(c.cmd("QUIT").starts_with("221"));
    assert_eq!(c.reply(), "", "the server closes after QUIT");
    done
}

/// `n` sessions of one mail each, to r0@, r1@...: each accepted.
fn deliver(port: u16, n: usize) {
    for i in 0..n {
        let r = session(port, "a@example.org", &format!("r{i}@example.net"));
        assert!(r.starts_with("250"), "{r}");
    }
}

/// The first client of the envelope tests: its XFORWARD attributes, MAIL and RCPT
/// given, nothing more yet.
fn first_client(port: u16) -> Client {
    let mut c = Client::connect(port);
    c.reply();
    assert!(c.cmd("EHLO first.test").starts_with("250"));
    assert!(
        c.cmd("XFORWARD NAME=first.example ADDR=192.0.2.1")
            .starts_with("250")
    );
    assert!(c.cmd("MAIL FROM:<first@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<secret@example.net>").starts_with("250"));
    c
}

/// Nothing of the first client (its names, recipient or address) in `cmds`.
fn nothing_of_the_first(cmds: &[String]) {
    for c in cmds {
        assert!(
            !c.contains("first") && !c.contains("secret") && !c.contains("192.0.2.1"),
            "{cmds:?}"
        );
    }
}

trait WriteStr {
    fn write_all_str(&mut self, s: &str);
}

impl WriteStr for std::net::TcpStream {
    fn write_all_str(&mut self, s: &str) {
        use std::io::Write;
        self.write_all(s.as_bytes()).unwrap();
    }
}

/// The commands the sink got on connection `n`.
fn on(sink: &Sink, n: usize) -> Vec<String> {
    sink.commands()
        .into_iter()
        .filter(|(c, _)| *c == n)
        .map(|(_, l)| l)
        .collect()
}

#[test]
fn several_sessions_share_one_downstream_connection_and_pool_0_turns_it_off() {
    let sink = Sink::start();
    let port = free_port();
    let _d = serve(port, &sink.url(), &[]);
    deliver(port, 5);
    assert_eq!(sink.count(), 5);
    assert_eq!(sink.connections(), 1, "{:?}", sink.commands());
    // Between two sessions' transactions: RSET, and EHLO only once.
    let cmds = on(&sink, 1);
    assert_eq!(cmds.iter().filter(|c| c.starts_with("EHLO")).count(), 1);
    assert_eq!(cmds.iter().filter(|c| *c == "RSET").count(), 5);

    let sink = Sink::start();
    let port = free_port();
    let _d = serve(port, &sink.url(), &["--downstream-pool", "0"]);
    for _ in 0..3 {
        assert!(session(port, "a@example.org", "b@example.net").starts_with("250"));
    }
    assert_eq!((sink.count(), sink.connections()), (3, 3));
    assert!(sink.commands().iter().all(|(_, c)| c != "RSET"));
}

#[test]
fn lmtp_downstream_connections_are_kept_too() {
    let sink = Sink::start();
    let port = free_port();
    let url = format!("lmtp://127.0.0.1:{}", sink.port);
    let _d = serve(port, &url, &[]);
    for _ in 0..3 {
        assert!(session(port, "a@example.org", "b@example.net").starts_with("250"));
    }
    assert_eq!((sink.count(), sink.connections()), (3, 1));
}

#[test]
fn a_pooled_connection_the_downstream_closed_while_idle_loses_no_mail() {
    // The sink closes after 300 ms of silence with 421, as Postfix's smtpd does.
    let sink = Sink::start_with(SinkOptions {
        idle_close: Some(Duration::from_millis(300)),
        ..SinkOptions::default()
    });
    let port = free_port();
    let _d = serve(port, &sink.url(), &[]);
    assert!(session(port, "a@example.org", "b@example.net").starts_with("250"));
    std::thread::sleep(Duration::from_millis(900));
    // The kept connection is dead: the next mail goes on a new one, at once, accepted.
    let r = session(port, "a@example.org", "c@example.net");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!((sink.count(), sink.connections()), (2, 2));
    assert!(on(&sink, 1).iter().all(|c| !c.contains("c@example.net")));
}

#[test]
fn a_pooled_connection_that_dies_at_its_first_command_is_replaced_once_before_data() {
    // The connection passes every check while idle and answers 421 to the next
    // command: MAIL is tried again on a fresh connection and the client never knows.
    let sink = Sink::start_with(SinkOptions {
        die_after_rset: true,
        ..SinkOptions::default()
    });
    let port = free_port();
    let _d = serve(port, &sink.url(), &[]);
    deliver(port, 3);
    assert_eq!(sink.count(), 3);
    // Each reuse failed and was replaced: three connections, the dead ones got no
    // envelope after their RSET.
    assert_eq!(sink.connections(), 3);
    for n in 1..=2 {
        let cmds = on(&sink, n);
        let rset = cmds.iter().position(|c| c == "RSET").unwrap();
        assert_eq!(cmds.len(), rset + 2, "{cmds:?}");
    }
}

#[test]
fn a_downstream_4xx_on_rset_drops_the_connection() {
    let sink = Sink::start_with(SinkOptions {
        rset_reply: Some("451 4.3.0 not now"),
        ..SinkOptions::default()
    });
    let port = free_port();
    let _d = serve(port, &sink.url(), &[]);
    for _ in 0..3 {
        assert!(session(port, "a@example.org", "b@example.net").starts_with("250"));
    }
    assert_eq!((sink.count(), sink.connections()), (3, 3));
    // Nothing was sent on a connection after its refused RSET.
    for n in 1..=3 {
        assert_eq!(on(&sink, n).last().map(String::as_str), Some("RSET"));
    }
}

#[test]
fn one_clients_envelope_never_reaches_the_next_clients_transaction() {
    let sink = Sink::start_with(SinkOptions {
        xforward: true,
        ..SinkOptions::default()
    });
    let port = free_port();
    let _d = serve(port, &sink.url(), &[]);
    // The first client gives its envelope and XFORWARD, then leaves without DATA.
    let mut c = first_client(port);
    assert!(c.cmd("QUIT").starts_with("221"));
    assert_eq!(c.reply(), "");
    // The second client, on the same downstream connection.
    let r = session(port, "second@example.org", "b@example.net");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!((sink.count(), sink.connections()), (1, 1));
    let cmds = on(&sink, 1);
    let second = cmds
        .iter()
        .position(|c| c == "MAIL FROM:<second@example.org>")
        .unwrap();
    // The first transaction was ended before the second began, and the second carries
    // nothing of the first.
    assert_eq!(cmds[second - 1], "RSET", "{cmds:?}");
    assert!(
        cmds[..second]
            .iter()
            .any(|c| c == "RCPT TO:<secret@example.net>")
    );
    nothing_of_the_first(&cmds[second..]);
}

/// A sink that announces PIPELINING (and XFORWARD), as Postfix's smtpd does.
fn pipelining_sink(options: SinkOptions) -> Sink {
    Sink::start_with(SinkOptions {
        pipelining: true,
        xforward: true,
        ..options
    })
}

#[test]
fn to_a_pipelining_downstream_the_reset_rides_in_front_of_the_next_mail() {
    let sink = pipelining_sink(SinkOptions::default());
    let port = free_port();
    let _d = serve(port, &sink.url(), &[]);
    assert!(session(port, "a@example.org", "r0@example.net").starts_with("250"));
    // The session is over and its connection kept, with no RSET yet: it is due.
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        on(&sink, 1).iter().all(|c| c != "RSET"),
        "{:?}",
        on(&sink, 1)
    );
    deliver(port, 2);
    assert_eq!((sink.count(), sink.connections()), (3, 1));
    // Each later transaction begins with the RSET, sent in one write with what follows
    // it up to MAIL, and the MAIL comes right after the session's XFORWARD lines.
    let cmds = on(&sink, 1);
    let rsets: Vec<usize> = (0..cmds.len()).filter(|&i| cmds[i] == "RSET").collect();
    assert_eq!(rsets.len(), 2, "{cmds:?}");
    let batched = sink.batched();
    for &i in &rsets {
        let mail = (i..cmds.len())
            .find(|&j| cmds[j].starts_with("MAIL FROM"))
            .unwrap();
        assert!(
            cmds[i + 1..mail].iter().all(|c| c.starts_with("XFORWARD")),
            "{cmds:?}"
        );
        assert!(batched.contains(&(1, "RSET".to_string())), "{batched:?}");
        assert_eq!(cmds[i - 1], "DATA", "{cmds:?}");
    }
}

/// Three mails through a pipelining sink that fails each kept connection at its next
/// use as `options` say: each mail is delivered, on a connection of its own. Returns the
/// sink and the commands each of the two connections given up got from its RSET on.
fn each_reuse_fails(options: SinkOptions) -> (Sink, Vec<Vec<String>>) {
    let sink = pipelining_sink(options);
    let port = free_port();
    let _d = serve(port, &sink.url(), &[]);
    deliver(port, 3);
    assert_eq!((sink.count(), sink.connections()), (3, 3));
    let after_rset = (1..=2)
        .map(|n| {
            let cmds = on(&sink, n);
            let rset = cmds.iter().position(|c| c == "RSET").unwrap();
            cmds[rset..].to_vec()
        })
        .collect();
    (sink, after_rset)
}

#[test]
fn a_pipelined_reset_refused_drops_the_connection_before_any_recipient() {
    let (sink, given_up) = each_reuse_fails(SinkOptions {
        rset_reply: Some("451 4.3.0 not now"),
        ..SinkOptions::default()
    });
    // The MAIL written behind each refused RSET got neither a recipient nor data there;
    // its mail went on the next connection.
    for cmds in &given_up {
        assert!(
            cmds.iter().all(|c| !c.starts_with("RCPT") && c != "DATA"),
            "{cmds:?}"
        );
    }
    let next: Vec<String> = (2..=3)
        .flat_map(|n| on(&sink, n))
        .filter(|c| c.starts_with("RCPT"))
        .collect();
    assert_eq!(
        next,
        ["RCPT TO:<r1@example.net>", "RCPT TO:<r2@example.net>"]
    );
}

#[test]
fn a_pipelining_downstream_that_dies_at_its_next_use_loses_no_mail() {
    let (_sink, given_up) = each_reuse_fails(SinkOptions {
        die_after_rset: true,
        ..SinkOptions::default()
    });
    // The RSET was answered; the line after it got 421 and the connection closed.
    for cmds in &given_up {
        assert_eq!(cmds.len(), 2, "{cmds:?}");
    }
}

#[test]
fn over_a_pipelining_downstream_one_clients_envelope_never_reaches_the_next() {
    let sink = pipelining_sink(SinkOptions::default());
    let port = free_port();
    let _d = serve(port, &sink.url(), &[]);
    // The first client delivers a mail with its XFORWARD attributes.
    let mut c = first_client(port);
    assert!(c.cmd("DATA").starts_with("354"));
    c.w.write_all_str(MAIL);
    assert!(c.cmd(".").starts_with("250"));
    assert!(c.cmd("QUIT").starts_with("221"));
    assert_eq!(c.reply(), "");
    // The second, without XFORWARD, on the same downstream connection.
    let r = session(port, "second@example.org", "b@example.net");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!((sink.count(), sink.connections()), (2, 1));
    let cmds = on(&sink, 1);
    let second = cmds
        .iter()
        .position(|c| c == "MAIL FROM:<second@example.org>")
        .unwrap();
    let first = cmds
        .iter()
        .position(|c| c.contains("first.example"))
        .unwrap();
    // The RSET that ends what the first left behind comes right before the second's
    // MAIL (and its own XFORWARD, if any), and nothing of the first follows it.
    let rset = cmds[..second].iter().rposition(|c| c == "RSET").unwrap();
    assert!(
        cmds[rset + 1..second]
            .iter()
            .all(|c| c.starts_with("XFORWARD")),
        "{cmds:?}"
    );
    assert!(first < rset, "{cmds:?}");
    nothing_of_the_first(&cmds[rset..]);
}
