//! What the command line and the HTTP API share: creating and revoking API tokens (each audited
//! in the same transaction), reading times people type (`1h`, `30d`, `2026-11-01`), and the
//! JSON shape of audit entries and tokens.

use serde_json::{Value, json};
use switchyard_store::{
    ActorKind, ApiTokenInfo, AuditEntry, AuditRecord, CreatedToken, NewApiToken, Outcome, Store,
    TokenError, Via,
};

/// Who is acting, for the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    /// A Slack user id, a token id, a device id or `system`.
    pub id: String,
    pub via: Via,
}

impl Actor {
    /// Someone at the `switchyard` command line: the machine's operator, so `system`.
    pub fn cli() -> Self {
        Self {
            kind: ActorKind::System,
            id: "system".into(),
            via: Via::Cli,
        }
    }

    fn record(&self, at_ms: i64, action: &str, object: String, detail: String) -> AuditRecord {
        AuditRecord {
            at_ms,
            actor_kind: self.kind,
            actor: self.id.clone(),
            via: self.via,
            action: action.into(),
            object,
            outcome: Outcome::Ok,
            detail,
        }
    }
}

/// Creates a token and audits it (`tokens.create`, object `token:<id>`) in one transaction. The
/// audit detail names the token and its scopes, never the secret.
pub async fn create_token(
    store: &Store,
    token: &NewApiToken,
    actor: &Actor,
    now_ms: i64,
) -> Result<CreatedToken, TokenError> {
    let mut tx = store.begin().await?;
    let created = tx.token_create(token, now_ms).await?;
    let info = &created.info;
    let expires = info
        .expires_at_ms
        .map_or_else(|| "never".to_string(), format_ms);
    let detail = format!(
        "name {}, scopes {}, expires {expires}",
        info.name,
        info.scopes.join(" ")
    );
    tx.audit(&actor.record(
        now_ms,
        "tokens.create",
        format!("token:{}", info.id),
        detail,
    ))
    .await?;
    tx.commit().await?;
    Ok(created)
}

/// Revokes the token in force with this id or name and audits it (`tokens.revoke`) in one
/// transaction.
pub async fn revoke_token(
    store: &Store,
    id_or_name: &str,
    actor: &Actor,
    now_ms: i64,
) -> Result<ApiTokenInfo, TokenError> {
    let mut tx = store.begin().await?;
    let info = tx.token_revoke(id_or_name, now_ms).await?;
    tx.audit(&actor.record(
        now_ms,
        "tokens.revoke",
        format!("token:{}", info.id),
        format!("name {}", info.name),
    ))
    .await?;
    tx.commit().await?;
    Ok(info)
}

/// Deletes audit entries older than `retention_days` and, when some went, records that it did.
/// `retention_days` 0 keeps everything.
pub async fn prune_audit(
    store: &Store,
    retention_days: u32,
    now_ms: i64,
) -> Result<u64, switchyard_store::StoreError> {
    if retention_days == 0 {
        return Ok(0);
    }
    let cutoff = now_ms.saturating_sub(i64::from(retention_days) * DAY_MS);
    let pruned = crate::sender::prune_in_chunks(retention_days, now_ms, |cutoff| {
        store.audit_prune(cutoff, crate::sender::PRUNE_CHUNK)
    })
    .await?;
    if pruned > 0 {
        let actor = Actor {
            kind: ActorKind::System,
            id: "system".into(),
            via: Via::Schedule,
        };
        store
            .audit(&actor.record(
                now_ms,
                "audit.prune",
                String::new(),
                format!(
                    "{pruned} entries before {} ({retention_days} days)",
                    format_ms(cutoff)
                ),
            ))
            .await?;
    }
    Ok(pruned)
}

/// An audit entry as JSON: the HTTP API's and `switchyard audit --json`'s shape.
pub fn entry_json(entry: &AuditEntry) -> Value {
    let r = &entry.record;
    json!({
        "id": entry.id,
        "at": r.at_ms,
        "time": format_ms(r.at_ms),
        "actor_kind": r.actor_kind.as_str(),
        "actor": r.actor,
        "via": r.via.as_str(),
        "action": r.action,
        "object": r.object,
        "outcome": r.outcome.as_str(),
        "detail": r.detail,
    })
}

/// A token as JSON, without any secret.
pub fn token_json(info: &ApiTokenInfo) -> Value {
    json!({
        "id": info.id,
        "name": info.name,
        "scopes": info.scopes,
        "created_at": info.created_at_ms,
        "expires_at": info.expires_at_ms,
        "revoked_at": info.revoked_at_ms,
        "last_used_at": info.last_used_at_ms,
    })
}

// ---- access ----

/// A change to the store's groups and bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessChange {
    GroupAdd { group: String, member: String },
    GroupRemove { group: String, member: String },
    Bind { role: String, subject: String },
    Unbind { role: String, subject: String },
}

/// Why an access change was not made.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A name or subject is not well formed.
    #[error("{0}")]
    Invalid(String),
    /// The config has no `[access]`: there are no roles to bind.
    #[error("the config has no [access] section, so there are no roles; define them there first")]
    NoAccessSection,
    /// The role is not one the config defines.
    #[error("{role:?} is not a role; the roles are {roles}")]
    UnknownRole { role: String, roles: String },
    #[error(transparent)]
    Store(#[from] switchyard_store::StoreError),
}

impl AccessChange {
    /// Checks names against the config and brings subjects to their written form; the audit
    /// action, object and detail.
    fn checked(
        &self,
        policy: Option<&crate::access::Policy>,
    ) -> Result<(Self, &'static str, String, String), AccessError> {
        use crate::access::{Subject, check_name};
        let group_name =
            |g: &str| check_name(g).map_err(|e| AccessError::Invalid(format!("group {e}")));
        let role = |r: &str, must_exist: bool| {
            let policy = policy.ok_or(AccessError::NoAccessSection)?;
            if must_exist && !policy.has_role(r) {
                return Err(AccessError::UnknownRole {
                    role: r.chars().take(64).collect(),
                    roles: policy.role_names().join(", "),
                });
            }
            check_name(r).map_err(|e| AccessError::Invalid(format!("role {e}")))
        };
        Ok(match self {
            Self::GroupAdd { group, member } | Self::GroupRemove { group, member } => {
                group_name(group)?;
                let member = Subject::parse_member(member.trim())
                    .map_err(AccessError::Invalid)?
                    .to_string();
                let (change, action) = match self {
                    Self::GroupAdd { .. } => (
                        Self::GroupAdd {
                            group: group.clone(),
                            member: member.clone(),
                        },
                        "access.group.add",
                    ),
                    _ => (
                        Self::GroupRemove {
                            group: group.clone(),
                            member: member.clone(),
                        },
                        "access.group.remove",
                    ),
                };
                (
                    change,
                    action,
                    format!("group:{group}"),
                    format!("member {member}"),
                )
            }
            Self::Bind { role: r, subject } | Self::Unbind { role: r, subject } => {
                // Unbinding a role the config dropped is allowed: it cleans up.
                role(r, matches!(self, Self::Bind { .. }))?;
                let subject = Subject::parse(subject.trim())
                    .map_err(AccessError::Invalid)?
                    .to_string();
                let (change, action) = match self {
                    Self::Bind { .. } => (
                        Self::Bind {
                            role: r.clone(),
                            subject: subject.clone(),
                        },
                        "access.bind",
                    ),
                    _ => (
                        Self::Unbind {
                            role: r.clone(),
                            subject: subject.clone(),
                        },
                        "access.unbind",
                    ),
                };
                (
                    change,
                    action,
                    format!("role:{r}"),
                    format!("subject {subject}"),
                )
            }
        })
    }
}

/// Makes an access change in the store and audits it in the same transaction; `Ok(false)`
/// when there was nothing to change (already a member, not bound), which is not audited.
/// `policy` is the config's `[access]` (roles must exist to be bound).
pub async fn change_access(
    store: &Store,
    policy: Option<&crate::access::Policy>,
    change: &AccessChange,
    actor: &Actor,
    now_ms: i64,
) -> Result<bool, AccessError> {
    let (change, action, object, detail) = change.checked(policy)?;
    let mut tx = store.begin().await?;
    let changed = match &change {
        AccessChange::GroupAdd { group, member } => {
            tx.access_group_add(group, member, now_ms).await?
        }
        AccessChange::GroupRemove { group, member } => {
            tx.access_group_remove(group, member).await?
        }
        AccessChange::Bind { role, subject } => tx.access_bind(role, subject, now_ms).await?,
        AccessChange::Unbind { role, subject } => tx.access_unbind(role, subject).await?,
    };
    if changed {
        tx.audit(&actor.record(now_ms, action, object, detail))
            .await?;
    }
    tx.commit().await?;
    Ok(changed)
}

/// Reads the store's groups and bindings into `control` (keeping the Slack user groups as
/// resolved): what the engine's refresher does every few seconds, and the API right after a
/// change so it takes effect at once.
pub async fn reload_access(
    store: &Store,
    control: &crate::access::AccessControl,
) -> Result<(), switchyard_store::StoreError> {
    let _reloading = control.reloading.lock().await;
    let members = store.access_group_members().await?;
    let bindings = store.access_bindings().await?;
    let usergroups = control.dynamic().usergroups.clone();
    control.set_dynamic(crate::access::Dynamic::from_rows(
        &members, &bindings, usergroups,
    ));
    Ok(())
}

/// Groups and bindings from the config and the store, as JSON: the API's and
/// `switchyard access list --json`'s shape. `source` is `config` or `store`.
pub fn access_json(
    policy: Option<&crate::access::Policy>,
    members: &[switchyard_store::GroupMember],
    bindings: &[switchyard_store::RoleBinding],
) -> Value {
    let mut groups = Vec::new();
    let mut bound = Vec::new();
    if let Some(policy) = policy {
        for (group, group_members) in policy.config_groups() {
            for member in group_members {
                groups.push(
                    json!({"group": group, "member": member.to_string(), "source": "config"}),
                );
            }
        }
        for (role, subject) in policy.config_bindings() {
            bound.push(json!({"role": role, "subject": subject.to_string(), "source": "config"}));
        }
    }
    for m in members {
        groups.push(json!({"group": m.group, "member": m.member, "source": "store", "added_at": m.added_at_ms}));
    }
    for b in bindings {
        let known = policy.is_some_and(|p| p.has_role(&b.role));
        bound.push(json!({"role": b.role, "subject": b.subject, "source": "store", "added_at": b.added_at_ms, "role_defined": known}));
    }
    json!({
        "roles": policy.map(|p| p.role_names()).unwrap_or_default(),
        "groups": groups,
        "bindings": bound,
    })
}

// ---- times ----

/// A time that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a time: use a duration (90s, 15m, 1h, 30d, 2w), a date (2026-11-01, UTC) or a date and time (2026-11-01T12:30:00Z)"
)]
pub struct TimeError {
    /// What was given (at most 64 characters of it).
    pub input: String,
}

const DAY_MS: i64 = 86_400_000;

/// A duration like `90s`, `15m`, `1h`, `30d`, `2w`, in ms.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(unit_at);
    let n: i64 = number.parse().ok()?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => DAY_MS,
        "w" => 7 * DAY_MS,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

/// `YYYY-MM-DD`, optionally followed by `THH:MM[:SS]` (or a space for the `T`), then `Z` or an
/// offset; UTC without one.
fn parse_date_ms(text: &str) -> Option<i64> {
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Some(at.as_millisecond());
    }
    let civil: jiff::civil::DateTime = text.parse().ok()?;
    Some(
        jiff::tz::Offset::UTC
            .to_timestamp(civil)
            .ok()?
            .as_millisecond(),
    )
}

fn time_error(text: &str) -> TimeError {
    TimeError {
        input: text.chars().take(64).collect(),
    }
}

/// A point in the past: a duration ago (`1h`), a date or date and time (UTC), or Unix ms.
pub fn parse_since(text: &str, now_ms: i64) -> Result<i64, TimeError> {
    let text = text.trim();
    if let Some(d) = parse_duration_ms(text) {
        return Ok(now_ms.saturating_sub(d));
    }
    parse_absolute(text)
}

/// A point in the future: a duration from now (`30d`), a date or date and time (UTC), or Unix
/// ms.
pub fn parse_until(text: &str, now_ms: i64) -> Result<i64, TimeError> {
    let text = text.trim();
    if let Some(d) = parse_duration_ms(text) {
        return Ok(now_ms.saturating_add(d));
    }
    parse_absolute(text)
}

fn parse_absolute(text: &str) -> Result<i64, TimeError> {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return text.parse().map_err(|_| time_error(text));
    }
    parse_date_ms(text).ok_or_else(|| time_error(text))
}

/// Unix ms as `2026-11-01T12:30:00Z`.
pub fn format_ms(ms: i64) -> String {
    format_utc(ms, "%Y-%m-%dT%H:%M:%SZ")
}

/// Unix ms in UTC as `format` (strftime's) says; as the number itself out of the years
/// -9999 to 9999, which have no such form.
pub fn format_utc(ms: i64, format: &str) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |at| at.strftime(format).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_dates_and_ms() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_since("1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_until("30d", now), Ok(now + 30 * DAY_MS));
        assert_eq!(parse_since("2w", now), Ok(now - 14 * DAY_MS));
        assert_eq!(parse_since("1970-01-02", now), Ok(DAY_MS));
        assert_eq!(parse_until("2027-01-01", now), Ok(1_798_761_600_000));
        assert_eq!(
            parse_since("2026-11-01T12:30:00Z", now),
            Ok(1_793_536_200_000)
        );
        assert_eq!(parse_since("2026-11-01T12:30", now), Ok(1_793_536_200_000));
        assert_eq!(parse_since("2026-11-01 12:30", now), Ok(1_793_536_200_000));
        assert_eq!(
            parse_since("2026-11-01T13:30:00+01:00", now),
            Ok(1_793_536_200_000),
            "an offset is honoured"
        );
        assert_eq!(parse_since("1793536200000", now), Ok(1_793_536_200_000));
        for bad in [
            "",
            "h",
            "1y",
            "-1h",
            "2026-02-30",
            "2026-13-01",
            "26-11-01",
            "2026-11-01T25:00",
            "99999999999999999999",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn pruning_keeps_the_retention_and_says_so() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let now = 400 * DAY_MS;
        for (at, action) in [(now - 40 * DAY_MS, "old"), (now - 10 * DAY_MS, "recent")] {
            store
                .audit(&Actor::cli().record(at, action, String::new(), String::new()))
                .await
                .unwrap();
        }
        assert_eq!(prune_audit(&store, 0, now).await.unwrap(), 0);
        assert_eq!(prune_audit(&store, 30, now).await.unwrap(), 1);
        let left = store
            .audit_query(&switchyard_store::AuditFilter::default())
            .await
            .unwrap();
        let actions: Vec<&str> = left.iter().map(|e| e.record.action.as_str()).collect();
        assert_eq!(actions, ["audit.prune", "recent"]);
        assert_eq!(left[0].record.via, Via::Schedule);
        assert_eq!(prune_audit(&store, 30, now).await.unwrap(), 0);
    }

    /// More than one statement's worth: every old entry goes, chunk by chunk.
    #[tokio::test]
    async fn pruning_goes_in_chunks_until_nothing_old_is_left() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let now = 400 * DAY_MS;
        let old = crate::sender::PRUNE_CHUNK as i64 + 5;
        for i in 0..old {
            store
                .audit(&Actor::cli().record(
                    now - 40 * DAY_MS + i,
                    "old",
                    String::new(),
                    String::new(),
                ))
                .await
                .unwrap();
        }
        assert_eq!(prune_audit(&store, 30, now).await.unwrap(), old as u64);
        let left = store
            .audit_query(&switchyard_store::AuditFilter::default())
            .await
            .unwrap();
        let actions: Vec<&str> = left.iter().map(|e| e.record.action.as_str()).collect();
        assert_eq!(actions, ["audit.prune"]);
    }

    #[test]
    fn formats_round_trip() {
        for ms in [0, 1_793_536_200_000, 951_782_400_000, -DAY_MS] {
            let text = format_ms(ms);
            assert_eq!(parse_since(&text, 0), Ok(ms), "{text}");
        }
        // Past year 9999: the number, which reads back too.
        assert_eq!(format_ms(i64::MAX), i64::MAX.to_string());
        assert_eq!(format_ms(1_793_536_200_000), "2026-11-01T12:30:00Z");
    }
}
