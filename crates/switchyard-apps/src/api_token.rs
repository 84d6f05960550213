//! The API-token check of apps' sync routes (which the engine leaves to the app): a bearer
//! token in force that grants the route's scope.

use switchyard_engine::{ActorKind, AppError, Ctx, HttpReply, HttpRequest};

fn bearer(request: &HttpRequest) -> Option<&str> {
    request
        .header("authorization")
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// `Ok(None)` when the request's token grants `scope` (the token is then the actor of what
/// the request changes); otherwise the reply to send: 401 `invalid_token`, 403
/// `missing_scope: <scope>`.
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
    let Some(given) = bearer(request) else {
        return Ok(Err(HttpReply::error(401, "invalid_token")));
    };
    let Some(token) = ctx.store().token_verify(given, ctx.now_ms()).await? else {
        return Ok(Err(HttpReply::error(401, "invalid_token")));
    };
    if !token.allows(scope) {
        return Ok(Err(HttpReply::error(
            403,
            &format!("missing_scope: {scope}"),
        )));
    }
    ctx.set_actor(ActorKind::Token, &token.id.to_string());
    Ok(Ok(token.name))
}
