//! The machines app end to end against the sandbox: mentions over Socket Mode and over the
//! HTTP Events API, both channels' gates, every error reply, the notices from Slack, the HTTP
//! API and a device's oops button, `/oops-clear` and its picker, the device API, `/metrics`,
//! and a restart with state intact.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_engine::{Config, Server, StartOptions};
use switchyard_sandbox::{Manifest, RateLimitSettings, Sandbox, SandboxConfig, Seed};
use switchyard_store::{AuditFilter, Outcome};

const CONTROL: &str = "C0CONTROL";
const OOPS: &str = "C0OOPS";
const DEVICE_TOKEN: &str = "shared-device-token";

const MACHINES: &str = r#"
[apps.machines]
enabled = true
control_channel = "C0CONTROL"
oops_channel = "C0OOPS"
device_token = "shared-device-token"
outside_control_channel = "OUTSIDE"

[[apps.machines.machines]]
name = "Laser Cutter"
alias = "laser"
authorizations_or = ["laser"]

[[apps.machines.machines]]
name = "Lathe"
authorizations_or = ["metal"]
unauthorized_warn_only = true

[[apps.machines.machines]]
name = "Dust Collector"
alias = "dust"
always_enabled = true

[[apps.machines.machines]]
name = "Welder"
authorizations_or = ["metal"]
second_relay = true
token = "welder-token"

[[apps.machines.users]]
name = "Alice Admin"
email = "alice@example.com"
fob_codes = ["1111"]
authorizations = ["laser", "metal"]

[[apps.machines.users]]
name = "Bob Builder"
fob_codes = ["2222", "2223"]
authorizations = ["metal"]

[[apps.machines.users]]
name = "Old Timer"
fob_codes = ["3333"]
authorizations = ["laser"]
expires = "2001-01-01"
"#;

struct Env {
    store_url: String,
    /// `[apps.machines]`, with `OUTSIDE` for the refusal mode.
    machines: String,
    sandbox: Sandbox,
    server: Option<Server>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    socket_mode: bool,
    outside: &'static str,
}

fn config_text(
    sandbox: &Sandbox,
    store_url: &str,
    machines: &str,
    socket_mode: bool,
    outside: &str,
) -> String {
    let transport = if socket_mode {
        format!("app_token = \"{}\"\n", sandbox.app_token())
    } else {
        format!("signing_secret = \"{}\"\n", sandbox.signing_secret())
    };
    format!(
        "[slack]\nbot_token = \"{}\"\n{transport}api_url = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"{store_url}\"\n[engine]\npoll_interval_ms = 100\n{}",
        sandbox.bot_token(),
        sandbox.api_url(),
        machines.replace("OUTSIDE", outside),
    )
}

impl Env {
    /// On SQLite in a directory of its own, or on the given store.
    async fn start(socket_mode: bool, outside: &'static str, store_url: Option<String>) -> Self {
        let seed =
            Seed::parse_toml(include_str!("../src/demo_seed.toml"), "demo_seed.toml").unwrap();
        let sandbox = Sandbox::start(SandboxConfig {
            seed,
            rate_limits: RateLimitSettings {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store_url =
            store_url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("m.db").display()));
        let mut env = Self {
            machines: MACHINES.to_string(),
            store_url,
            sandbox,
            server: None,
            http: reqwest::Client::new(),
            _dir: dir,
            socket_mode,
            outside,
        };
        env.start_server().await;
        env
    }

    async fn start_server(&mut self) {
        let text = config_text(
            &self.sandbox,
            &self.store_url,
            &self.machines,
            self.socket_mode,
            self.outside,
        );
        let config =
            Config::parse(&text, "machines.toml", &BTreeMap::<String, String>::new()).unwrap();
        let apps = switchyard_apps::builtin(&config).unwrap();
        let server = Server::start(config.clone(), apps.clone(), StartOptions::default())
            .await
            .unwrap();
        let declarations: Vec<_> = apps.iter().map(|a| a.declaration()).collect();
        let base = format!("http://{}", server.addr());
        let manifest = switchyard_engine::manifest::manifest(
            &config,
            &declarations,
            (!self.socket_mode).then_some(base.as_str()),
        );
        Manifest::from_value(manifest.clone()).expect("a manifest the sandbox takes");
        let put = self
            .http
            .put(format!("{}/_sandbox/app/manifest", self.sandbox.url()))
            .body(manifest.to_string())
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "{:?}", put.text().await);
        self.server = Some(server);
        if self.socket_mode {
            for _ in 0..200 {
                if self.get("/socket").await["connections"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty())
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("no Socket Mode connection");
        }
    }

    async fn restart(&mut self) {
        let server = self.server.take().unwrap();
        assert!(server.shutdown().await);
        self.start_server().await;
    }

    fn base(&self) -> String {
        format!("http://{}", self.server.as_ref().unwrap().addr())
    }

    async fn get(&self, path: &str) -> Value {
        self.sandbox.control().get(path).await.expect("control API")
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.sandbox
            .control()
            .post(path, &body)
            .await
            .expect("control API")
    }

    /// `@bot <text>` as `user` in `channel`; the message's ts.
    async fn mention(&self, user: &str, channel: &str, text: &str) -> String {
        let body = json!({"user": user, "channel": channel,
                          "text": format!("<@{}> {text}", self.sandbox.bot_user_id())});
        let posted = self.post("/messages", body).await;
        posted["ts"].as_str().expect("posted").to_string()
    }

    /// The thread's replies once there are `n` of them.
    async fn replies(&self, channel: &str, ts: &str, n: usize) -> Vec<Value> {
        let v = self
            .get(&format!(
                "/channels/{channel}/threads/{ts}?wait_for={}&timeout_ms=10000",
                n + 1
            ))
            .await;
        let messages = v["messages"].as_array().unwrap().clone();
        assert!(messages.len() > n, "{n} replies expected in {channel}: {v}");
        messages[1..].to_vec()
    }

    /// The bot's top-level messages in the channel, once there are at least `n`.
    async fn messages(&self, channel: &str, n: usize) -> Vec<String> {
        let mut texts = Vec::new();
        for _ in 0..400 {
            let v = self.get(&format!("/channels/{channel}/messages")).await;
            texts = v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["bot_id"].is_string())
                .map(|m| m["text"].as_str().unwrap_or("").to_string())
                .collect();
            if texts.len() >= n {
                return texts;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{n} bot messages expected in {channel}: {texts:#?}");
    }

    async fn ephemerals(&self, user: &str, channel: &str, n: usize) -> Vec<String> {
        let mut texts = Vec::new();
        for _ in 0..200 {
            let v = self
                .get(&format!("/ephemerals?user={user}&channel={channel}"))
                .await;
            texts = v["ephemerals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["message"]["text"].as_str().unwrap_or("").to_string())
                .collect();
            if texts.len() >= n {
                return texts;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{n} ephemerals expected for {user} in {channel}: {texts:#?}");
    }

    async fn command(&self, user: &str, channel: &str, text: &str) -> Value {
        self.post(
            "/commands",
            json!({"user": user, "channel": channel, "command": "/oops-clear", "text": text}),
        )
        .await
    }

    /// A device's update: the reply's status and body.
    async fn device(&self, token: &str, body: Value) -> (u16, Value) {
        let reply = self
            .http
            .post(format!("{}/api/machine/update", self.base()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (reply.status().as_u16(), reply.json().await.unwrap())
    }

    async fn api(&self, method: reqwest::Method, path: &str, token: &str) -> (u16, Value) {
        let reply = self
            .http
            .request(method, format!("{}{path}", self.base()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (reply.status().as_u16(), reply.json().await.unwrap())
    }

    async fn audit(&self, action: &str) -> Vec<switchyard_store::AuditEntry> {
        self.server
            .as_ref()
            .unwrap()
            .store()
            .audit_query(&AuditFilter {
                action_prefix: Some(action.into()),
                ..AuditFilter::default()
            })
            .await
            .unwrap()
    }

    /// `status` in `channel`: the reply's text and the sections' text.
    async fn status(&self, channel: &str) -> (String, String) {
        let ts = self.mention("carol", channel, "status").await;
        let reply = &self.replies(channel, &ts, 1).await[0];
        let sections: Vec<&str> = reply["blocks"]
            .as_array()
            .expect("status has blocks")
            .iter()
            .filter(|b| b["type"] == "section")
            .map(|b| b["text"]["text"].as_str().unwrap())
            .collect();
        (
            reply["text"].as_str().unwrap().to_string(),
            sections.join("\n"),
        )
    }
}

fn update(machine: &str, fob: &str, uptime: f64) -> Value {
    json!({"machine_name": machine, "oops": false, "rfid_value": fob, "uptime": uptime,
           "wifi_signal_db": -50.0, "wifi_signal_percent": 80.0, "internal_temperature_c": 40.0})
}

fn line<'a>(sections: &'a str, machine: &str) -> &'a str {
    sections
        .lines()
        .find(|l| l.starts_with(&format!("*{machine}*")))
        .unwrap_or_else(|| panic!("{machine} in {sections}"))
}

#[tokio::test]
async fn machines_over_socket_mode_devices_api_and_restart() {
    let mut env = Env::start(true, "ignore", None).await;

    // status, anywhere the bot is: every machine, Idle, never seen; the header's counts.
    let (text, sections) = env.status("general").await;
    assert!(text.starts_with("4 machines: 0 oopsed"), "{text}");
    assert!(
        line(&sections, "Laser Cutter").contains("Idle"),
        "{sections}"
    );
    assert!(
        line(&sections, "Lathe").contains("contact never"),
        "{sections}"
    );

    // Outside the control channel: ignored (audited as refused), no reply, no ephemeral.
    env.mention("alice", "general", "oops laser").await;
    for _ in 0..200 {
        if !env.audit("machines.oops").await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let refused = env.audit("machines.oops").await;
    assert_eq!(refused[0].record.outcome, Outcome::Refused, "{refused:?}");
    assert!(refused[0].record.detail.contains("ignored"));

    // oops in the control channel: no reply, a notice in each channel (who and through what).
    let ts = env.mention("alice", CONTROL, "oops laser cutter").await;
    let control = env.messages(CONTROL, 1).await;
    assert!(
        control[0].contains("Laser Cutter") && control[0].contains("via Slack"),
        "{control:?}"
    );
    let oops = env.messages(OOPS, 1).await;
    assert!(oops[0].contains("out of service"), "{oops:?}");
    // Errors get a reply: already oopsed (name any case), unknown machine, no machine.
    let ts2 = env.mention("alice", CONTROL, "oops LASER").await;
    assert!(
        env.replies(CONTROL, &ts2, 1).await[0]["text"]
            .as_str()
            .unwrap()
            .contains("already oopsed")
    );
    let ts3 = env.mention("alice", CONTROL, "lock planer").await;
    let unknown = env.replies(CONTROL, &ts3, 1).await[0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        unknown.contains("planer") && unknown.contains("`status`"),
        "{unknown}"
    );
    // lock, then already locked out.
    env.mention("bob", CONTROL, "lock laser").await;
    let control = env.messages(CONTROL, 2).await;
    assert!(
        control.iter().any(|t| t.contains("locked out by")),
        "{control:?}"
    );
    let ts4 = env.mention("bob", CONTROL, "lock laser").await;
    assert!(
        env.replies(CONTROL, &ts4, 1).await[0]["text"]
            .as_str()
            .unwrap()
            .contains("already locked out")
    );
    let (_, sections) = env.status("general").await;
    let laser = line(&sections, "Laser Cutter");
    assert!(
        laser.contains("Oopsed") && laser.contains("Locked out"),
        "{laser}"
    );
    // clear: both states go; then nothing to clear.
    env.mention("alice", CONTROL, "clear laser").await;
    let oops = env.messages(OOPS, 3).await;
    assert!(oops[2].contains("back in service"), "{oops:?}");
    let ts5 = env.mention("alice", CONTROL, "clear laser").await;
    assert!(
        env.replies(CONTROL, &ts5, 1).await[0]["text"]
            .as_str()
            .unwrap()
            .contains("nothing to clear")
    );
    // No reply to the successful commands.
    let v = env.get(&format!("/channels/{CONTROL}/threads/{ts}")).await;
    assert_eq!(v["messages"].as_array().unwrap().len(), 1, "{v}");

    // The device API. Authorized fob: relay on, a login logged.
    let (status, reply) = env
        .device(DEVICE_TOKEN, update("laser cutter", "1111", 100.0))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["relay"], true, "{reply}");
    assert_eq!(reply["second_relay"], Value::Null);
    assert!(reply["display"].as_str().unwrap().contains("Alice Admin"));
    // Same fob again: still on; fob out: logout.
    assert_eq!(
        env.device(DEVICE_TOKEN, update("Laser Cutter", "1111", 105.0))
            .await
            .1["relay"],
        true
    );
    let (_, sections) = env.status("general").await;
    assert!(
        line(&sections, "Laser Cutter").contains("In use by Alice Admin"),
        "{sections}"
    );
    assert_eq!(
        env.device(DEVICE_TOKEN, update("Laser Cutter", "", 110.0))
            .await
            .1["relay"],
        false
    );
    // Unauthorized, unknown fob, expired user.
    assert_eq!(
        env.device(DEVICE_TOKEN, update("laser", "2222", 115.0))
            .await
            .1["relay"],
        false
    );
    assert_eq!(
        env.device(DEVICE_TOKEN, update("laser", "9999", 120.0))
            .await
            .1["relay"],
        false
    );
    // Warn-only: an unauthorized (expired) user gets the relay, with a warning.
    assert_eq!(
        env.device(DEVICE_TOKEN, update("Lathe", "3333", 50.0))
            .await
            .1["relay"],
        true
    );
    // Reboot: the uptime went down.
    env.device(DEVICE_TOKEN, update("Lathe", "", 3.0)).await;
    // Always enabled: on with no fob.
    let (_, dust) = env.device(DEVICE_TOKEN, update("dust", "", 10.0)).await;
    assert_eq!(dust["relay"], true, "{dust}");
    // A machine with its own token: the shared one is refused; its own works; second relay.
    let (status, reply) = env
        .device(DEVICE_TOKEN, update("Welder", "2222", 10.0))
        .await;
    assert_eq!(status, 401, "{reply}");
    let (status, reply) = env
        .device("welder-token", update("Welder", "2223", 10.0))
        .await;
    assert_eq!(
        (status, &reply["relay"], &reply["second_relay"]),
        (200, &json!(true), &json!(true)),
        "{reply}"
    );
    // Unknown machine: 404 JSON; bad JSON: 400 JSON; no token: 401.
    let (status, reply) = env.device(DEVICE_TOKEN, update("Planer", "", 1.0)).await;
    assert_eq!(
        (status, reply["ok"].clone()),
        (404, json!(false)),
        "{reply}"
    );
    let bad = env
        .http
        .post(format!("{}/api/machine/update", env.base()))
        .bearer_auth(DEVICE_TOKEN)
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let (status, _) = env.device("wrong", update("Lathe", "", 60.0)).await;
    assert_eq!(status, 401);
    let control = env.messages(CONTROL, 11).await.join("\n");
    for expected in [
        "Alice Admin logged in to *Laser Cutter*",
        "Alice Admin logged out of *Laser Cutter*",
        "Bob Builder is not authorized for *Laser Cutter*",
        "Unknown fob `9999`",
        "Old Timer is not authorized for *Lathe*; allowed anyway",
        "*Lathe* rebooted",
        "Bob Builder logged in to *Welder*",
    ] {
        assert!(control.contains(expected), "{expected:?} in {control}");
    }

    // The oops button: relay cut at once, notices naming the button.
    let mut pressed = update("Lathe", "2222", 70.0);
    pressed["oops"] = json!(true);
    let (_, reply) = env.device(DEVICE_TOKEN, pressed).await;
    assert_eq!(
        (reply["relay"].clone(), reply["oops_led"].clone()),
        (json!(false), json!(true)),
        "{reply}"
    );
    let control = env.messages(CONTROL, 12).await;
    assert!(
        control
            .iter()
            .any(|t| t.contains("*Lathe* was oopsed with the device's oops button")),
        "{control:?}"
    );

    // The HTTP API: lock-out set and cleared by another system (device token), by name.
    let (status, reply) = env
        .api(
            reqwest::Method::POST,
            "/api/machine/locked_out/Laser%20Cutter",
            DEVICE_TOKEN,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let (status, _) = env
        .api(
            reqwest::Method::POST,
            "/api/machine/oops/nope",
            DEVICE_TOKEN,
        )
        .await;
    assert_eq!(status, 404);
    let control = env.messages(CONTROL, 13).await;
    assert!(
        control
            .iter()
            .any(|t| t.contains("*Laser Cutter* was locked out via the HTTP API")),
        "{control:?}"
    );
    let metrics = env
        .http
        .get(format!("{}/metrics", env.base()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchyard_machine_locked_out{machine=\"Laser Cutter\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_machine_oopsed{machine=\"Lathe\"} 1"),
        "{metrics}"
    );

    // /oops-clear: refused outside the control channel (ephemeral, audited).
    env.command("alice", "general", "").await;
    let refusals = env.ephemerals("alice", "general", 1).await;
    assert!(refusals[0].contains("works only in"), "{refusals:?}");
    // Without a name: the picker, with the oopsed and locked machines; pick one to clear it.
    env.command("alice", CONTROL, "").await;
    let mut view = Value::Null;
    for _ in 0..200 {
        let views = env.get("/views?user=alice").await;
        if let Some(v) = views["views"].as_array().and_then(|v| v.last()) {
            view = v.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let options = view["blocks"][0]["element"]["options"].to_string();
    assert!(
        options.contains("Laser Cutter")
            && options.contains("Lathe")
            && !options.contains("Welder"),
        "{view}"
    );
    let submitted = env
        .post(
            "/views/submit",
            json!({"user": "alice", "values": {"machine": {"machine": "Lathe"}}}),
        )
        .await;
    assert_eq!(submitted["ok"], true, "{submitted}");
    let oops = env.messages(OOPS, 6).await;
    assert!(
        oops.iter()
            .any(|t| t.contains("*Lathe* is back in service")),
        "{oops:?}"
    );
    // With a name: cleared; unknown and nothing-to-clear answered ephemerally.
    env.command("bob", CONTROL, "laser").await;
    env.command("bob", CONTROL, "laser").await;
    env.command("bob", CONTROL, "planer").await;
    let answers = env.ephemerals("bob", CONTROL, 2).await;
    assert!(
        answers.iter().any(|t| t.contains("nothing to clear")),
        "{answers:?}"
    );
    assert!(answers.iter().any(|t| t.contains("planer")), "{answers:?}");
    // Nothing left to clear: the picker is not opened.
    env.command("alice", CONTROL, "").await;
    let none = env.ephemerals("alice", CONTROL, 1).await;
    assert!(none[0].contains("No machine"), "{none:?}");

    // Restart on the same database: the states are still there.
    env.mention("alice", CONTROL, "oops welder").await;
    env.messages(OOPS, 8).await;
    env.restart().await;
    let (text, sections) = env.status("general").await;
    assert!(text.starts_with("4 machines: 1 oopsed"), "{text}");
    assert!(line(&sections, "Welder").contains("Oopsed"), "{sections}");
    assert!(
        line(&sections, "Dust Collector").contains("In use"),
        "{sections}"
    );
    assert!(
        line(&sections, "Laser Cutter").contains("Idle"),
        "{sections}"
    );
    env.server.take().unwrap().shutdown().await;
}

#[tokio::test]
async fn machines_over_the_http_events_api() {
    let env = Env::start(false, "refuse", None).await;
    http_flow(&env).await;
}

/// The HTTP flow, devices and a restart on PostgreSQL (`SWITCHYARD_TEST_POSTGRES_URL`), in a
/// schema of its own.
#[tokio::test]
async fn machines_on_postgresql() {
    common::on_postgres_schema("machines", |url| async move {
        let mut env = Env::start(false, "refuse", Some(url)).await;
        http_flow(&env).await;
        let (_, reply) = env
            .device(DEVICE_TOKEN, update("Lathe", "2222", 10.0))
            .await;
        assert_eq!(reply["relay"], true, "{reply}");
        let (_, reply) = env
            .device(DEVICE_TOKEN, update("Laser", "9999", 10.0))
            .await;
        assert_eq!(reply["relay"], false, "{reply}");
        env.mention("alice", CONTROL, "oops welder").await;
        env.messages(OOPS, 7).await;
        env.restart().await;
        let (text, sections) = env.status("general").await;
        assert!(text.starts_with("4 machines: 1 oopsed"), "{text}");
        assert!(
            line(&sections, "Lathe").contains("In use by Bob Builder"),
            "{sections}"
        );
        env.server.take().unwrap().shutdown().await;
    })
    .await;
}

async fn http_flow(env: &Env) {
    let (text, _) = env.status("oops").await;
    assert!(text.starts_with("4 machines"), "{text}");
    // Outside the control channel, refused politely and audited.
    env.mention("bob", "general", "lock lathe").await;
    let refusals = env.ephemerals("bob", "general", 1).await;
    assert!(refusals[0].contains("works only in"), "{refusals:?}");
    let ts = env.mention("bob", CONTROL, "lock lathe").await;
    let control = env.messages(CONTROL, 1).await;
    assert!(
        control[0].contains("*Lathe* was locked out by"),
        "{control:?}"
    );
    let ts2 = env.mention("bob", CONTROL, "lock Lathe").await;
    assert!(
        env.replies(CONTROL, &ts2, 1).await[0]["text"]
            .as_str()
            .unwrap()
            .contains("already locked out")
    );
    let refused = env.audit("machines.lock").await;
    assert!(
        refused.iter().any(|r| r.record.outcome == Outcome::Refused),
        "{refused:?}"
    );
    // The slash command over HTTP, with a name.
    env.command("alice", CONTROL, "lathe").await;
    let oops = env.messages(OOPS, 2).await;
    assert!(oops[1].contains("*Lathe* is back in service"), "{oops:?}");
    let v = env.get(&format!("/channels/{CONTROL}/threads/{ts}")).await;
    assert_eq!(
        v["messages"].as_array().unwrap().len(),
        1,
        "no reply on success: {v}"
    );
    // The picker over HTTP interactions: oops, then /oops-clear without a name, pick, cleared.
    env.mention("alice", CONTROL, "oops laser").await;
    env.messages(OOPS, 3).await;
    env.command("alice", CONTROL, "").await;
    let mut opened = false;
    for _ in 0..200 {
        let views = env.get("/views?user=alice").await;
        if views["views"].as_array().is_some_and(|v| !v.is_empty()) {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(opened, "the picker opened");
    let submitted = env
        .post(
            "/views/submit",
            json!({"user": "alice", "values": {"machine": {"machine": "Laser Cutter"}}}),
        )
        .await;
    assert_eq!(submitted["ok"], true, "{submitted}");
    let oops = env.messages(OOPS, 4).await;
    assert!(
        oops[3].contains("*Laser Cutter* is back in service"),
        "{oops:?}"
    );
    // The rest of the mention commands over HTTP too: `list`, and `clear` (done, then nothing
    // left to clear).
    let ts = env.mention("carol", "general", "list").await;
    let listed = &env.replies("general", &ts, 1).await[0];
    assert!(
        listed["text"].as_str().unwrap().starts_with("4 machines"),
        "{listed}"
    );
    env.mention("alice", CONTROL, "oops welder").await;
    env.messages(OOPS, 5).await;
    env.mention("alice", CONTROL, "clear welder").await;
    let oops = env.messages(OOPS, 6).await;
    assert!(oops[5].contains("is back in service"), "{oops:?}");
    let ts = env.mention("alice", CONTROL, "clear welder").await;
    assert!(
        env.replies(CONTROL, &ts, 1).await[0]["text"]
            .as_str()
            .unwrap()
            .contains("nothing to clear"),
        "clearing a machine with nothing to clear gets a reply"
    );
    catalog_flow(env).await;
}

/// Machines and users added, refused and removed through the admin API.
async fn catalog_flow(env: &Env) {
    let store = env.server.as_ref().unwrap().store();
    let token = |scopes: &[&str], name: &str| switchyard_store::NewApiToken {
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires_at_ms: None,
    };
    let now = switchyard_engine::now_ms();
    let actor = switchyard_engine::admin::Actor::cli();
    let admin = switchyard_engine::admin::create_token(
        store,
        &token(&["machines:admin"], "ops"),
        &actor,
        now,
    )
    .await
    .unwrap()
    .plaintext;
    let reader = switchyard_engine::admin::create_token(
        store,
        &token(&["audit:read"], "reader"),
        &actor,
        now,
    )
    .await
    .unwrap()
    .plaintext;
    let put = |path: &str, token: &str, body: Value| {
        env.http
            .put(format!("{}/api/machines/{path}", env.base()))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let saw = json!({"alias": "saw", "authorizations_or": ["wood"]});
    let reply = put("machines/Band%20Saw", "nope", saw.clone())
        .await
        .unwrap();
    assert_eq!(reply.status(), 401);
    let reply = put("machines/Band%20Saw", &reader, saw.clone())
        .await
        .unwrap();
    assert_eq!(reply.status(), 403);
    let reply = put("machines/Band%20Saw", &admin, saw).await.unwrap();
    assert_eq!(reply.status(), 200, "{:?}", reply.text().await);
    let reply = put("machines/Planer", &admin, json!({"alias": "LASER"}))
        .await
        .unwrap();
    assert_eq!(reply.status(), 400, "an alias taken is refused");
    assert!(reply.text().await.unwrap().contains("collides"));
    let reply = put("machines/Planer", &admin, json!({"token": "x"}))
        .await
        .unwrap();
    assert_eq!(reply.status(), 400, "tokens belong in the config");
    let reply = put(
        "users/Dana",
        &admin,
        json!({"fob_codes": ["4444"], "authorizations": ["wood"]}),
    )
    .await
    .unwrap();
    assert_eq!(reply.status(), 200, "{:?}", reply.text().await);
    let reply = put("users/Eve", &admin, json!({"fob_codes": ["4444"]}))
        .await
        .unwrap();
    assert_eq!(reply.status(), 400, "a fob taken is refused");
    // In force at once: the device API and status know them.
    let (status, reply) = env.device(DEVICE_TOKEN, update("saw", "4444", 5.0)).await;
    assert_eq!((status, &reply["relay"]), (200, &json!(true)), "{reply}");
    let (text, sections) = env.status("general").await;
    assert!(text.starts_with("5 machines"), "{text}");
    assert!(
        line(&sections, "Band Saw").contains("In use by Dana"),
        "{sections}"
    );
    let catalog: Value = env
        .http
        .get(format!("{}/api/machines/catalog", env.base()))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        catalog["catalog"]["machines"]
            .to_string()
            .contains("Band Saw"),
        "{catalog}"
    );
    assert!(!catalog.to_string().contains("welder-token"), "{catalog}");
    for path in ["machines/band%20saw", "users/Dana"] {
        let delete = |token: String| {
            env.http
                .delete(format!("{}/api/machines/{path}", env.base()))
                .bearer_auth(token)
                .send()
        };
        assert_eq!(delete(admin.clone()).await.unwrap().status(), 200);
        assert_eq!(delete(admin.clone()).await.unwrap().status(), 404);
    }
    let (status, _) = env.device(DEVICE_TOKEN, update("saw", "", 6.0)).await;
    assert_eq!(status, 404, "removed");
    let audit = env.audit("machines.machine.").await;
    assert_eq!(audit.len(), 2, "put and remove audited: {audit:?}");
}

/// 200 machines: `status` stays within Slack's limits (the sandbox checks Block Kit as Slack
/// does and refuses what Slack would), every machine listed once.
#[tokio::test]
async fn status_with_200_machines_fits_slack() {
    let mut env = Env::start(false, "ignore", None).await;
    let mut machines = MACHINES.to_string();
    for i in 0..196 {
        machines.push_str(&format!(
            "\n[[apps.machines.machines]]\nname = \"Workshop machine number {i:03} with a long name\"\nauthorizations_or = [\"wood\"]\n"
        ));
    }
    env.machines = machines;
    env.restart().await;
    let ts = env.mention("carol", "general", "status").await;
    let first = env.replies("general", &ts, 1).await[0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    // "200 machines: … (1 of N)" when split.
    let n: usize = first
        .rsplit_once(" of ")
        .and_then(|(_, n)| n.trim_end_matches(')').parse().ok())
        .unwrap_or(1);
    assert!(n > 1, "200 machines take more than one message: {first}");
    let replies = env.replies("general", &ts, n).await;
    let mut listed = 0;
    for reply in &replies {
        let blocks = reply["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        for block in blocks.iter().filter(|b| b["type"] == "section") {
            let text = block["text"]["text"].as_str().unwrap();
            assert!(text.chars().count() <= 3000);
            listed += text.lines().count();
        }
    }
    assert_eq!(listed, 200);
    let calls = env.get("/api_calls?method=chat.postMessage").await;
    assert!(
        calls["calls"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{calls}"
    );
    env.server.take().unwrap().shutdown().await;
}

/// A `views.open` that fails once (a connection reset) is tried again while the trigger is
/// good: the picker opens, and nobody is told it did not work (found by the chaos soak).
#[tokio::test]
async fn the_picker_opens_through_a_failed_views_open() {
    let mut env = Env::start(true, "ignore", None).await;
    env.mention("alice", CONTROL, "oops laser").await;
    env.messages(OOPS, 1).await;
    env.post(
        "/faults",
        json!({"target": "web_api", "method": "views.open", "fault": "reset", "times": 1}),
    )
    .await;
    env.command("alice", CONTROL, "").await;
    let mut opened = false;
    for _ in 0..200 {
        let views = env.get("/views?user=alice").await;
        if views["views"].as_array().is_some_and(|v| !v.is_empty()) {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(opened, "the picker opened");
    let calls = env.get("/api_calls?method=views.open").await;
    assert_eq!(calls["calls"].as_array().unwrap().len(), 2, "{calls}");
    let told = env
        .get(&format!("/ephemerals?user=alice&channel={CONTROL}"))
        .await;
    assert_eq!(told["ephemerals"], json!([]), "{told}");
    env.server.take().unwrap().shutdown().await;
}

/// When the picker cannot open in time — Slack gives no answer to `views.open` while the
/// trigger is good, or says `expired_trigger_id` because the command reached us too late — the
/// person is told what happened and what to do, with an error id; nothing else. Two slowed
/// `views.open`s (each cut off at the trigger's end) hold the one SQLite worker long enough
/// that the third command's trigger has run out when its turn comes.
#[tokio::test]
async fn a_picker_that_cannot_open_in_time_says_to_run_the_command_again() {
    let mut env = Env::start(true, "ignore", None).await;
    env.mention("alice", CONTROL, "oops laser").await;
    env.messages(OOPS, 1).await;
    env.post(
        "/faults",
        json!({"target": "web_api", "method": "views.open", "fault": "slow", "delay_ms": 4000, "times": 2}),
    )
    .await;
    for _ in 0..3 {
        env.command("alice", CONTROL, "").await;
    }
    // The first notice comes after one cut-off call, the last after two and the expired one.
    env.ephemerals("alice", CONTROL, 1).await;
    let told = env.ephemerals("alice", CONTROL, 3).await;
    assert_eq!(told.len(), 3, "{told:#?}");
    for text in &told {
        assert!(
            text.contains("Slack did not open the form in time — please run `/oops-clear` again")
                && text.contains("(error id "),
            "{text}"
        );
    }
    let calls = env.get("/api_calls?method=views.open").await;
    assert!(
        calls["calls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["error"] == "expired_trigger_id"),
        "the third trigger had expired: {calls}"
    );
    let views = env.get("/views?user=alice").await;
    assert_eq!(views["views"], json!([]), "no modal opened: {views}");
    // Rate limited for longer than the trigger lasts: no try left in time, and the same notice.
    env.post(
        "/faults",
        json!({"target": "web_api", "method": "views.open", "fault": "rate_limited", "retry_after": 5, "times": 1}),
    )
    .await;
    env.command("alice", CONTROL, "").await;
    let told = env.ephemerals("alice", CONTROL, 4).await;
    assert!(
        told[3].contains("Slack did not open the form in time — please run `/oops-clear` again"),
        "{told:#?}"
    );
    env.server.take().unwrap().shutdown().await;
}
