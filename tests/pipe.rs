//! Pipe mode with the real delivery agents: the README's procmail, maildrop and Dovecot
//! sieve snippets, run as written (only the paths are pointed at this build), deliver the
//! newsletter fixture cleaned into a Maildir.
//!
//! Needs procmail, maildrop, dovecot-lmtpd and dovecot-sieve (`bash .ci/setup`). Without
//! them each test prints SKIP and passes, unless MAILVEIL_REQUIRE_PIPE=1 (CI).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mailveil");
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/newsletter.eml");

/// The code block that follows `<!-- snippet:NAME -->` in the README.
fn snippet(name: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let marker = format!("<!-- snippet:{name} -->");
    let after = &readme[readme
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in README"))
        + marker.len()..];
    let start = after.find("```").unwrap();
    let body = &after[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

fn available(programs: &[&str]) -> bool {
    let missing: Vec<&&str> = programs.iter().filter(|p| !Path::new(p).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("SKIP: {missing:?} not installed (run `bash .ci/setup`)");
    if std::env::var("MAILVEIL_REQUIRE_PIPE").is_ok_and(|v| v == "1") {
        panic!("{msg}, and MAILVEIL_REQUIRE_PIPE=1");
    }
    eprintln!("{msg}");
    false
}

/// A fresh directory that the unprivileged delivery user can traverse.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailveil-pipe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn maildir(root: &Path) -> PathBuf {
    let md = root.join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    md
}

/// The one message delivered into `maildir/new` (waits up to 10 s).
fn delivered(maildir: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let files: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        if files.len() == 1 {
            return String::from_utf8(std::fs::read(&files[0]).unwrap()).unwrap();
        }
        assert!(
            files.len() < 2,
            "more than one message delivered: {files:?}"
        );
        assert!(
            Instant::now() < deadline,
            "nothing delivered into {}",
            maildir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The delivered mail is the fixture, cleaned: header on top, trackers gone, content and
/// the text part kept.
fn assert_cleaned(mail: &str) {
    let fixture = std::fs::read_to_string(FIXTURE)
        .unwrap()
        .replace("\r\n", "\n");
    let mail = mail.replace("\r\n", "\n");
    assert!(
        mail.contains("X-Mailveil: v="),
        "no report header:\n{}",
        &mail[..mail.len().min(600)]
    );
    assert!(
        mail.contains("trackers=Email on Acid,Mailchimp,"),
        "{}",
        &mail[..600.min(mail.len())]
    );
    assert!(
        !mail.contains("track/open.php"),
        "the Mailchimp pixel was delivered"
    );
    assert!(
        !mail.contains("eoapxl.com"),
        "the Email on Acid beacon was delivered"
    );
    assert!(
        mail.contains("img/tomatoes.jpg"),
        "a content image was lost"
    );
    let text_part = &fixture[fixture
        .find("--_----------=_MCPart_2081534766\nContent-Type: text/plain")
        .unwrap()..];
    let text_part = &text_part[..text_part
        .find("\n--_----------=_MCPart_2081534766\nContent-Type: text/html")
        .unwrap()];
    assert!(mail.contains(text_part), "the text part changed");
}

#[test]
fn procmail_snippet_delivers_the_cleaned_mail() {
    if !available(&["/usr/bin/procmail"]) {
        return;
    }
    let home = scratch("procmail");
    let md = maildir(&home);
    let rc = home.join("procmailrc");
    let recipe = snippet("procmail").replace("/usr/local/bin/mailveil", BIN);
    std::fs::write(
        &rc,
        format!(
            "MAILDIR={0}/\nDEFAULT={0}/\nLOGFILE={1}/procmail.log\n{recipe}",
            md.display(),
            home.display()
        ),
    )
    .unwrap();
    let mut child = Command::new("/usr/bin/procmail")
        .arg("-m")
        .arg(&rc)
        .env_clear()
        .env("HOME", &home)
        .env("LOGNAME", "you")
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(FIXTURE).unwrap())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "procmail failed: {}",
        std::fs::read_to_string(home.join("procmail.log")).unwrap_or_default()
    );
    assert_cleaned(&delivered(&md));
}

#[test]
fn maildrop_snippet_delivers_the_cleaned_mail() {
    if !available(&["/usr/bin/maildrop"]) {
        return;
    }
    let home = scratch("maildrop");
    let md = maildir(&home);
    let filter = home.join("mailfilter");
    let rule = snippet("maildrop").replace("/usr/local/bin/mailveil", BIN);
    std::fs::write(&filter, format!("{rule}to \"{}/\"\n", md.display())).unwrap();
    std::fs::set_permissions(&filter, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut child = Command::new("/usr/bin/maildrop")
        .arg(&filter)
        .env("HOME", &home)
        .env("LOGNAME", "you")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(FIXTURE).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "maildrop failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_cleaned(&delivered(&md));
}

/// A private Dovecot LMTP on a unix socket, with the README's sieve configuration.
struct Dovecot {
    child: std::process::Child,
    dir: PathBuf,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_dovecot(dir: &Path) -> Dovecot {
    let (vuid, vgid) = ids("vmail");
    let sieve_dir = dir.join("sieve");
    let bin_dir = dir.join("sieve-filter");
    for d in [&sieve_dir, &bin_dir, &dir.join("base"), &dir.join("state")] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::symlink(BIN, bin_dir.join("mailveil")).unwrap();
    std::fs::write(sieve_dir.join("mailveil.sieve"), snippet("sieve")).unwrap();
    let mail_root = dir.join("mail");
    std::fs::create_dir_all(&mail_root).unwrap();
    chown(&mail_root, vuid, vgid);
    std::fs::write(dir.join("users"), "you@example.org:{PLAIN}secret::::::\n").unwrap();
    let sieve_conf = snippet("dovecot-conf")
        .replace(
            "/etc/dovecot/sieve/mailveil.sieve",
            &sieve_dir.join("mailveil.sieve").display().to_string(),
        )
        .replace("/etc/dovecot/sieve-filter", &bin_dir.display().to_string());
    let conf = format!(
        "base_dir = {d}/base\nstate_dir = {d}/state\ninstance_name = mailveil-pipe-test\nlog_path = {d}/dovecot.log\n\
         protocols = lmtp\nlisten = 127.0.0.1\nssl = no\nfirst_valid_uid = {vuid}\nfirst_valid_gid = {vgid}\n\
         mail_location = maildir:~/Maildir\nnamespace inbox {{\n  inbox = yes\n}}\n\
         passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/users\n}}\n\
         userdb {{\n  driver = passwd-file\n  args = username_format=%u {d}/users\n  default_fields = uid={vuid} gid={vgid} home={m}/%n\n}}\n\
         service lmtp {{\n  unix_listener lmtp {{\n    mode = 0666\n  }}\n}}\n\
         protocol lmtp {{\n  postmaster_address = postmaster@example.org\n}}\n{sieve_conf}",
        d = dir.display(),
        m = mail_root.display(),
    );
    let conf_path = dir.join("dovecot.conf");
    std::fs::write(&conf_path, conf).unwrap();
    // As the README says: compile the global script once (the delivery user cannot).
    let sievec = Command::new("/usr/bin/sievec")
        .arg("-c")
        .arg(&conf_path)
        .arg(sieve_dir.join("mailveil.sieve"))
        .output()
        .unwrap();
    assert!(
        sievec.status.success(),
        "sievec: {}",
        String::from_utf8_lossy(&sievec.stderr)
    );
    let log = std::fs::File::create(dir.join("stdio.log")).unwrap();
    let child = Command::new("/usr/sbin/dovecot")
        .args(["-F", "-c"])
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let dovecot = Dovecot {
        child,
        dir: dir.to_path_buf(),
    };
    let socket = dir.join("base/lmtp");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "dovecot did not start: {}",
            std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    dovecot
}

fn ids(user: &str) -> (u32, u32) {
    let out = Command::new("id").arg("-u").arg(user).output().unwrap();
    let uid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no user {user}: run `bash .ci/setup`"));
    let out = Command::new("id").arg("-g").arg(user).output().unwrap();
    (
        uid,
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap(),
    )
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// Delivers a message over LMTP and returns the reply to the final dot.
fn lmtp_deliver(socket: &Path, rcpt: &str, message: &[u8]) -> String {
    let stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    };
    assert!(reply().starts_with("220"));
    for cmd in [
        "LHLO test.example\r\n".to_string(),
        "MAIL FROM:<hello@gardenletter.example>\r\n".into(),
        format!("RCPT TO:<{rcpt}>\r\n"),
        "DATA\r\n".into(),
    ] {
        writer.write_all(cmd.as_bytes()).unwrap();
        let r = reply();
        assert!(r.starts_with('2') || r.starts_with('3'), "{cmd:?} -> {r}");
    }
    let text = String::from_utf8_lossy(message)
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    for line in text.split_inclusive("\r\n") {
        if line.starts_with('.') {
            writer.write_all(b".").unwrap();
        }
        writer.write_all(line.as_bytes()).unwrap();
    }
    writer.write_all(b".\r\nQUIT\r\n").unwrap();
    reply()
}

#[test]
fn dovecot_sieve_snippet_delivers_the_cleaned_mail() {
    if !available(&[
        "/usr/sbin/dovecot",
        "/usr/lib/dovecot/lmtp",
        "/usr/lib/dovecot/modules/sieve/lib90_sieve_extprograms_plugin.so",
        "/usr/bin/sievec",
    ]) {
        return;
    }
    let dir = scratch("sieve");
    let dovecot = start_dovecot(&dir);
    let reply = lmtp_deliver(
        &dir.join("base/lmtp"),
        "you@example.org",
        &std::fs::read(FIXTURE).unwrap(),
    );
    assert!(
        reply.starts_with("250"),
        "LMTP: {reply}\n{}",
        std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
    );
    let md = dir.join("mail/you/Maildir");
    let mail = delivered(&md);
    let log = std::fs::read_to_string(dovecot.dir.join("dovecot.log")).unwrap_or_default();
    assert!(
        mail.contains("X-Mailveil"),
        "sieve did not run the filter:\n{log}"
    );
    assert!(!log.contains("Error"), "dovecot logged errors:\n{log}");
    assert_cleaned(&mail);
}
