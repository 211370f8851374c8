//! Ports on 127.0.0.1 and waiting for things to happen.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (bound and released; good enough on a test machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
