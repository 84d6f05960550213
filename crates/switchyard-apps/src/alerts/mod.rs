//! Alerts (the product of seed 004, first part): monitoring systems post alerts, Switchyard
//! routes each to channels and keeps one message per alert and channel up to date.
//!
//! - Intake: `POST /api/v1/alerts` (our JSON: one alert, an array, or `{"alerts": [...]}`) and
//!   `POST /api/v1/alertmanager` (Alertmanager's webhook, version 4), with an API token granting
//!   `alerts:write`. Answered synchronously (`App::serve`): a bad payload gets 400 naming the
//!   field and nothing of the request is stored; otherwise every alert's state, messages and
//!   audit records commit together before the 200.
//! - Routing: `[apps.alerts]` rules in order (CEL conditions, `continue`), then the severity
//!   map, then the default channel.
//! - One alert, one message per channel: the first firing posts (ref `alerts:<key>:<channel>`);
//!   a repeat, an acknowledgement or a resolution edits every message in place and adds a
//!   line to its thread. Buttons `alerts_ack` / `alerts_resolve` are `alerts.ack` /
//!   `alerts.resolve` for `[access]`, and so are a storm summary's `alerts_ack_all` /
//!   `alerts_resolve_all` (every alert folded into it, `storm_buttons`).
//! - State: the `alerts_alerts` table (`App::migrations`).
//! - Silences and inhibition ([`silences`], [`inhibit`]): a muted alert is stored, not posted
//!   ([`mute`]), and posted once nothing mutes it (the app's tick sees silences end).

pub mod blocks;
pub mod config;
pub mod dry_run;
pub mod grafana;
pub mod groups;
pub mod hooks;
pub mod inhibit;
pub mod intake;
pub mod matchers;
pub mod mute;
pub mod silences;
pub mod state;
pub mod storm;
mod storm_buttons;
mod to_webhooks;
mod unit;

use async_trait::async_trait;
use serde_json::{Value, json};
use switchyard_engine::{
    App, AppError, AppMigration, Ctx, Declaration, HttpReply, HttpRequest, Input, Outcome,
};

pub use config::AlertsConfig;
use intake::{Alert, BadField, Status};
use state::AlertRow;
pub use to_webhooks::unknown_names as unknown_webhooks;
use unit::Unit;

pub const ACK_ACTION: &str = "alerts_ack";
pub const RESOLVE_ACTION: &str = "alerts_resolve";
/// A storm summary's buttons: every alert folded into it (`storm_buttons`).
pub const ACK_ALL_ACTION: &str = "alerts_ack_all";
pub const RESOLVE_ALL_ACTION: &str = "alerts_resolve_all";
const ALERTS_PATH: &str = "/api/v1/alerts";
const ALERTMANAGER_PATH: &str = "/api/v1/alertmanager";
const GRAFANA_PATH: &str = "/api/v1/grafana";
const SCOPE: &str = "alerts:write";

/// The app's tables, for the engine and the CLI.
pub fn migrations() -> Vec<AppMigration> {
    let mut all = state::MIGRATIONS.to_vec();
    all.extend(silences::MIGRATIONS);
    all.extend(inhibit::MIGRATIONS);
    all.extend(mute::MIGRATIONS);
    all.extend(groups::MIGRATIONS);
    all
}

/// The message ref of an alert's message in a channel.
fn ref_key(key: &str, channel: &str) -> String {
    format!("alerts:{key}:{channel}")
}

/// `2026-11-26 04:46` (UTC): the fallback of the message's `<!date^…>` token.
pub fn intake_time_words(ms: i64) -> String {
    switchyard_engine::admin::format_utc(ms, "%Y-%m-%d %H:%M")
}

pub struct Alerts {
    config: AlertsConfig,
    rules: config::CompiledRules,
    templates: blocks::Templates,
    groupings: groups::Groupings,
    webhooks: to_webhooks::WebhookTargets,
    inhibit: inhibit::Rules,
}

/// What became of one alert of a request.
enum Received {
    Posted,
    Updated,
    /// Nothing new: already in that state, or the same firing episode sent again
    /// (Alertmanager re-sends a group's firing alerts whenever the group changes).
    Unchanged,
    /// The resolution of an alert never seen.
    Ignored,
}

impl Received {
    fn as_str(&self) -> &'static str {
        match self {
            Self::Posted => "posted",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Ignored => "ignored",
        }
    }
}

fn render_err(e: blocks::RenderError) -> AppError {
    AppError::Internal(e.to_string())
}

impl Alerts {
    /// Fails only on a custom template that does not parse (check-config reports it first).
    pub fn new(config: AlertsConfig) -> Result<Self, blocks::RenderError> {
        Self::with_hook_claims(config, &[])
    }

    /// With the Create incident / Run playbook hooks that other apps claim (`hooks`).
    pub fn with_hook_claims(
        config: AlertsConfig,
        claims: &[hooks::Claim],
    ) -> Result<Self, blocks::RenderError> {
        Ok(Self {
            rules: config::CompiledRules::new(&config),
            templates: blocks::Templates::with_hooks(
                config.template.as_deref(),
                &config.hooks,
                claims,
            )?,
            groupings: groups::Groupings::new(&config),
            webhooks: Default::default(),
            inhibit: inhibit::Rules::new(&config.inhibit_rules),
            config,
        })
    }

    /// With the incoming webhooks its rules may name (`[apps.webhooks.incoming]`).
    pub fn with_webhooks(mut self, webhooks: &crate::webhooks::WebhooksConfig) -> Self {
        self.webhooks = to_webhooks::WebhookTargets::new(webhooks);
        self
    }

    fn message(&self, row: &AlertRow, mentions: &str) -> Result<Value, blocks::RenderError> {
        blocks::render(
            &self.templates,
            &row.alert,
            &blocks::MessageState {
                status: row.status,
                occurrences: row.occurrences,
                acked_by: row.acked_by.as_deref(),
                resolved_by: row.resolved_by.as_deref(),
                at_ms: row.first_ms,
                mentions: mentions.to_string(),
            },
        )
    }

    /// Edits every message of the alert and adds `line` to each one's thread (or to its
    /// storm's thread, when folded; see `groups::edit_all`).
    async fn edit_all(
        &self,
        ctx: &mut Ctx<'_>,
        unit: &mut Unit,
        row: &AlertRow,
        line: &str,
        change: groups::Change,
        previous: Status,
    ) -> Result<(), AppError> {
        if row.channels.is_empty() {
            return Ok(());
        }
        groups::edit_all(self, ctx, unit, row, line, change, previous, None).await
    }

    /// A request's alerts, batch-shaped: their rows, the members of those already known and
    /// every group they go to are read first, a statement each (routing, the CPU part, before
    /// the transaction begins); then each alert in order, as [`Alerts::receive`] says, in
    /// memory; then the unit's changes are written, a statement per table. The answer lists
    /// each alert's outcome, in order.
    async fn receive_all(&self, ctx: &mut Ctx<'_>, alerts: Vec<Alert>) -> Result<Value, AppError> {
        let routed: Vec<Vec<groups::Target>> = alerts
            .iter()
            .map(|a| {
                if a.status == Status::Resolved {
                    Vec::new()
                } else {
                    groups::targets(self, a)
                }
            })
            .collect();
        let copies: Vec<Vec<String>> = alerts
            .iter()
            .map(|a| self.webhooks.for_alert(&self.config, &self.rules, a))
            .collect();
        // On PostgreSQL, their groups first, in one order (`groups::lock_for`).
        groups::lock_for(self, ctx, &alerts.iter().collect::<Vec<_>>()).await?;
        let mut unit = Unit::new(ctx);
        let keys: Vec<&str> = alerts.iter().map(|a| a.dedup_key.as_str()).collect();
        unit.preload_alerts(ctx, &keys).await?;
        let known: Vec<&str> = keys.iter().copied().filter(|k| unit.known(k)).collect();
        unit.preload_members(ctx, &known).await?;
        let mut groups: Vec<groups::GroupId> =
            known.iter().flat_map(|k| unit.member_groups(k)).collect();
        for (alert, targets) in alerts.iter().zip(&routed) {
            if !unit.known(&alert.dedup_key) {
                groups.extend(
                    targets
                        .iter()
                        .map(|t| (t.group_key.clone(), t.channel.clone())),
                );
            }
        }
        unit.preload_groups(ctx, &groups).await?;
        // The inhibiting sources of every new alert, read together (not a query per alert).
        let new: Vec<&Alert> = alerts
            .iter()
            .filter(|a| a.status != Status::Resolved && !unit.known(&a.dedup_key))
            .collect();
        unit.preload_inhibitors(ctx, &self.inhibit, &new).await?;
        let mut results = Vec::with_capacity(alerts.len());
        let mut copied = Vec::new();
        for ((alert, targets), names) in alerts.into_iter().zip(routed).zip(copies) {
            let copy = (!names.is_empty()).then(|| alert.clone());
            let result = self.receive(ctx, &mut unit, alert, targets).await?;
            if let Some(alert) = copy {
                let webhooks_only = config::route(&self.config, &self.rules, &alert).is_empty();
                if to_webhooks::WebhookTargets::is_copied(&alert, &result, webhooks_only) {
                    copied.push((names, alert));
                }
            }
            results.push(result);
        }
        unit.write(ctx).await?;
        // After the alerts: a webhook's copies of a storm go as one list (`to_webhooks`).
        self.webhooks
            .send_all(
                ctx,
                &self.templates,
                &copied,
                self.groupings.section_storm_backlog(),
            )
            .await?;
        Ok(json!({"ok": true, "alerts": results}))
    }

    /// One alert from the API: stored, and posted or its messages edited. `targets`: where it
    /// goes if it is new (routed by the caller).
    async fn receive(
        &self,
        ctx: &mut Ctx<'_>,
        unit: &mut Unit,
        alert: Alert,
        targets: Vec<groups::Target>,
    ) -> Result<Value, AppError> {
        let key = alert.dedup_key.clone();
        let object = format!("alert:{key}");
        let existing = unit.alert(ctx, &key).await?;
        let (outcome, channels) = match existing {
            None if alert.status == Status::Resolved => (Received::Ignored, Vec::new()),
            None => {
                let now = ctx.now_ms();
                let row = AlertRow {
                    status: alert.status,
                    channels: targets
                        .iter()
                        .map(|t| (t.channel.clone(), t.mentions.clone()))
                        .collect(),
                    occurrences: 1,
                    first_ms: alert.started_at_ms.unwrap_or(now),
                    acked_by: None,
                    resolved_by: None,
                    alert,
                };
                if let Some(mute) = self.mute_for(ctx, unit, &row.alert).await? {
                    return self.hold(ctx, unit, row, mute).await;
                }
                groups::deliver(self, ctx, unit, &row, &targets).await?;
                unit.save_alert(row.clone());
                self.after_save(ctx, unit, &row).await?;
                let channels: Vec<String> = row.channels.iter().map(|(c, _)| c.clone()).collect();
                ctx.audit(
                    "alerts.fire",
                    &object,
                    Outcome::Ok,
                    &format!(
                        "{} {:?} to {}",
                        row.alert.severity.as_str(),
                        row.alert.title,
                        if channels.is_empty() {
                            "no channel (no rule, severity entry or default matched)".into()
                        } else {
                            channels.join(", ")
                        }
                    ),
                );
                (Received::Posted, channels)
            }
            Some(mut row) => {
                let previous = row.status;
                let same_episode =
                    alert.started_at_ms.is_some() && alert.started_at_ms == row.alert.started_at_ms;
                let still_firing = previous != Status::Resolved
                    && alert.status == Status::Firing
                    && same_episode
                    && groups::repeat_due(self, ctx, unit, &row).await?;
                let line = match (row.status, alert.status) {
                    (Status::Resolved, Status::Resolved) => None,
                    (Status::Resolved, Status::Firing) => {
                        row.status = Status::Firing;
                        row.occurrences += 1;
                        row.acked_by = None;
                        row.resolved_by = None;
                        Some((":fire: Firing again.".to_string(), "alerts.reopen"))
                    }
                    // The same episode sent again: a reminder once per repeat_interval.
                    (_, Status::Firing) if same_episode && still_firing => {
                        Some((":repeat: Still firing.".to_string(), "alerts.repeat"))
                    }
                    (_, Status::Firing) if same_episode => None,
                    (_, Status::Firing) => {
                        row.occurrences += 1;
                        Some((
                            format!(":repeat: Fired again ({} times).", row.occurrences),
                            "alerts.repeat",
                        ))
                    }
                    (Status::Acknowledged, Status::Acknowledged) => None,
                    (Status::Resolved, Status::Acknowledged) => None,
                    (_, Status::Acknowledged) => {
                        row.status = Status::Acknowledged;
                        Some((
                            format!(":eyes: Acknowledged via {}.", blocks::escape(&alert.source)),
                            "alerts.ack",
                        ))
                    }
                    (_, Status::Resolved) => {
                        row.status = Status::Resolved;
                        Some((
                            format!(
                                ":white_check_mark: Resolved via {}.",
                                blocks::escape(&alert.source)
                            ),
                            "alerts.resolve",
                        ))
                    }
                };
                let channels: Vec<String> = row.channels.iter().map(|(c, _)| c.clone()).collect();
                match line {
                    None => (Received::Unchanged, channels),
                    Some((line, action)) => {
                        row.alert = Alert {
                            started_at_ms: row.alert.started_at_ms,
                            ..alert
                        };
                        let change = match action {
                            "alerts.reopen" => groups::Change::Reopen,
                            "alerts.repeat" => groups::Change::Repeat,
                            "alerts.ack" => groups::Change::Ack,
                            _ => groups::Change::Resolve,
                        };
                        self.edit_all(ctx, unit, &row, &line, change, previous)
                            .await?;
                        unit.save_alert(row.clone());
                        self.after_save(ctx, unit, &row).await?;
                        ctx.audit(
                            action,
                            &object,
                            Outcome::Ok,
                            &format!("{line} ({} message(s))", row.channels.len()),
                        );
                        (Received::Updated, channels)
                    }
                }
            }
        };
        Ok(json!({"dedup_key": key, "result": outcome.as_str(), "channels": channels}))
    }

    /// Acknowledge or Resolve, clicked in Slack.
    async fn button(
        &self,
        ctx: &mut Ctx<'_>,
        action_id: &str,
        key: &str,
        user: &str,
        channel: Option<&str>,
    ) -> Result<(), AppError> {
        let (target, verb, permission) = if action_id == ACK_ACTION {
            (Status::Acknowledged, "acknowledged", "alerts.ack")
        } else {
            (Status::Resolved, "resolved", "alerts.resolve")
        };
        groups::lock_for_keys(self, ctx, &[key.to_string()]).await?;
        let object = format!("alert:{key}");
        let mut unit = Unit::new(ctx);
        let Some(mut row) = unit.alert(ctx, key).await? else {
            ctx.audit(permission, &object, Outcome::Failed, "no such alert");
            if let Some(channel) = channel {
                ctx.ephemeral(channel, user, "I don't know that alert any more.");
            }
            return Ok(());
        };
        let already = row.status == Status::Resolved
            || (row.status == Status::Acknowledged && target == Status::Acknowledged);
        if already {
            ctx.audit(
                permission,
                &object,
                Outcome::Failed,
                &format!("already {}", row.status.as_str()),
            );
            if let Some(channel) = channel {
                ctx.ephemeral(
                    channel,
                    user,
                    &format!("That alert is already {}.", row.status.as_str()),
                );
            }
            return Ok(());
        }
        let previous = row.status;
        row.status = target;
        if target == Status::Acknowledged {
            row.acked_by = Some(user.to_string());
        } else {
            row.resolved_by = Some(user.to_string());
        }
        let emoji = if target == Status::Acknowledged {
            ":eyes:"
        } else {
            ":white_check_mark:"
        };
        let mut verb_cap = verb.to_string();
        verb_cap[..1].make_ascii_uppercase();
        let change = if target == Status::Acknowledged {
            groups::Change::Ack
        } else {
            groups::Change::Resolve
        };
        self.edit_all(
            ctx,
            &mut unit,
            &row,
            &format!("{emoji} {verb_cap} by <@{user}>."),
            change,
            previous,
        )
        .await?;
        unit.save_alert(row.clone());
        self.after_save(ctx, &mut unit, &row).await?;
        ctx.audit(
            permission,
            &object,
            Outcome::Ok,
            &format!("{verb} ({} message(s))", row.channels.len()),
        );
        unit.write(ctx).await
    }
}

fn bad_request(e: &BadField) -> HttpReply {
    HttpReply {
        status: 400,
        body: json!({"ok": false, "error": "invalid_payload", "field": e.field, "detail": e.reason}),
    }
}

#[async_trait]
impl App for Alerts {
    fn declaration(&self) -> Declaration {
        let mut channels: Vec<String> = self
            .config
            .rules
            .iter()
            .flat_map(|r| r.channels.iter().cloned())
            .chain(self.config.severity_channels.values().cloned())
            .chain(self.config.default_channel.iter().cloned())
            .collect();
        channels.sort();
        channels.dedup();
        Declaration {
            name: "alerts",
            action_prefixes: vec!["alerts_"],
            mentions: silences::mention_commands(),
            sync_routes: vec![
                ALERTS_PATH,
                ALERTMANAGER_PATH,
                GRAFANA_PATH,
                silences::SILENCES_PATH,
            ],
            // Silences that end let go of their alerts, and held groups are flushed when due
            // (`groups::flush_due`), on the next tick.
            tick_ms: Some(250),
            scopes: vec!["chat:write"],
            channels,
            webhooks: self.webhooks.declared(),
            ..Declaration::default()
        }
    }

    fn migrations(&self) -> Vec<AppMigration> {
        migrations()
    }

    /// Ending a silence is the same permission as making one; a storm's Acknowledge all and
    /// Resolve all are those of the single alert's buttons.
    fn permission(&self, input: &Input, default: Option<String>) -> Option<String> {
        match input {
            Input::Mention { command, .. } if command == "unsilence" => {
                Some("alerts.silence".into())
            }
            Input::Action { action_id, .. } if action_id == ACK_ALL_ACTION => {
                Some("alerts.ack".into())
            }
            Input::Action { action_id, .. } if action_id == RESOLVE_ALL_ACTION => {
                Some("alerts.resolve".into())
            }
            _ => default,
        }
    }

    async fn tick(&self, ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        self.tick_silences(ctx).await?;
        let mut unit = Unit::new(ctx);
        groups::flush_due(self, ctx, &mut unit).await?;
        unit.write(ctx).await
    }

    async fn metrics(&self, store: &switchyard_engine::Store) -> String {
        mute::metrics(store, switchyard_engine::now_ms()).await
    }

    async fn handle(&self, ctx: &mut Ctx<'_>, input: &Input) -> Result<(), AppError> {
        match input {
            Input::Mention {
                command,
                args,
                message,
            } => return self.silence_mention(ctx, command, args, message).await,
            Input::Action {
                action_id,
                value,
                user,
                channel,
                ..
            } if action_id == silences::SILENCE_ACTION => {
                let value = value.as_deref().unwrap_or("");
                return self
                    .silence_button(ctx, value, user, channel.as_deref())
                    .await;
            }
            _ => {}
        }
        if let Input::Action {
            action_id,
            value,
            user,
            channel,
            ..
        } = input
            && (action_id == ACK_ALL_ACTION || action_id == RESOLVE_ALL_ACTION)
        {
            let fold_ref = value.as_deref().unwrap_or("");
            return self
                .storm_button(ctx, action_id, fold_ref, user, channel.as_deref())
                .await;
        }
        if let Input::Action {
            action_id,
            value,
            user,
            channel,
            ..
        } = input
            && (action_id == ACK_ACTION || action_id == RESOLVE_ACTION)
        {
            let key = value.as_deref().unwrap_or("");
            return self
                .button(ctx, action_id, key, user, channel.as_deref())
                .await;
        }
        Ok(())
    }

    async fn serve(&self, ctx: &mut Ctx<'_>, request: &HttpRequest) -> Result<HttpReply, AppError> {
        let path = request.path.trim_end_matches('/');
        if path == silences::SILENCES_PATH
            || path.starts_with(&format!("{}/", silences::SILENCES_PATH))
        {
            return self.serve_silences(ctx, request, path).await;
        }
        if ![ALERTS_PATH, ALERTMANAGER_PATH, GRAFANA_PATH].contains(&path) {
            return Ok(HttpReply::error(404, "not_found"));
        }
        if request.method != "POST" {
            return Ok(HttpReply::error(405, "method_not_allowed"));
        }
        if let Some(refused) = crate::api_token::check(ctx, request, SCOPE).await? {
            return Ok(refused);
        }
        let parsed = match path {
            ALERTS_PATH => intake::parse_alerts_scaled(&request.body, &|label| {
                self.config.severity_listed(label)
            }),
            GRAFANA_PATH => {
                grafana::parse_grafana(&request.body, &|label| self.config.severity_of_label(label))
            }
            _ => {
                intake::parse_alertmanager(&request.body).map(|alerts| self.config.rescale(alerts))
            }
        };
        let alerts = match parsed {
            Ok(alerts) => alerts,
            Err(e) => return Ok(bad_request(&e)),
        };
        Ok(HttpReply::ok(self.receive_all(ctx, alerts).await?))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_words() {
        assert_eq!(
            super::intake_time_words(1_795_668_372_000),
            "2026-11-26 04:46"
        );
        assert_eq!(super::intake_time_words(0), "1970-01-01 00:00");
    }
}
