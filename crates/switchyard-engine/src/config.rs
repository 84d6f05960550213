//! `switchyard.toml`: the engine's part of the configuration.
//!
//! One TOML file with `${VAR}` (and `${VAR:-default}`) expansion in string values, and the
//! environment variables Slack's own tools use (`SLACK_BOT_TOKEN`, `SLACK_APP_TOKEN`,
//! `SLACK_SIGNING_SECRET`, `SLACK_API_URL`) for what the file leaves out. Every error names the
//! file, the key and the reason. Apps read their own `[apps.<name>]` sections.
//!
//! [`Config::check`] reports every error at once (`switchyard check-config`): each top-level
//! section is read by its own entry in `SECTIONS`, key by key, so one bad key does not hide the
//! next; then the checks across keys run on what could be read. One error per key: the first.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

use crate::access::AccessConfig;

/// The environment the config reads; a map in tests, the process environment in production.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A configuration error: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

/// A value that must never be shown: tokens and signing secrets.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// `[slack]` as written; the environment and defaults fill it in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    bot_token: Option<Secret>,
    app_token: Option<Secret>,
    signing_secret: Option<Secret>,
    /// The same secrets read from files only their owner may read (`chmod 600`).
    bot_token_file: Option<String>,
    app_token_file: Option<String>,
    signing_secret_file: Option<String>,
    api_url: Option<String>,
    socket_connections: Option<u8>,
    app_name: Option<String>,
    app_description: Option<String>,
}

/// How Switchyard reaches Slack.
#[derive(Debug, Clone, Serialize)]
pub struct SlackConfig {
    pub bot_token: Secret,
    /// Present: Socket Mode. Absent: Slack posts to our HTTP endpoints.
    pub app_token: Option<Secret>,
    /// Needed in HTTP mode, to verify what Slack posts.
    pub signing_secret: Option<Secret>,
    /// Slack's Web API base, ending in `/`; the sandbox's in tests and the demo.
    #[serde(serialize_with = "serialize_redacted_url")]
    pub api_url: String,
    /// Socket Mode connections kept open (1 to 10).
    pub socket_connections: u8,
    /// The Slack app's name, for its manifest (Slack allows 35 characters).
    pub app_name: String,
    /// The Slack app's short description, for its manifest (Slack allows 140 characters).
    pub app_description: Option<String>,
}

impl SlackConfig {
    pub fn socket_mode(&self) -> bool {
        self.app_token.is_some()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the HTTP endpoints listen (`/slack/*`, app routes).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The public base URL Slack reaches us at in HTTP mode (`https://ops.example.com`): the
    /// manifest's request URLs, and what `switchyard doctor` checks answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Where `serve` writes its process id (removed at exit), for `switchyard reload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<std::path::PathBuf>,
    /// How long a stop (SIGTERM, Ctrl-C) may take to drain in-flight work before exiting.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            pid_file: None,
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
        }
    }
}

fn default_shutdown_timeout_ms() -> u64 {
    10_000
}

/// How log lines are written (levels come from `RUST_LOG`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event, for log collectors.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json`; `--log-format` and `SWITCHYARD_LOG_FORMAT` override it.
    pub format: LogFormat,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3000))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://switchyard.db` (default) or `postgres://…`; shown with any password redacted.
    #[serde(
        default = "default_store_url",
        serialize_with = "serialize_redacted_url"
    )]
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: default_store_url(),
        }
    }
}

fn default_store_url() -> String {
    "sqlite://switchyard.db".into()
}

/// Timing of the pipeline's workers. The defaults suit production; tests shorten them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// How long a worker owns an inbox item or outbox item it claimed; after that (a crash, say)
    /// another worker or replica takes it over.
    pub lease_ms: u64,
    /// How often idle workers look for work left behind (expired leases, due retries).
    pub poll_interval_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            lease_ms: 30_000,
            poll_interval_ms: 500,
        }
    }
}

/// `[audit]`: how long the audit log keeps entries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Entries older than this many days are pruned (hourly); 0 keeps them forever.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention_days: 365,
        }
    }
}

/// `[outbox]`: how long the outbox keeps the calls it made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// Sent calls older than this many days are pruned (hourly); 0 keeps them forever. Pending
    /// and failed calls are never pruned; nor are the message refs later edits need.
    pub retention_days: u32,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        // A week: long enough to look into last week's incident, short enough that the table
        // stays small on a busy workspace.
        Self { retention_days: 7 }
    }
}

/// `[inbox]`: how long the inbox keeps what it handled.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxConfig {
    /// Handled (`done`) items older than this many days are pruned (hourly); 0 keeps them
    /// forever. Pending and failed items are never pruned. A pruned item's key is forgotten:
    /// Slack's retries and a client's resends come within minutes, not days.
    pub retention_days: u32,
}

impl Default for InboxConfig {
    fn default() -> Self {
        // As the outbox's: a week to look into what came in, then the table stays small.
        Self { retention_days: 7 }
    }
}

/// The whole configuration the engine needs.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Where it came from (a path, or `defaults`), for error messages.
    #[serde(skip)]
    pub source: String,
    pub slack: SlackConfig,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub engine: EngineConfig,
    pub audit: AuditConfig,
    pub inbox: InboxConfig,
    pub outbox: OutboxConfig,
    pub log: LogConfig,
    /// `[access]`: roles, groups, bindings and channel gates (see [`crate::access`]). `None`
    /// (no section): nothing is checked, everyone may do everything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessConfig>,
    /// `[apps.<name>]` sections, read by each app. Shown with secret-looking values redacted.
    #[serde(serialize_with = "serialize_app_sections")]
    pub apps: BTreeMap<String, toml::Value>,
}

pub const DEFAULT_API_URL: &str = "https://slack.com/api/";
pub const DEFAULT_APP_NAME: &str = "Switchyard";

/// An app that may have an `[apps.<name>]` section, and how that section is checked: for
/// [`CheckOptions::apps`]. The apps crate lists its apps' sections.
#[derive(Clone, Copy)]
pub struct AppSection {
    pub name: &'static str,
    check: fn(&toml::Value, &str, &mut Issues),
}

impl AppSection {
    /// App `name`, whose section is read into `T` (as [`Config::app_section`] reads it).
    pub fn of<T: DeserializeOwned + Default>(name: &'static str) -> Self {
        Self {
            name,
            check: |value, key, issues| {
                read_table::<T>(value, key, issues);
            },
        }
    }
}

/// Checks an app's section beyond its shape (names that collide, references that do not
/// resolve): each problem as `(key under the section, reason)`.
pub trait ValidateSection {
    fn validate(&self) -> Vec<(String, String)>;
}

impl AppSection {
    /// Like [`AppSection::of`], and [`ValidateSection::validate`] on what was read.
    pub fn validated<T: DeserializeOwned + Default + ValidateSection>(name: &'static str) -> Self {
        Self {
            name,
            check: |value, key, issues| {
                let section = read_table::<T>(value, key, issues);
                for (inner, reason) in section.validate() {
                    issues.add(Stage::Shape, &format!("{key}.{inner}"), reason);
                }
            },
        }
    }
}

impl fmt::Debug for AppSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppSection")
            .field("name", &self.name)
            .finish()
    }
}

/// What [`Config::check`] covers beyond the engine's own sections.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions<'a> {
    /// The apps there are: their `[apps.<name>]` sections are checked and any other name under
    /// `[apps]` is an error. `None` leaves `[apps]` unchecked, to [`Config::app_section`].
    pub apps: Option<&'a [AppSection]>,
    /// Slack's tokens may be missing (the bot token is then empty): for the app manifest, which
    /// is written before the Slack app, and so its tokens, exist. Given tokens are still checked.
    pub without_credentials: bool,
}

/// The errors found so far. Each key keeps its first error only, so a bad value is not reported
/// again as missing, say, once it has been set aside.
struct Issues {
    file: String,
    found: Vec<(Stage, ConfigError)>,
}

/// When an error was found; errors are reported in this order (then by section and key), so the
/// first error is the one [`Config::parse`] has always returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    /// `${VAR}` expansion.
    Expand,
    /// Unknown keys, wrong types.
    Shape,
    /// Missing values, bad values, and checks across keys.
    Meaning,
}

impl Issues {
    fn add(&mut self, stage: Stage, key: &str, reason: impl Into<String>) {
        if self.found.iter().any(|(_, e)| e.key == key) {
            return;
        }
        // One line per error: the TOML deserializer appends "in `key`" on lines of its own.
        let reason = reason.into();
        let reason = reason.lines().next().unwrap_or_default().trim().to_string();
        self.found.push((
            stage,
            ConfigError {
                file: self.file.clone(),
                key: key.to_string(),
                reason,
            },
        ));
    }

    fn into_errors(mut self) -> Vec<ConfigError> {
        self.found.sort_by_key(|(stage, _)| *stage);
        self.found.into_iter().map(|(_, e)| e).collect()
    }
}

/// The sections as read, before the environment, defaults and the checks across keys.
#[derive(Default)]
struct Draft {
    slack: RawSlack,
    server: ServerConfig,
    store: StoreConfig,
    engine: EngineConfig,
    audit: AuditConfig,
    inbox: InboxConfig,
    outbox: OutboxConfig,
    log: LogConfig,
    access: Option<AccessConfig>,
    apps: BTreeMap<String, toml::Value>,
}

/// A top-level section and how it is read into the draft. A new section is one more entry here
/// (and a field in [`Draft`] and [`Config`]).
struct Section {
    name: &'static str,
    read: fn(&toml::Value, &mut Draft, &mut Issues, &CheckOptions),
}

const SECTIONS: &[Section] = &[
    Section {
        name: "slack",
        read: |value, draft, issues, _| draft.slack = read_table(value, "slack", issues),
    },
    Section {
        name: "server",
        read: |value, draft, issues, _| draft.server = read_table(value, "server", issues),
    },
    Section {
        name: "store",
        read: |value, draft, issues, _| draft.store = read_table(value, "store", issues),
    },
    Section {
        name: "engine",
        read: |value, draft, issues, _| draft.engine = read_table(value, "engine", issues),
    },
    Section {
        name: "audit",
        read: |value, draft, issues, _| draft.audit = read_table(value, "audit", issues),
    },
    Section {
        name: "inbox",
        read: |value, draft, issues, _| draft.inbox = read_table(value, "inbox", issues),
    },
    Section {
        name: "outbox",
        read: |value, draft, issues, _| draft.outbox = read_table(value, "outbox", issues),
    },
    Section {
        name: "log",
        read: |value, draft, issues, _| draft.log = read_table(value, "log", issues),
    },
    Section {
        name: "access",
        read: |value, draft, issues, _| draft.access = Some(read_access(value, issues)),
    },
    Section {
        name: "apps",
        read: read_apps,
    },
];

impl Config {
    /// Reads and checks a config file; the first error, if any.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Self, ConfigError> {
        Self::check_file(path, env, &CheckOptions::default()).map_err(first)
    }

    /// Checks a config given as text; `file` names it in errors. The first error, if any.
    pub fn parse(text: &str, file: &str, env: &dyn Env) -> Result<Self, ConfigError> {
        Self::check(text, file, env, &CheckOptions::default()).map_err(first)
    }

    /// Reads and checks a config file; every error.
    pub fn check_file(
        path: &Path,
        env: &dyn Env,
        options: &CheckOptions,
    ) -> Result<Self, Vec<ConfigError>> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                file: file.clone(),
                key: "(file)".into(),
                reason: format!("cannot read: {e}"),
            }]
        })?;
        // Refused, not warned: a warning on stderr is easy to miss, and the file's secrets
        // are exposed for as long as it stays so. Reported first, with the file's other errors.
        let exposure = check_exposure(path, &text);
        match (Self::check(&text, &file, env, options), exposure) {
            (result, None) => result,
            (Ok(_), Some(exposed)) => Err(vec![exposed]),
            (Err(mut errors), Some(exposed)) => {
                errors.insert(0, exposed);
                Err(errors)
            }
        }
    }

    /// Checks a config given as text and reports every error: all of them but a TOML syntax
    /// error, which stops the reading there.
    pub fn check(
        text: &str,
        file: &str,
        env: &dyn Env,
        options: &CheckOptions,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut issues = Issues {
            file: file.to_string(),
            found: Vec::new(),
        };
        let mut value: toml::Value = match toml::from_str(text) {
            Ok(value) => value,
            Err(e) => {
                let at = e
                    .span()
                    .map(|s| format!("line {}", text[..s.start].lines().count().max(1)))
                    .unwrap_or_else(|| "(syntax)".into());
                issues.add(Stage::Shape, &at, e.message());
                return Err(issues.into_errors());
            }
        };
        expand(&mut value, "", env, &mut issues);
        let mut draft = Draft::default();
        if let Some(top) = value.as_table() {
            for (name, section) in top {
                match SECTIONS.iter().find(|s| s.name == name) {
                    Some(s) => (s.read)(section, &mut draft, &mut issues, options),
                    None => issues.add(
                        Stage::Shape,
                        name,
                        format!("unknown section; the sections are {}", section_names()),
                    ),
                }
            }
        }
        let config = finish(draft, file, env, options, &mut issues);
        if issues.found.is_empty() {
            Ok(config)
        } else {
            Err(issues.into_errors())
        }
    }

    /// Only the `[store]` section of a config file (with `${VAR}` expansion there), for the
    /// commands that need nothing but the store (`token`, `audit`): they work without Slack's
    /// tokens in the environment.
    pub fn load_store(path: &Path, env: &dyn Env) -> Result<StoreConfig, ConfigError> {
        let file = path.display().to_string();
        let err = |key: &str, reason: String| ConfigError {
            file: file.clone(),
            key: key.to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("(file)", format!("cannot read: {e}")))?;
        let mut value: toml::Table =
            toml::from_str(&text).map_err(|e| err("(syntax)", e.message().to_string()))?;
        let Some(mut store) = value.remove("store") else {
            return Ok(StoreConfig::default());
        };
        let mut issues = Issues {
            file: file.clone(),
            found: Vec::new(),
        };
        expand(&mut store, "store", env, &mut issues);
        if let Some((_, first)) = issues.found.into_iter().min_by_key(|(stage, _)| *stage) {
            return Err(first);
        }
        serde_path_to_error::deserialize(store).map_err(|e| {
            err(
                format!("store.{}", e.path()).trim_end_matches('.'),
                without_values(e.inner()),
            )
        })
    }

    /// What a reload cannot apply: the keys outside `[apps.*]` whose values differ between
    /// the config in force and `next` (those need a restart). Compared by value, secrets
    /// included; only the keys' names are returned.
    pub fn needs_restart(&self, next: &Config) -> Vec<&'static str> {
        let secret = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_string());
        let (a, b) = (self, next);
        [
            ("slack.bot_token", a.slack.bot_token != b.slack.bot_token),
            (
                "slack.app_token",
                secret(&a.slack.app_token) != secret(&b.slack.app_token),
            ),
            (
                "slack.signing_secret",
                secret(&a.slack.signing_secret) != secret(&b.slack.signing_secret),
            ),
            ("slack.api_url", a.slack.api_url != b.slack.api_url),
            (
                "slack.socket_connections",
                a.slack.socket_connections != b.slack.socket_connections,
            ),
            ("server.listen", a.server.listen != b.server.listen),
            ("server.pid_file", a.server.pid_file != b.server.pid_file),
            (
                "server.shutdown_timeout_ms",
                a.server.shutdown_timeout_ms != b.server.shutdown_timeout_ms,
            ),
            ("store.url", a.store.url != b.store.url),
            ("engine.lease_ms", a.engine.lease_ms != b.engine.lease_ms),
            (
                "engine.poll_interval_ms",
                a.engine.poll_interval_ms != b.engine.poll_interval_ms,
            ),
            (
                "audit.retention_days",
                a.audit.retention_days != b.audit.retention_days,
            ),
            (
                "inbox.retention_days",
                a.inbox.retention_days != b.inbox.retention_days,
            ),
            (
                "outbox.retention_days",
                a.outbox.retention_days != b.outbox.retention_days,
            ),
            ("log.format", a.log.format != b.log.format),
            // Roles and gates; groups and bindings change at run time (`switchyard access`).
            ("access", a.access != b.access),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }

    /// Only the `[access]` section of a config file (`None` without one), checked as
    /// [`Config::check`] checks it: for the `access` commands, which change the store's groups
    /// and bindings and need the roles, but not Slack's tokens.
    pub fn load_access(
        path: &Path,
        env: &dyn Env,
    ) -> Result<Option<AccessConfig>, Vec<ConfigError>> {
        let file = path.display().to_string();
        let mut issues = Issues {
            file: file.clone(),
            found: Vec::new(),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                issues.add(Stage::Shape, "(file)", format!("cannot read: {e}"));
                return Err(issues.into_errors());
            }
        };
        let mut value: toml::Table = match toml::from_str(&text) {
            Ok(value) => value,
            Err(e) => {
                issues.add(Stage::Shape, "(syntax)", e.message());
                return Err(issues.into_errors());
            }
        };
        let Some(mut section) = value.remove("access") else {
            return Ok(None);
        };
        expand(&mut section, "access", env, &mut issues);
        let access = read_access(&section, &mut issues);
        if issues.found.is_empty() {
            Ok(Some(access))
        } else {
            Err(issues.into_errors())
        }
    }

    /// An app's section, read into its own type; errors name `apps.<name>.<key>`.
    pub fn app_section<T: DeserializeOwned + Default>(&self, app: &str) -> Result<T, ConfigError> {
        let Some(value) = self.apps.get(app) else {
            return Ok(T::default());
        };
        let mut issues = Issues {
            file: self.source.clone(),
            found: Vec::new(),
        };
        let section = read_table::<T>(value, &format!("apps.{app}"), &mut issues);
        match issues.into_errors().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(section),
        }
    }
}

impl Config {
    /// [`Config::app_section`], then [`ValidateSection::validate`]: the first problem is the
    /// error.
    pub fn app_section_validated<T: DeserializeOwned + Default + ValidateSection>(
        &self,
        app: &str,
    ) -> Result<T, ConfigError> {
        let section: T = self.app_section(app)?;
        match section.validate().into_iter().next() {
            Some((key, reason)) => Err(ConfigError {
                file: self.source.clone(),
                key: format!("apps.{app}.{key}"),
                reason,
            }),
            None => Ok(section),
        }
    }
}

fn first(mut errors: Vec<ConfigError>) -> ConfigError {
    // `check` returns at least one error when it fails.
    errors.swap_remove(0)
}

fn section_names() -> String {
    SECTIONS
        .iter()
        .map(|s| format!("[{}]", s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A deserializer's message without the value it found: after `${VAR}` expansion that value
/// may be a secret (`invalid type: string "xoxb-…", expected a sequence`), so the reason
/// names the kind of value only (`invalid type: a string, expected a sequence`).
fn without_values(e: &impl std::fmt::Display) -> String {
    let message = e.to_string();
    let mut out = String::with_capacity(message.len());
    let mut rest = message.as_str();
    loop {
        let string_at = rest.find("string \"");
        let variant_at = rest.find("variant `");
        match (string_at, variant_at) {
            // serde writes a found string with `{:?}`: it ends at the first unescaped quote.
            (Some(at), v) if v.is_none_or(|v| at < v) => {
                out.push_str(&rest[..at]);
                out.push_str("a string");
                let quoted = &rest[at + "string \"".len()..];
                let mut escaped = false;
                let end = quoted
                    .char_indices()
                    .find(|&(_, c)| {
                        let close = c == '"' && !escaped;
                        escaped = c == '\\' && !escaped;
                        close
                    })
                    .map_or(quoted.len(), |(i, _)| i + 1);
                rest = &quoted[end..];
            }
            // An unknown variant is written raw in backticks, before `, expected`.
            (_, Some(at)) => {
                out.push_str(&rest[..at]);
                out.push_str("variant");
                let quoted = &rest[at + "variant `".len()..];
                let end = quoted
                    .rfind("`, expected")
                    .or_else(|| quoted.rfind('`'))
                    .map_or(quoted.len(), |i| i + 1);
                rest = &quoted[end..];
            }
            _ => break,
        }
    }
    out.push_str(rest);
    out
}

/// Reads a table into `T` key by key, so every unknown key and wrong type is reported; the keys
/// that failed are left out (to their defaults).
fn read_table<T: DeserializeOwned + Default>(
    value: &toml::Value,
    prefix: &str,
    issues: &mut Issues,
) -> T {
    let Some(table) = value.as_table() else {
        issues.add(
            Stage::Shape,
            prefix,
            format!("must be a table ([{prefix}]), not a {}", value.type_str()),
        );
        return T::default();
    };
    let mut readable = toml::Table::new();
    for (key, item) in table {
        let alone = toml::Table::from_iter([(key.clone(), item.clone())]);
        match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(alone)) {
            Ok(_) => {
                readable.insert(key.clone(), item.clone());
            }
            Err(e) => {
                let path = e.path().to_string();
                let inner = if path == "." { key.clone() } else { path };
                issues.add(
                    Stage::Shape,
                    &format!("{prefix}.{inner}"),
                    without_values(e.inner()),
                );
            }
        }
    }
    match serde_path_to_error::deserialize(toml::Value::Table(readable)) {
        Ok(section) => section,
        Err(e) => {
            // Keys that are fine alone but not together; none of ours today.
            let path = e.path().to_string();
            let key = if path == "." {
                prefix.to_string()
            } else {
                format!("{prefix}.{path}")
            };
            issues.add(Stage::Shape, &key, without_values(e.inner()));
            T::default()
        }
    }
}

fn read_apps(value: &toml::Value, draft: &mut Draft, issues: &mut Issues, options: &CheckOptions) {
    let Some(table) = value.as_table() else {
        issues.add(
            Stage::Shape,
            "apps",
            format!(
                "must be a table ([apps.<name>]), not a {}",
                value.type_str()
            ),
        );
        return;
    };
    draft.apps = table.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let Some(known) = options.apps else {
        return;
    };
    for (name, section) in table {
        let key = format!("apps.{name}");
        match known.iter().find(|a| a.name == name) {
            Some(app) => (app.check)(section, &key, issues),
            None => {
                let names: Vec<&str> = known.iter().map(|a| a.name).collect();
                issues.add(
                    Stage::Shape,
                    &key,
                    format!("unknown app; the apps are {}", names.join(", ")),
                );
            }
        }
    }
}

/// The environment, defaults and the checks across keys, on what could be read.
fn finish(
    draft: Draft,
    file: &str,
    env: &dyn Env,
    options: &CheckOptions,
    issues: &mut Issues,
) -> Config {
    let raw = draft.slack;
    let from_env = |name: &str| env.var(name).map(Secret::new);
    let mut unreadable = Vec::new();
    let mut given = |value: Option<Secret>, path: Option<String>, key: &'static str| {
        let Some(path) = path else { return value };
        if value.is_some() {
            issues.add(
                Stage::Meaning,
                &format!("slack.{key}_file"),
                format!("give slack.{key} or slack.{key}_file, not both"),
            );
            return value;
        }
        match read_secret_file(&path, file) {
            Ok(secret) => Some(secret),
            Err(reason) => {
                issues.add(Stage::Meaning, &format!("slack.{key}_file"), reason);
                unreadable.push(key);
                None
            }
        }
    };
    let bot_token = given(raw.bot_token, raw.bot_token_file, "bot_token");
    let app_token = given(raw.app_token, raw.app_token_file, "app_token");
    let signing_secret = given(
        raw.signing_secret,
        raw.signing_secret_file,
        "signing_secret",
    );
    // A secrets file that failed is reported as such, not again as a missing secret.
    let failed = |key: &str| unreadable.contains(&key);
    let bot_token = match bot_token.or_else(|| from_env("SLACK_BOT_TOKEN")) {
        Some(token) => {
            if !token.expose().starts_with("xoxb-") {
                issues.add(
                    Stage::Meaning,
                    "slack.bot_token",
                    "must be a bot token (xoxb-…)",
                );
            }
            token
        }
        None => {
            if !options.without_credentials && !failed("bot_token") {
                issues.add(
                    Stage::Meaning,
                    "slack.bot_token",
                    "missing: set it here, in SLACK_BOT_TOKEN or in a file (bot_token_file)",
                );
            }
            Secret::new("")
        }
    };
    let app_token = app_token.or_else(|| from_env("SLACK_APP_TOKEN"));
    if let Some(t) = &app_token
        && !t.expose().starts_with("xapp-")
    {
        issues.add(
            Stage::Meaning,
            "slack.app_token",
            "must be an app-level token (xapp-…)",
        );
    }
    let signing_secret = signing_secret.or_else(|| from_env("SLACK_SIGNING_SECRET"));
    if app_token.is_none()
        && signing_secret.is_none()
        && !options.without_credentials
        && !failed("app_token")
        && !failed("signing_secret")
    {
        issues.add(
            Stage::Meaning,
            "slack.signing_secret",
            "missing: without an app token (Socket Mode), Slack posts to us over HTTP and the signing secret is needed (or set SLACK_SIGNING_SECRET)",
        );
    }
    let mut api_url = raw
        .api_url
        .or_else(|| env.var("SLACK_API_URL"))
        .unwrap_or_else(|| DEFAULT_API_URL.into());
    if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
        issues.add(
            Stage::Meaning,
            "slack.api_url",
            format!(
                "{:?} is not an http(s) URL",
                switchyard_store::redact(&api_url)
            ),
        );
    }
    if !api_url.ends_with('/') {
        api_url.push('/');
    }
    let socket_connections = raw.socket_connections.unwrap_or(2);
    if !(1..=10).contains(&socket_connections) {
        issues.add(
            Stage::Meaning,
            "slack.socket_connections",
            format!("{socket_connections} is out of range: Slack allows 1 to 10"),
        );
    }
    let app_name = raw.app_name.unwrap_or_else(|| DEFAULT_APP_NAME.into());
    let name_chars = app_name.chars().count();
    if app_name.trim().is_empty() || name_chars > 35 {
        issues.add(
            Stage::Meaning,
            "slack.app_name",
            format!("{name_chars} characters: Slack allows 1 to 35"),
        );
    }
    if let Some(description) = &raw.app_description
        && description.chars().count() > 140
    {
        issues.add(
            Stage::Meaning,
            "slack.app_description",
            format!(
                "{} characters: Slack allows up to 140",
                description.chars().count()
            ),
        );
    }
    if let Some(url) = &draft.server.public_url
        && let Err(e) = crate::manifest::request_base(url)
    {
        issues.add(Stage::Meaning, "server.public_url", e.to_string());
    }
    Config {
        source: file.to_string(),
        slack: SlackConfig {
            bot_token,
            app_token,
            signing_secret,
            api_url,
            socket_connections,
            app_name,
            app_description: raw.app_description,
        },
        server: draft.server,
        store: draft.store,
        engine: draft.engine,
        audit: draft.audit,
        inbox: draft.inbox,
        outbox: draft.outbox,
        log: draft.log,
        access: draft.access,
        apps: draft.apps,
    }
}

/// `[access]`, key by key, then its own checks (roles referred to, patterns, subjects, gates).
///
/// ```toml
/// [access]
/// default_role = "viewer"                 # for anyone with no role bound; optional
/// [access.roles]                          # role = permission-name patterns (`*` any run)
/// admin    = ["*"]
/// operator = ["*.status", "*.search", "*.report", "alerts.ack", "alerts.comment"]
/// viewer   = ["*.status", "*.search", "*.view", "ping"]
/// [access.groups]                         # static groups: user ids, usergroup:S…
/// oncall = ["U0AAA", "U0BBB"]
/// [access.bind]                           # role = subjects: U…, group:<name>, usergroup:S…
/// admin    = ["U0ADMIN"]
/// operator = ["group:oncall", "usergroup:S0123"]
/// [[access.gates]]                        # names confined to channels (ids), for every role
/// actions   = ["machines.*"]
/// channels  = ["C0CONTROL"]
/// elsewhere = "refuse"                    # or "ignore": say nothing (still audited)
/// ```
fn read_access(value: &toml::Value, issues: &mut Issues) -> AccessConfig {
    let access: AccessConfig = read_table(value, "access", issues);
    for (key, reason) in crate::access::check_config(&access) {
        issues.add(Stage::Meaning, &format!("access.{key}"), reason);
    }
    access
}

/// Secrets files are tokens, not documents: anything larger is the wrong file.
const SECRET_FILE_LIMIT: u64 = 64 * 1024;

/// A secret from `path` (relative to the config file's folder), which must be a regular file
/// that nobody but its owner may read or write; the trailing newline is dropped. Errors name the
/// file and never its content.
fn read_secret_file(path: &str, config_file: &str) -> Result<Secret, String> {
    let folder = Path::new(config_file).parent().unwrap_or(Path::new(""));
    let path = folder.join(path);
    let shown = path.display();
    let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if let Some(mode) = unix_mode(&meta)
        && mode & 0o077 != 0
    {
        return Err(format!(
            "{shown} may be read by others than its owner (mode {:04o}): `chmod 600 {shown}`",
            mode & 0o7777
        ));
    }
    if meta.len() > SECRET_FILE_LIMIT {
        return Err(format!(
            "{shown} is larger than {SECRET_FILE_LIMIT} bytes: not a secret"
        ));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let secret = text.trim_end_matches(['\n', '\r', ' ', '\t']);
    if secret.is_empty() {
        return Err(format!("{shown} is empty"));
    }
    Ok(Secret::new(secret))
}

#[cfg(unix)]
fn unix_mode(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(meta.permissions().mode())
}

#[cfg(not(unix))]
fn unix_mode(_: &std::fs::Metadata) -> Option<u32> {
    None
}

/// The file's mode when anyone on the machine can read it: readable by others, in folders
/// others may enter (a file in a private folder, such as a temporary one, is not).
fn readable_by_everyone(path: &Path) -> Option<u32> {
    let mode = unix_mode(&std::fs::metadata(path).ok()?)?;
    if mode & 0o004 == 0 {
        return None;
    }
    let absolute = std::path::absolute(path).ok()?;
    for folder in absolute.ancestors().skip(1) {
        let folder_mode = unix_mode(&std::fs::metadata(folder).ok()?)?;
        if folder_mode & 0o001 == 0 {
            return None;
        }
    }
    Some(mode & 0o7777)
}

/// The keys whose secret is written in the file itself (not `${VAR}`, not a `*_file`): Slack's
/// tokens, a store URL with a password, and the apps' secret-looking keys (as `config show`
/// hides them).
fn literal_secrets(text: &str) -> Vec<String> {
    fn literal(value: &toml::Value) -> bool {
        value
            .as_str()
            .is_some_and(|s| !s.is_empty() && !s.contains("${"))
    }
    fn walk(value: &toml::Value, path: &str, secret: bool, found: &mut Vec<String>) {
        match value {
            toml::Value::Table(table) => {
                for (k, v) in table {
                    let lower = k.to_ascii_lowercase();
                    let secret = secret || SECRET_KEY_WORDS.iter().any(|w| lower.contains(w));
                    walk(v, &format!("{path}.{k}"), secret, found);
                }
            }
            toml::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"), secret, found);
                }
            }
            v if secret && literal(v) => found.push(path.to_string()),
            _ => {}
        }
    }
    let Ok(value) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if let Some(slack) = value.get("slack").and_then(toml::Value::as_table) {
        for key in ["bot_token", "app_token", "signing_secret"] {
            if slack.get(key).is_some_and(literal) {
                found.push(format!("slack.{key}"));
            }
        }
    }
    if let Some(url) = value
        .get("store")
        .and_then(|s| s.get("url"))
        .and_then(toml::Value::as_str)
        && !url.contains("${")
        && switchyard_store::redact(url) != url
    {
        found.push("store.url".into());
    }
    if let Some(apps) = value.get("apps") {
        walk(apps, "apps", false, &mut found);
    }
    found
}

/// A config file anyone on the machine can read should not hold secrets itself: the problem,
/// naming the keys and the fix. [`Config::check_file`] refuses such a file (so `serve`,
/// `check-config`, `config show`, `doctor` and a reload do).
pub fn check_exposure(path: &Path, text: &str) -> Option<ConfigError> {
    let mode = readable_by_everyone(path)?;
    let secrets = literal_secrets(text);
    if secrets.is_empty() {
        return None;
    }
    Some(ConfigError {
        file: path.display().to_string(),
        key: "(file)".into(),
        reason: format!(
            "anyone on this machine can read this file (mode {mode:04o}) and it holds \
             secrets written in it ({}); `chmod 600` it, or take them from the environment \
             (`bot_token = \"${{SLACK_BOT_TOKEN}}\"`) or from files only you can read \
             (`bot_token_file = \"/etc/switchyard/bot_token\"`)",
            secrets.join(", ")
        ),
    })
}

fn serialize_redacted_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&switchyard_store::redact(url))
}

/// Words in a key that mark its value as a secret in an app's section: apps' config types are
/// theirs, so `config show` goes by name (and hides passwords in URLs).
const SECRET_KEY_WORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "key",
    "credential",
    "webhook",
];

fn serialize_app_sections<S: Serializer>(
    apps: &BTreeMap<String, toml::Value>,
    s: S,
) -> Result<S::Ok, S::Error> {
    fn hide(value: &toml::Value, secret: bool) -> toml::Value {
        match value {
            toml::Value::String(_) if secret => toml::Value::String("[redacted]".into()),
            toml::Value::String(text) => toml::Value::String(switchyard_store::redact(text)),
            toml::Value::Array(items) => {
                toml::Value::Array(items.iter().map(|v| hide(v, secret)).collect())
            }
            toml::Value::Table(table) => toml::Value::Table(
                table
                    .iter()
                    .map(|(k, v)| {
                        let lower = k.to_ascii_lowercase();
                        let secret = secret || SECRET_KEY_WORDS.iter().any(|w| lower.contains(w));
                        (k.clone(), hide(v, secret))
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let shown: BTreeMap<&String, toml::Value> =
        apps.iter().map(|(k, v)| (k, hide(v, false))).collect();
    shown.serialize(s)
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string value; a string that cannot be
/// expanded is left as it is, and reported.
fn expand(value: &mut toml::Value, path: &str, env: &dyn Env, issues: &mut Issues) {
    match value {
        toml::Value::String(s) => match expand_str(s, env) {
            Ok(expanded) => *s = expanded,
            Err(reason) => issues.add(Stage::Expand, path, reason),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand(item, &format!("{path}[{i}]"), env, issues);
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let key = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                expand(v, &key, env, issues);
            }
        }
        _ => {}
    }
}

/// Errors never echo the value (it may be a secret), only the variable's name.
fn expand_str(s: &str, env: &dyn Env) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            // The value is not echoed: it may be a secret with a stray `${`.
            .ok_or_else(|| "a `${` without its `}`".to_string())?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(
                "`${…}` must hold a variable name (letters, digits, `_`), optionally `:-default`"
                    .into(),
            );
        }
        match (env.var(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tokens_from_the_environment() {
        let c = Config::parse(
            "",
            "s.toml",
            &env(&[
                ("SLACK_BOT_TOKEN", "xoxb-1"),
                ("SLACK_APP_TOKEN", "xapp-1"),
                ("SLACK_API_URL", "http://127.0.0.1:1/api"),
            ]),
        )
        .unwrap();
        assert!(c.slack.socket_mode());
        assert_eq!(c.slack.api_url, "http://127.0.0.1:1/api/");
        assert_eq!(c.slack.socket_connections, 2);
    }

    #[test]
    fn a_wrong_type_error_does_not_echo_an_expanded_secret() {
        // The fuzzer's finding: a secret expanded under a key of the wrong type was echoed.
        let text = "[slack]\nsocket_connections = \"${SECRET}\"\n[log]\nformat = \"${SECRET}\"\n";
        let secret = "xoxb-very-\\\"secret";
        let errors = Config::check(
            text,
            "s.toml",
            &env(&[("SECRET", secret)]),
            &Default::default(),
        )
        .unwrap_err();
        assert!(!errors.is_empty());
        for e in &errors {
            let shown = e.to_string();
            assert!(!shown.contains("very"), "{shown}");
        }
        assert!(
            errors.iter().any(|e| e.to_string().contains("a string")),
            "{errors:?}"
        );
    }

    #[test]
    fn expansion_and_defaults() {
        let c = Config::parse(
            "[slack]\nbot_token = \"${TOKEN}\"\nsigning_secret = \"${SECRET:-s3cret}\"\n",
            "s.toml",
            &env(&[("TOKEN", "xoxb-2")]),
        )
        .unwrap();
        assert_eq!(c.slack.bot_token.expose(), "xoxb-2");
        assert_eq!(c.slack.signing_secret.unwrap().expose(), "s3cret");
    }

    #[test]
    fn the_inbox_keeps_handled_items_a_week_unless_told() {
        let base = "[slack]\nbot_token = \"xoxb-1\"\nsigning_secret = \"s\"\n";
        let c = Config::parse(base, "s.toml", &env(&[])).unwrap();
        assert_eq!(c.inbox.retention_days, 7);
        let c = Config::parse(
            &format!("{base}[inbox]\nretention_days = 0\n"),
            "s.toml",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(c.inbox.retention_days, 0);
        let e = Config::parse(
            &format!("{base}[inbox]\nretention_days = \"long\"\n"),
            "s.toml",
            &env(&[]),
        )
        .unwrap_err();
        assert!(e.key.starts_with("inbox"), "{e}");
    }

    #[test]
    fn the_outbox_keeps_sent_calls_a_week_unless_told() {
        let base = "[slack]\nbot_token = \"xoxb-1\"\nsigning_secret = \"s\"\n";
        let c = Config::parse(base, "s.toml", &env(&[])).unwrap();
        assert_eq!(c.outbox.retention_days, 7);
        let c = Config::parse(
            &format!("{base}[outbox]\nretention_days = 0\n"),
            "s.toml",
            &env(&[]),
        )
        .unwrap();
        assert_eq!(c.outbox.retention_days, 0);
        let e = Config::parse(
            &format!("{base}[outbox]\nretention_days = -1\n"),
            "s.toml",
            &env(&[]),
        )
        .unwrap_err();
        assert!(e.key.starts_with("outbox"), "{e}");
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let e = Config::parse("[slack]\nbot_tokn = \"x\"\n", "s.toml", &env(&[])).unwrap_err();
        assert_eq!(e.file, "s.toml");
        assert!(e.key.starts_with("slack"), "{e}");
        assert!(e.reason.contains("bot_tokn"), "{e}");
        let e =
            Config::parse("[slack]\nbot_token = \"${NOPE}\"\n", "s.toml", &env(&[])).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.reason.contains("NOPE")),
            ("slack.bot_token", true),
            "{e}"
        );
        let e = Config::parse(
            "[server]\nlisten = 3\n",
            "s.toml",
            &env(&[("SLACK_BOT_TOKEN", "xoxb-1")]),
        )
        .unwrap_err();
        assert_eq!(e.key, "server.listen", "{e}");
        let e = Config::parse("", "s.toml", &env(&[("SLACK_BOT_TOKEN", "xoxb-1")])).unwrap_err();
        assert_eq!(e.key, "slack.signing_secret", "{e}");
        let e = Config::parse("[slack\n", "s.toml", &env(&[])).unwrap_err();
        assert!(e.key.starts_with("line"), "{e}");
    }

    #[test]
    fn secrets_never_show() {
        let c = Config::parse(
            "[slack]\nbot_token = \"xoxb-very-secret\"\nsigning_secret = \"shh-secret\"\n",
            "s.toml",
            &env(&[]),
        )
        .unwrap();
        let shown = format!("{c:?} {}", serde_json::to_string(&c).unwrap());
        assert!(
            !shown.contains("very-secret") && !shown.contains("shh-secret"),
            "{shown}"
        );
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct PingLike {
        enabled: bool,
    }

    fn keys(errors: &[ConfigError]) -> Vec<&str> {
        errors.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn check_reports_every_error() {
        let text = r#"
[slack]
bot_token = "${NOPE}"
app_token = "not-an-app-token"
socket_connections = 40
colour = "blue"
size = 3

[server]
listen = "nowhere"

[store]
url = 5

[engine]
lease_ms = "long"
poll_interval_ms = -1

[apps.ping]
enabled = "yes"

[apps.pong]
enabled = true

[extra]
x = 1
"#;
        let apps = [AppSection::of::<PingLike>("ping")];
        let options = CheckOptions {
            apps: Some(&apps),
            ..CheckOptions::default()
        };
        let errors = Config::check(text, "s.toml", &env(&[]), &options).unwrap_err();
        let mut found = keys(&errors);
        found.sort();
        assert_eq!(
            found,
            [
                "apps.ping.enabled",
                "apps.pong",
                "engine.lease_ms",
                "engine.poll_interval_ms",
                "extra",
                "server.listen",
                "slack.app_token",
                "slack.bot_token",
                "slack.colour",
                "slack.size",
                "slack.socket_connections",
                "store.url",
            ],
            "{errors:#?}"
        );
        assert!(errors.iter().all(|e| e.file == "s.toml"));
        let bot = errors.iter().find(|e| e.key == "slack.bot_token").unwrap();
        assert!(bot.reason.contains("NOPE"), "expansion first: {bot}");
        let unknown = errors.iter().find(|e| e.key == "apps.pong").unwrap();
        assert!(unknown.reason.contains("ping"), "{unknown}");
    }

    #[test]
    fn access_is_checked_with_the_rest() {
        let text = r##"
[slack]
bot_token = "xoxb-1"
app_token = "xapp-1"
[access]
default_role = "nobody"
colour = "red"
[access.roles]
viewer = ["ping", "Bad Pattern"]
[access.bind]
admin = ["U0ADMIN"]
[[access.gates]]
actions = ["machines.*"]
channels = ["#control"]
elsewhere = "shout"
"##;
        let errors =
            Config::check(text, "s.toml", &env(&[]), &CheckOptions::default()).unwrap_err();
        let mut found = keys(&errors);
        found.sort();
        assert_eq!(
            found,
            [
                "access.bind.admin",
                "access.colour",
                "access.default_role",
                "access.gates[0].elsewhere",
                "access.roles.viewer[1]",
            ],
            "{errors:#?}"
        );
        let good = "[slack]\nbot_token = \"xoxb-1\"\napp_token = \"xapp-1\"\n[access]\ndefault_role = \"viewer\"\n[access.roles]\nviewer = [\"ping\"]\n";
        let c = Config::parse(good, "s.toml", &env(&[])).unwrap();
        assert_eq!(c.access.unwrap().default_role.as_deref(), Some("viewer"));
        let c = Config::parse(
            "[slack]\nbot_token = \"xoxb-1\"\napp_token = \"xapp-1\"\n",
            "s.toml",
            &env(&[]),
        )
        .unwrap();
        assert!(c.access.is_none(), "no section, nothing checked");
    }

    #[test]
    fn expansion_errors_do_not_echo_values() {
        let errors = Config::check(
            "[slack]\nbot_token = \"xoxb-shh-${oops\"\nsigning_secret = \"shh2-${not a name}\"\n",
            "s.toml",
            &env(&[]),
            &CheckOptions::default(),
        )
        .unwrap_err();
        assert_eq!(keys(&errors), ["slack.bot_token", "slack.signing_secret"]);
        let shown = format!("{errors:?}");
        assert!(!shown.contains("shh"), "{shown}");
    }

    #[test]
    fn check_without_known_apps_leaves_them_to_the_apps() {
        let c = Config::check(
            "[apps.anything]\nx = 1\n",
            "s.toml",
            &env(&[("SLACK_BOT_TOKEN", "xoxb-1"), ("SLACK_APP_TOKEN", "xapp-1")]),
            &CheckOptions::default(),
        )
        .unwrap();
        let e = c.app_section::<PingLike>("anything").unwrap_err();
        assert_eq!(e.key, "apps.anything.x", "{e}");
    }

    #[test]
    fn the_manifest_needs_no_credentials() {
        let options = CheckOptions {
            without_credentials: true,
            ..CheckOptions::default()
        };
        let c = Config::check("", "defaults", &env(&[]), &options).unwrap();
        assert!(!c.slack.socket_mode());
        assert_eq!(c.slack.app_name, DEFAULT_APP_NAME);
        let errors = Config::check(
            "[slack]\nbot_token = \"oops\"\napp_name = \"\"\n",
            "s.toml",
            &env(&[]),
            &options,
        )
        .unwrap_err();
        assert_eq!(keys(&errors), ["slack.bot_token", "slack.app_name"]);
    }

    #[test]
    fn operations_keys_are_checked_and_reload_names_what_needs_a_restart() {
        let e = env(&[("SLACK_BOT_TOKEN", "xoxb-1"), ("SLACK_APP_TOKEN", "xapp-1")]);
        let errors = Config::check(
            "[server]\npublic_url = \"ftp://ops.example\"\n[log]\nformat = \"xml\"\n",
            "s.toml",
            &e,
            &CheckOptions::default(),
        )
        .unwrap_err();
        assert_eq!(keys(&errors), ["log.format", "server.public_url"]);
        let a = Config::parse("[apps.ping]\nenabled = true\n", "s.toml", &e).unwrap();
        assert_eq!(a.server.shutdown_timeout_ms, 10_000);
        assert_eq!(a.log.format, LogFormat::Text);
        let b = Config::parse(
            "[apps.ping]\nenabled = false\n[server]\nlisten = \"127.0.0.1:9\"\n[log]\nformat = \"json\"\n",
            "s.toml",
            &e,
        )
        .unwrap();
        assert_eq!(a.needs_restart(&b), ["server.listen", "log.format"]);
        let c = Config::parse("[apps.ping]\nenabled = false\n", "s.toml", &e).unwrap();
        assert!(a.needs_restart(&c).is_empty());
    }

    #[test]
    fn urls_and_app_secrets_are_redacted_when_shown() {
        let c = Config::parse(
            "[slack]\nbot_token = \"xoxb-1\"\napp_token = \"xapp-1\"\n\
             [store]\nurl = \"postgres://sy:hunter2@db/sy?password=hunter3\"\n\
             [apps.alerts]\nwebhook_url = \"https://hooks.example/T/B/abc\"\nauth = { api_key = \"k-123\" }\nsource = \"http://u:pw-1@grafana\"\nchannel = \"#ops\"\n",
            "s.toml",
            &env(&[]),
        )
        .unwrap();
        let shown = format!(
            "{} {}",
            serde_json::to_string(&c).unwrap(),
            toml::to_string(&c).unwrap()
        );
        for secret in ["hunter2", "hunter3", "hooks.example", "k-123", "pw-1"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("#ops") && shown.contains("postgres://sy:***@db"),
            "{shown}"
        );
    }
}
