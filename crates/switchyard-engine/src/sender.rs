//! outbox → Slack. The only place Switchyard calls Slack's Web API from (but for modals, which
//! cannot wait).
//!
//! Claims the head of each ordering key (so per-channel order holds), paces calls the way Slack
//! limits them (`chat.postMessage` about one a second per channel with a small burst, other
//! methods by tier), waits out 429s for as long as `Retry-After` says, retries 5xx, timeouts
//! and resets with backoff and jitter, and gives up only on permanent errors, which it records.
//!
//! A post is made once even when the process dies between Slack taking it and its outcome
//! being recorded: every post carries message metadata naming its outbox row, and a row whose
//! earlier attempt's outcome is unknown ([`OutboxItem::unconfirmed_since_ms`]) is first looked
//! for in the channel (or thread) since that attempt; found, it is recorded as sent with the
//! found message's `ts` instead of being posted again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use switchyard_store::{MessageRef, OutboxItem, OutboxOutcome, OutboxResult, Store};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::now_ms;
use crate::pipeline::LiveRegistry;
use crate::slack::{CallError, SlackApi};

/// Calls in flight at once, across ordering keys.
const MAX_IN_FLIGHT: usize = 128;
/// Outcomes recorded in one transaction at most.
const MAX_OUTCOMES: usize = 512;
/// The longest wait before a failed call is tried again. A call holds up every later call of
/// its channel (per-channel order), so a long wait after Slack has recovered leaves the whole
/// channel silent: with 5 minutes here, the 10-minute soak ended with one ephemeral retried
/// ten times at the head of a channel and 583 posts behind it, waiting minutes after the faults
/// stopped. Every 30 s is still light on a Slack that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The share of Slack's rate the pacer uses: the time a call takes to reach Slack varies (a
/// busy machine, a slow network), so calls spaced exactly at Slack's rate sometimes arrive
/// closer together than it allows; a tenth of headroom absorbs that (found by the chaos soak).
const HEADROOM: f64 = 0.9;

/// The limits paced to, as (per minute, burst): Slack's, with [`HEADROOM`].
fn limit_for(method: &str) -> (f64, f64) {
    let (per_minute, burst) = slack_limit(method);
    (per_minute * HEADROOM, burst)
}

/// Slack's limits as (per minute, burst).
fn slack_limit(method: &str) -> (f64, f64) {
    match method {
        "chat.postMessage" => (60.0, 3.0),
        "chat.update" | "chat.delete" | "reactions.add" | "conversations.history" => (50.0, 12.0),
        "views.open" | "views.update" | "views.push" | "views.publish" | "chat.postEphemeral" => {
            (100.0, 25.0)
        }
        "conversations.create" | "conversations.archive" | "conversations.setTopic" => (20.0, 5.0),
        // response_url and webhooks: about one a second per URL (per hook).
        _ => (60.0, 3.0),
    }
}

/// The event type of the message metadata every post carries (its payload: `outbox_id`).
pub const OUTBOX_EVENT_TYPE: &str = "switchyard_outbox";
/// How much older than the claim a lost post may look: Slack stamps `ts` by its own clock.
const LOOKUP_CLOCK_SKEW_MS: i64 = 60_000;
/// Messages per page of the look-up, and pages at most: past that the post is made again
/// (a channel that busy in the minutes since the lost attempt is rare).
const LOOKUP_PAGE: &str = "200";
const LOOKUP_MAX_PAGES: usize = 10;
/// Rows deleted per statement when pruning the inbox or the outbox: each a short write.
pub(crate) const PRUNE_CHUNK: u32 = 1000;
pub(crate) const DAY_MS: i64 = 86_400_000;

/// The methods paced per ordering key (see [`bucket_key`]), all at the same limit.
const PER_KEY_METHODS: &[&str] = &["chat.postMessage", "response_url", "webhook"];
/// How far back the recent sends are read: longer than a burst takes to refill.
const PACED_HISTORY_MS: i64 = 4_000;

/// Posts are limited per channel (response URLs per URL, webhooks per hook); everything else
/// per method.
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

    /// What the outbox says was sent for this bucket since `since_ms` (Unix ms, oldest first;
    /// by this process or any other): the bucket holds no more tokens than those sends left
    /// it, so a restarted process, or one of several replicas, does not spend a burst Slack
    /// has already seen. Slack's bucket may have been empty when the window began, so the
    /// replay starts from empty: what it gives is the least Slack can have left.
    fn observe(&self, method: &str, key: &str, since_ms: i64, sent_at_ms: &[i64], now_ms: i64) {
        let (per_minute, burst) = limit_for(method);
        let rate_per_ms = per_minute / 60_000.0;
        let (mut tokens, mut last) = (0.0, since_ms);
        for &at in sent_at_ms {
            tokens = (tokens + (at - last).max(0) as f64 * rate_per_ms).min(burst) - 1.0;
            last = at;
        }
        let replayed = (tokens + (now_ms - last).max(0) as f64 * rate_per_ms).min(burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (tokens, at) = buckets
            .entry(bucket_key(method, key))
            .or_insert((burst, now));
        let mine = (*tokens + now.duration_since(*at).as_secs_f64() * per_minute / 60.0).min(burst);
        *tokens = mine.min(replayed);
        *at = now;
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

/// Calls claimed in the transaction that queued them ([`switchyard_store::Tx::enqueue_many_claimed`]),
/// handed to this process's sender once committed ([`Sender::run_handed`]): the first call of a
/// quiet channel waits for no claim statement, nor for the sender's loop to wake and ask. The
/// default hands to no sender: the rows are then left to the sender's own claims.
#[derive(Clone)]
pub struct Handoff {
    to_sender: Option<mpsc::UnboundedSender<Vec<OutboxItem>>>,
    /// The sender's slots ([`Sender::new`] takes them from here).
    slots: Arc<Semaphore>,
}

impl Default for Handoff {
    /// Hands to no sender: commits claim nothing.
    fn default() -> Self {
        Self {
            to_sender: None,
            slots: Arc::new(Semaphore::new(0)),
        }
    }
}

impl Handoff {
    /// The hand-off, and its receiving end for [`Sender::run_handed`].
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Vec<OutboxItem>>) {
        let (to_sender, handed) = mpsc::unbounded_channel();
        (
            Self {
                to_sender: Some(to_sender),
                slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            },
            handed,
        )
    }

    /// How many calls a commit may claim for the sender: as many as it has free slots (0:
    /// none free, or no sender here). A batch of a thousand channels' first replies then goes
    /// out without a claim at all — each claim searches every channel's line on a reader —
    /// and what finds no slot by the time it is handed over is given back for a claim.
    pub fn claim_limit(&self) -> usize {
        if self.to_sender.is_some() {
            self.slots.available_permits()
        } else {
            0
        }
    }

    /// The sender's slots, shared so that [`Handoff::claim_limit`] sees how many are free.
    pub fn slots(&self) -> Arc<Semaphore> {
        self.slots.clone()
    }

    /// Hands committed, claimed calls to the sender. Should it be gone (stopping), their lease
    /// runs out and a later claim takes them, looking in Slack first as for any lost outcome.
    pub fn hand(&self, items: Vec<OutboxItem>) {
        if items.is_empty() {
            return;
        }
        if let Some(to_sender) = &self.to_sender
            && to_sender.send(items).is_err()
        {
            tracing::info!("the sender has stopped; claimed calls wait for their lease to end");
        }
    }
}

impl crate::pipeline::Engine {
    /// Queues `outbox` in `tx`, claiming for this process's sender the calls that head their
    /// line (a quiet channel's first post: `Tx::enqueue_many_claimed`); hand them over with
    /// [`Engine::outbox_sent_off`] once `tx` has committed.
    pub(crate) async fn enqueue_claimed(
        &self,
        tx: &mut switchyard_store::Tx<'_>,
        outbox: &[switchyard_store::NewOutboxItem],
    ) -> Result<Vec<switchyard_store::OutboxItem>, crate::app::AppError> {
        let now = crate::now_ms();
        Ok(self.handoff_claim(now).enqueue(tx, outbox, now).await?)
    }

    /// What a commit at `now_ms` may claim for this process's sender: as many calls as the
    /// sender has free slots for, leased as its own claims would be.
    pub(crate) fn handoff_claim(&self, now_ms: i64) -> HandoffClaim {
        HandoffClaim {
            owner: self.owner.clone(),
            until_ms: now_ms + self.lease.as_millis() as i64,
            limit: self.outbox_handoff.claim_limit(),
        }
    }

    /// After the commit of `queued` calls: the `claimed` ones to the sender, and the sender
    /// woken for the rest.
    pub(crate) fn outbox_sent_off(
        &self,
        queued: usize,
        claimed: Vec<switchyard_store::OutboxItem>,
    ) {
        let all_claimed = claimed.len() == queued;
        self.outbox_handoff.hand(claimed);
        if queued > 0 && !all_claimed {
            self.outbox_ready.notify_one();
        }
    }
}

/// See [`Engine::handoff_claim`]; owned, for a write that runs on the store's runtime.
pub(crate) struct HandoffClaim {
    owner: String,
    until_ms: i64,
    /// 0: claim nothing (no sender here, or no free slot).
    limit: usize,
}

impl HandoffClaim {
    /// Queues `outbox` in `tx` at `now_ms`, claiming what this hand-off may (nothing with a
    /// limit of 0: then it is `Tx::enqueue_many`).
    pub(crate) async fn enqueue(
        &self,
        tx: &mut switchyard_store::Tx<'_>,
        outbox: &[switchyard_store::NewOutboxItem],
        now_ms: i64,
    ) -> Result<Vec<OutboxItem>, switchyard_store::StoreError> {
        tx.enqueue_many_claimed(outbox, &self.owner, now_ms, self.until_ms, self.limit)
            .await
    }
}

pub struct Sender {
    store: Store,
    slack: SlackApi,
    /// The apps in force: the incoming webhooks they declare, by name.
    registry: LiveRegistry,
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
        registry: LiveRegistry,
        owner: String,
        lease: Duration,
        slots: Arc<Semaphore>,
    ) -> (Self, mpsc::UnboundedReceiver<OutboxOutcome>) {
        let (outcomes, finished) = mpsc::unbounded_channel();
        let sender = Self {
            store,
            slack,
            registry,
            owner,
            lease,
            pacer: Pacer::default(),
            slots,
            outcomes,
        };
        (sender, finished)
    }

    /// How long one call (with its look-up, for a post) may take: half the lease, at most
    /// the Web API client's own limit.
    fn call_timeout(&self) -> Duration {
        (self.lease / 2).min(Duration::from_secs(10))
    }

    /// Paces by the recent sends the outbox records: all of them at start (a restarted
    /// process's buckets start where the last one left Slack's), and on PostgreSQL, where
    /// replicas share the outbox, those of the keys just claimed.
    async fn observe_sends(&self, keys: Option<&[String]>) {
        let now = now_ms();
        let since = now - PACED_HISTORY_MS;
        let sends = match self
            .store
            .outbox_recent_sends(PER_KEY_METHODS, keys, since)
            .await
        {
            Ok(sends) => sends,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the recent sends; pacing by this process's own");
                return;
            }
        };
        let mut by_key: HashMap<&str, Vec<i64>> = HashMap::new();
        for (key, at) in &sends {
            by_key.entry(key.as_str()).or_default().push(*at);
        }
        for (key, times) in by_key {
            // The method only picks the limit, the same for all three.
            self.pacer
                .observe("chat.postMessage", key, since, &times, now);
        }
    }

    /// Sends until `stop` fires; `ready` wakes it when something was queued or a call's
    /// outcome was recorded (which may let the next call of its key go).
    pub async fn run(self: Arc<Self>, ready: Arc<Notify>, poll: Duration, stop: CancellationToken) {
        self.observe_sends(None).await;
        loop {
            let (claimed, asked) = self.claim().await;
            if claimed > 0 && claimed == asked && self.slots.available_permits() > 0 {
                // There may be more, and room for them.
                continue;
            }
            // Every slot busy: nothing could start when a call comes due, so no look-up (under
            // load most wake-ups find the slots full); the loop wakes when a slot frees, and a
            // millisecond later, so that one claim fills the slots freed meanwhile.
            let slots_full = asked == 0;
            let wait = if slots_full {
                poll
            } else {
                let due = crate::metrics::SENDER_NEXT_DUE_SECONDS
                    .time(self.store.outbox_next_due())
                    .await;
                match due {
                    Ok(Some(due)) => Duration::from_millis(
                        (due - now_ms()).clamp(1, poll.as_millis() as i64) as u64,
                    ),
                    _ => poll,
                }
            };
            let slot_freed = async {
                drop(self.slots.acquire().await);
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            tokio::select! {
                _ = ready.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = slot_freed, if slots_full => {}
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
        // On the store's own runtime: the claim holds SQLite's turn until its rows are read
        // (see `Store::at_home`).
        let owner = self.owner.clone();
        let claimed = self.store.at_home(move |store| async move {
            store.outbox_claim(&owner, now, until, asked as u32).await
        });
        let items = match crate::metrics::SENDER_CLAIM_SECONDS.time(claimed).await {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!(error = %e, "outbox claim failed");
                return (0, asked);
            }
        };
        let claimed = items.len();
        if self.store.backend() == switchyard_store::Backend::Postgres {
            let mut keys: Vec<String> = items
                .iter()
                .filter(|i| PER_KEY_METHODS.contains(&i.method.as_str()))
                .map(|i| i.ordering_key.clone())
                .collect();
            keys.sort();
            keys.dedup();
            if !keys.is_empty() {
                self.observe_sends(Some(&keys)).await;
            }
        }
        for (item, permit) in items.into_iter().zip(permits) {
            self.start(item, permit);
        }
        (claimed, asked)
    }

    /// Sends a claimed item in a task of its own, holding its slot until the call ends.
    fn start(self: &Arc<Self>, item: OutboxItem, permit: tokio::sync::OwnedSemaphorePermit) {
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

    /// Gives a claimed item back unsent and not counted as an attempt, keeping its place in
    /// line: the next claim takes it.
    fn give_back(&self, item: &OutboxItem) {
        let _ = self.outcomes.send(OutboxOutcome {
            id: item.id,
            result: OutboxResult::Paced {
                not_before_ms: now_ms(),
            },
        });
    }

    /// Sends what commits claimed for this process ([`Handoff`]) until `stop` fires; an item
    /// finding every slot busy, or handed as the sender stops, is given back for a claim.
    pub async fn run_handed(
        self: Arc<Self>,
        mut handed: mpsc::UnboundedReceiver<Vec<OutboxItem>>,
        stop: CancellationToken,
    ) {
        loop {
            let items = tokio::select! {
                items = handed.recv() => match items {
                    Some(items) => items,
                    None => return,
                },
                _ = stop.cancelled() => break,
            };
            for item in items {
                match self.slots.clone().try_acquire_owned() {
                    Ok(permit) => self.start(item, permit),
                    Err(_) => self.give_back(&item),
                }
            }
        }
        handed.close();
        while let Ok(items) = handed.try_recv() {
            for item in &items {
                self.give_back(item);
            }
        }
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
        // A call never outlives its lease, so when the lease runs out and the item is claimed
        // again (by this process or a replica), no earlier attempt of ours is still under way.
        let result = match tokio::time::timeout(self.call_timeout(), self.call(item)).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Transient(format!(
                "{}: no reply in {:?}",
                item.method,
                self.call_timeout()
            ))),
        };
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
                    unconfirmed: false,
                }
            }
            Err(CallError::Transient(e)) => {
                tracing::info!(id = item.id, method = %item.method, error = %e, "transient failure; will retry");
                OutboxResult::Retry {
                    error: e,
                    not_before_ms: now_ms() + backoff(item.attempts).as_millis() as i64,
                    // No reply, a reset or a 5xx: Slack may have posted it, so the next
                    // attempt looks first (a lookup's own failure is no post at all).
                    unconfirmed: item.method == "chat.postMessage",
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
        if item.method == "response_url" {
            // Slack's per-interaction URL, good for 30 minutes: kept as it came.
            let url = args["url"].as_str().unwrap_or("").to_string();
            return self.slack.post_url(&url, &args["body"]).await;
        }
        if item.method == "webhook" {
            let url = self.webhook_url(&args)?;
            return self.slack.post_url(url.expose(), &args["body"]).await;
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
        if item.method == "chat.postMessage"
            && tag_post(&mut args, item.id)
            && let Some(since) = item.unconfirmed_since_ms
            && let Some(found) = self.find_post(&args, item.id, since).await?
        {
            return Ok(found);
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

impl Sender {
    /// Where a webhook call goes: the hook it names (`{"hook": name}`), in the apps in force;
    /// a hook no longer configured fails for good, naming the hook. A row queued before the
    /// outbox held names (`{"url": …}`, an upgrade's backlog) goes to the URL it holds.
    fn webhook_url(&self, args: &Value) -> Result<Secret, CallError> {
        if let Some(name) = args["hook"].as_str() {
            return self
                .registry
                .current()
                .webhook_url(name)
                .cloned()
                .ok_or_else(|| {
                    CallError::Permanent(format!(
                        "webhook {name:?}: no incoming webhook of that name is configured (removed from the config?)"
                    ))
                });
        }
        args["url"]
            .as_str()
            .map(Secret::new)
            .ok_or_else(|| CallError::Permanent("webhook: the call names no hook".into()))
    }

    /// Looks for the post of outbox row `id` made by an attempt whose outcome was lost (one
    /// claimed at `since_ms` or later): the channel's history, or the thread's replies, with
    /// their metadata. Found: an answer like `chat.postMessage`'s, to be recorded as sent.
    /// Not found, or not to be looked for (a permanent error such as `not_in_channel` or
    /// `missing_scope`, or a target that is not a conversation id): `None`, and the post is
    /// made (the one case left that may duplicate). A transient failure or a 429 is returned,
    /// so the call is tried again later rather than posted unchecked.
    async fn find_post(
        &self,
        args: &Value,
        id: i64,
        since_ms: i64,
    ) -> Result<Option<Value>, CallError> {
        let Some(channel) = args["channel"].as_str() else {
            return Ok(None);
        };
        let thread_ts = args["thread_ts"].as_str();
        let method = if thread_ts.is_some() {
            "conversations.replies"
        } else {
            "conversations.history"
        };
        let oldest = slack_ts(since_ms - LOOKUP_CLOCK_SKEW_MS);
        let mut cursor = String::new();
        for _ in 0..LOOKUP_MAX_PAGES {
            let mut params = vec![
                ("channel", channel),
                ("oldest", oldest.as_str()),
                ("include_all_metadata", "true"),
                ("limit", LOOKUP_PAGE),
            ];
            if let Some(ts) = thread_ts {
                params.push(("ts", ts));
            }
            if !cursor.is_empty() {
                params.push(("cursor", cursor.as_str()));
            }
            let wait = self.pacer.reserve(method, "");
            tokio::time::sleep(wait.min(self.lease / 4)).await;
            let page = match self.slack.get(method, &params).await {
                Ok(page) => page,
                Err(CallError::Permanent(e)) => {
                    crate::metrics::OUTBOX_LOOKUPS.inc("unavailable");
                    tracing::warn!(id, %channel, error = %e, "cannot look for a post whose outcome was lost; posting it again");
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let messages = page["messages"].as_array().map(Vec::as_slice);
            if let Some(found) = messages
                .unwrap_or_default()
                .iter()
                .find(|m| is_post_of(m, id))
            {
                crate::metrics::OUTBOX_LOOKUPS.inc("found");
                tracing::info!(id, %channel, ts = %found["ts"], "a post whose outcome was lost is in Slack; recorded as sent");
                return Ok(Some(
                    json!({"ok": true, "channel": channel, "ts": found["ts"]}),
                ));
            }
            cursor = page["response_metadata"]["next_cursor"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if cursor.is_empty() {
                crate::metrics::OUTBOX_LOOKUPS.inc("not_found");
                tracing::info!(id, %channel, "a post whose outcome was lost is not in Slack; posting it");
                return Ok(None);
            }
        }
        crate::metrics::OUTBOX_LOOKUPS.inc("unavailable");
        tracing::warn!(id, %channel, "a post whose outcome was lost: not in {LOOKUP_MAX_PAGES} pages; posting it again");
        Ok(None)
    }
}

/// Marks a post as outbox row `id`'s with message metadata, unless the app set metadata of its
/// own (then it cannot be looked for): whether it did.
fn tag_post(args: &mut Value, id: i64) -> bool {
    match args.as_object_mut() {
        Some(fields) if !fields.contains_key("metadata") => {
            fields.insert(
                "metadata".into(),
                json!({"event_type": OUTBOX_EVENT_TYPE, "event_payload": {"outbox_id": id}}),
            );
            true
        }
        _ => false,
    }
}

/// Whether a message from `conversations.history`/`replies` is outbox row `id`'s post.
fn is_post_of(message: &Value, id: i64) -> bool {
    let metadata = &message["metadata"];
    metadata["event_type"] == OUTBOX_EVENT_TYPE
        && metadata["event_payload"]["outbox_id"].as_i64() == Some(id)
}

/// A Unix ms time as Slack's `ts` (seconds with microseconds).
fn slack_ts(ms: i64) -> String {
    let ms = ms.max(0);
    format!("{}.{:06}", ms / 1000, (ms % 1000) * 1000)
}

/// Deletes the outbox's sent calls older than `retention_days` (0 keeps them), a chunk at a
/// time; returns how many went.
pub async fn prune_sent(
    store: &Store,
    retention_days: u32,
    now_ms: i64,
) -> Result<u64, switchyard_store::StoreError> {
    prune_in_chunks(retention_days, now_ms, |cutoff| {
        store.outbox_prune_sent(cutoff, PRUNE_CHUNK)
    })
    .await
}

/// Runs `delete_chunk` (up to [`PRUNE_CHUNK`] rows older than the cutoff it is given) until a
/// chunk comes back short, so the writer is never held long; 0 days keeps everything. The
/// inbox's and the outbox's retention.
pub(crate) async fn prune_in_chunks<F, Fut>(
    retention_days: u32,
    now_ms: i64,
    delete_chunk: F,
) -> Result<u64, switchyard_store::StoreError>
where
    F: Fn(i64) -> Fut,
    Fut: std::future::Future<Output = Result<u64, switchyard_store::StoreError>>,
{
    if retention_days == 0 {
        return Ok(0);
    }
    let cutoff = now_ms.saturating_sub(i64::from(retention_days) * DAY_MS);
    let mut pruned = 0;
    loop {
        let n = delete_chunk(cutoff).await?;
        pruned += n;
        if n < u64::from(PRUNE_CHUNK) {
            return Ok(pruned);
        }
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
    let owner: Arc<str> = owner.into();
    while let Some(first) = finished.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_OUTCOMES {
            match finished.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let batch = Arc::new(batch);
        let mut attempt = 0u32;
        // Whether the sender should look for calls due now; after a failed write, it should.
        let mut more = true;
        loop {
            // On the store's own runtime: the transaction holds SQLite's turn from its begin
            // to its commit (see `Store::at_home`).
            let (owner, outcomes) = (owner.clone(), batch.clone());
            let recorded = store.at_home(move |store| async move {
                store.outbox_finish_wave(&owner, &outcomes, now_ms()).await
            });
            match recorded.await {
                Ok(wave) => {
                    more = wave.more;
                    break;
                }
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
        // Replies that were each the last of their line (a wave of first replies to many
        // channels) leave nothing newly due: waking the sender would only have it search the
        // outbox's heads and look up the next due time, both on a reader, for nothing — after
        // every wave of outcomes. A sender waiting for a free slot is woken by the slots they
        // freed (`Sender::run`).
        if more {
            ready.notify_one();
        }
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
    fn recent_sends_seen_in_the_outbox_use_up_the_burst() {
        let pacer = Pacer::default();
        let now = 1_000_000;
        let since = now - PACED_HISTORY_MS;
        // Three posts in the last half second, by a process that is gone: no burst left.
        let recent = [now - 500, now - 300, now - 100];
        pacer.observe("chat.postMessage", "C1", since, &recent, now);
        assert!(pacer.reserve("chat.postMessage", "C1") > Duration::ZERO);
        // Nothing sent for the whole window: the burst is there.
        pacer.observe("chat.postMessage", "C2", since, &[], now);
        for _ in 0..3 {
            assert_eq!(pacer.reserve("chat.postMessage", "C2"), Duration::ZERO);
        }
        // Sends spread over the window leave less than the burst (Slack's bucket may have been
        // empty when the window began).
        let spread = [since + 2000, since + 3000];
        pacer.observe("chat.postMessage", "C3", since, &spread, now);
        assert_eq!(pacer.reserve("chat.postMessage", "C3"), Duration::ZERO);
        assert!(pacer.reserve("chat.postMessage", "C3") > Duration::ZERO);
    }

    #[test]
    fn the_recorded_response_leaves_out_the_message_copy() {
        let recorded = recorded_response(json!({
            "ok": true, "channel": "C1", "ts": "1.2", "message": {"text": "a long message"}
        }));
        assert_eq!(recorded, r#"{"channel":"C1","ok":true,"ts":"1.2"}"#);
    }

    #[test]
    fn posts_are_tagged_with_their_row_unless_they_carry_metadata() {
        let mut args = json!({"channel": "C1", "text": "hi"});
        assert!(tag_post(&mut args, 42));
        assert!(is_post_of(&args, 42));
        assert!(!is_post_of(&args, 43));
        let theirs = json!({"event_type": "task_created", "event_payload": {"id": 1}});
        let mut args = json!({"channel": "C1", "text": "hi", "metadata": theirs});
        assert!(!tag_post(&mut args, 42));
        assert_eq!(args["metadata"], theirs);
    }

    #[test]
    fn times_are_written_as_slack_timestamps() {
        assert_eq!(slack_ts(1_700_000_000_123), "1700000000.123000");
        assert_eq!(slack_ts(-5), "0.000000");
    }

    #[tokio::test]
    async fn pruning_takes_old_sent_calls_in_chunks_and_keeps_the_rest() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let now = 30 * DAY_MS;
        let item = |n: usize| switchyard_store::NewOutboxItem {
            ordering_key: format!("C{n}"),
            method: "chat.postMessage".into(),
            payload: "{}".into(),
            ref_key: None,
            not_before_ms: 0,
            created_at_ms: 1,
        };
        let old = PRUNE_CHUNK as usize + 5;
        let mut tx = store.begin().await.unwrap();
        let items: Vec<_> = (0..old + 2).map(item).collect();
        tx.enqueue_many(&items).await.unwrap();
        tx.commit().await.unwrap();
        let claimed = store.outbox_claim("s", 10, now, 10_000).await.unwrap();
        let outcomes: Vec<OutboxOutcome> = claimed
            .iter()
            .take(old + 1)
            .map(|i| OutboxOutcome {
                id: i.id,
                result: OutboxResult::Sent {
                    response: "{}".into(),
                    message_ref: None,
                },
            })
            .collect();
        // All but one sent ten days ago; one sent yesterday; one still pending.
        let (long_ago, yesterday) = outcomes.split_at(old);
        store
            .outbox_finish_many("s", long_ago, now - 10 * DAY_MS)
            .await
            .unwrap();
        store
            .outbox_finish_many("s", yesterday, now - DAY_MS)
            .await
            .unwrap();
        assert_eq!(prune_sent(&store, 0, now).await.unwrap(), 0, "0 keeps all");
        assert_eq!(prune_sent(&store, 7, now).await.unwrap(), old as u64);
        let counts = store.outbox_counts().await.unwrap();
        assert_eq!((counts.pending, counts.done_or_sent), (1, 1));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) < Duration::from_secs(1));
        assert!(backoff(20) <= MAX_BACKOFF.mul_f64(1.25));
    }
}
