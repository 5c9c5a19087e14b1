//! Random event sets, in random orders and with retried copies, applied to the
//! aggregator; every figure is compared with a plain recount written here, from the
//! definitions in PRODUCT.md, without the aggregator's structures.
//!
//! Copies are dropped before the aggregator (first copy wins), as the event log does
//! for it: the aggregator is fed from the log, where an id is stored once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use botwatch_aggregator::{
    Aggregator, BotFigures, BotSettings, BucketSize, CursorKey, UserFilter, UserSort, UsersQuery,
};
use botwatch_event::{Direction, Event, EventKind, UserInfo};
use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use chrono_tz::Tz;
use proptest::prelude::*;
use unicode_normalization::UnicodeNormalization;

const ZONES: [&str; 5] = [
    "UTC",
    "Europe/Kyiv",
    "Asia/Kolkata",
    "America/New_York",
    "Asia/Kathmandu",
];
const TEXTS: [&str; 6] = [
    "Where is my order?",
    "  where IS my   order? ",
    "Привіт",
    "ПРИВІТ ",
    "   ",
    "ﬁnd",
];
/// Starts of the three-day windows events fall in: Kyiv's spring clock change
/// (2026-03-28), Kyiv's autumn one (2026-10-24), New York's (2026-10-30) and a year end
/// (2026-12-30).
const BASES_MS: [i64; 4] = [
    1_774_656_000_000,
    1_792_800_000_000,
    1_793_318_400_000,
    1_798_588_800_000,
];

#[derive(Debug, Clone)]
struct Spec {
    user: u8,
    offset_min: i64,
    offset_ms: i64,
    kind_user: bool,
    inbound: bool,
    text: usize,
    name: u8,
}

fn spec() -> impl Strategy<Value = Spec> {
    // Half the times fall on whole half hours, so gaps of exactly the session timeout
    // (1, 30 or 240 minutes) and bucket edges are common, not rare.
    let minute = prop_oneof![0i64..(3 * 24 * 60), (0i64..144).prop_map(|h| h * 30)];
    let ms = prop_oneof![Just(0i64), 0i64..60_000];
    (
        0u8..6,
        minute,
        ms,
        prop::bool::weighted(0.1),
        any::<bool>(),
        0usize..TEXTS.len(),
        0u8..3,
    )
        .prop_map(
            |(user, offset_min, offset_ms, kind_user, inbound, text, name)| Spec {
                user,
                offset_min,
                offset_ms,
                kind_user,
                inbound,
                text,
                name,
            },
        )
}

fn event(i: usize, s: &Spec, base_ms: i64) -> Event {
    let ts = base_ms + s.offset_min * 60_000 + s.offset_ms;
    Event {
        id: format!("e{i}"),
        bot: "bot".to_owned(),
        kind: if s.kind_user {
            EventKind::User
        } else {
            EventKind::Message
        },
        direction: (!s.kind_user).then_some(if s.inbound {
            Direction::In
        } else {
            Direction::Out
        }),
        provider: if s.offset_ms % 2 == 0 {
            "telegram"
        } else {
            "viber"
        }
        .to_owned(),
        user: UserInfo {
            id: format!("u{}", s.user),
            name: ["Олена", "John", "Марія", ""]
                .get(s.name as usize)
                .filter(|n| !n.is_empty())
                .map(|n| (*n).to_owned()),
            ..UserInfo::default()
        },
        text: (!s.kind_user).then(|| TEXTS[s.text].to_owned()),
        attachments: Vec::new(),
        sender: None,
        mode: None,
        delivery: None,
        audience: None,
        broadcast: None,
        ts: DateTime::from_timestamp_millis(ts).expect("time"),
    }
}

/// The local bucket an instant is in, named by local calendar terms.
fn key(tz: Tz, ts_ms: i64, size: BucketSize) -> (i32, u32, u32) {
    let local = DateTime::from_timestamp_millis(ts_ms)
        .expect("time")
        .with_timezone(&tz);
    match size {
        BucketSize::Hour => (local.year(), local.ordinal(), local.hour()),
        BucketSize::Day => (local.year(), local.ordinal(), 0),
        BucketSize::Week => {
            let w = local.iso_week();
            (w.year(), w.week(), 0)
        }
    }
}

fn local_date(tz: Tz, ts_ms: i64) -> NaiveDate {
    DateTime::from_timestamp_millis(ts_ms)
        .expect("time")
        .with_timezone(&tz)
        .date_naive()
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Figures {
    messages_in: u64,
    messages_out: u64,
    users_new: u64,
    users_existing: u64,
    users_active: u64,
    sessions: u64,
}

/// Sessions of one dialog, from its sorted messages: (start ms, has an inbound message).
fn recount_sessions(mut msgs: Vec<(i64, bool)>, timeout: i64) -> Vec<(i64, bool)> {
    msgs.sort();
    let mut groups: Vec<(i64, i64, bool)> = Vec::new();
    for (ts, inbound) in msgs {
        match groups.last_mut() {
            Some(g) if ts - g.1 < timeout => {
                g.1 = ts;
                g.2 |= inbound;
            }
            _ => groups.push((ts, ts, inbound)),
        }
    }
    groups.into_iter().map(|(s, _, i)| (s, i)).collect()
}

fn normalise(text: &str) -> Option<String> {
    let t = text.nfkc().collect::<String>().to_lowercase();
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    (!t.is_empty()).then_some(t)
}

/// The range of a query: `from` and `to` days after the window's first local day.
#[derive(Debug, Clone, Copy)]
struct Range {
    from: i64,
    to: i64,
}

fn check(
    events: &[Event],
    settings: BotSettings,
    figures: &BotFigures,
    base_ms: i64,
    range: Range,
) {
    let tz = settings.tz;
    let messages: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == EventKind::Message)
        .collect();
    let inbound = |e: &Event| e.direction == Some(Direction::In);

    // Users.
    let mut by_user: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in &messages {
        by_user.entry(e.user.id.as_str()).or_default().push(e);
    }
    let mut first: HashMap<&str, i64> = HashMap::new();
    let mut all_sessions: Vec<i64> = Vec::new();
    for (user, msgs) in &by_user {
        let times: Vec<(i64, bool)> = msgs.iter().map(|e| (e.ts_millis(), inbound(e))).collect();
        let sessions: Vec<i64> = recount_sessions(times.clone(), settings.session_timeout_ms)
            .into_iter()
            .filter(|(_, i)| *i)
            .map(|(s, _)| s)
            .collect();
        let f = figures.user(user).expect("the user is known");
        assert_eq!(f.messages, msgs.len() as u64, "messages of {user}");
        assert_eq!(f.sessions, sessions.len() as u64, "sessions of {user}");
        assert_eq!(
            f.first_seen_ms,
            times.iter().map(|t| t.0).min(),
            "first seen of {user}"
        );
        assert_eq!(f.last_ms, times.iter().map(|t| t.0).max(), "last of {user}");
        first.insert(user, f.first_seen_ms.expect("first"));
        all_sessions.extend(sessions);
    }
    // The latest profile wins, whatever the arrival order (at the same time, the
    // greater value).
    for user in figures.user_ids() {
        let latest = events
            .iter()
            .filter(|e| e.user.id == user)
            .max_by(|a, b| (a.ts_millis(), &a.user.name).cmp(&(b.ts_millis(), &b.user.name)))
            .expect("an event of the user");
        assert_eq!(
            figures.user(user).expect("known").name,
            latest.user.name,
            "name of {user}"
        );
    }

    // Statistics, for every bucket size, over a range that may cut through the data.
    let first_day = local_date(tz, base_ms);
    let from = first_day + chrono::Duration::days(range.from);
    let to = from + chrono::Duration::days(range.to);
    for size in [BucketSize::Hour, BucketSize::Day, BucketSize::Week] {
        // Week buckets are whole weeks overlapping the range.
        let (lo, hi) = match size {
            BucketSize::Week => (
                from - chrono::Duration::days(i64::from(from.weekday().num_days_from_monday())),
                to + chrono::Duration::days(i64::from(6 - to.weekday().num_days_from_monday())),
            ),
            _ => (from, to),
        };
        let in_range = |ts: i64| (lo..=hi).contains(&local_date(tz, ts));
        let mut expected: BTreeMap<(i32, u32, u32), Figures> = BTreeMap::new();
        let mut active: BTreeMap<(i32, u32, u32), BTreeSet<&str>> = BTreeMap::new();
        for e in messages.iter().filter(|e| in_range(e.ts_millis())) {
            let k = key(tz, e.ts_millis(), size);
            let f = expected.entry(k).or_default();
            if inbound(e) {
                f.messages_in += 1;
                active.entry(k).or_default().insert(&e.user.id);
            } else {
                f.messages_out += 1;
            }
        }
        for (k, users) in active {
            expected.entry(k).or_default().users_active = users.len() as u64;
        }
        for &t in first.values().filter(|&&t| in_range(t)) {
            expected.entry(key(tz, t, size)).or_default().users_new += 1;
        }
        for &s in all_sessions.iter().filter(|&&s| in_range(s)) {
            expected.entry(key(tz, s, size)).or_default().sessions += 1;
        }
        let got: Vec<_> = figures.stats(from, to, size);
        let mut seen = BTreeSet::new();
        for b in &got {
            let k = key(tz, b.start_ms, size);
            assert!(seen.insert(k), "one bucket per key: {k:?}");
            assert!(
                in_range(b.start_ms),
                "{size:?} bucket {k:?} outside {lo}..{hi}"
            );
            let mut want = expected.get(&k).copied().unwrap_or_default();
            want.users_existing = first.values().filter(|&&t| key(tz, t, size) < k).count() as u64;
            let have = Figures {
                messages_in: b.messages_in,
                messages_out: b.messages_out,
                users_new: b.users_new,
                users_existing: b.users_existing,
                users_active: b.users_active,
                sessions: b.sessions,
            };
            assert_eq!(
                have, want,
                "{size:?} bucket {k:?} in {tz}, range {from}..{to}"
            );
        }
        for k in expected.keys() {
            assert!(
                seen.contains(k),
                "{size:?} bucket {k:?} with figures is missing"
            );
        }
    }

    // The dialogs list: every user with messages once, the latest first, across pages.
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = figures.dialogs(cursor.as_ref(), 2, None);
        listed.extend(page.into_iter().map(|f| (f.last_ms.expect("last"), f.id)));
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let mut want_list: Vec<(i64, String)> = by_user
        .iter()
        .map(|(u, msgs)| {
            (
                msgs.iter().map(|e| e.ts_millis()).max().expect("a message"),
                u.to_string(),
            )
        })
        .collect();
    want_list.sort_by_key(|l| std::cmp::Reverse(l.0));
    assert_eq!(listed.len(), want_list.len(), "{listed:?}");
    assert_eq!(
        listed.iter().map(|l| l.0).collect::<Vec<_>>(),
        want_list.iter().map(|l| l.0).collect::<Vec<_>>(),
        "latest first"
    );
    let mut ids: Vec<&String> = listed.iter().map(|l| &l.1).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), want_list.len(), "each user once");

    check_users_table(events, figures);

    // Top messages over the range.
    let mut counts: HashMap<String, u64> = HashMap::new();
    let in_days = |ts: i64| (from..=to).contains(&local_date(tz, ts));
    for e in messages
        .iter()
        .filter(|e| inbound(e) && in_days(e.ts_millis()))
    {
        if let Some(t) = e.text.as_deref().and_then(normalise) {
            *counts.entry(t).or_default() += 1;
        }
    }
    let mut want: Vec<(String, u64)> = counts.into_iter().collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    assert_eq!(figures.top_messages(from, to, 100), want);
}

/// The users table against a plain sort of the recounted users: every column, both
/// orders, pages of three; then a search and a provider filter with their facets.
fn check_users_table(events: &[Event], figures: &BotFigures) {
    // The latest profile and provider of each user (ties: the greater value).
    let mut users: BTreeMap<&str, (Option<&str>, &str)> = BTreeMap::new();
    for user in events.iter().map(|e| e.user.id.as_str()) {
        let mine = || events.iter().filter(move |e| e.user.id == user);
        let name = mine()
            .filter_map(|e| Some((e.ts_millis(), e.user.name.as_deref()?)))
            .max()
            .map(|(_, n)| n);
        let provider = mine()
            .map(|e| (e.ts_millis(), e.provider.as_str()))
            .max()
            .map(|(_, p)| p)
            .expect("an event");
        users.insert(user, (name, provider));
    }
    let fold = |s: &str| -> String { s.chars().flat_map(char::to_lowercase).collect() };
    for sort in [
        UserSort::Last,
        UserSort::Messages,
        UserSort::Sessions,
        UserSort::Name,
    ] {
        for descending in [false, true] {
            let mut want: Vec<(CursorKey, String)> = users
                .iter()
                .map(|(&u, &(name, _))| {
                    let f = figures.user(u).expect("known");
                    let key = match sort {
                        UserSort::Last => CursorKey::Number(f.last_ms.unwrap_or(i64::MIN)),
                        UserSort::Messages => CursorKey::Number(f.messages as i64),
                        UserSort::Sessions => CursorKey::Number(f.sessions as i64),
                        UserSort::Name => CursorKey::Text(fold(name.unwrap_or(u)).into_bytes()),
                    };
                    (key, u.to_owned())
                })
                .collect();
            want.sort();
            if descending {
                want.reverse();
            }
            let mut listed = Vec::new();
            let mut after = None;
            loop {
                let page = figures.users(&UsersQuery {
                    filter: UserFilter::default(),
                    sort,
                    descending,
                    limit: 3,
                    after: after.take(),
                });
                assert_eq!(page.total, users.len() as u64);
                listed.extend(page.items.into_iter().map(|f| f.id));
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            let want: Vec<String> = want.into_iter().map(|w| w.1).collect();
            assert_eq!(listed, want, "{sort:?}, descending {descending}");
        }
    }
    for (search, providers) in [
        ("ОЛЕ", vec![]),
        ("o", vec!["viber"]),
        ("", vec!["telegram"]),
    ] {
        let matches_search = |name: Option<&str>| {
            search.is_empty() || name.is_some_and(|n| fold(n).contains(&fold(search)))
        };
        let page = figures.users(&UsersQuery {
            filter: UserFilter {
                search: Some(search.to_owned()),
                providers: providers.iter().map(|p| p.to_string()).collect(),
                ..UserFilter::default()
            },
            sort: UserSort::Name,
            descending: false,
            limit: 1000,
            after: None,
        });
        let mut want: Vec<&str> = users
            .iter()
            .filter(|(_, (name, p))| {
                matches_search(*name) && (providers.is_empty() || providers.contains(p))
            })
            .map(|(u, _)| *u)
            .collect();
        want.sort();
        let mut got: Vec<String> = page.items.into_iter().map(|f| f.id).collect();
        got.sort();
        assert_eq!(got, want, "search {search:?} in {providers:?}");
        assert_eq!(page.total, want.len() as u64);
        // The provider facet leaves the provider filter out.
        let mut facet: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, (name, p)) in users.iter().filter(|(_, (name, _))| matches_search(*name)) {
            let _ = name;
            *facet.entry(p).or_default() += 1;
        }
        let got: BTreeMap<&str, u64> = page
            .facets
            .provider
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(p, n)| (p.as_str(), *n))
            .collect();
        assert_eq!(got, facet, "provider facet for {search:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_figure_equals_a_recount(
        specs in prop::collection::vec(spec(), 1..80),
        retries in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        order in any::<u64>(),
        zone in 0usize..ZONES.len(),
        timeout_min in prop::sample::select(vec![1i64, 30, 240]),
        base in 0usize..BASES_MS.len(),
        range_from in -1i64..4,
        range_len in 0i64..4,
    ) {
        let base_ms = BASES_MS[base];
        let settings = BotSettings {
            tz: ZONES[zone].parse().expect("zone"),
            session_timeout_ms: timeout_min * 60_000,
        };
        let events: Vec<Event> = specs.iter().enumerate().map(|(i, s)| event(i, s, base_ms)).collect();
        // Arrival: every event, plus retried copies, shuffled.
        let mut arrival: Vec<Event> = events.clone();
        for r in &retries {
            arrival.push(events[r.index(events.len())].clone());
        }
        let mut rng = order;
        for i in (1..arrival.len()).rev() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            arrival.swap(i, (rng >> 33) as usize % (i + 1));
        }
        // What the log hands on: the first copy of each id.
        let mut stored = HashSet::new();
        let logged: Vec<Event> =
            arrival.into_iter().filter(|e| stored.insert(e.id.clone())).collect();
        let mut figures = BotFigures::new(settings);
        for e in &logged {
            figures.apply(e);
        }
        // The aggregator's batch path (users looked up ahead) counts the same.
        let mut aggregator = Aggregator::default();
        aggregator.replace("bot".to_owned(), BotFigures::new(settings));
        aggregator.apply_all(&logged);
        check(
            &events,
            settings,
            aggregator.bot("bot").expect("the bot"),
            base_ms,
            Range { from: range_from, to: range_len },
        );
        check(&events, settings, &figures, base_ms, Range { from: range_from, to: range_len });
        // A snapshot's figures, indexes rebuilt, answer the same.
        let restored: BotFigures =
            postcard::from_bytes(&postcard::to_stdvec(&figures).expect("bytes")).expect("restored");
        check(&events, settings, &restored, base_ms, Range { from: range_from, to: range_len });
    }
}
