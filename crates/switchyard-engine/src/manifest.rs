//! The Slack app manifest, built from the config and the enabled apps' declarations, so the Slack
//! app has exactly the scopes, events, commands and request URLs the server handles.
//!
//! Besides what the apps declare, the engine itself needs:
//! - `app_mentions:read` + `app_mention` and `chat:write`: it answers mentions no app claims
//!   with help;
//! - `im:history` + `message.im` (and the App Home's messages tab): a direct message to the bot
//!   is a command without the `@`;
//! - `channels:history` and `groups:history`: the sender looks in a channel's history for a post
//!   whose outcome was lost (the process died after Slack took it) before posting it again;
//! - `commands`, when any app has a slash command.
//!
//! Transport: Socket Mode when the config has an app token or no request URL is given; then the
//! manifest has no request URLs. Otherwise Slack posts to `<request_url>/slack/events`,
//! `/slack/commands` and `/slack/interactions`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::app::Declaration;
use crate::config::Config;

/// Bot scopes the engine needs whatever the apps are.
pub const ENGINE_SCOPES: &[&str] = &[
    "app_mentions:read",
    "channels:history",
    "chat:write",
    "groups:history",
    "im:history",
];
/// Bot events the engine needs whatever the apps are.
pub const ENGINE_BOT_EVENTS: &[&str] = &["app_mention", "message.im"];

/// Bot scopes for reading configured channels, public and private: needed when an app names
/// channels in its config.
pub const CHANNEL_CHECK_SCOPES: [&str; 2] = ["channels:read", "groups:read"];

/// The bot scopes the manifest asks for: what the token must have been granted.
pub fn bot_scopes(config: &Config, declarations: &[Declaration]) -> Vec<String> {
    manifest(config, declarations, None)["oauth_config"]["scopes"]["bot"]
        .as_array()
        .map(|scopes| {
            scopes
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A request URL Slack cannot use (`url` with any password hidden).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request URL {url:?} {reason}")]
pub struct RequestUrlError {
    pub url: String,
    pub reason: &'static str,
}

/// Checks the public base URL Slack will post to (`https://host`, or with a path prefix behind a
/// proxy) and returns it without a trailing `/`. Slack itself requires `https`; `http` is
/// accepted for local Slack-like servers such as the sandbox.
pub fn request_base(url: &str) -> Result<String, RequestUrlError> {
    let error = |reason| RequestUrlError {
        // Shown in errors: without any password it carries.
        url: switchyard_store::redact(url),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|_| error("is not a URL"))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(error("must be https://…"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(error("has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(error("must not carry credentials"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(error("must not have a query or fragment"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

/// Whether the manifest's app uses Socket Mode: the config has an app token, or there is no
/// request URL for Slack to post to.
pub fn socket_mode(config: &Config, request_base: Option<&str>) -> bool {
    config.slack.socket_mode() || request_base.is_none()
}

/// The manifest, as Slack's "Create an app → From a manifest" takes it. `request_base` is the
/// public URL Slack posts to in HTTP mode (see [`request_base`]); ignored in Socket Mode.
pub fn manifest(
    config: &Config,
    declarations: &[Declaration],
    request_base: Option<&str>,
) -> Value {
    let http_base = (!socket_mode(config, request_base))
        .then_some(request_base)
        .flatten();
    let slash_commands: Vec<Value> = declarations
        .iter()
        .flat_map(|d| &d.slash_commands)
        .map(|c| {
            let mut command = json!({
                "command": c.command,
                "description": c.description,
                "should_escape": false,
            });
            if !c.usage_hint.is_empty() {
                command["usage_hint"] = json!(c.usage_hint);
            }
            if let Some(base) = http_base {
                command["url"] = json!(format!("{base}/slack/commands"));
            }
            command
        })
        .collect();
    let mut scopes: BTreeSet<&str> = ENGINE_SCOPES.iter().copied().collect();
    scopes.extend(declarations.iter().flat_map(|d| d.scopes.iter().copied()));
    if !slash_commands.is_empty() {
        scopes.insert("commands");
    }
    if declarations.iter().any(|d| !d.channels.is_empty()) {
        // `switchyard doctor` reads the configured channels (`conversations.info`) to check
        // that they exist and have the bot in them.
        scopes.extend(CHANNEL_CHECK_SCOPES);
    }
    if config.access.is_some() {
        // `[access]` may bind Slack user groups (now or at run time): their members are read
        // with `usergroups.users.list`.
        scopes.insert("usergroups:read");
    }
    let mut bot_events: BTreeSet<&str> = ENGINE_BOT_EVENTS.iter().copied().collect();
    bot_events.extend(
        declarations
            .iter()
            .flat_map(|d| d.bot_events.iter().copied()),
    );
    let interactive = declarations
        .iter()
        .any(|d| !d.action_prefixes.is_empty() || !d.view_prefixes.is_empty());

    let mut display = json!({"name": config.slack.app_name});
    if let Some(description) = &config.slack.app_description {
        display["description"] = json!(description);
    }
    let mut features = json!({
        // Direct messages reach the bot through the messages tab.
        "app_home": {
            "home_tab_enabled": false,
            "messages_tab_enabled": true,
            "messages_tab_read_only_enabled": false,
        },
        "bot_user": {
            "display_name": bot_display_name(&config.slack.app_name),
            "always_online": true,
        },
    });
    if !slash_commands.is_empty() {
        features["slash_commands"] = Value::Array(slash_commands);
    }
    let mut events = json!({"bot_events": bot_events});
    let mut interactivity = json!({"is_enabled": interactive});
    if let Some(base) = http_base {
        events["request_url"] = json!(format!("{base}/slack/events"));
        if interactive {
            interactivity["request_url"] = json!(format!("{base}/slack/interactions"));
        }
    }
    json!({
        "display_information": display,
        "features": features,
        "oauth_config": {"scopes": {"bot": scopes}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": false,
            "socket_mode_enabled": http_base.is_none(),
            "token_rotation_enabled": false,
        },
    })
}

/// The bot's name in Slack (`@switchyard`): the app's name, lowercased, spaces as `-`.
fn bot_display_name(app_name: &str) -> String {
    app_name
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("-")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::app::SlashCommand;
    use crate::config::CheckOptions;

    fn config(text: &str) -> Config {
        let options = CheckOptions {
            without_credentials: true,
            ..CheckOptions::default()
        };
        Config::check(text, "s.toml", &BTreeMap::<String, String>::new(), &options).unwrap()
    }

    fn declarations() -> Vec<Declaration> {
        vec![
            Declaration {
                name: "a",
                scopes: vec!["chat:write", "reactions:read"],
                bot_events: vec!["reaction_added", "app_mention"],
                ..Declaration::default()
            },
            Declaration {
                name: "b",
                slash_commands: vec![SlashCommand {
                    command: "/deploy".into(),
                    description: "Deploy",
                    usage_hint: "",
                }],
                action_prefixes: vec!["b:"],
                ..Declaration::default()
            },
        ]
    }

    fn strings(v: &Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect()
    }

    #[test]
    fn unions_scopes_and_events_in_socket_mode() {
        let m = manifest(&config(""), &declarations(), None);
        assert_eq!(
            strings(&m["oauth_config"]["scopes"]["bot"]),
            [
                "app_mentions:read",
                "channels:history",
                "chat:write",
                "commands",
                "groups:history",
                "im:history",
                "reactions:read"
            ]
        );
        assert_eq!(
            strings(&m["settings"]["event_subscriptions"]["bot_events"]),
            ["app_mention", "message.im", "reaction_added"]
        );
        assert_eq!(m["settings"]["socket_mode_enabled"], true);
        assert_eq!(m["settings"]["interactivity"]["is_enabled"], true);
        assert!(m["settings"]["event_subscriptions"]["request_url"].is_null());
        assert!(m["features"]["slash_commands"][0]["url"].is_null());
        assert_eq!(m["display_information"]["name"], "Switchyard");
        assert_eq!(m["features"]["bot_user"]["display_name"], "switchyard");
    }

    #[test]
    fn access_asks_to_read_user_groups() {
        let scopes = |text: &str| {
            let m = manifest(&config(text), &declarations(), None);
            m["oauth_config"]["scopes"]["bot"].clone()
        };
        assert!(!strings(&scopes("")).contains(&"usergroups:read"));
        let with_access = scopes("[access]\ndefault_role = \"v\"\n[access.roles]\nv = [\"*\"]\n");
        assert!(strings(&with_access).contains(&"usergroups:read"));
    }

    #[test]
    fn http_mode_has_request_urls() {
        let c = config("[slack]\napp_name = \"Ops Bot\"\napp_description = \"Ops\"\n");
        let base = request_base("https://ops.example/sy/").unwrap();
        let m = manifest(&c, &declarations(), Some(&base));
        assert_eq!(m["settings"]["socket_mode_enabled"], false);
        assert_eq!(
            m["settings"]["event_subscriptions"]["request_url"],
            "https://ops.example/sy/slack/events"
        );
        assert_eq!(
            m["settings"]["interactivity"]["request_url"],
            "https://ops.example/sy/slack/interactions"
        );
        assert_eq!(
            m["features"]["slash_commands"][0]["url"],
            "https://ops.example/sy/slack/commands"
        );
        assert_eq!(m["features"]["bot_user"]["display_name"], "ops-bot");
        assert_eq!(m["display_information"]["description"], "Ops");
        // An app token means Socket Mode, whatever the request URL.
        let c = config("[slack]\napp_token = \"xapp-1\"\n");
        let m = manifest(&c, &declarations(), Some(&base));
        assert_eq!(m["settings"]["socket_mode_enabled"], true);
    }

    #[test]
    fn request_urls_slack_cannot_use() {
        let e = request_base("https://u:hunter2@ops.example").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        for bad in [
            "ops.example",
            "ftp://ops.example",
            "https://u:p@ops.example",
            "https://ops.example/?x=1",
            "",
        ] {
            assert!(request_base(bad).is_err(), "{bad}");
        }
        assert_eq!(
            request_base("http://127.0.0.1:3000").unwrap(),
            "http://127.0.0.1:3000"
        );
    }
}
