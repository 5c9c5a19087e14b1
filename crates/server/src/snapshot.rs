//! Snapshots of the aggregator: the log position they cover, then the state. On start
//! the newest one is loaded and the log replayed from its position; without one (or
//! with one that cannot be trusted) the whole log is replayed.
//!
//! Layout: `BWSNAP02`, the aggregator's schema number (u32), the length and bytes of
//! the build's version, the position (ms, seq), the state's length and FNV-1a 64
//! checksum, then the state. A snapshot of another schema or build, a wrong checksum or
//! state bytes left over after decoding are refused: replaying costs time, trusting a
//! snapshot whose meaning changed would cost correctness.

use botwatch_aggregator::{Aggregator, SNAPSHOT_SCHEMA};
use botwatch_log::Position;

const MAGIC: &[u8; 8] = b"BWSNAP02";
const BUILD: &str = env!("CARGO_PKG_VERSION");

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn encode(position: Position, state: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(64 + state.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&SNAPSHOT_SCHEMA.to_le_bytes());
    bytes.extend_from_slice(&(BUILD.len() as u16).to_le_bytes());
    bytes.extend_from_slice(BUILD.as_bytes());
    bytes.extend_from_slice(&position.ms.to_le_bytes());
    bytes.extend_from_slice(&position.seq.to_le_bytes());
    bytes.extend_from_slice(&(state.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&fnv1a(state).to_le_bytes());
    bytes.extend_from_slice(state);
    bytes
}

/// Reads fixed-size fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let (head, rest) = self.0.split_at_checked(n).ok_or("truncated")?;
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| "truncated")?))
    }
}

/// The position and state of a snapshot; why not, when it cannot be trusted.
pub fn decode(bytes: &[u8]) -> Result<(Position, Aggregator), String> {
    let mut r = Reader(bytes);
    if r.take(8)? != MAGIC {
        return Err("not a botwatch snapshot of this format".to_owned());
    }
    let schema = u32::from_le_bytes(r.take(4)?.try_into().map_err(|_| "truncated")?);
    let build_len = u16::from_le_bytes(r.take(2)?.try_into().map_err(|_| "truncated")?);
    let build = String::from_utf8_lossy(r.take(usize::from(build_len))?).into_owned();
    if schema != SNAPSHOT_SCHEMA || build != BUILD {
        return Err(format!(
            "written by build {build} (schema {schema}); this is {BUILD} (schema {SNAPSHOT_SCHEMA})"
        ));
    }
    let position = Position::new(r.u64()?, r.u64()?);
    let len = r.u64()?;
    let checksum = r.u64()?;
    let state = r.0;
    if state.len() as u64 != len || fnv1a(state) != checksum {
        return Err("damaged: length or checksum does not match".to_owned());
    }
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
        assert!(decode(b"BWSNAP01whatever").is_err(), "another format");
        assert!(decode(b"").is_err());
        let mut flipped = bytes.clone();
        if let Some(last) = flipped.last_mut() {
            *last ^= 1;
        }
        assert!(decode(&flipped).is_err(), "a flipped bit");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err(), "bytes left over");
        let mut other_schema = bytes.clone();
        other_schema[8] ^= 1;
        assert!(decode(&other_schema).is_err(), "another schema");
    }
}
