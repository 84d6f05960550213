//! Sync routes' stored replies (`Idempotency-Key`), on SQLite and (with
//! `SWITCHYARD_TEST_POSTGRES_URL`) PostgreSQL: stored with the change they answer or not at
//! all, once per key, pruned by age.

mod support;

use support::on_both;
use switchyard_store::{
    ActorKind, AuditFilter, AuditRecord, Backend, Outcome, Store, SyncReply, Via,
};

fn reply(fingerprint: &str, body: &str) -> SyncReply {
    SyncReply {
        fingerprint: fingerprint.into(),
        status: 201,
        body: body.into(),
    }
}

fn change(object: &str) -> AuditRecord {
    AuditRecord {
        at_ms: 10,
        actor_kind: ActorKind::Token,
        actor: "7".into(),
        via: Via::Api,
        action: "alerts.fire".into(),
        object: object.into(),
        outcome: Outcome::Ok,
        detail: String::new(),
    }
}

async fn changes(store: &Store) -> usize {
    store
        .audit_query(&AuditFilter {
            action_prefix: Some("alerts.fire".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_reply_is_stored_with_its_change_or_not_at_all() {
    on_both(|store| async move {
        // Rolled back (dropped): neither the change nor the reply.
        let mut tx = store.begin().await.unwrap();
        tx.audit(&change("a")).await.unwrap();
        assert!(
            tx.sync_reply_put("k1", &reply("f1", "{\"ok\":true}"), 10)
                .await
                .unwrap()
        );
        drop(tx);
        assert_eq!(store.sync_reply("k1").await.unwrap(), None);
        assert_eq!(changes(&store).await, 0);

        let mut tx = store.begin().await.unwrap();
        tx.audit(&change("a")).await.unwrap();
        assert!(
            tx.sync_reply_put("k1", &reply("f1", "{\"ok\":true}"), 10)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        assert_eq!(
            store.sync_reply("k1").await.unwrap(),
            Some(reply("f1", "{\"ok\":true}"))
        );
        assert_eq!(changes(&store).await, 1);

        // Once per key: a second put (another body even) changes nothing.
        let mut tx = store.begin().await.unwrap();
        assert!(
            !tx.sync_reply_put("k1", &reply("f2", "{}"), 11)
                .await
                .unwrap()
        );
        tx.commit().await.unwrap();
        assert_eq!(
            store.sync_reply("k1").await.unwrap().unwrap().fingerprint,
            "f1"
        );
        assert_eq!(store.sync_reply("k2").await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn of_two_requests_with_one_key_in_flight_the_second_sees_the_first() {
    on_both(|store| async move {
        // SQLite has one writer: the second transaction begins after the first, so there is
        // nothing concurrent to see there.
        if store.backend() != Backend::Postgres {
            return;
        }
        let mut first = store.begin().await.unwrap();
        assert!(
            first
                .sync_reply_put("k", &reply("f", "1"), 10)
                .await
                .unwrap()
        );
        let second = tokio::spawn({
            let store = store.clone();
            async move {
                let mut tx = store.begin().await.unwrap();
                // Waits for the first to commit, then finds its row.
                tx.sync_reply_put("k", &reply("f", "2"), 11).await.unwrap()
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        first.commit().await.unwrap();
        assert!(!second.await.unwrap(), "the second insert stored nothing");
        assert_eq!(store.sync_reply("k").await.unwrap().unwrap().body, "1");
    })
    .await;
}

#[tokio::test]
async fn old_replies_are_pruned() {
    on_both(|store| async move {
        let mut tx = store.begin().await.unwrap();
        tx.sync_reply_put("old", &reply("f", "1"), 100)
            .await
            .unwrap();
        tx.sync_reply_put("new", &reply("f", "2"), 200)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.sync_replies_prune(150).await.unwrap(), 1);
        assert_eq!(store.sync_reply("old").await.unwrap(), None);
        assert!(store.sync_reply("new").await.unwrap().is_some());
    })
    .await;
}
