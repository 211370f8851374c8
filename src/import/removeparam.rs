//! uBlock Origin / AdGuard filter lists, their `$removeparam` filters:
//! `[||domain^]$removeparam=NAME`, `$removeparam=/regex/[i]` (tested against `name=value`),
//! `$removeparam` alone (every parameter), `~` (every parameter but), `@@` (exceptions).

use super::clearurls::{check_name, class_by_name};
use super::out::{Param, RuleFile};
use super::pattern::{self, Node};
use super::url;
use std::collections::HashMap;

/// Content types a filter may name. A filter limited to some of them applies to a
/// clicked link only when `document` is among them.
const CONTENT_TYPES: &[&str] = &[
    "document",
    "doc",
    "subdocument",
    "frame",
    "script",
    "stylesheet",
    "css",
    "image",
    "media",
    "font",
    "object",
    "xmlhttprequest",
    "xhr",
    "websocket",
    "webrtc",
    "ping",
    "beacon",
    "other",
    "popup",
];

/// Why an exception is kept with `action = "keep"`, and what that also does.
const EXCEPTION_KEEP_NOTE: &str = "An exception (@@), as action = \"keep\": it also turns off other rules for the same names on these hosts (recipient-address detection still applies)";

/// One `$removeparam` filter.
struct Filter {
    /// `@@`: the parameters stay.
    exception: bool,
    /// mailveil host globs; empty: every host.
    hosts: Vec<String>,
    /// `None`: every parameter (`$removeparam` with no value).
    names: Option<Vec<String>>,
}

/// Converts the filter list `text`; `label` names the input file in every `source`.
pub fn import(text: &str, label: &str) -> RuleFile {
    let mut f = RuleFile::new(&[
        format!("Imported by `mailveil rules import removeparam` from {label}."),
        "Every entry names its line. mailveil matches parameter names case-insensitively, so a".into(),
        "`$removeparam=name` (case-sensitive in the source) also removes UTM_Source-style spellings of that name.".into(),
        "Exceptions (@@) on a domain become action = \"keep\" entries. Not expressible, so listed as `# skipped:`".into(),
        "lines: inverted (~) and remove-all filters, exceptions on every host, filters limited to pages, parties,".into(),
        "paths or non-document requests, and regexes without an exact glob.".into(),
    ]);
    f.blank();
    let mut in_if = 0usize;
    let mut others = 0usize;
    let mut parsed = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        super::work::tick(raw.len() + 1);
        let line = raw.trim();
        if line.starts_with("!#if") {
            in_if += 1;
            continue;
        }
        if line.starts_with("!#endif") {
            in_if = in_if.saturating_sub(1);
            continue;
        }
        if line.is_empty() || line.starts_with('!') || line.starts_with('[') {
            continue;
        }
        let Some((pattern, options)) = split_filter(line) else {
            others += 1;
            continue;
        };
        let result = if in_if > 0 {
            Err("inside a !#if block: meant for some platforms only".to_string())
        } else {
            filter(pattern, &options)
        };
        parsed.push((i + 1, line, result));
    }
    // What `@@||example.org^$removeparam` (every parameter) keeps: the names this list
    // removes there (by filters for every host, or for a domain that holds these hosts).
    let mut groups = Groups::default();
    for (_, _, r) in &parsed {
        if let Ok(Filter {
            exception: false,
            hosts,
            names: Some(names),
        }) = r
        {
            groups.add_removal(hosts, names);
        }
    }
    for (n, line, r) in &parsed {
        if let Ok(Filter {
            exception: true,
            hosts,
            names: None,
        }) = r
        {
            groups.cover(*n, line, hosts);
        }
    }
    for (n, line, result) in parsed {
        let what = format!("line {n} `{line}`");
        let source = format!("$removeparam list {label}, line {n}: {line}");
        let filter = match result {
            Err(why) => {
                f.skip(&what, &why);
                continue;
            }
            Ok(filter) => filter,
        };
        let names = match (&filter.names, filter.exception) {
            (Some(names), _) => names,
            (None, false) => {
                f.skip(&what, "removes every parameter (too broad)");
                continue;
            }
            (None, true) if !groups.covered.contains(&n) => {
                f.skip(&what, "no parameter rule of this list applies there");
                continue;
            }
            (None, true) => {
                groups.write_opened_at(n, &filter.hosts, label, &mut f);
                continue;
            }
        };
        let domain = filter
            .hosts
            .first()
            .map(|h| h.replace('*', ""))
            .unwrap_or_default();
        let keep = if filter.exception { "keep" } else { "" };
        let id = f.id(&["removeparam", &domain, keep, &names[0].replace('*', "")]);
        f.param(&Param {
            id: &id,
            tracker: None,
            names,
            patterns: &[],
            hosts: &filter.hosts,
            paths: &[],
            class: class_by_name(names),
            keep: filter.exception,
            source: &source,
            note: filter.exception.then_some(EXCEPTION_KEEP_NOTE),
        });
    }
    if others > 0 {
        f.comment(&format!(
            "{others} line(s) of {label} are not $removeparam filters and were left alone."
        ));
    }
    f
}

/// The removals of a list grouped by the hosts they apply to, and which exceptions for
/// every parameter (`@@||example.org^$removeparam`) each group covers. An exception keeps
/// the names of every group that covers its hosts; the exceptions one group covers share
/// one `keep` entry (the group's names, on all their hosts), written where the first of
/// them stands. So the output grows with the list, not with exceptions times names, and
/// finding the groups that cover a host looks up its parent domains only.
#[derive(Default)]
struct Groups {
    /// A group's hosts (empty: every host) to its index.
    index: HashMap<Vec<String>, usize>,
    list: Vec<Group>,
    /// A host named by a group to that group.
    by_host: HashMap<String, Vec<usize>>,
    /// An exception's line to the groups it is the first exception of.
    opened: HashMap<usize, Vec<usize>>,
    /// The lines of exceptions that some group covers.
    covered: std::collections::HashSet<usize>,
}

#[derive(Default)]
struct Group {
    hosts: Vec<String>,
    names: Vec<String>,
    /// The exceptions covered: their hosts, and `line N: TEXT` for the source.
    exception_hosts: Vec<String>,
    exception_lines: Vec<String>,
}

impl Groups {
    fn add_removal(&mut self, hosts: &[String], names: &[String]) {
        super::work::tick(hosts.len() + names.len());
        let next = self.list.len();
        let i = *self.index.entry(hosts.to_vec()).or_insert(next);
        if i == next {
            self.list.push(Group {
                hosts: hosts.to_vec(),
                ..Group::default()
            });
            for h in hosts {
                self.by_host.entry(h.clone()).or_default().push(i);
            }
        }
        self.list[i].names.extend_from_slice(names);
    }

    /// Records the exception on line `n` (hosts `hosts`) in every group that covers it.
    fn cover(&mut self, n: usize, line: &str, hosts: &[String]) {
        let Some(first) = hosts.first() else { return };
        // The groups that could hold `first`: for all hosts, the domain itself, a parent
        // domain, or `*.parent.*` (url::host_within); then checked exactly.
        let mut candidates: Vec<usize> = self.index.get(&Vec::new()).copied().into_iter().collect();
        for key in within_keys(first) {
            super::work::tick(key.len());
            candidates.extend(self.by_host.get(&key).into_iter().flatten());
        }
        candidates.sort_unstable();
        candidates.dedup();
        for g in candidates {
            let group = &mut self.list[g];
            super::work::tick(hosts.len() * group.hosts.len().max(1));
            let covers = group.hosts.is_empty()
                || hosts
                    .iter()
                    .all(|h| group.hosts.iter().any(|o| url::host_within(h, o)));
            if !covers {
                continue;
            }
            if group.exception_lines.is_empty() {
                self.opened.entry(n).or_default().push(g);
            }
            group.exception_hosts.extend_from_slice(hosts);
            group.exception_lines.push(format!("line {n}: {line}"));
            self.covered.insert(n);
        }
    }

    /// The `keep` entries of the groups whose first exception is on line `n`.
    fn write_opened_at(&mut self, n: usize, hosts: &[String], label: &str, f: &mut RuleFile) {
        let domain = hosts
            .first()
            .map(|h| h.replace('*', ""))
            .unwrap_or_default();
        for g in self.opened.remove(&n).unwrap_or_default() {
            let group = &mut self.list[g];
            let mut names = std::mem::take(&mut group.names);
            pattern::dedup(&mut names);
            let mut on = std::mem::take(&mut group.exception_hosts);
            pattern::dedup(&mut on);
            let lines = std::mem::take(&mut group.exception_lines);
            super::work::tick(names.len() + on.len() + lines.len());
            let id = f.id(&["removeparam", &domain, "keep", &names[0].replace('*', "")]);
            let source = format!("$removeparam list {label}, {}", lines.join("; "));
            f.param(&Param {
                id: &id,
                tracker: None,
                names: &names,
                patterns: &[],
                hosts: &on,
                paths: &[],
                class: class_by_name(&names),
                keep: true,
                source: &source,
                note: Some(EXCEPTION_KEEP_NOTE),
            });
        }
    }
}

/// The hosts `h` is within (url::host_within), as written in a group: `h` itself, each
/// parent domain, and `*` followed by each `.parent` (groups name no other `*` form).
fn within_keys(h: &str) -> impl Iterator<Item = String> + '_ {
    std::iter::once(h.to_string()).chain(
        h.match_indices('.')
            .flat_map(|(i, _)| [h[i + 1..].to_string(), format!("*{}", &h[i..])]),
    )
}

/// One filter, or why it is skipped.
fn filter(pattern: &str, options: &[String]) -> Result<Filter, String> {
    let (exception, pattern) = match pattern.strip_prefix("@@") {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let hosts = hosts(pattern)?;
    let mut names = None;
    for opt in options {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (opt.trim().to_ascii_lowercase(), None),
        };
        match key.as_str() {
            "removeparam" => names = Some(value_names(value.unwrap_or(""))?),
            "queryprune" => return Err("the old uBO $queryprune syntax".into()),
            "important" | "match-case" | "document" | "doc" => {}
            k if k.chars().all(|c| c == '_') => {} // noop
            k if k.starts_with('~')
                && CONTENT_TYPES.contains(&&k[1..])
                && !matches!(&k[1..], "document" | "doc") => {}
            k if CONTENT_TYPES.contains(&k) => {
                return Err(format!(
                    "limited to ${k} requests, and a link in a mail is a document"
                ));
            }
            "domain" | "from" => {
                return Err(
                    "limited to requests made from some pages ($domain), which a mail link is not"
                        .into(),
                );
            }
            "third-party" | "3p" | "~third-party" | "first-party" | "1p" | "~first-party"
            | "strict1p" | "strict3p" => {
                return Err(format!("${key} depends on the page a request comes from"));
            }
            "badfilter" => return Err("$badfilter cancels another filter".into()),
            _ => return Err(format!("the option ${key} has no mailveil equivalent")),
        }
    }
    let names = names.ok_or("no $removeparam option")?;
    if exception && hosts.is_empty() {
        return Err(
            "an exception on every host would turn off mailveil's own rules for these names everywhere"
                .into(),
        );
    }
    Ok(Filter {
        exception,
        hosts,
        names,
    })
}

/// The longest domain name (RFC 1035): a longer one is no host.
const MAX_DOMAIN: usize = 253;

/// `||example.com^` → `example.com` (the domain and its subdomains); `||example.*^` (an
/// entity: any suffix) → `example.*` and `*.example.*`; empty or `*` → every host.
fn hosts(pattern: &str) -> Result<Vec<String>, String> {
    if pattern.is_empty() || pattern == "*" {
        return Ok(Vec::new());
    }
    let domain = pattern
        .strip_prefix("||")
        .map(|d| d.strip_suffix('^').unwrap_or(d).to_ascii_lowercase());
    let (base, entity) = match &domain {
        Some(d) => match d.strip_suffix(".*") {
            Some(b) => (b, true),
            None => (d.as_str(), false),
        },
        None => ("", false),
    };
    let plain = !base.is_empty()
        && base.len() <= MAX_DOMAIN
        && (entity || base.contains('.'))
        && !base.starts_with('.')
        && !base.ends_with('.')
        && !base.contains("..")
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    if !plain {
        return Err(format!(
            "the URL pattern {pattern:?} is not a whole domain (||example.com^), and a [[param]] applies to whole hosts"
        ));
    }
    Ok(if entity {
        vec![format!("{base}.*"), format!("*.{base}.*")]
    } else {
        vec![base.to_string()]
    })
}

/// Name globs for a `$removeparam` value; `None` for every parameter (no value).
fn value_names(value: &str) -> Result<Option<Vec<String>>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.starts_with('~') {
        return Err("inverted: removes every parameter except the one named".into());
    }
    let names = if let Some(body) = value.strip_prefix('/') {
        let end = body.rfind('/').ok_or("a regex without its closing '/'")?;
        let flags = &body[end + 1..];
        if !flags.is_empty() && flags != "i" {
            return Err(format!("the regex flags {flags:?}"));
        }
        regex_names(&body[..end])?
    } else {
        let name = value.replace("\\,", ",").replace("\\$", "$");
        if name.contains('*') {
            return Err("a literal '*' in the name (a wildcard in mailveil)".into());
        }
        vec![name.to_ascii_lowercase()]
    };
    for n in &names {
        check_name(n)?;
    }
    Ok(Some(names))
}

/// Name globs for a regex tested against `name=value`: exact when the regex is
/// `^NAME=` (a whole name) or `^PREFIX` (names that start so); without `^` the name
/// must contain it. A regex that looks at values is refused.
fn regex_names(re: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for alt in pattern::parse(re)? {
        let mut core: &[Node] = &alt;
        let start = core.first() == Some(&Node::Start);
        if start {
            core = &core[1..];
        }
        let end = core.last() == Some(&Node::End);
        if end {
            core = &core[..core.len() - 1];
        }
        let lead = if start { "" } else { "*" };
        let globs = match core.iter().position(|n| *n == Node::Lit('=')) {
            Some(p) if p + 1 == core.len() => {
                if end {
                    return Err("matches only parameters with an empty value".into());
                }
                pattern::globs(&core[..p], &|_| None)?
                    .into_iter()
                    .map(|g| format!("{lead}{g}"))
                    .collect::<Vec<_>>()
            }
            Some(_) => return Err("looks at parameter values".into()),
            None => {
                if end {
                    return Err("anchored at the end of the value: looks at values".into());
                }
                pattern::globs(core, &|_| None)?
                    .into_iter()
                    .map(|g| format!("{lead}{g}*"))
                    .collect()
            }
        };
        out.extend(globs.into_iter().map(|g| g.replace("**", "*")));
    }
    pattern::dedup(&mut out);
    Ok(out)
}

/// How many `$` of a line may start its options.
const MAX_DOLLARS: usize = 8;

/// The URL pattern and the options of a filter with a `$removeparam` (or `$queryprune`)
/// option, after one of the first [`MAX_DOLLARS`] unescaped `$`; `None` for any other
/// line.
fn split_filter(line: &str) -> Option<(&str, Vec<String>)> {
    let unescaped = line
        .match_indices('$')
        .filter(|&(i, _)| i == 0 || line.as_bytes()[i - 1] != b'\\');
    // Each try splits the rest of the line: a bounded number of them keeps the work
    // linear (a real filter has its options after the first `$` or two).
    for (i, _) in unescaped.take(MAX_DOLLARS) {
        super::work::tick(line.len() - i);
        let options = split_options(&line[i + 1..]);
        let has = options.iter().any(|o| {
            let key = o
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            key == "removeparam" || key == "queryprune"
        });
        if has {
            return Some((&line[..i], options));
        }
    }
    None
}

/// Splits options at commas, except escaped ones (`\,`) and those inside a `/regex/`.
fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_re = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '/' if !in_re && (cur.ends_with('=') || cur.ends_with("=~")) => {
                in_re = true;
                cur.push(c);
            }
            '/' if in_re => {
                in_re = false;
                cur.push(c);
            }
            ',' if !in_re => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list of `n` filters of every kind: per-domain and global removals, exceptions
    /// for one name and for every parameter, repeated lines, long regexes, lines full of
    /// `$`.
    fn list(n: usize) -> String {
        let mut out = String::new();
        for i in 0..n {
            let line = match i % 8 {
                0 | 1 => format!("||d{i}.example^$removeparam=p{i}"),
                2 => format!("$removeparam=g{i}"),
                3 => format!("@@||e{i}.example^$removeparam"),
                4 => format!("@@||d{}.example^$removeparam=p{}", i - 4, i - 4),
                5 => "$removeparam=same".to_string(),
                6 => format!("$removeparam=/^(x{i}|y{i})_{}=/", "z".repeat(i % 64)),
                _ => format!("||w{i}.example^{}", "$x".repeat(i % 32)),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    fn steps_for(n: usize) -> (u64, usize, usize) {
        let text = list(n);
        let before = super::super::work::steps();
        let f = import(&text, "big.txt");
        let steps = super::super::work::steps() - before;
        let out = f.finish();
        (steps, text.len(), out.len())
    }

    /// The work (steps of the loops that depend on the input) grows linearly: doubling
    /// the list at most doubles it (give or take), and it stays within a small multiple
    /// of the input's size, as does the output.
    #[test]
    fn the_work_is_linear_in_the_input() {
        let (small, small_in, small_out) = steps_for(4_000);
        let (large, large_in, large_out) = steps_for(16_000);
        eprintln!(
            "removeparam import: {small_in} B in -> {small} steps, {small_out} B out; \
             {large_in} B in -> {large} steps, {large_out} B out"
        );
        assert!(
            large <= small * 4 * 11 / 10,
            "{small} steps, then {large} for 4x the input"
        );
        assert!(
            large <= 20 * large_in as u64,
            "{large} steps for {large_in} bytes"
        );
        assert!(
            large_out <= 20 * large_in,
            "{large_out} bytes written for {large_in}"
        );
    }

    #[test]
    fn regex_values_translate_when_exact() {
        assert_eq!(regex_names("^utm_").unwrap(), ["utm_*"]);
        assert_eq!(
            regex_names("^(gclid|fbclid)=").unwrap(),
            ["gclid", "fbclid"]
        );
        assert_eq!(regex_names("^a=|^b=").unwrap(), ["a", "b"]);
        assert_eq!(regex_names("mc_eid=").unwrap(), ["*mc_eid"]);
        assert!(regex_names("^utm_source=campaign$").is_err());
        assert!(regex_names("^utm_[a-z]+=").is_err());
        assert!(regex_names("^x$").is_err());
    }

    #[test]
    fn filters_split_at_the_option_dollar() {
        let (p, o) = split_filter(r"||x.example^$removeparam=/^a\,b$/,important").unwrap();
        assert_eq!(p, "||x.example^");
        assert_eq!(o, [r"removeparam=/^a\,b$/", "important"]);
        assert!(split_filter("||ads.example^$third-party").is_none());
    }
}
