//! Paths and parameters: what is read, what is written downstream, and (property tests)
//! that a standard reader, smtp-proto's, reads from our output the mailbox and the
//! parameters the client sent, whatever the client wrote.
use super::*;
use crate::session::{Reply, Session, Settings, Step};
use proptest::prelude::*;
use smtp_proto::{
    RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER, RCPT_NOTIFY_SUCCESS, Request,
};

fn rcpt(line: &str) -> Result<(Mailbox, Vec<Param>), EnvelopeError> {
    parse_rcpt(format!("{line}\r\n").as_bytes())
}

fn mail(line: &str) -> Result<(Option<Mailbox>, Vec<Param>), EnvelopeError> {
    parse_mail(format!("{line}\r\n").as_bytes())
}

/// The RCPT line that goes downstream for a client's RCPT line.
fn downstream_rcpt(line: &str) -> String {
    let (m, p) = rcpt(line).unwrap_or_else(|e| panic!("{line}: {e:?}"));
    rcpt_command(&m, &p)
}

#[test]
fn quoted_local_parts_stay_quoted() {
    assert_eq!(
        downstream_rcpt(r#"RCPT TO:<"a b"@x>"#),
        "RCPT TO:<\"a b\"@x>\r\n"
    );
    let (m, _) = rcpt(r#"RCPT TO:<"john smith"@example.test>"#).unwrap();
    assert_eq!(m.local_part(), "john smith");
    assert_eq!(m.address(), "john smith@example.test");
    // Escapes: only `"` and `\` need one; others are dropped, needless quotes too.
    let (m, _) = rcpt(r#"RCPT TO:<"a\"b\\c\d"@x>"#).unwrap();
    assert_eq!(m.local_part(), r#"a"b\cd"#);
    assert_eq!(m.to_string(), r#""a\"b\\cd"@x"#);
    assert_eq!(
        downstream_rcpt(r#"RCPT TO:<"john"@x>"#),
        "RCPT TO:<john@x>\r\n"
    );
    assert_eq!(
        downstream_rcpt(r#"RCPT TO:<".a"@x>"#),
        "RCPT TO:<\".a\"@x>\r\n"
    );
}

#[test]
fn an_address_cannot_become_a_recipient_or_a_parameter_downstream() {
    let line = r#"RCPT TO:<"victim@evil.example> ORCPT=rfc822;a"@catchall.example>"#;
    let (m, params) = rcpt(line).unwrap();
    assert!(params.is_empty());
    assert_eq!(m.domain(), Some("catchall.example"));
    assert_eq!(m.local_part(), "victim@evil.example> ORCPT=rfc822;a");
    assert_eq!(rcpt_command(&m, &params), format!("{}\r\n", line));
    let line = r#"MAIL FROM:<"x> RET=FULL ENVID=e"@z>"#;
    let (m, params) = mail(line).unwrap();
    assert!(params.is_empty());
    assert_eq!(
        mail_command(m.as_ref(), &params),
        "MAIL FROM:<\"x> RET=FULL ENVID=e\"@z>\r\n"
    );
    // A standard reader agrees: one mailbox, no parameter.
    let out = mail_command(m.as_ref(), &params);
    let Ok(Request::Mail { from }) = Request::parse(&mut out.as_bytes().iter()) else {
        panic!()
    };
    assert_eq!(from.address, "x> RET=FULL ENVID=e@z");
    assert_eq!((from.flags, from.env_id), (0, None));
}

#[test]
fn postmaster_stays_postmaster_and_null_is_for_the_sender_only() {
    assert_eq!(
        downstream_rcpt("RCPT TO:<postmaster>"),
        "RCPT TO:<postmaster>\r\n"
    );
    assert_eq!(
        downstream_rcpt("RCPT TO:<Postmaster>"),
        "RCPT TO:<Postmaster>\r\n"
    );
    assert_eq!(rcpt("RCPT TO:<postmaster>").unwrap().0.domain(), None);
    assert_eq!(rcpt("RCPT TO:<>"), Err(EnvelopeError::BadAddress));
    assert_eq!(
        rcpt("RCPT TO:<\"postmaster\">"),
        Err(EnvelopeError::BadAddress)
    );
    assert_eq!(
        mail("MAIL FROM:<postmaster>"),
        Err(EnvelopeError::BadAddress)
    );
    assert_eq!(mail("MAIL FROM:<>").unwrap().0, None);
    assert_eq!(mail_command(None, &[]), "MAIL FROM:<>\r\n");
}

#[test]
fn forms_of_the_command_and_of_the_path() {
    for ok in [
        "mail from:<a@b.example>",
        "MAIL FROM: <a@b.example>",
        "MAIL  FROM:<a@b.example>",
        "MAIL FROM:<@relay.example,@r2.example:a@b.example>",
    ] {
        let (m, _) = mail(ok).unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        assert_eq!(m.unwrap().to_string(), "a@b.example", "{ok}");
    }
    for (lit, ok) in [
        ("[127.0.0.1]", true),
        ("[IPv6:2001:db8::1]", true),
        ("[ipv6:::1]", true),
        ("[300.0.0.1]", false),
        ("[tag:x]", false),
        ("[127.0.0.1", false),
    ] {
        assert_eq!(rcpt(&format!("RCPT TO:<u@{lit}>")).is_ok(), ok, "{lit}");
    }
    for bad in [
        "RCPT TO:<a b@x>",
        "RCPT TO:<a..b@x>",
        "RCPT TO:<.a@x>",
        "RCPT TO:<a.@x>",
        "RCPT TO:<a@-x>",
        "RCPT TO:<a@x-.y>",
        "RCPT TO:<a@x..y>",
        "RCPT TO:<a@>",
        "RCPT TO:<@x>",
        "RCPT TO:<\"\"@x>",
        "RCPT TO:<\"a\rb\"@x>",
        "RCPT TO:<\"a\\\u{1}\"@x>",
        "RCPT TO:<\"a@x>",
        "RCPT TO:<a@x",
        "RCPT TO:<a@b@x>",
        "RCPT TO:<a\u{0}@x>",
    ] {
        assert_eq!(rcpt(bad).err(), Some(EnvelopeError::BadAddress), "{bad:?}");
    }
    for bad in [
        "RCPT TO:a@x",
        "RCPT TO <a@x>",
        "RCPT TO:<a@x>junk",
        "RCPTTO:<a@x>",
    ] {
        assert!(rcpt(bad).is_err(), "{bad:?}");
    }
    let long = format!("RCPT TO:<{}@x>", "a".repeat(255));
    assert_eq!(rcpt(&long).err(), Some(EnvelopeError::BadAddress));
    let utf8 = rcpt("RCPT TO:<jöran@bücher.example>").unwrap().0;
    assert!(!utf8.is_ascii());
    assert_eq!(utf8.to_string(), "jöran@bücher.example");
}

#[test]
fn parameters_are_the_announced_ones_each_checked() {
    let (_, p) =
        mail("MAIL FROM:<a@b> size=100  body=8bitmime RET=HDRS ENVID=x+2By SMTPUTF8").unwrap();
    let words: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(
        words,
        [
            "SIZE=100",
            "BODY=8bitmime",
            "RET=HDRS",
            "ENVID=x+2By",
            "SMTPUTF8"
        ]
    );
    let (_, p) = rcpt("RCPT TO:<a@b> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b").unwrap();
    assert_eq!(p.len(), 2);
    for (line, want) in [
        ("MAIL FROM:<a@b> SIZE=x", EnvelopeError::BadParam),
        ("MAIL FROM:<a@b> BODY=BINARYMIME", EnvelopeError::BadParam),
        ("MAIL FROM:<a@b> SMTPUTF8=yes", EnvelopeError::BadParam),
        ("MAIL FROM:<a@b> RET=ALL", EnvelopeError::BadParam),
        ("MAIL FROM:<a@b> ENVID=a=b", EnvelopeError::BadParam),
        ("MAIL FROM:<a@b> ENVID=<x>", EnvelopeError::BadParam),
        ("MAIL FROM:<a@b> SIZE=", EnvelopeError::BadParam),
        ("MAIL FROM:<a@b> =1", EnvelopeError::BadParam),
        ("MAIL FROM:<a@b> SIZE=1\tBODY=7BIT", EnvelopeError::BadParam),
        (
            "MAIL FROM:<a@b> REQUIRETLS",
            EnvelopeError::UnknownParam("REQUIRETLS".into()),
        ),
        ("MAIL FROM:<a@b> AUTH=<>", EnvelopeError::BadParam),
        (
            "MAIL FROM:<a@b> NOTIFY=NEVER",
            EnvelopeError::UnknownParam("NOTIFY".into()),
        ),
        (
            "MAIL FROM:<a@b> SIZE=1 size=2",
            EnvelopeError::DuplicateParam("SIZE".into()),
        ),
    ] {
        assert_eq!(mail(line).err(), Some(want), "{line}");
    }
    for (line, want) in [
        (
            "RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS",
            EnvelopeError::BadParam,
        ),
        (
            "RCPT TO:<a@b> NOTIFY=SUCCESS,SUCCESS",
            EnvelopeError::BadParam,
        ),
        ("RCPT TO:<a@b> ORCPT=rfc822;<x@y>", EnvelopeError::BadParam),
        ("RCPT TO:<a@b> ORCPT=x", EnvelopeError::BadParam),
        (
            "RCPT TO:<a@b> RET=FULL",
            EnvelopeError::UnknownParam("RET".into()),
        ),
    ] {
        assert_eq!(rcpt(line).err(), Some(want), "{line}");
    }
}

#[test]
fn a_milter_path_is_read_the_same_way() {
    let m = Mailbox::parse_path("<\"alice\"@Example.test>")
        .unwrap()
        .unwrap();
    assert_eq!(m.address(), "alice@Example.test");
    assert_eq!(Mailbox::parse_path("<>"), Ok(None));
    assert_eq!(
        Mailbox::parse_path("bob@example.test")
            .unwrap()
            .unwrap()
            .address(),
        "bob@example.test"
    );
    assert!(Mailbox::parse_path("<a b@x>").is_err());
}

// Property tests: a client's line through the session, our downstream line through
// smtp-proto (a standard, independent reader) and through our own parser again.

fn session_in_transaction() -> Session {
    let mut s = Session::new(Settings {
        hostname: "mx.test".into(),
        max_message_bytes: 1 << 20,
        tls_available: false,
        xforward: false,
    });
    assert_eq!(s.command(b"EHLO c\r\n"), Step::Hello);
    let Step::Mail { sender, params } = s.command(b"MAIL FROM:<a@b.example> SMTPUTF8\r\n") else {
        panic!()
    };
    s.mail_result(sender, params, &Reply::new(250, "ok"));
    s
}

/// A local part's value: printable ASCII (heavy on what needs quoting) and some UTF-8.
fn local_value() -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        3 => proptest::char::range('a', 'z'),
        2 => proptest::sample::select(vec!['"', '\\', '<', '>', '@', ' ', '.', ',', ';', ':', '=', '+', '(', ')', '[', ']']),
        1 => proptest::char::range(' ', '~'),
        1 => proptest::sample::select(vec!['é', 'ü', '日', 'ß']),
    ];
    proptest::collection::vec(chars, 1..24).prop_map(|v| v.into_iter().collect())
}

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", 1..4).prop_map(|l| l.join(".")),
        1 => Just("[127.0.0.1]".to_string()),
        1 => Just("[IPv6:2001:db8::1]".to_string()),
        1 => Just("bücher.example".to_string()),
    ]
}

/// How a client may write a local part: the canonical form, or quoted with any
/// character escaped.
fn client_form(value: &str, quote_all: bool, escapes: &[bool]) -> String {
    if !quote_all && is_dot_string(value) {
        return value.to_string();
    }
    let mut out = String::from("\"");
    for (i, c) in value.chars().enumerate() {
        let need = c == '"' || c == '\\';
        if need || (c.is_ascii() && escapes.get(i).copied().unwrap_or(false)) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn rcpt_params() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(
        vec!["NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;x+2By@z.example"],
        0..=2,
    )
}

fn notify_flags(params: &[&str]) -> u64 {
    if params.iter().any(|p| p.starts_with("NOTIFY")) {
        RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_DELAY
    } else {
        0
    }
}

/// What the session does with a client line, and what goes downstream for it.
fn through_session(line: &str) -> Option<(Mailbox, Vec<Param>, String)> {
    let mut s = session_in_transaction();
    match s.command(line.as_bytes()) {
        Step::Rcpt(r) => {
            let out = rcpt_command(&r.mailbox, &r.params);
            Some((r.mailbox, r.params, out))
        }
        _ => None,
    }
}

/// Text between the brackets: anything, or a quoted part with anything inside, then
/// `@`, a domain and anything after.
fn any_path_text() -> impl Strategy<Value = String> {
    let junk = || {
        proptest::collection::vec(
            prop_oneof![
                4 => proptest::char::range(' ', '~'),
                2 => proptest::sample::select(vec!['"', '\\', '<', '>', '@', ' ', '=', '.']),
                1 => proptest::sample::select(vec!['é', '\r', '\t', '\u{0}']),
            ],
            0..30,
        )
        .prop_map(|v| v.into_iter().collect::<String>())
    };
    prop_oneof![
        junk(),
        (junk(), domain(), junk(), any::<bool>()).prop_map(|(inside, domain, tail, with_tail)| {
            let tail = if with_tail { tail } else { String::new() };
            format!("\"{inside}\"@{domain}{tail}")
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any mailbox, written any way a client may: accepted, and what goes downstream
    /// names that same mailbox and only the client's parameters.
    #[test]
    fn downstream_reads_the_clients_mailbox(
        value in local_value(),
        domain in domain(),
        quote_all in any::<bool>(),
        escapes in proptest::collection::vec(any::<bool>(), 24),
        params in rcpt_params(),
    ) {
        let path = format!("{}@{domain}", client_form(&value, quote_all, &escapes));
        prop_assume!(path.len() <= 256);
        let mut line = format!("RCPT TO:<{path}>");
        for p in &params {
            line.push(' ');
            line.push_str(p);
        }
        line.push_str("\r\n");
        let (mailbox, got, out) = through_session(&line).expect("a valid path is accepted");
        prop_assert_eq!(mailbox.local_part(), value.as_str());
        prop_assert_eq!(mailbox.domain(), Some(domain.as_str()));
        prop_assert_eq!(got.len(), params.len());
        // Our own reading of our output: the same mailbox and parameters.
        let again = parse_rcpt(out.as_bytes()).expect("our output reads back");
        prop_assert_eq!(&again.0, &mailbox);
        prop_assert_eq!(&again.1, &got);
        // smtp-proto's reading (it reads no address literals).
        if !domain.starts_with('[') {
            let parsed = Request::parse(&mut out.as_bytes().iter());
            let Ok(Request::Rcpt { to }) = parsed else {
                return Err(TestCaseError::fail(format!("{out:?}: {parsed:?}")));
            };
            let want = format!("{value}@{domain}");
            prop_assert_eq!(to.address.as_ref(), want.as_str());
            let notify = to.flags & (RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_DELAY | RCPT_NOTIFY_NEVER);
            prop_assert_eq!(notify, notify_flags(&params));
            prop_assert_eq!(to.orcpt.is_some(), params.iter().any(|p| p.starts_with("ORCPT")));
        }
    }

    /// Any text at all between the brackets: whatever the session accepts goes
    /// downstream as one mailbox that reads back the same, with no parameter.
    #[test]
    fn whatever_is_accepted_reads_back_the_same(inner in any_path_text()) {
        let line = format!("RCPT TO:<{inner}>\r\n");
        if let Some((mailbox, params, out)) = through_session(&line) {
            prop_assert!(params.is_empty() || inner.contains('>'));
            let again = parse_rcpt(out.as_bytes()).expect("our output reads back");
            prop_assert_eq!(&again.0, &mailbox);
            prop_assert_eq!(&again.1, &params);
            prop_assert!(!out[..out.len() - 2].contains(['\r', '\n', '\0']));
            if mailbox.domain().is_some_and(|d| !d.starts_with('[')) {
                let Ok(Request::Rcpt { to }) = Request::parse(&mut out.as_bytes().iter()) else {
                    return Err(TestCaseError::fail(format!("smtp-proto cannot read {out:?}")));
                };
                let want = mailbox.address();
                prop_assert_eq!(to.address.as_ref(), want.as_str());
                if params.is_empty() {
                    prop_assert_eq!((to.flags, to.orcpt), (0, None));
                }
            }
        }
    }
}
