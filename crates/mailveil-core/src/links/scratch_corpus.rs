use super::*;
use crate::rules::RuleSource;
use std::collections::BTreeMap;

#[test]
#[ignore]
fn scratch_corpus() {
    let mut srcs = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir("/work/main/rules")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        if p.extension().is_some_and(|e| e == "toml") {
            srcs.push(RuleSource {
                name: p.display().to_string(),
                text: std::fs::read_to_string(&p).unwrap(),
            });
        }
    }
    let (rules, errors) = Rules::compile_lenient(&srcs);
    for e in &errors {
        println!("RULE ERROR {e}");
    }
    let policy = LinkPolicy::default();
    let re = regex::Regex::new(r#"(?i)href\s*=\s*["']([^"']+)["']"#).unwrap();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir("/work/shared/corpus/real")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if !(name.ends_with(".eml") || name.ends_with(".html")) {
            continue;
        }
        let raw = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).to_string();
        let text = raw
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=");
        let detector = crate::detect::Detector::new(&rules, ["nobody@nowhere.invalid"]);
        for c in re.captures_iter(&text) {
            let href = htmlize::unescape_attribute(&c[1]).to_string();
            if !href.to_ascii_lowercase().starts_with("http") {
                continue;
            }
            let ctx = LinkContext {
                rules: &rules,
                detector: &detector,
                policy: &policy,
                link_text: None,
                list_unsubscribe: &[],
            };
            let out = clean_link(&href, &ctx);
            *counts.entry("links".into()).or_default() += 1;
            for s in &out.steps {
                let k = match s {
                    LinkStep::Unwrapped { rule, .. } => format!("unwrapped {rule}"),
                    LinkStep::Opaque { rule, .. } => format!("opaque {rule}"),
                    LinkStep::ParamRemoved { rule, name, .. } => format!("param {rule} {name}"),
                    LinkStep::Functional { reason } => format!("functional {reason}"),
                    other => format!("{other:?}"),
                };
                *counts.entry(k).or_default() += 1;
            }
            if out.unwrapped() || std::env::var("ALL").is_ok() {
                let short = |s: &str| s.chars().take(110).collect::<String>();
                println!(
                    "{name}\n  IN  {}\n  OUT {}",
                    short(&href),
                    short(out.url.as_deref().unwrap_or("(unchanged)"))
                );
            }
        }
    }
    for (k, v) in counts {
        println!("{v:5} {k}");
    }
}

#[test]
#[ignore]
fn scratch_patterns() {
    let mut srcs = Vec::new();
    for e in std::fs::read_dir("/work/main/rules").unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            srcs.push(RuleSource {
                name: p.display().to_string(),
                text: std::fs::read_to_string(&p).unwrap(),
            });
        }
    }
    let (rules, _) = Rules::compile_lenient(&srcs);
    let policy = LinkPolicy::default();
    let detector = crate::detect::Detector::new(&rules, ["nobody@nowhere.invalid"]);
    let tsv = std::fs::read_to_string("/work/shared/corpus/patterns.tsv").unwrap();
    for line in tsv.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let click = cols.get(2).copied().unwrap_or("");
        let url = click.split_whitespace().next().unwrap_or("");
        if !url.starts_with("http") {
            continue;
        }
        let ctx = LinkContext {
            rules: &rules,
            detector: &detector,
            policy: &policy,
            link_text: None,
            list_unsubscribe: &[],
        };
        let out = clean_link(url, &ctx);
        println!(
            "{:45} {:8} {:?}\n      -> {}",
            cols[0],
            cols[3].split(' ').next().unwrap_or(""),
            out.steps
                .iter()
                .map(|s| format!("{s:?}").chars().take(70).collect::<String>())
                .collect::<Vec<_>>(),
            out.url
                .as_deref()
                .unwrap_or("(unchanged)")
                .chars()
                .take(100)
                .collect::<String>()
        );
    }
}
