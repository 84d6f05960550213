//! `switchyard demo`, the README's run command: the sandbox and Switchyard together, answering.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

#[tokio::test]
async fn the_demo_answers_a_ping() {
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
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(thread["messages"][1]["text"], "pong", "{thread}");
}
