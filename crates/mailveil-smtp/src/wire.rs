//! Byte-level helpers of the SMTP wire format that need no I/O.

/// Dot-stuffs a message for DATA and appends the terminating `.` line. Bare LF line ends
/// are left as they are (the core keeps what it was given); a missing final line end is
/// added.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".\r\nx"), b"..\r\nx\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }
}
