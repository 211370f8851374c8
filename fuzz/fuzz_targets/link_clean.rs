//! `links::clean_link` on wrapped and raw URLs. Properties: no panic; idempotent (the
//! cleaned link comes back unchanged); a changed link is an absolute http(s) URL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailveil_core::detect::Detector;
use mailveil_core::links::{LinkContext, LinkPolicy, clean_link};
use mailveil_fuzz::links::Link;

fuzz_target!(|link: Link| {
    let url = link.url();
    let rules = mailveil_fuzz::shipped_rules();
    let detector = Detector::new(rules, [mailveil_fuzz::READER]);
    let policy = LinkPolicy {
        keep_campaign_params: link.keep_campaign,
        max_unwrap_depth: usize::from(link.max_depth % 8),
    };
    let list_unsubscribe = ["https://news.example/unsubscribe?u=1".to_string()];
    let ctx = LinkContext {
        rules,
        detector: &detector,
        policy: &policy,
        link_text: link.text.as_deref(),
        list_unsubscribe: &list_unsubscribe,
    };
    let once = clean_link(&url, &ctx);
    let Some(new) = once.url else {
        return;
    };
    let parsed = url::Url::parse(&new)
        .unwrap_or_else(|e| panic!("changed link does not parse ({e}): {url:?} -> {new:?}"));
    assert!(
        matches!(parsed.scheme(), "http" | "https"),
        "changed link is not http(s): {url:?} -> {new:?}"
    );
    let twice = clean_link(&new, &ctx);
    if let Some(again) = twice.url {
        panic!("not idempotent: {url:?} -> {new:?} -> {again:?}");
    }
});
