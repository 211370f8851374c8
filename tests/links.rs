//! Links through the whole pipeline with the *shipped* rules: a mail per redirect format
//! (the real URL shapes of ../shared/corpus/patterns.tsv, with tokens made up here) comes
//! out with its link unwrapped to the destination and cleaned, in HTML and in plain text;
//! opaque trackers and functional links keep working.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mail_parser::{MessageParser, MimeHeaders};
use mailveil::{Envelope, Policy, Rules, clean, rule_files};
use std::io::Write;

const READER: &str = "reader.one@example.org";
const DEST: &str = "https://www.example.com/news/2026/story?id=42&q=a+b%20c&utm_source=newsletter&utm_medium=email&mc_eid=abc123#part-2";
const DEST_CLEAN: &str = "https://www.example.com/news/2026/story?id=42&q=a+b%20c#part-2";

fn shipped() -> Rules {
    let (rules, errors) = rule_files::load(&[], false);
    assert!(errors.is_empty(), "{errors:?}");
    rules
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Each recoverable format of the issue, as its ESP writes it.
/// A named wrapper: builds the redirect URL that carries a destination.
type Wrapper = (&'static str, Box<dyn Fn(&str) -> String>);

fn wrappers() -> Vec<Wrapper> {
    vec![
        (
            "Google /url?q=",
            Box::new(|d: &str| {
                format!(
                    "https://www.google.com/url?q={}&sa=D&source=editors&usg=AOvVaw0fake",
                    enc(d)
                )
            }),
        ),
        (
            "Outlook SafeLinks",
            Box::new(|d: &str| {
                format!(
                    "https://eur02.safelinks.protection.outlook.com/?url={}&data=05%7C01%7Creader%7Cfake&sdata=ZmFrZQ%3D%3D&reserved=0",
                    enc(d)
                )
            }),
        ),
        (
            "Facebook l.php",
            Box::new(|d: &str| format!("https://l.facebook.com/l.php?u={}&h=AT1fakehash", enc(d))),
        ),
        (
            "Amazon SES /L0/",
            Box::new(|d: &str| {
                format!(
                    "https://fake1234.r.us-east-1.awstrack.me/L0/{}/1/0100018c00000000-fake-000000/FakeSig=350",
                    enc(d)
                )
            }),
        ),
        (
            "Amazon SES /CL0/",
            Box::new(|d: &str| {
                format!(
                    "https://click.mail.shop.example/CL0/{}/1/0100018c00000000-fake-000000/FakeSig=350",
                    enc(d)
                )
            }),
        ),
        (
            "Mailgun /c/",
            Box::new(|d: &str| {
                let q = format!(
                    "l={}&r={}&h=0123abcd&i=%3C1.fake%40mg.example%3E",
                    enc(d),
                    enc(READER)
                );
                format!(
                    "https://email.mg.news.example/c/{}",
                    URL_SAFE_NO_PAD.encode(zlib(q.as_bytes()))
                )
            }),
        ),
        (
            "Substack /redirect/2/",
            Box::new(|d: &str| {
                format!(
                    "https://substack.com/redirect/2/{}.FakeSignature",
                    URL_SAFE_NO_PAD.encode(format!("{{\"e\":\"{d}\",\"u\":4242}}"))
                )
            }),
        ),
        (
            "Sailthru",
            Box::new(|d: &str| {
                format!(
                    "https://link.news.example/click/12345678.901234/{}/5f0e0d0c0b0a0908B1234567f",
                    URL_SAFE_NO_PAD.encode(d)
                )
            }),
        ),
        (
            "ConvertKit",
            Box::new(|d: &str| {
                format!(
                    "https://click.convertkit-mail4.com/fake1234abcd/fake5678/{}",
                    STANDARD.encode(d)
                )
            }),
        ),
        (
            "Mailjet",
            Box::new(|d: &str| {
                format!(
                    "https://fake1.mjt.lu/lnk/CAAAAFakeIdsAAAAAAAAAAAAAAAAAAAAAAAA/1/FakeSig-01/{}",
                    URL_SAFE_NO_PAD.encode(d)
                )
            }),
        ),
        (
            "Postmark /3s/",
            Box::new(|d: &str| {
                format!(
                    "https://click.pstmrk.it/3s/{}/AbCd/EfGh/AQ/00000000-fake/1/Sig0",
                    enc(d.trim_start_matches("https://"))
                )
            }),
        ),
        (
            "Mandrill p=",
            Box::new(|d: &str| {
                let inner = format!("{{\"u\":1,\"v\":1,\"url\":\"{d}\",\"id\":\"fake\"}}");
                let outer = format!(
                    "{{\"s\":\"sig\",\"v\":1,\"p\":{}}}",
                    serde_json::to_string(&inner).unwrap()
                );
                format!(
                    "https://mandrillapp.com/track/click/30000000/www.example.com?p={}",
                    enc(&STANDARD.encode(outer))
                )
            }),
        ),
        (
            "Customer.io /e/c/",
            Box::new(|d: &str| {
                format!(
                    "https://e.customeriomail.com/e/c/{}/FakeHmac0123",
                    URL_SAFE_NO_PAD.encode(format!(
                        "{{\"email_id\":\"fake\",\"href\":\"{d}\",\"link_id\":7}}"
                    ))
                )
            }),
        ),
        (
            "Amazon gp/r.html",
            Box::new(|d: &str| {
                format!(
                    "https://www.amazon.com/gp/r.html?C=FAKE01&K=FAKEKEY&R=LINK01&T=C&U={}&H=FAKESIG&ref_=pe_0000",
                    enc(d)
                )
            }),
        ),
        (
            "Nylas",
            Box::new(|d: &str| {
                format!(
                    "https://link.nylas.com/link/fakeacct/0123456789abcdef0123456789abcdef/0?redirect={}",
                    enc(d)
                )
            }),
        ),
        (
            "YAMM",
            Box::new(|d: &str| {
                format!(
                    "https://ab1-dot-yamm-track.appspot.com/Redirect?ukey=FakeKey-0&key=YAMMID-1&link={}",
                    enc(d)
                )
            }),
        ),
        (
            "Walmart",
            Box::new(|d: &str| {
                format!(
                    "https://w-mt.co/g/rptrcks/comm-smart-app/services/tracking/clickTracker?redirectTo={}",
                    enc(d)
                )
            }),
        ),
    ]
}

fn html_mail(href: &str, text: &str) -> Vec<u8> {
    let href = href.replace('&', "&amp;");
    format!(
        "From: news@sender.example\r\nTo: {READER}\r\nSubject: links\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nRead it: {}\r\n\
         --b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p><a href=\"{href}\">{text}</a></p>\r\n--b--\r\n",
        href.replace("&amp;", "&")
    )
    .into_bytes()
}

/// The href of the first `<a>` (entity-decoded) and the plain-text part, after cleaning.
fn cleaned_links(raw: &[u8], policy: &Policy) -> (String, String) {
    let out = clean(raw, &Envelope::to([READER]), policy, &shipped());
    let msg = MessageParser::default().parse(&out.bytes).unwrap();
    let mut html = String::new();
    let mut text = String::new();
    for part in &msg.parts {
        match part.content_type().and_then(|c| c.subtype()) {
            Some("html") => html = part.text_contents().unwrap_or_default().to_string(),
            Some("plain") => text = part.text_contents().unwrap_or_default().to_string(),
            _ => {}
        }
    }
    let start = html.find("href=\"").expect("a link") + 6;
    let href = &html[start..start + html[start..].find('"').unwrap()];
    (htmlize::unescape_attribute(href).into_owned(), text)
}

#[test]
fn every_recoverable_format_is_unwrapped_and_cleaned_with_the_shipped_rules() {
    let policy = Policy::default();
    for (name, wrap) in wrappers() {
        let wrapped = wrap(DEST);
        let (href, text) = cleaned_links(&html_mail(&wrapped, "Read"), &policy);
        assert_eq!(href, DEST_CLEAN, "{name}: {wrapped}");
        assert_eq!(
            text.trim_end(),
            format!("Read it: {DEST_CLEAN}"),
            "{name} (text/plain)"
        );
    }
}

#[test]
fn wrappers_inside_wrappers_are_unwrapped() {
    let all = wrappers();
    let get = |n: &str| &all.iter().find(|(name, _)| *name == n).unwrap().1;
    let nested = get("Outlook SafeLinks")(&get("Google /url?q=")(&get("Mailgun /c/")(DEST)));
    let (href, _) = cleaned_links(&html_mail(&nested, "Read"), &Policy::default());
    assert_eq!(href, DEST_CLEAN);
}

#[test]
fn the_campaign_switch_keeps_utm_but_not_subscriber_ids() {
    let policy = Policy {
        links: mailveil::links::LinkPolicy {
            keep_campaign_params: true,
            ..Default::default()
        },
        ..Policy::default()
    };
    let (href, _) = cleaned_links(&html_mail(DEST, "Read"), &policy);
    assert_eq!(
        href,
        "https://www.example.com/news/2026/story?id=42&q=a+b%20c&utm_source=newsletter&utm_medium=email#part-2"
    );
}

#[test]
fn opaque_trackers_are_kept_working_and_reported_by_esp() {
    let opaque = [
        (
            "Mailchimp",
            "https://news.us3.list-manage.com/track/click?u=0fake&id=1fake&e=2fake",
        ),
        (
            "SendGrid",
            "https://u1234.ct.sendgrid.net/ls/click?upn=FakeToken-2Fabc-3D-3D",
        ),
    ];
    for (esp, url) in opaque {
        let raw = html_mail(url, "Read");
        let (href, _) = cleaned_links(&raw, &Policy::default());
        assert_eq!(href, url, "{esp}: an opaque link must still work");
        let out = clean(
            &raw,
            &Envelope::to([READER]),
            &Policy::default(),
            &shipped(),
        );
        let f = out
            .report
            .findings
            .iter()
            .find(|f| f.kind == mailveil::FindingKind::ClickRedirect)
            .expect("reported");
        assert!(
            f.tracker.as_deref().unwrap_or("").contains(esp),
            "{esp}: {f:?}"
        );
        assert_eq!(f.action, mailveil::Action::Keep);
    }
}

#[test]
fn functional_links_keep_their_parameters() {
    let unsubscribe =
        "https://shop.example/account/emails?uid=77&email=reader.one%40example.org&utm_source=x";
    // Issue 18 item 2: the campaign tag goes, what makes the link work stays.
    let working = "https://shop.example/account/emails?uid=77&email=reader.one%40example.org";
    for text in [
        "Unsubscribe",
        "Abmelden",
        "Afmelden",
        "Se désabonner",
        "Darse de baja",
        "Manage preferences",
    ] {
        let (href, _) = cleaned_links(&html_mail(unsubscribe, text), &Policy::default());
        assert_eq!(href, working, "link text {text:?}");
    }
    let (href, _) = cleaned_links(&html_mail(unsubscribe, "Read more"), &Policy::default());
    assert_eq!(
        href, "https://shop.example/account/emails?uid=77",
        "an ordinary link is cleaned"
    );
    for url in [
        "https://shop.example/confirm?token=abc&email=reader.one%40example.org",
        "https://shop.example/login/magic?t=abc&e=reader.one%40example.org",
    ] {
        let (href, _) = cleaned_links(&html_mail(url, "Go"), &Policy::default());
        assert_eq!(href, url);
    }
}

#[test]
fn list_unsubscribe_urls_are_functional() {
    let url = "https://lists.example/u?id=5&rcpt=reader.one%40example.org";
    let raw = String::from_utf8(html_mail(url, "here")).unwrap().replacen(
        "Subject: links\r\n",
        &format!("Subject: links\r\nList-Unsubscribe: <{url}>\r\n"),
        1,
    );
    let (href, _) = cleaned_links(raw.as_bytes(), &Policy::default());
    assert_eq!(href, url);
}

#[test]
fn links_that_show_their_url_show_the_new_one() {
    let wrapped = format!("https://www.google.com/url?q={}&sa=D", enc(DEST));
    let raw = html_mail(&wrapped, &wrapped.replace('&', "&amp;"));
    let out = clean(
        &raw,
        &Envelope::to([READER]),
        &Policy::default(),
        &shipped(),
    );
    let text = String::from_utf8_lossy(&out.bytes);
    assert!(!text.contains("google.com/url"), "{text}");
    assert!(
        text.contains(&format!(">{}</a>", DEST_CLEAN.replace('&', "&amp;"))),
        "{text}"
    );
}

#[test]
fn cleaned_links_are_idempotent() {
    for (_, wrap) in wrappers() {
        let raw = html_mail(&wrap(DEST), "Read");
        let once = clean(
            &raw,
            &Envelope::to([READER]),
            &Policy::default(),
            &shipped(),
        );
        let twice = clean(
            &once.bytes,
            &Envelope::to([READER]),
            &Policy::default(),
            &shipped(),
        );
        assert_eq!(once.bytes, twice.bytes);
    }
}
