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
    /// Dropped last: ends the background thread once its tasks are done.
    _background: Background,
}

/// The background thread: handlers, the sender and the workers run on a runtime of their own, on
/// one thread of lower scheduling priority. When the machine is busy, the CPU goes first to
/// what Slack is waiting on — acks, due in 3 s — and the backlog, safe in the inbox and the
/// outbox, is worked off as soon as there is room.
struct Background {
    handle: tokio::runtime::Handle,
    done: CancellationToken,
}

impl Background {
    fn start() -> std::io::Result<Self> {
        let done = CancellationToken::new();
        let until = done.clone();
        let (give, take) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("switchyard-bg".into())
            .spawn(move || {
                lower_this_threads_priority();
                match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("switchyard-bg")
                    .on_thread_start(lower_this_threads_priority)
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => {
                        let _ = give.send(Ok(runtime.handle().clone()));
                        runtime.block_on(until.cancelled());
                    }
                    Err(e) => {
                        let _ = give.send(Err(e));
                    }
                }
            })?;
        let handle = take
            .recv()
            .map_err(|_| std::io::Error::other("the background thread ended at start"))??;
        Ok(Self { handle, done })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.done.cancel();
    }
}

/// Nice 10 for the calling thread (Linux gives each thread its own nice value).
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority has no memory effects; on Linux, who = 0 means the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
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
        });

        let mut router = Router::new()
            .route(
                "/healthz",
                get(|| async { axum::Json(json!({"ok": true})) }),
            )
            .merge(receive::routes::routes(engine.clone()))
            .merge(crate::api::routes(store.clone()));
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
        let background = Background::start().map_err(|e| {
            EngineError::Startup(format!("cannot start the background thread: {e}"))
        })?;
        let bg = background.handle.clone();
        tasks.spawn_on(engine.clone().run_inbox_worker(poll, stop.clone()), &bg);
        tasks.spawn_on(
            crate::dispatch::run(engine.clone(), waiting, workers, stop.clone()),
            &bg,
        );
        tasks.spawn(prune_audit_hourly(
            store.clone(),
            config.audit.retention_days,
            stop.clone(),
        ));
        let (sender, finished) = Sender::new(store.clone(), slack, owner.clone(), lease);
        tasks.spawn_on(
            crate::sender::record_outcomes(store, owner, finished, outbox_ready.clone()),
            &bg,
        );
        tasks.spawn_on(Arc::new(sender).run(outbox_ready, poll, stop.clone()), &bg);
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
            _background: background,
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
