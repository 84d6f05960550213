//! The alert's message: Block Kit rendered from a minijinja template (the built-in one, or
//! `[apps.alerts] template`), then held to Slack's limits — long text is cut, not refused.

use minijinja::{Environment, context};
use serde_json::{Value, json};

use super::intake::{Alert, Status};

/// The built-in template: a JSON array of blocks. Strings go through `tojson` so any text is
/// valid JSON, and user text through `slack` (Slack's `&`, `<`, `>` escapes) where it is mrkdwn.
pub const BUILTIN_TEMPLATE: &str = r#"[
  {"type": "header", "text": {"type": "plain_text", "emoji": true,
    "text": {{ (emoji ~ " " ~ title) | tojson }}}},
  {"type": "section", "fields": [
    {"type": "mrkdwn", "text": {{ ("*Severity*\n" ~ severity) | tojson }}},
    {"type": "mrkdwn", "text": {{ ("*Source*\n" ~ (source | slack)) | tojson }}},
    {"type": "mrkdwn", "text": {{ ("*Time*\n<!date^" ~ time_s ~ "^{date_short_pretty} {time}|" ~ time_utc ~ ">") | tojson }}},
    {"type": "mrkdwn", "text": {{ ("*Status*\n" ~ status_words) | tojson }}}
  ]},
  {% if description %}{"type": "section", "text": {"type": "mrkdwn", "text": {{ (description | slack) | tojson }}}},{% endif %}
  {% if affected_items %}{"type": "section", "text": {"type": "mrkdwn", "text": {{ ("*Affected*\n" ~ (affected_items[:5] | map("slack") | map("bullet") | join("\n")) ~ (("\n_and " ~ (affected_items | length - 5) ~ " more_") if affected_items | length > 5 else "")) | tojson }}}},{% endif %}
  {% if analysis %}{"type": "section", "text": {"type": "mrkdwn", "text": {{ ("*Analysis*\n" ~ (analysis | slack)) | tojson }}}},{% endif %}
  {% if mentions %}{"type": "section", "text": {"type": "mrkdwn", "text": {{ mentions | tojson }}}},{% endif %}
  {% if buttons %}{"type": "actions", "elements": [
    {% for b in buttons %}{"type": "button", "text": {"type": "plain_text", "text": {{ b.text | tojson }}}{% if b.url %}, "url": {{ b.url | tojson }}{% endif %}{% if b.action_id %}, "action_id": {{ b.action_id | tojson }}, "value": {{ key | tojson }}{% endif %}{% if b.style %}, "style": {{ b.style | tojson }}{% endif %}}{% if not loop.last or silence_menu %},{% endif %}{% endfor %}
    {% if silence_menu %}{"type": "static_select", "action_id": {{ silence_menu.action_id | tojson }}, "placeholder": {"type": "plain_text", "text": "Silence…"}, "options": [{% for o in silence_menu.options %}{"text": {"type": "plain_text", "text": {{ o.text | tojson }}}, "value": {{ o.value | tojson }}}{% if not loop.last %},{% endif %}{% endfor %}]}{% endif %}
  ]},{% endif %}
  {"type": "context", "elements": [{"type": "mrkdwn", "text": {{ ("Alert `" ~ (key | slack) ~ "`" ~ ((" · seen " ~ occurrences ~ " times") if occurrences > 1 else "")) | tojson }}}]}
]"#;

/// Slack's escapes for text shown as mrkdwn.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A template that failed to render (a custom one, most likely).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the alert template failed: {0}")]
    Template(#[from] minijinja::Error),
    #[error("the alert template did not give a JSON array of blocks: {0}")]
    NotBlocks(String),
}

/// Everything the message shows besides the alert itself.
pub struct MessageState<'a> {
    pub status: Status,
    pub occurrences: i64,
    pub acked_by: Option<&'a str>,
    pub resolved_by: Option<&'a str>,
    /// The alert's time (ms since the epoch).
    pub at_ms: i64,
    /// Mentions for this channel, already in Slack's syntax.
    pub mentions: String,
}

/// `U…` → `<@U…>`, `S…` → `<!subteam^S…>`, `@here`/`@channel` → `<!here>`/`<!channel>`.
pub fn mention_syntax(mention: &str) -> String {
    match mention {
        "@here" | "here" => "<!here>".into(),
        "@channel" | "channel" => "<!channel>".into(),
        m if m.starts_with('S') => format!("<!subteam^{m}>"),
        m => format!("<@{}>", m.trim_start_matches('@')),
    }
}

fn status_words(state: &MessageState) -> String {
    match state.status {
        Status::Firing => ":fire: Firing".into(),
        Status::Acknowledged => match state.acked_by {
            Some(user) => format!(":eyes: Acknowledged by <@{user}>"),
            None => ":eyes: Acknowledged".into(),
        },
        Status::Resolved => match state.resolved_by {
            Some(user) => format!(":white_check_mark: Resolved by <@{user}>"),
            None => ":white_check_mark: Resolved".into(),
        },
    }
}

/// The message template, parsed once, with our filters (`slack`, `bullet`).
pub struct Templates {
    env: Environment<'static>,
    /// The Create incident / Run playbook buttons, when something fills them.
    hooks: super::hooks::HookButtons,
}

const TEMPLATE_NAME: &str = "alert";

impl Templates {
    /// The built-in template, or `custom` (checked by check-config; one that does not parse
    /// here is refused the same way).
    pub fn new(custom: Option<&str>) -> Result<Self, RenderError> {
        let mut env = Environment::new();
        env.add_filter("slack", |s: String| escape(&s));
        env.add_filter("bullet", |s: String| format!("• {s}"));
        env.add_template_owned(
            TEMPLATE_NAME,
            custom.unwrap_or(BUILTIN_TEMPLATE).to_string(),
        )?;
        Ok(Self {
            env,
            hooks: Default::default(),
        })
    }

    /// As [`Templates::new`], with the hooks' buttons: the config's links (their URL
    /// templates parsed here) and the apps' claims.
    pub fn with_hooks(
        custom: Option<&str>,
        config: &super::hooks::HooksConfig,
        claims: &[super::hooks::Claim],
    ) -> Result<Self, RenderError> {
        let mut templates = Self::new(custom)?;
        for hook in super::hooks::Hook::ALL {
            if let Some(link) = config.link(hook) {
                templates
                    .env
                    .add_template_owned(super::hooks::template_name(hook), link.url.clone())?;
            }
        }
        templates.hooks = super::hooks::HookButtons::new(config, claims);
        Ok(templates)
    }
}

/// The whole message (`text` and `blocks`) for `alert` in its `state`.
pub fn render(
    templates: &Templates,
    alert: &Alert,
    state: &MessageState,
) -> Result<Value, RenderError> {
    let mut buttons = Vec::new();
    if let Some(link) = alert.links.first() {
        buttons.push(json!({"text": link.title, "url": link.url}));
    }
    if state.status == Status::Firing {
        buttons.push(json!({"text": "Acknowledge", "action_id": super::ACK_ACTION}));
    }
    if state.status != Status::Resolved {
        buttons.extend(templates.hooks.render(&templates.env, alert));
        buttons.push(
            json!({"text": "Resolve", "action_id": super::RESOLVE_ACTION, "style": "primary"}),
        );
    }
    // Silence for 1h/4h/24h: an option's value (`1h:<key>`) may be 150 characters, so an
    // alert with a longer key has no menu (a silence by matchers still works).
    let silence_menu = (state.status != Status::Resolved
        && alert.dedup_key.chars().count() <= 145)
        .then(|| {
            json!({
                "action_id": super::silences::SILENCE_ACTION,
                "options": super::silences::MENU_DURATIONS
                    .iter()
                    .map(|d| json!({"text": format!("Silence {d}"), "value": format!("{d}:{}", alert.dedup_key)}))
                    .collect::<Vec<_>>(),
            })
        });
    let emoji = if state.status == Status::Resolved {
        ":white_check_mark:"
    } else {
        alert.severity.emoji()
    };
    let time_s = state.at_ms.div_euclid(1000);
    let rendered = templates
        .env
        .get_template(TEMPLATE_NAME)?
        .render(context! {
                emoji,
                title => alert.title,
                severity => alert.severity.as_str(),
                source => alert.source,
                status => state.status.as_str(),
                status_words => status_words(state),
                time_s,
                time_utc => format!("{} UTC", super::intake_time_words(state.at_ms)),
                description => alert.description,
                // Each cut short, so five of them and "and N more" fit in one section.
            affected_items => alert
                .affected_items
                .iter()
                .map(|item| cut(item, MAX_ITEM))
                .collect::<Vec<_>>(),
                analysis => alert.analysis,
                labels => alert.labels,
                links => alert.links,
                mentions => state.mentions,
                buttons,
                silence_menu,
                key => alert.dedup_key,
                occurrences => state.occurrences,
        })?;
    let mut blocks: Value =
        serde_json::from_str(&rendered).map_err(|e| RenderError::NotBlocks(e.to_string()))?;
    if !blocks.is_array() {
        return Err(RenderError::NotBlocks("not an array".into()));
    }
    clamp_blocks(&mut blocks);
    let mut text = format!(
        "{} [{}] {} — {}",
        emoji,
        alert.severity.as_str().to_uppercase(),
        escape(&alert.title),
        state.status.as_str()
    );
    if !state.mentions.is_empty() {
        text = format!("{} {text}", state.mentions);
    }
    Ok(json!({"text": cut(&text, MAX_TEXT), "blocks": blocks}))
}

/// Slack's limits (characters): a message's `text`, a section's text, a field, a header, a
/// button's label; at most 50 blocks, 10 fields, 25 action elements.
const MAX_TEXT: usize = 3_000;
const MAX_SECTION: usize = 3_000;
const MAX_FIELD: usize = 2_000;
const MAX_HEADER: usize = 150;
const MAX_BUTTON: usize = 75;
const MAX_URL: usize = 3_000;
/// An affected item's share of its section.
const MAX_ITEM: usize = 300;

/// At most `max` characters, cut on a character boundary with an ellipsis.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Cuts the string at `value`, if there is one. (Reached with `get_mut`/`pointer_mut`:
/// indexing a JSON object mutably would add the key as `null`, which Slack refuses.)
fn cut_at(value: Option<&mut Value>, max: usize) {
    let Some(value) = value else {
        return;
    };
    if let Some(text) = value.as_str()
        && text.chars().count() > max
    {
        *value = json!(cut(text, max));
    }
}

/// Holds rendered blocks to Slack's limits, so a long alert is cut rather than refused.
pub fn clamp_blocks(blocks: &mut Value) {
    let Some(list) = blocks.as_array_mut() else {
        return;
    };
    list.truncate(50);
    for block in list {
        match block["type"].as_str() {
            Some("header") => cut_at(block.pointer_mut("/text/text"), MAX_HEADER),
            Some("section") => {
                cut_at(block.pointer_mut("/text/text"), MAX_SECTION);
                if let Some(fields) = block.get_mut("fields").and_then(Value::as_array_mut) {
                    fields.truncate(10);
                    for field in fields {
                        cut_at(field.get_mut("text"), MAX_FIELD);
                    }
                }
            }
            Some("context") => {
                if let Some(elements) = block.get_mut("elements").and_then(Value::as_array_mut) {
                    elements.truncate(10);
                    for element in elements {
                        cut_at(element.get_mut("text"), MAX_FIELD);
                    }
                }
            }
            Some("actions") => {
                if let Some(elements) = block.get_mut("elements").and_then(Value::as_array_mut) {
                    elements.truncate(25);
                    for element in elements {
                        cut_at(element.pointer_mut("/text/text"), MAX_BUTTON);
                        cut_at(element.get_mut("value"), MAX_FIELD);
                        // A URL cut would be wrong: a button whose URL is too long loses it.
                        if element["url"].as_str().is_some_and(|u| u.len() > MAX_URL)
                            && let Some(e) = element.as_object_mut()
                        {
                            e.remove("url");
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alerts::intake::{Link, Severity};

    fn alert() -> Alert {
        Alert {
            title: "Disk full on db-1 <prod>".into(),
            severity: Severity::Critical,
            source: "nagios".into(),
            status: Status::Firing,
            description: "x".repeat(5000),
            labels: BTreeMap::new(),
            affected_items: (1..=7).map(|i| format!("db-{i}")).collect(),
            links: vec![Link {
                title: "View details".into(),
                url: "https://example.com/a/1".into(),
            }],
            analysis: "Log volume grew".into(),
            dedup_key: "disk-db-1".into(),
            started_at_ms: None,
        }
    }

    fn firing() -> MessageState<'static> {
        MessageState {
            status: Status::Firing,
            occurrences: 1,
            acked_by: None,
            resolved_by: None,
            at_ms: 0,
            mentions: String::new(),
        }
    }

    #[test]
    fn a_custom_template_renders_and_one_that_gives_no_blocks_is_an_error() {
        let custom = Templates::new(Some(
            r#"[{"type": "section", "text": {"type": "mrkdwn", "text": {{ (severity ~ ": " ~ (title | slack)) | tojson }}}}]"#,
        ))
        .unwrap();
        let message = render(&custom, &alert(), &firing()).unwrap();
        assert_eq!(
            message["blocks"][0]["text"]["text"],
            "critical: Disk full on db-1 &lt;prod&gt;"
        );
        let not_json = Templates::new(Some("{{ title }}")).unwrap();
        assert!(matches!(
            render(&not_json, &alert(), &firing()),
            Err(RenderError::NotBlocks(_))
        ));
        assert!(Templates::new(Some("{% if %}")).is_err());
    }

    #[test]
    fn a_claimed_hook_is_a_button_to_the_claiming_apps_action_with_the_alerts_key() {
        let claims = [crate::alerts::hooks::Claim {
            hook: crate::alerts::hooks::Hook::RunPlaybook,
            action_id: "automation_run_for_alert".into(),
            label: None,
        }];
        let templates = Templates::with_hooks(None, &Default::default(), &claims).unwrap();
        let message = render(&templates, &alert(), &firing()).unwrap();
        let actions = message["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "actions")
            .unwrap()
            .clone();
        let hook = &actions["elements"][2];
        assert_eq!(hook["action_id"], "automation_run_for_alert");
        assert_eq!(hook["value"], "disk-db-1");
        assert_eq!(hook["text"]["text"], "Run playbook");
        let resolved = MessageState {
            status: Status::Resolved,
            ..firing()
        };
        let message = render(&templates, &alert(), &resolved).unwrap();
        assert!(!message.to_string().contains("automation_run_for_alert"));
    }

    #[test]
    fn the_builtin_template_gives_valid_limited_blocks() {
        let state = MessageState {
            status: Status::Firing,
            occurrences: 1,
            acked_by: None,
            resolved_by: None,
            at_ms: 1_795_668_372_000,
            mentions: "<!here>".into(),
        };
        let message = render(&Templates::new(None).unwrap(), &alert(), &state).unwrap();
        let blocks = message["blocks"].as_array().unwrap();
        assert_eq!(
            blocks[0]["text"]["text"],
            ":red_circle: Disk full on db-1 <prod>"
        );
        let all = message["blocks"].to_string();
        assert!(!all.contains("null"), "no key added as null: {all}");
        assert!(all.contains("<!date^1795668372^"), "{all}");
        assert!(all.contains("and 2 more"), "{all}");
        assert!(all.contains("db-5") && !all.contains("db-6"), "{all}");
        assert!(blocks[2]["text"]["text"].as_str().unwrap().chars().count() <= 3000);
        let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
        let ids: Vec<&str> = actions["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action_id"].as_str().unwrap_or("url"))
            .collect();
        assert_eq!(
            ids,
            ["url", "alerts_ack", "alerts_resolve", "alerts_silence"]
        );
    }
}
