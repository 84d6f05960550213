//! Shared helpers for the sandbox's integration tests: starting a sandbox, calling the Web API and
//! the control API, a Socket Mode client, and a fake app that receives HTTP deliveries.
//!
//! Everything goes over real sockets on 127.0.0.1, and every wait is bounded.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub use serde_json::{Value, json};
pub use switchyard_sandbox::{Manifest, Sandbox, SandboxConfig};

/// The longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Fails the test if `fut` does not finish within `WAIT`.
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// The bot scopes of the built-in manifest.
pub const ALL_SCOPES: &[&str] = &[
    "app_mentions:read",
    "channels:history",
    "channels:join",
    "channels:manage",
    "channels:read",
    "chat:write",
    "chat:write.public",
    "commands",
    "files:read",
    "files:write",
    "groups:history",
    "groups:read",
    "groups:write",
    "im:history",
    "im:read",
    "im:write",
    "incoming-webhook",
    "mpim:history",
    "mpim:read",
    "reactions:read",
    "reactions:write",
    "usergroups:read",
    "users:read",
    "users:read.email",
];

/// The bot events of the built-in manifest.
pub const ALL_EVENTS: &[&str] = &[
    "app_home_opened",
    "app_mention",
    "member_joined_channel",
    "member_left_channel",
    "message.channels",
    "message.groups",
    "message.im",
    "reaction_added",
    "reaction_removed",
];

/// A Socket Mode manifest with the given scopes and events.
pub fn socket_manifest(scopes: &[&str], events: &[&str]) -> String {
    json!({
        "display_information": {"name": "Switchyard"},
        "features": {
            "bot_user": {"display_name": "switchyard", "always_online": true},
            "app_home": {"home_tab_enabled": true},
            "slash_commands": [{"command": "/switchyard", "description": "Talk to Switchyard"}]
        },
        "oauth_config": {"scopes": {"bot": scopes}},
        "settings": {
            "event_subscriptions": {"bot_events": events},
            "interactivity": {"is_enabled": true},
            "socket_mode_enabled": true
        }
    })
    .to_string()
}

/// An HTTP-mode manifest whose request URLs point at `app_url` (`/events`, `/interactive`,
/// `/commands`).
pub fn http_manifest(app_url: &str, events: &[&str]) -> String {
    json!({
        "display_information": {"name": "Switchyard"},
        "features": {
            "bot_user": {"display_name": "switchyard", "always_online": true},
            "app_home": {"home_tab_enabled": true},
            "slash_commands": [{
                "command": "/switchyard",
                "url": format!("{app_url}/commands"),
                "description": "Talk to Switchyard"
            }]
        },
        "oauth_config": {"scopes": {"bot": ALL_SCOPES}},
        "settings": {
            "event_subscriptions": {
                "request_url": format!("{app_url}/events"),
                "bot_events": events
            },
            "interactivity": {
                "is_enabled": true,
                "request_url": format!("{app_url}/interactive")
            },
            "socket_mode_enabled": false
        }
    })
    .to_string()
}

/// Default test config: rate limits off, short retry schedule, default ack timeout.
pub fn config() -> SandboxConfig {
    let mut config = SandboxConfig::default();
    config.rate_limits.enabled = false;
    config.delivery.retry_delays = vec![
        Duration::ZERO,
        Duration::from_millis(200),
        Duration::from_millis(500),
    ];
    config
}

pub fn config_with_manifest(manifest: &str) -> SandboxConfig {
    let mut config = config();
    config.manifest = Some(Manifest::parse(manifest).expect("the test manifest parses"));
    config
}

/// A reply from the sandbox.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as JSON, or `Value::Null` when it is not JSON.
    pub json: Value,
}

impl Resp {
    async fn read(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("read the body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn ok(&self) -> bool {
        self.json["ok"] == json!(true)
    }

    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

/// A running sandbox and an HTTP client for it.
pub struct Harness {
    pub sandbox: Sandbox,
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
}

impl Harness {
    pub async fn start(config: SandboxConfig) -> Self {
        let sandbox = Sandbox::start(config).await.expect("the sandbox starts");
        let url = sandbox.url().to_string().trim_end_matches('/').to_string();
        Self {
            sandbox,
            http: reqwest::Client::new(),
            url,
        }
    }

    /// Default workspace and manifest, rate limits off, short retries.
    pub async fn new() -> Self {
        Self::start(config()).await
    }

    pub async fn with_manifest(manifest: &str) -> Self {
        Self::start(config_with_manifest(manifest)).await
    }

    pub fn bot_token(&self) -> String {
        self.sandbox.bot_token().to_string()
    }

    pub fn app_token(&self) -> String {
        self.sandbox.app_token().to_string()
    }

    pub fn bot_user_id(&self) -> String {
        self.sandbox.bot_user_id().to_string()
    }

    pub fn api_url(&self, method: &str) -> String {
        let base = self.sandbox.api_url().to_string();
        format!("{}/{method}", base.trim_end_matches('/'))
    }

    /// A Web API call with a JSON body and a bearer token (none: no token at all).
    pub async fn api_as(&self, token: Option<&str>, method: &str, args: Value) -> Resp {
        let mut req = self.http.post(self.api_url(method)).json(&args);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        Resp::read(
            bounded(method, req.send())
                .await
                .expect("the call goes through"),
        )
        .await
    }

    /// A Web API call with a form body (`token` may be one of the fields).
    pub async fn api_form(&self, token: Option<&str>, method: &str, form: &[(&str, &str)]) -> Resp {
        let mut req = self.http.post(self.api_url(method)).form(form);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        Resp::read(
            bounded(method, req.send())
                .await
                .expect("the call goes through"),
        )
        .await
    }

    /// A Web API GET with the arguments in the query string.
    pub async fn api_get(&self, token: Option<&str>, method: &str, query: &[(&str, &str)]) -> Resp {
        let mut req = self.http.get(self.api_url(method)).query(query);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        Resp::read(
            bounded(method, req.send())
                .await
                .expect("the call goes through"),
        )
        .await
    }

    /// A bot-token call; the whole reply.
    pub async fn bot(&self, method: &str, args: Value) -> Resp {
        let token = self.bot_token();
        self.api_as(Some(&token), method, args).await
    }

    /// A bot-token call that must succeed; its JSON.
    pub async fn api_ok(&self, method: &str, args: Value) -> Value {
        let resp = self.bot(method, args.clone()).await;
        assert_eq!(resp.status, 200, "{method} {args}: {}", resp.text);
        assert!(resp.ok(), "{method} {args} failed: {}", resp.text);
        resp.json
    }

    /// A bot-token call that must fail; its error code.
    pub async fn api_err(&self, method: &str, args: Value) -> String {
        let resp = self.bot(method, args.clone()).await;
        assert_eq!(
            resp.json["ok"],
            json!(false),
            "{method} {args} should fail: {}",
            resp.text
        );
        resp.error().to_string()
    }

    /// A user-token call that must succeed.
    pub async fn user_ok(&self, user: &str, method: &str, args: Value) -> Value {
        let token = self
            .sandbox
            .user_token(user)
            .unwrap_or_else(|| format!("xoxp-sandbox-{user}"));
        let resp = self.api_as(Some(&token), method, args.clone()).await;
        assert!(resp.ok(), "{method} {args} as {user} failed: {}", resp.text);
        resp.json
    }

    pub fn control_url(&self, path: &str) -> String {
        format!("{}/_sandbox/{}", self.url, path.trim_start_matches('/'))
    }

    pub async fn get(&self, path: &str) -> Resp {
        let req = self.http.get(self.control_url(path));
        Resp::read(bounded(path, req.send()).await.expect("GET goes through")).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        let req = self.http.post(self.control_url(path)).json(&body);
        Resp::read(bounded(path, req.send()).await.expect("POST goes through")).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Resp {
        let req = self.http.put(self.control_url(path)).json(&body);
        Resp::read(bounded(path, req.send()).await.expect("PUT goes through")).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        let req = self.http.delete(self.control_url(path));
        Resp::read(
            bounded(path, req.send())
                .await
                .expect("DELETE goes through"),
        )
        .await
    }

    /// A control POST that must succeed (2xx, `ok: true`).
    pub async fn act(&self, path: &str, body: Value) -> Value {
        let resp = self.post(path, body.clone()).await;
        assert!(
            (200..300).contains(&resp.status) && resp.ok(),
            "POST /_sandbox/{path} {body}: {} {}",
            resp.status,
            resp.text
        );
        resp.json
    }

    /// A control GET that must succeed (2xx).
    pub async fn read(&self, path: &str) -> Value {
        let resp = self.get(path).await;
        assert!(
            (200..300).contains(&resp.status),
            "GET /_sandbox/{path}: {} {}",
            resp.status,
            resp.text
        );
        resp.json
    }

    /// A list read with the long poll: waits (up to 5 s) until `key` holds `n` items.
    pub async fn wait_list(&self, path: &str, key: &str, n: usize) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let v = self
            .read(&format!("{path}{sep}wait_for={n}&timeout_ms=5000"))
            .await;
        v[key]
            .as_array()
            .unwrap_or_else(|| panic!("GET /_sandbox/{path} has no {key}: {v}"))
            .clone()
    }

    /// Reads a list until an item matches `pred` (long polls in between), or fails after `WAIT`.
    pub async fn wait_item(&self, path: &str, key: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut have = 0;
        loop {
            let v = if have == 0 {
                self.read(path).await
            } else {
                self.read(&format!("{path}{sep}wait_for={}&timeout_ms=500", have + 1))
                    .await
            };
            let items = v[key].as_array().cloned().unwrap_or_default();
            if let Some(found) = items.iter().find(|i| pred(i)) {
                return found.clone();
            }
            have = items.len();
            if tokio::time::Instant::now() > deadline {
                panic!("no item of GET /_sandbox/{path} matched; last reply: {v}");
            }
            if have == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Polls a control read until `pred` holds on the whole reply, or fails after `WAIT`.
    pub async fn poll(&self, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self.read(path).await;
            if pred(&v) {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("GET /_sandbox/{path} never matched; last reply: {v}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Top-level messages of a channel, from the control API.
    pub async fn messages(&self, channel: &str) -> Vec<Value> {
        let v = self.read(&format!("channels/{channel}/messages")).await;
        v["messages"].as_array().cloned().unwrap_or_default()
    }

    /// A user's id, by name.
    pub async fn user_id(&self, name: &str) -> String {
        let v = self.read("users").await;
        if let Some(id) = find_named(&v, name) {
            return id;
        }
        let v = self.user_ok("alice", "users.list", json!({})).await;
        find_named(&v, name).unwrap_or_else(|| panic!("no user {name}"))
    }

    /// A channel's id, by name.
    pub async fn channel_id(&self, name: &str) -> String {
        let v = self.read("channels").await;
        if let Some(id) = find_named(&v, name) {
            return id;
        }
        let v = self
            .user_ok(
                "alice",
                "conversations.list",
                json!({"types": "public_channel,private_channel"}),
            )
            .await;
        find_named(&v, name).unwrap_or_else(|| panic!("no channel {name}"))
    }

    /// Posts a message as the bot; returns its `ts`.
    pub async fn bot_post(&self, channel: &str, text: &str) -> String {
        let v = self
            .api_ok(
                "chat.postMessage",
                json!({"channel": channel, "text": text}),
            )
            .await;
        v["ts"].as_str().expect("ts").to_string()
    }

    /// Posts a message as a person through the control API; returns the reply.
    pub async fn say(&self, user: &str, channel: &str, text: &str) -> Value {
        self.act(
            "messages",
            json!({"user": user, "channel": channel, "text": text}),
        )
        .await
    }

    /// The app's deliveries, from the control API.
    pub async fn deliveries(&self) -> Vec<Value> {
        let v = self.read("deliveries").await;
        v["deliveries"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until a delivery matching `pred` exists and is no longer pending.
    pub async fn settled_delivery(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let all = self.deliveries().await;
            if let Some(d) = all
                .iter()
                .find(|d| pred(d) && d["outcome"].as_str().is_some_and(|o| o != "pending"))
            {
                return d.clone();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("no settled delivery matched; deliveries: {all:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How many attempts a delivery record shows (a list or a number).
pub fn attempt_count(delivery: &Value) -> usize {
    match &delivery["attempts"] {
        Value::Array(a) => a.len(),
        Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
        _ => 0,
    }
}

/// Finds, anywhere in `v`, an object whose `name` (or `handle`) is `name`, and returns its `id`.
pub fn find_named(v: &Value, name: &str) -> Option<String> {
    match v {
        Value::Object(o) => {
            let named = o.get("name").and_then(Value::as_str) == Some(name);
            if named && let Some(id) = o.get("id").and_then(Value::as_str) {
                return Some(id.to_string());
            }
            o.values().find_map(|v| find_named(v, name))
        }
        Value::Array(a) => a.iter().find_map(|v| find_named(v, name)),
        _ => None,
    }
}

/// A section block with `text` as mrkdwn.
pub fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

/// An actions block with one button.
pub fn button_block(block_id: &str, action_id: &str, value: &str) -> Value {
    json!({
        "type": "actions",
        "block_id": block_id,
        "elements": [{
            "type": "button",
            "action_id": action_id,
            "value": value,
            "text": {"type": "plain_text", "text": "Approve"}
        }]
    })
}

/// A modal with one text input (`block_id` `reason`, `action_id` `text`).
pub fn modal(title: &str, callback_id: &str) -> Value {
    json!({
        "type": "modal",
        "callback_id": callback_id,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Submit"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{
            "type": "input",
            "block_id": "reason",
            "label": {"type": "plain_text", "text": "Reason"},
            "element": {"type": "plain_text_input", "action_id": "text"}
        }]
    })
}

/// Slack's v0 signature, computed independently of the sandbox.
pub fn slack_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key size");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

// ---------------------------------------------------------------------------------------------
// Socket Mode client
// ---------------------------------------------------------------------------------------------

/// What the client answers to an envelope.
pub enum Ack {
    /// No ack at all.
    None,
    /// `{"envelope_id"}`.
    Empty,
    /// `{"envelope_id","payload"}`.
    Payload(Value),
}

/// Decides, per envelope, how the client acks it.
pub type Responder = Arc<dyn Fn(&Value) -> Ack + Send + Sync>;

pub fn ack_all() -> Responder {
    Arc::new(|_| Ack::Empty)
}

pub fn ack_none() -> Responder {
    Arc::new(|_| Ack::None)
}

#[derive(Debug)]
pub enum Frame {
    Json(Value),
    /// The server closed the connection (close frame, error or end of stream).
    Closed,
}

pub struct SocketClient {
    /// The first frame (the `hello`), when `connect` was used.
    pub hello: Value,
    frames: mpsc::UnboundedReceiver<Frame>,
    /// Frames read but not yet taken.
    pending: VecDeque<Frame>,
    out: mpsc::UnboundedSender<WsMessage>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SocketClient {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// `apps.connections.open` with the app-level token; the WebSocket URL.
pub async fn open_socket_url(h: &Harness) -> String {
    let token = h.app_token();
    let resp = h
        .api_as(Some(&token), "apps.connections.open", json!({}))
        .await;
    assert!(resp.ok(), "apps.connections.open: {}", resp.text);
    resp.json["url"].as_str().expect("url").to_string()
}

impl SocketClient {
    /// Opens a connection (with a fresh ticket) and reads its `hello`.
    pub async fn connect(h: &Harness, responder: Responder) -> Self {
        let url = open_socket_url(h).await;
        let mut client = Self::connect_url(&url, responder)
            .await
            .expect("the WebSocket connects");
        let hello = client.next_json(WAIT).await.expect("a hello");
        assert_eq!(hello["type"], "hello", "first frame: {hello}");
        client.hello = hello;
        client
    }

    /// Connects to `url` without reading anything.
    pub async fn connect_url(url: &str, responder: Responder) -> Result<Self, String> {
        let (ws, _) = bounded(
            "the WebSocket handshake",
            tokio_tungstenite::connect_async(url),
        )
        .await
        .map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<WsMessage>();
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let acks = out.clone();
        let reader = tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(WsMessage::Text(text)) => {
                        let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                        if let Some(id) = v["envelope_id"].as_str() {
                            let ack = match responder(&v) {
                                Ack::None => None,
                                Ack::Empty => Some(json!({"envelope_id": id})),
                                Ack::Payload(p) => Some(json!({"envelope_id": id, "payload": p})),
                            };
                            if let Some(ack) = ack {
                                let _ = acks.send(WsMessage::Text(ack.to_string().into()));
                            }
                        }
                        let _ = frames_tx.send(Frame::Json(v));
                    }
                    Ok(WsMessage::Close(_)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = frames_tx.send(Frame::Closed);
        });
        Ok(Self {
            hello: Value::Null,
            frames,
            pending: VecDeque::new(),
            out,
            tasks: vec![writer, reader],
        })
    }

    /// The next frame (buffered ones first), or `None` after `timeout`.
    pub async fn next_frame(&mut self, timeout: Duration) -> Option<Frame> {
        if let Some(f) = self.pending.pop_front() {
            return Some(f);
        }
        self.recv(timeout).await
    }

    async fn recv(&mut self, timeout: Duration) -> Option<Frame> {
        tokio::time::timeout(timeout, self.frames.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next JSON frame (`None` on close or timeout).
    pub async fn next_json(&mut self, timeout: Duration) -> Option<Value> {
        match self.next_frame(timeout).await? {
            Frame::Json(v) => Some(v),
            Frame::Closed => None,
        }
    }

    /// The first frame matching `pred`, buffered or new; frames that do not match are kept for
    /// later calls. `None` on close or after `timeout`.
    pub async fn find(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(pos) = self
            .pending
            .iter()
            .position(|f| matches!(f, Frame::Json(v) if pred(v)))
        {
            return match self.pending.remove(pos) {
                Some(Frame::Json(v)) => Some(v),
                _ => None,
            };
        }
        if self.pending.iter().any(|f| matches!(f, Frame::Closed)) {
            return None;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            match self.recv(left).await? {
                Frame::Json(v) if pred(&v) => return Some(v),
                Frame::Json(v) => self.pending.push_back(Frame::Json(v)),
                Frame::Closed => {
                    self.pending.push_back(Frame::Closed);
                    return None;
                }
            }
        }
    }

    /// Like `find`, but fails the test when nothing matches within `WAIT`.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.find(WAIT, pred)
            .await
            .unwrap_or_else(|| panic!("no {what} envelope arrived"))
    }

    /// Waits until the server closes the connection; true if it did within `timeout`. Frames
    /// that arrive before the close are kept.
    pub async fn closed(&mut self, timeout: Duration) -> bool {
        if self.pending.iter().any(|f| matches!(f, Frame::Closed)) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(Frame::Closed) => {
                    self.pending.push_back(Frame::Closed);
                    return true;
                }
                Some(f) => self.pending.push_back(f),
                None => return false,
            }
        }
    }

    /// Acks an envelope by hand.
    pub fn ack(&self, envelope: &Value, payload: Option<Value>) {
        let mut ack = json!({"envelope_id": envelope["envelope_id"]});
        if let Some(p) = payload {
            ack["payload"] = p;
        }
        let _ = self.out.send(WsMessage::Text(ack.to_string().into()));
    }
}

/// An `events_api` envelope carrying an event of type `ty`.
pub fn is_event(ty: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == "events_api" && v["payload"]["event"]["type"] == ty
}

/// An envelope of the given type (`slash_commands`, `interactive`).
pub fn is_envelope(ty: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == ty && v["envelope_id"].is_string()
}

// ---------------------------------------------------------------------------------------------
// A fake app receiving HTTP deliveries
// ---------------------------------------------------------------------------------------------

/// One request the fake app received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as a form.
    pub fn form(&self) -> HashMap<String, String> {
        serde_urlencoded::from_bytes(&self.body).unwrap_or_default()
    }

    /// An interaction's `payload` form field, parsed.
    pub fn payload(&self) -> Value {
        self.form()
            .get("payload")
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or(Value::Null)
    }

    pub fn is_handshake(&self) -> bool {
        self.json()["type"] == "url_verification"
    }

    /// The event type of an `event_callback`.
    pub fn event_type(&self) -> Option<String> {
        self.json()["event"]["type"].as_str().map(str::to_string)
    }

    pub fn event_id(&self) -> Option<String> {
        self.json()["event_id"].as_str().map(str::to_string)
    }

    /// Whether the v0 signature matches the body and timestamp under `secret`.
    pub fn signature_valid(&self, secret: &str) -> bool {
        let (Some(ts), Some(sig)) = (
            self.header("x-slack-request-timestamp"),
            self.header("x-slack-signature"),
        ) else {
            return false;
        };
        slack_signature(secret, &ts, &self.body) == sig
    }
}

/// How the fake app answers one request.
#[derive(Debug, Clone)]
pub struct AppReply {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl AppReply {
    /// 200 with an empty body.
    pub fn ok() -> Self {
        Self {
            status: 200,
            body: String::new(),
            content_type: "text/plain",
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn json(v: Value) -> Self {
        Self {
            body: v.to_string(),
            content_type: "application/json",
            ..Self::ok()
        }
    }

    pub fn status(status: u16) -> Self {
        Self {
            status,
            body: "error".into(),
            ..Self::ok()
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

pub type AppResponder = Arc<dyn Fn(&Recorded) -> AppReply + Send + Sync>;

#[derive(Default)]
struct AppState {
    requests: Mutex<Vec<Recorded>>,
    /// Replies for the next non-handshake requests, in order.
    script: Mutex<VecDeque<AppReply>>,
    /// Answers when the script is empty (default: 200, empty).
    responder: Mutex<Option<AppResponder>>,
    /// How many more `url_verification` handshakes to fail (with a 500).
    failing_handshakes: Mutex<usize>,
}

/// An HTTP server standing in for the app: answers the `url_verification` handshake with the
/// challenge, everything else per its script, and records every request.
pub struct FakeApp {
    pub url: String,
    state: Arc<AppState>,
    task: JoinHandle<()>,
}

impl Drop for FakeApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_app_handler(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rec = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers,
        body,
    };
    state.requests.lock().unwrap().push(rec.clone());
    let fail_handshake = rec.is_handshake() && {
        let mut left = state.failing_handshakes.lock().unwrap();
        let fail = *left > 0;
        *left = left.saturating_sub(1);
        fail
    };
    let reply = if fail_handshake {
        AppReply::status(500)
    } else if rec.is_handshake() {
        AppReply::json(json!({"challenge": rec.json()["challenge"]}))
    } else {
        let scripted = state.script.lock().unwrap().pop_front();
        match scripted {
            Some(r) => r,
            None => {
                let responder = state.responder.lock().unwrap().clone();
                responder.map_or_else(AppReply::ok, |f| f(&rec))
            }
        }
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    // No keep-alive: once the app is stopped, nothing it served lingers.
    let mut builder = Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        .header("connection", "close");
    for (k, v) in &reply.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder.body(Body::from(reply.body)).expect("a response")
}

impl FakeApp {
    pub async fn start() -> Self {
        let state = Arc::new(AppState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake app");
        let addr = listener.local_addr().expect("its address");
        let router = axum::Router::new()
            .fallback(fake_app_handler)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url: format!("http://{addr}"),
            state,
            task,
        }
    }

    /// Stops listening: later connections to its URL are refused.
    pub async fn stop(&self) {
        self.task.abort();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Fails the next `n` `url_verification` handshakes.
    pub fn fail_handshakes(&self, n: usize) {
        *self.state.failing_handshakes.lock().unwrap() = n;
    }

    /// Queues replies for the next non-handshake requests.
    pub fn script(&self, replies: impl IntoIterator<Item = AppReply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Sets how requests are answered once the script is used up.
    pub fn respond_with(&self, f: impl Fn(&Recorded) -> AppReply + Send + Sync + 'static) {
        *self.state.responder.lock().unwrap() = Some(Arc::new(f));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests match `pred`; returns all that match.
    pub async fn wait_for(&self, n: usize, pred: impl Fn(&Recorded) -> bool) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let matching: Vec<Recorded> = self.requests().into_iter().filter(|r| pred(r)).collect();
            if matching.len() >= n {
                return matching;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "the fake app got {} matching requests, wanted {n}; all: {:#?}",
                    matching.len(),
                    self.requests()
                        .iter()
                        .map(|r| (r.path.clone(), r.text()))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An `event_callback` for event type `ty`.
pub fn is_callback(ty: &'static str) -> impl Fn(&Recorded) -> bool {
    move |r| r.json()["type"] == "event_callback" && r.event_type().as_deref() == Some(ty)
}
