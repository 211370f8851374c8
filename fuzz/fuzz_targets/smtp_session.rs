//! The SMTP/LMTP session state machine of `mailveil serve` (`mailveil-smtp`), driven the
//! way `smtp::conn` drives it, over arbitrary command lines.
//!
//! Input: the first byte chooses the settings (bit 0: STARTTLS offered, bit 1: XFORWARD)
//! and seeds the simulated downstream's answers; the rest is split after each `\n` into
//! command lines (a last line without one is fed too, which the real driver never does).
//!
//! Properties: no panic; every reply is 2xx-5xx with a valid wire form (each line
//! `DDD-text\r\n` / `DDD text\r\n` with the reply's code, no CR or LF inside a line); the
//! steps respect the protocol state: MAIL only after a greeting and outside a
//! transaction, RCPT only after an accepted MAIL, DATA only with an accepted recipient,
//! STARTTLS only when offered and not inside a transaction, BDAT data kept only in a
//! transaction with a recipient; RSET and a greeting end the transaction; SMTP gets one
//! reply per mail and LMTP one per recipient.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailveil_smtp::session::{Caps, Mode, Reply, Session, Settings, Step};

/// What `smtp::conn` uses by default (`max_line_bytes`).
const MAX_LINE: usize = 4096;

fn check_reply(r: &Reply) {
    assert!((200..=599).contains(&r.code), "reply code {}", r.code);
    let wire = r.to_wire();
    assert!(wire.ends_with(b"\r\n"), "reply not CRLF-terminated");
    let code = r.code.to_string();
    let lines: Vec<&[u8]> = wire.split_inclusive(|&b| b == b'\n').collect::<Vec<_>>();
    assert!(!lines.is_empty());
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.len() >= 6 && line.ends_with(b"\r\n"),
            "short line {line:?}"
        );
        assert_eq!(&line[..3], code.as_bytes());
        let sep = if i + 1 == lines.len() { b' ' } else { b'-' };
        assert_eq!(line[3], sep, "separator in {line:?}");
        let text = &line[4..line.len() - 2];
        assert!(
            !text.contains(&b'\r') && !text.contains(&b'\n'),
            "CR or LF inside a reply line: {line:?}"
        );
    }
}

/// A tiny deterministic generator for the downstream's answers.
struct Down(u32);

impl Down {
    fn next(&mut self) -> u32 {
        // xorshift32; never zero once seeded non-zero.
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
    fn reply(&mut self) -> Reply {
        match self.next() % 4 {
            0 => Reply::new(451, "4.3.0 busy"),
            1 => Reply::new(550, "5.1.1 no such user"),
            2 => Reply::new(421, "closing"),
            _ => Reply::new(250, "2.1.0 Ok"),
        }
    }
    fn caps(&mut self) -> Option<Caps> {
        match self.next() % 3 {
            0 => None,
            1 => Some(Caps::default()),
            _ => Some(Caps {
                pipelining: true,
                eightbit: true,
                smtputf8: true,
                dsn: true,
                size: Some(1000),
                xforward: Some(vec!["NAME".into(), "ADDR".into()]),
            }),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let settings = Settings {
        hostname: "mx.fuzz.test".into(),
        max_message_bytes: 1000,
        tls_available: flags & 1 != 0,
        xforward: flags & 2 != 0,
    };
    let tls_available = settings.tls_available;
    let mut down = Down(u32::from(flags) | 0x100);
    let mut s = Session::new(settings);
    check_reply(&s.greeting());
    for line in rest.split_inclusive(|&b| b == b'\n').take(500) {
        let mode = s.mode();
        let tls = s.tls();
        let tx = s.transaction().cloned();
        let step = if line.len() > MAX_LINE {
            s.line_too_long()
        } else {
            s.command(line)
        };
        match step {
            Step::Reply(r) => check_reply(&r),
            Step::Close(r) => {
                check_reply(&r);
                break;
            }
            Step::Hello => {
                assert!(s.mode().is_some(), "greeting without a mode");
                assert!(!s.in_transaction(), "a greeting keeps the transaction");
                let caps = down.caps();
                let r = s.hello_reply(caps.as_ref());
                check_reply(&r);
                assert_eq!(r.code, 250);
            }
            Step::StartTls => {
                assert!(tls_available && !tls, "STARTTLS not offered or twice");
                assert!(tx.is_none(), "STARTTLS inside a transaction");
                assert_ne!(mode, Some(Mode::Helo));
                if down.next() % 2 == 0 {
                    s.tls_started();
                    assert!(s.tls() && s.mode().is_none() && !s.in_transaction());
                }
            }
            Step::Mail { sender, params } => {
                assert!(mode.is_some(), "MAIL before a greeting");
                assert!(tx.is_none(), "nested MAIL");
                let answer = down.reply();
                let r = s.mail_result(sender, params, &answer);
                check_reply(&r);
                assert_eq!(s.in_transaction(), answer.is_positive());
                assert_eq!(r.is_positive(), answer.is_positive());
            }
            Step::Rcpt(rcpt) => {
                assert!(
                    tx.as_ref().is_some_and(|t| t.mail_accepted),
                    "RCPT before an accepted MAIL"
                );
                let before = tx.map_or(0, |t| t.rcpts.len());
                let answer = down.reply();
                let r = s.rcpt_result(rcpt, &answer);
                check_reply(&r);
                let after = s.transaction().map_or(0, |t| t.rcpts.len());
                assert_eq!(after, before + usize::from(answer.is_positive()));
            }
            Step::Data => {
                let t = tx.expect("DATA without a transaction");
                assert!(!t.rcpts.is_empty(), "DATA without a recipient");
                assert!(t.chunks.is_empty(), "DATA after BDAT");
                deliver(&mut s, &mut down, t.rcpts.len());
            }
            Step::Bdat {
                size,
                discard,
                reply,
            } => {
                if !discard {
                    assert!(
                        s.transaction().is_some_and(|t| !t.rcpts.is_empty()),
                        "BDAT data kept outside a transaction with a recipient"
                    );
                    // The driver reads `size` bytes; a few stand for them here.
                    if let Some(t) = s.transaction_mut() {
                        t.chunks.extend(std::iter::repeat_n(b'x', size.min(64)));
                    }
                }
                match reply {
                    Some(r) => check_reply(&r),
                    None => {
                        let n = s.transaction().map_or(0, |t| t.rcpts.len());
                        assert!(n > 0, "BDAT LAST delivers without a recipient");
                        deliver(&mut s, &mut down, n);
                    }
                }
            }
            Step::Rset(r) => {
                check_reply(&r);
                assert!(!s.in_transaction(), "RSET keeps the transaction");
            }
        }
    }
});

/// The end of data: the downstream's outcome per recipient, the replies to the client.
fn deliver(s: &mut Session, down: &mut Down, rcpts: usize) {
    let outcomes: Vec<Reply> = (0..rcpts).map(|_| down.reply()).collect();
    let answers = s.data_replies(&outcomes);
    let want = if s.mode() == Some(Mode::Lhlo) {
        rcpts
    } else {
        1
    };
    assert_eq!(answers.len(), want, "replies after the data");
    for r in &answers {
        check_reply(r);
        // Nothing is acknowledged that the downstream did not accept.
        if r.is_positive() {
            assert!(outcomes.iter().any(Reply::is_positive));
        }
    }
    s.end_transaction();
    assert!(!s.in_transaction());
}
