//! Group commit for the inbox: deliveries that arrive together are committed in one
//! transaction, so the ack's cost is one disk sync shared by many, not one each.
//!
//! Each caller still waits for *its* item to be committed before it acks.

use std::time::Duration;

use switchyard_store::{InboxInsert, NewInboxItem, Store};
use tokio::sync::{mpsc, oneshot};

use crate::now_ms;

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
