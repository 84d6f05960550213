//! inbox → apps, in batches.
//!
//! What the receiver committed waits here for a handler. A worker takes what is waiting — up to
//! [`MAX_BATCH`] inputs — and runs their handlers in one transaction: the items are taken from
//! the inbox, each handler's changes sit in a savepoint of their own, and the Slack calls they
//! cause go to the outbox in one statement. Under load batches grow, so the store's cost per
//! input falls just when inputs pour in; when idle a batch is one input, handled at once.
//!
//! Commands and interactions (someone is waiting, a `trigger_id` is running out) jump the
//! queue and run one to a batch, so a handler that opens a modal never holds others up, nor
//! is held up by them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use switchyard_store::{
    ActorKind, AuditRecord, NewOutboxItem, OutboxItem, Outcome, StoreError, Tx, Via,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::{AppError, BatchTx, Ctx, Input};
use crate::now_ms;
use crate::pipeline::{Engine, Kind, Registry, Route};
use crate::sender::HandoffClaim;

/// Inputs one transaction may handle.
pub const MAX_BATCH: usize = 256;
/// How long a batch waits for more inputs once it sees they are arriving together.
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
/// Inputs waiting for a worker, per queue. Past that an input stays in the inbox, leased to
/// this process, and is taken up again when its lease runs out: nothing is lost, it is late.
const QUEUE_CAPACITY: usize = 50_000;
/// Attempts at an input whose handling hits store errors before it is marked failed.
const MAX_ATTEMPTS: u32 = 5;
/// Wait before another attempt at an input that hit a store error.
const RETRY_AFTER_MS: i64 = 1_000;

/// An inbox item this process holds, to be handled.
pub struct Job {
    pub id: i64,
    pub kind: Kind,
    pub payload: Value,
}

/// Where accepted inputs wait for a worker.
pub struct DispatchQueue {
    urgent: mpsc::Sender<Job>,
    normal: mpsc::Sender<Job>,
    /// The inbox ids queued or being handled here. An item whose lease runs out while it waits
    /// is claimed again by this process's inbox worker (which renews the lease); it must not
    /// be queued a second time, or both copies are handled — in one batch, both answered.
    held: Mutex<HashSet<i64>>,
}

/// The workers' end of the [`DispatchQueue`].
pub struct Waiting {
    urgent: mpsc::Receiver<Job>,
    normal: mpsc::Receiver<Job>,
}

impl DispatchQueue {
    pub fn new() -> (Self, Waiting) {
        let (urgent, urgent_rx) = mpsc::channel(QUEUE_CAPACITY);
        let (normal, normal_rx) = mpsc::channel(QUEUE_CAPACITY);
        (
            Self {
                urgent,
                normal,
                held: Mutex::new(HashSet::new()),
            },
            Waiting {
                urgent: urgent_rx,
                normal: normal_rx,
            },
        )
    }

    /// Queues a job without waiting: the ack must not wait for handlers. A job whose item is
    /// already queued or being handled here is dropped: that one will take the item.
    pub fn submit(&self, job: Job) {
        let id = job.id;
        if !self.held().insert(id) {
            tracing::debug!(id, "already queued here; its lease was renewed");
            return;
        }
        let queue = match job.kind {
            Kind::Command | Kind::Interaction => &self.urgent,
            Kind::Event | Kind::Http => &self.normal,
        };
        if queue.try_send(job).is_err() {
            self.held().remove(&id);
            tracing::warn!(
                id,
                "dispatch queue full: the item waits in the inbox for its lease to run out"
            );
        }
    }

    /// The batch's items are handled (or given back to the inbox): they may be queued again.
    fn release(&self, ids: &[i64]) {
        let mut held = self.held();
        for id in ids {
            held.remove(id);
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `workers` workers until `stop` fires and what was queued by then is handled.
pub async fn run(engine: Arc<Engine>, waiting: Waiting, workers: usize, stop: CancellationToken) {
    let waiting = Arc::new(tokio::sync::Mutex::new(waiting));
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (engine, waiting, stop) = (engine.clone(), waiting.clone(), stop.clone());
        running.spawn(async move {
            loop {
                let batch = next_batch(&mut *waiting.lock().await, &stop).await;
                let Some(batch) = batch else { return };
                let ids: Vec<i64> = batch.iter().map(|j| j.id).collect();
                engine.run_batch(batch).await;
                engine.dispatch.release(&ids);
            }
        });
    }
    while running.join_next().await.is_some() {}
}

/// The next batch: one urgent job, or up to [`MAX_BATCH`] others. `None` once `stop` has
/// fired and nothing is waiting.
async fn next_batch(waiting: &mut Waiting, stop: &CancellationToken) -> Option<Vec<Job>> {
    let first = tokio::select! {
        biased;
        Some(job) = waiting.urgent.recv() => return Some(vec![job]),
        Some(job) = waiting.normal.recv() => job,
        _ = stop.cancelled() => {
            if let Ok(job) = waiting.urgent.try_recv() {
                return Some(vec![job]);
            }
            waiting.normal.try_recv().ok()?
        }
        else => return None,
    };
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match waiting.normal.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    if batch.len() > 1 && !stop.is_cancelled() {
        // More than one waiting means more are coming: linger briefly so the batch (and
        // the store's turn it takes from the acks) is worth it. A lone input goes at once.
        let until = tokio::time::Instant::now() + LINGER;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(until, waiting.normal.recv()).await {
                Ok(Some(job)) => batch.push(job),
                _ => break,
            }
        }
    }
    Some(batch)
}

/// How one input's handling ended, before the batch commits.
enum Handled {
    /// Its Slack calls, to be queued, and its audit records.
    Ok(Vec<NewOutboxItem>, Vec<AuditRecord>),
    /// The app failed, or the input was refused (`[access]`): what to record, and the note to
    /// the person.
    Failed {
        outcome: String,
        notice: Vec<NewOutboxItem>,
        /// What the handler meant to record, now recorded as failed.
        audit: Vec<AuditRecord>,
    },
    /// A store error: try again later.
    Again(String),
}

impl Engine {
    /// Handles a batch; if its transaction fails, handles its inputs one by one, so one bad
    /// input cannot hold the others back.
    pub(crate) async fn run_batch(self: &Arc<Self>, jobs: Vec<Job>) {
        let error = match self.try_batch(&jobs).await {
            Ok((queued, claimed)) => return self.outbox_sent_off(queued, claimed),
            Err(e) => e,
        };
        if jobs.len() > 1 {
            tracing::warn!(error = %error, n = jobs.len(), "a batch failed; handling its inputs one by one");
            for job in jobs {
                Box::pin(self.run_batch(vec![job])).await;
            }
            return;
        }
        let id = jobs[0].id;
        tracing::warn!(id, error = %error, "handling failed; will retry");
        let retry_at = now_ms() + RETRY_AFTER_MS;
        if let Err(e) = self
            .store
            .inbox_retry(id, &self.owner, &error.to_string(), retry_at, MAX_ATTEMPTS)
            .await
        {
            tracing::error!(id, error = %e, "could not record the failure");
        }
    }

    /// Runs the batch's handlers in one transaction: the inbox items' completion, the apps'
    /// changes and the Slack calls they cause commit together. Returns how many calls it
    /// queued and those it claimed for this process's sender (see `Engine::enqueue_claimed`).
    async fn try_batch(&self, jobs: &[Job]) -> Result<(usize, Vec<OutboxItem>), StoreError> {
        let now = now_ms();
        let mut batch = BatchTx::for_inputs(
            self.store.clone(),
            self.owner.clone(),
            jobs.iter().map(|j| j.id).collect(),
            now,
        );
        let registry = self.registry.current();
        let mut results = Vec::with_capacity(jobs.len());
        let mut seen = HashSet::with_capacity(jobs.len());
        for job in jobs {
            if !seen.insert(job.id) || !batch.holds(job.id) {
                // The same item twice, or one another worker took over before this batch's
                // transaction began: handled (here, or there) once.
                continue;
            }
            let route = registry.route(job.kind, &job.payload, &self.bot);
            if let Some(refused) = self.permission_step(&registry, &route, now) {
                results.push((job.id, refused));
                continue;
            }
            let (actor, via) = match &route {
                Route::App(_, input) => (input.actor(), input.via()),
                Route::Help(m) => ((ActorKind::User, m.user.clone()), Via::Mention),
                Route::Ignore => ((ActorKind::System, "slack".into()), Via::Event),
            };
            let mut ctx = Ctx::new(&mut batch, self.slack.clone(), now, actor, via);
            let result = match &route {
                Route::App(i, input) => registry.app(*i).handle(&mut ctx, input).await,
                Route::Help(message) => {
                    ctx.reply(message, &registry.help_text());
                    Ok(())
                }
                Route::Ignore => Ok(()),
            };
            crate::metrics::app_outcome(registry.app_name(&route), result.is_ok());
            let (outbox, audit, savepoint) = (
                std::mem::take(&mut ctx.outbox),
                std::mem::take(&mut ctx.audit),
                ctx.savepoint,
            );
            let handled = match result {
                Ok(()) => {
                    if savepoint {
                        // Its item may have been taken over while the handler ran (the
                        // transaction began in it): then its changes are not this batch's.
                        let held = batch.holds(job.id);
                        let tx = batch.tx().await?;
                        if held {
                            tx.release_savepoint().await?;
                        } else {
                            tx.rollback_to_savepoint().await?;
                        }
                    }
                    Handled::Ok(outbox, audit)
                }
                Err(error) => {
                    if savepoint {
                        batch.tx().await?.rollback_to_savepoint().await?;
                    }
                    match error {
                        AppError::Store(e) => {
                            tracing::warn!(id = job.id, error = %e, "app error; will retry");
                            Handled::Again(e.to_string())
                        }
                        other => {
                            // A user error is the app's message to the person; anything else
                            // (a Slack call's transport error, say) is internal: the person
                            // and the audit get an id, the log the detail.
                            let (text, detail) = match &other {
                                AppError::User(m) => {
                                    tracing::warn!(id = job.id, error = %m, "app refused");
                                    (format!(":warning: {m}"), m.clone())
                                }
                                // Nothing is broken: the person only needs to try again, and is
                                // told so (and how); the id finds the cause in the log.
                                AppError::TriggerExpired(cause) => {
                                    let error_id = crate::error_id();
                                    tracing::warn!(id = job.id, error_id, error = %cause, "the modal did not open in time");
                                    (
                                        trigger_expired_notice(&route, &error_id),
                                        format!(
                                            "the form did not open in time (error id {error_id})"
                                        ),
                                    )
                                }
                                other => {
                                    let error_id = crate::error_id();
                                    tracing::error!(id = job.id, error_id, error = %other, "app error");
                                    (
                                        format!(
                                            ":warning: That did not work (error id {error_id}). \
                                             Try again; if it keeps failing, give an operator \
                                             the id."
                                        ),
                                        format!("internal error (error id {error_id})"),
                                    )
                                }
                            };
                            let audit = audit
                                .into_iter()
                                .map(|record| AuditRecord {
                                    outcome: Outcome::Failed,
                                    detail: detail.clone(),
                                    ..record
                                })
                                .collect();
                            Handled::Failed {
                                notice: notice(&route, &text, now),
                                outcome: format!("failed: {text}"),
                                audit,
                            }
                        }
                    }
                }
            };
            results.push((job.id, handled));
        }
        let handoff = self.handoff_claim(now);
        match batch.open.take() {
            Some((mut tx, taken)) => {
                let sent_off = write_results(&mut tx, &taken, results, now, handoff).await?;
                tx.commit().await?;
                Ok(sent_off)
            }
            // No handler began the transaction, so everything the batch writes is owned here:
            // the write goes whole — begin, take the items, their outcomes, outbox rows and
            // audit records, commit — to the store's own runtime (normal priority) instead of
            // holding SQLite's turn from this background task (see `Store::at_home`).
            None => {
                let (ids, owner) = (std::mem::take(&mut batch.ids), batch.owner.clone());
                self.store
                    .at_home(move |store| async move {
                        let mut tx = store.begin().await?;
                        let taken = tx.inbox_take(&ids, &owner, now).await?;
                        let taken = taken.into_iter().collect();
                        let sent_off =
                            write_results(&mut tx, &taken, results, now, handoff).await?;
                        tx.commit().await?;
                        Ok(sent_off)
                    })
                    .await
            }
        }
    }
}

/// The end of a batch's transaction: what each input the batch still holds (`taken`) came to,
/// its Slack calls and its audit records. An input not taken was taken over by another worker
/// when its lease ran out: its work is dropped here. Returns how many calls it queued and the
/// ones `handoff` claimed.
async fn write_results(
    tx: &mut Tx<'static>,
    taken: &HashSet<i64>,
    results: Vec<(i64, Handled)>,
    now: i64,
    handoff: HandoffClaim,
) -> Result<(usize, Vec<OutboxItem>), StoreError> {
    let mut outbox = Vec::new();
    let mut audit = Vec::new();
    for (id, handled) in results {
        if !taken.contains(&id) {
            tracing::debug!(id, "taken over by another worker");
            continue;
        }
        match handled {
            Handled::Ok(calls, records) => {
                outbox.extend(calls);
                audit.extend(records);
            }
            Handled::Failed {
                outcome,
                notice,
                audit: records,
            } => {
                tx.inbox_outcome(id, &outcome).await?;
                outbox.extend(notice);
                audit.extend(records);
            }
            Handled::Again(error) => {
                tx.inbox_requeue(id, &error, now + RETRY_AFTER_MS, MAX_ATTEMPTS)
                    .await?;
            }
        }
    }
    tx.audit_many(&audit).await?;
    let claimed = handoff.enqueue(tx, &outbox, now).await?;
    Ok((outbox.len(), claimed))
}

/// A failed handler's person still hears about it: an ephemeral where it happened, or a DM.
/// What a person is told when the form they asked for did not open in time: what happened
/// and what to do — run the command again, or click again.
fn trigger_expired_notice(route: &Route, error_id: &str) -> String {
    let again = match route {
        Route::App(_, Input::Command { command, .. }) => format!("run `{command}` again"),
        _ => "click again".to_string(),
    };
    format!(
        ":hourglass_flowing_sand: Slack did not open the form in time — please {again}. \
         (error id {error_id})"
    )
}

fn notice(route: &Route, text: &str, now_ms: i64) -> Vec<NewOutboxItem> {
    let (user, channel) = match route {
        Route::App(_, input) => (input.user(), input.channel()),
        Route::Help(m) => (Some(m.user.as_str()), Some(m.channel.as_str())),
        Route::Ignore => (None, None),
    };
    let (method, key, args) = match (user, channel) {
        (Some(user), Some(channel)) if !user.is_empty() && !channel.is_empty() => (
            "chat.postEphemeral",
            channel,
            json!({"channel": channel, "user": user, "text": text}),
        ),
        (Some(user), _) if !user.is_empty() => (
            "chat.postMessage",
            user,
            json!({"channel": user, "text": text}),
        ),
        _ => return Vec::new(),
    };
    vec![NewOutboxItem {
        ordering_key: key.to_string(),
        method: method.to_string(),
        payload: args.to_string(),
        ref_key: None,
        not_before_ms: 0,
        created_at_ms: now_ms,
    }]
}

// ---- the permission step (`[access]`, see `crate::access`) ----

impl Engine {
    /// Checks a person's input against `[access]` before its handler runs: `None` lets it
    /// through; a refusal is audited (outcome `refused`, the permission name as the action)
    /// and, unless a gate says `ignore`, told to the person. Reads memory only.
    fn permission_step(&self, registry: &Registry, route: &Route, now_ms: i64) -> Option<Handled> {
        let Route::App(i, input) = route else {
            return None;
        };
        let name = registry.permission(*i, input)?;
        let user = input.user().unwrap_or("");
        let (reason, tell) = match self.access.decide(user, input.channel(), &name) {
            crate::access::Decision::Allow => return None,
            crate::access::Decision::Refuse(reason) => (reason, true),
            crate::access::Decision::Ignore(reason) => (reason, false),
        };
        let (actor_kind, actor) = input.actor();
        let audit = AuditRecord {
            at_ms: now_ms,
            actor_kind,
            actor,
            via: input.via(),
            action: name,
            object: input
                .channel()
                .map(|c| format!("channel:{c}"))
                .unwrap_or_default(),
            outcome: Outcome::Refused,
            detail: if tell {
                reason.clone()
            } else {
                format!("{reason} (ignored)")
            },
        };
        let notice = if tell {
            notice(route, &format!(":no_entry: {reason}"), now_ms)
        } else {
            Vec::new()
        };
        Some(Handled::Failed {
            outcome: format!("refused: {reason}"),
            notice,
            audit: vec![audit],
        })
    }
}
