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
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let until = now_ms() + lease.as_millis() as i64;
                match store.inbox_insert_many(&items, Some((&owner, until))).await {
                    Ok(results) => {
                        for (reply, result) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(result));
                        }
                    }
                    Err(e) => {
                        let message = e.to_string();
                        for reply in replies {
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
