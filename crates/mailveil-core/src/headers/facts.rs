//! What the top header says about a mail, read by the core's header reader: what the core
//! judges a mail by (its senders' and recipients' addresses, List-Unsubscribe) and what
//! the frontends and the report store record (Message-ID, Subject, the header's sender,
//! the queue id of the top `Received:`). One reading for all of them, so that what is
//! recorded of a mail is what was judged.
//!
//! Of a field given more than once, the first is read: the one added last, by the
//! systems nearest the reader (an MTA writes `Return-Path:` and `Received:` on top; a
//! sender can put any field lower down). Values are decoded by mail-parser's field
//! parsers (encoded words, comments, angle brackets), on the bytes the reader found.

use super::{Field, fields, named};
use mail_parser::parsers::MessageStream;
use mail_parser::{Address, HeaderValue};

/// Headers whose addresses are the reader's (besides the envelope recipients).
const RECIPIENT_HEADERS: &[&str] = &["To", "Delivered-To", "X-Original-To", "Envelope-To"];

/// The top header of one mail, read once; each fact is read from it when asked.
///
/// ```
/// use mailveil_core::MessageFacts;
/// let raw = b"Return-Path: <bounce@esp.example>\r\nFrom: Shop <news@shop.example>\r\n\
/// Subject: =?utf-8?q?Caf=C3=A9?=\r\nMessage-ID: <a1@shop.example>\r\n\r\nbody";
/// let facts = MessageFacts::read(raw);
/// assert_eq!(facts.message_id().as_deref(), Some("a1@shop.example"));
/// assert_eq!(facts.subject().as_deref(), Some("Café"));
/// assert_eq!(facts.return_address().as_deref(), Some("bounce@esp.example"));
/// ```
#[derive(Clone)]
pub struct MessageFacts<'m> {
    raw: &'m [u8],
    fields: Vec<Field>,
}

/// The field names only: a debug print must not put the mail into a log.
impl std::fmt::Debug for MessageFacts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.fields.iter().map(|x| &x.name))
            .finish()
    }
}

impl<'m> MessageFacts<'m> {
    /// Reads the header block at the start of `raw` (after an mbox `From ` line); the
    /// body is not read.
    pub fn read(raw: &'m [u8]) -> MessageFacts<'m> {
        MessageFacts {
            raw,
            fields: fields(raw),
        }
    }

    /// The header fields, in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The value of the first field of this name, as written.
    fn first(&self, name: &str) -> Option<&'m [u8]> {
        let raw = self.raw;
        named(&self.fields, name).next().map(|f| f.value(raw))
    }

    /// The Message-ID, without angle brackets; `None` when there is none or it is empty.
    pub fn message_id(&self) -> Option<String> {
        let value = parsed(self.first("Message-ID")?, |s| s.parse_id());
        unbracketed(value.as_text()?)
    }

    /// The Subject, decoded (RFC 2047) and unfolded.
    pub fn subject(&self) -> Option<String> {
        let value = parsed(self.first("Subject")?, |s| s.parse_unstructured());
        value.as_text().map(str::to_string)
    }

    /// Who the header says the mail is from: the `Return-Path:` address, else the first
    /// `From:` address. What stands in for the envelope sender where a frontend knows
    /// none (the pipe, the IMAP sweep).
    pub fn return_address(&self) -> Option<String> {
        if let Some(path) = self.first("Return-Path") {
            let value = parsed(path, |s| s.parse_id());
            if let Some(address) = value.as_text().and_then(unbracketed) {
                return Some(address);
            }
        }
        self.from_address()
    }

    /// The first address of the `From:` field: who the mail says it is from (the
    /// brand a reader recognises), where the envelope and `Return-Path:` name the
    /// sending service's bounce host.
    pub fn from_address(&self) -> Option<String> {
        let value = parsed(self.first("From")?, |s| s.parse_address());
        match value {
            HeaderValue::Address(a) => Address::first(&a)?.address.as_deref().and_then(unbracketed),
            _ => None,
        }
    }

    /// Every address-like word of the `From:` and `Sender:` fields: what `[[allow]]`
    /// and the sender side of `[[policy]]` match (with the envelope sender).
    pub fn senders(&self) -> Vec<String> {
        self.addresses(&["From", "Sender"])
    }

    /// Every address-like word of `To:`, `Delivered-To:`, `X-Original-To:` and
    /// `Envelope-To:`: the reader's addresses as the header gives them, which the core
    /// looks for in URLs (with the envelope recipients).
    pub fn recipients(&self) -> Vec<String> {
        self.addresses(RECIPIENT_HEADERS)
    }

    /// The `<...>` items of every `List-Unsubscribe:` field.
    pub fn list_unsubscribe(&self) -> Vec<String> {
        named(&self.fields, "List-Unsubscribe")
            .flat_map(|f| bracketed(&self.raw[f.range.clone()]))
            .collect()
    }

    /// The queue id the top `Received:` field gives (`... with ESMTP id 4Xyz...;`): the
    /// MTA's id of this mail, for logs that meet the MTA's.
    pub fn received_id(&self) -> Option<String> {
        let value = String::from_utf8_lossy(self.first("Received")?);
        let mut words = value.split_ascii_whitespace();
        while let Some(w) = words.next() {
            if w == "id" {
                let id = words.next()?.trim_end_matches(';');
                return (!id.is_empty()).then(|| id.to_string());
            }
        }
        None
    }

    fn addresses(&self, names: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for name in names {
            for f in named(&self.fields, name) {
                out.extend(addresses_in(&self.raw[f.range.clone()]));
            }
        }
        out
    }
}

/// A field value parsed by one of mail-parser's field parsers, which read up to a line
/// break that no continuation line follows: the last field of a header with no line
/// break after it gets one.
fn parsed(
    value: &[u8],
    parse: impl for<'v> FnOnce(&mut MessageStream<'v>) -> HeaderValue<'v>,
) -> HeaderValue<'static> {
    let owned;
    let value = if value.ends_with(b"\n") {
        value
    } else {
        owned = [value, b"\n"].concat();
        &owned[..]
    };
    parse(&mut MessageStream::new(value)).into_owned()
}

/// An address or id without surrounding angle brackets and spaces; `None` when empty.
fn unbracketed(s: &str) -> Option<String> {
    let s = s.trim_matches(['<', '>', ' ']);
    (!s.is_empty()).then(|| s.to_string())
}

/// The `<...>` items of a header field (List-Unsubscribe URLs).
fn bracketed(field: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(field);
    text.split('<')
        .skip(1)
        .filter_map(|s| s.split_once('>'))
        .map(|(u, _)| u.split_whitespace().collect::<String>())
        .collect()
}

/// Mail addresses in a header field (`Name <a@b>`, `a@b, c@d`).
fn addresses_in(field: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(field);
    let value = text.split_once(':').map_or("", |(_, v)| v);
    value
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '<' | '>' | '"' | ';' | '(' | ')'))
        .filter(|w| w.contains('@') && w.len() >= 6)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_read_from_the_header_only() {
        let raw = b"From someone Mon Jan 1 00:00:00 2024\r\n\
Received: from mx.example by mail.example (Postfix) with ESMTP id 4ZxY12AbCd;\r\n\
\tMon, 1 Jan 2024 00:00:00 +0000\r\n\
Received: from evil.example with ESMTP id FORGED;\r\n\
From: \"Shop, Inc.\" <news@shop.example>\r\n\
Sender: list@lists.example\r\n\
To: Reader <reader@example.org>, other@example.org\r\n\
Subject: =?utf-8?q?Caf=C3=A9?= news\r\n  folded\r\n\
Message-ID:\r\n <a1@shop.example>\r\n\
List-Unsubscribe: <mailto:u@shop.example>, <https://shop.example/u?x=1>\r\n\
\r\n\
Message-ID: <body@shop.example>\r\nReceived: by body id BODY;\r\n";
        let f = MessageFacts::read(raw);
        assert_eq!(f.message_id().as_deref(), Some("a1@shop.example"));
        assert_eq!(f.subject().as_deref(), Some("Café news folded"));
        assert_eq!(f.return_address().as_deref(), Some("news@shop.example"));
        assert_eq!(f.received_id().as_deref(), Some("4ZxY12AbCd"));
        assert_eq!(f.senders(), ["news@shop.example", "list@lists.example"]);
        assert_eq!(f.recipients(), ["reader@example.org", "other@example.org"]);
        assert_eq!(
            f.list_unsubscribe(),
            ["mailto:u@shop.example", "https://shop.example/u?x=1"]
        );
    }

    #[test]
    fn the_first_of_a_repeated_field_is_read_and_empty_ones_are_none() {
        let raw = b"Return-Path: <bounce@esp.example>\r\nReturn-Path: <forged@x.example>\r\n\
Message-ID: <first@x.example>\r\nMessage-ID: <second@x.example>\r\n\
From: a@x.example\r\nSubject: one\r\nSubject: two\r\n\r\n";
        let f = MessageFacts::read(raw);
        assert_eq!(f.return_address().as_deref(), Some("bounce@esp.example"));
        assert_eq!(f.from_address().as_deref(), Some("a@x.example"));
        assert_eq!(f.message_id().as_deref(), Some("first@x.example"));
        assert_eq!(f.subject().as_deref(), Some("one"));

        // The null sender's Return-Path stands for nobody: From is the sender then.
        let f = MessageFacts::read(b"Return-Path: <>\r\nFrom: Bob <bob@x.example>\r\n\r\n");
        assert_eq!(f.return_address().as_deref(), Some("bob@x.example"));
        let f = MessageFacts::read(b"Message-ID: <>\r\nReceived: by x with id ;\r\n\r\n");
        assert_eq!(f.message_id(), None);
        assert_eq!(f.received_id(), None);
        assert_eq!(f.subject(), None);
        assert_eq!(f.return_address(), None);
    }

    #[test]
    fn the_received_id_may_stand_on_a_continuation_line() {
        // Postfix's form: the id on the folded `by` line.
        let raw = b"Received: from mx.example.test (localhost [127.0.0.1])\r\n\
\tby mx.example.test (Postfix) with ESMTP id 4ZxY12AbCd\r\n\
\tfor <alice@example.test>; Sun, 1 Jan 2026 00:00:00 +0000\r\nSubject: x\r\n\r\nbody";
        assert_eq!(
            MessageFacts::read(raw).received_id().as_deref(),
            Some("4ZxY12AbCd")
        );
        assert_eq!(
            MessageFacts::read(b"Subject: x\r\n\r\nid 5").received_id(),
            None
        );
    }

    #[test]
    fn a_header_without_a_final_line_break_or_body_is_read() {
        let f = MessageFacts::read(b"Subject: only\r\nMessage-ID: <x@y.example>");
        assert_eq!(f.subject().as_deref(), Some("only"));
        assert_eq!(f.message_id().as_deref(), Some("x@y.example"));
        let f = MessageFacts::read(b"Subject: bare lf\nFrom: c@d.example\n\nbody");
        assert_eq!(f.subject().as_deref(), Some("bare lf"));
        assert_eq!(f.return_address().as_deref(), Some("c@d.example"));
        assert_eq!(MessageFacts::read(b"").fields().len(), 0);
        let shown = format!("{:?}", MessageFacts::read(b"Subject: secret\r\n\r\nbody"));
        assert_eq!(shown, "[\"Subject\"]");
        assert_eq!(
            MessageFacts::read(b"\xff\xfe: \xff\r\n\r\n").subject(),
            None
        );
    }
}
