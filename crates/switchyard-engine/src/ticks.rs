//! Apps' periodic work ([`crate::Declaration::tick_ms`]): every so often the engine calls
//! [`crate::App::tick`] in a transaction of its own, as the system through `schedule`, and
//! commits what it wrote — its tables, outbox rows, audit records — together. For work that
//! falls due with time rather than with an input (a silence that ends).
//!
//! Nothing is kept in memory between ticks: what is due is read from the app's tables, so a
//! restart loses nothing, and every replica ticks (the app takes its rows with locks, or in
//! statements that only one replica's commit can win, so work is done once).

use std::sync::Arc;
use std::time::Duration;

use switchyard_store::{ActorKind, Via};
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppError, BatchTx, Ctx};
use crate::pipeline::Engine;

/// How often the loop looks at which apps are due; an app's own period is at least this.
const RESOLUTION: Duration = Duration::from_millis(100);

impl Engine {
    /// Ticks the current registry's apps (a reload's apps from then on), each at its own
    /// period, until `stop`.
    pub(crate) async fn run_ticks(self: Arc<Self>, stop: CancellationToken) {
        let mut last: std::collections::HashMap<&'static str, tokio::time::Instant> =
            std::collections::HashMap::new();
        let mut every = tokio::time::interval(RESOLUTION);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let registry = self.registry.current();
            for declaration in registry.declarations() {
                let Some(period) = declaration.tick_ms.map(Duration::from_millis) else {
                    continue;
                };
                let now = tokio::time::Instant::now();
                if last
                    .get(declaration.name)
                    .is_some_and(|at| now.duration_since(*at) < period)
                {
                    continue;
                }
                last.insert(declaration.name, now);
                let Some(app) = registry.app_named(declaration.name) else {
                    continue;
                };
                if let Err(e) = self.tick_app(app.as_ref()).await {
                    tracing::warn!(app = declaration.name, error = %e, "an app's tick failed");
                }
            }
        }
    }

    /// One tick of `app`, committed as a whole (or, on an error, not at all).
    pub(crate) async fn tick_app(&self, app: &dyn App) -> Result<(), AppError> {
        let now = crate::now_ms();
        let mut batch = BatchTx::single(self.store.clone(), self.owner.clone(), now);
        let mut ctx = Ctx::new(
            &mut batch,
            self.slack.clone(),
            now,
            (ActorKind::System, "schedule".into()),
            Via::Schedule,
        );
        let done = app.tick(&mut ctx).await;
        let (outbox, audit, _) = ctx.take();
        done?;
        self.commit_alone(&mut batch, outbox, audit).await
    }

    /// Commits what an app wrote outside a batch of inputs (a sync route, a tick): its
    /// transaction if it began one, its audit records and outbox rows.
    pub(crate) async fn commit_alone(
        &self,
        batch: &mut BatchTx,
        outbox: Vec<switchyard_store::NewOutboxItem>,
        audit: Vec<switchyard_store::AuditRecord>,
    ) -> Result<(), AppError> {
        if outbox.is_empty() && audit.is_empty() && batch.open.is_none() {
            return Ok(());
        }
        let mut tx = match batch.open.take() {
            Some((tx, _)) => tx,
            None => self.store.begin().await?,
        };
        tx.audit_many(&audit).await?;
        let claimed = self.enqueue_claimed(&mut tx, &outbox).await?;
        tx.commit().await?;
        self.outbox_sent_off(outbox.len(), claimed);
        Ok(())
    }
}
