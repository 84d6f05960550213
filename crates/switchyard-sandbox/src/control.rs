//! The control API, `/_sandbox/…`: act as the people in the workspace, read back what the app
//! did, and set rate limits, delivery timing and faults.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::delivery::{AckOutcome, AppRequest, DeliverySettings};
use crate::faults::FaultRule;
use crate::ids::secret;
use crate::manifest::Manifest;
use crate::ratelimit::RateLimitSettings;
use crate::web_api::chat::Content;
use crate::web_api::reactions::set_reaction;
use crate::workspace::{Channel, Ephemeral, Message, ResponseUrl, View, Workspace};
use crate::{Inner, events, lock};

pub fn router() -> Router<Arc<Inner>> {
    Router::new()
        .route("/info", get(info))
        .route("/messages", post(post_message))
        .route("/commands", post(run_command))
        .route("/actions", post(click))
        .route("/views/submit", post(submit_view))
        .route("/views/close", post(close_view))
        .route("/reactions", post(add_reaction))
        .route("/reactions/remove", post(remove_reaction))
        .route("/channels/join", post(join_channel))
        .route("/channels/leave", post(leave_channel))
        .route("/app_home", post(open_app_home))
        .route("/webhooks", post(new_webhook))
        .route("/app", get(app))
        .route("/app/manifest", put(set_manifest))
        .route("/channels", get(channels))
        .route("/users", get(users))
        .route("/channels/{channel}/messages", get(channel_messages))
        .route("/channels/{channel}/threads/{ts}", get(thread))
        .route("/ephemerals", get(ephemerals))
        .route("/dms/{user}", get(dms))
        .route("/views", get(views))
        .route("/api_calls", get(api_calls))
        .route("/deliveries", get(deliveries))
        .route("/stats", get(stats))
        .route("/changes", get(changes))
        .route(
            "/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route("/faults/{id}", delete(remove_fault))
        .route("/rate_limits", get(get_rate_limits).put(set_rate_limits))
        .route("/delivery", get(get_delivery).put(set_delivery))
        .route(
            "/delivery/origins",
            get(get_delivery_origins).put(set_delivery_origins),
        )
        .route("/socket", get(socket_connections))
        .route("/socket/disconnect", post(socket_disconnect))
        .route("/socket/drop", post(socket_drop))
}

/// A control API error: a 4xx with `{"ok":false,"error":…}`.
pub struct CtlError(StatusCode, String);

impl CtlError {
    fn not_found(what: &str) -> Self {
        Self(StatusCode::NOT_FOUND, format!("{what}_not_found"))
    }
    fn bad(error: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, error.into())
    }
}

impl IntoResponse for CtlError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"ok": false, "error": self.1}))).into_response()
    }
}

type CtlResult = Result<axum::Json<Value>, CtlError>;

fn ok(mut v: Value) -> CtlResult {
    v["ok"] = json!(true);
    Ok(axum::Json(v))
}

/// A JSON body whose errors are JSON too (axum's own `Json` rejects with plain text).
pub struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = CtlError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| CtlError::bad(format!("unreadable body: {e}")))?;
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| CtlError::bad(format!("invalid body: {e}")))
    }
}

fn user_id(ws: &Workspace, name: &str) -> Result<String, CtlError> {
    ws.user(name)
        .map(|u| u.id.clone())
        .ok_or_else(|| CtlError::not_found("user"))
}

/// A channel by id or name; a user (the bot, say) means the DM with them.
fn channel_for(ws: &mut Workspace, name: &str, user: &str) -> Result<Channel, CtlError> {
    if let Some(c) = ws.channel(name) {
        return Ok(c.clone());
    }
    if let Some(other) = ws.user(name).map(|u| u.id.clone()) {
        let person = if other == ws.app.bot_user_id {
            user.to_string()
        } else {
            other
        };
        let id = ws.open_dm(&person);
        return Ok(ws.channel(&id).cloned().expect("just opened"));
    }
    Err(CtlError::not_found("channel"))
}

async fn info(State(inner): State<Arc<Inner>>) -> CtlResult {
    let ws = inner.ws();
    let users: Map<String, Value> = ws
        .user_tokens
        .iter()
        .filter_map(|(token, id)| ws.user(id).map(|u| (u.name.clone(), json!(token))))
        .collect();
    let webhooks: Vec<Value> = ws
        .webhooks
        .iter()
        .map(|w| json!({"channel": w.channel, "url": webhook_url(&inner, &ws, w)}))
        .collect();
    ok(json!({
        "team_id": ws.team.id,
        "team_name": ws.team.name,
        "app_id": ws.app.id,
        "bot_user_id": ws.app.bot_user_id,
        "bot_id": ws.app.bot_id,
        "url": inner.base_url,
        "api_url": format!("{}/api/", inner.base_url),
        "control_url": format!("{}/_sandbox/", inner.base_url),
        "tokens": {"bot": ws.app.bot_token, "app": ws.app.app_token, "users": users},
        "signing_secret": ws.app.signing_secret,
        "webhooks": webhooks,
        "socket_mode": ws.app.manifest.socket_mode_enabled,
    }))
}

fn webhook_url(inner: &Inner, ws: &Workspace, w: &crate::workspace::Webhook) -> String {
    format!(
        "{}/services/{}/{}/{}",
        inner.base_url, ws.team.id, w.id, w.secret
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostMessage {
    user: String,
    channel: String,
    text: String,
    #[serde(default)]
    thread_ts: Option<String>,
}

async fn post_message(State(inner): State<Arc<Inner>>, Body(req): Body<PostMessage>) -> CtlResult {
    let mut ws = inner.ws();
    let user = user_id(&ws, &req.user)?;
    let channel = channel_for(&mut ws, &req.channel, &user)?;
    if !channel.is_member(&user) {
        return Err(CtlError(StatusCode::FORBIDDEN, "not_in_channel".into()));
    }
    if channel.is_archived {
        return Err(CtlError::bad("is_archived"));
    }
    if let Some(ts) = &req.thread_ts
        && ws.message(&channel.id, ts).is_none()
    {
        return Err(CtlError::not_found("thread"));
    }
    let message = Message {
        ts: ws.ids.ts(),
        channel: channel.id.clone(),
        thread_ts: req.thread_ts,
        user,
        blocks: Some(rich_text(&req.text)),
        text: req.text,
        client_msg_id: Some(crate::ids::envelope_id()),
        ..Message::default()
    };
    ws.insert_message(message.clone());
    let event_ids = events::emit_new_message(&inner, &mut ws, &message);
    drop(ws);
    inner.touch();
    ok(json!({"channel": channel.id, "ts": message.ts, "event_ids": event_ids}))
}

/// The `rich_text` block Slack's clients attach to what people type: mentions (`<@U…>`,
/// `<#C…>`, `<!here>`, `<!subteam^S…>`) and links as elements of their own, the text between
/// them without Slack's escapes.
fn rich_text(text: &str) -> Value {
    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }
    let mut elements = Vec::new();
    let push_text = |elements: &mut Vec<Value>, s: &str| {
        if !s.is_empty() {
            elements.push(json!({"type": "text", "text": unescape(s)}));
        }
    };
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        push_text(&mut elements, &rest[..start]);
        let token = &rest[start + 1..start + len];
        let (target, label) = token
            .split_once('|')
            .map_or((token, None), |(t, l)| (t, Some(l)));
        let element = if let Some(id) = target.strip_prefix('@') {
            json!({"type": "user", "user_id": id})
        } else if let Some(id) = target.strip_prefix('#') {
            json!({"type": "channel", "channel_id": id})
        } else if let Some(special) = target.strip_prefix('!') {
            match special.split_once('^') {
                Some(("subteam", id)) => json!({"type": "usergroup", "usergroup_id": id}),
                _ if ["here", "channel", "everyone"].contains(&special) => {
                    json!({"type": "broadcast", "range": special})
                }
                _ => json!({"type": "text", "text": unescape(label.unwrap_or(special))}),
            }
        } else {
            let mut link = json!({"type": "link", "url": unescape(target)});
            if let Some(label) = label {
                link["text"] = json!(unescape(label));
            }
            link
        };
        elements.push(element);
        rest = &rest[start + len + 1..];
    }
    push_text(&mut elements, rest);
    json!([{
        "type": "rich_text",
        "block_id": secret(5),
        "elements": [{"type": "rich_text_section", "elements": elements}],
    }])
}

fn new_response_url(inner: &Inner, ws: &mut Workspace, kind: &str, target: ResponseUrl) -> String {
    let key = secret(24);
    let n = ws.ids.id("");
    ws.response_urls.insert(key.clone(), target);
    format!("{}/{kind}/{}/{n}/{key}", inner.base_url, ws.team.id)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunCommand {
    user: String,
    channel: String,
    command: String,
    #[serde(default)]
    text: String,
}

async fn run_command(State(inner): State<Arc<Inner>>, Body(req): Body<RunCommand>) -> CtlResult {
    let (form, trigger_id, response_url, channel_id, user) = {
        let mut ws = inner.ws();
        if ws.app.manifest.command(&req.command).is_none() {
            return Err(CtlError::not_found("command"));
        }
        let user = user_id(&ws, &req.user)?;
        let channel = channel_for(&mut ws, &req.channel, &user)?;
        if !channel.is_member(&user) {
            return Err(CtlError(StatusCode::FORBIDDEN, "not_in_channel".into()));
        }
        let response_url = new_response_url(
            &inner,
            &mut ws,
            "commands",
            ResponseUrl {
                channel: channel.id.clone(),
                user: user.clone(),
                message_ts: None,
                is_ephemeral: false,
                uses: 0,
                created: std::time::Instant::now(),
            },
        );
        let trigger_id = ws.new_trigger(&user);
        let user_name = ws.user(&user).map(|u| u.name.clone()).unwrap_or_default();
        let channel_name = if channel.is_im {
            "directmessage".to_string()
        } else {
            channel.name.clone()
        };
        let form: Vec<(String, String)> = [
            ("token", "sandbox-verification-token".to_string()),
            ("team_id", ws.team.id.clone()),
            ("team_domain", ws.team.domain.clone()),
            ("channel_id", channel.id.clone()),
            ("channel_name", channel_name),
            ("user_id", user.clone()),
            ("user_name", user_name),
            ("command", req.command.clone()),
            ("text", req.text.clone()),
            ("api_app_id", ws.app.id.clone()),
            ("is_enterprise_install", "false".to_string()),
            ("response_url", response_url.clone()),
            ("trigger_id", trigger_id.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        (form, trigger_id, response_url, channel.id, user)
    };
    let ack = inner
        .request(AppRequest::Command {
            command: req.command,
            form,
        })
        .await;
    let applied = apply_message_ack(&inner, &ack, &channel_id, &user);
    inner.touch();
    let mut reply = json!({"trigger_id": trigger_id, "response_url": response_url, "ack": ack});
    if let Some(error) = &ack.error {
        reply["error"] = json!(error);
    }
    if let Err(e) = applied {
        reply["ack_error"] = json!(e);
    }
    ok(reply)
}

/// A command's ack may carry a message: shown to the person alone, or in the channel.
fn apply_message_ack(
    inner: &Arc<Inner>,
    ack: &AckOutcome,
    channel: &str,
    user: &str,
) -> Result<(), String> {
    let Some(body) = &ack.body else { return Ok(()) };
    let (content, in_channel) = match body {
        Value::String(text) => (Content::checked(text.clone(), None, None, None), false),
        Value::Object(o) => (
            Content::checked(
                o.get("text")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                o.get("blocks").cloned().filter(|b| !b.is_null()),
                o.get("attachments").cloned().filter(|a| !a.is_null()),
                None,
            ),
            o.get("response_type").and_then(Value::as_str) == Some("in_channel"),
        ),
        _ => return Err("invalid_ack_body".into()),
    };
    let content = match content {
        Ok(c) => c,
        Err(e) if e.code == "no_text" => return Ok(()),
        Err(e) => return Err(e.code),
    };
    let mut ws = inner.ws();
    let mut message = ws.bot_message(channel, String::new());
    content.apply(&mut message);
    if in_channel {
        ws.insert_message(message.clone());
        events::emit_new_message(inner, &mut ws, &message);
    } else {
        ws.ephemerals.push(Ephemeral {
            channel: channel.into(),
            user: user.into(),
            message,
        });
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Click {
    user: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    view_id: Option<String>,
    action_id: String,
    #[serde(default)]
    block_id: Option<String>,
    /// For selects: the chosen option's value (or user, channel, date); for inputs: the text.
    #[serde(default)]
    value: Option<Value>,
}

/// Every interactive element in a list of blocks, with its block's id.
fn elements(blocks: &Value) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for (i, block) in blocks.as_array().into_iter().flatten().enumerate() {
        let block_id = block
            .get("block_id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("block{i}"), str::to_string);
        let mut push = |e: &Value| {
            if e.get("action_id").is_some() {
                found.push((block_id.clone(), e.clone()));
            }
        };
        match block["type"].as_str() {
            Some("actions") => block["elements"]
                .as_array()
                .into_iter()
                .flatten()
                .for_each(&mut push),
            Some("section") => block.get("accessory").into_iter().for_each(&mut push),
            Some("input") => block.get("element").into_iter().for_each(&mut push),
            _ => {}
        }
    }
    found
}

fn options_of(element: &Value) -> Vec<Value> {
    let mut all: Vec<Value> = element["options"].as_array().cloned().unwrap_or_default();
    for group in element["option_groups"].as_array().into_iter().flatten() {
        all.extend(group["options"].as_array().cloned().unwrap_or_default());
    }
    all
}

fn option_with(element: &Value, value: Option<&Value>) -> Option<Value> {
    let options = options_of(element);
    match value.and_then(Value::as_str) {
        Some(v) => options.into_iter().find(|o| o["value"].as_str() == Some(v)),
        None => options.into_iter().next(),
    }
}

/// The value of an element as Slack reports it in `actions` and `state.values`.
fn element_value(element: &Value, value: Option<&Value>) -> Result<Map<String, Value>, CtlError> {
    let kind = element["type"].as_str().unwrap_or("");
    let mut out = Map::new();
    out.insert("type".into(), json!(kind));
    let list = |v: Option<&Value>| -> Vec<Value> {
        match v {
            Some(Value::Array(a)) => a.clone(),
            Some(v) => vec![v.clone()],
            None => vec![],
        }
    };
    match kind {
        "button" => {}
        "static_select" | "external_select" | "radio_buttons" | "overflow" => {
            let option =
                option_with(element, value).ok_or_else(|| CtlError::not_found("option"))?;
            out.insert("selected_option".into(), option);
        }
        "multi_static_select" | "checkboxes" => {
            let wanted = list(value);
            let chosen: Vec<Value> = options_of(element)
                .into_iter()
                .filter(|o| wanted.iter().any(|w| w.as_str() == o["value"].as_str()))
                .collect();
            out.insert("selected_options".into(), json!(chosen));
        }
        "users_select" => {
            _ = out.insert(
                "selected_user".into(),
                value.cloned().unwrap_or(Value::Null),
            )
        }
        "multi_users_select" => _ = out.insert("selected_users".into(), json!(list(value))),
        "conversations_select" => {
            _ = out.insert(
                "selected_conversation".into(),
                value.cloned().unwrap_or(Value::Null),
            )
        }
        "channels_select" => {
            _ = out.insert(
                "selected_channel".into(),
                value.cloned().unwrap_or(Value::Null),
            )
        }
        "multi_conversations_select" => {
            _ = out.insert("selected_conversations".into(), json!(list(value)))
        }
        "multi_channels_select" => _ = out.insert("selected_channels".into(), json!(list(value))),
        "datepicker" => {
            _ = out.insert(
                "selected_date".into(),
                value.cloned().unwrap_or(Value::Null),
            )
        }
        "timepicker" => {
            _ = out.insert(
                "selected_time".into(),
                value.cloned().unwrap_or(Value::Null),
            )
        }
        _ => _ = out.insert("value".into(), value.cloned().unwrap_or(Value::Null)),
    }
    Ok(out)
}

fn action_json(
    block_id: &str,
    element: &Value,
    value: Option<&Value>,
    action_ts: &str,
) -> Result<Value, CtlError> {
    let mut action = element_value(element, value)?;
    action.insert("action_id".into(), element["action_id"].clone());
    action.insert("block_id".into(), json!(block_id));
    action.insert("action_ts".into(), json!(action_ts));
    for key in ["text", "value", "style", "placeholder"] {
        if let Some(v) = element.get(key)
            && !action.contains_key(key)
        {
            action.insert(key.into(), v.clone());
        }
    }
    Ok(Value::Object(action))
}

fn find_element(
    blocks: &Value,
    action_id: &str,
    block_id: Option<&str>,
) -> Result<(String, Value), CtlError> {
    elements(blocks)
        .into_iter()
        .find(|(b, e)| {
            e["action_id"].as_str() == Some(action_id) && block_id.is_none_or(|want| want == b)
        })
        .ok_or_else(|| CtlError::not_found("element"))
}

async fn click(State(inner): State<Arc<Inner>>, Body(req): Body<Click>) -> CtlResult {
    let payload = {
        let mut ws = inner.ws();
        let user = user_id(&ws, &req.user)?;
        let trigger_id = ws.new_trigger(&user);
        let action_ts = ws.ids.ts();
        let mut payload = json!({
            "type": "block_actions",
            "user": ws.user_ref_json(&user),
            "api_app_id": ws.app.id,
            "token": "sandbox-verification-token",
            "trigger_id": trigger_id,
            "team": ws.team_json(),
            "enterprise": null,
            "is_enterprise_install": false,
        });
        if let Some(view_id) = &req.view_id {
            let view = ws
                .views
                .iter()
                .find(|v| v.id == *view_id && v.open && v.user == user)
                .cloned()
                .ok_or_else(|| CtlError::not_found("view"))?;
            let blocks = view.definition.get("blocks").cloned().unwrap_or_default();
            let (block_id, element) =
                find_element(&blocks, &req.action_id, req.block_id.as_deref())?;
            payload["container"] = json!({"type": "view", "view_id": view.id});
            payload["view"] = ws.view_json(&view);
            payload["actions"] = json!([action_json(
                &block_id,
                &element,
                req.value.as_ref(),
                &action_ts
            )?]);
        } else {
            let channel_name = req
                .channel
                .as_deref()
                .ok_or_else(|| CtlError::bad("channel or view_id is required"))?;
            let ts = req
                .ts
                .as_deref()
                .ok_or_else(|| CtlError::bad("ts is required"))?;
            let channel = channel_for(&mut ws, channel_name, &user)?;
            let (message, is_ephemeral) = match ws.message(&channel.id, ts) {
                Some(m) => (m.clone(), false),
                None => ws
                    .ephemerals
                    .iter()
                    .find(|e| e.message.ts == ts && e.user == user && e.channel == channel.id)
                    .map(|e| (e.message.clone(), true))
                    .ok_or_else(|| CtlError::not_found("message"))?,
            };
            let blocks = message.blocks.clone().unwrap_or_default();
            let (block_id, element) =
                find_element(&blocks, &req.action_id, req.block_id.as_deref())?;
            let response_url = new_response_url(
                &inner,
                &mut ws,
                "actions",
                ResponseUrl {
                    channel: channel.id.clone(),
                    user: user.clone(),
                    message_ts: Some(ts.to_string()),
                    is_ephemeral,
                    uses: 0,
                    created: std::time::Instant::now(),
                },
            );
            payload["container"] = json!({
                "type": "message",
                "message_ts": ts,
                "channel_id": channel.id,
                "is_ephemeral": is_ephemeral,
            });
            payload["channel"] = json!({"id": channel.id, "name": channel.name});
            if !is_ephemeral {
                payload["message"] = ws.message_json(&message);
            }
            payload["state"] = json!({"values": {}});
            payload["response_url"] = json!(response_url);
            payload["actions"] = json!([action_json(
                &block_id,
                &element,
                req.value.as_ref(),
                &action_ts
            )?]);
        }
        payload
    };
    let trigger_id = payload["trigger_id"].clone();
    let response_url = payload.get("response_url").cloned();
    let ack = inner.request(AppRequest::Interaction { payload }).await;
    inner.touch();
    let mut reply = json!({"trigger_id": trigger_id, "ack": ack});
    if let Some(url) = response_url {
        reply["response_url"] = url;
    }
    if let Some(error) = &ack.error {
        reply["error"] = json!(error);
    }
    ok(reply)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitView {
    user: String,
    #[serde(default)]
    view_id: Option<String>,
    /// `{block_id: {action_id: value}}`; a value is text, an option value, an id, or a list.
    #[serde(default)]
    values: Map<String, Value>,
}

fn target_view(ws: &Workspace, user: &str, view_id: Option<&str>) -> Result<View, CtlError> {
    match view_id {
        Some(id) => ws
            .views
            .iter()
            .find(|v| v.id == id && v.open && v.user == user)
            .cloned(),
        None => ws.modal_stack(user).last().map(|v| (*v).clone()),
    }
    .ok_or_else(|| CtlError::not_found("view"))
}

/// Builds `state.values` for a view from what the person typed; refuses a missing required input.
fn state_values(view: &View, given: &Map<String, Value>) -> Result<Value, CtlError> {
    let mut state = Map::new();
    let blocks = view.definition.get("blocks").cloned().unwrap_or_default();
    for (i, block) in blocks.as_array().into_iter().flatten().enumerate() {
        if block["type"].as_str() != Some("input") {
            continue;
        }
        let block_id = block
            .get("block_id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("block{i}"), str::to_string);
        let element = &block["element"];
        let action_id = element["action_id"].as_str().unwrap_or("").to_string();
        let value = given.get(&block_id).and_then(|b| b.get(&action_id));
        let optional = block["optional"].as_bool().unwrap_or(false);
        let empty = value.is_none_or(|v| {
            v.is_null() || v.as_str() == Some("") || v.as_array().is_some_and(Vec::is_empty)
        });
        if empty && !optional {
            return Err(CtlError::bad(format!("required_input_missing: {block_id}")));
        }
        let entry = match value {
            Some(Value::Object(typed)) => Value::Object(typed.clone()),
            _ => Value::Object(element_value(element, value)?),
        };
        state.insert(block_id, json!({action_id: entry}));
    }
    Ok(Value::Object(state))
}

async fn submit_view(State(inner): State<Arc<Inner>>, Body(req): Body<SubmitView>) -> CtlResult {
    let (payload, view_id, user) = {
        let mut ws = inner.ws();
        let user = user_id(&ws, &req.user)?;
        let view = target_view(&ws, &user, req.view_id.as_deref())?;
        let state = state_values(&view, &req.values)?;
        if let Some(v) = ws.views.iter_mut().find(|v| v.id == view.id) {
            v.state = state;
        }
        let view = ws
            .views
            .iter()
            .find(|v| v.id == view.id)
            .cloned()
            .expect("exists");
        let trigger_id = ws.new_trigger(&user);
        let payload = json!({
            "type": "view_submission",
            "team": ws.team_json(),
            "user": ws.user_ref_json(&user),
            "api_app_id": ws.app.id,
            "token": "sandbox-verification-token",
            "trigger_id": trigger_id,
            "view": ws.view_json(&view),
            "response_urls": [],
            "is_enterprise_install": false,
            "enterprise": null,
        });
        (payload, view.id, user)
    };
    let ack = inner.request(AppRequest::Interaction { payload }).await;
    let mut reply = json!({"ack": ack, "view_closed": false});
    if let Some(error) = &ack.error {
        reply["error"] = json!(error);
        return ok(reply);
    }
    let mut ws = inner.ws();
    let action = ack
        .body
        .as_ref()
        .and_then(|b| b.get("response_action"))
        .and_then(Value::as_str);
    match action {
        Some("errors") => {
            reply["errors"] = ack
                .body
                .as_ref()
                .map(|b| b["errors"].clone())
                .unwrap_or_default()
        }
        Some("update") | Some("push") => {
            let definition = ack
                .body
                .as_ref()
                .map(|b| b["view"].clone())
                .unwrap_or_default();
            let blocks = definition
                .get("blocks")
                .cloned()
                .unwrap_or_else(|| json!([]));
            if let Err(e) = crate::blocks::validate(&blocks, crate::blocks::Surface::View) {
                reply["ack_error"] = json!(e.code);
            } else if action == Some("update") {
                let hash = format!("{}.{}", crate::ids::now_secs(), secret(8));
                if let Some(v) = ws.views.iter_mut().find(|v| v.id == view_id) {
                    v.definition = definition;
                    v.hash = hash;
                    v.state = json!({});
                }
                reply["view_id"] = json!(view_id);
            } else {
                let previous = ws
                    .views
                    .iter()
                    .find(|v| v.id == view_id)
                    .cloned()
                    .expect("exists");
                let id = ws.ids.id("V");
                ws.views.push(View {
                    id: id.clone(),
                    user: user.clone(),
                    kind: "modal".into(),
                    definition,
                    hash: format!("{}.{}", crate::ids::now_secs(), secret(8)),
                    root_view_id: previous.root_view_id.clone(),
                    previous_view_id: Some(previous.id.clone()),
                    state: json!({}),
                    open: true,
                });
                reply["view_id"] = json!(id);
            }
        }
        Some("clear") => {
            for v in ws
                .views
                .iter_mut()
                .filter(|v| v.user == user && v.kind == "modal")
            {
                v.open = false;
            }
            reply["view_closed"] = json!(true);
        }
        _ => {
            close_from(&mut ws, &user, &view_id);
            reply["view_closed"] = json!(true);
        }
    }
    drop(ws);
    inner.touch();
    ok(reply)
}

/// Closes a modal and every modal pushed on top of it.
fn close_from(ws: &mut Workspace, user: &str, view_id: &str) {
    let stack: Vec<String> = ws.modal_stack(user).iter().map(|v| v.id.clone()).collect();
    if let Some(pos) = stack.iter().position(|id| id == view_id) {
        for id in &stack[pos..] {
            if let Some(v) = ws.views.iter_mut().find(|v| v.id == *id) {
                v.open = false;
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseView {
    user: String,
    #[serde(default)]
    view_id: Option<String>,
}

async fn close_view(State(inner): State<Arc<Inner>>, Body(req): Body<CloseView>) -> CtlResult {
    let payload = {
        let mut ws = inner.ws();
        let user = user_id(&ws, &req.user)?;
        let view = target_view(&ws, &user, req.view_id.as_deref())?;
        close_from(&mut ws, &user, &view.id);
        let notify = view
            .definition
            .get("notify_on_close")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        notify.then(|| {
            json!({
                "type": "view_closed",
                "team": ws.team_json(),
                "user": ws.user_ref_json(&user),
                "api_app_id": ws.app.id,
                "token": "sandbox-verification-token",
                "view": ws.view_json(&view),
                "is_cleared": false,
                "is_enterprise_install": false,
                "enterprise": null,
            })
        })
    };
    inner.touch();
    match payload {
        Some(payload) => {
            let ack = inner.request(AppRequest::Interaction { payload }).await;
            ok(json!({"notified": true, "ack": ack}))
        }
        None => ok(json!({"notified": false})),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct React {
    user: String,
    channel: String,
    ts: String,
    name: String,
}

async fn react(inner: Arc<Inner>, req: React, add: bool) -> CtlResult {
    let mut ws = inner.ws();
    let user = user_id(&ws, &req.user)?;
    let channel = channel_for(&mut ws, &req.channel, &user)?;
    set_reaction(&mut ws, &channel.id, &req.ts, &user, &req.name, add)
        .map_err(|e| CtlError::bad(e.code))?;
    events::emit_reaction(
        &inner,
        &mut ws,
        &channel.id,
        &req.ts,
        &user,
        req.name.trim_matches(':'),
        add,
    );
    drop(ws);
    inner.touch();
    ok(json!({}))
}

async fn add_reaction(State(inner): State<Arc<Inner>>, Body(req): Body<React>) -> CtlResult {
    react(inner, req, true).await
}

async fn remove_reaction(State(inner): State<Arc<Inner>>, Body(req): Body<React>) -> CtlResult {
    react(inner, req, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Membership {
    user: String,
    channel: String,
}

async fn membership(inner: Arc<Inner>, req: Membership, join: bool) -> CtlResult {
    let mut ws = inner.ws();
    let user = user_id(&ws, &req.user)?;
    let channel = ws
        .channel(&req.channel)
        .cloned()
        .ok_or_else(|| CtlError::not_found("channel"))?;
    if channel.is_im {
        return Err(CtlError::bad("method_not_supported_for_channel_type"));
    }
    if channel.is_member(&user) == join {
        return Err(CtlError::bad(if join {
            "already_in_channel"
        } else {
            "not_in_channel"
        }));
    }
    let c = ws.channel_mut(&channel.id).expect("exists");
    if join {
        c.members.push(user.clone());
    } else {
        c.members.retain(|m| *m != user);
    }
    events::emit_member_change(&inner, &mut ws, &channel.id, &user, join);
    drop(ws);
    inner.touch();
    ok(json!({}))
}

async fn join_channel(State(inner): State<Arc<Inner>>, Body(req): Body<Membership>) -> CtlResult {
    membership(inner, req, true).await
}

async fn leave_channel(State(inner): State<Arc<Inner>>, Body(req): Body<Membership>) -> CtlResult {
    membership(inner, req, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserOnly {
    user: String,
}

async fn open_app_home(State(inner): State<Arc<Inner>>, Body(req): Body<UserOnly>) -> CtlResult {
    let mut ws = inner.ws();
    let user = user_id(&ws, &req.user)?;
    let dm = ws.open_dm(&user);
    let home = ws
        .views
        .iter()
        .find(|v| v.kind == "home" && v.user == user)
        .cloned();
    let mut event = json!({"type": "app_home_opened", "user": user, "channel": dm, "tab": "home", "event_ts": ws.ids.ts()});
    if let Some(view) = home {
        event["view"] = ws.view_json(&view);
    }
    let event_id = inner.emit_event(&mut ws, event, "app_home_opened");
    drop(ws);
    inner.touch();
    ok(json!({"event_id": event_id}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    channel: String,
}

async fn new_webhook(State(inner): State<Arc<Inner>>, Body(req): Body<NewWebhook>) -> CtlResult {
    let mut ws = inner.ws();
    let channel = ws
        .channel(&req.channel)
        .cloned()
        .ok_or_else(|| CtlError::not_found("channel"))?;
    let hook = ws.add_webhook(&channel.id, None);
    ok(json!({"url": webhook_url(&inner, &ws, &hook), "channel": channel.id}))
}

async fn app(State(inner): State<Arc<Inner>>) -> CtlResult {
    let ws = inner.ws();
    let verified: Vec<String> = lock(&inner.delivery.verified_urls)
        .iter()
        .cloned()
        .collect();
    ok(json!({
        "app_id": ws.app.id,
        "manifest": ws.app.manifest.raw,
        "socket_mode": ws.app.manifest.socket_mode_enabled,
        "verified_request_urls": verified,
    }))
}

async fn set_manifest(State(inner): State<Arc<Inner>>, body: String) -> CtlResult {
    let manifest =
        Manifest::parse(&body).map_err(|e| CtlError::bad(format!("invalid_manifest: {e}")))?;
    inner.ws().app.manifest = manifest;
    lock(&inner.delivery.verified_urls).clear();
    inner.touch();
    ok(json!({}))
}

async fn channels(State(inner): State<Arc<Inner>>) -> CtlResult {
    let ws = inner.ws();
    let list: Vec<Value> = ws
        .channels
        .iter()
        .map(|c| {
            let mut v = c.to_json(Some(&ws.app.bot_user_id));
            v["members"] = json!(c.members);
            // For unread marks: the newest top-level message (thread replies do not count).
            v["latest_ts"] = json!(ws.history(&c.id).last().map(|m| m.ts.clone()));
            v
        })
        .collect();
    ok(json!({"channels": list}))
}

async fn users(State(inner): State<Arc<Inner>>) -> CtlResult {
    let ws = inner.ws();
    let list: Vec<Value> = ws.users.iter().map(|u| u.to_json(&ws.team.id)).collect();
    ok(json!({"users": list}))
}

#[derive(Deserialize, Default)]
struct Wait {
    #[serde(default)]
    wait_for: Option<usize>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    method: Option<String>,
    /// On the logs (`api_calls`, `deliveries`): only the newest this many.
    #[serde(default)]
    last: Option<usize>,
}

/// The newest `last` items of a log, oldest first.
fn newest(mut items: Vec<Value>, last: Option<usize>) -> Vec<Value> {
    if let Some(n) = last {
        items.drain(..items.len().saturating_sub(n));
    }
    items
}

/// Reads a list; with `wait_for`, waits (up to `timeout_ms`, at most a minute) until it is that long.
async fn read_list<F>(inner: &Inner, wait: &Wait, read: F) -> Result<Vec<Value>, CtlError>
where
    F: Fn(&Workspace) -> Result<Vec<Value>, CtlError>,
{
    let mut changes = inner.changed.subscribe();
    let timeout = Duration::from_millis(wait.timeout_ms.unwrap_or(5_000).min(60_000));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let items = read(&inner.ws())?;
        if wait.wait_for.is_none_or(|n| items.len() >= n) {
            return Ok(items);
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return Ok(items);
        }
    }
}

async fn channel_messages(
    State(inner): State<Arc<Inner>>,
    Path(channel): Path<String>,
    Query(wait): Query<Wait>,
) -> CtlResult {
    let messages = read_list(&inner, &wait, |ws| {
        let c = ws
            .channel(&channel)
            .ok_or_else(|| CtlError::not_found("channel"))?;
        Ok(ws
            .history(&c.id)
            .into_iter()
            .map(|m| ws.message_json(m))
            .collect())
    })
    .await?;
    ok(json!({"messages": messages}))
}

async fn thread(
    State(inner): State<Arc<Inner>>,
    Path((channel, ts)): Path<(String, String)>,
    Query(wait): Query<Wait>,
) -> CtlResult {
    let messages = read_list(&inner, &wait, |ws| {
        let c = ws
            .channel(&channel)
            .ok_or_else(|| CtlError::not_found("channel"))?;
        Ok(ws
            .thread(&c.id, &ts)
            .into_iter()
            .map(|m| ws.message_json(m))
            .collect())
    })
    .await?;
    ok(json!({"messages": messages}))
}

async fn ephemerals(State(inner): State<Arc<Inner>>, Query(wait): Query<Wait>) -> CtlResult {
    let list = read_list(&inner, &wait, |ws| {
        let user = wait.user.as_deref().map(|u| user_id(ws, u)).transpose()?;
        let channel = wait
            .channel
            .as_deref()
            .map(|c| ws.channel(c).map(|c| c.id.clone()).ok_or_else(|| CtlError::not_found("channel")))
            .transpose()?;
        Ok(ws
            .ephemerals
            .iter()
            .filter(|e| user.as_ref().is_none_or(|u| *u == e.user) && channel.as_ref().is_none_or(|c| *c == e.channel))
            .map(|e| json!({"user": e.user, "channel": e.channel, "message": ws.message_json(&e.message)}))
            .collect())
    })
    .await?;
    ok(json!({"ephemerals": list}))
}

async fn dms(
    State(inner): State<Arc<Inner>>,
    Path(user): Path<String>,
    Query(wait): Query<Wait>,
) -> CtlResult {
    let messages = read_list(&inner, &wait, |ws| {
        let user = user_id(ws, &user)?;
        let dm = ws
            .channels
            .iter()
            .find(|c| c.is_im && c.im_user.as_deref() == Some(user.as_str()));
        Ok(dm
            .map(|c| {
                ws.messages_in(&c.id)
                    .iter()
                    .map(|m| ws.message_json(m))
                    .collect()
            })
            .unwrap_or_default())
    })
    .await?;
    ok(json!({"messages": messages}))
}

async fn views(State(inner): State<Arc<Inner>>, Query(wait): Query<Wait>) -> CtlResult {
    let list = read_list(&inner, &wait, |ws| {
        let user = wait.user.as_deref().map(|u| user_id(ws, u)).transpose()?;
        Ok(ws
            .views
            .iter()
            .filter(|v| v.open && user.as_ref().is_none_or(|u| *u == v.user))
            .map(|v| {
                let mut j = ws.view_json(v);
                j["user"] = json!(v.user);
                j
            })
            .collect())
    })
    .await?;
    ok(json!({"views": list}))
}

async fn api_calls(State(inner): State<Arc<Inner>>, Query(wait): Query<Wait>) -> CtlResult {
    let calls = read_list(&inner, &wait, |ws| {
        Ok(ws
            .api_calls
            .iter()
            .filter(|c| wait.method.as_ref().is_none_or(|m| *m == c.method))
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .collect())
    })
    .await?;
    ok(json!({"calls": newest(calls, wait.last)}))
}

async fn deliveries(State(inner): State<Arc<Inner>>, Query(wait): Query<Wait>) -> CtlResult {
    let list = read_list(&inner, &wait, |ws| {
        Ok(ws
            .deliveries
            .iter()
            .map(|d| serde_json::to_value(d).unwrap_or_default())
            .collect())
    })
    .await?;
    ok(json!({"deliveries": newest(list, wait.last)}))
}

/// Counts only, cheap to poll: Web API calls per method (ok / failed), deliveries by outcome.
async fn stats(State(inner): State<Arc<Inner>>) -> CtlResult {
    let faults = inner.faults().fired().clone();
    let ws = inner.ws();
    let counts = ws.call_counts();
    // The limiter's own 429s (a client going faster than Slack allows), not injected ones.
    let limited: Map<String, Value> = counts
        .iter()
        .filter(|(_, c)| c.rate_limited > 0)
        .map(|(m, c)| (m.clone(), json!(c.rate_limited)))
        .collect();
    let mut outcomes: std::collections::BTreeMap<&str, u64> = Default::default();
    for d in &ws.deliveries {
        *outcomes.entry(d.outcome.as_str()).or_default() += 1;
    }
    let calls: Map<String, Value> = counts
        .iter()
        .map(|(m, c)| (m.clone(), json!({"ok": c.ok, "failed": c.failed})))
        .collect();
    ok(
        json!({"api_calls": calls, "deliveries": outcomes, "rate_limited": limited, "faults_fired": faults}),
    )
}

/// `GET /_sandbox/changes`: server-sent events, one `change` (its data the change counter) at
/// once and then after every change, coalesced when they come faster than they are read. The web
/// client reads again on each; the stream ends when the sandbox shuts down.
async fn changes(
    State(inner): State<Arc<Inner>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let rx = inner.changed.subscribe();
    let stream =
        futures_util::stream::unfold((inner, rx, true), |(inner, mut rx, first)| async move {
            if !first && rx.changed().await.is_err() {
                return None;
            }
            if inner.closed.load(std::sync::atomic::Ordering::Relaxed) {
                return None;
            }
            let n = *rx.borrow_and_update();
            let event = Event::default().event("change").data(n.to_string());
            Some((Ok(event), (inner, rx, false)))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn add_fault(State(inner): State<Arc<Inner>>, Body(rule): Body<FaultRule>) -> CtlResult {
    rule.validate().map_err(CtlError::bad)?;
    let id = inner.faults().add(rule);
    ok(json!({"id": id}))
}

async fn list_faults(State(inner): State<Arc<Inner>>) -> CtlResult {
    ok(json!({"faults": inner.faults().list()}))
}

async fn clear_faults(State(inner): State<Arc<Inner>>) -> CtlResult {
    inner.faults().clear();
    ok(json!({}))
}

async fn remove_fault(State(inner): State<Arc<Inner>>, Path(id): Path<u64>) -> CtlResult {
    if inner.faults().remove(id) {
        ok(json!({}))
    } else {
        Err(CtlError::not_found("fault"))
    }
}

async fn get_rate_limits(State(inner): State<Arc<Inner>>) -> CtlResult {
    ok(json!({"rate_limits": inner.limiter().settings}))
}

async fn set_rate_limits(
    State(inner): State<Arc<Inner>>,
    Body(settings): Body<RateLimitSettings>,
) -> CtlResult {
    inner.limiter().set(settings);
    ok(json!({}))
}

async fn get_delivery(State(inner): State<Arc<Inner>>) -> CtlResult {
    ok(json!({"delivery": inner.delivery.settings()}))
}

async fn set_delivery(
    State(inner): State<Arc<Inner>>,
    Body(settings): Body<DeliverySettings>,
) -> CtlResult {
    inner.delivery.set_settings(settings);
    ok(json!({}))
}

async fn get_delivery_origins(State(inner): State<Arc<Inner>>) -> CtlResult {
    ok(json!({"origins": inner.delivery.origins()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Origins {
    origins: Vec<String>,
}

async fn set_delivery_origins(
    State(inner): State<Arc<Inner>>,
    Body(body): Body<Origins>,
) -> CtlResult {
    inner
        .delivery
        .set_origins(body.origins)
        .map_err(CtlError::bad)?;
    ok(json!({}))
}

async fn socket_connections(State(inner): State<Arc<Inner>>) -> CtlResult {
    ok(json!({"connections": inner.delivery.hub.connection_ids()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Disconnect {
    #[serde(default = "refresh_requested")]
    reason: String,
    #[serde(default)]
    close: bool,
}

fn refresh_requested() -> String {
    "refresh_requested".into()
}

async fn socket_disconnect(
    State(inner): State<Arc<Inner>>,
    Body(req): Body<Disconnect>,
) -> CtlResult {
    const REASONS: &[&str] = &[
        "warning",
        "refresh_requested",
        "link_disabled",
        "too_many_websockets",
    ];
    if !REASONS.contains(&req.reason.as_str()) {
        return Err(CtlError::bad(format!("unknown reason {:?}", req.reason)));
    }
    let grace = if req.close {
        Duration::ZERO
    } else {
        Duration::from_secs(1)
    };
    let count = inner.delivery.hub.connection_ids().len();
    inner.delivery.hub.disconnect_all(&req.reason, grace);
    ok(json!({"connections": count}))
}

async fn socket_drop(State(inner): State<Arc<Inner>>) -> CtlResult {
    let count = inner.delivery.hub.connection_ids().len();
    inner.delivery.hub.drop_all();
    ok(json!({"connections": count}))
}
