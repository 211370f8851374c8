//! Runs mailveil over a folder of real mail and says what it found and what is left.
//!
//! ```text
//! cargo run --release --example corpus -- [DIR] [--leakmeter] [--jobs N]
//! ```
//!
//! DIR (default: ../shared/corpus/real, next to the repository) is read in place: every
//! `.eml`, and every `.html` wrapped into a minimal text/html mail. Nothing is copied; the
//! HTML that `--leakmeter` renders goes to a temporary folder that is removed afterwards.
//!
//! Each mail is cleaned with the default policy (remote content kept) and with
//! `--remote-content strip`, using the shipped rules. Per mail and in total it prints the
//! pixels found and removed, the recipient-token URLs, the remote URLs left in keep mode,
//! the parts changed (keep/strip), and the mails that could not be cleaned
//! (`report.error`; must be 0).
//!
//! With `--leakmeter` the HTML parts are opened in the project's browser harness
//! (tests/browser/render.js; needs Chromium and `npm ci` there): the original, the keep
//! output and the strip output, `--jobs` browsers at once (default 3). Columns:
//! `req` requests, `trk` requests to tracker hosts (hosts that a shipped pixel rule
//! matches, or that a finding of this mail marked as a pixel, recipient token or named
//! tracker), `px` pixel requests proper (the URL matches a pixel rule, or is the URL of
//! a pixel or recipient-token finding and of no kept image); `k-` after cleaning with
//! keep, `s-req` any request after cleaning with strip. A `trk` that is not a `px` is a
//! content image served from a tracker's host. `lost`: images a reader sees in the
//! original, at the desktop (1280 px) or the phone (375 px) width (render.js
//! `--visible`), that no longer load after cleaning with keep, not counting the ones a
//! rule or the reader's address names as trackers (those are counted apart). Pixel
//! requests left by keep, lost images and all requests left by strip are listed under
//! the mail.
//!
//! The links line counts the identifying parameters left in the keep output outside
//! opaque trackers, functional links (unsubscribe, sign-in...) included: what a second
//! pass would still remove (in a functional link: campaign tags and click ids). Apart, it
//! counts the functional tokens kept: parameters a rule names that a functional link
//! still carries because it needs them to work (an unsubscribe link's token).
//!
//! Exit status: 0 when every mail cleaned, no pixel loaded after keep, no visible image
//! was lost and nothing loaded after strip; 1 otherwise; 2 on a usage or setup error. A
//! missing DIR is reported and is not an error.

#[path = "../tests/browser/support.rs"]
mod support;

use mailveil::{Action, Cleaned, Envelope, Finding, FindingKind, Policy, RemoteContent, Rules};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use support::{Harness, Render, host_of, html_parts, path_and_query_of};

/// What one policy did to one mail.
#[derive(Debug, Default, Clone)]
struct Pass {
    pixels_found: usize,
    pixels_removed: usize,
    tokens: usize,
    remote_left: usize,
    parts_changed: usize,
    error: Option<String>,
    html: Vec<String>,
}

impl Pass {
    fn of(cleaned: &Cleaned) -> Pass {
        let f = &cleaned.report.findings;
        let count = |pred: &dyn Fn(&Finding) -> bool| f.iter().filter(|x| pred(x)).count();
        Pass {
            pixels_found: count(&|x| x.kind == FindingKind::Pixel),
            pixels_removed: count(&|x| x.kind == FindingKind::Pixel && x.action == Action::Strip),
            tokens: count(&|x| x.kind == FindingKind::RecipientToken),
            remote_left: count(&|x| {
                x.kind == FindingKind::RemoteContent && x.action == Action::Keep
            }),
            parts_changed: cleaned.report.parts_changed,
            error: cleaned.report.error.clone(),
            html: html_parts(&cleaned.bytes).unwrap_or_default(),
        }
    }
}

/// What one set of HTML parts fetched in the browser.
#[derive(Debug, Default, Clone, Copy)]
struct Fetched {
    requests: usize,
    to_tracker_hosts: usize,
    pixels: usize,
}

impl Fetched {
    fn add(&mut self, other: Fetched) {
        self.requests += other.requests;
        self.to_tracker_hosts += other.to_tracker_hosts;
        self.pixels += other.pixels;
    }
}

/// Links of one mail: in the original, and what the keep pass did to them.
#[derive(Debug, Default, Clone)]
struct LinkStats {
    seen: usize,
    unwrapped: usize,
    cleaned: usize,
    opaque: usize,
    /// Identifying parameters still in the cleaned links, outside opaque trackers,
    /// functional links included: what a second pass would remove. The goal is 0.
    params_left: usize,
    /// Parameters a rule names that functional links (by their text, their URL or
    /// List-Unsubscribe) keep because they need them: the token, the subscriber id.
    functional_tokens: usize,
    /// What is left, for the listing: `name in URL`.
    left: Vec<String>,
}

impl LinkStats {
    fn of(raw: &[u8], original_html: &[String], keep: &Cleaned, rules: &Rules) -> LinkStats {
        let f = &keep.report.findings;
        let count = |kind, action| {
            f.iter()
                .filter(|x| x.kind == kind && x.action == action)
                .count()
        };
        let msg = mail_parser::MessageParser::default().parse(raw);
        let to: Vec<String> = msg
            .as_ref()
            .and_then(|m| m.to())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.address.as_ref().map(|s| s.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let unsubscribe: Vec<String> = msg
            .as_ref()
            .and_then(|m| m.header_raw("List-Unsubscribe"))
            .map(|v| {
                v.split('<')
                    .skip(1)
                    .filter_map(|p| p.split_once('>'))
                    .map(|(u, _)| u.trim().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let detector = mailveil::detect::Detector::new(rules, to.iter().map(String::as_str));
        let policy = mailveil::links::LinkPolicy::default();
        let (mut params_left, mut functional_tokens) = (0, 0);
        let mut left = Vec::new();
        for html in html_parts(&keep.bytes).unwrap_or_default() {
            for (href, text) in anchors(&html) {
                let ctx = mailveil::links::LinkContext {
                    rules,
                    detector: &detector,
                    policy: &policy,
                    link_text: Some(&text),
                    list_unsubscribe: &unsubscribe,
                };
                let out = mailveil::links::clean_link(&href, &ctx);
                if out.opaque() {
                    continue;
                }
                params_left += out.removed_params().count();
                left.extend(out.removed_params().map(|n| format!("{n} in {href}")));
                let functional = out
                    .steps
                    .iter()
                    .any(|s| matches!(s, mailveil::links::LinkStep::Functional { .. }));
                if functional {
                    let url = out.url.as_deref().unwrap_or(&href);
                    functional_tokens += named_params(url, rules).len();
                }
            }
        }
        LinkStats {
            seen: original_html.iter().map(|h| anchors(h).len()).sum(),
            unwrapped: count(FindingKind::ClickRedirect, Action::Unwrap),
            cleaned: count(FindingKind::TrackingParam, Action::Clean),
            opaque: count(FindingKind::ClickRedirect, Action::Keep),
            params_left,
            functional_tokens,
            left,
        }
    }
}

/// The query parameters of `url` that a parameter rule names (on its host).
fn named_params(url: &str, rules: &Rules) -> Vec<String> {
    let Some(remote) = mailveil::detect::remote_url(url, &None) else {
        return Vec::new();
    };
    let host = remote.host().to_string();
    remote
        .url
        .query_pairs()
        .filter(|(name, _)| rules.match_params(&host, name).next().is_some())
        .map(|(name, _)| name.into_owned())
        .collect()
}

/// The http(s) links of an HTML text with their (tag-stripped) text, entities decoded.
fn anchors(html: &str) -> Vec<(String, String)> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find("<a ") {
        let start = at + i;
        let Some(tag_end) = lower[start..].find('>').map(|e| start + e) else {
            break;
        };
        let tag = &html[start..tag_end];
        let close = lower[tag_end..]
            .find("</a")
            .map_or(html.len(), |e| tag_end + e);
        at = tag_end + 1;
        let Some(h) = tag.to_ascii_lowercase().find("href=") else {
            continue;
        };
        let rest = &tag[h + 5..];
        let (quote, body) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => (q, &rest[1..]),
            _ => (' ', rest),
        };
        let value = &body[..body.find(quote).unwrap_or(body.len())];
        let href = htmlize::unescape_attribute(value).into_owned();
        if !href.to_ascii_lowercase().starts_with("http") {
            continue;
        }
        let mut text = String::new();
        let mut in_tag = false;
        for c in html[tag_end + 1..close.max(tag_end + 1)].chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        out.push((href, htmlize::unescape(text.trim()).into_owned()));
    }
    out
}

struct Mail {
    links: LinkStats,
    name: String,
    parsed: bool,
    original_html: Vec<String>,
    tracker_hosts: BTreeSet<String>,
    pixel_urls: BTreeSet<String>,
    /// URLs a rule or the reader's address names as trackers (stripped by keep).
    named_trackers: BTreeSet<String>,
    /// Images seen in the original at either width, and which of them no longer load
    /// after keep (not named trackers); visible named trackers removed.
    visible: BTreeSet<String>,
    lost: Vec<String>,
    visible_trackers: usize,
    keep: Pass,
    strip: Pass,
    /// Browser counts: uncleaned, after keep, after strip.
    fetched: [Fetched; 3],
    /// Pixel requests after keep and any request after strip, for the listing.
    leaks: Vec<String>,
}

fn main() -> ExitCode {
    let mut dir: Option<PathBuf> = None;
    let mut leakmeter = false;
    let mut jobs = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--leakmeter" => leakmeter = true,
            "--jobs" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => jobs = n,
                _ => {
                    eprintln!("corpus: --jobs needs a positive number");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!(
                    "usage: cargo run --release --example corpus -- [DIR] [--leakmeter] [--jobs N]"
                );
                return ExitCode::SUCCESS;
            }
            a if a.starts_with("--") => {
                eprintln!("corpus: unknown option {a}");
                return ExitCode::from(2);
            }
            a if dir.is_none() => dir = Some(PathBuf::from(a)),
            a => {
                eprintln!("corpus: one directory only ({a})");
                return ExitCode::from(2);
            }
        }
    }
    let dir = dir.unwrap_or_else(|| support::repo_root().join("../shared/corpus/real"));
    if !dir.is_dir() {
        println!("corpus: {} does not exist; nothing to do", dir.display());
        return ExitCode::SUCCESS;
    }
    let harness = if leakmeter {
        match Harness::find() {
            Ok(h) => Some(h),
            Err(why) => {
                eprintln!("corpus: --leakmeter needs the browser harness: {why}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let (rules, errors) = mailveil::rule_files::load(&[], false);
    for e in &errors {
        eprintln!("corpus: rule error: {e:?}");
    }

    let started = Instant::now();
    let mut mails: Vec<Mail> = files(&dir)
        .iter()
        .filter_map(|p| clean_one(p, &rules))
        .collect();
    let clean_time = started.elapsed();
    if let Some(h) = &harness
        && let Err(e) = measure(h, &mut mails, &rules, jobs)
    {
        eprintln!("corpus: {e}");
        return ExitCode::from(2);
    }
    let failed = print_table(&mails, leakmeter);
    let render_time = if leakmeter {
        format!(", rendered in {:.1?}", started.elapsed() - clean_time)
    } else {
        String::new()
    };
    println!(
        "{} mails from {} cleaned twice in {clean_time:.1?}{render_time}",
        mails.len(),
        dir.display(),
    );
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The .eml and .html files of `dir`, sorted by name (numbers in order).
fn files(dir: &Path) -> Vec<PathBuf> {
    let wanted = |p: &PathBuf| {
        p.is_file()
            && p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("eml") || x.eq_ignore_ascii_case("html"))
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(wanted)
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|p| natural_key(&p.file_name().unwrap_or_default().to_string_lossy()));
    out
}

/// "unspy_9" sorts before "unspy_10".
fn natural_key(name: &str) -> (String, u64, String) {
    let stem: String = name.chars().take_while(|c| !c.is_ascii_digit()).collect();
    let digits: String = name[stem.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let rest = name[stem.len() + digits.len()..].to_string();
    (stem, digits.parse().unwrap_or(0), rest)
}

/// A bare HTML body as the mail that would have carried it.
fn wrap_html(html: &[u8]) -> Vec<u8> {
    let charset = if std::str::from_utf8(html).is_ok() {
        "utf-8"
    } else {
        "windows-1252"
    };
    let mut m = format!(
        "From: corpus <corpus@sender.invalid>\r\nTo: reader <reader@recipient.invalid>\r\n\
         Subject: corpus body\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(html);
    m
}

fn clean_one(path: &Path, rules: &Rules) -> Option<Mail> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("corpus: {}: {e}", path.display());
            return None;
        }
    };
    let is_html = path
        .extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("html"));
    let raw = if is_html { wrap_html(&bytes) } else { bytes };
    // The corpus has no envelopes: the core takes the reader's addresses from the mail's
    // own To / Delivered-To headers.
    let envelope = Envelope::default();
    let keep = mailveil::clean(&raw, &envelope, &Policy::default(), rules);
    let strip_policy = Policy {
        remote_content: RemoteContent::Strip,
        ..Default::default()
    };
    let strip = mailveil::clean(&raw, &envelope, &strip_policy, rules);
    let findings = &keep.report.findings;
    let is_pixel =
        |f: &&Finding| matches!(f.kind, FindingKind::Pixel | FindingKind::RecipientToken);
    let tracker_hosts = findings
        .iter()
        .filter(|f| is_pixel(f) || f.tracker.is_some())
        .filter_map(|f| f.url.as_deref().map(host_of))
        .filter(|h| !h.is_empty())
        .collect();
    // A URL kept elsewhere in the same mail (a spacer GIF used both 1x1 and stretched, an
    // icon in a hidden and a shown copy of a block) loads anyway, as content: not a pixel.
    let kept: BTreeSet<&str> = findings
        .iter()
        .filter(|f| f.action == Action::Keep)
        .filter_map(|f| f.url.as_deref())
        .collect();
    let pixel_urls = findings
        .iter()
        .filter(is_pixel)
        .filter_map(|f| f.url.as_deref())
        .filter(|u| !kept.contains(u))
        .map(String::from)
        .collect();
    let named_trackers = findings
        .iter()
        .filter(|f| f.action == Action::Strip && !f.rule.starts_with("heuristic:"))
        .chain(
            findings
                .iter()
                .filter(|f| f.kind == FindingKind::RecipientToken),
        )
        .filter_map(|f| f.url.clone())
        .collect();
    let original_html = html_parts(&raw);
    let links = LinkStats::of(
        &raw,
        original_html.as_deref().unwrap_or_default(),
        &keep,
        rules,
    );
    Some(Mail {
        links,
        name: path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        parsed: original_html.is_some(),
        original_html: original_html.unwrap_or_default(),
        tracker_hosts,
        pixel_urls,
        named_trackers,
        visible: BTreeSet::new(),
        lost: Vec::new(),
        visible_trackers: 0,
        keep: Pass::of(&keep),
        strip: Pass::of(&strip),
        fetched: [Fetched::default(); 3],
        leaks: Vec::new(),
    })
}

/// Renders the original, keep and strip HTML of every mail and counts the requests.
fn measure(
    harness: &Harness,
    mails: &mut [Mail],
    rules: &Rules,
    jobs: usize,
) -> Result<(), String> {
    let tmp = tempfile::Builder::new()
        .prefix("mailveil-corpus-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    // (mail index, 0 original / 1 keep / 2 strip, file)
    let mut jobs_list: Vec<(usize, usize, PathBuf)> = Vec::new();
    for (i, m) in mails.iter().enumerate() {
        let sets = [&m.original_html, &m.keep.html, &m.strip.html];
        for (which, parts) in sets.into_iter().enumerate() {
            for (k, html) in parts.iter().enumerate() {
                let name = format!("{i}-{which}-{k}.html");
                jobs_list.push((i, which, support::write_html(tmp.path(), &name, html)));
            }
        }
    }
    // The originals are rendered with --visible (the images a reader sees at 1280 and
    // 375 px), the cleaned parts for their requests only.
    jobs_list.sort_by_key(|j| j.1 != 0);
    let originals = jobs_list.iter().filter(|j| j.1 == 0).count();
    let files: Vec<PathBuf> = jobs_list.iter().map(|j| j.2.clone()).collect();
    eprintln!(
        "corpus: rendering {} HTML parts in Chromium, {jobs} at a time...",
        files.len()
    );
    let mut renders: Vec<Render> = harness.render_visible(&files[..originals], jobs)?;
    renders.extend(harness.render_parallel(&files[originals..], &[], jobs)?);
    for ((i, which, _), render) in jobs_list.iter().zip(&renders) {
        let m = &mut mails[*i];
        if let Some(e) = &render.error {
            eprintln!("corpus: {}: render error: {e}", m.name);
        }
        let mut got = Fetched {
            requests: render.requests.len(),
            ..Fetched::default()
        };
        for q in &render.requests {
            let host = q.host();
            let by_rule = rules
                .match_pixel(&host, &path_and_query_of(&q.url))
                .is_some();
            let pixel = by_rule || m.pixel_urls.contains(&q.url);
            if pixel {
                got.pixels += 1;
            }
            if by_rule || m.tracker_hosts.contains(&host) {
                got.to_tracker_hosts += 1;
            }
            match which {
                1 if pixel => m.leaks.push(format!("keep pixel: {} {}", q.kind, q.url)),
                2 => m.leaks.push(format!("strip: {} {}", q.kind, q.url)),
                _ => {}
            }
        }
        m.fetched[*which].add(got);
        if let Some(v) = &render.visible {
            m.visible.extend(v.either().into_iter().map(String::from));
        }
    }
    // Visible in the original, loaded by no keep render of the mail: lost.
    let mut loaded: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); mails.len()];
    for ((i, which, _), render) in jobs_list.iter().zip(&renders) {
        if *which == 1 {
            loaded[*i].extend(render.requests.iter().map(|q| q.url.as_str()));
        }
    }
    for (m, loaded) in mails.iter_mut().zip(&loaded) {
        for url in &m.visible {
            if loaded.contains(url.as_str()) {
                continue;
            }
            if m.named_trackers.contains(url) {
                m.visible_trackers += 1;
            } else {
                m.lost.push(url.clone());
            }
        }
        let lost: Vec<String> = m.lost.iter().map(|u| format!("lost: {u}")).collect();
        m.leaks.extend(lost);
    }
    Ok(())
}

/// Prints the table and the TOTAL lines; returns whether anything failed or leaked.
fn print_table(mails: &[Mail], leakmeter: bool) -> bool {
    let name_w = mails.iter().map(|m| m.name.len()).max().unwrap_or(4).max(4);
    let mut head = format!(
        "{:<name_w$} {:>6} {:>7} {:>6} {:>11} {:>7} {:>5}",
        "mail", "pixels", "removed", "tokens", "remote-left", "changed", "error"
    );
    if leakmeter {
        head.push_str(&format!(
            " | {:>5} {:>5} {:>5} | {:>5} {:>5} {:>5} {:>5} | {:>5}",
            "req", "trk", "px", "k-req", "k-trk", "k-px", "lost", "s-req"
        ));
    }
    println!("{head}");
    println!("{}", "-".repeat(head.len()));
    for m in mails {
        let mut row = format!(
            "{:<name_w$} {:>6} {:>7} {:>6} {:>11} {:>7} {:>5}",
            m.name,
            m.keep.pixels_found,
            m.keep.pixels_removed,
            m.keep.tokens,
            m.keep.remote_left,
            format!("{}/{}", m.keep.parts_changed, m.strip.parts_changed),
            error_cell(m),
        );
        if leakmeter {
            let [before, keep, strip] = &m.fetched;
            row.push_str(&format!(
                " | {:>5} {:>5} {:>5} | {:>5} {:>5} {:>5} {:>5} | {:>5}",
                before.requests,
                before.to_tracker_hosts,
                before.pixels,
                keep.requests,
                keep.to_tracker_hosts,
                keep.pixels,
                m.lost.len(),
                strip.requests
            ));
        }
        println!("{row}");
        for e in m.leaks.iter().take(5) {
            println!("    {}", truncate(e, 160));
        }
        if m.leaks.len() > 5 {
            println!("    ... and {} more", m.leaks.len() - 5);
        }
    }
    println!("{}", "-".repeat(head.len()));

    let sum = |f: &dyn Fn(&Mail) -> usize| mails.iter().map(f).sum::<usize>();
    let count = |f: &dyn Fn(&Mail) -> bool| mails.iter().filter(|m| f(m)).count();
    let mut failed = false;
    for (label, idx) in [("keep ", 1), ("strip", 2)] {
        let errors = count(&|m| pass_of(m, idx).error.is_some());
        failed |= errors > 0;
        let mut line = format!(
            "TOTAL {label}: {} mails, pixels found {}, removed {}, recipient tokens {}, \
             remote URLs left {}, parts changed {}, clean errors {errors}",
            mails.len(),
            sum(&|m| pass_of(m, idx).pixels_found),
            sum(&|m| pass_of(m, idx).pixels_removed),
            sum(&|m| pass_of(m, idx).tokens),
            sum(&|m| pass_of(m, idx).remote_left),
            sum(&|m| pass_of(m, idx).parts_changed),
        );
        if leakmeter {
            let requests = sum(&|m| m.fetched[idx].requests);
            let trk = sum(&|m| m.fetched[idx].to_tracker_hosts);
            let px = sum(&|m| m.fetched[idx].pixels);
            line.push_str(&format!(
                "; browser: requests {requests} (before {}) in {} mails, to tracker hosts {trk} \
                 (before {}) in {} mails, pixels {px} (before {}) in {} mails",
                sum(&|m| m.fetched[0].requests),
                count(&|m| m.fetched[idx].requests > 0),
                sum(&|m| m.fetched[0].to_tracker_hosts),
                count(&|m| m.fetched[idx].to_tracker_hosts > 0),
                sum(&|m| m.fetched[0].pixels),
                count(&|m| m.fetched[idx].pixels > 0),
            ));
            failed |= px > 0 || (idx == 2 && requests > 0);
            if idx == 1 {
                let lost = sum(&|m| m.lost.len());
                line.push_str(&format!(
                    "; images visible in the original (desktop or phone) {}, no longer loading after keep {lost} in {} mails, visible trackers removed {}",
                    sum(&|m| m.visible.len()),
                    count(&|m| !m.lost.is_empty()),
                    sum(&|m| m.visible_trackers),
                ));
                failed |= lost > 0;
            }
        }
        println!("{line}");
    }
    println!(
        "TOTAL links: seen {}, unwrapped {}, cleaned {}, opaque trackers kept {}, identifying parameters left {} \
         (outside opaque trackers, functional links included); functional tokens kept {} (what those links need to work)",
        sum(&|m| m.links.seen),
        sum(&|m| m.links.unwrapped),
        sum(&|m| m.links.cleaned),
        sum(&|m| m.links.opaque),
        sum(&|m| m.links.params_left),
        sum(&|m| m.links.functional_tokens),
    );
    for m in mails.iter().filter(|m| m.links.params_left > 0) {
        println!(
            "    {}: {} identifying parameters left",
            m.name, m.links.params_left
        );
        for l in m.links.left.iter().take(3) {
            println!("        {}", truncate(l, 150));
        }
    }
    let unparsed = count(&|m| !m.parsed);
    if unparsed > 0 {
        println!("({unparsed} mails that mail-parser could not read: no HTML rendered for them)");
    }
    failed
}

fn pass_of(m: &Mail, idx: usize) -> &Pass {
    if idx == 1 { &m.keep } else { &m.strip }
}

fn error_cell(m: &Mail) -> String {
    match (&m.keep.error, &m.strip.error) {
        (None, None) => "-".into(),
        (Some(e), _) | (None, Some(e)) => e.clone(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
