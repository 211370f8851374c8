//! A fake ESP on 127.0.0.1 that records every hit (time, path, user agent, cookie,
//! referrer, source): what the proxy and prefetch tests count.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the fake ESP saw.
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    pub path: String,
    pub user_agent: String,
    pub cookie: Option<String>,
    pub referer: Option<String>,
    pub source: SocketAddr,
}

/// A tiny valid PNG (1x1).
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The fake ESP.
pub struct Esp {
    pub port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
    busy: Arc<Busy>,
}

/// Requests to `/slowimg/` being answered now, and the most at once.
#[derive(Default)]
struct Busy {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Esp {
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// The most `/slowimg/` requests (each answered after 300 ms) in flight at once.
    pub fn most_at_once(&self) -> usize {
        self.busy.most.load(Ordering::SeqCst)
    }

    pub fn hits_for(&self, path: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.path == path || h.path.starts_with(&format!("{path}?")))
            .collect()
    }

    /// Starts the ESP on a free port of 127.0.0.1.
    pub fn start() -> Esp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let busy = Arc::new(Busy::default());
        let rec = Arc::clone(&hits);
        let b = Arc::clone(&busy);
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { continue };
                let rec = Arc::clone(&rec);
                let b = Arc::clone(&b);
                std::thread::spawn(move || handle(s, port, &rec, &b));
            }
        });
        Esp { port, hits, busy }
    }
}

fn handle(s: TcpStream, port: u16, rec: &Mutex<Vec<Hit>>, busy: &Busy) {
    let source = s.peer_addr().unwrap();
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut ua, mut cookie, mut referer) = (String::new(), None, None);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
        let value = value.trim().to_string();
        match name.to_ascii_lowercase().as_str() {
            "user-agent" => ua = value,
            "cookie" => cookie = Some(value),
            "referer" => referer = Some(value),
            _ => {}
        }
    }
    rec.lock().unwrap().push(Hit {
        at: Instant::now(),
        path: path.clone(),
        user_agent: ua,
        cookie,
        referer,
        source,
    });
    let p = path.split('?').next().unwrap_or("");
    let ok = |ct: &str, body: &[u8]| {
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nSet-Cookie: esp=1\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    };
    let redirect = |to: &str| {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    };
    let reply: Vec<u8> = if p.ends_with(".png") && p.starts_with("/img/")
        || p.starts_with("/css/") && p.ends_with(".png")
    {
        ok("image/png", PNG)
    } else if p == "/track/open.php" || p.starts_with("/pixel/") {
        ok("image/gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
    } else if p == "/news.css" {
        ok(
            "text/css",
            b".sheet{background-image:url(/css/sheet-bg.png)}",
        )
    } else if p == "/html.png" {
        ok("text/html", b"<html><script>alert(1)</script></html>")
    } else if p == "/svg.png" {
        ok(
            "image/svg+xml",
            b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
        )
    } else if p == "/lying.png" {
        ok("image/png", b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    } else if p == "/big.png" {
        // No Content-Length: the cap must hold while reading.
        let _ =
            w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n");
        let _ = w.write_all(PNG);
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..200 {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
        return;
    } else if p.starts_with("/slowimg/") {
        let now = busy.now.fetch_add(1, Ordering::SeqCst) + 1;
        busy.most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        busy.now.fetch_sub(1, Ordering::SeqCst);
        ok("image/png", PNG)
    } else if p == "/slow.png" {
        std::thread::sleep(Duration::from_secs(8));
        ok("image/png", PNG)
    } else if p == "/redirect-private" {
        redirect("http://169.254.169.254/latest/meta-data/")
    } else if p == "/redirect-ten" {
        redirect("http://10.0.0.1/a.png")
    } else if p == "/redirect-ok" {
        redirect("/img/after-redirect.png")
    } else if p == "/redirect-loop" {
        redirect("/redirect-loop")
    } else if p == "/track/click" {
        redirect(&format!(
            "http://127.0.0.1:{port}/landing?article=7&utm_source=newsletter&utm_medium=email&mc_eid=abc123&mc_cid=def456"
        ))
    } else if p == "/track/mailto" {
        redirect("mailto:sales@sender.example?subject=hi")
    } else if p == "/landing" {
        ok(
            "text/html",
            b"<!doctype html><title>landing</title><p>landing",
        )
    } else {
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
    };
    let _ = w.write_all(&reply);
}

/// Rules that make the fake ESP a known tracker: its open pixel and click redirect.
pub const ESP_RULES: &str = r#"
[[tracker]]
id = "fake-esp"
name = "Fake ESP"
category = "esp"
source = "test"

[[pixel]]
id = "fake-esp-open"
tracker = "fake-esp"
host = "127.0.0.1"
path = "/track/open.php"
source = "test"

[[redirect]]
id = "fake-esp-click"
tracker = "fake-esp"
host = "127.0.0.1"
path = "/track/click"
opaque = true
source = "test"

[[redirect]]
id = "fake-esp-click-mailto"
tracker = "fake-esp"
host = "127.0.0.1"
path = "/track/mailto"
opaque = true
source = "test"
"#;
