//! Signed content under `signed = clean` (see `SignedContent`): a `multipart/signed`
//! whose content needs cleaning becomes a `multipart/mixed` of the cleaned content and
//! the original signed entity as a non-rendered attachment; an opaque S/MIME part
//! (`application/pkcs7-mime` signed-data, whose content mailveil does not unpack)
//! becomes a note and the attachment. Nothing a client renders is left uncleaned, and
//! the signature can still be checked on the attachment. Signed content that needs no
//! change stays as it came.

use super::{CleanError, Edit, Walk, attach, clean_parts, crosses, untouched};
use crate::headers;
use crate::report::{Action, Finding, FindingKind, Location};
use mail_parser::{Message, MessagePart, PartType};
use std::ops::Range;

/// The whole entity of a part: its header and body (for the top part, the whole
/// message after an mbox `From ` line).
fn entity(raw: &[u8], id: usize, part: &MessagePart) -> Range<usize> {
    let start = if id == 0 {
        headers::header_start(raw)
    } else {
        (part.offset_header as usize).min(raw.len())
    };
    let end = if id == 0 {
        raw.len()
    } else {
        (part.offset_end as usize).clamp(start, raw.len())
    };
    start..end
}

/// The names of every multipart boundary of the message.
pub(super) fn boundaries(msg: &Message) -> Vec<Vec<u8>> {
    use mail_parser::MimeHeaders;
    msg.parts
        .iter()
        .filter_map(|p| p.content_type()?.attribute("boundary"))
        .map(|b| b.as_bytes().to_vec())
        .collect()
}

/// Every part id in the subtree of `id` (itself included).
fn subtree(msg: &Message, id: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![id];
    while let Some(i) = stack.pop() {
        if out.contains(&i) || out.len() > msg.parts.len() {
            continue;
        }
        out.push(i);
        if let Some(PartType::Multipart(children)) = msg.parts.get(i as usize).map(|p| &p.body) {
            stack.extend(children);
        }
    }
    out
}

fn finding(part: &str, what: &str, action: Action) -> Finding {
    Finding {
        kind: FindingKind::Signed,
        part: if part.is_empty() {
            "1".into()
        } else {
            part.to_string()
        },
        location: Location::part(what),
        url: None,
        rule: "mime:signed".into(),
        tracker: None,
        action,
        params: Vec::new(),
    }
}

/// A `multipart/signed` part (`id`, numbered `shown`; `content_number` is its first
/// child's number): its content cleaned; when that changes anything, the edits that
/// replace the signed entity by the cleaned content and the original as an attachment.
#[allow(clippy::too_many_arguments)]
pub(super) fn multipart(
    raw: &[u8],
    msg: &Message,
    id: u32,
    shown: &str,
    content_number: &str,
    depth: usize,
    walk: &mut Walk,
) -> Result<Vec<Edit>, CleanError> {
    let part = &msg.parts[id as usize];
    let Some(&content_id) = (match &part.body {
        PartType::Multipart(children) => children.first(),
        _ => None,
    }) else {
        walk.note(untouched(FindingKind::Signed, shown, "multipart/signed"));
        return Ok(Vec::new());
    };
    let Some(content) = msg.parts.get(content_id as usize) else {
        walk.note(untouched(FindingKind::Signed, shown, "multipart/signed"));
        return Ok(Vec::new());
    };
    let content_range = entity(raw, content_id as usize, content);
    // The content must end where every reader ends it: no delimiter of the signed part
    // or of a part around it inside (the content's own boundaries may be there).
    let inside = subtree(msg, content_id);
    let outside: Vec<Vec<u8>> = msg
        .parts
        .iter()
        .enumerate()
        .filter(|(i, _)| !inside.contains(&(*i as u32)))
        .filter_map(|(_, p)| {
            use mail_parser::MimeHeaders;
            p.content_type()?.attribute("boundary")
        })
        .filter(|b| !b.is_empty())
        .map(|b| [b"\n--".as_slice(), b.as_bytes()].concat())
        .collect();
    let content_bytes = &raw[content_range];
    if crosses(content_bytes, &outside) {
        return Err(CleanError::Ambiguous);
    }
    let Some(cleaned) = clean_parts(
        content_bytes,
        &format!("{content_number}."),
        depth + 1,
        walk,
    )?
    else {
        walk.note(untouched(FindingKind::Signed, shown, "multipart/signed"));
        return Ok(Vec::new());
    };
    let eol = walk.eol.as_bytes();
    let original = &raw[entity(raw, id as usize, part)];
    let att = attach::signed_original(original, eol);
    let b = walk.new_boundary("mailveil-signed", &[&cleaned, &att, raw], msg)?;
    let body = attach::multipart_body(&[&cleaned, &att], &b, eol);
    if !reads_back(&body, &b, &[&cleaned, &att], eol) {
        // The cleaned content does not read the same inside the new multipart (a part
        // left open runs on past our boundary): no reading of it is sure.
        return Err(CleanError::Ambiguous);
    }
    walk.note(finding(
        shown,
        "multipart/signed: cleaned, the signed original attached",
        Action::Clean,
    ));
    Ok(replace(
        raw,
        id as usize,
        part,
        &format!("multipart/mixed; boundary=\"{b}\""),
        &["content-type", "content-transfer-encoding"],
        body,
        eol,
    ))
}

/// Whether a `multipart/signed` is what RFC 1847 defines: two parts, the second a
/// signature. Only then is there a signature a reader can check on the attached original;
/// anything else is cleaned in place like any multipart.
pub(super) fn well_formed(msg: &Message, part: &MessagePart) -> bool {
    use mail_parser::MimeHeaders;
    let PartType::Multipart(children) = &part.body else {
        return false;
    };
    let [_, signature] = children.as_slice() else {
        return false;
    };
    msg.parts
        .get(*signature as usize)
        .and_then(|p| p.content_type())
        .is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case("application")
                && c.subtype().is_some_and(|s| {
                    ["pgp-signature", "pkcs7-signature", "x-pkcs7-signature"]
                        .iter()
                        .any(|k| s.eq_ignore_ascii_case(k))
                })
        })
}

/// Whether `body`, as a `multipart/mixed` with boundary `b`, reads back as exactly
/// `parts`.
fn reads_back(body: &[u8], b: &str, parts: &[&[u8]], eol: &[u8]) -> bool {
    let entity = [
        format!("Content-Type: multipart/mixed; boundary=\"{b}\"").as_bytes(),
        eol,
        eol,
        body,
    ]
    .concat();
    let Ok(Some(msg)) = super::structure::usual(&entity) else {
        return false; // no message, or one too costly to read: not sure
    };
    let Some(PartType::Multipart(children)) = msg.parts.first().map(|p| &p.body) else {
        return false;
    };
    children.len() == parts.len()
        && children.iter().zip(parts).all(|(&c, want)| {
            msg.parts.get(c as usize).is_some_and(|p| {
                let start = (p.offset_header as usize).min(entity.len());
                let end = (p.offset_end as usize).clamp(start, entity.len());
                &entity[start..end] == *want
            })
        })
}

/// An opaque S/MIME signed part: a note and the original as an attachment.
pub(super) fn opaque(
    raw: &[u8],
    msg: &Message,
    id: u32,
    number: &str,
    walk: &mut Walk,
) -> Result<Vec<Edit>, CleanError> {
    let part = &msg.parts[id as usize];
    let eol = walk.eol.as_bytes();
    let original = &raw[entity(raw, id as usize, part)];
    let note = attach::opaque_note(eol);
    let att = attach::signed_original(original, eol);
    let b = walk.new_boundary("mailveil-signed", &[&note, &att, raw], msg)?;
    let body = attach::multipart_body(&[&note, &att], &b, eol);
    walk.note(finding(
        number,
        "application/pkcs7-mime: not unpacked, attached unopened",
        Action::Strip,
    ));
    Ok(replace(
        raw,
        id as usize,
        part,
        &format!("multipart/mixed; boundary=\"{b}\""),
        &[
            "content-type",
            "content-transfer-encoding",
            "content-disposition",
        ],
        body,
        eol,
    ))
}

/// The edits that give a part a new `Content-Type` (in place of its first one; every
/// other field named in `drop` removed) and a new body. The fields are found where
/// mail-parser found them, which is how the walk read the part (a line that is no header
/// field can stand between them).
fn replace(
    raw: &[u8],
    id: usize,
    part: &MessagePart,
    content_type: &str,
    drop: &[&str],
    body: Vec<u8>,
    eol: &[u8],
) -> Vec<Edit> {
    let start = if id == 0 {
        0
    } else {
        (part.offset_header as usize).min(raw.len())
    };
    let body_start = (part.offset_body as usize).clamp(start, raw.len());
    let body_end = if id == 0 {
        raw.len()
    } else {
        (part.offset_end as usize).clamp(body_start, raw.len())
    };
    let mut fields: Vec<(Range<usize>, bool)> = part
        .headers
        .iter()
        .filter_map(|h| {
            let name = h.name.as_str().to_ascii_lowercase();
            let range = (h.offset_field as usize).clamp(start, body_start)
                ..(h.offset_end as usize).clamp(start, body_start);
            drop.contains(&name.as_str())
                .then_some((range, name == "content-type"))
        })
        .collect();
    fields.sort_by_key(|(r, _)| r.start);
    let new_field = headers::render("Content-Type", content_type, eol);
    let mut out = Vec::with_capacity(body_start - start + new_field.len());
    let mut at = start;
    let mut placed = false;
    for (range, is_type) in fields {
        if range.start < at {
            continue;
        }
        out.extend_from_slice(&raw[at..range.start]);
        if is_type && !placed {
            out.extend_from_slice(&new_field);
            placed = true;
        }
        at = range.end;
    }
    if !placed {
        // No Content-Type field: ours goes first, after an mbox `From ` line.
        let top = start + headers::header_start(&raw[start..body_start]);
        let top = top.max(at);
        out.extend_from_slice(&raw[at..top]);
        out.extend_from_slice(&new_field);
        at = top;
    }
    out.extend_from_slice(&raw[at..body_start]);
    vec![
        Edit {
            range: start..body_start,
            bytes: out,
        },
        Edit {
            range: body_start..body_end,
            bytes: body,
        },
    ]
}
