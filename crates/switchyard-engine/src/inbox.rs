//! Group commit for the inbox: deliveries that arrive together are committed in one
//! transaction, so the ack's cost is one disk sync shared by many, not one each.
//!
//! Each caller still waits for *its* item to be committed before it acks.

use std::time::Duration;

use switchyard_store::{InboxInsert, NewInboxItem, Store};
use tokio::sync::{mpsc, oneshot};

use crate::now_ms;
#[cfg(test)]
use crate::sender::DAY_MS;
use crate::sender::PRUNE_CHUNK;

/// At most this many deliveries share one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<InboxInsert, String>>;

/// A handle to the inbox writer task.
#[derive(Clone)]
pub struct InboxWriter {
    queue: mpsc::Sender<(NewInboxItem, Reply)>,
}

impl InboxWriter {
    /// Starts the writer; items it stores are leased to `owner` for `lease`.
    pub fn spawn(store: Store, owner: String, lease: Duration) -> Self {
        let (queue, mut rx) = mpsc::channel::<(NewInboxItem, Reply)>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut replies = Vec::new();
            while let Some((item, reply)) = rx.recv().await {
                replies.clear();
                replies.push(reply);
                let until = now_ms() + lease.as_millis() as i64;
                // The batch is what is waiting once the writer is free, not when this one
                // began to wait for it: deliveries that came in during another write's turn
                // share this commit instead of each waiting for a commit of their own.
                let gather = || {
                    let mut items = vec![item];
                    while items.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok((item, reply)) => {
                                items.push(item);
                                replies.push(reply);
                            }
                            Err(_) => break,
                        }
                    }
                    items
                };
                let inserted = store
                    .inbox_insert_gathered(gather, Some((&owner, until)))
                    .await;
                match inserted {
                    Ok(results) => {
                        for (reply, result) in replies.drain(..).zip(results) {
                            let _ = reply.send(Ok(result));
                        }
                    }
                    Err(e) => {
                        let message = e.to_string();
                        for reply in replies.drain(..) {
                            let _ = reply.send(Err(message.clone()));
                        }
                    }
                }
            }
        });
        Self { queue }
    }

    /// Commits one item (with whatever else is waiting) and says whether it was new.
    pub async fn insert(&self, item: NewInboxItem) -> Result<InboxInsert, String> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| "the inbox writer stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the inbox writer stopped".to_string())?
    }
}

/// Deletes the inbox's handled items older than `retention_days` (0 keeps them), a chunk at a
/// time, so the writer is never held long; returns how many went. Failed items stay (for an
/// operator to look into), and so do pending ones.
pub async fn prune_done(
    store: &Store,
    retention_days: u32,
    now_ms: i64,
) -> Result<u64, switchyard_store::StoreError> {
    crate::sender::prune_in_chunks(retention_days, now_ms, |cutoff| {
        store.inbox_prune_done(cutoff, PRUNE_CHUNK)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many inbox commits the store's writer has made.
    fn inbox_commits(store: &Store) -> u64 {
        let turns = store.writer_turns().expect("SQLite takes turns");
        turns
            .held
            .iter()
            .filter(|h| h.label == "inbox insert")
            .map(|h| h.counts.iter().sum::<u64>())
            .sum()
    }

    #[tokio::test]
    async fn deliveries_that_arrive_while_another_write_holds_the_writer_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("inbox.db").display());
        let store = Store::connect(&url).await.unwrap();
        let writer = InboxWriter::spawn(store.clone(), "w".into(), Duration::from_secs(30));
        let delivery = |n: usize| {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer
                    .insert(NewInboxItem {
                        dedupe_key: format!("event:E{n}"),
                        kind: "event".into(),
                        payload: "{}".into(),
                        received_at_ms: 1,
                    })
                    .await
            })
        };
        // A handlers' batch holds the writer; one delivery comes in and waits for its turn,
        // then four more.
        let held = store.begin().await.unwrap();
        let first = delivery(0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let more: Vec<_> = (1..5).map(delivery).collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        held.commit().await.unwrap();
        let mut ids = Vec::new();
        for answer in std::iter::once(first).chain(more) {
            match answer.await.unwrap().unwrap() {
                InboxInsert::New(id) => ids.push(id),
                InboxInsert::Duplicate(id) => panic!("{id} is new"),
            }
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 5, "each its own item");
        assert_eq!(
            inbox_commits(&store),
            1,
            "the four that came while the first waited went in with it"
        );
    }

    #[tokio::test]
    async fn pruning_takes_old_handled_items_in_chunks_and_keeps_the_rest() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let now = 30 * DAY_MS;
        let old = PRUNE_CHUNK as usize + 5;
        let items: Vec<NewInboxItem> = (0..old + 3)
            .map(|n| NewInboxItem {
                dedupe_key: format!("event:E{n}"),
                kind: "event".into(),
                payload: "{}".into(),
                received_at_ms: 1,
            })
            .collect();
        let ids: Vec<i64> = store
            .inbox_insert_many(&items, Some(("w", i64::MAX)))
            .await
            .unwrap()
            .into_iter()
            .map(|inserted| match inserted {
                InboxInsert::New(id) => id,
                InboxInsert::Duplicate(id) => panic!("{id} is new"),
            })
            .collect();
        // All but three handled ten days ago; one yesterday; one failed long ago; one pending.
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            tx.inbox_take(&ids[..old], "w", now - 10 * DAY_MS)
                .await
                .unwrap()
                .len(),
            old
        );
        tx.inbox_take(&ids[old..old + 1], "w", now - DAY_MS)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        store
            .inbox_retry(ids[old + 1], "w", "broken", 0, 1)
            .await
            .unwrap();
        assert_eq!(prune_done(&store, 0, now).await.unwrap(), 0, "0 keeps all");
        assert_eq!(prune_done(&store, 7, now).await.unwrap(), old as u64);
        let counts = store.inbox_counts().await.unwrap();
        assert_eq!(
            (counts.pending, counts.done_or_sent, counts.failed),
            (1, 1, 1)
        );
    }
}
