//! `clean` on generated MIME trees (see `mailveil_fuzz::mime`), one in four given a
//! hostile shape (bare CRs, 70-level nesting, a forged header, a signed body). Besides
//! the common properties: exactly one `X-Mailveil` header; every part outside the
//! rewritable text/html and text/plain parts comes out byte for byte (line ends aside
//! for a bare-CR mail; signatures go with the attached signed original); and under
//! `remote-content = strip` no HTML attribute that a client shows (the mail read with
//! bare CRs as line ends; signed content included, as strip cleans it) names the host of
//! the generated fetching vectors, whether the mail was cleaned or could not be read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailveil_core::{RemoteContent, SignedContent};
use mailveil_fuzz::mime::{Mail, Shape, TRACKER_HOST};

fuzz_target!(|mail: Mail| {
    let raw = mail.to_bytes();
    let policy = mailveil_fuzz::policy(mail.flags);
    let cleaned = mailveil_fuzz::check_clean(&raw, &policy);
    assert_eq!(
        mailveil_fuzz::own_headers(&mailveil_fuzz::lenient(&cleaned.bytes)),
        1,
        "not exactly one X-Mailveil header\n{}",
        String::from_utf8_lossy(&cleaned.bytes)
    );
    if policy.remote_content == RemoteContent::Strip {
        let signed = policy.signed_content() == SignedContent::Clean;
        for html in mailveil_fuzz::html_texts(&cleaned.bytes, signed) {
            let hits = mailveil_fuzz::attributes_naming(&html, TRACKER_HOST, 0);
            assert!(
                hits.is_empty(),
                "remote content left under strip: {hits:?}\n--- html ---\n{html}\n--- mail ---\n{}",
                String::from_utf8_lossy(&raw)
            );
        }
    }
    if cleaned.report.error.is_some() {
        return; // delivered as an attachment (checked in check_clean)
    }
    // A bare-CR mail is read (and delivered) with its bare CRs as line ends.
    let bare_cr = matches!(
        mail.shape(),
        Some(Shape::BareCr | Shape::Nest70BareCr | Shape::SignedBareCr)
    );
    let leaves = |m: &[u8]| -> Vec<Vec<u8>> {
        let leaves = mailveil_fuzz::untouchable_leaves(m);
        if bare_cr {
            let read = mailveil_fuzz::lenient(m);
            mailveil_fuzz::untouchable_leaves(&read)
                .iter()
                .map(|l| mailveil_fuzz::unified(l))
                .collect()
        } else {
            leaves
        }
    };
    let before = leaves(&raw);
    let after = leaves(&cleaned.bytes);
    assert_eq!(
        before.len(),
        after.len(),
        "a non-text part was lost or added\n--- mail ---\n{}\n--- cleaned ---\n{}",
        String::from_utf8_lossy(&raw),
        String::from_utf8_lossy(&cleaned.bytes)
    );
    for (b, a) in before.iter().zip(&after) {
        assert!(
            a == b,
            "a non-text part changed:\n--- before ---\n{}\n--- after ---\n{}",
            String::from_utf8_lossy(b),
            String::from_utf8_lossy(a)
        );
    }
});
