//! Every 503 the server answers — the API, an app's route, Slack's Events API, `/readyz` — is
//! a JSON error with an `error_id` (the detail only in the log line carrying it), as the 500s
//! are. The store is broken under a running server by dropping the table a request needs.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::Harness;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use switchyard_engine::{App, AppError, Ctx, Declaration, Input};
use switchyard_store::{NewApiToken, sqlx};

/// An app with an async HTTP route, so the route's inbox commit can fail.
struct Hook;

#[async_trait]
impl App for Hook {
    fn declaration(&self) -> Declaration {
        Declaration {
            name: "hook",
            http_routes: vec!["/hook"],
            ..Declaration::default()
        }
    }

    async fn handle(&self, _ctx: &mut Ctx<'_>, _input: &Input) -> Result<(), AppError> {
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn break_table(h: &Harness, statement: &str) {
    let mut tx = h.server.store().begin().await.unwrap();
    sqlx::query(statement).execute(tx.conn()).await.unwrap();
    tx.commit().await.unwrap();
}

/// A 503 as promised: JSON, `error`, an 8-hex-digit `error_id`, nothing of the store's error.
async fn assert_unavailable(what: &str, reply: reqwest::Response) {
    assert_eq!(reply.status().as_u16(), 503, "{what}");
    let body: Value = reply.json().await.expect("a JSON body");
    assert_eq!(body["error"], "unavailable", "{what}: {body}");
    let id = body["error_id"].as_str().unwrap_or("");
    assert!(
        id.len() == 8 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{what}: an error id: {body}"
    );
    let text = body.to_string().to_lowercase();
    for leak in ["sqlite", "table", "audit", "inbox", "error returned"] {
        assert!(!text.contains(leak), "{what}: {leak:?} in {body}");
    }
}

#[tokio::test]
async fn a_store_failure_is_a_503_with_an_error_id() {
    let h = Harness::start(vec![Arc::new(Hook)]).await;
    let token = switchyard_engine::admin::create_token(
        h.server.store(),
        &NewApiToken {
            name: "reader".into(),
            scopes: vec!["audit:read".into()],
            expires_at_ms: None,
        },
        &switchyard_engine::admin::Actor::cli(),
        now_ms(),
    )
    .await
    .unwrap()
    .plaintext;
    let base = format!("http://{}", h.server.addr());

    // The API: the audit log cannot be read.
    break_table(&h, "DROP TABLE audit").await;
    let reply = h
        .http
        .get(format!("{base}/api/v1/audit"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_unavailable("GET /api/v1/audit", reply).await;

    // Nothing can be committed to the inbox: an app's route, and Slack's Events API.
    break_table(&h, "ALTER TABLE inbox RENAME TO inbox_gone").await;
    let reply = h
        .http
        .post(format!("{base}/hook"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_unavailable("POST /hook", reply).await;

    let event = json!({
        "type": "event_callback",
        "event_id": "Ev503",
        "event_time": now_ms() / 1000,
        "event": {
            "type": "app_mention",
            "user": "U0ALICE",
            "channel": "C0GENERAL",
            "ts": "1700000000.000100",
            "text": format!("<@{}> hello", h.sandbox.bot_user_id()),
        },
    })
    .to_string();
    let timestamp = (now_ms() / 1000).to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(h.sandbox.signing_secret().as_bytes())
        .expect("any key length");
    mac.update(format!("v0:{timestamp}:{event}").as_bytes());
    let signature = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
    let reply = h
        .http
        .post(format!("{base}/slack/events"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", &timestamp)
        .header("x-slack-signature", signature)
        .body(event)
        .send()
        .await
        .unwrap();
    assert_unavailable("POST /slack/events", reply).await;
}

#[tokio::test]
async fn not_ready_is_a_503_with_an_error_id() {
    let manifest = json!({
        "display_information": {"name": "Hook"},
        "features": {"bot_user": {"display_name": "hook"}},
        "oauth_config": {"scopes": {"bot": ["chat:write"]}},
        "settings": {"socket_mode_enabled": true},
    });
    let sandbox = common::sandbox(Some(manifest)).await;
    let h = Harness::start_in(sandbox, vec![Arc::new(Hook)], true, "").await;
    let readyz = format!("http://{}/readyz", h.server.addr());
    let ready = h.http.get(&readyz).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let body: Value = ready.json().await.unwrap();
    assert!(body.get("error_id").is_none(), "{body}");
    // No Socket Mode connection, and none to be had: not ready, said so with an id.
    h.post(
        "/faults",
        json!({"target": "web_api", "method": "apps.connections.open", "fault": "reset", "times": 100000}),
    )
    .await;
    h.post("/socket/drop", json!({})).await;
    let mut reply = None;
    for _ in 0..200 {
        let r = h.http.get(&readyz).send().await.unwrap();
        if r.status().as_u16() == 503 {
            reply = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let body: Value = reply
        .expect("not ready once the connections are gone")
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"], "not_ready", "{body}");
    assert_eq!(body["failed"], json!(["slack"]), "{body}");
    assert_eq!(body["error_id"].as_str().map(str::len), Some(8), "{body}");
}
