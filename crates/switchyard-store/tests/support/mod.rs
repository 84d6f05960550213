//! Running a store test body on SQLite and on PostgreSQL, each in a database of its own; shared
//! by the store's suites.

// Each suite uses its own part of this module.
#![allow(dead_code)]

use std::future::Future;
use std::io::Write;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_store::{Backend, Store};

const PG_VAR: &str = "SWITCHYARD_TEST_POSTGRES_URL";

/// The PostgreSQL URL to test against, or `None` after saying (once per run) that those tests
/// are skipped.
pub fn postgres_url() -> Option<String> {
    match std::env::var(PG_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            static SAID: Once = Once::new();
            SAID.call_once(|| {
                // Straight to the process's stderr: `eprintln!` would be captured by libtest.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: PostgreSQL store tests — set {PG_VAR}"
                );
            });
            None
        }
    }
}

/// A schema of its own for one test on PostgreSQL.
pub struct PgSchema {
    admin_url: String,
    name: String,
}

impl PgSchema {
    pub async fn create(admin_url: &str) -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "switchyard_store_test_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        admin(admin_url, &format!("CREATE SCHEMA {name}")).await;
        Self {
            admin_url: admin_url.to_string(),
            name,
        }
    }

    /// The store's URL: the admin URL with the schema as the search path.
    pub fn url(&self) -> String {
        let sep = if self.admin_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}options=-c%20search_path%3D{}",
            self.admin_url, self.name
        )
    }

    pub async fn drop_schema(self) {
        admin(
            &self.admin_url,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        )
        .await;
    }
}

pub async fn admin(url: &str, sql: &str) {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {PG_VAR} reachable: {e}"));
    conn.execute(sql).await.expect(sql);
    let _ = conn.close().await;
}

pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("store.db").display())
}

/// Runs one test body on SQLite, then on PostgreSQL when configured.
pub async fn on_both<F, Fut>(body: F)
where
    F: Fn(Store) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&sqlite_url(&dir)).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    body(store).await;

    let Some(base) = postgres_url() else { return };
    let schema = PgSchema::create(&base).await;
    let url = schema.url();
    // In a task of its own, so a failing body still lets the schema be dropped.
    let outcome = tokio::spawn(async move {
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
        body(store).await;
    })
    .await;
    schema.drop_schema().await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("PostgreSQL half: {e}"),
        }
    }
}
