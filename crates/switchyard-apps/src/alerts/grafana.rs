//! Grafana's alerting webhook (unified alerting's "webhook" contact point, payload
//! `version: "1"`): the top level (`receiver`, `status`, `orgId`, `groupKey`, `title`,
//! `message`, `externalURL`, …) and `alerts[]` with `status`, `labels`, `annotations`,
//! `startsAt`, `endsAt`, `generatorURL`, `fingerprint`, `silenceURL`, `dashboardURL`,
//! `panelURL`, `values`/`valueString`. Checked whole before anything is stored; errors name
//! the field (`alerts[0].status`).
//!
//! Mapping onto [`Alert`]: title from the `summary` annotation (else the `alertname` label,
//! else the payload's `title`); severity from the `severity` label through the configured
//! scale; description from the `description` annotation (else the payload's `message`);
//! links from the panel, dashboard, rule, runbook and silence URLs, in that order (the first
//! is the message's View details button); analysis from the query values; the dedup key
//! from `fingerprint`.

use serde_json::Value;

use super::intake::{
    Alert, BadField, Link, MAX_BATCH, MAX_KEY, Severity, Status, derive_key, labels_field,
    parse_rfc3339_ms,
};

fn bad(field: impl Into<String>, reason: impl Into<String>) -> BadField {
    BadField {
        field: field.into(),
        reason: reason.into(),
    }
}

fn optional_str<'a>(item: &'a Value, field: &str, name: &str) -> Result<&'a str, BadField> {
    match &item[name] {
        Value::Null => Ok(""),
        Value::String(s) => Ok(s),
        _ => Err(bad(
            if field.is_empty() {
                name.to_string()
            } else {
                format!("{field}.{name}")
            },
            "must be a string",
        )),
    }
}

fn is_http(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Grafana's payload; `severity` maps a `severity` label's value (possibly empty) onto ours.
pub fn parse_grafana(
    body: &str,
    severity: &dyn Fn(&str) -> Severity,
) -> Result<Vec<Alert>, BadField> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| bad("body", format!("not JSON: {e}")))?;
    if !value.is_object() {
        return Err(bad("body", "must be an object"));
    }
    // Alertmanager's payload is close; its `version` is "4", Grafana's "1".
    match &value["version"] {
        Value::Null => {}
        Value::String(v) if v == "1" => {}
        Value::String(_) => {
            return Err(bad(
                "version",
                "only Grafana's version \"1\" is understood (Alertmanager's goes to /api/v1/alertmanager)",
            ));
        }
        _ => return Err(bad("version", "must be a string")),
    }
    if !matches!(value["orgId"], Value::Null | Value::Number(_)) {
        return Err(bad("orgId", "must be a number"));
    }
    for name in ["receiver", "groupKey", "title", "message", "externalURL"] {
        optional_str(&value, "", name)?;
    }
    let Some(items) = value["alerts"].as_array() else {
        return Err(bad("alerts", "is required (an array)"));
    };
    if items.len() > MAX_BATCH {
        return Err(bad("alerts", format!("at most {MAX_BATCH} per request")));
    }
    let receiver = value["receiver"].as_str().unwrap_or("");
    let source = if receiver.is_empty() {
        "grafana".to_string()
    } else {
        format!("grafana ({receiver})")
    };
    let title_fallback = value["title"].as_str().unwrap_or("");
    let message_fallback = value["message"].as_str().unwrap_or("");
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("alerts[{i}]");
            if !item.is_object() {
                return Err(bad(&at, "must be an object"));
            }
            let status = match &item["status"] {
                Value::String(s) if s == "firing" => Status::Firing,
                Value::String(s) if s == "resolved" => Status::Resolved,
                _ => return Err(bad(format!("{at}.status"), "must be firing or resolved")),
            };
            let labels = labels_field(&item["labels"], &format!("{at}.labels"))?;
            let annotations = labels_field(&item["annotations"], &format!("{at}.annotations"))?;
            let started_at_ms = match optional_str(item, &at, "startsAt")? {
                "" => None,
                s => Some(
                    parse_rfc3339_ms(s)
                        .ok_or_else(|| bad(format!("{at}.startsAt"), "must be an RFC 3339 time"))?,
                ),
            };
            let ends_at = optional_str(item, &at, "endsAt")?;
            if !ends_at.is_empty() && parse_rfc3339_ms(ends_at).is_none() {
                return Err(bad(format!("{at}.endsAt"), "must be an RFC 3339 time"));
            }
            let mut links = Vec::new();
            let runbook = annotations.get("runbook_url").cloned().unwrap_or_default();
            for (name, title) in [
                ("panelURL", "View panel"),
                ("dashboardURL", "View dashboard"),
                ("generatorURL", "View alert rule"),
            ] {
                let url = optional_str(item, &at, name)?;
                if is_http(url) {
                    links.push(Link {
                        title: title.into(),
                        url: url.to_string(),
                    });
                }
            }
            if is_http(&runbook) {
                links.push(Link {
                    title: "Runbook".into(),
                    url: runbook,
                });
            }
            let silence = optional_str(item, &at, "silenceURL")?;
            if is_http(silence) {
                links.push(Link {
                    title: "Silence in Grafana".into(),
                    url: silence.to_string(),
                });
            }
            let analysis = match (&item["valueString"], &item["values"]) {
                (Value::String(s), _) if !s.is_empty() => s.clone(),
                (Value::Null | Value::String(_), Value::Object(values)) => values
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                (Value::Null | Value::String(_), Value::Null) => String::new(),
                (Value::Null | Value::String(_), _) => {
                    return Err(bad(format!("{at}.values"), "must be an object"));
                }
                _ => return Err(bad(format!("{at}.valueString"), "must be a string")),
            };
            let title = annotations
                .get("summary")
                .or_else(|| labels.get("alertname"))
                .cloned()
                .filter(|t| !t.trim().is_empty())
                .unwrap_or_else(|| match title_fallback {
                    "" => "Grafana alert".to_string(),
                    t => t.to_string(),
                });
            let dedup_key = match optional_str(item, &at, "fingerprint")? {
                f if !f.is_empty() && f.chars().count() <= MAX_KEY => f.to_string(),
                _ => derive_key(&title, "grafana", &labels),
            };
            Ok(Alert {
                severity: severity(labels.get("severity").map(String::as_str).unwrap_or("")),
                description: annotations
                    .get("description")
                    .cloned()
                    .unwrap_or_else(|| message_fallback.to_string()),
                analysis,
                affected_items: labels
                    .get("instance")
                    .map(|i| vec![i.clone()])
                    .unwrap_or_default(),
                title,
                source: source.clone(),
                status,
                labels,
                links,
                dedup_key,
                started_at_ms,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grafana's documented example (docs: "Configure the webhook notifier for Alerting").
    pub const EXAMPLE: &str = r#"{
      "receiver": "My Super Webhook",
      "status": "firing",
      "orgId": 1,
      "alerts": [
        {
          "status": "firing",
          "labels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
          "annotations": {
            "description": "The system has high memory usage",
            "runbook_url": "https://myrunbook.com/runbook/1234",
            "summary": "This alert was triggered for zone us-1"
          },
          "startsAt": "2021-10-12T09:51:03.157076+02:00",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
          "fingerprint": "c6eadffa33fcdf37",
          "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1",
          "dashboardURL": "",
          "panelURL": "",
          "values": {"B": 44.23943737541908, "C": 1}
        }
      ],
      "groupLabels": {},
      "commonLabels": {"team": "blue"},
      "commonAnnotations": {},
      "externalURL": "https://play.grafana.org/",
      "version": "1",
      "groupKey": "{}:{}",
      "truncatedAlerts": 0,
      "title": "[FIRING:1]  (blue)",
      "state": "alerting",
      "message": "**Firing**\n\nLabels:\n - alertname = High memory usage"
    }"#;

    fn scale(label: &str) -> Severity {
        if label == "P1" {
            Severity::Critical
        } else {
            Severity::Medium
        }
    }

    #[test]
    fn the_documented_example_maps_onto_an_alert() {
        let alerts = parse_grafana(EXAMPLE, &scale).unwrap();
        let a = &alerts[0];
        assert_eq!(a.title, "This alert was triggered for zone us-1");
        assert_eq!(a.source, "grafana (My Super Webhook)");
        assert_eq!(a.status, Status::Firing);
        assert_eq!(a.severity, Severity::Medium);
        assert_eq!(a.dedup_key, "c6eadffa33fcdf37");
        assert_eq!(a.description, "The system has high memory usage");
        assert_eq!(a.analysis, "B = 44.23943737541908, C = 1");
        let titles: Vec<&str> = a.links.iter().map(|l| l.title.as_str()).collect();
        assert_eq!(titles, ["View alert rule", "Runbook", "Silence in Grafana"]);
        assert_eq!(a.started_at_ms, Some(1_634_025_063_157));
    }

    #[test]
    fn errors_name_the_field() {
        let field = |body: &str| parse_grafana(body, &scale).unwrap_err().field;
        assert_eq!(field("[]"), "body");
        assert_eq!(field(r#"{"version": "4", "alerts": []}"#), "version");
        assert_eq!(field(r#"{"orgId": "one", "alerts": []}"#), "orgId");
        assert_eq!(field(r#"{"status": "firing"}"#), "alerts");
        assert_eq!(
            field(r#"{"alerts": [{"status": "pending"}]}"#),
            "alerts[0].status"
        );
        assert_eq!(
            field(r#"{"alerts": [{"status": "firing", "labels": {"a": 1}}]}"#),
            "alerts[0].labels.a"
        );
        assert_eq!(
            field(r#"{"alerts": [{"status": "firing", "endsAt": "later"}]}"#),
            "alerts[0].endsAt"
        );
        assert_eq!(
            field(r#"{"alerts": [{"status": "firing", "panelURL": 3}]}"#),
            "alerts[0].panelURL"
        );
    }
}
