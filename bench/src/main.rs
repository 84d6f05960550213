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

// The sandbox (Slack's stand-in) runs in this process and shares the machine with the
// contender: with glibc's malloc, its frees of each call's JSON were about a quarter of the
// process's CPU, taken from the contender.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod private;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::Sha256;
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
    /// own —, bolt-python, bolt-js, ceiling — a bare axum handler that only verifies and
    /// parses, the most any receiver can ack here).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "switchyard,switchyard-acks-only,bolt-js,bolt-python,ceiling"
    )]
    only: Vec<String>,
    /// Rounds of the whole comparison: each round measures every contender once, and the
    /// table ends with each contender's median ratios over the rounds. One run on these
    /// noisy machines moved Bolt JS's end to end from 591 to 909 replies/s.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also print SQLite's writer turns during the end-to-end test (as after the table for the
    /// ack test; the process's start included).
    #[arg(long)]
    e2e_writer_turns: bool,
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
    replies_during_acks_per_s: f64,
    contender_cpu_us_per_ack: f64,
    bench_cpu_us_per_ack: f64,
    e2e_per_s: f64,
    e2e_missing: usize,
    /// Switchyard's SQLite writer during the ack test, a line per kind of turn (see
    /// [`writer_turns`]).
    writer_turns: Vec<String>,
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
    addr: SocketAddr,
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
            private::write_private(
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
        "ceiling" => {
            // Beside this binary: `cargo build -p switchyard-bench` builds both.
            let mut c =
                Command::new(std::env::current_exe()?.with_file_name("switchyard-bench-ceiling"));
            c.arg(port.to_string()).arg(sb.signing_secret());
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
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    _dir: dir,
                },
                startup,
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bail!("{name} did not start")
}

/// Signed `app_mention` deliveries, made as cheaply as autocannon's pre-built requests: the body
/// is a template with only the event id spliced in (every delivery needs its own, or Switchyard
/// would drop it as a retry), the HMAC key is set up once, and the headers that never change are
/// built once. The generator shares the cores with the contender, so what it saves goes to the
/// contender (all of them alike).
struct Deliveries {
    /// Keyed once; cloned per delivery.
    mac: Hmac<Sha256>,
    /// `X-Slack-Request-Timestamp`, fixed for the whole test: tests are seconds long, well inside
    /// the 300 s window the receivers allow (a `--seconds` near 300 would get 401s).
    timestamp: HeaderValue,
    /// The body up to the event id's digits.
    head: String,
    /// The rest of the body, one per bench channel.
    tails: Vec<String>,
}

impl Deliveries {
    fn new(world: &World) -> Self {
        let sb = &world.sandbox;
        let ts = now();
        let head = format!(
            "{{\"token\":\"bench\",\"team_id\":\"{}\",\"api_app_id\":\"{}\",\"type\":\"event_callback\",\"event_id\":\"EvBENCH",
            sb.team_id(),
            sb.app_id()
        );
        let tails = world
            .threads
            .iter()
            .map(|(channel, thread_ts)| {
                format!(
                    "\",\"event_time\":{ts},\"authorizations\":[{{\"team_id\":\"{}\",\"user_id\":\"{}\",\"is_bot\":true,\"is_enterprise_install\":false}}],\"event\":{{\"type\":\"app_mention\",\"user\":\"{}\",\"text\":\"<@{}> ping\",\"ts\":\"{thread_ts}\",\"channel\":\"{channel}\",\"event_ts\":\"{thread_ts}\",\"channel_type\":\"channel\"}}}}",
                    sb.team_id(),
                    sb.bot_user_id(),
                    world.alice,
                    sb.bot_user_id(),
                )
            })
            .collect();
        let mac = Hmac::<Sha256>::new_from_slice(sb.signing_secret().as_bytes())
            .expect("HMAC takes keys of any size");
        Self {
            mac,
            timestamp: HeaderValue::from(ts),
            head,
            tails,
        }
    }

    /// Delivery `n`: its body and its `X-Slack-Signature`.
    fn make(&self, n: u64) -> (Bytes, HeaderValue) {
        let tail = &self.tails[n as usize % self.tails.len()];
        let mut body = String::with_capacity(self.head.len() + 16 + tail.len());
        body.push_str(&self.head);
        // Slack's event ids do not come in order, and an inbox whose dedupe keys did would
        // write one leaf of its key index per commit instead of one per delivery: sequential
        // ids made Switchyard's ack path about a tenth cheaper than it is against Slack. An
        // odd multiplier is a bijection on u64, so the ids stay distinct.
        let _ = write!(body, "{:016X}", n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        body.push_str(tail);
        let mut mac = self.mac.clone();
        mac.update(b"v0:");
        mac.update(self.timestamp.as_bytes());
        mac.update(b":");
        mac.update(body.as_bytes());
        let mut signature = [0u8; 3 + 64];
        signature[..3].copy_from_slice(b"v0=");
        hex::encode_to_slice(mac.finalize().into_bytes(), &mut signature[3..])
            .expect("64 hex digits fit");
        (
            Bytes::from(body),
            HeaderValue::from_bytes(&signature).expect("hex is a valid header value"),
        )
    }
}

type Connection = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive HTTP/1.1 connection, as autocannon keeps one per client: a bare hyper client,
/// no pool, no URL parsing per request.
async fn connect(addr: SocketAddr) -> Result<Connection> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Posts one delivery on `connection` (opened, or opened again after an error, on demand) and
/// returns how long its ack took.
async fn deliver(
    connection: &mut Option<Connection>,
    addr: SocketAddr,
    deliveries: &Deliveries,
    n: u64,
) -> Result<Duration> {
    let (body, signature) = deliveries.make(n);
    if connection.as_ref().is_none_or(|c| c.is_closed()) {
        *connection = Some(connect(addr).await?);
    }
    let sender = connection.as_mut().expect("connected above");
    let request = hyper::Request::post("/slack/events")
        .header(HOST, "127.0.0.1")
        .header(CONTENT_TYPE, "application/json")
        .header("x-slack-request-timestamp", deliveries.timestamp.clone())
        .header("x-slack-signature", signature)
        .body(Full::new(body))?;
    let sent = Instant::now();
    let answered = async {
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        anyhow::Ok(status)
    }
    .await;
    let took = sent.elapsed();
    match answered {
        Ok(status) if status.is_success() => Ok(took),
        Ok(status) => bail!("HTTP {status}"),
        Err(e) => {
            *connection = None;
            Err(e)
        }
    }
}

/// CPU seconds `pid` has used so far, all its threads (utime + stime in `/proc/PID/stat`).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line, in USER_HZ (100 on Linux).
    (ticks(11) + ticks(12)) / 100.0
}

/// What the ack test measured.
struct AckFigures {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// Replies the contender posted while the test ran, per second: whether handling kept up.
    replies_per_s: f64,
    /// CPU used per ack by the contender, and by this process (the load generator and the
    /// sandbox answering the contender's replies).
    contender_cpu_us: f64,
    bench_cpu_us: f64,
    /// How long it ran.
    seconds: f64,
}

async fn ack_test(
    world: Arc<World>,
    contender: &Contender,
    args: &Args,
    base: u64,
) -> Result<AckFigures> {
    let deliveries = Arc::new(Deliveries::new(&world));
    let counter = Arc::new(AtomicU64::new(base));
    let errors = Arc::new(AtomicU64::new(0));
    let posted_before = posted(&world).await?;
    let (contender_cpu, bench_cpu) = (
        cpu_seconds(contender.child.id()),
        cpu_seconds(std::process::id()),
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (deliveries, counter, errors, addr) = (
            deliveries.clone(),
            counter.clone(),
            errors.clone(),
            contender.addr,
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut connection = None;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                match deliver(&mut connection, addr, &deliveries, n).await {
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
    let elapsed = started.elapsed().as_secs_f64();
    let contender_cpu = cpu_seconds(contender.child.id()) - contender_cpu;
    let bench_cpu = cpu_seconds(std::process::id()) - bench_cpu;
    let replied = posted(&world).await? - posted_before;
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let per_ack_us = |cpu: f64| cpu * 1e6 / (all.len().max(1) as f64);
    Ok(AckFigures {
        per_s: all.len() as f64 / elapsed,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        errors: errors.load(Ordering::Relaxed),
        replies_per_s: replied as f64 / elapsed,
        contender_cpu_us: per_ack_us(contender_cpu),
        bench_cpu_us: per_ack_us(bench_cpu),
        seconds: elapsed,
    })
}

/// What held Switchyard's SQLite writer, and how long writes waited for it, from its
/// `/metrics` right after the ack test (so the start's few writes are in too, the backlog's
/// handling after the test is not): a line per priority waited and per operation held, with
/// the count, the total time, its share of the test's `seconds`, and the p50, p99 and longest
/// as their buckets' upper bounds. Whatever holds the writer is what an ack waits for.
async fn writer_turns(world: &World, addr: SocketAddr, seconds: f64) -> Result<Vec<String>> {
    let text = world
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let mut lines = Vec::new();
    for (family, label, what) in [
        ("switchyard_store_writer_wait_seconds", "priority", "waited"),
        ("switchyard_store_writer_hold_seconds", "op", "held"),
    ] {
        for (value, buckets, sum) in histograms(&text, family, label) {
            let count = buckets.last().map_or(0.0, |b| b.1);
            // The upper bound of the bucket holding the `q` quantile.
            let quantile = |q: f64| {
                buckets
                    .iter()
                    .find(|(_, cumulative)| *cumulative >= (count * q).ceil())
                    .map_or_else(|| "–".to_string(), |(le, _)| bound_ms(le))
            };
            lines.push(format!(
                "{what} {value}: {count:.0} turns, {:.0} ms in all ({:.1} % of the test), p50 {}, p99 {}, longest {}",
                sum * 1000.0,
                sum * 100.0 / seconds,
                quantile(0.5),
                quantile(0.99),
                quantile(1.0),
            ));
        }
    }
    // The sender's searches read on a reader, not the writer, but they share the CPUs with
    // the acks: how often the sender looked, and how long that took.
    for (family, what) in [
        (
            "switchyard_sender_claim_seconds",
            "sender claims (search included)",
        ),
        (
            "switchyard_sender_next_due_seconds",
            "sender next-due look-ups",
        ),
    ] {
        let value = |suffix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{family}_{suffix} ")))
                .and_then(|n| n.trim().parse::<f64>().ok())
        };
        if let (Some(count), Some(sum)) = (value("count"), value("sum")) {
            lines.push(format!(
                "{what}: {count:.0}, {:.0} ms in all ({:.1} % of the test), {:.0} µs each",
                sum * 1000.0,
                sum * 100.0 / seconds,
                if count > 0.0 { sum * 1e6 / count } else { 0.0 },
            ));
        }
    }
    Ok(lines)
}

/// A bucket's upper bound (seconds, or `+Inf`) as people read it.
fn bound_ms(le: &str) -> String {
    match le.parse::<f64>() {
        Ok(secs) => format!("≤ {} ms", (secs * 1e6).round() / 1000.0),
        Err(_) => "> 5 s".to_string(),
    }
}

/// One series of a labelled histogram family: its label's value, its cumulative buckets
/// (`le`, count) in order, and its sum.
type Series = (String, Vec<(String, f64)>, f64);

/// A labelled histogram family's series in Prometheus' text format.
fn histograms(text: &str, family: &str, label: &str) -> Vec<Series> {
    let mut found: Vec<Series> = Vec::new();
    let label_start = format!("{{{label}=\"");
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(family) else {
            continue;
        };
        let Some((series, number)) = rest.rsplit_once(' ') else {
            continue;
        };
        let Ok(number) = number.parse::<f64>() else {
            continue;
        };
        let (kind, labels) = series.split_once('{').unwrap_or((series, ""));
        let Some((value, le)) = format!("{{{labels}")
            .strip_prefix(&label_start)
            .and_then(|l| l.split_once('"'))
            .map(|(value, tail)| {
                let le = tail
                    .strip_prefix(",le=\"")
                    .and_then(|t| t.split_once('"'))
                    .map(|(le, _)| le.to_string());
                (value.to_string(), le)
            })
        else {
            continue;
        };
        let index = match found.iter().position(|(v, _, _)| *v == value) {
            Some(i) => i,
            None => {
                found.push((value, Vec::new(), 0.0));
                found.len() - 1
            }
        };
        match (kind, le) {
            ("_bucket", Some(le)) => found[index].1.push((le, number)),
            ("_sum", None) => found[index].2 = number,
            _ => {}
        }
    }
    found
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

async fn e2e_test(
    world: Arc<World>,
    contender: &Contender,
    args: &Args,
    base: u64,
) -> Result<(f64, usize)> {
    let addr = contender.addr;
    let deliveries = Arc::new(Deliveries::new(&world));
    let before = posted(&world).await?;
    let (contender_cpu, bench_cpu) = (
        cpu_seconds(contender.child.id()),
        cpu_seconds(std::process::id()),
    );
    let started = Instant::now();
    let counter = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (deliveries, counter) = (deliveries.clone(), counter.clone());
        let total = args.events as u64;
        workers.push(tokio::spawn(async move {
            let mut connection = None;
            loop {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                // A failed delivery shows up as a missing reply.
                let _ = deliver(&mut connection, addr, &deliveries, base + n).await;
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
            // Where the time went: delivering (acks) or replying after; and the CPU it took
            // (in the kernel's 10-ms ticks: a rough figure over a test this short).
            let per_event_us = |cpu: f64| cpu * 1e6 / args.events.max(1) as f64;
            eprintln!(
                "  end to end: delivered in {:.0} ms with {replied_by_then} replies posted by then; all replies by {:.0} ms; CPU µs/event: contender {:.0}, bench {:.0}",
                delivered.as_secs_f64() * 1000.0,
                started.elapsed().as_secs_f64() * 1000.0,
                per_event_us(cpu_seconds(contender.child.id()) - contender_cpu),
                per_event_us(cpu_seconds(std::process::id()) - bench_cpu),
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
    let acks = ack_test(world.clone(), &contender, args, base).await?;
    f.acks_per_s = acks.per_s;
    f.p50_ms = acks.p50_ms;
    f.p99_ms = acks.p99_ms;
    f.ack_errors = acks.errors;
    f.replies_during_acks_per_s = acks.replies_per_s;
    f.contender_cpu_us_per_ack = acks.contender_cpu_us;
    f.bench_cpu_us_per_ack = acks.bench_cpu_us;
    if name.starts_with("switchyard") {
        f.writer_turns = writer_turns(world, contender.addr, acks.seconds).await?;
    }
    drop(contender);
    if !handles(name) {
        // Nothing is handled: there is no end to end to measure.
        return Ok(f);
    }
    // A fresh process for end to end, so the ack test's backlog does not count.
    let (contender, _) = start(name, args, world).await?;
    (f.e2e_per_s, f.e2e_missing) =
        e2e_test(world.clone(), &contender, args, base + 10_000_000).await?;
    if name.starts_with("switchyard") && args.e2e_writer_turns && f.e2e_per_s > 0.0 {
        let seconds = args.events as f64 / f.e2e_per_s;
        for line in writer_turns(world, contender.addr, seconds).await? {
            eprintln!("  end to end, {line}");
        }
    }
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
    // Round by round, every contender once, so that each round's ratios compare contenders
    // measured minutes apart at most; the medians over the rounds are the figures.
    let mut rounds: Vec<Vec<(String, Figures)>> = Vec::new();
    for round in 0..args.rounds.max(1) {
        let mut results = Vec::new();
        for (i, name) in args.only.iter().enumerate() {
            eprintln!("round {}: measuring {name}…", round + 1);
            let base = ((round * args.only.len() + i) as u64 + 1) * 100_000_000;
            let figures = measure(name, &args, &world, base).await?;
            eprintln!("  {figures:?}");
            results.push((name.clone(), figures));
        }
        rounds.push(results);
    }
    println!(
        "\n{} round(s); {} s of acks at concurrency {}, {} mentions end to end over {} channels; sandbox rate limits off\n",
        rounds.len(),
        args.seconds,
        args.concurrency,
        args.events,
        args.channels
    );
    println!(
        "| round | contender | acks/s | ack p50 ms | ack p99 ms | errors | replies/s during acks | CPU µs/ack: contender | bench | e2e replies/s | missing | idle RSS MB | start ms | acks ÷ Bolt JS | e2e ÷ Bolt JS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    // Per contender, each round's (acks ratio, e2e ratio).
    let mut ratios: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for (round, results) in rounds.iter().enumerate() {
        let reference = results
            .iter()
            .find(|(n, _)| n == "bolt-js")
            .map(|(_, f)| (f.acks_per_s, f.e2e_per_s));
        for (name, f) in results {
            let no_handling = !handles(name);
            let ratio = |ours: f64, theirs: Option<f64>| match theirs {
                Some(t) if t > 0.0 => Some(ours / t),
                _ => None,
            };
            let shown = |r: Option<f64>| r.map_or("–".into(), |r| format!("{r:.1}×"));
            let (acks_ratio, e2e_ratio) = (
                ratio(f.acks_per_s, reference.map(|r| r.0)),
                ratio(f.e2e_per_s, reference.map(|r| r.1)).filter(|_| !no_handling),
            );
            match ratios.iter_mut().find(|(n, _, _)| n == name) {
                Some((_, a, e)) => {
                    a.extend(acks_ratio);
                    e.extend(e2e_ratio);
                }
                None => ratios.push((
                    name.clone(),
                    acks_ratio.into_iter().collect(),
                    e2e_ratio.into_iter().collect(),
                )),
            }
            println!(
                "| {} | {name} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {:.1} | {:.1} | {} | {} | {:.1} | {:.0} | {} | {} |",
                round + 1,
                f.acks_per_s,
                f.p50_ms,
                f.p99_ms,
                f.ack_errors,
                f.replies_during_acks_per_s,
                f.contender_cpu_us_per_ack,
                f.bench_cpu_us_per_ack,
                if no_handling {
                    "–".into()
                } else {
                    format!("{:.0}", f.e2e_per_s)
                },
                if no_handling {
                    "–".into()
                } else {
                    f.e2e_missing.to_string()
                },
                f.idle_rss_mb,
                f.startup_ms,
                shown(acks_ratio),
                shown(e2e_ratio),
            );
        }
    }
    if rounds.len() > 1 {
        println!(
            "\n| contender | acks ÷ Bolt JS, median (range) | e2e ÷ Bolt JS, median (range) |"
        );
        println!("|---|---|---|");
        for (name, acks, e2e) in &mut ratios {
            println!(
                "| {name} | {} | {} |",
                median_and_range(acks),
                median_and_range(e2e)
            );
        }
    }
    for (round, results) in rounds.iter().enumerate() {
        for (name, f) in results {
            if !f.writer_turns.is_empty() {
                println!(
                    "\n{name}, round {}: SQLite's writer (and the sender's searches) during the ack test\n",
                    round + 1
                );
                for line in &f.writer_turns {
                    println!("- {line}");
                }
            }
        }
    }
    Ok(())
}

/// Whether the contender handles what it acks (replies to the mentions): all but the ack
/// path on its own and the bare receiver, which have no end to end.
fn handles(contender: &str) -> bool {
    !matches!(contender, "switchyard-acks-only" | "ceiling")
}

/// `m× (lo–hi×)` of the ratios, or `–` if there are none.
fn median_and_range(values: &mut [f64]) -> String {
    if values.is_empty() {
        return "–".into();
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    format!("{median:.1}× ({:.1}–{:.1}×)", values[0], values[n - 1])
}
