//! Web API arguments: the query string, a form body or a JSON body, merged.
//!
//! Form values are strings, so structured arguments (`blocks`, `view`, `metadata`) may arrive as
//! JSON text or, in JSON bodies, as JSON values; [`Args::json`] reads both.

use serde_json::{Map, Value};

use super::ApiError;

#[derive(Debug, Default, Clone)]
pub struct Args(Map<String, Value>);

impl Args {
    pub fn parse(query: Option<&str>, content_type: &str, body: &[u8]) -> Result<Self, ApiError> {
        let mut map = Map::new();
        if let Some(q) = query {
            for (k, v) in form_urlencoded(q.as_bytes()) {
                map.insert(k, Value::String(v));
            }
        }
        let body_is_empty = body.iter().all(u8::is_ascii_whitespace);
        if content_type.starts_with("application/json") && !body_is_empty {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(fields)) => map.extend(fields),
                _ => return Err(ApiError::new("invalid_json")),
            }
        } else if content_type.starts_with("multipart/form-data") {
            return Err(ApiError::new("invalid_form_data"));
        } else if !body_is_empty {
            for (k, v) in form_urlencoded(body) {
                map.insert(k, Value::String(v));
            }
        }
        Ok(Self(map))
    }

    /// A string argument; numbers and booleans are given as text, as a form would carry them.
    pub fn string(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A required string, or Slack's `invalid_arguments`.
    pub fn required(&self, key: &str) -> Result<String, ApiError> {
        self.string(key)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::invalid_arguments(format!("missing required field: {key}")))
    }

    pub fn bool(&self, key: &str) -> bool {
        match self.0.get(key) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => matches!(s.as_str(), "true" | "1"),
            Some(Value::Number(n)) => n.as_i64() == Some(1),
            _ => false,
        }
    }

    pub fn usize(&self, key: &str) -> Option<usize> {
        self.string(key).and_then(|s| s.parse().ok())
    }

    /// A structured argument, given as JSON text or as a JSON value. `Ok(None)` when absent or
    /// empty; `Err(code)` when it is text that is not JSON.
    pub fn json(&self, key: &str, bad: &str) -> Result<Option<Value>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map(Some)
                .map_err(|_| ApiError::new(bad)),
            Some(v) => Ok(Some(v.clone())),
        }
    }

    /// The arguments as recorded by `/_sandbox/api_calls`: tokens left out.
    pub fn redacted(&self) -> Value {
        self.clone().into_redacted()
    }

    /// [`Args::redacted`], taking the arguments instead of copying them: the call log keeps
    /// every call's arguments, and the request has no more use for them.
    pub fn into_redacted(mut self) -> Value {
        self.0.remove("token");
        Value::Object(self.0)
    }
}

fn form_urlencoded(bytes: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(bytes).unwrap_or_default()
}
