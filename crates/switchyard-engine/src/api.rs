//! Switchyard's own HTTP API, under `/api/v1/`, for other systems holding an API token.
//!
//! Every request carries `Authorization: Bearer sy_…`. A missing, unknown, expired or revoked
//! token gets `401 {"ok":false,"error":"invalid_token",…}`; a valid token without the scope the
//! route needs gets `403 {"ok":false,"error":"missing_scope","needed":"audit:read"}`, and that
//! refusal is audited (the token is known, so it is someone's attempt). 401s are not audited:
//! anyone can cause them, and they would drown the log. Every error is JSON.
//!
//! Routes:
//! - `GET /api/v1/audit` (`audit:read`): `since`, `until` (`1h`, `2026-11-01`, Unix ms), `who`
//!   (actor), `object`, `action` (prefix), `outcome`, `limit` (≤ 1000, default 100), `before`
//!   (an entry id, for the next page). Answers `{"ok":true,"entries":[…],"next_before":id|null}`,
//!   newest first.
//!
//! - `GET /api/v1/access` (`access:read`): the roles, and the groups' members and the roles'
//!   bindings from the config and the store (`source`). Answers `{"ok":true,"roles":[…],
//!   "groups":[{"group","member","source"}…],"bindings":[{"role","subject","source"}…]}`.
//! - `POST /api/v1/access/groups/add` and `…/groups/remove` with `{"group":"oncall",
//!   "member":"U0AAA"}`, `POST /api/v1/access/bind` and `…/unbind` with `{"role":"operator",
//!   "subject":"group:oncall"}` (`access:write`): change the store's groups and bindings,
//!   audited, in effect at once. Answers `{"ok":true,"changed":true|false}` (false: it was so
//!   already).
//!
//! Handlers take [`Authorized<S>`], whose scope is a type ([`AuditRead`]); code that knows the
//! scope only at run time (apps' routes) calls [`authorize`].

use std::collections::BTreeMap;
use std::marker::PhantomData;

use axum::Router;
use axum::extract::{FromRef, FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};
use switchyard_store::{ActorKind, ApiTokenInfo, AuditFilter, AuditRecord, Outcome, Store, Via};

use crate::admin::{entry_json, parse_since};
use crate::now_ms;

/// Why an API request was not served. Renders as JSON with the matching status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No token, or not one in force: 401.
    InvalidToken(&'static str),
    /// A valid token without the scope: 403.
    MissingScope(String),
    /// A bad parameter: 400.
    InvalidArgument(String),
    /// No such route or method: 404 / 405.
    NotFound,
    MethodNotAllowed,
    /// The store failed: 503 with an error id; the detail only in the log line carrying it.
    Unavailable {
        error_id: String,
    },
}

impl ApiError {
    /// A 503 for `error`, logged (with `what` failed) under a new error id.
    pub fn unavailable(what: &str, error: &dyn std::fmt::Display) -> Self {
        let error_id = crate::error_id();
        tracing::error!(error_id, error = %error, "{what}");
        ApiError::Unavailable { error_id }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::InvalidToken(detail) => (
                StatusCode::UNAUTHORIZED,
                json!({"ok": false, "error": "invalid_token", "detail": detail}),
            ),
            ApiError::MissingScope(needed) => (
                StatusCode::FORBIDDEN,
                json!({"ok": false, "error": "missing_scope", "needed": needed}),
            ),
            ApiError::InvalidArgument(detail) => (
                StatusCode::BAD_REQUEST,
                json!({"ok": false, "error": "invalid_argument", "detail": detail}),
            ),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                json!({"ok": false, "error": "unknown_method"}),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"ok": false, "error": "method_not_allowed"}),
            ),
            ApiError::Unavailable { error_id } => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"ok": false, "error": "unavailable", "error_id": error_id, "detail": "try again"}),
            ),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: tell the client which scheme, and that the token was the problem.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"switchyard\", error=\"invalid_token\""),
            );
        }
        response
    }
}

/// The token a request carries, if it is in force and grants `needed`. A 403 is audited as a
/// refusal of `action` (e.g. `audit.read`) on `object`.
pub async fn authorize(
    store: &Store,
    headers: &HeaderMap,
    needed: &str,
    object: &str,
) -> Result<ApiTokenInfo, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::InvalidToken(
            "missing Authorization: Bearer <token>",
        ));
    };
    let bearer = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(plaintext) = bearer else {
        return Err(ApiError::InvalidToken("use Authorization: Bearer <token>"));
    };
    let now = now_ms();
    let token = match store.token_verify(plaintext, now).await {
        Ok(Some(token)) => token,
        Ok(None) => return Err(ApiError::InvalidToken("unknown, expired or revoked token")),
        Err(e) => return Err(ApiError::unavailable("cannot check an API token", &e)),
    };
    if token.allows(needed) {
        return Ok(token);
    }
    let refusal = AuditRecord {
        at_ms: now,
        actor_kind: ActorKind::Token,
        actor: token.id.to_string(),
        via: Via::Api,
        action: "api.authorize".into(),
        object: object.into(),
        outcome: Outcome::Refused,
        detail: format!("token {} lacks scope {needed}", token.name),
    };
    if let Err(e) = store.audit(&refusal).await {
        tracing::warn!(error = %e, "cannot audit a refused API request");
    }
    Err(ApiError::MissingScope(needed.to_string()))
}

/// A scope, as a type, for [`Authorized`].
pub trait Scope {
    const NEEDED: &'static str;
}

/// `audit:read`: reading the audit log.
pub struct AuditRead;

impl Scope for AuditRead {
    const NEEDED: &'static str = "audit:read";
}

/// An extractor: the request's token, which grants `S`; otherwise the request is answered
/// 401 or 403 before the handler runs.
pub struct Authorized<S: Scope> {
    pub token: ApiTokenInfo,
    scope: PhantomData<S>,
}

impl<S: Scope, St> FromRequestParts<St> for Authorized<S>
where
    Store: FromRef<St>,
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, ApiError> {
        let store = Store::from_ref(state);
        let object = format!("route:{}", parts.uri.path());
        let token = authorize(&store, &parts.headers, S::NEEDED, &object).await?;
        Ok(Self {
            token,
            scope: PhantomData,
        })
    }
}

/// The `/api/v1/…` routes.
pub fn routes(store: Store) -> Router {
    Router::new()
        .route(
            "/api/v1/audit",
            get(audit).fallback(|| async { ApiError::MethodNotAllowed }),
        )
        .route("/api/v1", any(|| async { ApiError::NotFound }))
        .route("/api/v1/{*rest}", any(|| async { ApiError::NotFound }))
        .with_state(store)
}

const AUDIT_PARAMS: [&str; 8] = [
    "since", "until", "who", "object", "action", "outcome", "limit", "before",
];

/// Reads `GET /api/v1/audit`'s query into a filter.
pub fn audit_filter(query: Option<&str>, now_ms: i64) -> Result<AuditFilter, ApiError> {
    let params: BTreeMap<String, String> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| ApiError::InvalidArgument("the query string is not form-encoded".into()))?;
    if let Some(unknown) = params.keys().find(|k| !AUDIT_PARAMS.contains(&k.as_str())) {
        return Err(ApiError::InvalidArgument(format!(
            "unknown parameter {:?}; known: {}",
            unknown.chars().take(32).collect::<String>(),
            AUDIT_PARAMS.join(", ")
        )));
    }
    let invalid = |name: &str, e: String| ApiError::InvalidArgument(format!("{name}: {e}"));
    let time = |name: &str| {
        params
            .get(name)
            .map(|v| parse_since(v, now_ms).map_err(|e| invalid(name, e.to_string())))
            .transpose()
    };
    let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let number = |name: &str| {
        params
            .get(name)
            .map(|v| {
                v.parse::<u32>()
                    .map_err(|_| invalid(name, "not a whole number".into()))
            })
            .transpose()
    };
    Ok(AuditFilter {
        since_ms: time("since")?,
        until_ms: time("until")?,
        actor: text("who"),
        object: text("object"),
        action_prefix: text("action"),
        outcome: params
            .get("outcome")
            .map(|v| {
                v.parse()
                    .map_err(|_| invalid("outcome", "ok, refused or failed".into()))
            })
            .transpose()?,
        limit: number("limit")?.unwrap_or(0),
        before_id: number("before")?.map(i64::from),
    })
}

async fn audit(
    _auth: Authorized<AuditRead>,
    State(store): State<Store>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    let filter = audit_filter(query.as_deref(), now_ms())?;
    let entries = store
        .audit_query(&filter)
        .await
        .map_err(|e| ApiError::unavailable("cannot read the audit log", &e))?;
    let limit = match filter.limit {
        0 => switchyard_store::AUDIT_DEFAULT_LIMIT,
        n => n.min(switchyard_store::AUDIT_MAX_LIMIT),
    } as usize;
    // A full page may have more behind it; a short one is the last.
    let next_before = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(axum::Json(json!({
        "ok": true,
        "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
        "next_before": next_before,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_queries_are_read_strictly() {
        let f = audit_filter(
            Some("since=1h&who=U1&object=machine%3Alaser-1&action=machines.&outcome=refused&limit=5&before=9"),
            10_000_000,
        )
        .unwrap();
        assert_eq!(f.since_ms, Some(10_000_000 - 3_600_000));
        assert_eq!(f.actor.as_deref(), Some("U1"));
        assert_eq!(f.object.as_deref(), Some("machine:laser-1"));
        assert_eq!(f.action_prefix.as_deref(), Some("machines."));
        assert_eq!(f.outcome, Some(Outcome::Refused));
        assert_eq!((f.limit, f.before_id), (5, Some(9)));
        assert_eq!(audit_filter(None, 0).unwrap(), AuditFilter::default());
        for bad in [
            "since=yesterday",
            "limit=-1",
            "outcome=maybe",
            "wh0=U1",
            "before=x",
        ] {
            assert!(
                matches!(
                    audit_filter(Some(bad), 0),
                    Err(ApiError::InvalidArgument(_))
                ),
                "{bad}"
            );
        }
    }
}

// ---- access ----

/// `access:read`: reading groups and bindings.
pub struct AccessRead;

impl Scope for AccessRead {
    const NEEDED: &'static str = "access:read";
}

/// `access:write`: changing groups and bindings.
pub struct AccessWrite;

impl Scope for AccessWrite {
    const NEEDED: &'static str = "access:write";
}

/// What the `/api/v1/access` routes work with.
#[derive(Clone)]
pub struct AccessState {
    pub store: Store,
    pub control: std::sync::Arc<crate::access::AccessControl>,
}

impl FromRef<AccessState> for Store {
    fn from_ref(state: &AccessState) -> Store {
        state.store.clone()
    }
}

/// The `/api/v1/access…` routes.
pub fn access_routes(
    store: Store,
    control: std::sync::Arc<crate::access::AccessControl>,
) -> Router {
    let not_allowed = || async { ApiError::MethodNotAllowed };
    Router::new()
        .route("/api/v1/access", get(access_list).fallback(not_allowed))
        .route(
            "/api/v1/access/{verb}",
            axum::routing::post(access_change).fallback(not_allowed),
        )
        .route(
            "/api/v1/access/groups/{verb}",
            axum::routing::post(access_group_change).fallback(not_allowed),
        )
        .with_state(AccessState { store, control })
}

async fn access_list(
    _auth: Authorized<AccessRead>,
    State(state): State<AccessState>,
) -> Result<axum::Json<Value>, ApiError> {
    let unavailable = |e: switchyard_store::StoreError| {
        ApiError::unavailable("cannot read access groups and bindings", &e)
    };
    let members = state
        .store
        .access_group_members()
        .await
        .map_err(unavailable)?;
    let bindings = state.store.access_bindings().await.map_err(unavailable)?;
    let mut body = crate::admin::access_json(state.control.policy(), &members, &bindings);
    body["ok"] = json!(true);
    Ok(axum::Json(body))
}

/// The body's string fields `names`, or a 400 naming what is missing.
fn fields<const N: usize>(body: &str, names: [&str; N]) -> Result<[String; N], ApiError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|_| ApiError::InvalidArgument("the body must be a JSON object".into()))?;
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (slot, name) in out.iter_mut().zip(names) {
        *slot = value[name]
            .as_str()
            .ok_or_else(|| ApiError::InvalidArgument(format!("{name}: a string is needed")))?
            .to_string();
    }
    Ok(out)
}

async fn access_change(
    auth: Authorized<AccessWrite>,
    State(state): State<AccessState>,
    axum::extract::Path(verb): axum::extract::Path<String>,
    body: String,
) -> Result<axum::Json<Value>, ApiError> {
    let [role, subject] = fields(&body, ["role", "subject"])?;
    let change = match verb.as_str() {
        "bind" => crate::admin::AccessChange::Bind { role, subject },
        "unbind" => crate::admin::AccessChange::Unbind { role, subject },
        _ => return Err(ApiError::NotFound),
    };
    apply_access_change(&auth, &state, &change).await
}

async fn access_group_change(
    auth: Authorized<AccessWrite>,
    State(state): State<AccessState>,
    axum::extract::Path(verb): axum::extract::Path<String>,
    body: String,
) -> Result<axum::Json<Value>, ApiError> {
    let [group, member] = fields(&body, ["group", "member"])?;
    let change = match verb.as_str() {
        "add" => crate::admin::AccessChange::GroupAdd { group, member },
        "remove" => crate::admin::AccessChange::GroupRemove { group, member },
        _ => return Err(ApiError::NotFound),
    };
    apply_access_change(&auth, &state, &change).await
}

async fn apply_access_change<S: Scope>(
    auth: &Authorized<S>,
    state: &AccessState,
    change: &crate::admin::AccessChange,
) -> Result<axum::Json<Value>, ApiError> {
    use crate::admin::AccessError;
    let actor = crate::admin::Actor {
        kind: ActorKind::Token,
        id: auth.token.id.to_string(),
        via: Via::Api,
    };
    let changed = crate::admin::change_access(
        &state.store,
        state.control.policy(),
        change,
        &actor,
        now_ms(),
    )
    .await
    .map_err(|e| match e {
        AccessError::Store(e) => ApiError::unavailable("cannot change access", &e),
        other => ApiError::InvalidArgument(other.to_string()),
    })?;
    // In effect at once here; other replicas see it within their refresh.
    if let Err(e) = crate::admin::reload_access(&state.store, &state.control).await {
        tracing::warn!(error = %e, "cannot reload access after a change");
    }
    state.control.changed.notify_one();
    Ok(axum::Json(json!({"ok": true, "changed": changed})))
}
