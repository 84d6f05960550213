//! Fault injection: rules that make the sandbox misbehave the ways Slack does.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Replies of `/api/<method>`.
    WebApi,
    /// HTTP deliveries to the app (Events API, commands, interactivity).
    Events,
    /// Socket Mode envelopes.
    Socket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    RateLimited,
    ServerError,
    Slow,
    Reset,
    Duplicate,
    Drop,
}

/// One rule, as posted to `/_sandbox/faults`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    #[serde(default)]
    pub id: u64,
    pub target: Target,
    /// Web API method, or delivery kind (`event`, `command`, `interaction`); none matches all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub fault: FaultKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// How many more times the rule fires; none is forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
}

impl FaultRule {
    /// `web_api.rate_limited`, `socket.drop`, …: how [`Faults::fired`] counts it.
    fn fired_name(&self) -> String {
        // Their serde names (snake_case), as rules are written.
        let name = |v: serde_json::Value| v.as_str().unwrap_or("").to_string();
        format!(
            "{}.{}",
            name(serde_json::to_value(self.target).unwrap_or_default()),
            name(serde_json::to_value(self.fault).unwrap_or_default())
        )
    }

    /// Checks that the fault makes sense for the target.
    pub fn validate(&self) -> Result<(), String> {
        use FaultKind::*;
        let allowed: &[FaultKind] = match self.target {
            Target::WebApi => &[RateLimited, ServerError, Slow, Reset],
            Target::Events | Target::Socket => &[Duplicate, Drop],
        };
        if !allowed.contains(&self.fault) {
            return Err(format!(
                "fault {:?} does not apply to target {:?}",
                self.fault, self.target
            ));
        }
        if let Some(status) = self.status
            && !(500..=599).contains(&status)
        {
            return Err(format!("status {status} is not a 5xx"));
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<FaultRule>,
    next_id: u64,
    /// How often each `target.fault` fired (e.g. `web_api.rate_limited`), for `/_sandbox/stats`.
    fired: std::collections::BTreeMap<String, u64>,
}

impl Faults {
    pub fn add(&mut self, mut rule: FaultRule) -> u64 {
        self.next_id += 1;
        rule.id = self.next_id;
        self.rules.push(rule);
        self.next_id
    }

    pub fn list(&self) -> &[FaultRule] {
        &self.rules
    }

    /// How often each kind of fault fired since the sandbox started (clearing the rules keeps
    /// the counts): `target.fault` → n.
    pub fn fired(&self) -> &std::collections::BTreeMap<String, u64> {
        &self.fired
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        before != self.rules.len()
    }

    /// The first rule for `target` matching `name` (a method or delivery kind), used up once.
    pub fn take(&mut self, target: Target, name: &str) -> Option<FaultRule> {
        let pos = self.rules.iter().position(|r| {
            r.target == target
                && r.method.as_deref().is_none_or(|m| m == name)
                && r.kind.as_deref().is_none_or(|k| k == name)
        })?;
        let rule = self.rules[pos].clone();
        *self.fired.entry(rule.fired_name()).or_default() += 1;
        if let Some(times) = &mut self.rules[pos].times {
            *times = times.saturating_sub(1);
            if *times == 0 {
                self.rules.remove(pos);
            }
        }
        Some(rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_runs_out() {
        let mut faults = Faults::default();
        faults.add(FaultRule {
            id: 0,
            target: Target::WebApi,
            method: Some("auth.test".into()),
            kind: None,
            fault: FaultKind::Reset,
            retry_after: None,
            status: None,
            delay_ms: None,
            times: Some(2),
        });
        assert!(faults.take(Target::WebApi, "chat.postMessage").is_none());
        assert!(faults.take(Target::WebApi, "auth.test").is_some());
        assert!(faults.take(Target::WebApi, "auth.test").is_some());
        assert!(faults.take(Target::WebApi, "auth.test").is_none());
        assert_eq!(faults.fired().get("web_api.reset"), Some(&2));
    }
}
