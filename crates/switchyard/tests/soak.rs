//! The chaos soak (docs/reliability.md, "Chaos soak"): the real `switchyard serve` against the
//! sandbox with Slack's limits on, random faults switched on (429s with `Retry-After`, 5xx, slow
//! replies, resets, Socket Mode drops and `disconnect`s, duplicate and dropped deliveries) and
//! the process SIGKILLed and restarted at random moments, under mixed traffic: alerts through
//! the API, their Acknowledge buttons, mention commands (`ping`, `status`, `oops`, `clear`),
//! `/oops-clear` with a name and through its picker, and device check-ins. Then the invariants:
//! every alert in Slack once, every command answered once, every click applied once, every
//! change audited, the outbox empty, per-channel order kept, no channel pushed past Slack's
//! limit. It prints the counts and fails on any loss and on anything handled or sent twice
//! (an alert posted twice, a command answered twice, a click or check-in applied twice, a post
//! made again); what a person may be told twice — an ephemeral notice after they ran a command
//! again — is printed, not a failure (docs/reliability.md, "Duplicates").
//!
//! Short by default (15 s of traffic each, the three runs one after another: CI); `SOAK_SECONDS=600` (or `scripts/soak --minutes 10`) for a long run;
//! `SOAK_SEED` to pick the random seed. On PostgreSQL (`SWITCHYARD_TEST_POSTGRES_URL`), two
//! replicas share one schema behind the sandbox and one of them is killed again and again.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use switchyard_engine::Config;
use switchyard_sandbox::{
    ControlClient, DeliverySettings, Manifest, RateLimitSettings, Sandbox, SandboxConfig, Seed,
};
use switchyard_store::Store;
use switchyard_store::sqlx::Row;

const CONTROL: &str = "C0CONTROL";
const OOPS: &str = "C0OOPS";
const ALERT_CHANNELS: [&str; 3] = ["C0CRIT", "C0HIGH", "C0ALERTS"];
const PING_CHANNELS: [&str; 3] = ["C0PING1", "C0PING2", "C0PING3"];
const DEVICE_TOKEN: &str = "soak-device-token";
/// Machines that people oops and clear, one flow (and one person) each.
const FLOW_MACHINES: [&str; 4] = ["Laser", "Lathe", "Mill", "Router"];
/// Machines whose devices check in.
const DEVICE_MACHINES: [&str; 2] = ["Drill", "Saw"];
/// The longest a step waits for its effect in Slack before it counts as lost.
const EFFECT_WAIT: Duration = Duration::from_secs(90);

fn seed_toml() -> String {
    let mut text =
        String::from("[team]\nid = \"T0SANDBOX\"\nname = \"Sandbox\"\ndomain = \"sandbox\"\n");
    for i in 0..FLOW_MACHINES.len() + 1 {
        text.push_str(&format!(
            "\n[[users]]\nname = \"user{i}\"\nreal_name = \"User {i}\"\n"
        ));
    }
    let channels = [CONTROL, OOPS]
        .into_iter()
        .chain(ALERT_CHANNELS)
        .chain(PING_CHANNELS);
    for id in channels {
        text.push_str(&format!(
            "\n[[channels]]\nid = \"{id}\"\nname = \"{}\"\nmembers = [\"*\"]\napp_member = true\n",
            id.to_ascii_lowercase()
        ));
    }
    text
}

fn apps_toml() -> String {
    let mut text = format!(
        "[apps.machines]\nenabled = true\ncontrol_channel = \"{CONTROL}\"\noops_channel = \"{OOPS}\"\n\
         device_token = \"{DEVICE_TOKEN}\"\noutside_control_channel = \"refuse\"\n"
    );
    for name in FLOW_MACHINES.iter().chain(&DEVICE_MACHINES) {
        text.push_str(&format!(
            "\n[[apps.machines.machines]]\nname = \"{name}\"\nauthorizations_or = [\"shop\"]\n"
        ));
    }
    for (i, _) in DEVICE_MACHINES.iter().enumerate() {
        text.push_str(&format!(
            "\n[[apps.machines.users]]\nname = \"Member {i}\"\nfob_codes = [\"{}\"]\nauthorizations = [\"shop\"]\n",
            1000 + i
        ));
    }
    text.push_str(&format!(
        "\n[apps.alerts]\nenabled = true\ndefault_channel = \"{}\"\n\n[apps.alerts.severity_channels]\ncritical = \"{}\"\nhigh = \"{}\"\n",
        ALERT_CHANNELS[2], ALERT_CHANNELS[0], ALERT_CHANNELS[1]
    ));
    text
}

/// What a run is: how many replicas on which store, over which transport.
#[derive(Clone)]
struct Plan {
    name: &'static str,
    socket_mode: bool,
    replicas: usize,
    /// PostgreSQL URL (a schema of the run's own); none: SQLite in a temp dir.
    postgres: Option<String>,
}

fn soak_duration() -> Duration {
    let secs = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(15);
    Duration::from_secs(secs)
}

fn soak_seed() -> u64 {
    std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random())
}

/// The counts the run prints.
#[derive(Default)]
struct Counts {
    alerts: AtomicU64,
    alert_retries: AtomicU64,
    acks: AtomicU64,
    ack_retries: AtomicU64,
    pings: AtomicU64,
    statuses: AtomicU64,
    oopses: AtomicU64,
    clears_slash: AtomicU64,
    clears_picker: AtomicU64,
    clears_mention: AtomicU64,
    command_retries: AtomicU64,
    checkins: AtomicU64,
    checkin_retries: AtomicU64,
    kills: AtomicU64,
    socket_disconnects: AtomicU64,
    socket_drops: AtomicU64,
    lost: Mutex<Vec<String>>,
}

impl Counts {
    fn lost(&self, what: String) {
        eprintln!("LOST: {what}");
        self.lost.lock().unwrap().push(what);
    }
}

fn inc(n: &AtomicU64) {
    n.fetch_add(1, Ordering::Relaxed);
}

fn get(n: &AtomicU64) -> u64 {
    n.load(Ordering::Relaxed)
}

/// One `switchyard serve` of the run: its config file, its process when running, its URL.
struct Replica {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    url: Option<String>,
}

struct World {
    plan: Plan,
    sandbox: Sandbox,
    ctl: ControlClient,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    store_url: String,
    replicas: Mutex<Vec<Replica>>,
    counts: Counts,
    /// The alerts API token.
    token: Mutex<String>,
    stop: AtomicBool,
    /// Alerts whose Acknowledge click Switchyard took.
    clicked: Mutex<std::collections::HashSet<String>>,
}

impl World {
    async fn new(plan: Plan) -> Arc<Self> {
        let sandbox = Sandbox::start(SandboxConfig {
            seed: Seed::parse_toml(&seed_toml(), "soak_seed.toml").unwrap(),
            // Slack's limits, on.
            rate_limits: RateLimitSettings::default(),
            delivery: DeliverySettings {
                // Slack's three retries, sooner (Slack waits about 1 and 5 minutes). Long
                // enough together (21 s) to span a few kills in a row on a loaded machine,
                // when a restart can take seconds: shorter ones (0.5/2/5 s) gave up on 3–8
                // events a long run, events no replica had ever acked.
                retry_delays: vec![
                    Duration::from_secs(1),
                    Duration::from_secs(5),
                    Duration::from_secs(15),
                ],
                ack_timeout: Duration::from_secs(3),
            },
            ..Default::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store_url = plan
            .postgres
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("soak.db").display()));
        let transport = if plan.socket_mode {
            format!("app_token = \"{}\"\n", sandbox.app_token())
        } else {
            String::new()
        };
        // The lease: short, so a killed process's claims come back soon, but over twice the
        // slowest injected reply (2.5 s), since a call is bounded by half the lease.
        let text = format!(
            "[slack]\nbot_token = \"{}\"\n{transport}signing_secret = \"{}\"\napi_url = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"{store_url}\"\n\n[engine]\nlease_ms = 6000\npoll_interval_ms = 100\n\n{}",
            sandbox.bot_token(),
            sandbox.signing_secret(),
            sandbox.api_url(),
            apps_toml(),
        );
        // The app's manifest, as `switchyard manifest` makes it.
        let config = Config::parse(&text, "soak.toml", &BTreeMap::<String, String>::new())
            .expect("the soak's config");
        let apps = switchyard_apps::builtin(&config).unwrap();
        let declarations: Vec<_> = apps.iter().map(|a| a.declaration()).collect();
        let manifest = switchyard_engine::manifest::manifest(
            &config,
            &declarations,
            (!plan.socket_mode).then_some("http://127.0.0.1:1"),
        );
        Manifest::from_value(manifest.clone()).expect("a manifest the sandbox takes");
        let ctl = sandbox.control();
        ctl.request(reqwest::Method::PUT, "/app/manifest", Some(&manifest))
            .await
            .unwrap();
        let replicas = (0..plan.replicas)
            .map(|i| {
                let config = dir.path().join(format!("replica{i}.toml"));
                common::write_private(&config, &text).unwrap();
                Replica {
                    config,
                    log: dir.path().join(format!("replica{i}.log")),
                    child: None,
                    url: None,
                }
            })
            .collect();
        let world = Arc::new(Self {
            plan,
            ctl,
            sandbox,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            dir,
            store_url,
            replicas: Mutex::new(replicas),
            counts: Counts::default(),
            token: Mutex::new(String::new()),
            stop: AtomicBool::new(false),
            clicked: Mutex::default(),
        });
        for i in 0..world.plan.replicas {
            world.start(i).await;
        }
        let store = world.store().await;
        let token = switchyard_engine::admin::create_token(
            &store,
            &switchyard_store::NewApiToken {
                name: "soak".into(),
                scopes: vec!["alerts:write".into()],
                expires_at_ms: None,
            },
            &switchyard_engine::admin::Actor::cli(),
            switchyard_engine::now_ms(),
        )
        .await
        .unwrap()
        .plaintext;
        *world.token.lock().unwrap() = token;
        world
    }

    async fn store(&self) -> Store {
        Store::connect(&self.store_url)
            .await
            .expect("the soak's store")
    }

    /// Starts replica `i` and, over HTTP, points the sandbox's deliveries at the live ones.
    async fn start(&self, i: usize) {
        let (config, log) = {
            let replicas = self.replicas.lock().unwrap();
            (replicas[i].config.clone(), replicas[i].log.clone())
        };
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let sockets_before = self.socket_connections().await;
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            // The sender's info lines say which lost posts it found in Slack (counted below).
            .env("RUST_LOG", "warn,switchyard_engine::sender=info")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("switchyard runs");
        let url = match common::try_listening_url(&mut child).await {
            Ok(url) => url,
            Err(e) => {
                // The evidence now: the panic ends the run before its checks keep any.
                keep_for_a_post_mortem(self, &format!("replica-{i}-did-not-start")).await;
                panic!(
                    "replica {i} did not start: {e}\n-- the end of its log --\n{}",
                    log_tail(&log, 40)
                );
            }
        };
        {
            let mut replicas = self.replicas.lock().unwrap();
            replicas[i].child = Some(child);
            replicas[i].url = Some(url);
        }
        self.route_deliveries().await;
        self.wait_for_new_socket(&sockets_before).await;
    }

    /// The sandbox's open Socket Mode connections (none over HTTP).
    async fn socket_connections(&self) -> Vec<Value> {
        if !self.plan.socket_mode {
            return Vec::new();
        }
        self.read("/socket").await["connections"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Over Socket Mode a replica takes work only once its connection is open, which on a
    /// loaded machine can come seconds after it listens: the killer's next kill is timed from
    /// there, or a replica killed before it ever connected would make an outage of many
    /// short runs, longer than the sandbox's (shortened) retries of an event.
    async fn wait_for_new_socket(&self, before: &[Value]) {
        if !self.plan.socket_mode {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self
                .socket_connections()
                .await
                .iter()
                .any(|c| !before.contains(c))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn route_deliveries(&self) {
        if self.plan.socket_mode {
            return;
        }
        let origins: Vec<String> = self
            .replicas
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| r.url.clone())
            .collect();
        self.ctl
            .put("/delivery/origins", &json!({ "origins": origins }))
            .await
            .unwrap();
    }

    /// SIGKILL (std's `Child::kill`).
    fn kill(&self, i: usize) {
        let mut replicas = self.replicas.lock().unwrap();
        if let Some(mut child) = replicas[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
            inc(&self.counts.kills);
        }
        // Its URL stays among the origins until it is back: a refused connection is passed on.
    }

    fn kill_all(&self) {
        let mut replicas = self.replicas.lock().unwrap();
        for r in replicas.iter_mut() {
            if let Some(mut child) = r.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// A running replica's URL, at random.
    fn live_url(&self, rng: &mut StdRng) -> Option<String> {
        let replicas = self.replicas.lock().unwrap();
        let live: Vec<&String> = replicas
            .iter()
            .filter(|r| r.child.is_some())
            .filter_map(|r| r.url.as_ref())
            .collect();
        if live.is_empty() {
            None
        } else {
            Some(live[rng.random_range(0..live.len())].clone())
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.ctl.post(path, &body).await.expect("control API")
    }

    async fn read(&self, path: &str) -> Value {
        self.ctl.get(path).await.expect("control API")
    }

    /// The bot's top-level messages in a channel.
    async fn channel_messages(&self, channel: &str) -> Vec<Value> {
        self.read(&format!("/channels/{channel}/messages")).await["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m["bot_id"].is_string())
            .collect()
    }

    /// A thread's replies (not its parent).
    async fn thread(&self, channel: &str, ts: &str) -> Vec<Value> {
        let v = self
            .read(&format!("/channels/{channel}/threads/{ts}"))
            .await;
        v["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .skip(1)
            .collect()
    }

    /// Waits (long-polling the sandbox) until `check` holds; false after `EFFECT_WAIT`.
    async fn wait_until<F, Fut>(&self, check: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + EFFECT_WAIT;
        while Instant::now() < deadline {
            if check().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// How many bot messages in `channel` contain `needle`.
    async fn count_in(&self, channel: &str, needle: &str) -> usize {
        self.channel_messages(channel)
            .await
            .iter()
            .filter(|m| m["text"].as_str().is_some_and(|t| t.contains(needle)))
            .count()
    }

    /// A command as a person types it; retried as a person would when Slack says it failed
    /// (`operation_timeout`, `dispatch_failed`: the app was down). The trigger id of the try
    /// that was acked.
    async fn command(&self, user: &str, channel: &str, text: &str) -> Option<String> {
        for attempt in 0..30 {
            if attempt > 0 {
                inc(&self.counts.command_retries);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let v = self
                .post(
                    "/commands",
                    json!({"user": user, "channel": channel, "command": "/oops-clear", "text": text}),
                )
                .await;
            if v["error"].is_null() && v["ok"] == true {
                return v["trigger_id"].as_str().map(str::to_string);
            }
        }
        None
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Alerts through the API, each retried with the same `Idempotency-Key` until a replica
/// answers; a third of them acknowledged with the message's button once posted.
async fn alerts_flow(world: Arc<World>, mut rng: StdRng, sent: Arc<Mutex<Vec<SentAlert>>>) {
    let mut n = 0;
    while !world.stopping() {
        n += 1;
        let (severity, channel) = match rng.random_range(0..3) {
            0 => ("critical", ALERT_CHANNELS[0]),
            1 => ("high", ALERT_CHANNELS[1]),
            _ => ("low", ALERT_CHANNELS[2]),
        };
        let title = format!("Soak alert {n:05}");
        let body = json!({"title": title, "severity": severity, "source": "soak",
                          "dedup_key": format!("soak-{n}"), "description": "chaos soak"});
        let idempotency_key = format!("soak-alert-{n}");
        let mut answered = false;
        for attempt in 0..100 {
            if attempt > 0 {
                inc(&world.counts.alert_retries);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let Some(url) = world.live_url(&mut rng) else {
                continue;
            };
            let token = world.token.lock().unwrap().clone();
            let reply = world
                .http
                .post(format!("{url}/api/v1/alerts"))
                .bearer_auth(token)
                .header("idempotency-key", &idempotency_key)
                .body(body.to_string())
                .send()
                .await;
            match reply {
                Ok(r) if r.status().is_success() => {
                    answered = true;
                    break;
                }
                Ok(r) if r.status().is_client_error() => {
                    panic!("alert refused: {} {:?}", r.status(), r.text().await)
                }
                _ => {}
            }
        }
        if !answered {
            world.counts.lost(format!("alert {title}: never accepted"));
            continue;
        }
        inc(&world.counts.alerts);
        let ack = rng.random_range(0..3) == 0;
        sent.lock().unwrap().push(SentAlert {
            title: title.clone(),
            channel,
            acked: ack,
        });
        if ack {
            let world = world.clone();
            tokio::spawn(async move { acknowledge(world, channel, title).await });
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..600))).await;
    }
}

struct SentAlert {
    title: String,
    channel: &'static str,
    acked: bool,
}

fn mentions(message: &Value, needle: &str) -> bool {
    message.to_string().contains(needle)
}

/// Clicks an alert's Acknowledge once its message is in Slack; clicked again (as a person
/// would) while Slack says the click failed.
async fn acknowledge(world: Arc<World>, channel: &str, title: String) {
    let mut ts = None;
    let found = world
        .wait_until(|| async {
            world
                .channel_messages(channel)
                .await
                .iter()
                .any(|m| mentions(m, &title))
        })
        .await;
    if found {
        ts = world
            .channel_messages(channel)
            .await
            .iter()
            .find(|m| mentions(m, &title))
            .and_then(|m| m["ts"].as_str().map(str::to_string));
    }
    let Some(ts) = ts else {
        return; // The alert check reports it.
    };
    for attempt in 0..30 {
        if attempt > 0 {
            inc(&world.counts.ack_retries);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let v = world
            .post(
                "/actions",
                json!({"user": "user0", "channel": channel, "ts": ts, "action_id": "alerts_ack"}),
            )
            .await;
        // No Acknowledge button any more after a failed click: that click was applied (its
        // ack was lost). None from the start: the message offers none (not counted).
        if (v["ok"] == true && v["error"].is_null())
            || (attempt > 0 && v["error"] == "element_not_found")
        {
            inc(&world.counts.acks);
            world.clicked.lock().unwrap().insert(title.clone());
            return;
        }
        if v["error"] == "element_not_found" {
            return;
        }
    }
    world
        .counts
        .lost(format!("Acknowledge of {title}: never acked by Switchyard"));
}

/// `@switchyard ping` (and now and then `status`) in the ping channels; the replies are
/// checked at the end.
async fn mentions_flow(world: Arc<World>, mut rng: StdRng, asked: Arc<Mutex<Vec<Asked>>>) {
    let bot = world.sandbox.bot_user_id().to_string();
    while !world.stopping() {
        let channel = PING_CHANNELS[rng.random_range(0..PING_CHANNELS.len())];
        let word = if rng.random_range(0..8) == 0 {
            "status"
        } else {
            "ping"
        };
        let v = world
            .post(
                "/messages",
                json!({"user": "user0", "channel": channel, "text": format!("<@{bot}> {word}")}),
            )
            .await;
        let ts = v["ts"].as_str().unwrap().to_string();
        inc(if word == "ping" {
            &world.counts.pings
        } else {
            &world.counts.statuses
        });
        asked.lock().unwrap().push(Asked { channel, ts, word });
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..900))).await;
    }
}

struct Asked {
    channel: &'static str,
    ts: String,
    word: &'static str,
}

/// One machine, one person: oops it by mention, then clear it — by `/oops-clear <name>`,
/// through the picker, or by mention, in turn — each step waiting for its notice.
async fn machine_flow(world: Arc<World>, index: usize, done: Arc<Mutex<HashMap<String, usize>>>) {
    let machine = FLOW_MACHINES[index];
    let user = format!("user{}", index + 1);
    let user_id = world.read("/users").await["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == user.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bot = world.sandbox.bot_user_id().to_string();
    let out = format!("*{machine}* is out of service");
    let back = format!("*{machine}* is back in service");
    let mut cycles = 0;
    while !world.stopping() {
        // oops, by mention.
        world
            .post(
                "/messages",
                json!({"user": user, "channel": CONTROL, "text": format!("<@{bot}> oops {machine}")}),
            )
            .await;
        inc(&world.counts.oopses);
        if !world
            .wait_until(|| async { world.count_in(OOPS, &out).await > cycles })
            .await
        {
            world
                .counts
                .lost(format!("oops {machine} (cycle {cycles}): no notice"));
            break;
        }
        // clear, three ways.
        match cycles % 3 {
            0 => {
                world.command(&user, CONTROL, machine).await;
                inc(&world.counts.clears_slash);
            }
            1 => {
                if !picker_clear(&world, &user, &user_id, machine).await {
                    world.counts.lost(format!(
                        "picker for {machine} (cycle {cycles}) never opened"
                    ));
                    break;
                }
                inc(&world.counts.clears_picker);
            }
            _ => {
                world
                    .post(
                        "/messages",
                        json!({"user": user, "channel": CONTROL, "text": format!("<@{bot}> clear {machine}")}),
                    )
                    .await;
                inc(&world.counts.clears_mention);
            }
        }
        if !world
            .wait_until(|| async { world.count_in(OOPS, &back).await > cycles })
            .await
        {
            world
                .counts
                .lost(format!("clear {machine} (cycle {cycles}): no notice"));
            break;
        }
        cycles += 1;
    }
    done.lock().unwrap().insert(machine.to_string(), cycles);
}

/// `/oops-clear` without a name, then the machine picked in the modal and submitted. Opened
/// again if the modal never came (its trigger expired while the app was down, or its
/// `views.open` failed) or if its submission never got through. Only a modal that opened
/// after this command was run counts, and only a submission the sandbox says closed it: a
/// modal can also close because a later `views.open` replaced it (Slack keeps one stack a
/// person), as when an earlier try's `views.open` answered too late for the app but opened.
async fn picker_clear(world: &World, user: &str, user_id: &str, machine: &str) -> bool {
    let open_modals = || async {
        world.read(&format!("/views?user={user_id}")).await["views"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v["type"] == "modal")
            .filter_map(|v| v["id"].as_str().map(str::to_string))
            .collect::<Vec<String>>()
    };
    'command: for _ in 0..20 {
        let mut seen = open_modals().await;
        let Some(_) = world.command(user, CONTROL, "").await else {
            return false;
        };
        'modal: loop {
            let mut opened = None;
            for _ in 0..50 {
                opened = open_modals()
                    .await
                    .into_iter()
                    .find(|id| !seen.contains(id));
                if opened.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let Some(view_id) = opened else {
                inc(&world.counts.command_retries);
                continue 'command;
            };
            seen.push(view_id.clone());
            for _ in 0..30 {
                let v = world
                    .post(
                        "/views/submit",
                        json!({"user": user, "view_id": view_id,
                               "values": {"machine": {"machine": machine}}}),
                    )
                    .await;
                if v["view_closed"] == true {
                    return true;
                }
                if v["ok"] != true {
                    // Not open any more, and not closed by this submission: replaced by
                    // another `views.open` (a retry's); that one is the form to fill in.
                    continue 'modal;
                }
                inc(&world.counts.command_retries);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            // Its submission never got through: the person runs the command again.
            inc(&world.counts.command_retries);
            continue 'command;
        }
    }
    false
}

/// Devices check in every second or so; a member's fob goes in and out, so each machine logs
/// logins and logouts. A check-in whose answer was lost is sent again: the same state twice
/// changes nothing.
async fn devices_flow(world: Arc<World>, mut rng: StdRng, changes: Arc<AtomicU64>) {
    let mut uptime = 100.0;
    let mut fob_in = [false; DEVICE_MACHINES.len()];
    while !world.stopping() {
        let i = rng.random_range(0..DEVICE_MACHINES.len());
        fob_in[i] = !fob_in[i];
        uptime += 1.0;
        let fob = if fob_in[i] {
            format!("{}", 1000 + i)
        } else {
            String::new()
        };
        let body = json!({"machine_name": DEVICE_MACHINES[i], "oops": false, "rfid_value": fob,
                          "uptime": uptime, "wifi_signal_db": -50.0, "wifi_signal_percent": 80.0,
                          "internal_temperature_c": 40.0});
        let mut answered = false;
        for attempt in 0..100 {
            if attempt > 0 {
                inc(&world.counts.checkin_retries);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let Some(url) = world.live_url(&mut rng) else {
                continue;
            };
            let reply = world
                .http
                .post(format!("{url}/api/machine/update"))
                .bearer_auth(DEVICE_TOKEN)
                .json(&body)
                .send()
                .await;
            if let Ok(r) = reply
                && r.status().is_success()
            {
                let v: Value = r.json().await.unwrap_or_default();
                assert_eq!(v["relay"], json!(fob_in[i]), "{v}");
                answered = true;
                break;
            }
        }
        if !answered {
            world.counts.lost(format!(
                "check-in of {}: never answered",
                DEVICE_MACHINES[i]
            ));
            continue;
        }
        inc(&world.counts.checkins);
        changes.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(rng.random_range(700..1500))).await;
    }
}

/// SIGKILLs and restarts at random moments: the only replica, or (with two) the first one
/// again and again while the other carries on.
async fn killer(world: Arc<World>, mut rng: StdRng) {
    while !world.stopping() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1500..4500))).await;
        if world.stopping() {
            break;
        }
        world.kill(0);
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1200))).await;
        world.start(0).await;
    }
}

/// Random faults, a few at a time, each good for a few calls or deliveries.
async fn faults(world: Arc<World>, mut rng: StdRng) {
    while !world.stopping() {
        let web_method = [
            "chat.postMessage",
            "chat.update",
            "chat.postEphemeral",
            "views.open",
        ][rng.random_range(0..4)];
        let method = if rng.random_range(0..4) == 0 {
            Value::Null
        } else {
            json!(web_method)
        };
        let times = rng.random_range(1..4);
        let delivery_target = if world.plan.socket_mode {
            "socket"
        } else {
            "events"
        };
        let status = [500, 502, 503][rng.random_range(0..3)];
        let delay_ms = rng.random_range(200..2500);
        let rule = match rng.random_range(0..9) {
            0 => {
                json!({"target": "web_api", "method": method, "fault": "rate_limited", "retry_after": 1, "times": times})
            }
            1 => {
                json!({"target": "web_api", "method": method, "fault": "server_error", "status": status, "times": times})
            }
            2 => {
                json!({"target": "web_api", "method": method, "fault": "slow", "delay_ms": delay_ms, "times": 1})
            }
            3 => json!({"target": "web_api", "method": method, "fault": "reset", "times": times}),
            4 | 5 => json!({"target": delivery_target, "fault": "duplicate", "times": times}),
            6 => json!({"target": delivery_target, "fault": "drop", "times": 1}),
            7 if world.plan.socket_mode => {
                let reason = ["refresh_requested", "warning"][rng.random_range(0..2)];
                world
                    .post("/socket/disconnect", json!({ "reason": reason }))
                    .await;
                inc(&world.counts.socket_disconnects);
                Value::Null
            }
            8 if world.plan.socket_mode => {
                world.post("/socket/drop", json!({})).await;
                inc(&world.counts.socket_drops);
                Value::Null
            }
            _ => {
                json!({"target": delivery_target, "fault": "duplicate", "kind": "event", "times": times})
            }
        };
        if !rule.is_null() {
            let mut rule = rule;
            if rule["method"].is_null() {
                rule.as_object_mut().unwrap().remove("method");
            }
            world.post("/faults", rule).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1200))).await;
    }
}

async fn soak(plan: Plan) {
    let seed = soak_seed();
    let duration = soak_duration();
    eprintln!(
        "soak {}: {} s, seed {seed} (SOAK_SEED={seed} to run it again)",
        plan.name,
        duration.as_secs()
    );
    let world = World::new(plan.clone()).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut next = || StdRng::seed_from_u64(rng.random());
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let asked = Arc::new(Mutex::new(Vec::new()));
    let machine_cycles = Arc::new(Mutex::new(HashMap::new()));
    let device_changes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut traffic = vec![
        tokio::spawn(alerts_flow(world.clone(), next(), alerts.clone())),
        tokio::spawn(mentions_flow(world.clone(), next(), asked.clone())),
        tokio::spawn(devices_flow(world.clone(), next(), device_changes.clone())),
    ];
    for i in 0..FLOW_MACHINES.len() {
        traffic.push(tokio::spawn(machine_flow(
            world.clone(),
            i,
            machine_cycles.clone(),
        )));
    }
    let chaos = vec![
        tokio::spawn(killer(world.clone(), next())),
        tokio::spawn(faults(world.clone(), next())),
    ];
    tokio::time::sleep(duration).await;
    world.stop.store(true, Ordering::Relaxed);
    for task in chaos {
        task.await.unwrap();
    }
    // The chaos ends: every replica up, no fault left, then the traffic's last steps finish.
    world
        .ctl
        .request(reqwest::Method::DELETE, "/faults", None)
        .await
        .unwrap();
    for i in 0..world.plan.replicas {
        if world.replicas.lock().unwrap()[i].child.is_none() {
            world.start(i).await;
        }
    }
    for task in traffic {
        task.await.unwrap();
    }
    let store = world.store().await;
    // Drained: nothing pending in the inbox or the outbox, and Slack done delivering. A
    // backlog drains at a channel's pace (about a post a second, Slack's limit), so the wait
    // goes on while the backlog shrinks and gives up only once nothing moved for a while.
    let drain_started = Instant::now();
    let mut drained = false;
    let mut backlog = None;
    let mut last_pending = i64::MAX;
    let mut moved_at = Instant::now();
    while moved_at.elapsed() < EFFECT_WAIT {
        let inbox = store.inbox_counts().await.unwrap();
        let outbox = store.outbox_counts().await.unwrap();
        let stats = world.read("/stats").await;
        let deliveries = stats["deliveries"]["pending"].as_i64().unwrap_or(0);
        let pending = inbox.pending + outbox.pending + deliveries;
        backlog.get_or_insert(pending);
        if pending == 0 {
            drained = true;
            break;
        }
        if pending < last_pending {
            last_pending = pending;
            moved_at = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain = format!(
        "{} pending when the chaos ended, {} after {:.0} s",
        backlog.unwrap_or(0),
        if drained { "drained" } else { "still pending" },
        drain_started.elapsed().as_secs_f64()
    );
    let soaked = started.elapsed();
    let mut failures: Vec<String> = world.counts.lost.lock().unwrap().clone();
    // Handled or sent twice: a failure as much as a loss (an event handled twice, a message
    // sent twice), counted apart in the report.
    let mut twice: Vec<String> = Vec::new();
    // Told twice: a notice to a person repeated after they ran a command again; printed.
    let mut duplicates: Vec<String> = Vec::new();
    // What people saw that is neither a loss nor a duplicate.
    let mut notes: Vec<String> = Vec::new();
    if !drained {
        failures.push(format!("the inbox or outbox never drained ({drain})"));
        // What is stuck, for the next look: pending calls by channel and method, how far
        // away the soonest is due, the most attempts, and one of their last errors.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        #[derive(Default)]
        struct Stuck {
            calls: usize,
            due_in_ms: Option<i64>,
            attempts: i32,
            error: Option<String>,
        }
        let mut stuck: BTreeMap<(String, String), Stuck> = BTreeMap::new();
        for item in store.outbox_list(Some("pending"), 5000).await.unwrap() {
            let entry = stuck
                .entry((item.ordering_key.clone(), item.method.clone()))
                .or_default();
            entry.calls += 1;
            let due_in = item.not_before_ms - now;
            entry.due_in_ms = Some(entry.due_in_ms.map_or(due_in, |d| d.min(due_in)));
            entry.attempts = entry.attempts.max(item.attempts);
            if item.error.is_some() {
                entry.error = item.error.clone();
            }
        }
        for ((key, method), entry) in stuck {
            eprintln!(
                "  STUCK: {} {method} on {key}, the soonest due in {:?} ms, up to {} attempts, \
                 last error {:?}",
                entry.calls, entry.due_in_ms, entry.attempts, entry.error
            );
        }
    }

    // Every alert in Slack once; every acknowledged one acknowledged once.
    let mut by_channel: HashMap<&str, Vec<Value>> = HashMap::new();
    for channel in ALERT_CHANNELS {
        by_channel.insert(channel, world.channel_messages(channel).await);
    }
    // A storm's alerts are folded into a summary whose thread lists them (the alerts app's
    // storm folding): such an alert is in Slack as a line of one of those threads.
    let mut thread_lines: HashMap<&str, Vec<Value>> = HashMap::new();
    for channel in ALERT_CHANNELS {
        let mut lines = Vec::new();
        for m in &by_channel[channel] {
            if let (Some(ts), true) = (m["ts"].as_str(), m["reply_count"].as_u64().unwrap_or(0) > 0)
            {
                lines.extend(world.thread(channel, ts).await);
            }
        }
        thread_lines.insert(channel, lines);
    }
    let alerts = std::mem::take(&mut *alerts.lock().unwrap());
    let mut acked = 0;
    let mut folded = 0;
    for alert in &alerts {
        let messages: Vec<&Value> = by_channel[alert.channel]
            .iter()
            .filter(|m| mentions(m, &alert.title))
            .collect();
        match messages.len() {
            0 if thread_lines[alert.channel]
                .iter()
                .any(|m| mentions(m, &alert.title)) =>
            {
                folded += 1;
                continue;
            }
            0 => failures.push(format!("{} not in {}", alert.title, alert.channel)),
            1 => {}
            n => twice.push(format!("{} posted {n} times", alert.title)),
        }
        let Some(message) = messages.first() else {
            continue;
        };
        let thread = match message["ts"].as_str() {
            Some(ts) if message["reply_count"].as_u64().unwrap_or(0) > 0 => {
                world.thread(alert.channel, ts).await
            }
            _ => Vec::new(),
        };
        let lines = |needle: &str| {
            thread
                .iter()
                .filter(|m| m["text"].as_str().is_some_and(|t| t.contains(needle)))
                .count()
        };
        if lines("Fired again") > 0 {
            twice.push(format!("{}: fired again (a retried request)", alert.title));
        }
        if alert.acked && world.clicked.lock().unwrap().contains(&alert.title) {
            acked += 1;
            match lines("Acknowledged by") {
                0 => failures.push(format!("{}: Acknowledge never applied", alert.title)),
                1 => {}
                n => twice.push(format!("{}: acknowledged {n} times", alert.title)),
            }
        }
    }
    if folded > 0 {
        notes.push(format!(
            "{folded} alert(s) folded into a storm summary's thread (in Slack, without buttons)"
        ));
    }

    // Every mention answered once: one pong, one status.
    let asked = std::mem::take(&mut *asked.lock().unwrap());
    for a in &asked {
        let replies = world.thread(a.channel, &a.ts).await;
        let expected = if a.word == "ping" { "pong" } else { "machines" };
        let answers = replies
            .iter()
            .filter(|m| m["text"].as_str().is_some_and(|t| t.contains(expected)))
            .count();
        match answers {
            0 => failures.push(format!(
                "{} in {} at {}: no answer",
                a.word, a.channel, a.ts
            )),
            1 => {}
            n => twice.push(format!(
                "{} in {} at {}: {n} answers",
                a.word, a.channel, a.ts
            )),
        }
    }

    // Machines: each oops and clear noticed once; no refusal (an oops or clear handled twice
    // would be refused: "already oopsed", "nothing to clear").
    let cycles = machine_cycles.lock().unwrap().clone();
    let oops_channel = world.channel_messages(OOPS).await;
    let control_channel = world.channel_messages(CONTROL).await;
    for machine in FLOW_MACHINES {
        let done = cycles.get(machine).copied().unwrap_or(0);
        let count = |needle: String| {
            oops_channel
                .iter()
                .filter(|m| m["text"].as_str().is_some_and(|t| t.contains(&needle)))
                .count()
        };
        let outs = count(format!("*{machine}* is out of service"));
        let backs = count(format!("*{machine}* is back in service"));
        // The last cycle may have ended after its oops.
        if outs < done || backs < done {
            failures.push(format!(
                "{machine}: {done} cycles, {outs} oops and {backs} clear notices"
            ));
        }
        if outs > done + 1 || backs > done {
            twice.push(format!(
                "{machine}: {done} cycles, {outs} oops and {backs} clear notices"
            ));
        }
    }
    for user in 1..=FLOW_MACHINES.len() {
        let user_id = world.read("/users").await["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == format!("user{user}"))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let v = world
            .read(&format!("/ephemerals?user={user_id}&channel={CONTROL}"))
            .await;
        for e in v["ephemerals"].as_array().cloned().unwrap_or_default() {
            let text = e["message"]["text"].as_str().unwrap_or("").to_string();
            if text.contains("did not open the form") {
                // The picker could not open (views.open failing until its trigger expired, or
                // the command reaching a restarted process too late); the person ran the
                // command again.
                notes.push(format!("user{user} was told: {text}"));
            } else {
                duplicates.push(format!("user{user} was told: {text}"));
            }
        }
    }
    for m in &control_channel {
        if m["reply_count"].as_u64().unwrap_or(0) > 0 {
            // A thread reply in the control channel: a mention command refused.
            duplicates.push(format!("a control-channel command answered: {}", m["text"]));
        }
    }
    // Devices: one login or logout line per change.
    let device_lines = control_channel
        .iter()
        .filter(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.contains("logged in to") || t.contains("logged out of"))
        })
        .count() as u64;
    let changes = device_changes.load(Ordering::Relaxed);
    if device_lines < changes {
        failures.push(format!(
            "{changes} fob changes, {device_lines} login/logout notices"
        ));
    } else if device_lines > changes {
        twice.push(format!(
            "{changes} fob changes, {device_lines} login/logout notices"
        ));
    }

    // Every change audited.
    let mut audit: HashMap<(String, String), u64> = HashMap::new();
    for row in switchyard_store::sqlx::query(
        "SELECT action, outcome, COUNT(*) AS n FROM audit GROUP BY action, outcome",
    )
    .fetch_all(store.reader())
    .await
    .unwrap()
    {
        audit.insert(
            (row.get("action"), row.get("outcome")),
            row.get::<i64, _>("n") as u64,
        );
    }
    let audited = |action: &str| {
        audit
            .get(&(action.to_string(), "ok".to_string()))
            .copied()
            .unwrap_or(0)
    };
    let total_cycles: usize = cycles.values().sum();
    for (action, at_least, what) in [
        ("alerts.fire", alerts.len() as u64, "alerts"),
        ("alerts.ack", acked, "acknowledged alerts"),
        ("machines.oops", total_cycles as u64, "oopses"),
        ("machines.clear", total_cycles as u64, "clears"),
    ] {
        if audited(action) < at_least {
            failures.push(format!(
                "{what}: {at_least} made, {} audited as {action}",
                audited(action)
            ));
        }
    }
    let device_audited = audited("machines.login") + audited("machines.logout");
    if device_audited < changes {
        failures.push(format!("{changes} fob changes, {device_audited} audited"));
    }

    // The outbox: nothing pending, nothing failed.
    let outbox = store.outbox_counts().await.unwrap();
    if outbox.pending > 0 || outbox.failed > 0 {
        let failed: Vec<String> = store
            .outbox_list(Some("failed"), 20)
            .await
            .unwrap()
            .into_iter()
            .map(|i| format!("{} {}: {:?}", i.method, i.ordering_key, i.error))
            .collect();
        failures.push(format!(
            "outbox: {} pending, {} failed {failed:?}",
            outbox.pending, outbox.failed
        ));
    }

    // Per-channel order: the posts Slack accepted in each channel came in the outbox's order
    // (a post sent twice — its outcome lost to a kill — shows as a repeat, counted apart).
    let sent = store.outbox_list(Some("sent"), 100_000).await.unwrap();
    let calls = world.read("/api_calls?method=chat.postMessage").await["calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut resent = 0;
    for channel in [CONTROL, OOPS]
        .into_iter()
        .chain(ALERT_CHANNELS)
        .chain(PING_CHANNELS)
    {
        let mut queued: Vec<String> = Vec::new();
        for item in sent
            .iter()
            .filter(|i| i.method == "chat.postMessage" && i.ordering_key == channel)
        {
            let mut args: Value = serde_json::from_str(&item.payload).unwrap_or_default();
            // A post in the thread of one of ours: the thread it went to.
            if let Some(key) = args["thread_ref"].as_str()
                && let Some(parent) = store.message_ref(key).await.unwrap()
            {
                args["thread_ts"] = json!(parent.ts);
            }
            queued.push(post_identity(&args));
        }
        let mut accepted: Vec<String> = calls
            .iter()
            .filter(|c| c["ok"] == true && c["args"]["channel"] == channel)
            .map(|c| post_identity(&c["args"]))
            .collect();
        let before = accepted.len();
        accepted.dedup();
        resent += before - accepted.len();
        if accepted != queued {
            failures.push(format!(
                "{channel}: Slack took {} posts, the outbox sent {}; first difference at {:?}",
                accepted.len(),
                queued.len(),
                accepted
                    .iter()
                    .zip(&queued)
                    .position(|(a, q)| a != q)
                    .unwrap_or(accepted.len().min(queued.len()))
            ));
        }
    }
    if resent > 0 {
        twice.push(format!(
            "{resent} post(s) sent again after their outcome was lost"
        ));
    }

    // No channel pushed past Slack's limit.
    let stats = world.read("/stats").await;
    let over_limit = stats["rate_limited"]["chat.postMessage"]
        .as_u64()
        .unwrap_or(0);
    if over_limit > 0 {
        let mut channels: BTreeMap<String, u64> = BTreeMap::new();
        for c in calls.iter().filter(|c| c["error"] == "ratelimited") {
            *channels
                .entry(c["args"]["channel"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
        failures.push(format!(
            "Slack refused {over_limit} post(s) for going over a channel's limit: {channels:?}"
        ));
    }
    // Events Slack gave up on (out of retries while no replica could take them): lost by
    // Slack, not by us, but counted.
    let expired = world.read("/deliveries").await["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|d| d["kind"] == "event" && d["outcome"] == "failed")
        .count();
    if expired > 0 {
        failures.push(format!("{expired} event(s) never acked in Slack's retries"));
    }

    // Calls Slack accepted against the calls the outbox recorded as made, by method: the
    // difference is calls made more than once (an attempt whose outcome was lost, made
    // again). `response_url` and webhook posts are not in the sandbox's call log.
    let mut recorded: HashMap<String, i64> = HashMap::new();
    for row in switchyard_store::sqlx::query(
        "SELECT method, COUNT(*) AS n FROM outbox WHERE state = 'sent' GROUP BY method",
    )
    .fetch_all(store.reader())
    .await
    .unwrap()
    {
        recorded.insert(row.get("method"), row.get::<i64, _>("n"));
    }
    let mut repeated_calls = Vec::new();
    for (method, n) in &recorded {
        let accepted = stats["api_calls"][method.as_str()]["ok"]
            .as_i64()
            .unwrap_or(0);
        repeated_calls.push(format!("{method} {}/{n}", accepted));
    }
    repeated_calls.sort();
    // What the sender did with posts whose earlier attempt's outcome was lost.
    let logs: Vec<String> = (0..world.plan.replicas)
        .map(|i| {
            let log = world.replicas.lock().unwrap()[i].log.clone();
            std::fs::read_to_string(&log).unwrap_or_default()
        })
        .collect();
    let (mut found, mut not_found, mut unchecked) = (0, 0, 0);
    for text in &logs {
        found += text.matches("is in Slack; recorded as sent").count();
        not_found += text.matches("is not in Slack; posting it").count();
        unchecked += text.matches("posting it again").count();
    }
    let c = &world.counts;
    eprintln!(
        "\n== soak {} ({} replica(s), {}, {}) — seed {seed}, {:.0} s ==\n\
         sent: {} alerts ({} retried sends), {} acknowledges ({} re-clicks), {} pings, {} statuses, \
         {} oopses, {} clears (slash {}, picker {}, mention {}; {} command re-tries), {} check-ins ({} retried)\n\
         faults fired: {}; socket disconnects {}, socket drops {}\n\
         kills: {}\n\
         drain: {drain}\n\
         posts whose outcome was lost: {found} found in Slack (recorded, not posted again), {not_found} not there (posted), {unchecked} not checkable (posted)\n\
         calls Slack accepted / the outbox recorded, by method: {}\n\
         Slack deliveries given up (out of retries): {expired}\n\
         lost: {}\n\
         handled or sent twice: {}\n\
         told twice: {}\n",
        world.plan.name,
        world.plan.replicas,
        if world.plan.socket_mode {
            "Socket Mode"
        } else {
            "HTTP Events API"
        },
        if world.plan.postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        soaked.as_secs_f64(),
        get(&c.alerts),
        get(&c.alert_retries),
        get(&c.acks),
        get(&c.ack_retries),
        get(&c.pings),
        get(&c.statuses),
        get(&c.oopses),
        get(&c.clears_slash) + get(&c.clears_picker) + get(&c.clears_mention),
        get(&c.clears_slash),
        get(&c.clears_picker),
        get(&c.clears_mention),
        get(&c.command_retries),
        get(&c.checkins),
        get(&c.checkin_retries),
        stats["faults_fired"],
        get(&c.socket_disconnects),
        get(&c.socket_drops),
        get(&c.kills),
        repeated_calls.join(", "),
        failures.len(),
        twice.len(),
        duplicates.len(),
    );
    for f in &failures {
        eprintln!("  LOST/BROKEN: {f}");
    }
    for t in &twice {
        eprintln!("  TWICE: {t}");
    }
    // A notice with an error id: the server's log lines under that id, which say what failed.
    let logged_under_its_id = |text: &str| {
        if let Some(id) = text
            .split("error id ")
            .nth(1)
            .and_then(|r| r.split(')').next())
        {
            for line in logs
                .iter()
                .flat_map(|l| l.lines())
                .filter(|l| l.contains(id))
            {
                eprintln!("    log: {line}");
            }
        }
    };
    for d in &duplicates {
        eprintln!("  DUPLICATE: {d}");
        logged_under_its_id(d);
    }
    for n in &notes {
        eprintln!("  NOTE: {n}");
        logged_under_its_id(n);
    }
    if !failures.is_empty() || !twice.is_empty() {
        keep_for_a_post_mortem(&world, &seed.to_string()).await;
        for i in 0..world.plan.replicas {
            let log = world.replicas.lock().unwrap()[i].log.clone();
            eprintln!(
                "-- replica {i}'s log, last lines --\n{}",
                log_tail(&log, 30)
            );
        }
    }
    assert!(
        failures.is_empty() && twice.is_empty(),
        "the soak lost or broke: {failures:#?}; handled or sent twice: {twice:#?}"
    );
}

/// The last `lines` lines of a replica's log (none if it cannot be read).
fn log_tail(log: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A failed run's evidence, kept past the test (its temp dir goes with it): the replicas'
/// configs and logs, the SQLite store (a PostgreSQL run's schema stays until the next run of
/// that test), and what the sandbox saw — every Web API call and every delivery — in
/// `target/soak-failures/<run>-<label>/` (the label: the seed, or what went wrong).
async fn keep_for_a_post_mortem(world: &World, label: &str) {
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("..")
        .join("soak-failures")
        .join(format!("{}-{label}", world.plan.name));
    if std::fs::create_dir_all(&kept).is_err() {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(world.dir.path()) {
        for entry in entries.flatten() {
            let _ = std::fs::copy(entry.path(), kept.join(entry.file_name()));
        }
    }
    for (path, file) in [
        ("/api_calls", "sandbox-api-calls.json"),
        ("/deliveries", "sandbox-deliveries.json"),
    ] {
        let _ = std::fs::write(kept.join(file), world.read(path).await.to_string());
    }
    eprintln!(
        "-- kept for a post-mortem: {} (store: {}) --",
        kept.display(),
        world.store_url
    );
}

/// What identifies a post in its channel: its text, or its blocks, and its thread.
fn post_identity(args: &Value) -> String {
    let text = match &args["text"] {
        Value::String(s) => s.clone(),
        _ => args["blocks"].to_string(),
    };
    format!(
        "{text} (thread {})",
        args["thread_ts"].as_str().unwrap_or("-")
    )
}

/// One run at a time: each is a whole workload for a small machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_sqlite_socket_mode() {
    let _turn = ONE_AT_A_TIME.lock().await;
    soak(Plan {
        name: "sqlite-socket",
        socket_mode: true,
        replicas: 1,
        postgres: None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_postgres_two_replicas_http() {
    let _turn = ONE_AT_A_TIME.lock().await;
    common::on_postgres_schema("soak_http", |url| async move {
        soak(Plan {
            name: "postgres-http",
            socket_mode: false,
            replicas: 2,
            postgres: Some(url),
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_postgres_two_replicas_socket_mode() {
    let _turn = ONE_AT_A_TIME.lock().await;
    common::on_postgres_schema("soak_socket", |url| async move {
        soak(Plan {
            name: "postgres-socket",
            socket_mode: true,
            replicas: 2,
            postgres: Some(url),
        })
        .await;
    })
    .await;
}
