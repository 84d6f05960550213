//! The machines' durable state, in the app's own table (`machines_state`), and the changes
//! people and devices make to it.

use switchyard_engine::sqlx::{self, AnyConnection, AnyPool, Row};
use switchyard_engine::{AppError, AppMigration, StoreError};

pub const MIGRATIONS: [AppMigration; 1] = [AppMigration {
    version: 1,
    sqlite: "CREATE TABLE machines_state (
        name         TEXT PRIMARY KEY,
        oopsed       INTEGER NOT NULL DEFAULT 0,
        locked_out   INTEGER NOT NULL DEFAULT 0,
        relay        INTEGER NOT NULL DEFAULT 0,
        second_relay INTEGER NOT NULL DEFAULT 0,
        user_name    TEXT,
        fob          TEXT,
        last_checkin INTEGER,
        last_update  INTEGER,
        uptime_s     INTEGER
    )",
    postgres: "CREATE TABLE machines_state (
        name         TEXT PRIMARY KEY,
        oopsed       BIGINT NOT NULL DEFAULT 0,
        locked_out   BIGINT NOT NULL DEFAULT 0,
        relay        BIGINT NOT NULL DEFAULT 0,
        second_relay BIGINT NOT NULL DEFAULT 0,
        user_name    TEXT,
        fob          TEXT,
        last_checkin BIGINT,
        last_update  BIGINT,
        uptime_s     BIGINT
    )",
}];

/// One machine's state. A machine never heard of has the default: idle, never seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MachineState {
    pub oopsed: bool,
    pub locked_out: bool,
    pub relay: bool,
    pub second_relay: bool,
    /// Who is using it (the fob's user), while the relay is on for a fob.
    pub user: Option<String>,
    /// The fob in the reader at the last update.
    pub fob: Option<String>,
    /// The device's last update (ms since the epoch).
    pub last_checkin_ms: Option<i64>,
    /// The last change of state (ms since the epoch).
    pub last_update_ms: Option<i64>,
    /// The device's uptime at its last update, in seconds.
    pub uptime_s: Option<i64>,
}

fn db_err(e: sqlx::Error) -> AppError {
    AppError::Store(StoreError::Query {
        op: "machines state",
        source: e,
    })
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<(String, MachineState), sqlx::Error> {
    Ok((
        row.try_get("name")?,
        MachineState {
            oopsed: row.try_get::<i64, _>("oopsed")? != 0,
            locked_out: row.try_get::<i64, _>("locked_out")? != 0,
            relay: row.try_get::<i64, _>("relay")? != 0,
            second_relay: row.try_get::<i64, _>("second_relay")? != 0,
            user: row.try_get("user_name")?,
            fob: row.try_get("fob")?,
            last_checkin_ms: row.try_get("last_checkin")?,
            last_update_ms: row.try_get("last_update")?,
            uptime_s: row.try_get("uptime_s")?,
        },
    ))
}

const COLUMNS: &str = "name, oopsed, locked_out, relay, second_relay, user_name, fob, \
                       last_checkin, last_update, uptime_s";

/// One machine's state, in the transaction. On PostgreSQL the row is locked until the commit
/// (`lock`), so two replicas' updates of one machine take turns; SQLite has one writer anyway.
pub async fn load(
    conn: &mut AnyConnection,
    name: &str,
    lock: bool,
) -> Result<MachineState, AppError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM machines_state WHERE name = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    ))
    .bind(name)
    .fetch_optional(conn)
    .await
    .map_err(db_err)?;
    match row {
        Some(row) => Ok(from_row(&row).map_err(db_err)?.1),
        None => Ok(MachineState::default()),
    }
}

/// Every machine's state that was ever saved, by name (committed state only).
pub async fn load_all(
    reader: &AnyPool,
) -> Result<std::collections::HashMap<String, MachineState>, AppError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM machines_state"))
        .fetch_all(reader)
        .await
        .map_err(db_err)?;
    rows.iter()
        .map(|row| from_row(row).map_err(db_err))
        .collect()
}

/// Writes one machine's state, in the transaction.
pub async fn save(
    conn: &mut AnyConnection,
    name: &str,
    state: &MachineState,
) -> Result<(), AppError> {
    sqlx::query(&format!(
        "INSERT INTO machines_state ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (name) DO UPDATE SET oopsed = excluded.oopsed, \
         locked_out = excluded.locked_out, relay = excluded.relay, \
         second_relay = excluded.second_relay, user_name = excluded.user_name, \
         fob = excluded.fob, last_checkin = excluded.last_checkin, \
         last_update = excluded.last_update, uptime_s = excluded.uptime_s"
    ))
    .bind(name)
    .bind(state.oopsed as i64)
    .bind(state.locked_out as i64)
    .bind(state.relay as i64)
    .bind(state.second_relay as i64)
    .bind(state.user.clone())
    .bind(state.fob.clone())
    .bind(state.last_checkin_ms)
    .bind(state.last_update_ms)
    .bind(state.uptime_s)
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// `oops`, `lock` or `clear`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Oops,
    Lock,
    Clear,
    /// `DELETE /api/machine/oops/<name>`: the oops only.
    Unoops,
    /// `DELETE /api/machine/locked_out/<name>`: the lock-out only.
    Unlock,
}

impl Change {
    pub fn verb(self) -> &'static str {
        match self {
            Self::Oops => "oops",
            Self::Lock => "lock",
            Self::Clear => "clear",
            Self::Unoops => "unoops",
            Self::Unlock => "unlock",
        }
    }
}

/// Why a change was not made: each gets a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    AlreadyOopsed,
    AlreadyLocked,
    NothingToClear,
}

impl Refusal {
    pub fn text(&self, machine: &str) -> String {
        match self {
            Self::AlreadyOopsed => format!("*{machine}* is already oopsed."),
            Self::AlreadyLocked => format!("*{machine}* is already locked out."),
            Self::NothingToClear => {
                format!("*{machine}* is neither oopsed nor locked out: nothing to clear.")
            }
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::AlreadyOopsed => "already_oopsed",
            Self::AlreadyLocked => "already_locked_out",
            Self::NothingToClear => "nothing_to_clear",
        }
    }
}

/// Applies `change` to `state`: takes effect at once, in use or not (the relay is cut).
pub fn apply(state: &mut MachineState, change: Change, now_ms: i64) -> Result<(), Refusal> {
    match change {
        Change::Oops if state.oopsed => return Err(Refusal::AlreadyOopsed),
        Change::Lock if state.locked_out => return Err(Refusal::AlreadyLocked),
        Change::Clear if !state.oopsed && !state.locked_out => {
            return Err(Refusal::NothingToClear);
        }
        Change::Unoops if !state.oopsed => return Err(Refusal::NothingToClear),
        Change::Unlock if !state.locked_out => return Err(Refusal::NothingToClear),
        Change::Oops => state.oopsed = true,
        Change::Lock => state.locked_out = true,
        Change::Clear => {
            state.oopsed = false;
            state.locked_out = false;
        }
        Change::Unoops => state.oopsed = false,
        Change::Unlock => state.locked_out = false,
    }
    if state.oopsed || state.locked_out {
        state.relay = false;
        state.second_relay = false;
        state.user = None;
    }
    state.last_update_ms = Some(now_ms);
    Ok(())
}
