//! Storm folding: when a channel cannot take a group's alerts as fast as they come (Slack
//! allows about one post a second per channel), the rest of the group's alerts are folded into
//! one summary message per group and channel — counts by severity, source and status, the
//! newest few — edited in place as the group grows, with every alert listed in its thread,
//! many to a thread message.
//!
//! - A group starts folding when its channel already has `storm_backlog` calls waiting in
//!   the outbox (so each alert posted on its own would wait longer still; default
//!   [`DEFAULT_BACKLOG`]), and keeps folding until it has had no new alert for `storm_quiet`
//!   ([`DEFAULT_QUIET_MS`]); both per rule or for the section, as grouping is.
//! - The summary is edited with [`Ctx::update_latest`]: while an edit waits in the channel's
//!   line, the next one replaces it, so a storm of changes is a few `chat.update` calls.
//! - Thread lines go into the open thread message while it still waits in line
//!   ([`Ctx::replace_queued`]): the message grows until the sender takes it or it is full,
//!   then the next one opens. A thread message is plain `text` (mrkdwn), no blocks: Slack
//!   takes 40,000 characters of text but only about 13,000 of blocks, so a message holds
//!   ~500 alerts instead of ~150, and 10,000 alerts are about 20 thread messages — at one post
//!   a second (and one summary edit after each), visible within half a minute.
//! - Acknowledge and Resolve of a folded alert work through the API (it has no buttons of its
//!   own); each change is a line in the thread, and the summary's counts follow.
//! - The summary's "Acknowledge all" and "Resolve all" buttons change every alert folded into
//!   it at once (`storm_buttons`): one line in the thread for all of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchyard_engine::{AppError, Ctx};

use super::blocks::{cut, escape};
use super::config::AlertsConfig;
use super::groups::{Group, Grouping};
use super::intake::{Alert, Status};
use super::state::AlertRow;

/// Calls waiting in a channel's line from which a group's next alert is folded, not posted
/// (`storm_backlog`, per rule or for the section).
pub const DEFAULT_BACKLOG: i64 = 5;
/// `storm_backlog`'s bounds: 1 folds from the first call waiting; past a few hundred, folding
/// would begin only after minutes of a channel's posts.
pub const MIN_BACKLOG: i64 = 1;
pub const MAX_BACKLOG: i64 = 1_000;
/// A storm ends once its group has had no new alert for this long (`storm_quiet`).
pub const DEFAULT_QUIET_MS: i64 = 60_000;
/// The newest alerts the summary names.
const NEWEST: usize = 5;
/// Sources the summary counts by name (the rest as "other").
const SOURCES: usize = 8;
/// One thread message's text at most: Slack cuts a message's text past 40,000 characters
/// (the sandbox refuses it, `msg_too_long`); the rest is headroom for the part line.
pub const BATCH_CHARS: usize = 38_000;
/// Slack's limit on a message's text.
const SLACK_TEXT_CHARS: usize = 40_000;
// A full batch, its part line and its longest last line stay within Slack's limit.
const _: () = assert!(BATCH_CHARS + 1_000 + 100 <= SLACK_TEXT_CHARS);

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

pub fn backlog_ok(n: i64) -> bool {
    (MIN_BACKLOG..=MAX_BACKLOG).contains(&n)
}

/// check-config's problems with `storm_backlog` and `storm_quiet`, each named by its key.
pub fn validate(config: &AlertsConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut check = |at: String, backlog: Option<i64>, quiet: Option<&String>| {
        if let Some(n) = backlog
            && !backlog_ok(n)
        {
            problems.push((
                format!("{at}storm_backlog"),
                format!("{n} is not a number of calls waiting from {MIN_BACKLOG} to {MAX_BACKLOG}"),
            ));
        }
        if let Some(text) = quiet
            && super::groups::duration_ms(text).is_none()
        {
            problems.push((
                format!("{at}storm_quiet"),
                format!("{text:?} is not a duration (0, 30s, 5m, 4h, 2d)"),
            ));
        }
    };
    check(
        String::new(),
        config.storm_backlog,
        config.storm_quiet.as_ref(),
    );
    for (i, rule) in config.rules.iter().enumerate() {
        check(
            format!("rules[{i}]."),
            rule.storm_backlog,
            rule.storm_quiet.as_ref(),
        );
    }
    problems
}

fn storming(group: &Group, grouping: &Grouping, now_ms: i64) -> bool {
    group
        .fold
        .as_ref()
        .is_some_and(|f| now_ms - f.last_ms < grouping.storm_quiet_ms)
}

/// Whether the group's next alert is folded: the group is storming, or its channel's line is
/// already `storm_backlog` long.
pub async fn should_fold(
    ctx: &mut Ctx<'_>,
    group: &Group,
    grouping: &Grouping,
) -> Result<bool, AppError> {
    if storming(group, grouping, ctx.now_ms()) {
        return Ok(true);
    }
    Ok(ctx.queued(&group.channel).await? >= grouping.storm_backlog)
}

fn summary_ref(group: &Group) -> String {
    format!(
        "alerts:storm:{}:{}:{}",
        group.key, group.channel, group.episodes
    )
}

/// A line for the thread: what happened, the alert's key (what finds it), its title when that
/// says more than the key, and its source. At most about 850 characters (every character of
/// the title escaped to `&amp;`); usually under 100.
fn line(emoji: &str, row: &AlertRow, what: &str) -> String {
    alert_line(emoji, &row.alert, what)
}

/// [`line`] for an alert not (yet) stored: a webhook copy's (`to_webhooks`).
pub fn alert_line(emoji: &str, alert: &Alert, what: &str) -> String {
    let mut text = format!(
        "{emoji} {what}`{}`",
        escape(&cut(&alert.dedup_key, 48)).replace('`', "'")
    );
    if alert.title != alert.dedup_key {
        text.push_str(&format!(" *{}*", escape(&cut(&alert.title, 80))));
    }
    text.push_str(&format!(" · {}", escape(&cut(&alert.source, 24))));
    text
}

/// Folds a new alert into the group's storm (starting one, with its summary, if none is on);
/// returns the summary's ref.
pub async fn fold_new(
    ctx: &mut Ctx<'_>,
    group: &mut Group,
    grouping: &Grouping,
    row: &AlertRow,
) -> Result<String, AppError> {
    let now = ctx.now_ms();
    let fresh = !storming(group, grouping, now);
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
    count(fold, row);
    fold.newest.insert(0, newest_line(row));
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
    match current(group, fold_ref) {
        Some(fold) => {
            count_status(fold, previous, row.status);
            append(ctx, fold, channel, text).await
        }
        None => {
            // An earlier storm's alert: a line of its own in that storm's thread.
            ctx.post_in_thread_of(channel, fold_ref, json!({ "text": text }));
            Ok(())
        }
    }
}

/// The group's storm, if `fold_ref` is its summary (not an earlier storm's).
fn current<'g>(group: Option<&'g mut Group>, fold_ref: &str) -> Option<&'g mut Fold> {
    group.and_then(|g| g.fold.as_mut().filter(|f| f.summary_ref == fold_ref))
}

/// An alert of the storm went from `previous` to `now`: the summary's status counts follow.
fn count_status(fold: &mut Fold, previous: Status, now: Status) {
    if previous != now {
        if let Some(n) = fold.by_status.get_mut(previous.as_str()) {
            *n -= 1;
        }
        *fold.by_status.entry(now.as_str().to_string()).or_default() += 1;
        fold.by_status.retain(|_, n| *n > 0);
    }
    fold.unrendered.summary = true;
}

/// A folded alert changed with all of its storm (Acknowledge all / Resolve all): only the
/// summary's counts, when that storm is the group's current one (the storm's one line is
/// [`note`]'s; an earlier storm's counts are [`recounted`]).
pub fn count_change(group: Option<&mut Group>, fold_ref: &str, row: &AlertRow, previous: Status) {
    if let Some(fold) = current(group, fold_ref) {
        count_status(fold, previous, row.status);
    }
}

/// Whether `fold_ref` is the summary of the group's current storm.
pub fn is_current(group: &Group, fold_ref: &str) -> bool {
    group
        .fold
        .as_ref()
        .is_some_and(|f| f.summary_ref == fold_ref)
}

/// A line of the storm's own in its thread: into the open thread message when it is the
/// group's current storm, else a message of its own.
pub async fn note(
    ctx: &mut Ctx<'_>,
    group: Option<&mut Group>,
    channel: &str,
    fold_ref: &str,
    text: String,
) -> Result<(), AppError> {
    match current(group, fold_ref) {
        Some(fold) => append(ctx, fold, channel, text).await,
        None => {
            ctx.post_in_thread_of(channel, fold_ref, json!({ "text": text }));
            Ok(())
        }
    }
}

/// An earlier storm's summary, counted again from its alerts `rows` (the group keeps only its
/// current storm's counts): posted at `started_ms`, for the group `label`.
pub fn recounted(summary_ref: &str, label: &str, started_ms: i64, rows: &[&AlertRow]) -> Fold {
    let mut fold = Fold {
        summary_ref: summary_ref.to_string(),
        label: label.to_string(),
        started_ms,
        last_ms: started_ms,
        ..Fold::default()
    };
    let mut newest: Vec<&AlertRow> = rows.to_vec();
    newest.sort_by_key(|r| std::cmp::Reverse(r.first_ms));
    for row in rows {
        count(&mut fold, row);
    }
    fold.newest = newest.iter().take(NEWEST).map(|r| newest_line(r)).collect();
    fold
}

/// Counts `row` into the storm's totals by severity, source (the first [`SOURCES`], the rest
/// as "other") and status.
fn count(fold: &mut Fold, row: &AlertRow) {
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
}

/// An alert as one of the summary's newest lines.
fn newest_line(row: &AlertRow) -> String {
    format!(
        "{} {}",
        row.alert.severity.emoji(),
        escape(&cut(&row.alert.title, 80))
    )
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

/// The open thread message: a part line, then its lines, as plain mrkdwn text.
fn batch_message(channel: &str, fold: &Fold) -> Value {
    let mut text = format!("_Part {} · {} line(s)_", fold.batch_seq, fold.batch.len());
    for line in &fold.batch {
        text.push('\n');
        text.push_str(line);
    }
    json!({
        "channel": channel,
        "thread_ref": fold.summary_ref,
        "text": text,
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

/// A button's value at most (Slack's limit): a summary whose ref is longer gets no buttons.
const MAX_BUTTON_VALUE: usize = 2_000;

/// "Acknowledge all" while any alert counted is firing, "Resolve all" while any is not
/// resolved; the value is the summary's ref (what finds the storm's alerts).
fn summary_buttons(fold: &Fold) -> Vec<Value> {
    if fold.summary_ref.is_empty() || fold.summary_ref.len() > MAX_BUTTON_VALUE {
        return Vec::new();
    }
    let count = |status: Status| fold.by_status.get(status.as_str()).copied().unwrap_or(0);
    let firing = count(Status::Firing);
    let open = firing + count(Status::Acknowledged);
    let mut buttons = Vec::new();
    if firing > 0 {
        buttons.push(
            json!({"type": "button", "text": {"type": "plain_text", "text": "Acknowledge all"},
            "action_id": super::ACK_ALL_ACTION, "value": fold.summary_ref}),
        );
    }
    if open > 0 {
        buttons.push(
            json!({"type": "button", "text": {"type": "plain_text", "text": "Resolve all"},
            "action_id": super::RESOLVE_ALL_ACTION, "value": fold.summary_ref, "style": "primary"}),
        );
    }
    buttons
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
    let buttons = summary_buttons(fold);
    let how = if buttons.is_empty() {
        "acknowledge or resolve these alerts through the API"
    } else {
        "the buttons change every alert counted here; one alert through the API"
    };
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    blocks.push(
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
            "Since <!date^{started_s}^{{time}}|{} UTC> · {how}",
            super::intake_time_words(fold.started_ms)
        )}]}),
    );
    json!({
        "text": cut(&format!(":rotating_light: Alert storm: {} alerts — {}", fold.total, escape(&fold.label)), 3_000),
        "blocks": blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, title: &str, source: &str) -> AlertRow {
        let alert = super::super::intake::Alert {
            title: title.into(),
            severity: super::super::intake::Severity::Critical,
            source: source.into(),
            status: Status::Firing,
            description: String::new(),
            labels: BTreeMap::new(),
            affected_items: Vec::new(),
            links: Vec::new(),
            analysis: String::new(),
            dedup_key: key.into(),
            started_at_ms: None,
        };
        AlertRow {
            alert,
            status: Status::Firing,
            channels: Vec::new(),
            occurrences: 1,
            first_ms: 0,
            acked_by: None,
            resolved_by: None,
        }
    }

    /// The longest lines there can be (every character escaped), as many as fit: the message
    /// is text only, within Slack's 40,000 characters, and names every alert's key.
    #[test]
    fn a_full_thread_message_stays_within_slacks_limits() {
        let mut fold = Fold {
            summary_ref: "s".into(),
            batch_seq: 12,
            ..Fold::default()
        };
        let worst = row(&"<".repeat(300), &"&".repeat(300), &">".repeat(300));
        let longest = line(
            ":large_yellow_circle:",
            &worst,
            ":white_check_mark: Resolved via x. ",
        );
        assert!(
            longest.chars().count() < 1_000,
            "{}",
            longest.chars().count()
        );
        while chars(&fold.batch) + longest.chars().count() < BATCH_CHARS {
            fold.batch.push(longest.clone());
        }
        let message = batch_message("C1", &fold);
        assert!(message.get("blocks").is_none());
        let text = message["text"].as_str().unwrap();
        assert!(
            text.chars().count() <= SLACK_TEXT_CHARS,
            "{}",
            text.chars().count()
        );

        // Typical lines: ~500 to a message.
        let mut fold = Fold::default();
        for i in 0..100_000 {
            let l = line(
                ":large_yellow_circle:",
                &row(
                    &format!("a1b2c3d4e5f6{i:04}"),
                    "Disk full on node-1234",
                    "alertmanager",
                ),
                "",
            );
            if chars(&fold.batch) + l.chars().count() >= BATCH_CHARS {
                break;
            }
            fold.batch.push(l);
        }
        let text = batch_message("C1", &fold)["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.chars().count() <= SLACK_TEXT_CHARS);
        assert!(fold.batch.len() >= 450, "{}", fold.batch.len());
        assert!(
            text.contains("`a1b2c3d4e5f60000`")
                && text.contains(&format!("`a1b2c3d4e5f6{:04}`", fold.batch.len() - 1))
        );
    }
}
