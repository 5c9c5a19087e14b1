//! What the storage keeps so that a loss of data is seen, not counted around: the
//! epoch, the record of a detected loss, what the stream says of itself.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::Position;

/// A detected loss of data, kept in the storage until an operator clears it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataLoss {
    pub reason: String,
    /// When it was recorded (RFC 3339, UTC).
    pub at: String,
}

impl DataLoss {
    pub fn new(reason: &str, at: DateTime<Utc>) -> DataLoss {
        DataLoss {
            reason: reason.to_owned(),
            at: at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }

    pub(crate) fn to_json(&self) -> String {
        serde_json::json!({"reason": self.reason, "at": self.at}).to_string()
    }

    /// A record that cannot be read still says that data was lost.
    pub(crate) fn from_json(json: &str) -> DataLoss {
        serde_json::from_str(json).unwrap_or_else(|_| DataLoss {
            reason: format!("unreadable data-loss record: {json}"),
            at: String::new(),
        })
    }
}

/// What the stream says of itself (Redis's `XINFO STREAM`; the embedded store
/// answers from its own counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamInfo {
    /// Entries ever added; starts again from 0 when the stream is made anew.
    pub entries_added: u64,
    /// The highest id ever deleted (`XDEL`, `XTRIM`); `0-0` when none.
    pub max_deleted: Position,
    /// The id of the last entry ever added, deleted or not.
    pub last_generated: Position,
}

/// One look at the storage's integrity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watch {
    /// `None`: the storage has no epoch (it lost it, or everything).
    pub epoch: Option<String>,
    pub data_loss: Option<DataLoss>,
    /// The record an operator cleared last: a record gone without being cleared here
    /// was lost with the storage's data, not accepted.
    pub cleared: Option<DataLoss>,
    /// Entries before this position may have been trimmed by retention.
    pub trimmed_before: Position,
    /// `None`: the stream does not exist.
    pub stream: Option<StreamInfo>,
}

/// What a snapshot was taken at: the log position it covers and the storage's epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub position: Position,
    pub epoch: String,
}

/// What became of a snapshot saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Stored,
    /// Another node stored a newer one of the same epoch: it stays.
    NewerKept,
    /// The storage's epoch is not the snapshot's (or is gone): a loss of data that the
    /// integrity checks report; the snapshot is not stored.
    EpochChanged,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_records_still_say_data_was_lost() {
        let r = DataLoss::new("epoch changed", DateTime::UNIX_EPOCH);
        assert_eq!(DataLoss::from_json(&r.to_json()), r);
        assert!(DataLoss::from_json("garbage").reason.contains("garbage"));
    }
}
