//! The events the workspace produces when something happens in it, shaped as Slack's.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::Inner;
use crate::workspace::{Channel, Message, Workspace};

/// The inner `event` of a `message` event.
pub fn message_event(ws: &Workspace, m: &Message, channel: &Channel) -> Value {
    let mut event = ws.message_json(m);
    event["channel"] = json!(channel.id);
    event["event_ts"] = json!(m.ts);
    event["channel_type"] = json!(channel.channel_type());
    if let Some(thread_ts) = m.thread_ts.as_deref().filter(|t| *t != m.ts)
        && let Some(parent) = ws.message(&channel.id, thread_ts)
    {
        event["parent_user_id"] = json!(parent.user);
    }
    // Events carry the message, not its thread summary.
    if let Some(o) = event.as_object_mut() {
        for key in [
            "reply_count",
            "reply_users_count",
            "reply_users",
            "latest_reply",
            "reactions",
        ] {
            o.remove(key);
        }
    }
    event
}

/// Sends the `message` event for a new message, and `app_mention` when a person mentions the
/// bot. Returns the event ids queued.
pub fn emit_new_message(inner: &Arc<Inner>, ws: &mut Workspace, m: &Message) -> Vec<String> {
    let Some(channel) = ws.channel(&m.channel).cloned() else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    let bot_in_channel = channel.is_member(&ws.app.bot_user_id);
    if bot_in_channel {
        let event = message_event(ws, m, &channel);
        ids.extend(inner.emit_event(ws, event, channel.message_event()));
    }
    let mention = format!("<@{}>", ws.app.bot_user_id);
    let from_the_bot = m.user == ws.app.bot_user_id;
    if !from_the_bot && bot_in_channel && m.text.contains(&mention) {
        let mut event = message_event(ws, m, &channel);
        event["type"] = json!("app_mention");
        if let Some(o) = event.as_object_mut() {
            o.remove("channel_type");
        }
        ids.extend(inner.emit_event(ws, event, "app_mention"));
    }
    ids
}

/// `message_changed` / `message_deleted` subtypes.
pub fn emit_message_change(
    inner: &Arc<Inner>,
    ws: &mut Workspace,
    channel_id: &str,
    subtype: &str,
    current: Option<&Message>,
    previous: &Message,
) {
    let Some(channel) = ws.channel(channel_id).cloned() else {
        return;
    };
    if !channel.is_member(&ws.app.bot_user_id) {
        return;
    }
    let ts = ws.ids.ts();
    let mut event = json!({
        "type": "message",
        "subtype": subtype,
        "hidden": true,
        "channel": channel.id,
        "channel_type": channel.channel_type(),
        "ts": ts,
        "event_ts": ts,
        "previous_message": ws.message_json(previous),
    });
    match current {
        Some(m) => event["message"] = ws.message_json(m),
        None => event["deleted_ts"] = json!(previous.ts),
    }
    inner.emit_event(ws, event, channel.message_event());
}

pub fn emit_member_change(
    inner: &Arc<Inner>,
    ws: &mut Workspace,
    channel_id: &str,
    user: &str,
    joined: bool,
) {
    let Some(channel) = ws.channel(channel_id).cloned() else {
        return;
    };
    if !channel.is_member(&ws.app.bot_user_id) && user != ws.app.bot_user_id {
        return;
    }
    let kind = if joined {
        "member_joined_channel"
    } else {
        "member_left_channel"
    };
    let ts = ws.ids.ts();
    let event = json!({
        "type": kind,
        "user": user,
        "channel": channel.id,
        "channel_type": if channel.is_private { "G" } else { "C" },
        "team": ws.team.id,
        "event_ts": ts,
    });
    inner.emit_event(ws, event, kind);
}

pub fn emit_reaction(
    inner: &Arc<Inner>,
    ws: &mut Workspace,
    channel_id: &str,
    ts: &str,
    user: &str,
    name: &str,
    added: bool,
) {
    let Some(channel) = ws.channel(channel_id).cloned() else {
        return;
    };
    if !channel.is_member(&ws.app.bot_user_id) {
        return;
    }
    let item_user = ws.message(channel_id, ts).map(|m| m.user.clone());
    let kind = if added {
        "reaction_added"
    } else {
        "reaction_removed"
    };
    let event = json!({
        "type": kind,
        "user": user,
        "reaction": name,
        "item_user": item_user,
        "item": {"type": "message", "channel": channel_id, "ts": ts},
        "event_ts": ws.ids.ts(),
    });
    inner.emit_event(ws, event, kind);
}
