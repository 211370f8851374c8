//! Prometheus metrics, all named `mailveil_*`, counted by the pipeline (mails, findings,
//! errors, downstream replies, the report store) and the proxy (fetches, cache hits).
//! The recording functions are cheap no-ops until [`install`] has set the process-wide
//! recorder (what a process serving the dashboard does: `--dashboard-listen`, `mailveil
//! dashboard`); the dashboard's `/metrics` renders what this process counted since it
//! started.

use mailveil_core::Report;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// Mails cleaned (passed through the core), whatever the outcome.
pub(crate) const MAILS: &str = "mailveil_mails_processed_total";
/// Findings, by `kind` and `action`.
pub(crate) const FINDINGS: &str = "mailveil_findings_total";
/// Findings, by `action` alone.
pub(crate) const ACTIONS: &str = "mailveil_actions_total";
/// Mails that could not be cleaned, by `error` code.
pub(crate) const ERRORS: &str = "mailveil_errors_total";
/// Time to clean one mail.
pub(crate) const CLEAN_SECONDS: &str = "mailveil_clean_seconds";
/// Replies of the downstream server after the final dot, by `class` (2xx, 4xx, 5xx,
/// none when no reply came).
pub(crate) const DOWNSTREAM: &str = "mailveil_downstream_replies_total";
/// Image proxy fetches, by `outcome` (the proxy increments it: [`proxy_fetch`]).
pub(crate) const PROXY_FETCHES: &str = "mailveil_proxy_fetches_total";
/// Image proxy answers served from its cache ([`proxy_cache_hit`]).
pub(crate) const PROXY_CACHE_HITS: &str = "mailveil_proxy_cache_hits_total";
/// Reports that the store could not record.
pub(crate) const STORE_ERRORS: &str = "mailveil_report_store_errors_total";

const CLEAN_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same
/// handle). `None` when another recorder was installed first.
pub(crate) fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(CLEAN_SECONDS.into()), CLEAN_BUCKETS)
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            // Present from the start, at 0, so a scrape sees them move.
            for name in [MAILS, PROXY_CACHE_HITS, STORE_ERRORS] {
                metrics::counter!(name).increment(0);
            }
            Some(handle)
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(MAILS, "Mails cleaned.");
    metrics::describe_counter!(FINDINGS, "Findings by kind and action.");
    metrics::describe_counter!(ACTIONS, "Findings by action.");
    metrics::describe_counter!(ERRORS, "Mails that could not be cleaned, by error.");
    metrics::describe_histogram!(
        CLEAN_SECONDS,
        metrics::Unit::Seconds,
        "Time to clean one mail."
    );
    metrics::describe_counter!(DOWNSTREAM, "Downstream replies after the final dot.");
    metrics::describe_counter!(PROXY_FETCHES, "Image proxy fetches by outcome.");
    metrics::describe_counter!(PROXY_CACHE_HITS, "Image proxy answers from the cache.");
    metrics::describe_counter!(STORE_ERRORS, "Reports the store could not record.");
}

/// The text exposition of every metric of this process ("" before [`install`]).
pub(crate) fn render() -> String {
    match HANDLE.get() {
        Some(Some(h)) => {
            h.run_upkeep();
            h.render()
        }
        _ => String::new(),
    }
}

/// Counts one cleaned mail: its findings, its error, the time it took.
pub(crate) fn mail_cleaned(report: &Report, elapsed: Duration) {
    metrics::counter!(MAILS).increment(1);
    metrics::histogram!(CLEAN_SECONDS).record(elapsed.as_secs_f64());
    // Counted once per label set, not once per finding: building and hashing a
    // counter's key for each of a newsletter's hundreds of findings was 2% of its cost
    // in `serve` (issue 17), recorder or not.
    let by_kind = finding_counts(report);
    let by_action = tally(by_kind.iter().map(|&((_, action), n)| (action, n)));
    for ((kind, action), n) in by_kind {
        metrics::counter!(FINDINGS, "kind" => kind, "action" => action).increment(n);
    }
    for (action, n) in by_action {
        metrics::counter!(ACTIONS, "action" => action).increment(n);
    }
    if let Some(err) = &report.error {
        mail_error(err);
    }
}

/// How many findings the report has of each kind and action.
fn finding_counts(report: &Report) -> Vec<((&'static str, &'static str), u64)> {
    tally(
        report
            .findings
            .iter()
            .map(|f| ((f.kind.as_str(), f.action.as_str()), 1)),
    )
}

/// The counts summed by key, the keys in order of first appearance (a mail has a few
/// kinds of finding: a list beats a hash map).
fn tally<K: PartialEq>(counts: impl IntoIterator<Item = (K, u64)>) -> Vec<(K, u64)> {
    let mut sums: Vec<(K, u64)> = Vec::new();
    for (key, n) in counts {
        match sums.iter_mut().find(|(k, _)| *k == key) {
            Some((_, sum)) => *sum += n,
            None => sums.push((key, n)),
        }
    }
    sums
}

/// Counts a mail that could not be cleaned. Only the code before any `:` is a label
/// (error texts are not bounded).
pub(crate) fn mail_error(code: &str) {
    let code: String = code
        .split(':')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect();
    metrics::counter!(ERRORS, "error" => code).increment(1);
}

/// Counts one downstream reply code (0: none came).
pub(crate) fn downstream_reply(code: u16) {
    let class = match code {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    };
    metrics::counter!(DOWNSTREAM, "class" => class).increment(1);
}

/// For the image proxy: one fetch and how it ended (`ok`, `refused`, `error`, ...).
pub(crate) fn proxy_fetch(outcome: &'static str) {
    metrics::counter!(PROXY_FETCHES, "outcome" => outcome).increment(1);
}

/// For the image proxy: one answer served from the cache.
pub(crate) fn proxy_cache_hit() {
    metrics::counter!(PROXY_CACHE_HITS).increment(1);
}

/// A report the store could not record.
pub(crate) fn store_error() {
    metrics::counter!(STORE_ERRORS).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailveil_core::{Envelope, Policy};
    use std::collections::HashMap;

    /// The tally counts what one increment per finding counted, for a real newsletter.
    #[test]
    fn the_tally_counts_each_finding_once() {
        let (rules, errors) = crate::rule_files::load(&[], false);
        assert!(errors.is_empty(), "{errors:?}");
        let mail = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/newsletter.eml"
        ))
        .unwrap();
        let envelope = Envelope::to(["reader@example.org"]);
        let report = mailveil_core::clean(&mail, &envelope, &Policy::default(), &rules).report;
        assert!(report.findings.len() > 5, "{:?}", report.findings);
        let mut expected_kind: HashMap<(&str, &str), u64> = HashMap::new();
        let mut expected_action: HashMap<&str, u64> = HashMap::new();
        for f in &report.findings {
            *expected_kind
                .entry((f.kind.as_str(), f.action.as_str()))
                .or_default() += 1;
            *expected_action.entry(f.action.as_str()).or_default() += 1;
        }
        let by_kind = finding_counts(&report);
        let by_action = tally(by_kind.iter().map(|&((_, action), n)| (action, n)));
        assert_eq!(
            by_kind.len(),
            expected_kind.len(),
            "one entry per label set"
        );
        assert_eq!(
            by_action.len(),
            expected_action.len(),
            "one entry per action"
        );
        assert_eq!(
            by_kind.into_iter().collect::<HashMap<_, _>>(),
            expected_kind
        );
        assert_eq!(
            by_action.into_iter().collect::<HashMap<_, _>>(),
            expected_action
        );
    }
}
