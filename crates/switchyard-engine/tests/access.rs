//! `[access]` end to end, in process, against the sandbox over Socket Mode: the CMDB tool's
//! admin/operator/viewer model, a Slack user group resolved with `usergroups.users.list`,
//! channel gates that refuse and that ignore, refusals told (ephemerals) and audited, and a
//! binding changed at run time through `/api/v1/access`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::Harness;
use serde_json::{Value, json};
use switchyard_engine::admin::{Actor, create_token};
use switchyard_engine::app::SlashCommand;
use switchyard_engine::{App, AppError, Ctx, Declaration, Input, MentionCommand, Server};
use switchyard_sandbox::Sandbox;
use switchyard_store::{AuditFilter, NewApiToken, Outcome};

/// An app with a command per kind of permission: `@bot status|view|ack|enable|disable`,
/// `/machines enable|disable|status …`, and a button `machines:ack:…` (`@bot post` posts it).
/// Whatever runs says so in the channel.
struct Machines;

#[async_trait]
impl App for Machines {
    fn declaration(&self) -> Declaration {
        let mention = |word| MentionCommand { word, help: word };
        Declaration {
            name: "machines",
            mentions: ["status", "view", "ack", "enable", "disable", "post"]
                .into_iter()
                .map(mention)
                .collect(),
            slash_commands: vec![SlashCommand {
                command: "/machines".into(),
                description: "machines",
                usage_hint: "enable|disable|status <machine>",
            }],
            subcommands: vec!["enable", "disable", "status"],
            action_prefixes: vec!["machines:"],
            ..Declaration::default()
        }
    }

    async fn handle(&self, ctx: &mut Ctx<'_>, input: &Input) -> Result<(), AppError> {
        match input {
            Input::Mention {
                command, message, ..
            } if command == "post" => {
                let button = json!([{"type": "actions", "elements": [{"type": "button", "action_id": "machines:ack:laser-1",
                    "text": {"type": "plain_text", "text": "Ack"}, "value": "laser-1"}]}]);
                ctx.post(
                    &message.channel,
                    json!({"text": "laser-1 is down", "blocks": button}),
                    None,
                    None,
                );
            }
            Input::Action {
                action_id,
                user,
                channel,
                ..
            } => ctx.post(
                channel.as_deref().unwrap_or(""),
                json!({"text": format!("done {action_id} by {user}")}),
                None,
                None,
            ),
            Input::Mention {
                command, message, ..
            } => ctx.post(
                &message.channel,
                json!({"text": format!("done {command} by {}", message.user)}),
                None,
                None,
            ),
            Input::Command {
                text,
                channel,
                user,
                ..
            } => ctx.post(
                channel,
                json!({"text": format!("done /machines {text} by {user}")}),
                None,
                None,
            ),
            _ => {}
        }
        Ok(())
    }
}

struct Setup {
    sandbox: Sandbox,
    server: Server,
    http: reqwest::Client,
    /// Name → id, for people and channels.
    ids: BTreeMap<String, String>,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        let manifest = json!({
            "display_information": {"name": "Machines"},
            "features": {"bot_user": {"display_name": "machines"}, "slash_commands": [{"command": "/machines", "description": "machines"}]},
            "oauth_config": {"scopes": {"bot": ["app_mentions:read", "chat:write", "commands", "usergroups:read"]}},
            "settings": {"event_subscriptions": {"bot_events": ["app_mention"]}, "interactivity": {"is_enabled": true}, "socket_mode_enabled": true},
        });
        let sandbox = common::sandbox(Some(manifest)).await;
        let http = reqwest::Client::new();
        let control = |path: &str| {
            let (http, url) = (http.clone(), format!("{}/_sandbox{path}", sandbox.url()));
            async move {
                http.get(url)
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap()
            }
        };
        let mut ids = BTreeMap::new();
        for (list, key) in [("/users", "users"), ("/channels", "channels")] {
            for item in control(list).await[key].as_array().unwrap() {
                ids.insert(
                    item["name"].as_str().unwrap().to_string(),
                    item["id"].as_str().unwrap().to_string(),
                );
            }
        }
        let groups: Value = http
            .post(format!("{}usergroups.list", sandbox.api_url()))
            .bearer_auth(sandbox.bot_token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let oncall = groups["usergroups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["handle"] == "oncall")
            .expect("the seed's @oncall (alice and bob)")["id"]
            .as_str()
            .unwrap()
            .to_string();
        // alice: admin by id; bob (and alice): operator through the group `night`, whose
        // member is the Slack user group @oncall; carol: nothing bound, so the default viewer.
        let access = format!(
            r#"[access]
default_role = "viewer"
[access.roles]
admin = ["*"]
operator = ["*.status", "machines.ack"]
viewer = ["*.status", "*.view"]
[access.groups]
night = ["usergroup:{oncall}"]
[access.bind]
admin = ["{alice}"]
operator = ["group:night"]
[[access.gates]]
actions = ["machines.enable"]
channels = ["{alerts}"]
[[access.gates]]
actions = ["machines.disable"]
channels = ["{alerts}"]
elsewhere = "ignore"
"#,
            alice = ids["alice"],
            alerts = ids["alerts"],
        );
        let Harness {
            sandbox,
            server,
            http,
            dir,
        } = Harness::start_in(sandbox, vec![Arc::new(Machines)], true, &access).await;
        Self {
            sandbox,
            server,
            http,
            ids,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.sandbox.control().get(path).await.expect("control API")
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.sandbox
            .control()
            .post(path, &body)
            .await
            .expect("control API")
    }

    async fn mention(&self, user: &str, channel: &str, text: &str) {
        let body = json!({"user": user, "channel": channel, "text": format!("<@{}> {text}", self.sandbox.bot_user_id())});
        let r = self.post("/messages", body).await;
        assert_eq!(r["ok"], true, "{r}");
    }

    async fn command(&self, user: &str, channel: &str, text: &str) {
        let r = self
            .post(
                "/commands",
                json!({"user": user, "channel": channel, "command": "/machines", "text": text}),
            )
            .await;
        assert_eq!(r["ok"], true, "{r}");
    }

    /// Waits for a message in `channel` with exactly this text, and returns it.
    async fn message(&self, channel: &str, text: &str) -> Value {
        for _ in 0..200 {
            let v = self.get(&format!("/channels/{channel}/messages")).await;
            if let Some(m) = v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["text"] == text)
            {
                return m.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {text:?} in #{channel}");
    }

    /// Waits for a message in `channel` with exactly this text.
    async fn handled(&self, channel: &str, text: &str) {
        self.message(channel, text).await;
    }

    /// The `n`th ephemeral `user` was shown (waiting for it).
    async fn ephemeral(&self, user: &str, n: usize) -> String {
        let v = self
            .get(&format!(
                "/ephemerals?user={user}&wait_for={n}&timeout_ms=10000"
            ))
            .await;
        v["ephemerals"][n - 1]["message"]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("ephemeral {n} for {user}: {v}"))
            .to_string()
    }

    async fn refusals(&self) -> Vec<switchyard_store::AuditEntry> {
        let filter = AuditFilter {
            outcome: Some(Outcome::Refused),
            ..AuditFilter::default()
        };
        self.server.store().audit_query(&filter).await.unwrap()
    }

    /// Waits until `n` refusals are in the audit log.
    async fn wait_refusals(&self, n: usize) -> Vec<switchyard_store::AuditEntry> {
        for _ in 0..200 {
            let found = self.refusals().await;
            if found.len() >= n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "timed out waiting for {n} refusals: {:?}",
            self.refusals().await
        );
    }

    async fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("http://{}{path}", self.server.addr());
        let request = match body {
            Some(body) => self.http.request(method.parse().unwrap(), url).json(&body),
            None => self.http.request(method.parse().unwrap(), url),
        };
        let r = request.bearer_auth(token).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

#[tokio::test]
async fn roles_allow_and_refuse_and_gates_refuse_or_ignore_all_audited() {
    let s = Setup::new().await;
    let id = |name: &str| s.ids[name].clone();

    // viewer (carol, by default): status and view, not ack.
    s.mention("carol", "general", "status").await;
    s.handled("general", &format!("done status by {}", id("carol")))
        .await;
    s.mention("carol", "general", "view").await;
    s.handled("general", &format!("done view by {}", id("carol")))
        .await;
    s.mention("carol", "general", "ack").await;
    assert_eq!(
        s.ephemeral("carol", 1).await,
        ":no_entry: `machines.ack` needs a role that allows it; you have `viewer`"
    );

    // operator (bob, through @oncall in the group `night`): ack, not view.
    s.mention("bob", "general", "ack").await;
    s.handled("general", &format!("done ack by {}", id("bob")))
        .await;
    s.mention("bob", "general", "view").await;
    assert_eq!(
        s.ephemeral("bob", 1).await,
        ":no_entry: `machines.view` needs a role that allows it; you have `operator`"
    );

    // admin (alice): anything, but `machines.enable` only in #alerts (the gate).
    s.mention("alice", "general", "view").await;
    s.handled("general", &format!("done view by {}", id("alice")))
        .await;
    s.mention("alice", "alerts", "enable").await;
    s.handled("alerts", &format!("done enable by {}", id("alice")))
        .await;
    s.mention("alice", "general", "enable").await;
    assert_eq!(
        s.ephemeral("alice", 1).await,
        format!(
            ":no_entry: `machines.enable` works only in <#{}>",
            id("alerts")
        )
    );

    // A slash command's sub-command has its own name, gated the same way.
    s.command("bob", "general", "enable laser-1").await;
    assert_eq!(
        s.ephemeral("bob", 2).await,
        format!(
            ":no_entry: `machines.enable` works only in <#{}>",
            id("alerts")
        )
    );
    s.command("alice", "alerts", "enable laser-1").await;
    s.handled(
        "alerts",
        &format!("done /machines enable laser-1 by {}", id("alice")),
    )
    .await;

    // A button is `machines.ack` too: carol (viewer) is refused, bob (operator) is not.
    s.mention("alice", "general", "post").await;
    let posted = s.message("general", "laser-1 is down").await;
    let ts = posted["ts"].as_str().unwrap();
    for user in ["carol", "bob"] {
        let click = json!({"user": user, "channel": "general", "ts": ts, "action_id": "machines:ack:laser-1"});
        assert_eq!(s.post("/actions", click).await["ok"], true);
    }
    assert_eq!(
        s.ephemeral("carol", 2).await,
        ":no_entry: `machines.ack` needs a role that allows it; you have `viewer`"
    );
    s.handled(
        "general",
        &format!("done machines:ack:laser-1 by {}", id("bob")),
    )
    .await;

    // An `ignore` gate: nothing said, but audited.
    s.command("alice", "general", "disable laser-1").await;
    let refusals = s.wait_refusals(6).await;
    let seen: BTreeSet<(String, String, String)> = refusals
        .iter()
        .map(|e| {
            (
                e.record.actor.clone(),
                e.record.action.clone(),
                e.record.via.to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = [
        (id("carol"), "machines.ack", "mention"),
        (id("bob"), "machines.view", "mention"),
        (id("alice"), "machines.enable", "mention"),
        (id("bob"), "machines.enable", "slash_command"),
        (id("alice"), "machines.disable", "slash_command"),
        (id("carol"), "machines.ack", "button"),
    ]
    .into_iter()
    .map(|(a, b, c)| (a, b.to_string(), c.to_string()))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(refusals.len(), 6, "{refusals:?}");
    let ignored = refusals
        .iter()
        .find(|e| e.record.action == "machines.disable")
        .unwrap();
    assert!(
        ignored.record.detail.ends_with("(ignored)"),
        "{:?}",
        ignored.record
    );
    assert_eq!(ignored.record.object, format!("channel:{}", id("general")));
    // Its refusal committed with its outbox rows: none told alice.
    let outbox = s.server.store().outbox_list(None, 1000).await.unwrap();
    assert!(
        !outbox
            .iter()
            .any(|i| i.payload.contains("machines.disable")),
        "an ignored input says nothing"
    );
    assert!(
        !s.get("/channels/general/messages").await["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["text"].as_str().unwrap_or("").contains("disable")),
        "and does nothing"
    );
    s.server.shutdown().await;
}

#[tokio::test]
async fn a_binding_changed_through_the_api_takes_effect_at_once_and_is_audited() {
    let s = Setup::new().await;
    let carol = s.ids["carol"].clone();
    let store = s.server.store().clone();
    let now = switchyard_engine::now_ms();
    let token = |name: &str, scope: &str| NewApiToken {
        name: name.into(),
        scopes: vec![scope.into()],
        expires_at_ms: None,
    };
    let writer = create_token(
        &store,
        &token("admin-script", "access:write"),
        &Actor::cli(),
        now,
    )
    .await
    .unwrap();
    let reader = create_token(
        &store,
        &token("dashboard", "access:read"),
        &Actor::cli(),
        now,
    )
    .await
    .unwrap();

    s.mention("carol", "general", "ack").await;
    assert!(s.ephemeral("carol", 1).await.contains("you have `viewer`"));

    let bind = json!({"role": "operator", "subject": carol});
    let (status, body) = s
        .api(
            "POST",
            "/api/v1/access/bind",
            &reader.plaintext,
            Some(bind.clone()),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("missing_scope"))
    );
    let (status, body) = s
        .api(
            "POST",
            "/api/v1/access/bind",
            &writer.plaintext,
            Some(bind.clone()),
        )
        .await;
    assert_eq!(
        (status, &body),
        (200, &json!({"ok": true, "changed": true}))
    );
    let (_, again) = s
        .api(
            "POST",
            "/api/v1/access/bind",
            &writer.plaintext,
            Some(bind.clone()),
        )
        .await;
    assert_eq!(again["changed"], false);
    let (status, bad) = s
        .api(
            "POST",
            "/api/v1/access/bind",
            &writer.plaintext,
            Some(json!({"role": "root", "subject": carol})),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["detail"].as_str().unwrap().contains("not a role"),
        "{bad}"
    );

    // In effect for the very next input.
    s.mention("carol", "general", "ack").await;
    s.handled("general", &format!("done ack by {carol}")).await;

    let (status, listed) = s
        .api("GET", "/api/v1/access", &reader.plaintext, None)
        .await;
    assert_eq!(status, 200, "{listed}");
    let bindings = listed["bindings"].as_array().unwrap();
    assert!(
        bindings
            .iter()
            .any(|b| b["subject"] == carol.as_str() && b["source"] == "store"),
        "{listed}"
    );
    assert!(
        bindings
            .iter()
            .any(|b| b["subject"] == "group:night" && b["source"] == "config"),
        "{listed}"
    );

    let (status, _) = s
        .api(
            "POST",
            "/api/v1/access/unbind",
            &writer.plaintext,
            Some(bind),
        )
        .await;
    assert_eq!(status, 200);
    s.mention("carol", "general", "ack").await;
    assert!(s.ephemeral("carol", 2).await.contains("you have `viewer`"));

    let changes = store
        .audit_query(&AuditFilter {
            action_prefix: Some("access.".into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let changes: Vec<(&str, &str, &str, &str)> = changes
        .iter()
        .map(|e| {
            (
                e.record.action.as_str(),
                e.record.actor_kind.as_str(),
                e.record.object.as_str(),
                e.record.detail.as_str(),
            )
        })
        .collect();
    let subject = format!("subject {carol}");
    assert_eq!(
        changes,
        [
            ("access.unbind", "token", "role:operator", subject.as_str()),
            ("access.bind", "token", "role:operator", subject.as_str()),
        ],
        "the no-op bind is not audited"
    );
    s.server.shutdown().await;
}
