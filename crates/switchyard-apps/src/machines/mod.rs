//! Makerspace machine control (the product of seed 000): devices with fob readers switch
//! machines' power relays; Slack is where people see and change the machines' state.
//!
//! - Mentions: `status` (alias `list`) anywhere the bot is; `oops`, `lock`, `clear <machine>`
//!   in the control channel only (elsewhere ignored or refused, as `outside_control_channel`
//!   says — audited as `refused` either way). Errors get a reply; success is confirmed by the
//!   notices.
//! - `/oops-clear [machine]` (the slug is configurable): clears, or opens a picker.
//! - Devices: `POST /api/machine/update`, `POST|DELETE /api/machine/oops/<name>` and
//!   `/api/machine/locked_out/<name>`, answered synchronously (`App::serve`): the state
//!   change, its notices and its audit records commit in one transaction before the reply.
//! - State: the `machines_state` table (`App::migrations`), machine state in `/metrics`.

pub mod blocks;
pub mod catalog;
pub mod config;
pub mod device;
pub mod state;

use std::sync::OnceLock;

use async_trait::async_trait;
use serde_json::json;
use switchyard_engine::app::SlashCommand;
use switchyard_engine::{
    ActorKind, App, AppError, AppMigration, Ctx, Declaration, HttpReply, HttpRequest, Input,
    MentionCommand, Outcome, Store,
};

use catalog::Catalog;
pub use config::MachinesConfig;
use config::{MachineConfig, OutsideControl};
use state::{Change, MachineState, Refusal};

/// The app's tables (`machines_state`, `machines_catalog`), for the engine and the CLI.
pub fn migrations() -> Vec<AppMigration> {
    let mut all = state::MIGRATIONS.to_vec();
    all.push(catalog::MIGRATION);
    all
}

/// The `view` callback of the `/oops-clear` picker.
const CLEAR_VIEW: &str = "machines_clear";

/// When this process started: the server uptime `status` shows.
fn started_ms() -> i64 {
    static STARTED: OnceLock<i64> = OnceLock::new();
    *STARTED.get_or_init(switchyard_engine::now_ms)
}

/// Who or what made a change, for the notices.
enum Source {
    /// A person in Slack (mention, slash command or the picker).
    Slack(String),
    /// Another system over HTTP: an API token's name, or a device token.
    Api(String),
    /// The device's physical oops button.
    Button,
}

impl Source {
    fn words(&self) -> String {
        match self {
            Self::Slack(user) => format!("by <@{user}> via Slack"),
            Self::Api(who) => format!("via the HTTP API ({})", blocks::escape(who)),
            Self::Button => "with the device's oops button".into(),
        }
    }
}

pub struct Machines {
    config: MachinesConfig,
}

impl Machines {
    pub fn new(config: MachinesConfig) -> Self {
        started_ms();
        let open: Vec<&str> = config
            .machines
            .iter()
            .filter(|m| m.token.is_none() && config.device_token.is_none())
            .map(|m| m.name.as_str())
            .collect();
        if !open.is_empty() {
            tracing::warn!(
                machines = ?open,
                "the device API is open for these machines (no token and no device_token)"
            );
        }
        Self { config }
    }

    /// Applies a change and, when it was made, audits it and posts both notices. All of it
    /// goes into the caller's transaction.
    async fn change(
        &self,
        ctx: &mut Ctx<'_>,
        machine: &MachineConfig,
        change: Change,
        source: &Source,
    ) -> Result<Result<(), Refusal>, AppError> {
        let now = ctx.now_ms();
        let lock = ctx.store().backend() == switchyard_engine::Backend::Postgres;
        let conn = ctx.db().await?;
        let mut current = state::load(conn, &machine.name, lock).await?;
        let action = format!("machines.{}", change.verb());
        let object = format!("machine:{}", machine.name);
        if let Err(refusal) = state::apply(&mut current, change, now) {
            ctx.audit(&action, &object, Outcome::Failed, refusal.code());
            return Ok(Err(refusal));
        }
        state::save(ctx.db().await?, &machine.name, &current).await?;
        ctx.audit(
            &action,
            &object,
            Outcome::Ok,
            &blocks::state_words(&current),
        );
        let name = blocks::escape(&machine.name);
        let who = source.words();
        let (control, public) = match change {
            Change::Oops => (
                format!(":rotating_light: *{name}* was oopsed {who}."),
                format!(
                    ":rotating_light: *{name}* is out of service (oops). It will be back once \
                     someone has checked it."
                ),
            ),
            Change::Lock => (
                format!(":lock: *{name}* was locked out {who}."),
                format!(":lock: *{name}* is locked out for maintenance."),
            ),
            Change::Clear | Change::Unoops | Change::Unlock => {
                let what = match change {
                    Change::Unoops => "oops was cleared",
                    Change::Unlock => "lock-out was cleared",
                    _ => "oops and lock-out were cleared",
                };
                let now_state = if current.oopsed || current.locked_out {
                    format!(" It is still {}.", blocks::state_words(&current))
                } else {
                    " It is back in service.".into()
                };
                (
                    format!(":white_check_mark: *{name}*'s {what} {who}.{now_state}"),
                    if current.oopsed || current.locked_out {
                        format!(":hourglass: *{name}*: {what}, but it is still out of service.")
                    } else {
                        format!(":white_check_mark: *{name}* is back in service.")
                    },
                )
            }
        };
        ctx.post(
            &self.config.control_channel,
            json!({ "text": control }),
            None,
            None,
        );
        ctx.post(
            &self.config.oops_channel,
            json!({ "text": public }),
            None,
            None,
        );
        Ok(Ok(()))
    }

    /// Every configured machine with its state, in the config's order.
    async fn all_states(
        &self,
        store: &Store,
        cat: &Catalog,
    ) -> Result<Vec<(String, MachineState)>, AppError> {
        let mut saved = state::load_all(store.reader()).await?;
        Ok(cat
            .machines
            .iter()
            .map(|m| (m.name.clone(), saved.remove(&m.name).unwrap_or_default()))
            .collect())
    }

    fn summary(&self, now_ms: i64, cat: &Catalog) -> blocks::Summary {
        blocks::Summary {
            server_uptime_s: (now_ms - started_ms()).max(0) / 1000,
            users: cat.users.len(),
            fobs: cat.users.iter().map(|u| u.fob_codes.len()).sum(),
        }
    }

    fn unknown(&self, words: &str) -> String {
        format!(
            "I don't know a machine called *{}*. Mention me with `status` to see them all.",
            blocks::escape(words)
        )
    }

    async fn mention(
        &self,
        ctx: &mut Ctx<'_>,
        cat: &Catalog,
        command: &str,
        args: &[String],
        message: &switchyard_engine::MessageEvent,
    ) -> Result<(), AppError> {
        if command == "status" || command == "list" {
            let machines = self.all_states(ctx.store(), cat).await?;
            let now = ctx.now_ms();
            for status in blocks::status_messages(&machines, &self.summary(now, cat), now) {
                ctx.post(&message.channel, status, Some(message.thread()), None);
            }
            return Ok(());
        }
        let change = match command {
            "oops" => Change::Oops,
            "lock" => Change::Lock,
            _ => Change::Clear,
        };
        // Not the engine's `[access]` gate, which would not keep this behaviour: a gate exists
        // only when `[access]` is configured, and it refuses by permission name (":no_entry:
        // `machines.oops` works only in …") with its own audit detail; this check holds
        // without `[access]` and answers in the command's words. A configured gate on
        // `machines.*` still runs first, in the dispatcher.
        if message.channel != self.config.control_channel {
            let action = format!("machines.{}", change.verb());
            let reason = "only in the machines control channel";
            match self.config.outside_control_channel {
                OutsideControl::Ignore => {
                    tracing::info!(channel = %message.channel, command, "ignored outside the control channel");
                    ctx.audit(
                        &action,
                        &format!("channel:{}", message.channel),
                        Outcome::Refused,
                        &format!("{reason} (ignored)"),
                    );
                }
                OutsideControl::Refuse => {
                    ctx.audit(
                        &action,
                        &format!("channel:{}", message.channel),
                        Outcome::Refused,
                        reason,
                    );
                    ctx.ephemeral(
                        &message.channel,
                        &message.user,
                        &format!(
                            "`{command}` works only in <#{}>.",
                            self.config.control_channel
                        ),
                    );
                }
            }
            return Ok(());
        }
        let words = args.join(" ");
        if words.trim().is_empty() {
            ctx.reply(
                message,
                &format!("Which machine? `{command} <machine>` (see `status`)."),
            );
            return Ok(());
        }
        let Some(machine) = cat.find(&words) else {
            ctx.reply(message, &self.unknown(&words));
            return Ok(());
        };
        if let Err(refusal) = self
            .change(ctx, machine, change, &Source::Slack(message.user.clone()))
            .await?
        {
            ctx.reply(message, &refusal.text(&machine.name));
        }
        Ok(())
    }

    async fn command(
        &self,
        ctx: &mut Ctx<'_>,
        cat: &Catalog,
        text: &str,
        user: &str,
        channel: &str,
        trigger_id: &str,
    ) -> Result<(), AppError> {
        let slug = &self.config.slash_command;
        // As for mentions (see `mention`): the app's own check, not an `[access]` gate.
        if channel != self.config.control_channel {
            ctx.audit(
                "machines.clear",
                &format!("channel:{channel}"),
                Outcome::Refused,
                "only in the machines control channel",
            );
            ctx.ephemeral(
                channel,
                user,
                &format!("`{slug}` works only in <#{}>.", self.config.control_channel),
            );
            return Ok(());
        }
        if !text.trim().is_empty() {
            let Some(machine) = cat.find(text) else {
                ctx.ephemeral(channel, user, &self.unknown(text));
                return Ok(());
            };
            if let Err(refusal) = self
                .change(
                    ctx,
                    machine,
                    Change::Clear,
                    &Source::Slack(user.to_string()),
                )
                .await?
            {
                ctx.ephemeral(channel, user, &refusal.text(&machine.name));
            }
            return Ok(());
        }
        let blocked: Vec<(String, MachineState)> = self
            .all_states(ctx.store(), cat)
            .await?
            .into_iter()
            .filter(|(_, s)| s.oopsed || s.locked_out)
            .collect();
        if blocked.is_empty() {
            ctx.ephemeral(
                channel,
                user,
                "No machine is oopsed or locked out: nothing to clear.",
            );
            return Ok(());
        }
        ctx.open_view_now(trigger_id, blocks::clear_modal(channel, &blocked))
            .await?;
        Ok(())
    }

    fn device_token_ok(&self, machine: Option<&MachineConfig>, request: &HttpRequest) -> bool {
        let expected = machine
            .and_then(|m| m.token.as_ref())
            .or(self.config.device_token.as_ref());
        let Some(expected) = expected else {
            return true;
        };
        request
            .bearer()
            .is_some_and(|given| constant_eq(given, expected.expose()))
    }

    async fn device_update(
        &self,
        ctx: &mut Ctx<'_>,
        cat: &Catalog,
        request: &HttpRequest,
    ) -> Result<HttpReply, AppError> {
        let update: device::Update = match serde_json::from_str(&request.body) {
            Ok(update) => update,
            Err(e) => return Ok(HttpReply::error(400, &format!("invalid update: {e}"))),
        };
        let Some(machine) = cat.find(&update.machine_name) else {
            return Ok(HttpReply::error(404, "unknown machine"));
        };
        if !self.device_token_ok(Some(machine), request) {
            return Ok(HttpReply::error(401, "invalid device token"));
        }
        ctx.set_actor(ActorKind::Device, &machine.name);
        if update.oops {
            // The oops button: a change like any other (its own notices); already oopsed is fine.
            let _ = self
                .change(ctx, machine, Change::Oops, &Source::Button)
                .await?;
        }
        let now = ctx.now_ms();
        let lock = ctx.store().backend() == switchyard_engine::Backend::Postgres;
        let conn = ctx.db().await?;
        let mut current = state::load(conn, &machine.name, lock).await?;
        let logs = device::apply(machine, &cat.users, &mut current, &update, now);
        state::save(ctx.db().await?, &machine.name, &current).await?;
        let object = format!("machine:{}", machine.name);
        for log in logs {
            ctx.audit(log.action, &object, Outcome::Ok, &log.text);
            ctx.post(
                &self.config.control_channel,
                json!({ "text": log.text }),
                None,
                None,
            );
        }
        Ok(HttpReply::ok(device::reply(machine, &current)))
    }

    async fn set_state(
        &self,
        ctx: &mut Ctx<'_>,
        cat: &Catalog,
        request: &HttpRequest,
        kind: &str,
        raw_name: &str,
    ) -> Result<HttpReply, AppError> {
        let name = percent_decode(raw_name);
        let Some(machine) = cat.find(&name) else {
            return Ok(HttpReply::error(404, "unknown machine"));
        };
        // An API token with `machines:write`, or the machine's (or the shared) device token.
        let who = match request.bearer() {
            Some(given) => match ctx.store().token_verify(given, ctx.now_ms()).await {
                Ok(Some(token)) if token.allows("machines:write") => {
                    ctx.set_actor(ActorKind::Token, &token.id.to_string());
                    Some(format!("token {}", token.name))
                }
                Ok(Some(token)) => {
                    return Ok(crate::api_token::missing_scope(
                        ctx,
                        request,
                        token.id,
                        &token.name,
                        "machines:write",
                    ));
                }
                _ => None,
            },
            None => None,
        };
        let who = match who {
            Some(who) => who,
            None if self.device_token_ok(Some(machine), request) => {
                ctx.set_actor(ActorKind::Device, &machine.name);
                "device token".to_string()
            }
            None => return Ok(HttpReply::error(401, "invalid_token")),
        };
        let change = match (kind, request.method.as_str()) {
            ("oops", "POST") => Change::Oops,
            ("oops", "DELETE") => Change::Unoops,
            ("locked_out", "POST") => Change::Lock,
            ("locked_out", "DELETE") => Change::Unlock,
            _ => return Ok(HttpReply::error(405, "method_not_allowed")),
        };
        match self.change(ctx, machine, change, &Source::Api(who)).await? {
            Ok(()) => Ok(HttpReply::ok(json!({"ok": true, "machine": machine.name}))),
            // Already in the state asked for: nothing changed, say so (a 200: idempotent).
            Err(refusal) => Ok(HttpReply::ok(
                json!({"ok": true, "machine": machine.name, "changed": false, "note": refusal.code()}),
            )),
        }
    }
}

impl Machines {
    /// The admin API: `GET /api/machines/catalog`; `PUT`/`DELETE /api/machines/machines/<name>`
    /// and `/api/machines/users/<name>` (a JSON body like the config's entry). An API token
    /// with `machines:admin`.
    async fn admin(
        &self,
        ctx: &mut Ctx<'_>,
        cat: &Catalog,
        request: &HttpRequest,
        rest: &str,
    ) -> Result<HttpReply, AppError> {
        let Some(given) = request.bearer() else {
            return Ok(HttpReply::error(401, "invalid_token"));
        };
        let token = match ctx.store().token_verify(given, ctx.now_ms()).await? {
            Some(token) => token,
            None => return Ok(HttpReply::error(401, "invalid_token")),
        };
        if !token.allows("machines:admin") {
            return Ok(crate::api_token::missing_scope(
                ctx,
                request,
                token.id,
                &token.name,
                "machines:admin",
            ));
        }
        ctx.set_actor(ActorKind::Token, &token.id.to_string());
        if rest == "catalog" && request.method == "GET" {
            return Ok(HttpReply::ok(json!({"ok": true, "catalog": cat})));
        }
        let Some((kind, name)) = rest
            .split_once('/')
            .and_then(|(k, n)| Some((catalog::Kind::parse(k)?, percent_decode(n))))
            .filter(|(_, n)| !n.trim().is_empty())
        else {
            return Ok(HttpReply::error(404, "not_found"));
        };
        match self
            .edit(ctx, cat, kind, &name, &request.method, &request.body)
            .await?
        {
            Ok(reply) => Ok(HttpReply::ok(reply)),
            Err((status, error)) => Ok(HttpReply::error(status, &error)),
        }
    }

    /// A change to the catalog, audited in the caller's transaction: `PUT` adds or replaces,
    /// `DELETE` removes a stored entry.
    async fn edit(
        &self,
        ctx: &mut Ctx<'_>,
        cat: &Catalog,
        kind: catalog::Kind,
        name: &str,
        method: &str,
        body: &str,
    ) -> Result<Result<serde_json::Value, (u16, String)>, AppError> {
        let now = ctx.now_ms();
        let object = format!("{}:{name}", kind.as_str());
        match method {
            "PUT" => {
                let spec: serde_json::Value = match serde_json::from_str(body) {
                    Ok(v) => v,
                    Err(e) => return Ok(Err((400, format!("invalid JSON: {e}")))),
                };
                let conn = ctx.db().await?;
                match catalog::put(conn, &self.config, cat, kind, name, spec, now).await? {
                    Ok(()) => {
                        ctx.audit(
                            &format!("machines.{}.put", kind.as_str()),
                            &object,
                            Outcome::Ok,
                            "",
                        );
                        Ok(Ok(json!({"ok": true, "name": name})))
                    }
                    Err(reason) => Ok(Err((400, reason))),
                }
            }
            "DELETE" => {
                let conn = ctx.db().await?;
                if catalog::remove(conn, kind, name).await? {
                    ctx.audit(
                        &format!("machines.{}.remove", kind.as_str()),
                        &object,
                        Outcome::Ok,
                        "",
                    );
                    Ok(Ok(json!({"ok": true, "name": name})))
                } else {
                    Ok(Err((404, "no stored entry by that name (entries of the config are changed in the config)".into())))
                }
            }
            _ => Ok(Err((405, "method_not_allowed".into()))),
        }
    }
}

/// Compares without stopping at the first difference.
fn constant_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `%20` and friends; a malformed escape is kept as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[async_trait]
impl App for Machines {
    fn declaration(&self) -> Declaration {
        let mentions = [
            ("status", "every machine and its state (anywhere I am)"),
            ("list", "the same as `status`"),
            (
                "oops",
                "`oops <machine>`: take it out of service (control channel)",
            ),
            (
                "lock",
                "`lock <machine>`: lock it out for maintenance (control channel)",
            ),
            (
                "clear",
                "`clear <machine>`: clear its oops and lock-out (control channel)",
            ),
        ]
        .into_iter()
        .map(|(word, help)| MentionCommand { word, help })
        .collect();
        Declaration {
            name: "machines",
            mentions,
            slash_commands: vec![SlashCommand {
                command: self.config.slash_command.clone(),
                description: "Clear a machine's oops or lock-out",
                usage_hint: "[machine]",
            }],
            view_prefixes: vec![CLEAR_VIEW],
            sync_routes: vec!["/api/machine/", "/api/machines/"],
            scopes: vec!["app_mentions:read", "chat:write", "commands"],
            bot_events: vec!["app_mention"],
            channels: vec![
                self.config.control_channel.clone(),
                self.config.oops_channel.clone(),
            ],
            ..Declaration::default()
        }
    }

    fn migrations(&self) -> Vec<AppMigration> {
        migrations()
    }

    /// `list` is `status` by another name, so it is `status`'s permission: a role that may see
    /// the machines' status may list them (the security sweep found `list` refused to it).
    fn permission(&self, input: &Input, default: Option<String>) -> Option<String> {
        match input {
            Input::Mention { command, .. } if command.eq_ignore_ascii_case("list") => {
                Some("machines.status".into())
            }
            _ => default,
        }
    }

    async fn handle(&self, ctx: &mut Ctx<'_>, input: &Input) -> Result<(), AppError> {
        let cat = &Catalog::load(&self.config, ctx.store().reader()).await?;
        match input {
            Input::Mention {
                command,
                args,
                message,
            } => self.mention(ctx, cat, command, args, message).await,
            Input::Command {
                text,
                user,
                channel,
                trigger_id,
                ..
            } => {
                self.command(ctx, cat, text, user, channel, trigger_id)
                    .await
            }
            Input::ViewSubmission {
                callback_id,
                user,
                private_metadata,
                values,
                ..
            } if callback_id == CLEAR_VIEW => {
                let chosen = values["machine"]["machine"]["selected_option"]["value"]
                    .as_str()
                    .unwrap_or("");
                let channel = if private_metadata.is_empty() {
                    self.config.control_channel.as_str()
                } else {
                    private_metadata.as_str()
                };
                let Some(machine) = cat.find(chosen) else {
                    ctx.ephemeral(channel, user, &self.unknown(chosen));
                    return Ok(());
                };
                if let Err(refusal) = self
                    .change(ctx, machine, Change::Clear, &Source::Slack(user.clone()))
                    .await?
                {
                    ctx.ephemeral(channel, user, &refusal.text(&machine.name));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn serve(&self, ctx: &mut Ctx<'_>, request: &HttpRequest) -> Result<HttpReply, AppError> {
        let cat = &Catalog::load(&self.config, ctx.store().reader()).await?;
        if let Some(rest) = request.path.strip_prefix("/api/machines/") {
            return self.admin(ctx, cat, request, rest).await;
        }
        let rest = request.path.strip_prefix("/api/machine/").unwrap_or("");
        match rest.split_once('/') {
            None if rest == "update" => {
                if request.method != "POST" {
                    return Ok(HttpReply::error(405, "method_not_allowed"));
                }
                self.device_update(ctx, cat, request).await
            }
            Some((kind @ ("oops" | "locked_out"), name)) if !name.is_empty() => {
                self.set_state(ctx, cat, request, kind, name).await
            }
            _ => Ok(HttpReply::error(404, "not_found")),
        }
    }

    async fn metrics(&self, store: &Store) -> String {
        let Ok(cat) = Catalog::load(&self.config, store.reader()).await else {
            return String::new();
        };
        let Ok(machines) = self.all_states(store, &cat).await else {
            return String::new();
        };
        let mut text = String::new();
        for (metric, help) in [
            ("switchyard_machine_oopsed", "1 when the machine is oopsed"),
            (
                "switchyard_machine_locked_out",
                "1 when the machine is locked out",
            ),
            (
                "switchyard_machine_relay",
                "1 when the machine's relay is on",
            ),
            (
                "switchyard_machine_last_checkin_seconds",
                "Unix time of the device's last update",
            ),
        ] {
            text.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} gauge\n"));
            for (name, s) in &machines {
                let value = match metric {
                    "switchyard_machine_oopsed" => s.oopsed as i64,
                    "switchyard_machine_locked_out" => s.locked_out as i64,
                    "switchyard_machine_relay" => s.relay as i64,
                    _ => s.last_checkin_ms.unwrap_or(0) / 1000,
                };
                let label = name.replace('\\', "\\\\").replace('"', "\\\"");
                text.push_str(&format!("{metric}{{machine=\"{label}\"}} {value}\n"));
            }
        }
        text
    }
}
