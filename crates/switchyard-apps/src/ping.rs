//! `@bot ping` → `pong` in the thread: the smallest app, and a health check people can run.

use async_trait::async_trait;
use serde::Deserialize;
use switchyard_engine::{App, AppError, Ctx, Declaration, Input, MentionCommand};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PingConfig {
    pub enabled: bool,
    /// Channel ids where it answers; empty: everywhere the bot is.
    pub channels: Vec<String>,
}

impl Default for PingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            channels: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Ping {
    channels: Vec<String>,
}

impl Ping {
    pub fn new(config: PingConfig) -> Self {
        Self {
            channels: config.channels,
        }
    }
}

#[async_trait]
impl App for Ping {
    fn declaration(&self) -> Declaration {
        Declaration {
            name: "ping",
            mentions: vec![MentionCommand {
                word: "ping",
                help: "check that I'm here (I answer `pong`)",
            }],
            scopes: vec!["app_mentions:read", "chat:write"],
            bot_events: vec!["app_mention"],
            channels: self.channels.clone(),
            ..Declaration::default()
        }
    }

    async fn handle(&self, ctx: &mut Ctx<'_>, input: &Input) -> Result<(), AppError> {
        if let Input::Mention { message, .. } = input
            && (self.channels.is_empty() || self.channels.contains(&message.channel))
        {
            ctx.reply(message, "pong");
        }
        Ok(())
    }
}
