//! `mailveil serve` as a process, without the mail stack: config check, access control,
//! STARTTLS, graceful shutdown on SIGTERM. Runs everywhere (loopback only).

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use support::{Client, Daemon, MAILVEIL, Sink, free_port};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

/// `mailveil serve --no-system-rules ARGS...`, once it listens on `port`.
fn serve(args: &[&str], port: u16) -> Daemon {
    let mut all = vec!["serve".to_string(), "--no-system-rules".to_string()];
    all.extend(args.iter().map(|s| s.to_string()));
    Daemon::start(&all, &[port])
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
    let sink = Sink::start();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let downstream = sink.url();
    let mut s = serve(&["--listen", &listen, "--downstream", &downstream], port);
    let mut c = Client::connect(port);
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO client.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@b.example>").starts_with("250"));
    Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
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
    assert_eq!(sink.count(), 1);
    assert!(c.reply().starts_with("421 4.3.2"));
    assert!(s.wait().success());
}

#[tokio::test]
async fn starttls_with_the_configured_certificate() {
    let down = Sink::start().port;
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
    let down = Sink::start().port;
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
