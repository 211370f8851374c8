//! Tests of the link decision. Every URL here is made up, modelled on the shapes in
//! shared/corpus/patterns.tsv; tokens and destinations are our own.

use super::*;
use crate::rules::RuleSource;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::io::Write;

const READER: &str = "reader@example.org";

/// One small rule set with an entry per format, in the shipped format.
const RULES: &str = r#"
[[tracker]]
id = "google"
name = "Google"
category = "other"
source = "test"

[[tracker]]
id = "microsoft"
name = "Microsoft SafeLinks"
category = "security"
source = "test"

[[tracker]]
id = "facebook"
name = "Facebook"
category = "social"
source = "test"

[[tracker]]
id = "amazon-ses"
name = "Amazon SES"
category = "esp"
source = "test"

[[tracker]]
id = "mailgun"
name = "Mailgun"
category = "esp"
source = "test"

[[tracker]]
id = "substack"
name = "Substack"
category = "esp"
source = "test"

[[tracker]]
id = "sailthru"
name = "Sailthru"
category = "esp"
source = "test"

[[tracker]]
id = "convertkit"
name = "ConvertKit"
category = "esp"
source = "test"

[[tracker]]
id = "mailjet"
name = "Mailjet"
category = "esp"
source = "test"

[[tracker]]
id = "postmark"
name = "Postmark"
category = "esp"
source = "test"

[[tracker]]
id = "mandrill"
name = "Mandrill"
category = "esp"
source = "test"

[[tracker]]
id = "customer-io"
name = "Customer.io"
category = "esp"
source = "test"

[[tracker]]
id = "amazon"
name = "Amazon"
category = "other"
source = "test"

[[tracker]]
id = "nylas"
name = "Nylas"
category = "other"
source = "test"

[[tracker]]
id = "yamm"
name = "YAMM"
category = "other"
source = "test"

[[tracker]]
id = "walmart"
name = "Walmart"
category = "other"
source = "test"

[[tracker]]
id = "mailchimp"
name = "Mailchimp"
category = "esp"
source = "test"

[[tracker]]
id = "sendgrid"
name = "Twilio SendGrid"
category = "esp"
source = "test"

[[tracker]]
id = "hubspot"
name = "HubSpot"
category = "esp"
source = "test"

[[redirect]]
id = "google-url"
tracker = "google"
host = "google.com"
path = "/url"
opaque = false
param = "q"
encoding = "plain"
source = "test"

[[redirect]]
id = "safelinks"
tracker = "microsoft"
host = "safelinks.protection.outlook.com"
path = "/"
opaque = false
param = "url"
encoding = "plain"
source = "test"

[[redirect]]
id = "facebook-l"
tracker = "facebook"
host = "l.facebook.com"
path = "/l.php"
opaque = false
param = "u"
encoding = "plain"
source = "test"

[[redirect]]
id = "amazon-ses-click"
tracker = "amazon-ses"
host = "awstrack.me"
path = "/L0/"
opaque = false
segment = 1
encoding = "plain"
source = "test"

[[redirect]]
id = "amazon-ses-click-custom"
tracker = "amazon-ses"
host = "click.*"
path = "/CL0/"
opaque = false
segment = 1
encoding = "plain"
source = "test"

[[redirect]]
id = "mailgun-click"
tracker = "mailgun"
host = "email.*"
path = "/c/eJ"
opaque = false
segment = 1
encoding = "zlib-base64url-query"
field = "l"
source = "test"

[[redirect]]
id = "substack-click-b64"
tracker = "substack"
host = "substack.com"
path = "/redirect/2/"
opaque = false
segment = 2
encoding = "base64-json"
field = "e"
source = "test"

[[redirect]]
id = "substack-click-opaque"
tracker = "substack"
host = "substack.com"
path = "/redirect/"
opaque = true
source = "test"

[[redirect]]
id = "sailthru-click"
tracker = "sailthru"
host = "link.*"
path = "/click/*/aHR0"
opaque = false
segment = 2
encoding = "base64url"
source = "test"

[[redirect]]
id = "convertkit-click"
tracker = "convertkit"
host = "click.convertkit-mail*.com"
path = "/"
opaque = false
segment = 2
encoding = "base64"
source = "test"

[[redirect]]
id = "mailjet-click"
tracker = "mailjet"
host = "mjt.lu"
path = "/lnk/"
opaque = false
segment = -1
encoding = "mailjet"
source = "test"

[[redirect]]
id = "postmark-click-3"
tracker = "postmark"
host = "pstmrk.it"
path = "/3"
opaque = false
segment = 1
encoding = "postmark"
source = "test"

[[redirect]]
id = "postmark-click-2"
tracker = "postmark"
host = "pstmrk.it"
path = "/2"
opaque = false
segment = 1
encoding = "postmark"
source = "test"

[[redirect]]
id = "mandrill-click"
tracker = "mandrill"
host = "mandrillapp.com"
path = "/track/click/"
opaque = false
param = "p"
encoding = "base64-json"
field = "p.url"
source = "test"

[[redirect]]
id = "customer-io-click"
tracker = "customer-io"
host = "customeriomail.com"
path = "/e/c/"
opaque = false
segment = 2
encoding = "base64-json"
field = "href"
source = "test"

[[redirect]]
id = "amazon-click"
tracker = "amazon"
host = "www.amazon.*"
path = "/gp/r.html"
opaque = false
param = "U"
encoding = "plain"
source = "test"

[[redirect]]
id = "nylas-click"
tracker = "nylas"
host = "link.nylas.com"
path = "/link/"
opaque = false
param = "redirect"
encoding = "plain"
source = "test"

[[redirect]]
id = "yamm-click"
tracker = "yamm"
host = "*yamm-track.appspot.com"
path = "/Redirect"
opaque = false
param = "link"
encoding = "plain"
source = "test"

[[redirect]]
id = "walmart-click"
tracker = "walmart"
host = "w-mt.co"
path = "/g/"
opaque = false
param = "redirectTo"
encoding = "plain"
source = "test"

[[redirect]]
id = "mailchimp-click"
tracker = "mailchimp"
host = "*.list-manage*.com"
path = "/track/click"
opaque = true
source = "test"

[[redirect]]
id = "sendgrid-click-ls"
tracker = "sendgrid"
host = "sendgrid.net"
path = "/ls/click"
opaque = true
source = "test"

[[param]]
id = "utm"
names = ["utm_*"]
class = "campaign"
source = "test"

[[param]]
id = "mailchimp-subscriber"
tracker = "mailchimp"
names = ["mc_eid", "mc_cid"]
class = "subscriber"
source = "test"

[[param]]
id = "hubspot-subscriber"
tracker = "hubspot"
names = ["_hsenc", "_hsmi"]
class = "subscriber"
source = "test"

[[param]]
id = "click-ids"
names = ["fbclid", "gclid", "msclkid"]
class = "click-id"
source = "test"
"#;

fn rules() -> Rules {
    Rules::compile(&[RuleSource {
        name: "links-test.toml".into(),
        text: RULES.into(),
    }])
    .expect("test rules compile")
}

struct Run {
    rules: Rules,
    policy: LinkPolicy,
    text: Option<String>,
    list_unsubscribe: Vec<String>,
}

impl Run {
    fn new() -> Self {
        Run {
            rules: rules(),
            policy: LinkPolicy::default(),
            text: None,
            list_unsubscribe: Vec::new(),
        }
    }

    fn clean(&self, url: &str) -> LinkOutcome {
        let detector = Detector::new(&self.rules, [READER]);
        let ctx = LinkContext {
            rules: &self.rules,
            detector: &detector,
            policy: &self.policy,
            link_text: self.text.as_deref(),
            list_unsubscribe: &self.list_unsubscribe,
        };
        clean_link(url, &ctx)
    }

    /// The URL a click would go to after cleaning.
    fn result(&self, url: &str) -> String {
        self.clean(url).url.unwrap_or_else(|| url.to_string())
    }
}

fn clean(url: &str) -> LinkOutcome {
    Run::new().clean(url)
}

fn result(url: &str) -> String {
    Run::new().result(url)
}

fn unwrapped_by(out: &LinkOutcome) -> Vec<&str> {
    out.steps
        .iter()
        .filter_map(|s| match s {
            LinkStep::Unwrapped { rule, .. } => Some(rule.as_str()),
            _ => None,
        })
        .collect()
}

/// encodeURIComponent.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

// ---- wrappers, one per format (the shapes of patterns.tsv, our own tokens) ----

fn google(dest: &str) -> String {
    format!(
        "https://www.google.com/url?q={}&sa=D&source=editors&ust=1700000000000000&usg=AOvVaw0madeUpToken",
        enc(dest)
    )
}
fn safelinks(dest: &str) -> String {
    format!(
        "https://eur01.safelinks.protection.outlook.com/?url={}&data=05%7C02%7Creader%40example.org%7Cmadeup%7C0&sdata=bWFkZXVw%3D&reserved=0",
        enc(dest)
    )
}
fn facebook(dest: &str) -> String {
    format!(
        "https://l.facebook.com/l.php?u={}&h=AT0madeUpHash",
        enc(dest)
    )
}
fn ses(dest: &str) -> String {
    format!(
        "https://abcdefgh.r.eu-west-1.awstrack.me/L0/{}/1/0102018c00000000-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee-000000/MadeUpSig0000000000000000=350",
        enc(dest)
    )
}
fn ses_custom(dest: &str) -> String {
    format!(
        "https://click.mail.shop.example/CL0/{}/1/0100018c00000000-11111111-2222-3333-4444-555555555555-000000/MadeUpSig=350",
        enc(dest)
    )
}
fn mailgun(dest: &str) -> String {
    let q = format!(
        "l={}&r={}&h=0123456789abcdef&i=%3C20240101.1.abc%40mg.example%3E",
        enc(dest),
        enc(READER)
    );
    format!(
        "https://email.mg2.news.example/c/{}",
        URL_SAFE_NO_PAD.encode(zlib(q.as_bytes()))
    )
}
fn substack(dest: &str) -> String {
    let json = serde_json::json!({"e": dest, "u": 4242, "a": 1}).to_string();
    format!(
        "https://substack.com/redirect/2/{}.MadeUpSignature_000",
        URL_SAFE_NO_PAD.encode(json)
    )
}
fn sailthru(dest: &str) -> String {
    format!(
        "https://link.news.example/click/12345678.901234/{}/5f0e0d0c0b0a09080706050aB1234567f",
        URL_SAFE_NO_PAD.encode(dest)
    )
}
fn convertkit(dest: &str) -> String {
    format!(
        "https://click.convertkit-mail4.com/abcd1234efgh5678ijkl/mnop9qrstu/{}",
        STANDARD.encode(dest)
    )
}
fn mailjet(dest: &str) -> String {
    format!(
        "https://abcde.mjt.lu/lnk/CAAAAMadeUpIdsAAAAAAAAAAAAAAAAAAAAAAAAAA/1/MadeUpSig_-0123456789/{}",
        URL_SAFE_NO_PAD.encode(dest)
    )
}
fn postmark(dest: &str) -> String {
    let (marker, rest) = match dest.strip_prefix("https://") {
        Some(r) => ("3s", r),
        None => ("3", dest.strip_prefix("http://").unwrap_or(dest)),
    };
    format!(
        "https://click.pstmrk.it/{marker}/{}/AbCd/EfGhAQ/AQ/00000000-1111-2222-3333-444444444444/1/MadeUpSig0",
        enc(rest)
    )
}
fn mandrill(dest: &str) -> String {
    let inner = serde_json::json!({"u": 1234, "v": 1, "url": dest, "id": "0123abcd"}).to_string();
    let outer = serde_json::json!({"s": "madeupsig", "v": 1, "p": inner}).to_string();
    let host = Parts::parse(dest).map(|p| p.host).unwrap_or_default();
    format!(
        "https://mandrillapp.com/track/click/30000000/{host}?p={}",
        enc(&STANDARD.encode(outer))
    )
}
fn customer_io(dest: &str) -> String {
    let json = serde_json::json!({"email_id": "dgAAmadeupAAAA=", "href": dest, "internal": "x", "link_id": 7})
        .to_string();
    format!(
        "https://e.customeriomail.com/e/c/{}/MadeUpHmac0123456789",
        URL_SAFE_NO_PAD.encode(json)
    )
}
fn amazon(dest: &str) -> String {
    format!(
        "https://www.amazon.com/gp/r.html?C=MADEUP0001&K=MADEUPKEY&M=urn:rtn:msg:20240101000000madeup&R=LINK01&T=C&U={}&H=MADEUPSIG&ref_=pe_0000_0000",
        enc(dest)
    )
}
fn nylas(dest: &str) -> String {
    format!(
        "https://link.nylas.com/link/madeup0account/0123456789abcdef0123456789abcdef/0?redirect={}",
        enc(dest)
    )
}
fn yamm(dest: &str) -> String {
    format!(
        "https://AB1-dot-yamm-track.appspot.com/Redirect?ukey=MadeUpKey_0123-0&key=YAMMID-10000001&link={}&r={}",
        enc(dest),
        STANDARD.encode(READER)
    )
}
fn walmart(dest: &str) -> String {
    format!(
        "https://w-mt.co/g/rptrcks/comm-smart-app/services/tracking/clickTracker?redirectTo={}",
        enc(dest)
    )
}

type Wrapper = fn(&str) -> String;

/// Every recoverable format, with the rule that must unwrap it.
const WRAPPERS: &[(&str, Wrapper)] = &[
    ("google-url", google),
    ("safelinks", safelinks),
    ("facebook-l", facebook),
    ("amazon-ses-click", ses),
    ("amazon-ses-click-custom", ses_custom),
    ("mailgun-click", mailgun),
    ("substack-click-b64", substack),
    ("sailthru-click", sailthru),
    ("convertkit-click", convertkit),
    ("mailjet-click", mailjet),
    ("postmark-click-3", postmark),
    ("mandrill-click", mandrill),
    ("customer-io-click", customer_io),
    ("amazon-click", amazon),
    ("nylas-click", nylas),
    ("yamm-click", yamm),
    ("walmart-click", walmart),
];

const DEST: &str = "https://www.example.com/news/2024/story?id=42&q=a+b%20c&utm_source=newsletter&utm_medium=email&mc_eid=abc123#section-2";
const DEST_CLEAN: &str = "https://www.example.com/news/2024/story?id=42&q=a+b%20c#section-2";

#[test]
fn every_format_unwraps_to_the_destination_and_cleans_it() {
    for (rule, wrap) in WRAPPERS {
        // Sailthru's rule only takes https destinations (path glob aHR0 = "htt").
        let wrapped = wrap(DEST);
        let out = clean(&wrapped);
        assert_eq!(unwrapped_by(&out), vec![*rule], "{wrapped}");
        assert_eq!(out.url.as_deref(), Some(DEST_CLEAN), "{rule}: {wrapped}");
        let removed: Vec<&str> = out.removed_params().collect();
        assert_eq!(
            removed,
            vec!["utm_source", "utm_medium", "mc_eid"],
            "{rule}"
        );
    }
}

// ---- one test per format with a literal URL of the real shape ----

#[test]
fn google_url_q() {
    assert_eq!(
        result(
            "https://www.google.com/url?q=https://shop.example/item%3Fcolor%3Dred%26utm_campaign%3Dx&sa=D&source=hangouts&ust=1699999999999000&usg=AOvVaw1MadeUp"
        ),
        "https://shop.example/item?color=red"
    );
}

#[test]
fn outlook_safelinks() {
    let out = clean(
        "https://nam12.safelinks.protection.outlook.com/?url=https%3A%2F%2Fgo.example.com%2Ffwlink%2F%3FLinkId%3D123456&data=05%7C01%7Creader%40example.org%7C0f0f%7C1%7C0%7C638000000000000000&sdata=TWFkZVVw%2BSig%3D&reserved=0",
    );
    assert_eq!(
        out.url.as_deref(),
        Some("https://go.example.com/fwlink/?LinkId=123456")
    );
    assert_eq!(
        out.steps[0],
        LinkStep::Unwrapped {
            rule: "safelinks".into(),
            tracker: "Microsoft SafeLinks".into(),
            from_host: "nam12.safelinks.protection.outlook.com".into()
        }
    );
}

#[test]
fn facebook_l_php() {
    assert_eq!(
        result(
            "https://l.facebook.com/l.php?u=https%3A%2F%2Fevents.example%2Fe%2F9%3Ffbclid%3DIwAR0madeup&h=AT3madeup"
        ),
        "https://events.example/e/9"
    );
}

#[test]
fn amazon_ses_l0_and_custom_cl0() {
    assert_eq!(
        result(
            "https://abcdefgh.r.eu-west-1.awstrack.me/L0/https:%2F%2Fwww.parcels.example%2Ftrack%2F%23%2Fparcel%2FX0000000000%2Fdetails%3Fpasskey=00000000-0000-0000-0000-000000000000%26stars=1%26%26utm_source=delivered_email/1/0102018c00000000-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee-000000/MadeUpSig0000000000000000=283"
        ),
        "https://www.parcels.example/track/#/parcel/X0000000000/details?passkey=00000000-0000-0000-0000-000000000000&stars=1&&utm_source=delivered_email",
        "the fragment holds the SPA route: kept as it is"
    );
    assert_eq!(
        result(
            "https://click.em.brand.example/CL0/https:%2F%2Fwww.brand.example%2Fsale%3Fref%3Dmail/1/0100018c-1111-2222-3333-444444444444-000000/MadeUpSig=350"
        ),
        "https://www.brand.example/sale?ref=mail"
    );
}

#[test]
fn mailgun_zlib_query() {
    let url = mailgun("https://every.example/p/essay?utm_source=mg&x=1");
    assert!(url.contains("/c/eJ"), "zlib streams start with eJ: {url}");
    let out = clean(&url);
    assert_eq!(
        out.url.as_deref(),
        Some("https://every.example/p/essay?x=1")
    );
    assert_eq!(unwrapped_by(&out), vec!["mailgun-click"]);
}

#[test]
fn mailgun_zip_bomb_is_refused_and_the_link_kept() {
    let huge = format!("l=https%3A%2F%2Fa.example%2F&r={}", "A".repeat(1 << 20));
    let url = format!(
        "https://email.mg.example/c/{}",
        URL_SAFE_NO_PAD.encode(zlib(huge.as_bytes()))
    );
    let out = clean(&url);
    assert_eq!(out.url, None);
    assert!(out.opaque(), "undecodable redirect is reported and kept");
}

#[test]
fn substack_redirect_2_base64_json() {
    let out = clean(
        "https://substack.com/redirect/2/eyJlIjoiaHR0cHM6Ly93cml0ZXIuc3Vic3RhY2suZXhhbXBsZS9wL3RpdGxlP3Rva2VuPWFiYyZyPXh5eiIsInUiOjQyNDIsImEiOiJ4In0.MadeUpSig_0123",
    );
    assert_eq!(
        out.url.as_deref(),
        Some("https://writer.substack.example/p/title?token=abc&r=xyz")
    );
    // The opaque /redirect/<uuid> form is kept.
    let opaque =
        clean("https://substack.com/redirect/00000000-1111-2222-3333-444444444444?r=madeup");
    assert_eq!(opaque.url, None);
    assert_eq!(
        opaque.steps,
        vec![LinkStep::Opaque {
            rule: "substack-click-opaque".into(),
            tracker: "Substack".into()
        }]
    );
}

#[test]
fn sailthru_base64url_segment() {
    assert_eq!(
        result(
            "https://link.news.example/click/29100000.500000/aHR0cHM6Ly9uZXdzLmV4YW1wbGUuY29tL2FydGljbGVzLzQyP3V0bV9zb3VyY2U9bmV3c2xldHRlciZ1dG1fbWVkaXVtPWVtYWlsJmlkPTc/624d0000000000000000aaaaB1990000b"
        ),
        "https://news.example.com/articles/42?id=7"
    );
}

#[test]
fn convertkit_base64_last_segment_even_with_slashes() {
    assert_eq!(
        result(
            "https://click.convertkit-mail4.com/p9madeupsubscr1ber/6qmadeuplink/aHR0cHM6Ly9zaG9wLmV4YW1wbGUubmV0L2Jsb2cvcG9zdD94PTEmeT1hK2I="
        ),
        "https://shop.example.net/blog/post?x=1&y=a+b"
    );
    // Standard base64 can hold '/', which splits the token over path segments.
    let dest = "https://shop.example.net/?q=???&r=???";
    let token = STANDARD.encode(dest);
    assert!(token.contains('/'), "{token}");
    let url = format!("https://click.convertkit-mail2.com/subscr1ber/link/{token}");
    assert_eq!(result(&url), dest);
}

#[test]
fn mailjet_base64url_last_segment_with_attribute_junk() {
    assert_eq!(
        result(
            "https://abcde.mjt.lu/lnk/CAAAAMadeUpAAAAAAAAAAd_zAAAAAYCs4WsAAAAAAAAAAABmMadeUp/1/MadeUpSig_0123456789/aHR0cHM6Ly9kZW5pbS5leGFtcGxlLyZxdW90Ow"
        ),
        "https://denim.example/",
        "a captured closing quote (&quot;) is not part of the destination"
    );
    assert_eq!(
        result(
            "https://abcde.mjt.lu/lnk/CAAAAMadeUp/1/Sig/aHR0cHM6Ly9kZW5pbS5leGFtcGxlL3NhbGU_YT0xJmFtcDtiPTI"
        ),
        "https://denim.example/sale?a=1&b=2"
    );
}

#[test]
fn postmark_scheme_from_marker() {
    assert_eq!(
        result(
            "https://click.pstmrk.it/3s/www.shop.example%2Fpublic%2Fitem%3Fid%3D5/qzFR/112tAQ/AQ/00000000-1111-2222-3333-444444444444/1/3MadeUpSig"
        ),
        "https://www.shop.example/public/item?id=5"
    );
    assert_eq!(
        result(
            "https://click.pstmrk.it/2s/www.reviews.example%2Fbiz%2Fsome-place/CLmadeup/h0sH/LaMadeUp0"
        ),
        "https://www.reviews.example/biz/some-place"
    );
    assert_eq!(
        result(
            "https://click.pstmrk.it/3/example.nl/4HuO/wJS8AQ/AQ/00000000-1111-2222-3333-444444444444/1/Ts-MadeUp"
        ),
        "http://example.nl"
    );
    // Double-encoded, as seen quoted in public text.
    assert_eq!(
        result("https://click.pstmrk.it/3s/www.shop.example%252Fpublic%252F/qzFR/112tAQ/AQ/x/1/y"),
        "https://www.shop.example/public/"
    );
}

#[test]
fn mandrill_nested_json_p_url() {
    assert_eq!(
        result(
            "https://mandrillapp.com/track/click/31000000/platform.example.org?p=eyJzIjoiYzJsbmJtRjBkWEpsIiwidiI6MSwicCI6IntcInVcIjoxMjM0LFwidlwiOjEsXCJ1cmxcIjpcImh0dHBzOi8vcGxhdGZvcm0uZXhhbXBsZS5vcmcvZG9jcz9mcm9tPW1haWxcIixcImlkXCI6XCJmMDBkZmVlZFwifSJ9"
        ),
        "https://platform.example.org/docs?from=mail"
    );
}

#[test]
fn customer_io_base64_json_href() {
    assert_eq!(
        result(
            "https://e.customeriomail.com/e/c/eyJlbWFpbF9pZCI6ImRnQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE9IiwiaHJlZiI6Imh0dHBzOi8vd3d3LmFwcC5leGFtcGxlL3JlbGVhc2Utbm90ZXMvIiwiaW50ZXJuYWwiOiJhYmMiLCJsaW5rX2lkIjo3fQ/MadeUpHmac0123456789abcdef"
        ),
        "https://www.app.example/release-notes/"
    );
}

#[test]
fn amazon_gp_r_html_u() {
    assert_eq!(
        result(
            "https://www.amazon.com/gp/r.html?C=MADEUP0001&K=MADEUPKEY0&M=urn:rtn:msg:20240101000000madeup&R=MADEUPLINK&T=C&U=https%3A%2F%2Fwww.amazon.com%2Fdp%2FB000000000%3Fref_%3Dpe_100_200&H=MADEUPSIG&ref_=pe_100_200"
        ),
        "https://www.amazon.com/dp/B000000000?ref_=pe_100_200",
        "ref_ is only a rule on www.amazon.*, which this test set does not have"
    );
}

#[test]
fn nylas_yamm_walmart_plain_params() {
    assert_eq!(
        result(
            "https://link.nylas.com/link/madeupacct/0123456789abcdef0123456789abcdef/0?redirect=http%3A%2F%2Fwww.tools.example%2F"
        ),
        "http://www.tools.example/"
    );
    let y = result(
        "https://AB1-dot-yamm-track.appspot.com/Redirect?ukey=MadeUpKey-0&key=YAMMID-10000001&link=http%3A%2F%2Fwedding.example%2Fus%2Fa-and-b&r=cmVhZGVyQGV4YW1wbGUub3Jn",
    );
    assert_eq!(y, "http://wedding.example/us/a-and-b");
    assert_eq!(
        result(
            "https://w-mt.co/g/rptrcks/comm-smart-app/services/tracking/clickTracker?redirectTo=https%3A%2F%2Fwww.store.example%2Forders%2F123"
        ),
        "https://www.store.example/orders/123"
    );
}

// ---- nesting, opaque, validation ----

#[test]
fn safelinks_around_google_around_mailgun() {
    let dest = "https://blog.example/p/post?utm_source=x&keep=1";
    let url = safelinks(&google(&mailgun(dest)));
    let out = clean(&url);
    assert_eq!(
        unwrapped_by(&out),
        vec!["safelinks", "google-url", "mailgun-click"]
    );
    assert_eq!(
        out.url.as_deref(),
        Some("https://blog.example/p/post?keep=1")
    );
}

#[test]
fn nesting_deeper_than_the_limit_is_kept_as_it_is() {
    let mut url = "https://deep.example/x?utm_source=a".to_string();
    for _ in 0..6 {
        url = google(&url);
    }
    let out = clean(&url);
    assert_eq!(out.url, None);
    assert_eq!(out.steps, vec![LinkStep::DepthLimit { max: 5 }]);
    let mut run = Run::new();
    run.policy.max_unwrap_depth = 6;
    assert_eq!(run.result(&url), "https://deep.example/x");
}

#[test]
fn opaque_trackers_are_kept_and_reported_even_inside_a_wrapper() {
    let mc = "https://news.us3.list-manage.com/track/click?u=0123456789abcdef01234&id=abcdef0123&e=fedcba9876";
    let out = clean(mc);
    assert_eq!(out.url, None);
    assert_eq!(
        out.steps,
        vec![LinkStep::Opaque {
            rule: "mailchimp-click".into(),
            tracker: "Mailchimp".into()
        }]
    );
    // SafeLinks around it: unwrapped to the Mailchimp link, which stays whole.
    let out = clean(&safelinks(mc));
    assert_eq!(out.url.as_deref(), Some(mc));
    assert!(out.unwrapped() && out.opaque());
    let sg = "https://u1234567.ct.sendgrid.net/ls/click?upn=MadeUp-2FToken-3D-3D";
    assert_eq!(clean(sg).url, None);
    assert!(clean(sg).opaque());
}

#[test]
fn undecodable_or_unsafe_destinations_keep_the_link() {
    for url in [
        "https://www.google.com/url?q=javascript%3Aalert(1)",
        "https://www.google.com/url?q=just+some+search+words",
        "https://link.nylas.com/link/a/b/0?redirect=%2F%2Fevil.example%2F",
        "https://click.convertkit-mail4.com/a/b/!!!notbase64!!!",
        "https://substack.com/redirect/2/bm90IGpzb24.sig",
        "https://email.mg.example/c/eJnotzlib",
        "https://e.customeriomail.com/e/c/eyJocmVmIjoiZnRwOi8vYS5leGFtcGxlLyJ9/sig",
    ] {
        let out = clean(url);
        assert_eq!(out.url, None, "{url}");
        assert!(out.opaque(), "{url}: {:?}", out.steps);
    }
}

#[test]
fn a_redirect_host_without_its_carrier_is_a_plain_link() {
    // Seen in real Amazon mail: "Your Orders" -> www.amazon.com/gp/r.html, no U=.
    assert_eq!(
        clean("https://www.amazon.com/gp/r.html"),
        LinkOutcome::default()
    );
    let out = clean("https://www.google.com/url?sa=D&utm_source=x");
    assert_eq!(out.url.as_deref(), Some("https://www.google.com/url?sa=D"));
    assert!(!out.opaque() && !out.unwrapped());
}

#[test]
fn non_http_links_are_left_alone() {
    for url in [
        "mailto:a@example.org?subject=x",
        "tel:+123",
        "#top",
        "",
        "/relative",
    ] {
        assert_eq!(clean(url), LinkOutcome::default(), "{url}");
    }
}

// ---- cleaning ----

#[test]
fn params_are_removed_and_the_rest_kept_byte_for_byte() {
    let out = clean(
        "https://Shop.Example/a%2Fb/c?z=%7E&utm_source=n&x=1+2&y=%20&&mc_cid=1&fbclid=IwAR0&last=",
    );
    assert_eq!(
        out.url.as_deref(),
        Some("https://Shop.Example/a%2Fb/c?z=%7E&x=1+2&y=%20&&last=")
    );
    // Nothing left: no dangling '?'.
    assert_eq!(
        result("https://shop.example/?utm_source=n&utm_medium=e#f"),
        "https://shop.example/#f"
    );
    // Nothing to remove: unchanged (None), even with odd spelling.
    assert_eq!(clean("https://shop.example/?a=1&&b=%zz").url, None);
}

#[test]
fn recipient_tokens_are_removed_in_every_spelling() {
    let md5 = "9a3a0d4b4d4bd2ee5e1fe36b23e4e8b7"; // not the reader's: must stay
    let url = format!(
        "https://site.example/p?email=reader%40example.org&e2=READER@EXAMPLE.ORG&b={}&k=1&h={md5}",
        STANDARD.encode(READER)
    );
    let out = clean(&url);
    assert_eq!(
        out.url.as_deref(),
        Some(format!("https://site.example/p?k=1&h={md5}").as_str())
    );
    assert!(out.steps.iter().all(|s| match s {
        LinkStep::ParamRemoved { rule, .. } => rule == TOKEN_HEURISTIC,
        _ => false,
    }));
    // In the path: reported, kept (removing it would change where the link leads).
    let out = clean("https://site.example/u/reader@example.org/profile?utm_source=x");
    assert_eq!(
        out.url.as_deref(),
        Some("https://site.example/u/reader@example.org/profile")
    );
    assert!(out.steps.contains(&LinkStep::TokenKept {
        place: "path".into()
    }));
}

#[test]
fn the_campaign_switch_keeps_utm_but_never_subscriber_ids_or_tokens() {
    let url = "https://shop.example/?utm_source=news&utm_campaign=spring&mc_eid=abc&utm_content=reader%40example.org";
    let mut run = Run::new();
    assert_eq!(run.result(url), "https://shop.example/");
    run.policy.keep_campaign_params = true;
    assert_eq!(
        run.result(url),
        "https://shop.example/?utm_source=news&utm_campaign=spring"
    );
}

#[test]
fn cleaning_is_idempotent() {
    for (_, wrap) in WRAPPERS {
        let once = result(&wrap(DEST));
        assert_eq!(clean(&once).url, None, "{once}");
    }
}

#[test]
fn noise_alone_does_not_rewrite_a_link() {
    assert_eq!(clean(" https://shop.example/a?b=1\n").url, None);
    assert_eq!(
        clean("https://shop.ex\nample/a?utm_source=1")
            .url
            .as_deref(),
        Some("https://shop.example/a")
    );
}

// ---- functional links ----

#[test]
fn unsubscribe_links_keep_their_parameters() {
    let run = Run::new();
    // Issue 18 item 2: what makes it work stays, campaign tags go.
    let out =
        run.clean("https://list.example/unsubscribe?email=reader%40example.org&utm_source=footer");
    assert_eq!(
        out.url.as_deref(),
        Some("https://list.example/unsubscribe?email=reader%40example.org")
    );
    assert!(matches!(
        out.steps.first(),
        Some(LinkStep::Functional { .. })
    ));
    for url in [
        "https://list.example/unsubscribe?email=reader%40example.org",
        "https://news.example/newsletter/abmelden?e=reader@example.org",
        "https://news.example/nieuwsbrief/afmelden?id=cmVhZGVyQGV4YW1wbGUub3Jn",
        "https://news.example/fr/se-d%C3%A9sabonner?m=reader@example.org",
        "https://app.example/auth/confirm?token=abc&email=reader@example.org",
        "https://app.example/reset-password?email=reader@example.org&t=1",
        "https://app.example/login/magic?email=reader%40example.org",
        "https://unsubscribe.convertkit-mail2.com/madeup0subscriber",
    ] {
        let out = run.clean(url);
        assert_eq!(out.url, None, "{url}");
        assert!(
            matches!(out.steps.last(), Some(LinkStep::Functional { .. })),
            "{url}: {:?}",
            out.steps
        );
    }
}

/// A link functional only by what a campaign tag carries is cleaned as any link, once:
/// kept functional, it lost the tag on the first pass and, no longer functional, its
/// identifying parameters on the second (found by the link_clean fuzz target; seed
/// `regress-functional-by-a-removed-tag`).
#[test]
fn a_link_functional_only_by_a_campaign_tag_is_cleaned_at_once() {
    let run = Run::new();
    let url = "https://shop.example/p/1?utm_source=unsubscribe&mc_eid=abc123&id=7";
    let once = run.result(url);
    assert_eq!(once, "https://shop.example/p/1?id=7");
    assert_eq!(run.clean(&once).url, None, "not idempotent");
    // Functional by its own path, it keeps what it needs, and stays so.
    let unsub = "https://shop.example/unsubscribe?utm_source=footer&mc_eid=abc123";
    let kept = run.result(unsub);
    assert_eq!(kept, "https://shop.example/unsubscribe?mc_eid=abc123");
    assert_eq!(run.clean(&kept).url, None);
}

#[test]
fn link_text_and_list_unsubscribe_make_a_link_functional() {
    let url = "https://news.example/p/42?s=reader@example.org&utm_source=x";
    let functional = "https://news.example/p/42?s=reader@example.org";
    let mut run = Run::new();
    assert_eq!(run.result(url), "https://news.example/p/42");
    run.text = Some("Newsletter abbestellen".into());
    assert_eq!(run.result(url), functional);
    run.text = Some("Darse de baja".into());
    assert_eq!(run.result(url), functional);
    run.text = Some("Read more".into());
    assert_eq!(run.result(url), "https://news.example/p/42");
    run.list_unsubscribe = vec![format!("<{url}>"), "<mailto:u@news.example>".into()];
    assert_eq!(run.result(url), functional);
    // Idempotent: the cleaned link is still the header's (same host and path).
    assert_eq!(run.clean(functional).url, None);
}

#[test]
fn a_wrapped_unsubscribe_link_is_unwrapped_but_not_stripped() {
    let dest = "https://list.example/unsubscribe?e=reader%40example.org&utm_source=footer";
    let out = clean(&mailgun(dest));
    assert_eq!(
        out.url.as_deref(),
        Some("https://list.example/unsubscribe?e=reader%40example.org")
    );
    assert!(out.unwrapped());
    // Matched against the header by its unwrapped form too.
    let mut run = Run::new();
    run.list_unsubscribe = vec!["<https://lists.example/x/y?id=1>".into()];
    let inner = "https://lists.example/x/y?id=1&s=reader@example.org";
    assert_eq!(run.result(&google(inner)), inner);
    // The header names the wrapped form: the link is kept whole (a second run must
    // decide the same, and it would no longer see the wrapper).
    let wrapped = google(inner);
    run.list_unsubscribe = vec![format!("<{wrapped}>")];
    let out = run.clean(&wrapped);
    assert_eq!(out.url, None);
    assert!(
        matches!(&out.steps[..], [LinkStep::Functional { reason }] if reason.contains("kept wrapped"))
    );
}

/// Each stage of a link is checked with its own split: a wrapper whose host and path
/// (not its whole URL) are the header's keeps the link whole, and the destination's
/// split does not stand in for the wrapper's (issue 17: the final URL's split is
/// reused, the wrappers' are not).
#[test]
fn a_wrapper_named_by_host_and_path_in_the_header_keeps_the_link_whole() {
    let inner = "https://lists.example/x/y?id=1&s=reader@example.org";
    let wrapped = google(inner);
    let mut run = Run::new();
    run.list_unsubscribe = vec!["<https://www.google.com/url?q=elsewhere>".into()];
    let out = run.clean(&wrapped);
    assert_eq!(out.url, None);
    assert_eq!(
        out.steps,
        vec![LinkStep::Functional {
            reason: "list-unsubscribe (same host and path) (kept wrapped)".into()
        }]
    );
    // The destination's own host and path in the header: unwrapped, parameters kept.
    run.list_unsubscribe = vec!["<https://lists.example/x/y/>".into()];
    assert_eq!(run.result(&wrapped), inner);
    // Neither: unwrapped and cleaned.
    run.list_unsubscribe = vec!["<https://www.google.com/other>".into()];
    assert_eq!(run.result(&wrapped), "https://lists.example/x/y?id=1");
}

// ---- property test ----

mod props {
    use super::*;
    use proptest::prelude::*;

    fn host() -> impl Strategy<Value = String> {
        ("[a-z][a-z0-9]{0,8}", "[a-z]{2,6}").prop_map(|(a, b)| format!("{a}.{b}"))
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec("[A-Za-z0-9._~-]{1,8}", 0..4).prop_map(|s| {
            if s.is_empty() {
                "/".to_string()
            } else {
                format!("/{}", s.join("/"))
            }
        })
    }

    /// Parameters to keep: names that no rule takes, values with every spelling.
    fn kept_param() -> impl Strategy<Value = String> {
        (
            "[a-z]{1,6}",
            prop::collection::vec(
                prop_oneof![
                    "[A-Za-z0-9._~-]{1,4}",
                    Just("+".to_string()),
                    Just("%20".to_string()),
                    Just("%2F".to_string()),
                    Just("%3D".to_string()),
                    Just("/".to_string()),
                    Just(":".to_string()),
                ],
                0..4,
            ),
        )
            .prop_filter("names no rule matches", |(n, _)| {
                !matches!(n.as_str(), "fbclid" | "gclid")
            })
            .prop_map(|(n, v)| format!("k{n}={}", v.concat()))
    }

    fn identifying_param() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9]{1,8}".prop_map(|v| format!("utm_source={v}")),
            "[a-z0-9]{1,8}".prop_map(|v| format!("utm_campaign={v}")),
            "[a-z0-9]{1,8}".prop_map(|v| format!("mc_eid={v}")),
            "[a-z0-9]{1,8}".prop_map(|v| format!("_hsenc=p2ANqtz-{v}")),
            Just("em=reader%40example.org".to_string()),
            Just(format!("x={}", STANDARD.encode(READER))),
        ]
    }

    fn destination() -> impl Strategy<Value = (String, String)> {
        (
            prop_oneof![Just("https"), Just("http")],
            host(),
            path(),
            prop::collection::vec(
                prop_oneof![
                    kept_param().prop_map(|p| (p, true)),
                    identifying_param().prop_map(|p| (p, false))
                ],
                0..6,
            ),
        )
            .prop_map(|(scheme, host, path, params)| {
                let all: Vec<&str> = params.iter().map(|(p, _)| p.as_str()).collect();
                let kept: Vec<&str> = params
                    .iter()
                    .filter(|(_, k)| *k)
                    .map(|(p, _)| p.as_str())
                    .collect();
                let q = |v: &[&str]| {
                    if v.is_empty() {
                        String::new()
                    } else {
                        format!("?{}", v.join("&"))
                    }
                };
                (
                    format!("{scheme}://{host}{path}{}", q(&all)),
                    format!("{scheme}://{host}{path}{}", q(&kept)),
                )
            })
            .prop_filter("not a functional link by chance", |(d, _)| {
                functional::keyword(d).is_none()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn unwrapping_leads_to_the_destination(
            (dest, expected) in destination(),
            wrappers in prop::collection::vec(0..WRAPPERS.len(), 1..4),
        ) {
            let mut url = dest.clone();
            for &w in &wrappers {
                url = (WRAPPERS[w].1)(&url);
            }
            let out = clean(&url);
            let got = out.url.clone().unwrap_or(url.clone());
            let g = Parts::parse(&got).expect("a valid URL");
            let d = Parts::parse(&dest).unwrap();
            prop_assert_eq!(g.scheme, d.scheme);
            prop_assert_eq!(&g.host, &d.host);
            prop_assert_eq!(g.path, d.path);
            prop_assert_eq!(&got, &expected, "from {}", url);
            prop_assert_eq!(unwrapped_by(&out).len(), wrappers.len());
            // And idempotent.
            prop_assert_eq!(clean(&got).url, None);
        }
    }
}

// ---- issue 18: functional links, mailto, plain-view destinations, rule features ----

const MORE_RULES: &str = r#"
[[tracker]]
id = "sendgrid"
name = "SendGrid"
category = "esp"
source = "test"

[[tracker]]
id = "shop"
name = "Shop"
category = "other"
source = "test"

[[redirect]]
id = "sendgrid-click-ls"
tracker = "sendgrid"
host = "sendgrid.net"
path = "/ls/click"
opaque = true
params = ["url", "redirect", "u"]
encodings = ["plain", "base64url"]
source = "test"

[[redirect]]
id = "shop-out"
tracker = "shop"
host = "shop.example"
path = "/out"
opaque = false
param = "to"
source = "test"

[[redirect]]
id = "shop-out-except"
tracker = "shop"
host = "shop.example"
path = "/out/internal"
opaque = false
param = "to"
action = "keep"
source = "test"

[[param]]
id = "utm"
names = ["utm_*"]
class = "campaign"
source = "test"

[[param]]
id = "gclid"
names = ["gclid"]
class = "click-id"
source = "test"

[[param]]
id = "mc-eid"
names = ["mc_eid"]
class = "subscriber"
source = "test"

[[param]]
id = "amazon-pf"
patterns = ["p[fd]_rd_[a-z]*"]
hosts = ["amazon.*", "*.amazon.*"]
class = "subscriber"
source = "test"

[[param]]
id = "x-share"
names = ["s", "t"]
hosts = ["=x.com"]
paths = ["/*/status/"]
class = "campaign"
source = "test"

[[param]]
id = "x-share-except"
names = ["s"]
hosts = ["=x.com"]
paths = ["/i/keep/"]
class = "campaign"
action = "keep"
source = "test"
"#;

fn more() -> Run {
    Run {
        rules: Rules::compile(&[RuleSource {
            name: "more.toml".into(),
            text: MORE_RULES.into(),
        }])
        .expect("compiles"),
        ..Run::new()
    }
}

/// Issue 18 item 2: functional links keep their tokens and subscriber ids, lose campaign
/// tags and ad click ids.
#[test]
fn functional_links_lose_analytics_but_keep_what_makes_them_work() {
    let mut run = more();
    run.text = Some("Unsubscribe".into());
    let url = "https://list.example/u?data=Zm9v&e=77&mc_eid=abc&utm_source=footer&gclid=Cj0&email=reader%40example.org";
    let out = run.clean(url);
    assert_eq!(
        out.url.as_deref(),
        Some("https://list.example/u?data=Zm9v&e=77&mc_eid=abc&email=reader%40example.org")
    );
    assert_eq!(
        out.removed_params().collect::<Vec<_>>(),
        ["utm_source", "gclid"]
    );
    // Not functional: every identifying parameter goes.
    run.text = Some("Read more".into());
    assert_eq!(run.result(url), "https://list.example/u?data=Zm9v&e=77");
    // The campaign switch keeps utm_* there too.
    run.text = Some("Manage preferences".into());
    run.policy.keep_campaign_params = true;
    assert_eq!(
        run.result(url),
        "https://list.example/u?data=Zm9v&e=77&mc_eid=abc&utm_source=footer&email=reader%40example.org"
    );
}

/// Issue 18 item 2: the URL in a mailto share link is cleaned, the rest stays.
#[test]
fn urls_inside_mailto_links_are_cleaned() {
    let run = more();
    let mailto = "mailto:?subject=Look%20at%20this&body=Found%20it%3A%20https%3A%2F%2Fshop.example%2Fitem%2F9%3Fid%3D9%26utm_source%3Dshare%26gclid%3DCj0%20%F0%9F%91%8D";
    let out = run.clean(mailto);
    assert_eq!(
        out.url.as_deref(),
        Some(
            "mailto:?subject=Look%20at%20this&body=Found%20it:%20https://shop.example/item/9?id=9%20%F0%9F%91%8D"
        )
    );
    assert_eq!(
        out.removed_params().collect::<Vec<_>>(),
        ["utm_source", "gclid"]
    );
    // Idempotent, and nothing to do without a URL.
    assert_eq!(run.clean(out.url.as_deref().unwrap()).url, None);
    assert_eq!(run.clean("mailto:a@b.example?subject=Hi").url, None);
    assert_eq!(
        run.clean("MAILTO:friend@b.example?body=https://shop.example/?utm_medium=mail")
            .url
            .as_deref(),
        Some("MAILTO:friend@b.example?body=https://shop.example/")
    );
}

/// Issue 18 item 3: an opaque wrapper that carries its destination in plain view (a
/// candidate parameter, percent-encoded once or twice, or base64) is unwrapped; one
/// that does not stays opaque.
#[test]
fn opaque_wrappers_with_a_destination_in_plain_view_are_unwrapped() {
    let run = more();
    let dest = "https://www.example.com/a?id=1&utm_source=x";
    let clean_dest = "https://www.example.com/a?id=1";
    let base = "https://u123.ct.sendgrid.net/ls/click?upn=opaque-token";
    for wrapped in [
        format!("{base}&url={}", enc(dest)),
        format!("{base}&redirect={}", enc(&enc(dest))),
        format!("{base}&u={}", URL_SAFE_NO_PAD.encode(dest)),
    ] {
        let out = run.clean(&wrapped);
        assert_eq!(out.url.as_deref(), Some(clean_dest), "{wrapped}");
        assert_eq!(unwrapped_by(&out), ["sendgrid-click-ls"]);
    }
    for opaque in [
        base.to_string(),
        format!("{base}&u=5e78d7ef2297cc80842b7591e"),
        format!("{base}&url=javascript%3Aalert(1)"),
    ] {
        let out = run.clean(&opaque);
        assert_eq!(out.url, None, "{opaque}");
        assert!(out.opaque(), "{opaque}: {:?}", out.steps);
    }
}

/// Issue 18 items 4 and 5: parameter names as patterns, path-scoped parameters, exact
/// hosts, and exceptions on paths for parameters and redirects.
#[test]
fn patterns_paths_exact_hosts_and_path_exceptions() {
    let run = more();
    assert_eq!(
        run.result("https://www.amazon.de/dp/B01?pf_rd_p=1&PD_RD_W=2&pf_rd_1=3&ref_=x"),
        "https://www.amazon.de/dp/B01?pf_rd_1=3&ref_=x"
    );
    assert_eq!(
        run.result("https://shop.example/dp/B01?pf_rd_p=1"),
        "https://shop.example/dp/B01?pf_rd_p=1",
        "pattern rules keep to their hosts"
    );
    assert_eq!(
        run.result("https://x.com/someone/status/123?s=20&t=AbC&ref=1"),
        "https://x.com/someone/status/123?ref=1"
    );
    assert_eq!(
        run.result("https://x.com/search?q=a&s=1&t=2"),
        "https://x.com/search?q=a&s=1&t=2",
        "only on the paths the rule names"
    );
    assert_eq!(
        run.result("https://mobile.x.com/someone/status/123?s=20"),
        "https://mobile.x.com/someone/status/123?s=20",
        "=x.com is that host only"
    );
    assert_eq!(
        run.result("https://x.com/i/keep/status/1?s=20&t=1"),
        "https://x.com/i/keep/status/1?s=20",
        "a keep entry on a path excepts its names there"
    );
    let out = run.clean(&format!(
        "https://shop.example/out?to={}",
        enc("https://a.example/")
    ));
    assert_eq!(out.url.as_deref(), Some("https://a.example/"));
    let internal = format!(
        "https://shop.example/out/internal?to={}",
        enc("https://a.example/")
    );
    assert_eq!(
        run.clean(&internal).url,
        None,
        "a redirect excepted on a path"
    );
}
