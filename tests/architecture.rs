//! The shape docs/architecture.md draws, checked (issue 16): every way in takes the same
//! flags; no frontend reaches past the pipeline (to the proxy, the dashboard, the store,
//! the metrics) or into another frontend; the policy is built in one place.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::MAILVEIL;

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

#[test]
fn every_way_in_lists_the_shared_flags_in_its_help() {
    let shared = [
        "--config",
        "--report-db",
        "--banner",
        "--remote-content",
        "--proxy-base",
        "--proxy-key-file",
        "--on-error",
        "--strip-read-receipts",
        "--keep-campaign-params",
        "--signed",
        "--rules",
        "--max-message-bytes",
        "--check",
        "--log-format",
    ];
    for sub in ["filter", "serve", "milter", "imap"] {
        let out = Command::new(MAILVEIL)
            .args([sub, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sub} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in shared {
            assert!(
                help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                "`mailveil {sub} --help` does not list {flag}:\n{help}"
            );
        }
    }
    // every other long-running subcommand checks and logs the same way
    for sub in ["proxy", "dashboard"] {
        let out = Command::new(MAILVEIL)
            .args([sub, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in ["--check", "--log-format"] {
            assert!(help.contains(flag), "`mailveil {sub} --help`: no {flag}");
        }
    }
    // and the daemons run the listeners beside their frontend
    for sub in ["serve", "milter", "imap"] {
        let out = Command::new(MAILVEIL)
            .args([sub, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in ["--proxy-listen", "--dashboard-listen"] {
            assert!(help.contains(flag), "`mailveil {sub} --help`: no {flag}");
        }
    }
}

/// The `.rs` files under `dir`, recursively.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// A source file's text without its line comments (the doc of a module may name what
/// it must not use).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_frontend_names_the_proxy_the_dashboard_or_another_frontend() {
    let frontends = [
        ("smtp", "src/smtp"),
        ("milter", "src/milter"),
        ("imap", "src/imap"),
        ("filter", "src/filter.rs"),
    ];
    let services = ["proxy", "web", "store", "metrics", "reload", "app"];
    for (name, place) in frontends {
        let root = Path::new(SRC).parent().unwrap().join(place);
        let files = if root.is_dir() {
            sources(&root)
        } else {
            vec![root]
        };
        assert!(!files.is_empty(), "{place}");
        for file in files {
            let text = code(&file);
            let others = frontends.iter().map(|f| f.0).filter(|f| *f != name);
            for forbidden in services.into_iter().chain(others) {
                for path in [
                    format!("crate::{forbidden}"),
                    format!("mailveil::{forbidden}"),
                ] {
                    assert!(
                        !text.contains(&format!("{path}::")) && !text.contains(&format!("{path};")),
                        "{} names {path}",
                        file.display()
                    );
                }
            }
        }
    }
}

#[test]
fn the_policy_is_built_in_one_place() {
    // Outside src/settings, no code (tests aside) writes a `Policy { .. }`.
    let literal = regex_free_find("Policy {");
    for file in sources(Path::new(SRC)) {
        if file.starts_with(Path::new(SRC).join("settings"))
            || file.file_name().is_some_and(|n| n == "tests.rs")
        {
            continue;
        }
        let text = code(&file);
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        assert!(
            !literal(text),
            "{} builds a Policy: that is src/settings' job",
            file.display()
        );
    }
}

/// A matcher for a struct literal `needle` (`Policy {`): not part of a longer name
/// (`LinkPolicy {`), not a type (`-> &Policy {`, `impl Policy {`).
fn regex_free_find(needle: &'static str) -> impl Fn(&str) -> bool {
    move |text: &str| {
        text.match_indices(needle).any(|(at, _)| {
            let glued = text[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            let before = text[..at].trim_end().chars().next_back();
            !glued && before.is_none_or(|c| !(c.is_alphanumeric() || c == '&' || c == '>'))
        })
    }
}
