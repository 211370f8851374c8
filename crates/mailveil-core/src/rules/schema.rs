//! The TOML rule format (docs/rules.md). Unknown keys are errors, so a typo is caught.
//! `Serialize` is for the build, which writes the shipped files in postcard (build.rs
//! includes this file).
//!
//! Every string is a [`Str`]: the shipped rules, read from the postcard built into the
//! binary, borrow their strings from it (`'static`) instead of allocating some 2,500 of
//! them at every start of a `filter` process (issue 17); a file read at run time owns
//! its strings ([`RuleFile::into_owned`]).

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A string of a rule file: borrowed from the bytes it was read from where the format
/// allows (postcard always, TOML where the string has no escape), owned otherwise.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
#[serde(transparent)]
pub struct Str<'a>(pub Cow<'a, str>);

impl Str<'_> {
    /// The same string, owned where it was borrowed.
    pub fn into_owned(self) -> Str<'static> {
        Str(Cow::Owned(self.0.into_owned()))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Str<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Str<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Str<'_> {
    fn from(s: String) -> Self {
        Str(Cow::Owned(s))
    }
}

impl<'a> From<&'a str> for Str<'a> {
    fn from(s: &'a str) -> Self {
        Str(Cow::Borrowed(s))
    }
}

impl PartialEq<str> for Str<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Str<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// Every string of `$v`'s fields owned: the entry as a `'static` one.
macro_rules! owned_fields {
    ($t:ident, $v:ident { $($s:ident),* } { $($o:ident),* } { $($l:ident),* } { $($c:ident),* }) => {
        {
            let v = $v;
            // a struct literal naming every field: a field added and not listed here
            // does not compile
            $t {
                $($s: v.$s.into_owned(),)*
                $($o: v.$o.map(Str::into_owned),)*
                $($l: v.$l.into_iter().map(Str::into_owned).collect(),)*
                $($c: v.$c,)*
            }
        }
    };
}

/// One rule file.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct RuleFile<'a> {
    #[serde(default)]
    pub tracker: Vec<TrackerEntry<'a>>,
    #[serde(default)]
    pub pixel: Vec<PixelEntry<'a>>,
    #[serde(default)]
    pub redirect: Vec<RedirectEntry<'a>>,
    #[serde(default)]
    pub param: Vec<ParamEntry<'a>>,
    #[serde(default)]
    pub allow: Vec<AllowEntry<'a>>,
    #[serde(default)]
    pub policy: Vec<PolicyEntry<'a>>,
    #[serde(default)]
    pub functional: Vec<FunctionalEntry<'a>>,
}

/// Functional links (unsubscribe, preferences, sign-in...): their parameters are kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct FunctionalEntry<'a> {
    pub id: Str<'a>,
    /// Words in the link text or URL (case- and accent-insensitive substrings).
    #[serde(default)]
    pub words: Vec<Str<'a>>,
    /// Every link to these hosts is functional (host globs).
    #[serde(default)]
    pub hosts: Vec<Str<'a>>,
    pub source: Str<'a>,
    #[serde(default)]
    pub note: Option<Str<'a>>,
}

/// What a rule does when it matches (a user override can turn a shipped rule off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleAction {
    /// Remove what matches (the default).
    #[default]
    Strip,
    /// Leave it as it is.
    Keep,
}

/// Exceptions: senders, hosts or URLs that mailveil never touches.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct AllowEntry<'a> {
    pub id: Str<'a>,
    #[serde(default)]
    pub senders: Vec<Str<'a>>,
    #[serde(default)]
    pub hosts: Vec<Str<'a>>,
    #[serde(default)]
    pub urls: Vec<Str<'a>>,
    pub source: Str<'a>,
    #[serde(default)]
    pub note: Option<Str<'a>>,
}

/// Remote content choice of a per-sender / per-recipient policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemoteChoice {
    Keep,
    Strip,
}

/// Signed content choice of a per-sender / per-recipient policy (`SignedContent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignedChoice {
    Keep,
    Clean,
}

/// A policy for mail from some senders and/or to some recipients.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct PolicyEntry<'a> {
    pub id: Str<'a>,
    #[serde(default)]
    pub senders: Vec<Str<'a>>,
    #[serde(default)]
    pub recipients: Vec<Str<'a>>,
    #[serde(default)]
    pub remote_content: Option<RemoteChoice>,
    /// Signed content: `keep` byte for byte, or `clean` with the original attached.
    #[serde(default)]
    pub signed: Option<SignedChoice>,
    /// `keep`: leave tracking alone for these mails (they pass untouched).
    #[serde(default)]
    pub tracking: Option<RuleAction>,
    #[serde(default)]
    pub keep_campaign_params: Option<bool>,
    #[serde(default)]
    pub strip_read_receipts: Option<bool>,
    pub source: Str<'a>,
    #[serde(default)]
    pub note: Option<Str<'a>>,
}

/// An ESP or tracking service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct TrackerEntry<'a> {
    pub id: Str<'a>,
    pub name: Str<'a>,
    pub category: Category,
    #[serde(default)]
    pub website: Option<Str<'a>>,
    pub source: Str<'a>,
}

/// What a tracker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Esp,
    Analytics,
    Advertising,
    Social,
    Deliverability,
    Security,
    Other,
}

/// An open-tracking image or beacon.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct PixelEntry<'a> {
    pub id: Str<'a>,
    pub tracker: Str<'a>,
    pub host: Str<'a>,
    #[serde(default)]
    pub path: Option<Str<'a>>,
    #[serde(default)]
    pub action: RuleAction,
    pub source: Str<'a>,
    #[serde(default)]
    pub note: Option<Str<'a>>,
}

/// A click-tracking redirect.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct RedirectEntry<'a> {
    pub id: Str<'a>,
    pub tracker: Str<'a>,
    pub host: Str<'a>,
    #[serde(default)]
    pub path: Option<Str<'a>>,
    pub opaque: bool,
    #[serde(default)]
    pub param: Option<Str<'a>>,
    /// Candidate parameters, tried in order (instead of `param`). On an opaque rule: the
    /// destination when one of them carries it in plain view, else the link is opaque.
    #[serde(default)]
    pub params: Vec<Str<'a>>,
    #[serde(default)]
    pub segment: Option<i32>,
    #[serde(default)]
    pub encoding: Option<RedirectEncoding>,
    /// Candidate encodings, tried in order (instead of `encoding`).
    #[serde(default)]
    pub encodings: Vec<RedirectEncoding>,
    #[serde(default)]
    pub field: Option<Str<'a>>,
    /// `keep`: URLs that match are no redirect at all (an exception).
    #[serde(default)]
    pub action: RuleAction,
    pub source: Str<'a>,
    #[serde(default)]
    pub note: Option<Str<'a>>,
}

impl RedirectEntry<'_> {
    /// The parameters that may carry the destination, in the order they are tried.
    pub fn candidate_params(&self) -> impl Iterator<Item = &str> {
        self.param
            .as_deref()
            .into_iter()
            .chain(self.params.iter().map(Str::as_str))
    }

    /// The encodings tried, in order (plain when none is given).
    pub fn candidate_encodings(&self) -> Vec<RedirectEncoding> {
        let mut v: Vec<RedirectEncoding> = self.encoding.into_iter().collect();
        v.extend(self.encodings.iter().copied());
        if v.is_empty() {
            v.push(RedirectEncoding::Plain);
        }
        v
    }
}

/// How a redirect carries its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedirectEncoding {
    Plain,
    Base64,
    Base64url,
    Base64Json,
    ZlibBase64urlQuery,
    Sailthru,
    Convertkit,
    Mailjet,
    Postmark,
}

/// Identifying URL parameters.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct ParamEntry<'a> {
    pub id: Str<'a>,
    #[serde(default)]
    pub tracker: Option<Str<'a>>,
    /// Name globs (`utm_*`), case-insensitive.
    #[serde(default)]
    pub names: Vec<Str<'a>>,
    /// Names as regular expressions, anchored at both ends, ASCII case-insensitive.
    #[serde(default)]
    pub patterns: Vec<Str<'a>>,
    #[serde(default)]
    pub hosts: Vec<Str<'a>>,
    /// Path globs (prefix matches of path and query): only on these paths.
    #[serde(default)]
    pub paths: Vec<Str<'a>>,
    pub class: ParamClass,
    #[serde(default)]
    pub action: RuleAction,
    pub source: Str<'a>,
    #[serde(default)]
    pub note: Option<Str<'a>>,
}

/// Why a parameter is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamClass {
    /// Aggregate campaign tags (utm_*): kept when the user asks.
    Campaign,
    /// Identifies the reader.
    Subscriber,
    /// Ad click identifiers.
    ClickId,
}

impl RuleFile<'_> {
    /// The file with every string owned, for a file read at run time.
    pub fn into_owned(self) -> RuleFile<'static> {
        RuleFile {
            tracker: self
                .tracker
                .into_iter()
                .map(TrackerEntry::into_owned)
                .collect(),
            pixel: self.pixel.into_iter().map(PixelEntry::into_owned).collect(),
            redirect: self
                .redirect
                .into_iter()
                .map(RedirectEntry::into_owned)
                .collect(),
            param: self.param.into_iter().map(ParamEntry::into_owned).collect(),
            allow: self.allow.into_iter().map(AllowEntry::into_owned).collect(),
            policy: self
                .policy
                .into_iter()
                .map(PolicyEntry::into_owned)
                .collect(),
            functional: self
                .functional
                .into_iter()
                .map(FunctionalEntry::into_owned)
                .collect(),
        }
    }
}

// The fields of each entry by kind: strings, optional strings, lists of strings, the rest.
impl TrackerEntry<'_> {
    fn into_owned(self) -> TrackerEntry<'static> {
        owned_fields!(TrackerEntry, self { id, name, source } { website } {} { category })
    }
}

impl PixelEntry<'_> {
    fn into_owned(self) -> PixelEntry<'static> {
        owned_fields!(PixelEntry, self { id, tracker, host, source } { path, note } {} { action })
    }
}

impl RedirectEntry<'_> {
    fn into_owned(self) -> RedirectEntry<'static> {
        owned_fields!(RedirectEntry, self { id, tracker, host, source } { path, param, field, note } { params }
            { opaque, segment, encoding, encodings, action })
    }
}

impl ParamEntry<'_> {
    fn into_owned(self) -> ParamEntry<'static> {
        owned_fields!(ParamEntry, self { id, source } { tracker, note } { names, patterns, hosts, paths }
            { class, action })
    }
}

impl AllowEntry<'_> {
    fn into_owned(self) -> AllowEntry<'static> {
        owned_fields!(AllowEntry, self { id, source } { note } { senders, hosts, urls } {})
    }
}

impl PolicyEntry<'_> {
    fn into_owned(self) -> PolicyEntry<'static> {
        owned_fields!(PolicyEntry, self { id, source } { note } { senders, recipients }
            { remote_content, signed, tracking, keep_campaign_params, strip_read_receipts })
    }
}

impl FunctionalEntry<'_> {
    fn into_owned(self) -> FunctionalEntry<'static> {
        owned_fields!(FunctionalEntry, self { id, source } { note } { words, hosts } {})
    }
}
