//! The in-process server the HTTP targets talk to: the engine's real routers over a temporary
//! SQLite store, built once per process.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use switchyard_engine::access::AccessControl;
use switchyard_engine::admin::{Actor, create_token};
use switchyard_engine::config::Secret;
use switchyard_engine::dispatch::DispatchQueue;
use switchyard_engine::pipeline::{BotIdentity, Engine, LiveRegistry, Registry};
use switchyard_engine::slack::SlackApi;
use switchyard_engine::{CheckOptions, Config, Store};
use switchyard_store::NewApiToken;
use tower::ServiceExt;

pub const SIGNING_SECRET: &str = "fuzz-signing-secret-0123456789abcdef";
pub const BOT_TOKEN: &str = "xoxb-fuzz-bot-token-secret";
pub const DEVICE_TOKEN: &str = "fuzz-device-token-secret";
pub const BOT_USER: &str = "U000000001";
/// An incoming webhook's URL is a secret too (whoever has it can post).
pub const WEBHOOK_URL: &str = "http://127.0.0.1:9/services/T0FUZZ/B0FUZZ/fuzz-webhook-secret";

/// The config the HTTP targets' server runs: every app enabled, the device API behind a token.
pub fn config_text(store_url: &str) -> String {
    format!(
        r#"
[slack]
bot_token = "{BOT_TOKEN}"
signing_secret = "{SIGNING_SECRET}"
api_url = "http://127.0.0.1:9/api/"

[store]
url = "{store_url}"

[apps.ping]
enabled = true

[apps.machines]
enabled = true
control_channel = "C0CONTROL"
oops_channel = "C0OOPS"
device_token = "{DEVICE_TOKEN}"

[[apps.machines.machines]]
name = "Laser Cutter"
alias = "laser"
authorizations_or = ["laser"]

[[apps.machines.machines]]
name = "Band Saw"
authorizations_or = ["wood"]
unauthorized_warn_only = true

[[apps.machines.users]]
name = "Alice Admin"
email = "alice@example.com"
fob_codes = ["0001"]
authorizations = ["laser", "wood"]
expires = "2099-01-01"

[apps.alerts]
enabled = true
default_channel = "C0ALERTS"

[[apps.alerts.rules]]
name = "db critical"
condition = "severity == 'critical' AND labels.team == 'db'"
channels = ["C0DB"]
mentions = ["@here"]
continue = true

[apps.webhooks]
enabled = true
[apps.webhooks.incoming.ops]
webhook_url = "{WEBHOOK_URL}"
"#
    )
}

pub struct Harness {
    pub runtime: tokio::runtime::Runtime,
    pub engine: Arc<Engine>,
    pub router: Router,
    /// An API token with every scope the routes ask for.
    pub api_token: String,
    _dir: tempfile::TempDir,
}

/// The harness, started on first use.
pub fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| Harness::start().expect("the fuzz harness starts"))
}

impl Harness {
    fn start() -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
        let sections = switchyard_apps::config_sections();
        let options = CheckOptions {
            apps: Some(&sections),
            without_credentials: false,
        };
        let config = Config::check(
            &config_text(&url),
            "fuzz.toml",
            &BTreeMap::<String, String>::new(),
            &options,
        )
        .map_err(|e| format!("{e:?}"))?;
        let apps = switchyard_apps::builtin(&config).map_err(|e| e.to_string())?;
        let (engine, api_token) = runtime.block_on(async {
            let store = Store::connect(&url).await.map_err(|e| e.to_string())?;
            for app in &apps {
                store
                    .apply_app_migrations(app.declaration().name, &app.migrations())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let token = create_token(
                &store,
                &NewApiToken {
                    name: "fuzz".into(),
                    scopes: vec!["admin".into()],
                    expires_at_ms: None,
                },
                &Actor::cli(),
                switchyard_engine::now_ms(),
            )
            .await
            .map_err(|e| e.to_string())?;
            let lease = Duration::from_secs(30);
            let (dispatch, _waiting) = DispatchQueue::new();
            let engine = Arc::new(Engine {
                store: store.clone(),
                slack: SlackApi::new(&config.slack),
                registry: LiveRegistry::new(Registry::new(apps.clone())),
                bot: BotIdentity {
                    user_id: BOT_USER.into(),
                    bot_id: "B000000001".into(),
                },
                owner: "fuzz".into(),
                dispatch,
                inbox: switchyard_engine::inbox::InboxWriter::spawn(
                    store.clone(),
                    "fuzz".into(),
                    lease,
                ),
                lease,
                outbox_ready: Default::default(),
                // No sender here: nothing is claimed at the commit.
                outbox_handoff: Default::default(),
                // Committed and acked, never handled: the targets are about receiving.
                hold_dispatch: true,
                access: Arc::new(AccessControl::new(config.access.as_ref())),
            });
            Ok::<_, String>((engine, token.plaintext))
        })?;
        let router = switchyard_engine::server::json_fallbacks(
            Router::new()
                .merge(switchyard_engine::receive::routes::routes(engine.clone()))
                .merge(switchyard_engine::sync_routes::routes(
                    engine.clone(),
                    &apps,
                ))
                .merge(switchyard_engine::api::routes(engine.store.clone()))
                .merge(switchyard_engine::api::access_routes(
                    engine.store.clone(),
                    engine.access.clone(),
                ))
                .merge(switchyard_engine::receive::http::routes(
                    engine.clone(),
                    &Secret::new(SIGNING_SECRET),
                )),
        );
        Ok(Self {
            runtime,
            engine,
            router,
            api_token,
            _dir: dir,
        })
    }

    /// Sends `request` through the router; the status and the body.
    pub fn send(&self, request: Request<Body>) -> (u16, Vec<u8>) {
        self.runtime.block_on(async {
            let response = self
                .router
                .clone()
                .oneshot(request)
                .await
                .expect("the router is infallible");
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().to_vec())
                .unwrap_or_default();
            (status, body)
        })
    }

    /// The secrets no answer may contain.
    pub fn secrets(&self) -> [&str; 5] {
        [
            SIGNING_SECRET,
            BOT_TOKEN,
            DEVICE_TOKEN,
            WEBHOOK_URL,
            &self.api_token,
        ]
    }
}

/// Slack's v0 signature of `body` at `timestamp`.
pub fn sign(timestamp: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()).expect("any key length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn now_s() -> i64 {
    switchyard_engine::now_ms() / 1000
}
