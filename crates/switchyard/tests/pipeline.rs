//! The pipeline end to end: the real `switchyard serve` process against the sandbox, over both
//! Slack transports, with the sandbox's faults and a killed process.

mod common;

use common::Serve;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sandbox::{DeliverySettings, Manifest, RateLimitSettings, Sandbox, SandboxConfig};

struct Setup {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    socket_mode: bool,
    /// `engine.lease_ms` of the servers started.
    lease_ms: u64,
}

fn manifest(socket_mode: bool, request_base: &str) -> Manifest {
    Manifest::from_value(json!({
        "display_information": {"name": "Switchyard"},
        "features": {"bot_user": {"display_name": "switchyard"}},
        "oauth_config": {"scopes": {"bot": ["app_mentions:read", "chat:write", "channels:history", "im:history"]}},
        "settings": {
            "event_subscriptions": {
                "request_url": format!("{request_base}/slack/events"),
                "bot_events": ["app_mention", "message.channels", "message.im"],
            },
            "interactivity": {"is_enabled": true, "request_url": format!("{request_base}/slack/interactions")},
            "socket_mode_enabled": socket_mode,
        },
    }))
    .expect("test manifest")
}

impl Setup {
    async fn new(socket_mode: bool) -> Self {
        let sandbox = Sandbox::start(SandboxConfig {
            manifest: Some(manifest(socket_mode, "http://127.0.0.1:1")),
            rate_limits: RateLimitSettings {
                enabled: false,
                ..Default::default()
            },
            delivery: DeliverySettings {
                retry_delays: vec![
                    Duration::from_millis(100),
                    Duration::from_millis(300),
                    Duration::from_millis(600),
                ],
                ack_timeout: Duration::from_secs(3),
            },
            ..Default::default()
        })
        .await
        .expect("sandbox starts");
        Self {
            sandbox,
            dir: tempfile::tempdir().expect("temp dir"),
            http: reqwest::Client::new(),
            socket_mode,
            lease_ms: 1000,
        }
    }

    fn config_path(&self) -> PathBuf {
        let path = self.dir.path().join("switchyard.toml");
        let app_token = if self.socket_mode {
            format!("app_token = \"{}\"\n", self.sandbox.app_token())
        } else {
            String::new()
        };
        let text = format!(
            "[slack]\nbot_token = \"{}\"\n{app_token}signing_secret = \"{}\"\napi_url = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite://{}\"\n\n[engine]\nlease_ms = {}\npoll_interval_ms = 100\n",
            self.sandbox.bot_token(),
            self.sandbox.signing_secret(),
            self.sandbox.api_url(),
            self.dir.path().join("switchyard.db").display(),
            self.lease_ms,
        );
        common::write_private(&path, text).expect("config written");
        path
    }

    /// Starts `switchyard serve` and, in HTTP mode, points the sandbox's app at it.
    async fn start(&self, hold_dispatch: bool) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .env(
                "SWITCHYARD_TEST_HOLD_DISPATCH",
                if hold_dispatch { "1" } else { "0" },
            )
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("switchyard runs");
        let url = common::listening_url(&mut child).await;
        if !self.socket_mode {
            let body = serde_json::to_string(&manifest(false, &url).raw).unwrap();
            self.control_put("/app/manifest", body).await;
        }
        Serve { child, url }
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/_sandbox{path}", self.sandbox.url()))
            .json(&body)
            .send()
            .await
            .expect("control API");
        let status = r.status();
        let v: Value = r.json().await.expect("JSON");
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn control_put(&self, path: &str, body: String) {
        let r = self
            .http
            .put(format!("{}/_sandbox{path}", self.sandbox.url()))
            .body(body)
            .send()
            .await
            .expect("control API");
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }

    async fn get(&self, path: &str) -> Value {
        self.sandbox.control().get(path).await.expect("control API")
    }

    /// Alice mentions the bot in #general; returns the message's ts.
    async fn mention(&self, text: &str) -> String {
        let v = self
            .control(
                "/messages",
                json!({"user": "alice", "channel": "general", "text": format!("<@{}> {text}", self.sandbox.bot_user_id())}),
            )
            .await;
        v["ts"].as_str().expect("ts").to_string()
    }

    /// The replies in a thread (not counting its parent), waiting up to `secs` for `n` of them.
    async fn replies(&self, ts: &str, n: usize, secs: u64) -> Vec<Value> {
        let v = self
            .get(&format!(
                "/channels/general/threads/{ts}?wait_for={}&timeout_ms={}",
                n + 1,
                secs * 1000
            ))
            .await;
        v["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .skip(1)
            .collect()
    }

    async fn wait_for_socket(&self) {
        for _ in 0..100 {
            let v = self.get("/socket").await;
            if v["connections"].as_array().is_some_and(|c| !c.is_empty()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("Switchyard never connected over Socket Mode");
    }
}

fn texts(messages: &[Value]) -> Vec<&str> {
    messages.iter().filter_map(|m| m["text"].as_str()).collect()
}

#[tokio::test]
async fn ping_over_socket_mode() {
    let setup = Setup::new(true).await;
    let _server = setup.start(false).await;
    setup.wait_for_socket().await;
    let ts = setup.mention("ping").await;
    let replies = setup.replies(&ts, 1, 10).await;
    assert_eq!(texts(&replies), ["pong"]);
}

#[tokio::test]
async fn ping_over_http_events_api() {
    let setup = Setup::new(false).await;
    let _server = setup.start(false).await;
    let ts = setup.mention("ping").await;
    let replies = setup.replies(&ts, 1, 10).await;
    assert_eq!(texts(&replies), ["pong"]);
}

#[tokio::test]
async fn unknown_command_gets_help() {
    let setup = Setup::new(true).await;
    let _server = setup.start(false).await;
    setup.wait_for_socket().await;
    let ts = setup.mention("frobnicate now").await;
    let replies = setup.replies(&ts, 1, 10).await;
    let text = replies
        .first()
        .and_then(|m| m["text"].as_str())
        .unwrap_or("");
    assert!(text.contains("ping"), "help lists the commands: {text:?}");
}

#[tokio::test]
async fn duplicate_deliveries_are_handled_once() {
    let setup = Setup::new(true).await;
    let _server = setup.start(false).await;
    setup.wait_for_socket().await;
    // Every envelope twice, the second as a retry.
    setup
        .control(
            "/faults",
            json!({"target": "socket", "fault": "duplicate", "times": 10}),
        )
        .await;
    let ts = setup.mention("ping").await;
    let replies = setup.replies(&ts, 2, 3).await;
    assert_eq!(
        texts(&replies),
        ["pong"],
        "one reply, however often the event came"
    );
}

#[tokio::test]
async fn killed_after_ack_before_handling_loses_nothing() {
    let mut setup = Setup::new(true).await;
    // The killed process leased the acked mention to itself for an hour: on SQLite the next
    // server knows the last one is gone (it is the database's one server) and takes the item
    // over at once, instead of waiting for the lease to run out.
    setup.lease_ms = 3_600_000;
    let first = setup.start(true).await;
    setup.wait_for_socket().await;
    let ts = setup.mention("ping").await;
    // Wait until the mention was acked (committed to the inbox), then SIGKILL.
    let mut acked = false;
    for _ in 0..100 {
        let v = setup.get("/deliveries").await;
        acked = v["deliveries"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["name"] == "app_mention" && d["acked"] == true);
        if acked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(acked, "the mention was acked");
    drop(first); // SIGKILL: std's Child::kill
    assert!(
        setup.replies(&ts, 1, 1).await.is_empty(),
        "nothing was handled before the kill"
    );
    let _second = setup.start(false).await;
    let replies = setup.replies(&ts, 1, 15).await;
    assert_eq!(texts(&replies), ["pong"]);
}

#[tokio::test]
async fn slack_failures_delay_replies_but_lose_none() {
    let setup = Setup::new(true).await;
    let _server = setup.start(false).await;
    setup.wait_for_socket().await;
    for fault in [
        json!({"target": "web_api", "method": "chat.postMessage", "fault": "rate_limited", "retry_after": 1, "times": 2}),
        json!({"target": "web_api", "method": "chat.postMessage", "fault": "server_error", "status": 503, "times": 2}),
        json!({"target": "web_api", "method": "chat.postMessage", "fault": "reset", "times": 1}),
    ] {
        setup.control("/faults", fault).await;
    }
    let mut threads = Vec::new();
    for _ in 0..4 {
        threads.push(setup.mention("ping").await);
    }
    for ts in &threads {
        let replies = setup.replies(ts, 1, 30).await;
        assert_eq!(texts(&replies), ["pong"], "thread {ts}");
    }
    // Per-channel order: Slack accepted the replies in the order they were queued.
    let store = switchyard_store::Store::connect(&format!(
        "sqlite://{}",
        setup.dir.path().join("switchyard.db").display()
    ))
    .await
    .expect("the server's store");
    // Outcomes are recorded just after Slack answers: wait for all four.
    let mut queued: Vec<String> = Vec::new();
    for _ in 0..100 {
        queued = store
            .outbox_list(Some("sent"), 100)
            .await
            .unwrap()
            .iter()
            .filter(|i| i.method == "chat.postMessage")
            .map(|i| {
                serde_json::from_str::<Value>(&i.payload).unwrap()["thread_ts"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        if queued.len() == threads.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let accepted: Vec<String> = setup.get("/api_calls?method=chat.postMessage").await["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == true)
        .map(|c| c["args"]["thread_ts"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(accepted, queued);
}

#[tokio::test]
async fn socket_disconnects_and_drops_lose_no_envelope() {
    let setup = Setup::new(true).await;
    let _server = setup.start(false).await;
    setup.wait_for_socket().await;
    let mut threads = Vec::new();
    threads.push(setup.mention("ping").await);
    setup
        .control("/socket/disconnect", json!({"reason": "refresh_requested"}))
        .await;
    threads.push(setup.mention("ping").await);
    setup.control("/socket/drop", json!({})).await;
    threads.push(setup.mention("ping").await);
    setup
        .control(
            "/faults",
            json!({"target": "socket", "fault": "drop", "times": 1}),
        )
        .await;
    threads.push(setup.mention("ping").await);
    for ts in &threads {
        let replies = setup.replies(ts, 1, 20).await;
        assert_eq!(texts(&replies), ["pong"], "thread {ts}");
    }
}

mod http_receiver {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    fn sign(secret: &str, ts: u64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("v0:{ts}:{body}").as_bytes());
        format!("v0={}", hex::encode(mac.finalize().into_bytes()))
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    async fn post(
        setup: &Setup,
        url: &str,
        body: &str,
        ts: u64,
        signature: Option<String>,
    ) -> (u16, Value) {
        let mut request = setup
            .http
            .post(format!("{url}/slack/events"))
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", ts.to_string())
            .body(body.to_string());
        if let Some(sig) = signature {
            request = request.header("x-slack-signature", sig);
        }
        let r = request.send().await.expect("reaches switchyard");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn forged_stale_oversized_and_malformed_requests_are_refused() {
        let setup = Setup::new(false).await;
        let server = setup.start(false).await;
        let secret = setup.sandbox.signing_secret().to_string();
        let body = r#"{"type":"url_verification","challenge":"abc"}"#;
        let (status, v) = post(
            &setup,
            &server.url,
            body,
            now(),
            Some(sign(&secret, now(), body)),
        )
        .await;
        assert_eq!((status, v["challenge"].as_str()), (200, Some("abc")));

        let (status, v) = post(
            &setup,
            &server.url,
            body,
            now(),
            Some(sign("wrong-secret", now(), body)),
        )
        .await;
        assert_eq!(status, 401, "forged: {v}");
        assert_eq!(v["ok"], false);
        let (status, _) = post(&setup, &server.url, body, now(), None).await;
        assert_eq!(status, 401, "unsigned");
        let stale = now() - 600;
        let (status, _) = post(
            &setup,
            &server.url,
            body,
            stale,
            Some(sign(&secret, stale, body)),
        )
        .await;
        assert_eq!(status, 401, "stale");
        let big = format!(
            r#"{{"type":"event_callback","pad":"{}"}}"#,
            "x".repeat(1_100_000)
        );
        let (status, v) = post(
            &setup,
            &server.url,
            &big,
            now(),
            Some(sign(&secret, now(), &big)),
        )
        .await;
        assert_eq!(status, 413, "oversized: {v}");
        let junk = "{not json";
        let (status, v) = post(
            &setup,
            &server.url,
            junk,
            now(),
            Some(sign(&secret, now(), junk)),
        )
        .await;
        assert_eq!(status, 400, "malformed: {v}");
        assert_eq!(v["ok"], false);
    }

    #[tokio::test]
    async fn the_same_event_three_times_is_handled_once() {
        let setup = Setup::new(false).await;
        let server = setup.start(false).await;
        // A real message to reply to, then the same signed event posted three times.
        let ts = setup
            .control(
                "/messages",
                json!({"user": "bob", "channel": "alerts", "text": "hello"}),
            )
            .await["ts"]
            .as_str()
            .unwrap()
            .to_string();
        let channel = setup.get("/channels").await["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "alerts")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let event = json!({
            "type": "event_callback", "event_id": "EvTHREETIMES", "team_id": setup.sandbox.team_id(),
            "event": {"type": "app_mention", "user": "U_SOMEONE", "text": format!("<@{}> ping", setup.sandbox.bot_user_id()),
                      "ts": ts, "channel": channel, "event_ts": ts},
        })
        .to_string();
        let secret = setup.sandbox.signing_secret().to_string();
        for _ in 0..3 {
            let (status, _) = post(
                &setup,
                &server.url,
                &event,
                now(),
                Some(sign(&secret, now(), &event)),
            )
            .await;
            assert_eq!(status, 200);
        }
        let v = setup
            .get(&format!(
                "/channels/alerts/threads/{ts}?wait_for=3&timeout_ms=3000"
            ))
            .await;
        let replies: Vec<&str> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .filter_map(|m| m["text"].as_str())
            .collect();
        assert_eq!(replies, ["pong"]);
    }
}

/// A process killed after Slack took its posts but before it recorded that: the posts carry
/// their outbox row in message metadata, and the next process finds them (in the channel's
/// history, or the thread's replies) instead of posting them again; a post the killed attempt
/// never made is made once.
#[tokio::test]
async fn posts_whose_outcome_was_lost_are_not_posted_again() {
    let setup = Setup::new(true).await;
    let db = setup.dir.path().join("switchyard.db");
    let store = switchyard_store::Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("the server's store");
    let general = setup.get("/channels").await["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "general")
        .expect("#general")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let parent = setup.mention("ping").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let post = |key: &str, args: Value| switchyard_store::NewOutboxItem {
        ordering_key: key.into(),
        method: "chat.postMessage".into(),
        payload: args.to_string(),
        ref_key: Some(format!("ref-{key}")),
        not_before_ms: 0,
        created_at_ms: now - 10_000,
    };
    let items = [
        post(
            "a",
            json!({"channel": general, "thread_ts": parent, "text": "reply A"}),
        ),
        post("b", json!({"channel": general, "text": "post B"})),
        post("c", json!({"channel": general, "text": "post C"})),
    ];
    let mut tx = store.begin().await.unwrap();
    let mut ids = Vec::new();
    for item in &items {
        ids.push(tx.enqueue(item).await.unwrap());
    }
    tx.commit().await.unwrap();
    // The killed process: it claimed all three (its lease has run out), and Slack took A and B.
    let claimed = store
        .outbox_claim("killed", now - 9_000, now - 8_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let mut posted_ts = Vec::new();
    for (item, id) in items.iter().zip(&ids).take(2) {
        let mut args: Value = serde_json::from_str(&item.payload).unwrap();
        args["metadata"] =
            json!({"event_type": "switchyard_outbox", "event_payload": {"outbox_id": id}});
        let reply: Value = setup
            .http
            .post(format!("{}chat.postMessage", setup.sandbox.api_url()))
            .bearer_auth(setup.sandbox.bot_token())
            .json(&args)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(reply["ok"], true, "{reply}");
        posted_ts.push(reply["ts"].as_str().unwrap().to_string());
    }

    let _server = setup.start(true).await;
    let mut counts = Default::default();
    for _ in 0..200 {
        counts = store.outbox_counts().await.unwrap();
        if counts.pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((counts.pending, counts.done_or_sent), (0, 3), "{counts:?}");
    let top: Vec<Value> = setup.get("/channels/general/messages").await["messages"]
        .as_array()
        .cloned()
        .unwrap();
    let count =
        |messages: &[Value], text: &str| messages.iter().filter(|m| m["text"] == text).count();
    assert_eq!(count(&top, "post B"), 1, "found, not posted again");
    assert_eq!(count(&top, "post C"), 1, "never posted: posted once");
    let thread = setup.replies(&parent, 1, 1).await;
    assert_eq!(count(&thread, "reply A"), 1, "found in the thread");
    // Recorded as sent where the killed attempt's posts went, for later edits of them.
    for (key, ts) in ["a", "b"].iter().zip(&posted_ts) {
        let found = store
            .message_ref(&format!("ref-{key}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.channel.as_str(), found.ts.as_str()),
            (general.as_str(), ts.as_str())
        );
    }
    let calls = setup.get("/api_calls?method=chat.postMessage").await["calls"]
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(
        calls.iter().filter(|c| c["ok"] == true).count(),
        3,
        "A and B by the killed process, C"
    );
}
