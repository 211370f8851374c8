//! Properties over generated mails: cleaning never panics, its output parses as a mail,
//! a second pass changes nothing, parts other than HTML keep their bytes, and under
//! `strip` nothing remote is left.

mod common;
use common::*;
use proptest::prelude::*;

/// Fragments of newsletter HTML: fetching vectors, trackers, content, noise.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(r#"<img src="https://news.us3.list-manage.com/track/open.php?u=1&amp;e=2" width="1" height="1">"#.to_string()),
        Just(r#"<img src="http://px.tracker.test/o.gif" style="display:none">"#.to_string()),
        Just(r#"<img src="https://cdn.tracker.test/hero.jpg" alt="hero" width="600">"#.to_string()),
        Just(r#"<td background="http://bg.tracker.test/x.png">cell</td>"#.to_string()),
        Just(r#"<div style="background:url(http://css.tracker.test/a.png) no-repeat;color:#333">d</div>"#.to_string()),
        Just("<style>@import url(http://imp.tracker.test/a.css); .a{background:url('http://s.tracker.test/b')}</style>".to_string()),
        Just(r#"<link rel="stylesheet" href="http://link.tracker.test/s.css">"#.to_string()),
        Just("<!--[if mso]><v:fill src=\"http://vml.tracker.test/f.png\"/><![endif]-->".to_string()),
        Just(r#"<a href="https://sender.example/article?id=7&amp;utm_source=x">Read &amp; more</a>"#.to_string()),
        Just(r#"<iframe src="http://frame.tracker.test/"></iframe>"#.to_string()),
        Just(r#"<img srcset="http://a.tracker.test/1.png 1x, cid:x 2x">"#.to_string()),
        Just("<p>Café — 日本語 €</p>".to_string()),
        Just("<table><tr><td>".to_string()),
        Just("</td></tr></table>".to_string()),
        "[a-zA-Z0-9 <>&;=\"'/.:-]{0,40}",
        "\\PC{0,20}",
    ]
}

fn html_doc() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..12)
        .prop_map(|f| format!("<html><body>{}</body></html>", f.concat()))
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Single,
    Alternative,
    Forwarded,
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Single),
        Just(Shape::Alternative),
        Just(Shape::Forwarded)
    ]
}

fn cte() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("8bit"), Just("quoted-printable"), Just("base64")]
}

const PLAIN: &str = "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain text https://sender.example/?e=3D1 stays.\r\n";

fn build(html: &str, shape: Shape, cte: &str, eol: &str) -> Vec<u8> {
    let body = match cte {
        "base64" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(html.as_bytes())
        }
        "quoted-printable" => String::from_utf8(quoted_printable::encode(html.as_bytes())).unwrap(),
        _ => html.to_string(),
    };
    let part = format!(
        "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n\r\n{body}\r\n"
    );
    let head =
        format!("From: news@sender.example\r\nTo: {READER}\r\nSubject: p\r\nMIME-Version: 1.0\r\n");
    let raw = match shape {
        Shape::Single => format!("{head}{part}"),
        Shape::Alternative => format!(
            "{head}Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n{PLAIN}--b\r\n{part}--b--\r\n"
        ),
        Shape::Forwarded => format!(
            "{head}Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n{PLAIN}--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@sender.example\r\nSubject: inner\r\n{part}--b--\r\n"
        ),
    };
    raw.replace("\r\n", eol).into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn cleaning_is_total_idempotent_and_keeps_other_parts(html in html_doc(), shape in shape(), cte in cte(), lf in any::<bool>(), mode in 0u8..3) {
        let eol = if lf { "\n" } else { "\r\n" };
        let raw = build(&html, shape, cte, eol);
        let strip_all = mode == 1;
        let policy = match mode {
            0 => keep(),
            1 => strip(),
            _ => mailveil_core::Policy {
                remote_content: mailveil_core::RemoteContent::Proxy,
                proxy: Some(mailveil_core::ProxyConfig {
                    shield_links: true,
                    ..mailveil_core::ProxyConfig::new("https://mx.example/mv", b"k".to_vec())
                }),
                ..keep()
            },
        };
        let once = run(&raw, &policy);
        prop_assert!(!once.bytes.is_empty());
        prop_assert!(once.report.error.is_none(), "error {:?}", once.report.error);
        prop_assert!(mail_parser::MessageParser::default().parse(&once.bytes).is_some());
        let twice = run(&once.bytes, &policy);
        prop_assert_eq!(&twice.bytes, &once.bytes);
        if !matches!(shape, Shape::Single) {
            let plain = PLAIN.replace("\r\n", eol);
            prop_assert!(String::from_utf8_lossy(&once.bytes).contains(&plain), "text part changed");
        }
        let out = html_bodies(&once.bytes).iter().map(|h| live_markup(h)).collect::<String>();
        prop_assert!(!out.contains("list-manage.com"));
        if strip_all || mode == 2 {
            prop_assert!(!out.contains(".tracker.test/"), "remote left under strip or proxy: {}", out);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_always_give_a_mail(raw in prop::collection::vec(any::<u8>(), 0..2000)) {
        let out = run(&raw, &keep());
        prop_assert!(!out.bytes.is_empty());
        // What cannot be read is delivered whole, as an attachment.
        if out.report.error.is_some() {
            let original = original_marked(&out.bytes, "error=");
            prop_assert_eq!(original.as_deref(), Some(&raw[..]));
        }
        let again = run(&out.bytes, &keep());
        prop_assert_eq!(again.bytes, out.bytes);
    }
}
