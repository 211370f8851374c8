//! One mail as the store keeps it, built from the core's [`Report`].

use mailveil_core::{Envelope, MessageFacts, Report};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One mail that passed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MailRecord {
    /// The store's id (0 before it is stored).
    pub id: i64,
    /// When it passed (unix seconds).
    pub time: i64,
    /// The Message-ID header, without angle brackets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The envelope sender ("" for the null sender, or when unknown).
    pub sender: String,
    /// The envelope sender's domain, lowercased ("" when there is none).
    pub sender_domain: String,
    /// The registrable domain of the `From:` address (`example.co.uk` for
    /// `news@news.shop.example.co.uk`), or of the sender when the header has no From:
    /// who the mail is from as its reader knows it, not the sending service's bounce
    /// host. `None` in records of versions that did not keep it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_domain: Option<String>,
    /// The envelope recipients, comma-separated.
    pub recipient: String,
    /// The first 16 hex digits of the SHA-256 of the Subject, or none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_hash: Option<String>,
    /// Size in bytes as received.
    pub size: i64,
    /// Known trackers and ESPs found, sorted, each once.
    pub trackers: Vec<String>,
    /// Every finding, including those beyond the listing limit.
    pub findings_total: i64,
    /// Findings acted on.
    pub blocked: i64,
    /// Findings acted on, per kind.
    pub counts: BTreeMap<String, i64>,
    /// Findings per action (keep included).
    pub actions: BTreeMap<String, i64>,
    /// Why the mail could not be cleaned, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was let through untouched on purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Whether the bytes were changed.
    pub changed: bool,
    /// The downstream's reply code, where a frontend delivered it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downstream: Option<i64>,
    /// Time spent cleaning, in milliseconds.
    pub elapsed_ms: i64,
    /// The findings as listed in the report.
    pub findings: Vec<StoredFinding>,
}

/// One finding as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoredFinding {
    /// Kind, as [`mailveil_core::FindingKind::as_str`] writes it (`pixel`,
    /// `tracking-param`...); a row of another version may hold a name this one does
    /// not know.
    pub kind: String,
    /// MIME part ("1.2", "header").
    pub part: String,
    /// Where in the part (`img@src`...).
    pub location: String,
    /// The URL: `scheme://host/path` only, unless the store keeps debug detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The rule or heuristic.
    pub rule: String,
    /// The tracker or ESP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracker: Option<String>,
    /// What was done, as [`mailveil_core::Action::as_str`] writes it.
    pub action: String,
}

impl StoredFinding {
    /// Whether it counts as acted on ([`mailveil_core::Action::counted`], as in the
    /// header and in [`MailRecord::blocked`]); an action this version does not know
    /// does not count.
    pub fn counted(&self) -> bool {
        self.action
            .parse::<mailveil_core::Action>()
            .is_ok_and(mailveil_core::Action::counted)
    }
}

impl MailRecord {
    /// The record of one pass: `raw` is the mail as received (only its header is read,
    /// by the core's reader: Message-ID, Subject, From, and Return-Path or From where
    /// the envelope has no sender), `debug` keeps full URLs.
    pub fn from_report(
        report: &Report,
        envelope: &Envelope,
        raw: &[u8],
        time: i64,
        elapsed_ms: i64,
        debug: bool,
    ) -> MailRecord {
        let facts = MessageFacts::read(raw);
        // The pipe frontend knows no envelope: Return-Path, or else From, stands in.
        let sender = envelope
            .sender
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| facts.return_address())
            .unwrap_or_default();
        let sender_domain = sender
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
            .unwrap_or_default();
        let from_domain = facts
            .from_address()
            .and_then(|a| super::domain::registrable_of_address(&a))
            .or_else(|| super::domain::registrable_of_address(&sender));
        let mut counts = BTreeMap::new();
        for (kind, n) in report.counts() {
            counts.insert(kind.as_str().to_string(), n as i64);
        }
        let mut actions = BTreeMap::new();
        for f in &report.findings {
            *actions.entry(f.action.as_str().to_string()).or_insert(0i64) += 1;
        }
        let findings = report
            .findings
            .iter()
            .map(|f| StoredFinding {
                kind: f.kind.as_str().to_string(),
                part: f.part.clone(),
                location: f.location.to_string(),
                url: f.url.as_deref().map(|u| stored_url(u, debug)),
                rule: f.rule.clone(),
                tracker: f.tracker.clone(),
                action: f.action.as_str().to_string(),
            })
            .collect();
        MailRecord {
            id: 0,
            time,
            message_id: facts.message_id(),
            sender,
            sender_domain,
            from_domain,
            recipient: envelope.recipients.join(","),
            subject_hash: facts.subject().map(|s| {
                let digest = Sha256::digest(s.as_bytes());
                digest[..8].iter().map(|b| format!("{b:02x}")).collect()
            }),
            size: raw.len() as i64,
            trackers: report.trackers().into_iter().map(String::from).collect(),
            findings_total: (report.findings.len() + report.findings_dropped) as i64,
            blocked: counts.values().sum(),
            counts,
            actions,
            error: report.error.clone(),
            skipped: report.skipped.clone(),
            changed: report.changed,
            downstream: None,
            elapsed_ms,
            findings,
        }
    }
}

/// A finding's URL as the store keeps it: a proxy URL (of this installation or any
/// other, by its shape) stands for the URL it carries, so that neither its signature nor
/// the encoded URL with its query is ever kept; then cut by [`short_url`] unless `debug`.
pub fn stored_url(url: &str, debug: bool) -> String {
    let judged = mailveil_core::proxy_url::carried_by_shape(url);
    let url = judged.as_deref().unwrap_or(url);
    if debug {
        url.to_string()
    } else {
        short_url(url)
    }
}

/// A URL cut to `scheme://host[:port]/path`: no user info, query or fragment (where the
/// per-recipient tokens are). What does not parse is cut at the first `?` or `#`.
pub fn short_url(url: &str) -> String {
    if let Ok(u) = url::Url::parse(url)
        && let Some(host) = u.host_str()
    {
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        return format!("{}://{host}{port}{}", u.scheme(), u.path());
    }
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    url[..cut].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_tokens() {
        assert_eq!(
            short_url("https://u:p@t.example:8443/o/open.gif?e=me%40x#f"),
            "https://t.example:8443/o/open.gif"
        );
        assert_eq!(short_url("not a url?token=1"), "not a url");
    }

    /// Issue 14: a proxy URL carries its destination, query and all, base64-encoded in
    /// its path, after a signature: cut to host and path it kept both.
    #[test]
    fn proxy_urls_are_stored_as_the_host_and_path_they_carry() {
        let cfg = mailveil_core::ProxyConfig::new("https://mx.example/mv", b"k".to_vec());
        let dest = "https://t.example/o/open.gif?e=reader%40example.org";
        for kind in [
            mailveil_core::ProxyKind::Image,
            mailveil_core::ProxyKind::Link,
        ] {
            let p = mailveil_core::proxy_url::proxied(&cfg, kind, dest);
            assert_eq!(stored_url(&p, false), "https://t.example/o/open.gif");
            assert_eq!(
                stored_url(&p, true),
                dest,
                "debug keeps the query, not the signature"
            );
        }
        assert_eq!(
            stored_url("https://cdn.example/a.png?x=1", false),
            "https://cdn.example/a.png"
        );
    }

    #[test]
    fn header_facts_are_read() {
        let raw = b"Subject: Hello\r\nMessage-ID: <abc@x.example>\r\nFrom: Shop <news@Shop.Example>\r\n\r\nbody";
        let r = MailRecord::from_report(&Report::default(), &Envelope::default(), raw, 7, 1, false);
        assert_eq!(r.message_id.as_deref(), Some("abc@x.example"));
        assert_eq!(r.sender, "news@Shop.Example");
        assert_eq!(r.sender_domain, "shop.example");
        // The first 16 hex digits of SHA-256("Hello"), as every version stored them.
        assert_eq!(r.subject_hash.as_deref(), Some("185f8db32271fe25"));
        let with_envelope = Envelope {
            sender: Some("bounce@esp.example".into()),
            recipients: vec!["a@x.example".into(), "b@x.example".into()],
        };
        let r = MailRecord::from_report(&Report::default(), &with_envelope, raw, 7, 1, false);
        assert_eq!(
            (r.sender.as_str(), r.recipient.as_str()),
            ("bounce@esp.example", "a@x.example,b@x.example")
        );
    }

    /// The MTA writes Return-Path on top of the header; one lower down was written by
    /// the sender. Where no envelope sender is known (the pipe), the top one is recorded.
    #[test]
    fn the_top_return_path_is_the_sender_not_one_written_lower_down() {
        let raw = b"Return-Path: <bounce@esp.example>\r\nFrom: news@shop.example\r\n\
Return-Path: <ceo@bank.example>\r\nMessage-ID: <m1@shop.example>\r\n\r\nbody";
        let r = MailRecord::from_report(&Report::default(), &Envelope::default(), raw, 7, 1, false);
        assert_eq!(r.sender, "bounce@esp.example");
        assert_eq!(r.sender_domain, "esp.example");
        assert_eq!(r.from_domain.as_deref(), Some("shop.example"));
    }

    /// Issue 15: "Senders that track" named the ESP's bounce host (the envelope sender,
    /// mcsv.net, sendgrid.net...), a name the reader never saw; the record keeps the
    /// registrable domain of From: besides.
    #[test]
    fn the_from_domain_is_the_registrable_domain_of_from_not_the_bounce_host() {
        let raw = b"Return-Path: <bounce-1@mail190.suw13.mcdlv.net>\r\n\
From: \"Shop\" <News@News.Shop.Example.co.uk>\r\n\r\nbody";
        let esp = Envelope {
            sender: Some("bounce-1@mail190.suw13.mcdlv.net".into()),
            recipients: vec!["r@x.example".into()],
        };
        for env in [&esp, &Envelope::default()] {
            let r = MailRecord::from_report(&Report::default(), env, raw, 7, 1, false);
            assert_eq!(r.sender_domain, "mail190.suw13.mcdlv.net");
            assert_eq!(r.from_domain.as_deref(), Some("example.co.uk"));
        }
        // No From: the sender's registrable domain stands in.
        let r =
            MailRecord::from_report(&Report::default(), &esp, b"Subject: x\r\n\r\n", 7, 1, false);
        assert_eq!(r.from_domain.as_deref(), Some("mcdlv.net"));
        let r = MailRecord::from_report(
            &Report::default(),
            &Envelope::default(),
            b"\r\n",
            7,
            1,
            false,
        );
        assert_eq!(r.from_domain, None);
    }
}
