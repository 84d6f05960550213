//! `conversations.*`: channels, private channels and DMs.

use std::sync::Arc;

use serde_json::{Value, json};

use super::chat::visible_channel;
use super::{ApiError, ApiResult, Args, Caller, obj, paginate};
use crate::Inner;
use crate::events;
use crate::ids::now_secs;
use crate::workspace::{Channel, Message, Workspace};

/// Which scope a conversation needs for reading its details, its history, or managing it.
#[derive(Clone, Copy)]
enum Access {
    Read,
    History,
    Manage,
}

fn require_access(caller: &Caller, channel: &Channel, access: Access) -> Result<(), ApiError> {
    let kind = channel.channel_type();
    let scopes: &[&str] = match (access, kind) {
        (Access::Read, "channel") => &["channels:read"],
        (Access::Read, "group") => &["groups:read"],
        (Access::Read, "im") => &["im:read"],
        (Access::Read, _) => &["mpim:read"],
        (Access::History, "channel") => &["channels:history"],
        (Access::History, "group") => &["groups:history"],
        (Access::History, "im") => &["im:history"],
        (Access::History, _) => &["mpim:history"],
        (Access::Manage, "channel") => &["channels:manage", "channels:write"],
        (Access::Manage, "group") => &["groups:write"],
        (Access::Manage, "im") => &["im:write"],
        (Access::Manage, _) => &["mpim:write"],
    };
    caller.require(scopes)
}

fn channel_for(
    ws: &Workspace,
    caller: &Caller,
    args: &Args,
    access: Access,
) -> Result<Channel, ApiError> {
    let channel = visible_channel(ws, caller, args.str("channel"))?;
    require_access(caller, &channel, access)?;
    Ok(channel)
}

pub fn info(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let ws = inner.ws();
    let channel = channel_for(&ws, caller, args, Access::Read)?;
    let mut json = channel.to_json(Some(&caller.user_id));
    if args.bool("include_num_members") {
        json["num_members"] = json!(channel.members.len());
    }
    Ok(obj(json!({"channel": json})))
}

pub fn list(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let ws = inner.ws();
    let types = args
        .string("types")
        .unwrap_or_else(|| "public_channel".into());
    let wanted: Vec<&str> = types.split(',').map(str::trim).collect();
    for t in &wanted {
        let scope: &[&str] = match *t {
            "public_channel" => &["channels:read"],
            "private_channel" => &["groups:read"],
            "im" => &["im:read"],
            "mpim" => &["mpim:read"],
            _ => return Err(ApiError::new("invalid_types")),
        };
        caller.require(scope)?;
    }
    let exclude_archived = args.bool("exclude_archived");
    let visible: Vec<Value> = ws
        .channels
        .iter()
        .filter(|c| {
            let t = match c.channel_type() {
                "channel" => "public_channel",
                "group" => "private_channel",
                other => other,
            };
            wanted.contains(&t)
                && (!c.is_private || c.is_member(&caller.user_id))
                && !(exclude_archived && c.is_archived)
        })
        .map(|c| c.to_json(Some(&caller.user_id)))
        .collect();
    let (page, next) = paginate(&visible, args, 100)?;
    Ok(obj(
        json!({"channels": page, "response_metadata": {"next_cursor": next}}),
    ))
}

fn ts_in_range(ts: &str, args: &Args) -> bool {
    let t: f64 = ts.parse().unwrap_or(0.0);
    let inclusive = args.bool("inclusive");
    let after_oldest = args
        .str("oldest")
        .and_then(|o| o.parse::<f64>().ok())
        .is_none_or(|o| if inclusive { t >= o } else { t > o });
    let before_latest = args
        .str("latest")
        .and_then(|l| l.parse::<f64>().ok())
        .is_none_or(|l| if inclusive { t <= l } else { t < l });
    after_oldest && before_latest
}

/// A message as `conversations.history` and `conversations.replies` list it: its `metadata`
/// only when the caller asked for it with `include_all_metadata`, as Slack does.
fn listed(ws: &Workspace, m: &Message, args: &Args) -> Value {
    let mut v = ws.message_json(m);
    if !args.bool("include_all_metadata")
        && let Some(fields) = v.as_object_mut()
    {
        fields.remove("metadata");
    }
    v
}

pub fn history(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let ws = inner.ws();
    let channel = channel_for(&ws, caller, args, Access::History)?;
    if caller.is_bot() && !channel.is_member(&caller.user_id) {
        return Err(ApiError::new("not_in_channel"));
    }
    // Newest first, as Slack lists history.
    let messages: Vec<Value> = ws
        .history(&channel.id)
        .into_iter()
        .rev()
        .filter(|m| ts_in_range(&m.ts, args))
        .map(|m| listed(&ws, m, args))
        .collect();
    let (page, next) = paginate(&messages, args, 100)?;
    Ok(obj(json!({
        "messages": page,
        "has_more": !next.is_empty(),
        "pin_count": 0,
        "channel_actions_ts": null,
        "channel_actions_count": 0,
        "response_metadata": {"next_cursor": next},
    })))
}

pub fn replies(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let ws = inner.ws();
    let channel = channel_for(&ws, caller, args, Access::History)?;
    let ts = args.required("ts")?;
    if ws.message(&channel.id, &ts).is_none() {
        return Err(ApiError::new("thread_not_found"));
    }
    let messages: Vec<Value> = ws
        .thread(&channel.id, &ts)
        .into_iter()
        .filter(|m| m.ts == ts || ts_in_range(&m.ts, args))
        .map(|m| listed(&ws, m, args))
        .collect();
    let (page, next) = paginate(&messages, args, 1000)?;
    Ok(obj(json!({
        "messages": page,
        "has_more": !next.is_empty(),
        "response_metadata": {"next_cursor": next},
    })))
}

pub fn members(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let ws = inner.ws();
    let channel = channel_for(&ws, caller, args, Access::Read)?;
    let (page, next) = paginate(&channel.members, args, 100)?;
    Ok(obj(
        json!({"members": page, "response_metadata": {"next_cursor": next}}),
    ))
}

pub fn open(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    if let Some(channel) = args.str("channel") {
        let channel = visible_channel(&ws, caller, Some(channel))?;
        return Ok(obj(json!({"channel": {"id": channel.id}})));
    }
    let users = args.required("users")?;
    let mut ids = Vec::new();
    for u in users.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        ids.push(
            ws.user(u)
                .map(|u| u.id.clone())
                .ok_or_else(|| ApiError::new("user_not_found"))?,
        );
    }
    match ids.as_slice() {
        [] => Err(ApiError::new("users_list_not_supplied")),
        [one] if caller.is_bot() => {
            let already = ws
                .channels
                .iter()
                .any(|c| c.is_im && c.im_user.as_deref() == Some(one.as_str()));
            let id = ws.open_dm(one);
            let channel = ws.channel(&id).expect("just opened").clone();
            let mut out = obj(
                json!({"channel": if args.bool("return_im") { channel.to_json(Some(&caller.user_id)) } else { json!({"id": id}) }}),
            );
            if already {
                out.insert("no_op".into(), json!(true));
                out.insert("already_open".into(), json!(true));
            }
            Ok(out)
        }
        many => {
            let mut members: Vec<String> = many.to_vec();
            if !members.contains(&caller.user_id) {
                members.push(caller.user_id.clone());
            }
            members.sort();
            let existing = ws.channels.iter().find(|c| {
                let mut m = c.members.clone();
                m.sort();
                (c.is_mpim || c.is_im) && m == members
            });
            if let Some(c) = existing {
                return Ok(obj(
                    json!({"channel": {"id": c.id}, "no_op": true, "already_open": true}),
                ));
            }
            let id = ws.ids.id("G");
            let names: Vec<String> = members
                .iter()
                .filter_map(|m| ws.user(m).map(|u| u.name.clone()))
                .collect();
            ws.add_channel(Channel {
                id: id.clone(),
                name: format!("mpdm-{}-1", names.join("--")),
                is_private: true,
                is_im: false,
                is_mpim: true,
                is_archived: false,
                created: now_secs(),
                creator: caller.user_id.clone(),
                topic: String::new(),
                purpose: String::new(),
                members,
                im_user: None,
            });
            Ok(obj(json!({"channel": {"id": id}})))
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 80
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub fn create(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let is_private = args.bool("is_private");
    caller.require(if is_private {
        &["groups:write"]
    } else {
        &["channels:manage", "channels:write"]
    })?;
    let name = args.required("name")?;
    if !valid_name(&name) {
        return Err(ApiError::new("invalid_name_specials"));
    }
    if ws.channels.iter().any(|c| !c.is_im && c.name == name) {
        return Err(ApiError::new("name_taken"));
    }
    let channel = Channel {
        id: ws.ids.id("C"),
        name,
        is_private,
        is_im: false,
        is_mpim: false,
        is_archived: false,
        created: now_secs(),
        creator: caller.user_id.clone(),
        topic: String::new(),
        purpose: String::new(),
        members: vec![caller.user_id.clone()],
        im_user: None,
    };
    let json = channel.to_json(Some(&caller.user_id));
    ws.add_channel(channel);
    Ok(obj(json!({"channel": json})))
}

pub fn invite(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let channel = channel_for(&ws, caller, args, Access::Manage)?;
    if !channel.is_member(&caller.user_id) {
        return Err(ApiError::new("not_in_channel"));
    }
    if channel.is_archived {
        return Err(ApiError::new("is_archived"));
    }
    let users = args.required("users")?;
    let mut ids = Vec::new();
    for u in users.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let id = ws.user(u).map(|u| u.id.clone()).ok_or_else(|| {
            ApiError::new("user_not_found").with(
                "errors",
                json!([{"user": u, "ok": false, "error": "user_not_found"}]),
            )
        })?;
        if id == caller.user_id {
            return Err(ApiError::new("cant_invite_self"));
        }
        ids.push(id);
    }
    if ids.is_empty() {
        return Err(ApiError::new("no_user"));
    }
    if ids.iter().all(|id| channel.is_member(id)) {
        return Err(ApiError::new("already_in_channel"));
    }
    for id in &ids {
        if !channel.is_member(id) {
            ws.channel_mut(&channel.id)
                .expect("exists")
                .members
                .push(id.clone());
            events::emit_member_change(inner, &mut ws, &channel.id, id, true);
        }
    }
    let json = ws
        .channel(&channel.id)
        .expect("exists")
        .to_json(Some(&caller.user_id));
    Ok(obj(json!({"channel": json})))
}

pub fn join(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let channel = visible_channel(&ws, caller, args.str("channel"))?;
    if channel.is_private || channel.is_im {
        return Err(ApiError::new("method_not_supported_for_channel_type"));
    }
    if channel.is_archived {
        return Err(ApiError::new("is_archived"));
    }
    let mut out = Value::Object(Default::default());
    if channel.is_member(&caller.user_id) {
        out["warning"] = json!("already_in_channel");
        out["response_metadata"] = json!({"warnings": ["already_in_channel"]});
    } else {
        ws.channel_mut(&channel.id)
            .expect("exists")
            .members
            .push(caller.user_id.clone());
        events::emit_member_change(inner, &mut ws, &channel.id, &caller.user_id, true);
    }
    out["channel"] = ws
        .channel(&channel.id)
        .expect("exists")
        .to_json(Some(&caller.user_id));
    Ok(obj(out))
}

pub fn leave(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let channel = visible_channel(&ws, caller, args.str("channel"))?;
    if channel.is_im {
        return Err(ApiError::new("method_not_supported_for_channel_type"));
    }
    if channel.name == "general" {
        return Err(ApiError::new("cant_leave_general"));
    }
    if !channel.is_member(&caller.user_id) {
        return Ok(obj(json!({"not_in_channel": true})));
    }
    ws.channel_mut(&channel.id)
        .expect("exists")
        .members
        .retain(|m| *m != caller.user_id);
    events::emit_member_change(inner, &mut ws, &channel.id, &caller.user_id, false);
    Ok(obj(json!({})))
}

pub fn archive(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let channel = channel_for(&ws, caller, args, Access::Manage)?;
    if channel.is_im {
        return Err(ApiError::new("method_not_supported_for_channel_type"));
    }
    if channel.name == "general" {
        return Err(ApiError::new("cant_archive_general"));
    }
    if channel.is_archived {
        return Err(ApiError::new("already_archived"));
    }
    if !channel.is_member(&caller.user_id) {
        return Err(ApiError::new("not_in_channel"));
    }
    ws.channel_mut(&channel.id).expect("exists").is_archived = true;
    Ok(obj(json!({})))
}

pub fn set_topic(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let channel = visible_channel(&ws, caller, args.str("channel"))?;
    caller.require(match channel.channel_type() {
        "channel" => &["channels:manage", "channels:write", "channels:write.topic"],
        "group" => &["groups:write", "groups:write.topic"],
        "im" => &["im:write", "im:write.topic"],
        _ => &["mpim:write", "mpim:write.topic"],
    })?;
    if !channel.is_member(&caller.user_id) {
        return Err(ApiError::new("not_in_channel"));
    }
    if channel.is_archived {
        return Err(ApiError::new("is_archived"));
    }
    let topic = args.string("topic").unwrap_or_default();
    if topic.chars().count() > 250 {
        return Err(ApiError::new("too_long"));
    }
    let c = ws.channel_mut(&channel.id).expect("exists");
    c.topic = topic;
    let json = c.to_json(Some(&caller.user_id));
    Ok(obj(json!({"channel": json})))
}
