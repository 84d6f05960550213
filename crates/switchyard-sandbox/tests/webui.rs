//! The web client (docs/sandbox.md §8) and the reads it is built on: the page and its assets,
//! the change stream, the logs' bodies and timing, unread marks, what people type as rich text.
//! The page itself is driven in a browser by `tests/browser` (scripts/browser-test).

mod common;

use common::*;

#[tokio::test]
async fn webui_the_page_and_its_assets_are_served_from_the_binary() {
    let h = Harness::new().await;
    let page = h.http.get(format!("{}/", h.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("/_ui/app.js"), "{html}");
    assert!(html.contains("/_ui/app.css"), "{html}");
    assert!(
        !html.contains("://") || !html.contains("cdn"),
        "no CDN: {html}"
    );
    for (path, kind, marker) in [
        ("/_ui/app.js", "text/javascript", "/_sandbox"),
        ("/_ui/app.css", "text/css", "--aubergine"),
        ("/favicon.ico", "image/svg+xml", "<svg"),
    ] {
        let resp = h.http.get(format!("{}{path}", h.url)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        assert!(resp.text().await.unwrap().contains(marker), "{path}");
    }
    assert_eq!(h.sandbox.web_url(), format!("{}/", h.url));
    // Everything else is still the JSON 404.
    let missing = h.http.get(format!("{}/_ui/nothing.js", h.url)).send().await;
    assert_eq!(missing.unwrap().status(), 404);
}

/// Reads one server-sent event from the stream: its `event` and `data` lines.
async fn next_event(resp: &mut reqwest::Response, buffer: &mut String) -> (String, String) {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                event
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            if event.starts_with(':') {
                continue; // keep-alive comment
            }
            return (field("event:"), field("data:"));
        }
        let chunk = bounded("an event on /_sandbox/changes", resp.chunk())
            .await
            .expect("the stream reads")
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn webui_changes_stream_an_event_at_once_and_after_every_change() {
    let h = Harness::new().await;
    let mut resp = h.http.get(h.control_url("changes")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut buffer = String::new();
    let (event, first) = next_event(&mut resp, &mut buffer).await;
    assert_eq!(event, "change");
    let first: u64 = first.parse().expect("the counter");
    h.act(
        "messages",
        json!({"user": "alice", "channel": "general", "text": "hello"}),
    )
    .await;
    let (event, next) = next_event(&mut resp, &mut buffer).await;
    assert_eq!(event, "change");
    assert!(next.parse::<u64>().unwrap() > first, "{next} after {first}");
}

#[tokio::test]
async fn webui_api_calls_keep_the_reply_and_the_time_taken() {
    let h = Harness::new().await;
    h.api_ok(
        "chat.postMessage",
        json!({"channel": "general", "text": "one"}),
    )
    .await;
    h.api_err(
        "chat.postMessage",
        json!({"channel": "nowhere", "text": "two"}),
    )
    .await;
    let calls = h.get("api_calls?last=2").await.json["calls"].clone();
    let calls = calls.as_array().unwrap();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["args"]["text"], "one");
    assert_eq!(calls[0]["response"]["ok"], true);
    assert_eq!(calls[0]["response"]["message"]["text"], "one");
    assert_eq!(calls[1]["response"]["error"], "channel_not_found");
    for c in calls {
        assert!(c["duration_ms"].as_f64().unwrap() >= 0.0, "{c}");
        let at_ms = c["at_ms"].as_u64().unwrap();
        assert_eq!(c["at"].as_u64().unwrap(), at_ms / 1000, "{c}");
    }
    // `last` keeps the newest; without it, all.
    let one = h.get("api_calls?last=1").await.json["calls"].clone();
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["response"]["error"], "channel_not_found");
    let all = h.get("api_calls").await.json["calls"].clone();
    assert!(all.as_array().unwrap().len() >= 2);
}

#[tokio::test]
async fn webui_deliveries_keep_what_was_handed_over_the_ack_and_timing() {
    let h = Harness::with_manifest(&socket_manifest(ALL_SCOPES, &["app_mention"])).await;
    let _app = SocketClient::connect(&h, ack_all()).await;
    let bot = h.bot_user_id();
    h.act(
        "messages",
        json!({"user": "alice", "channel": "general", "text": format!("<@{bot}> hi")}),
    )
    .await;
    let d = h
        .settled_delivery(|d| d["kind"] == "event" && d["name"] == "app_mention")
        .await;
    assert_eq!(d["outcome"], "acked", "{d}");
    assert_eq!(d["envelope_type"], "events_api", "{d}");
    assert_eq!(d["payload"]["type"], "event_callback", "{d}");
    assert_eq!(d["payload"]["event"]["type"], "app_mention", "{d}");
    assert_eq!(d["payload"]["event_id"], d["event_id"], "{d}");
    let attempt = &d["attempts"][0];
    assert_eq!(attempt["result"], "acked", "{attempt}");
    assert!(attempt["duration_ms"].as_f64().unwrap() >= 0.0, "{attempt}");
    assert!(attempt["at_ms"].as_u64().unwrap() >= d["created_ms"].as_u64().unwrap());
    // `last` keeps the newest.
    let last = h.get("deliveries?last=1").await.json["deliveries"].clone();
    assert_eq!(last.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn webui_channels_carry_their_newest_top_level_message_for_unread_marks() {
    let h = Harness::new().await;
    let general = |v: &Value| {
        v["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "general")
            .cloned()
            .unwrap()
    };
    assert!(general(&h.get("channels").await.json)["latest_ts"].is_null());
    let posted = h
        .act(
            "messages",
            json!({"user": "alice", "channel": "general", "text": "top"}),
        )
        .await;
    let ts = posted["ts"].as_str().unwrap().to_string();
    assert_eq!(general(&h.get("channels").await.json)["latest_ts"], ts);
    // A thread reply does not make the channel unread, as in Slack.
    h.act(
        "messages",
        json!({"user": "bob", "channel": "general", "text": "reply", "thread_ts": ts}),
    )
    .await;
    assert_eq!(general(&h.get("channels").await.json)["latest_ts"], ts);
}

#[tokio::test]
async fn webui_what_people_type_becomes_rich_text_with_mentions_and_links() {
    let h = Harness::new().await;
    let bot = h.bot_user_id();
    let text = format!("<@{bot}> see <#C1|ops> &amp; <https://example.com|docs>, <!here> 1 &lt; 2");
    let posted = h
        .act(
            "messages",
            json!({"user": "alice", "channel": "general", "text": text}),
        )
        .await;
    let messages = h.get("channels/general/messages").await.json["messages"].clone();
    let m = messages
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["ts"] == posted["ts"])
        .unwrap();
    assert_eq!(m["text"], text, "the text is kept as sent");
    let elements = &m["blocks"][0]["elements"][0]["elements"];
    assert_eq!(m["blocks"][0]["type"], "rich_text");
    assert_eq!(elements[0], json!({"type": "user", "user_id": bot}));
    assert_eq!(elements[1], json!({"type": "text", "text": " see "}));
    assert_eq!(elements[2], json!({"type": "channel", "channel_id": "C1"}));
    assert_eq!(elements[3], json!({"type": "text", "text": " & "}));
    assert_eq!(
        elements[4],
        json!({"type": "link", "url": "https://example.com", "text": "docs"})
    );
    assert_eq!(elements[5], json!({"type": "text", "text": ", "}));
    assert_eq!(elements[6], json!({"type": "broadcast", "range": "here"}));
    assert_eq!(elements[7], json!({"type": "text", "text": " 1 < 2"}));
}
