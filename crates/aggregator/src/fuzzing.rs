//! Entry points for the fuzz targets (`fuzz/`) and the property tests over arbitrary
//! bytes: a snapshot's state as read back from the storage. A state that decodes must
//! then answer every query and take new events without a panic (`BotFigures::check`
//! says it holds together); one that does not is an error. Not an API: hidden from
//! the docs, kept narrow.

use std::sync::OnceLock;

use botwatch_event::fuzzing::{SEED_EVENTS, mutate, now};
use botwatch_event::{Event, LabelOf, Limits, parse_batch};
use chrono::NaiveDate;

use crate::{Aggregator, BucketSize, UserFilter, UserSort, UsersQuery};

/// `data` as a snapshot's state bytes.
pub fn state(data: &[u8]) {
    if let Ok(mut state) = Aggregator::from_bytes(data) {
        exercise(&mut state);
    }
}

/// A valid state's bytes with edits from `data` (four bytes each: where, two bytes;
/// the byte; replace, insert or remove): the decoder's deeper paths, which random
/// bytes seldom reach.
pub fn state_edits(data: &[u8]) {
    let edits: Vec<(u16, u8, u8)> = data
        .chunks_exact(4)
        .map(|c| (u16::from_le_bytes([c[0], c[1]]), c[2], c[3]))
        .collect();
    state(&mutate(valid_state(), &edits));
}

/// The events the valid state is counted from: the seed events, for two bots, users
/// and days apart.
pub fn seed_events() -> Vec<Event> {
    let own = Limits {
        own_kinds: true,
        ..Limits::default()
    };
    let mut events = Vec::new();
    for (n, raw) in SEED_EVENTS.iter().enumerate() {
        for e in parse_batch(raw.as_bytes(), now(), &own).expect("a valid seed") {
            for (bot, user, days) in [
                ("helpdesk", "5532", 0),
                ("shop", "u-with-a-long-id-of-40-characters", 3),
            ] {
                let mut e = e.clone();
                e.bot = bot.to_owned();
                e.user.id = user.to_owned();
                e.id = format!("{}-{n}-{bot}", e.id);
                e.ts -= chrono::Duration::days(days) + chrono::Duration::minutes(n as i64 * 7);
                events.push(e);
            }
        }
    }
    events
}

/// The snapshot state of [`seed_events`], made once.
pub fn valid_state() -> &'static [u8] {
    static STATE: OnceLock<Vec<u8>> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut state = Aggregator::default();
        state.apply_all(&seed_events());
        state.to_bytes().expect("a state encodes")
    })
}

/// Every query a dashboard or the API makes, then new events; the state after them
/// must encode and decode again.
fn exercise(state: &mut Aggregator) {
    let (from, to) = (
        NaiveDate::from_ymd_opt(2026, 11, 1).expect("a date"),
        NaiveDate::from_ymd_opt(2026, 11, 30).expect("a date"),
    );
    let bots: Vec<String> = state.bots().into_iter().map(str::to_owned).collect();
    for bot in &bots {
        let Some(f) = state.bot(bot) else {
            panic!("a listed bot {bot:?} has no figures");
        };
        for size in [BucketSize::Hour, BucketSize::Day, BucketSize::Week] {
            let _ = f.stats(from, to, size);
        }
        let _ = f.top_messages(from, to, 10);
        for sort in [UserSort::Last, UserSort::Name, UserSort::Messages] {
            let _ = f.users(&UsersQuery {
                filter: UserFilter {
                    search: Some("о".to_owned()),
                    ..UserFilter::default()
                },
                sort,
                descending: false,
                limit: 20,
                after: None,
            });
        }
        let (_, next) = f.dialogs(None, 2, None);
        let _ = f.dialogs(next.as_ref(), 2, None);
        let _ = (
            f.handoffs(),
            f.labels(LabelOf::Role),
            f.labels(LabelOf::Tag),
        );
        let _ = (f.broadcasts(), f.open_broadcasts(), f.pending_messages());
        let _ = (f.message_count(), f.user_count());
        for id in f.user_ids().take(20) {
            let _ = (
                f.user(id),
                f.mode(id),
                f.tag_keys(id),
                f.provider_and_mode(id),
            );
            let _ = f.message_place(id, now().timestamp_millis());
        }
    }
    let users: Vec<(String, String)> = bots
        .iter()
        .filter_map(|b| Some((b.clone(), state.bot(b)?.user_ids().next()?.to_owned())))
        .collect();
    let mut events = seed_events();
    for (i, e) in events.iter_mut().enumerate() {
        if let Some((bot, user)) = users.get(i % users.len().max(1)) {
            e.bot.clone_from(bot);
            e.user.id.clone_from(user);
        }
    }
    state.apply_all(&events);
    let bytes = state.to_bytes().expect("a state encodes");
    if let Err(e) = Aggregator::from_bytes(&bytes) {
        panic!("a state that decoded, then took events, is refused: {e}");
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_valid_state_decodes_to_what_was_encoded() {
        let mut state = Aggregator::default();
        state.apply_all(&seed_events());
        let back = Aggregator::from_bytes(valid_state()).expect("decodes");
        assert_eq!(back.bots(), state.bots());
        for bot in state.bots() {
            let (a, b) = (
                state.bot(bot).expect("a bot"),
                back.bot(bot).expect("a bot"),
            );
            let mut ids: Vec<&str> = a.user_ids().collect();
            ids.sort_unstable();
            for id in ids {
                assert_eq!(a.user(id), b.user(id), "{bot}/{id}");
            }
            let (from, to) = (
                NaiveDate::from_ymd_opt(2026, 11, 1).expect("a date"),
                NaiveDate::from_ymd_opt(2026, 11, 30).expect("a date"),
            );
            assert_eq!(
                a.stats(from, to, BucketSize::Day),
                b.stats(from, to, BucketSize::Day)
            );
            assert_eq!(a.top_messages(from, to, 10), b.top_messages(from, to, 10));
        }
        state_edits(&[]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        #[test]
        fn any_state_is_decoded_or_refused(data in vec(any::<u8>(), 0..512)) {
            state(&data);
        }

        #[test]
        fn an_edited_state_is_decoded_or_refused(data in vec(any::<u8>(), 0..32)) {
            state_edits(&data);
        }
    }
}
