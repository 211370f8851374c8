//! ClearURLs `data.min.json`: `{"providers": {NAME: {urlPattern, completeProvider, rules,
//! referralMarketing, rawRules, exceptions, redirections, forceRedirection}}}`.
//!
//! ClearURLs removes a parameter when `([/?#]|&|&amp;)+(RULE=[^&]*)` matches, case-insensitive,
//! on a URL that matches the provider's `urlPattern`: a rule is a regex for the whole
//! parameter name, which is what a mailveil name glob is when the regex has an exact glob.

use super::out::{Param, RuleFile};
use super::pattern::{self, Node};
use super::url;
use serde_json::Value;

/// Converts the catalog `json`; `label` names the input file in every `source`.
pub fn import(json: &str, label: &str) -> Result<RuleFile, String> {
    let root: Value =
        serde_json::from_str(json).map_err(|e| format!("not a ClearURLs catalog: {e}"))?;
    let providers = root
        .get("providers")
        .and_then(Value::as_object)
        .ok_or("not a ClearURLs catalog: no \"providers\" object")?;
    let mut f = RuleFile::new(&[
        format!("Imported by `mailveil rules import clearurls` from {label}."),
        "Every entry names its ClearURLs provider and rule. ClearURLs matches names case-insensitively, as mailveil does.".into(),
        "Exceptions become action = \"keep\" entries where they can (parameters on whole hosts, pixels on hosts and paths).".into(),
        "Not expressible, so listed as `# skipped:` lines: rawRules (they edit the URL text), the other exceptions,".into(),
        "and every regex without an exact glob translation (a rule must never match more than its source).".into(),
    ]);
    for (name, p) in providers {
        f.blank();
        provider(&mut f, name, p, label);
    }
    Ok(f)
}

fn strings<'a>(p: &'a Value, key: &str) -> Vec<&'a str> {
    p.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Why a ClearURLs exception is only partly honoured.
const EXCEPTION_KEEP_NOTE: &str = "A ClearURLs exception, as action = \"keep\": it also turns off other rules for these names on these hosts (recipient-address detection still applies)";
const EXCEPTION_PIXEL_NOTE: &str = "A ClearURLs exception, as action = \"keep\": it also turns off other pixel rules for these URLs";

fn provider(f: &mut RuleFile, name: &str, p: &Value, label: &str) {
    f.comment(&format!("---- ClearURLs provider \"{name}\" ----"));
    let mark = f.mark();
    let tracker = f.id(&["clearurls", name]);
    let entries_before = f.entries;
    let src =
        |what: &str| format!("ClearURLs data.min.json ({label}), provider \"{name}\", {what}");
    let what = |key: &str, i: usize, re: &str| format!("provider \"{name}\" {key}[{i}] \"{re}\"");
    let pattern = p.get("urlPattern").and_then(Value::as_str).unwrap_or("");
    let scope = if pattern.is_empty() {
        Err("the provider has no urlPattern".to_string())
    } else {
        url::scope(pattern).map_err(|e| format!("urlPattern \"{pattern}\": {e}"))
    };
    // Exceptions become `action = "keep"` entries where they can: on whole hosts for
    // parameters, on hosts and paths for pixels. Redirects have no keep.
    let exceptions = strings(p, "exceptions");
    let exception_scopes: Vec<Result<url::Scope, String>> = exceptions
        .iter()
        .map(|e| match url::scope(e) {
            Ok(s) if s.hosts.is_empty() => Err("an exception for every URL".into()),
            other => other,
        })
        .collect();
    let lost = |host_level_only: bool| {
        exception_scopes
            .iter()
            .filter(|s| match s {
                Ok(s) => host_level_only && !s.paths.is_empty(),
                Err(_) => true,
            })
            .count()
    };
    let lost_note = |n: usize| {
        (n > 0).then(|| {
            format!(
                "ClearURLs lists {n} exception(s) for this provider that mailveil cannot express (see `# skipped:`): this rule applies there too"
            )
        })
    };
    let param_note = lost_note(lost(true));
    let redirect_note = lost_note(exceptions.len());

    let mut pixels = 0;
    if p.get("completeProvider").and_then(Value::as_bool) == Some(true) {
        let pixel_note = format!(
            "ClearURLs blocks every request to this provider; mailveil removes what would load on open{}",
            lost_note(lost(false))
                .map(|n| format!(". {n}"))
                .unwrap_or_default()
        );
        let what = format!("provider \"{name}\" completeProvider");
        match &scope {
            Err(e) => f.skip(&what, e),
            Ok(s) if s.hosts.is_empty() => f.skip(&what, "the urlPattern matches every URL"),
            Ok(s) => {
                for host in &s.hosts {
                    for path in optional(&s.paths) {
                        let id = f.id(&[&tracker, "block"]);
                        f.pixel(
                            &id,
                            &tracker,
                            host,
                            path,
                            false,
                            &src(&format!("completeProvider, urlPattern \"{pattern}\"")),
                            Some(&pixel_note),
                        );
                        pixels += 1;
                    }
                }
            }
        }
    }

    let mut imported: Vec<(Vec<String>, String)> = Vec::new();
    for (key, referral) in [("rules", false), ("referralMarketing", true)] {
        for (i, re) in strings(p, key).into_iter().enumerate() {
            let what = what(key, i, re);
            let hosts = match &scope {
                Err(e) => {
                    f.skip(&what, e);
                    continue;
                }
                Ok(s) if !s.paths.is_empty() => {
                    f.skip(
                        &what,
                        &format!(
                            "the urlPattern \"{pattern}\" is limited to a path, and a [[param]] applies to the whole host"
                        ),
                    );
                    continue;
                }
                Ok(s) => &s.hosts,
            };
            let names = match names(re) {
                Ok(n) => n,
                Err(e) => {
                    f.skip(&what, &e);
                    continue;
                }
            };
            if let Some((_, id)) = imported.iter().find(|(n, _)| *n == names) {
                // Not a loss: the names are removed already (as ClearURLs always removes `rules`).
                f.comment(&format!("duplicate: {what}: the same names as {id}"));
                continue;
            }
            let class = if referral {
                "campaign"
            } else {
                class_by_name(&names)
            };
            let id = f.id(&[&tracker, &names[0].replace('*', "")]);
            f.param(&Param {
                id: &id,
                tracker: Some(&tracker),
                names: &names,
                hosts,
                class,
                keep: false,
                source: &src(&format!("{key}[{i}] \"{re}\"")),
                note: param_note.as_deref(),
            });
            imported.push((names, id));
        }
    }

    let mut redirects = 0;
    for (i, re) in strings(p, "redirections").into_iter().enumerate() {
        let what = what("redirections", i, re);
        // ClearURLs applies a redirection only where the provider's urlPattern matches too.
        let targets = match (&scope, redirect_targets(re)) {
            (Err(e), _) => Err(e.clone()),
            (_, Err(e)) => Err(e),
            (Ok(s), Ok(t)) if !t.iter().all(|t| s.covers(&t.host, t.path.as_deref())) => Err(
                format!("reaches beyond the provider's urlPattern \"{pattern}\""),
            ),
            (_, Ok(t)) => Ok(t),
        };
        match targets {
            Err(e) => f.skip(&what, &e),
            Ok(targets) => {
                for t in targets {
                    let id = f.id(&[&tracker, "redirect", &t.param]);
                    f.redirect(
                        &id,
                        &tracker,
                        &t.host,
                        t.path.as_deref(),
                        &t.param,
                        &src(&format!("redirections[{i}] \"{re}\"")),
                        redirect_note.as_deref(),
                    );
                    redirects += 1;
                }
            }
        }
    }
    for (i, re) in strings(p, "rawRules").into_iter().enumerate() {
        f.skip(
            &what("rawRules", i, re),
            "a raw rule edits the URL text (often the path), which mailveil never does",
        );
    }

    let kept_names: Vec<String> = {
        let mut v: Vec<String> = imported.iter().flat_map(|(n, _)| n.clone()).collect();
        pattern::dedup(&mut v);
        v
    };
    for (i, (re, exception)) in exceptions.iter().zip(&exception_scopes).enumerate() {
        let what = what("exceptions", i, re);
        let source = src(&format!("exceptions[{i}] \"{re}\""));
        let s = match exception {
            Err(e) => {
                if pixels + imported.len() + redirects > 0 {
                    f.skip(
                        &what,
                        &format!("{e}, so this provider's entries above also apply to these URLs"),
                    );
                }
                continue;
            }
            Ok(s) => s,
        };
        let Ok(provider) = &scope else {
            continue;
        };
        let mut kept = 0;
        if pixels > 0 {
            for host in &s.hosts {
                for path in optional(&s.paths) {
                    if provider.covers(host, path) {
                        let id = f.id(&[&tracker, "except"]);
                        f.pixel(
                            &id,
                            &tracker,
                            host,
                            path,
                            true,
                            &source,
                            Some(EXCEPTION_PIXEL_NOTE),
                        );
                        kept += 1;
                    }
                }
            }
        }
        let mut still = Vec::new();
        // Only where this provider's rules apply: elsewhere a keep would only turn other rules off.
        let hosts: Vec<String> = s
            .hosts
            .iter()
            .filter(|h| provider.covers(h, None))
            .cloned()
            .collect();
        if !kept_names.is_empty() && !hosts.is_empty() {
            if s.paths.is_empty() {
                let id = f.id(&[&tracker, "except", &hosts[0].replace('*', "")]);
                f.param(&Param {
                    id: &id,
                    tracker: Some(&tracker),
                    names: &kept_names,
                    hosts: &hosts,
                    class: class_by_name(&kept_names),
                    keep: true,
                    source: &source,
                    note: Some(EXCEPTION_KEEP_NOTE),
                });
                kept += 1;
            } else {
                still.push("parameter rules");
            }
        }
        if redirects > 0 {
            still.push("redirects");
        }
        if !still.is_empty() {
            let how = if s.paths.is_empty() {
                "redirects"
            } else {
                "a path from parameter or redirect rules"
            };
            f.skip(
                &what,
                &format!(
                    "mailveil cannot except {how}, so this provider's {} still apply to these URLs",
                    still.join(" and ")
                ),
            );
        } else if kept == 0 && pixels + imported.len() > 0 {
            f.comment(&format!(
                "outside: {what}: not within this provider's URLs, nothing to except"
            ));
        }
    }
    if f.entries > entries_before {
        f.tracker_at(
            mark,
            &tracker,
            name,
            category(name),
            &src(&format!("urlPattern \"{pattern}\"")),
        );
    }
}

/// `[None]` for no paths (every path), else each path.
fn optional(paths: &[String]) -> Vec<Option<&str>> {
    if paths.is_empty() {
        vec![None]
    } else {
        paths.iter().map(|p| Some(p.as_str())).collect()
    }
}

/// Name globs for a ClearURLs parameter-name regex.
pub fn names(re: &str) -> Result<Vec<String>, String> {
    let alts = pattern::parse(re)?;
    let group = Node::Group {
        capture: false,
        alts,
    };
    let mut names: Vec<String> = pattern::globs(&[group], &|_| None)?
        .into_iter()
        .map(|g| percent_decode(&g))
        .collect();
    pattern::dedup(&mut names);
    for n in &names {
        check_name(n)?;
    }
    Ok(names)
}

/// Refuses globs that are not a parameter name, or that match almost every name.
pub fn check_name(n: &str) -> Result<(), String> {
    if n.chars().all(|c| c == '*') {
        return Err("matches every parameter".into());
    }
    if let Some(c) = n
        .chars()
        .find(|c| matches!(c, '=' | '&' | '#' | '|' | '^' | '$') || c.is_whitespace())
    {
        return Err(format!("{c:?} cannot be part of a parameter name"));
    }
    Ok(())
}

/// `%3F` → `?`: mailveil matches percent-decoded names.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            && (v.is_ascii_graphic() && v != b'*' && v != b'%')
        {
            out.push(v as char);
            i += 3;
            continue;
        }
        let c = s[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// `campaign` for utm_ tags, `click-id` for ad click ids, else `subscriber`.
pub fn class_by_name(names: &[String]) -> &'static str {
    let campaign = |n: &str| n == "utm" || n.starts_with("utm_");
    let click = |n: &str| {
        ["clid", "clkid", "clickid", "click_id"]
            .iter()
            .any(|k| n.contains(k))
            || ["wbraid", "gbraid", "li_fat_id", "epik"].contains(&n)
    };
    if names.iter().all(|n| campaign(n)) {
        "campaign"
    } else if names.iter().all(|n| click(n)) {
        "click-id"
    } else {
        "subscriber"
    }
}

fn category(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| n.contains(w));
    if has(&[
        "facebook",
        "instagram",
        "twitter",
        "linkedin",
        "reddit",
        "pinterest",
        "tiktok",
        "vk.com",
    ]) {
        "social"
    } else if has(&[
        "doubleclick",
        "adservice",
        "adsystem",
        "criteo",
        "taboola",
        "outbrain",
    ]) {
        "advertising"
    } else if has(&["analytics", "matomo", "piwik"]) {
        "analytics"
    } else if has(&[
        "mailchimp",
        "hubspot",
        "sendgrid",
        "mailgun",
        "klaviyo",
        "sailthru",
    ]) {
        "esp"
    } else {
        "other"
    }
}

/// Where a redirect regex says the destination is.
pub struct Target {
    pub host: String,
    pub path: Option<String>,
    pub param: String,
}

/// The (host, path, parameter) triples of a ClearURLs redirection regex, whose first
/// capture group is the destination: only when that group is a query parameter's value.
pub fn redirect_targets(re: &str) -> Result<Vec<Target>, String> {
    let (hosts, rest) = url::split(re)?;
    let captures: Vec<usize> = rest
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n, Node::Group { capture: true, .. }))
        .map(|(i, _)| i)
        .collect();
    let [cap] = captures.as_slice() else {
        return Err("not exactly one capture group".into());
    };
    if rest.iter().any(|n| n != &rest[*cap] && has_capture(n))
        || match &rest[*cap] {
            Node::Group { alts, .. } => alts.iter().flatten().any(has_capture),
            _ => false,
        }
    {
        return Err("nested or extra capture groups".into());
    }
    if !rest[cap + 1..]
        .iter()
        .all(|n| *n == Node::End || pattern::is_any_run(n))
    {
        return Err("the destination is followed by more of the URL".into());
    }
    let before = &rest[..*cap];
    let Some((Node::Lit('='), before)) = before.split_last() else {
        return Err("the destination is not a query parameter's value".into());
    };
    let start = before
        .iter()
        .rposition(|n| !is_name_node(n))
        .map_or(0, |i| i + 1);
    if start == before.len() {
        return Err("no parameter name before the destination".into());
    }
    let params = pattern::globs(&before[start..], &|_| None)?;
    if params.iter().any(|p| p.contains('*')) {
        return Err("the parameter name is a pattern".into());
    }
    let mut prefix = before[..start].to_vec();
    let mut separated = false;
    while let Some(last) = prefix.last() {
        if pattern::is_any_run(last) || is_separator(last) {
            prefix.pop();
            separated = true;
        } else {
            break;
        }
    }
    if !separated && !matches!(prefix.last(), Some(Node::Lit('?'))) {
        return Err("the destination is not clearly in a query parameter".into());
    }
    let paths = if prefix.is_empty() {
        Vec::new()
    } else {
        url::paths(&prefix)?
    };
    let paths: Vec<Option<String>> = if paths.is_empty() {
        vec![None]
    } else {
        paths.into_iter().map(Some).collect()
    };
    let mut out = Vec::new();
    for host in &hosts {
        for path in &paths {
            for param in &params {
                out.push(Target {
                    host: host.clone(),
                    path: path.clone(),
                    param: param.clone(),
                });
            }
        }
    }
    Ok(out)
}

fn has_capture(n: &Node) -> bool {
    match n {
        Node::Group { capture, alts } => *capture || alts.iter().flatten().any(has_capture),
        Node::Repeat { node, .. } => has_capture(node),
        _ => false,
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']')
}

fn is_name_node(n: &Node) -> bool {
    match n {
        Node::Lit(c) => is_name_char(*c),
        Node::Group {
            capture: false,
            alts,
        } => alts.iter().all(|a| a.iter().all(is_name_node)),
        Node::Repeat {
            node,
            min: 0,
            max: Some(1),
        } => is_name_node(node),
        _ => false,
    }
}

/// `&`, `[?&]`, `(?:\?|&)`: the start of a parameter.
fn is_separator(n: &Node) -> bool {
    match n {
        Node::Lit('&') => true,
        Node::Class {
            negated: false,
            chars: Some(c),
        } => !c.is_empty() && c.iter().all(|c| matches!(c, '?' | '&')),
        Node::Group {
            capture: false,
            alts,
        } => alts
            .iter()
            .all(|a| matches!(a.as_slice(), [Node::Lit('?' | '&')])),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirections_with_a_parameter_translate() {
        let t = redirect_targets(
            r"^https?:\/\/(?:[a-z0-9-]+\.)*?out\.example\.com\/r\?.*?(?:url|to)=([^&]+)",
        )
        .unwrap();
        let got: Vec<(String, Option<String>, String)> =
            t.into_iter().map(|t| (t.host, t.path, t.param)).collect();
        assert_eq!(
            got,
            [
                ("out.example.com".into(), Some("/r?".into()), "url".into()),
                ("out.example.com".into(), Some("/r?".into()), "to".into()),
            ]
        );
        let t = redirect_targets(
            r"^https?:\/\/(?:[a-z0-9-]+\.)*?go\.example\.net\/?.*?[?&]u=(https?%3A[^&]*)",
        )
        .unwrap();
        assert_eq!(t[0].param, "u");
    }

    #[test]
    fn redirections_elsewhere_are_refused() {
        for re in [
            r"^https?:\/\/(?:[a-z0-9-]+\.)*?x\.example\/redirect\/(.*)",
            r"^https?:\/\/(?:[a-z0-9-]+\.)*?x\.example\/r\?a=(\d+)&u=([^&]*)",
            r"^https?:\/\/(?:[a-z0-9-]+\.)*?x\.example\/rurl=([^&]*)",
        ] {
            assert!(redirect_targets(re).is_err(), "{re}");
        }
    }

    #[test]
    fn names_are_percent_decoded_and_classified() {
        assert_eq!(names("(?:%3F)?fbclid").unwrap(), ["fbclid", "?fbclid"]);
        assert_eq!(class_by_name(&names("fbclid").unwrap()), "click-id");
        assert_eq!(class_by_name(&names("utm_.*").unwrap()), "campaign");
        assert_eq!(class_by_name(&names("mc_eid").unwrap()), "subscriber");
        assert!(names(".*").is_err());
    }
}
