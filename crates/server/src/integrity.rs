//! Whether the figures can be trusted: a storage that lost data behind the server's
//! back (Redis flushed, failed over to an empty or stale replica, swapped for another,
//! a stream deleted or trimmed by someone else) is said so loudly — logged as an
//! error, `botwatch_data_lost` 1, `/readyz` 503 `data_lost` with the reason — instead
//! of counted around.
//!
//! The storage keeps an epoch (a random id made on first use); snapshots carry the
//! epoch their state was built under and every node knows its own. A detected loss is
//! recorded in the storage (`data_lost`), so it survives restarts and reaches every
//! node, until an operator clears it (`botwatch data-loss clear`). Meanwhile every
//! node keeps serving the figures it has — they may miss what was lost — and keeps
//! counting new events: nothing is reset silently. Once the record is cleared, the
//! nodes carry on from their figures under the storage's present epoch and position.

use std::time::{Duration, Instant};

use botwatch_log::{
    AnyLog, DataLoss, EventLog, IntegrityStore, LogError, Position, SnapshotMeta, SnapshotStore,
    StorageConfig, Watch,
};
use serde::Serialize;
use tokio::sync::watch;
use tracing::{error, info};

use crate::metrics::Metrics;

/// How often a running node looks at the storage's integrity (one round trip).
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long retention waits for a node it has not heard from: long enough for a
/// recount or a stall, short enough that a node gone for good stops holding the stream.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);

/// What `/readyz` must report beyond "the storage answers", and what the live
/// dashboards are told: every live connection holds a receiver of `shown` and starts
/// its subscriptions again, each with a fresh snapshot, when the loss shown changes.
#[derive(Debug)]
pub struct Integrity {
    shown: watch::Sender<Option<DataLoss>>,
}

impl Default for Integrity {
    fn default() -> Integrity {
        Integrity {
            shown: watch::Sender::new(None),
        }
    }
}

impl Integrity {
    /// The loss of data the figures suffer from, if any.
    pub fn data_loss(&self) -> Option<DataLoss> {
        self.shown.borrow().clone()
    }

    /// Told of every change of [`data_loss`](Self::data_loss) from now on.
    pub fn subscribe(&self) -> watch::Receiver<Option<DataLoss>> {
        self.shown.subscribe()
    }

    pub(crate) fn set(&self, record: DataLoss, metrics: &Metrics) {
        // The same record again (every look while it stands) changes nothing.
        self.shown.send_if_modified(|shown| {
            let changed = shown.as_ref() != Some(&record);
            *shown = Some(record);
            changed
        });
        metrics.data_lost.set(1);
    }

    fn clear(&self, metrics: &Metrics) {
        self.shown.send_if_modified(|shown| shown.take().is_some());
        metrics.data_lost.set(0);
        metrics.log_behind_snapshot.set(0);
    }
}

/// A loss of data as the live snapshots show it (`data_loss`): null while there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DataLossItem {
    /// What was found (`/readyz` shows the same).
    pub reason: String,
    /// When it was recorded (RFC 3339, UTC).
    pub at: String,
}

impl DataLossItem {
    pub fn of(loss: Option<&DataLoss>) -> Option<DataLossItem> {
        loss.map(|l| DataLossItem {
            reason: l.reason.clone(),
            at: l.at.clone(),
        })
    }
}

/// A loss found: why, and whether it is the log ending before what was counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub reason: String,
    pub behind: bool,
}

impl Finding {
    fn new(reason: String) -> Finding {
        Finding {
            reason,
            behind: false,
        }
    }

    fn behind(reason: String) -> Finding {
        Finding {
            reason,
            behind: true,
        }
    }
}

/// Where a state counted up to `position` carries on once a loss is accepted: not
/// beyond the end of the log (later entries may get lower ids than the lost ones), not
/// before the retention floor.
pub fn carry_on_from(position: Position, head: Position, trimmed_before: Position) -> Position {
    position.min(head).max(trimmed_before.just_before())
}

/// What a running node compares every look with: the storage as its state knows it.
#[derive(Debug)]
pub struct Baseline {
    /// The epoch the running state is built under.
    pub epoch: String,
    /// The most entries the stream was ever seen to have had added.
    entries_added: u64,
    /// Deletions and trims up to these were accepted by an operator.
    deleted_accepted: Position,
    floor_accepted: Position,
    last_look: Option<Instant>,
}

impl Baseline {
    pub fn new(epoch: String) -> Baseline {
        Baseline {
            epoch,
            entries_added: 0,
            deleted_accepted: Position::START,
            floor_accepted: Position::START,
            last_look: None,
        }
    }

    /// Whether it is time for another look.
    pub fn due(&mut self) -> bool {
        let due = self.last_look.is_none_or(|t| t.elapsed() >= CHECK_EVERY);
        if due {
            self.last_look = Some(Instant::now());
        }
        due
    }

    /// A loss that `watch` shows for a state counted up to `position`, if any.
    pub fn judge(&mut self, watch: &Watch, position: Position) -> Option<Finding> {
        let epoch = match &watch.epoch {
            None => {
                return Some(Finding::new(
                    "the storage's epoch is gone: it lost data (FLUSHALL, a failover to an \
                     empty replica, keys evicted?)"
                        .to_owned(),
                ));
            }
            Some(epoch) => epoch,
        };
        if *epoch != self.epoch {
            return Some(Finding::new(format!(
                "the storage's epoch changed from {} to {epoch}: it lost data or is another \
                 storage",
                self.epoch
            )));
        }
        let Some(stream) = watch.stream else {
            if position > Position::START {
                return Some(Finding::behind(format!(
                    "the stream is gone, but the figures count events up to {position}"
                )));
            }
            return None;
        };
        if stream.entries_added < self.entries_added {
            return Some(Finding::new(format!(
                "the stream was made anew: {} entries ever added, {} before",
                stream.entries_added, self.entries_added
            )));
        }
        self.entries_added = stream.entries_added;
        if stream.last_generated < position {
            return Some(Finding::behind(format!(
                "the stream ends at {}, before {position}, which the figures count up to: \
                 events were lost",
                stream.last_generated
            )));
        }
        if stream.max_deleted > self.deleted_accepted && stream.max_deleted >= watch.trimmed_before
        {
            return Some(Finding::new(format!(
                "entry {} was deleted from the stream, not by botwatch's retention (XDEL, or a \
                 trim from outside)",
                stream.max_deleted
            )));
        }
        if watch.trimmed_before > position.max(self.floor_accepted) {
            return Some(Finding::new(format!(
                "retention trimmed the stream before {}, past {position}, where this node reads \
                 (silent for longer than {STALE_AFTER:?}?)",
                watch.trimmed_before
            )));
        }
        None
    }

    /// Takes the storage as it is now as the baseline (an operator accepted a loss).
    pub fn accept(&mut self, epoch: String, watch: &Watch) {
        self.epoch = epoch;
        if let Some(stream) = watch.stream {
            self.entries_added = stream.entries_added;
            self.deleted_accepted = stream.max_deleted;
        } else {
            self.entries_added = 0;
        }
        self.floor_accepted = watch.trimmed_before;
    }
}

/// Logs a loss loudly, records it in the storage (the first record stays) and shows it
/// on `/readyz` and `/metrics`. Returns whether the record is in the storage.
pub async fn report(
    log: &AnyLog,
    finding: &Finding,
    integrity: &Integrity,
    metrics: &Metrics,
) -> bool {
    error!(
        reason = %finding.reason,
        "DATA LOST: the figures may be wrong from here on; they are still served and new \
         events still counted; /readyz answers 503 data_lost until an operator runs \
         `botwatch data-loss clear`"
    );
    if finding.behind {
        metrics.log_behind_snapshot.set(1);
    }
    let (record, recorded) = match log.record_data_loss(&finding.reason).await {
        Ok(record) => (record, true),
        Err(e) => {
            error!(error = %e, "cannot record the data loss in the storage; retrying");
            (DataLoss::new(&finding.reason, chrono::Utc::now()), false)
        }
    };
    integrity.set(record, metrics);
    recorded
}

/// Takes back an operator's clearing on this node: the loss is no longer shown.
pub fn accepted(integrity: &Integrity, metrics: &Metrics) {
    info!(
        "the data-loss record was cleared: carrying on from the figures this node has, under \
         the storage's present epoch"
    );
    integrity.clear(metrics);
}

/// What `botwatch data-loss clear` did.
#[derive(Debug)]
pub struct Cleared {
    /// The record removed; `None` when there was none.
    pub record: Option<DataLoss>,
    /// The stored snapshot, moved to the storage's present epoch and position, when it
    /// claimed another.
    pub snapshot: Option<SnapshotMeta>,
}

/// The recorded loss of data, if any (`botwatch data-loss show`).
pub async fn recorded_data_loss(storage: &StorageConfig) -> Result<Option<DataLoss>, LogError> {
    let log = AnyLog::open(storage).await?;
    let watch = log.watch(None).await;
    log.close().await;
    Ok(watch?.data_loss)
}

/// Clears the record of a loss (`botwatch data-loss clear`): the operator accepts that
/// the figures miss what was lost. Running nodes notice within a second and carry on;
/// the stored snapshot is moved to the storage's present epoch and position, so that
/// the next start does not find the same loss again.
pub async fn clear_data_loss(storage: &StorageConfig) -> Result<Cleared, LogError> {
    let log = AnyLog::open(storage).await?;
    let cleared = clear_on(&log).await;
    log.close().await;
    cleared
}

async fn clear_on(log: &AnyLog) -> Result<Cleared, LogError> {
    let (epoch, _) = log.ensure_epoch().await?;
    let watch = log.watch(None).await?;
    let head = log.stats().await?.head;
    let record = log.clear_data_loss().await?;
    let mut snapshot = None;
    if let Some(bytes) = log.load_snapshot().await?
        && let Ok((meta, state)) = crate::snapshot::open(&bytes)
    {
        let moved = SnapshotMeta {
            position: carry_on_from(meta.position, head, watch.trimmed_before),
            epoch,
        };
        if moved != meta {
            log.replace_snapshot(&moved, crate::snapshot::encode(&moved, state))
                .await?;
            snapshot = Some(moved);
        }
    }
    Ok(Cleared { record, snapshot })
}

#[cfg(test)]
mod tests {
    use botwatch_log::StreamInfo;

    use super::*;

    fn watch(epoch: &str, added: u64, deleted: Position, last: Position) -> Watch {
        Watch {
            epoch: Some(epoch.to_owned()),
            data_loss: None,
            cleared: None,
            trimmed_before: Position::START,
            stream: Some(StreamInfo {
                entries_added: added,
                max_deleted: deleted,
                last_generated: last,
            }),
        }
    }

    #[test]
    fn every_kind_of_loss_is_found_and_a_sound_storage_passes() {
        let p = |ms| Position::new(ms, 0);
        let mut b = Baseline::new("e1".to_owned());
        assert_eq!(b.judge(&watch("e1", 10, p(0), p(10)), p(10)), None);
        let lost = |b: &mut Baseline, w: &Watch, at| b.judge(w, at).expect("a loss");
        assert!(
            lost(&mut b, &watch("e2", 10, p(0), p(10)), p(10))
                .reason
                .contains("epoch changed")
        );
        let mut gone = watch("e1", 10, p(0), p(10));
        gone.epoch = None;
        assert!(lost(&mut b, &gone, p(10)).reason.contains("epoch is gone"));
        gone.epoch = Some("e1".to_owned());
        gone.stream = None;
        assert!(lost(&mut b, &gone, p(10)).behind);
        assert!(
            lost(&mut b, &watch("e1", 3, p(0), p(20)), p(10))
                .reason
                .contains("anew")
        );
        let behind = lost(&mut b, &watch("e1", 10, p(0), p(5)), p(10));
        assert!(behind.behind && behind.reason.contains("ends at"));
        assert!(
            lost(&mut b, &watch("e1", 10, p(7), p(10)), p(10))
                .reason
                .contains("deleted")
        );
        let mut trimmed = watch("e1", 10, p(7), p(30));
        trimmed.trimmed_before = p(8);
        assert_eq!(b.judge(&trimmed, p(10)), None, "retention's own trim");
        trimmed.trimmed_before = p(20);
        assert!(
            lost(&mut b, &trimmed, p(10))
                .reason
                .contains("retention trimmed")
        );

        // Accepted, the same storage passes; a new loss is found again.
        b.accept("e2".to_owned(), &watch("e2", 3, p(7), p(10)));
        assert_eq!(b.judge(&watch("e2", 3, p(7), p(10)), p(10)), None);
        assert!(b.judge(&watch("e2", 3, p(9), p(10)), p(10)).is_some());
    }

    #[test]
    fn connections_are_told_when_the_loss_shown_changes_and_only_then() {
        let (integrity, metrics) = (Integrity::default(), Metrics::new());
        let mut told = integrity.subscribe();
        let loss = DataLoss::new("the storage's epoch is gone", chrono::Utc::now());
        integrity.set(loss.clone(), &metrics);
        assert!(told.has_changed().expect("open"), "a loss found");
        assert_eq!(*told.borrow_and_update(), Some(loss.clone()));
        integrity.set(loss.clone(), &metrics);
        assert!(!told.has_changed().expect("open"), "the same record again");
        let again = DataLoss::new("the stream was made anew", chrono::Utc::now());
        integrity.set(again.clone(), &metrics);
        assert!(told.has_changed().expect("open"), "another record");
        assert_eq!(*told.borrow_and_update(), Some(again));
        integrity.clear(&metrics);
        assert!(told.has_changed().expect("open"), "the record cleared");
        assert_eq!(*told.borrow_and_update(), None);
        integrity.clear(&metrics);
        assert!(!told.has_changed().expect("open"), "nothing to clear");
    }

    #[test]
    fn after_a_loss_reading_carries_on_from_what_the_log_still_has() {
        let p = |ms| Position::new(ms, 0);
        assert_eq!(carry_on_from(p(10), p(4), Position::START), p(4));
        assert_eq!(carry_on_from(p(10), p(40), Position::START), p(10));
        assert_eq!(carry_on_from(p(10), p(40), p(20)), p(20).just_before());
    }
}
