//! Starting and stopping the whole pipeline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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
use crate::pipeline::{BotIdentity, Engine, LiveRegistry, Registry};
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
///
/// Its parts stop in order (see [`Server::shutdown`]): the receivers first, then the
/// dispatcher once it has handled what they committed, then the sender once its calls in
/// flight have ended and their outcomes are recorded.
pub struct Server {
    addr: SocketAddr,
    engine: Arc<Engine>,
    shutdown_timeout: Duration,
    draining: Arc<AtomicBool>,
    /// HTTP listener and Socket Mode connections.
    stop_receiving: CancellationToken,
    receiving: TaskTracker,
    /// The inbox worker, the dispatcher, the audit prune, the outbox depth reader.
    stop_working: CancellationToken,
    working: TaskTracker,
    /// The sender and its outcome writer.
    stop_sending: CancellationToken,
    sending: TaskTracker,
    /// Ends the background thread once its tasks are done.
    _background: Background,
    /// Dropped after the background: another server may take over this one's leases once
    /// this one's work has stopped.
    _sole_server: Option<switchyard_store::SoleServer>,
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

/// What `/readyz` and `/metrics` read.
#[derive(Clone)]
struct Status {
    store: Store,
    socket_mode: bool,
    sockets: receive::socket::OpenConnections,
    outbox_pending: Arc<AtomicI64>,
    draining: Arc<AtomicBool>,
    /// The apps as started, for their own `/metrics` lines.
    apps: Vec<Arc<dyn App>>,
}

impl Server {
    pub async fn start(
        config: Config,
        apps: Vec<Arc<dyn App>>,
        options: StartOptions,
    ) -> Result<Self, EngineError> {
        let store = Store::connect(&config.store.url).await?;
        for app in &apps {
            let name = app.declaration().name;
            let ran = store.apply_app_migrations(name, &app.migrations()).await?;
            if ran > 0 {
                tracing::info!(app = name, migrations = ran, "applied the app's migrations");
            }
        }
        let started_apps = apps.clone();
        let slack = SlackApi::new(&config.slack);
        let bot = identify(&slack).await?;
        tracing::info!(bot_user_id = %bot.user_id, "connected to Slack");
        let lease = Duration::from_millis(config.engine.lease_ms);
        let poll = Duration::from_millis(config.engine.poll_interval_ms);
        let owner = format!("{}-{:08x}", std::process::id(), rand::rng().random::<u32>());
        let sole_server = store.become_sole_server(&owner).await?;
        match &sole_server {
            Some(sole) if sole.released > 0 => tracing::info!(
                released = sole.released,
                "took over the work the last run left leased (it is gone: SQLite serves one server)"
            ),
            Some(_) => {}
            None if store.backend() == switchyard_store::Backend::Sqlite => tracing::info!(
                "another server is using this SQLite database: work it leased waits for its lease to run out"
            ),
            None => {}
        }
        let outbox_ready = Arc::new(Notify::new());
        let (outbox_handoff, handed) = crate::sender::Handoff::new();
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
        let registry = LiveRegistry::new(Registry::new(apps));
        let engine = Arc::new(Engine {
            store: store.clone(),
            slack: slack.clone(),
            registry: registry.clone(),
            bot,
            owner: owner.clone(),
            dispatch,
            inbox: crate::inbox::InboxWriter::spawn(store.clone(), owner.clone(), lease),
            lease,
            outbox_ready: outbox_ready.clone(),
            outbox_handoff,
            hold_dispatch: options.hold_dispatch,
            access: access.clone(),
        });

        let (stop_receiving, stop_working, stop_sending) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let (receiving, working, sending) =
            (TaskTracker::new(), TaskTracker::new(), TaskTracker::new());
        let sockets = if config.slack.socket_mode() {
            receive::socket::spawn(
                engine.clone(),
                config.slack.socket_connections,
                stop_receiving.clone(),
                &receiving,
            )
        } else {
            receive::socket::OpenConnections::default()
        };
        let draining = Arc::new(AtomicBool::new(false));
        let status = Status {
            store: store.clone(),
            socket_mode: config.slack.socket_mode(),
            sockets,
            outbox_pending: Arc::new(AtomicI64::new(0)),
            draining: draining.clone(),
            apps: started_apps.clone(),
        };

        let mut router = Router::new()
            .route(
                "/healthz",
                get(|| async { axum::Json(json!({"ok": true})) }),
            )
            .route("/readyz", get(readyz).with_state(status.clone()))
            .route("/metrics", get(metrics).with_state(status.clone()))
            .merge(receive::routes::routes(engine.clone()))
            .merge(crate::sync_routes::routes(engine.clone(), &started_apps))
            .merge(crate::api::routes(store.clone()))
            .merge(crate::api::access_routes(store.clone(), access));
        if let Some(secret) = &config.slack.signing_secret
            && !config.slack.socket_mode()
        {
            router = router.merge(receive::http::routes(engine.clone(), secret));
        }
        let router = json_fallbacks(router);
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

        let shutdown = stop_receiving.clone();
        receiving.spawn(async move {
            // Graceful: no new connections; requests in progress (an inbox commit and its
            // ack) finish.
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
        working.spawn_on(
            engine.clone().run_inbox_worker(poll, stop_working.clone()),
            &bg,
        );
        working.spawn_on(
            crate::dispatch::run(engine.clone(), waiting, workers, stop_working.clone()),
            &bg,
        );
        working.spawn_on(engine.clone().run_ticks(stop_working.clone()), &bg);
        working.spawn(access_refresh.run(stop_working.clone()));
        working.spawn(prune_hourly(
            store.clone(),
            Retention {
                audit_days: config.audit.retention_days,
                inbox_days: config.inbox.retention_days,
                outbox_days: config.outbox.retention_days,
            },
            stop_working.clone(),
        ));
        working.spawn(checkpoint_wal(store.clone(), stop_working.clone()));
        working.spawn(read_outbox_depth(
            store.clone(),
            status.outbox_pending.clone(),
            stop_working.clone(),
        ));
        let (sender, finished) = Sender::new(
            store.clone(),
            slack,
            registry,
            owner.clone(),
            lease,
            engine.outbox_handoff.slots(),
        );
        sending.spawn_on(
            crate::sender::record_outcomes(store, owner, finished, outbox_ready.clone()),
            &bg,
        );
        let sender = Arc::new(sender);
        sending.spawn_on(sender.clone().run_handed(handed, stop_sending.clone()), &bg);
        sending.spawn_on(sender.run(outbox_ready, poll, stop_sending.clone()), &bg);
        receiving.close();
        working.close();
        sending.close();
        tracing::info!(%addr, socket_mode = config.slack.socket_mode(), "Switchyard is ready");
        Ok(Self {
            addr,
            engine,
            shutdown_timeout: Duration::from_millis(config.server.shutdown_timeout_ms),
            draining,
            stop_receiving,
            receiving,
            stop_working,
            working,
            stop_sending,
            sending,
            _background: background,
            _sole_server: sole_server,
        })
    }

    /// Where the HTTP endpoints listen.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn store(&self) -> &Store {
        &self.engine.store
    }

    /// Swaps in the apps of a reloaded config: inputs routed from now on go to them; those
    /// already being handled finish with the old ones; webhook calls sent from now on go to
    /// the webhooks they declare. The apps' HTTP routes stay as they were at start.
    pub fn reload_apps(&self, apps: Vec<Arc<dyn App>>) {
        self.engine.registry.replace(Registry::new(apps));
    }

    /// Stops, in order, within `[server] shutdown_timeout_ms`:
    /// 1. receivers: the HTTP listener stops accepting (requests in progress finish) and each
    ///    Socket Mode connection acks what it committed, then closes, so Slack sends the rest
    ///    elsewhere;
    /// 2. the dispatcher handles everything that was committed and queued, then stops;
    /// 3. the sender claims nothing more; calls in flight end and their outcomes are
    ///    recorded. What is still pending stays in the outbox for the next process.
    ///
    /// Returns `false` if the time ran out first (what was unfinished is leased and is taken
    /// over once the lease runs out; a call in flight then may be sent twice).
    pub async fn shutdown(self) -> bool {
        self.draining.store(true, Ordering::Relaxed);
        let ordered = async {
            self.stop_receiving.cancel();
            self.receiving.wait().await;
            tracing::info!("stopped receiving; handling what was accepted");
            self.stop_working.cancel();
            self.working.wait().await;
            tracing::info!("handled; finishing the Slack calls in flight");
            self.stop_sending.cancel();
            self.sending.wait().await;
        };
        match tokio::time::timeout(self.shutdown_timeout, ordered).await {
            Ok(()) => {
                tracing::info!("stopped cleanly");
                true
            }
            Err(_) => {
                tracing::warn!(
                    timeout = ?self.shutdown_timeout,
                    "shutdown timed out; unfinished work is taken over once its lease runs out"
                );
                false
            }
        }
    }
}

/// `GET /readyz`: 200 when the store answers and Slack is connected (Socket Mode: a
/// connection is open; HTTP mode: `auth.test` passed at start, or we would not be running);
/// otherwise 503 naming the failed checks.
/// Unknown paths and methods are answered in JSON too, like every other refusal.
pub fn json_fallbacks(router: Router) -> Router {
    router
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                axum::Json(json!({"ok": false, "error": "not_found"})),
            )
        })
        .method_not_allowed_fallback(|| async {
            (
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(json!({"ok": false, "error": "method_not_allowed"})),
            )
        })
}

async fn readyz(State(status): State<Status>) -> Response {
    let store = match tokio::time::timeout(Duration::from_secs(2), status.store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in 2 s".to_string()),
    };
    // What failed goes to the log, under the id the answer gives (a store error may say more
    // than a prober should read).
    let error_id = crate::error_id();
    let store = store.map_err(|detail| {
        tracing::warn!(error_id, error = %detail, "not ready: the store failed");
        format!("the store failed (error id {error_id})")
    });
    let sockets = status.sockets.get();
    let slack = if !status.socket_mode || sockets > 0 {
        Ok(())
    } else {
        Err("no Socket Mode connection is open".to_string())
    };
    let draining = status.draining.load(Ordering::Relaxed);
    let check = |r: &Result<(), String>| match r {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e}),
    };
    let mut failed = Vec::new();
    if store.is_err() {
        failed.push("store");
    }
    if slack.is_err() {
        failed.push("slack");
    }
    if draining {
        failed.push("shutting_down");
    }
    let mut body = json!({
        "ok": failed.is_empty(),
        "failed": failed,
        "checks": {
            "store": check(&store),
            "slack": {
                "transport": if status.socket_mode { "socket_mode" } else { "http" },
                "socket_connections": sockets,
                "ok": slack.is_ok(),
                "error": slack.err(),
            },
        },
    });
    let code = if failed.is_empty() {
        StatusCode::OK
    } else {
        tracing::warn!(error_id, failed = ?failed, "not ready");
        body["error"] = "not_ready".into();
        body["error_id"] = error_id.into();
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// `GET /metrics`: Prometheus' text format.
async fn metrics(State(status): State<Status>) -> Response {
    let gauges = crate::metrics::Gauges {
        outbox_pending: status.outbox_pending.load(Ordering::Relaxed),
        socket_connections: status.sockets.get(),
    };
    let mut text = crate::metrics::render(&gauges);
    if let Some(turns) = status.store.writer_turns() {
        crate::metrics::render_writer_turns(&mut text, &turns);
    }
    for app in &status.apps {
        text.push_str(&app.metrics(&status.store).await);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// How often the outbox depth gauge is refreshed: a count per scrape could be costly on a
/// large outbox, one every few seconds is not.
const OUTBOX_DEPTH_EVERY: Duration = Duration::from_secs(5);

/// How often SQLite's WAL is copied back into the database (see `Store::checkpoint`). Under
/// load the WAL holds about this long's commits. Measured in the bench's ack test: every
/// second, the writer's part took 15 ms a time (1.5 % of the writer); every 250 ms, 6 ms a
/// time but 2.4 % in all, and no faster acks.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// SQLite's WAL, copied back into the database, mostly off the writer's path (see
/// `Store::checkpoint`).
async fn checkpoint_wal(store: Store, stop: CancellationToken) {
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {
                if let Err(e) = store.checkpoint().await {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        }
    }
}

async fn read_outbox_depth(store: Store, pending: Arc<AtomicI64>, stop: CancellationToken) {
    let mut every = tokio::time::interval(OUTBOX_DEPTH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        match store.outbox_pending_count().await {
            Ok(n) => pending.store(n, Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "cannot read the outbox depth"),
        }
    }
}

/// How many days the audit log, the inbox's handled items and the outbox's sent calls are
/// kept (0: for ever).
struct Retention {
    audit_days: u32,
    inbox_days: u32,
    outbox_days: u32,
}

/// Applies `[audit]`, `[inbox]` and `[outbox]` `retention_days` at start and then once an
/// hour, and forgets sync routes' stored replies older than
/// [`crate::sync_routes::REPLAY_WINDOW_MS`]. With several replicas each prunes; the deletes are
/// idempotent.
async fn prune_hourly(store: Store, retention: Retention, stop: CancellationToken) {
    let Retention {
        audit_days: retention_days,
        inbox_days: inbox_retention_days,
        outbox_days: outbox_retention_days,
    } = retention;
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
        match crate::sender::prune_sent(&store, outbox_retention_days, crate::now_ms()).await {
            Ok(0) => {}
            Ok(pruned) => {
                tracing::info!(
                    pruned,
                    outbox_retention_days,
                    "pruned the outbox's sent calls"
                )
            }
            Err(e) => tracing::warn!(error = %e, "cannot prune the outbox"),
        }
        match crate::inbox::prune_done(&store, inbox_retention_days, crate::now_ms()).await {
            Ok(0) => {}
            Ok(pruned) => {
                tracing::info!(
                    pruned,
                    inbox_retention_days,
                    "pruned the inbox's handled items"
                )
            }
            Err(e) => tracing::warn!(error = %e, "cannot prune the inbox"),
        }
        let before = crate::now_ms() - crate::sync_routes::REPLAY_WINDOW_MS;
        match store.sync_replies_prune(before).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned sync routes' stored replies"),
            Err(e) => tracing::warn!(error = %e, "cannot prune sync routes' stored replies"),
        }
    }
}

/// `auth.test`, retried until Slack answers (429s waited out for as long as `Retry-After`
/// says, other failures with backoff up to [`IDENTIFY_BACKOFF_CAP`], each logged): who our bot
/// is. Only Slack refusing the token ends the start. A restart while Slack is slow, limiting
/// or down must not end the process (found by the chaos soak: a restarted replica took every
/// injected fault on its own `auth.test`; it gave up after 30 s, and a soak run of
/// 2026-12-03 saw 14 faults in a row there, so it exited again). SIGTERM still stops it: the
/// server's own handler is installed only once it has started.
async fn identify(slack: &SlackApi) -> Result<BotIdentity, EngineError> {
    let mut attempt = 0u32;
    loop {
        let (wait, error) = match slack.call("auth.test", &json!({})).await {
            Ok(v) => {
                if attempt > 0 {
                    tracing::info!(failed = attempt, "Slack answered auth.test");
                }
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
            Err(e @ crate::slack::CallError::RateLimited { retry_after }) => (retry_after, e),
            Err(e) => (
                (Duration::from_millis(200) * 2u32.pow(attempt.min(6))).min(IDENTIFY_BACKOFF_CAP),
                e,
            ),
        };
        attempt = attempt.saturating_add(1);
        tracing::warn!(attempt, error = %error, wait = ?wait, "cannot reach Slack (auth.test); trying again");
        tokio::time::sleep(wait).await;
    }
}

/// The longest wait between two `auth.test`s at start after a failure other than a 429: one
/// call a second is nothing to Slack, and the start should follow its recovery closely (with
/// 10 s here, a soak's restarted replica, the only caller while it started, took the faults
/// injected meanwhile more slowly than they came and stayed down for minutes).
const IDENTIFY_BACKOFF_CAP: Duration = Duration::from_secs(1);

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
