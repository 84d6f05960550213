//! Rules that send a copy of an alert to incoming webhooks (`webhooks = ["ops"]`, names of
//! `[apps.webhooks.incoming]`): for teams that see alerts through a webhook. A webhook's
//! messages cannot be edited and its buttons reach no one, so the copy is the message without
//! Acknowledge/Resolve (link buttons stay), posted when the alert first fires and again when
//! it resolves; repeats and acknowledgements are not copied.

use std::collections::BTreeMap;

use serde_json::Value;
use switchyard_engine::{AppError, Ctx, Outcome};

use super::blocks::{self, MessageState, Templates};
use super::config::{self, AlertsConfig, CompiledRules};
use super::intake::{Alert, Status};
use crate::webhooks::{IncomingWebhook, WebhooksConfig, with_defaults};

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

    /// Posts the copy when `result` (the intake's answer for `alert`) is a first firing or a
    /// resolution; `webhooks_only` when the alert's rules name no channel.
    pub fn send(
        &self,
        ctx: &mut Ctx<'_>,
        templates: &Templates,
        names: &[String],
        alert: &Alert,
        result: &Value,
        webhooks_only: bool,
    ) -> Result<(), AppError> {
        // A muted (silenced, inhibited) alert was stored without its messages: its resolution
        // is not copied either. Its messages are the channels it is in; a rule with webhooks
        // only has none to go by.
        let in_channels = result["channels"].as_array().is_some_and(|c| !c.is_empty());
        let copy = match result["result"].as_str() {
            Some("posted") => true,
            Some("updated") => alert.status == Status::Resolved && (in_channels || webhooks_only),
            _ => false,
        };
        if !copy {
            return Ok(());
        }
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
        for name in names {
            let Some(hook) = self.hooks.get(name) else {
                continue;
            };
            ctx.webhook(&hook.webhook_url, with_defaults(hook, message.clone()));
            ctx.audit(
                "alerts.webhook",
                &format!("alert:{}", alert.dedup_key),
                Outcome::Ok,
                &format!("{} copied to webhook {name}", alert.status.as_str()),
            );
        }
        Ok(())
    }
}
