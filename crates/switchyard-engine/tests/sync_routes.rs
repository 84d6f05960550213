//! An app's own migrations and synchronous routes (`App::migrations`, `Declaration::sync_routes`,
//! `App::serve`), with an app of the test's own: the table exists at start; a success commits
//! the app's row, its Slack call (sent through the outbox) and its audit record together; a 4xx
//! reply commits none of them.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::Harness;
use serde_json::{Value, json};
use switchyard_engine::sqlx::{self, Row};
use switchyard_engine::{
    ActorKind, App, AppError, AppMigration, Ctx, Declaration, HttpReply, HttpRequest, Input,
    Outcome,
};
use switchyard_store::AuditFilter;

struct Probe;

#[async_trait]
impl App for Probe {
    fn declaration(&self) -> Declaration {
        Declaration {
            name: "probe",
            sync_routes: vec!["/probe/"],
            ..Declaration::default()
        }
    }

    fn migrations(&self) -> Vec<AppMigration> {
        vec![AppMigration {
            version: 1,
            sqlite: "CREATE TABLE probe_hits (what TEXT NOT NULL)",
            postgres: "CREATE TABLE probe_hits (what TEXT NOT NULL)",
        }]
    }

    async fn handle(&self, _ctx: &mut Ctx<'_>, _input: &Input) -> Result<(), AppError> {
        Ok(())
    }

    async fn serve(&self, ctx: &mut Ctx<'_>, request: &HttpRequest) -> Result<HttpReply, AppError> {
        let what = request.path.trim_start_matches("/probe/").to_string();
        ctx.set_actor(ActorKind::Device, "probe-1");
        sqlx::query("INSERT INTO probe_hits (what) VALUES ($1)")
            .bind(&what)
            .execute(ctx.db().await?)
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?;
        ctx.post(
            "general",
            json!({"text": format!("probe {what}")}),
            None,
            None,
        );
        ctx.audit("probe.hit", &what, Outcome::Ok, "");
        Ok(match what.as_str() {
            "refuse" => HttpReply::error(409, "refused"),
            _ => HttpReply::ok(json!({"ok": true, "what": what, "method": request.method})),
        })
    }
}

#[tokio::test]
async fn a_sync_route_commits_on_success_only() {
    let h = Harness::start(vec![Arc::new(Probe)]).await;
    let (http, server) = (&h.http, &h.server);
    let base = format!("http://{}", server.addr());
    let ok = http
        .delete(format!("{base}/probe/fine"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(
        (body["what"].as_str(), body["method"].as_str()),
        (Some("fine"), Some("DELETE"))
    );
    let refused = http
        .post(format!("{base}/probe/refuse"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body, json!({"ok": false, "error": "refused"}));

    let hits: Vec<String> = sqlx::query("SELECT what FROM probe_hits")
        .fetch_all(server.store().reader())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("what").unwrap())
        .collect();
    assert_eq!(hits, ["fine"]);
    let audit = server
        .store()
        .audit_query(&AuditFilter {
            action_prefix: Some("probe.".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].record.actor, "probe-1");
    let texts = h.texts("general", 1).await;
    assert_eq!(
        texts,
        ["probe fine"],
        "sent through the outbox, only the committed one"
    );
    h.server.shutdown().await;
}
