//! One bot's figures.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use botwatch_event::{Direction, Event, EventKind};
use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;

use crate::sessions::{self, Group};
use crate::text::normalize_top_text;
use crate::time::{
    BucketSize, SLOT_MS, bucket_key, day_number, day_of_hour, local_hour, slot_of,
    start_of_local_date, week_of_day,
};

/// The settings that shape a bot's figures. Changing either means recounting.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SlotCounts {
    messages_in: u64,
    messages_out: u64,
    /// Sessions whose first message is in this slot.
    sessions: u64,
    /// Users whose first message ever is in this slot.
    users_new: u64,
}

/// Profile fields keep the value of the latest event that carries one (an event
/// without a name leaves the name alone); at the same event time the greater value
/// wins, so the outcome never depends on arrival order.
fn offer_name(slot: &mut Option<(i64, Box<str>)>, ts: i64, name: &str) {
    let newer = match slot {
        None => true,
        Some((at, current)) => (ts, name) > (*at, &**current),
    };
    if newer {
        *slot = Some((ts, name.into()));
    }
}

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// FNV-1a: a hash that is the same in every process, for ordering ties.
fn id_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where a page of the dialogs list stopped: the last message time and the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogCursor {
    pub last_ms: i64,
    pub user: String,
}

/// How many raw texts the normalisation cache keeps before it starts again.
const MAX_RAW_TEXTS: usize = 100_000;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct User {
    id: Box<str>,
    name: Option<(i64, Box<str>)>,
    /// Index into the bot's providers.
    provider: Option<(i64, u16)>,
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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BotFigures {
    settings: BotSettings,
    users: Vec<User>,
    index: Map<Box<str>, u32>,
    providers: Vec<Box<str>>,
    slots: BTreeMap<i64, SlotCounts>,
    active_hour: Map<i32, u64>,
    active_day: Map<i32, u64>,
    active_week: Map<i32, u64>,
    texts: Vec<Box<str>>,
    text_index: Map<Box<str>, u32>,
    /// Raw inbound texts seen lately → their normalised text's id (a cache, not kept
    /// in snapshots).
    #[serde(skip)]
    raw_texts: Map<Box<str>, Option<u32>>,
    /// Inbound normalised texts counted per local day.
    top: BTreeMap<i32, Map<u32, u64>>,
    /// Users with messages by their last message: (last ms, a fixed hash of the id,
    /// index). The hash orders ties the same way on every node.
    latest: BTreeSet<(i64, u64, u32)>,
}

impl BotFigures {
    pub fn new(settings: BotSettings) -> BotFigures {
        BotFigures {
            settings,
            users: Vec::new(),
            index: Map::default(),
            providers: Vec::new(),
            slots: BTreeMap::new(),
            active_hour: Map::default(),
            active_day: Map::default(),
            active_week: Map::default(),
            texts: Vec::new(),
            text_index: Map::default(),
            raw_texts: Map::default(),
            top: BTreeMap::new(),
            latest: BTreeSet::new(),
        }
    }

    pub fn settings(&self) -> BotSettings {
        self.settings
    }

    /// Applies one event of this bot (each event once: the log de-duplicates).
    pub fn apply(&mut self, event: &Event) {
        let ts = event.ts_millis();
        let provider = self.provider_id(&event.provider);
        let i = self.user_index(&event.user.id);
        let user = &mut self.users[i];
        if let Some(name) = event.user.name.as_deref() {
            offer_name(&mut user.name, ts, name);
        }
        // Ties compare the providers' names, not their arrival-dependent numbers.
        let newer = match user.provider {
            None => true,
            Some((at, current)) => {
                (ts, &*self.providers[provider as usize]) > (at, &*self.providers[current as usize])
            }
        };
        if newer {
            user.provider = Some((ts, provider));
        }
        if event.kind == EventKind::Message {
            let inbound = event.direction == Some(Direction::In);
            // The local hour, for inbound messages only (zone lookups cost).
            let hour = inbound.then(|| local_hour(self.settings.tz, ts));
            self.apply_message(i, ts, hour);
            if let (Some(hour), Some(raw)) = (hour, event.text.as_deref())
                && let Some(text) = self.text_id(raw)
            {
                let day = day_of_hour(hour);
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

    fn provider_id(&mut self, provider: &str) -> u16 {
        match self.providers.iter().position(|p| &**p == provider) {
            Some(i) => i as u16,
            None => {
                self.providers.push(provider.into());
                (self.providers.len() - 1) as u16
            }
        }
    }

    /// The id of a raw inbound text's normalised form; `None` when nothing is left of
    /// it. Raw texts seen before skip the normalisation (a bounded cache).
    fn text_id(&mut self, raw: &str) -> Option<u32> {
        if let Some(&id) = self.raw_texts.get(raw) {
            return id;
        }
        let id = normalize_top_text(raw).map(|text| match self.text_index.get(text.as_str()) {
            Some(&id) => id,
            None => {
                let id = self.texts.len() as u32;
                self.texts.push(text.clone().into_boxed_str());
                self.text_index.insert(text.into_boxed_str(), id);
                id
            }
        });
        if self.raw_texts.len() >= MAX_RAW_TEXTS {
            self.raw_texts.clear();
        }
        self.raw_texts.insert(raw.into(), id);
        id
    }

    /// `local_hour` is the message's local hour when it is inbound, `None` when not.
    fn apply_message(&mut self, i: usize, ts: i64, local_hour: Option<i32>) {
        let settings = self.settings;
        let inbound = local_hour.is_some();
        let user = &mut self.users[i];
        let slot = self.slots.entry(slot_of(ts)).or_default();
        if inbound {
            slot.messages_in += 1;
        } else {
            slot.messages_out += 1;
        }
        user.messages += 1;
        let last = user.last_ms.map_or(ts, |l| l.max(ts));
        if user.last_ms != Some(last) {
            let tie = id_hash(&user.id);
            if let Some(old) = user.last_ms {
                self.latest.remove(&(old, tie, i as u32));
            }
            self.latest.insert((last, tie, i as u32));
            user.last_ms = Some(last);
        }

        // First message ever: a user is new in the slot of their earliest message.
        let earlier = user.first_ms.is_none_or(|f| ts < f);
        let moved_from = if earlier {
            user.first_ms.replace(ts)
        } else {
            None
        };

        // Sessions: the groups this message joins, extends or merges.
        let change = sessions::insert(&mut user.groups, ts, inbound, settings.session_timeout_ms);
        let mut session_delta = [None; 3];
        for (k, g) in change.removed.iter().flatten().enumerate() {
            if g.is_session() {
                user.sessions -= 1;
                session_delta[k] = Some((slot_of(g.start), -1));
            }
        }
        if change.added.is_session() {
            user.sessions += 1;
            session_delta[2] = Some((slot_of(change.added.start), 1));
        }

        // Distinct active users per local hour, day and week.
        let mut became_active = None;
        if let Some(hour) = local_hour
            && let Err(at) = user.active_hours.binary_search(&hour)
        {
            let day = day_of_hour(hour);
            let week = week_of_day(day);
            // Sorted hours: is any of them in [lo, hi)?
            let hours = &user.active_hours;
            let any_in = |lo: i32, hi: i32| {
                let p = hours.partition_point(|&h| h < lo);
                p < hours.len() && hours[p] < hi
            };
            let day_known = any_in(day * 24, day * 24 + 24);
            // Week w holds the days 7w-3 .. 7w+3 (weeks start on Monday).
            let week_known = any_in((7 * week - 3) * 24, (7 * week + 4) * 24);
            user.active_hours.insert(at, hour);
            became_active = Some((
                hour,
                (!day_known).then_some(day),
                (!week_known).then_some(week),
            ));
        }

        if earlier {
            if let Some(old) = moved_from {
                self.slot(slot_of(old)).users_new -= 1;
            }
            self.slot(slot_of(ts)).users_new += 1;
        }
        for (slot, delta) in session_delta.into_iter().flatten() {
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
            name: u.name.as_ref().map(|(_, n)| n.to_string()),
            provider: u
                .provider
                .and_then(|(_, p)| self.providers.get(p as usize))
                .map(|p| p.to_string()),
            first_seen_ms: u.first_ms,
            last_ms: u.last_ms,
            messages: u.messages,
            sessions: u.sessions,
        })
    }

    /// Users with messages, the latest message first; `after` continues a page.
    pub fn dialogs(
        &self,
        after: Option<&DialogCursor>,
        limit: usize,
    ) -> (Vec<UserFigures>, Option<DialogCursor>) {
        let upper = after.map(|c| {
            let idx = self.index.get(c.user.as_str()).copied().unwrap_or(0);
            (c.last_ms, id_hash(&c.user), idx)
        });
        let range = match upper {
            Some(u) => self.latest.range(..u),
            None => self.latest.range(..),
        };
        let mut page: Vec<UserFigures> = Vec::with_capacity(limit);
        let mut more = false;
        for &(_, _, i) in range.rev() {
            if page.len() == limit {
                more = true;
                break;
            }
            if let Some(f) = self.user(&self.users[i as usize].id) {
                page.push(f);
            }
        }
        let next = if more {
            page.last().map(|f| DialogCursor {
                last_ms: f.last_ms.unwrap_or_default(),
                user: f.id.clone(),
            })
        } else {
            None
        };
        (page, next)
    }

    /// Every user the bot knows (from messages or profile updates).
    pub fn user_ids(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|u| &*u.id)
    }

    /// The statistics from local date `from` to `to` (inclusive) in buckets of `size`
    /// in the bot's zone, empty buckets included.
    ///
    /// Week buckets are whole weeks (Monday to Sunday) that overlap the range, so that
    /// every figure of a bucket covers the same days. Empty when `from` is after `to`.
    pub fn stats(&self, from: NaiveDate, to: NaiveDate, size: BucketSize) -> Vec<StatsBucket> {
        let tz = self.settings.tz;
        let (from, to) = match size {
            BucketSize::Week => (
                from - chrono::Duration::days(i64::from(from.weekday().num_days_from_monday())),
                to + chrono::Duration::days(i64::from(6 - to.weekday().num_days_from_monday())),
            ),
            BucketSize::Hour | BucketSize::Day => (from, to),
        };
        let Some(after_to) = to.checked_add_signed(chrono::Duration::days(1)) else {
            return Vec::new();
        };
        if from > to {
            return Vec::new();
        }
        let start = start_of_local_date(tz, from);
        let end = start_of_local_date(tz, after_to);
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
        let mut counts: Map<u32, u64> = Map::default();
        if from > to {
            return Vec::new();
        }
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
