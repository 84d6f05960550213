//! Each alert's state, in the app's own table (`alerts_alerts`), keyed by its dedup key: the
//! last payload, its status, who acknowledged or resolved it, and the channels its messages
//! are in (so every one of them is edited).

use switchyard_engine::sqlx::{self, AnyConnection, Row, any::AnyRow};
use switchyard_engine::{AppError, AppMigration, Backend, Placeholders, StoreError};

use super::intake::{Alert, Status};

pub const MIGRATIONS: [AppMigration; 1] = [AppMigration {
    version: 1,
    sqlite: "CREATE TABLE alerts_alerts (
        dedup_key   TEXT PRIMARY KEY,
        status      TEXT NOT NULL,
        alert       TEXT NOT NULL,
        channels    TEXT NOT NULL,
        occurrences INTEGER NOT NULL,
        first_ms    INTEGER NOT NULL,
        last_ms     INTEGER NOT NULL,
        acked_by    TEXT,
        resolved_by TEXT
    )",
    postgres: "CREATE TABLE alerts_alerts (
        dedup_key   TEXT PRIMARY KEY,
        status      TEXT NOT NULL,
        alert       TEXT NOT NULL,
        channels    TEXT NOT NULL,
        occurrences BIGINT NOT NULL,
        first_ms    BIGINT NOT NULL,
        last_ms     BIGINT NOT NULL,
        acked_by    TEXT,
        resolved_by TEXT
    )",
}];

#[derive(Debug, Clone)]
pub struct AlertRow {
    pub status: Status,
    pub alert: Alert,
    /// `(channel, mentions)` in Slack's syntax, as routed at the first firing.
    pub channels: Vec<(String, String)>,
    pub occurrences: i64,
    pub first_ms: i64,
    pub acked_by: Option<String>,
    pub resolved_by: Option<String>,
}

fn db_err(e: sqlx::Error) -> AppError {
    AppError::Store(StoreError::Query {
        op: "alerts state",
        source: e,
    })
}

fn bad_row(what: &str) -> AppError {
    AppError::Internal(format!("an unreadable alerts_alerts row: {what}"))
}

/// Rows per multi-row statement: within both databases' limits on bound values.
pub(super) const ROWS_PER_STATEMENT: usize = 500;

const COLUMNS: &str =
    "dedup_key, status, alert, channels, occurrences, first_ms, acked_by, resolved_by";

fn from_row(row: &AnyRow) -> Result<(String, AlertRow), AppError> {
    let key: String = row.try_get(0).map_err(db_err)?;
    let status: String = row.try_get(1).map_err(db_err)?;
    let alert: String = row.try_get(2).map_err(db_err)?;
    let channels: String = row.try_get(3).map_err(db_err)?;
    Ok((
        key,
        AlertRow {
            status: Status::parse(&status).ok_or_else(|| bad_row("status"))?,
            alert: serde_json::from_str(&alert).map_err(|_| bad_row("alert"))?,
            channels: serde_json::from_str(&channels).map_err(|_| bad_row("channels"))?,
            occurrences: row.try_get(4).map_err(db_err)?,
            first_ms: row.try_get(5).map_err(db_err)?,
            acked_by: row.try_get(6).map_err(db_err)?,
            resolved_by: row.try_get(7).map_err(db_err)?,
        },
    ))
}

/// With `lock` (PostgreSQL), the row stays locked until the transaction ends: two requests
/// about one alert take turns.
pub async fn load(
    conn: &mut AnyConnection,
    key: &str,
    lock: bool,
) -> Result<Option<AlertRow>, AppError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM alerts_alerts WHERE dedup_key = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = sqlx::query(&sql)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    row.as_ref()
        .map(from_row)
        .transpose()
        .map(|r| r.map(|(_, row)| row))
}

/// The rows of `keys` that exist, in a statement per [`ROWS_PER_STATEMENT`] keys. With `lock`
/// (PostgreSQL) they stay locked until the transaction ends, taken in key order so that two
/// requests about the same alerts cannot each wait for the other.
pub async fn load_many(
    conn: &mut AnyConnection,
    backend: Backend,
    keys: &[&str],
    lock: bool,
) -> Result<Vec<(String, AlertRow)>, AppError> {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut found = Vec::new();
    for chunk in sorted.chunks(ROWS_PER_STATEMENT) {
        let mut marks = Placeholders::new(backend);
        let sql = format!(
            "SELECT {COLUMNS} FROM alerts_alerts WHERE dedup_key IN ({}) ORDER BY dedup_key{}",
            marks.list(chunk.len()),
            if lock { " FOR UPDATE" } else { "" }
        );
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(*key);
        }
        for row in query.fetch_all(&mut *conn).await.map_err(db_err)? {
            found.push(from_row(&row)?);
        }
    }
    Ok(found)
}

/// Writes `rows` (new or changed), a statement per [`ROWS_PER_STATEMENT`]. Each key once.
pub async fn save_many(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: &[&AlertRow],
    now_ms: i64,
) -> Result<(), AppError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut marks = Placeholders::new(backend);
        let sql = format!(
            "INSERT INTO alerts_alerts
               (dedup_key, status, alert, channels, occurrences, first_ms, last_ms, acked_by,
                resolved_by)
             VALUES {}
             ON CONFLICT (dedup_key) DO UPDATE SET status = excluded.status,
               alert = excluded.alert, channels = excluded.channels,
               occurrences = excluded.occurrences, last_ms = excluded.last_ms,
               acked_by = excluded.acked_by, resolved_by = excluded.resolved_by",
            marks.rows(chunk.len(), 9)
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            let alert =
                serde_json::to_string(&row.alert).map_err(|e| AppError::Internal(e.to_string()))?;
            let channels = serde_json::to_string(&row.channels)
                .map_err(|e| AppError::Internal(e.to_string()))?;
            query = query
                .bind(row.alert.dedup_key.clone())
                .bind(row.status.as_str())
                .bind(alert)
                .bind(channels)
                .bind(row.occurrences)
                .bind(row.first_ms)
                .bind(now_ms)
                .bind(row.acked_by.clone())
                .bind(row.resolved_by.clone());
        }
        query.execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(())
}
