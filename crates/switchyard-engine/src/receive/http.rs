//! Slack over HTTP: `/slack/events`, `/slack/commands`, `/slack/interactions`.
//!
//! Each request is size-checked (1 MiB, else 413), signature-checked (v0, constant time, 300 s
//! window, else 401) and parsed (else 400) before the engine sees it; every error is JSON.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use slack_morphism::prelude::SlackSigningSecret;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;

use crate::config::Secret;
use crate::pipeline::{Engine, Kind};

/// Slack's requests are small; anything larger is not Slack.
pub const BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
struct Receiver {
    engine: Arc<Engine>,
    verifier: Arc<SlackEventSignatureVerifier>,
}

/// A refusal, as JSON.
struct Refusal(StatusCode, &'static str, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.0,
            axum::Json(json!({"ok": false, "error": self.1, "detail": self.2})),
        )
            .into_response()
    }
}

pub fn routes(engine: Arc<Engine>, signing_secret: &Secret) -> Router {
    let verifier = SlackEventSignatureVerifier::new(&SlackSigningSecret::new(
        signing_secret.expose().to_string(),
    ));
    Router::new()
        .route("/slack/events", post(events))
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
        .with_state(Receiver {
            engine,
            verifier: Arc::new(verifier),
        })
}

/// Reads the body within the limit and checks its signature.
async fn verified_body(
    receiver: &Receiver,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Refusal> {
    let too_large = || {
        Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("limit is {BODY_LIMIT} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT) {
        drain(body).await;
        return Err(too_large());
    }
    let bytes = read_limited(body).await.ok_or_else(too_large)?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp)) = (
        header("x-slack-signature"),
        header("x-slack-request-timestamp"),
    ) else {
        return Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "missing_signature",
            "X-Slack-Signature and X-Slack-Request-Timestamp are required".into(),
        ));
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Refusal(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "the body is not UTF-8".into(),
        )
    })?;
    receiver
        .verifier
        .verify(signature, text, timestamp)
        .map_err(|_| {
            Refusal(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "bad or stale signature".into(),
            )
        })?;
    Ok(bytes)
}

/// The body, if it is within [`BODY_LIMIT`]; a larger one is drained (see [`drain`]).
pub(crate) async fn read_limited(body: Body) -> Option<Bytes> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.ok()?;
        if bytes.len() + chunk.len() > BODY_LIMIT {
            drain_stream(stream).await;
            return None;
        }
        bytes.extend_from_slice(&chunk);
    }
    Some(bytes.into())
}

/// Reads and drops what is left of a refused body (up to [`DRAIN_LIMIT`], for a second at most)
/// before the 413 goes out. Closing a socket with unread data makes the kernel send a reset,
/// which can destroy the 413 on its way: the client would see a broken connection, not why.
pub(crate) async fn drain(body: Body) {
    drain_stream(body.into_data_stream()).await;
}

async fn drain_stream(mut stream: axum::body::BodyDataStream) {
    let mut read = 0usize;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

/// How much of a refused body is read before the connection is closed on it.
const DRAIN_LIMIT: usize = 8 * 1024 * 1024;

fn ack(result: Result<Option<Value>, crate::EngineError>) -> Response {
    match result {
        Ok(Some(body)) => axum::Json(body).into_response(),
        Ok(None) => StatusCode::OK.into_response(),
        // A 5xx makes Slack retry, which is what a store hiccup needs.
        Err(e) => {
            crate::api::ApiError::unavailable("could not take a delivery", &e).into_response()
        }
    }
}

async fn events(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let bytes = verified_body(&r, &headers, body).await?;
    let payload: Value = serde_json::from_slice(&bytes)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    match payload["type"].as_str() {
        Some("url_verification") => {
            let challenge = payload["challenge"].as_str().unwrap_or("");
            Ok(axum::Json(json!({"challenge": challenge})).into_response())
        }
        Some("event_callback") => {
            if payload["event_id"].as_str().is_none() || !payload["event"].is_object() {
                return Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    "invalid_event",
                    "event_id and event are required".into(),
                ));
            }
            // Stored as Slack sent it (checked as UTF-8 with the signature), not serialized again.
            let raw = String::from_utf8(Vec::from(bytes)).ok();
            Ok(ack(r.engine.receive(Kind::Event, payload, raw).await))
        }
        // `app_rate_limited` and anything new: acknowledged, nothing to do.
        Some(_) => Ok(StatusCode::OK.into_response()),
        None => Err(Refusal(
            StatusCode::BAD_REQUEST,
            "invalid_event",
            "no type".into(),
        )),
    }
}

fn form(bytes: &[u8]) -> Result<Map<String, Value>, Refusal> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, "invalid_form", e.to_string()))?;
    Ok(pairs
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect())
}

async fn commands(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let bytes = verified_body(&r, &headers, body).await?;
    let fields = form(&bytes)?;
    if fields.get("ssl_check").and_then(Value::as_str) == Some("1") {
        return Ok(StatusCode::OK.into_response());
    }
    for required in ["command", "user_id", "trigger_id"] {
        if fields
            .get(required)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "invalid_command",
                format!("{required} is required"),
            ));
        }
    }
    Ok(ack(r
        .engine
        .receive(Kind::Command, Value::Object(fields), None)
        .await))
}

async fn interactions(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let bytes = verified_body(&r, &headers, body).await?;
    let fields = form(&bytes)?;
    if fields.get("ssl_check").and_then(Value::as_str) == Some("1") {
        return Ok(StatusCode::OK.into_response());
    }
    let payload = fields
        .get("payload")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Refusal(
                StatusCode::BAD_REQUEST,
                "invalid_interaction",
                "payload is required".into(),
            )
        })?;
    let payload: Value = serde_json::from_str(payload)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    if !payload.is_object() || payload["type"].as_str().is_none() {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "invalid_interaction",
            "payload needs a type".into(),
        ));
    }
    Ok(ack(r
        .engine
        .receive(Kind::Interaction, payload, None)
        .await))
}
