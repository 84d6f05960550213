//! `switchyard`: the command line. A thin layer over the library crates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use switchyard_engine::admin::{
    Actor, create_token, entry_json, format_ms, parse_since, parse_until, revoke_token, token_json,
};
use switchyard_engine::config::{LogFormat, ProcessEnv};
use switchyard_engine::{CheckOptions, Config, ConfigError, Server, StartOptions, now_ms};
use switchyard_sandbox::{Manifest, RateLimitSettings, Sandbox, SandboxConfig, Seed};
use switchyard_store::{AuditFilter, NewApiToken, Store};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Self-hosted ChatOps server for Slack"
)]
struct Cli {
    /// Log lines as text or JSON (levels from RUST_LOG); default: the config's [log] format.
    #[arg(long, global = true, env = "SWITCHYARD_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
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
enum Command {
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
}

#[derive(clap::Args)]
struct ReloadArgs {
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
enum ConfigCommand {
    /// Print the effective configuration (file, environment, defaults), secrets redacted.
    Show(ShowArgs),
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// The configuration file.
    #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "switchyard.toml")]
    config: PathBuf,
}

#[derive(clap::Args)]
struct ShowArgs {
    #[command(flatten)]
    config: ConfigArgs,
    #[arg(long, value_enum, default_value_t = ShowFormat::Toml)]
    format: ShowFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum ShowFormat {
    Toml,
    Json,
}

#[derive(clap::Args)]
struct ManifestArgs {
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
enum ManifestFormat {
    Json,
    Yaml,
}

/// The config file, for commands that only open the store (its `[store] url`).
#[derive(clap::Args)]
struct StoreConfigArg {
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
struct MachinesArgs {
    /// The config file: its `[store]` and `[apps.machines]`.
    #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "switchyard.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: MachinesCommand,
}

#[derive(Subcommand)]
enum MachinesCommand {
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
struct TokenArgs {
    #[command(flatten)]
    config: StoreConfigArg,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
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
struct AuditArgs {
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
struct AccessArgs {
    #[command(flatten)]
    config: StoreConfigArg,
    #[command(subcommand)]
    command: AccessCommand,
}

#[derive(Subcommand)]
enum AccessCommand {
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
enum GroupCommand {
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
async fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let log_format = cli.log_format.map(LogFormat::from);
    if !matches!(cli.command, Command::Serve(_)) {
        init_logging(log_format.unwrap_or_default());
    }
    match cli.command {
        // Logging starts once the config (and its [log] format) is read.
        Command::Serve(args) => serve(args, log_format).await.map(|()| ExitCode::SUCCESS),
        Command::Sandbox(args) => run_sandbox(args).await.map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => demo(args).await.map(|()| ExitCode::SUCCESS),
        Command::CheckConfig(args) => Ok(check_config(&args)),
        Command::Config(ConfigCommand::Show(args)) => show_config(&args),
        Command::Manifest(args) => print_manifest(&args),
        Command::Token(args) => token(args).await.map(|()| ExitCode::SUCCESS),
        Command::Machines(args) => machines(args).await,
        Command::Audit(args) => audit(args).await.map(|()| ExitCode::SUCCESS),
        Command::Doctor(args) => doctor(&args).await,
        Command::Reload(args) => reload(&args),
        Command::Access(args) => access(args).await.map(|()| ExitCode::SUCCESS),
    }
}

/// Log lines to stderr, as text or JSON; levels from `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
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

async fn doctor(args: &ConfigArgs) -> Result<ExitCode> {
    let config = match load_checked(&args.config, false) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}", config_errors(&errors));
            println!(
                "FAIL  config: {} has errors (above) — fix: correct them; `switchyard check-config` lists them",
                args.config.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let declarations: Vec<_> = switchyard_apps::builtin(&config)?
        .iter()
        .map(|app| app.declaration())
        .collect();
    let report = switchyard_engine::doctor::run(&config, &declarations).await;
    print!("{report}");
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Checks the config first (a server would refuse a broken one anyway), then sends SIGHUP.
fn reload(args: &ReloadArgs) -> Result<ExitCode> {
    let config = match load_checked(&args.config.config, false) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}", config_errors(&errors));
            eprintln!("not reloaded: the server would refuse this config");
            return Ok(ExitCode::FAILURE);
        }
    };
    let pid = match (args.pid, &args.pid_file, &config.server.pid_file) {
        (Some(pid), _, _) => pid,
        (None, Some(file), _) | (None, None, Some(file)) => read_pid(file)?,
        (None, None, None) => bail!(
            "which process? Give --pid or --pid-file, or set [server] pid_file in {}",
            config.source
        ),
    };
    anyhow::ensure!(pid > 0, "{pid} is not a process id");
    // SAFETY: kill(2) with a positive pid and a valid signal number touches no memory of ours.
    let sent = unsafe { libc::kill(pid, libc::SIGHUP) };
    if sent != 0 {
        bail!(
            "cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    println!("Sent SIGHUP to {pid}: it reloads {}", config.source);
    Ok(ExitCode::SUCCESS)
}

fn read_pid(file: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the pid file {}", file.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{} does not hold a process id", file.display()))
}

/// Removes the pid file when `serve` ends, however it ends.
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: &Path) -> Result<Self> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing the pid file {}", path.display()))?;
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// SIGHUP: re-read and check the config; apply its `[apps.*]`, or keep the one in force.
fn reload_config(path: &Path, in_force: &mut Config, server: &Server) {
    let next = match load_checked(path, false) {
        Ok(next) => next,
        Err(errors) => {
            for e in &errors {
                tracing::error!(error = %e, "config error");
            }
            tracing::error!(
                errors = errors.len(),
                "reload refused: the config has errors; keeping the one in force"
            );
            return;
        }
    };
    let apps = match switchyard_apps::builtin(&next) {
        Ok(apps) => apps,
        Err(e) => {
            tracing::error!(error = %e, "reload refused; keeping the config in force");
            return;
        }
    };
    let restart = in_force.needs_restart(&next);
    if !restart.is_empty() {
        tracing::warn!(keys = %restart.join(", "), "changed, but applied only at the next restart");
    }
    let names: Vec<&str> = apps.iter().map(|a| a.declaration().name).collect();
    server.reload_apps(apps);
    in_force.apps = next.apps;
    tracing::info!(apps = %names.join(","), "config reloaded");
}

async fn open_store(arg: &StoreConfigArg) -> Result<Store> {
    let store_config = Config::load_store(&arg.config, &ProcessEnv)?;
    Ok(Store::connect(&store_config.url).await?)
}

fn time_or_dash(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_string(), format_ms)
}

async fn machines(args: MachinesArgs) -> Result<ExitCode> {
    use switchyard_apps::machines::{MachinesConfig, catalog};
    let config = match load_checked(&args.config, true) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}", config_errors(&errors));
            return Ok(ExitCode::FAILURE);
        }
    };
    let base: MachinesConfig = config.app_section_validated("machines")?;
    let store = Store::connect(&config.store.url).await?;
    store
        .apply_app_migrations("machines", &switchyard_apps::machines::migrations())
        .await?;
    let (kind, name, spec) = match args.command {
        MachinesCommand::List => {
            let cat = catalog::Catalog::load(&base, store.reader()).await?;
            println!("{}", serde_json::to_string_pretty(&cat)?);
            return Ok(ExitCode::SUCCESS);
        }
        MachinesCommand::Put { kind, name, json } => {
            let spec: serde_json::Value =
                serde_json::from_str(&json).context("the entry is not JSON")?;
            (kind, name, Some(spec))
        }
        MachinesCommand::Remove { kind, name } => (kind, name, None),
    };
    let Some(kind) = catalog::Kind::parse(&kind) else {
        bail!("{kind:?}: say `machine` or `user`");
    };
    match catalog::edit_from_cli(&store, &base, kind, &name, spec, now_ms()).await? {
        Ok(()) => {
            println!("Done: {} {name:?}.", kind.as_str());
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            eprintln!("{reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn token(args: TokenArgs) -> Result<()> {
    let store = open_store(&args.config).await?;
    let now = now_ms();
    match args.command {
        TokenCommand::Create {
            name,
            scopes,
            expires,
        } => {
            let expires_at_ms = match expires {
                Some(text) => {
                    let at = parse_until(&text, now).context("--expires")?;
                    anyhow::ensure!(at > now, "--expires: {text:?} is already past");
                    Some(at)
                }
                None => None,
            };
            let token = NewApiToken {
                name,
                scopes,
                expires_at_ms,
            };
            let created = create_token(&store, &token, &Actor::cli(), now).await?;
            let info = &created.info;
            println!(
                "Created token {} ({}): scopes {}, expires {}.",
                info.id,
                info.name,
                info.scopes.join(" "),
                info.expires_at_ms
                    .map_or_else(|| "never".to_string(), format_ms)
            );
            println!("{}", created.plaintext);
            println!("This is the only time it is shown: store it now.");
        }
        TokenCommand::List { json } => {
            let tokens = store.token_list().await?;
            if json {
                for info in &tokens {
                    println!("{}", token_json(info));
                }
                return Ok(());
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.name.clone(),
                        t.scopes.join(" "),
                        format_ms(t.created_at_ms),
                        time_or_dash(t.expires_at_ms),
                        time_or_dash(t.last_used_at_ms),
                        time_or_dash(t.revoked_at_ms),
                    ]
                })
                .collect();
            print_table(
                &[
                    "ID",
                    "NAME",
                    "SCOPES",
                    "CREATED",
                    "EXPIRES",
                    "LAST USED",
                    "REVOKED",
                ],
                &rows,
            );
        }
        TokenCommand::Revoke { token } => {
            let info = revoke_token(&store, &token, &Actor::cli(), now).await?;
            println!("Revoked token {} ({}).", info.id, info.name);
        }
    }
    Ok(())
}

async fn audit(args: AuditArgs) -> Result<()> {
    let store = open_store(&args.config).await?;
    let now = now_ms();
    let time = |flag: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| parse_since(t, now).with_context(|| format!("--{flag}")))
            .transpose()
    };
    let filter = AuditFilter {
        since_ms: time("since", &args.since)?,
        until_ms: time("until", &args.until)?,
        actor: args.who,
        object: args.object,
        action_prefix: args.action,
        outcome: args
            .outcome
            .as_deref()
            .map(str::parse)
            .transpose()
            .context("--outcome: ok, refused or failed")?,
        limit: args.limit,
        before_id: None,
    };
    let entries = store.audit_query(&filter).await?;
    if args.json {
        for entry in &entries {
            println!("{}", entry_json(entry));
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let r = &e.record;
            vec![
                format_ms(r.at_ms),
                format!("{}:{}", r.actor_kind, r.actor),
                r.via.to_string(),
                r.action.clone(),
                r.object.clone(),
                r.outcome.to_string(),
                r.detail.clone(),
            ]
        })
        .collect();
    print_table(
        &[
            "TIME", "ACTOR", "VIA", "ACTION", "OBJECT", "OUTCOME", "DETAIL",
        ],
        &rows,
    );
    Ok(())
}

async fn access(args: AccessArgs) -> Result<()> {
    use switchyard_engine::access::Policy;
    use switchyard_engine::admin::{AccessChange, access_json, change_access};
    let access_config = Config::load_access(&args.config.config, &ProcessEnv)
        .map_err(|errors| anyhow::anyhow!(config_errors(&errors)))?;
    let policy = access_config.as_ref().map(Policy::new);
    let store = open_store(&args.config).await?;
    let change = match args.command {
        AccessCommand::Group(GroupCommand::Add { group, member }) => {
            AccessChange::GroupAdd { group, member }
        }
        AccessCommand::Group(GroupCommand::Remove { group, member }) => {
            AccessChange::GroupRemove { group, member }
        }
        AccessCommand::Bind { role, subject } => AccessChange::Bind { role, subject },
        AccessCommand::Unbind { role, subject } => AccessChange::Unbind { role, subject },
        AccessCommand::Group(GroupCommand::List { json }) => {
            let members = store.access_group_members().await?;
            let listed = access_json(policy.as_ref(), &members, &[]);
            let groups = listed["groups"].as_array().cloned().unwrap_or_default();
            if json {
                for g in &groups {
                    println!("{g}");
                }
                return Ok(());
            }
            let rows: Vec<Vec<String>> = groups
                .iter()
                .map(|g| {
                    ["group", "member", "source"]
                        .map(|k| text_of(&g[k]))
                        .to_vec()
                })
                .collect();
            print_table(&["GROUP", "MEMBER", "SOURCE"], &rows);
            return Ok(());
        }
        AccessCommand::List { json } => {
            let members = store.access_group_members().await?;
            let bindings = store.access_bindings().await?;
            let listed = access_json(policy.as_ref(), &members, &bindings);
            if json {
                println!("{listed}");
                return Ok(());
            }
            match &access_config {
                None => println!("No [access] section: nothing is checked."),
                Some(c) => println!(
                    "Roles: {}; default role: {}.",
                    listed["roles"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(text_of)
                        .collect::<Vec<_>>()
                        .join(", "),
                    c.default_role.as_deref().unwrap_or("none")
                ),
            }
            let rows: Vec<Vec<String>> = listed["bindings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| {
                    let mut source = text_of(&b["source"]);
                    if b["role_defined"] == false {
                        source.push_str(" (role not in the config: grants nothing)");
                    }
                    vec![text_of(&b["role"]), text_of(&b["subject"]), source]
                })
                .collect();
            print_table(&["ROLE", "SUBJECT", "SOURCE"], &rows);
            return Ok(());
        }
    };
    let changed = change_access(&store, policy.as_ref(), &change, &Actor::cli(), now_ms()).await?;
    let said = match (&change, changed) {
        (AccessChange::GroupAdd { group, member }, true) => {
            format!("Added {member} to group {group}.")
        }
        (AccessChange::GroupAdd { group, member }, false) => {
            format!("{member} is in group {group} already.")
        }
        (AccessChange::GroupRemove { group, member }, true) => {
            format!("Removed {member} from group {group}.")
        }
        (AccessChange::GroupRemove { group, member }, false) => {
            format!("{member} was not in group {group} (in the store).")
        }
        (AccessChange::Bind { role, subject }, true) => format!("Bound {role} to {subject}."),
        (AccessChange::Bind { role, subject }, false) => {
            format!("{role} is bound to {subject} already.")
        }
        (AccessChange::Unbind { role, subject }, true) => format!("Unbound {role} from {subject}."),
        (AccessChange::Unbind { role, subject }, false) => {
            format!("{role} was not bound to {subject} (in the store).")
        }
    };
    println!("{said}");
    if changed {
        println!("A running Switchyard applies it within 5 seconds.");
    }
    Ok(())
}

fn text_of(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// Columns padded to their widest cell; the last one is not padded.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// The config with the built-in apps' sections checked too; every error, one per line.
fn load_checked(path: &Path, without_credentials: bool) -> Result<Config, Vec<ConfigError>> {
    let sections = switchyard_apps::config_sections();
    let options = CheckOptions {
        apps: Some(&sections),
        without_credentials,
    };
    Config::check_file(path, &ProcessEnv, &options)
}

fn config_errors(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ConfigError::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_config(args: &ConfigArgs) -> ExitCode {
    match load_checked(&args.config, false) {
        Ok(config) => {
            let transport = if config.slack.socket_mode() {
                "Socket Mode".to_string()
            } else {
                format!("HTTP on {}", config.server.listen)
            };
            let apps = match switchyard_apps::builtin(&config) {
                Ok(apps) => apps
                    .iter()
                    .map(|a| a.declaration().name)
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            println!(
                "{}: ok: {transport}; store {}; apps: {}",
                config.source,
                switchyard_store::redact(&config.store.url),
                if apps.is_empty() { "none" } else { &apps },
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{}", config_errors(&errors));
            ExitCode::FAILURE
        }
    }
}

fn show_config(args: &ShowArgs) -> Result<ExitCode> {
    let config = match load_checked(&args.config.config, false) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}", config_errors(&errors));
            return Ok(ExitCode::FAILURE);
        }
    };
    // Secrets serialize as `[redacted]`, URLs without passwords (see `switchyard_engine::config`).
    let shown = match args.format {
        ShowFormat::Toml => format!(
            "# {}: the effective configuration (file, environment, defaults); secrets redacted\n{}",
            config.source,
            toml::to_string_pretty(&config).context("rendering the config as TOML")?
        ),
        ShowFormat::Json => {
            serde_json::to_string_pretty(&config).context("rendering the config as JSON")? + "\n"
        }
    };
    print!("{shown}");
    Ok(ExitCode::SUCCESS)
}

fn print_manifest(args: &ManifestArgs) -> Result<ExitCode> {
    let default_path = Path::new("switchyard.toml");
    let loaded = match &args.config {
        Some(path) => load_checked(path, true),
        None if default_path.exists() => load_checked(default_path, true),
        // No file: the defaults and the environment, as `Config::check` reads an empty file.
        None => {
            let sections = switchyard_apps::config_sections();
            let options = CheckOptions {
                apps: Some(&sections),
                without_credentials: true,
            };
            Config::check("", "(defaults)", &ProcessEnv, &options)
        }
    };
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}", config_errors(&errors));
            return Ok(ExitCode::FAILURE);
        }
    };
    let request_base = args
        .request_url
        .as_deref()
        .or(config.server.public_url.as_deref())
        .map(switchyard_engine::manifest::request_base)
        .transpose()?;
    if args.request_url.is_some() && config.slack.socket_mode() {
        eprintln!(
            "note: --request-url is not used: {} has an app token, so the app uses Socket Mode",
            config.source
        );
    }
    let declarations: Vec<_> = switchyard_apps::builtin(&config)?
        .iter()
        .map(|app| app.declaration())
        .collect();
    let manifest =
        switchyard_engine::manifest::manifest(&config, &declarations, request_base.as_deref());
    let text = match args.format {
        ManifestFormat::Json => serde_json::to_string_pretty(&manifest)? + "\n",
        ManifestFormat::Yaml => serde_yaml_ng::to_string(&manifest)?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs, log_format: Option<LogFormat>) -> Result<()> {
    let loaded = load_checked(&args.config, false);
    init_logging(
        log_format.unwrap_or_else(|| loaded.as_ref().map(|c| c.log.format).unwrap_or_default()),
    );
    let mut config = match loaded {
        Ok(config) => config,
        Err(errors) => bail!("{}", config_errors(&errors)),
    };
    let apps = switchyard_apps::builtin(&config)?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing a SIGHUP handler")?;
    let options = StartOptions {
        // A test hook, documented in ARCHITECTURE.md: ack and commit, but never handle.
        hold_dispatch: std::env::var("SWITCHYARD_TEST_HOLD_DISPATCH").is_ok_and(|v| v == "1"),
    };
    let server = Server::start(config.clone(), apps, options).await?;
    let _pid_file = config
        .server
        .pid_file
        .as_deref()
        .map(PidFile::write)
        .transpose()?;
    // Read by scripts and tests: keep its shape.
    println!("Switchyard listening on http://{}", server.addr());
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hangup.recv() => reload_config(&args.config, &mut config, &server),
        }
    }
    tracing::info!("stopping: draining work in flight");
    if !server.shutdown().await {
        tracing::warn!("stopped before all work in flight had finished");
    }
    Ok(())
}

/// The demo's workspace: the sandbox's default one plus the machines' channels.
const DEMO_SEED: &str = include_str!("demo_seed.toml");
/// The demo's `[apps.machines]`.
const DEMO_MACHINES: &str = include_str!("demo_machines.toml");
/// The simulated devices' shared token (a demo value, in `demo_machines.toml`).
const DEMO_DEVICE_TOKEN: &str = "demo-device-token";

fn demo_config(bot_token: &str, app_token: &str, api_url: &str, db: &Path) -> Result<Config> {
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
async fn demo(args: DemoArgs) -> Result<()> {
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
    println!(
        "  Channels: #control (machines control, private: alice, bob), #oops (notices), #general."
    );
    println!(
        "  Devices: Laser Cutter (idle) and Lathe (Bob's fob in the reader) check in every 3 s."
    );
    println!();
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
async fn simulated_devices(addr: std::net::SocketAddr) {
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
async fn post_update(addr: std::net::SocketAddr, body: &str) -> std::io::Result<()> {
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
