//! The start's `auth.test`: Slack's 429s, 5xx and resets are waited out however many come in
//! a row (the chaos soak's restarted replica took every fault injected meanwhile, 14 once),
//! and only a refused token ends the start, at once and saying so.

mod common;

use serde_json::json;
use switchyard_engine::{Server, StartOptions};

#[tokio::test]
async fn the_start_waits_out_slack_failing_auth_test_again_and_again() {
    let sandbox = common::sandbox(None).await;
    for (fault, times) in [("rate_limited", 1), ("server_error", 2), ("reset", 2)] {
        sandbox
            .control()
            .post(
                "/faults",
                &json!({"target": "web_api", "method": "auth.test", "fault": fault, "retry_after": 1, "times": times}),
            )
            .await
            .expect("a fault rule");
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        common::config(&sandbox, sandbox.bot_token(), false, "", &dir),
        Vec::new(),
        StartOptions::default(),
    )
    .await
    .expect("started once Slack answered");
    let stats = sandbox.control().get("/stats").await.unwrap();
    assert_eq!(stats["api_calls"]["auth.test"]["failed"], 5, "{stats}");
    assert_eq!(stats["api_calls"]["auth.test"]["ok"], 1, "{stats}");
    drop(server);
}

#[tokio::test]
async fn a_refused_bot_token_ends_the_start_at_once() {
    let sandbox = common::sandbox(None).await;
    let dir = tempfile::tempdir().unwrap();
    let error = Server::start(
        common::config(&sandbox, "xoxb-not-a-token", false, "", &dir),
        Vec::new(),
        StartOptions::default(),
    )
    .await
    .err()
    .expect("a refused token is no start");
    assert!(
        error.to_string().contains("Slack refused the bot token"),
        "{error}"
    );
    // No retries: one call, answered at once.
    let stats = sandbox.control().get("/stats").await.unwrap();
    assert_eq!(stats["api_calls"]["auth.test"]["failed"], 1, "{stats}");
}
