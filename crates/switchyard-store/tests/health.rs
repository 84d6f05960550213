//! The store's health reads: pending migrations without migrating, and the outbox at a glance.

use switchyard_store::{NewOutboxItem, OutboxHealth, OutboxOutcome, OutboxResult, Store};

fn call(key: &str, created_at_ms: i64) -> NewOutboxItem {
    NewOutboxItem {
        ordering_key: key.into(),
        method: "chat.postMessage".into(),
        payload: "{}".into(),
        ref_key: None,
        not_before_ms: 0,
        created_at_ms,
    }
}

#[tokio::test]
async fn open_reports_pending_migrations_and_connect_applies_them() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let fresh = Store::open(&url).await.unwrap();
    let pending = fresh.pending_migrations().await.unwrap();
    assert!(pending.len() >= 3, "{pending:?}");
    assert_eq!(pending[0].version, 1);
    drop(fresh);
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.pending_migrations().await.unwrap(), []);
    let reopened = Store::open(&url).await.unwrap();
    assert_eq!(reopened.pending_migrations().await.unwrap(), []);
}

#[tokio::test]
async fn outbox_health_counts_pending_and_failed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(
        store.outbox_health().await.unwrap(),
        OutboxHealth::default()
    );
    let mut tx = store.begin().await.unwrap();
    tx.enqueue_many(&[call("C1", 1_000), call("C2", 2_000), call("C1", 3_000)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let claimed = store.outbox_claim("me", 10_000, 20_000, 1).await.unwrap();
    store
        .outbox_finish_many(
            "me",
            &[OutboxOutcome {
                id: claimed[0].id,
                result: OutboxResult::Failed {
                    error: "channel_not_found".into(),
                },
            }],
            10_001,
        )
        .await
        .unwrap();
    let health = store.outbox_health().await.unwrap();
    assert_eq!(health.pending, 2);
    assert_eq!(health.failed, 1);
    assert_eq!(health.oldest_pending_at_ms, Some(2_000));
    assert_eq!(store.outbox_pending_count().await.unwrap(), 2);
}
