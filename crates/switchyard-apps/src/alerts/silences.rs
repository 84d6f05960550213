//! Silences, as Alertmanager users know them: matchers, a start and an end, who made it and
//! why. An alert a silence matches while it is in force is stored (findable, counted) but not
//! posted ([`super::mute`]); when the silence ends — at its time, or expired early — the
//! alerts it held that are still firing are posted at once (Alertmanager notifies them at the
//! next evaluation; here that is the app's next tick, within a second).
//!
//! Made and ended from the API (`/api/v1/silences`, scope `alerts:silence`), from the alert
//! message's Silence menu (1h/4h/24h: a silence of that alert, `dedup_key="…"`) and with
//! `@switchyard silence …`, `silences`, `unsilence <id>`; all of it audited. Kept in
//! `alerts_silences`; ended ones stay there (listed for five days after they end, as
//! Alertmanager keeps them).

use serde_json::{Value, json};
use switchyard_engine::admin::{format_ms, parse_duration_ms};
use switchyard_engine::sqlx::{self, AnyConnection, Row};
use switchyard_engine::{
    AppError, AppMigration, Ctx, HttpReply, HttpRequest, MentionCommand, MessageEvent, Outcome,
    StoreError,
};

use super::Alerts;
use super::blocks;
use super::intake::{Alert, parse_rfc3339_ms};
use super::matchers::{self, Matcher, Op};
use super::unit::Unit;

pub const SILENCES_PATH: &str = "/api/v1/silences";
pub const SCOPE: &str = "alerts:silence";
pub const SILENCE_ACTION: &str = "alerts_silence";
/// The Silence menu's choices.
pub const MENU_DURATIONS: [&str; 3] = ["1h", "4h", "24h"];
/// Ended silences are listed this long after they end.
const LISTED_AFTER_END_MS: i64 = 5 * 86_400_000;
const MAX_LISTED: i64 = 500;
const MAX_COMMENT: usize = 1_000;
const MAX_MATCHERS: usize = 32;
/// 9999-12-31T23:59:59.999Z: times past it have no RFC 3339 form.
const LAST_MS: i64 = 253_402_300_799_999;

pub const MIGRATIONS: [AppMigration; 1] = [AppMigration {
    version: 100,
    sqlite: "CREATE TABLE alerts_silences (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        matchers    TEXT NOT NULL,
        starts_ms   INTEGER NOT NULL,
        ends_ms     INTEGER NOT NULL,
        created_by  TEXT NOT NULL,
        comment     TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        expired_by  TEXT,
        released    INTEGER NOT NULL DEFAULT 0
    )",
    postgres: "CREATE TABLE alerts_silences (
        id          BIGSERIAL PRIMARY KEY,
        matchers    TEXT NOT NULL,
        starts_ms   BIGINT NOT NULL,
        ends_ms     BIGINT NOT NULL,
        created_by  TEXT NOT NULL,
        comment     TEXT NOT NULL,
        created_ms  BIGINT NOT NULL,
        expired_by  TEXT,
        released    BIGINT NOT NULL DEFAULT 0
    )",
}];

pub fn mention_commands() -> Vec<MentionCommand> {
    vec![
        MentionCommand {
            word: "silence",
            help: "`silence team=db alertname=~\"Disk.*\" for 2h [comment]` — mute matching alerts",
        },
        MentionCommand {
            word: "silences",
            help: "`silences` — the silences in force and those ended lately",
        },
        MentionCommand {
            word: "unsilence",
            help: "`unsilence <id>` — end a silence now",
        },
    ]
}

#[derive(Debug, Clone)]
pub struct Silence {
    pub id: i64,
    pub matchers: Vec<Matcher>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub created_by: String,
    pub comment: String,
    pub created_ms: i64,
    pub expired_by: Option<String>,
}

impl Silence {
    pub fn state(&self, now_ms: i64) -> &'static str {
        if now_ms >= self.ends_ms {
            "expired"
        } else if now_ms < self.starts_ms {
            "pending"
        } else {
            "active"
        }
    }

    pub fn in_force(&self, now_ms: i64) -> bool {
        self.state(now_ms) == "active"
    }

    pub fn matches(&self, alert: &Alert) -> bool {
        matchers::all_match(&self.matchers, alert)
    }

    pub fn matchers_text(&self) -> String {
        self.matchers
            .iter()
            .map(Matcher::text)
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn json(&self, now_ms: i64) -> Value {
        json!({
            "id": self.id,
            "matchers": matchers_json(&self.matchers),
            "matchers_text": self.matchers_text(),
            "startsAt": format_ms(self.starts_ms),
            "endsAt": format_ms(self.ends_ms),
            "createdBy": self.created_by,
            "comment": self.comment,
            "createdAt": format_ms(self.created_ms),
            "expiredBy": self.expired_by,
            "status": {"state": self.state(now_ms)},
        })
    }

    /// One line for Slack: `#3 team="db" until <date> by <@U…> — comment`.
    pub fn slack_line(&self, now_ms: i64) -> String {
        let mut line = format!(
            "`#{}` {} · {} {} · by {}",
            self.id,
            blocks::escape(&self.matchers_text()),
            match self.state(now_ms) {
                "pending" => "from",
                "active" => "until",
                _ => "ended",
            },
            slack_time(if self.state(now_ms) == "pending" {
                self.starts_ms
            } else {
                self.ends_ms
            }),
            who(&self.created_by)
        );
        if !self.comment.is_empty() {
            line.push_str(&format!(" — {}", blocks::escape(&self.comment)));
        }
        if let Some(by) = &self.expired_by {
            line.push_str(&format!(" (ended early by {})", who(by)));
        }
        line
    }
}

/// A Slack user id as a mention; anything else (a token's name) as text.
pub fn who(creator: &str) -> String {
    let is_user = creator.len() > 1
        && (creator.starts_with('U') || creator.starts_with('W'))
        && creator
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if is_user {
        format!("<@{creator}>")
    } else {
        blocks::escape(creator)
    }
}

/// `<!date^…>`: each reader sees their own time zone.
pub fn slack_time(ms: i64) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{} UTC>",
        ms.div_euclid(1000),
        super::intake_time_words(ms)
    )
}

fn matchers_json(list: &[Matcher]) -> Value {
    Value::Array(
        list.iter()
            .map(|m| {
                json!({"name": m.name, "value": m.value, "isRegex": m.op.is_regex(),
                       "isEqual": m.op.is_equal()})
            })
            .collect(),
    )
}

/// Matchers as the API takes them: Alertmanager's objects, strings (`team="db"`), or one
/// string with several. `field` names the place in an error.
pub fn matchers_from_json(value: &Value, field: &str) -> Result<Vec<Matcher>, (String, String)> {
    let bad = |f: String, r: String| (f, r);
    match value {
        Value::String(text) => matchers::parse(text).map_err(|e| bad(field.into(), e)),
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let at = format!("{field}[{i}]");
                match item {
                    Value::String(text) => {
                        out.extend(matchers::parse(text).map_err(|e| bad(at.clone(), e))?)
                    }
                    Value::Object(o) => {
                        let name = o
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| bad(format!("{at}.name"), "is required".into()))?;
                        let value = match o.get("value") {
                            Some(Value::String(v)) => v.as_str(),
                            None | Some(Value::Null) => "",
                            _ => return Err(bad(format!("{at}.value"), "must be a string".into())),
                        };
                        let flag = |key: &str, default: bool| match o.get(key) {
                            None | Some(Value::Null) => Ok(default),
                            Some(Value::Bool(b)) => Ok(*b),
                            _ => Err(bad(format!("{at}.{key}"), "must be true or false".into())),
                        };
                        let op = Op::from_flags(flag("isRegex", false)?, flag("isEqual", true)?);
                        out.push(Matcher::new(name, op, value).map_err(|e| bad(at.clone(), e))?);
                    }
                    _ => {
                        return Err(bad(
                            at,
                            "must be a matcher object or a string like team=\"db\"".into(),
                        ));
                    }
                }
            }
            Ok(out)
        }
        Value::Null => Err(bad(field.into(), "is required".into())),
        _ => Err(bad(
            field.into(),
            "must be an array of matchers or a string".into(),
        )),
    }
}

/// What every new silence must be: some matchers, at least one of which does not match an
/// empty value (so no silence mutes every alert by accident, as in Alertmanager), and an end
/// after its start and after now.
pub fn check_new(
    matchers: &[Matcher],
    starts_ms: i64,
    ends_ms: i64,
    now_ms: i64,
) -> Result<(), (String, String)> {
    if matchers.is_empty() {
        return Err(("matchers".into(), "at least one matcher is required".into()));
    }
    if matchers.len() > MAX_MATCHERS {
        return Err(("matchers".into(), format!("at most {MAX_MATCHERS}")));
    }
    if matchers.iter().all(|m| m.matches_value("")) {
        return Err((
            "matchers".into(),
            "at least one matcher must not match an empty value (this would silence every alert)"
                .into(),
        ));
    }
    if ends_ms <= starts_ms {
        return Err(("endsAt".into(), "must be after startsAt".into()));
    }
    if ends_ms <= now_ms {
        return Err(("endsAt".into(), "must be in the future".into()));
    }
    if ends_ms > LAST_MS {
        return Err(("endsAt".into(), "must be before the year 10000".into()));
    }
    Ok(())
}

fn db_err(e: sqlx::Error) -> AppError {
    AppError::Store(StoreError::Query {
        op: "alerts silences",
        source: e,
    })
}

const COLUMNS: &str =
    "id, matchers, starts_ms, ends_ms, created_by, comment, created_ms, expired_by";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Silence, AppError> {
    let text: String = row.try_get(1).map_err(db_err)?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|_| AppError::Internal("an unreadable alerts_silences row".into()))?;
    let matchers = matchers_from_json(&value, "matchers")
        .map_err(|(_, e)| AppError::Internal(format!("an unreadable alerts_silences row: {e}")))?;
    Ok(Silence {
        id: row.try_get(0).map_err(db_err)?,
        matchers,
        starts_ms: row.try_get(2).map_err(db_err)?,
        ends_ms: row.try_get(3).map_err(db_err)?,
        created_by: row.try_get(4).map_err(db_err)?,
        comment: row.try_get(5).map_err(db_err)?,
        created_ms: row.try_get(6).map_err(db_err)?,
        expired_by: row.try_get(7).map_err(db_err)?,
    })
}

pub async fn insert(
    conn: &mut AnyConnection,
    matchers: Vec<Matcher>,
    starts_ms: i64,
    ends_ms: i64,
    created_by: &str,
    comment: &str,
    now_ms: i64,
) -> Result<Silence, AppError> {
    let row = sqlx::query(
        "INSERT INTO alerts_silences
           (matchers, starts_ms, ends_ms, created_by, comment, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(matchers_json(&matchers).to_string())
    .bind(starts_ms)
    .bind(ends_ms)
    .bind(created_by.to_string())
    .bind(comment.to_string())
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(Silence {
        id: row.try_get(0).map_err(db_err)?,
        matchers,
        starts_ms,
        ends_ms,
        created_by: created_by.to_string(),
        comment: comment.to_string(),
        created_ms: now_ms,
        expired_by: None,
    })
}

/// The silences in force now.
pub async fn in_force(conn: &mut AnyConnection, now_ms: i64) -> Result<Vec<Silence>, AppError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alerts_silences WHERE starts_ms <= $1 AND ends_ms > $1 ORDER BY id"
    ))
    .bind(now_ms)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter().map(from_row).collect()
}

/// Pending, active and lately ended silences, newest first.
pub async fn listed(conn: &mut AnyConnection, now_ms: i64) -> Result<Vec<Silence>, AppError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alerts_silences WHERE ends_ms > $1 ORDER BY id DESC LIMIT {MAX_LISTED}"
    ))
    .bind(now_ms - LISTED_AFTER_END_MS)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    rows.iter().map(from_row).collect()
}

pub async fn get(conn: &mut AnyConnection, id: i64) -> Result<Option<Silence>, AppError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM alerts_silences WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    row.as_ref().map(from_row).transpose()
}

/// Ends a silence now. `Ok(None)`: no such silence, or it had already ended.
async fn end_now(
    conn: &mut AnyConnection,
    id: i64,
    by: &str,
    now_ms: i64,
) -> Result<Option<Silence>, AppError> {
    let done = sqlx::query(
        "UPDATE alerts_silences SET ends_ms = $2, starts_ms = CASE WHEN starts_ms > $2 THEN $2
           ELSE starts_ms END, expired_by = $3, released = 1
         WHERE id = $1 AND ends_ms > $2",
    )
    .bind(id)
    .bind(now_ms)
    .bind(by.to_string())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    get(conn, id).await
}

/// Ended silences whose alerts have not been looked at again since (the tick's work).
pub async fn ended_unreleased(pool: &sqlx::AnyPool, now_ms: i64) -> Result<Vec<i64>, AppError> {
    let rows = sqlx::query(
        "SELECT id FROM alerts_silences WHERE released = 0 AND ends_ms <= $1 ORDER BY id LIMIT 100",
    )
    .bind(now_ms)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| r.try_get::<i64, _>(0).map_err(db_err))
        .collect()
}

/// Marks an ended silence released; `false` if another replica (or an earlier tick) did.
pub async fn take_release(conn: &mut AnyConnection, id: i64) -> Result<bool, AppError> {
    let done =
        sqlx::query("UPDATE alerts_silences SET released = 1 WHERE id = $1 AND released = 0")
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

/// An error naming the field, as the alert intake's.
fn bad_request(field: &str, reason: &str) -> HttpReply {
    HttpReply {
        status: 400,
        body: json!({"ok": false, "error": "invalid_silence", "field": field, "detail": reason}),
    }
}

/// `2h`, `30m`, `1d` (or `1h30m`) in ms.
pub fn parse_duration(text: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_end = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .map_or(rest.len(), |at| digits + at);
        total = total.checked_add(parse_duration_ms(&rest[..unit_end])?)?;
        rest = &rest[unit_end..];
    }
    (total > 0).then_some(total)
}

impl Alerts {
    /// `/api/v1/silences[/<id>]`: `GET` lists, `POST` creates, `GET /<id>` shows,
    /// `DELETE /<id>` ends one now.
    pub(super) async fn serve_silences(
        &self,
        ctx: &mut Ctx<'_>,
        request: &HttpRequest,
        path: &str,
    ) -> Result<HttpReply, AppError> {
        let token_name = match crate::api_token::verify(ctx, request, SCOPE).await? {
            Ok(name) => name,
            Err(refused) => return Ok(refused),
        };
        let now = ctx.now_ms();
        let id_text = path
            .strip_prefix(SILENCES_PATH)
            .unwrap_or("")
            .trim_start_matches('/');
        let id = if id_text.is_empty() {
            None
        } else {
            match id_text.parse::<i64>() {
                Ok(id) => Some(id),
                Err(_) => return Ok(bad_request("id", "a silence id is a number")),
            }
        };
        match (request.method.as_str(), id) {
            ("GET", None) => {
                let list = listed(ctx.db().await?, now).await?;
                let list: Vec<Value> = list.iter().map(|s| s.json(now)).collect();
                Ok(HttpReply::ok(json!({"ok": true, "silences": list})))
            }
            ("GET", Some(id)) => match get(ctx.db().await?, id).await? {
                Some(s) => {
                    let held = super::mute::held_by_silence(ctx.db().await?, id).await?;
                    Ok(HttpReply::ok(
                        json!({"ok": true, "silence": s.json(now), "held_alerts": held}),
                    ))
                }
                None => Ok(HttpReply::error(404, "silence_not_found")),
            },
            ("POST", None) => {
                let body: Value = match serde_json::from_str(&request.body) {
                    Ok(v @ Value::Object(_)) => v,
                    Ok(_) => return Ok(bad_request("body", "must be a JSON object")),
                    Err(e) => return Ok(bad_request("body", &format!("not JSON: {e}"))),
                };
                let parsed = parse_new(&body, now, &token_name);
                let (matchers, starts, ends, by, comment) = match parsed {
                    Ok(p) => p,
                    Err((field, reason)) => return Ok(bad_request(&field, &reason)),
                };
                let silence = self
                    .create_silence(ctx, matchers, starts, ends, &by, &comment)
                    .await?;
                Ok(HttpReply::ok(
                    json!({"ok": true, "silence": silence.json(now)}),
                ))
            }
            ("DELETE", Some(id)) => match self.end_silence(ctx, id, &token_name).await? {
                Ended::Now(s) => Ok(HttpReply::ok(json!({"ok": true, "silence": s.json(now)}))),
                Ended::Already(_) => Ok(HttpReply::error(409, "silence_already_expired")),
                Ended::Unknown => Ok(HttpReply::error(404, "silence_not_found")),
            },
            ("POST" | "DELETE", _) => Ok(HttpReply::error(404, "not_found")),
            _ => Ok(HttpReply::error(405, "method_not_allowed")),
        }
    }

    /// Stores a silence and audits it. Alerts already posted stay as they are (their later
    /// changes still edit their messages); new ones it matches are held.
    pub(super) async fn create_silence(
        &self,
        ctx: &mut Ctx<'_>,
        matchers: Vec<Matcher>,
        starts_ms: i64,
        ends_ms: i64,
        created_by: &str,
        comment: &str,
    ) -> Result<Silence, AppError> {
        let now = ctx.now_ms();
        let silence = insert(
            ctx.db().await?,
            matchers,
            starts_ms,
            ends_ms,
            created_by,
            comment,
            now,
        )
        .await?;
        ctx.audit(
            "alerts.silence",
            &format!("silence:{}", silence.id),
            Outcome::Ok,
            &format!(
                "{} from {} until {} by {}{}",
                silence.matchers_text(),
                format_ms(starts_ms),
                format_ms(ends_ms),
                created_by,
                if comment.is_empty() {
                    String::new()
                } else {
                    format!(": {comment}")
                }
            ),
        );
        Ok(silence)
    }

    /// Ends a silence now and posts the still-firing alerts it held (that nothing else mutes).
    pub(super) async fn end_silence(
        &self,
        ctx: &mut Ctx<'_>,
        id: i64,
        by: &str,
    ) -> Result<Ended, AppError> {
        let now = ctx.now_ms();
        let object = format!("silence:{id}");
        match end_now(ctx.db().await?, id, by, now).await? {
            Some(silence) => {
                let mut unit = Unit::new(ctx);
                let released = self.release_silenced(ctx, &mut unit, id).await?;
                self.note_silence_ended(ctx, &mut unit, &silence).await?;
                unit.write(ctx).await?;
                ctx.audit(
                    "alerts.unsilence",
                    &object,
                    Outcome::Ok,
                    &format!(
                        "{} ended early by {by}; {released} held alert(s) posted",
                        silence.matchers_text()
                    ),
                );
                Ok(Ended::Now(silence))
            }
            None => match get(ctx.db().await?, id).await? {
                Some(silence) => {
                    ctx.audit(
                        "alerts.unsilence",
                        &object,
                        Outcome::Failed,
                        "already expired",
                    );
                    Ok(Ended::Already(silence))
                }
                None => {
                    ctx.audit(
                        "alerts.unsilence",
                        &object,
                        Outcome::Failed,
                        "no such silence",
                    );
                    Ok(Ended::Unknown)
                }
            },
        }
    }

    /// The Silence menu: a silence of this one alert for the chosen time; the message says so
    /// and its thread gets a line.
    pub(super) async fn silence_button(
        &self,
        ctx: &mut Ctx<'_>,
        value: &str,
        user: &str,
        channel: Option<&str>,
    ) -> Result<(), AppError> {
        let (duration, key) = value.split_once(':').unwrap_or(("", value));
        let Some(ms) = parse_duration(duration) else {
            return Err(AppError::User(format!(
                "I can't read {duration:?} as a duration."
            )));
        };
        super::groups::lock_for_keys(self, ctx, &[key.to_string()]).await?;
        let mut unit = Unit::new(ctx);
        let Some(row) = unit.alert(ctx, key).await? else {
            ctx.audit(
                "alerts.silence",
                &format!("alert:{key}"),
                Outcome::Failed,
                "no such alert",
            );
            if let Some(channel) = channel {
                ctx.ephemeral(channel, user, "I don't know that alert any more.");
            }
            return Ok(());
        };
        let matcher = Matcher::new("dedup_key", Op::Equal, key)
            .map_err(|e| AppError::Internal(format!("a silence of alert {key}: {e}")))?;
        let now = ctx.now_ms();
        let ends = now.saturating_add(ms);
        if let Err((_, problem)) = check_new(std::slice::from_ref(&matcher), now, ends, now) {
            return Err(AppError::User(format!("That silence {problem}.")));
        }
        let silence = self
            .create_silence(
                ctx,
                vec![matcher],
                now,
                ends,
                user,
                &format!("from the alert's message in Slack ({duration})"),
            )
            .await?;
        let line = format!(
            ":mute: Silenced by <@{user}> until {} (silence `#{}`).",
            slack_time(silence.ends_ms),
            silence.id
        );
        // The unit reads the silences in force only now: the messages show the new one.
        self.edit_all(
            ctx,
            &mut unit,
            &row,
            &line,
            super::groups::Change::Note,
            row.status,
        )
        .await?;
        unit.write(ctx).await
    }

    /// `@switchyard silence …`, `silences`, `unsilence <id>`: answered in the thread.
    pub(super) async fn silence_mention(
        &self,
        ctx: &mut Ctx<'_>,
        command: &str,
        args: &[String],
        message: &MessageEvent,
    ) -> Result<(), AppError> {
        let now = ctx.now_ms();
        match command {
            "silences" => {
                let list = listed(ctx.db().await?, now).await?;
                let text = if list.is_empty() {
                    "No silences.".to_string()
                } else {
                    let shown: Vec<String> =
                        list.iter().take(20).map(|s| s.slack_line(now)).collect();
                    let more = if list.len() > 20 {
                        format!(
                            "\n_and {} more (see `GET /api/v1/silences`)_",
                            list.len() - 20
                        )
                    } else {
                        String::new()
                    };
                    format!("*Silences*\n{}{more}", shown.join("\n"))
                };
                ctx.reply(message, &blocks::cut(&text, 3_000));
            }
            "unsilence" => {
                let Some(id) = args
                    .first()
                    .map(|a| a.trim_start_matches('#'))
                    .and_then(|a| a.parse::<i64>().ok())
                else {
                    ctx.reply(message, "Usage: `unsilence <id>` (see `silences`).");
                    return Ok(());
                };
                let text = match self.end_silence(ctx, id, &message.user).await? {
                    Ended::Now(s) => format!(":loud_sound: Ended silence {}", s.slack_line(now)),
                    Ended::Already(_) => format!("Silence `#{id}` had already ended."),
                    Ended::Unknown => format!("There is no silence `#{id}`."),
                };
                ctx.reply(message, &text);
            }
            _ => {
                let text = after_command(&message.text, command);
                match parse_mention(&text, now) {
                    Err(problem) => {
                        ctx.reply(
                            message,
                            &format!(
                                "{}\nUsage: `silence team=db alertname=~\"Disk.*\" for 2h [comment]`",
                                blocks::escape(&problem)
                            ),
                        );
                    }
                    Ok((matchers, ends, comment)) => {
                        if let Err((_, problem)) = check_new(&matchers, now, ends, now) {
                            ctx.reply(message, &blocks::escape(&problem));
                            return Ok(());
                        }
                        let silence = self
                            .create_silence(ctx, matchers, now, ends, &message.user, &comment)
                            .await?;
                        ctx.reply(
                            message,
                            &format!(":mute: Silence {}", silence.slack_line(now)),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

/// How ending a silence went.
pub enum Ended {
    Now(Silence),
    Already(Silence),
    Unknown,
}

/// The message's text after the command word (the matchers need their quotes, which the
/// engine's argument splitting takes off).
fn after_command(text: &str, command: &str) -> String {
    let start = text.find('>').map_or(0, |at| at + 1);
    let rest = text[start..].trim_start();
    match rest.get(..command.len()) {
        Some(word) if word.eq_ignore_ascii_case(command) => rest[command.len()..].to_string(),
        _ => rest.to_string(),
    }
}

/// `team=db alertname=~"Disk.*" for 2h the comment` → matchers, end, comment. Slack sends
/// `&`, `<`, `>` escaped; they are read back first.
pub fn parse_mention(text: &str, now_ms: i64) -> Result<(Vec<Matcher>, i64, String), String> {
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let mut rest = text.trim();
    let mut found = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let word = rest.split_whitespace().next().unwrap_or("");
        if word.eq_ignore_ascii_case("for") {
            rest = &rest[3..];
            break;
        }
        if rest.is_empty() {
            return Err("Say for how long: `… for 2h`.".into());
        }
        let (matcher, after) = matchers::parse_next(rest)?;
        found.push(matcher);
        rest = after;
    }
    let rest = rest.trim_start();
    let duration = rest.split_whitespace().next().unwrap_or("");
    let ms = parse_duration(duration)
        .ok_or_else(|| format!("{duration:?} is not a duration (like 30m, 2h, 1d)."))?;
    let comment = rest[duration.len()..].trim();
    Ok((
        found,
        now_ms.saturating_add(ms),
        blocks::cut(comment, MAX_COMMENT),
    ))
}

/// The API's body: matchers, startsAt (default now), endsAt or duration, createdBy (default
/// the token's name), comment.
#[allow(clippy::type_complexity)]
fn parse_new(
    body: &Value,
    now_ms: i64,
    token_name: &str,
) -> Result<(Vec<Matcher>, i64, i64, String, String), (String, String)> {
    let bad = |f: &str, r: &str| (f.to_string(), r.to_string());
    let matchers = matchers_from_json(&body["matchers"], "matchers")?;
    let time = |key: &str| -> Result<Option<i64>, (String, String)> {
        match &body[key] {
            Value::Null => Ok(None),
            Value::String(s) => parse_rfc3339_ms(s)
                .map(Some)
                .ok_or_else(|| bad(key, "must be an RFC 3339 time (2026-11-26T04:46:00Z)")),
            _ => Err(bad(key, "must be a string")),
        }
    };
    let starts = time("startsAt")?.unwrap_or(now_ms).max(now_ms);
    let ends = match (time("endsAt")?, &body["duration"]) {
        (Some(_), Value::String(_)) => {
            return Err(bad("duration", "give endsAt or duration, not both"));
        }
        (Some(ends), _) => ends,
        (None, Value::String(d)) => starts.saturating_add(
            parse_duration(d).ok_or_else(|| bad("duration", "must be like 30m, 2h or 1d"))?,
        ),
        (None, Value::Null) => return Err(bad("endsAt", "is required (or give a duration)")),
        (None, _) => return Err(bad("duration", "must be a string like 2h")),
    };
    let text = |key: &str, default: &str| -> Result<String, (String, String)> {
        match &body[key] {
            Value::Null => Ok(default.to_string()),
            Value::String(s) if s.chars().count() > MAX_COMMENT => {
                Err(bad(key, &format!("at most {MAX_COMMENT} characters")))
            }
            Value::String(s) if s.trim().is_empty() => Ok(default.to_string()),
            Value::String(s) => Ok(s.trim().to_string()),
            _ => Err(bad(key, "must be a string")),
        }
    };
    let created_by = text("createdBy", token_name)?;
    let comment = text("comment", "")?;
    check_new(&matchers, starts, ends, now_ms)?;
    Ok((matchers, starts, ends, created_by, comment))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2h"), Some(7_200_000));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn a_mention_reads_matchers_duration_and_comment() {
        let (m, ends, comment) = parse_mention(
            r#" team=db alertname=~"Disk &amp; more.*", env!=dev for 2h DB maintenance"#,
            1000,
        )
        .unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].value, "Disk & more.*");
        assert_eq!(ends, 1000 + 7_200_000);
        assert_eq!(comment, "DB maintenance");
        assert!(
            parse_mention("team=db", 0)
                .unwrap_err()
                .contains("how long")
        );
        assert!(
            parse_mention("team=db for ever", 0)
                .unwrap_err()
                .contains("duration")
        );
        assert_eq!(
            after_command("<@UBOT> Silence team=db for 1h", "silence"),
            " team=db for 1h"
        );
    }

    #[test]
    fn a_silence_must_not_match_everything() {
        let all = matchers::parse("team=~\".*\"").unwrap();
        assert!(check_new(&all, 0, 10, 0).is_err());
        let some = matchers::parse("team=db").unwrap();
        assert!(check_new(&some, 0, 10, 0).is_ok());
        assert_eq!(check_new(&some, 0, 10, 20).unwrap_err().0, "endsAt");
        assert_eq!(
            check_new(&some, 0, LAST_MS + 1, 0).unwrap_err().1,
            "must be before the year 10000"
        );
    }
}
