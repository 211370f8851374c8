//! Sessions end to end over `tokio::io::duplex`, against a scripted downstream that
//! records what it was sent.

use super::super::downstream::BoxFuture;
use super::*;
use crate::pipeline::Pipeline;
use mailveil_core::{OnError, Policy};
use std::io;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

/// A fake downstream: Dovecot-like LMTP or Postfix-like SMTP.
#[derive(Clone)]
struct Fake {
    lmtp: bool,
    /// Extra EHLO keywords.
    caps: Vec<&'static str>,
    /// Reply after the final dot (per recipient for LMTP: recipients containing "full"
    /// get 452, "gone" get 550).
    data_code: u16,
    /// Connection refused.
    down: bool,
    log: Arc<Mutex<Vec<String>>>,
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Fake {
    fn smtp() -> Self {
        Fake {
            lmtp: false,
            caps: vec![
                "SIZE 10240000",
                "8BITMIME",
                "DSN",
                "XFORWARD NAME ADDR PROTO HELO SOURCE PORT IDENT",
            ],
            data_code: 250,
            down: false,
            log: Arc::default(),
            messages: Arc::default(),
        }
    }
    fn lmtp() -> Self {
        Fake {
            lmtp: true,
            caps: vec!["8BITMIME", "ENHANCEDSTATUSCODES", "PIPELINING"],
            ..Fake::smtp()
        }
    }
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn messages(&self) -> Vec<Vec<u8>> {
        self.messages.lock().unwrap().clone()
    }
}

impl Connector for Fake {
    fn connect(&self) -> BoxFuture<'_, io::Result<Box<dyn Io>>> {
        Box::pin(async move {
            if self.down {
                return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));
            }
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            tokio::spawn(self.clone().serve(theirs));
            Ok(Box::new(ours) as Box<dyn Io>)
        })
    }
    fn lmtp(&self) -> bool {
        self.lmtp
    }
}

impl Fake {
    async fn serve(self, stream: DuplexStream) {
        let (r, mut w) = tokio::io::split(stream);
        let mut r = BufReader::new(r);
        w.write_all(b"220 fake ready\r\n").await.unwrap();
        let mut rcpts: Vec<String> = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let cmd = line.trim_end().to_string();
            self.log.lock().unwrap().push(cmd.clone());
            let upper = cmd.to_ascii_uppercase();
            let reply = if upper.starts_with("EHLO") || upper.starts_with("LHLO") {
                let mut s = String::from("250-fake\r\n");
                for c in &self.caps {
                    s.push_str(&format!("250-{c}\r\n"));
                }
                s.push_str("250 ENHANCEDSTATUSCODES\r\n");
                s
            } else if upper.starts_with("MAIL") {
                rcpts.clear();
                if !self.lmtp
                    && upper.contains("SIZE=")
                    && !self.caps.iter().any(|c| c.starts_with("SIZE"))
                {
                    "555 5.5.4 Unsupported parameters\r\n".into()
                } else {
                    "250 2.1.0 Ok\r\n".into()
                }
            } else if upper.starts_with("RCPT") {
                if cmd.contains("nobody") {
                    "550 5.1.1 User doesn't exist\r\n".into()
                } else {
                    rcpts.push(cmd.clone());
                    "250 2.1.5 Ok\r\n".into()
                }
            } else if upper == "DATA" {
                w.write_all(b"354 go\r\n").await.unwrap();
                let mut msg = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    msg.extend_from_slice(&l);
                }
                self.messages.lock().unwrap().push(msg);
                let n = if self.lmtp { rcpts.len() } else { 1 };
                let mut s = String::new();
                for rc in rcpts.iter().take(n) {
                    let code = if rc.contains("full") {
                        452
                    } else if rc.contains("gone") {
                        550
                    } else {
                        self.data_code
                    };
                    s.push_str(&format!("{code} {}.0.0 result\r\n", code / 100));
                }
                s
            } else if upper == "QUIT" {
                w.write_all(b"221 bye\r\n").await.unwrap();
                return;
            } else {
                "250 2.0.0 Ok\r\n".into()
            };
            w.write_all(reply.as_bytes()).await.unwrap();
        }
    }
}

fn shared(fake: &Fake, max: usize) -> Arc<Shared> {
    Arc::new(shared_plain(fake, max))
}

fn shared_plain(fake: &Fake, max: usize) -> Shared {
    Shared {
        settings: Settings {
            hostname: "filter.test".into(),
            max_message_bytes: max,
            tls_available: false,
            xforward: true,
        },
        command_timeout: Duration::from_secs(5),
        data_timeout: Duration::from_secs(5),
        min_data_rate: 0,
        max_line_bytes: 4096,
        transfers: Arc::new(tokio::sync::Semaphore::new(100)),
        connector: Arc::new(fake.clone()),
        pool: Arc::new(crate::smtp::pool::Pool::new(0)),
        down_timeouts: Timeouts {
            connect: Duration::from_secs(5),
            reply: Duration::from_secs(5),
        },
        pipeline: pipeline(
            crate::rule_files::LiveRules::load(&[], false).unwrap(),
            Policy::default(),
        ),
        tls: None,
    }
}

fn pipeline(rules: crate::rule_files::LiveRules, policy: Policy) -> Arc<Pipeline> {
    Arc::new(Pipeline::new(Arc::new(rules), policy))
}

struct Client {
    r: BufReader<tokio::io::ReadHalf<DuplexStream>>,
    w: tokio::io::WriteHalf<DuplexStream>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn start(shared: Arc<Shared>) -> Client {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        Client::over(shared, ours, Box::new(theirs)).await
    }
    /// A session whose writes to the client are counted (the greeting is the first).
    async fn start_counted(shared: Arc<Shared>, buffer: usize) -> (Client, Arc<AtomicUsize>) {
        let (ours, theirs) = tokio::io::duplex(buffer);
        let writes = Arc::new(AtomicUsize::new(0));
        let stream = CountWrites {
            inner: theirs,
            writes: Arc::clone(&writes),
        };
        (Client::over(shared, ours, Box::new(stream)).await, writes)
    }
    /// A session on `stream`, read and written by the client through `ours`; the
    /// greeting read.
    async fn over(shared: Arc<Shared>, ours: DuplexStream, stream: Box<dyn Io>) -> Client {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run_session(shared, stream, "test".into(), rx));
        let (r, w) = tokio::io::split(ours);
        let mut c = Client {
            r: BufReader::new(r),
            w,
            stop,
            task,
        };
        assert!(c.reply().await.starts_with("220 "));
        c
    }
    /// One reply (all its lines).
    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.r.read_line(&mut line))
                .await
                .expect("reply in time")
                .unwrap();
            if n == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }
    async fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).await.unwrap();
    }
    async fn cmd(&mut self, s: &str) -> String {
        self.send(&format!("{s}\r\n")).await;
        self.reply().await
    }
}

const TRACKED: &str = "From: news@sender.example\r\nTo: alice@example.test\r\nMessage-ID: <m1@sender.example>\r\nSubject: hi\r\nContent-Type: text/html\r\n\r\n<p>Hello reader</p><img src=\"https://t.example/open.gif?e=alice@example.test\" width=1 height=1>\r\n.leading dot\r\n";

#[tokio::test]
async fn clean_mail_is_delivered_before_250() {
    let fake = Fake::lmtp();
    let mut c = Client::start(shared(&fake, 1 << 20)).await;
    let ehlo = c.cmd("EHLO postfix.test").await;
    assert!(ehlo.contains("8BITMIME"), "{ehlo}");
    assert!(ehlo.contains("SIZE 1048576"));
    assert!(
        !ehlo.contains("XFORWARD"),
        "Dovecot-like downstream has no XFORWARD"
    );
    assert!(
        c.cmd("MAIL FROM:<news@sender.example> SIZE=300 BODY=8BITMIME")
            .await
            .starts_with("250")
    );
    assert!(
        c.cmd("RCPT TO:<alice@example.test>")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(&format!(
        "{}.\r\n",
        TRACKED.replace("\r\n.leading", "\r\n..leading")
    ))
    .await;
    let done = c.reply().await;
    assert!(done.starts_with("250 "), "{done}");
    let log = fake.log();
    assert!(
        log.contains(&"MAIL FROM:<news@sender.example> BODY=8BITMIME".to_string()),
        "SIZE= must not reach an LMTP server without SIZE: {log:?}"
    );
    let msgs = fake.messages();
    assert_eq!(msgs.len(), 1);
    let text = String::from_utf8_lossy(&msgs[0]);
    assert!(text.starts_with("X-Mailveil: v="), "{text}");
    assert!(text.contains("Message-ID: <m1@sender.example>"));
    assert!(text.contains("Hello reader"));
    assert!(!text.contains("t.example/open.gif"));
    assert!(
        text.contains("\r\n..leading dot"),
        "dot-stuffed again downstream"
    );
    assert!(c.cmd("QUIT").await.starts_with("221"));
}

#[tokio::test]
async fn pipelined_envelope_and_foreign_rcpt_decided_downstream() {
    let fake = Fake::smtp();
    let mut c = Client::start(shared(&fake, 1 << 20)).await;
    c.cmd("EHLO postfix.test").await;
    c.send("XFORWARD NAME=client.example ADDR=192.0.2.1 IDENT=4QueueId\r\nMAIL FROM:<a@b.example> SIZE=100\r\nRCPT TO:<x@foreign.example>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n").await;
    let replies = [
        c.reply().await,
        c.reply().await,
        c.reply().await,
        c.reply().await,
        c.reply().await,
    ];
    assert!(replies[0].starts_with("250"));
    assert!(replies[1].starts_with("250"));
    assert!(
        replies[2].starts_with("250"),
        "downstream decides the foreign domain"
    );
    assert!(replies[3].starts_with("550 5.1.1"), "{}", replies[3]);
    assert!(replies[4].starts_with("354"));
    c.send("Subject: x\r\n\r\nbody\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    let log = fake.log();
    assert!(
        log.iter()
            .any(|l| l == "XFORWARD NAME=client.example ADDR=192.0.2.1 IDENT=4QueueId"),
        "{log:?}"
    );
    assert!(log.iter().any(|l| l == "MAIL FROM:<a@b.example> SIZE=100"));
    assert!(log.iter().any(|l| l == "RCPT TO:<x@foreign.example>"));
}

#[tokio::test]
async fn downstream_down_gives_451_and_nothing_is_acknowledged() {
    let fake = Fake {
        down: true,
        ..Fake::smtp()
    };
    let mut c = Client::start(shared(&fake, 1 << 20)).await;
    let ehlo = c.cmd("EHLO postfix.test").await;
    assert!(ehlo.starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@b>").await.starts_with("451 4.4.1"));
    assert!(c.cmd("RCPT TO:<c@d>").await.starts_with("503"));
}

#[tokio::test]
async fn downstream_4xx_after_data_gives_451_and_5xx_passes() {
    for (code, want) in [(452, "451 "), (554, "554 ")] {
        let fake = Fake {
            data_code: code,
            ..Fake::smtp()
        };
        let mut c = Client::start(shared(&fake, 1 << 20)).await;
        c.cmd("EHLO p").await;
        c.cmd("MAIL FROM:<a@b>").await;
        c.cmd("RCPT TO:<c@d>").await;
        c.cmd("DATA").await;
        c.send("Subject: x\r\n\r\nhi\r\n.\r\n").await;
        let r = c.reply().await;
        assert!(r.starts_with(want), "{code}: {r}");
    }
}

#[tokio::test]
async fn lmtp_client_gets_one_reply_per_recipient() {
    let fake = Fake::lmtp();
    let mut c = Client::start(shared(&fake, 1 << 20)).await;
    c.cmd("LHLO postfix.test").await;
    c.cmd("MAIL FROM:<a@b>").await;
    for r in ["alice@t", "full@t", "gone@t"] {
        assert!(c.cmd(&format!("RCPT TO:<{r}>")).await.starts_with("250"));
    }
    c.cmd("DATA").await;
    c.send("Subject: x\r\n\r\nhi\r\n.\r\n").await;
    let codes: Vec<String> = [c.reply().await, c.reply().await, c.reply().await]
        .iter()
        .map(|r| r[..3].to_string())
        .collect();
    assert_eq!(codes, ["250", "451", "550"]);
}

#[tokio::test]
async fn smtp_client_with_lmtp_downstream_and_a_full_mailbox_gets_451() {
    let fake = Fake::lmtp();
    let mut c = Client::start(shared(&fake, 1 << 20)).await;
    c.cmd("EHLO postfix.test").await;
    c.cmd("MAIL FROM:<a@b>").await;
    c.cmd("RCPT TO:<alice@t>").await;
    c.cmd("RCPT TO:<full@t>").await;
    c.cmd("DATA").await;
    c.send("Subject: x\r\n\r\nhi\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("451"));
}

#[tokio::test]
async fn oversized_mail_is_refused_and_not_delivered() {
    let fake = Fake::smtp();
    let mut c = Client::start(shared(&fake, 100)).await;
    c.cmd("EHLO p").await;
    c.cmd("MAIL FROM:<a@b>").await;
    c.cmd("RCPT TO:<c@d>").await;
    c.cmd("DATA").await;
    c.send(&format!("Subject: x\r\n\r\n{}\r\n.\r\n", "y".repeat(500)))
        .await;
    assert!(c.reply().await.starts_with("552 5.3.4"));
    assert!(fake.messages().is_empty());
    assert!(fake.log().iter().any(|l| l == "RSET"));
    assert!(c.cmd("NOOP").await.starts_with("250"));
}

#[tokio::test]
async fn bdat_chunks_are_delivered() {
    let fake = Fake::smtp();
    let mut c = Client::start(shared(&fake, 1 << 20)).await;
    assert!(c.cmd("EHLO p").await.contains("CHUNKING"));
    c.cmd("MAIL FROM:<a@b>").await;
    c.cmd("RCPT TO:<c@d>").await;
    c.send("BDAT 14\r\nSubject: x\r\n\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    c.send("BDAT 8 LAST\r\n.hello\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    let msgs = fake.messages();
    assert_eq!(
        String::from_utf8_lossy(&msgs[0]).lines().last(),
        Some("..hello")
    );
}

#[tokio::test]
async fn shutdown_closes_idle_sessions_with_421() {
    let fake = Fake::smtp();
    let mut c = Client::start(shared(&fake, 1 << 20)).await;
    c.cmd("EHLO p").await;
    c.stop.send(true).unwrap();
    assert!(c.reply().await.starts_with("421 4.3.2"));
    c.task.await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_the_transaction_in_flight_finish() {
    let fake = Fake::smtp();
    let mut c = Client::start(shared(&fake, 1 << 20)).await;
    c.cmd("EHLO p").await;
    c.cmd("MAIL FROM:<a@b>").await;
    c.stop.send(true).unwrap();
    assert!(c.cmd("RCPT TO:<c@d>").await.starts_with("250"));
    c.cmd("DATA").await;
    c.send("Subject: x\r\n\r\nhi\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    assert!(c.reply().await.starts_with("421"));
    assert_eq!(fake.messages().len(), 1);
}

#[tokio::test]
async fn client_vanishing_mid_data_delivers_nothing() {
    let fake = Fake::smtp();
    let mut sh = shared_plain(&fake, 1 << 20);
    sh.data_timeout = Duration::from_millis(300);
    let mut c = Client::start(Arc::new(sh)).await;
    c.cmd("EHLO p").await;
    c.cmd("MAIL FROM:<a@b>").await;
    c.cmd("RCPT TO:<c@d>").await;
    c.cmd("DATA").await;
    c.send("Subject: x\r\n\r\nhalf a mes").await;
    drop(c.w);
    let mut rest = String::new();
    let _ = c.r.read_to_string(&mut rest).await;
    c.task.await.unwrap();
    assert!(fake.messages().is_empty());
    assert!(!fake.log().iter().any(|l| l == "DATA"));
}

/// A mail the core cannot clean: MIME nested deeper than the limit.
fn too_deep() -> String {
    let mut m = String::from("Subject: deep\r\n");
    for i in 0..100 {
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    m.push_str("Content-Type: text/plain\r\n\r\nhi\r\n");
    m
}

#[tokio::test]
async fn uncleanable_mail_passes_unchanged_with_error_header_or_451_by_policy() {
    for (on_error, want) in [(OnError::PassUnchanged, "250"), (OnError::Tempfail, "451")] {
        let fake = Fake::smtp();
        let mut sh = shared_plain(&fake, 1 << 20);
        let policy = Policy {
            on_error,
            ..Policy::default()
        };
        sh.pipeline = pipeline(
            crate::rule_files::LiveRules::load(&[], false).unwrap(),
            policy,
        );
        let mut c = Client::start(Arc::new(sh)).await;
        c.cmd("EHLO p").await;
        c.cmd("MAIL FROM:<a@b>").await;
        c.cmd("RCPT TO:<c@d>").await;
        c.cmd("DATA").await;
        c.send(&format!("{}.\r\n", too_deep())).await;
        let r = c.reply().await;
        assert!(r.starts_with(want), "{on_error:?}: {r}");
        let msgs = fake.messages();
        if on_error == OnError::PassUnchanged {
            let text = String::from_utf8_lossy(&msgs[0]).to_string();
            let (first, _) = text.split_once("\r\n").unwrap();
            assert!(
                first.starts_with("X-Mailveil: v=") && first.contains("error="),
                "{first}"
            );
            // The original, byte for byte, as an attachment no client renders (issue 14).
            let msg = mail_parser::MessageParser::default()
                .parse(&msgs[0])
                .unwrap();
            let original = msg.attachments().next().expect("the original attached");
            assert_eq!(original.contents(), too_deep().as_bytes());
        } else {
            assert!(msgs.is_empty());
            assert!(fake.log().iter().any(|l| l == "RSET"));
        }
    }
}

#[tokio::test]
async fn mails_over_max_transfers_get_451_and_the_session_goes_on() {
    let fake = Fake::smtp();
    let mut sh = shared_plain(&fake, 1 << 20);
    sh.transfers = Arc::new(tokio::sync::Semaphore::new(1));
    let sh = Arc::new(sh);
    // The first client holds the one transfer slot, in the middle of its data.
    let mut first = Client::start(Arc::clone(&sh)).await;
    first.cmd("EHLO p").await;
    first.cmd("MAIL FROM:<a@b>").await;
    first.cmd("RCPT TO:<c@d>").await;
    assert!(first.cmd("DATA").await.starts_with("354"));
    first.send("Subject: one\r\n\r\nhalf").await;
    let mut second = Client::start(Arc::clone(&sh)).await;
    second.cmd("EHLO p").await;
    for data in ["DATA", "BDAT 5 LAST"] {
        assert!(second.cmd("MAIL FROM:<e@f>").await.starts_with("250"));
        assert!(second.cmd("RCPT TO:<g@h>").await.starts_with("250"));
        if data == "DATA" {
            assert!(second.cmd(data).await.starts_with("451 4.3.2"));
        } else {
            second.send("BDAT 5 LAST\r\nabcde").await;
            assert!(second.reply().await.starts_with("451 4.3.2"));
        }
    }
    // The slot frees when the first mail is done; then the second gets through.
    first.send(" a mail\r\n.\r\n").await;
    assert!(first.reply().await.starts_with("250"));
    assert!(second.cmd("MAIL FROM:<e@f>").await.starts_with("250"));
    assert!(second.cmd("RCPT TO:<g@h>").await.starts_with("250"));
    assert!(second.cmd("DATA").await.starts_with("354"));
    assert!(
        second
            .cmd("Subject: two\r\n\r\nbody\r\n.")
            .await
            .starts_with("250")
    );
    assert_eq!(fake.messages().len(), 2);
}

#[tokio::test]
async fn the_envelope_reaches_the_downstream_meaning_what_the_client_sent() {
    let fake = Fake::smtp();
    let mut c = Client::start(shared(&fake, 1 << 20)).await;
    c.cmd("EHLO postfix.test").await;
    let r = c
        .cmd(r#"MAIL FROM:<"x> RET=FULL ENVID=e"@z.example> RET=HDRS"#)
        .await;
    assert!(r.starts_with("250"), "{r}");
    for rcpt in [
        r#"RCPT TO:<"victim@evil.example> ORCPT=rfc822;a"@catchall.example>"#,
        r#"RCPT TO:<"john smith"@example.test> NOTIFY=NEVER"#,
        "RCPT TO:<postmaster>",
        r#"RCPT TO:<"a\"b"@example.test>"#,
    ] {
        assert!(c.cmd(rcpt).await.starts_with("250"), "{rcpt}");
    }
    // Refused here, never passed on: the path cannot be read one way only.
    for bad in [
        "RCPT TO:<a b@x.example>",
        "RCPT TO:<>",
        "RCPT TO:<a@x> ORCPT=rfc822;<b@y>",
    ] {
        assert!(c.cmd(bad).await.starts_with("501"), "{bad}");
    }
    assert!(c.cmd("RCPT TO:<a@x> FOO=1").await.starts_with("555"));
    c.cmd("DATA").await;
    c.send("Subject: x\r\n\r\nhi\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    let log = fake.log();
    let envelope: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|l| l.starts_with("MAIL") || l.starts_with("RCPT"))
        .collect();
    assert_eq!(
        envelope,
        [
            r#"MAIL FROM:<"x> RET=FULL ENVID=e"@z.example> RET=HDRS"#,
            r#"RCPT TO:<"victim@evil.example> ORCPT=rfc822;a"@catchall.example>"#,
            r#"RCPT TO:<"john smith"@example.test> NOTIFY=NEVER"#,
            "RCPT TO:<postmaster>",
            r#"RCPT TO:<"a\"b"@example.test>"#,
        ]
    );
}

#[tokio::test]
async fn data_then_a_dot_at_once_is_an_empty_message_and_the_first_line_is_unstuffed() {
    let fake = Fake::smtp();
    let mut c = Client::start(shared(&fake, 1 << 20)).await;
    c.cmd("EHLO p").await;
    for body in [".\r\n", "..x\r\n\r\nbody\r\n.\r\n"] {
        c.cmd("MAIL FROM:<a@b>").await;
        c.cmd("RCPT TO:<c@d>").await;
        assert!(c.cmd("DATA").await.starts_with("354"));
        c.send(body).await;
        let r = c.reply().await;
        assert!(r.starts_with("250"), "{body:?}: {r}");
    }
    let msgs = fake.messages();
    assert_eq!(msgs.len(), 2);
    // The fake keeps the stuffed lines: `.x` arrived, so `..x` went on.
    let second = String::from_utf8_lossy(&msgs[1]);
    assert!(second.contains("\r\n..x\r\n"), "{second}");
    assert!(!second.contains("...x"), "{second}");
}

/// Rules in a directory of their own, loaded as `serve` loads them.
fn with_rules(sh: &mut Shared, text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("user.toml"), text).unwrap();
    let rules = crate::rule_files::LiveRules::load(&[dir.path().to_path_buf()], false)
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    sh.pipeline = pipeline(rules, Policy::default());
    dir
}

const ALICE_STRIPS: &str = "[[policy]]\nid = \"alice-strict\"\nrecipients = [\"alice@example.test\", \"gone@example.test\"]\nremote_content = \"strip\"\nsource = \"t\"\n";
const IMAGE_MAIL: &str = "From: news@sender.example\r\nTo: list@sender.example\r\nContent-Type: text/html\r\n\r\n<p>Sale</p><img src=\"https://images.sender.example/sale.png\" alt=\"Sale\">\r\n.\r\n";

/// A session that sends `IMAGE_MAIL` to `rcpts`; the replies after the data.
async fn policy_mail(fake: &Fake, greeting: &str, rcpts: &[&str]) -> Vec<String> {
    let mut sh = shared_plain(fake, 1 << 20);
    let _dir = with_rules(&mut sh, ALICE_STRIPS);
    let mut c = Client::start(Arc::new(sh)).await;
    c.cmd(greeting).await;
    c.cmd("MAIL FROM:<news@sender.example> BODY=8BITMIME").await;
    for r in rcpts {
        assert!(c.cmd(&format!("RCPT TO:<{r}>")).await.starts_with("250"));
    }
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send(IMAGE_MAIL).await;
    let n = if greeting.starts_with("LHLO") {
        rcpts.len()
    } else {
        1
    };
    let mut replies = Vec::new();
    for _ in 0..n {
        replies.push(c.reply().await);
    }
    replies
}

#[tokio::test]
async fn recipients_under_different_policies_get_one_copy_each() {
    let fake = Fake::smtp();
    let replies = policy_mail(
        &fake,
        "EHLO p",
        &[
            "bob@example.test",
            "alice@example.test",
            "carol@example.test",
        ],
    )
    .await;
    assert!(replies[0].starts_with("250"), "{replies:?}");
    // The live transaction (all three) is reset; then one per policy group.
    let log = fake.log();
    let from_rset: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .skip_while(|l| *l != "RSET")
        .filter(|l| !l.starts_with("XFORWARD"))
        .collect();
    assert_eq!(
        from_rset,
        [
            "RSET",
            "MAIL FROM:<news@sender.example> BODY=8BITMIME",
            "RCPT TO:<bob@example.test>",
            "RCPT TO:<carol@example.test>",
            "DATA",
            "MAIL FROM:<news@sender.example> BODY=8BITMIME",
            "RCPT TO:<alice@example.test>",
            "DATA",
        ],
        "{log:?}"
    );
    let msgs: Vec<String> = fake
        .messages()
        .iter()
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert_eq!(msgs.len(), 2);
    assert!(
        msgs[0].contains("images.sender.example/sale.png"),
        "{}",
        msgs[0]
    );
    assert!(!msgs[1].contains("images.sender.example"), "{}", msgs[1]);
    // One policy for all: the one transaction, no RSET.
    let fake = Fake::smtp();
    policy_mail(&fake, "EHLO p", &["bob@example.test", "carol@example.test"]).await;
    assert!(!fake.log().iter().any(|l| l == "RSET"));
    assert_eq!(fake.messages().len(), 1);
}

#[tokio::test]
async fn per_policy_copies_are_answered_per_recipient_or_by_the_weakest() {
    // Dovecot-like LMTP downstream refuses gone@ (550) after the data.
    let fake = Fake::lmtp();
    let rcpts = [
        "bob@example.test",
        "gone@example.test",
        "alice@example.test",
    ];
    let replies = policy_mail(&fake, "LHLO p", &rcpts).await;
    let codes: Vec<&str> = replies.iter().map(|r| &r[..3]).collect();
    assert_eq!(codes, ["250", "550", "250"], "{replies:?}");
    assert_eq!(fake.messages().len(), 2);
    // An SMTP client gets 250 only when every copy was taken: here the refusal.
    let fake = Fake::lmtp();
    let replies = policy_mail(&fake, "EHLO p", &rcpts).await;
    assert!(replies[0].starts_with("550"), "{replies:?}");
    let fake = Fake::lmtp();
    let replies = policy_mail(&fake, "EHLO p", &["bob@example.test", "alice@example.test"]).await;
    assert!(replies[0].starts_with("250"), "{replies:?}");
}

/// A stream that counts the writes made on it (the replies' syscalls, on a socket).
struct CountWrites {
    inner: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl tokio::io::AsyncRead for CountWrites {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for CountWrites {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        r
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn a_pipelined_group_of_commands_is_answered_in_one_write() {
    let fake = Fake::smtp();
    let (mut c, writes) = Client::start_counted(shared(&fake, 1 << 20), 1 << 16).await;
    assert!(c.cmd("EHLO postfix.test").await.starts_with("250"));
    let before = writes.load(std::sync::atomic::Ordering::SeqCst);
    c.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n").await;
    let replies = [
        c.reply().await,
        c.reply().await,
        c.reply().await,
        c.reply().await,
    ];
    assert!(
        replies[0].starts_with("250") && replies[1].starts_with("250"),
        "{replies:?}"
    );
    assert!(replies[2].starts_with("550 5.1.1"), "{replies:?}");
    assert!(replies[3].starts_with("354"), "{replies:?}");
    let group = writes.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert_eq!(group, 1, "four replies, one write");
    // Not pipelined: each reply goes out at once (the client waits for it).
    c.send("Subject: x\r\n\r\nbody\r\n.\r\n").await;
    assert!(c.reply().await.starts_with("250"));
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert!(c.cmd("QUIT").await.starts_with("221"));
    assert_eq!(fake.messages().len(), 1);
}

#[tokio::test]
async fn replies_held_for_a_long_pipelined_group_go_out_in_bounded_pieces() {
    let fake = Fake::smtp();
    let (mut c, writes) = Client::start_counted(shared(&fake, 1 << 20), 1 << 20).await;
    let n = 3000;
    c.send(&"NOOP\r\n".repeat(n)).await;
    for i in 0..n {
        let r = c.reply().await;
        assert!(r.starts_with("250"), "reply {i}: {r}");
    }
    let bytes = n * "250 2.0.0 Ok\r\n".len();
    let w = writes.load(std::sync::atomic::Ordering::SeqCst) - 1;
    assert!(
        w >= bytes / (16 * 1024),
        "{w} writes for {bytes} bytes: held past the bound"
    );
    assert!(w < n / 10, "{w} writes for {n} pipelined commands");
    assert!(c.cmd("QUIT").await.starts_with("221"));
}
