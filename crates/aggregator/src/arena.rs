//! One growing buffer for a bot's short strings (user ids, names, profile fields): a
//! user then holds an 8-byte reference instead of a heap allocation of its own per
//! string, which is most of the memory a million users would otherwise take.
//!
//! Strings are never removed; a replaced name stays behind as garbage until the
//! figures are rebuilt from a snapshot (names change rarely, so this stays small).

/// Where a string lives in an [`Arena`]: 40 bits of offset, 24 bits of length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct StrRef(u64);

const LEN_BITS: u32 = 24;
const MAX_LEN: usize = (1 << LEN_BITS) - 1;

impl StrRef {
    /// The empty string (also what "no value" is stored as next to a flag or a time).
    pub(crate) const EMPTY: StrRef = StrRef(0);

    fn range(self) -> std::ops::Range<usize> {
        let start = (self.0 >> LEN_BITS) as usize;
        start..start + (self.0 as usize & MAX_LEN)
    }
}

/// A string of up to 15 bytes kept in place (most user ids: Telegram's, phone numbers),
/// else a reference into the arena. Finding a user by id then reads no arena memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ShortStr {
    bytes: [u8; 15],
    /// The length when in place; [`IN_ARENA`] when `bytes` starts with a [`StrRef`].
    len: u8,
}

const IN_ARENA: u8 = u8::MAX;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Arena {
    bytes: String,
}

impl Arena {
    /// Stores `s`. Strings reach the aggregator validated (at most 64 KiB), far below
    /// the 16 MiB a reference can hold; a longer one is cut at a character boundary.
    pub(crate) fn push(&mut self, s: &str) -> StrRef {
        if s.is_empty() {
            return StrRef::EMPTY;
        }
        let mut end = s.len().min(MAX_LEN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let start = self.bytes.len() as u64;
        self.bytes.push_str(&s[..end]);
        StrRef(start << LEN_BITS | end as u64)
    }

    /// Stores `s` in place when it is short enough, else in the arena.
    pub(crate) fn push_short(&mut self, s: &str) -> ShortStr {
        let mut bytes = [0u8; 15];
        if let Some(place) = bytes.get_mut(..s.len()) {
            place.copy_from_slice(s.as_bytes());
            return ShortStr {
                bytes,
                len: s.len() as u8,
            };
        }
        bytes[..8].copy_from_slice(&self.push(s).0.to_le_bytes());
        ShortStr {
            bytes,
            len: IN_ARENA,
        }
    }

    /// The string behind `s` (empty when damaged, never a panic).
    pub(crate) fn get_short<'a>(&'a self, s: &'a ShortStr) -> &'a str {
        if s.len == IN_ARENA {
            let mut r = [0u8; 8];
            r.copy_from_slice(&s.bytes[..8]);
            return self.get(StrRef(u64::from_le_bytes(r)));
        }
        s.bytes
            .get(..usize::from(s.len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// Bytes held, live or not.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The string behind `r`; empty when `r` does not point into this arena (a
    /// damaged snapshot), never a panic.
    pub(crate) fn get(&self, r: StrRef) -> &str {
        self.bytes.get(r.range()).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_come_back_as_stored() {
        let mut a = Arena::default();
        let refs: Vec<(StrRef, &str)> = ["Олена К.", "", "5532", "a"]
            .into_iter()
            .map(|s| (a.push(s), s))
            .collect();
        for (r, s) in refs {
            assert_eq!(a.get(r), s);
        }
        assert_eq!(a.get(StrRef(u64::MAX)), "", "out of range is empty");
        for s in [
            "",
            "5532",
            "exactly-15-byte",
            "sixteen-bytes-id",
            "Олена Коваленко",
        ] {
            let short = a.push_short(s);
            assert_eq!(a.get_short(&short), s);
        }
        let before = a.bytes.len();
        a.push_short("123456789012345");
        assert_eq!(a.bytes.len(), before, "15 bytes stay in place");
    }
}
