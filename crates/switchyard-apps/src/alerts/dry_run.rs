//! `switchyard alerts test FILE.json`: what the alerts app would do with a payload — the rules
//! each alert hits (with `continue`), the channels and mentions, and the Block Kit message —
//! without a server, a store or Slack. The same parsers, routing and templates as the server.

use serde_json::{Value, json};

use super::config::{self, AlertsConfig, CompiledRules};
use super::intake::{self, BadField};
use super::{blocks, grafana, hooks};

/// Which receiver's payload a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// Ours (`POST /api/v1/alerts`).
    Alerts,
    /// Alertmanager's webhook, version 4 (`/api/v1/alertmanager`).
    Alertmanager,
    /// Grafana's alerting webhook (`/api/v1/grafana`).
    Grafana,
}

impl PayloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alerts => "alerts",
            Self::Alertmanager => "alertmanager",
            Self::Grafana => "grafana",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "alerts" | "ours" | "switchyard" => Some(Self::Alerts),
            "alertmanager" => Some(Self::Alertmanager),
            "grafana" => Some(Self::Grafana),
            _ => None,
        }
    }

    /// By its shape: Alertmanager's has `version: "4"` and a `groupKey`; Grafana's
    /// `version: "1"` or an `orgId`; anything else is ours.
    pub fn detect(body: &str) -> Self {
        let Ok(value) = serde_json::from_str::<Value>(body) else {
            return Self::Alerts;
        };
        match (&value["version"], &value["orgId"]) {
            (Value::String(v), _) if v == "4" => Self::Alertmanager,
            (Value::String(v), _) if v == "1" => Self::Grafana,
            (_, Value::Number(_)) => Self::Grafana,
            _ if value["groupKey"].is_string() && value["alerts"].is_array() => Self::Alertmanager,
            _ => Self::Alerts,
        }
    }
}

/// A payload the alerts app would refuse (the field, as the server's 400 names it), or a
/// template that fails.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error("{0}")]
    Payload(BadField),
    #[error("{0}")]
    Render(#[from] blocks::RenderError),
}

/// The report: the payload's kind and, per alert, the rules hit, the fallback used when none
/// was, and per target channel its mentions and the message.
pub fn explain(
    config: &AlertsConfig,
    claims: &[hooks::Claim],
    body: &str,
    kind: PayloadKind,
    now_ms: i64,
) -> Result<Value, DryRunError> {
    let alerts = match kind {
        PayloadKind::Alerts => {
            intake::parse_alerts_scaled(body, &|label| config.severity_listed(label))
        }
        PayloadKind::Alertmanager => intake::parse_alertmanager(body).map(|a| config.rescale(a)),
        PayloadKind::Grafana => {
            grafana::parse_grafana(body, &|label| config.severity_of_label(label))
        }
    }
    .map_err(DryRunError::Payload)?;
    let compiled = CompiledRules::new(config);
    let templates =
        blocks::Templates::with_hooks(config.template.as_deref(), &config.hooks, claims)?;
    let mut out = Vec::new();
    for alert in alerts {
        let hits = config::matched_rules(config, &compiled, &alert);
        let rules: Vec<Value> = hits
            .iter()
            .map(|&i| {
                let rule = &config.rules[i];
                json!({"index": i, "name": rule.name, "continue": rule.continue_matching})
            })
            .collect();
        let fallback = if !hits.is_empty() {
            Value::Null
        } else if config
            .severity_channels
            .contains_key(alert.severity.as_str())
        {
            json!(format!("severity_channels.{}", alert.severity.as_str()))
        } else if config.default_channel.is_some() {
            json!("default_channel")
        } else {
            Value::Null
        };
        let mut targets = Vec::new();
        for (channel, mentions) in config::route(config, &compiled, &alert) {
            let words: Vec<String> = mentions.iter().map(|m| blocks::mention_syntax(m)).collect();
            let message = blocks::render(
                &templates,
                &alert,
                &blocks::MessageState {
                    status: alert.status,
                    occurrences: 1,
                    acked_by: None,
                    resolved_by: None,
                    at_ms: alert.started_at_ms.unwrap_or(now_ms),
                    mentions: words.join(" "),
                },
            )?;
            targets.push(json!({"channel": channel, "mentions": words, "message": message}));
        }
        let mut webhooks: Vec<&str> = Vec::new();
        for &i in &hits {
            for name in &config.rules[i].webhooks {
                if !webhooks.contains(&name.as_str()) {
                    webhooks.push(name);
                }
            }
        }
        out.push(json!({
            "webhooks": webhooks,
            "dedup_key": alert.dedup_key,
            "title": alert.title,
            "severity": alert.severity.as_str(),
            "status": alert.status.as_str(),
            "source": alert.source,
            "rules": rules,
            "fallback": fallback,
            "targets": targets,
        }));
    }
    Ok(json!({"format": kind.as_str(), "alerts": out}))
}

/// The report for people: one block per alert, each message's JSON indented below its channel.
pub fn report_text(report: &Value) -> String {
    let empty = Vec::new();
    let alerts = report["alerts"].as_array().unwrap_or(&empty);
    let mut out = format!(
        "payload: {} ({} alert{})\n",
        report["format"].as_str().unwrap_or("?"),
        alerts.len(),
        if alerts.len() == 1 { "" } else { "s" }
    );
    for (n, alert) in alerts.iter().enumerate() {
        let s = |k: &str| alert[k].as_str().unwrap_or("").to_string();
        out.push_str(&format!(
            "\nalert {}: [{}] {} — {} (source {}, key {})\n",
            n + 1,
            s("severity"),
            s("title"),
            s("status"),
            s("source"),
            s("dedup_key")
        ));
        let rules = alert["rules"].as_array().unwrap_or(&empty);
        if rules.is_empty() {
            let via = match alert["fallback"].as_str() {
                Some(f) => format!("sent by {f}"),
                None => "and no severity entry or default channel: it goes nowhere".into(),
            };
            out.push_str(&format!("  rules: none matched; {via}\n"));
        }
        for rule in rules {
            out.push_str(&format!(
                "  rule {} {:?}: matched, {}\n",
                rule["index"],
                rule["name"].as_str().unwrap_or(""),
                if rule["continue"] == json!(true) {
                    "continue"
                } else {
                    "stop"
                }
            ));
        }
        for target in alert["targets"].as_array().unwrap_or(&empty) {
            let mentions: Vec<&str> = target["mentions"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .filter_map(Value::as_str)
                .collect();
            out.push_str(&format!(
                "  → channel {}{}\n",
                target["channel"].as_str().unwrap_or(""),
                if mentions.is_empty() {
                    String::new()
                } else {
                    format!(", mentioning {}", mentions.join(" "))
                }
            ));
            let message = serde_json::to_string_pretty(&target["message"]).unwrap_or_default();
            for line in message.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
        for name in alert["webhooks"].as_array().unwrap_or(&empty) {
            out.push_str(&format!(
                "  → webhook {} (a copy on firing and on resolution)\n",
                name.as_str().unwrap_or("")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_apart_by_shape() {
        assert_eq!(
            PayloadKind::detect(r#"{"version":"4","groupKey":"g","alerts":[]}"#),
            PayloadKind::Alertmanager
        );
        assert_eq!(
            PayloadKind::detect(r#"{"orgId":1,"alerts":[]}"#),
            PayloadKind::Grafana
        );
        assert_eq!(
            PayloadKind::detect(r#"{"version":"1","alerts":[]}"#),
            PayloadKind::Grafana
        );
        assert_eq!(
            PayloadKind::detect(r#"[{"title":"t","severity":"low"}]"#),
            PayloadKind::Alerts
        );
    }
}
