//! The report's two written forms stay byte for byte what they are: the JSON report
//! (`filter --report-json` writes `serde_json::to_vec_pretty(&report)`) and the
//! `X-Mailveil` header. Readers parse both (scripts, sieve rules, the store), so a change
//! of a kind's or an action's name, of a location, or of the field order is a change of
//! format, to be made on purpose: the golden files under `tests/golden/` pin them for a
//! mail that finds something in every kind of place, under each remote-content mode.
//!
//! `MAILVEIL_BLESS_GOLDEN=1 cargo test -p mailveil-core --test report_format` rewrites the
//! golden files (then review the diff).

mod common;
use common::*;
use mailveil_core::{Envelope, Policy, ProxyConfig, RemoteContent, RuleSource, Rules, clean};
use std::path::PathBuf;

/// A mail with a finding in every kind of place the core reports: image sources, srcset,
/// attributes that load (background, poster, SVG href), CSS in a style attribute and in a
/// sheet (`url()`, `@import`, script in CSS), stylesheet links, hints, script elements,
/// event handlers, `<base>` and the links it resolves, click trackers and tracking
/// parameters in HTML and in text, a read-receipt header, an inline-PGP part, a part
/// whose transfer encoding is damaged, an encrypted part.
fn mail() -> Vec<u8> {
    let html = r#"<html manifest="http://cdn.sender.example/app.manifest"><head>
<base href="http://cdn.sender.example/base/">
<link rel="stylesheet" href="http://cdn.sender.example/news.css">
<link rel="dns-prefetch" href="//t.sender.example">
<meta http-equiv="refresh" content="0;url=http://t.sender.example/r">
<script src="http://t.sender.example/s.js"></script>
<style>
@import 'http://cdn.sender.example/more.css';
.hero { background-image: url(http://cdn.sender.example/hero.jpg) }
.bad { width: expression(alert(1)) }
</style></head><body onload="track()">
<img src="http://cdn.sender.example/logo.png" alt="Logo" width="200">
<img src="relative/pic.png" alt="rel" width="100">
<img srcset="http://cdn.sender.example/a.png 1x, http://cdn.sender.example/b.png 2x" alt="a">
<table><tr><td background="http://cdn.sender.example/bg.gif">x</td></tr></table>
<video poster="http://cdn.sender.example/poster.jpg"></video>
<svg><image href="http://cdn.sender.example/svg.png" width="50" height="50"/></svg>
<p style="color:red;background:url('http://cdn.sender.example/p.png') no-repeat">t</p>
<img src="http://us1.list-manage.com/track/open.php?u=1&amp;id=2&amp;e=3" width="1" height="1">
<img src="http://stats.unknown.example/o/abc.gif" width="1" height="1" style="display:none">
<a href="https://shop.example/sale?utm_source=news&amp;utm_medium=email&amp;id=4" ping="http://t.sender.example/p">Sale</a>
<a href="more.html">More</a>
<a href="https://click.sender.example/ls/click?upn=abcdefghijklmnopqrstuvwxyz0123456789">Opaque</a>
<a href="https://go.sender.example/r?to=https%3A%2F%2Fshop.example%2Fitem%3Fid%3D9">Item</a>
</body></html>"#;
    let text = "Hello, see https://shop.example/sale?utm_source=news&utm_campaign=x&id=4 today.";
    let pgp = "-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nsigned text, https://sender.example/x\r\n-----BEGIN PGP SIGNATURE-----\r\nAAAA\r\n-----END PGP SIGNATURE-----";
    format!(
        "From: News <news@sender.example>\r\nTo: {READER}\r\nSubject: Golden\r\n\
Message-ID: <golden@sender.example>\r\nDisposition-Notification-To: news@sender.example\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
--b1\r\nContent-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n\
--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n\
--b2--\r\n\
--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{pgp}\r\n\
--b1\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: base64\r\n\r\n\
PHA+SGk8L3A+!!!\r\n\
--b1\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\
Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAxggE=\r\n\
--b1--\r\n"
    )
    .into_bytes()
}

/// The test rules, and a campaign parameter, a click tracker that carries its
/// destination and an opaque one.
fn golden_rules() -> Rules {
    let links = r#"
[[param]]
id = "utm"
tracker = "litmus"
names = ["utm_*"]
class = "campaign"
source = "test"

[[redirect]]
id = "sender-go"
tracker = "sendgrid"
host = "go.sender.example"
path = "/r"
opaque = false
param = "to"
source = "test"

[[redirect]]
id = "sender-click"
tracker = "sendgrid"
host = "click.sender.example"
path = "/ls/click"
opaque = true
source = "test"
"#;
    Rules::compile(&[
        RuleSource {
            name: "test.toml".into(),
            text: TEST_RULES.into(),
        },
        RuleSource {
            name: "links.toml".into(),
            text: links.into(),
        },
    ])
    .unwrap()
}

fn policies() -> Vec<(&'static str, Policy)> {
    let proxy = ProxyConfig {
        shield_links: true,
        ..ProxyConfig::new("https://mx.example/mv", b"golden key".to_vec())
    };
    vec![
        ("keep", keep()),
        (
            "strip",
            Policy {
                strip_read_receipts: true,
                ..strip()
            },
        ),
        (
            "prefetch",
            Policy {
                remote_content: RemoteContent::Prefetch,
                proxy: Some(proxy),
                ..Policy::default()
            },
        ),
    ]
}

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// The version is not part of the format: it is written as `VERSION`.
fn versionless(s: &str) -> String {
    s.replace(mailveil_core::VERSION, "VERSION")
}

#[test]
fn json_report_and_header_are_byte_for_byte_the_golden_ones() {
    let bless = std::env::var_os("MAILVEIL_BLESS_GOLDEN").is_some();
    for (name, policy) in policies() {
        let out = clean(&mail(), &Envelope::to([READER]), &policy, &golden_rules());
        let json = versionless(
            &String::from_utf8(serde_json::to_vec_pretty(&out.report).unwrap()).unwrap(),
        );
        let header = versionless(&out.report.header_value());
        let report = format!("{header}\n{json}\n");
        check(&format!("report-{name}.txt"), &report, bless);
        // The cleaned mail too: which URLs became proxy images (`/i/`) and which proxy
        // stylesheets (`/s/`) is decided from the finding's location.
        let bytes = versionless(&String::from_utf8_lossy(&out.bytes));
        check(&format!("mail-{name}.eml"), &bytes, bless);
    }
}

fn check(name: &str, got: &str, bless: bool) {
    let path = golden(name);
    if bless {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; bless with MAILVEIL_BLESS_GOLDEN=1",
            path.display()
        )
    });
    assert!(got == want, "{name} changed; got:\n{got}");
}
