//! MPP end to end: a newsletter goes through `mailveil serve` with `prefetch` (and with
//! `proxy`) to an SMTP sink, then the delivered mail is opened in Chromium by the
//! project's browser harness (tests/browser/render.js; requests to the proxy's origin go
//! through, every other one is recorded and answered locally). A fake ESP on 127.0.0.1
//! records every hit it gets.
//!
//! Without Chromium or the harness (node, `npm ci` in tests/browser) the browser halves
//! print a SKIP notice and pass, unless MAILVEIL_REQUIRE_BROWSER=1.

mod support;

#[path = "browser/support.rs"]
mod browser_support;

use browser_support::Harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const GENERIC_UA: &str = mailveil::proxy::fetch::USER_AGENT;

/// The content resources of the mail: each must be fetched exactly once, by the proxy.
const CONTENT: &[&str] = &[
    "/img/hero.png",
    "/img/logo.png",
    "/img/srcset-2x.png",
    "/img/bg-attr.png",
    "/img/bg-inline.png",
    "/img/bg-style.png",
    "/news.css",
    "/css/sheet-bg.png",
];

fn newsletter(esp: &Esp) -> String {
    let u = |p: &str| esp.url(p);
    let html = format!(
        r#"<!doctype html><html><head>
<link rel="stylesheet" href="{css}">
<style>.band {{ background: #fff url({bg_style}) no-repeat; height: 40px }}</style>
</head><body>
<img src="{known}" width="1" height="1" alt="">
<img src="{unknown}" width="1" height="1" style="display:none" alt="">
<table background="{bg_attr}" width="600"><tr>
<td style="background-image:url('{bg_inline}'); height:40px">Spring news</td></tr></table>
<div class="band"></div><div class="sheet" style="height:20px"></div>
<img src="{hero}" width="600" height="200" alt="Hero">
<img src="{logo}" srcset="{srcset} 2x" width="120" height="40" alt="Logo">
<p><a href="{click}">Read the article</a></p>
</body></html>"#,
        css = u("/news.css"),
        bg_style = u("/img/bg-style.png"),
        known = u("/track/open.php?u=1&amp;id=2&amp;e=reader42"),
        unknown = u("/pixel/o.gif?m=77"),
        bg_attr = u("/img/bg-attr.png"),
        bg_inline = u("/img/bg-inline.png"),
        hero = u("/img/hero.png"),
        logo = u("/img/logo.png"),
        srcset = u("/img/srcset-2x.png"),
        click = u("/track/click?u=1&amp;id=2&amp;e=reader42"),
    );
    format!(
        "From: News <news@sender.example>\r\nTo: reader@mailveil.test\r\nSubject: Spring news\r\n\
         Message-ID: <mpp-1@sender.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n",
        html.replace('\n', "\r\n")
    )
}

/// `mailveil serve` with the proxy, its sink, where the proxy answers.
struct Serve {
    daemon: Daemon,
    smtp: u16,
    proxy_origin: String,
    sink: Sink,
}

/// `mailveil serve` started exactly as the issue's scripts do, plus the rules that make
/// the fake ESP a known tracker.
fn serve(mode: &str, extra: &[&str]) -> Serve {
    serve_with_config(mode, "", extra)
}

/// [`serve`] with a configuration file holding `config`.
fn serve_with_config(mode: &str, config: &str, extra: &[&str]) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("mailveil.toml");
    std::fs::write(&config_file, config).unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("fake-esp.toml"), ESP_RULES).unwrap();
    let key = dir.path().join("proxy.key");
    std::fs::write(
        &key,
        "6d61696c7665696c2074657374206b6579206f662033322062797465732121\n",
    )
    .unwrap();
    let sink = Sink::start();
    let smtp = free_port();
    let proxy = free_port();
    let proxy_listen = format!("127.0.0.1:{proxy}");
    let proxy_origin = format!("http://127.0.0.1:{proxy}");
    let mut args: Vec<String> = vec![
        "serve".into(),
        "--no-system-rules".into(),
        "--listen".into(),
        format!("127.0.0.1:{smtp}"),
        "--downstream".into(),
        sink.url(),
    ];
    for a in [
        "--remote-content",
        mode,
        "--proxy-listen",
        &proxy_listen,
        "--proxy-base",
        &proxy_origin,
        "--proxy-allow-net",
        "127.0.0.0/8",
    ] {
        args.push(a.into());
    }
    args.push("--proxy-key-file".into());
    args.push(key.display().to_string());
    args.push("--rules".into());
    args.push(rules.display().to_string());
    args.push("--config".into());
    args.push(config_file.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    // systemd's CacheDirectory=, as a unit would set it: the cache goes there.
    let cache = dir.path().as_os_str().to_owned();
    let daemon = Daemon::start_in(dir, &args, &[("CACHE_DIRECTORY", &cache)], &[smtp, proxy]);
    Serve {
        daemon,
        smtp,
        proxy_origin,
        sink,
    }
}

/// Sends one mail; returns when the filter has answered the final dot.
fn send(port: u16, mail: &str) -> String {
    send_as(port, "news@sender.example", "reader@mailveil.test", mail)
}

/// Sends one mail from `from` to `to`.
fn send_as(port: u16, from: &str, to: &str, mail: &str) -> String {
    support::send(port, from, to, mail.as_bytes())
}

fn delivered_html(raw: &str) -> String {
    let msg = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .expect("delivered mail parses");
    msg.body_html(0).expect("an html body").into_owned()
}

/// Renders the HTML with the project's harness (requests to `pass` go through); returns
/// (URL, resource type) of every request the page made.
fn render(h: &Harness, html: &str, pass: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let file = browser_support::write_html(dir.path(), "mail.html", html);
    let out = h.render(&[file], &[pass]).expect("render.js runs");
    assert_eq!(out.len(), 1);
    assert!(out[0].error.is_none(), "render failed: {:?}", out[0].error);
    out[0]
        .requests
        .iter()
        .map(|r| (r.url.clone(), r.kind.clone()))
        .collect()
}

fn assert_proxy_hit(h: &Hit) {
    assert_eq!(h.user_agent, GENERIC_UA, "{h:?}");
    assert_eq!(h.cookie, None, "{h:?}");
    assert_eq!(h.referer, None, "{h:?}");
}

#[test]
fn prefetch_fetches_content_once_at_delivery_and_the_open_reaches_only_the_proxy() {
    let esp = Esp::start();
    let s = serve("prefetch", &[]);
    let started = Instant::now();
    let reply = send(s.smtp, &newsletter(&esp));
    let delivered_at = Instant::now();
    assert!(reply.starts_with("250"), "{reply}");
    let took = delivered_at - started;
    eprintln!("delivery with prefetch took {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    for path in CONTENT {
        let hits = esp.hits_for(path);
        assert_eq!(hits.len(), 1, "{path}: {hits:?}");
        assert_proxy_hit(&hits[0]);
        assert!(hits[0].at <= delivered_at, "{path} fetched after delivery");
    }
    assert!(
        esp.hits_for("/track/open.php").is_empty(),
        "known tracker fetched"
    );
    assert!(
        esp.hits_for("/pixel/o.gif").is_empty(),
        "hidden pixel fetched"
    );
    assert!(
        esp.hits_for("/track/click").is_empty(),
        "a link was followed at delivery"
    );
    let before_open = esp.hits().len();

    let mails = s.sink.texts();
    assert_eq!(mails.len(), 1);
    let html = delivered_html(&mails[0]);
    // Only the click link (not shielded here) still names the ESP; it loads nothing.
    assert_eq!(html.matches(&esp.origin()).count(), 1, "{html}");
    assert!(
        html.contains(&format!("href=\"{}/track/click", esp.origin())),
        "{html}"
    );
    assert!(
        mails[0].contains("prefetched="),
        "X-Mailveil header counts prefetches"
    );

    let Some(h) = Harness::or_skip("MPP prefetch: opening the delivered mail") else {
        return;
    };
    let requests = render(&h, &html, &s.proxy_origin);
    let images: Vec<_> = requests.iter().filter(|(_, t)| t == "image").collect();
    assert!(images.len() >= 6, "{requests:?}");
    for (url, kind) in &requests {
        assert!(
            url.starts_with(&s.proxy_origin),
            "{kind} request not via the proxy: {url}"
        );
    }
    assert_eq!(
        esp.hits().len(),
        before_open,
        "the open reached the ESP: {:?}",
        &esp.hits()[before_open..]
    );
}

#[test]
fn proxy_fetches_on_open_from_the_proxy_not_the_browser() {
    let esp = Esp::start();
    let s = serve("proxy", &["--shield-links"]);
    let reply = send(s.smtp, &newsletter(&esp));
    assert!(reply.starts_with("250"), "{reply}");
    assert!(
        esp.hits().is_empty(),
        "proxy mode fetched at delivery: {:?}",
        esp.hits()
    );
    let mails = s.sink.texts();
    let html = delivered_html(&mails[0]);
    assert!(!html.contains(&esp.origin()), "{html}");
    assert!(
        html.contains(&format!("{}/l/", s.proxy_origin)),
        "click tracker not shielded: {html}"
    );
    assert!(mails[0].contains("proxied="));

    let Some(h) = Harness::or_skip("image proxy: opening the delivered mail") else {
        return;
    };
    let requests = render(&h, &html, &s.proxy_origin);
    for (url, kind) in &requests {
        assert!(
            url.starts_with(&s.proxy_origin),
            "{kind} request not via the proxy: {url}"
        );
    }
    // Every content resource reached the ESP once, from the proxy (generic UA, no
    // cookie or referrer), none from the browser.
    for path in CONTENT {
        let hits = esp.hits_for(path);
        // A 2x srcset candidate is not loaded on a 1x screen.
        let expected = if path.contains("2x") { 0..=1 } else { 1..=1 };
        assert!(expected.contains(&hits.len()), "{path}: {hits:?}");
        hits.iter().for_each(assert_proxy_hit);
    }
    assert!(esp.hits_for("/track/open.php").is_empty());
    assert!(esp.hits_for("/pixel/o.gif").is_empty());
}

#[tokio::test]
async fn a_click_on_a_shielded_link_reaches_the_destination_clean_and_the_esp_sees_the_proxy() {
    let esp = Esp::start();
    let s = serve("proxy", &["--shield-links"]);
    assert!(send(s.smtp, &newsletter(&esp)).starts_with("250"));
    let html = delivered_html(&s.sink.texts()[0]);
    let start = html.find(&format!("{}/l/", s.proxy_origin)).unwrap();
    let end = start + html[start..].find('"').unwrap();
    let link = html[start..end].replace("&amp;", "&");
    // The reader's browser: its own UA and cookies, redirects followed by hand.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(&link)
        .header("User-Agent", "ReaderBrowser/1.0")
        .header("Cookie", "webmail=secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let dest = r.headers()["location"].to_str().unwrap().to_string();
    assert!(dest.starts_with(&esp.url("/landing?article=7")), "{dest}");
    for id in ["mc_eid", "mc_cid", "utm_", "reader42"] {
        assert!(!dest.contains(id), "{id} in {dest}");
    }
    let clicks = esp.hits_for("/track/click");
    assert_eq!(clicks.len(), 1);
    assert_proxy_hit(&clicks[0]);
    assert!(
        esp.hits()
            .iter()
            .all(|h| h.user_agent != "ReaderBrowser/1.0")
    );
}

#[test]
fn the_prefetch_deadline_bounds_the_delay_and_late_urls_stay_proxied() {
    let esp = Esp::start();
    let s = serve("prefetch", &[]);
    let mail = newsletter(&esp).replace("/img/hero.png", "/slow.png");
    let started = Instant::now();
    let reply = send(s.smtp, &mail);
    let took = started.elapsed();
    assert!(reply.starts_with("250"), "{reply}");
    eprintln!("delivery with a slow upstream took {took:?}");
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    assert!(took < Duration::from_millis(3500), "{took:?}");
    let html = delivered_html(&s.sink.texts()[0]);
    let slow = mailveil::proxy_url::encode_url(&esp.url("/slow.png"));
    assert!(html.contains(&slow), "the late image is still proxied");
    assert_eq!(esp.hits_for("/img/logo.png").len(), 1);
}

/// An HTML mail from `from` to `to`.
fn html_mail(from: &str, to: &str, id: &str, body: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {id}\r\nMessage-ID: <{id}@mailveil.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n<!doctype html><html><body>{body}</body></html>\r\n"
    )
}

/// The URLs in `html` that start with `prefix` (attribute values, `&amp;` decoded).
fn urls_with(html: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(prefix) {
        let tail = &rest[i..];
        let end = tail.find(['"', '\'', ')', ' ', '>']).unwrap_or(tail.len());
        out.push(tail[..end].replace("&amp;", "&"));
        rest = &tail[end..];
    }
    out
}

/// GETs every URL as a mail client would (its own UA; redirects not followed).
fn open_with_http_client(urls: &[String]) -> Vec<u16> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut codes = Vec::new();
        for u in urls {
            let r = client
                .get(u)
                .header("User-Agent", "ReaderMail/1.0")
                .send()
                .await
                .unwrap();
            codes.push(r.status().as_u16());
        }
        codes
    })
}

const MALLORY: &str = "mallory@mailveil.test";
const READER: &str = "reader@mailveil.test";

/// Issue 14: Mallory, who has a mailbox on this server, mails herself URLs that name the
/// reader (to her they are content) and gets them back signed by this installation;
/// then she mails those to the reader. They used to be trusted as ours: neither judged
/// nor prefetched, and the proxy fetched them when the reader opened the mail, telling
/// the ESP. Now what they carry is judged for the reader, and stripped.
#[test]
fn a_tracker_url_signed_here_and_mailed_on_is_stripped_and_the_esp_never_hears_of_the_open() {
    let esp = Esp::start();
    let s = serve("proxy", &["--shield-links"]);
    let spy = esp.url(&format!("/img/spy.png?for={READER}"));
    let click = esp.url(&format!("/track/click?e={READER}"));
    let own = html_mail(
        MALLORY,
        MALLORY,
        "mint",
        &format!(
            r#"<img src="{spy}" width="600" height="200" alt="x"><a href="{}">go</a>"#,
            click.replace('&', "&amp;")
        ),
    );
    assert!(send_as(s.smtp, MALLORY, MALLORY, &own).starts_with("250"));
    let minted = delivered_html(&s.sink.texts()[0]);
    let signed_img = urls_with(&minted, &format!("{}/i/", s.proxy_origin));
    let signed_link = urls_with(&minted, &format!("{}/l/", s.proxy_origin));
    assert_eq!(
        (signed_img.len(), signed_link.len()),
        (1, 1),
        "Mallory got signed URLs: {minted}"
    );
    let (img, link) = (&signed_img[0], &signed_link[0]);

    let on = html_mail(
        MALLORY,
        READER,
        "on",
        &format!(
            r#"<p>Hello</p><img src="{img}" width="600" height="200" alt="a">
<img src="{link}" width="600" height="200" alt="b">
<div style="background:url('{img}');height:40px">c</div><a href="{link}">d</a>"#
        ),
    );
    assert!(send_as(s.smtp, MALLORY, READER, &on).starts_with("250"));
    let raw = s.sink.texts()[1].clone();
    let html = delivered_html(&raw);
    // Opened by a mail client over HTTP: every proxy URL left in it that loads on open
    // (a shield URL only on a click).
    let left: Vec<String> = urls_with(&html, &s.proxy_origin)
        .into_iter()
        .filter(|u| !u.starts_with(&format!("{}/l/", s.proxy_origin)))
        .collect();
    let codes = open_with_http_client(&left);
    assert!(
        esp.hits().is_empty(),
        "the ESP heard of the open: {:?} ({codes:?})",
        esp.hits()
    );
    assert!(!html.contains(img.as_str()), "{html}");
    assert!(
        !html.contains(&format!("src=\"{}/", s.proxy_origin)),
        "an image still loads from the proxy: {html}"
    );
    assert!(!html.contains("url("), "{html}");
    let header = raw.lines().next().unwrap_or("");
    assert!(header.contains("recipient-token="), "{header}");
    // And by a browser.
    let Some(h) = Harness::or_skip("a signed tracker URL mailed on: opening the mail") else {
        return;
    };
    let requests = render(&h, &html, &s.proxy_origin);
    for (url, kind) in &requests {
        assert!(url.starts_with(&s.proxy_origin), "{kind} request: {url}");
    }
    assert!(
        esp.hits().is_empty(),
        "the open reached the ESP: {:?}",
        esp.hits()
    );
}

/// A content image that arrives already on our proxy (Mallory forwarding a newsletter
/// she got) is judged like any image: prefetched again under the reader's policy, and
/// it loads.
#[test]
fn a_content_image_arriving_proxied_is_judged_and_still_loads() {
    let esp = Esp::start();
    let s = serve("prefetch", &[]);
    let logo = esp.url("/img/shared.png");
    let own = html_mail(
        MALLORY,
        MALLORY,
        "first",
        &format!(r#"<img src="{logo}" width="600" height="200" alt="x">"#),
    );
    assert!(send_as(s.smtp, MALLORY, MALLORY, &own).starts_with("250"));
    let first = delivered_html(&s.sink.texts()[0]);
    let signed = urls_with(&first, &format!("{}/i/", s.proxy_origin));
    assert_eq!(signed.len(), 1, "{first}");
    assert_eq!(esp.hits_for("/img/shared.png").len(), 1);

    let on = html_mail(
        MALLORY,
        READER,
        "forwarded",
        &format!(
            r#"<img src="{}" width="600" height="200" alt="shared">"#,
            signed[0]
        ),
    );
    assert!(send_as(s.smtp, MALLORY, READER, &on).starts_with("250"));
    let raw = s.sink.texts()[1].clone();
    let header = raw.lines().next().unwrap_or("");
    assert!(
        header.contains("prefetched=1"),
        "judged and prefetched: {header}"
    );
    let html = delivered_html(&raw);
    assert!(html.contains(signed[0].as_str()), "{html}");
    // Served from the cache: the ESP saw one fetch in all.
    assert_eq!(open_with_http_client(&signed), vec![200]);
    assert_eq!(esp.hits_for("/img/shared.png").len(), 1);
    assert!(
        s.daemon.dir.path().join("proxy-cache/objects").is_dir(),
        "the cache is under $CACHE_DIRECTORY"
    );
    let Some(h) = Harness::or_skip("a pre-proxied content image: opening the mail") else {
        return;
    };
    let requests = render(&h, &html, &s.proxy_origin);
    assert!(
        requests
            .iter()
            .any(|(u, kind)| *u == signed[0] && kind == "image"),
        "{requests:?}"
    );
    assert_eq!(esp.hits_for("/img/shared.png").len(), 1);
}

/// Prefetch is bounded: at most `prefetch_max_urls` URLs of one mail, at most
/// `prefetch_per_host` at once to one host; the rest load on open.
#[test]
fn prefetch_is_capped_per_mail_and_per_host() {
    let esp = Esp::start();
    let s = serve_with_config(
        "prefetch",
        "prefetch_max_urls = 5\nprefetch_per_host = 2\n",
        &[],
    );
    let images: String = (0..12)
        .map(|i| {
            format!(
                r#"<img src="{}" width="600" height="200" alt="{i}">"#,
                esp.url(&format!("/slowimg/{i}.png"))
            )
        })
        .collect();
    let mail = html_mail("news@sender.example", READER, "many", &images);
    let started = Instant::now();
    assert!(send(s.smtp, &mail).starts_with("250"));
    eprintln!("delivery of 12 slow images took {:?}", started.elapsed());
    // Late fetches go on in the background: give them time to show up.
    std::thread::sleep(Duration::from_secs(2));
    let hits = esp
        .hits()
        .iter()
        .filter(|h| h.path.starts_with("/slowimg/"))
        .count();
    assert_eq!(hits, 5, "{:?}", esp.hits());
    assert!(esp.most_at_once() <= 2, "{} at once", esp.most_at_once());
    // The rest are still proxied, and load on open.
    let html = delivered_html(&s.sink.texts()[0]);
    let proxied = urls_with(&html, &format!("{}/i/", s.proxy_origin));
    assert_eq!(proxied.len(), 12, "{html}");
    assert!(open_with_http_client(&proxied).iter().all(|c| *c == 200));
    assert_eq!(
        esp.hits()
            .iter()
            .filter(|h| h.path.starts_with("/slowimg/"))
            .count(),
        12
    );
}

/// Issue 14: the default cache was `$TMPDIR/mailveil-cache-<pid>`, a name anyone on the
/// machine could create first (with symlinks in it). Without a configured directory
/// or systemd's, the proxy takes `~/.cache/mailveil`, created 0700, and nothing in $TMPDIR.
#[test]
fn the_default_cache_is_private_and_never_under_tmp() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (home, tmp) = (dir.path().join("home"), dir.path().join("tmp"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef").unwrap();
    let port = free_port();
    let mut child = Command::new(MAILVEIL)
        .args(["proxy", "--no-system-rules", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--base", &format!("http://127.0.0.1:{port}"), "--key-file"])
        .arg(&key)
        .env_remove("CACHE_DIRECTORY")
        .env_remove("STATE_DIRECTORY")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_port(port);
    let _ = child.kill();
    let _ = child.wait();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let cache = home.join(".cache/mailveil");
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(mode(&cache.join("proxy-cache")), 0o700);
    assert!(cache.join("proxy-cache/objects").is_dir());
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "something was put under $TMPDIR"
    );
}
