//! Apps' own migrations: applied once, in version order, per dialect; on SQLite and (with
//! `SWITCHYARD_TEST_POSTGRES_URL`) PostgreSQL.

mod support;

use support::on_both;
use switchyard_store::AppMigration;
use switchyard_store::sqlx::{self, Row};

const MIGRATIONS: [AppMigration; 2] = [
    AppMigration {
        version: 2,
        sqlite: "ALTER TABLE demo_things ADD COLUMN size INTEGER NOT NULL DEFAULT 0",
        postgres: "ALTER TABLE demo_things ADD COLUMN size BIGINT NOT NULL DEFAULT 0",
    },
    AppMigration {
        version: 1,
        sqlite: "CREATE TABLE demo_things (name TEXT PRIMARY KEY); \
                 INSERT INTO demo_things (name) VALUES ('first')",
        postgres: "CREATE TABLE demo_things (name TEXT PRIMARY KEY); \
                   INSERT INTO demo_things (name) VALUES ('first')",
    },
];

#[tokio::test]
async fn app_migrations_run_once_in_order() {
    on_both(|store| async move {
        assert_eq!(
            store
                .apply_app_migrations("demo", &MIGRATIONS)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .apply_app_migrations("demo", &MIGRATIONS)
                .await
                .unwrap(),
            0,
            "applied migrations are not run again"
        );
        let row = sqlx::query("SELECT name, size FROM demo_things")
            .fetch_one(store.reader())
            .await
            .unwrap();
        assert_eq!(row.try_get::<String, _>("name").unwrap(), "first");
        assert_eq!(row.try_get::<i64, _>("size").unwrap(), 0);
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM app_migrations WHERE app = 'demo'")
            .fetch_one(store.reader())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(n, 2);
    })
    .await;
}
