//! Turns at SQLite's one writer, handed out in order, with the inbox first.
//!
//! Every write in this process waits for its turn here instead of in SQLite's busy handler,
//! whose sleeps (1 ms, 2 ms, 5 ms…) were what made acks slow under load. The inbox's group
//! commit — what every ack waits for — goes before any other writer still waiting, so an ack
//! waits at most for the one transaction under way.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Who is asking for a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// The inbox's commit: someone is waiting for an ack.
    Ack,
    /// Everything else (handlers, the sender, the workers).
    Background,
}

#[derive(Debug, Default)]
struct Queue {
    held: bool,
    acks: VecDeque<oneshot::Sender<()>>,
    background: VecDeque<oneshot::Sender<()>>,
}

/// The turn-giver; cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Turns {
    queue: Arc<Mutex<Queue>>,
}

/// A turn, held until dropped.
#[derive(Debug)]
pub(crate) struct Turn {
    queue: Arc<Mutex<Queue>>,
}

impl Turns {
    pub(crate) async fn take(&self, priority: Priority) -> Turn {
        let waiting = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if !queue.held {
                queue.held = true;
                None
            } else {
                let (give, wait) = oneshot::channel();
                match priority {
                    Priority::Ack => queue.acks.push_back(give),
                    Priority::Background => queue.background.push_back(give),
                }
                Some(wait)
            }
        };
        if let Some(wait) = waiting {
            // The turn is handed over by the one dropping it (`held` stays true).
            let _ = wait.await;
        }
        Turn {
            queue: self.queue.clone(),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        // Hand the turn to the next waiter still there (one that gave up has dropped its end).
        while let Some(next) = queue
            .acks
            .pop_front()
            .or_else(|| queue.background.pop_front())
        {
            if next.send(()).is_ok() {
                return;
            }
        }
        queue.held = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acks_go_before_background_writers_waiting() {
        let turns = Turns::default();
        let first = turns.take(Priority::Background).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [("background", Priority::Background), ("ack", Priority::Ack)] {
            let (turns, order) = (turns.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = turns.take(priority).await;
                order.lock().unwrap().push(name);
            }));
            tokio::task::yield_now().await;
        }
        // Both are queued behind `first`.
        let queued = || {
            let queue = turns.queue.lock().unwrap();
            queue.acks.len() + queue.background.len()
        };
        while queued() < 2 {
            tokio::task::yield_now().await;
        }
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["ack", "background"]);
        assert!(!turns.queue.lock().unwrap().held);
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_is_skipped() {
        let turns = Turns::default();
        let first = turns.take(Priority::Background).await;
        let gave_up = tokio::time::timeout(
            std::time::Duration::from_millis(1),
            turns.take(Priority::Ack),
        )
        .await;
        assert!(gave_up.is_err());
        drop(first);
        let _again = turns.take(Priority::Background).await;
    }
}
