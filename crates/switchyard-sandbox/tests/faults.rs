//! Fault injection, docs/sandbox.md §7.

mod common;

use std::time::{Duration, Instant};

use common::*;

async fn add_fault(h: &Harness, rule: Value) -> Value {
    let resp = h.post("faults", rule.clone()).await;
    assert!(
        (200..300).contains(&resp.status) && resp.ok(),
        "POST /_sandbox/faults {rule}: {} {}",
        resp.status,
        resp.text
    );
    resp.json
}

/// The id of the fault just added (from the reply, or else from the list).
async fn fault_id(h: &Harness, added: &Value) -> u64 {
    if let Some(id) = added["id"].as_u64() {
        return id;
    }
    let list = h.read("faults").await;
    list["faults"]
        .as_array()
        .and_then(|a| a.last())
        .and_then(|f| f["id"].as_u64())
        .unwrap_or_else(|| panic!("no fault id in {added} or {list}"))
}

#[tokio::test]
async fn rate_limited_times_then_clean() {
    let h = Harness::new().await;
    add_fault(
        &h,
        json!({"target": "web_api", "method": "chat.postMessage", "fault": "rate_limited", "retry_after": 2, "times": 2}),
    )
    .await;
    for _ in 0..2 {
        let v = h
            .bot(
                "chat.postMessage",
                json!({"channel": "general", "text": "x"}),
            )
            .await;
        assert_eq!(v.status, 429, "{}", v.text);
        assert_eq!(v.header("retry-after").as_deref(), Some("2"));
        assert_eq!(v.error(), "ratelimited");
    }
    // Other methods were never affected.
    h.api_ok("auth.test", json!({})).await;
    // Used up.
    h.bot_post("general", "through").await;
    let msgs = h.messages("general").await;
    assert_eq!(msgs.len(), 1, "the limited calls did nothing: {msgs:?}");
    // Stats count the faults that fired, and keep injected 429s out of the limiter's own.
    let stats = h.read("stats").await;
    assert_eq!(stats["faults_fired"]["web_api.rate_limited"], 2, "{stats}");
    assert_eq!(stats["rate_limited"], json!({}), "{stats}");
    let calls = h.read("api_calls?method=chat.postMessage").await;
    assert_eq!(calls["calls"][0]["error"], "fault_ratelimited", "{calls}");
}

#[tokio::test]
async fn server_error_with_html_body() {
    let h = Harness::new().await;
    add_fault(
        &h,
        json!({"target": "web_api", "method": "auth.test", "fault": "server_error", "status": 503, "times": 1}),
    )
    .await;
    let v = h.bot("auth.test", json!({})).await;
    assert_eq!(v.status, 503);
    assert!(
        v.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        v.headers
    );
    assert!(v.text.trim_start().starts_with('<'), "{}", v.text);
    h.api_ok("auth.test", json!({})).await;

    add_fault(
        &h,
        json!({"target": "web_api", "method": "auth.test", "fault": "server_error", "times": 1}),
    )
    .await;
    assert_eq!(
        h.bot("auth.test", json!({})).await.status,
        500,
        "default status"
    );
}

#[tokio::test]
async fn slow_call_is_answered_and_done() {
    let h = Harness::new().await;
    add_fault(
        &h,
        json!({"target": "web_api", "method": "chat.postMessage", "fault": "slow", "delay_ms": 700, "times": 1}),
    )
    .await;
    let started = Instant::now();
    let ts = h.bot_post("general", "eventually").await;
    assert!(
        started.elapsed() >= Duration::from_millis(650),
        "delayed: {:?}",
        started.elapsed()
    );
    let msgs = h.messages("general").await;
    assert_eq!(msgs[0]["ts"], ts.as_str());
}

#[tokio::test]
async fn reset_drops_the_connection() {
    let h = Harness::new().await;
    add_fault(
        &h,
        json!({"target": "web_api", "method": "auth.test", "fault": "reset", "times": 1}),
    )
    .await;
    let fresh = reqwest::Client::new();
    let result = bounded(
        "the reset call",
        fresh
            .post(h.api_url("auth.test"))
            .bearer_auth(h.bot_token())
            .send(),
    )
    .await;
    assert!(result.is_err(), "no reply at all: {result:?}");
    let v = h.bot("auth.test", json!({})).await;
    assert!(v.ok(), "used up: {}", v.text);
}

#[tokio::test]
async fn all_methods_when_no_method_and_delete_clears() {
    let h = Harness::new().await;
    add_fault(&h, json!({"target": "web_api", "fault": "server_error"})).await;
    assert_eq!(h.bot("auth.test", json!({})).await.status, 500);
    assert_eq!(h.bot("users.list", json!({})).await.status, 500);
    assert_eq!(h.bot("auth.test", json!({})).await.status, 500, "forever");
    let list = h.read("faults").await;
    assert_eq!(list["faults"].as_array().map(Vec::len), Some(1), "{list}");
    let resp = h.delete("faults").await;
    assert!((200..300).contains(&resp.status), "{}", resp.text);
    h.api_ok("auth.test", json!({})).await;
    let list = h.read("faults").await;
    assert_eq!(list["faults"].as_array().map(Vec::len), Some(0), "{list}");
}

#[tokio::test]
async fn delete_one_rule() {
    let h = Harness::new().await;
    let a = add_fault(
        &h,
        json!({"target": "web_api", "method": "auth.test", "fault": "server_error"}),
    )
    .await;
    let a = fault_id(&h, &a).await;
    let b = add_fault(
        &h,
        json!({"target": "web_api", "method": "users.list", "fault": "server_error"}),
    )
    .await;
    let b = fault_id(&h, &b).await;
    assert_ne!(a, b);
    let resp = h.delete(&format!("faults/{a}")).await;
    assert!((200..300).contains(&resp.status), "{}", resp.text);
    h.api_ok("auth.test", json!({})).await;
    assert_eq!(h.bot("users.list", json!({})).await.status, 500);
    let resp = h.delete(&format!("faults/{a}")).await;
    assert_eq!(resp.status, 404, "already gone: {}", resp.text);
}

#[tokio::test]
async fn invalid_rules_are_refused() {
    let h = Harness::new().await;
    for rule in [
        json!({"target": "web_api", "fault": "duplicate"}),
        json!({"target": "socket", "fault": "reset"}),
        json!({"target": "nowhere", "fault": "drop"}),
        json!({"target": "web_api", "fault": "server_error", "status": 200}),
    ] {
        let resp = h.post("faults", rule.clone()).await;
        assert!(
            (400..500).contains(&resp.status),
            "{rule}: {} {}",
            resp.status,
            resp.text
        );
        assert_eq!(resp.json["ok"], false, "{rule}: {}", resp.text);
    }
}

#[tokio::test]
async fn socket_duplicate() {
    let h = Harness::with_manifest(&socket_manifest(ALL_SCOPES, &["app_mention"])).await;
    let mut app = SocketClient::connect(&h, ack_all()).await;
    add_fault(
        &h,
        json!({"target": "socket", "fault": "duplicate", "times": 1}),
    )
    .await;
    let bot = h.bot_user_id();
    h.say("alice", "general", &format!("<@{bot}> twice")).await;
    let a = app.expect("app_mention", is_event("app_mention")).await;
    let b = app.expect("its duplicate", is_event("app_mention")).await;
    assert_eq!(a["payload"]["event_id"], b["payload"]["event_id"]);
    assert_eq!(a["retry_attempt"], 0);
    assert_eq!(b["retry_attempt"], 1, "the second as a retry: {b}");
}

#[tokio::test]
async fn socket_drop_closes_after_sending() {
    let mut config = config_with_manifest(&socket_manifest(ALL_SCOPES, &["app_mention"]));
    config.delivery.ack_timeout = Duration::from_millis(500);
    let h = Harness::start(config).await;
    let mut first = SocketClient::connect(&h, ack_none()).await;
    add_fault(&h, json!({"target": "socket", "fault": "drop", "times": 1})).await;
    let bot = h.bot_user_id();
    let said = h.say("alice", "general", &format!("<@{bot}> lost")).await;
    let env = first.expect("app_mention", is_event("app_mention")).await;
    assert!(
        first.closed(WAIT).await,
        "the connection is closed after it"
    );
    // The app reconnects; the unacked event comes again as a retry.
    let mut second = SocketClient::connect(&h, ack_all()).await;
    let again = second.expect("the retry", is_event("app_mention")).await;
    assert_eq!(again["payload"]["event_id"], env["payload"]["event_id"]);
    assert!(
        said["event_ids"]
            .as_array()
            .unwrap()
            .contains(&again["payload"]["event_id"])
    );
    assert!(again["retry_attempt"].as_u64().unwrap() >= 1, "{again}");
}

/// A fake app and a sandbox in HTTP mode delivering `app_mention` to it.
async fn http_pair(ack_timeout: Duration) -> (FakeApp, Harness) {
    let app = FakeApp::start().await;
    let mut config = config_with_manifest(&http_manifest(&app.url, &["app_mention"]));
    config.delivery.ack_timeout = ack_timeout;
    let h = Harness::start(config).await;
    (app, h)
}

#[tokio::test]
async fn events_duplicate() {
    let (app, h) = http_pair(Duration::from_secs(3)).await;
    add_fault(
        &h,
        json!({"target": "events", "kind": "event", "fault": "duplicate", "times": 1}),
    )
    .await;
    let bot = h.bot_user_id();
    h.say("alice", "general", &format!("<@{bot}> dup")).await;
    let reqs = app.wait_for(2, is_callback("app_mention")).await;
    assert_eq!(reqs[0].event_id(), reqs[1].event_id());
    assert!(reqs[0].header("x-slack-retry-num").is_none());
    assert_eq!(reqs[1].header("x-slack-retry-num").as_deref(), Some("1"));
    assert!(reqs[1].signature_valid(h.sandbox.signing_secret()));
}

#[tokio::test]
async fn events_drop_is_retried_as_a_timeout() {
    let (app, h) = http_pair(Duration::from_millis(500)).await;
    add_fault(
        &h,
        json!({"target": "events", "kind": "event", "fault": "drop", "times": 1}),
    )
    .await;
    let bot = h.bot_user_id();
    h.say("alice", "general", &format!("<@{bot}> dropped"))
        .await;
    let reqs = app.wait_for(1, is_callback("app_mention")).await;
    assert_eq!(
        reqs[0].header("x-slack-retry-num").as_deref(),
        Some("1"),
        "the first attempt never arrived"
    );
    assert_eq!(
        reqs[0].header("x-slack-retry-reason").as_deref(),
        Some("http_timeout")
    );
    let event_id = reqs[0].event_id().unwrap();
    let d = h.settled_delivery(|d| d["event_id"] == event_id).await;
    assert_eq!(d["outcome"], "acked", "{d}");
    assert_eq!(attempt_count(&d), 2, "{d}");
}

#[tokio::test]
async fn events_fault_kind_only_matches_its_kind() {
    let (app, h) = http_pair(Duration::from_secs(3)).await;
    add_fault(
        &h,
        json!({"target": "events", "kind": "command", "fault": "duplicate", "times": 1}),
    )
    .await;
    let bot = h.bot_user_id();
    h.say("alice", "general", &format!("<@{bot}> once")).await;
    let reqs = app.wait_for(1, is_callback("app_mention")).await;
    let event_id = reqs[0].event_id().unwrap();
    h.settled_delivery(|d| d["event_id"] == event_id).await;
    h.act(
        "commands",
        json!({"user": "alice", "channel": "general", "command": "/switchyard", "text": ""}),
    )
    .await;
    app.wait_for(2, |r| r.path == "/commands").await;
    assert_eq!(
        app.requests()
            .iter()
            .filter(|r| is_callback("app_mention")(r))
            .count(),
        1,
        "the event was not duplicated"
    );
}
