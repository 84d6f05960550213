//! What an app is: a declaration of what it handles, and handlers.
//!
//! Like Bolt's listeners, an app says what it matches — mention commands, slash commands,
//! `action_id`s, view `callback_id`s, event types, message patterns — and the engine routes to it.
//! Adding an app never means editing the engine.

use async_trait::async_trait;
use serde_json::{Value, json};
use switchyard_store::{NewOutboxItem, StoreError, Tx};

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
    /// Our own bot's messages are dropped unless an app asks for them.
    pub wants_own_messages: bool,
    /// For the manifest: the bot scopes and bot events the app needs.
    pub scopes: Vec<&'static str>,
    pub bot_events: Vec<&'static str>,
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

/// An app's failure. `User` errors are shown to the person as they are; others as a short note.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    User(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Slack(#[from] CallError),
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

    /// Does the work, in a transaction: state changes and the Slack messages they cause are
    /// committed together.
    async fn handle(&self, ctx: &mut Ctx, input: &Input) -> Result<(), AppError>;
}

/// What a handler works with: a store transaction, and Slack calls that go out through the
/// outbox when (and only if) the transaction commits.
pub struct Ctx {
    pub tx: Tx<'static>,
    slack: SlackApi,
    now_ms: i64,
    enqueued: usize,
}

impl Ctx {
    pub(crate) fn new(tx: Tx<'static>, slack: SlackApi, now_ms: i64) -> Self {
        Self {
            tx,
            slack,
            now_ms,
            enqueued: 0,
        }
    }

    pub(crate) fn into_tx(self) -> (Tx<'static>, usize) {
        (self.tx, self.enqueued)
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Queues any Web API call; `ordering_key` keeps calls with the same key in order.
    pub async fn call(
        &mut self,
        method: &str,
        ordering_key: &str,
        args: Value,
        ref_key: Option<&str>,
    ) -> Result<i64, StoreError> {
        self.enqueued += 1;
        self.tx
            .enqueue(&NewOutboxItem {
                ordering_key: ordering_key.to_string(),
                method: method.to_string(),
                payload: args.to_string(),
                ref_key: ref_key.map(str::to_string),
                not_before_ms: 0,
                created_at_ms: self.now_ms,
            })
            .await
    }

    /// Posts a message (`{"text":…}` and/or `{"blocks":…}`), in a thread when given. With
    /// `ref_key`, the posted message can later be changed with [`Ctx::update`].
    pub async fn post(
        &mut self,
        channel: &str,
        mut message: Value,
        thread_ts: Option<&str>,
        ref_key: Option<&str>,
    ) -> Result<i64, StoreError> {
        message["channel"] = json!(channel);
        if let Some(ts) = thread_ts {
            message["thread_ts"] = json!(ts);
        }
        self.call("chat.postMessage", channel, message, ref_key)
            .await
    }

    /// Replies in the thread of a message.
    pub async fn reply(&mut self, to: &MessageEvent, text: &str) -> Result<i64, StoreError> {
        self.post(&to.channel, json!({"text": text}), Some(to.thread()), None)
            .await
    }

    /// Changes the message posted with `ref_key` (the sender fills in its channel and `ts`).
    pub async fn update(
        &mut self,
        channel: &str,
        ref_key: &str,
        message: Value,
    ) -> Result<i64, StoreError> {
        self.call("chat.update", channel, message, Some(ref_key))
            .await
    }

    /// A message only `user` sees.
    pub async fn ephemeral(
        &mut self,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<i64, StoreError> {
        self.call(
            "chat.postEphemeral",
            channel,
            json!({"channel": channel, "user": user, "text": text}),
            None,
        )
        .await
    }

    /// Answers through a `response_url` (`{"text":…, "response_type":…, "replace_original":…}`).
    pub async fn respond(&mut self, response_url: &str, body: Value) -> Result<i64, StoreError> {
        self.call(
            "response_url",
            response_url,
            json!({"url": response_url, "body": body}),
            None,
        )
        .await
    }

    /// Posts JSON to an incoming webhook (Slack's or another system's), through the outbox: paced
    /// per URL, retried, in order with the URL's other posts. No token is sent.
    pub async fn webhook(&mut self, url: &str, body: Value) -> Result<i64, StoreError> {
        self.call("webhook", url, json!({"url": url, "body": body}), None)
            .await
    }

    /// Opens a modal now — a `trigger_id` expires 3 s after the click, too soon for the outbox —
    /// and records the call in the outbox as already sent.
    pub async fn open_view_now(
        &mut self,
        trigger_id: &str,
        view: Value,
    ) -> Result<Value, AppError> {
        let args = json!({"trigger_id": trigger_id, "view": view});
        let response = self.slack.call("views.open", &args).await?;
        self.tx
            .record_sent(
                &NewOutboxItem {
                    ordering_key: "views".into(),
                    method: "views.open".into(),
                    payload: args.to_string(),
                    ref_key: None,
                    not_before_ms: 0,
                    created_at_ms: self.now_ms,
                },
                &response.to_string(),
                self.now_ms,
            )
            .await?;
        Ok(response)
    }
}
