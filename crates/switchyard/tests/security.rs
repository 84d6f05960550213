//! The security sweep, against the real `switchyard serve` and the sandbox:
//! - the refusal matrix: every role against every command and action (the matrix checked to
//!   list every mention word, slash command and button the apps offer), channel gates, each
//!   refusal told and audited, nothing else refused;
//! - API tokens missing, unknown, or without the scope, on every API route;
//! - injection through alert fields, machine names and mention arguments: Slack markup
//!   (`<!channel>`, `<@U…>`, `<#C…>`, links) escaped wherever user text lands; SQL-ish input
//!   stored and read back as text;
//! - forged, replayed (outside 300 s), re-signed-modified, oversized and malformed Slack
//!   requests;
//! - after each run, the server's whole log output (at `debug`), every answer and `config show`
//!   scanned for every configured secret, and the store for every one it need not keep.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sandbox::Sandbox;
use switchyard_store::{Outcome, Store};

const DEVICE_TOKEN: &str = "sweep-device-token-7f3a";

/// The demo's workspace with #control open to everyone (so every role can try everything
/// there) and #alerts with a fixed id.
const SEED: &str = r#"
[team]
id = "T0SANDBOX"
name = "Sandbox"
domain = "sandbox"

[[users]]
name = "alice"
real_name = "Alice Admin"
email = "alice@example.com"

[[users]]
name = "bob"
real_name = "Bob Builder"
email = "bob@example.com"

[[users]]
name = "carol"
real_name = "Carol Contractor"
email = "carol@example.com"

[[channels]]
id = "C0GENERAL"
name = "general"
members = ["*"]
app_member = true

[[channels]]
id = "C0CONTROL"
name = "control"
members = ["*"]
app_member = true

[[channels]]
id = "C0OOPS"
name = "oops"
members = ["*"]
app_member = true

[[channels]]
id = "C0ALERTS"
name = "alerts"
members = ["*"]
app_member = true

[[channels]]
id = "C0STORM"
name = "storm"
members = ["*"]
app_member = true
"#;

/// alice is an admin, bob an operator, carol gets the default role (viewer). The machines'
/// changes work only in #control, whatever the role.
fn access_section(alice: &str, bob: &str) -> String {
    format!(
        r#"
[access]
default_role = "viewer"
[access.roles]
admin = ["*"]
operator = ["*.status", "ping", "machines.oops", "machines.clear", "alerts.ack"]
viewer = ["*.status"]
[access.bind]
admin = ["{alice}"]
operator = ["{bob}"]
[[access.gates]]
actions = ["machines.oops", "machines.lock", "machines.clear"]
channels = ["C0CONTROL"]
elsewhere = "refuse"
"#
    )
}

const APPS: &str = r#"
[apps.ping]
enabled = true

[apps.machines]
enabled = true
control_channel = "C0CONTROL"
oops_channel = "C0OOPS"
device_token = "${SWEEP_DEVICE_TOKEN}"

[[apps.machines.machines]]
name = "Laser Cutter"
alias = "laser"
authorizations_or = ["laser"]

[apps.alerts]
enabled = true
default_channel = "C0ALERTS"

# A storm's summary (its Acknowledge all and Resolve all buttons) from a batch of these.
[[apps.alerts.rules]]
name = "storm"
condition = "labels.kind == 'storm'"
channels = ["C0STORM"]
storm_backlog = 1

[apps.webhooks]
enabled = true
[apps.webhooks.incoming.ops]
webhook_url = "${SWEEP_WEBHOOK_URL}"
"#;

struct Sweep {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    config: PathBuf,
    log: PathBuf,
    serve: Option<common::Serve>,
    http: reqwest::Client,
    /// The sandbox's incoming webhook the config names (a secret: whoever has it can post).
    webhook_url: String,
    /// Every secret this run configured or made: none may show anywhere.
    secrets: Vec<String>,
    /// Every answer the server gave, for the secrets scan.
    answers: Vec<String>,
}

impl Sweep {
    async fn start(socket_mode: bool) -> Self {
        let sandbox = common::sandbox(SEED, false).await;
        let dir = tempfile::tempdir().unwrap();
        let users: Value = sandbox.control().get("/users").await.unwrap();
        let id = |name: &str| {
            users["users"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["name"] == name)
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let transport = if socket_mode {
            "app_token = \"${SWEEP_APP_TOKEN}\"\n"
        } else {
            "signing_secret = \"${SWEEP_SIGNING_SECRET}\"\n"
        };
        let text = format!(
            "[slack]\nbot_token = \"${{SWEEP_BOT_TOKEN}}\"\n{transport}api_url = \"{}\"\n\
             [server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{}\"\n\
             [engine]\npoll_interval_ms = 100\n{}{APPS}",
            sandbox.api_url(),
            dir.path().join("switchyard.db").display(),
            access_section(&id("alice"), &id("bob")),
        );
        let config = dir.path().join("switchyard.toml");
        common::write_private(&config, text).unwrap();
        let hook = sandbox
            .control()
            .post("/webhooks", &json!({"channel": "C0ALERTS"}))
            .await
            .unwrap();
        let webhook_url = hook["url"].as_str().unwrap().to_string();
        let secrets = vec![
            sandbox.bot_token().to_string(),
            sandbox.app_token().to_string(),
            sandbox.signing_secret().to_string(),
            DEVICE_TOKEN.to_string(),
            webhook_url.clone(),
        ];
        let log = dir.path().join("serve.log");
        Self {
            sandbox,
            dir,
            config,
            log,
            serve: None,
            http: reqwest::Client::new(),
            webhook_url,
            secrets,
            answers: Vec::new(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("SWEEP_BOT_TOKEN", self.sandbox.bot_token())
            .env("SWEEP_APP_TOKEN", self.sandbox.app_token())
            .env("SWEEP_SIGNING_SECRET", self.sandbox.signing_secret())
            .env("SWEEP_DEVICE_TOKEN", DEVICE_TOKEN)
            .env("SWEEP_WEBHOOK_URL", &self.webhook_url)
            .env_remove("SLACK_BOT_TOKEN")
            .env_remove("SLACK_APP_TOKEN")
            .env_remove("SLACK_SIGNING_SECRET")
            .env("RUST_BACKTRACE", "0");
        command
    }

    async fn serve(&mut self) {
        // The sandbox knows the app as Switchyard describes itself (its slash commands).
        let manifest = self.command(&["manifest"]).output().unwrap();
        assert!(
            manifest.status.success(),
            "{}",
            String::from_utf8_lossy(&manifest.stderr)
        );
        let manifest: Value = serde_json::from_slice(&manifest.stdout).unwrap();
        let put = self
            .sandbox
            .control()
            .put("/app/manifest", &manifest)
            .await
            .unwrap();
        assert_eq!(put["ok"], true, "{put}");
        let log = std::fs::File::create(&self.log).unwrap();
        let mut command = self.command(&["serve"]);
        // Everything the server says, at its most talkative, for the secrets scan.
        command.env("RUST_LOG", "debug").stderr(Stdio::from(log));
        self.serve = Some(common::Serve::start(command).await);
    }

    fn url(&self) -> &str {
        &self.serve.as_ref().unwrap().url
    }

    /// Makes an API token in the store, as `switchyard token create` does.
    async fn token(&mut self, name: &str, scopes: &[&str]) -> String {
        let store = Store::connect(&format!(
            "sqlite://{}",
            self.dir.path().join("switchyard.db").display()
        ))
        .await
        .unwrap();
        let token = common::create_token(&store, name, scopes).await;
        self.secrets.push(token.clone());
        token
    }

    /// A request to the server: its status and body (kept for the secrets scan).
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        self.answers.push(text.clone());
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn say(&self, user: &str, channel: &str, text: &str) {
        common::mention(&self.sandbox, user, channel, text).await;
    }

    /// The audit entries (newest first) matching `query`, read with an admin token.
    async fn audit(&mut self, admin: &str, query: &str) -> Vec<Value> {
        let (status, body) = self
            .request(
                "GET",
                &format!("/api/v1/audit?limit=1000&{query}"),
                Some(admin),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["entries"].as_array().unwrap().clone()
    }

    /// Waits (bounded) until `check` holds for the audit entries matching `query`.
    async fn wait_audit(
        &mut self,
        admin: &str,
        query: &str,
        what: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        for _ in 0..400 {
            let entries = self.audit(admin, query).await;
            if check(&entries) {
                return entries;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: String = log
            .lines()
            .filter(|l| !l.contains("DEBUG"))
            .collect::<Vec<_>>()
            .join("\n");
        panic!(
            "{what}: never seen; audit: {}\nthe server's log (without debug lines): {tail}",
            json!(self.audit(admin, query).await)
        );
    }

    /// Posts through the incoming webhook and waits until the post is in #alerts: the store
    /// has then held the call (for the scan at rest).
    async fn post_through_the_webhook(&mut self) {
        let poster = self.token("sweep-webhook", &["webhooks:post"]).await;
        let text = "sweep: through the incoming webhook";
        let (status, body) = self
            .request(
                "POST",
                "/api/v1/webhooks/ops",
                Some(&poster),
                Some(json!({"text": text})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let control = self.sandbox.control();
        for _ in 0..400 {
            let posted = control.get("/channels/C0ALERTS/messages").await.unwrap();
            if posted["messages"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["text"] == text)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the post through the incoming webhook never reached #alerts");
    }

    /// Stops the server and scans all it said (log, answers, `config show`) for every secret,
    /// and the store for every one (after a post through the incoming webhook).
    async fn scan_for_secrets(mut self) {
        self.post_through_the_webhook().await;
        let shown = self.command(&["config", "show"]).output().unwrap();
        assert!(
            shown.status.success(),
            "{}",
            String::from_utf8_lossy(&shown.stderr)
        );
        drop(self.serve.take());
        let log = std::fs::read_to_string(&self.log).unwrap();
        assert!(log.len() > 1_000, "the log was captured: {log}");
        let outputs = [
            ("the server's log", log),
            (
                "config show",
                String::from_utf8_lossy(&shown.stdout).into_owned(),
            ),
            ("the server's answers", self.answers.join("\n")),
        ];
        for (what, text) in &outputs {
            for secret in &self.secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{what} shows the secret {secret:?}"
                );
            }
        }
        // At rest: the store (the database and its write-ahead log) holds no secret — API
        // tokens only as hashes, the webhook's calls by its name (the sender looks its URL up
        // in the config).
        let mut stored = Vec::new();
        for suffix in ["", "-wal"] {
            let file = self.dir.path().join(format!("switchyard.db{suffix}"));
            stored.extend(std::fs::read(&file).unwrap_or_default());
        }
        assert!(stored.len() > 4_096, "the store was read");
        assert!(
            self.secrets.contains(&self.webhook_url),
            "the webhook's URL is looked for"
        );
        for secret in &self.secrets {
            assert!(
                !stored.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the store holds the secret {secret:?}"
            );
        }
    }
}

#[derive(Clone, Copy)]
enum Input {
    Mention(&'static str, &'static str),
    Slash(&'static str),
    Button(&'static str, On),
}

/// The message a button is clicked on.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum On {
    /// The person's own "Disk full" alert in #alerts.
    Disk,
    /// The person's own "Noisy" alert in #alerts (its Silence menu: silencing it changes the
    /// message, so not on the alert whose other buttons are clicked).
    Noisy,
    /// The storm summary in #storm, one for everyone: the refused click first, the allowed
    /// one last (it takes its button away).
    Storm,
}

impl On {
    fn channel(self) -> &'static str {
        match self {
            On::Disk | On::Noisy => "C0ALERTS",
            On::Storm => "C0STORM",
        }
    }
}

/// The matrix: (input, permission name, who is refused). Anything not listed as refused for a
/// user must be let through. Every mention word, slash command and button the apps offer is
/// in it (checked against their declarations and the messages they post): a new one fails
/// the test until it is listed. A (person, permission, channel) is refused at most once here,
/// so each refusal is told apart in the audit.
fn matrix() -> Vec<(Input, &'static str, &'static [&'static str])> {
    vec![
        (Input::Mention("control", "ping"), "ping", &["carol"]),
        (Input::Mention("control", "status"), "machines.status", &[]),
        (Input::Mention("general", "status"), "machines.status", &[]),
        // `list` is `status` by another name, and its permission.
        (Input::Mention("general", "list"), "machines.status", &[]),
        (
            Input::Mention("control", "oops laser"),
            "machines.oops",
            &["carol"],
        ),
        (
            Input::Mention("control", "clear laser"),
            "machines.clear",
            &["carol"],
        ),
        (
            Input::Mention("control", "lock laser"),
            "machines.lock",
            &["bob", "carol"],
        ),
        // The gate: not in #control, whatever the role.
        (
            Input::Mention("general", "oops laser"),
            "machines.oops",
            &["alice", "bob", "carol"],
        ),
        (
            Input::Mention("general", "clear laser"),
            "machines.clear",
            &["alice", "bob", "carol"],
        ),
        (Input::Slash("C0CONTROL"), "machines", &["bob", "carol"]),
        (
            Input::Mention("control", "silence sweep=matrix for 1m"),
            "alerts.silence",
            &["bob", "carol"],
        ),
        (
            Input::Mention("control", "silences"),
            "alerts.silences",
            &["bob", "carol"],
        ),
        // Ending a silence is making one's permission (in #general: bob and carol are
        // refused alerts.silence in #control above).
        (
            Input::Mention("general", "unsilence 999999"),
            "alerts.silence",
            &["bob", "carol"],
        ),
        (
            Input::Button("alerts_ack", On::Disk),
            "alerts.ack",
            &["carol"],
        ),
        (
            Input::Button("alerts_resolve", On::Disk),
            "alerts.resolve",
            &["bob", "carol"],
        ),
        (
            Input::Button("alerts_silence", On::Noisy),
            "alerts.silence",
            &["bob", "carol"],
        ),
        // A storm's buttons are the single alert's permissions.
        (
            Input::Button("alerts_ack_all", On::Storm),
            "alerts.ack",
            &["carol"],
        ),
        (
            Input::Button("alerts_resolve_all", On::Storm),
            "alerts.resolve",
            &["bob", "carol"],
        ),
    ]
}

/// The apps as this sweep's config builds them: what they declare.
fn declarations(sweep: &Sweep) -> Vec<switchyard_engine::Declaration> {
    let text = std::fs::read_to_string(&sweep.config).unwrap();
    let env: BTreeMap<String, String> = [
        ("SWEEP_BOT_TOKEN", sweep.sandbox.bot_token()),
        ("SWEEP_APP_TOKEN", sweep.sandbox.app_token()),
        ("SWEEP_SIGNING_SECRET", sweep.sandbox.signing_secret()),
        ("SWEEP_DEVICE_TOKEN", DEVICE_TOKEN),
        ("SWEEP_WEBHOOK_URL", sweep.webhook_url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = switchyard_engine::Config::parse(&text, "sweep", &env).unwrap();
    switchyard_apps::builtin(&config)
        .unwrap()
        .iter()
        .map(|app| app.declaration())
        .collect()
}

/// The sandbox's users' ids by name.
async fn user_ids(sandbox: &Sandbox) -> BTreeMap<String, String> {
    let users: Value = sandbox.control().get("/users").await.unwrap();
    users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_string(),
                u["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every `action_id` in a message's blocks.
fn action_ids(message: &Value, out: &mut BTreeSet<String>) {
    match message {
        Value::Object(map) => {
            if let Some(id) = map.get("action_id").and_then(Value::as_str) {
                out.insert(id.to_string());
            }
            map.values().for_each(|v| action_ids(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| action_ids(v, out)),
        _ => {}
    }
}

/// The matrix lists every mention word and slash command the apps declare, and every button
/// on the messages the test clicks (alerts, a storm's summary).
fn assert_matrix_is_complete(sweep: &Sweep, messages: &[&Value]) {
    let declarations = declarations(sweep);
    let matrix = matrix();
    let declared_words: BTreeSet<&str> = declarations
        .iter()
        .flat_map(|d| d.mentions.iter().map(|m| m.word))
        .collect();
    let listed_words: BTreeSet<&str> = matrix
        .iter()
        .filter_map(|(input, _, _)| match input {
            Input::Mention(_, text) => text.split_whitespace().next(),
            _ => None,
        })
        .collect();
    assert_eq!(
        listed_words, declared_words,
        "the matrix tries every mention command the apps declare"
    );
    let slash_commands = declarations
        .iter()
        .flat_map(|d| d.slash_commands.iter())
        .count();
    let listed_slash = matrix
        .iter()
        .filter(|(input, _, _)| matches!(input, Input::Slash(_)))
        .count();
    assert_eq!(
        listed_slash, slash_commands,
        "the matrix tries every slash command the apps declare"
    );
    let mut offered = BTreeSet::new();
    for message in messages {
        action_ids(&message["blocks"], &mut offered);
    }
    let listed_buttons: BTreeSet<String> = matrix
        .iter()
        .filter_map(|(input, _, _)| match input {
            Input::Button(id, _) => Some(id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        listed_buttons, offered,
        "the matrix clicks every button the alerts' messages offer"
    );
}

/// Posts an alert and returns its message's ts, once it is in `channel`.
async fn post_alert(sweep: &mut Sweep, admin: &str, alert: Value, channel: &str) -> Value {
    let title = alert["title"].as_str().unwrap().to_string();
    let (status, body) = sweep
        .request("POST", "/api/v1/alerts", Some(admin), Some(alert))
        .await;
    assert_eq!(status, 200, "{body}");
    let control = sweep.sandbox.control();
    for _ in 0..400 {
        let posted = control
            .get(&format!("/channels/{channel}/messages"))
            .await
            .unwrap();
        if let Some(message) = posted["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m.to_string().contains(&title))
        {
            return message.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no message for the alert {title} in {channel}");
}

#[tokio::test]
async fn every_role_against_every_command_and_action_then_no_secret_anywhere() {
    let mut sweep = Sweep::start(true).await;
    sweep.serve().await;
    let admin = sweep.token("sweep-admin", &["admin"]).await;

    // Alerts for each person, whose messages have the Acknowledge and Resolve buttons and the
    // Silence menu (an acknowledged alert's message has no Acknowledge button left to click).
    let control = sweep.sandbox.control();
    let mut clicked_on: BTreeMap<(On, &str), String> = BTreeMap::new();
    let mut messages = Vec::new();
    for user in ["alice", "bob", "carol"] {
        for (on, title, key) in [
            (On::Disk, "Disk full", "disk"),
            (On::Noisy, "Noisy", "noisy"),
        ] {
            let message = post_alert(
                &mut sweep,
                &admin,
                json!({"title": format!("{title} {user}"), "severity": "high",
                       "dedup_key": format!("{key}-{user}")}),
                "C0ALERTS",
            )
            .await;
            clicked_on.insert((on, user), message["ts"].as_str().unwrap().to_string());
            messages.push(message);
        }
    }
    // A storm: the first of a batch is posted on its own, the rest folded into a summary.
    let storm: Vec<Value> = (0..4)
        .map(|i| {
            json!({"title": format!("Storm {i}"), "severity": "high",
                        "labels": {"kind": "storm"}, "dedup_key": format!("storm-{i}")})
        })
        .collect();
    let (status, body) = sweep
        .request("POST", "/api/v1/alerts", Some(&admin), Some(json!(storm)))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut summary = None;
    for _ in 0..400 {
        let posted = control.get("/channels/C0STORM/messages").await.unwrap();
        summary = posted["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["blocks"].to_string().contains("alerts_ack_all"))
            .cloned();
        if summary.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let summary = summary.expect("a storm summary with its buttons in #storm");
    for user in ["alice", "bob", "carol"] {
        clicked_on.insert(
            (On::Storm, user),
            summary["ts"].as_str().unwrap().to_string(),
        );
    }
    messages.push(summary);
    assert_matrix_is_complete(&sweep, &messages.iter().collect::<Vec<_>>());

    let tries: Vec<(&str, Input)> = matrix()
        .into_iter()
        .flat_map(|(input, _, _)| {
            let users = match input {
                Input::Button(_, On::Storm) => ["carol", "bob", "alice"],
                _ => ["alice", "bob", "carol"],
            };
            users.map(|user| (user, input))
        })
        .collect();
    let id_of = user_ids(&sweep.sandbox).await;
    for &(user, input) in &tries {
        match input {
            Input::Mention(channel, text) => sweep.say(user, channel, text).await,
            Input::Slash(channel) => {
                control
                    .post(
                        "/commands",
                        &json!({"user": user, "channel": channel, "command": "/oops-clear", "text": "laser"}),
                    )
                    .await
                    .unwrap();
            }
            Input::Button(action_id, on) => {
                let mut click = json!({"user": user, "channel": on.channel(),
                                       "ts": clicked_on[&(on, user)], "action_id": action_id});
                match on {
                    On::Disk => click["value"] = json!(format!("disk-{user}")),
                    On::Noisy => click["value"] = json!(format!("1h:noisy-{user}")),
                    On::Storm => {}
                }
                control.post("/actions", &click).await.unwrap();
            }
        }
    }
    // The barrier: events are handled in order (commands and clicks ahead of them), so once
    // this last refusal is audited, every input before it has been decided.
    sweep.say("carol", "control", "ping").await;

    let expected: BTreeSet<(String, String, String)> = matrix()
        .iter()
        .flat_map(|(input, name, refused)| {
            refused.iter().map(move |user| {
                let channel = match input {
                    Input::Mention(channel, _) => channel_id(channel),
                    Input::Slash(channel) => channel.to_string(),
                    Input::Button(_, on) => on.channel().to_string(),
                };
                (user.to_string(), name.to_string(), channel)
            })
        })
        .collect();
    let carol = id_of["carol"].clone();
    let refused = sweep
        .wait_audit(
            &admin,
            "outcome=refused",
            "every refusal audited",
            |entries| {
                entries.len() > expected.len()
                    && entries
                        .iter()
                        .any(|e| e["actor"] == carol.as_str() && e["action"] == "ping")
                    && entries
                        .iter()
                        .filter(|e| e["actor"] == carol.as_str() && e["action"] == "ping")
                        .count()
                        == 2
            },
        )
        .await;
    let name_of: BTreeMap<&str, &str> = id_of
        .iter()
        .map(|(n, i)| (i.as_str(), n.as_str()))
        .collect();
    let mut got: Vec<(String, String, String)> = refused
        .iter()
        .map(|e| {
            (
                name_of
                    .get(e["actor"].as_str().unwrap_or(""))
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| e["actor"].to_string()),
                e["action"].as_str().unwrap_or("").to_string(),
                e["object"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("channel:")
                    .to_string(),
            )
        })
        .collect();
    // The barrier's own refusal.
    let barrier = got
        .iter()
        .position(|r| r == &("carol".into(), "ping".into(), "C0CONTROL".into()))
        .unwrap();
    got.remove(barrier);
    let got_set: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(
        got.len(),
        got_set.len(),
        "a refusal audited twice: {got:#?}"
    );
    let missing: Vec<_> = expected.difference(&got_set).collect();
    let extra: Vec<_> = got_set.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "refusal matrix mismatch — refused but allowed by the matrix: {extra:#?}; allowed but the matrix refuses: {missing:#?}"
    );

    // Each refusal was told to the person, where it happened (the notices go out through the
    // outbox, after the audit's commit: waited for).
    for (user, name, channel) in &expected {
        let told_there = expected
            .iter()
            .filter(|(u, _, c)| u == user && c == channel)
            .count();
        let ephemerals = control
            .get(&format!(
                "/ephemerals?user={}&channel={channel}&wait_for={told_there}&timeout_ms=10000",
                id_of[user]
            ))
            .await
            .unwrap();
        let told = ephemerals["ephemerals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| {
                let text = e["message"]["text"].as_str().unwrap_or("");
                text.contains(":no_entry:") && text.contains(&format!("`{name}`"))
            });
        assert!(
            told,
            "{user} was not told that {name} was refused in {channel}: {ephemerals}"
        );
    }

    view_submissions(&mut sweep, &admin, &id_of).await;
    internal_errors_are_not_shown(&mut sweep).await;
    api_scopes(&mut sweep, &admin).await;
    injection(&mut sweep, &admin).await;
    sweep.scan_for_secrets().await;
}

/// The view submissions' matrix: (`callback_id`, permission name, who is refused). Every
/// modal the apps declare must be listed (checked against their declarations).
fn view_matrix() -> Vec<(&'static str, &'static str, &'static [&'static str])> {
    vec![("machines_clear", "machines", &["bob", "carol"])]
}

/// Every role against every view submission. A modal can only be submitted once open, and only
/// those allowed can open it; so each person is given `admin` (a runtime binding, through the
/// API) to open it, and loses it again before submitting: the permission is checked at the
/// submission itself, so someone whose role was taken away while the modal was open is
/// refused — audited (actor, permission, through `modal`) and told (a DM: a submission has no
/// channel) — and the others' submissions are handled.
async fn view_submissions(sweep: &mut Sweep, admin: &str, id_of: &BTreeMap<String, String>) {
    let declarations = declarations(sweep);
    let declared: BTreeSet<&str> = declarations
        .iter()
        .flat_map(|d| d.view_prefixes.iter().copied())
        .collect();
    let listed: BTreeSet<&str> = view_matrix().iter().map(|(id, _, _)| *id).collect();
    assert_eq!(
        listed, declared,
        "the view matrix lists every modal the apps declare"
    );

    let control = sweep.sandbox.control();
    let users = ["alice", "bob", "carol"];
    for (callback_id, _, _) in view_matrix() {
        // The picker lists machines to clear: one is oopsed (by its device).
        let (status, body) = sweep
            .request("POST", "/api/machine/oops/laser", Some(DEVICE_TOKEN), None)
            .await;
        assert_eq!(status, 200, "{body}");
        for user in users {
            let (status, body) = sweep
                .request(
                    "POST",
                    "/api/v1/access/bind",
                    Some(admin),
                    Some(json!({"role": "admin", "subject": id_of[user]})),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            control
                .post(
                    "/commands",
                    &json!({"user": user, "channel": "C0CONTROL", "command": "/oops-clear", "text": ""}),
                )
                .await
                .unwrap();
            let mut open = false;
            for _ in 0..400 {
                let views = control.get(&format!("/views?user={user}")).await.unwrap();
                if views["views"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|v| v["callback_id"] == callback_id))
                {
                    open = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            assert!(open, "{user}'s {callback_id} modal opened");
            let (status, body) = sweep
                .request(
                    "POST",
                    "/api/v1/access/unbind",
                    Some(admin),
                    Some(json!({"role": "admin", "subject": id_of[user]})),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
        // The refused first; alice's allowed clear last, the barrier: submissions are
        // handled in order.
        for user in ["bob", "carol", "alice"] {
            let submitted = control
                .post(
                    "/views/submit",
                    &json!({"user": user, "values": {"machine": {"machine": "Laser Cutter"}}}),
                )
                .await
                .unwrap();
            assert!(submitted["error"].is_null(), "{user}: {submitted}");
        }
    }
    let alice = id_of["alice"].clone();
    let entries = sweep
        .wait_audit(
            admin,
            "action=machines",
            "alice's submission handled",
            |entries| {
                entries.iter().any(|e| {
                    e["actor"] == alice.as_str()
                        && e["via"] == "modal"
                        && e["action"] == "machines.clear"
                })
            },
        )
        .await;
    let name_of: BTreeMap<&str, &str> = id_of
        .iter()
        .map(|(n, i)| (i.as_str(), n.as_str()))
        .collect();
    let got: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e["via"] == "modal" && e["outcome"] == "refused")
        .map(|e| {
            assert_eq!(e["object"], "", "a submission has no channel: {e}");
            (
                name_of[e["actor"].as_str().unwrap()].to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected: Vec<(String, String)> = view_matrix()
        .iter()
        .flat_map(|(_, name, refused)| refused.iter().map(|u| (u.to_string(), name.to_string())))
        .collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    expected.sort();
    assert_eq!(
        got_sorted, expected,
        "view submission refusals (each once): {entries:#?}"
    );
    assert!(
        entries.iter().any(|e| e["actor"] == alice.as_str()
            && e["via"] == "modal"
            && e["action"] == "machines.clear"
            && e["outcome"] == "ok"),
        "alice's clear was done: {entries:#?}"
    );
    // Each refused person was told, in a DM.
    for (user, name) in &expected {
        let id = &id_of[user];
        let mut told = false;
        for _ in 0..400 {
            let calls = control
                .get("/api_calls?method=chat.postMessage")
                .await
                .unwrap();
            told = calls["calls"].as_array().unwrap().iter().any(|c| {
                let text = c["args"]["text"].as_str().unwrap_or("");
                c["args"]["channel"] == id.as_str()
                    && text.contains(":no_entry:")
                    && text.contains(&format!("`{name}`"))
            });
            if told {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            told,
            "{user} was told that the {name} submission was refused"
        );
    }
}

/// A handler's internal failure (here `views.open` reset until the trigger expires: the
/// Slack client's transport error) reaches the person as a short message with an error id,
/// never the failure's text; the server's log has the id with the detail.
async fn internal_errors_are_not_shown(sweep: &mut Sweep) {
    let control = sweep.sandbox.control();
    let (status, body) = sweep
        .request("POST", "/api/machine/oops/laser", Some(DEVICE_TOKEN), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let fault = control
        .post(
            "/faults",
            &json!({"target": "web_api", "method": "views.open", "fault": "reset", "times": 1000}),
        )
        .await
        .unwrap();
    control
        .post(
            "/commands",
            &json!({"user": "alice", "channel": "C0CONTROL", "command": "/oops-clear", "text": ""}),
        )
        .await
        .unwrap();
    let users: Value = control.get("/users").await.unwrap();
    let alice = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "alice")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut notice = None;
    for _ in 0..400 {
        let ephemerals = control
            .get(&format!("/ephemerals?user={alice}&channel=C0CONTROL"))
            .await
            .unwrap();
        notice = ephemerals["ephemerals"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["message"]["text"].as_str())
            .find(|t| t.contains("did not work"))
            .map(str::to_string);
        if notice.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    sweep
        .http
        .delete(format!("{}/_sandbox/faults", sweep.sandbox.url()))
        .send()
        .await
        .unwrap();
    let notice = notice.expect("alice was told the picker did not open");
    sweep.answers.push(notice.clone());
    let error_id = notice
        .split("error id ")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_hexdigit)
                .collect::<String>()
        })
        .unwrap_or_default();
    assert_eq!(error_id.len(), 8, "an error id in {notice:?}");
    for detail in [
        "reset",
        "connection",
        "error sending",
        "hyper",
        "os error",
        "transient",
    ] {
        assert!(
            !notice.to_lowercase().contains(detail),
            "the notice shows the failure ({detail}): {notice:?}"
        );
    }
    // The operator finds the detail by the id.
    let mut logged = false;
    for _ in 0..200 {
        let log = std::fs::read_to_string(&sweep.log).unwrap_or_default();
        logged = log
            .lines()
            .any(|l| l.contains(&error_id) && l.contains("ERROR") && l.contains("app error"));
        if logged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(logged, "the log has error id {error_id} with the detail");
    assert_eq!(fault["ok"], true, "{fault}");
}

fn channel_id(name: &str) -> String {
    match name {
        "control" => "C0CONTROL".into(),
        "oops" => "C0OOPS".into(),
        "alerts" => "C0ALERTS".into(),
        "general" => "C0GENERAL".into(),
        other => panic!("no channel {other}"),
    }
}

/// Every API route: no token and an unknown token are 401; a token without the route's scope
/// is 403 and audited (the engine's routes and the apps' sync routes alike: the token's id and
/// name, the route, the scope; never the token); with it, neither.
async fn api_scopes(sweep: &mut Sweep, admin: &str) {
    let routes: Vec<(&str, &str, &str, Option<Value>)> = vec![
        ("GET", "/api/v1/audit", "audit:read", None),
        ("GET", "/api/v1/access", "access:read", None),
        (
            "POST",
            "/api/v1/access/bind",
            "access:write",
            Some(json!({"role": "viewer", "subject": "U0NOBODY"})),
        ),
        (
            "POST",
            "/api/v1/access/unbind",
            "access:write",
            Some(json!({"role": "viewer", "subject": "U0NOBODY"})),
        ),
        (
            "POST",
            "/api/v1/access/groups/add",
            "access:write",
            Some(json!({"group": "g", "member": "U0NOBODY"})),
        ),
        (
            "POST",
            "/api/v1/access/groups/remove",
            "access:write",
            Some(json!({"group": "g", "member": "U0NOBODY"})),
        ),
        (
            "POST",
            "/api/v1/alerts",
            "alerts:write",
            Some(json!({"title": "scoped", "severity": "low"})),
        ),
        (
            "POST",
            "/api/v1/alertmanager",
            "alerts:write",
            Some(json!({"version": "4", "groupKey": "g", "alerts": []})),
        ),
        (
            "POST",
            "/api/v1/grafana",
            "alerts:write",
            Some(json!({"orgId": 1, "status": "firing", "alerts": []})),
        ),
        ("GET", "/api/v1/silences", "alerts:silence", None),
        (
            "POST",
            "/api/v1/silences",
            "alerts:silence",
            Some(json!({"matchers": ["sweep=\"scopes\""], "duration": "1m"})),
        ),
        ("GET", "/api/v1/webhooks", "webhooks:post", None),
        (
            "POST",
            "/api/v1/webhooks/ops",
            "webhooks:post",
            Some(json!({"text": "scoped"})),
        ),
        ("POST", "/api/machine/oops/laser", "machines:write", None),
        ("GET", "/api/machines/catalog", "machines:admin", None),
        (
            "PUT",
            "/api/machines/machines/Drill",
            "machines:admin",
            Some(json!({"authorizations_or": ["drill"]})),
        ),
    ];
    let scopes: BTreeSet<&str> = routes.iter().map(|r| r.2).collect();
    let mut tokens = BTreeMap::new();
    for scope in &scopes {
        let name = format!("only-{}", scope.replace(':', "-"));
        tokens.insert(*scope, sweep.token(&name, &[scope]).await);
    }
    let unknown = format!("sy_{}", "ab".repeat(32));
    let mut refusals = BTreeSet::new();
    // 403s answered: a path with two methods (GET and POST /api/v1/silences) is refused
    // twice for the same token, audited twice under one (route, detail).
    let mut refused_requests = 0;
    for (method, path, needed, body) in &routes {
        let (status, answer) = sweep.request(method, path, None, body.clone()).await;
        assert_eq!(status, 401, "{method} {path} without a token: {answer}");
        let (status, answer) = sweep
            .request(method, path, Some(&unknown), body.clone())
            .await;
        assert_eq!(
            status, 401,
            "{method} {path} with an unknown token: {answer}"
        );
        for (scope, token) in &tokens {
            let (status, answer) = sweep.request(method, path, Some(token), body.clone()).await;
            if scope == needed {
                assert!(
                    status != 401 && status != 403,
                    "{method} {path} with {scope}: {status} {answer}"
                );
            } else {
                assert_eq!(status, 403, "{method} {path} with only {scope}: {answer}");
                refused_requests += 1;
                assert!(
                    answer.to_string().contains(needed),
                    "{method} {path}: the 403 names {needed}: {answer}"
                );
                refusals.insert((
                    format!("route:{path}"),
                    format!(
                        "token only-{} lacks scope {needed}",
                        scope.replace(':', "-")
                    ),
                ));
            }
        }
    }
    let audited = sweep
        .audit(admin, "action=api.authorize&outcome=refused")
        .await;
    let got: BTreeSet<(String, String)> = audited
        .iter()
        .map(|e| {
            assert_eq!(e["actor_kind"], "token", "{e}");
            assert!(e["actor"].as_str().unwrap().parse::<i64>().is_ok(), "{e}");
            (
                e["object"].as_str().unwrap().to_string(),
                e["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let missing: Vec<_> = refusals.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "403s not audited: {missing:#?}\naudited: {got:#?}"
    );
    assert_eq!(
        audited.len(),
        refused_requests,
        "each 403 audited once: {audited:#?}"
    );
}

/// Every mrkdwn text (and notification text) in `message`: none may hold Slack markup from the
/// input — only the escapes — except the date tokens Switchyard writes itself.
fn assert_escaped(what: &str, message: &Value) {
    fn walk<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("mrkdwn")
                    && let Some(text) = map.get("text").and_then(Value::as_str)
                {
                    out.push(text);
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut texts = Vec::new();
    walk(&message["blocks"], &mut texts);
    texts.extend(message["text"].as_str());
    assert!(!texts.is_empty(), "{what}: no text in {message}");
    for text in texts {
        for forbidden in [
            "<!channel>",
            "<!here>",
            "<@U0VICTIM>",
            "<#C0VICTIM>",
            "<https://evil",
        ] {
            assert!(
                !text.contains(forbidden),
                "{what}: {forbidden} got through: {text:?}"
            );
        }
    }
}

const MARKUP: &str = "<!channel> <!here> <@U0VICTIM> <#C0VICTIM> <https://evil.example|click> & x";
const SQLISH: &str = "x'); DROP TABLE alerts_alerts; -- \" OR 1=1";

async fn injection(sweep: &mut Sweep, admin: &str) {
    let control = sweep.sandbox.control();
    // Alert fields: title, source, description, analysis, affected items, labels, the key.
    let before = control.get("/channels/C0ALERTS/messages").await.unwrap()["messages"]
        .as_array()
        .map_or(0, Vec::len);
    let (status, body) = sweep
        .request(
            "POST",
            "/api/v1/alerts",
            Some(admin),
            Some(json!({
                "title": MARKUP, "severity": "critical", "source": MARKUP,
                "description": MARKUP, "analysis": MARKUP, "affected_items": [MARKUP, SQLISH],
                "labels": {"team": MARKUP, "q": SQLISH}, "dedup_key": SQLISH,
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let messages = control
        .get(&format!(
            "/channels/C0ALERTS/messages?wait_for={}",
            before + 1
        ))
        .await
        .unwrap();
    let message = messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"].as_str().is_some_and(|t| t.contains("CRITICAL")))
        .unwrap_or_else(|| panic!("the alert was not posted: {messages}"))
        .clone();
    assert_escaped("the alert message", &message);
    assert!(
        message.to_string().contains("&lt;!channel&gt;"),
        "escaped, not dropped: {message}"
    );
    // The SQL-ish key was stored as text: the same alert again is an update, not a new one.
    let (status, body) = sweep
        .request(
            "POST",
            "/api/v1/alerts",
            Some(admin),
            Some(json!({"title": "again", "severity": "critical", "dedup_key": SQLISH})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["alerts"][0]["result"], "posted", "{body}");

    // A machine named with markup (through the admin API), then shown by `status`.
    let name = format!("Drill {MARKUP}");
    let path = format!(
        "/api/machines/machines/{}",
        name.bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
    );
    let (status, body) = sweep
        .request(
            "PUT",
            &path,
            Some(admin),
            Some(json!({"authorizations_or": ["drill"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    sweep.say("alice", "control", "status").await;
    sweep
        .say("alice", "control", &format!("oops {MARKUP}"))
        .await;
    sweep
        .say("alice", "control", &format!("oops \"{SQLISH}\""))
        .await;
    // Every message the bot wrote in #control and its threads, and every ephemeral there.
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen = bot_texts(&control, "C0CONTROL").await;
        let all = seen.iter().map(Value::to_string).collect::<String>();
        if all.contains("Drill") && all.matches("know a machine").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = seen.iter().map(Value::to_string).collect::<String>();
    assert!(all.contains("Drill"), "status lists the new machine: {all}");
    assert!(
        all.matches("know a machine").count() >= 2,
        "unknown machines answered: {all}"
    );
    for message in &seen {
        assert_escaped("a machines message", message);
    }

    // SQL-ish filters to the audit API are values, not SQL.
    let quoted: String = SQLISH.bytes().map(|b| format!("%{b:02X}")).collect();
    let (status, body) = sweep
        .request(
            "GET",
            &format!("/api/v1/audit?who={quoted}&object={quoted}&action={quoted}"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"], json!([]), "{body}");
}

/// The bot's messages in `channel`, their threads, and the ephemerals there (to alice).
async fn bot_texts(control: &switchyard_sandbox::ControlClient, channel: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let top = control
        .get(&format!("/channels/{channel}/messages"))
        .await
        .unwrap();
    for message in top["messages"].as_array().unwrap() {
        if message["bot_id"].is_string() {
            out.push(message.clone());
        }
        if let Some(ts) = message["ts"].as_str() {
            let thread = control
                .get(&format!("/channels/{channel}/threads/{ts}"))
                .await
                .unwrap();
            for reply in thread["messages"].as_array().unwrap().iter().skip(1) {
                if reply["bot_id"].is_string() {
                    out.push(reply.clone());
                }
            }
        }
    }
    let users: Value = control.get("/users").await.unwrap();
    for user in users["users"].as_array().unwrap() {
        let id = user["id"].as_str().unwrap();
        let ephemerals = control
            .get(&format!("/ephemerals?user={id}&channel={channel}"))
            .await
            .unwrap();
        for e in ephemerals["ephemerals"].as_array().unwrap() {
            out.push(e["message"].clone());
        }
    }
    out
}

/// What, path, timestamp, signature, body, the status wanted, the error wanted.
type SlackCase = (
    &'static str,
    &'static str,
    String,
    String,
    Vec<u8>,
    u16,
    &'static str,
);

/// Slack's v0 signature.
fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn forged_replayed_resigned_oversized_and_malformed_slack_requests_then_no_secret_anywhere() {
    let mut sweep = Sweep::start(false).await;
    sweep.serve().await;
    let secret = sweep.sandbox.signing_secret().to_string();
    let now = (switchyard_engine::now_ms() / 1000).to_string();
    let event = |id: &str| {
        json!({"type": "event_callback", "event_id": id, "team_id": "T0SANDBOX",
               "event": {"type": "app_mention", "user": "U0X", "channel": "C0CONTROL",
                         "text": "<@U0BOT> ping", "ts": "1.000001"}})
        .to_string()
    };
    let (base, http) = (sweep.url().to_string(), sweep.http.clone());
    let post = |path: &str, ts: &str, signature: &str, body: Vec<u8>, form: bool| {
        let url = format!("{base}{path}");
        let request = http
            .post(url)
            .header("x-slack-request-timestamp", ts)
            .header("x-slack-signature", signature)
            .header(
                "content-type",
                if form {
                    "application/x-www-form-urlencoded"
                } else {
                    "application/json"
                },
            )
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let good = event("EvGood");
    let stale = (switchyard_engine::now_ms() / 1000 - 301).to_string();
    let future = (switchyard_engine::now_ms() / 1000 + 400).to_string();
    let cases: Vec<SlackCase> = vec![
        (
            "a good one",
            "/slack/events",
            now.clone(),
            sign(&secret, &now, good.as_bytes()),
            good.clone().into_bytes(),
            200,
            "",
        ),
        (
            "forged",
            "/slack/events",
            now.clone(),
            format!("v0={}", "0".repeat(64)),
            event("EvForged").into_bytes(),
            401,
            "invalid_signature",
        ),
        (
            "signed with another secret",
            "/slack/events",
            now.clone(),
            sign("not-the-secret", &now, event("EvOther").as_bytes()),
            event("EvOther").into_bytes(),
            401,
            "invalid_signature",
        ),
        (
            "replayed after 300 s",
            "/slack/events",
            stale.clone(),
            sign(&secret, &stale, event("EvStale").as_bytes()),
            event("EvStale").into_bytes(),
            401,
            "invalid_signature",
        ),
        (
            "from the future",
            "/slack/events",
            future.clone(),
            sign(&secret, &future, event("EvFuture").as_bytes()),
            event("EvFuture").into_bytes(),
            401,
            "invalid_signature",
        ),
        (
            "signed, then modified",
            "/slack/events",
            now.clone(),
            sign(&secret, &now, good.as_bytes()),
            good.replace("ping", "oops laser").into_bytes(),
            401,
            "invalid_signature",
        ),
        (
            "unsigned",
            "/slack/events",
            now.clone(),
            String::new(),
            good.clone().into_bytes(),
            401,
            "",
        ),
        (
            "a command signed, then modified",
            "/slack/commands",
            now.clone(),
            sign(
                &secret,
                &now,
                b"command=%2Foops-clear&text=a&user_id=U1&trigger_id=t1",
            ),
            b"command=%2Foops-clear&text=b&user_id=U1&trigger_id=t1".to_vec(),
            401,
            "invalid_signature",
        ),
        (
            "a click signed, then modified",
            "/slack/interactions",
            now.clone(),
            sign(&secret, &now, b"payload=%7B%7D"),
            b"payload=%7B%22type%22%3A%22block_actions%22%7D".to_vec(),
            401,
            "invalid_signature",
        ),
        (
            "oversized",
            "/slack/events",
            now.clone(),
            "v0=00".into(),
            vec![b' '; 1024 * 1024 + 1],
            413,
            "body_too_large",
        ),
        (
            "malformed JSON",
            "/slack/events",
            now.clone(),
            sign(&secret, &now, b"{\"type\":"),
            b"{\"type\":".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "malformed form",
            "/slack/commands",
            now.clone(),
            sign(&secret, &now, b"command=%zz"),
            b"command=%zz".to_vec(),
            400,
            "",
        ),
        (
            "a command without its fields",
            "/slack/commands",
            now.clone(),
            sign(&secret, &now, b"text=x"),
            b"text=x".to_vec(),
            400,
            "invalid_command",
        ),
    ];
    for (what, path, ts, signature, body, want, error) in cases {
        let form = path != "/slack/events";
        let (status, text) = post(path, &ts, &signature, body, form).await;
        assert_eq!(status, want, "{what}: {text}");
        if want != 200 {
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{what}: not JSON: {text:?}"));
            assert_eq!(json["ok"], false, "{what}: {json}");
            if !error.is_empty() {
                assert_eq!(json["error"], error, "{what}: {json}");
            }
        }
        sweep.answers.push(text);
    }
    // Unknown paths and methods are JSON too.
    let (status, body) = sweep.request("GET", "/no/such/path", None, None).await;
    assert_eq!((status, &body["error"]), (404, &json!("not_found")));
    let (status, body) = sweep.request("GET", "/slack/events", None, None).await;
    assert_eq!(
        (status, &body["error"]),
        (405, &json!("method_not_allowed"))
    );

    sweep.scan_for_secrets().await;
}

/// The app that claims the alerts' Create incident hook in the hook buttons' test: a click
/// opens an "incident" (a post naming the alert) and audits it.
struct Incidents;

#[async_trait::async_trait]
impl switchyard_engine::App for Incidents {
    fn declaration(&self) -> switchyard_engine::Declaration {
        switchyard_engine::Declaration {
            name: "incidents",
            action_prefixes: vec!["incidents_"],
            ..Default::default()
        }
    }

    async fn handle(
        &self,
        ctx: &mut switchyard_engine::Ctx<'_>,
        input: &switchyard_engine::Input,
    ) -> Result<(), switchyard_engine::AppError> {
        let switchyard_engine::Input::Action {
            value: Some(key),
            channel: Some(channel),
            ..
        } = input
        else {
            return Ok(());
        };
        let alert = switchyard_apps::alerts::hooks::alert_for_click(ctx, key).await?;
        let title = alert.map(|a| a.title).unwrap_or_default();
        ctx.post(
            channel,
            json!({"text": format!("incident opened for {title}")}),
            None,
            None,
        );
        ctx.audit(
            "incidents.from_alert",
            &format!("alert:{key}"),
            Outcome::Ok,
            "",
        );
        Ok(())
    }
}

/// The alerts app with Create incident claimed by [`Incidents`], and the incidents app.
fn alerts_with_incidents(
    config: &switchyard_engine::Config,
) -> Vec<std::sync::Arc<dyn switchyard_engine::App>> {
    use switchyard_apps::alerts::hooks::{Claim, Hook};
    let section = config.app_section_validated("alerts").unwrap();
    let claims = [Claim {
        hook: Hook::CreateIncident,
        action_id: "incidents_from_alert".into(),
        label: None,
    }];
    vec![
        std::sync::Arc::new(
            switchyard_apps::alerts::Alerts::with_hook_claims(section, &claims).unwrap(),
        ),
        std::sync::Arc::new(Incidents),
    ]
}

/// `[apps.alerts.hooks]`' buttons, beside the matrix (no app of the binary claims a hook yet,
/// so this runs in process with one of the test's own): a claimed Create incident goes to the
/// claiming app under its permission (`incidents.from_alert`) — refused, audited and told for
/// a role without it, done for one with it —; a link's Run playbook click, which Slack still
/// sends as `block_actions` (with an `action_id` it makes up), is acked and changes nothing.
#[tokio::test]
async fn alert_hook_buttons_a_claimed_one_is_checked_and_a_link_changes_nothing() {
    let sandbox = common::sandbox(SEED, false).await;
    let id_of = user_ids(&sandbox).await;
    let access = format!(
        "[access]\ndefault_role = \"viewer\"\n[access.roles]\nresponder = [\"incidents.from_alert\"]\nviewer = [\"*.status\"]\n[access.bind]\nresponder = [\"{}\"]\n",
        id_of["alice"]
    );
    let env = common::AlertsEnv::start_in(
        sandbox,
        common::Setup {
            alerts: "[apps.alerts]\nenabled = true\ndefault_channel = \"C0ALERTS\"\n[apps.alerts.hooks.run_playbook]\nurl = \"https://runbooks.example/run?alert={{ key }}\"\n",
            extra: &access,
            apps: Some(alerts_with_incidents),
            ..common::Setup::default()
        },
    )
    .await;
    env.alert(json!({"title": "Disk full", "severity": "high", "dedup_key": "disk"}))
        .await;
    let message = env.messages_when("C0ALERTS", |m| m.len() == 1).await[0].clone();
    let ts = message["ts"].as_str().unwrap().to_string();
    let buttons: Vec<Value> = message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .collect();
    let claimed = buttons
        .iter()
        .find(|e| e["action_id"] == "incidents_from_alert")
        .unwrap_or_else(|| panic!("a Create incident button: {buttons:#?}"));
    assert_eq!(claimed["value"], "disk", "{claimed}");
    let link = buttons
        .iter()
        .find(|e| e["text"]["text"] == "Run playbook")
        .unwrap_or_else(|| panic!("a Run playbook button: {buttons:#?}"));
    assert_eq!(link["url"], "https://runbooks.example/run?alert=disk");
    assert!(link.get("action_id").is_none(), "{link}");

    // bob (a viewer) is refused, audited and told; alice (a responder) opens the incident.
    let click = |user: &str| json!({"user": user, "channel": "C0ALERTS", "ts": ts, "action_id": "incidents_from_alert"});
    env.control("/actions", click("bob")).await;
    let refused = env
        .audited_as("incidents.from_alert", Outcome::Refused)
        .await;
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert_eq!(refused[0].record.actor, id_of["bob"]);
    assert_eq!(refused[0].record.object, "channel:C0ALERTS");
    let told = env
        .get(&format!(
            "/ephemerals?user={}&channel=C0ALERTS&wait_for=1&timeout_ms=10000",
            id_of["bob"]
        ))
        .await;
    assert!(
        told["ephemerals"].as_array().unwrap().iter().any(|e| {
            let text = e["message"]["text"].as_str().unwrap_or("");
            text.contains(":no_entry:") && text.contains("`incidents.from_alert`")
        }),
        "bob was told: {told}"
    );
    env.control("/actions", click("alice")).await;
    let done = env.audited_as("incidents.from_alert", Outcome::Ok).await;
    assert_eq!(done[0].record.actor, id_of["alice"]);
    assert_eq!(done[0].record.object, "alert:disk");
    env.messages_when("C0ALERTS", |m| {
        m.iter()
            .any(|m| m["text"] == "incident opened for Disk full")
    })
    .await;

    // bob clicks the link: Slack opens it and sends the app a block_actions for it. The ack is
    // an empty 200 given after any inbox commit, so nothing stored by then is nothing at all.
    let inbox_before = env.server.store().inbox_counts().await.unwrap();
    let audit_before = env.audit("").await.len();
    let message = env
        .messages_when("C0ALERTS", |m| m.iter().any(|m| m["ts"] == ts.as_str()))
        .await
        .into_iter()
        .find(|m| m["ts"] == ts.as_str())
        .unwrap();
    let payload = json!({
        "type": "block_actions",
        "user": {"id": id_of["bob"], "username": "bob", "team_id": "T0SANDBOX"},
        "api_app_id": env.get("/info").await["app_id"],
        "token": "sandbox-verification-token",
        "trigger_id": "1.2.link-click",
        "team": {"id": "T0SANDBOX", "domain": "sandbox"},
        "container": {"type": "message", "message_ts": ts, "channel_id": "C0ALERTS", "is_ephemeral": false},
        "channel": {"id": "C0ALERTS", "name": "alerts"},
        "message": message,
        "response_url": "http://127.0.0.1:9/actions/link-click",
        // Slack makes up an action_id for an element that has none.
        "actions": [{"type": "button", "action_id": "uJ4x", "block_id": "b1",
                     "text": link["text"], "url": link["url"], "action_ts": "1.3"}],
    });
    let body = format!("payload={}", form_encode(&payload.to_string()));
    let now = (switchyard_engine::now_ms() / 1000).to_string();
    let answer = env
        .http
        .post(format!("http://{}/slack/interactions", env.server.addr()))
        .header("x-slack-request-timestamp", &now)
        .header(
            "x-slack-signature",
            sign(env.sandbox.signing_secret(), &now, body.as_bytes()),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.text().await.unwrap(), "", "an empty ack");
    let inbox_after = env.server.store().inbox_counts().await.unwrap();
    assert_eq!(
        (
            inbox_after.pending,
            inbox_after.done_or_sent,
            inbox_after.failed
        ),
        (
            inbox_before.pending,
            inbox_before.done_or_sent,
            inbox_before.failed
        ),
        "a link click is not taken in"
    );
    assert_eq!(env.audit("").await.len(), audit_before, "nothing audited");
    env.server.shutdown().await;
}

/// `application/x-www-form-urlencoded` escaping of one value.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
