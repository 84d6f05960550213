//! Starting and stopping the whole pipeline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use rand::Rng;
use serde_json::json;
use switchyard_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::EngineError;
use crate::access::AccessControl;
use crate::app::App;
use crate::config::Config;
use crate::dispatch::DispatchQueue;
use crate::pipeline::{BotIdentity, Engine, Registry};
use crate::receive;
use crate::sender::Sender;
use crate::slack::SlackApi;

/// Switches that change how a server runs; all off in production.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Acknowledge and commit to the inbox, but never handle: a test kills the process then,
    /// and checks that the next process handles what this one acked.
    pub hold_dispatch: bool,
}

/// A running Switchyard.
pub struct Server {
    addr: SocketAddr,
    engine: Arc<Engine>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Server {
    pub async fn start(
        config: Config,
        apps: Vec<Arc<dyn App>>,
        options: StartOptions,
    ) -> Result<Self, EngineError> {
        let store = Store::connect(&config.store.url).await?;
        let slack = SlackApi::new(&config.slack);
        let bot = identify(&slack).await?;
        tracing::info!(bot_user_id = %bot.user_id, "connected to Slack");
        let lease = Duration::from_millis(config.engine.lease_ms);
        let poll = Duration::from_millis(config.engine.poll_interval_ms);
        let owner = format!("{}-{:08x}", std::process::id(), rand::rng().random::<u32>());
        let outbox_ready = Arc::new(Notify::new());
        // SQLite has one writer, so one worker with large batches; PostgreSQL takes several.
        let workers = match store.backend() {
            switchyard_store::Backend::Sqlite => 1,
            switchyard_store::Backend::Postgres => 4,
        };
        let access = Arc::new(AccessControl::new(config.access.as_ref()));
        let mut access_refresh = AccessRefresh::new(store.clone(), slack.clone(), access.clone());
        // Loaded before the first input is handled, so nothing is decided on an empty cache.
        access_refresh.once().await;
        let (dispatch, waiting) = DispatchQueue::new();
        let engine = Arc::new(Engine {
            store: store.clone(),
            slack: slack.clone(),
            registry: Registry::new(apps),
            bot,
            owner: owner.clone(),
            dispatch,
            inbox: crate::inbox::InboxWriter::spawn(store.clone(), owner.clone(), lease),
            lease,
            outbox_ready: outbox_ready.clone(),
            hold_dispatch: options.hold_dispatch,
            access: access.clone(),
        });

        let mut router = Router::new()
            .route(
                "/healthz",
                get(|| async { axum::Json(json!({"ok": true})) }),
            )
            .merge(receive::routes::routes(engine.clone()))
            .merge(crate::api::routes(store.clone()))
            .merge(crate::api::access_routes(store.clone(), access));
        if let Some(secret) = &config.slack.signing_secret
            && !config.slack.socket_mode()
        {
            router = router.merge(receive::http::routes(engine.clone(), secret));
        }
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| EngineError::Bind {
                addr: config.server.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| EngineError::Bind {
            addr: config.server.listen,
            source,
        })?;

        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let shutdown = stop.clone();
        tasks.spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
        tasks.spawn(engine.clone().run_inbox_worker(poll, stop.clone()));
        tasks.spawn(crate::dispatch::run(
            engine.clone(),
            waiting,
            workers,
            stop.clone(),
        ));
        tasks.spawn(access_refresh.run(stop.clone()));
        tasks.spawn(prune_audit_hourly(
            store.clone(),
            config.audit.retention_days,
            stop.clone(),
        ));
        let (sender, finished) = Sender::new(store.clone(), slack, owner.clone(), lease);
        tasks.spawn(crate::sender::record_outcomes(
            store,
            owner,
            finished,
            outbox_ready.clone(),
        ));
        tasks.spawn(Arc::new(sender).run(outbox_ready, poll, stop.clone()));
        if config.slack.socket_mode() {
            receive::socket::spawn(
                engine.clone(),
                config.slack.socket_connections,
                stop.clone(),
            );
        }
        tasks.close();
        tracing::info!(%addr, socket_mode = config.slack.socket_mode(), "Switchyard is ready");
        Ok(Self {
            addr,
            engine,
            stop,
            tasks,
        })
    }

    /// Where the HTTP endpoints listen.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> &Store {
        &self.engine.store
    }

    /// Stops taking work and waits (a few seconds at most) for the workers to finish.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
    }
}

/// Applies `[audit] retention_days` at start and then once an hour. With several replicas each
/// prunes; the deletes are idempotent.
async fn prune_audit_hourly(store: Store, retention_days: u32, stop: CancellationToken) {
    let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
    every_hour.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every_hour.tick() => {}
        }
        match crate::admin::prune_audit(&store, retention_days, crate::now_ms()).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, retention_days, "pruned the audit log"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the audit log"),
        }
    }
}

/// `auth.test`, retried briefly: who our bot is.
async fn identify(slack: &SlackApi) -> Result<BotIdentity, EngineError> {
    let mut last = None;
    for attempt in 0..5u32 {
        match slack.call("auth.test", &json!({})).await {
            Ok(v) => {
                return Ok(BotIdentity {
                    user_id: v["user_id"].as_str().unwrap_or("").to_string(),
                    bot_id: v["bot_id"].as_str().unwrap_or("").to_string(),
                });
            }
            Err(crate::slack::CallError::Permanent(e)) => {
                return Err(EngineError::Startup(format!(
                    "Slack refused the bot token: {e}"
                )));
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt)).await;
    }
    Err(EngineError::Startup(format!(
        "cannot reach Slack: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// The store's groups and bindings are read again this often, so changes made elsewhere (the
/// `switchyard access` command, another replica) take effect within it; changes through this
/// process's API take effect at once.
const ACCESS_REFRESH: Duration = Duration::from_secs(5);
/// How long a Slack user group's members are trusted before they are asked for again.
const USERGROUP_TTL: Duration = Duration::from_secs(300);
/// How soon a user group whose members could not be had is asked for again.
const USERGROUP_RETRY: Duration = Duration::from_secs(30);

/// Keeps [`AccessControl`]'s runtime part current, off the ack and dispatch paths: the store's
/// rows every [`ACCESS_REFRESH`], the Slack user groups referred to every [`USERGROUP_TTL`]
/// (`usergroups.users.list`: a read, made directly rather than through the outbox).
struct AccessRefresh {
    store: Store,
    slack: SlackApi,
    control: Arc<AccessControl>,
    /// When each user group was last asked for, and whether that worked.
    asked: std::collections::HashMap<String, (std::time::Instant, bool)>,
}

impl AccessRefresh {
    fn new(store: Store, slack: SlackApi, control: Arc<AccessControl>) -> Self {
        Self {
            store,
            slack,
            control,
            asked: Default::default(),
        }
    }

    async fn run(mut self, stop: CancellationToken) {
        if self.control.policy().is_none() {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(ACCESS_REFRESH) => {}
                _ = self.control.changed.notified() => {}
                _ = stop.cancelled() => return,
            }
            self.once().await;
        }
    }

    /// Reads the store's rows and asks Slack for the user groups that are due. A failure
    /// keeps what was known.
    async fn once(&mut self) {
        let Some(policy) = self.control.policy() else {
            return;
        };
        if let Err(e) = crate::admin::reload_access(&self.store, &self.control).await {
            tracing::warn!(error = %e, "cannot read access groups and bindings; keeping the last ones");
        }
        let wanted = policy.usergroups(&self.control.dynamic());
        for id in wanted {
            let due = self.asked.get(&id).is_none_or(|(at, ok)| {
                at.elapsed() >= if *ok { USERGROUP_TTL } else { USERGROUP_RETRY }
            });
            if !due {
                continue;
            }
            let answer = self
                .slack
                .get("usergroups.users.list", &[("usergroup", &id)])
                .await;
            let ok = match answer {
                Ok(v) => {
                    let users = v["users"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|u| u.as_str().map(str::to_string))
                        .collect();
                    let _reloading = self.control.reloading.lock().await;
                    let mut dynamic = (*self.control.dynamic()).clone();
                    dynamic.usergroups.insert(id.clone(), users);
                    self.control.set_dynamic(dynamic);
                    true
                }
                Err(e) => {
                    tracing::warn!(usergroup = %id, error = %e, "cannot resolve a Slack user group; keeping its last members");
                    false
                }
            };
            self.asked.insert(id, (std::time::Instant::now(), ok));
        }
    }
}
