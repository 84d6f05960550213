//! The ceiling for any receiver on this machine: a bare axum handler that verifies an Events
//! API delivery's signature and parses its JSON, then answers 200, keeping nothing. `peers.md`
//! measured one beside Bolt; the bench runs this one in the same rounds as the contenders, so
//! the distance from Switchyard's acks to the ceiling is read within one run.
//!
//! Usage: switchyard-bench-ceiling PORT SIGNING_SECRET

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(port), Some(secret)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: switchyard-bench-ceiling PORT SIGNING_SECRET");
    };
    let key = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    let app = Router::new()
        .route("/slack/events", post(receive))
        .with_state(key);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// Verifies the v0 signature (constant time, 300-s window) and parses the body.
async fn receive(State(key): State<Hmac<Sha256>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(ts), Some(signature)) = (
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
    ) else {
        return StatusCode::UNAUTHORIZED;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let fresh = ts.parse::<i64>().is_ok_and(|t| (now - t).abs() <= 300);
    let Some(given) = signature
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return StatusCode::UNAUTHORIZED;
    };
    let mut mac = key;
    mac.update(b"v0:");
    mac.update(ts.as_bytes());
    mac.update(b":");
    mac.update(&body);
    if !fresh || mac.verify_slice(&given).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}
