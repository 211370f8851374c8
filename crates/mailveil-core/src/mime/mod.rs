//! The MIME walk: find every part that can make a client fetch (text/html at any depth,
//! nested messages whatever their transfer encoding), rewrite it, and splice the new
//! bytes in by offset. Every other byte of the message stays as it came.

pub(crate) mod attach;
mod boundary_search;
pub mod charset;
mod scan;
mod signed;
pub(crate) mod structure;
pub mod transfer;

use crate::detect::Detector;
use crate::html::{self, HtmlContext, HtmlError};
use crate::policy::{Policy, SignedContent};
use crate::report::{Action, Finding, FindingKind, Location, Report};
use boundary_search::BoundarySearch;
use charset::Plan;
use mail_parser::{Encoding, MessagePart, MimeHeaders, PartType};
use std::borrow::Cow;
use std::ops::Range;
use std::time::Instant;
use transfer::{Eol, Transfer};

/// Why a message could not be cleaned (the codes go into `X-Mailveil: error=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CleanError {
    Unparseable,
    TooDeep,
    TooManyParts,
    Deadline,
    /// Reading the structure would search through more than a mail's reading may
    /// (`scan::Budget`): made to make a parser's reading quadratic.
    TooComplex,
    /// The parser's idea of where a part ends crosses a boundary of the message: an
    /// edit there could take a sibling part with it.
    Ambiguous,
}

impl CleanError {
    pub(crate) fn code(self) -> &'static str {
        match self {
            CleanError::Unparseable => "unparseable",
            CleanError::TooDeep => "too-deep",
            CleanError::TooManyParts => "too-many-parts",
            CleanError::Deadline => "time-limit",
            CleanError::TooComplex => "too-complex",
            CleanError::Ambiguous => "ambiguous-mime",
        }
    }
}

/// What the walk of one message (and its nested messages) shares.
pub(crate) struct Walk<'a> {
    pub detector: &'a Detector<'a>,
    pub rules: &'a crate::rules::Rules,
    /// The URLs of the top message's `List-Unsubscribe` header (functional links).
    pub list_unsubscribe: &'a [String],
    pub policy: &'a Policy,
    pub deadline: Instant,
    pub report: &'a mut Report,
    pub eol: Eol,
    parts_seen: usize,
    /// `--boundary` of every multipart around the part being cleaned, in this message
    /// and in the messages it is nested in.
    boundaries: Vec<Vec<u8>>,
    /// The boundaries of the multiparts this walk wrote, at any depth: a later rewrite
    /// (a sibling, or inside a nested message, which sees only its own bytes) must not
    /// take one again (found by fuzzing: two signed parts rewritten with one boundary).
    written: Vec<Vec<u8>>,
}

impl<'a> Walk<'a> {
    pub(crate) fn new(
        detector: &'a Detector<'a>,
        rules: &'a crate::rules::Rules,
        list_unsubscribe: &'a [String],
        policy: &'a Policy,
        deadline: Instant,
        report: &'a mut Report,
        eol: Eol,
    ) -> Self {
        Walk {
            detector,
            rules,
            list_unsubscribe,
            policy,
            deadline,
            report,
            eol,
            parts_seen: 0,
            boundaries: Vec::new(),
            written: Vec::new(),
        }
    }

    fn note(&mut self, finding: Finding) {
        self.report.push(finding, self.policy.limits.max_findings);
    }

    /// [`Walk::note`] of each of `findings`, the report grown once for them.
    fn note_all(&mut self, findings: Vec<Finding>) {
        self.report
            .extend(findings, self.policy.limits.max_findings);
    }

    /// A boundary for a new multipart holding `parts` in `msg` (see `attach::boundary`),
    /// none that `msg`, the multiparts around it or this walk's rewrites use; `Ambiguous`
    /// when the mail's own boundaries and contents leave none sure.
    fn new_boundary(
        &mut self,
        prefix: &str,
        parts: &[&[u8]],
        msg: &mail_parser::Message,
    ) -> Result<String, CleanError> {
        let mut taken = signed::boundaries(msg);
        taken.extend(
            self.boundaries
                .iter()
                .map(|d| d.strip_prefix(b"--").unwrap_or(d).to_vec()),
        );
        taken.extend(self.written.iter().cloned());
        let b = attach::boundary(prefix, parts, &taken).ok_or(CleanError::Ambiguous)?;
        self.written.push(b.as_bytes().to_vec());
        Ok(b)
    }
}

/// A replacement of a byte range of the message.
struct Edit {
    range: Range<usize>,
    bytes: Vec<u8>,
}

/// Cleans the parts of one message. `prefix` numbers its parts ("" at the top, "2." for
/// the message inside part 2). Returns the new bytes, or `None` if nothing changed.
pub(crate) fn clean_parts(
    raw: &[u8],
    prefix: &str,
    depth: usize,
    walk: &mut Walk,
) -> Result<Option<Vec<u8>>, CleanError> {
    let around = walk.boundaries.len();
    let cleaned = clean_message_parts(raw, prefix, depth, walk);
    walk.boundaries.truncate(around);
    cleaned
}

fn clean_message_parts(
    raw: &[u8],
    prefix: &str,
    depth: usize,
    walk: &mut Walk,
) -> Result<Option<Vec<u8>>, CleanError> {
    if depth > walk.policy.limits.max_depth {
        return Err(CleanError::TooDeep);
    }
    let msg = structure::parse(raw, walk.deadline)?;
    let mut edits = Vec::new();
    let delimiters = boundary_delimiters(&msg);
    walk.boundaries
        .extend(delimiters.iter().map(|d| d[1..].to_vec()));
    let Ok(boundary_written) = BoundarySearch::new(&walk.boundaries) else {
        return Err(CleanError::Ambiguous); // too many boundaries to search for
    };
    // Explicit stack: hostile nesting must not exhaust the call stack.
    let mut stack: Vec<(u32, String, usize, bool)> = vec![(0, String::new(), depth, true)];
    while let Some((id, number, depth, root)) = stack.pop() {
        if depth > walk.policy.limits.max_depth {
            return Err(CleanError::TooDeep);
        }
        walk.parts_seen += 1;
        if walk.parts_seen > walk.policy.limits.max_parts {
            return Err(CleanError::TooManyParts);
        }
        if Instant::now() > walk.deadline {
            return Err(CleanError::Deadline);
        }
        let Some(part) = msg.parts.get(id as usize) else {
            continue;
        };
        let (ctype, subtype) = content_type(part);
        if let PartType::Multipart(children) = &part.body {
            let shown = if root {
                prefix.trim_end_matches('.').to_string()
            } else {
                number.clone()
            };
            let clean_signed = walk.policy.signed_content() == SignedContent::Clean;
            let sealed_kind = sealed(&ctype, &subtype, part);
            if sealed_kind == Some(FindingKind::Signed)
                && clean_signed
                && !signed::well_formed(&msg, part)
            {
                // No signature a reader could check: cleaned in place like any multipart.
                walk.note(untouched(
                    FindingKind::Signed,
                    &shown,
                    "multipart/signed (not two parts and a signature): cleaned in place",
                ));
            } else if let Some(kind) = sealed_kind {
                if kind == FindingKind::Signed && clean_signed {
                    let content_number = if root {
                        format!("{prefix}1")
                    } else {
                        format!("{number}.1")
                    };
                    edits.extend(signed::multipart(
                        raw,
                        &msg,
                        id,
                        &shown,
                        &content_number,
                        depth,
                        walk,
                    )?);
                } else {
                    walk.note(untouched(kind, &shown, &format!("{ctype}/{subtype}")));
                }
                continue;
            }
            for (i, child) in children.iter().enumerate().rev() {
                let n = if root {
                    format!("{prefix}{}", i + 1)
                } else {
                    format!("{number}.{}", i + 1)
                };
                stack.push((*child, n, depth + 1, false));
            }
            continue;
        }
        let number = if root { format!("{prefix}1") } else { number };
        if let Some(kind) = sealed(&ctype, &subtype, part) {
            if kind == FindingKind::Signed && walk.policy.signed_content() == SignedContent::Clean {
                edits.extend(signed::opaque(raw, &msg, id, &number, walk)?);
            } else {
                walk.note(untouched(kind, &number, &format!("{ctype}/{subtype}")));
            }
            continue;
        }
        let attachment = part
            .content_disposition()
            .is_some_and(|d| d.is_attachment());
        let editable = matches!(
            (ctype.as_str(), subtype.as_str()),
            ("text", "html" | "plain") | ("message", "rfc822" | "global")
        );
        if editable && crosses(&raw[body_range(part, raw)], &delimiters) {
            return Err(CleanError::Ambiguous);
        }
        let leaf = match (ctype.as_str(), subtype.as_str()) {
            ("text", "html") if !attachment => html_part(raw, part, &number, walk)?,
            ("text", "plain") if !attachment => text_part(raw, part, &number, walk)?,
            ("message", "rfc822" | "global") => nested_message(raw, part, &number, depth, walk)?,
            _ => Vec::new(),
        };
        // A rewrite that writes `--boundary` (a tag removed from between `--` and `b`,
        // `=2D` written back as `-`, our own `<!--mailveil-...` under a boundary `m`)
        // ends the part there for the next reader, and a client may read what follows
        // as a new part (found by fuzzing): no reading of the cleaned mail is sure.
        if leaf.iter().any(|e| boundary_written.is_match(&e.bytes)) {
            return Err(CleanError::Ambiguous);
        }
        edits.extend(leaf);
    }
    // After the walk, so that its own errors (too deep, too many parts) are the ones named.
    if stray_boundary(raw, &msg) {
        return Err(CleanError::Ambiguous);
    }
    Ok(apply(raw, edits))
}

/// `\n--boundary` for every multipart boundary of the message.
fn boundary_delimiters(msg: &mail_parser::Message) -> Vec<Vec<u8>> {
    msg.parts
        .iter()
        .filter_map(|p| p.content_type()?.attribute("boundary"))
        .filter(|b| !b.is_empty())
        .map(|b| [b"\n--".as_slice(), b.as_bytes()].concat())
        .collect()
}

/// Whether a part's body holds a delimiter line of the message (`--boundary` then the
/// end of the line, `--`, or whitespace): mail-parser 0.11.9 can let a message/rfc822
/// part nested in another run on past its parent's next boundary (found by fuzzing).
/// Every other reader splits the mail there, so rewriting that body would drop the
/// sibling parts; the mail goes on unchanged instead.
fn crosses(body: &[u8], delimiters: &[Vec<u8>]) -> bool {
    delimiters.iter().any(|d| {
        memchr::memmem::find_iter(body, d).any(|i| {
            matches!(
                body.get(i + d.len()),
                None | Some(b'\r' | b'\n' | b'-' | b' ' | b'\t')
            )
        })
    })
}

/// Whether `--boundary` of one of the message's multiparts occurs other than as a
/// delimiter line of the innermost multipart around it (at a line start, then `--` or
/// nothing, optional whitespace, the line end), where mail-parser 0.11.9 and clients read
/// the mail differently. mail-parser ends a part at `--boundary` of the multipart it is in
/// anywhere, inside a line or followed by more characters (`--b1` for `b`); clients split
/// at whole delimiter lines only, of any multipart around the part (an outer delimiter
/// line inside an inner multipart ends it for them, not for mail-parser). Where they
/// disagree, the part mailveil cleans is not the part a client shows: a tracker after
/// `alt="--b` went unseen, and a nested message cut in place at `--b1` was cleaned as
/// read alone, which changed how the next pass read the mail (found by fuzzing). RFC 2046
/// forbids the string inside a part; such a mail is delivered whole, as an attachment.
/// An inner boundary that extends an outer one (`=_1` inside `=_`, as Eudora writes
/// them) reads the same both ways.
///
/// Left alone: a closing delimiter written at the end of the last line of the mail
/// (`...Q==--b--`, seen in real mail), only whitespace after it. A client then reads the
/// last part on to the end, that is, with the delimiter in it, which holds no markup when
/// the boundary is made of the characters RFC 2046 allows.
fn stray_boundary(raw: &[u8], msg: &mail_parser::Message) -> bool {
    let Some(root) = msg.parts.first() else {
        return false;
    };
    let multiparts: Vec<(Range<usize>, &[u8])> = msg
        .parts
        .iter()
        .filter(|p| matches!(p.body, PartType::Multipart(_)))
        .filter_map(|p| {
            let b = p.content_type()?.attribute("boundary")?;
            (!b.is_empty()).then(|| (body_range(p, raw), b.as_bytes()))
        })
        .collect();
    let mut patterns: Vec<Vec<u8>> = multiparts
        .iter()
        .map(|(_, b)| [b"--", *b].concat())
        .collect();
    patterns.sort_unstable();
    patterns.dedup();
    if patterns.is_empty() {
        return false;
    }
    let Ok(finder) = BoundarySearch::new(&patterns) else {
        return true; // too many boundaries to search for: no sure reading
    };
    let body = body_range(root, raw);
    finder.any_occurrence(&raw[body.clone()], |pattern, start, end| {
        let at = body.start + start;
        let line_start = at == body.start || raw[at - 1] == b'\n';
        let innermost = multiparts
            .iter()
            .filter(|(r, _)| r.contains(&at))
            .max_by_key(|(r, _)| r.start)
            .map(|&(_, b)| b);
        let delimiter = line_start
            && innermost.is_some_and(|b| {
                raw[at + 2..body.end].starts_with(b)
                    && ends_delimiter(&raw[at + 2 + b.len()..body.end])
            });
        !delimiter && !last_close(&patterns[pattern], &raw[body.start + end..body.end])
    })
}

/// Whether what follows `--boundary` ends a delimiter line: `--` or nothing, optional
/// whitespace, the line end.
fn ends_delimiter(rest: &[u8]) -> bool {
    let rest = rest.strip_prefix(b"--").unwrap_or(rest);
    let pad = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    matches!(rest.get(pad), None | Some(b'\r' | b'\n'))
}

/// `--boundary--` with only whitespace after it, the boundary made of RFC 2046 characters.
fn last_close(pattern: &[u8], rest: &[u8]) -> bool {
    rest.strip_prefix(b"--").is_some_and(|tail| {
        tail.iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    }) && pattern[2..]
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b" '()+_,-./:=?".contains(&b))
}

/// The lowercased type and subtype (text/plain when absent).
fn content_type(part: &MessagePart) -> (String, String) {
    match part.content_type() {
        Some(ct) => (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase(),
        ),
        None => ("text".into(), "plain".into()),
    }
}

/// Signed and encrypted content: encrypted content is never touched (nothing in it can
/// be read); signed content only under `signed = clean` (see `signed`), as changing a
/// byte of it breaks the signature.
fn sealed(ctype: &str, subtype: &str, part: &MessagePart) -> Option<FindingKind> {
    match (ctype, subtype) {
        ("multipart", "signed") => Some(FindingKind::Signed),
        ("multipart", "encrypted") => Some(FindingKind::Encrypted),
        ("application", "pkcs7-mime" | "x-pkcs7-mime") => {
            let smime = part
                .content_type()
                .and_then(|c| c.attribute("smime-type"))
                .unwrap_or("")
                .to_ascii_lowercase();
            Some(
                if smime.contains("enveloped") || smime.contains("authenv") {
                    FindingKind::Encrypted
                } else {
                    FindingKind::Signed
                },
            )
        }
        _ => None,
    }
}

fn untouched(kind: FindingKind, part: &str, what: &str) -> Finding {
    Finding {
        kind,
        part: if part.is_empty() {
            "1".into()
        } else {
            part.to_string()
        },
        location: Location::part(what),
        url: None,
        rule: "mime:sealed".into(),
        tracker: None,
        action: Action::Untouched,
        params: Vec::new(),
    }
}

fn body_range(part: &MessagePart, raw: &[u8]) -> Range<usize> {
    let start = (part.offset_body as usize).min(raw.len());
    let end = (part.offset_end as usize).clamp(start, raw.len());
    start..end
}

/// Rewrites one HTML part; returns the edits (body, and the header if relabelled).
fn html_part(
    raw: &[u8],
    part: &MessagePart,
    number: &str,
    walk: &mut Walk,
) -> Result<Vec<Edit>, CleanError> {
    let range = body_range(part, raw);
    let body = &raw[range.clone()];
    let transfer = structure::transfer(part, raw);
    let label = part.content_type().and_then(|c| c.attribute("charset"));
    // The parser has already decoded the part; for UTF-8 text that is exactly our input,
    // so it is not decoded a second time.
    let decoded: Cow<[u8]> = match utf8_body(part, label, transfer) {
        Some(text) => Cow::Borrowed(text.as_bytes()),
        None => {
            let (decoded, damaged) = transfer::decode(body, transfer);
            // Where mail-parser's own decoding read a UTF-8 part cleanly, its text was
            // taken and no damage reported (its decoder takes LF line ends and longer
            // lines); the structure parser decodes nothing, and the report stays so.
            if damaged
                && !(utf8_label(label)
                    && structure::usual_reading_clean(part, raw, transfer, &decoded))
            {
                walk.note(malformed(number, "transfer-encoding", Action::Keep));
            }
            Cow::Owned(decoded)
        }
    };
    let plan = charset::plan(label, &decoded);
    let (input, encoding): (Cow<[u8]>, _) = match plan {
        Plan::InPlace(e) => (decoded, e),
        Plan::RoundTrip(e) | Plan::ToUtf8(e) => (
            Cow::Owned(charset::to_utf8(&decoded, e).into_bytes()),
            encoding_rs::UTF_8,
        ),
    };
    let ctx = HtmlContext {
        rules: walk.rules,
        list_unsubscribe: walk.list_unsubscribe,
        detector: walk.detector,
        policy: walk.policy,
        part: number,
        deadline: walk.deadline,
        language: part.content_language().as_text(),
    };
    let rewritten = if input.len() > walk.policy.limits.max_part_bytes {
        walk.note(malformed(number, "part-too-large", Action::Strip));
        Some(neutralise(&input))
    } else {
        html_pass(&input, encoding, &ctx, number, walk)?
    };
    let Some(mut content) = rewritten else {
        return Ok(Vec::new());
    };
    // Without a charset we can name, bytes that are not UTF-8 are read as windows-1252.
    // When the rewrite took the bytes that were not UTF-8 away, the next reader takes
    // the part for UTF-8: read it so now, or a second pass would find more (found by
    // fuzzing: an IDN host that only decodes as UTF-8).
    if charset::named(label).is_none()
        && encoding == encoding_rs::WINDOWS_1252
        && std::str::from_utf8(&content).is_ok()
        && let Some(again) = html_pass(&content, encoding_rs::UTF_8, &ctx, number, walk)?
    {
        content = again;
    }
    let content = match plan {
        Plan::RoundTrip(_) => charset::from_utf8(&String::from_utf8_lossy(&content), plan),
        _ => content,
    };
    let bytes = transfer::encode(&content, transfer, body, walk.eol);
    // A rewrite can differ from its input only in what the part's charset cannot write
    // (iso-2022-jp round trips): the same bytes back are no change, or a second pass
    // would count a change the first made and drop its counts (found by fuzzing).
    if bytes == body && !matches!(plan, Plan::ToUtf8(_)) {
        return Ok(Vec::new());
    }
    walk.report.parts_changed += 1;
    let mut edits = vec![Edit { bytes, range }];
    if let Plan::ToUtf8(_) = plan {
        let header = (part.offset_header as usize).min(raw.len())
            ..(part.offset_body as usize).min(raw.len());
        edits.push(Edit {
            bytes: charset::relabel_utf8(&raw[header.clone()]),
            range: header,
        });
    }
    Ok(edits)
}

/// One rewrite of an HTML part's content, its findings noted: the new bytes, `None`
/// when nothing changed, or the neutralised source when lol_html refused it.
fn html_pass(
    input: &[u8],
    encoding: &'static encoding_rs::Encoding,
    ctx: &HtmlContext,
    number: &str,
    walk: &mut Walk,
) -> Result<Option<Vec<u8>>, CleanError> {
    match html::rewrite(input, encoding, ctx) {
        Ok(outcome) => {
            walk.note_all(outcome.findings);
            Ok(outcome.bytes)
        }
        Err(HtmlError::Deadline) => Err(CleanError::Deadline),
        Err(HtmlError::Refused(why)) => {
            walk.note(malformed(
                number,
                &format!("html-refused: {why}"),
                Action::Strip,
            ));
            Ok(Some(neutralise(input)))
        }
    }
}

/// The parser's text of an HTML part when it is byte for byte the decoded body: a UTF-8
/// (or unlabelled) part read without problems or replacement characters, undone with the
/// transfer encoding the rewrite will redo. The structure parser decodes nothing, so
/// that is a part without transfer encoding, or any part of a message parsed the usual
/// way (see `structure`). The parser reads only exact values: for `quoted-printable`
/// followed by a form feed it decodes nothing where `Transfer` reads quoted-printable,
/// and its text would be encoded a second time (found by fuzzing).
fn utf8_body<'p>(
    part: &'p MessagePart,
    label: Option<&str>,
    transfer: Transfer,
) -> Option<&'p str> {
    let utf8 = utf8_label(label);
    let same_transfer = matches!(
        (part.encoding, transfer),
        (Encoding::None, Transfer::Identity)
            | (Encoding::QuotedPrintable, Transfer::QuotedPrintable)
            | (Encoding::Base64, Transfer::Base64)
    );
    if !same_transfer {
        return None;
    }
    match &part.body {
        PartType::Html(text) if utf8 && !part.is_encoding_problem && !text.contains('\u{fffd}') => {
            Some(text)
        }
        _ => None,
    }
}

/// No charset, or UTF-8.
fn utf8_label(label: Option<&str>) -> bool {
    label.is_none() || charset::named(label) == Some(encoding_rs::UTF_8)
}

/// Rewrites the links of a text/plain part (inline-signed PGP text is left alone).
fn text_part(
    raw: &[u8],
    part: &MessagePart,
    number: &str,
    walk: &mut Walk,
) -> Result<Vec<Edit>, CleanError> {
    let range = body_range(part, raw);
    let body = &raw[range.clone()];
    let transfer = structure::transfer(part, raw);
    // Looked for in what the part says, not in how it is written: base64 and
    // quoted-printable spell a link otherwise (`aHR0cHM6Ly`, `=68ttps:`, a soft break).
    let decoded: Cow<[u8]> = match transfer {
        Transfer::Identity => Cow::Borrowed(body),
        _ => Cow::Owned(transfer::decode(body, transfer).0),
    };
    if !crate::links::has_scheme(&decoded) {
        return Ok(Vec::new());
    }
    let label = part.content_type().and_then(|c| c.attribute("charset"));
    let enc = match charset::plan(label, &decoded) {
        Plan::InPlace(e) | Plan::RoundTrip(e) => e,
        Plan::ToUtf8(_) => return Ok(Vec::new()), // UTF-16 plain text: rare, left alone
    };
    let text = charset::to_utf8(&decoded, enc);
    if text.contains("-----BEGIN PGP SIGNED MESSAGE-----") {
        walk.note(untouched(
            FindingKind::Signed,
            number,
            "text/plain (inline PGP)",
        ));
        return Ok(Vec::new());
    }
    let Some(new) = text_links(&text, number, walk)? else {
        return Ok(Vec::new());
    };
    let mut content = charset::from_utf8(&new, Plan::RoundTrip(enc));
    // As for HTML: without a named charset, text that is UTF-8 once the rewrite took the
    // other bytes away is read as UTF-8 by the next pass, so read it so now (found by
    // fuzzing: a link whose parameter only decodes as UTF-8).
    if charset::named(label).is_none()
        && enc == encoding_rs::WINDOWS_1252
        && let Ok(utf8) = std::str::from_utf8(&content)
        && let Some(again) = text_links(utf8, number, walk)?
    {
        content = again.into_bytes();
    }
    walk.report.parts_changed += 1;
    Ok(vec![Edit {
        bytes: transfer::encode(&content, transfer, body, walk.eol),
        range,
    }])
}

/// Rewrites the links of decoded plain text and notes the findings; `None` when nothing
/// changed.
fn text_links(text: &str, number: &str, walk: &mut Walk) -> Result<Option<String>, CleanError> {
    let (rules, detector, policy) = (walk.rules, walk.detector, walk.policy);
    let (list_unsubscribe, deadline) = (walk.list_unsubscribe, walk.deadline);
    let report = &mut walk.report;
    crate::html::rewrite_text_links_until(
        text,
        rules,
        detector,
        &policy.links,
        list_unsubscribe,
        number,
        policy.proxy.as_ref(),
        Some(deadline),
        &mut |f| report.push(f, policy.limits.max_findings),
    )
    .map_err(|_| CleanError::Deadline)
}

/// A message inside a part: decode it, clean it as a message, encode it back.
fn nested_message(
    raw: &[u8],
    part: &MessagePart,
    number: &str,
    depth: usize,
    walk: &mut Walk,
) -> Result<Vec<Edit>, CleanError> {
    let range = body_range(part, raw);
    let body = &raw[range.clone()];
    let transfer = structure::transfer(part, raw);
    let (decoded, _) = transfer::decode(body, transfer);
    if decoded.is_empty() {
        return Ok(Vec::new());
    }
    match clean_parts(&decoded, &format!("{number}."), depth + 1, walk) {
        Ok(Some(new)) => Ok(vec![Edit {
            bytes: transfer::encode(&new, transfer, body, walk.eol),
            range,
        }]),
        Ok(None) => Ok(Vec::new()),
        // A nested message no parser reads is an attachment to any client too.
        Err(CleanError::Unparseable) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The fail-closed form of an HTML part the rewriter refused: its source shown as text,
/// so nothing in it can fetch.
fn neutralise(html: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(html.len() + html.len() / 8 + 16);
    out.extend_from_slice(b"<pre>");
    for &b in html {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            _ => out.push(b),
        }
    }
    out.extend_from_slice(b"</pre>");
    out
}

fn malformed(part: &str, what: &str, action: Action) -> Finding {
    Finding {
        kind: FindingKind::Malformed,
        part: part.to_string(),
        location: Location::part("body"),
        url: None,
        rule: format!("mime:{what}"),
        tracker: None,
        action,
        params: Vec::new(),
    }
}

/// Applies non-overlapping edits; `None` when there are none.
fn apply(raw: &[u8], mut edits: Vec<Edit>) -> Option<Vec<u8>> {
    if edits.is_empty() {
        return None;
    }
    edits.sort_by_key(|e| e.range.start);
    let mut out = Vec::with_capacity(raw.len() + 256);
    let mut at = 0;
    for e in edits {
        if e.range.start < at {
            continue; // overlapping (cannot happen for disjoint parts); keep the first
        }
        out.extend_from_slice(&raw[at..e.range.start]);
        out.extend_from_slice(&e.bytes);
        at = e.range.end;
    }
    out.extend_from_slice(&raw[at..]);
    Some(out)
}
