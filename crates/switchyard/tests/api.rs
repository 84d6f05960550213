//! API tokens and the audit log end to end: tokens made with the real `switchyard token`, the
//! real `switchyard serve` answering `/api/v1/audit` over a socket, and `switchyard audit`.

mod common;

use common::Serve;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use switchyard_sandbox::{Sandbox, SandboxConfig};
use switchyard_store::{NewApiToken, Store};

struct Setup {
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    config: PathBuf,
}

/// Only `serve` is given this variable: the `token` and `audit` commands must work from the
/// `[store]` section alone, without Slack's tokens in the environment.
const BOT_TOKEN_VAR: &str = "SWITCHYARD_API_TEST_BOT_TOKEN";

impl Setup {
    async fn new() -> Self {
        let sandbox = Sandbox::start(SandboxConfig::default())
            .await
            .expect("sandbox starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("switchyard.toml");
        let text = format!(
            "[slack]\nbot_token = \"${{{BOT_TOKEN_VAR}}}\"\nsigning_secret = \"{}\"\napi_url = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = \"sqlite://{}\"\n\n[audit]\nretention_days = 30\n",
            sandbox.signing_secret(),
            sandbox.api_url(),
            dir.path().join("switchyard.db").display(),
        );
        common::write_private(&config, text).expect("config written");
        Self {
            sandbox,
            dir,
            config,
        }
    }

    fn store_url(&self) -> String {
        format!(
            "sqlite://{}",
            self.dir.path().join("switchyard.db").display()
        )
    }

    /// Runs `switchyard <args> --config …` to completion.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove(BOT_TOKEN_VAR)
            .env_remove("SLACK_BOT_TOKEN")
            .env("RUST_LOG", "warn")
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("switchyard runs")
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "switchyard {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8")
    }

    /// `token create`; returns the token's id and plaintext.
    fn create_token(&self, name: &str, scopes: &[&str]) -> (i64, String) {
        let mut args = vec!["token", "create", "--name", name];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let out = self.cli_ok(&args);
        let plaintext = out
            .lines()
            .find(|l| l.starts_with("sy_"))
            .unwrap_or_else(|| panic!("no token in {out:?}"))
            .to_string();
        let id = out
            .strip_prefix("Created token ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no id in {out:?}"));
        (id, plaintext)
    }

    async fn serve(&self) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env(BOT_TOKEN_VAR, self.sandbox.bot_token())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("switchyard runs");
        let url = common::listening_url(&mut child).await;
        Serve { child, url }
    }
}

/// `GET url` with an optional `Authorization` header: status and JSON body.
async fn get(url: &str, authorization: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    let json = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body:?}"));
    (status, json)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l:?}")))
        .collect()
}

fn field<'v>(entries: &'v [Value], name: &str) -> Vec<&'v str> {
    entries.iter().filter_map(|e| e[name].as_str()).collect()
}

async fn expired_token(store_url: &str) -> String {
    let store = Store::connect(store_url).await.expect("store");
    let mut tx = store.begin().await.expect("begin");
    let now = switchyard_engine::now_ms();
    let created = tx
        .token_create(
            &NewApiToken {
                name: "expired".into(),
                scopes: vec!["audit:read".into()],
                expires_at_ms: Some(now - 1_000),
            },
            now - 60_000,
        )
        .await
        .expect("token");
    tx.commit().await.expect("commit");
    created.plaintext
}

fn assert_no_secret(text: &str, secrets: &[&str], what: &str) {
    for secret in secrets {
        // The random part: the hash is hex too, so no 16 hex digits of the token either.
        assert!(
            !text.contains(&secret[3..19]),
            "{what} shows a token: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_the_audit_api_and_everything_is_audited() {
    let setup = Setup::new().await;
    let (reader_id, reader) = setup.create_token("reader", &["audit:read"]);
    let (alerts_id, alerts) = setup.create_token("alerts", &["alerts:*"]);
    let (_, doomed) = setup.create_token("doomed", &["admin"]);
    let expired = expired_token(&setup.store_url()).await;
    let server = setup.serve().await;
    let audit_url = format!("{}/api/v1/audit", server.url);

    // No token, a wrong one, the wrong scheme, a token without the scope.
    let (status, body) = get(&audit_url, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    let wrong = format!("sy_{}", "0".repeat(64));
    for auth in [
        bearer(&wrong),
        bearer("nonsense"),
        format!("Basic {reader}"),
    ] {
        let (status, body) = get(&audit_url, Some(&auth)).await;
        assert_eq!((status, body["ok"].as_bool()), (401, Some(false)), "{body}");
        assert_eq!(body["error"], "invalid_token", "{body}");
    }
    let (status, body) = get(&audit_url, Some(&bearer(&alerts))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        (body["error"].as_str(), body["needed"].as_str()),
        (Some("missing_scope"), Some("audit:read"))
    );

    // The right token sees the tokens being created, by the CLI.
    let (status, body) = get(&audit_url, Some(&bearer(&reader))).await;
    assert_eq!(status, 200, "{body}");
    let entries = body["entries"].as_array().expect("entries").clone();
    let created: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "tokens.create")
        .collect();
    assert_eq!(created.len(), 3, "{body}");
    let reader_created = created
        .iter()
        .find(|e| e["object"] == format!("token:{reader_id}"))
        .expect("the reader token's creation");
    assert_eq!(
        (
            reader_created["actor_kind"].as_str(),
            reader_created["actor"].as_str(),
            reader_created["via"].as_str(),
            reader_created["outcome"].as_str(),
        ),
        (Some("system"), Some("system"), Some("cli"), Some("ok"))
    );
    // And the refusal above, by the alerts token.
    let refusal = entries
        .iter()
        .find(|e| e["outcome"] == "refused")
        .expect("the 403 was audited");
    assert_eq!(refusal["actor"], alerts_id.to_string());
    assert_eq!(
        (refusal["actor_kind"].as_str(), refusal["via"].as_str()),
        (Some("token"), Some("api"))
    );
    assert_no_secret(
        &body.to_string(),
        &[&reader, &alerts, &doomed],
        "the audit API",
    );

    // Admin grants every scope, until it is revoked; an expired token is refused.
    assert_eq!(get(&audit_url, Some(&bearer(&doomed))).await.0, 200);
    let out = setup.cli_ok(&["token", "revoke", "doomed"]);
    assert!(out.contains("Revoked"), "{out}");
    let (status, body) = get(&audit_url, Some(&bearer(&doomed))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
    let (status, _) = get(&audit_url, Some(&bearer(&expired))).await;
    assert_eq!(status, 401);

    // Filters and paging over HTTP.
    let (_, body) = get(
        &format!("{audit_url}?action=tokens.rev&who=system&since=1h"),
        Some(&bearer(&reader)),
    )
    .await;
    let entries = body["entries"].as_array().expect("entries");
    assert_eq!(field(entries, "action"), ["tokens.revoke"], "{body}");
    let (_, page) = get(&format!("{audit_url}?limit=1"), Some(&bearer(&reader))).await;
    let next = page["next_before"]
        .as_i64()
        .expect("a full page has a next");
    let (_, second) = get(
        &format!("{audit_url}?limit=1&before={next}"),
        Some(&bearer(&reader)),
    )
    .await;
    assert!(second["entries"][0]["id"].as_i64().expect("id") < next);
    let (status, body) = get(
        &format!("{audit_url}?since=someday"),
        Some(&bearer(&reader)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_argument"))
    );
    let (status, body) = get(&format!("{}/api/v1/nope", server.url), None).await;
    assert_eq!((status, body["ok"].as_bool()), (404, Some(false)));

    // `switchyard audit --json`, with filters.
    let all = json_lines(&setup.cli_ok(&["audit", "--json"]));
    assert!(all.len() >= 5, "{all:?}");
    let revokes = json_lines(&setup.cli_ok(&["audit", "--json", "--action", "tokens.revoke"]));
    assert_eq!(field(&revokes, "detail"), ["name doomed"]);
    let refused = json_lines(&setup.cli_ok(&["audit", "--json", "--outcome", "refused"]));
    assert_eq!(field(&refused, "action"), ["api.authorize"]);
    let by_token = json_lines(&setup.cli_ok(&[
        "audit",
        "--json",
        "--who",
        &alerts_id.to_string(),
        "--since",
        "2020-01-01",
    ]));
    assert_eq!(by_token.len(), 1);
    let none = json_lines(&setup.cli_ok(&["audit", "--json", "--until", "2020-01-01"]));
    assert!(none.is_empty());
    let object = format!("token:{reader_id}");
    let table = setup.cli_ok(&["audit", "--object", &object]);
    assert!(
        table.starts_with("TIME") && table.contains("tokens.create"),
        "{table}"
    );
    assert!(!setup.cli(&["audit", "--since", "someday"]).status.success());

    // Listings never show a secret.
    let list = setup.cli_ok(&["token", "list"]);
    assert!(list.contains("reader") && list.contains("doomed"), "{list}");
    assert_no_secret(&list, &[&reader, &alerts, &doomed, &expired], "token list");
    let list = setup.cli_ok(&["token", "list", "--json"]);
    assert_no_secret(
        &list,
        &[&reader, &alerts, &doomed, &expired],
        "token list --json",
    );
    let audit_text = setup.cli_ok(&["audit", "--json", "--limit", "1000"]);
    assert_no_secret(
        &audit_text,
        &[&reader, &alerts, &doomed, &expired],
        "the audit log",
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_commands_refuse_bad_input_plainly() {
    let setup = Setup::new().await;
    setup.create_token("ci", &["audit:read"]);
    for (args, says) in [
        (
            &["token", "create", "--name", "ci", "--scope", "admin"][..],
            "exists already",
        ),
        (
            &["token", "create", "--name", "x", "--scope", "Admin"][..],
            "invalid scope",
        ),
        (
            &["token", "create", "--name", "123", "--scope", "admin"][..],
            "invalid token name",
        ),
        (
            &[
                "token",
                "create",
                "--name",
                "y",
                "--scope",
                "admin",
                "--expires",
                "2020-01-01",
            ][..],
            "already past",
        ),
        (&["token", "revoke", "nobody"][..], "no token in force"),
    ] {
        let output = setup.cli(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
