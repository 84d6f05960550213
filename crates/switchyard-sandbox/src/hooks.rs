//! URLs Slack gives out for posting without a token: incoming webhooks and `response_url`s.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Inner;
use crate::events;
use crate::ratelimit::{self, PER_CHANNEL};
use crate::web_api::chat::{Content, edit_message};
use crate::workspace::{Ephemeral, Workspace};

/// A `response_url` may be used five times within thirty minutes.
pub const RESPONSE_URL_USES: u32 = 5;
pub const RESPONSE_URL_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// The rate-limit bucket for messages into one channel, shared by `chat.postMessage` and webhooks.
pub fn channel_bucket(channel_id: &str) -> String {
    format!("post:{channel_id}")
}

fn text_reply(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

/// A JSON body, or a form whose `payload` field holds JSON (both are accepted by Slack's hooks).
fn json_or_payload_form(headers: &HeaderMap, body: &[u8]) -> Option<Value> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
        let payload = fields.into_iter().find(|(k, _)| k == "payload")?.1;
        serde_json::from_str(&payload).ok()
    } else {
        serde_json::from_slice(body).ok()
    }
    .filter(Value::is_object)
}

fn content_of(body: &Value) -> Result<Content, &'static str> {
    let text = body
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let blocks = body.get("blocks").cloned().filter(|b| !b.is_null());
    let attachments = body.get("attachments").cloned().filter(|a| !a.is_null());
    Content::checked(text, blocks, attachments, None).map_err(|e| match e.code.as_str() {
        "no_text" => "no_text",
        "msg_too_long" => "msg_too_long",
        _ => "invalid_blocks",
    })
}

/// `POST /services/T…/B…/secret`: an incoming webhook.
pub async fn webhook(
    State(inner): State<Arc<Inner>>,
    Path((team, hook_id, secret)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let channel = {
        let ws = inner.ws();
        let found = ws
            .webhooks
            .iter()
            .find(|w| w.secret == secret && w.id == hook_id && team == ws.team.id)
            .map(|w| w.channel.clone());
        match found.and_then(|c| ws.channel(&c).cloned()) {
            Some(c) => c,
            None => return text_reply(StatusCode::NOT_FOUND, "no_service"),
        }
    };
    let Some(payload) = json_or_payload_form(&headers, &body) else {
        return text_reply(StatusCode::BAD_REQUEST, "invalid_payload");
    };
    // As a legacy incoming webhook: `channel` (an id or `#name`) posts elsewhere. An unknown
    // one is Slack's `channel_not_found` (404).
    let channel = match payload.get("channel").and_then(Value::as_str) {
        None => channel,
        Some(other) => match inner.ws().channel(other).cloned() {
            Some(c) => c,
            None => return text_reply(StatusCode::NOT_FOUND, "channel_not_found"),
        },
    };
    if channel.is_archived {
        return text_reply(StatusCode::GONE, "channel_is_archived");
    }
    let content = match content_of(&payload) {
        Ok(c) => c,
        Err(code) => return text_reply(StatusCode::BAD_REQUEST, code),
    };
    if let Err(wait) = inner.limiter().check(
        "incoming-webhook",
        &channel_bucket(&channel.id),
        PER_CHANNEL,
    ) {
        let mut response = text_reply(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(ratelimit::retry_after_secs(wait)),
        );
        return response;
    }
    let mut ws = inner.ws();
    let mut message = ws.bot_message(&channel.id, String::new());
    message.thread_ts = payload
        .get("thread_ts")
        .and_then(Value::as_str)
        .filter(|ts| ws.message(&channel.id, ts).is_some())
        .map(str::to_string);
    content.apply(&mut message);
    // Legacy webhooks' identity overrides: the name and icon shown for this message.
    let text_of = |key: &str| payload.get(key).and_then(Value::as_str).map(str::to_string);
    message.username = text_of("username");
    message.icons = match (text_of("icon_url"), text_of("icon_emoji")) {
        (Some(url), _) => Some(json!({"image_48": url})),
        (None, Some(emoji)) => Some(json!({"emoji": emoji})),
        (None, None) => None,
    };
    ws.insert_message(message.clone());
    events::emit_new_message(&inner, &mut ws, &message);
    drop(ws);
    inner.touch();
    text_reply(StatusCode::OK, "ok")
}

fn json_reply(status: StatusCode, error: Option<&str>) -> Response {
    let body = match error {
        None => json!({"ok": true}),
        Some(e) => json!({"ok": false, "error": e}),
    };
    (status, axum::Json(body)).into_response()
}

/// `POST /commands/…` and `/actions/…`: a `response_url`.
pub async fn response_url(
    State(inner): State<Arc<Inner>>,
    Path((_, _, secret)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut ws = inner.ws();
    let Some(target) = ws.response_urls.get_mut(&secret) else {
        return json_reply(StatusCode::NOT_FOUND, Some("invalid_url"));
    };
    if target.created.elapsed() > RESPONSE_URL_LIFETIME {
        return json_reply(StatusCode::NOT_FOUND, Some("expired_url"));
    }
    if target.uses >= RESPONSE_URL_USES {
        return json_reply(StatusCode::NOT_FOUND, Some("used_url"));
    }
    let target = target.clone();
    let Some(payload) = json_or_payload_form(&headers, &body) else {
        return json_reply(StatusCode::BAD_REQUEST, Some("invalid_payload"));
    };
    let flag = |k: &str| {
        payload
            .get(k)
            .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"))
    };
    if flag("delete_original") {
        use_once(&mut ws, &secret);
        if let Some(ts) = &target.message_ts {
            delete_original(
                &inner,
                &mut ws,
                &target.channel,
                &target.user,
                ts,
                target.is_ephemeral,
            );
        }
        drop(ws);
        inner.touch();
        return json_reply(StatusCode::OK, None);
    }
    let content = match content_of(&payload) {
        Ok(c) => c,
        Err(code) => return json_reply(StatusCode::BAD_REQUEST, Some(code)),
    };
    use_once(&mut ws, &secret);
    let in_channel = payload.get("response_type").and_then(Value::as_str) == Some("in_channel");
    match (&target.message_ts, flag("replace_original")) {
        (Some(ts), true) if target.is_ephemeral => {
            if let Some(e) = ws
                .ephemerals
                .iter_mut()
                .find(|e| e.message.ts == *ts && e.user == target.user)
            {
                content.apply(&mut e.message);
            }
        }
        (Some(ts), true) => {
            let bot = ws.app.bot_user_id.clone();
            edit_message(&inner, &mut ws, &target.channel, ts, &bot, content);
        }
        _ => {
            let mut message = ws.bot_message(&target.channel, String::new());
            message.thread_ts = payload
                .get("thread_ts")
                .and_then(Value::as_str)
                .map(str::to_string);
            content.apply(&mut message);
            if in_channel {
                ws.insert_message(message.clone());
                events::emit_new_message(&inner, &mut ws, &message);
            } else {
                ws.ephemerals.push(Ephemeral {
                    channel: target.channel.clone(),
                    user: target.user.clone(),
                    message,
                });
            }
        }
    }
    drop(ws);
    inner.touch();
    json_reply(StatusCode::OK, None)
}

/// Counts a use of a `response_url`; refused posts don't count.
fn use_once(ws: &mut Workspace, secret: &str) {
    if let Some(t) = ws.response_urls.get_mut(secret) {
        t.uses += 1;
    }
}

fn delete_original(
    inner: &Arc<Inner>,
    ws: &mut Workspace,
    channel: &str,
    user: &str,
    ts: &str,
    ephemeral: bool,
) {
    if ephemeral {
        ws.ephemerals
            .retain(|e| !(e.message.ts == ts && e.user == user));
    } else if let Some(removed) = ws.remove_message(channel, ts) {
        events::emit_message_change(inner, ws, channel, "message_deleted", None, &removed);
    }
}
