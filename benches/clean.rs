//! Throughput of `clean()` against the limits of a streaming rewrite, measured in the same
//! run over the same decoded HTML parts: a bare lol_html pass with one no-op element
//! handler, and the floor of issue 17, one pass that reads every attribute of every
//! element and the text of every `<style>` and changes nothing.
//!
//! `cargo bench --bench clean [-- DIR]`: the project's fixtures, plus the mails of DIR
//! (default ../shared/corpus/real) read in place when it exists. Prints MB/s, mails/s and
//! the ratios, and `clean()` on one thread per core (what a daemon gets from the
//! machine). `BENCH_ONLY=clean` times `clean()` alone on one thread (for a profiler);
//! `BENCH_ONLY=once` cleans each mail exactly once and prints nothing else, for an
//! instruction count under callgrind (deterministic where timings are not);
//! `BENCH_ONLY=floor` runs the floor pass once over each HTML part and nothing else, so
//! that callgrind gives the floor's instructions (`--toggle-collect=clean::inspect_everything`)
//! to set against `clean()`'s (`--toggle-collect=mailveil_core::clean` under `once`; exact
//! names: a pattern that also matched the functions inside would toggle counting off
//! again): clean/floor in instructions, a ratio that does not move with the host's speed
//! (see docs/performance.md). Figures, not assertions: this machine is shared and noisy.

use mail_parser::{MessageParser, MimeHeaders, PartType};
use mailveil::{Envelope, Policy, clean, rule_files};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The allocator the `mailveil` binary uses (src/main.rs), so that the bench times what runs.
#[global_allocator]
static ALLOC: allocator::Allocator = allocator::Allocator {};

#[path = "../src/allocator.rs"]
mod allocator;

fn mails(dirs: &[PathBuf]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        paths.sort();
        out.extend(paths.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    out
}

/// The decoded text/html parts of a mail.
fn html_parts(raw: &[u8]) -> Vec<Vec<u8>> {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    msg.parts
        .iter()
        .filter(|p| {
            p.content_type()
                .is_some_and(|c| c.subtype() == Some("html"))
        })
        .filter_map(|p| match &p.body {
            PartType::Html(h) => Some(h.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

fn bare_lol_html(html: &[u8]) -> usize {
    let mut n = 0usize;
    let mut out_len = 0usize;
    let settings =
        lol_html::Settings::new().append_element_content_handler(lol_html::element!("*", |_el| {
            n += 1;
            Ok(())
        }));
    let mut rw = lol_html::HtmlRewriter::new(settings, |c: &[u8]| out_len += c.len());
    rw.write(html).unwrap();
    rw.end().unwrap();
    out_len
}

/// The floor: every attribute of every element read (name and value), every `<style>`
/// text chunk read, nothing changed. What any filter that looks at everything pays.
/// Never inlined: callgrind counts it by its name (`BENCH_ONLY=floor`).
#[inline(never)]
fn inspect_everything(html: &[u8]) -> usize {
    let seen = std::cell::Cell::new(0usize);
    let mut out_len = 0usize;
    let settings = lol_html::Settings::new()
        .append_element_content_handler(lol_html::element!("*", |el| {
            for a in el.attributes() {
                seen.set(seen.get() + a.name().len() + a.value().len());
            }
            Ok(())
        }))
        .append_element_content_handler(lol_html::text!("style", |t| {
            seen.set(seen.get() + t.as_str().len());
            Ok(())
        }));
    let mut rw = lol_html::HtmlRewriter::new(settings, |c: &[u8]| out_len += c.len());
    rw.write(html).unwrap();
    rw.end().unwrap();
    seen.get() + out_len
}

/// Runs `f` over the set until at least `min` has passed; returns seconds per round.
fn time<F: FnMut()>(mut f: F, min: Duration) -> f64 {
    f();
    let start = Instant::now();
    let mut rounds = 0u32;
    while start.elapsed() < min {
        f();
        rounds += 1;
    }
    start.elapsed().as_secs_f64() / f64::from(rounds)
}

fn main() {
    allocator::configure();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| here.join("../shared/corpus/real"));
    let sets = [
        ("fixtures", vec![here.join("tests/fixtures")]),
        ("corpus", vec![corpus]),
    ];
    let (rules, _) = rule_files::load(&[], false);
    let envelope = Envelope::to(["reader@example.org"]);
    let policy = Policy::default();
    for (name, dirs) in sets {
        let set = mails(&dirs);
        if set.is_empty() {
            println!("{name}: no mails");
            continue;
        }
        if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "once") {
            let findings: usize = set
                .iter()
                .map(|m| clean(m, &envelope, &policy, &rules).report.findings.len())
                .sum();
            println!(
                "{name}: {} mails cleaned once, {findings} findings",
                set.len()
            );
            continue;
        }
        // (After the `once` run: parsing every mail for its HTML is no part of it.)
        let html: Vec<Vec<u8>> = set.iter().flat_map(|m| html_parts(m)).collect();
        if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "floor") {
            let seen: usize = html.iter().map(|h| inspect_everything(h)).sum();
            println!(
                "{name}: {} HTML parts read once by the floor pass, {seen} bytes",
                html.len()
            );
            continue;
        }
        let mail_bytes: usize = set.iter().map(Vec::len).sum();
        let html_bytes: usize = html.iter().map(Vec::len).sum();
        let t_clean = time(
            || {
                for m in &set {
                    std::hint::black_box(clean(m, &envelope, &policy, &rules));
                }
            },
            Duration::from_secs(3),
        );
        if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "clean") {
            println!("{name}: clean() {:.1} mails/s", set.len() as f64 / t_clean);
            continue;
        }
        // What a daemon does with every core: one thread per core, each cleaning the
        // whole set over and over (serve and the milter clean on the blocking pool).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let t_parallel = std::thread::scope(|scope| {
            let runs: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        time(
                            || {
                                for m in &set {
                                    std::hint::black_box(clean(m, &envelope, &policy, &rules));
                                }
                            },
                            Duration::from_secs(3),
                        )
                    })
                })
                .collect();
            let per_round: Vec<f64> = runs.into_iter().map(|r| r.join().unwrap()).collect();
            // seconds per round for all threads together
            1.0 / per_round.iter().map(|t| 1.0 / t).sum::<f64>()
        });
        let t_bare = time(
            || {
                for h in &html {
                    std::hint::black_box(bare_lol_html(h));
                }
            },
            Duration::from_secs(3),
        );
        let t_floor = time(
            || {
                for h in &html {
                    std::hint::black_box(inspect_everything(h));
                }
            },
            Duration::from_secs(3),
        );
        let t_parse = time(
            || {
                for m in &set {
                    std::hint::black_box(MessageParser::default().parse(m));
                }
            },
            Duration::from_secs(2),
        );
        let mb = |bytes: usize, t: f64| bytes as f64 / t / 1e6;
        println!(
            "{name}: {} mails, {:.1} MB ({:.1} MB of HTML in {} parts)",
            set.len(),
            mail_bytes as f64 / 1e6,
            html_bytes as f64 / 1e6,
            html.len()
        );
        println!(
            "  clean():        {:8.1} mails/s  {:7.1} MB/s of mail  {:7.1} MB/s of HTML",
            set.len() as f64 / t_clean,
            mb(mail_bytes, t_clean),
            mb(html_bytes, t_clean)
        );
        println!(
            "  clean() on {threads} threads: {:8.1} mails/s  {:7.1} MB/s of mail",
            set.len() as f64 / t_parallel,
            mb(mail_bytes, t_parallel)
        );
        println!(
            "  bare lol_html:                     {:7.1} MB/s of HTML",
            mb(html_bytes, t_bare)
        );
        println!(
            "  inspect every attribute (floor):   {:7.1} MB/s of HTML",
            mb(html_bytes, t_floor)
        );
        println!(
            "  mail-parser parse only: {:8.1} mails/s  {:7.1} MB/s of mail",
            set.len() as f64 / t_parse,
            mb(mail_bytes, t_parse)
        );
        println!("  ratio clean/bare (HTML MB/s):  {:.2}", t_bare / t_clean);
        println!("  ratio clean/floor (HTML MB/s): {:.2}", t_floor / t_clean);
    }
}
