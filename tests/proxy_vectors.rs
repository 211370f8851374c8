//! Every fetch vector of tests/fixtures/browser/every-vector.html, cleaned under `proxy`,
//! opened in Chromium by the project's harness: every request the page makes goes to the
//! proxy's origin (nothing is passed through; each is recorded and answered locally), and
//! none of them carries a known tracker.

#[path = "browser/support.rs"]
mod support;

use mailveil::proxy_url::{self, ProxyConfig};
use mailveil::{Action, Envelope, Policy, RemoteContent};
use support::{Harness, html_parts};

const FIXTURE: &str = include_str!("fixtures/browser/every-vector.html");
const BASE: &str = "http://127.0.0.1:9/mv";

#[test]
fn under_proxy_every_request_of_every_vector_goes_to_the_proxy() {
    let raw = format!(
        "From: News <news@sender.example>\r\nTo: reader@mailveil.test\r\nSubject: vectors\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n{}\r\n",
        FIXTURE.replace("\r\n", "\n").replace('\n', "\r\n")
    );
    let cfg = ProxyConfig::new(BASE, b"vectors test key, 32 bytes long!".to_vec());
    let policy = Policy {
        remote_content: RemoteContent::Proxy,
        proxy: Some(cfg.clone()),
        ..Policy::default()
    };
    let (rules, _) = mailveil::rule_files::load(&[], false);
    let cleaned = mailveil::clean(
        raw.as_bytes(),
        &Envelope::to(["reader@mailveil.test"]),
        &policy,
        &rules,
    );
    let proxied = cleaned
        .report
        .findings
        .iter()
        .filter(|f| f.action == Action::Proxy)
        .count();
    assert!(proxied >= 10, "{:#?}", cleaned.report.findings);
    let html = html_parts(&cleaned.bytes).expect("parses").concat();
    let Some(h) = Harness::or_skip("every vector under proxy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = support::write_html(dir.path(), "proxy.html", &html);
    let out = h.render(&[file], &[]).expect("render.js runs");
    let requests = &out[0].requests;
    assert!(!requests.is_empty(), "content images must still load");
    let stripped: Vec<String> = cleaned
        .report
        .findings
        .iter()
        .filter(|f| f.action == Action::Strip)
        .filter_map(|f| f.url.clone())
        .collect();
    for r in requests {
        assert!(
            r.url.starts_with(&format!("{BASE}/")),
            "{} request not via the proxy: {}",
            r.kind,
            r.url
        );
        let (_, original) = proxy_url::parse(&cfg, &r.url).expect("a signed proxy URL");
        assert!(
            !stripped.contains(&original),
            "a stripped URL was loaded: {original}"
        );
    }
    eprintln!(
        "every-vector under proxy: {proxied} URLs proxied, {} requests, all to the proxy",
        requests.len()
    );
}
