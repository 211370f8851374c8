//! Ports on 127.0.0.1 and waiting for things to happen.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768–60999), so
/// between the check here and the caller's own bind no outgoing connection and no
/// `bind(127.0.0.1:0)` of a parallel test can take the port (a port picked by binding
/// port 0 and releasing it could, and a proxy test once lost its port that way).
const LOW: u16 = 20_000;
const SPAN: u16 = 12_000;

/// A free port on 127.0.0.1 that no other call in this test process has returned.
pub fn free_port() -> u16 {
    // Each test process starts at its own offset, then walks on from there.
    static NEXT: AtomicU16 = AtomicU16::new(u16::MAX);
    let _ = NEXT.compare_exchange(
        u16::MAX,
        (std::process::id() % u32::from(SPAN)) as u16,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{LOW}..{}", LOW + SPAN);
}

/// Waits until something accepts connections on 127.0.0.1:`port` (20 s at most).
pub fn wait_port(port: u16) {
    wait_until(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .unwrap_or_else(|| panic!("port {port} not listening"));
}

/// Polls `f` until it holds (`Some`) or `timeout` passes (`None`).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<()> {
    let started = Instant::now();
    loop {
        if f() {
            return Some(());
        }
        if started.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
