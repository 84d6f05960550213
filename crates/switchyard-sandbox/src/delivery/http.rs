//! Signed HTTP deliveries: the Events API, slash command forms and interactivity payloads.

use std::sync::Arc;

use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use super::Tried;
use crate::faults::FaultKind;
use crate::ids::{now_secs, secret};
use crate::signing::sign;
use crate::{Inner, lock};

/// Posts a signed body; maps the reply to Slack's notion of an ack.
async fn post_signed(
    inner: &Arc<Inner>,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    retry: Option<(u32, &str)>,
) -> Tried {
    let secret = inner.ws().app.signing_secret.clone();
    let timestamp = now_secs();
    let mut request = inner
        .delivery
        .http
        .post(url)
        .timeout(inner.delivery.settings().ack_timeout)
        .header(CONTENT_TYPE, content_type)
        .header("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
        .header("X-Slack-Request-Timestamp", timestamp.to_string())
        .header("X-Slack-Signature", sign(&secret, timestamp, &body));
    if let Some((num, reason)) = retry.filter(|(n, _)| *n > 0) {
        request = request
            .header("X-Slack-Retry-Num", num.to_string())
            .header("X-Slack-Retry-Reason", reason);
    }
    let response = match request.body(body).send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return failed("http_timeout", None, false),
        Err(_) => return failed("connection_failed", None, false),
    };
    let status = response.status().as_u16();
    let no_retry = response
        .headers()
        .get("X-Slack-No-Retry")
        .is_some_and(|v| v.as_bytes() == b"1");
    let text = match response.text().await {
        Ok(t) => t,
        Err(e) if e.is_timeout() => return failed("http_timeout", Some(status), no_retry),
        Err(_) => return failed("connection_failed", Some(status), no_retry),
    };
    if !(200..300).contains(&status) {
        return failed("http_error", Some(status), no_retry);
    }
    let body = if text.trim().is_empty() {
        None
    } else {
        Some(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    };
    Tried::Acked {
        status: Some(status),
        body,
    }
}

fn failed(reason: &'static str, status: Option<u16>, no_retry: bool) -> Tried {
    Tried::Failed {
        reason,
        status,
        no_retry,
    }
}

/// The `url_verification` handshake Slack makes before it sends events to a URL. One at a time,
/// so events that arrive together wait for one handshake instead of each making their own. A
/// failure gives the reason the event's retry will carry.
async fn verify_url(inner: &Arc<Inner>, url: &str) -> Result<(), &'static str> {
    let _one_at_a_time = inner.delivery.handshake.lock().await;
    if lock(&inner.delivery.verified_urls).contains(url) {
        return Ok(());
    }
    let challenge = secret(32);
    let body = json!({"token": "sandbox-verification-token", "challenge": challenge, "type": "url_verification"});
    let tried = post_signed(
        inner,
        url,
        "application/json",
        body.to_string().into_bytes(),
        None,
    )
    .await;
    let answered = match tried {
        Tried::Failed { reason, .. } => return Err(reason),
        Tried::Acked {
            body: Some(Value::String(s)),
            ..
        } => s.trim() == challenge,
        Tried::Acked { body: Some(v), .. } => {
            v.get("challenge").and_then(Value::as_str) == Some(challenge.as_str())
        }
        Tried::Acked { body: None, .. } => false,
    };
    if !answered {
        // A 2xx without the challenge: Slack reports the URL as not verified.
        return Err("http_error");
    }
    lock(&inner.delivery.verified_urls).insert(url.to_string());
    Ok(())
}

pub async fn post_event(
    inner: &Arc<Inner>,
    url: Option<&str>,
    body: &Value,
    retry_num: u32,
    retry_reason: Option<&str>,
    fault: Option<FaultKind>,
) -> Tried {
    let Some(url) = url else {
        return failed("no_request_url", None, false);
    };
    if fault == Some(FaultKind::Drop) {
        return failed("http_timeout", None, false);
    }
    let mut tried = failed("connection_failed", None, false);
    for url in inner.delivery.candidates(url) {
        if let Err(reason) = verify_url(inner, &url).await {
            tried = failed(reason, None, false);
        } else {
            tried = post_signed(
                inner,
                &url,
                "application/json",
                body.to_string().into_bytes(),
                Some((retry_num, retry_reason.unwrap_or(""))),
            )
            .await;
        }
        if !refused(&tried) {
            break;
        }
    }
    tried
}

/// A connection that could not be made: the next origin may take the delivery.
fn refused(tried: &Tried) -> bool {
    matches!(
        tried,
        Tried::Failed {
            reason: "connection_failed",
            status: None,
            ..
        }
    )
}

/// Commands and interactions: a form, no retries.
pub async fn post_form(
    inner: &Arc<Inner>,
    url: Option<&str>,
    form: &[(String, String)],
    fault: Option<FaultKind>,
) -> Tried {
    let Some(url) = url else {
        return failed("no_request_url", None, false);
    };
    if fault == Some(FaultKind::Drop) {
        return failed("http_timeout", None, false);
    }
    let body = serde_urlencoded::to_string(form)
        .unwrap_or_default()
        .into_bytes();
    let content_type = "application/x-www-form-urlencoded";
    let mut tried = failed("connection_failed", None, false);
    for url in inner.delivery.candidates(url) {
        tried = post_signed(inner, &url, content_type, body.clone(), None).await;
        if fault == Some(FaultKind::Duplicate) {
            let _ = post_signed(inner, &url, content_type, body.clone(), None).await;
        }
        if !refused(&tried) {
            break;
        }
    }
    tried
}
