//! `mailveil imap` against the real Dovecot IMAP of the harness: a sweep over 50 mails,
//! a second sweep that changes nothing, a sweep SIGKILLed halfway and resumed, and
//! `--watch` cleaning a mail delivered over LMTP while it runs. Skips when the mail
//! stack is not installed, unless MAILVEIL_REQUIRE_MAILSTACK=1.

mod support;

#[path = "mailstack/harness.rs"]
mod harness;

use harness::{MAILVEIL, Stack, guard, header, wait_until};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const USER: &str = "alice@example.test";
const N: usize = 50;

/// A small synchronous IMAP client for setting up and checking the mailbox.
struct Imap {
    w: TcpStream,
    r: BufReader<TcpStream>,
    tag: u32,
}

/// One line of a response, with the literal that followed it, if any.
type Resp = Vec<(String, Option<Vec<u8>>)>;

impl Imap {
    fn connect(port: u16) -> Imap {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut imap = Imap {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
            tag: 0,
        };
        let mut greeting = String::new();
        imap.r.read_line(&mut greeting).unwrap();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        imap.cmd(&format!("LOGIN {USER} secret"));
        imap.cmd("SELECT INBOX");
        imap
    }

    fn read(&mut self, tag: &str) -> Resp {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            self.r.read_until(b'\n', &mut line).unwrap();
            assert!(!line.is_empty(), "IMAP connection closed");
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            let lit = text
                .strip_suffix('}')
                .and_then(|s| s.rfind('{').map(|i| &s[i + 1..]))
                .and_then(|n| n.parse::<usize>().ok());
            let literal = lit.map(|n| {
                let mut buf = vec![0; n];
                self.r.read_exact(&mut buf).unwrap();
                buf
            });
            let done = text.starts_with(&format!("{tag} "));
            out.push((text.clone(), literal));
            if done {
                assert!(text.contains(" OK"), "IMAP: {text}");
                return out;
            }
        }
    }

    fn cmd(&mut self, cmd: &str) -> Resp {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        write!(self.w, "{tag} {cmd}\r\n").unwrap();
        self.read(&tag)
    }

    fn append(&mut self, flags: &str, date: &str, msg: &[u8]) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        // LITERAL+ (Dovecot has it): no continuation round trip
        write!(
            self.w,
            "{tag} APPEND INBOX ({flags}) \"{date}\" {{{}+}}\r\n",
            msg.len()
        )
        .unwrap();
        self.w.write_all(msg).unwrap();
        self.w.write_all(b"\r\n").unwrap();
        self.read(&tag);
    }

    /// Every message: UID -> (flags, internal date, bytes).
    fn all(&mut self) -> BTreeMap<u32, (Vec<String>, String, Vec<u8>)> {
        self.cmd("NOOP");
        let mut out = BTreeMap::new();
        let resp = self.cmd("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])");
        for (line, lit) in resp {
            // Only the answers to this FETCH: the server may also send an unsolicited
            // `* N FETCH (FLAGS (...))` at any time when another session (the watcher)
            // changed a message's flags (RFC 3501 section 7.4.2): no UID, no body.
            if !line.starts_with("* ")
                || !line.contains(" FETCH (")
                || !line.contains("UID ")
                || lit.is_none()
            {
                continue;
            }
            let uid: u32 = after(&line, "UID ")
                .split([' ', ')'])
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let flags = after(&line, "FLAGS (").split(')').next().unwrap();
            let mut flags: Vec<String> = flags
                .split_whitespace()
                .filter(|f| *f != "\\Recent")
                .map(str::to_string)
                .collect();
            flags.sort();
            let date = after(&line, "INTERNALDATE \"")
                .split('"')
                .next()
                .unwrap()
                .to_string();
            out.insert(uid, (flags, date, lit.expect("BODY[] literal")));
        }
        out
    }
}

fn after<'a>(s: &'a str, key: &str) -> &'a str {
    let i = s.find(key).unwrap_or_else(|| panic!("{key} not in {s}"));
    &s[i + key.len()..]
}

/// Mail i: even = tracked HTML newsletter, odd = plain text without links; every fourth
/// has no Message-ID (the resumed sweep must find its copy without one).
fn mail(i: usize) -> Vec<u8> {
    let mid = if i.is_multiple_of(4) {
        String::new()
    } else {
        format!("Message-ID: <sweep{i}@sender.example>\r\n")
    };
    let head = format!(
        "From: news@sender.example\r\nTo: {USER}\r\nSubject: sweep mail {i}\r\n\
         {mid}Date: Mon, 4 Mar 2024 10:{:02}:00 +0100\r\n\
         MIME-Version: 1.0\r\n",
        i % 60
    );
    let body = if i.is_multiple_of(2) {
        format!(
            "Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Issue {i} for you.</p>\
             <img src=\"https://t.example/open.gif?e={USER}&m={i}\" width=\"1\" height=\"1\">\
             </body></html>\r\n"
        )
    } else {
        format!("Content-Type: text/plain; charset=utf-8\r\n\r\nHello, plain mail {i}.\r\n")
    };
    format!("{head}{body}").into_bytes()
}

fn flags_of(i: usize) -> String {
    let mut f = Vec::new();
    if i.is_multiple_of(3) {
        f.push("\\Seen");
    }
    if i.is_multiple_of(5) {
        f.push("\\Flagged");
    }
    if i.is_multiple_of(7) {
        f.push("$Label1");
    }
    f.join(" ")
}

fn date_of(i: usize) -> String {
    format!(
        "{:02}-Mar-2024 10:{:02}:{:02} +0100",
        1 + i % 28,
        i % 60,
        (i * 7) % 60
    )
}

/// Appends the 50 mails; returns the internal date the server reports for each (the
/// server may show it in its own time zone).
fn fill(stack: &Stack) -> Vec<String> {
    let mut imap = Imap::connect(stack.ports.imap);
    for i in 0..N {
        imap.append(&flags_of(i), &date_of(i), &mail(i));
    }
    let all = imap.all();
    assert_eq!(all.len(), N);
    // UIDs follow the append order
    all.values().map(|(_, date, _)| date.clone()).collect()
}

fn index_of(raw: &[u8]) -> usize {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    header(&text, "Subject")[0]
        .trim_start_matches("sweep mail ")
        .parse()
        .unwrap()
}

struct Sweep {
    state: PathBuf,
    pass: PathBuf,
    log: PathBuf,
}

impl Sweep {
    fn new(stack: &Stack) -> Sweep {
        let pass = stack.run.join("imap-password");
        std::fs::write(&pass, "secret\n").unwrap();
        Sweep {
            state: stack.run.join("imap-state.json"),
            pass,
            log: stack.run.join("imap.log"),
        }
    }

    fn command(&self, stack: &Stack, extra: &[&str]) -> Command {
        self.command_to(&format!("imap://127.0.0.1:{}", stack.ports.imap), extra)
    }

    fn command_to(&self, server: &str, extra: &[&str]) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut c = Command::new(MAILVEIL);
        c.args(["imap", "--server", server, "--user", USER])
            .arg("--password-file")
            .arg(&self.pass)
            .arg("--state")
            .arg(&self.state)
            .arg("--no-system-rules")
            .args(extra)
            .env("MAILVEIL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        c
    }

    fn run(&self, stack: &Stack) -> std::process::ExitStatus {
        self.command(stack, &[]).status().unwrap()
    }

    /// The sweep, run by this test binary in a process of its own ([`killed_sweep`]):
    /// the library's sweep with its test seam set to SIGKILL the process right after
    /// the `kill_after`th APPEND was confirmed. The `mailveil` binary has no such hook.
    fn run_killed(&self, stack: &Stack, kill_after: usize) -> std::process::ExitStatus {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let server = format!("imap://127.0.0.1:{}", stack.ports.imap);
        let args = [
            "imap".to_string(),
            "--server".into(),
            server,
            "--user".into(),
            USER.into(),
            "--password-file".into(),
            self.pass.display().to_string(),
            "--state".into(),
            self.state.display().to_string(),
            "--no-system-rules".into(),
        ];
        Command::new(std::env::current_exe().unwrap())
            .args(["killed_sweep", "--exact", "--ignored", "--nocapture"])
            .env(CHILD_ARGS, args.join("\n"))
            .env(CHILD_KILL_AFTER, kill_after.to_string())
            .env("MAILVEIL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .status()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The mailbox after a complete sweep: every mail once, trackers gone from the tracked
/// ones, plain ones untouched, flags and internal dates as they were.
fn assert_swept(
    imap: &mut Imap,
    dates: &[String],
) -> BTreeMap<u32, (Vec<String>, String, Vec<u8>)> {
    let all = imap.all();
    assert_eq!(all.len(), N, "exactly {N} mails");
    let mut seen = vec![0; N];
    for (uid, (flags, date, raw)) in &all {
        let text = String::from_utf8_lossy(raw);
        let i = index_of(raw);
        seen[i] += 1;
        let mut want_flags: Vec<String> =
            flags_of(i).split_whitespace().map(str::to_string).collect();
        want_flags.sort();
        assert_eq!(flags, &want_flags, "flags of mail {i} (uid {uid})");
        assert_eq!(date, &dates[i], "internal date of mail {i}");
        if i.is_multiple_of(2) {
            assert_eq!(text.matches("X-Mailveil: v=").count(), 1, "{text}");
            assert!(!text.contains("t.example/open.gif"), "{text}");
            assert!(text.contains(&format!("Issue {i} for you.")), "{text}");
        } else {
            assert_eq!(raw, &mail(i), "plain mail {i} is untouched");
        }
    }
    assert!(seen.iter().all(|&n| n == 1), "each mail once: {seen:?}");
    all
}

#[test]
fn sweep_cleans_fifty_mails_once_and_a_second_sweep_changes_nothing() {
    let Some(_g) = guard() else { return };
    let stack = Stack::start("");
    let dates = fill(&stack);
    let mut imap = Imap::connect(stack.ports.imap);
    let before = imap.all();
    let sweep = Sweep::new(&stack);
    let started = Instant::now();
    let st = sweep.run(&stack);
    let took = started.elapsed();
    assert!(st.success(), "{}", sweep.log());
    let after = assert_swept(&mut imap, &dates);
    // plain mails kept their UIDs (not rewritten); tracked ones are new copies
    for (uid, (_, _, raw)) in &before {
        let plain = String::from_utf8_lossy(raw).contains("text/plain");
        assert_eq!(after.contains_key(uid), plain, "uid {uid}");
    }
    let log = sweep.log();
    assert!(log.contains("cleaned=25"), "{log}");
    eprintln!(
        "IMAP: first sweep over {N} mails (25 tracked) took {:.2} s",
        took.as_secs_f64()
    );
    // second sweep: nothing to do, nothing changes
    let started = Instant::now();
    assert!(sweep.run(&stack).success(), "{}", sweep.log());
    let took2 = started.elapsed();
    assert_eq!(imap.all(), after, "second sweep changed the mailbox");
    let last = sweep.log();
    let last = last.lines().last().unwrap_or("");
    assert!(last.contains("looked_at=0"), "{last}");
    // and without the state file it still changes nothing (idempotent by content)
    std::fs::remove_file(&sweep.state).unwrap();
    assert!(sweep.run(&stack).success(), "{}", sweep.log());
    assert_eq!(
        imap.all(),
        after,
        "a sweep without state changed the mailbox"
    );
    let last = sweep.log();
    let last = last.lines().last().unwrap_or("").to_string();
    assert!(last.contains("cleaned=0"), "{last}");
    eprintln!(
        "IMAP: second sweep {:.2} s; a sweep without state found nothing to change",
        took2.as_secs_f64()
    );
}

/// The arguments of [`killed_sweep`], one a line.
const CHILD_ARGS: &str = "MAILVEIL_TEST_CHILD_ARGS";
/// After how many confirmed APPENDs [`killed_sweep`] dies.
const CHILD_KILL_AFTER: &str = "MAILVEIL_TEST_CHILD_KILL_AFTER";

/// SIGKILL, right after the APPEND the environment names: no destructor, no flush, like
/// a power cut. Only ever set by [`killed_sweep`], in a process of its own.
fn kill_after_append(appends: usize) {
    let at: usize = std::env::var(CHILD_KILL_AFTER).unwrap().parse().unwrap();
    if appends == at {
        let _ = Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status();
        std::process::abort();
    }
}

/// Not a test of its own: the process [`Sweep::run_killed`] starts (this test binary,
/// running only this), which runs `mailveil imap` through the library with the sweep's
/// test seam set.
#[test]
#[ignore = "the child process of sweep_killed_halfway_resumes_without_losing_or_doubling_mail"]
fn killed_sweep() {
    let args = std::env::var(CHILD_ARGS).expect("run by Sweep::run_killed");
    let argv = std::iter::once("mailveil").chain(args.lines());
    let cli = <mailveil::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
    let seams = mailveil::app::Seams {
        imap_after_append: Some(kill_after_append),
    };
    let code = mailveil::app::run_with(cli, seams);
    panic!("the sweep ended ({code:?}) without being killed");
}

#[test]
fn sweep_killed_halfway_resumes_without_losing_or_doubling_mail() {
    let Some(_g) = guard() else { return };
    let stack = Stack::start("");
    let dates = fill(&stack);
    let sweep = Sweep::new(&stack);
    let mut imap = Imap::connect(stack.ports.imap);
    // killed right after the 6th APPEND was confirmed, before its original was removed
    // or anything recorded: the copy and the original both exist
    let st = sweep.run_killed(&stack, 6);
    assert_eq!(st.signal(), Some(9), "{}", sweep.log());
    assert_eq!(
        imap.all().len(),
        N + 1,
        "copy appended, original not yet removed"
    );
    // again, a little further: this time mail 20 is pending, which has no Message-ID
    let st = sweep.run_killed(&stack, 5);
    assert_eq!(st.signal(), Some(9), "{}", sweep.log());
    assert_eq!(imap.all().len(), N + 1);
    // resumed to the end
    assert!(sweep.run(&stack).success(), "{}", sweep.log());
    let after = assert_swept(&mut imap, &dates);
    // both interrupted moves were finished, none appended again (one of them by the
    // Message-ID, one without)
    assert_eq!(
        sweep.log().matches("cleaned copy already there").count(),
        2,
        "{}",
        sweep.log()
    );
    // and a further run changes nothing
    assert!(sweep.run(&stack).success());
    assert_eq!(imap.all(), after);
}

#[test]
fn watch_cleans_a_mail_delivered_while_it_runs() {
    let Some(_g) = guard() else { return };
    let mut stack = Stack::start("");
    let sweep = Sweep::new(&stack);
    // the watcher talks to Dovecot through a proxy that can break its connections
    let proxy = Proxy::start(stack.ports.imap);
    let server = format!("imap://127.0.0.1:{}", proxy.port);
    let child = sweep.command_to(&server, &["--watch"]).spawn().unwrap();
    stack.mailveil = Some(child); // killed when the stack is dropped
    wait_until(Duration::from_secs(30), || {
        sweep.log().contains("idle: waiting for new mail")
    })
    .unwrap_or_else(|| panic!("not idling: {}", sweep.log()));
    let deliver = |token: &str| {
        let out = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{}", stack.ports.lmtp)])
            .args(["--protocol", "LMTP", "--helo", "client.example.org"])
            .args(["--from", "news@sender.example", "--to", USER])
            .args(["--header", &format!("Subject: {token}")])
            .args(["--header", &format!("Message-Id: <{token}@sender.example>")])
            .args(["--add-header", "MIME-Version: 1.0"])
            .args(["--add-header", "Content-Type: text/html; charset=utf-8"])
            .args([
                "--body",
                &format!("<p>Watched {token}</p><img src=\"https://t.example/open.gif?e=alice@example.test\" width=\"1\" height=\"1\">"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    // every message in INBOX carries our header and none has the tracker
    let all_cleaned = |imap: &mut Imap, n: usize| {
        let all = imap.all();
        all.len() == n
            && all.values().all(|(_, _, raw)| {
                let t = String::from_utf8_lossy(raw);
                t.contains("X-Mailveil: v=") && !t.contains("t.example/open.gif")
            })
    };
    let token = format!("watch{}", std::process::id());
    let started = Instant::now();
    deliver(&token);
    let mut imap = Imap::connect(stack.ports.imap);
    wait_until(Duration::from_secs(30), || all_cleaned(&mut imap, 1))
        .unwrap_or_else(|| panic!("not cleaned: {:?}\n{}", imap.all().len(), sweep.log()));
    let took = started.elapsed();
    let all = imap.all();
    let text = String::from_utf8_lossy(&all.values().next().unwrap().2).to_string();
    assert!(text.contains(&format!("<p>Watched {token}</p>")), "{text}");
    eprintln!(
        "IMAP --watch: delivered over LMTP -> cleaned copy in INBOX in {:.2} s",
        took.as_secs_f64()
    );
    // the connection breaks: the watcher reconnects (with backoff) and catches up
    proxy.cut();
    let started = Instant::now();
    deliver(&format!("{token}again"));
    let mut imap = Imap::connect(stack.ports.imap);
    wait_until(Duration::from_secs(60), || all_cleaned(&mut imap, 2))
        .unwrap_or_else(|| panic!("not cleaned after reconnect:\n{}", sweep.log()));
    assert!(sweep.log().contains("reconnecting in"), "{}", sweep.log());
    eprintln!(
        "IMAP --watch: after its connection was cut, the next mail was cleaned in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // still watching: the process is alive
    assert!(
        stack
            .mailveil
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
            .is_none()
    );
}

#[test]
fn since_limits_the_sweep_and_keep_originals_keeps_them() {
    let Some(_g) = guard() else { return };
    let stack = Stack::start("");
    let mut imap = Imap::connect(stack.ports.imap);
    // mails 0..4: internal dates 1..4 March 2024; 0 and 2 are tracked
    for i in 0..4 {
        imap.append(&flags_of(i), &date_of(i), &mail(i));
    }
    let sweep = Sweep::new(&stack);
    let keep = ["--keep-originals", "Originals"];
    let st = sweep
        .command(&stack, &[&keep[..], &["--since", "2024-03-03"]].concat())
        .status()
        .unwrap();
    assert!(st.success(), "{}", sweep.log());
    let tracked = |all: &BTreeMap<u32, (Vec<String>, String, Vec<u8>)>, i: usize| {
        all.values()
            .filter(|(_, _, raw)| index_of(raw) == i)
            .map(|(_, _, raw)| String::from_utf8_lossy(raw).contains("X-Mailveil: v="))
            .collect::<Vec<_>>()
    };
    let all = imap.all();
    assert_eq!(all.len(), 4);
    assert_eq!(tracked(&all, 0), [false], "before --since: left alone");
    assert_eq!(tracked(&all, 2), [true], "on/after --since: cleaned");
    // without --since the rest is done; the originals are in the keep folder
    assert!(sweep.command(&stack, &keep).status().unwrap().success());
    let all = imap.all();
    assert_eq!(all.len(), 4);
    assert_eq!(tracked(&all, 0), [true]);
    imap.cmd("SELECT Originals");
    let kept = imap.all();
    let mut kept: Vec<Vec<u8>> = kept.into_values().map(|(_, _, raw)| raw).collect();
    kept.sort();
    let mut want = vec![mail(0), mail(2)];
    want.sort();
    assert_eq!(kept, want, "the originals, byte for byte");
}

/// A TCP proxy to 127.0.0.1:`target` whose open connections can be cut at once.
struct Proxy {
    port: u16,
    conns: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let list = std::sync::Arc::clone(&conns);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                list.lock().unwrap().push(client.try_clone().unwrap());
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(std::net::Shutdown::Both);
                });
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Proxy { port, conns }
    }

    fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn a_sweep_with_report_db_records_each_mail_it_cleaned() {
    let Some(_g) = guard() else { return };
    let stack = Stack::start("");
    fill(&stack);
    let sweep = Sweep::new(&stack);
    let db = stack.run.join("reports.sqlite").display().to_string();
    let st = sweep
        .command(&stack, &["--report-db", &db, "--banner"])
        .status()
        .unwrap();
    assert!(st.success(), "{}", sweep.log());
    let out = Command::new(MAILVEIL)
        .args(["report", "--report-db", &db, "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let totals = &summary["totals"];
    // every mail the sweep looked at is recorded; the 25 tracked ones were cleaned
    assert_eq!(totals["mails"], N as i64, "{summary}");
    assert_eq!(totals["mails_cleaned"], (N / 2) as i64, "{summary}");
    assert_eq!(totals["errors"], 0, "{summary}");
    // one mail by its Message-ID: its pixel, as the sweep found it
    let out = Command::new(MAILVEIL)
        .args(["report", "--report-db", &db, "--format", "json"])
        .args(["--message-id", "sweep2@sender.example"])
        .output()
        .unwrap();
    let mails: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(mails.as_array().map(Vec::len), Some(1), "{mails}");
    assert!(mails[0]["blocked"].as_i64().unwrap() >= 1, "{mails}");
    assert_eq!(mails[0]["recipient"], USER, "{mails}");
    // the log line of each mail, the same fields as every frontend's
    let log = sweep.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" msg=mail queue_id=INBOX/"))
        .collect();
    assert_eq!(lines.len(), N, "{log}");
    assert!(lines.iter().all(|l| l.contains("frontend=imap")), "{log}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("result=\"replaced"))
            .count(),
        N / 2,
        "{log}"
    );
}
