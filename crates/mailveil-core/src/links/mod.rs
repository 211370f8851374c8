//! Links: the pure decision for one link URL. A click should go straight to where the
//! link leads, with nothing in the URL that says who the reader is, and every link must
//! keep leading where it led (docs/architecture.md, invariant 4).
//!
//! [`clean_link`] does, in order:
//! 1. **Unwrap** click-tracking redirects that carry their destination in the URL itself
//!    (a query parameter or a path segment, plain, percent-, base64-, JSON- or
//!    zlib-encoded: the rule entry says where and how, `decode` has one function per
//!    encoding), wrappers inside wrappers up to [`LinkPolicy::max_unwrap_depth`]. A
//!    redirect is **never followed**: following counts as a click and can unsubscribe or
//!    confirm things. A decoded destination must be an absolute http(s) URL, else the
//!    link is kept as it is.
//! 2. **Opaque** redirects (the destination is only known server-side) are kept as they
//!    are and reported, so that the link shield can take them later.
//! 3. **Functional** links (unsubscribe, preferences, sign-in, confirm, verify, reset,
//!    activate: see `functional`) keep all their parameters.
//! 4. **Clean** the final URL: parameters that a rule names (campaign-class ones kept
//!    when the policy says so) and parameters whose name or value carries a recipient
//!    token are removed; every other parameter stays exactly as written (order,
//!    encoding, `+` or `%20`), and so does the fragment. Path segments that carry a
//!    token are reported, not removed: without them the path would lead elsewhere.
//!
//! Entities are the caller's: it decodes them before and escapes after. Cleaning is
//! idempotent: a cleaned URL comes back unchanged.

mod decode;
pub mod functional;
mod mailto;
mod parts;
#[cfg(test)]
mod tests;
mod text;

pub(crate) use functional::text_is_functional;
pub use functional::{FUNCTIONAL_STEMS, FUNCTIONAL_WORDS};
pub use text::find_urls;
pub(crate) use text::has_scheme;

use crate::detect::{Detector, strip_url_noise};
use crate::rules::{Redirect, Rules};
use decode::Carried;
use parts::Parts;

/// What the user chose for links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPolicy {
    /// Keep aggregate campaign parameters (utm_* and other `class = "campaign"` rules).
    pub keep_campaign_params: bool,
    /// How many wrappers inside wrappers are unwrapped; a link nested deeper is kept as
    /// it is (and reported), so that cleaning stays idempotent.
    pub max_unwrap_depth: usize,
}

impl Default for LinkPolicy {
    fn default() -> Self {
        LinkPolicy {
            keep_campaign_params: false,
            max_unwrap_depth: 5,
        }
    }
}

/// Everything [`clean_link`] needs for one link.
#[derive(Debug, Clone, Copy)]
pub struct LinkContext<'a> {
    /// The compiled rules.
    pub rules: &'a Rules,
    /// The message's recipient tokens.
    pub detector: &'a Detector<'a>,
    /// The user's choices.
    pub policy: &'a LinkPolicy,
    /// The link's text (entity-decoded), for functional-link keywords.
    pub link_text: Option<&'a str>,
    /// The URLs of the message's `List-Unsubscribe` header (with or without `<>`).
    pub list_unsubscribe: &'a [String],
}

/// What was decided for one link.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkOutcome {
    /// The new URL when the link changed, `None` when it stays as it is.
    pub url: Option<String>,
    /// What was found and done, in order.
    pub steps: Vec<LinkStep>,
}

impl LinkOutcome {
    /// Whether at least one redirect was unwrapped.
    pub fn unwrapped(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, LinkStep::Unwrapped { .. }))
    }

    /// Whether the link ends at an opaque click tracker (kept).
    pub fn opaque(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, LinkStep::Opaque { .. }))
    }

    /// The names of the parameters removed.
    pub fn removed_params(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().filter_map(|s| match s {
            LinkStep::ParamRemoved { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }
}

/// One finding or action on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStep {
    /// A redirect carrying its destination was replaced by that destination.
    Unwrapped {
        /// The redirect rule id.
        rule: String,
        /// The tracker's display name.
        tracker: String,
        /// The redirect's host.
        from_host: String,
    },
    /// A redirect whose destination is not in the URL (or could not be decoded): kept.
    Opaque {
        /// The redirect rule id.
        rule: String,
        /// The tracker's display name.
        tracker: String,
    },
    /// An identifying parameter was removed.
    ParamRemoved {
        /// The parameter name (percent-decoded).
        name: String,
        /// The parameter rule id, or `heuristic:recipient-token`.
        rule: String,
        /// The tracker's display name, where the rule names one.
        tracker: Option<String>,
    },
    /// A recipient token in the path or fragment, kept because removing it would
    /// change where the link leads.
    TokenKept {
        /// `path` or `fragment`.
        place: String,
    },
    /// A functional link: its parameters were kept.
    Functional {
        /// What made it functional (`list-unsubscribe`, `link text: abmeld`, `url: confirm`).
        reason: String,
    },
    /// Wrappers nested deeper than the policy allows: the link was kept as it is.
    DepthLimit {
        /// The policy's limit.
        max: usize,
    },
}

/// The rule id of the recipient-token heuristic.
pub const TOKEN_HEURISTIC: &str = "heuristic:recipient-token";

/// The click-tracking redirect rule that `url` is an instance of, if any: the decision
/// [`clean_link`] takes at its first step. A URL on a host that also serves redirects but
/// carries none of their destinations (every matching rule recoverable, its parameter or
/// segment absent) is a plain URL, not a click.
pub fn click_redirect<'r>(rules: &'r Rules, url: &str) -> Option<&'r Redirect> {
    let parts = Parts::parse(url)?;
    click_redirect_at(rules, &parts, parts.path_and_query())
}

/// [`click_redirect`] of a URL already split, its `path?query` already written.
fn click_redirect_at<'r>(
    rules: &'r Rules,
    parts: &Parts<'_>,
    path_and_query: &str,
) -> Option<&'r Redirect> {
    let matches = rules.match_redirect(&parts.host, path_and_query);
    let first = *matches.first()?;
    let plain = matches
        .iter()
        .all(|r| !r.entry.opaque && decode::destination(&r.entry, parts) == Carried::Absent);
    (!plain).then_some(first)
}

/// [`click_redirect`] of a URL the URL parser read, `path_and_query` its path and query
/// as [`Rules::match_pixel`] was given them: the URL is split without being parsed
/// again, and its `path?query` is not written again (issue 17).
pub(crate) fn click_redirect_of<'r>(
    rules: &'r Rules,
    url: &url::Url,
    path_and_query: &str,
) -> Option<&'r Redirect> {
    click_redirect_at(rules, &Parts::of_url(url)?, path_and_query)
}

/// Decides what to do with one link URL (entity-decoded). Never follows anything.
pub fn clean_link(url: &str, ctx: &LinkContext<'_>) -> LinkOutcome {
    let original = strip_url_noise(url);
    // Each stage is split once (the first here), and the split of the last one is kept
    // for its parameters: a link was split four times over (issue 17).
    let Some(first) = Parts::parse(&original) else {
        return mailto::clean(&original, ctx).unwrap_or_default();
    };
    let mut split = Some(first);
    let mut steps = Vec::new();
    let mut stages = vec![original.clone()];
    let mut opaque = false;
    let last = loop {
        let parts = match split.take() {
            Some(parts) => parts,
            None => match stages.last().and_then(|s| Parts::parse(s)) {
                Some(parts) => parts,
                None => break None,
            },
        };
        let matches = ctx
            .rules
            .match_redirect(&parts.host, parts.path_and_query());
        if matches.is_empty() {
            break Some(parts);
        }
        let mut recovered = None;
        let mut absent = 0;
        // Opaque rules too: one may name parameters that carry the destination in
        // plain view now and then.
        for r in &matches {
            match decode::destination(&r.entry, &parts) {
                Carried::Destination(d) => {
                    recovered = Some((*r, d));
                    break;
                }
                Carried::Absent => absent += 1,
                Carried::Undecodable => {}
            }
        }
        if recovered.is_none() && absent == matches.len() {
            // Only recoverable formats matched and none of them is carried here: this
            // is a plain link on a host that also serves redirects.
            break Some(parts);
        }
        match recovered {
            Some((rule, dest)) => {
                if stages.len() > ctx.policy.max_unwrap_depth {
                    return LinkOutcome {
                        url: None,
                        steps: vec![LinkStep::DepthLimit {
                            max: ctx.policy.max_unwrap_depth,
                        }],
                    };
                }
                steps.push(LinkStep::Unwrapped {
                    rule: rule.entry.id.to_string(),
                    tracker: ctx.rules.tracker_name(&rule.entry.tracker).to_string(),
                    from_host: parts.host.clone(),
                });
                if stages.contains(&dest) {
                    break None;
                }
                stages.push(dest);
            }
            None => {
                // An opaque rule, or a recoverable format whose destination did not
                // decode: either way the destination is unknown, so the link stays.
                let rule = matches
                    .iter()
                    .find(|r| r.entry.opaque)
                    .unwrap_or(&matches[0]);
                steps.push(LinkStep::Opaque {
                    rule: rule.entry.id.to_string(),
                    tracker: ctx.rules.tracker_name(&rule.entry.tracker).to_string(),
                });
                opaque = true;
                break None;
            }
        }
    };
    let result = stages.last().map_or("", String::as_str);
    let mut cleaned = None;
    if !opaque {
        // The link text and the header are read once for all stages; the final URL's
        // split is the one made above.
        let functional =
            functional::Functional::new(ctx.link_text, ctx.list_unsubscribe, Some(ctx.rules));
        let parts = last.or_else(|| Parts::parse(result));
        if let Some(reason) = functional.reason(result, parts.as_ref()) {
            let mark = steps.len();
            steps.push(LinkStep::Functional { reason });
            // What makes it work stays; what only measures the campaign or the click
            // is never needed for that.
            cleaned = clean_params(parts.as_ref(), ctx, &mut steps, Scope::Analytics);
            // Functional only by what those parameters carried (`utm_source=unsubscribe`),
            // it is not once they are gone: cleaned as any link, or the next pass would
            // clean it further (found by the link_clean fuzz target: not idempotent).
            if let Some(new) = &cleaned
                && functional.reason(new, Parts::parse(new).as_ref()).is_none()
            {
                steps.truncate(mark);
                cleaned = clean_params(parts.as_ref(), ctx, &mut steps, Scope::All);
            }
        } else if let Some(reason) = stages[..stages.len() - 1]
            .iter()
            .find_map(|s| functional.reason(s, Parts::parse(s).as_ref()))
        {
            // Only a wrapper says it is functional: keep the link whole.
            return LinkOutcome {
                url: None,
                steps: vec![LinkStep::Functional {
                    reason: format!("{reason} (kept wrapped)"),
                }],
            };
        } else {
            cleaned = clean_params(parts.as_ref(), ctx, &mut steps, Scope::All);
        }
    }
    let result = cleaned.unwrap_or_else(|| result.to_string());
    LinkOutcome {
        url: (result != original).then_some(result),
        steps,
    }
}

/// Which parameters [`clean_params`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every identifying parameter: by rule, or carrying the reader's address.
    All,
    /// Of a functional link: only the ones a rule classes as campaign tags or ad click
    /// ids, which no unsubscribe, sign-in or confirm link needs to work.
    Analytics,
}

/// Removes identifying parameters from the URL split in `parts` (none: not an http(s)
/// URL); `Some(new)` when any were removed.
fn clean_params(
    parts: Option<&Parts<'_>>,
    ctx: &LinkContext<'_>,
    steps: &mut Vec<LinkStep>,
    scope: Scope,
) -> Option<String> {
    let parts = parts?;
    let path_and_query = parts.path_and_query();
    let detector = ctx.detector;
    let mut kept: Vec<&str> = Vec::new();
    let mut removed = false;
    for piece in parts.query_pieces() {
        let raw_name = parts::name_and_value(piece).0;
        let name = parts::percent_decoded(raw_name, true);
        let by_rule = if name.is_empty() {
            None
        } else {
            ctx.rules
                .match_params_at(&parts.host, path_and_query, &name)
                .filter(|p| scope == Scope::All || p.is_analytics())
                .find(|p| !(p.is_campaign() && ctx.policy.keep_campaign_params))
        };
        if let Some(p) = by_rule {
            steps.push(LinkStep::ParamRemoved {
                name: name.into_owned(),
                rule: p.entry.id.to_string(),
                tracker: p
                    .entry
                    .tracker
                    .as_deref()
                    .map(|t| ctx.rules.tracker_name(t).to_string()),
            });
            removed = true;
        } else if scope == Scope::All && !piece.is_empty() && detector.carries_token(piece) {
            steps.push(LinkStep::ParamRemoved {
                name: name.into_owned(),
                rule: TOKEN_HEURISTIC.into(),
                tracker: None,
            });
            removed = true;
        } else {
            kept.push(piece);
        }
    }
    if scope == Scope::All && detector.carries_token(parts.path) {
        steps.push(LinkStep::TokenKept {
            place: "path".into(),
        });
    }
    if scope == Scope::All && parts.fragment.is_some_and(|f| detector.carries_token(f)) {
        steps.push(LinkStep::TokenKept {
            place: "fragment".into(),
        });
    }
    if !removed {
        return None;
    }
    let query = if kept.iter().all(|p| p.is_empty()) {
        None
    } else {
        Some(kept.join("&"))
    };
    Some(parts.with_query(query.as_deref()))
}
