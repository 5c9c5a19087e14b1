//! Sessions ("talks"): the messages of one dialog grouped so that two consecutive
//! messages (by event time, either direction) less than the timeout apart are in the
//! same group. A group is kept as its first and last message time and how many of its
//! messages are inbound; a group with at least one inbound message is a session.
//!
//! Inserting a message only ever extends one group or merges two, so the groups after
//! any sequence of insertions are the groups of the sorted messages: order does not
//! matter.

/// One group of a dialog's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    /// Event time (ms) of the first message.
    pub start: i64,
    /// Event time (ms) of the last message.
    pub end: i64,
    /// How many of its messages are inbound; a session when at least one.
    pub inbound: u32,
}

impl Group {
    pub fn is_session(&self) -> bool {
        self.inbound > 0
    }
}

/// What an insertion changed: the groups that are gone (at most two) and the one that
/// took their place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub removed: [Option<Group>; 2],
    pub added: Group,
}

/// Inserts a message at `ts` into `groups` (sorted by start, each at least `timeout`
/// away from the next).
pub fn insert(groups: &mut Vec<Group>, ts: i64, inbound: bool, timeout: i64) -> Change {
    let inbound = u32::from(inbound);
    // Groups before `at` start at or before `ts`.
    let at = groups.partition_point(|g| g.start <= ts);
    let joins_prev = at > 0 && ts - groups[at - 1].end < timeout;
    let joins_next = at < groups.len() && groups[at].start - ts < timeout;
    match (joins_prev, joins_next) {
        (true, true) => {
            let (prev, next) = (groups[at - 1], groups[at]);
            let merged = Group {
                start: prev.start,
                end: next.end,
                inbound: prev.inbound + next.inbound + inbound,
            };
            groups.splice(at - 1..=at, [merged]);
            Change {
                removed: [Some(prev), Some(next)],
                added: merged,
            }
        }
        (true, false) => {
            let prev = groups[at - 1];
            let grown = Group {
                start: prev.start,
                end: prev.end.max(ts),
                inbound: prev.inbound + inbound,
            };
            groups[at - 1] = grown;
            Change {
                removed: [Some(prev), None],
                added: grown,
            }
        }
        (false, true) => {
            let next = groups[at];
            let grown = Group {
                start: ts,
                end: next.end,
                inbound: next.inbound + inbound,
            };
            groups[at] = grown;
            Change {
                removed: [Some(next), None],
                added: grown,
            }
        }
        (false, false) => {
            let alone = Group {
                start: ts,
                end: ts,
                inbound,
            };
            groups.insert(at, alone);
            Change {
                removed: [None, None],
                added: alone,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 30 * 60 * 1000;

    fn groups_of(messages: &[(i64, bool)]) -> Vec<Group> {
        let mut groups = Vec::new();
        for &(ts, inbound) in messages {
            insert(&mut groups, ts, inbound, T);
        }
        groups
    }

    #[test]
    fn a_gap_of_exactly_the_timeout_starts_a_new_group() {
        let g = groups_of(&[(0, true), (T - 1, false), (2 * T - 1, true)]);
        assert_eq!(g.len(), 2);
        assert_eq!(
            g[0],
            Group {
                start: 0,
                end: T - 1,
                inbound: 1
            }
        );
    }

    #[test]
    fn a_late_message_bridging_two_groups_merges_them() {
        let g = groups_of(&[(0, true), (2 * T - 2, false)]);
        assert_eq!(g.len(), 2, "{g:?}");
        let g = groups_of(&[(0, true), (2 * T - 2, false), (T - 1, false)]);
        assert_eq!(
            g,
            vec![Group {
                start: 0,
                end: 2 * T - 2,
                inbound: 1
            }]
        );
    }

    #[test]
    fn outbound_only_groups_are_not_sessions() {
        let g = groups_of(&[(0, false), (10, false), (5 * T, true)]);
        assert_eq!(g.iter().filter(|g| g.is_session()).count(), 1);
    }

    #[test]
    fn order_does_not_matter() {
        let msgs = [
            (0, true),
            (T / 2, false),
            (3 * T, true),
            (T, true),
            (2 * T + 1, false),
        ];
        let expected = groups_of(&msgs);
        let mut reversed = msgs;
        reversed.reverse();
        assert_eq!(groups_of(&reversed), expected);
    }
}
