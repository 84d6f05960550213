//! The alert message's hooks for **Create incident** and **Run playbook**: buttons that appear
//! only when something handles them, so a message never offers a button that does nothing.
//!
//! Two ways to fill a hook:
//! - **An app claims it** ([`Claim`]): the incidents or automation app, when enabled, hands
//!   [`crate::builtin`] a claim naming an `action_id` under its own `action_prefixes`. The
//!   button then carries that `action_id` and the alert's dedup key as its `value`, so the
//!   engine routes the click to the claiming app (permission name `<app>.<verb>` as for any
//!   of its actions), which reads the alert with [`alert_for_click`]. The alerts app needs no
//!   change for it.
//! - **The config links it** (`[apps.alerts.hooks.create_incident] url = "…"`): a link button
//!   to another system (a ticket form, a runbook runner), its URL a minijinja template over
//!   the alert (`{{ key }}`, `{{ title | urlencode }}`, `{{ labels.team }}`). The operator's
//!   link replaces an app's claim of the same hook.
//!
//! The buttons show while the alert is not resolved, between Acknowledge and Resolve.

use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_engine::{AppError, Ctx};

use super::intake::Alert;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    CreateIncident,
    RunPlaybook,
}

impl Hook {
    pub const ALL: [Hook; 2] = [Hook::CreateIncident, Hook::RunPlaybook];

    /// The config key (`[apps.alerts.hooks.<name>]`).
    pub fn name(self) -> &'static str {
        match self {
            Self::CreateIncident => "create_incident",
            Self::RunPlaybook => "run_playbook",
        }
    }

    pub fn default_label(self) -> &'static str {
        match self {
            Self::CreateIncident => "Create incident",
            Self::RunPlaybook => "Run playbook",
        }
    }
}

/// An app's claim of a hook: clicks on the button go to `action_id` (one of the claiming
/// app's `action_prefixes`), with the alert's dedup key as the action's `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub hook: Hook,
    pub action_id: String,
    /// The button's text; the hook's default when `None`.
    pub label: Option<String>,
}

/// A hook filled from config: a link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkHook {
    /// A minijinja template giving an `http(s)://` URL.
    pub url: String,
    #[serde(default)]
    pub label: Option<String>,
}

/// `[apps.alerts.hooks]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    pub create_incident: Option<LinkHook>,
    pub run_playbook: Option<LinkHook>,
}

impl HooksConfig {
    pub fn link(&self, hook: Hook) -> Option<&LinkHook> {
        match hook {
            Hook::CreateIncident => self.create_incident.as_ref(),
            Hook::RunPlaybook => self.run_playbook.as_ref(),
        }
    }

    /// `(key, problem)` for check-config: templates that do not parse, labels too long.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for hook in Hook::ALL {
            let Some(link) = self.link(hook) else {
                continue;
            };
            let key = format!("hooks.{}", hook.name());
            if let Err(e) = minijinja::Environment::new().template_from_str(&link.url) {
                problems.push((format!("{key}.url"), format!("the URL template: {e}")));
            } else if !(link.url.starts_with("http://")
                || link.url.starts_with("https://")
                || link.url.starts_with("{{"))
            {
                problems.push((
                    format!("{key}.url"),
                    "must be an http:// or https:// URL (a template)".into(),
                ));
            }
            if link.label.as_ref().is_some_and(|l| l.chars().count() > 75) {
                problems.push((
                    format!("{key}.label"),
                    "at most 75 characters (Slack's limit for a button)".into(),
                ));
            }
        }
        problems
    }
}

/// What fills each hook, decided once per config: the config's link, else an app's claim.
#[derive(Debug, Clone, Default)]
pub struct HookButtons {
    buttons: Vec<(Hook, String, Filled)>,
}

#[derive(Debug, Clone)]
enum Filled {
    Action(String),
    /// The name of the URL's template in the message's environment.
    Link(String),
}

impl HookButtons {
    pub fn new(config: &HooksConfig, claims: &[Claim]) -> Self {
        let mut buttons = Vec::new();
        for hook in Hook::ALL {
            if let Some(link) = config.link(hook) {
                let label = link.label.clone().unwrap_or(hook.default_label().into());
                buttons.push((hook, label, Filled::Link(template_name(hook))));
            } else if let Some(claim) = claims.iter().find(|c| c.hook == hook) {
                let label = claim.label.clone().unwrap_or(hook.default_label().into());
                buttons.push((hook, label, Filled::Action(claim.action_id.clone())));
            }
        }
        Self { buttons }
    }

    pub fn is_empty(&self) -> bool {
        self.buttons.is_empty()
    }

    /// The hooks' buttons for `alert`, as the message template's `buttons` entries. A link
    /// whose template fails or gives no http(s) URL is left out (a button that goes nowhere
    /// would be worse than none).
    pub fn render(&self, env: &minijinja::Environment<'static>, alert: &Alert) -> Vec<Value> {
        self.buttons
            .iter()
            .filter_map(|(_, label, filled)| match filled {
                Filled::Action(action_id) => Some(json!({"text": label, "action_id": action_id})),
                Filled::Link(name) => {
                    let url = env
                        .get_template(name)
                        .and_then(|t| {
                            t.render(minijinja::context! {
                                key => alert.dedup_key,
                                title => alert.title,
                                severity => alert.severity.as_str(),
                                status => alert.status.as_str(),
                                source => alert.source,
                                labels => alert.labels,
                            })
                        })
                        .ok()?;
                    let url = url.trim().to_string();
                    (url.starts_with("http://") || url.starts_with("https://"))
                        .then(|| json!({"text": label, "url": url}))
                }
            })
            .collect()
    }
}

/// The name of a hook's URL template in the message's minijinja environment.
pub fn template_name(hook: Hook) -> String {
    format!("hook:{}", hook.name())
}

/// For a claiming app's click handler: the alert whose hook button was clicked (its dedup key
/// is the action's `value`), as last received. `None` when it is unknown (pruned, say).
pub async fn alert_for_click(ctx: &mut Ctx<'_>, value: &str) -> Result<Option<Alert>, AppError> {
    let row = super::state::load(ctx.db().await?, value, false).await?;
    Ok(row.map(|r| r.alert))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_link_replaces_an_apps_claim_and_a_hook_nobody_fills_has_no_button() {
        let claims = [Claim {
            hook: Hook::CreateIncident,
            action_id: "incidents_from_alert".into(),
            label: None,
        }];
        let claimed = HookButtons::new(&HooksConfig::default(), &claims);
        assert_eq!(claimed.buttons.len(), 1);
        assert!(HookButtons::new(&HooksConfig::default(), &[]).is_empty());
        let config = HooksConfig {
            create_incident: Some(LinkHook {
                url: "https://tickets.example/new?t={{ title | urlencode }}".into(),
                label: None,
            }),
            run_playbook: None,
        };
        let linked = HookButtons::new(&config, &claims);
        assert!(matches!(linked.buttons[0].2, Filled::Link(_)));
        assert!(
            HooksConfig {
                run_playbook: Some(LinkHook {
                    url: "ftp://x".into(),
                    label: None
                }),
                create_incident: Some(LinkHook {
                    url: "https://x/{{ key".into(),
                    label: None
                }),
            }
            .validate()
            .len()
                == 2
        );
    }
}
