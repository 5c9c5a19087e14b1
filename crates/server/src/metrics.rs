//! Prometheus metrics, served at `/metrics` in the text format.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    /// Events in accepted requests (new and duplicates).
    pub events_accepted: Counter,
    /// Accepted events that were already in the log (same bot and id).
    pub events_duplicate: Counter,
    /// Events (or, for malformed bodies, requests) refused, by reason.
    pub events_rejected: Family<Labels, Counter>,
    pub log_length: Gauge,
    /// How far the log follower is behind the head of the log, in append time.
    pub reader_lag_seconds: Gauge<f64, AtomicU64>,
    /// Events the log follower has read.
    pub reader_events: Counter,
    /// Entries written into the Redis stream by adapters that were not valid events.
    pub dead_letters: Counter,
    /// 1 when the storage answers, 0 when not (as `/readyz`).
    pub storage_ready: Gauge,
    /// Snapshots of the aggregator written.
    pub snapshots: Counter,
    pub snapshot_bytes: Gauge,
    pub snapshot_failures: Counter,
    /// 1 when the log ends before what the figures count (data lost).
    pub log_behind_snapshot: Gauge,
    /// 1 while a loss of data is recorded and not cleared (any cause).
    pub data_lost: Gauge,
    /// Stream entries removed by retention.
    pub trimmed_entries: Counter,
    /// Bots being recounted after a settings change (their figures meanwhile are
    /// those of the old settings).
    pub recounts_running: Gauge,
    /// Live (WebSocket) connections open.
    pub live_connections: Gauge,
    /// Subscriptions resynced with a snapshot because they fell behind.
    pub live_resyncs: Counter,
    /// Connections closed (1013) because their socket took no frame for too long.
    pub live_closed_slow: Counter,
    /// Operator messages this node delivered, by outcome (`sent`, `failed`).
    pub operator_deliveries: Family<Labels, Counter>,
    /// Dialogs this node flagged because a user asked for a human, or a bot handed off.
    pub handoffs: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("botwatch");
        let m = Metrics {
            events_accepted: Counter::default(),
            events_duplicate: Counter::default(),
            events_rejected: Family::default(),
            log_length: Gauge::default(),
            reader_lag_seconds: Gauge::default(),
            recounts_running: Gauge::default(),
            live_connections: Gauge::default(),
            live_resyncs: Counter::default(),
            live_closed_slow: Counter::default(),
            operator_deliveries: Family::default(),
            handoffs: Counter::default(),
            reader_events: Counter::default(),
            dead_letters: Counter::default(),
            storage_ready: Gauge::default(),
            snapshots: Counter::default(),
            snapshot_bytes: Gauge::default(),
            snapshot_failures: Counter::default(),
            log_behind_snapshot: Gauge::default(),
            data_lost: Gauge::default(),
            trimmed_entries: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_accepted",
            "Events in accepted ingest requests, duplicates included",
            m.events_accepted.clone(),
        );
        registry.register(
            "events_duplicate",
            "Accepted events already in the log under the same bot and id",
            m.events_duplicate.clone(),
        );
        registry.register(
            "events_rejected",
            "Events refused at ingest, by reason (malformed bodies count once)",
            m.events_rejected.clone(),
        );
        registry.register(
            "log_length",
            "Entries in the event log",
            m.log_length.clone(),
        );
        registry.register(
            "reader_lag_seconds",
            "How far the log follower is behind the head of the log, in append time",
            m.reader_lag_seconds.clone(),
        );
        registry.register(
            "live_connections",
            "Live (WebSocket) connections open",
            m.live_connections.clone(),
        );
        registry.register(
            "live_resyncs",
            "Live subscriptions resynced with a snapshot after falling behind",
            m.live_resyncs.clone(),
        );
        registry.register(
            "live_closed_slow",
            "Live connections closed (1013) because they took no frame for too long",
            m.live_closed_slow.clone(),
        );
        registry.register(
            "operator_deliveries",
            "Operator messages this node delivered, by outcome (sent, failed)",
            m.operator_deliveries.clone(),
        );
        registry.register(
            "handoffs",
            "Dialogs flagged for a human (a user asked, or a bot handed off)",
            m.handoffs.clone(),
        );
        registry.register(
            "recounts_running",
            "Bots being recounted after a change of their settings",
            m.recounts_running.clone(),
        );
        registry.register(
            "reader_events",
            "Events read by the log follower",
            m.reader_events.clone(),
        );
        registry.register(
            "dead_letters",
            "Stream entries that were not valid events, moved to the dead-letter stream",
            m.dead_letters.clone(),
        );
        registry.register(
            "storage_ready",
            "1 when the storage answers, else 0",
            m.storage_ready.clone(),
        );
        registry.register(
            "snapshots",
            "Snapshots of the aggregator written",
            m.snapshots.clone(),
        );
        registry.register(
            "snapshot_bytes",
            "Size of the last snapshot",
            m.snapshot_bytes.clone(),
        );
        registry.register(
            "snapshot_failures",
            "Snapshots of the aggregator that could not be taken or stored",
            m.snapshot_failures.clone(),
        );
        registry.register(
            "log_behind_snapshot",
            "1 when the log ends before the position the figures count up to: events were lost",
            m.log_behind_snapshot.clone(),
        );
        registry.register(
            "data_lost",
            "1 while a loss of data is recorded and not cleared: the figures may be wrong (see /readyz)",
            m.data_lost.clone(),
        );
        registry.register(
            "trimmed_entries",
            "Stream entries removed by retention (--retain-events)",
            m.trimmed_entries.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn reject(&self, reason: &'static str, count: u64) {
        self.events_rejected
            .get_or_create(&vec![("reason", reason)])
            .inc_by(count);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
