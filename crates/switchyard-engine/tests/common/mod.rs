//! What the engine's suites share: a `Server` running the suite's own apps on SQLite against a
//! sandbox, and the ways they read the sandbox back.

// Each suite uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchyard_engine::{App, Config, Server, StartOptions};
use switchyard_sandbox::{Manifest, RateLimitSettings, Sandbox, SandboxConfig};

/// A sandbox of the default workspace without rate limits; it knows the app as `manifest`
/// says (Socket Mode, for [`Harness::start_in`] with `socket_mode`) when given.
pub async fn sandbox(manifest: Option<Value>) -> Sandbox {
    Sandbox::start(SandboxConfig {
        manifest: manifest.map(|m| Manifest::from_value(m).expect("a manifest the sandbox takes")),
        rate_limits: RateLimitSettings {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The config of a server against `sandbox` with `bot_token`, its store in `dir`, `extra`
/// after `[engine]`; over Socket Mode or over HTTP with the signing secret.
pub fn config(
    sandbox: &Sandbox,
    bot_token: &str,
    socket_mode: bool,
    extra: &str,
    dir: &tempfile::TempDir,
) -> Config {
    let transport = if socket_mode {
        format!("app_token = \"{}\"", sandbox.app_token())
    } else {
        format!("signing_secret = \"{}\"", sandbox.signing_secret())
    };
    let text = format!(
        "[slack]\nbot_token = \"{bot_token}\"\n{transport}\napi_url = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{}\"\n[engine]\npoll_interval_ms = 100\n{extra}",
        sandbox.api_url(),
        dir.path().join("e.db").display()
    );
    Config::parse(&text, "test.toml", &BTreeMap::<String, String>::new()).unwrap()
}

/// A server running the suite's apps, killed with its directory on drop.
pub struct Harness {
    pub sandbox: Sandbox,
    pub server: Server,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// `apps` alone, over HTTP, against a sandbox of the default workspace.
    pub async fn start(apps: Vec<Arc<dyn App>>) -> Self {
        Self::start_in(sandbox(None).await, apps, false, "").await
    }

    /// `apps` alone in `sandbox`, with `extra` config after `[engine]`; over Socket Mode (once
    /// connected) or over HTTP with the signing secret.
    pub async fn start_in(
        sandbox: Sandbox,
        apps: Vec<Arc<dyn App>>,
        socket_mode: bool,
        extra: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&sandbox, sandbox.bot_token(), socket_mode, extra, &dir);
        let server = Server::start(config, apps, StartOptions::default())
            .await
            .unwrap();
        let harness = Self {
            sandbox,
            server,
            http: reqwest::Client::new(),
            dir,
        };
        if socket_mode {
            harness.connected().await;
        }
        harness
    }

    async fn connected(&self) {
        for _ in 0..100 {
            if self.get("/socket").await["connections"]
                .as_array()
                .is_some_and(|c| !c.is_empty())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no Socket Mode connection");
    }

    /// A GET of the sandbox's control API (`/_sandbox{path}`).
    pub async fn get(&self, path: &str) -> Value {
        self.sandbox.control().get(path).await.expect("control API")
    }

    /// A POST to the sandbox's control API: acting as a person.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.sandbox
            .control()
            .post(path, &body)
            .await
            .expect("control API")
    }

    /// The texts of `channel`'s top-level messages, long-polled until there are `n` (or 10 s).
    pub async fn texts(&self, channel: &str, n: usize) -> Vec<String> {
        let messages = self
            .get(&format!(
                "/channels/{channel}/messages?wait_for={n}&timeout_ms=10000"
            ))
            .await;
        messages["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_string))
            .collect()
    }
}
