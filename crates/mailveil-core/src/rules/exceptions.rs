//! Exceptions and per-sender / per-recipient policies, compiled: `[[allow]]` (senders,
//! hosts, URLs never touched) and `[[policy]]` (overrides for some senders or recipients).

use super::glob;
use super::schema::{AllowEntry, PolicyEntry};
use regex::RegexSet;

/// An address glob as a regex: `alice@example.org` (exact), `*@example.org`, or a bare
/// domain `example.org` (any address at it or its subdomains). Case-insensitive.
fn address_regex(glob_text: &str) -> String {
    let g = glob_text.trim().to_ascii_lowercase();
    match g.split_once('@') {
        Some((local, domain)) => {
            let local = local
                .split('*')
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join(".*");
            let domain = domain
                .split('*')
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join("[^@]*");
            format!("^{local}@{domain}$")
        }
        None => format!("^[^@]*@{}$", glob::host_regex(&g)),
    }
}

fn set(patterns: impl IntoIterator<Item = String>) -> Result<Option<RegexSet>, regex::Error> {
    let patterns: Vec<String> = patterns.into_iter().collect();
    if patterns.is_empty() {
        return Ok(None);
    }
    RegexSet::new(patterns).map(Some)
}

/// Compiled `[[allow]]` entries.
#[derive(Debug, Clone)]
pub(super) struct Allow {
    pub entry: AllowEntry<'static>,
    senders: Option<RegexSet>,
    hosts: Option<RegexSet>,
    urls: Option<RegexSet>,
}

impl Allow {
    pub fn compile(entry: AllowEntry<'static>) -> Result<Allow, regex::Error> {
        Ok(Allow {
            senders: set(entry.senders.iter().map(|s| address_regex(s)))?,
            hosts: set(entry
                .hosts
                .iter()
                .map(|h| format!("^{}$", glob::host_regex(h))))?,
            urls: set(entry.urls.iter().map(|u| {
                format!(
                    "^{}",
                    u.split('*')
                        .map(regex::escape)
                        .collect::<Vec<_>>()
                        .join(".*")
                )
            }))?,
            entry,
        })
    }

    pub fn sender(&self, address: &str) -> bool {
        self.senders
            .as_ref()
            .is_some_and(|s| s.is_match(&address.to_ascii_lowercase()))
    }

    pub fn url(&self, host: &str, url: &str) -> bool {
        self.hosts
            .as_ref()
            .is_some_and(|s| s.is_match(&host.to_ascii_lowercase()))
            || self.urls.as_ref().is_some_and(|s| s.is_match(url))
    }
}

/// Compiled `[[policy]]` entries.
#[derive(Debug, Clone)]
pub(super) struct Policy {
    pub entry: PolicyEntry<'static>,
    senders: Option<RegexSet>,
    recipients: Option<RegexSet>,
}

impl Policy {
    pub fn compile(entry: PolicyEntry<'static>) -> Result<Policy, regex::Error> {
        Ok(Policy {
            senders: set(entry.senders.iter().map(|s| address_regex(s)))?,
            recipients: set(entry.recipients.iter().map(|s| address_regex(s)))?,
            entry,
        })
    }

    /// Whether the policy applies: every list it has matches (one of the senders; the
    /// recipient).
    pub fn applies(&self, senders: &[String], recipient: Option<&str>) -> bool {
        let hit = |set: &RegexSet, address: &str| set.is_match(&address.to_ascii_lowercase());
        let sender_hit = self
            .senders
            .as_ref()
            .is_none_or(|s| senders.iter().any(|a| hit(s, a)));
        let recipient_hit = self
            .recipients
            .as_ref()
            .is_none_or(|s| recipient.is_some_and(|a| hit(s, a)));
        (self.senders.is_some() || self.recipients.is_some()) && sender_hit && recipient_hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    #[test]
    fn address_globs() {
        let m = |g: &str, a: &str| Regex::new(&address_regex(g)).unwrap().is_match(a);
        assert!(m("alice@example.org", "alice@example.org"));
        assert!(!m("alice@example.org", "malice@example.org"));
        assert!(m("*@bank.example", "alerts@bank.example"));
        assert!(m("bank.example", "alerts@mail.bank.example"));
        assert!(!m("bank.example", "alerts@notbank.example"));
    }
}
