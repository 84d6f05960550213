//! Apps' own HTTP routes (`Declaration::http_routes`). A POST is committed to the inbox like
//! anything from Slack, answered `202 {"ok":true,"id":…}`, and handled after. An
//! `Idempotency-Key` header makes a resent request count once (answered with the first one's
//! id); the key with another path or body is refused, 422 `idempotency_key_reused`, as on the
//! sync routes. As there, a key is the caller's: scoped by the app and a hash of the request's
//! `Authorization` (no credential is stored), so two callers' same key do not collide. A
//! route the app listed in `Declaration::http_route_scopes` first needs a bearer API token
//! granting that scope (401/403 as in [`crate::api`]); the token's id and name go into the
//! payload (`token`), for the handler's audit record.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rand::Rng;
use serde_json::json;

use super::http::BODY_LIMIT;
use crate::pipeline::{Engine, Kind};

#[derive(Clone)]
struct Route {
    engine: Arc<Engine>,
    app: &'static str,
    path: &'static str,
    /// The scope an API token must grant, if the app asked for one.
    scope: Option<&'static str>,
}

pub fn routes(engine: Arc<Engine>) -> Router {
    let mut router = Router::new();
    for declaration in engine.registry.current().declarations() {
        for path in &declaration.http_routes {
            let scope = declaration
                .http_route_scopes
                .iter()
                .find(|(scoped, _)| scoped == path)
                .map(|(_, scope)| *scope);
            let state = Route {
                engine: engine.clone(),
                app: declaration.name,
                path,
                scope,
            };
            router = router.route(path, post(accept).with_state(state));
        }
    }
    router
}

fn error(status: StatusCode, code: &str, detail: String) -> Response {
    (
        status,
        axum::Json(json!({"ok": false, "error": code, "detail": detail})),
    )
        .into_response()
}

async fn accept(State(route): State<Route>, headers: HeaderMap, body: Body) -> Response {
    // Before the body is read: nothing unauthenticated gets buffered.
    let token = match route.scope {
        Some(scope) => {
            let object = format!("route:{}", route.path);
            match crate::api::authorize(&route.engine.store, &headers, scope, &object).await {
                Ok(token) => Some(json!({"id": token.id, "name": token.name})),
                Err(refused) => return refused.into_response(),
            }
        }
        None => None,
    };
    let Some(bytes) = super::http::read_limited(body).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("limit is {BODY_LIMIT} bytes"),
        );
    };
    let Ok(text) = String::from_utf8(bytes.to_vec()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the body is not UTF-8".into(),
        );
    };
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
    };
    let keyed = header("idempotency-key").is_some();
    let idempotency_key = match header("idempotency-key") {
        Some(key) => crate::sync_routes::Idempotency::caller_key(
            route.app,
            header("authorization").unwrap_or(""),
            key,
        ),
        None => format!("{:032x}", rand::rng().random::<u128>()),
    };
    let payload = json!({
        "app": route.app,
        "path": route.path,
        "content_type": header(header::CONTENT_TYPE.as_str()).unwrap_or(""),
        "body": text,
        "idempotency_key": idempotency_key,
        "token": token,
    });
    crate::metrics::RECEIVED.inc(Kind::Http.as_str());
    match route.engine.accept(Kind::Http, payload, None).await {
        Ok(id) if keyed && !same_request(&route.engine, id, route.path, &text).await => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for another request; use a new key".into(),
        ),
        Ok(id) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"ok": true, "id": id})),
        )
            .into_response(),
        Err(e) => crate::api::ApiError::unavailable("could not take a request", &e).into_response(),
    }
}

/// Whether inbox item `id` (the one a request's `Idempotency-Key` gave: ours, or a first
/// request's) is this request, path and body, as the apps' sync routes tell a repeat from a
/// key used again for something else. An item that cannot be read is taken as ours.
async fn same_request(engine: &Engine, id: i64, path: &str, body: &str) -> bool {
    let Ok(Some(item)) = engine.store.inbox_get(id).await else {
        return true;
    };
    let Ok(first) = serde_json::from_str::<serde_json::Value>(&item.payload) else {
        return true;
    };
    first["path"] == path && first["body"] == body
}
