//! `switchyard access …` as the real process: groups and bindings changed in the store,
//! checked against the config's roles, listed with the config's, audited; `check-config`
//! listing every `[access]` error; and a running `switchyard serve` picking a binding made by
//! the command up without a restart.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sandbox::{Manifest, RateLimitSettings, Sandbox, SandboxConfig};

fn switchyard(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("SWITCHYARD_CONFIG")
        .env_remove("SLACK_BOT_TOKEN")
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("switchyard runs")
}

fn ok(config: &Path, args: &[&str]) -> String {
    let out = switchyard(config, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn fails(config: &Path, args: &[&str]) -> String {
    let out = switchyard(config, args);
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// carol and bob have no role bound: the default `viewer`, which may not `ping`.
fn write_config(dir: &Path, sandbox: &Sandbox) -> PathBuf {
    let path = dir.join("switchyard.toml");
    let text = format!(
        r#"[slack]
bot_token = "{}"
app_token = "{}"
api_url = "{}"
[server]
listen = "127.0.0.1:0"
[store]
url = "sqlite://{}"
[engine]
poll_interval_ms = 100
[access]
default_role = "viewer"
[access.roles]
admin = ["*"]
operator = ["ping", "*.status"]
viewer = ["*.status"]
[access.groups]
oncall = ["U0STATIC"]
[access.bind]
admin = ["U0ADMIN"]
"#,
        sandbox.bot_token(),
        sandbox.app_token(),
        sandbox.api_url(),
        dir.join("switchyard.db").display(),
    );
    common::write_private(&path, text).expect("config written");
    path
}

#[tokio::test]
async fn access_commands_change_list_and_audit_and_a_running_server_follows() {
    let manifest = Manifest::from_value(json!({
        "display_information": {"name": "Switchyard"},
        "features": {"bot_user": {"display_name": "switchyard"}},
        "oauth_config": {"scopes": {"bot": ["app_mentions:read", "chat:write", "usergroups:read"]}},
        "settings": {"event_subscriptions": {"bot_events": ["app_mention"]}, "socket_mode_enabled": true},
    }))
    .unwrap();
    let sandbox = Sandbox::start(SandboxConfig {
        manifest: Some(manifest),
        rate_limits: RateLimitSettings {
            enabled: false,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("sandbox starts");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sandbox);
    let http = reqwest::Client::new();
    let users: Value = http
        .get(format!("{}/_sandbox/users", sandbox.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let carol = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "carol")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The server first: the commands change the store under it.
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn");
    let _serve = common::Serve::start(command).await;

    let mention = |text: &'static str| {
        let (http, url, bot) = (
            http.clone(),
            format!("{}/_sandbox/messages", sandbox.url()),
            sandbox.bot_user_id().to_string(),
        );
        async move {
            let body =
                json!({"user": "carol", "channel": "general", "text": format!("<@{bot}> {text}")});
            let v: Value = http
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["ts"].as_str().unwrap().to_string()
        }
    };
    let ephemerals = |n: usize| {
        let url = format!(
            "{}/_sandbox/ephemerals?user=carol&wait_for={n}&timeout_ms=15000",
            sandbox.url()
        );
        let http = http.clone();
        async move {
            let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            v["ephemerals"].as_array().unwrap().clone()
        }
    };
    // The server may still be connecting its socket: retry until the refusal comes.
    let mut refused = Vec::new();
    for _ in 0..20 {
        mention("ping").await;
        refused = ephemerals(1).await;
        if !refused.is_empty() {
            break;
        }
    }
    assert_eq!(
        refused[0]["message"]["text"],
        ":no_entry: `ping` needs a role that allows it; you have `viewer`"
    );

    // Changes.
    let said = ok(&config, &["access", "bind", "operator", &carol]);
    assert!(
        said.starts_with(&format!("Bound operator to {carol}.")),
        "{said}"
    );
    let said = ok(&config, &["access", "bind", "operator", &carol]);
    assert!(said.contains("already"), "{said}");
    let said = ok(
        &config,
        &["access", "group", "add", "oncall", "usergroup:S0NIGHT"],
    );
    assert!(
        said.starts_with("Added usergroup:S0NIGHT to group oncall."),
        "{said}"
    );
    ok(&config, &["access", "bind", "admin", "group:oncall"]);
    let said = ok(&config, &["access", "unbind", "admin", "group:oncall"]);
    assert!(
        said.starts_with("Unbound admin from group:oncall."),
        "{said}"
    );
    let err = fails(&config, &["access", "bind", "root", &carol]);
    assert!(
        err.contains("\"root\" is not a role; the roles are admin, operator, viewer"),
        "{err}"
    );
    let err = fails(&config, &["access", "group", "add", "oncall", "carol"]);
    assert!(err.contains("use a Slack user id"), "{err}");
    let err = fails(&config, &["access", "group", "add", "Bad Name", &carol]);
    assert!(err.contains("group"), "{err}");

    // Listings: the config's and the store's, each marked.
    let listed: Value = serde_json::from_str(&ok(&config, &["access", "list", "--json"])).unwrap();
    let bindings: Vec<(String, String, String)> = listed["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            ["role", "subject", "source"]
                .map(|k| b[k].as_str().unwrap().to_string())
                .into()
        })
        .collect();
    assert_eq!(
        bindings,
        [
            ("admin".into(), "U0ADMIN".into(), "config".into()),
            ("operator".into(), carol.clone(), "store".into()),
        ]
    );
    let table = ok(&config, &["access", "group", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("GROUP"), "{table}");
    assert!(
        lines[1].contains("oncall")
            && lines[1].contains("U0STATIC")
            && lines[1].ends_with("config"),
        "{table}"
    );
    assert!(
        lines[2].contains("usergroup:S0NIGHT") && lines[2].ends_with("store"),
        "{table}"
    );

    // Audited, by the command line.
    let audit = ok(&config, &["audit", "--action", "access.", "--json"]);
    let entries: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["object"].as_str().unwrap(),
                e["via"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("access.unbind", "role:admin", "cli"),
            ("access.bind", "role:admin", "cli"),
            ("access.group.add", "group:oncall", "cli"),
            ("access.bind", "role:operator", "cli"),
        ]
    );

    // The running server follows the store without a restart (within its 5 s refresh).
    let mut answered = false;
    for _ in 0..20 {
        let ts = mention("ping").await;
        tokio::time::sleep(Duration::from_millis(750)).await;
        let thread: Value = http
            .get(format!(
                "{}/_sandbox/channels/general/threads/{ts}",
                sandbox.url()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if thread["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["text"] == "pong"))
        {
            answered = true;
            break;
        }
    }
    assert!(answered, "carol, now an operator, gets her pong");
}

#[test]
fn check_config_lists_every_access_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.toml");
    common::write_private(
        &path,
        r##"[slack]
bot_token = "xoxb-1"
app_token = "xapp-1"
[access]
default_role = "guest"
[access.roles]
viewer = ["ping", "Not A Pattern"]
[access.bind]
viewer = ["alice"]
[[access.gates]]
actions = ["machines.*"]
channels = ["#control"]
"##,
    )
    .unwrap();
    let out = switchyard(&path, &["check-config"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown = path.display().to_string();
    for key in [
        "access.default_role",
        "access.roles.viewer[1]",
        "access.bind.viewer[0]",
        "access.gates[0].channels[0]",
    ] {
        assert!(
            stderr.contains(&format!("{shown}: {key}: ")),
            "{key} in {stderr}"
        );
    }
}
