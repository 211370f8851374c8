//! The TOML rule format (docs/rules.md). Unknown keys are errors, so a typo is caught.
//! `Serialize` is for the build, which writes the shipped files in postcard (build.rs
//! includes this file).

use serde::{Deserialize, Serialize};

/// One rule file.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub tracker: Vec<TrackerEntry>,
    #[serde(default)]
    pub pixel: Vec<PixelEntry>,
    #[serde(default)]
    pub redirect: Vec<RedirectEntry>,
    #[serde(default)]
    pub param: Vec<ParamEntry>,
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
    #[serde(default)]
    pub policy: Vec<PolicyEntry>,
    #[serde(default)]
    pub functional: Vec<FunctionalEntry>,
}

/// Functional links (unsubscribe, preferences, sign-in...): their parameters are kept.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionalEntry {
    pub id: String,
    /// Words in the link text or URL (case- and accent-insensitive substrings).
    #[serde(default)]
    pub words: Vec<String>,
    /// Every link to these hosts is functional (host globs).
    #[serde(default)]
    pub hosts: Vec<String>,
    pub source: String,
    #[serde(default)]
    pub note: Option<String>,
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
pub struct AllowEntry {
    pub id: String,
    #[serde(default)]
    pub senders: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    pub source: String,
    #[serde(default)]
    pub note: Option<String>,
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
pub struct PolicyEntry {
    pub id: String,
    #[serde(default)]
    pub senders: Vec<String>,
    #[serde(default)]
    pub recipients: Vec<String>,
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
    pub source: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// An ESP or tracking service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerEntry {
    pub id: String,
    pub name: String,
    pub category: Category,
    #[serde(default)]
    pub website: Option<String>,
    pub source: String,
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
pub struct PixelEntry {
    pub id: String,
    pub tracker: String,
    pub host: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub action: RuleAction,
    pub source: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// A click-tracking redirect.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectEntry {
    pub id: String,
    pub tracker: String,
    pub host: String,
    #[serde(default)]
    pub path: Option<String>,
    pub opaque: bool,
    #[serde(default)]
    pub param: Option<String>,
    /// Candidate parameters, tried in order (instead of `param`). On an opaque rule: the
    /// destination when one of them carries it in plain view, else the link is opaque.
    #[serde(default)]
    pub params: Vec<String>,
    #[serde(default)]
    pub segment: Option<i32>,
    #[serde(default)]
    pub encoding: Option<RedirectEncoding>,
    /// Candidate encodings, tried in order (instead of `encoding`).
    #[serde(default)]
    pub encodings: Vec<RedirectEncoding>,
    #[serde(default)]
    pub field: Option<String>,
    /// `keep`: URLs that match are no redirect at all (an exception).
    #[serde(default)]
    pub action: RuleAction,
    pub source: String,
    #[serde(default)]
    pub note: Option<String>,
}

impl RedirectEntry {
    /// The parameters that may carry the destination, in the order they are tried.
    pub fn candidate_params(&self) -> impl Iterator<Item = &str> {
        self.param
            .as_deref()
            .into_iter()
            .chain(self.params.iter().map(String::as_str))
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
pub struct ParamEntry {
    pub id: String,
    #[serde(default)]
    pub tracker: Option<String>,
    /// Name globs (`utm_*`), case-insensitive.
    #[serde(default)]
    pub names: Vec<String>,
    /// Names as regular expressions, anchored at both ends, ASCII case-insensitive.
    #[serde(default)]
    pub patterns: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path globs (prefix matches of path and query): only on these paths.
    #[serde(default)]
    pub paths: Vec<String>,
    pub class: ParamClass,
    #[serde(default)]
    pub action: RuleAction,
    pub source: String,
    #[serde(default)]
    pub note: Option<String>,
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
