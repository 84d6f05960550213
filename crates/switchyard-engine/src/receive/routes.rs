//! Apps' own HTTP routes (`Declaration::http_routes`). A POST is committed to the inbox like
//! anything from Slack, answered `202 {"ok":true,"id":…}`, and handled after. An
//! `Idempotency-Key` header makes a resent request count once.

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
}

pub fn routes(engine: Arc<Engine>) -> Router {
    let mut router = Router::new();
    for declaration in engine.registry.declarations() {
        for path in &declaration.http_routes {
            let state = Route {
                engine: engine.clone(),
                app: declaration.name,
                path,
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
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
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
    let idempotency_key = match header("idempotency-key") {
        Some(key) => format!("{}:{key}", route.app),
        None => format!("{:032x}", rand::rng().random::<u128>()),
    };
    let payload = json!({
        "app": route.app,
        "path": route.path,
        "content_type": header(header::CONTENT_TYPE.as_str()).unwrap_or(""),
        "body": text,
        "idempotency_key": idempotency_key,
    });
    match route.engine.accept(Kind::Http, payload).await {
        Ok(id) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"ok": true, "id": id})),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not take a request");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "try again".into(),
            )
        }
    }
}
