//! The store suite: every test body runs on SQLite (a fresh file per test) and then on
//! PostgreSQL when `SWITCHYARD_TEST_POSTGRES_URL` is set (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`).
//!
//! Each PostgreSQL run gets a schema of its own: created through a plain connection, used by
//! connecting the store with `options=-c search_path=<schema>` (so its migrations, tables and
//! `_sqlx_migrations` live there), and dropped afterwards, even when the body panics. Without
//! the variable the PostgreSQL half prints `SKIPPED: …` straight to stderr (past the test
//! harness's capture) and passes.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use switchyard_store::{
    Backend, InboxInsert, MessageRef, NewInboxItem, NewOutboxItem, OutboxOutcome, OutboxResult,
    StateCounts, Store, StoreError,
};

mod support;

use support::{PgSchema, on_both, postgres_url, sqlite_url};

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

async fn new_inbox(store: &Store, key: &str, lease: Option<(&str, i64)>) -> i64 {
    match store.inbox_insert(&inbox(key), lease).await.unwrap() {
        InboxInsert::New(id) => id,
        other => panic!("{key} is new: {other:?}"),
    }
}

/// Inserts `items` (all new) in one batch, leased to `owner`; returns their ids in order.
async fn new_inbox_many(store: &Store, items: &[NewInboxItem], owner: &str) -> Vec<i64> {
    store
        .inbox_insert_many(items, Some((owner, i64::MAX)))
        .await
        .unwrap()
        .into_iter()
        .map(|r| match r {
            InboxInsert::New(id) => id,
            other => panic!("new: {other:?}"),
        })
        .collect()
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

fn ids<T>(items: &[T], id: impl Fn(&T) -> i64) -> Vec<i64> {
    items.iter().map(id).collect()
}

fn counts(pending: i64, done_or_sent: i64, failed: i64) -> StateCounts {
    StateCounts {
        pending,
        done_or_sent,
        failed,
    }
}

// ---- connecting ----

#[tokio::test]
async fn migrations_are_idempotent() {
    async fn twice(url: &str, migrations: &str) {
        let first = Store::connect(url).await.unwrap();
        let id = new_inbox(&first, "Ev-m", None).await;
        let second = Store::connect(url).await.unwrap();
        second.ping().await.unwrap();
        assert_eq!(
            second.inbox_get(id).await.unwrap().unwrap().dedupe_key,
            "Ev-m",
            "data survives reconnecting"
        );
        let mut tx = second.begin().await.unwrap();
        let applied: i64 = sqlx::Row::get(
            &sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations")
                .fetch_one(tx.conn())
                .await
                .unwrap(),
            "n",
        );
        // As many as there are files, so adding a migration needs no edit here.
        let dir = format!("{}/migrations/{migrations}", env!("CARGO_MANIFEST_DIR"));
        let files = std::fs::read_dir(dir).unwrap().count();
        assert_eq!(applied, files as i64, "each migration applied once");
    }
    let dir = tempfile::tempdir().unwrap();
    twice(&sqlite_url(&dir), "sqlite").await;
    if let Some(base) = postgres_url() {
        let schema = PgSchema::create(&base).await;
        let url = schema.url();
        let outcome = tokio::spawn(async move { twice(&url, "postgres").await }).await;
        schema.drop_schema().await;
        outcome.unwrap();
    }
}

#[tokio::test]
async fn bad_urls_are_named_with_passwords_redacted() {
    let e = Store::connect("mysql://u:secret@h/db").await.unwrap_err();
    assert!(matches!(e, StoreError::InvalidUrl { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains("mysql://u:***@h/db") && !e.contains("secret"),
        "{e}"
    );

    let e = Store::connect("sqlite://").await.unwrap_err();
    assert!(matches!(e, StoreError::InvalidUrl { .. }), "{e:?}");

    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}/no/such/dir/x.db", dir.path().display());
    let e = Store::connect(&missing).await.unwrap_err();
    assert!(matches!(e, StoreError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains(&missing), "{e}");

    let e = Store::connect("postgres://u:secret@127.0.0.1:notaport/db?password=secret2")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Connect { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains("postgres://u:***@127.0.0.1:notaport/db?password=***") && !e.contains("secret"),
        "{e}"
    );

    if let Some(base) = postgres_url() {
        let base = base.split('?').next().unwrap_or_default();
        let url = format!("{base}_no_such_database");
        let e = Store::connect(&url).await.unwrap_err();
        assert!(matches!(e, StoreError::Connect { .. }), "{e:?}");
        assert!(e.to_string().contains(&url), "{e}");
    }
}

#[tokio::test]
async fn one_memory_database_serves_the_whole_pool() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    let id = new_inbox(&store, "Ev-mem", Some(("w", 10))).await;
    let clone = store.clone();
    let mut tx = clone.begin().await.unwrap();
    let out = tx.enqueue(&outbox("M", "m")).await.unwrap();
    assert!(tx.inbox_done(id, "w", "handled", 5).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(store.inbox_counts().await.unwrap(), counts(0, 1, 0));
    assert_eq!(
        ids(&store.outbox_list(None, 10).await.unwrap(), |i| i.id),
        [out]
    );
    // A second memory store is a database of its own.
    let other = Store::connect("sqlite::memory:").await.unwrap();
    assert_eq!(other.inbox_counts().await.unwrap(), counts(0, 0, 0));
}

#[tokio::test]
async fn sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&sqlite_url(&dir)).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let mut pragma = async |name: &str| -> String {
        let row = sqlx::query(&format!("SELECT * FROM pragma_{name}"))
            .fetch_one(tx.conn())
            .await
            .unwrap();
        sqlx::Row::try_get::<String, _>(&row, 0)
            .or_else(|_| sqlx::Row::try_get::<i64, _>(&row, 0).map(|n| n.to_string()))
            .unwrap()
    };
    assert_eq!(pragma("journal_mode").await, "wal");
    assert_eq!(pragma("foreign_keys").await, "1");
    assert_eq!(pragma("busy_timeout").await, "10000");
}

/// The WAL's length in frames (a passive checkpoint's second column, read on a connection of
/// the test's own: it changes nothing the store's next commit would not).
async fn wal_frames(dir: &tempfile::TempDir) -> i64 {
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(&sqlite_url(dir))
        .await
        .unwrap();
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::Row::try_get(&row, 1).unwrap()
}

#[tokio::test]
async fn the_wal_starts_over_after_a_checkpoint_taken_while_commits_keep_coming() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&sqlite_url(&dir)).await.unwrap();
    for i in 0..300 {
        new_inbox(&store, &format!("Ev-before-{i}"), None).await;
    }
    let grown = wal_frames(&dir).await;
    assert!(grown >= 300, "each commit adds frames: {grown}");
    // Commits go on while the store checkpoints, as under load: a checkpoint on a reader
    // alone never found the WAL all copied, so SQLite never started it over.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                new_inbox(&store, &format!("Ev-during-{i}"), None).await;
                i += 1;
            }
            i
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    store.checkpoint().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let during = writes.await.unwrap();
    new_inbox(&store, "Ev-after", None).await;
    let now = wal_frames(&dir).await;
    assert!(
        now < grown,
        "the WAL started over ({now} frames; {grown} before the checkpoint, {during} commits during it)"
    );
}

// ---- inbox ----

#[tokio::test]
async fn inbox_deduplicates_by_key() {
    on_both(|store| async move {
        let id = new_inbox(&store, "Ev1", None).await;
        let again = NewInboxItem {
            payload: "{\"retry\":true}".into(),
            ..inbox("Ev1")
        };
        assert_eq!(
            store.inbox_insert(&again, Some(("w", 99))).await.unwrap(),
            InboxInsert::Duplicate(id)
        );
        let item = store.inbox_get(id).await.unwrap().unwrap();
        assert_eq!(item.payload, inbox("Ev1").payload, "the first one stays");
        assert_eq!(store.inbox_counts().await.unwrap(), counts(1, 0, 0));

        // A batch: a key repeated within it, and one already stored.
        let results = store
            .inbox_insert_many(&[inbox("Ev2"), inbox("Ev2"), inbox("Ev1")], None)
            .await
            .unwrap();
        let InboxInsert::New(ev2) = results[0] else {
            panic!("{results:?}")
        };
        assert_eq!(
            results[1..],
            [InboxInsert::Duplicate(ev2), InboxInsert::Duplicate(id)]
        );
        assert_eq!(store.inbox_counts().await.unwrap(), counts(2, 0, 0));
        assert_eq!(store.inbox_get(i64::MAX).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn a_leased_item_waits_for_its_lease() {
    on_both(|store| async move {
        let id = new_inbox(&store, "Ev2", Some(("w1", 1_000))).await;
        assert!(
            store
                .inbox_claim("w2", 500, 5_000, 10)
                .await
                .unwrap()
                .is_empty(),
            "held by w1"
        );
        assert!(
            store
                .inbox_claim("w2", 1_000, 5_000, 10)
                .await
                .unwrap()
                .is_empty(),
            "held by w1 up to and including lease_until"
        );
        let claimed = store.inbox_claim("w2", 1_001, 5_000, 10).await.unwrap();
        assert_eq!(ids(&claimed, |i| i.id), [id], "w1's lease ran out");
        assert_eq!(
            (claimed[0].state.as_str(), claimed[0].attempts),
            ("pending", 0)
        );
        assert!(
            store
                .inbox_claim("w3", 1_002, 5_000, 10)
                .await
                .unwrap()
                .is_empty(),
            "now held by w2"
        );
        // w1 lost it: it cannot finish the item; w2 can, once.
        let mut tx = store.begin().await.unwrap();
        assert!(!tx.inbox_done(id, "w1", "handled", 2_000).await.unwrap());
        assert!(tx.inbox_done(id, "w2", "handled", 2_000).await.unwrap());
        assert!(!tx.inbox_done(id, "w2", "again", 2_000).await.unwrap());
        tx.commit().await.unwrap();
        let item = store.inbox_get(id).await.unwrap().unwrap();
        assert_eq!(
            (item.state.as_str(), item.outcome.as_deref()),
            ("done", Some("handled"))
        );
        assert!(
            store
                .inbox_claim("w3", i64::MAX, i64::MAX, 10)
                .await
                .unwrap()
                .is_empty(),
            "done is never claimed"
        );
    })
    .await;
}

#[tokio::test]
async fn inbox_claims_oldest_first_up_to_the_limit() {
    on_both(|store| async move {
        let mut all = Vec::new();
        for i in 0..5 {
            all.push(new_inbox(&store, &format!("Ev-o{i}"), None).await);
        }
        let first = store.inbox_claim("w", 10, 100, 2).await.unwrap();
        assert_eq!(ids(&first, |i| i.id), all[..2]);
        let second = store.inbox_claim("w", 10, 100, 2).await.unwrap();
        assert_eq!(ids(&second, |i| i.id), all[2..4]);
        let rest = store.inbox_claim("w", 10, 100, 2).await.unwrap();
        assert_eq!(ids(&rest, |i| i.id), all[4..]);
        assert!(store.inbox_claim("w", 10, 100, 0).await.unwrap().is_empty());
        assert_eq!(
            ids(&store.inbox_claim("x", 101, 200, 10).await.unwrap(), |i| i
                .id),
            all,
            "all leases ran out"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_inbox_claims_never_share_an_item() {
    on_both(|store| async move {
        const ITEMS: usize = 60;
        const CLAIMERS: usize = 6;
        let items: Vec<_> = (0..ITEMS).map(|i| inbox(&format!("Ev-c{i}"))).collect();
        store.inbox_insert_many(&items, None).await.unwrap();
        let start = Arc::new(tokio::sync::Barrier::new(CLAIMERS));
        let mut handles = Vec::new();
        for w in 0..CLAIMERS {
            let (store, start) = (store.clone(), start.clone());
            handles.push(tokio::spawn(async move {
                start.wait().await;
                let mut mine = Vec::new();
                loop {
                    let got = store
                        .inbox_claim(&format!("w{w}"), 10, 1_000_000, 4)
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
        let unique: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(
            (all.len(), unique.len()),
            (ITEMS, ITEMS),
            "every item claimed exactly once"
        );
    })
    .await;
}

#[tokio::test]
async fn inbox_retries_with_backoff_then_fails() {
    on_both(|store| async move {
        let id = new_inbox(&store, "Ev3", Some(("w", 10))).await;
        // Someone else's retry changes nothing.
        store
            .inbox_retry(id, "x", "not mine", 100, 2)
            .await
            .unwrap();
        assert_eq!(store.inbox_get(id).await.unwrap().unwrap().attempts, 0);

        store.inbox_retry(id, "w", "boom", 100, 2).await.unwrap();
        let item = store.inbox_get(id).await.unwrap().unwrap();
        assert_eq!(
            (item.state.as_str(), item.attempts, item.error.as_deref()),
            ("pending", 1, Some("boom"))
        );
        assert!(
            store
                .inbox_claim("w", 99, 200, 10)
                .await
                .unwrap()
                .is_empty(),
            "not due before not_before"
        );
        let again = store.inbox_claim("w", 100, 200, 10).await.unwrap();
        assert_eq!(ids(&again, |i| i.id), [id]);
        assert_eq!(again[0].attempts, 1);

        store
            .inbox_retry(id, "w", "boom again", 300, 2)
            .await
            .unwrap();
        let item = store.inbox_get(id).await.unwrap().unwrap();
        assert_eq!(
            (item.state.as_str(), item.attempts, item.error.as_deref()),
            ("failed", 2, Some("boom again")),
            "max_attempts reached"
        );
        assert!(
            store
                .inbox_claim("w", i64::MAX, i64::MAX, 10)
                .await
                .unwrap()
                .is_empty(),
            "failed is never claimed"
        );
        // A failed item cannot be retried into life again.
        store.inbox_retry(id, "w", "late", 0, 10).await.unwrap();
        assert_eq!(store.inbox_get(id).await.unwrap().unwrap().state, "failed");

        let done = new_inbox(&store, "Ev3-done", Some(("w", 10))).await;
        let mut tx = store.begin().await.unwrap();
        assert!(tx.inbox_done(done, "w", "handled", 5).await.unwrap());
        tx.commit().await.unwrap();
        new_inbox(&store, "Ev3-pending", None).await;
        assert_eq!(store.inbox_counts().await.unwrap(), counts(1, 1, 1));
    })
    .await;
}

// ---- outbox ----

/// PostgreSQL: two transactions queue on one channel at once (two replicas, or two batches of
/// one): the call queued first goes first, even when the other transaction is the one to
/// commit first. Ids are drawn at the insert but seen at the commit, so without the key's lock
/// the sender took the second call while the first was not yet visible.
#[tokio::test]
async fn outbox_order_on_a_key_holds_across_concurrent_transactions() {
    let Some(base) = support::postgres_url() else {
        return;
    };
    let schema = support::PgSchema::create(&base).await;
    let url = schema.url();
    let outcome = tokio::spawn(async move {
        let store = Store::connect(&url).await.unwrap();
        let mut first = store.begin().await.unwrap();
        first.enqueue_many(&[outbox("C1", "first")]).await.unwrap();
        let second = tokio::spawn({
            let store = store.clone();
            async move {
                let mut tx = store.begin().await.unwrap();
                tx.enqueue_many(&[outbox("C1", "second"), outbox("C2", "other")])
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        });
        // Time for `second` to commit, were it not waiting for `first`.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let early = store.outbox_claim("s", 10, 100, 10).await.unwrap();
        assert!(
            early.iter().all(|i| i.ordering_key != "C1"),
            "nothing of C1 goes before the call queued first is committed: {early:?}"
        );
        first.commit().await.unwrap();
        second.await.unwrap();
        let claimed = store.outbox_claim("s", 20, 100, 10).await.unwrap();
        let c1: Vec<&str> = claimed
            .iter()
            .filter(|i| i.ordering_key == "C1")
            .map(|i| i.payload.as_str())
            .collect();
        assert_eq!(c1, [outbox("C1", "first").payload.as_str()]);
    })
    .await;
    schema.drop_schema().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn outbox_keeps_order_per_key() {
    on_both(|store| async move {
        let ids_ = enqueue(
            &store,
            &[outbox("A", "a1"), outbox("A", "a2"), outbox("B", "b1")],
        )
        .await;
        let (a1, a2, b1) = (ids_[0], ids_[1], ids_[2]);
        let first = store.outbox_claim("s", 10, 100, 10).await.unwrap();
        assert_eq!(ids(&first, |i| i.id), [a1, b1], "only the head of each key");
        assert!(
            store
                .outbox_claim("s", 20, 100, 10)
                .await
                .unwrap()
                .is_empty(),
            "heads are leased, a2 waits behind a1"
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
        let a1_row = store.outbox_get(a1).await.unwrap().unwrap();
        assert_eq!(
            (a1_row.state.as_str(), a1_row.attempts, a1_row.not_before_ms),
            ("pending", 1, 500)
        );
        assert_eq!(a1_row.error.as_deref(), Some("ratelimited"));
        assert!(
            store
                .outbox_claim("s", 499, 600, 10)
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
        let next = store.outbox_claim("s", 502, 10_000, 10).await.unwrap();
        assert_eq!(ids(&next, |i| i.id), [a2], "a1 sent: a2 goes");

        // A permanent failure lets the next item of the key go.
        let c = enqueue(&store, &[outbox("C", "c1"), outbox("C", "c2")]).await;
        let head = store.outbox_claim("s", 600, 700, 10).await.unwrap();
        assert_eq!(ids(&head, |i| i.id), [c[0]], "a2 is still leased");
        assert!(
            store
                .outbox_failed(c[0], "s", "channel_not_found", 601)
                .await
                .unwrap()
        );
        let next = store.outbox_claim("s", 602, 700, 10).await.unwrap();
        assert_eq!(ids(&next, |i| i.id), [c[1]]);
    })
    .await;
}

/// Claimed in the transaction that queues them (SQLite): only the new rows that head their
/// line and are due, up to the limit; a later claim does not take them while they are leased,
/// and takes them when the lease has run out (their outcome unknown). PostgreSQL claims none.
#[tokio::test]
async fn outbox_rows_claimed_at_enqueue_are_the_heads_of_their_lines() {
    on_both(|store| async move {
        let waiting = enqueue(&store, &[outbox("BUSY", "first")]).await;
        let later = NewOutboxItem {
            not_before_ms: 1_000,
            ..outbox("LATER", "l")
        };
        let mut tx = store.begin().await.unwrap();
        let claimed = tx
            .enqueue_many_claimed(
                &[
                    outbox("QUIET", "q1"),
                    outbox("QUIET", "q2"),
                    outbox("BUSY", "second"),
                    later,
                    outbox("OTHER", "o1"),
                    outbox("THIRD", "t1"),
                ],
                "me",
                10,
                100,
                2,
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        if store.backend() == Backend::Postgres {
            assert!(claimed.is_empty(), "{claimed:?}");
            return;
        }
        let claimed_keys: Vec<&str> = claimed.iter().map(|i| i.ordering_key.as_str()).collect();
        assert_eq!(
            claimed_keys,
            ["QUIET", "OTHER"],
            "heads of their lines, up to 2"
        );
        assert!(claimed.iter().all(|i| i.unconfirmed_since_ms.is_none()));
        // The sender's claim takes the rest of the heads, not what the commit claimed.
        let next = store.outbox_claim("me", 20, 100, 10).await.unwrap();
        let keys: Vec<&str> = next.iter().map(|i| i.ordering_key.as_str()).collect();
        assert_eq!(keys, ["BUSY", "THIRD"], "{next:?}");
        assert_eq!(next[0].id, waiting[0]);
        // Its lease run out with no outcome recorded: taken again, the outcome unknown.
        let again = store.outbox_claim("other", 101, 200, 10).await.unwrap();
        let quiet = again.iter().find(|i| i.ordering_key == "QUIET").unwrap();
        assert_eq!(quiet.id, claimed[0].id);
        assert_eq!(quiet.unconfirmed_since_ms, Some(10));
    })
    .await;
}

#[tokio::test]
async fn outbox_claims_respect_not_before_and_the_limit() {
    on_both(|store| async move {
        let later = NewOutboxItem {
            not_before_ms: 1_000,
            ..outbox("L", "later")
        };
        let ids_ = enqueue(
            &store,
            &[
                later,
                outbox("K1", "x"),
                outbox("K2", "y"),
                outbox("K3", "z"),
            ],
        )
        .await;
        let first = store.outbox_claim("s", 10, 10_000, 2).await.unwrap();
        assert_eq!(ids(&first, |i| i.id), ids_[1..3], "oldest due heads first");
        let second = store.outbox_claim("s", 10, 10_000, 10).await.unwrap();
        assert_eq!(ids(&second, |i| i.id), ids_[3..]);
        let due = store.outbox_claim("s", 1_000, 1_100, 10).await.unwrap();
        assert_eq!(ids(&due, |i| i.id), ids_[..1]);
        assert_eq!(due[0].payload, outbox("L", "later").payload);
    })
    .await;
}

/// Records `outcomes` for owner `s`, each of which must still be its to record.
async fn finish_all(store: &Store, outcomes: &[OutboxOutcome], now: i64, step: usize) {
    let done = store.outbox_finish_many("s", outcomes, now).await.unwrap();
    assert!(
        done.iter().all(|d| *d),
        "step {step}: every outcome recorded"
    );
}

/// A long run of queueing, claims and outcomes (sent, retried, failed, pruned) over a few
/// keys, checked at every claim against a model of the lines: a claim takes exactly the due,
/// unleased heads, oldest first. On SQLite the heads are marks the outbox's triggers keep
/// (migration 0009), so every write that moves a line is in here.
#[tokio::test]
async fn outbox_heads_follow_every_line_through_a_long_run() {
    on_both(|store| async move {
        let keys = ["K0", "K1", "K2", "K3"];
        // Per key, its pending ids in order; per id, (not_before, leased).
        let mut lines: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        let mut calls: BTreeMap<i64, (i64, bool)> = BTreeMap::new();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut now = 10;
        for step in 0..300 {
            now += 1 + next(3) as i64;
            match next(4) {
                0 | 1 => {
                    // One call, or a batch of up to three (keys may repeat in it): the heads
                    // must come out right whichever way the rows went in.
                    let n = if next(2) == 0 {
                        1
                    } else {
                        1 + next(3) as usize
                    };
                    let batch: Vec<(&str, NewOutboxItem)> = (0..n)
                        .map(|j| {
                            let key = keys[next(keys.len() as u64) as usize];
                            let not_before = if next(4) == 0 { now + 5 } else { 0 };
                            let item = NewOutboxItem {
                                not_before_ms: not_before,
                                ..outbox(key, &format!("s{step}-{j}"))
                            };
                            (key, item)
                        })
                        .collect();
                    let items: Vec<NewOutboxItem> =
                        batch.iter().map(|(_, item)| item.clone()).collect();
                    let new_ids: Vec<i64> = if n == 1 && next(2) == 0 {
                        enqueue(&store, &items).await
                    } else {
                        let mut tx = store.begin().await.unwrap();
                        tx.enqueue_many(&items).await.unwrap();
                        tx.commit().await.unwrap();
                        store
                            .outbox_list(Some("pending"), 100_000)
                            .await
                            .unwrap()
                            .iter()
                            .map(|i| i.id)
                            .filter(|id| !calls.contains_key(id))
                            .collect()
                    };
                    assert_eq!(new_ids.len(), n, "step {step}");
                    for ((key, item), id) in batch.iter().zip(new_ids) {
                        lines.entry(key).or_default().push(id);
                        calls.insert(id, (item.not_before_ms, false));
                    }
                }
                _ => {
                    let sent = |id| OutboxOutcome {
                        id,
                        result: OutboxResult::Sent {
                            response: "{\"ok\":true}".into(),
                            message_ref: None,
                        },
                    };
                    // Some of the calls left in flight come back first, sent.
                    let mut back = Vec::new();
                    for line in lines.values_mut() {
                        if let Some(&head) = line.first()
                            && calls[&head].1
                            && next(2) == 0
                        {
                            line.remove(0);
                            back.push(sent(head));
                        }
                    }
                    finish_all(&store, &back, now, step).await;
                    let mut expected: Vec<i64> = lines
                        .values()
                        .filter_map(|line| line.first())
                        .filter(|id| {
                            let (not_before, leased) = calls[id];
                            not_before <= now && !leased
                        })
                        .copied()
                        .collect();
                    expected.sort();
                    expected.truncate(3);
                    let claimed = store
                        .outbox_claim("s", now, now + 1_000_000, 3)
                        .await
                        .unwrap();
                    assert_eq!(ids(&claimed, |i| i.id), expected, "step {step}");
                    let mut outcomes = Vec::new();
                    for item in &claimed {
                        let id = item.id;
                        let line = lines.get_mut(item.ordering_key.as_str()).unwrap();
                        match next(4) {
                            0 => {
                                calls.insert(id, (now + 3, false));
                                outcomes.push(OutboxOutcome {
                                    id,
                                    result: OutboxResult::Retry {
                                        error: "ratelimited".into(),
                                        not_before_ms: now + 3,
                                        unconfirmed: false,
                                    },
                                });
                            }
                            1 => {
                                line.remove(0);
                                outcomes.push(OutboxOutcome {
                                    id,
                                    result: OutboxResult::Failed {
                                        error: "channel_not_found".into(),
                                    },
                                });
                            }
                            // Left in flight, to come back at a later step.
                            2 => {
                                calls.insert(id, (calls[&id].0, true));
                            }
                            _ => {
                                line.remove(0);
                                outcomes.push(sent(id));
                            }
                        }
                    }
                    finish_all(&store, &outcomes, now, step).await;
                    if step % 50 == 0 {
                        store.outbox_prune_sent(now, 1_000).await.unwrap();
                    }
                }
            }
        }
    })
    .await;
}

/// The heads are claimed oldest first, whatever order their keys are in: keys whose names
/// sort the other way from their calls' age, a long line behind one head, a head in flight
/// and one not due yet.
#[tokio::test]
async fn outbox_claims_take_the_oldest_due_heads_whatever_their_keys() {
    on_both(|store| async move {
        let later = NewOutboxItem {
            not_before_ms: 1_000,
            ..outbox("A-later", "a")
        };
        let mut items = vec![outbox("Z", "z1"), outbox("Y", "y1")];
        items.extend((2..40).map(|n| outbox("Z", &format!("z{n}"))));
        items.extend([
            later,
            outbox("X", "x1"),
            outbox("B", "b1"),
            outbox("Y", "y2"),
        ]);
        let enqueued = enqueue(&store, &items).await;
        let id_of = |text: &str| {
            enqueued[items
                .iter()
                .position(|i| i.payload.contains(&format!("\"{text}\"")))
                .unwrap()]
        };
        let first = store.outbox_claim("s", 10, 10_000, 1).await.unwrap();
        assert_eq!(
            ids(&first, |i| i.id),
            [id_of("z1")],
            "the oldest head, not the first key"
        );
        let next = store.outbox_claim("s", 10, 10_000, 2).await.unwrap();
        assert_eq!(
            ids(&next, |i| i.id),
            [id_of("y1"), id_of("x1")],
            "z1 in flight, z2 behind it, A-later not due"
        );
        assert!(store.outbox_sent(id_of("z1"), "s", "{}", 11).await.unwrap());
        let rest = store.outbox_claim("s", 1_000, 10_000, 10).await.unwrap();
        assert_eq!(
            ids(&rest, |i| i.id),
            [id_of("z2"), id_of("a"), id_of("b1")],
            "y2 waits behind y1, in flight"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_keep_order_and_never_share_an_item() {
    on_both(|store| async move {
        const KEYS: usize = 5;
        const PER_KEY: usize = 8;
        const SENDERS: usize = 6;
        let mut items = Vec::new();
        for n in 0..PER_KEY {
            for k in 0..KEYS {
                items.push(outbox(&format!("K{k}"), &format!("{n}")));
            }
        }
        let enqueued = enqueue(&store, &items).await;
        // What each sender claimed, in claim order, logged before it reports the item sent.
        let log = Arc::new(Mutex::new(Vec::<(String, i64)>::new()));
        let start = Arc::new(tokio::sync::Barrier::new(SENDERS));
        let mut handles = Vec::new();
        for s in 0..SENDERS {
            let (store, log, start) = (store.clone(), log.clone(), start.clone());
            handles.push(tokio::spawn(async move {
                let owner = format!("s{s}");
                start.wait().await;
                loop {
                    let got = store.outbox_claim(&owner, 10, 1_000_000, 2).await.unwrap();
                    if got.is_empty() {
                        if store.outbox_counts().await.unwrap().pending == 0 {
                            break;
                        }
                        tokio::task::yield_now().await;
                        continue;
                    }
                    for item in got {
                        log.lock()
                            .unwrap()
                            .push((item.ordering_key.clone(), item.id));
                        assert!(store.outbox_sent(item.id, &owner, "{}", 11).await.unwrap());
                    }
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let log = log.lock().unwrap().clone();
        let unique: HashSet<i64> = log.iter().map(|(_, id)| *id).collect();
        assert_eq!(
            (log.len(), unique.len()),
            (enqueued.len(), enqueued.len()),
            "every item claimed exactly once"
        );
        let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (key, id) in log {
            per_key.entry(key).or_default().push(id);
        }
        for (key, ids) in per_key {
            assert!(ids.is_sorted(), "{key} sent out of order: {ids:?}");
        }
        assert_eq!(
            store.outbox_counts().await.unwrap(),
            counts(0, enqueued.len() as i64, 0)
        );
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
        assert!(!store.outbox_retry(id, "s2", "no", 50).await.unwrap());
        let item = store.outbox_get(id).await.unwrap().unwrap();
        assert_eq!((item.state.as_str(), item.attempts), ("pending", 0));

        // s1's lease runs out and s2 takes over: now s1 cannot finish it.
        let taken = store.outbox_claim("s2", 101, 200, 10).await.unwrap();
        assert_eq!(ids(&taken, |i| i.id), [id]);
        assert!(!store.outbox_sent(id, "s1", "{}", 102).await.unwrap());
        assert!(
            store
                .outbox_failed(id, "s2", "channel_not_found", 103)
                .await
                .unwrap()
        );
        assert!(
            !store.outbox_sent(id, "s2", "{}", 104).await.unwrap(),
            "failed is final"
        );
        let item = store.outbox_get(id).await.unwrap().unwrap();
        assert_eq!(
            (item.state.as_str(), item.error.as_deref(), item.response),
            ("failed", Some("channel_not_found"), None)
        );
        assert_eq!(store.outbox_counts().await.unwrap(), counts(0, 0, 1));
        assert_eq!(store.outbox_get(i64::MAX).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn a_claim_after_a_lost_outcome_says_since_when_the_call_may_have_gone() {
    on_both(|store| async move {
        let [lost, clean] = enqueue(&store, &[outbox("C1", "x"), outbox("C2", "y")]).await[..]
        else {
            unreachable!()
        };
        // Claimed at 10; the first one's outcome is never recorded (its process was killed),
        // the second one's is a retry (its outcome is known: not sent).
        let first = store.outbox_claim("s1", 10, 100, 10).await.unwrap();
        assert!(first.iter().all(|i| i.unconfirmed_since_ms.is_none()));
        assert!(store.outbox_retry(clean, "s1", "reset", 0).await.unwrap());
        let again = store.outbox_claim("s2", 150, 250, 10).await.unwrap();
        let by_id = |id: i64| again.iter().find(|i| i.id == id).unwrap().clone();
        assert_eq!(by_id(lost).unconfirmed_since_ms, Some(10));
        assert_eq!(by_id(clean).unconfirmed_since_ms, None);
        // Lost again: it stays the first unfinished claim's time, the oldest a post can be.
        let third = store.outbox_claim("s3", 300, 400, 10).await.unwrap();
        assert_eq!(ids(&third, |i| i.id), [lost, clean]);
        assert_eq!(third[0].unconfirmed_since_ms, Some(10));
        assert_eq!(
            third[1].unconfirmed_since_ms,
            Some(150),
            "its claim at 150 was lost"
        );
        assert!(store.outbox_sent(clean, "s3", "{}", 301).await.unwrap());
        // A call with no reply: recorded as a retry whose outcome is unknown, from its claim.
        let maybe = enqueue(&store, &[outbox("C3", "z")]).await[0];
        let claimed = store.outbox_claim("s3", 320, 400, 10).await.unwrap();
        assert_eq!(ids(&claimed, |i| i.id), [maybe]);
        let no_reply = OutboxOutcome {
            id: maybe,
            result: OutboxResult::Retry {
                error: "no reply".into(),
                not_before_ms: 0,
                unconfirmed: true,
            },
        };
        store
            .outbox_finish_many("s3", &[no_reply], 330)
            .await
            .unwrap();
        let item = store.outbox_get(maybe).await.unwrap().unwrap();
        assert_eq!((item.attempts, item.unconfirmed_since_ms), (1, Some(320)));
        assert!(store.outbox_sent(lost, "s3", "{}", 301).await.unwrap());
        assert_eq!(
            store
                .outbox_get(lost)
                .await
                .unwrap()
                .unwrap()
                .unconfirmed_since_ms,
            Some(10)
        );
    })
    .await;
}

#[tokio::test]
async fn a_sole_sqlite_server_takes_over_what_the_last_run_left_leased() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let store = Store::connect(&url).await.unwrap();
    // The last run, killed: an acked inbox item and the head of a channel's line, both leased
    // far ahead, and a call it had finished.
    let far = i64::MAX / 2;
    let item = new_inbox(&store, "e1", Some(("dead", far))).await;
    let [call, done] = enqueue(&store, &[outbox("C1", "x"), outbox("C2", "y")]).await[..] else {
        unreachable!()
    };
    assert_eq!(
        store.outbox_claim("dead", 10, far, 10).await.unwrap().len(),
        2
    );
    assert!(store.outbox_sent(done, "dead", "{}", 11).await.unwrap());
    assert!(
        store
            .inbox_claim("new", 20, 100, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let sole = store.become_sole_server("new").await.unwrap();
    assert_eq!(
        sole.as_ref().map(|s| s.released),
        Some(2),
        "the item and the call"
    );
    // Another server on the same file while this one lives is not the sole one, and takes
    // nothing over.
    let other = Store::connect(&url).await.unwrap();
    assert!(other.become_sole_server("other").await.unwrap().is_none());
    let claimed = store.inbox_claim("new", 20, 100, 10).await.unwrap();
    assert_eq!(ids(&claimed, |i| i.id), [item]);
    let calls = store.outbox_claim("new", 20, 100, 10).await.unwrap();
    assert_eq!(ids(&calls, |i| i.id), [call]);
    assert_eq!(
        calls[0].unconfirmed_since_ms,
        Some(10),
        "it may have reached Slack: it is looked for before it is made again"
    );
    drop(sole);
    assert!(other.become_sole_server("other").await.unwrap().is_some());
    // PostgreSQL is shared by replicas: nobody is the sole server there.
    if let Some(pg) = postgres_url() {
        let schema = PgSchema::create(&pg).await;
        let store = Store::connect(&schema.url()).await.unwrap();
        assert!(store.become_sole_server("new").await.unwrap().is_none());
        drop(store);
        schema.drop_schema().await;
    }
}

#[tokio::test]
async fn pruning_removes_only_sent_items_older_than_the_cut() {
    on_both(|store| async move {
        let items: Vec<NewOutboxItem> = (0..5).map(|n| outbox(&format!("C{n}"), "x")).collect();
        let ids = enqueue(&store, &items).await;
        store.outbox_claim("s", 10, 100, 10).await.unwrap();
        // Three sent long ago, one sent recently, one failed long ago; one more pending.
        for id in &ids[..3] {
            assert!(store.outbox_sent(*id, "s", "{}", 1_000).await.unwrap());
        }
        assert!(store.outbox_sent(ids[3], "s", "{}", 9_000).await.unwrap());
        assert!(store.outbox_failed(ids[4], "s", "no", 1_000).await.unwrap());
        let pending = enqueue(&store, &[outbox("C9", "later")]).await[0];
        store.message_ref_set("ref", "C0", "1.0").await.unwrap();

        assert_eq!(
            store.outbox_prune_sent(5_000, 2).await.unwrap(),
            2,
            "the limit holds"
        );
        assert_eq!(store.outbox_prune_sent(5_000, 2).await.unwrap(), 1);
        assert_eq!(store.outbox_prune_sent(5_000, 2).await.unwrap(), 0);
        for id in &ids[..3] {
            assert_eq!(store.outbox_get(*id).await.unwrap(), None);
        }
        for id in [ids[3], ids[4], pending] {
            assert!(store.outbox_get(id).await.unwrap().is_some(), "{id} stays");
        }
        assert_eq!(store.outbox_counts().await.unwrap(), counts(1, 1, 1));
        assert!(
            store.message_ref("ref").await.unwrap().is_some(),
            "refs stay"
        );
    })
    .await;
}

#[tokio::test]
async fn inbox_pruning_removes_only_done_items_handled_before_the_cut() {
    on_both(|store| async move {
        // Three handled long ago, one handled recently, one failed long ago, one pending.
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(new_inbox(&store, &format!("Ev-prune-{n}"), Some(("w", i64::MAX))).await);
        }
        let mut tx = store.begin().await.unwrap();
        for id in &ids[..3] {
            assert!(tx.inbox_done(*id, "w", "handled", 1_000).await.unwrap());
        }
        assert!(tx.inbox_done(ids[3], "w", "handled", 9_000).await.unwrap());
        tx.commit().await.unwrap();
        store
            .inbox_retry(ids[4], "w", "broken", 0, 1)
            .await
            .unwrap();
        let pending = new_inbox(&store, "Ev-prune-pending", None).await;
        assert_eq!(store.inbox_counts().await.unwrap(), counts(1, 4, 1));

        assert_eq!(
            store.inbox_prune_done(5_000, 2).await.unwrap(),
            2,
            "the limit holds"
        );
        assert_eq!(store.inbox_prune_done(5_000, 2).await.unwrap(), 1);
        assert_eq!(store.inbox_prune_done(5_000, 2).await.unwrap(), 0);
        for id in &ids[..3] {
            assert_eq!(store.inbox_get(*id).await.unwrap(), None);
        }
        for id in [ids[3], ids[4], pending] {
            assert!(store.inbox_get(id).await.unwrap().is_some(), "{id} stays");
        }
        assert_eq!(store.inbox_counts().await.unwrap(), counts(1, 1, 1));
        // A pruned item's key is forgotten: the same delivery again is new.
        assert!(matches!(
            store
                .inbox_insert(&inbox("Ev-prune-0"), None)
                .await
                .unwrap(),
            InboxInsert::New(_)
        ));
    })
    .await;
}

// ---- transactions ----

#[tokio::test]
async fn a_dropped_transaction_leaves_nothing() {
    on_both(|store| async move {
        let id = new_inbox(&store, "Ev4", Some(("w", i64::MAX))).await;
        {
            let mut tx = store.begin().await.unwrap();
            sqlx::query("CREATE TABLE app_notes (id BIGINT PRIMARY KEY, note TEXT NOT NULL)")
                .execute(tx.conn())
                .await
                .unwrap();
            tx.enqueue(&outbox("D", "lost")).await.unwrap();
            tx.record_sent(&outbox("D", "view"), "{}", 1).await.unwrap();
            assert!(tx.inbox_done(id, "w", "handled", 1).await.unwrap());
            // dropped: rolled back
        }
        assert!(store.outbox_list(None, 10).await.unwrap().is_empty());
        let item = store.inbox_get(id).await.unwrap().unwrap();
        assert_eq!((item.state.as_str(), item.outcome), ("pending", None));

        // Committed, the app's own table, the outbox row and the completion all land.
        let mut tx = store.begin().await.unwrap();
        sqlx::query("CREATE TABLE app_notes (id BIGINT PRIMARY KEY, note TEXT NOT NULL)")
            .execute(tx.conn())
            .await
            .unwrap_or_else(|e| panic!("app_notes was rolled back with the rest: {e}"));
        sqlx::query("INSERT INTO app_notes (id, note) VALUES ($1, $2)")
            .bind(1_i64)
            .bind("kept")
            .execute(tx.conn())
            .await
            .unwrap();
        let out = tx.enqueue(&outbox("D", "kept")).await.unwrap();
        assert!(tx.inbox_done(id, "w", "handled", 2).await.unwrap());
        tx.commit().await.unwrap();
        assert_eq!(
            ids(&store.outbox_list(None, 10).await.unwrap(), |i| i.id),
            [out]
        );
        assert_eq!(store.inbox_get(id).await.unwrap().unwrap().state, "done");
        let mut tx = store.begin().await.unwrap();
        let note: String = sqlx::Row::get(
            &sqlx::query("SELECT note FROM app_notes WHERE id = $1")
                .bind(1_i64)
                .fetch_one(tx.conn())
                .await
                .unwrap(),
            "note",
        );
        assert_eq!(note, "kept");
    })
    .await;
}

#[tokio::test]
async fn recorded_calls_are_sent_and_hold_nothing_back() {
    on_both(|store| async move {
        let view = NewOutboxItem {
            method: "views.open".into(),
            ..outbox("V", "modal")
        };
        let mut tx = store.begin().await.unwrap();
        let recorded = tx.record_sent(&view, "{\"ok\":true}", 5).await.unwrap();
        let next = tx.enqueue(&outbox("V", "after")).await.unwrap();
        tx.commit().await.unwrap();
        let row = store.outbox_get(recorded).await.unwrap().unwrap();
        assert_eq!(
            (
                row.state.as_str(),
                row.method.as_str(),
                row.response.as_deref()
            ),
            ("sent", "views.open", Some("{\"ok\":true}"))
        );
        let claimed = store.outbox_claim("s", 10, 100, 10).await.unwrap();
        assert_eq!(
            ids(&claimed, |i| i.id),
            [next],
            "not behind the recorded call"
        );
        assert_eq!(
            ids(&store.outbox_list(Some("sent"), 10).await.unwrap(), |i| i
                .id),
            [recorded]
        );
        assert_eq!(
            ids(
                &store.outbox_list(Some("pending"), 10).await.unwrap(),
                |i| i.id
            ),
            [next]
        );
        assert_eq!(
            ids(&store.outbox_list(None, 1).await.unwrap(), |i| i.id),
            [recorded],
            "oldest first, up to the limit"
        );
        assert_eq!(store.outbox_counts().await.unwrap(), counts(1, 1, 0));
    })
    .await;
}

/// On SQLite the calls behind a head in flight are not due, whatever their `not_before`:
/// the head's lease ending is (an outcome recorded wakes the sender before that).
#[tokio::test]
async fn next_due_behind_a_head_in_flight_is_its_lease_end_on_sqlite() {
    on_both(|store| async move {
        let items = [
            outbox("L", "head"),
            outbox("L", "behind"),
            outbox("L", "more"),
        ];
        let enqueued = enqueue(&store, &items).await;
        assert_eq!(store.outbox_next_due().await.unwrap(), Some(0));
        let claimed = store.outbox_claim("s", 10, 5_000, 10).await.unwrap();
        assert_eq!(ids(&claimed, |i| i.id), enqueued[..1]);
        let due = store.outbox_next_due().await.unwrap();
        match store.backend() {
            Backend::Sqlite => assert_eq!(due, Some(5_001), "claimable once the lease runs out"),
            Backend::Postgres => assert_eq!(due, Some(0), "the earliest pending not_before"),
        }
        let retry_at = NewOutboxItem {
            not_before_ms: 700,
            ..outbox("M", "later")
        };
        enqueue(&store, &[retry_at]).await;
        if store.backend() == Backend::Sqlite {
            assert_eq!(store.outbox_next_due().await.unwrap(), Some(700));
        }
        assert!(store.outbox_sent(enqueued[0], "s", "{}", 11).await.unwrap());
        assert_eq!(
            store.outbox_next_due().await.unwrap(),
            Some(0),
            "the next head"
        );
    })
    .await;
}

#[tokio::test]
async fn next_due_is_the_earliest_pending() {
    on_both(|store| async move {
        assert_eq!(
            store.outbox_next_due().await.unwrap(),
            None,
            "nothing pending"
        );
        let at = |ms, key| NewOutboxItem {
            not_before_ms: ms,
            ..outbox(key, "t")
        };
        let ids_ = enqueue(&store, &[at(300, "N1"), at(900, "N2"), at(600, "N3")]).await;
        assert_eq!(store.outbox_next_due().await.unwrap(), Some(300));
        let claimed = store.outbox_claim("s", 300, 400, 10).await.unwrap();
        assert_eq!(ids(&claimed, |i| i.id), ids_[..1]);
        assert!(store.outbox_sent(ids_[0], "s", "{}", 301).await.unwrap());
        assert_eq!(store.outbox_next_due().await.unwrap(), Some(600));
        let mut tx = store.begin().await.unwrap();
        tx.record_sent(&at(1, "N4"), "{}", 302).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            store.outbox_next_due().await.unwrap(),
            Some(600),
            "sent items do not count"
        );
    })
    .await;
}

// ---- message refs ----

#[tokio::test]
async fn message_refs_are_upserted() {
    on_both(|store| async move {
        assert_eq!(store.message_ref("incident-7").await.unwrap(), None);
        store
            .message_ref_set("incident-7", "C1", "1.1")
            .await
            .unwrap();
        store
            .message_ref_set("incident-7", "C2", "2.2")
            .await
            .unwrap();
        store
            .message_ref_set("incident-8", "C1", "3.3")
            .await
            .unwrap();
        assert_eq!(
            store.message_ref("incident-7").await.unwrap(),
            Some(MessageRef {
                channel: "C2".into(),
                ts: "2.2".into()
            })
        );
        assert_eq!(
            store.message_ref("incident-8").await.unwrap().map(|r| r.ts),
            Some("3.3".into())
        );
    })
    .await;
}

// ---- batches ----

#[tokio::test]
async fn a_batch_takes_only_the_items_its_owner_holds() {
    on_both(|store| async move {
        let mine = new_inbox(&store, "Ev1", Some(("w1", i64::MAX))).await;
        let theirs = new_inbox(&store, "Ev2", Some(("w2", i64::MAX))).await;
        let unleased = new_inbox(&store, "Ev3", None).await;
        let mut tx = store.begin().await.unwrap();
        let taken = tx
            .inbox_take(&[mine, theirs, unleased], "w1", 5)
            .await
            .unwrap();
        assert_eq!(taken, [mine]);
        // A failed handler's outcome; another one given back for a later attempt.
        tx.inbox_outcome(mine, "failed: no such machine")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let item = store.inbox_get(mine).await.unwrap().unwrap();
        assert_eq!(
            (item.state.as_str(), item.outcome.as_deref()),
            ("done", Some("failed: no such machine"))
        );
        let mut tx = store.begin().await.unwrap();
        assert!(
            tx.inbox_take(&[mine], "w1", 6).await.unwrap().is_empty(),
            "done already"
        );
        let taken = tx.inbox_take(&[theirs], "w2", 6).await.unwrap();
        assert_eq!(taken, [theirs]);
        tx.inbox_requeue(theirs, "database is locked", 1_000, 5)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let item = store.inbox_get(theirs).await.unwrap().unwrap();
        assert_eq!((item.state.as_str(), item.attempts), ("pending", 1));
        assert_eq!(item.error.as_deref(), Some("database is locked"));
        // Claimable again once due, by anyone.
        assert!(
            store
                .inbox_claim("w3", 999, 5_000, 10)
                .await
                .unwrap()
                .iter()
                .all(|i| i.id != theirs)
        );
        let claimed = store.inbox_claim("w3", 1_000, 5_000, 10).await.unwrap();
        assert!(claimed.iter().any(|i| i.id == theirs));
    })
    .await;
}

#[tokio::test]
async fn a_savepoint_undoes_one_handlers_work_and_keeps_the_rest() {
    on_both(|store| async move {
        let id = new_inbox(&store, "Ev1", Some(("w", i64::MAX))).await;
        let mut tx = store.begin().await.unwrap();
        tx.inbox_take(&[id], "w", 1).await.unwrap();
        tx.savepoint().await.unwrap();
        tx.enqueue(&outbox("C1", "kept")).await.unwrap();
        tx.release_savepoint().await.unwrap();
        tx.savepoint().await.unwrap();
        tx.enqueue(&outbox("C1", "undone")).await.unwrap();
        tx.rollback_to_savepoint().await.unwrap();
        tx.enqueue_many(&[outbox("C1", "a"), outbox("C2", "b"), outbox("C1", "c")])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let texts: Vec<String> = store
            .outbox_list(None, 10)
            .await
            .unwrap()
            .iter()
            .map(|i| {
                // `outbox()` writes `{"channel":…,"text":"…"}`.
                let after = i.payload.split("\"text\":\"").nth(1).unwrap();
                after.split('"').next().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            texts,
            ["kept", "a", "b", "c"],
            "in order, without the undone one"
        );
    })
    .await;
}

#[tokio::test]
async fn outcomes_are_recorded_together_with_their_refs() {
    on_both(|store| async move {
        let mut posted = outbox("C1", "first");
        posted.ref_key = Some("alert-1".into());
        let ids = enqueue(
            &store,
            &[
                posted,
                outbox("C2", "b"),
                outbox("C3", "c"),
                outbox("C4", "d"),
            ],
        )
        .await;
        let claimed = store.outbox_claim("s", 10, 10_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 4);
        let outcomes = vec![
            OutboxOutcome {
                id: ids[0],
                result: OutboxResult::Sent {
                    response: "{\"ok\":true,\"ts\":\"1.1\"}".into(),
                    message_ref: Some((
                        "alert-1".into(),
                        MessageRef {
                            channel: "C1".into(),
                            ts: "1.1".into(),
                        },
                    )),
                },
            },
            OutboxOutcome {
                id: ids[1],
                result: OutboxResult::Retry {
                    error: "ratelimited".into(),
                    not_before_ms: 500,
                    unconfirmed: false,
                },
            },
            OutboxOutcome {
                id: ids[2],
                result: OutboxResult::Failed {
                    error: "channel_not_found".into(),
                },
            },
            OutboxOutcome {
                id: ids[3],
                result: OutboxResult::Paced { not_before_ms: 700 },
            },
        ];
        let recorded = store.outbox_finish_many("s", &outcomes, 20).await.unwrap();
        assert_eq!(recorded, [true, true, true, true]);
        let item = |i: usize| {
            let store = store.clone();
            let id = ids[i];
            async move { store.outbox_get(id).await.unwrap().unwrap() }
        };
        let sent = item(0).await;
        assert_eq!(sent.state, "sent");
        assert_eq!(
            sent.response.as_deref(),
            Some("{\"ok\":true,\"ts\":\"1.1\"}")
        );
        assert_eq!(
            store.message_ref("alert-1").await.unwrap().unwrap().ts,
            "1.1"
        );
        let retried = item(1).await;
        assert_eq!(
            (
                retried.state.as_str(),
                retried.attempts,
                retried.not_before_ms
            ),
            ("pending", 1, 500)
        );
        assert_eq!(item(2).await.state, "failed");
        let paced = item(3).await;
        assert_eq!(
            (paced.state.as_str(), paced.attempts, paced.not_before_ms),
            ("pending", 0, 700),
            "pacing is not an attempt"
        );
        // Another owner's outcome changes nothing.
        let again = store
            .outbox_finish_many("other", &outcomes[1..2], 30)
            .await
            .unwrap();
        assert_eq!(again, [false]);
    })
    .await;
}

#[tokio::test]
async fn a_wave_of_replies_is_recorded_only_where_its_sender_holds_the_call() {
    on_both(|store| async move {
        // Sent calls with no message ref: the store records them in one statement, outside a
        // transaction; the lease check must hold there as well.
        let ids = enqueue(
            &store,
            &[outbox("C1", "a"), outbox("C2", "b"), outbox("C3", "c")],
        )
        .await;
        assert_eq!(
            store.outbox_claim("s", 10, 10_000, 2).await.unwrap().len(),
            2
        );
        let sent = |id: i64| OutboxOutcome {
            id,
            result: OutboxResult::Sent {
                response: format!("{{\"ok\":true,\"n\":{id}}}"),
                message_ref: None,
            },
        };
        let recorded = store
            .outbox_finish_many("s", &[sent(ids[0]), sent(ids[1]), sent(ids[2])], 20)
            .await
            .unwrap();
        assert_eq!(recorded, [true, true, false], "the third was never claimed");
        for (i, state) in [(0, "sent"), (1, "sent"), (2, "pending")] {
            let item = store.outbox_get(ids[i]).await.unwrap().unwrap();
            assert_eq!(item.state, state);
        }
        let first = store.outbox_get(ids[0]).await.unwrap().unwrap();
        assert_eq!(
            first.response,
            Some(format!("{{\"ok\":true,\"n\":{}}}", ids[0]))
        );
        // Recorded again (a retry of the write), nothing changes and nothing is reported.
        let again = store
            .outbox_finish_many("s", &[sent(ids[0])], 30)
            .await
            .unwrap();
        assert_eq!(again, [false]);
        assert_eq!(
            store.outbox_finish_many("s", &[], 30).await.unwrap(),
            Vec::<bool>::new()
        );
    })
    .await;
}

#[tokio::test]
async fn a_wave_of_replies_says_whether_it_let_more_calls_go() {
    on_both(|store| async move {
        // C1 has a second call behind its first; C2 and C3 one call each.
        let ids = enqueue(
            &store,
            &[
                outbox("C1", "a"),
                outbox("C1", "b"),
                outbox("C2", "c"),
                outbox("C3", "d"),
            ],
        )
        .await;
        let claimed = store.outbox_claim("s", 10, 10_000, 10).await.unwrap();
        assert_eq!(ids_of(&claimed), [ids[0], ids[2], ids[3]]);
        let sent = |id: i64| OutboxOutcome {
            id,
            result: OutboxResult::Sent {
                response: "{\"ok\":true}".into(),
                message_ref: None,
            },
        };
        let wave = store
            .outbox_finish_wave("s", &[sent(ids[2]), sent(ids[3])], 20)
            .await
            .unwrap();
        assert_eq!(wave.recorded, [true, true]);
        assert!(!wave.more, "each was the last of its line");
        let wave = store
            .outbox_finish_wave("s", &[sent(ids[0])], 20)
            .await
            .unwrap();
        assert!(wave.more, "C1's second call is due now");
        let claimed = store.outbox_claim("s", 30, 10_000, 10).await.unwrap();
        assert_eq!(ids_of(&claimed), [ids[1]]);
        let retry = OutboxOutcome {
            id: ids[1],
            result: OutboxResult::Retry {
                error: "ratelimited".into(),
                not_before_ms: 40,
                unconfirmed: false,
            },
        };
        let wave = store.outbox_finish_wave("s", &[retry], 30).await.unwrap();
        assert_eq!(wave.recorded, [true]);
        assert!(wave.more, "a retry changes what is due");
    })
    .await;
}

fn ids_of(items: &[switchyard_store::OutboxItem]) -> Vec<i64> {
    ids(items, |i| i.id)
}

#[tokio::test]
async fn a_large_batch_is_taken_and_its_outcomes_recorded_across_statements() {
    on_both(|store| async move {
        // More rows than one statement holds, so every batch statement is split.
        let n = 1_100;
        let items: Vec<NewInboxItem> = (0..n).map(|i| inbox(&format!("Ev{i}"))).collect();
        let mut ids = new_inbox_many(&store, &items, "w").await;
        let theirs = new_inbox(&store, "Other", Some(("w2", i64::MAX))).await;
        ids.push(theirs);
        let mut tx = store.begin().await.unwrap();
        let taken = tx.inbox_take(&ids, "w", 5).await.unwrap();
        assert_eq!(taken.len(), n, "all but the other owner's");
        assert!(!taken.contains(&theirs));
        let calls: Vec<NewOutboxItem> = (0..n)
            .map(|i| {
                let mut call = outbox(&format!("C{i}"), &format!("t{i}"));
                call.ref_key = Some(format!("r{}", i % 700));
                call
            })
            .collect();
        tx.enqueue_many(&calls).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.inbox_counts().await.unwrap(), counts(1, n as i64, 0));
        let claimed = store
            .outbox_claim("s", 10, 10_000, n as u32 + 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), n);
        for (i, item) in claimed.iter().enumerate() {
            assert_eq!(item.ordering_key, format!("C{i}"), "in order");
            assert_eq!(item.payload, calls[i].payload);
        }
        let outcomes: Vec<OutboxOutcome> = claimed
            .iter()
            .enumerate()
            .map(|(i, item)| OutboxOutcome {
                id: item.id,
                result: OutboxResult::Sent {
                    response: format!("{{\"ok\":true,\"ts\":\"{i}.0\"}}"),
                    message_ref: item.ref_key.clone().map(|key| {
                        (
                            key,
                            MessageRef {
                                channel: item.ordering_key.clone(),
                                ts: format!("{i}.0"),
                            },
                        )
                    }),
                },
            })
            .collect();
        let recorded = store.outbox_finish_many("s", &outcomes, 20).await.unwrap();
        assert!(recorded.iter().all(|r| *r));
        for (i, item) in claimed.iter().enumerate() {
            let sent = store.outbox_get(item.id).await.unwrap().unwrap();
            assert_eq!(sent.state, "sent");
            assert_eq!(
                sent.response.as_deref(),
                Some(format!("{{\"ok\":true,\"ts\":\"{i}.0\"}}").as_str()),
                "each response to its own row"
            );
        }
        // The last post of a ref wins: r0 was posted by rows 0 and 700.
        let r0 = store.message_ref("r0").await.unwrap().unwrap();
        assert_eq!((r0.channel.as_str(), r0.ts.as_str()), ("C700", "700.0"));
        let r699 = store.message_ref("r699").await.unwrap().unwrap();
        assert_eq!((r699.channel.as_str(), r699.ts.as_str()), ("C699", "699.0"));
    })
    .await;
}

#[tokio::test]
async fn batches_of_any_size_write_exactly_their_rows() {
    on_both(|store| async move {
        // Batch statements are built for a power of two of rows (SQLite pads the rest with
        // rows it does not insert, and `IN` lists with the last id again): every size in
        // between must still write its own rows and nothing else.
        let sizes = [1usize, 3, 5, 7, 9, 31, 33];
        let mut next = 0;
        for n in sizes {
            let items: Vec<NewInboxItem> =
                (next..next + n).map(|i| inbox(&format!("S{i}"))).collect();
            next += n;
            let ids = new_inbox_many(&store, &items, "w").await;
            assert_eq!(ids.len(), n);
            let mut tx = store.begin().await.unwrap();
            let mut taken = tx.inbox_take(&ids[..n - n / 2], "w", 5).await.unwrap();
            taken.sort_unstable();
            assert_eq!(taken, ids[..n - n / 2], "the ones asked for, once each");
            let calls: Vec<NewOutboxItem> = (0..n)
                .map(|i| outbox(&format!("K{n}-{i}"), &format!("t{i}")))
                .collect();
            let claimed = tx
                .enqueue_many_claimed(&calls, "s", 10, 10_000, n)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let claimed = if claimed.is_empty() {
                // PostgreSQL claims after the commit.
                store.outbox_claim("s", 10, 10_000, n as u32).await.unwrap()
            } else {
                claimed
            };
            assert_eq!(claimed.len(), n);
            let sent: Vec<OutboxOutcome> = claimed[..n - n / 2]
                .iter()
                .map(|item| OutboxOutcome {
                    id: item.id,
                    result: OutboxResult::Sent {
                        response: format!("{{\"ok\":true,\"id\":{}}}", item.id),
                        message_ref: None,
                    },
                })
                .collect();
            let recorded = store.outbox_finish_many("s", &sent, 20).await.unwrap();
            assert!(recorded.iter().all(|r| *r));
            for item in &claimed[..n - n / 2] {
                let row = store.outbox_get(item.id).await.unwrap().unwrap();
                assert_eq!(row.state, "sent");
                assert_eq!(
                    row.response,
                    Some(format!("{{\"ok\":true,\"id\":{}}}", item.id))
                );
            }
        }
        let taken = sizes.iter().map(|n| n - n / 2).sum::<usize>() as i64;
        let all = sizes.iter().sum::<usize>() as i64;
        assert_eq!(
            store.inbox_counts().await.unwrap(),
            counts(all - taken, taken, 0)
        );
        assert_eq!(
            store.outbox_counts().await.unwrap(),
            counts(all - taken, taken, 0)
        );
    })
    .await;
}

#[tokio::test]
async fn a_batch_insert_reports_duplicates_within_and_across_batches() {
    on_both(|store| async move {
        let first = store
            .inbox_insert_many(&[inbox("A"), inbox("B"), inbox("A")], None)
            .await
            .unwrap();
        let (InboxInsert::New(a), InboxInsert::New(b)) = (first[0], first[1]) else {
            panic!("{first:?}");
        };
        assert_eq!(first[2], InboxInsert::Duplicate(a));
        let second = store
            .inbox_insert_many(&[inbox("B"), inbox("C")], None)
            .await
            .unwrap();
        assert_eq!(second[0], InboxInsert::Duplicate(b));
        assert!(matches!(second[1], InboxInsert::New(c) if c > b));
        // More than one statement's worth.
        let many: Vec<NewInboxItem> = (0..1_200).map(|i| inbox(&format!("M{i}"))).collect();
        let results = store.inbox_insert_many(&many, None).await.unwrap();
        assert!(results.iter().all(|r| matches!(r, InboxInsert::New(_))));
        assert_eq!(store.inbox_counts().await.unwrap().pending, 1_203);
    })
    .await;
}

#[tokio::test]
async fn a_pending_call_for_a_ref_takes_the_latest_content_until_a_sender_holds_it() {
    on_both(|store| async move {
        let edit = |text: &str| NewOutboxItem {
            method: "chat.update".into(),
            ref_key: Some("summary".into()),
            ..outbox("C1", text)
        };
        let ids_ = enqueue(&store, &[outbox("C1", "first"), edit("v1")]).await;

        // Waiting behind the post: replaced in place, keeping its position.
        let mut tx = store.begin().await.unwrap();
        assert!(
            tx.outbox_replace_pending("chat.update", "summary", "{\"text\":\"v2\"}", 10)
                .await
                .unwrap()
        );
        assert!(
            !tx.outbox_replace_pending("chat.postMessage", "summary", "{}", 10)
                .await
                .unwrap(),
            "another method's call is not this one"
        );
        assert!(
            !tx.outbox_replace_pending("chat.update", "other", "{}", 10)
                .await
                .unwrap()
        );
        assert_eq!(tx.outbox_pending_on("C1").await.unwrap(), 2);
        assert_eq!(tx.outbox_pending_on("C2").await.unwrap(), 0);
        tx.commit().await.unwrap();
        let item = store.outbox_get(ids_[1]).await.unwrap().unwrap();
        assert_eq!(item.payload, "{\"text\":\"v2\"}");
        assert_eq!(store.outbox_counts().await.unwrap(), counts(2, 0, 0));

        // Claimed by a sender (going out as it is): not replaced; the caller queues anew.
        let post = store.outbox_claim("s", 20, 10_000, 10).await.unwrap();
        store.outbox_sent(post[0].id, "s", "{}", 21).await.unwrap();
        let claimed = store.outbox_claim("s", 30, 10_000, 10).await.unwrap();
        assert_eq!(ids(&claimed, |i| i.id), ids_[1..]);
        let mut tx = store.begin().await.unwrap();
        assert!(
            !tx.outbox_replace_pending("chat.update", "summary", "{\"text\":\"v3\"}", 40)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        // Its lease ran out (its sender died): it can take the latest content again.
        let mut tx = store.begin().await.unwrap();
        assert!(
            tx.outbox_replace_pending("chat.update", "summary", "{\"text\":\"v4\"}", 20_000)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        assert_eq!(
            store.outbox_get(ids_[1]).await.unwrap().unwrap().payload,
            "{\"text\":\"v4\"}"
        );
        // Sent: nothing pending to replace.
        let again = store.outbox_claim("s", 20_001, 30_000, 10).await.unwrap();
        store
            .outbox_sent(again[0].id, "s", "{}", 20_002)
            .await
            .unwrap();
        let mut tx = store.begin().await.unwrap();
        assert!(
            !tx.outbox_replace_pending("chat.update", "summary", "{}", 20_003)
                .await
                .unwrap()
        );
    })
    .await;
}
