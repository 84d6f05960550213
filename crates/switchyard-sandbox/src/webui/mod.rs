//! The web client: a page, served by the sandbox itself, that draws the workspace as Slack's
//! client would and acts in it as any of its people, through the control API (`/_sandbox/…`).
//!
//! Plain HTML, CSS and JavaScript embedded in the binary: no build step, nothing fetched from
//! elsewhere. The page follows changes over `GET /_sandbox/changes` (server-sent events off the
//! workspace's change counter) and reads back with the control API's ordinary reads.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Inner;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const FAVICON_SVG: &str = include_str!("favicon.svg");

pub fn router() -> Router<Arc<Inner>> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/_ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/_ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/favicon.ico",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
}

/// An embedded file; never cached, so a rebuilt sandbox serves its own page.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}
