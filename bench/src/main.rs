//! Switchyard beside Bolt for Python and Bolt for JavaScript, in one run, on one machine.
//!
//! Every contender runs the same app — reply `pong` in the thread of an `app_mention` — over the
//! HTTP Events API against the sandbox (rate limits off). For each, in a fresh process:
//! - start: process spawn until it answers HTTP; idle RSS a second later;
//! - acks: signed `app_mention` deliveries from `--concurrency` clients for `--seconds`: acks/s
//!   and ack latency percentiles;
//! - end to end: `--events` mentions spread over `--channels` channels (Slack paces posts per
//!   channel, so one channel would only measure the pacing): time until every reply was posted.
//!
//! Machines are noisy: compare the ratios within one run, not figures across runs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use switchyard_sandbox::{DeliverySettings, Manifest, RateLimitSettings, Sandbox, SandboxConfig};

#[derive(Parser)]
struct Args {
    /// How long the ack test runs per contender.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 20)]
    concurrency: usize,
    /// Mentions in the end-to-end test.
    #[arg(long, default_value_t = 1000)]
    events: usize,
    /// Channels the mentions are spread over: one each by default, since Switchyard paces posts
    /// to about one a second per channel, as Slack requires, and Bolt does not.
    #[arg(long, default_value_t = 1000)]
    channels: usize,
    /// The switchyard binary (build it with --release).
    #[arg(long, default_value = "target/release/switchyard")]
    switchyard: PathBuf,
    /// Python with slack_bolt and aiohttp.
    #[arg(long, default_value = ".venv-bench/bin/python")]
    python: PathBuf,
    #[arg(long, default_value = "node")]
    node: PathBuf,
    /// Contenders to run (switchyard, switchyard-acks-only — handling held, the ack path on its
    /// own —, bolt-python, bolt-js).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "switchyard,switchyard-acks-only,bolt-js,bolt-python"
    )]
    only: Vec<String>,
}

struct World {
    sandbox: Sandbox,
    http: reqwest::Client,
    alice: String,
    /// (channel id, ts of a message to mention in) per bench channel.
    threads: Vec<(String, String)>,
}

#[derive(Default, Debug)]
struct Figures {
    startup_ms: f64,
    idle_rss_mb: f64,
    acks_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    ack_errors: u64,
    e2e_per_s: f64,
    e2e_missing: usize,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Contender {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Contender {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(name: &str, args: &Args, world: &World) -> Result<(Contender, f64)> {
    let port = free_port();
    let dir = tempfile::tempdir()?;
    let sb = &world.sandbox;
    let mut command = match name {
        "switchyard" | "switchyard-acks-only" => {
            let config = dir.path().join("switchyard.toml");
            std::fs::write(
                &config,
                format!(
                    "[slack]\nbot_token = \"{}\"\nsigning_secret = \"{}\"\napi_url = \"{}\"\n[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{}\"\n",
                    sb.bot_token(),
                    sb.signing_secret(),
                    sb.api_url(),
                    dir.path().join("bench.db").display()
                ),
            )?;
            let mut c = Command::new(&args.switchyard);
            c.arg("serve")
                .arg("--config")
                .arg(config)
                .env("RUST_LOG", "error");
            if name == "switchyard-acks-only" {
                // Receive and commit, never handle: the ack path on its own.
                c.env("SWITCHYARD_TEST_HOLD_DISPATCH", "1");
            }
            c
        }
        "bolt-python" => {
            let mut c = Command::new(&args.python);
            c.arg("bench/peers/bolt_python.py");
            c.arg(port.to_string())
                .arg(sb.api_url())
                .arg(sb.bot_token())
                .arg(sb.signing_secret());
            c
        }
        "bolt-js" => {
            let mut c = Command::new(&args.node);
            c.arg("bench/peers/bolt_js.js");
            c.arg(port.to_string())
                .arg(sb.api_url())
                .arg(sb.bot_token())
                .arg(sb.signing_secret());
            c
        }
        other => bail!("unknown contender {other}"),
    };
    let started = Instant::now();
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let url = format!("http://127.0.0.1:{port}");
    // Ready: it answers HTTP on /slack/events (any status).
    for _ in 0..2000 {
        if world
            .http
            .post(format!("{url}/slack/events"))
            .send()
            .await
            .is_ok()
        {
            let startup = started.elapsed().as_secs_f64() * 1000.0;
            return Ok((
                Contender {
                    child,
                    url,
                    _dir: dir,
                },
                startup,
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("{name} did not start")
}

fn mention(world: &World, n: u64) -> String {
    let (channel, ts) = &world.threads[n as usize % world.threads.len()];
    let sb = &world.sandbox;
    json!({
        "token": "bench", "team_id": sb.team_id(), "api_app_id": sb.app_id(), "type": "event_callback",
        "event_id": format!("EvBENCH{n:012}"), "event_time": now(),
        "authorizations": [{"team_id": sb.team_id(), "user_id": sb.bot_user_id(), "is_bot": true, "is_enterprise_install": false}],
        "event": {"type": "app_mention", "user": world.alice, "text": format!("<@{}> ping", sb.bot_user_id()),
                  "ts": ts, "channel": channel, "event_ts": ts, "channel_type": "channel"},
    })
    .to_string()
}

async fn deliver(world: &World, url: &str, body: String) -> Result<Duration> {
    let ts = now();
    let signature =
        switchyard_sandbox::signing::sign(world.sandbox.signing_secret(), ts, body.as_bytes());
    let sent = Instant::now();
    let r = world
        .http
        .post(format!("{url}/slack/events"))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", signature)
        .body(body)
        .send()
        .await?;
    let took = sent.elapsed();
    if !r.status().is_success() {
        bail!("HTTP {}", r.status());
    }
    Ok(took)
}

async fn ack_test(world: Arc<World>, url: String, args: &Args, base: u64) -> (f64, f64, f64, u64) {
    let counter = Arc::new(AtomicU64::new(base));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (world, url, counter, errors) =
            (world.clone(), url.clone(), counter.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                match deliver(&world, &url, mention(&world, n)).await {
                    Ok(d) => latencies.push(d),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap_or_default());
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    (
        all.len() as f64 / args.seconds as f64,
        pct(0.5),
        pct(0.99),
        errors.load(Ordering::Relaxed),
    )
}

/// Replies Slack (the sandbox) accepted so far, from its cheap counters.
async fn posted(world: &World) -> Result<usize> {
    let v: Value = world
        .http
        .get(format!("{}/_sandbox/stats", world.sandbox.url()))
        .send()
        .await?
        .json()
        .await?;
    Ok(v["api_calls"]["chat.postMessage"]["ok"]
        .as_u64()
        .unwrap_or(0) as usize)
}

async fn e2e_test(world: Arc<World>, url: String, args: &Args, base: u64) -> Result<(f64, usize)> {
    let before = posted(&world).await?;
    let started = Instant::now();
    let counter = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (world, url, counter) = (world.clone(), url.clone(), counter.clone());
        let total = args.events as u64;
        workers.push(tokio::spawn(async move {
            loop {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let _ = deliver(&world, &url, mention(&world, base + n)).await;
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let delivered = started.elapsed();
    let replied_by_then = posted(&world).await? - before;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = posted(&world).await? - before;
        if done >= args.events || Instant::now() > deadline {
            // Where the time went: delivering (acks) or replying after.
            eprintln!(
                "  end to end: delivered in {:.0} ms with {replied_by_then} replies posted by then; all replies by {:.0} ms",
                delivered.as_secs_f64() * 1000.0,
                started.elapsed().as_secs_f64() * 1000.0
            );
            return Ok((
                done as f64 / started.elapsed().as_secs_f64(),
                args.events.saturating_sub(done),
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn measure(name: &str, args: &Args, world: &Arc<World>, base: u64) -> Result<Figures> {
    let mut f = Figures::default();
    let (contender, startup) = start(name, args, world).await?;
    f.startup_ms = startup;
    tokio::time::sleep(Duration::from_secs(1)).await;
    f.idle_rss_mb = rss_mb(contender.child.id());
    (f.acks_per_s, f.p50_ms, f.p99_ms, f.ack_errors) =
        ack_test(world.clone(), contender.url.clone(), args, base).await;
    drop(contender);
    if name == "switchyard-acks-only" {
        // Nothing is handled: there is no end to end to measure.
        return Ok(f);
    }
    // A fresh process for end to end, so the ack test's backlog does not count.
    let (contender, _) = start(name, args, world).await?;
    (f.e2e_per_s, f.e2e_missing) = e2e_test(
        world.clone(),
        contender.url.clone(),
        args,
        base + 10_000_000,
    )
    .await?;
    drop(contender);
    Ok(f)
}

async fn world(args: &Args) -> Result<World> {
    let manifest = Manifest::from_value(json!({
        "display_information": {"name": "Bench"},
        "oauth_config": {"scopes": {"bot": ["app_mentions:read", "chat:write", "chat:write.public"]}},
        "settings": {"event_subscriptions": {"bot_events": []}, "socket_mode_enabled": false},
    }))?;
    let sandbox = Sandbox::start(SandboxConfig {
        manifest: Some(manifest),
        rate_limits: RateLimitSettings {
            enabled: false,
            ..Default::default()
        },
        delivery: DeliverySettings::default(),
        ..Default::default()
    })
    .await?;
    let http = reqwest::Client::new();
    let alice_token = sandbox.user_token("alice").context("alice")?;
    let mut threads = Vec::new();
    let mut alice = String::new();
    for i in 0..args.channels {
        let created: Value = http
            .post(format!("{}conversations.create", sandbox.api_url()))
            .bearer_auth(&alice_token)
            .form(&[("name", format!("bench-{i}"))])
            .send()
            .await?
            .json()
            .await?;
        let channel = created["channel"]["id"]
            .as_str()
            .context("channel created")?
            .to_string();
        alice = created["channel"]["creator"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let msg: Value = http
            .post(format!("{}/_sandbox/messages", sandbox.url()))
            .json(&json!({"user": "alice", "channel": channel, "text": "a thread to answer in"}))
            .send()
            .await?
            .json()
            .await?;
        threads.push((
            channel,
            msg["ts"].as_str().context("seed message")?.to_string(),
        ));
    }
    Ok(World {
        sandbox,
        http,
        alice,
        threads,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let world = Arc::new(world(&args).await?);
    let mut results = Vec::new();
    for (i, name) in args.only.iter().enumerate() {
        eprintln!("measuring {name}…");
        let figures = measure(name, &args, &world, (i as u64 + 1) * 100_000_000).await?;
        eprintln!("  {figures:?}");
        results.push((name.clone(), figures));
    }
    let reference = results
        .iter()
        .find(|(n, _)| n == "bolt-js")
        .map(|(_, f)| (f.acks_per_s, f.e2e_per_s));
    println!(
        "\n{} s of acks at concurrency {}, {} mentions end to end over {} channels; sandbox rate limits off\n",
        args.seconds, args.concurrency, args.events, args.channels
    );
    println!(
        "| contender | acks/s | ack p50 ms | ack p99 ms | errors | e2e replies/s | missing | idle RSS MB | start ms | acks ÷ Bolt JS | e2e ÷ Bolt JS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (name, f) in &results {
        let acks_only = name == "switchyard-acks-only";
        let ratio = |ours: f64, theirs: Option<f64>| match theirs {
            Some(t) if t > 0.0 => format!("{:.1}×", ours / t),
            _ => "–".into(),
        };
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {:.1} | {:.0} | {} | {} |",
            f.acks_per_s,
            f.p50_ms,
            f.p99_ms,
            f.ack_errors,
            if acks_only {
                "–".into()
            } else {
                format!("{:.0}", f.e2e_per_s)
            },
            if acks_only {
                "–".into()
            } else {
                f.e2e_missing.to_string()
            },
            f.idle_rss_mb,
            f.startup_ms,
            ratio(f.acks_per_s, reference.map(|r| r.0)),
            if acks_only {
                "–".into()
            } else {
                ratio(f.e2e_per_s, reference.map(|r| r.1))
            },
        );
    }
    Ok(())
}
