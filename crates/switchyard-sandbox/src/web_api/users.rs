//! `users.*`, `usergroups.list` and `usergroups.users.list`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{ApiError, ApiResult, Args, Caller, obj, paginate};
use crate::Inner;
use crate::ids::now_secs;

pub fn info(inner: &Arc<Inner>, _: &Caller, args: &Args) -> ApiResult {
    let ws = inner.ws();
    let user = args
        .str("user")
        .and_then(|u| ws.users.iter().find(|x| x.id == u))
        .ok_or_else(|| ApiError::new("user_not_found"))?;
    Ok(obj(json!({"user": user.to_json(&ws.team.id)})))
}

pub fn list(inner: &Arc<Inner>, _: &Caller, args: &Args) -> ApiResult {
    let ws = inner.ws();
    let all: Vec<Value> = ws.users.iter().map(|u| u.to_json(&ws.team.id)).collect();
    let (page, next) = paginate(&all, args, 1000)?;
    Ok(obj(json!({
        "members": page,
        "cache_ts": now_secs(),
        "response_metadata": {"next_cursor": next},
    })))
}

pub fn lookup_by_email(inner: &Arc<Inner>, _: &Caller, args: &Args) -> ApiResult {
    let ws = inner.ws();
    let email = args.required("email")?;
    let user = ws
        .users
        .iter()
        .find(|u| {
            u.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(&email))
        })
        .ok_or_else(|| ApiError::new("users_not_found"))?;
    Ok(obj(json!({"user": user.to_json(&ws.team.id)})))
}

pub fn usergroups_list(inner: &Arc<Inner>, _: &Caller, args: &Args) -> ApiResult {
    let ws = inner.ws();
    let include_users = args.bool("include_users");
    let groups: Vec<Value> = ws
        .usergroups
        .iter()
        .map(|g| {
            let mut v = json!({
                "id": g.id,
                "team_id": ws.team.id,
                "is_usergroup": true,
                "is_subteam": true,
                "name": g.name,
                "description": "",
                "handle": g.handle,
                "is_external": false,
                "date_create": 1_700_000_000u64,
                "date_update": 1_700_000_000u64,
                "date_delete": 0,
                "auto_type": null,
                "created_by": ws.users.first().map(|u| u.id.clone()),
                "prefs": {"channels": [], "groups": []},
                "user_count": g.users.len(),
            });
            if include_users {
                v["users"] = json!(g.users);
            }
            v
        })
        .collect();
    Ok(obj(json!({"usergroups": groups})))
}

/// `usergroups.users.list`: the member ids of one user group (`usergroup`, required).
pub fn usergroups_users_list(inner: &Arc<Inner>, _: &Caller, args: &Args) -> ApiResult {
    let ws = inner.ws();
    let id = args.required("usergroup")?;
    let group = ws
        .usergroups
        .iter()
        .find(|g| g.id == id)
        .ok_or_else(|| ApiError::new("no_such_subteam"))?;
    Ok(obj(json!({"users": group.users})))
}
