//! The image proxy and link shield over HTTP, in process, against a fake ESP on
//! 127.0.0.1: what it serves, how, and everything it refuses (docs/architecture.md, invariant 6).

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

/// The shipped rules and the fake ESP's (its open pixel, its opaque click redirect).
fn esp_rules() -> mailveil::Rules {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fake-esp.toml"), ESP_RULES).unwrap();
    let (rules, errors) = mailveil::rule_files::load(&[dir.path().to_path_buf()], false);
    assert!(errors.is_empty(), "{errors:?}");
    rules
}

/// Starts a proxy; `allow_loopback` is the test allowance (`--allow-net 127.0.0.0/8`).
async fn start(allow_loopback: bool) -> Running {
    start_with_keys(allow_loopback, KEY, &[]).await
}

/// A proxy that signs with `key` and still serves the URLs of `previous` keys.
async fn start_with_keys(allow_loopback: bool, key: &[u8], previous: &[&[u8]]) -> Running {
    let cache = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut s = Settings::new(
        format!("127.0.0.1:{port}").parse().unwrap(),
        &base,
        key.to_vec(),
    );
    s.previous_keys = previous.iter().map(|k| k.to_vec()).collect();
    if allow_loopback {
        s.allow = vec!["127.0.0.0/8".parse().unwrap()];
    }
    s.cache_dir = Some(cache.path().to_path_buf());
    s.limits.max_bytes = 1 << 20;
    s.limits.read = Duration::from_secs(2);
    s.limits.total = Duration::from_secs(3);
    let p = proxy::build(&s, Arc::new(esp_rules())).unwrap();
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

/// `(base, kind, key id, signature, encoded URL)` of a proxy URL.
fn split(url: &str) -> (String, String, String, String, String) {
    let mut it = url.rsplitn(5, '/');
    let enc = it.next().unwrap().to_string();
    let sig = it.next().unwrap().to_string();
    let id = it.next().unwrap().to_string();
    let kind = it.next().unwrap().to_string();
    (it.next().unwrap().to_string(), kind, id, sig, enc)
}

/// The kind is in the signature: an image URL is no link-shield URL, nor the other way
/// round, nor a stylesheet.
#[tokio::test]
async fn an_image_signature_is_refused_by_the_link_shield_and_the_other_way_round() {
    let esp = Esp::start();
    let p = start(true).await;
    let image = p.url(ProxyKind::Image, &esp.url("/track/click?u=1"));
    let link = p.url(ProxyKind::Link, &esp.url("/img/logo.png"));
    let (base, _, id, sig, enc) = split(&image);
    let (_, _, lid, lsig, lenc) = split(&link);
    for c in [
        format!("{base}/l/{id}/{sig}/{enc}"),
        format!("{base}/s/{id}/{sig}/{enc}"),
        format!("{base}/i/{lid}/{lsig}/{lenc}"),
        format!("{base}/s/{lid}/{lsig}/{lenc}"),
    ] {
        assert_eq!(get(&c).await.status(), 404, "{c}");
    }
    assert!(esp.hits().is_empty(), "{:?}", esp.hits());
}

/// Issue 14: a signed shield URL is good for its one URL, and only for a click tracker
/// whose destination only the tracker knows (what the core shields), never an open
/// redirect for a URL that did not come from a cleaned mail's links.
#[tokio::test]
async fn a_shield_url_for_one_destination_cannot_be_turned_into_another() {
    let esp = Esp::start();
    let p = start(true).await;
    let click = esp.url("/track/click?u=1&id=2");
    let good = p.url(ProxyKind::Link, &click);
    let (base, kind, id, sig, _) = split(&good);
    let elsewhere = proxy_url::encode_url("https://phish.example/login");
    for c in [
        format!("{base}/{kind}/{id}/{sig}/{elsewhere}"),
        format!("{good}/{elsewhere}"),
        format!(
            "{base}/{kind}/{id}/{sig}/{}",
            proxy_url::encode_url(&esp.url("/track/click?u=2"))
        ),
    ] {
        let r = get(&c).await;
        assert_eq!(r.status(), 404, "{c}");
    }
    // A query on a good URL changes nothing: it still leads where its URL leads.
    let r = get(&format!("{good}?url=https://phish.example/")).await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with(&esp.url("/landing?")), "{to}");
    // A shield URL for something that is no click tracker (a signature minted some
    // other way, or under rules since changed): named on a page, never redirected to.
    let plain = p.url(ProxyKind::Link, &esp.url("/landing?to=phish"));
    let r = get(&plain).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("/landing?to=phish"));
    assert!(
        esp.hits().iter().all(|h| !h.path.contains("phish")),
        "{:?}",
        esp.hits()
    );
}

/// A shield URL loaded where an image goes (`Sec-Fetch-Dest: image`) is refused: the
/// shield would follow the tracker on open and send the reader's client on.
#[tokio::test]
async fn the_link_shield_answers_only_navigations() {
    let esp = Esp::start();
    let p = start(true).await;
    let link = p.url(ProxyKind::Link, &esp.url("/track/click?u=1"));
    for dest in ["image", "script", "style", "empty"] {
        let r = client()
            .get(&link)
            .header("Sec-Fetch-Dest", dest)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{dest}");
    }
    assert!(esp.hits().is_empty(), "{:?}", esp.hits());
    let r = client()
        .get(&link)
        .header("Sec-Fetch-Dest", "document")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

/// Whoever signed it, a URL the loaded rules call a tracker is not fetched.
#[tokio::test]
async fn a_tracker_is_refused_at_serve_time_whoever_signed_it() {
    let esp = Esp::start();
    let p = start(true).await;
    for path in ["/track/open.php?u=1&e=reader42", "/pixel/o.gif?m=7"] {
        let r = get(&p.url(ProxyKind::Image, &esp.url(path))).await;
        assert_eq!(r.status(), 403, "{path}");
    }
    assert!(esp.hits().is_empty(), "{:?}", esp.hits());
}

/// Key rotation: the URLs of a key kept as previous are served during its grace period;
/// once it is retired (or for a key never held), they are refused, as is a good
/// signature under another key's id.
#[tokio::test]
async fn a_retired_key_is_refused_and_a_previous_key_served_during_its_grace() {
    const OLD: &[u8] = b"the old key, 32 bytes long......";
    const NEW: &[u8] = b"the new key, 32 bytes long......";
    let esp = Esp::start();
    let old = proxy_url::proxied(
        &mailveil::ProxyConfig::new("http://x", OLD.to_vec()),
        ProxyKind::Image,
        &esp.url("/img/old.png"),
    );
    let (_, kind, id, sig, enc) = split(&old);
    let path = format!("{kind}/{id}/{sig}/{enc}");
    let grace = start_with_keys(true, NEW, &[OLD]).await;
    assert_eq!(get(&format!("{}/{path}", grace.base)).await.status(), 200);
    let retired = start_with_keys(true, NEW, &[]).await;
    assert_eq!(get(&format!("{}/{path}", retired.base)).await.status(), 404);
    let new_id = proxy_url::key_id(NEW);
    let swapped = format!("{}/{kind}/{new_id}/{sig}/{enc}", grace.base);
    assert_eq!(get(&swapped).await.status(), 404);
    assert_eq!(esp.hits_for("/img/old.png").len(), 1);
    // What the proxy signs now is under the new key.
    assert!(
        retired
            .url(ProxyKind::Image, "http://a.example/")
            .contains(&new_id)
    );
}

/// URLs written before key ids are served with the key that signed them, for their kind.
#[tokio::test]
async fn urls_written_before_key_ids_are_still_served() {
    let esp = Esp::start();
    let p = start(true).await;
    let enc = proxy_url::encode_url(&esp.url("/img/legacy.png"));
    let sig = proxy_url::sign_legacy(KEY, ProxyKind::Image, &enc);
    assert_eq!(
        get(&format!("{}/i/{sig}/{enc}", p.base)).await.status(),
        200
    );
    assert_eq!(
        get(&format!("{}/l/{sig}/{enc}", p.base)).await.status(),
        404
    );
    let other = proxy_url::sign_legacy(b"not our key at all, not at all!!", ProxyKind::Image, &enc);
    assert_eq!(
        get(&format!("{}/i/{other}/{enc}", p.base)).await.status(),
        404
    );
}
