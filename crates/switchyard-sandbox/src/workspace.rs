//! The workspace held in memory: team, people, conversations, messages, views, and the app.
//!
//! Plain data with Slack-shaped JSON renderings. Nothing here does I/O; the Web API, the control
//! API and the delivery tasks lock it briefly and never across an `await`.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::ids::{IdGen, now_secs};
use crate::manifest::Manifest;
use crate::seed::{Seed, TeamSeed};

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub name: String,
    pub real_name: String,
    pub email: Option<String>,
    pub is_admin: bool,
    pub is_owner: bool,
    pub is_bot: bool,
    pub bot_id: Option<String>,
    pub is_app_user: bool,
    pub tz: String,
}

impl User {
    pub fn to_json(&self, team_id: &str) -> Value {
        let mut profile = json!({
            "real_name": self.real_name,
            "display_name": self.name,
            "real_name_normalized": self.real_name,
            "display_name_normalized": self.name,
            "team": team_id,
        });
        if let Some(email) = &self.email {
            profile["email"] = json!(email);
        }
        if let Some(bot_id) = &self.bot_id {
            profile["bot_id"] = json!(bot_id);
        }
        json!({
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "deleted": false,
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_label": self.tz,
            "tz_offset": 0,
            "profile": profile,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": self.is_owner,
            "is_restricted": false,
            "is_ultra_restricted": false,
            "is_bot": self.is_bot,
            "is_app_user": self.is_app_user,
            "updated": 1_700_000_000u64,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub is_private: bool,
    pub is_im: bool,
    pub is_mpim: bool,
    pub is_archived: bool,
    pub created: u64,
    pub creator: String,
    pub topic: String,
    pub purpose: String,
    pub members: Vec<String>,
    /// For a DM: the person on the other side of the bot.
    pub im_user: Option<String>,
}

impl Channel {
    pub fn is_member(&self, user_id: &str) -> bool {
        self.members.iter().any(|m| m == user_id)
    }

    /// The `channel_type` of message events.
    pub fn channel_type(&self) -> &'static str {
        if self.is_im {
            "im"
        } else if self.is_mpim {
            "mpim"
        } else if self.is_private {
            "group"
        } else {
            "channel"
        }
    }

    /// The event subscription its messages need (`message.channels`, …).
    pub fn message_event(&self) -> &'static str {
        match self.channel_type() {
            "im" => "message.im",
            "mpim" => "message.mpim",
            "group" => "message.groups",
            _ => "message.channels",
        }
    }

    pub fn to_json(&self, viewer: Option<&str>) -> Value {
        if self.is_im {
            return json!({
                "id": self.id,
                "created": self.created,
                "is_im": true,
                "is_org_shared": false,
                "user": self.im_user,
                "is_user_deleted": false,
                "priority": 0,
            });
        }
        json!({
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": !self.is_private,
            "is_group": self.is_private,
            "is_im": false,
            "is_mpim": self.is_mpim,
            "is_private": self.is_private,
            "is_archived": self.is_archived,
            "is_general": self.name == "general",
            "is_shared": false,
            "is_ext_shared": false,
            "is_org_shared": false,
            "is_pending_ext_shared": false,
            "is_member": viewer.is_some_and(|v| self.is_member(v)),
            "created": self.created,
            "creator": self.creator,
            "unlinked": 0,
            "topic": {"value": self.topic, "creator": self.creator, "last_set": self.created},
            "purpose": {"value": self.purpose, "creator": self.creator, "last_set": self.created},
            "num_members": self.members.len(),
            "previous_names": [],
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Reaction {
    pub name: String,
    pub users: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Message {
    pub ts: String,
    pub channel: String,
    pub thread_ts: Option<String>,
    pub user: String,
    pub bot_id: Option<String>,
    pub app_id: Option<String>,
    pub text: String,
    pub blocks: Option<Value>,
    pub attachments: Option<Value>,
    pub metadata: Option<Value>,
    pub files: Option<Value>,
    pub reactions: Vec<Reaction>,
    pub edited: Option<(String, String)>,
    pub reply_broadcast: bool,
    pub client_msg_id: Option<String>,
    /// A bot's name and icon for this message (an incoming webhook's `username`,
    /// `icon_emoji`/`icon_url`), shown as `username` and `icons`.
    pub username: Option<String>,
    pub icons: Option<Value>,
    /// Thread bookkeeping, kept on the parent.
    pub reply_count: usize,
    pub reply_users: Vec<String>,
    pub latest_reply: Option<String>,
}

impl Message {
    pub fn is_reply(&self) -> bool {
        self.thread_ts.as_deref().is_some_and(|t| t != self.ts)
    }

    pub fn to_json(&self, team_id: &str) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), json!("message"));
        if self.reply_broadcast {
            m.insert("subtype".into(), json!("thread_broadcast"));
        }
        m.insert("user".into(), json!(self.user));
        m.insert("text".into(), json!(self.text));
        m.insert("ts".into(), json!(self.ts));
        m.insert("team".into(), json!(team_id));
        if let Some(id) = &self.client_msg_id {
            m.insert("client_msg_id".into(), json!(id));
        }
        if let Some(bot_id) = &self.bot_id {
            m.insert("bot_id".into(), json!(bot_id));
        }
        if let Some(app_id) = &self.app_id {
            m.insert("app_id".into(), json!(app_id));
        }
        if let Some(username) = &self.username {
            m.insert("username".into(), json!(username));
        }
        for (key, value) in [
            ("icons", &self.icons),
            ("blocks", &self.blocks),
            ("attachments", &self.attachments),
            ("metadata", &self.metadata),
            ("files", &self.files),
        ] {
            if let Some(v) = value {
                m.insert(key.into(), v.clone());
            }
        }
        if let Some(thread_ts) = &self.thread_ts {
            m.insert("thread_ts".into(), json!(thread_ts));
        }
        if self.reply_count > 0 || self.thread_ts.as_deref() == Some(self.ts.as_str()) {
            m.insert("reply_count".into(), json!(self.reply_count));
            m.insert("reply_users_count".into(), json!(self.reply_users.len()));
            m.insert("reply_users".into(), json!(self.reply_users));
            if let Some(latest) = &self.latest_reply {
                m.insert("latest_reply".into(), json!(latest));
            }
        }
        if let Some((user, ts)) = &self.edited {
            m.insert("edited".into(), json!({"user": user, "ts": ts}));
        }
        if !self.reactions.is_empty() {
            let reactions: Vec<Value> = self
                .reactions
                .iter()
                .map(|r| json!({"name": r.name, "users": r.users, "count": r.users.len()}))
                .collect();
            m.insert("reactions".into(), Value::Array(reactions));
        }
        Value::Object(m)
    }
}

#[derive(Debug, Clone)]
pub struct Ephemeral {
    pub channel: String,
    pub user: String,
    pub message: Message,
}

#[derive(Debug, Clone)]
pub struct View {
    pub id: String,
    pub user: String,
    /// `modal` or `home`.
    pub kind: String,
    /// The view as the app sent it.
    pub definition: Value,
    pub hash: String,
    pub root_view_id: String,
    pub previous_view_id: Option<String>,
    /// Values entered by the person, `state.values`.
    pub state: Value,
    pub open: bool,
}

impl View {
    pub fn external_id(&self) -> Option<&str> {
        self.definition.get("external_id").and_then(Value::as_str)
    }

    pub fn to_json(&self, team_id: &str, app_id: &str, bot_id: &str) -> Value {
        let d = &self.definition;
        let text_or_null = |k: &str| d.get(k).cloned().unwrap_or(Value::Null);
        json!({
            "id": self.id,
            "team_id": team_id,
            "type": self.kind,
            "blocks": d.get("blocks").cloned().unwrap_or_else(|| json!([])),
            "private_metadata": d.get("private_metadata").and_then(Value::as_str).unwrap_or(""),
            "callback_id": d.get("callback_id").and_then(Value::as_str).unwrap_or(""),
            "state": {"values": self.state},
            "hash": self.hash,
            "title": text_or_null("title"),
            "close": text_or_null("close"),
            "submit": text_or_null("submit"),
            "clear_on_close": d.get("clear_on_close").and_then(Value::as_bool).unwrap_or(false),
            "notify_on_close": d.get("notify_on_close").and_then(Value::as_bool).unwrap_or(false),
            "previous_view_id": self.previous_view_id,
            "root_view_id": self.root_view_id,
            "app_id": app_id,
            "external_id": self.external_id().unwrap_or(""),
            "app_installed_team_id": team_id,
            "bot_id": bot_id,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Trigger {
    pub user: String,
    pub created: Instant,
    pub used: bool,
}

#[derive(Debug, Clone)]
pub struct Usergroup {
    pub id: String,
    pub handle: String,
    pub name: String,
    pub users: Vec<String>,
}

/// Where a `response_url` answers, and how often it still may.
#[derive(Debug, Clone)]
pub struct ResponseUrl {
    pub channel: String,
    pub user: String,
    /// The message an action came from (`replace_original` / `delete_original` act on it).
    pub message_ts: Option<String>,
    pub is_ephemeral: bool,
    pub uses: u32,
    pub created: Instant,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub channel: String,
    pub secret: String,
}

#[derive(Debug, Clone)]
pub struct UploadedFile {
    pub id: String,
    pub name: String,
    pub title: String,
    pub uploaded: bool,
    pub content: Vec<u8>,
    pub created: u64,
    pub channels: Vec<String>,
}

impl UploadedFile {
    pub fn to_json(&self, user: &str) -> Value {
        json!({
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title,
            "mimetype": "application/octet-stream",
            "filetype": "binary",
            "pretty_type": "Binary",
            "user": user,
            "size": self.content.len(),
            "mode": "hosted",
            "is_external": false,
            "is_public": true,
            "channels": self.channels,
            "groups": [],
            "ims": [],
        })
    }
}

/// One Web API call the sandbox received.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiCall {
    pub method: String,
    pub args: Value,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub status: u16,
    pub at: u64,
    /// When it arrived, in milliseconds since the epoch, and how long it took to answer.
    pub at_ms: u64,
    pub duration_ms: f64,
    /// The reply's body (`null` when the connection was reset, a string when it was not JSON).
    pub response: Value,
}

/// One thing the sandbox sent (or tried to send) to the app.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: u64,
    /// `event`, `command`, `interaction` or `url_verification`.
    pub kind: String,
    /// The event type, command name or interaction type.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub attempts: Vec<Attempt>,
    pub acked: bool,
    /// `pending`, `acked`, `failed`, `no_retry`.
    pub outcome: String,
    /// What was handed over: the `event_callback` body, the command's form (as an object) or
    /// the interaction payload; over Socket Mode, the envelope's `payload`.
    pub payload: Value,
    /// The Socket Mode envelope type (`events_api`, `slash_commands`, `interactive`).
    pub envelope_type: &'static str,
    /// The ack's body, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_body: Option<Value>,
    /// When it was queued, in milliseconds since the epoch.
    pub created_ms: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Attempt {
    pub transport: String,
    pub retry_num: u32,
    /// `acked`, `timeout`, `http_error`, `connection_failed`, `no_connection`, `dropped`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// When the try started (ms since the epoch) and how long until the ack or the failure.
    pub at_ms: u64,
    pub duration_ms: f64,
}

/// The app under test as installed in the workspace.
#[derive(Debug, Clone)]
pub struct App {
    pub id: String,
    pub bot_user_id: String,
    pub bot_id: String,
    pub bot_token: String,
    pub app_token: String,
    pub signing_secret: String,
    pub manifest: Manifest,
}

pub struct Workspace {
    pub ids: IdGen,
    pub team: TeamSeed,
    pub app: App,
    pub users: Vec<User>,
    pub user_tokens: HashMap<String, String>,
    pub channels: Vec<Channel>,
    /// Per channel, every message (top level and replies) in `ts` order.
    pub messages: HashMap<String, Vec<Message>>,
    pub ephemerals: Vec<Ephemeral>,
    pub views: Vec<View>,
    pub triggers: HashMap<String, Trigger>,
    pub usergroups: Vec<Usergroup>,
    pub files: BTreeMap<String, UploadedFile>,
    pub response_urls: HashMap<String, ResponseUrl>,
    pub webhooks: Vec<Webhook>,
    /// Every Web API call, oldest first; add with [`Workspace::record_call`], which keeps
    /// [`Workspace::call_counts`].
    pub api_calls: Vec<ApiCall>,
    pub deliveries: Vec<DeliveryRecord>,
    /// Per method, the calls in `api_calls` counted as they are recorded: `/_sandbox/stats`
    /// is polled (every 2 ms by the bench) and used to go through the whole log each time,
    /// holding the workspace — and every Web API call with it — while it did.
    call_counts: BTreeMap<String, CallCount>,
    /// Where each channel id is in `channels`, for [`Workspace::channel`]: a post looked its
    /// channel up by a scan of them all (1,000 in the bench). Checked at each use, so a
    /// channel pushed without [`Workspace::add_channel`] is still found, by the scan.
    channel_index: HashMap<String, usize>,
}

/// How many calls of one method the sandbox answered: `ok`, not ok, and of those the
/// limiter's own 429s (not injected faults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCount {
    pub ok: u64,
    pub failed: u64,
    pub rate_limited: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("the seed names {what} {name:?}, which it does not define")]
pub struct SeedReferenceError {
    pub what: &'static str,
    pub name: String,
}

impl Workspace {
    pub fn from_seed(seed: &Seed, manifest: Manifest) -> Result<Self, SeedReferenceError> {
        let ids = IdGen::default();
        let bot_user_id = ids.id("U");
        let bot_id = ids.id("B");
        let mut users = vec![User {
            id: bot_user_id.clone(),
            name: manifest.bot_display_name.clone(),
            real_name: manifest.name.clone(),
            email: None,
            is_admin: false,
            is_owner: false,
            is_bot: true,
            bot_id: Some(bot_id.clone()),
            is_app_user: false,
            tz: "UTC".into(),
        }];
        let mut user_tokens = HashMap::new();
        for u in &seed.users {
            let id = u.id.clone().unwrap_or_else(|| ids.id("U"));
            if !u.is_bot {
                let token = u
                    .token
                    .clone()
                    .unwrap_or_else(|| format!("xoxp-sandbox-{}", u.name));
                user_tokens.insert(token, id.clone());
            }
            users.push(User {
                id,
                name: u.name.clone(),
                real_name: u.real_name.clone().unwrap_or_else(|| u.name.clone()),
                email: u.email.clone(),
                is_admin: u.is_admin,
                is_owner: u.is_owner,
                is_bot: u.is_bot,
                bot_id: u.is_bot.then(|| ids.id("B")),
                is_app_user: false,
                tz: u.tz.clone().unwrap_or_else(|| "UTC".into()),
            });
        }
        let resolve = |users: &[User], name: &str| -> Result<String, SeedReferenceError> {
            users
                .iter()
                .find(|u| u.name == name || u.id == name)
                .map(|u| u.id.clone())
                .ok_or_else(|| SeedReferenceError {
                    what: "user",
                    name: name.to_string(),
                })
        };
        let creator = users
            .iter()
            .find(|u| u.is_owner)
            .unwrap_or(&users[0])
            .id
            .clone();
        let mut channels = Vec::new();
        for c in &seed.channels {
            let mut members = Vec::new();
            for m in &c.members {
                if m == "*" {
                    members.extend(users.iter().skip(1).map(|u| u.id.clone()));
                } else {
                    members.push(resolve(&users, m)?);
                }
            }
            if c.app_member {
                members.push(bot_user_id.clone());
            }
            members.dedup();
            channels.push(Channel {
                id: c.id.clone().unwrap_or_else(|| ids.id("C")),
                name: c.name.clone(),
                is_private: c.is_private,
                is_im: false,
                is_mpim: false,
                is_archived: false,
                created: now_secs(),
                creator: creator.clone(),
                topic: c.topic.clone(),
                purpose: c.purpose.clone(),
                members,
                im_user: None,
            });
        }
        let mut usergroups = Vec::new();
        for g in &seed.usergroups {
            let members = g
                .users
                .iter()
                .map(|u| resolve(&users, u))
                .collect::<Result<Vec<_>, _>>()?;
            usergroups.push(Usergroup {
                id: g.id.clone().unwrap_or_else(|| ids.id("S")),
                handle: g.handle.clone(),
                name: g.name.clone().unwrap_or_else(|| g.handle.clone()),
                users: members,
            });
        }
        let mut ws = Self {
            app: App {
                id: seed.app.id.clone(),
                bot_user_id,
                bot_id,
                bot_token: seed.app.bot_token.clone(),
                app_token: seed.app.app_token.clone(),
                signing_secret: seed.app.signing_secret.clone(),
                manifest,
            },
            ids,
            team: seed.team.clone(),
            users,
            user_tokens,
            channels,
            messages: HashMap::new(),
            ephemerals: Vec::new(),
            views: Vec::new(),
            triggers: HashMap::new(),
            usergroups,
            files: BTreeMap::new(),
            response_urls: HashMap::new(),
            webhooks: Vec::new(),
            api_calls: Vec::new(),
            deliveries: Vec::new(),
            call_counts: BTreeMap::new(),
            channel_index: HashMap::new(),
        };
        ws.channel_index = ws
            .channels
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        for w in &seed.webhooks {
            let channel = ws
                .channel(&w.channel)
                .map(|c| c.id.clone())
                .ok_or_else(|| SeedReferenceError {
                    what: "channel",
                    name: w.channel.clone(),
                })?;
            ws.add_webhook(&channel, w.secret.clone());
        }
        Ok(ws)
    }

    pub fn user(&self, id_or_name: &str) -> Option<&User> {
        let key = id_or_name.trim_start_matches('@');
        self.users
            .iter()
            .find(|u| u.id == key)
            .or_else(|| self.users.iter().find(|u| u.name == key))
    }

    pub fn channel(&self, id_or_name: &str) -> Option<&Channel> {
        let key = id_or_name.trim_start_matches('#');
        self.channel_position(key)
            .map(|i| &self.channels[i])
            .or_else(|| self.channels.iter().find(|c| !c.is_im && c.name == key))
    }

    pub fn channel_mut(&mut self, id: &str) -> Option<&mut Channel> {
        let i = self.channel_position(id)?;
        Some(&mut self.channels[i])
    }

    /// Where the channel `id` is in `channels`: by the index, or by a scan where the index
    /// does not know it.
    fn channel_position(&self, id: &str) -> Option<usize> {
        match self.channel_index.get(id) {
            Some(&i) if self.channels.get(i).is_some_and(|c| c.id == id) => Some(i),
            _ => self.channels.iter().position(|c| c.id == id),
        }
    }

    /// Adds a channel (a new conversation, a DM opened).
    pub fn add_channel(&mut self, channel: Channel) {
        self.channel_index
            .insert(channel.id.clone(), self.channels.len());
        self.channels.push(channel);
    }

    /// Adds a Web API call to the log and to the counts.
    pub fn record_call(&mut self, call: ApiCall) {
        let count = self.call_counts.entry(call.method.clone()).or_default();
        if call.ok {
            count.ok += 1;
        } else {
            count.failed += 1;
        }
        if call.error.as_deref() == Some("ratelimited") {
            count.rate_limited += 1;
        }
        self.api_calls.push(call);
    }

    /// Per method, how the calls recorded so far ended (see [`Workspace::record_call`]).
    pub fn call_counts(&self) -> &BTreeMap<String, CallCount> {
        &self.call_counts
    }

    /// The bot's DM with a person, opened if it is not yet.
    pub fn open_dm(&mut self, user_id: &str) -> String {
        let bot = self.app.bot_user_id.clone();
        if let Some(c) = self
            .channels
            .iter()
            .find(|c| c.is_im && c.im_user.as_deref() == Some(user_id))
        {
            return c.id.clone();
        }
        let id = self.ids.id("D");
        self.add_channel(Channel {
            id: id.clone(),
            name: id.clone(),
            is_private: true,
            is_im: true,
            is_mpim: false,
            is_archived: false,
            created: now_secs(),
            creator: bot.clone(),
            topic: String::new(),
            purpose: String::new(),
            members: vec![user_id.to_string(), bot],
            im_user: Some(user_id.to_string()),
        });
        id
    }

    pub fn add_webhook(&mut self, channel_id: &str, secret: Option<String>) -> Webhook {
        let hook = Webhook {
            id: self.ids.id("B"),
            channel: channel_id.to_string(),
            secret: secret.unwrap_or_else(|| crate::ids::secret(24)),
        };
        self.webhooks.push(hook.clone());
        hook
    }

    pub fn messages_in(&self, channel_id: &str) -> &[Message] {
        self.messages.get(channel_id).map_or(&[], Vec::as_slice)
    }

    pub fn message(&self, channel_id: &str, ts: &str) -> Option<&Message> {
        self.messages_in(channel_id).iter().find(|m| m.ts == ts)
    }

    pub fn message_mut(&mut self, channel_id: &str, ts: &str) -> Option<&mut Message> {
        self.messages
            .get_mut(channel_id)?
            .iter_mut()
            .find(|m| m.ts == ts)
    }

    /// Stores a message, keeping the thread parent's reply bookkeeping.
    pub fn insert_message(&mut self, message: Message) {
        if let Some(thread_ts) = message.thread_ts.clone().filter(|t| *t != message.ts) {
            let reply_user = message.user.clone();
            let reply_ts = message.ts.clone();
            if let Some(parent) = self.message_mut(&message.channel, &thread_ts) {
                parent.thread_ts = Some(thread_ts.clone());
                parent.reply_count += 1;
                if !parent.reply_users.contains(&reply_user) {
                    parent.reply_users.push(reply_user);
                }
                parent.latest_reply = Some(reply_ts);
            }
        }
        self.messages
            .entry(message.channel.clone())
            .or_default()
            .push(message);
    }

    /// Removes a message; a removed thread parent's replies stay, as in Slack.
    pub fn remove_message(&mut self, channel_id: &str, ts: &str) -> Option<Message> {
        let list = self.messages.get_mut(channel_id)?;
        let pos = list.iter().position(|m| m.ts == ts)?;
        let removed = list.remove(pos);
        if let Some(parent_ts) = removed.thread_ts.clone().filter(|t| *t != removed.ts)
            && let Some(parent) = self.message_mut(channel_id, &parent_ts)
        {
            parent.reply_count = parent.reply_count.saturating_sub(1);
        }
        Some(removed)
    }

    /// Top-level messages of a channel (and broadcast replies), as `conversations.history` lists them.
    pub fn history(&self, channel_id: &str) -> Vec<&Message> {
        self.messages_in(channel_id)
            .iter()
            .filter(|m| !m.is_reply() || m.reply_broadcast)
            .collect()
    }

    /// A thread: its parent, then its replies.
    pub fn thread(&self, channel_id: &str, ts: &str) -> Vec<&Message> {
        self.messages_in(channel_id)
            .iter()
            .filter(|m| m.ts == ts || m.thread_ts.as_deref() == Some(ts))
            .collect()
    }

    /// A message posted by the app's bot user.
    pub fn bot_message(&self, channel: &str, text: String) -> Message {
        Message {
            ts: self.ids.ts(),
            channel: channel.to_string(),
            user: self.app.bot_user_id.clone(),
            bot_id: Some(self.app.bot_id.clone()),
            app_id: Some(self.app.id.clone()),
            text,
            ..Message::default()
        }
    }

    pub fn bot_profile(&self) -> Value {
        json!({
            "id": self.app.bot_id,
            "app_id": self.app.id,
            "name": self.app.manifest.bot_display_name,
            "deleted": false,
            "team_id": self.team.id,
            "icons": {},
        })
    }

    pub fn message_json(&self, m: &Message) -> Value {
        let mut v = m.to_json(&self.team.id);
        if m.bot_id.as_deref() == Some(self.app.bot_id.as_str()) {
            v["bot_profile"] = self.bot_profile();
        }
        v
    }

    pub fn new_trigger(&mut self, user: &str) -> String {
        let id = crate::ids::trigger_id();
        self.triggers.insert(
            id.clone(),
            Trigger {
                user: user.to_string(),
                created: Instant::now(),
                used: false,
            },
        );
        id
    }

    /// The person's open modals, bottom first.
    pub fn modal_stack(&self, user: &str) -> Vec<&View> {
        self.views
            .iter()
            .filter(|v| v.open && v.kind == "modal" && v.user == user)
            .collect()
    }

    pub fn view_json(&self, v: &View) -> Value {
        v.to_json(&self.team.id, &self.app.id, &self.app.bot_id)
    }

    pub fn team_json(&self) -> Value {
        json!({"id": self.team.id, "domain": self.team.domain})
    }

    pub fn user_ref_json(&self, user_id: &str) -> Value {
        let name = self
            .user(user_id)
            .map(|u| u.name.clone())
            .unwrap_or_default();
        json!({"id": user_id, "username": name, "name": name, "team_id": self.team.id})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use crate::seed::Seed;

    fn workspace() -> Workspace {
        Workspace::from_seed(&Seed::default(), Manifest::default_manifest()).unwrap()
    }

    #[test]
    fn channels_are_found_by_id_and_name_added_or_pushed() {
        let mut ws = workspace();
        let first = ws.channels[0].clone();
        assert_eq!(ws.channel(&first.id).map(|c| &c.name), Some(&first.name));
        assert_eq!(
            ws.channel(&format!("#{}", first.name)).map(|c| &c.id),
            Some(&first.id)
        );
        let dm = ws.open_dm("U_SOMEONE");
        assert_eq!(ws.channel(&dm).map(|c| c.is_im), Some(true));
        // A channel pushed past the index is still found, by the scan.
        let mut pushed = first.clone();
        pushed.id = "C_PUSHED".into();
        pushed.name = "pushed".into();
        ws.channels.push(pushed);
        assert_eq!(
            ws.channel_mut("C_PUSHED").map(|c| c.name.clone()),
            Some("pushed".into())
        );
        assert!(ws.channel("C_NOWHERE").is_none());
    }

    #[test]
    fn calls_are_counted_as_they_are_recorded() {
        let mut ws = workspace();
        let call = |method: &str, error: Option<&str>| ApiCall {
            method: method.into(),
            args: Value::Null,
            ok: error.is_none(),
            error: error.map(str::to_string),
            status: 200,
            at: 0,
            at_ms: 0,
            duration_ms: 0.0,
            response: Value::Null,
        };
        ws.record_call(call("chat.postMessage", None));
        ws.record_call(call("chat.postMessage", Some("ratelimited")));
        ws.record_call(call("chat.postMessage", Some("fault_ratelimited")));
        ws.record_call(call("auth.test", None));
        assert_eq!(ws.api_calls.len(), 4);
        assert_eq!(
            ws.call_counts()["chat.postMessage"],
            CallCount {
                ok: 1,
                failed: 2,
                rate_limited: 1
            }
        );
        assert_eq!(ws.call_counts()["auth.test"].ok, 1);
    }
}
