//! What arrives: our own alert JSON (one alert, an array, or `{"alerts": [...]}`) and
//! Alertmanager's webhook (version 4). Everything is checked before anything is stored; an
//! error names the field (`alerts[1].severity`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::High => "high",
            Self::Medium => "medium",
            Self::Low => "low",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "critical" => Some(Self::Critical),
            "high" => Some(Self::High),
            "medium" => Some(Self::Medium),
            "low" => Some(Self::Low),
            _ => None,
        }
    }

    /// Alertmanager's customary `severity` labels, onto ours; unknown ones are `medium`.
    pub fn from_alertmanager(text: &str) -> Self {
        Self::parse(text).unwrap_or(match text.to_ascii_lowercase().as_str() {
            "page" | "error" | "major" => Self::High,
            "info" | "informational" | "none" => Self::Low,
            _ => Self::Medium,
        })
    }

    pub fn emoji(self) -> &'static str {
        match self {
            Self::Critical => ":red_circle:",
            Self::High => ":large_orange_circle:",
            Self::Medium => ":large_yellow_circle:",
            Self::Low => ":large_blue_circle:",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Acknowledged,
    Resolved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Acknowledged => "acknowledged",
            Self::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "firing" => Some(Self::Firing),
            "acknowledged" => Some(Self::Acknowledged),
            "resolved" => Some(Self::Resolved),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub title: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub title: String,
    pub severity: Severity,
    pub source: String,
    pub status: Status,
    pub description: String,
    pub labels: BTreeMap<String, String>,
    pub affected_items: Vec<String>,
    pub links: Vec<Link>,
    pub analysis: String,
    pub dedup_key: String,
    /// When it started (ms since the epoch), if the sender said.
    pub started_at_ms: Option<i64>,
}

/// A payload we refuse: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct BadField {
    pub field: String,
    pub reason: String,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> BadField {
    BadField {
        field: field.into(),
        reason: reason.into(),
    }
}

/// At most this many alerts per request, and this long a dedup key (it goes into message refs).
pub(crate) const MAX_BATCH: usize = 500;
pub(crate) const MAX_KEY: usize = 200;

/// Our own format: one alert, an array of them, or `{"alerts": [...]}`.
pub fn parse_alerts(body: &str) -> Result<Vec<Alert>, BadField> {
    parse_alerts_scaled(body, &|_| None)
}

/// As [`parse_alerts`], with `scale` naming the severities of a configured scale (`P1`) that
/// are not one of the four.
pub fn parse_alerts_scaled(
    body: &str,
    scale: &dyn Fn(&str) -> Option<Severity>,
) -> Result<Vec<Alert>, BadField> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
    let (items, prefix): (Vec<&Value>, &str) = match &value {
        Value::Array(items) => (items.iter().collect(), "alerts"),
        Value::Object(map) if map.contains_key("alerts") => match &map["alerts"] {
            Value::Array(items) => (items.iter().collect(), "alerts"),
            _ => return Err(bad("alerts", "must be an array")),
        },
        Value::Object(_) => (vec![&value], ""),
        _ => return Err(bad("body", "must be an alert object or an array of them")),
    };
    if items.is_empty() {
        return Err(bad("alerts", "must not be empty"));
    }
    if items.len() > MAX_BATCH {
        return Err(bad("alerts", format!("at most {MAX_BATCH} per request")));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}[{i}].")
            };
            parse_one(item, &at, scale)
        })
        .collect()
}

fn string_field(item: &Value, at: &str, name: &str, required: bool) -> Result<String, BadField> {
    match &item[name] {
        Value::String(s) if required && s.trim().is_empty() => {
            Err(bad(format!("{at}{name}"), "must not be empty"))
        }
        Value::String(s) => Ok(s.clone()),
        Value::Null if required => Err(bad(format!("{at}{name}"), "is required")),
        Value::Null => Ok(String::new()),
        _ => Err(bad(format!("{at}{name}"), "must be a string")),
    }
}

pub(crate) fn labels_field(
    value: &Value,
    field: &str,
) -> Result<BTreeMap<String, String>, BadField> {
    match value {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(bad(format!("{field}.{k}"), "must be a string")),
            })
            .collect(),
        _ => Err(bad(field, "must be an object of strings")),
    }
}

fn parse_one(
    item: &Value,
    at: &str,
    scale: &dyn Fn(&str) -> Option<Severity>,
) -> Result<Alert, BadField> {
    if !item.is_object() {
        return Err(bad(at.trim_end_matches('.'), "must be an object"));
    }
    let title = string_field(item, at, "title", true)?;
    let severity_text = string_field(item, at, "severity", true)?;
    let severity = Severity::parse(&severity_text)
        .or_else(|| scale(&severity_text))
        .ok_or_else(|| {
            bad(
                format!("{at}severity"),
                "must be critical, high, medium or low (or a [apps.alerts.severity_labels] name)",
            )
        })?;
    let status = match string_field(item, at, "status", false)?.as_str() {
        "" => Status::Firing,
        text => Status::parse(text).ok_or_else(|| {
            bad(
                format!("{at}status"),
                "must be firing, acknowledged or resolved",
            )
        })?,
    };
    let source = match string_field(item, at, "source", false)? {
        s if s.is_empty() => "api".to_string(),
        s => s,
    };
    let labels = labels_field(&item["labels"], &format!("{at}labels"))?;
    let affected_items = match &item["affected_items"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(bad(format!("{at}affected_items[{i}]"), "must be a string")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(bad(format!("{at}affected_items"), "must be an array")),
    };
    let links = match &item["links"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| parse_link(v, &format!("{at}links[{i}]")))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad(format!("{at}links"), "must be an array")),
    };
    let dedup_key = match string_field(item, at, "dedup_key", false)? {
        key if key.is_empty() => derive_key(&title, &source, &labels),
        key if key.chars().count() > MAX_KEY => {
            return Err(bad(
                format!("{at}dedup_key"),
                format!("at most {MAX_KEY} characters"),
            ));
        }
        key => key,
    };
    Ok(Alert {
        title,
        severity,
        source,
        status,
        description: string_field(item, at, "description", false)?,
        labels,
        affected_items,
        links,
        analysis: string_field(item, at, "analysis", false)?,
        dedup_key,
        started_at_ms: None,
    })
}

fn parse_link(value: &Value, field: &str) -> Result<Link, BadField> {
    let (title, url) = match value {
        Value::String(url) => ("View details".to_string(), url.clone()),
        Value::Object(_) => (
            value["title"]
                .as_str()
                .unwrap_or("View details")
                .to_string(),
            value["url"]
                .as_str()
                .ok_or_else(|| bad(format!("{field}.url"), "is required"))?
                .to_string(),
        ),
        _ => return Err(bad(field, "must be a URL or {title, url}")),
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(bad(field, "the URL must start with http:// or https://"));
    }
    Ok(Link { title, url })
}

/// The same labels from the same source (or, without labels, the same title) are the same
/// alert — the title is left out otherwise because it often carries changing figures. A stable
/// FNV-1a hash, so the key is short enough for message refs.
pub fn derive_key(title: &str, source: &str, labels: &BTreeMap<String, String>) -> String {
    let text = if labels.is_empty() {
        format!("{source}\u{0}{title}")
    } else {
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{source}\u{0}{}", pairs.join("\u{0}"))
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Alertmanager's webhook, version 4.
pub fn parse_alertmanager(body: &str) -> Result<Vec<Alert>, BadField> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
    if !value.is_object() {
        return Err(bad("body", "must be an object"));
    }
    match &value["version"] {
        Value::String(v) if v == "4" => {}
        Value::Null => return Err(bad("version", "is required (\"4\")")),
        _ => return Err(bad("version", "only version \"4\" is understood")),
    }
    if !value["groupKey"].is_string() {
        return Err(bad("groupKey", "is required (a string)"));
    }
    let Some(items) = value["alerts"].as_array() else {
        return Err(bad("alerts", "is required (an array)"));
    };
    if items.len() > MAX_BATCH {
        return Err(bad("alerts", format!("at most {MAX_BATCH} per request")));
    }
    let receiver = value["receiver"].as_str().unwrap_or("");
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("alerts[{i}]");
            let status = match item["status"].as_str() {
                Some("firing") => Status::Firing,
                Some("resolved") => Status::Resolved,
                _ => return Err(bad(format!("{at}.status"), "must be firing or resolved")),
            };
            let labels = labels_field(&item["labels"], &format!("{at}.labels"))?;
            let annotations = labels_field(&item["annotations"], &format!("{at}.annotations"))?;
            let started_at_ms = match &item["startsAt"] {
                Value::String(s) => Some(
                    parse_rfc3339_ms(s)
                        .ok_or_else(|| bad(format!("{at}.startsAt"), "must be an RFC 3339 time"))?,
                ),
                Value::Null => None,
                _ => return Err(bad(format!("{at}.startsAt"), "must be a string")),
            };
            let title = annotations
                .get("summary")
                .or_else(|| labels.get("alertname"))
                .cloned()
                .unwrap_or_else(|| "Alertmanager alert".into());
            let source = if receiver.is_empty() {
                "alertmanager".to_string()
            } else {
                format!("alertmanager ({receiver})")
            };
            let dedup_key = match item["fingerprint"].as_str() {
                Some(f) if !f.is_empty() && f.chars().count() <= MAX_KEY => f.to_string(),
                _ => derive_key(&title, "alertmanager", &labels),
            };
            let links = item["generatorURL"]
                .as_str()
                .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
                .map(|url| {
                    vec![Link {
                        title: "View details".into(),
                        url: url.to_string(),
                    }]
                })
                .unwrap_or_default();
            Ok(Alert {
                severity: Severity::from_alertmanager(
                    labels.get("severity").map(String::as_str).unwrap_or(""),
                ),
                description: annotations.get("description").cloned().unwrap_or_default(),
                analysis: annotations.get("analysis").cloned().unwrap_or_default(),
                affected_items: labels
                    .get("instance")
                    .map(|i| vec![i.clone()])
                    .unwrap_or_default(),
                title,
                source,
                status,
                labels,
                links,
                dedup_key,
                started_at_ms,
            })
        })
        .collect()
}

/// `2026-11-26T04:46:12.123Z` or with an offset (`+01:00`), to ms since the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|at| at.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2026-11-26T04:46:12.5Z"),
            Some(1_795_668_372_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2026-11-26T05:46:12+01:00"),
            Some(1_795_668_372_000)
        );
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
        // Out of range: refused, not overflowed.
        assert_eq!(parse_rfc3339_ms("99999999999999-01-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_ms("2026-11-26T25:00:00Z"), None);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_alerts(
            r#"[{"title":"a","severity":"critical"},{"title":"b","severity":"huge"}]"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "alerts[1].severity");
        let e = parse_alerts(r#"{"severity":"low"}"#).unwrap_err();
        assert_eq!(e.field, "title");
    }
}
