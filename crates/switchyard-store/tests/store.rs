//! The store suite, run on SQLite and on PostgreSQL.
//!
//! PostgreSQL runs when `SWITCHYARD_TEST_POSTGRES_URL` is set (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets its own schema. Without the
//! variable the PostgreSQL half says so on stderr and passes.

use std::future::Future;

use switchyard_store::{Backend, InboxInsert, NewInboxItem, NewOutboxItem, Store};

/// A database for one test, removed afterwards.
struct TestDb {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    cleanup: Option<(String, String)>,
}

async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    TestDb {
        store: Store::connect(&url).await.unwrap(),
        _dir: Some(dir),
        cleanup: None,
    }
}

async fn postgres() -> Option<TestDb> {
    let Ok(base) = std::env::var("SWITCHYARD_TEST_POSTGRES_URL") else {
        eprintln!("SKIPPED: PostgreSQL store tests — set SWITCHYARD_TEST_POSTGRES_URL to run them");
        return None;
    };
    let schema = format!("t_{:016x}", rand_u64());
    // Create the schema through a plain connection, then point the test's pool at it.
    admin(&base, &format!("CREATE SCHEMA {schema}")).await;
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    Some(TestDb {
        store: Store::connect(&url).await.unwrap(),
        _dir: None,
        cleanup: Some((base, schema)),
    })
}

impl TestDb {
    async fn finish(self) {
        if let Some((base, schema)) = self.cleanup {
            admin(&base, &format!("DROP SCHEMA {schema} CASCADE")).await;
        }
    }
}

async fn admin(url: &str, sql: &str) {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("PostgreSQL reachable");
    conn.execute(sql).await.expect(sql);
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// Runs one test body on SQLite, then on PostgreSQL when configured.
async fn on_both<F, Fut>(body: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = sqlite().await;
    assert_eq!(db.store.backend(), Backend::Sqlite);
    body(db.store.clone()).await;
    db.finish().await;
    if let Some(db) = postgres().await {
        assert_eq!(db.store.backend(), Backend::Postgres);
        body(db.store.clone()).await;
        db.finish().await;
    }
}

fn inbox(key: &str) -> NewInboxItem {
    NewInboxItem {
        dedupe_key: key.into(),
        kind: "event".into(),
        payload: format!("{{\"key\":\"{key}\"}}"),
        received_at_ms: 1,
    }
}

fn outbox(key: &str, text: &str) -> NewOutboxItem {
    NewOutboxItem {
        ordering_key: key.into(),
        method: "chat.postMessage".into(),
        payload: format!("{{\"channel\":\"{key}\",\"text\":\"{text}\"}}"),
        ref_key: None,
        not_before_ms: 0,
        created_at_ms: 1,
    }
}

async fn enqueue(store: &Store, items: &[NewOutboxItem]) -> Vec<i64> {
    let mut tx = store.begin().await.unwrap();
    let mut ids = Vec::new();
    for item in items {
        ids.push(tx.enqueue(item).await.unwrap());
    }
    tx.commit().await.unwrap();
    ids
}

#[tokio::test]
async fn migrations_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    Store::connect(&url).await.unwrap();
    Store::connect(&url).await.unwrap().ping().await.unwrap();
    if let Ok(base) = std::env::var("SWITCHYARD_TEST_POSTGRES_URL") {
        Store::connect(&base).await.unwrap();
        Store::connect(&base).await.unwrap().ping().await.unwrap();
    }
}

#[tokio::test]
async fn bad_urls_are_named() {
    let e = Store::connect("mysql://u:secret@h/db")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mysql://u:***@h/db") && !e.contains("secret"),
        "{e}"
    );
    let e = Store::connect("postgres://u:secret@127.0.0.1:1/db")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("127.0.0.1:1") && !e.contains("secret"), "{e}");
}

#[tokio::test]
async fn inbox_deduplicates() {
    on_both(|store| async move {
        let a = store.inbox_insert(&inbox("Ev1"), None).await.unwrap();
        let b = store.inbox_insert(&inbox("Ev1"), None).await.unwrap();
        let InboxInsert::New(id) = a else {
            panic!("first insert is new: {a:?}")
        };
        assert_eq!(b, InboxInsert::Duplicate(id));
        assert_eq!(store.inbox_counts().await.unwrap().pending, 1);
    })
    .await;
}

#[tokio::test]
async fn a_leased_item_waits_for_its_lease() {
    on_both(|store| async move {
        let InboxInsert::New(id) = store
            .inbox_insert(&inbox("Ev2"), Some(("w1", 1_000)))
            .await
            .unwrap()
        else {
            panic!()
        };
        assert!(
            store
                .inbox_claim("w2", 500, 5_000, 10)
                .await
                .unwrap()
                .is_empty(),
            "held by w1"
        );
        let claimed = store.inbox_claim("w2", 1_001, 5_000, 10).await.unwrap();
        assert_eq!(
            claimed.iter().map(|i| i.id).collect::<Vec<_>>(),
            [id],
            "w1's lease ran out"
        );
        // w1 lost it: it cannot finish the item; w2 can.
        let mut tx = store.begin().await.unwrap();
        assert!(!tx.inbox_done(id, "w1", "handled", 2_000).await.unwrap());
        assert!(tx.inbox_done(id, "w2", "handled", 2_000).await.unwrap());
        tx.commit().await.unwrap();
        let item = store.inbox_get(id).await.unwrap().unwrap();
        assert_eq!(
            (item.state.as_str(), item.outcome.as_deref()),
            ("done", Some("handled"))
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_claims_never_share_an_item() {
    on_both(|store| async move {
        for i in 0..40 {
            store
                .inbox_insert(&inbox(&format!("Ev-c{i}")), None)
                .await
                .unwrap();
        }
        let mut handles = Vec::new();
        for w in 0..4 {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let got = store
                        .inbox_claim(&format!("w{w}"), 10, 1_000_000, 3)
                        .await
                        .unwrap();
                    if got.is_empty() {
                        break;
                    }
                    mine.extend(got.into_iter().map(|i| i.id));
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        let total = all.len();
        all.sort();
        all.dedup();
        assert_eq!(
            (total, all.len()),
            (40, 40),
            "every item claimed exactly once"
        );
    })
    .await;
}

#[tokio::test]
async fn inbox_retries_then_fails() {
    on_both(|store| async move {
        let InboxInsert::New(id) = store
            .inbox_insert(&inbox("Ev3"), Some(("w", 10)))
            .await
            .unwrap()
        else {
            panic!()
        };
        store.inbox_retry(id, "w", "boom", 100, 2).await.unwrap();
        assert!(
            store.inbox_claim("w", 50, 60, 10).await.unwrap().is_empty(),
            "not due yet"
        );
        let again = store.inbox_claim("w", 100, 200, 10).await.unwrap();
        assert_eq!(again[0].attempts, 1);
        store
            .inbox_retry(id, "w", "boom again", 300, 2)
            .await
            .unwrap();
        let item = store.inbox_get(id).await.unwrap().unwrap();
        assert_eq!(
            (item.state.as_str(), item.error.as_deref()),
            ("failed", Some("boom again"))
        );
        assert!(
            store
                .inbox_claim("w", 1_000, 2_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn outbox_keeps_order_per_key() {
    on_both(|store| async move {
        let ids = enqueue(
            &store,
            &[outbox("A", "a1"), outbox("A", "a2"), outbox("B", "b1")],
        )
        .await;
        let (a1, a2, b1) = (ids[0], ids[1], ids[2]);
        let first: Vec<i64> = store
            .outbox_claim("s", 10, 100, 10)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(first, [a1, b1], "only the head of each key");
        assert!(
            store
                .outbox_claim("s", 20, 100, 10)
                .await
                .unwrap()
                .is_empty(),
            "heads are leased"
        );
        assert!(
            store
                .outbox_sent(b1, "s", "{\"ok\":true}", 21)
                .await
                .unwrap()
        );
        // a1 must wait (a 429): a2 waits behind it.
        assert!(
            store
                .outbox_retry(a1, "s", "ratelimited", 500)
                .await
                .unwrap()
        );
        assert!(
            store
                .outbox_claim("s", 30, 100, 10)
                .await
                .unwrap()
                .is_empty(),
            "a1 not due, a2 behind it"
        );
        let again = store.outbox_claim("s", 500, 600, 10).await.unwrap();
        assert_eq!(
            again.iter().map(|i| (i.id, i.attempts)).collect::<Vec<_>>(),
            [(a1, 1)]
        );
        assert!(
            store
                .outbox_sent(a1, "s", "{\"ok\":true}", 501)
                .await
                .unwrap()
        );
        let next: Vec<i64> = store
            .outbox_claim("s", 502, 600, 10)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(next, [a2]);
    })
    .await;
}

#[tokio::test]
async fn only_the_lease_holder_finishes_an_item() {
    on_both(|store| async move {
        let id = enqueue(&store, &[outbox("C", "x")]).await[0];
        store.outbox_claim("s1", 10, 100, 10).await.unwrap();
        assert!(!store.outbox_sent(id, "s2", "{}", 11).await.unwrap());
        assert!(!store.outbox_failed(id, "s2", "no", 11).await.unwrap());
        assert!(
            store
                .outbox_failed(id, "s1", "channel_not_found", 12)
                .await
                .unwrap()
        );
        let item = store.outbox_get(id).await.unwrap().unwrap();
        assert_eq!(
            (item.state.as_str(), item.error.as_deref()),
            ("failed", Some("channel_not_found"))
        );
        let counts = store.outbox_counts().await.unwrap();
        assert_eq!((counts.pending, counts.failed), (0, 1));
    })
    .await;
}

#[tokio::test]
async fn a_dropped_transaction_leaves_nothing() {
    on_both(|store| async move {
        let InboxInsert::New(id) = store
            .inbox_insert(&inbox("Ev4"), Some(("w", i64::MAX)))
            .await
            .unwrap()
        else {
            panic!()
        };
        {
            let mut tx = store.begin().await.unwrap();
            tx.enqueue(&outbox("D", "lost")).await.unwrap();
            assert!(tx.inbox_done(id, "w", "handled", 1).await.unwrap());
            // dropped: rolled back
        }
        assert!(store.outbox_list(None, 10).await.unwrap().is_empty());
        assert_eq!(store.inbox_get(id).await.unwrap().unwrap().state, "pending");
    })
    .await;
}

#[tokio::test]
async fn recorded_calls_refs_and_due_times() {
    on_both(|store| async move {
        let mut tx = store.begin().await.unwrap();
        let id = tx
            .record_sent(&outbox("views", "v"), "{\"ok\":true}", 5)
            .await
            .unwrap();
        let later = NewOutboxItem {
            not_before_ms: 900,
            ..outbox("E", "later")
        };
        tx.enqueue(&later).await.unwrap();
        tx.commit().await.unwrap();
        let recorded = store.outbox_get(id).await.unwrap().unwrap();
        assert_eq!(
            (recorded.state.as_str(), recorded.response.as_deref()),
            ("sent", Some("{\"ok\":true}"))
        );
        assert_eq!(store.outbox_next_due().await.unwrap(), Some(900));
        assert_eq!(store.outbox_list(Some("sent"), 10).await.unwrap().len(), 1);

        assert_eq!(store.message_ref("k").await.unwrap(), None);
        store.message_ref_set("k", "C1", "1.1").await.unwrap();
        store.message_ref_set("k", "C1", "2.2").await.unwrap();
        let r = store.message_ref("k").await.unwrap().unwrap();
        assert_eq!((r.channel.as_str(), r.ts.as_str()), ("C1", "2.2"));
    })
    .await;
}
