//! Turns at SQLite's one writer, handed out in order, with the inbox first.
//!
//! Every write in this process waits for its turn here instead of in SQLite's busy handler,
//! whose sleeps (1 ms, 2 ms, 5 ms…) were what made acks slow under load. The inbox's group
//! commit — what every ack waits for — goes before any other writer still waiting, so an ack
//! waits at most for the one transaction under way.
//!
//! A turn can carry the writing connection on to the next turn ([`Turn::kept`]), so it never
//! goes back to the pool between writes: the pool tests a returned connection with a round trip
//! to SQLite's thread, from a task of its own, and the next writer waits for that.

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

#[derive(Debug)]
struct Queue<C> {
    held: bool,
    acks: VecDeque<oneshot::Sender<()>>,
    background: VecDeque<oneshot::Sender<()>>,
    /// What the last turn kept for the next one.
    kept: Option<C>,
}

/// The turn-giver; cheap to clone. `C` is what a turn may keep for the next (the writing
/// connection).
#[derive(Debug)]
pub(crate) struct Turns<C> {
    queue: Arc<Mutex<Queue<C>>>,
}

impl<C> Clone for Turns<C> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<C> Default for Turns<C> {
    fn default() -> Self {
        Self {
            queue: Arc::new(Mutex::new(Queue {
                held: false,
                acks: VecDeque::new(),
                background: VecDeque::new(),
                kept: None,
            })),
        }
    }
}

/// A turn, held until dropped.
#[derive(Debug)]
pub(crate) struct Turn<C> {
    queue: Arc<Mutex<Queue<C>>>,
    /// What the turn before kept, taken out; what is here when the turn ends is kept for the
    /// next one.
    pub(crate) kept: Option<C>,
}

impl<C> Turns<C> {
    pub(crate) async fn take(&self, priority: Priority) -> Turn<C> {
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
            let mut waiting = Waiting {
                wait: Some(wait),
                queue: self.queue.clone(),
            };
            if let Some(wait) = waiting.wait.as_mut() {
                let _ = wait.await;
            }
            // Ours now: from here the `Turn` releases it.
            waiting.wait = None;
        }
        let kept = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .kept
            .take();
        Turn {
            queue: self.queue.clone(),
            kept,
        }
    }
}

/// A waiter's end of the hand-over, while its `take` waits. If the caller gives up (drops the
/// future) after the turn was handed to it but before it ran, the turn is passed on here: it
/// would otherwise be held for ever, and every write of the process would wait behind it.
struct Waiting<C> {
    wait: Option<oneshot::Receiver<()>>,
    queue: Arc<Mutex<Queue<C>>>,
}

impl<C> Drop for Waiting<C> {
    fn drop(&mut self) {
        let Some(mut wait) = self.wait.take() else {
            return;
        };
        // Closed, no turn can be handed to it any more; one handed before is still there.
        wait.close();
        if wait.try_recv().is_ok() {
            let kept = self
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .kept
                .take();
            drop(Turn {
                queue: self.queue.clone(),
                kept,
            });
        }
    }
}

impl<C> Drop for Turn<C> {
    fn drop(&mut self) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.kept = self.kept.take();
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
        let turns = Turns::<()>::default();
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
        let turns = Turns::<()>::default();
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

    #[tokio::test]
    async fn a_waiter_dropped_after_its_turn_came_passes_it_on() {
        use std::future::Future;
        let turns = Turns::<u32>::default();
        let mut first = turns.take(Priority::Background).await;
        first.kept = Some(7);
        // Queued (polled once), handed the turn, then dropped without running.
        let mut waiter = Box::pin(turns.take(Priority::Ack));
        std::future::poll_fn(|cx| {
            assert!(waiter.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        drop(first);
        drop(waiter);
        // Without the hand-on this waits for ever (hence the guard, not a timing check).
        let mut next = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            turns.take(Priority::Background),
        )
        .await
        .expect("the turn was never released");
        assert_eq!(next.kept.take(), Some(7));
    }

    #[tokio::test]
    async fn what_a_turn_keeps_goes_to_the_next() {
        let turns = Turns::<u32>::default();
        let mut first = turns.take(Priority::Background).await;
        assert_eq!(first.kept, None);
        first.kept = Some(7);
        let next = {
            let turns = turns.clone();
            tokio::spawn(async move { turns.take(Priority::Ack).await.kept.take() })
        };
        while turns.queue.lock().unwrap().acks.is_empty() {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert_eq!(next.await.unwrap(), Some(7));
        // That turn took it and kept nothing.
        assert_eq!(turns.take(Priority::Background).await.kept, None);
    }
}
