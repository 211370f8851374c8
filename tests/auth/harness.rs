//! The real parts of the authentication tests (tests/auth.rs) and bench (benches/auth.rs):
//! a DNS server on loopback serving the test keys (tests/auth/dns_server.py, Python
//! dnslib), mails signed by a real signer (dkimpy's `dkimsign`, keys from its
//! `dknewkey`), ARC keys made by `mailveil arc-key generate`, and dkimpy as the
//! independent verifier (tests/auth/dkimpy.py). All from Debian packages installed by
//! .ci/setup: python3-dkim, python3-dnslib, python3-authres, openssl.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_mailveil");
pub const PYTHON: &str = "/usr/bin/python3";
const HERE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/auth");

/// Whether the tools are here. Without them the tests print SKIP and pass, unless
/// MAILVEIL_REQUIRE_AUTH=1 or CI is set (CI runs .ci/setup, which installs them).
pub fn available() -> bool {
    let probe = Command::new(PYTHON)
        .args(["-c", "import dkim, dnslib, dns.resolver, authres, nacl"])
        .output();
    let ok = matches!(&probe, Ok(o) if o.status.success())
        && ["/usr/bin/dkimsign", "/usr/bin/dknewkey", "/usr/bin/openssl"]
            .iter()
            .all(|p| Path::new(p).exists());
    if ok {
        return true;
    }
    let msg = "SKIP: python3-dkim, python3-dnslib, python3-authres or openssl missing \
               (run `bash .ci/setup`)";
    let required = std::env::var("MAILVEIL_REQUIRE_AUTH").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    if required {
        panic!("{msg}, and MAILVEIL_REQUIRE_AUTH=1 or CI is set");
    }
    eprintln!("{msg}");
    false
}

/// Keys made once per test binary, with the zone that publishes them.
pub struct Keys {
    pub dir: PathBuf,
    /// sel._domainkey.sender.test (RSA, dknewkey's PEM)
    pub sender_rsa: PathBuf,
    /// ed._domainkey.sender.test (Ed25519, dknewkey's base64 seed)
    pub sender_ed: PathBuf,
    /// fwd._domainkey.forwarder.test: an upstream forwarder's ARC key
    pub forwarder: PathBuf,
    /// arc1._domainkey.veil.test: our RSA ARC key (`mailveil arc-key generate`)
    pub arc_rsa: PathBuf,
    /// An Ed25519 key in PEM (`openssl genpkey`), mode 600: no ARC key.
    pub ed_pem: PathBuf,
    /// `NAME VALUE` lines for dns_server.py.
    pub zone: String,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(make_keys)
}

fn make_keys() -> Keys {
    // One directory per test binary, made anew by each run: no leftovers pile up.
    let exe = std::env::current_exe().unwrap();
    let stem = exe.file_stem().unwrap().to_string_lossy();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("auth-keys-{stem}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dknewkey = |name: &str, ktype: &str| -> String {
        let st = Command::new("/usr/bin/dknewkey")
            .args(["--ktype", ktype, name])
            .current_dir(&dir)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "dknewkey {name}");
        std::fs::read_to_string(dir.join(format!("{name}.dns"))).unwrap()
    };
    let mut zone = String::new();
    zone += &format!("sel._domainkey.sender.test {}\n", dknewkey("sender", "rsa"));
    zone += &format!(
        "ed._domainkey.sender.test {}\n",
        dknewkey("sender-ed", "ed25519")
    );
    zone += &format!(
        "fwd._domainkey.forwarder.test {}\n",
        dknewkey("forwarder", "rsa")
    );
    let out = Command::new(BIN)
        .args([
            "arc-key",
            "generate",
            "--selector",
            "arc1",
            "--domain",
            "veil.test",
            "--out",
        ])
        .arg(dir.join("arc-rsa.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    zone += &format!("arc1._domainkey.veil.test {}\n", txt_of_zone_line(&line));
    let st = Command::new("/usr/bin/openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(dir.join("ed.pem"))
        .status()
        .unwrap();
    assert!(st.success(), "openssl genpkey");
    std::fs::set_permissions(
        dir.join("ed.pem"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    Keys {
        sender_rsa: dir.join("sender.key"),
        sender_ed: dir.join("sender-ed.key"),
        forwarder: dir.join("forwarder.key"),
        arc_rsa: dir.join("arc-rsa.pem"),
        ed_pem: dir.join("ed.pem"),
        zone,
        dir,
    }
}

/// The TXT value of a zone-file line `NAME. IN TXT ( "a" "b" )`: its strings joined.
pub fn txt_of_zone_line(line: &str) -> String {
    let inner = &line[line.find('(').expect("zone line") + 1..line.rfind(')').expect("zone line")];
    inner.split('"').skip(1).step_by(2).collect()
}

/// dns_server.py on 127.0.0.1: serving `zone`, or answering nothing (`blackhole`).
pub struct Dns {
    child: Child,
    _stdin: ChildStdin,
    pub port: u16,
    log: PathBuf,
}

impl Dns {
    pub fn start(zone: &str, blackhole: bool) -> Dns {
        let dir = &keys().dir;
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let zone_file = dir.join(format!("zone-{n}"));
        let log = dir.join(format!("queries-{n}"));
        std::fs::write(&zone_file, zone).unwrap();
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new(PYTHON);
        cmd.arg(format!("{HERE}/dns_server.py"))
            .arg("--zone")
            .arg(&zone_file)
            .arg("--log")
            .arg(&log);
        if blackhole {
            cmd.arg("--blackhole");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first.trim().parse().expect("dns_server.py prints its port");
        let stdin = child.stdin.take().unwrap();
        Dns {
            child,
            _stdin: stdin,
            port,
            log,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The questions received so far, `NAME TYPE` each.
    pub fn queries(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a program with `input` on stdin; its stdout, or a panic with its stderr.
pub fn pipe(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    let out = run(cmd, input);
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn run(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// `mail` signed by dkimpy's dkimsign for sender.test (selector `sel`, RSA-SHA256, or
/// `ed`, Ed25519-SHA256).
pub fn dkimsign(mail: &[u8], ed25519: bool) -> Vec<u8> {
    let k = keys();
    let mut cmd = Command::new("/usr/bin/dkimsign");
    if ed25519 {
        cmd.args(["--signalg", "ed25519-sha256", "ed", "sender.test"])
            .arg(&k.sender_ed);
    } else {
        cmd.args(["sel", "sender.test"]).arg(&k.sender_rsa);
    }
    pipe(&mut cmd, mail)
}

/// dkimpy (tests/auth/dkimpy.py) with its lookups sent to `dns`.
pub fn dkimpy(dns: &Dns, args: &[&str], mail: &[u8]) -> String {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(format!("{HERE}/dkimpy.py"))
        .arg(dns.port.to_string())
        .args(args);
    String::from_utf8(pipe(&mut cmd, mail)).unwrap()
}

/// A newsletter with a tracking pixel (cleaning changes it), CRLF line ends.
pub fn newsletter() -> Vec<u8> {
    crlf(
        "From: News <news@sender.test>\n\
         To: reader@example.org\n\
         Subject: Weekly news\n\
         Date: Mon, 1 Jan 2024 10:00:00 +0000\n\
         Message-ID: <weekly-1@sender.test>\n\
         MIME-Version: 1.0\n\
         Content-Type: text/html; charset=utf-8\n\
         \n\
         <p>This week: nothing happened.</p>\n\
         <img src=\"https://t.sender.test/open.gif?e=reader@example.org\" width=\"1\" height=\"1\">\n",
    )
}

/// A plain note with nothing to clean, CRLF line ends.
pub fn note() -> Vec<u8> {
    crlf(
        "From: Ann <ann@sender.test>\n\
         To: reader@example.org\n\
         Subject: Lunch\n\
         Date: Mon, 1 Jan 2024 11:00:00 +0000\n\
         Message-ID: <lunch-1@sender.test>\n\
         \n\
         Noon at the usual place?\n",
    )
}

pub fn crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n").into_bytes()
}

/// The header block of a mail, unfolded, one field a line.
pub fn header_fields(mail: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(mail).replace("\r\n", "\n");
    let head = text.split("\n\n").next().unwrap_or_default();
    let mut fields: Vec<String> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.push(' ');
                last.push_str(line.trim_start());
            }
        } else {
            fields.push(line.to_string());
        }
    }
    fields
}

/// The unfolded fields named `name`.
pub fn fields_named(mail: &[u8], name: &str) -> Vec<String> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    header_fields(mail)
        .into_iter()
        .filter(|f| f.to_ascii_lowercase().starts_with(&prefix))
        .collect()
}

/// A `mailveil filter` command with authentication on, asking `dns`.
pub fn filter_cmd(dns: &Dns, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "filter",
        "--no-system-rules",
        "--recipient",
        "reader@example.org",
    ])
    .args(["--authenticate", "--dns-resolver", &dns.addr()])
    .args(["--auth-serv-id", "mx.example.org"])
    .args(extra);
    cmd
}

/// The ARC flags for our RSA key.
pub fn arc_flags() -> Vec<String> {
    let k = keys();
    vec![
        "--arc-key".into(),
        k.arc_rsa.display().to_string(),
        "--arc-selector".into(),
        "arc1".into(),
        "--arc-domain".into(),
        "veil.test".into(),
    ]
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
