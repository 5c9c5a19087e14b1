//! Snapshots of the aggregator: the log position they cover, then the state. On start
//! the newest one is loaded and the log replayed from its position; without one (or
//! with one that cannot be trusted) the whole log is replayed.
//!
//! Layout: `BWSNAP03`, the aggregator's schema number (u32), the length (u16) and bytes
//! of the build's version, the length (u16) and bytes of the storage's epoch the state
//! was built under, the position (ms, seq), the state's length and FNV-1a 64 checksum,
//! then the state. A snapshot of another format, schema or build, a wrong checksum or
//! state bytes left over after decoding are refused: replaying costs time, trusting a
//! snapshot whose meaning changed would cost correctness. The epoch is not judged
//! here: a snapshot of another epoch than the storage's says the storage lost data.

use botwatch_aggregator::{Aggregator, SNAPSHOT_SCHEMA};
use botwatch_log::{Position, SnapshotMeta};

const MAGIC: &[u8; 8] = b"BWSNAP03";
const BUILD: &str = env!("CARGO_PKG_VERSION");

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn encode(meta: &SnapshotMeta, state: &[u8]) -> Vec<u8> {
    let epoch = meta.epoch.as_bytes();
    let epoch = &epoch[..epoch.len().min(usize::from(u16::MAX))];
    let mut bytes = Vec::with_capacity(64 + epoch.len() + state.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&SNAPSHOT_SCHEMA.to_le_bytes());
    bytes.extend_from_slice(&(BUILD.len() as u16).to_le_bytes());
    bytes.extend_from_slice(BUILD.as_bytes());
    bytes.extend_from_slice(&(epoch.len() as u16).to_le_bytes());
    bytes.extend_from_slice(epoch);
    bytes.extend_from_slice(&meta.position.ms.to_le_bytes());
    bytes.extend_from_slice(&meta.position.seq.to_le_bytes());
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

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().map_err(|_| "truncated")?,
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| "truncated")?))
    }
}

/// What a snapshot was taken at, and its state's bytes, checked but not decoded;
/// why not, when it cannot be trusted.
pub fn open(bytes: &[u8]) -> Result<(SnapshotMeta, &[u8]), String> {
    let mut r = Reader(bytes);
    if r.take(8)? != MAGIC {
        return Err("not a botwatch snapshot of this format".to_owned());
    }
    let schema = u32::from_le_bytes(r.take(4)?.try_into().map_err(|_| "truncated")?);
    let build_len = r.u16()?;
    let build = String::from_utf8_lossy(r.take(usize::from(build_len))?).into_owned();
    if schema != SNAPSHOT_SCHEMA || build != BUILD {
        return Err(format!(
            "written by build {build} (schema {schema}); this is {BUILD} (schema {SNAPSHOT_SCHEMA})"
        ));
    }
    let epoch_len = r.u16()?;
    let epoch = String::from_utf8_lossy(r.take(usize::from(epoch_len))?).into_owned();
    let position = Position::new(r.u64()?, r.u64()?);
    let len = r.u64()?;
    let checksum = r.u64()?;
    let state = r.0;
    if state.len() as u64 != len || fnv1a(state) != checksum {
        return Err("damaged: length or checksum does not match".to_owned());
    }
    Ok((SnapshotMeta { position, epoch }, state))
}

/// What a snapshot was taken at and its state; why not, when it cannot be trusted.
pub fn decode(bytes: &[u8]) -> Result<(SnapshotMeta, Aggregator), String> {
    let (meta, state) = open(bytes)?;
    let state = Aggregator::from_bytes(state).map_err(|e| e.to_string())?;
    Ok((meta, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_damage_is_refused() {
        let state = Aggregator::default().to_bytes().expect("bytes");
        let meta = SnapshotMeta {
            position: Position::new(1_780_000_000_000, 7),
            epoch: "0123abcd".to_owned(),
        };
        let bytes = encode(&meta, &state);
        let (decoded, _) = decode(&bytes).expect("decodes");
        assert_eq!(decoded, meta);
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
        let mut previous_format = bytes.clone();
        previous_format[..8].copy_from_slice(b"BWSNAP02");
        let refused = decode(&previous_format).expect_err("the format before epochs");
        assert!(refused.contains("format"), "{refused}");
    }
}
