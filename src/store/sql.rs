//! [`ReportStore`] on SQLite or PostgreSQL through sqlx's `Any` driver: one set of
//! queries for both (`$N` placeholders, which SQLite accepts too; integer times; sums
//! cast to BIGINT so Postgres does not answer NUMERIC). Only the table definitions
//! differ, and they are embedded here and applied at open.

use super::{
    DayCount, MailRecord, Ranked, ReportStore, StoreError, StoreFuture, StoredFinding, Summary,
    Totals, day,
};
use mailveil_core::Action;
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::{AnyPoolOptions, AnyRow};
use std::collections::BTreeMap;

/// Which database is behind the pool: only the DDL differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (or `sqlite::memory:` on one connection).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Schema versions, each a list of statements per backend. Applied in order, once.
const MIGRATIONS: &[(i64, &[&str], &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE mails (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts BIGINT NOT NULL,
            message_id TEXT,
            sender TEXT NOT NULL,
            sender_domain TEXT NOT NULL,
            recipient TEXT NOT NULL,
            subject_hash TEXT,
            size BIGINT NOT NULL,
            trackers TEXT NOT NULL,
            findings BIGINT NOT NULL,
            blocked BIGINT NOT NULL,
            error TEXT,
            skipped TEXT,
            changed BIGINT NOT NULL,
            downstream BIGINT,
            elapsed_ms BIGINT NOT NULL)",
            "CREATE TABLE findings (
            mail_id BIGINT NOT NULL,
            seq BIGINT NOT NULL,
            kind TEXT NOT NULL,
            part TEXT NOT NULL,
            location TEXT NOT NULL,
            url TEXT,
            rule TEXT NOT NULL,
            tracker TEXT,
            action TEXT NOT NULL)",
            "CREATE INDEX mails_ts ON mails (ts)",
            "CREATE INDEX mails_message_id ON mails (message_id)",
            "CREATE INDEX findings_mail ON findings (mail_id)",
        ],
        &[
            "CREATE TABLE mails (
            id BIGSERIAL PRIMARY KEY,
            ts BIGINT NOT NULL,
            message_id TEXT,
            sender TEXT NOT NULL,
            sender_domain TEXT NOT NULL,
            recipient TEXT NOT NULL,
            subject_hash TEXT,
            size BIGINT NOT NULL,
            trackers TEXT NOT NULL,
            findings BIGINT NOT NULL,
            blocked BIGINT NOT NULL,
            error TEXT,
            skipped TEXT,
            changed BIGINT NOT NULL,
            downstream BIGINT,
            elapsed_ms BIGINT NOT NULL)",
            "CREATE TABLE findings (
            mail_id BIGINT NOT NULL REFERENCES mails (id) ON DELETE CASCADE,
            seq BIGINT NOT NULL,
            kind TEXT NOT NULL,
            part TEXT NOT NULL,
            location TEXT NOT NULL,
            url TEXT,
            rule TEXT NOT NULL,
            tracker TEXT,
            action TEXT NOT NULL)",
            "CREATE INDEX mails_ts ON mails (ts)",
            "CREATE INDEX mails_message_id ON mails (message_id)",
            "CREATE INDEX findings_mail ON findings (mail_id)",
        ],
    ),
    // Issue 15: the registrable domain of From:, what "Senders that track" groups by. NULL
    // in the rows of version 1, which are grouped by their envelope sender's domain.
    (
        2,
        &["ALTER TABLE mails ADD COLUMN from_domain TEXT"],
        &["ALTER TABLE mails ADD COLUMN from_domain TEXT"],
    ),
];

/// What "Senders that track" groups by: the From: domain, or the envelope sender's
/// domain in rows written before it was kept.
const SENDER_GROUP: &str = "COALESCE(from_domain, sender_domain)";

const MAIL_COLUMNS: &str = "id, ts, message_id, sender, sender_domain, recipient, subject_hash, \
     size, trackers, findings, blocked, error, skipped, changed, downstream, elapsed_ms, \
     from_domain";

/// The SQL report store.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    debug: bool,
}

impl SqlStore {
    /// Opens (and creates, and migrates) the store at `location`: `postgres://...`,
    /// `postgresql://...`, `sqlite:...` or a file path. `debug` keeps full URLs.
    pub async fn open(location: &str, debug: bool) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let (url, backend, max) =
            if location.starts_with("postgres://") || location.starts_with("postgresql://") {
                (location.to_string(), Backend::Postgres, 5)
            } else if let Some(rest) = location.strip_prefix("sqlite:") {
                // An in-memory database exists once per connection: keep exactly one.
                let max = if rest.contains(":memory:") || rest.contains("mode=memory") {
                    1
                } else {
                    4
                };
                (location.to_string(), Backend::Sqlite, max)
            } else if location.contains("://") {
                return Err(StoreError::Config(format!(
                    "unsupported report database URL scheme in {:?} (postgres:// or a file path)",
                    location.split("://").next().unwrap_or("")
                )));
            } else {
                if location.is_empty() {
                    return Err(StoreError::Config("empty report database path".into()));
                }
                (format!("sqlite://{location}?mode=rwc"), Backend::Sqlite, 4)
            };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(if max == 1 { 1 } else { 0 })
            .idle_timeout(None)
            .max_lifetime(None)
            .connect(&url)
            .await?;
        let store = SqlStore {
            pool,
            backend,
            debug,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether full URLs are kept.
    pub fn debug(&self) -> bool {
        self.debug
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            // WAL lets the dashboard read while serve writes; it is a property of the file.
            let _ = sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&self.pool)
                .await;
        }
        sqlx::query("CREATE TABLE IF NOT EXISTS mailveil_schema (version BIGINT NOT NULL)")
            .execute(&self.pool)
            .await?;
        let mut tx = self.pool.begin().await?;
        let current: i64 =
            sqlx::query("SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM mailveil_schema")
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        for (version, sqlite, postgres) in MIGRATIONS {
            if *version <= current {
                continue;
            }
            let statements = match self.backend {
                Backend::Sqlite => sqlite,
                Backend::Postgres => postgres,
            };
            for s in *statements {
                sqlx::query(*s).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO mailveil_schema (version) VALUES ($1)")
                .bind(*version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_impl(&self, m: &MailRecord) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO mails (ts, message_id, sender, sender_domain, recipient, subject_hash, \
             size, trackers, findings, blocked, error, skipped, changed, downstream, elapsed_ms, \
             from_domain) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             RETURNING id",
        )
        .bind(m.time)
        .bind(m.message_id.clone())
        .bind(m.sender.clone())
        .bind(m.sender_domain.clone())
        .bind(m.recipient.clone())
        .bind(m.subject_hash.clone())
        .bind(m.size)
        .bind(m.trackers.join(","))
        .bind(m.findings_total)
        .bind(m.blocked)
        .bind(m.error.clone())
        .bind(m.skipped.clone())
        .bind(i64::from(m.changed))
        .bind(m.downstream)
        .bind(m.elapsed_ms)
        .bind(m.from_domain.clone())
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        for (seq, f) in m.findings.iter().enumerate() {
            let url = f.url.as_deref().map(|u| super::stored_url(u, self.debug));
            sqlx::query(
                "INSERT INTO findings (mail_id, seq, kind, part, location, url, rule, tracker, action) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(id)
            .bind(seq as i64)
            .bind(f.kind.clone())
            .bind(f.part.clone())
            .bind(f.location.clone())
            .bind(url)
            .bind(f.rule.clone())
            .bind(f.tracker.clone())
            .bind(f.action.clone())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    async fn purge_impl(&self, before: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM findings WHERE mail_id IN (SELECT id FROM mails WHERE ts < $1)")
            .bind(before)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM mails WHERE ts < $1")
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone)
    }

    async fn summary_impl(
        &self,
        since: i64,
        until: i64,
        top: usize,
    ) -> Result<Summary, StoreError> {
        let top = top as i64;
        let row = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN blocked > 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN trackers <> '' THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(findings), 0) AS BIGINT), \
             CAST(COALESCE(SUM(blocked), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN error IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM mails WHERE ts >= $1 AND ts < $2",
        )
        .bind(since)
        .bind(until)
        .fetch_one(&self.pool)
        .await?;
        let mut totals = Totals {
            mails: row.try_get(0)?,
            mails_cleaned: row.try_get(1)?,
            mails_with_trackers: row.try_get(2)?,
            findings: row.try_get(3)?,
            blocked: row.try_get(4)?,
            errors: row.try_get(5)?,
            ..Totals::default()
        };
        let rows = sqlx::query(
            "SELECT f.kind, f.action, CAST(COUNT(*) AS BIGINT) FROM findings f \
             JOIN mails m ON m.id = f.mail_id WHERE m.ts >= $1 AND m.ts < $2 \
             GROUP BY f.kind, f.action",
        )
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            let kind: String = r.try_get(0)?;
            let action: String = r.try_get(1)?;
            let n: i64 = r.try_get(2)?;
            if action.parse::<Action>().is_ok_and(Action::counted) {
                *totals.by_kind.entry(kind).or_insert(0) += n;
            }
            *totals.by_action.entry(action).or_insert(0) += n;
        }
        let ranked = |rows: Vec<AnyRow>| -> Result<Vec<Ranked>, StoreError> {
            rows.iter()
                .map(|r| {
                    Ok(Ranked {
                        name: r.try_get(0)?,
                        mails: r.try_get(1)?,
                        blocked: r.try_get(2)?,
                    })
                })
                .collect()
        };
        let top_senders = ranked(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SENDER_GROUP} AS s, CAST(COUNT(*) AS BIGINT), \
                 CAST(COALESCE(SUM(blocked), 0) AS BIGINT) AS b FROM mails \
                 WHERE ts >= $1 AND ts < $2 AND blocked > 0 \
                 GROUP BY s ORDER BY b DESC, s LIMIT $3"
            )))
            .bind(since)
            .bind(until)
            .bind(top)
            .fetch_all(&self.pool)
            .await?,
        )?;
        let uncounted = uncounted_actions();
        let top_trackers = ranked(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT f.tracker, CAST(COUNT(DISTINCT f.mail_id) AS BIGINT), \
                 CAST(COUNT(*) AS BIGINT) AS n FROM findings f JOIN mails m ON m.id = f.mail_id \
                 WHERE m.ts >= $1 AND m.ts < $2 AND f.tracker IS NOT NULL \
                 AND f.action NOT IN {uncounted} \
                 GROUP BY f.tracker ORDER BY n DESC, f.tracker LIMIT $3"
            )))
            .bind(since)
            .bind(until)
            .bind(top)
            .fetch_all(&self.pool)
            .await?,
        )?;
        let mut days: BTreeMap<i64, DayCount> = BTreeMap::new();
        for r in sqlx::query(
            "SELECT CAST(ts / 86400 AS BIGINT), CAST(COUNT(*) AS BIGINT), \
             CAST(COALESCE(SUM(blocked), 0) AS BIGINT) FROM mails \
             WHERE ts >= $1 AND ts < $2 GROUP BY 1 ORDER BY 1",
        )
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?
        {
            let d: i64 = r.try_get(0)?;
            days.insert(
                d,
                DayCount {
                    date: day::date_of(d * 86_400),
                    mails: r.try_get(1)?,
                    blocked: r.try_get(2)?,
                    trackers: 0,
                },
            );
        }
        for r in sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(m.ts / 86400 AS BIGINT), CAST(COUNT(*) AS BIGINT) FROM findings f \
             JOIN mails m ON m.id = f.mail_id WHERE m.ts >= $1 AND m.ts < $2 \
             AND f.tracker IS NOT NULL AND f.action NOT IN {uncounted} GROUP BY 1"
        )))
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?
        {
            let d: i64 = r.try_get(0)?;
            if let Some(day) = days.get_mut(&d) {
                day.trackers = r.try_get(1)?;
            }
        }
        Ok(Summary {
            since,
            until,
            totals,
            top_senders,
            top_trackers,
            per_day: days.into_values().collect(),
        })
    }

    async fn mails_with_findings(&self, rows: Vec<AnyRow>) -> Result<Vec<MailRecord>, StoreError> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut m = mail_from_row(&r)?;
            let frows = sqlx::query(
                "SELECT kind, part, location, url, rule, tracker, action FROM findings \
                 WHERE mail_id = $1 ORDER BY seq",
            )
            .bind(m.id)
            .fetch_all(&self.pool)
            .await?;
            for f in frows {
                let finding = StoredFinding {
                    kind: f.try_get(0)?,
                    part: f.try_get(1)?,
                    location: f.try_get(2)?,
                    url: f.try_get(3)?,
                    rule: f.try_get(4)?,
                    tracker: f.try_get(5)?,
                    action: f.try_get(6)?,
                };
                if finding.counted() {
                    *m.counts.entry(finding.kind.clone()).or_insert(0) += 1;
                }
                *m.actions.entry(finding.action.clone()).or_insert(0) += 1;
                m.findings.push(finding);
            }
            out.push(m);
        }
        Ok(out)
    }

    async fn recent_impl(&self, query: &str, limit: usize) -> Result<Vec<MailRecord>, StoreError> {
        let pattern = format!("%{}%", like_escape(&query.trim().to_lowercase()));
        let sql = format!(
            "SELECT {MAIL_COLUMNS} FROM mails WHERE lower(sender) LIKE $1 ESCAPE '\\' \
             OR lower({SENDER_GROUP}) LIKE $1 ESCAPE '\\' OR lower(recipient) LIKE $1 ESCAPE '\\' OR lower(COALESCE(message_id, '')) LIKE $1 ESCAPE '\\' \
             OR lower(trackers) LIKE $1 ESCAPE '\\' ORDER BY ts DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(pattern)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        self.mails_with_findings(rows).await
    }

    async fn by_message_id_impl(&self, message_id: &str) -> Result<Vec<MailRecord>, StoreError> {
        let id = message_id.trim().trim_matches(['<', '>']).to_string();
        let sql = format!("SELECT {MAIL_COLUMNS} FROM mails WHERE message_id = $1 ORDER BY ts, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        self.mails_with_findings(rows).await
    }
}

/// `('keep', 'proxy', 'prefetch')`: the actions that do not count as blocked
/// ([`Action::counted`]), as an SQL list. Our own names from one table, never text that
/// came with a mail, so they are written into the statement.
fn uncounted_actions() -> String {
    let names: Vec<String> = Action::ALL
        .iter()
        .filter(|a| !a.counted())
        .map(|a| format!("'{a}'"))
        .collect();
    format!("({})", names.join(", "))
}

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn mail_from_row(r: &AnyRow) -> Result<MailRecord, StoreError> {
    let trackers: String = r.try_get(8)?;
    let changed: i64 = r.try_get(13)?;
    Ok(MailRecord {
        id: r.try_get(0)?,
        time: r.try_get(1)?,
        message_id: r.try_get(2)?,
        sender: r.try_get(3)?,
        sender_domain: r.try_get(4)?,
        recipient: r.try_get(5)?,
        subject_hash: r.try_get(6)?,
        size: r.try_get(7)?,
        trackers: trackers
            .split(',')
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        findings_total: r.try_get(9)?,
        blocked: r.try_get(10)?,
        error: r.try_get(11)?,
        skipped: r.try_get(12)?,
        changed: changed != 0,
        downstream: r.try_get(14)?,
        elapsed_ms: r.try_get(15)?,
        from_domain: r.try_get(16)?,
        ..MailRecord::default()
    })
}

impl ReportStore for SqlStore {
    fn record<'a>(&'a self, mail: &'a MailRecord) -> StoreFuture<'a, i64> {
        Box::pin(self.record_impl(mail))
    }
    fn purge(&self, before: i64) -> StoreFuture<'_, u64> {
        Box::pin(self.purge_impl(before))
    }
    fn summary(&self, since: i64, until: i64, top: usize) -> StoreFuture<'_, Summary> {
        Box::pin(self.summary_impl(since, until, top))
    }
    fn recent<'a>(&'a self, query: &'a str, limit: usize) -> StoreFuture<'a, Vec<MailRecord>> {
        Box::pin(self.recent_impl(query, limit))
    }
    fn by_message_id<'a>(&'a self, message_id: &'a str) -> StoreFuture<'a, Vec<MailRecord>> {
        Box::pin(self.by_message_id_impl(message_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailveil_core::{Envelope, Finding, FindingKind, Location, LocationKind, Report};

    fn finding(kind: FindingKind, action: Action, tracker: Option<&str>) -> Finding {
        Finding {
            kind,
            part: "1".into(),
            location: Location::attribute(LocationKind::Source, "img", "src"),
            url: Some("https://cdn.example/a.png".into()),
            rule: "r".into(),
            tracker: tracker.map(String::from),
            action,
            params: Vec::new(),
        }
    }

    /// What is read back is what was written: proxied and prefetched content is not
    /// blocked (the header says `proxied=`/`prefetched=`, and so did the record's
    /// `blocked`), but reading a mail back and the summary counted it as blocked.
    #[tokio::test]
    async fn proxied_and_prefetched_findings_are_not_counted_as_blocked_when_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::open(&dir.path().join("r.sqlite").display().to_string(), false)
            .await
            .unwrap();
        let report = Report {
            findings: vec![
                finding(FindingKind::Pixel, Action::Strip, Some("Pixel Co")),
                finding(FindingKind::RemoteContent, Action::Prefetch, None),
                finding(FindingKind::RemoteContent, Action::Proxy, None),
                finding(FindingKind::ClickRedirect, Action::Proxy, Some("Shield Co")),
                finding(FindingKind::ClickRedirect, Action::Keep, Some("Opaque Co")),
            ],
            ..Report::default()
        };
        let raw = b"Message-ID: <counted@x.example>\r\n\r\nbody";
        let time = super::super::now();
        let record =
            MailRecord::from_report(&report, &Envelope::to(["r@x.example"]), raw, time, 1, false);
        assert_eq!(record.blocked, 1);
        store.record(&record).await.unwrap();

        let back = store.by_message_id("counted@x.example").await.unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].counts, record.counts);
        assert_eq!(back[0].actions, record.actions);
        assert_eq!(back[0].blocked, 1);

        let s = store.summary(time - 10, time + 10, 10).await.unwrap();
        assert_eq!(s.totals.by_kind, record.counts);
        assert_eq!(s.totals.blocked, 1);
        let trackers: Vec<&str> = s.top_trackers.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(trackers, ["Pixel Co"]);
        assert_eq!(s.per_day.iter().map(|d| d.trackers).sum::<i64>(), 1);
    }
}
