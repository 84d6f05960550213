//! Muted alerts: a new alert that a silence in force or an inhibition rule mutes is stored —
//! its `alerts_alerts` row, with no channels yet, so it is findable and its updates are kept —
//! and held in `alerts_muted` with the channels it was routed to and why it is held. It is
//! posted (to those channels) when nothing mutes it any more and it is still not resolved:
//! when its silence ends (the tick, or ending it early) or its inhibiting alert resolves. A
//! held alert that resolves is dropped from the hold, never posted, as Alertmanager sends no
//! resolution for an alert it never notified.

use serde_json::{Value, json};
use switchyard_engine::sqlx::{self, AnyConnection, Row};
use switchyard_engine::{AppError, AppMigration, Ctx, Outcome, StoreError};

use super::intake::{Alert, Status};
use super::state::AlertRow;
use super::unit::Unit;
use super::{Alerts, silences};

pub const MIGRATIONS: [AppMigration; 3] = [
    AppMigration {
        version: 103,
        sqlite: "CREATE TABLE alerts_muted (
            dedup_key  TEXT PRIMARY KEY,
            silence_id INTEGER,
            rule       TEXT,
            source_key TEXT,
            channels   TEXT NOT NULL,
            since_ms   INTEGER NOT NULL
        )",
        postgres: "CREATE TABLE alerts_muted (
            dedup_key  TEXT PRIMARY KEY,
            silence_id BIGINT,
            rule       TEXT,
            source_key TEXT,
            channels   TEXT NOT NULL,
            since_ms   BIGINT NOT NULL
        )",
    },
    AppMigration {
        version: 104,
        sqlite: "CREATE INDEX alerts_muted_by_silence ON alerts_muted (silence_id)",
        postgres: "CREATE INDEX alerts_muted_by_silence ON alerts_muted (silence_id)",
    },
    AppMigration {
        version: 105,
        sqlite: "CREATE INDEX alerts_muted_by_source ON alerts_muted (source_key)",
        postgres: "CREATE INDEX alerts_muted_by_source ON alerts_muted (source_key)",
    },
];

/// Why an alert is held.
#[derive(Debug, Clone)]
pub enum Mute {
    Silenced(silences::Silence),
    Inhibited { rule: String, source_key: String },
}

impl Mute {
    fn words(&self) -> String {
        match self {
            Self::Silenced(s) => format!("silenced by silence #{} ({})", s.id, s.matchers_text()),
            Self::Inhibited { rule, source_key } => {
                format!("inhibited by alert {source_key} (rule {rule:?})")
            }
        }
    }

    fn json(&self) -> Value {
        match self {
            Self::Silenced(s) => json!({"silence": s.id}),
            Self::Inhibited { rule, source_key } => {
                json!({"inhibit_rule": rule, "inhibited_by": source_key})
            }
        }
    }
}

fn db_err(e: sqlx::Error) -> AppError {
    AppError::Store(StoreError::Query {
        op: "alerts muted",
        source: e,
    })
}

type Channels = Vec<(String, String)>;

async fn held_channels(conn: &mut AnyConnection, key: &str) -> Result<Option<Channels>, AppError> {
    let row = sqlx::query("SELECT channels FROM alerts_muted WHERE dedup_key = $1")
        .bind(key.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let text: String = row.try_get(0).map_err(db_err)?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|_| AppError::Internal("an unreadable alerts_muted row".into()))
}

async fn hold_row(
    conn: &mut AnyConnection,
    key: &str,
    mute: &Mute,
    channels: &Channels,
    now_ms: i64,
) -> Result<(), AppError> {
    let (silence, rule, source) = match mute {
        Mute::Silenced(s) => (Some(s.id), None, None),
        Mute::Inhibited { rule, source_key } => {
            (None, Some(rule.clone()), Some(source_key.clone()))
        }
    };
    let channels =
        serde_json::to_string(channels).map_err(|e| AppError::Internal(e.to_string()))?;
    sqlx::query(
        "INSERT INTO alerts_muted (dedup_key, silence_id, rule, source_key, channels, since_ms)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (dedup_key) DO UPDATE SET silence_id = excluded.silence_id,
           rule = excluded.rule, source_key = excluded.source_key",
    )
    .bind(key.to_string())
    .bind(silence)
    .bind(rule)
    .bind(source)
    .bind(channels)
    .bind(now_ms)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn unhold(conn: &mut AnyConnection, key: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM alerts_muted WHERE dedup_key = $1")
        .bind(key.to_string())
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

async fn keys_where(
    conn: &mut AnyConnection,
    column: &str,
    value: sqlx::any::AnyArguments<'_>,
) -> Result<Vec<String>, AppError> {
    let rows = sqlx::query_with(
        &format!("SELECT dedup_key FROM alerts_muted WHERE {column} = $1 ORDER BY since_ms"),
        value,
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(db_err))
        .collect()
}

fn one_arg<'q, T>(value: T) -> sqlx::any::AnyArguments<'q>
where
    T: 'q + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Arguments;
    let mut args = sqlx::any::AnyArguments::default();
    // Encoding an i64 or a String cannot fail.
    let _ = args.add(value);
    args
}

/// The keys of the alerts `silence_id` holds now (oldest first).
pub async fn held_by_silence(
    conn: &mut AnyConnection,
    silence_id: i64,
) -> Result<Vec<String>, AppError> {
    keys_where(conn, "silence_id", one_arg(silence_id)).await
}

/// `/metrics` lines: silences in force, and alerts held by a silence or an inhibit rule.
pub async fn metrics(store: &switchyard_engine::Store, now_ms: i64) -> String {
    let count = |sql: &'static str| async move {
        let mut query = sqlx::query(sql);
        if sql.contains("$1") {
            query = query.bind(now_ms);
        }
        query
            .fetch_one(store.reader())
            .await
            .ok()
            .and_then(|row| row.try_get::<i64, _>(0).ok())
    };
    let (Some(silences), Some(silenced), Some(inhibited)) = (
        count("SELECT COUNT(*) FROM alerts_silences WHERE starts_ms <= $1 AND ends_ms > $1").await,
        count("SELECT COUNT(*) FROM alerts_muted WHERE silence_id IS NOT NULL").await,
        count("SELECT COUNT(*) FROM alerts_muted WHERE rule IS NOT NULL").await,
    ) else {
        return String::new();
    };
    format!(
        "# HELP switchyard_alerts_silences_active Silences in force\n\
         # TYPE switchyard_alerts_silences_active gauge\n\
         switchyard_alerts_silences_active {silences}\n\
         # HELP switchyard_alerts_held Alerts stored but not posted, by why\n\
         # TYPE switchyard_alerts_held gauge\n\
         switchyard_alerts_held{{reason=\"silenced\"}} {silenced}\n\
         switchyard_alerts_held{{reason=\"inhibited\"}} {inhibited}\n"
    )
}

/// Adds "silenced by … until …" to a rendered message, above its last context line.
pub fn add_note(message: &mut Value, note: Option<&str>) {
    let (Some(note), Some(blocks)) = (note, message["blocks"].as_array_mut()) else {
        return;
    };
    let at = match blocks.last() {
        Some(last) if last["type"] == "context" => blocks.len() - 1,
        _ => blocks.len(),
    };
    blocks.insert(
        at,
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]}),
    );
    blocks.truncate(50);
}

impl Alerts {
    /// What mutes `alert` now, if anything: a silence in force (the oldest), else an
    /// inhibition rule.
    pub(super) async fn mute_for(
        &self,
        ctx: &mut Ctx<'_>,
        unit: &mut Unit,
        alert: &Alert,
    ) -> Result<Option<Mute>, AppError> {
        if let Some(s) = unit.silences(ctx).await?.iter().find(|s| s.matches(alert)) {
            return Ok(Some(Mute::Silenced(s.clone())));
        }
        if self.inhibit.is_empty() {
            return Ok(None);
        }
        Ok(unit
            .inhibited_by(ctx, &self.inhibit, alert)
            .await?
            .map(|(rule, source_key)| Mute::Inhibited { rule, source_key }))
    }

    /// Stores a new alert without posting it, held for `mute`; the API's answer for it.
    pub(super) async fn hold(
        &self,
        ctx: &mut Ctx<'_>,
        unit: &mut Unit,
        mut row: AlertRow,
        mute: Mute,
    ) -> Result<Value, AppError> {
        let now = ctx.now_ms();
        let key = row.alert.dedup_key.clone();
        let routed = std::mem::take(&mut row.channels);
        hold_row(ctx.db().await?, &key, &mute, &routed, now).await?;
        unit.save_alert(row.clone());
        self.after_save(ctx, unit, &row).await?;
        let channels: Vec<&str> = routed.iter().map(|(c, _)| c.as_str()).collect();
        ctx.audit(
            "alerts.mute",
            &format!("alert:{key}"),
            Outcome::Ok,
            &format!(
                "{} {:?} {}; not posted to {}",
                row.alert.severity.as_str(),
                row.alert.title,
                mute.words(),
                if channels.is_empty() {
                    "any channel".to_string()
                } else {
                    channels.join(", ")
                }
            ),
        );
        let result = match mute {
            Mute::Silenced(_) => "silenced",
            Mute::Inhibited { .. } => "inhibited",
        };
        Ok(json!({"dedup_key": key, "result": result, "channels": [], "muted": mute.json()}))
    }

    /// After an alert's row is saved: keeps the inhibition sources up to date, and when it
    /// resolved, drops its own hold and lets go of the alerts it inhibited.
    pub(super) async fn after_save(
        &self,
        ctx: &mut Ctx<'_>,
        unit: &mut Unit,
        row: &AlertRow,
    ) -> Result<(), AppError> {
        let resolved = row.status == Status::Resolved;
        if !self.inhibit.is_empty() {
            unit.track_inhibitor(&self.inhibit, &row.alert, resolved);
        }
        if resolved {
            if row.channels.is_empty() {
                unhold(ctx.db().await?, &row.alert.dedup_key).await?;
            }
            if !self.inhibit.is_empty() {
                self.release_inhibited(ctx, unit, &row.alert.dedup_key)
                    .await?;
            }
        }
        Ok(())
    }

    /// Looks again at the alerts `silence_id` held; returns how many were posted.
    pub(super) async fn release_silenced(
        &self,
        ctx: &mut Ctx<'_>,
        unit: &mut Unit,
        silence_id: i64,
    ) -> Result<usize, AppError> {
        let keys = keys_where(ctx.db().await?, "silence_id", one_arg(silence_id)).await?;
        let why = format!("silence #{silence_id} ended");
        self.recheck_all(ctx, unit, keys, &why).await
    }

    async fn release_inhibited(
        &self,
        ctx: &mut Ctx<'_>,
        unit: &mut Unit,
        source_key: &str,
    ) -> Result<usize, AppError> {
        let keys = keys_where(
            ctx.db().await?,
            "source_key",
            one_arg(source_key.to_string()),
        )
        .await?;
        let why = format!("alert {source_key} resolved");
        self.recheck_all(ctx, unit, keys, &why).await
    }

    async fn recheck_all(
        &self,
        ctx: &mut Ctx<'_>,
        unit: &mut Unit,
        keys: Vec<String>,
        why: &str,
    ) -> Result<usize, AppError> {
        // Their groups locked first, in one order (`groups::lock_for`).
        super::groups::lock_for_keys(self, ctx, &keys).await?;
        unit.preload_alerts(ctx, &keys.iter().map(String::as_str).collect::<Vec<_>>())
            .await?;
        let mut posted = 0;
        for key in keys {
            if self.recheck(ctx, unit, &key, why).await? {
                posted += 1;
            }
        }
        Ok(posted)
    }

    /// A held alert: posted now if nothing mutes it and it is not resolved (`true`), held
    /// for the next reason otherwise, dropped from the hold if resolved.
    async fn recheck(
        &self,
        ctx: &mut Ctx<'_>,
        unit: &mut Unit,
        key: &str,
        why: &str,
    ) -> Result<bool, AppError> {
        let Some(mut row) = unit.alert(ctx, key).await? else {
            unhold(ctx.db().await?, key).await?;
            return Ok(false);
        };
        let Some(routed) = held_channels(ctx.db().await?, key).await? else {
            return Ok(false);
        };
        if row.status == Status::Resolved {
            unhold(ctx.db().await?, key).await?;
            return Ok(false);
        }
        if let Some(mute) = self.mute_for(ctx, unit, &row.alert).await? {
            let now = ctx.now_ms();
            hold_row(ctx.db().await?, key, &mute, &routed, now).await?;
            return Ok(false);
        }
        row.channels = routed;
        // Posted as a new alert is: grouped, and folded in a storm (`groups`).
        let targets: Vec<super::groups::Target> = super::groups::targets(self, &row.alert)
            .into_iter()
            .filter(|t| row.channels.iter().any(|(c, _)| *c == t.channel))
            .collect();
        super::groups::deliver(self, ctx, unit, &row, &targets).await?;
        unhold(ctx.db().await?, key).await?;
        let channels: Vec<&str> = row.channels.iter().map(|(c, _)| c.as_str()).collect();
        let detail = format!(
            "{} {:?} to {} ({why}; it was held)",
            row.alert.severity.as_str(),
            row.alert.title,
            if channels.is_empty() {
                "no channel".to_string()
            } else {
                channels.join(", ")
            }
        );
        unit.save_alert(row);
        ctx.audit("alerts.fire", &format!("alert:{key}"), Outcome::Ok, &detail);
        Ok(true)
    }

    /// "Silenced by … until …" for a message of an alert a silence in force matches.
    pub(super) async fn silence_note(
        &self,
        ctx: &mut Ctx<'_>,
        unit: &mut Unit,
        alert: &Alert,
    ) -> Result<Option<String>, AppError> {
        let in_force = unit.silences(ctx).await?;
        Ok(in_force.iter().find(|s| s.matches(alert)).map(|s| {
            format!(
                ":mute: Silenced by {} until {} (silence `#{}`)",
                silences::who(&s.created_by),
                silences::slack_time(s.ends_ms),
                s.id
            )
        }))
    }

    /// A silence of one alert (the Silence menu's) that ended: that alert's messages lose
    /// their "Silenced by …" note and their threads say so. (A silence by other matchers
    /// never added a note to a message it did not make.)
    pub(super) async fn note_silence_ended(
        &self,
        ctx: &mut Ctx<'_>,
        unit: &mut Unit,
        silence: &silences::Silence,
    ) -> Result<(), AppError> {
        let [only] = silence.matchers.as_slice() else {
            return Ok(());
        };
        if only.name != "dedup_key" || only.op != super::matchers::Op::Equal {
            return Ok(());
        }
        super::groups::lock_for_keys(self, ctx, std::slice::from_ref(&only.value)).await?;
        let Some(row) = unit.alert(ctx, &only.value).await? else {
            return Ok(());
        };
        if row.status == Status::Resolved || row.channels.is_empty() {
            return Ok(());
        }
        let line = format!(":loud_sound: Silence `#{}` ended.", silence.id);
        self.edit_all(
            ctx,
            unit,
            &row,
            &line,
            super::groups::Change::Note,
            row.status,
        )
        .await
    }

    /// Alerts held by an inhibit rule the config no longer has (after a reload, or a restart
    /// with another config): looked at again, so they are posted or held for what mutes them
    /// now.
    async fn release_orphans(&self, ctx: &mut Ctx<'_>, unit: &mut Unit) -> Result<(), AppError> {
        let rows = sqlx::query("SELECT dedup_key, rule FROM alerts_muted WHERE rule IS NOT NULL")
            .fetch_all(ctx.store().reader())
            .await
            .map_err(db_err)?;
        let mut orphans = Vec::new();
        for row in &rows {
            let rule: String = row.try_get(1).map_err(db_err)?;
            if !self.inhibit.has_rule(&rule) {
                orphans.push(row.try_get::<String, _>(0).map_err(db_err)?);
            }
        }
        if orphans.is_empty() {
            return Ok(());
        }
        let count = orphans.len();
        let posted = self
            .recheck_all(
                ctx,
                unit,
                orphans,
                "its inhibit rule is no longer configured",
            )
            .await?;
        ctx.audit(
            "alerts.unmute",
            "inhibit_rules",
            Outcome::Ok,
            &format!(
                "{count} alert(s) held by removed inhibit rules looked at again; {posted} posted"
            ),
        );
        Ok(())
    }

    /// The tick: silences that ended since the last look let go of their alerts. Reads
    /// first, outside a transaction, so a quiet tick writes nothing.
    pub(super) async fn tick_silences(&self, ctx: &mut Ctx<'_>) -> Result<(), AppError> {
        let mut unit = Unit::new(ctx);
        if self.inhibit.first_look_at_orphans() {
            self.release_orphans(ctx, &mut unit).await?;
        }
        let now = ctx.now_ms();
        let ended = silences::ended_unreleased(ctx.store().reader(), now).await?;
        for id in ended {
            if !silences::take_release(ctx.db().await?, id).await? {
                continue;
            }
            let posted = self.release_silenced(ctx, &mut unit, id).await?;
            if let Some(silence) = silences::get(ctx.db().await?, id).await? {
                self.note_silence_ended(ctx, &mut unit, &silence).await?;
            }
            if posted > 0 {
                ctx.audit(
                    "alerts.unmute",
                    &format!("silence:{id}"),
                    Outcome::Ok,
                    &format!("silence #{id} ended; {posted} held alert(s) posted"),
                );
            }
        }
        unit.write(ctx).await
    }
}
