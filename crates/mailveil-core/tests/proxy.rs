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
        // The second pass judges the proxy URLs again (never trusted) and signs them to
        // the same URLs: the mail comes out byte for byte, header included.
        assert_eq!(
            String::from_utf8_lossy(&once.bytes),
            String::from_utf8_lossy(&twice.bytes)
        );
        assert!(
            twice
                .report
                .findings
                .iter()
                .all(|f| f.action != Action::Strip),
            "{:#?}",
            twice.report.findings
        );
    }
}

/// A proxy URL as a reader of this server gets it by mailing a URL to themselves.
fn minted(kind: ProxyKind, url: &str) -> String {
    proxy_url::proxied(&cfg(true), kind, url)
}

/// Issue 14: a URL signed by this installation is judged by the URL it carries. Another
/// reader had it signed (the URL carries *our* reader's address, which means nothing in
/// their own mail), or a tracker rule came later: either way it is stripped now.
#[test]
fn a_signed_proxy_url_for_a_tracker_is_judged_and_stripped() {
    let token = format!("https://img.sender.example/logo.png?u={READER}");
    let pixel = "http://us1.list-manage.com/track/open.php?u=1&id=2";
    for mode in [RemoteContent::Proxy, RemoteContent::Prefetch] {
        let mail = html_mail(&format!(
            r#"<img src="{}" width="120" alt="a"><img src="{}" width="120" alt="b">
<p style="background:url('{}')">x</p><img src="{}" width="120" alt="c">"#,
            minted(ProxyKind::Image, &token),
            minted(ProxyKind::Image, pixel),
            minted(ProxyKind::Image, pixel),
            // A shield URL where an image goes: judged as the image it would load.
            minted(ProxyKind::Link, pixel),
        ));
        let out = run(&mail, &policy(mode, true));
        let h = html(&out.bytes);
        assert!(!h.contains(BASE), "{h}");
        for dest in [token.as_str(), pixel] {
            let f = out
                .report
                .findings
                .iter()
                .find(|f| f.url.as_deref() == Some(dest))
                .unwrap_or_else(|| panic!("{dest} not reported: {:#?}", out.report.findings));
            assert_eq!(f.action, Action::Strip, "{f:?}");
        }
        // Reports name the URL judged, never a proxy URL with its signature.
        for f in &out.report.findings {
            assert!(!f.url.as_deref().unwrap_or("").starts_with(BASE), "{f:?}");
        }
    }
}

#[test]
fn a_content_image_arriving_proxied_is_judged_and_proxied_again() {
    let logo = "http://cdn.sender.example/logo.png";
    let legacy = {
        let enc = proxy_url::encode_url(logo);
        let sig = proxy_url::sign_legacy(KEY, ProxyKind::Image, &enc);
        format!("{BASE}/i/{sig}/{enc}")
    };
    let forged = format!("{BASE}/i/AAAAAAAA/AAAA/{}", proxy_url::encode_url(logo));
    let stylesheet_kind = minted(ProxyKind::Style, logo);
    for src in [
        minted(ProxyKind::Image, logo),
        legacy,
        forged,
        stylesheet_kind,
    ] {
        let mail = html_mail(&format!(r#"<img src="{src}" width="200" alt="Logo">"#));
        let out = run(&mail, &policy(RemoteContent::Prefetch, false));
        let h = html(&out.bytes);
        assert!(h.contains(&img(logo)), "{src}: {h}");
        let f = &out.report.findings[0];
        assert_eq!(
            (f.action, f.url.as_deref()),
            (Action::Prefetch, Some(logo)),
            "{src}"
        );
        // Under strip, what it carries goes like any remote image.
        let out = run(&mail, &policy(RemoteContent::Strip, false));
        assert!(!html(&out.bytes).contains(BASE), "{src}");
    }
}

#[test]
fn a_url_on_the_proxy_that_carries_nothing_readable_is_stripped() {
    for src in [
        format!("{BASE}/i/AAAA/not-base64!"),
        format!("{BASE}/l/x"),
        format!("{BASE}/i/a/b/{}", proxy_url::encode_url("not a url")),
    ] {
        let out = run(
            &html_mail(&format!(r#"<img src="{src}" width="200" alt="x">"#)),
            &policy(RemoteContent::Proxy, false),
        );
        let h = html(&out.bytes);
        assert!(!h.contains(BASE), "{src}: {h}");
        assert!(h.contains(r#"alt="x""#), "the image keeps its place: {h}");
        let f = &out.report.findings[0];
        assert_eq!(
            (f.action, f.rule.as_str(), &f.url),
            (Action::Strip, "proxy:unreadable", &None)
        );
    }
}

/// A link through our shield, mailed in: it leads where its URL leads, cleaned, and is
/// shielded again only when that URL is an opaque click tracker.
#[test]
fn a_shield_url_mailed_in_is_judged_like_any_link() {
    let page = &format!("https://sender.example/page?e={READER}&id=7");
    let mail = html_mail(&format!(
        r#"<a href="{}">page</a> <a href="{}">more</a> <a href="{}">image</a>"#,
        minted(ProxyKind::Link, page),
        minted(ProxyKind::Link, CLICK),
        minted(ProxyKind::Image, "https://cdn.sender.example/big.png"),
    ));
    let out = mailveil_core::clean(
        &mail,
        &mailveil_core::Envelope::to([READER]),
        &policy(RemoteContent::Proxy, true),
        &click_rules(),
    );
    let h = html(&out.bytes);
    assert!(
        h.contains(r#"href="https://sender.example/page?id=7""#),
        "{h}"
    );
    assert!(h.contains(&minted(ProxyKind::Link, CLICK)), "{h}");
    assert!(
        h.contains(r#"href="https://cdn.sender.example/big.png""#),
        "{h}"
    );
    assert!(
        out.report
            .findings
            .iter()
            .any(|f| f.rule == "proxy:own-url" && f.url.as_deref() == Some(page.as_str())),
        "{:#?}",
        out.report.findings
    );
    // Without the shield, the click tracker is left as the tracker's own URL.
    let out = mailveil_core::clean(
        &mail,
        &mailveil_core::Envelope::to([READER]),
        &policy(RemoteContent::Proxy, false),
        &click_rules(),
    );
    let h = html(&out.bytes);
    assert!(!h.contains(BASE), "{h}");
    assert!(h.contains(&CLICK.replace('&', "&amp;")), "{h}");
}

#[test]
fn a_shield_url_in_plain_text_is_replaced_by_its_cleaned_destination() {
    let page = &format!("https://sender.example/page?e={READER}&id=7");
    let mail = format!(
        "From: a@sender.example\r\nTo: {READER}\r\nSubject: t\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee {}\r\n",
        minted(ProxyKind::Link, page)
    );
    let out = run(mail.as_bytes(), &policy(RemoteContent::Proxy, true));
    let t = String::from_utf8_lossy(&out.bytes);
    assert!(
        t.contains("See https://sender.example/page?id=7\r\n"),
        "{t}"
    );
    assert!(!t.contains(BASE), "{t}");
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
