//! Follows the log from its start and hands every event to the aggregator; keeps the
//! reader metrics. On Redis it is also what validates, de-duplicates, indexes and
//! dead-letters the entries adapters write straight into the stream.

use std::sync::Arc;
use std::time::Duration;

use botwatch_aggregator::AggregatorHandle;
use botwatch_log::{AnyLog, EventLog, Position};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span, warn};

use crate::metrics::Metrics;

const BATCH: usize = 1_000;
const WAIT: Duration = Duration::from_secs(1);

pub async fn run(
    log: Arc<AnyLog>,
    aggregator: AggregatorHandle,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut position = Position::START;
    let mut backoff = Duration::from_millis(100);
    // Halved after each failed read, so that a run of huge entries is read a few at a
    // time instead of timing out forever; back to full size after a success.
    let mut batch_size = BATCH;
    loop {
        let read = log
            .read(position, batch_size, Some(WAIT))
            .instrument(info_span!("follower.read", %position));
        let batch = tokio::select! {
            _ = stop.cancelled() => return,
            batch = read => batch,
        };
        match batch {
            Ok(batch) => {
                backoff = Duration::from_millis(100);
                batch_size = BATCH;
                position = batch.next;
                metrics.reader_events.inc_by(batch.entries.len() as u64);
                let events = batch.entries.into_iter().map(|e| e.event).collect();
                if aggregator.apply(events).await.is_err() {
                    return;
                }
                metrics.dead_letters.inc_by(batch.dead_lettered);
                match log.stats().await {
                    Ok(stats) => {
                        metrics.log_length.set(stats.length as i64);
                        let lag_ms = stats.head.ms.saturating_sub(position.ms);
                        metrics.reader_lag_seconds.set(lag_ms as f64 / 1000.0);
                    }
                    Err(e) => warn!(error = %e, "cannot read log stats"),
                }
            }
            Err(e) => {
                batch_size = (batch_size / 2).max(1);
                warn!(error = %e, retry_in = ?backoff, batch_size, "log follower cannot read; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
