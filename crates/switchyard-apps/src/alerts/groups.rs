//! Grouping and timing, with Alertmanager's names and meanings: alerts that a route (a rule,
//! the severity map or the default channel) sends to a channel and that agree on the route's
//! `group_by` labels form a group there.
//!
//! - `group_wait`: a new group's first alerts are held that long, then posted together (0, the
//!   default: at once, as the latency target needs).
//! - `group_interval`: once a group has posted, alerts joining it are held until that long after
//!   its last flush (0, the default: at once — each alert is a message of its own here, so
//!   holding it back only delays it; Alertmanager's 5 m re-sends the whole group instead).
//! - `repeat_interval` (default 4 h): an alert sent again while firing adds a thread line at most
//!   once per interval; in between its message is only edited (the count).
//!
//! A group ends when all its alerts are resolved; the next alert starts it anew (`group_wait`
//! again). Held alerts wait in `alerts_members` (mode `held`) and their group's `flush_at`; the
//! app's tick posts what is due, so a restart loses no pending flush, and on PostgreSQL the
//! group's row lock makes one replica flush it. Whether an alert is posted on its own or folded
//! into the group's storm summary is [`super::storm`]'s decision.

use std::collections::BTreeSet;

use serde_json::json;
use switchyard_engine::sqlx::{self, AnyConnection, Row, any::AnyRow};
use switchyard_engine::{AppError, AppMigration, Backend, Ctx, Outcome, Placeholders, StoreError};

use super::config::AlertsConfig;
use super::intake::{Alert, Status};
use super::state::{AlertRow, ROWS_PER_STATEMENT};
use super::unit::Unit;
use super::{Alerts, ref_key, storm};

/// Numbered from 200: silences, inhibition and muting use 100–199.
pub const MIGRATIONS: [AppMigration; 2] = [
    AppMigration {
        version: 200,
        sqlite: "CREATE TABLE alerts_groups (
        group_key     TEXT NOT NULL,
        channel       TEXT NOT NULL,
        label         TEXT NOT NULL,
        active        INTEGER NOT NULL,
        last_flush_ms INTEGER,
        flush_at      INTEGER,
        episodes      INTEGER NOT NULL DEFAULT 0,
        fold          TEXT,
        PRIMARY KEY (group_key, channel)
    );
    CREATE INDEX alerts_groups_due ON alerts_groups (flush_at);
    CREATE TABLE alerts_members (
        dedup_key   TEXT NOT NULL,
        channel     TEXT NOT NULL,
        group_key   TEXT NOT NULL,
        mode        TEXT NOT NULL,
        fold_ref    TEXT,
        held_ms     INTEGER NOT NULL,
        notified_ms INTEGER NOT NULL,
        PRIMARY KEY (dedup_key, channel)
    );
    CREATE INDEX alerts_members_by_group ON alerts_members (group_key, channel, mode, held_ms);",
        postgres: "CREATE TABLE alerts_groups (
        group_key     TEXT NOT NULL,
        channel       TEXT NOT NULL,
        label         TEXT NOT NULL,
        active        BIGINT NOT NULL,
        last_flush_ms BIGINT,
        flush_at      BIGINT,
        episodes      BIGINT NOT NULL DEFAULT 0,
        fold          TEXT,
        PRIMARY KEY (group_key, channel)
    );
    CREATE INDEX alerts_groups_due ON alerts_groups (flush_at);
    CREATE TABLE alerts_members (
        dedup_key   TEXT NOT NULL,
        channel     TEXT NOT NULL,
        group_key   TEXT NOT NULL,
        mode        TEXT NOT NULL,
        fold_ref    TEXT,
        held_ms     BIGINT NOT NULL,
        notified_ms BIGINT NOT NULL,
        PRIMARY KEY (dedup_key, channel)
    );
    CREATE INDEX alerts_members_by_group ON alerts_members (group_key, channel, mode, held_ms);",
    },
    AppMigration {
        version: 201,
        // A storm's alerts, found by its summary (the summary's Acknowledge all / Resolve all).
        sqlite: "CREATE INDEX alerts_members_by_fold ON alerts_members (fold_ref)",
        postgres: "CREATE INDEX alerts_members_by_fold ON alerts_members (fold_ref)",
    },
];

pub const DEFAULT_WAIT_MS: i64 = 0;
pub const DEFAULT_INTERVAL_MS: i64 = 0;
pub const DEFAULT_REPEAT_MS: i64 = 4 * 3_600_000;
/// Groups flushed per tick at most (the rest on the next one).
const FLUSH_PER_TICK: i64 = 64;

/// One route's grouping and timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    /// Label names; `...` groups by every label (each alert alone); empty: one group for the
    /// route's channel.
    pub by: Vec<String>,
    pub wait_ms: i64,
    pub interval_ms: i64,
    pub repeat_ms: i64,
    /// Calls waiting in the channel's line from which the group's next alert is folded.
    pub storm_backlog: i64,
    /// A storm ends once its group has had no new alert for this long.
    pub storm_quiet_ms: i64,
}

/// The section's grouping and each rule's, read once per config.
pub struct Groupings {
    section: Grouping,
    rules: Vec<Grouping>,
}

/// `30s`, `5m`, `4h`, `0` (ms); `None` if it is none of those.
pub(super) fn duration_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if text == "0" {
        return Some(0);
    }
    switchyard_engine::admin::parse_duration_ms(text).filter(|ms| *ms >= 0)
}

impl Groupings {
    /// A bad duration falls back to its default (check-config reports it, see [`validate`]).
    pub fn new(config: &AlertsConfig) -> Self {
        let pick = |own: Option<&String>, fallback: i64| {
            own.and_then(|t| duration_ms(t)).unwrap_or(fallback)
        };
        let section = Grouping {
            by: config.group_by.clone(),
            wait_ms: pick(config.group_wait.as_ref(), DEFAULT_WAIT_MS),
            interval_ms: pick(config.group_interval.as_ref(), DEFAULT_INTERVAL_MS),
            repeat_ms: pick(config.repeat_interval.as_ref(), DEFAULT_REPEAT_MS),
            storm_backlog: config
                .storm_backlog
                .filter(|n| storm::backlog_ok(*n))
                .unwrap_or(storm::DEFAULT_BACKLOG),
            storm_quiet_ms: pick(config.storm_quiet.as_ref(), storm::DEFAULT_QUIET_MS),
        };
        let rules = config
            .rules
            .iter()
            .map(|rule| Grouping {
                by: rule.group_by.clone().unwrap_or_else(|| section.by.clone()),
                wait_ms: pick(rule.group_wait.as_ref(), section.wait_ms),
                interval_ms: pick(rule.group_interval.as_ref(), section.interval_ms),
                repeat_ms: pick(rule.repeat_interval.as_ref(), section.repeat_ms),
                storm_backlog: rule
                    .storm_backlog
                    .filter(|n| storm::backlog_ok(*n))
                    .unwrap_or(section.storm_backlog),
                storm_quiet_ms: pick(rule.storm_quiet.as_ref(), section.storm_quiet_ms),
            })
            .collect();
        Self { section, rules }
    }
}

impl Groupings {
    /// The section's `storm_backlog` (webhook copies fold by it: a webhook is no route's).
    pub fn section_storm_backlog(&self) -> i64 {
        self.section.storm_backlog
    }
}

/// check-config's problems with the grouping keys, each named by its key.
pub fn validate(config: &AlertsConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut check = |key: String, value: Option<&String>| {
        if let Some(text) = value
            && duration_ms(text).is_none()
        {
            problems.push((
                key,
                format!("{text:?} is not a duration (0, 30s, 5m, 4h, 2d)"),
            ));
        }
    };
    check("group_wait".into(), config.group_wait.as_ref());
    check("group_interval".into(), config.group_interval.as_ref());
    check("repeat_interval".into(), config.repeat_interval.as_ref());
    for (i, rule) in config.rules.iter().enumerate() {
        check(format!("rules[{i}].group_wait"), rule.group_wait.as_ref());
        check(
            format!("rules[{i}].group_interval"),
            rule.group_interval.as_ref(),
        );
        check(
            format!("rules[{i}].repeat_interval"),
            rule.repeat_interval.as_ref(),
        );
    }
    problems
}

/// Where an alert goes: a channel, whom it mentions there, and its group there.
#[derive(Debug, Clone)]
pub struct Target {
    pub channel: String,
    /// In Slack's syntax.
    pub mentions: String,
    pub group_key: String,
    /// The group for people: the route and the grouping labels' values.
    pub label: String,
    pub grouping: Grouping,
}

/// A grouping label's value: the label, or for `severity`, `source` and `title` without such a
/// label the alert's own field.
fn label_value(alert: &Alert, name: &str) -> String {
    if let Some(value) = alert.labels.get(name) {
        return value.clone();
    }
    match name {
        "severity" => alert.severity.as_str().to_string(),
        "source" => alert.source.clone(),
        "title" | "alertname" => alert.title.clone(),
        _ => String::new(),
    }
}

/// The alert's targets, in routing order.
pub fn targets(app: &Alerts, alert: &Alert) -> Vec<Target> {
    super::config::route_rules(&app.config, &app.rules, alert)
        .into_iter()
        .map(|(channel, mentions, rule)| {
            let (route, grouping) = match rule {
                Some(i) => (
                    app.config.rules[i].name.clone(),
                    app.groupings.rules[i].clone(),
                ),
                None if app
                    .config
                    .severity_channels
                    .contains_key(alert.severity.as_str()) =>
                {
                    (
                        format!("severity {}", alert.severity.as_str()),
                        app.groupings.section.clone(),
                    )
                }
                None => ("default".to_string(), app.groupings.section.clone()),
            };
            let values: Vec<String> = if grouping.by.iter().any(|b| b == "...") {
                vec![format!("alert={}", alert.dedup_key)]
            } else {
                grouping
                    .by
                    .iter()
                    .map(|name| format!("{name}={}", label_value(alert, name)))
                    .collect()
            };
            let words: Vec<String> = mentions
                .iter()
                .map(|m| super::blocks::mention_syntax(m))
                .collect();
            Target {
                channel,
                mentions: words.join(" "),
                group_key: format!("{route}|{}", values.join(",")),
                label: if values.is_empty() {
                    route
                } else {
                    format!("{route} · {}", values.join(", "))
                },
                grouping,
            }
        })
        .collect()
}

// ---- the tables ----

/// A group in one channel.
#[derive(Debug, Clone)]
pub struct Group {
    pub key: String,
    pub channel: String,
    pub label: String,
    /// Its alerts not resolved.
    pub active: i64,
    /// When it last posted (`None`: not yet in this life of the group).
    pub last_flush_ms: Option<i64>,
    /// When its held alerts are due.
    pub flush_at: Option<i64>,
    /// Storms it has had (numbers each storm's summary).
    pub episodes: i64,
    /// Its storm, while it lasts.
    pub fold: Option<storm::Fold>,
}

/// How an alert is in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Waiting for its group's flush.
    Held,
    /// A message of its own.
    Posted,
    /// A line in its group's storm thread.
    Folded,
    /// Resolved while held: never posted.
    Dropped,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Posted => "posted",
            Self::Folded => "folded",
            Self::Dropped => "dropped",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "held" => Self::Held,
            "folded" => Self::Folded,
            "dropped" => Self::Dropped,
            _ => Self::Posted,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Member {
    pub group_key: String,
    pub mode: Mode,
    /// The storm summary's ref, when folded.
    pub fold_ref: Option<String>,
    pub notified_ms: i64,
}

fn db_err(e: sqlx::Error) -> AppError {
    AppError::Store(StoreError::Query {
        op: "alerts groups",
        source: e,
    })
}

fn json_err(e: serde_json::Error) -> AppError {
    AppError::Internal(format!("alerts groups: {e}"))
}

/// A group's identity: its key and its channel.
pub type GroupId = (String, String);

fn lock(ctx: &Ctx<'_>) -> bool {
    ctx.store().backend() == Backend::Postgres
}

/// A group's lock id on PostgreSQL (FNV-1a of its key and channel): groups are locked with
/// transaction-scoped advisory locks, which exist before the group's row does — two
/// transactions creating the same groups in opposite orders would otherwise deadlock on the
/// rows' inserts.
fn lock_id(key: &str, channel: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"alerts_groups\0"
        .iter()
        .chain(key.as_bytes())
        .chain(b"\0")
        .chain(channel.as_bytes())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

async fn lock_ids(conn: &mut AnyConnection, ids: &BTreeSet<i64>) -> Result<(), AppError> {
    // Ascending, whatever order the caller met the groups in: a transaction never waits for a
    // group while holding one that comes later, so two transactions cannot wait on each other.
    for id in ids {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(*id)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// Locks, on PostgreSQL, every group that work on these alerts may touch — the groups their
/// routes send them to and those they are members of — in one order, before any alert's row
/// is locked: transactions over the same groups (an intake request, a button, the tick's
/// flush or a silence's end) then wait for each other instead of deadlocking. A lock taken
/// again later in the transaction (`load_group`) is granted at once. On SQLite, where one
/// writer runs at a time, nothing.
pub async fn lock_for(app: &Alerts, ctx: &mut Ctx<'_>, alerts: &[&Alert]) -> Result<(), AppError> {
    if !lock(ctx) || alerts.is_empty() {
        return Ok(());
    }
    let mut ids = BTreeSet::new();
    for alert in alerts {
        for target in targets(app, alert) {
            ids.insert(lock_id(&target.group_key, &target.channel));
        }
    }
    let keys: BTreeSet<&str> = alerts.iter().map(|a| a.dedup_key.as_str()).collect();
    let keys: Vec<&str> = keys.into_iter().collect();
    let conn = ctx.db().await?;
    for chunk in keys.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT group_key, channel FROM alerts_members WHERE dedup_key IN ({})",
            marks.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(*key);
        }
        for row in query.fetch_all(&mut *conn).await.map_err(db_err)? {
            let key: String = row.try_get(0).map_err(db_err)?;
            let channel: String = row.try_get(1).map_err(db_err)?;
            ids.insert(lock_id(&key, &channel));
        }
    }
    lock_ids(conn, &ids).await
}

/// As [`lock_for`], for stored alerts known by key (a button's, a silence's).
pub async fn lock_for_keys(
    app: &Alerts,
    ctx: &mut Ctx<'_>,
    keys: &[String],
) -> Result<(), AppError> {
    if !lock(ctx) || keys.is_empty() {
        return Ok(());
    }
    let backend = ctx.store().backend();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    // A statement per few hundred keys (a storm's Acknowledge all may lock 10,000 alerts').
    let rows = super::state::load_many(ctx.db().await?, backend, &keys, false).await?;
    let alerts: Vec<&Alert> = rows.iter().map(|(_, r)| &r.alert).collect();
    lock_for(app, ctx, &alerts).await
}

const GROUP_COLUMNS: &str =
    "group_key, channel, label, active, last_flush_ms, flush_at, episodes, fold";

fn group_from_row(row: &AnyRow) -> Result<Group, AppError> {
    let fold: Option<String> = row.try_get(7).map_err(db_err)?;
    Ok(Group {
        key: row.try_get(0).map_err(db_err)?,
        channel: row.try_get(1).map_err(db_err)?,
        label: row.try_get(2).map_err(db_err)?,
        active: row.try_get(3).map_err(db_err)?,
        last_flush_ms: row.try_get(4).map_err(db_err)?,
        flush_at: row.try_get(5).map_err(db_err)?,
        episodes: row.try_get(6).map_err(db_err)?,
        fold: fold
            .map(|f| serde_json::from_str(&f))
            .transpose()
            .map_err(json_err)?,
    })
}

/// Groups per statement when reading by identity (each is two values and a condition).
const GROUPS_PER_READ: usize = 100;

/// The groups of `ids` that exist. With `lock` (PostgreSQL) they stay locked until the
/// transaction ends, taken in one order (key, channel), so two requests never wait for each
/// other's groups.
pub(super) async fn load_groups(
    conn: &mut AnyConnection,
    backend: Backend,
    ids: &[&GroupId],
    lock: bool,
) -> Result<Vec<Group>, AppError> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if lock {
        // Granted at once when `lock_for` took them already.
        let ids = sorted.iter().map(|(k, c)| lock_id(k, c)).collect();
        lock_ids(&mut *conn, &ids).await?;
    }
    let mut found = Vec::new();
    for chunk in sorted.chunks(GROUPS_PER_READ) {
        let mut marks = Placeholders::new(backend);
        let conditions: Vec<String> = chunk
            .iter()
            .map(|_| {
                let (key, channel) = (marks.mark(), marks.mark());
                format!("(group_key = {key} AND channel = {channel})")
            })
            .collect();
        let sql = format!(
            "SELECT {GROUP_COLUMNS} FROM alerts_groups WHERE {}
             ORDER BY group_key, channel{}",
            conditions.join(" OR "),
            if lock { " FOR UPDATE" } else { "" }
        );
        let mut query = sqlx::query(&sql);
        for (key, channel) in chunk {
            query = query.bind(key.as_str()).bind(channel.as_str());
        }
        for row in query.fetch_all(&mut *conn).await.map_err(db_err)? {
            found.push(group_from_row(&row)?);
        }
    }
    Ok(found)
}

/// Writes `groups` (new or changed); a group whose alerts are all resolved and that holds
/// none ends: its row goes, and the next alert starts it anew.
pub(super) async fn save_groups(
    conn: &mut AnyConnection,
    backend: Backend,
    groups: &[&Group],
) -> Result<(), AppError> {
    let (ended, kept): (Vec<&Group>, Vec<&Group>) = groups
        .iter()
        .partition(|g| g.active <= 0 && g.flush_at.is_none());
    for group in ended {
        sqlx::query("DELETE FROM alerts_groups WHERE group_key = $1 AND channel = $2")
            .bind(&group.key)
            .bind(&group.channel)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    }
    for chunk in kept.chunks(ROWS_PER_STATEMENT) {
        let mut marks = Placeholders::new(backend);
        let sql = format!(
            "INSERT INTO alerts_groups ({GROUP_COLUMNS}) VALUES {}
             ON CONFLICT (group_key, channel) DO UPDATE SET label = excluded.label,
               active = excluded.active, last_flush_ms = excluded.last_flush_ms,
               flush_at = excluded.flush_at, episodes = excluded.episodes, fold = excluded.fold",
            marks.rows(chunk.len(), 8)
        );
        let mut query = sqlx::query(&sql);
        for group in chunk {
            let fold = group
                .fold
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(json_err)?;
            query = query
                .bind(&group.key)
                .bind(&group.channel)
                .bind(&group.label)
                .bind(group.active)
                .bind(group.last_flush_ms)
                .bind(group.flush_at)
                .bind(group.episodes)
                .bind(fold);
        }
        query.execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(())
}

/// Every channel's member row of the alerts `keys`, as `(key, channel, member)`.
pub(super) async fn load_members(
    conn: &mut AnyConnection,
    backend: Backend,
    keys: &[&str],
) -> Result<Vec<(String, String, Member)>, AppError> {
    let mut found = Vec::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut marks = Placeholders::new(backend);
        let sql = format!(
            "SELECT dedup_key, channel, group_key, mode, fold_ref, notified_ms FROM alerts_members
             WHERE dedup_key IN ({})",
            marks.list(chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(*key);
        }
        for row in query.fetch_all(&mut *conn).await.map_err(db_err)? {
            let mode: String = row.try_get(3).map_err(db_err)?;
            found.push((
                row.try_get(0).map_err(db_err)?,
                row.try_get(1).map_err(db_err)?,
                Member {
                    group_key: row.try_get(2).map_err(db_err)?,
                    mode: Mode::parse(&mode),
                    fold_ref: row.try_get(4).map_err(db_err)?,
                    notified_ms: row.try_get(5).map_err(db_err)?,
                },
            ));
        }
    }
    Ok(found)
}

/// A storm's alerts: the members folded into the summary `fold_ref`, as `(key, channel,
/// group_key)`, in the order they joined.
pub(super) async fn folded_into(
    conn: &mut AnyConnection,
    fold_ref: &str,
) -> Result<Vec<(String, String, String)>, AppError> {
    let rows = sqlx::query(
        "SELECT dedup_key, channel, group_key FROM alerts_members
         WHERE fold_ref = $1 AND mode = 'folded' ORDER BY held_ms, dedup_key",
    )
    .bind(fold_ref)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0).map_err(db_err)?,
                row.try_get(1).map_err(db_err)?,
                row.try_get(2).map_err(db_err)?,
            ))
        })
        .collect()
}

/// Writes members as `(key, channel, member)`, each once; `held_ms` is set when a row is new.
pub(super) async fn save_members(
    conn: &mut AnyConnection,
    backend: Backend,
    members: &[(&str, &str, &Member)],
    now_ms: i64,
) -> Result<(), AppError> {
    for chunk in members.chunks(ROWS_PER_STATEMENT) {
        let mut marks = Placeholders::new(backend);
        let sql = format!(
            "INSERT INTO alerts_members
               (dedup_key, channel, group_key, mode, fold_ref, held_ms, notified_ms)
             VALUES {}
             ON CONFLICT (dedup_key, channel) DO UPDATE SET group_key = excluded.group_key,
               mode = excluded.mode, fold_ref = excluded.fold_ref,
               notified_ms = excluded.notified_ms",
            marks.rows(chunk.len(), 7)
        );
        let mut query = sqlx::query(&sql);
        for (key, channel, member) in chunk {
            query = query
                .bind(*key)
                .bind(*channel)
                .bind(&member.group_key)
                .bind(member.mode.as_str())
                .bind(member.fold_ref.clone())
                .bind(now_ms)
                .bind(member.notified_ms);
        }
        query.execute(&mut *conn).await.map_err(db_err)?;
    }
    Ok(())
}

// ---- the flow ----

/// A new firing alert (or one firing again after it was dropped): joins its group in each
/// target channel, and is posted, folded or held there.
pub async fn deliver(
    app: &Alerts,
    ctx: &mut Ctx<'_>,
    unit: &mut Unit,
    row: &AlertRow,
    targets: &[Target],
) -> Result<(), AppError> {
    for target in targets {
        join(app, ctx, unit, row, target).await?;
    }
    Ok(())
}

async fn join(
    app: &Alerts,
    ctx: &mut Ctx<'_>,
    unit: &mut Unit,
    row: &AlertRow,
    target: &Target,
) -> Result<(), AppError> {
    let now = ctx.now_ms();
    let id = (target.group_key.clone(), target.channel.clone());
    let mut group = unit.take_group(ctx, &id).await?.unwrap_or_else(|| Group {
        key: target.group_key.clone(),
        channel: target.channel.clone(),
        label: target.label.clone(),
        active: 0,
        last_flush_ms: None,
        flush_at: None,
        episodes: 0,
        fold: None,
    });
    group.active += 1;
    let send_now = match (group.last_flush_ms, group.flush_at) {
        // A flush is due: the alert goes with it.
        (_, Some(_)) => false,
        (None, None) => target.grouping.wait_ms == 0,
        (Some(last), None) => now >= last + target.grouping.interval_ms,
    };
    let emitted = if send_now {
        let emitted = emit(
            app,
            ctx,
            unit,
            &mut group,
            &target.grouping,
            row,
            &target.mentions,
        )
        .await;
        group.last_flush_ms = Some(now);
        emitted
    } else {
        if group.flush_at.is_none() {
            group.flush_at = Some(match group.last_flush_ms {
                None => now + target.grouping.wait_ms,
                Some(last) => last + target.grouping.interval_ms,
            });
        }
        let member = Member {
            group_key: group.key.clone(),
            mode: Mode::Held,
            fold_ref: None,
            notified_ms: now,
        };
        unit.save_member(&row.alert.dedup_key, &group.channel, member);
        Ok(())
    };
    unit.put_group(group);
    emitted
}

/// Posts the alert in the group's channel, or folds it into the group's storm.
async fn emit(
    app: &Alerts,
    ctx: &mut Ctx<'_>,
    unit: &mut Unit,
    group: &mut Group,
    grouping: &Grouping,
    row: &AlertRow,
    mentions: &str,
) -> Result<(), AppError> {
    let now = ctx.now_ms();
    let key = &row.alert.dedup_key;
    let member = if storm::should_fold(ctx, group, grouping).await? {
        let fold_ref = storm::fold_new(ctx, group, grouping, row).await?;
        Member {
            group_key: group.key.clone(),
            mode: Mode::Folded,
            fold_ref: Some(fold_ref),
            notified_ms: now,
        }
    } else {
        let message = app.message(row, mentions).map_err(super::render_err)?;
        ctx.post(
            &group.channel,
            message,
            None,
            Some(&ref_key(key, &group.channel)),
        );
        Member {
            group_key: group.key.clone(),
            mode: Mode::Posted,
            fold_ref: None,
            notified_ms: now,
        }
    };
    unit.save_member(key, &group.channel, member);
    Ok(())
}

/// What happened to an alert already known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Sent again while firing: a thread line only once per `repeat_interval`.
    Repeat,
    Ack,
    Resolve,
    /// Firing again after it was resolved.
    Reopen,
    /// A note, its status unchanged (a silence made or ended).
    Note,
}

/// The repeat interval in force in `channel` among an alert's `targets` (its route's there).
fn repeat_ms(targets: &[Target], channel: &str) -> i64 {
    targets
        .iter()
        .find(|t| t.channel == channel)
        .map_or(DEFAULT_REPEAT_MS, |t| t.grouping.repeat_ms)
}

/// Whether any of the alert's channels is due a repeat line (its `repeat_interval` has passed
/// since it was last told there).
pub async fn repeat_due(
    app: &Alerts,
    ctx: &mut Ctx<'_>,
    unit: &mut Unit,
    row: &AlertRow,
) -> Result<bool, AppError> {
    let now = ctx.now_ms();
    let targets = targets(app, &row.alert);
    for (channel, _) in &row.channels {
        let member = unit.member(ctx, &row.alert.dedup_key, channel).await?;
        let notified = member.map_or(0, |m| m.notified_ms);
        if now - notified >= repeat_ms(&targets, channel) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Shows a change of a known alert wherever it is: its own message edited with a thread line
/// (a repeat's line at most once per `repeat_interval`), or a line in its storm's thread and
/// the summary's counts; a held alert shows its state when its group flushes. In the storm
/// `quiet_fold` (one changed whole, by its summary's buttons) only the counts change: that
/// storm's thread gets one line for all its alerts.
#[allow(clippy::too_many_arguments)]
pub async fn edit_all(
    app: &Alerts,
    ctx: &mut Ctx<'_>,
    unit: &mut Unit,
    row: &AlertRow,
    line: &str,
    change: Change,
    previous: Status,
    quiet_fold: Option<&str>,
) -> Result<(), AppError> {
    let now = ctx.now_ms();
    let dedup_key = row.alert.dedup_key.clone();
    let targets = targets(app, &row.alert);
    // A silence in force is noted on the alert's own messages.
    let note = app.silence_note(ctx, unit, &row.alert).await?;
    for (channel, mentions) in &row.channels {
        let member = unit.member(ctx, &dedup_key, channel).await?;
        let Some(mut member) = member else {
            // Posted before groups existed: its own message, as then.
            let key = ref_key(&dedup_key, channel);
            let mut message = app.message(row, mentions).map_err(super::render_err)?;
            super::mute::add_note(&mut message, note.as_deref());
            ctx.update(channel, &key, message);
            ctx.post_in_thread_of(channel, &key, json!({ "text": line }));
            continue;
        };
        let id = (member.group_key.clone(), channel.clone());
        if member.mode == Mode::Dropped && change == Change::Reopen {
            // Never posted: it joins its group again as a new alert.
            if let Some(target) = targets.iter().find(|t| t.channel == *channel) {
                join(app, ctx, unit, row, target).await?;
            }
            continue;
        }
        let mut group = unit.take_group(ctx, &id).await?;
        let repeat_line = now - member.notified_ms >= repeat_ms(&targets, channel);
        let shown = match member.mode {
            Mode::Posted => {
                let key = ref_key(&dedup_key, channel);
                let mut message = app.message(row, mentions).map_err(super::render_err)?;
                super::mute::add_note(&mut message, note.as_deref());
                if change == Change::Repeat && !repeat_line {
                    ctx.update_latest(channel, &key, message)
                        .await
                        .map_err(AppError::from)
                } else {
                    ctx.update(channel, &key, message);
                    ctx.post_in_thread_of(channel, &key, json!({ "text": line }));
                    member.notified_ms = now;
                    Ok(())
                }
            }
            Mode::Folded if quiet_fold.is_some() && member.fold_ref.as_deref() == quiet_fold => {
                member.notified_ms = now;
                let fold_ref = member.fold_ref.as_deref().unwrap_or_default();
                storm::count_change(group.as_mut(), fold_ref, row, previous);
                Ok(())
            }
            Mode::Folded if change != Change::Repeat || repeat_line => {
                let fold_ref = member.fold_ref.clone().unwrap_or_default();
                member.notified_ms = now;
                storm::fold_change(ctx, group.as_mut(), channel, &fold_ref, row, line, previous)
                    .await
            }
            Mode::Held if change == Change::Resolve => {
                member.mode = Mode::Dropped;
                Ok(())
            }
            _ => Ok(()),
        };
        if let Some(mut group) = group {
            match change {
                Change::Resolve => group.active -= 1,
                Change::Reopen => group.active += 1,
                _ => {}
            }
            unit.put_group(group);
        }
        shown?;
        unit.save_member(&dedup_key, channel, member);
    }
    Ok(())
}

/// The app's tick: flushes the groups whose held alerts are due.
pub async fn flush_due(app: &Alerts, ctx: &mut Ctx<'_>, unit: &mut Unit) -> Result<(), AppError> {
    let now = ctx.now_ms();
    let due = sqlx::query(
        "SELECT group_key, channel FROM alerts_groups WHERE flush_at <= $1
         ORDER BY flush_at LIMIT $2",
    )
    .bind(now)
    .bind(FLUSH_PER_TICK)
    .fetch_all(ctx.store().reader())
    .await
    .map_err(db_err)?;
    let mut due_groups: Vec<GroupId> = Vec::with_capacity(due.len());
    for found in due {
        due_groups.push((
            found.try_get(0).map_err(db_err)?,
            found.try_get(1).map_err(db_err)?,
        ));
    }
    // All of them at once, locked in one order on PostgreSQL (see `lock_for`).
    unit.preload_groups(ctx, &due_groups).await?;
    for id in due_groups {
        let Some(mut group) = unit.take_group(ctx, &id).await? else {
            continue;
        };
        if group.flush_at.is_none_or(|at| at > now) {
            // Another replica flushed it first.
            unit.put_group_unchanged(group);
            continue;
        }
        let flushed = flush(app, ctx, unit, &mut group, now).await;
        let label = group.label.clone();
        unit.put_group(group);
        let posted = flushed?;
        if posted == 0 {
            continue;
        }
        let (key, channel) = id;
        ctx.audit(
            "alerts.flush",
            &format!("group:{key}"),
            Outcome::Ok,
            &format!("{posted} alert(s) of {label:?} to {channel}"),
        );
    }
    Ok(())
}

/// Posts (or folds) a due group's held alerts, oldest first; returns how many.
async fn flush(
    app: &Alerts,
    ctx: &mut Ctx<'_>,
    unit: &mut Unit,
    group: &mut Group,
    now: i64,
) -> Result<usize, AppError> {
    // The held members are read from the table: this unit has changed none of them (a member
    // is of one group, and each group is flushed once a tick).
    let held = sqlx::query(
        "SELECT dedup_key FROM alerts_members
         WHERE group_key = $1 AND channel = $2 AND mode = 'held' ORDER BY held_ms",
    )
    .bind(&group.key)
    .bind(&group.channel)
    .fetch_all(&mut *ctx.db().await?)
    .await
    .map_err(db_err)?;
    let keys: Vec<String> = held
        .iter()
        .map(|r| r.try_get::<String, _>(0).map_err(db_err))
        .collect::<Result<_, _>>()?;
    unit.preload_alerts(ctx, &keys.iter().map(String::as_str).collect::<Vec<_>>())
        .await?;
    let mut posted = 0;
    for dedup_key in &keys {
        let Some(row) = unit.alert(ctx, dedup_key).await? else {
            continue;
        };
        let mentions = row
            .channels
            .iter()
            .find(|(c, _)| *c == group.channel)
            .map(|(_, m)| m.clone())
            .unwrap_or_default();
        // The group's route's grouping (its members share it; the section's if the config
        // changed since they joined).
        let grouping = targets(app, &row.alert)
            .into_iter()
            .find(|t| t.channel == group.channel && t.group_key == group.key)
            .map_or_else(|| app.groupings.section.clone(), |t| t.grouping);
        emit(app, ctx, unit, group, &grouping, &row, &mentions).await?;
        posted += 1;
    }
    group.flush_at = None;
    group.last_flush_ms = Some(now);
    Ok(posted)
}
