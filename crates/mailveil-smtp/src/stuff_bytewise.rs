/// The byte-by-byte dot-stuffing `dot_stuff` did before it used `memchr`: the reference
/// the property test holds `wire::stuff` to, and the baseline of `benches/data.rs`.
/// Included (`include!`) by both; not a module of the library.
fn stuff_bytewise(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 50 + 8);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !message.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}
