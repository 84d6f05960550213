//! The alerts app end to end against the sandbox: intake with an API token (our JSON and
//! Alertmanager's), routing by CEL rules with `continue` and the severity map, the rendered
//! message, one message per alert edited in place on repeat, acknowledge and resolve (with
//! thread lines), the Acknowledge button, bad payloads, and check-config's rule errors.

mod common;

use std::time::Duration;

use common::{AlertsEnv, Setup};
use serde_json::{Value, json};
use switchyard_store::Outcome;

const ALERTS: &str = r#"
[apps.alerts]
enabled = true
default_channel = "C0ALERTS"

[apps.alerts.severity_channels]
critical = "C0CRIT"

[[apps.alerts.rules]]
name = "database"
condition = "labels.team == 'db' AND severity != 'low'"
channels = ["C0DB"]
mentions = ["@here"]
continue = true
# Every repeat's thread line, for the update-in-place flow (the default is 4h).
repeat_interval = "0s"

[[apps.alerts.rules]]
name = "paging"
condition = "severity == 'critical' && labels.team == 'db'"
channels = ["C0ONCALL"]
mentions = ["U0ONCALL"]
repeat_interval = "0s"

[[apps.alerts.rules]]
name = "other db alerts (a critical one stopped at paging)"
condition = "labels.team == 'db'"
channels = ["C0ALERTS"]
"#;

/// The alerts env with this suite's seed and rules.
struct Env(AlertsEnv);

impl std::ops::Deref for Env {
    type Target = AlertsEnv;
    fn deref(&self) -> &AlertsEnv {
        &self.0
    }
}

impl Env {
    /// With `extra` config (an `[access]` section) after `[apps.alerts]`, on SQLite.
    async fn start(extra: &str) -> Self {
        Self::start_on(extra, None).await
    }

    /// As [`Env::start`], on the given store (SQLite in a directory of its own without one).
    async fn start_on(extra: &str, store_url: Option<String>) -> Self {
        Self::start_with(ALERTS, extra, store_url, false).await
    }

    /// With `alerts` as the `[apps.alerts]` config, and the sandbox's rate limits (Slack's)
    /// on or off.
    async fn start_with(
        alerts: &str,
        extra: &str,
        store_url: Option<String>,
        rate_limits: bool,
    ) -> Self {
        Self(
            AlertsEnv::start(Setup {
                seed: &common::seed(
                    &["alice", "bob"],
                    &[
                        ("C0DB", "db-alerts"),
                        ("C0ONCALL", "oncall"),
                        ("C0CRIT", "critical"),
                        ("C0ALERTS", "alerts"),
                    ],
                ),
                alerts,
                extra,
                store_url,
                rate_limits,
                ..Setup::default()
            })
            .await,
        )
    }

    async fn restart(self) -> Self {
        Self(self.0.restart().await)
    }
}

fn blocks_text(message: &Value) -> String {
    message["blocks"].to_string()
}

#[tokio::test]
async fn alerts_are_routed_posted_once_and_edited_in_place() {
    let env = Env::start("").await;
    routed_posted_once_and_edited_in_place(&env).await;
}

/// The routing and update-in-place flow on PostgreSQL (`SWITCHYARD_TEST_POSTGRES_URL`), in a
/// schema of its own.
#[tokio::test]
async fn alerts_on_postgresql() {
    common::on_postgres_schema("alerts", |url| async move {
        let env = Env::start_on("", Some(url)).await;
        routed_posted_once_and_edited_in_place(&env).await;
    })
    .await;
}

/// `POST /api/v1/alerts` with an `Idempotency-Key`, sent again (a client whose answer was
/// lost): the same reply, and nothing done twice. On SQLite, and on PostgreSQL.
#[tokio::test]
async fn a_resent_alert_with_an_idempotency_key_gets_the_same_reply_and_changes_nothing() {
    let env = Env::start("").await;
    idempotent_sync_route(&env).await;
}

#[tokio::test]
async fn a_resent_alert_with_an_idempotency_key_on_postgresql() {
    common::on_postgres_schema("alerts_idempotency", |url| async move {
        let env = Env::start_on("", Some(url)).await;
        idempotent_sync_route(&env).await;
    })
    .await;
}

impl Env {
    /// A POST with an `Idempotency-Key`: status, whether the reply was a replayed one, body.
    async fn send_keyed(&self, key: &str, body: &Value) -> (u16, bool, Value) {
        self.send_keyed_as(&self.token, key, body).await
    }

    /// As [`Env::send_keyed`], with `token`.
    async fn send_keyed_as(&self, token: &str, key: &str, body: &Value) -> (u16, bool, Value) {
        let reply = self
            .http
            .post(format!("http://{}/api/v1/alerts", self.server.addr()))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let replayed = reply
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        (
            reply.status().as_u16(),
            replayed,
            reply.json().await.unwrap(),
        )
    }

    /// Every audit record so far.
    async fn audit_count(&self) -> usize {
        self.server
            .store()
            .audit_query(&switchyard_store::AuditFilter {
                limit: 1000,
                ..switchyard_store::AuditFilter::default()
            })
            .await
            .unwrap()
            .len()
    }
}

async fn idempotent_sync_route(env: &Env) {
    let alert = json!({"title": "Disk full on web-1", "severity": "low", "dedup_key": "idem-disk"});
    let (status, replayed, first) = env.send_keyed("key-1", &alert).await;
    assert_eq!((status, replayed), (200, false), "{first}");
    assert_eq!(first["alerts"][0]["result"], "posted", "{first}");
    env.messages_when("C0ALERTS", |m| m.len() == 1).await;
    let audited = env.audit_count().await;

    // The same request again, twice: the stored reply, the app not run.
    for _ in 0..2 {
        let (status, replayed, again) = env.send_keyed("key-1", &alert).await;
        assert_eq!((status, replayed), (200, true), "{again}");
        assert_eq!(again, first, "the same reply");
    }
    assert_eq!(env.audit_count().await, audited, "nothing audited again");

    // The same key for another request: refused, nothing done.
    let other =
        json!({"title": "Disk full on web-2", "severity": "low", "dedup_key": "idem-other"});
    let (status, replayed, refused) = env.send_keyed("key-1", &other).await;
    assert_eq!((status, replayed), (422, false), "{refused}");
    assert_eq!(refused["error"], "idempotency_key_reused", "{refused}");
    assert_eq!(
        env.audit_count().await,
        audited,
        "nothing audited for the 422"
    );

    // A failed request keeps nothing under its key: fixed, it is done.
    let (status, _, bad) = env.send_keyed("key-2", &json!({"title": ""})).await;
    assert_eq!(status, 400, "{bad}");
    let (status, replayed, done) = env.send_keyed("key-2", &other).await;
    assert_eq!((status, replayed), (200, false), "{done}");
    assert_eq!(done["alerts"][0]["result"], "posted", "{done}");

    // Without a key, a resend is a repeat of the alert (what the key saves a client from).
    let (status, plain) = env.send("/api/v1/alerts", alert.clone()).await;
    assert_eq!(status, 200, "{plain}");
    assert_ne!(plain["alerts"][0]["result"], "posted", "{plain}");

    // One message per alert: the replays posted nothing.
    let messages = env.messages_when("C0ALERTS", |m| m.len() == 2).await;
    assert_eq!(messages.len(), 2, "{messages:#?}");

    // A repeat after its token was revoked goes to the app, which refuses the token: not the
    // stored reply.
    let short_lived = env.make_token("short-lived", &["alerts:write"]).await;
    let third =
        json!({"title": "Disk full on web-3", "severity": "low", "dedup_key": "idem-revoked"});
    let (status, replayed, done) = env.send_keyed_as(&short_lived, "key-3", &third).await;
    assert_eq!((status, replayed), (200, false), "{done}");
    let (status, replayed, again) = env.send_keyed_as(&short_lived, "key-3", &third).await;
    assert_eq!(
        (status, replayed),
        (200, true),
        "in force, replayed: {again}"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    switchyard_engine::admin::revoke_token(
        env.server.store(),
        "short-lived",
        &switchyard_engine::admin::Actor::cli(),
        now_ms,
    )
    .await
    .unwrap();
    let (status, replayed, refused) = env.send_keyed_as(&short_lived, "key-3", &third).await;
    assert_eq!((status, replayed), (401, false), "{refused}");
    assert_eq!(refused["error"], "invalid_token", "{refused}");
    let messages = env.messages_when("C0ALERTS", |m| m.len() == 3).await;
    assert_eq!(messages.len(), 3, "the third alert once: {messages:#?}");
}

async fn routed_posted_once_and_edited_in_place(env: &Env) {
    // A critical db alert: rule "database" (continue) and rule "paging" (stops) match.
    let alert = json!({
        "title": "Replication lag on db-1",
        "severity": "critical",
        "source": "prometheus",
        "description": "Lag is 120 s & growing",
        "labels": {"team": "db", "instance": "db-1"},
        "affected_items": ["db-1", "db-2", "db-3", "db-4", "db-5", "db-6", "db-7"],
        "links": [{"title": "View details", "url": "https://grafana.example.com/d/1"}],
        "analysis": "WAL shipping stalled",
        "dedup_key": "db-lag"
    });
    let (status, reply) = env.send("/api/v1/alerts", alert.clone()).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["alerts"][0]["result"], "posted");
    assert_eq!(reply["alerts"][0]["channels"], json!(["C0DB", "C0ONCALL"]));

    let db = env.messages_when("C0DB", |m| m.len() == 1).await;
    let text = blocks_text(&db[0]);
    assert_eq!(
        db[0]["blocks"][0]["text"]["text"],
        ":red_circle: Replication lag on db-1"
    );
    for part in [
        "*Severity*\\ncritical",
        "*Source*\\nprometheus",
        "<!date^",
        ":fire: Firing",
        "Lag is 120 s &amp; growing",
        "• db-5",
        "_and 2 more_",
        "WAL shipping stalled",
        "<!here>",
        "https://grafana.example.com/d/1",
        "alerts_ack",
        "alerts_resolve",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    assert!(!text.contains("db-6"), "{text}");
    let oncall = env.messages_when("C0ONCALL", |m| m.len() == 1).await;
    assert!(blocks_text(&oncall[0]).contains("<@U0ONCALL>"));
    let ts_db = db[0]["ts"].as_str().unwrap().to_string();
    let ts_oncall = oncall[0]["ts"].as_str().unwrap().to_string();

    // A repeat edits both messages and adds a thread line; no new message.
    let (status, reply) = env.send("/api/v1/alerts", alert.clone()).await;
    assert_eq!(
        (status, &reply["alerts"][0]["result"]),
        (200, &json!("updated"))
    );
    env.messages_when("C0DB", |m| {
        m.len() == 1 && blocks_text(&m[0]).contains("seen 2 times")
    })
    .await;
    assert_eq!(
        env.replies("C0DB", &ts_db, 1).await,
        [":repeat: Fired again (2 times)."]
    );

    // The Acknowledge button (bob, in the on-call channel) edits every message of the alert.
    let click = env
        .http
        .post(format!("{}/_sandbox/actions", env.sandbox.url()))
        .json(&json!({"user": "bob", "channel": "C0ONCALL", "ts": ts_oncall, "action_id": "alerts_ack"}))
        .send()
        .await
        .unwrap();
    assert!(click.status().is_success(), "{:?}", click.text().await);
    for channel in ["C0DB", "C0ONCALL"] {
        let m = env
            .messages_when(channel, |m| {
                m.len() == 1 && blocks_text(&m[0]).contains(":eyes: Acknowledged by <@")
            })
            .await;
        let text = blocks_text(&m[0]);
        assert!(
            !text.contains("alerts_ack"),
            "no Acknowledge once acked: {text}"
        );
        assert!(text.contains("alerts_resolve"), "{text}");
    }
    let lines = env.replies("C0ONCALL", &ts_oncall, 2).await;
    assert_eq!(lines[0], ":repeat: Fired again (2 times).");
    assert!(
        lines[1].starts_with(":eyes: Acknowledged by <@"),
        "{lines:?}"
    );

    // Resolved through the API: edited in place, a thread line, no new message.
    let mut resolved = alert.clone();
    resolved["status"] = json!("resolved");
    let (status, _) = env.send("/api/v1/alerts", resolved.clone()).await;
    assert_eq!(status, 200);
    let m = env
        .messages_when("C0DB", |m| {
            m.len() == 1 && blocks_text(&m[0]).contains(":white_check_mark: Resolved")
        })
        .await;
    assert!(!blocks_text(&m[0]).contains("alerts_resolve"));
    let lines = env.replies("C0DB", &ts_db, 3).await;
    assert_eq!(lines[2], ":white_check_mark: Resolved via prometheus.");
    // A second resolution changes nothing.
    let (_, reply) = env.send("/api/v1/alerts", resolved).await;
    assert_eq!(reply["alerts"][0]["result"], "unchanged");
    // The resolution of an alert never seen is ignored.
    let (_, reply) = env
        .send(
            "/api/v1/alerts",
            json!({"title": "t", "severity": "low", "status": "resolved", "dedup_key": "never"}),
        )
        .await;
    assert_eq!(
        (
            &reply["alerts"][0]["result"],
            &reply["alerts"][0]["channels"]
        ),
        (&json!("ignored"), &json!([]))
    );

    // The audit has the firing, the repeat, the click and the resolution.
    let audit = env.audit("alerts.").await;
    let actions: Vec<&str> = audit.iter().map(|e| e.record.action.as_str()).collect();
    for action in [
        "alerts.fire",
        "alerts.repeat",
        "alerts.ack",
        "alerts.resolve",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }

    // Routing: a medium web alert matches no rule and has no severity entry: the default
    // channel; a critical one goes by the severity map.
    let (_, reply) = env
        .send(
            "/api/v1/alerts",
            json!({"alerts": [
                {"title": "Slow page", "severity": "medium", "labels": {"team": "web"}},
                {"title": "Web down", "severity": "critical",
                 "labels": {"team": "web", "alertname": "WebDown"}}
            ]}),
        )
        .await;
    assert_eq!(
        reply["alerts"][0]["channels"],
        json!(["C0ALERTS"]),
        "{reply}"
    );
    assert_eq!(reply["alerts"][1]["channels"], json!(["C0CRIT"]), "{reply}");
    env.messages_when("C0ALERTS", |m| m.len() == 1).await;
    env.messages_when("C0CRIT", |m| m.len() == 1).await;
}

#[tokio::test]
async fn alertmanager_payloads_and_bad_payloads() {
    let env = Env::start("").await;
    let payload = |status: &str| {
        json!({
            "version": "4",
            "groupKey": "{}:{alertname=\"DiskFull\"}",
            "status": status,
            "receiver": "slack",
            "groupLabels": {"alertname": "DiskFull"},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am:9093",
            "alerts": [{
                "status": status,
                "labels": {"alertname": "DiskFull", "severity": "warning", "instance": "web-3"},
                "annotations": {"summary": "Disk almost full on web-3", "description": "92% used"},
                "startsAt": "2026-11-26T04:46:12Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=disk",
                "fingerprint": "c0ffee00c0ffee00"
            }]
        })
    };
    let (status, reply) = env.send("/api/v1/alertmanager", payload("firing")).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["alerts"][0]["channels"], json!(["C0ALERTS"]));
    let m = env.messages_when("C0ALERTS", |m| m.len() == 1).await;
    let text = blocks_text(&m[0]);
    for part in [
        "Disk almost full on web-3",
        "*Severity*\\nmedium",
        "alertmanager (slack)",
        "<!date^1795668372^",
        "92% used",
        "• web-3",
        "http://prometheus:9090/graph?g0.expr=disk",
        "c0ffee00c0ffee00",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    // The group sent again (another alert joined it, say): the same episode, nothing new.
    let (_, reply) = env.send("/api/v1/alertmanager", payload("firing")).await;
    assert_eq!(reply["alerts"][0]["result"], "unchanged", "{reply}");
    let (status, _) = env.send("/api/v1/alertmanager", payload("resolved")).await;
    assert_eq!(status, 200);
    let m = env
        .messages_when("C0ALERTS", |m| {
            m.len() == 1 && blocks_text(&m[0]).contains(":white_check_mark: Resolved")
        })
        .await;
    let ts = m[0]["ts"].as_str().unwrap();
    assert_eq!(
        env.replies("C0ALERTS", ts, 1).await,
        [":white_check_mark: Resolved via alertmanager (slack)."]
    );

    // Bad payloads: 400 naming the field, and nothing of the batch stored or posted.
    let cases = [
        (
            "/api/v1/alerts",
            json!([{"title": "ok", "severity": "low", "dedup_key": "half"},
                   {"title": "bad", "severity": "urgent"}]),
            "alerts[1].severity",
        ),
        ("/api/v1/alerts", json!({"severity": "low"}), "title"),
        (
            "/api/v1/alerts",
            json!({"title": "t", "severity": "low", "labels": {"n": 1}}),
            "labels.n",
        ),
        (
            "/api/v1/alerts",
            json!({"title": "t", "severity": "low", "links": ["ftp://x"]}),
            "links[0]",
        ),
        (
            "/api/v1/alertmanager",
            json!({"version": "3", "groupKey": "g", "alerts": []}),
            "version",
        ),
        (
            "/api/v1/alertmanager",
            json!({"version": "4", "groupKey": "g",
                   "alerts": [{"status": "firing", "startsAt": "noon"}]}),
            "alerts[0].startsAt",
        ),
    ];
    for (path, body, field) in cases {
        let (status, reply) = env.send(path, body).await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["field"], field, "{reply}");
    }
    let (status, _) = env
        .send(
            "/api/v1/alerts",
            json!({"title": "ok", "severity": "low", "dedup_key": "half"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, reply) = env
        .send(
            "/api/v1/alerts",
            json!({"title": "ok", "severity": "low", "dedup_key": "half"}),
        )
        .await;
    assert_eq!(
        reply["alerts"][0]["result"], "updated",
        "the refused batch stored nothing: this second send is the first repeat"
    );

    // No token, or a token without the scope.
    let (status, reply) = env.send_as(None, "/api/v1/alerts", &json!({})).await;
    assert_eq!(status, 401, "{reply}");
    let reader = env.make_token("reader", &["audit:read"]).await;
    let (status, reply) = env
        .send_as(Some(&reader), "/api/v1/alerts", &json!({}))
        .await;
    assert_eq!(status, 403, "{reply}");
}

#[tokio::test]
async fn a_huge_alert_is_cut_to_slacks_limits_not_refused() {
    let env = Env::start("").await;
    let long = "é".repeat(5_000);
    let (status, reply) = env
        .send(
            "/api/v1/alerts",
            json!({
                "title": long, "severity": "high", "source": long, "description": long,
                "analysis": long, "dedup_key": "huge",
                "affected_items": std::iter::once(long.clone()).chain((1..300).map(|i| format!("host-{i}"))).collect::<Vec<_>>(),
                "links": [{"title": long, "url": "https://example.com/x"}]
            }),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    // The sandbox checks Block Kit against Slack's limits: the post went through.
    let m = env.messages_when("C0ALERTS", |m| m.len() == 1).await;
    let header = m[0]["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        header.chars().count() <= 150 && header.ends_with('…'),
        "{header}"
    );
    assert!(blocks_text(&m[0]).contains("_and 295 more_"));
}

#[tokio::test]
async fn access_gates_the_buttons_by_their_permission_names() {
    let env = Env::start(
        "[access]\ndefault_role = \"responder\"\n[access.roles]\nresponder = [\"alerts.resolve\"]\n",
    )
    .await;
    let (status, _) = env
        .send(
            "/api/v1/alerts",
            json!({"title": "Queue backlog", "severity": "medium", "dedup_key": "queue"}),
        )
        .await;
    assert_eq!(status, 200);
    let m = env.messages_when("C0ALERTS", |m| m.len() == 1).await;
    let ts = m[0]["ts"].as_str().unwrap().to_string();
    let click = |action_id: &'static str| {
        env.http
            .post(format!("{}/_sandbox/actions", env.sandbox.url()))
            .json(&json!({"user": "bob", "channel": "C0ALERTS", "ts": ts, "action_id": action_id}))
            .send()
    };
    assert!(click("alerts_ack").await.unwrap().status().is_success());
    // Refused (audited as alerts.ack), and the message still offers Acknowledge.
    env.audited_as("alerts.ack", Outcome::Refused).await;
    assert!(
        blocks_text(&env.messages_when("C0ALERTS", |m| m.len() == 1).await[0])
            .contains("alerts_ack")
    );
    assert!(click("alerts_resolve").await.unwrap().status().is_success());
    env.messages_when("C0ALERTS", |m| {
        m.len() == 1 && blocks_text(&m[0]).contains(":white_check_mark: Resolved by <@")
    })
    .await;
}

#[test]
fn check_config_names_the_rule_whose_condition_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    common::write_private(
        &path,
        r#"
[slack]
bot_token = "xoxb-1"
app_token = "xapp-1"

[apps.alerts]
enabled = true
template = "{% if %}"
storm_backlog = 0

[apps.alerts.severity_channels]
urgent = "C1"

[[apps.alerts.rules]]
name = "fine"
condition = "severity == 'critical'"
channels = ["C1"]

[[apps.alerts.rules]]
name = "broken db rule"
condition = "severity == == 'critical' AND"
channels = ["C1"]
storm_quiet = "soon"
storm_backlog = 2
"#,
    )
    .unwrap();
    let file = path.display().to_string();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .args(["check-config", "--config", &file]);
    for (name, _) in std::env::vars() {
        if name.starts_with("SLACK_") || name.starts_with("SWITCHYARD_") {
            command.env_remove(name);
        }
    }
    let out = command.output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{file}: apps.alerts.rules[1].condition"))
            && stderr.contains("broken db rule"),
        "{stderr}"
    );
    assert!(!stderr.contains("rules[0]"), "{stderr}");
    assert!(stderr.contains("apps.alerts.template"), "{stderr}");
    assert!(
        stderr.contains("apps.alerts.severity_channels.urgent"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}: apps.alerts.storm_backlog"))
            && stderr.contains("0 is not a number of calls waiting from 1 to 1000"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{file}: apps.alerts.rules[1].storm_quiet"))
            && stderr.contains("\"soon\" is not a duration"),
        "{stderr}"
    );
    assert!(!stderr.contains("rules[1].storm_backlog"), "{stderr}");
}

// ---- grouping, timing and storms ----

const GROUPED: &str = r#"
[apps.alerts]
enabled = true
default_channel = "C0ALERTS"
repeat_interval = "3s"

[[apps.alerts.rules]]
name = "web"
condition = "labels.team == 'web'"
channels = ["C0DB"]
group_by = ["cluster"]
group_wait = "1s"
group_interval = "2s"
"#;

fn web_alert(key: &str, cluster: &str) -> Value {
    json!({
        "title": format!("{key} is slow"), "severity": "high", "source": "prometheus",
        "labels": {"team": "web", "cluster": cluster}, "dedup_key": key
    })
}

fn now_s() -> f64 {
    switchyard_engine::now_ms() as f64 / 1000.0
}

fn ts_of(message: &Value) -> f64 {
    message["ts"].as_str().unwrap().parse().unwrap()
}

impl Env {
    /// The details of the audit records whose action starts with `prefix`, oldest first.
    async fn audited(&self, prefix: &str) -> Vec<String> {
        let mut entries = self.audit(prefix).await;
        entries.reverse();
        entries.into_iter().map(|e| e.record.detail).collect()
    }

    /// Everything the bot wrote in `channel`: top-level messages and their threads' replies.
    async fn everything_in(&self, channel: &str) -> (Vec<Value>, Vec<Value>) {
        let v = self.get(&format!("/channels/{channel}/messages")).await;
        let top: Vec<Value> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["bot_id"].is_string())
            .cloned()
            .collect();
        let mut replies = Vec::new();
        for m in &top {
            if m["reply_count"].as_i64().unwrap_or(0) > 0 {
                let ts = m["ts"].as_str().unwrap();
                let thread = self.get(&format!("/channels/{channel}/threads/{ts}")).await;
                replies.extend(thread["messages"].as_array().unwrap()[1..].iter().cloned());
            }
        }
        (top, replies)
    }
}

#[tokio::test]
async fn groups_wait_then_post_together_and_repeats_keep_to_repeat_interval() {
    let env = Env::start_with(GROUPED, "", None, true).await;
    groups_wait_then_post_together(&env).await;
}

/// Grouping and storm folding on PostgreSQL (`SWITCHYARD_TEST_POSTGRES_URL`), each in a schema
/// of its own: the group rows' locks, the tick's flush and the storm's queued messages there.
#[tokio::test]
async fn grouping_on_postgresql() {
    common::on_postgres_schema("alerts_grouping", |url| async move {
        let env = Env::start_with(GROUPED, "", Some(url), true).await;
        groups_wait_then_post_together(&env).await;
    })
    .await;
}

#[tokio::test]
async fn storm_folding_on_postgresql() {
    common::on_postgres_schema("alerts_storm", |url| async move {
        let env = Env::start_with(STORMY, "", Some(url), true).await;
        storm_folded_with_nothing_lost(&env).await;
    })
    .await;
}

async fn groups_wait_then_post_together(env: &Env) {
    let fired = now_s();
    let (status, reply) = env
        .send(
            "/api/v1/alerts",
            json!([
                web_alert("w1", "eu"),
                web_alert("w2", "eu"),
                web_alert("w3", "us")
            ]),
        )
        .await;
    assert_eq!(status, 200, "{reply}");

    // Held for group_wait, then posted by the app's tick: one flush per group.
    let messages = env.messages_when("C0DB", |m| m.len() == 3).await;
    for m in &messages {
        assert!(ts_of(m) - fired >= 0.99, "held for group_wait: {m}");
    }
    let flushes = env.audited("alerts.flush").await;
    assert_eq!(flushes.len(), 2, "{flushes:?}");
    assert!(
        flushes
            .iter()
            .any(|d| d.contains("2 alert(s)") && d.contains("cluster=eu")),
        "{flushes:?}"
    );
    assert!(
        flushes
            .iter()
            .any(|d| d.contains("1 alert(s)") && d.contains("cluster=us")),
        "{flushes:?}"
    );

    // Sent again within repeat_interval: the message is edited, no thread line. The
    // acknowledgement's line after it is the thread's first.
    let w1 = messages
        .iter()
        .find(|m| blocks_text(m).contains("`w1`"))
        .unwrap();
    let ts_w1 = w1["ts"].as_str().unwrap().to_string();
    let (_, reply) = env.send("/api/v1/alerts", web_alert("w1", "eu")).await;
    assert_eq!(reply["alerts"][0]["result"], "updated");
    let mut ack = web_alert("w1", "eu");
    ack["status"] = json!("acknowledged");
    env.send("/api/v1/alerts", ack).await;
    assert_eq!(
        env.replies("C0DB", &ts_w1, 1).await,
        [":eyes: Acknowledged via prometheus."]
    );
    env.messages_when("C0DB", |m| {
        m.iter()
            .any(|m| blocks_text(m).contains("`w1` · seen 2 times"))
    })
    .await;

    // A new alert of a group that posted waits for group_interval after that flush.
    let (_, reply) = env.send("/api/v1/alerts", web_alert("w4", "eu")).await;
    assert_eq!(reply["alerts"][0]["result"], "posted");
    let messages = env.messages_when("C0DB", |m| m.len() == 4).await;
    let w4 = messages
        .iter()
        .find(|m| blocks_text(m).contains("`w4`"))
        .expect("w4 posted");
    assert!(
        ts_of(w4) - fired >= 2.99,
        "held for group_interval: {w4}, fired at {fired}"
    );

    // After repeat_interval, a repeat adds its line.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    env.send("/api/v1/alerts", web_alert("w1", "eu")).await;
    assert_eq!(
        env.replies("C0DB", &ts_w1, 2).await[1],
        ":repeat: Fired again (3 times)."
    );
}

#[tokio::test]
async fn a_pending_group_flush_survives_a_restart() {
    let config = GROUPED.replace("group_wait = \"1s\"", "group_wait = \"3s\"");
    let env = Env::start_with(&config, "", None, false).await;
    let (status, _) = env
        .send(
            "/api/v1/alerts",
            json!([web_alert("r1", "eu"), web_alert("r2", "eu")]),
        )
        .await;
    assert_eq!(status, 200);
    let env = env.restart().await;
    env.messages_when("C0DB", |m| m.len() == 2).await;
    let flushes = env.audited("alerts.flush").await;
    assert_eq!(flushes.len(), 1, "flushed once: {flushes:?}");
}

const STORMY: &str = r#"
[apps.alerts]
enabled = true
default_channel = "C0ALERTS"

[apps.alerts.severity_channels]
critical = "C0CRIT"

[[apps.alerts.rules]]
name = "cluster"
condition = "labels.kind == 'storm'"
channels = ["C0DB"]
"#;

/// 2,000 alerts for one channel with Slack's rate limits on: a few posted, the rest folded
/// into one summary with their details in its thread; none missing, no 429, and another
/// channel's alert goes meanwhile.
#[tokio::test]
async fn a_storm_is_folded_into_one_summary_and_its_thread_with_nothing_lost() {
    let env = Env::start_with(STORMY, "", None, true).await;
    storm_folded_with_nothing_lost(&env).await;
}

async fn storm_folded_with_nothing_lost(env: &Env) {
    const N: usize = 2_000;
    let severities = ["critical", "high", "medium", "low"];
    let sources = ["prometheus", "grafana", "zabbix"];
    for batch in 0..N / 100 {
        let alerts: Vec<Value> = (batch * 100..(batch + 1) * 100)
            .map(|i| {
                json!({
                    "title": format!("Node {i} unreachable"),
                    "severity": severities[i % 4], "source": sources[i % 3],
                    "labels": {"kind": "storm", "node": format!("n{i}")},
                    "dedup_key": format!("storm-{i:04}")
                })
            })
            .collect();
        let (status, reply) = env.send("/api/v1/alerts", json!(alerts)).await;
        assert_eq!(status, 200, "{reply}");
        if batch == N / 200 {
            // Another channel's alert, in the middle of the storm.
            let (_, reply) = env
                .send(
                    "/api/v1/alerts",
                    json!({"title": "Payments down", "severity": "critical", "dedup_key": "pay"}),
                )
                .await;
            assert_eq!(reply["alerts"][0]["channels"], json!(["C0CRIT"]));
        }
    }
    // Not behind the storm: the other channel has its alert while the storm still posts.
    env.messages_when("C0CRIT", |m| m.len() == 1).await;

    let mut missing: Vec<usize> = (0..N).collect();
    let mut last = (Vec::new(), Vec::new());
    for _ in 0..240 {
        last = env.everything_in("C0DB").await;
        let text: String = last
            .0
            .iter()
            .chain(&last.1)
            .map(|m| format!("{}{}", m["blocks"], m["text"]))
            .collect();
        missing.retain(|i| !text.contains(&format!("`storm-{i:04}`")));
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (top, replies) = last;
    assert!(
        missing.is_empty(),
        "{} alerts missing from Slack",
        missing.len()
    );
    let summaries: Vec<&Value> = top
        .iter()
        .filter(|m| blocks_text(m).contains("Alert storm"))
        .collect();
    assert_eq!(summaries.len(), 1, "one summary: {top:#?}");
    let posted_alone = top.len() - 1;
    eprintln!(
        "storm of {N}: {posted_alone} posted alone, 1 summary, {} thread messages",
        replies.len()
    );
    assert!(
        posted_alone <= 10,
        "a few posted on their own: {posted_alone}"
    );
    // Up to ~500 alerts to a thread message (plain text, up to 38,000 characters; 4 of them
    // here on SQLite): a message goes when the sender takes it, full or not, so how full they
    // are depends on how fast the alerts come (13 on PostgreSQL in a debug build).
    assert!(
        replies.len() <= 40,
        "the thread has many alerts to a message: {} replies",
        replies.len()
    );
    // The summary ends with the storm's whole count.
    let folded = N - posted_alone;
    let summary = env
        .messages_when("C0DB", |m| {
            m.iter()
                .any(|m| blocks_text(m).contains(&format!("Alert storm: {folded} alerts")))
        })
        .await;
    let summary = summary
        .iter()
        .find(|m| blocks_text(m).contains("Alert storm"))
        .unwrap()
        .clone();
    for part in ["By severity", "prometheus", "zabbix", "Newest"] {
        assert!(blocks_text(&summary).contains(part), "{part}: {summary}");
    }

    // Nothing refused by Slack (every call paced within its limit) and nothing failed.
    let stats = env.get("/stats").await;
    for method in ["chat.postMessage", "chat.update"] {
        // A method not called at all has no entry (the summary may have gone out with its
        // final counts, never edited).
        let failed = &stats["api_calls"][method]["failed"];
        assert!(failed.is_null() || failed == 0, "{method}: {stats}");
    }
    assert_eq!(env.server.store().outbox_counts().await.unwrap().failed, 0);

    // A folded alert is resolved through the API: a line in the storm's thread, the summary's
    // counts follow.
    let (_, reply) = env
        .send(
            "/api/v1/alerts",
            json!({"title": "Node 1999 unreachable", "severity": "high", "source": "zabbix",
                   "status": "resolved", "dedup_key": "storm-1999"}),
        )
        .await;
    assert_eq!(reply["alerts"][0]["result"], "updated", "{reply}");
    env.messages_when("C0DB", |m| {
        m.iter().any(|m| {
            let text = blocks_text(m);
            text.contains("Alert storm") && text.contains("resolved: 1")
        })
    })
    .await;
    let ts = summary["ts"].as_str().unwrap();
    let mut found = false;
    for _ in 0..100 {
        let thread = env.get(&format!("/channels/C0DB/threads/{ts}")).await;
        found = thread["messages"].as_array().unwrap().iter().any(|m| {
            let text = format!("{}{}", m["blocks"], m["text"]);
            text.contains("Resolved via zabbix") && text.contains("`storm-1999`")
        });
        if found {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(found, "the resolution is a line in the storm's thread");
}

const TIGHT: &str = r#"
[apps.alerts]
enabled = true
default_channel = "C0ALERTS"

[[apps.alerts.rules]]
name = "tight"
condition = "labels.kind == 'tight'"
channels = ["C0ONCALL"]
storm_backlog = 1
storm_quiet = "1s"
"#;

fn tight_alert(key: &str) -> Value {
    json!({"title": format!("{key} down"), "severity": "high", "source": "zabbix",
           "labels": {"kind": "tight"}, "dedup_key": key})
}

/// A rule's own `storm_backlog` and `storm_quiet`: with one call waiting its group folds, and
/// once it has been quiet for a second its next alert is a message of its own again.
#[tokio::test]
async fn a_rules_storm_backlog_and_quiet_period_apply_to_its_group() {
    let env = Env::start_with(TIGHT, "", None, true).await;
    let alerts: Vec<Value> = (0..10).map(|i| tight_alert(&format!("t-{i}"))).collect();
    let (status, reply) = env.send("/api/v1/alerts", json!(alerts)).await;
    assert_eq!(status, 200, "{reply}");
    // The first is posted; from the second on, one call waits: folded.
    let top = env
        .messages_when("C0ONCALL", |m| {
            m.iter()
                .any(|m| blocks_text(m).contains("Alert storm: 9 alerts"))
        })
        .await;
    assert_eq!(top.len(), 2, "one posted alone and the summary: {top:#?}");
    assert!(blocks_text(&top[0]).contains("`t-0`"), "{top:#?}");
    for _ in 0..100 {
        let (_, replies) = env.everything_in("C0ONCALL").await;
        let text: String = replies.iter().map(|m| m["text"].to_string()).collect();
        if (1..10).all(|i| text.contains(&format!("`t-{i}`"))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Quiet for longer than storm_quiet, the line drained: the next alert is posted alone.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (_, reply) = env.send("/api/v1/alerts", tight_alert("t-after")).await;
    assert_eq!(reply["alerts"][0]["result"], "posted", "{reply}");
    let top = env
        .messages_when("C0ONCALL", |m| {
            m.iter().any(|m| blocks_text(m).contains("`t-after`"))
        })
        .await;
    assert_eq!(top.len(), 3, "{top:#?}");
}

const TWO_CLUSTERS: &str = r#"
[apps.alerts]
enabled = true
default_channel = "C0ALERTS"

[[apps.alerts.rules]]
name = "web"
condition = "labels.team == 'web'"
channels = ["C0DB"]
group_by = ["cluster"]
"#;

/// Two clients at once, each request with alerts of two groups in the opposite order of the
/// other's: on PostgreSQL the groups are locked in one order whatever the payload's, so no
/// request fails on a deadlock (PostgreSQL would abort one of two transactions waiting on
/// each other's group rows).
#[tokio::test]
async fn opposite_orders_of_groups_do_not_deadlock_on_postgresql() {
    common::on_postgres_schema("alerts_lock_order", |url| async move {
        let env = std::sync::Arc::new(Env::start_with(TWO_CLUSTERS, "", Some(url), false).await);
        let mut clients = Vec::new();
        for (client, order) in [["eu", "us"], ["us", "eu"]].into_iter().enumerate() {
            let env = env.clone();
            clients.push(tokio::spawn(async move {
                for round in 0..40 {
                    let alerts: Vec<Value> = (0..6)
                        .map(|i| web_alert(&format!("lock-{client}-{round}-{i}"), order[i % 2]))
                        .collect();
                    let (status, reply) = env.send("/api/v1/alerts", json!(alerts)).await;
                    assert_eq!(status, 200, "round {round} of client {client}: {reply}");
                }
            }));
        }
        for client in clients {
            client.await.unwrap();
        }
        let mut text = String::new();
        for _ in 0..200 {
            let (top, replies) = env.everything_in("C0DB").await;
            text = top
                .iter()
                .chain(&replies)
                .map(|m| format!("{}{}", m["blocks"], m["text"]))
                .collect();
            if (0..2).all(|c| text.contains(&format!("`lock-{c}-39-5`"))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the last alerts never arrived: {text}");
    })
    .await;
}

/// One payload of many alerts is taken as a batch (read and written a statement per table),
/// yet answered as if each alert came alone, in order: an alert fired and resolved in the same
/// payload, a known one acknowledged, a new one beside it, and a key unknown and resolved.
#[tokio::test]
async fn one_payload_of_many_alerts_is_taken_in_order_as_if_each_came_alone() {
    let env = Env::start("").await;
    let known = json!({"title": "Disk full on db-2", "severity": "high", "source": "zabbix",
                       "labels": {"team": "db"}, "dedup_key": "disk-db-2"});
    let (status, reply) = env.send("/api/v1/alerts", known.clone()).await;
    assert_eq!(
        (status, &reply["alerts"][0]["result"]),
        (200, &json!("posted"))
    );
    let first = env.messages_when("C0DB", |m| m.len() == 1).await;
    let ts_known = first[0]["ts"].as_str().unwrap().to_string();

    let mut acked = known.clone();
    acked["status"] = json!("acknowledged");
    let payload = json!([
        {"title": "CPU hot on db-3", "severity": "high", "source": "prometheus",
         "labels": {"team": "db"}, "dedup_key": "cpu-db-3"},
        acked,
        {"title": "Flapping link", "severity": "high", "labels": {"team": "db"},
         "dedup_key": "flap"},
        {"title": "Flapping link", "severity": "high", "labels": {"team": "db"},
         "status": "resolved", "dedup_key": "flap"},
        {"title": "Never seen", "severity": "low", "status": "resolved", "dedup_key": "ghost"},
        {"title": "CPU hot on db-3", "severity": "high", "source": "prometheus",
         "labels": {"team": "db"}, "dedup_key": "cpu-db-3"},
    ]);
    let (status, reply) = env.send("/api/v1/alerts", payload).await;
    assert_eq!(status, 200, "{reply}");
    let results: Vec<&str> = reply["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["result"].as_str().unwrap())
        .collect();
    // The second "CPU hot" is a repeat of the first (no start time: a new episode each time).
    assert_eq!(
        results,
        [
            "posted", "updated", "posted", "updated", "ignored", "updated"
        ],
        "{reply}"
    );

    // Slack shows each: the known alert edited in place with its thread line, "CPU hot" and
    // "Flapping link" posted once each, the flapping one edited to resolved.
    let db = env
        .messages_when("C0DB", |m| {
            m.len() == 3
                && m.iter().any(|m| {
                    let text = blocks_text(m);
                    text.contains("Flapping link") && text.contains("Resolved")
                })
                && m.iter().any(|m| {
                    m["ts"] == ts_known.as_str() && blocks_text(m).contains("Acknowledged")
                })
        })
        .await;
    let cpu: Vec<&Value> = db
        .iter()
        .filter(|m| blocks_text(m).contains("CPU hot on db-3"))
        .collect();
    assert_eq!(
        cpu.len(),
        1,
        "one message for the alert sent twice: {db:#?}"
    );
    let replies = env.replies("C0DB", &ts_known, 1).await;
    assert!(
        replies[0].contains("Acknowledged via zabbix"),
        "{replies:?}"
    );

    // The store has what the answers say: sent again alone, each is unchanged or a repeat.
    let again = json!([
        {"title": "Flapping link", "severity": "high", "labels": {"team": "db"},
         "status": "resolved", "dedup_key": "flap"},
        {"title": "Never seen", "severity": "low", "status": "resolved", "dedup_key": "ghost"},
    ]);
    let (_, reply) = env.send("/api/v1/alerts", again).await;
    assert_eq!(reply["alerts"][0]["result"], "unchanged", "{reply}");
    assert_eq!(reply["alerts"][1]["result"], "ignored", "{reply}");
    let audit = env
        .server
        .store()
        .audit_query(&switchyard_store::AuditFilter {
            object: Some("alert:flap".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .rev()
        .map(|e| e.record.action.as_str())
        .collect();
    assert_eq!(actions, ["alerts.fire", "alerts.resolve"]);
}

// ---- a storm summary's Acknowledge all / Resolve all ----

const BULK_SEED: &str = r#"
[team]
id = "T0SANDBOX"
name = "Sandbox"
domain = "sandbox"

[[users]]
id = "U0ALICE"
name = "alice"

[[users]]
id = "U0BOB"
name = "bob"

[[channels]]
id = "C0DB"
name = "db-alerts"
members = ["alice", "bob"]
app_member = true

[[channels]]
id = "C0ONCALL"
name = "oncall"
members = ["alice", "bob"]
app_member = true

[[channels]]
id = "C0ALERTS"
name = "alerts"
members = ["alice", "bob"]
app_member = true
"#;

/// The storm in C0DB (folding from the first call waiting); the grafana alerts also go to
/// C0ONCALL, each a message of its own there.
const BULK: &str = r#"
[apps.alerts]
enabled = true
default_channel = "C0ALERTS"

[[apps.alerts.rules]]
name = "bulk"
condition = "labels.kind == 'bulk'"
channels = ["C0DB"]
storm_backlog = 1
continue = true

[[apps.alerts.rules]]
name = "bulk copy"
condition = "labels.kind == 'bulk' && source == 'grafana'"
channels = ["C0ONCALL"]
"#;

/// Alice may acknowledge and resolve; bob may not.
const BULK_ACCESS: &str = r#"
[access]
default_role = "viewer"
[access.roles]
viewer = ["alerts.silence"]
responder = ["alerts.ack", "alerts.resolve"]
[access.bind]
responder = ["U0ALICE"]
"#;

/// More than one statement's worth of rows (500) in the storm.
const BULK_N: usize = 600;

async fn start_bulk(store_url: Option<String>) -> Env {
    Env(AlertsEnv::start(Setup {
        seed: BULK_SEED,
        alerts: BULK,
        extra: BULK_ACCESS,
        store_url,
        ..Setup::default()
    })
    .await)
}

impl Env {
    /// Clicks `action_id` on the message `ts` in `channel` as `user`.
    async fn click(&self, user: &str, channel: &str, ts: &str, action_id: &str) {
        let click = self
            .http
            .post(format!("{}/_sandbox/actions", self.sandbox.url()))
            .json(&json!({"user": user, "channel": channel, "ts": ts, "action_id": action_id}))
            .send()
            .await
            .unwrap();
        assert!(click.status().is_success(), "{:?}", click.text().await);
    }

    /// The storm summary in `channel` once `check` holds for its blocks.
    async fn summary_when(&self, channel: &str, check: impl Fn(&str) -> bool) -> Value {
        let top = self
            .messages_when(channel, |m| {
                m.iter().any(|m| {
                    let text = blocks_text(m);
                    text.contains("Alert storm") && check(&text)
                })
            })
            .await;
        top.into_iter()
            .find(|m| blocks_text(m).contains("Alert storm"))
            .unwrap()
    }

    /// The texts of the ephemerals `user` has in `channel` once there are at least `n`.
    async fn ephemerals(&self, user: &str, channel: &str, n: usize) -> Vec<String> {
        let mut texts = Vec::new();
        for _ in 0..400 {
            let v = self
                .get(&format!("/ephemerals?user={user}&channel={channel}"))
                .await;
            texts = v["ephemerals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["message"]["text"].as_str().unwrap_or("").to_string())
                .collect();
            if texts.len() >= n {
                return texts;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{n} ephemerals expected for {user} in {channel}: {texts:#?}");
    }

    /// How many alerts' records `action` has with outcome `ok` (a storm's own not counted).
    async fn alerts_audited_ok(&self, action: &str) -> usize {
        self.server
            .store()
            .audit_query(&switchyard_store::AuditFilter {
                action_prefix: Some(action.into()),
                outcome: Some(Outcome::Ok),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .iter()
            .filter(|e| e.record.action == action && e.record.object.starts_with("alert:"))
            .count()
    }

    /// Whether a line of the storm's thread in `channel` contains `part`, within a while.
    async fn storm_thread_has(&self, channel: &str, part: &str) -> bool {
        for _ in 0..200 {
            let (_, replies) = self.everything_in(channel).await;
            if replies
                .iter()
                .any(|m| m["text"].as_str().unwrap_or("").contains(part))
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

#[tokio::test]
async fn a_storms_acknowledge_all_and_resolve_all_change_every_folded_alert() {
    let env = start_bulk(None).await;
    storm_buttons_change_every_folded_alert(&env).await;
}

#[tokio::test]
async fn storm_buttons_on_postgresql() {
    common::on_postgres_schema("alerts_storm_buttons", |url| async move {
        let env = start_bulk(Some(url)).await;
        storm_buttons_change_every_folded_alert(&env).await;
    })
    .await;
}

async fn storm_buttons_change_every_folded_alert(env: &Env) {
    for part in 0..2 {
        let alerts: Vec<Value> = (part * BULK_N / 2..(part + 1) * BULK_N / 2)
            .map(|i| {
                json!({"title": format!("Disk {i} failing"), "severity": "high",
                       "source": if i == 5 { "grafana" } else { "zabbix" },
                       "labels": {"kind": "bulk"}, "dedup_key": format!("bulk-{i:03}")})
            })
            .collect();
        let (status, reply) = env.send("/api/v1/alerts", json!(alerts)).await;
        assert_eq!(status, 200, "{reply}");
    }
    // The first is posted on its own (nothing waited yet); the rest are folded.
    let folded = BULK_N - 1;
    let summary = env
        .summary_when("C0DB", |t| {
            t.contains(&format!("Alert storm: {folded} alerts")) && t.contains("alerts_ack_all")
        })
        .await;
    let ts = summary["ts"].as_str().unwrap().to_string();
    assert!(blocks_text(&summary).contains("alerts_resolve_all"));
    let copy = env.messages_when("C0ONCALL", |m| m.len() == 1).await;
    assert!(
        blocks_text(&copy[0]).contains("Disk 5 failing"),
        "{copy:#?}"
    );

    // Bob may not acknowledge: refused (audited under the single button's permission name,
    // told to him), and nothing changes.
    env.click("bob", "C0DB", &ts, "alerts_ack_all").await;
    env.audited_as("alerts.ack", Outcome::Refused).await;
    let told = env.ephemerals("bob", "C0DB", 1).await;
    assert!(told[0].contains(":no_entry:"), "{told:?}");
    assert!(
        env.audit("alerts.ack")
            .await
            .iter()
            .all(|e| e.record.outcome == Outcome::Refused),
        "nothing acknowledged"
    );
    let summary = env.summary_when("C0DB", |_| true).await;
    assert!(
        blocks_text(&summary).contains(&format!("firing: {folded}")),
        "{summary}"
    );

    // Alice clicks twice at once (as two people might): the first acknowledges every folded
    // alert, the second changes nothing and says so.
    tokio::join!(
        env.click("alice", "C0DB", &ts, "alerts_ack_all"),
        env.click("alice", "C0DB", &ts, "alerts_ack_all"),
    );
    let summary = env
        .summary_when("C0DB", |t| t.contains(&format!("acknowledged: {folded}")))
        .await;
    let text = blocks_text(&summary);
    assert!(!text.contains("firing:"), "{text}");
    assert!(
        !text.contains("alerts_ack_all"),
        "nothing left to acknowledge: {text}"
    );
    assert!(text.contains("alerts_resolve_all"), "{text}");
    let told = env.ephemerals("alice", "C0DB", 1).await;
    assert_eq!(
        told,
        [format!(
            "All {folded} alerts of this storm are already acknowledged or resolved."
        )]
    );
    assert!(
        env.storm_thread_has(
            "C0DB",
            &format!(":eyes: Acknowledged all {folded} by <@U0ALICE>.")
        )
        .await,
        "one line in the storm's thread"
    );
    // Each alert audited, as the single button audits it.
    assert_eq!(env.alerts_audited_ok("alerts.ack").await, folded);
    // The folded alert's own message in the other channel is edited, as the single button
    // edits it; the alert posted on its own before the storm is not in it.
    env.messages_when("C0ONCALL", |m| {
        m.len() == 1 && blocks_text(&m[0]).contains(":eyes: Acknowledged by <@U0ALICE>")
    })
    .await;
    let alone = env
        .messages_when("C0DB", |m| m.len() == 2)
        .await
        .into_iter()
        .find(|m| !blocks_text(m).contains("Alert storm"))
        .unwrap();
    assert!(blocks_text(&alone).contains("alerts_ack"), "{alone}");

    // Resolve all: every one resolved, no button left.
    env.click("alice", "C0DB", &ts, "alerts_resolve_all").await;
    let summary = env
        .summary_when("C0DB", |t| t.contains(&format!("resolved: {folded}")))
        .await;
    let text = blocks_text(&summary);
    assert!(
        !text.contains("alerts_resolve_all") && !text.contains("acknowledged:"),
        "{text}"
    );
    assert!(
        env.storm_thread_has(
            "C0DB",
            &format!(":white_check_mark: Resolved all {folded} by <@U0ALICE>.")
        )
        .await
    );
    env.messages_when("C0ONCALL", |m| {
        m.len() == 1 && blocks_text(&m[0]).contains(":white_check_mark: Resolved by <@U0ALICE>")
    })
    .await;
    assert_eq!(env.alerts_audited_ok("alerts.resolve").await, folded);
    assert_eq!(env.server.store().outbox_counts().await.unwrap().failed, 0);
}
