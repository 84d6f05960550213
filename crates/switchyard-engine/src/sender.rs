//! outbox → Slack. The only place Switchyard calls Slack's Web API from (but for modals, which
//! cannot wait).
//!
//! Claims the head of each ordering key (so per-channel order holds), paces calls the way Slack
//! limits them (`chat.postMessage` about one a second per channel with a small burst, other
//! methods by tier), waits out 429s for as long as `Retry-After` says, retries 5xx, timeouts
//! and resets with backoff and jitter, and gives up only on permanent errors, which it records.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use switchyard_store::{MessageRef, OutboxItem, OutboxOutcome, OutboxResult, Store};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::now_ms;
use crate::slack::{CallError, SlackApi};

/// Calls in flight at once, across ordering keys.
const MAX_IN_FLIGHT: usize = 128;
/// Outcomes recorded in one transaction at most.
const MAX_OUTCOMES: usize = 512;
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Slack's limits as (per minute, burst).
fn limit_for(method: &str) -> (f64, f64) {
    match method {
        "chat.postMessage" => (60.0, 3.0),
        "chat.update" | "chat.delete" | "reactions.add" | "conversations.history" => (50.0, 12.0),
        "views.open" | "views.update" | "views.push" | "views.publish" | "chat.postEphemeral" => {
            (100.0, 25.0)
        }
        "conversations.create" | "conversations.archive" | "conversations.setTopic" => (20.0, 5.0),
        // response_url and webhooks: about one a second per URL.
        _ => (60.0, 3.0),
    }
}

/// Posts are limited per channel (and response URLs per URL); everything else per method.
fn bucket_key(method: &str, key: &str) -> String {
    if matches!(method, "chat.postMessage" | "response_url" | "webhook") {
        format!("{method}:{key}")
    } else {
        method.to_string()
    }
}

/// Token buckets for pacing, keyed by method and ordering key.
#[derive(Default)]
struct Pacer {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Pacer {
    /// How long to wait before this call may go; takes its token when it may.
    fn reserve(&self, method: &str, key: &str) -> Duration {
        let (per_minute, burst) = limit_for(method);
        let rate = per_minute / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, last) = buckets
            .entry(bucket_key(method, key))
            .or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        // Always take the token; a negative balance is the wait for the calls already promised.
        *tokens -= 1.0;
        if *tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*tokens / rate)
        }
    }

    /// Gives back the token [`Pacer::reserve`] took, for a call that was not made.
    fn release(&self, method: &str, key: &str) {
        let (_, burst) = limit_for(method);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((tokens, _)) = buckets.get_mut(&bucket_key(method, key)) {
            *tokens = (*tokens + 1.0).min(burst);
        }
    }

    /// After a call of `flight` (sent to answered): Slack counted it when it arrived, up to
    /// `flight` after this bucket did, so the refill of that time is taken back. Otherwise a
    /// slow call followed by a fast one arrives closer together than the limit allows (a 429).
    fn settle(&self, method: &str, key: &str, flight: Duration) {
        let (per_minute, _) = limit_for(method);
        let rate = per_minute / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((tokens, _)) = buckets.get_mut(&bucket_key(method, key)) {
            *tokens -= flight.as_secs_f64() * rate;
        }
    }

    /// After a 429: nothing more for this bucket until `retry_after` has passed.
    fn hold(&self, method: &str, key: &str, retry_after: Duration) {
        let (per_minute, _) = limit_for(method);
        let rate = per_minute / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let entry = buckets.entry(bucket_key(method, key)).or_insert((0.0, now));
        *entry = ((-retry_after.as_secs_f64() * rate).min(entry.0), now);
    }
}

fn backoff(attempts: i32) -> Duration {
    let base = Duration::from_millis(500) * 2u32.saturating_pow(attempts.clamp(0, 16) as u32);
    let capped = base.min(MAX_BACKOFF);
    let jitter = rand::rng().random_range(0.75..1.25);
    capped.mul_f64(jitter)
}

pub struct Sender {
    store: Store,
    slack: SlackApi,
    owner: String,
    lease: Duration,
    pacer: Pacer,
    slots: Arc<Semaphore>,
    /// Finished calls, on their way to the outcome writer.
    outcomes: mpsc::UnboundedSender<OutboxOutcome>,
}

impl Sender {
    /// The sender, and the outcome writer it reports to (run it with [`record_outcomes`]).
    pub fn new(
        store: Store,
        slack: SlackApi,
        owner: String,
        lease: Duration,
    ) -> (Self, mpsc::UnboundedReceiver<OutboxOutcome>) {
        let (outcomes, finished) = mpsc::unbounded_channel();
        let sender = Self {
            store,
            slack,
            owner,
            lease,
            pacer: Pacer::default(),
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            outcomes,
        };
        (sender, finished)
    }

    /// Sends until `stop` fires; `ready` wakes it when something was queued or a call's
    /// outcome was recorded (which may let the next call of its key go).
    pub async fn run(self: Arc<Self>, ready: Arc<Notify>, poll: Duration, stop: CancellationToken) {
        loop {
            let (claimed, asked) = self.claim().await;
            if claimed > 0 && claimed == asked && self.slots.available_permits() > 0 {
                // There may be more, and room for them.
                continue;
            }
            let wait = match self.store.outbox_next_due().await {
                Ok(Some(due)) => {
                    Duration::from_millis((due - now_ms()).clamp(1, poll.as_millis() as i64) as u64)
                }
                _ => poll,
            };
            tokio::select! {
                _ = ready.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    /// Claims as many due items as there are free slots and starts sending them; returns how
    /// many it claimed and how many it asked for.
    async fn claim(self: &Arc<Self>) -> (usize, usize) {
        let mut permits = Vec::new();
        while let Ok(permit) = self.slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        let asked = permits.len();
        if asked == 0 {
            // All slots busy: a finished call's recorded outcome wakes the loop.
            return (0, 0);
        }
        let now = now_ms();
        let until = now + self.lease.as_millis() as i64;
        let items = match self
            .store
            .outbox_claim(&self.owner, now, until, asked as u32)
            .await
        {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!(error = %e, "outbox claim failed");
                return (0, asked);
            }
        };
        let claimed = items.len();
        for (item, permit) in items.into_iter().zip(permits) {
            let sender = self.clone();
            tokio::spawn(async move {
                let result = sender.send(&item).await;
                drop(permit);
                let _ = sender.outcomes.send(OutboxOutcome {
                    id: item.id,
                    result,
                });
            });
        }
        (claimed, asked)
    }

    /// Makes one call (after its pacing wait) and says how it ended.
    async fn send(&self, item: &OutboxItem) -> OutboxResult {
        let wait = self.pacer.reserve(&item.method, &item.ordering_key);
        if wait > self.lease / 4 {
            // Sleeping that long on a leased item risks the lease running out mid-wait and the
            // item being sent twice: give it back, due when its turn comes.
            self.pacer.release(&item.method, &item.ordering_key);
            return OutboxResult::Paced {
                not_before_ms: now_ms() + wait.as_millis() as i64,
            };
        }
        if !wait.is_zero() {
            crate::metrics::PACING_WAITS.inc();
            tokio::time::sleep(wait).await;
        }
        let sent_at = Instant::now();
        let result = self.call(item).await;
        self.pacer
            .settle(&item.method, &item.ordering_key, sent_at.elapsed());
        crate::metrics::call_outcome(&item.method, &result);
        match result {
            Ok(response) => OutboxResult::Sent {
                message_ref: message_ref(item, &response),
                response: recorded_response(response),
            },
            Err(CallError::RateLimited { retry_after }) => {
                self.pacer
                    .hold(&item.method, &item.ordering_key, retry_after);
                tracing::info!(id = item.id, method = %item.method, ?retry_after, "rate limited; waiting");
                OutboxResult::Retry {
                    error: "ratelimited".into(),
                    not_before_ms: now_ms() + retry_after.as_millis() as i64,
                }
            }
            Err(CallError::Transient(e)) => {
                tracing::info!(id = item.id, method = %item.method, error = %e, "transient failure; will retry");
                OutboxResult::Retry {
                    error: e,
                    not_before_ms: now_ms() + backoff(item.attempts).as_millis() as i64,
                }
            }
            Err(CallError::Permanent(e)) => {
                tracing::warn!(id = item.id, method = %item.method, error = %e, "permanent failure; giving up");
                OutboxResult::Failed { error: e }
            }
        }
    }

    async fn call(&self, item: &OutboxItem) -> Result<Value, CallError> {
        let mut args: Value = serde_json::from_str(&item.payload)
            .map_err(|e| CallError::Permanent(format!("unreadable outbox payload: {e}")))?;
        if item.method == "response_url" || item.method == "webhook" {
            let url = args["url"].as_str().unwrap_or("").to_string();
            return self.slack.post_url(&url, &args["body"]).await;
        }
        // A reply in the thread of a message we posted (`Ctx::post_in_thread_of`): find its ts.
        if let Some(key) = args
            .as_object_mut()
            .and_then(|a| a.remove("thread_ref"))
            .and_then(|k| k.as_str().map(str::to_string))
        {
            let found = self
                .store
                .message_ref(&key)
                .await
                .map_err(|e| CallError::Transient(e.to_string()))?
                .ok_or_else(|| CallError::Permanent(format!("no message was posted for {key}")))?;
            args["channel"] = json!(found.channel);
            args["thread_ts"] = json!(found.ts);
        }
        // An edit of a message we posted: find where it went.
        if let Some(key) = item.ref_key.as_deref()
            && item.method != "chat.postMessage"
        {
            let found = self
                .store
                .message_ref(key)
                .await
                .map_err(|e| CallError::Transient(e.to_string()))?
                .ok_or_else(|| CallError::Permanent(format!("no message was posted for {key}")))?;
            args["channel"] = json!(found.channel);
            let ts_field = if item.method.starts_with("reactions.") {
                "timestamp"
            } else {
                "ts"
            };
            args[ts_field] = json!(found.ts);
        }
        self.slack.call(&item.method, &args).await
    }
}

/// Slack's answer as the outbox keeps it: without the copy of the posted message that
/// `chat.postMessage` and `chat.update` send back (the row has what was sent; `message_refs` has
/// where it went), which is most of the bytes of every reply's row.
fn recorded_response(mut response: Value) -> String {
    if let Some(fields) = response.as_object_mut() {
        fields.remove("message");
    }
    response.to_string()
}

/// Where a post with a `ref_key` went, for later edits of the same message.
fn message_ref(item: &OutboxItem, response: &Value) -> Option<(String, MessageRef)> {
    if item.method != "chat.postMessage" {
        return None;
    }
    Some((
        item.ref_key.clone()?,
        MessageRef {
            channel: response["channel"].as_str()?.to_string(),
            ts: response["ts"].as_str()?.to_string(),
        },
    ))
}

/// Records finished calls, many to a transaction (one store write for a whole wave of
/// replies), then wakes the sender: a recorded outcome may let the next call of a key go.
pub async fn record_outcomes(
    store: Store,
    owner: String,
    mut finished: mpsc::UnboundedReceiver<OutboxOutcome>,
    ready: Arc<Notify>,
) {
    while let Some(first) = finished.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_OUTCOMES {
            match finished.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut attempt = 0u32;
        loop {
            match store.outbox_finish_many(&owner, &batch, now_ms()).await {
                Ok(_) => break,
                Err(e) if attempt < 5 => {
                    tracing::warn!(error = %e, n = batch.len(), "could not record outcomes; retrying");
                    tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    // The items stay leased; once the lease runs out they are sent again.
                    tracing::error!(error = %e, n = batch.len(), "could not record outcomes");
                    break;
                }
            }
        }
        ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_allows_a_burst_then_spaces_posts() {
        let pacer = Pacer::default();
        for _ in 0..3 {
            assert_eq!(pacer.reserve("chat.postMessage", "C1"), Duration::ZERO);
        }
        assert!(pacer.reserve("chat.postMessage", "C1") > Duration::ZERO);
        assert_eq!(pacer.reserve("chat.postMessage", "C2"), Duration::ZERO);
    }

    #[test]
    fn the_recorded_response_leaves_out_the_message_copy() {
        let recorded = recorded_response(json!({
            "ok": true, "channel": "C1", "ts": "1.2", "message": {"text": "a long message"}
        }));
        assert_eq!(recorded, r#"{"channel":"C1","ok":true,"ts":"1.2"}"#);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) < Duration::from_secs(1));
        assert!(backoff(20) <= MAX_BACKOFF.mul_f64(1.25));
    }
}
