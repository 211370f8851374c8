//! One milter connection as a state machine, no I/O: commands in, replies out. At the
//! end of a message it hands back a [`Message`] (the envelope, the raw message rebuilt
//! from the header fields and body as the MTA gave them); the caller cleans it with the
//! core and turns the result into replies with [`eom_plan`]: only what changed is
//! sent (the report header, changed or removed headers, the body when it differs).
//!
//! The body is held once: the raw message is built in the body's own buffer at end of
//! message, and the new body goes out as chunks cut from the cleaned bytes one at a time.
//!
//! A message over a limit (the size limit, or the memory budget the caller charges) is
//! not held: from then on the session hands its bytes, rebuilt as the raw message, to
//! the caller for its spool ([`Session::take_spill`]); the caller wraps it from there.

use super::codec::{Command, Reply, action, body_chunks, proto};
use mailveil_core::{Cleaned, Envelope};
use std::ops::Range;

/// Actions we ask for: add the report header, replace the body, change/remove headers.
const WANTED_ACTIONS: u32 = action::ADDHDRS | action::CHGBODY | action::CHGHDRS;
/// The highest protocol version spoken.
const VERSION: u32 = 6;

/// What the caller does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these replies (possibly none).
    Reply(Vec<Reply>),
    /// End of message: clean this and answer with [`eom_replies`].
    Clean(Message),
    /// Close the connection.
    Close,
}

/// A complete message at end of data.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    /// MAIL FROM without the angle brackets (`None` for the null sender).
    pub sender: Option<String>,
    /// RCPT TO addresses without the angle brackets.
    pub recipients: Vec<String>,
    /// The MTA's queue id (macro `i`), for logs.
    pub queue_id: Option<String>,
    /// The header fields as (name, value after the colon, CRLF line breaks).
    pub fields: Vec<Field>,
    /// The raw message: the fields, a blank line, the body as the MTA gave it (CRLF).
    raw: Vec<u8>,
    /// Where the body starts in `raw`.
    body_start: usize,
    /// The message went to the caller's spool, not to memory: `fields` and `raw` are
    /// empty.
    pub spooled: bool,
    /// The MTA keeps the space after the colon in header values (SMFIP_HDR_LEADSPC).
    pub leadspc: bool,
    /// The actions the MTA allowed.
    pub actions: u32,
}

impl Message {
    /// A message of these fields and this body (the envelope left empty).
    #[cfg(test)]
    pub fn new(fields: Vec<Field>, body: Vec<u8>) -> Message {
        let mut m = Message {
            sender: None,
            recipients: Vec::new(),
            queue_id: None,
            fields,
            raw: Vec::new(),
            body_start: 0,
            spooled: false,
            leadspc: true,
            actions: 0,
        };
        m.assemble(body);
        m
    }

    /// Writes the fields and a blank line in front of `body`, in its own buffer.
    fn assemble(&mut self, body: Vec<u8>) {
        let mut head = Vec::with_capacity(64 * self.fields.len() + 2);
        for f in &self.fields {
            f.write(&mut head);
        }
        head.extend_from_slice(b"\r\n");
        self.body_start = head.len();
        self.raw = prepend(&head, body);
    }

    /// The raw message: header fields, a blank line, the body (CRLF).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The body as the MTA gave it.
    pub fn body(&self) -> &[u8] {
        &self.raw[self.body_start..]
    }
}

/// The pipeline reads the raw message in place.
impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        self.raw()
    }
}

/// One header field: the name and the bytes after the colon (CRLF inside folded values,
/// no final line break).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub value: Vec<u8>,
}

impl Field {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&self.value);
        out.extend_from_slice(b"\r\n");
    }

    /// The value as a milter reply carries it: folds as bare LF (the MTA's own line
    /// breaks inside headers), without the leading space unless HDR_LEADSPC was agreed.
    fn wire_value(&self, leadspc: bool) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.value.len());
        let mut i = 0;
        while i < self.value.len() {
            if self.value[i] == b'\r' && self.value.get(i + 1) == Some(&b'\n') {
                i += 1;
                continue;
            }
            v.push(self.value[i]);
            i += 1;
        }
        if !leadspc {
            let skip = v.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
            v.drain(..skip);
        }
        v
    }
}

/// `head` in front of `body`, in the body's own buffer: the body is moved up in place
/// rather than copied, so a large mail is held once.
fn prepend(head: &[u8], mut body: Vec<u8>) -> Vec<u8> {
    let len = body.len();
    body.reserve_exact(head.len());
    body.resize(len + head.len(), 0);
    body.copy_within(..len, head.len());
    body[..head.len()].copy_from_slice(head);
    body
}

/// Bare LF to CRLF (the MTA hands folded header values over with LF only).
fn crlf(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    for (i, &b) in value.iter().enumerate() {
        if b == b'\n' && (i == 0 || value[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// The state of one connection.
#[derive(Debug)]
pub struct Session {
    max_message_bytes: usize,
    leadspc: bool,
    actions: u32,
    sender: Option<String>,
    recipients: Vec<String>,
    queue_id: Option<String>,
    fields: Vec<Field>,
    body: Vec<u8>,
    size: usize,
    /// The end of the header fields was seen (or the body began).
    headers_done: bool,
    /// The message goes to the caller's spool from now on (over a limit).
    spooling: bool,
    /// Bytes of the raw message for the spool, not yet taken by the caller.
    spill: Vec<u8>,
    /// The blank line after the header fields is in the spill.
    blank_spilled: bool,
}

/// The address of a MAIL/RCPT argument as the core matches it (policies, recipient
/// tokens): the mailbox with its local part unquoted, as `serve` gives it, so that
/// `<"alice"@example.org>` is alice's mail here too. What is no RFC 5321 path is kept as
/// written, without its brackets.
fn address(arg: Option<&String>) -> Option<String> {
    let a = arg?.trim();
    if let Ok(path) = mailveil_smtp::path::Mailbox::parse_path(a) {
        return path.map(|m| m.address());
    }
    let a = a.strip_prefix('<').unwrap_or(a);
    let a = a.strip_suffix('>').unwrap_or(a);
    (!a.is_empty()).then(|| a.to_string())
}

impl Session {
    /// A new connection; messages above `max_message_bytes` are not held but spilled
    /// (see [`Session::take_spill`]).
    pub fn new(max_message_bytes: usize) -> Self {
        Session {
            max_message_bytes,
            leadspc: false,
            actions: 0,
            sender: None,
            recipients: Vec::new(),
            queue_id: None,
            fields: Vec::new(),
            body: Vec::new(),
            size: 0,
            headers_done: false,
            spooling: false,
            spill: Vec::new(),
            blank_spilled: false,
        }
    }

    fn reset_message(&mut self) {
        self.sender = None;
        self.recipients.clear();
        self.queue_id = None;
        self.fields.clear();
        self.body = Vec::new();
        self.size = 0;
        self.headers_done = false;
        self.spooling = false;
        self.spill = Vec::new();
        self.blank_spilled = false;
    }

    fn account(&mut self, n: usize) {
        self.size = self.size.saturating_add(n);
        if self.size > self.max_message_bytes {
            self.spool();
        }
    }

    /// Keeps nothing more of this message in memory: what was kept goes to the spill,
    /// rebuilt as the raw message (the fields, the blank line once the headers are
    /// done, the body), and so does everything that follows. The caller moves the
    /// spill to its spool after each command.
    pub fn spool(&mut self) {
        if self.spooling {
            return;
        }
        self.spooling = true;
        let mut head = Vec::with_capacity(64 * self.fields.len() + 2);
        for f in std::mem::take(&mut self.fields) {
            f.write(&mut head);
        }
        if self.headers_done {
            head.extend_from_slice(b"\r\n");
            self.blank_spilled = true;
        }
        self.spill = prepend(&head, std::mem::take(&mut self.body));
    }

    /// Whether the current message goes to the spool (see [`Session::spool`]).
    pub fn spooling(&self) -> bool {
        self.spooling
    }

    /// The bytes of the raw message to append to the spool now.
    pub fn take_spill(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.spill)
    }

    /// The blank line after the fields, into the spill, once.
    fn spill_blank(&mut self) {
        if self.spooling && !self.blank_spilled {
            self.spill.extend_from_slice(b"\r\n");
            self.blank_spilled = true;
        }
    }

    /// The bytes of header fields and body of the current message so far.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Handles one command.
    pub fn handle(&mut self, cmd: Command) -> Step {
        let cont = Step::Reply(vec![Reply::Continue]);
        match cmd {
            Command::OptNeg {
                version,
                actions,
                protocol,
            } => {
                self.actions = actions & WANTED_ACTIONS;
                let protocol = protocol & proto::HDR_LEADSPC;
                self.leadspc = protocol != 0;
                Step::Reply(vec![Reply::OptNeg {
                    version: version.clamp(2, VERSION),
                    actions: self.actions,
                    protocol,
                }])
            }
            Command::Macros { pairs, .. } => {
                for (k, v) in pairs {
                    if k == "i" && !v.is_empty() {
                        self.queue_id = Some(v);
                    }
                }
                Step::Reply(Vec::new())
            }
            Command::Connect { .. } | Command::Helo | Command::Data | Command::Unknown => cont,
            Command::Mail { args } => {
                // macros for this step came just before it: keep the queue id
                let queue_id = self.queue_id.take();
                self.reset_message();
                self.queue_id = queue_id;
                self.sender = address(args.first());
                cont
            }
            Command::Rcpt { args } => {
                if let Some(a) = address(args.first()) {
                    self.recipients.push(a);
                }
                cont
            }
            Command::Header { name, value } => {
                self.account(name.len() + value.len() + 3);
                let mut v = crlf(&value);
                if !self.leadspc {
                    v.insert(0, b' ');
                }
                let field = Field {
                    name: String::from_utf8_lossy(&name).into_owned(),
                    value: v,
                };
                if self.spooling {
                    field.write(&mut self.spill);
                } else {
                    self.fields.push(field);
                }
                cont
            }
            Command::EndOfHeaders => {
                self.headers_done = true;
                self.spill_blank();
                cont
            }
            Command::Body(chunk) => {
                self.headers_done = true;
                self.account(chunk.len());
                if self.spooling {
                    self.spill_blank();
                    self.spill.extend_from_slice(&chunk);
                } else {
                    self.body.extend_from_slice(&chunk);
                }
                cont
            }
            Command::EndOfMessage => {
                self.spill_blank();
                let mut msg = Message {
                    sender: self.sender.take(),
                    recipients: std::mem::take(&mut self.recipients),
                    queue_id: self.queue_id.take(),
                    fields: std::mem::take(&mut self.fields),
                    raw: Vec::new(),
                    body_start: 0,
                    spooled: self.spooling,
                    leadspc: self.leadspc,
                    actions: self.actions,
                };
                if !self.spooling {
                    msg.assemble(std::mem::take(&mut self.body));
                }
                // what is left of the spill is the caller's to take
                let spill = std::mem::take(&mut self.spill);
                self.reset_message();
                self.spill = spill;
                Step::Clean(msg)
            }
            Command::Abort => {
                self.reset_message();
                Step::Reply(Vec::new())
            }
            Command::QuitNewConnection => {
                self.reset_message();
                Step::Reply(Vec::new())
            }
            Command::Quit => Step::Close,
        }
    }
}

impl Message {
    /// The envelope, as the core takes it. A milter cannot split a mail: it is cleaned
    /// for every envelope recipient at once, the strictest of their policies applying
    /// (the core judges each recipient and merges).
    pub fn envelope(&self) -> Envelope {
        Envelope {
            sender: self.sender.clone(),
            recipients: self.recipients.clone(),
        }
    }
}

/// Splits a message into header fields (as [`Field`]) and the body.
pub fn split_message(raw: &[u8]) -> (Vec<Field>, &[u8]) {
    let mut fields: Vec<Field> = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let end = raw[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| at + i + 1);
        let line = &raw[at..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            return (fields, &raw[end..]);
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some(last) = fields.last_mut() {
                last.value.extend_from_slice(b"\r\n");
                last.value.extend_from_slice(content);
            }
        } else if let Some(colon) = content.iter().position(|&b| b == b':') {
            fields.push(Field {
                name: String::from_utf8_lossy(&content[..colon])
                    .trim()
                    .to_string(),
                value: content[colon + 1..].to_vec(),
            });
        } else {
            return (fields, &raw[at..]);
        }
        at = end;
    }
    (fields, &raw[raw.len()..])
}

/// What [`eom_replies`] decided, for the log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub headers_added: usize,
    pub headers_changed: usize,
    pub headers_removed: usize,
    pub body_replaced: bool,
    /// A change was needed that the MTA did not allow at negotiation.
    pub not_allowed: bool,
}

impl Changes {
    /// The changes for the log line.
    pub(crate) fn summary(&self) -> String {
        format!(
            "body_replaced={} headers_added={} headers_changed={} headers_removed={}",
            self.body_replaced, self.headers_added, self.headers_changed, self.headers_removed
        )
    }
}

enum Op {
    Change { at: usize, value: Option<Field> },
    Insert { before: usize, field: Field },
}

/// What to answer at end of message: the header changes, the new body (a range of the
/// cleaned bytes, sent in chunks), and the final verdict.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// Header changes, in the order they are sent.
    pub headers: Vec<Reply>,
    /// The new body: this range of the cleaned bytes.
    pub body: Option<Range<usize>>,
    /// The last reply: [`Reply::Continue`] or [`Reply::Tempfail`] at end of message.
    pub verdict: Option<Reply>,
    /// What was decided, for the log line.
    pub changes: Changes,
}

impl Plan {
    /// Just these replies.
    pub fn send(replies: Vec<Reply>) -> Plan {
        Plan {
            headers: replies,
            body: None,
            verdict: None,
            changes: Changes::default(),
        }
    }

    /// Only the verdict.
    pub fn verdict(verdict: Reply) -> Plan {
        Plan {
            verdict: Some(verdict),
            ..Plan::send(Vec::new())
        }
    }

    /// The replies in order; body chunks are cut from `cleaned` (the bytes the plan was
    /// made from) one at a time, as they are sent.
    pub fn replies<'a>(&'a self, cleaned: &'a [u8]) -> impl Iterator<Item = Reply> + 'a {
        let body = self.body.clone().map(|r| &cleaned[r]);
        self.headers
            .iter()
            .cloned()
            .chain(body.into_iter().flat_map(body_chunks))
            .chain(self.verdict.clone())
    }
}

/// The replies that turn `msg` into `cleaned.bytes`, ending with the final verdict.
#[cfg(test)]
pub fn eom_replies(msg: &Message, cleaned: &Cleaned) -> (Vec<Reply>, Changes) {
    let plan = eom_plan(msg, cleaned);
    let replies = plan.replies(&cleaned.bytes).collect();
    (replies, plan.changes)
}

/// The plan that turns `msg` into `cleaned.bytes`.
pub fn eom_plan(msg: &Message, cleaned: &Cleaned) -> Plan {
    if cleaned.tempfail {
        return Plan::verdict(Reply::Tempfail);
    }
    if !cleaned.report.changed {
        return Plan::verdict(Reply::Continue);
    }
    let (new_fields, new_body) = split_message(&cleaned.bytes);
    let (headers, mut changes) = header_changes(msg, &new_fields);
    let mut body = None;
    // A mail that could not be read comes back wrapped: its body changes too.
    if !msg.spooled && new_body != msg.body() {
        if msg.actions & action::CHGBODY != 0 {
            changes.body_replaced = true;
            body = Some(cleaned.bytes.len() - new_body.len()..cleaned.bytes.len());
        } else {
            changes.not_allowed = true;
        }
    }
    Plan {
        headers,
        body,
        verdict: Some(Reply::Continue),
        changes,
    }
}

/// The header replies that turn the fields of `msg` into `new_fields`: changes and
/// removals (SMFIR_CHGHEADER), insertions (SMFIR_INSHEADER), additions at the end
/// (SMFIR_ADDHEADER), each only when the MTA allowed it (else `not_allowed` is said).
pub fn header_changes(msg: &Message, new_fields: &[Field]) -> (Vec<Reply>, Changes) {
    let mut changes = Changes::default();
    let old = &msg.fields;
    // Walk both header lists: equal fields match; a field of the same name with another
    // value is a change; a new field that stands before an old one still to come is an
    // insertion; an old field that is gone is a removal.
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new_fields.len() {
        if old[i] == new_fields[j] {
            i += 1;
            j += 1;
        } else if old[i].name.eq_ignore_ascii_case(&new_fields[j].name)
            && !new_fields[j + 1..].contains(&old[i])
        {
            ops.push(Op::Change {
                at: i,
                value: Some(new_fields[j].clone()),
            });
            i += 1;
            j += 1;
        } else if new_fields[j + 1..].contains(&old[i]) {
            ops.push(Op::Insert {
                before: i,
                field: new_fields[j].clone(),
            });
            j += 1;
        } else {
            ops.push(Op::Change { at: i, value: None });
            i += 1;
        }
    }
    for at in i..old.len() {
        ops.push(Op::Change { at, value: None });
    }
    let appended = &new_fields[j..];

    let mut replies = Vec::new();
    let can = |a: u32| msg.actions & a == a;
    // Changes and removals from the last field up, so that the occurrence index of
    // each one (counted among fields of its name) is not moved by the ones before.
    for op in ops.iter().rev() {
        if let Op::Change { at, value } = op {
            if !can(action::CHGHDRS) {
                changes.not_allowed = true;
                continue;
            }
            let name = &old[*at].name;
            let index = old[..=*at]
                .iter()
                .filter(|f| f.name.eq_ignore_ascii_case(name))
                .count() as u32;
            let wire = match value {
                Some(f) => {
                    changes.headers_changed += 1;
                    f.wire_value(msg.leadspc)
                }
                None => {
                    changes.headers_removed += 1;
                    Vec::new()
                }
            };
            replies.push(Reply::ChangeHeader {
                index,
                name: name.clone(),
                value: wire,
            });
        }
    }
    // Insertions, from the last position up; positions count the old fields that stay.
    for op in ops.iter().rev() {
        if let Op::Insert { before, field } = op {
            if !can(action::ADDHDRS) {
                changes.not_allowed = true;
                continue;
            }
            let removed_before = ops
                .iter()
                .filter(|o| matches!(o, Op::Change { at, value: None } if at < before))
                .count();
            changes.headers_added += 1;
            replies.push(Reply::InsertHeader {
                index: (before - removed_before) as u32,
                name: field.name.clone(),
                value: field.wire_value(msg.leadspc),
            });
        }
    }
    for f in appended {
        if !can(action::ADDHDRS) {
            changes.not_allowed = true;
            continue;
        }
        changes.headers_added += 1;
        replies.push(Reply::AddHeader {
            name: f.name.clone(),
            value: f.wire_value(msg.leadspc),
        });
    }
    (replies, changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailveil_core::{Envelope, Policy, Rules, clean};

    fn session_with(headers: &[(&str, &str)], body: &str, leadspc: bool) -> Message {
        let mut s = Session::new(1 << 20);
        let Step::Reply(r) = s.handle(Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: if leadspc { 0x1f_ffff } else { 0 },
        }) else {
            panic!()
        };
        assert_eq!(
            r,
            vec![Reply::OptNeg {
                version: 6,
                actions: 0x13,
                protocol: if leadspc { proto::HDR_LEADSPC } else { 0 }
            }]
        );
        s.handle(Command::Mail {
            args: vec!["<news@sender.example>".into()],
        });
        s.handle(Command::Rcpt {
            args: vec!["<alice@example.test>".into()],
        });
        for (n, v) in headers {
            s.handle(Command::Header {
                name: n.as_bytes().to_vec(),
                value: v.as_bytes().to_vec(),
            });
        }
        s.handle(Command::EndOfHeaders);
        s.handle(Command::Body(body.as_bytes().to_vec()));
        match s.handle(Command::EndOfMessage) {
            Step::Clean(m) => m,
            other => panic!("{other:?}"),
        }
    }

    /// Applies the replies to the message the way an MTA would.
    fn apply(msg: &Message, replies: &[Reply]) -> Vec<u8> {
        let mut fields = msg.fields.clone();
        let mut body: Option<Vec<u8>> = None;
        let to_field = |name: &str, v: &[u8]| Field {
            name: name.into(),
            value: crlf(&if msg.leadspc {
                v.to_vec()
            } else {
                [b" ", v].concat()
            }),
        };
        for r in replies {
            match r {
                Reply::ChangeHeader { index, name, value } => {
                    let pos = fields
                        .iter()
                        .enumerate()
                        .filter(|(_, f)| f.name.eq_ignore_ascii_case(name))
                        .nth(*index as usize - 1)
                        .map(|(p, _)| p)
                        .unwrap();
                    if value.is_empty() {
                        fields.remove(pos);
                    } else {
                        fields[pos] = to_field(name, value);
                    }
                }
                Reply::InsertHeader { index, name, value } => {
                    fields.insert(*index as usize, to_field(name, value))
                }
                Reply::AddHeader { name, value } => fields.push(to_field(name, value)),
                Reply::ReplaceBody(c) => body.get_or_insert_with(Vec::new).extend(c),
                _ => {}
            }
        }
        let m = Message::new(fields, body.unwrap_or_else(|| msg.body().to_vec()));
        m.raw().to_vec()
    }

    const TRACKED: &str = "<html><body><p>Hi</p><img src=\"https://t.example/open.gif?e=alice@example.test\" width=\"1\" height=\"1\"></body></html>\r\n";

    #[test]
    fn tracked_mail_gets_header_on_top_and_new_body() {
        for leadspc in [true, false] {
            let sp = if leadspc { " " } else { "" };
            let msg = session_with(
                &[
                    ("From", &format!("{sp}news@sender.example")),
                    ("To", &format!("{sp}alice@example.test")),
                    ("Subject", &format!("{sp}folded\n\tsubject")),
                    ("Content-Type", &format!("{sp}text/html; charset=utf-8")),
                ],
                TRACKED,
                leadspc,
            );
            assert_eq!(msg.recipients, ["alice@example.test"]);
            assert_eq!(msg.sender.as_deref(), Some("news@sender.example"));
            let raw = msg.raw();
            assert!(raw.starts_with(b"From: news@sender.example\r\nTo: alice"));
            assert!(
                String::from_utf8_lossy(raw).contains("Subject: folded\r\n\tsubject\r\n"),
                "{}",
                String::from_utf8_lossy(raw)
            );
            let envelope = Envelope::to(msg.recipients.clone());
            let cleaned = clean(raw, &envelope, &Policy::default(), &Rules::default());
            let (replies, changes) = eom_replies(&msg, &cleaned);
            assert!(changes.body_replaced);
            assert_eq!(changes.headers_added, 1);
            assert_eq!(changes.headers_removed + changes.headers_changed, 0);
            assert!(
                matches!(&replies[0], Reply::InsertHeader { index: 0, name, .. } if name == "X-Mailveil")
            );
            assert_eq!(replies.last(), Some(&Reply::Continue));
            assert_eq!(apply(&msg, &replies), cleaned.bytes, "leadspc {leadspc}");
        }
    }

    #[test]
    fn read_receipts_are_removed_with_chgheader() {
        let msg = session_with(
            &[
                ("From", " a@sender.example"),
                ("Disposition-Notification-To", " a@sender.example"),
                ("Subject", " hi"),
                ("Return-Receipt-To", " a@sender.example"),
                ("Disposition-Notification-To", " b@sender.example"),
            ],
            "plain text\r\n",
            true,
        );
        let policy = Policy {
            strip_read_receipts: true,
            ..Policy::default()
        };
        let cleaned = clean(msg.raw(), &Envelope::default(), &policy, &Rules::default());
        let (replies, changes) = eom_replies(&msg, &cleaned);
        assert_eq!(changes.headers_removed, 3);
        assert!(!changes.body_replaced);
        // the last occurrence is removed first, so indexes stay right
        assert_eq!(
            replies[0],
            Reply::ChangeHeader {
                index: 2,
                name: "Disposition-Notification-To".into(),
                value: vec![]
            }
        );
        assert_eq!(apply(&msg, &replies), cleaned.bytes);
    }

    #[test]
    fn an_already_cleaned_mail_needs_no_change() {
        let msg = session_with(
            &[
                ("From", " a@sender.example"),
                ("Content-Type", " text/html"),
            ],
            TRACKED,
            true,
        );
        let once = clean(
            msg.raw(),
            &Envelope::default(),
            &Policy::default(),
            &Rules::default(),
        );
        // the same mail passing a second mailveil milter
        let (fields, body) = split_message(&once.bytes);
        let msg2 = Message {
            actions: msg.actions,
            ..Message::new(fields, body.to_vec())
        };
        assert_eq!(msg2.raw(), once.bytes);
        let twice = clean(
            msg2.raw(),
            &Envelope::default(),
            &Policy::default(),
            &Rules::default(),
        );
        let (replies, changes) = eom_replies(&msg2, &twice);
        assert_eq!(replies, vec![Reply::Continue]);
        assert_eq!(changes, Changes::default());
    }

    #[test]
    fn over_the_size_limit_the_raw_message_goes_to_the_spill_and_nothing_is_held() {
        let mut s = Session::new(100);
        s.handle(Command::OptNeg {
            version: 6,
            actions: 0x1ff,
            protocol: 0,
        });
        let mut spilled = Vec::new();
        for (name, value) in [("Subject", "x"), ("To", "a@b.example")] {
            s.handle(Command::Header {
                name: name.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
            });
            spilled.extend(s.take_spill());
        }
        assert!(spilled.is_empty() && !s.spooling(), "under the limit: held");
        s.handle(Command::EndOfHeaders);
        s.handle(Command::Body(vec![b'a'; 60]));
        assert!(!s.spooling());
        s.handle(Command::Body(vec![b'b'; 60]));
        assert!(s.spooling());
        assert!(s.body.is_empty() && s.fields.is_empty(), "nothing held");
        spilled.extend(s.take_spill());
        s.handle(Command::Body(b"c\r\n".to_vec()));
        spilled.extend(s.take_spill());
        let Step::Clean(msg) = s.handle(Command::EndOfMessage) else {
            panic!()
        };
        spilled.extend(s.take_spill());
        assert!(msg.spooled && msg.raw().is_empty());
        let expected = [
            b"Subject: x\r\nTo: a@b.example\r\n\r\n".as_slice(),
            &[b'a'; 60],
            &[b'b'; 60],
            b"c\r\n",
        ]
        .concat();
        assert_eq!(spilled, expected);
        // the next mail on the connection starts over, held again
        s.handle(Command::Mail {
            args: vec!["<a@b.example>".into()],
        });
        assert!(!s.spooling());
        // spooled while the header fields arrive (the budget refused one): the blank
        // line comes at the end of the headers, or with the body
        s.spool();
        s.handle(Command::Header {
            name: b"Subject".to_vec(),
            value: b"y".to_vec(),
        });
        s.handle(Command::Body(b"z".to_vec()));
        let Step::Clean(msg) = s.handle(Command::EndOfMessage) else {
            panic!()
        };
        assert!(msg.spooled);
        assert_eq!(s.take_spill(), b"Subject: y\r\n\r\nz");
    }

    #[test]
    fn a_mail_that_cannot_be_read_gets_its_wrapper_as_new_body() {
        // too deep for its policy: the core wraps it, and the body is replaced (until
        // issue 14 a milter sent only the header changes of a mail it could not read)
        let msg = session_with(
            &[
                ("From", " a@sender.example"),
                ("Content-Type", " text/html"),
            ],
            TRACKED,
            true,
        );
        let mut policy = Policy::default();
        policy.limits.max_time = std::time::Duration::ZERO;
        let cleaned = clean(msg.raw(), &msg.envelope(), &policy, &Rules::default());
        assert_eq!(cleaned.report.error.as_deref(), Some("time-limit"));
        let (replies, changes) = eom_replies(&msg, &cleaned);
        assert!(changes.body_replaced, "{changes:?}");
        let out = apply(&msg, &replies);
        assert_eq!(out, cleaned.bytes);
        assert!(!String::from_utf8_lossy(&out).contains("t.example"));
    }

    #[test]
    fn every_envelope_recipient_counts_and_the_strictest_policy_applies() {
        // Alice wants no remote content; bob's later policy keeps it. One copy goes to
        // both, so alice's strip wins; `"alice"` is alice, quoted or not.
        let rules = Rules::compile(&[mailveil_core::RuleSource {
            name: "user.toml".into(),
            text: "[[policy]]\nid = \"alice-strict\"\nrecipients = [\"alice@example.test\"]\nremote_content = \"strip\"\nsource = \"t\"\n\n\
                   [[policy]]\nid = \"bob-keep\"\nrecipients = [\"bob@example.test\"]\nremote_content = \"keep\"\nsource = \"t\"\n"
                .into(),
        }])
        .unwrap();
        let image = "<p>Hi</p><img src=\"https://images.shop.example/sale.png\" alt=\"Sale\">\r\n";
        let run = |rcpts: &[&str]| {
            let mut s = Session::new(1 << 20);
            s.handle(Command::Mail {
                args: vec!["<news@shop.example>".into()],
            });
            for r in rcpts {
                s.handle(Command::Rcpt {
                    args: vec![r.to_string(), "NOTIFY=NEVER".into()],
                });
            }
            for (n, v) in [
                ("From", " news@shop.example"),
                ("To", " list@shop.example"),
                ("Content-Type", " text/html"),
            ] {
                s.handle(Command::Header {
                    name: n.as_bytes().to_vec(),
                    value: v.as_bytes().to_vec(),
                });
            }
            s.handle(Command::Body(image.as_bytes().to_vec()));
            let Step::Clean(msg) = s.handle(Command::EndOfMessage) else {
                panic!()
            };
            let out = clean(msg.raw(), &msg.envelope(), &Policy::default(), &rules);
            (msg.recipients, String::from_utf8(out.bytes).unwrap())
        };
        let (seen, out) = run(&["<\"alice\"@example.test>", "<bob@example.test>"]);
        assert_eq!(seen, ["alice@example.test", "bob@example.test"]);
        assert!(!out.contains("images.shop.example"), "{out}");
        let (_, out) = run(&["<bob@example.test>"]);
        assert!(out.contains("images.shop.example"), "{out}");
    }

    #[test]
    fn abort_and_macros() {
        let mut s = Session::new(1000);
        s.handle(Command::Macros {
            stage: b'M',
            pairs: vec![("i".into(), "4XYZ".into())],
        });
        s.handle(Command::Header {
            name: b"Subject".to_vec(),
            value: b" a".to_vec(),
        });
        assert_eq!(s.handle(Command::Abort), Step::Reply(vec![]));
        let Step::Clean(m) = s.handle(Command::EndOfMessage) else {
            panic!()
        };
        assert!(m.fields.is_empty());
        assert_eq!(s.handle(Command::Quit), Step::Close);
    }

    #[test]
    fn without_chgbody_the_body_stays_and_it_is_said() {
        let mut msg = session_with(&[("Content-Type", " text/html")], TRACKED, true);
        msg.actions = action::ADDHDRS;
        let cleaned = clean(
            msg.raw(),
            &Envelope::default(),
            &Policy::default(),
            &Rules::default(),
        );
        let (replies, changes) = eom_replies(&msg, &cleaned);
        assert!(changes.not_allowed);
        assert!(!replies.iter().any(|r| matches!(r, Reply::ReplaceBody(_))));
    }
}
