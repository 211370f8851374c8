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

/// The href after cleaning the link with the shipped rules (link text `text`).
fn cleaned_href(url: &str, text: &str) -> String {
    cleaned_links(&html_mail(url, text), &Policy::default()).0
}

/// Issue 18 item 4: parameters that identify a reader, a share or a session on the
/// destination site go, with the shipped rules; what the site needs stays.
#[test]
fn site_specific_tracking_parameters_go() {
    for (url, expected) in [
        (
            "https://www.amazon.de/dp/B0TEST/ref=sr_1_1?pf_rd_r=AB12&pd_rd_w=xY&pd_rd_wg=z&th=1",
            "https://www.amazon.de/dp/B0TEST/ref=sr_1_1?th=1",
        ),
        (
            "https://www.youtube.com/watch?v=dQw&si=AbCdEf&feature=share&t=42",
            "https://www.youtube.com/watch?v=dQw&t=42",
        ),
        ("https://youtu.be/dQw?si=AbCdEf", "https://youtu.be/dQw"),
        (
            "https://www.example.com/p?gclid=1&dclid=2&gbraid=3&wbraid=4&_gl=5&id=7",
            "https://www.example.com/p?id=7",
        ),
        (
            "https://www.example.com/p?fbclid=1&msclkid=2&ttclid=3&twclid=4&yclid=5&rb_clickid=6&id=7",
            "https://www.example.com/p?id=7",
        ),
        (
            "https://www.facebook.com/share/p/1AbC/?mibextid=wwXIfr",
            "https://www.facebook.com/share/p/1AbC/",
        ),
        (
            "https://www.instagram.com/p/AbC/?igshid=MzRl&ig_rid=77",
            "https://www.instagram.com/p/AbC/",
        ),
        (
            "https://www.linkedin.com/jobs/view/1?trk=eml&trackingId=x%3D%3D&lipi=urn&refId=9",
            "https://www.linkedin.com/jobs/view/1",
        ),
        (
            "https://x.com/someone/status/1234?s=20&t=AbCdEf",
            "https://x.com/someone/status/1234",
        ),
        (
            "https://x.com/search?q=mail&s=1&t=2",
            "https://x.com/search?q=mail&s=1&t=2",
        ),
        (
            "https://news.example/a?oly_anon_id=1&oly_enc_id=2&s_cid=3&wickedid=4&mkt_tok=5&_ke=6&n=1",
            "https://news.example/a?n=1",
        ),
        (
            "https://shop.example/a?trk_contact=1&trk_msg=2&trk_sid=3&sc_uid=4&sc_eh=5&_cio_id=6&mc_tc=7&n=1",
            "https://shop.example/a?n=1",
        ),
    ] {
        assert_eq!(cleaned_href(url, "Read"), expected, "{url}");
    }
}

/// Issue 18 item 3: an opaque click tracker that carries its destination in plain view
/// is unwrapped (and the destination cleaned); one that does not stays opaque.
#[test]
fn opaque_trackers_with_a_destination_in_plain_view_are_unwrapped() {
    let dest = "https://www.example.com/sale?id=3&utm_source=nl";
    let clean_dest = "https://www.example.com/sale?id=3";
    for wrapped in [
        format!(
            "https://u1234.ct.sendgrid.net/ls/click?upn=Fake-2Btoken&url={}",
            enc(dest)
        ),
        format!(
            "https://d2v8tf04.na1.hubspotlinks.com/Ctc/5F+113/d2v8tf04/VVfake?redirect={}",
            enc(&enc(dest))
        ),
        format!(
            "https://spgo.io/f/a/FakeToken~~/AAAA~/RgRfake?u={}",
            STANDARD.encode(dest)
        ),
        format!(
            "https://news.us3.list-manage.com/track/click?u=0fake&id=1fake&e=2fake&url={}",
            enc(dest)
        ),
    ] {
        assert_eq!(cleaned_href(&wrapped, "Read"), clean_dest, "{wrapped}");
    }
    let opaque = "https://news.us3.list-manage.com/track/click?u=5e78d7ef2297cc80842b7591e&id=c3569d2df3&e=6496a8003f";
    assert_eq!(cleaned_href(opaque, "Read"), opaque);
}

/// Issue 18 item 2: functional links lose campaign tags and click ids, keep their
/// tokens; the URL inside a mailto share link is cleaned.
#[test]
fn functional_and_mailto_links_lose_analytics_only() {
    assert_eq!(
        cleaned_href(
            "https://shop.example/unsubscribe?data=Zm9v&e=77&utm_source=footer&utm_medium=email&gclid=Cj0",
            "Unsubscribe"
        ),
        "https://shop.example/unsubscribe?data=Zm9v&e=77"
    );
    let mailto = "mailto:?subject=Look&body=https%3A%2F%2Fshop.example%2Fi%2F9%3Fid%3D9%26utm_source%3Dshare%26fbclid%3Dx";
    assert_eq!(
        cleaned_href(mailto, "Share by e-mail"),
        "mailto:?subject=Look&body=https://shop.example/i/9?id=9"
    );
}
