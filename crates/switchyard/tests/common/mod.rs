//! What the binary's suites share: a `switchyard serve` process, and where it listens; the
//! alerts suites' environment ([`AlertsEnv`]); a sandbox from a seed, API tokens, mentions and
//! threads read back; a PostgreSQL schema of a test's own.

// Each suite uses its own part of this module.
#![allow(dead_code)]

mod alerts_env;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_sandbox::{RateLimitSettings, Sandbox, SandboxConfig, Seed};
use switchyard_store::{NewApiToken, Store};

// Only the alerts suites use it.
#[allow(unused_imports)]
pub use alerts_env::{AlertsEnv, Setup, seed};

/// A `switchyard serve` process, killed on drop.
pub struct Serve {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, from its first line.
    pub url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Runs `command` (a `switchyard serve …`) with its stdout piped, once it says where it
    /// listens.
    pub async fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("switchyard serve runs");
        let url = listening_url(&mut child).await;
        Self { child, url }
    }
}

/// Reads the first line `switchyard serve` prints (`Switchyard listening on URL`) and returns
/// the URL. The child's stdout must be piped.
pub async fn listening_url(child: &mut Child) -> String {
    try_listening_url(child)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// As [`listening_url`], or what went wrong: a server that exits before it listens (its
/// stdout closed) is waited for, and its exit status told.
pub async fn try_listening_url(child: &mut Child) -> Result<String, String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader")
    .map_err(|e| format!("reading the server's first line: {e}"))?;
    match line.trim().strip_prefix("Switchyard listening on ") {
        Some(url) => Ok(url.to_string()),
        None if line.is_empty() => Err(format!(
            "the server closed its stdout before listening; it exited {:?}",
            child.wait()
        )),
        None => Err(format!("unexpected first line: {line:?}")),
    }
}

/// Runs `body` with the URL of a PostgreSQL schema of its own (from
/// `SWITCHYARD_TEST_POSTGRES_URL`), dropped afterwards even when the body panics. Without the
/// variable it says `SKIPPED: {what} on PostgreSQL` and returns.
pub async fn on_postgres_schema<F, Fut>(what: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(admin) = std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        use std::io::Write;
        // Straight to the process's stderr: `eprintln!` would be captured by libtest.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {what} on PostgreSQL — set SWITCHYARD_TEST_POSTGRES_URL"
        );
        return;
    };
    use switchyard_store::sqlx::{Connection, Executor, PgConnection};
    let schema = format!(
        "switchyard_{}_test_{}",
        what.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        std::process::id()
    );
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    conn.execute(format!("CREATE SCHEMA {schema}").as_str())
        .await
        .unwrap();
    let sep = if admin.contains('?') { '&' } else { '?' };
    let url = format!("{admin}{sep}options=-c%20search_path%3D{schema}");
    // In a task of its own, so a failing body still lets the schema be dropped.
    let outcome = tokio::spawn(body(url)).await;
    conn.execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
        .await
        .unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A sandbox with the workspace `seed` (TOML), Slack's rate limits on or off.
pub async fn sandbox(seed: &str, rate_limits: bool) -> Sandbox {
    Sandbox::start(SandboxConfig {
        seed: Seed::parse_toml(seed, "the suite's seed").unwrap(),
        rate_limits: RateLimitSettings {
            enabled: rate_limits,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Makes an API token in `store`, as `switchyard token create` does; its plaintext.
pub async fn create_token(store: &Store, name: &str, scopes: &[&str]) -> String {
    let token = NewApiToken {
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        expires_at_ms: None,
    };
    let actor = switchyard_engine::admin::Actor::cli();
    // A `switchyard serve` in another process holds SQLite's one writer now and then: try again.
    let mut last = None;
    for _ in 0..50 {
        match switchyard_engine::admin::create_token(
            store,
            &token,
            &actor,
            switchyard_engine::now_ms(),
        )
        .await
        {
            Ok(made) => return made.plaintext,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the token {name} was never made: {last:?}");
}

/// `@bot <text>` as `user` in `channel`, through the sandbox; the message's ts.
pub async fn mention(sandbox: &Sandbox, user: &str, channel: &str, text: &str) -> String {
    let body = json!({"user": user, "channel": channel,
                      "text": format!("<@{}> {text}", sandbox.bot_user_id())});
    let posted = sandbox
        .control()
        .post("/messages", &body)
        .await
        .expect("control API");
    posted["ts"].as_str().expect("posted").to_string()
}

/// The thread of `ts` in `channel`, its parent first, once it has at least `n` replies.
pub async fn thread(sandbox: &Sandbox, channel: &str, ts: &str, n: usize) -> Vec<Value> {
    let v = sandbox
        .control()
        .get(&format!(
            "/channels/{channel}/threads/{ts}?wait_for={}&timeout_ms=30000",
            n + 1
        ))
        .await
        .expect("control API");
    let messages = v["messages"].as_array().unwrap().clone();
    assert!(
        messages.len() > n,
        "{n} replies expected in {channel}/{ts}: {v}"
    );
    messages
}

/// Writes a file only its owner may read, as an operator keeps a config holding secrets:
/// `switchyard` refuses a config that anyone on the machine can read while it holds secrets
/// written in it, and the suites' configs hold the sandbox's tokens (in temporary folders that
/// others may enter). Otherwise as `std::fs::write`.
pub fn write_private(
    path: impl AsRef<std::path::Path>,
    contents: impl AsRef<[u8]>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = path.as_ref();
    std::fs::write(path, contents)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}
