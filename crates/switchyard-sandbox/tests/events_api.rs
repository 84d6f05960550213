//! Events API delivery over HTTP, docs/sandbox.md §4: a fake app receives signed requests.

mod common;

use std::time::Duration;

use common::*;

/// A fake app and a sandbox in HTTP mode that delivers to it.
async fn http_pair(events: &[&str]) -> (FakeApp, Harness) {
    http_pair_with(events, |_| {}).await
}

async fn http_pair_with(
    events: &[&str],
    tweak: impl FnOnce(&mut SandboxConfig),
) -> (FakeApp, Harness) {
    let app = FakeApp::start().await;
    let mut config = config_with_manifest(&http_manifest(&app.url, events));
    tweak(&mut config);
    let h = Harness::start(config).await;
    (app, h)
}

async fn mention(h: &Harness, text: &str) -> Value {
    let bot = h.bot_user_id();
    h.say("alice", "general", &format!("<@{bot}> {text}")).await
}

#[tokio::test]
async fn url_verification_comes_first_then_signed_events() {
    let (app, h) = http_pair(&["app_mention", "message.channels"]).await;
    let said = mention(&h, "hi").await;
    let events = app
        .wait_for(2, |r| r.path == "/events" && !r.is_handshake())
        .await;

    let all: Vec<Recorded> = app
        .requests()
        .into_iter()
        .filter(|r| r.path == "/events")
        .collect();
    let first = &all[0];
    assert!(first.is_handshake(), "first request: {}", first.text());
    let body = first.json();
    assert!(
        body["challenge"].as_str().is_some_and(|c| !c.is_empty()),
        "{body}"
    );
    assert!(first.signature_valid(h.sandbox.signing_secret()));

    for r in &events {
        assert_eq!(r.method, "POST");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{:?}",
            r.headers
        );
        assert!(
            r.signature_valid(h.sandbox.signing_secret()),
            "bad signature on {}",
            r.text()
        );
        assert!(
            !r.signature_valid("another-secret"),
            "the check itself works"
        );
        let ts: u64 = r
            .header("x-slack-request-timestamp")
            .unwrap()
            .parse()
            .expect("a unix timestamp");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(ts.abs_diff(now) < 300, "timestamp {ts} vs now {now}");
        assert!(r.header("x-slack-retry-num").is_none(), "first attempts");
        let v = r.json();
        assert_eq!(v["type"], "event_callback");
        assert_eq!(v["team_id"], h.sandbox.team_id());
        assert_eq!(v["api_app_id"], h.sandbox.app_id());
        assert!(
            said["event_ids"]
                .as_array()
                .unwrap()
                .contains(&v["event_id"])
        );
    }
    let types: Vec<String> = events.iter().filter_map(Recorded::event_type).collect();
    assert!(types.contains(&"app_mention".to_string()), "{types:?}");
    assert!(types.contains(&"message".to_string()), "{types:?}");
}

#[tokio::test]
async fn only_subscribed_events_are_sent() {
    let (app, h) = http_pair(&["app_mention"]).await;
    h.say("alice", "general", "no mention here").await;
    mention(&h, "now").await;
    app.wait_for(1, is_callback("app_mention")).await;
    let d = h
        .settled_delivery(|d| d["kind"] == "event" && d["name"] == "app_mention")
        .await;
    assert_eq!(d["outcome"], "acked", "{d}");
    assert!(
        app.requests()
            .iter()
            .all(|r| r.event_type().as_deref() != Some("message")),
        "message.channels is not subscribed"
    );
}

#[tokio::test]
async fn retried_on_500_with_same_event_id() {
    let (app, h) = http_pair(&["app_mention"]).await;
    app.script([AppReply::status(500)]);
    let said = mention(&h, "retry me").await;
    let reqs = app.wait_for(2, is_callback("app_mention")).await;
    assert!(reqs[0].header("x-slack-retry-num").is_none());
    assert_eq!(reqs[1].header("x-slack-retry-num").as_deref(), Some("1"));
    assert_eq!(
        reqs[1].header("x-slack-retry-reason").as_deref(),
        Some("http_error")
    );
    assert_eq!(reqs[0].event_id(), reqs[1].event_id());
    assert!(
        said["event_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(reqs[1].event_id().unwrap()))
    );
    assert!(reqs[1].signature_valid(h.sandbox.signing_secret()));
    let event_id = reqs[0].event_id().unwrap();
    let d = h.settled_delivery(|d| d["event_id"] == event_id).await;
    assert_eq!(d["outcome"], "acked", "{d}");
    assert_eq!(attempt_count(&d), 2, "{d}");
}

#[tokio::test]
async fn gives_up_after_three_retries() {
    let (app, h) = http_pair(&["app_mention"]).await;
    app.respond_with(|_| AppReply::status(503));
    mention(&h, "never").await;
    let reqs = app.wait_for(4, is_callback("app_mention")).await;
    let nums: Vec<Option<String>> = reqs.iter().map(|r| r.header("x-slack-retry-num")).collect();
    assert_eq!(
        nums,
        [None, Some("1".into()), Some("2".into()), Some("3".into())]
    );
    let event_id = reqs[0].event_id().unwrap();
    assert!(
        reqs.iter()
            .all(|r| r.event_id().as_deref() == Some(&event_id))
    );
    let d = h.settled_delivery(|d| d["event_id"] == event_id).await;
    assert_eq!(d["outcome"], "failed", "{d}");
    assert_eq!(attempt_count(&d), 4, "{d}");
    assert_eq!(app.wait_for(4, is_callback("app_mention")).await.len(), 4);
}

#[tokio::test]
async fn retried_after_a_slow_reply() {
    let (app, h) = http_pair(&["app_mention"]).await;
    app.script([AppReply::ok().after(Duration::from_millis(3500))]);
    mention(&h, "slow").await;
    let reqs = app.wait_for(2, is_callback("app_mention")).await;
    assert_eq!(reqs[1].header("x-slack-retry-num").as_deref(), Some("1"));
    assert_eq!(
        reqs[1].header("x-slack-retry-reason").as_deref(),
        Some("http_timeout")
    );
    assert_eq!(reqs[0].event_id(), reqs[1].event_id());
    let event_id = reqs[0].event_id().unwrap();
    let d = h.settled_delivery(|d| d["event_id"] == event_id).await;
    assert_eq!(d["outcome"], "acked", "{d}");
}

#[tokio::test]
async fn no_retry_header_stops_retries() {
    let (app, h) = http_pair(&["app_mention"]).await;
    app.respond_with(|_| AppReply::status(500).with_header("X-Slack-No-Retry", "1"));
    mention(&h, "once").await;
    let reqs = app.wait_for(1, is_callback("app_mention")).await;
    let event_id = reqs[0].event_id().unwrap();
    let d = h.settled_delivery(|d| d["event_id"] == event_id).await;
    assert_eq!(d["outcome"], "no_retry", "{d}");
    // Longer than the whole retry schedule (0, 200, 500 ms).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        app.requests()
            .iter()
            .filter(|r| is_callback("app_mention")(r))
            .count(),
        1
    );
}

#[tokio::test]
async fn connection_failures_are_retried_as_connection_failed() {
    let (app, h) = http_pair(&["app_mention"]).await;
    // The request URL is verified and works...
    mention(&h, "first").await;
    app.wait_for(1, is_callback("app_mention")).await;
    // ...then the app goes away.
    app.stop().await;
    let said = mention(&h, "second").await;
    let event_id = said["event_ids"][0].clone();
    let d = h.settled_delivery(|d| d["event_id"] == event_id).await;
    assert_eq!(d["outcome"], "failed", "{d}");
    assert_eq!(attempt_count(&d), 4, "{d}");
    let results: Vec<&str> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["result"].as_str())
        .collect();
    assert!(
        results.iter().all(|r| *r == "connection_failed"),
        "{results:?}"
    );
}

#[tokio::test]
async fn handshake_is_made_once_per_request_url() {
    // Two events (message and app_mention) at once: still one url_verification.
    let (app, h) = http_pair(&["app_mention", "message.channels"]).await;
    mention(&h, "both").await;
    app.wait_for(2, |r| r.path == "/events" && !r.is_handshake())
        .await;
    mention(&h, "again").await;
    app.wait_for(4, |r| r.path == "/events" && !r.is_handshake())
        .await;
    let handshakes = app.requests().iter().filter(|r| r.is_handshake()).count();
    assert_eq!(handshakes, 1, "one url_verification per request URL");
}

#[tokio::test]
async fn command_form_and_in_channel_ack() {
    let (app, h) = http_pair(&["app_mention"]).await;
    app.respond_with(|r| {
        if r.path == "/commands" {
            AppReply::json(json!({"response_type": "in_channel", "text": "Deploying api"}))
        } else {
            AppReply::ok()
        }
    });
    let reply = h
        .act(
            "commands",
            json!({"user": "alice", "channel": "general", "command": "/switchyard", "text": "deploy api"}),
        )
        .await;
    assert_eq!(reply["ack"]["status"], 200, "{reply}");
    let reqs = app.wait_for(1, |r| r.path == "/commands").await;
    let r = &reqs[0];
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded")),
        "{:?}",
        r.headers
    );
    assert!(r.signature_valid(h.sandbox.signing_secret()));
    let form = r.form();
    assert_eq!(form["command"], "/switchyard");
    assert_eq!(form["text"], "deploy api");
    assert_eq!(form["user_id"], h.user_id("alice").await);
    assert_eq!(form["user_name"], "alice");
    assert_eq!(form["channel_id"], h.channel_id("general").await);
    assert_eq!(form["team_id"], h.sandbox.team_id());
    assert_eq!(form["trigger_id"], reply["trigger_id"].as_str().unwrap());
    assert_eq!(
        form["response_url"],
        reply["response_url"].as_str().unwrap()
    );

    let msg = h
        .wait_item("channels/general/messages", "messages", |m| {
            m["text"] == "Deploying api"
        })
        .await;
    assert_eq!(msg["user"], h.bot_user_id());
}

#[tokio::test]
async fn command_plain_text_ack_is_ephemeral() {
    let (app, h) = http_pair(&["app_mention"]).await;
    app.respond_with(|_| AppReply {
        body: "Working on it".into(),
        ..AppReply::ok()
    });
    h.act(
        "commands",
        json!({"user": "bob", "channel": "general", "command": "/switchyard", "text": "x"}),
    )
    .await;
    let bob = h.user_id("bob").await;
    let general = h.channel_id("general").await;
    h.wait_item(
        &format!("ephemerals?user={bob}&channel={general}"),
        "ephemerals",
        |e| e["message"]["text"] == "Working on it",
    )
    .await;
}

#[tokio::test]
async fn command_error_status_is_reported() {
    let (app, h) = http_pair(&["app_mention"]).await;
    app.respond_with(|_| AppReply::status(500));
    let resp = h
        .post(
            "commands",
            json!({"user": "bob", "channel": "general", "command": "/switchyard", "text": "x"}),
        )
        .await;
    assert_eq!(resp.json["ack"]["status"], 500, "{}", resp.text);
    assert_eq!(
        app.wait_for(1, |r| r.path == "/commands").await.len(),
        1,
        "commands are not retried"
    );
}

#[tokio::test]
async fn interaction_is_a_signed_payload_form() {
    let (app, h) = http_pair(&["app_mention"]).await;
    let v = h
        .api_ok(
            "chat.postMessage",
            json!({"channel": "general", "text": "Approve?", "blocks": [button_block("b1", "approve", "yes")]}),
        )
        .await;
    let ts = v["ts"].as_str().unwrap().to_string();
    let reply = h
        .act(
            "actions",
            json!({"user": "alice", "channel": "general", "ts": ts, "action_id": "approve", "block_id": "b1"}),
        )
        .await;
    let reqs = app.wait_for(1, |r| r.path == "/interactive").await;
    let r = &reqs[0];
    assert!(r.signature_valid(h.sandbox.signing_secret()));
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    );
    let p = r.payload();
    assert_eq!(p["type"], "block_actions", "{}", r.text());
    assert_eq!(p["actions"][0]["action_id"], "approve");
    assert_eq!(p["actions"][0]["value"], "yes");
    assert_eq!(p["message"]["ts"], ts.as_str());
    assert_eq!(p["user"]["id"], h.user_id("alice").await);
    assert_eq!(p["response_url"], reply["response_url"]);
    assert_eq!(p["trigger_id"], reply["trigger_id"]);
}

#[tokio::test]
async fn view_submission_ack_errors_applied_over_http() {
    let (app, h) = http_pair(&["app_mention"]).await;
    app.respond_with(|r| {
        if r.path == "/interactive" && r.payload()["type"] == "view_submission" {
            AppReply::json(json!({
                "response_action": "errors",
                "errors": {"reason": "Say why"}
            }))
        } else {
            AppReply::ok()
        }
    });
    let cmd = h
        .act(
            "commands",
            json!({"user": "alice", "channel": "general", "command": "/switchyard", "text": "x"}),
        )
        .await;
    let trigger_id = cmd["trigger_id"].as_str().unwrap();
    h.api_ok(
        "views.open",
        json!({"trigger_id": trigger_id, "view": modal("Why", "why")}),
    )
    .await;
    let v = h
        .act(
            "views/submit",
            json!({"user": "alice", "values": {"reason": {"text": "x"}}}),
        )
        .await;
    assert_eq!(v["view_closed"], false, "{v}");
    assert_eq!(v["errors"]["reason"], "Say why", "{v}");
    let reqs = app
        .wait_for(1, |r| r.payload()["type"] == "view_submission")
        .await;
    let p = reqs[0].payload();
    assert_eq!(p["view"]["callback_id"], "why");
    assert!(reqs[0].signature_valid(h.sandbox.signing_secret()));
}

#[tokio::test]
async fn retry_schedule_set_through_the_control_api() {
    let (app, h) = http_pair_with(&["app_mention"], |c| {
        // Slack's schedule (1 min, 5 min) would make this test wait minutes.
        c.delivery.retry_delays = vec![
            Duration::ZERO,
            Duration::from_secs(60),
            Duration::from_secs(300),
        ];
    })
    .await;
    let resp = h
        .put(
            "delivery",
            json!({"retry_delays_ms": [0, 100, 100], "ack_timeout_ms": 3000}),
        )
        .await;
    assert!((200..300).contains(&resp.status), "{}", resp.text);
    app.respond_with(|_| AppReply::status(500));
    mention(&h, "x").await;
    app.wait_for(4, is_callback("app_mention")).await;
}

#[tokio::test]
async fn slow_command_reply_is_an_operation_timeout() {
    let (app, h) = http_pair_with(&["app_mention"], |c| {
        c.delivery.ack_timeout = Duration::from_millis(500);
    })
    .await;
    app.script([AppReply::json(json!({"text": "too late"})).after(Duration::from_millis(1500))]);
    let resp = h
        .post(
            "commands",
            json!({"user": "alice", "channel": "general", "command": "/switchyard", "text": "x"}),
        )
        .await;
    assert_eq!(resp.json["error"], "operation_timeout", "{}", resp.text);
    // The late reply is not applied.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let alice = h.user_id("alice").await;
    let general = h.channel_id("general").await;
    let eph = h
        .read(&format!("ephemerals?user={alice}&channel={general}"))
        .await;
    assert!(!eph.to_string().contains("too late"), "{eph}");
}

#[tokio::test]
async fn failed_handshake_is_retried_before_the_event() {
    let (app, h) = http_pair(&["app_mention"]).await;
    app.fail_handshakes(1);
    let said = mention(&h, "verify me").await;
    let reqs = app.wait_for(1, is_callback("app_mention")).await;
    let r = &reqs[0];
    assert!(
        said["event_ids"]
            .as_array()
            .unwrap()
            .contains(&r.json()["event_id"])
    );
    // The app never saw the first attempt; the one it sees is a retry for a documented reason.
    assert_eq!(r.header("x-slack-retry-num").as_deref(), Some("1"));
    let reason = r.header("x-slack-retry-reason").unwrap_or_default();
    assert!(
        ["http_timeout", "http_error", "connection_failed"].contains(&reason.as_str()),
        "X-Slack-Retry-Reason {reason:?} is not one of docs/sandbox.md §4's"
    );
    let handshakes: Vec<Recorded> = app
        .requests()
        .into_iter()
        .filter(Recorded::is_handshake)
        .collect();
    assert_eq!(handshakes.len(), 2, "the failed one and the good one");
}

#[tokio::test]
async fn manifest_put_switches_from_socket_mode_to_http() {
    let app = FakeApp::start().await;
    let h = Harness::new().await; // the built-in manifest: Socket Mode
    let mut socket = SocketClient::connect(&h, ack_all()).await;
    mention(&h, "over the socket").await;
    socket.expect("app_mention", is_event("app_mention")).await;

    let resp = h
        .http
        .put(h.control_url("app/manifest"))
        .header("content-type", "application/json")
        .body(http_manifest(&app.url, &["app_mention"]))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.status());
    let said = mention(&h, "over HTTP").await;
    let reqs = app.wait_for(1, is_callback("app_mention")).await;
    assert_eq!(reqs[0].json()["event_id"], said["event_ids"][0]);
    assert!(
        socket
            .find(Duration::from_millis(300), is_event("app_mention"))
            .await
            .is_none(),
        "nothing more over the socket"
    );
}

/// `PUT /_sandbox/delivery/origins`: deliveries spread round robin over several apps (as a load
/// balancer in front of replicas), the manifest's paths kept; a replica that refuses
/// connections is passed over; a bad origin is a 400.
#[tokio::test]
async fn deliveries_spread_over_origins_round_robin() {
    let (a, h) = http_pair(&["app_mention"]).await;
    let b = FakeApp::start().await;
    let set = h
        .put("delivery/origins", json!({"origins": [a.url, b.url]}))
        .await;
    assert!(set.ok(), "{}", set.text);
    let got = h.read("delivery/origins").await;
    assert_eq!(got["origins"], json!([a.url, b.url]));
    for i in 0..4 {
        mention(&h, &format!("hi {i}")).await;
    }
    let on_a = a.wait_for(2, is_callback("app_mention")).await;
    let on_b = b.wait_for(2, is_callback("app_mention")).await;
    assert_eq!(on_a.len() + on_b.len(), 4, "each event once");
    assert!(on_b.iter().all(|r| r.path == "/events"), "the path is kept");
    // Each origin answered its own url_verification handshake.
    assert!(b.requests().iter().any(|r| r.is_handshake()));
    // Commands too.
    for _ in 0..2 {
        let reply = h
            .act(
                "commands",
                json!({"user": "alice", "channel": "general", "command": "/switchyard", "text": ""}),
            )
            .await;
        assert_eq!(reply["ack"]["status"], 200, "{reply}");
    }
    a.wait_for(1, |r| r.path == "/commands").await;
    b.wait_for(1, |r| r.path == "/commands").await;

    // One replica down: every delivery reaches the other, none waits for a retry.
    a.stop().await;
    for i in 0..3 {
        mention(&h, &format!("after {i}")).await;
    }
    b.wait_for(5, is_callback("app_mention")).await;
    let retried = b
        .requests()
        .iter()
        .filter(|r| r.header("x-slack-retry-num").is_some())
        .count();
    assert_eq!(retried, 0, "passed over, not retried");

    let bad = h
        .put("delivery/origins", json!({"origins": ["not a url"]}))
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let cleared = h.put("delivery/origins", json!({"origins": []})).await;
    assert!(cleared.ok());
}
