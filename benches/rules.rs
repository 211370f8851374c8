//! URL classification throughput with the full shipped rule set against a single rule, in
//! one run: all patterns are compiled into regex sets, so the full set must cost a small
//! factor of one rule, not a hundred times more.
//!
//! `cargo bench --bench rules`. Prints URLs/s for both and the ratio, and what loading
//! the shipped rules costs (every `mailveil filter` process pays it at start): as a
//! process loads them (from the postcard the build made of them), compiled from their TOML,
//! and the TOML parse alone, medians of 21.

use mailveil::rules::schema::RuleFile;
use mailveil::{RuleSource, Rules, rule_files};
use std::time::{Duration, Instant};

const ONE_RULE: &str = "[[tracker]]\nid = \"t\"\nname = \"T\"\ncategory = \"esp\"\nsource = \"bench\"\n\n\
[[pixel]]\nid = \"t-open\"\ntracker = \"t\"\nhost = \"list-manage.com\"\npath = \"/track/open.php\"\nsource = \"bench\"\n\n\
[[redirect]]\nid = \"t-click\"\ntracker = \"t\"\nhost = \"list-manage.com\"\npath = \"/track/click\"\nopaque = true\nsource = \"bench\"\n\n\
[[param]]\nid = \"t-utm\"\nnames = [\"utm_*\"]\nclass = \"campaign\"\nsource = \"bench\"\n";

/// A mix of URLs as newsletters carry them: trackers, wrappers, content, plain links.
fn urls() -> Vec<(String, String, Vec<String>)> {
    let hosts = [
        "news.us3.list-manage.com",
        "u1234.ct.sendgrid.net",
        "trk.klclick.com",
        "email.mg.news.example",
        "x9.emltrk.com",
        "cdn.shop.example",
        "www.example.com",
        "images.news.example",
        "click.convertkit-mail4.com",
        "www.google.com",
        "eur01.safelinks.protection.outlook.com",
        "link.news.example",
        "r.email.shop.example",
        "static.content.example",
    ];
    let paths = [
        "/track/open.php?u=1&id=2&e=3",
        "/wf/open?upn=abc",
        "/ls/click?upn=def",
        "/c/eJxabc",
        "/v2/x9?d=4",
        "/img/hero.jpg",
        "/news/story?id=42&utm_source=n&utm_medium=e",
        "/logo.png",
        "/abc/def/aHR0cHM6Ly9leGFtcGxlLmNvbQ==",
        "/url?q=https://example.com/&sa=D",
        "/?url=https%3A%2F%2Fexample.com%2F&data=05",
        "/click/1.2/aHR0cHM6/x",
        "/tr/cl/abc",
        "/css/main.css",
    ];
    let mut out = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        for (j, p) in paths.iter().enumerate() {
            let names: Vec<String> = p
                .split_once('?')
                .map(|(_, q)| {
                    q.split('&')
                        .map(|kv| kv.split('=').next().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                h.to_string(),
                format!("{p}&n={i}{j}").replacen('&', "?", usize::from(!p.contains('?'))),
                names,
            ));
        }
    }
    out
}

fn classify(rules: &Rules, set: &[(String, String, Vec<String>)]) -> usize {
    let mut hits = 0;
    for (host, path, names) in set {
        hits += usize::from(rules.match_pixel(host, path).is_some());
        hits += rules.match_redirect(host, path).len();
        for n in names {
            hits += rules.match_params_at(host, path, n).count();
        }
    }
    hits
}

fn rate(rules: &Rules, set: &[(String, String, Vec<String>)]) -> f64 {
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        std::hint::black_box(classify(rules, set));
        rounds += 1;
    }
    (rounds as f64 * set.len() as f64) / start.elapsed().as_secs_f64()
}

/// Median milliseconds of 21 runs of `f`.
fn median_ms<T>(mut f: impl FnMut() -> T) -> f64 {
    let mut ms: Vec<f64> = (0..21)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn main() {
    let load_ms = median_ms(|| rule_files::load(&[], false));
    println!("load the shipped rules as a process does: {load_ms:.2} ms");
    let sources = rule_files::shipped();
    let compile_ms = median_ms(|| Rules::compile(&sources).unwrap());
    let parse_ms = median_ms(|| {
        sources
            .iter()
            .map(|s| toml::from_str::<RuleFile>(&s.text).unwrap())
            .collect::<Vec<_>>()
    });
    println!("compile the shipped rules: {compile_ms:.2} ms (TOML parse alone: {parse_ms:.2} ms)");
    let first_use_ms = median_ms(|| {
        let rules = Rules::compile(&sources).unwrap();
        let set = urls();
        classify(&rules, &set[..1])
    });
    println!("compile and classify one URL: {first_use_ms:.2} ms");
    let (full, _) = rule_files::load(&[], false);
    let one = Rules::compile(&[RuleSource {
        name: "one.toml".into(),
        text: ONE_RULE.into(),
    }])
    .unwrap();
    let set = urls();
    let (t, p, r, q) = full.stats();
    println!(
        "{} URLs; full set: {t} trackers, {p} pixel, {r} redirect, {q} param rules",
        set.len()
    );
    let full_rate = rate(&full, &set);
    let one_rate = rate(&one, &set);
    println!("full rule set:  {:>12.0} URLs/s", full_rate);
    println!("single rule:    {:>12.0} URLs/s", one_rate);
    println!("ratio full/single: {:.2}", full_rate / one_rate);
}
