//! The report store: one record per mail that passed (when, from whom, to whom, how
//! large, which trackers, what was found and done) and its findings, in SQLite (a file,
//! the default) or PostgreSQL, through one code path ([`SqlStore`], sqlx's `Any` driver).
//!
//! Privacy of the reader comes first: no bodies and no subjects are stored (a subject is
//! kept as a short hash, so repeats can be told apart), and URLs are cut to
//! `scheme://host/path` unless the store is opened with `debug` on (query strings and
//! fragments carry the per-recipient tokens that trackers use). A proxy URL is kept as
//! the URL it carries, never with its signature or encoded URL ([`stored_url`]).
//!
//! - [`ReportStore`]: what a store does (record, purge, summarise, search).
//! - [`MailRecord::from_report`]: turns one pass of the core into a record.
//! - [`Summary`]: totals, top senders, top trackers, per-day counts for a period.
//! - [`domain`]: the registrable domain senders are grouped by (Public Suffix List).
//! - [`day`]: calendar dates without a date library.

pub mod day;
pub mod domain;
mod record;
mod sql;

pub use record::{MailRecord, StoredFinding, short_url, stored_url};
pub use sql::SqlStore;

use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// Days of reports kept when nothing else is configured.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened, or a statement failed.
    #[error("report store: {0}")]
    Db(#[from] sqlx::Error),
    /// The store location is not something we can open.
    #[error("report store: {0}")]
    Config(String),
}

/// What store methods return: boxed, so that `dyn ReportStore` works.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A place where reports are kept.
///
/// Every method may be called from several tasks at once. An `Err` means the operation
/// did not happen (a failed `record` stored nothing); callers on the delivery path log it
/// and go on: a store failure never affects delivery.
pub trait ReportStore: Send + Sync {
    /// Stores one mail and its findings; returns the new record's id.
    fn record<'a>(&'a self, mail: &'a MailRecord) -> StoreFuture<'a, i64>;
    /// Deletes every mail (and its findings) older than `before` (unix seconds);
    /// returns how many mails went.
    fn purge(&self, before: i64) -> StoreFuture<'_, u64>;
    /// Totals, top senders and trackers (at most `top` each), per-day counts, for
    /// `since <= time < until` (unix seconds).
    fn summary(&self, since: i64, until: i64, top: usize) -> StoreFuture<'_, Summary>;
    /// The newest mails (at most `limit`), with their findings, whose sender, From
    /// domain, recipient, Message-ID or trackers contain `query` (case-insensitive; an
    /// empty query matches every mail).
    fn recent<'a>(&'a self, query: &'a str, limit: usize) -> StoreFuture<'a, Vec<MailRecord>>;
    /// Every mail recorded with this Message-ID (angle brackets optional), with findings.
    fn by_message_id<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, Vec<MailRecord>>;
}

/// What a period looked like.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// First second of the period (unix).
    pub since: i64,
    /// First second after the period (unix).
    pub until: i64,
    /// Sums over every mail of the period.
    pub totals: Totals,
    /// Senders whose mail had findings blocked, by the registrable domain of their
    /// `From:` address (the envelope sender's domain for records of versions that did
    /// not keep it), most findings blocked first.
    pub top_senders: Vec<Ranked>,
    /// Trackers and ESPs found, most findings first.
    pub top_trackers: Vec<Ranked>,
    /// One entry per day that had mail, oldest first (UTC days).
    pub per_day: Vec<DayCount>,
}

/// Sums over the mails of a period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Mails recorded.
    pub mails: i64,
    /// Mails with at least one finding acted on.
    pub mails_cleaned: i64,
    /// Mails with at least one known tracker.
    pub mails_with_trackers: i64,
    /// Every finding (acted on or kept), including those beyond the listing limit.
    pub findings: i64,
    /// Findings acted on (stripped, unwrapped, cleaned...): what was blocked.
    pub blocked: i64,
    /// Mails that could not be cleaned (passed unchanged or refused).
    pub errors: i64,
    /// Findings acted on, per kind (as in the `X-Mailveil` header).
    pub by_kind: BTreeMap<String, i64>,
    /// Findings per action (keep included).
    pub by_action: BTreeMap<String, i64>,
}

/// One line of a top list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ranked {
    /// The sender domain or tracker name.
    pub name: String,
    /// Mails it appears in.
    pub mails: i64,
    /// Findings acted on.
    pub blocked: i64,
}

/// One day of a period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DayCount {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Mails recorded that day.
    pub mails: i64,
    /// Findings acted on that day.
    pub blocked: i64,
    /// Findings acted on that belong to a known tracker.
    pub trackers: i64,
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Opens a store from what the user wrote: `postgres://...`/`postgresql://...`,
/// `sqlite:...`, or a file path (created when missing).
pub async fn open(location: &str, debug: bool) -> Result<SqlStore, StoreError> {
    SqlStore::open(location, debug).await
}

/// Purges at start and then once a day, for as long as the task runs. Failures are
/// logged and retried the next day.
pub async fn retention_task(store: std::sync::Arc<dyn ReportStore>, retention_days: u32) {
    loop {
        let before = now() - i64::from(retention_days) * 86_400;
        match store.purge(before).await {
            Ok(n) => tracing::info!(purged = n, retention_days, "report store purged"),
            Err(e) => tracing::warn!("report store purge failed: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(86_400)).await;
    }
}
