//! Slack over Socket Mode: our own client on tokio-tungstenite.
//!
//! Keeps `slack.socket_connections` WebSockets open (2 by default). Each envelope is committed to
//! the inbox by [`Engine::receive`] before its ack goes back, by `envelope_id`; an envelope whose
//! commit failed is not acked, so Slack sends it again. When Slack announces a close
//! (`disconnect`), the replacement connection is opened first and the old one drained until
//! Slack closes it. Failed connections retry with exponential backoff and jitter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pipeline::{Engine, Kind};

const PING_EVERY: Duration = Duration::from_secs(10);
/// No frame for this long: the connection is dead even if TCP has not noticed.
const SILENCE_LIMIT: Duration = Duration::from_secs(35);
/// How long an announced-closing connection is drained before we drop it ourselves.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// At stop, how long envelopes already being committed may take to get their acks out before
/// the connection closes (Slack gives up on an ack after 3 s anyway).
const ACK_GRACE: Duration = Duration::from_secs(3);

/// Socket Mode connections open (past `hello`), for `/readyz` and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct OpenConnections(Arc<AtomicU64>);

impl OpenConnections {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counts one open connection while it lives.
struct Counted(OpenConnections);

impl Counted {
    fn new(open: &OpenConnections) -> Self {
        open.0.fetch_add(1, Ordering::Relaxed);
        Self(open.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps `count` connections open until `stop` fires; their tasks run on `tasks`, so the
/// server can wait for every connection to have acked what it committed and closed.
pub fn spawn(
    engine: Arc<Engine>,
    count: u8,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> OpenConnections {
    let open = OpenConnections::default();
    // A connection that Slack says will close asks for its replacement here, so the new one
    // opens while the old one drains.
    let (replace_tx, mut replace_rx) = mpsc::unbounded_channel::<u8>();
    for slot in 0..count {
        tasks.spawn(slot_loop(
            engine.clone(),
            slot,
            stop.clone(),
            replace_tx.clone(),
            open.clone(),
        ));
    }
    let (tracker, counter) = (tasks.clone(), open.clone());
    tasks.spawn(async move {
        loop {
            tokio::select! {
                Some(slot) = replace_rx.recv() => {
                    tracker.spawn(slot_loop(engine.clone(), slot, stop.clone(), replace_tx.clone(), counter.clone()));
                }
                _ = stop.cancelled() => return,
            }
        }
    });
    open
}

enum Ended {
    /// Slack announced the close and a replacement took over this slot.
    HandedOver,
    /// The connection was up and then closed.
    Closed,
    Stopped,
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.5..1.5))
}

async fn slot_loop(
    engine: Arc<Engine>,
    slot: u8,
    stop: CancellationToken,
    replace: mpsc::UnboundedSender<u8>,
    open: OpenConnections,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match connect_once(&engine, slot, &stop, &replace, &open).await {
            Ok(Ended::HandedOver) | Ok(Ended::Stopped) => return,
            Ok(Ended::Closed) => backoff = Duration::from_millis(250),
            Err(e) => {
                tracing::warn!(slot, error = %e, ?backoff, "Socket Mode connection failed; retrying");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(backoff)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

fn envelope_kind(kind: &str) -> Option<Kind> {
    match kind {
        "events_api" => Some(Kind::Event),
        "slash_commands" => Some(Kind::Command),
        "interactive" => Some(Kind::Interaction),
        _ => None,
    }
}

/// What one Socket Mode text frame from Slack says.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Hello,
    /// Slack will close this connection soon.
    Disconnect {
        reason: String,
    },
    /// Something to commit, then ack by `envelope_id`.
    Envelope {
        kind: Kind,
        envelope_id: String,
        payload: Value,
    },
    /// Not JSON, an envelope without an id, or a type we do not take: read and dropped.
    Ignored,
}

/// Reads a text frame (public so the fuzz targets reach exactly what the connection does).
pub fn parse_frame(text: &str) -> Frame {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        return Frame::Ignored;
    };
    match message["type"].as_str().unwrap_or("") {
        "hello" => Frame::Hello,
        "disconnect" => Frame::Disconnect {
            reason: message["reason"].as_str().unwrap_or("").to_string(),
        },
        other => match (envelope_kind(other), message["envelope_id"].as_str()) {
            (Some(kind), Some(envelope_id)) => Frame::Envelope {
                kind,
                envelope_id: envelope_id.to_string(),
                payload: message["payload"].clone(),
            },
            _ => Frame::Ignored,
        },
    }
}

async fn connect_once(
    engine: &Arc<Engine>,
    slot: u8,
    stop: &CancellationToken,
    replace: &mpsc::UnboundedSender<u8>,
    open: &OpenConnections,
) -> Result<Ended, String> {
    let url = engine
        .slack
        .open_socket_url()
        .await
        .map_err(|e| e.to_string())?;
    let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut write, mut read) = socket.split();
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<String>();
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut last_seen = Instant::now();
    let mut drain_deadline: Option<Instant> = None;
    let mut said_hello = false;
    let mut counted = None;
    // The envelopes being committed, so a stop can wait for their acks.
    let receiving = TaskTracker::new();
    loop {
        let drain_sleep = async {
            match drain_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = read.next() => {
                let Some(Ok(frame)) = frame else { break };
                last_seen = Instant::now();
                let Message::Text(text) = frame else {
                    if matches!(frame, Message::Close(_)) { break }
                    continue;
                };
                match parse_frame(&text) {
                    Frame::Hello => {
                        said_hello = true;
                        counted.get_or_insert_with(|| Counted::new(open));
                        tracing::info!(slot, "Socket Mode connected");
                    }
                    Frame::Disconnect { reason } => {
                        tracing::info!(slot, reason, "Slack will close this connection; opening the next");
                        if drain_deadline.is_none() {
                            let _ = replace.send(slot);
                            drain_deadline = Some(Instant::now() + DRAIN_LIMIT);
                        }
                    }
                    Frame::Ignored => continue,
                    Frame::Envelope { kind, envelope_id, payload } => {
                        let engine = engine.clone();
                        let ack_tx = ack_tx.clone();
                        receiving.spawn(async move {
                            match engine.receive(kind, payload, None).await {
                                Ok(body) => {
                                    let mut ack = json!({"envelope_id": envelope_id});
                                    if let Some(body) = body {
                                        ack["payload"] = body;
                                    }
                                    let _ = ack_tx.send(ack.to_string());
                                }
                                Err(e) => tracing::error!(error = %e, "envelope not committed; leaving it unacked for Slack to resend"),
                            }
                        });
                    }
                }
            }
            Some(ack) = ack_rx.recv() => {
                if write.send(Message::Text(ack.into())).await.is_err() { break }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > SILENCE_LIMIT {
                    tracing::warn!(slot, "Socket Mode connection went silent; reconnecting");
                    break;
                }
                if write.send(Message::Ping(Vec::new().into())).await.is_err() { break }
            }
            _ = drain_sleep => break,
            _ = stop.cancelled() => {
                // Read no more; ack what is being committed, then close, so Slack sends what
                // is left to other connections (or resends it once we are back).
                drop(counted.take());
                receiving.close();
                let grace = tokio::time::sleep(ACK_GRACE);
                tokio::pin!(grace);
                loop {
                    tokio::select! {
                        Some(ack) = ack_rx.recv() => {
                            if write.send(Message::Text(ack.into())).await.is_err() { break }
                        }
                        _ = receiving.wait() => break,
                        _ = &mut grace => break,
                    }
                }
                while let Ok(ack) = ack_rx.try_recv() {
                    let _ = write.send(Message::Text(ack.into())).await;
                }
                let _ = write.send(Message::Close(None)).await;
                return Ok(Ended::Stopped);
            }
        }
    }
    // Acks computed after the read side ended still go out while the write side lives.
    while let Ok(ack) = ack_rx.try_recv() {
        let _ = write.send(Message::Text(ack.into())).await;
    }
    match (drain_deadline, said_hello) {
        (Some(_), _) => Ok(Ended::HandedOver),
        (None, true) => Ok(Ended::Closed),
        (None, false) => Err("closed before hello".into()),
    }
}
