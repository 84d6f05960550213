//! Switchyard's durable store, on SQLite (default: one file, WAL) or PostgreSQL (for replicas).
//!
//! Three tables carry the pipeline:
//! - `inbox`: everything received from Slack, committed before it is acknowledged, unique by
//!   `dedupe_key` so Slack's retries are stored once.
//! - `outbox`: every call Switchyard makes to Slack, written in the same transaction as the
//!   change that causes it, and sent later by the sender.
//! - `message_refs`: where a posted message went (`channel`, `ts`), by a key the app chose, so a
//!   later update edits that message.
//!
//! Invariants:
//! - Work is *claimed* with a lease (`lease_owner`, `lease_until`): the claimer owns it until the
//!   lease runs out; after a crash another worker (or replica) claims it. Finishing an item
//!   checks the lease, so a worker that lost its lease cannot finish it twice. On PostgreSQL
//!   claims use `FOR UPDATE SKIP LOCKED`, so replicas never claim the same row.
//! - The outbox is ordered per `ordering_key` (usually the channel): only the oldest pending item
//!   of a key can be claimed, so a message that waits (429, 5xx) holds back the ones after it.
//!
//! One code path serves both databases through sqlx's `Any` driver; only the migrations and the
//! claim queries' locking clause differ. Times are Unix milliseconds; JSON is text.

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Executor, Row};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("cannot migrate the store {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("unsupported store URL {0}: use sqlite://… or postgres://…")]
    Scheme(String),
    #[error("store: {op}: {source}")]
    Query {
        op: &'static str,
        source: sqlx::Error,
    },
}

fn query_err(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

/// A URL with any password replaced, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInboxItem {
    pub dedupe_key: String,
    /// `event`, `command` or `interaction`.
    pub kind: String,
    /// JSON.
    pub payload: String,
    pub received_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxInsert {
    New(i64),
    Duplicate(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    pub id: i64,
    pub dedupe_key: String,
    pub kind: String,
    pub payload: String,
    pub received_at_ms: i64,
    /// `pending`, `done` or `failed`.
    pub state: String,
    pub attempts: i32,
    pub error: Option<String>,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxItem {
    /// Items with the same key are sent in order: usually the channel id.
    pub ordering_key: String,
    /// A Web API method, or `response_url`.
    pub method: String,
    /// JSON.
    pub payload: String,
    pub ref_key: Option<String>,
    pub not_before_ms: i64,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub ordering_key: String,
    pub method: String,
    pub payload: String,
    pub ref_key: Option<String>,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    pub attempts: i32,
    pub not_before_ms: i64,
    pub error: Option<String>,
    pub response: Option<String>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub channel: String,
    pub ts: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub pending: i64,
    pub done_or_sent: i64,
    pub failed: i64,
}

const INBOX_COLUMNS: &str =
    "id, dedupe_key, kind, payload, received_at, state, attempts, error, outcome";
const OUTBOX_COLUMNS: &str = "id, ordering_key, method, payload, ref_key, state, attempts, not_before, error, response, created_at";

fn inbox_item(row: &AnyRow) -> Result<InboxItem, sqlx::Error> {
    Ok(InboxItem {
        id: row.try_get("id")?,
        dedupe_key: row.try_get("dedupe_key")?,
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        received_at_ms: row.try_get("received_at")?,
        state: row.try_get("state")?,
        attempts: row.try_get::<i64, _>("attempts")? as i32,
        error: row.try_get("error")?,
        outcome: row.try_get("outcome")?,
    })
}

fn outbox_item(row: &AnyRow) -> Result<OutboxItem, sqlx::Error> {
    Ok(OutboxItem {
        id: row.try_get("id")?,
        ordering_key: row.try_get("ordering_key")?,
        method: row.try_get("method")?,
        payload: row.try_get("payload")?,
        ref_key: row.try_get("ref_key")?,
        state: row.try_get("state")?,
        attempts: row.try_get::<i64, _>("attempts")? as i32,
        not_before_ms: row.try_get("not_before")?,
        error: row.try_get("error")?,
        response: row.try_get("response")?,
        created_at_ms: row.try_get("created_at")?,
    })
}

/// The store: a connection pool and which database is behind it.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    /// Opens `sqlite://path` (created if missing), `sqlite::memory:`, or `postgres://…`, and
    /// brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let shown = redact(url);
        let (backend, url, memory) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let memory = rest == ":memory:" || rest.contains("mode=memory");
            let url = if memory || rest.contains('?') {
                url.to_string()
            } else {
                format!("{url}?mode=rwc")
            };
            (Backend::Sqlite, url, memory)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string(), false)
        } else {
            return Err(StoreError::Scheme(shown));
        };
        let options: AnyConnectOptions = url.parse().map_err(|source| StoreError::Connect {
            url: shown.clone(),
            source,
        })?;
        let pool_options = match backend {
            // One writer at a time is SQLite's way; a memory database lives in one connection.
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(if memory { 1 } else { 4 })
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                        Ok(())
                    })
                }),
            Backend::Postgres => AnyPoolOptions::new().max_connections(16),
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect {
                url: shown.clone(),
                source,
            })?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate { url: shown, source })?;
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(query_err("ping"))?;
        Ok(())
    }

    pub async fn begin(&self) -> Result<Tx<'static>, StoreError> {
        Ok(Tx {
            tx: self.pool.begin().await.map_err(query_err("begin"))?,
        })
    }

    /// `FOR UPDATE SKIP LOCKED` where the database has it (SQLite serializes writers anyway).
    fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    // ---- inbox ----

    /// Stores an item unless one with its `dedupe_key` is there already. With a lease, the item
    /// is stored already claimed by that owner until that time.
    pub async fn inbox_insert(
        &self,
        item: &NewInboxItem,
        lease: Option<(&str, i64)>,
    ) -> Result<InboxInsert, StoreError> {
        let mut results = self
            .inbox_insert_many(std::slice::from_ref(item), lease)
            .await?;
        Ok(results.remove(0))
    }

    /// Stores several items in one transaction (group commit: one disk sync for many
    /// deliveries); otherwise as [`Store::inbox_insert`], item by item.
    pub async fn inbox_insert_many(
        &self,
        items: &[NewInboxItem],
        lease: Option<(&str, i64)>,
    ) -> Result<Vec<InboxInsert>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_err("inbox insert"))?;
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let inserted = sqlx::query(
                "INSERT INTO inbox (dedupe_key, kind, payload, received_at, lease_owner, lease_until) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
            )
            .bind(&item.dedupe_key)
            .bind(&item.kind)
            .bind(&item.payload)
            .bind(item.received_at_ms)
            .bind(lease.map(|(owner, _)| owner.to_string()))
            .bind(lease.map(|(_, until)| until))
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_err("inbox insert"))?;
            let result = match inserted {
                Some(row) => {
                    InboxInsert::New(row.try_get("id").map_err(query_err("inbox insert"))?)
                }
                None => {
                    let row = sqlx::query("SELECT id FROM inbox WHERE dedupe_key = $1")
                        .bind(&item.dedupe_key)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(query_err("inbox insert"))?;
                    InboxInsert::Duplicate(row.try_get("id").map_err(query_err("inbox insert"))?)
                }
            };
            results.push(result);
        }
        tx.commit().await.map_err(query_err("inbox insert"))?;
        Ok(results)
    }

    /// Claims pending items that nobody holds (no lease, or an expired one) and that are due.
    pub async fn inbox_claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let sql = format!(
            "UPDATE inbox SET lease_owner = $1, lease_until = $2 WHERE id IN (\
             SELECT id FROM inbox WHERE state = 'pending' AND not_before <= $3 \
             AND (lease_until IS NULL OR lease_until < $3) ORDER BY id LIMIT $4{}) \
             RETURNING {INBOX_COLUMNS}",
            self.skip_locked()
        );
        let mut items = self
            .claim(
                &sql,
                "inbox claim",
                owner,
                now_ms,
                lease_until_ms,
                limit,
                inbox_item,
            )
            .await?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    /// Gives an item back after a failed attempt; after `max_attempts` it is `failed`.
    pub async fn inbox_retry(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        not_before_ms: i64,
        max_attempts: u32,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE inbox SET attempts = attempts + 1, error = $1, not_before = $2, \
             lease_owner = NULL, lease_until = NULL, \
             state = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE 'pending' END \
             WHERE id = $4 AND lease_owner = $5",
        )
        .bind(error)
        .bind(not_before_ms)
        .bind(i64::from(max_attempts))
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(query_err("inbox retry"))?;
        Ok(())
    }

    pub async fn inbox_get(&self, id: i64) -> Result<Option<InboxItem>, StoreError> {
        let row = sqlx::query(&format!("SELECT {INBOX_COLUMNS} FROM inbox WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("inbox get"))?;
        row.as_ref()
            .map(inbox_item)
            .transpose()
            .map_err(query_err("inbox get"))
    }

    pub async fn inbox_counts(&self) -> Result<StateCounts, StoreError> {
        self.counts("inbox", "done").await
    }

    async fn counts(
        &self,
        table: &'static str,
        finished: &'static str,
    ) -> Result<StateCounts, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT state, COUNT(*) AS n FROM {table} GROUP BY state"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("counts"))?;
        let mut counts = StateCounts::default();
        for row in rows {
            let state: String = row.try_get("state").map_err(query_err("counts"))?;
            let n: i64 = row.try_get("n").map_err(query_err("counts"))?;
            match state.as_str() {
                "pending" => counts.pending = n,
                "failed" => counts.failed = n,
                s if s == finished => counts.done_or_sent = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    // ---- outbox ----

    /// Claims the oldest pending item of each ordering key, when it is due and nobody holds it.
    pub async fn outbox_claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "UPDATE outbox SET lease_owner = $1, lease_until = $2 WHERE id IN (\
             SELECT o.id FROM outbox o WHERE o.state = 'pending' AND o.not_before <= $3 \
             AND (o.lease_until IS NULL OR o.lease_until < $3) \
             AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.ordering_key = o.ordering_key \
                             AND p.state = 'pending' AND p.id < o.id) \
             ORDER BY o.id LIMIT $4{}) RETURNING {OUTBOX_COLUMNS}",
            self.skip_locked()
        );
        let mut items = self
            .claim(
                &sql,
                "outbox claim",
                owner,
                now_ms,
                lease_until_ms,
                limit,
                outbox_item,
            )
            .await?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    /// Runs a claim query (`$1` owner, `$2` lease end, `$3` now, `$4` limit) and reads its rows.
    #[allow(clippy::too_many_arguments)]
    async fn claim<T>(
        &self,
        sql: &str,
        op: &'static str,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
        read: fn(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, StoreError> {
        let rows = sqlx::query(sql)
            .bind(owner)
            .bind(lease_until_ms)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(query_err(op))?;
        rows.iter()
            .map(read)
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err(op))
    }

    /// Records a successful call. `false` when `owner` no longer holds the item.
    pub async fn outbox_sent(
        &self,
        id: i64,
        owner: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET state = 'sent', response = $1, sent_at = $2, \
             lease_owner = NULL, lease_until = NULL WHERE id = $3 AND lease_owner = $4 AND state = 'pending'",
        )
        .bind(response)
        .bind(now_ms)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(query_err("outbox sent"))?;
        Ok(done.rows_affected() == 1)
    }

    /// After a transient failure: tried again from `not_before_ms`, still first in its key's line.
    pub async fn outbox_retry(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        not_before_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, error = $1, not_before = $2, \
             lease_owner = NULL, lease_until = NULL WHERE id = $3 AND lease_owner = $4 AND state = 'pending'",
        )
        .bind(error)
        .bind(not_before_ms)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(query_err("outbox retry"))?;
        Ok(done.rows_affected() == 1)
    }

    /// A permanent failure: recorded, and the key's next item may go.
    pub async fn outbox_failed(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, error = $1, sent_at = $2, \
             lease_owner = NULL, lease_until = NULL WHERE id = $3 AND lease_owner = $4 AND state = 'pending'",
        )
        .bind(error)
        .bind(now_ms)
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(query_err("outbox failed"))?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn outbox_get(&self, id: i64) -> Result<Option<OutboxItem>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("outbox get"))?;
        row.as_ref()
            .map(outbox_item)
            .transpose()
            .map_err(query_err("outbox get"))
    }

    /// Items, oldest first, optionally only those in one state.
    pub async fn outbox_list(
        &self,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE ($1 = '' OR state = $1) ORDER BY id LIMIT $2"
        ))
        .bind(state.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("outbox list"))?;
        rows.iter()
            .map(outbox_item)
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err("outbox list"))
    }

    pub async fn outbox_counts(&self) -> Result<StateCounts, StoreError> {
        self.counts("outbox", "sent").await
    }

    /// When the next pending item becomes due (so the sender knows how long it may sleep).
    pub async fn outbox_next_due(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MIN(not_before) AS due FROM outbox WHERE state = 'pending'")
            .fetch_one(&self.pool)
            .await
            .map_err(query_err("outbox next due"))?;
        row.try_get::<Option<i64>, _>("due")
            .map_err(query_err("outbox next due"))
    }

    // ---- message refs ----

    pub async fn message_ref_set(
        &self,
        key: &str,
        channel: &str,
        ts: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO message_refs (ref_key, channel, ts) VALUES ($1, $2, $3) \
             ON CONFLICT (ref_key) DO UPDATE SET channel = excluded.channel, ts = excluded.ts",
        )
        .bind(key)
        .bind(channel)
        .bind(ts)
        .execute(&self.pool)
        .await
        .map_err(query_err("message ref set"))?;
        Ok(())
    }

    pub async fn message_ref(&self, key: &str) -> Result<Option<MessageRef>, StoreError> {
        let row = sqlx::query("SELECT channel, ts FROM message_refs WHERE ref_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("message ref"))?;
        row.map(|r| {
            Ok(MessageRef {
                channel: r.try_get("channel")?,
                ts: r.try_get("ts")?,
            })
        })
        .transpose()
        .map_err(query_err("message ref"))
    }
}

/// A transaction: an app's own changes, the outbox items they cause and the inbox item's
/// completion commit together. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx<'c> {
    tx: sqlx::Transaction<'c, Any>,
}

impl Tx<'_> {
    pub async fn enqueue(&mut self, item: &NewOutboxItem) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO outbox (ordering_key, method, payload, ref_key, not_before, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&item.ordering_key)
        .bind(&item.method)
        .bind(&item.payload)
        .bind(&item.ref_key)
        .bind(item.not_before_ms)
        .bind(item.created_at_ms)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(query_err("outbox enqueue"))?;
        row.try_get("id").map_err(query_err("outbox enqueue"))
    }

    /// Records a call that was made at once (a modal that could not wait), as sent.
    pub async fn record_sent(
        &mut self,
        item: &NewOutboxItem,
        response: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO outbox (ordering_key, method, payload, ref_key, not_before, created_at, \
             state, response, sent_at) VALUES ($1, $2, $3, $4, $5, $6, 'sent', $7, $8) RETURNING id",
        )
        .bind(&item.ordering_key)
        .bind(&item.method)
        .bind(&item.payload)
        .bind(&item.ref_key)
        .bind(item.not_before_ms)
        .bind(item.created_at_ms)
        .bind(response)
        .bind(now_ms)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(query_err("outbox record"))?;
        row.try_get("id").map_err(query_err("outbox record"))
    }

    /// Marks an inbox item handled, if `owner` still holds it.
    pub async fn inbox_done(
        &mut self,
        id: i64,
        owner: &str,
        outcome: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE inbox SET state = 'done', outcome = $1, handled_at = $2, \
             lease_owner = NULL, lease_until = NULL WHERE id = $3 AND lease_owner = $4 AND state = 'pending'",
        )
        .bind(outcome)
        .bind(now_ms)
        .bind(id)
        .bind(owner)
        .execute(&mut *self.tx)
        .await
        .map_err(query_err("inbox done"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The connection, for apps' own tables in the same transaction.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(query_err("commit"))
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
