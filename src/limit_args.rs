//! The flags of the bounds of one mail (docs/limits.md), shared by `filter`, `milter`
//! and `imap`; `serve` has the same keys in its configuration file.

use clap::Args;
use mailveil::Limits;
use mailveil::links::LinkPolicy;
use std::time::Duration;

/// Every field of [`Limits`] and [`LinkPolicy::max_unwrap_depth`], with the core's
/// defaults.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Time budget for one mail, in seconds; past it the mail passes unchanged.
    #[arg(long, value_name = "SECS", default_value_t = Limits::default().max_time.as_secs())]
    pub max_time: u64,
    /// Larger mails are passed on unchanged (with `error=too-large`).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_message_bytes)]
    pub max_message_bytes: usize,
    /// Deeper MIME nesting is an error (the mail passes unchanged).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_depth)]
    pub max_depth: usize,
    /// More MIME parts than this is an error (the mail passes unchanged).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_parts)]
    pub max_parts: usize,
    /// A decoded HTML part larger than this is neutralised instead of rewritten.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_part_bytes)]
    pub max_part_bytes: usize,
    /// Memory the HTML rewriter may use for one part; past it the part is neutralised.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().html_memory_bytes)]
    pub html_memory_bytes: usize,
    /// Findings listed in the report; the rest are counted (all are acted on).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_findings)]
    pub max_findings: usize,
    /// Redirect wrappers unwrapped inside one another; deeper links are kept.
    #[arg(long, value_name = "N", default_value_t = LinkPolicy::default().max_unwrap_depth)]
    pub max_unwrap_depth: usize,
}

impl LimitArgs {
    /// The core's limits from the flags.
    pub fn limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.max_message_bytes,
            max_part_bytes: self.max_part_bytes,
            max_depth: self.max_depth,
            max_parts: self.max_parts,
            html_memory_bytes: self.html_memory_bytes,
            max_time: Duration::from_secs(self.max_time),
            max_findings: self.max_findings,
        }
    }

    /// The link policy with the unwrap depth from the flags.
    pub fn links(&self, keep_campaign_params: bool) -> LinkPolicy {
        LinkPolicy {
            keep_campaign_params,
            max_unwrap_depth: self.max_unwrap_depth,
        }
    }
}
