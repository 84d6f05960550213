//! The control API (`/_sandbox/…`, docs/sandbox.md) from Rust: what a test does to act as the
//! workspace's people and read back what the app did, without writing the HTTP calls itself.

use reqwest::Method;
use serde_json::Value;

/// A client of one sandbox's control API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ControlClient {
    base: String,
    http: reqwest::Client,
}

/// A control-API call that did not come back as JSON.
#[derive(Debug, thiserror::Error)]
#[error("{method} /_sandbox{path}: {source}")]
pub struct ControlError {
    method: Method,
    path: String,
    source: reqwest::Error,
}

impl ControlClient {
    /// A client for the sandbox at `url` (`http://127.0.0.1:PORT`).
    pub fn new(url: &str) -> Self {
        Self {
            base: format!("{}/_sandbox", url.trim_end_matches('/')),
            http: reqwest::Client::new(),
        }
    }

    /// `GET /_sandbox{path}` (e.g. `/channels/general/messages?wait_for=1`): its JSON body,
    /// whatever the status.
    pub async fn get(&self, path: &str) -> Result<Value, ControlError> {
        self.request(Method::GET, path, None).await
    }

    /// `POST /_sandbox{path}` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ControlError> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// `PUT /_sandbox{path}` with a JSON body (`/app/manifest`, `/rate_limits`).
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, ControlError> {
        self.request(Method::PUT, path, Some(body)).await
    }

    /// Any method, with an optional JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ControlError> {
        let error = |source| ControlError {
            method: method.clone(),
            path: path.to_string(),
            source,
        };
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(error)?;
        response.json().await.map_err(error)
    }
}
