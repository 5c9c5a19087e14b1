use std::fmt;
use std::str::FromStr;

/// A place in the log. Both backends use the shape of a Redis stream id: the append
/// time in milliseconds and a sequence number within that millisecond, so positions
/// order the same way everywhere and the distance between two says how far (in append
/// time) a reader is behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub ms: u64,
    pub seq: u64,
}

impl Position {
    /// Before every entry: reading after it reads the log from its beginning.
    pub const START: Position = Position { ms: 0, seq: 0 };

    pub fn new(ms: u64, seq: u64) -> Position {
        Position { ms, seq }
    }

    /// The position that follows `self` for an append made at `now_ms`: time never
    /// goes backwards, and entries within one millisecond count up.
    pub fn next_after(self, now_ms: u64) -> Position {
        if now_ms > self.ms {
            Position { ms: now_ms, seq: 0 }
        } else {
            Position {
                ms: self.ms,
                seq: self.seq + 1,
            }
        }
    }

    /// The position just before `self`: reading after it reads `self` first.
    pub fn just_before(self) -> Position {
        match (self.ms, self.seq) {
            (0, 0) => Position::START,
            (ms, 0) => Position::new(ms - 1, u64::MAX),
            (ms, seq) => Position::new(ms, seq - 1),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a log position: {0:?} (expected MILLIS-SEQ)")]
pub struct BadPosition(String);

impl FromStr for Position {
    type Err = BadPosition;

    fn from_str(s: &str) -> Result<Position, BadPosition> {
        let bad = || BadPosition(s.to_owned());
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        Ok(Position {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// Where a page of dialog history stopped: the event time and log position of the
/// oldest message returned. Shown to clients as an opaque string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HistoryCursor {
    pub ts_ms: i64,
    pub position: Position,
}

impl fmt::Display for HistoryCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.ts_ms, self.position)
    }
}

impl FromStr for HistoryCursor {
    type Err = BadPosition;

    fn from_str(s: &str) -> Result<HistoryCursor, BadPosition> {
        let bad = || BadPosition(s.to_owned());
        let (ts, pos) = s.split_once('_').ok_or_else(bad)?;
        Ok(HistoryCursor {
            ts_ms: ts.parse().map_err(|_| bad())?,
            position: pos.parse().map_err(|_| bad())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_order() {
        let p: Position = "1732612345678-12".parse().expect("parses");
        assert_eq!(p, Position::new(1_732_612_345_678, 12));
        assert_eq!(p.to_string(), "1732612345678-12");
        assert!(Position::new(5, 10) > Position::new(5, 9));
        assert!(Position::new(6, 0) > Position::new(5, 99));
        assert!("12".parse::<Position>().is_err());
        assert!("a-1".parse::<Position>().is_err());
    }

    #[test]
    fn next_position_never_goes_back() {
        let p = Position::new(100, 3);
        assert_eq!(p.next_after(101), Position::new(101, 0));
        assert_eq!(p.next_after(100), Position::new(100, 4));
        assert_eq!(p.next_after(50), Position::new(100, 4));
    }

    #[test]
    fn the_position_just_before_sorts_just_before() {
        for p in [
            Position::new(5, 3),
            Position::new(5, 0),
            Position::new(1, 0),
        ] {
            assert!(p.just_before() < p, "{p}");
        }
        assert_eq!(
            Position::new(5, 0).just_before(),
            Position::new(4, u64::MAX)
        );
        assert_eq!(Position::START.just_before(), Position::START);
    }

    #[test]
    fn cursors_round_trip() {
        let c = HistoryCursor {
            ts_ms: 1_732_612_345_000,
            position: Position::new(1_732_612_345_678, 2),
        };
        assert_eq!(c.to_string().parse::<HistoryCursor>(), Ok(c));
        assert!("nonsense".parse::<HistoryCursor>().is_err());
    }
}
