//! Rules that send a copy of an alert to incoming webhooks (`webhooks = ["ops"]`, names of
//! `[apps.webhooks.incoming]`): for teams that see alerts through a webhook. A webhook's
//! messages cannot be edited and its buttons reach no one, so the copy is the message without
//! Acknowledge/Resolve (link buttons stay), posted when the alert first fires and again when
//! it resolves; repeats and acknowledgements are not copied.
//!
//! A storm is folded for webhooks too, per request: when a webhook's line (its outbox
//! ordering key, paced at about one post a second) would hold more than `storm_backlog`
//! calls with this request's copies, the request's copies to it go as one plain-text list
//! (several when over [`storm::BATCH_CHARS`]) instead of a message each — a webhook's messages
//! cannot be edited, so there is no summary to keep up to date, but 10,000 alerts in POSTs of
//! 500 are about 20 posts instead of 10,000 (three hours at one a second).

use std::collections::BTreeMap;

use serde_json::Value;
use switchyard_engine::{AppError, Ctx, NamedWebhook, Outcome, webhook_ordering_key};

use super::blocks::{self, MessageState, Templates};
use super::config::{self, AlertsConfig, CompiledRules};
use super::intake::{Alert, Status};
use super::storm;
use crate::webhooks::{self, IncomingWebhook, WebhooksConfig, with_defaults};

#[derive(Default)]
pub struct WebhookTargets {
    hooks: BTreeMap<String, IncomingWebhook>,
}

/// `(key, problem)` for every rule naming a webhook that `[apps.webhooks.incoming]` lacks.
pub fn unknown_names(alerts: &AlertsConfig, webhooks: &WebhooksConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (i, rule) in alerts.rules.iter().enumerate() {
        for name in &rule.webhooks {
            if !webhooks.incoming.contains_key(name) {
                problems.push((
                    format!("rules[{i}].webhooks"),
                    format!(
                        "rule {:?}: no [apps.webhooks.incoming.{name}] in the config",
                        rule.name
                    ),
                ));
            }
        }
    }
    problems
}

impl WebhookTargets {
    pub fn new(webhooks: &WebhooksConfig) -> Self {
        Self {
            hooks: webhooks.incoming.clone(),
        }
    }

    /// The webhooks, for the app's declaration (the engine keeps their URLs).
    pub fn declared(&self) -> Vec<NamedWebhook> {
        webhooks::declared(&self.hooks)
    }

    /// The webhooks the rules `alert` matches name, in order, each once.
    pub fn for_alert(
        &self,
        config: &AlertsConfig,
        compiled: &CompiledRules,
        alert: &Alert,
    ) -> Vec<String> {
        if self.hooks.is_empty() {
            return Vec::new();
        }
        let mut names: Vec<String> = Vec::new();
        for i in config::matched_rules(config, compiled, alert) {
            for name in &config.rules[i].webhooks {
                if self.hooks.contains_key(name) && !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    /// Whether `alert` is copied: `result` (the intake's answer for it) is a first firing or a
    /// resolution; `webhooks_only` when the alert's rules name no channel.
    pub fn is_copied(alert: &Alert, result: &Value, webhooks_only: bool) -> bool {
        // A muted (silenced, inhibited) alert was stored without its messages: its resolution
        // is not copied either. Its messages are the channels it is in; a rule with webhooks
        // only has none to go by.
        let in_channels = result["channels"].as_array().is_some_and(|c| !c.is_empty());
        match result["result"].as_str() {
            Some("posted") => true,
            Some("updated") => alert.status == Status::Resolved && (in_channels || webhooks_only),
            _ => false,
        }
    }

    /// Posts a request's copies (`(webhook names, alert)`, those [`Self::is_copied`]): each
    /// webhook's as a message each, or — when its line would hold more than `backlog` calls —
    /// folded into lists.
    pub async fn send_all(
        &self,
        ctx: &mut Ctx<'_>,
        templates: &Templates,
        copies: &[(Vec<String>, Alert)],
        backlog: i64,
    ) -> Result<(), AppError> {
        let mut by_hook: BTreeMap<&str, Vec<&Alert>> = BTreeMap::new();
        for (names, alert) in copies {
            for name in names {
                by_hook.entry(name.as_str()).or_default().push(alert);
            }
        }
        for (name, alerts) in by_hook {
            let Some(hook) = self.hooks.get(name) else {
                continue;
            };
            let waiting = ctx.queued(&webhook_ordering_key(name)).await?;
            if waiting + alerts.len() as i64 <= backlog {
                for alert in alerts {
                    self.send(ctx, templates, name, hook, alert)?;
                }
                continue;
            }
            let mut lists: Vec<Vec<String>> = vec![Vec::new()];
            let mut size = 0;
            for alert in &alerts {
                let (emoji, what) = if alert.status == Status::Resolved {
                    (":white_check_mark:", "resolved ")
                } else {
                    (alert.severity.emoji(), "")
                };
                let line = storm::alert_line(emoji, alert, what);
                if size + line.chars().count() >= storm::BATCH_CHARS {
                    lists.push(Vec::new());
                    size = 0;
                }
                size += line.chars().count() + 1;
                lists.last_mut().expect("one at least").push(line);
            }
            for lines in &lists {
                let text = format!(
                    ":rotating_light: *{} alerts* (a storm: listed in one message)\n{}",
                    lines.len(),
                    lines.join("\n")
                );
                let mut message = serde_json::Map::new();
                message.insert("text".into(), Value::String(text));
                ctx.webhook(name, with_defaults(hook, message));
            }
            for alert in alerts {
                ctx.audit(
                    "alerts.webhook",
                    &format!("alert:{}", alert.dedup_key),
                    Outcome::Ok,
                    &format!(
                        "{} copied to webhook {name}, in a list (a storm)",
                        alert.status.as_str()
                    ),
                );
            }
        }
        Ok(())
    }

    /// One alert's copy to one webhook: its message without the interactive buttons.
    fn send(
        &self,
        ctx: &mut Ctx<'_>,
        templates: &Templates,
        name: &str,
        hook: &IncomingWebhook,
        alert: &Alert,
    ) -> Result<(), AppError> {
        let mut message = blocks::render(
            templates,
            alert,
            &MessageState {
                status: alert.status,
                occurrences: 1,
                acked_by: None,
                resolved_by: None,
                at_ms: alert.started_at_ms.unwrap_or(ctx.now_ms()),
                mentions: String::new(),
            },
        )
        .map_err(|e| AppError::Internal(e.to_string()))?;
        if let Some(list) = message["blocks"].as_array_mut() {
            for block in list.iter_mut() {
                if block["type"] != "actions" {
                    continue;
                }
                if let Some(elements) = block.get_mut("elements").and_then(Value::as_array_mut) {
                    elements.retain(|e| e.get("url").is_some());
                }
            }
            list.retain(|b| {
                b["type"] != "actions" || b["elements"].as_array().is_some_and(|e| !e.is_empty())
            });
        }
        let Value::Object(message) = message else {
            return Ok(());
        };
        ctx.webhook(name, with_defaults(hook, message));
        ctx.audit(
            "alerts.webhook",
            &format!("alert:{}", alert.dedup_key),
            Outcome::Ok,
            &format!("{} copied to webhook {name}", alert.status.as_str()),
        );
        Ok(())
    }
}
