//! The event log: every accepted event, in order, counted once, durable before it is
//! acknowledged, readable from any position.
//!
//! One trait, [`EventLog`], two backends:
//! - [`EmbeddedLog`] (the default): a redb database under `--data`, one writer thread
//!   that commits the appends queued meanwhile in one fsynced transaction (group commit);
//! - [`RedisLog`]: the stream `botwatch:events`, de-duplication and the dialog history
//!   index kept beside it by Lua scripts, entries written by adapters validated on read
//!   and dead-lettered to `botwatch:events:dead` when invalid.
//!
//! [`AnyLog`] is what the server holds: the backend chosen by configuration.

mod embedded;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod integrity;
mod position;
mod redis_streams;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use botwatch_event::Event;

pub use embedded::EmbeddedLog;
pub use error::LogError;
pub use integrity::{DataLoss, Saved, SnapshotMeta, StreamInfo, Watch};
pub use position::{HistoryCursor, Position};
pub use redis_streams::{RedisConfig, RedisLog, redact as redact_url};

/// An event as read back from the log, with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub position: Position,
    pub event: Event,
}

/// What an append did: how many events were new and how many were already in the log
/// under the same `(bot, id)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendReceipt {
    pub stored: u64,
    pub duplicates: u64,
}

/// A page read from the log.
#[derive(Debug, Clone, Default)]
pub struct ReadBatch {
    /// Events in log order, each counted once.
    pub entries: Vec<LogEntry>,
    /// Where the next read starts: past everything scanned, including skipped entries.
    pub next: Position,
    /// Entries scanned but not returned because an earlier entry had the same id.
    pub duplicates: u64,
    /// Entries scanned but not returned because they are not valid events (Redis only:
    /// written by an adapter straight into the stream); they go to the dead-letter stream.
    pub dead_lettered: u64,
}

/// One page of a dialog's history, newest first.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub entries: Vec<LogEntry>,
    /// Pass as `before` to get the next (older) page; `None` at the beginning.
    pub next: Option<HistoryCursor>,
}

/// Figures about the log, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Entries in the log (on Redis: the stream's length, dead entries included).
    pub length: u64,
    /// Position of the newest entry.
    pub head: Position,
}

/// Where the log lives.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    Embedded { dir: PathBuf },
    Redis(RedisConfig),
}

/// The contract every backend keeps (tested by one suite run against each).
pub trait EventLog: Send + Sync + 'static {
    /// Appends validated events in order. Returns once every new event is durable.
    /// An event whose `(bot, id)` is already in the log is not stored again.
    fn append(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<AppendReceipt, LogError>> + Send;

    /// Reads up to `max` events after `after`. When none are there and `wait` is
    /// given, waits up to that long for new ones.
    fn read(
        &self,
        after: Position,
        max: usize,
        wait: Option<Duration>,
    ) -> impl Future<Output = Result<ReadBatch, LogError>> + Send;

    /// One page of the history of the dialog `(bot, user)`, newest first, ordered by
    /// event time and then by log position; `before` continues an earlier page.
    fn history(
        &self,
        bot: &str,
        user: &str,
        before: Option<HistoryCursor>,
        limit: usize,
    ) -> impl Future<Output = Result<HistoryPage, LogError>> + Send;

    fn stats(&self) -> impl Future<Output = Result<LogStats, LogError>> + Send;

    /// Whether the storage answers right now.
    fn ready(&self) -> impl Future<Output = Result<(), LogError>> + Send;

    /// Flushes and closes the log; appends after this fail with [`LogError::Closed`].
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// Each bot's settings, kept beside the log in the same storage, as opaque JSON
/// documents (the server owns their shape). Every change bumps a version, so that
/// every node notices it.
pub trait SettingsStore: Send + Sync + 'static {
    /// Every bot's settings document.
    fn all_settings(&self) -> impl Future<Output = Result<Vec<(String, String)>, LogError>> + Send;

    /// One bot's settings document, if it has one.
    fn settings(&self, bot: &str) -> impl Future<Output = Result<Option<String>, LogError>> + Send;

    /// Stores a bot's settings document (durably) and bumps the version, if the stored
    /// one is still `expected` (`None`: none stored); `Ok(false)`, storing nothing,
    /// when another change came first (read again, merge again, try again).
    fn put_settings(
        &self,
        bot: &str,
        expected: Option<&str>,
        json: &str,
    ) -> impl Future<Output = Result<bool, LogError>> + Send;

    /// A number that changes whenever any bot's settings change.
    fn settings_version(&self) -> impl Future<Output = Result<u64, LogError>> + Send;
}

/// The aggregator's newest snapshot, kept in the same storage as the log: replaced
/// atomically, so a crash while saving leaves the previous one whole.
pub trait SnapshotStore: Send + Sync + 'static {
    fn load_snapshot(&self) -> impl Future<Output = Result<Option<Vec<u8>>, LogError>> + Send;

    /// Stores a snapshot taken at `meta`. On Redis, where every node saves into one key,
    /// a snapshot never replaces a newer one of the same epoch that the stream still
    /// backs, and one taken under another epoch than the storage's is refused (see
    /// [`Saved`]).
    fn save_snapshot(
        &self,
        meta: &SnapshotMeta,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<Saved, LogError>> + Send;

    /// Stores a snapshot whatever is stored (`botwatch data-loss clear`, when it moves
    /// the stored snapshot to the storage's present epoch and position).
    fn replace_snapshot(
        &self,
        meta: &SnapshotMeta,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(), LogError>> + Send;
}

/// What tells whether the storage lost data behind the figures' back, kept in the
/// storage itself: its epoch (a random id made when the storage is first used; a
/// storage that lost everything has none, or another), the persistent record of a
/// detected loss, and on Redis the retention floor and the nodes' needs.
pub trait IntegrityStore: Send + Sync + 'static {
    /// The storage's epoch, made now when it has none: `(epoch, made now)`.
    fn ensure_epoch(&self) -> impl Future<Output = Result<(String, bool), LogError>> + Send;

    /// One look at everything that says whether data was lost. With `heartbeat`,
    /// `(node, needed)` also records (Redis) that this node is alive and still needs
    /// every entry after `needed`, so retention keeps them.
    fn watch(
        &self,
        heartbeat: Option<(&str, Position)>,
    ) -> impl Future<Output = Result<Watch, LogError>> + Send;

    /// `node` stops and needs nothing any more: retention stops waiting for it.
    fn leave(&self, node: &str) -> impl Future<Output = Result<(), LogError>> + Send;

    /// Records a loss of data until an operator clears it; the first record stays.
    /// Returns the record now stored.
    fn record_data_loss(
        &self,
        reason: &str,
    ) -> impl Future<Output = Result<DataLoss, LogError>> + Send;

    /// Removes the record (an operator accepted the loss) and keeps it as the last one
    /// cleared (see [`Watch::cleared`]); the record removed, if any.
    fn clear_data_loss(&self) -> impl Future<Output = Result<Option<DataLoss>, LogError>> + Send;

    /// Retention (Redis; the embedded store never trims): registers `needed` for
    /// `node` (as `watch` does), then trims the stream before the lowest of `wanted`,
    /// `needed`, the stored snapshot's position and what every node heard from within
    /// `stale_after` still needs. Returns the floor applied and the entries removed;
    /// `None` when nothing may be trimmed.
    fn trim(
        &self,
        node: &str,
        needed: Position,
        wanted: Position,
        stale_after: Duration,
    ) -> impl Future<Output = Result<Option<(Position, u64)>, LogError>> + Send;
}

/// First-come claims, durable and shared by every node: what makes an operator
/// message go out once, whichever node (or restart) would send it.
pub trait ClaimStore: Send + Sync + 'static {
    /// Claims `key` for `owner` unless it is claimed: [`Claim::Won`], or who holds it.
    fn claim(&self, key: &str, owner: &str)
    -> impl Future<Output = Result<Claim, LogError>> + Send;

    /// Takes `key` for `owner` for `ttl` when it is free or its lease ran out, or
    /// extends it when `owner` holds it: true when `owner` holds it now. For work one
    /// node at a time should do (a broadcast's sending), taken over when its node stops.
    fn lease(
        &self,
        key: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<bool, LogError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Won,
    /// Claimed before, by this owner.
    Held(String),
}

/// Where a worker that follows the log on its own got to (analytics forwarding): a
/// small document per key, replaced whole, kept across restarts and shared by nodes.
pub trait ProgressStore: Send + Sync + 'static {
    fn progress(&self, key: &str) -> impl Future<Output = Result<Option<String>, LogError>> + Send;

    fn put_progress(
        &self,
        key: &str,
        doc: &str,
    ) -> impl Future<Output = Result<(), LogError>> + Send;
}

/// Files operators send, kept in the storage so every node serves them.
pub trait FileStore: Send + Sync + 'static {
    /// Stores a file under a new, unguessable `id` (the caller makes it).
    fn put_file(
        &self,
        id: &str,
        file: &StoredFile,
    ) -> impl Future<Output = Result<(), LogError>> + Send;

    fn file(&self, id: &str) -> impl Future<Output = Result<Option<StoredFile>, LogError>> + Send;
}

/// A kept file: its name as given, its type as sniffed, its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub name: String,
    pub mime: String,
    pub bytes: Vec<u8>,
}

impl StoredFile {
    /// Name and type in one string (names and types never hold a newline).
    fn meta(&self) -> String {
        format!("{}\n{}", self.mime, self.name)
    }

    pub(crate) fn from_meta(meta: &str, bytes: Vec<u8>) -> Option<StoredFile> {
        let (mime, name) = meta.split_once('\n')?;
        Some(StoredFile {
            name: name.to_owned(),
            mime: mime.to_owned(),
            bytes,
        })
    }
}

/// The backend chosen by configuration.
#[derive(Clone)]
pub enum AnyLog {
    Embedded(EmbeddedLog),
    Redis(RedisLog),
}

impl AnyLog {
    /// Opens the configured backend.
    pub async fn open(config: &StorageConfig) -> Result<AnyLog, LogError> {
        Ok(match config {
            StorageConfig::Embedded { dir } => AnyLog::Embedded(EmbeddedLog::open(dir).await?),
            StorageConfig::Redis(cfg) => AnyLog::Redis(RedisLog::connect(cfg.clone()).await?),
        })
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            AnyLog::Embedded(_) => "embedded",
            AnyLog::Redis(_) => "redis",
        }
    }
}

macro_rules! delegate {
    ($self:ident, $log:ident => $call:expr) => {
        match $self {
            AnyLog::Embedded($log) => $call.await,
            AnyLog::Redis($log) => $call.await,
        }
    };
}

impl SettingsStore for AnyLog {
    async fn all_settings(&self) -> Result<Vec<(String, String)>, LogError> {
        delegate!(self, log => log.all_settings())
    }

    async fn settings(&self, bot: &str) -> Result<Option<String>, LogError> {
        delegate!(self, log => log.settings(bot))
    }

    async fn put_settings(
        &self,
        bot: &str,
        expected: Option<&str>,
        json: &str,
    ) -> Result<bool, LogError> {
        delegate!(self, log => log.put_settings(bot, expected, json))
    }

    async fn settings_version(&self) -> Result<u64, LogError> {
        delegate!(self, log => log.settings_version())
    }
}

impl ClaimStore for AnyLog {
    async fn claim(&self, key: &str, owner: &str) -> Result<Claim, LogError> {
        delegate!(self, log => log.claim(key, owner))
    }

    async fn lease(
        &self,
        key: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, LogError> {
        delegate!(self, log => log.lease(key, owner, ttl))
    }
}

impl ProgressStore for AnyLog {
    async fn progress(&self, key: &str) -> Result<Option<String>, LogError> {
        delegate!(self, log => log.progress(key))
    }

    async fn put_progress(&self, key: &str, doc: &str) -> Result<(), LogError> {
        delegate!(self, log => log.put_progress(key, doc))
    }
}

impl FileStore for AnyLog {
    async fn put_file(&self, id: &str, file: &StoredFile) -> Result<(), LogError> {
        delegate!(self, log => log.put_file(id, file))
    }

    async fn file(&self, id: &str) -> Result<Option<StoredFile>, LogError> {
        delegate!(self, log => log.file(id))
    }
}

impl SnapshotStore for AnyLog {
    async fn load_snapshot(&self) -> Result<Option<Vec<u8>>, LogError> {
        delegate!(self, log => log.load_snapshot())
    }

    async fn save_snapshot(&self, meta: &SnapshotMeta, bytes: Vec<u8>) -> Result<Saved, LogError> {
        delegate!(self, log => log.save_snapshot(meta, bytes))
    }

    async fn replace_snapshot(&self, meta: &SnapshotMeta, bytes: Vec<u8>) -> Result<(), LogError> {
        delegate!(self, log => log.replace_snapshot(meta, bytes))
    }
}

impl IntegrityStore for AnyLog {
    async fn ensure_epoch(&self) -> Result<(String, bool), LogError> {
        delegate!(self, log => log.ensure_epoch())
    }

    async fn watch(&self, heartbeat: Option<(&str, Position)>) -> Result<Watch, LogError> {
        delegate!(self, log => log.watch(heartbeat))
    }

    async fn leave(&self, node: &str) -> Result<(), LogError> {
        delegate!(self, log => log.leave(node))
    }

    async fn record_data_loss(&self, reason: &str) -> Result<DataLoss, LogError> {
        delegate!(self, log => log.record_data_loss(reason))
    }

    async fn clear_data_loss(&self) -> Result<Option<DataLoss>, LogError> {
        delegate!(self, log => log.clear_data_loss())
    }

    async fn trim(
        &self,
        node: &str,
        needed: Position,
        wanted: Position,
        stale_after: Duration,
    ) -> Result<Option<(Position, u64)>, LogError> {
        delegate!(self, log => log.trim(node, needed, wanted, stale_after))
    }
}

impl EventLog for AnyLog {
    async fn append(&self, events: Vec<Event>) -> Result<AppendReceipt, LogError> {
        delegate!(self, log => log.append(events))
    }

    async fn read(
        &self,
        after: Position,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<ReadBatch, LogError> {
        delegate!(self, log => log.read(after, max, wait))
    }

    async fn history(
        &self,
        bot: &str,
        user: &str,
        before: Option<HistoryCursor>,
        limit: usize,
    ) -> Result<HistoryPage, LogError> {
        delegate!(self, log => log.history(bot, user, before, limit))
    }

    async fn stats(&self) -> Result<LogStats, LogError> {
        delegate!(self, log => log.stats())
    }

    async fn ready(&self) -> Result<(), LogError> {
        delegate!(self, log => log.ready())
    }

    async fn close(&self) {
        delegate!(self, log => log.close())
    }
}
