//! What an app is: a declaration of what it handles, and handlers.
//!
//! Like Bolt's listeners, an app says what it matches — mention commands, slash commands,
//! `action_id`s, view `callback_id`s, event types, message patterns — and the engine routes to it.
//! Adding an app never means editing the engine.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use serde_json::{Value, json};
pub use switchyard_store::AppMigration;
use switchyard_store::sqlx::AnyConnection;
use switchyard_store::{
    ActorKind, AuditRecord, NewOutboxItem, Outcome, Store, StoreError, Tx, Via,
};

use crate::config::Secret;
use crate::slack::{CallError, SlackApi};

/// A mention command: `@bot <word> args…`.
#[derive(Debug, Clone)]
pub struct MentionCommand {
    pub word: &'static str,
    /// One line for the help reply.
    pub help: &'static str,
}

/// A slash command the app answers.
#[derive(Debug, Clone)]
pub struct SlashCommand {
    pub command: String,
    pub description: &'static str,
    pub usage_hint: &'static str,
}

/// Everything an app handles and needs, in one place.
#[derive(Debug, Clone, Default)]
pub struct Declaration {
    pub name: &'static str,
    pub mentions: Vec<MentionCommand>,
    pub slash_commands: Vec<SlashCommand>,
    /// Words that, first in a slash command's text, are sub-commands with permission names of
    /// their own: with `enable` here, `/machines enable laser` is `machines.enable` (see
    /// [`crate::access::default_name`]).
    pub subcommands: Vec<&'static str>,
    /// `action_id` prefixes of the buttons and menus it owns.
    pub action_prefixes: Vec<&'static str>,
    /// `callback_id` prefixes of its modals.
    pub view_prefixes: Vec<&'static str>,
    /// Event types it wants (`reaction_added`, `member_joined_channel`, …).
    pub events: Vec<&'static str>,
    /// Substrings that make a plain channel message its business (case-insensitive).
    pub message_patterns: Vec<&'static str>,
    /// HTTP paths of its own (`/alerts/alertmanager`): each POST is committed to the inbox,
    /// answered 202, and handed to the app as [`Input::Http`].
    pub http_routes: Vec<&'static str>,
    /// `(path, scope)`: routes of `http_routes` that need an API token granting `scope`
    /// (`alerts:write`); 401/403 otherwise (see `crate::api`). Routes not listed are open.
    pub http_route_scopes: Vec<(&'static str, &'static str)>,
    /// Path prefixes (`/api/machine/`) the app answers synchronously with [`App::serve`]: any
    /// method, no inbox; the reply is the app's, and its changes, Slack calls and audit records
    /// commit in one transaction before the reply goes out. For callers that need an answer
    /// now (a device waiting for its relay decision). The app authenticates these itself.
    pub sync_routes: Vec<&'static str>,
    /// Our own bot's messages are dropped unless an app asks for them.
    pub wants_own_messages: bool,
    /// For the manifest: the bot scopes and bot events the app needs.
    pub scopes: Vec<&'static str>,
    pub bot_events: Vec<&'static str>,
    /// Channel ids its config names (where it posts, what it watches): `switchyard doctor`
    /// checks each exists and has the bot in it. An app built from its config section fills
    /// this from that section.
    pub channels: Vec<String>,
    /// How often (ms) the engine calls [`App::tick`]; `None`: never.
    pub tick_ms: Option<u64>,
    /// The incoming webhooks it posts to with [`Ctx::webhook`], by name.
    pub webhooks: Vec<NamedWebhook>,
}

/// An incoming webhook an app posts to. Its URL is a secret (whoever has it can post), so the
/// outbox keeps only the name; the sender looks the URL up in the apps in force when it
/// sends, so a reload's change applies to the posts already queued.
#[derive(Debug, Clone)]
pub struct NamedWebhook {
    pub name: String,
    pub url: Secret,
}

/// The ordering key of the posts to incoming webhook `name`: one line per hook, paced at about
/// one post a second ([`Ctx::queued`] of it is how many wait).
pub fn webhook_ordering_key(name: &str) -> String {
    format!("webhook:{name}")
}

/// A message someone posted (from `app_mention` or `message` events).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageEvent {
    pub channel: String,
    pub user: String,
    pub text: String,
    pub ts: String,
    pub thread_ts: Option<String>,
}

impl MessageEvent {
    /// Where a reply belongs: the message's thread, or a new thread under it.
    pub fn thread(&self) -> &str {
        self.thread_ts.as_deref().unwrap_or(&self.ts)
    }
}

/// What reached the app, already routed.
#[derive(Debug, Clone)]
pub enum Input {
    Mention {
        command: String,
        args: Vec<String>,
        message: MessageEvent,
    },
    Message {
        message: MessageEvent,
    },
    Command {
        command: String,
        text: String,
        user: String,
        channel: String,
        response_url: String,
        trigger_id: String,
        raw: Value,
    },
    Action {
        action_id: String,
        value: Option<String>,
        user: String,
        channel: Option<String>,
        message_ts: Option<String>,
        response_url: Option<String>,
        trigger_id: Option<String>,
        raw: Value,
    },
    ViewSubmission {
        callback_id: String,
        user: String,
        private_metadata: String,
        values: Value,
        raw: Value,
    },
    Event {
        event_type: String,
        raw: Value,
    },
    /// A POST to one of the app's `http_routes`.
    Http {
        path: String,
        content_type: String,
        body: String,
        /// The API token's id, on routes that require one.
        token: Option<i64>,
    },
}

impl Input {
    /// The person who did it, when there is one.
    pub fn user(&self) -> Option<&str> {
        match self {
            Self::Mention { message, .. } | Self::Message { message } => Some(&message.user),
            Self::Command { user, .. }
            | Self::Action { user, .. }
            | Self::ViewSubmission { user, .. } => Some(user),
            Self::Event { raw, .. } => raw["user"].as_str(),
            Self::Http { .. } => None,
        }
    }

    /// Who did it, for the audit log: a person, an API token, or (an unauthenticated route)
    /// a system.
    pub fn actor(&self) -> (ActorKind, String) {
        match self {
            Self::Http {
                token: Some(id), ..
            } => (ActorKind::Token, id.to_string()),
            Self::Http { .. } => (ActorKind::System, "api".into()),
            other => match other.user() {
                Some(user) if !user.is_empty() => (ActorKind::User, user.to_string()),
                _ => (ActorKind::System, "slack".into()),
            },
        }
    }

    /// The surface it came through, for the audit log.
    pub fn via(&self) -> Via {
        match self {
            Self::Mention { .. } | Self::Message { .. } => Via::Mention,
            Self::Command { .. } => Via::SlashCommand,
            Self::Action { .. } => Via::Button,
            Self::ViewSubmission { .. } => Via::Modal,
            Self::Event { .. } => Via::Event,
            Self::Http { .. } => Via::Api,
        }
    }

    /// The conversation it happened in, when there is one.
    pub fn channel(&self) -> Option<&str> {
        match self {
            Self::Mention { message, .. } | Self::Message { message } => Some(&message.channel),
            Self::Command { channel, .. } => Some(channel),
            Self::Action { channel, .. } => channel.as_deref(),
            Self::ViewSubmission { .. } | Self::Http { .. } => None,
            Self::Event { raw, .. } => raw["channel"]
                .as_str()
                .or_else(|| raw["item"]["channel"].as_str()),
        }
    }
}

/// A request to one of the app's [`Declaration::sync_routes`].
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// `GET`, `POST`, `DELETE`, …
    pub method: String,
    /// The whole path (`/api/machine/oops/laser`), percent-decoding left to the app.
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpRequest {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The credential of an `Authorization: Bearer <credential>` header (an API token, a
    /// device's token), trimmed.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, credential)| credential.trim())
    }
}

/// The answer to an [`HttpRequest`]: a status and a JSON body.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub body: Value,
}

impl HttpReply {
    pub fn ok(body: Value) -> Self {
        Self { status: 200, body }
    }

    /// A 4xx/5xx with `{"ok": false, "error": …}`.
    pub fn error(status: u16, error: &str) -> Self {
        Self {
            status,
            body: json!({"ok": false, "error": error}),
        }
    }
}

/// An app's failure. `User` errors are shown to the person as they are; others as a short note.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    User(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Slack(#[from] CallError),
    /// A modal did not open because its trigger ran out: Slack said `expired_trigger_id` (the
    /// input reached us more than 3 s after the click, as after a restart) or did not answer
    /// `views.open` while the trigger was good. The person is told to try again; the cause is
    /// logged under the error id they are given.
    #[error("views.open: the trigger ran out: {0}")]
    TriggerExpired(CallError),
    #[error("{0}")]
    Internal(String),
}

/// A built-in app: one module, one declaration, handlers.
#[async_trait]
pub trait App: Send + Sync + 'static {
    fn declaration(&self) -> Declaration;

    /// Runs before the ack, so it must be quick and touch nothing durable: the immediate answer
    /// to a command or action (an ephemeral "working on it"), or a view submission's validation
    /// errors (`{"response_action":"errors",…}`). Returning an `errors` response stops the input
    /// there: it is not handled further.
    fn ack(&self, _input: &Input) -> Option<Value> {
        None
    }

    /// The permission name `[access]` checks for `input` (`machines.enable`), given the
    /// engine's `default` ([`crate::access::default_name`]); `None` leaves the input unchecked.
    /// Runs in the dispatcher, before [`App::handle`]: keep it a pure function of the input.
    fn permission(&self, _input: &Input, default: Option<String>) -> Option<String> {
        default
    }

    /// Does the work, in a transaction: state changes and the Slack messages they cause are
    /// committed together.
    async fn handle(&self, ctx: &mut Ctx<'_>, input: &Input) -> Result<(), AppError>;

    /// The app's own tables: schema changes per dialect, applied by the engine at server start
    /// (each once, recorded in `app_migrations`). Name tables after the app (`machines_…`).
    fn migrations(&self) -> Vec<AppMigration> {
        Vec::new()
    }

    /// Answers a request to one of its [`Declaration::sync_routes`], in a transaction of its
    /// own: what it writes through `ctx` (tables, Slack calls, audit) commits before the reply
    /// is sent, or — on an error, or a reply of 400 and above — not at all. The actor is
    /// `system:api` until [`Ctx::set_actor`] says who it is.
    async fn serve(
        &self,
        _ctx: &mut Ctx<'_>,
        _request: &HttpRequest,
    ) -> Result<HttpReply, AppError> {
        Ok(HttpReply::error(404, "not_found"))
    }

    /// Periodic work that falls due with time (see [`Declaration::tick_ms`]), in a
    /// transaction of its own, as the system through `schedule`: what it writes through `ctx`
    /// commits together, or on an error not at all. Every replica ticks, so take due rows
    /// with locks (or conditional updates) that let only one replica do each piece of work.
    async fn tick(&self, _ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        Ok(())
    }

    /// Lines for `/metrics` (Prometheus' text format), read from the store at each scrape.
    async fn metrics(&self, _store: &Store) -> String {
        String::new()
    }
}

/// What a handler works with: the store transaction its batch shares (started when first
/// needed), and Slack calls that go out through the outbox when (and only if) the transaction
/// commits.
///
/// Handlers run in batches, one transaction for many inputs: a handler's own statements are
/// wrapped in a savepoint (taken at its first [`Ctx::db`]), so its failure undoes only its own
/// work (a sync route's or a tick's transaction is its own, and takes none). Slack calls are
/// collected here and written to the outbox in one statement at the batch's end, in order.
pub struct Ctx<'b> {
    batch: &'b mut BatchTx,
    slack: SlackApi,
    now_ms: i64,
    /// Who did it and through what, for [`Ctx::audit`].
    actor: (ActorKind, String),
    via: Via,
    pub(crate) outbox: Vec<NewOutboxItem>,
    /// How many of `outbox`'s calls are on each ordering key (for [`Ctx::queued`]).
    queued_here: HashMap<String, i64>,
    /// The outbox's pending calls on an ordering key, read at the first [`Ctx::queued`] of it.
    queued_stored: HashMap<String, i64>,
    pub(crate) audit: Vec<AuditRecord>,
    pub(crate) savepoint: bool,
}

/// The transaction a batch of handlers shares, begun at the first handler that needs it (or at
/// the end): begun, it first takes the batch's inbox items, which holds them until the commit.
pub(crate) struct BatchTx {
    pub(crate) store: Store,
    pub(crate) owner: String,
    pub(crate) ids: Vec<i64>,
    pub(crate) now_ms: i64,
    pub(crate) open: Option<(Tx<'static>, HashSet<i64>)>,
    /// Whether each handler's statements go in a savepoint of their own: in a batch of
    /// inputs, where one handler's failure undoes only its own work. Not in a sync route's or
    /// a tick's transaction, which is its one caller's, committed or dropped whole: there a
    /// savepoint only made SQLite copy each page the request changed into a sub-journal,
    /// spilled to a temporary file (created and deleted per request) past 64 KiB.
    pub(crate) savepoints: bool,
}

impl BatchTx {
    /// A batch of inbox items `ids`, held by `owner`: each handler in a savepoint of its own.
    pub(crate) fn for_inputs(store: Store, owner: String, ids: Vec<i64>, now_ms: i64) -> Self {
        Self {
            store,
            owner,
            ids,
            now_ms,
            open: None,
            savepoints: true,
        }
    }

    /// The one transaction of a sync route's request or a tick: no inbox items, no savepoint.
    pub(crate) fn single(store: Store, owner: String, now_ms: i64) -> Self {
        Self {
            savepoints: false,
            ..Self::for_inputs(store, owner, Vec::new(), now_ms)
        }
    }

    /// The transaction, begun (and the batch's items taken) if it was not yet.
    pub(crate) async fn tx(&mut self) -> Result<&mut Tx<'static>, StoreError> {
        if self.open.is_none() {
            let mut tx = self.store.begin().await?;
            let taken = tx.inbox_take(&self.ids, &self.owner, self.now_ms).await?;
            self.open = Some((tx, taken.into_iter().collect()));
        }
        Ok(&mut self.open.as_mut().expect("just opened").0)
    }

    /// Whether inbox item `id` is this batch's: taken by its transaction, or not yet known
    /// (the transaction has not begun).
    pub(crate) fn holds(&self, id: i64) -> bool {
        self.open
            .as_ref()
            .is_none_or(|(_, taken)| taken.contains(&id))
    }
}

impl<'b> Ctx<'b> {
    pub(crate) fn new(
        batch: &'b mut BatchTx,
        slack: SlackApi,
        now_ms: i64,
        actor: (ActorKind, String),
        via: Via,
    ) -> Self {
        Self {
            batch,
            slack,
            now_ms,
            actor,
            via,
            outbox: Vec::new(),
            queued_here: HashMap::new(),
            queued_stored: HashMap::new(),
            audit: Vec::new(),
            savepoint: false,
        }
    }

    /// Records what the handler did (`machines.enable` on `machine:laser-1`, and how it
    /// ended) in the audit log, in the same transaction as the change: who and through what
    /// come from the input. Every state change an app makes is audited this way.
    pub fn audit(&mut self, action: &str, object: &str, outcome: Outcome, detail: &str) {
        self.audit.push(AuditRecord {
            at_ms: self.now_ms,
            actor_kind: self.actor.0,
            actor: self.actor.1.clone(),
            via: self.via,
            action: action.to_string(),
            object: object.to_string(),
            outcome,
            detail: detail.to_string(),
        });
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Who is acting, for the audit records written from now on (a device authenticated by
    /// its token on a sync route, say).
    pub fn set_actor(&mut self, kind: ActorKind, id: &str) {
        self.actor = (kind, id.to_string());
    }

    /// Marks the Slack calls and audit records queued so far as this input's, then forgets
    /// them: for the engine's sync routes.
    pub(crate) fn take(&mut self) -> (Vec<NewOutboxItem>, Vec<AuditRecord>, bool) {
        self.queued_here.clear();
        (
            std::mem::take(&mut self.outbox),
            std::mem::take(&mut self.audit),
            self.savepoint,
        )
    }

    /// The store, for reads outside the transaction (they see only what is committed). Read
    /// here what a handler needs before it opens a modal: [`Ctx::db`] begins the batch's write
    /// transaction. Reads only: a write through the store would wait for the writer's turn,
    /// which this batch holds once its transaction has begun — write through [`Ctx::db`].
    pub fn store(&self) -> &Store {
        &self.batch.store
    }

    /// The transaction's connection, for the app's own tables (placeholders `$1, $2…`). Its
    /// changes commit with the handler's Slack calls and the inbox item's completion, or not
    /// at all.
    pub async fn db(&mut self) -> Result<&mut AnyConnection, StoreError> {
        let savepoints = self.batch.savepoints;
        let tx = self.batch.tx().await?;
        if savepoints && !self.savepoint {
            tx.savepoint().await?;
            self.savepoint = true;
        }
        Ok(tx.conn())
    }

    /// Queues any Web API call; `ordering_key` keeps calls with the same key in order.
    pub fn call(&mut self, method: &str, ordering_key: &str, args: Value, ref_key: Option<&str>) {
        match self.queued_here.get_mut(ordering_key) {
            Some(n) => *n += 1,
            None => {
                self.queued_here.insert(ordering_key.to_string(), 1);
            }
        }
        self.outbox.push(NewOutboxItem {
            ordering_key: ordering_key.to_string(),
            method: method.to_string(),
            payload: args.to_string(),
            ref_key: ref_key.map(str::to_string),
            not_before_ms: 0,
            created_at_ms: self.now_ms,
        });
    }

    /// Posts a message (`{"text":…}` and/or `{"blocks":…}`), in a thread when given. With
    /// `ref_key`, the posted message can later be changed with [`Ctx::update`].
    pub fn post(
        &mut self,
        channel: &str,
        mut message: Value,
        thread_ts: Option<&str>,
        ref_key: Option<&str>,
    ) {
        message["channel"] = json!(channel);
        if let Some(ts) = thread_ts {
            message["thread_ts"] = json!(ts);
        }
        self.call("chat.postMessage", channel, message, ref_key);
    }

    /// Posts in the thread of the message posted with `ref_key` (the sender fills in its
    /// `thread_ts`; queued on `channel`'s line, it goes after that post).
    pub fn post_in_thread_of(&mut self, channel: &str, ref_key: &str, mut message: Value) {
        message["channel"] = json!(channel);
        message["thread_ref"] = json!(ref_key);
        self.call("chat.postMessage", channel, message, None);
    }

    /// Replies in the thread of a message.
    pub fn reply(&mut self, to: &MessageEvent, text: &str) {
        self.post(&to.channel, json!({"text": text}), Some(to.thread()), None);
    }

    /// Changes the message posted with `ref_key` (the sender fills in its channel and `ts`).
    pub fn update(&mut self, channel: &str, ref_key: &str, message: Value) {
        self.call("chat.update", channel, message, Some(ref_key));
    }

    /// Edits the message posted with `ref_key`, keeping at most one edit of it waiting: if one
    /// is still queued (by this handler, or in the outbox and not yet taken by the sender), it
    /// gets this content instead of a second call being queued. For messages edited as they
    /// grow (a storm's summary), where only the latest state matters.
    pub async fn update_latest(
        &mut self,
        channel: &str,
        ref_key: &str,
        message: Value,
    ) -> Result<(), StoreError> {
        if !self
            .replace_queued("chat.update", ref_key, &message)
            .await?
        {
            self.update(channel, ref_key, message);
        }
        Ok(())
    }

    /// Gives the queued `method` call for `ref_key` (queued by this handler, or pending in the
    /// outbox and not yet taken by the sender) the arguments `args` instead, keeping its place
    /// in line. `false` when there is no such call: it went out already, or is going now.
    pub async fn replace_queued(
        &mut self,
        method: &str,
        ref_key: &str,
        args: &Value,
    ) -> Result<bool, StoreError> {
        if let Some(item) = self
            .outbox
            .iter_mut()
            .rev()
            .find(|i| i.method == method && i.ref_key.as_deref() == Some(ref_key))
        {
            item.payload = args.to_string();
            return Ok(true);
        }
        let now_ms = self.now_ms;
        self.db().await?;
        self.batch
            .tx()
            .await?
            .outbox_replace_pending(method, ref_key, &args.to_string(), now_ms)
            .await
    }

    /// How many Slack calls wait on `ordering_key` (a channel's line), this handler's
    /// included: what the channel has yet to take at Slack's pace. The outbox is asked once
    /// per key and handler (a request of many alerts asks about its channel many times), so
    /// its part is as it was at that first look.
    pub async fn queued(&mut self, ordering_key: &str) -> Result<i64, StoreError> {
        let here = self.queued_here.get(ordering_key).copied().unwrap_or(0);
        if let Some(stored) = self.queued_stored.get(ordering_key) {
            return Ok(here + stored);
        }
        self.db().await?;
        let stored = self
            .batch
            .tx()
            .await?
            .outbox_pending_on(ordering_key)
            .await?;
        self.queued_stored.insert(ordering_key.to_string(), stored);
        Ok(here + stored)
    }

    /// A message only `user` sees.
    pub fn ephemeral(&mut self, channel: &str, user: &str, text: &str) {
        self.call(
            "chat.postEphemeral",
            channel,
            json!({"channel": channel, "user": user, "text": text}),
            None,
        );
    }

    /// Answers through a `response_url` (`{"text":…, "response_type":…, "replace_original":…}`).
    pub fn respond(&mut self, response_url: &str, body: Value) {
        self.call(
            "response_url",
            response_url,
            json!({"url": response_url, "body": body}),
            None,
        );
    }

    /// Posts JSON to the incoming webhook `name` (Slack's or another system's; one of the app's
    /// [`Declaration::webhooks`]), through the outbox: paced per hook, retried, in order with
    /// the hook's other posts. The outbox holds the name, not the URL. No token is sent.
    pub fn webhook(&mut self, name: &str, body: Value) {
        self.call(
            "webhook",
            &webhook_ordering_key(name),
            json!({"hook": name, "body": body}),
            None,
        );
    }

    /// Opens a modal now — a `trigger_id` expires 3 s after the click, too soon for the outbox —
    /// and records the call in the outbox as already sent. Open it before any [`Ctx::db`]
    /// write, so the call is not made while the batch holds the store's writer.
    pub async fn open_view_now(
        &mut self,
        trigger_id: &str,
        view: Value,
    ) -> Result<Value, AppError> {
        let args = json!({"trigger_id": trigger_id, "view": view});
        let response = open_view_within_trigger(&self.slack, &args).await?;
        let now_ms = self.now_ms;
        self.db().await?;
        self.batch
            .tx()
            .await?
            .record_sent(
                &NewOutboxItem {
                    ordering_key: "views".into(),
                    method: "views.open".into(),
                    payload: args.to_string(),
                    ref_key: None,
                    not_before_ms: 0,
                    created_at_ms: now_ms,
                },
                &response.to_string(),
                now_ms,
            )
            .await?;
        Ok(response)
    }
}

/// A `trigger_id` is good for 3 s: a `views.open` that takes longer has failed anyway.
const VIEW_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(2_500);

/// `views.open` while the trigger is good: a transient failure (a reset, a 5xx, a 429 short
/// enough) is tried again until [`VIEW_TIMEOUT`] has passed, since the modal cannot wait in the
/// outbox. `exchanged_trigger_id` means the trigger was used already — only this app receives
/// it, so by an earlier attempt at this same input (one a kill cut short before it committed,
/// or a batch retried input by input): the modal is open, and that is success (found by the
/// chaos soak, where the person was told "that did not work" over an open modal).
/// `expired_trigger_id`, no answer before the trigger's time is up, or a 429 whose
/// `Retry-After` ends after it, is [`AppError::TriggerExpired`]: the person is told to run the
/// command again, not that it failed. Any other failure (resets or 5xx until the trigger's
/// end included) is the Slack call's error.
async fn open_view_within_trigger(slack: &SlackApi, args: &Value) -> Result<Value, AppError> {
    let deadline = tokio::time::Instant::now() + VIEW_TIMEOUT;
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        // Our own timeout, not the client's: a call cut off here is the trigger running out.
        let answer = match tokio::time::timeout(left, slack.call("views.open", args)).await {
            Ok(answer) => answer,
            Err(_) => {
                return Err(AppError::TriggerExpired(CallError::Transient(format!(
                    "views.open: no reply in {VIEW_TIMEOUT:?}"
                ))));
            }
        };
        let error = match answer {
            Ok(response) => return Ok(response),
            Err(CallError::Permanent(e)) if e.ends_with("exchanged_trigger_id") => {
                return Ok(json!({"ok": true, "already_open": true}));
            }
            Err(CallError::Permanent(e)) if e.ends_with("expired_trigger_id") => {
                return Err(AppError::TriggerExpired(CallError::Permanent(e)));
            }
            Err(CallError::RateLimited { retry_after }) => {
                (CallError::RateLimited { retry_after }, retry_after)
            }
            Err(e @ CallError::Transient(_)) => (e, pause),
            Err(e) => return Err(e.into()),
        };
        let (error, wait) = error;
        if tokio::time::Instant::now() + wait >= deadline {
            return Err(match error {
                // Slack is busy, not broken: the person need only run the command again.
                rate_limited @ CallError::RateLimited { .. } => {
                    AppError::TriggerExpired(rate_limited)
                }
                other => other.into(),
            });
        }
        tokio::time::sleep(wait).await;
        pause *= 2;
    }
}
