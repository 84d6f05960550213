//! Apps' synchronous HTTP routes ([`crate::Declaration::sync_routes`]): the caller waits for
//! the app's answer, so the request is not queued in the inbox. The app's changes, the Slack
//! calls they cause (outbox rows) and its audit records commit in one transaction before the
//! reply is sent; an error or a 4xx/5xx reply commits nothing but the app's `refused` audit
//! records (a refused token, say: the attempt is worth knowing about even though nothing
//! changed). Every Slack call still goes through the outbox and the sender.
//!
//! A request with an `Idempotency-Key` header is done once: its first successful reply is
//! stored in the same transaction as its change (`sync_replies`), and a repeat — the same key,
//! from the same caller (its `Authorization`), with the same method, path and body — gets that
//! reply again (with `Idempotent-Replayed: true`) without the app running, while the caller's
//! API token is still in force (a revoked or expired one's repeat goes to the app, which
//! refuses it). The same key with
//! another request is refused with 422 `idempotency_key_reused`. Failed replies are not kept:
//! nothing changed, so a repeat is simply tried again. Replies are kept for
//! [`REPLAY_WINDOW_MS`].
//!
//! An internal failure answers 500 with an `error_id` and nothing of the failure itself; the
//! log line with the detail carries the same id.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use switchyard_store::{ActorKind, Outcome, SyncReply, Via};

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

/// How long a sync route's stored reply answers repeats of its request: a day, as clients
/// retrying a lost answer do so within minutes.
pub const REPLAY_WINDOW_MS: i64 = 24 * 3600 * 1000;

async fn serve(
    State((engine, name)): State<(Arc<Engine>, &'static str)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return reply(HttpReply::error(400, "body_not_utf8"), false);
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
        return reply(HttpReply::error(404, "not_found"), false);
    };
    match engine.serve_sync(app.as_ref(), &request).await {
        Ok((answer, replayed)) => reply(answer, replayed),
        Err(AppError::User(m)) => {
            tracing::warn!(path = %request.path, error = %m, "sync route refused the request");
            reply(HttpReply::error(400, &m), false)
        }
        Err(e) => {
            let error_id = crate::error_id();
            tracing::error!(path = %request.path, error_id, error = %e, "sync route failed");
            let mut answer = HttpReply::error(500, "internal_error");
            answer.body["error_id"] = error_id.into();
            reply(answer, false)
        }
    }
}

fn reply(answer: HttpReply, replayed: bool) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(answer.body)).into_response();
    if replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// A request's `Idempotency-Key`, as the store keeps it: `key` names the caller's use of the
/// key (the app, the caller's credentials, the key), `fingerprint` the request. Both are
/// SHA-256 hashes, so no credential is stored.
pub(crate) struct Idempotency {
    key: String,
    fingerprint: String,
}

/// SHA-256 of `parts`, each ended by a NUL (so `("ab", "c")` and `("a", "bc")` differ), in hex.
fn hash(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

impl Idempotency {
    fn of(app: &str, request: &HttpRequest) -> Option<Self> {
        let given = request.header("idempotency-key")?;
        let credentials = request.header("authorization").unwrap_or("");
        Some(Self {
            key: Self::caller_key(app, credentials, given),
            fingerprint: hash(&[&request.method, &request.path, &request.body]),
        })
    }

    /// A caller's use of an `Idempotency-Key` (`given`): app `app`, the request's
    /// `Authorization` header (empty without one) and the key, hashed. Another caller's same
    /// key is another key. The apps' async routes key their inbox items with it too.
    pub(crate) fn caller_key(app: &str, authorization: &str, given: &str) -> String {
        hash(&[app, authorization, given])
    }

    /// The answer a stored reply gives this request: the reply again, or 422 when the key was
    /// used for another request.
    fn answer(&self, stored: SyncReply) -> (HttpReply, bool) {
        if stored.fingerprint != self.fingerprint {
            let mut refused = HttpReply::error(422, "idempotency_key_reused");
            refused.body["detail"] =
                "this Idempotency-Key was used for another request; use a new key".into();
            return (refused, false);
        }
        let body = serde_json::from_str(&stored.body).unwrap_or(serde_json::Value::Null);
        (
            HttpReply {
                status: stored.status,
                body,
            },
            true,
        )
    }
}

impl Engine {
    /// Whether a stored reply may answer this request: an API token (`Bearer sy_…`) must still
    /// be in force — the store's check, as the apps make it —, or a revoked or expired token
    /// would get its stored replies for a day. Refused, the request goes to the app, which
    /// answers 401 (or 403, audited) as to any request. Other credentials (a device's token
    /// from the config) are the app's to judge; their replies replay as they are. A token's
    /// scopes cannot change in force (a new grant is a new token: another credential, so
    /// another key).
    async fn may_replay(&self, request: &HttpRequest) -> Result<bool, AppError> {
        match request.bearer() {
            Some(token) if token.starts_with(switchyard_store::TOKEN_PREFIX) => Ok(self
                .store
                .token_verify(token, crate::now_ms())
                .await?
                .is_some()),
            _ => Ok(true),
        }
    }

    /// Runs `app.serve` in a transaction of its own and commits what it wrote when the reply
    /// is a success; a repeat of a request with an `Idempotency-Key` is answered from the
    /// store. The reply, and whether it is a stored one.
    pub(crate) async fn serve_sync(
        &self,
        app: &dyn App,
        request: &HttpRequest,
    ) -> Result<(HttpReply, bool), AppError> {
        let idempotency = Idempotency::of(app.declaration().name, request);
        if let Some(idempotency) = &idempotency
            && let Some(stored) = self.store.sync_reply(&idempotency.key).await?
            && self.may_replay(request).await?
        {
            return Ok(idempotency.answer(stored));
        }
        let now = crate::now_ms();
        let mut batch = BatchTx::single(self.store.clone(), self.owner.clone(), now);
        let mut ctx = Ctx::new(
            &mut batch,
            self.slack.clone(),
            now,
            (ActorKind::System, "api".into()),
            Via::Api,
        );
        let answer = app.serve(&mut ctx, request).await;
        let (outbox, audit, _) = ctx.take();
        let failed = match &answer {
            Ok(answer) => answer.status >= 400,
            Err(_) => true,
        };
        if failed {
            // Nothing the app changed is kept, but a refusal is recorded: on its own, once the
            // app's transaction (and on SQLite the writer's turn) is given back.
            drop(batch);
            for refusal in audit.iter().filter(|r| r.outcome == Outcome::Refused) {
                if let Err(e) = self.store.audit(refusal).await {
                    tracing::warn!(error = %e, "cannot audit a refused sync request");
                }
            }
            return answer.map(|answer| (answer, false));
        }
        let answer = answer?;
        let Some(idempotency) = idempotency else {
            self.commit_alone(&mut batch, outbox, audit).await?;
            return Ok((answer, false));
        };
        let mut tx = match batch.open.take() {
            Some((tx, _)) => tx,
            None => self.store.begin().await?,
        };
        let stored = SyncReply {
            fingerprint: idempotency.fingerprint.clone(),
            status: answer.status,
            body: answer.body.to_string(),
        };
        if !tx.sync_reply_put(&idempotency.key, &stored, now).await? {
            // The same key committed meanwhile (a repeat sent while the first was running):
            // this run's work is dropped, and the first one's reply given.
            drop(tx);
            return match self.store.sync_reply(&idempotency.key).await? {
                Some(stored) => Ok(idempotency.answer(stored)),
                None => Err(AppError::Internal(
                    "a stored reply vanished under its key".into(),
                )),
            };
        }
        for record in &audit {
            tx.audit(record).await?;
        }
        let claimed = self.enqueue_claimed(&mut tx, &outbox).await?;
        tx.commit().await?;
        self.outbox_sent_off(outbox.len(), claimed);
        Ok((answer, false))
    }
}
