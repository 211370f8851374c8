//! Shared pieces of mailveil's fuzz targets: the rules and policies they run with, the
//! properties every cleaned mail must have (checked with `assert!`, so a violation is a
//! crash to libFuzzer), a structure-aware MIME generator and a generator of wrapped links.
//!
//! The properties (docs/architecture.md, invariants 1-3 and 8):
//! - `clean` never ends in `error=internal` (that is a caught panic);
//! - the output is non-empty, and parses as a mail whenever the input did;
//! - cleaning is idempotent: `clean(clean(x)) == clean(x)`;
//! - (structured mails) every part that is not a rewritable text/html or text/plain part
//!   comes out byte for byte, and under `remote-content = strip` no attribute of any HTML
//!   part names the generated tracker host.

pub mod links;
pub mod mime;

use mail_parser::{MessageParser, MimeHeaders, PartType};
use mailveil_core::{Cleaned, Envelope, Policy, RemoteContent, RuleSource, Rules, clean};
use std::sync::OnceLock;
use std::time::Duration;

/// The recipient every fuzzed mail is addressed to.
pub const READER: &str = "reader@example.org";

/// The shipped rules (the repository's `rules/*.toml`, what `mailveil::rule_files::shipped`
/// builds in), compiled once per process. Read from disk rather than through the
/// `mailveil` crate: that crate carries the frontends (tokio, rustls and aws-lc's C
/// build), which would triple the time of every fuzz build.
pub fn shipped_rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules");
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .expect("the rules directory")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let sources: Vec<RuleSource> = paths
            .iter()
            .map(|p| RuleSource {
                name: format!(
                    "shipped:{}",
                    p.file_name().unwrap_or_default().to_string_lossy()
                ),
                text: std::fs::read_to_string(p).expect("a rule file").into(),
            })
            .collect();
        assert!(sources.len() > 10, "no shipped rules in {dir}");
        let (rules, errors) = Rules::compile_lenient(&sources);
        assert!(
            errors.is_empty(),
            "shipped rules do not compile: {errors:?}"
        );
        rules
    })
}

/// A policy from a flag byte: bit 0 strips remote content, bit 1 strips read receipts,
/// bit 2 keeps campaign parameters. The time budget is generous: a `time-limit` result
/// depends on the machine, and idempotence is checked by running twice.
pub fn policy(flags: u8) -> Policy {
    let mut p = Policy {
        remote_content: if flags & 1 == 1 {
            RemoteContent::Strip
        } else {
            RemoteContent::Keep
        },
        strip_read_receipts: flags & 2 == 2,
        ..Policy::default()
    };
    p.links.keep_campaign_params = flags & 4 == 4;
    p.limits.max_time = Duration::from_secs(600);
    p
}

/// Cleans `raw` twice and checks the properties common to every input. Returns the first
/// result for target-specific checks.
pub fn check_clean(raw: &[u8], policy: &Policy) -> Cleaned {
    let rules = shipped_rules();
    let envelope = Envelope::to([READER]);
    let once = clean(raw, &envelope, policy, rules);
    assert_ne!(
        once.report.error.as_deref(),
        Some("internal"),
        "clean panicked (caught) on this input"
    );
    assert!(!once.bytes.is_empty(), "empty output");
    // What cannot be read is delivered whole: the original, byte for byte (after an mbox
    // `From ` line, which stays on top), as the attachment marked `error=`.
    if let Some(code) = once.report.error.as_deref() {
        let from_line = if raw.starts_with(b"From ") {
            raw.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1)
        } else {
            0
        };
        let original = original_marked(&once.bytes, "error=");
        assert!(
            original.as_deref() == Some(&raw[from_line..]),
            "error={code}, but the original is not attached byte for byte\n--- out ---\n{}",
            String::from_utf8_lossy(&once.bytes)
        );
    }
    if MessageParser::default().parse(raw).is_some() {
        assert!(
            MessageParser::default().parse(&once.bytes).is_some(),
            "the input parses as a mail, the output does not"
        );
    }
    let twice = clean(&once.bytes, &envelope, policy, rules);
    assert_ne!(twice.report.error.as_deref(), Some("internal"));
    if twice.bytes != once.bytes {
        panic!(
            "not idempotent:\n--- once ---\n{}\n--- twice ---\n{}\n--- input ---\n{}\n--- end ---",
            String::from_utf8_lossy(&once.bytes),
            String::from_utf8_lossy(&twice.bytes),
            String::from_utf8_lossy(raw)
        );
    }
    once
}

/// The decoded attachment marked `X-Mailveil-Original: <marker>...`: the original of a
/// mail that could not be read (`error=`), or a signed original (`signed`).
pub fn original_marked(raw: &[u8], marker: &str) -> Option<Vec<u8>> {
    let msg = MessageParser::default().parse(raw)?;
    msg.parts
        .iter()
        .find(|p| marked(p, marker))
        .map(|p| p.contents().to_vec())
}

fn marked(part: &mail_parser::MessagePart, marker: &str) -> bool {
    part.headers.iter().any(|h| {
        h.name.as_str().eq_ignore_ascii_case("X-Mailveil-Original")
            && h.value
                .as_text()
                .is_some_and(|v| v.trim().starts_with(marker))
    })
}

/// The `X-Mailveil` fields of a mail's top header, as mail-parser reads it.
pub fn own_headers(raw: &[u8]) -> usize {
    MessageParser::default().parse(raw).map_or(0, |m| {
        m.parts.first().map_or(0, |p| {
            p.headers
                .iter()
                .filter(|h| h.name.as_str().eq_ignore_ascii_case("X-Mailveil"))
                .count()
        })
    })
}

/// The mail as the lenient readers (mail clients, Python's email, Node's parsers) read
/// it: every bare CR a line end.
pub fn lenient(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        out.push(b);
        if b == b'\r' && raw.get(i + 1) != Some(&b'\n') {
            out.push(b'\n');
        }
    }
    out
}

/// Bytes with every line end written as LF.
pub fn unified(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' {
            out.push(b'\n');
            i += if bytes.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Whether a part is one that `clean` may rewrite (text/html or text/plain, not an
/// attachment). Everything else must come out byte for byte.
fn rewritable(part: &mail_parser::MessagePart) -> bool {
    let (t, s) = match part.content_type() {
        Some(ct) => (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase(),
        ),
        None => ("text".into(), "plain".into()),
    };
    let attachment = part
        .content_disposition()
        .is_some_and(|d| d.is_attachment());
    // A nested message is cleaned too: its parts are compared where mail-parser parsed
    // it as a message; where it did not, the core may still have cleaned it.
    (t == "text" && (s == "html" || s == "plain") && !attachment)
        || (t == "message" && (s == "rfc822" || s == "global"))
}

/// The raw bytes (header and body) of every leaf part that `clean` must not touch, in
/// order, descending into nested messages.
pub fn untouchable_leaves(raw: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(msg) = MessageParser::default().parse(raw) {
        leaves_of(&msg, &mut out, 0);
    }
    out
}

fn leaves_of(msg: &mail_parser::Message, out: &mut Vec<Vec<u8>>, depth: usize) {
    if depth > 32 {
        return;
    }
    let raw: &[u8] = msg.raw_message.as_ref();
    // The signature of a multipart/signed goes with the signed original when the signed
    // content is cleaned (the original is attached): neither is compared.
    let mut signatures = Vec::new();
    for part in &msg.parts {
        if let (true, PartType::Multipart(children)) =
            (is_type(part, "multipart", "signed"), &part.body)
        {
            signatures.extend(children.iter().skip(1).map(|&c| c as usize));
        }
    }
    for (i, part) in msg.parts.iter().enumerate() {
        if signatures.contains(&i) || marked(part, "signed") {
            continue;
        }
        match &part.body {
            PartType::Multipart(_) => {}
            PartType::Message(inner) => leaves_of(inner, out, depth + 1),
            _ if rewritable(part) => {}
            _ => {
                // The first part's header is the message's own, where our header goes.
                let from = if i == 0 {
                    part.offset_body
                } else {
                    part.offset_header
                };
                let start = (from as usize).min(raw.len());
                let end = (part.offset_end as usize).clamp(start, raw.len());
                out.push(raw[start..end].to_vec());
            }
        }
    }
}

fn is_type(part: &mail_parser::MessagePart, t: &str, s: &str) -> bool {
    part.content_type().is_some_and(|c| {
        c.ctype().eq_ignore_ascii_case(t) && c.subtype().is_some_and(|x| x.eq_ignore_ascii_case(s))
    })
}

/// The decoded text of every text/html part that is not an attachment, nested messages
/// included, the mail read as the lenient readers read it (bare CRs as line ends).
/// Signed content is included when `signed` (the policy cleans it), encrypted never.
pub fn html_texts(raw: &[u8], signed: bool) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(msg) = MessageParser::default().parse(&lenient(raw)) {
        html_of(&msg, &mut out, 0, signed);
    }
    out
}

fn html_of(msg: &mail_parser::Message, out: &mut Vec<String>, depth: usize, signed: bool) {
    if depth > 32 {
        return;
    }
    // Encrypted content is left as it came, and signed content under `signed = keep`
    // (docs/architecture.md, invariant 2).
    let mut sealed = vec![false; msg.parts.len()];
    for (i, part) in msg.parts.iter().enumerate() {
        let ct = part.content_type();
        let (t, s) = (
            ct.map(|c| c.ctype().to_ascii_lowercase())
                .unwrap_or_default(),
            ct.and_then(|c| c.subtype())
                .unwrap_or("")
                .to_ascii_lowercase(),
        );
        let seals = t == "multipart" && ((s == "signed" && !signed) || s == "encrypted");
        if let (true, PartType::Multipart(children)) = (seals || sealed[i], &part.body) {
            let mut stack: Vec<u32> = children.clone();
            while let Some(c) = stack.pop() {
                if let Some(flag) = sealed.get_mut(c as usize) {
                    if !*flag {
                        *flag = true;
                        if let Some(PartType::Multipart(cc)) =
                            msg.parts.get(c as usize).map(|p| &p.body)
                        {
                            stack.extend(cc);
                        }
                    }
                }
            }
        }
    }
    for (i, part) in msg.parts.iter().enumerate() {
        if sealed[i] {
            continue;
        }
        match &part.body {
            PartType::Message(inner) => html_of(inner, out, depth + 1, signed),
            PartType::Html(text) if rewritable(part) => out.push(text.to_string()),
            _ => {}
        }
    }
}

/// Whether a browser could fetch from a URL in this attribute value: values with URLs
/// inside (CSS, srcset) always; a single URL only when it is absolute with a network
/// scheme or protocol-relative. A relative reference (`<img src="<style>...https://host/...">`,
/// markup caught in a value) resolves against the document, never to another host.
fn may_fetch(name: &str, value: &str) -> bool {
    if matches!(name, "style" | "srcset" | "imagesrcset") || name.starts_with("on") {
        return true;
    }
    let v: String = value
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let absolute = if ["//", "\\\\", "/\\", "\\/"]
        .iter()
        .any(|p| v.starts_with(p))
    {
        format!("https:{}", v.replace('\\', "/"))
    } else {
        v
    };
    // An absolute URL fetches over the network only with a network scheme (`am:s:...`
    // or `cid:` names nothing a client would fetch) and when a browser's URL parser
    // reads a host in it (`ws:<style>...` is no URL): found by fuzzing.
    let network = match absolute.find(':') {
        Some(i) if i > 0 => ["http", "https", "ftp", "ws", "wss"]
            .iter()
            .any(|s| absolute[..i].eq_ignore_ascii_case(s)),
        _ => false,
    };
    network && url::Url::parse(&absolute).is_ok_and(|u| u.host_str().is_some())
}

/// Attribute values (entity-decoded) of every element of `html`, and of the markup in
/// Outlook conditional comments, where `host` occurs (ASCII case ignored); the `href` of
/// `<a>`, `<area>` and VML shapes (a click, not a fetch) is not looked at.
pub fn attributes_naming(html: &str, host: &str, depth: usize) -> Vec<String> {
    use lol_html::{HtmlRewriter, Settings, doc_comments, element};
    let hits = std::cell::RefCell::new(Vec::new());
    let comments = std::cell::RefCell::new(Vec::new());
    let needle = host.to_ascii_lowercase();
    {
        let settings = Settings::new()
            .append_element_content_handler(element!("*", |el| {
                // A link's href is a click, not a fetch on open; so is a VML shape's
                // (`<v:roundrect href>`, Outlook's buttons), as the core reads it.
                let tag = el.tag_name();
                let link = matches!(tag.as_str(), "a" | "area") || tag.starts_with("v:");
                for a in el.attributes() {
                    if link && a.name() == "href" {
                        continue;
                    }
                    let v = htmlize::unescape_attribute(a.value()).to_ascii_lowercase();
                    if v.contains(&needle) && may_fetch(&a.name(), &v) {
                        hits.borrow_mut().push(format!(
                            "<{} {}=\"{}\">",
                            el.tag_name(),
                            a.name(),
                            a.value()
                        ));
                    }
                }
                Ok(())
            }))
            .append_document_content_handler(doc_comments!(|c| {
                let text = c.text();
                if text.trim_start().to_ascii_lowercase().starts_with("[if") {
                    comments.borrow_mut().push(text);
                }
                Ok(())
            }));
        let mut rw = HtmlRewriter::new(settings, |_: &[u8]| {});
        // A document lol_html refuses (non-strict here) has no attributes to look at.
        let _ = rw.write(html.as_bytes()).and_then(|()| rw.end());
    }
    let mut hits = hits.into_inner();
    if depth < 4 {
        for c in comments.into_inner() {
            hits.extend(attributes_naming(&c, host, depth + 1));
        }
    }
    hits
}
