//! Issue 14, item 3: fail closed on what mailveil cannot read. A mail is read the way the
//! most lenient common reader reads it (bare CRs are line ends); what still cannot be
//! read is delivered so that nothing is lost (the original, byte for byte, as an
//! `application/octet-stream` attachment) and nothing fetches, with `error=` in our
//! header, and our header always replaces one that came with the mail.

mod common;
use common::*;
use mailveil_core::{OnError, Policy};

/// A known tracker (Mailchimp's open pixel) and a plain remote image.
const PIXEL: &str =
    r#"<img src="https://news.us3.list-manage.com/track/open.php?u=1&id=2" width="1" height="1">"#;
const IMAGE: &str =
    r#"<img src="https://images.remote.example/hero.png" width="600" height="300">"#;
const FORGED: &str = "X-Mailveil: v=0.1.0; pixel=0\r\n";

/// `levels` multipart/mixed levels, each with its own boundary, the deepest holding an
/// HTML part with a pixel and a content image.
fn nest(levels: usize) -> Vec<u8> {
    let mut m = format!(
        "From: News <news@sender.example>\r\nTo: {READER}\r\nSubject: deep\r\nMessage-ID: <deep@sender.example>\r\nMIME-Version: 1.0\r\n"
    );
    for i in 0..levels {
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"n{i}\"\r\n\r\n--n{i}\r\n"
        ));
    }
    m.push_str(&format!(
        "Content-Type: text/html; charset=utf-8\r\n\r\n<p>Deep news</p>{PIXEL}{IMAGE}\r\n"
    ));
    for i in (0..levels).rev() {
        m.push_str(&format!("--n{i}--\r\n"));
    }
    m.into_bytes()
}

/// A newsletter written with bare CR line ends: a text part and an HTML part.
fn bare_cr() -> Vec<u8> {
    format!(
        "From: News <news@sender.example>\nTo: {READER}\nSubject: eol\nMIME-Version: 1.0\n\
         Content-Type: multipart/alternative; boundary=\"e\"\n\n--e\nContent-Type: text/plain\n\n\
         Read it on the web.\n--e\nContent-Type: text/html\n\n<p>Hi</p>{PIXEL}{IMAGE}\n--e--\n"
    )
    .replace('\n', "\r")
    .into_bytes()
}

/// mail-parser 0.11.9 lets this nested message run past its parent's next boundary:
/// other readers split there. Which reading a client takes is not known.
fn ambiguous() -> Vec<u8> {
    let inner = format!(
        "From: inner@sender.example\r\nTo: {READER}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=\"utf-8\"\r\n\r\n<!--[if mso]><!--[if mso]>{PIXEL}{IMAGE}\r\n"
    );
    format!(
        "From: a@sender.example\r\nTo: {READER}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: message/rfc822\r\n\r\n\
         From: inner@sender.example\r\nTo: {READER}\r\nMIME-Version: 1.0\r\n\
         Content-Type: message/rfc822\r\n\r\n{inner}\r\n\
         --b\r\nContent-Type: text/html\r\n\r\n{IMAGE}\r\n--b--\r\n"
    )
    .into_bytes()
}

fn forged(raw: &[u8]) -> Vec<u8> {
    [FORGED.as_bytes(), raw].concat()
}

/// Under strip: no HTML a client shows names a remote host in anything that fetches.
fn assert_nothing_fetches(name: &str, out: &[u8]) {
    for html in shown_html(out) {
        let live = live_markup(&html);
        assert!(
            !live.contains("list-manage.com") && !live.contains("remote.example"),
            "{name}: something still fetches:\n{html}"
        );
    }
}

/// Under keep: no tracker in what a client shows.
fn assert_no_tracker(name: &str, out: &[u8]) {
    for html in shown_html(out) {
        assert!(
            !live_markup(&html).contains("list-manage.com"),
            "{name}: the tracker is still there:\n{html}"
        );
    }
}

/// The mail came out wrapped: our one header says `error=<code>`, the original is an
/// attachment byte for byte, nothing of it shows as HTML, cleaning again changes nothing.
fn assert_wrapped(name: &str, raw: &[u8], policy: &Policy, code: &str) {
    let out = run(raw, policy);
    assert_eq!(out.report.error.as_deref(), Some(code), "{name}");
    let own = own_headers(&out.bytes);
    assert_eq!(own.len(), 1, "{name}: {own:?}");
    assert!(
        own[0].contains(&format!("; error={code}")),
        "{name}: {own:?}"
    );
    assert_eq!(
        original_marked(&out.bytes, "error=").as_deref(),
        Some(raw),
        "{name}: the original is not recoverable byte for byte"
    );
    assert!(shown_html(&out.bytes).is_empty(), "{name}: HTML shown");
    let text = text(&out);
    assert!(
        text.contains("Content-Type: application/octet-stream; name=\"original.eml\""),
        "{name}:\n{text}"
    );
    assert!(text.contains("Subject: ") || !String::from_utf8_lossy(raw).contains("Subject:"));
    let again = run(&out.bytes, policy);
    assert_eq!(
        text,
        String::from_utf8_lossy(&again.bytes),
        "{name}: not idempotent"
    );
    assert_eq!(again.report.error.as_deref(), Some(code), "{name}");
}

#[test]
fn a_70_level_nest_is_delivered_as_an_attachment() {
    let raw = nest(70);
    // The uncleaned mail shows the pixel to a client: the test can fail.
    assert!(shown_html(&raw)[0].contains("list-manage.com"));
    for policy in [strip(), keep()] {
        assert_wrapped("nest 70", &raw, &policy, "too-deep");
        let out = run(&raw, &policy);
        assert_nothing_fetches("nest 70", &out.bytes);
    }
    // Within the limit, the same nest is cleaned in place.
    let out = run(&nest(20), &strip());
    assert_eq!(out.report.error, None);
    assert_nothing_fetches("nest 20", &out.bytes);
    assert!(html(&out.bytes).contains("<p>Deep news</p>"));
}

#[test]
fn a_bare_cr_mail_is_read_as_clients_read_it_and_cleaned() {
    let raw = bare_cr();
    let shown = shown_html(&raw);
    assert_eq!(shown.len(), 1, "a client finds the HTML part");
    assert!(shown[0].contains("list-manage.com"));
    for (policy, check) in [
        (strip(), assert_nothing_fetches as fn(&str, &[u8])),
        (keep(), assert_no_tracker),
    ] {
        let out = run(&raw, &policy);
        assert_eq!(out.report.error, None);
        check("bare cr", &out.bytes);
        let shown = shown_html(&out.bytes);
        assert_eq!(shown.len(), 1, "{}", text(&out));
        assert!(shown[0].contains("<p>Hi</p>"));
        // Nothing lost: the text part is there too, and a client reads the same parts.
        assert!(text(&out).contains("Read it on the web."));
        assert!(!text(&out).contains("list-manage.com"), "{}", text(&out));
        assert_eq!(own_headers(&out.bytes).len(), 1);
        let again = run(&out.bytes, &policy);
        assert_eq!(again.bytes, out.bytes, "not idempotent");
    }
    // Keep mode keeps the content image; the pixel is counted.
    let out = run(&raw, &keep());
    assert!(html(&lenient(&out.bytes)).contains("images.remote.example"));
    assert!(own_headers(&out.bytes)[0].contains("pixel=1"));
}

#[test]
fn a_bare_cr_inside_readable_text_leaves_the_other_bytes_as_they_came() {
    // The structure reads the same either way: only the HTML part is rewritten, and the
    // attachment with a bare CR in it stays byte for byte.
    let att = "Content-Type: text/csv; name=\"a.csv\"\r\nContent-Disposition: attachment; filename=\"a.csv\"\r\n\r\na;b\rc;d\r\n";
    let raw = format!(
        "From: a@sender.example\r\nTo: {READER}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
         --m\r\nContent-Type: text/html\r\n\r\n<p>a\rb</p>{PIXEL}\r\n--m\r\n{att}--m--\r\n"
    );
    let out = run(raw.as_bytes(), &keep());
    assert!(text(&out).contains(att), "{}", text(&out));
    assert!(!text(&out).contains("list-manage"));
}

#[test]
fn a_bare_cr_mail_that_is_still_unreadable_is_wrapped() {
    let raw: Vec<u8> = nest(70).iter().filter(|&&b| b != b'\n').copied().collect();
    assert!(shown_html(&raw)[0].contains("list-manage.com"));
    assert_wrapped("bare cr nest", &raw, &strip(), "too-deep");
}

#[test]
fn an_ambiguous_mail_is_delivered_as_an_attachment() {
    let raw = ambiguous();
    assert!(
        shown_html(&raw)
            .iter()
            .any(|h| h.contains("remote.example")),
        "the uncleaned mail shows remote content"
    );
    for policy in [strip(), keep()] {
        assert_wrapped("ambiguous", &raw, &policy, "ambiguous-mime");
    }
}

#[test]
fn an_unparseable_mail_is_delivered_as_an_attachment() {
    // mail-parser reads every non-empty input as some mail; the empty one it does not.
    assert_wrapped("empty", b"", &strip(), "unparseable");
}

#[test]
fn a_forged_header_is_replaced_on_every_path() {
    for (name, raw, code) in [
        ("nest 70", nest(70), Some("too-deep")),
        ("ambiguous", ambiguous(), Some("ambiguous-mime")),
        ("bare cr", bare_cr(), None),
        ("empty body", b"Subject: x\r\n\r\n".to_vec(), None),
        ("newsletter", html_mail(PIXEL), None),
    ] {
        let raw = forged(&raw);
        for policy in [strip(), keep()] {
            let out = run(&raw, &policy);
            let own = own_headers(&lenient(&out.bytes));
            assert_eq!(own.len(), 1, "{name}: {own:?}");
            assert!(
                !own[0].contains("pixel=0"),
                "{name}: the forged header stayed"
            );
            match code {
                Some(code) => {
                    assert!(own[0].contains(&format!("error={code}")), "{name}: {own:?}");
                    assert_eq!(
                        original_marked(&out.bytes, "error=").as_deref(),
                        Some(&raw[..])
                    );
                }
                None => assert!(!own[0].contains("error="), "{name}: {own:?}"),
            }
            assert_nothing_fetches_or_tracker(name, &out.bytes, &policy);
            assert_eq!(
                run(&out.bytes, &policy).bytes,
                out.bytes,
                "{name}: not idempotent"
            );
        }
    }
    // Skips too: an allow-listed sender's mail gets our header, not the forged one.
    let rules = mailveil_core::Rules::compile(&[mailveil_core::RuleSource {
        name: "allow.toml".into(),
        text: "[[allow]]\nid = \"bank\"\nsenders = [\"bank.example\"]\nsource = \"test\"\n".into(),
    }])
    .unwrap();
    let raw = forged(b"From: info@bank.example\r\nSubject: x\r\n\r\nhi\r\n");
    let out = mailveil_core::clean(
        &raw,
        &mailveil_core::Envelope::to([READER]),
        &strip(),
        &rules,
    );
    let own = own_headers(&out.bytes);
    assert_eq!(own.len(), 1, "{own:?}");
    assert!(own[0].ends_with("; skipped=allow:bank"), "{own:?}");
}

fn assert_nothing_fetches_or_tracker(name: &str, out: &[u8], policy: &Policy) {
    if policy.remote_content == mailveil_core::RemoteContent::Strip {
        assert_nothing_fetches(name, out);
    } else {
        assert_no_tracker(name, out);
    }
}

#[test]
fn a_forged_count_header_on_a_mail_with_nothing_to_clean_keeps_only_counts() {
    // With nothing to change, the counts of an earlier pass are kept (re-written by us);
    // an error or skip that came with the mail never is.
    let raw = b"X-Mailveil: v=0.0.1; error=too-deep\r\nFrom: a@sender.example\r\nSubject: x\r\n\r\nhi\r\n";
    let out = run(raw, &keep());
    let own = own_headers(&out.bytes);
    assert_eq!(
        own,
        vec![format!("X-Mailveil: v={}", mailveil_core::VERSION)]
    );
    let raw = b"X-Mailveil: v=0.0.1; skipped=allow:bank\r\nSubject: x\r\n\r\nhi\r\n";
    assert!(!text(&run(raw, &keep())).contains("skipped"));
}

#[test]
fn tempfail_stays_available_for_what_cannot_be_read() {
    let policy = Policy {
        on_error: OnError::Tempfail,
        ..strip()
    };
    let out = run(&nest(70), &policy);
    assert!(out.tempfail);
    assert_eq!(out.report.error.as_deref(), Some("too-deep"));
    assert!(!run(&bare_cr(), &policy).tempfail);
}

/// A bare CR that changes nothing in the mail as it came can change what the cleaned mail
/// holds: here a nested message (a signed one, its mail cut short before the closing
/// delimiter) is text to both readings until cleaned; once cleaned it is a message, and a
/// bare CR inside one of its fields splits that field for one reading only. The first pass
/// must read the mail as clients read it, or the second changes it (found by the
/// clean_bytes fuzz target; the input is its seed `regress-bare-cr-nested-message-cut-short`,
/// first byte the policy flags).
#[test]
fn a_bare_cr_that_the_clean_makes_count_is_read_as_a_line_end_on_the_first_pass() {
    let data = clean_bytes_seed("regress-bare-cr-nested-message-cut-short");
    let raw = &data[1..];
    for policy in [strip(), keep()] {
        let once = run(raw, &policy);
        let twice = run(&once.bytes, &policy);
        assert_eq!(
            String::from_utf8_lossy(&twice.bytes),
            String::from_utf8_lossy(&once.bytes),
            "not idempotent"
        );
    }
}

/// Two signed parts rewritten in one mail, one of them inside a nested message (which the
/// walk reads as its own bytes), took the same new boundary; the second pass found one
/// part's delimiter inside the other and delivered the mail as unreadable. Every boundary
/// a walk writes is now one it has not written before (found by the clean_bytes fuzz
/// target; the input is its seed `regress-two-signed-rewrites-one-boundary`).
#[test]
fn rewrites_in_one_mail_never_share_a_boundary() {
    let data = clean_bytes_seed("regress-two-signed-rewrites-one-boundary");
    let raw = &data[1..];
    for policy in [strip(), keep()] {
        let once = run(raw, &policy);
        assert_eq!(once.report.error, None);
        let twice = run(&once.bytes, &policy);
        assert_eq!(
            twice.report.error, None,
            "the second pass could not read the first's"
        );
        assert_eq!(
            String::from_utf8_lossy(&twice.bytes),
            String::from_utf8_lossy(&once.bytes),
            "not idempotent"
        );
    }
}

/// A seed of the clean_bytes fuzz target (its first byte the policy flags).
fn clean_bytes_seed(name: &str) -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/seeds/clean_bytes/");
    std::fs::read(format!("{dir}{name}")).expect("the seed")
}
