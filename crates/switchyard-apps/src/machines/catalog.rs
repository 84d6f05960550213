//! The machines and users in force: the config's, plus those added or replaced at run time
//! through the admin API (`/api/machines/…`) or the CLI (`switchyard machines …`), kept in the
//! app's `machines_catalog` table. A stored entry replaces the config's of the same name (names
//! compared as [`fold`] does); removing it brings the config's back, if there is one.

use serde::Serialize;
use serde_json::Value;
use switchyard_engine::sqlx::{self, AnyConnection, AnyPool, Row};
use switchyard_engine::{AppError, AppMigration, StoreError, ValidateSection};

use super::config::{MachineConfig, MachinesConfig, UserConfig, fold};

pub const MIGRATION: AppMigration = AppMigration {
    version: 2,
    sqlite: "CREATE TABLE machines_catalog (
        kind       TEXT    NOT NULL,
        name_key   TEXT    NOT NULL,
        spec       TEXT    NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (kind, name_key)
    )",
    postgres: "CREATE TABLE machines_catalog (
        kind       TEXT   NOT NULL,
        name_key   TEXT   NOT NULL,
        spec       TEXT   NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (kind, name_key)
    )",
};

fn db_err(e: sqlx::Error) -> AppError {
    AppError::Store(StoreError::Query {
        op: "machines catalog",
        source: e,
    })
}

/// A machine or a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Machine,
    User,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Machine => "machine",
            Self::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "machines" | "machine" => Some(Self::Machine),
            "users" | "user" => Some(Self::User),
            _ => None,
        }
    }
}

/// The machines and users in force.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    pub machines: Vec<MachineConfig>,
    pub users: Vec<UserConfig>,
}

impl Catalog {
    /// The config's lists with the stored entries applied (committed ones only).
    pub async fn load(base: &MachinesConfig, reader: &AnyPool) -> Result<Self, AppError> {
        let rows = sqlx::query("SELECT kind, spec FROM machines_catalog ORDER BY updated_at")
            .fetch_all(reader)
            .await
            .map_err(db_err)?;
        let mut catalog = Self {
            machines: base.machines.clone(),
            users: base.users.clone(),
        };
        for row in rows {
            let kind: String = row.try_get("kind").map_err(db_err)?;
            let spec: String = row.try_get("spec").map_err(db_err)?;
            match kind.as_str() {
                "machine" => match serde_json::from_str::<MachineConfig>(&spec) {
                    Ok(m) => upsert(&mut catalog.machines, m, |m| &m.name),
                    Err(e) => tracing::warn!(error = %e, "a stored machine is unreadable"),
                },
                "user" => match serde_json::from_str::<UserConfig>(&spec) {
                    Ok(u) => upsert(&mut catalog.users, u, |u| &u.name),
                    Err(e) => tracing::warn!(error = %e, "a stored user is unreadable"),
                },
                _ => {}
            }
        }
        Ok(catalog)
    }

    /// The machine called `words` (its name or alias, any case, spaces collapsed).
    pub fn find(&self, words: &str) -> Option<&MachineConfig> {
        let wanted = fold(words);
        self.machines.iter().find(|m| {
            fold(&m.name) == wanted || m.alias.as_deref().is_some_and(|a| fold(a) == wanted)
        })
    }
}

fn upsert<T>(list: &mut Vec<T>, item: T, name: impl Fn(&T) -> &String) {
    let key = fold(name(&item));
    match list.iter_mut().find(|x| fold(name(x)) == key) {
        Some(slot) => *slot = item,
        None => list.push(item),
    }
}

/// Checks `spec` as the entry `name` of `kind` against the catalog it would join, then stores
/// it (in the caller's transaction). Device tokens are refused: they belong in the config.
pub async fn put(
    conn: &mut AnyConnection,
    base: &MachinesConfig,
    current: &Catalog,
    kind: Kind,
    name: &str,
    mut spec: Value,
    now_ms: i64,
) -> Result<Result<(), String>, AppError> {
    let Some(object) = spec.as_object_mut() else {
        return Ok(Err("the body must be a JSON object".into()));
    };
    if object.contains_key("token") {
        return Ok(Err("device tokens are set in the config, not here".into()));
    }
    object.insert("name".into(), Value::String(name.to_string()));
    let mut merged = MachinesConfig {
        enabled: true,
        control_channel: "C".into(),
        oops_channel: "C".into(),
        machines: current.machines.clone(),
        users: current.users.clone(),
        ..base.clone()
    };
    match kind {
        Kind::Machine => match serde_json::from_value::<MachineConfig>(spec.clone()) {
            Ok(m) => upsert(&mut merged.machines, m, |m| &m.name),
            Err(e) => return Ok(Err(format!("not a machine: {e}"))),
        },
        Kind::User => match serde_json::from_value::<UserConfig>(spec.clone()) {
            Ok(u) => upsert(&mut merged.users, u, |u| &u.name),
            Err(e) => return Ok(Err(format!("not a user: {e}"))),
        },
    }
    if let Some((key, reason)) = merged.validate().into_iter().next() {
        return Ok(Err(format!("{key}: {reason}")));
    }
    sqlx::query(
        "INSERT INTO machines_catalog (kind, name_key, spec, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (kind, name_key) DO UPDATE SET spec = excluded.spec, \
         updated_at = excluded.updated_at",
    )
    .bind(kind.as_str())
    .bind(fold(name))
    .bind(spec.to_string())
    .bind(now_ms)
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(Ok(()))
}

/// Removes the stored entry `name` of `kind`; `false` if there was none (entries of the config
/// are removed from the config).
pub async fn remove(conn: &mut AnyConnection, kind: Kind, name: &str) -> Result<bool, AppError> {
    let done = sqlx::query("DELETE FROM machines_catalog WHERE kind = $1 AND name_key = $2")
        .bind(kind.as_str())
        .bind(fold(name))
        .execute(conn)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

/// `switchyard machines put|remove`: a change to the catalog from the command line, audited
/// (`system:cli`, via `cli`) in the same transaction. `spec` `None` removes. `Ok(Err(reason))`
/// when the change was refused (invalid, or nothing stored by that name).
pub async fn edit_from_cli(
    store: &switchyard_engine::Store,
    base: &MachinesConfig,
    kind: Kind,
    name: &str,
    spec: Option<Value>,
    now_ms: i64,
) -> Result<Result<(), String>, AppError> {
    let current = Catalog::load(base, store.reader()).await?;
    let mut tx = store.begin().await?;
    let (verb, outcome) = match spec {
        Some(spec) => (
            "put",
            put(tx.conn(), base, &current, kind, name, spec, now_ms).await?,
        ),
        None => (
            "remove",
            if remove(tx.conn(), kind, name).await? {
                Ok(())
            } else {
                Err(format!(
                    "no stored {} {name:?} (entries of the config are changed in the config)",
                    kind.as_str()
                ))
            },
        ),
    };
    if outcome.is_ok() {
        tx.audit(&switchyard_engine::AuditRecord {
            at_ms: now_ms,
            actor_kind: switchyard_engine::ActorKind::System,
            actor: "cli".into(),
            via: switchyard_engine::Via::Cli,
            action: format!("machines.{}.{verb}", kind.as_str()),
            object: format!("{}:{name}", kind.as_str()),
            outcome: switchyard_engine::Outcome::Ok,
            detail: String::new(),
        })
        .await?;
        tx.commit().await?;
    }
    Ok(outcome)
}
