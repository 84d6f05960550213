//! Inbox leases that run out while their items wait for the dispatcher: the long soak's
//! mentions answered twice. The engine with an app of the test's own, in process, against the
//! sandbox over Socket Mode, on SQLite (one dispatch worker).

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::Harness;
use serde_json::{Value, json};
use switchyard_engine::{App, AppError, Ctx, Declaration, Input, MentionCommand};
use switchyard_store::{AuditFilter, Outcome, sqlx};

/// `slow` keeps the one dispatch worker busy for several leases; `ping` answers `pong` and
/// audits it.
struct Slowpoke;

#[async_trait]
impl App for Slowpoke {
    fn declaration(&self) -> Declaration {
        Declaration {
            name: "slowpoke",
            mentions: vec![
                MentionCommand {
                    word: "slow",
                    help: "take a while",
                },
                MentionCommand {
                    word: "ping",
                    help: "pong",
                },
                MentionCommand {
                    word: "note",
                    help: "take a while, then write",
                },
            ],
            ..Declaration::default()
        }
    }

    async fn handle(&self, ctx: &mut Ctx<'_>, input: &Input) -> Result<(), AppError> {
        let Input::Mention {
            command, message, ..
        } = input
        else {
            return Ok(());
        };
        if command == "note" {
            tokio::time::sleep(Duration::from_millis(2_000)).await;
            // The batch's transaction begins here, and takes the item if it is still ours.
            sqlx::query("INSERT INTO message_refs (ref_key, channel, ts) VALUES ($1, 'C', '1')")
                .bind(format!("note:{}", message.ts))
                .execute(ctx.db().await?)
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?;
            ctx.reply(message, "noted");
        } else if command == "slow" {
            // Standing in for a handler held up by a loaded machine or a slow Slack call.
            tokio::time::sleep(Duration::from_millis(2_000)).await;
            ctx.reply(message, "done");
        } else {
            ctx.audit(
                "slowpoke.ping",
                &format!("message:{}", message.ts),
                Outcome::Ok,
                "",
            );
            ctx.reply(message, "pong");
        }
        Ok(())
    }
}

async fn setup() -> Harness {
    let manifest = json!({
        "display_information": {"name": "Slowpoke"},
        "features": {"bot_user": {"display_name": "slowpoke"}},
        "oauth_config": {"scopes": {"bot": ["app_mentions:read", "chat:write"]}},
        "settings": {"event_subscriptions": {"bot_events": ["app_mention"]}, "socket_mode_enabled": true},
    });
    let sandbox = common::sandbox(Some(manifest)).await;
    // A lease far shorter than the slow handler: the pings' leases run out, again and again,
    // while they wait behind it, and the inbox worker (every 100 ms) claims them again.
    Harness::start_in(sandbox, vec![Arc::new(Slowpoke)], true, "lease_ms = 300\n").await
}

async fn mention(h: &Harness, text: &str) -> String {
    let body = json!({"user": "alice", "channel": "general", "text": format!("<@{}> {text}", h.sandbox.bot_user_id())});
    h.post("/messages", body).await["ts"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The replies in a thread (not its parent), long-polled until there are `n` (or `ms`).
async fn replies(h: &Harness, ts: &str, n: usize, ms: u64) -> Vec<String> {
    let v: Value = h
        .get(&format!(
            "/channels/general/threads/{ts}?wait_for={}&timeout_ms={ms}",
            n + 1
        ))
        .await;
    v["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .skip(1)
        .filter_map(|m| m["text"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn inputs_whose_lease_ran_out_while_queued_are_handled_once() {
    let h = setup().await;
    let slow = mention(&h, "slow").await;
    // Wait until the slow one holds the worker, so the pings queue up behind it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut pings = Vec::new();
    for _ in 0..3 {
        pings.push(mention(&h, "ping").await);
    }
    assert_eq!(replies(&h, &slow, 1, 15_000).await, ["done"]);
    for ts in &pings {
        assert_eq!(replies(&h, ts, 1, 15_000).await, ["pong"], "thread {ts}");
    }
    // A ping handled twice would have its second answer in the outbox by now: a handler's
    // calls are committed with its batch, before any of them is sent (the sender paces a
    // channel's posts, so Slack would see the second one only later).
    let store = h.server.store();
    let pongs = store
        .outbox_list(None, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|item| item.method == "chat.postMessage" && item.payload.contains("pong"))
        .count();
    assert_eq!(pongs, pings.len(), "one answer each in the outbox");
    let records = store
        .audit_query(&AuditFilter {
            action_prefix: Some("slowpoke.ping".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(records.len(), pings.len(), "each ping audited once");
    let counts = store.inbox_counts().await.unwrap();
    assert_eq!((counts.pending, counts.failed), (0, 0));
}

#[tokio::test]
async fn a_handler_whose_item_was_taken_over_keeps_none_of_its_changes() {
    let h = setup().await;
    let store = h.server.store().clone();
    let note = mention(&h, "note").await;
    // While its handler waits, another worker (a replica, say) takes the item over once its
    // lease has run out (`inbox_claim` told it is a minute later) and handles it.
    let later = now_ms() + 60_000;
    let mut taken = Vec::new();
    for _ in 0..100 {
        taken = store
            .inbox_claim("another-replica", later, later + 60_000, 8)
            .await
            .unwrap();
        if !taken.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(taken.len(), 1, "the note's item, taken over");
    let mut tx = store.begin().await.unwrap();
    let ids = [taken[0].id];
    assert_eq!(
        tx.inbox_take(&ids, "another-replica", later).await.unwrap(),
        ids
    );
    tx.commit().await.unwrap();
    // The first worker's batch ends before the next input's (one worker on SQLite).
    let ping = mention(&h, "ping").await;
    assert_eq!(replies(&h, &ping, 1, 15_000).await, ["pong"]);
    assert_eq!(
        store.message_ref(&format!("note:{note}")).await.unwrap(),
        None,
        "the handler's write was not kept: the item was not its batch's"
    );
    assert!(replies(&h, &note, 1, 500).await.is_empty(), "nor its reply");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
