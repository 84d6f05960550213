//! Delivering to the app: events (retried until acked), slash commands and interactions (one
//! try, the ack awaited), over Socket Mode or signed HTTP, whichever the manifest picks.

pub mod http;
pub mod socket;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::faults::{FaultKind, Target};
use crate::ids::{now_ms, now_secs};
use crate::workspace::{Attempt, DeliveryRecord, Workspace};
use crate::{Inner, lock};

/// When and how long the sandbox waits for the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// The wait before each retry of an unacknowledged event; its length is the number of retries.
    #[serde(with = "millis_list", rename = "retry_delays_ms")]
    pub retry_delays: Vec<Duration>,
    /// How long the app has to acknowledge.
    #[serde(with = "millis", rename = "ack_timeout_ms")]
    pub ack_timeout: Duration,
}

impl Default for DeliverySettings {
    /// Slack's: three retries, at once, after a minute and after five; three seconds to ack.
    fn default() -> Self {
        Self {
            retry_delays: vec![
                Duration::ZERO,
                Duration::from_secs(60),
                Duration::from_secs(300),
            ],
            ack_timeout: Duration::from_secs(3),
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod millis_list {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(d.iter().map(|d| d.as_millis() as u64))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(Duration::from_millis)
            .collect())
    }
}

/// A command or interaction for the app.
#[derive(Debug, Clone)]
pub enum AppRequest {
    /// The form Slack posts for a slash command (also the Socket Mode payload, as an object).
    Command {
        command: String,
        form: Vec<(String, String)>,
    },
    /// An interactivity payload (`block_actions`, `view_submission`, …).
    Interaction { payload: Value },
}

impl AppRequest {
    fn kind(&self) -> &'static str {
        match self {
            Self::Command { .. } => "command",
            Self::Interaction { .. } => "interaction",
        }
    }

    /// What the app is handed, as the Socket Mode envelope's payload (a command's form as an
    /// object).
    fn payload(&self) -> Value {
        match self {
            Self::Command { form, .. } => {
                Value::Object(form.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
            }
            Self::Interaction { payload } => payload.clone(),
        }
    }

    fn envelope_type(&self) -> &'static str {
        match self {
            Self::Command { .. } => "slash_commands",
            Self::Interaction { .. } => "interactive",
        }
    }

    fn name(&self) -> String {
        match self {
            Self::Command { command, .. } => command.clone(),
            Self::Interaction { payload } => payload["type"].as_str().unwrap_or("").to_string(),
        }
    }
}

/// What the app answered to a command or interaction.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AckOutcome {
    pub acked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The ack's body: JSON when it parsed, a string otherwise, none when empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// What the person would see instead: `operation_timeout`, `dispatch_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One try at handing something to the app.
#[derive(Debug)]
pub enum Tried {
    Acked {
        status: Option<u16>,
        body: Option<Value>,
    },
    Failed {
        reason: &'static str,
        status: Option<u16>,
        no_retry: bool,
    },
}

pub struct Delivery {
    settings: Mutex<DeliverySettings>,
    pub hub: socket::SocketHub,
    pub http: reqwest::Client,
    /// Request URLs that answered the `url_verification` handshake.
    pub verified_urls: Mutex<HashSet<String>>,
    /// Held during a `url_verification` handshake.
    handshake: tokio::sync::Mutex<()>,
    next_record: AtomicU64,
}

impl Delivery {
    pub fn new(settings: DeliverySettings) -> Self {
        Self {
            settings: Mutex::new(settings),
            hub: socket::SocketHub::default(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a plain HTTP client builds"),
            verified_urls: Mutex::default(),
            handshake: tokio::sync::Mutex::new(()),
            next_record: AtomicU64::new(0),
        }
    }

    pub fn settings(&self) -> DeliverySettings {
        lock(&self.settings).clone()
    }

    pub fn set_settings(&self, settings: DeliverySettings) {
        *lock(&self.settings) = settings;
    }

    fn new_record(
        &self,
        ws: &mut Workspace,
        kind: &str,
        name: &str,
        event_id: Option<String>,
        (envelope_type, payload): (&'static str, Value),
    ) -> u64 {
        let id = self.next_record.fetch_add(1, Ordering::Relaxed) + 1;
        ws.deliveries.push(DeliveryRecord {
            id,
            kind: kind.into(),
            name: name.into(),
            event_id,
            attempts: Vec::new(),
            acked: false,
            outcome: "pending".into(),
            payload,
            envelope_type,
            ack_body: None,
            created_ms: now_ms(),
        });
        id
    }
}

/// Milliseconds since `started`, to the microsecond.
pub(crate) fn elapsed_ms(started: std::time::Instant) -> f64 {
    started.elapsed().as_micros() as f64 / 1_000.0
}

fn transport_name(socket_mode: bool) -> &'static str {
    if socket_mode { "socket_mode" } else { "http" }
}

impl Inner {
    fn record_attempt(
        &self,
        record: u64,
        attempt: Attempt,
        outcome: Option<&str>,
        ack_body: Option<&Value>,
    ) {
        let mut ws = self.ws();
        if let Some(r) = ws.deliveries.iter_mut().find(|r| r.id == record) {
            r.attempts.push(attempt);
            if let Some(body) = ack_body {
                r.ack_body = Some(body.clone());
            }
            if let Some(outcome) = outcome {
                r.outcome = outcome.to_string();
                r.acked = outcome == "acked";
            }
        }
        drop(ws);
        self.touch();
    }

    /// Queues an event for the app when it subscribes to `subscription`; returns its event id.
    pub fn emit_event(
        self: &Arc<Self>,
        ws: &mut Workspace,
        event: Value,
        subscription: &str,
    ) -> Option<String> {
        if !ws.app.manifest.subscribes_to(subscription) {
            return None;
        }
        let event_id = ws.ids.event_id();
        let event_type = event["type"].as_str().unwrap_or("").to_string();
        let body = json!({
            "token": "sandbox-verification-token",
            "team_id": ws.team.id,
            "context_team_id": ws.team.id,
            "api_app_id": ws.app.id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": now_secs(),
            "authorizations": [{
                "enterprise_id": null,
                "team_id": ws.team.id,
                "user_id": ws.app.bot_user_id,
                "is_bot": true,
                "is_enterprise_install": false,
            }],
            "is_ext_shared_channel": false,
            "event_context": format!("4-{}", crate::ids::secret(40)),
        });
        let record = self.delivery.new_record(
            ws,
            "event",
            &event_type,
            Some(event_id.clone()),
            ("events_api", body.clone()),
        );
        tokio::spawn(deliver_event(self.clone(), record, body));
        Some(event_id)
    }

    /// Hands a command or interaction to the app and waits for its ack (no retries, as Slack).
    pub async fn request(self: &Arc<Self>, request: AppRequest) -> AckOutcome {
        let (socket_mode, url, record) = {
            let mut ws = self.ws();
            let manifest = &ws.app.manifest;
            let url = match &request {
                AppRequest::Command { command, .. } => {
                    manifest.command(command).and_then(|c| c.url.clone())
                }
                AppRequest::Interaction { .. } => manifest.interactivity_request_url.clone(),
            };
            let socket_mode = manifest.socket_mode_enabled;
            let record = self.delivery.new_record(
                &mut ws,
                request.kind(),
                &request.name(),
                None,
                (request.envelope_type(), request.payload()),
            );
            (socket_mode, url, record)
        };
        let target = if socket_mode {
            Target::Socket
        } else {
            Target::Events
        };
        let fault = self.faults().take(target, request.kind()).map(|r| r.fault);
        let (at_ms, started) = (now_ms(), std::time::Instant::now());
        let tried = if socket_mode {
            let (kind, payload) = (request.envelope_type(), request.payload());
            socket::send_envelope(self, kind, payload, 0, None, true, fault).await
        } else {
            let form = match &request {
                AppRequest::Command { form, .. } => form.clone(),
                AppRequest::Interaction { payload } => {
                    vec![("payload".to_string(), payload.to_string())]
                }
            };
            http::post_form(self, url.as_deref(), &form, fault).await
        };
        let (outcome, attempt_result, status) = match tried {
            Tried::Acked { status, body } => (
                AckOutcome {
                    acked: true,
                    status,
                    body,
                    error: None,
                },
                "acked",
                status,
            ),
            Tried::Failed { reason, status, .. } => {
                let error = if reason == "connection_failed" || reason == "http_error" {
                    "dispatch_failed"
                } else {
                    "operation_timeout"
                };
                (
                    AckOutcome {
                        acked: false,
                        status,
                        body: None,
                        error: Some(error.into()),
                    },
                    reason,
                    status,
                )
            }
        };
        self.record_attempt(
            record,
            Attempt {
                transport: transport_name(socket_mode).into(),
                retry_num: 0,
                result: attempt_result.into(),
                status,
                at_ms,
                duration_ms: elapsed_ms(started),
            },
            Some(if outcome.acked { "acked" } else { "failed" }),
            outcome.body.as_ref(),
        );
        outcome
    }
}

/// Delivers one event until it is acked, retried per the settings with the same `event_id`.
async fn deliver_event(inner: Arc<Inner>, record: u64, body: Value) {
    let settings = inner.delivery.settings();
    let mut retry_num: u32 = 0;
    let mut last_reason: Option<&'static str> = None;
    loop {
        let (socket_mode, url) = {
            let ws = inner.ws();
            (
                ws.app.manifest.socket_mode_enabled,
                ws.app.manifest.event_request_url.clone(),
            )
        };
        let target = if socket_mode {
            Target::Socket
        } else {
            Target::Events
        };
        let fault = inner.faults().take(target, "event").map(|r| r.fault);
        let (at_ms, started) = (now_ms(), std::time::Instant::now());
        let tried = send_event(
            &inner,
            socket_mode,
            url.as_deref(),
            &body,
            retry_num,
            last_reason,
            fault,
        )
        .await;
        let transport = transport_name(socket_mode);
        match tried {
            Tried::Acked { status, body: ack } => {
                inner.record_attempt(
                    record,
                    Attempt {
                        transport: transport.into(),
                        retry_num,
                        result: "acked".into(),
                        status,
                        at_ms,
                        duration_ms: elapsed_ms(started),
                    },
                    Some("acked"),
                    ack.as_ref(),
                );
                // Socket Mode duplicates inside `send_envelope`; HTTP here.
                if fault == Some(FaultKind::Duplicate) && !socket_mode {
                    // The same event again, as Slack sends when it thinks the ack was lost.
                    let reason = if socket_mode {
                        "timeout"
                    } else {
                        "http_timeout"
                    };
                    let (at_ms, started) = (now_ms(), std::time::Instant::now());
                    let again = send_event(
                        &inner,
                        socket_mode,
                        url.as_deref(),
                        &body,
                        retry_num + 1,
                        Some(reason),
                        None,
                    )
                    .await;
                    let result = if matches!(again, Tried::Acked { .. }) {
                        "acked"
                    } else {
                        "failed"
                    };
                    inner.record_attempt(
                        record,
                        Attempt {
                            transport: transport.into(),
                            retry_num: retry_num + 1,
                            result: result.into(),
                            status: None,
                            at_ms,
                            duration_ms: elapsed_ms(started),
                        },
                        None,
                        None,
                    );
                }
                return;
            }
            Tried::Failed {
                reason,
                status,
                no_retry,
            } => {
                let out_of_retries = retry_num as usize >= settings.retry_delays.len();
                let outcome = if no_retry {
                    Some("no_retry")
                } else if out_of_retries {
                    Some("failed")
                } else {
                    None
                };
                inner.record_attempt(
                    record,
                    Attempt {
                        transport: transport.into(),
                        retry_num,
                        result: reason.into(),
                        status,
                        at_ms,
                        duration_ms: elapsed_ms(started),
                    },
                    outcome,
                    None,
                );
                if outcome.is_some() {
                    return;
                }
                tokio::time::sleep(settings.retry_delays[retry_num as usize]).await;
                retry_num += 1;
                last_reason = Some(reason);
            }
        }
    }
}

async fn send_event(
    inner: &Arc<Inner>,
    socket_mode: bool,
    url: Option<&str>,
    body: &Value,
    retry_num: u32,
    retry_reason: Option<&'static str>,
    fault: Option<FaultKind>,
) -> Tried {
    if socket_mode {
        socket::send_envelope(
            inner,
            "events_api",
            body.clone(),
            retry_num,
            retry_reason,
            false,
            fault,
        )
        .await
    } else {
        http::post_event(inner, url, body, retry_num, retry_reason, fault).await
    }
}
