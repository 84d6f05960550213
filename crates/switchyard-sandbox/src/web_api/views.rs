//! `views.*`: modals (opened from a trigger, stacked up to three) and Home tabs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::chat::blocks_error;
use super::{ApiError, ApiResult, Args, Caller, obj};
use crate::Inner;
use crate::blocks::{self, Surface};
use crate::ids::{now_secs, secret};
use crate::workspace::{View, Workspace};

/// A trigger is good for one use within three seconds.
pub const TRIGGER_LIFETIME: Duration = Duration::from_secs(3);
const MAX_MODAL_STACK: usize = 3;
const MAX_TITLE_CHARS: usize = 24;

fn new_hash() -> String {
    format!("{}.{}", now_secs(), secret(8))
}

/// Reads and checks the `view` argument for a modal (`kind` = `modal`) or a Home tab.
fn view_arg(args: &Args, kind: &str) -> Result<Value, ApiError> {
    let view = args
        .json("view", "invalid_arguments")?
        .ok_or_else(|| ApiError::invalid_arguments("missing required field: view"))?;
    let given = view.get("type").and_then(Value::as_str).unwrap_or("");
    if given != kind {
        return Err(ApiError::invalid_arguments(format!(
            "view type must be {kind} [json-pointer:/view/type]"
        )));
    }
    if kind == "modal" {
        let title = view
            .get("title")
            .and_then(|t| t.get("text"))
            .and_then(Value::as_str);
        match title {
            None => {
                return Err(ApiError::invalid_arguments(
                    "missing required field: title [json-pointer:/view]",
                ));
            }
            Some(t) if t.chars().count() > MAX_TITLE_CHARS => {
                return Err(ApiError::invalid_arguments(format!(
                    "must be less than {} characters [json-pointer:/view/title/text]",
                    MAX_TITLE_CHARS + 1
                )));
            }
            _ => {}
        }
    }
    let blocks = view.get("blocks").cloned().unwrap_or_else(|| json!([]));
    blocks::validate(&blocks, Surface::View).map_err(|e| {
        let mut err = blocks_error(e);
        err.code = "invalid_arguments".into();
        err
    })?;
    Ok(view)
}

/// Uses up a trigger, or says why it cannot be used.
fn exchange_trigger(ws: &mut Workspace, args: &Args) -> Result<String, ApiError> {
    let id = args.required("trigger_id")?;
    let trigger = ws
        .triggers
        .get_mut(&id)
        .ok_or_else(|| ApiError::new("invalid_trigger_id"))?;
    if trigger.used {
        return Err(ApiError::new("exchanged_trigger_id"));
    }
    if trigger.created.elapsed() > TRIGGER_LIFETIME {
        return Err(ApiError::new("expired_trigger_id"));
    }
    trigger.used = true;
    Ok(trigger.user.clone())
}

fn new_view(
    ws: &Workspace,
    user: &str,
    kind: &str,
    definition: Value,
    previous: Option<&View>,
) -> View {
    let id = ws.ids.id("V");
    View {
        root_view_id: previous.map_or_else(|| id.clone(), |p| p.root_view_id.clone()),
        previous_view_id: previous.map(|p| p.id.clone()),
        id,
        user: user.to_string(),
        kind: kind.to_string(),
        definition,
        hash: new_hash(),
        state: json!({}),
        open: true,
    }
}

pub fn open(inner: &Arc<Inner>, _: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let definition = view_arg(args, "modal")?;
    let user = exchange_trigger(&mut ws, args)?;
    // A new modal replaces whatever stack the person had open.
    for v in ws
        .views
        .iter_mut()
        .filter(|v| v.user == user && v.kind == "modal")
    {
        v.open = false;
    }
    let view = new_view(&ws, &user, "modal", definition, None);
    let json = ws.view_json(&view);
    ws.views.push(view);
    Ok(obj(json!({"view": json})))
}

pub fn push(inner: &Arc<Inner>, _: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let definition = view_arg(args, "modal")?;
    let user = exchange_trigger(&mut ws, args)?;
    let stack = ws.modal_stack(&user);
    let Some(top) = stack.last().map(|v| (*v).clone()) else {
        return Err(ApiError::invalid_arguments("no modal is open to push onto"));
    };
    if stack.len() >= MAX_MODAL_STACK {
        return Err(ApiError::new("push_limit_reached"));
    }
    let view = new_view(&ws, &user, "modal", definition, Some(&top));
    let json = ws.view_json(&view);
    ws.views.push(view);
    Ok(obj(json!({"view": json})))
}

pub fn update(inner: &Arc<Inner>, _: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let view_id = args.string("view_id");
    let external_id = args.string("external_id");
    if view_id.is_none() && external_id.is_none() {
        return Err(ApiError::invalid_arguments(
            "view_id or external_id is required",
        ));
    }
    let pos = ws
        .views
        .iter()
        .position(|v| {
            v.open
                && (view_id.as_deref() == Some(v.id.as_str())
                    || (external_id.is_some() && v.external_id() == external_id.as_deref()))
        })
        .ok_or_else(|| ApiError::new("not_found"))?;
    let kind = ws.views[pos].kind.clone();
    let definition = view_arg(args, &kind)?;
    if let Some(hash) = args.str("hash")
        && hash != ws.views[pos].hash
    {
        return Err(ApiError::new("hash_conflict"));
    }
    let view = &mut ws.views[pos];
    view.definition = definition;
    view.hash = new_hash();
    let view = view.clone();
    Ok(obj(json!({"view": ws.view_json(&view)})))
}

pub fn publish(inner: &Arc<Inner>, _: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let user = args.required("user_id")?;
    let user = ws
        .users
        .iter()
        .find(|u| u.id == user)
        .map(|u| u.id.clone())
        .ok_or_else(|| ApiError::new("user_not_found"))?;
    let definition = view_arg(args, "home")?;
    if let Some(existing) = ws
        .views
        .iter_mut()
        .find(|v| v.kind == "home" && v.user == user)
    {
        if let Some(hash) = args.str("hash")
            && hash != existing.hash
        {
            return Err(ApiError::new("hash_conflict"));
        }
        existing.definition = definition;
        existing.hash = new_hash();
        let view = existing.clone();
        return Ok(obj(json!({"view": ws.view_json(&view)})));
    }
    let view = new_view(&ws, &user, "home", definition, None);
    let json = ws.view_json(&view);
    ws.views.push(view);
    Ok(obj(json!({"view": json})))
}
