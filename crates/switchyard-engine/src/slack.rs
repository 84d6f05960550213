//! The Slack Web API client: `slack-morphism` over hyper/rustls, pointed at `slack.api_url`.
//!
//! Calls take and give JSON, so the outbox can hold any method's arguments; failures are sorted
//! into what the sender must do with them: wait, retry, or give up.

use std::sync::{Arc, Once};
use std::time::Duration;

use serde_json::Value;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use crate::config::{Secret, SlackConfig};

type Connector = SlackClientHyperHttpsConnector;

/// How long one Web API call may take before it counts as a transient failure.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Slack error codes worth retrying: the others (`channel_not_found`, `invalid_blocks`, …) will
/// fail again the same way.
const TRANSIENT_CODES: &[&str] = &[
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("transient: {0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

/// rustls needs one crypto provider chosen at start; ring is ours.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[derive(Clone)]
pub struct SlackApi {
    client: Arc<SlackClient<Connector>>,
    bot_token: SlackApiToken,
    app_token: Option<SlackApiToken>,
}

fn token(secret: &Secret) -> SlackApiToken {
    SlackApiToken::new(SlackApiTokenValue(secret.expose().to_string()))
}

impl SlackApi {
    pub fn new(config: &SlackConfig) -> Self {
        let https = https_connector();
        let connector = SlackClientHyperConnector::from(https)
            // slack-morphism joins the base and the method with a slash of its own.
            .with_slack_api_url(config.api_url.trim_end_matches('/'));
        Self {
            client: Arc::new(SlackClient::new(connector)),
            bot_token: token(&config.bot_token),
            app_token: config.app_token.as_ref().map(token),
        }
    }

    /// Calls a Web API method with JSON arguments as the bot.
    pub async fn call(&self, method: &str, args: &Value) -> Result<Value, CallError> {
        self.call_within(method, args, CALL_TIMEOUT).await
    }

    /// [`SlackApi::call`], counting the call as failed (transient) after `timeout`.
    pub async fn call_within(
        &self,
        method: &str,
        args: &Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let session = self.client.open_session(&self.bot_token);
        let call = session
            .http_session_api
            .http_post::<Value, Value>(method, args, None);
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(CallError::Transient(format!(
                "{method}: no reply in {timeout:?}"
            ))),
            Ok(result) => result.map_err(|e| classify(method, e)),
        }
    }

    /// Calls a read method with query parameters (GET), as the bot: for reads Slack takes
    /// form or query arguments only (`usergroups.users.list`).
    pub async fn get(&self, method: &str, params: &[(&str, &str)]) -> Result<Value, CallError> {
        let session = self.client.open_session(&self.bot_token);
        let params: Vec<(&str, Option<&str>)> =
            params.iter().map(|(k, v)| (*k, Some(*v))).collect();
        let call = session
            .http_session_api
            .http_get::<Value, _, &str>(method, &params, None);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => Err(CallError::Transient(format!("{method}: no reply"))),
            Ok(result) => result.map_err(|e| classify(method, e)),
        }
    }

    /// Posts JSON to a URL without the token: a `response_url`, or an incoming webhook (Slack's
    /// or anyone's). Such URLs are secrets themselves, so they are kept out of logs.
    pub async fn post_url(&self, url: &str, body: &Value) -> Result<Value, CallError> {
        let url: url::Url = url
            .parse()
            .map_err(|e| CallError::Permanent(format!("bad URL: {e}")))?;
        let span = tracing::debug_span!("outgoing webhook");
        let context = SlackClientApiCallContext {
            rate_control_params: None,
            token: None,
            tracing_span: &span,
            is_sensitive_url: true,
        };
        let call = self
            .client
            .http_api
            .connector
            .http_post_uri::<Value, Value>(url, body, context);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => Err(CallError::Transient("webhook: no reply".into())),
            Ok(result) => result.map_err(|e| classify("webhook", e)),
        }
    }

    /// `apps.connections.open` with the app-level token: a fresh Socket Mode URL.
    pub async fn open_socket_url(&self) -> Result<String, CallError> {
        let token = self
            .app_token
            .as_ref()
            .ok_or_else(|| CallError::Permanent("no app token: Socket Mode is off".into()))?;
        let session = self.client.open_session(token);
        let request = SlackApiAppsConnectionOpenRequest::new();
        let call = session.apps_connections_open(&request);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => Err(CallError::Transient(
                "apps.connections.open: no reply".into(),
            )),
            Ok(Ok(response)) => Ok(response.url.0.to_string()),
            Ok(Err(e)) => Err(classify("apps.connections.open", e)),
        }
    }
}

/// An http(s) connector with the system's CA certificates and ring (see
/// [`install_crypto_provider`]).
pub(crate) fn https_connector()
-> hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector> {
    install_crypto_provider();
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    // Without system CA certificates, https calls fail but plain http (the sandbox) still works.
    match builder.with_native_roots() {
        Ok(b) => b.https_or_http().enable_http1().build(),
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
            .https_or_http()
            .enable_http1()
            .build(),
    }
}

fn classify(method: &str, error: SlackClientError) -> CallError {
    match error {
        SlackClientError::RateLimitError(e) => CallError::RateLimited {
            retry_after: e.retry_after.unwrap_or(Duration::from_secs(1)),
        },
        SlackClientError::ApiError(e) if TRANSIENT_CODES.contains(&e.code.as_str()) => {
            CallError::Transient(format!("{method}: {}", e.code))
        }
        SlackClientError::ApiError(e) => CallError::Permanent(format!("{method}: {}", e.code)),
        SlackClientError::HttpError(e) if e.status_code.is_server_error() => {
            CallError::Transient(format!("{method}: HTTP {}", e.status_code))
        }
        SlackClientError::HttpError(e) => {
            CallError::Permanent(format!("{method}: HTTP {}", e.status_code))
        }
        other => CallError::Transient(format!("{method}: {other}")),
    }
}
