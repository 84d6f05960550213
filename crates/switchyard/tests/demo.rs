//! `switchyard demo`, the README's run command: the sandbox and Switchyard together, answering.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

#[tokio::test]
async fn the_demo_answers_a_ping_and_shows_the_machines() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["demo", "--port", &port.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("switchyard demo runs");
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            all.push_str(&line);
            all.push('\n');
            if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
        all
    })
    .await
    .unwrap();
    assert!(banner.contains("Switchyard demo"), "{banner}");
    let base = format!("http://127.0.0.1:{port}/_sandbox");
    let http = reqwest::Client::new();
    let info: Value = http
        .get(format!("{base}/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bot = info["bot_user_id"].as_str().unwrap();
    let mut ts = String::new();
    // Socket Mode connects right after the banner; a mention before that is delivered on connect.
    for _ in 0..50 {
        let v: Value = http
            .get(format!("{base}/socket"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["connections"].as_array().is_some_and(|c| !c.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let posted: Value = http
        .post(format!("{base}/messages"))
        .json(&json!({"user": "alice", "channel": "general", "text": format!("<@{bot}> ping")}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ts.push_str(posted["ts"].as_str().unwrap());
    let thread: Value = http
        .get(format!(
            "{base}/channels/general/threads/{ts}?wait_for=2&timeout_ms=10000"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(thread["messages"][1]["text"], "pong", "{thread}");

    // `status`, as the banner says: the demo's machines, the lathe in use by the simulated
    // device's fob (its first check-in is at start; ask again until it has been seen).
    let mut last = Value::Null;
    for _ in 0..20 {
        let posted: Value = http
            .post(format!("{base}/messages"))
            .json(
                &json!({"user": "alice", "channel": "general", "text": format!("<@{bot}> status")}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ts = posted["ts"].as_str().unwrap();
        last = http
            .get(format!(
                "{base}/channels/general/threads/{ts}?wait_for=2&timeout_ms=10000"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if last["messages"][1]["blocks"]
            .to_string()
            .contains("In use by Bob Builder")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let reply = &last["messages"][1];
    assert!(
        reply["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("4 machines"),
        "{last}"
    );
    let blocks = reply["blocks"].to_string();
    assert!(blocks.contains("*Laser Cutter*"), "{blocks}");
    assert!(blocks.contains("In use by Bob Builder"), "{blocks}");
    assert!(banner.contains("status"), "{banner}");
    assert!(banner.contains("/api/machine/update"), "{banner}");
}
