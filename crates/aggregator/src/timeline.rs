//! A user's timeline, packed: the session groups and the local hours with inbound
//! messages, as variable-length integers (each value a delta from the one before).
//! Ten groups take about 60 bytes instead of 240; the figures decode a user's
//! timeline into scratch vectors, change them, and pack them again.
//!
//! Layout: group count; per group the start (zig-zag, absolute for the first, after
//! the previous group's end for the others) and `(end - start) << 1 | has inbound`;
//! then the hour count and the hours (zig-zag absolute, then deltas).

use crate::sessions::Group;

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    /// The next value; `None` at the end or on bytes that are not a value.
    fn next(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.bytes.split_first()?;
            self.bytes = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }
}

/// Packs sorted groups and sorted hours into `packed`, reusing its allocation when the
/// length stays the same.
pub(crate) fn encode_into(packed: &mut Box<[u8]>, groups: &[Group], hours: &[i32]) {
    SCRATCH.with_borrow_mut(|out| {
        out.clear();
        write(out, groups, hours);
        if packed.len() == out.len() {
            packed.copy_from_slice(out);
        } else {
            *packed = out.as_slice().into();
        }
    });
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Packs sorted groups and sorted hours.
#[cfg(test)]
pub(crate) fn encode(groups: &[Group], hours: &[i32]) -> Box<[u8]> {
    let mut out = Vec::new();
    write(&mut out, groups, hours);
    out.into_boxed_slice()
}

fn write(out: &mut Vec<u8>, groups: &[Group], hours: &[i32]) {
    put(out, groups.len() as u64);
    let mut prev_end = None;
    for g in groups {
        match prev_end {
            None => put(out, zigzag(g.start)),
            Some(end) => put(out, g.start.wrapping_sub(end) as u64),
        }
        let len = g.end.wrapping_sub(g.start) as u64;
        put(out, len << 1 | u64::from(g.is_session()));
        prev_end = Some(g.end);
    }
    put(out, hours.len() as u64);
    let mut prev = None;
    for &h in hours {
        match prev {
            None => put(out, zigzag(i64::from(h))),
            Some(p) => put(out, i64::from(h).wrapping_sub(p) as u64),
        }
        prev = Some(i64::from(h));
    }
}

/// Unpacks into `groups` and `hours` (cleared first). Bytes that are not a timeline
/// (a damaged snapshot) give what could be read, never a panic.
pub(crate) fn decode(bytes: &[u8], groups: &mut Vec<Group>, hours: &mut Vec<i32>) {
    groups.clear();
    hours.clear();
    let mut r = Reader { bytes };
    let n = r.next().unwrap_or(0);
    let mut prev_end: Option<i64> = None;
    for _ in 0..n {
        let (Some(start), Some(len)) = (r.next(), r.next()) else {
            return;
        };
        let start = match prev_end {
            None => unzigzag(start),
            Some(end) => end.wrapping_add(start as i64),
        };
        let end = start.wrapping_add((len >> 1) as i64);
        groups.push(Group {
            start,
            end,
            inbound: (len & 1) as u32,
        });
        prev_end = Some(end);
    }
    let n = r.next().unwrap_or(0);
    let mut prev: Option<i64> = None;
    for _ in 0..n {
        let Some(v) = r.next() else { return };
        let h = match prev {
            None => unzigzag(v),
            Some(p) => p.wrapping_add(v as i64),
        };
        hours.push(h as i32);
        prev = Some(h);
    }
}

/// The first group's start: the user's first message time.
pub(crate) fn first_start(bytes: &[u8]) -> Option<i64> {
    let mut r = Reader { bytes };
    if r.next()? == 0 {
        return None;
    }
    r.next().map(unzigzag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timelines_round_trip() {
        let groups = vec![
            Group {
                start: -5_000,
                end: -4_000,
                inbound: 1,
            },
            Group {
                start: 1_780_000_000_000,
                end: 1_780_000_000_000,
                inbound: 0,
            },
            Group {
                start: 1_790_000_000_123,
                end: 1_790_003_000_000,
                inbound: 1,
            },
        ];
        let hours = vec![-3, 494_444, 494_445, 500_000];
        let packed = encode(&groups, &hours);
        let (mut g, mut h) = (Vec::new(), Vec::new());
        decode(&packed, &mut g, &mut h);
        assert_eq!(g, groups);
        assert_eq!(h, hours);
        assert_eq!(first_start(&packed), Some(-5_000));
        assert!(packed.len() < 30, "{} bytes", packed.len());
        decode(&encode(&[], &[]), &mut g, &mut h);
        assert!(g.is_empty() && h.is_empty());
        assert_eq!(first_start(&encode(&[], &[])), None);
    }

    #[test]
    fn damaged_bytes_never_panic() {
        let (mut g, mut h) = (Vec::new(), Vec::new());
        for bytes in [&[0xff; 20][..], &[5, 1], &[1, 0x80], &[]] {
            decode(bytes, &mut g, &mut h);
        }
    }
}
