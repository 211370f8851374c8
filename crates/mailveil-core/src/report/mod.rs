//! What a pass found and did: findings, the `X-Mailveil` header and the JSON report.

mod location;
mod names;

pub use location::{Location, LocationKind};
pub use names::{Action, FindingKind, UnknownName};
use serde::Serialize;
use std::collections::BTreeMap;

/// The header mailveil adds on top of every mail it passes on.
pub const HEADER_NAME: &str = "X-Mailveil";

/// One thing found in a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was found.
    pub kind: FindingKind,
    /// The MIME part, numbered as IMAP does ("1", "1.2"); "header" for the top header.
    pub part: String,
    /// Where in the part: its kind, and its label (`img@src`, `td@style:background`,
    /// `<style>:@import`, `link@href`...), which is what the JSON report holds.
    pub location: Location,
    /// The URL involved, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The rule id that matched, or `heuristic:<name>`.
    pub rule: String,
    /// The tracker or ESP it belongs to, where known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracker: Option<String>,
    /// What was done.
    pub action: Action,
    /// The parameters removed from a link, where that is what was done.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
}

/// Everything one pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The mailveil version that wrote this report.
    pub version: &'static str,
    /// Every finding, up to `Limits::max_findings`.
    pub findings: Vec<Finding>,
    /// Findings beyond the limit: acted on, not listed.
    pub findings_dropped: usize,
    /// Number of MIME parts whose bytes were rewritten.
    pub parts_changed: usize,
    /// Why the mail could not be cleaned, if it could not (then it passed unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the mail was let through untouched on purpose (`allow:<id>`, `policy:<id>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Whether the output bytes differ from the input bytes.
    pub changed: bool,
}

impl Report {
    pub(crate) fn new() -> Self {
        Report {
            version: crate::VERSION,
            ..Report::default()
        }
    }

    /// Findings per kind, counting only those acted on ([`Action::counted`]).
    pub fn counts(&self) -> BTreeMap<FindingKind, usize> {
        let mut counts = BTreeMap::new();
        for f in self.findings.iter().filter(|f| f.action.counted()) {
            *counts.entry(f.kind).or_insert(0) += 1;
        }
        counts
    }

    /// Number of findings left as they were (remote content kept by policy).
    pub fn kept(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.action == Action::Keep && f.kind == FindingKind::RemoteContent)
            .count()
    }

    /// Number of opaque click trackers kept (their links must keep working).
    pub fn opaque_links(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.action == Action::Keep && f.kind == FindingKind::ClickRedirect)
            .count()
    }

    /// Names of the trackers found, sorted, each once.
    pub fn trackers(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .findings
            .iter()
            .filter_map(|f| f.tracker.as_deref())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The value of the `X-Mailveil` header: short, greppable, ASCII.
    /// `v=0.1.0; pixel=2; remote-content=1; kept=3; trackers=Litmus,Mailchimp`
    pub fn header_value(&self) -> String {
        let mut out = format!("v={}", self.version);
        if let Some(err) = &self.error {
            out.push_str("; error=");
            out.push_str(err);
            return ascii(&out);
        }
        if let Some(why) = &self.skipped {
            out.push_str("; skipped=");
            out.push_str(why);
            return ascii(&out);
        }
        for (kind, n) in self.counts() {
            out.push_str(&format!("; {kind}={n}"));
        }
        let with = |action| self.findings.iter().filter(|f| f.action == action).count();
        let others = [
            self.kept(),
            with(Action::Proxy),
            with(Action::Prefetch),
            self.opaque_links(),
        ];
        for (name, n) in COUNTED.iter().zip(others) {
            if n > 0 {
                out.push_str(&format!("; {name}={n}"));
            }
        }
        let trackers = self.trackers();
        if !trackers.is_empty() {
            out.push_str("; trackers=");
            out.push_str(&trackers.join(","));
        }
        ascii(&out)
    }

    pub(crate) fn push(&mut self, finding: Finding, max: usize) {
        if self.findings.len() < max {
            self.findings.push(finding);
        } else {
            self.findings_dropped += 1;
        }
    }

    /// [`Report::push`] of each of `findings`, in order.
    pub(crate) fn extend(&mut self, findings: Vec<Finding>, max: usize) {
        let room = max.saturating_sub(self.findings.len());
        self.findings_dropped += findings.len().saturating_sub(room);
        self.findings.extend(findings.into_iter().take(room));
    }
}

/// The value of an `X-Mailveil` field that came with a mail (the whole field, folded or
/// not), re-written by this version, when it holds counts in our form and nothing else:
/// `v=...` then `; name=N` for the counts this module writes and optionally
/// `; trackers=...` last. `None` for anything else (an error or a skip above all: those
/// are always this pass's own).
pub(crate) fn carried_value(field: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(field).ok()?;
    let (_, value) = text.split_once(':')?;
    let value: String = value
        .split(['\r', '\n'])
        .map(|l| l.trim_matches([' ', '\t']))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut tokens = value.split("; ");
    let version = tokens.next()?.strip_prefix("v=")?;
    if version.is_empty()
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
    {
        return None;
    }
    let mut out = format!("v={}", crate::VERSION);
    // In the order `header_value` writes them, each at most once, counts above zero.
    let order = |name: &str| {
        FindingKind::ALL
            .iter()
            .map(|k| k.as_str())
            .chain(COUNTED.iter().copied())
            .chain(["trackers"])
            .position(|n| n == name)
    };
    let mut last = None;
    for token in tokens {
        let (name, n) = token.split_once('=')?;
        let at = order(name)?;
        if last.is_some_and(|l| at <= l) {
            return None;
        }
        last = Some(at);
        let fine = if name == "trackers" {
            !n.is_empty() && n.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        } else {
            n.len() <= 9
                && n.bytes().all(|b| b.is_ascii_digit())
                && n.parse::<u32>().is_ok_and(|v| v > 0)
        };
        if !fine || n.contains(';') {
            return None;
        }
        out.push_str("; ");
        out.push_str(token);
    }
    Some(out)
}

/// The counts of the header that are not finding kinds, in the order written (after the
/// kinds, before `trackers`): remote content kept, proxied, prefetched, opaque links kept.
const COUNTED: [&str; 4] = ["kept", "proxied", "prefetched", "opaque-links"];

/// Header values must be 7-bit and free of line breaks and `;` inside names.
fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(kind: FindingKind, tracker: Option<&str>, action: Action) -> Finding {
        Finding {
            kind,
            part: "1".into(),
            location: Location::attribute(LocationKind::Source, "img", "src"),
            url: None,
            rule: "r".into(),
            tracker: tracker.map(String::from),
            action,
            params: Vec::new(),
        }
    }

    #[test]
    fn extend_keeps_and_drops_what_pushing_one_by_one_does() {
        let kinds = [FindingKind::Pixel, FindingKind::TrackingParam];
        for (already, adding, max) in [(0, 3, 10), (2, 5, 4), (4, 2, 4), (6, 1, 4), (0, 0, 0)] {
            let batch = |n: usize| -> Vec<Finding> {
                (0..n)
                    .map(|i| {
                        let mut f = finding(kinds[i % 2], None, Action::Strip);
                        f.rule = format!("r{i}");
                        f
                    })
                    .collect()
            };
            let (mut one_by_one, mut at_once) = (Report::new(), Report::new());
            for f in batch(already) {
                one_by_one.push(f.clone(), max);
                at_once.push(f, max);
            }
            for f in batch(adding) {
                one_by_one.push(f, max);
            }
            at_once.extend(batch(adding), max);
            assert_eq!(
                at_once, one_by_one,
                "{already} then {adding}, at most {max}"
            );
        }
    }

    #[test]
    fn header_counts_acted_on_findings_and_lists_trackers_once() {
        let mut r = Report::new();
        r.push(
            finding(FindingKind::Pixel, Some("Mailchimp"), Action::Strip),
            10,
        );
        r.push(
            finding(FindingKind::Pixel, Some("Litmus"), Action::Strip),
            10,
        );
        r.push(
            finding(FindingKind::Pixel, Some("Mailchimp"), Action::Strip),
            10,
        );
        r.push(finding(FindingKind::RemoteContent, None, Action::Keep), 10);
        let v = r.header_value();
        assert!(v.starts_with("v="), "{v}");
        assert!(v.contains("; pixel=3"), "{v}");
        assert!(v.contains("; kept=1"), "{v}");
        assert!(v.ends_with("; trackers=Litmus,Mailchimp"), "{v}");
        assert!(!v.contains("remote-content"), "{v}");
    }

    #[test]
    fn findings_beyond_the_limit_are_counted_not_listed() {
        let mut r = Report::new();
        for _ in 0..5 {
            r.push(finding(FindingKind::Pixel, None, Action::Strip), 3);
        }
        assert_eq!(r.findings.len(), 3);
        assert_eq!(r.findings_dropped, 2);
    }

    #[test]
    fn only_our_counts_are_carried_and_rewritten() {
        let v = crate::VERSION;
        assert_eq!(
            carried_value(
                b"X-Mailveil: v=0.0.1; pixel=2;\r\n\tkept=1; trackers=Litmus,Mail Co\r\n"
            ),
            Some(format!("v={v}; pixel=2; kept=1; trackers=Litmus,Mail Co"))
        );
        assert_eq!(
            carried_value(b"X-Mailveil: v=1\r\n"),
            Some(format!("v={v}"))
        );
        for forged in [
            &b"X-Mailveil: v=1; error=too-deep\r\n"[..],
            b"X-Mailveil: v=1; skipped=allow:bank\r\n",
            b"X-Mailveil: v=1; pixel=x\r\n",
            b"X-Mailveil: v=1; evil=1\r\n",
            b"X-Mailveil: v=1; trackers=A; pixel=1\r\n",
            b"X-Mailveil: v=1; pixel=0\r\n",
            b"X-Mailveil: v=1; kept=1; pixel=1\r\n",
            b"X-Mailveil: hello\r\n",
        ] {
            assert_eq!(
                carried_value(forged),
                None,
                "{}",
                String::from_utf8_lossy(forged)
            );
        }
    }

    #[test]
    fn header_value_is_ascii() {
        let mut r = Report::new();
        r.push(
            finding(FindingKind::Pixel, Some("Ünïcode\r\nX"), Action::Strip),
            10,
        );
        assert!(
            r.header_value()
                .chars()
                .all(|c| c.is_ascii() && !c.is_ascii_control())
        );
    }
}
