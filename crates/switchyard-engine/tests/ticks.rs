//! Apps' periodic work (`Declaration::tick_ms`, `App::tick`), with an app of the test's own:
//! its ticks run without any input, each commits its table row, its Slack call (sent through
//! the outbox) and its audit record (as `system:schedule`) together, and a failed tick commits
//! nothing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use common::Harness;
use serde_json::json;
use switchyard_engine::sqlx::{self, Row};
use switchyard_engine::{
    ActorKind, App, AppError, AppMigration, Ctx, Declaration, Input, Outcome, Via,
};
use switchyard_store::AuditFilter;

/// Ticks every 50 ms; its second tick fails after writing, the first and third succeed.
struct Ticker {
    ticks: AtomicUsize,
}

#[async_trait]
impl App for Ticker {
    fn declaration(&self) -> Declaration {
        Declaration {
            name: "ticker",
            tick_ms: Some(50),
            ..Declaration::default()
        }
    }

    fn migrations(&self) -> Vec<AppMigration> {
        vec![AppMigration {
            version: 1,
            sqlite: "CREATE TABLE ticker_ticks (n INTEGER NOT NULL)",
            postgres: "CREATE TABLE ticker_ticks (n BIGINT NOT NULL)",
        }]
    }

    async fn handle(&self, _ctx: &mut Ctx<'_>, _input: &Input) -> Result<(), AppError> {
        Ok(())
    }

    async fn tick(&self, ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        let n = self.ticks.fetch_add(1, Ordering::SeqCst) + 1;
        if n > 3 {
            return Ok(());
        }
        sqlx::query("INSERT INTO ticker_ticks (n) VALUES ($1)")
            .bind(n as i64)
            .execute(ctx.db().await?)
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?;
        ctx.post("general", json!({"text": format!("tick {n}")}), None, None);
        ctx.audit("ticker.tick", &n.to_string(), Outcome::Ok, "");
        if n == 2 {
            return Err(AppError::Internal("the second tick fails".into()));
        }
        Ok(())
    }
}

#[tokio::test]
async fn ticks_run_without_input_and_commit_whole_or_not_at_all() {
    let ticker = Arc::new(Ticker {
        ticks: AtomicUsize::new(0),
    });
    let h = Harness::start(vec![ticker.clone()]).await;
    let texts = h.texts("general", 2).await;
    assert_eq!(texts, ["tick 1", "tick 3"], "the failed tick sent nothing");
    let rows: Vec<i64> = sqlx::query("SELECT n FROM ticker_ticks ORDER BY n")
        .fetch_all(h.server.store().reader())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get(0).unwrap())
        .collect();
    assert_eq!(rows, [1, 3], "the failed tick's row was rolled back");
    let audit = h
        .server
        .store()
        .audit_query(&AuditFilter {
            action_prefix: Some("ticker.".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(
        audit
            .iter()
            .all(|e| e.record.actor_kind == ActorKind::System
                && e.record.actor == "schedule"
                && e.record.via == Via::Schedule)
    );
    h.server.shutdown().await;
}
