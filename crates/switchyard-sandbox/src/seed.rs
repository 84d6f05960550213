//! The workspace a sandbox starts with, read from a TOML or JSON file.

use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot read the seed file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the seed file {path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
}

/// A workspace to start from. Every section has a default, so `{}` is a valid (empty-ish) seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub team: TeamSeed,
    #[serde(default)]
    pub users: Vec<UserSeed>,
    #[serde(default)]
    pub channels: Vec<ChannelSeed>,
    #[serde(default)]
    pub usergroups: Vec<UsergroupSeed>,
    #[serde(default)]
    pub webhooks: Vec<WebhookSeed>,
    #[serde(default)]
    pub app: AppSeed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamSeed {
    #[serde(default = "default_team_id")]
    pub id: String,
    #[serde(default = "default_team_name")]
    pub name: String,
    #[serde(default = "default_team_domain")]
    pub domain: String,
}

impl Default for TeamSeed {
    fn default() -> Self {
        Self {
            id: default_team_id(),
            name: default_team_name(),
            domain: default_team_domain(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSeed {
    /// Defaults to a generated `U…` id.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub real_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub is_admin: bool,
    #[serde(default)]
    pub is_owner: bool,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub tz: Option<String>,
    /// Defaults to `xoxp-sandbox-<name>` for people; bots get none.
    #[serde(default)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSeed {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub is_private: bool,
    /// User names or ids. `"*"` means every user.
    #[serde(default)]
    pub members: Vec<String>,
    /// Whether the app's bot user is in the channel.
    #[serde(default)]
    pub app_member: bool,
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub purpose: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsergroupSeed {
    #[serde(default)]
    pub id: Option<String>,
    pub handle: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub users: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSeed {
    pub channel: String,
    /// The secret last part of the URL; generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSeed {
    #[serde(default = "default_app_id")]
    pub id: String,
    #[serde(default = "default_bot_token")]
    pub bot_token: String,
    #[serde(default = "default_app_token")]
    pub app_token: String,
    #[serde(default = "default_signing_secret")]
    pub signing_secret: String,
    /// A manifest file, relative to the seed file.
    #[serde(default)]
    pub manifest: Option<String>,
}

impl Default for AppSeed {
    fn default() -> Self {
        Self {
            id: default_app_id(),
            bot_token: default_bot_token(),
            app_token: default_app_token(),
            signing_secret: default_signing_secret(),
            manifest: None,
        }
    }
}

fn default_team_id() -> String {
    "T0SANDBOX".into()
}
fn default_team_name() -> String {
    "Sandbox".into()
}
fn default_team_domain() -> String {
    "sandbox".into()
}
fn default_app_id() -> String {
    "A0SANDBOX".into()
}
fn default_bot_token() -> String {
    "xoxb-sandbox-bot".into()
}
fn default_app_token() -> String {
    "xapp-sandbox-app".into()
}
fn default_signing_secret() -> String {
    "sandbox-signing-secret".into()
}

/// The workspace used when no seed file is given.
pub const DEFAULT_SEED: &str = include_str!("default_seed.toml");

impl Default for Seed {
    fn default() -> Self {
        Self::parse_toml(DEFAULT_SEED, "built-in seed").expect("the built-in seed parses")
    }
}

impl Seed {
    /// Reads a seed file; `.json` files are JSON, everything else TOML. A relative
    /// `app.manifest` path is resolved against the seed file's folder.
    pub fn from_path(path: &Path) -> Result<Self, SeedError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut seed = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| SeedError::Invalid {
                path: shown.clone(),
                reason: e.to_string(),
            })?
        } else {
            Self::parse_toml(&text, &shown)?
        };
        if let (Some(manifest), Some(dir)) = (&seed.app.manifest, path.parent()) {
            seed.app.manifest = Some(dir.join(manifest).display().to_string());
        }
        Ok(seed)
    }

    pub fn parse_toml(text: &str, path: &str) -> Result<Self, SeedError> {
        toml::from_str(text).map_err(|e| SeedError::Invalid {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_seed_has_people_bots_and_channels() {
        let seed = Seed::default();
        assert!(seed.users.iter().any(|u| u.is_admin));
        assert!(seed.users.iter().any(|u| u.is_bot));
        assert!(seed.channels.iter().any(|c| c.is_private));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Seed::parse_toml("[team]\nnmae = \"x\"\n", "s.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("s.toml") && text.contains("nmae"), "{text}");
    }
}
