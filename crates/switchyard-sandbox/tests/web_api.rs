//! The Web API (`/api/<method>`), docs/sandbox.md §1.

mod common;

use std::time::Duration;

use common::*;

// ------------------------------------------------------------------------------------------
// Auth
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn api_test_and_auth_test() {
    let h = Harness::new().await;
    let v = h.bot("api.test", json!({"foo": "bar"})).await;
    assert!(v.ok(), "api.test: {}", v.text);
    assert_eq!(
        v.json["args"]["foo"], "bar",
        "api.test echoes its arguments"
    );

    let v = h.api_ok("auth.test", json!({})).await;
    assert_eq!(v["user_id"], h.bot_user_id());
    assert_eq!(v["team_id"], h.sandbox.team_id());
    assert!(
        v["bot_id"].as_str().is_some_and(|b| b.starts_with('B')),
        "{v}"
    );

    let alice = h.user_ok("alice", "auth.test", json!({})).await;
    assert_eq!(alice["user_id"], h.user_id("alice").await);
    assert_eq!(alice["user"], "alice");
}

#[tokio::test]
async fn wrong_token_is_invalid_auth() {
    let h = Harness::new().await;
    let v = h
        .api_as(Some("xoxb-not-a-token"), "auth.test", json!({}))
        .await;
    assert_eq!(v.status, 200);
    assert_eq!(v.json["ok"], false);
    assert_eq!(v.error(), "invalid_auth");
}

#[tokio::test]
async fn no_token_is_not_authed() {
    let h = Harness::new().await;
    let v = h
        .api_as(
            None,
            "chat.postMessage",
            json!({"channel": "general", "text": "x"}),
        )
        .await;
    assert_eq!(v.json["ok"], false, "{}", v.text);
    assert_eq!(v.error(), "not_authed");
}

#[tokio::test]
async fn app_token_is_only_for_connections_open() {
    let h = Harness::new().await;
    let app = h.app_token();
    let v = h.api_as(Some(&app), "auth.test", json!({})).await;
    assert_eq!(v.error(), "not_allowed_token_type", "{}", v.text);
    let v = h
        .api_as(
            Some(&app),
            "chat.postMessage",
            json!({"channel": "general", "text": "x"}),
        )
        .await;
    assert_eq!(v.error(), "not_allowed_token_type", "{}", v.text);

    let v = h
        .api_as(Some(&app), "apps.connections.open", json!({}))
        .await;
    assert!(v.ok(), "{}", v.text);
    assert!(
        v.json["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("ws://")),
        "{}",
        v.text
    );

    // And the bot token may not open connections.
    let bot = h.bot_token();
    let v = h
        .api_as(Some(&bot), "apps.connections.open", json!({}))
        .await;
    assert_eq!(v.json["ok"], false, "{}", v.text);
}

#[tokio::test]
async fn token_as_an_argument() {
    let h = Harness::new().await;
    let bot = h.bot_token();
    let v = h
        .api_form(None, "auth.test", &[("token", bot.as_str())])
        .await;
    assert!(v.ok(), "form token: {}", v.text);
    let v = h
        .api_get(None, "auth.test", &[("token", bot.as_str())])
        .await;
    assert!(v.ok(), "query token: {}", v.text);
    let v = h.api_as(None, "auth.test", json!({"token": bot})).await;
    assert!(v.ok(), "JSON token: {}", v.text);
}

#[tokio::test]
async fn missing_scope_names_needed_and_provided() {
    let scopes: Vec<&str> = ALL_SCOPES
        .iter()
        .copied()
        .filter(|s| !s.starts_with("chat:write"))
        .collect();
    let h = Harness::with_manifest(&socket_manifest(&scopes, ALL_EVENTS)).await;
    let v = h
        .bot(
            "chat.postMessage",
            json!({"channel": "general", "text": "hi"}),
        )
        .await;
    assert_eq!(v.json["ok"], false, "{}", v.text);
    assert_eq!(v.error(), "missing_scope");
    assert_eq!(v.json["needed"], "chat:write");
    let provided = v.json["provided"].as_str().expect("provided");
    assert!(provided.contains("channels:read"), "{provided}");
    assert!(!provided.contains("chat:write"), "{provided}");
    // Methods whose scopes are granted still work.
    h.api_ok("conversations.list", json!({})).await;
}

#[tokio::test]
async fn manifest_put_at_run_time_changes_scopes() {
    let h = Harness::new().await;
    h.api_ok(
        "chat.postMessage",
        json!({"channel": "general", "text": "before"}),
    )
    .await;
    let manifest = socket_manifest(&["channels:read"], &["app_mention"]);
    let resp = h
        .http
        .put(h.control_url("app/manifest"))
        .header("content-type", "application/json")
        .body(manifest)
        .send()
        .await
        .expect("PUT manifest");
    assert!(resp.status().is_success(), "{:?}", resp.status());
    let err = h
        .api_err(
            "chat.postMessage",
            json!({"channel": "general", "text": "after"}),
        )
        .await;
    assert_eq!(err, "missing_scope");
}

#[tokio::test]
async fn yaml_manifest_put() {
    let h = Harness::new().await;
    let yaml = "display_information:\n  name: Other\noauth_config:\n  scopes:\n    bot: [users:read]\nsettings:\n  socket_mode_enabled: true\n";
    let resp = h
        .http
        .put(h.control_url("app/manifest"))
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .expect("PUT manifest");
    assert!(resp.status().is_success(), "{:?}", resp.status());
    h.api_ok("users.list", json!({})).await;
    assert_eq!(
        h.api_err("conversations.list", json!({})).await,
        "missing_scope"
    );
}

// ------------------------------------------------------------------------------------------
// chat.*
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn post_message_by_name_and_id() {
    let h = Harness::new().await;
    let general = h.channel_id("general").await;
    for channel in ["general", "#general", general.as_str()] {
        let v = h
            .api_ok(
                "chat.postMessage",
                json!({"channel": channel, "text": format!("to {channel}")}),
            )
            .await;
        assert_eq!(v["channel"], general, "{v}");
        assert!(v["ts"].as_str().is_some_and(|t| t.contains('.')), "{v}");
        assert_eq!(v["message"]["text"], format!("to {channel}"));
        assert_eq!(v["message"]["user"], h.bot_user_id());
        assert!(v["message"]["bot_id"].is_string(), "{v}");
    }
    let msgs = h
        .wait_list("channels/general/messages", "messages", 3)
        .await;
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0]["text"], "to general", "oldest first: {msgs:?}");
}

#[tokio::test]
async fn post_message_threads_and_broadcast() {
    let h = Harness::new().await;
    let parent = h.bot_post("general", "parent").await;
    h.api_ok(
        "chat.postMessage",
        json!({"channel": "general", "text": "reply 1", "thread_ts": parent}),
    )
    .await;
    let b = h
        .api_ok(
            "chat.postMessage",
            json!({"channel": "general", "text": "reply 2", "thread_ts": parent, "reply_broadcast": true}),
        )
        .await;
    assert_eq!(b["message"]["thread_ts"], parent.as_str());

    let replies = h
        .api_ok(
            "conversations.replies",
            json!({"channel": "general", "ts": parent}),
        )
        .await;
    let texts: Vec<&str> = replies["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["parent", "reply 1", "reply 2"]);

    let general = h.channel_id("general").await;
    let history = h
        .api_ok("conversations.history", json!({"channel": general}))
        .await;
    let msgs = history["messages"].as_array().unwrap();
    let texts: Vec<&str> = msgs.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert!(
        !texts.contains(&"reply 1"),
        "a plain reply is not in history: {texts:?}"
    );
    assert!(texts.contains(&"reply 2"), "a broadcast is: {texts:?}");
    let broadcast = msgs.iter().find(|m| m["text"] == "reply 2").unwrap();
    assert_eq!(broadcast["subtype"], "thread_broadcast");
    let parent_msg = msgs.iter().find(|m| m["text"] == "parent").unwrap();
    assert_eq!(parent_msg["reply_count"], 2, "{parent_msg}");

    let thread = h.read(&format!("channels/general/threads/{parent}")).await;
    assert_eq!(thread["messages"].as_array().unwrap().len(), 3, "{thread}");
}

#[tokio::test]
async fn thread_not_found_for_unknown_parent() {
    let h = Harness::new().await;
    let err = h
        .api_err(
            "conversations.replies",
            json!({"channel": "general", "ts": "1234567890.000001"}),
        )
        .await;
    assert_eq!(err, "thread_not_found");
}

#[tokio::test]
async fn post_message_blocks_attachments_metadata() {
    let h = Harness::new().await;
    let blocks = json!([section("*hello*"), {"type": "divider"}]);
    let attachments = json!([{"color": "#ff0000", "text": "attached"}]);
    let metadata = json!({"event_type": "deploy_started", "event_payload": {"id": "42"}});
    let v = h
        .api_ok(
            "chat.postMessage",
            json!({
                "channel": "general",
                "text": "fallback",
                "blocks": blocks,
                "attachments": attachments,
                "metadata": metadata
            }),
        )
        .await;
    assert_eq!(v["message"]["blocks"][0]["text"]["text"], "*hello*");
    let general = h.channel_id("general").await;
    let history = h
        .api_ok(
            "conversations.history",
            json!({"channel": general, "include_all_metadata": true}),
        )
        .await;
    let m = &history["messages"][0];
    assert_eq!(m["text"], "fallback");
    assert_eq!(m["blocks"].as_array().unwrap().len(), 2, "{m}");
    assert_eq!(m["blocks"][1]["type"], "divider");
    assert_eq!(m["attachments"][0]["text"], "attached");
    assert_eq!(m["metadata"]["event_type"], "deploy_started");
    assert_eq!(m["metadata"]["event_payload"]["id"], "42");
}

#[tokio::test]
async fn attachments_alone_need_no_text() {
    let h = Harness::new().await;
    h.api_ok(
        "chat.postMessage",
        json!({"channel": "general", "attachments": [{"text": "only this", "fallback": "f"}]}),
    )
    .await;
    h.api_ok(
        "chat.postMessage",
        json!({"channel": "general", "blocks": [section("only blocks")]}),
    )
    .await;
}

#[tokio::test]
async fn blocks_as_a_json_string_in_a_form() {
    let h = Harness::new().await;
    let bot = h.bot_token();
    let blocks = json!([section("from a form")]).to_string();
    let v = h
        .api_form(
            Some(&bot),
            "chat.postMessage",
            &[("channel", "general"), ("text", "fb"), ("blocks", &blocks)],
        )
        .await;
    assert!(v.ok(), "{}", v.text);
    let msgs = h
        .wait_list("channels/general/messages", "messages", 1)
        .await;
    assert_eq!(msgs[0]["blocks"][0]["text"]["text"], "from a form");
}

#[tokio::test]
async fn post_message_query_string_get() {
    let h = Harness::new().await;
    let bot = h.bot_token();
    let v = h
        .api_get(
            Some(&bot),
            "chat.postMessage",
            &[("channel", "alerts"), ("text", "via GET")],
        )
        .await;
    assert!(v.ok(), "{}", v.text);
    let msgs = h.wait_list("channels/alerts/messages", "messages", 1).await;
    assert_eq!(msgs[0]["text"], "via GET");
}

#[tokio::test]
async fn private_channel_and_unknown_channel_are_not_found() {
    let h = Harness::new().await;
    // A private channel the bot is not in does not exist for it, as in Slack.
    let err = h
        .api_err("chat.postMessage", json!({"channel": "ops", "text": "x"}))
        .await;
    assert_eq!(err, "channel_not_found");
    let ops = h.channel_id("ops").await;
    assert_eq!(
        h.api_err("conversations.history", json!({"channel": ops}))
            .await,
        "channel_not_found"
    );
    // alice, a member, can post there.
    h.user_ok(
        "alice",
        "chat.postMessage",
        json!({"channel": ops, "text": "hi"}),
    )
    .await;
    let err = h
        .api_err("chat.postMessage", json!({"channel": "nope", "text": "x"}))
        .await;
    assert_eq!(err, "channel_not_found");
    let err = h
        .api_err(
            "chat.postMessage",
            json!({"channel": "C0NOTACHANNEL", "text": "x"}),
        )
        .await;
    assert_eq!(err, "channel_not_found");
    let err = h
        .api_err("conversations.info", json!({"channel": "C0NOTACHANNEL"}))
        .await;
    assert_eq!(err, "channel_not_found");
}

#[tokio::test]
async fn public_channel_needs_membership_without_chat_write_public() {
    let scopes: Vec<&str> = ALL_SCOPES
        .iter()
        .copied()
        .filter(|s| *s != "chat:write.public")
        .collect();
    let h = Harness::with_manifest(&socket_manifest(&scopes, ALL_EVENTS)).await;
    // A public channel the bot is not in, made by alice.
    h.user_ok("alice", "conversations.create", json!({"name": "random"}))
        .await;
    let err = h
        .api_err(
            "chat.postMessage",
            json!({"channel": "random", "text": "x"}),
        )
        .await;
    assert_eq!(err, "not_in_channel");
}

#[tokio::test]
async fn chat_write_public_posts_without_joining() {
    let h = Harness::new().await;
    h.user_ok("alice", "conversations.create", json!({"name": "random"}))
        .await;
    h.api_ok(
        "chat.postMessage",
        json!({"channel": "random", "text": "x"}),
    )
    .await;
}

#[tokio::test]
async fn no_text_and_invalid_arguments() {
    let h = Harness::new().await;
    let err = h
        .api_err("chat.postMessage", json!({"channel": "general"}))
        .await;
    assert_eq!(err, "no_text");

    // Slack answers a missing channel with channel_not_found.
    let err = h
        .api_err("chat.postMessage", json!({"text": "no channel"}))
        .await;
    assert_eq!(err, "channel_not_found");

    // A missing required argument elsewhere is invalid_arguments, explained.
    let alice = h.user_id("alice").await;
    let v = h.bot("views.publish", json!({"user_id": alice})).await;
    assert_eq!(v.json["ok"], false, "{}", v.text);
    assert_eq!(v.error(), "invalid_arguments", "{}", v.text);
    let messages = v.json["response_metadata"]["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("response_metadata.messages: {}", v.text));
    assert!(!messages.is_empty(), "{}", v.text);
    assert!(
        messages[0].as_str().is_some_and(|m| m.contains("view")),
        "{}",
        v.text
    );
}

#[tokio::test]
async fn unknown_method() {
    let h = Harness::new().await;
    let v = h.bot("chat.doesNotExist", json!({})).await;
    assert_eq!(v.json["ok"], false, "{}", v.text);
    assert_eq!(v.error(), "unknown_method");
}

#[tokio::test]
async fn block_kit_limits() {
    let h = Harness::new().await;
    let post = |blocks: Value| json!({"channel": "general", "text": "fallback", "blocks": blocks});

    let fifty: Vec<Value> = (0..50).map(|_| json!({"type": "divider"})).collect();
    h.api_ok("chat.postMessage", post(json!(fifty))).await;
    let fifty_one: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
    assert_eq!(
        h.api_err("chat.postMessage", post(json!(fifty_one))).await,
        "invalid_blocks"
    );

    h.api_ok(
        "chat.postMessage",
        post(json!([section(&"x".repeat(3000))])),
    )
    .await;
    assert_eq!(
        h.api_err(
            "chat.postMessage",
            post(json!([section(&"x".repeat(3001))]))
        )
        .await,
        "invalid_blocks"
    );

    let button =
        json!({"type": "button", "text": {"type": "plain_text", "text": "b"}, "action_id": "a"});
    let buttons = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| {
                let mut b = button.clone();
                b["action_id"] = json!(format!("a{i}"));
                b
            })
            .collect()
    };
    h.api_ok(
        "chat.postMessage",
        post(json!([{"type": "actions", "elements": buttons(25)}])),
    )
    .await;
    assert_eq!(
        h.api_err(
            "chat.postMessage",
            post(json!([{"type": "actions", "elements": buttons(26)}]))
        )
        .await,
        "invalid_blocks"
    );

    assert_eq!(
        h.api_err(
            "chat.postMessage",
            post(json!([{"type": "markdown", "text": "y".repeat(12_001)}]))
        )
        .await,
        "invalid_blocks"
    );

    let long: Vec<Value> = (0..5).map(|_| section(&"z".repeat(2900))).collect();
    assert_eq!(
        h.api_err("chat.postMessage", post(json!(long))).await,
        "msg_blocks_too_long"
    );
}

#[tokio::test]
async fn invalid_blocks_explains_where() {
    let h = Harness::new().await;
    let fifty_one: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
    let v = h
        .bot(
            "chat.postMessage",
            json!({"channel": "general", "text": "t", "blocks": fifty_one}),
        )
        .await;
    assert_eq!(v.error(), "invalid_blocks");
    let text = v.json.to_string();
    assert!(text.contains("json-pointer"), "explanations: {text}");
}

#[tokio::test]
async fn text_length_limit() {
    let h = Harness::new().await;
    h.api_ok(
        "chat.postMessage",
        json!({"channel": "general", "text": "a".repeat(40_000)}),
    )
    .await;
    assert_eq!(
        h.api_err(
            "chat.postMessage",
            json!({"channel": "general", "text": "a".repeat(40_001)})
        )
        .await,
        "msg_too_long"
    );
}

#[tokio::test]
async fn update_delete_and_their_errors() {
    let h = Harness::new().await;
    let ts = h.bot_post("general", "v1").await;
    let general = h.channel_id("general").await;
    let v = h
        .api_ok(
            "chat.update",
            json!({"channel": general, "ts": ts, "text": "v2"}),
        )
        .await;
    assert_eq!(v["ts"], ts.as_str());
    assert_eq!(v["text"], "v2");
    let msgs = h.messages("general").await;
    assert_eq!(msgs[0]["text"], "v2");
    assert!(msgs[0]["edited"].is_object(), "{:?}", msgs[0]);

    assert_eq!(
        h.api_err(
            "chat.update",
            json!({"channel": general, "ts": "1000000000.000001", "text": "x"})
        )
        .await,
        "message_not_found"
    );
    // Updates are held to the same limits as posts.
    assert_eq!(
        h.api_err(
            "chat.update",
            json!({"channel": general, "ts": ts, "text": "a".repeat(40_001)})
        )
        .await,
        "msg_too_long"
    );
    let fifty_one: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
    assert_eq!(
        h.api_err(
            "chat.update",
            json!({"channel": general, "ts": ts, "text": "t", "blocks": fifty_one})
        )
        .await,
        "invalid_blocks"
    );

    // A person's message cannot be edited by the bot.
    let said = h.say("alice", "general", "mine").await;
    let alice_ts = said["ts"].as_str().unwrap();
    assert_eq!(
        h.api_err(
            "chat.update",
            json!({"channel": general, "ts": alice_ts, "text": "x"})
        )
        .await,
        "cant_update_message"
    );

    let v = h
        .api_ok("chat.delete", json!({"channel": general, "ts": ts}))
        .await;
    assert_eq!(v["ts"], ts.as_str());
    let msgs = h.messages("general").await;
    assert!(
        msgs.iter().all(|m| m["ts"] != ts.as_str()),
        "deleted: {msgs:?}"
    );
    assert_eq!(
        h.api_err("chat.delete", json!({"channel": general, "ts": ts}))
            .await,
        "message_not_found"
    );
}

#[tokio::test]
async fn post_ephemeral_and_permalink() {
    let h = Harness::new().await;
    let alice = h.user_id("alice").await;
    let general = h.channel_id("general").await;
    let v = h
        .api_ok(
            "chat.postEphemeral",
            json!({"channel": general, "user": alice, "text": "psst"}),
        )
        .await;
    assert!(v["message_ts"].is_string(), "{v}");
    let eph = h
        .read(&format!("ephemerals?user={alice}&channel={general}"))
        .await;
    let list = eph["ephemerals"].as_array().expect("ephemerals");
    assert_eq!(list.len(), 1, "{eph}");
    assert_eq!(list[0]["message"]["text"], "psst");
    // Ephemerals are not in history.
    assert!(h.messages("general").await.is_empty());

    let ts = h.bot_post("general", "link me").await;
    let v = h
        .api_ok(
            "chat.getPermalink",
            json!({"channel": general, "message_ts": ts}),
        )
        .await;
    let link = v["permalink"].as_str().expect("permalink");
    assert!(
        link.contains(&format!("p{}", ts.replace('.', ""))),
        "{link} for {ts}"
    );
    assert!(link.contains(&general), "{link}");
}

// ------------------------------------------------------------------------------------------
// conversations.*
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn conversations_info_list_members() {
    let h = Harness::new().await;
    let general = h.channel_id("general").await;
    let v = h
        .api_ok("conversations.info", json!({"channel": general}))
        .await;
    assert_eq!(v["channel"]["name"], "general");
    assert_eq!(v["channel"]["is_member"], true);
    assert_eq!(v["channel"]["is_private"], false);

    let v = h
        .api_ok(
            "conversations.list",
            json!({"types": "public_channel,private_channel"}),
        )
        .await;
    let names: Vec<&str> = v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        names.contains(&"general") && names.contains(&"alerts"),
        "{names:?}"
    );
    assert!(!names.contains(&"ops"), "the bot is not in #ops: {names:?}");

    let alice_list = h
        .user_ok(
            "alice",
            "conversations.list",
            json!({"types": "private_channel"}),
        )
        .await;
    assert!(
        find_named(&alice_list, "ops").is_some(),
        "alice sees #ops: {alice_list}"
    );

    let v = h
        .api_ok("conversations.members", json!({"channel": general}))
        .await;
    let members: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let alice = h.user_id("alice").await;
    let bob = h.user_id("bob").await;
    assert!(members.contains(&alice.as_str()), "{members:?}");
    assert!(members.contains(&bob.as_str()), "{members:?}");
    assert!(members.contains(&h.bot_user_id().as_str()), "{members:?}");
}

#[tokio::test]
async fn conversations_history_newest_first() {
    let h = Harness::new().await;
    h.bot_post("alerts", "first").await;
    h.bot_post("alerts", "second").await;
    let alerts = h.channel_id("alerts").await;
    let v = h
        .api_ok("conversations.history", json!({"channel": alerts}))
        .await;
    let texts: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["second", "first"]);
    let v = h
        .api_ok(
            "conversations.history",
            json!({"channel": alerts, "limit": 1}),
        )
        .await;
    assert_eq!(v["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn conversations_create_join_invite_topic_leave_archive() {
    let h = Harness::new().await;
    let v = h
        .api_ok("conversations.create", json!({"name": "incident-1"}))
        .await;
    let id = v["channel"]["id"].as_str().expect("id").to_string();
    assert!(id.starts_with('C'), "{v}");
    assert_eq!(v["channel"]["name"], "incident-1");
    assert_eq!(
        h.api_err("conversations.create", json!({"name": "incident-1"}))
            .await,
        "name_taken"
    );

    let alice = h.user_id("alice").await;
    h.api_ok(
        "conversations.invite",
        json!({"channel": id, "users": alice}),
    )
    .await;
    let v = h
        .api_ok("conversations.members", json!({"channel": id}))
        .await;
    assert!(
        v["members"].as_array().unwrap().contains(&json!(alice)),
        "{v}"
    );

    assert_eq!(
        h.api_err(
            "conversations.invite",
            json!({"channel": id, "users": "U0NOBODY"})
        )
        .await,
        "user_not_found"
    );

    let v = h
        .api_ok(
            "conversations.setTopic",
            json!({"channel": id, "topic": "SEV2"}),
        )
        .await;
    assert!(v.to_string().contains("SEV2"), "{v}");
    let info = h.api_ok("conversations.info", json!({"channel": id})).await;
    assert_eq!(info["channel"]["topic"]["value"], "SEV2");

    h.api_ok("conversations.leave", json!({"channel": id}))
        .await;
    let info = h.api_ok("conversations.info", json!({"channel": id})).await;
    assert_eq!(info["channel"]["is_member"], false);
    h.api_ok("conversations.join", json!({"channel": id})).await;
    let info = h.api_ok("conversations.info", json!({"channel": id})).await;
    assert_eq!(info["channel"]["is_member"], true);

    h.api_ok("conversations.archive", json!({"channel": id}))
        .await;
    assert_eq!(
        h.api_err("chat.postMessage", json!({"channel": id, "text": "x"}))
            .await,
        "is_archived"
    );
}

#[tokio::test]
async fn conversations_open_dm() {
    let h = Harness::new().await;
    let alice = h.user_id("alice").await;
    let v = h
        .api_ok("conversations.open", json!({"users": alice}))
        .await;
    let dm = v["channel"]["id"].as_str().expect("id").to_string();
    assert!(dm.starts_with('D'), "{v}");
    let again = h
        .api_ok("conversations.open", json!({"users": alice}))
        .await;
    assert_eq!(again["channel"]["id"], dm.as_str(), "the same DM");
    h.api_ok(
        "chat.postMessage",
        json!({"channel": dm, "text": "hi alice"}),
    )
    .await;
    let v = h.read(&format!("dms/{alice}")).await;
    assert_eq!(v["messages"][0]["text"], "hi alice", "{v}");
    let by_name = h.read("dms/alice").await;
    assert_eq!(by_name["messages"][0]["text"], "hi alice", "{by_name}");
}

// ------------------------------------------------------------------------------------------
// users.*, usergroups.list, reactions.*
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn users_info_list_lookup() {
    let h = Harness::new().await;
    let v = h.api_ok("users.list", json!({})).await;
    let members = v["members"].as_array().expect("members");
    for name in ["alice", "bob", "carol", "deploybot"] {
        assert!(
            members.iter().any(|m| m["name"] == name),
            "{name} in {members:?}"
        );
    }
    let alice = members.iter().find(|m| m["name"] == "alice").unwrap();
    assert_eq!(alice["is_admin"], true);
    let deploybot = members.iter().find(|m| m["name"] == "deploybot").unwrap();
    assert_eq!(deploybot["is_bot"], true);
    assert!(
        members.iter().any(|m| m["id"] == h.bot_user_id().as_str()),
        "the app's bot user is listed"
    );

    let alice_id = alice["id"].as_str().unwrap();
    let v = h.api_ok("users.info", json!({"user": alice_id})).await;
    assert_eq!(v["user"]["name"], "alice");
    assert_eq!(v["user"]["profile"]["email"], "alice@example.com");
    assert_eq!(
        h.api_err("users.info", json!({"user": "U0NOBODY"})).await,
        "user_not_found"
    );

    let v = h
        .api_ok("users.lookupByEmail", json!({"email": "bob@example.com"}))
        .await;
    assert_eq!(v["user"]["name"], "bob");
    assert_eq!(
        h.api_err(
            "users.lookupByEmail",
            json!({"email": "nobody@example.com"})
        )
        .await,
        "users_not_found"
    );
}

#[tokio::test]
async fn usergroups_list() {
    let h = Harness::new().await;
    let v = h
        .api_ok("usergroups.list", json!({"include_users": true}))
        .await;
    let groups = v["usergroups"].as_array().expect("usergroups");
    let oncall = groups
        .iter()
        .find(|g| g["handle"] == "oncall")
        .unwrap_or_else(|| panic!("@oncall in {groups:?}"));
    let alice = h.user_id("alice").await;
    let bob = h.user_id("bob").await;
    let users = oncall["users"].as_array().expect("users");
    assert!(
        users.contains(&json!(alice)) && users.contains(&json!(bob)),
        "{oncall}"
    );
}

#[tokio::test]
async fn usergroups_users_list() {
    let h = Harness::new().await;
    let v = h.api_ok("usergroups.list", json!({})).await;
    let oncall = v["usergroups"]
        .as_array()
        .expect("usergroups")
        .iter()
        .find(|g| g["handle"] == "oncall")
        .expect("@oncall")["id"]
        .as_str()
        .expect("an id")
        .to_string();
    assert!(oncall.starts_with('S'), "{oncall}");
    let v = h
        .api_ok("usergroups.users.list", json!({"usergroup": oncall}))
        .await;
    let (alice, bob) = (h.user_id("alice").await, h.user_id("bob").await);
    assert_eq!(v["users"], json!([alice, bob]), "{v}");
    assert_eq!(
        h.api_err("usergroups.users.list", json!({"usergroup": "S0NOPE"}))
            .await,
        "no_such_subteam"
    );
    assert_eq!(
        h.api_err("usergroups.users.list", json!({})).await,
        "invalid_arguments"
    );
}

#[tokio::test]
async fn reactions_add_get_remove() {
    let h = Harness::new().await;
    let ts = h.bot_post("general", "react to me").await;
    let general = h.channel_id("general").await;
    let args = json!({"channel": general, "timestamp": ts, "name": "thumbsup"});
    h.api_ok("reactions.add", args.clone()).await;
    assert_eq!(
        h.api_err("reactions.add", args.clone()).await,
        "already_reacted"
    );
    let v = h
        .api_ok(
            "reactions.get",
            json!({"channel": general, "timestamp": ts}),
        )
        .await;
    let reactions = v["message"]["reactions"].as_array().expect("reactions");
    assert_eq!(reactions[0]["name"], "thumbsup");
    assert_eq!(reactions[0]["count"], 1);
    assert!(
        reactions[0]["users"]
            .as_array()
            .unwrap()
            .contains(&json!(h.bot_user_id())),
        "{v}"
    );
    let msgs = h.messages("general").await;
    assert_eq!(msgs[0]["reactions"][0]["name"], "thumbsup");

    h.api_ok("reactions.remove", args.clone()).await;
    assert_eq!(h.api_err("reactions.remove", args).await, "no_reaction");
    assert_eq!(
        h.api_err(
            "reactions.add",
            json!({"channel": general, "timestamp": "1000000000.000001", "name": "x"})
        )
        .await,
        "message_not_found"
    );
}

// ------------------------------------------------------------------------------------------
// views.*
// ------------------------------------------------------------------------------------------

/// A trigger id from a `/switchyard` command typed by `user` (a Socket Mode client acks it).
async fn trigger(h: &Harness, user: &str) -> String {
    let v = h
        .act(
            "commands",
            json!({"user": user, "channel": "general", "command": "/switchyard", "text": "open"}),
        )
        .await;
    v["trigger_id"].as_str().expect("trigger_id").to_string()
}

#[tokio::test]
async fn views_open_trigger_used_once() {
    let h = Harness::new().await;
    let _app = SocketClient::connect(&h, ack_all()).await;
    let trigger_id = trigger(&h, "alice").await;
    let v = h
        .api_ok(
            "views.open",
            json!({"trigger_id": trigger_id, "view": modal("One", "one")}),
        )
        .await;
    let view_id = v["view"]["id"].as_str().expect("view id");
    assert!(view_id.starts_with('V'), "{v}");
    assert!(v["view"]["hash"].is_string(), "{v}");

    let views = h.read("views?user=alice").await;
    assert!(
        views["views"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == view_id),
        "{views}"
    );

    assert_eq!(
        h.api_err(
            "views.open",
            json!({"trigger_id": trigger_id, "view": modal("Two", "two")})
        )
        .await,
        "exchanged_trigger_id"
    );
    assert_eq!(
        h.api_err(
            "views.open",
            json!({"trigger_id": "12345.98765.abcd", "view": modal("Three", "three")})
        )
        .await,
        "invalid_trigger_id"
    );
}

#[tokio::test]
async fn views_open_trigger_expires_after_three_seconds() {
    let h = Harness::new().await;
    let _app = SocketClient::connect(&h, ack_all()).await;
    let trigger_id = trigger(&h, "bob").await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        h.api_err(
            "views.open",
            json!({"trigger_id": trigger_id, "view": modal("Late", "late")})
        )
        .await,
        "expired_trigger_id"
    );
}

#[tokio::test]
async fn views_open_as_a_form_with_view_as_a_json_string() {
    let h = Harness::new().await;
    let _app = SocketClient::connect(&h, ack_all()).await;
    let trigger_id = trigger(&h, "alice").await;
    let bot = h.bot_token();
    let view = modal("Form", "form").to_string();
    let v = h
        .api_form(
            Some(&bot),
            "views.open",
            &[("trigger_id", trigger_id.as_str()), ("view", view.as_str())],
        )
        .await;
    assert!(v.ok(), "{}", v.text);
    assert_eq!(v.json["view"]["callback_id"], "form");
}

#[tokio::test]
async fn views_update_hash_conflict_and_not_found() {
    let h = Harness::new().await;
    let _app = SocketClient::connect(&h, ack_all()).await;
    let trigger_id = trigger(&h, "alice").await;
    let v = h
        .api_ok(
            "views.open",
            json!({"trigger_id": trigger_id, "view": modal("One", "one")}),
        )
        .await;
    let view_id = v["view"]["id"].as_str().unwrap().to_string();
    let hash = v["view"]["hash"].as_str().unwrap().to_string();

    let v = h
        .api_ok(
            "views.update",
            json!({"view_id": view_id, "hash": hash, "view": modal("Updated", "one")}),
        )
        .await;
    assert_eq!(v["view"]["title"]["text"], "Updated");
    assert_ne!(v["view"]["hash"], hash.as_str(), "a new hash");

    assert_eq!(
        h.api_err(
            "views.update",
            json!({"view_id": view_id, "hash": hash, "view": modal("Stale", "one")})
        )
        .await,
        "hash_conflict"
    );
    assert_eq!(
        h.api_err(
            "views.update",
            json!({"view_id": "V0NOTAVIEW", "view": modal("X", "x")})
        )
        .await,
        "not_found"
    );
}

#[tokio::test]
async fn views_push_limit() {
    let h = Harness::new().await;
    let _app = SocketClient::connect(&h, ack_all()).await;
    let t = trigger(&h, "alice").await;
    h.api_ok(
        "views.open",
        json!({"trigger_id": t, "view": modal("1", "m1")}),
    )
    .await;
    for i in 2..=3 {
        let t = trigger(&h, "alice").await;
        h.api_ok(
            "views.push",
            json!({"trigger_id": t, "view": modal(&i.to_string(), "m")}),
        )
        .await;
    }
    let t = trigger(&h, "alice").await;
    assert_eq!(
        h.api_err(
            "views.push",
            json!({"trigger_id": t, "view": modal("4", "m4")})
        )
        .await,
        "push_limit_reached"
    );
    let views = h.read("views?user=alice").await;
    let modals: Vec<&Value> = views["views"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "modal")
        .collect();
    assert_eq!(modals.len(), 3, "{views}");
    assert_eq!(modals[0]["title"]["text"], "1", "bottom first");
}

#[tokio::test]
async fn views_publish_home_tab_and_block_limit() {
    let h = Harness::new().await;
    let alice = h.user_id("alice").await;
    let home = json!({"type": "home", "blocks": [section("Welcome home")]});
    let v = h
        .api_ok("views.publish", json!({"user_id": alice, "view": home}))
        .await;
    assert_eq!(v["view"]["type"], "home");
    let views = h.read(&format!("views?user={alice}")).await;
    assert!(
        views["views"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["type"] == "home"),
        "{views}"
    );

    let hundred: Vec<Value> = (0..100).map(|_| json!({"type": "divider"})).collect();
    h.api_ok(
        "views.publish",
        json!({"user_id": alice, "view": {"type": "home", "blocks": hundred}}),
    )
    .await;
    // Views report bad blocks as Slack does: invalid_arguments, with the reason.
    let too_many: Vec<Value> = (0..101).map(|_| json!({"type": "divider"})).collect();
    let v = h
        .bot(
            "views.publish",
            json!({"user_id": alice, "view": {"type": "home", "blocks": too_many}}),
        )
        .await;
    assert_eq!(v.error(), "invalid_arguments", "{}", v.text);
    assert!(
        v.json["response_metadata"]["messages"]
            .to_string()
            .contains("100"),
        "{}",
        v.text
    );
}

// ------------------------------------------------------------------------------------------
// files: upload v2
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn files_upload_v2() {
    let h = Harness::new().await;
    let content = b"hello, file";
    let length = content.len().to_string();
    let bot = h.bot_token();
    let step1 = h
        .api_form(
            Some(&bot),
            "files.getUploadURLExternal",
            &[("filename", "notes.txt"), ("length", length.as_str())],
        )
        .await;
    assert!(step1.ok(), "{}", step1.text);
    let upload_url = step1.json["upload_url"].as_str().expect("upload_url");
    let file_id = step1.json["file_id"].as_str().expect("file_id").to_string();
    assert!(file_id.starts_with('F'), "{}", step1.text);
    assert!(upload_url.starts_with("http://127.0.0.1"), "{upload_url}");

    let resp = bounded(
        "the upload",
        h.http.post(upload_url).body(content.to_vec()).send(),
    )
    .await
    .expect("upload");
    assert_eq!(resp.status().as_u16(), 200);

    let general = h.channel_id("general").await;
    let files = json!([{"id": file_id, "title": "Notes"}]).to_string();
    let step3 = h
        .api_form(
            Some(&bot),
            "files.completeUploadExternal",
            &[
                ("files", files.as_str()),
                ("channel_id", general.as_str()),
                ("initial_comment", "here you go"),
            ],
        )
        .await;
    assert!(step3.ok(), "{}", step3.text);
    assert_eq!(step3.json["files"][0]["id"], file_id.as_str());

    let info = h.api_ok("files.info", json!({"file": file_id})).await;
    assert_eq!(info["file"]["name"], "notes.txt");
    assert_eq!(info["file"]["title"], "Notes");
    assert_eq!(info["file"]["size"], content.len());

    let msg = h
        .wait_item("channels/general/messages", "messages", |m| {
            m["files"].is_array()
        })
        .await;
    assert_eq!(msg["files"][0]["id"], file_id.as_str(), "{msg}");
}

#[tokio::test]
async fn files_upload_v2_multipart_as_slack_documents() {
    // Slack's guide uploads with `curl -F filename="@$filename" UPLOAD_URL`: a multipart form.
    let h = Harness::new().await;
    let content = "line one\nline two\n";
    let length = content.len().to_string();
    let bot = h.bot_token();
    let step1 = h
        .api_form(
            Some(&bot),
            "files.getUploadURLExternal",
            &[("filename", "lines.txt"), ("length", length.as_str())],
        )
        .await;
    assert!(step1.ok(), "{}", step1.text);
    let upload_url = step1.json["upload_url"].as_str().unwrap().to_string();
    let file_id = step1.json["file_id"].as_str().unwrap().to_string();
    let boundary = "----sandboxtestboundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"; filename=\"lines.txt\"\r\nContent-Type: text/plain\r\n\r\n{content}\r\n--{boundary}--\r\n"
    );
    let resp = bounded(
        "the upload",
        h.http
            .post(&upload_url)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send(),
    )
    .await
    .expect("upload");
    assert_eq!(resp.status().as_u16(), 200);
    let files = json!([{"id": file_id}]).to_string();
    let done = h
        .api_form(
            Some(&bot),
            "files.completeUploadExternal",
            &[("files", files.as_str())],
        )
        .await;
    assert!(done.ok(), "{}", done.text);
    let info = h.api_ok("files.info", json!({"file": file_id})).await;
    assert_eq!(
        info["file"]["size"],
        content.len(),
        "the file, not the multipart envelope: {info}"
    );
}

#[tokio::test]
async fn post_message_to_a_user_id_goes_to_the_dm() {
    let h = Harness::new().await;
    let alice = h.user_id("alice").await;
    let v = h
        .api_ok(
            "chat.postMessage",
            json!({"channel": alice, "text": "hello in private"}),
        )
        .await;
    assert!(
        v["channel"].as_str().is_some_and(|c| c.starts_with('D')),
        "{v}"
    );
    let dm = h.wait_list("dms/alice", "messages", 1).await;
    assert_eq!(dm[0]["text"], "hello in private");
}

#[tokio::test]
async fn cursor_pagination() {
    let h = Harness::new().await;
    for method in ["users.list", "conversations.list"] {
        let key = if method == "users.list" {
            "members"
        } else {
            "channels"
        };
        let all = h.api_ok(method, json!({})).await[key]
            .as_array()
            .unwrap()
            .len();
        assert!(all >= 2, "{method}");
        let mut seen = 0;
        let mut cursor = String::new();
        for _ in 0..all + 1 {
            let v = h
                .api_ok(method, json!({"limit": 1, "cursor": cursor}))
                .await;
            seen += v[key].as_array().unwrap().len();
            cursor = v["response_metadata"]["next_cursor"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if cursor.is_empty() {
                break;
            }
        }
        assert!(cursor.is_empty(), "{method}: pagination ends");
        assert_eq!(seen, all, "{method}: every item once");
    }
}

#[tokio::test]
async fn replies_carry_the_bot_tokens_scopes_in_x_oauth_scopes() {
    // As Slack does on every Web API reply: what the token was granted, so an app can tell a
    // missing scope before it hits `missing_scope`.
    let h = Harness::with_manifest(&socket_manifest(
        &["chat:write", "channels:read"],
        &["app_mention"],
    ))
    .await;
    let v = h.bot("auth.test", json!({})).await;
    assert!(v.ok(), "{}", v.text);
    assert_eq!(
        v.header("x-oauth-scopes").as_deref(),
        Some("channels:read,chat:write")
    );
    // Also on refusals, so the caller sees what it has.
    let v = h.bot("users.list", json!({})).await;
    assert_eq!(v.error(), "missing_scope");
    assert_eq!(
        v.header("x-oauth-scopes").as_deref(),
        Some("channels:read,chat:write")
    );
}
