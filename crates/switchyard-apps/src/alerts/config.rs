//! `[apps.alerts]`: routing rules (CEL conditions evaluated in order, with `continue`), the
//! severity → channel map, the default channel and an optional message template.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use switchyard_engine::ValidateSection;

use super::intake::{Alert, Severity};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub enabled: bool,
    /// Where an alert goes that no rule and no severity entry sends anywhere.
    pub default_channel: Option<String>,
    /// `critical = "C…"`: used when no rule matched.
    pub severity_channels: BTreeMap<String, String>,
    pub rules: Vec<RuleConfig>,
    /// A minijinja template rendering the message's Block Kit blocks (a JSON array); the
    /// built-in one when absent.
    pub template: Option<String>,
    /// Alertmanager's inhibition rules (see `inhibit`).
    pub inhibit_rules: Vec<super::inhibit::InhibitRuleConfig>,
    /// The scale of `severity` labels (Alertmanager's and Grafana's payloads) onto ours:
    /// `P1 = "critical"`, `warning = "medium"`. Unlisted values go by the customary names.
    pub severity_labels: BTreeMap<String, String>,
    /// Link buttons for the Create incident / Run playbook hooks (`super::hooks`).
    pub hooks: super::hooks::HooksConfig,
    /// Grouping and timing (Alertmanager's names and meanings) for the routes that do not set
    /// their own: the severity map, the default channel, and rules without them (`groups`).
    pub group_by: Vec<String>,
    pub group_wait: Option<String>,
    pub group_interval: Option<String>,
    pub repeat_interval: Option<String>,
    /// Storm folding (`storm`), for the same routes: a group's alerts are folded once its
    /// channel has this many Slack calls waiting (default 5)…
    pub storm_backlog: Option<i64>,
    /// …until the group has had no new alert for this long (default 60s).
    pub storm_quiet: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    /// CEL over `severity`, `status`, `source`, `title`, `description`, `labels`; the product's
    /// `AND`/`OR` are accepted too.
    pub condition: String,
    #[serde(default)]
    pub channels: Vec<String>,
    /// Incoming webhooks (names of `[apps.webhooks.incoming]`) that get a copy: posted when
    /// the alert fires and when it resolves (a webhook's messages cannot be edited).
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// User ids (`U…`), user group ids (`S…`), `@here`, `@channel`.
    #[serde(default)]
    pub mentions: Vec<String>,
    /// Keep evaluating the rules after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// This rule's grouping and timing; the section's when absent (see `groups`).
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default)]
    pub group_wait: Option<String>,
    #[serde(default)]
    pub group_interval: Option<String>,
    #[serde(default)]
    pub repeat_interval: Option<String>,
    /// This rule's storm folding; the section's when absent (see `storm`).
    #[serde(default)]
    pub storm_backlog: Option<i64>,
    #[serde(default)]
    pub storm_quiet: Option<String>,
}

pub const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];

impl ValidateSection for AlertsConfig {
    fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if !self.enabled {
            return problems;
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if let Err(e) = compile(&rule.condition) {
                problems.push((
                    format!("rules[{i}].condition"),
                    format!("rule {:?}: {e}", rule.name),
                ));
            }
            if rule.channels.is_empty() && rule.webhooks.is_empty() {
                problems.push((
                    format!("rules[{i}].channels"),
                    format!(
                        "rule {:?}: at least one channel id (or webhook) is required",
                        rule.name
                    ),
                ));
            }
        }
        for severity in self.severity_channels.keys() {
            if !SEVERITIES.contains(&severity.as_str()) {
                problems.push((
                    format!("severity_channels.{severity}"),
                    format!("not a severity (one of {})", SEVERITIES.join(", ")),
                ));
            }
        }
        super::inhibit::validate(&self.inhibit_rules, &mut problems);
        for (label, severity) in &self.severity_labels {
            if !SEVERITIES.contains(&severity.as_str()) {
                problems.push((
                    format!("severity_labels.{label}"),
                    format!(
                        "{severity:?} is not a severity (one of {})",
                        SEVERITIES.join(", ")
                    ),
                ));
            }
        }
        problems.extend(self.hooks.validate());
        if let Some(template) = &self.template
            && let Err(e) = super::blocks::Templates::new(Some(template))
        {
            problems.push(("template".into(), e.to_string()));
        }
        problems.extend(super::groups::validate(self));
        problems.extend(super::storm::validate(self));
        problems
    }
}

impl AlertsConfig {
    /// A `severity` label's value on our scale: `severity_labels` first (any case), then the
    /// customary names (`warning` is medium, `page` high, `info` low; unknown ones medium).
    pub fn severity_of_label(&self, label: &str) -> Severity {
        self.severity_listed(label)
            .unwrap_or_else(|| Severity::from_alertmanager(label))
    }

    /// A name of `severity_labels` (any case) on our scale; `None` if it is not listed.
    pub fn severity_listed(&self, label: &str) -> Option<Severity> {
        self.severity_labels
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(label))
            .and_then(|(_, v)| Severity::parse(v))
    }

    /// Alertmanager's alerts with their severity from the `severity` label on our scale.
    pub fn rescale(&self, mut alerts: Vec<Alert>) -> Vec<Alert> {
        if !self.severity_labels.is_empty() {
            for alert in &mut alerts {
                let label = alert
                    .labels
                    .get("severity")
                    .map(String::as_str)
                    .unwrap_or("");
                alert.severity = self.severity_of_label(label);
            }
        }
        alerts
    }
}

/// The product writes `AND`/`OR`; CEL has `&&`/`||`. Rewritten outside quoted strings only.
pub fn rewrite_condition(condition: &str) -> String {
    let mut out = String::with_capacity(condition.len());
    let mut quote: Option<char> = None;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match word.as_str() {
            "AND" => out.push_str("&&"),
            "OR" => out.push_str("||"),
            "NOT" => out.push('!'),
            _ => out.push_str(word),
        }
        word.clear();
    };
    for c in condition.chars() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                flush(&mut word, &mut out);
                quote = Some(c);
                out.push(c);
            }
            None if c.is_alphanumeric() || c == '_' => word.push(c),
            None => {
                flush(&mut word, &mut out);
                out.push(c);
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The most brackets a condition may nest, and the most operators it may hold. The `cel`
/// crate parses, evaluates and drops expressions recursively, so a condition nested deeply
/// enough overflows a thread's stack (the `cel_condition` fuzz target's finding); real rules
/// are far below both.
const MAX_CONDITION_DEPTH: usize = 16;
const MAX_CONDITION_OPERATORS: usize = 128;

/// The stack a condition is parsed on: `cel`'s parser takes over 100 KiB a bracket level in
/// a debug build, so even a condition within the bounds below could overflow a 2 MiB thread
/// (a tokio worker's, a test's) when a reload compiles it there.
const COMPILE_STACK: usize = 64 << 20;

pub fn compile(condition: &str) -> Result<cel::Program, String> {
    check_size(condition)?;
    let rewritten = rewrite_condition(condition);
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("cel-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(scope, || {
                cel::Program::compile(&rewritten).map_err(|e| e.to_string())
            })
            .map_err(|e| format!("cannot start the condition's compiler: {e}"))?
            .join()
            .map_err(|_| "the condition's compiler failed".to_string())?
    })
}

/// Outside quoted strings: bracket depth and operator count within bounds.
fn check_size(condition: &str) -> Result<(), String> {
    let (mut depth, mut deepest, mut operators) = (0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    for c in condition.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => quote = Some(c),
                '(' | '[' | '{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                    operators += 1;
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                c if c.is_alphanumeric() || c == '_' || c.is_whitespace() => {}
                _ => operators += 1,
            },
        }
    }
    // `AND`/`OR`/`NOT` are operators too once rewritten.
    operators += condition
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| matches!(*w, "AND" | "OR" | "NOT"))
        .count();
    if deepest > MAX_CONDITION_DEPTH {
        return Err(format!(
            "brackets nested {deepest} deep (at most {MAX_CONDITION_DEPTH})"
        ));
    }
    if operators > MAX_CONDITION_OPERATORS {
        return Err(format!(
            "{operators} operators (at most {MAX_CONDITION_OPERATORS}): split the rule"
        ));
    }
    Ok(())
}

/// The rules' conditions, compiled once (at start and on reload). A condition that does not
/// compile never matches (check-config reports it).
pub struct CompiledRules {
    programs: Vec<Option<cel::Program>>,
    /// CEL's standard library, built once: `cel::Context::default()` builds it anew each time,
    /// and a context per rule and alert made routing the largest part of an alert's way to its
    /// first post (about 0.4 ms of 1.9 with 23 rules).
    stdlib: Arc<cel::Env>,
}

impl CompiledRules {
    pub fn new(config: &AlertsConfig) -> Self {
        Self {
            programs: config
                .rules
                .iter()
                .map(|rule| compile(&rule.condition).ok())
                .collect(),
            stdlib: Arc::new(cel::Env::stdlib()),
        }
    }

    /// The conditions' variables for `alert`, bound once for every rule; `None` when its
    /// labels cannot be bound (then no condition matches).
    fn context_for(&self, alert: &Alert) -> Option<cel::Context<'_, '_>> {
        let mut context = cel::Context::with_env(self.stdlib.clone());
        let vars: [(&str, &str); 5] = [
            ("severity", alert.severity.as_str()),
            ("status", alert.status.as_str()),
            ("source", &alert.source),
            ("title", &alert.title),
            ("description", &alert.description),
        ];
        for (name, value) in vars {
            context.add_variable_from_value(name, value.to_string());
        }
        context.add_variable("labels", &alert.labels).ok()?;
        Some(context)
    }

    /// The rules in order, each with whether `alert` meets its condition.
    fn matching<'r>(
        &self,
        config: &'r AlertsConfig,
        alert: &Alert,
    ) -> impl Iterator<Item = (usize, &'r RuleConfig, bool)> {
        let context = self.context_for(alert);
        config
            .rules
            .iter()
            .zip(&self.programs)
            .enumerate()
            .map(move |(i, (rule, program))| {
                let hit = match (program, &context) {
                    (Some(program), Some(context)) => matches(program, context),
                    _ => false,
                };
                (i, rule, hit)
            })
    }
}

/// Where an alert goes and whom its message mentions there, per channel in order.
pub fn route(
    config: &AlertsConfig,
    compiled: &CompiledRules,
    alert: &Alert,
) -> Vec<(String, Vec<String>)> {
    route_rules(config, compiled, alert)
        .into_iter()
        .map(|(channel, mentions, _)| (channel, mentions))
        .collect()
}

/// As [`route`], with the rule that sent the alert to each channel first (`None`: the
/// severity map or the default channel): its grouping and timing apply there.
pub fn route_rules(
    config: &AlertsConfig,
    compiled: &CompiledRules,
    alert: &Alert,
) -> Vec<(String, Vec<String>, Option<usize>)> {
    let mut targets: Vec<(String, Vec<String>, Option<usize>)> = Vec::new();
    let mut add = |channel: &str, mentions: &[String], rule: Option<usize>| {
        let at = match targets.iter().position(|(c, _, _)| c == channel) {
            Some(at) => at,
            None => {
                targets.push((channel.to_string(), Vec::new(), rule));
                targets.len() - 1
            }
        };
        for m in mentions {
            if !targets[at].1.contains(m) {
                targets[at].1.push(m.clone());
            }
        }
    };
    let mut matched = false;
    for (i, rule, hit) in compiled.matching(config, alert) {
        if !hit {
            continue;
        }
        matched = true;
        for channel in &rule.channels {
            add(channel, &rule.mentions, Some(i));
        }
        if !rule.continue_matching {
            break;
        }
    }
    if !matched {
        if let Some(channel) = config.severity_channels.get(alert.severity.as_str()) {
            add(channel, &[], None);
        } else if let Some(channel) = &config.default_channel {
            add(channel, &[], None);
        }
    }
    targets
}

/// The rules `alert` matches, in order, up to the first that does not `continue` — the
/// rules [`route`] sends it by (for `switchyard alerts test`).
pub fn matched_rules(config: &AlertsConfig, compiled: &CompiledRules, alert: &Alert) -> Vec<usize> {
    let mut hits = Vec::new();
    for (i, rule, hit) in compiled.matching(config, alert) {
        if hit {
            hits.push(i);
            if !rule.continue_matching {
                break;
            }
        }
    }
    hits
}

/// A condition that fails to evaluate (a missing label, say) or is not a boolean is false.
fn matches(program: &cel::Program, context: &cel::Context<'_, '_>) -> bool {
    matches!(program.execute(context), Ok(cel::Value::Bool(true)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn and_or_are_rewritten_outside_strings() {
        assert_eq!(
            rewrite_condition("severity == 'critical' AND labels.team == 'A AND B' OR x"),
            "severity == 'critical' && labels.team == 'A AND B' || x"
        );
    }

    /// On a test thread's 2 MiB stack these overflowed inside `cel` (an abort, not an error).
    #[test]
    fn a_condition_nested_or_chained_too_far_is_refused_not_a_stack_overflow() {
        let nested = format!("{}true{}", "(".repeat(5000), ")".repeat(5000));
        assert!(compile(&nested).unwrap_err().contains("nested 5000 deep"));
        let unary = format!("{}true", "!".repeat(5000));
        assert!(compile(&unary).unwrap_err().contains("operators"));
        let chained = vec!["x == 1"; 3000].join(" OR ");
        assert!(compile(&chained).unwrap_err().contains("operators"));
        // Brackets and operators in quotes are text.
        let quoted = format!("labels.x == '{}'", "((((!!!!".repeat(100));
        assert!(compile(&quoted).is_ok());
        assert!(compile("severity == 'critical' AND (labels.env in ['prod', 'dr'] OR NOT labels.quiet == 'yes')").is_ok());
        // At the bounds, it compiles and runs on this (2 MiB) thread.
        let deepest = format!("{}true{}", "(".repeat(16), ")".repeat(16));
        let longest = format!("{}true", "!".repeat(MAX_CONDITION_OPERATORS));
        let chain = vec!["true"; MAX_CONDITION_OPERATORS / 2 + 1].join(" || ");
        for condition in [deepest, longest, chain] {
            let program = compile(&condition).unwrap();
            assert!(matches!(
                program.execute(&cel::Context::default()),
                Ok(cel::Value::Bool(true))
            ));
        }
    }
}
