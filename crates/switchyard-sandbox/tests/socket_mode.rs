//! Socket Mode, docs/sandbox.md §3 (and the socket actions of §7).

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn connections_open_gives_a_ws_url_and_hello() {
    let h = Harness::new().await;
    let url = open_socket_url(&h).await;
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    assert!(url.contains("ticket="), "{url}");
    let mut client = SocketClient::connect_url(&url, ack_all())
        .await
        .expect("connects");
    let hello = client.next_json(WAIT).await.expect("hello");
    assert_eq!(hello["type"], "hello", "{hello}");
    assert_eq!(hello["num_connections"], 1, "{hello}");

    let second = SocketClient::connect(&h, ack_all()).await;
    assert_eq!(second.hello["num_connections"], 2, "{}", second.hello);

    let conns = h.read("socket").await;
    assert_eq!(
        conns["connections"].as_array().map(Vec::len),
        Some(2),
        "GET /_sandbox/socket: {conns}"
    );
}

#[tokio::test]
async fn a_ticket_is_good_for_one_connection() {
    let h = Harness::new().await;
    let url = open_socket_url(&h).await;
    let mut first = SocketClient::connect_url(&url, ack_all())
        .await
        .expect("connects");
    assert_eq!(first.next_json(WAIT).await.expect("hello")["type"], "hello");
    match SocketClient::connect_url(&url, ack_all()).await {
        Err(_) => {} // refused at the handshake
        Ok(mut again) => {
            let first_frame = again.next_frame(WAIT).await;
            match first_frame {
                Some(Frame::Json(v)) => assert_ne!(v["type"], "hello", "reused ticket: {v}"),
                Some(Frame::Closed) => {}
                None => panic!("a reused ticket was neither refused nor closed"),
            }
        }
    }
}

#[tokio::test]
async fn app_mention_envelope_and_ack() {
    let h = Harness::new().await;
    let mut client = SocketClient::connect(&h, ack_all()).await;
    let bot = h.bot_user_id();
    let said = h
        .say("alice", "general", &format!("<@{bot}> deploy api"))
        .await;
    let ts = said["ts"].as_str().expect("ts");
    let event_ids = said["event_ids"].as_array().expect("event_ids").clone();
    assert!(!event_ids.is_empty(), "{said}");

    let env = client.expect("app_mention", is_event("app_mention")).await;
    assert!(env["envelope_id"].is_string(), "{env}");
    assert_eq!(env["accepts_response_payload"], false, "{env}");
    assert_eq!(env["retry_attempt"], 0, "{env}");
    let payload = &env["payload"];
    assert_eq!(payload["type"], "event_callback");
    assert_eq!(payload["team_id"], h.sandbox.team_id());
    assert_eq!(payload["api_app_id"], h.sandbox.app_id());
    assert!(
        event_ids.contains(&payload["event_id"]),
        "{payload} vs {said}"
    );
    let event = &payload["event"];
    assert_eq!(event["user"], h.user_id("alice").await);
    assert_eq!(event["channel"], h.channel_id("general").await);
    assert_eq!(event["ts"], ts);
    assert!(
        event["text"]
            .as_str()
            .unwrap()
            .contains(&format!("<@{bot}>"))
    );

    // The plain message event comes too (message.channels).
    let msg = client.expect("message", is_event("message")).await;
    assert_eq!(msg["payload"]["event"]["channel_type"], "channel", "{msg}");

    let d = h
        .settled_delivery(|d| d["event_id"] == payload["event_id"] && d["kind"] == "event")
        .await;
    assert_eq!(d["acked"], true, "{d}");
    assert_eq!(d["outcome"], "acked", "{d}");
    assert_eq!(attempt_count(&d), 1, "{d}");
}

#[tokio::test]
async fn unacked_event_is_redelivered_with_retry_attempt() {
    let h = Harness::with_manifest(&socket_manifest(ALL_SCOPES, &["app_mention"])).await;
    let mut client = SocketClient::connect(&h, ack_none()).await;
    let bot = h.bot_user_id();
    h.say("alice", "general", &format!("<@{bot}> hello")).await;
    let first = client.expect("app_mention", is_event("app_mention")).await;
    assert_eq!(first["retry_attempt"], 0);
    // Not acked: after the ack timeout (3 s) it comes again.
    let again = client.expect("a redelivery", is_event("app_mention")).await;
    assert_eq!(again["retry_attempt"], 1, "{again}");
    assert_eq!(again["retry_reason"], "timeout", "{again}");
    assert_eq!(
        again["payload"]["event_id"], first["payload"]["event_id"],
        "same event"
    );
    client.ack(&again, None);
    let d = h
        .settled_delivery(|d| d["event_id"] == first["payload"]["event_id"])
        .await;
    assert_eq!(d["outcome"], "acked", "{d}");
    assert_eq!(attempt_count(&d), 2, "{d}");
}

#[tokio::test]
async fn never_acked_event_is_retried_three_times_then_fails() {
    let mut config = config_with_manifest(&socket_manifest(ALL_SCOPES, &["app_mention"]));
    config.delivery.ack_timeout = Duration::from_millis(500);
    let h = Harness::start(config).await;
    let mut client = SocketClient::connect(&h, ack_none()).await;
    let bot = h.bot_user_id();
    h.say("alice", "general", &format!("<@{bot}> hello")).await;
    let mut attempts = Vec::new();
    for _ in 0..4 {
        let env = client.expect("an attempt", is_event("app_mention")).await;
        attempts.push(env["retry_attempt"].as_u64().expect("retry_attempt"));
    }
    assert_eq!(attempts, [0, 1, 2, 3]);
    let event_id = h.deliveries().await[0]["event_id"].clone();
    let d = h.settled_delivery(|d| d["event_id"] == event_id).await;
    assert_eq!(d["outcome"], "failed", "{d}");
    assert_eq!(d["acked"], false, "{d}");
    assert_eq!(attempt_count(&d), 4, "{d}");
}

#[tokio::test]
async fn slash_command_ack_payload_in_channel() {
    let h = Harness::new().await;
    let responder: Responder = std::sync::Arc::new(|env: &Value| {
        if env["type"] == "slash_commands" {
            Ack::Payload(json!({"response_type": "in_channel", "text": "Deploying api"}))
        } else {
            Ack::Empty
        }
    });
    let mut client = SocketClient::connect(&h, responder).await;
    let reply = h
        .act(
            "commands",
            json!({"user": "alice", "channel": "general", "command": "/switchyard", "text": "deploy api"}),
        )
        .await;
    assert!(reply["trigger_id"].is_string(), "{reply}");
    assert!(reply["response_url"].is_string(), "{reply}");
    assert!(reply.get("error").is_none_or(Value::is_null), "{reply}");

    let env = client
        .expect("slash_commands", is_envelope("slash_commands"))
        .await;
    assert_eq!(env["accepts_response_payload"], true, "{env}");
    let p = &env["payload"];
    assert_eq!(p["command"], "/switchyard");
    assert_eq!(p["text"], "deploy api");
    assert_eq!(p["user_id"], h.user_id("alice").await);
    assert_eq!(p["channel_id"], h.channel_id("general").await);
    assert_eq!(p["trigger_id"], reply["trigger_id"]);
    assert_eq!(p["response_url"], reply["response_url"]);

    let msg = h
        .wait_item("channels/general/messages", "messages", |m| {
            m["text"] == "Deploying api"
        })
        .await;
    assert_eq!(msg["user"], h.bot_user_id(), "{msg}");
}

#[tokio::test]
async fn slash_command_ack_payload_ephemeral_by_default() {
    let h = Harness::new().await;
    let responder: Responder = std::sync::Arc::new(|env: &Value| {
        if env["type"] == "slash_commands" {
            Ack::Payload(json!({"text": "Only you can see this"}))
        } else {
            Ack::Empty
        }
    });
    let _client = SocketClient::connect(&h, responder).await;
    h.act(
        "commands",
        json!({"user": "bob", "channel": "general", "command": "/switchyard", "text": "status"}),
    )
    .await;
    let bob = h.user_id("bob").await;
    let general = h.channel_id("general").await;
    let e = h
        .wait_item(
            &format!("ephemerals?user={bob}&channel={general}"),
            "ephemerals",
            |e| e["message"]["text"] == "Only you can see this",
        )
        .await;
    assert_eq!(e["user"], bob.as_str(), "{e}");
    assert!(
        h.messages("general").await.is_empty(),
        "nothing in the channel"
    );
}

#[tokio::test]
async fn unacked_command_is_an_operation_timeout_and_not_retried() {
    let mut config = config();
    config.delivery.ack_timeout = Duration::from_millis(800);
    let h = Harness::start(config).await;
    let mut client = SocketClient::connect(&h, ack_none()).await;
    let resp = h
        .post(
            "commands",
            json!({"user": "alice", "channel": "general", "command": "/switchyard", "text": "x"}),
        )
        .await;
    assert_eq!(resp.json["error"], "operation_timeout", "{}", resp.text);
    client
        .expect("slash_commands", is_envelope("slash_commands"))
        .await;
    assert!(
        client
            .find(Duration::from_millis(1500), is_envelope("slash_commands"))
            .await
            .is_none(),
        "commands are not retried"
    );
}

#[tokio::test]
async fn unknown_command_is_refused() {
    let h = Harness::new().await;
    let _client = SocketClient::connect(&h, ack_all()).await;
    let resp = h
        .post(
            "commands",
            json!({"user": "alice", "channel": "general", "command": "/nope", "text": ""}),
        )
        .await;
    assert!(
        (400..500).contains(&resp.status),
        "{} {}",
        resp.status,
        resp.text
    );
    assert_eq!(resp.json["ok"], false);
}

#[tokio::test]
async fn button_click_is_an_interactive_envelope() {
    let h = Harness::new().await;
    let mut client = SocketClient::connect(&h, ack_all()).await;
    let v = h
        .api_ok(
            "chat.postMessage",
            json!({
                "channel": "general",
                "text": "Approve deploy?",
                "blocks": [section("Approve deploy?"), button_block("approval", "approve", "deploy-42")]
            }),
        )
        .await;
    let ts = v["ts"].as_str().unwrap().to_string();
    let reply = h
        .act(
            "actions",
            json!({"user": "bob", "channel": "general", "ts": ts, "action_id": "approve"}),
        )
        .await;
    assert!(reply["response_url"].is_string(), "{reply}");

    let env = client
        .expect("interactive", is_envelope("interactive"))
        .await;
    let p = &env["payload"];
    assert_eq!(p["type"], "block_actions", "{p}");
    assert_eq!(p["user"]["id"], h.user_id("bob").await);
    assert_eq!(p["channel"]["id"], h.channel_id("general").await);
    assert_eq!(p["message"]["ts"], ts.as_str());
    assert_eq!(p["actions"][0]["action_id"], "approve");
    assert_eq!(p["actions"][0]["block_id"], "approval");
    assert_eq!(p["actions"][0]["value"], "deploy-42");
    assert!(
        p["trigger_id"].is_string() && p["response_url"].is_string(),
        "{p}"
    );
    assert_eq!(p["container"]["message_ts"], ts.as_str(), "{p}");
}

#[tokio::test]
async fn disconnect_message_then_close() {
    let h = Harness::new().await;
    let mut client = SocketClient::connect(&h, ack_all()).await;
    h.act("socket/disconnect", json!({"reason": "refresh_requested"}))
        .await;
    let msg = client.next_json(WAIT).await.expect("a disconnect message");
    assert_eq!(msg["type"], "disconnect", "{msg}");
    assert_eq!(msg["reason"], "refresh_requested", "{msg}");
    assert!(client.closed(WAIT).await, "closed after the disconnect");
}

#[tokio::test]
async fn disconnect_with_close_closes_at_once_and_new_connections_work() {
    let h = Harness::new().await;
    let mut a = SocketClient::connect(&h, ack_all()).await;
    let mut b = SocketClient::connect(&h, ack_all()).await;
    h.act(
        "socket/disconnect",
        json!({"reason": "link_disabled", "close": true}),
    )
    .await;
    for c in [&mut a, &mut b] {
        let msg = c.next_json(WAIT).await.expect("a disconnect message");
        assert_eq!(msg["reason"], "link_disabled", "{msg}");
        assert!(c.closed(WAIT).await);
    }
    h.poll("socket", |v| {
        v["connections"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    // The app reconnects and gets events again.
    let mut c = SocketClient::connect(&h, ack_all()).await;
    assert_eq!(c.hello["num_connections"], 1, "{}", c.hello);
    let bot = h.bot_user_id();
    h.say("carol", "general", &format!("<@{bot}> ping")).await;
    c.expect("app_mention", is_event("app_mention")).await;
}

#[tokio::test]
async fn socket_drop_closes_without_a_word() {
    let h = Harness::new().await;
    let mut client = SocketClient::connect(&h, ack_all()).await;
    h.act("socket/drop", json!({})).await;
    match client.next_frame(WAIT).await {
        Some(Frame::Closed) => {}
        other => panic!("expected a bare close, got {other:?}"),
    }
}

#[tokio::test]
async fn eleventh_connection_is_refused() {
    let h = Harness::new().await;
    let mut clients = Vec::new();
    for i in 1..=10 {
        let c = SocketClient::connect(&h, ack_all()).await;
        assert_eq!(c.hello["num_connections"], i, "{}", c.hello);
        clients.push(c);
    }
    let url = open_socket_url(&h).await;
    let mut eleventh = SocketClient::connect_url(&url, ack_all())
        .await
        .expect("the upgrade itself succeeds");
    let msg = eleventh.next_json(WAIT).await.expect("a disconnect");
    assert_eq!(msg["type"], "disconnect", "{msg}");
    assert_eq!(msg["reason"], "too_many_websockets", "{msg}");
    assert!(eleventh.closed(WAIT).await, "then closed");
    let conns = h.read("socket").await;
    assert_eq!(
        conns["connections"].as_array().map(Vec::len),
        Some(10),
        "{conns}"
    );
}

#[tokio::test]
async fn envelopes_go_round_robin() {
    let h = Harness::with_manifest(&socket_manifest(ALL_SCOPES, &["app_mention"])).await;
    let mut a = SocketClient::connect(&h, ack_all()).await;
    let mut b = SocketClient::connect(&h, ack_all()).await;
    let bot = h.bot_user_id();
    h.say("alice", "general", &format!("<@{bot}> one")).await;
    h.say("alice", "general", &format!("<@{bot}> two")).await;
    let got_a = a
        .find(Duration::from_secs(3), is_event("app_mention"))
        .await;
    let got_b = b
        .find(Duration::from_secs(3), is_event("app_mention"))
        .await;
    assert!(
        got_a.is_some() && got_b.is_some(),
        "each connection got one: {got_a:?} {got_b:?}"
    );
}

#[tokio::test]
async fn events_wait_for_a_connection() {
    let h = Harness::with_manifest(&socket_manifest(ALL_SCOPES, &["app_mention"])).await;
    let bot = h.bot_user_id();
    let said = h
        .say("alice", "general", &format!("<@{bot}> anyone?"))
        .await;
    // The app connects a moment later and still gets the event (as a retry or not).
    let mut client = SocketClient::connect(&h, ack_all()).await;
    let env = client.expect("app_mention", is_event("app_mention")).await;
    assert!(
        said["event_ids"]
            .as_array()
            .unwrap()
            .contains(&env["payload"]["event_id"]),
        "{env}"
    );
}

#[tokio::test]
async fn unacked_action_is_an_operation_timeout() {
    let mut config = config();
    config.delivery.ack_timeout = Duration::from_millis(800);
    let h = Harness::start(config).await;
    let mut client = SocketClient::connect(&h, ack_none()).await;
    let ts = h
        .api_ok(
            "chat.postMessage",
            json!({"channel": "general", "text": "t", "blocks": [button_block("b", "go", "1")]}),
        )
        .await["ts"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = h
        .post(
            "actions",
            json!({"user": "alice", "channel": "general", "ts": ts, "action_id": "go"}),
        )
        .await;
    assert_eq!(resp.json["error"], "operation_timeout", "{}", resp.text);
    client
        .expect("interactive", is_envelope("interactive"))
        .await;
    assert!(
        client
            .find(Duration::from_millis(1500), is_envelope("interactive"))
            .await
            .is_none(),
        "interactions are not retried"
    );
}

#[tokio::test]
async fn hello_then_nothing_until_something_happens() {
    let h = Harness::new().await;
    let mut client = SocketClient::connect(&h, ack_all()).await;
    assert!(
        client
            .find(Duration::from_millis(300), |v| v["envelope_id"].is_string())
            .await
            .is_none(),
        "no envelopes out of nowhere"
    );
}

#[tokio::test]
async fn select_menu_choice_is_in_the_action() {
    let h = Harness::new().await;
    let mut client = SocketClient::connect(&h, ack_all()).await;
    let select = json!({
        "type": "actions",
        "block_id": "env",
        "elements": [{
            "type": "static_select",
            "action_id": "pick_env",
            "placeholder": {"type": "plain_text", "text": "Environment"},
            "options": [
                {"text": {"type": "plain_text", "text": "Staging"}, "value": "staging"},
                {"text": {"type": "plain_text", "text": "Production"}, "value": "prod"}
            ]
        }]
    });
    let ts = h
        .api_ok(
            "chat.postMessage",
            json!({"channel": "general", "text": "Where?", "blocks": [select]}),
        )
        .await["ts"]
        .as_str()
        .unwrap()
        .to_string();
    h.act(
        "actions",
        json!({"user": "alice", "channel": "general", "ts": ts, "action_id": "pick_env", "value": "prod"}),
    )
    .await;
    let env = client
        .expect("interactive", is_envelope("interactive"))
        .await;
    let action = &env["payload"]["actions"][0];
    assert_eq!(action["type"], "static_select", "{action}");
    assert_eq!(action["selected_option"]["value"], "prod", "{action}");
    assert_eq!(action["block_id"], "env");

    let resp = h
        .post(
            "actions",
            json!({"user": "alice", "channel": "general", "ts": ts, "action_id": "pick_env", "value": "nope"}),
        )
        .await;
    assert!(
        (400..500).contains(&resp.status),
        "an unknown option: {}",
        resp.text
    );
}
