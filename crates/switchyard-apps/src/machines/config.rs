//! `[apps.machines]`: the channels, the machines and the people with fobs.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use switchyard_engine::{Secret, ValidateSection};

/// What to do with `oops`, `lock` and `clear` mentioned outside the control channel. Either way
/// the attempt is audited as `refused`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutsideControl {
    /// Say nothing (what the product does).
    #[default]
    Ignore,
    /// Tell the person, ephemerally, where the command works.
    Refuse,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MachinesConfig {
    pub enabled: bool,
    /// The private admin channel's id: `oops`/`lock`/`clear`, `/oops-clear`, and the logs.
    pub control_channel: String,
    /// The public channel's id for oops and lock-out notices.
    pub oops_channel: String,
    /// The slash command that clears (with a name) or opens the picker (without).
    pub slash_command: String,
    pub outside_control_channel: OutsideControl,
    /// A token every device may use (`Authorization: Bearer …`), unless a machine has its own
    /// `token`. With neither, the device API is open (fine on a closed network only).
    pub device_token: Option<Secret>,
    pub machines: Vec<MachineConfig>,
    pub users: Vec<UserConfig>,
}

impl Default for MachinesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            control_channel: String::new(),
            oops_channel: String::new(),
            slash_command: "/oops-clear".into(),
            outside_control_channel: OutsideControl::Ignore,
            device_token: None,
            machines: Vec::new(),
            users: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    /// Shown everywhere; may contain spaces; matched case-insensitively.
    pub name: String,
    #[serde(default)]
    pub alias: Option<String>,
    /// A fob works here when its user has any of these authorizations.
    #[serde(default)]
    pub authorizations_or: Vec<String>,
    /// The relay is on whenever the machine is neither oopsed nor locked out.
    #[serde(default)]
    pub always_enabled: bool,
    /// An unauthorized fob turns the relay on anyway, with a warning to the control channel.
    #[serde(default)]
    pub unauthorized_warn_only: bool,
    /// The device has a second relay, switched with the first.
    #[serde(default)]
    pub second_relay: bool,
    /// This device's own token; overrides `device_token` for it.
    #[serde(default)]
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    pub fob_codes: Vec<String>,
    #[serde(default)]
    pub authorizations: Vec<String>,
    /// `YYYY-MM-DD` (UTC): from that day on, the fobs no longer work.
    #[serde(default)]
    pub expires: Option<String>,
}

impl ValidateSection for MachinesConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if !self.enabled {
            return problems;
        }
        for (key, value) in [
            ("control_channel", &self.control_channel),
            ("oops_channel", &self.oops_channel),
        ] {
            if value.is_empty() {
                problems.push((key.into(), "a channel id is required (C…)".into()));
            }
        }
        if !self.slash_command.starts_with('/') || self.slash_command.len() < 2 {
            problems.push((
                "slash_command".into(),
                format!(
                    "{:?} must start with / (like /oops-clear)",
                    self.slash_command
                ),
            ));
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, machine) in self.machines.iter().enumerate() {
            if machine.name.trim().is_empty() {
                problems.push((format!("machines[{i}].name"), "must not be empty".into()));
                continue;
            }
            if machine.name.chars().count() > MAX_NAME {
                // Slack's select option values are capped at 150 characters.
                problems.push((
                    format!("machines[{i}].name"),
                    format!("longer than {MAX_NAME} characters"),
                ));
            }
            for (key, word) in std::iter::once(("name", &machine.name))
                .chain(machine.alias.iter().map(|a| ("alias", a)))
            {
                let folded = fold(word);
                match seen.get(&folded) {
                    Some(&j) if j != i => problems.push((
                        format!("machines[{i}].{key}"),
                        format!(
                            "{word:?} collides with machine {:?} (names and aliases are \
                             case-insensitive)",
                            self.machines[j].name
                        ),
                    )),
                    Some(_) => problems.push((
                        format!("machines[{i}].alias"),
                        "is the machine's own name".into(),
                    )),
                    None => {
                        seen.insert(folded, i);
                    }
                }
            }
        }
        let mut fobs: HashMap<&str, usize> = HashMap::new();
        for (i, user) in self.users.iter().enumerate() {
            for code in &user.fob_codes {
                if let Some(&j) = fobs.get(code.as_str()) {
                    problems.push((
                        format!("users[{i}].fob_codes"),
                        format!("fob {code:?} is already {:?}'s", self.users[j].name),
                    ));
                } else {
                    fobs.insert(code, i);
                }
            }
            if let Some(date) = &user.expires
                && parse_date_ms(date).is_none()
            {
                problems.push((
                    format!("users[{i}].expires"),
                    format!("{date:?} is not a date (YYYY-MM-DD)"),
                ));
            }
        }
        problems
    }
}

/// The longest machine name: it is a select option's value in the `/oops-clear` picker.
pub const MAX_NAME: usize = 100;

/// Names and aliases as they are compared: trimmed, spaces collapsed, lower case.
pub fn fold(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Midnight UTC of `YYYY-MM-DD`, in ms since the epoch.
pub fn parse_date_ms(date: &str) -> Option<i64> {
    let date: jiff::civil::Date = date.trim().parse().ok()?;
    let midnight =
        jiff::tz::Offset::UTC.to_timestamp(date.to_datetime(jiff::civil::Time::midnight()));
    Some(midnight.ok()?.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_collisions() {
        assert_eq!(parse_date_ms("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_date_ms("2000-03-01"), Some(951_868_800_000));
        assert!(parse_date_ms("2000-13-01").is_none());
        assert!(parse_date_ms("2026-02-30").is_none(), "no such day");
        assert!(parse_date_ms("99999-01-01").is_none());
        let config: MachinesConfig = toml::from_str(
            r#"
            enabled = true
            control_channel = "C1"
            oops_channel = "C2"
            [[machines]]
            name = "Laser Cutter"
            alias = "laser"
            [[machines]]
            name = "LASER"
            [[users]]
            name = "a"
            fob_codes = ["1", "1"]
            "#,
        )
        .unwrap();
        let problems = config.validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].0, "machines[1].name");
        assert_eq!(problems[1].0, "users[0].fob_codes");
    }
}
