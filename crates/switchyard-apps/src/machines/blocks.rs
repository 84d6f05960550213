//! What people see: `status` in Block Kit (within Slack's limits however many machines there
//! are), the notices, the `/oops-clear` picker.

use serde_json::{Value, json};

use super::state::MachineState;

/// Slack's limits: blocks per message, characters per section text.
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3000;
/// Slack refuses a message whose blocks carry more text than about 13,000 characters
/// (`msg_blocks_too_long`): a message is cut before that.
pub const MAX_MESSAGE_TEXT: usize = 12_000;
/// Options in a static select.
pub const MAX_OPTIONS: usize = 100;

/// "just now", "5 minutes ago", "3 hours ago", "2 days ago".
pub fn ago(then_ms: Option<i64>, now_ms: i64) -> String {
    match then_ms {
        None => "never".into(),
        Some(then) => {
            let secs = (now_ms - then).max(0) / 1000;
            if secs < 10 {
                "just now".into()
            } else {
                format!("{} ago", span(secs))
            }
        }
    }
}

/// "42 seconds", "1 minute", "3 hours", "2 days".
pub fn span(secs: i64) -> String {
    let (n, unit) = match secs {
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// A machine's state in words, with an emoji: Oopsed and/or Locked out, else In use (by
/// whom), else Idle.
pub fn state_words(state: &MachineState) -> String {
    let mut bad = Vec::new();
    if state.oopsed {
        bad.push(":rotating_light: Oopsed");
    }
    if state.locked_out {
        bad.push(":lock: Locked out");
    }
    if !bad.is_empty() {
        return bad.join(", ");
    }
    if state.relay {
        match &state.user {
            Some(user) => format!(":large_green_circle: In use by {}", escape(user)),
            None => ":large_green_circle: In use".into(),
        }
    } else {
        ":white_circle: Idle".into()
    }
}

/// Slack's three escapes.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One line per machine.
pub fn machine_line(name: &str, state: &MachineState, now_ms: i64) -> String {
    let uptime = state
        .uptime_s
        .map(|s| format!(" · up {}", span(s)))
        .unwrap_or_default();
    format!(
        "*{}* — {} · contact {} · updated {}{uptime}",
        escape(name),
        state_words(state),
        ago(state.last_checkin_ms, now_ms),
        ago(state.last_update_ms, now_ms),
    )
}

/// What the header says.
pub struct Summary {
    pub server_uptime_s: i64,
    pub users: usize,
    pub fobs: usize,
}

/// `status` as one or more messages, each within [`MAX_BLOCKS`] blocks and [`MAX_MESSAGE_TEXT`]
/// characters of text, every section text within [`MAX_SECTION_TEXT`]: machines are packed
/// several to a section, and messages follow one another when one is not enough.
pub fn status_messages(
    machines: &[(String, MachineState)],
    summary: &Summary,
    now_ms: i64,
) -> Vec<Value> {
    let oopsed = machines.iter().filter(|(_, s)| s.oopsed).count();
    let locked = machines.iter().filter(|(_, s)| s.locked_out).count();
    let in_use = machines
        .iter()
        .filter(|(_, s)| s.relay && !s.oopsed && !s.locked_out)
        .count();
    let headline = format!(
        "{} machines: {oopsed} oopsed, {locked} locked out, {in_use} in use",
        machines.len()
    );
    let mut sections: Vec<String> = Vec::new();
    let mut current = String::new();
    for (name, state) in machines {
        let mut line = machine_line(name, state, now_ms);
        if line.len() > MAX_SECTION_TEXT {
            // Cut on a character boundary: a name may be anything.
            let mut cut = MAX_SECTION_TEXT - 3;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        if !current.is_empty() && current.len() + 1 + line.len() > MAX_SECTION_TEXT {
            sections.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
    }
    if !current.is_empty() {
        sections.push(current);
    }
    if sections.is_empty() {
        sections.push("No machines are configured.".into());
    }
    let context = format!(
        "{headline} · server up {} · {} users, {} fobs",
        span(summary.server_uptime_s),
        summary.users,
        summary.fobs
    );
    let header = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": "Machines"}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}),
        json!({"type": "divider"}),
    ];
    let mut messages = Vec::new();
    let mut text_in_message = "Machines".len() + context.chars().count();
    let mut blocks = header;
    for text in sections {
        let chars = text.chars().count();
        if blocks.len() == MAX_BLOCKS || text_in_message + chars > MAX_MESSAGE_TEXT {
            messages.push(blocks);
            blocks = Vec::new();
            text_in_message = 0;
        }
        text_in_message += chars;
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
    }
    messages.push(blocks);
    let n = messages.len();
    messages
        .into_iter()
        .enumerate()
        .map(|(i, blocks)| {
            let text = if n == 1 {
                headline.clone()
            } else {
                format!("{headline} ({} of {n})", i + 1)
            };
            json!({"text": text, "blocks": blocks})
        })
        .collect()
}

/// The `/oops-clear` picker: the machines that are oopsed or locked out.
pub fn clear_modal(channel: &str, machines: &[(String, MachineState)]) -> Value {
    let options: Vec<Value> = machines
        .iter()
        .take(MAX_OPTIONS)
        .map(|(name, state)| {
            let mut label = format!("{name} — {}", plain_state(state));
            if label.chars().count() > 75 {
                label = label.chars().take(74).collect::<String>() + "…";
            }
            json!({"text": {"type": "plain_text", "text": label}, "value": name})
        })
        .collect();
    json!({
        "type": "modal",
        "callback_id": "machines_clear",
        "private_metadata": channel,
        "title": {"type": "plain_text", "text": "Clear a machine"},
        "submit": {"type": "plain_text", "text": "Clear"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{
            "type": "input",
            "block_id": "machine",
            "label": {"type": "plain_text", "text": "Machine"},
            "element": {"type": "static_select", "action_id": "machine", "options": options,
                        "placeholder": {"type": "plain_text", "text": "Oopsed or locked out"}},
        }],
    })
}

fn plain_state(state: &MachineState) -> &'static str {
    match (state.oopsed, state.locked_out) {
        (true, true) => "oopsed, locked out",
        (true, false) => "oopsed",
        (false, true) => "locked out",
        (false, false) => "fine",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_hundred_machines_fit_slacks_limits() {
        let machines: Vec<(String, MachineState)> = (0..200)
            .map(|i| {
                (
                    format!("Machine number {i} with a rather long name"),
                    MachineState {
                        oopsed: i % 3 == 0,
                        locked_out: i % 5 == 0,
                        relay: i % 2 == 0,
                        user: Some("Somebody Withalongname".into()),
                        last_checkin_ms: Some(0),
                        last_update_ms: Some(0),
                        uptime_s: Some(123_456),
                        ..MachineState::default()
                    },
                )
            })
            .collect();
        let summary = Summary {
            server_uptime_s: 10,
            users: 3,
            fobs: 4,
        };
        let messages = status_messages(&machines, &summary, 3_600_000);
        let mut lines = 0;
        for message in &messages {
            let blocks = message["blocks"].as_array().unwrap();
            assert!(blocks.len() <= MAX_BLOCKS);
            let mut total = 0;
            for block in blocks {
                if block["type"] == "section" {
                    let text = block["text"]["text"].as_str().unwrap();
                    assert!(text.len() <= MAX_SECTION_TEXT, "{}", text.len());
                    lines += text.lines().count();
                    total += text.chars().count();
                }
            }
            assert!(total <= MAX_MESSAGE_TEXT, "{total}");
        }
        assert_eq!(lines, 200, "every machine is listed once");
        assert!(messages.len() <= 4, "a few messages, not one per machine");
        // Many more do not fit one message, and are split.
        let many: Vec<_> = (0..2000).map(|i| machines[i % 200].clone()).collect();
        let messages = status_messages(&many, &summary, 3_600_000);
        assert!(messages.len() > 1);
        assert!(
            messages
                .iter()
                .all(|m| m["blocks"].as_array().unwrap().len() <= MAX_BLOCKS)
        );
    }

    #[test]
    fn a_huge_multibyte_name_is_cut_not_panicked_on() {
        let name = "é".repeat(4000);
        let machines = vec![(name, MachineState::default())];
        let summary = Summary {
            server_uptime_s: 0,
            users: 0,
            fobs: 0,
        };
        let messages = status_messages(&machines, &summary, 0);
        let text = messages[0]["blocks"][3]["text"]["text"].as_str().unwrap();
        assert!(text.len() <= MAX_SECTION_TEXT);
    }

    #[test]
    fn durations_read_like_people_say_them() {
        assert_eq!(ago(Some(0), 5_000), "just now");
        assert_eq!(ago(Some(0), 120_000), "2 minutes ago");
        assert_eq!(ago(None, 1), "never");
        assert_eq!(span(3600), "1 hour");
        assert_eq!(span(2 * 86_400), "2 days");
    }
}
