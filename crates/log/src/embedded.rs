//! The embedded backend: one redb database file under the data directory.
//!
//! Appends go through one writer thread. It takes every append request queued while
//! the previous transaction committed and writes them all in one transaction with
//! `Durability::Immediate` (fsync before commit returns): group commit. A request is
//! answered only after that commit, so an acknowledged event survives `kill -9`.
//!
//! Tables:
//! - `events`:  position → canonical event JSON
//! - `dedup`:   (bot, id) → position of the first event with that id
//! - `dialogs`: (bot, user) → dialog number (small fixed-width keys for `history`)
//! - `history`: (dialog number, event ms, position) → (), the dialog history index
//!   (messages only)
//! - `meta`:    "count" → number of events
//! - `integrity`: "epoch" → the store's epoch (a random id made on first use),
//!   "data_lost" → the record of a detected loss of data (JSON), until cleared,
//!   "data_lost_cleared" → the record cleared last

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use botwatch_event::{Event, EventKind};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, instrument};

use crate::{
    AppendReceipt, DataLoss, EventLog, HistoryCursor, HistoryPage, LogEntry, LogError, LogStats,
    Position, ReadBatch, Saved, SnapshotMeta, StreamInfo, Watch,
};

const EVENTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("events");
const DEDUP: TableDefinition<(&str, &str), (u64, u64)> = TableDefinition::new("dedup");
const DIALOGS: TableDefinition<(&str, &str), u64> = TableDefinition::new("dialogs");
const HISTORY: TableDefinition<(u64, i64, u64, u64), ()> = TableDefinition::new("history");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SETTINGS: TableDefinition<&str, &str> = TableDefinition::new("settings");
const INTEGRITY: TableDefinition<&str, &str> = TableDefinition::new("integrity");
const CLAIMS: TableDefinition<&str, &str> = TableDefinition::new("claims");
/// Worker → where it got to (a JSON document).
const PROGRESS: TableDefinition<&str, &str> = TableDefinition::new("progress");
/// Lease → its holder and when it runs out (ms since the epoch).
const LEASES: TableDefinition<&str, (&str, i64)> = TableDefinition::new("leases");
/// A file's type and name (`StoredFile::meta`), and its bytes.
const FILE_META: TableDefinition<&str, &str> = TableDefinition::new("file_meta");
const FILE_DATA: TableDefinition<&str, &[u8]> = TableDefinition::new("file_data");

const DB_FILE: &str = "events.redb";
/// Upper bound of events written in one group-commit transaction.
const MAX_GROUP_EVENTS: usize = 50_000;
/// Append requests that may wait for the writer before `append` itself waits.
const QUEUE_DEPTH: usize = 4_096;

/// An event ready for the writer: its keys and its canonical JSON, made on the
/// caller's thread so the writer thread only writes.
struct Prepared {
    bot: String,
    id: String,
    user: String,
    ts_ms: i64,
    /// Messages are indexed in their dialog's history; profile updates are not.
    in_history: bool,
    json: Vec<u8>,
}

struct AppendRequest {
    events: Vec<Prepared>,
    reply: oneshot::Sender<Result<AppendReceipt, LogError>>,
}

struct Inner {
    db: Arc<Database>,
    path: PathBuf,
    queue: Mutex<Option<mpsc::Sender<AppendRequest>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    head: watch::Sender<Position>,
    count: Arc<AtomicU64>,
    /// The error of the last group commit, when it failed; cleared by the next success.
    failure: Arc<Mutex<Option<String>>>,
}

/// The embedded event log. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct EmbeddedLog {
    inner: Arc<Inner>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `dir`. Recovers after an unclean stop.
    pub async fn open(dir: &Path) -> Result<EmbeddedLog, LogError> {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&dir))
            .await
            .map_err(|e| LogError::Embedded(format!("open task failed: {e}")))?
    }

    fn open_blocking(dir: &Path) -> Result<EmbeddedLog, LogError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            LogError::Embedded(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(DB_FILE);
        // A snapshot write cut short by a crash leaves its temporary file: drop it.
        let _ = std::fs::remove_file(dir.join("snapshot.tmp"));
        let db = Database::builder()
            .set_repair_callback(|session| {
                info!(
                    progress = session.progress(),
                    "repairing the event store after an unclean stop"
                );
            })
            .create(&path)
            .map_err(|e| LogError::Embedded(format!("cannot open {}: {e}", path.display())))?;

        // Make sure every table exists, and learn where the log ends.
        let txn = begin_write(&db)?;
        let (head, count) = {
            let events = txn.open_table(EVENTS)?;
            txn.open_table(DEDUP)?;
            txn.open_table(HISTORY)?;
            txn.open_table(DIALOGS)?;
            txn.open_table(SETTINGS)?;
            txn.open_table(INTEGRITY)?;
            txn.open_table(CLAIMS)?;
            txn.open_table(FILE_META)?;
            txn.open_table(FILE_DATA)?;
            txn.open_table(PROGRESS)?;
            let meta = txn.open_table(META)?;
            let head = match events.last()? {
                Some((k, _)) => {
                    let (ms, seq) = k.value();
                    Position::new(ms, seq)
                }
                None => Position::START,
            };
            let count = meta.get("count")?.map(|v| v.value()).unwrap_or(0);
            (head, count)
        };
        txn.commit()?;
        info!(path = %path.display(), %head, count, "embedded event log open");

        let db = Arc::new(db);
        let (head_tx, _) = watch::channel(head);
        let count = Arc::new(AtomicU64::new(count));
        let (queue_tx, queue_rx) = mpsc::channel(QUEUE_DEPTH);
        let failure = Arc::new(Mutex::new(None));
        let writer = {
            let db = db.clone();
            let head_tx = head_tx.clone();
            let count = count.clone();
            let failure = failure.clone();
            std::thread::Builder::new()
                .name("botwatch-log-writer".to_owned())
                .spawn(move || writer_loop(&db, queue_rx, head, &head_tx, &count, &failure))
                .map_err(|e| LogError::Embedded(format!("cannot start the writer thread: {e}")))?
        };
        Ok(EmbeddedLog {
            inner: Arc::new(Inner {
                db,
                path,
                queue: Mutex::new(Some(queue_tx)),
                writer: Mutex::new(Some(writer)),
                head: head_tx,
                count,
                failure,
            }),
        })
    }

    fn queue(&self) -> Result<mpsc::Sender<AppendRequest>, LogError> {
        self.inner
            .queue
            .lock()
            .map_err(|_| LogError::Closed)?
            .clone()
            .ok_or(LogError::Closed)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, LogError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, LogError> + Send + 'static,
    {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| LogError::Embedded(format!("read task failed: {e}")))?
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn writer_loop(
    db: &Database,
    mut queue: mpsc::Receiver<AppendRequest>,
    mut head: Position,
    head_tx: &watch::Sender<Position>,
    count: &AtomicU64,
    failure: &Mutex<Option<String>>,
) {
    let mut dialogs = DialogNumbers::default();
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        let mut events = group[0].events.len();
        while events < MAX_GROUP_EVENTS {
            match queue.try_recv() {
                Ok(req) => {
                    events += req.events.len();
                    group.push(req);
                }
                Err(_) => break,
            }
        }
        match write_group(db, &group, head, &mut dialogs) {
            Ok((new_head, receipts)) => {
                let stored: u64 = receipts.iter().map(|r| r.stored).sum();
                count.fetch_add(stored, Ordering::Relaxed);
                head = new_head;
                head_tx.send_replace(head);
                if let Ok(mut f) = failure.lock() {
                    *f = None;
                }
                debug!(requests = group.len(), events, stored, "group committed");
                for (req, receipt) in group.into_iter().zip(receipts) {
                    let _ = req.reply.send(Ok(receipt));
                }
            }
            Err(e) => {
                // Numbers handed out in the failed transaction were not stored.
                dialogs = DialogNumbers::default();
                error!(error = %e, requests = group.len(), "group commit failed; nothing of it was stored");
                if let Ok(mut f) = failure.lock() {
                    *f = Some(e.to_string());
                }
                for req in group {
                    let _ = req.reply.send(Err(LogError::Embedded(e.to_string())));
                }
            }
        }
    }
    debug!("writer thread stops: the queue is closed");
}

/// How many dialog numbers the writer keeps in memory (about 100 bytes each).
const MAX_REMEMBERED_DIALOGS: usize = 200_000;

/// The writer's memory of dialog numbers, so most events need no lookup for them.
#[derive(Default)]
struct DialogNumbers {
    known: std::collections::HashMap<(String, String), u64>,
    next: Option<u64>,
}

impl DialogNumbers {
    fn number(
        &mut self,
        table: &mut redb::Table<(&str, &str), u64>,
        bot: &str,
        user: &str,
    ) -> Result<u64, LogError> {
        if let Some(n) = self.known.get(&(bot.to_owned(), user.to_owned())) {
            return Ok(*n);
        }
        let stored = table.get((bot, user))?.map(|n| n.value());
        let n = match stored {
            Some(n) => n,
            None => {
                let next = match self.next {
                    Some(n) => n,
                    None => table.len()?,
                };
                table.insert((bot, user), next)?;
                self.next = Some(next + 1);
                next
            }
        };
        if self.known.len() >= MAX_REMEMBERED_DIALOGS {
            // Forget them all rather than grow without bound; the table still knows.
            self.known.clear();
        }
        self.known.insert((bot.to_owned(), user.to_owned()), n);
        Ok(n)
    }
}

/// A write transaction that records redb's allocator state with its commit
/// (quick repair), so that opening the store after a crash or `kill -9` reads that state
/// instead of walking the whole file to rebuild it: a restart after a crash takes about
/// as long as a clean one at any size of the log (BENCHMARKS.md → Growth curves).
fn begin_write(db: &Database) -> Result<redb::WriteTransaction, redb::TransactionError> {
    let mut txn = db.begin_write()?;
    txn.set_quick_repair(true);
    Ok(txn)
}

fn write_group(
    db: &Database,
    group: &[AppendRequest],
    mut head: Position,
    dialog_numbers: &mut DialogNumbers,
) -> Result<(Position, Vec<AppendReceipt>), LogError> {
    let txn = begin_write(db)?;
    let mut receipts = Vec::with_capacity(group.len());
    {
        let mut events = txn.open_table(EVENTS)?;
        let mut dedup = txn.open_table(DEDUP)?;
        let mut history = txn.open_table(HISTORY)?;
        let mut dialogs = txn.open_table(DIALOGS)?;
        let mut meta = txn.open_table(META)?;
        let now = now_ms();
        let mut stored_total = 0;
        for req in group {
            let mut receipt = AppendReceipt::default();
            for ev in &req.events {
                let dedup_key = (ev.bot.as_str(), ev.id.as_str());
                let next = head.next_after(now);
                let key = (next.ms, next.seq);
                // One lookup on the common path: claim the id, and put the first
                // owner back in the rare case it was taken.
                let owner = dedup.insert(dedup_key, key)?.map(|old| old.value());
                if let Some(owner) = owner {
                    dedup.insert(dedup_key, owner)?;
                    receipt.duplicates += 1;
                    continue;
                }
                head = next;
                events.insert(key, ev.json.as_slice())?;
                if ev.in_history {
                    let dialog = dialog_numbers.number(&mut dialogs, &ev.bot, &ev.user)?;
                    history.insert((dialog, ev.ts_ms, head.ms, head.seq), ())?;
                }
                receipt.stored += 1;
            }
            stored_total += receipt.stored;
            receipts.push(receipt);
        }
        let count = meta.get("count")?.map(|v| v.value()).unwrap_or(0);
        meta.insert("count", count + stored_total)?;
    }
    txn.commit()?;
    Ok((head, receipts))
}

pub(crate) fn decode(position: Position, bytes: &[u8]) -> Result<LogEntry, LogError> {
    let event = serde_json::from_slice(bytes).map_err(|e| LogError::Corrupt {
        position: position.to_string(),
        reason: e.to_string(),
    })?;
    Ok(LogEntry { position, event })
}

fn read_range(db: &Database, after: Position, max: usize) -> Result<ReadBatch, LogError> {
    let txn = db.begin_read()?;
    let events = txn.open_table(EVENTS)?;
    let mut batch = ReadBatch {
        next: after,
        ..ReadBatch::default()
    };
    let start = (after.ms, after.seq);
    for item in events.range(start..)?.take(max + 1) {
        let (k, v) = item?;
        let (ms, seq) = k.value();
        let position = Position::new(ms, seq);
        if position == after {
            continue;
        }
        if batch.entries.len() == max {
            break;
        }
        batch.entries.push(decode(position, v.value())?);
        batch.next = position;
    }
    Ok(batch)
}

fn read_history(
    db: &Database,
    bot: &str,
    user: &str,
    before: Option<HistoryCursor>,
    limit: usize,
) -> Result<HistoryPage, LogError> {
    let txn = db.begin_read()?;
    let dialogs = txn.open_table(DIALOGS)?;
    let Some(dialog) = dialogs.get((bot, user))?.map(|n| n.value()) else {
        return Ok(HistoryPage::default());
    };
    let history = txn.open_table(HISTORY)?;
    let events = txn.open_table(EVENTS)?;
    let low = (dialog, i64::MIN, 0u64, 0u64);
    let high = match before {
        Some(c) => (dialog, c.ts_ms, c.position.ms, c.position.seq),
        None => (dialog, i64::MAX, u64::MAX, u64::MAX),
    };
    let mut page = HistoryPage::default();
    // One more than asked: whether there is an older page.
    let mut keys = Vec::with_capacity(limit + 1);
    for item in history.range(low..=high)?.rev() {
        let (k, _) = item?;
        let (_, ts, ms, seq) = k.value();
        let position = Position::new(ms, seq);
        if before.is_some_and(|c| c.ts_ms == ts && c.position == position) {
            continue; // the cursor itself was on the previous page
        }
        keys.push((ts, position));
        if keys.len() > limit {
            break;
        }
    }
    let more = keys.len() > limit;
    keys.truncate(limit);
    for (_, position) in &keys {
        let bytes = events
            .get((position.ms, position.seq))?
            .ok_or_else(|| LogError::Corrupt {
                position: position.to_string(),
                reason: "indexed in the dialog history but missing from the log".to_owned(),
            })?;
        page.entries.push(decode(*position, bytes.value())?);
    }
    page.next = match keys.last() {
        Some((ts_ms, position)) if more => Some(HistoryCursor {
            ts_ms: *ts_ms,
            position: *position,
        }),
        _ => None,
    };
    Ok(page)
}

/// The snapshot file beside the database; written as `snapshot.tmp`, fsynced, then
/// renamed over the old one (and the directory fsynced), so it is always whole.
const SNAPSHOT_FILE: &str = "snapshot.bin";

impl crate::SnapshotStore for EmbeddedLog {
    async fn load_snapshot(&self) -> Result<Option<Vec<u8>>, LogError> {
        let path = self.snapshot_path();
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LogError::Embedded(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        })
        .await
        .map_err(|e| LogError::Embedded(format!("snapshot task failed: {e}")))?
    }

    /// One node, one file: the snapshot saved is always the newest.
    async fn save_snapshot(&self, meta: &SnapshotMeta, bytes: Vec<u8>) -> Result<Saved, LogError> {
        self.replace_snapshot(meta, bytes).await?;
        Ok(Saved::Stored)
    }

    async fn replace_snapshot(&self, _meta: &SnapshotMeta, bytes: Vec<u8>) -> Result<(), LogError> {
        use std::io::Write;
        let path = self.snapshot_path();
        tokio::task::spawn_blocking(move || {
            let io =
                |e: std::io::Error| LogError::Embedded(format!("cannot write the snapshot: {e}"));
            let dir = path.parent().unwrap_or(Path::new("."));
            let tmp = dir.join("snapshot.tmp");
            let mut file = std::fs::File::create(&tmp).map_err(io)?;
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
            drop(file);
            std::fs::rename(&tmp, &path).map_err(io)?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
            Ok(())
        })
        .await
        .map_err(|e| LogError::Embedded(format!("snapshot task failed: {e}")))?
    }
}

impl EmbeddedLog {
    fn snapshot_path(&self) -> PathBuf {
        self.inner
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join(SNAPSHOT_FILE)
    }
}

/// The embedded store is the log itself: it has no stream to lose behind the
/// server's back and never trims; its epoch and the data-loss record live in the
/// `integrity` table (a store swapped for another shows another epoch).
impl crate::IntegrityStore for EmbeddedLog {
    async fn ensure_epoch(&self) -> Result<(String, bool), LogError> {
        self.blocking(|db| {
            let txn = begin_write(db)?;
            let made = {
                let mut table = txn.open_table(INTEGRITY)?;
                let stored = table.get("epoch")?.map(|v| v.value().to_owned());
                match stored {
                    Some(epoch) => (epoch, false),
                    None => {
                        let epoch = uuid::Uuid::new_v4().simple().to_string();
                        table.insert("epoch", epoch.as_str())?;
                        (epoch, true)
                    }
                }
            };
            txn.commit()?;
            Ok(made)
        })
        .await
    }

    async fn watch(&self, _heartbeat: Option<(&str, Position)>) -> Result<Watch, LogError> {
        let (epoch, data_loss, cleared) = self
            .blocking(|db| {
                let txn = db.begin_read()?;
                let table = txn.open_table(INTEGRITY)?;
                let epoch = table.get("epoch")?.map(|v| v.value().to_owned());
                let record = table
                    .get("data_lost")?
                    .map(|v| DataLoss::from_json(v.value()));
                let cleared = table
                    .get("data_lost_cleared")?
                    .map(|v| DataLoss::from_json(v.value()));
                Ok((epoch, record, cleared))
            })
            .await?;
        let head = *self.inner.head.borrow();
        Ok(Watch {
            epoch,
            data_loss,
            cleared,
            trimmed_before: Position::START,
            stream: Some(StreamInfo {
                entries_added: self.inner.count.load(Ordering::Relaxed),
                max_deleted: Position::START,
                last_generated: head,
            }),
        })
    }

    async fn leave(&self, _node: &str) -> Result<(), LogError> {
        Ok(())
    }

    async fn record_data_loss(&self, reason: &str) -> Result<DataLoss, LogError> {
        let record = DataLoss::new(reason, chrono::Utc::now());
        self.blocking(move |db| {
            let txn = begin_write(db)?;
            let kept = {
                let mut table = txn.open_table(INTEGRITY)?;
                let stored = table
                    .get("data_lost")?
                    .map(|v| DataLoss::from_json(v.value()));
                match stored {
                    Some(first) => first,
                    None => {
                        table.insert("data_lost", record.to_json().as_str())?;
                        record
                    }
                }
            };
            txn.commit()?;
            Ok(kept)
        })
        .await
    }

    async fn clear_data_loss(&self) -> Result<Option<DataLoss>, LogError> {
        self.blocking(|db| {
            let txn = begin_write(db)?;
            let removed = {
                let mut table = txn.open_table(INTEGRITY)?;
                let removed = table
                    .remove("data_lost")?
                    .map(|v| DataLoss::from_json(v.value()));
                if let Some(record) = &removed {
                    table.insert("data_lost_cleared", record.to_json().as_str())?;
                }
                removed
            };
            txn.commit()?;
            Ok(removed)
        })
        .await
    }

    async fn trim(
        &self,
        _node: &str,
        _needed: Position,
        _wanted: Position,
        _stale_after: Duration,
    ) -> Result<Option<(Position, u64)>, LogError> {
        Ok(None)
    }
}

impl crate::SettingsStore for EmbeddedLog {
    async fn all_settings(&self) -> Result<Vec<(String, String)>, LogError> {
        self.blocking(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(SETTINGS)?;
            let mut all = Vec::new();
            for item in table.iter()? {
                let (k, v) = item?;
                all.push((k.value().to_owned(), v.value().to_owned()));
            }
            Ok(all)
        })
        .await
    }

    async fn settings(&self, bot: &str) -> Result<Option<String>, LogError> {
        let bot = bot.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(SETTINGS)?;
            Ok(table.get(bot.as_str())?.map(|v| v.value().to_owned()))
        })
        .await
    }

    async fn put_settings(
        &self,
        bot: &str,
        expected: Option<&str>,
        json: &str,
    ) -> Result<bool, LogError> {
        let (bot, json) = (bot.to_owned(), json.to_owned());
        let expected = expected.map(str::to_owned);
        // A separate write transaction: redb serialises it with the writer thread's,
        // so the comparison and the write are one step.
        self.blocking(move |db| {
            let txn = begin_write(db)?;
            {
                let mut table = txn.open_table(SETTINGS)?;
                let current = table.get(bot.as_str())?.map(|v| v.value().to_owned());
                if current != expected {
                    return Ok(false);
                }
                table.insert(bot.as_str(), json.as_str())?;
                let mut meta = txn.open_table(META)?;
                let version = meta
                    .get("settings_version")?
                    .map(|v| v.value())
                    .unwrap_or(0);
                meta.insert("settings_version", version + 1)?;
            }
            txn.commit()?;
            Ok(true)
        })
        .await
    }

    async fn settings_version(&self) -> Result<u64, LogError> {
        self.blocking(|db| {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            Ok(meta
                .get("settings_version")?
                .map(|v| v.value())
                .unwrap_or(0))
        })
        .await
    }
}

impl EventLog for EmbeddedLog {
    #[instrument(name = "log.append", skip_all, fields(backend = "embedded", events = events.len()))]
    async fn append(&self, events: Vec<Event>) -> Result<AppendReceipt, LogError> {
        if events.is_empty() {
            return Ok(AppendReceipt::default());
        }
        let prepared = events
            .into_iter()
            .map(|e| Prepared {
                json: e.to_json().into_bytes(),
                ts_ms: e.ts_millis(),
                in_history: e.kind == EventKind::Message,
                bot: e.bot,
                id: e.id,
                user: e.user.id,
            })
            .collect();
        let (reply, answer) = oneshot::channel();
        self.queue()?
            .send(AppendRequest {
                events: prepared,
                reply,
            })
            .await
            .map_err(|_| LogError::Closed)?;
        answer.await.map_err(|_| LogError::Closed)?
    }

    async fn read(
        &self,
        after: Position,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<ReadBatch, LogError> {
        let max = max.max(1);
        let mut head = self.inner.head.subscribe();
        let batch = self.blocking(move |db| read_range(db, after, max)).await?;
        let Some(wait) = wait else { return Ok(batch) };
        if !batch.entries.is_empty() {
            return Ok(batch);
        }
        // Nothing yet: wait until the head moves past `after`, then read once more.
        let moved = tokio::time::timeout(wait, head.wait_for(|h| *h > after))
            .await
            .map(|changed| changed.map(|_| ()));
        match moved {
            Ok(Ok(())) => self.blocking(move |db| read_range(db, after, max)).await,
            Ok(Err(_)) => Err(LogError::Closed),
            Err(_) => Ok(batch),
        }
    }

    async fn history(
        &self,
        bot: &str,
        user: &str,
        before: Option<HistoryCursor>,
        limit: usize,
    ) -> Result<HistoryPage, LogError> {
        let (bot, user) = (bot.to_owned(), user.to_owned());
        self.blocking(move |db| read_history(db, &bot, &user, before, limit.max(1)))
            .await
    }

    async fn stats(&self) -> Result<LogStats, LogError> {
        Ok(LogStats {
            length: self.inner.count.load(Ordering::Relaxed),
            head: *self.inner.head.borrow(),
        })
    }

    async fn ready(&self) -> Result<(), LogError> {
        match self.queue() {
            Ok(q) if !q.is_closed() => {}
            _ => return Err(LogError::Closed),
        }
        match self.inner.failure.lock().ok().and_then(|f| f.clone()) {
            Some(e) => Err(LogError::Embedded(format!("the last commit failed: {e}"))),
            None => Ok(()),
        }
    }

    async fn close(&self) {
        let queue = self.inner.queue.lock().ok().and_then(|mut q| q.take());
        drop(queue);
        let writer = self.inner.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            // The writer finishes the requests already queued, then stops.
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
            info!("embedded event log closed");
        }
    }
}

impl crate::ClaimStore for EmbeddedLog {
    async fn claim(&self, key: &str, owner: &str) -> Result<crate::Claim, LogError> {
        let (key, owner) = (key.to_owned(), owner.to_owned());
        // Its own write transaction: redb serialises writers, so look and write are one.
        self.blocking(move |db| {
            let txn = begin_write(db)?;
            let claim = {
                let mut table = txn.open_table(CLAIMS)?;
                let held = table.get(key.as_str())?.map(|v| v.value().to_owned());
                match held {
                    Some(holder) => crate::Claim::Held(holder),
                    None => {
                        table.insert(key.as_str(), owner.as_str())?;
                        crate::Claim::Won
                    }
                }
            };
            txn.commit()?;
            Ok(claim)
        })
        .await
    }

    async fn lease(
        &self,
        key: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, LogError> {
        let (key, owner) = (key.to_owned(), owner.to_owned());
        self.blocking(move |db| {
            let now = chrono::Utc::now().timestamp_millis();
            let txn = begin_write(db)?;
            let held = {
                let mut table = txn.open_table(LEASES)?;
                let free = match table.get(key.as_str())? {
                    None => true,
                    Some(v) => {
                        let (holder, until) = v.value();
                        holder == owner || until <= now
                    }
                };
                if free {
                    let until = now + ttl.as_millis() as i64;
                    table.insert(key.as_str(), (owner.as_str(), until))?;
                }
                free
            };
            txn.commit()?;
            Ok(held)
        })
        .await
    }
}

impl crate::ProgressStore for EmbeddedLog {
    async fn progress(&self, key: &str) -> Result<Option<String>, LogError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let doc = txn
                .open_table(PROGRESS)?
                .get(key.as_str())?
                .map(|v| v.value().to_owned());
            Ok(doc)
        })
        .await
    }

    async fn put_progress(&self, key: &str, doc: &str) -> Result<(), LogError> {
        let (key, doc) = (key.to_owned(), doc.to_owned());
        self.blocking(move |db| {
            let txn = begin_write(db)?;
            txn.open_table(PROGRESS)?
                .insert(key.as_str(), doc.as_str())?;
            txn.commit()?;
            Ok(())
        })
        .await
    }
}

impl crate::FileStore for EmbeddedLog {
    async fn put_file(&self, id: &str, file: &crate::StoredFile) -> Result<(), LogError> {
        let (id, meta, bytes) = (id.to_owned(), file.meta(), file.bytes.clone());
        self.blocking(move |db| {
            let txn = begin_write(db)?;
            {
                txn.open_table(FILE_DATA)?
                    .insert(id.as_str(), bytes.as_slice())?;
                txn.open_table(FILE_META)?
                    .insert(id.as_str(), meta.as_str())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn file(&self, id: &str) -> Result<Option<crate::StoredFile>, LogError> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read()?;
            let Some(meta) = txn
                .open_table(FILE_META)?
                .get(id.as_str())?
                .map(|v| v.value().to_owned())
            else {
                return Ok(None);
            };
            let bytes = txn
                .open_table(FILE_DATA)?
                .get(id.as_str())?
                .map(|v| v.value().to_vec())
                .unwrap_or_default();
            Ok(crate::StoredFile::from_meta(&meta, bytes))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// What a crash leaves: the file as the last commit wrote it, never closed. Opening
    /// it must not walk the whole file (redb's full repair, which grows with the log).
    #[test]
    fn a_store_left_by_a_crash_opens_without_a_full_repair() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("events.redb");
        let db = Database::create(&path).expect("create");
        for n in 0..3u64 {
            let txn = begin_write(&db).expect("write");
            {
                let mut events = txn.open_table(EVENTS).expect("table");
                events.insert((n, 0), &b"{}"[..]).expect("insert");
            }
            txn.commit().expect("commit");
        }
        // Still open, as under a kill -9: the copy is what the disk holds.
        let crashed = dir.path().join("crashed.redb");
        std::fs::copy(&path, &crashed).expect("copy");
        drop(db);

        let repaired = Arc::new(AtomicBool::new(false));
        let seen = repaired.clone();
        let db = Database::builder()
            .set_repair_callback(move |_| seen.store(true, Ordering::SeqCst))
            .create(&crashed)
            .expect("open after the crash");
        assert!(
            !repaired.load(Ordering::SeqCst),
            "a full repair ran on open"
        );
        let txn = db.begin_read().expect("read");
        let events = txn.open_table(EVENTS).expect("table");
        assert_eq!(events.len().expect("len"), 3, "every commit is there");
    }
}
