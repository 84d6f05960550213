//! Incoming webhooks, docs/sandbox.md §6.

mod common;

use common::*;

async fn new_webhook(h: &Harness, channel: &str) -> String {
    let v = h.act("webhooks", json!({"channel": channel})).await;
    let url = v["url"].as_str().expect("url").to_string();
    assert!(url.contains("/services/T"), "{url}");
    url
}

async fn post_json(h: &Harness, url: &str, body: &Value) -> (u16, String, Option<String>) {
    let resp = bounded("the webhook", h.http.post(url).json(body).send())
        .await
        .expect("POST");
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, resp.text().await.unwrap(), ctype)
}

#[tokio::test]
async fn posts_into_its_channel() {
    let h = Harness::new().await;
    let url = new_webhook(&h, "alerts").await;
    let (status, body, ctype) = post_json(&h, &url, &json!({"text": "disk full"})).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert!(ctype.is_some_and(|c| c.starts_with("text/plain")));
    let msgs = h.wait_list("channels/alerts/messages", "messages", 1).await;
    assert_eq!(msgs[0]["text"], "disk full");
    assert!(
        msgs[0]["bot_id"].is_string(),
        "posted as the app: {:?}",
        msgs[0]
    );
}

#[tokio::test]
async fn blocks_attachments_and_threads() {
    let h = Harness::new().await;
    let url = new_webhook(&h, "general").await;
    let (status, body, _) = post_json(
        &h,
        &url,
        &json!({"text": "fb", "blocks": [section("*bold*")], "attachments": [{"text": "att"}]}),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let msgs = h
        .wait_list("channels/general/messages", "messages", 1)
        .await;
    assert_eq!(msgs[0]["blocks"][0]["text"]["text"], "*bold*");
    assert_eq!(msgs[0]["attachments"][0]["text"], "att");
    let ts = msgs[0]["ts"].as_str().unwrap().to_string();

    let (status, _, _) = post_json(&h, &url, &json!({"text": "in thread", "thread_ts": ts})).await;
    assert_eq!(status, 200);
    let thread = h
        .wait_list(&format!("channels/general/threads/{ts}"), "messages", 2)
        .await;
    assert_eq!(thread[1]["text"], "in thread");
}

#[tokio::test]
async fn form_payload_is_accepted() {
    let h = Harness::new().await;
    let url = new_webhook(&h, "alerts").await;
    let payload = json!({"text": "from a form"}).to_string();
    let resp = h
        .http
        .post(&url)
        .form(&[("payload", payload.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
    let msgs = h.wait_list("channels/alerts/messages", "messages", 1).await;
    assert_eq!(msgs[0]["text"], "from a form");
}

#[tokio::test]
async fn seeded_webhook_works() {
    let h = Harness::new().await;
    let info = h.read("info").await;
    // The default seed declares one for #alerts with this secret. docs/sandbox.md names the
    // field `webhook_url`; the sandbox lists `webhooks: [{channel, url}]`. Take either.
    let url = info["webhook_url"]
        .as_str()
        .or_else(|| info["webhooks"][0]["url"].as_str())
        .unwrap_or_else(|| panic!("GET /_sandbox/info lists no webhook: {info}"))
        .to_string();
    let alerts = h.channel_id("alerts").await;
    assert_eq!(
        h.sandbox.webhook_urls(),
        vec![(alerts, url.clone())],
        "the Rust API agrees"
    );
    assert!(url.ends_with("/sandboxalertswebhook"), "{url}");
    let (status, body, _) = post_json(&h, &url, &json!({"text": "seeded"})).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let msgs = h.wait_list("channels/alerts/messages", "messages", 1).await;
    assert_eq!(msgs[0]["text"], "seeded");
}

#[tokio::test]
async fn errors_are_text_with_slacks_statuses() {
    let h = Harness::new().await;
    let url = new_webhook(&h, "general").await;

    let resp = h
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.text().await.unwrap(), "invalid_payload");

    let (status, body, ctype) = post_json(&h, &url, &json!({"username": "x"})).await;
    assert_eq!((status, body.as_str()), (400, "no_text"));
    assert!(ctype.is_some_and(|c| c.starts_with("text/plain")));

    let fifty_one: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
    let (status, body, _) = post_json(&h, &url, &json!({"text": "t", "blocks": fifty_one})).await;
    assert_eq!((status, body.as_str()), (400, "invalid_blocks"));

    let wrong = format!("{}zz", url.trim_end_matches('/'));
    let (status, body, _) = post_json(&h, &wrong, &json!({"text": "x"})).await;
    assert_eq!((status, body.as_str()), (404, "no_service"));

    assert!(h.messages("general").await.is_empty(), "nothing was posted");
}

#[tokio::test]
async fn archived_channel_is_410() {
    let h = Harness::new().await;
    let created = h
        .api_ok("conversations.create", json!({"name": "old-project"}))
        .await;
    let id = created["channel"]["id"].as_str().unwrap().to_string();
    let url = new_webhook(&h, &id).await;
    h.api_ok("conversations.archive", json!({"channel": id}))
        .await;
    let (status, body, _) = post_json(&h, &url, &json!({"text": "x"})).await;
    assert_eq!((status, body.as_str()), (410, "channel_is_archived"));
}

#[tokio::test]
async fn rate_limited_is_429() {
    let mut config = config();
    config.rate_limits.enabled = true;
    let h = Harness::start(config).await;
    let url = new_webhook(&h, "alerts").await;
    let mut limited = None;
    for i in 0..10 {
        let resp = h
            .http
            .post(&url)
            .json(&json!({"text": format!("{i}")}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().await.unwrap();
        if status == 429 {
            limited = Some((body, retry_after));
            break;
        }
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    let (body, retry_after) = limited.expect("a 429 within 10 posts");
    assert_eq!(body, "rate_limited");
    assert!(
        retry_after.is_some_and(|s| s.parse::<u64>().is_ok()),
        "Retry-After"
    );
}

#[tokio::test]
async fn unknown_channel_for_a_new_webhook() {
    let h = Harness::new().await;
    let resp = h.post("webhooks", json!({"channel": "nowhere"})).await;
    assert!(
        (400..500).contains(&resp.status),
        "{} {}",
        resp.status,
        resp.text
    );
    assert_eq!(resp.json["ok"], false);
}

#[tokio::test]
async fn legacy_overrides_of_channel_username_and_icon() {
    let h = Harness::new().await;
    let url = new_webhook(&h, "alerts").await;
    let (status, body, _) = post_json(
        &h,
        &url,
        &json!({"text": "elsewhere", "channel": "#general", "username": "Deploy Bot", "icon_emoji": ":rocket:"}),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let msgs = h
        .wait_list("channels/general/messages", "messages", 1)
        .await;
    assert_eq!(msgs[0]["text"], "elsewhere");
    assert_eq!(msgs[0]["username"], "Deploy Bot");
    assert_eq!(msgs[0]["icons"], json!({"emoji": ":rocket:"}));
    let (status, _, _) = post_json(
        &h,
        &url,
        &json!({"text": "here", "icon_url": "https://example.com/i.png"}),
    )
    .await;
    assert_eq!(status, 200);
    let msgs = h.wait_list("channels/alerts/messages", "messages", 1).await;
    assert_eq!(
        msgs[0]["icons"],
        json!({"image_48": "https://example.com/i.png"})
    );
    assert!(msgs[0].get("username").is_none(), "{:?}", msgs[0]);
    let (status, body, _) = post_json(&h, &url, &json!({"text": "x", "channel": "#nowhere"})).await;
    assert_eq!((status, body.as_str()), (404, "channel_not_found"));
}
