//! Rules: what a tracker is, as data (docs/rules.md). Parsed from TOML text (or JSON the
//! build made of it), checked, then indexed once so that classifying a URL is a few hash
//! lookups, not a loop over rules. Reading files is the caller's job: this module takes
//! text.

mod exceptions;
mod glob;
#[allow(missing_docs)] // the format is documented field by field in docs/rules.md
pub mod schema;

use regex::bytes::{
    Regex as BytesRegex, RegexBuilder as BytesRegexBuilder, RegexSet as BytesRegexSet,
    RegexSetBuilder,
};
use schema::{PixelEntry, RuleFile, Str};
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
// Maps keyed only by what the operator's rule files hold (ids, tracker ids) and never
// probed with mail content use FxHash: SipHash was some 14% of a `mailveil filter`
// start (issue 17). Maps probed with a mail's hosts or parameter names keep SipHash
// ([`UrlGlobs`], [`NameSets`]): a sender must not be able to aim at their buckets.
use rustc_hash::{FxHashMap, FxHashSet};

pub use schema::{
    Category, ParamClass, ParamEntry, PolicyEntry, RedirectEncoding, RedirectEntry, RemoteChoice,
    RuleAction, SignedChoice,
};

/// One rule file's text and where it came from (a path, or `shipped:NAME`).
#[derive(Debug, Clone)]
pub struct RuleSource {
    /// Shown in errors and in `rules explain`.
    pub name: String,
    /// The TOML text: shared, not copied, by the rule set that keeps it for
    /// [`Rules::locate`] (issue 17).
    pub text: RuleText,
}

/// A rule file's text: the binary's own for the shipped files, borrowed and never
/// copied (a `filter` process would copy 131 KB of them at every start, a third of its
/// heap), or shared by every holder for the others.
#[derive(Debug, Clone)]
pub enum RuleText {
    /// Built into the binary.
    Static(&'static str),
    /// Read at run time (a rule directory, a test, an import).
    Shared(Arc<str>),
}

impl std::ops::Deref for RuleText {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            RuleText::Static(s) => s,
            RuleText::Shared(s) => s,
        }
    }
}

impl From<&str> for RuleText {
    fn from(text: &str) -> Self {
        RuleText::Shared(text.into())
    }
}

impl From<String> for RuleText {
    fn from(text: String) -> Self {
        RuleText::Shared(text.into())
    }
}

/// A rule file that could not be used, with the line it broke on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct RuleError {
    /// The source name.
    pub file: String,
    /// 1-based line (0 when the error is not tied to a line).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// A known tracker or ESP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    /// Stable id.
    pub id: Str<'static>,
    /// Display name.
    pub name: Str<'static>,
    /// What it is.
    pub category: Category,
}

/// A rule that matched a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleMatch<'r> {
    /// The rule id.
    pub rule: &'r str,
    /// The tracker's display name.
    pub tracker: &'r str,
    /// The file the rule came from.
    pub file: &'r str,
}

/// A compiled redirect rule.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// Where the destination is and how it is encoded.
    pub entry: RedirectEntry<'static>,
    file: Arc<str>,
}

/// A compiled parameter rule.
#[derive(Debug, Clone)]
pub struct Param {
    /// The entry as written.
    pub entry: ParamEntry<'static>,
    hosts: Option<Vec<glob::HostGlob>>,
    paths: Option<Vec<glob::PathGlob>>,
    file: Arc<str>,
}

/// How many rules of each kind a rule set holds (`mailveil rules stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// `[[tracker]]` entries.
    pub trackers: usize,
    /// `[[pixel]]` entries (`action = "keep"` ones included).
    pub pixels: usize,
    /// `[[redirect]]` entries.
    pub redirects: usize,
    /// ... of which opaque (their destination is known to the ESP only).
    pub opaque_redirects: usize,
    /// ... of which opaque but unwrapped when a candidate parameter carries the destination.
    pub plain_view_redirects: usize,
    /// `[[param]]` entries.
    pub params: usize,
    /// ... of which limited to some hosts.
    pub site_params: usize,
    /// ... of which limited to some paths.
    pub path_params: usize,
    /// ... of which name their parameters by regular expression.
    pub pattern_params: usize,
    /// Entries of any kind with `action = "keep"` (exceptions).
    pub keeps: usize,
    /// `[[allow]]`, `[[policy]]` and `[[functional]]` entries.
    pub allows: usize,
    /// `[[policy]]` entries.
    pub policies: usize,
    /// `[[functional]]` entries.
    pub functional: usize,
}

/// The compiled rule set.
#[derive(Debug, Clone)]
pub struct Rules {
    trackers: FxHashMap<Str<'static>, Tracker>,
    pixels: Vec<(PixelEntry<'static>, Arc<str>)>,
    pixel_set: UrlGlobs,
    redirects: Vec<Redirect>,
    redirect_set: UrlGlobs,
    params: Vec<Param>,
    /// Parameter names: globs and patterns (see [`NameSets`]).
    param_set: NameSets,
    functional_count: usize,
    /// Where each entry id was defined (the last definition wins): an index in `files`.
    /// Built from the files' TOML the first time it is asked for (`rules explain`), not
    /// at every start: a copy of every id in a map was a fifth of a `filter` process's
    /// heap (issue 17).
    locations: OnceLock<FxHashMap<String, usize>>,
    /// Each file's name and text: the line of an id is found when asked for, not at
    /// every start (issue 17).
    files: Vec<(Arc<str>, RuleText)>,
    allows: Vec<exceptions::Allow>,
    policies: Vec<exceptions::Policy>,
    /// `[[functional]]` words (lowercased) and hosts.
    functional_words: Vec<(String, Str<'static>)>,
    functional_hosts: Option<Vec<glob::HostGlob>>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules::compile(&[]).expect("the empty rule set compiles")
    }
}

impl Rules {
    /// Compiles rule files in order; an entry with the id of an earlier one replaces it
    /// (that is how user files override shipped rules). Any error fails the whole set.
    pub fn compile(sources: &[RuleSource]) -> Result<Rules, RuleError> {
        let mut files = Vec::with_capacity(sources.len());
        for src in sources {
            files.push((src, parse(src)?));
        }
        check(&files)?;
        assemble(files)
    }

    /// Compiles what can be compiled: a broken file is left out and its error returned,
    /// so that a typo in one file never stops mail.
    pub fn compile_lenient(sources: &[RuleSource]) -> (Rules, Vec<RuleError>) {
        Rules::compile_parsed_lenient(sources.iter().map(|s| (s, parse(s))).collect())
    }

    /// [`Rules::compile_lenient`] of files already read ([`parse`], [`parse_prepared`]),
    /// or the error that reading one gave, in layer order.
    pub fn compile_parsed_lenient(
        parsed: Vec<(&RuleSource, Result<RuleFile<'static>, RuleError>)>,
    ) -> (Rules, Vec<RuleError>) {
        let mut errors = Vec::new();
        let mut files: Vec<(&RuleSource, RuleFile<'static>)> = Vec::new();
        for (src, file) in parsed {
            match file {
                Ok(file) => files.push((src, file)),
                Err(e) => errors.push(e),
            }
        }
        // Entries may name trackers of any file, so the set is built whole; a file that
        // breaks it is left out and the rest built again.
        loop {
            match check(&files) {
                Ok(()) => {
                    return match assemble(files) {
                        Ok(rules) => (rules, errors),
                        Err(e) => {
                            errors.push(e);
                            (Rules::default(), errors)
                        }
                    };
                }
                Err(e) => {
                    let before = files.len();
                    files.retain(|(src, _)| src.name != e.file);
                    errors.push(e);
                    if files.len() == before {
                        return (Rules::default(), errors);
                    }
                }
            }
        }
    }

    /// The `[[allow]]` entry that exempts mail from one of these senders, if any.
    pub fn allowed_sender(&self, senders: &[String]) -> Option<&str> {
        self.allows
            .iter()
            .find(|a| senders.iter().any(|s| a.sender(s)))
            .map(|a| a.entry.id.as_str())
    }

    /// The `[[functional]]` rule whose word appears in `folded` (lowercased, accents
    /// folded) text, or whose host is `host`: its id.
    pub fn functional_match(&self, folded: &str, host: Option<&str>) -> Option<&str> {
        if let Some(h) = host
            && let Some(set) = &self.functional_hosts
            && set.iter().any(|g| g.matches(&lowercase(h)))
        {
            return Some("host");
        }
        self.functional_words
            .iter()
            .find(|(w, _)| folded.contains(w.as_str()))
            .map(|(_, id)| id.as_str())
    }

    /// Whether any `[[allow]]` entry exists (the common case is none: skip the checks).
    pub fn has_allows(&self) -> bool {
        !self.allows.is_empty()
    }

    /// The `[[allow]]` entry that exempts this URL (by host or URL glob), if any.
    pub fn allowed_url(&self, host: &str, url: &str) -> Option<&str> {
        if self.allows.is_empty() {
            return None;
        }
        self.allows
            .iter()
            .find(|a| a.url(host, url))
            .map(|a| a.entry.id.as_str())
    }

    /// The `[[policy]]` entries that apply to a mail from `senders` (envelope and
    /// header) to one envelope `recipient` (`None`: no recipient known, so only entries
    /// without `recipients` can apply), in the order they were defined. Recipients are
    /// envelope recipients only: a header is the sender's to write.
    pub fn policies_for<'a>(
        &'a self,
        senders: &'a [String],
        recipient: Option<&'a str>,
    ) -> impl Iterator<Item = &'a PolicyEntry<'static>> + 'a {
        self.policies
            .iter()
            .filter(move |p| p.applies(senders, recipient))
            .map(|p| &p.entry)
    }

    /// The file and line where the entry with this id is defined.
    pub fn locate(&self, id: &str) -> Option<(&str, usize)> {
        let locations = self.locations.get_or_init(|| {
            let mut locations = FxHashMap::default();
            for (n, (name, text)) in self.files.iter().enumerate() {
                let src = RuleSource {
                    name: name.to_string(),
                    text: text.clone(),
                };
                // Every file here was read and checked when the set was built.
                for id in parse(&src).iter().flat_map(ids) {
                    locations.insert(id.to_string(), n);
                }
            }
            locations
        });
        let (name, text) = &self.files[*locations.get(id)?];
        Some((name, find_line(text, id)))
    }

    /// The known tracker with this id.
    pub fn tracker(&self, id: &str) -> Option<&Tracker> {
        self.trackers.get(id)
    }

    /// Number of trackers, pixel, redirect and parameter rules.
    pub fn stats(&self) -> (usize, usize, usize, usize) {
        (
            self.trackers.len(),
            self.pixels.len(),
            self.redirects.len(),
            self.params.len(),
        )
    }

    /// How many rules of each kind the set holds.
    pub fn summary(&self) -> Summary {
        let keep = |a: RuleAction| a == RuleAction::Keep;
        Summary {
            trackers: self.trackers.len(),
            pixels: self.pixels.len(),
            redirects: self.redirects.len(),
            opaque_redirects: self.redirects.iter().filter(|r| r.entry.opaque).count(),
            plain_view_redirects: self
                .redirects
                .iter()
                .filter(|r| r.entry.opaque && r.entry.candidate_params().next().is_some())
                .count(),
            params: self.params.len(),
            site_params: self.params.iter().filter(|p| p.hosts.is_some()).count(),
            path_params: self.params.iter().filter(|p| p.paths.is_some()).count(),
            pattern_params: self
                .params
                .iter()
                .filter(|p| !p.entry.patterns.is_empty())
                .count(),
            keeps: self.pixels.iter().filter(|(e, _)| keep(e.action)).count()
                + self
                    .redirects
                    .iter()
                    .filter(|r| keep(r.entry.action))
                    .count()
                + self.params.iter().filter(|p| keep(p.entry.action)).count(),
            allows: self.allows.len(),
            policies: self.policies.len(),
            functional: self.functional_count,
        }
    }

    /// The pixel rule matching `host` + `path_and_query` (lowercased by the caller or not).
    pub fn match_pixel(&self, host: &str, path_and_query: &str) -> Option<RuleMatch<'_>> {
        let matches = self.pixel_set.matches(host, path_and_query);
        // A matching rule whose action is `keep` (a user override) wins: leave it.
        if matches
            .iter()
            .any(|&i| self.pixels[i].0.action == RuleAction::Keep)
        {
            return None;
        }
        let idx = *matches.first()?;
        let (entry, file) = &self.pixels[idx];
        Some(RuleMatch {
            rule: &entry.id,
            tracker: self.tracker_name(&entry.tracker),
            file,
        })
    }

    /// The redirect rules matching a URL, most specific (longest pattern) first; none
    /// when a matching rule says `action = "keep"` (an exception).
    pub fn match_redirect(&self, host: &str, path_and_query: &str) -> Vec<&Redirect> {
        let mut found: Vec<&Redirect> = self
            .redirect_set
            .matches(host, path_and_query)
            .into_iter()
            .map(|i| &self.redirects[i])
            .collect();
        if found.iter().any(|r| r.entry.action == RuleAction::Keep) {
            return Vec::new();
        }
        found.sort_by_key(|r| {
            std::cmp::Reverse(r.entry.host.len() + r.entry.path.as_deref().map_or(0, str::len))
        });
        found
    }

    /// The parameter rules whose names match `name` and whose hosts include `host`, not
    /// counting those limited to some paths (the path is not known here); none when a
    /// matching rule says `action = "keep"`. See [`Rules::match_params_at`].
    pub fn match_params(&self, host: &str, name: &str) -> impl Iterator<Item = &Param> {
        let found: Vec<&Param> = self
            .match_params_at(host, "", name)
            .filter(|p| p.paths.is_none())
            .collect();
        found.into_iter()
    }

    /// The parameter rules whose names match `name` and whose hosts and paths include
    /// `host` and `path_and_query`; none when a matching rule says `action = "keep"` (a
    /// user override, an exception).
    pub fn match_params_at(
        &self,
        host: &str,
        path_and_query: &str,
        name: &str,
    ) -> impl Iterator<Item = &Param> {
        let host = lowercase(host);
        let matches = self.param_set.matching(name);
        let mut path: Option<String> = None;
        let found: Vec<&Param> = matches
            .into_iter()
            .map(|i| &self.params[i])
            .filter(|p| {
                p.hosts
                    .as_ref()
                    .is_none_or(|h| h.iter().any(|g| g.matches(&host)))
            })
            .filter(|p| {
                p.paths.as_ref().is_none_or(|set| {
                    let path = path.get_or_insert_with(|| path_key(path_and_query));
                    set.iter().any(|g| g.matches_prefix(path))
                })
            })
            .collect();
        let keep = found.iter().any(|p| p.entry.action == RuleAction::Keep);
        found.into_iter().filter(move |_| !keep)
    }

    /// The id of an `action = "keep"` parameter rule (an exception) that keeps the
    /// parameter `name` on this host and path, if any.
    pub fn param_exception(&self, host: &str, path_and_query: &str, name: &str) -> Option<&str> {
        let host = host.to_ascii_lowercase();
        let path = path_key(path_and_query);
        self.param_set
            .matching(name)
            .into_iter()
            .map(|i| &self.params[i])
            .filter(|p| p.entry.action == RuleAction::Keep)
            .find(|p| {
                p.hosts
                    .as_ref()
                    .is_none_or(|h| h.iter().any(|g| g.matches(&host)))
                    && p.paths
                        .as_ref()
                        .is_none_or(|s| s.iter().any(|g| g.matches_prefix(&path)))
            })
            .map(|p| p.entry.id.as_str())
    }

    /// The `[[param]]` entry with this id.
    pub fn param_entry(&self, id: &str) -> Option<&ParamEntry<'static>> {
        self.params
            .iter()
            .find(|p| p.entry.id == id)
            .map(|p| &p.entry)
    }

    /// The `[[redirect]]` entry with this id.
    pub fn redirect_entry(&self, id: &str) -> Option<&RedirectEntry<'static>> {
        self.redirects
            .iter()
            .find(|r| r.entry.id == id)
            .map(|r| &r.entry)
    }

    /// The id of an `action = "keep"` redirect rule (an exception) matching this URL.
    pub fn redirect_exception(&self, host: &str, path_and_query: &str) -> Option<&str> {
        self.redirect_set
            .matches(host, path_and_query)
            .into_iter()
            .map(|i| &self.redirects[i].entry)
            .find(|e| e.action == RuleAction::Keep)
            .map(|e| e.id.as_str())
    }

    /// The display name of a tracker id (the id itself if unknown).
    pub fn tracker_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.trackers.get(id).map_or(id, |t| t.name.as_str())
    }
}

impl Redirect {
    /// The file this rule came from.
    pub fn file(&self) -> &str {
        &self.file
    }
}

impl Param {
    /// The file this rule came from.
    pub fn file(&self) -> &str {
        &self.file
    }
    /// Whether the parameter is an aggregate campaign tag.
    pub fn is_campaign(&self) -> bool {
        self.entry.class == ParamClass::Campaign
    }

    /// Whether the parameter only measures a campaign or a click (`campaign`,
    /// `click-id`): no link needs it to work, unlike a subscriber id.
    pub fn is_analytics(&self) -> bool {
        matches!(self.entry.class, ParamClass::Campaign | ParamClass::ClickId)
    }
}

/// The string rule patterns are matched against: `host` + `/path?query`, lowercased.
fn url_key(host: &str, path_and_query: &str) -> String {
    let mut key = String::with_capacity(host.len() + path_and_query.len() + 1);
    key.push_str(&host.to_ascii_lowercase());
    if !path_and_query.starts_with('/') {
        key.push('/');
    }
    key.push_str(&path_and_query.to_ascii_lowercase());
    key
}

/// The path and query as path globs are matched against: lowercased, with a `/`.
fn path_key(path_and_query: &str) -> String {
    let lower = path_and_query.to_ascii_lowercase();
    if lower.starts_with('/') {
        lower
    } else {
        format!("/{lower}")
    }
}

/// `s` lowercased (ASCII), copied only when it has an uppercase letter.
fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// The host and path globs of the pixel or the redirect rules, indexed by what the host
/// of a matching URL must hold (a dot-suffix, or a first label). Most URLs' hosts name
/// no bucket and are decided by a few hash lookups, without building the rule key.
/// Matches what the regex `^{host_regex}{path_regex}` over [`url_key`] matched.
#[derive(Debug, Clone, Default)]
struct UrlGlobs {
    /// Unique to the set as built (0: the empty default).
    id: u64,
    globs: Vec<(glob::HostGlob, glob::PathGlob)>,
    // Fx, like the other tables built from the rules: their keys come from the rule
    // files, never from mail, and SipHash was a sixth of every lookup by host.
    by_suffix: FxHashMap<String, Vec<usize>>,
    by_label: FxHashMap<String, Vec<usize>>,
    always: Vec<usize>,
}

impl UrlGlobs {
    fn new<'a>(rules: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> UrlGlobs {
        // Sized once: grown entry by entry, the rules and the index were copied and
        // rehashed over and over at every start (issue 17).
        let n = rules.size_hint().0;
        let mut set = UrlGlobs {
            id: next_set_id(),
            globs: Vec::with_capacity(n),
            by_suffix: FxHashMap::with_capacity_and_hasher(n, Default::default()),
            ..UrlGlobs::default()
        };
        for (i, (host, path)) in rules.enumerate() {
            let host = glob::HostGlob::new(host);
            if let Some(k) = host.suffix_key().filter(|k| k.contains('.')) {
                set.by_suffix.entry(k.to_string()).or_default().push(i);
            } else if let Some(k) = host.label_key() {
                set.by_label.entry(k.to_string()).or_default().push(i);
            } else if let Some(k) = host.suffix_key() {
                set.by_suffix.entry(k.to_string()).or_default().push(i);
            } else {
                set.always.push(i);
            }
            set.globs.push((host, glob::PathGlob::new(path)));
        }
        set
    }

    /// The indices of the rules matching, in ascending order.
    fn matches(&self, host: &str, path_and_query: &str) -> Vec<usize> {
        let lower = lowercase(host);
        // Host globs hold no `/`: the host part of the key ends at its first `/`.
        let h = lower.split('/').next().unwrap_or_default();
        // Candidates whose host glob matches; the path is looked at only for those (most
        // URLs have none: no key is built, nothing is allocated).
        let mut found = self.remembered_candidates(h);
        if found.is_empty() {
            return found;
        }
        if h.len() == lower.len() {
            found.retain(|&i| self.globs[i].1.matches_url_path(path_and_query));
        } else {
            // A `/` in the host (no parser gives one): the rest of it starts the path.
            let key = url_key(host, path_and_query);
            let path = &key[h.len()..];
            found.retain(|&i| self.globs[i].1.matches_prefix(path));
        }
        found
    }

    /// [`Self::candidates`], remembered for the hosts this thread has met lately in
    /// this set: the links and images of a mail share a few hosts, and matching the host
    /// globs was most of a rule match (issue 17). The candidates are a function of the
    /// set (named by its `id`, which a clone shares with its identical original) and
    /// the host alone; the memo holds [`MEMO_SETS`] sets, the ones met last.
    fn remembered_candidates(&self, h: &str) -> Vec<usize> {
        type Hosts = crate::memo::SetMemos<Box<[usize]>>;
        thread_local! {
            static MEMO: std::cell::RefCell<Hosts> = const {
                std::cell::RefCell::new(Hosts::new(MEMO_SETS, MEMO_HOST_BYTES, MEMO_HOST_LEN))
            };
        }
        if self.globs.is_empty() {
            return Vec::new();
        }
        MEMO.with_borrow_mut(|memo| {
            memo.get(self.id, h, |h| self.candidates(h).into_boxed_slice())
                .into_vec()
        })
    }

    /// The rules whose host glob matches the lowercase host `h`, in ascending order.
    fn candidates(&self, h: &str) -> Vec<usize> {
        let mut found: Vec<usize> = Vec::new();
        let mut take = |list: &[usize]| {
            found.extend(list.iter().filter(|&&i| self.globs[i].0.matches(h)));
        };
        take(&self.always);
        let mut suffix = h;
        loop {
            if let Some(list) = self.by_suffix.get(suffix) {
                take(list);
            }
            match suffix.split_once('.') {
                Some((_, rest)) => suffix = rest,
                None => break,
            }
        }
        if let Some((label, _)) = h.split_once('.')
            && let Some(list) = self.by_label.get(label)
        {
            take(list);
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// How many rule sets [`UrlGlobs::remembered_candidates`] and [`NameSets::matching`]
/// hold per thread, how many bytes of hosts (names) for each, and the longest host (the
/// longest DNS name) and name they keep.
const MEMO_SETS: usize = 8;
const MEMO_HOST_BYTES: usize = 64 * 1024;
const MEMO_HOST_LEN: usize = 253;
const MEMO_NAME_BYTES: usize = 16 * 1024;
const MEMO_NAME_LEN: usize = 64;

/// Names each [`UrlGlobs`] and [`NameSets`] built, for the memos of their answers.
static NEXT_SET_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_set_id() -> u64 {
    NEXT_SET_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Reads a rule file's TOML; an error says where.
pub fn parse(src: &RuleSource) -> Result<RuleFile<'static>, RuleError> {
    toml::from_str::<RuleFile<'_>>(&src.text)
        .map(RuleFile::into_owned)
        .map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_col(&src.text, s.start));
            RuleError {
                file: src.name.clone(),
                line,
                column,
                message: e.message().to_string(),
            }
        })
}

/// Reads a rule file from `prepared`, what the build made of its TOML text (the shipped
/// rules) in postcard, a compact binary form of the same structures: it reads in half
/// the instructions JSON took (1.18 against 2.26 M for the shipped set) and TOML takes
/// far more, and every `mailveil filter` process reads the shipped rules (issue 17). When the bytes do not fit the format (a build from
/// another version, a file the build could not read), the TOML is read instead, so that
/// an error has the line of the file.
pub fn parse_prepared(
    src: &RuleSource,
    prepared: &'static [u8],
) -> Result<RuleFile<'static>, RuleError> {
    postcard::from_bytes(prepared).or_else(|_| parse(src))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Entries keyed by id, later files replacing earlier ones, in the order their ids were
/// first defined.
/// Ids are borrowed where the entries are (checking), owned where they are moved in.
struct Layered<'s, T> {
    slots: Vec<(T, &'s str)>,
    index: FxHashMap<Cow<'s, str>, usize>,
}

impl<'s, T> Layered<'s, T> {
    fn new() -> Self {
        Self::with_capacity(0)
    }
    /// Room for `n` entries: the maps of a load are sized once, never grown (issue 17).
    fn with_capacity(n: usize) -> Self {
        Layered {
            slots: Vec::with_capacity(n),
            index: FxHashMap::with_capacity_and_hasher(n, Default::default()),
        }
    }
    fn insert(&mut self, id: impl Into<Cow<'s, str>>, value: T, file: &'s str) {
        let id = id.into();
        match self.index.get(&*id) {
            Some(&i) => self.slots[i] = (value, file),
            None => {
                self.index.insert(id, self.slots.len());
                self.slots.push((value, file));
            }
        }
    }
    fn into_vec(self) -> Vec<(T, &'s str)> {
        self.slots
    }
}

/// One kind of entry (`kind`, keyed by `id`) moved out of every file and layered, sized
/// once (issue 17).
fn layer<'s, T>(
    files: &mut [(&'s RuleSource, RuleFile<'static>)],
    kind: for<'f> fn(&'f mut RuleFile<'static>) -> &'f mut Vec<T>,
    id: fn(&T) -> &Str<'static>,
) -> Layered<'s, T> {
    let mut layered = Layered::with_capacity(files.iter_mut().map(|(_, f)| kind(f).len()).sum());
    for (src, file) in files {
        for e in std::mem::take(kind(file)) {
            layered.insert(id(&e).0.clone(), e, src.name.as_str());
        }
    }
    layered
}

/// Every entry id of a file, kind by kind.
fn ids<'f>(file: &'f RuleFile<'_>) -> impl Iterator<Item = &'f str> {
    file.tracker
        .iter()
        .map(|e| e.id.as_str())
        .chain(file.pixel.iter().map(|e| e.id.as_str()))
        .chain(file.redirect.iter().map(|e| e.id.as_str()))
        .chain(file.param.iter().map(|e| e.id.as_str()))
        .chain(file.allow.iter().map(|e| e.id.as_str()))
        .chain(file.policy.iter().map(|e| e.id.as_str()))
        .chain(file.functional.iter().map(|e| e.id.as_str()))
}

/// The first error of a set of files, with its file and line: each file's ids, hosts,
/// redirects and parameter names in turn, then rules naming a tracker that no file
/// defines. It borrows the files, so that a lenient compile can leave the broken one
/// out and check the rest again; [`assemble`] then moves the entries, not copies them.
fn check(files: &[(&RuleSource, RuleFile)]) -> Result<(), RuleError> {
    let mut trackers = FxHashSet::default();
    for (src, file) in files {
        check_file(src, file)?;
        trackers.extend(file.tracker.iter().map(|e| e.id.as_str()));
    }
    // When every entry names a known tracker, so does every entry that is kept: which
    // one a later file replaces matters only when some entry does not (issue 17).
    let known = |t: &str| trackers.contains(t);
    if files.iter().all(|(_, f)| {
        f.pixel.iter().all(|e| known(&e.tracker))
            && f.redirect.iter().all(|e| known(&e.tracker))
            && f.param
                .iter()
                .all(|e| e.tracker.as_deref().is_none_or(known))
    }) {
        return Ok(());
    }
    check_trackers(files, &trackers)
}

/// The first entry, of those that later files do not replace, naming a tracker not in
/// `trackers`.
fn check_trackers(
    files: &[(&RuleSource, RuleFile)],
    trackers: &FxHashSet<&str>,
) -> Result<(), RuleError> {
    let mut pixels: Layered<&PixelEntry> = Layered::new();
    let mut redirects: Layered<&RedirectEntry> = Layered::new();
    let mut params: Layered<&ParamEntry> = Layered::new();
    for (src, file) in files {
        for e in &file.pixel {
            pixels.insert(e.id.as_str(), e, &src.name);
        }
        for e in &file.redirect {
            redirects.insert(e.id.as_str(), e, &src.name);
        }
        for e in &file.param {
            params.insert(e.id.as_str(), e, &src.name);
        }
    }
    let unknown = |id: &str, tracker: &str, file: &str| RuleError {
        file: file.to_string(),
        line: files
            .iter()
            .find(|(s, _)| s.name == file)
            .map_or(0, |(s, _)| find_line(&s.text, id)),
        column: 1,
        message: format!("rule {id:?} names tracker {tracker:?}, which no [[tracker]] defines"),
    };
    for (e, f) in pixels.into_vec() {
        if !trackers.contains(e.tracker.as_str()) {
            return Err(unknown(&e.id, &e.tracker, f));
        }
    }
    for (e, f) in redirects.into_vec() {
        if !trackers.contains(e.tracker.as_str()) {
            return Err(unknown(&e.id, &e.tracker, f));
        }
    }
    for (e, f) in params.into_vec() {
        if let Some(t) = &e.tracker
            && !trackers.contains(t.as_str())
        {
            return Err(unknown(&e.id, t, f));
        }
    }
    Ok(())
}

/// The errors of one file on its own: ids (kebab-case, each once), hosts, redirects,
/// parameter names and patterns.
fn check_file(src: &RuleSource, file: &RuleFile) -> Result<(), RuleError> {
    let err = |id: &str, message: String| RuleError {
        file: src.name.clone(),
        line: find_line(&src.text, id),
        column: 1,
        message,
    };
    let mut seen = FxHashSet::default();
    for id in ids(file) {
        check_id(id).map_err(|m| err(id, m))?;
        if !seen.insert(id) {
            return Err(err(id, format!("id {id:?} is used twice in this file")));
        }
    }
    for e in &file.pixel {
        check_host(&e.host).map_err(|m| err(&e.id, m))?;
    }
    for e in &file.redirect {
        check_host(&e.host).map_err(|m| err(&e.id, m))?;
        check_redirect(e).map_err(|m| err(&e.id, m))?;
    }
    for e in &file.param {
        if e.names.is_empty() && e.patterns.is_empty() {
            return Err(err(
                &e.id,
                "a [[param]] needs at least one name or pattern".into(),
            ));
        }
        for h in &e.hosts {
            check_host(h).map_err(|m| err(&e.id, m))?;
        }
        for p in &e.patterns {
            check_pattern(p).map_err(|m| err(&e.id, m))?;
        }
    }
    Ok(())
}

/// The rule set of files that passed [`check`]. What can still fail has no file: a
/// regex set over the size limit.
fn assemble(mut files: Vec<(&RuleSource, RuleFile<'static>)>) -> Result<Rules, RuleError> {
    let texts: Vec<(Arc<str>, RuleText)> = files
        .iter()
        .map(|(src, _)| (Arc::from(src.name.as_str()), src.text.clone()))
        .collect();
    let trackers = layer(&mut files, |f| &mut f.tracker, |e| &e.id);
    let allows = layer(&mut files, |f| &mut f.allow, |e| &e.id);
    let policies = layer(&mut files, |f| &mut f.policy, |e| &e.id);
    let functional = layer(&mut files, |f| &mut f.functional, |e| &e.id);
    let pixels = layer(&mut files, |f| &mut f.pixel, |e| &e.id);
    let redirects = layer(&mut files, |f| &mut f.redirect, |e| &e.id);
    let params = layer(&mut files, |f| &mut f.param, |e| &e.id);
    let trackers: FxHashMap<Str<'static>, Tracker> = trackers
        .into_vec()
        .into_iter()
        .map(|(t, _)| {
            (
                t.id.clone(),
                Tracker {
                    id: t.id,
                    name: t.name,
                    category: t.category,
                },
            )
        })
        .collect();
    let pixels = shared_names(pixels.into_vec(), &texts);
    let redirects = shared_names(redirects.into_vec(), &texts);
    let params = shared_names(params.into_vec(), &texts);
    let regex_err = |e: regex::Error| RuleError {
        file: String::new(),
        line: 0,
        column: 0,
        message: e.to_string(),
    };
    let pixel_set = UrlGlobs::new(
        pixels
            .iter()
            .map(|(e, _)| (e.host.as_str(), e.path.as_deref())),
    );
    let redirect_set = UrlGlobs::new(
        redirects
            .iter()
            .map(|(e, _)| (e.host.as_str(), e.path.as_deref())),
    );
    let param_set = NameSets::build(&params);
    let params: Vec<Param> = params
        .into_iter()
        .map(|(entry, file)| {
            let hosts = (!entry.hosts.is_empty())
                .then(|| entry.hosts.iter().map(|h| glob::HostGlob::new(h)).collect());
            let paths = (!entry.paths.is_empty()).then(|| {
                entry
                    .paths
                    .iter()
                    .map(|p| glob::PathGlob::new(Some(p)))
                    .collect()
            });
            Param {
                entry,
                hosts,
                paths,
                file,
            }
        })
        .collect();
    let functional = functional.into_vec();
    let functional_count = functional.len();
    let functional_words = functional
        .iter()
        .flat_map(|(e, _)| {
            e.words
                .iter()
                .map(|w| (crate::links::functional::fold(w.trim()), e.id.clone()))
        })
        .filter(|(w, _)| !w.is_empty())
        .collect();
    let hosts: Vec<glob::HostGlob> = functional
        .iter()
        .flat_map(|(e, _)| e.hosts.iter().map(|h| glob::HostGlob::new(h)))
        .collect();
    let functional_hosts = (!hosts.is_empty()).then_some(hosts);
    Ok(Rules {
        trackers,
        pixels,
        pixel_set,
        redirects: redirects
            .into_iter()
            .map(|(entry, file)| Redirect { entry, file })
            .collect(),
        redirect_set,
        params,
        param_set,
        functional_count,
        locations: OnceLock::new(),
        files: texts,
        functional_words,
        functional_hosts,
        allows: allows
            .into_vec()
            .into_iter()
            .map(|(e, _)| exceptions::Allow::compile(e))
            .collect::<Result<_, _>>()
            .map_err(regex_err)?,
        policies: policies
            .into_vec()
            .into_iter()
            .map(|(e, _)| exceptions::Policy::compile(e))
            .collect::<Result<_, _>>()
            .map_err(regex_err)?,
    })
}

/// Entries with their file's name, shared: one name per file, not a copy per entry, and
/// the vector is rewritten in place (issue 17).
fn shared_names<T>(entries: Vec<(T, &str)>, files: &[(Arc<str>, RuleText)]) -> Vec<(T, Arc<str>)> {
    let mut last: Option<&Arc<str>> = None;
    entries
        .into_iter()
        .map(|(e, file)| {
            let name = match last {
                Some(name) if **name == *file => Arc::clone(name),
                _ => {
                    last = files.iter().map(|(name, _)| name).find(|n| ***n == *file);
                    last.map_or_else(|| file.into(), Arc::clone)
                }
            };
            (e, name)
        })
        .collect()
}

/// The first `id` line of `text` naming `id` in quotes (0: none), for an error: `id`
/// may be anything there, quotes included.
fn find_line(text: &str, id: &str) -> usize {
    let needle = format!("\"{id}\"");
    id_lines(text)
        .find(|(_, l)| l.contains(&needle))
        .map_or(0, |(i, _)| i + 1)
}

/// The `id = ...` lines of a rule file, with their 0-based numbers.
fn id_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter(|(_, l)| {
        let l = l.trim_start();
        l.starts_with("id") && l[2..].trim_start().starts_with('=')
    })
}

fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!("id {id:?} must be kebab-case (a-z, 0-9, -)"))
    }
}

fn check_host(host: &str) -> Result<(), String> {
    let h = host.trim();
    if h.is_empty() || h.chars().all(|c| c == '*' || c == '.') {
        return Err(format!("host {host:?} would match every host"));
    }
    if h.contains('/') {
        return Err(format!(
            "host {host:?} must not contain '/' (put that in path)"
        ));
    }
    Ok(())
}

fn check_redirect(e: &RedirectEntry) -> Result<(), String> {
    if e.action == RuleAction::Keep {
        return Ok(()); // an exception: where the destination would be does not matter
    }
    if e.param.is_some() && !e.params.is_empty() {
        return Err("give either param or params, not both".into());
    }
    if e.encoding.is_some() && !e.encodings.is_empty() {
        return Err("give either encoding or encodings, not both".into());
    }
    let by_param = e.param.is_some() || !e.params.is_empty();
    if e.opaque {
        return if e.segment.is_some() {
            Err("an opaque redirect may name params, not a segment".into())
        } else {
            Ok(())
        };
    }
    match (by_param, e.segment) {
        (true, Some(_)) => Err("give either param(s) or segment, not both".into()),
        (false, None) => Err("a redirect that is not opaque needs param(s) or segment".into()),
        _ => Ok(()),
    }
}

/// The names of every `[[param]]`: name globs by a hash of the literal ones (most) and a
/// list of those with a star, name patterns by one regex set; each maps back to the
/// entries. Globs were a regex set too, compiled by every `mailveil filter` process at
/// start for some 140 names of which four have a star (issue 17).
#[derive(Debug, Clone)]
struct NameSets {
    /// Unique to the sets as built, for the memo of [`NameSets::matching`].
    id: u64,
    /// Star-less globs, ASCII-lowercased: the entries that name each.
    literals: FxHashMap<String, Vec<usize>>,
    /// Globs with a star, and their entry.
    starred: Vec<(glob::NameGlob, usize)>,
    /// Each entry's patterns, anchored.
    patterns: Vec<Vec<String>>,
    /// [`NameSets::patterns`] compiled, on first use: most mails' URLs carry no
    /// parameter, and each pattern was compiled once already when checked (issue 17).
    compiled: OnceLock<Patterns>,
    pattern_entries: Vec<usize>,
}

/// Compiled name patterns: one regex set, or when that is over the size limit (each
/// pattern compiled alone when it was checked, their union need not), each pattern alone.
#[derive(Debug, Clone)]
enum Patterns {
    Set(BytesRegexSet),
    Each(Vec<(BytesRegex, usize)>),
}

impl Patterns {
    /// Each pattern alone, with the index of its entry's alternation. Every one compiled
    /// alone when it was checked ([`check_pattern`]), so none is left out.
    fn each(patterns: &[Vec<String>]) -> Patterns {
        Patterns::Each(
            patterns
                .iter()
                .enumerate()
                .flat_map(|(i, alts)| alts.iter().map(move |a| (a, i)))
                .filter_map(|(a, i)| Some((name_regex(a).ok()?, i)))
                .collect(),
        )
    }
}

impl NameSets {
    fn build(params: &[(ParamEntry, Arc<str>)]) -> NameSets {
        let mut literals: FxHashMap<String, Vec<usize>> = FxHashMap::default();
        let mut starred = Vec::new();
        let (mut patterns, mut pattern_entries) = (Vec::new(), Vec::new());
        for (i, (e, _)) in params.iter().enumerate() {
            for name in &e.names {
                let g = glob::NameGlob::new(name);
                match g.literal() {
                    Some(l) => literals.entry(l.to_string()).or_default().push(i),
                    None => starred.push((g, i)),
                }
            }
            if !e.patterns.is_empty() {
                patterns.push(e.patterns.iter().map(|p| anchored(p)).collect());
                pattern_entries.push(i);
            }
        }
        NameSets {
            id: next_set_id(),
            literals,
            starred,
            patterns,
            compiled: OnceLock::new(),
            pattern_entries,
        }
    }

    /// The name patterns, compiled on the first call.
    fn compiled(&self) -> &Patterns {
        self.compiled.get_or_init(|| {
            match param_builder(self.patterns.iter().map(|alts| alts.join("|"))).build() {
                Ok(set) => Patterns::Set(set),
                Err(_) => Patterns::each(&self.patterns),
            }
        })
    }

    /// The entries whose globs match `name`, or whose patterns do (for an ASCII name
    /// only: see [`param_builder`]), in the order they were defined; remembered per
    /// thread for the names met lately: a mail's links repeat a few names (`utm_source`),
    /// and the starred globs and the pattern set were tried for each (issue 17).
    fn matching(&self, name: &str) -> Vec<usize> {
        type Names = crate::memo::SetMemos<Box<[usize]>>;
        thread_local! {
            static MEMO: std::cell::RefCell<Names> = const {
                std::cell::RefCell::new(Names::new(MEMO_SETS, MEMO_NAME_BYTES, MEMO_NAME_LEN))
            };
        }
        MEMO.with_borrow_mut(|memo| {
            memo.get(self.id, name, |name| {
                self.matching_now(name).into_boxed_slice()
            })
            .into_vec()
        })
    }

    /// [`Self::matching`], worked out.
    fn matching_now(&self, name: &str) -> Vec<usize> {
        let lower = lowercase(name);
        let mut found: Vec<usize> = self.literals.get(&*lower).cloned().unwrap_or_default();
        found.extend(
            self.starred
                .iter()
                .filter(|(g, _)| g.matches(&lower))
                .map(|(_, i)| *i),
        );
        if name.is_ascii() && !self.pattern_entries.is_empty() {
            let name = name.as_bytes();
            match self.compiled() {
                Patterns::Set(set) => found.extend(
                    set.matches(name)
                        .into_iter()
                        .map(|i| self.pattern_entries[i]),
                ),
                Patterns::Each(each) => found.extend(
                    each.iter()
                        .filter(|(re, _)| re.is_match(name))
                        .map(|(_, i)| self.pattern_entries[*i]),
                ),
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// A parameter-name pattern as it goes into the set: anchored at both ends.
fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

/// Parameter names are matched over their bytes, ASCII case-insensitively, `.` taking
/// neither `\n` nor `\r`; patterns only ever see ASCII names. On an ASCII name that is
/// exactly what a JavaScript regex with the `i` flag does (ClearURLs' engine): `[a-z]`
/// never takes in `K` (the Kelvin sign) the way Unicode case folding would, and a `.`
/// is one character. A name with other characters is matched by globs alone, so a
/// pattern never matches more than its source.
fn param_builder<I, S>(patterns: I) -> RegexSetBuilder
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut b = RegexSetBuilder::new(patterns);
    b.case_insensitive(true).unicode(false).crlf(true);
    b
}

/// One anchored name pattern compiled alone, as [`param_builder`] compiles it in a set.
fn name_regex(anchored: &str) -> Result<BytesRegex, regex::Error> {
    BytesRegexBuilder::new(anchored)
        .case_insensitive(true)
        .unicode(false)
        .crlf(true)
        .build()
}

/// Whether `pattern` is a parameter-name pattern a `[[param]]` may hold: it compiles
/// (as mailveil reads patterns: anchored, over bytes, ASCII case-insensitive) and does
/// not take in (nearly) every name. The error says why not.
pub fn check_name_pattern(pattern: &str) -> Result<(), String> {
    check_pattern(pattern)
}

/// A name pattern that compiles and does not take in every name.
fn check_pattern(pattern: &str) -> Result<(), String> {
    let re = name_regex(&anchored(pattern)).map_err(|e| {
        // The parser's message draws the pattern over several lines: its last says why.
        let why = e.to_string();
        let why = why.lines().last().unwrap_or("").trim().to_string();
        format!("pattern {pattern:?}: {why}")
    })?;
    let probes: [&[u8]; 4] = [b"q", b"id", b"page", b"zz_9"];
    if re.is_match(b"") || probes.iter().all(|p| re.is_match(p)) {
        return Err(format!(
            "pattern {pattern:?} matches (nearly) every parameter name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn src(name: &str, text: &str) -> RuleSource {
        RuleSource {
            name: name.into(),
            text: text.into(),
        }
    }

    const MAILCHIMP: &str = r#"
[[tracker]]
id = "mailchimp"
name = "Mailchimp"
category = "esp"
source = "test"

[[pixel]]
id = "mailchimp-open"
tracker = "mailchimp"
host = "list-manage.com"
path = "/track/open.php"
source = "test"
"#;

    #[test]
    fn pixel_rules_match_host_and_path_prefix() {
        let rules = Rules::compile(&[src("a.toml", MAILCHIMP)]).unwrap();
        let m = rules
            .match_pixel("us3.list-manage.com", "/track/open.php?u=1&e=2")
            .unwrap();
        assert_eq!(m.rule, "mailchimp-open");
        assert_eq!(m.tracker, "Mailchimp");
        assert!(
            rules
                .match_pixel("us3.list-manage.com", "/track/click?u=1")
                .is_none()
        );
        assert!(
            rules
                .match_pixel("example.com", "/track/open.php")
                .is_none()
        );
    }

    /// Asks `same` (which compares a memo's answer with the answer worked out) the way a
    /// per-set memo is asked: as many sets as it holds, in turns, each key twice (answers
    /// are found again, and each set's are its own); then each set for every key (its
    /// memo dropped when full), the next, and so on twice over: more sets than the memo
    /// holds, so the first is dropped and asked again. The keys it keeps (up to
    /// `max_key` bytes long) are more than its `max_bytes`.
    fn ask_as_a_memo_is_asked<S>(
        sets: &[S],
        keys: &[String],
        (max_key, max_bytes): (usize, usize),
        same: impl Fn(&S, &str),
    ) {
        let kept: usize = keys.iter().map(String::len).filter(|&n| n <= max_key).sum();
        assert!(kept > max_bytes, "the keys fit in the memo");
        for k in &keys[..120] {
            for set in &sets[..MEMO_SETS] {
                same(set, k);
                same(set, k);
            }
        }
        for _ in 0..2 {
            for set in sets {
                for k in keys {
                    same(set, k);
                }
            }
        }
    }

    /// The remembered names are the names matched: for more names than the memo holds,
    /// asked twice over, of more rule sets than it holds, each naming other entries.
    #[test]
    fn remembered_names_are_the_names_matched() {
        let sets: Vec<Rules> = (0..MEMO_SETS + 2)
            .map(|k| {
                let text = format!(
                    "[[param]]\nid = \"a\"\nclass = \"campaign\"\nsource = \"s\"\nnames = [\"n{k}\", \"s{k}_*\"]\n\
                     [[param]]\nid = \"b\"\nclass = \"campaign\"\nsource = \"s\"\nnames = [\"n{}\"]\npatterns = [\"p{k}[a-z]*\"]\n",
                    k + 1
                );
                Rules::compile(&[src("p.toml", &text)]).unwrap()
            })
            .collect();
        let names: Vec<String> = (0..MEMO_NAME_BYTES / 4)
            .map(|i| {
                let k = i % (MEMO_SETS + 2);
                match i % 6 {
                    0 => format!("n{k}"),
                    1 => format!("S{k}_{i}"),
                    2 => format!("p{k}abc{}", "d".repeat(i % 3)),
                    3 => format!("s{k}_{}", "x".repeat(MEMO_NAME_LEN + i % 3)),
                    4 => format!("\u{e9}{i}"),
                    _ => format!("other{i}"),
                }
            })
            .collect();
        ask_as_a_memo_is_asked(
            &sets,
            &names,
            (MEMO_NAME_LEN, MEMO_NAME_BYTES),
            |rules: &Rules, n: &str| {
                let sets = &rules.param_set;
                assert_eq!(sets.matching(n), sets.matching_now(n), "{n}");
            },
        );
        // Some names are matched at all, by entries that differ between the sets.
        assert_eq!(sets[0].param_set.matching("n0"), vec![0]);
        assert_eq!(sets[0].param_set.matching("n1"), vec![1]);
        assert_eq!(sets[1].param_set.matching("n1"), vec![0]);
        assert_eq!(sets[1].param_set.matching("p1xyz"), vec![1]);
        assert_eq!(sets[0].param_set.matching("p1xyz"), Vec::<usize>::new());
    }

    /// The remembered candidates are the candidates: for more hosts than the memo holds,
    /// asked twice over, of more sets than it holds.
    #[test]
    fn remembered_candidates_are_the_candidates() {
        let sets: Vec<UrlGlobs> = (0..MEMO_SETS + 2)
            .map(|k| {
                let hosts = [format!("*.h{k}.example"), "t.*".into(), "*x*.com".into()];
                UrlGlobs::new(
                    hosts
                        .iter()
                        .map(|h| (h.as_str(), None))
                        .collect::<Vec<_>>()
                        .into_iter(),
                )
            })
            .collect();
        let hosts: Vec<String> = (0..MEMO_HOST_BYTES / 8)
            .map(|i| match i % 5 {
                0 => format!("a{i}.h{}.example", i % (MEMO_SETS + 2)),
                1 => format!("t.s{i}.example"),
                2 => format!("w{i}x.com"),
                3 => format!("{}{i}.h0.example", "l".repeat(MEMO_HOST_LEN)),
                // Hosts alike but for their ends, which decide their candidates.
                _ => format!("same-start.n{i}.h{}.example", i % (MEMO_SETS + 2)),
            })
            .collect();
        ask_as_a_memo_is_asked(
            &sets,
            &hosts,
            (MEMO_HOST_LEN, MEMO_HOST_BYTES),
            |set: &UrlGlobs, h: &str| {
                assert_eq!(set.remembered_candidates(h), set.candidates(h), "{h}");
            },
        );
        assert!(
            sets.iter()
                .any(|s| !s.candidates("a0.h0.example").is_empty())
        );
    }

    #[test]
    fn the_url_index_finds_what_one_regex_set_found() {
        use glob::tests::{HOST_GLOBS, HOSTS, PATH_GLOBS, PATHS};
        // Pixel and redirect hosts never hold a `/` (check_host).
        let rules: Vec<(&str, Option<&str>)> = HOST_GLOBS
            .iter()
            .filter(|h| !h.contains('/'))
            .flat_map(|h| {
                PATH_GLOBS
                    .iter()
                    .map(|p| (*h, Some(*p)))
                    .chain([(*h, None)])
            })
            .collect();
        let set = regex::RegexSet::new(rules.iter().map(|(h, p)| {
            let path = p.map_or_else(|| "/".to_string(), glob::path_regex);
            format!("^{}{}", glob::host_regex(h), path)
        }))
        .unwrap();
        let index = UrlGlobs::new(rules.iter().copied());
        for host in HOSTS
            .iter()
            .chain(&["EMAIL.News.example", "Us3.List-Manage.com", "a/b/c"])
        {
            for path in PATHS.iter().chain(&["?q=1", "x/Track/OPEN.php"]) {
                let expected: Vec<usize> = set.matches(&url_key(host, path)).into_iter().collect();
                assert_eq!(index.matches(host, path), expected, "{host:?} {path:?}");
            }
        }
    }

    /// Host globs as rule files write them: the fixtures, and generated ones with stars
    /// at either end or inside, `=`, dots, case, IDNA (pixel and redirect hosts never
    /// hold a `/`).
    fn host_globs() -> impl Strategy<Value = String> {
        let fixtures: Vec<String> = glob::tests::HOST_GLOBS
            .iter()
            .filter(|h| !h.contains('/'))
            .map(|h| h.to_string())
            .collect();
        prop_oneof![
            prop::sample::select(fixtures),
            "=?[*]?[aB.*]{0,3}(com|List-Manage|\u{fc}|xn--x)?[.*]{0,2}",
        ]
    }

    fn path_globs() -> impl Strategy<Value = Option<String>> {
        let fixtures: Vec<String> = glob::tests::PATH_GLOBS
            .iter()
            .map(|p| p.to_string())
            .collect();
        prop::option::of(prop_oneof![
            prop::sample::select(fixtures),
            "[/aB*?=%\\\\.]{0,6}",
        ])
    }

    /// Hosts and paths as a URL gives them, or as a caller may pass them: the fixtures,
    /// case, IDNA, ports, user info, `\\`, percent escapes, line feeds, a `/` in the host.
    fn hosts() -> impl Strategy<Value = String> {
        let fixtures: Vec<String> = glob::tests::HOSTS.iter().map(|h| h.to_string()).collect();
        prop_oneof![
            prop::sample::select(fixtures),
            "[aAbB.\u{fc}-]{0,5}(com|COM|List-Manage.com|xn--x)?(:8080|/x)?",
            "(u:p@)?[aB]{0,2}\\.(list-manage|EMAIL)\\.(com|x)",
        ]
    }

    fn paths() -> impl Strategy<Value = String> {
        let fixtures: Vec<String> = glob::tests::PATHS.iter().map(|p| p.to_string()).collect();
        prop_oneof![
            prop::sample::select(fixtures),
            "[/aAbB*?=%\\\\\n.]{0,10}",
            "/?(Track|ss|x)/(OPEN|o|%2F)[/a?=.]{0,4}",
        ]
    }

    proptest! {
        /// The URL index finds, for any rules and any URL, exactly the rules whose
        /// `^{host_regex}{path_regex}` matches the rule key: the candidate search and
        /// the path compared in place never miss one nor add one (issue 17).
        #[test]
        fn the_url_index_finds_what_the_regexes_find(
            rules in prop::collection::vec((host_globs(), path_globs()), 1..12),
            urls in prop::collection::vec((hosts(), paths()), 1..8),
        ) {
            let set = regex::RegexSet::new(rules.iter().map(|(h, p)| {
                let path = p.as_deref().map_or_else(|| "/".to_string(), glob::path_regex);
                format!("^{}{}", glob::host_regex(h), path)
            }))
            .unwrap();
            let index = UrlGlobs::new(rules.iter().map(|(h, p)| (h.as_str(), p.as_deref())));
            // And each rule's own URL, its stars filled, in upper case, without its `/`.
            let own = rules.iter().flat_map(|(h, p)| {
                let host = h.trim().trim_start_matches('=').replace('*', "x");
                let path = p.as_deref().unwrap_or("/").replace('*', "y/");
                let bare = path.trim_start_matches('/').to_string();
                [
                    (host.clone(), path.clone()),
                    (host.to_uppercase(), path.to_uppercase()),
                    (host.clone(), bare.to_uppercase() + "?Q=1"),
                    (host, bare),
                ]
            });
            for (host, path) in urls.iter().cloned().chain(own) {
                let expected: Vec<usize> =
                    set.matches(&url_key(&host, &path)).into_iter().collect();
                prop_assert_eq!(index.matches(&host, &path), expected, "{:?} {:?}", host, path);
            }
        }
    }

    #[test]
    fn name_globs_find_what_one_regex_set_found() {
        // Each entry's names, as a rule file may write them: literals (mixed case,
        // spaces, non-ASCII), stars anywhere, the empty name.
        let entries: &[&[&str]] = &[
            &["utm_*", "mc_eid"],
            &["MC_EID", " fbclid "],
            &["*"],
            &[""],
            &["a*b", "*_id"],
            &["*x*", "É"],
            &["trk", "tr*k"],
            &["é*", "mc_eid"],
        ];
        let names = [
            "",
            "utm_source",
            "UTM_Source",
            "utm_",
            "utm",
            "utm_a\nb",
            "utm_a\rb",
            "mc_eid",
            "Mc_EiD",
            "mc_eid ",
            "fbclid",
            "FBCLID",
            " fbclid",
            "ab",
            "a\nb",
            "aXXb",
            "AB",
            "user_id",
            "_id",
            "id",
            "x",
            "xx",
            "X",
            "\nx",
            "É",
            "é",
            "éx",
            "É*",
            "trk",
            "TRK",
            "tr\u{212A}",
            "trxk",
            "tr\nk",
            "a*b",
            "*",
        ];
        let params: Vec<(ParamEntry, Arc<str>)> = entries
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let e = ParamEntry {
                    id: format!("p{i}").into(),
                    tracker: None,
                    names: n.iter().map(|s| Str::from(*s)).collect(),
                    patterns: Vec::new(),
                    hosts: Vec::new(),
                    paths: Vec::new(),
                    class: ParamClass::Campaign,
                    action: RuleAction::Strip,
                    source: "test".into(),
                    note: None,
                };
                (e, Arc::from(""))
            })
            .collect();
        // The regex set the globs were compiled into before (issue 17).
        let set = param_builder(entries.iter().map(|n| {
            n.iter()
                .map(|g| glob::name_regex(g))
                .collect::<Vec<_>>()
                .join("|")
        }))
        .build()
        .unwrap();
        let sets = NameSets::build(&params);
        for name in names {
            let expected: Vec<usize> = set.matches(name.as_bytes()).into_iter().collect();
            assert_eq!(sets.matching(name), expected, "{name:?}");
        }
    }

    #[test]
    fn entry_lines_are_those_a_scan_of_each_line_finds() {
        let text = "[[tracker]]\nid = \"t\" # not \"p\"\nname = \"T\"\ncategory = \"esp\"\nsource = \"s\"\n\
            [[pixel]]\nid   =  \"p\"\ntracker = \"t\"\nhost = \"x.example\"\nsource = \"s\"\n\
            [[pixel]]\n  id=\"q\"\ntracker = \"t\"\nhost = \"y.example\"\nsource = \"s\"\n\
            [[param]]\nid = 'r'\nnames = [\"r\"]\nclass = \"campaign\"\nsource = \"s\"\n";
        let rules = Rules::compile(&[src("f.toml", text)]).unwrap();
        for (id, line) in [("t", 2), ("p", 2), ("q", 12), ("r", 0)] {
            assert_eq!(find_line(text, id), line, "{id}");
            assert_eq!(rules.locate(id), Some(("f.toml", line)), "{id}");
        }
    }

    #[test]
    fn unknown_keys_are_errors_with_a_line() {
        let text = "[[tracker]]\nid = \"x\"\nname = \"X\"\ncategory = \"esp\"\nsource = \"s\"\nhots = \"typo\"\n";
        let e = Rules::compile(&[src("bad.toml", text)]).unwrap_err();
        assert_eq!(e.file, "bad.toml");
        assert!(e.line >= 1 && e.line <= 6, "{e}");
        assert!(e.message.contains("hots"), "{e}");
    }

    #[test]
    fn prepared_rules_are_read_and_when_they_do_not_fit_the_toml_is() {
        let prepared: RuleFile = toml::from_str(
            "[[tracker]]\nid = \"y\"\nname = \"Y\"\ncategory = \"esp\"\nsource = \"s\"\n",
        )
        .unwrap();
        // 'static as the binary's own bytes are (leaked: a test's few bytes)
        let bytes: &'static [u8] = postcard::to_allocvec(&prepared).unwrap().leak();
        let file = parse_prepared(&src("a.toml", MAILCHIMP), bytes).unwrap();
        assert_eq!(file.tracker[0].id, "y", "the prepared form is what is read");
        let text = "[[tracker]]\nid = \"x\"\nname = \"X\"\ncategory = \"esp\"\nsource = \"s\"\nhots = \"typo\"\n";
        for prepared in [
            &b""[..],
            &[1, 0xff, 0xff],
            b"not postcard",
            &bytes[..bytes.len() / 2],
        ] {
            let e = parse_prepared(&src("bad.toml", text), prepared).unwrap_err();
            assert_eq!(
                (e.file.as_str(), e.line),
                ("bad.toml", 6),
                "{prepared:?}: {e}"
            );
            assert!(e.message.contains("hots"), "{e}");
        }
    }

    #[test]
    fn later_files_override_earlier_ids_and_broken_files_are_skipped() {
        let user = MAILCHIMP.replace("/track/open.php", "/never");
        let rules = Rules::compile(&[src("a", MAILCHIMP), src("b", &user)]).unwrap();
        assert!(
            rules
                .match_pixel("us3.list-manage.com", "/track/open.php")
                .is_none()
        );
        let (rules, errors) =
            Rules::compile_lenient(&[src("a", MAILCHIMP), src("b", "not toml [")]);
        assert_eq!(errors.len(), 1);
        assert!(
            rules
                .match_pixel("us3.list-manage.com", "/track/open.php")
                .is_some()
        );
    }

    #[test]
    fn trackers_may_be_defined_in_a_later_file() {
        let tracker_only = MAILCHIMP.split("[[pixel]]").next().unwrap().to_string();
        let pixel_only = format!("[[pixel]]{}", MAILCHIMP.split("[[pixel]]").nth(1).unwrap());
        let sources = [
            src("a-pixels.toml", &pixel_only),
            src("z-trackers.toml", &tracker_only),
        ];
        let (rules, errors) = Rules::compile_lenient(&sources);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(
            rules
                .match_pixel("us3.list-manage.com", "/track/open.php")
                .is_some()
        );
    }

    #[test]
    fn a_file_naming_an_unknown_tracker_is_left_out_with_its_line() {
        let bad = "[[pixel]]\nid = \"stray\"\ntracker = \"nobody\"\nhost = \"x.example\"\nsource = \"s\"\n";
        let (rules, errors) =
            Rules::compile_lenient(&[src("good.toml", MAILCHIMP), src("bad.toml", bad)]);
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].file.as_str(), errors[0].line), ("bad.toml", 2));
        assert!(
            rules
                .match_pixel("us3.list-manage.com", "/track/open.php")
                .is_some()
        );
    }

    fn param(extra: &str) -> Result<Rules, RuleError> {
        let text =
            format!("[[param]]\nid = \"p\"\nclass = \"campaign\"\nsource = \"s\"\n{extra}\n");
        Rules::compile(&[src("p.toml", &text)])
    }

    #[test]
    fn name_patterns_are_anchored_ascii_case_insensitive_and_never_take_in_everything() {
        let rules = param("patterns = [\"p[fd]_rd_[a-z]*\", \"li[a-z]{2}\"]").unwrap();
        let hit = |n: &str| rules.match_params_at("x.example", "/", n).next().is_some();
        assert!(hit("pf_rd_p") && hit("PD_RD_") && hit("lipi"));
        assert!(!hit("xpf_rd_p") && !hit("pf_rd_1") && !hit("lipis"));
        // Unicode case folding would take the Kelvin sign for a k; ClearURLs' engine does not.
        let k = param("patterns = [\"trk\"]").unwrap();
        assert!(k.match_params("x.example", "TRK").next().is_some());
        assert!(
            k.match_params_at("x.example", "/", "tr\u{212A}")
                .next()
                .is_none()
        );
        for bad in ["\".*\"", "\"[a-z_0-9]*\"", "\"(\"", "\"x|\""] {
            let e = param(&format!("patterns = [{bad}]")).unwrap_err();
            assert_eq!((e.file.as_str(), e.line), ("p.toml", 2), "{bad}: {e}");
        }
        assert!(param("").is_err(), "a name or a pattern is needed");
    }

    #[test]
    fn name_patterns_are_compiled_on_first_use_one_by_one_when_the_set_cannot_be() {
        let text = "[[param]]\nid = \"a\"\nclass = \"campaign\"\nsource = \"s\"\nnames = [\"x\"]\npatterns = [\"p[fd]_rd_[a-z]*\", \"li[a-z]{2}\"]\n\
            [[param]]\nid = \"b\"\nclass = \"campaign\"\nsource = \"s\"\npatterns = [\"trk\"]\n";
        let rules = Rules::compile(&[src("p.toml", text)]).unwrap();
        let sets = &rules.param_set;
        assert!(sets.compiled.get().is_none(), "compiled at start");
        assert_eq!(sets.matching("é"), Vec::<usize>::new());
        assert!(
            sets.compiled.get().is_none(),
            "compiled for a name no pattern sees"
        );
        let names = [
            "x",
            "pf_rd_p",
            "PD_RD_",
            "lipi",
            "lipis",
            "trk",
            "TRK",
            "tr\u{212A}",
            "q",
        ];
        let by_set: Vec<Vec<usize>> = names.iter().map(|n| sets.matching(n)).collect();
        assert!(matches!(sets.compiled.get(), Some(Patterns::Set(_))));
        assert_eq!(by_set[1..4], [vec![0], vec![0], vec![0]]);
        // Another set, with another id: not answered from the first one's memo.
        let one_by_one = NameSets {
            id: next_set_id(),
            compiled: OnceLock::from(Patterns::each(&sets.patterns)),
            ..sets.clone()
        };
        for (n, expected) in names.iter().zip(&by_set) {
            assert_eq!(&one_by_one.matching(n), expected, "{n:?}");
        }
    }

    #[test]
    fn redirects_take_candidate_params_and_encodings_one_way_only() {
        let head = "[[tracker]]\nid = \"t\"\nname = \"T\"\ncategory = \"esp\"\nsource = \"s\"\n[[redirect]]\nid = \"r\"\ntracker = \"t\"\nhost = \"x.example\"\nsource = \"s\"\n";
        let compile = |body: &str| Rules::compile(&[src("r.toml", &format!("{head}{body}"))]);
        assert!(
            compile("opaque = true\nparams = [\"url\"]\nencodings = [\"plain\", \"base64\"]")
                .is_ok()
        );
        assert!(compile("opaque = false\nparams = [\"url\", \"u\"]").is_ok());
        for bad in [
            "opaque = false\nparam = \"u\"\nparams = [\"url\"]",
            "opaque = false\nparam = \"u\"\nencoding = \"plain\"\nencodings = [\"base64\"]",
            "opaque = true\nsegment = 1",
            "opaque = false",
        ] {
            assert!(compile(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_entry_naming_an_unknown_tracker_may_be_replaced_by_a_later_file() {
        let bad = "[[pixel]]\nid = \"mailchimp-open\"\ntracker = \"nobody\"\nhost = \"x.example\"\nsource = \"s\"\n";
        // replaced by a later file: the set is good, and the later entry is the one used
        let rules = Rules::compile(&[src("bad.toml", bad), src("good.toml", MAILCHIMP)]).unwrap();
        assert!(rules.match_pixel("x.example", "/").is_none());
        assert!(
            rules
                .match_pixel("us3.list-manage.com", "/track/open.php")
                .is_some()
        );
        // the other way round, the entry naming no known tracker is the one kept
        let e = Rules::compile(&[src("good.toml", MAILCHIMP), src("bad.toml", bad)]).unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("bad.toml", 2), "{e}");
        assert!(e.message.contains("\"nobody\""), "{e}");
    }

    #[test]
    fn a_rule_naming_an_unknown_tracker_is_an_error() {
        let text = MAILCHIMP.replace("tracker = \"mailchimp\"", "tracker = \"nobody\"");
        assert!(Rules::compile(&[src("a", &text)]).is_err());
    }
}
