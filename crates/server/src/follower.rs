//! Follows the log from its start and hands every event to the aggregator; keeps the
//! reader metrics. On Redis it is also what validates, de-duplicates, indexes and
//! dead-letters the entries adapters write straight into the stream.
//!
//! It also watches the bots' settings: when a bot's time zone or session timeout
//! changes (on this node or any other), a task beside it recounts that bot from the
//! start of the log up to where the follower had read, while the follower goes on
//! (every figure stays live); the new figures are then brought up to the follower's
//! position with the bot's events read meanwhile and swapped in.
//!
//! About once a second it looks at the storage's integrity (see `integrity`), and
//! after each snapshot it applies retention (see `retention`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use botwatch_aggregator::{AggregatorHandle, BotFigures, BotSettings};
use botwatch_log::{
    AnyLog, DataLoss, EventLog, IntegrityStore, LogError, Position, Saved, SettingsStore,
    SnapshotMeta, SnapshotStore,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::integrity::{self, Baseline, Integrity};
use crate::metrics::Metrics;
use crate::retention::Window;
use crate::settings::SettingsDoc;

const BATCH: usize = 1_000;
const WAIT: Duration = Duration::from_secs(1);

/// Where following starts: after the snapshot the aggregator was restored from.
#[derive(Debug, Default)]
pub struct Start {
    pub position: Position,
    /// The settings the restored figures were counted with.
    pub settings: HashMap<String, BotSettings>,
    /// This process, as retention knows it.
    pub node: String,
    /// The storage's epoch, under which the figures are counted from here on.
    pub epoch: String,
    /// A loss of data found on start or recorded before (and not cleared yet).
    pub data_loss: Option<DataLoss>,
    /// Whether that record is in the storage (else the follower records it).
    pub data_loss_recorded: bool,
    /// The log ends before `position`: events the snapshot counted are gone.
    pub log_behind_snapshot: bool,
}

/// How the follower snapshots and trims.
#[derive(Debug, Clone)]
pub struct Options {
    /// Set once the follower has read up to the head of the log it found: the figures
    /// then show everything written before this start (senders wait for it).
    pub caught_up: Arc<std::sync::atomic::AtomicBool>,
    /// Where the follower has read to, for readers that must not go past the figures.
    pub followed: Arc<std::sync::Mutex<Position>>,
    pub snapshot_every: u64,
    /// Retention (Redis): keep at least this many entries; `None` never trims.
    pub retain_events: Option<u64>,
}

struct Follower {
    caught_up: Arc<std::sync::atomic::AtomicBool>,
    log: Arc<AnyLog>,
    aggregator: AggregatorHandle,
    metrics: Arc<Metrics>,
    integrity: Arc<Integrity>,
    position: Position,
    settings_version: Option<u64>,
    settings: HashMap<String, BotSettings>,
    snapshot_every: u64,
    since_snapshot: u64,
    node: String,
    /// The first entry a restart of this node would need: its last snapshot's position
    /// (registered with every look, so retention keeps it).
    needed: Position,
    baseline: Baseline,
    /// Whether the storage holds the record of the loss this node shows.
    recorded: bool,
    /// Entries before this position may have been trimmed (as of the last look).
    trimmed_before: Position,
    window: Option<Window>,
    /// Recounts running beside the follower, by bot: the settings they count with.
    recounts: HashMap<String, (BotSettings, tokio::task::JoinHandle<()>)>,
    recounted_tx: mpsc::UnboundedSender<Recounted>,
    recounted: mpsc::UnboundedReceiver<Recounted>,
    /// Finished recounts not swapped in yet (a catch-up read failed: tried again).
    pending: std::collections::VecDeque<Recounted>,
    /// Where the follower is, for recounts to catch up with before they finish.
    followed: Arc<std::sync::Mutex<Position>>,
}

/// A recount done: the bot's figures with `settings`, from every event up to `upto`.
struct Recounted {
    bot: String,
    settings: BotSettings,
    figures: BotFigures,
    upto: Position,
}

pub async fn run(
    log: Arc<AnyLog>,
    aggregator: AggregatorHandle,
    metrics: Arc<Metrics>,
    integrity: Arc<Integrity>,
    start: Start,
    options: Options,
    stop: CancellationToken,
) {
    let (recounted_tx, recounted) = mpsc::unbounded_channel();
    let mut f = Follower {
        log,
        aggregator,
        metrics,
        integrity,
        position: start.position,
        settings_version: None,
        settings: start.settings,
        snapshot_every: options.snapshot_every.max(1),
        caught_up: options.caught_up.clone(),
        since_snapshot: 0,
        node: start.node,
        needed: start.position,
        baseline: Baseline::new(start.epoch),
        recorded: start.data_loss_recorded,
        trimmed_before: Position::START,
        window: options.retain_events.map(Window::new),
        recounts: HashMap::new(),
        recounted_tx,
        recounted,
        pending: std::collections::VecDeque::new(),
        followed: {
            if let Ok(mut followed) = options.followed.lock() {
                *followed = start.position;
            }
            options.followed.clone()
        },
    };
    let mut backoff = Duration::from_millis(100);
    // Halved after each failed read, so that a run of huge entries is read a few at a
    // time instead of timing out forever; back to full size after a success.
    let mut batch_size = BATCH;
    loop {
        // A step (settings, read, apply) is never cut in the middle: the position only
        // moves once the aggregator has the events, so a snapshot never claims events
        // its state lacks. Only the waiting for new entries gives way to the stop.
        if stop.is_cancelled() {
            // Unfinished recounts are dropped: their settings are not taken, so the
            // next start recounts.
            for (_, (_, task)) in f.recounts.drain() {
                task.abort();
            }
            f.snapshot_if_behind().await;
            // The stored snapshot is what a restart needs; retention waits for that.
            if let Err(e) = f.log.leave(&f.node).await {
                warn!(error = %e, "cannot deregister from retention; it waits for this node a while");
            }
            return;
        }
        if f.baseline.due() {
            f.look().await;
        }
        let result = match f.follow_settings().await {
            Ok(()) => match f.swap_recounted().await {
                Ok(()) => f.read_once(batch_size, &stop).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(true) => {
                backoff = Duration::from_millis(100);
                batch_size = BATCH;
                if f.since_snapshot >= f.snapshot_every {
                    f.snapshot_if_behind().await;
                }
            }
            Ok(false) => return, // the aggregator has stopped
            Err(e) => {
                batch_size = (batch_size / 2).max(1);
                warn!(error = %e, retry_in = ?backoff, batch_size, "log follower cannot read; retrying");
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

impl Follower {
    /// Reads one batch and applies it; `Ok(false)` when the aggregator is gone.
    async fn read_once(
        &mut self,
        batch_size: usize,
        stop: &CancellationToken,
    ) -> Result<bool, LogError> {
        let read = self
            .log
            .read(self.position, batch_size, Some(WAIT))
            .instrument(info_span!("follower.read", position = %self.position));
        let batch = tokio::select! {
            _ = stop.cancelled() => return Ok(true),
            batch = read => batch?,
        };
        let (next, count) = (batch.next, batch.entries.len() as u64);
        self.metrics.reader_events.inc_by(count);
        self.metrics.dead_letters.inc_by(batch.dead_lettered);
        if let Some(window) = &mut self.window {
            for entry in &batch.entries {
                window.scanned(1, entry.position);
            }
            // Skipped entries (duplicates, dead letters) count where the batch ends.
            window.scanned(batch.duplicates + batch.dead_lettered, next);
        }
        let events = batch.entries.into_iter().map(|e| e.event).collect();
        if self.aggregator.apply(events).await.is_err() {
            return Ok(false);
        }
        self.position = next;
        if let Ok(mut followed) = self.followed.lock() {
            *followed = next;
        }
        self.since_snapshot += count;
        match self.log.stats().await {
            Ok(stats) => {
                self.metrics.log_length.set(stats.length as i64);
                let lag_ms = stats.head.ms.saturating_sub(self.position.ms);
                self.metrics.reader_lag_seconds.set(lag_ms as f64 / 1000.0);
                if self.position >= stats.head {
                    self.caught_up
                        .store(true, std::sync::atomic::Ordering::Release);
                }
            }
            Err(e) => warn!(error = %e, "cannot read log stats"),
        }
        Ok(true)
    }

    /// Writes a snapshot when events were applied since the last one.
    async fn snapshot_if_behind(&mut self) {
        if self.since_snapshot > 0 {
            self.snapshot().await;
        }
    }

    /// Writes a snapshot; the state is taken between two batches, so it covers exactly
    /// the events up to `position`.
    async fn snapshot(&mut self) {
        let meta = SnapshotMeta {
            position: self.position,
            epoch: self.baseline.epoch.clone(),
        };
        // The aggregator only copies its state (less than half the time encoding takes)
        // and goes on applying events; the copy is encoded on a thread of its own.
        let Ok(copy) = self.aggregator.query(|a| a.copy_for_snapshot()).await else {
            return;
        };
        let state = tokio::task::spawn_blocking(move || copy.to_bytes())
            .await
            .map_err(|e| e.to_string())
            .and_then(|encoded| encoded.map_err(|e| e.to_string()));
        let bytes = match state {
            Ok(state) => crate::snapshot::encode(&meta, &state),
            Err(e) => {
                self.since_snapshot = 0;
                self.metrics.snapshot_failures.inc();
                return warn!(error = %e, "cannot take a snapshot");
            }
        };
        let size = bytes.len();
        // Success or not, the next try comes after another N events: a snapshot that
        // fails (full disk, Redis out of memory) must not be retried after every batch.
        self.since_snapshot = 0;
        let saved = self.log.save_snapshot(&meta, bytes).await;
        let position = meta.position;
        match saved {
            Ok(saved @ (Saved::Stored | Saved::NewerKept)) => {
                if saved == Saved::Stored {
                    self.metrics.snapshots.inc();
                    self.metrics.snapshot_bytes.set(size as i64);
                    info!(%position, bytes = size, "snapshot written");
                } else {
                    info!(%position, "snapshot not stored: another node stored a newer one");
                }
                self.needed = position;
                self.retain().await;
            }
            Ok(Saved::EpochChanged) => {
                self.metrics.snapshot_failures.inc();
                warn!(%position, "snapshot not stored: the storage's epoch is not the one the figures were counted under");
            }
            Err(e) => {
                self.metrics.snapshot_failures.inc();
                warn!(error = %e, "cannot write the snapshot; trying again after the next events");
            }
        }
    }

    /// Retention, after a snapshot: trims what no node and no snapshot needs any more
    /// beyond the N newest entries.
    async fn retain(&mut self) {
        let Some(wanted) = self.window.as_ref().and_then(Window::floor) else {
            return;
        };
        let trimmed = self
            .log
            .trim(&self.node, self.needed, wanted, integrity::STALE_AFTER)
            .await;
        match trimmed {
            Ok(Some((floor, removed))) => {
                self.metrics.trimmed_entries.inc_by(removed);
                self.trimmed_before = self.trimmed_before.max(floor);
                info!(%floor, removed, "retention: stream trimmed");
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "retention: cannot trim the stream"),
        }
    }

    /// One look at the storage's integrity, and this node's heartbeat for retention.
    async fn look(&mut self) {
        let watch = match self.log.watch(Some((&self.node, self.needed))).await {
            Ok(watch) => watch,
            Err(e) => return warn!(error = %e, "cannot look at the storage's integrity"),
        };
        self.trimmed_before = watch.trimmed_before;
        if let Some(shown) = self.integrity.data_loss() {
            match (&watch.data_loss, self.recorded) {
                (Some(_), _) => self.recorded = true,
                (None, true) if watch.cleared.as_ref() == Some(&shown) => self.accept(&watch).await,
                (None, recorded) => {
                    // Found while the storage did not answer, or the record itself was
                    // lost with the storage's data (not cleared): record it (again).
                    if recorded {
                        error!(reason = %shown.reason, "the data-loss record is gone without being cleared: the storage lost data again");
                    }
                    match self.log.record_data_loss(&shown.reason).await {
                        Ok(stored) => {
                            self.integrity.set(stored, &self.metrics);
                            self.recorded = true;
                        }
                        Err(e) => {
                            warn!(error = %e, "cannot record the data loss; retrying");
                            self.recorded = false;
                        }
                    }
                }
            }
            return;
        }
        if let Some(record) = watch.data_loss {
            error!(
                reason = %record.reason, at = %record.at,
                "DATA LOST (recorded by another node or an earlier run): the figures may be \
                 wrong; clear with `botwatch data-loss clear` once handled"
            );
            self.integrity.set(record, &self.metrics);
            self.recorded = true;
            return;
        }
        if let Some(finding) = self.baseline.judge(&watch, self.position) {
            self.recorded =
                integrity::report(&self.log, &finding, &self.integrity, &self.metrics).await;
        }
    }

    /// An operator cleared the record: carry on from these figures, under the storage's
    /// present epoch and from where its log still is, and store a snapshot saying so
    /// (it replaces a stored one of another epoch or beyond the end of the stream).
    async fn accept(&mut self, watch: &botwatch_log::Watch) {
        let epoch = match &watch.epoch {
            Some(epoch) => epoch.clone(),
            None => match self.log.ensure_epoch().await {
                Ok((epoch, _)) => epoch,
                Err(e) => return warn!(error = %e, "cannot read the storage's epoch; retrying"),
            },
        };
        let head = match self.log.stats().await {
            Ok(stats) => stats.head,
            Err(e) => return warn!(error = %e, "cannot read the end of the log; retrying"),
        };
        self.baseline.accept(epoch, watch);
        self.position = integrity::carry_on_from(self.position, head, watch.trimmed_before);
        if let Ok(mut followed) = self.followed.lock() {
            *followed = self.position;
        }
        self.recorded = false;
        integrity::accepted(&self.integrity, &self.metrics);
        self.snapshot().await;
    }

    /// Notices settings changes and starts a recount of each bot whose figures they
    /// change. Recounts run beside the follower, so figures stay live meanwhile.
    async fn follow_settings(&mut self) -> Result<(), LogError> {
        let version = self.log.settings_version().await?;
        if self.settings_version == Some(version) {
            return Ok(());
        }
        for (bot, json) in self.log.all_settings().await? {
            // The same reading as GET: an unreadable document means the defaults.
            let settings = SettingsDoc::parse(&json)
                .unwrap_or_default()
                .figures()
                .unwrap_or_else(|| {
                    warn!(bot, "unreadable settings; the defaults apply");
                    BotSettings::default()
                });
            let counted = self.settings.get(&bot) == Some(&settings);
            let running = self.recounts.get(&bot).map(|(s, _)| *s);
            if running == Some(settings) || (counted && running.is_none()) {
                continue;
            }
            if let Some((_, task)) = self.recounts.remove(&bot) {
                // Settings changed again while counting: start over with these.
                task.abort();
            }
            if counted {
                continue;
            }
            let task = tokio::spawn(
                recount(
                    self.log.clone(),
                    bot.clone(),
                    settings,
                    self.followed.clone(),
                    self.trimmed_before,
                    self.recounted_tx.clone(),
                )
                .instrument(info_span!("follower.recount", bot)),
            );
            self.recounts.insert(bot, (settings, task));
        }
        self.metrics
            .recounts_running
            .set(self.recounts.len() as i64);
        self.settings_version = Some(version);
        Ok(())
    }

    /// Puts finished recounts in place: each is brought up to where the follower has
    /// read (the bot's events since the recount's end, applied to the new figures),
    /// then swapped in.
    async fn swap_recounted(&mut self) -> Result<(), LogError> {
        while let Ok(done) = self.recounted.try_recv() {
            self.pending.push_back(done);
        }
        while let Some(mut done) = self.pending.pop_front() {
            if self.recounts.get(&done.bot).map(|(s, _)| *s) != Some(done.settings) {
                continue; // overtaken by newer settings
            }
            // The recount caught up with the follower before it finished: what is left
            // is at most a batch or two.
            let mut caught_up = 0u64;
            while done.upto < self.position {
                let batch = match self.log.read(done.upto, BATCH, None).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        // Kept, with what it caught up so far: tried again next round.
                        self.pending.push_front(done);
                        return Err(e);
                    }
                };
                if batch.entries.is_empty() && batch.next == done.upto {
                    break;
                }
                caught_up += apply_bot_entries(&mut done.figures, &done.bot, &batch, self.position);
                done.upto = batch.next.min(self.position);
            }
            info!(bot = done.bot, caught_up, upto = %self.position, "recounted figures in place");
            self.recounts.remove(&done.bot);
            self.metrics
                .recounts_running
                .set(self.recounts.len() as i64);
            self.settings.insert(done.bot.clone(), done.settings);
            // A stopped aggregator is noticed by the next read.
            let _ = self.aggregator.replace(done.bot, done.figures).await;
        }
        Ok(())
    }
}

/// Applies the entries of `batch` that are `bot`'s and at or before `upto` (those after
/// it are read again by the next step); returns how many.
fn apply_bot_entries(
    figures: &mut BotFigures,
    bot: &str,
    batch: &botwatch_log::ReadBatch,
    upto: Position,
) -> u64 {
    let mut applied = 0;
    for entry in &batch.entries {
        if entry.position <= upto && entry.event.bot == bot {
            figures.apply(&entry.event);
            applied += 1;
        }
    }
    applied
}

/// The bot's figures with `settings`, from every event up to where the follower is (a
/// full scan of the log: settings change rarely), sent to the follower when done. It
/// reads on while the follower moves (a few rounds at most), so that what the follower
/// has left to catch up is small. A read that fails is retried with smaller batches;
/// the task ends early only when the follower aborts it.
async fn recount(
    log: Arc<AnyLog>,
    bot: String,
    settings: BotSettings,
    followed: Arc<std::sync::Mutex<Position>>,
    trimmed_before: Position,
    done: mpsc::UnboundedSender<Recounted>,
) {
    if trimmed_before > Position::START {
        error!(
            bot, %trimmed_before,
            "recounting from a trimmed stream (--retain-events): the bot's figures now \
             miss every event before the retention floor"
        );
    }
    let follower = || followed.lock().map(|p| *p).unwrap_or_default();
    let mut figures = BotFigures::new(settings);
    let mut after = Position::START;
    let mut events = 0u64;
    let mut backoff = Duration::from_millis(100);
    let mut batch_size = BATCH;
    for _round in 0..8 {
        let upto = follower();
        if upto <= after {
            break;
        }
        while after < upto {
            let batch = match log.read(after, batch_size, None).await {
                Ok(batch) => batch,
                Err(e) => {
                    batch_size = (batch_size / 2).max(1);
                    warn!(error = %e, bot, retry_in = ?backoff, batch_size, "recount cannot read the log; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            batch_size = BATCH;
            if batch.entries.is_empty() && batch.next == after {
                break;
            }
            events += apply_bot_entries(&mut figures, &bot, &batch, upto);
            after = batch.next.min(upto);
        }
    }
    info!(bot, events, upto = %after, "recounted with new settings");
    let _ = done.send(Recounted {
        bot,
        settings,
        figures,
        upto: after,
    });
}
