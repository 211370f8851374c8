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
//! Message parts are read as mail-parser reads them: a plain `message/rfc822` (or a part
//! of a digest without a type) in line, with the boundary of the multipart around it; an
//! encoded one decoded by mail-parser's own decoder and read apart, three deep at most.
//! The walk still takes mail-parser's usual reading of such a mail (the structure
//! parser reads them otherwise: see [`super::structure`]), and the scan, run first,
//! bounds what that reading may cost.
//!
//! **What a reading may cost** ([`Budget`]): mail-parser searches for a multipart's
//! delimiter from where it stands to the end of the mail when it never comes, and a
//! sender can declare thousands of such multiparts (or nest them in a message part) to
//! make its reading quadratic: a 1.2 MB mail of 20,000 took 21 s, and nothing can stop
//! mail-parser once it has started. The scan counts the bytes every search and decoder
//! goes through, as mail-parser's would, and stops past [`SEARCH_FACTOR`] times the
//! mail's size: a well-formed mail's searches go through it about once. Every use of
//! mail-parser's own reading asks the scan first ([`super::structure::usual`]).
//!
//! The structure parser's own reading stays the reference for mails without a message
//! part, and mail-parser's usual reading for those with one: tests and the fuzzers hold
//! the scan to them.

use super::structure::{STRUCTURE, decoded_as};
use mail_parser::decoders::DecodeFnc;
use mail_parser::parsers::MessageStream;
use mail_parser::{
    ContentType, Encoding, GetHeader, Header, HeaderName, Message, MessagePart, PartType,
};
use std::borrow::Cow;
use std::time::Instant;

/// How many times its own size a mail's reading may search through (see the module's
/// comment), and a floor for small mails.
const SEARCH_FACTOR: usize = 16;
const SEARCH_FLOOR: usize = 1 << 20;

/// How deep mail-parser reads encoded messages inside one another (its
/// `MAX_NESTED_ENCODED`); a deeper one is left as it is.
const MAX_NESTED_ENCODED: usize = 3;

/// What the scan made of a mail.
pub(crate) enum Scan<'x> {
    Read(Message<'x>),
    /// No header at all: mail-parser finds no message either.
    Nothing,
    /// The deadline passed before the reading was done.
    Deadline,
    /// The reading would search through more than the [`Budget`] allows.
    TooComplex,
}

/// Why a reading stopped before its end.
enum Stop {
    Deadline,
    TooComplex,
}

/// The bytes a reading may still go through (see the module's comment).
struct Budget {
    left: usize,
}

impl Budget {
    fn for_mail(len: usize) -> Budget {
        Budget {
            left: len
                .saturating_mul(SEARCH_FACTOR)
                .saturating_add(SEARCH_FLOOR),
        }
    }

    fn spend(&mut self, bytes: usize) {
        self.left = self.left.saturating_sub(bytes);
    }
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
    /// a part without `Content-Type` is plain text, or a message in a digest.
    fn of(ct: Option<&ContentType>, parent: Kind) -> Kind {
        let Some(ct) = ct else {
            return match parent {
                Kind::Digest => Kind::Message,
                _ => Kind::TextPlain,
            };
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

/// mail-parser's `MessageParserState`, as far as the structure needs it: the state of
/// a message (the root, or one read in line) or of a multipart.
struct State {
    kind: Kind,
    boundary: Option<Vec<u8>>,
    part_id: u32,
    sub_part_ids: Vec<u32>,
    offset_header: usize,
    offset_body: usize,
    offset_end: usize,
}

impl State {
    fn new(kind: Kind, boundary: Option<Vec<u8>>, part_id: u32) -> State {
        State {
            kind,
            boundary,
            part_id,
            sub_part_ids: Vec::new(),
            offset_header: 0,
            offset_body: 0,
            offset_end: 0,
        }
    }
}

/// Reads `raw`'s structure as the structure parser does, message parts as mail-parser
/// does (see the module's comment), giving up once `deadline` has passed (asked before
/// each part) or past the [`Budget`].
pub(crate) fn scan(raw: &[u8], deadline: Option<Instant>) -> Scan<'_> {
    let mut budget = Budget::for_mail(raw.len());
    match read(raw, deadline, &mut budget, MAX_NESTED_ENCODED) {
        Ok(Some(msg)) => Scan::Read(msg),
        Ok(None) => Scan::Nothing,
        Err(Stop::Deadline) => Scan::Deadline,
        Err(Stop::TooComplex) => Scan::TooComplex,
    }
}

/// One message's reading (the mail's, or an encoded message's, `depth` more of which
/// may be read inside it); `None` when it has no header at all.
fn read<'x>(
    raw: &'x [u8],
    deadline: Option<Instant>,
    budget: &mut Budget,
    depth: usize,
) -> Result<Option<Message<'x>>, Stop> {
    let mut r = Reader {
        raw,
        stream: MessageStream::new(raw),
        parts: Vec::new(),
        state: State::new(Kind::Message, None, 0),
        stack: Vec::with_capacity(4),
        budget,
        deadline,
        depth,
    };
    let mut headers = Vec::new();
    loop {
        r.go_on()?;
        r.state.offset_header = r.stream.offset();
        if !r.stream.parse_headers(&STRUCTURE, &mut headers) {
            break;
        }
        r.state.offset_body = r.stream.offset();
        r.state.sub_part_ids.push(r.parts.len() as u32);
        let ct = headers
            .header_value(&HeaderName::ContentType)
            .and_then(|v| v.as_content_type());
        let mut kind = Kind::of(ct, r.state.kind);
        let boundary = match kind {
            Kind::Multipart | Kind::Digest => ct.and_then(|c| c.attribute("boundary")),
            _ => None,
        };
        if let Some(boundary) = boundary.map(|b| b.as_bytes().to_vec()) {
            if r.open_multipart(&mut headers, kind, boundary) {
                continue;
            }
            kind = Kind::TextOther; // no first delimiter: read as text
        }
        let encoding = match kind {
            Kind::Message => decoded_as(&headers, raw),
            _ => Encoding::None,
        };
        if kind == Kind::Message && encoding == Encoding::None {
            r.open_message(&mut headers);
            continue;
        }
        r.leaf(std::mem::take(&mut headers), kind, encoding)?;
        if r.state.boundary.is_some() {
            if !r.close_parts() {
                break;
            }
        } else if r.stream.offset() >= raw.len() {
            break;
        }
    }
    Ok(r.finish(headers))
}

/// An entry of mail-parser's stack: the state around the one being read, with the
/// parts of the message around it when the one being read is a message read in line.
type Frame<'x> = (State, Option<Vec<MessagePart<'x>>>);

/// The reading's state: mail-parser's stream, the parts read, the multipart or message
/// being read and those around it.
struct Reader<'x, 'b> {
    raw: &'x [u8],
    stream: MessageStream<'x>,
    parts: Vec<MessagePart<'x>>,
    state: State,
    stack: Vec<Frame<'x>>,
    budget: &'b mut Budget,
    deadline: Option<Instant>,
    depth: usize,
}

impl<'x> Reader<'x, '_> {
    /// Whether to read the next part: the deadline not passed, the budget not spent.
    fn go_on(&self) -> Result<(), Stop> {
        if self.deadline.is_some_and(|d| Instant::now() > d) {
            return Err(Stop::Deadline);
        }
        if self.budget.left == 0 {
            return Err(Stop::TooComplex);
        }
        Ok(())
    }

    /// A multipart's headers read: past its first delimiter, its parts are read next.
    /// `false` (nothing read, `headers` left) when there is no delimiter.
    fn open_multipart(
        &mut self,
        headers: &mut Vec<Header<'x>>,
        kind: Kind,
        boundary: Vec<u8>,
    ) -> bool {
        if !seek_next_part(&mut self.stream, self.raw, &boundary, self.budget) {
            return false;
        }
        let mut multipart = part(std::mem::take(headers), &self.state, PartType::default());
        multipart.offset_end = 0; // set when its end is read
        let inner = State::new(kind, Some(boundary), self.parts.len() as u32);
        self.parts.push(multipart);
        self.stack
            .push((std::mem::replace(&mut self.state, inner), None));
        self.stream.skip_crlf();
        true
    }

    /// A plain message part's headers read: the message in it is read next, in line, its
    /// parts apart, ended by the boundary of the multipart around it.
    fn open_message(&mut self, headers: &mut Vec<Header<'x>>) {
        let mut message = part(std::mem::take(headers), &self.state, PartType::default());
        message.offset_end = 0; // set when its end is read
        let boundary = self.state.boundary.take();
        let inner = State::new(Kind::Message, boundary, self.parts.len() as u32);
        self.parts.push(message);
        let around = std::mem::take(&mut self.parts);
        self.stack
            .push((std::mem::replace(&mut self.state, inner), Some(around)));
    }

    /// A part that is neither a multipart nor a plain message part: its body read to its
    /// end (an encoded message part decoded, and read).
    fn leaf(
        &mut self,
        headers: Vec<Header<'x>>,
        mut kind: Kind,
        mut encoding: Encoding,
    ) -> Result<(), Stop> {
        let (end, decoded) = if kind == Kind::Message {
            self.decode_message(encoding)
                .map_or((None, None), |(end, bytes)| (Some(end), Some(bytes)))
        } else {
            let boundary = self.state.boundary.as_deref();
            (
                mime_part(&mut self.stream, self.raw, boundary, self.budget),
                None,
            )
        };
        let mut problem = false;
        match end {
            Some(end) => self.state.offset_end = end,
            None => {
                // mail-parser's recovery: read to the next boundary or the end, as text.
                problem = true;
                encoding = Encoding::None;
                if kind != Kind::TextPlain {
                    kind = Kind::TextOther;
                }
                let from = self.stream.offset();
                let (end, found) = self.stream.seek_part_end(self.state.boundary.as_deref());
                self.budget.spend(self.stream.offset().saturating_sub(from));
                self.state.offset_end = end;
                if !found {
                    self.state.boundary = None;
                }
            }
        }
        let state = &self.state;
        let body = self
            .raw
            .get(state.offset_body..state.offset_end)
            .unwrap_or_default();
        let body = match (kind, decoded) {
            (Kind::TextHtml, _) => PartType::Html(text(body)),
            (Kind::TextPlain | Kind::TextOther, _) => PartType::Text(text(body)),
            (Kind::Message, Some(decoded)) => {
                let (body, unread) = self.encoded_message(decoded)?;
                problem = unread;
                body
            }
            _ => PartType::Binary(Cow::Borrowed(body)),
        };
        let mut leaf = part(headers, &self.state, body);
        leaf.encoding = encoding;
        leaf.is_encoding_problem = problem;
        self.parts.push(leaf);
        Ok(())
    }

    /// An encoded message part's end and body, decoded by mail-parser's own decoder (as
    /// it finds the end); `None` where the decoder gives up.
    fn decode_message(&mut self, encoding: Encoding) -> Option<(usize, Cow<'x, [u8]>)> {
        let decode: DecodeFnc = match encoding {
            Encoding::Base64 => MessageStream::decode_base64_mime,
            _ => MessageStream::decode_quoted_printable_mime,
        };
        let from = self.stream.offset();
        let boundary = self.state.boundary.as_deref().unwrap_or_default();
        let (end, bytes) = decode(&mut self.stream, boundary);
        // A decoder that gives up leaves the stream where it was: count all it may read.
        let through = if end == usize::MAX {
            self.raw.len()
        } else {
            self.stream.offset()
        };
        self.budget.spend(through.saturating_sub(from));
        (end != usize::MAX).then_some((end, bytes))
    }

    /// An encoded message part's body, decoded: read apart, as mail-parser reads it, on
    /// the same budget. `true` with it when it is not read (too deep, or no message).
    fn encoded_message(&mut self, decoded: Cow<'x, [u8]>) -> Result<(PartType<'x>, bool), Stop> {
        if self.depth == 0 {
            return Ok((PartType::Binary(decoded), true));
        }
        let parts: Vec<MessagePart<'static>> =
            match read(&decoded, self.deadline, self.budget, self.depth - 1)? {
                Some(msg) => msg.parts.into_iter().map(MessagePart::into_owned).collect(),
                None => return Ok((PartType::Binary(decoded), true)),
            };
        let message = Message {
            parts,
            raw_message: Cow::Owned(decoded.into_owned()),
            ..Message::default()
        };
        Ok((PartType::Message(message), false))
    }

    /// After a part inside a multipart or a message read in line: ends every message
    /// read in line and every multipart whose closing delimiter follows. `true` when a
    /// part's headers come next, `false` when the reading is over (or where mail-parser
    /// asserts nothing can be, as it stops there).
    fn close_parts(&mut self) -> bool {
        loop {
            if self.state.kind == Kind::Message && !self.close_message() {
                return false;
            }
            if !self.stream.is_multipart_end() {
                return true;
            }
            let state = &mut self.state;
            let Some(multipart) = self.parts.get_mut(state.part_id as usize) else {
                return false;
            };
            if state.sub_part_ids != [0] {
                multipart.body = PartType::Multipart(std::mem::take(&mut state.sub_part_ids));
            }
            if let Some((outer, _)) = self.stack.pop() {
                *state = outer;
                if let Some(boundary) = &state.boundary
                    && let Some(end) =
                        seek_next_part_offset(&mut self.stream, self.raw, boundary, self.budget)
                {
                    multipart.offset_end = end as u32;
                    continue;
                }
            }
            multipart.offset_end = self.stream.offset() as u32;
            return false;
        }
    }

    /// A message read in line is over, its last delimiter just passed: it becomes the
    /// body of its part, ending where the line before that delimiter ends. `false` where
    /// mail-parser asserts nothing can be.
    fn close_message(&mut self) -> bool {
        let Some((outer, Some(around))) = self.stack.pop() else {
            return false;
        };
        let end = match &self.state.boundary {
            Some(b) => {
                // mail-parser's arithmetic: a delimiter here always follows headers.
                let at = self.stream.offset().saturating_sub(b.len() + 2);
                match at.checked_sub(2).and_then(|i| self.raw.get(i)) {
                    Some(b'\r') => at - 2,
                    _ => at.saturating_sub(1),
                }
            }
            None => self.stream.offset(),
        };
        let inner = std::mem::replace(&mut self.state, outer);
        let nested = std::mem::replace(&mut self.parts, around);
        self.message_read(inner.part_id, nested, end);
        self.state.boundary = inner.boundary;
        true
    }

    /// The parts of a message read in line, `nested`, made the body of its part, which
    /// ends at `end`: text when there are none.
    fn message_read(&mut self, id: u32, nested: Vec<MessagePart<'x>>, end: usize) {
        let raw = self.raw;
        let Some(part) = self.parts.get_mut(id as usize) else {
            return;
        };
        part.offset_end = end as u32;
        if nested.is_empty() {
            // mail-parser's text of it (its body, cut at the boundary when the mail
            // ends early) is not read: the walk takes a message part's body by offsets.
            let body = raw.get(part.offset_body as usize..end).unwrap_or_default();
            part.is_encoding_problem = true;
            part.body = PartType::Text(text(body));
        } else {
            part.body = PartType::Message(Message {
                parts: nested,
                raw_message: Cow::Borrowed(raw),
                ..Message::default()
            });
        }
    }

    /// The message read; `headers` are those read last, without a body after them.
    fn finish(mut self, headers: Vec<Header<'x>>) -> Option<Message<'x>> {
        // A mail cut short: the multiparts and messages still open end where the
        // reading stopped.
        let at = self.stream.offset();
        while let Some((outer, around)) = self.stack.pop() {
            let inner = std::mem::replace(&mut self.state, outer);
            match around {
                Some(around) => {
                    let nested = std::mem::replace(&mut self.parts, around);
                    self.message_read(inner.part_id, nested, at);
                }
                None => {
                    if let Some(multipart) = self.parts.get_mut(inner.part_id as usize) {
                        multipart.offset_end = at as u32;
                        if inner.sub_part_ids != [0] {
                            multipart.body = PartType::Multipart(inner.sub_part_ids);
                        }
                    }
                }
            }
        }
        let len = self.raw.len() as u32;
        if let Some(root) = self.parts.first_mut() {
            root.offset_end = len;
        } else if headers.is_empty() {
            return None;
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
        Some(Message {
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

/// Where `--boundary` first starts in `raw` from `from` (both dashes in that range),
/// the bytes searched through spent.
fn delimiter(raw: &[u8], from: usize, boundary: &[u8], budget: &mut Budget) -> Option<usize> {
    if boundary.is_empty() {
        return None; // no multipart is read with an empty boundary
    }
    let pattern = [b"--".as_slice(), boundary].concat();
    let found = memchr::memmem::find(raw.get(from..)?, &pattern).map(|at| from + at);
    let through = found.map_or(raw.len(), |at| at + pattern.len());
    budget.spend(through.saturating_sub(from));
    found
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
fn mime_part(
    stream: &mut MessageStream,
    raw: &[u8],
    boundary: Option<&[u8]>,
    budget: &mut Budget,
) -> Option<usize> {
    let from = stream.offset();
    let boundary = boundary.unwrap_or_default();
    if boundary.is_empty() {
        stream.seek_end();
        budget.spend(raw.len().saturating_sub(from));
        return Some(raw.len());
    }
    let at = delimiter(raw, from, boundary, budget)?;
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
fn seek_next_part(
    stream: &mut MessageStream,
    raw: &[u8],
    boundary: &[u8],
    budget: &mut Budget,
) -> bool {
    let from = stream.offset();
    let Some(at) = delimiter(raw, from, boundary, budget) else {
        return false;
    };
    stream.skip_bytes(at + 2 + boundary.len() - from);
    true
}

/// `MessageStream::seek_next_part_offset`: past the first delimiter from the stream's
/// position, returning where the line before it ends; the stream stays where it was
/// when there is none.
fn seek_next_part_offset(
    stream: &mut MessageStream,
    raw: &[u8],
    boundary: &[u8],
    budget: &mut Budget,
) -> Option<usize> {
    let from = stream.offset();
    let at = delimiter(raw, from, boundary, budget)?;
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
        match scan(raw, Some(later())) {
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

    /// Multiparts whose delimiter never comes: each is searched for to the end of the
    /// mail, so their reading costs the square of the mail. Past the budget the scan
    /// stops, in the mail and in a message part (read in line, as mail-parser reads it),
    /// where the same parts delimited are read (seen failing with the budget not spent
    /// in `delimiter`).
    #[test]
    fn a_reading_that_would_cost_the_square_of_the_mail_stops() {
        let mail = |message: bool, delimited: bool| {
            let mut raw = String::from("Content-Type: multipart/mixed; boundary=o\n\n--o\n");
            if message {
                raw.push_str("Content-Type: message/rfc822\n\nSubject: in\n");
                raw.push_str("Content-Type: multipart/mixed; boundary=o2\n\n--o2\n");
            }
            let o = if message { "o2" } else { "o" };
            for i in 0..3000 {
                raw.push_str(&format!(
                    "Content-Type: multipart/mixed; boundary=zz{i}\n\n"
                ));
                if delimited {
                    raw.push_str(&format!("--zz{i}\n\nx\n--zz{i}--\n"));
                }
                raw.push_str(&format!("x\n--{o}\n"));
            }
            raw.push_str(&format!("\n--{o}--\n"));
            raw.into_bytes()
        };
        for message in [false, true] {
            let raw = mail(message, false);
            assert!(raw.len() < SEARCH_FLOOR / 4, "{}", raw.len());
            assert!(
                matches!(scan(&raw, None), Scan::TooComplex),
                "message: {message}"
            );
            assert!(matches!(scan(&mail(message, true), None), Scan::Read(_)));
        }
    }

    /// The project's mails (fixtures and fuzz seeds; or the mails of `SCAN_DIR`, e.g. the
    /// corpus) read within a quarter of the budget: their searches go through each about
    /// once. Prints the largest shares, for docs/limits.md:
    /// `SCAN_DIR=../shared/corpus/real cargo test -p mailveil-core --lib well_formed_mail_reads -- --nocapture`.
    #[test]
    fn well_formed_mail_reads_well_within_the_budget() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut dirs = match std::env::var_os("SCAN_DIR") {
            Some(dir) => vec![std::path::PathBuf::from(dir)],
            None => vec![root.join("tests/fixtures"), root.join("fuzz/seeds")],
        };
        let mut spent = Vec::new();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let raw = std::fs::read(&path).unwrap();
                let mut budget = Budget { left: usize::MAX };
                assert!(super::read(&raw, None, &mut budget, MAX_NESTED_ENCODED).is_ok());
                let times = (usize::MAX - budget.left) as f64 / raw.len().max(1) as f64;
                spent.push((times, raw.len(), path));
            }
        }
        spent.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (times, len, path) in spent.iter().take(5) {
            println!("{times:.2} x {len} B {}", path.display());
        }
        assert!(spent.len() > 50, "only {} mails", spent.len());
        for (times, len, path) in &spent {
            let fits = *times * (*len as f64) <= (SEARCH_FACTOR / 4 * len + SEARCH_FLOOR) as f64;
            assert!(fits, "{times:.2} x {len} B: {}", path.display());
        }
    }

    /// A plain message part is read in line, its parts apart, ended by the boundary
    /// around it; an encoded one decoded and read apart (the structure tests compare
    /// every such reading with mail-parser's).
    #[test]
    fn message_parts_are_read_as_mail_parser_reads_them() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\
            Content-Type: message/rfc822\n\nSubject: in\n\
            Content-Type: text/html\n\n<p>in</p>\n--b\n\
            Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n\
            U3ViamVjdDogeAoKeQo=\n--b--\n";
        let msg = read(raw);
        assert_eq!(msg.parts.len(), 3);
        let PartType::Message(plain) = &msg.parts[1].body else {
            panic!("not read in line");
        };
        let inner = &plain.parts[0];
        assert_eq!(
            &raw[inner.offset_body as usize..inner.offset_end as usize],
            b"<p>in</p>"
        );
        assert_eq!(msg.parts[1].offset_end, inner.offset_end);
        let PartType::Message(encoded) = &msg.parts[2].body else {
            panic!("not decoded");
        };
        assert_eq!(encoded.raw_message.as_ref(), b"Subject: x\n\ny\n");
        assert_eq!(msg.parts[2].encoding, Encoding::Base64);
    }
}
