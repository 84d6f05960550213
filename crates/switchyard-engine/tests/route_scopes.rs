//! An app's HTTP route that needs an API token scope (`Declaration::http_route_scopes`), beside
//! one that does not, on a real server over a real socket.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::Harness;
use serde_json::{Value, json};
use switchyard_engine::admin::{Actor, create_token};
use switchyard_engine::{App, AppError, Ctx, Declaration, Input};
use switchyard_store::{AuditFilter, NewApiToken, Outcome};

struct Hooks;

#[async_trait]
impl App for Hooks {
    fn declaration(&self) -> Declaration {
        Declaration {
            name: "hooks",
            http_routes: vec!["/hooks/guarded", "/hooks/open"],
            http_route_scopes: vec![("/hooks/guarded", "alerts:write")],
            ..Declaration::default()
        }
    }

    async fn handle(&self, _ctx: &mut Ctx<'_>, _input: &Input) -> Result<(), AppError> {
        Ok(())
    }
}

async fn post(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).json(&json!({"x": 1}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_scoped_route_needs_a_token_with_the_scope() {
    let h = Harness::start(vec![Arc::new(Hooks)]).await;
    let server = &h.server;
    let token = |name: &str, scope: &str| NewApiToken {
        name: name.into(),
        scopes: vec![scope.into()],
        expires_at_ms: None,
    };
    let now = switchyard_engine::now_ms();
    let alerts = create_token(
        server.store(),
        &token("alerts", "alerts:*"),
        &Actor::cli(),
        now,
    )
    .await
    .unwrap();
    let reader = create_token(
        server.store(),
        &token("reader", "audit:read"),
        &Actor::cli(),
        now,
    )
    .await
    .unwrap();

    let guarded = format!("http://{}/hooks/guarded", server.addr());
    let (status, body) = post(&guarded, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    let (status, body) = post(&guarded, Some(&reader.plaintext)).await;
    assert_eq!(
        (status, body["needed"].as_str()),
        (403, Some("alerts:write"))
    );
    let (status, body) = post(&guarded, Some(&alerts.plaintext)).await;
    assert_eq!((status, body["ok"].as_bool()), (202, Some(true)), "{body}");
    let (status, _) = post(&format!("http://{}/hooks/open", server.addr()), None).await;
    assert_eq!(status, 202);

    let refused = server
        .store()
        .audit_query(&AuditFilter {
            outcome: Some(Outcome::Refused),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].record.object, "route:/hooks/guarded");
    assert_eq!(refused[0].record.actor, reader.info.id.to_string());
    h.server.shutdown().await;
}
