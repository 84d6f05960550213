//! Apps' synchronous HTTP routes ([`crate::Declaration::sync_routes`]): the caller waits for
//! the app's answer, so the request is not queued in the inbox. The app's changes, the Slack
//! calls they cause (outbox rows) and its audit records commit in one transaction before the
//! reply is sent; an error or a 4xx/5xx reply commits nothing. Every Slack call still goes
//! through the outbox and the sender.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use switchyard_store::{ActorKind, Via};

use crate::app::{App, AppError, BatchTx, Ctx, HttpReply, HttpRequest};
use crate::pipeline::Engine;

/// The routes of every app's `sync_routes`, each prefix taking every path under it. The paths
/// are fixed at start; each request goes to the app of that name in the current registry, so a
/// reload's config is in force here too (an app disabled by a reload answers 404).
pub fn routes(engine: Arc<Engine>, apps: &[Arc<dyn App>]) -> Router {
    let mut router = Router::new();
    for app in apps {
        let declaration = app.declaration();
        for prefix in declaration.sync_routes {
            let path = format!("{}/{{*rest}}", prefix.trim_end_matches('/'));
            router = router.route(
                &path,
                any(serve).with_state((engine.clone(), declaration.name)),
            );
            // A prefix without a trailing slash (`/api/v1/alerts`) is also a path itself.
            if !prefix.ends_with('/') {
                router = router.route(
                    prefix,
                    any(serve).with_state((engine.clone(), declaration.name)),
                );
            }
        }
    }
    router
}

async fn serve(
    State((engine, name)): State<(Arc<Engine>, &'static str)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return reply(HttpReply::error(400, "body_not_utf8"));
    };
    let request = HttpRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
        body,
    };
    let Some(app) = engine.registry.current().app_named(name) else {
        return reply(HttpReply::error(404, "not_found"));
    };
    match engine.serve_sync(app.as_ref(), &request).await {
        Ok(answer) => reply(answer),
        Err(e) => {
            tracing::warn!(path = %request.path, error = %e, "sync route failed");
            match e {
                AppError::User(m) => reply(HttpReply::error(400, &m)),
                _ => reply(HttpReply::error(500, "internal_error")),
            }
        }
    }
}

fn reply(answer: HttpReply) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(answer.body)).into_response()
}

impl Engine {
    /// Runs `app.serve` in a transaction of its own and commits what it wrote when the reply
    /// is a success.
    pub(crate) async fn serve_sync(
        &self,
        app: &dyn App,
        request: &HttpRequest,
    ) -> Result<HttpReply, AppError> {
        let now = crate::now_ms();
        let mut batch = BatchTx {
            store: self.store.clone(),
            owner: self.owner.clone(),
            ids: Vec::new(),
            now_ms: now,
            open: None,
        };
        let mut ctx = Ctx::new(
            &mut batch,
            self.slack.clone(),
            now,
            (ActorKind::System, "api".into()),
            Via::Api,
        );
        let answer = app.serve(&mut ctx, request).await;
        let (outbox, audit, _) = ctx.take();
        let answer = answer?;
        if answer.status >= 400 {
            return Ok(answer);
        }
        self.commit_alone(&mut batch, outbox, audit).await?;
        Ok(answer)
    }
}
