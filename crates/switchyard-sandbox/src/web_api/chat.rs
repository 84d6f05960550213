//! `chat.*`: posting, updating and deleting messages.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{ApiError, ApiResult, Args, Caller, obj};
use crate::Inner;
use crate::blocks::{self, MAX_TEXT_CHARS, Surface};
use crate::events;
use crate::ids::permalink_ts;
use crate::workspace::{Channel, Ephemeral, Message, Workspace};

/// The conversation an argument names, as the caller may see it: a private conversation the
/// caller is not in does not exist for them (`channel_not_found`), as in Slack.
pub fn visible_channel(
    ws: &Workspace,
    caller: &Caller,
    arg: Option<&str>,
) -> Result<Channel, ApiError> {
    let channel = arg
        .and_then(|a| ws.channel(a))
        .ok_or_else(|| ApiError::new("channel_not_found"))?;
    if channel.is_private && !channel.is_member(&caller.user_id) {
        return Err(ApiError::new("channel_not_found"));
    }
    Ok(channel.clone())
}

/// The parts of a message a post or update sets: text, blocks, attachments, metadata.
pub struct Content {
    pub text: String,
    pub blocks: Option<Value>,
    pub attachments: Option<Value>,
    pub metadata: Option<Value>,
}

impl Content {
    pub fn from_args(args: &Args) -> Result<Self, ApiError> {
        let text = args.string("text").unwrap_or_default();
        let blocks = args.json("blocks", "invalid_blocks_format")?;
        let attachments = args.json("attachments", "invalid_attachments")?;
        let metadata = args.json("metadata", "invalid_metadata_format")?;
        Self::checked(text, blocks, attachments, metadata)
    }

    /// Validates content against Slack's message limits.
    pub fn checked(
        text: String,
        blocks: Option<Value>,
        attachments: Option<Value>,
        metadata: Option<Value>,
    ) -> Result<Self, ApiError> {
        let empty_blocks = blocks
            .as_ref()
            .is_none_or(|b| b.as_array().is_some_and(Vec::is_empty));
        if text.trim().is_empty() && empty_blocks && attachments.is_none() {
            return Err(ApiError::new("no_text"));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(ApiError::new("msg_too_long"));
        }
        if let Some(b) = &blocks {
            blocks::validate(b, Surface::Message).map_err(blocks_error)?;
        }
        if let Some(m) = &metadata
            && (m.get("event_type").and_then(Value::as_str).is_none()
                || !m.get("event_payload").is_some_and(Value::is_object))
        {
            return Err(ApiError::new("invalid_metadata_format"));
        }
        Ok(Self {
            text,
            blocks,
            attachments,
            metadata,
        })
    }

    pub fn apply(self, m: &mut Message) {
        m.text = self.text;
        m.blocks = self.blocks;
        m.attachments = self.attachments;
        if self.metadata.is_some() {
            m.metadata = self.metadata;
        }
    }
}

pub fn blocks_error(err: blocks::BlocksError) -> ApiError {
    let messages: Vec<String> = err.errors.iter().map(|e| format!("[ERROR] {e}")).collect();
    ApiError::new(err.code)
        .with("errors", json!(err.errors))
        .with("response_metadata", json!({"messages": messages}))
}

/// The conversation a post goes to: a channel id or name, or a user id (the bot's DM with them).
fn post_target(
    ws: &mut Workspace,
    caller: &Caller,
    arg: Option<&str>,
) -> Result<Channel, ApiError> {
    if let Some(user_id) = arg.filter(|a| a.starts_with('U') || a.starts_with('W'))
        && ws.users.iter().any(|u| u.id == user_id)
        && caller.is_bot()
    {
        let dm = ws.open_dm(user_id);
        return Ok(ws.channel(&dm).cloned().expect("just opened"));
    }
    visible_channel(ws, caller, arg)
}

/// Whether the caller may post in the channel: members may; a bot with `chat:write.public` may
/// post in public channels it is not in.
pub fn check_can_post(channel: &Channel, caller: &Caller) -> Result<(), ApiError> {
    if channel.is_archived {
        return Err(ApiError::new("is_archived"));
    }
    if !channel.is_member(&caller.user_id) {
        let public_ok = !channel.is_private && caller.require(&["chat:write.public"]).is_ok();
        if !public_ok {
            return Err(ApiError::new("not_in_channel"));
        }
    }
    Ok(())
}

pub fn post_message(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let channel = post_target(&mut ws, caller, args.str("channel"))?;
    check_can_post(&channel, caller)?;
    let content = Content::from_args(args)?;
    let thread_ts = match args.str("thread_ts") {
        Some(ts) => {
            let parent = ws
                .message(&channel.id, ts)
                .ok_or_else(|| ApiError::new("thread_not_found"))?;
            // A reply to a reply goes to the same thread, as in Slack.
            Some(
                parent
                    .thread_ts
                    .clone()
                    .unwrap_or_else(|| parent.ts.clone()),
            )
        }
        None => None,
    };
    let mut message = author_message(&ws, caller, &channel.id);
    message.reply_broadcast = thread_ts.is_some() && args.bool("reply_broadcast");
    message.thread_ts = thread_ts;
    content.apply(&mut message);
    ws.insert_message(message.clone());
    events::emit_new_message(inner, &mut ws, &message);
    let rendered = ws.message_json(&message);
    Ok(obj(
        json!({"channel": channel.id, "ts": message.ts, "message": rendered}),
    ))
}

/// Replaces a message's content, marks it edited and tells the app (`message_changed`).
pub fn edit_message(
    inner: &Arc<Inner>,
    ws: &mut Workspace,
    channel: &str,
    ts: &str,
    editor: &str,
    content: Content,
) -> Option<Message> {
    let previous = ws.message(channel, ts)?.clone();
    let edit_ts = ws.ids.ts();
    let message = ws.message_mut(channel, ts)?;
    content.apply(message);
    message.edited = Some((editor.to_string(), edit_ts));
    let updated = message.clone();
    events::emit_message_change(
        inner,
        ws,
        channel,
        "message_changed",
        Some(&updated),
        &previous,
    );
    Some(updated)
}

/// A new, empty message by the caller (the bot, or a person with a user token).
pub fn author_message(ws: &Workspace, caller: &Caller, channel: &str) -> Message {
    if caller.is_bot() {
        ws.bot_message(channel, String::new())
    } else {
        Message {
            ts: ws.ids.ts(),
            channel: channel.to_string(),
            user: caller.user_id.clone(),
            client_msg_id: Some(crate::ids::envelope_id()),
            ..Message::default()
        }
    }
}

pub fn update(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let channel = visible_channel(&ws, caller, args.str("channel"))?;
    let ts = args
        .str("ts")
        .ok_or_else(|| ApiError::new("message_not_found"))?
        .to_string();
    let previous = ws
        .message(&channel.id, &ts)
        .cloned()
        .ok_or_else(|| ApiError::new("message_not_found"))?;
    if previous.user != caller.user_id {
        return Err(ApiError::new("cant_update_message"));
    }
    if channel.is_archived {
        return Err(ApiError::new("is_archived"));
    }
    let content = Content::from_args(args)?;
    let updated = edit_message(inner, &mut ws, &channel.id, &ts, &caller.user_id, content)
        .expect("found above");
    let rendered = ws.message_json(&updated);
    Ok(obj(json!({
        "channel": channel.id,
        "ts": ts,
        "text": updated.text,
        "message": rendered,
    })))
}

pub fn delete(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let channel = visible_channel(&ws, caller, args.str("channel"))?;
    let ts = args
        .str("ts")
        .ok_or_else(|| ApiError::new("message_not_found"))?
        .to_string();
    let message = ws
        .message(&channel.id, &ts)
        .ok_or_else(|| ApiError::new("message_not_found"))?;
    if message.user != caller.user_id {
        return Err(ApiError::new("cant_delete_message"));
    }
    let removed = ws.remove_message(&channel.id, &ts).expect("found above");
    events::emit_message_change(
        inner,
        &mut ws,
        &channel.id,
        "message_deleted",
        None,
        &removed,
    );
    Ok(obj(json!({"channel": channel.id, "ts": ts})))
}

pub fn post_ephemeral(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let channel = visible_channel(&ws, caller, args.str("channel"))?;
    let user = args.required("user")?;
    let user = ws
        .user(&user)
        .map(|u| u.id.clone())
        .ok_or_else(|| ApiError::new("user_not_found"))?;
    if !channel.is_member(&user) {
        return Err(ApiError::new("user_not_in_channel"));
    }
    check_can_post(&channel, caller)?;
    let content = Content::from_args(args)?;
    let mut message = author_message(&ws, caller, &channel.id);
    message.thread_ts = args.string("thread_ts");
    content.apply(&mut message);
    let ts = message.ts.clone();
    ws.ephemerals.push(Ephemeral {
        channel: channel.id,
        user,
        message,
    });
    Ok(obj(json!({"message_ts": ts})))
}

pub fn get_permalink(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let ws = inner.ws();
    let channel = visible_channel(&ws, caller, args.str("channel"))?;
    let ts = args.required("message_ts")?;
    let message = ws
        .message(&channel.id, &ts)
        .ok_or_else(|| ApiError::new("message_not_found"))?;
    let mut permalink = format!(
        "{}/archives/{}/{}",
        inner.base_url,
        channel.id,
        permalink_ts(&ts)
    );
    if let Some(thread_ts) = message.thread_ts.as_deref().filter(|t| *t != ts) {
        permalink.push_str(&format!("?thread_ts={thread_ts}&cid={}", channel.id));
    }
    Ok(obj(json!({"channel": channel.id, "permalink": permalink})))
}
