//! Reports (issue 7): mails through the real `mailveil serve` into a small SMTP sink,
//! then `mailveil report --format json` must add up to the sum of the per-mail findings
//! (computed here with the same core), `/metrics` must have moved, and the dashboard must
//! list the mails; retention must delete old rows; the banner must be there when on,
//! absent when off, and added once.
//!
//! With a proxy, `/metrics` counts its fetches and cache hits, and the store keeps what a
//! proxy URL carries (host and path), never the proxy URL.
//!
//! With `MAILVEIL_TEST_POSTGRES=postgres://...` set, the same store and serve tests run
//! against PostgreSQL too, each in a fresh database of its own.

#[path = "browser/support.rs"]
mod browser_support;

mod support;

use mailveil::store::{self, MailRecord, ReportStore, StoredFinding};
use mailveil::{Envelope, Policy, clean};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use support::{Daemon, Esp, MAILVEIL, Sink, free_port, launch, wait_port};

use std::time::{Duration, Instant};

const RECIPIENT: &str = "reader@mailveil.test";
const NEWSLETTER: &str = include_str!("fixtures/newsletter.eml");

/// The mails sent, each with its envelope sender.
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let plain = "From: Friend <friend@friends.example>\r\nTo: reader@mailveil.test\r\n\
Subject: lunch\r\nMessage-ID: <plain-1@friends.example>\r\n\r\nLunch at noon?\r\n";
    let pixel = format!(
        "From: Shop <news@shop.example>\r\nTo: reader@mailveil.test\r\nSubject: sale\r\n\
Message-ID: <pixel-1@shop.example>\r\nContent-Language: de\r\nMIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>Sale!</p>\
<a href=\"https://shop.example/sale?utm_source=news&amp;utm_medium=email\">shop</a>\
<img src=\"https://open.shop.example/o.gif?r={RECIPIENT}\" width=\"1\" height=\"1\">\
</body></html>\r\n"
    );
    let second = NEWSLETTER.replace(
        "Message-ID: <6f1e2d3c4b5a.4a5b6c7d8e.20261129070001@mail190.suw13.mcdlv.net>",
        "Message-ID: <second-newsletter@mail190.suw13.mcdlv.net>",
    );
    // The newsletters come from Mailchimp's bounce host, as they do: the report names the
    // brand of From: (gardenletter.example), not mcdlv.net.
    let esp = "bounce-mc.us7_1234567.89-reader=example.org@mail190.suw13.mcdlv.net";
    vec![
        (esp.into(), NEWSLETTER.into()),
        (esp.into(), second.into_bytes()),
        ("friend@friends.example".into(), plain.as_bytes().to_vec()),
        ("news@shop.example".into(), pixel.into_bytes()),
    ]
}

/// `mailveil serve` with a report store and the dashboard; killed on drop.
struct Serve {
    _daemon: Daemon,
    smtp: u16,
    http: u16,
}

fn serve(db: &str, sink: u16, extra: &[&str]) -> Serve {
    let smtp = free_port();
    let http = free_port();
    let dashboard = format!("127.0.0.1:{http}");
    let mut args = vec!["--report-db", db, "--dashboard-listen", &dashboard];
    args.extend_from_slice(extra);
    let daemon = launch::serve(smtp, &format!("smtp://127.0.0.1:{sink}"), &args);
    wait_port(http);
    Serve {
        _daemon: daemon,
        smtp,
        http,
    }
}

fn send(port: u16, sender: &str, raw: &[u8]) {
    let reply = support::send(port, sender, RECIPIENT, raw);
    assert!(reply.starts_with("250"), "{reply}");
}

/// GET over a raw socket; returns (status, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of an unlabelled sample, or the sum of a labelled family's samples that
/// contain `label`.
fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(&format!("{name} "))
                || (l.starts_with(&format!("{name}{{")) && l.contains(label))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn report_json(db: &str, args: &[&str]) -> serde_json::Value {
    try_report_json(db, args).unwrap_or_else(|why| panic!("mailveil report failed: {why}"))
}

/// `mailveil report` as JSON, or its error (for polling: a lookup by Message-ID fails
/// until the record, written after delivery, is there).
fn try_report_json(db: &str, args: &[&str]) -> Result<serde_json::Value, String> {
    let out = Command::new(MAILVEIL)
        .args(["report", "--report-db", db, "--format", "json"])
        .args(args)
        .output()
        .expect("run mailveil report");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("report JSON"))
}

static DB_SEQ: AtomicUsize = AtomicUsize::new(0);

/// The databases to test on: an SQLite file always; a fresh Postgres database when
/// MAILVEIL_TEST_POSTGRES is set.
fn databases(dir: &std::path::Path, name: &str) -> Vec<String> {
    let mut out = vec![dir.join(format!("{name}.sqlite")).display().to_string()];
    if let Ok(url) = std::env::var("MAILVEIL_TEST_POSTGRES")
        && !url.is_empty()
    {
        out.push(fresh_postgres(&url, name));
    }
    out
}

fn fresh_postgres(url: &str, name: &str) -> String {
    let db = format!(
        "mv_{name}_{}_{}",
        std::process::id(),
        DB_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .expect("connect MAILVEIL_TEST_POSTGRES");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&pool)
            .await
            .expect("create database");
        pool.close().await;
    });
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let root = base.rsplit_once('/').map_or(base, |(r, _)| r);
    format!("{root}/{db}{query}")
}

#[test]
fn report_totals_equal_the_sum_of_per_mail_findings_and_metrics_move() {
    let dir = tempfile::tempdir().expect("tempdir");
    for db in databases(dir.path(), "serve") {
        serve_round(&db);
    }
}

fn serve_round(db: &str) {
    let fixtures = fixtures();
    let (rules, _) = mailveil::rule_files::load(&[], false);
    // What the core finds in each mail, as serve will run it.
    let mut want_blocked = 0i64;
    let mut want_findings = 0i64;
    let mut want_kinds = std::collections::BTreeMap::<String, i64>::new();
    for (sender, raw) in &fixtures {
        let env = Envelope {
            sender: Some(sender.clone()),
            recipients: vec![RECIPIENT.into()],
        };
        let c = clean(raw, &env, &Policy::default(), &rules);
        for (k, n) in c.report.counts() {
            *want_kinds.entry(k.as_str().to_string()).or_default() += n as i64;
            want_blocked += n as i64;
        }
        want_findings += (c.report.findings.len() + c.report.findings_dropped) as i64;
    }
    assert!(want_blocked > 5, "the fixtures must carry trackers");

    let sink = Sink::start();
    let s = serve(db, sink.port, &[]);
    let (status, before) = http_get(s.http, "/metrics");
    assert_eq!(status, 200, "{before}");
    let mails_before = metric(&before, "mailveil_mails_processed_total", "");
    for (sender, raw) in &fixtures {
        send(s.smtp, sender, raw);
    }
    assert_eq!(sink.count(), fixtures.len());

    // Records are written after the reply: wait for them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let r = report_json(db, &["--days", "1"]);
        if r["totals"]["mails"].as_i64() == Some(fixtures.len() as i64) {
            break r;
        }
        assert!(Instant::now() < deadline, "records did not arrive: {r}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let t = &report["totals"];
    assert_eq!(t["blocked"].as_i64(), Some(want_blocked), "{report}");
    assert_eq!(t["findings"].as_i64(), Some(want_findings), "{report}");
    let kinds: std::collections::BTreeMap<String, i64> =
        serde_json::from_value(t["by_kind"].clone()).expect("by_kind");
    assert_eq!(kinds, want_kinds);
    // The per-mail reports add up to the totals too.
    let mut per_mail_blocked = 0;
    for id in [
        "6f1e2d3c4b5a.4a5b6c7d8e.20261129070001@mail190.suw13.mcdlv.net",
        "<second-newsletter@mail190.suw13.mcdlv.net>",
        "plain-1@friends.example",
        "pixel-1@shop.example",
    ] {
        let mails = report_json(db, &["--message-id", id]);
        let mails = mails.as_array().expect("array");
        assert_eq!(mails.len(), 1, "{id}");
        per_mail_blocked += mails[0]["blocked"].as_i64().expect("blocked");
        for f in mails[0]["findings"].as_array().expect("findings") {
            if let Some(url) = f["url"].as_str() {
                assert!(!url.contains('?'), "a stored URL kept its query: {url}");
            }
        }
    }
    assert_eq!(per_mail_blocked, want_blocked);
    let days = report["per_day"].as_array().expect("per_day");
    assert_eq!(
        days.iter()
            .map(|d| d["blocked"].as_i64().unwrap_or(0))
            .sum::<i64>(),
        want_blocked
    );
    let senders = report["top_senders"].as_array().expect("top_senders");
    assert_eq!(senders[0]["name"], "gardenletter.example", "{report}");

    let (_, after) = http_get(s.http, "/metrics");
    let moved = metric(&after, "mailveil_mails_processed_total", "") - mails_before;
    assert!(
        moved >= fixtures.len() as f64,
        "mails counter moved {moved}:\n{after}"
    );
    assert!(
        metric(&after, "mailveil_findings_total", "kind=\"pixel\"") >= 1.0,
        "{after}"
    );
    assert!(
        metric(&after, "mailveil_downstream_replies_total", "class=\"2xx\"")
            >= fixtures.len() as f64,
        "{after}"
    );
    assert!(after.contains("mailveil_clean_seconds_bucket"), "{after}");
    assert!(after.contains("mailveil_proxy_cache_hits_total"), "{after}");

    let (status, page) = http_get(s.http, "/dashboard?q=shop.example");
    assert_eq!(status, 200);
    assert!(
        page.contains("news@shop.example"),
        "search must find the mail"
    );
    assert!(
        !page.contains("friend@friends.example"),
        "search must filter"
    );
    assert!(page.contains("<svg id=\"chart\""));
}

fn record_at(time: i64, sender: &str) -> MailRecord {
    MailRecord {
        time,
        sender: sender.into(),
        sender_domain: sender.rsplit('@').next().unwrap_or("").into(),
        recipient: RECIPIENT.into(),
        size: 100,
        trackers: vec!["Mailchimp".into()],
        findings_total: 1,
        blocked: 1,
        findings: vec![StoredFinding {
            kind: "pixel".into(),
            part: "1".into(),
            location: "img@src".into(),
            url: Some("https://t.example/o.gif?e=reader%40mailveil.test".into()),
            rule: "r".into(),
            tracker: Some("Mailchimp".into()),
            action: "strip".into(),
        }],
        ..MailRecord::default()
    }
}

#[test]
fn retention_deletes_old_rows_and_urls_lose_their_queries() {
    let dir = tempfile::tempdir().expect("tempdir");
    for db in databases(dir.path(), "retention") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let s = store::open(&db, false).await.expect("open store");
            let now = store::now();
            s.record(&record_at(now - 100 * 86_400, "old@old.example"))
                .await
                .expect("record");
            s.record(&record_at(now - 10, "new@new.example"))
                .await
                .expect("record");
            let all = s.summary(0, now + 1, 10).await.expect("summary");
            assert_eq!(all.totals.mails, 2);
            let gone = s.purge(now - 90 * 86_400).await.expect("purge");
            assert_eq!(gone, 1);
            let left = s.summary(0, now + 1, 10).await.expect("summary");
            assert_eq!(left.totals.mails, 1);
            assert_eq!(left.totals.blocked, 1);
            assert!(
                s.recent("old.example", 10)
                    .await
                    .expect("recent")
                    .is_empty()
            );
            let new = s.recent("NEW@", 10).await.expect("recent");
            assert_eq!(new.len(), 1);
            assert_eq!(new[0].findings.len(), 1);
            assert_eq!(
                new[0].findings[0].url.as_deref(),
                Some("https://t.example/o.gif")
            );
            // LIKE wildcards in a search are taken literally.
            assert!(s.recent("%", 10).await.expect("recent").is_empty());
        });
    }
}

#[test]
fn serve_purges_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("start.sqlite").display().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let s = store::open(&db, false).await.expect("open");
        s.record(&record_at(store::now() - 10 * 86_400, "old@old.example"))
            .await
            .expect("record");
    });
    let sink = Sink::start();
    let _s = serve(&db, sink.port, &["--retention-days", "5"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = report_json(&db, &["--days", "30"]);
        if r["totals"]["mails"].as_i64() == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "old row not purged: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `mails` and `findings` tables as version 1 of the store created them (before
/// issue 15 added `from_domain`): a database written by an older mailveil.
const SCHEMA_V1: &str = "CREATE TABLE mails (id {ID}, ts BIGINT NOT NULL, message_id TEXT, \
sender TEXT NOT NULL, sender_domain TEXT NOT NULL, recipient TEXT NOT NULL, subject_hash TEXT, \
size BIGINT NOT NULL, trackers TEXT NOT NULL, findings BIGINT NOT NULL, blocked BIGINT NOT NULL, \
error TEXT, skipped TEXT, changed BIGINT NOT NULL, downstream BIGINT, elapsed_ms BIGINT NOT NULL);\
CREATE TABLE findings (mail_id BIGINT NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL, \
part TEXT NOT NULL, location TEXT NOT NULL, url TEXT, rule TEXT NOT NULL, tracker TEXT, \
action TEXT NOT NULL);\
CREATE INDEX mails_ts ON mails (ts);\
CREATE INDEX mails_message_id ON mails (message_id);\
CREATE INDEX findings_mail ON findings (mail_id);\
CREATE TABLE mailveil_schema (version BIGINT NOT NULL);\
INSERT INTO mailveil_schema (version) VALUES (1)";

/// Creates the version-1 store at `db` holding one mail of `ts`, sent by an ESP's bounce
/// address.
async fn old_store(db: &str, ts: i64) {
    sqlx::any::install_default_drivers();
    let (url, id) = if db.starts_with("postgres") {
        (db.to_string(), "BIGSERIAL PRIMARY KEY")
    } else {
        (
            format!("sqlite://{db}?mode=rwc"),
            "INTEGER PRIMARY KEY AUTOINCREMENT",
        )
    };
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect");
    for statement in SCHEMA_V1.replace("{ID}", id).split(';') {
        sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&pool)
            .await
            .expect(statement);
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO mails (ts, message_id, sender, sender_domain, recipient, size, trackers, \
         findings, blocked, changed, elapsed_ms) VALUES ({ts}, 'old-1@shop.example', \
         'bounce@mail1.esp.example', 'mail1.esp.example', 'reader@mailveil.test', 10, \
         'Mailchimp', 2, 2, 1, 1)"
    )))
    .execute(&pool)
    .await
    .expect("old row");
    pool.close().await;
}

/// Issue 15: the store gained a column (the From: domain). A database an older version
/// wrote opens, keeps its rows (grouped by the envelope sender's domain, all they have),
/// and takes new ones, grouped by the registrable domain of From:.
#[test]
fn a_store_of_the_old_schema_opens_keeps_its_rows_and_groups_new_ones_by_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    for db in databases(dir.path(), "migrate") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let now = store::now();
            old_store(&db, now - 60).await;
            let s = store::open(&db, false).await.expect("open an old store");
            let old = s.by_message_id("old-1@shop.example").await.expect("read");
            assert_eq!(old.len(), 1);
            assert_eq!(old[0].sender_domain, "mail1.esp.example");
            assert_eq!(old[0].from_domain, None);

            let raw = b"From: Shop <news@news.shop.example.co.uk>\r\n\
Message-ID: <new-1@shop.example>\r\n\r\nbody";
            let env = Envelope {
                sender: Some("bounce-7@mail1.esp.example".into()),
                recipients: vec![RECIPIENT.into()],
            };
            let mut new = MailRecord::from_report(
                &mailveil::Report::default(),
                &env,
                raw,
                now - 30,
                1,
                false,
            );
            new.blocked = 3;
            s.record(&new).await.expect("record in the migrated store");
            let back = s.by_message_id("new-1@shop.example").await.expect("read");
            assert_eq!(back[0].from_domain.as_deref(), Some("example.co.uk"));

            let sum = s.summary(now - 3600, now + 1, 10).await.expect("summary");
            let senders: Vec<(&str, i64)> = sum
                .top_senders
                .iter()
                .map(|r| (r.name.as_str(), r.blocked))
                .collect();
            assert_eq!(
                senders,
                [("example.co.uk", 3), ("mail1.esp.example", 2)],
                "{sum:?}"
            );
            // Searching by the From: domain finds the mail.
            let found = s.recent("example.co.uk", 10).await.expect("recent");
            assert_eq!(found.len(), 1);
            drop(s);
            // Opening again migrates nothing twice.
            let again = store::open(&db, false).await.expect("reopen");
            assert_eq!(
                again
                    .summary(now - 3600, now + 1, 10)
                    .await
                    .expect("summary")
                    .totals
                    .mails,
                2
            );
        });
    }
}

fn banner_count(raw: &[u8]) -> usize {
    let msg = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("parse");
    msg.html_bodies()
        .filter_map(|p| p.text_contents())
        .map(|t| t.matches("data-mailveil-banner").count())
        .sum()
}

#[test]
fn banner_on_off_and_once() {
    let (rules, _) = mailveil::rule_files::load(&[], false);
    let env = Envelope {
        sender: None,
        recipients: vec![RECIPIENT.into()],
    };
    let on = Policy {
        banner: true,
        ..Policy::default()
    };
    for (_, raw) in fixtures() {
        let off = clean(&raw, &env, &Policy::default(), &rules);
        assert_eq!(banner_count(&off.bytes), 0, "banner while off");
    }
    let raw = NEWSLETTER.as_bytes();
    let first = clean(raw, &env, &on, &rules);
    assert_eq!(banner_count(&first.bytes), 1);
    let html: String = mail_parser::MessageParser::default()
        .parse(&first.bytes[..])
        .and_then(|m| m.body_html(0).map(|h| h.into_owned()))
        .expect("html");
    // Issue 15: inside the layout, right before its 600 px table, and as wide.
    assert!(
        html.contains(
            "<div data-mailveil-banner=\"1\" role=\"note\" lang=\"en\" \
style=\"max-width:600px;margin:0 auto 12px auto;box-sizing:border-box;"
        ) && html.contains("</div><table class=\"hero\" width=\"600\""),
        "the note goes right before the layout table: {html}"
    );
    assert!(
        html.contains("mailveil removed 4 trackers (Email on Acid, Twilio SendGrid, Mailchimp)"),
        "{html}"
    );
    let second = clean(&first.bytes, &env, &on, &rules);
    assert_eq!(
        banner_count(&second.bytes),
        1,
        "a second pass adds no banner"
    );
    assert_eq!(
        second.bytes, first.bytes,
        "cleaning with a banner stays idempotent"
    );
    // German from Content-Language.
    let (_, de) = &fixtures()[3];
    let c = clean(de, &env, &on, &rules);
    let text = String::from_utf8_lossy(&c.bytes);
    assert!(text.contains("entfernt"), "{text}");
    // A mail with nothing to say gets no note.
    let (_, plain) = &fixtures()[2];
    assert_eq!(banner_count(&clean(plain, &env, &on, &rules).bytes), 0);
}

/// The banner fixtures: an HTML mail of their markup, and the selector of the mail's
/// own layout container. Written for these tests after the two layouts most
/// newsletters use: a 600 px table centred in a 100% wide one (Mailchimp's classic
/// templates), and a `max-width:640px` div centred with `margin:0 auto` (MJML).
fn layout_fixtures() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mail = |html: &str| {
        format!(
            "From: Shop <news@news.shop.example>\r\nTo: {RECIPIENT}\r\nSubject: sale\r\n\
Message-ID: <layout@shop.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n{html}"
        )
        .into_bytes()
    };
    vec![
        (
            "table-600",
            mail(include_str!("fixtures/banner/table-600.html")),
            "#templateContainer",
        ),
        (
            "div-640",
            mail(include_str!("fixtures/banner/div-640.html")),
            "div.content",
        ),
        ("newsletter", NEWSLETTER.as_bytes().to_vec(), "table.hero"),
    ]
}

fn banner_text(raw: &[u8]) -> String {
    let html = browser_support::html_parts(raw).expect("parse")[0].clone();
    let start = html.find("data-mailveil-banner").expect("a banner");
    let text = &html[start..];
    let text = &text[text.find('>').expect("tag end") + 1..];
    text[..text.find("</div>").expect("end")].to_string()
}

/// Issue 15: a link unwrapped and then cleaned of its parameters gives two findings and
/// was counted twice ("cleaned 4 links" for three). Each link is counted once.
#[test]
fn the_banner_counts_each_link_once() {
    let (rules, _) = mailveil::rule_files::load(&[], false);
    let env = Envelope::to([RECIPIENT]);
    let on = Policy {
        banner: true,
        ..Policy::default()
    };
    let (_, raw, _) = &layout_fixtures()[0];
    let c = clean(raw, &env, &on, &rules);
    let mut links: Vec<(&str, &str)> = c
        .report
        .findings
        .iter()
        .filter(|f| f.location.to_string() == "a@href")
        .map(|f| (f.kind.as_str(), f.action.as_str()))
        .collect();
    links.sort();
    // Seeds: unwrapped and cleaned; Tools: cleaned; About us: unwrapped. Four findings,
    // three links.
    assert_eq!(
        links,
        [
            ("click-redirect", "unwrap"),
            ("click-redirect", "unwrap"),
            ("tracking-param", "clean"),
            ("tracking-param", "clean")
        ],
        "{:?}",
        c.report.findings
    );
    assert_eq!(
        banner_text(&c.bytes),
        "mailveil removed 1 tracker and cleaned 3 links"
    );
    let (_, raw, _) = &layout_fixtures()[1];
    let c = clean(raw, &env, &on, &rules);
    assert_eq!(
        banner_text(&c.bytes),
        "mailveil removed 1 tracker and cleaned 2 links"
    );
}

/// Issue 15: the note spanned the window above a 600 px newsletter. In Chromium, at a
/// desktop and a narrow window it is exactly as wide as the mail's layout container and
/// starts where it starts; on a phone it is no wider. A second pass adds nothing.
#[test]
fn the_banner_is_no_wider_than_the_mail_in_chromium() {
    let (rules, _) = mailveil::rule_files::load(&[], false);
    let env = Envelope::to([RECIPIENT]);
    let on = Policy {
        banner: true,
        ..Policy::default()
    };
    let dir = out_dir("banner-width");
    for (name, raw, selector) in layout_fixtures() {
        let first = clean(&raw, &env, &on, &rules);
        let second = clean(&first.bytes, &env, &on, &rules);
        assert_eq!(second.bytes, first.bytes, "{name}: idempotent");
        let html = browser_support::html_parts(&first.bytes).expect("parse")[0].clone();
        let file = browser_support::write_html(&dir, &format!("{name}.html"), &html);
        let shot = dir.join(format!("{name}.png"));
        let Some(v) = dashboard_js(
            "banner width in Chromium",
            &[
                "--banner-width",
                file.to_str().expect("utf-8 path"),
                shot.to_str().expect("utf-8 path"),
                selector,
            ],
        ) else {
            return;
        };
        assert!(v.get("error").is_none(), "{name}: {v}");
        for w in v["widths"].as_array().expect("widths") {
            let num = |k: &str, f: &str| w[k][f].as_f64().unwrap_or(f64::NAN);
            let (bw, cw) = (num("banner", "width"), num("content", "width"));
            let (bx, cx) = (num("banner", "x"), num("content", "x"));
            eprintln!(
                "{name} at {} px: banner {bw} px at x={bx}, content {cw} px at x={cx}",
                w["viewport"]
            );
            assert_eq!(w["banners"], 1, "{name}: {w}");
            // Inside the content's box (its own border of a pixel or two aside)...
            assert!(
                bx >= cx - 0.5,
                "{name}: the note starts left of the mail: {w}"
            );
            assert!(
                bx + bw <= cx + cw + 0.5,
                "{name}: the note ends right of the mail: {w}"
            );
            // ...and, where the window is wider than the mail, as wide as it.
            if w["viewport"].as_i64() != Some(375) {
                assert!(bw >= cw - 2.5, "{name}: narrower than the mail: {w}");
            }
            assert!(
                num("banner", "y") <= num("content", "y"),
                "{name}: above it: {w}"
            );
        }
    }
}

/// Runs tests/browser/dashboard.js with the harness's node and Chromium; `None` after a
/// SKIP notice when there is no browser (a failure under MAILVEIL_REQUIRE_BROWSER=1).
fn dashboard_js(what: &str, args: &[&str]) -> Option<serde_json::Value> {
    browser_support::Harness::or_skip(what)?;
    let script = browser_support::repo_root().join("tests/browser/dashboard.js");
    let out = Command::new("node")
        .arg(&script)
        .args(args)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "dashboard.js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("dashboard.js JSON"))
}

fn out_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("output dir");
    dir
}

#[test]
fn dashboard_in_chromium_shows_data_searches_and_stays_on_its_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("browser.sqlite").display().to_string();
    let sink = Sink::start();
    let s = serve(&db, sink.port, &[]);
    let fixtures = fixtures();
    for (sender, raw) in &fixtures {
        send(s.smtp, sender, raw);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while report_json(&db, &["--days", "1"])["totals"]["mails"].as_i64()
        != Some(fixtures.len() as i64)
    {
        assert!(Instant::now() < deadline, "records did not arrive");
        std::thread::sleep(Duration::from_millis(100));
    }
    let shot = out_dir("dashboard").join("dashboard.png");
    let url = format!("http://127.0.0.1:{}/dashboard", s.http);
    let Some(v) = dashboard_js(
        "dashboard in Chromium",
        &[&url, shot.to_str().expect("utf-8 path"), "news@shop"],
    ) else {
        return;
    };
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["chart"]["visible"], true, "{v}");
    assert!(v["chart"]["width"].as_f64().unwrap_or(0.0) > 300.0, "{v}");
    assert_eq!(v["chart"]["bars"], 30, "{v}");
    assert!(
        v["chart"]["tallBars"].as_i64().unwrap_or(0) >= 1,
        "today's bar: {v}"
    );
    // Issue 15: the chart says what it counts, as "blocked" is defined, and shows the
    // part of known trackers.
    assert_eq!(v["chart"]["heading"], "Findings blocked per day", "{v}");
    let legend = v["chart"]["legend"].as_str().unwrap_or("");
    assert!(
        legend.contains("findings blocked: tracking pixels")
            && legend.contains("from a known tracker or ESP"),
        "{v}"
    );
    assert!(
        v["chart"]["axis"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t == "findings blocked")),
        "{v}"
    );
    assert!(
        v["chart"]["knownBars"].as_i64().unwrap_or(0) >= 1,
        "today's known trackers: {v}"
    );
    assert_eq!(v["rows"].as_u64(), Some(fixtures.len() as u64), "{v}");
    assert_eq!(v["search"]["rows"], 1, "{v}");
    let text = v["search"]["text"].as_str().unwrap_or("");
    assert!(text.contains("news@shop.example"), "{v}");
    assert!(
        v["foreign"].as_array().is_some_and(|f| f.is_empty()),
        "requests off the origin: {v}"
    );
    assert!(shot.is_file(), "no screenshot at {}", shot.display());
    eprintln!("dashboard screenshot: {}", shot.display());
}

#[test]
fn banner_renders_in_chromium() {
    let (rules, _) = mailveil::rule_files::load(&[], false);
    let env = Envelope {
        sender: None,
        recipients: vec![RECIPIENT.into()],
    };
    let on = Policy {
        banner: true,
        ..Policy::default()
    };
    let cleaned = clean(NEWSLETTER.as_bytes(), &env, &on, &rules);
    let html = browser_support::html_parts(&cleaned.bytes).expect("parse")[0].clone();
    let dir = out_dir("banner");
    let file = browser_support::write_html(&dir, "newsletter-banner.html", &html);
    let shot = dir.join("banner.png");
    let Some(v) = dashboard_js(
        "banner in Chromium",
        &[
            "--banner",
            file.to_str().expect("utf-8 path"),
            shot.to_str().expect("utf-8 path"),
        ],
    ) else {
        return;
    };
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["banners"], 1, "{v}");
    for scheme in ["light", "dark"] {
        let b = &v[scheme];
        assert_eq!(b["visible"], true, "{v}");
        assert_eq!(b["role"], "note", "{v}");
        assert!(
            b["text"]
                .as_str()
                .unwrap_or("")
                .starts_with("mailveil removed 4 trackers"),
            "{v}"
        );
        assert!(
            b["top"].as_f64().unwrap_or(-1.0) < 40.0,
            "the note is at the top: {v}"
        );
        let ratio = contrast(
            b["color"].as_str().unwrap_or(""),
            b["background"].as_str().unwrap_or(""),
        );
        assert!(ratio >= 4.5, "contrast {ratio:.1} in {scheme}: {v}");
    }
}

/// WCAG contrast ratio of two `rgb(r, g, b)` / `rgba(...)` colours (0 if unparsable).
fn contrast(a: &str, b: &str) -> f64 {
    fn lum(c: &str) -> Option<f64> {
        let inner = c.split_once('(')?.1.trim_end_matches(')');
        let v: Vec<f64> = inner
            .split(',')
            .take(3)
            .map(|x| x.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .ok()?;
        let ch = |x: f64| {
            let x = x / 255.0;
            if x <= 0.03928 {
                x / 12.92
            } else {
                ((x + 0.055) / 1.055).powf(2.4)
            }
        };
        Some(0.2126 * ch(v[0]) + 0.7152 * ch(v[1]) + 0.0722 * ch(v[2]))
    }
    match (lum(a), lum(b)) {
        (Some(x), Some(y)) => (x.max(y) + 0.05) / (x.min(y) + 0.05),
        _ => 0.0,
    }
}

#[test]
fn filter_records_and_the_standalone_dashboard_shows_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("filter.sqlite").display().to_string();
    for (_, raw) in fixtures() {
        let mut child = Command::new(MAILVEIL)
            .args(["filter", "--no-system-rules", "--recipient", RECIPIENT])
            .args(["--report-db", &db])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn filter");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&raw)
            .expect("write mail");
        let out = child.wait_with_output().expect("filter");
        assert!(out.status.success());
        assert!(!out.stdout.is_empty());
    }
    let r = report_json(&db, &["--days", "1"]);
    assert_eq!(r["totals"]["mails"], 4, "{r}");
    // Without an envelope, the sender comes from Return-Path (the ESP's bounce host);
    // the senders that track are named by From: all the same (issue 15).
    assert_eq!(r["top_senders"][0]["name"], "gardenletter.example", "{r}");
    let csv = Command::new(MAILVEIL)
        .args(["report", "--report-db", &db, "--format", "csv"])
        .output()
        .expect("report csv");
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert!(
        csv.starts_with("section,name,mails,blocked,trackers\ntotal,all,4,"),
        "{csv}"
    );

    let port = free_port();
    let mut child = Command::new(MAILVEIL)
        .args(["dashboard", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--report-db", &db])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dashboard");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "dashboard did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, page) = http_get(port, "/dashboard?q=friends");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
    assert!(page.contains("friend@friends.example"), "{page}");
    assert!(page.contains("<b>4</b>mails"), "{page}");
}

/// Issue 14: `mailveil_proxy_fetches_total` and `..._cache_hits_total` were declared
/// but never counted; and a proxy URL in a mail was stored as its own host and path,
/// which hold the signature and the destination with its query, base64-encoded.
#[test]
fn proxy_fetches_and_cache_hits_are_counted_and_proxy_urls_are_stored_as_what_they_carry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("proxy.key");
    let key = "reports test key, 32 bytes long.";
    std::fs::write(&key_file, key).expect("key");
    for (n, db) in databases(dir.path(), "proxy").into_iter().enumerate() {
        let esp = Esp::start();
        let sink = Sink::start();
        let proxy_port = free_port();
        let origin = format!("http://127.0.0.1:{proxy_port}");
        let cache = dir.path().join(format!("cache-{n}"));
        let s = serve(
            &db,
            sink.port,
            &[
                "--remote-content",
                "prefetch",
                "--proxy-listen",
                &format!("127.0.0.1:{proxy_port}"),
                "--proxy-base",
                &origin,
                "--proxy-key-file",
                &key_file.display().to_string(),
                "--proxy-allow-net",
                "127.0.0.0/8",
                "--proxy-cache-dir",
                &cache.display().to_string(),
            ],
        );
        let (_, before) = http_get(s.http, "/metrics");
        let fetched_before = metric(&before, "mailveil_proxy_fetches_total", "outcome=\"ok\"");
        let hits_before = metric(&before, "mailveil_proxy_cache_hits_total", "");
        // A URL that names the reader, signed by this installation for someone else.
        let tracker = esp.url(&format!("/img/t.png?e={RECIPIENT}"));
        let minted = mailveil::proxy_url::proxied(
            &mailveil::ProxyConfig::new(&origin, key.as_bytes().to_vec()),
            mailveil::ProxyKind::Image,
            &tracker,
        );
        let raw = format!(
            "From: Shop <news@shop.example>\r\nTo: {RECIPIENT}\r\nSubject: p\r\n\
Message-ID: <proxied-1@shop.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n<html><body>\
<img src=\"{}\" width=\"600\" height=\"200\" alt=\"a\">\
<img src=\"{minted}\" width=\"600\" height=\"200\" alt=\"t\"></body></html>\r\n",
            esp.url("/img/a.png")
        );
        send(s.smtp, "news@shop.example", raw.as_bytes());
        let delivered = sink.texts()[0].clone();
        let at = delivered
            .find(&format!("{origin}/i/"))
            .expect("a.png proxied");
        let signed = &delivered[at..at + delivered[at..].find('"').expect("quote")];
        for _ in 0..2 {
            let path = &signed[origin.len()..];
            assert_eq!(http_get(proxy_port, path).0, 200, "{signed}");
        }
        let (_, after) = http_get(s.http, "/metrics");
        let fetched = metric(&after, "mailveil_proxy_fetches_total", "outcome=\"ok\"");
        let hits = metric(&after, "mailveil_proxy_cache_hits_total", "");
        assert!(
            fetched - fetched_before >= 1.0,
            "fetches not counted:\n{after}"
        );
        assert!(
            hits - hits_before >= 2.0,
            "cache hits not counted:\n{after}"
        );

        let deadline = Instant::now() + Duration::from_secs(30);
        let mails = loop {
            // Records are written after the reply: until then the lookup fails.
            let r = try_report_json(&db, &["--message-id", "proxied-1@shop.example"]);
            if let Ok(r) = &r
                && r.as_array().is_some_and(|a| !a.is_empty())
            {
                break r.clone();
            }
            assert!(Instant::now() < deadline, "no record: {r:?}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let urls: Vec<String> = mails[0]["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter_map(|f| f["url"].as_str().map(str::to_string))
            .collect();
        let enc = mailveil::proxy_url::encode_url(&tracker);
        for u in &urls {
            assert!(!u.starts_with(&origin), "a proxy URL was stored: {u}");
            assert!(!u.contains('?') && !u.contains(&enc[..20]), "{u}");
        }
        assert!(urls.contains(&esp.url("/img/t.png")), "{urls:?}");
        drop(s);
    }
}
