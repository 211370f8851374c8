//! Writes one rule file in mailveil's TOML format (docs/rules.md), with `# skipped:` lines
//! for what the source said and the format cannot.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

/// The rule file being written.
pub struct RuleFile {
    text: String,
    ids: HashSet<String>,
    /// Per id base, the next `-N` to try: a base used many times costs one try each.
    next_suffix: HashMap<String, usize>,
    /// Entries written.
    pub entries: usize,
    /// `# skipped:` lines written.
    pub skipped: usize,
    /// Entries of the source looked at (rules, exceptions, redirections...), when the
    /// importer counts them: the skip rate is `skipped` of these.
    pub considered: usize,
}

/// One `[[param]]`.
pub struct Param<'a> {
    pub id: &'a str,
    pub tracker: Option<&'a str>,
    pub names: &'a [String],
    /// Names as anchored regular expressions.
    pub patterns: &'a [String],
    pub hosts: &'a [String],
    /// Path globs: only on these paths.
    pub paths: &'a [String],
    pub class: &'a str,
    /// `action = "keep"`: an exception, these parameters stay.
    pub keep: bool,
    pub source: &'a str,
    pub note: Option<&'a str>,
}

impl RuleFile {
    /// A file starting with `header` (comment lines, without `# `).
    pub fn new(header: &[String]) -> RuleFile {
        let mut f = RuleFile {
            text: String::new(),
            ids: HashSet::new(),
            next_suffix: HashMap::new(),
            entries: 0,
            skipped: 0,
            considered: 0,
        };
        for line in header {
            f.comment(line);
        }
        f
    }

    /// The TOML text.
    pub fn finish(self) -> String {
        self.text
    }

    /// A comment line.
    pub fn comment(&mut self, line: &str) {
        let _ = writeln!(self.text, "# {}", one_line(line));
    }

    /// A blank line, unless there is one already.
    pub fn blank(&mut self) {
        if !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
    }

    /// A `# skipped: WHAT: WHY` line.
    pub fn skip(&mut self, what: &str, why: &str) {
        self.skipped += 1;
        let _ = writeln!(
            self.text,
            "# skipped: {}: {}",
            one_line(what),
            one_line(why)
        );
    }

    /// An id built from `parts`, kebab-case, unique in this file (`-2`, `-3`... on reuse).
    pub fn id(&mut self, parts: &[&str]) -> String {
        let base = parts
            .iter()
            .map(|p| kebab(p))
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        if self.ids.insert(base.clone()) {
            return base;
        }
        let n = self.next_suffix.entry(base.clone()).or_insert(2);
        loop {
            super::work::tick(1);
            let id = format!("{base}-{n}");
            *n += 1;
            if self.ids.insert(id.clone()) {
                return id;
            }
        }
    }

    /// The current end of the text, for [`RuleFile::tracker_at`].
    pub fn mark(&self) -> usize {
        self.text.len()
    }

    /// A `[[tracker]]`, inserted at `mark` (so that it precedes the entries naming it).
    pub fn tracker_at(&mut self, mark: usize, id: &str, name: &str, category: &str, source: &str) {
        self.entries += 1;
        let mut tail = self.text.split_off(mark);
        if tail.starts_with('\n') {
            tail.remove(0);
        }
        self.text.push_str("[[tracker]]\n");
        self.kv("id", id);
        self.kv("name", name);
        self.kv("category", category);
        self.kv("source", source);
        self.text.push('\n');
        self.text.push_str(&tail);
    }

    /// A `[[param]]`.
    pub fn param(&mut self, p: &Param<'_>) {
        self.entries += 1;
        self.blank();
        self.text.push_str("[[param]]\n");
        self.kv("id", p.id);
        if let Some(t) = p.tracker {
            self.kv("tracker", t);
        }
        if !p.names.is_empty() {
            self.list("names", p.names);
        }
        if !p.patterns.is_empty() {
            self.list("patterns", p.patterns);
        }
        if !p.hosts.is_empty() {
            self.list("hosts", p.hosts);
        }
        if !p.paths.is_empty() {
            self.list("paths", p.paths);
        }
        self.kv("class", p.class);
        if p.keep {
            self.kv("action", "keep");
        }
        self.kv("source", p.source);
        if let Some(n) = p.note {
            self.kv("note", n);
        }
        self.text.push('\n');
    }

    /// A `[[redirect]]` whose destination is a plain (percent-encoded) query parameter.
    #[allow(clippy::too_many_arguments)]
    pub fn redirect(
        &mut self,
        id: &str,
        tracker: &str,
        host: &str,
        path: Option<&str>,
        param: &str,
        source: &str,
        note: Option<&str>,
    ) {
        self.entries += 1;
        self.blank();
        self.text.push_str("[[redirect]]\n");
        self.kv("id", id);
        self.kv("tracker", tracker);
        self.kv("host", host);
        if let Some(p) = path {
            self.kv("path", p);
        }
        self.text.push_str("opaque = false\n");
        self.kv("param", param);
        self.kv("encoding", "plain");
        self.kv("source", source);
        if let Some(n) = note {
            self.kv("note", n);
        }
        self.text.push('\n');
    }

    /// A `[[redirect]]` with `action = "keep"`: URLs that match are no redirect.
    pub fn redirect_keep(
        &mut self,
        id: &str,
        tracker: &str,
        host: &str,
        path: Option<&str>,
        source: &str,
        note: Option<&str>,
    ) {
        self.entries += 1;
        self.blank();
        self.text.push_str("[[redirect]]\n");
        self.kv("id", id);
        self.kv("tracker", tracker);
        self.kv("host", host);
        if let Some(p) = path {
            self.kv("path", p);
        }
        self.text.push_str("opaque = false\n");
        self.kv("action", "keep");
        self.kv("source", source);
        if let Some(n) = note {
            self.kv("note", n);
        }
        self.text.push('\n');
    }

    /// A `[[pixel]]`; `keep`: an exception, what matches stays.
    #[allow(clippy::too_many_arguments)]
    pub fn pixel(
        &mut self,
        id: &str,
        tracker: &str,
        host: &str,
        path: Option<&str>,
        keep: bool,
        source: &str,
        note: Option<&str>,
    ) {
        self.entries += 1;
        self.blank();
        self.text.push_str("[[pixel]]\n");
        self.kv("id", id);
        self.kv("tracker", tracker);
        self.kv("host", host);
        if let Some(p) = path {
            self.kv("path", p);
        }
        if keep {
            self.kv("action", "keep");
        }
        self.kv("source", source);
        if let Some(n) = note {
            self.kv("note", n);
        }
        self.text.push('\n');
    }

    fn kv(&mut self, key: &str, value: &str) {
        let _ = writeln!(self.text, "{key} = {}", toml_string(value));
    }

    fn list(&mut self, key: &str, values: &[String]) {
        let items: Vec<String> = values.iter().map(|v| toml_string(v)).collect();
        let _ = writeln!(self.text, "{key} = [{}]", items.join(", "));
    }
}

/// A TOML basic string.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text fit for one comment line: control characters (newlines included) become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Lowercase a-z, 0-9 and single dashes.
pub fn kebab(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_kebab_and_unique() {
        let mut f = RuleFile::new(&[]);
        assert_eq!(
            f.id(&["clearurls", "Amazon Search"]),
            "clearurls-amazon-search"
        );
        assert_eq!(
            f.id(&["clearurls", "amazon search"]),
            "clearurls-amazon-search-2"
        );
        assert_eq!(f.id(&["x", "__mk_*"]), "x-mk");
        assert_eq!(f.id(&["x-mk-2"]), "x-mk-2");
        assert_eq!(f.id(&["x", "mk"]), "x-mk-3", "x-mk-2 is taken");
        assert_eq!(f.id(&["x", "mk"]), "x-mk-4");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }
}
