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
use switchyard_store::{OutboxItem, Store};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::now_ms;
use crate::slack::{CallError, SlackApi};

/// Calls in flight at once, across ordering keys.
const MAX_IN_FLIGHT: usize = 16;
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
}

impl Sender {
    pub fn new(store: Store, slack: SlackApi, owner: String, lease: Duration) -> Self {
        Self {
            store,
            slack,
            owner,
            lease,
            pacer: Pacer::default(),
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        }
    }

    /// Sends until `stop` fires; `ready` wakes it when something was queued.
    pub async fn run(self: Arc<Self>, ready: Arc<Notify>, poll: Duration, stop: CancellationToken) {
        loop {
            let claimed = self.claim().await;
            let wait = if claimed > 0 {
                Duration::from_millis(5)
            } else {
                match self.store.outbox_next_due().await {
                    Ok(Some(due)) => Duration::from_millis(
                        (due - now_ms()).clamp(1, poll.as_millis() as i64) as u64,
                    ),
                    _ => poll,
                }
            };
            tokio::select! {
                _ = ready.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    async fn claim(self: &Arc<Self>) -> usize {
        let free = self.slots.available_permits();
        if free == 0 {
            return 0;
        }
        let now = now_ms();
        let until = now + self.lease.as_millis() as i64;
        let items = match self
            .store
            .outbox_claim(&self.owner, now, until, free as u32)
            .await
        {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!(error = %e, "outbox claim failed");
                return 0;
            }
        };
        let n = items.len();
        for item in items {
            let Ok(permit) = self.slots.clone().acquire_owned().await else {
                break;
            };
            let sender = self.clone();
            tokio::spawn(async move {
                sender.send(item).await;
                drop(permit);
            });
        }
        n
    }

    async fn send(&self, item: OutboxItem) {
        let wait = self.pacer.reserve(&item.method, &item.ordering_key);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let result = self.call(&item).await;
        let stored = match result {
            Ok(response) => {
                if let Err(e) = self.remember_ref(&item, &response).await {
                    tracing::warn!(id = item.id, error = %e, "could not record the message ref");
                }
                self.store
                    .outbox_sent(item.id, &self.owner, &response.to_string(), now_ms())
                    .await
            }
            Err(CallError::RateLimited { retry_after }) => {
                self.pacer
                    .hold(&item.method, &item.ordering_key, retry_after);
                let at = now_ms() + retry_after.as_millis() as i64;
                tracing::info!(id = item.id, method = %item.method, ?retry_after, "rate limited; waiting");
                self.store
                    .outbox_retry(item.id, &self.owner, "ratelimited", at)
                    .await
            }
            Err(CallError::Transient(e)) => {
                let at = now_ms() + backoff(item.attempts).as_millis() as i64;
                tracing::info!(id = item.id, method = %item.method, error = %e, "transient failure; will retry");
                self.store.outbox_retry(item.id, &self.owner, &e, at).await
            }
            Err(CallError::Permanent(e)) => {
                tracing::warn!(id = item.id, method = %item.method, error = %e, "permanent failure; giving up");
                self.store
                    .outbox_failed(item.id, &self.owner, &e, now_ms())
                    .await
            }
        };
        if let Err(e) = stored {
            tracing::error!(id = item.id, error = %e, "could not record the outcome of a Slack call");
        }
    }

    async fn call(&self, item: &OutboxItem) -> Result<Value, CallError> {
        let mut args: Value = serde_json::from_str(&item.payload)
            .map_err(|e| CallError::Permanent(format!("unreadable outbox payload: {e}")))?;
        if item.method == "response_url" || item.method == "webhook" {
            let url = args["url"].as_str().unwrap_or("").to_string();
            return self.slack.post_url(&url, &args["body"]).await;
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

    async fn remember_ref(
        &self,
        item: &OutboxItem,
        response: &Value,
    ) -> Result<(), switchyard_store::StoreError> {
        if item.method != "chat.postMessage" {
            return Ok(());
        }
        let (Some(key), Some(channel), Some(ts)) = (
            item.ref_key.as_deref(),
            response["channel"].as_str(),
            response["ts"].as_str(),
        ) else {
            return Ok(());
        };
        self.store.message_ref_set(key, channel, ts).await
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
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) < Duration::from_secs(1));
        assert!(backoff(20) <= MAX_BACKOFF.mul_f64(1.25));
    }
}
