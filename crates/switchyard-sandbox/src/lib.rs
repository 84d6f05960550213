//! A local Slack workspace server for building and testing Slack apps without Slack.
//!
//! It speaks Slack's protocols on loopback — the Web API, Socket Mode, signed Events API
//! deliveries, `response_url`s and incoming webhooks — enforces Slack's rate limits and Block Kit
//! limits, lets tests act as the people in the workspace through a control API (`/_sandbox/…`),
//! and injects faults. See `docs/sandbox.md` for the whole surface.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchyard_sandbox::SandboxError> {
//! let sandbox = switchyard_sandbox::Sandbox::start(Default::default()).await?;
//! println!("Web API at {}, bot token {}", sandbox.api_url(), sandbox.bot_token());
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```

pub mod blocks;
mod client;
mod control;
mod delivery;
mod events;
pub mod faults;
mod hooks;
mod ids;
mod listener;
pub mod manifest;
mod ratelimit;
pub mod seed;
pub mod signing;
mod web_api;
mod webui;
mod workspace;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use client::{ControlClient, ControlError};
pub use delivery::DeliverySettings;
pub use faults::{FaultKind, FaultRule, Target};
pub use manifest::{Manifest, ManifestError};
pub use ratelimit::{MethodLimit, RateLimitSettings};
pub use seed::{Seed, SeedError};
pub use workspace::SeedReferenceError;

use delivery::Delivery;
use faults::Faults;
use listener::{ConnHandle, ResettableListener};
use ratelimit::RateLimiter;
use workspace::Workspace;

/// Locks a mutex; a panic elsewhere must not take the whole sandbox down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything a running sandbox holds, shared by its handlers and delivery tasks.
pub(crate) struct Inner {
    ws: Mutex<Workspace>,
    /// Bumped on every change, so long-polling reads (and the web client's event stream) can
    /// wait for one.
    changed: watch::Sender<u64>,
    /// Set when the sandbox shuts down: the event streams end.
    closed: AtomicBool,
    limiter: Mutex<RateLimiter>,
    faults: Mutex<Faults>,
    delivery: Delivery,
    base_url: String,
}

impl Inner {
    pub(crate) fn ws(&self) -> MutexGuard<'_, Workspace> {
        lock(&self.ws)
    }
    pub(crate) fn limiter(&self) -> MutexGuard<'_, RateLimiter> {
        lock(&self.limiter)
    }
    pub(crate) fn faults(&self) -> MutexGuard<'_, Faults> {
        lock(&self.faults)
    }
    pub(crate) fn touch(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// How to start a sandbox. `Default` gives the built-in workspace and app on an ephemeral port.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// Loopback port; 0 picks a free one.
    pub port: u16,
    pub seed: Seed,
    /// The app under test; else the seed's `app.manifest` file; else the built-in manifest.
    pub manifest: Option<Manifest>,
    pub rate_limits: RateLimitSettings,
    pub delivery: DeliverySettings,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error(transparent)]
    Seed(#[from] SeedError),
    #[error(transparent)]
    SeedReference(#[from] SeedReferenceError),
    #[error("cannot read the manifest {path}: {source}")]
    ManifestRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the manifest {path}: {source}")]
    Manifest {
        path: PathBuf,
        source: ManifestError,
    },
}

/// A running sandbox. Dropping it stops it.
pub struct Sandbox {
    inner: Arc<Inner>,
    server: JoinHandle<()>,
    bot_token: String,
    app_token: String,
    signing_secret: String,
    team_id: String,
    app_id: String,
    bot_user_id: String,
}

impl Sandbox {
    pub async fn start(config: SandboxConfig) -> Result<Self, SandboxError> {
        let manifest = match (config.manifest, &config.seed.app.manifest) {
            (Some(m), _) => m,
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                let text = std::fs::read_to_string(&path).map_err(|source| {
                    SandboxError::ManifestRead {
                        path: path.clone(),
                        source,
                    }
                })?;
                Manifest::parse(&text).map_err(|source| SandboxError::Manifest { path, source })?
            }
            (None, None) => Manifest::default_manifest(),
        };
        let workspace = Workspace::from_seed(&config.seed, manifest)?;
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, config.port)))
                .await
                .map_err(|source| SandboxError::Bind {
                    port: config.port,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            port: config.port,
            source,
        })?;
        let base_url = format!("http://{addr}");
        let inner = Arc::new(Inner {
            changed: watch::channel(0).0,
            closed: AtomicBool::new(false),
            limiter: Mutex::new(RateLimiter::new(config.rate_limits)),
            faults: Mutex::default(),
            delivery: Delivery::new(config.delivery),
            base_url,
            ws: Mutex::new(workspace),
        });
        let app = router(inner.clone());
        let server = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<ConnHandle>();
            if let Err(e) = axum::serve(ResettableListener(listener), service).await {
                tracing::error!(error = %e, "the sandbox server stopped");
            }
        });
        let ws = inner.ws();
        let sandbox = Self {
            bot_token: ws.app.bot_token.clone(),
            app_token: ws.app.app_token.clone(),
            signing_secret: ws.app.signing_secret.clone(),
            team_id: ws.team.id.clone(),
            app_id: ws.app.id.clone(),
            bot_user_id: ws.app.bot_user_id.clone(),
            inner: inner.clone(),
            server,
        };
        drop(ws);
        Ok(sandbox)
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.inner.base_url
    }
    /// A client of this sandbox's control API (`/_sandbox/…`).
    pub fn control(&self) -> ControlClient {
        ControlClient::new(self.url())
    }

    /// `http://127.0.0.1:PORT/api/`, what Slack clients take as their API base URL.
    pub fn api_url(&self) -> String {
        format!("{}/api/", self.inner.base_url)
    }
    pub fn bot_token(&self) -> &str {
        &self.bot_token
    }
    pub fn app_token(&self) -> &str {
        &self.app_token
    }
    pub fn signing_secret(&self) -> &str {
        &self.signing_secret
    }
    pub fn team_id(&self) -> &str {
        &self.team_id
    }
    pub fn app_id(&self) -> &str {
        &self.app_id
    }
    pub fn bot_user_id(&self) -> &str {
        &self.bot_user_id
    }
    /// A person's user token (`xoxp-…`), by user name or id.
    pub fn user_token(&self, user: &str) -> Option<String> {
        let ws = self.inner.ws();
        let id = ws.user(user)?.id.clone();
        ws.user_tokens
            .iter()
            .find(|(_, u)| **u == id)
            .map(|(token, _)| token.clone())
    }
    /// Incoming webhook URLs, with their channel ids.
    pub fn webhook_urls(&self) -> Vec<(String, String)> {
        let ws = self.inner.ws();
        ws.webhooks
            .iter()
            .map(|w| {
                (
                    w.channel.clone(),
                    format!(
                        "{}/services/{}/{}/{}",
                        self.inner.base_url, ws.team.id, w.id, w.secret
                    ),
                )
            })
            .collect()
    }
    /// Web API methods the sandbox implements.
    pub fn methods() -> Vec<&'static str> {
        web_api::method_names().collect()
    }

    /// Ends the web client's event streams and closes every Socket Mode connection.
    fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.touch();
        self.inner.delivery.hub.drop_all();
    }

    /// The web client's address (the page at `/`).
    pub fn web_url(&self) -> String {
        format!("{}/", self.inner.base_url)
    }

    /// Stops serving and closes every Socket Mode connection.
    pub async fn shutdown(mut self) {
        self.close();
        self.server.abort();
        let _ = (&mut self.server).await;
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.close();
        self.server.abort();
    }
}

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/api/{method}", any(web_api::handle))
        .route("/link", get(delivery::socket::link))
        .route("/link/", get(delivery::socket::link))
        .route(
            "/upload/v1/{file_id}",
            post(web_api::upload).layer(DefaultBodyLimit::max(64 * 1024 * 1024)),
        )
        .route("/services/{team}/{hook}/{secret}", post(hooks::webhook))
        .route("/commands/{team}/{n}/{secret}", post(hooks::response_url))
        .route("/actions/{team}/{n}/{secret}", post(hooks::response_url))
        .nest("/_sandbox", control::router())
        .merge(webui::router())
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"ok": false, "error": "not_found"})),
            )
        })
        .with_state(inner)
}
