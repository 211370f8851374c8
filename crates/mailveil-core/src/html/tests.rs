//! The HTML rewrite through `clean()`: what a part fetches after cleaning.

use crate::proxy_url::ProxyConfig;
use crate::{Action, Envelope, FindingKind, Policy, RemoteContent, RuleSource, Rules, clean};

const READER: &str = "reader@example.org";

const CLICK_RULES: &str = r#"
[[tracker]]
id = "mailchimp"
name = "Mailchimp"
category = "esp"
source = "test"

[[tracker]]
id = "google"
name = "Google"
category = "other"
source = "test"

[[redirect]]
id = "mailchimp-click"
tracker = "mailchimp"
host = "*.list-manage.com"
path = "/track/click"
opaque = true
source = "test"

[[redirect]]
id = "google-url-q"
tracker = "google"
host = "www.google.*"
path = "/url"
opaque = false
param = "q"
source = "test"
"#;

fn rules(text: &str) -> Rules {
    Rules::compile(&[RuleSource {
        name: "test.toml".into(),
        text: text.into(),
    }])
    .unwrap()
}

fn mail(html: &str) -> Vec<u8> {
    format!(
        "From: news@sender.example\r\nTo: {READER}\r\nSubject: t\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n"
    )
    .into_bytes()
}

fn body(out: &[u8]) -> String {
    let s = String::from_utf8_lossy(out);
    s.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string())
}

fn policies() -> Vec<(&'static str, Policy)> {
    let proxy = Some(ProxyConfig::new("https://mx.example/mv", b"k".to_vec()));
    let mode = |remote_content, proxy: Option<ProxyConfig>| Policy {
        remote_content,
        proxy,
        ..Policy::default()
    };
    vec![
        ("keep", mode(RemoteContent::Keep, None)),
        ("strip", mode(RemoteContent::Strip, None)),
        ("proxy", mode(RemoteContent::Proxy, proxy.clone())),
        ("prefetch", mode(RemoteContent::Prefetch, proxy)),
    ]
}

/// A click-tracking redirect used where the mail fetches on open (an image, a CSS
/// background, a srcset candidate) is hit when the mail is opened: a tracker under every
/// remote-content policy, whether its destination is opaque or in plain view.
#[test]
fn a_click_tracker_in_a_fetch_position_is_stripped_under_every_policy() {
    let rules = rules(CLICK_RULES);
    let html = r#"<p>Hello</p>
<img src="https://news.us1.list-manage.com/track/click?u=1&amp;id=2&amp;e=3" width="600" height="300" alt="Sale">
<div style="background-image:url('https://news.us1.list-manage.com/track/click?u=1&amp;id=4&amp;e=3')">x</div>
<img srcset="https://www.google.com/url?q=https%3A%2F%2Fcdn.sender.example%2Fa.png 2x" alt="a">
<table background="https://www.google.com/url?q=https://cdn.sender.example/bg.png"><tr><td>t</td></tr></table>
<a href="https://news.us1.list-manage.com/track/click?u=1&amp;id=5&amp;e=3">Read</a>"#;
    for (name, policy) in policies() {
        let out = clean(&mail(html), &Envelope::to([READER]), &policy, &rules);
        let b = body(&out.bytes);
        let fetches = b.matches("list-manage.com").count() + b.matches("google.com").count();
        assert_eq!(fetches, 1, "{name}: only the link is left: {b}");
        assert!(b.contains("id=5"), "{name}: the link stays: {b}");
        assert!(!b.contains("/i/"), "{name}: nothing of it proxied: {b}");
        let stripped: Vec<&str> = out
            .report
            .findings
            .iter()
            .filter(|f| f.kind == FindingKind::Pixel && f.action == Action::Strip)
            .map(|f| f.rule.as_str())
            .collect();
        assert_eq!(
            stripped,
            [
                "mailchimp-click",
                "mailchimp-click",
                "google-url-q",
                "google-url-q"
            ],
            "{name}: {:#?}",
            out.report.findings
        );
    }
}

/// A URL on a host that also serves redirects, carrying no destination, is not a click.
#[test]
fn a_plain_image_on_a_redirect_host_is_content() {
    let rules = rules(CLICK_RULES);
    let html = r#"<img src="https://www.google.com/url/logo.png" width="100" height="40">"#;
    let out = clean(&mail(html), &Envelope::to([READER]), &Policy::default(), &rules);
    assert!(body(&out.bytes).contains("logo.png"));
}

fn text_mail(text: &str) -> Vec<u8> {
    format!(
        "From: news@sender.example\r\nTo: {READER}\r\nSubject: t\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    )
    .into_bytes()
}

/// Issue 18 item 6 (core): with the link shield on, an opaque click tracker in text/plain
/// goes through the shield like one in HTML; a second pass changes nothing; without the
/// shield the link is kept as it was.
#[test]
fn text_links_to_opaque_click_trackers_go_through_the_shield() {
    let rules = rules(CLICK_RULES);
    let click = "https://news.us1.list-manage.com/track/click?u=1&id=2&e=3";
    let raw = text_mail(&format!(
        "Read it: {click}\r\nShop: https://shop.example/sale?id=9"
    ));
    let cfg = ProxyConfig {
        shield_links: true,
        ..ProxyConfig::new("https://mx.example/mv", b"k".to_vec())
    };
    let shielded = crate::proxy_url::proxied(&cfg, crate::proxy_url::ProxyKind::Link, click);
    for mode in [RemoteContent::Proxy, RemoteContent::Prefetch] {
        let policy = Policy {
            remote_content: mode,
            proxy: Some(cfg.clone()),
            ..Policy::default()
        };
        let once = clean(&raw, &Envelope::to([READER]), &policy, &rules);
        let b = body(&once.bytes);
        assert!(b.contains(&format!("Read it: {shielded}\r\n")), "{mode:?}: {b}");
        assert!(b.contains("Shop: https://shop.example/sale?id=9"), "{b}");
        let f = once
            .report
            .findings
            .iter()
            .find(|f| f.kind == FindingKind::ClickRedirect)
            .expect("reported");
        assert_eq!((f.action, f.location.as_str()), (Action::Proxy, "text"));
        let twice = clean(&once.bytes, &Envelope::to([READER]), &policy, &rules);
        assert_eq!(twice.bytes, once.bytes, "{mode:?}: idempotent");
    }
    let no_shield = Policy {
        remote_content: RemoteContent::Proxy,
        proxy: Some(ProxyConfig::new("https://mx.example/mv", b"k".to_vec())),
        ..Policy::default()
    };
    let out = clean(&raw, &Envelope::to([READER]), &no_shield, &rules);
    assert!(body(&out.bytes).contains(&format!("Read it: {click}\r\n")));
}
