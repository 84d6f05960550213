//! The operator's tools, as the real `switchyard` process against the sandbox: `doctor`,
//! `/readyz` and `/metrics`, a graceful stop with work in flight, and reloading the config.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sandbox::{Manifest, RateLimitSettings, Sandbox, SandboxConfig};

/// The variables the config reads; cleared so the developer's own environment cannot leak in.
const CONFIG_ENV: &[&str] = &[
    "SWITCHYARD_CONFIG",
    "SWITCHYARD_LOG_FORMAT",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_API_URL",
];

fn switchyard(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command.current_dir(dir).env("RUST_LOG", "warn");
    for name in CONFIG_ENV {
        command.env_remove(name);
    }
    command
}

fn run(dir: &Path, args: &[&str]) -> Output {
    switchyard(dir)
        .args(args)
        .output()
        .expect("switchyard runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `switchyard serve` process (killed on drop) and the log lines it has written so far.
struct Serve {
    child: Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child, with a valid signal number.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0, "kill");
    }

    /// Waits (up to 10 s) for a log line containing `needle`; returns it.
    async fn log_line(&self, needle: &str) -> String {
        for _ in 0..200 {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no log line with {needle:?}; the log: {:#?}",
            self.log.lock().unwrap()
        );
    }

    /// Waits for the process to exit (up to 20 s); whether it exited 0.
    async fn exited_cleanly(&mut self) -> bool {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("switchyard did not exit after SIGTERM");
    }
}

struct Setup {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// A Socket Mode app with these bot scopes.
fn manifest(scopes: &[&str]) -> Manifest {
    Manifest::from_value(json!({
        "display_information": {"name": "Switchyard"},
        "features": {"bot_user": {"display_name": "switchyard"}},
        "oauth_config": {"scopes": {"bot": scopes}},
        "settings": {
            "event_subscriptions": {"bot_events": ["app_mention", "message.im"]},
            "interactivity": {"is_enabled": false},
            "socket_mode_enabled": true,
        },
    }))
    .expect("test manifest")
}

/// Every scope a config with channels needs.
const ALL_SCOPES: &[&str] = &[
    "app_mentions:read",
    "channels:history",
    "channels:read",
    "chat:write",
    "groups:history",
    "groups:read",
    "im:history",
];

impl Setup {
    async fn new(scopes: &[&str]) -> Self {
        let sandbox = Sandbox::start(SandboxConfig {
            manifest: Some(manifest(scopes)),
            rate_limits: RateLimitSettings {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        })
        .await
        .expect("sandbox starts");
        Self {
            sandbox,
            dir: tempfile::tempdir().expect("temp dir"),
            http: reqwest::Client::new(),
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config, Socket Mode, with `extra` appended (sections of its own).
    fn write_config(&self, extra: &str) -> PathBuf {
        let path = self.dir().join("switchyard.toml");
        let text = format!(
            "[slack]\nbot_token = \"{}\"\napp_token = \"{}\"\napi_url = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\npid_file = \"{}\"\n\n[store]\nurl = \"sqlite://{}\"\n\n[engine]\nlease_ms = 1000\npoll_interval_ms = 100\n\n{extra}",
            self.sandbox.bot_token(),
            self.sandbox.app_token(),
            self.sandbox.api_url(),
            self.dir().join("switchyard.pid").display(),
            self.dir().join("switchyard.db").display(),
        );
        common::write_private(&path, text).expect("config written");
        path
    }

    /// Runs `switchyard doctor` off the runtime's thread: the sandbox must answer meanwhile.
    async fn doctor(&self, config: &Path) -> (bool, String) {
        let (dir, config) = (self.dir().to_path_buf(), config.display().to_string());
        let out = tokio::task::spawn_blocking(move || run(&dir, &["doctor", "--config", &config]))
            .await
            .expect("doctor ran");
        (out.status.success(), text(&out.stdout) + &text(&out.stderr))
    }

    async fn serve(&self, config: &Path, env: &[(&str, &str)]) -> Serve {
        let mut command = switchyard(self.dir());
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("switchyard serve runs");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[serve] {line}");
                lines.lock().unwrap().push(line);
            }
        });
        let url = common::listening_url(&mut child).await;
        let serve = Serve { child, url, log };
        self.wait_for_socket().await;
        serve
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method, format!("{}/_sandbox{path}", self.sandbox.url()))
            .json(&body)
            .send()
            .await
            .expect("control API");
        let status = r.status();
        let v: Value = r.json().await.expect("JSON");
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        self.control(reqwest::Method::GET, path, Value::Null).await
    }

    async fn channel_id(&self, name: &str) -> String {
        let channels = self.get("/channels").await;
        channels["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["id"].as_str())
            .unwrap_or_else(|| panic!("no #{name} in {channels}"))
            .to_string()
    }

    /// Alice mentions the bot in #general; returns the message's ts.
    async fn mention(&self, text: &str) -> String {
        let v = self
            .control(
                reqwest::Method::POST,
                "/messages",
                json!({"user": "alice", "channel": "general", "text": format!("<@{}> {text}", self.sandbox.bot_user_id())}),
            )
            .await;
        v["ts"].as_str().expect("ts").to_string()
    }

    /// The replies in a thread (not its parent), waiting up to `secs` for `n` of them.
    async fn replies(&self, ts: &str, n: usize, secs: u64) -> Vec<String> {
        let v = self
            .get(&format!(
                "/channels/general/threads/{ts}?wait_for={}&timeout_ms={}",
                n + 1,
                secs * 1000
            ))
            .await;
        v["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .skip(1)
            .filter_map(|m| m["text"].as_str().map(str::to_string))
            .collect()
    }

    async fn wait_for_socket(&self) {
        for _ in 0..200 {
            let v = self.get("/socket").await;
            if v["connections"].as_array().is_some_and(|c| !c.is_empty()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("Switchyard never connected over Socket Mode");
    }

    async fn store(&self) -> switchyard_store::Store {
        let url = format!("sqlite://{}", self.dir().join("switchyard.db").display());
        switchyard_store::Store::connect(&url)
            .await
            .expect("store opens")
    }
}

fn lines_starting(report: &str, prefix: &str) -> Vec<String> {
    report
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn doctor_passes_then_names_a_channel_the_bot_is_not_in_with_its_fix() {
    let s = Setup::new(ALL_SCOPES).await;
    let general = s.channel_id("general").await;
    let config = s.write_config(&format!("[apps.ping]\nchannels = [\"{general}\"]\n"));
    let (passed, report) = s.doctor(&config).await;
    assert!(passed, "{report}");
    for check in [
        "bot token",
        "scopes",
        &format!("channel {general}"),
        "Socket Mode",
        "store",
        "outbox",
    ] {
        let line = report
            .lines()
            .find(|l| l.contains(&format!("{check}:")))
            .unwrap_or_else(|| panic!("no {check} line in {report}"));
        assert!(line.starts_with("ok"), "{line}");
    }
    assert!(lines_starting(&report, "FAIL").is_empty(), "{report}");

    // A public channel the bot has not joined, made by alice.
    let created: Value = s
        .http
        .post(format!("{}conversations.create", s.sandbox.api_url()))
        .bearer_auth(s.sandbox.user_token("alice").expect("alice's token"))
        .json(&json!({"name": "random"}))
        .send()
        .await
        .expect("Web API")
        .json()
        .await
        .expect("JSON");
    let random = created["channel"]["id"]
        .as_str()
        .expect("created")
        .to_string();
    let config = s.write_config(&format!(
        "[apps.ping]\nchannels = [\"{general}\", \"{random}\"]\n"
    ));
    let (passed, report) = s.doctor(&config).await;
    assert!(!passed, "{report}");
    let failed = lines_starting(&report, "FAIL");
    assert_eq!(failed.len(), 1, "{report}");
    assert!(
        failed[0].starts_with(&format!(
            "FAIL  channel {random}: the bot is not in #random ({random}), named in [apps.ping]"
        )),
        "{report}"
    );
    assert!(
        failed[0].ends_with("fix: invite it: in #random type /invite @switchyard"),
        "{report}"
    );

    // A channel that does not exist.
    let config = s.write_config("[apps.ping]\nchannels = [\"C0NOSUCH\"]\n");
    let (passed, report) = s.doctor(&config).await;
    assert!(!passed, "{report}");
    assert!(
        report.contains(
            "FAIL  channel C0NOSUCH: named in [apps.ping]: conversations.info: channel_not_found"
        ),
        "{report}"
    );
}

#[tokio::test]
async fn doctor_reports_a_missing_scope_and_a_bad_app_token() {
    // No chat:write: the bot could not answer anyone.
    let s = Setup::new(&[
        "app_mentions:read",
        "channels:history",
        "groups:history",
        "im:history",
    ])
    .await;
    let config = s.write_config("");
    let (passed, report) = s.doctor(&config).await;
    assert!(!passed, "{report}");
    let failed = lines_starting(&report, "FAIL");
    assert_eq!(failed.len(), 1, "{report}");
    assert!(
        failed[0].starts_with(
            "FAIL  scopes: the bot token lacks chat:write — fix: add them under OAuth & Permissions"
        ),
        "{report}"
    );

    let path = s.write_config("");
    let broken = std::fs::read_to_string(&path)
        .unwrap()
        .replace(s.sandbox.app_token(), "xapp-wrong");
    common::write_private(&path, broken).unwrap();
    let (passed, report) = s.doctor(&path).await;
    assert!(!passed, "{report}");
    assert!(
        report.contains("FAIL  Socket Mode: apps.connections.open refused: invalid_auth — fix: set slack.app_token"),
        "{report}"
    );
}

/// A sample's value in Prometheus text, e.g. `switchyard_sent_total{method="chat.postMessage"}`.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn readyz_and_metrics_after_a_ping() {
    let s = Setup::new(ALL_SCOPES).await;
    let serve = s.serve(&s.write_config(""), &[]).await;
    let ts = s.mention("ping").await;
    assert_eq!(s.replies(&ts, 1, 10).await, ["pong"]);

    let ready = s
        .http
        .get(format!("{}/readyz", serve.url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.expect("JSON");
    assert_eq!(ready["ok"], true, "{ready}");
    assert_eq!(ready["checks"]["store"]["ok"], true, "{ready}");
    assert_eq!(
        ready["checks"]["slack"]["transport"], "socket_mode",
        "{ready}"
    );
    assert!(
        ready["checks"]["slack"]["socket_connections"].as_u64() >= Some(1),
        "{ready}"
    );

    // The outcome is recorded just after the post: wait for the counter rather than sleep.
    let mut metrics = String::new();
    for _ in 0..100 {
        let response = s
            .http
            .get(format!("{}/metrics", serve.url))
            .send()
            .await
            .expect("metrics");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4"),
        );
        metrics = response.text().await.expect("text");
        if sample(
            &metrics,
            "switchyard_sent_total{method=\"chat.postMessage\"}",
        ) == Some(1.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expect = |name: &str, value: f64| {
        assert_eq!(sample(&metrics, name), Some(value), "{name} in\n{metrics}");
    };
    expect("switchyard_received_total{kind=\"event\"}", 1.0);
    expect("switchyard_deduplicated_total", 0.0);
    expect("switchyard_dispatched_total", 1.0);
    expect("switchyard_handled_total{app=\"ping\"}", 1.0);
    expect("switchyard_sent_total{method=\"chat.postMessage\"}", 1.0);
    expect("switchyard_ack_seconds_count", 1.0);
    expect("switchyard_ack_seconds_bucket{le=\"+Inf\"}", 1.0);
    assert!(
        sample(&metrics, "switchyard_socket_connections") >= Some(1.0),
        "{metrics}"
    );
    for family in [
        "switchyard_app_errors_total counter",
        "switchyard_retried_total counter",
        "switchyard_failed_total counter",
        "switchyard_rate_limit_waits_total counter",
        "switchyard_outbox_pending gauge",
        "switchyard_ack_seconds histogram",
        "switchyard_store_writer_wait_seconds histogram",
        "switchyard_store_writer_hold_seconds histogram",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {family}")),
            "{family} in\n{metrics}"
        );
    }
    assert!(sample(&metrics, "switchyard_outbox_pending").is_some());
    // SQLite's writer: the mention's inbox commit waited for its turn as an ack and held it.
    for (name, at_least) in [
        (
            "switchyard_store_writer_wait_seconds_count{priority=\"ack\"}",
            1.0,
        ),
        (
            "switchyard_store_writer_hold_seconds_count{op=\"inbox insert\"}",
            1.0,
        ),
        (
            "switchyard_store_writer_hold_seconds_count{op=\"transaction\"}",
            1.0,
        ),
    ] {
        assert!(
            sample(&metrics, name) >= Some(at_least),
            "{name} in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn sigterm_with_replies_in_flight_loses_none_and_doubles_none() {
    const N: usize = 5;
    let s = Setup::new(ALL_SCOPES).await;
    let config = s.write_config("");
    let mut serve = s.serve(&config, &[]).await;
    // Every post takes a while, and posts to one channel go one at a time: at the signal one
    // is in flight and the others wait in the outbox.
    s.control(
        reqwest::Method::POST,
        "/faults",
        json!({"target": "web_api", "method": "chat.postMessage", "fault": "slow", "delay_ms": 1500}),
    )
    .await;
    let mut mentions = Vec::new();
    for i in 0..N {
        mentions.push(s.mention(&format!("ping {i}")).await);
    }
    // Every mention acked (in the inbox), and the first post under way.
    for _ in 0..200 {
        let deliveries = s.get("/deliveries").await;
        let acked = deliveries["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["outcome"] == "acked")
            .count();
        if acked >= N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    serve.signal(libc::SIGTERM);
    assert!(serve.exited_cleanly().await, "exit status not 0");

    // Nothing lost: each reply was posted or is pending; none failed.
    let mut posted = 0;
    for ts in &mentions {
        let replies = s.replies(ts, 0, 0).await;
        assert!(replies.len() <= 1, "{replies:?}");
        posted += replies.len();
    }
    let counts = s.store().await.outbox_counts().await.unwrap();
    assert_eq!(counts.failed, 0, "{counts:?}");
    assert_eq!(counts.done_or_sent as usize, posted, "{counts:?}");
    assert_eq!((counts.pending as usize) + posted, N, "{counts:?}");
    assert!(
        counts.pending > 0,
        "the test meant to stop with work pending"
    );

    // The next process posts the rest; nobody gets two.
    s.control(reqwest::Method::DELETE, "/faults", Value::Null)
        .await;
    let _next = s.serve(&config, &[]).await;
    for ts in &mentions {
        assert_eq!(s.replies(ts, 1, 15).await, ["pong"], "thread {ts}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for ts in &mentions {
        assert_eq!(s.replies(ts, 1, 0).await, ["pong"], "thread {ts}");
    }
}

#[tokio::test]
async fn sighup_applies_app_sections_and_refuses_a_broken_config() {
    let s = Setup::new(ALL_SCOPES).await;
    let config = s.write_config("[apps.ping]\nenabled = true\n");
    let serve = s
        .serve(
            &config,
            &[("RUST_LOG", "info"), ("SWITCHYARD_LOG_FORMAT", "json")],
        )
        .await;
    let ts = s.mention("ping").await;
    assert_eq!(s.replies(&ts, 1, 10).await, ["pong"]);

    // A broken config: `reload` will not send it, and a bare SIGHUP keeps the old one.
    let broken = s.write_config("[apps.ping]\nenabled = \"yes\"\n");
    let out = run(
        s.dir(),
        &["reload", "--config", &broken.display().to_string()],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("apps.ping.enabled"),
        "{}",
        text(&out.stderr)
    );
    serve.signal(libc::SIGHUP);
    let refused = serve.log_line("reload refused").await;
    let refused: Value = serde_json::from_str(&refused).expect("JSON log lines");
    assert_eq!(refused["level"], "ERROR", "{refused}");
    let ts = s.mention("ping").await;
    assert_eq!(s.replies(&ts, 1, 10).await, ["pong"]);

    // Ping turned off: `reload` finds the process through [server] pid_file.
    s.write_config("[apps.ping]\nenabled = false\n");
    let out = run(
        s.dir(),
        &["reload", "--config", &config.display().to_string()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("Sent SIGHUP to {}", serve.pid())),
        "{}",
        text(&out.stdout)
    );
    serve.log_line("config reloaded").await;
    let ts = s.mention("ping").await;
    assert_eq!(
        s.replies(&ts, 1, 10).await,
        ["No commands are enabled here."]
    );
    // Every line it wrote is JSON, as asked.
    for line in serve.log.lock().unwrap().iter() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
}
