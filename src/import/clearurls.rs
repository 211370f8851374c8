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
        "Every entry names its ClearURLs provider and rule. Names are matched whole and case-insensitively, as ClearURLs matches them:".into(),
        "as globs where the rule has an exact glob, else as the rule itself (`patterns`). A provider limited to a path gives `paths`;".into(),
        "one on an exact host gives `=host`. Exceptions become action = \"keep\" entries (parameters, pixels, redirects) on their hosts".into(),
        "and paths, read at least as widely as ClearURLs reads them (removing less, never more).".into(),
        "Not expressible, so listed as `# skipped:` lines: rawRules (they edit the URL text), redirections whose destination is not".into(),
        "a query parameter's value, and exceptions on every host or outside http(s). A rule never matches more than its source.".into(),
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
const EXCEPTION_KEEP_NOTE: &str = "A ClearURLs exception, as action = \"keep\": it also turns off other rules for these names on these hosts and paths (recipient-address detection still applies)";
const EXCEPTION_PIXEL_NOTE: &str = "A ClearURLs exception, as action = \"keep\": it also turns off other pixel rules for these URLs";
const EXCEPTION_REDIRECT_NOTE: &str = "A ClearURLs exception, as action = \"keep\": it also turns off other redirect rules for these URLs";

/// One `[[param]]` written for a provider: what a keep for its exceptions must name.
struct Imported {
    names: Vec<String>,
    patterns: Vec<String>,
    id: String,
}

fn provider(f: &mut RuleFile, name: &str, p: &Value, label: &str) {
    f.comment(&format!("---- ClearURLs provider \"{name}\" ----"));
    let mark = f.mark();
    let tracker = f.id(&["clearurls", name]);
    let entries_before = f.entries;
    let src =
        |what: &str| format!("ClearURLs data.min.json ({label}), provider \"{name}\", {what}");
    let what = |key: &str, i: usize, re: &str| format!("provider \"{name}\" {key}[{i}] \"{re}\"");
    let complete = p.get("completeProvider").and_then(Value::as_bool) == Some(true);
    f.considered += usize::from(complete)
        + [
            "rules",
            "referralMarketing",
            "rawRules",
            "exceptions",
            "redirections",
        ]
        .iter()
        .map(|k| strings(p, k).len())
        .sum::<usize>();
    let pattern = p.get("urlPattern").and_then(Value::as_str).unwrap_or("");
    let scope = if pattern.is_empty() {
        Err("the provider has no urlPattern".to_string())
    } else {
        url::scope(pattern).map_err(|e| format!("urlPattern \"{pattern}\": {e}"))
    };
    // Exceptions are read loosely (at least what the source says): matching more there
    // means removing less, never more.
    let exceptions = strings(p, "exceptions");
    let exception_scopes: Vec<Result<url::Scope, String>> = exceptions
        .iter()
        .map(|e| match url::loose_scope(e) {
            Ok(s) if s.hosts.is_empty() => Err("an exception for every host".into()),
            other => other,
        })
        .collect();
    let lost = exception_scopes.iter().filter(|s| s.is_err()).count();
    let lost_note = (lost > 0).then(|| {
        format!(
            "ClearURLs lists {lost} exception(s) for this provider that mailveil cannot express (see `# skipped:`): this rule applies there too"
        )
    });

    let mut pixels = 0;
    if complete {
        let pixel_note = format!(
            "ClearURLs blocks every request to this provider; mailveil removes what would load on open{}",
            lost_note
                .as_ref()
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

    let mut imported: Vec<Imported> = Vec::new();
    for (key, referral) in [("rules", false), ("referralMarketing", true)] {
        for (i, re) in strings(p, key).into_iter().enumerate() {
            let what = what(key, i, re);
            let s = match &scope {
                Err(e) => {
                    f.skip(&what, e);
                    continue;
                }
                Ok(s) => s,
            };
            let (names, patterns) = match names_or_pattern(re) {
                Ok(n) => n,
                Err(e) => {
                    f.skip(&what, &e);
                    continue;
                }
            };
            if let Some(other) = imported
                .iter()
                .find(|m| m.names == names && m.patterns == patterns)
            {
                // Not a loss: the names are removed already (as ClearURLs always removes `rules`).
                f.comment(&format!(
                    "duplicate: {what}: the same names as {}",
                    other.id
                ));
                continue;
            }
            let class = if referral {
                "campaign"
            } else if names.is_empty() {
                class_by_pattern(re)
            } else {
                class_by_name(&names)
            };
            let stem = names
                .first()
                .cloned()
                .unwrap_or_else(|| re.to_string())
                .replace('*', "");
            let id = f.id(&[&tracker, &stem]);
            f.param(&Param {
                id: &id,
                tracker: Some(&tracker),
                names: &names,
                patterns: &patterns,
                hosts: &s.hosts,
                paths: &s.paths,
                class,
                keep: false,
                source: &src(&format!("{key}[{i}] \"{re}\"")),
                note: lost_note.as_deref(),
            });
            imported.push(Imported {
                names,
                patterns,
                id,
            });
        }
    }

    let mut redirects = 0;
    let mut targets_seen: Vec<(String, Option<String>)> = Vec::new();
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
                    targets_seen.push((t.host.clone(), t.path.clone()));
                    let id = f.id(&[&tracker, "redirect", &t.param]);
                    f.redirect(
                        &id,
                        &tracker,
                        &t.host,
                        t.path.as_deref(),
                        &t.param,
                        &src(&format!("redirections[{i}] \"{re}\"")),
                        lost_note.as_deref(),
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
        let mut v: Vec<String> = imported.iter().flat_map(|m| m.names.clone()).collect();
        pattern::dedup(&mut v);
        v
    };
    let kept_patterns: Vec<String> = {
        let mut v: Vec<String> = imported.iter().flat_map(|m| m.patterns.clone()).collect();
        v.dedup();
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
        let hosts = keep_hosts(&s.hosts, provider);
        // A host-level exception of a provider limited to some paths keeps on those paths.
        let paths = if s.paths.is_empty() {
            provider.paths.clone()
        } else {
            s.paths.clone()
        };
        let mut kept = 0;
        if hosts.is_empty() {
            if pixels + imported.len() + redirects > 0 {
                f.comment(&format!(
                    "outside: {what}: not within this provider's URLs, nothing to except"
                ));
            }
            continue;
        }
        if pixels > 0 {
            for host in &hosts {
                for path in optional(&paths) {
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
        if !kept_names.is_empty() || !kept_patterns.is_empty() {
            let stem = hosts[0].replace(['*', '='], "");
            let id = f.id(&[&tracker, "except", &stem]);
            let class = if kept_names.is_empty() {
                "subscriber"
            } else {
                class_by_name(&kept_names)
            };
            f.param(&Param {
                id: &id,
                tracker: Some(&tracker),
                names: &kept_names,
                patterns: &kept_patterns,
                hosts: &hosts,
                paths: &paths,
                class,
                keep: true,
                source: &source,
                note: Some(EXCEPTION_KEEP_NOTE),
            });
            kept += 1;
        }
        if redirects > 0 {
            for host in &hosts {
                for path in optional(&paths) {
                    // Only where one of this provider's redirects applies.
                    if !targets_seen
                        .iter()
                        .any(|(h, p)| url::may_overlap(host, path, h, p.as_deref()))
                    {
                        continue;
                    }
                    let id = f.id(&[&tracker, "except", "redirect"]);
                    f.redirect_keep(
                        &id,
                        &tracker,
                        host,
                        path,
                        &source,
                        Some(EXCEPTION_REDIRECT_NOTE),
                    );
                    kept += 1;
                }
            }
        }
        if kept == 0 && pixels + imported.len() + redirects > 0 {
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

/// The hosts a keep for an exception names: the exception's hosts that lie within the
/// provider's, or the provider's that lie within the exception's (a keep never reaches
/// beyond the provider, where it would only turn other rules off).
fn keep_hosts(exception: &[String], provider: &url::Scope) -> Vec<String> {
    if provider.hosts.is_empty() {
        return exception.to_vec();
    }
    let mut out = Vec::new();
    for e in exception {
        for p in &provider.hosts {
            if url::host_within(e, p) {
                out.push(e.clone());
            } else if url::host_within(p, e) {
                out.push(p.clone());
            }
        }
    }
    pattern::dedup(&mut out);
    out
}

/// Name globs for a ClearURLs rule, or, when it has none, the rule itself as a pattern
/// (matched as ClearURLs matches it: the whole name, case-insensitive).
pub fn names_or_pattern(re: &str) -> Result<(Vec<String>, Vec<String>), String> {
    match names(re) {
        // A long list of globs (`[a-z]?mc` is 54 of them) reads better as its pattern.
        Ok(n) if n.len() > MAX_NAMES && mailveil_core::rules::check_name_pattern(re).is_ok() => {
            Ok((Vec::new(), vec![re.to_string()]))
        }
        Ok(n) => Ok((n, Vec::new())),
        Err(no_glob) => match mailveil_core::rules::check_name_pattern(re) {
            Ok(()) => Ok((Vec::new(), vec![re.to_string()])),
            Err(e) => Err(format!("{no_glob}, and as a pattern: {e}")),
        },
    }
}

/// More name globs than this for one rule are written as its pattern instead.
const MAX_NAMES: usize = 8;

/// The class of a rule imported as a pattern, from its text.
fn class_by_pattern(re: &str) -> &'static str {
    let r = re.to_ascii_lowercase();
    let r = r.strip_prefix("(?:%3f)?").unwrap_or(&r);
    if r.starts_with("utm") {
        "campaign"
    } else if r.contains("clid") || r.contains("clickid") {
        "click-id"
    } else {
        "subscriber"
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
    // Kept as written: ClearURLs tests decoded names, so `%3F` in a rule stands for the
    // three characters of a name that arrived as `%253F`, as it does here.
    let mut names: Vec<String> = pattern::globs(&[group], &|_| None)?;
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
        assert_eq!(names("(?:%3F)?fbclid").unwrap(), ["fbclid", "%3ffbclid"]);
        assert_eq!(class_by_name(&names("fbclid").unwrap()), "click-id");
        assert_eq!(class_by_name(&names("utm_.*").unwrap()), "campaign");
        assert_eq!(class_by_name(&names("mc_eid").unwrap()), "subscriber");
        assert!(names(".*").is_err());
    }
}
