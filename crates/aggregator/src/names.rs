//! Search by any part of a user's name, case-insensitive in any script.
//!
//! Every current name is kept lower-cased (Unicode lower case, so Cyrillic and Greek
//! too) in one buffer, each followed by a NUL; a search runs one substring search over
//! the whole buffer (a few milliseconds for a million names) and maps each hit back to
//! its user. A renamed user's old entry is overwritten with NULs, so it never matches.
//! The index is derived from the names and rebuilt when a snapshot is loaded.

use memchr::memmem;

/// The characters of a name as the search compares them: lower case, with the few
/// letters whose lower case is not their case fold folded (final sigma, sharp s), and
/// NUL (the separator) made a space.
fn folded_chars(name: &str) -> impl Iterator<Item = char> + '_ {
    name.chars().flat_map(char::to_lowercase).flat_map(|c| {
        let (first, second) = match c {
            '\0' => (' ', None),
            'ς' => ('σ', None),
            'ß' => ('s', Some('s')),
            c => (c, None),
        };
        std::iter::once(first).chain(second)
    })
}

/// A name as the search compares it (see `folded_chars`).
pub fn fold_name(name: &str) -> String {
    folded_chars(name).collect()
}

#[derive(Debug, Clone, Default)]
pub(crate) struct NameSearch {
    folded: Vec<u8>,
    /// Where each entry starts in `folded`, ascending.
    starts: Vec<u64>,
    /// The user of each entry.
    owners: Vec<u32>,
    /// Each user's current entry (`u32::MAX`: none).
    entry_of: Vec<u32>,
}

impl NameSearch {
    /// Sets (or replaces) the name of user `user`.
    pub(crate) fn set(&mut self, user: u32, name: &str) {
        let u = user as usize;
        if self.entry_of.len() <= u {
            self.entry_of.resize(u + 1, u32::MAX);
        }
        if let Some(old) = self.entry(self.entry_of[u]) {
            old.fill(0);
        }
        self.entry_of[u] = self.starts.len() as u32;
        self.starts.push(self.folded.len() as u64);
        self.owners.push(user);
        let mut buf = [0u8; 4];
        for c in folded_chars(name) {
            self.folded
                .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        self.folded.push(0);
    }

    fn range(&self, entry: u32) -> Option<std::ops::Range<usize>> {
        let e = entry as usize;
        let start = *self.starts.get(e)? as usize;
        let end = self
            .starts
            .get(e + 1)
            .map_or(self.folded.len(), |&s| s as usize);
        Some(start..end.saturating_sub(1).max(start))
    }

    fn entry(&mut self, entry: u32) -> Option<&mut [u8]> {
        let range = self.range(entry)?;
        self.folded.get_mut(range)
    }

    /// The folded name of a user (empty when it has none): the name sort's key.
    pub(crate) fn folded(&self, user: u32) -> &[u8] {
        self.entry_of
            .get(user as usize)
            .and_then(|&e| self.range(e))
            .and_then(|r| self.folded.get(r))
            .unwrap_or(&[])
    }

    /// A bit per user (of `users`): set when the user's name contains `needle`, which
    /// must already be folded with [`fold_name`] and not be empty.
    pub(crate) fn find(&self, needle: &str, users: usize) -> Vec<u64> {
        let mut hits = vec![0u64; users.div_ceil(64)];
        // How many entries start at or before the hit; hits come in order, so it only
        // grows.
        let mut started = 0usize;
        for at in memmem::find_iter(&self.folded, needle.as_bytes()) {
            // Hits are dense or few; stepping costs entries + hits at most.
            while self.starts.get(started).is_some_and(|&s| s as usize <= at) {
                started += 1;
            }
            let Some(&owner) = started.checked_sub(1).and_then(|e| self.owners.get(e)) else {
                continue;
            };
            if let Some(word) = hits.get_mut(owner as usize / 64) {
                *word |= 1 << (owner % 64);
            }
        }
        hits
    }
}

/// Whether bit `i` is set in `bits`.
pub(crate) fn has(bits: &[u64], i: u32) -> bool {
    bits.get(i as usize / 64)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(s: &NameSearch, q: &str) -> Vec<u32> {
        let bits = s.find(&fold_name(q), 8);
        (0..8).filter(|&i| has(&bits, i)).collect()
    }

    #[test]
    fn any_part_of_a_name_in_any_case_and_script() {
        let mut s = NameSearch::default();
        s.set(0, "Олена Коваль");
        s.set(1, "John SMITH");
        s.set(2, "Ölaf");
        s.set(3, "ann");
        assert_eq!(found(&s, "КОВ"), vec![0]);
        assert_eq!(found(&s, "smi"), vec![1]);
        assert_eq!(found(&s, "ölaf"), vec![2]);
        assert_eq!(found(&s, "n"), vec![1, 3], "Latin n only");
        assert_eq!(found(&s, "Н"), vec![0], "Cyrillic н only");
        assert_eq!(found(&s, "a s"), Vec::<u32>::new(), "no hit across names");
        assert_eq!(found(&s, "ann"), vec![3]);
        s.set(4, "ΟΔΥΣΣΕΑΣ Straße");
        assert_eq!(found(&s, "Οδυσσεας"), vec![4], "final sigma");
        assert_eq!(found(&s, "STRASSE"), vec![4], "sharp s");
    }

    #[test]
    fn a_renamed_user_is_found_by_the_new_name_only() {
        let mut s = NameSearch::default();
        s.set(0, "Alice");
        s.set(1, "Bob");
        s.set(0, "Carol");
        assert_eq!(found(&s, "alice"), Vec::<u32>::new());
        assert_eq!(found(&s, "carol"), vec![0]);
        assert_eq!(found(&s, "bob"), vec![1]);
        assert_eq!(s.folded(0), b"carol");
        assert_eq!(s.folded(1), b"bob");
        assert_eq!(s.folded(5), b"");
    }
}
