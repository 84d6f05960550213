//! Switchyard's alerts app beside Prometheus Alertmanager 0.25 (Debian's package, fetched by
//! `bench/alertmanager/fetch`), both posting to the sandbox, in one run, on one machine.
//!
//! - latency: one alert at a time onto a quiet channel (channels taken in turn, each at most
//!   once a second, so neither Slack's limit nor Switchyard's pacing is in the figure): from the
//!   moment the alert is POSTed to the `ts` of the message Slack (the sandbox) stored. Alertmanager
//!   with `group_wait: 0` and every alert a group of its own, its Slack receiver posting to the
//!   channel's incoming webhook.
//! - intake (Switchyard): alerts accepted durably per second on SQLite, batched POSTs to
//!   `/api/v1/alerts` (each answered after the commit).
//! - storm: `--storm` alerts at once for one channel, Slack's limits enforced by the sandbox:
//!   alerts lost, posts refused with 429 and not retried, the most posts the channel took in any
//!   second, the time until every alert can be found in the channel (messages and threads), and
//!   one alert for another channel fired a second into the storm: its latency.
//! - kill: the same storm into Switchyard, SIGKILLed once half the alerts are accepted and
//!   started again on the same database, the senders retrying what got no answer (as
//!   Alertmanager's webhook does); then every alert is sent once more: one that Switchyard
//!   answers `posted` (not `unchanged`) was accepted before the kill and lost.
//!
//! The sandbox runs in this process; the machine is shared: read the figures within one run.

// The sandbox (Slack's stand-in) runs in this process and shares the machine with the
// contender: with glibc's malloc, its frees of each call's JSON were about a quarter of the
// process's CPU, taken from the contender.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod private;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use switchyard_sandbox::{Manifest, Sandbox, SandboxConfig, Seed};

#[derive(Parser, Clone)]
struct Args {
    /// A quick run: fewer samples, a smaller storm, shorter waits.
    #[arg(long)]
    short: bool,
    /// Latency samples per contender (default 200; 40 with --short).
    #[arg(long)]
    samples: Option<usize>,
    /// Alerts in the intake test (default 50,000; 10,000 with --short).
    #[arg(long)]
    intake_alerts: Option<usize>,
    /// Alerts per POST in the intake and storm tests (the intake's limit is 500).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Clients POSTing at once in the intake and storm tests.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Alerts in the storm (default 10,000; 1,000 with --short).
    #[arg(long)]
    storm: Option<usize>,
    /// How long to wait for every storm alert to be visible (default 90 s; 20 s with --short).
    #[arg(long)]
    storm_wait_secs: Option<u64>,
    /// The switchyard binary (build it with --release).
    #[arg(long, default_value = "target/release/switchyard")]
    switchyard: PathBuf,
    /// How to run Alertmanager: the package bench/alertmanager/fetch unpacked, through
    /// bench/alertmanager/run (which gives it its templates), or a binary of your own.
    #[arg(long, default_value = "bench/alertmanager/run")]
    alertmanager: PathBuf,
    /// Tests to run: latency, intake, storm, kill.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "latency,intake,storm,kill"
    )]
    only: Vec<String>,
    /// Contenders: switchyard, alertmanager.
    #[arg(long, value_delimiter = ',', default_value = "switchyard,alertmanager")]
    contenders: Vec<String>,
}

impl Args {
    fn samples(&self) -> usize {
        self.samples.unwrap_or(if self.short { 40 } else { 200 })
    }
    fn intake_alerts(&self) -> usize {
        self.intake_alerts
            .unwrap_or(if self.short { 10_000 } else { 50_000 })
    }
    fn storm(&self) -> usize {
        self.storm
            .unwrap_or(if self.short { 1_000 } else { 10_000 })
    }
    fn storm_wait(&self) -> Duration {
        Duration::from_secs(
            self.storm_wait_secs
                .unwrap_or(if self.short { 20 } else { 90 }),
        )
    }
    fn runs(&self, test: &str) -> bool {
        self.only.iter().any(|t| t == test)
    }
    fn has(&self, contender: &str) -> bool {
        self.contenders.iter().any(|c| c == contender)
    }
}

/// Quiet channels for the latency test, taken in turn.
const LATENCY_CHANNELS: usize = 20;
/// Each storm run gets channels of its own: the storm's and the other one.
const STORM_RUNS: [&str; 3] = ["SY", "AM", "KILL"];

fn latency_channel(i: usize) -> String {
    format!("C0LAT{i:02}")
}

fn seed() -> Result<Seed> {
    let mut text = String::from(
        "[team]\nid = \"T0SANDBOX\"\nname = \"Sandbox\"\ndomain = \"sandbox\"\n\n[[users]]\nname = \"alice\"\nreal_name = \"Alice Admin\"\n",
    );
    let mut channels: Vec<String> = (0..LATENCY_CHANNELS).map(latency_channel).collect();
    channels.push("C0INTAKE".into());
    for run in STORM_RUNS {
        channels.push(format!("C0STORM{run}"));
        channels.push(format!("C0OTHER{run}"));
    }
    for id in &channels {
        text.push_str(&format!(
            "\n[[channels]]\nid = \"{id}\"\nname = \"{}\"\nmembers = [\"alice\"]\napp_member = true\n\n[[webhooks]]\nchannel = \"{}\"\n",
            id.to_lowercase(),
            id.to_lowercase()
        ));
    }
    Ok(Seed::parse_toml(&text, "alerts_bench_seed.toml")?)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// A message `ts` (`seconds.micros`) in microseconds since the epoch.
fn ts_micros(ts: &str) -> Option<i64> {
    let (s, us) = ts.split_once('.')?;
    Some(s.parse::<i64>().ok()? * 1_000_000 + us.parse::<i64>().ok()?)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

struct World {
    sandbox: Sandbox,
    http: reqwest::Client,
    /// Incoming webhook URL by channel id.
    webhooks: HashMap<String, String>,
}

impl World {
    async fn control(&self, path: &str) -> Result<Value> {
        let v = self
            .http
            .get(format!("{}/_sandbox{path}", self.sandbox.url()))
            .send()
            .await?
            .json()
            .await?;
        Ok(v)
    }

    /// The channel's top-level messages once there are at least `n` (or after 10 s).
    async fn messages(&self, channel: &str, n: usize) -> Result<Vec<Value>> {
        let v = self
            .control(&format!(
                "/channels/{channel}/messages?wait_for={n}&timeout_ms=10000"
            ))
            .await?;
        Ok(v["messages"].as_array().cloned().unwrap_or_default())
    }

    /// Every message of the channel: top level, then each thread's replies.
    async fn everything(&self, channel: &str) -> Result<Vec<Value>> {
        let top = self.messages(channel, 0).await?;
        let mut all = Vec::with_capacity(top.len());
        for m in &top {
            if m["reply_count"].as_u64().unwrap_or(0) > 0
                && let Some(ts) = m["ts"].as_str()
            {
                let thread = self
                    .control(&format!("/channels/{channel}/threads/{ts}"))
                    .await?;
                if let Some(replies) = thread["messages"].as_array() {
                    all.extend(replies.iter().skip(1).cloned());
                }
            }
        }
        all.extend(top);
        Ok(all)
    }
}

// ---------------------------------------------------------------------------------------------
// The contenders' processes.

struct Process {
    child: Child,
    url: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(http: &reqwest::Client, url: &str, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("{what} did not become ready at {url}")
}

/// A Switchyard with the alerts app on SQLite in `dir`, and an API token for it.
struct Switchyard {
    process: Process,
    token: String,
    config: PathBuf,
    binary: PathBuf,
}

fn switchyard_config(world: &World, dir: &Path, port: u16, run: &str) -> String {
    let sb = &world.sandbox;
    let mut text = format!(
        "[slack]\nbot_token = \"{}\"\nsigning_secret = \"{}\"\napi_url = \"{}\"\n[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{}\"\n\n[apps.alerts]\nenabled = true\ndefault_channel = \"C0INTAKE\"\n",
        sb.bot_token(),
        sb.signing_secret(),
        sb.api_url(),
        dir.join("bench.db").display()
    );
    let mut rule = |name: &str, value: &str, channel: &str| {
        text.push_str(&format!(
            "\n[[apps.alerts.rules]]\nname = \"{name}\"\ncondition = \"labels.bench == '{value}'\"\nchannels = [\"{channel}\"]\n"
        ));
    };
    rule("intake", "intake", "C0INTAKE");
    rule("storm", "storm", &format!("C0STORM{run}"));
    rule("other", "other", &format!("C0OTHER{run}"));
    for i in 0..LATENCY_CHANNELS {
        let channel = latency_channel(i);
        rule(&channel, &channel, &channel);
    }
    text
}

impl Switchyard {
    async fn start(args: &Args, world: &World, dir: &Path, run: &str) -> Result<Self> {
        let port = free_port();
        let config = dir.join("switchyard.toml");
        private::write_private(&config, switchyard_config(world, dir, port, run))?;
        let out = Command::new(&args.switchyard)
            .args([
                "token",
                "create",
                "--name",
                "bench",
                "--scope",
                "alerts:write",
            ])
            .arg("--config")
            .arg(&config)
            .output()
            .with_context(|| format!("running {}", args.switchyard.display()))?;
        if !out.status.success() {
            bail!(
                "switchyard token create: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let token = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("sy_"))
            .context("a token in `switchyard token create`'s output")?
            .to_string();
        let mut me = Self {
            process: Self::spawn(&args.switchyard, &config, port)?,
            token,
            config,
            binary: args.switchyard.clone(),
        };
        me.ready(&world.http).await?;
        Ok(me)
    }

    fn spawn(binary: &Path, config: &Path, port: u16) -> Result<Process> {
        let child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting switchyard serve")?;
        Ok(Process {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    async fn ready(&mut self, http: &reqwest::Client) -> Result<()> {
        wait_ready(http, &format!("{}/healthz", self.process.url), "switchyard").await
    }

    /// SIGKILL, then a new process on the same config and database; returns how long the
    /// restart took until it answered.
    async fn kill_and_restart(&mut self, http: &reqwest::Client) -> Result<Duration> {
        self.process.child.kill()?;
        self.process.child.wait()?;
        let port: u16 = self.process.url.rsplit(':').next().unwrap().parse()?;
        let started = Instant::now();
        self.process = Self::spawn(&self.binary, &self.config, port)?;
        self.ready(http).await?;
        Ok(started.elapsed())
    }
}

fn our_alert(title: &str, bench: &str) -> Value {
    json!({
        "title": title,
        "severity": "high",
        "source": "bench",
        "description": "an alert from the bench",
        "labels": {"bench": bench, "instance": "host-1"},
        "dedup_key": title,
    })
}

struct Alertmanager {
    process: Process,
}

impl Alertmanager {
    /// Every alert a group of its own, sent at once (`group_wait: 0`); a route per bench
    /// channel to a Slack receiver posting to that channel's incoming webhook. Clustering off:
    /// a lone Alertmanager would otherwise wait for its gossip to settle before notifying.
    async fn start(args: &Args, world: &World, dir: &Path, run: &str) -> Result<Self> {
        let mut routes = String::new();
        let mut receivers = String::from("  - name: nowhere\n");
        let mut route = |bench: &str, channel: &str| {
            let url = &world.webhooks[channel];
            routes.push_str(&format!(
                "    - matchers: ['bench=\"{bench}\"']\n      receiver: {channel}\n"
            ));
            receivers.push_str(&format!(
                "  - name: {channel}\n    slack_configs:\n      - api_url: \"{url}\"\n        title: 'Alert'\n        text: '{{{{ range .Alerts }}}}{{{{ .Labels.alertname }}}} {{{{ end }}}}'\n"
            ));
        };
        route("storm", &format!("C0STORM{run}"));
        route("other", &format!("C0OTHER{run}"));
        for i in 0..LATENCY_CHANNELS {
            let channel = latency_channel(i);
            route(&channel, &channel);
        }
        let config = format!(
            "route:\n  receiver: nowhere\n  group_by: ['...']\n  group_wait: 0s\n  group_interval: 5m\n  repeat_interval: 4h\n  routes:\n{routes}receivers:\n{receivers}"
        );
        let file = dir.join("alertmanager.yml");
        std::fs::write(&file, config)?;
        let port = free_port();
        let child = Command::new(&args.alertmanager)
            .arg(format!("--config.file={}", file.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("alertmanager.log"))?)
            .spawn()
            .with_context(|| format!("starting {}", args.alertmanager.display()))?;
        let process = Process {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        if let Err(e) = wait_ready(
            &world.http,
            &format!("{}/-/ready", process.url),
            "alertmanager",
        )
        .await
        {
            let log = std::fs::read_to_string(dir.join("alertmanager.log")).unwrap_or_default();
            bail!("{e}; its log:\n{log}");
        }
        Ok(Self { process })
    }

    /// A counter from its /metrics, summed over the lines that contain `filter`.
    async fn metric(&self, http: &reqwest::Client, name: &str, filter: &str) -> Result<f64> {
        let text = http
            .get(format!("{}/metrics", self.process.url))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }
}

enum Contender {
    Switchyard(Switchyard),
    Alertmanager(Alertmanager),
}

impl Contender {
    async fn start(name: &str, args: &Args, world: &World, dir: &Path, run: &str) -> Result<Self> {
        Ok(match name {
            "switchyard" => Self::Switchyard(Switchyard::start(args, world, dir, run).await?),
            _ => Self::Alertmanager(Alertmanager::start(args, world, dir, run).await?),
        })
    }

    fn target(&self) -> Target {
        match self {
            Self::Switchyard(s) => Target::Switchyard {
                url: s.process.url.clone(),
                token: s.token.clone(),
            },
            Self::Alertmanager(a) => Target::Alertmanager {
                url: a.process.url.clone(),
            },
        }
    }
}

/// Where alerts go: Switchyard's intake (which keeps its address across a restart) or
/// Alertmanager's API.
#[derive(Clone)]
enum Target {
    Switchyard { url: String, token: String },
    Alertmanager { url: String },
}

/// The time every bench alert started: a re-sent alert is the same episode, as Alertmanager
/// re-sends it.
const STARTS_AT: &str = "2026-12-01T00:00:00Z";

impl Target {
    /// Fires alerts titled `titles` with the bench label `bench`: through our JSON
    /// (`/api/v1/alerts`) or, with `as_alertmanager`, Alertmanager's webhook payload
    /// (`/api/v1/alertmanager`) to Switchyard; through `/api/v2/alerts` to Alertmanager.
    /// Switchyard's per-alert results come back.
    async fn fire(
        &self,
        http: &reqwest::Client,
        titles: &[String],
        bench: &str,
        as_alertmanager: bool,
    ) -> Result<Vec<String>> {
        let (request, is_switchyard) = match self {
            Self::Switchyard { url, token } if as_alertmanager => {
                let alerts: Vec<Value> = titles
                    .iter()
                    .map(|t| {
                        json!({
                            "status": "firing",
                            "labels": {"alertname": t, "bench": bench, "severity": "warning"},
                            "annotations": {"summary": t},
                            "startsAt": STARTS_AT,
                            "endsAt": "0001-01-01T00:00:00Z",
                            "fingerprint": t,
                        })
                    })
                    .collect();
                let body = json!({
                    "version": "4", "groupKey": format!("{{}}:{{bench=\"{bench}\"}}"),
                    "status": "firing", "receiver": "bench", "groupLabels": {},
                    "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://bench",
                    "alerts": alerts,
                });
                (
                    http.post(format!("{url}/api/v1/alertmanager"))
                        .bearer_auth(token)
                        .json(&body),
                    true,
                )
            }
            Self::Switchyard { url, token } => {
                let alerts: Vec<Value> = titles.iter().map(|t| our_alert(t, bench)).collect();
                (
                    http.post(format!("{url}/api/v1/alerts"))
                        .bearer_auth(token)
                        .json(&json!({ "alerts": alerts })),
                    true,
                )
            }
            Self::Alertmanager { url } => {
                let alerts: Vec<Value> = titles
                    .iter()
                    .map(|t| {
                        json!({
                            "labels": {"alertname": t, "bench": bench, "severity": "warning"},
                            "annotations": {"summary": t},
                            "startsAt": STARTS_AT,
                        })
                    })
                    .collect();
                (
                    http.post(format!("{url}/api/v2/alerts")).json(&alerts),
                    false,
                )
            }
        };
        let r = request.send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            bail!("HTTP {status}: {text}");
        }
        if !is_switchyard {
            return Ok(Vec::new());
        }
        let body: Value = serde_json::from_str(&text)?;
        Ok(body["alerts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| r["result"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default())
    }
}

fn label(name: &str) -> &'static str {
    match name {
        "switchyard" => "Switchyard",
        _ => "Alertmanager 0.25 (group_wait 0)",
    }
}

// ---------------------------------------------------------------------------------------------
// Latency.

/// Milliseconds from the POST to the message's `ts`, one sample per alert.
async fn latency(name: &str, args: &Args, world: &World) -> Result<Vec<f64>> {
    let dir = tempfile::tempdir()?;
    let contender = Contender::start(name, args, world, dir.path(), "SY").await?;
    let target = contender.target();
    let mut seen: Vec<usize> = Vec::with_capacity(LATENCY_CHANNELS);
    for i in 0..LATENCY_CHANNELS {
        seen.push(world.messages(&latency_channel(i), 0).await?.len());
    }
    let mut last_use = vec![Instant::now() - Duration::from_secs(2); LATENCY_CHANNELS];
    let mut samples = Vec::with_capacity(args.samples());
    for n in 0..args.samples() {
        let i = n % LATENCY_CHANNELS;
        let channel = latency_channel(i);
        // At most one post a second per channel: Slack's limit and Switchyard's pacing stay out
        // of the figure.
        let since = last_use[i].elapsed();
        if since < Duration::from_millis(1100) {
            tokio::time::sleep(Duration::from_millis(1100) - since).await;
        }
        last_use[i] = Instant::now();
        let title = format!("latency-{name}-{n:05}");
        let sent = now_micros();
        target
            .fire(&world.http, std::slice::from_ref(&title), &channel, false)
            .await?;
        let messages = world.messages(&channel, seen[i] + 1).await?;
        let Some(m) = messages.get(seen[i]) else {
            bail!("{name}: no message in {channel} for {title} within 10 s");
        };
        seen[i] = messages.len();
        let ts = ts_micros(m["ts"].as_str().unwrap_or("")).context("message ts")?;
        samples.push((ts - sent) as f64 / 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

// ---------------------------------------------------------------------------------------------
// Intake.

struct Intake {
    alerts: usize,
    per_s: f64,
    errors: usize,
}

async fn intake(args: &Args, world: &World) -> Result<Intake> {
    let dir = tempfile::tempdir()?;
    let contender = Contender::start("switchyard", args, world, dir.path(), "SY").await?;
    let sy = contender.target();
    let total = args.intake_alerts();
    let titles: Vec<String> = (0..total).map(|n| format!("intake-{n:06}")).collect();
    let batches: Vec<Vec<String>> = titles.chunks(args.batch).map(<[String]>::to_vec).collect();
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.clients {
        let (sy, batches, next, errors, http) = (
            sy.clone(),
            batches.clone(),
            next.clone(),
            errors.clone(),
            world.http.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(i) else { break };
                match sy.fire(&http, batch, "intake", false).await {
                    Ok(results) if results.iter().all(|r| r == "posted") => {}
                    _ => {
                        errors.fetch_add(batch.len(), Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let took = started.elapsed().as_secs_f64();
    let errors = errors.load(Ordering::Relaxed);
    Ok(Intake {
        alerts: total,
        per_s: (total - errors) as f64 / took,
        errors,
    })
}

// ---------------------------------------------------------------------------------------------
// Storms.

#[derive(Default)]
struct Storm {
    accepted: usize,
    post_errors: usize,
    accept_ms: f64,
    visible: usize,
    /// Milliseconds from the first POST until every alert was visible, if it came to that.
    all_visible_ms: Option<f64>,
    waited_s: f64,
    posts: usize,
    refused_429: usize,
    /// Posts refused with 429 that never got through (Alertmanager does not retry them).
    dropped_429: Option<usize>,
    max_posts_per_s: usize,
    other_latency_ms: Option<f64>,
    duplicates: usize,
    // The kill test.
    killed_after: Option<usize>,
    restart_ms: f64,
    lost_in_store: Option<usize>,
}

/// The storm's alert ids found anywhere in the channel's messages.
fn visible_ids(messages: &[Value], prefix: &str) -> HashSet<u32> {
    let mut ids = HashSet::new();
    for m in messages {
        let text = m.to_string();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if digits.len() == 5
                && let Ok(n) = digits.parse()
            {
                ids.insert(n);
            }
        }
    }
    ids
}

/// The most posts (messages and thread replies) the channel took within any one second.
fn max_per_second(messages: &[Value]) -> usize {
    let mut ts: Vec<i64> = messages
        .iter()
        .filter_map(|m| ts_micros(m["ts"].as_str()?))
        .collect();
    ts.sort_unstable();
    let (mut best, mut start) = (0, 0);
    for end in 0..ts.len() {
        while ts[end] - ts[start] >= 1_000_000 {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// Posts whose content is the same as an earlier one in the same place (channel or thread):
/// the same Slack call made twice.
fn duplicate_posts(messages: &[Value]) -> usize {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for m in messages {
        let key = format!(
            "{}|{}|{}|{}",
            m["thread_ts"].as_str().unwrap_or(""),
            m["text"],
            m["blocks"],
            m["attachments"]
        );
        *seen.entry(key).or_default() += 1;
    }
    seen.values().map(|n| n - 1).sum()
}

/// 429s the sandbox answered to `chat.postMessage` for `channel`.
async fn refused_posts(world: &World, channel: &str) -> Result<usize> {
    let v = world.control("/api_calls?method=chat.postMessage").await?;
    Ok(v["calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .filter(|c| c["args"]["channel"] == channel && c["status"] == 429)
                .count()
        })
        .unwrap_or(0))
}

async fn storm(name: &str, args: &Args, world: &World, kill: bool) -> Result<Storm> {
    let run = if kill {
        "KILL"
    } else if name == "switchyard" {
        "SY"
    } else {
        "AM"
    };
    let (storm_channel, other_channel) = (format!("C0STORM{run}"), format!("C0OTHER{run}"));
    let dir = tempfile::tempdir()?;
    let mut contender = Contender::start(name, args, world, dir.path(), run).await?;
    let target = contender.target();
    let total = args.storm();
    let prefix = format!("storm{run}-");
    let titles: Vec<String> = (0..total).map(|n| format!("{prefix}{n:05}")).collect();
    let batches: Arc<Vec<Vec<String>>> =
        Arc::new(titles.chunks(args.batch).map(<[String]>::to_vec).collect());
    let mut out = Storm::default();
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.clients {
        let (target, batches, next, accepted, errors, http) = (
            target.clone(),
            batches.clone(),
            next.clone(),
            accepted.clone(),
            errors.clone(),
            world.http.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(i) else { break };
                // Until it is taken: after a kill, what got no answer is sent again (a
                // restarted Switchyard keeps its address), as Alertmanager's webhook does.
                for attempt in 0.. {
                    match target.fire(&http, batch, "storm", true).await {
                        Ok(_) => {
                            accepted.fetch_add(batch.len(), Ordering::Relaxed);
                            break;
                        }
                        Err(_) if kill && attempt < 600 => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(_) => {
                            errors.fetch_add(batch.len(), Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
        }));
    }
    // A second into the storm, one alert for another channel.
    let other_seen = world.messages(&other_channel, 0).await?.len();
    let mut other_sent = None;
    let mut killed = false;
    while workers.iter().any(|w| !w.is_finished()) || other_sent.is_none() {
        if other_sent.is_none() && started.elapsed() >= Duration::from_secs(1) {
            let sent = now_micros();
            target
                .fire(&world.http, &[format!("other{run}-00000")], "other", true)
                .await?;
            other_sent = Some(sent);
        }
        if kill && !killed && accepted.load(Ordering::Relaxed) >= total / 2 {
            if let Contender::Switchyard(s) = &mut contender {
                out.killed_after = Some(accepted.load(Ordering::Relaxed));
                out.restart_ms = s.kill_and_restart(&world.http).await?.as_secs_f64() * 1000.0;
            }
            killed = true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for w in workers {
        w.await?;
    }
    out.accept_ms = started.elapsed().as_secs_f64() * 1000.0;
    out.accepted = accepted.load(Ordering::Relaxed);
    out.post_errors = errors.load(Ordering::Relaxed);
    if let Some(sent) = other_sent {
        let m = world.messages(&other_channel, other_seen + 1).await?;
        out.other_latency_ms = m
            .get(other_seen)
            .and_then(|m| ts_micros(m["ts"].as_str()?))
            .map(|ts| (ts - sent) as f64 / 1000.0);
    }
    // Until every alert is visible, or nothing has changed for a while (Alertmanager is done
    // sending), or the wait is over.
    let mut last_change = Instant::now();
    let mut last_count = usize::MAX;
    let mut messages;
    loop {
        messages = world.everything(&storm_channel).await?;
        let visible = visible_ids(&messages, &prefix).len();
        if visible != last_count || messages.len() != out.posts {
            last_change = Instant::now();
            last_count = visible;
            out.posts = messages.len();
        }
        out.visible = visible;
        if visible >= total {
            out.all_visible_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
            break;
        }
        let quiet_for = if name == "alertmanager" { 5 } else { 15 };
        if started.elapsed() > args.storm_wait() || last_change.elapsed().as_secs() >= quiet_for {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    out.waited_s = started.elapsed().as_secs_f64();
    out.max_posts_per_s = max_per_second(&messages);
    out.duplicates = duplicate_posts(&messages);
    match &contender {
        Contender::Switchyard(_) => {
            out.refused_429 = refused_posts(world, &storm_channel).await?;
            if kill {
                // Every alert once more: `posted` means it was not in the store.
                let mut lost = 0;
                for batch in batches.iter() {
                    lost += target
                        .fire(&world.http, batch, "storm", true)
                        .await?
                        .iter()
                        .filter(|r| *r == "posted")
                        .count();
                }
                out.lost_in_store = Some(lost);
            }
        }
        Contender::Alertmanager(a) => {
            let failed = a
                .metric(
                    &world.http,
                    "alertmanager_notifications_failed_total",
                    "integration=\"slack\"",
                )
                .await?;
            out.refused_429 = failed as usize;
            out.dropped_429 = Some(failed as usize);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------

fn ms(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.has("alertmanager") && !args.alertmanager.is_file() {
        bail!(
            "no Alertmanager at {} (bench/alertmanager/fetch gets it; or --contenders switchyard)",
            args.alertmanager.display()
        );
    }
    let manifest = Manifest::from_value(json!({
        "display_information": {"name": "Bench"},
        "oauth_config": {"scopes": {"bot": ["chat:write", "chat:write.public"]}},
        "settings": {"event_subscriptions": {"bot_events": []}, "socket_mode_enabled": false},
    }))?;
    // Slack's limits on (the default): quiet channels for latency, one hot one for the storm.
    let sandbox = Sandbox::start(SandboxConfig {
        seed: seed()?,
        manifest: Some(manifest),
        ..Default::default()
    })
    .await?;
    let webhooks = sandbox.webhook_urls().into_iter().collect();
    let world = World {
        sandbox,
        http: reqwest::Client::new(),
        webhooks,
    };
    let contenders: Vec<String> = ["switchyard", "alertmanager"]
        .into_iter()
        .filter(|c| args.has(c))
        .map(str::to_string)
        .collect();

    let mut latencies = BTreeMap::new();
    if args.runs("latency") {
        for name in &contenders {
            eprintln!("latency: {name}…");
            latencies.insert(name.clone(), latency(name, &args, &world).await?);
        }
    }
    let intake_figures = if args.runs("intake") && args.has("switchyard") {
        eprintln!("intake: switchyard…");
        Some(intake(&args, &world).await?)
    } else {
        None
    };
    let mut storms = Vec::new();
    if args.runs("storm") {
        for name in &contenders {
            eprintln!("storm: {name}…");
            storms.push((
                label(name).to_string(),
                storm(name, &args, &world, false).await?,
            ));
        }
    }
    if args.runs("kill") && args.has("switchyard") {
        eprintln!("storm with kill -9: switchyard…");
        storms.push((
            "Switchyard, kill -9 mid-storm".to_string(),
            storm("switchyard", &args, &world, true).await?,
        ));
    }

    println!("\nSandbox enforcing Slack's limits (1 post/s per channel, burst 3)\n");
    if !latencies.is_empty() {
        println!(
            "Alert received → first Slack post, quiet channels ({} samples each)\n",
            args.samples()
        );
        println!("| contender | p50 ms | p90 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|");
        for (name, s) in &latencies {
            println!(
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                label(name),
                percentile(s, 0.5),
                percentile(s, 0.9),
                percentile(s, 0.99),
                s.last().copied().unwrap_or(f64::NAN)
            );
        }
        println!();
    }
    if let Some(i) = &intake_figures {
        println!(
            "Intake (Switchyard, SQLite): {} alerts in POSTs of {} from {} clients: {:.0} alerts/s accepted durably, {} refused\n",
            i.alerts, args.batch, args.clients, i.per_s, i.errors
        );
    }
    if !storms.is_empty() {
        println!(
            "Storm: {} alerts at once for one channel (POSTs of {} from {} clients), waiting at most {} s\n",
            args.storm(),
            args.batch,
            args.clients,
            args.storm_wait().as_secs()
        );
        println!(
            "| run | accepted | accepted in ms | visible | all visible after ms | lost | posts | 429s | dropped on 429 | max posts in 1 s | other channel ms | duplicate posts | killed after | restart ms | lost in store |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (name, s) in &storms {
            let lost = if s.all_visible_ms.is_some() {
                "0".to_string()
            } else if s.dropped_429.is_some() {
                // Alertmanager: finished sending; what is not there is not coming.
                (args.storm() - s.visible).to_string()
            } else {
                format!(
                    "not settled after {:.0} s ({} not yet visible)",
                    s.waited_s,
                    args.storm() - s.visible
                )
            };
            println!(
                "| {name} | {} | {:.0} | {} | {} | {lost} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.accepted,
                s.accept_ms,
                s.visible,
                ms(s.all_visible_ms),
                s.posts,
                s.refused_429,
                s.dropped_429
                    .map_or("0 (retried)".into(), |d| d.to_string()),
                s.max_posts_per_s,
                ms(s.other_latency_ms),
                s.duplicates,
                s.killed_after.map_or("–".into(), |k| k.to_string()),
                if s.killed_after.is_some() {
                    format!("{:.0}", s.restart_ms)
                } else {
                    "–".into()
                },
                s.lost_in_store.map_or("–".into(), |l| l.to_string()),
            );
            if s.post_errors > 0 {
                println!("  ({name}: {} alerts refused by the intake)", s.post_errors);
            }
        }
    }
    Ok(())
}
