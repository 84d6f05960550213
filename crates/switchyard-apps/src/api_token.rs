//! The API-token check of apps' sync routes (which the engine leaves to the app): a bearer
//! token in force that grants the route's scope.

use switchyard_engine::{ActorKind, AppError, Ctx, HttpReply, HttpRequest, Outcome};

/// `Ok(None)` when the request's token grants `scope` (the token is then the actor of what
/// the request changes); otherwise the reply to send: 401 `invalid_token`, 403
/// `missing_scope: <scope>` (audited as refused, as the engine's API does; a 401 is not:
/// anyone can cause one).
pub async fn check(
    ctx: &mut Ctx<'_>,
    request: &HttpRequest,
    scope: &str,
) -> Result<Option<HttpReply>, AppError> {
    Ok(verify(ctx, request, scope).await?.err())
}

/// As [`check`], with the token's name when it grants `scope`.
pub async fn verify(
    ctx: &mut Ctx<'_>,
    request: &HttpRequest,
    scope: &str,
) -> Result<Result<String, HttpReply>, AppError> {
    let Some(given) = request.bearer() else {
        return Ok(Err(HttpReply::error(401, "invalid_token")));
    };
    let Some(token) = ctx.store().token_verify(given, ctx.now_ms()).await? else {
        return Ok(Err(HttpReply::error(401, "invalid_token")));
    };
    if !token.allows(scope) {
        return Ok(Err(missing_scope(
            ctx,
            request,
            token.id,
            &token.name,
            scope,
        )));
    }
    ctx.set_actor(ActorKind::Token, &token.id.to_string());
    Ok(Ok(token.name))
}

/// The 403 for a token in force (`id`, `name`) that lacks `scope`, audited as a refusal: the
/// token is known, so this is someone's attempt. The engine keeps `refused` records though the
/// reply commits nothing else. By the token's id and name, never the token.
pub fn missing_scope(
    ctx: &mut Ctx<'_>,
    request: &HttpRequest,
    id: i64,
    name: &str,
    scope: &str,
) -> HttpReply {
    ctx.set_actor(ActorKind::Token, &id.to_string());
    ctx.audit(
        "api.authorize",
        &format!("route:{}", request.path),
        Outcome::Refused,
        &format!("token {name} lacks scope {scope}"),
    );
    HttpReply::error(403, &format!("missing_scope: {scope}"))
}
