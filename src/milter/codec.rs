//! The milter wire protocol (Sendmail/Postfix, version 2 to 6), sans I/O: bytes in,
//! [`Command`]s out; [`Reply`]s in, bytes out. A frame is a 4-byte big-endian length
//! (command byte included), the command byte, then the data. An announced length above
//! the limit is rejected before anything is allocated for it.

use std::fmt;

/// `SMFIF_*`: what a milter may do to a message (negotiated).
pub mod action {
    /// Add headers (SMFIR_ADDHEADER, SMFIR_INSHEADER).
    pub const ADDHDRS: u32 = 0x01;
    /// Replace the body (SMFIR_REPLBODY).
    pub const CHGBODY: u32 = 0x02;
    /// Change or delete headers (SMFIR_CHGHEADER).
    pub const CHGHDRS: u32 = 0x10;
}

/// `SMFIP_*`: which steps the MTA leaves out or needs no reply for (negotiated).
pub mod proto {
    /// Header values keep the whitespace after the colon.
    pub const HDR_LEADSPC: u32 = 0x0010_0000;
}

/// The largest frame accepted by default. The MTA sends bodies in chunks of at most
/// 64 KiB (larger ones only when the milter asks, which this one does not) and one
/// header field per frame (Postfix's `header_size_limit` is 100 KiB); a partial frame is
/// held per connection, so this times the connection limit is memory outside the budget.
pub const DEFAULT_MAX_FRAME: usize = 256 * 1024;
/// Body replacement is sent in chunks of at most this many bytes.
pub const MAX_BODY_CHUNK: usize = 65535;

/// One command from the MTA.
#[derive(Clone, PartialEq, Eq)]
pub enum Command {
    /// `O`: option negotiation (version, actions, protocol flags).
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// `D`: macros for the step named by `stage` (no reply).
    Macros {
        stage: u8,
        pairs: Vec<(String, String)>,
    },
    /// `C`: the client connected.
    Connect { hostname: String },
    /// `H`: HELO/EHLO.
    Helo,
    /// `M`: MAIL FROM and its ESMTP arguments.
    Mail { args: Vec<String> },
    /// `R`: RCPT TO and its ESMTP arguments.
    Rcpt { args: Vec<String> },
    /// `T`: DATA.
    Data,
    /// `L`: one header field (value as the MTA gives it).
    Header { name: Vec<u8>, value: Vec<u8> },
    /// `N`: end of headers.
    EndOfHeaders,
    /// `B`: a body chunk.
    Body(Vec<u8>),
    /// `E`: end of message: the moment to act.
    EndOfMessage,
    /// `A`: the current message is aborted (the connection stays).
    Abort,
    /// `Q`: close the connection.
    Quit,
    /// `K`: the connection goes on with a new SMTP connection's data.
    QuitNewConnection,
    /// `U`: an unknown SMTP command.
    Unknown,
}

impl fmt::Debug for Command {
    // Never the content of a body or header value: lengths only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => write!(f, "OptNeg(v{version}, {actions:#x}, {protocol:#x})"),
            Command::Macros { stage, pairs } => {
                write!(f, "Macros({}, {} pairs)", *stage as char, pairs.len())
            }
            Command::Connect { .. } => f.write_str("Connect"),
            Command::Helo => f.write_str("Helo"),
            Command::Mail { .. } => f.write_str("Mail"),
            Command::Rcpt { .. } => f.write_str("Rcpt"),
            Command::Data => f.write_str("Data"),
            Command::Header { name, value } => write!(
                f,
                "Header({}, {} bytes)",
                String::from_utf8_lossy(name),
                value.len()
            ),
            Command::EndOfHeaders => f.write_str("EndOfHeaders"),
            Command::Body(b) => write!(f, "Body({} bytes)", b.len()),
            Command::EndOfMessage => f.write_str("EndOfMessage"),
            Command::Abort => f.write_str("Abort"),
            Command::Quit => f.write_str("Quit"),
            Command::QuitNewConnection => f.write_str("QuitNewConnection"),
            Command::Unknown => f.write_str("Unknown"),
        }
    }
}

/// One reply to the MTA.
#[derive(Clone, PartialEq, Eq)]
pub enum Reply {
    /// `O`: our side of the negotiation.
    OptNeg {
        version: u32,
        actions: u32,
        protocol: u32,
    },
    /// `c`: go on.
    Continue,
    /// `t`: temporary failure (4xx to the client).
    Tempfail,
    /// `b`: one chunk of the new body (several chunks replace the body in order).
    ReplaceBody(Vec<u8>),
    /// `h`: add a header at the end.
    AddHeader { name: String, value: Vec<u8> },
    /// `i`: insert a header at `index` (0 = on top).
    InsertHeader {
        index: u32,
        name: String,
        value: Vec<u8>,
    },
    /// `m`: change the `index`-th (1-based) field of that name; an empty value deletes it.
    ChangeHeader {
        index: u32,
        name: String,
        value: Vec<u8>,
    },
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::OptNeg {
                version,
                actions,
                protocol,
            } => write!(f, "OptNeg(v{version}, {actions:#x}, {protocol:#x})"),
            Reply::Continue => f.write_str("Continue"),
            Reply::Tempfail => f.write_str("Tempfail"),
            Reply::ReplaceBody(b) => write!(f, "ReplaceBody({} bytes)", b.len()),
            Reply::AddHeader { name, value } => {
                write!(f, "AddHeader({name}, {} bytes)", value.len())
            }
            Reply::InsertHeader { index, name, value } => {
                write!(f, "InsertHeader({index}, {name}, {} bytes)", value.len())
            }
            Reply::ChangeHeader { index, name, value } => {
                write!(f, "ChangeHeader({index}, {name}, {} bytes)", value.len())
            }
        }
    }
}

/// Why the byte stream cannot be decoded: the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The announced frame length is above the limit (nothing was allocated for it).
    TooLong { announced: usize, max: usize },
    /// A frame of length 0 (no command byte).
    Empty,
    /// A command whose data does not have the shape it must have.
    Malformed(u8),
    /// A command byte this codec does not know.
    UnknownCommand(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong { announced, max } => {
                write!(f, "frame of {announced} bytes is above the limit of {max}")
            }
            FrameError::Empty => f.write_str("empty frame"),
            FrameError::Malformed(c) => write!(f, "malformed '{}' command", *c as char),
            FrameError::UnknownCommand(c) => write!(f, "unknown command byte {c:#04x}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Cuts frames out of a byte stream. Feed bytes with [`Decoder::push`], take commands
/// with [`Decoder::next_command`] until it returns `Ok(None)`.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max_frame: usize,
}

impl Decoder {
    /// A decoder that rejects frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            max_frame,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete command, `Ok(None)` when more bytes are needed. The length is
    /// checked as soon as its 4 bytes are there, before the frame is buffered whole.
    pub fn next_command(&mut self) -> Result<Option<Command>, FrameError> {
        let Some(len_bytes) = self.buf.get(..4) else {
            return Ok(None);
        };
        let len =
            u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        if len > self.max_frame {
            return Err(FrameError::TooLong {
                announced: len,
                max: self.max_frame,
            });
        }
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let frame: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
        parse(frame[0], &frame[1..]).map(Some)
    }

    /// How many bytes the decoder may still need to hold for the current frame: the
    /// reader uses it to bound its reads.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// NUL-terminated strings (a missing final NUL is tolerated).
fn strings(data: &[u8]) -> Vec<Vec<u8>> {
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    if data.is_empty() {
        return Vec::new();
    }
    data.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn parse(cmd: u8, data: &[u8]) -> Result<Command, FrameError> {
    Ok(match cmd {
        b'O' => Command::OptNeg {
            version: u32_at(data, 0).ok_or(FrameError::Malformed(cmd))?,
            actions: u32_at(data, 4).ok_or(FrameError::Malformed(cmd))?,
            protocol: u32_at(data, 8).ok_or(FrameError::Malformed(cmd))?,
        },
        b'D' => {
            let (&stage, rest) = data.split_first().ok_or(FrameError::Malformed(cmd))?;
            let s = strings(rest);
            let pairs = s
                .chunks(2)
                .map(|p| (lossy(&p[0]), p.get(1).map(|v| lossy(v)).unwrap_or_default()))
                .collect();
            Command::Macros { stage, pairs }
        }
        b'C' => Command::Connect {
            hostname: strings(data).first().map(|h| lossy(h)).unwrap_or_default(),
        },
        b'H' => Command::Helo,
        b'M' => Command::Mail {
            args: strings(data).iter().map(|s| lossy(s)).collect(),
        },
        b'R' => Command::Rcpt {
            args: strings(data).iter().map(|s| lossy(s)).collect(),
        },
        b'T' => Command::Data,
        b'L' => {
            let nul = data
                .iter()
                .position(|&b| b == 0)
                .ok_or(FrameError::Malformed(cmd))?;
            let value = &data[nul + 1..];
            let value = value.strip_suffix(&[0]).unwrap_or(value);
            Command::Header {
                name: data[..nul].to_vec(),
                value: value.to_vec(),
            }
        }
        b'N' => Command::EndOfHeaders,
        b'B' => Command::Body(data.to_vec()),
        b'E' => Command::EndOfMessage,
        b'A' => Command::Abort,
        b'Q' => Command::Quit,
        b'K' => Command::QuitNewConnection,
        b'U' => Command::Unknown,
        other => return Err(FrameError::UnknownCommand(other)),
    })
}

/// Appends the frame for `reply` to `out`.
pub fn encode(reply: &Reply, out: &mut Vec<u8>) {
    let mut data: Vec<u8> = Vec::new();
    let cmd = match reply {
        Reply::OptNeg {
            version,
            actions,
            protocol,
        } => {
            data.extend_from_slice(&version.to_be_bytes());
            data.extend_from_slice(&actions.to_be_bytes());
            data.extend_from_slice(&protocol.to_be_bytes());
            b'O'
        }
        Reply::Continue => b'c',
        Reply::Tempfail => b't',
        Reply::ReplaceBody(chunk) => {
            data.extend_from_slice(chunk);
            b'b'
        }
        Reply::AddHeader { name, value } => {
            push_pair(&mut data, name, value);
            b'h'
        }
        Reply::InsertHeader { index, name, value } => {
            data.extend_from_slice(&index.to_be_bytes());
            push_pair(&mut data, name, value);
            b'i'
        }
        Reply::ChangeHeader { index, name, value } => {
            data.extend_from_slice(&index.to_be_bytes());
            push_pair(&mut data, name, value);
            b'm'
        }
    };
    let len = u32::try_from(data.len() + 1).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(cmd);
    out.extend_from_slice(&data);
}

fn push_pair(data: &mut Vec<u8>, name: &str, value: &[u8]) {
    data.extend_from_slice(name.as_bytes());
    data.push(0);
    data.extend_from_slice(value);
    data.push(0);
}

/// Splits a new body into `ReplaceBody` replies of at most [`MAX_BODY_CHUNK`] bytes
/// (one empty chunk for an empty body), made one at a time as they are taken: a large
/// body is never copied whole.
pub fn body_chunks(body: &[u8]) -> impl Iterator<Item = Reply> + '_ {
    let empty = body.is_empty().then(|| Reply::ReplaceBody(Vec::new()));
    empty.into_iter().chain(
        body.chunks(MAX_BODY_CHUNK)
            .map(|c| Reply::ReplaceBody(c.to_vec())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(cmd: u8, data: &[u8]) -> Vec<u8> {
        let mut out = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        out.push(cmd);
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn frames_split_anywhere_decode_the_same() {
        let mut bytes = frame(b'O', &[0, 0, 0, 6, 0, 0, 1, 0xff, 0, 0x1f, 0xff, 0xff]);
        bytes.extend(frame(b'L', b"Subject\0 hello\0"));
        bytes.extend(frame(b'B', b"body\r\n"));
        bytes.extend(frame(b'E', b""));
        let want = vec![
            Command::OptNeg {
                version: 6,
                actions: 0x1ff,
                protocol: 0x1fffff,
            },
            Command::Header {
                name: b"Subject".to_vec(),
                value: b" hello".to_vec(),
            },
            Command::Body(b"body\r\n".to_vec()),
            Command::EndOfMessage,
        ];
        for split in 0..bytes.len() {
            let mut d = Decoder::new(DEFAULT_MAX_FRAME);
            let mut got = Vec::new();
            for piece in [&bytes[..split], &bytes[split..]] {
                d.push(piece);
                while let Some(c) = d.next_command().unwrap() {
                    got.push(c);
                }
            }
            assert_eq!(got, want, "split at {split}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn oversize_length_is_rejected_from_the_length_alone() {
        let mut d = Decoder::new(1000);
        // only the length prefix: 4 GiB announced, nothing else sent
        d.push(&u32::MAX.to_be_bytes());
        assert_eq!(
            d.next_command(),
            Err(FrameError::TooLong {
                announced: u32::MAX as usize,
                max: 1000
            })
        );
        let mut d = Decoder::new(1000);
        d.push(&frame(b'B', &[b'x'; 999]));
        assert!(matches!(d.next_command(), Ok(Some(Command::Body(b))) if b.len() == 999));
        d.push(&frame(b'B', &[b'x'; 1000]));
        assert!(matches!(d.next_command(), Err(FrameError::TooLong { .. })));
    }

    #[test]
    fn empty_unknown_and_short_frames_are_errors() {
        let mut d = Decoder::new(100);
        d.push(&[0, 0, 0, 0]);
        assert_eq!(d.next_command(), Err(FrameError::Empty));
        let mut d = Decoder::new(100);
        d.push(&frame(b'Z', b""));
        assert_eq!(d.next_command(), Err(FrameError::UnknownCommand(b'Z')));
        let mut d = Decoder::new(100);
        d.push(&frame(b'O', &[0, 0, 0, 6]));
        assert_eq!(d.next_command(), Err(FrameError::Malformed(b'O')));
        let mut d = Decoder::new(100);
        d.push(&frame(b'L', b"no-nul"));
        assert_eq!(d.next_command(), Err(FrameError::Malformed(b'L')));
    }

    #[test]
    fn macros_mail_and_rcpt() {
        let mut d = Decoder::new(100);
        d.push(&frame(b'D', b"Ei\0ABC123\0{auth}\0\0"));
        d.push(&frame(b'M', b"<a@b.example>\0SIZE=10\0"));
        d.push(&frame(b'R', b"<alice@example.test>\0"));
        assert_eq!(
            d.next_command().unwrap(),
            Some(Command::Macros {
                stage: b'E',
                pairs: vec![
                    ("i".into(), "ABC123".into()),
                    ("{auth}".into(), String::new())
                ]
            })
        );
        assert_eq!(
            d.next_command().unwrap(),
            Some(Command::Mail {
                args: vec!["<a@b.example>".into(), "SIZE=10".into()]
            })
        );
        assert_eq!(
            d.next_command().unwrap(),
            Some(Command::Rcpt {
                args: vec!["<alice@example.test>".into()]
            })
        );
        assert_eq!(d.next_command().unwrap(), None);
    }

    #[test]
    fn replies_encode_as_libmilter_expects() {
        let mut out = Vec::new();
        encode(
            &Reply::OptNeg {
                version: 6,
                actions: 0x13,
                protocol: proto::HDR_LEADSPC,
            },
            &mut out,
        );
        assert_eq!(
            out,
            [0, 0, 0, 13, b'O', 0, 0, 0, 6, 0, 0, 0, 0x13, 0, 0x10, 0, 0]
        );
        out.clear();
        encode(
            &Reply::InsertHeader {
                index: 0,
                name: "X-A".into(),
                value: b" v".to_vec(),
            },
            &mut out,
        );
        assert_eq!(out, b"\0\0\0\x0ci\0\0\0\0X-A\0 v\0");
        out.clear();
        encode(&Reply::Continue, &mut out);
        assert_eq!(out, [0, 0, 0, 1, b'c']);
    }

    #[test]
    fn body_is_replaced_in_chunks_of_at_most_64k() {
        let body = vec![b'x'; MAX_BODY_CHUNK * 2 + 10];
        let chunks: Vec<Reply> = body_chunks(&body).collect();
        assert_eq!(chunks.len(), 3);
        let mut joined = Vec::new();
        for c in chunks {
            let Reply::ReplaceBody(b) = c else { panic!() };
            assert!(b.len() <= MAX_BODY_CHUNK);
            joined.extend(b);
        }
        assert_eq!(joined, body);
        assert_eq!(
            body_chunks(b"").collect::<Vec<_>>(),
            vec![Reply::ReplaceBody(Vec::new())]
        );
    }

    proptest::proptest! {
        /// Any bytes, cut anywhere: the decoder returns commands or an error, never
        /// panics, and never holds more than one frame's worth beyond the limit.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            cut in 0usize..600,
        ) {
            let mut d = Decoder::new(256);
            let cut = cut.min(bytes.len());
            for piece in [&bytes[..cut], &bytes[cut..]] {
                d.push(piece);
                while let Ok(Some(_)) = d.next_command() {}
            }
        }

        /// Every reply encodes to a frame that announces its own length.
        #[test]
        fn replies_frame_their_length(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut out = Vec::new();
            encode(&Reply::ReplaceBody(body.clone()), &mut out);
            proptest::prop_assert_eq!(u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize, body.len() + 1);
            proptest::prop_assert_eq!(&out[5..], &body[..]);
        }
    }

    #[test]
    fn debug_never_shows_content() {
        let c = Command::Body(b"secret body".to_vec());
        assert!(!format!("{c:?}").contains("secret"));
        let c = Command::Header {
            name: b"To".to_vec(),
            value: b"alice@example.test".to_vec(),
        };
        assert!(!format!("{c:?}").contains("alice"));
    }
}
