//! `mailveil rules explain URL`: what mailveil would do with one URL, as an image and as
//! a link, and which rule (file and line) or heuristic decided it.

use mailveil_core::detect::{Detector, remote_url};
use mailveil_core::links::{self, LinkContext, LinkPolicy, LinkStep};
use mailveil_core::{FindingKind, Rules};
use std::fmt::Write;

/// The explanation, as lines of text.
pub fn explain(url: &str, recipients: &[String], rules: &Rules, policy: &LinkPolicy) -> String {
    let detector = Detector::new(rules, recipients.iter().map(String::as_str));
    let mut out = format!("url: {url}\n");
    let at = |id: &str| match rules.locate(id) {
        Some((file, line)) => format!("{id} ({file}:{line})"),
        None => id.to_string(),
    };
    match remote_url(url, &None) {
        None => out.push_str("as an image: not a remote URL: nothing is fetched\n"),
        Some(remote) => match detector.tracker(&remote, true) {
            Some(v) => {
                let rule = if v.rule.starts_with("heuristic:") { v.rule.clone() } else { at(&v.rule) };
                let who = v.tracker.map(|t| format!(" of {t}")).unwrap_or_default();
                let kind = if v.kind == FindingKind::RecipientToken { "carries the recipient's address" } else { "an open-tracking pixel" };
                let _ = writeln!(out, "as an image: {kind}{who}, by {rule}: removed");
            }
            None => out.push_str(
                "as an image: no rule or URL heuristic: kept under --remote-content keep (unless the image is invisible), removed under strip\n",
            ),
        },
    }
    let ctx = LinkContext {
        rules,
        detector: &detector,
        policy,
        link_text: None,
        list_unsubscribe: &[],
    };
    let outcome = links::clean_link(url, &ctx);
    if outcome.steps.is_empty() {
        out.push_str("as a link: no redirect rule and no identifying parameter: kept as it is\n");
        return out;
    }
    for step in &outcome.steps {
        let line = match step {
            LinkStep::Unwrapped {
                rule,
                tracker,
                from_host,
            } => format!(
                "unwrapped the {tracker} redirect on {from_host}, by {}",
                at(rule)
            ),
            LinkStep::Opaque { rule, tracker } => {
                format!(
                    "an opaque {tracker} click tracker, by {}: kept (following it would count as a click)",
                    at(rule)
                )
            }
            LinkStep::ParamRemoved {
                name,
                rule,
                tracker,
            } => {
                let who = tracker
                    .as_ref()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default();
                let rule = if rule.starts_with("heuristic:") {
                    rule.clone()
                } else {
                    at(rule)
                };
                format!("removed parameter {name}{who}, by {rule}")
            }
            LinkStep::TokenKept { place } => format!(
                "the recipient's address is in the {place}: kept, or the link would lead elsewhere"
            ),
            LinkStep::Functional { reason } => {
                format!("a functional link ({reason}): its parameters are kept")
            }
            LinkStep::DepthLimit { max } => {
                format!("wrappers nested deeper than {max}: kept as it is")
            }
        };
        let _ = writeln!(out, "as a link: {line}");
    }
    let _ = writeln!(
        out,
        "link becomes: {}",
        outcome.url.as_deref().unwrap_or(url)
    );
    out
}
