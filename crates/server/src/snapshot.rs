//! Snapshots of the aggregator: the log position they cover, then the state. On start
//! the newest one is loaded and the log replayed from its position; without one (or
//! with one that cannot be read) the whole log is replayed.

use botwatch_aggregator::Aggregator;
use botwatch_log::Position;

const MAGIC: &[u8; 8] = b"BWSNAP01";

pub fn encode(position: Position, state: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(24 + state.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&position.ms.to_le_bytes());
    bytes.extend_from_slice(&position.seq.to_le_bytes());
    bytes.extend_from_slice(state);
    bytes
}

/// The position and state of a snapshot; why not, when it cannot be read.
pub fn decode(bytes: &[u8]) -> Result<(Position, Aggregator), String> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or("not a botwatch snapshot (or of another version)")?;
    let (ms, rest) = rest.split_at_checked(8).ok_or("truncated")?;
    let (seq, state) = rest.split_at_checked(8).ok_or("truncated")?;
    let number = |b: &[u8]| {
        b.try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| "truncated")
    };
    let position = Position::new(number(ms)?, number(seq)?);
    let state = Aggregator::from_bytes(state).map_err(|e| e.to_string())?;
    Ok((position, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_damage_is_refused() {
        let state = Aggregator::default().to_bytes().expect("bytes");
        let bytes = encode(Position::new(1_780_000_000_000, 7), &state);
        let (position, _) = decode(&bytes).expect("decodes");
        assert_eq!(position, Position::new(1_780_000_000_000, 7));
        assert!(decode(&bytes[..20]).is_err(), "truncated");
        assert!(decode(b"BWSNAP99whatever").is_err(), "another version");
        assert!(decode(b"").is_err());
    }
}
