//! API tokens: how other systems (alert sources, devices, admin scripts) reach Switchyard's HTTP
//! API.
//!
//! A token is `sy_` and 64 hex digits (32 random bytes from the thread's CSPRNG). Only its
//! SHA-256 is stored; the plaintext is returned once, by [`Tx::token_create`], and never again:
//! listings, errors and `Debug` output do not carry it or its hash.
//!
//! [`Store::token_verify`] looks a token up *by its hash*. No constant-time comparison is
//! needed: the database compares hashes, not secrets, and timing can at most reveal how much of
//! a stored hash a guess's hash shares — which says nothing about any token, as SHA-256 cannot
//! be inverted.
//!
//! # Scopes
//!
//! A token holds scopes like `alerts:write`, `audit:read`, `devices:checkin`: `resource:action`,
//! lowercase letters, digits, `_`, `-` and `.`. Two wildcards, and only these:
//! - `resource:*` grants every action on that resource (`alerts:*` grants `alerts:write`);
//! - `admin` grants every scope.
//!
//! They are stored space-separated; input may separate them with spaces or commas.

use std::fmt;

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError, Tx, query_err};

/// What a token's prefix is: it makes leaked tokens easy to recognize (and to scan for).
pub const TOKEN_PREFIX: &str = "sy_";
/// The scope that grants every scope.
pub const ADMIN_SCOPE: &str = "admin";
/// The longest token name.
pub const MAX_NAME_LEN: usize = 64;

/// Why a token could not be created or revoked.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The name is not usable.
    #[error("invalid token name {name:?}: {reason}")]
    InvalidName {
        /// The name given (at most 64 characters of it).
        name: String,
        /// Why not.
        reason: &'static str,
    },
    /// A scope is not well formed.
    #[error("invalid scope {scope:?}: {reason}")]
    InvalidScope {
        /// The scope given (at most 64 characters of it).
        scope: String,
        /// Why not.
        reason: &'static str,
    },
    /// Another token in force has this name.
    #[error("a token named {0:?} exists already (revoke it first, or pick another name)")]
    NameTaken(String),
    /// No token in force has this id or name.
    #[error("no token in force with id or name {0:?}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A token to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    /// A handle for people: letters, digits, `.`, `_`, `-`, not all digits (those are ids),
    /// up to [`MAX_NAME_LEN`].
    pub name: String,
    /// What it may do (see the module's documentation); at least one.
    pub scopes: Vec<String>,
    /// When it stops working, Unix ms; `None`: never.
    pub expires_at_ms: Option<i64>,
}

/// A token as listed: everything but the secret and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenInfo {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its scopes, normalized.
    pub scopes: Vec<String>,
    /// When it was created, Unix ms.
    pub created_at_ms: i64,
    /// When it stops (or stopped) working, Unix ms.
    pub expires_at_ms: Option<i64>,
    /// When it was revoked, Unix ms.
    pub revoked_at_ms: Option<i64>,
    /// When it was last accepted, Unix ms (kept to the minute: see [`Store::token_verify`]).
    pub last_used_at_ms: Option<i64>,
}

impl ApiTokenInfo {
    /// Whether the token grants `needed` (e.g. `audit:read`): it holds `admin`, or `needed`
    /// itself, or `resource:*` for `needed`'s resource.
    pub fn allows(&self, needed: &str) -> bool {
        scopes_allow(&self.scopes, needed)
    }
}

/// Whether `granted` scopes grant `needed`; see [`ApiTokenInfo::allows`].
pub fn scopes_allow(granted: &[String], needed: &str) -> bool {
    granted.iter().any(|scope| {
        scope == ADMIN_SCOPE
            || scope == needed
            || scope
                .strip_suffix(":*")
                .zip(needed.split_once(':'))
                .is_some_and(|(resource, (needed_resource, _))| resource == needed_resource)
    })
}

/// A token just created: the only time its plaintext exists.
pub struct CreatedToken {
    /// What it is.
    pub info: ApiTokenInfo,
    /// The token itself, to show once.
    pub plaintext: String,
}

impl fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedToken")
            .field("info", &self.info)
            .field("plaintext", &"[redacted]")
            .finish()
    }
}

/// Checks and normalizes scopes: split on spaces and commas, each `admin` or `resource:action`
/// or `resource:*`, deduplicated, in the order given.
pub fn parse_scopes<S: AsRef<str>>(input: &[S]) -> Result<Vec<String>, TokenError> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in input
        .iter()
        .flat_map(|s| s.as_ref().split([' ', ',']))
        .filter(|s| !s.is_empty())
    {
        let invalid = |reason| TokenError::InvalidScope {
            scope: scope.chars().take(64).collect(),
            reason,
        };
        let part_ok = |part: &str| {
            !part.is_empty()
                && part.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
                })
        };
        if scope.len() > 64 {
            return Err(invalid("longer than 64 characters"));
        }
        if scope != ADMIN_SCOPE {
            let Some((resource, action)) = scope.split_once(':') else {
                return Err(invalid(
                    "use resource:action (alerts:write), resource:* or admin",
                ));
            };
            if !part_ok(resource) || !(action == "*" || part_ok(action)) {
                return Err(invalid(
                    "resource and action are lowercase letters, digits, _ - . (or * as the action)",
                ));
            }
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_string());
        }
    }
    if scopes.is_empty() {
        return Err(TokenError::InvalidScope {
            scope: String::new(),
            reason: "a token needs at least one scope",
        });
    }
    Ok(scopes)
}

fn check_name(name: &str) -> Result<(), TokenError> {
    let invalid = |reason| TokenError::InvalidName {
        name: name.chars().take(64).collect(),
        reason,
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid("1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid("letters, digits, . _ - only"));
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid("not only digits (those are token ids)"));
    }
    Ok(())
}

/// The stored form of a token: its SHA-256, hex.
fn token_hash(plaintext: &str) -> String {
    hex::encode(Sha256::digest(plaintext.as_bytes()))
}

fn new_plaintext() -> String {
    let mut bytes = [0u8; 32];
    // ThreadRng is a CSPRNG (ChaCha, seeded and reseeded from the OS).
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

const TOKEN_COLUMNS: &str = "id, name, scopes, created_at, expires_at, revoked_at, last_used_at";

fn token_info(row: &AnyRow) -> Result<ApiTokenInfo, sqlx::Error> {
    let scopes: String = row.try_get("scopes")?;
    Ok(ApiTokenInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scopes: scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        created_at_ms: row.try_get("created_at")?,
        expires_at_ms: row.try_get("expires_at")?,
        revoked_at_ms: row.try_get("revoked_at")?,
        last_used_at_ms: row.try_get("last_used_at")?,
    })
}

/// `last_used_at` is written at most this often per token, so verifying is a read, not a write,
/// on almost every request.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

impl Tx<'_> {
    /// Creates a token (audit it in the same transaction). The plaintext is in the result and
    /// nowhere else.
    pub async fn token_create(
        &mut self,
        token: &NewApiToken,
        now_ms: i64,
    ) -> Result<CreatedToken, TokenError> {
        const OP: &str = "token create";
        check_name(&token.name)?;
        let scopes = parse_scopes(&token.scopes)?;
        let taken = sqlx::query("SELECT id FROM api_tokens WHERE name = $1 AND revoked_at IS NULL")
            .bind(&token.name)
            .fetch_optional(self.conn())
            .await
            .map_err(query_err(OP))?;
        if taken.is_some() {
            return Err(TokenError::NameTaken(token.name.clone()));
        }
        let plaintext = new_plaintext();
        let row = sqlx::query(&format!(
            "INSERT INTO api_tokens (name, hash, scopes, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {TOKEN_COLUMNS}"
        ))
        .bind(&token.name)
        .bind(token_hash(&plaintext))
        .bind(scopes.join(" "))
        .bind(now_ms)
        .bind(token.expires_at_ms)
        .fetch_one(self.conn())
        .await
        .map_err(|e| match &e {
            // A concurrent create took the name between our check and our insert.
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                TokenError::NameTaken(token.name.clone())
            }
            _ => TokenError::Store(query_err(OP)(e)),
        })?;
        let info = token_info(&row).map_err(query_err(OP))?;
        Ok(CreatedToken { info, plaintext })
    }

    /// Revokes the token in force with this id (all digits) or name; returns what it was.
    pub async fn token_revoke(
        &mut self,
        id_or_name: &str,
        now_ms: i64,
    ) -> Result<ApiTokenInfo, TokenError> {
        const OP: &str = "token revoke";
        let not_found = || TokenError::NotFound(id_or_name.chars().take(64).collect());
        // Names are never all digits, so all digits is an id.
        let by_id = !id_or_name.is_empty() && id_or_name.chars().all(|c| c.is_ascii_digit());
        let sql = format!(
            "UPDATE api_tokens SET revoked_at = $1 WHERE {} = $2 AND revoked_at IS NULL \
             RETURNING {TOKEN_COLUMNS}",
            if by_id { "id" } else { "name" }
        );
        let query = sqlx::query(&sql).bind(now_ms);
        let query = if by_id {
            query.bind(id_or_name.parse::<i64>().map_err(|_| not_found())?)
        } else {
            query.bind(id_or_name)
        };
        let row = query
            .fetch_optional(self.conn())
            .await
            .map_err(query_err(OP))?;
        let row = row.ok_or_else(not_found)?;
        Ok(token_info(&row).map_err(query_err(OP))?)
    }
}

impl Store {
    /// Every token, revoked and expired ones too, oldest first. No secrets.
    pub async fn token_list(&self) -> Result<Vec<ApiTokenInfo>, StoreError> {
        const OP: &str = "token list";
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"
        ))
        .fetch_all(&self.read_pool)
        .await
        .map_err(query_err(OP))?;
        rows.iter()
            .map(token_info)
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err(OP))
    }

    /// The token `plaintext` is, if it is in force at `now_ms` (not revoked, not expired);
    /// `None` for anything else, malformed input included. Notes the use in `last_used_at`
    /// (at most once a minute per token).
    pub async fn token_verify(
        &self,
        plaintext: &str,
        now_ms: i64,
    ) -> Result<Option<ApiTokenInfo>, StoreError> {
        const OP: &str = "token verify";
        if !plaintext.starts_with(TOKEN_PREFIX) || plaintext.len() > 128 {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE hash = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)"
        ))
        .bind(token_hash(plaintext))
        .bind(now_ms)
        .fetch_optional(&self.read_pool)
        .await
        .map_err(query_err(OP))?;
        let Some(row) = row else { return Ok(None) };
        let mut info = token_info(&row).map_err(query_err(OP))?;
        if info
            .last_used_at_ms
            .is_none_or(|at| at <= now_ms - LAST_USED_RESOLUTION_MS)
        {
            let mut conn = self.write_conn(OP).await?;
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now_ms)
                .bind(info.id)
                .execute(&mut *conn)
                .await
                .map_err(query_err(OP))?;
            info.last_used_at_ms = Some(now_ms);
        }
        Ok(Some(info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked_and_normalized() {
        assert_eq!(
            parse_scopes(&["alerts:write, audit:read", "alerts:write admin"]).unwrap(),
            ["alerts:write", "audit:read", "admin"]
        );
        assert_eq!(parse_scopes(&["alerts:*"]).unwrap(), ["alerts:*"]);
        for bad in [
            "*",
            "alerts",
            "Alerts:write",
            "alerts:",
            ":write",
            "a:b:c",
            "*:read",
        ] {
            assert!(parse_scopes(&[bad]).is_err(), "{bad}");
        }
        assert!(parse_scopes::<&str>(&[]).is_err());
        assert!(parse_scopes(&[" , "]).is_err());
    }

    #[test]
    fn wildcards_and_admin_grant() {
        let g = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(scopes_allow(&g(&["audit:read"]), "audit:read"));
        assert!(!scopes_allow(&g(&["audit:read"]), "audit:write"));
        assert!(scopes_allow(&g(&["alerts:*"]), "alerts:write"));
        assert!(!scopes_allow(&g(&["alerts:*"]), "audit:read"));
        assert!(!scopes_allow(&g(&["alerts:*"]), "alertsx:write"));
        assert!(scopes_allow(&g(&["admin"]), "audit:read"));
        assert!(!scopes_allow(&g(&[]), "audit:read"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("grafana-prod.1_x").is_ok());
        for bad in ["", "12", "a b", "ä", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_look_like_tokens_and_differ() {
        let (a, b) = (new_plaintext(), new_plaintext());
        assert!(a.starts_with("sy_") && a.len() == 3 + 64, "{}", a.len());
        assert_ne!(a, b);
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
