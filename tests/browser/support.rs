//! What tests/browser.rs and examples/corpus.rs share: finding the browser harness
//! (tests/browser/render.js, Chromium, node), running it over HTML files, and pulling the
//! HTML parts out of a mail the way a mail client would show them.
//!
//! The harness itself is documented at the top of render.js: every request is answered
//! locally or by a sink proxy on loopback, and host resolution is mapped to "not found",
//! so a render never sends anything off the machine.

// Each of the two users needs most, not all, of what is here.
#![allow(dead_code)]

use mail_parser::{MessageParser, MimeHeaders, PartType};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Set to 1 and a missing browser fails the test instead of skipping it (CI sets it).
pub const REQUIRE_ENV: &str = "MAILVEIL_REQUIRE_BROWSER";

/// Files per render.js run: one Chromium start serves them all.
const BATCH: usize = 40;

/// The root of the mailveil repository.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A ready browser harness.
#[derive(Debug, Clone)]
pub struct Harness {
    node: PathBuf,
    script: PathBuf,
    chromium: PathBuf,
}

/// One request the page made, as render.js reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The URL asked for.
    pub url: String,
    /// Playwright's resource type ("image", "stylesheet", "font", "media", ...).
    pub kind: String,
    /// The render pass that first saw it: screen, print, dark or phone.
    pub phase: String,
    /// Who saw it: route, event, sink.
    pub via: String,
    /// It went to a `--pass` origin.
    pub passed: bool,
}

impl Request {
    /// The host part of the URL, lowercased ("" when there is none).
    pub fn host(&self) -> String {
        host_of(&self.url)
    }
}

/// What rendering one file gave.
#[derive(Debug, Clone)]
pub struct Render {
    /// The file as passed to render.js.
    pub file: PathBuf,
    /// Every request, in the order first seen.
    pub requests: Vec<Request>,
    /// Why the page could not be rendered, if it could not.
    pub error: Option<String>,
    /// With `--visible`: the image URLs a reader sees at 1280 px and at 375 px.
    pub visible: Option<Visible>,
}

/// The image URLs a reader sees, at each width (render.js `--visible`).
#[derive(Debug, Clone, Default)]
pub struct Visible {
    /// At the desktop width, 1280 px.
    pub desktop: Vec<String>,
    /// At the phone width, 375 px.
    pub phone: Vec<String>,
}

impl Visible {
    /// Every URL seen at either width.
    pub fn either(&self) -> std::collections::BTreeSet<&str> {
        self.desktop
            .iter()
            .chain(&self.phone)
            .map(String::as_str)
            .collect()
    }
}

impl Harness {
    /// The harness, or why it cannot run here (no Chromium, no node, no `npm ci` yet).
    pub fn find() -> Result<Harness, String> {
        let chromium = std::env::var_os("CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        if !chromium.is_file() {
            return Err(format!(
                "{} not found (apt-get install chromium)",
                chromium.display()
            ));
        }
        let dir = repo_root().join("tests/browser");
        if !dir
            .join("node_modules/playwright-core/package.json")
            .is_file()
        {
            return Err(format!(
                "{}/node_modules missing (run `npm ci` there)",
                dir.display()
            ));
        }
        let node = PathBuf::from("node");
        match Command::new(&node).arg("--version").output() {
            Ok(out) if out.status.success() => {}
            _ => return Err("node not found on PATH".into()),
        }
        Ok(Harness {
            node,
            script: dir.join("render.js"),
            chromium,
        })
    }

    /// The harness, or `None` after a loud SKIP notice; panics instead when
    /// MAILVEIL_REQUIRE_BROWSER=1.
    pub fn or_skip(what: &str) -> Option<Harness> {
        match Harness::find() {
            Ok(h) => Some(h),
            Err(why) => {
                if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                    panic!("{what}: the browser harness is required ({REQUIRE_ENV}=1) but {why}");
                }
                // Straight to fd 2: libtest captures eprintln! of passing tests, and a
                // SKIP nobody sees is worse than none.
                let bar = "#".repeat(72);
                let _ = writeln!(
                    std::io::stderr(),
                    "\n{bar}\n## SKIP {what}: {why}\n## No browser ran: these tests checked nothing in Chromium.\n\
                     ## Set {REQUIRE_ENV}=1 to make this a failure.\n{bar}\n"
                );
                None
            }
        }
    }

    /// Renders every file (in batches, one Chromium per batch) and returns one result per
    /// file, in order. `pass` origins go through for real.
    pub fn render(&self, files: &[PathBuf], pass: &[&str]) -> Result<Vec<Render>, String> {
        self.render_parallel(files, pass, 1)
    }

    /// As [`Harness::render`], with up to `jobs` browsers at once. A render mostly waits
    /// for the network to go quiet, so a few run side by side even on two cores.
    pub fn render_parallel(
        &self,
        files: &[PathBuf],
        pass: &[&str],
        jobs: usize,
    ) -> Result<Vec<Render>, String> {
        self.render_with(files, pass, jobs, false)
    }

    /// As [`Harness::render_parallel`], also listing the images a reader sees at the
    /// desktop and the phone width (`Render::visible`).
    pub fn render_visible(&self, files: &[PathBuf], jobs: usize) -> Result<Vec<Render>, String> {
        self.render_with(files, &[], jobs, true)
    }

    fn render_with(
        &self,
        files: &[PathBuf],
        pass: &[&str],
        jobs: usize,
        visible: bool,
    ) -> Result<Vec<Render>, String> {
        let per_job = files.len().div_ceil(jobs.max(1)).max(1);
        std::thread::scope(|scope| {
            let handles: Vec<_> = files
                .chunks(per_job)
                .map(|slice| scope.spawn(move || self.render_serial(slice, pass, visible)))
                .collect();
            let mut out = Vec::with_capacity(files.len());
            for h in handles {
                out.extend(
                    h.join()
                        .map_err(|_| "render thread panicked".to_string())??,
                );
            }
            Ok(out)
        })
    }

    fn render_serial(
        &self,
        files: &[PathBuf],
        pass: &[&str],
        visible: bool,
    ) -> Result<Vec<Render>, String> {
        let mut out = Vec::with_capacity(files.len());
        for chunk in files.chunks(BATCH) {
            let mut cmd = Command::new(&self.node);
            cmd.arg(&self.script).env("CHROMIUM", &self.chromium);
            for p in pass {
                cmd.arg("--pass").arg(p);
            }
            if visible {
                cmd.arg("--visible");
            }
            cmd.args(chunk);
            let res = cmd
                .output()
                .map_err(|e| format!("cannot run {}: {e}", self.node.display()))?;
            let stdout = String::from_utf8_lossy(&res.stdout);
            let mut got = Vec::new();
            for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
                got.push(parse_line(line)?);
            }
            if got.len() != chunk.len() {
                return Err(format!(
                    "render.js printed {} results for {} files (exit {:?}); stderr:\n{}",
                    got.len(),
                    chunk.len(),
                    res.status.code(),
                    String::from_utf8_lossy(&res.stderr)
                ));
            }
            out.extend(got);
        }
        Ok(out)
    }
}

fn parse_line(line: &str) -> Result<Render, String> {
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("bad render.js line {line:?}: {e}"))?;
    let s = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
    let requests = v
        .get("requests")
        .and_then(|r| r.as_array())
        .ok_or_else(|| format!("no requests in {line:?}"))?
        .iter()
        .map(|r| Request {
            url: s(r, "url").unwrap_or_default(),
            kind: s(r, "type").unwrap_or_default(),
            phase: s(r, "phase").unwrap_or_default(),
            via: s(r, "via").unwrap_or_default(),
            passed: r.get("passed").and_then(|p| p.as_bool()).unwrap_or(false),
        })
        .collect();
    let urls = |v: Option<&serde_json::Value>| -> Vec<String> {
        v.and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let visible = v.get("visible").map(|w| Visible {
        desktop: urls(w.get("desktop")),
        phone: urls(w.get("phone")),
    });
    Ok(Render {
        file: PathBuf::from(s(&v, "file").unwrap_or_default()),
        requests,
        error: s(&v, "error"),
        visible,
    })
}

/// The host of a URL, lowercased, without user info, port or a trailing dot.
pub fn host_of(url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return String::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The path and query of a URL ("/" when there is none).
pub fn path_and_query_of(url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return "/".into();
    };
    let rest = rest.split('#').next().unwrap_or("");
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => format!("/{}", &rest[i..]),
        Some(i) => rest[i..].to_string(),
        None => "/".into(),
    }
}

/// The text/html parts of a mail that a client shows (not attachments), decoded, nested
/// messages included. `None` when the mail does not parse at all.
pub fn html_parts(raw: &[u8]) -> Option<Vec<String>> {
    let msg = MessageParser::default().parse(raw)?;
    let mut out = Vec::new();
    collect_html(&msg, &mut out, 0);
    Some(out)
}

fn collect_html(msg: &mail_parser::Message<'_>, out: &mut Vec<String>, depth: usize) {
    if depth > 8 {
        return;
    }
    for part in &msg.parts {
        let attachment = part
            .content_disposition()
            .is_some_and(|d| d.is_attachment());
        match &part.body {
            PartType::Html(html) if !attachment => out.push(html.to_string()),
            PartType::Message(inner) => collect_html(inner, out, depth + 1),
            _ => {}
        }
    }
}

/// The mail as the lenient readers (mail clients, Python's email, Node's parsers) read
/// it: every bare CR a line end.
pub fn lenient(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        out.push(b);
        if b == b'\r' && raw.get(i + 1) != Some(&b'\n') {
            out.push(b'\n');
        }
    }
    out
}

/// What a mail client shows of a mail, as one HTML page: the mail read leniently, every
/// HTML part that is not an attachment as it is and every text/plain one in `<pre>`, in
/// order, nested messages included; attachments are not opened. `None` when the mail
/// does not parse.
pub fn client_view(raw: &[u8]) -> Option<String> {
    let read = lenient(raw);
    let msg = MessageParser::default().parse(&read)?;
    let mut out = String::new();
    view_of(&msg, &mut out, 0);
    Some(out)
}

fn view_of(msg: &mail_parser::Message<'_>, out: &mut String, depth: usize) {
    if depth > 8 {
        return;
    }
    for part in &msg.parts {
        if part
            .content_disposition()
            .is_some_and(|d| d.is_attachment())
        {
            continue;
        }
        match &part.body {
            PartType::Html(html) => out.push_str(html),
            PartType::Text(text) => {
                out.push_str("<pre>");
                out.push_str(&text.replace('&', "&amp;").replace('<', "&lt;"));
                out.push_str("</pre>");
            }
            PartType::Message(inner) => view_of(inner, out, depth + 1),
            _ => {}
        }
    }
}

/// Writes `html` to `dir/name`, returning the path.
pub fn write_html(dir: &Path, name: &str, html: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, html).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_paths_are_cut_out_of_urls() {
        assert_eq!(host_of("https://U@Img.Example:8443/a?b#c"), "img.example");
        assert_eq!(host_of("http://[::1]:80/x"), "::1");
        assert_eq!(host_of("http://t.example./"), "t.example");
        assert_eq!(host_of("data:image/gif;base64,AAA"), "");
        assert_eq!(
            path_and_query_of("http://t.example/o.gif?e=1#f"),
            "/o.gif?e=1"
        );
        assert_eq!(path_and_query_of("http://t.example?e=1"), "/?e=1");
        assert_eq!(path_and_query_of("http://t.example"), "/");
    }
}
