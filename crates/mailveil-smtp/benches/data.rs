//! Reading DATA: `wire::DataReader` against smtp-proto's `DataReceiver` (what `serve`
//! used before), over a 16 MiB message fed in 64 KiB reads as `smtp::io` does. Writing
//! it: `wire::stuff` against the byte-by-byte stuffing `serve` used before, on the same
//! message (a line in 40 starts with a dot) and on one without such a line.
//!
//! `cargo bench -p mailveil-smtp --bench data`. Prints MB/s for each.

use mailveil_smtp::wire::{DataReader, dot_stuff, stuff};
use smtp_proto::request::receiver::DataReceiver;
use std::time::Instant;

const READ: usize = 64 * 1024;
const ROUNDS: usize = 20;

fn message() -> Vec<u8> {
    let mut m = Vec::with_capacity(17 << 20);
    let mut i = 0u64;
    while m.len() < 16 << 20 {
        if i.is_multiple_of(40) {
            m.extend_from_slice(b".a line that starts with a dot\r\n");
        }
        m.extend_from_slice(format!("line {i:08} {}\r\n", "x".repeat(60)).as_bytes());
        i += 1;
    }
    m
}

fn ours(wire: &[u8]) -> usize {
    let mut r = DataReader::new();
    let mut out = Vec::new();
    for chunk in wire.chunks(READ) {
        let (_, done) = r.feed(chunk, &mut out);
        if done {
            break;
        }
    }
    out.len()
}

fn smtp_proto(wire: &[u8]) -> usize {
    // It starts in the middle of a line: give it the CRLF of the DATA command first.
    let mut r = DataReceiver::new();
    let mut out = Vec::new();
    r.ingest(&mut b"\r\n".iter(), &mut out);
    for chunk in wire.chunks(READ) {
        if r.ingest(&mut chunk.iter(), &mut out) {
            break;
        }
    }
    out.len()
}

include!("../src/stuff_bytewise.rs");

fn stuff_before(message: &[u8]) -> usize {
    stuff_bytewise(message).len()
}

fn stuff_now(message: &[u8]) -> usize {
    let s = stuff(message);
    s.body.len() + s.end.len()
}

fn rate(name: &str, wire: &[u8], f: fn(&[u8]) -> usize) -> usize {
    let started = Instant::now();
    let mut n = 0;
    for _ in 0..ROUNDS {
        n = std::hint::black_box(f(std::hint::black_box(wire)));
    }
    let secs = started.elapsed().as_secs_f64();
    let mb = (wire.len() * ROUNDS) as f64 / 1e6;
    println!("{name:<22} {:>8.0} MB/s", mb / secs);
    n
}

fn main() {
    let msg = message();
    let wire = dot_stuff(&msg);
    let a = rate("wire::DataReader", &wire, ours);
    let b = rate("smtp-proto DataReceiver", &wire, smtp_proto);
    assert_eq!(a, msg.len());
    assert_eq!(
        b,
        msg.len() + 2,
        "smtp-proto keeps the CRLF it was primed with"
    );
    let a = rate("stuff, byte by byte", &msg, stuff_before);
    let b = rate("wire::stuff", &msg, stuff_now);
    assert_eq!(a, b);
    let plain: Vec<u8> = msg
        .iter()
        .map(|&c| if c == b'.' { b'-' } else { c })
        .collect();
    let a = rate("no dot line, bytewise", &plain, stuff_before);
    let b = rate("no dot line, stuff", &plain, stuff_now);
    assert_eq!(a, b);
}
