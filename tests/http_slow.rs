//! The image proxy's HTTP listener under slow clients (issue 8, slowloris): idle and
//! trickling connections do not stop a normal image request, a client that does not
//! finish its request head is closed at the head deadline, and at the connection cap
//! new clients wait for a slot instead of being refused. In process, on loopback.

mod support;

use mailveil::http::HttpLimits;
use mailveil::proxy::{self, Settings};
use mailveil::proxy_url::{self, ProxyKind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

struct Running {
    port: u16,
    cfg: mailveil::ProxyConfig,
    _cache: tempfile::TempDir,
}

/// A proxy that may fetch from loopback (the fake ESP), with these HTTP limits.
async fn start(http: HttpLimits) -> Running {
    let cache = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut s = Settings::new(
        format!("127.0.0.1:{port}").parse().unwrap(),
        &format!("http://127.0.0.1:{port}"),
        KEY.to_vec(),
    );
    s.allow = vec!["127.0.0.0/8".parse().unwrap()];
    s.cache_dir = Some(cache.path().to_path_buf());
    s.http = http;
    let rules = mailveil::rule_files::load(&[], false).0;
    let p = proxy::build(&s, Arc::new(rules)).unwrap();
    proxy::spawn(p, s.listen, s.http).await.unwrap();
    Running {
        port,
        cfg: s.proxy_config(),
        _cache: cache,
    }
}

/// GET `path` on a fresh connection; the status code and the time it took.
async fn get(port: u16, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut resp))
        .await
        .expect("response within 30 s")
        .unwrap();
    let code = String::from_utf8_lossy(&resp)
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, started.elapsed())
}

/// Whether the server closed `s`: EOF (or a reset) within `wait`.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 512];
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // e.g. a 408 before the close
        }
    }
}

fn limits(header_secs: u64, max_connections: usize) -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_secs(header_secs),
        max_connections,
        ..HttpLimits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_slow_connections_do_not_stop_an_image_request() {
    let esp = Esp::start();
    let p = start(limits(10, 1000)).await;
    let mut slow = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
        match i % 3 {
            0 => {}                                                           // idle
            1 => s.write_all(b"GET /i/x HTTP/1.1\r\nHost: 1").await.unwrap(), // half a head
            _ => s.write_all(b"G").await.unwrap(),                            // trickles below
        }
        slow.push(s);
    }
    let trickle = tokio::spawn(async move {
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for (i, s) in slow.iter_mut().enumerate() {
                if i % 3 == 2 {
                    let _ = s.write_all(b"E").await;
                }
            }
        }
        slow
    });
    let image = proxy_url::proxied(&p.cfg, ProxyKind::Image, &esp.url("/img/logo.png"));
    let path = image.trim_start_matches(&format!("http://127.0.0.1:{}", p.port));
    let (code, took) = get(p.port, path).await;
    println!(
        "proxy with 200 idle/trickling connections: image {code} in {} ms",
        took.as_millis()
    );
    assert_eq!(code, 200);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(get(p.port, "/healthz").await.0, 200);
    let mut slow = trickle.await.unwrap();
    // All still open: nothing was shed to serve the image.
    for s in &mut slow {
        assert!(!closed_within(s, Duration::from_millis(1)).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_client_is_closed_at_the_head_deadline() {
    let p = start(limits(2, 1000)).await;
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    let started = Instant::now();
    // A byte every 300 ms of a head that never ends: no read ever waits 2 s.
    let (mut r, mut w) = s.split();
    let trickle = async {
        for b in b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
        {
            if w.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let closed = async {
        let mut buf = [0u8; 512];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    };
    let took = tokio::select! {
        t = closed => t,
        () = trickle => panic!("the whole trickle went through without a close"),
    };
    println!("trickling HTTP client closed after {} ms", took.as_millis());
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
        "closed after {took:?}, want about 2 s"
    );
    // An idle connection that never sends a byte is closed too.
    let mut idle = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(6)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_a_new_client_waits_for_a_slot() {
    let p = start(limits(2, 10)).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(TcpStream::connect(("127.0.0.1", p.port)).await.unwrap());
    }
    // The 11th is not served until the head deadline frees the slots, then it is.
    let (code, took) = get(p.port, "/healthz").await;
    println!(
        "11th client at a cap of 10: {code} after {} ms",
        took.as_millis()
    );
    assert_eq!(code, 200);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "{took:?}"
    );
    drop(held);
}

/// Issue 14: a client that sends a request and never reads the answer held its
/// connection for as long as it liked (hyper has no write deadline), and at the cap
/// every slot. Now a write that cannot go on for `write_timeout` ends the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_at_the_write_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/big", axum::routing::get(|| async { vec![0u8; 64 << 20] }))
        .route("/small", axum::routing::get(|| async { "ok" }));
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(10),
        max_connections: 1,
        write_timeout: Duration::from_secs(1),
    };
    tokio::spawn(mailveil::http::serve(listener, app, limits));
    // A small receive window, 64 MB asked for, nothing read: the server's writes stall.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut stuck = sock.connect(addr).await.unwrap();
    stuck
        .write_all(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The only slot is the stuck client's: the next client is served once it is gone.
    let (code, took) = get(addr.port(), "/small").await;
    assert_eq!(code, 200);
    assert!(took < Duration::from_secs(8), "{took:?}");
    eprintln!("served after a non-reading client in {took:?} (write timeout 1 s)");
    drop(stuck);
}
