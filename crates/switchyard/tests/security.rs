//! The security sweep, against the real `switchyard serve` and the sandbox:
//! - the refusal matrix: every role against every command and action, channel gates, each
//!   refusal told and audited, nothing else refused;
//! - API tokens missing, unknown, or without the scope, on every API route;
//! - injection through alert fields, machine names and mention arguments: Slack markup
//!   (`<!channel>`, `<@U…>`, `<#C…>`, links) escaped wherever user text lands; SQL-ish input
//!   stored and read back as text;
//! - forged, replayed (outside 300 s), re-signed-modified, oversized and malformed Slack
//!   requests;
//! - after each run, the server's whole log output (at `debug`), every answer and `config show`
//!   scanned for every configured secret.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sandbox::Sandbox;
use switchyard_store::Store;

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
"#;

struct Sweep {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    config: PathBuf,
    log: PathBuf,
    serve: Option<common::Serve>,
    http: reqwest::Client,
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
        std::fs::write(&config, text).unwrap();
        let secrets = vec![
            sandbox.bot_token().to_string(),
            sandbox.app_token().to_string(),
            sandbox.signing_secret().to_string(),
            DEVICE_TOKEN.to_string(),
        ];
        let log = dir.path().join("serve.log");
        Self {
            sandbox,
            dir,
            config,
            log,
            serve: None,
            http: reqwest::Client::new(),
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

    /// Stops the server and scans all it said (log, answers, `config show`) for every secret.
    async fn scan_for_secrets(mut self) {
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
    }
}

#[derive(Clone, Copy)]
enum Input {
    Mention(&'static str, &'static str),
    Slash(&'static str),
    Button(&'static str),
}

/// The matrix: (input, permission name, who is refused). Anything not listed as refused for a
/// user must be let through.
fn matrix() -> Vec<(Input, &'static str, &'static [&'static str])> {
    vec![
        (Input::Mention("control", "ping"), "ping", &["carol"]),
        (Input::Mention("control", "status"), "machines.status", &[]),
        (Input::Mention("general", "status"), "machines.status", &[]),
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
        (Input::Button("alerts_ack"), "alerts.ack", &["carol"]),
        (
            Input::Button("alerts_resolve"),
            "alerts.resolve",
            &["bob", "carol"],
        ),
    ]
}

#[tokio::test]
async fn every_role_against_every_command_and_action_then_no_secret_anywhere() {
    let mut sweep = Sweep::start(true).await;
    sweep.serve().await;
    let admin = sweep.token("sweep-admin", &["admin"]).await;

    // An alert for each person, whose message has the Acknowledge and Resolve buttons (an
    // acknowledged alert's message has no Acknowledge button left to click).
    let control = sweep.sandbox.control();
    let mut alert_ts = BTreeMap::new();
    for (i, user) in ["alice", "bob", "carol"].into_iter().enumerate() {
        let (status, body) = sweep
            .request(
                "POST",
                "/api/v1/alerts",
                Some(&admin),
                Some(json!({"title": format!("Disk full {user}"), "severity": "high", "dedup_key": format!("disk-{user}")})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let posted = control
            .get(&format!("/channels/C0ALERTS/messages?wait_for={}", i + 1))
            .await
            .unwrap();
        let ts = posted["messages"][i]["ts"]
            .as_str()
            .unwrap_or_else(|| panic!("no alert message: {posted}"))
            .to_string();
        alert_ts.insert(user, ts);
    }

    let tries: Vec<(&str, Input)> = matrix()
        .into_iter()
        .flat_map(|(input, _, _)| ["alice", "bob", "carol"].map(|user| (user, input)))
        .collect();
    let users: Value = control.get("/users").await.unwrap();
    let id_of: BTreeMap<String, String> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_string(),
                u["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
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
            Input::Button(action_id) => {
                control
                    .post(
                        "/actions",
                        &json!({"user": user, "channel": "C0ALERTS", "ts": alert_ts[user],
                                "action_id": action_id, "value": format!("disk-{user}")}),
                    )
                    .await
                    .unwrap();
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
                    Input::Button(_) => "C0ALERTS".to_string(),
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

    api_scopes(&mut sweep).await;
    injection(&mut sweep, &admin).await;
    sweep.scan_for_secrets().await;
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
/// is 403; with it, neither.
async fn api_scopes(sweep: &mut Sweep) {
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
                assert!(
                    answer.to_string().contains(needed),
                    "{method} {path}: the 403 names {needed}: {answer}"
                );
            }
        }
    }
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
