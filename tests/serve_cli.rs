//! `mailveil serve` as a process, without the mail stack: config check, access control,
//! STARTTLS, graceful shutdown on SIGTERM. Runs everywhere (loopback only).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const MAILVEIL: &str = env!("CARGO_BIN_EXE_mailveil");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(args: &[&str], port: u16) -> Serve {
    let child = Command::new(MAILVEIL)
        .arg("serve")
        .arg("--no-system-rules")
        .args(args)
        .env("MAILVEIL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "not listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    Serve(child)
}

/// A downstream that accepts everything (SMTP), counting delivered messages.
fn fake_downstream() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let delivered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&delivered);
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let _ = w.write_all(b"220 fake\r\n");
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    let cmd = line.trim_end().to_ascii_uppercase();
                    line.clear();
                    let reply: &[u8] = if cmd.starts_with("EHLO") {
                        b"250-fake\r\n250 8BITMIME\r\n"
                    } else if cmd == "DATA" {
                        let _ = w.write_all(b"354 go\r\n");
                        let mut l = String::new();
                        while r.read_line(&mut l).unwrap_or(0) > 0 && l != ".\r\n" {
                            l.clear();
                        }
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        b"250 2.0.0 queued\r\n"
                    } else if cmd == "QUIT" {
                        let _ = w.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 2.0.0 Ok\r\n"
                    };
                    let _ = w.write_all(reply);
                }
            });
        }
    });
    (port, delivered)
}

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client {
            w: s.try_clone().unwrap(),
            r: BufReader::new(s),
        }
    }
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }
    fn cmd(&mut self, c: &str) -> String {
        self.w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        self.reply()
    }
}

fn check(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailveil.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(MAILVEIL)
        .args(["serve", "--check", "--no-system-rules", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_validates_the_config() {
    let good = format!(
        "listen = \"127.0.0.1:10025\"\ndownstream = \"smtp://127.0.0.1:10026\"\nallowed_networks = [\"127.0.0.0/8\"]\nmax_message_bytes = 1000000\non_error = \"tempfail\"\n[tls]\ncert = \"{FIXTURES}/cert.pem\"\nkey = \"{FIXTURES}/key.pem\"\n"
    );
    let (ok, out) = check(&good);
    assert!(ok, "{out}");
    let shipped = include_str!("../contrib/mailveil.toml");
    let (ok, out) = check(shipped);
    assert!(ok, "contrib/mailveil.toml: {out}");
    assert!(out.contains("ok: listen 127.0.0.1:10025 -> smtp://127.0.0.1:10026"));
    let (ok, out) =
        check("listen = \"127.0.0.1:10025\"\ndownstream = \"smtp://127.0.0.1:1\"\nlisten_on = 1\n");
    assert!(!ok);
    assert!(out.contains("unknown field"), "{out}");
    let (ok, out) =
        check("listen = \"127.0.0.1:10025\"\ndownstream = \"smtp://mail.example.org:25\"\n");
    assert!(!ok, "{out}");
    let (ok, out) = check(
        "listen = \"127.0.0.1:1\"\ndownstream = \"lmtp:unix:/x\"\n[tls]\ncert = \"/nonexistent.pem\"\nkey = \"/nonexistent.pem\"\n",
    );
    assert!(!ok);
    assert!(out.contains("TLS certificate"), "{out}");
}

#[test]
fn client_outside_the_allowed_networks_is_refused() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _s = serve(
        &[
            "--listen",
            &listen,
            "--downstream",
            "smtp://127.0.0.1:9",
            "--allow",
            "127.0.0.2/32",
        ],
        port,
    );
    let mut c = Client::connect(port);
    let greeting = c.reply();
    assert!(greeting.starts_with("554 5.7.1"), "{greeting}");
    let mut rest = String::new();
    let _ = c.r.read_to_string(&mut rest);
    assert!(rest.is_empty(), "closed after the refusal");
}

#[test]
fn sigterm_finishes_the_mail_in_flight_and_accepts_no_new_connection() {
    let (down, delivered) = fake_downstream();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let downstream = format!("smtp://127.0.0.1:{down}");
    let mut s = serve(&["--listen", &listen, "--downstream", &downstream], port);
    let mut c = Client::connect(port);
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@b.example>").starts_with("250"));
    Command::new("kill")
        .args(["-TERM", &s.0.id().to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no new connections after SIGTERM"
    );
    assert!(c.cmd("RCPT TO:<c@d.example>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let done = c.cmd("Subject: in flight\r\n\r\nbody\r\n.");
    assert!(done.starts_with("250"), "{done}");
    assert_eq!(delivered.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(c.reply().starts_with("421 4.3.2"));
    let started = Instant::now();
    let status = loop {
        if let Some(st) = s.0.try_wait().unwrap() {
            break st;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
}

#[tokio::test]
async fn starttls_with_the_configured_certificate() {
    let (down, _) = fake_downstream();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailveil.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndownstream = \"smtp://127.0.0.1:{down}\"\n[tls]\ncert = \"{FIXTURES}/cert.pem\"\nkey = \"{FIXTURES}/key.pem\"\n"
        ),
    )
    .unwrap();
    let _s = serve(&["--config", config.to_str().unwrap()], port);

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut plain = tokio::io::BufReader::new(tcp);
    let ehlo = async_cmd(&mut plain, None).await;
    assert!(ehlo.starts_with("220"));
    let ehlo = async_cmd(&mut plain, Some("EHLO client.test")).await;
    assert!(
        ehlo.contains("250 STARTTLS") || ehlo.contains("250-STARTTLS"),
        "{ehlo}"
    );
    assert!(
        async_cmd(&mut plain, Some("STARTTLS"))
            .await
            .starts_with("220")
    );

    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for cert in
        rustls_pki_types::CertificateDer::pem_file_iter(Path::new(FIXTURES).join("cert.pem"))
            .unwrap()
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, plain.into_inner()).await.unwrap();
    let mut tls = tokio::io::BufReader::new(tls);
    let ehlo = async_cmd(&mut tls, Some("EHLO client.test")).await;
    assert!(ehlo.starts_with("250-"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "not offered twice: {ehlo}");
    assert!(
        async_cmd(&mut tls, Some("MAIL FROM:<a@b.example>"))
            .await
            .starts_with("250")
    );
    assert!(async_cmd(&mut tls, Some("QUIT")).await.starts_with("221"));
}

async fn async_cmd<S>(s: &mut tokio::io::BufReader<S>, cmd: Option<&str>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Some(c) = cmd {
        s.get_mut()
            .write_all(format!("{c}\r\n").as_bytes())
            .await
            .unwrap();
    }
    let mut all = String::new();
    loop {
        let mut l = String::new();
        let n = tokio::time::timeout(Duration::from_secs(20), s.read_line(&mut l))
            .await
            .unwrap()
            .unwrap();
        all.push_str(&l);
        if n == 0 || l.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

#[test]
fn sessions_over_the_limit_get_421() {
    let (down, _) = fake_downstream();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailveil.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{port}\"\ndownstream = \"smtp://127.0.0.1:{down}\"\nmax_sessions = 1\n"),
    )
    .unwrap();
    let _s = serve(&["--config", config.to_str().unwrap()], port);
    // the readiness probe's session ends on its own
    std::thread::sleep(Duration::from_millis(300));
    let mut first = Client::connect(port);
    assert!(first.reply().starts_with("220"));
    let mut second = Client::connect(port);
    assert!(second.reply().starts_with("421 4.3.2"));
    assert!(first.cmd("QUIT").starts_with("221"));
    std::thread::sleep(Duration::from_millis(300));
    let mut third = Client::connect(port);
    assert!(third.reply().starts_with("220"), "a freed slot is reused");
}
