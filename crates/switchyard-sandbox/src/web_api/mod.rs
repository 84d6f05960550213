//! The Web API, `/api/<method>`: arguments, tokens, scopes, rate limits and faults, then the
//! method itself.

mod args;
pub(crate) mod chat;
mod conversations;
mod files;
pub(crate) mod reactions;
mod users;
mod views;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

pub use args::Args;
pub use files::upload;

use crate::Inner;
use crate::faults::{FaultKind, Target};
use crate::ids::now_ms;
use crate::listener::ConnHandle;
use crate::ratelimit::{self, MethodLimit};
use crate::workspace::ApiCall;

/// A Slack error reply: `{"ok":false,"error":code, …extra}`.
#[derive(Debug)]
pub struct ApiError {
    pub code: String,
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(code: &str) -> Self {
        Self {
            code: code.to_string(),
            extra: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }

    /// `invalid_arguments` with Slack's `response_metadata.messages`.
    pub fn invalid_arguments(message: impl Into<String>) -> Self {
        Self::new("invalid_arguments").with(
            "response_metadata",
            json!({"messages": [format!("[ERROR] {}", message.into())]}),
        )
    }

    fn missing_scope(needed: &[&str], provided: &Caller) -> Self {
        Self::new("missing_scope")
            .with("needed", json!(needed.join(",")))
            .with("provided", json!(provided.scope_list()))
    }
}

pub type ApiResult = Result<Map<String, Value>, ApiError>;

/// Who is calling: the app's bot, a person (user token) or the app itself (app-level token).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub kind: TokenKind,
    /// The bot's scopes; `None` for user tokens, which the sandbox lets do anything.
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Bot,
    User,
    App,
}

impl Caller {
    pub fn is_bot(&self) -> bool {
        self.kind == TokenKind::Bot
    }

    /// Passes when the caller holds any of `scopes`.
    pub fn require(&self, scopes: &[&str]) -> Result<(), ApiError> {
        match &self.scopes {
            Some(held)
                if !scopes.is_empty() && !scopes.iter().any(|s| held.iter().any(|h| h == s)) =>
            {
                Err(ApiError::missing_scope(scopes, self))
            }
            _ => Ok(()),
        }
    }

    fn scope_list(&self) -> String {
        self.scopes.as_deref().unwrap_or_default().join(",")
    }
}

type Handler = fn(&Arc<Inner>, &Caller, &Args) -> ApiResult;

/// A Web API method: its rate-limit tier, the scopes it needs (any of; some methods check more
/// once they know the conversation), and its handler.
struct Method {
    name: &'static str,
    tier: u8,
    scopes: &'static [&'static str],
    handler: Handler,
}

const METHODS: &[Method] = &[
    Method {
        name: "api.test",
        tier: 4,
        scopes: &[],
        handler: api_test,
    },
    Method {
        name: "auth.test",
        tier: 4,
        scopes: &[],
        handler: auth_test,
    },
    Method {
        name: "chat.postMessage",
        tier: 4,
        scopes: &["chat:write"],
        handler: chat::post_message,
    },
    Method {
        name: "chat.update",
        tier: 3,
        scopes: &["chat:write"],
        handler: chat::update,
    },
    Method {
        name: "chat.delete",
        tier: 3,
        scopes: &["chat:write"],
        handler: chat::delete,
    },
    Method {
        name: "chat.postEphemeral",
        tier: 4,
        scopes: &["chat:write"],
        handler: chat::post_ephemeral,
    },
    Method {
        name: "chat.getPermalink",
        tier: 4,
        scopes: &[],
        handler: chat::get_permalink,
    },
    Method {
        name: "conversations.info",
        tier: 3,
        scopes: &[],
        handler: conversations::info,
    },
    Method {
        name: "conversations.list",
        tier: 2,
        scopes: &[],
        handler: conversations::list,
    },
    Method {
        name: "conversations.history",
        tier: 3,
        scopes: &[],
        handler: conversations::history,
    },
    Method {
        name: "conversations.replies",
        tier: 3,
        scopes: &[],
        handler: conversations::replies,
    },
    Method {
        name: "conversations.members",
        tier: 4,
        scopes: &[],
        handler: conversations::members,
    },
    Method {
        name: "conversations.open",
        tier: 3,
        scopes: &["im:write", "mpim:write"],
        handler: conversations::open,
    },
    Method {
        name: "conversations.create",
        tier: 2,
        scopes: &[],
        handler: conversations::create,
    },
    Method {
        name: "conversations.invite",
        tier: 3,
        scopes: &[],
        handler: conversations::invite,
    },
    Method {
        name: "conversations.join",
        tier: 3,
        scopes: &["channels:join"],
        handler: conversations::join,
    },
    Method {
        name: "conversations.leave",
        tier: 3,
        scopes: &[],
        handler: conversations::leave,
    },
    Method {
        name: "conversations.archive",
        tier: 2,
        scopes: &[],
        handler: conversations::archive,
    },
    Method {
        name: "conversations.setTopic",
        tier: 2,
        scopes: &[],
        handler: conversations::set_topic,
    },
    Method {
        name: "users.info",
        tier: 4,
        scopes: &["users:read"],
        handler: users::info,
    },
    Method {
        name: "users.list",
        tier: 2,
        scopes: &["users:read"],
        handler: users::list,
    },
    Method {
        name: "users.lookupByEmail",
        tier: 3,
        scopes: &["users:read.email"],
        handler: users::lookup_by_email,
    },
    Method {
        name: "usergroups.list",
        tier: 2,
        scopes: &["usergroups:read"],
        handler: users::usergroups_list,
    },
    Method {
        name: "usergroups.users.list",
        tier: 2,
        scopes: &["usergroups:read"],
        handler: users::usergroups_users_list,
    },
    Method {
        name: "reactions.add",
        tier: 3,
        scopes: &["reactions:write"],
        handler: reactions::add,
    },
    Method {
        name: "reactions.remove",
        tier: 2,
        scopes: &["reactions:write"],
        handler: reactions::remove,
    },
    Method {
        name: "reactions.get",
        tier: 3,
        scopes: &["reactions:read"],
        handler: reactions::get,
    },
    Method {
        name: "views.open",
        tier: 4,
        scopes: &[],
        handler: views::open,
    },
    Method {
        name: "views.push",
        tier: 4,
        scopes: &[],
        handler: views::push,
    },
    Method {
        name: "views.update",
        tier: 4,
        scopes: &[],
        handler: views::update,
    },
    Method {
        name: "views.publish",
        tier: 4,
        scopes: &[],
        handler: views::publish,
    },
    Method {
        name: "apps.connections.open",
        tier: 1,
        scopes: &[],
        handler: apps_connections_open,
    },
    Method {
        name: "files.getUploadURLExternal",
        tier: 4,
        scopes: &["files:write"],
        handler: files::get_upload_url,
    },
    Method {
        name: "files.completeUploadExternal",
        tier: 4,
        scopes: &["files:write"],
        handler: files::complete_upload,
    },
    Method {
        name: "files.info",
        tier: 4,
        scopes: &["files:read"],
        handler: files::info,
    },
];

fn find_method(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

/// The names of every implemented method.
pub fn method_names() -> impl Iterator<Item = &'static str> {
    METHODS.iter().map(|m| m.name)
}

/// Tiers that are not Slack's default for `apps.connections.open` would starve reconnecting
/// clients; Slack documents it as Tier 1 but allows a burst of reconnects.
fn limit_for(method: &Method) -> MethodLimit {
    match method.name {
        "apps.connections.open" => MethodLimit {
            per_minute: 60,
            burst: 12,
        },
        _ => ratelimit::tier_limit(method.tier),
    }
}

pub async fn handle(
    State(inner): State<Arc<Inner>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    Path(method_name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let args = match Args::parse(query.as_deref(), content_type, &body) {
        Ok(args) => args,
        Err(err) => {
            return reply(
                (&inner, started),
                &method_name,
                Args::default(),
                StatusCode::OK,
                Err(err),
                None,
            );
        }
    };

    // Faults come first: Slack's edge fails before the method runs.
    let fault = inner.faults().take(Target::WebApi, &method_name);
    if let Some(rule) = fault {
        match rule.fault {
            FaultKind::RateLimited => {
                let secs = rule.retry_after.unwrap_or(1);
                // Logged apart from the limiter's own refusals, which say a client went too fast.
                return rate_limited(
                    (&inner, started),
                    &method_name,
                    args,
                    secs,
                    "fault_ratelimited",
                );
            }
            FaultKind::ServerError => {
                let status = StatusCode::from_u16(rule.status.unwrap_or(500))
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                const BODY: &str = "<html><body><h1>Server Error</h1>The server encountered a temporary error.</body></html>";
                record(
                    (&inner, started),
                    &method_name,
                    args,
                    Outcome {
                        error: Some("fault_server_error"),
                        status: status.as_u16(),
                        response: json!(BODY),
                    },
                );
                return (status, [(header::CONTENT_TYPE, "text/html")], BODY).into_response();
            }
            FaultKind::Reset => {
                record(
                    (&inner, started),
                    &method_name,
                    args,
                    Outcome {
                        error: Some("fault_reset"),
                        status: 0,
                        response: Value::Null,
                    },
                );
                conn.reset();
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            FaultKind::Slow => {
                tokio::time::sleep(Duration::from_millis(rule.delay_ms.unwrap_or(5_000))).await;
            }
            FaultKind::Duplicate | FaultKind::Drop => {}
        }
    }

    let Some(method) = find_method(&method_name) else {
        return reply(
            (&inner, started),
            &method_name,
            args,
            StatusCode::OK,
            Err(ApiError::new("unknown_method")),
            None,
        );
    };
    // api.test is the one method Slack answers without a token.
    let caller = match authenticate(&inner, &headers, &args, method) {
        Err(_) if method.name == "api.test" => Caller {
            user_id: String::new(),
            kind: TokenKind::User,
            scopes: None,
        },
        Ok(caller) => caller,
        Err(err) => {
            return reply(
                (&inner, started),
                &method_name,
                args,
                StatusCode::OK,
                Err(err),
                None,
            );
        }
    };
    if let Err(err) = caller.require(method.scopes) {
        return reply(
            (&inner, started),
            &method_name,
            args,
            StatusCode::OK,
            Err(err),
            Some(&caller),
        );
    }

    // chat.postMessage is limited per channel; everything else per method.
    let key = if method.name == "chat.postMessage" {
        let arg = args.str("channel").unwrap_or("");
        let id = inner
            .ws()
            .channel(arg)
            .map_or_else(|| arg.to_string(), |c| c.id.clone());
        crate::hooks::channel_bucket(&id)
    } else {
        method.name.to_string()
    };
    let limit = if method.name == "chat.postMessage" {
        ratelimit::PER_CHANNEL
    } else {
        limit_for(method)
    };
    if let Err(wait) = inner.limiter().check(method.name, &key, limit) {
        return rate_limited(
            (&inner, started),
            &method_name,
            args,
            ratelimit::retry_after_secs(wait),
            "ratelimited",
        );
    }

    let result = (method.handler)(&inner, &caller, &args);
    inner.touch();
    reply(
        (&inner, started),
        &method_name,
        args,
        StatusCode::OK,
        result,
        Some(&caller),
    )
}

fn authenticate(
    inner: &Inner,
    headers: &HeaderMap,
    args: &Args,
    method: &Method,
) -> Result<Caller, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_string)
        .or_else(|| args.string("token"));
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::new("not_authed"));
    };
    let ws = inner.ws();
    let caller = if token == ws.app.bot_token {
        Caller {
            user_id: ws.app.bot_user_id.clone(),
            kind: TokenKind::Bot,
            scopes: Some(ws.app.manifest.bot_scopes.iter().cloned().collect()),
        }
    } else if token == ws.app.app_token {
        Caller {
            user_id: String::new(),
            kind: TokenKind::App,
            scopes: Some(vec!["connections:write".to_string()]),
        }
    } else if let Some(user_id) = ws.user_tokens.get(&token) {
        Caller {
            user_id: user_id.clone(),
            kind: TokenKind::User,
            scopes: None,
        }
    } else {
        return Err(ApiError::new("invalid_auth"));
    };
    let app_only = method.name == "apps.connections.open";
    if app_only != (caller.kind == TokenKind::App) {
        return Err(ApiError::new("not_allowed_token_type"));
    }
    Ok(caller)
}

/// The call being answered: the sandbox, and when the call arrived.
type Call<'a> = (&'a Inner, Instant);

/// How a call ended, for its record.
struct Outcome<'a> {
    error: Option<&'a str>,
    status: u16,
    response: Value,
}

/// A 429 as Slack sends it; `logged` is the error the call log records (`ratelimited`, or
/// `fault_ratelimited` for an injected one).
fn rate_limited(call: Call, method: &str, args: Args, secs: u64, logged: &str) -> Response {
    let body = json!({"ok": false, "error": "ratelimited"});
    // Written out before the call log takes the body.
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(&body)).into_response();
    record(
        call,
        method,
        args,
        Outcome {
            error: Some(logged),
            status: 429,
            response: body,
        },
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// Logs the call; the log keeps its arguments (redacted) and its response, taken, not copied.
fn record((inner, started): Call, method: &str, args: Args, outcome: Outcome) {
    let at_ms = now_ms().saturating_sub(started.elapsed().as_millis() as u64);
    let args = args.into_redacted();
    inner.ws().record_call(ApiCall {
        method: method.to_string(),
        args,
        ok: outcome.error.is_none(),
        error: outcome.error.map(str::to_string),
        status: outcome.status,
        at: at_ms / 1_000,
        at_ms,
        duration_ms: crate::delivery::elapsed_ms(started),
        response: outcome.response,
    });
    inner.touch();
}

fn reply(
    call: Call,
    method: &str,
    args: Args,
    status: StatusCode,
    result: ApiResult,
    caller: Option<&Caller>,
) -> Response {
    let (body, error) = match result {
        Ok(mut fields) => {
            let mut body = Map::new();
            body.insert("ok".into(), json!(true));
            body.append(&mut fields);
            (body, None)
        }
        Err(err) => {
            let mut body = Map::new();
            body.insert("ok".into(), json!(false));
            body.insert("error".into(), json!(err.code));
            body.extend(err.extra);
            (body, Some(err.code))
        }
    };
    let body = Value::Object(body);
    // Written out before the call log takes the body.
    let mut response = (status, axum::Json(&body)).into_response();
    record(
        call,
        method,
        args,
        Outcome {
            error: error.as_deref(),
            status: status.as_u16(),
            response: body,
        },
    );
    if let Some(scopes) = caller.and_then(|c| c.scopes.as_ref())
        && let Ok(v) = HeaderValue::from_str(&scopes.join(","))
    {
        response.headers_mut().insert("x-oauth-scopes", v);
    }
    response
}

fn api_test(_: &Arc<Inner>, _: &Caller, args: &Args) -> ApiResult {
    let mut out = Map::new();
    out.insert("args".into(), args.redacted());
    if let Some(error) = args.string("error") {
        return Err(ApiError::new(&error));
    }
    Ok(out)
}

fn auth_test(inner: &Arc<Inner>, caller: &Caller, _: &Args) -> ApiResult {
    let ws = inner.ws();
    let user = ws
        .user(&caller.user_id)
        .map(|u| u.name.clone())
        .unwrap_or_default();
    let mut out = obj(json!({
        "url": format!("{}/", inner.base_url),
        "team": ws.team.name,
        "user": user,
        "team_id": ws.team.id,
        "user_id": caller.user_id,
        "is_enterprise_install": false,
    }));
    if caller.is_bot() {
        out.insert("bot_id".into(), json!(ws.app.bot_id));
        out.insert("app_id".into(), json!(ws.app.id));
    }
    Ok(out)
}

fn apps_connections_open(inner: &Arc<Inner>, _: &Caller, _: &Args) -> ApiResult {
    let ticket = inner.delivery.hub.new_ticket();
    let app_id = inner.ws().app.id.clone();
    let ws_url = inner.base_url.replacen("http://", "ws://", 1);
    Ok(obj(
        json!({"url": format!("{ws_url}/link/?ticket={ticket}&app_id={app_id}")}),
    ))
}

/// Slack's cursor pagination over a list: `limit` (default `default_limit`) and an opaque cursor.
pub fn paginate<T: Clone>(
    items: &[T],
    args: &Args,
    default_limit: usize,
) -> Result<(Vec<T>, String), ApiError> {
    let start = match args.str("cursor") {
        None => 0,
        Some(c) => c
            .strip_prefix("next:")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| ApiError::new("invalid_cursor"))?,
    };
    let limit = args
        .usize("limit")
        .filter(|l| *l > 0)
        .unwrap_or(default_limit)
        .min(1000);
    let end = (start + limit).min(items.len());
    let page = items
        .get(start.min(items.len())..end)
        .unwrap_or_default()
        .to_vec();
    let next = if end < items.len() {
        format!("next:{end}")
    } else {
        String::new()
    };
    Ok((page, next))
}

/// A JSON object literal as a map.
pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
