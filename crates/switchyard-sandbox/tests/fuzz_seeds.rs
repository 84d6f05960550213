//! Writes the fuzz targets' seeds from the sandbox's real deliveries (Events API bodies,
//! slash-command forms, interactivity payloads and the Socket Mode envelopes that carry them).
//! Not part of the suite: run it by hand when the payloads change —
//! `SWITCHYARD_FUZZ_SEEDS=crates/switchyard-fuzz/corpus cargo test -p switchyard-sandbox --test fuzz_seeds -- --ignored`

mod common;

use std::path::PathBuf;

use common::*;

fn write(dir: &std::path::Path, target: &str, name: &str, body: &[u8]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), body).unwrap();
}

#[tokio::test]
#[ignore = "writes the fuzz seeds; run by hand"]
async fn capture_fuzz_seeds() {
    let out = PathBuf::from(std::env::var("SWITCHYARD_FUZZ_SEEDS").expect("SWITCHYARD_FUZZ_SEEDS"));
    let app = FakeApp::start().await;
    let h = Harness::start(config_with_manifest(&http_manifest(
        &app.url,
        &[
            "app_mention",
            "message.channels",
            "reaction_added",
            "member_joined_channel",
        ],
    )))
    .await;
    let bot = h.bot_user_id();
    let said = h
        .say(
            "alice",
            "general",
            &format!("<@{bot}> oops \"Laser Cutter\" it’s broken"),
        )
        .await;
    let ts = said["ts"].as_str().unwrap().to_string();
    h.say("bob", "general", &format!("<@{bot}> status")).await;
    h.act(
        "reactions",
        json!({"user": "alice", "channel": "general", "ts": ts, "name": "eyes"}),
    )
    .await;
    h.act(
        "commands",
        json!({"user": "alice", "channel": "general", "command": "/switchyard", "text": "clear \"Band Saw\""}),
    )
    .await;
    let general = h.channel_id("general").await;
    let posted = h
        .api_ok(
            "chat.postMessage",
            json!({"channel": general, "text": "an alert", "blocks": [{"type": "actions", "elements": [
                {"type": "button", "action_id": "alerts.ack", "value": "disk-full",
                 "text": {"type": "plain_text", "text": "Acknowledge"}}]}]}),
        )
        .await["ts"]
        .as_str()
        .unwrap()
        .to_string();
    h.act(
        "actions",
        json!({"user": "carol", "channel": "general", "ts": posted, "action_id": "alerts.ack", "value": "disk-full"}),
    )
    .await;
    let requests = app.wait_for(6, |r| !r.is_handshake()).await;
    let (mut events, mut commands, mut interactions) = (0, 0, 0);
    for r in requests
        .iter()
        .chain(app.requests().iter().filter(|r| r.is_handshake()).take(1))
    {
        let body = r.body.to_vec();
        match r.path.as_str() {
            "/events" => {
                events += 1;
                write(&out, "events_api", &format!("sandbox-{events}.json"), &body);
                let envelope = json!({"type": "events_api", "envelope_id": format!("env-{events}"),
                    "accepts_response_payload": false, "retry_attempt": 0, "payload": r.json()});
                write(
                    &out,
                    "socket_envelope",
                    &format!("sandbox-event-{events}.json"),
                    envelope.to_string().as_bytes(),
                );
            }
            "/commands" => {
                commands += 1;
                write(
                    &out,
                    "slash_command",
                    &format!("sandbox-{commands}.form"),
                    &body,
                );
                let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap();
                let payload: serde_json::Map<String, Value> = fields
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                let envelope = json!({"type": "slash_commands", "envelope_id": format!("cmd-{commands}"),
                    "accepts_response_payload": true, "payload": payload});
                write(
                    &out,
                    "socket_envelope",
                    &format!("sandbox-command-{commands}.json"),
                    envelope.to_string().as_bytes(),
                );
            }
            "/interactive" => {
                interactions += 1;
                let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap();
                let payload = &fields.iter().find(|(k, _)| k == "payload").unwrap().1;
                write(
                    &out,
                    "interaction",
                    &format!("sandbox-{interactions}.json"),
                    payload.as_bytes(),
                );
                let envelope = json!({"type": "interactive", "envelope_id": format!("int-{interactions}"),
                    "accepts_response_payload": true, "payload": serde_json::from_str::<Value>(payload).unwrap()});
                write(
                    &out,
                    "socket_envelope",
                    &format!("sandbox-interaction-{interactions}.json"),
                    envelope.to_string().as_bytes(),
                );
            }
            _ => {}
        }
    }
    assert!(
        events > 0 && commands > 0 && interactions > 0,
        "{events} {commands} {interactions}"
    );
}
