//! Byte-level helpers of the SMTP wire format that need no I/O.

use std::borrow::Cow;

/// A message dot-stuffed for DATA, in two pieces to write one after the other: the
/// body (borrowed when no line starts with a dot, the common mail: nothing is copied)
/// and the end, the terminating `.` line after a line end if the body lacks one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuffed<'a> {
    /// The message with a `.` doubled at the start of each line that begins with one.
    pub body: Cow<'a, [u8]>,
    /// `.\r\n`, or `\r\n.\r\n` after a body that does not end a line.
    pub end: &'static [u8],
}

/// Dot-stuffs a message for DATA (see [`Stuffed`]). Bare LF line ends are left as they
/// are (the core keeps what it was given), and a `.` after one is stuffed too, as
/// after CRLF; a missing final line end is added. The lines to stuff are found with
/// `memchr`, and what lies between them is copied whole (or not at all).
pub fn stuff(message: &[u8]) -> Stuffed<'_> {
    let end: &'static [u8] = if message.is_empty() || message.ends_with(b"\n") {
        b".\r\n"
    } else {
        b"\r\n.\r\n"
    };
    let first = message.first() == Some(&b'.');
    let mut dots = memchr::memmem::find_iter(message, b"\n.").peekable();
    if !first && dots.peek().is_none() {
        return Stuffed {
            body: Cow::Borrowed(message),
            end,
        };
    }
    let mut out = Vec::with_capacity(message.len() + message.len() / 50 + 8);
    if first {
        out.push(b'.');
    }
    let mut from = 0;
    for at in dots {
        // `at` is the LF: copy up to it, double the dot that follows.
        out.extend_from_slice(&message[from..=at]);
        out.push(b'.');
        from = at + 1;
    }
    out.extend_from_slice(&message[from..]);
    Stuffed {
        body: Cow::Owned(out),
        end,
    }
}

/// [`stuff`] in one buffer: the message as DATA carries it, terminating line included.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let Stuffed { body, end } = stuff(message);
    let mut out = body.into_owned();
    out.extend_from_slice(end);
    out
}

/// Reads message data after DATA: removes the dot-stuffing and finds the end, the line
/// `.` after a CRLF, incrementally over the bytes as they arrive. The first line counts
/// as the start of a line (`..x` is read as `.x`, and `.` at once ends an empty
/// message). Only CRLF starts a line: a `.` after a bare LF is data, never the end (SMTP
/// smuggling).
///
/// Written here because smtp-proto's `DataReceiver` starts in the middle of a line: it
/// kept the first line's stuffing and did not end at a `.` right after DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataReader {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (after CRLF, or the first byte).
    LineStart,
    /// A `.` began the line (dropped).
    Dot,
    /// `.` and CR began the line: LF ends the data.
    DotCr,
    /// Inside a line; `cr`: the last byte was CR.
    Mid { cr: bool },
}

impl Default for DataReader {
    fn default() -> Self {
        DataReader::new()
    }
}

impl DataReader {
    /// A reader at the start of the data.
    pub fn new() -> Self {
        DataReader {
            state: State::LineStart,
        }
    }

    /// Appends the message bytes of `input` to `out`. Returns how many bytes of `input`
    /// were used and whether the end was reached (what follows it is the next command).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::LineStart if input[i] == b'.' => {
                    self.state = State::Dot;
                    i += 1;
                }
                State::Dot if input[i] == b'\r' => {
                    self.state = State::DotCr;
                    i += 1;
                }
                State::DotCr if input[i] == b'\n' => {
                    self.state = State::LineStart;
                    return (i + 1, true);
                }
                State::DotCr => {
                    out.push(b'\r');
                    self.state = State::Mid { cr: true };
                }
                State::LineStart | State::Dot => self.state = State::Mid { cr: false },
                State::Mid { cr: true } if input[i] == b'\n' => {
                    out.push(b'\n');
                    self.state = State::LineStart;
                    i += 1;
                }
                State::Mid { .. } => {
                    // Only a line that starts with a dot needs anything done: skip to
                    // the next CRLF + dot, copying what is between.
                    let rest = &input[i..];
                    match memchr::memmem::find(rest, b"\r\n.") {
                        Some(p) => {
                            out.extend_from_slice(&rest[..p + 2]);
                            self.state = State::LineStart;
                            i += p + 2;
                        }
                        None => {
                            out.extend_from_slice(rest);
                            self.state = if rest.ends_with(b"\r\n") {
                                State::LineStart
                            } else {
                                State::Mid {
                                    cr: rest.last() == Some(&b'\r'),
                                }
                            };
                            i = input.len();
                        }
                    }
                }
            }
        }
        (i, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `data` in pieces of `step` bytes; the message and the bytes after the end.
    fn read(data: &[u8], step: usize) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut r = DataReader::new();
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let end = (at + step).min(data.len());
            let (used, done) = r.feed(&data[at..end], &mut out);
            at += used;
            if done {
                return Some((out, data[at..].to_vec()));
            }
        }
        None
    }

    #[test]
    fn the_first_line_is_a_line_like_any_other() {
        for step in [1, 2, 3, 1000] {
            let (msg, rest) = read(b"..x\r\n.\r\nQUIT\r\n", step).unwrap();
            assert_eq!(msg, b".x\r\n");
            assert_eq!(rest, b"QUIT\r\n");
            let (msg, rest) = read(b".\r\nQUIT\r\n", step).unwrap();
            assert_eq!(msg, b"", "DATA then . is an empty message");
            assert_eq!(rest, b"QUIT\r\n");
        }
    }

    #[test]
    fn only_crlf_dot_crlf_ends_and_only_after_crlf_is_unstuffed() {
        for step in [1, 2, 1000] {
            let data = b"a\r\n..b\r\nhi\n.\r\nx\n..y\r\n.\rz\r\n.x\r\n.\r\n";
            let (msg, rest) = read(data, step).unwrap();
            assert_eq!(msg, b"a\r\n.b\r\nhi\n.\r\nx\n..y\r\n\rz\r\nx\r\n");
            assert!(rest.is_empty());
            assert_eq!(read(b"a\r\n.\n", step), None, "a bare LF after the dot");
            assert_eq!(read(b"a\n.\r\n", step), None, "a bare LF before the dot");
        }
    }

    proptest! {
        /// What `dot_stuff` writes, `DataReader` reads back, however it is split.
        #[test]
        fn stuffing_and_reading_are_inverse(
            lines in proptest::collection::vec("[.\\r a-z]{0,6}", 0..8),
            step in 1usize..10,
        ) {
            // CRLF line ends (a lone CR inside a line is data); a bare LF is no line end
            // to the reader, so `dot_stuff`'s stuffing after one would stay.
            let msg: Vec<u8> = lines
                .iter()
                .flat_map(|l| format!("{l}\r\n").into_bytes())
                .collect();
            let (back, rest) = read(&dot_stuff(&msg), step).expect("the end is found");
            prop_assert_eq!(back, msg);
            prop_assert!(rest.is_empty());
        }
    }

    include!("stuff_bytewise.rs");

    /// Messages made of what matters to stuffing: dots, CR, LF (bare or not), other
    /// bytes, and now and then a long run of one byte (a huge line).
    fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            4 => proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a'), any::<u8>()],
                0..12,
            ),
            1 => (prop_oneof![Just(b'.'), Just(b'x'), Just(b'\n')], 1000usize..70_000)
                .prop_map(|(b, n)| vec![b; n]),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|p| p.concat())
    }

    proptest! {
        /// `stuff` writes exactly what the byte-by-byte form wrote, for any bytes.
        #[test]
        fn stuffing_is_the_bytewise_form(msg in wire_bytes()) {
            let s = stuff(&msg);
            let mut wire = s.body.to_vec();
            wire.extend_from_slice(s.end);
            prop_assert_eq!(&wire, &stuff_bytewise(&msg));
            prop_assert_eq!(dot_stuff(&msg), wire);
        }
    }

    #[test]
    fn a_message_without_a_line_starting_with_a_dot_is_not_copied() {
        let msg = b"Subject: x\r\n\r\nno dot. at a line start\r\nx.\n";
        let s = stuff(msg);
        assert!(matches!(s.body, Cow::Borrowed(b) if b.as_ptr() == msg.as_ptr()));
        assert_eq!(s.end, b".\r\n");
        assert!(matches!(stuff(b"a\r\n.b").body, Cow::Owned(_)));
        assert!(matches!(stuff(b".a").body, Cow::Owned(_)));
        assert_eq!(stuff(b"no end").end, b"\r\n.\r\n");
    }

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n"), b"a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuff(b".\r\nx"), b"..\r\nx\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b".\r\n");
    }
}
