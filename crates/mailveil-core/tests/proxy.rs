//! Remote content through the image proxy (`proxy`, `prefetch`) and opaque click trackers
//! through the link shield: every remaining remote image and CSS URL is rewritten to a
//! signed `BASE/i/...` (stylesheets `BASE/s/...`), trackers are still stripped, and a
//! second pass changes nothing.

mod common;
use common::*;
use mailveil_core::proxy_url::{self, ProxyConfig, ProxyKind};
use mailveil_core::{Action, FindingKind, Policy, RemoteContent, RuleSource, Rules};

const BASE: &str = "https://mx.example/mv";
const KEY: &[u8] = b"test key";

fn cfg(shield: bool) -> ProxyConfig {
    ProxyConfig {
        shield_links: shield,
        ..ProxyConfig::new(BASE, KEY.to_vec())
    }
}

fn policy(mode: RemoteContent, shield: bool) -> Policy {
    Policy {
        remote_content: mode,
        proxy: Some(cfg(shield)),
        ..Policy::default()
    }
}

fn img(url: &str) -> String {
    proxy_url::proxied(&cfg(false), ProxyKind::Image, url)
}

const MAIL: &str = r#"<html><head>
<link rel="stylesheet" href="http://cdn.sender.example/news.css">
<style>
.hero { background-image: url(http://cdn.sender.example/hero.jpg) }
@import 'http://cdn.sender.example/more.css';
.x { background: image-set("http://cdn.sender.example/x1.png" 1x) }
</style></head><body>
<img src="http://cdn.sender.example/logo.png" alt="Logo" width="200">
<img srcset="http://cdn.sender.example/a.png 1x, http://cdn.sender.example/b.png 2x" alt="a">
<td background="http://cdn.sender.example/bg.gif">x</td>
<p style="color:red;background:url('http://cdn.sender.example/p.png') no-repeat">t</p>
<img src="http://us1.list-manage.com/track/open.php?u=1&id=2&e=3" width="1" height="1">
<img src="http://stats.unknown.example/o/abc.gif" width="1" height="1" style="display:none">
<img src="cid:inline@x">
</body></html>"#;

#[test]
fn proxy_rewrites_every_remote_image_and_css_url_to_signed_proxy_urls() {
    let out = run(&html_mail(MAIL), &policy(RemoteContent::Proxy, false));
    let h = html(&out.bytes);
    for path in [
        "logo.png", "a.png", "b.png", "bg.gif", "p.png", "hero.jpg", "x1.png",
    ] {
        let u = format!("http://cdn.sender.example/{path}");
        assert!(h.contains(&img(&u)), "{path} not proxied in {h}");
    }
    for sheet in ["news.css", "more.css"] {
        let u = format!("http://cdn.sender.example/{sheet}");
        let p = proxy_url::proxied(&cfg(false), ProxyKind::Style, &u);
        assert!(h.contains(&p), "{sheet} not proxied as a stylesheet in {h}");
    }
    assert!(!h.contains("cdn.sender.example"), "{h}");
    assert!(h.contains("cid:inline@x"));
    assert!(h.contains("color:red;"), "{h}");
    assert!(h.contains(r#"alt="Logo" width="200""#));
    let proxied: Vec<_> = out
        .report
        .findings
        .iter()
        .filter(|f| f.action == Action::Proxy)
        .collect();
    assert_eq!(proxied.len(), 9, "{:#?}", out.report.findings);
    assert!(out.report.header_value().contains("; proxied=9"));
}

#[test]
fn known_and_suspected_trackers_are_stripped_not_proxied() {
    for mode in [RemoteContent::Proxy, RemoteContent::Prefetch] {
        let out = run(&html_mail(MAIL), &policy(mode, false));
        let h = html(&out.bytes);
        assert!(!h.contains("list-manage"), "{h}");
        assert!(!h.contains("stats.unknown.example"), "{h}");
        for u in [
            "http://us1.list-manage.com/track/open.php?u=1&id=2&e=3",
            "http://stats.unknown.example/o/abc.gif",
        ] {
            assert!(!h.contains(&proxy_url::encode_url(u)), "{u} proxied");
            let f = out
                .report
                .findings
                .iter()
                .find(|f| f.url.as_deref() == Some(u))
                .expect("reported");
            assert_eq!(f.action, Action::Strip);
        }
    }
}

#[test]
fn prefetch_marks_the_same_urls_for_prefetch() {
    let out = run(&html_mail(MAIL), &policy(RemoteContent::Prefetch, false));
    let h = html(&out.bytes);
    assert!(h.contains(&img("http://cdn.sender.example/logo.png")));
    let n = |a| out.report.findings.iter().filter(|f| f.action == a).count();
    assert_eq!((n(Action::Prefetch), n(Action::Proxy)), (9, 0));
    assert!(out.report.header_value().contains("; prefetched=9"));
}

#[test]
fn proxying_is_idempotent() {
    for mode in [RemoteContent::Proxy, RemoteContent::Prefetch] {
        let p = policy(mode, true);
        let once = run(&html_mail(MAIL), &p);
        let twice = run(&once.bytes, &p);
        assert_eq!(html(&once.bytes), html(&twice.bytes));
        assert!(
            twice
                .report
                .findings
                .iter()
                .all(|f| !matches!(f.action, Action::Proxy | Action::Prefetch | Action::Strip)),
            "{:#?}",
            twice.report.findings
        );
    }
}

#[test]
fn a_url_signed_with_another_key_on_the_same_base_is_left_alone() {
    // Idempotence is by base, not by signature: a forged URL on the base can only reach
    // the proxy, which refuses it.
    let forged = format!(
        "{BASE}/i/AAAA/{}",
        proxy_url::encode_url("http://x.example/")
    );
    let out = run(
        &html_mail(&format!(r#"<img src="{forged}">"#)),
        &policy(RemoteContent::Proxy, false),
    );
    assert!(html(&out.bytes).contains(&forged));
}

#[test]
fn proxy_without_a_configuration_strips() {
    let p = Policy {
        remote_content: RemoteContent::Proxy,
        ..Policy::default()
    };
    let out = run(&html_mail(MAIL), &p);
    assert!(!html(&out.bytes).contains("cdn.sender.example"));
}

#[test]
fn keep_and_strip_are_unchanged_by_a_configured_proxy() {
    let keep = run(&html_mail(MAIL), &policy(RemoteContent::Keep, true));
    assert!(html(&keep.bytes).contains("http://cdn.sender.example/logo.png"));
    assert!(!html(&keep.bytes).contains(BASE));
}

const CLICK_RULES: &str = r#"
[[tracker]]
id = "mailchimp"
name = "Mailchimp"
category = "esp"
source = "test"

[[redirect]]
id = "mailchimp-click"
tracker = "mailchimp"
host = "*.list-manage.com"
path = "/track/click"
opaque = true
source = "test"
"#;

fn click_rules() -> Rules {
    Rules::compile(&[RuleSource {
        name: "click.toml".into(),
        text: CLICK_RULES.into(),
    }])
    .unwrap()
}

const CLICK: &str = "https://news.us1.list-manage.com/track/click?u=1&id=2&e=3";

#[test]
fn shield_links_sends_opaque_click_trackers_through_the_link_shield() {
    let mail = html_mail(&format!(
        r#"<a href="{}">Read more</a> <a href="https://sender.example/page">page</a>"#,
        CLICK.replace('&', "&amp;")
    ));
    let out = mailveil_core::clean(
        &mail,
        &mailveil_core::Envelope::to([READER]),
        &policy(RemoteContent::Proxy, true),
        &click_rules(),
    );
    let h = html(&out.bytes);
    let shielded = proxy_url::proxied(&cfg(true), ProxyKind::Link, CLICK);
    assert!(h.contains(&shielded), "{h}");
    assert!(h.contains(r#"href="https://sender.example/page""#), "{h}");
    let f = out
        .report
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::ClickRedirect)
        .unwrap();
    assert_eq!(f.action, Action::Proxy);
    assert_eq!(
        proxy_url::parse(&cfg(true), &shielded),
        Some((ProxyKind::Link, CLICK.to_string()))
    );
}

#[test]
fn without_shield_links_opaque_click_trackers_are_kept() {
    let mail = html_mail(&format!(r#"<a href="{CLICK}">Read more</a>"#));
    let out = mailveil_core::clean(
        &mail,
        &mailveil_core::Envelope::to([READER]),
        &policy(RemoteContent::Proxy, false),
        &click_rules(),
    );
    assert!(!html(&out.bytes).contains("/l/"));
}
