//! The unspy pairs: the same campaign delivered to two subscribers. After cleaning, every
//! link that can be unwrapped or cleaned must be identical between the two mails of a
//! pair; what still differs is per-recipient, and this says why (an opaque tracker, a
//! functional link, or neither: a miss).
//!
//! `cargo run --release --example pairs [-- DIR]` (DIR default ../shared/corpus/real, read
//! in place; nothing is copied).

use mail_parser::{MessageParser, MimeHeaders, PartType};
use mailveil::{Action, Envelope, FindingKind, Policy, clean, rule_files};
use std::path::{Path, PathBuf};

/// The hrefs of a mail's HTML parts, in order, entity-decoded.
fn hrefs(raw: &[u8]) -> Vec<String> {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for part in &msg.parts {
        let PartType::Html(html) = &part.body else {
            continue;
        };
        if part
            .content_type()
            .is_none_or(|c| c.subtype() != Some("html"))
        {
            continue;
        }
        let mut rest = html.as_ref();
        while let Some(i) = rest.find("href=") {
            rest = &rest[i + 5..];
            let quote = rest.chars().next().unwrap_or(' ');
            let (value, tail) = if quote == '"' || quote == '\'' {
                let body = &rest[1..];
                let end = body.find(quote).unwrap_or(body.len());
                (&body[..end], &body[end..])
            } else {
                let end = rest
                    .find(|c: char| c.is_whitespace() || c == '>')
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            out.push(htmlize::unescape_attribute(value).into_owned());
            rest = tail;
        }
    }
    out
}

/// The address a mail was delivered to (its `To:`), for recipient-token detection.
fn recipient(raw: &[u8]) -> Vec<String> {
    MessageParser::default()
        .parse(raw)
        .and_then(|m| {
            m.to()
                .and_then(|a| a.first())
                .and_then(|a| a.address.as_ref().map(|s| s.to_string()))
        })
        .into_iter()
        .collect()
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/real"));
    if !dir.is_dir() {
        println!("no corpus at {}: nothing to do", dir.display());
        return;
    }
    let (rules, _) = rule_files::load(&[], false);
    let policy = Policy::default();
    let mut numbers: Vec<u32> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("unspy_")?
                .strip_suffix(".eml")?
                .parse()
                .ok()
        })
        .collect();
    numbers.sort_unstable();
    let (mut total_links, mut total_same, mut total_opaque, mut total_functional, mut total_miss) =
        (0, 0, 0, 0, 0);
    println!(
        "{:<16} {:>6} {:>10} {:>8} {:>8} {:>6}",
        "pair", "links", "identical", "opaque", "funct.", "miss"
    );
    for odd in numbers.iter().copied().filter(|n| n % 2 == 1) {
        let (a, b) = (
            dir.join(format!("unspy_{odd}.eml")),
            dir.join(format!("unspy_{}.eml", odd + 1)),
        );
        let (Ok(ra), Ok(rb)) = (std::fs::read(&a), std::fs::read(&b)) else {
            continue;
        };
        let ca = clean(
            &ra,
            &Envelope {
                sender: None,
                recipients: recipient(&ra),
            },
            &policy,
            &rules,
        );
        let cb = clean(
            &rb,
            &Envelope {
                sender: None,
                recipients: recipient(&rb),
            },
            &policy,
            &rules,
        );
        let (la, lb) = (hrefs(&ca.bytes), hrefs(&cb.bytes));
        let opaque_urls: Vec<&str> = ca
            .report
            .findings
            .iter()
            .chain(cb.report.findings.iter())
            .filter(|f| f.kind == FindingKind::ClickRedirect && f.action == Action::Keep)
            .filter_map(|f| f.url.as_deref())
            .collect();
        let (mut same, mut opaque, mut functional, mut miss) = (0, 0, 0, 0);
        let mut misses = Vec::new();
        for (x, y) in la.iter().zip(lb.iter()) {
            if x == y {
                same += 1;
            } else if opaque_urls.contains(&x.as_str()) || opaque_urls.contains(&y.as_str()) {
                opaque += 1;
            } else if is_functional(x) {
                functional += 1;
            } else {
                miss += 1;
                misses.push((x.clone(), y.clone()));
            }
        }
        let n = la.len().min(lb.len());
        println!(
            "unspy_{odd}/{:<6} {n:>6} {same:>10} {opaque:>8} {functional:>8} {miss:>6}",
            odd + 1
        );
        for (x, y) in misses.iter().take(3) {
            println!(
                "    differs: {}\n             {}",
                &x[..x.len().min(140)],
                &y[..y.len().min(140)]
            );
        }
        if la.len() != lb.len() {
            println!("    (link counts differ: {} vs {})", la.len(), lb.len());
        }
        total_links += n;
        total_same += same;
        total_opaque += opaque;
        total_functional += functional;
        total_miss += miss;
    }
    println!(
        "TOTAL links {total_links}, identical {total_same}, differing: opaque trackers {total_opaque}, functional {total_functional}, other {total_miss}"
    );
}

/// A link whose parameters mailveil keeps on purpose (unsubscribe, preferences, ...).
fn is_functional(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    mailveil::links::FUNCTIONAL_STEMS
        .iter()
        .any(|w| lower.contains(w))
        || mailveil::links::FUNCTIONAL_WORDS
            .iter()
            .any(|w| lower.contains(w))
}
