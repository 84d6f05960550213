//! receive → inbox → dispatch → apps.
//!
//! Both transports hand what Slack sent to [`Engine::receive`], which routes it (cheaply, to
//! drop what no app wants), commits it to the inbox — deduplicated, so Slack's retries are
//! handled once — and returns the ack. The work runs after, in batches (see [`crate::dispatch`]),
//! so nothing slow happens before the ack. A worker loop picks up what a crashed process left
//! behind once its lease runs out.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_store::{InboxInsert, NewInboxItem, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::app::{App, Declaration, Input, MessageEvent};
use crate::config::Secret;
use crate::dispatch::Job;
use crate::mention::{parse_mention, split_command};
use crate::slack::SlackApi;
use crate::{EngineError, now_ms};

/// How long the inbox commit may take before an ack is pointless (Slack waits 3 s).
const ACK_BUDGET: Duration = Duration::from_millis(2_500);

/// What kind of thing Slack sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Event,
    Command,
    Interaction,
    /// A POST to an app's own route.
    Http,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "event",
            Self::Command => "command",
            Self::Interaction => "interaction",
            Self::Http => "http",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "event" => Some(Self::Event),
            "command" => Some(Self::Command),
            "interaction" => Some(Self::Interaction),
            "http" => Some(Self::Http),
            _ => None,
        }
    }
}

/// Who our bot is, from `auth.test`, to tell mentions and our own messages apart.
#[derive(Debug, Clone)]
pub struct BotIdentity {
    pub user_id: String,
    pub bot_id: String,
}

/// Where an input goes.
pub(crate) enum Route {
    App(usize, Input),
    /// An unknown mention command: a short help reply.
    Help(MessageEvent),
    /// Nothing to do (our own message, an edit, an event no app wants).
    Ignore,
}

/// The installed apps and what each declared.
pub struct Registry {
    apps: Vec<Arc<dyn App>>,
    declarations: Vec<Declaration>,
    /// The incoming webhooks the apps declared, by name: where the sender posts a webhook
    /// call, looked up when it sends.
    webhooks: HashMap<String, Secret>,
}

impl Registry {
    pub fn new(apps: Vec<Arc<dyn App>>) -> Self {
        let declarations: Vec<Declaration> = apps.iter().map(|a| a.declaration()).collect();
        let mut webhooks = HashMap::new();
        for hook in declarations.iter().flat_map(|d| &d.webhooks) {
            // Apps name the hooks of one config section, so a name means one URL; should two
            // disagree, the first app's stands.
            if let Some(url) = webhooks.get(&hook.name)
                && url != &hook.url
            {
                tracing::warn!(webhook = %hook.name, "two apps declare this webhook with different URLs; the first one's is used");
                continue;
            }
            webhooks.insert(hook.name.clone(), hook.url.clone());
        }
        Self {
            apps,
            declarations,
            webhooks,
        }
    }

    /// The URL of the incoming webhook `name`, if an app in force declares it.
    pub(crate) fn webhook_url(&self, name: &str) -> Option<&Secret> {
        self.webhooks.get(name)
    }

    pub fn declarations(&self) -> &[Declaration] {
        &self.declarations
    }

    pub(crate) fn app(&self, i: usize) -> &dyn App {
        self.apps[i].as_ref()
    }

    /// The app called `name`, if it is enabled.
    pub(crate) fn app_named(&self, name: &str) -> Option<Arc<dyn App>> {
        self.find(|d| d.name == name).map(|i| self.apps[i].clone())
    }

    /// The permission name `[access]` checks for app `i`'s `input` (`None`: unchecked).
    pub(crate) fn permission(&self, i: usize, input: &Input) -> Option<String> {
        let default = crate::access::default_name(&self.declarations[i], input);
        self.apps[i].permission(input, default)
    }

    fn find(&self, pred: impl Fn(&Declaration) -> bool) -> Option<usize> {
        self.declarations.iter().position(pred)
    }

    pub(crate) fn route(&self, kind: Kind, payload: &Value, bot: &BotIdentity) -> Route {
        match kind {
            Kind::Event => self.route_event(&payload["event"], bot),
            Kind::Command => {
                let command = payload["command"].as_str().unwrap_or("");
                let Some(i) = self.find(|d| d.slash_commands.iter().any(|c| c.command == command))
                else {
                    return Route::Ignore;
                };
                Route::App(
                    i,
                    Input::Command {
                        command: command.to_string(),
                        text: str_of(payload, "text"),
                        user: str_of(payload, "user_id"),
                        channel: str_of(payload, "channel_id"),
                        response_url: str_of(payload, "response_url"),
                        trigger_id: str_of(payload, "trigger_id"),
                        raw: payload.clone(),
                    },
                )
            }
            Kind::Interaction => self.route_interaction(payload),
            Kind::Http => {
                let app = payload["app"].as_str().unwrap_or("");
                match self.find(|d| d.name == app) {
                    Some(i) => Route::App(
                        i,
                        Input::Http {
                            path: str_of(payload, "path"),
                            content_type: str_of(payload, "content_type"),
                            body: str_of(payload, "body"),
                            token: payload["token"]["id"].as_i64(),
                        },
                    ),
                    None => Route::Ignore,
                }
            }
        }
    }

    fn route_event(&self, event: &Value, bot: &BotIdentity) -> Route {
        let event_type = event["type"].as_str().unwrap_or("");
        let own = event["bot_id"].as_str() == Some(&bot.bot_id)
            || event["user"].as_str() == Some(&bot.user_id);
        match event_type {
            "app_mention" | "message" => {
                if event
                    .get("subtype")
                    .is_some_and(|s| s != "thread_broadcast")
                {
                    return Route::Ignore;
                }
                let message = MessageEvent {
                    channel: str_of(event, "channel"),
                    user: str_of(event, "user"),
                    text: str_of(event, "text"),
                    ts: str_of(event, "ts"),
                    thread_ts: event["thread_ts"].as_str().map(str::to_string),
                };
                if own {
                    return match self.find(|d| d.wants_own_messages) {
                        Some(i) => Route::App(i, Input::Message { message }),
                        None => Route::Ignore,
                    };
                }
                let is_dm = event["channel_type"].as_str() == Some("im");
                let mention = format!("<@{}>", bot.user_id);
                let addressed =
                    event_type == "app_mention" || (is_dm && !message.text.contains(&mention));
                if addressed {
                    let parsed = if event_type == "app_mention" {
                        parse_mention(&message.text, &bot.user_id)
                    } else {
                        split_command(&message.text)
                    };
                    return match parsed {
                        Some((command, args)) => {
                            match self.find(|d| d.mentions.iter().any(|m| m.word == command)) {
                                Some(i) => Route::App(
                                    i,
                                    Input::Mention {
                                        command,
                                        args,
                                        message,
                                    },
                                ),
                                None => Route::Help(message),
                            }
                        }
                        None => Route::Help(message),
                    };
                }
                if message.text.contains(&mention) {
                    // Slack sends the same message as `app_mention` too; that one is handled.
                    return Route::Ignore;
                }
                let text = message.text.to_lowercase();
                match self.find(|d| {
                    d.message_patterns
                        .iter()
                        .any(|p| text.contains(&p.to_lowercase()))
                }) {
                    Some(i) => Route::App(i, Input::Message { message }),
                    None => Route::Ignore,
                }
            }
            other => match self.find(|d| d.events.contains(&other)) {
                Some(i) => Route::App(
                    i,
                    Input::Event {
                        event_type: other.to_string(),
                        raw: event.clone(),
                    },
                ),
                None => Route::Ignore,
            },
        }
    }

    fn route_interaction(&self, payload: &Value) -> Route {
        let user = payload["user"]["id"].as_str().unwrap_or("").to_string();
        match payload["type"].as_str().unwrap_or("") {
            "block_actions" => {
                let action = &payload["actions"][0];
                let action_id = str_of(action, "action_id");
                let Some(i) =
                    self.find(|d| d.action_prefixes.iter().any(|p| action_id.starts_with(p)))
                else {
                    return Route::Ignore;
                };
                let value = action["value"]
                    .as_str()
                    .or_else(|| action["selected_option"]["value"].as_str())
                    .map(str::to_string);
                let channel = payload["channel"]["id"]
                    .as_str()
                    .or_else(|| payload["container"]["channel_id"].as_str())
                    .map(str::to_string);
                Route::App(
                    i,
                    Input::Action {
                        action_id,
                        value,
                        user,
                        channel,
                        message_ts: payload["container"]["message_ts"]
                            .as_str()
                            .map(str::to_string),
                        response_url: payload["response_url"].as_str().map(str::to_string),
                        trigger_id: payload["trigger_id"].as_str().map(str::to_string),
                        raw: payload.clone(),
                    },
                )
            }
            kind @ ("view_submission" | "view_closed") => {
                let view = &payload["view"];
                let callback_id = str_of(view, "callback_id");
                let Some(i) =
                    self.find(|d| d.view_prefixes.iter().any(|p| callback_id.starts_with(p)))
                else {
                    return Route::Ignore;
                };
                let input = if kind == "view_submission" {
                    Input::ViewSubmission {
                        callback_id,
                        user,
                        private_metadata: str_of(view, "private_metadata"),
                        values: view["state"]["values"].clone(),
                        raw: payload.clone(),
                    }
                } else {
                    Input::Event {
                        event_type: "view_closed".into(),
                        raw: payload.clone(),
                    }
                };
                Route::App(i, input)
            }
            _ => Route::Ignore,
        }
    }

    /// The app a route goes to, by name (for metrics).
    pub(crate) fn app_name(&self, route: &Route) -> Option<&'static str> {
        match route {
            Route::App(i, _) => self.declarations.get(*i).map(|d| d.name),
            _ => None,
        }
    }

    pub(crate) fn help_text(&self) -> String {
        let mut lines = vec!["I know these commands:".to_string()];
        for d in &self.declarations {
            for m in &d.mentions {
                lines.push(format!("• `{}` — {}", m.word, m.help));
            }
        }
        if lines.len() == 1 {
            return "No commands are enabled here.".into();
        }
        lines.join("\n")
    }
}

/// The registry in force: replaced whole when the config is reloaded (SIGHUP). Readers take a
/// snapshot (`current`) and route and handle with it, so an index from `route` always means
/// the same app. Shared by the dispatcher and the sender: a clone is the same registry.
#[derive(Clone)]
pub struct LiveRegistry(Arc<RwLock<Arc<Registry>>>);

impl LiveRegistry {
    pub fn new(registry: Registry) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(registry))))
    }

    pub fn current(&self) -> Arc<Registry> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// From now on, inputs go to these apps; inputs already routed finish with the old ones.
    pub fn replace(&self, registry: Registry) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(registry);
    }
}

fn str_of(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or("").to_string()
}

/// The dedupe key: Slack's retries of one delivery share it.
fn dedupe_key(kind: Kind, payload: &Value) -> String {
    match kind {
        Kind::Event => format!("event:{}", str_of(payload, "event_id")),
        Kind::Command => format!("command:{}", str_of(payload, "trigger_id")),
        Kind::Http => format!("http:{}", str_of(payload, "idempotency_key")),
        Kind::Interaction => match payload["trigger_id"].as_str() {
            Some(t) => format!("interaction:{t}"),
            None => format!(
                "interaction:{}:{}:{}",
                str_of(payload, "type"),
                str_of(&payload["view"], "id"),
                str_of(&payload["view"], "hash")
            ),
        },
    }
}

/// The running pipeline's shared parts.
pub struct Engine {
    pub store: Store,
    pub slack: SlackApi,
    pub registry: LiveRegistry,
    pub bot: BotIdentity,
    /// This process's name on leases.
    pub owner: String,
    /// Accepted inputs waiting for a handler.
    pub dispatch: crate::dispatch::DispatchQueue,
    /// Where deliveries are committed (grouped into shared transactions).
    pub inbox: crate::inbox::InboxWriter,
    pub lease: Duration,
    /// Wakes the sender when something was queued.
    pub outbox_ready: Arc<Notify>,
    /// Calls claimed by the commit that queued them, to this process's sender (SQLite).
    pub outbox_handoff: crate::sender::Handoff,
    /// Test hook: receive and ack, but never handle (to kill the process in between).
    pub hold_dispatch: bool,
    /// Who may do what (`[access]`), checked by the dispatcher from memory.
    pub access: Arc<crate::access::AccessControl>,
}

impl Engine {
    /// Takes what Slack sent and returns the ack's body (`None`: an empty 200). Commits to the
    /// inbox first; the work itself runs afterwards. `raw`, when given, is `payload`'s JSON
    /// text as it arrived: it is stored as it is instead of serializing `payload` again.
    pub async fn receive(
        self: &Arc<Self>,
        kind: Kind,
        payload: Value,
        raw: Option<String>,
    ) -> Result<Option<Value>, EngineError> {
        let started = Instant::now();
        crate::metrics::RECEIVED.inc(kind.as_str());
        let acked = self.route_and_commit(kind, payload, raw).await;
        if acked.is_ok() {
            crate::metrics::ACK_SECONDS.observe(started.elapsed());
        }
        acked
    }

    async fn route_and_commit(
        self: &Arc<Self>,
        kind: Kind,
        payload: Value,
        raw: Option<String>,
    ) -> Result<Option<Value>, EngineError> {
        let registry = self.registry.current();
        let route = registry.route(kind, &payload, &self.bot);
        let ack = match &route {
            Route::Ignore if kind == Kind::Command => {
                return Ok(Some(
                    json!({"response_type": "ephemeral", "text": "That command is not enabled here."}),
                ));
            }
            Route::Ignore => return Ok(None),
            Route::App(i, input) => registry.apps[*i].ack(input),
            Route::Help(_) => None,
        };
        if ack.as_ref().and_then(|a| a["response_action"].as_str()) == Some("errors") {
            // The submission is refused as it stands; nothing to store or handle.
            return Ok(ack);
        }
        // Slack gives up on an ack after 3 s. A commit that takes longer is better not acked at
        // all: Slack sends the delivery again and the inbox takes it once.
        tokio::time::timeout(ACK_BUDGET, self.accept(kind, payload, raw))
            .await
            .map_err(|_| {
                EngineError::Inbox(format!("the inbox commit took over {ACK_BUDGET:?}"))
            })??;
        Ok(ack)
    }

    /// Commits an input to the inbox (once per dedupe key) and starts handling it; returns its
    /// inbox id. `raw`: as in [`Engine::receive`].
    pub async fn accept(
        self: &Arc<Self>,
        kind: Kind,
        payload: Value,
        raw: Option<String>,
    ) -> Result<i64, EngineError> {
        let now = now_ms();
        let dedupe_key = dedupe_key(kind, &payload);
        let item = NewInboxItem {
            dedupe_key: dedupe_key.clone(),
            kind: kind.as_str().into(),
            payload: raw.unwrap_or_else(|| payload.to_string()),
            received_at_ms: now,
        };
        let inserted = self.inbox.insert(item).await.map_err(EngineError::Inbox)?;
        match inserted {
            InboxInsert::Duplicate(id) => {
                crate::metrics::DEDUPLICATED.inc();
                tracing::debug!(id, key = %dedupe_key, "duplicate delivery dropped");
                Ok(id)
            }
            InboxInsert::New(id) => {
                if !self.hold_dispatch {
                    crate::metrics::DISPATCHED.inc();
                    self.dispatch.submit(Job { id, kind, payload });
                }
                Ok(id)
            }
        }
    }

    /// Picks up inbox items nobody holds (a crashed process's, retries that are due) until
    /// `stop` fires.
    pub async fn run_inbox_worker(self: Arc<Self>, poll: Duration, stop: CancellationToken) {
        if self.hold_dispatch {
            return;
        }
        loop {
            let now = now_ms();
            let until = now + self.lease.as_millis() as i64;
            // On the store's own runtime: the claim holds SQLite's turn until its rows are
            // read (see `Store::at_home`).
            let owner = self.owner.clone();
            let claimed = self.store.at_home(move |store| async move {
                store.inbox_claim(&owner, now, until, 32).await
            });
            match claimed.await {
                Ok(items) => {
                    for item in items {
                        let Some(kind) = Kind::parse(&item.kind) else {
                            continue;
                        };
                        let Ok(payload) = serde_json::from_str(&item.payload) else {
                            tracing::error!(id = item.id, "unreadable inbox payload");
                            continue;
                        };
                        crate::metrics::DISPATCHED.inc();
                        self.dispatch.submit(Job {
                            id: item.id,
                            kind,
                            payload,
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "inbox claim failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(poll) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
