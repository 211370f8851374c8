//! Shared helpers of the core's integration tests: a small rule set, mail builders, and
//! readers for the cleaned output. The mails are the project's own, modelled on the
//! shapes of real newsletters (../shared/corpus), never copies of them.
#![allow(dead_code)]

use mail_parser::{MessageParser, MimeHeaders, PartType};
use mailveil_core::{Cleaned, Envelope, Policy, RemoteContent, RuleSource, Rules, clean};

pub const READER: &str = "reader.one@example.org";

/// A few trackers, as the shipped rules describe them.
pub const TEST_RULES: &str = r#"
[[tracker]]
id = "mailchimp"
name = "Mailchimp"
category = "esp"
source = "test"

[[tracker]]
id = "sendgrid"
name = "SendGrid"
category = "esp"
source = "test"

[[tracker]]
id = "litmus"
name = "Litmus"
category = "analytics"
source = "test"

[[tracker]]
id = "email-on-acid"
name = "Email on Acid"
category = "analytics"
source = "test"

[[pixel]]
id = "mailchimp-open"
tracker = "mailchimp"
host = "list-manage.com"
path = "/track/open.php"
source = "test"

[[pixel]]
id = "sendgrid-open"
tracker = "sendgrid"
host = "*.ct.sendgrid.net"
path = "/wf/open"
source = "test"

[[pixel]]
id = "litmus-emltrk"
tracker = "litmus"
host = "emltrk.com"
source = "test"

[[pixel]]
id = "eoa-pixel"
tracker = "email-on-acid"
host = "eoapxl.com"
source = "test"
"#;

pub fn rules() -> Rules {
    Rules::compile(&[RuleSource {
        name: "test.toml".into(),
        text: TEST_RULES.into(),
    }])
    .unwrap()
}

pub fn keep() -> Policy {
    Policy::default()
}

pub fn strip() -> Policy {
    Policy {
        remote_content: RemoteContent::Strip,
        ..Policy::default()
    }
}

pub fn run(raw: &[u8], policy: &Policy) -> Cleaned {
    clean(raw, &Envelope::to([READER]), policy, &rules())
}

/// A single-part HTML mail in UTF-8, 8bit.
pub fn html_mail(html: &str) -> Vec<u8> {
    format!(
        "From: News <news@sender.example>\r\nTo: {READER}\r\nSubject: Test\r\nMessage-ID: <t1@sender.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{html}\r\n"
    )
    .into_bytes()
}

/// Every decoded text/html body of a message, nested ones included.
pub fn html_bodies(raw: &[u8]) -> Vec<String> {
    let msg = MessageParser::default()
        .parse(raw)
        .expect("output parses as a mail");
    let mut out = Vec::new();
    collect(&msg, &mut out);
    out
}

fn collect(msg: &mail_parser::Message, out: &mut Vec<String>) {
    for part in &msg.parts {
        match &part.body {
            PartType::Html(h) => out.push(h.to_string()),
            PartType::Text(t)
                if part
                    .content_type()
                    .is_some_and(|c| c.subtype() == Some("html")) =>
            {
                out.push(t.to_string())
            }
            PartType::Message(m) => collect(m, out),
            _ => {}
        }
    }
}

/// The single HTML body of a message.
pub fn html(raw: &[u8]) -> String {
    let bodies = html_bodies(raw);
    assert_eq!(bodies.len(), 1, "expected one html part");
    bodies.into_iter().next().unwrap()
}

pub fn text(c: &Cleaned) -> String {
    String::from_utf8_lossy(&c.bytes).into_owned()
}

/// What a spec-following HTML tokenizer sees that could fetch: every attribute value,
/// the text of `<style>` and `<noscript>`, and conditional comments. Text that only looks
/// like markup (inside a bogus comment, say) is not in it.
pub fn live_markup(html: &str) -> String {
    use lol_html::{HtmlRewriter, Settings, doc_comments, element, text};
    use std::cell::RefCell;
    let seen = RefCell::new(String::new());
    let settings = Settings::new()
        .append_element_content_handler(element!("*", |el| {
            // `<a<link href=..>` is an element named "a<link": no standard element, no fetch.
            if !el
                .tag_name()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '-')
            {
                return Ok(());
            }
            // A link's `href` is followed on a click, not fetched on open: `<A/<link
            // rel=stylesheet href=...>` is an `<a>` with an attribute named `<link`.
            let link = matches!(el.tag_name().as_str(), "a" | "area");
            for a in el.attributes() {
                if link && a.name() == "href" {
                    continue;
                }
                seen.borrow_mut()
                    .push_str(&format!(" {}={}", a.name(), a.value()));
            }
            Ok(())
        }))
        .append_element_content_handler(text!("style, noscript", |t| {
            seen.borrow_mut().push_str(t.as_str());
            Ok(())
        }))
        .append_document_content_handler(doc_comments!(|c| {
            if c.text().trim_start().starts_with("[if") {
                seen.borrow_mut().push_str(&c.text());
            }
            Ok(())
        }));
    let mut rw = HtmlRewriter::new(settings, |_: &[u8]| {});
    let _ = rw.write(html.as_bytes());
    let _ = rw.end();
    seen.into_inner()
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

/// What a client shows of a mail as HTML: every text/html body, the mail read leniently.
pub fn shown_html(raw: &[u8]) -> Vec<String> {
    html_bodies(&lenient(raw))
}

/// The decoded attachment marked `X-Mailveil-Original: <marker>...` (`error=` for the
/// original of a mail that could not be read, `signed` for a signed original).
pub fn original_marked(raw: &[u8], marker: &str) -> Option<Vec<u8>> {
    let msg = MessageParser::default().parse(raw)?;
    msg.parts.iter().find_map(|p| {
        let marked = p.headers.iter().any(|h| {
            h.name.as_str().eq_ignore_ascii_case("X-Mailveil-Original")
                && h.value
                    .as_text()
                    .is_some_and(|v| v.trim().starts_with(marker))
        });
        marked.then(|| p.contents().to_vec())
    })
}

/// The `X-Mailveil` fields of the top header block.
pub fn own_headers(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .replace("\r\n\t", " ")
        .replace("\r\n ", " ");
    head.split("\r\n")
        .filter(|l| l.to_ascii_lowercase().starts_with("x-mailveil:"))
        .map(String::from)
        .collect()
}
