//! The app under test, described by a Slack app manifest (JSON or YAML).
//!
//! Only the parts that change the sandbox's behaviour are read; everything else in the manifest is
//! kept as given, so a manifest that Slack accepts is accepted here too.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the manifest is neither JSON nor YAML: {0}")]
    Syntax(String),
    #[error("the manifest's {field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// A parsed app manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub bot_display_name: String,
    pub bot_scopes: BTreeSet<String>,
    pub bot_events: BTreeSet<String>,
    pub event_request_url: Option<String>,
    pub interactivity_enabled: bool,
    pub interactivity_request_url: Option<String>,
    pub slash_commands: Vec<SlashCommand>,
    pub socket_mode_enabled: bool,
    /// The manifest as given, for `GET /_sandbox/app`.
    pub raw: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SlashCommand {
    pub command: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub usage_hint: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawManifest {
    #[serde(default)]
    display_information: RawDisplay,
    #[serde(default)]
    features: RawFeatures,
    #[serde(default)]
    oauth_config: RawOauth,
    #[serde(default)]
    settings: RawSettings,
}

#[derive(Deserialize, Default)]
struct RawDisplay {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawFeatures {
    #[serde(default)]
    bot_user: Option<RawBotUser>,
    #[serde(default)]
    slash_commands: Vec<SlashCommand>,
}

#[derive(Deserialize)]
struct RawBotUser {
    display_name: String,
}

#[derive(Deserialize, Default)]
struct RawOauth {
    #[serde(default)]
    scopes: RawScopes,
}

#[derive(Deserialize, Default)]
struct RawScopes {
    #[serde(default)]
    bot: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawSettings {
    #[serde(default)]
    event_subscriptions: Option<RawEvents>,
    #[serde(default)]
    interactivity: Option<RawInteractivity>,
    #[serde(default)]
    socket_mode_enabled: bool,
}

#[derive(Deserialize, Default)]
struct RawEvents {
    #[serde(default)]
    request_url: Option<String>,
    #[serde(default)]
    bot_events: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawInteractivity {
    #[serde(default)]
    is_enabled: bool,
    #[serde(default)]
    request_url: Option<String>,
}

impl Manifest {
    /// Parses a manifest written as JSON or as YAML.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let raw: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(json_err) => serde_yaml_ng::from_str(text).map_err(|yaml_err| {
                ManifestError::Syntax(format!("as JSON: {json_err}; as YAML: {yaml_err}"))
            })?,
        };
        Self::from_value(raw)
    }

    pub fn from_value(raw: Value) -> Result<Self, ManifestError> {
        if !raw.is_object() {
            return Err(ManifestError::Invalid {
                field: "top level",
                reason: "must be an object".into(),
            });
        }
        let parsed: RawManifest =
            serde_json::from_value(raw.clone()).map_err(|e| ManifestError::Invalid {
                field: "structure",
                reason: e.to_string(),
            })?;
        let name = parsed
            .display_information
            .name
            .unwrap_or_else(|| "App".to_string());
        for command in &parsed.features.slash_commands {
            if !command.command.starts_with('/') {
                return Err(ManifestError::Invalid {
                    field: "features.slash_commands",
                    reason: format!("command {:?} must start with '/'", command.command),
                });
            }
            if !parsed.settings.socket_mode_enabled && command.url.is_none() {
                return Err(ManifestError::Invalid {
                    field: "features.slash_commands",
                    reason: format!(
                        "command {} needs a url when socket_mode_enabled is false",
                        command.command
                    ),
                });
            }
        }
        let events = parsed.settings.event_subscriptions.unwrap_or_default();
        let interactivity = parsed.settings.interactivity.unwrap_or_default();
        Ok(Self {
            bot_display_name: parsed
                .features
                .bot_user
                .map(|b| b.display_name)
                .unwrap_or_else(|| name.to_lowercase()),
            name,
            bot_scopes: parsed.oauth_config.scopes.bot.into_iter().collect(),
            bot_events: events.bot_events.into_iter().collect(),
            event_request_url: events.request_url,
            interactivity_enabled: interactivity.is_enabled,
            interactivity_request_url: interactivity.request_url,
            slash_commands: parsed.features.slash_commands,
            socket_mode_enabled: parsed.settings.socket_mode_enabled,
            raw,
        })
    }

    pub fn command(&self, name: &str) -> Option<&SlashCommand> {
        self.slash_commands.iter().find(|c| c.command == name)
    }

    pub fn subscribes_to(&self, event: &str) -> bool {
        self.bot_events.contains(event)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.bot_scopes.contains(scope)
    }

    /// The manifest used when none is given: a Socket Mode app with the scopes and events a
    /// ChatOps bot needs.
    pub fn default_manifest() -> Self {
        Self::parse(DEFAULT_MANIFEST).expect("the built-in manifest parses")
    }
}

const DEFAULT_MANIFEST: &str = r#"
display_information:
  name: Switchyard
features:
  bot_user:
    display_name: switchyard
    always_online: true
  app_home:
    home_tab_enabled: true
  slash_commands:
    - command: /switchyard
      description: Talk to Switchyard
      usage_hint: help
oauth_config:
  scopes:
    bot: [app_mentions:read, channels:history, channels:join, channels:manage, channels:read,
          chat:write, chat:write.public, commands, files:read, files:write, groups:history,
          groups:read, groups:write, im:history, im:read, im:write, incoming-webhook, mpim:history,
          mpim:read, reactions:read, reactions:write, usergroups:read, users:read, users:read.email]
settings:
  event_subscriptions:
    bot_events: [app_home_opened, app_mention, member_joined_channel, member_left_channel,
                 message.channels, message.groups, message.im, reaction_added, reaction_removed]
  interactivity:
    is_enabled: true
  socket_mode_enabled: true
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_yaml_and_json() {
        let m = Manifest::default_manifest();
        assert!(m.socket_mode_enabled);
        assert!(m.has_scope("chat:write"));
        assert!(m.command("/switchyard").is_some());
        let json = serde_json::to_string(&m.raw).unwrap();
        let again = Manifest::parse(&json).unwrap();
        assert_eq!(again.bot_events, m.bot_events);
    }

    #[test]
    fn http_commands_need_urls() {
        let err = Manifest::parse(
            r#"{"features":{"slash_commands":[{"command":"/x"}]},"settings":{"socket_mode_enabled":false}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/x"), "{err}");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Manifest::parse("[1, 2").is_err());
        assert!(Manifest::parse("- a\n- b").is_err());
    }
}
