//! The real Prometheus Alertmanager (Debian's `prometheus-alertmanager` 0.25, fetched by
//! `bench/alertmanager/fetch`, which `scripts/test` runs) in front of Switchyard: its webhook
//! receiver posts to `/api/v1/alertmanager` with an API token (`http_config.authorization`), and
//! its own Slack receiver posts to a sandbox incoming webhook. Alerts are fired and resolved
//! through Alertmanager's API (`POST /api/v2/alerts`) and seen in the sandbox's channels.
//!
//! Without the binary (`SWITCHYARD_ALERTMANAGER`, or the fetch script's folder) the test says
//! `SKIPPED` on stderr and passes.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{AlertsEnv, Setup};
use serde_json::{Value, json};

/// How to run Alertmanager, if this machine has it: `SWITCHYARD_ALERTMANAGER` (a binary), or
/// the fetched package through `bench/alertmanager/run` (which gives it its templates).
fn alertmanager_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SWITCHYARD_ALERTMANAGER").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let bench = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/alertmanager");
    bench
        .join("pkg/usr/bin/prometheus-alertmanager")
        .is_file()
        .then(|| bench.join("run"))
}

/// An Alertmanager process, killed on drop.
struct Alertmanager {
    child: Child,
    url: String,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Alertmanager {
    /// Starts `binary` with `config` (YAML) in `dir`, once it answers `/-/ready`. Clustering is
    /// off: a lone Alertmanager would otherwise wait for its gossip to settle before notifying.
    async fn start(binary: &PathBuf, config: &str, dir: &std::path::Path) -> Self {
        let config_file = dir.join("alertmanager.yml");
        std::fs::write(&config_file, config).unwrap();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("alertmanager starts");
        let am = Self { child, url };
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(r) = http.get(format!("{}/-/ready", am.url)).send().await
                && r.status().is_success()
            {
                return am;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("alertmanager never became ready at {}", am.url);
    }
}

#[tokio::test]
async fn the_real_alertmanager_posts_through_switchyard_into_the_sandbox() {
    let Some(binary) = alertmanager_binary() else {
        use std::io::Write;
        // Straight to the process's stderr: `eprintln!` would be captured by libtest.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the real Alertmanager against Switchyard — no binary; run \
             bench/alertmanager/fetch or set SWITCHYARD_ALERTMANAGER"
        );
        return;
    };
    let env = AlertsEnv::start(Setup {
        seed: &(common::seed(
            &["alice"],
            &[("C0ALERTS", "alerts"), ("C0AMSLACK", "am-slack")],
        ) + "\n[[webhooks]]\nchannel = \"am-slack\"\n"),
        alerts: "[apps.alerts]\nenabled = true\ndefault_channel = \"C0ALERTS\"\n",
        token: ("alertmanager", &["alerts:write"]),
        ..Setup::default()
    })
    .await;
    let token = &env.token;
    let (_, slack_webhook) = env
        .sandbox
        .webhook_urls()
        .into_iter()
        .next()
        .expect("the seed's webhook");

    // Every alert is a group of its own and is sent at once (group_wait 0); a resolution goes
    // out at the group's next interval.
    let am_config = format!(
        r#"
route:
  receiver: both
  group_by: ['...']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 4h
receivers:
  - name: both
    webhook_configs:
      - url: "http://{addr}/api/v1/alertmanager"
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: "{token}"
    slack_configs:
      - api_url: "{slack_webhook}"
        send_resolved: true
        title: '{{{{ .Status }}}}: {{{{ .CommonAnnotations.summary }}}}'
        text: 'from Alertmanager'
"#,
        addr = env.server.addr()
    );
    let am = Alertmanager::start(&binary, &am_config, env.dir.path()).await;
    let http = reqwest::Client::new();
    let fire = |ends_at: Option<String>| {
        let mut alert = json!({
            "labels": {"alertname": "DiskFull", "severity": "critical", "instance": "db-1"},
            "annotations": {"summary": "Disk full on db-1", "description": "98% used"},
            "generatorURL": "http://prometheus.example:9090/graph?g0.expr=disk"
        });
        if let Some(ends_at) = ends_at {
            alert["endsAt"] = json!(ends_at);
        }
        let http = http.clone();
        let url = format!("{}/api/v2/alerts", am.url);
        async move {
            let r = http.post(url).json(&json!([alert])).send().await.unwrap();
            assert!(
                r.status().is_success(),
                "Alertmanager took the alert: {r:?}"
            );
        }
    };

    fire(None).await;
    // Switchyard's message, from Alertmanager's webhook.
    let ours = messages(&env, "C0ALERTS", 1).await;
    assert_eq!(ours.len(), 1, "one message per alert: {ours:#?}");
    let blocks = ours[0]["blocks"].to_string();
    assert!(ours[0]["bot_id"].is_string(), "posted as the app");
    for part in [
        "Disk full on db-1",
        "98% used",
        "alertmanager (both)",
        "• db-1",
        "http://prometheus.example:9090/graph?g0.expr=disk",
    ] {
        assert!(blocks.contains(part), "{part} in {blocks}");
    }
    // Alertmanager's own Slack message, through the sandbox's incoming webhook.
    let theirs = messages(&env, "C0AMSLACK", 1).await;
    assert!(
        theirs[0].to_string().contains("Disk full on db-1"),
        "{theirs:#?}"
    );

    // Resolved through Alertmanager's API (endsAt now): Switchyard edits its message in place
    // and says so in the thread.
    let now = switchyard_engine::admin::format_ms(switchyard_engine::now_ms());
    fire(Some(now)).await;
    let ts = ours[0]["ts"].as_str().unwrap().to_string();
    let lines = env.replies("C0ALERTS", &ts, 1).await;
    assert_eq!(
        lines,
        [":white_check_mark: Resolved via alertmanager (both)."]
    );
    let after = messages(&env, "C0ALERTS", 1).await;
    assert_eq!(after.len(), 1, "edited, not posted again: {after:#?}");
    assert!(
        after[0]["blocks"].to_string().contains("Resolved"),
        "{:#}",
        after[0]
    );
    let theirs = messages(&env, "C0AMSLACK", 2).await;
    assert!(theirs[1].to_string().contains("resolved"), "{theirs:#?}");
    drop(am);
    env.server.shutdown().await;
}

/// The top-level messages in `channel` (Alertmanager's own too) once there are at least `n`.
async fn messages(env: &AlertsEnv, channel: &str, n: usize) -> Vec<Value> {
    env.all_messages_when(channel, n, |m| m.len() >= n).await
}
