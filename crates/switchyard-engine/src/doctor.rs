//! `switchyard doctor`: is this installation able to work? Each check is one line — `ok`,
//! `warn` or `FAIL`, what was checked — and every failure says what to do about it.
//!
//! Checks, in order: the bot token (`auth.test`); its scopes against what the enabled apps
//! need (the manifest's scopes; the granted ones come from the `x-oauth-scopes` header Slack
//! puts on every Web API reply); every channel the apps' config names exists and has the bot
//! in it (`conversations.info`); the transport (Socket Mode: `apps.connections.open` succeeds;
//! HTTP: `[server] public_url` answers a signed `url_verification` with its challenge); the
//! store is reachable and its schema current (it is opened without migrating); the outbox is
//! not stuck. Nothing is changed anywhere.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Method, Request, header};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng;
use serde_json::{Value, json};
use sha2::Sha256;
use switchyard_store::Store;

use crate::app::Declaration;
use crate::config::{Config, Secret};
use crate::now_ms;

/// How long one request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A pending outbox call older than this means the sender is not getting through.
pub const STUCK_AFTER: Duration = Duration::from_secs(10 * 60);

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Worth a look, but not broken.
    Warn,
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub status: Status,
    /// What was checked (`bot token`, `channel C123`, …).
    pub name: String,
    /// What was found.
    pub found: String,
    /// What to do about it (failures and warnings).
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, found: impl Into<String>) -> Self {
        Self {
            status: Status::Ok,
            name: name.into(),
            found: found.into(),
            fix: None,
        }
    }

    fn fail(name: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            status: Status::Fail,
            name: name.into(),
            found: found.into(),
            fix: Some(fix.into()),
        }
    }

    fn warn(name: impl Into<String>, found: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            status: Status::Warn,
            fix: Some(fix.into()),
            ..Self::fail(name, found, "")
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        write!(f, "{status}  {}: {}", self.name, self.found)?;
        if let Some(fix) = &self.fix {
            write!(f, " — fix: {fix}")?;
        }
        Ok(())
    }
}

/// Every check's result, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// No check failed (warnings allowed).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            writeln!(f, "{check}")?;
        }
        Ok(())
    }
}

/// Runs every check for `config` with the enabled apps' `declarations`.
pub async fn run(config: &Config, declarations: &[Declaration]) -> Report {
    let web = Web::new();
    let mut checks = Vec::new();
    let bot_ok = check_slack(&web, config, declarations, &mut checks).await;
    if bot_ok {
        check_channels(&web, config, declarations, &mut checks).await;
    }
    checks.push(check_transport(&web, config).await);
    check_store(config, &mut checks).await;
    Report { checks }
}

/// A plain http(s) client: the doctor needs the replies' headers, which the Web API client
/// used for sending does not expose.
struct Web {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A reply: status, headers we care about, body.
struct Reply {
    status: u16,
    oauth_scopes: Option<String>,
    body: Bytes,
}

impl Web {
    fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build(crate::slack::https_connector()),
        }
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<Reply, String> {
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            let status = response.status().as_u16();
            let oauth_scopes = response
                .headers()
                .get("x-oauth-scopes")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the reply: {e}"))?
                .to_bytes();
            Ok(Reply {
                status,
                oauth_scopes,
                body,
            })
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no reply in {CALL_TIMEOUT:?}"))?
    }

    /// A Web API call with form arguments (every method takes them; some refuse JSON). `Ok`
    /// is Slack's reply, `ok` or not, and the scopes header; `Err` is no usable reply.
    async fn call(
        &self,
        config: &Config,
        method: &str,
        token: &Secret,
        args: &[(&str, &str)],
    ) -> Result<(Value, Option<String>), String> {
        let body = serde_urlencoded::to_string(args).map_err(|e| e.to_string())?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{method}", config.slack.api_url))
            .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("bad request: {e}"))?;
        let reply = self.send(request).await?;
        if reply.status == 429 {
            return Err("rate limited by Slack; try again in a minute".into());
        }
        let value: Value = serde_json::from_slice(&reply.body)
            .map_err(|_| format!("HTTP {} without a Slack reply", reply.status))?;
        Ok((value, reply.oauth_scopes))
    }
}

fn slack_error(reply: &Value) -> &str {
    reply["error"].as_str().unwrap_or("unknown_error")
}

/// `auth.test` and the scopes; whether the bot token works (the channel checks need it).
async fn check_slack(
    web: &Web,
    config: &Config,
    declarations: &[Declaration],
    checks: &mut Vec<Check>,
) -> bool {
    let name = "bot token";
    let fix_token = "set slack.bot_token (or SLACK_BOT_TOKEN) to the app's Bot User OAuth Token \
                     (xoxb-…, under OAuth & Permissions after installing the app)";
    let (reply, scopes) = match web
        .call(config, "auth.test", &config.slack.bot_token, &[])
        .await
    {
        Ok(answer) => answer,
        Err(e) => {
            checks.push(Check::fail(
                name,
                format!("cannot reach Slack at {}: {e}", config.slack.api_url),
                "check slack.api_url and that this host can reach it (proxy, firewall, DNS)",
            ));
            return false;
        }
    };
    if reply["ok"] != true {
        checks.push(Check::fail(
            name,
            format!("auth.test refused it: {}", slack_error(&reply)),
            fix_token,
        ));
        return false;
    }
    checks.push(Check::ok(
        name,
        format!(
            "auth.test: bot @{} ({}) in team {} ({})",
            reply["user"].as_str().unwrap_or("?"),
            reply["user_id"].as_str().unwrap_or("?"),
            reply["team"].as_str().unwrap_or("?"),
            reply["team_id"].as_str().unwrap_or("?"),
        ),
    ));
    let needed = crate::manifest::bot_scopes(config, declarations);
    match scopes {
        None => checks.push(Check::warn(
            "scopes",
            "Slack's reply did not say which scopes the token has (no x-oauth-scopes header)",
            format!(
                "make sure the app has these bot scopes: {}",
                needed.join(", ")
            ),
        )),
        Some(granted) => {
            let granted: BTreeSet<&str> = granted.split(',').map(str::trim).collect();
            let missing: Vec<&str> = needed
                .iter()
                .map(String::as_str)
                .filter(|s| !granted.contains(s))
                .collect();
            if missing.is_empty() {
                checks.push(Check::ok(
                    "scopes",
                    format!(
                        "the token has every scope the enabled apps need ({})",
                        needed.join(", ")
                    ),
                ));
            } else {
                checks.push(Check::fail(
                    "scopes",
                    format!("the bot token lacks {}", missing.join(", ")),
                    "add them under OAuth & Permissions → Bot Token Scopes (or update the app \
                     from `switchyard manifest`), then reinstall the app to the workspace",
                ));
            }
        }
    }
    true
}

/// Each configured channel exists, is not archived and has the bot in it.
async fn check_channels(
    web: &Web,
    config: &Config,
    declarations: &[Declaration],
    checks: &mut Vec<Check>,
) {
    let mut channels: Vec<(&str, &str)> = Vec::new();
    for d in declarations {
        for channel in &d.channels {
            if !channels.iter().any(|(c, _)| c == channel) {
                channels.push((channel, d.name));
            }
        }
    }
    if channels.is_empty() {
        checks.push(Check::ok("channels", "the enabled apps name no channels"));
        return;
    }
    for (channel, app) in channels {
        let name = format!("channel {channel}");
        let key = format!("apps.{app}");
        let answer = web
            .call(
                config,
                "conversations.info",
                &config.slack.bot_token,
                &[("channel", channel)],
            )
            .await;
        let reply = match answer {
            Ok((reply, _)) => reply,
            Err(e) => {
                checks.push(Check::fail(
                    name,
                    format!("conversations.info failed: {e}"),
                    "run doctor again; if it persists, check the connection to Slack",
                ));
                continue;
            }
        };
        if reply["ok"] != true {
            let error = slack_error(&reply);
            let fix = match error {
                "channel_not_found" => format!(
                    "use the channel's id (C…, in the channel's details) in [{key}]; a private \
                     channel is found only once the bot is in it: /invite the bot there"
                ),
                "missing_scope" => "add the channels:read and groups:read bot scopes and \
                                    reinstall the app"
                    .to_string(),
                _ => "check the channel id and the bot token".to_string(),
            };
            checks.push(Check::fail(
                name,
                format!("named in [{key}]: conversations.info: {error}"),
                fix,
            ));
            continue;
        }
        let info = &reply["channel"];
        let shown = format!("#{} ({channel})", info["name"].as_str().unwrap_or("?"));
        if info["is_archived"] == true {
            checks.push(Check::fail(
                name,
                format!("{shown}, named in [{key}], is archived"),
                format!("unarchive it, or name another channel in [{key}]"),
            ));
        } else if info["is_member"] != true {
            checks.push(Check::fail(
                name,
                format!("the bot is not in {shown}, named in [{key}]"),
                format!(
                    "invite it: in #{} type /invite @{}",
                    info["name"].as_str().unwrap_or("the channel"),
                    config.slack.app_name.to_lowercase().replace(' ', "-")
                ),
            ));
        } else {
            checks.push(Check::ok(
                name,
                format!("{shown}: exists, the bot is in it"),
            ));
        }
    }
}

/// Socket Mode: the app token opens a connection URL. HTTP: the public URL answers Slack's
/// handshake, signed with our signing secret.
async fn check_transport(web: &Web, config: &Config) -> Check {
    if let Some(app_token) = &config.slack.app_token {
        let name = "Socket Mode";
        let fix = "set slack.app_token (or SLACK_APP_TOKEN) to an app-level token with \
                   connections:write (Basic Information → App-Level Tokens) and turn Socket \
                   Mode on in the app's settings";
        return match web
            .call(config, "apps.connections.open", app_token, &[])
            .await
        {
            Ok((reply, _)) if reply["ok"] == true => Check::ok(
                name,
                "apps.connections.open gave a connection URL (not kept open)",
            ),
            Ok((reply, _)) => Check::fail(
                name,
                format!("apps.connections.open refused: {}", slack_error(&reply)),
                fix,
            ),
            Err(e) => Check::fail(name, format!("apps.connections.open: {e}"), fix),
        };
    }
    let name = "request URL";
    let Some(public_url) = &config.server.public_url else {
        return Check::warn(
            name,
            "HTTP mode, and [server] public_url is not set, so whether Slack reaches this \
             server is not checked",
            "set [server] public_url to the https:// address Slack posts to",
        );
    };
    let Some(secret) = &config.slack.signing_secret else {
        return Check::fail(
            name,
            "HTTP mode without a signing secret",
            "set slack.signing_secret (or SLACK_SIGNING_SECRET) from Basic Information → App \
             Credentials",
        );
    };
    let base = match crate::manifest::request_base(public_url) {
        Ok(base) => base,
        Err(e) => return Check::fail(name, e.to_string(), "fix [server] public_url"),
    };
    let url = format!("{base}/slack/events");
    let challenge = format!("doctor-{:016x}", rand::rng().random::<u64>());
    let body =
        json!({"type": "url_verification", "token": "doctor", "challenge": challenge}).to_string();
    let timestamp = (now_ms() / 1000).to_string();
    let request = Request::builder()
        .method(Method::POST)
        .uri(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-slack-request-timestamp", &timestamp)
        .header("x-slack-signature", sign(secret, &timestamp, &body))
        .body(Full::new(Bytes::from(body)));
    let request = match request {
        Ok(request) => request,
        Err(e) => return Check::fail(name, format!("{url}: {e}"), "fix [server] public_url"),
    };
    let fix_reach = "make sure `switchyard serve` is running and that the proxy or load \
                     balancer forwards /slack/* from public_url to [server] listen";
    match web.send(request).await {
        Err(e) => Check::fail(name, format!("{url}: {e}"), fix_reach),
        Ok(reply) if reply.status == 401 => Check::fail(
            name,
            format!("{url} refused our signature (401)"),
            "the server there has another signing secret: use the one from Basic Information → \
             App Credentials in both",
        ),
        Ok(reply) => {
            let answered: Option<Value> = serde_json::from_slice(&reply.body).ok();
            if reply.status == 200
                && answered.is_some_and(|v| v["challenge"].as_str() == Some(&challenge))
            {
                Check::ok(
                    name,
                    format!("{url} answered Slack's signed url_verification"),
                )
            } else {
                Check::fail(
                    name,
                    format!("{url} answered HTTP {} without the challenge", reply.status),
                    fix_reach,
                )
            }
        }
    }
}

/// Slack's v0 signature of a request body.
fn sign(secret: &Secret, timestamp: &str, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return String::new();
    };
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// The store opens, its schema is current (it is not migrated here), the outbox moves.
async fn check_store(config: &Config, checks: &mut Vec<Check>) {
    let shown = switchyard_store::redact(&config.store.url);
    let store = match Store::open(&config.store.url).await {
        Ok(store) => store,
        Err(e) => {
            checks.push(Check::fail(
                "store",
                e.to_string(),
                "check [store] url, that the database is up, and its credentials",
            ));
            return;
        }
    };
    match store.pending_migrations().await {
        Ok(pending) if pending.is_empty() => {
            checks.push(Check::ok(
                "store",
                format!("{shown} answers; its schema is current"),
            ));
        }
        // Nothing applied: a new database, which `serve` sets up at start.
        Ok(pending) if pending.iter().any(|m| m.version == 1) => {
            checks.push(Check::ok(
                "store",
                format!(
                    "{shown} answers; it is empty: `switchyard serve` creates its tables at start"
                ),
            ));
            checks.push(Check::ok("outbox", "none yet: nothing queued"));
            return;
        }
        Ok(pending) => {
            let names: Vec<String> = pending
                .iter()
                .map(|m| format!("{} {}", m.version, m.description))
                .collect();
            checks.push(Check::fail(
                "store",
                format!("{shown}: migrations not applied: {}", names.join(", ")),
                "start `switchyard serve` of this version once: it applies them at start",
            ));
            return;
        }
        Err(e) => {
            checks.push(Check::fail(
                "store",
                e.to_string(),
                "check [store] url and the database's permissions",
            ));
            return;
        }
    }
    let health = match store.outbox_health().await {
        Ok(health) => health,
        Err(e) => {
            checks.push(Check::fail("outbox", e.to_string(), "check the database"));
            return;
        }
    };
    let stuck_ms = STUCK_AFTER.as_millis() as i64;
    let oldest_age_ms = health.oldest_pending_at_ms.map(|at| (now_ms() - at).max(0));
    let failed = if health.failed > 0 {
        format!("; {} call(s) failed for good", health.failed)
    } else {
        String::new()
    };
    let check = match oldest_age_ms {
        Some(age) if age > stuck_ms => Check::fail(
            "outbox",
            format!(
                "{} call(s) pending, the oldest for {} min{failed}",
                health.pending,
                age / 60_000
            ),
            "is `switchyard serve` running? Its log says why calls to Slack do not go through \
             (rate limits, network, errors)",
        ),
        _ if health.failed > 0 => Check::warn(
            "outbox",
            format!("{} call(s) pending{failed}", health.pending),
            "the server's log has each failure's Slack error (a channel the bot is not in, \
             bad blocks, …)",
        ),
        _ => Check::ok(
            "outbox",
            format!(
                "{} call(s) pending, none older than {} min, none failed",
                health.pending,
                STUCK_AFTER.as_secs() / 60
            ),
        ),
    };
    checks.push(check);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_status_what_and_fix() {
        let ok = Check::ok("store", "fine");
        assert_eq!(ok.to_string(), "ok    store: fine");
        let fail = Check::fail("scopes", "lacks x", "add x");
        assert_eq!(fail.to_string(), "FAIL  scopes: lacks x — fix: add x");
        let warn = Check::warn("outbox", "1 failed", "read the log");
        assert_eq!(warn.status, Status::Warn);
        let report = Report {
            checks: vec![ok, warn],
        };
        assert!(report.passed());
        assert!(!Report { checks: vec![fail] }.passed());
    }
}
