//! The targets. Each panics on a finding; anything else (a refusal, a 4xx) is a pass.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use switchyard_apps::alerts::blocks::{self, MessageState, Templates};
use switchyard_apps::alerts::config::{AlertsConfig, CompiledRules, RuleConfig, route};
use switchyard_apps::alerts::intake::{self, Alert, Status};
use switchyard_apps::alerts::matchers::{self, Matcher};
use switchyard_apps::alerts::silences;
use switchyard_engine::mention::{parse_mention, split_args};
use switchyard_engine::receive::socket::{Frame, parse_frame};
use switchyard_engine::{CheckOptions, Config};

use crate::harness::{BOT_USER, DEVICE_TOKEN, harness, now_s, sign};

/// Slack's window for a request's timestamp.
const WINDOW_S: i64 = 300;

/// An answer must be a 2xx–4xx, name no secret, and be JSON when it is a refusal. A secret
/// the input itself carried may come back (an error quoting the bad field, a dedup key made
/// of the caller's labels): the caller had it already, so only the others are a leak.
fn check_answer(what: &str, sent: &[u8], status: u16, body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    let sent = String::from_utf8_lossy(sent);
    assert!(status < 500, "{what}: answered {status}: {text}");
    for secret in harness().secrets() {
        assert!(
            !text.contains(secret) || sent.contains(secret),
            "{what}: a secret in the answer: {text}"
        );
    }
    if status >= 400 {
        let json: Result<Value, _> = serde_json::from_slice(body);
        assert!(
            json.as_ref().is_ok_and(Value::is_object),
            "{what}: a {status} that is not a JSON object: {text}"
        );
    }
}

/// A request Slack would send: signed now.
fn signed(path: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    let ts = now_s().to_string();
    Request::post(path)
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", sign(&ts, &body))
        .body(Body::from(body))
        .expect("a valid request")
}

/// `ts: <now|now-N|now+N|literal>`, `sig: <valid|other:TEXT|literal>`, a blank line, the body.
pub fn slack_signature(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (Some(ts_line), Some(sig_line)) = (parts.next(), parts.next()) else {
        return;
    };
    let body = parts.next().unwrap_or("").strip_prefix('\n').unwrap_or("");
    let ts_spec = ts_line.strip_prefix("ts:").unwrap_or(ts_line).trim();
    let now = now_s();
    // The offset from now, when the timestamp is relative (then the outcome is known).
    let offset = match ts_spec {
        "now" => Some(0),
        s => s
            .strip_prefix("now")
            .and_then(|o| o.parse::<i64>().ok())
            .filter(|o| o.abs() < 1_000_000_000),
    };
    let ts = match offset {
        Some(o) => (now + o).to_string(),
        None => ts_spec.to_string(),
    };
    let sig_spec = sig_line.strip_prefix("sig:").unwrap_or(sig_line).trim();
    let (signature, genuine) = match sig_spec {
        "valid" => (sign(&ts, body.as_bytes()), true),
        s => match s.strip_prefix("other:") {
            // Signed, then modified: the signature of another body.
            Some(other) if other != body => (sign(&ts, other.as_bytes()), false),
            Some(_) => return,
            None => (s.to_string(), false),
        },
    };
    let Ok(request) = Request::post("/slack/events")
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", &signature)
        .body(Body::from(body.to_string()))
    else {
        return;
    };
    let (status, answer) = harness().send(request);
    check_answer("slack_signature", data, status, &answer);
    let answer = String::from_utf8_lossy(&answer);
    if !genuine && signature != sign(&ts, body.as_bytes()) {
        assert_eq!(status, 401, "a forged signature was taken: {answer}");
    }
    match offset {
        // A clear margin either side of the window: the clock moves while we run.
        Some(o) if o.abs() > WINDOW_S + 10 => {
            assert_eq!(status, 401, "a stale timestamp ({o} s) was taken: {answer}")
        }
        Some(o) if genuine && o.abs() < WINDOW_S - 10 => {
            assert_ne!(status, 401, "a good signature was refused: {answer}")
        }
        _ => {}
    }
}

pub fn events_api(data: &[u8]) {
    let (status, answer) =
        harness().send(signed("/slack/events", "application/json", data.to_vec()));
    check_answer("events_api", data, status, &answer);
}

pub fn slash_command(data: &[u8]) {
    let (status, answer) = harness().send(signed(
        "/slack/commands",
        "application/x-www-form-urlencoded",
        data.to_vec(),
    ));
    check_answer("slash_command", data, status, &answer);
}

/// The input is the payload's JSON, put in the form as Slack does.
pub fn interaction(data: &[u8]) {
    let payload = String::from_utf8_lossy(data);
    let Ok(form) = serde_urlencoded::to_string([("payload", payload.as_ref())]) else {
        return;
    };
    let (status, answer) = harness().send(signed(
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        form.into_bytes(),
    ));
    check_answer("interaction", data, status, &answer);
}

pub fn socket_envelope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Frame::Envelope { kind, payload, .. } = parse_frame(text) {
        let h = harness();
        let engine = h.engine.clone();
        let acked = h.runtime.block_on(engine.receive(kind, payload, None));
        assert!(acked.is_ok(), "an envelope was not committed: {acked:?}");
    }
}

pub fn mention(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some((command, _args)) = parse_mention(&text, BOT_USER) {
        assert!(!command.is_empty(), "an empty command from {text:?}");
    }
    let _ = split_args(&text);
}

/// Sample alerts for the condition and template targets.
fn sample_alerts() -> &'static [Alert] {
    static ALERTS: OnceLock<Vec<Alert>> = OnceLock::new();
    ALERTS.get_or_init(|| {
        intake::parse_alerts(
            r#"[
              {"title": "Disk full on db-1", "severity": "critical", "source": "prometheus",
               "description": "97% used", "labels": {"team": "db", "host": "db-1"},
               "affected_items": ["db-1", "db-2"], "links": [{"title": "Runbook", "url": "https://example.com/rb"}],
               "analysis": "growth since 02:00"},
              {"title": "Slow page", "severity": "low", "source": "grafana", "status": "resolved"}
            ]"#,
        )
        .expect("the sample alerts parse")
    })
}

fn firing_state() -> MessageState<'static> {
    MessageState {
        status: Status::Firing,
        occurrences: 2,
        acked_by: None,
        resolved_by: None,
        at_ms: 1_700_000_000_000,
        mentions: String::new(),
    }
}

pub fn cel_condition(data: &[u8]) {
    let condition = String::from_utf8_lossy(data).into_owned();
    let _ = switchyard_apps::alerts::config::compile(&condition);
    let config = AlertsConfig {
        enabled: true,
        default_channel: Some("C0DEFAULT".into()),
        // From JSON, as the config gives it: the rule's other keys keep their defaults.
        rules: vec![
            serde_json::from_value::<RuleConfig>(serde_json::json!({
                "name": "fuzzed", "condition": condition, "channels": ["C0RULE"],
            }))
            .expect("a rule"),
        ],
        ..AlertsConfig::default()
    };
    let compiled = CompiledRules::new(&config);
    for alert in sample_alerts() {
        let targets = route(&config, &compiled, alert);
        assert_eq!(targets.len(), 1, "one channel, the rule's or the default");
    }
}

pub fn alert_template(data: &[u8]) {
    let template = String::from_utf8_lossy(data);
    if let Ok(templates) = Templates::new(Some(&template)) {
        for alert in sample_alerts() {
            if let Ok(message) = blocks::render(&templates, alert, &firing_state()) {
                assert!(message["blocks"].is_array(), "blocks that are not a list");
            }
        }
    }
}

/// Matchers from a silence's API body or mention, then the whole mention: no panic, each
/// matcher applied to the sample alerts, and what a matcher shows of itself (the silences'
/// `matchers_text`, which people copy into a new silence) parses back to the same matcher.
pub fn silence(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(list) = matchers::parse(&text) {
        for alert in sample_alerts() {
            let _ = matchers::all_match(&list, alert);
        }
        let shown: Vec<String> = list.iter().map(Matcher::text).collect();
        let shown = shown.join(", ");
        let again = matchers::parse(&shown)
            .unwrap_or_else(|e| panic!("{shown:?} (shown for {text:?}) does not parse: {e}"));
        let parts = |l: &[Matcher]| -> Vec<(String, &'static str, String)> {
            l.iter()
                .map(|m| (m.name.clone(), m.op.as_str(), m.value.clone()))
                .collect()
        };
        assert_eq!(
            parts(&again),
            parts(&list),
            "{shown:?} (shown for {text:?}) reads back otherwise"
        );
    }
    let now_ms = 1_700_000_000_000;
    if let Ok((_, ends_ms, _)) = silences::parse_mention(&text, now_ms) {
        assert!(
            ends_ms > now_ms,
            "a silence ending before it starts: {text:?}"
        );
    }
}

/// Every mrkdwn text in a rendered message (and its notification `text`) holds no Slack
/// markup but ours (the date token): whatever the alert said is escaped.
fn assert_no_markup(alert: &Alert, message: &Value) {
    fn walk<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if map.get("type").and_then(Value::as_str) == Some("mrkdwn")
                    && let Some(text) = map.get("text").and_then(Value::as_str)
                {
                    out.push(text);
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(list) => list.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut texts = Vec::new();
    walk(&message["blocks"], &mut texts);
    texts.extend(message["text"].as_str());
    for text in texts {
        for (at, _) in text.match_indices('<') {
            assert!(
                text[at..].starts_with("<!date^"),
                "Slack markup from the alert got through: {text:?} (alert {alert:?})"
            );
        }
        assert!(
            !text.contains('>') || text.contains("<!date^"),
            "a bare > in {text:?}"
        );
    }
}

fn render_all(alerts: &[Alert]) {
    static BUILTIN: OnceLock<Templates> = OnceLock::new();
    let templates = BUILTIN.get_or_init(|| Templates::new(None).expect("the built-in parses"));
    for alert in alerts {
        let message = blocks::render(templates, alert, &firing_state())
            .unwrap_or_else(|e| panic!("the built-in template failed on {alert:?}: {e}"));
        assert_no_markup(alert, &message);
    }
}

pub fn alert_payload(data: &[u8]) {
    if let Ok(alerts) = intake::parse_alerts(&String::from_utf8_lossy(data)) {
        render_all(&alerts);
    }
}

pub fn alertmanager_payload(data: &[u8]) {
    if let Ok(alerts) = intake::parse_alertmanager(&String::from_utf8_lossy(data)) {
        render_all(&alerts);
    }
}

pub fn grafana_payload(data: &[u8]) {
    let severity = |label: &str| intake::Severity::parse(label).unwrap_or(intake::Severity::Medium);
    if let Ok(alerts) =
        switchyard_apps::alerts::grafana::parse_grafana(&String::from_utf8_lossy(data), &severity)
    {
        render_all(&alerts);
    }
}

pub fn device_api(data: &[u8]) {
    let request = Request::post("/api/machine/update")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {DEVICE_TOKEN}"))
        .body(Body::from(data.to_vec()))
        .expect("a valid request");
    let (status, answer) = harness().send(request);
    check_answer("device_api", data, status, &answer);
}

/// `METHOD PATH`, header lines, a blank line, the body; `$TOKEN` in a header becomes a valid
/// API token (only there: an answer may echo the path or body, and the caller's own input
/// shown back to them is no leak).
pub fn http_api(data: &[u8]) {
    let h = harness();
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let Some((method, path)) = lines.next().and_then(|l| l.split_once(' ')) else {
        return;
    };
    let mut request = Request::builder().method(method).uri(path);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            request = request.header(name.trim(), value.trim().replace("$TOKEN", &h.api_token));
        }
    }
    let Ok(request) = request.body(Body::from(body.to_string())) else {
        return;
    };
    let (status, answer) = h.send(request);
    check_answer("http_api", data, status, &answer);
}

/// The environment the config target expands `${VAR}` from; its secrets must never show.
fn config_env() -> &'static BTreeMap<String, String> {
    static ENV: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        [
            ("SLACK_BOT_TOKEN", "xoxb-env-secret-bot"),
            ("SLACK_APP_TOKEN", "xapp-env-secret-app"),
            ("SLACK_SIGNING_SECRET", "env-secret-signing"),
            ("DEVICE_TOKEN", "env-secret-device"),
            (
                "OPS_WEBHOOK_URL",
                "https://hooks.example/services/T0/B0/env-secret-webhook",
            ),
            ("CHANNEL", "C0FROMENV"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    })
}

const ENV_SECRETS: [&str; 5] = [
    "xoxb-env-secret-bot",
    "xapp-env-secret-app",
    "env-secret-signing",
    "env-secret-device",
    "env-secret-webhook",
];

pub fn config_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let sections = switchyard_apps::config_sections();
    let options = CheckOptions {
        apps: Some(&sections),
        without_credentials: false,
    };
    match Config::check(&text, "fuzz.toml", config_env(), &options) {
        Err(errors) => {
            for error in errors {
                let shown = error.to_string();
                for secret in ENV_SECRETS {
                    assert!(
                        !shown.contains(secret),
                        "a secret in a config error: {shown}"
                    );
                }
            }
        }
        Ok(config) => {
            // The secrets come from the SLACK_* fallbacks when the file names no variable:
            // `config show` must redact them.
            if !text.contains("${") {
                let shown = serde_json::to_string(&config).expect("the config serializes");
                for secret in ENV_SECRETS {
                    assert!(!shown.contains(secret), "a secret in config show: {shown}");
                }
            }
            let _ = switchyard_apps::builtin(&config);
        }
    }
}
