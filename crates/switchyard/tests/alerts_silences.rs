//! Silences and inhibition end to end against the sandbox: silences made and ended through
//! the API (matchers with all four operators, bad input, scopes), from the alert's Silence
//! menu and with `@switchyard silence …`; expiry by time posting what was held; permission
//! refusals audited; inhibition muting and letting go; check-config's inhibit rule errors.

mod common;

use std::time::Duration;

use common::{AlertsEnv, Setup};
use serde_json::{Value, json};
use switchyard_store::Outcome;

const ALERTS: &str = r#"
[apps.alerts]
enabled = true
default_channel = "C0ALERTS"

[[apps.alerts.inhibit_rules]]
name = "a critical alert mutes the cluster's lesser ones"
source_matchers = ['severity="critical"']
target_matchers = ['severity=~"medium|low"']
equal = ["cluster"]
"#;

/// The alerts env with this suite's seed and inhibit rule, its token able to silence; its
/// helpers read and act in #alerts.
struct Env(AlertsEnv);

impl std::ops::Deref for Env {
    type Target = AlertsEnv;
    fn deref(&self) -> &AlertsEnv {
        &self.0
    }
}

impl Env {
    async fn start(extra: &str, store_url: Option<String>) -> Self {
        Self(
            AlertsEnv::start(Setup {
                seed: &common::seed(&["alice", "bob"], &[("C0ALERTS", "alerts")]),
                alerts: ALERTS,
                extra,
                store_url,
                token: ("monitoring", &["alerts:write", "alerts:silence"]),
                ..Setup::default()
            })
            .await,
        )
    }

    async fn restart(self) -> Self {
        Self(self.0.restart().await)
    }

    async fn silence(&self, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, "/api/v1/silences", Some(body))
            .await
    }

    /// `@bot <text>` as `user`; the message's ts.
    async fn mention(&self, user: &str, text: &str) -> String {
        self.0.mention(user, "C0ALERTS", text).await
    }

    /// The bot's top-level messages once `check` holds for them.
    async fn messages_when(&self, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.0.messages_when("C0ALERTS", check).await
    }

    /// The thread's replies' texts once there are `n`.
    async fn replies(&self, ts: &str, n: usize) -> Vec<String> {
        self.0.replies("C0ALERTS", ts, n).await
    }

    /// The audit records of `action` once one with `outcome` is there.
    async fn audited(&self, action: &str, outcome: Outcome) -> Vec<switchyard_store::AuditEntry> {
        self.audited_as(action, outcome).await
    }
}

fn titles(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            m["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn has_title(messages: &[Value], title: &str) -> bool {
    titles(messages).iter().any(|t| t.ends_with(title))
}

#[tokio::test]
async fn silences_via_the_api_hold_matching_alerts_until_they_end() {
    let env = Env::start("", None).await;
    api_flow(&env).await;
}

/// The API flow on PostgreSQL (`SWITCHYARD_TEST_POSTGRES_URL`), in a schema of its own.
#[tokio::test]
async fn silences_on_postgresql() {
    common::on_postgres_schema("alerts_silences", |url| async move {
        let env = Env::start("", Some(url)).await;
        api_flow(&env).await;
    })
    .await;
}

async fn api_flow(env: &Env) {
    // All four operators, as Alertmanager's objects and as text.
    let (status, reply) = env
        .silence(json!({
            "matchers": [
                {"name": "team", "value": "db", "isRegex": false, "isEqual": true},
                "env=~\"prod-.*\"",
                {"name": "host", "value": "db-9", "isEqual": false},
                "zone!~'eu-.*'"
            ],
            "duration": "1h",
            "comment": "DB maintenance"
        }))
        .await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["silence"]["id"].as_i64().unwrap();
    assert_eq!(reply["silence"]["status"]["state"], "active");
    assert_eq!(reply["silence"]["createdBy"], "monitoring");

    let labels = |team: &str, env_: &str, host: &str, zone: &str| json!({"team": team, "env": env_, "host": host, "zone": zone});
    let held = env
        .alert(
            json!({"title": "Held", "severity": "high", "dedup_key": "held",
                      "labels": labels("db", "prod-1", "db-1", "us-1")}),
        )
        .await;
    assert_eq!(held["result"], "silenced", "{held}");
    assert_eq!(held["muted"]["silence"], id);
    // Each of these breaks one matcher: posted.
    for (key, l) in [
        ("eq", labels("web", "prod-1", "db-1", "us-1")),
        ("re", labels("db", "dev", "db-1", "us-1")),
        ("ne", labels("db", "prod-1", "db-9", "us-1")),
        ("nre", labels("db", "prod-1", "db-1", "eu-2")),
    ] {
        let r = env
            .alert(json!({"title": format!("Posted {key}"), "severity": "high",
                          "dedup_key": key, "labels": l}))
            .await;
        assert_eq!(r["result"], "posted", "{key}: {r}");
    }
    let messages = env.messages_when(|m| m.len() == 4).await;
    assert!(!has_title(&messages, "Held"), "{:?}", titles(&messages));
    // Stored and findable: a repeat is counted, still not posted; the silence lists it.
    let again = env
        .alert(
            json!({"title": "Held", "severity": "high", "dedup_key": "held",
                      "labels": labels("db", "prod-1", "db-1", "us-1")}),
        )
        .await;
    assert_eq!(again["result"], "updated", "{again}");
    let (_, shown) = env
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/silences/{id}"),
            None,
        )
        .await;
    assert_eq!(shown["held_alerts"], json!(["held"]), "{shown}");
    let metrics = env
        .http
        .get(format!("http://{}/metrics", env.server.addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "switchyard_alerts_silences_active 1",
        "switchyard_alerts_held{reason=\"silenced\"} 1",
        "switchyard_alerts_held{reason=\"inhibited\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    let muted = env.audited("alerts.mute", Outcome::Ok).await;
    assert!(
        muted[0].record.detail.contains(&format!("silence #{id}")),
        "{:?}",
        muted[0].record
    );

    // Ended early through the API: the held alert is posted at once.
    let (status, ended) = env
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/silences/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["silence"]["status"]["state"], "expired");
    let messages = env.messages_when(|m| m.len() == 5).await;
    assert!(has_title(&messages, "Held"), "{:?}", titles(&messages));
    let (status, _) = env
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/silences/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = env
        .call(reqwest::Method::DELETE, "/api/v1/silences/999999", None)
        .await;
    assert_eq!(status, 404);
    env.audited("alerts.unsilence", Outcome::Ok).await;

    // Ended by time: a short silence's held alert is posted by the tick, with no new input.
    let (status, short) = env
        .silence(json!({"matchers": "alertname=Flapping", "duration": "2s"}))
        .await;
    assert_eq!(status, 200, "{short}");
    let r = env
        .alert(
            json!({"title": "Flapping", "severity": "low", "dedup_key": "flap",
                      "labels": {"alertname": "Flapping"}}),
        )
        .await;
    assert_eq!(r["result"], "silenced", "{r}");
    let messages = env.messages_when(|m| m.len() == 6).await;
    assert!(has_title(&messages, "Flapping"), "{:?}", titles(&messages));
    // A held alert that resolved before its silence ended is never posted.
    let (_, brief) = env
        .silence(json!({"matchers": "alertname=Brief", "duration": "2s"}))
        .await;
    let brief_id = brief["silence"]["id"].as_i64().unwrap();
    let body = json!({"title": "Brief", "severity": "low", "dedup_key": "brief",
                      "labels": {"alertname": "Brief"}});
    assert_eq!(env.alert(body.clone()).await["result"], "silenced");
    let mut resolved = body;
    resolved["status"] = json!("resolved");
    env.alert(resolved).await;

    // The list shows them all, the ended ones as expired.
    let mut listed = Value::Null;
    for _ in 0..400 {
        let (status, list) = env
            .call(reqwest::Method::GET, "/api/v1/silences", None)
            .await;
        assert_eq!(status, 200);
        listed = list;
        let states: Vec<&str> = listed["silences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"]["state"].as_str().unwrap())
            .collect();
        if states == ["expired", "expired", "expired"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let silences = listed["silences"].as_array().unwrap();
    assert_eq!(silences.len(), 3, "{listed}");
    assert_eq!(silences[0]["id"], brief_id, "newest first");
    assert!(
        silences.iter().all(|s| s["status"]["state"] == "expired"),
        "{listed}"
    );
    // The tick has let go of the brief one too: still only the six posts.
    env.audited("alerts.silence", Outcome::Ok).await;
    assert_eq!(env.messages_when(|m| m.len() >= 6).await.len(), 6);

    // Bad input: 400 naming the field, nothing stored.
    let cases = [
        (json!({"duration": "1h"}), "matchers"),
        (json!({"matchers": [], "duration": "1h"}), "matchers"),
        (
            json!({"matchers": "team=~\".*\"", "duration": "1h"}),
            "matchers",
        ),
        (
            json!({"matchers": [{"value": "x"}], "duration": "1h"}),
            "matchers[0].name",
        ),
        (
            json!({"matchers": ["9lives=x"], "duration": "1h"}),
            "matchers[0]",
        ),
        (
            json!({"matchers": "team=~'('", "duration": "1h"}),
            "matchers",
        ),
        (
            json!({"matchers": [{"name": "a", "value": "b", "isRegex": "yes"}], "duration": "1h"}),
            "matchers[0].isRegex",
        ),
        (json!({"matchers": "team=db"}), "endsAt"),
        (
            json!({"matchers": "team=db", "duration": "soon"}),
            "duration",
        ),
        (
            json!({"matchers": "team=db", "endsAt": "2020-01-01T00:00:00Z"}),
            "endsAt",
        ),
        (
            json!({"matchers": "team=db", "endsAt": "tomorrow"}),
            "endsAt",
        ),
        (
            json!({"matchers": "team=db", "duration": "999999999h"}),
            "endsAt",
        ),
        (
            json!({"matchers": "team=db", "duration": "1h", "comment": 5}),
            "comment",
        ),
        (json!(["not", "an", "object"]), "body"),
    ];
    for (body, field) in cases {
        let (status, reply) = env.silence(body.clone()).await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["field"], field, "{body}: {reply}");
        assert_eq!(reply["error"], "invalid_silence");
    }
    let (status, reply) = env
        .call(reqwest::Method::DELETE, "/api/v1/silences/abc", None)
        .await;
    assert_eq!((status, &reply["field"]), (400, &json!("id")), "{reply}");
    let (_, list) = env
        .call(reqwest::Method::GET, "/api/v1/silences", None)
        .await;
    assert_eq!(list["silences"].as_array().unwrap().len(), 3);

    // Tokens: none, or one without alerts:silence.
    let (status, _) = env
        .call_as("sy_nope", reqwest::Method::GET, "/api/v1/silences", None)
        .await;
    assert_eq!(status, 401);
    let writer = env.make_token("writer-only", &["alerts:write"]).await;
    let (status, reply) = env
        .call_as(&writer, reqwest::Method::GET, "/api/v1/silences", None)
        .await;
    assert_eq!(status, 403, "{reply}");
}

#[tokio::test]
async fn silences_from_the_menu_and_the_mention() {
    let env = Env::start("", None).await;
    let r = env
        .alert(
            json!({"title": "Disk full", "severity": "high", "dedup_key": "disk",
                      "labels": {"team": "db"}}),
        )
        .await;
    assert_eq!(r["result"], "posted");
    let m = env.messages_when(|m| m.len() == 1).await;
    let ts = m[0]["ts"].as_str().unwrap().to_string();
    assert!(m[0]["blocks"].to_string().contains("Silence 4h"));

    // The menu: a silence of this alert for 4h; the message says so, and its thread.
    let click = env
        .control(
            "/actions",
            json!({"user": "alice", "channel": "C0ALERTS", "ts": ts,
                   "action_id": "alerts_silence", "value": "4h:disk"}),
        )
        .await;
    assert_eq!(click["ok"], true, "{click}");
    let m = env
        .messages_when(|m| {
            m.len() == 1 && m[0]["blocks"].to_string().contains(":mute: Silenced by <@")
        })
        .await;
    assert!(
        m[0]["blocks"].to_string().contains("until <!date^"),
        "{}",
        m[0]["blocks"]
    );
    let lines = env.replies(&ts, 1).await;
    assert!(lines[0].starts_with(":mute: Silenced by <@"), "{lines:?}");
    let entries = env.audited("alerts.silence", Outcome::Ok).await;
    assert_eq!(
        entries[0].record.actor_kind,
        switchyard_store::ActorKind::User
    );
    assert!(entries[0].record.detail.contains("dedup_key=\"disk\""));
    // A later change of the alert keeps the note.
    env.alert(
        json!({"title": "Disk full", "severity": "high", "dedup_key": "disk",
                     "labels": {"team": "db"}}),
    )
    .await;
    env.messages_when(|m| {
        let b = m[0]["blocks"].to_string();
        b.contains("seen 2 times") && b.contains(":mute: Silenced by <@")
    })
    .await;

    // The mention: matchers with quotes and spaces, a duration and a comment.
    let asked = env
        .mention(
            "bob",
            "silence alertname=\"Replication lag\" severity!=low for 2h failover drill",
        )
        .await;
    let reply = &env.replies(&asked, 1).await[0];
    assert!(reply.starts_with(":mute: Silence `#2`"), "{reply}");
    assert!(reply.contains("failover drill"), "{reply}");
    let held = env
        .alert(
            json!({"title": "Lag", "severity": "critical", "dedup_key": "lag",
                      "labels": {"alertname": "Replication lag"}}),
        )
        .await;
    assert_eq!(held["result"], "silenced", "{held}");

    let listed = env.mention("alice", "silences").await;
    let reply = &env.replies(&listed, 1).await[0];
    assert!(reply.contains("`#1`") && reply.contains("`#2`"), "{reply}");
    let bad = env.mention("alice", "silence team=db").await;
    assert!(env.replies(&bad, 1).await[0].contains("for how long"));

    let ended = env.mention("bob", "unsilence 2").await;
    assert!(env.replies(&ended, 1).await[0].starts_with(":loud_sound: Ended silence"));
    let m = env.messages_when(|m| m.len() == 2).await;
    assert!(has_title(&m, "Lag"), "{:?}", titles(&m));
    let again = env.mention("bob", "unsilence 2").await;
    assert!(env.replies(&again, 1).await[0].contains("had already ended"));

    // The menu's silence ended early: its alert's message loses the note, its thread says so.
    let ended = env.mention("alice", "unsilence 1").await;
    env.replies(&ended, 1).await;
    env.messages_when(|m| !m[0]["blocks"].to_string().contains(":mute: Silenced by"))
        .await;
    // (The repeat above, within the default repeat_interval, added no line.)
    assert_eq!(
        env.replies(&ts, 2).await[1],
        ":loud_sound: Silence `#1` ended."
    );
}

#[tokio::test]
async fn silencing_needs_its_permission_and_a_refusal_is_audited() {
    let env = Env::start(
        "[access]\ndefault_role = \"responder\"\n[access.roles]\nresponder = [\"alerts.ack\"]\n",
        None,
    )
    .await;
    env.alert(json!({"title": "Queue backlog", "severity": "medium", "dedup_key": "queue"}))
        .await;
    let m = env.messages_when(|m| m.len() == 1).await;
    let ts = m[0]["ts"].as_str().unwrap();
    env.control(
        "/actions",
        json!({"user": "bob", "channel": "C0ALERTS", "ts": ts,
               "action_id": "alerts_silence", "value": "1h:queue"}),
    )
    .await;
    env.mention("bob", "silence team=db for 1h").await;
    env.mention("bob", "unsilence 1").await;
    let mut refused = 0;
    for _ in 0..400 {
        refused = env
            .audit("alerts.silence")
            .await
            .iter()
            .filter(|e| e.record.outcome == Outcome::Refused)
            .count();
        if refused == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        refused, 3,
        "the click and both mentions were refused and audited"
    );
    let (_, list) = env
        .call(reqwest::Method::GET, "/api/v1/silences", None)
        .await;
    assert_eq!(list["silences"], json!([]), "nothing was silenced");
    assert!(!m[0]["blocks"].to_string().contains(":mute:"));
}

#[tokio::test]
async fn a_critical_alert_inhibits_the_clusters_lesser_ones_until_it_resolves() {
    let env = Env::start("", None).await;
    let critical = json!({"title": "Cluster a down", "severity": "critical",
                          "dedup_key": "down-a", "labels": {"cluster": "a"}});
    assert_eq!(env.alert(critical.clone()).await["result"], "posted");
    let muted = env
        .alert(json!({"title": "Slow queries on a", "severity": "medium",
                      "dedup_key": "slow-a", "labels": {"cluster": "a"}}))
        .await;
    assert_eq!(muted["result"], "inhibited", "{muted}");
    assert_eq!(muted["muted"]["inhibited_by"], "down-a");
    // Another cluster, or a higher severity: not inhibited.
    for (key, severity, cluster) in [("slow-b", "medium", "b"), ("high-a", "high", "a")] {
        let r = env
            .alert(json!({"title": key, "severity": severity, "dedup_key": key,
                          "labels": {"cluster": cluster}}))
            .await;
        assert_eq!(r["result"], "posted", "{key}: {r}");
    }
    let m = env.messages_when(|m| m.len() == 3).await;
    assert!(!has_title(&m, "Slow queries on a"));
    let audit = env.audited("alerts.mute", Outcome::Ok).await;
    assert!(audit[0].record.detail.contains("inhibited by alert down-a"));

    // The critical one resolves: the muted one, still firing, is posted.
    let mut resolved = critical;
    resolved["status"] = json!("resolved");
    env.alert(resolved).await;
    let m = env.messages_when(|m| m.len() == 4).await;
    assert!(has_title(&m, "Slow queries on a"), "{:?}", titles(&m));

    // Held by a rule that a reload takes away: posted once the reloaded app looks.
    let critical_b = json!({"title": "Cluster b down", "severity": "critical",
                            "dedup_key": "down-b", "labels": {"cluster": "b"}});
    assert_eq!(env.alert(critical_b).await["result"], "posted");
    let muted = env
        .alert(json!({"title": "Slow queries on b", "severity": "low",
                      "dedup_key": "slow-b2", "labels": {"cluster": "b"}}))
        .await;
    assert_eq!(muted["result"], "inhibited", "{muted}");
    env.reload_with(
        r#"[[apps.alerts.inhibit_rules]]
name = "a critical alert mutes the cluster's lesser ones"
source_matchers = ['severity="critical"']
target_matchers = ['severity=~"medium|low"']
equal = ["cluster"]
"#,
        "",
    );
    let m = env.messages_when(|m| m.len() == 6).await;
    assert!(has_title(&m, "Slow queries on b"), "{:?}", titles(&m));
}

/// One payload is taken as if each alert came alone: a source fired earlier in it mutes a
/// later alert, and a source resolved earlier in it no longer does.
#[tokio::test]
async fn inhibition_within_one_payload_sees_its_own_earlier_alerts() {
    let env = Env::start("", None).await;
    let critical = json!({"title": "Cluster c down", "severity": "critical",
                          "dedup_key": "down-c", "labels": {"cluster": "c"}});
    let (status, reply) = env
        .send(
            "/api/v1/alerts",
            json!([critical.clone(),
                   {"title": "Slow queries on c", "severity": "medium",
                    "dedup_key": "slow-c", "labels": {"cluster": "c"}}]),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["alerts"][0]["result"], "posted", "{reply}");
    assert_eq!(reply["alerts"][1]["result"], "inhibited", "{reply}");
    assert_eq!(reply["alerts"][1]["muted"]["inhibited_by"], "down-c");

    let mut resolved = critical;
    resolved["status"] = json!("resolved");
    let (_, reply) = env
        .send(
            "/api/v1/alerts",
            json!([resolved,
                   {"title": "Lag on c", "severity": "low",
                    "dedup_key": "lag-c", "labels": {"cluster": "c"}}]),
        )
        .await;
    assert_eq!(reply["alerts"][1]["result"], "posted", "{reply}");
    // The one it held is let go: posted, with the new one and the critical one.
    let m = env.messages_when(|m| m.len() == 3).await;
    assert!(has_title(&m, "Slow queries on c"), "{:?}", titles(&m));
    assert!(has_title(&m, "Lag on c"), "{:?}", titles(&m));
}

#[test]
fn check_config_names_the_inhibit_rule_at_fault() {
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

[[apps.alerts.inhibit_rules]]
name = "fine"
source_matchers = ['severity="critical"']
target_matchers = ['severity="low"']

[[apps.alerts.inhibit_rules]]
name = "broken rule"
source_matchers = ['severity=~"(critical"']
equal = ["not a label"]
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
    for key in [
        "apps.alerts.inhibit_rules[1].source_matchers[0]",
        "apps.alerts.inhibit_rules[1].target_matchers",
        "apps.alerts.inhibit_rules[1].equal[0]",
    ] {
        assert!(
            stderr.contains(&format!("{file}: {key}")),
            "{key} in {stderr}"
        );
    }
    assert!(stderr.contains("broken rule"), "{stderr}");
    assert!(!stderr.contains("inhibit_rules[0]"), "{stderr}");
}

#[tokio::test]
async fn a_silence_made_before_a_restart_lets_go_of_its_alerts_after_it() {
    let env = Env::start("", None).await;
    let (status, reply) = env
        .silence(json!({"matchers": "alertname=Nightly", "duration": "1s"}))
        .await;
    assert_eq!(status, 200, "{reply}");
    let held = env
        .alert(json!({"title": "Nightly backup late", "severity": "low",
                      "dedup_key": "nightly", "labels": {"alertname": "Nightly"}}))
        .await;
    assert_eq!(held["result"], "silenced", "{held}");
    let env = env.restart().await;
    // Nothing of it is in memory: the new process's tick finds it ended and posts the alert.
    let m = env.messages_when(|m| m.len() == 1).await;
    assert!(has_title(&m, "Nightly backup late"), "{:?}", titles(&m));
    let posted = env.audited("alerts.fire", Outcome::Ok).await;
    assert!(
        posted[0].record.detail.contains("ended; it was held"),
        "{:?}",
        posted[0].record
    );
}
