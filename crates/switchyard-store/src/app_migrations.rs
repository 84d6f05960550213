//! Apps' own tables: each app declares its schema changes per dialect; the engine applies them
//! here at start. The store records which `(app, version)` ran, and nothing else about apps.

use sqlx::{Executor, Row};

use crate::{Backend, Store, StoreError, query_err};

/// One schema change of an app's, in both dialects. Versions increase; each runs once, in its
/// own transaction with the record that it ran.
#[derive(Debug, Clone, Copy)]
pub struct AppMigration {
    /// Increasing per app; recorded once applied.
    pub version: i64,
    /// The change on SQLite (one or more statements).
    pub sqlite: &'static str,
    /// The change on PostgreSQL (one or more statements).
    pub postgres: &'static str,
}

impl Store {
    /// Applies `app`'s migrations that have not run yet, in version order. Returns how many ran.
    pub async fn apply_app_migrations(
        &self,
        app: &str,
        migrations: &[AppMigration],
    ) -> Result<usize, StoreError> {
        let op = "app migration";
        let mut sorted = migrations.to_vec();
        sorted.sort_by_key(|m| m.version);
        let mut ran = 0;
        for migration in sorted {
            let mut tx = self.begin().await?;
            let done = sqlx::query(
                "SELECT COUNT(*) AS n FROM app_migrations WHERE app = $1 AND version = $2",
            )
            .bind(app)
            .bind(migration.version)
            .fetch_one(tx.conn())
            .await
            .map_err(query_err(op))?;
            let n: i64 = done.try_get("n").map_err(query_err(op))?;
            if n > 0 {
                continue;
            }
            let sql = match self.backend() {
                Backend::Sqlite => migration.sqlite,
                Backend::Postgres => migration.postgres,
            };
            tx.conn().execute(sql).await.map_err(query_err(op))?;
            sqlx::query(
                "INSERT INTO app_migrations (app, version, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(app)
            .bind(migration.version)
            .bind(now_ms())
            .execute(tx.conn())
            .await
            .map_err(query_err(op))?;
            tx.commit().await?;
            ran += 1;
        }
        Ok(ran)
    }

    /// The store's reading pool, for apps' reads of their own tables outside a transaction
    /// (they see what is committed; on SQLite they never wait for the writer).
    pub fn reader(&self) -> &sqlx::AnyPool {
        &self.read_pool
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
