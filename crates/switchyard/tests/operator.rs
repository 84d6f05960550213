//! The operator's commands, run as the real `switchyard` process: `check-config`, `config show`,
//! `manifest`; and the manifest it prints, given to the sandbox as a Slack app, is enough for
//! `switchyard serve` to work.

mod common;

use common::Serve;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sandbox::{Manifest, Sandbox, SandboxConfig};

/// The variables the config reads; cleared so the developer's own environment cannot leak in.
const CONFIG_ENV: &[&str] = &[
    "SWITCHYARD_CONFIG",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_API_URL",
];

fn switchyard(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command.current_dir(dir).env("RUST_LOG", "warn");
    for name in CONFIG_ENV {
        command.env_remove(name);
    }
    command
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = switchyard(dir);
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("switchyard runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    common::write_private(&path, contents).expect("file written");
    path
}

#[test]
fn check_config_lists_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.toml",
        r#"
[slack]
bot_token = "${SWITCHYARD_TEST_UNSET}"
app_token = "xoxb-not-an-app-token"
socket_connections = 11
colour = "blue"

[server]
listen = "everywhere"

[store]
url = 42

[engine]
lease_ms = "a while"

[apps.ping]
enabled = "yes"

[apps.pager]
enabled = true

[acess]
roles = []
"#,
    );
    let file = path.display().to_string();
    let out = run(dir.path(), &["check-config", "--config", &file], &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let mut keys: Vec<&str> = lines
        .iter()
        .map(|line| {
            let rest = line
                .strip_prefix(&format!("{file}: "))
                .unwrap_or_else(|| panic!("not `file: key: reason`: {line:?}"));
            rest.split(": ").next().unwrap_or_default()
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "acess",
            "apps.pager",
            "apps.ping.enabled",
            "engine.lease_ms",
            "server.listen",
            "slack.app_token",
            "slack.bot_token",
            "slack.colour",
            "slack.socket_connections",
            "store.url",
        ],
        "{stderr}"
    );
    assert!(!stderr.contains("xoxb-not-an-app-token"), "{stderr}");
}

#[test]
fn check_config_passes_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "switchyard.toml",
        "[slack]\nbot_token = \"xoxb-1\"\napp_token = \"${APP_TOKEN}\"\n\n[apps.ping]\nenabled = true\n",
    );
    // The default path, ./switchyard.toml, and a token from the environment.
    let out = run(dir.path(), &["check-config"], &[("APP_TOKEN", "xapp-1")]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("switchyard.toml: ok") && stdout.contains("ping"),
        "{stdout}"
    );
}

#[test]
fn config_show_never_shows_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "switchyard.toml",
        r#"
[slack]
bot_token = "xoxb-bot-secret-1"
app_token = "${APP_TOKEN}"
api_url = "https://proxy-user:proxy-secret-4@slack.example/api/"

[store]
url = "postgres://switchyard:db-secret-5@db.example:5432/switchyard?sslpassword=db-secret-6"

[apps.ping]
enabled = true
"#,
    );
    let file = path.display().to_string();
    let env = [
        ("APP_TOKEN", "xapp-app-secret-2"),
        ("SLACK_SIGNING_SECRET", "signing-secret-3"),
    ];
    for format in ["toml", "json"] {
        let out = run(
            dir.path(),
            &["config", "show", "--config", &file, "--format", format],
            &env,
        );
        let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{shown}");
        for secret in [
            "bot-secret-1",
            "app-secret-2",
            "signing-secret-3",
            "proxy-secret-4",
            "db-secret-5",
            "db-secret-6",
        ] {
            assert!(!shown.contains(secret), "{format}: {secret} shown: {shown}");
        }
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(
            shown.contains("postgres://switchyard:***@db.example:5432/switchyard"),
            "{shown}"
        );
        // Defaults are part of the effective config.
        assert!(shown.contains("127.0.0.1:3000") && shown.contains("lease_ms"));
    }
    let out = run(
        dir.path(),
        &["config", "show", "--config", &file, "--format", "json"],
        &env,
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["slack"]["signing_secret"], "[redacted]");
    assert_eq!(v["apps"]["ping"]["enabled"], true);
}

/// A config anyone on the machine can read, holding a secret written in it, is refused by what
/// reads it — `check-config`, `config show`, `serve` — with one `file: key: reason` line
/// naming the file, its mode, the secret's key and the fix; a secret from the environment does
/// not count, and `chmod 600` is the fix.
#[test]
fn a_config_anyone_can_read_holding_a_secret_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // A folder anyone may enter, as /etc/switchyard is.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("switchyard.toml");
    std::fs::write(
        &path,
        "[slack]\nbot_token = \"xoxb-exposed-secret-7\"\napp_token = \"${APP_TOKEN}\"\n\n[apps.ping]\nenabled = true\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = path.display().to_string();
    let env = [("APP_TOKEN", "xapp-from-the-environment")];
    let refused = |out: &Output, what: &str| {
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{what} took it: {stderr}");
        assert!(
            stderr.contains(&format!("{file}: (file): "))
                && stderr.contains("mode 0644")
                && stderr.contains("slack.bot_token")
                && stderr.contains("chmod 600"),
            "{what}: {stderr}"
        );
        assert!(
            !stderr.contains("slack.app_token"),
            "{what}: a secret from the environment is not held by the file: {stderr}"
        );
        for shown in [&stderr, &text(&out.stdout)] {
            assert!(!shown.contains("xoxb-exposed-secret-7"), "{what}: {shown}");
        }
        stderr
    };
    let out = run(dir.path(), &["check-config", "--config", &file], &env);
    let stderr = refused(&out, "check-config");
    // check-config's errors stay one `file: key: reason` per line, this one among them.
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let out = run(dir.path(), &["config", "show", "--config", &file], &env);
    refused(&out, "config show");
    assert!(
        out.stdout.is_empty(),
        "nothing shown: {}",
        text(&out.stdout)
    );
    // `serve` stops before it starts anything (bounded: were it to start, it would not end).
    let mut command = switchyard(dir.path());
    command
        .args(["serve", "--config", &file])
        .env("APP_TOKEN", "xapp-from-the-environment")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("switchyard serve runs");
    let mut ended = false;
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(ended, "serve started with the file: {}", text(&out.stdout));
    refused(&out, "serve");

    // The fix it names works.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(dir.path(), &["check-config", "--config", &file], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).is_empty(),
        "no warning either: {}",
        text(&out.stderr)
    );
    // So does taking the secret from the environment, the file left readable.
    std::fs::write(
        &path,
        "[slack]\nbot_token = \"${BOT_TOKEN}\"\napp_token = \"${APP_TOKEN}\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(
        dir.path(),
        &["check-config", "--config", &file],
        &[("BOT_TOKEN", "xoxb-1"), ("APP_TOKEN", "xapp-1")],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn manifest_without_a_config_is_for_socket_mode() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["manifest"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(m["settings"]["socket_mode_enabled"], true);
    assert_eq!(m["display_information"]["name"], "Switchyard");
    let out = run(
        dir.path(),
        &["manifest", "--request-url", "slack.example"],
        &[],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("slack.example"));
}

async fn serve(dir: &Path, config: &Path) -> Serve {
    let mut child = switchyard(dir)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("switchyard serve runs");
    let url = common::listening_url(&mut child).await;
    Serve { child, url }
}

fn config_for(sandbox: &Sandbox, dir: &Path, socket_mode: bool) -> PathBuf {
    let app_token = if socket_mode {
        format!("app_token = \"{}\"\n", sandbox.app_token())
    } else {
        String::new()
    };
    write(
        dir,
        "switchyard.toml",
        &format!(
            "[slack]\nbot_token = \"{}\"\n{app_token}signing_secret = \"{}\"\napi_url = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite://{}\"\n",
            sandbox.bot_token(),
            sandbox.signing_secret(),
            sandbox.api_url(),
            dir.join("switchyard.db").display(),
        ),
    )
}

fn print_manifest(dir: &Path, config: &Path, format: &str, request_url: Option<&str>) -> String {
    let mut args = vec![
        "manifest".to_string(),
        "--config".into(),
        config.display().to_string(),
        "--format".into(),
        format.into(),
    ];
    if let Some(url) = request_url {
        args.extend(["--request-url".into(), url.into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(dir, &args, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

async fn get(http: &reqwest::Client, url: String) -> Value {
    http.get(url)
        .send()
        .await
        .expect("control API")
        .json()
        .await
        .expect("JSON")
}

/// The sandbox's app has the scopes and events the printed manifest declares, and with no more
/// than those, a mention `ping` is answered `pong`.
async fn sandbox_agrees_and_ping_works(sandbox: &Sandbox, printed: &Value, socket_mode: bool) {
    let http = reqwest::Client::new();
    let app = get(&http, format!("{}/_sandbox/app", sandbox.url())).await;
    assert_eq!(app["socket_mode"], socket_mode);
    let seen = Manifest::from_value(app["manifest"].clone()).expect("the sandbox's manifest");
    assert_eq!(
        seen.bot_scopes,
        set(&printed["oauth_config"]["scopes"]["bot"])
    );
    assert_eq!(
        seen.bot_events,
        set(&printed["settings"]["event_subscriptions"]["bot_events"])
    );
    if socket_mode {
        for _ in 0..100 {
            let v = get(&http, format!("{}/_sandbox/socket", sandbox.url())).await;
            if v["connections"].as_array().is_some_and(|c| !c.is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let posted: Value = http
        .post(format!("{}/_sandbox/messages", sandbox.url()))
        .json(&json!({"user": "alice", "channel": "general", "text": format!("<@{}> ping", sandbox.bot_user_id())}))
        .send()
        .await
        .expect("control API")
        .json()
        .await
        .expect("JSON");
    let ts = posted["ts"].as_str().expect("ts");
    let thread = get(
        &http,
        format!(
            "{}/_sandbox/channels/general/threads/{ts}?wait_for=2&timeout_ms=10000",
            sandbox.url()
        ),
    )
    .await;
    let replies: Vec<&str> = thread["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .skip(1)
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(replies, ["pong"], "{thread}");
}

#[tokio::test]
async fn the_json_manifest_sets_up_a_socket_mode_app_that_works() {
    let dir = tempfile::tempdir().unwrap();
    // Before the Slack app exists there are no tokens: an app token's presence is what says
    // Socket Mode, and the manifest needs nothing else.
    let before = write(
        dir.path(),
        "before.toml",
        "[slack]\napp_token = \"xapp-to-be-created\"\n",
    );
    let printed = print_manifest(dir.path(), &before, "json", None);
    let manifest = Manifest::parse(&printed).expect("the sandbox takes the manifest");
    assert!(manifest.socket_mode_enabled);
    let sandbox = Sandbox::start(SandboxConfig {
        port: 0,
        manifest: Some(manifest),
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts");
    let config = config_for(&sandbox, dir.path(), true);
    let _serve = serve(dir.path(), &config).await;
    let printed: Value = serde_json::from_str(&printed).unwrap();
    sandbox_agrees_and_ping_works(&sandbox, &printed, true).await;
}

#[tokio::test]
async fn the_yaml_manifest_sets_up_an_http_app_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(SandboxConfig {
        port: 0,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts");
    let config = config_for(&sandbox, dir.path(), false);
    let serve = serve(dir.path(), &config).await;
    // The request URL is known once the server listens; the app is then set up as in Slack.
    let printed = print_manifest(dir.path(), &config, "yaml", Some(&serve.url));
    let manifest = Manifest::parse(&printed).expect("the sandbox takes the manifest");
    assert!(!manifest.socket_mode_enabled);
    assert_eq!(
        manifest.event_request_url.as_deref(),
        Some(format!("{}/slack/events", serve.url).as_str())
    );
    let r = reqwest::Client::new()
        .put(format!("{}/_sandbox/app/manifest", sandbox.url()))
        .body(printed.clone())
        .send()
        .await
        .expect("control API");
    assert!(r.status().is_success(), "{}", r.status());
    let printed = manifest.raw.clone();
    sandbox_agrees_and_ping_works(&sandbox, &printed, false).await;
}
