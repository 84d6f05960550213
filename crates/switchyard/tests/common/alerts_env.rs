//! The alerts suites' environment: a sandbox from the suite's seed, a `Server` in this process
//! with the suite's config, the manifest put into the sandbox, and an API token; plus the ways
//! the suites talk to it and read the sandbox back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchyard_engine::{App, Config, Server, StartOptions};
use switchyard_sandbox::{Manifest, Sandbox};
use switchyard_store::{AuditEntry, AuditFilter, Outcome};

/// What an [`AlertsEnv`] starts with. `..Setup::default()` fills in the rest: no alerts
/// section, SQLite, no rate limits, a `monitoring` token with `alerts:write`.
pub struct Setup<'a> {
    /// The sandbox's workspace (TOML).
    pub seed: &'a str,
    /// The `[apps.alerts]` section and its subsections.
    pub alerts: &'a str,
    /// Config after it: `[access]`, other apps.
    pub extra: &'a str,
    /// The store (a PostgreSQL schema of the test's own); SQLite in the env's directory without.
    pub store_url: Option<String>,
    /// Slack's rate limits in the sandbox.
    pub rate_limits: bool,
    /// The API token's name and scopes.
    pub token: (&'a str, &'a [&'a str]),
    /// The apps, when not `switchyard_apps::builtin`'s (an app of the test's own beside them);
    /// restarts and reloads build the builtin ones.
    pub apps: Option<BuildApps>,
}

/// Builds a config's apps.
pub type BuildApps = fn(&Config) -> Vec<Arc<dyn App>>;

impl Default for Setup<'_> {
    fn default() -> Self {
        Self {
            seed: "",
            alerts: "",
            extra: "",
            store_url: None,
            rate_limits: false,
            token: ("monitoring", &["alerts:write"]),
            apps: None,
        }
    }
}

pub struct AlertsEnv {
    pub sandbox: Sandbox,
    pub server: Server,
    /// What started the server, to start it again (`restart`).
    pub config: Config,
    /// The config file's text, for reloads.
    pub text: String,
    pub http: reqwest::Client,
    /// The API token `Setup::token` named.
    pub token: String,
    pub dir: tempfile::TempDir,
}

impl AlertsEnv {
    pub async fn start(setup: Setup<'_>) -> Self {
        let sandbox = super::sandbox(setup.seed, setup.rate_limits).await;
        Self::start_in(sandbox, setup).await
    }

    /// As [`AlertsEnv::start`], in a sandbox the caller started (`setup.seed` and
    /// `setup.rate_limits` are not read): for config that names something in it, such as an
    /// incoming webhook's URL.
    pub async fn start_in(sandbox: Sandbox, setup: Setup<'_>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store_url = setup
            .store_url
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("a.db").display()));
        let text = format!(
            "[slack]\nbot_token = \"{}\"\nsigning_secret = \"{}\"\napi_url = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"{store_url}\"\n[engine]\npoll_interval_ms = 100\n{}\n{}",
            sandbox.bot_token(),
            sandbox.signing_secret(),
            sandbox.api_url(),
            setup.alerts,
            setup.extra,
        );
        let config = parse(&text);
        let apps = match setup.apps {
            Some(apps) => apps(&config),
            None => switchyard_apps::builtin(&config).unwrap(),
        };
        let server = Server::start(config.clone(), apps.clone(), StartOptions::default())
            .await
            .unwrap();
        let declarations: Vec<_> = apps.iter().map(|a| a.declaration()).collect();
        let base = format!("http://{}", server.addr());
        let manifest =
            switchyard_engine::manifest::manifest(&config, &declarations, Some(base.as_str()));
        Manifest::from_value(manifest.clone()).expect("a manifest the sandbox takes");
        let put = sandbox
            .control()
            .put("/app/manifest", &manifest)
            .await
            .expect("the sandbox takes the manifest");
        assert_eq!(put["ok"], true, "{put}");
        let (name, scopes) = setup.token;
        let token = super::create_token(server.store(), name, scopes).await;
        Self {
            sandbox,
            server,
            config,
            text,
            http: reqwest::Client::new(),
            token,
            dir,
        }
    }

    /// Stops the server, then starts another on the same store and sandbox (its API on a new
    /// port).
    pub async fn restart(self) -> Self {
        assert!(
            self.server.shutdown().await,
            "the first server stopped in time"
        );
        let apps = switchyard_apps::builtin(&self.config).unwrap();
        let server = Server::start(self.config.clone(), apps, StartOptions::default())
            .await
            .unwrap();
        Self { server, ..self }
    }

    /// Reloads the apps from the config's text with `from` replaced by `to`.
    pub fn reload_with(&self, from: &str, to: &str) {
        assert!(self.text.contains(from), "{from} in the config");
        let config = parse(&self.text.replace(from, to));
        self.server
            .reload_apps(switchyard_apps::builtin(&config).unwrap());
    }

    /// A token of its own, as `switchyard token create` makes it.
    pub async fn make_token(&self, name: &str, scopes: &[&str]) -> String {
        super::create_token(self.server.store(), name, scopes).await
    }

    /// A request to the server with `token` (none: no `Authorization`): its status and JSON.
    pub async fn request(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.server.addr()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let reply = request.send().await.unwrap();
        (reply.status().as_u16(), reply.json().await.unwrap())
    }

    /// POSTs `body` with the env's token.
    pub async fn send(&self, path: &str, body: Value) -> (u16, Value) {
        self.send_as(Some(&self.token), path, &body).await
    }

    pub async fn send_as(&self, token: Option<&str>, path: &str, body: &Value) -> (u16, Value) {
        self.request(token, reqwest::Method::POST, path, Some(body))
            .await
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.request(Some(token), method, path, body.as_ref()).await
    }

    /// Sends one alert (our JSON) that must be taken; what the reply says of it.
    pub async fn alert(&self, body: Value) -> Value {
        let (status, reply) = self.send("/api/v1/alerts", body).await;
        assert_eq!(status, 200, "{reply}");
        reply["alerts"][0].clone()
    }

    /// A GET of the sandbox's control API (`/_sandbox{path}`).
    pub async fn get(&self, path: &str) -> Value {
        self.sandbox.control().get(path).await.expect("control API")
    }

    /// A POST to the sandbox's control API: acting as a person.
    pub async fn control(&self, path: &str, body: Value) -> Value {
        self.sandbox
            .control()
            .post(path, &body)
            .await
            .expect("control API")
    }

    /// `@bot <text>` as `user` in `channel`; the message's ts.
    pub async fn mention(&self, user: &str, channel: &str, text: &str) -> String {
        super::mention(&self.sandbox, user, channel, text).await
    }

    /// The bot's top-level messages in `channel` once `check` holds for them.
    pub async fn messages_when(
        &self,
        channel: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let mut messages = Vec::new();
        for _ in 0..400 {
            let v = self.get(&format!("/channels/{channel}/messages")).await;
            messages = v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["bot_id"].is_string())
                .cloned()
                .collect();
            if check(&messages) {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("messages in {channel} never as expected: {messages:#?}");
    }

    /// All of `channel`'s top-level messages (an incoming webhook's too; long-polled until
    /// there are at least `n`), once `check` holds.
    pub async fn all_messages_when(
        &self,
        channel: &str,
        n: usize,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let mut messages = Vec::new();
        for _ in 0..400 {
            let v = self
                .get(&format!(
                    "/channels/{channel}/messages?wait_for={n}&timeout_ms=5000"
                ))
                .await;
            messages = v["messages"].as_array().unwrap().clone();
            if check(&messages) {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("messages in {channel} never as expected: {messages:#?}");
    }

    /// The thread of `ts`, its parent first, once it has at least `n` replies.
    pub async fn thread(&self, channel: &str, ts: &str, n: usize) -> Vec<Value> {
        super::thread(&self.sandbox, channel, ts, n).await
    }

    /// The texts of the thread's replies once there are at least `n`.
    pub async fn replies(&self, channel: &str, ts: &str, n: usize) -> Vec<String> {
        self.thread(channel, ts, n).await[1..]
            .iter()
            .map(|m| m["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The audit records whose action starts with `prefix`, newest first.
    pub async fn audit(&self, prefix: &str) -> Vec<AuditEntry> {
        self.server
            .store()
            .audit_query(&AuditFilter {
                action_prefix: Some(prefix.into()),
                ..AuditFilter::default()
            })
            .await
            .unwrap()
    }

    /// The audit records whose action starts with `prefix` (newest first), once one of them
    /// has `outcome`.
    pub async fn audited_as(&self, prefix: &str, outcome: Outcome) -> Vec<AuditEntry> {
        for _ in 0..400 {
            let entries = self.audit(prefix).await;
            if entries.iter().any(|e| e.record.outcome == outcome) {
                return entries;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {prefix} audited as {outcome:?}");
    }
}

/// An alerts suite's workspace: team `T0SANDBOX`, the people named (alice and bob have their
/// real names), and channels `(id, name)` that all of them and the app are in.
pub fn seed(users: &[&str], channels: &[(&str, &str)]) -> String {
    let mut seed =
        String::from("[team]\nid = \"T0SANDBOX\"\nname = \"Sandbox\"\ndomain = \"sandbox\"\n");
    for user in users {
        let real_name = match *user {
            "alice" => "Alice Admin",
            "bob" => "Bob Builder",
            other => other,
        };
        seed += &format!("\n[[users]]\nname = \"{user}\"\nreal_name = \"{real_name}\"\n");
    }
    let members: Vec<String> = users.iter().map(|u| format!("\"{u}\"")).collect();
    for (id, name) in channels {
        seed += &format!(
            "\n[[channels]]\nid = \"{id}\"\nname = \"{name}\"\nmembers = [{}]\napp_member = true\n",
            members.join(", ")
        );
    }
    seed
}

fn parse(text: &str) -> Config {
    Config::parse(text, "alerts.toml", &BTreeMap::<String, String>::new()).unwrap()
}
