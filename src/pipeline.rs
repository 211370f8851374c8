//! What happens around [`clean`](mailveil_core::clean), the same for every way in:
//!
//! ```text
//! frontend --raw, envelope--> receive (verify DKIM/ARC) --> clean (the core, off the
//! async threads) --> seal (Authentication-Results, ARC) --> prefetch (MPP)
//!          <--Processed (bytes, report, tempfail)--
//! frontend delivers, then Processed::finish(outcome) --> metrics, report store, log line
//! ```
//!
//! `filter`, `serve`, the milter and the IMAP sweep all call it; each keeps only its
//! protocol. A frontend never sees the proxy, the store or the metrics: what it knows
//! (the outcome of the delivery) it says in [`Outcome`].
//!
//! Failures stay closed: the core never panics across its edge (it catches its own and
//! delivers the mail wrapped); should anything in this layer panic anyway, the mail
//! gets a temporary failure, never the raw mail. A store that fails is logged and
//! counted and changes nothing about the mail.

use crate::auth::{Authenticator, Verdict};
use crate::metrics;
use crate::printable::printable;
use crate::rule_files::LiveRules;
use crate::store::{MailRecord, ReportStore};
use mailveil_core::{Action, Cleaned, Envelope, Policy, Report, Rules, TooLarge, clean_for};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Where a mail came from, for the log line and the record.
#[derive(Debug, Clone, Default)]
pub(crate) struct MailMeta {
    /// `filter`, `serve`, `milter` or `imap`.
    pub frontend: &'static str,
    /// The MTA's queue id; `FOLDER/UID` for the IMAP sweep; empty when none is known.
    pub queue_id: String,
    /// The client that handed the mail over (address, or what stands for it).
    pub peer: String,
}

/// Where reports go.
pub(crate) enum Reports {
    /// Nowhere.
    Off,
    /// An open store; each record is written in a task of its own.
    Store {
        /// The store.
        store: Arc<dyn ReportStore>,
        /// Keep full URLs.
        debug: bool,
    },
    /// A store opened when the first report is recorded, after the mail went out, and
    /// purged of what is older than the retention first (`filter`, a single sweep: a
    /// store that cannot be opened must not keep the mail back).
    OnDemand {
        /// The store location.
        location: String,
        /// Keep full URLs.
        debug: bool,
        /// Days kept.
        retention_days: u32,
    },
}

impl Reports {
    /// `Some(debug)` when reports are recorded.
    fn debug(&self) -> Option<bool> {
        match self {
            Reports::Off => None,
            Reports::Store { debug, .. } | Reports::OnDemand { debug, .. } => Some(*debug),
        }
    }
}

/// Records reports in tasks of their own, and knows which are still running.
struct Recorder {
    reports: Reports,
    /// The on-demand store, once opened (or why it could not be).
    opened: tokio::sync::OnceCell<Result<Arc<dyn ReportStore>, String>>,
    /// Records being written.
    in_flight: std::sync::Mutex<tokio::task::JoinSet<()>>,
}

impl Recorder {
    fn new(reports: Reports) -> Recorder {
        Recorder {
            reports,
            opened: tokio::sync::OnceCell::new(),
            in_flight: std::sync::Mutex::new(tokio::task::JoinSet::new()),
        }
    }

    /// Records one mail in a task of its own.
    fn spawn(self: &Arc<Self>, record: MailRecord) {
        let me = Arc::clone(self);
        let mut tasks = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move { me.record(record).await });
    }

    /// Waits for the records in flight (a process about to exit), `limit` at most.
    async fn drain(&self, limit: Duration) {
        let mut tasks = {
            let mut guard = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *guard)
        };
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all).await.is_err() {
            warn!("reports still being recorded at exit: not recorded");
        }
    }

    /// Records one mail. Errors are logged and counted, never returned: a store failure
    /// changes nothing about the mail.
    async fn record(&self, record: MailRecord) {
        let store = match &self.reports {
            Reports::Off => return,
            Reports::Store { store, .. } => Ok(Arc::clone(store)),
            Reports::OnDemand {
                location,
                debug,
                retention_days,
            } => self
                .opened
                .get_or_init(|| open_on_demand(location, *debug, *retention_days))
                .await
                .clone(),
        };
        let result = match store {
            Ok(store) => store.record(&record).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match result {
            Ok(id) => debug!(report_id = id, findings = record.findings.len(), "recorded"),
            Err(e) => {
                metrics::store_error();
                warn!("report not recorded: {}", printable(&e));
            }
        }
    }
}

/// Opens the store and purges what is older than the retention.
async fn open_on_demand(
    location: &str,
    debug: bool,
    retention_days: u32,
) -> Result<Arc<dyn ReportStore>, String> {
    let store = crate::store::open(location, debug)
        .await
        .map_err(|e| e.to_string())?;
    let before = crate::store::now() - i64::from(retention_days.max(1)) * 86_400;
    store.purge(before).await.map_err(|e| e.to_string())?;
    Ok(Arc::new(store))
}

/// Prefetch at delivery (MPP): the proxy whose cache is filled, and how long a mail may
/// wait for it.
pub(crate) struct Prefetch {
    /// The proxy.
    pub proxy: Arc<crate::proxy::Proxy>,
    /// Per-mail deadline.
    pub deadline: Duration,
}

/// The layer around the core, shared by every connection of a frontend.
pub(crate) struct Pipeline {
    rules: Arc<LiveRules>,
    policy: Policy,
    reports: Arc<Recorder>,
    prefetch: Option<Prefetch>,
    auth: Option<Arc<Authenticator>>,
    /// Clean every mail on the calling thread, not on a blocking-pool thread: for a
    /// process that cleans one mail and has nothing else to run (`filter`), where
    /// starting that thread was a tenth of the process (issue 17). Without it, only
    /// mails up to [`INLINE_MAX`] are.
    inline: bool,
}

/// Mails up to this size are cleaned on the async thread that holds them rather than
/// on a blocking-pool thread: for them the hand-off (waking a pool thread, then the
/// session's task again) costs more than the clean. Measured on `serve` (issue 17,
/// docs/performance.md): 15-20% less CPU per 20 KB mail. A 50 KB newsletter cleans in
/// under 2 ms, short enough to hold a worker without starving the sessions beside it;
/// larger mails, whose clean can take tens of milliseconds, still move.
const INLINE_MAX: usize = 64 * 1024;

/// A mail as it came, verified once, cleaned once per copy ([`Pipeline::clean`]).
pub(crate) struct Incoming<B> {
    raw: Arc<B>,
    envelope: Envelope,
    meta: Arc<MailMeta>,
    verdict: Option<Arc<Verdict>>,
    started: Instant,
}

impl<B: AsRef<[u8]>> Incoming<B> {
    /// The mail as it came.
    pub(crate) fn raw(&self) -> &[u8] {
        self.raw.as_ref().as_ref()
    }
}

/// One cleaned copy: what the frontend delivers, then reports with [`Processed::finish`].
pub(crate) struct Processed {
    /// The bytes to deliver, the report, and whether the policy asks for a temporary
    /// failure. With authentication, `bytes` carry the verdict (and the seal) and
    /// `report.changed` says they differ from what came.
    pub cleaned: Cleaned,
    record: Option<MailRecord>,
    reports: Arc<Recorder>,
    meta: Arc<MailMeta>,
    sender: String,
    rcpts: usize,
    copy: (usize, usize),
    size: u64,
    out_size: u64,
    started: Instant,
    clean_us: u64,
}

/// What became of a mail, as the frontend knows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// The reply the mail got where there is one (`serve`: the downstream's, for the
    /// copy's first recipient); stored with the report.
    pub code: Option<u16>,
    /// The downstream's replies after the data, when the copy was handed to one
    /// (`serve`; empty: no reply came); counted in the metrics.
    pub downstream: Option<Vec<u16>>,
    /// What happened, in the frontend's words, for the log line.
    pub result: String,
}

impl Outcome {
    /// An outcome with only the words for the log line.
    pub(crate) fn said(result: impl Into<String>) -> Outcome {
        Outcome {
            result: result.into(),
            ..Outcome::default()
        }
    }
}

impl Pipeline {
    /// The core with these rules and this policy; no store, no prefetch, no
    /// authentication (see the `with_` methods).
    pub(crate) fn new(rules: Arc<LiveRules>, policy: Policy) -> Pipeline {
        Pipeline {
            rules,
            policy,
            reports: Arc::new(Recorder::new(Reports::Off)),
            prefetch: None,
            auth: None,
            inline: false,
        }
    }

    /// Leaves the rules in memory until the process exits: a process that is about to
    /// end (`filter`) need not free the compiled set allocation by allocation, which
    /// was about a tenth of a `filter` process on a small mail (issue 17). Only the
    /// rules: what writes anything (the report store, stdout) is still dropped and
    /// flushed as before.
    pub(crate) fn keep_rules_until_exit(&self) {
        std::mem::forget(self.rules.get());
    }

    /// Cleans on the calling thread ([`Pipeline::clean`] then blocks it): for a process
    /// that runs one mail and nothing else.
    pub(crate) fn with_inline_clean(mut self, inline: bool) -> Pipeline {
        self.inline = inline;
        self
    }

    /// Records every mail's report.
    pub(crate) fn with_reports(mut self, reports: Reports) -> Pipeline {
        self.reports = Arc::new(Recorder::new(reports));
        self
    }

    /// Prefetches each mail's proxied URLs before it is handed back.
    pub(crate) fn with_prefetch(mut self, prefetch: Option<Prefetch>) -> Pipeline {
        self.prefetch = prefetch;
        self
    }

    /// Verifies before cleaning, seals after.
    pub(crate) fn with_auth(mut self, auth: Option<Authenticator>) -> Pipeline {
        self.auth = auth.map(Arc::new);
        self
    }

    /// Waits (`limit` at most) for the reports still being recorded: what a process
    /// does before it exits.
    pub(crate) async fn drain(&self, limit: Duration) {
        self.reports.drain(limit).await;
    }

    /// The policy.
    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Takes a mail in: the verdict on it as it came, when authentication is on.
    pub(crate) async fn receive<B>(
        &self,
        raw: Arc<B>,
        envelope: Envelope,
        meta: MailMeta,
    ) -> Incoming<B>
    where
        B: AsRef<[u8]> + Send + Sync + 'static,
    {
        let started = Instant::now();
        let verdict = match &self.auth {
            Some(auth) => Some(Arc::new(auth.verify(raw.as_ref().as_ref()).await)),
            None => None,
        };
        Incoming {
            raw,
            envelope,
            meta: Arc::new(meta),
            verdict,
            started,
        }
    }

    /// The groups of recipients that share their policies (indices into the envelope):
    /// one copy each ([`mailveil_core::policy_groups`]).
    pub(crate) fn groups<B: AsRef<[u8]>>(&self, mail: &Incoming<B>) -> Vec<Vec<usize>> {
        mailveil_core::policy_groups(mail.raw(), &mail.envelope, &self.rules.get())
    }

    /// Takes a mail in and cleans it for every recipient at once (the strictest of
    /// their policies): what a frontend that cannot split a mail does.
    pub(crate) async fn process<B>(
        &self,
        raw: Arc<B>,
        envelope: Envelope,
        meta: MailMeta,
    ) -> Processed
    where
        B: AsRef<[u8]> + Send + Sync + 'static,
    {
        let everyone: Vec<usize> = (0..envelope.recipients.len()).collect();
        let mail = self.receive(raw, envelope, meta).await;
        self.clean(&mail, &everyone, (1, 1)).await
    }

    /// The copy for `group` (copy `n` of `of`): cleaned by the core (on a blocking
    /// thread when larger than [`INLINE_MAX`]), sealed when authentication is on, its
    /// images prefetched under `prefetch`, counted in the metrics.
    pub(crate) async fn clean<B>(
        &self,
        mail: &Incoming<B>,
        group: &[usize],
        copy: (usize, usize),
    ) -> Processed
    where
        B: AsRef<[u8]> + Send + Sync + 'static,
    {
        let began = Instant::now();
        let job = CleanJob {
            raw: Arc::clone(&mail.raw),
            envelope: mail.envelope.clone(),
            group: group.to_vec(),
            policy: self.policy.clone(),
            rules: self.rules.get(),
            auth: self.auth.clone().zip(mail.verdict.clone()),
            record: self.reports.reports.debug(),
        };
        let size = mail.raw().len() as u64;
        let done = if self.inline || size <= INLINE_MAX as u64 {
            job.run()
        } else {
            tokio::task::spawn_blocking(move || job.run())
                .await
                .ok()
                .flatten()
        };
        let (cleaned, elapsed, record) = done.unwrap_or_else(fail_closed);
        let (mut cleaned, mut record) = (cleaned, record);
        if let Some(p) = &self.prefetch
            && prefetch(p, &mut cleaned, &mail.meta.queue_id).await
            && let (Some(r), Some(debug)) = (&mut record, self.reports.reports.debug())
        {
            // The record says what the header says.
            *r = MailRecord::from_report(
                &cleaned.report,
                &mail.envelope,
                mail.raw(),
                r.time,
                r.elapsed_ms,
                debug,
            );
        }
        metrics::mail_cleaned(&cleaned.report, elapsed);
        Processed {
            out_size: cleaned.bytes.len() as u64,
            cleaned,
            record,
            reports: Arc::clone(&self.reports),
            meta: Arc::clone(&mail.meta),
            sender: mail.envelope.sender.clone().unwrap_or_default(),
            rcpts: group.len(),
            copy,
            size,
            started: mail.started,
            // From the end of the data to the handoff: what mailveil adds to a mail.
            clean_us: began.elapsed().as_micros() as u64,
        }
    }

    /// The wrapper of a mail too large to hold (`filter` and the milter stream it),
    /// for this policy and these rules. CPU work: call it off the async threads.
    pub(crate) fn too_large(&self, start: &[u8], envelope: &Envelope) -> TooLarge {
        TooLarge::new(start, envelope, &self.policy, &self.rules.get())
    }

    /// A mail that went through [`Pipeline::too_large`], to be finished like any other.
    pub(crate) fn streamed(
        &self,
        s: Streamed<'_>,
        envelope: &Envelope,
        meta: MailMeta,
    ) -> Processed {
        let now = Instant::now();
        metrics::mail_cleaned(&s.report, Duration::ZERO);
        let record = self.reports.reports.debug().map(|debug| {
            let mut r =
                MailRecord::from_report(&s.report, envelope, s.head, crate::store::now(), 0, debug);
            r.size = i64::try_from(s.size).unwrap_or(i64::MAX);
            r
        });
        Processed {
            cleaned: Cleaned {
                bytes: Vec::new(),
                report: s.report,
                tempfail: s.tempfail,
            },
            record,
            reports: Arc::clone(&self.reports),
            meta: Arc::new(meta),
            sender: envelope.sender.clone().unwrap_or_default(),
            rcpts: envelope.recipients.len(),
            copy: (1, 1),
            size: s.size,
            out_size: s.out_size,
            started: now,
            clean_us: 0,
        }
    }
}

/// What became of a mail too large to hold, streamed through its wrapper.
pub(crate) struct Streamed<'a> {
    /// The wrapper's report.
    pub report: Report,
    /// The start of the mail (its header facts are recorded).
    pub head: &'a [u8],
    /// Its bytes as they came.
    pub size: u64,
    /// Its bytes as they went (0: not sent).
    pub out_size: u64,
    /// The policy asked for a temporary failure instead.
    pub tempfail: bool,
}

/// The blocking part of [`Pipeline::clean`]: everything it needs, owned.
struct CleanJob<B> {
    raw: Arc<B>,
    envelope: Envelope,
    group: Vec<usize>,
    policy: Policy,
    rules: Arc<Rules>,
    auth: Option<(Arc<Authenticator>, Arc<Verdict>)>,
    /// `Some(debug)`: build the record for the store.
    record: Option<bool>,
}

impl<B: AsRef<[u8]>> CleanJob<B> {
    /// The core, then the seal, then the record; `None` when any of it panicked.
    fn run(self) -> Option<(Cleaned, Duration, Option<MailRecord>)> {
        catch_unwind(AssertUnwindSafe(|| {
            let raw = self.raw.as_ref().as_ref();
            let started = Instant::now();
            let mut cleaned =
                clean_for(raw, &self.envelope, &self.group, &self.policy, &self.rules);
            let elapsed = started.elapsed();
            if let Some((auth, verdict)) = &self.auth {
                let (bytes, note) = auth.finish(raw, verdict, &cleaned.bytes);
                if let Some(note) = note {
                    warn!("authentication: {}", printable(&note));
                }
                // Our Authentication-Results (and seal) are a change the MTA must apply.
                cleaned.report.changed |= bytes != cleaned.bytes;
                cleaned.bytes = bytes;
            }
            let record = self.record.map(|debug| {
                MailRecord::from_report(
                    &cleaned.report,
                    &self.envelope,
                    raw,
                    crate::store::now(),
                    elapsed.as_millis() as i64,
                    debug,
                )
            });
            (cleaned, elapsed, record)
        }))
        .ok()
    }
}

/// A panic past the core's own guard: there is no wrapper to deliver (making it is
/// what failed), and the raw mail must not go on uncleaned. A temporary failure keeps
/// it with the sender, who retries.
fn fail_closed() -> (Cleaned, Duration, Option<MailRecord>) {
    warn!("cleaning failed (internal error): temporary failure");
    let report = Report {
        version: mailveil_core::VERSION,
        error: Some("internal".into()),
        ..Report::default()
    };
    let cleaned = Cleaned {
        bytes: Vec::new(),
        report,
        tempfail: true,
    };
    (cleaned, Duration::ZERO, None)
}

/// MPP: fetches what the mail will show now, before it is delivered, within the
/// prefetch deadline. What is not in the cache by then (failed, late, past the cap) is
/// fetched by the proxy on open, as under `proxy`: its findings say `proxy`, and the
/// header is written again, so that `prefetched=` counts what was fetched. Whether any
/// finding changed so.
async fn prefetch(p: &Prefetch, cleaned: &mut Cleaned, queue_id: &str) -> bool {
    let report = &mut cleaned.report;
    if !report.findings.iter().any(|f| f.action == Action::Prefetch) {
        return false;
    }
    let s = p.proxy.prefetch(report, p.deadline, queue_id).await;
    if s.urls + s.skipped > 0 {
        info!(
            queue_id = %printable(queue_id),
            urls = s.urls,
            fetched = s.fetched,
            cached = s.cached,
            failed = s.failed,
            late = s.late,
            skipped = s.skipped,
            ms = s.elapsed.as_millis() as u64,
            "prefetch"
        );
    }
    if downgrade_unfetched(report, &s.ready) == 0 {
        return false;
    }
    if !cleaned.bytes.is_empty() {
        cleaned.bytes = mailveil_core::restate_header(&cleaned.bytes, report);
    }
    true
}

/// Marks `proxy` every `prefetch` finding whose URL is not in `ready`; how many.
fn downgrade_unfetched(report: &mut Report, ready: &[String]) -> usize {
    let mut n = 0;
    for f in &mut report.findings {
        let fetched = f
            .url
            .as_ref()
            .is_some_and(|u| ready.binary_search(u).is_ok());
        if f.action == Action::Prefetch && !fetched {
            f.action = Action::Proxy;
            n += 1;
        }
    }
    n
}

impl Processed {
    /// The bytes that went out, when they were streamed rather than held.
    pub(crate) fn sent(&mut self, out_size: u64) {
        self.out_size = out_size;
    }

    /// Drops the bytes once delivered (a frontend that holds several copies keeps only
    /// what [`Processed::finish`] needs).
    pub(crate) fn delivered(&mut self) {
        self.cleaned.bytes = Vec::new();
    }

    /// After delivery: counts the downstream's replies, records the report (in a task
    /// of its own: [`Pipeline::drain`] waits for it), and writes the one log line of
    /// this copy, the same fields from every frontend.
    pub(crate) fn finish(self, outcome: Outcome) {
        if let Some(replies) = &outcome.downstream {
            if replies.is_empty() {
                metrics::downstream_reply(0);
            }
            for &code in replies {
                metrics::downstream_reply(code);
            }
        }
        let report = &self.cleaned.report;
        let [queue_id, from, result] =
            crate::printable::all([&self.meta.queue_id, &self.sender, &outcome.result]);
        let findings = report.header_value();
        let error = report.error.as_deref().unwrap_or("-");
        info!(
            queue_id = %queue_id,
            frontend = %self.meta.frontend,
            from = %from,
            rcpts = self.rcpts,
            copy = %format!("{}/{}", self.copy.0, self.copy.1),
            size = self.size,
            out_size = self.out_size,
            findings = %findings,
            error = %printable(error),
            ms = self.started.elapsed().as_millis() as u64,
            clean_us = self.clean_us,
            result = %result,
            peer = %printable(&self.meta.peer),
            "mail"
        );
        if let Some(mut record) = self.record {
            record.downstream = outcome.code.map(i64::from);
            self.reports.spawn(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(policy: Policy) -> Pipeline {
        Pipeline::new(Arc::new(LiveRules::load(&[], false).unwrap()), policy)
    }

    const TRACKED: &[u8] = b"From: news@sender.example\r\nTo: alice@example.test\r\nContent-Type: text/html\r\n\r\n<p>Hi</p><img src=\"https://t.example/o.gif?e=alice@example.test\" width=1 height=1>\r\n";

    #[tokio::test]
    async fn the_core_runs_and_the_copy_is_counted_and_finished() {
        let p = pipeline(Policy::default());
        let envelope = Envelope::to(Some("alice@example.test".to_string()));
        let done = p
            .process(Arc::new(TRACKED.to_vec()), envelope, MailMeta::default())
            .await;
        assert!(done.cleaned.report.changed);
        assert!(!String::from_utf8_lossy(&done.cleaned.bytes).contains("t.example"));
        assert_eq!(done.size, TRACKED.len() as u64);
        done.finish(Outcome::said("written"));
        p.drain(Duration::from_secs(1)).await;
    }

    /// A mail that notes every thread that reads it.
    struct Watched(Vec<u8>, std::sync::Mutex<Vec<std::thread::ThreadId>>);

    impl AsRef<[u8]> for Watched {
        fn as_ref(&self) -> &[u8] {
            self.1.lock().unwrap().push(std::thread::current().id());
            &self.0
        }
    }

    #[tokio::test]
    async fn small_mails_are_cleaned_where_they_are_held_large_ones_move() {
        let p = pipeline(Policy::default());
        let here = std::thread::current().id();
        // a paragraph of `x` that makes the mail `size` bytes long (or adds none)
        let padding = |n: usize| format!("<p>{}</p>\r\n", "x".repeat(n.saturating_sub(9)));
        for (size, moves) in [(0, false), (INLINE_MAX, false), (INLINE_MAX + 1, true)] {
            let mut raw = TRACKED.to_vec();
            raw.extend_from_slice(padding(size.saturating_sub(raw.len())).as_bytes());
            assert!(size == 0 || raw.len() == size, "{size}: {}", raw.len());
            let mail = Arc::new(Watched(raw, Default::default()));
            let envelope = Envelope::to(Some("alice@example.test".to_string()));
            let done = p
                .process(Arc::clone(&mail), envelope, MailMeta::default())
                .await;
            assert!(!String::from_utf8_lossy(&done.cleaned.bytes).contains("t.example"));
            let threads = mail.1.lock().unwrap().clone();
            assert_eq!(
                threads.iter().any(|&t| t != here),
                moves,
                "{size}: {threads:?}"
            );
            done.finish(Outcome::said("written"));
        }
        p.drain(Duration::from_secs(1)).await;
    }

    #[test]
    fn a_panic_past_the_core_is_a_temporary_failure_never_the_raw_mail() {
        let job = CleanJob {
            raw: Arc::new(TRACKED.to_vec()),
            envelope: Envelope::default(),
            group: vec![],
            policy: Policy::default(),
            rules: Arc::new(Rules::default()),
            auth: None,
            record: None,
        };
        assert!(job.run().is_some());
        // A raw type whose bytes cannot be read: the job panics after the core's guard.
        struct Broken;
        impl AsRef<[u8]> for Broken {
            fn as_ref(&self) -> &[u8] {
                panic!("broken input")
            }
        }
        let job = CleanJob {
            raw: Arc::new(Broken),
            envelope: Envelope::default(),
            group: vec![],
            policy: Policy::default(),
            rules: Arc::new(Rules::default()),
            auth: None,
            record: None,
        };
        assert!(job.run().is_none());
        let (cleaned, _, record) = fail_closed();
        assert!(cleaned.tempfail && cleaned.bytes.is_empty() && record.is_none());
        assert_eq!(cleaned.report.error.as_deref(), Some("internal"));
    }
}
