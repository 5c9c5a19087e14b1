//! Follows the log from its start and hands every event to the aggregator; keeps the
//! reader metrics. On Redis it is also what validates, de-duplicates, indexes and
//! dead-letters the entries adapters write straight into the stream.
//!
//! It also watches the bots' settings: when a bot's time zone or session timeout
//! changes (on this node or any other), it recounts that bot from the start of the log
//! up to where it has read, and puts the new figures in place before reading on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use botwatch_aggregator::{AggregatorHandle, BotFigures, BotSettings};
use botwatch_log::{AnyLog, EventLog, LogError, Position, SettingsStore, SnapshotStore};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::metrics::Metrics;
use crate::settings::SettingsDoc;

const BATCH: usize = 1_000;
const WAIT: Duration = Duration::from_secs(1);

/// Where following starts: after the snapshot the aggregator was restored from.
#[derive(Debug, Default)]
pub struct Start {
    pub position: Position,
    /// The settings the restored figures were counted with.
    pub settings: HashMap<String, BotSettings>,
    /// The log ends before `position`: events the snapshot counted are gone.
    pub log_behind_snapshot: bool,
}

struct Follower {
    log: Arc<AnyLog>,
    aggregator: AggregatorHandle,
    metrics: Arc<Metrics>,
    position: Position,
    settings_version: Option<u64>,
    settings: HashMap<String, BotSettings>,
    snapshot_every: u64,
    since_snapshot: u64,
}

pub async fn run(
    log: Arc<AnyLog>,
    aggregator: AggregatorHandle,
    metrics: Arc<Metrics>,
    start: Start,
    snapshot_every: u64,
    stop: CancellationToken,
) {
    let mut f = Follower {
        log,
        aggregator,
        metrics,
        position: start.position,
        settings_version: None,
        settings: start.settings,
        snapshot_every: snapshot_every.max(1),
        since_snapshot: 0,
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
            f.snapshot_if_behind().await;
            return;
        }
        let result = match f.follow_settings(&stop).await {
            Ok(()) => f.read_once(batch_size, &stop).await,
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
        let events = batch.entries.into_iter().map(|e| e.event).collect();
        if self.aggregator.apply(events).await.is_err() {
            return Ok(false);
        }
        self.position = next;
        self.since_snapshot += count;
        match self.log.stats().await {
            Ok(stats) => {
                self.metrics.log_length.set(stats.length as i64);
                let lag_ms = stats.head.ms.saturating_sub(self.position.ms);
                self.metrics.reader_lag_seconds.set(lag_ms as f64 / 1000.0);
            }
            Err(e) => warn!(error = %e, "cannot read log stats"),
        }
        Ok(true)
    }

    /// Writes a snapshot when events were applied since the last one. The state is
    /// taken between two batches, so it covers exactly the events up to `position`.
    async fn snapshot_if_behind(&mut self) {
        if self.since_snapshot == 0 {
            return;
        }
        let position = self.position;
        let state = self.aggregator.query(|a| a.to_bytes()).await;
        let bytes = match state {
            Ok(Ok(state)) => crate::snapshot::encode(position, &state),
            Ok(Err(e)) => {
                self.since_snapshot = 0;
                self.metrics.snapshot_failures.inc();
                return warn!(error = %e, "cannot take a snapshot");
            }
            Err(_) => return,
        };
        let size = bytes.len();
        // Success or not, the next try comes after another N events: a snapshot that
        // fails (full disk, Redis out of memory) must not be retried after every batch.
        self.since_snapshot = 0;
        match self.log.save_snapshot(bytes).await {
            Ok(()) => {
                self.metrics.snapshots.inc();
                self.metrics.snapshot_bytes.set(size as i64);
                info!(%position, bytes = size, "snapshot written");
            }
            Err(e) => {
                self.metrics.snapshot_failures.inc();
                warn!(error = %e, "cannot write the snapshot; trying again after the next events");
            }
        }
    }

    /// Notices settings changes and recounts the bots whose figures they change.
    async fn follow_settings(&mut self, stop: &CancellationToken) -> Result<(), LogError> {
        let version = self.log.settings_version().await?;
        if self.settings_version == Some(version) {
            return Ok(());
        }
        let mut fresh = HashMap::new();
        for (bot, json) in self.log.all_settings().await? {
            // The same reading as GET: an unreadable document means the defaults.
            let settings = SettingsDoc::parse(&json)
                .unwrap_or_default()
                .figures()
                .unwrap_or_else(|| {
                    warn!(bot, "unreadable settings; the defaults apply");
                    BotSettings::default()
                });
            fresh.insert(bot, settings);
        }
        for (bot, settings) in &fresh {
            if self.settings.get(bot) != Some(settings) {
                let done = self
                    .recount(bot, *settings, stop)
                    .instrument(info_span!("follower.recount", bot))
                    .await?;
                if !done {
                    // Stopping: the settings are not taken; the next start recounts.
                    return Ok(());
                }
            }
        }
        self.settings = fresh;
        self.settings_version = Some(version);
        Ok(())
    }

    /// The bot's figures with `settings`, from every event up to where the follower
    /// has read (a full scan of the log: settings change rarely). `Ok(false)` when it
    /// gave up because the server is stopping.
    async fn recount(
        &self,
        bot: &str,
        settings: BotSettings,
        stop: &CancellationToken,
    ) -> Result<bool, LogError> {
        let mut figures = BotFigures::new(settings);
        let mut after = Position::START;
        let mut events = 0u64;
        while after < self.position {
            if stop.is_cancelled() {
                return Ok(false);
            }
            let batch = self.log.read(after, BATCH, None).await?;
            if batch.entries.is_empty() && batch.next == after {
                break;
            }
            for entry in &batch.entries {
                if entry.position <= self.position && entry.event.bot == bot {
                    figures.apply(&entry.event);
                    events += 1;
                }
            }
            after = batch.next;
        }
        info!(bot, events, upto = %self.position, "recounted with new settings");
        // A stopped aggregator is noticed by the next read.
        let _ = self.aggregator.replace(bot.to_owned(), figures).await;
        Ok(true)
    }
}
