//! The devices' API (`POST /api/machine/update`): what a device reports, and what it must do.
//! Compatible with the product's devices: same fields in, same fields out.

use serde::Deserialize;
use serde_json::{Value, json};

use super::config::{MachineConfig, UserConfig, parse_date_ms};
use super::state::MachineState;

/// What a device sends every few seconds.
#[derive(Debug, Clone, Deserialize)]
pub struct Update {
    pub machine_name: String,
    /// The physical oops button was pressed.
    #[serde(default)]
    pub oops: bool,
    /// The fob in the reader; empty for none.
    #[serde(default)]
    pub rfid_value: String,
    /// Seconds since the device booted.
    #[serde(default)]
    pub uptime: f64,
    #[serde(default)]
    pub wifi_signal_db: Option<f64>,
    #[serde(default)]
    pub wifi_signal_percent: Option<f64>,
    #[serde(default)]
    pub internal_temperature_c: Option<f64>,
    #[serde(default)]
    pub amps: Option<f64>,
    #[serde(default)]
    pub second_relay_state: Option<bool>,
}

/// Something to tell the control channel about (and audit): `(action, detail)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub action: &'static str,
    pub text: String,
}

/// The fob's user, if the fob is known.
pub fn user_of<'a>(users: &'a [UserConfig], fob: &str) -> Option<&'a UserConfig> {
    users.iter().find(|u| u.fob_codes.iter().any(|c| c == fob))
}

/// Whether `user` may use `machine` now: not expired, and one of the user's authorizations is
/// one of the machine's `authorizations_or`.
pub fn authorized(user: &UserConfig, machine: &MachineConfig, now_ms: i64) -> bool {
    if let Some(expires) = user.expires.as_deref().and_then(parse_date_ms)
        && now_ms >= expires
    {
        return false;
    }
    user.authorizations
        .iter()
        .any(|a| machine.authorizations_or.contains(a))
}

/// Applies an update (after any oops from the button) to `state` and says what to log.
/// Reboots are seen by a lower uptime than last time.
pub fn apply(
    machine: &MachineConfig,
    users: &[UserConfig],
    state: &mut MachineState,
    update: &Update,
    now_ms: i64,
) -> Vec<Log> {
    let mut logs = Vec::new();
    let name = &machine.name;
    let uptime = update.uptime.max(0.0) as i64;
    if let Some(previous) = state.uptime_s
        && uptime < previous
    {
        logs.push(Log {
            action: "machines.reboot",
            text: format!(
                ":arrows_counterclockwise: *{name}* rebooted (uptime {uptime} s, was {previous} s)."
            ),
        });
    }
    state.uptime_s = Some(uptime);
    state.last_checkin_ms = Some(now_ms);
    let before = state.clone();
    let fob = Some(update.rfid_value.trim())
        .filter(|f| !f.is_empty())
        .map(str::to_string);
    let blocked = state.oopsed || state.locked_out;
    if blocked {
        state.relay = false;
        state.user = None;
    } else if machine.always_enabled {
        state.relay = true;
        state.user = fob
            .as_deref()
            .and_then(|f| user_of(users, f))
            .map(|u| u.name.clone());
    } else {
        match &fob {
            None => {
                if let Some(user) = &state.user {
                    logs.push(Log {
                        action: "machines.logout",
                        text: format!(":wave: {user} logged out of *{name}*."),
                    });
                }
                state.relay = false;
                state.user = None;
            }
            Some(code) if state.fob.as_ref() == Some(code) => {}
            Some(code) => match user_of(users, code) {
                None => {
                    logs.push(Log {
                        action: "machines.unknown_fob",
                        text: format!(":question: Unknown fob `{code}` on *{name}*."),
                    });
                    state.relay = false;
                    state.user = None;
                }
                Some(user) if authorized(user, machine, now_ms) => {
                    logs.push(Log {
                        action: "machines.login",
                        text: format!(":key: {} logged in to *{name}*.", user.name),
                    });
                    state.relay = true;
                    state.user = Some(user.name.clone());
                }
                Some(user) if machine.unauthorized_warn_only => {
                    logs.push(Log {
                        action: "machines.unauthorized",
                        text: format!(
                            ":warning: {} is not authorized for *{name}*; allowed anyway \
                             (warn only).",
                            user.name
                        ),
                    });
                    state.relay = true;
                    state.user = Some(user.name.clone());
                }
                Some(user) => {
                    logs.push(Log {
                        action: "machines.unauthorized",
                        text: format!(
                            ":no_entry: {} is not authorized for *{name}*; relay stays off.",
                            user.name
                        ),
                    });
                    state.relay = false;
                    state.user = None;
                }
            },
        }
    }
    state.fob = fob;
    state.second_relay = machine.second_relay && state.relay;
    if state.relay != before.relay || state.user != before.user || state.fob != before.fob {
        state.last_update_ms = Some(now_ms);
    }
    logs
}

/// The device's instructions: relay, display, LEDs, the second relay.
pub fn reply(machine: &MachineConfig, state: &MachineState) -> Value {
    let display = if state.oopsed {
        "Oops! Machine out of service".to_string()
    } else if state.locked_out {
        "Locked out for maintenance".to_string()
    } else if machine.always_enabled {
        "Always on".to_string()
    } else if state.relay {
        match &state.user {
            Some(user) => format!("Welcome, {user}"),
            None => "In use".into(),
        }
    } else if state.fob.is_some() {
        "Not authorized".into()
    } else {
        "Please insert fob".into()
    };
    let (rgb, brightness) = if state.oopsed || state.locked_out {
        ([1.0, 0.0, 0.0], 0.5)
    } else if state.relay {
        ([0.0, 1.0, 0.0], 0.5)
    } else {
        ([0.0, 0.0, 1.0], 0.25)
    };
    json!({
        "relay": state.relay,
        "display": display,
        "oops_led": state.oopsed || state.locked_out,
        "status_led_rgb": rgb,
        "status_led_brightness": brightness,
        "second_relay": if machine.second_relay { json!(state.second_relay) } else { Value::Null },
    })
}
