//! `switchyard.toml`: the engine's part of the configuration.
//!
//! One TOML file with `${VAR}` (and `${VAR:-default}`) expansion in string values, and the
//! environment variables Slack's own tools use (`SLACK_BOT_TOKEN`, `SLACK_APP_TOKEN`,
//! `SLACK_SIGNING_SECRET`, `SLACK_API_URL`) for what the file leaves out. Every error names the
//! file, the key and the reason. Apps read their own `[apps.<name>]` sections.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize, Serializer};

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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    slack: RawSlack,
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    store: StoreConfig,
    #[serde(default)]
    engine: EngineConfig,
    #[serde(default)]
    audit: AuditConfig,
    #[serde(default)]
    apps: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    bot_token: Option<Secret>,
    app_token: Option<Secret>,
    signing_secret: Option<Secret>,
    api_url: Option<String>,
    socket_connections: Option<u8>,
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
    pub api_url: String,
    /// Socket Mode connections kept open (1 to 10).
    pub socket_connections: u8,
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
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 3000))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://switchyard.db` (default) or `postgres://…`.
    #[serde(default = "default_store_url")]
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
    /// `[apps.<name>]` sections, read by each app.
    pub apps: BTreeMap<String, toml::Value>,
}

pub const DEFAULT_API_URL: &str = "https://slack.com/api/";

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &file, env)
    }

    /// Checks a config given as text; `file` names it in errors.
    pub fn parse(text: &str, file: &str, env: &dyn Env) -> Result<Self, ConfigError> {
        let err = |key: &str, reason: String| ConfigError {
            file: file.to_string(),
            key: key.to_string(),
            reason,
        };
        let mut value: toml::Value = toml::from_str(text).map_err(|e| {
            let reason = e.message().to_string();
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start].lines().count().max(1);
                    format!("line {line}")
                })
                .unwrap_or_else(|| "(syntax)".into());
            err(&at, reason)
        })?;
        expand(&mut value, "", env).map_err(|(key, reason)| err(&key, reason))?;
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            err(
                if key == "." { "(top level)" } else { &key },
                e.inner().to_string(),
            )
        })?;
        let from_env = |name: &str| env.var(name).map(Secret::new);
        let bot_token = raw
            .slack
            .bot_token
            .or_else(|| from_env("SLACK_BOT_TOKEN"))
            .ok_or_else(|| {
                err(
                    "slack.bot_token",
                    "missing: set it here or in SLACK_BOT_TOKEN".into(),
                )
            })?;
        if !bot_token.expose().starts_with("xoxb-") {
            return Err(err(
                "slack.bot_token",
                "must be a bot token (xoxb-…)".into(),
            ));
        }
        let app_token = raw.slack.app_token.or_else(|| from_env("SLACK_APP_TOKEN"));
        if let Some(t) = &app_token
            && !t.expose().starts_with("xapp-")
        {
            return Err(err(
                "slack.app_token",
                "must be an app-level token (xapp-…)".into(),
            ));
        }
        let signing_secret = raw
            .slack
            .signing_secret
            .or_else(|| from_env("SLACK_SIGNING_SECRET"));
        if app_token.is_none() && signing_secret.is_none() {
            return Err(err(
                "slack.signing_secret",
                "missing: without an app token (Socket Mode), Slack posts to us over HTTP and the signing secret is needed (or set SLACK_SIGNING_SECRET)".into(),
            ));
        }
        let mut api_url = raw
            .slack
            .api_url
            .or_else(|| env.var("SLACK_API_URL"))
            .unwrap_or_else(|| DEFAULT_API_URL.into());
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(err(
                "slack.api_url",
                format!("{api_url:?} is not an http(s) URL"),
            ));
        }
        if !api_url.ends_with('/') {
            api_url.push('/');
        }
        let socket_connections = raw.slack.socket_connections.unwrap_or(2);
        if !(1..=10).contains(&socket_connections) {
            return Err(err(
                "slack.socket_connections",
                format!("{socket_connections} is out of range: Slack allows 1 to 10"),
            ));
        }
        Ok(Self {
            source: file.to_string(),
            slack: SlackConfig {
                bot_token,
                app_token,
                signing_secret,
                api_url,
                socket_connections,
            },
            server: raw.server,
            store: raw.store,
            engine: raw.engine,
            audit: raw.audit,
            apps: raw.apps,
        })
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
        expand(&mut store, "store", env).map_err(|(key, reason)| err(&key, reason))?;
        serde_path_to_error::deserialize(store).map_err(|e| {
            err(
                format!("store.{}", e.path()).trim_end_matches('.'),
                e.inner().to_string(),
            )
        })
    }

    /// An app's section, read into its own type; errors name `apps.<name>.<key>`.
    pub fn app_section<T: serde::de::DeserializeOwned + Default>(
        &self,
        app: &str,
    ) -> Result<T, ConfigError> {
        let Some(value) = self.apps.get(app) else {
            return Ok(T::default());
        };
        serde_path_to_error::deserialize(value.clone()).map_err(|e| ConfigError {
            file: self.source.clone(),
            key: format!("apps.{app}.{}", e.path())
                .trim_end_matches(".")
                .to_string(),
            reason: e.inner().to_string(),
        })
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string value.
fn expand(value: &mut toml::Value, path: &str, env: &dyn Env) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) => {
            *s = expand_str(s, env).map_err(|reason| (path.to_string(), reason))?
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand(item, &format!("{path}[{i}]"), env)?;
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let key = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                expand(v, &key, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(s: &str, env: &dyn Env) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("${{{inner}}} is not a variable name"));
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
}
