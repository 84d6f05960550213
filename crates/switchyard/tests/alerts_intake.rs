//! Against the sandbox: Grafana's alerting webhook (firing, resolved, bad payloads), the
//! Create incident / Run playbook hooks filled from config, `post_message` through configured
//! incoming webhooks (defaults, overrides, bad calls, tokens, audit), and `switchyard alerts
//! test` on each payload kind and on bad files.

mod common;

use std::collections::BTreeMap;

use common::{AlertsEnv, Setup};
use serde_json::{Value, json};
use switchyard_engine::Config;

const ALERTS: &str = r#"
[apps.alerts]
enabled = true
default_channel = "C0ALERTS"

[apps.alerts.severity_labels]
P1 = "critical"

[apps.alerts.severity_channels]
critical = "C0CRIT"

[apps.alerts.hooks.run_playbook]
url = "https://rundeck.example/run?alert={{ key }}&title={{ title | urlencode }}"

[[apps.alerts.rules]]
name = "team blue"
condition = "labels.team == 'blue'"
channels = ["C0BLUE"]
mentions = ["@here"]
"#;

/// Grafana's documented example (its webhook notifier docs), with a second alert of another
/// team and a `severity` label on the configured scale.
fn grafana(status: &str) -> Value {
    json!({
      "receiver": "My Super Webhook",
      "status": status,
      "orgId": 1,
      "alerts": [
        {
          "status": status,
          "labels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
          "annotations": {
            "description": "The system has high memory usage",
            "runbook_url": "https://myrunbook.com/runbook/1234",
            "summary": "This alert was triggered for zone us-1"
          },
          "startsAt": "2021-10-12T09:51:03.157076+02:00",
          "endsAt": if status == "resolved" { "2021-10-12T10:01:03Z" } else { "0001-01-01T00:00:00Z" },
          "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
          "fingerprint": "c6eadffa33fcdf37",
          "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1",
          "dashboardURL": "https://play.grafana.org/d/abc",
          "panelURL": "https://play.grafana.org/d/abc?viewPanel=1",
          "values": {"B": 44.23943737541908, "C": 1}
        },
        {
          "status": status,
          "labels": {"alertname": "High CPU usage", "team": "red", "zone": "eu-1", "severity": "P1"},
          "annotations": {"description": "The system has high CPU usage"},
          "startsAt": "2021-10-12T09:56:03.157076+02:00",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "https://play.grafana.org/alerting/d1rdpdv7k/edit",
          "fingerprint": "bc97ff14869b13e3",
          "silenceURL": "https://play.grafana.org/alerting/silence/new",
          "dashboardURL": "",
          "panelURL": "",
          "valueString": "[ var='B' labels={} value=95.2 ]"
        }
      ],
      "groupLabels": {},
      "commonLabels": {},
      "commonAnnotations": {},
      "externalURL": "https://play.grafana.org/",
      "version": "1",
      "groupKey": "{}:{}",
      "truncatedAlerts": 0,
      "title": "[FIRING:2]  ",
      "state": "alerting",
      "message": "**Firing**"
    })
}

/// The alerts env with this suite's seed, its token able to post through webhooks.
struct Env(AlertsEnv);

impl std::ops::Deref for Env {
    type Target = AlertsEnv;
    fn deref(&self) -> &AlertsEnv {
        &self.0
    }
}

impl Env {
    /// With the config text `make` gives for the sandbox's incoming webhook into `#ops`.
    async fn start(make: impl FnOnce(&str) -> String) -> Self {
        let seed = common::seed(
            &["alice"],
            &[
                ("C0BLUE", "team-blue"),
                ("C0CRIT", "critical"),
                ("C0ALERTS", "alerts"),
                ("C0OPS", "ops"),
                ("C0DEPLOY", "deploys"),
            ],
        );
        let sandbox = common::sandbox(&seed, false).await;
        let hook = sandbox
            .control()
            .post("/webhooks", &json!({"channel": "C0OPS"}))
            .await
            .expect("control API");
        let extra = make(hook["url"].as_str().expect("a webhook URL"));
        let setup = Setup {
            extra: &extra,
            token: ("monitoring", &["alerts:write", "webhooks:post"]),
            ..Setup::default()
        };
        Self(AlertsEnv::start_in(sandbox, setup).await)
    }

    /// The channel's top-level messages (long-polled until there are at least `n`), once
    /// `check` holds.
    async fn messages_when(
        &self,
        channel: &str,
        n: usize,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        self.all_messages_when(channel, n, check).await
    }
}

fn blocks_text(message: &Value) -> String {
    message["blocks"].to_string()
}

fn button_ids(message: &Value) -> Vec<String> {
    message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "actions")
        .flat_map(|b| b["elements"].as_array().unwrap().clone())
        .map(|e| {
            e["action_id"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("url:{}", e["text"]["text"].as_str().unwrap()))
        })
        .collect()
}

#[tokio::test]
async fn alertsio_grafana_payloads_firing_resolved_and_bad() {
    let env = Env::start(|_| ALERTS.to_string()).await;
    let (status, reply) = env.send("/api/v1/grafana", grafana("firing")).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["alerts"][0]["channels"], json!(["C0BLUE"]), "{reply}");
    assert_eq!(reply["alerts"][1]["channels"], json!(["C0CRIT"]), "{reply}");

    let blue = env.messages_when("C0BLUE", 1, |m| m.len() == 1).await;
    let text = blocks_text(&blue[0]);
    assert_eq!(
        blue[0]["blocks"][0]["text"]["text"],
        ":large_yellow_circle: This alert was triggered for zone us-1"
    );
    for part in [
        "*Severity*\\nmedium",
        "*Source*\\ngrafana (My Super Webhook)",
        "<!date^1634025063^",
        "The system has high memory usage",
        "B = 44.23943737541908, C = 1",
        "<!here>",
        "https://play.grafana.org/d/abc?viewPanel=1",
        "c6eadffa33fcdf37",
        // The hook's link, its template filled in.
        "https://rundeck.example/run?alert=c6eadffa33fcdf37&title=This%20alert%20was%20triggered%20for%20zone%20us-1",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    assert_eq!(
        button_ids(&blue[0]),
        [
            "url:View panel",
            "alerts_ack",
            "url:Run playbook",
            "alerts_resolve",
            "alerts_silence"
        ]
    );
    // P1 on the configured scale is critical; without a panel the rule's link is the button.
    let crit = env.messages_when("C0CRIT", 1, |m| m.len() == 1).await;
    let text = blocks_text(&crit[0]);
    for part in [
        ":red_circle: High CPU usage",
        "*Severity*\\ncritical",
        "[ var='B' labels={} value=95.2 ]",
        "https://play.grafana.org/alerting/d1rdpdv7k/edit",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }

    // The same firing episode sent again is nothing new; resolved edits in place.
    let (_, reply) = env.send("/api/v1/grafana", grafana("firing")).await;
    assert_eq!(reply["alerts"][0]["result"], "unchanged", "{reply}");
    let (status, reply) = env.send("/api/v1/grafana", grafana("resolved")).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["alerts"][0]["result"], "updated", "{reply}");
    let blue = env
        .messages_when("C0BLUE", 1, |m| {
            m.len() == 1 && blocks_text(&m[0]).contains(":white_check_mark: Resolved")
        })
        .await;
    assert_eq!(
        button_ids(&blue[0]),
        ["url:View panel"],
        "no Acknowledge, Resolve or hooks once resolved"
    );
    let ts = blue[0]["ts"].as_str().unwrap();
    let thread = env.thread("C0BLUE", ts, 1).await;
    assert_eq!(
        thread[1]["text"],
        ":white_check_mark: Resolved via grafana (My Super Webhook)."
    );

    // Bad payloads: 400 naming the field, nothing of the batch stored.
    let mut half_bad = grafana("firing");
    half_bad["alerts"][0]["fingerprint"] = json!("fresh-one");
    half_bad["alerts"][1]["status"] = json!("pending");
    let mut bad_labels = grafana("firing");
    bad_labels["alerts"][0]["labels"]["zone"] = json!(1);
    let cases = [
        (half_bad, "alerts[1].status"),
        (bad_labels, "alerts[0].labels.zone"),
        (json!({"version": "4", "alerts": []}), "version"),
        (json!({"orgId": 1, "status": "firing"}), "alerts"),
        (
            json!({"alerts": [{"status": "firing", "startsAt": "noon"}]}),
            "alerts[0].startsAt",
        ),
        (json!(["not", "an", "object"]), "body"),
    ];
    for (body, field) in cases {
        let (status, reply) = env.send("/api/v1/grafana", body).await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["field"], field, "{reply}");
    }
    let mut fresh = grafana("firing");
    fresh["alerts"][0]["fingerprint"] = json!("fresh-one");
    let (_, reply) = env.send("/api/v1/grafana", fresh).await;
    assert_eq!(
        reply["alerts"][0]["result"], "posted",
        "the refused batch stored nothing: {reply}"
    );
    let (status, _) = env
        .send_as(None, "/api/v1/grafana", &grafana("firing"))
        .await;
    assert_eq!(status, 401);

    // Our own JSON takes the configured scale's names too, and only those.
    let (status, reply) = env
        .send(
            "/api/v1/alerts",
            json!({"title": "Checkout down", "severity": "p1", "dedup_key": "checkout"}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["alerts"][0]["channels"], json!(["C0CRIT"]), "{reply}");
    let (status, reply) = env
        .send(
            "/api/v1/alerts",
            json!({"title": "t", "severity": "warning"}),
        )
        .await;
    assert_eq!(
        (status, &reply["field"]),
        (400, &json!("severity")),
        "{reply}"
    );
}

#[tokio::test]
async fn alertsio_post_message_through_incoming_webhooks_with_defaults_and_overrides() {
    let env = Env::start(|url| {
        format!(
            "[apps.webhooks]\nenabled = true\n[apps.webhooks.incoming.ops]\nwebhook_url = \"{url}\"\nusername = \"Switchyard\"\nicon_emoji = \":robot_face:\"\n[apps.webhooks.incoming.deploys]\nwebhook_url = \"{url}\"\nchannel = \"#deploys\"\nicon_url = \"https://example.com/ship.png\"\n"
        )
    })
    .await;
    // The defaults: the webhook's own channel, the configured name and icon.
    let (status, reply) = env
        .send("/api/v1/webhooks/ops", json!({"text": "Backup finished"}))
        .await;
    assert_eq!((status, &reply["queued"]), (200, &json!(true)), "{reply}");
    let ops = env.messages_when("C0OPS", 1, |m| !m.is_empty()).await;
    assert_eq!(ops[0]["text"], "Backup finished");
    assert_eq!(ops[0]["username"], "Switchyard");
    assert_eq!(ops[0]["icons"], json!({"emoji": ":robot_face:"}));

    // Overridden per call: name, icon (the other kind), channel; blocks pass through.
    let (status, reply) = env
        .send(
            "/api/v1/webhooks/ops",
            json!({"text": "Deployed v2", "username": "Deploy Bot", "icon_url": "https://example.com/d.png",
                   "channel": "C0DEPLOY",
                   "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Deployed* v2"}}]}),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let deploys = env.messages_when("C0DEPLOY", 1, |m| !m.is_empty()).await;
    assert_eq!(deploys[0]["username"], "Deploy Bot");
    assert_eq!(
        deploys[0]["icons"],
        json!({"image_48": "https://example.com/d.png"})
    );
    assert_eq!(
        deploys[0]["blocks"][0]["text"]["text"], "*Deployed* v2",
        "{deploys:?}"
    );
    // A webhook whose default channel is elsewhere; a call's emoji replaces its icon_url.
    let (status, _) = env
        .send(
            "/api/v1/webhooks/deploys",
            json!({"text": "Rollback", "icon_emoji": ":rewind:"}),
        )
        .await;
    assert_eq!(status, 200);
    let deploys = env.messages_when("C0DEPLOY", 2, |m| m.len() == 2).await;
    assert_eq!(deploys[1]["text"], "Rollback");
    assert_eq!(deploys[1]["icons"], json!({"emoji": ":rewind:"}));
    assert!(deploys[1].get("username").is_none(), "{:?}", deploys[1]);

    // Bad calls: 400 naming the field, nothing posted; unknown webhook 404; tokens.
    for (body, field) in [
        (json!({}), "text"),
        (json!({"text": "x", "icon_emoji": "rocket"}), "icon_emoji"),
        (json!({"text": "x", "colour": "red"}), "colour"),
        (json!({"blocks": "not blocks"}), "blocks"),
        (json!("text"), "body"),
    ] {
        let (status, reply) = env.send("/api/v1/webhooks/ops", body).await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["field"], field, "{reply}");
    }
    let (status, reply) = env
        .send("/api/v1/webhooks/nowhere", json!({"text": "x"}))
        .await;
    assert_eq!((status, &reply["error"]), (404, &json!("unknown_webhook")));
    let alerts_only = env.make_token("alerts-only", &["alerts:write"]).await;
    let (status, _) = env
        .send_as(
            Some(&alerts_only),
            "/api/v1/webhooks/ops",
            &json!({"text": "x"}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = env
        .send_as(None, "/api/v1/webhooks/ops", &json!({"text": "x"}))
        .await;
    assert_eq!(status, 401);
    let listed: Value = env
        .http
        .get(format!("http://{}/api/v1/webhooks", env.server.addr()))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["webhooks"][1]["name"], "ops", "{listed}");
    assert!(
        !listed.to_string().contains("/services/"),
        "no URL: {listed}"
    );

    // Audited (the webhook by name, never its URL); the bad calls posted nothing.
    let audit = env.audit("webhooks.post").await;
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert!(
        audit
            .iter()
            .all(|e| !e.record.detail.contains("/services/")),
        "{audit:?}"
    );
    assert_eq!(audit[0].record.object, "webhook:deploys");
    let ops = env.messages_when("C0OPS", 1, |m| !m.is_empty()).await;
    assert_eq!(ops.len(), 1, "{ops:?}");

    // With Slack's limits on (a webhook's channel: 1/s, a burst of 3), a burst of posts is
    // paced and retried through the outbox: every one arrives, in order.
    env.sandbox
        .control()
        .put("/rate_limits", &json!({"enabled": true}))
        .await
        .unwrap();
    for i in 1..=4 {
        let (status, _) = env
            .send(
                "/api/v1/webhooks/ops",
                json!({"text": format!("burst {i}")}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let ops = env.messages_when("C0OPS", 5, |m| m.len() == 5).await;
    let texts: Vec<&str> = ops.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        [
            "Backup finished",
            "burst 1",
            "burst 2",
            "burst 3",
            "burst 4"
        ]
    );
}

/// `switchyard alerts test` with `config` on `payload` (a file in a directory of its own).
fn alerts_test(config: &str, payload: &str, args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("switchyard.toml");
    common::write_private(&config_path, config).unwrap();
    let file = dir.path().join("payload.json");
    std::fs::write(&file, payload).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .args(["alerts", "test"])
        .arg(&file)
        .arg("--config")
        .arg(&config_path)
        .args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("SLACK_") || name.starts_with("SWITCHYARD_") {
            command.env_remove(name);
        }
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).replace(&file.display().to_string(), "FILE"),
        String::from_utf8_lossy(&out.stderr).replace(&file.display().to_string(), "FILE"),
    )
}

const TEST_CONFIG: &str = r#"
[apps.alerts]
enabled = true
default_channel = "C0ALERTS"

[apps.alerts.severity_channels]
critical = "C0CRIT"

[[apps.alerts.rules]]
name = "database"
condition = "labels.team == 'db'"
channels = ["C0DB"]
mentions = ["@here"]
continue = true

[[apps.alerts.rules]]
name = "db paging"
condition = "labels.team == 'db' AND severity == 'critical'"
channels = ["C0ONCALL"]
mentions = ["U0ONCALL", "S0DBA"]

[[apps.alerts.rules]]
name = "never reached for a critical db alert"
condition = "labels.team == 'db'"
channels = ["C0LATE"]
"#;

#[test]
fn alertsio_alerts_test_shows_rules_targets_and_the_message_for_each_payload_kind() {
    // Ours: two rules hit (the first continues), then the severity map for another alert.
    let ours = json!([
        {"title": "Replication lag", "severity": "critical", "labels": {"team": "db"}, "dedup_key": "lag"},
        {"title": "Printer on fire", "severity": "critical"}
    ]);
    let with_webhook = TEST_CONFIG.replace(
        "mentions = [\"@here\"]\ncontinue = true",
        "mentions = [\"@here\"]\ncontinue = true\nwebhooks = [\"ops\"]",
    ) + "[apps.webhooks.incoming.ops]\nwebhook_url = \"https://hooks.example/T/B/x\"\n";
    let (ok, out, err) = alerts_test(&with_webhook, &ours.to_string(), &[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("→ webhook ops (a copy on firing and on resolution)"),
        "{out}"
    );
    let (ok, _, err) = alerts_test(
        &with_webhook.replace("incoming.ops", "incoming.other"),
        &ours.to_string(),
        &[],
    );
    assert!(
        !ok && err.contains("apps.alerts.rules[0].webhooks"),
        "{err}"
    );
    let (ok, out, err) = alerts_test(TEST_CONFIG, &ours.to_string(), &[]);
    assert!(ok, "{err}");
    for part in [
        "payload: alerts (2 alerts)",
        "alert 1: [critical] Replication lag — firing",
        "rule 0 \"database\": matched, continue",
        "rule 1 \"db paging\": matched, stop",
        "→ channel C0DB, mentioning <!here>",
        "→ channel C0ONCALL, mentioning <@U0ONCALL> <!subteam^S0DBA>",
        "\"type\": \"header\"",
        "alert 2: [critical] Printer on fire",
        "rules: none matched; sent by severity_channels.critical",
        "→ channel C0CRIT",
    ] {
        assert!(out.contains(part), "{part} in {out}");
    }
    assert!(
        !out.contains("C0LATE") && !out.contains("never reached"),
        "{out}"
    );
    // No hook is filled in this config: no Create incident / Run playbook button.
    assert!(!out.contains("Run playbook") && !out.contains("Create incident"));

    // Alertmanager's (told by its shape), as JSON.
    let am = json!({
        "version": "4", "groupKey": "{}:{alertname=\"DiskFull\"}", "status": "firing", "receiver": "slack",
        "alerts": [{"status": "firing", "labels": {"alertname": "DiskFull", "team": "db", "severity": "warning"},
                    "annotations": {"summary": "Disk almost full"}, "startsAt": "2026-11-26T04:46:12Z",
                    "fingerprint": "c0ffee00c0ffee00"}]
    });
    let (ok, out, err) = alerts_test(TEST_CONFIG, &am.to_string(), &["--json"]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["format"], "alertmanager");
    let alert = &report["alerts"][0];
    assert_eq!(alert["severity"], "medium");
    assert_eq!(
        alert["rules"],
        json!([{"index": 0, "name": "database", "continue": true},
               {"index": 2, "name": "never reached for a critical db alert", "continue": false}])
    );
    let channels: Vec<&str> = alert["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["C0DB", "C0LATE"]);
    assert!(
        alert["targets"][0]["message"]["blocks"]
            .to_string()
            .contains("<!date^1795668372^")
    );

    // Grafana's, with a hook filled from config.
    let with_hook = format!(
        "{TEST_CONFIG}\n[apps.alerts.hooks.create_incident]\nurl = \"https://tickets.example/new?key={{{{ key }}}}\"\nlabel = \"Open ticket\"\n"
    );
    let (ok, out, err) = alerts_test(&with_hook, &grafana("firing").to_string(), &[]);
    assert!(ok, "{err}");
    for part in [
        "payload: grafana (2 alerts)",
        "alert 1: [medium] This alert was triggered for zone us-1 — firing (source grafana (My Super Webhook), key c6eadffa33fcdf37)",
        "rules: none matched; sent by default_channel",
        "\"text\": \"Open ticket\"",
        "https://tickets.example/new?key=c6eadffa33fcdf37",
    ] {
        assert!(out.contains(part), "{part} in {out}");
    }
}

#[test]
fn alertsio_config_show_hides_webhook_urls_and_check_config_names_bad_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    let run = |text: &str, args: &[&str]| {
        common::write_private(&path, text).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .args(args)
            .arg("--config")
            .arg(&path);
        for (name, _) in std::env::vars() {
            if name.starts_with("SLACK_") || name.starts_with("SWITCHYARD_") {
                command.env_remove(name);
            }
        }
        let out = command.output().unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let good = "[slack]\nbot_token = \"xoxb-1\"\napp_token = \"xapp-1\"\n[apps.webhooks]\nenabled = true\n[apps.webhooks.incoming.ops]\nwebhook_url = \"https://hooks.slack.com/services/T1/B1/s3cr3t\"\nchannel = \"#ops\"\n";
    let (ok, out) = run(good, &["config", "show"]);
    assert!(ok, "{out}");
    assert!(!out.contains("s3cr3t") && out.contains("#ops"), "{out}");
    let bad = good.replace("https://hooks", "hooks") + "icon_emoji = \"robot\"\n";
    let (ok, out) = run(&bad, &["check-config"]);
    assert!(!ok);
    assert!(
        out.contains("apps.webhooks.incoming.ops.webhook_url")
            && out.contains("apps.webhooks.incoming.ops.icon_emoji")
            && !out.contains("s3cr3t"),
        "{out}"
    );
}

#[test]
fn alertsio_alerts_test_names_the_file_and_field_of_a_bad_payload() {
    let (ok, _, err) = alerts_test(
        TEST_CONFIG,
        r#"[{"title": "t", "severity": "urgent"}]"#,
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("FILE: alerts[0].severity: must be critical, high, medium or low"),
        "{err}"
    );
    let (ok, _, err) = alerts_test(TEST_CONFIG, "{not json", &[]);
    assert!(!ok);
    assert!(err.contains("FILE: body: not JSON"), "{err}");
    // Forced to read Grafana's payload as Alertmanager's: its version is refused.
    let (ok, _, err) = alerts_test(
        TEST_CONFIG,
        &grafana("firing").to_string(),
        &["--format", "alertmanager"],
    );
    assert!(!ok);
    assert!(
        err.contains(
            "FILE: version: only version \"4\" is understood (read as alertmanager's payload)"
        ),
        "{err}"
    );
    // A file that is not there; a config with a broken rule.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    common::write_private(&config, TEST_CONFIG).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["alerts", "test", "missing.json", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.json: cannot read it"), "{err}");
    let (ok, _, err) = alerts_test(
        &TEST_CONFIG.replace("labels.team == 'db'\"", "labels.team == == 'db'\""),
        "{}",
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("apps.alerts.rules[0].condition") && err.contains("database"),
        "{err}"
    );
}

#[tokio::test]
async fn alertsio_a_rule_copies_alerts_to_an_incoming_webhook_on_fire_and_resolve() {
    let env = Env::start(|url| {
        ALERTS.replace(
            "mentions = [\"@here\"]",
            "mentions = [\"@here\"]\nwebhooks = [\"ops\"]",
        ) + &format!(
            "[apps.webhooks]\nenabled = true\n[apps.webhooks.incoming.ops]\nwebhook_url = \"{url}\"\nusername = \"Alerts\"\n"
        )
    })
    .await;
    let (status, reply) = env.send("/api/v1/grafana", grafana("firing")).await;
    assert_eq!(status, 200, "{reply}");
    // Only the team-blue alert's rule names the webhook.
    let ops = env.messages_when("C0OPS", 1, |m| !m.is_empty()).await;
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["username"], "Alerts");
    let text = blocks_text(&ops[0]);
    assert!(
        text.contains("This alert was triggered for zone us-1"),
        "{text}"
    );
    assert_eq!(
        button_ids(&ops[0]),
        ["url:View panel", "url:Run playbook"],
        "no Acknowledge/Resolve through a webhook"
    );
    // A repeat of the same episode is not copied; the resolution is.
    env.send("/api/v1/grafana", grafana("firing")).await;
    env.send("/api/v1/grafana", grafana("resolved")).await;
    let ops = env.messages_when("C0OPS", 2, |m| m.len() == 2).await;
    assert!(
        blocks_text(&ops[1]).contains(":white_check_mark: Resolved"),
        "{ops:?}"
    );
    // The channel's own message is still there, edited in place.
    env.messages_when("C0BLUE", 1, |m| {
        m.len() == 1 && blocks_text(&m[0]).contains(":white_check_mark: Resolved")
    })
    .await;

    // A rule naming a webhook the config lacks is a config error naming the rule.
    let text = format!(
        "[slack]\nbot_token = \"xoxb-1\"\napp_token = \"xapp-1\"\n{}",
        ALERTS.replace(
            "mentions = [\"@here\"]",
            "mentions = [\"@here\"]\nwebhooks = [\"nowhere\"]"
        )
    );
    let config = Config::parse(&text, "w.toml", &BTreeMap::<String, String>::new()).unwrap();
    let e = switchyard_apps::builtin(&config).err().expect("refused");
    assert_eq!(e.key, "apps.alerts.rules[0].webhooks", "{e}");
    assert!(e.to_string().contains("team blue"), "{e}");
}

/// A storm through a webhook: a request's 300 copies to one webhook go as one list (a
/// webhook's messages cannot be edited, and one a second would take five minutes), every
/// alert's key in it; a request of three resolutions goes as three messages, as usual.
#[tokio::test]
async fn alertsio_a_storm_of_webhook_copies_is_one_list_per_request() {
    let env = Env::start(|url| {
        ALERTS.replace(
            "mentions = [\"@here\"]",
            "mentions = [\"@here\"]\nwebhooks = [\"ops\"]",
        ) + &format!(
            "[apps.webhooks]\nenabled = true\n[apps.webhooks.incoming.ops]\nwebhook_url = \"{url}\"\n"
        )
    })
    .await;
    let alert = |i: usize, status: &str| {
        json!({"title": format!("Disk full on blue-{i}"), "severity": "high",
               "source": "prometheus", "status": status, "labels": {"team": "blue"},
               "dedup_key": format!("blue-{i:03}")})
    };
    let storm: Vec<Value> = (0..300).map(|i| alert(i, "firing")).collect();
    let (status, reply) = env.send("/api/v1/alerts", json!(storm)).await;
    assert_eq!(status, 200, "{reply}");
    let ops = env.messages_when("C0OPS", 1, |m| !m.is_empty()).await;
    assert_eq!(ops.len(), 1, "one list: {ops:?}");
    let text = ops[0]["text"].as_str().unwrap();
    assert!(text.contains("300 alerts"), "{text}");
    for i in 0..300 {
        assert!(
            text.contains(&format!("`blue-{i:03}`")),
            "blue-{i:03} in {text}"
        );
    }
    // Each copy audited (the first page of them read back).
    let copied = env.audit("alerts.webhook").await;
    assert!(copied.len() >= 100, "{}", copied.len());
    assert!(
        copied
            .iter()
            .all(|e| e.record.detail.contains("in a list (a storm)")),
        "{copied:?}"
    );

    let resolved: Vec<Value> = (0..3).map(|i| alert(i, "resolved")).collect();
    let (status, reply) = env.send("/api/v1/alerts", json!(resolved)).await;
    assert_eq!(status, 200, "{reply}");
    let ops = env.messages_when("C0OPS", 4, |m| m.len() == 4).await;
    for m in &ops[1..] {
        assert!(
            blocks_text(m).contains(":white_check_mark: Resolved"),
            "a message of its own: {m}"
        );
    }
}
