//! The engine with an app of the test's own, in process, against the sandbox over Socket Mode:
//! routing by declaration, the ack hook, errors shown to the user, message refs, modals, and an
//! app's own HTTP route.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::Harness;
use serde_json::{Value, json};
use switchyard_engine::app::SlashCommand;
use switchyard_engine::{
    App, AppError, Ctx, Declaration, Input, MentionCommand, NamedWebhook, Secret,
};
use switchyard_store::sqlx;
use switchyard_store::{ActorKind, AuditFilter, NewOutboxItem, OutboxItem, Outcome, Via};

/// The test's app; it posts to the incoming webhooks it declares.
struct Echo {
    webhooks: Vec<NamedWebhook>,
}

fn modal(channel: &str) -> Value {
    json!({
        "type": "modal", "callback_id": "echo_view", "private_metadata": channel,
        "title": {"type": "plain_text", "text": "Echo"},
        "submit": {"type": "plain_text", "text": "Send"},
        "blocks": [{"type": "input", "block_id": "name_block", "optional": true,
                    "label": {"type": "plain_text", "text": "Name"},
                    "element": {"type": "plain_text_input", "action_id": "name"}}],
    })
}

#[async_trait]
impl App for Echo {
    fn declaration(&self) -> Declaration {
        Declaration {
            name: "echo",
            mentions: vec![
                MentionCommand {
                    word: "fail",
                    help: "fail on purpose",
                },
                MentionCommand {
                    word: "post",
                    help: "post a button",
                },
            ],
            slash_commands: vec![SlashCommand {
                command: "/echo".into(),
                description: "echo",
                usage_hint: "text",
            }],
            action_prefixes: vec!["echo:"],
            view_prefixes: vec!["echo_view"],
            http_routes: vec!["/echo/hook"],
            webhooks: self.webhooks.clone(),
            ..Declaration::default()
        }
    }

    fn ack(&self, input: &Input) -> Option<Value> {
        match input {
            Input::Command { .. } => Some(json!({"text": "working on it"})),
            Input::ViewSubmission { values, .. }
                if values["name_block"]["name"]["value"]
                    .as_str()
                    .unwrap_or("")
                    .is_empty() =>
            {
                Some(
                    json!({"response_action": "errors", "errors": {"name_block": "Say something"}}),
                )
            }
            _ => None,
        }
    }

    async fn handle(&self, ctx: &mut Ctx<'_>, input: &Input) -> Result<(), AppError> {
        match input {
            Input::Mention {
                command, message, ..
            } if command == "fail" => {
                // A change, its audit record and its message, all undone by the failure but
                // for the audit record, which says it failed.
                sqlx::query(
                    "INSERT INTO message_refs (ref_key, channel, ts) VALUES ('echo:failed', 'C', '1')",
                )
                .execute(ctx.db().await?)
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?;
                ctx.audit("echo.fail", "thing:1", Outcome::Ok, "tried");
                ctx.reply(message, "never sent");
                Err(AppError::User("that failed on purpose".into()))
            }
            Input::Mention { message, .. } => {
                let button = json!([{"type": "actions", "elements": [{"type": "button", "action_id": "echo:approve",
                    "text": {"type": "plain_text", "text": "Approve"}, "value": "yes"}]}]);
                ctx.post(
                    &message.channel,
                    json!({"text": "approve?", "blocks": button}),
                    None,
                    Some("echo:msg"),
                );
                ctx.audit("echo.post", "message:echo:msg", Outcome::Ok, "");
                Ok(())
            }
            Input::Command {
                text,
                channel,
                trigger_id,
                ..
            } => {
                ctx.post(
                    channel,
                    json!({"text": format!("echo: {text}")}),
                    None,
                    None,
                );
                ctx.open_view_now(trigger_id, modal(channel)).await?;
                Ok(())
            }
            Input::Action { channel, .. } => {
                let channel = channel.clone().unwrap_or_default();
                ctx.update(
                    &channel,
                    "echo:msg",
                    json!({"text": "approved", "blocks": []}),
                );
                Ok(())
            }
            Input::ViewSubmission {
                values,
                private_metadata,
                ..
            } => {
                let name = values["name_block"]["name"]["value"].as_str().unwrap_or("");
                ctx.post(
                    private_metadata,
                    json!({"text": format!("submitted {name}")}),
                    None,
                    None,
                );
                Ok(())
            }
            Input::Http { body, .. } => {
                let body: Value =
                    serde_json::from_str(body).map_err(|e| AppError::User(e.to_string()))?;
                if let Some(name) = body["webhook"].as_str() {
                    ctx.webhook(name, json!({"text": body["text"]}));
                    return Ok(());
                }
                let channel = body["channel"].as_str().unwrap_or("");
                ctx.post(channel, json!({"text": body["text"]}), None, None);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The harness with the echo app alone, over Socket Mode.
type Setup = Harness;

impl Setup {
    async fn new() -> Self {
        let manifest = json!({
            "display_information": {"name": "Echo"},
            "features": {"bot_user": {"display_name": "echo"}, "slash_commands": [{"command": "/echo", "description": "echo"}]},
            "oauth_config": {"scopes": {"bot": ["app_mentions:read", "chat:write", "commands"]}},
            "settings": {"event_subscriptions": {"bot_events": ["app_mention"]}, "interactivity": {"is_enabled": true}, "socket_mode_enabled": true},
        });
        let sandbox = common::sandbox(Some(manifest)).await;
        let info = sandbox.control().get("/info").await.unwrap();
        let echo = Echo {
            webhooks: vec![NamedWebhook {
                name: "alerts".into(),
                url: Secret::new(info["webhooks"][0]["url"].as_str().unwrap()),
            }],
        };
        Harness::start_in(sandbox, vec![Arc::new(echo)], true, "").await
    }

    /// The sandbox's incoming webhook into #alerts, which the echo app declares as `alerts`.
    async fn webhook_url(&self) -> String {
        let info = self.get("/info").await;
        info["webhooks"][0]["url"].as_str().unwrap().to_string()
    }

    /// Asks the echo app to post `text` through the webhook it calls `name`.
    async fn post_to_webhook(&self, name: &str, text: &str) {
        let url = format!("http://{}/echo/hook", self.server.addr());
        let r = self
            .http
            .post(&url)
            .json(&json!({"webhook": name, "text": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
    }

    /// Waits until the outbox holds a `webhook` call in `state` that `check` accepts.
    async fn wait_webhook_call(
        &self,
        state: &str,
        check: impl Fn(&OutboxItem) -> bool,
    ) -> OutboxItem {
        for _ in 0..200 {
            let items = self
                .server
                .store()
                .outbox_list(Some(state), 100)
                .await
                .unwrap();
            if let Some(item) = items
                .into_iter()
                .find(|i| i.method == "webhook" && check(i))
            {
                return item;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no {state} webhook call in the outbox");
    }

    async fn mention(&self, text: &str) -> String {
        let body = json!({"user": "alice", "channel": "general", "text": format!("<@{}> {text}", self.sandbox.bot_user_id())});
        self.post("/messages", body).await["ts"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits until some message in #general satisfies `check`.
    async fn wait_message(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let v = self.get("/channels/general/messages").await;
            if let Some(m) = v["messages"].as_array().unwrap().iter().find(|m| check(m)) {
                return m.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}");
    }
}

#[tokio::test]
async fn an_app_error_reaches_the_user_as_an_ephemeral() {
    let s = Setup::new().await;
    s.mention("fail").await;
    let v = s
        .get("/ephemerals?user=alice&wait_for=1&timeout_ms=10000")
        .await;
    let text = v["ephemerals"][0]["message"]["text"].as_str().unwrap_or("");
    assert!(text.contains("that failed on purpose"), "{v}");
    let store = s.server.store();
    assert_eq!(
        store.message_ref("echo:failed").await.unwrap(),
        None,
        "the failed handler's change was rolled back"
    );
    let audit = store.audit_query(&AuditFilter::default()).await.unwrap();
    let failed = audit
        .iter()
        .find(|e| e.record.action == "echo.fail")
        .expect("the failed change is audited");
    assert_eq!(failed.record.outcome, Outcome::Failed);
    assert!(
        failed.record.detail.contains("failed on purpose"),
        "{failed:?}"
    );
    let threads = s.get("/channels/general/messages").await;
    assert!(!threads.to_string().contains("never sent"), "{threads}");
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_command_acks_at_once_then_works_and_opens_a_modal() {
    let s = Setup::new().await;
    let r = s
        .post(
            "/commands",
            json!({"user": "alice", "channel": "general", "command": "/echo", "text": "hi"}),
        )
        .await;
    assert_eq!(r["ack"]["body"]["text"], "working on it", "{r}");
    s.wait_message("the command's work", |m| m["text"] == "echo: hi")
        .await;
    let views = s.get("/views?user=alice&wait_for=1&timeout_ms=10000").await;
    let view_id = views["views"][0]["id"]
        .as_str()
        .expect("a modal opened")
        .to_string();

    let refused = s
        .post(
            "/views/submit",
            json!({"user": "alice", "view_id": view_id, "values": {}}),
        )
        .await;
    assert_eq!(
        refused["errors"]["name_block"], "Say something",
        "{refused}"
    );
    assert_eq!(refused["view_closed"], false);
    let done = s
        .post(
            "/views/submit",
            json!({"user": "alice", "view_id": view_id, "values": {"name_block": {"name": "Ada"}}}),
        )
        .await;
    assert_eq!(done["view_closed"], true, "{done}");
    s.wait_message("the submission", |m| m["text"] == "submitted Ada")
        .await;
    let recorded = s
        .server
        .store()
        .outbox_list(Some("sent"), 100)
        .await
        .unwrap();
    assert!(
        recorded.iter().any(|i| i.method == "views.open"),
        "the modal is recorded in the outbox"
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_click_updates_the_message_posted_under_a_ref() {
    let s = Setup::new().await;
    s.mention("post").await;
    let posted = s
        .wait_message("the button", |m| m["text"] == "approve?")
        .await;
    let ts = posted["ts"].as_str().unwrap();
    let r = s
        .post(
            "/actions",
            json!({"user": "bob", "channel": "general", "ts": ts, "action_id": "echo:approve"}),
        )
        .await;
    assert_eq!(r["ack"]["acked"], true, "{r}");
    s.wait_message("the update", |m| m["ts"] == ts && m["text"] == "approved")
        .await;
    // The post was audited with the change that made it: who, through what.
    let audit = s
        .server
        .store()
        .audit_query(&AuditFilter::default())
        .await
        .unwrap();
    let posted = audit
        .iter()
        .find(|e| e.record.action == "echo.post")
        .expect("audited");
    assert_eq!(
        (
            posted.record.actor_kind,
            posted.record.via,
            posted.record.outcome
        ),
        (ActorKind::User, Via::Mention, Outcome::Ok)
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn an_apps_http_route_goes_through_the_inbox_once_per_idempotency_key() {
    let s = Setup::new().await;
    let general = s.get("/channels").await["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "general")
        .unwrap()["id"]
        .clone();
    let url = format!("http://{}/echo/hook", s.server.addr());
    for _ in 0..2 {
        let r = s
            .http
            .post(&url)
            .header("idempotency-key", "one")
            .json(&json!({"channel": general, "text": "from the hook"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
    }
    // The key again for another body: refused, as on the sync routes.
    let r = s
        .http
        .post(&url)
        .header("idempotency-key", "one")
        .json(&json!({"channel": general, "text": "something else"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "idempotency_key_reused", "{body}");
    // Another caller's same key is another key: its request is taken, once.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = s
            .http
            .post(&url)
            .header("authorization", "Bearer another-caller")
            .header("idempotency-key", "one")
            .json(&json!({"channel": general, "text": "from another caller"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        ids.push(r.json::<Value>().await.unwrap()["id"].clone());
    }
    assert_eq!(ids[0], ids[1], "the repeat is the same item");
    s.wait_message("the hook's message", |m| m["text"] == "from the hook")
        .await;
    s.wait_message("the other caller's", |m| m["text"] == "from another caller")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let v = s.get("/channels/general/messages").await;
    let count = |text: &str| {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["text"] == text)
            .count()
    };
    assert_eq!(count("from the hook"), 1);
    assert_eq!(count("something else"), 0);
    assert_eq!(count("from another caller"), 1);
    s.server.shutdown().await;
}

#[tokio::test]
async fn outgoing_webhooks_go_through_the_outbox_by_name() {
    let s = Setup::new().await;
    let hook = s.webhook_url().await;
    s.post_to_webhook("alerts", "via webhook").await;
    let v = s
        .get("/channels/alerts/messages?wait_for=1&timeout_ms=10000")
        .await;
    assert_eq!(v["messages"][0]["text"], "via webhook", "{v}");
    // The call's outcome is recorded just after Slack answered it. The outbox holds the hook's
    // name, never its URL (a secret: whoever has it can post).
    let sent = s.wait_webhook_call("sent", |_| true).await;
    assert_eq!(sent.ordering_key, "webhook:alerts");
    assert!(
        !sent.payload.contains(&hook) && !sent.ordering_key.contains(&hook),
        "the outbox holds the webhook's URL: {sent:?}"
    );

    // A call queued by an earlier version, with the URL in it (an upgrade's backlog), still
    // goes out.
    let mut tx = s.server.store().begin().await.unwrap();
    tx.enqueue_many(&[NewOutboxItem {
        ordering_key: hook.clone(),
        method: "webhook".into(),
        payload: json!({"url": hook, "body": {"text": "queued before the upgrade"}}).to_string(),
        ref_key: None,
        not_before_ms: 0,
        created_at_ms: switchyard_engine::now_ms(),
    }])
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let texts = s.texts("alerts", 2).await;
    assert!(
        texts.iter().any(|t| t == "queued before the upgrade"),
        "{texts:?}"
    );

    // A hook no app declares: failed for good, the error naming the hook, not a URL.
    s.post_to_webhook("gone", "never posted").await;
    let failed = s.wait_webhook_call("failed", |_| true).await;
    let error = failed.error.clone().unwrap_or_default();
    assert!(
        error.contains("\"gone\"") && !error.contains("http"),
        "{error}"
    );

    // Reloaded without the hook: what is sent from then on finds it gone.
    s.server.reload_apps(vec![Arc::new(Echo {
        webhooks: Vec::new(),
    })]);
    s.post_to_webhook("alerts", "after the reload").await;
    let failed = s
        .wait_webhook_call("failed", |i| i.ordering_key == "webhook:alerts")
        .await;
    assert!(
        failed.error.as_deref().unwrap_or("").contains("\"alerts\""),
        "{failed:?}"
    );
    let texts = s.texts("alerts", 2).await;
    assert!(!texts.iter().any(|t| t == "after the reload"), "{texts:?}");
    s.server.shutdown().await;
}
