//! `switchyard`: the command line. A thin layer over the library crates.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use switchyard_engine::config::ProcessEnv;
use switchyard_engine::{Config, Server, StartOptions};
use switchyard_sandbox::{Manifest, RateLimitSettings, Sandbox, SandboxConfig, Seed};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Self-hosted ChatOps server for Slack"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Switchyard: receive from Slack, run the apps, send to Slack.
    Serve(ServeArgs),
    /// Run a local Slack workspace (the sandbox): Web API, Socket Mode, Events API, webhooks.
    Sandbox(SandboxArgs),
    /// Try it all on this machine: the sandbox, and Switchyard connected to it (SQLite, demo apps).
    Demo(DemoArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The configuration file.
    #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "switchyard.toml")]
    config: PathBuf,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// The sandbox's port on 127.0.0.1.
    #[arg(long, default_value_t = 8900)]
    port: u16,
}

#[derive(clap::Args)]
struct SandboxArgs {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 8900)]
    port: u16,
    /// Workspace seed file (TOML, or JSON by extension).
    #[arg(long)]
    seed: Option<PathBuf>,
    /// The app under test: a Slack app manifest, JSON or YAML.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Turn Slack's rate limits off (for raw-speed benchmarks).
    #[arg(long)]
    no_rate_limits: bool,
    /// Waits before each retry of an unacknowledged event, in ms (default: Slack's 0,60000,300000).
    #[arg(long, value_delimiter = ',')]
    retry_delays_ms: Option<Vec<u64>>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Sandbox(args) => run_sandbox(args).await,
        Command::Demo(args) => demo(args).await,
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let config = Config::load(&args.config, &ProcessEnv)?;
    let apps = switchyard_apps::builtin(&config)?;
    let options = StartOptions {
        // A test hook, documented in ARCHITECTURE.md: ack and commit, but never handle.
        hold_dispatch: std::env::var("SWITCHYARD_TEST_HOLD_DISPATCH").is_ok_and(|v| v == "1"),
    };
    let server = Server::start(config, apps, options).await?;
    // Read by scripts and tests: keep its shape.
    println!("Switchyard listening on http://{}", server.addr());
    shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}

/// The sandbox with its built-in workspace, and Switchyard on SQLite in Socket Mode against it.
async fn demo(args: DemoArgs) -> Result<()> {
    let sandbox = Sandbox::start(SandboxConfig {
        port: args.port,
        ..SandboxConfig::default()
    })
    .await?;
    let data = std::env::temp_dir().join(format!("switchyard-demo-{}", std::process::id()));
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let text = format!(
        "[slack]\nbot_token = \"{}\"\napp_token = \"{}\"\napi_url = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite://{}\"\n",
        sandbox.bot_token(),
        sandbox.app_token(),
        sandbox.api_url(),
        data.join("switchyard.db").display(),
    );
    // The demo reads nothing from the environment: it always talks to its own sandbox.
    let config = Config::parse(
        &text,
        "demo config",
        &std::collections::BTreeMap::<String, String>::new(),
    )?;
    let apps = switchyard_apps::builtin(&config)?;
    let server = Server::start(config, apps, StartOptions::default()).await?;
    let url = sandbox.url();
    let bot = sandbox.bot_user_id();
    println!(
        "Switchyard demo: a local Slack workspace on {url}, Switchyard connected over Socket Mode."
    );
    println!("  Say something to the bot, as alice in #general:");
    println!(
        "    curl -s -XPOST {url}/_sandbox/messages -H 'content-type: application/json' \\\n      -d '{{\"user\":\"alice\",\"channel\":\"general\",\"text\":\"<@{bot}> ping\"}}'"
    );
    println!("  Read #general (the reply is in the thread):");
    println!("    curl -s {url}/_sandbox/channels/general/messages");
    println!(
        "  Switchyard's HTTP endpoints: http://{}/healthz",
        server.addr()
    );
    println!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    server.shutdown().await;
    sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run_sandbox(args: SandboxArgs) -> Result<()> {
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

fn print_banner(sandbox: &Sandbox) {
    let url = sandbox.url();
    // The first line is read by scripts and tests: keep its shape.
    println!("Sandbox Slack workspace {} on {url}", sandbox.team_id());
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
