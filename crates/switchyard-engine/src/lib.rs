//! Switchyard's engine: the durable pipeline every app runs on.
//!
//! ```text
//! receive (HTTP | Socket Mode) → inbox → dispatch → app → store + outbox → send → Slack
//! ```
//!
//! - [`receive`]: verifies what Slack sends and hands it to [`pipeline::Engine::receive`], which
//!   commits it to the inbox (deduplicated) before the ack.
//! - [`pipeline`]: routes to the app that declared it and runs its handler in a transaction.
//! - [`app`]: what an app is — a [`app::Declaration`] and handlers working on a [`app::Ctx`].
//! - [`sender`]: the only place Slack's Web API is called from; paced, retried, ordered.
//! - [`server`]: starts all of it from a [`config::Config`].
//! - [`access`]: who may do what (`[access]`: roles, groups, bindings, channel gates), checked
//!   by the dispatcher before a handler runs.
//! - [`api`]: Switchyard's own HTTP API for other systems, behind API tokens; [`admin`]: token
//!   and audit operations it shares with the command line.

pub mod access;
pub mod admin;
pub mod api;
pub mod app;
pub mod config;
pub mod dispatch;
pub mod doctor;
pub mod inbox;
pub mod manifest;
pub mod mention;
pub mod metrics;
pub mod pipeline;
pub mod receive;
pub mod sender;
pub mod server;
pub mod slack;
pub mod sync_routes;
pub mod ticks;

pub use app::{
    App, AppError, AppMigration, Ctx, Declaration, HttpReply, HttpRequest, Input, MentionCommand,
    MessageEvent, NamedWebhook, SlashCommand, webhook_ordering_key,
};
pub use config::{AppSection, CheckOptions, Config, ConfigError, Secret, ValidateSection};
pub use server::{Server, StartOptions};
pub use switchyard_store::{
    ActorKind, AuditRecord, Backend, Outcome, Placeholders, Store, StoreError, Via, sqlx,
};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] switchyard_store::StoreError),
    #[error("Slack: {0}")]
    Slack(#[from] slack::CallError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Startup(String),
    #[error("inbox: {0}")]
    Inbox(String),
}

/// A new error id (8 hex digits): what a person or a caller is shown in place of an internal
/// failure's detail (a store error, a Slack call's transport error), and what the log line with
/// that detail carries, so an operator can go from one to the other.
pub fn error_id() -> String {
    use rand::Rng;
    format!("{:08x}", rand::rng().random::<u32>())
}

/// Milliseconds since the Unix epoch: the store's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
