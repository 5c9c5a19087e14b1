//! One bot's figures.

use std::collections::{BTreeMap, HashMap};

use botwatch_event::{Direction, Event, EventKind};
use chrono::NaiveDate;
use chrono_tz::Tz;

use crate::sessions::{self, Group};
use crate::text::normalize_top_text;
use crate::time::{
    BucketSize, SLOT_MS, bucket_key, day_number, day_of_hour, local_hour, slot_of,
    start_of_local_date, week_of_day,
};

/// The settings that shape a bot's figures. Changing either means recounting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BotSettings {
    /// Days, hours and weeks are those of this zone.
    pub tz: Tz,
    /// Two messages less than this apart (ms) belong to one session.
    pub session_timeout_ms: i64,
}

impl Default for BotSettings {
    fn default() -> Self {
        BotSettings {
            tz: Tz::UTC,
            session_timeout_ms: 30 * 60 * 1000,
        }
    }
}

/// Counters of one 15-minute UTC slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct SlotCounts {
    messages_in: u64,
    messages_out: u64,
    /// Sessions whose first message is in this slot.
    sessions: u64,
    /// Users whose first message ever is in this slot.
    users_new: u64,
}

/// A profile field with the event time (and id, to break ties) it was set by: the
/// latest event wins, whatever the order of arrival.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Latest<T> {
    value: T,
    at: (i64, Box<str>),
}

impl<T> Latest<T> {
    fn offer(slot: &mut Option<Latest<T>>, value: T, at: (i64, &str)) {
        let newer = match slot {
            None => true,
            Some(current) => (at.0, at.1) > (current.at.0, &*current.at.1),
        };
        if newer {
            *slot = Some(Latest {
                value,
                at: (at.0, at.1.into()),
            });
        }
    }
}

#[derive(Debug, Clone)]
struct User {
    id: Box<str>,
    name: Option<Latest<Option<Box<str>>>>,
    provider: Option<Latest<Box<str>>>,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
    messages: u64,
    sessions: u64,
    groups: Vec<Group>,
    /// Local hours (in the bot's zone) with at least one inbound message, sorted.
    active_hours: Vec<i32>,
}

/// What the users table and the bots ask about one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFigures {
    pub id: String,
    pub name: Option<String>,
    pub provider: Option<String>,
    /// Event time (ms) of the first message, either direction.
    pub first_seen_ms: Option<i64>,
    /// Event time (ms) of the last message, either direction.
    pub last_ms: Option<i64>,
    /// Messages in + out.
    pub messages: u64,
    pub sessions: u64,
}

/// One bucket of the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsBucket {
    /// First UTC instant (ms) of the bucket within the range asked.
    pub start_ms: i64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub users_new: u64,
    /// Users first seen before the bucket starts.
    pub users_existing: u64,
    /// Distinct users with at least one inbound message in the bucket.
    pub users_active: u64,
    /// Sessions whose first message is in the bucket.
    pub sessions: u64,
}

/// Everything the product shows about one bot, exact after every [`apply`].
///
/// [`apply`]: BotFigures::apply
#[derive(Debug, Clone)]
pub struct BotFigures {
    settings: BotSettings,
    users: Vec<User>,
    index: HashMap<Box<str>, u32>,
    slots: BTreeMap<i64, SlotCounts>,
    active_hour: HashMap<i32, u64>,
    active_day: HashMap<i32, u64>,
    active_week: HashMap<i32, u64>,
    texts: Vec<Box<str>>,
    text_index: HashMap<Box<str>, u32>,
    /// Inbound normalised texts counted per local day.
    top: BTreeMap<i32, HashMap<u32, u64>>,
}

impl BotFigures {
    pub fn new(settings: BotSettings) -> BotFigures {
        BotFigures {
            settings,
            users: Vec::new(),
            index: HashMap::new(),
            slots: BTreeMap::new(),
            active_hour: HashMap::new(),
            active_day: HashMap::new(),
            active_week: HashMap::new(),
            texts: Vec::new(),
            text_index: HashMap::new(),
            top: BTreeMap::new(),
        }
    }

    pub fn settings(&self) -> BotSettings {
        self.settings
    }

    /// Applies one event of this bot (each event once: the log de-duplicates).
    pub fn apply(&mut self, event: &Event) {
        let ts = event.ts_millis();
        let at = (ts, event.id.as_str());
        let user = self.user_mut(&event.user.id);
        Latest::offer(
            &mut user.name,
            event.user.name.as_deref().map(Box::from),
            at,
        );
        Latest::offer(&mut user.provider, Box::from(event.provider.as_str()), at);
        if event.kind == EventKind::Message {
            let inbound = event.direction == Some(Direction::In);
            self.apply_message(&event.user.id, ts, inbound);
            if inbound && let Some(text) = event.text.as_deref().and_then(normalize_top_text) {
                let day = day_of_hour(local_hour(self.settings.tz, ts));
                let text = self.text_id(text);
                *self.top.entry(day).or_default().entry(text).or_default() += 1;
            }
        }
    }

    fn user_index(&mut self, id: &str) -> usize {
        if let Some(&i) = self.index.get(id) {
            return i as usize;
        }
        let i = self.users.len();
        self.users.push(User {
            id: id.into(),
            name: None,
            provider: None,
            first_ms: None,
            last_ms: None,
            messages: 0,
            sessions: 0,
            groups: Vec::new(),
            active_hours: Vec::new(),
        });
        self.index.insert(id.into(), i as u32);
        i
    }

    fn user_mut(&mut self, id: &str) -> &mut User {
        let i = self.user_index(id);
        &mut self.users[i]
    }

    fn text_id(&mut self, text: String) -> u32 {
        if let Some(&id) = self.text_index.get(text.as_str()) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.texts.push(text.clone().into_boxed_str());
        self.text_index.insert(text.into_boxed_str(), id);
        id
    }

    fn apply_message(&mut self, user_id: &str, ts: i64, inbound: bool) {
        let settings = self.settings;
        let i = self.user_index(user_id);
        let user = &mut self.users[i];
        let slot = self.slots.entry(slot_of(ts)).or_default();
        if inbound {
            slot.messages_in += 1;
        } else {
            slot.messages_out += 1;
        }
        user.messages += 1;
        user.last_ms = Some(user.last_ms.map_or(ts, |l| l.max(ts)));

        // First message ever: a user is new in the slot of their earliest message.
        let earlier = user.first_ms.is_none_or(|f| ts < f);
        let moved_from = if earlier {
            user.first_ms.replace(ts)
        } else {
            None
        };

        // Sessions: the groups this message joins, extends or merges.
        let change = sessions::insert(&mut user.groups, ts, inbound, settings.session_timeout_ms);
        let mut session_delta: Vec<(i64, i64)> = Vec::with_capacity(3);
        for g in change.removed.iter().filter(|g| g.is_session()) {
            user.sessions -= 1;
            session_delta.push((slot_of(g.start), -1));
        }
        if change.added.is_session() {
            user.sessions += 1;
            session_delta.push((slot_of(change.added.start), 1));
        }

        // Distinct active users per local hour, day and week.
        let mut became_active = None;
        if inbound {
            let hour = local_hour(settings.tz, ts);
            if let Err(at) = user.active_hours.binary_search(&hour) {
                let day = day_of_hour(hour);
                let week = week_of_day(day);
                let day_known = user.active_hours.iter().any(|&h| day_of_hour(h) == day);
                let week_known = user
                    .active_hours
                    .iter()
                    .any(|&h| week_of_day(day_of_hour(h)) == week);
                user.active_hours.insert(at, hour);
                became_active = Some((
                    hour,
                    (!day_known).then_some(day),
                    (!week_known).then_some(week),
                ));
            }
        }

        if earlier {
            if let Some(old) = moved_from {
                self.slot(slot_of(old)).users_new -= 1;
            }
            self.slot(slot_of(ts)).users_new += 1;
        }
        for (slot, delta) in session_delta {
            let counts = self.slot(slot);
            counts.sessions = counts.sessions.saturating_add_signed(delta);
        }
        if let Some((hour, day, week)) = became_active {
            *self.active_hour.entry(hour).or_default() += 1;
            if let Some(day) = day {
                *self.active_day.entry(day).or_default() += 1;
            }
            if let Some(week) = week {
                *self.active_week.entry(week).or_default() += 1;
            }
        }
    }

    fn slot(&mut self, slot: i64) -> &mut SlotCounts {
        self.slots.entry(slot).or_default()
    }

    /// The figures of one user, if the bot knows them.
    pub fn user(&self, id: &str) -> Option<UserFigures> {
        let u = &self.users[*self.index.get(id)? as usize];
        Some(UserFigures {
            id: u.id.to_string(),
            name: u
                .name
                .as_ref()
                .and_then(|n| n.value.as_deref())
                .map(str::to_owned),
            provider: u.provider.as_ref().map(|p| p.value.to_string()),
            first_seen_ms: u.first_ms,
            last_ms: u.last_ms,
            messages: u.messages,
            sessions: u.sessions,
        })
    }

    /// Every user the bot knows (from messages or profile updates).
    pub fn user_ids(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|u| &*u.id)
    }

    /// The statistics from local date `from` to `to` (inclusive) in buckets of `size`
    /// in the bot's zone, empty buckets included.
    pub fn stats(&self, from: NaiveDate, to: NaiveDate, size: BucketSize) -> Vec<StatsBucket> {
        let tz = self.settings.tz;
        let start = start_of_local_date(tz, from);
        let end = start_of_local_date(tz, to + chrono::Duration::days(1));
        let mut new_before: u64 = self
            .slots
            .range(..slot_of(start))
            .map(|(_, c)| c.users_new)
            .sum();
        let active = match size {
            BucketSize::Hour => &self.active_hour,
            BucketSize::Day => &self.active_day,
            BucketSize::Week => &self.active_week,
        };
        let mut buckets: Vec<(i32, StatsBucket)> = Vec::new();
        let mut slot_start = start;
        while slot_start < end {
            let key = bucket_key(size, tz, slot_start);
            if buckets.last().is_none_or(|(k, _)| *k != key) {
                buckets.push((
                    key,
                    StatsBucket {
                        start_ms: slot_start,
                        messages_in: 0,
                        messages_out: 0,
                        users_new: 0,
                        users_existing: 0,
                        users_active: active.get(&key).copied().unwrap_or(0),
                        sessions: 0,
                    },
                ));
            }
            if let (Some(c), Some((_, b))) =
                (self.slots.get(&slot_of(slot_start)), buckets.last_mut())
            {
                b.messages_in += c.messages_in;
                b.messages_out += c.messages_out;
                b.users_new += c.users_new;
                b.sessions += c.sessions;
            }
            slot_start += SLOT_MS;
        }
        buckets
            .into_iter()
            .map(|(_, mut b)| {
                b.users_existing = new_before;
                new_before += b.users_new;
                b
            })
            .collect()
    }

    /// The inbound texts users sent most often between local dates `from` and `to`
    /// (inclusive), most frequent first (ties by text).
    pub fn top_messages(&self, from: NaiveDate, to: NaiveDate, limit: usize) -> Vec<(String, u64)> {
        let mut counts: HashMap<u32, u64> = HashMap::new();
        for (_, day) in self.top.range(day_number(from)..=day_number(to)) {
            for (&text, &n) in day {
                *counts.entry(text).or_default() += n;
            }
        }
        let mut top: Vec<(String, u64)> = counts
            .into_iter()
            .map(|(t, n)| (self.texts[t as usize].to_string(), n))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(limit);
        top
    }
}
