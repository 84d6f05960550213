//! `switchyard demo` (the sandbox, Switchyard on it, simulated devices) and `switchyard
//! sandbox`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use switchyard_engine::{Config, Server, StartOptions};
use switchyard_sandbox::{Manifest, RateLimitSettings, Sandbox, SandboxConfig, Seed};

use crate::serve::shutdown_signal;
use crate::{DemoArgs, SandboxArgs};

/// The demo's workspace: the sandbox's default one plus the machines' channels.
pub(crate) const DEMO_SEED: &str = include_str!("demo_seed.toml");

/// The demo's `[apps.machines]`.
pub(crate) const DEMO_MACHINES: &str = include_str!("demo_machines.toml");

/// The simulated devices' shared token (a demo value, in `demo_machines.toml`).
pub(crate) const DEMO_DEVICE_TOKEN: &str = "demo-device-token";

pub(crate) fn demo_config(
    bot_token: &str,
    app_token: &str,
    api_url: &str,
    db: &Path,
) -> Result<Config> {
    let text = format!(
        "[slack]\nbot_token = \"{bot_token}\"\napp_token = \"{app_token}\"\napi_url = \"{api_url}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite://{}\"\n{DEMO_MACHINES}",
        db.display(),
    );
    // The demo reads nothing from the environment: it always talks to its own sandbox.
    Ok(Config::parse(
        &text,
        "demo config",
        &std::collections::BTreeMap::<String, String>::new(),
    )?)
}

/// The sandbox with the demo's workspace, Switchyard on SQLite in Socket Mode against it, the
/// machines app with two simulated devices checking in.
pub(crate) async fn demo(args: DemoArgs) -> Result<()> {
    let seed = Seed::parse_toml(DEMO_SEED, "demo_seed.toml")?;
    let data = std::env::temp_dir().join(format!("switchyard-demo-{}", std::process::id()));
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let db = data.join("switchyard.db");
    // The sandbox's app is ours: its manifest (slash commands, events) from the apps' declarations.
    let draft = demo_config(
        &seed.app.bot_token,
        &seed.app.app_token,
        "http://127.0.0.1:1/api/",
        &db,
    )?;
    let declarations: Vec<_> = switchyard_apps::builtin(&draft)?
        .iter()
        .map(|a| a.declaration())
        .collect();
    let manifest = Manifest::from_value(switchyard_engine::manifest::manifest(
        &draft,
        &declarations,
        None,
    ))
    .context("the demo's manifest")?;
    let sandbox = Sandbox::start(SandboxConfig {
        port: args.port,
        seed,
        manifest: Some(manifest),
        ..SandboxConfig::default()
    })
    .await?;
    let config = demo_config(
        sandbox.bot_token(),
        sandbox.app_token(),
        &sandbox.api_url(),
        &db,
    )?;
    let apps = switchyard_apps::builtin(&config)?;
    let server = Server::start(config, apps, StartOptions::default()).await?;
    let devices = tokio::spawn(simulated_devices(server.addr()));
    let url = sandbox.url();
    let bot = sandbox.bot_user_id();
    let sy = format!("http://{}", server.addr());
    println!(
        "Switchyard demo: a local Slack workspace on {url}, Switchyard connected over Socket Mode."
    );
    // Read by the browser test: keep the shape `  Web client: URL`.
    println!(
        "  Web client: {}   (open it in a browser; pick who you are at the top)",
        sandbox.web_url()
    );
    println!(
        "  Channels: #control (machines control, private: alice, bob), #oops (notices), #general."
    );
    println!(
        "  Devices: Laser Cutter (idle) and Lathe (Bob's fob in the reader) check in every 3 s."
    );
    println!();
    println!("  Or from the command line, through the sandbox's control API:");
    println!("  Ask for the machines' status, as alice in #general:");
    println!(
        "    curl -s -XPOST {url}/_sandbox/messages -H 'content-type: application/json' \\\n      -d '{{\"user\":\"alice\",\"channel\":\"general\",\"text\":\"<@{bot}> status\"}}'"
    );
    println!("  Read the answer (in the message's thread; `ts` is in the reply above):");
    println!("    curl -s {url}/_sandbox/channels/general/threads/<ts>");
    println!("  Oops the laser cutter from Slack, as alice in #control:");
    println!(
        "    curl -s -XPOST {url}/_sandbox/messages -H 'content-type: application/json' \\\n      -d '{{\"user\":\"alice\",\"channel\":\"control\",\"text\":\"<@{bot}> oops laser\"}}'"
    );
    println!(
        "  Press the lathe's oops button (what its device sends; its low uptime reads as a reboot too):"
    );
    println!(
        "    curl -s -XPOST {sy}/api/machine/update -H 'authorization: Bearer {DEMO_DEVICE_TOKEN}' \\\n      -H 'content-type: application/json' -d '{{\"machine_name\":\"Lathe\",\"oops\":true,\"rfid_value\":\"0002\",\"uptime\":1}}'"
    );
    println!("  Clear it, as bob in #control:");
    println!(
        "    curl -s -XPOST {url}/_sandbox/commands -H 'content-type: application/json' \\\n      -d '{{\"user\":\"bob\",\"channel\":\"control\",\"command\":\"/oops-clear\",\"text\":\"lathe\"}}'"
    );
    println!("  See the notices:");
    println!("    curl -s {url}/_sandbox/channels/control/messages");
    println!("    curl -s {url}/_sandbox/channels/oops/messages");
    println!("  Switchyard: {sy}/healthz, {sy}/metrics");
    println!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    devices.abort();
    server.shutdown().await;
    sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// Two devices checking in every 3 s, as the product's do: the laser cutter idle, the lathe
/// with Bob's fob in its reader.
pub(crate) async fn simulated_devices(addr: std::net::SocketAddr) {
    let started = std::time::Instant::now();
    let mut every = tokio::time::interval(Duration::from_secs(3));
    loop {
        every.tick().await;
        let uptime = started.elapsed().as_secs_f64() + 60.0;
        for (machine, fob) in [("Laser Cutter", ""), ("Lathe", "0002")] {
            let body = serde_json::json!({
                "machine_name": machine, "oops": false, "rfid_value": fob, "uptime": uptime,
                "wifi_signal_db": -55.0, "wifi_signal_percent": 75.0,
                "internal_temperature_c": 41.5,
            });
            if let Err(e) = post_update(addr, &body.to_string()).await {
                tracing::warn!(machine, error = %e, "simulated device: update failed");
            }
        }
    }
}

/// One `POST /api/machine/update` over plain HTTP/1.1 (the demo needs no HTTP client crate).
pub(crate) async fn post_update(addr: std::net::SocketAddr, body: &str) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "POST /api/machine/update HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {DEMO_DEVICE_TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    if !reply.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&reply)
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        ));
    }
    Ok(())
}

pub(crate) async fn run_sandbox(args: SandboxArgs) -> Result<()> {
    let mut config = SandboxConfig {
        port: args.port,
        ..SandboxConfig::default()
    };
    if let Some(path) = &args.seed {
        config.seed = Seed::from_path(path)?;
    }
    if let Some(path) = &args.manifest {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the manifest {}", path.display()))?;
        config.manifest = Some(
            Manifest::parse(&text).with_context(|| format!("the manifest {}", path.display()))?,
        );
    }
    if args.no_rate_limits {
        config.rate_limits = RateLimitSettings {
            enabled: false,
            ..RateLimitSettings::default()
        };
    }
    if let Some(delays) = args.retry_delays_ms {
        config.delivery.retry_delays = delays.into_iter().map(Duration::from_millis).collect();
    }
    let sandbox = Sandbox::start(config).await?;
    print_banner(&sandbox);
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    sandbox.shutdown().await;
    Ok(())
}

pub(crate) fn print_banner(sandbox: &Sandbox) {
    let url = sandbox.url();
    // The first line is read by scripts and tests: keep its shape.
    println!("Sandbox Slack workspace {} on {url}", sandbox.team_id());
    println!("  Web client     {}", sandbox.web_url());
    println!("  Web API        {}", sandbox.api_url());
    println!("  Control API    {url}/_sandbox/   (see docs/sandbox.md)");
    for (channel, hook) in sandbox.webhook_urls() {
        println!("  Webhook        {hook}  (channel {channel})");
    }
    println!("  Bot token      {}", sandbox.bot_token());
    println!(
        "  App token      {}   (Socket Mode: apps.connections.open)",
        sandbox.app_token()
    );
    println!("  Signing secret {}", sandbox.signing_secret());
    for user in ["alice", "bob", "carol"] {
        if let Some(token) = sandbox.user_token(user) {
            println!("  User token     {token}   ({user})");
        }
    }
    println!("Press Ctrl-C to stop.");
}
