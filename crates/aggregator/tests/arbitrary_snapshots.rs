//! A snapshot's state, whatever its bytes, is read back or refused, never a panic:
//! arbitrary bytes, and a real state (users, an audience, a broadcast, modes) with
//! bytes changed after the checksum would have caught them. Property tests.

use botwatch_aggregator::Aggregator;
use botwatch_event::{
    AudienceChange, BroadcastInfo, BroadcastState, Direction, Event, EventKind, Label, LabelOf,
    Mode, UserEdit, UserInfo,
};
use proptest::prelude::*;

fn state() -> Vec<u8> {
    let mut a = Aggregator::default();
    let at = |n: i64| {
        chrono::DateTime::from_timestamp_millis(1_780_000_000_000 + n * 60_000).unwrap_or_default()
    };
    let mut events = Vec::new();
    for n in 0..20i64 {
        let mut e = Event::about_dialog(
            format!("m{n}"),
            EventKind::Message,
            "b",
            "telegram",
            &format!("u{}", n % 5),
        );
        e.direction = Some(if n % 2 == 0 {
            Direction::In
        } else {
            Direction::Out
        });
        e.user = UserInfo {
            id: format!("u{}", n % 5),
            name: Some(format!("Ім'я {n}")),
            ..UserInfo::default()
        };
        e.text = Some("hi".to_owned());
        e.ts = at(n);
        events.push(e);
    }
    let mut label = Event::about_dialog("l1".to_owned(), EventKind::Audience, "b", "botwatch", "");
    label.audience = Some(AudienceChange::Label(Label {
        of: LabelOf::Tag,
        key: "t1".to_owned(),
        name: Some("VIP".to_owned()),
    }));
    events.push(label);
    let mut edit = Event::about_dialog("a1".to_owned(), EventKind::Audience, "b", "telegram", "u1");
    edit.audience = Some(AudienceChange::Edit(UserEdit {
        add_tags: vec!["t1".to_owned()],
        subscriber: Some(false),
        ..UserEdit::default()
    }));
    events.push(edit);
    let mut mode = Event::about_dialog(
        "s1".to_owned(),
        EventKind::ModeChanged,
        "b",
        "telegram",
        "u2",
    );
    mode.mode = Some(Mode::Manual);
    events.push(mode);
    let mut broadcast =
        Event::about_dialog("b1".to_owned(), EventKind::Broadcast, "b", "botwatch", "");
    broadcast.broadcast = Some(BroadcastInfo {
        id: "x".to_owned(),
        state: BroadcastState::Queued,
        total: 3,
        to: None,
        filter: None,
        by: None,
    });
    events.push(broadcast);
    a.apply_all(&events);
    a.to_bytes().unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn arbitrary_state_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4_096)) {
        let _ = Aggregator::from_bytes(&bytes);
    }

    #[test]
    fn a_real_state_with_bytes_changed_never_panics(
        changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)
    ) {
        let mut bytes = state();
        prop_assert!(Aggregator::from_bytes(&bytes).is_ok(), "the real state reads back");
        for (at, byte) in changes {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(a) = Aggregator::from_bytes(&bytes) {
            // What was read back answers its queries.
            for bot in a.bots() {
                if let Some(f) = a.bot(bot) {
                    let _ = f.users(&botwatch_aggregator::UsersQuery {
                        filter: botwatch_aggregator::UserFilter::default(),
                        sort: botwatch_aggregator::UserSort::Name,
                        descending: false,
                        limit: 10,
                        after: None,
                    });
                    let _ = f.broadcasts();
                    let _ = f.handoffs();
                }
            }
        }
    }
}
