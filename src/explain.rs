//! `mailveil rules explain URL`: what mailveil would do with one URL, as an image and as
//! a link, and which rule (file and line) or heuristic decided it. `mailveil rules stats`:
//! how many rules of each kind are loaded.

use mailveil_core::detect::{Detector, remote_url};
use mailveil_core::links::{self, LinkContext, LinkPolicy, LinkStep};
use mailveil_core::rules::ParamClass;
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
    let rule_or_heuristic = |id: &str| {
        if id.starts_with("heuristic:") {
            id.to_string()
        } else {
            at(id)
        }
    };
    match remote_url(url, &None) {
        None => out.push_str("as an image: not a remote URL: nothing is fetched\n"),
        Some(remote) => match detector.tracker(&remote, true) {
            Some(v) => {
                let rule = rule_or_heuristic(&v.rule);
                let who = v.tracker.map(|t| format!(" of {t}")).unwrap_or_default();
                let kind = if v.kind == FindingKind::RecipientToken {
                    "carries the recipient's address"
                } else if rules.redirect_entry(&v.rule).is_some() {
                    "a click-tracking redirect, which a client would hit on open"
                } else {
                    "an open-tracking pixel"
                };
                let _ = writeln!(
                    out,
                    "as an image: {kind}{who}, by {rule}: removed under every remote-content policy"
                );
            }
            None => out.push_str(
                "as an image: no rule or URL heuristic: kept under --remote-content keep (unless the image is invisible in every layout), removed under strip\n",
            ),
        },
    }
    if let Some(r) = remote_url(url, &None) {
        let path = match r.url.query() {
            Some(q) => format!("{}?{q}", r.url.path()),
            None => r.url.path().to_string(),
        };
        if let Some(id) = rules.redirect_exception(r.host(), &path) {
            let _ = writeln!(
                out,
                "as a link: excepted from redirect rules by {} (action = \"keep\")",
                at(id)
            );
        }
    }
    let ctx = LinkContext {
        rules,
        detector: &detector,
        policy,
        link_text: None,
        list_unsubscribe: &[],
    };
    let outcome = links::clean_link(url, &ctx);
    for step in &outcome.steps {
        let _ = writeln!(out, "as a link: {}", step_line(step, rules, &at));
    }
    let result = outcome.url.as_deref().unwrap_or(url);
    kept_params(result, rules, &at, &mut out);
    if outcome.steps.is_empty() {
        out.push_str("as a link: no redirect rule and no identifying parameter: kept as it is\n");
        return out;
    }
    let _ = writeln!(out, "link becomes: {result}");
    out
}

/// One line for one step of the link decision.
fn step_line(step: &LinkStep, rules: &Rules, at: &dyn Fn(&str) -> String) -> String {
    match step {
        LinkStep::Unwrapped {
            rule,
            tracker,
            from_host,
        } => {
            let plain_view = rules.redirect_entry(rule).is_some_and(|e| e.opaque);
            let how = if plain_view {
                " (an opaque wrapper that carried its destination in plain view)"
            } else {
                ""
            };
            format!(
                "unwrapped the {tracker} redirect on {from_host}{how}, by {}",
                at(rule)
            )
        }
        LinkStep::Opaque { rule, tracker } => format!(
            "an opaque {tracker} click tracker, by {}: kept (following it would count as a click)",
            at(rule)
        ),
        LinkStep::ParamRemoved {
            name,
            rule,
            tracker,
        } => {
            let who = tracker
                .as_ref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            if rule.starts_with("heuristic:") {
                format!("removed parameter {name}{who}, by {rule}")
            } else {
                format!(
                    "removed parameter {name}{who}, by {}{}",
                    at(rule),
                    param_scope(rules, rule)
                )
            }
        }
        LinkStep::TokenKept { place } => format!(
            "the recipient's address is in the {place}: kept, or the link would lead elsewhere"
        ),
        LinkStep::Functional { reason } => format!(
            "a functional link ({reason}): what makes it work is kept; campaign tags and click ids go"
        ),
        LinkStep::DepthLimit { max } => format!("wrappers nested deeper than {max}: kept as it is"),
    }
}

/// What a parameter rule is: its class and where it applies.
fn param_scope(rules: &Rules, id: &str) -> String {
    let Some(entry) = rules.param_entry(id) else {
        return String::new();
    };
    let class = match entry.class {
        ParamClass::Campaign => "a campaign tag",
        ParamClass::Subscriber => "identifies the reader",
        ParamClass::ClickId => "a click id",
    };
    let mut scope = format!(" [{class}");
    if !entry.hosts.is_empty() {
        let _ = write!(scope, "; on {}", entry.hosts.join(", "));
    }
    if !entry.paths.is_empty() {
        let _ = write!(scope, "; paths {}", entry.paths.join(", "));
    }
    if !entry.patterns.is_empty() {
        let _ = write!(scope, "; names matching {}", entry.patterns.join(", "));
    }
    scope.push(']');
    scope
}

/// Lines for the parameters of the final link that an exception keeps.
fn kept_params(url: &str, rules: &Rules, at: &dyn Fn(&str) -> String, out: &mut String) {
    let Some(r) = remote_url(url, &None) else {
        return;
    };
    let path = match r.url.query() {
        Some(q) => format!("{}?{q}", r.url.path()),
        None => r.url.path().to_string(),
    };
    for (name, _) in r.url.query_pairs() {
        if let Some(id) = rules.param_exception(r.host(), &path, &name) {
            let _ = writeln!(
                out,
                "as a link: kept parameter {name}, excepted by {} (action = \"keep\")",
                at(id)
            );
        }
    }
}

/// `mailveil rules stats`: how many rules of each kind, one per line.
pub fn stats(rules: &Rules) -> String {
    let s = rules.summary();
    format!(
        "trackers\t{}\n\
         pixel patterns\t{}\n\
         redirect formats\t{}\n\
         \x20 opaque\t{}\n\
         \x20 opaque, unwrapped when the destination is in plain view\t{}\n\
         parameter rules\t{}\n\
         \x20 limited to hosts\t{}\n\
         \x20 limited to paths\t{}\n\
         \x20 naming parameters by pattern\t{}\n\
         exceptions (action = \"keep\")\t{}\n\
         allow entries\t{}\n\
         policies\t{}\n\
         functional-link rules\t{}\n",
        s.trackers,
        s.pixels,
        s.redirects,
        s.opaque_redirects,
        s.plain_view_redirects,
        s.params,
        s.site_params,
        s.path_params,
        s.pattern_params,
        s.keeps,
        s.allows,
        s.policies,
        s.functional,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Rules {
        let (rules, errors) = crate::rule_files::load(&[], false);
        assert!(errors.is_empty(), "{errors:?}");
        rules
    }

    fn explained(url: &str) -> String {
        explain(url, &[], &shipped(), &LinkPolicy::default())
    }

    /// Issue 18: `rules explain` shows the decision for functional links (item 2),
    /// destinations in plain view (item 3) and site-specific parameters (item 4).
    #[test]
    fn explains_functional_links_plain_view_destinations_and_site_parameters() {
        let text = explained("https://shop.example/unsubscribe?e=77&utm_source=footer&gclid=Cj0");
        assert!(text.contains("as a link: a functional link (url: unsubscrib): what makes it work is kept; campaign tags and click ids go"), "{text}");
        assert!(
            text.contains(
                "removed parameter utm_source (Google Analytics), by utm (shipped:params.toml:"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "removed parameter gclid (Google Ads / DoubleClick), by google-ads-click"
            ),
            "{text}"
        );
        assert!(
            text.contains("link becomes: https://shop.example/unsubscribe?e=77\n"),
            "{text}"
        );

        let text = explained(
            "https://u1.ct.sendgrid.net/ls/click?upn=x&url=https%253A%252F%252Fwww.example.com%252F",
        );
        assert!(text.contains("as a link: unwrapped the Twilio SendGrid redirect on u1.ct.sendgrid.net (an opaque wrapper that carried its destination in plain view), by sendgrid-click-ls (shipped:sendgrid.toml:"), "{text}");
        assert!(
            text.contains("link becomes: https://www.example.com/\n"),
            "{text}"
        );
        let text = explained("https://u1.ct.sendgrid.net/ls/click?upn=x");
        assert!(
            text.contains("an opaque Twilio SendGrid click tracker"),
            "{text}"
        );

        let text = explained("https://x.com/a/status/1?s=20&t=Ab");
        assert!(
            text.contains(
                "removed parameter s (X (Twitter)), by x-share-source (shipped:site-params.toml:"
            ),
            "{text}"
        );
        assert!(
            text.contains("[a campaign tag; on x.com, twitter.com; paths /*/status/]"),
            "{text}"
        );
        let text = explained("https://www.amazon.com/dp/B0?pd_rd_w=1");
        assert!(text.contains("names matching p[fd]_rd_[a-z]*"), "{text}");
    }

    /// A click tracker where an image goes is named as what it is.
    #[test]
    fn explains_a_click_tracker_used_as_an_image() {
        let text = explained("https://news.us1.list-manage.com/track/click?u=1&id=2&e=3");
        assert!(text.contains("as an image: a click-tracking redirect, which a client would hit on open of Mailchimp, by mailchimp-click"), "{text}");
    }

    #[test]
    fn stats_count_the_new_kinds() {
        let text = stats(&shipped());
        let count = |label: &str| -> usize {
            text.lines()
                .find(|l| l.trim_start().starts_with(label))
                .and_then(|l| l.rsplit('\t').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        assert!(count("limited to paths") >= 2, "{text}");
        assert!(count("naming parameters by pattern") >= 1, "{text}");
        assert!(
            count("opaque, unwrapped when the destination is in plain view") >= 4,
            "{text}"
        );
        assert!(count("parameter rules") >= 70, "{text}");
    }
}
