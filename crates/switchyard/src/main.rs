//! `switchyard`: the command line. A thin layer over the library crates: the commands are
//! defined here, and run by the modules below.

mod admin;
mod alerts;
mod demo;
mod operator;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use switchyard_engine::config::LogFormat;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Self-hosted ChatOps server for Slack"
)]
pub(crate) struct Cli {
    /// Log lines as text or JSON (levels from RUST_LOG); default: the config's [log] format.
    #[arg(long, global = true, env = "SWITCHYARD_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run Switchyard: receive from Slack, run the apps, send to Slack.
    Serve(ServeArgs),
    /// Run a local Slack workspace (the sandbox): Web API, Socket Mode, Events API, webhooks.
    Sandbox(SandboxArgs),
    /// Try it all on this machine: the sandbox, and Switchyard connected to it (SQLite, demo apps).
    Demo(DemoArgs),
    /// Check the configuration and report every error (`file: key: reason`, one per line).
    CheckConfig(ConfigArgs),
    /// The configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the Slack app manifest for the enabled apps (paste it into "Create an app").
    Manifest(ManifestArgs),
    /// API tokens for other systems: create (shown once), list, revoke.
    Token(TokenArgs),
    /// The machines app's machines and users: list them, add or replace one, remove one added
    /// here (the store's copy; the config's entries are changed in the config).
    Machines(MachinesArgs),
    /// Read the audit log: who did what, through which surface, and how it ended.
    Audit(AuditArgs),
    /// Check that this installation can work: Slack token and scopes, channels, transport,
    /// store, outbox. One line per check; exit 1 if any fails.
    Doctor(ConfigArgs),
    /// Make a running `serve` reload its config (SIGHUP): apps' sections apply at once.
    Reload(ReloadArgs),
    /// Who may do what, changed at run time: groups' members and roles' bindings in the store
    /// (roles themselves are in the config's [access]).
    Access(AccessArgs),
    /// The alerts app, offline.
    #[command(subcommand)]
    Alerts(AlertsCommand),
}

#[derive(Subcommand)]
pub(crate) enum AlertsCommand {
    /// What an alert payload would do, without a server or Slack: the rules each alert hits
    /// (with `continue`), the channels and mentions, and the Block Kit message.
    Test(AlertsTestArgs),
}

#[derive(clap::Args)]
pub(crate) struct AlertsTestArgs {
    /// The payload: our alert JSON, Alertmanager's webhook or Grafana's.
    file: PathBuf,
    /// The configuration file (its [apps.alerts]).
    #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "switchyard.toml")]
    config: PathBuf,
    /// The payload's kind; by default told from its shape.
    #[arg(long, value_enum, default_value_t = PayloadArg::Auto)]
    format: PayloadArg,
    /// The whole report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PayloadArg {
    Auto,
    Alerts,
    Alertmanager,
    Grafana,
}

#[derive(clap::Args)]
pub(crate) struct ReloadArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The server's pid file (default: the config's [server] pid_file).
    #[arg(long, conflicts_with = "pid")]
    pid_file: Option<PathBuf>,
    /// The server's process id.
    #[arg(long)]
    pid: Option<i32>,
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the effective configuration (file, environment, defaults), secrets redacted.
    Show(ShowArgs),
}

#[derive(clap::Args)]
pub(crate) struct ConfigArgs {
    /// The configuration file.
    #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "switchyard.toml")]
    config: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[arg(long, value_enum, default_value_t = ShowFormat::Toml)]
    format: ShowFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ShowFormat {
    Toml,
    Json,
}

#[derive(clap::Args)]
pub(crate) struct ManifestArgs {
    /// The configuration file; without one, ./switchyard.toml if it exists, else the defaults
    /// and the environment. Tokens are not needed.
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ManifestFormat::Json)]
    format: ManifestFormat,
    /// The public URL Slack posts to (HTTP mode), e.g. https://switchyard.example.com; without
    /// it (and without [server] public_url), or with an app token in the config, the manifest
    /// is for Socket Mode.
    #[arg(long)]
    request_url: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ManifestFormat {
    Json,
    Yaml,
}

/// The config file, for commands that only open the store (its `[store] url`).
#[derive(clap::Args)]
pub(crate) struct StoreConfigArg {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_CONFIG",
        default_value = "switchyard.toml"
    )]
    config: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct MachinesArgs {
    /// The config file: its `[store]` and `[apps.machines]`.
    #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "switchyard.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: MachinesCommand,
}

#[derive(Subcommand)]
pub(crate) enum MachinesCommand {
    /// The machines and users in force (config and store), as JSON; device tokens redacted.
    List,
    /// Adds or replaces a machine or user: `put machine "Band Saw" '{"authorizations_or":["wood"]}'`.
    Put {
        /// `machine` or `user`.
        kind: String,
        name: String,
        /// The entry as JSON, with the config's keys (no `token`).
        json: String,
    },
    /// Removes a machine or user added with `put` (or the API).
    Remove { kind: String, name: String },
}

#[derive(clap::Args)]
pub(crate) struct TokenArgs {
    #[command(flatten)]
    config: StoreConfigArg,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token; it is printed once and never again.
    Create {
        /// A name to know it by (letters, digits, . _ -).
        #[arg(long)]
        name: String,
        /// What it may do: alerts:write, audit:read, alerts:* or admin; repeat for more.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// When it stops working: a duration (30d, 12h) or a date (2027-01-01, UTC).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens (no secrets).
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id or name.
    Revoke {
        /// The token's id or name.
        token: String,
    },
}

#[derive(clap::Args)]
pub(crate) struct AuditArgs {
    #[command(flatten)]
    config: StoreConfigArg,
    /// Only entries since: a duration ago (1h, 7d) or a date (2026-11-01, UTC).
    #[arg(long)]
    since: Option<String>,
    /// Only entries before: a duration ago or a date.
    #[arg(long)]
    until: Option<String>,
    /// Only this actor (a Slack user id, token id, device id or `system`).
    #[arg(long)]
    who: Option<String>,
    /// Only this object (machine:laser-1).
    #[arg(long)]
    object: Option<String>,
    /// Only actions starting with this (machines. or machines.enable).
    #[arg(long)]
    action: Option<String>,
    /// Only this outcome: ok, refused or failed.
    #[arg(long)]
    outcome: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub(crate) struct AccessArgs {
    #[command(flatten)]
    config: StoreConfigArg,
    #[command(subcommand)]
    command: AccessCommand,
}

#[derive(Subcommand)]
pub(crate) enum AccessCommand {
    /// Groups' members in the store (they add to the config's [access.groups]).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Bind a role to a subject: a Slack user id (U0AAA), group:<name> or usergroup:<id>.
    Bind { role: String, subject: String },
    /// Unbind a role from a subject (bindings in the config stay: edit the config for those).
    Unbind { role: String, subject: String },
    /// Roles, groups and bindings, from the config and the store.
    List {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum GroupCommand {
    /// Add a member (a Slack user id or usergroup:<id>) to a group.
    Add { group: String, member: String },
    /// Remove a member from a group.
    Remove { group: String, member: String },
    /// Every group's members, from the config and the store.
    List {
        /// One JSON object per member.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// The configuration file.
    #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "switchyard.toml")]
    config: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct DemoArgs {
    /// The sandbox's port on 127.0.0.1.
    #[arg(long, default_value_t = 8900)]
    port: u16,
}

#[derive(clap::Args)]
pub(crate) struct SandboxArgs {
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

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let log_format = cli.log_format.map(LogFormat::from);
    if !matches!(cli.command, Command::Serve(_)) {
        init_logging(log_format.unwrap_or_default());
    }
    match cli.command {
        // Logging starts once the config (and its [log] format) is read.
        Command::Serve(args) => serve::serve(args, log_format)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Sandbox(args) => demo::run_sandbox(args).await.map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => demo::demo(args).await.map(|()| ExitCode::SUCCESS),
        Command::CheckConfig(args) => Ok(operator::check_config(&args)),
        Command::Config(ConfigCommand::Show(args)) => operator::show_config(&args),
        Command::Manifest(args) => operator::print_manifest(&args),
        Command::Doctor(args) => operator::doctor(&args).await,
        Command::Reload(args) => serve::reload(&args),
        Command::Token(args) => admin::token(args).await.map(|()| ExitCode::SUCCESS),
        Command::Machines(args) => admin::machines(args).await,
        Command::Audit(args) => admin::audit(args).await.map(|()| ExitCode::SUCCESS),
        Command::Access(args) => admin::access(args).await.map(|()| ExitCode::SUCCESS),
        Command::Alerts(AlertsCommand::Test(args)) => Ok(alerts::test(&args)),
    }
}

/// Log lines to stderr, as text or JSON; levels from `RUST_LOG` (default `info`).
pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
