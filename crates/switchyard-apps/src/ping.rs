//! `@bot ping` → `pong` in the thread: the smallest app, and a health check people can run.

use async_trait::async_trait;
use serde::Deserialize;
use switchyard_engine::{App, AppError, Ctx, Declaration, Input, MentionCommand};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PingConfig {
    pub enabled: bool,
}

impl Default for PingConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

pub struct Ping;

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
            ..Declaration::default()
        }
    }

    async fn handle(&self, ctx: &mut Ctx<'_>, input: &Input) -> Result<(), AppError> {
        if let Input::Mention { message, .. } = input {
            ctx.reply(message, "pong");
        }
        Ok(())
    }
}
