//! `mailveil` as a process: started with its log in a file of its own, waited for until
//! it listens, killed when dropped.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const MAILVEIL: &str = env!("CARGO_BIN_EXE_mailveil");

/// A running `mailveil`: its log (stderr) in a file, a scratch directory of its own
/// (its `TMPDIR`: the milter's spool goes there); killed when dropped.
pub struct Daemon {
    child: Child,
    log: tempfile::NamedTempFile,
    /// Its scratch directory (configuration files, keys, databases of the test).
    pub dir: tempfile::TempDir,
}

impl Daemon {
    /// `mailveil ARGS...` with `MAILVEIL_LOG=info`, waited for until every port of
    /// `listens` accepts connections.
    pub fn start(args: &[String], listens: &[u16]) -> Daemon {
        Daemon::start_in(tempfile::tempdir().unwrap(), args, &[], listens)
    }

    /// [`Daemon::start`] with a scratch directory the caller filled already, and more
    /// environment.
    pub fn start_in(
        dir: tempfile::TempDir,
        args: &[String],
        env: &[(&str, &std::ffi::OsStr)],
        listens: &[u16],
    ) -> Daemon {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(MAILVEIL)
            .args(args)
            .env("MAILVEIL_LOG", "info")
            .env("TMPDIR", dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon { child, log, dir };
        for &port in listens {
            let started = Instant::now();
            while !d.listens_on(port) {
                if let Ok(Some(st)) = d.child.try_wait() {
                    panic!("mailveil exited ({st}) before listening:\n{}", d.log());
                }
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "mailveil not listening on {port}:\n{}",
                    d.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        d
    }

    /// Whether this process listens on `port`: it said so (a free port is picked before
    /// the process binds it, and another test's server may take it in between: a port
    /// that merely answers may be someone else's), and the port answers.
    fn listens_on(&self, port: u16) -> bool {
        let log = self.log();
        let said = log
            .lines()
            .any(|l| l.contains("listening") && l.contains(&format!("127.0.0.1:{port}")));
        said && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, and its exit status (see [`Daemon::wait`]).
    pub fn stop(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait()
    }

    /// Its exit status, once it exits; killed (and the test failed) after 30 s.
    pub fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("mailveil still running after 30 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mailveil serve` on `port` in front of `downstream`, no system rules, and `extra`.
pub fn serve(port: u16, downstream: &str, extra: &[&str]) -> Daemon {
    let mut args: Vec<String> = ["serve", "--no-system-rules", "--listen"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(format!("127.0.0.1:{port}"));
    args.push("--downstream".into());
    args.push(downstream.into());
    args.extend(extra.iter().map(|s| s.to_string()));
    Daemon::start(&args, &[port])
}

/// `mailveil milter` on `inet:127.0.0.1:PORT`, no system rules, and `extra`.
pub fn milter(port: u16, extra: &[&str]) -> Daemon {
    let mut args: Vec<String> = ["milter", "--no-system-rules", "--listen"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(format!("inet:127.0.0.1:{port}"));
    args.extend(extra.iter().map(|s| s.to_string()));
    Daemon::start(&args, &[port])
}
