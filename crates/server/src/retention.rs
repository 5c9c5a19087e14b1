//! Retention on Redis (`--retain-events N`): after each snapshot a node trims the
//! stream before the lowest of the position N entries back, its own snapshot's, the
//! stored snapshot's and what every live node still needs (`IntegrityStore::trim`).
//!
//! Redis cannot say cheaply which entry is N back, so the follower remembers it:
//! every entry it scans is counted, and a few hundred positions along the way are
//! kept, enough to know a position with at least N (and at most about N + N/256)
//! entries after it (duplicates and dead letters, which carry no position in a read,
//! count at the end of their batch). A node knows it only after reading N entries
//! itself; until then it does not trim.

use std::collections::VecDeque;

use botwatch_log::Position;

/// Positions kept per N entries retained.
const SAMPLES: u64 = 256;

#[derive(Debug)]
pub struct Window {
    keep: u64,
    step: u64,
    /// Entries scanned so far.
    scanned: u64,
    /// (entries scanned up to and including it, position), oldest first.
    samples: VecDeque<(u64, Position)>,
}

impl Window {
    pub fn new(keep: u64) -> Window {
        let keep = keep.max(1);
        Window {
            keep,
            step: (keep / SAMPLES).max(1),
            scanned: 0,
            samples: VecDeque::new(),
        }
    }

    /// `count` more entries scanned, the last of them at `position`.
    pub fn scanned(&mut self, count: u64, position: Position) {
        if count == 0 {
            return;
        }
        self.scanned += count;
        if self
            .samples
            .back()
            .is_none_or(|(at, _)| self.scanned - at >= self.step)
        {
            self.samples.push_back((self.scanned, position));
        }
        // The oldest position goes once the next one also has N entries after it.
        while self
            .samples
            .get(1)
            .is_some_and(|(at, _)| self.scanned - at >= self.keep)
        {
            self.samples.pop_front();
        }
    }

    /// A position with at least N entries after it: trimming before it keeps them.
    pub fn floor(&self) -> Option<Position> {
        self.samples
            .front()
            .filter(|(at, _)| self.scanned - at >= self.keep)
            .map(|(_, p)| *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_keeps_at_least_n_entries_and_not_many_more() {
        for keep in [1u64, 10, 1000, 100_000] {
            let mut w = Window::new(keep);
            let mut n = 0u64;
            // Batches of varying size, as reads return them.
            for batch in (1..5_000u64).map(|i| (i * 7919) % 300) {
                n += batch;
                w.scanned(batch, Position::new(n, 0));
                match w.floor() {
                    None => assert!(n < keep + 300, "keep {keep}: no floor after {n}"),
                    Some(floor) => {
                        let after = n - floor.ms;
                        assert!(after >= keep, "keep {keep}: only {after} kept");
                        assert!(
                            after <= keep + keep / SAMPLES + 300,
                            "keep {keep}: {after} kept"
                        );
                    }
                }
                assert!(w.samples.len() as u64 <= SAMPLES + 2 + keep.min(300));
            }
        }
    }
}
