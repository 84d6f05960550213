//! Storm folding: when a channel cannot take a group's alerts as fast as they come (Slack
//! allows about one post a second per channel), the rest of the group's alerts are folded into
//! one summary message per group and channel — counts by severity, source and status, the
//! newest few — edited in place as the group grows, with every alert listed in its thread,
//! many to a thread message.
//!
//! - A group starts folding when its channel already has [`STORM_BACKLOG`] calls waiting in
//!   the outbox (so each alert posted on its own would wait longer still), and keeps folding
//!   until it has had no new alert for [`STORM_QUIET_MS`].
//! - The summary is edited with [`Ctx::update_latest`]: while an edit waits in the channel's
//!   line, the next one replaces it, so a storm of changes is a few `chat.update` calls.
//! - Thread lines go into the open thread message while it still waits in line
//!   ([`Ctx::replace_queued`]): the message grows until the sender takes it or it is full
//!   (Slack's limits: 3,000 characters a section, about 13,000 in all), then the next one
//!   opens. So the thread gets one message per second at most, each with up to ~150 alerts.
//! - Acknowledge and Resolve of a folded alert work through the API (it has no buttons of its
//!   own); each change is a line in the thread, and the summary's counts follow.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchyard_engine::{AppError, Ctx};

use super::blocks::{cut, escape};
use super::groups::Group;
use super::intake::Status;
use super::state::AlertRow;

/// Calls waiting in a channel's line from which a group's next alert is folded, not posted.
pub const STORM_BACKLOG: i64 = 5;
/// A storm ends once its group has had no new alert for this long.
pub const STORM_QUIET_MS: i64 = 60_000;
/// The newest alerts the summary names.
const NEWEST: usize = 5;
/// Sources the summary counts by name (the rest as "other").
const SOURCES: usize = 8;
/// One thread message's text at most (Slack counts about 13,000 characters of blocks).
const BATCH_CHARS: usize = 11_500;
/// One section's text at most (Slack: 3,000).
const SECTION_CHARS: usize = 2_900;

/// A group's storm: the summary's counts and the open thread message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fold {
    pub summary_ref: String,
    pub label: String,
    pub started_ms: i64,
    /// When the last alert was folded in.
    pub last_ms: i64,
    pub total: i64,
    pub by_severity: BTreeMap<String, i64>,
    pub by_source: BTreeMap<String, i64>,
    pub by_status: BTreeMap<String, i64>,
    pub newest: Vec<String>,
    /// The open thread message: its number, its lines, and whether it is queued.
    pub batch_seq: i64,
    pub batch: Vec<String>,
    pub batch_queued: bool,
    /// What the request has changed and not rendered yet ([`publish`] renders it once, so a
    /// request of many alerts renders the summary and the open thread message once each).
    #[serde(skip)]
    unrendered: Unrendered,
}

#[derive(Debug, Clone, Default)]
struct Unrendered {
    /// The summary's counts changed.
    summary: bool,
    /// The open thread message has lines its queued call lacks.
    batch: bool,
    /// The open thread message's call is this request's, or was replaced by it (so it stays
    /// queued until the commit: on SQLite the request holds the writer, on PostgreSQL the
    /// row's lock): lines can go in without asking the outbox again.
    batch_held: bool,
}

fn storming(group: &Group, now_ms: i64) -> bool {
    group
        .fold
        .as_ref()
        .is_some_and(|f| now_ms - f.last_ms < STORM_QUIET_MS)
}

/// Whether the group's next alert is folded: the group is storming, or its channel's line is
/// already long.
pub async fn should_fold(ctx: &mut Ctx<'_>, group: &Group) -> Result<bool, AppError> {
    if storming(group, ctx.now_ms()) {
        return Ok(true);
    }
    Ok(ctx.queued(&group.channel).await? >= STORM_BACKLOG)
}

fn summary_ref(group: &Group) -> String {
    format!(
        "alerts:storm:{}:{}:{}",
        group.key, group.channel, group.episodes
    )
}

/// A line for the thread: what happened, the alert's title, source and key.
fn line(emoji: &str, row: &AlertRow, what: &str) -> String {
    let alert = &row.alert;
    format!(
        "{emoji} {what}*{}* · {} · `{}`",
        escape(&cut(&alert.title, 80)),
        escape(&cut(&alert.source, 24)),
        escape(&cut(&alert.dedup_key, 48)).replace('`', "'"),
    )
}

/// Folds a new alert into the group's storm (starting one, with its summary, if none is on);
/// returns the summary's ref.
pub async fn fold_new(
    ctx: &mut Ctx<'_>,
    group: &mut Group,
    row: &AlertRow,
) -> Result<String, AppError> {
    let now = ctx.now_ms();
    let fresh = !storming(group, now);
    if fresh {
        group.episodes += 1;
        group.fold = Some(Fold {
            summary_ref: summary_ref(group),
            label: group.label.clone(),
            started_ms: now,
            ..Fold::default()
        });
    }
    let channel = group.channel.clone();
    let fold = group.fold.as_mut().expect("set above");
    fold.last_ms = now;
    fold.total += 1;
    *fold
        .by_severity
        .entry(row.alert.severity.as_str().to_string())
        .or_default() += 1;
    let source = if fold.by_source.contains_key(&row.alert.source) || fold.by_source.len() < SOURCES
    {
        cut(&row.alert.source, 40)
    } else {
        "other".to_string()
    };
    *fold.by_source.entry(source).or_default() += 1;
    *fold
        .by_status
        .entry(row.status.as_str().to_string())
        .or_default() += 1;
    fold.newest.insert(
        0,
        format!(
            "{} {}",
            row.alert.severity.emoji(),
            escape(&cut(&row.alert.title, 80))
        ),
    );
    fold.newest.truncate(NEWEST);
    if fresh {
        // Posted now, ahead of its thread's messages; `publish` brings its counts up to date.
        ctx.post(
            &channel,
            summary_message(fold),
            None,
            Some(&fold.summary_ref),
        );
    } else {
        fold.unrendered.summary = true;
    }
    append(
        ctx,
        fold,
        &channel,
        line(row.alert.severity.emoji(), row, ""),
    )
    .await?;
    Ok(fold.summary_ref.clone())
}

/// A folded alert changed (acknowledged, resolved, firing again, repeating): a line in its
/// storm's thread, and the summary's counts when that storm is the group's current one.
pub async fn fold_change(
    ctx: &mut Ctx<'_>,
    group: Option<&mut Group>,
    channel: &str,
    fold_ref: &str,
    row: &AlertRow,
    what: &str,
    previous: Status,
) -> Result<(), AppError> {
    let text = line("", row, &format!("{what} "));
    let text = text.trim_start().to_string();
    match group.and_then(|g| g.fold.as_mut().filter(|f| f.summary_ref == fold_ref)) {
        Some(fold) => {
            if previous != row.status {
                if let Some(n) = fold.by_status.get_mut(previous.as_str()) {
                    *n -= 1;
                }
                *fold
                    .by_status
                    .entry(row.status.as_str().to_string())
                    .or_default() += 1;
                fold.by_status.retain(|_, n| *n > 0);
            }
            fold.unrendered.summary = true;
            append(ctx, fold, channel, text).await
        }
        None => {
            // An earlier storm's alert: a line of its own in that storm's thread.
            ctx.post_in_thread_of(channel, fold_ref, json!({ "text": text }));
            Ok(())
        }
    }
}

fn batch_ref(fold: &Fold) -> String {
    format!("{}:part{}", fold.summary_ref, fold.batch_seq)
}

fn chars(lines: &[String]) -> usize {
    lines.iter().map(|l| l.chars().count() + 1).sum()
}

/// Adds a line to the open thread message while it is still queued; otherwise opens the next.
/// The queued call gets its new lines when [`publish`] renders them (or when it is full).
async fn append(
    ctx: &mut Ctx<'_>,
    fold: &mut Fold,
    channel: &str,
    text: String,
) -> Result<(), AppError> {
    if fold.batch_queued && chars(&fold.batch) + text.chars().count() < BATCH_CHARS {
        fold.batch.push(text.clone());
        if fold.unrendered.batch_held {
            fold.unrendered.batch = true;
            return Ok(());
        }
        let args = batch_message(channel, fold);
        if ctx
            .replace_queued("chat.postMessage", &batch_ref(fold), &args)
            .await?
        {
            fold.unrendered.batch_held = true;
            return Ok(());
        }
        // It went out (or is going) as it was: the line opens the next one.
        fold.batch.pop();
    }
    render_batch(ctx, fold, channel).await?;
    fold.batch_seq += 1;
    fold.batch = vec![text];
    fold.batch_queued = true;
    let args = batch_message(channel, fold);
    ctx.call("chat.postMessage", channel, args, Some(&batch_ref(fold)));
    fold.unrendered.batch_held = true;
    Ok(())
}

/// Gives the open thread message's queued call the lines it lacks.
async fn render_batch(ctx: &mut Ctx<'_>, fold: &mut Fold, channel: &str) -> Result<(), AppError> {
    if !std::mem::take(&mut fold.unrendered.batch) {
        return Ok(());
    }
    let args = batch_message(channel, fold);
    if !ctx
        .replace_queued("chat.postMessage", &batch_ref(fold), &args)
        .await?
    {
        // Held calls stay queued; should one not have, its lines go in a message of their own.
        fold.batch_seq += 1;
        let args = batch_message(channel, fold);
        ctx.call("chat.postMessage", channel, args, Some(&batch_ref(fold)));
    }
    Ok(())
}

/// Renders what the request changed in the group's storm: the open thread message's new
/// lines and the summary's counts (into its queued post or edit when there is one).
pub async fn publish(ctx: &mut Ctx<'_>, group: &mut Group) -> Result<(), AppError> {
    let channel = group.channel.clone();
    let Some(fold) = group.fold.as_mut() else {
        return Ok(());
    };
    render_batch(ctx, fold, &channel).await?;
    if std::mem::take(&mut fold.unrendered.summary) {
        let mut summary = summary_message(fold);
        summary["channel"] = json!(channel);
        if !ctx
            .replace_queued("chat.postMessage", &fold.summary_ref, &summary)
            .await?
        {
            ctx.update_latest(&channel, &fold.summary_ref, summary)
                .await?;
        }
    }
    fold.unrendered = Unrendered::default();
    Ok(())
}

/// The open thread message: its lines in sections of up to [`SECTION_CHARS`].
fn batch_message(channel: &str, fold: &Fold) -> Value {
    let mut sections: Vec<String> = Vec::new();
    for line in &fold.batch {
        match sections.last_mut() {
            Some(last) if last.chars().count() + line.chars().count() < SECTION_CHARS => {
                last.push('\n');
                last.push_str(line);
            }
            _ => sections.push(line.clone()),
        }
    }
    let blocks: Vec<Value> = sections
        .into_iter()
        .map(|text| json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}))
        .collect();
    json!({
        "channel": channel,
        "thread_ref": fold.summary_ref,
        "text": format!("{} alert update(s), part {}", fold.batch.len(), fold.batch_seq),
        "blocks": blocks,
    })
}

fn counts(map: &BTreeMap<String, i64>, label: impl Fn(&str) -> String) -> String {
    let mut entries: Vec<(&String, &i64)> = map.iter().filter(|(_, n)| **n > 0).collect();
    entries.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    entries
        .into_iter()
        .map(|(name, n)| format!("{}: {n}", label(name)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn severity_label(name: &str) -> String {
    let emoji = match name {
        "critical" => ":red_circle:",
        "high" => ":large_orange_circle:",
        "medium" => ":large_yellow_circle:",
        _ => ":large_blue_circle:",
    };
    format!("{emoji} {name}")
}

/// The storm's summary message.
pub fn summary_message(fold: &Fold) -> Value {
    let started_s = fold.started_ms.div_euclid(1000);
    let header = cut(
        &format!(":rotating_light: Alert storm: {} alerts", fold.total),
        150,
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "emoji": true, "text": header}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&format!(
            "*{}*\nMore alerts than this channel can take at once (Slack allows about one message a second): they are counted here and each is listed in the thread.",
            escape(&fold.label)
        ), 2_900)}}),
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": cut(&format!("*By severity*\n{}", counts(&fold.by_severity, severity_label)), 1_900)},
            {"type": "mrkdwn", "text": cut(&format!("*By source*\n{}", counts(&fold.by_source, escape)), 1_900)},
            {"type": "mrkdwn", "text": cut(&format!("*Status*\n{}", counts(&fold.by_status, str::to_string)), 1_900)},
        ]}),
    ];
    if !fold.newest.is_empty() {
        let newest: Vec<String> = fold.newest.iter().map(|n| format!("• {n}")).collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": cut(&format!("*Newest*\n{}", newest.join("\n")), 2_900)}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
        "Since <!date^{started_s}^{{time}}|{} UTC> · acknowledge or resolve these alerts through the API",
        super::intake_time_words(fold.started_ms)
    )}]}));
    json!({
        "text": cut(&format!(":rotating_light: Alert storm: {} alerts — {}", fold.total, escape(&fold.label)), 3_000),
        "blocks": blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_thread_message_stays_within_slacks_limits() {
        let mut fold = Fold {
            summary_ref: "s".into(),
            ..Fold::default()
        };
        let long = "x".repeat(150);
        while chars(&fold.batch) + long.len() < BATCH_CHARS {
            fold.batch.push(long.clone());
        }
        let message = batch_message("C1", &fold);
        let blocks = message["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        let mut total = 0;
        for block in blocks {
            let n = block["text"]["text"].as_str().unwrap().chars().count();
            assert!(n <= 3_000, "{n}");
            total += n;
        }
        assert!(total <= 12_000, "{total}");
    }
}
