//! `clean` on generated MIME trees (see `mailveil_fuzz::mime`). Besides the common
//! properties: every part outside the rewritable text/html and text/plain parts comes out
//! byte for byte, and under `remote-content = strip` no HTML attribute names the host of
//! the generated fetching vectors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailveil_core::RemoteContent;
use mailveil_fuzz::mime::{Mail, TRACKER_HOST};

fuzz_target!(|mail: Mail| {
    let raw = mail.to_bytes();
    let policy = mailveil_fuzz::policy(mail.flags);
    let cleaned = mailveil_fuzz::check_clean(&raw, &policy);
    if cleaned.report.error.is_some() {
        return; // passed on unchanged, with the error header
    }
    let before = mailveil_fuzz::untouchable_leaves(&raw);
    let after = mailveil_fuzz::untouchable_leaves(&cleaned.bytes);
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
    if policy.remote_content == RemoteContent::Strip {
        for html in mailveil_fuzz::html_texts(&cleaned.bytes) {
            let hits = mailveil_fuzz::attributes_naming(&html, TRACKER_HOST, 0);
            assert!(
                hits.is_empty(),
                "remote content left under strip: {hits:?}\n--- html ---\n{html}\n--- mail ---\n{}",
                String::from_utf8_lossy(&raw)
            );
        }
    }
});
