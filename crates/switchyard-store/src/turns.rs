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
//!
//! How long writers wait for a turn (by priority) and hold it (by operation) is counted here,
//! under the queue's own lock ([`Turns::times`], on `/metrics`): what an ack waits for is
//! whatever holds the turn, so these say which write makes the acks' tail.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Who is asking for a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// The inbox's commit: someone is waiting for an ack.
    Ack,
    /// Everything else (handlers, the sender, the workers).
    Background,
}

impl Priority {
    fn label(self) -> &'static str {
        match self {
            Priority::Ack => "ack",
            Priority::Background => "background",
        }
    }
}

/// Upper bounds of the turn histograms' buckets, in seconds (finer than the ack histogram's:
/// a turn is usually well under a millisecond).
pub const TURN_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// Times of one kind of turn: how many fell in each of [`TURN_BUCKETS`] (not cumulative; the
/// last count is past the last bound) and their sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnHistogram {
    /// The priority (waits) or the operation (holds).
    pub label: &'static str,
    /// One count per bucket of [`TURN_BUCKETS`], then the count past it.
    pub counts: [u64; TURN_BUCKETS.len() + 1],
    /// All the times together.
    pub sum: Duration,
}

impl TurnHistogram {
    fn new(label: &'static str) -> Self {
        Self {
            label,
            counts: [0; TURN_BUCKETS.len() + 1],
            sum: Duration::ZERO,
        }
    }

    fn observe(&mut self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = TURN_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(TURN_BUCKETS.len());
        self.counts[bucket] += 1;
        self.sum += took;
    }
}

/// How long this process's writers waited for SQLite's turn and held it, since the store
/// was opened (see [`crate::Store::writer_turns`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterTurns {
    /// From asking to getting the turn, by priority (`ack`: the inbox's commit).
    pub waited: Vec<TurnHistogram>,
    /// From getting the turn to giving it up, by operation (`transaction` for every
    /// [`crate::Tx`]: a batch of handlers, a sync route's, a tick's).
    pub held: Vec<TurnHistogram>,
}

impl WriterTurns {
    fn observe(list: &mut Vec<TurnHistogram>, label: &'static str, took: Duration) {
        match list.iter_mut().find(|h| h.label == label) {
            Some(histogram) => histogram.observe(took),
            None => {
                let mut histogram = TurnHistogram::new(label);
                histogram.observe(took);
                list.push(histogram);
            }
        }
    }
}

#[derive(Debug)]
struct Queue<C> {
    held: bool,
    acks: VecDeque<oneshot::Sender<()>>,
    background: VecDeque<oneshot::Sender<()>>,
    /// What the last turn kept for the next one.
    kept: Option<C>,
    times: WriterTurns,
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
                times: WriterTurns::default(),
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
    /// What holds it, and since when (for [`WriterTurns::held`]); `None` for a turn only
    /// passed on.
    holder: Option<(&'static str, Instant)>,
}

impl<C> Turns<C> {
    /// Waits for the turn, for the operation `op` (how long it holds the turn is counted
    /// under that name).
    pub(crate) async fn take(&self, priority: Priority, op: &'static str) -> Turn<C> {
        let asked = Instant::now();
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
        let (kept, since) = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            WriterTurns::observe(&mut queue.times.waited, priority.label(), now - asked);
            (queue.kept.take(), now)
        };
        Turn {
            queue: self.queue.clone(),
            kept,
            holder: Some((op, since)),
        }
    }

    /// The turns' times so far.
    pub(crate) fn times(&self) -> WriterTurns {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .times
            .clone()
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
                holder: None,
            });
        }
    }
}

impl<C> Drop for Turn<C> {
    fn drop(&mut self) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.kept = self.kept.take();
        if let Some((op, since)) = self.holder {
            WriterTurns::observe(&mut queue.times.held, op, since.elapsed());
        }
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
        let first = turns.take(Priority::Background, "test").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [("background", Priority::Background), ("ack", Priority::Ack)] {
            let (turns, order) = (turns.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = turns.take(priority, "test").await;
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
    async fn waits_are_counted_by_priority_and_holds_by_operation() {
        let turns = Turns::<()>::default();
        drop(turns.take(Priority::Ack, "inbox insert").await);
        drop(turns.take(Priority::Background, "outbox claim").await);
        drop(turns.take(Priority::Background, "outbox claim").await);
        let times = turns.times();
        let count = |list: &[TurnHistogram], label| {
            list.iter()
                .find(|h| h.label == label)
                .map_or(0, |h| h.counts.iter().sum::<u64>())
        };
        assert_eq!(count(&times.waited, "ack"), 1);
        assert_eq!(count(&times.waited, "background"), 2);
        assert_eq!(count(&times.held, "inbox insert"), 1);
        assert_eq!(count(&times.held, "outbox claim"), 2);
        assert_eq!(times.held.len(), 2);
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_is_skipped() {
        let turns = Turns::<()>::default();
        let first = turns.take(Priority::Background, "test").await;
        let gave_up = tokio::time::timeout(
            std::time::Duration::from_millis(1),
            turns.take(Priority::Ack, "test"),
        )
        .await;
        assert!(gave_up.is_err());
        drop(first);
        let _again = turns.take(Priority::Background, "test").await;
    }

    #[tokio::test]
    async fn a_waiter_dropped_after_its_turn_came_passes_it_on() {
        use std::future::Future;
        let turns = Turns::<u32>::default();
        let mut first = turns.take(Priority::Background, "test").await;
        first.kept = Some(7);
        // Queued (polled once), handed the turn, then dropped without running.
        let mut waiter = Box::pin(turns.take(Priority::Ack, "test"));
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
            turns.take(Priority::Background, "test"),
        )
        .await
        .expect("the turn was never released");
        assert_eq!(next.kept.take(), Some(7));
    }

    #[tokio::test]
    async fn what_a_turn_keeps_goes_to_the_next() {
        let turns = Turns::<u32>::default();
        let mut first = turns.take(Priority::Background, "test").await;
        assert_eq!(first.kept, None);
        first.kept = Some(7);
        let next = {
            let turns = turns.clone();
            tokio::spawn(async move { turns.take(Priority::Ack, "test").await.kept.take() })
        };
        while turns.queue.lock().unwrap().acks.is_empty() {
            tokio::task::yield_now().await;
        }
        drop(first);
        assert_eq!(next.await.unwrap(), Some(7));
        // That turn took it and kept nothing.
        assert_eq!(turns.take(Priority::Background, "test").await.kept, None);
    }
}
