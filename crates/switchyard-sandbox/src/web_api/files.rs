//! File uploads, version 2: `files.getUploadURLExternal`, the upload URL it returns, then
//! `files.completeUploadExternal`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use serde_json::{Value, json};

use super::chat::{author_message, check_can_post, visible_channel};
use super::{ApiError, ApiResult, Args, Caller, obj};
use crate::Inner;
use crate::events;
use crate::ids::now_secs;
use crate::workspace::UploadedFile;

pub fn get_upload_url(inner: &Arc<Inner>, _: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let filename = args.required("filename")?;
    args.usize("length")
        .ok_or_else(|| ApiError::invalid_arguments("missing required field: length"))?;
    let id = ws.ids.id("F");
    ws.files.insert(
        id.clone(),
        UploadedFile {
            id: id.clone(),
            title: filename.clone(),
            name: filename,
            uploaded: false,
            content: Vec::new(),
            created: now_secs(),
            channels: Vec::new(),
        },
    );
    Ok(obj(
        json!({"upload_url": format!("{}/upload/v1/{id}", inner.base_url), "file_id": id}),
    ))
}

/// The upload URL: takes the file as the raw body, or as the `file` part of a multipart form
/// (what Slack's guide shows with `curl -F`).
pub async fn upload(
    State(inner): State<Arc<Inner>>,
    Path(file_id): Path<String>,
    request: Request,
) -> (StatusCode, String) {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let content = if is_multipart {
        match multipart_file(request).await {
            Ok(bytes) => bytes,
            Err(e) => return (StatusCode::BAD_REQUEST, e),
        }
    } else {
        match Bytes::from_request(request, &()).await {
            Ok(bytes) => bytes,
            Err(e) => return (StatusCode::BAD_REQUEST, e.body_text()),
        }
    };
    let mut ws = inner.ws();
    match ws.files.get_mut(&file_id) {
        Some(file) if !file.uploaded => {
            file.content = content.to_vec();
            file.uploaded = true;
            (StatusCode::OK, format!("OK - {}", content.len()))
        }
        Some(_) => (StatusCode::BAD_REQUEST, "already uploaded".into()),
        None => (StatusCode::NOT_FOUND, "not found".into()),
    }
}

/// The first file part of a multipart form (a part named `file`, or any with a file name).
async fn multipart_file(request: Request) -> Result<Bytes, String> {
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| e.body_text())?;
    while let Some(field) = form.next_field().await.map_err(|e| e.body_text())? {
        if field.name() == Some("file") || field.file_name().is_some() {
            return field.bytes().await.map_err(|e| e.body_text());
        }
    }
    Err("no file in the form".into())
}

pub fn complete_upload(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let mut ws = inner.ws();
    let files = args
        .json("files", "invalid_arguments")?
        .and_then(|f| f.as_array().cloned())
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::invalid_arguments("missing required field: files"))?;
    let mut ids = Vec::new();
    for f in &files {
        let id = f.get("id").and_then(Value::as_str).unwrap_or("");
        let file = ws
            .files
            .get_mut(id)
            .filter(|f| f.uploaded)
            .ok_or_else(|| ApiError::new("file_not_found"))?;
        if let Some(title) = f.get("title").and_then(Value::as_str) {
            file.title = title.to_string();
        }
        ids.push(id.to_string());
    }
    let channel = match args.str("channel_id").or(args.str("channels")) {
        Some(c) => {
            let channel = visible_channel(&ws, caller, Some(c.split(',').next().unwrap_or(c)))?;
            check_can_post(&channel, caller)?;
            Some(channel)
        }
        None => None,
    };
    if let Some(channel) = &channel {
        for id in &ids {
            ws.files
                .get_mut(id)
                .expect("checked")
                .channels
                .push(channel.id.clone());
        }
    }
    let rendered: Vec<Value> = ids
        .iter()
        .map(|id| ws.files[id].to_json(&caller.user_id))
        .collect();
    if let Some(channel) = channel {
        let mut message = author_message(&ws, caller, &channel.id);
        message.text = args.string("initial_comment").unwrap_or_default();
        message.files = Some(json!(rendered));
        message.thread_ts = args.string("thread_ts").filter(|t| !t.is_empty());
        ws.insert_message(message.clone());
        events::emit_new_message(inner, &mut ws, &message);
    }
    Ok(obj(json!({"files": rendered})))
}

pub fn info(inner: &Arc<Inner>, caller: &Caller, args: &Args) -> ApiResult {
    let ws = inner.ws();
    let file = args
        .str("file")
        .and_then(|id| ws.files.get(id))
        .filter(|f| f.uploaded)
        .ok_or_else(|| ApiError::new("file_not_found"))?;
    Ok(obj(json!({
        "file": file.to_json(&caller.user_id),
        "comments": [],
        "response_metadata": {"next_cursor": ""},
    })))
}
