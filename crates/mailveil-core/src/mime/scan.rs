//! mail-parser 0.11.9's reading of a MIME structure, without the work on bodies the walk
//! does not use.
//!
//! The structure parser ([`super::structure`]) already reads past transfer encodings,
//! but mail-parser still finds each part's end a byte at a time and converts every text
//! part to UTF-8 (`from_utf8_lossy`, windows-1252 and the other charsets): most of its
//! time on the corpus (issue 17). mail-parser has no switch for either, so this is its
//! parse loop (`MessageParser::parse_`, parsers/message.rs) written again, with its own
//! header reading (`MessageStream::parse_headers`, with the structure parser's table),
//! its states and its offsets, and three differences:
//! - part ends are found by memchr's substring search, read to the rules of
//!   `MessageStream::mime_part` and `seek_next_part(_offset)`: the first `--boundary`
//!   anywhere ends a part, inside a line too;
//! - a text part's text is its body when that is UTF-8, and a lone U+FFFD otherwise (no
//!   charset conversion). The walk takes the text of a UTF-8 part only (`utf8_body`),
//!   and there mail-parser's text is the body when it is UTF-8 and holds U+FFFD when
//!   it is not;
//! - no body lists (`html_body`, `text_body`, `attachments`) and no inline flag: a part
//!   that is not text is `Binary`. The walk reads neither.
//!
//! Why not another crate: `mailparse` decodes lazily but ends parts by its own rules,
//! and every defence of the walk (`ambiguous-mime`, the boundary checks, the splice by
//! offset) rests on where mail-parser ends them; mail-parser 1.0 needs rustc 1.98.
//!
//! A mail holding a message part or a digest is not read here ([`Scan::Usual`]): the
//! caller parses it the usual way, as it did before for such mails. The structure
//! parser's own reading stays the reference: a test and the fuzzers hold this one to it.

use super::structure::STRUCTURE;
use mail_parser::parsers::MessageStream;
use mail_parser::{
    ContentType, Encoding, GetHeader, Header, HeaderName, Message, MessagePart, PartType,
};
use std::borrow::Cow;
use std::time::Instant;

/// What the scan made of a mail.
pub(crate) enum Scan<'x> {
    Read(Message<'x>),
    /// No header at all: mail-parser finds no message either.
    Nothing,
    /// A message part or a digest: to be parsed the usual way.
    Usual,
    /// The deadline passed before the reading was done.
    Deadline,
}

/// mail-parser's `MimeType`, as far as the structure needs it.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Multipart,
    Digest,
    TextPlain,
    TextHtml,
    TextOther,
    Message,
    Other,
}

impl Kind {
    /// mail-parser's `mime_type` (its names compared as they are, as it compares them);
    /// a part without `Content-Type` is plain text (in a digest a message, but a digest
    /// is not scanned).
    fn of(ct: Option<&ContentType>) -> Kind {
        let Some(ct) = ct else {
            return Kind::TextPlain;
        };
        match (ct.ctype(), ct.subtype()) {
            ("multipart", Some("digest")) => Kind::Digest,
            ("multipart", _) => Kind::Multipart,
            ("text", Some("plain")) => Kind::TextPlain,
            ("text", Some("html")) => Kind::TextHtml,
            ("text", _) => Kind::TextOther,
            ("message", Some("rfc822" | "global")) => Kind::Message,
            _ => Kind::Other,
        }
    }
}

/// mail-parser's `MessageParserState`, as far as the structure needs it.
#[derive(Default)]
struct State {
    boundary: Option<Vec<u8>>,
    part_id: u32,
    sub_part_ids: Vec<u32>,
    offset_header: usize,
    offset_body: usize,
    offset_end: usize,
}

/// Reads `raw`'s structure as the structure parser does (see the module's comment),
/// giving up once `deadline` has passed. Asked before each part: a multipart whose
/// delimiter never comes is searched for to the end of the mail, and thousands of them
/// made mail-parser's reading quadratic (a 1.2 MB mail of 20,000 took 21 s; no bound
/// held it, as the walk's deadline is asked only after the parse).
pub(crate) fn scan(raw: &[u8], deadline: Instant) -> Scan<'_> {
    let mut r = Reader {
        raw,
        stream: MessageStream::new(raw),
        parts: Vec::new(),
        state: State::default(),
        stack: Vec::with_capacity(4),
    };
    let mut headers = Vec::new();
    loop {
        if Instant::now() > deadline {
            return Scan::Deadline;
        }
        r.state.offset_header = r.stream.offset();
        if !r.stream.parse_headers(&STRUCTURE, &mut headers) {
            break;
        }
        r.state.offset_body = r.stream.offset();
        r.state.sub_part_ids.push(r.parts.len() as u32);
        let ct = headers
            .header_value(&HeaderName::ContentType)
            .and_then(|v| v.as_content_type());
        let mut kind = Kind::of(ct);
        let boundary = match kind {
            Kind::Digest => return Scan::Usual,
            Kind::Multipart => ct.and_then(|c| c.attribute("boundary")),
            _ => None,
        };
        if let Some(boundary) = boundary.map(|b| b.as_bytes().to_vec()) {
            if r.open_multipart(&mut headers, boundary) {
                continue;
            }
            kind = Kind::TextOther; // no first delimiter: read as text
        }
        if kind == Kind::Message {
            return Scan::Usual;
        }
        r.leaf(std::mem::take(&mut headers), kind);
        if r.state.boundary.is_some() {
            match r.close_multiparts() {
                Some(true) => continue,
                Some(false) => break,
                None => return Scan::Usual,
            }
        } else if r.stream.offset() >= raw.len() {
            break;
        }
    }
    r.finish(headers)
}

/// The reading's state: mail-parser's stream, the parts read, the multipart being read
/// and those around it.
struct Reader<'x> {
    raw: &'x [u8],
    stream: MessageStream<'x>,
    parts: Vec<MessagePart<'x>>,
    state: State,
    stack: Vec<State>,
}

impl<'x> Reader<'x> {
    /// A multipart's headers read: past its first delimiter, its parts are read next.
    /// `false` (nothing read, `headers` left) when there is no delimiter.
    fn open_multipart(&mut self, headers: &mut Vec<Header<'x>>, boundary: Vec<u8>) -> bool {
        if !seek_next_part(&mut self.stream, self.raw, &boundary) {
            return false;
        }
        let mut multipart = part(std::mem::take(headers), &self.state, PartType::default());
        multipart.offset_end = 0; // set when its end is read
        let inner = State {
            boundary: Some(boundary),
            part_id: self.parts.len() as u32,
            ..State::default()
        };
        self.parts.push(multipart);
        self.stack.push(std::mem::replace(&mut self.state, inner));
        self.stream.skip_crlf();
        true
    }

    /// A part that is not a multipart: its body read to its end.
    fn leaf(&mut self, headers: Vec<Header<'x>>, mut kind: Kind) {
        let state = &mut self.state;
        let mut problem = false;
        match mime_part(&mut self.stream, self.raw, state.boundary.as_deref()) {
            Some(end) => state.offset_end = end,
            None => {
                // mail-parser's recovery: read to the next boundary or the end, as text.
                problem = true;
                if kind != Kind::TextPlain {
                    kind = Kind::TextOther;
                }
                let (end, found) = self.stream.seek_part_end(state.boundary.as_deref());
                state.offset_end = end;
                if !found {
                    state.boundary = None;
                }
            }
        }
        let body = self
            .raw
            .get(state.offset_body..state.offset_end)
            .unwrap_or_default();
        let body = match kind {
            Kind::TextHtml => PartType::Html(text(body)),
            Kind::TextPlain | Kind::TextOther => PartType::Text(text(body)),
            _ => PartType::Binary(Cow::Borrowed(body)),
        };
        let mut leaf = part(headers, state, body);
        leaf.is_encoding_problem = problem;
        self.parts.push(leaf);
    }

    /// After a part inside a multipart: ends every multipart whose closing delimiter
    /// follows. `Some(true)` when a part's headers come next, `Some(false)` when the
    /// reading is over, `None` where mail-parser asserts nothing can be.
    fn close_multiparts(&mut self) -> Option<bool> {
        loop {
            if !self.stream.is_multipart_end() {
                return Some(true);
            }
            let state = &mut self.state;
            let multipart = self.parts.get_mut(state.part_id as usize)?;
            if state.sub_part_ids != [0] {
                multipart.body = PartType::Multipart(std::mem::take(&mut state.sub_part_ids));
            }
            if let Some(outer) = self.stack.pop() {
                *state = outer;
                if let Some(boundary) = &state.boundary
                    && let Some(end) = seek_next_part_offset(&mut self.stream, self.raw, boundary)
                {
                    multipart.offset_end = end as u32;
                    continue;
                }
            }
            multipart.offset_end = self.stream.offset() as u32;
            return Some(false);
        }
    }

    /// The message read; `headers` are those read last, without a body after them.
    fn finish(mut self, headers: Vec<Header<'x>>) -> Scan<'x> {
        // A mail cut short: the multiparts still open end where the reading stopped.
        while let Some(outer) = self.stack.pop() {
            let state = &mut self.state;
            let Some(multipart) = self.parts.get_mut(state.part_id as usize) else {
                return Scan::Usual; // mail-parser asserts this cannot happen
            };
            multipart.offset_end = self.stream.offset() as u32;
            if state.sub_part_ids != [0] {
                multipart.body = PartType::Multipart(std::mem::take(&mut state.sub_part_ids));
            }
            *state = outer;
        }
        let len = self.raw.len() as u32;
        if let Some(root) = self.parts.first_mut() {
            root.offset_end = len;
        } else if headers.is_empty() {
            return Scan::Nothing;
        } else {
            // Headers and no body.
            self.parts.push(MessagePart {
                headers,
                is_encoding_problem: true,
                body: PartType::Text("".into()),
                encoding: Encoding::None,
                offset_header: 0,
                offset_body: len,
                offset_end: len,
            });
        }
        Scan::Read(Message {
            parts: self.parts,
            raw_message: Cow::Borrowed(self.raw),
            ..Message::default()
        })
    }
}

fn part<'x>(headers: Vec<Header<'x>>, state: &State, body: PartType<'x>) -> MessagePart<'x> {
    MessagePart {
        headers,
        is_encoding_problem: false,
        body,
        encoding: Encoding::None,
        offset_header: state.offset_header as u32,
        offset_body: state.offset_body as u32,
        offset_end: state.offset_end as u32,
    }
}

/// The body as the walk may read it (see the module's comment).
fn text(body: &[u8]) -> Cow<'_, str> {
    Cow::Borrowed(std::str::from_utf8(body).unwrap_or("\u{fffd}"))
}

/// Where `--boundary` first starts in `raw` from `from` (both dashes in that range).
fn delimiter(raw: &[u8], from: usize, boundary: &[u8]) -> Option<usize> {
    if boundary.is_empty() {
        return None; // no multipart is read with an empty boundary
    }
    let pattern = [b"--".as_slice(), boundary].concat();
    memchr::memmem::find(raw.get(from..)?, &pattern).map(|at| from + at)
}

/// Where mail-parser ends a part or a preamble whose delimiter starts at `at`: at the
/// last line break before it (before its CR, if any, when that is in the range), or at
/// `from` when there is none.
fn last_line_end(raw: &[u8], from: usize, at: usize) -> usize {
    match memchr::memrchr(b'\n', &raw[from..at]) {
        Some(i) if i > 0 && raw[from + i - 1] == b'\r' => from + i - 1,
        Some(i) => from + i,
        None => from,
    }
}

/// `MessageStream::mime_part`, body left undecoded: the end of the body that starts at
/// the stream's position, the stream past its delimiter (or at the end of the mail when
/// there is no boundary). `None` when the boundary never comes: the stream has not moved.
fn mime_part(stream: &mut MessageStream, raw: &[u8], boundary: Option<&[u8]>) -> Option<usize> {
    let from = stream.offset();
    let boundary = boundary.unwrap_or_default();
    if boundary.is_empty() {
        stream.seek_end();
        return Some(raw.len());
    }
    let at = delimiter(raw, from, boundary)?;
    stream.skip_bytes(at + 2 + boundary.len() - from);
    // A delimiter inside a line ends the part where it starts.
    Some(if at > from && raw[at - 1] != b'\n' {
        at
    } else {
        last_line_end(raw, from, at)
    })
}

/// `MessageStream::seek_next_part`: past the first delimiter from the stream's position;
/// the stream stays where it was when there is none.
fn seek_next_part(stream: &mut MessageStream, raw: &[u8], boundary: &[u8]) -> bool {
    let from = stream.offset();
    let Some(at) = delimiter(raw, from, boundary) else {
        return false;
    };
    stream.skip_bytes(at + 2 + boundary.len() - from);
    true
}

/// `MessageStream::seek_next_part_offset`: past the first delimiter from the stream's
/// position, returning where the line before it ends; the stream stays where it was
/// when there is none.
fn seek_next_part_offset(stream: &mut MessageStream, raw: &[u8], boundary: &[u8]) -> Option<usize> {
    let from = stream.offset();
    let at = delimiter(raw, from, boundary)?;
    stream.skip_bytes(at + 2 + boundary.len() - from);
    Some(last_line_end(raw, from, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later() -> Instant {
        Instant::now() + std::time::Duration::from_secs(60)
    }

    fn read(raw: &[u8]) -> Message<'_> {
        match scan(raw, later()) {
            Scan::Read(msg) => msg,
            _ => panic!("not read"),
        }
    }

    /// mail-parser ends a part at `--boundary` inside a line where it starts, and
    /// otherwise at the line break before it (before its CR); the structure parser reads
    /// the same (seen failing with either rule left out).
    #[test]
    fn a_part_ends_where_mail_parser_ends_it() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\
            Content-Type: text/html\n\n<p>x</p>--b\n\
            Content-Type: text/plain\n\ny\r\n--b--\n";
        let msg = read(raw);
        let body = |i: usize| {
            let p = &msg.parts[i];
            &raw[p.offset_body as usize..p.offset_end as usize]
        };
        assert_eq!(body(1), b"<p>x</p>");
        assert_eq!(body(2), b"y");
        assert!(matches!(&msg.parts[0].body, PartType::Multipart(c) if c == &[1, 2]));
        assert!(matches!(&msg.parts[1].body, PartType::Html(t) if t == "<p>x</p>"));
        let structure = STRUCTURE.parse(raw).unwrap();
        for (ours, theirs) in msg.parts.iter().zip(&structure.parts) {
            assert_eq!(ours.offset_end, theirs.offset_end);
        }
    }

    /// A text part that is not UTF-8 is not converted: its text is a lone U+FFFD, which
    /// `utf8_body` refuses as it refuses mail-parser's lossy text.
    #[test]
    fn text_that_is_not_utf8_is_not_converted() {
        let raw = b"Content-Type: text/html; charset=windows-1252\n\n<p>caf\xe9</p>\n";
        let msg = read(raw);
        assert!(matches!(&msg.parts[0].body, PartType::Html(t) if t == "\u{fffd}"));
        assert!(
            super::super::utf8_body(&msg.parts[0], None, super::super::Transfer::Identity)
                .is_none()
        );
    }

    /// A message part or a digest is left to the usual parse.
    #[test]
    fn a_message_part_is_left_to_the_usual_parse() {
        for raw in [
            &b"Content-Type: message/rfc822\n\nSubject: x\n\ny\n"[..],
            b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: x\n\n--d--\n",
        ] {
            assert!(matches!(scan(raw, later()), Scan::Usual));
        }
    }
}
