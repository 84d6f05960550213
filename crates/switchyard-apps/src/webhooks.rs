//! `post_message` through an incoming webhook, as StackStorm's Slack pack does it (seed 002,
//! parity §4): webhooks named in config with defaults (channel, username, icon), each of them
//! overridable per call, for teams that have a webhook and no bot token.
//!
//! ```toml
//! [apps.webhooks]
//! enabled = true
//! [apps.webhooks.incoming.ops]
//! webhook_url = "${OPS_WEBHOOK_URL}"   # a secret: never shown, logged or audited
//! channel = "#ops"                     # defaults, each overridable per call
//! username = "Switchyard"
//! icon_emoji = ":robot_face:"          # or icon_url = "https://…"
//! ```
//!
//! `POST /api/v1/webhooks/<name>` (token scope `webhooks:post`) with `text` and/or `blocks`
//! (and `attachments`, `thread_ts`, `unfurl_links`, `unfurl_media`, `mrkdwn`) and any of
//! `channel`, `username`, `icon_emoji`, `icon_url`: checked whole (400 naming the field), then
//! queued in the outbox ([`Ctx::webhook`]: durable, paced, retried) and audited
//! (`webhooks.post`) in one transaction; 200 once queued. `GET /api/v1/webhooks` lists the
//! names and their defaults (never the URLs).

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_engine::{
    App, AppError, Ctx, Declaration, HttpReply, HttpRequest, Input, NamedWebhook, Outcome, Secret,
    ValidateSection,
};

const PREFIX: &str = "/api/v1/webhooks";
pub const SCOPE: &str = "webhooks:post";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    pub enabled: bool,
    /// By name (`/api/v1/webhooks/<name>`).
    pub incoming: BTreeMap<String, IncomingWebhook>,
}

/// One incoming webhook and the defaults of what is posted through it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingWebhook {
    pub webhook_url: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub icon_emoji: Option<String>,
    #[serde(default)]
    pub icon_url: Option<String>,
}

/// The webhooks of `[apps.webhooks.incoming]` as an app declares them to the engine, which
/// keeps their URLs out of the outbox ([`Ctx::webhook`] queues the name).
pub fn declared(incoming: &BTreeMap<String, IncomingWebhook>) -> Vec<NamedWebhook> {
    incoming
        .iter()
        .map(|(name, hook)| NamedWebhook {
            name: name.clone(),
            url: Secret::new(hook.webhook_url.clone()),
        })
        .collect()
}

fn is_http(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Problems with one identity field (`channel`, `username`, `icon_emoji`, `icon_url`),
/// the same for a config default and a call's override.
fn identity_problem(key: &str, value: &str) -> Option<&'static str> {
    match key {
        "channel" if value.trim().is_empty() => Some("must not be empty"),
        "username" if value.trim().is_empty() || value.chars().count() > 80 => {
            Some("must be 1 to 80 characters")
        }
        "icon_emoji"
            if !(value.len() > 2
                && value.starts_with(':')
                && value.ends_with(':')
                && !value[1..value.len() - 1].contains([':', ' '])) =>
        {
            Some("must be an emoji name like :robot_face:")
        }
        "icon_url" if !is_http(value) => Some("must be an http:// or https:// URL"),
        _ => None,
    }
}

impl ValidateSection for WebhooksConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if !self.enabled {
            return problems;
        }
        for (name, hook) in &self.incoming {
            let at = format!("incoming.{name}");
            if !name_ok(name) {
                problems.push((
                    at.clone(),
                    "a webhook's name is letters, digits, - and _ (at most 64)".into(),
                ));
            }
            // The URL itself is a secret: the problem is said without it.
            if !is_http(&hook.webhook_url) {
                problems.push((
                    format!("{at}.webhook_url"),
                    "must be an http:// or https:// URL".into(),
                ));
            }
            for (key, value) in [
                ("channel", &hook.channel),
                ("username", &hook.username),
                ("icon_emoji", &hook.icon_emoji),
                ("icon_url", &hook.icon_url),
            ] {
                if let Some(reason) = value.as_deref().and_then(|v| identity_problem(key, v)) {
                    problems.push((format!("{at}.{key}"), reason.into()));
                }
            }
            if hook.icon_emoji.is_some() && hook.icon_url.is_some() {
                problems.push((
                    format!("{at}.icon_url"),
                    "give icon_emoji or icon_url, not both".into(),
                ));
            }
        }
        problems
    }
}

pub struct Webhooks {
    config: WebhooksConfig,
}

/// A call we refuse: the field and what is wrong with it.
fn bad(field: &str, reason: &str) -> HttpReply {
    HttpReply {
        status: 400,
        body: json!({"ok": false, "error": "invalid_payload", "field": field, "detail": reason}),
    }
}

/// The message fields passed to Slack as they are, and how each is checked.
const MESSAGE_FIELDS: [&str; 7] = [
    "text",
    "blocks",
    "attachments",
    "thread_ts",
    "unfurl_links",
    "unfurl_media",
    "mrkdwn",
];
const IDENTITY_FIELDS: [&str; 4] = ["channel", "username", "icon_emoji", "icon_url"];
/// Slack's limits: a message's text, its blocks.
const MAX_TEXT: usize = 40_000;
const MAX_BLOCKS: usize = 50;

/// The body to post: the call's message over the webhook's defaults, or the field at fault.
pub fn post_body(hook: &IncomingWebhook, body: &str) -> Result<Value, HttpReply> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| bad("body", &format!("not JSON: {e}")))?;
    let Value::Object(call) = value else {
        return Err(bad("body", "must be an object"));
    };
    let mut out = Map::new();
    for (key, value) in &call {
        let k = key.as_str();
        let problem = match k {
            "text" | "thread_ts" if !value.is_string() => Some("must be a string"),
            "text" if value.as_str().unwrap_or("").chars().count() > MAX_TEXT => {
                Some("at most 40,000 characters")
            }
            "blocks" => match value.as_array() {
                None => Some("must be an array of blocks"),
                Some(blocks) if blocks.len() > MAX_BLOCKS => Some("at most 50 blocks"),
                Some(blocks) if blocks.iter().any(|b| !b["type"].is_string()) => {
                    Some("every block must be an object with a type")
                }
                Some(_) => None,
            },
            "attachments" if !value.is_array() => Some("must be an array"),
            "unfurl_links" | "unfurl_media" | "mrkdwn" if !value.is_boolean() => {
                Some("must be true or false")
            }
            _ if IDENTITY_FIELDS.contains(&k) => match value.as_str() {
                None => Some("must be a string"),
                Some(v) => identity_problem(k, v),
            },
            _ if MESSAGE_FIELDS.contains(&k) => None,
            _ => Some(
                "not a field of a message (text, blocks, attachments, thread_ts, channel, username, icon_emoji, icon_url, …)",
            ),
        };
        if let Some(reason) = problem {
            return Err(bad(k, reason));
        }
        out.insert(key.clone(), value.clone());
    }
    let has = |k: &str| match &out.get(k) {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => false,
    };
    if !has("text") && !has("blocks") && !has("attachments") {
        return Err(bad("text", "text, blocks or attachments is required"));
    }
    if out.contains_key("icon_emoji") && out.contains_key("icon_url") {
        return Err(bad("icon_url", "give icon_emoji or icon_url, not both"));
    }
    Ok(with_defaults(hook, out))
}

/// `message` with the webhook's defaults for what it does not say itself (an icon of either
/// kind in `message` replaces the default's).
pub fn with_defaults(hook: &IncomingWebhook, mut out: Map<String, Value>) -> Value {
    let call_icon = out.contains_key("icon_emoji") || out.contains_key("icon_url");
    for (key, default) in [
        ("channel", &hook.channel),
        ("username", &hook.username),
        ("icon_emoji", &hook.icon_emoji),
        ("icon_url", &hook.icon_url),
    ] {
        let is_icon = key.starts_with("icon_");
        if let Some(default) = default
            && !out.contains_key(key)
            && !(is_icon && call_icon)
        {
            out.insert(key.into(), json!(default));
        }
    }
    Value::Object(out)
}

impl Webhooks {
    pub fn new(config: WebhooksConfig) -> Self {
        Self { config }
    }

    fn list(&self) -> HttpReply {
        let hooks: Vec<Value> = self
            .config
            .incoming
            .iter()
            .map(|(name, h)| {
                json!({"name": name, "channel": h.channel, "username": h.username,
                       "icon_emoji": h.icon_emoji, "icon_url": h.icon_url})
            })
            .collect();
        HttpReply::ok(json!({"ok": true, "webhooks": hooks}))
    }
}

#[async_trait]
impl App for Webhooks {
    fn declaration(&self) -> Declaration {
        Declaration {
            name: "webhooks",
            sync_routes: vec![PREFIX],
            webhooks: declared(&self.config.incoming),
            ..Declaration::default()
        }
    }

    async fn handle(&self, _ctx: &mut Ctx<'_>, _input: &Input) -> Result<(), AppError> {
        Ok(())
    }

    async fn serve(&self, ctx: &mut Ctx<'_>, request: &HttpRequest) -> Result<HttpReply, AppError> {
        let path = request.path.trim_end_matches('/');
        let name = match path.strip_prefix(PREFIX) {
            Some("") => None,
            Some(rest) => match rest.strip_prefix('/') {
                Some(name) if !name.contains('/') => Some(name),
                _ => return Ok(HttpReply::error(404, "not_found")),
            },
            None => return Ok(HttpReply::error(404, "not_found")),
        };
        if let Some(refused) = crate::api_token::check(ctx, request, SCOPE).await? {
            return Ok(refused);
        }
        let Some(name) = name else {
            return Ok(if request.method == "GET" {
                self.list()
            } else {
                HttpReply::error(405, "method_not_allowed")
            });
        };
        if request.method != "POST" {
            return Ok(HttpReply::error(405, "method_not_allowed"));
        }
        let Some(hook) = self.config.incoming.get(name) else {
            return Ok(HttpReply {
                status: 404,
                body: json!({"ok": false, "error": "unknown_webhook",
                             "detail": format!("no [apps.webhooks.incoming.{name}] in the config")}),
            });
        };
        let body = match post_body(hook, &request.body) {
            Ok(body) => body,
            Err(reply) => return Ok(reply),
        };
        let detail = format!(
            "to {} as {}, {} character(s) of text, {} block(s)",
            body["channel"].as_str().unwrap_or("the webhook's channel"),
            body["username"].as_str().unwrap_or("the webhook's name"),
            body["text"].as_str().map_or(0, |t| t.chars().count()),
            body["blocks"].as_array().map_or(0, Vec::len),
        );
        ctx.webhook(name, body);
        ctx.audit(
            "webhooks.post",
            &format!("webhook:{name}"),
            Outcome::Ok,
            &detail,
        );
        Ok(HttpReply::ok(
            json!({"ok": true, "webhook": name, "queued": true}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> IncomingWebhook {
        IncomingWebhook {
            webhook_url: "https://hooks.example/T/B/x".into(),
            channel: Some("#ops".into()),
            username: Some("Switchyard".into()),
            icon_emoji: Some(":robot_face:".into()),
            icon_url: None,
        }
    }

    #[test]
    fn defaults_fill_in_and_a_calls_fields_win() {
        let body = post_body(&hook(), r#"{"text": "hi"}"#).unwrap();
        assert_eq!(
            body,
            json!({"text": "hi", "channel": "#ops", "username": "Switchyard", "icon_emoji": ":robot_face:"})
        );
        let body = post_body(
            &hook(),
            r#"{"text": "hi", "channel": "C0DEPLOY", "icon_url": "https://x/i.png"}"#,
        )
        .unwrap();
        assert_eq!(body["channel"], "C0DEPLOY");
        assert_eq!(body["icon_url"], "https://x/i.png");
        assert!(body.get("icon_emoji").is_none(), "{body}");
    }

    #[test]
    fn bad_calls_name_the_field() {
        let field = |b: &str| post_body(&hook(), b).unwrap_err().body["field"].clone();
        assert_eq!(field("nope"), "body");
        assert_eq!(field("{}"), "text");
        assert_eq!(field(r#"{"text": 1}"#), "text");
        assert_eq!(
            field(r#"{"text": "x", "icon_emoji": "robot"}"#),
            "icon_emoji"
        );
        assert_eq!(field(r#"{"blocks": [{"text": "no type"}]}"#), "blocks");
        assert_eq!(field(r#"{"text": "x", "colour": "red"}"#), "colour");
        assert_eq!(
            field(r#"{"text": "x", "icon_emoji": ":a:", "icon_url": "https://x"}"#),
            "icon_url"
        );
    }
}
