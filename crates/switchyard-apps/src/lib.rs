//! Switchyard's built-in apps. Each is one module: its declaration, its config section, its
//! handlers. The engine wires them; [`builtin`] lists the ones a config enables.

pub mod alerts;
mod api_token;
pub mod machines;
pub mod ping;
pub mod webhooks;

use std::sync::Arc;

use switchyard_engine::{App, AppSection, Config, ConfigError};

/// Every built-in app's `[apps.<name>]` section, for `Config::check`: a name not listed here is
/// an error. An app added to [`builtin`] is added here too.
pub fn config_sections() -> Vec<AppSection> {
    vec![
        AppSection::of::<ping::PingConfig>("ping"),
        AppSection::validated::<machines::MachinesConfig>("machines"),
        AppSection::validated::<alerts::AlertsConfig>("alerts"),
        AppSection::validated::<webhooks::WebhooksConfig>("webhooks"),
    ]
}

/// The Create incident / Run playbook hooks that enabled apps claim (`alerts::hooks`): an
/// incidents or automation app, when enabled, pushes its [`alerts::hooks::Claim`] here, and
/// the alert message shows its button. None does yet.
pub fn alert_hook_claims(_config: &Config) -> Result<Vec<alerts::hooks::Claim>, ConfigError> {
    Ok(Vec::new())
}

/// The apps enabled in `config`, ready for the engine.
pub fn builtin(config: &Config) -> Result<Vec<Arc<dyn App>>, ConfigError> {
    let mut apps: Vec<Arc<dyn App>> = Vec::new();
    let ping: ping::PingConfig = config.app_section("ping")?;
    if ping.enabled {
        apps.push(Arc::new(ping::Ping::new(ping)));
    }
    let machines: machines::MachinesConfig = config.app_section_validated("machines")?;
    if machines.enabled {
        apps.push(Arc::new(machines::Machines::new(machines)));
    }
    let webhooks: webhooks::WebhooksConfig = config.app_section_validated("webhooks")?;
    let alerts: alerts::AlertsConfig = config.app_section_validated("alerts")?;
    if alerts.enabled {
        if let Some((key, reason)) = alerts::unknown_webhooks(&alerts, &webhooks)
            .into_iter()
            .next()
        {
            return Err(ConfigError {
                file: config.source.clone(),
                key: format!("apps.alerts.{key}"),
                reason,
            });
        }
        let claims = alert_hook_claims(config)?;
        let app = alerts::Alerts::with_hook_claims(alerts, &claims).map_err(|e| ConfigError {
            file: config.source.clone(),
            key: "apps.alerts.template".into(),
            reason: e.to_string(),
        })?;
        apps.push(Arc::new(app.with_webhooks(&webhooks)));
    }
    if webhooks.enabled {
        apps.push(Arc::new(webhooks::Webhooks::new(webhooks)));
    }
    Ok(apps)
}
