//! Socket Mode: the WebSocket endpoint `apps.connections.open` points to, and envelopes over it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, oneshot};

use super::Tried;
use crate::faults::FaultKind;
use crate::ids::{envelope_id, secret};
use crate::{Inner, lock};

/// Slack allows ten concurrent connections per app.
pub const MAX_CONNECTIONS: usize = 10;

enum Outgoing {
    Text(String),
    /// A close frame, then the end.
    Close,
    /// Gone without a word, as a dropped network would.
    Abort,
}

struct Connection {
    id: u64,
    tx: mpsc::UnboundedSender<Outgoing>,
}

#[derive(Default)]
pub struct SocketHub {
    connections: Mutex<Vec<Connection>>,
    round_robin: AtomicUsize,
    next_id: AtomicU64,
    tickets: Mutex<HashSet<String>>,
    acks: Mutex<HashMap<String, oneshot::Sender<Option<Value>>>>,
    connected: Notify,
}

impl SocketHub {
    pub fn new_ticket(&self) -> String {
        let ticket = secret(32);
        lock(&self.tickets).insert(ticket.clone());
        ticket
    }

    pub fn connection_ids(&self) -> Vec<u64> {
        lock(&self.connections).iter().map(|c| c.id).collect()
    }

    /// Sends `disconnect` with `reason` to every connection; closes them after `grace`.
    pub fn disconnect_all(&self, reason: &str, grace: Duration) {
        let message =
            json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "sandbox"}})
                .to_string();
        for c in lock(&self.connections).iter() {
            let _ = c.tx.send(Outgoing::Text(message.clone()));
            let tx = c.tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                let _ = tx.send(Outgoing::Close);
            });
        }
    }

    /// Drops every connection without a close frame.
    pub fn drop_all(&self) {
        for c in lock(&self.connections).drain(..) {
            let _ = c.tx.send(Outgoing::Abort);
        }
    }

    fn pick(&self) -> Option<(u64, mpsc::UnboundedSender<Outgoing>)> {
        let connections = lock(&self.connections);
        if connections.is_empty() {
            return None;
        }
        let i = self.round_robin.fetch_add(1, Ordering::Relaxed) % connections.len();
        Some((connections[i].id, connections[i].tx.clone()))
    }

    fn unregister(&self, id: u64) {
        lock(&self.connections).retain(|c| c.id != id);
    }

    fn ack(&self, envelope_id: &str, payload: Option<Value>) {
        if let Some(tx) = lock(&self.acks).remove(envelope_id) {
            let _ = tx.send(payload);
        }
    }
}

fn envelope(
    kind: &str,
    payload: &Value,
    retry_attempt: u32,
    retry_reason: Option<&str>,
    accepts_response: bool,
) -> (String, String) {
    let id = envelope_id();
    let text = json!({
        "envelope_id": id,
        "type": kind,
        "payload": payload,
        "accepts_response_payload": accepts_response,
        "retry_attempt": retry_attempt,
        "retry_reason": retry_reason.unwrap_or(""),
    })
    .to_string();
    (id, text)
}

/// Sends one envelope to one open connection and waits for its ack.
pub async fn send_envelope(
    inner: &Arc<Inner>,
    kind: &str,
    payload: Value,
    retry_attempt: u32,
    retry_reason: Option<&str>,
    accepts_response: bool,
    fault: Option<FaultKind>,
) -> Tried {
    let hub = &inner.delivery.hub;
    let ack_timeout = inner.delivery.settings().ack_timeout;
    let deadline = tokio::time::Instant::now() + ack_timeout;
    // With no connection open, wait (within the ack window) for the app to reconnect.
    let (_, tx) = loop {
        let notified = hub.connected.notified();
        if let Some(found) = hub.pick() {
            break found;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Tried::Failed {
                reason: "no_connection",
                status: None,
                no_retry: false,
            };
        }
    };
    let (id, text) = envelope(
        kind,
        &payload,
        retry_attempt,
        retry_reason,
        accepts_response,
    );
    let (ack_tx, ack_rx) = oneshot::channel();
    lock(&hub.acks).insert(id.clone(), ack_tx);
    let _ = tx.send(Outgoing::Text(text));
    match fault {
        Some(FaultKind::Drop) => {
            let _ = tx.send(Outgoing::Abort);
        }
        Some(FaultKind::Duplicate) => {
            let (dup_id, dup) = envelope(
                kind,
                &payload,
                retry_attempt + 1,
                Some("timeout"),
                accepts_response,
            );
            let (dup_tx, _) = oneshot::channel();
            lock(&hub.acks).insert(dup_id, dup_tx);
            let _ = tx.send(Outgoing::Text(dup));
        }
        _ => {}
    }
    match tokio::time::timeout_at(deadline, ack_rx).await {
        Ok(Ok(body)) => Tried::Acked { status: None, body },
        _ => {
            lock(&hub.acks).remove(&id);
            Tried::Failed {
                reason: "timeout",
                status: None,
                no_retry: false,
            }
        }
    }
}

#[derive(Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    ticket: String,
}

/// `GET /link/?ticket=…`: the WebSocket `apps.connections.open` hands out.
pub async fn link(
    State(inner): State<Arc<Inner>>,
    Query(q): Query<LinkQuery>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let valid = lock(&inner.delivery.hub.tickets).remove(&q.ticket);
    if !valid {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"ok": false, "error": "invalid_ticket"})),
        )
            .into_response();
    }
    upgrade.on_upgrade(move |socket| run_connection(inner, socket))
}

async fn run_connection(inner: Arc<Inner>, socket: WebSocket) {
    let hub = &inner.delivery.hub;
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let count = {
        let mut connections = lock(&hub.connections);
        if connections.len() >= MAX_CONNECTIONS {
            None
        } else {
            connections.push(Connection { id, tx });
            Some(connections.len())
        }
    };
    let Some(count) = count else {
        let refusal = json!({"type": "disconnect", "reason": "too_many_websockets", "debug_info": {"host": "sandbox"}});
        let _ = sink.send(Message::Text(refusal.to_string().into())).await;
        let _ = sink.send(Message::Close(None)).await;
        return;
    };
    let app_id = inner.ws().app.id.clone();
    let hello = json!({
        "type": "hello",
        "num_connections": count,
        "debug_info": {"host": "sandbox", "build_number": 1, "approximate_connection_time": 18060},
        "connection_info": {"app_id": app_id},
    });
    if sink
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        hub.unregister(id);
        return;
    }
    hub.connected.notify_waiters();
    inner.touch();
    loop {
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&text)
                        && let Some(envelope_id) = v.get("envelope_id").and_then(Value::as_str)
                    {
                        hub.ack(envelope_id, v.get("payload").cloned());
                    }
                }
                Some(Ok(Message::Ping(data))) => {
                    let _ = sink.send(Message::Pong(data)).await;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            outgoing = rx.recv() => match outgoing {
                Some(Outgoing::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Close) => {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await;
                    break;
                }
                Some(Outgoing::Abort) | None => break,
            },
        }
    }
    hub.unregister(id);
    inner.touch();
}
