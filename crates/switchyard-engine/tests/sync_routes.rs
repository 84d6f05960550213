//! An app's own migrations and synchronous routes (`App::migrations`, `Declaration::sync_routes`,
//! `App::serve`), with an app of the test's own: the table exists at start; a success commits
//! the app's row, its Slack call (sent through the outbox) and its audit record together; a 4xx
//! reply commits none of them but a `refused` audit record; an internal failure answers 500
//! with an error id and none of its detail.

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
        if what == "explode" {
            return Err(AppError::Internal(
                "connection reset by peer (os error 104) talking to db-7".into(),
            ));
        }
        Ok(match what.as_str() {
            "refuse" => HttpReply::error(409, "refused"),
            "deny" => {
                ctx.audit("probe.deny", &what, Outcome::Refused, "not for you");
                HttpReply::error(403, "denied")
            }
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
    // A refusal commits nothing but its `refused` audit record.
    let denied = http
        .post(format!("{base}/probe/deny"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    // An internal failure: a 500 with an error id, none of the failure's detail.
    let failed = http
        .post(format!("{base}/probe/explode"))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["error"], "internal_error", "{body}");
    let error_id = body["error_id"].as_str().unwrap_or_default();
    assert!(
        error_id.len() == 8 && error_id.chars().all(|c| c.is_ascii_hexdigit()),
        "{body}"
    );
    assert!(!body.to_string().contains("reset"), "{body}");

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
    let kept: Vec<(&str, Outcome)> = audit
        .iter()
        .map(|e| (e.record.action.as_str(), e.record.outcome))
        .collect();
    assert_eq!(
        kept,
        [("probe.deny", Outcome::Refused), ("probe.hit", Outcome::Ok)],
        "the success's record and the refusal's, newest first: {audit:?}"
    );
    assert!(audit.iter().all(|e| e.record.actor == "probe-1"));
    let texts = h.texts("general", 1).await;
    assert_eq!(
        texts,
        ["probe fine"],
        "sent through the outbox, only the committed one"
    );
    h.server.shutdown().await;
}
