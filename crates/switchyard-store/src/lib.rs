//! Switchyard's durable store, on SQLite (the default: one file, WAL) or PostgreSQL (for
//! several replicas sharing one database).
//!
//! # Tables
//!
//! - `inbox`: everything received from Slack, committed before it is acknowledged. Columns: `id`,
//!   `dedupe_key` (unique), `kind`, `payload` (JSON text), `received_at`, `state` (`pending` →
//!   `done` | `failed`), `attempts`, `not_before`, `lease_owner`, `lease_until`, `error`,
//!   `outcome`, `handled_at`.
//! - `outbox`: every call Switchyard makes to Slack, written in the same transaction as the
//!   change that causes it and sent later by the sender. Columns: `id`, `ordering_key`, `method`,
//!   `payload` (JSON text), `ref_key`, `state` (`pending` → `sent` | `failed`), `attempts`,
//!   `not_before`, `lease_owner`, `lease_until`, `error`, `response` (JSON text), `created_at`,
//!   `sent_at`.
//! - `message_refs`: where a posted message went (`channel`, `ts`), by a key the app chose
//!   (`ref_key`, primary key), so a later update edits that message.
//! - `audit`: who did what, through which surface, to what, and how it ended (see [`Tx::audit`],
//!   [`Store::audit_query`]). Columns: `id`, `at`, `actor_kind`, `actor`, `via`, `action`,
//!   `object`, `outcome`, `detail`.
//! - `api_tokens`: tokens for the HTTP API, stored as SHA-256 hashes (see [`Tx::token_create`],
//!   [`Store::token_verify`]). Columns: `id`, `name` (unique among tokens in force), `hash`,
//!   `scopes`, `created_at`, `expires_at`, `revoked_at`, `last_used_at`.
//! - `access_group_members`, `access_bindings`: groups' members and roles' subjects added at
//!   run time (see [`Tx::access_group_add`], [`Tx::access_bind`]). Columns: `group_name` /
//!   `role`, `member` / `subject`, `added_at`; each pair is the primary key.
//! - `sync_replies`: the first reply of an app's sync route to a request with an
//!   `Idempotency-Key`, stored with the change it answers (see [`Tx::sync_reply_put`],
//!   [`Store::sync_reply`]). Columns: `key` (primary key), `fingerprint`, `status`, `body`,
//!   `created_at`.
//!
//! Times are Unix milliseconds in 64-bit integers; JSON is stored as text. The store knows
//! nothing about Slack or the apps: methods and payloads are opaque strings to it.
//!
//! # Invariants
//!
//! - **Dedupe by key.** An inbox item is stored once per `dedupe_key` (Slack's `event_id`, a
//!   trigger id, an `Idempotency-Key`): a second insert answers [`InboxInsert::Duplicate`] with
//!   the first item's id and changes nothing.
//! - **Claim leases.** Work is *claimed* by setting `lease_owner` and `lease_until`: the owner
//!   holds the item until the lease runs out (an item is claimable when its lease is absent or
//!   `lease_until < now`). After a crash another worker or replica claims it. Finishing an item
//!   (done, sent, failed, retry) checks `lease_owner`, so a worker whose item was taken over
//!   cannot finish it a second time. On PostgreSQL claims use `FOR UPDATE SKIP LOCKED`, so
//!   concurrent claimers never receive the same row; on SQLite writers are serialized anyway.
//! - **Per-key head-of-line order.** The outbox hands out only the oldest pending item of each
//!   `ordering_key` (usually the channel), and only once it is due (`not_before <= now`) and
//!   unleased. An item that waits (a 429, a 5xx) keeps its place and holds back the items
//!   behind it; an item that failed for good stops being pending and lets the next one go.
//! - **One transaction.** [`Tx`] carries an app's own changes, the outbox rows they cause and the
//!   inbox item's completion, so they commit together or not at all.
//!
//! One code path serves both databases through sqlx's `Any` driver (placeholders `$1, $2…`);
//! only the migrations (`migrations/sqlite`, `migrations/postgres`, run at connect), the claim
//! queries' locking clause and the placeholders of the statements built at run time (plain `?`
//! on SQLite, see `Placeholders`) differ.

#![warn(missing_docs)]

mod turns;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// sqlx, as the store uses it: apps reach their own tables through [`Tx::conn`] with it.
pub use sqlx;
mod app_migrations;
pub use app_migrations::AppMigration;
mod access;
mod audit;
mod health;
mod sync_replies;
mod tokens;

pub use access::{GroupMember, RoleBinding};
pub use audit::{
    AUDIT_DEFAULT_LIMIT, AUDIT_MAX_LIMIT, ActorKind, AuditEntry, AuditFilter, AuditRecord, Outcome,
    UnknownValue, Via,
};
pub use health::{Migration, OutboxHealth};
pub use sync_replies::SyncReply;
pub use tokens::{
    ADMIN_SCOPE, ApiTokenInfo, CreatedToken, MAX_NAME_LEN, NewApiToken, TOKEN_PREFIX, TokenError,
    parse_scopes, scopes_allow,
};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Row, TransactionManager as _};
use turns::{Priority, Turn, Turns};
pub use turns::{TURN_BUCKETS, TurnHistogram, WriterTurns};

/// What went wrong in the store. Messages name the operation, or the store's URL with any
/// password replaced by `***`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not one the store can open.
    #[error("invalid store URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The database could not be reached or opened.
    #[error("cannot open the store {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// What the driver said.
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate the store {url}: {source}")]
    Migrate {
        /// The URL, password redacted.
        url: String,
        /// What the migrator said.
        source: sqlx::migrate::MigrateError,
    },
    /// The runtime the store was opened on has shut down, with a write of
    /// [`Store::at_home`] unfinished (rolled back).
    #[error("store: the runtime the store was opened on has shut down")]
    Stopped,
    /// The lock file beside a SQLite database could not be opened or locked.
    #[error("store: cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// A statement failed.
    #[error("store: {op}: {source}")]
    Query {
        /// The operation, e.g. `outbox claim`.
        op: &'static str,
        /// What the driver said.
        source: sqlx::Error,
    },
}

fn query_err(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { op, source }
}

/// A URL with any password replaced by `***`, for messages: the one in the userinfo
/// (`user:password@`, up to the last `@`, so a password with a stray `@`, `/` or `?` is hidden
/// too) and the value of any parameter whose name ends in `password` (`password=`,
/// `sslpassword=`).
pub fn redact(url: &str) -> String {
    let userinfo_hidden = match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            match url[scheme_end + 3..at].split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    };
    let lower = userinfo_hidden.to_ascii_lowercase();
    let mut out = String::with_capacity(userinfo_hidden.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find("password=") {
        let value_start = from + found + "password=".len();
        let value_end = lower[value_start..]
            .find(['&', '#'])
            .map_or(lower.len(), |n| value_start + n);
        out.push_str(&userinfo_hidden[copied..value_start]);
        out.push_str("***");
        copied = value_end;
        from = value_end;
    }
    out.push_str(&userinfo_hidden[copied..]);
    out
}

/// Which database is behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file (or one in-memory database), one writer at a time.
    Sqlite,
    /// A server that several replicas can share.
    Postgres,
}

/// Something received, to be stored in the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInboxItem {
    /// Unique per delivery (e.g. Slack's `event_id`): a second item with the same key is a
    /// duplicate and is not stored.
    pub dedupe_key: String,
    /// `event`, `command` or `interaction` (opaque to the store).
    pub kind: String,
    /// JSON.
    pub payload: String,
    /// When it arrived, Unix ms.
    pub received_at_ms: i64,
}

/// What [`Store::inbox_insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxInsert {
    /// Stored, with this id.
    New(i64),
    /// An item with the same `dedupe_key` was already there; this is its id.
    Duplicate(i64),
}

/// An inbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    /// The row's id (increasing in insertion order).
    pub id: i64,
    /// See [`NewInboxItem::dedupe_key`].
    pub dedupe_key: String,
    /// See [`NewInboxItem::kind`].
    pub kind: String,
    /// JSON.
    pub payload: String,
    /// When it arrived, Unix ms.
    pub received_at_ms: i64,
    /// `pending`, `done` or `failed`.
    pub state: String,
    /// Failed attempts so far (see [`Store::inbox_retry`]).
    pub attempts: i32,
    /// The last attempt's error, if any.
    pub error: Option<String>,
    /// What handling it came to (set by [`Tx::inbox_done`]).
    pub outcome: Option<String>,
}

/// A Slack call to be made, for [`Tx::enqueue`] and [`Tx::record_sent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxItem {
    /// Items with the same key are sent one at a time, in order: usually the channel id.
    pub ordering_key: String,
    /// A Web API method, or `response_url`, `webhook` (opaque to the store).
    pub method: String,
    /// JSON.
    pub payload: String,
    /// The [`Store::message_ref`] key this call posts or updates, if any.
    pub ref_key: Option<String>,
    /// Not sent before this time, Unix ms (0: at once).
    pub not_before_ms: i64,
    /// When it was enqueued, Unix ms.
    pub created_at_ms: i64,
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// The row's id (increasing in insertion order: the order within an ordering key).
    pub id: i64,
    /// See [`NewOutboxItem::ordering_key`].
    pub ordering_key: String,
    /// See [`NewOutboxItem::method`].
    pub method: String,
    /// JSON.
    pub payload: String,
    /// See [`NewOutboxItem::ref_key`].
    pub ref_key: Option<String>,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    /// Failed attempts so far.
    pub attempts: i32,
    /// Not sent before this time, Unix ms.
    pub not_before_ms: i64,
    /// The last error, if any.
    pub error: Option<String>,
    /// Slack's response (JSON text), once sent.
    pub response: Option<String>,
    /// When it was enqueued, Unix ms.
    pub created_at_ms: i64,
    /// Set when an earlier attempt's outcome is unknown: it was claimed, and its lease ran out
    /// with nothing recorded (its process was killed, or the call outlived the lease), so Slack
    /// may have taken that call. The time of the earliest such claim, Unix ms: what it may have
    /// posted is no older (see [`Store::outbox_claim`]).
    pub unconfirmed_since_ms: Option<i64>,
}

/// What [`Store::outbox_finish_wave`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedWave {
    /// One per outcome, in order: `false` where the owner no longer held the item.
    pub recorded: Vec<bool>,
    /// Whether a claim may now find calls it could not before: a sent call had a pending one
    /// behind it on its key (possibly one sent in the same wave), or an outcome was a retry,
    /// a failure or a call given back. `false`: every call was sent and the last of its line,
    /// so the outbox holds nothing newly due.
    pub more: bool,
}

/// How one outbox call ended, for [`Store::outbox_finish_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxOutcome {
    /// The outbox item.
    pub id: i64,
    /// What happened.
    pub result: OutboxResult,
}

/// What happened to one outbox call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxResult {
    /// Slack took it: its response (JSON text), and where the message went when the item has a
    /// `ref_key` (`(ref_key, where)`).
    Sent {
        /// Slack's response, JSON text.
        response: String,
        /// The ref to remember, for a later update of the same message.
        message_ref: Option<(String, MessageRef)>,
    },
    /// A transient failure: try again from `not_before_ms`.
    Retry {
        /// What went wrong.
        error: String,
        /// Not claimable before this time, Unix ms.
        not_before_ms: i64,
        /// Slack may have taken the call all the same (no reply, a reset, a 5xx): the item's
        /// [`OutboxItem::unconfirmed_since_ms`] is set from this attempt's claim, as if its
        /// outcome had been lost.
        unconfirmed: bool,
    },
    /// A permanent failure.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// Not tried: the rate limit would have kept it waiting longer than its lease, so it goes
    /// back, keeping its place, to be claimed when due. Not an attempt.
    Paced {
        /// Not claimable before this time, Unix ms.
        not_before_ms: i64,
    },
}

/// Where a message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    /// The channel id.
    pub channel: String,
    /// The message's `ts`.
    pub ts: String,
}

/// How many rows of a table are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// `pending` (including those claimed and in progress).
    pub pending: i64,
    /// `done` (inbox) or `sent` (outbox).
    pub done_or_sent: i64,
    /// `failed`.
    pub failed: i64,
}

const INBOX_COLUMNS: &str =
    "id, dedupe_key, kind, payload, received_at, state, attempts, error, outcome";
/// A claim's update of `unconfirmed_since`: an item still leased when claimed (its lease ran
/// out with no outcome recorded) may have reached Slack, so the earliest such claim is kept.
const UNCONFIRMED_SINCE: &str = "unconfirmed_since = CASE WHEN lease_until IS NULL \
                                 THEN unconfirmed_since \
                                 ELSE COALESCE(unconfirmed_since, claimed_at, created_at) END";

/// SQLite: the head of every ordering key's line (its oldest pending call), as the rows the
/// `head` mark picks (kept by the triggers of migration 0009). `outbox_heads` indexes them
/// alone, with what the searches read: with 38,000 calls pending over 1,000 channels a claim's
/// search takes about 0.5 ms and the next-due look-up 0.1 ms (the recursive search key by key
/// took 3.7 and 2.5 ms). Named, since the planner otherwise picks `outbox_by_key` and reads
/// every pending row.
const SQLITE_OUTBOX_HEADS: &str =
    "outbox INDEXED BY outbox_heads WHERE head = 1 AND state = 'pending'";

const OUTBOX_COLUMNS: &str = "id, ordering_key, method, payload, ref_key, state, attempts, \
                              not_before, error, response, created_at, unconfirmed_since";

fn inbox_item(row: &AnyRow) -> Result<InboxItem, sqlx::Error> {
    Ok(InboxItem {
        id: row.try_get("id")?,
        dedupe_key: row.try_get("dedupe_key")?,
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        received_at_ms: row.try_get("received_at")?,
        state: row.try_get("state")?,
        attempts: clamp_i32(row.try_get("attempts")?),
        error: row.try_get("error")?,
        outcome: row.try_get("outcome")?,
    })
}

fn outbox_item(row: &AnyRow) -> Result<OutboxItem, sqlx::Error> {
    Ok(OutboxItem {
        id: row.try_get("id")?,
        ordering_key: row.try_get("ordering_key")?,
        method: row.try_get("method")?,
        payload: row.try_get("payload")?,
        ref_key: row.try_get("ref_key")?,
        state: row.try_get("state")?,
        attempts: clamp_i32(row.try_get("attempts")?),
        not_before_ms: row.try_get("not_before")?,
        error: row.try_get("error")?,
        response: row.try_get("response")?,
        created_at_ms: row.try_get("created_at")?,
        unconfirmed_since_ms: row.try_get("unconfirmed_since")?,
    })
}

fn clamp_i32(n: i64) -> i32 {
    n.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// Bind placeholders for a statement built at run time, numbered in the order they appear:
/// `$1, $2…` on PostgreSQL, a plain `?` on SQLite. SQLite binds a plain `?` by position but
/// finds a numbered one by scanning the statement's list of names, when preparing and again
/// when binding, so a batch statement with thousands of `$N` costs their square. Values are
/// bound in the order their placeholders appear, so a value used twice is bound twice. Apps
/// build their own tables' batch statements with it too.
pub struct Placeholders {
    backend: Backend,
    count: usize,
}

/// One placeholder, as [`Placeholders::mark`] numbered it.
pub struct Placeholder(Option<usize>);

impl Placeholders {
    /// Placeholders for one statement on `backend`, numbered from the first.
    pub fn new(backend: Backend) -> Self {
        Self { backend, count: 0 }
    }

    /// The next placeholder.
    pub fn mark(&mut self) -> Placeholder {
        self.count += 1;
        Placeholder((self.backend == Backend::Postgres).then_some(self.count))
    }

    /// `n` placeholders separated by commas, for an `IN (…)` list.
    pub fn list(&mut self, n: usize) -> String {
        let mut list = String::with_capacity(n * 4);
        for i in 0..n {
            let _ = write!(list, "{}{}", if i > 0 { "," } else { "" }, self.mark());
        }
        list
    }

    /// The rows of a multi-row `INSERT` of `rows` rows of `columns` values, and how many
    /// padding rows of NULLs to bind after the real ones: on SQLite the rows are padded to
    /// [`padded_len`] (`SELECT * FROM (VALUES …) WHERE column1 IS NOT NULL`, so the padding
    /// is never inserted), on PostgreSQL they are `VALUES (…),(…)` as given. Binds the real rows
    /// first, then the padding (see [`bind_nulls`]).
    pub fn insert_rows(&mut self, rows: usize, columns: usize) -> (String, usize) {
        if self.backend == Backend::Postgres {
            return (format!("VALUES {}", self.rows(rows, columns)), 0);
        }
        let padded = padded_len(rows);
        (
            format!(
                "SELECT * FROM (VALUES {}) WHERE column1 IS NOT NULL",
                self.rows(padded, columns)
            ),
            padded - rows,
        )
    }

    /// `(…),(…)`: `rows` rows of `columns` placeholders each, for a multi-row `VALUES`.
    pub fn rows(&mut self, rows: usize, columns: usize) -> String {
        let mut out = String::with_capacity(rows * (columns * 4 + 3));
        for i in 0..rows {
            let _ = write!(
                out,
                "{}({})",
                if i > 0 { "," } else { "" },
                self.list(columns)
            );
        }
        out
    }
}

/// How many entries a batch statement for `n` values is built with: the next power of two. A
/// batch of any size then uses one of a few statement texts, which stay in the connection's
/// cache of prepared statements (100 of them). With a text per size, a batch of a size not seen
/// lately — most, under load — was prepared afresh: 100–200 µs for a few hundred rows (the
/// outbox's triggers are compiled with each statement that writes it), while the writer waits.
pub fn padded_len(n: usize) -> usize {
    n.max(1).next_power_of_two()
}

/// `items`, then its last item again up to [`padded_len`] in all: the values of an `IN` list
/// built with [`padded_len`] entries (a value twice in it changes nothing).
pub fn padded<T>(items: &[T]) -> impl Iterator<Item = &T> {
    let extra = padded_len(items.len()) - items.len();
    items
        .iter()
        .chain(std::iter::repeat_n(items.last(), extra).flatten())
}

/// Binds `n` NULLs: the padding rows of [`Placeholders::insert_rows`].
pub fn bind_nulls<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    n: usize,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for _ in 0..n {
        query = query.bind(None::<i64>);
    }
    query
}

impl std::fmt::Display for Placeholder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "${n}"),
            None => f.write_str("?"),
        }
    }
}

/// The store: a connection pool and which database is behind it. Cheap to clone (the clones
/// share the pool).
#[derive(Debug, Clone)]
pub struct Store {
    /// Writes and transactions (see [`Store::connect`]).
    pool: AnyPool,
    /// Reads outside transactions, so a read never waits for the writer (nor, from inside a
    /// handler, for its own transaction).
    read_pool: AnyPool,
    backend: Backend,
    /// SQLite has one writer: this process's writes take turns (see [`turns`]). `None` on
    /// PostgreSQL, which takes many.
    writer: Option<Turns<KeptWriter>>,
    /// A SQLite file's writing connection goes from turn to turn without going back to the
    /// pool (see [`WriteConn`]); an in-memory database's one connection also serves the
    /// reads, so it goes back after every write.
    keep_writer: bool,
    /// The runtime the store was opened on, where [`Store::at_home`] runs writes; `None` when
    /// it was opened outside one.
    home: Option<tokio::runtime::Handle>,
    /// A SQLite database's file (not an in-memory one's), for [`Store::become_sole_server`].
    sqlite_file: Option<Arc<std::path::PathBuf>>,
    /// The WAL's length in frames at the last [`Store::checkpoint`]: unchanged since, nothing
    /// was committed meanwhile, and there is nothing for the writer to finish.
    wal_frames: Arc<std::sync::atomic::AtomicI64>,
}

/// This process is the one server of its SQLite database, for as long as this is held (an
/// exclusive lock on a file beside the database; the kernel lets go of it when the process
/// ends, however it ends).
#[derive(Debug)]
pub struct SoleServer {
    _lock: std::fs::File,
    /// Inbox and outbox items that a server before this one had leased and left unfinished,
    /// made claimable at once.
    pub released: u64,
}

/// The writing connection as a turn keeps it for the next, and when it was taken from the pool.
type KeptWriter = (PoolConnection<Any>, Instant);

/// How long the writing connection goes from turn to turn before it is given back to the pool
/// once and taken again. The pool tests a connection given back (a round trip to SQLite's
/// thread, from a task of its own, which the next writer waits for) and replaces a broken one:
/// this way that costs one round trip a second, not one per write.
const KEEP_WRITER_FOR: Duration = Duration::from_secs(1);

/// The connection a write runs on, holding its turn (SQLite) until dropped. On a SQLite file
/// it is the one writing connection, kept for the next turn instead of given back to the pool.
struct WriteConn {
    /// `None` only once dropped.
    conn: Option<PoolConnection<Any>>,
    /// When `conn` was taken from the pool.
    since: Instant,
    keep: bool,
    // Dropped after `conn` is kept in it or given back to the pool.
    turn: Option<Turn<KeptWriter>>,
}

impl std::ops::Deref for WriteConn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.conn.as_deref().expect("taken only when dropped")
    }
}

impl std::ops::DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn.as_deref_mut().expect("taken only when dropped")
    }
}

impl Drop for WriteConn {
    fn drop(&mut self) {
        if let (Some(turn), Some(conn)) = (self.turn.as_mut(), self.conn.take())
            && self.keep
            && self.since.elapsed() < KEEP_WRITER_FOR
        {
            turn.kept = Some((conn, self.since));
        }
        // Otherwise `conn` went back to the pool just now.
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Rows per multi-row statement: well under SQLite's and PostgreSQL's limits on bound
/// parameters (32,766 and 65,535) at up to nine columns a row.
const INSERT_CHUNK: usize = 500;

/// A checkpoint's passes on a reader go on while the WAL grew by more than this many frames
/// (pages) during the pass before (see [`Store::checkpoint`]): 1 MiB of 4-KiB pages.
const CHECKPOINT_REMAINDER: i64 = 256;
/// Passes on a reader at most, should commits come in as fast as a pass copies them.
const CHECKPOINT_PASSES: u32 = 4;

/// Connections per process on PostgreSQL: the engine's concurrent handler transactions plus the
/// inbox writer, the sender and the claim worker, with room to spare so an ack never waits.
const POSTGRES_POOL: u32 = 32;
/// Reading connections on a SQLite file, beside its one writing connection (WAL lets readers
/// run alongside the writer).
const SQLITE_READERS: u32 = 4;

impl Store {
    /// Opens the store and brings its schema up to date (migrations are idempotent: connecting
    /// again to an up-to-date database changes nothing).
    ///
    /// - `sqlite://path/to/file.db` (or `sqlite:path`): the file is created if missing; WAL,
    ///   `busy_timeout` 10 s and foreign keys on.
    /// - `sqlite::memory:`: one in-memory database for the whole pool, which is a single
    ///   connection (so a [`Tx`] held open makes other calls wait for it). Gone when the store
    ///   is dropped.
    /// - `postgres://…` (or `postgresql://…`): any libpq-style URL sqlx accepts, e.g. with
    ///   `?options=-c%20search_path%3Dmy_schema` to use a schema of one's own.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = Self::open(url).await?;
        store
            .migrator()
            .run(&store.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: redact(url),
                source,
            })?;
        Ok(store)
    }

    /// Opens the store as it is, without migrating: for checks that must change nothing
    /// (`switchyard doctor`, see [`Store::pending_migrations`]).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let shown = redact(url);
        let invalid = |reason| StoreError::InvalidUrl {
            url: shown.clone(),
            reason,
        };
        let (backend, url, sqlite_file) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let memory = path == ":memory:" || path.contains("mode=memory");
            if path.is_empty() || path.starts_with('?') {
                return Err(invalid("no database file: use sqlite://path/to/file.db"));
            }
            let url = if memory || path.contains('?') {
                url.to_string()
            } else {
                format!("{url}?mode=rwc")
            };
            let file = (!memory).then(|| {
                let file = path.split('?').next().unwrap_or(path);
                Arc::new(std::path::PathBuf::from(file))
            });
            (Backend::Sqlite, url, file)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string(), None)
        } else {
            return Err(invalid("use sqlite://path/to/file.db or postgres://…"));
        };
        let memory = backend == Backend::Sqlite && sqlite_file.is_none();
        let options: AnyConnectOptions = url.parse().map_err(|source| StoreError::Connect {
            url: shown.clone(),
            source,
        })?;
        let sqlite_pool = |connections: u32, pragmas: &'static str| {
            AnyPoolOptions::new()
                .max_connections(connections)
                // Keep a connection open: an in-memory database lives only as long as one does,
                // and the writer's page cache stays warm.
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                // A local file does not drop connections: no ping (a round trip) per use.
                .test_before_acquire(false)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        conn.execute(
                            "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                             PRAGMA mmap_size = 268435456;",
                        )
                        .await?;
                        conn.execute(pragmas).await?;
                        Ok(())
                    })
                })
        };
        let connect = |pool_options: AnyPoolOptions| {
            let options = options.clone();
            let shown = shown.clone();
            async move {
                pool_options
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(|source| StoreError::Connect { url: shown, source })
            }
        };
        // SQLite: every write on one connection. Writes take turns anyway, and a connection's
        // page cache survives its own writes but not another's, so one writer reads no page
        // twice. Reports and listings read on connections of their own.
        let (pool, read_pool) = match backend {
            Backend::Sqlite if memory => {
                let pool = connect(sqlite_pool(1, "")).await?;
                (pool.clone(), pool)
            }
            // The writer does not checkpoint the WAL as it commits (that stalls whatever commit
            // crosses the threshold, acks included): [`Store::checkpoint`] does it from a reader.
            Backend::Sqlite => (
                connect(sqlite_pool(1, "PRAGMA wal_autocheckpoint = 0;")).await?,
                connect(sqlite_pool(SQLITE_READERS, "")).await?,
            ),
            Backend::Postgres => {
                let pool = connect(AnyPoolOptions::new().max_connections(POSTGRES_POOL)).await?;
                (pool.clone(), pool)
            }
        };
        let writer = (backend == Backend::Sqlite).then(Turns::default);
        Ok(Self {
            pool,
            read_pool,
            backend,
            writer,
            keep_writer: backend == Backend::Sqlite && !memory,
            home: tokio::runtime::Handle::try_current().ok(),
            sqlite_file,
            wal_frames: Arc::default(),
        })
    }

    /// Runs `write` (given a clone of the store) on the runtime the store was opened on, and
    /// waits for its answer; where there is none, here.
    ///
    /// For writes from threads of a lower priority (the engine's background runtime, at nice
    /// 10). A write holds SQLite's one turn from its first statement to its last answer, and
    /// each answer has to wake the task that sends the next statement: on a busy machine a
    /// low-priority task waits for a CPU at every wake-up while the acks queue behind the
    /// turn. The write must own what it writes: a transaction cannot move between runtimes,
    /// so it begins, writes and commits within `write`.
    pub async fn at_home<T, W>(&self, write: impl FnOnce(Store) -> W) -> Result<T, StoreError>
    where
        W: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(home) = &self.home else {
            return write(self.clone()).await;
        };
        match home.spawn(write(self.clone())).await {
            Ok(answer) => answer,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::Stopped),
        }
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Copies what the SQLite WAL holds back into the database, so that the next commit
    /// writes the WAL over from its start. The server calls it every second; a process that
    /// only ever runs briefly (the CLI) checkpoints when its last connection closes, as SQLite
    /// does. Nothing to do on PostgreSQL.
    ///
    /// In two steps: passive checkpoints on a reading connection copy the bulk without
    /// holding the writer; then, unless nothing was committed since the last time, another
    /// under the writer's turn copies what came in meanwhile, and with no commit between it
    /// and the next, it is complete. Only a complete checkpoint lets SQLite start the WAL
    /// over: under steady load the first step alone never was, and the WAL grew for as long
    /// as the load lasted (160 MB in the bench's 5-s ack test), every frame written to new
    /// blocks of the file.
    ///
    /// The first step is repeated while the WAL grew by more than [`CHECKPOINT_REMAINDER`]
    /// frames during the pass before: each pass copies what came in during the one before,
    /// so under load the writer's step copies a hundred frames or so instead of everything
    /// committed during a whole pass. In the bench's ack test on a slow machine, with one pass
    /// the writer's step copied about 2,000 frames and held the acks for 58-74 ms once a
    /// second; with up to four, 64-160 frames in 25-35 ms (what is left is mostly its two
    /// syncs, which keep the database safe from a power cut and are not skipped).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let op = "checkpoint";
        let (mut passes, mut last) = (0, 0);
        let (frames, copied) = loop {
            // Its row: whether it was blocked, the WAL's frames, those now in the database.
            let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&self.read_pool)
                .await
                .map_err(query_err(op))?;
            let (frames, copied): (i64, i64) = (
                row.try_get(1).map_err(query_err(op))?,
                row.try_get(2).map_err(query_err(op))?,
            );
            passes += 1;
            // A pass copies the WAL as it was when the pass began: what came in meanwhile
            // shows as the next pass's growth.
            let grown = frames - std::mem::replace(&mut last, frames);
            if frames - copied > 0 || grown <= CHECKPOINT_REMAINDER || passes == CHECKPOINT_PASSES {
                break (frames, copied);
            }
        };
        let before = self
            .wal_frames
            .swap(frames, std::sync::atomic::Ordering::Relaxed);
        if frames <= 0 || (frames == before && frames == copied) {
            return Ok(());
        }
        let mut conn = self.write_conn(op).await?;
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut *conn)
            .await
            .map_err(query_err(op))?;
        Ok(())
    }

    /// SQLite: makes this process the database's one server, if no other live server is (see
    /// [`SoleServer`]), and then makes claimable at once what the servers before it had
    /// leased: they are gone, so their leases only hold work up. Without it, a server killed
    /// and started again waited out every lease its last run held (`engine.lease_ms`, 30 s):
    /// the inbox items it had acked and the calls at the head of each channel's line.
    /// Each released lease counts as run out (not as never taken), so a call that may have
    /// reached Slack is still looked for before it is made again.
    ///
    /// `None` on PostgreSQL (replicas share it, and another's lease may be live), for an
    /// in-memory database, and when another server holds the lock (it may be the one before
    /// this, still stopping: leases are then left to run out, as on PostgreSQL).
    pub async fn become_sole_server(&self, owner: &str) -> Result<Option<SoleServer>, StoreError> {
        let Some(db) = &self.sqlite_file else {
            return Ok(None);
        };
        let mut path = db.as_os_str().to_owned();
        path.push("-server.lock");
        let path = std::path::PathBuf::from(path);
        let lock_err = |source| StoreError::Lock {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        let mut released = 0;
        let mut conn = self.write_conn("release leases").await?;
        for table in ["inbox", "outbox"] {
            // `lease_until = 0`: run out long ago, as a claim sees it.
            let sql = format!(
                "UPDATE {table} SET lease_until = 0 WHERE state = 'pending' \
                 AND lease_until IS NOT NULL AND lease_owner <> $1"
            );
            released += sqlx::query(&sql)
                .bind(owner)
                .execute(&mut *conn)
                .await
                .map_err(query_err("release leases"))?
                .rows_affected();
        }
        Ok(Some(SoleServer {
            _lock: file,
            released,
        }))
    }

    /// Waits for this process's turn to write (SQLite; at once on PostgreSQL) and gives the
    /// connection to write on, the one the last turn kept or one from the pool.
    async fn writing(&self, priority: Priority, op: &'static str) -> Result<WriteConn, StoreError> {
        let mut turn = match &self.writer {
            Some(writer) => Some(writer.take(priority, op).await),
            None => None,
        };
        let (conn, since) = match turn.as_mut().and_then(|t| t.kept.take()) {
            Some(kept) => kept,
            None => (
                self.pool.acquire().await.map_err(query_err(op))?,
                Instant::now(),
            ),
        };
        Ok(WriteConn {
            conn: Some(conn),
            since,
            keep: self.keep_writer,
            turn,
        })
    }

    /// [`Store::writing`] for everything but the inbox.
    async fn write_conn(&self, op: &'static str) -> Result<WriteConn, StoreError> {
        self.writing(Priority::Background, op).await
    }

    /// How long this process's writes waited for SQLite's one writer and held it, by
    /// priority and by operation, since the store was opened; `None` on PostgreSQL (no turns).
    pub fn writer_turns(&self) -> Option<WriterTurns> {
        self.writer.as_ref().map(Turns::times)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.read_pool)
            .await
            .map_err(query_err("ping"))?;
        Ok(())
    }

    /// Starts a transaction (see [`Tx`]). It holds one pooled connection until it is committed
    /// or dropped.
    pub async fn begin(&self) -> Result<Tx<'static>, StoreError> {
        Tx::start(self.write_conn("transaction").await?, self.backend).await
    }

    /// `FOR UPDATE SKIP LOCKED` where the database has it (SQLite serializes writers anyway).
    fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    // ---- inbox ----

    /// Stores an item unless one with the same `dedupe_key` is there already (then nothing
    /// changes and the existing item's id comes back as [`InboxInsert::Duplicate`]).
    ///
    /// With `lease = Some((owner, until_ms))` a new item is stored already claimed by `owner`
    /// until `until_ms`: the receiver handles it at once, and if the process dies the lease runs
    /// out and another worker claims it.
    pub async fn inbox_insert(
        &self,
        item: &NewInboxItem,
        lease: Option<(&str, i64)>,
    ) -> Result<InboxInsert, StoreError> {
        let results = self
            .inbox_insert_many(std::slice::from_ref(item), lease)
            .await?;
        results.into_iter().next().ok_or(StoreError::Query {
            op: "inbox insert",
            source: sqlx::Error::RowNotFound,
        })
    }

    /// Stores several items in one transaction (group commit: one disk sync for many
    /// deliveries); otherwise as [`Store::inbox_insert`], item by item, one result per item in
    /// order. A key repeated within `items` is a duplicate of its first occurrence.
    pub async fn inbox_insert_many(
        &self,
        items: &[NewInboxItem],
        lease: Option<(&str, i64)>,
    ) -> Result<Vec<InboxInsert>, StoreError> {
        self.inbox_insert_gathered(|| items, lease).await
    }

    /// [`Store::inbox_insert_many`] of what `gather` returns, called once the write can begin
    /// (on SQLite, once it is the acks' turn): what arrived while the turn was awaited goes
    /// into this write instead of waiting for the next one.
    pub async fn inbox_insert_gathered<Items: AsRef<[NewInboxItem]>>(
        &self,
        gather: impl FnOnce() -> Items,
        lease: Option<(&str, i64)>,
    ) -> Result<Vec<InboxInsert>, StoreError> {
        let op = "inbox insert";
        let mut conn = self.writing(Priority::Ack, op).await?;
        let gathered = gather();
        let items = gathered.as_ref();
        // Up to a chunk's worth is one statement, atomic on its own: no BEGIN and COMMIT, each
        // a round trip to the database, on the path every ack waits for.
        if items.len() > INSERT_CHUNK {
            let mut tx = Tx::start(conn, self.backend).await?;
            let results = insert_inbox_rows(tx.conn(), self.backend, items, lease).await?;
            tx.commit().await?;
            Ok(results)
        } else {
            insert_inbox_rows(&mut conn, self.backend, items, lease).await
        }
    }

    /// Claims up to `limit` pending items that are due (`not_before <= now_ms`, see
    /// [`Store::inbox_retry`]) and that nobody holds (no lease, or `lease_until < now_ms`),
    /// oldest first, leasing them to `owner` until `lease_until_ms`. Concurrent claimers (on
    /// PostgreSQL, several replicas) never receive the same item.
    pub async fn inbox_claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let sql = format!(
            "UPDATE inbox SET lease_owner = $1, lease_until = $2 WHERE id IN (\
             SELECT id FROM inbox WHERE state = 'pending' AND not_before <= $3 \
             AND (lease_until IS NULL OR lease_until < $3) ORDER BY id LIMIT $4{}) \
             RETURNING {INBOX_COLUMNS}",
            self.skip_locked()
        );
        let mut items = self
            .claim(
                &sql,
                "inbox claim",
                Claim {
                    owner,
                    now_ms,
                    lease_until_ms,
                    limit,
                },
                inbox_item,
            )
            .await?;
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    /// Gives an item back after a failed attempt, if `owner` still holds it (otherwise nothing
    /// changes): `attempts` + 1, `error` recorded, lease cleared, not claimable before
    /// `not_before_ms`. The attempt that reaches `max_attempts` moves it to `failed` instead.
    pub async fn inbox_retry(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        not_before_ms: i64,
        max_attempts: u32,
    ) -> Result<(), StoreError> {
        let mut conn = self.write_conn("inbox retry").await?;
        sqlx::query(
            "UPDATE inbox SET attempts = attempts + 1, error = $1, not_before = $2, \
             lease_owner = NULL, lease_until = NULL, \
             state = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE 'pending' END \
             WHERE id = $4 AND lease_owner = $5 AND state = 'pending'",
        )
        .bind(error)
        .bind(not_before_ms)
        .bind(i64::from(max_attempts))
        .bind(id)
        .bind(owner)
        .execute(&mut *conn)
        .await
        .map_err(query_err("inbox retry"))?;
        Ok(())
    }

    /// Deletes up to `limit` handled (`done`) items handled before `handled_before_ms` (oldest
    /// ids first) and returns how many went; pending and failed items stay. Call it until it
    /// returns less than `limit`: each call is one short write, so acks never wait long. A
    /// deleted item's dedupe key is forgotten: a delivery under it again would be new.
    pub async fn inbox_prune_done(
        &self,
        handled_before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.delete_oldest(
            "inbox prune",
            "inbox",
            Some("done"),
            "handled_at",
            handled_before_ms,
            limit,
        )
        .await
    }

    /// One inbox item by id.
    pub async fn inbox_get(&self, id: i64) -> Result<Option<InboxItem>, StoreError> {
        let row = sqlx::query(&format!("SELECT {INBOX_COLUMNS} FROM inbox WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read_pool)
            .await
            .map_err(query_err("inbox get"))?;
        row.as_ref()
            .map(inbox_item)
            .transpose()
            .map_err(query_err("inbox get"))
    }

    /// How many inbox items are pending, done and failed.
    pub async fn inbox_counts(&self) -> Result<StateCounts, StoreError> {
        self.counts("inbox", "done", "inbox counts").await
    }

    async fn counts(
        &self,
        table: &'static str,
        finished: &'static str,
        op: &'static str,
    ) -> Result<StateCounts, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT state, COUNT(*) AS n FROM {table} GROUP BY state"
        ))
        .fetch_all(&self.read_pool)
        .await
        .map_err(query_err(op))?;
        let mut counts = StateCounts::default();
        for row in rows {
            let state: String = row.try_get("state").map_err(query_err(op))?;
            let n: i64 = row.try_get("n").map_err(query_err(op))?;
            match state.as_str() {
                "pending" => counts.pending = n,
                "failed" => counts.failed = n,
                s if s == finished => counts.done_or_sent = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    // ---- outbox ----

    /// Claims the next items to send, leasing them to `owner` until `lease_until_ms`: for each
    /// `ordering_key` only its oldest pending item (so per-key order holds), and only if that
    /// item is due (`not_before <= now_ms`) and nobody holds it (no lease, or
    /// `lease_until < now_ms`). Oldest first, up to `limit`. Concurrent claimers (on
    /// PostgreSQL, several replicas) never receive the same item.
    ///
    /// An item still leased when claimed (its lease ran out with no outcome recorded: every
    /// outcome clears the lease) may have reached Slack: the claim keeps the time of the
    /// earliest such unfinished claim in [`OutboxItem::unconfirmed_since_ms`].
    pub async fn outbox_claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let claim = Claim {
            owner,
            now_ms,
            lease_until_ms,
            limit,
        };
        let mut items = match self.backend {
            Backend::Sqlite => self.outbox_claim_heads(claim).await?,
            Backend::Postgres => {
                let sql = format!(
                    "UPDATE outbox SET lease_owner = $1, lease_until = $2, claimed_at = $3, \
                     {UNCONFIRMED_SINCE} WHERE id IN (\
                     SELECT o.id FROM outbox o WHERE o.state = 'pending' AND o.not_before <= $3 \
                     AND (o.lease_until IS NULL OR o.lease_until < $3) \
                     AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.ordering_key = o.ordering_key \
                                     AND p.state = 'pending' AND p.id < o.id) \
                     ORDER BY o.id LIMIT $4{}) RETURNING {OUTBOX_COLUMNS}",
                    self.skip_locked()
                );
                self.claim(&sql, "outbox claim", claim, outbox_item).await?
            }
        };
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    /// [`Store::outbox_claim`] on SQLite, in two steps so that the search does not hold the one
    /// writer: the due heads of line are found on a reading connection, then claimed by id in
    /// a short update that checks each again (the read saw the outbox as it was when it
    /// began). The search reads the heads' own index (`outbox_heads`), whatever the number of
    /// calls behind them: the one-statement claim looked at every due pending call (a
    /// head-of-line check each, then a sort), which with 38,000 calls pending over 1,000
    /// channels took 27–36 ms a claim — all of it holding the writer, so every ack arriving
    /// meanwhile waited for it; a recursive search key by key then took about 3 ms, on a
    /// reader, at every wake-up of the sender.
    async fn outbox_claim_heads(&self, claim: Claim<'_>) -> Result<Vec<OutboxItem>, StoreError> {
        let op = "outbox claim";
        let heads: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM {SQLITE_OUTBOX_HEADS} AND not_before <= $1 \
             AND (lease_until IS NULL OR lease_until < $1) ORDER BY id LIMIT $2"
        ))
        .bind(claim.now_ms)
        .bind(i64::from(claim.limit))
        .fetch_all(&self.read_pool)
        .await
        .map_err(query_err(op))?;
        if heads.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.write_conn(op).await?;
        let rows = claim_outbox_rows(&mut conn, self.backend, &heads, &claim, op).await?;
        // The next writer's turn: the rows are read without it.
        drop(conn);
        rows.iter()
            .map(outbox_item)
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err(op))
    }

    /// Runs a claim query (`$1` owner, `$2` lease end, `$3` now, `$4` limit) and reads its rows.
    async fn claim<T>(
        &self,
        sql: &str,
        op: &'static str,
        claim: Claim<'_>,
        read: fn(&AnyRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, StoreError> {
        let mut conn = self.write_conn(op).await?;
        let rows = sqlx::query(sql)
            .bind(claim.owner)
            .bind(claim.lease_until_ms)
            .bind(claim.now_ms)
            .bind(i64::from(claim.limit))
            .fetch_all(&mut *conn)
            .await
            .map_err(query_err(op))?;
        // The next writer's turn: the rows are read without it.
        drop(conn);
        rows.iter()
            .map(read)
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err(op))
    }

    /// Records a successful call: state `sent`, Slack's `response` (JSON text) stored, lease
    /// cleared. `false` (and nothing changes) unless `owner` holds the pending item.
    pub async fn outbox_sent(
        &self,
        id: i64,
        owner: &str,
        response: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.finish_leased(
            "outbox sent",
            "state = 'sent', response = $1, sent_at = $2",
            response,
            now_ms,
            id,
            owner,
        )
        .await
    }

    /// After a transient failure: `attempts` + 1, `error` recorded, lease cleared, not claimable
    /// before `not_before_ms`. The item stays first in its key's line, so the items behind it
    /// wait too. `false` (and nothing changes) unless `owner` holds the pending item.
    pub async fn outbox_retry(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        not_before_ms: i64,
    ) -> Result<bool, StoreError> {
        self.finish_leased(
            "outbox retry",
            "attempts = attempts + 1, error = $1, not_before = $2",
            error,
            not_before_ms,
            id,
            owner,
        )
        .await
    }

    /// A permanent failure: state `failed`, `attempts` + 1, `error` recorded, lease cleared; the
    /// next item of its key may go. `false` (and nothing changes) unless `owner` holds the
    /// pending item.
    pub async fn outbox_failed(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.finish_leased(
            "outbox failed",
            "state = 'failed', attempts = attempts + 1, error = $1, sent_at = $2",
            error,
            now_ms,
            id,
            owner,
        )
        .await
    }

    /// Ends a leased pending outbox item: `set` (which uses `$1` text and `$2` a number) plus a
    /// cleared lease, only if `owner` holds it.
    async fn finish_leased(
        &self,
        op: &'static str,
        set: &'static str,
        text: &str,
        number: i64,
        id: i64,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE outbox SET {set}, lease_owner = NULL, lease_until = NULL \
             WHERE id = $3 AND lease_owner = $4 AND state = 'pending'"
        );
        let mut conn = self.write_conn(op).await?;
        let done = sqlx::query(&sql)
            .bind(text)
            .bind(number)
            .bind(id)
            .bind(owner)
            .execute(&mut *conn)
            .await
            .map_err(query_err(op))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the outcomes of many calls in one transaction (or, when they are all sent calls
    /// with no message ref that one statement takes, in that statement alone), each as
    /// [`Store::outbox_sent`], [`Store::outbox_retry`] or [`Store::outbox_failed`] would, and the
    /// message refs the sent posts carry, so the next call of an ordering key never sees a post
    /// without its ref.
    /// Returns one `bool` per outcome, in order: `false` where `owner` no longer held the item.
    pub async fn outbox_finish_many(
        &self,
        owner: &str,
        outcomes: &[OutboxOutcome],
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        Ok(self
            .outbox_finish_wave(owner, outcomes, now_ms)
            .await?
            .recorded)
    }

    /// [`Store::outbox_finish_many`], saying too whether a claim could now find more to send
    /// ([`FinishedWave::more`]).
    pub async fn outbox_finish_wave(
        &self,
        owner: &str,
        outcomes: &[OutboxOutcome],
        now_ms: i64,
    ) -> Result<FinishedWave, StoreError> {
        let op = "outbox finish";
        if outcomes.is_empty() {
            return Ok(FinishedWave {
                recorded: Vec::new(),
                more: false,
            });
        }
        let sent: Vec<(i64, &str)> = outcomes
            .iter()
            .filter_map(|o| match &o.result {
                OutboxResult::Sent { response, .. } => Some((o.id, response.as_str())),
                _ => None,
            })
            .collect();
        // Sent calls carrying no message ref, as many as one statement takes (a wave of
        // replies, the usual case), need that one statement alone, atomic on its own: no
        // BEGIN and COMMIT, each a round trip while the writer is held.
        let one_statement = sent.len() <= SENT_CHUNK
            && outcomes.iter().all(|o| {
                matches!(
                    &o.result,
                    OutboxResult::Sent {
                        message_ref: None,
                        ..
                    }
                )
            });
        if one_statement {
            let mut conn = self.write_conn(op).await?;
            let (finished, more) = mark_sent(&mut conn, self.backend, owner, &sent, now_ms).await?;
            return Ok(FinishedWave {
                recorded: outcomes.iter().map(|o| finished.contains(&o.id)).collect(),
                more,
            });
        }
        let mut tx = Tx::start(self.write_conn(op).await?, self.backend).await?;
        let mut finished = HashSet::with_capacity(outcomes.len());
        for chunk in sent.chunks(SENT_CHUNK) {
            finished.extend(
                mark_sent(tx.conn(), self.backend, owner, chunk, now_ms)
                    .await?
                    .0,
            );
        }
        // Message refs: the last post of a key in this batch wins, as it would one by one.
        let mut refs: Vec<(&str, &str, &str)> = Vec::new();
        for o in outcomes {
            if let OutboxResult::Sent {
                message_ref: Some((key, at)),
                ..
            } = &o.result
                && finished.contains(&o.id)
            {
                refs.retain(|(k, _, _)| k != key);
                refs.push((key, &at.channel, &at.ts));
            }
        }
        for chunk in refs.chunks(INSERT_CHUNK / 3) {
            let mut sql = String::from("INSERT INTO message_refs (ref_key, channel, ts) VALUES ");
            let mut p = Placeholders::new(self.backend);
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                let _ = write!(sql, "({}, {}, {})", p.mark(), p.mark(), p.mark());
            }
            sql.push_str(
                " ON CONFLICT (ref_key) DO UPDATE SET channel = excluded.channel, ts = excluded.ts",
            );
            let mut query = sqlx::query(&sql);
            for (key, channel, ts) in chunk {
                query = query.bind(*key).bind(*channel).bind(*ts);
            }
            query.execute(tx.conn()).await.map_err(query_err(op))?;
        }
        // Retries and failures are rare: one statement each.
        let paced = "paced: waiting for Slack's rate limit".to_string();
        for o in outcomes {
            let (set, text, number) = match &o.result {
                OutboxResult::Sent { .. } => continue,
                OutboxResult::Retry {
                    error,
                    not_before_ms,
                    unconfirmed,
                } => (
                    if *unconfirmed {
                        "attempts = attempts + 1, error = $1, not_before = $2, \
                         unconfirmed_since = COALESCE(unconfirmed_since, claimed_at, created_at)"
                    } else {
                        "attempts = attempts + 1, error = $1, not_before = $2"
                    },
                    error,
                    *not_before_ms,
                ),
                OutboxResult::Failed { error } => (
                    "state = 'failed', attempts = attempts + 1, error = $1, sent_at = $2",
                    error,
                    now_ms,
                ),
                OutboxResult::Paced { not_before_ms } => {
                    ("error = $1, not_before = $2", &paced, *not_before_ms)
                }
            };
            let sql = format!(
                "UPDATE outbox SET {set}, lease_owner = NULL, lease_until = NULL \
                 WHERE id = $3 AND lease_owner = $4 AND state = 'pending'"
            );
            let done = sqlx::query(&sql)
                .bind(text)
                .bind(number)
                .bind(o.id)
                .bind(owner)
                .execute(tx.conn())
                .await
                .map_err(query_err(op))?;
            if done.rows_affected() == 1 {
                finished.insert(o.id);
            }
        }
        tx.commit().await?;
        Ok(FinishedWave {
            recorded: outcomes.iter().map(|o| finished.contains(&o.id)).collect(),
            // A retry or a failure changes what is due (a failed head lets the next one go).
            more: true,
        })
    }

    /// Deletes the sent items whose call was made before `sent_before_ms`, at most `limit`
    /// (oldest first), and returns how many went; pending and failed items stay, and so do
    /// the message refs (a message posted long ago can still be edited). Call it until it
    /// returns less than `limit`: each call is one short write, so acks never wait long.
    pub async fn outbox_prune_sent(
        &self,
        sent_before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.delete_oldest(
            "outbox prune",
            "outbox",
            Some("sent"),
            "sent_at",
            sent_before_ms,
            limit,
        )
        .await
    }

    /// Deletes up to `limit` rows of `table` (in `state`, when given) whose `at` is before
    /// `before_ms`, oldest ids first; how many went. (The names and the state are the callers'
    /// literals, never input.)
    pub(crate) async fn delete_oldest(
        &self,
        op: &'static str,
        table: &'static str,
        state: Option<&'static str>,
        at: &'static str,
        before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let mut conn = self.write_conn(op).await?;
        // By id, which follows the time of handling or sending closely enough: the scan
        // starts at the oldest rows, which are the ones to go.
        let in_state = state.map_or(String::new(), |state| format!("state = '{state}' AND "));
        let done = sqlx::query(&format!(
            "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
             WHERE {in_state}{at} < $1 ORDER BY id LIMIT $2)"
        ))
        .bind(before_ms)
        .bind(i64::from(limit))
        .execute(&mut *conn)
        .await
        .map_err(query_err(op))?;
        Ok(done.rows_affected())
    }

    /// One outbox item by id.
    pub async fn outbox_get(&self, id: i64) -> Result<Option<OutboxItem>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.read_pool)
        .await
        .map_err(query_err("outbox get"))?;
        row.as_ref()
            .map(outbox_item)
            .transpose()
            .map_err(query_err("outbox get"))
    }

    /// Up to `limit` items, oldest first; with `state`, only those in that state.
    pub async fn outbox_list(
        &self,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = match state {
            Some(_) => {
                format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = $1 ORDER BY id LIMIT $2")
            }
            None => format!("SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY id LIMIT $1"),
        };
        let mut query = sqlx::query(&sql);
        if let Some(state) = state {
            query = query.bind(state);
        }
        let rows = query
            .bind(i64::from(limit))
            .fetch_all(&self.read_pool)
            .await
            .map_err(query_err("outbox list"))?;
        rows.iter()
            .map(outbox_item)
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err("outbox list"))
    }

    /// When calls of `methods` were sent since `since_ms` (Unix ms): `(ordering_key, sent_at)`,
    /// oldest first; only for `keys` when given. What any process sent, so a sender that just
    /// started, or one beside other replicas, paces by what Slack has already seen. Reads only
    /// the newest few thousand rows (by id), so it stays cheap on a long outbox.
    pub async fn outbox_recent_sends(
        &self,
        methods: &[&str],
        keys: Option<&[String]>,
        since_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        const OP: &str = "outbox recent sends";
        if methods.is_empty() || keys.is_some_and(|k| k.is_empty()) {
            return Ok(Vec::new());
        }
        let mut p = Placeholders::new(self.backend);
        let mut sql = format!(
            "SELECT ordering_key, sent_at FROM outbox WHERE state = 'sent' AND sent_at >= {} \
             AND id > (SELECT COALESCE(MAX(id), 0) - 5000 FROM outbox) AND method IN ({})",
            p.mark(),
            p.list(methods.len())
        );
        if let Some(keys) = keys {
            let _ = write!(sql, " AND ordering_key IN ({})", p.list(keys.len()));
        }
        sql.push_str(" ORDER BY sent_at");
        let mut query = sqlx::query(&sql).bind(since_ms);
        for m in methods {
            query = query.bind(*m);
        }
        for k in keys.unwrap_or_default() {
            query = query.bind(k.as_str());
        }
        let rows = query
            .fetch_all(&self.read_pool)
            .await
            .map_err(query_err(OP))?;
        rows.iter()
            .map(|r| Ok((r.try_get("ordering_key")?, r.try_get("sent_at")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(query_err(OP))
    }

    /// How many outbox items are pending, sent and failed.
    pub async fn outbox_counts(&self) -> Result<StateCounts, StoreError> {
        self.counts("outbox", "sent", "outbox counts").await
    }

    /// When the sender should claim again, or `None` when nothing is pending: it may sleep
    /// until then, or until told of new items or recorded outcomes. On SQLite, the earliest
    /// time a head of line becomes claimable (its `not_before`, and for one leased, the end
    /// of its lease): the calls behind a head cannot go before it, so their `not_before`
    /// (usually 0) would only wake the sender to claim nothing — every millisecond while a
    /// backlog waits behind heads in flight. On PostgreSQL the earliest `not_before` among
    /// pending items (leased ones included).
    pub async fn outbox_next_due(&self) -> Result<Option<i64>, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => format!(
                "SELECT MIN(CASE WHEN lease_until IS NULL THEN not_before \
                 ELSE MAX(not_before, lease_until + 1) END) AS due FROM {SQLITE_OUTBOX_HEADS}"
            ),
            Backend::Postgres => {
                "SELECT MIN(not_before) AS due FROM outbox WHERE state = 'pending'".to_string()
            }
        };
        let row = sqlx::query(&sql)
            .fetch_one(&self.read_pool)
            .await
            .map_err(query_err("outbox next due"))?;
        row.try_get::<Option<i64>, _>("due")
            .map_err(query_err("outbox next due"))
    }

    // ---- message refs ----

    /// Remembers where the message for `key` went, replacing what was there.
    pub async fn message_ref_set(
        &self,
        key: &str,
        channel: &str,
        ts: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.write_conn("message ref set").await?;
        sqlx::query(
            "INSERT INTO message_refs (ref_key, channel, ts) VALUES ($1, $2, $3) \
             ON CONFLICT (ref_key) DO UPDATE SET channel = excluded.channel, ts = excluded.ts",
        )
        .bind(key)
        .bind(channel)
        .bind(ts)
        .execute(&mut *conn)
        .await
        .map_err(query_err("message ref set"))?;
        Ok(())
    }

    /// Where the message for `key` went, if it was posted.
    pub async fn message_ref(&self, key: &str) -> Result<Option<MessageRef>, StoreError> {
        let row = sqlx::query("SELECT channel, ts FROM message_refs WHERE ref_key = $1")
            .bind(key)
            .fetch_optional(&self.read_pool)
            .await
            .map_err(query_err("message ref"))?;
        row.map(|r| {
            Ok(MessageRef {
                channel: r.try_get("channel")?,
                ts: r.try_get("ts")?,
            })
        })
        .transpose()
        .map_err(query_err("message ref"))
    }
}

/// Sent calls a statement records (each binds three values: its id twice, its response).
const SENT_CHUNK: usize = INSERT_CHUNK / 3;

/// Marks `sent` (id, Slack's response) sent if `owner` still holds them, in one statement
/// (`response` by a CASE on id); returns the ids it marked, and whether any of them has a
/// pending call behind it on its key (which it no longer holds back). At most [`SENT_CHUNK`]
/// calls.
async fn mark_sent(
    db: &mut AnyConnection,
    backend: Backend,
    owner: &str,
    sent: &[(i64, &str)],
    now_ms: i64,
) -> Result<(HashSet<i64>, bool), StoreError> {
    let op = "outbox finish";
    let mut finished = HashSet::with_capacity(sent.len());
    if sent.is_empty() {
        return Ok((finished, false));
    }
    let mut p = Placeholders::new(backend);
    let sent_at = p.mark();
    let mut cases = String::new();
    for _ in padded(sent) {
        let _ = write!(cases, " WHEN {} THEN {}", p.mark(), p.mark());
    }
    let lease_owner = p.mark();
    let list = p.list(padded_len(sent.len()));
    let sql = format!(
        "UPDATE outbox SET state = 'sent', sent_at = {sent_at}, \
         response = CASE id{cases} END, lease_owner = NULL, lease_until = NULL \
         WHERE lease_owner = {lease_owner} AND state = 'pending' AND id IN ({list}) \
         RETURNING id, EXISTS (SELECT 1 FROM outbox q WHERE q.ordering_key = outbox.ordering_key \
                               AND q.state = 'pending' AND q.id > outbox.id) AS more"
    );
    let mut query = sqlx::query(&sql).bind(now_ms);
    for (id, response) in padded(sent) {
        query = query.bind(*id).bind(*response);
    }
    query = query.bind(owner);
    for (id, _) in padded(sent) {
        query = query.bind(*id);
    }
    let mut more = false;
    for row in query.fetch_all(db).await.map_err(query_err(op))? {
        finished.insert(row.try_get::<i64, _>("id").map_err(query_err(op))?);
        // An integer on SQLite, a boolean on PostgreSQL.
        more |= row
            .try_get::<bool, _>("more")
            .or_else(|_| row.try_get::<i64, _>("more").map(|n| n != 0))
            .map_err(query_err(op))?;
    }
    Ok((finished, more))
}

/// [`Store::inbox_insert_many`]'s statements, on a connection or in a transaction.
async fn insert_inbox_rows(
    db: &mut AnyConnection,
    backend: Backend,
    items: &[NewInboxItem],
    lease: Option<(&str, i64)>,
) -> Result<Vec<InboxInsert>, StoreError> {
    let op = "inbox insert";
    // Which key's first occurrence got which id; a key absent after the inserts was there
    // before them.
    let mut ids: HashMap<String, i64> = HashMap::with_capacity(items.len());
    for chunk in items.chunks(INSERT_CHUNK) {
        // One statement per chunk: statements, not rows, are what a group commit pays for.
        let (rows, padding) = Placeholders::new(backend).insert_rows(chunk.len(), 6);
        let sql = format!(
            "INSERT INTO inbox (dedupe_key, kind, payload, received_at, lease_owner, \
             lease_until) {rows} ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key"
        );
        let (owner, until) = (lease.map(|(owner, _)| owner), lease.map(|(_, until)| until));
        let mut query = sqlx::query(&sql);
        for item in chunk {
            query = query
                .bind(&item.dedupe_key)
                .bind(&item.kind)
                .bind(&item.payload)
                .bind(item.received_at_ms)
                .bind(owner)
                .bind(until);
        }
        let query = bind_nulls(query, padding * 6);
        let rows = query.fetch_all(&mut *db).await.map_err(query_err(op))?;
        for row in &rows {
            let id: i64 = row.try_get("id").map_err(query_err(op))?;
            ids.insert(row.try_get("dedupe_key").map_err(query_err(op))?, id);
        }
    }
    let mut results = Vec::with_capacity(items.len());
    let mut claimed: HashSet<&str> = HashSet::with_capacity(items.len());
    let mut existing: HashMap<String, i64> = HashMap::new();
    let missing: Vec<&str> = items
        .iter()
        .map(|i| i.dedupe_key.as_str())
        .filter(|k| !ids.contains_key(*k))
        .collect();
    for chunk in missing.chunks(INSERT_CHUNK) {
        let placeholders = Placeholders::new(backend).list(padded_len(chunk.len()));
        let sql = format!("SELECT id, dedupe_key FROM inbox WHERE dedupe_key IN ({placeholders})");
        let mut query = sqlx::query(&sql);
        for key in padded(chunk) {
            query = query.bind(*key);
        }
        for row in query.fetch_all(&mut *db).await.map_err(query_err(op))? {
            existing.insert(
                row.try_get("dedupe_key").map_err(query_err(op))?,
                row.try_get("id").map_err(query_err(op))?,
            );
        }
    }
    for item in items {
        let key = item.dedupe_key.as_str();
        let result = match ids.get(key) {
            // The first occurrence in `items` is the one that was stored.
            Some(&id) if claimed.insert(key) => InboxInsert::New(id),
            Some(&id) => InboxInsert::Duplicate(id),
            None => InboxInsert::Duplicate(*existing.get(key).ok_or(StoreError::Query {
                op,
                source: sqlx::Error::RowNotFound,
            })?),
        };
        results.push(result);
    }
    Ok(results)
}

/// The arguments every claim query binds.
struct Claim<'a> {
    owner: &'a str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
}

/// Claims for `claim.owner`, of the outbox rows `ids` (in ascending order), up to
/// `claim.limit`, oldest first, those [`Store::outbox_claim`] would claim now: pending, due,
/// nobody's lease in force, and first of their line. Each is checked here, under the writer,
/// whatever the caller saw of it before (a read's snapshot, or rows this transaction just
/// queued). Returns the claimed rows.
async fn claim_outbox_rows(
    conn: &mut AnyConnection,
    backend: Backend,
    ids: &[i64],
    claim: &Claim<'_>,
    op: &'static str,
) -> Result<Vec<AnyRow>, StoreError> {
    let limit = claim.limit as usize;
    let mut rows = Vec::new();
    for chunk in ids.chunks(INSERT_CHUNK) {
        if rows.len() >= limit {
            break;
        }
        let mut p = Placeholders::new(backend);
        let (owner, until, claimed_at) = (p.mark(), p.mark(), p.mark());
        let list = p.list(padded_len(chunk.len()));
        let (due, expired, left) = (p.mark(), p.mark(), p.mark());
        let sql = format!(
            "UPDATE outbox SET lease_owner = {owner}, lease_until = {until}, \
             claimed_at = {claimed_at}, {UNCONFIRMED_SINCE} WHERE id IN (\
             SELECT o.id FROM outbox o WHERE o.id IN ({list}) AND o.state = 'pending' \
             AND o.not_before <= {due} AND (o.lease_until IS NULL OR o.lease_until < {expired}) \
             AND NOT EXISTS (SELECT 1 FROM outbox q WHERE q.ordering_key = o.ordering_key \
                             AND q.state = 'pending' AND q.id < o.id) \
             ORDER BY o.id LIMIT {left}) RETURNING {OUTBOX_COLUMNS}"
        );
        let mut query = sqlx::query(&sql)
            .bind(claim.owner)
            .bind(claim.lease_until_ms)
            .bind(claim.now_ms);
        for id in padded(chunk) {
            query = query.bind(*id);
        }
        let query = query
            .bind(claim.now_ms)
            .bind(claim.now_ms)
            .bind((limit - rows.len()) as i64);
        rows.extend(query.fetch_all(&mut *conn).await.map_err(query_err(op))?);
    }
    Ok(rows)
}

/// A transaction: an app's own changes (through [`Tx::conn`]), the outbox items they cause and
/// the inbox item's completion commit together. Dropped without [`Tx::commit`], it rolls back.
///
/// Begun and ended on its connection directly (not as sqlx's `Transaction`, which would give
/// the connection back to the pool at its end): on SQLite the writing connection then goes on
/// to the next turn (see [`WriteConn`]).
pub struct Tx<'c> {
    conn: WriteConn,
    backend: Backend,
    /// Begun, and neither committed nor rolled back yet.
    open: bool,
    _borrows: PhantomData<&'c mut AnyConnection>,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            // Queued on the connection before it goes to the next writer (or back to the
            // pool, which runs it at once), as sqlx's own transactions do.
            <Any as sqlx::Database>::TransactionManager::start_rollback(&mut self.conn);
        }
    }
}

impl Tx<'static> {
    /// Begins a transaction on `conn`.
    async fn start(mut conn: WriteConn, backend: Backend) -> Result<Self, StoreError> {
        <Any as sqlx::Database>::TransactionManager::begin(&mut conn, None)
            .await
            .map_err(query_err("begin"))?;
        Ok(Tx {
            conn,
            backend,
            open: true,
            _borrows: PhantomData,
        })
    }
}

impl Tx<'_> {
    /// Adds a Slack call to the outbox (state `pending`); it is sent after the commit. Returns
    /// its id.
    pub async fn enqueue(&mut self, item: &NewOutboxItem) -> Result<i64, StoreError> {
        self.lock_ordering_keys(std::slice::from_ref(item)).await?;
        let row = sqlx::query(
            "INSERT INTO outbox (ordering_key, method, payload, ref_key, not_before, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&item.ordering_key)
        .bind(&item.method)
        .bind(&item.payload)
        .bind(&item.ref_key)
        .bind(item.not_before_ms)
        .bind(item.created_at_ms)
        .fetch_one(&mut *self.conn)
        .await
        .map_err(query_err("outbox enqueue"))?;
        row.try_get("id").map_err(query_err("outbox enqueue"))
    }

    /// Records a call that was already made at once (a `views.open` that could not wait): state
    /// `sent`, with its `response`. It never holds back its ordering key. Returns its id.
    pub async fn record_sent(
        &mut self,
        item: &NewOutboxItem,
        response: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO outbox (ordering_key, method, payload, ref_key, not_before, created_at, \
             state, response, sent_at) VALUES ($1, $2, $3, $4, $5, $6, 'sent', $7, $8) RETURNING id",
        )
        .bind(&item.ordering_key)
        .bind(&item.method)
        .bind(&item.payload)
        .bind(&item.ref_key)
        .bind(item.not_before_ms)
        .bind(item.created_at_ms)
        .bind(response)
        .bind(now_ms)
        .fetch_one(&mut *self.conn)
        .await
        .map_err(query_err("outbox record"))?;
        row.try_get("id").map_err(query_err("outbox record"))
    }

    /// Marks an inbox item handled (state `done`, `outcome` recorded, lease cleared), only if
    /// `owner` holds it and it is pending; `false` otherwise (another worker took it over).
    pub async fn inbox_done(
        &mut self,
        id: i64,
        owner: &str,
        outcome: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE inbox SET state = 'done', outcome = $1, handled_at = $2, \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $3 AND lease_owner = $4 AND state = 'pending'",
        )
        .bind(outcome)
        .bind(now_ms)
        .bind(id)
        .bind(owner)
        .execute(&mut *self.conn)
        .await
        .map_err(query_err("inbox done"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Takes a batch of inbox items for handling in this transaction: each one `owner` holds
    /// and that is pending is marked done (`outcome` "handled", lease cleared). Returns the ids
    /// taken; the others belong to another worker now. Marking first holds the rows (SQLite's
    /// write lock, PostgreSQL's row locks) until the commit, so no one can take them over while
    /// they are handled; an item whose handling fails gets [`Tx::inbox_outcome`] or
    /// [`Tx::inbox_requeue`] before the commit.
    pub async fn inbox_take(
        &mut self,
        ids: &[i64],
        owner: &str,
        now_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let op = "inbox take";
        let mut taken = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(INSERT_CHUNK) {
            let mut p = Placeholders::new(self.backend);
            let (handled_at, lease_owner, state) = (p.mark(), p.mark(), p.mark());
            let list = p.list(padded_len(chunk.len()));
            let sql = format!(
                "UPDATE inbox SET state = 'done', outcome = 'handled', handled_at = {handled_at}, \
                 lease_owner = NULL, lease_until = NULL \
                 WHERE lease_owner = {lease_owner} AND state = {state} AND id IN ({list}) \
                 RETURNING id"
            );
            let mut query = sqlx::query(&sql).bind(now_ms).bind(owner).bind("pending");
            for id in padded(chunk) {
                query = query.bind(*id);
            }
            for row in query
                .fetch_all(&mut *self.conn)
                .await
                .map_err(query_err(op))?
            {
                taken.push(row.try_get("id").map_err(query_err(op))?);
            }
        }
        Ok(taken)
    }

    /// Records what handling a taken item came to, when it was not plain "handled".
    pub async fn inbox_outcome(&mut self, id: i64, outcome: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE inbox SET outcome = $1 WHERE id = $2")
            .bind(outcome)
            .bind(id)
            .execute(&mut *self.conn)
            .await
            .map_err(query_err("inbox outcome"))?;
        Ok(())
    }

    /// Gives a taken item back for a later attempt, as [`Store::inbox_retry`] does for a held
    /// one: `attempts` + 1, `error` recorded, claimable from `not_before_ms`; `failed` once
    /// `max_attempts` is reached.
    pub async fn inbox_requeue(
        &mut self,
        id: i64,
        error: &str,
        not_before_ms: i64,
        max_attempts: u32,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE inbox SET attempts = attempts + 1, error = $1, not_before = $2, \
             outcome = NULL, handled_at = NULL, lease_owner = NULL, lease_until = NULL, \
             state = CASE WHEN attempts + 1 >= $3 THEN 'failed' ELSE 'pending' END \
             WHERE id = $4",
        )
        .bind(error)
        .bind(not_before_ms)
        .bind(i64::from(max_attempts))
        .bind(id)
        .execute(&mut *self.conn)
        .await
        .map_err(query_err("inbox requeue"))?;
        Ok(())
    }

    /// Adds several Slack calls to the outbox, in order (ids increase along `items`), with one
    /// statement per few hundred rows.
    pub async fn enqueue_many(&mut self, items: &[NewOutboxItem]) -> Result<(), StoreError> {
        self.insert_outbox_rows(items, false).await.map(|_| ())
    }

    /// As [`Tx::enqueue_many`], and of the new rows, up to `limit` that head their line (no
    /// pending row before them on their ordering key) and are due are claimed for `owner`
    /// until `lease_until_ms` in this same transaction, as [`Store::outbox_claim`] would claim
    /// them after the commit: the caller hands them to its sender once committed, so the
    /// first call of a quiet channel waits for no claim of its own. On PostgreSQL nothing is
    /// claimed here: replicas commit concurrently, so whether a row heads its line is known
    /// only after the commit (the sender's claim, under its row locks); on SQLite, with its
    /// one writer, no other row can come before it once this transaction has looked.
    pub async fn enqueue_many_claimed(
        &mut self,
        items: &[NewOutboxItem],
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let claim = self.backend == Backend::Sqlite && limit > 0;
        let mut ids = self.insert_outbox_rows(items, claim).await?;
        if !claim || ids.is_empty() {
            return Ok(Vec::new());
        }
        ids.sort_unstable();
        let op = "outbox claim at enqueue";
        let claim = Claim {
            owner,
            now_ms,
            lease_until_ms,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
        };
        let rows = claim_outbox_rows(&mut self.conn, self.backend, &ids, &claim, op).await?;
        let mut claimed = rows
            .iter()
            .map(outbox_item)
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err(op))?;
        claimed.sort_by_key(|i| i.id);
        Ok(claimed)
    }

    /// PostgreSQL: holds, until this transaction ends, a lock on each ordering key `items` queue
    /// on. An outbox id is drawn at the insert but seen by the sender only at the commit, so
    /// two transactions queuing on one channel at once (two replicas, or two batches of one)
    /// could commit the other way round, and the sender would take the later id first, with
    /// the earlier one not yet visible. Holding the key's lock from before the insert to the
    /// commit makes the second wait for the first: ids on a key are committed in their order.
    /// Keys are locked in byte order (as `str` sorts here, `COLLATE "C"` there) so two
    /// transactions never wait on each other the other way round. Nothing on SQLite: its one
    /// writer commits in id order.
    async fn lock_ordering_keys(&mut self, items: &[NewOutboxItem]) -> Result<(), StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        let mut keys: Vec<&str> = items.iter().map(|i| i.ordering_key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        for chunk in keys.chunks(INSERT_CHUNK) {
            let rows = Placeholders::new(self.backend).rows(chunk.len(), 1);
            // `::text`: the lock function returns `void`, which sqlx's `Any` cannot read.
            let sql = format!(
                "SELECT pg_advisory_xact_lock(hashtextextended(k, 0))::text \
                 FROM (VALUES {rows}) AS v(k) ORDER BY k COLLATE \"C\""
            );
            let mut query = sqlx::query(&sql);
            for key in chunk {
                query = query.bind(*key);
            }
            query
                .fetch_all(&mut *self.conn)
                .await
                .map_err(query_err("outbox lock ordering keys"))?;
        }
        Ok(())
    }

    /// The outbox rows' inserts, a statement per [`INSERT_CHUNK`]; with `returning`, the new
    /// rows' ids.
    async fn insert_outbox_rows(
        &mut self,
        items: &[NewOutboxItem],
        returning: bool,
    ) -> Result<Vec<i64>, StoreError> {
        self.lock_ordering_keys(items).await?;
        let mut ids = Vec::new();
        for chunk in items.chunks(INSERT_CHUNK) {
            let (rows, padding) = Placeholders::new(self.backend).insert_rows(chunk.len(), 6);
            let mut sql = format!(
                "INSERT INTO outbox (ordering_key, method, payload, ref_key, not_before, \
                 created_at) {rows}"
            );
            if returning {
                sql.push_str(" RETURNING id");
            }
            let mut query = sqlx::query(&sql);
            for item in chunk {
                query = query
                    .bind(&item.ordering_key)
                    .bind(&item.method)
                    .bind(&item.payload)
                    .bind(&item.ref_key)
                    .bind(item.not_before_ms)
                    .bind(item.created_at_ms);
            }
            let query = bind_nulls(query, padding * 6);
            if returning {
                for row in query
                    .fetch_all(&mut *self.conn)
                    .await
                    .map_err(query_err("outbox enqueue"))?
                {
                    ids.push(row.try_get("id").map_err(query_err("outbox enqueue"))?);
                }
            } else {
                query
                    .execute(&mut *self.conn)
                    .await
                    .map_err(query_err("outbox enqueue"))?;
            }
        }
        Ok(ids)
    }

    /// Replaces the payload of the pending `method` call for `ref_key` that no sender holds
    /// yet (no lease, or an expired one) with `payload`: the call still goes in its place in
    /// line, with the latest content. `false` when there is none (never queued, already sent,
    /// or being sent now): the caller queues a new one. For edits where only the latest state
    /// matters (a summary edited as it grows), so many changes do not become many calls.
    pub async fn outbox_replace_pending(
        &mut self,
        method: &str,
        ref_key: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        // `state = 'pending'` is written out (not bound) so SQLite uses the partial index.
        let done = sqlx::query(
            "UPDATE outbox SET payload = $1 WHERE id = (SELECT id FROM outbox \
             WHERE ref_key = $2 AND method = $3 AND state = 'pending' \
             AND (lease_until IS NULL OR lease_until < $4) ORDER BY id DESC LIMIT 1) \
             AND state = 'pending' AND (lease_until IS NULL OR lease_until < $4)",
        )
        .bind(payload)
        .bind(ref_key)
        .bind(method)
        .bind(now_ms)
        .execute(&mut *self.conn)
        .await
        .map_err(query_err("outbox replace pending"))?;
        Ok(done.rows_affected() == 1)
    }

    /// How many calls are pending for `ordering_key` (a channel's line: what waits for Slack's
    /// rate limit there), those being sent included.
    pub async fn outbox_pending_on(&mut self, ordering_key: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM outbox WHERE state = 'pending' AND ordering_key = $1",
        )
        .bind(ordering_key)
        .fetch_one(&mut *self.conn)
        .await
        .map_err(query_err("outbox pending on"))?;
        row.try_get("n").map_err(query_err("outbox pending on"))
    }

    /// Starts a savepoint: what follows can be undone with [`Tx::rollback_to_savepoint`] without
    /// losing the rest of the transaction (one handler's failure in a batch of many).
    pub async fn savepoint(&mut self) -> Result<(), StoreError> {
        self.execute_plain("SAVEPOINT handler", "savepoint").await
    }

    /// Keeps what was done since [`Tx::savepoint`].
    pub async fn release_savepoint(&mut self) -> Result<(), StoreError> {
        self.execute_plain("RELEASE SAVEPOINT handler", "release savepoint")
            .await
    }

    /// Undoes what was done since [`Tx::savepoint`], and ends it.
    pub async fn rollback_to_savepoint(&mut self) -> Result<(), StoreError> {
        self.execute_plain(
            "ROLLBACK TO SAVEPOINT handler; RELEASE SAVEPOINT handler",
            "rollback to savepoint",
        )
        .await
    }

    async fn execute_plain(&mut self, sql: &str, op: &'static str) -> Result<(), StoreError> {
        (&mut *self.conn)
            .execute(sql)
            .await
            .map_err(query_err(op))?;
        Ok(())
    }

    /// The connection, for apps' own tables in the same transaction (placeholders `$1, $2…`).
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }

    /// Commits everything done in the transaction.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        <Any as sqlx::Database>::TransactionManager::commit(&mut self.conn)
            .await
            .map_err(query_err("commit"))?;
        self.open = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u:p@w:d@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u:p?w@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h:5432/db"), "postgres://h:5432/db");
        assert_eq!(
            redact("postgres://u:pw@h/db?sslmode=require&password=pw2"),
            "postgres://u:***@h/db?sslmode=require&password=***"
        );
        assert_eq!(
            redact("postgresql://h/db?PassWord=x&sslpassword=y"),
            "postgresql://h/db?PassWord=***&sslpassword=***"
        );
        assert_eq!(
            redact("postgres://h/db?x=a@b&password=s"),
            "postgres://h/db?x=a@b&password=***"
        );
        assert_eq!(
            redact("postgres://u:pw@h/db?x=a@b&password=s#f"),
            "postgres://u:***@b&password=***#f"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(redact("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(redact(""), "");
    }
}
