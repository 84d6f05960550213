//! Rate limits, docs/sandbox.md §2.

mod common;

use common::*;

fn limited_config() -> SandboxConfig {
    let mut config = config();
    config.rate_limits.enabled = true;
    config
}

/// Posts to `channel` up to `n` times; returns the first 429 reply, if any.
async fn burst(h: &Harness, channel: &str, n: usize) -> Option<Resp> {
    for i in 0..n {
        let v = h
            .bot(
                "chat.postMessage",
                json!({"channel": channel, "text": format!("burst {i}")}),
            )
            .await;
        if v.status == 429 {
            return Some(v);
        }
        assert!(v.ok(), "call {i}: {} {}", v.status, v.text);
    }
    None
}

#[tokio::test]
async fn post_message_burst_on_one_channel_is_limited() {
    let h = Harness::start(limited_config()).await;
    let limited = burst(&h, "general", 10)
        .await
        .expect("a burst of 10 on one channel gets a 429");
    assert_eq!(limited.json["ok"], false, "{}", limited.text);
    assert_eq!(limited.error(), "ratelimited");
    let retry_after: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");

    // Another channel has its own budget.
    let other = h
        .bot(
            "chat.postMessage",
            json!({"channel": "alerts", "text": "still fine"}),
        )
        .await;
    assert!(other.ok(), "{} {}", other.status, other.text);

    // The refused call was recorded with its status and did not post.
    let calls = h.read("api_calls?method=chat.postMessage").await;
    let calls = calls["calls"].as_array().expect("calls");
    assert!(
        calls
            .iter()
            .any(|c| c["status"] == 429 && c["error"] == "ratelimited"),
        "{calls:?}"
    );
    let stats = h.read("stats").await;
    assert!(
        stats["rate_limited"]["chat.postMessage"].as_u64() >= Some(1),
        "the limiter's refusals counted: {stats}"
    );
    let posted = h.messages("general").await.len();
    let ok_calls = calls
        .iter()
        .filter(|c| c["ok"] == true && c["args"]["channel"] == "general")
        .count();
    assert_eq!(posted, ok_calls, "only accepted calls posted");
}

#[tokio::test]
async fn burst_of_three_is_allowed() {
    let h = Harness::start(limited_config()).await;
    for i in 0..3 {
        let v = h
            .bot(
                "chat.postMessage",
                json!({"channel": "general", "text": format!("{i}")}),
            )
            .await;
        assert!(v.ok(), "call {i} of the burst: {} {}", v.status, v.text);
    }
}

#[tokio::test]
async fn disabled_at_start_never_limits() {
    let h = Harness::new().await; // rate limits off
    assert!(burst(&h, "general", 20).await.is_none());
}

#[tokio::test]
async fn disabled_through_the_control_api() {
    let h = Harness::start(limited_config()).await;
    assert!(burst(&h, "general", 10).await.is_some());
    let resp = h.put("rate_limits", json!({"enabled": false})).await;
    assert!((200..300).contains(&resp.status), "{}", resp.text);
    let got = h.read("rate_limits").await;
    assert!(
        got.to_string().contains("\"enabled\":false"),
        "GET shows the settings: {got}"
    );
    assert!(burst(&h, "general", 20).await.is_none());
}

#[tokio::test]
async fn overrides_set_one_method() {
    let h = Harness::start(limited_config()).await;
    let resp = h
        .put(
            "rate_limits",
            json!({"enabled": true, "overrides": {"chat.update": {"per_minute": 6, "burst": 1}}}),
        )
        .await;
    assert!((200..300).contains(&resp.status), "{}", resp.text);
    let got = h.read("rate_limits").await;
    assert!(got.to_string().contains("chat.update"), "{got}");

    let ts = h.bot_post("general", "v0").await;
    let general = h.channel_id("general").await;
    let first = h
        .bot(
            "chat.update",
            json!({"channel": general, "ts": ts, "text": "v1"}),
        )
        .await;
    assert!(first.ok(), "{}", first.text);
    let second = h
        .bot(
            "chat.update",
            json!({"channel": general, "ts": ts, "text": "v2"}),
        )
        .await;
    assert_eq!(second.status, 429, "{}", second.text);
    assert_eq!(second.error(), "ratelimited");
    let retry_after: u64 = second
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=10).contains(&retry_after), "6/min: {retry_after}");
}

#[tokio::test]
async fn overrides_in_the_start_config() {
    let mut config = limited_config();
    config.rate_limits.overrides.insert(
        "users.list".to_string(),
        switchyard_sandbox::MethodLimit {
            per_minute: 1,
            burst: 1,
        },
    );
    let h = Harness::start(config).await;
    h.api_ok("users.list", json!({})).await;
    let v = h.bot("users.list", json!({})).await;
    assert_eq!(v.status, 429, "{}", v.text);
    // Other methods are not affected.
    h.api_ok("conversations.list", json!({})).await;
}

#[tokio::test]
async fn scale_tightens_every_limit() {
    let h = Harness::start(limited_config()).await;
    let resp = h
        .put("rate_limits", json!({"enabled": true, "scale": 0.1}))
        .await;
    assert!((200..300).contains(&resp.status), "{}", resp.text);
    // Per channel: burst 3 * 0.1 -> 1.
    h.bot_post("general", "one").await;
    let v = h
        .bot(
            "chat.postMessage",
            json!({"channel": "general", "text": "two"}),
        )
        .await;
    assert_eq!(v.status, 429, "{}", v.text);
}

#[tokio::test]
async fn bad_settings_are_refused() {
    let h = Harness::new().await;
    let resp = h.put("rate_limits", json!({"enabeld": false})).await;
    assert!(
        (400..500).contains(&resp.status),
        "{} {}",
        resp.status,
        resp.text
    );
    assert_eq!(resp.json["ok"], false, "{}", resp.text);
}

#[tokio::test]
async fn tier_two_method_allows_a_burst_of_five() {
    let h = Harness::start(limited_config()).await;
    // conversations.list is Tier 2: 20/min, a burst of 5.
    for i in 0..5 {
        let v = h.bot("conversations.list", json!({})).await;
        assert!(v.ok(), "call {i}: {} {}", v.status, v.text);
    }
    let v = h.bot("conversations.list", json!({})).await;
    assert_eq!(v.status, 429, "{}", v.text);
    assert_eq!(v.error(), "ratelimited");
    // Limits are per method.
    h.api_ok("users.list", json!({})).await;
}

#[tokio::test]
async fn waiting_retry_after_is_enough() {
    let h = Harness::start(limited_config()).await;
    let limited = burst(&h, "general", 10).await.expect("a 429");
    let secs: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(secs <= 2, "one a second per channel: Retry-After {secs}");
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    let v = h
        .bot(
            "chat.postMessage",
            json!({"channel": "general", "text": "after waiting"}),
        )
        .await;
    assert!(v.ok(), "{} {}", v.status, v.text);
}
