//! The replies of apps' sync routes kept by `Idempotency-Key`: the first reply is stored in
//! the transaction of the change it answers, so a repeat of the request is answered from here
//! and changes nothing again. Keys and fingerprints are opaque text to the store.

use sqlx::Row;

use crate::{Store, StoreError, Tx, query_err};

/// A stored reply, and what the request it answered looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReply {
    /// Identifies the request (method, path, body): a repeat with another one is not a repeat.
    pub fingerprint: String,
    /// The HTTP status that was sent.
    pub status: u16,
    /// The body that was sent (JSON text).
    pub body: String,
}

impl Store {
    /// The reply stored under `key`, if any (committed replies only).
    pub async fn sync_reply(&self, key: &str) -> Result<Option<SyncReply>, StoreError> {
        const OP: &str = "sync reply";
        let row = sqlx::query("SELECT fingerprint, status, body FROM sync_replies WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.read_pool)
            .await
            .map_err(query_err(OP))?;
        row.map(|row| {
            Ok(SyncReply {
                fingerprint: row.try_get("fingerprint")?,
                status: u16::try_from(row.try_get::<i64, _>("status")?).unwrap_or(500),
                body: row.try_get("body")?,
            })
        })
        .transpose()
        .map_err(query_err(OP))
    }

    /// Forgets the replies stored before `before_ms`; how many.
    pub async fn sync_replies_prune(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut conn = self.write_conn("sync replies prune").await?;
        let done = sqlx::query("DELETE FROM sync_replies WHERE created_at < $1")
            .bind(before_ms)
            .execute(&mut *conn)
            .await
            .map_err(query_err("sync replies prune"))?;
        Ok(done.rows_affected())
    }
}

impl Tx<'_> {
    /// Stores `reply` under `key` with the change it answers. `false` when a reply is stored
    /// under `key` already (a concurrent request with the same key committed first; on
    /// PostgreSQL this waits for it): the caller rolls back and answers with that one.
    pub async fn sync_reply_put(
        &mut self,
        key: &str,
        reply: &SyncReply,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO sync_replies (key, fingerprint, status, body, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(&reply.fingerprint)
        .bind(i64::from(reply.status))
        .bind(&reply.body)
        .bind(at_ms)
        .execute(self.conn())
        .await
        .map_err(query_err("sync reply put"))?;
        Ok(done.rows_affected() == 1)
    }
}
