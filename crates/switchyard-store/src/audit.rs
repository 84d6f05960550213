//! The audit log: who did what, through which surface, to what, and how it ended.
//!
//! A state change is audited by [`Tx::audit`] in the transaction that makes the change, so the
//! record and the change commit together or not at all; [`Store::audit`] is for records that
//! stand alone (a refusal, a CLI action that is its own transaction). Records are never
//! changed, only pruned by age ([`Store::audit_prune`]).

use std::fmt;
use std::str::FromStr;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{INSERT_CHUNK, Placeholders, Store, StoreError, Tx, bind_nulls, query_err};

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        what: stringify!($name),
                        value: s.chars().take(64).collect(),
                    }),
                }
            }
        }
    };
}

text_enum! {
    /// What kind of actor did it.
    ActorKind {
        /// A person in Slack; the actor is their Slack user id.
        User = "user",
        /// Another system with an API token; the actor is the token's id.
        Token = "token",
        /// A device checking in; the actor is its device id.
        Device = "device",
        /// Switchyard itself (schedules, the CLI); the actor is `system`.
        System = "system",
    }
}

text_enum! {
    /// The surface it came through.
    Via {
        /// `@switchyard …` in a channel.
        Mention = "mention",
        /// A slash command.
        SlashCommand = "slash_command",
        /// A button or menu.
        Button = "button",
        /// A modal's submission.
        Modal = "modal",
        /// The HTTP API.
        Api = "api",
        /// A schedule Switchyard runs.
        Schedule = "schedule",
        /// The `switchyard` command line.
        Cli = "cli",
        /// A Slack event (a reaction, a join).
        Event = "event",
    }
}

text_enum! {
    /// How it ended.
    Outcome {
        /// Done.
        Ok = "ok",
        /// Not allowed (the detail says why).
        Refused = "refused",
        /// Tried and failed (the detail says how).
        Failed = "failed",
    }
}

/// A value that is not one of an enum's texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what}: {value:?}")]
pub struct UnknownValue {
    /// The enum, e.g. `Outcome`.
    pub what: &'static str,
    /// The text that was given (at most 64 characters of it).
    pub value: String,
}

/// One thing to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When it happened, Unix ms.
    pub at_ms: i64,
    /// What kind of actor.
    pub actor_kind: ActorKind,
    /// A Slack user id, a token id, a device id or `system`.
    pub actor: String,
    /// The surface it came through.
    pub via: Via,
    /// What was done, dotted: `machines.enable`, `tokens.create`.
    pub action: String,
    /// What it was done to, `kind:name` (`machine:laser-1`); empty when nothing in particular.
    pub object: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it was refused, what changed; may be empty. Never a secret.
    pub detail: String,
}

/// A recorded [`AuditRecord`], with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Increasing in the order records were written: the paging key.
    pub id: i64,
    /// What was recorded.
    pub record: AuditRecord,
}

/// Which entries [`Store::audit_query`] returns; every field left `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only entries at or after this time, Unix ms.
    pub since_ms: Option<i64>,
    /// Only entries before this time, Unix ms.
    pub until_ms: Option<i64>,
    /// Only this actor (exactly).
    pub actor: Option<String>,
    /// Only this object (exactly).
    pub object: Option<String>,
    /// Only actions starting with this text (`machines.` or `machines.enable`); case-sensitive.
    pub action_prefix: Option<String>,
    /// Only this outcome.
    pub outcome: Option<Outcome>,
    /// At most this many (0 means [`AUDIT_DEFAULT_LIMIT`]; capped at [`AUDIT_MAX_LIMIT`]).
    pub limit: u32,
    /// Only entries with an id below this one: the next page after a page whose last
    /// (oldest) entry had this id.
    pub before_id: Option<i64>,
}

/// How many entries a query returns when the filter does not say.
pub const AUDIT_DEFAULT_LIMIT: u32 = 100;
/// The most entries one query returns.
pub const AUDIT_MAX_LIMIT: u32 = 1000;

const AUDIT_COLUMNS: &str = "id, at, actor_kind, actor, via, action, object, outcome, detail";
const AUDIT_INSERT: &str = "INSERT INTO audit (at, actor_kind, actor, via, action, object, \
                            outcome, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

fn decode<T: FromStr<Err = UnknownValue>>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(column)?;
    text.parse()
        .map_err(|e: UnknownValue| sqlx::Error::ColumnDecode {
            index: column.to_string(),
            source: Box::new(e),
        })
}

fn audit_entry(row: &AnyRow) -> Result<AuditEntry, sqlx::Error> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        record: AuditRecord {
            at_ms: row.try_get("at")?,
            actor_kind: decode(row, "actor_kind")?,
            actor: row.try_get("actor")?,
            via: decode(row, "via")?,
            action: row.try_get("action")?,
            object: row.try_get("object")?,
            outcome: decode(row, "outcome")?,
            detail: row.try_get("detail")?,
        },
    })
}

fn bind_record<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    record: &'q AuditRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(record.at_ms)
        .bind(record.actor_kind.as_str())
        .bind(&record.actor)
        .bind(record.via.as_str())
        .bind(&record.action)
        .bind(&record.object)
        .bind(record.outcome.as_str())
        .bind(&record.detail)
}

impl Tx<'_> {
    /// Records `record` in this transaction: it commits with the change it describes, or not
    /// at all.
    pub async fn audit(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
        bind_record(sqlx::query(AUDIT_INSERT), record)
            .execute(self.conn())
            .await
            .map_err(query_err("audit"))?;
        Ok(())
    }

    /// Records several records in this transaction, as [`Tx::audit`] would one by one, with one
    /// statement per few hundred: a batch's records cost one trip to the database.
    pub async fn audit_many(&mut self, records: &[AuditRecord]) -> Result<(), StoreError> {
        for chunk in records.chunks(INSERT_CHUNK) {
            let (rows, padding) = Placeholders::new(self.backend).insert_rows(chunk.len(), 8);
            let sql = format!(
                "INSERT INTO audit (at, actor_kind, actor, via, action, object, outcome, detail) \
                 {rows}"
            );
            let mut query = sqlx::query(&sql);
            for record in chunk {
                query = bind_record(query, record);
            }
            bind_nulls(query, padding * 8)
                .execute(self.conn())
                .await
                .map_err(query_err("audit"))?;
        }
        Ok(())
    }
}

impl Store {
    /// Records `record` on its own (a refusal, something that changed nothing else).
    pub async fn audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let mut conn = self.write_conn("audit").await?;
        bind_record(sqlx::query(AUDIT_INSERT), record)
            .execute(&mut *conn)
            .await
            .map_err(query_err("audit"))?;
        Ok(())
    }

    /// The entries `filter` matches, newest (highest id) first.
    pub async fn audit_query(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        const OP: &str = "audit query";
        // Numbers are bound first, then texts; placeholders are numbered in that order.
        let numbers: Vec<(&str, i64)> = [
            ("at >= ?", filter.since_ms),
            ("at < ?", filter.until_ms),
            ("id < ?", filter.before_id),
        ]
        .into_iter()
        .filter_map(|(condition, value)| value.map(|v| (condition, v)))
        .collect();
        let texts: Vec<(&str, &str)> = [
            ("actor = ?", filter.actor.as_deref()),
            ("object = ?", filter.object.as_deref()),
            // Not LIKE: SQLite's ignores case, and `_` and `%` would need escaping.
            (
                "substr(action, 1, length(?)) = ?",
                filter.action_prefix.as_deref(),
            ),
            ("outcome = ?", filter.outcome.map(Outcome::as_str)),
        ]
        .into_iter()
        .filter_map(|(condition, value)| value.map(|v| (condition, v)))
        .collect();
        let conditions: Vec<String> = numbers
            .iter()
            .map(|(c, _)| *c)
            .chain(texts.iter().map(|(c, _)| *c))
            .enumerate()
            .map(|(i, condition)| condition.replace('?', &format!("${}", i + 1)))
            .collect();
        let limit = match filter.limit {
            0 => AUDIT_DEFAULT_LIMIT,
            n => n.min(AUDIT_MAX_LIMIT),
        };
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit{filter_sql} ORDER BY id DESC LIMIT ${}",
            numbers.len() + texts.len() + 1
        );
        let mut query = sqlx::query(&sql);
        for (_, n) in &numbers {
            query = query.bind(*n);
        }
        for (_, t) in &texts {
            query = query.bind(*t);
        }
        let rows = query
            .bind(i64::from(limit))
            .fetch_all(&self.read_pool)
            .await
            .map_err(query_err(OP))?;
        rows.iter()
            .map(audit_entry)
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err(OP))
    }

    /// Deletes up to `limit` entries recorded before `older_than_ms` (oldest first) and returns
    /// how many went. Call it until it returns less than `limit`: each call is one short write,
    /// so a year of audit does not hold SQLite's writer (and every ack) for seconds.
    pub async fn audit_prune(&self, older_than_ms: i64, limit: u32) -> Result<u64, StoreError> {
        self.delete_oldest("audit prune", "audit", None, "at", older_than_ms, limit)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_texts_round_trip() {
        for k in ActorKind::ALL {
            assert_eq!(k.as_str().parse::<ActorKind>(), Ok(*k));
        }
        for v in Via::ALL {
            assert_eq!(v.as_str().parse::<Via>(), Ok(*v));
        }
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(*o));
        }
        assert!("nope".parse::<Via>().is_err());
    }
}
