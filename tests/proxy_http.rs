//! The image proxy and link shield over HTTP, in process, against a fake ESP on
//! 127.0.0.1: what it serves, how, and everything it refuses (DESIGN.md invariant 6).

#[path = "proxy_support/mod.rs"]
mod support;

use mailveil::proxy::{self, Settings};
use mailveil::proxy_url::{self, ProxyKind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

struct Running {
    base: String,
    cfg: mailveil::ProxyConfig,
    _cache: tempfile::TempDir,
}

impl Running {
    fn url(&self, kind: ProxyKind, target: &str) -> String {
        proxy_url::proxied(&self.cfg, kind, target)
    }
}

/// Starts a proxy; `allow_loopback` is the test allowance (`--allow-net 127.0.0.0/8`).
async fn start(allow_loopback: bool) -> Running {
    let cache = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut s = Settings::new(
        format!("127.0.0.1:{port}").parse().unwrap(),
        &base,
        KEY.to_vec(),
    );
    if allow_loopback {
        s.allow = vec!["127.0.0.0/8".parse().unwrap()];
    }
    s.cache_dir = Some(cache.path().to_path_buf());
    s.limits.max_bytes = 1 << 20;
    s.limits.read = Duration::from_secs(2);
    s.limits.total = Duration::from_secs(3);
    let rules = mailveil::rule_files::load(&[], false).0;
    let p = proxy::build(&s, Arc::new(rules)).unwrap();
    proxy::spawn(p, s.listen, s.http).await.unwrap();
    Running {
        cfg: s.proxy_config(),
        base,
        _cache: cache,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn get(url: &str) -> reqwest::Response {
    client()
        .get(url)
        .header("User-Agent", "ReaderMail/1.0 (iPhone; reader's device)")
        .header("Cookie", "session=reader-secret")
        .header("Referer", "https://webmail.reader.example/inbox/42")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn serves_a_raster_image_with_nosniff_csp_and_no_reader_data_upstream() {
    let esp = Esp::start();
    let p = start(true).await;
    let r = get(&p.url(ProxyKind::Image, &esp.url("/img/logo.png"))).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(
        h.get("set-cookie").is_none(),
        "upstream cookies are not passed on"
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), PNG);
    let hits = esp.hits_for("/img/logo.png");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].user_agent, proxy::fetch::USER_AGENT);
    assert_eq!(hits[0].cookie, None);
    assert_eq!(hits[0].referer, None);
    // A second open comes from the cache: the sender sees no second hit.
    assert_eq!(
        get(&p.url(ProxyKind::Image, &esp.url("/img/logo.png")))
            .await
            .status(),
        200
    );
    assert_eq!(esp.hits_for("/img/logo.png").len(), 1);
}

#[tokio::test]
async fn refuses_every_ssrf_form_without_the_allowance() {
    let esp = Esp::start();
    let p = start(false).await;
    let port = esp.port;
    let targets = [
        format!("http://127.0.0.1:{port}/img/a.png"),
        format!("http://127.1:{port}/img/a.png"),
        format!("http://2130706433:{port}/img/a.png"),
        format!("http://0x7f000001:{port}/img/a.png"),
        format!("http://0x7f.0.0.1:{port}/img/a.png"),
        format!("http://0177.0.0.1:{port}/img/a.png"),
        format!("http://[::1]:{port}/img/a.png"),
        format!("http://[::ffff:127.0.0.1]:{port}/img/a.png"),
        format!("http://[::127.0.0.1]:{port}/img/a.png"),
        format!("http://localhost:{port}/img/a.png"),
        format!("http://0.0.0.0:{port}/img/a.png"),
        format!("http://0:{port}/img/a.png"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_string(),
        "http://10.1.2.3/a.png".to_string(),
        "http://172.16.0.1/a.png".to_string(),
        "http://192.168.1.1/a.png".to_string(),
        "http://100.64.0.1/a.png".to_string(),
        "http://224.0.0.1/a.png".to_string(),
        "http://[fe80::1]/a.png".to_string(),
        format!("http://user:pw@example.com:{port}/a.png"),
        "file:///etc/passwd".to_string(),
        "ftp://example.com/a.png".to_string(),
        "gopher://example.com/".to_string(),
    ];
    for t in &targets {
        for kind in [ProxyKind::Image, ProxyKind::Style] {
            let r = get(&p.url(kind, t)).await;
            assert_eq!(r.status(), 403, "{t} ({kind:?}) not refused");
        }
    }
    assert!(
        esp.hits().is_empty(),
        "the ESP was reached: {:?}",
        esp.hits()
    );
}

#[tokio::test]
async fn refuses_forged_truncated_and_foreign_signatures() {
    let esp = Esp::start();
    let p = start(true).await;
    let target = esp.url("/img/logo.png");
    let good = p.url(ProxyKind::Image, &target);
    let (head, enc) = good.rsplit_once('/').unwrap();
    let sig = head.rsplit_once('/').unwrap().1;
    let other = proxy_url::proxied(
        &mailveil::ProxyConfig::new(&p.base, b"another key, not ours".to_vec()),
        ProxyKind::Image,
        &target,
    );
    let cases = [
        other,
        format!("{}/i/{}/{enc}", p.base, &sig[..sig.len() - 1]),
        format!("{}/i/{}/{enc}", p.base, &sig[..10]),
        format!("{}/i//{enc}", p.base),
        format!("{}/i/{sig}A/{enc}", p.base),
        format!("{}/s/{sig}/{enc}", p.base),
        format!("{}/l/{sig}/{enc}", p.base),
        format!(
            "{}/i/{sig}/{}",
            p.base,
            proxy_url::encode_url(&esp.url("/img/other.png"))
        ),
        format!("{}/i/{sig}", p.base),
    ];
    for c in &cases {
        let r = get(c).await;
        assert_eq!(r.status(), 404, "{c}");
    }
    assert!(esp.hits().is_empty(), "{:?}", esp.hits());
    assert_eq!(get(&good).await.status(), 200);
}

#[tokio::test]
async fn cuts_off_an_oversized_body() {
    let esp = Esp::start();
    let p = start(true).await;
    let started = Instant::now();
    let r = get(&p.url(ProxyKind::Image, &esp.url("/big.png"))).await;
    assert_eq!(r.status(), 502);
    assert!(r.bytes().await.unwrap().len() < 100);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn refuses_non_image_types_and_svg() {
    let esp = Esp::start();
    let p = start(true).await;
    for path in ["/html.png", "/svg.png", "/lying.png"] {
        let r = get(&p.url(ProxyKind::Image, &esp.url(path))).await;
        assert_eq!(r.status(), 415, "{path}");
    }
    // An image is not a stylesheet, a stylesheet not an image.
    assert_eq!(
        get(&p.url(ProxyKind::Style, &esp.url("/img/a.png")))
            .await
            .status(),
        415
    );
    assert_eq!(
        get(&p.url(ProxyKind::Image, &esp.url("/news.css")))
            .await
            .status(),
        415
    );
}

#[tokio::test]
async fn times_out_a_slow_upstream() {
    let esp = Esp::start();
    let p = start(true).await;
    let started = Instant::now();
    let r = get(&p.url(ProxyKind::Image, &esp.url("/slow.png"))).await;
    assert_eq!(r.status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn refuses_a_redirect_to_a_private_address() {
    let esp = Esp::start();
    let p = start(true).await;
    for path in ["/redirect-private", "/redirect-ten"] {
        let r = get(&p.url(ProxyKind::Image, &esp.url(path))).await;
        assert_eq!(r.status(), 403, "{path}");
    }
    // A redirect within the allowed network is followed; a loop is cut after 3 hops.
    let ok = get(&p.url(ProxyKind::Image, &esp.url("/redirect-ok"))).await;
    assert_eq!(ok.status(), 200);
    let looped = get(&p.url(ProxyKind::Image, &esp.url("/redirect-loop"))).await;
    assert_eq!(looped.status(), 502);
    assert_eq!(esp.hits_for("/redirect-loop").len(), 4);
}

#[tokio::test]
async fn serves_stylesheets_with_their_urls_through_the_proxy() {
    let esp = Esp::start();
    let p = start(true).await;
    let r = get(&p.url(ProxyKind::Style, &esp.url("/news.css"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let css = r.text().await.unwrap();
    let inner = p.url(ProxyKind::Image, &esp.url("/css/sheet-bg.png"));
    assert!(css.contains(&inner), "{css}");
    assert!(!css.contains("sheet-bg.png"), "{css}");
}

#[tokio::test]
async fn link_shield_reaches_the_destination_without_identifying_parameters() {
    let esp = Esp::start();
    let p = start(true).await;
    let click = esp.url("/track/click?u=1&id=2&e=reader42");
    let r = get(&p.url(ProxyKind::Link, &click)).await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with(&esp.url("/landing?")), "{to}");
    assert!(to.contains("article=7"), "{to}");
    for id in ["mc_eid", "mc_cid", "utm_"] {
        assert!(!to.contains(id), "{id} left in {to}");
    }
    let hits = esp.hits_for("/track/click");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].user_agent, proxy::fetch::USER_AGENT);
    assert_eq!(
        (hits[0].cookie.as_deref(), hits[0].referer.as_deref()),
        (None, None)
    );
    // A destination that is not http(s) gets a page that names it.
    let r = get(&p.url(ProxyKind::Link, &esp.url("/track/mailto"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("mailto:sales@sender.example")
    );
}

#[tokio::test]
async fn link_shield_never_fetches_private_addresses() {
    let esp = Esp::start();
    let p = start(false).await;
    let r = get(&p.url(ProxyKind::Link, &esp.url("/track/click?u=1"))).await;
    // The first hop is refused: no fetch, and the reader is not sent to the tracker
    // either; a page names the destination.
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("/track/click"));
    assert!(esp.hits().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_of_one_image_reach_the_sender_once() {
    let esp = Esp::start();
    let p = start(true).await;
    let url = p.url(ProxyKind::Image, &esp.url("/img/together.png"));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let u = url.clone();
            tokio::spawn(async move { get(&u).await.status() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(esp.hits_for("/img/together.png").len(), 1);
}
