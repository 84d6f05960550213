//! The control API (`/_sandbox/…`), docs/sandbox.md §5: acting as people and reading back.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;

#[tokio::test]
async fn info_describes_the_sandbox() {
    let h = Harness::new().await;
    let v = h.read("info").await;
    assert_eq!(v["team_id"], "T0SANDBOX");
    assert_eq!(v["team_id"], h.sandbox.team_id());
    assert_eq!(v["app_id"], h.sandbox.app_id());
    assert_eq!(v["bot_user_id"], h.bot_user_id());
    assert_eq!(v["signing_secret"], "sandbox-signing-secret");
    assert_eq!(v["signing_secret"], h.sandbox.signing_secret());
    let api_url = v["api_url"].as_str().expect("api_url");
    assert!(api_url.starts_with(&h.url), "{api_url} vs {}", h.url);
    assert!(api_url.contains("/api/"), "{api_url}");
    let tokens = v["tokens"].to_string();
    assert!(tokens.contains("xoxb-sandbox-bot"), "{tokens}");
    assert!(tokens.contains("xapp-sandbox-app"), "{tokens}");
    assert_eq!(h.sandbox.bot_token(), "xoxb-sandbox-bot");
    assert_eq!(h.sandbox.app_token(), "xapp-sandbox-app");
    assert_eq!(
        h.sandbox.user_token("alice").as_deref(),
        Some("xoxp-sandbox-alice")
    );
    assert_eq!(h.sandbox.user_token("nobody"), None);
    assert_eq!(
        h.sandbox.user_token("deploybot"),
        None,
        "bots have no user token"
    );
}

#[tokio::test]
async fn users_and_channels_reads() {
    let h = Harness::new().await;
    let users = h.read("users").await.to_string();
    for name in ["alice", "bob", "carol", "deploybot"] {
        assert!(users.contains(name), "{name} in {users}");
    }
    let channels = h.read("channels").await.to_string();
    for name in ["general", "alerts", "ops"] {
        assert!(channels.contains(name), "{name} in {channels}");
    }
}

#[tokio::test]
async fn control_errors_are_4xx_json() {
    let h = Harness::new().await;
    let resp = h
        .post(
            "messages",
            json!({"user": "nobody", "channel": "general", "text": "x"}),
        )
        .await;
    assert!(
        (400..500).contains(&resp.status),
        "{} {}",
        resp.status,
        resp.text
    );
    assert_eq!(resp.json["ok"], false, "{}", resp.text);
    assert!(resp.json["error"].is_string(), "{}", resp.text);

    let resp = h
        .post(
            "messages",
            json!({"user": "alice", "channel": "nowhere", "text": "x"}),
        )
        .await;
    assert!(
        (400..500).contains(&resp.status),
        "{} {}",
        resp.status,
        resp.text
    );
    assert_eq!(resp.json["ok"], false);

    let resp = h.get("channels/nowhere/messages").await;
    assert!(
        (400..500).contains(&resp.status),
        "{} {}",
        resp.status,
        resp.text
    );

    let resp = h
        .http
        .post(h.control_url("messages"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "{:?}", resp.status());
}

#[tokio::test]
async fn message_makes_message_and_app_mention_events() {
    let h = Harness::new().await;
    let mut app = SocketClient::connect(&h, ack_all()).await;
    let bot = h.bot_user_id();
    let said = h
        .say("alice", "#general", &format!("hey <@{bot}> status?"))
        .await;
    assert_eq!(said["channel"], h.channel_id("general").await);
    let ids = said["event_ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 2, "a message and an app_mention: {said}");
    let mention = app.expect("app_mention", is_event("app_mention")).await;
    let message = app.expect("message", is_event("message")).await;
    assert!(ids.contains(&mention["payload"]["event_id"]));
    assert!(ids.contains(&message["payload"]["event_id"]));
    assert_ne!(
        mention["payload"]["event_id"],
        message["payload"]["event_id"]
    );
    assert_eq!(
        message["payload"]["event"]["text"],
        format!("hey <@{bot}> status?")
    );

    let msgs = h.messages("general").await;
    assert_eq!(msgs[0]["user"], h.user_id("alice").await);
    assert_eq!(msgs[0]["ts"], said["ts"]);

    // A message without a mention makes only a message event.
    let plain = h.say("bob", "general", "no mention").await;
    assert_eq!(plain["event_ids"].as_array().unwrap().len(), 1, "{plain}");
}

#[tokio::test]
async fn no_message_events_where_the_bot_is_not() {
    let h = Harness::new().await;
    let mut app = SocketClient::connect(&h, ack_all()).await;
    let said = h.say("alice", "ops", "private talk").await;
    assert!(
        said["event_ids"].as_array().is_none_or(Vec::is_empty),
        "the bot is not in #ops: {said}"
    );
    assert!(
        app.find(Duration::from_millis(500), is_event("message"))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn retried_app_mention_keeps_its_event_id() {
    let mut config = config_with_manifest(&socket_manifest(ALL_SCOPES, &["app_mention"]));
    config.delivery.ack_timeout = Duration::from_millis(500);
    let h = Harness::start(config).await;
    let first_seen = Arc::new(std::sync::Mutex::new(false));
    let seen = first_seen.clone();
    // Ack only the second attempt.
    let responder: Responder = Arc::new(move |_env: &Value| {
        let mut s = seen.lock().unwrap();
        if *s {
            Ack::Empty
        } else {
            *s = true;
            Ack::None
        }
    });
    let mut app = SocketClient::connect(&h, responder).await;
    let bot = h.bot_user_id();
    let said = h.say("bob", "general", &format!("<@{bot}> again")).await;
    let a = app.expect("app_mention", is_event("app_mention")).await;
    let b = app.expect("retry", is_event("app_mention")).await;
    assert_eq!(a["payload"]["event_id"], b["payload"]["event_id"]);
    assert_eq!(said["event_ids"], json!([a["payload"]["event_id"]]));
    assert_eq!(b["retry_attempt"], 1);
    let d = h
        .settled_delivery(|d| d["event_id"] == a["payload"]["event_id"])
        .await;
    assert_eq!(d["outcome"], "acked", "{d}");
}

#[tokio::test]
async fn thread_replies_through_the_control_api() {
    let h = Harness::new().await;
    let mut app = SocketClient::connect(&h, ack_all()).await;
    let parent = h.say("alice", "general", "incident!").await;
    let ts = parent["ts"].as_str().unwrap().to_string();
    h.act(
        "messages",
        json!({"user": "bob", "channel": "general", "text": "on it", "thread_ts": ts}),
    )
    .await;
    let reply = app
        .expect("the reply's message event", |v| {
            is_event("message")(v) && v["payload"]["event"]["text"] == "on it"
        })
        .await;
    assert_eq!(reply["payload"]["event"]["thread_ts"], ts.as_str());

    h.api_ok(
        "chat.postMessage",
        json!({"channel": "general", "text": "bot reply", "thread_ts": ts}),
    )
    .await;
    let thread = h
        .wait_list(&format!("channels/general/threads/{ts}"), "messages", 3)
        .await;
    let texts: Vec<&str> = thread.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["incident!", "on it", "bot reply"]);
    let top = h.messages("general").await;
    assert_eq!(top.len(), 1, "replies are not top level: {top:?}");
    assert_eq!(top[0]["reply_count"], 2);
}

#[tokio::test]
async fn dms_to_and_from_the_bot() {
    let h = Harness::new().await;
    let mut app = SocketClient::connect(&h, ack_all()).await;
    let alice = h.user_id("alice").await;
    let dm = h
        .api_ok("conversations.open", json!({"users": alice}))
        .await["channel"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    h.act(
        "messages",
        json!({"user": "alice", "channel": dm, "text": "help me"}),
    )
    .await;
    let env = app.expect("message.im", is_event("message")).await;
    assert_eq!(env["payload"]["event"]["channel_type"], "im", "{env}");
    assert_eq!(env["payload"]["event"]["channel"], dm.as_str());
    h.api_ok("chat.postMessage", json!({"channel": dm, "text": "sure"}))
        .await;
    let msgs = h.wait_list("dms/alice", "messages", 2).await;
    let texts: Vec<&str> = msgs.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["help me", "sure"]);
}

#[tokio::test]
async fn reactions_by_people() {
    let h = Harness::new().await;
    let mut app = SocketClient::connect(&h, ack_all()).await;
    let ts = h.bot_post("general", "deploy done").await;
    h.act(
        "reactions",
        json!({"user": "carol", "channel": "general", "ts": ts, "name": "tada"}),
    )
    .await;
    let added = app
        .expect("reaction_added", is_event("reaction_added"))
        .await;
    let e = &added["payload"]["event"];
    assert_eq!(e["reaction"], "tada");
    assert_eq!(e["user"], h.user_id("carol").await);
    assert_eq!(e["item"]["ts"], ts.as_str());
    assert_eq!(e["item"]["channel"], h.channel_id("general").await);
    assert_eq!(e["item_user"], h.bot_user_id());
    let msgs = h.messages("general").await;
    assert_eq!(msgs[0]["reactions"][0]["name"], "tada");
    assert_eq!(msgs[0]["reactions"][0]["count"], 1);

    h.act(
        "reactions/remove",
        json!({"user": "carol", "channel": "general", "ts": ts, "name": "tada"}),
    )
    .await;
    let removed = app
        .expect("reaction_removed", is_event("reaction_removed"))
        .await;
    assert_eq!(removed["payload"]["event"]["reaction"], "tada");
    let msgs = h.messages("general").await;
    assert!(
        msgs[0]["reactions"].as_array().is_none_or(Vec::is_empty),
        "{:?}",
        msgs[0]
    );
}

#[tokio::test]
async fn join_and_leave() {
    let h = Harness::new().await;
    let mut app = SocketClient::connect(&h, ack_all()).await;
    h.act(
        "channels/join",
        json!({"user": "carol", "channel": "alerts"}),
    )
    .await;
    let joined = app
        .expect("member_joined_channel", is_event("member_joined_channel"))
        .await;
    let carol = h.user_id("carol").await;
    let alerts = h.channel_id("alerts").await;
    assert_eq!(joined["payload"]["event"]["user"], carol.as_str());
    assert_eq!(joined["payload"]["event"]["channel"], alerts.as_str());
    let members = h
        .api_ok("conversations.members", json!({"channel": alerts}))
        .await;
    assert!(
        members["members"]
            .as_array()
            .unwrap()
            .contains(&json!(carol))
    );

    h.act(
        "channels/leave",
        json!({"user": "carol", "channel": "alerts"}),
    )
    .await;
    let left = app
        .expect("member_left_channel", is_event("member_left_channel"))
        .await;
    assert_eq!(left["payload"]["event"]["user"], carol.as_str());
    let members = h
        .api_ok("conversations.members", json!({"channel": alerts}))
        .await;
    assert!(
        !members["members"]
            .as_array()
            .unwrap()
            .contains(&json!(carol))
    );
}

#[tokio::test]
async fn app_home_opened() {
    let h = Harness::new().await;
    let mut app = SocketClient::connect(&h, ack_all()).await;
    h.act("app_home", json!({"user": "bob"})).await;
    let env = app
        .expect("app_home_opened", is_event("app_home_opened"))
        .await;
    assert_eq!(env["payload"]["event"]["user"], h.user_id("bob").await);
}

// ------------------------------------------------------------------------------------------
// Views: submit and close
// ------------------------------------------------------------------------------------------

/// Connects an app that acks view submissions with `on_submit`, and opens a modal for alice.
async fn modal_app(h: &Harness, on_submit: Value) -> (SocketClient, String) {
    let responder: Responder = Arc::new(move |env: &Value| {
        if env["type"] == "interactive" && env["payload"]["type"] == "view_submission" {
            if on_submit.is_null() {
                Ack::Empty
            } else {
                Ack::Payload(on_submit.clone())
            }
        } else {
            Ack::Empty
        }
    });
    let app = SocketClient::connect(h, responder).await;
    let cmd = h
        .act(
            "commands",
            json!({"user": "alice", "channel": "general", "command": "/switchyard", "text": "form"}),
        )
        .await;
    let v = h
        .api_ok(
            "views.open",
            json!({"trigger_id": cmd["trigger_id"], "view": modal("Why", "why")}),
        )
        .await;
    (app, v["view"]["id"].as_str().unwrap().to_string())
}

fn open_modals(views: &Value) -> Vec<Value> {
    views["views"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["type"] == "modal")
        .cloned()
        .collect()
}

#[tokio::test]
async fn submit_with_empty_ack_closes_and_sends_values() {
    let h = Harness::new().await;
    let (mut app, view_id) = modal_app(&h, Value::Null).await;
    let v = h
        .act(
            "views/submit",
            json!({"user": "alice", "view_id": view_id, "values": {"reason": {"text": "because"}}}),
        )
        .await;
    assert_eq!(v["view_closed"], true, "{v}");
    let env = app
        .expect("view_submission", |e| {
            e["type"] == "interactive" && e["payload"]["type"] == "view_submission"
        })
        .await;
    let p = &env["payload"];
    assert_eq!(p["view"]["id"], view_id.as_str());
    assert_eq!(p["view"]["callback_id"], "why");
    assert_eq!(
        p["view"]["state"]["values"]["reason"]["text"]["value"],
        "because"
    );
    assert_eq!(p["user"]["id"], h.user_id("alice").await);
    assert!(open_modals(&h.read("views?user=alice").await).is_empty());
}

#[tokio::test]
async fn submit_response_action_errors() {
    let h = Harness::new().await;
    let (_app, _view) = modal_app(
        &h,
        json!({"response_action": "errors", "errors": {"reason": "Too short"}}),
    )
    .await;
    let v = h
        .act(
            "views/submit",
            json!({"user": "alice", "values": {"reason": {"text": "x"}}}),
        )
        .await;
    assert_eq!(v["view_closed"], false, "{v}");
    assert_eq!(v["errors"]["reason"], "Too short", "{v}");
    assert_eq!(open_modals(&h.read("views?user=alice").await).len(), 1);
}

#[tokio::test]
async fn submit_response_action_update() {
    let h = Harness::new().await;
    let (_app, view_id) = modal_app(
        &h,
        json!({"response_action": "update", "view": modal("Step 2", "step2")}),
    )
    .await;
    let v = h
        .act(
            "views/submit",
            json!({"user": "alice", "values": {"reason": {"text": "next"}}}),
        )
        .await;
    assert_eq!(v["view_closed"], false, "{v}");
    let modals = open_modals(&h.read("views?user=alice").await);
    assert_eq!(modals.len(), 1, "{modals:?}");
    assert_eq!(modals[0]["title"]["text"], "Step 2");
    assert_eq!(modals[0]["id"], view_id.as_str(), "updated in place");
}

#[tokio::test]
async fn submit_response_action_push_then_clear() {
    let h = Harness::new().await;
    let responder: Responder = Arc::new(|env: &Value| {
        if env["payload"]["type"] != "view_submission" {
            return Ack::Empty;
        }
        if env["payload"]["view"]["callback_id"] == "why" {
            Ack::Payload(json!({"response_action": "push", "view": modal("Confirm", "confirm")}))
        } else {
            Ack::Payload(json!({"response_action": "clear"}))
        }
    });
    let _app = SocketClient::connect(&h, responder).await;
    let cmd = h
        .act(
            "commands",
            json!({"user": "alice", "channel": "general", "command": "/switchyard", "text": "form"}),
        )
        .await;
    h.api_ok(
        "views.open",
        json!({"trigger_id": cmd["trigger_id"], "view": modal("Why", "why")}),
    )
    .await;
    let v = h
        .act(
            "views/submit",
            json!({"user": "alice", "values": {"reason": {"text": "a"}}}),
        )
        .await;
    assert_eq!(v["view_closed"], false, "{v}");
    let modals = open_modals(&h.read("views?user=alice").await);
    assert_eq!(modals.len(), 2, "{modals:?}");
    assert_eq!(modals[1]["title"]["text"], "Confirm", "top last");

    // The top modal (the default view_id) is submitted; `clear` closes them all.
    let v = h
        .act(
            "views/submit",
            json!({"user": "alice", "values": {"reason": {"text": "b"}}}),
        )
        .await;
    assert_eq!(v["view_closed"], true, "{v}");
    assert!(open_modals(&h.read("views?user=alice").await).is_empty());
}

#[tokio::test]
async fn close_sends_view_closed_when_asked() {
    let h = Harness::new().await;
    let mut app = SocketClient::connect(&h, ack_all()).await;
    let cmd = h
        .act(
            "commands",
            json!({"user": "alice", "channel": "general", "command": "/switchyard", "text": ""}),
        )
        .await;
    let mut view = modal("Bye", "bye");
    view["notify_on_close"] = json!(true);
    h.api_ok(
        "views.open",
        json!({"trigger_id": cmd["trigger_id"], "view": view}),
    )
    .await;
    h.act("views/close", json!({"user": "alice"})).await;
    let env = app
        .expect("view_closed", |e| {
            e["type"] == "interactive" && e["payload"]["type"] == "view_closed"
        })
        .await;
    assert_eq!(env["payload"]["view"]["callback_id"], "bye");
    assert!(open_modals(&h.read("views?user=alice").await).is_empty());
}

#[tokio::test]
async fn action_inside_a_view() {
    let h = Harness::new().await;
    let mut app = SocketClient::connect(&h, ack_all()).await;
    let cmd = h
        .act(
            "commands",
            json!({"user": "alice", "channel": "general", "command": "/switchyard", "text": ""}),
        )
        .await;
    let mut view = modal("Pick", "pick");
    view["blocks"]
        .as_array_mut()
        .unwrap()
        .push(button_block("btns", "more", "1"));
    let v = h
        .api_ok(
            "views.open",
            json!({"trigger_id": cmd["trigger_id"], "view": view}),
        )
        .await;
    let view_id = v["view"]["id"].as_str().unwrap().to_string();
    let reply = h
        .act(
            "actions",
            json!({"user": "alice", "view_id": view_id, "action_id": "more", "block_id": "btns"}),
        )
        .await;
    let env = app
        .expect("block_actions", |e| {
            e["type"] == "interactive" && e["payload"]["type"] == "block_actions"
        })
        .await;
    assert_eq!(env["payload"]["view"]["id"], view_id.as_str());
    assert_eq!(env["payload"]["actions"][0]["action_id"], "more");
    // The trigger from the action may push a view.
    let trigger = reply["trigger_id"]
        .as_str()
        .or(env["payload"]["trigger_id"].as_str())
        .unwrap()
        .to_string();
    h.api_ok(
        "views.push",
        json!({"trigger_id": trigger, "view": modal("More", "more")}),
    )
    .await;
    assert_eq!(open_modals(&h.read("views?user=alice").await).len(), 2);
}

// ------------------------------------------------------------------------------------------
// response_url
// ------------------------------------------------------------------------------------------

async fn command_response_url(h: &Harness, user: &str) -> String {
    let cmd = h
        .act(
            "commands",
            json!({"user": user, "channel": "general", "command": "/switchyard", "text": ""}),
        )
        .await;
    cmd["response_url"]
        .as_str()
        .expect("response_url")
        .to_string()
}

async fn post_url(h: &Harness, url: &str, body: Value) -> Resp {
    let req = h.http.post(url).json(&body);
    let resp = bounded("response_url", req.send()).await.expect("POST");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Resp {
        status,
        headers,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

#[tokio::test]
async fn response_url_ephemeral_in_channel_and_five_uses() {
    let h = Harness::new().await;
    let _app = SocketClient::connect(&h, ack_all()).await;
    let url = command_response_url(&h, "alice").await;
    assert!(url.starts_with(&h.url), "a loopback URL: {url}");

    let r = post_url(&h, &url, json!({"text": "use 1"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let alice = h.user_id("alice").await;
    let general = h.channel_id("general").await;
    h.wait_item(
        &format!("ephemerals?user={alice}&channel={general}"),
        "ephemerals",
        |e| e["message"]["text"] == "use 1",
    )
    .await;

    let r = post_url(
        &h,
        &url,
        json!({"response_type": "in_channel", "text": "use 2"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    h.wait_item("channels/general/messages", "messages", |m| {
        m["text"] == "use 2"
    })
    .await;

    for i in 3..=5 {
        let r = post_url(&h, &url, json!({"text": format!("use {i}")})).await;
        assert_eq!(r.status, 200, "use {i}: {}", r.text);
    }
    let r = post_url(&h, &url, json!({"text": "use 6"})).await;
    assert!(
        r.status >= 400,
        "a sixth use is refused: {} {}",
        r.status,
        r.text
    );
    let eph = h
        .read(&format!("ephemerals?user={alice}&channel={general}"))
        .await;
    assert!(
        !eph.to_string().contains("use 6"),
        "the sixth was not posted: {eph}"
    );
}

#[tokio::test]
async fn response_url_replace_and_delete_original() {
    let h = Harness::new().await;
    let _app = SocketClient::connect(&h, ack_all()).await;
    let posted = h
        .api_ok(
            "chat.postMessage",
            json!({"channel": "general", "text": "Approve?", "blocks": [button_block("b", "approve", "1")]}),
        )
        .await;
    let ts = posted["ts"].as_str().unwrap().to_string();
    let click = h
        .act(
            "actions",
            json!({"user": "bob", "channel": "general", "ts": ts, "action_id": "approve"}),
        )
        .await;
    let url = click["response_url"].as_str().unwrap().to_string();
    let r = post_url(
        &h,
        &url,
        json!({
            "replace_original": true,
            "text": "Approved by bob",
            "blocks": [section("Approved by bob"), button_block("b", "approve", "1")]
        }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let msgs = h.messages("general").await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["ts"], ts.as_str(), "same message");
    assert_eq!(msgs[0]["text"], "Approved by bob");

    let click = h
        .act(
            "actions",
            json!({"user": "bob", "channel": "general", "ts": ts, "action_id": "approve"}),
        )
        .await;
    let url = click["response_url"].as_str().unwrap().to_string();
    let r = post_url(&h, &url, json!({"delete_original": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(h.messages("general").await.is_empty());
}

#[tokio::test]
async fn unknown_response_url_is_refused() {
    let h = Harness::new().await;
    let _app = SocketClient::connect(&h, ack_all()).await;
    let url = command_response_url(&h, "alice").await;
    let bogus = format!("{}x", url.trim_end_matches('/'));
    let r = post_url(&h, &bogus, json!({"text": "x"})).await;
    assert!(r.status >= 400, "{} {}", r.status, r.text);
}

// ------------------------------------------------------------------------------------------
// Reading back: api_calls, deliveries, long polls
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn api_calls_are_recorded() {
    let h = Harness::new().await;
    h.bot_post("general", "one").await;
    h.api_err("chat.postMessage", json!({"channel": "nope", "text": "x"}))
        .await;
    h.api_ok("auth.test", json!({})).await;
    let calls = h
        .wait_list("api_calls?method=chat.postMessage", "calls", 2)
        .await;
    assert_eq!(calls.len(), 2, "filtered by method: {calls:?}");
    assert_eq!(calls[0]["method"], "chat.postMessage");
    assert_eq!(calls[0]["args"]["text"], "one");
    assert_eq!(calls[0]["ok"], true);
    assert_eq!(calls[0]["status"], 200);
    assert_eq!(calls[1]["ok"], false);
    assert_eq!(calls[1]["error"], "channel_not_found");
    assert!(
        calls[0]["args"].get("token").is_none(),
        "the token is not in args"
    );
    let all = h.read("api_calls").await;
    assert!(all["calls"].as_array().unwrap().len() >= 3, "{all}");
}

#[tokio::test]
async fn deliveries_are_recorded() {
    let h = Harness::new().await;
    let _app = SocketClient::connect(&h, ack_all()).await;
    let bot = h.bot_user_id();
    let said = h.say("alice", "general", &format!("<@{bot}> hi")).await;
    h.act(
        "commands",
        json!({"user": "alice", "channel": "general", "command": "/switchyard", "text": ""}),
    )
    .await;
    let list = h.wait_list("deliveries", "deliveries", 3).await;
    let mention = list
        .iter()
        .find(|d| d["kind"] == "event" && d["name"] == "app_mention")
        .unwrap_or_else(|| panic!("{list:?}"));
    assert!(
        said["event_ids"]
            .as_array()
            .unwrap()
            .contains(&mention["event_id"])
    );
    let command = list
        .iter()
        .find(|d| d["kind"] == "command")
        .unwrap_or_else(|| panic!("{list:?}"));
    assert_eq!(command["name"], "/switchyard");
    let d = h.settled_delivery(|d| d["id"] == mention["id"]).await;
    assert_eq!(d["acked"], true);
    let attempt = &d["attempts"][0];
    assert!(
        attempt["transport"]
            .as_str()
            .is_some_and(|t| t.starts_with("socket")),
        "{d}"
    );
    assert_eq!(attempt["result"], "acked", "{d}");
}

#[tokio::test]
async fn long_poll_waits_for_new_items() {
    let h = Arc::new(Harness::new().await);
    let poster = {
        let h = h.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            h.say("alice", "alerts", "late").await;
        })
    };
    let msgs = bounded(
        "the long poll",
        h.wait_list("channels/alerts/messages", "messages", 1),
    )
    .await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["text"], "late");
    poster.await.unwrap();

    // Not enough items: it answers what it has once the time is up.
    let v = h
        .read("channels/alerts/messages?wait_for=5&timeout_ms=200")
        .await;
    assert_eq!(v["messages"].as_array().unwrap().len(), 1, "{v}");
}

#[tokio::test]
async fn views_read_includes_home_tab() {
    let h = Harness::new().await;
    let bob = h.user_id("bob").await;
    h.api_ok(
        "views.publish",
        json!({"user_id": bob, "view": {"type": "home", "blocks": [section("hi bob")]}}),
    )
    .await;
    let v = h.read("views?user=bob").await;
    let home = v["views"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["type"] == "home")
        .unwrap_or_else(|| panic!("{v}"))
        .clone();
    assert_eq!(home["blocks"][0]["text"]["text"], "hi bob");
}

// ------------------------------------------------------------------------------------------
// Starting from a seed; shutting down
// ------------------------------------------------------------------------------------------

const CUSTOM_SEED: &str = r#"
[team]
id = "T0CUSTOM"
name = "Custom"
domain = "custom"

[[users]]
name = "erin"
email = "erin@example.com"

[[channels]]
name = "deploys"
members = ["erin"]
app_member = true

[[webhooks]]
channel = "deploys"

[app]
bot_token = "xoxb-custom-bot"
"#;

#[tokio::test]
async fn custom_seed() {
    let mut config = config();
    config.seed = switchyard_sandbox::Seed::parse_toml(CUSTOM_SEED, "custom.toml").unwrap();
    let h = Harness::start(config).await;
    assert_eq!(h.sandbox.team_id(), "T0CUSTOM");
    assert_eq!(h.sandbox.bot_token(), "xoxb-custom-bot");
    assert_eq!(
        h.sandbox.user_token("erin").as_deref(),
        Some("xoxp-sandbox-erin")
    );
    assert_eq!(h.sandbox.user_token("alice"), None, "not in this seed");
    let v = h.api_ok("auth.test", json!({})).await;
    assert_eq!(v["team_id"], "T0CUSTOM");
    let stale = h
        .api_as(Some("xoxb-sandbox-bot"), "auth.test", json!({}))
        .await;
    assert_eq!(stale.error(), "invalid_auth");
    h.bot_post("deploys", "from the seed").await;
    let hooks = h.sandbox.webhook_urls();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert!(hooks[0].1.contains("/services/T0CUSTOM/"), "{hooks:?}");
    let erin = h.user_ok("erin", "auth.test", json!({})).await;
    assert_eq!(erin["user"], "erin");
}

#[tokio::test]
async fn seed_naming_an_unknown_user_is_an_error() {
    let mut config = config();
    config.seed = switchyard_sandbox::Seed::parse_toml(
        "[[channels]]\nname = \"x\"\nmembers = [\"ghost\"]\n",
        "bad.toml",
    )
    .unwrap();
    let err = match Sandbox::start(config).await {
        Ok(_) => panic!("a seed naming an unknown user must not start"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("ghost"), "{err}");
}

#[tokio::test]
async fn shutdown_stops_serving_and_closes_sockets() {
    let h = Harness::new().await;
    let mut app = SocketClient::connect(&h, ack_all()).await;
    let Harness { sandbox, http, url } = h;
    bounded("shutdown", sandbox.shutdown()).await;
    assert!(
        app.closed(WAIT).await,
        "the Socket Mode connection is closed"
    );
    let fresh = reqwest::Client::new();
    let result = bounded(
        "a call after shutdown",
        fresh.get(format!("{url}/api/api.test")).send(),
    )
    .await;
    assert!(result.is_err(), "nothing listens any more: {result:?}");
    drop(http);
}
