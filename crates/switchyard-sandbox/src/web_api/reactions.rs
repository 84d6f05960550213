//! `reactions.*`.

use std::sync::Arc;

use serde_json::json;

use super::chat::visible_channel;
use super::{ApiError, ApiResult, Args, Caller, obj};
use crate::Inner;
use crate::events;
use crate::workspace::{Reaction, Workspace};

/// Adds or removes `user`'s reaction. Shared with the control API, where people react.
pub fn set_reaction(
    ws: &mut Workspace,
    channel: &str,
    ts: &str,
    user: &str,
    name: &str,
    add: bool,
) -> Result<(), ApiError> {
    let name = name.trim_matches(':');
    if name.is_empty() {
        return Err(ApiError::new("invalid_name"));
    }
    let message = ws
        .message_mut(channel, ts)
        .ok_or_else(|| ApiError::new("message_not_found"))?;
    let pos = message.reactions.iter().position(|r| r.name == name);
    match (add, pos) {
        (true, Some(i)) if message.reactions[i].users.iter().any(|u| u == user) => {
            return Err(ApiError::new("already_reacted"));
        }
        (true, Some(i)) => message.reactions[i].users.push(user.to_string()),
        (true, None) => message.reactions.push(Reaction {
            name: name.to_string(),
            users: vec![user.to_string()],
        }),
        (false, Some(i)) if message.reactions[i].users.iter().any(|u| u == user) => {
            message.reactions[i].users.retain(|u| u != user);
            if message.reactions[i].users.is_empty() {
                message.reactions.remove(i);
            }
        }
        (false, _) => return Err(ApiError::new("no_reaction")),
    }
    Ok(())
}

fn react(inner: &Arc<Inner>, caller: &Caller, args: &Args, add: bool) -> ApiResult {
    let mut ws = inner.ws();
    let channel = visible_channel(&ws, caller, args.str("channel"))?;
    let ts = args
        .str("timestamp")
        .ok_or_else(|| ApiError::new("no_item_specified"))?
        .to_string();
    let name = args.required("name")?;
    set_reaction(&mut ws, &channel.id, &ts, &caller.user_id, &name, add)?;
    events::emit_reaction(
        inner,
        &mut ws,
        &channel.id,
        &ts,
        &caller.user_id,
        name.trim_matches(':'),
        add,
    );
    Ok(obj(json!({})))
}

pub fn add(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    react(inner, caller, args, true)
}

pub fn remove(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    react(inner, caller, args, false)
}

pub fn get(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let ws = inner.ws();
    let channel = visible_channel(&ws, caller, args.str("channel"))?;
    let ts = args
        .str("timestamp")
        .ok_or_else(|| ApiError::new("no_item_specified"))?;
    let message = ws
        .message(&channel.id, ts)
        .ok_or_else(|| ApiError::new("message_not_found"))?;
    Ok(obj(
        json!({"type": "message", "channel": channel.id, "message": ws.message_json(message)}),
    ))
}
