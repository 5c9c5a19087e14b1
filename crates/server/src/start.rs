//! Where a server starts: the newest snapshot, judged against the storage before it is
//! trusted, and any loss of data recorded or found on the way.

use botwatch_aggregator::Aggregator;
use botwatch_log::{
    AnyLog, EventLog, IntegrityStore, LogError, Position, SnapshotMeta, SnapshotStore,
};
use tracing::{error, info, warn};

use crate::follower::Start;
use crate::integrity::Finding;

/// The newest snapshot that can be read, with what the storage says of it. A snapshot
/// the storage no longer backs (another epoch, beyond the end of the log, needing
/// entries retention trimmed) is still used — its figures are the best there are — but
/// the loss is recorded and shown. One that cannot be read means a full replay.
pub async fn restore(log: &AnyLog, node: &str) -> Result<(Start, Aggregator), LogError> {
    let (epoch, made) = log.ensure_epoch().await?;
    if made {
        info!(%epoch, "the storage had no epoch: made one");
    }
    // Registered as needing everything, so retention elsewhere keeps what this node
    // is about to replay while it loads.
    let watch = log.watch(Some((node, Position::START))).await?;
    let snapshot = load(log).await;
    let head = log.stats().await?.head;

    let mut findings = Vec::new();
    let (position, state) =
        match snapshot {
            Some((meta, state)) => {
                if meta.epoch != epoch {
                    findings.push(Finding {
                    reason: format!(
                        "the snapshot was counted under the storage's epoch {}, but its epoch is \
                         {epoch}{}: the storage lost data (FLUSHALL, a failover to an empty \
                         replica, keys evicted?) or is another storage",
                        meta.epoch,
                        if made { " (just made: it had none)" } else { "" }
                    ),
                    behind: false,
                });
                }
                if head < meta.position {
                    findings.push(Finding {
                        reason: format!(
                            "the log ends at {head}, before the snapshot's position {}: events \
                         were lost (Redis restarted without persistence?)",
                            meta.position
                        ),
                        behind: true,
                    });
                }
                if meta.position < watch.trimmed_before {
                    findings.push(Finding {
                        reason: format!(
                            "the snapshot counts up to {}, but retention trimmed the stream before \
                         {}: the events between are gone",
                            meta.position, watch.trimmed_before
                        ),
                        behind: false,
                    });
                }
                if findings.is_empty() {
                    info!(position = %meta.position, "snapshot loaded; replaying the log after it");
                }
                (meta.position, state)
            }
            None if watch.trimmed_before > Position::START => {
                findings.push(Finding {
                    reason: format!(
                        "retention trimmed the stream before {} and there is no snapshot this \
                     build can use: a replay cannot count what was trimmed",
                        watch.trimmed_before
                    ),
                    behind: false,
                });
                (Position::START, Aggregator::default())
            }
            None => (Position::START, Aggregator::default()),
        };
    for f in &findings {
        error!(reason = %f.reason, "DATA LOST: the figures are NOT reliable");
    }

    let mut data_loss = watch.data_loss;
    let mut recorded = data_loss.is_some();
    if let Some(record) = &data_loss {
        error!(
            reason = %record.reason, at = %record.at,
            "DATA LOST (recorded earlier, not cleared): the figures may be wrong; clear with \
             `botwatch data-loss clear` once handled"
        );
    } else if let Some(first) = findings.first() {
        let stored = log.record_data_loss(&first.reason).await;
        recorded = stored.is_ok();
        data_loss = Some(stored.unwrap_or_else(|e| {
            warn!(error = %e, "cannot record the data loss yet; the follower retries");
            botwatch_log::DataLoss::new(&first.reason, chrono::Utc::now())
        }));
    }
    let settings = state.settings().map(|(b, s)| (b.to_owned(), s)).collect();
    Ok((
        Start {
            position,
            settings,
            node: node.to_owned(),
            epoch,
            data_loss,
            data_loss_recorded: recorded,
            log_behind_snapshot: findings.iter().any(|f| f.behind),
        },
        state,
    ))
}

/// The stored snapshot, decoded; `None` when there is none or it cannot be trusted
/// (another build or schema, damaged).
async fn load(log: &AnyLog) -> Option<(SnapshotMeta, Aggregator)> {
    let bytes = match log.load_snapshot().await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            info!("no snapshot: replaying the whole log");
            return None;
        }
        Err(e) => {
            // Not fatal: replaying the whole log gives the same figures, only later.
            warn!(error = %e, "cannot load the snapshot: replaying the whole log");
            return None;
        }
    };
    // Decoding takes about a second per million users: off the async workers.
    let decoded = tokio::task::spawn_blocking(move || crate::snapshot::decode(&bytes))
        .await
        .unwrap_or_else(|e| Err(format!("decoding task failed: {e}")));
    match decoded {
        Ok(decoded) => Some(decoded),
        Err(reason) => {
            warn!(%reason, "the snapshot cannot be read: replaying the whole log");
            None
        }
    }
}
