//! Starts the real parts for one test: a private Postfix and Dovecot (via the scripts
//! next to this file) on free 127.0.0.1 ports, state in a fresh /tmp directory, and the
//! real `mailveil` binary. Everything is stopped when the `Stack` is dropped. A test
//! file that includes it includes tests/support too (`mod support;`).
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const MAILVEIL: &str = env!("CARGO_BIN_EXE_mailveil");
const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mailstack");

/// One stack at a time: the load test wants both cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Whether the mail stack can run here. `None`: skip (message printed). With
/// `MAILVEIL_REQUIRE_MAILSTACK=1` a missing part is a failure instead.
pub fn guard() -> Option<MutexGuard<'static, ()>> {
    let mut missing = Vec::new();
    for bin in [
        "/usr/sbin/postfix",
        "/usr/sbin/postqueue",
        "/usr/sbin/smtp-source",
        "/usr/sbin/dovecot",
        "/usr/lib/dovecot/lmtp",
        "/usr/lib/dovecot/imap",
        "/usr/bin/swaks",
    ] {
        if !Path::new(bin).exists() {
            missing.push(bin.to_string());
        }
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        missing.push("root (postfix -c / dovecot -c need it)".into());
    }
    if !missing.is_empty() {
        let msg = format!(
            "mail stack not available (missing: {}); install with tests/mailstack/ci.sh",
            missing.join(", ")
        );
        if std::env::var("MAILVEIL_REQUIRE_MAILSTACK").as_deref() == Ok("1") {
            panic!("{msg} -- MAILVEIL_REQUIRE_MAILSTACK=1");
        }
        // Straight to fd 2, past the test harness's output capture, so the skip shows.
        let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {msg}");
        return None;
    }
    Some(ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner()))
}

#[allow(unused_imports)]
pub use crate::support::{free_port, wait_until};

/// `N` different free ports (`free_port` never returns one twice in a process).
fn distinct_free_ports<const N: usize>() -> [u16; N] {
    std::array::from_fn(|_| free_port())
}

#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub inbound: u16,
    pub reinject: u16,
    pub filter: u16,
    pub lmtp: u16,
    pub imap: u16,
}

pub struct Stack {
    pub run: PathBuf,
    pub ports: Ports,
    pub mailveil: Option<Child>,
    content_filter: String,
    milters: String,
    /// More environment for the harness scripts (their env knobs).
    extra_env: Vec<(String, String)>,
}

impl Stack {
    /// Dovecot, then Postfix with `content_filter` (`{filter}` is replaced by the
    /// filter port; "" = none).
    pub fn start(content_filter: &str) -> Stack {
        Stack::start_with(content_filter, "")
    }

    /// Like [`Stack::start`], with `smtpd_milters` on the inbound smtpd (`{milter}` is
    /// replaced by the `filter` port, where the test starts its milter).
    ///
    /// Ports are picked free and released before the daemons bind them, so a test
    /// running beside this one can take one in between: on "already in use" the stack
    /// is torn down and started again on new ports (three tries).
    pub fn start_with(content_filter: &str, milters: &str) -> Stack {
        Stack::start_env(content_filter, milters, &[])
    }

    /// Like [`Stack::start_with`], with more environment for the scripts (e.g.
    /// `PF_ALIAS_REGEXP`, `PF_REINJECT_DEBUG`: see postfix-up.sh).
    pub fn start_env(content_filter: &str, milters: &str, env: &[(&str, &str)]) -> Stack {
        for attempt in 1.. {
            let run = tempfile::Builder::new()
                .prefix("mvstack")
                .tempdir_in("/tmp")
                .unwrap()
                .keep();
            fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();
            let [inbound, reinject, filter, lmtp, imap] = distinct_free_ports();
            let ports = Ports {
                inbound,
                reinject,
                filter,
                lmtp,
                imap,
            };
            let stack = Stack {
                run,
                ports,
                mailveil: None,
                content_filter: content_filter.replace("{filter}", &ports.filter.to_string()),
                milters: milters.replace("{milter}", &ports.filter.to_string()),
                extra_env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            let raced = ["dovecot-up.sh", "postfix-up.sh"].iter().any(|name| {
                let out = stack.try_script(name);
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                if out.status.success() {
                    return false;
                }
                assert!(
                    attempt < 3 && text.contains("already in use"),
                    "{name} failed:\n{text}"
                );
                true
            });
            if !raced {
                return stack;
            }
            drop(stack); // all-down.sh, then new ports
        }
        unreachable!()
    }

    fn env(&self, cmd: &mut Command) {
        let p = self.ports;
        cmd.env("HARNESS_RUN", &self.run)
            .env("PF_PORT", p.inbound.to_string())
            .env("PF_REINJECT", p.reinject.to_string())
            .env("FILTER_PORT", p.filter.to_string())
            .env("LMTP_PORT", p.lmtp.to_string())
            .env("IMAP_PORT", p.imap.to_string())
            .env("CONTENT_FILTER", &self.content_filter)
            .env("PF_MILTERS", &self.milters);
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
    }

    /// Runs a harness script and returns its output, whatever its status.
    fn try_script(&self, name: &str) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg(format!("{SCRIPTS}/{name}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.env(&mut cmd);
        cmd.output().unwrap()
    }

    /// Runs a harness script; panics with its output on failure.
    pub fn script(&self, name: &str) -> Output {
        let out = self.try_script(name);
        assert!(
            out.status.success(),
            "{name} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The LMTP unix socket of the private Dovecot.
    pub fn lmtp_socket(&self) -> PathBuf {
        self.run.join("dovecot/base/lmtp")
    }

    /// Starts `mailveil serve --listen 127.0.0.1:<port> --downstream <downstream>` plus
    /// `extra`, logging to `$run/mailveil.log`, and waits until it accepts connections.
    pub fn start_mailveil(&mut self, port: u16, downstream: &str, extra: &[&str]) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run.join("mailveil.log"))
            .unwrap();
        writeln!(&log, "--- mailveil started ---").unwrap();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(MAILVEIL)
            .args(["serve", "--listen", &listen, "--downstream", downstream])
            .arg("--no-system-rules")
            .args(extra)
            .env("MAILVEIL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.mailveil = Some(child);
        wait_until(Duration::from_secs(20), || self.listens_on(port)).unwrap_or_else(|| {
            panic!(
                "mailveil did not listen on {listen}: {}",
                self.mailveil_log()
            )
        });
    }

    /// Starts `mailveil ARGS...` logging to `$run/mailveil.log` (as the stack's mailveil,
    /// stopped on drop), and waits until `port` on 127.0.0.1 accepts connections.
    pub fn start_mailveil_args(&mut self, args: &[&str], port: u16) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.run.join("mailveil.log"))
            .unwrap();
        writeln!(&log, "--- mailveil started ---").unwrap();
        let child = Command::new(MAILVEIL)
            .args(args)
            .env("MAILVEIL_LOG", "info")
            // the milter's spool directory goes with the run directory
            .env("TMPDIR", &self.run)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.mailveil = Some(child);
        wait_until(Duration::from_secs(20), || self.listens_on(port)).unwrap_or_else(|| {
            panic!("mailveil did not listen on {port}: {}", self.mailveil_log())
        });
    }

    /// Whether the stack's mailveil listens on `port`: it said so since it started, and
    /// the port answers (a port that merely answers may be another test's server).
    fn listens_on(&self, port: u16) -> bool {
        let log = self.mailveil_log();
        let ours = log.rsplit("mailveil started").next().unwrap_or("");
        ours.lines()
            .any(|l| l.contains("listening") && l.contains(&format!("127.0.0.1:{port}")))
            && TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    /// SIGKILL (no chance to answer anything).
    pub fn kill_mailveil(&mut self) {
        if let Some(mut c) = self.mailveil.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop_mailveil(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.mailveil.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn mailveil_log(&self) -> String {
        fs::read_to_string(self.run.join("mailveil.log")).unwrap_or_default()
    }

    pub fn postfix_log(&self) -> String {
        fs::read_to_string(self.run.join("postfix/maillog")).unwrap_or_default()
    }

    /// Files in a user's Maildir (new and cur).
    pub fn maildir(&self, user: &str) -> Vec<PathBuf> {
        let base = self
            .run
            .join("mail/example.test")
            .join(user)
            .join("Maildir");
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = fs::read_dir(base.join(sub)) {
                files.extend(rd.filter_map(Result::ok).map(|e| e.path()));
            }
        }
        files.sort();
        files
    }

    /// Waits until `user` has at least `n` messages; returns them.
    pub fn wait_mail(&self, user: &str, n: usize, timeout: Duration) -> Vec<String> {
        wait_until(timeout, || self.maildir(user).len() >= n).unwrap_or_else(|| {
            panic!(
                "{user}: {} of {n} messages after {timeout:?}\n--- postfix:\n{}\n--- mailveil:\n{}",
                self.maildir(user).len(),
                tail(&self.postfix_log(), 30),
                tail(&self.mailveil_log(), 30)
            )
        });
        self.maildir(user)
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .collect()
    }

    /// `postqueue -c <conf> <arg>` output.
    pub fn postqueue(&self, arg: &str) -> String {
        let out = Command::new("postqueue")
            .arg("-c")
            .arg(self.run.join("postfix/etc"))
            .arg(arg)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Number of mails in the Postfix queue.
    pub fn queued(&self) -> usize {
        let out = self.postqueue("-p");
        if out.contains("Mail queue is empty") {
            return 0;
        }
        out.lines()
            .filter(|l| {
                l.split_whitespace().next().is_some_and(|w| {
                    w.len() >= 8
                        && w.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '!')
                }) && l.contains('@')
            })
            .count()
    }

    /// swaks against `port`; returns (success, transcript).
    pub fn swaks(&self, port: u16, args: &[&str]) -> (bool, String) {
        let out = Command::new("swaks")
            .args(["--server", &format!("127.0.0.1:{port}")])
            .args(["--helo", "client.example.org", "--timeout", "30"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill_mailveil();
        let mut cmd = Command::new("bash");
        cmd.arg(format!("{SCRIPTS}/all-down.sh"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.env(&mut cmd);
        let _ = cmd.status();
        if std::env::var("MAILVEIL_KEEP_STACK").as_deref() == Ok("1") {
            eprintln!("stack state kept in {}", self.run.display());
        } else {
            let _ = fs::remove_dir_all(&self.run);
        }
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The values of a header (unfolded) in a message.
pub fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    let head = msg.split("\n\n").next().unwrap_or("");
    head.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .collect()
}

/// A minimal IMAP client: log in, select INBOX, fetch every message whose header
/// contains `needle`; returns their full text.
pub fn imap_fetch(port: u16, user: &str, pass: &str, needle: &str) -> Vec<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("* OK"), "{line}");
    let mut run = |tag: &str, cmd: &str| -> Vec<u8> {
        write!(w, "{tag} {cmd}\r\n").unwrap();
        let mut out = Vec::new();
        loop {
            let mut l = Vec::new();
            r.read_until(b'\n', &mut l).unwrap();
            assert!(!l.is_empty(), "IMAP connection closed");
            // literals: {N}\r\n followed by N bytes
            if let Some(n) = l
                .strip_suffix(b"}\r\n")
                .and_then(|s| s.iter().rposition(|&b| b == b'{').map(|i| &s[i + 1..]))
                .and_then(|d| std::str::from_utf8(d).ok()?.parse::<usize>().ok())
            {
                out.extend_from_slice(&l);
                let mut lit = vec![0; n];
                r.read_exact(&mut lit).unwrap();
                out.extend_from_slice(&lit);
                continue;
            }
            let done = l.starts_with(format!("{tag} ").as_bytes());
            out.extend_from_slice(&l);
            if done {
                let text = String::from_utf8_lossy(&l);
                assert!(text.contains(" OK"), "IMAP {cmd}: {text}");
                return out;
            }
        }
    };
    run("a1", &format!("LOGIN {user} {pass}"));
    run("a2", "SELECT INBOX");
    let search =
        String::from_utf8_lossy(&run("a3", &format!("SEARCH TEXT \"{needle}\""))).to_string();
    let ids: Vec<String> = search
        .lines()
        .filter(|l| l.starts_with("* SEARCH"))
        .flat_map(|l| {
            l.split_whitespace()
                .skip(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut msgs = Vec::new();
    for id in ids {
        let raw = run("a4", &format!("FETCH {id} BODY.PEEK[]"));
        msgs.push(String::from_utf8_lossy(&raw).to_string());
    }
    run("a5", "LOGOUT");
    msgs
}
