//! The state machine alone: commands in, steps and replies out.
use super::*;
use crate::path::{Mailbox, Param};

fn session() -> Session {
    Session::new(Settings {
        hostname: "mx.test".into(),
        max_message_bytes: 1000,
        tls_available: true,
        xforward: true,
    })
}

fn ok() -> Reply {
    Reply::new(250, "2.0.0 Ok")
}

fn words(params: &[Param]) -> Vec<String> {
    params.iter().map(ToString::to_string).collect()
}

fn greeted(mode: &[u8]) -> Session {
    let mut s = session();
    assert_eq!(s.command(mode), Step::Hello);
    s
}

#[test]
fn sequence_errors() {
    let mut s = session();
    assert!(matches!(s.command(b"MAIL FROM:<a@b>\r\n"), Step::Reply(r) if r.code == 503));
    let mut s = greeted(b"EHLO c\r\n");
    assert!(matches!(s.command(b"RCPT TO:<a@b>\r\n"), Step::Reply(r) if r.code == 503));
    assert!(matches!(s.command(b"DATA\r\n"), Step::Reply(r) if r.code == 503));
    assert!(matches!(s.command(b"FOO\r\n"), Step::Reply(r) if r.code == 500));
    assert!(matches!(s.command(b"AUTH PLAIN AAAA\r\n"), Step::Reply(r) if r.code == 502));
    assert_eq!(
        s.command(b"QUIT\r\n"),
        Step::Close(Reply::new(221, "2.0.0 Bye"))
    );
}

#[test]
fn envelope_goes_downstream_with_params() {
    let mut s = greeted(b"EHLO c\r\n");
    let step = s.command(b"MAIL FROM:<a@b.example> SIZE=500 BODY=8BITMIME\r\n");
    let Step::Mail { sender, params } = step else {
        panic!("{step:?}")
    };
    assert_eq!(
        sender.as_ref().map(Mailbox::address).as_deref(),
        Some("a@b.example")
    );
    assert_eq!(words(&params), ["SIZE=500", "BODY=8BITMIME"]);
    assert_eq!(s.mail_result(sender, params, &ok()).code, 250);
    let step = s.command(b"RCPT TO:<x@foreign.example> NOTIFY=NEVER\r\n");
    let Step::Rcpt(rcpt) = step else { panic!() };
    assert_eq!(words(&rcpt.params), ["NOTIFY=NEVER"]);
    let refused = Reply::new(554, "5.7.1 Relay access denied");
    assert_eq!(s.rcpt_result(rcpt, &refused), refused);
    assert!(matches!(s.command(b"DATA\r\n"), Step::Reply(r) if r.code == 554));
    let Step::Rcpt(rcpt) = s.command(b"RCPT TO:<alice@example.test>\r\n") else {
        panic!()
    };
    assert_eq!(
        s.rcpt_result(rcpt, &Reply::new(250, "Ok")).lines,
        ["2.0.0 Ok"]
    );
    assert_eq!(s.command(b"DATA\r\n"), Step::Data);
}

#[test]
fn null_sender_and_size_limit() {
    let mut s = greeted(b"EHLO c\r\n");
    assert!(
        matches!(s.command(b"MAIL FROM:<>\r\n"), Step::Mail { sender, .. } if sender.is_none())
    );
    assert!(matches!(s.command(b"MAIL FROM:<a@b> SIZE=5000\r\n"), Step::Reply(r) if r.code == 552));
}

#[test]
fn mail_refused_downstream_opens_no_transaction() {
    let mut s = greeted(b"EHLO c\r\n");
    let Step::Mail { sender, params } = s.command(b"MAIL FROM:<a@b>\r\n") else {
        panic!()
    };
    let r = s.mail_result(sender, params, &Reply::new(421, "4.3.2 busy"));
    assert_eq!(r.code, 451);
    assert!(!s.in_transaction());
}

#[test]
fn ehlo_announces_only_what_downstream_takes() {
    let s = greeted(b"EHLO c\r\n");
    let dovecot = Caps::from_ehlo(&Reply {
        code: 250,
        lines: vec![
            "mx".into(),
            "8BITMIME".into(),
            "CHUNKING".into(),
            "ENHANCEDSTATUSCODES".into(),
            "PIPELINING".into(),
            "XCLIENT ADDR".into(),
        ],
    });
    assert_eq!(dovecot.size, None);
    assert!(!dovecot.takes_param("SIZE"));
    assert!(dovecot.takes_param("body"));
    let text = s.hello_reply(Some(&dovecot)).to_string();
    assert!(text.contains("250-8BITMIME\r\n"));
    assert!(!text.contains("XFORWARD"));
    assert!(!text.contains("DSN"));
    assert!(text.contains("SIZE 1000"));
    assert!(text.ends_with("250 STARTTLS\r\n"));
    let postfix = Caps::from_ehlo(&Reply {
        code: 250,
        lines: vec![
            "mx".into(),
            "SIZE 10240000".into(),
            "DSN".into(),
            "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT".into(),
        ],
    });
    assert_eq!(postfix.size, Some(10_240_000));
    assert!(
        s.hello_reply(Some(&postfix))
            .to_string()
            .contains("XFORWARD")
    );
    assert!(!s.hello_reply(None).to_string().contains("8BITMIME"));
}

#[test]
fn xforward_is_per_transaction() {
    let mut s = greeted(b"EHLO c\r\n");
    assert!(
        matches!(s.command(b"XFORWARD NAME=spike.porcupine.org ADDR=168.100.189.2\r\n"), Step::Reply(r) if r.code == 250)
    );
    assert!(
        matches!(s.command(b"XFORWARD IDENT=4AbC12 PROTO=ESMTP\r\n"), Step::Reply(r) if r.code == 250)
    );
    assert_eq!(s.queue_id(), Some("4AbC12"));
    assert_eq!(s.xforward().len(), 4);
    assert!(matches!(s.command(b"XFORWARD BOGUS=1\r\n"), Step::Reply(r) if r.code == 501));
    assert!(matches!(s.command(b"RSET\r\n"), Step::Rset(_)));
    assert_eq!(s.queue_id(), None);
}

#[test]
fn starttls_resets_everything() {
    let mut s = greeted(b"EHLO c\r\n");
    assert_eq!(s.command(b"STARTTLS\r\n"), Step::StartTls);
    s.tls_started();
    assert!(matches!(s.command(b"MAIL FROM:<a@b>\r\n"), Step::Reply(r) if r.code == 503));
    assert_eq!(s.command(b"EHLO c\r\n"), Step::Hello);
    assert!(!s.hello_reply(None).to_string().contains("STARTTLS"));
    assert!(matches!(s.command(b"STARTTLS\r\n"), Step::Reply(r) if r.code == 503));
}

#[test]
fn bdat_collects_and_limits() {
    let mut s = greeted(b"EHLO c\r\n");
    assert!(
        matches!(s.command(b"BDAT 10\r\n"), Step::Bdat { discard: true, reply: Some(r), .. } if r.code == 503)
    );
    let Step::Mail { sender, params } = s.command(b"MAIL FROM:<a@b>\r\n") else {
        panic!()
    };
    s.mail_result(sender, params, &ok());
    let Step::Rcpt(r) = s.command(b"RCPT TO:<c@d>\r\n") else {
        panic!()
    };
    s.rcpt_result(r, &ok());
    assert!(
        matches!(s.command(b"BDAT 600\r\n"), Step::Bdat { discard: false, reply: Some(r), .. } if r.code == 250)
    );
    s.transaction_mut().unwrap().chunks.extend([b'x'; 600]);
    assert!(
        matches!(s.command(b"BDAT 600 LAST\r\n"), Step::Bdat { discard: true, reply: Some(r), .. } if r.code == 552)
    );
    assert!(!s.in_transaction());
}

#[test]
fn data_replies_smtp_and_lmtp() {
    for (mode, n) in [(&b"EHLO c\r\n"[..], 1), (&b"LHLO c\r\n"[..], 3)] {
        let mut s = greeted(mode);
        let Step::Mail { sender, params } = s.command(b"MAIL FROM:<a@b>\r\n") else {
            panic!()
        };
        s.mail_result(sender, params, &ok());
        for a in ["x@t", "y@t", "z@t"] {
            let Step::Rcpt(r) = s.command(format!("RCPT TO:<{a}>\r\n").as_bytes()) else {
                panic!()
            };
            s.rcpt_result(r, &ok());
        }
        let outcomes = [
            ok(),
            Reply::new(452, "4.2.2 Quota"),
            Reply::new(550, "5.1.1 No"),
        ];
        let replies = s.data_replies(&outcomes);
        assert_eq!(replies.len(), n);
        if n == 1 {
            assert_eq!(replies[0], Reply::new(451, "4.2.2 Quota"));
        } else {
            assert_eq!(
                replies.iter().map(|r| r.code).collect::<Vec<_>>(),
                [250, 451, 550]
            );
        }
    }
}

#[test]
fn combine_never_acknowledges_a_failure() {
    let r550 = Reply::new(550, "5.1.1 No");
    assert_eq!(combine(&[ok(), ok()]).code, 250);
    assert_eq!(combine(&[r550.clone(), r550.clone()]).code, 550);
    assert_eq!(combine(&[ok(), Reply::new(451, "4.3.0 x")]).code, 451);
    assert_eq!(combine(&[]).code, 451);
    assert_eq!(
        pass_back(&Reply::new(421, "down")).to_string(),
        "451 4.3.0 down\r\n"
    );
}

#[test]
fn reply_wire_form() {
    let r = Reply {
        code: 250,
        lines: vec!["a".into(), "b".into()],
    };
    assert_eq!(r.to_string(), "250-a\r\n250 b\r\n");
    assert_eq!(Reply::new(451, "4.4.1 x").enhanced(), Some("4.4.1"));
    assert_eq!(Reply::new(250, "Ok").enhanced(), None);
}

#[test]
fn overlong_lines_are_errors_and_end_the_session_at_the_error_limit() {
    let mut s = greeted(b"EHLO c\r\n");
    for _ in 1..MAX_ERRORS {
        assert!(matches!(s.line_too_long(), Step::Reply(r) if r.code == 500));
    }
    assert!(matches!(s.line_too_long(), Step::Close(r) if r.code == 421));
}

#[test]
fn the_envelope_is_read_by_the_path_parser() {
    let mut s = greeted(b"EHLO c\r\n");
    assert!(matches!(s.command(b"MAIL FROM:<postmaster>\r\n"), Step::Reply(r) if r.code == 501));
    assert!(matches!(s.command(b"MAIL FROM:<a b@x>\r\n"), Step::Reply(r) if r.code == 501));
    assert!(
        matches!(s.command(b"MAIL FROM:<a@x> REQUIRETLS\r\n"), Step::Reply(r) if r.code == 555)
    );
    assert!(
        matches!(s.command(b"MAIL FROM:<a@x> SIZE=99999999999999999999\r\n"), Step::Reply(r) if r.code == 552)
    );
    let Step::Mail { sender, params } = s.command(b"MAIL FROM:<\"x> RET=FULL\"@z>\r\n") else {
        panic!()
    };
    assert!(params.is_empty());
    assert_eq!(
        sender.as_ref().map(ToString::to_string).as_deref(),
        Some("\"x> RET=FULL\"@z")
    );
    s.mail_result(sender, params, &ok());
    let Step::Rcpt(r) = s.command(b"RCPT TO:<\"v@evil.example> NOTIFY=SUCCESS\"@c.example>\r\n")
    else {
        panic!()
    };
    assert!(r.params.is_empty());
    assert_eq!(r.mailbox.domain(), Some("c.example"));
    assert_eq!(
        r.mailbox.address(),
        "v@evil.example> NOTIFY=SUCCESS@c.example"
    );
    assert!(matches!(s.command(b"RCPT TO:<>\r\n"), Step::Reply(r) if r.code == 501));
    assert!(
        matches!(s.command(b"RCPT TO:<postmaster>\r\n"), Step::Rcpt(r) if r.mailbox.domain().is_none())
    );
}

#[test]
fn non_ascii_addresses_need_smtputf8() {
    let mut s = greeted(b"EHLO c\r\n");
    assert!(
        matches!(s.command("MAIL FROM:<jöran@b.example>\r\n".as_bytes()), Step::Reply(r) if r.code == 553)
    );
    let Step::Mail { sender, params } = s.command(b"MAIL FROM:<a@b.example>\r\n") else {
        panic!()
    };
    s.mail_result(sender, params, &ok());
    assert!(
        matches!(s.command("RCPT TO:<jöran@b.example>\r\n".as_bytes()), Step::Reply(r) if r.code == 553)
    );
    let mut s = greeted(b"EHLO c\r\n");
    let Step::Mail { sender, params } =
        s.command("MAIL FROM:<jöran@b.example> SMTPUTF8\r\n".as_bytes())
    else {
        panic!()
    };
    s.mail_result(sender, params, &ok());
    assert!(matches!(
        s.command("RCPT TO:<jöran@bücher.example>\r\n".as_bytes()),
        Step::Rcpt(_)
    ));
}
