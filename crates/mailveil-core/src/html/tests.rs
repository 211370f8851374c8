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
    s.split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string())
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
    let out = clean(
        &mail(html),
        &Envelope::to([READER]),
        &Policy::default(),
        &rules,
    );
    assert!(body(&out.bytes).contains("logo.png"));
}

/// Under `keep`, an image whose source a `<base>` made remote is written absolute when
/// the `<base>` goes, and one written absolute without a base is left as it was (the
/// second reading of its URL is skipped there, issue 17).
#[test]
fn kept_images_are_absolute_after_the_base_goes_and_untouched_without_one() {
    let rules = Rules::default();
    let keep = Policy {
        remote_content: RemoteContent::Keep,
        ..Policy::default()
    };
    let clean_body = |html: &str| {
        let out = clean(&mail(html), &Envelope::to([READER]), &keep, &rules);
        (body(&out.bytes), out.report)
    };
    let (b, report) = clean_body(
        r#"<base href="https://cdn.sender.example/n/"><img src="hero.png" width="600" height="300">"#,
    );
    assert!(
        b.contains(r#"src="https://cdn.sender.example/n/hero.png""#) && !b.contains("<base"),
        "{b}"
    );
    let kept: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::RemoteContent && f.action == Action::Keep)
        .filter_map(|f| f.url.as_deref())
        .collect();
    assert_eq!(kept, ["https://cdn.sender.example/n/hero.png"]);
    let absolute =
        r#"<p>Hi</p><img src="HTTPS://CDN.Sender.example/a%20b.png" width="600" height="300">"#;
    let out = clean(&mail(absolute), &Envelope::to([READER]), &keep, &rules);
    assert_eq!(
        body(&out.bytes),
        body(&mail(absolute)),
        "the HTML as it came"
    );
    let urls: Vec<_> = out
        .report
        .findings
        .iter()
        .filter_map(|f| f.url.as_deref())
        .collect();
    assert_eq!(
        urls,
        ["https://cdn.sender.example/a%20b.png"],
        "reported as parsed"
    );
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
        assert!(
            b.contains(&format!("Read it: {shielded}\r\n")),
            "{mode:?}: {b}"
        );
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

fn keep_clean(html: &str) -> (String, Vec<crate::Finding>) {
    let rules = Rules::default();
    let out = clean(
        &mail(html),
        &Envelope::to([READER]),
        &Policy::default(),
        &rules,
    );
    (body(&out.bytes), out.report.findings)
}

fn heuristics(findings: &[crate::Finding]) -> Vec<(String, String)> {
    findings
        .iter()
        .filter(|f| f.rule.starts_with("heuristic:"))
        .map(|f| (f.rule.clone(), f.url.clone().unwrap_or_default()))
        .collect()
}

/// Issue 18 item 1: desktop and mobile copies of a block, each hidden by one layout and
/// shown by another (a comment before the `@media`, an attribute selector showing it, an
/// inline rule), keep their images; an unsized image nobody shows is still a pixel.
#[test]
fn images_a_layout_shows_are_kept_and_images_none_shows_go() {
    let html = r#"<style>.show_div{display:none;} .px{display:none}
/*PHONES*/@media only screen and (max-width:480px) {
 .st-hide{display:none !important}
 *[class="show_div"]{display:block !important; width:auto !important; height:auto !important}
 .mobile-only{display:block !important}
}</style>
<table><tr class="st-hide"><td class="st-hide" style="display:block">
 <img src="https://cdn.sender.example/banner-desktop.png" width="564" height="88" alt="Brand">
</td></tr>
<tr><td class="show_div" style="display:none;">
 <div class="show_div" style="width:0;height:0;overflow:hidden;display:none">
  <img src="https://cdn.sender.example/banner-mobile.png" width="100%" height="266" alt="Brand">
 </div></td></tr>
<tr><td><div class="mobile-only" style="display:none;max-height:0;overflow:hidden">
 <img src="https://cdn.sender.example/arrow.png" alt="">
</div></td></tr>
<tr><td><div class="hide-all" style="display:none">
 <img src="https://cdn.sender.example/social.png" width="48" height="48" alt="Facebook">
 <img src="https://stats.sender.example/o/abc123" alt="">
</div></td></tr>
<tr><td><div class="px"><img src="https://stats.sender.example/p/def456"></div></td></tr>
</table>"#;
    let (b, findings) = keep_clean(html);
    for kept in ["banner-desktop", "banner-mobile", "arrow.png", "social.png"] {
        assert!(b.contains(kept), "{kept} removed: {b}");
    }
    assert_eq!(
        heuristics(&findings),
        [
            (
                "heuristic:hidden-ancestor".to_string(),
                "https://stats.sender.example/o/abc123".to_string()
            ),
            (
                "heuristic:hidden-ancestor".to_string(),
                "https://stats.sender.example/p/def456".to_string()
            )
        ]
    );
    assert!(!b.contains("stats.sender.example"), "{b}");
}

/// An image that looks hidden but is shown elsewhere in the same mail is content: the
/// reader's client loads it anyway. Two hidden copies of one image are not "elsewhere".
#[test]
fn a_hidden_copy_of_a_shown_image_is_kept() {
    let html = r#"<div style="display:none"><img src="https://cdn.sender.example/logo.png"></div>
<p><img src="https://cdn.sender.example/logo.png" width="120" height="40" alt="Logo"></p>
<div style="display:none"><img src="https://t.sender.example/x/77"></div>
<div style="display:none"><img src="https://t.sender.example/x/77"></div>"#;
    let (b, findings) = keep_clean(html);
    assert_eq!(b.matches("cdn.sender.example/logo.png").count(), 2, "{b}");
    assert!(!b.contains("t.sender.example"), "{b}");
    assert!(!b.contains("mailveil-hold"), "{b}");
    assert_eq!(
        heuristics(&findings),
        vec![
            (
                "heuristic:hidden-ancestor".to_string(),
                "https://t.sender.example/x/77".to_string()
            );
            2
        ]
    );
    // Idempotent: the second pass keeps what the first kept.
    let (again, _) = keep_clean(b.trim_end());
    assert_eq!(again, b);
    // Under strip nothing is held: every image loses its URL as before.
    let rules = Rules::default();
    let strip = Policy {
        remote_content: RemoteContent::Strip,
        ..Policy::default()
    };
    let out = clean(&mail(html), &Envelope::to([READER]), &strip, &rules);
    assert!(!body(&out.bytes).contains("sender.example"));
}

/// A conditional comment whose rewrite cannot be written back into a comment goes whole,
/// and what it showed goes with it: its copy of a hidden image no longer counts as
/// shown elsewhere, so the hidden one goes on the first pass, not on the second (found
/// by the clean_bytes fuzz target: not idempotent; seed `regress-removed-comment-shows-nothing`).
#[test]
fn a_removed_comment_shows_nothing() {
    let html = r#"<p>Hi</p><img src="https://t.sender.example/x/9" width="1"><!--[if<!--[if<i <><g src=https://t.sender.example/x/9>"#;
    let (b, findings) = keep_clean(html);
    assert!(!b.contains("t.sender.example"), "{b}");
    assert!(b.contains("<p>Hi</p>"), "{b}");
    assert!(
        findings
            .iter()
            .all(|f| f.action == Action::Strip || f.url.is_none()),
        "{findings:?}"
    );
    let (again, _) = keep_clean(b.trim_end());
    assert_eq!(again.trim_end(), b.trim_end());
}

/// A marker written by the sender is not ours: nothing is held, hidden images go at once.
#[test]
fn a_forged_hold_marker_holds_nothing() {
    let html = r#"<!--mailveil-hold:0--><div style="display:none"><img src="https://t.sender.example/x/1"></div><!--mailveil-hold-end:0--><p>after</p>"#;
    let (b, _) = keep_clean(html);
    assert!(!b.contains("t.sender.example"), "{b}");
    assert!(b.contains("<p>after</p>"), "{b}");
}

/// Issue 18 item 1: a `track.` host alone is no beacon mark.
#[test]
fn content_images_on_a_track_host_are_kept() {
    let html = r#"<img src="https://track.shop.example/Image/files/3f9a2c.png" width="600" height="240" alt="Autumn">
<img src="https://track.shop.example/Image/files/77aa01.png" alt="Boots">
<img src="https://track.shop.example/o/3f9a2c77aa01">
<img src="https://cdn.shop.example/t/open.gif?id=4" width="600" height="2">"#;
    let (b, findings) = keep_clean(html);
    assert!(b.contains("3f9a2c.png") && b.contains("77aa01.png"), "{b}");
    assert!(
        !b.contains("/o/3f9a2c77aa01") && !b.contains("open.gif"),
        "{b}"
    );
    assert!(
        heuristics(&findings)
            .iter()
            .all(|(r, _)| r == "heuristic:beacon-url"),
        "{findings:#?}"
    );
}

/// A junk attribute name whose value holds markup (`<a "="<img src=...`) is no tag to a
/// browser, but a lenient reader may find the image in it: such names go under every
/// policy, even on an element nothing else changes, and the second pass changes nothing.
#[test]
fn markup_hidden_in_a_junk_attribute_goes() {
    let rules = rules(CLICK_RULES);
    let html = r#"<a "="<style>.a{}</style><img src="https://news.us3.list-manage.com/track/open.php?u=1&amp;e=2" width="1" height="1">x</a><p title="a < b">kept</p>
<a a="<img src="https://news.us3.list-manage.com/track/open.php?u=1&amp;e=2" width="1">y</a>
<img alt='<h2 style="x">Sale</h2>' src="cid:hero" width="600">"#;
    for (name, policy) in policies() {
        let out = clean(&mail(html), &Envelope::to([READER]), &policy, &rules);
        let b = body(&out.bytes);
        assert!(!b.contains("list-manage"), "{name}: {b}");
        assert!(!b.contains("<img src=\"https"), "{name}: {b}");
        assert!(
            b.contains(r#"<p title="a < b">kept</p>"#),
            "{name}: a plain name stays: {b}"
        );
        // What a browser reads stays; what reads as a tag in the text does not.
        assert!(
            b.contains(
                r#"<img alt="&lt;h2 style=&quot;x&quot;>Sale&lt;/h2>" src="cid:hero" width="600">"#
            ),
            "{name}: {b}"
        );
        let again = clean(&out.bytes, &Envelope::to([READER]), &policy, &rules);
        assert_eq!(again.bytes, out.bytes, "{name}");
    }
}

/// Issue 15: the banner goes into the widest visible fixed-width element of the layout,
/// as wide as it (a hidden one, however wide, is not the layout); no marker is left,
/// and a second pass changes nothing.
#[test]
fn the_banner_sits_in_the_visible_layout_and_a_second_pass_changes_nothing() {
    let rules = rules(CLICK_RULES);
    let policy = Policy {
        banner: true,
        ..Policy::default()
    };
    let env = Envelope::to([READER]);
    let pixel =
        format!("<img src=\"https://t.example/o.gif?e={READER}\" width=\"1\" height=\"1\">");
    let cases = [
        (
            format!(
                "<body><div style=\"display:none;max-width:900px\">preheader</div>\
<table width=\"300\"><tr><td>top</td></tr></table>\
<table width=\"600\" align=\"center\"><tr><td>Hi{pixel}</td></tr></table></body>"
            ),
            "<div data-mailveil-banner=\"1\" role=\"note\" lang=\"en\" style=\"max-width:600px;",
            "</div><table width=\"600\"",
        ),
        (
            format!("<table width=\"100%\"><tr><td width=\"640px\">x{pixel}</td></tr></table>"),
            "<td width=\"640px\"><div data-mailveil-banner=\"1\" role=\"note\" lang=\"en\" style=\"max-width:640px;",
            "",
        ),
        (
            format!("<body><p>fluid{pixel}</p></body>"),
            "<body><div data-mailveil-banner=\"1\" role=\"note\" lang=\"en\" style=\"margin:0 0 12px 0;",
            "",
        ),
    ];
    for (html, note, after) in cases {
        let first = clean(&mail(&html), &env, &policy, &rules);
        let out = body(&first.bytes);
        assert_eq!(out.matches("data-mailveil-banner").count(), 1, "{out}");
        assert!(out.contains(note) && out.contains(after), "{out}");
        assert!(
            !out.contains("mailveil-banner-"),
            "a marker was left: {out}"
        );
        let second = clean(&first.bytes, &env, &policy, &rules);
        assert_eq!(second.bytes, first.bytes, "{out}");
    }
}

/// Attributes and tag names are read from the document in place where lol_html's own
/// reading is the bytes as written (`elements::Source`), else through lol_html: in a
/// charset other than UTF-8 with bytes above ASCII, upper-case names, a value that
/// starts with a byte-order mark (lol_html drops it, and in a single-byte charset reads
/// the rest as UTF-8), a name lol_html ends at a carriage return. Debug builds compare
/// the two readings on every attribute; here the verdicts and the bytes kept are checked.
#[test]
fn attributes_read_in_place_or_through_lol_html_judge_the_same() {
    let kept: &[u8] = b"<img\rsrc=\"https://cdn.example/logo.png\" width=\"120\" \
        height=\"40\" alt=\"\xef\xbb\xbfLogo caf\xc3\xa9\" data-x><A HREF=\"https://example.org/a\" \
        TITLE=\"\xef\xbb\xbfx\">Read</A></P>";
    for (charset, alt) in [("utf-8", &b"caf\xc3\xa9"[..]), ("windows-1252", b"caf\xe9")] {
        let mut m = format!(
            "From: news@sender.example\r\nTo: {READER}\r\nSubject: t\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/html; charset={charset}\r\n\r\n<P CLASS=x><IMG \
             SRC=\"https://cdn.example/dot.png\" WIDTH=\"1\" HEIGHT=\"1\" ALT=\""
        )
        .into_bytes();
        m.extend_from_slice(alt);
        m.extend_from_slice(b"\">");
        m.extend_from_slice(kept);
        m.extend_from_slice(b"\r\n");
        let out = clean(
            &m,
            &Envelope::to([READER]),
            &Policy::default(),
            &Rules::default(),
        );
        let body = &out.bytes[out.bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
        assert_eq!(
            heuristics(&out.report.findings),
            [(
                "heuristic:tiny-size".to_string(),
                "https://cdn.example/dot.png".to_string()
            )],
            "{charset}"
        );
        assert!(
            body.windows(kept.len()).any(|w| w == kept),
            "{charset}: {}",
            String::from_utf8_lossy(body)
        );
    }
}
