//! Cheap reads about the store's own state, for `switchyard doctor`, `/readyz` and `/metrics`:
//! whether its schema is current, and how the outbox is doing.

use sqlx::Row;

use crate::{Store, StoreError, query_err};

/// A migration the store's code has and the database has not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Its number (the file's prefix).
    pub version: i64,
    /// Its name (the rest of the file name).
    pub description: String,
}

/// The outbox at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxHealth {
    /// Calls waiting to be sent (including those in flight).
    pub pending: i64,
    /// When the oldest of them was queued (ms since the epoch), if any is pending.
    pub oldest_pending_at_ms: Option<i64>,
    /// Calls given up on (permanent errors).
    pub failed: i64,
}

impl Store {
    /// The migrations not yet applied (none after [`Store::connect`], which applies them; a
    /// store opened with [`Store::open`] may lag behind the code).
    pub async fn pending_migrations(&self) -> Result<Vec<Migration>, StoreError> {
        // No table yet means nothing applied: a database this code never connected to.
        let applied: Vec<i64> =
            match sqlx::query("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_all(&self.read_pool)
                .await
            {
                Ok(rows) => rows
                    .iter()
                    .map(|r| r.try_get::<i64, _>("version"))
                    .collect::<Result<_, _>>()
                    .map_err(query_err("applied migrations"))?,
                Err(sqlx::Error::Database(_)) => Vec::new(),
                Err(e) => return Err(query_err("applied migrations")(e)),
            };
        Ok(self
            .migrator()
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .map(|m| Migration {
                version: m.version,
                description: m.description.to_string(),
            })
            .collect())
    }

    /// How many outbox calls are pending: one index range count, cheap enough to read every
    /// few seconds.
    pub async fn outbox_pending_count(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending'")
            .fetch_one(&self.read_pool)
            .await
            .map_err(query_err("outbox pending count"))?;
        row.try_get::<i64, _>("n")
            .map_err(query_err("outbox pending count"))
    }

    /// Pending and failed counts and the oldest pending call's age, for a one-off check.
    pub async fn outbox_health(&self) -> Result<OutboxHealth, StoreError> {
        let op = "outbox health";
        let pending = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE state = 'pending'",
        )
        .fetch_one(&self.read_pool)
        .await
        .map_err(query_err(op))?;
        let failed = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE state = 'failed'")
            .fetch_one(&self.read_pool)
            .await
            .map_err(query_err(op))?;
        Ok(OutboxHealth {
            pending: pending.try_get("n").map_err(query_err(op))?,
            oldest_pending_at_ms: pending.try_get("oldest").map_err(query_err(op))?,
            failed: failed.try_get("n").map_err(query_err(op))?,
        })
    }
}
