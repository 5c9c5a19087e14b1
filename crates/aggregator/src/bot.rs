//! One bot's figures.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use botwatch_event::{
    AudienceChange, DeliveryState, Direction, Event, EventKind, LabelOf, UserInfo,
};
use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;
use hashbrown::HashTable;

use crate::arena::{Arena, ShortStr, StrRef};
use crate::audience::{Audience, LabelInfo, Stamp};
use crate::broadcasts::{BroadcastFigures, Broadcasts};
use crate::names::NameSearch;
use crate::outbox::{Outbox, PendingMessage};
use crate::sessions::{self, Group};
use crate::text::normalize_top_text;
use crate::time::{
    BucketSize, SLOT_MS, bucket_key, day_number, day_of_hour, local_hour, slot_of,
    start_of_local_date, week_of_day,
};
use crate::timeline;
use crate::users::Mode;

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

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Where a page of the dialogs list stopped: the last message time and the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogCursor {
    pub last_ms: i64,
    pub user: String,
}

/// The most providers a bot has (slugs from events; beyond it a user keeps the provider
/// it had).
const MAX_PROVIDERS: usize = u16::MAX as usize;

/// Replaced strings are compacted away once they are more than this and more than
/// half the arena.
const COMPACT_AFTER: usize = 1 << 20;

/// How many raw texts the normalisation cache keeps before it starts again.
const MAX_RAW_TEXTS: usize = 100_000;

/// "No value yet" for a time that only grows.
pub(crate) const NEVER: i64 = i64::MIN;

/// One user, packed: strings live in the bot's arena, the session groups and active
/// hours in the packed timeline (80 bytes here plus about 70 there for ten messages).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct User {
    pub(crate) id: ShortStr,
    pub(crate) name: StrRef,
    /// Event time of the name ([`NEVER`]: no name yet).
    name_ms: i64,
    /// Event time of the provider ([`NEVER`]: none yet, only profile events).
    pub(crate) provider_ms: i64,
    /// Event time of the last message either way ([`NEVER`]: no message).
    pub(crate) last_ms: i64,
    pub(crate) messages: u32,
    pub(crate) sessions: u32,
    /// Index into the bot's providers.
    pub(crate) provider: u16,
    /// Fields few events carry, kept out of line.
    profile: Option<Box<Profile>>,
    /// Session groups and local hours with inbound messages ([`timeline`]).
    timeline: Box<[u8]>,
}

impl User {
    pub(crate) fn has_name(&self) -> bool {
        self.name_ms != NEVER
    }
}

/// Profile fields beside the name; each keeps the value of the latest event carrying
/// one.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Profile {
    avatar: Option<(i64, StrRef)>,
    gender: Option<(i64, StrRef)>,
    lang: Option<(i64, StrRef)>,
}

/// Profile fields keep the value of the latest event that carries one (an event
/// without it leaves it alone); at the same event time the greater value wins, so the
/// outcome never depends on arrival order. True when `offered` wins over `current`.
fn newer(current: Option<(i64, &str)>, offered: (i64, &str)) -> bool {
    current.is_none_or(|c| offered > c)
}

/// Offers a profile field's value; returns the bytes of a replaced value left behind in
/// the arena.
fn offer(strings: &mut Arena, field: &mut Option<(i64, StrRef)>, ts: i64, value: &str) -> usize {
    let current = field.map(|(at, r)| (at, strings.get(r)));
    if !newer(current, (ts, value)) {
        return 0;
    }
    let (r, left) = match current {
        Some((_, c)) if c == value => (field.map_or(StrRef::EMPTY, |f| f.1), 0),
        Some((_, c)) => {
            let left = c.len();
            (strings.push(value), left)
        }
        None => (strings.push(value), 0),
    };
    *field = Some((ts, r));
    left
}

/// What the users table and the bots ask about one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFigures {
    pub id: String,
    pub name: Option<String>,
    pub avatar: Option<String>,
    pub gender: Option<String>,
    pub lang: Option<String>,
    pub provider: Option<String>,
    /// Event time (ms) of the first message, either direction.
    pub first_seen_ms: Option<i64>,
    /// Event time (ms) of the last message, either direction.
    pub last_ms: Option<i64>,
    /// Messages in + out.
    pub messages: u64,
    pub sessions: u64,
    pub role: Option<String>,
    pub tags: Vec<String>,
    pub subscriber: bool,
    /// Information fields operators keep (phone, e-mail, custom ones).
    pub fields: BTreeMap<String, String>,
    pub mode: Mode,
    /// The user asked for a human (or the bot handed off) and no operator has taken
    /// the dialog since: when (ms) and why.
    pub handoff: Option<Handoff>,
}

/// Where one message stands in its user's history ([`BotFigures::message_place`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessagePlace {
    /// The user's first message ever.
    pub first: bool,
    /// Start (ms) of the session holding it, when it is in one.
    pub session_start_ms: Option<i64>,
    /// It starts that session.
    pub starts_session: bool,
}

/// A standing request for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// Event time (ms) of the request.
    pub ms: i64,
    pub reason: Option<String>,
    /// The bot handed off (through the API); else the user asked.
    pub by_bot: bool,
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

/// What a snapshot keeps of a bot: everything but the indexes, which are rebuilt.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored<U, S, P, C, A, T, D, M, O, H, Au, Br> {
    settings: BotSettings,
    strings: S,
    users: U,
    providers: P,
    slots: C,
    active_hour: A,
    active_day: A,
    active_week: A,
    texts: T,
    top: D,
    modes: M,
    outbox: O,
    handoffs: H,
    audience: Au,
    broadcasts: Br,
}

type Owned = Stored<
    Vec<User>,
    Arena,
    Vec<Box<str>>,
    Map<i64, SlotCounts>,
    Map<i32, u64>,
    Vec<Box<str>>,
    BTreeMap<i32, Map<u32, u64>>,
    Map<u32, ModeMark>,
    Outbox,
    Map<u32, HandoffMark>,
    Audience,
    Broadcasts,
>;

/// A dialog's mode as its latest `mode_changed` set it: the latest by event time (then
/// by event id), so the mode does not depend on the order the changes arrive in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ModeMark {
    ms: i64,
    id: Box<str>,
    mode: Mode,
}

/// A dialog's latest `handoff`: the latest by event time, then by event id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct HandoffMark {
    ms: i64,
    id: Box<str>,
    reason: Option<Box<str>>,
    by_bot: bool,
}

/// Everything the product shows about one bot, exact after every [`apply`].
///
/// [`apply`]: BotFigures::apply
#[derive(Debug, Clone)]
pub struct BotFigures {
    settings: BotSettings,
    pub(crate) strings: Arena,
    pub(crate) users: Vec<User>,
    pub(crate) providers: Vec<Box<str>>,
    slots: Map<i64, SlotCounts>,
    active_hour: Map<i32, u64>,
    active_day: Map<i32, u64>,
    active_week: Map<i32, u64>,
    texts: Vec<Box<str>>,
    /// Inbound normalised texts counted per local day.
    top: BTreeMap<i32, Map<u32, u64>>,
    /// Users whose dialog an operator ever switched (every other one is in Auto).
    modes: Map<u32, ModeMark>,
    /// Operator messages botwatch delivers, and where each is on its way.
    outbox: Outbox,
    /// Users who asked for a human (or were handed off), latest request each.
    handoffs: Map<u32, HandoffMark>,
    /// Roles, tags and what operators set on users.
    pub(crate) audience: Audience,
    broadcasts: Broadcasts,

    // Derived, not kept in snapshots.
    /// User index by id (hashed through the arena: no second copy of each id).
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    pub(crate) names: NameSearch,
    text_index: Map<Box<str>, u32>,
    provider_index: Map<Box<str>, u16>,
    /// Bytes of replaced strings left in the arena.
    garbage: usize,
    /// Raw inbound texts seen lately → their normalised text's id (a cache).
    raw_texts: Map<Box<str>, Option<u32>>,
    scratch_groups: Vec<Group>,
    scratch_hours: Vec<i32>,
}

impl serde::Serialize for BotFigures {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Stored {
            settings: self.settings,
            strings: &self.strings,
            users: &self.users,
            providers: &self.providers,
            slots: &self.slots,
            active_hour: &self.active_hour,
            active_day: &self.active_day,
            active_week: &self.active_week,
            texts: &self.texts,
            top: &self.top,
            modes: &self.modes,
            outbox: &self.outbox,
            handoffs: &self.handoffs,
            audience: &self.audience,
            broadcasts: &self.broadcasts,
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for BotFigures {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BotFigures, D::Error> {
        let s = Owned::deserialize(d)?;
        let mut figures = BotFigures::new(s.settings);
        figures.strings = s.strings;
        figures.users = s.users;
        figures.providers = s.providers;
        figures.slots = s.slots;
        figures.active_hour = s.active_hour;
        figures.active_day = s.active_day;
        figures.active_week = s.active_week;
        figures.texts = s.texts;
        figures.top = s.top;
        figures.modes = s.modes;
        figures.outbox = s.outbox;
        figures.handoffs = s.handoffs;
        figures.audience = s.audience;
        figures.broadcasts = s.broadcasts;
        figures
            .check()
            .map_err(|e| serde::de::Error::custom(format!("inconsistent figures: {e}")))?;
        figures.rebuild_indexes();
        Ok(figures)
    }
}

impl BotFigures {
    pub fn new(settings: BotSettings) -> BotFigures {
        BotFigures {
            settings,
            strings: Arena::default(),
            users: Vec::new(),
            providers: Vec::new(),
            slots: Map::default(),
            active_hour: Map::default(),
            active_day: Map::default(),
            active_week: Map::default(),
            texts: Vec::new(),
            top: BTreeMap::new(),
            modes: Map::default(),
            outbox: Outbox::default(),
            handoffs: Map::default(),
            audience: Audience::default(),
            broadcasts: Broadcasts::default(),
            index: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            names: NameSearch::default(),
            text_index: Map::default(),
            provider_index: Map::default(),
            garbage: 0,
            raw_texts: Map::default(),
            scratch_groups: Vec::new(),
            scratch_hours: Vec::new(),
        }
    }

    /// A copy of what a snapshot keeps (no indexes): taking it costs less than half of
    /// encoding (0.4 s against 1 s at a million users), so the aggregator hands the copy
    /// to another thread to encode and goes on applying events.
    pub(crate) fn copy_for_snapshot(&self) -> BotFigures {
        let mut copy = BotFigures::new(self.settings);
        copy.strings = self.strings.clone();
        copy.users = self.users.clone();
        copy.providers = self.providers.clone();
        copy.slots = self.slots.clone();
        copy.active_hour = self.active_hour.clone();
        copy.active_day = self.active_day.clone();
        copy.active_week = self.active_week.clone();
        copy.texts = self.texts.clone();
        copy.top = self.top.clone();
        copy.modes = self.modes.clone();
        copy.outbox = self.outbox.clone();
        copy.handoffs = self.handoffs.clone();
        copy.audience = self.audience.clone();
        copy.broadcasts = self.broadcasts.clone();
        copy
    }

    /// Whether what a snapshot gave back holds together (its checksum matched, but a
    /// state that does not must be refused, never panic later).
    fn check(&self) -> Result<(), String> {
        if self.providers.len() > MAX_PROVIDERS || self.users.len() > u32::MAX as usize {
            return Err("too many providers or users".to_owned());
        }
        if let Some(u) = self
            .users
            .iter()
            .find(|u| u.provider_ms != NEVER && usize::from(u.provider) >= self.providers.len())
        {
            return Err(format!("a user's provider {} is not known", u.provider));
        }
        if let Some(i) = self.modes.keys().find(|&&i| i as usize >= self.users.len()) {
            return Err(format!("a mode for user {i}, who is not known"));
        }
        if let Some(i) = self
            .handoffs
            .keys()
            .find(|&&i| i as usize >= self.users.len())
        {
            return Err(format!("a hand-off of user {i}, who is not known"));
        }
        if let Some(i) = self
            .outbox
            .max_user()
            .filter(|&i| i as usize >= self.users.len())
        {
            return Err(format!("a delivery to user {i}, who is not known"));
        }
        self.audience.check(self.users.len())?;
        let texts = self.texts.len();
        if self
            .top
            .values()
            .any(|day| day.keys().any(|&t| t as usize >= texts))
        {
            return Err("a counted text is not known".to_owned());
        }
        Ok(())
    }

    /// After loading: the arena without garbage, the name search, and the indexes by
    /// id, text and provider.
    fn rebuild_indexes(&mut self) {
        self.audience.rebuild();
        self.compact();
        let (strings, users, hasher) = (&self.strings, &self.users, &self.hasher);
        self.index = HashTable::with_capacity(users.len());
        for (i, u) in users.iter().enumerate() {
            self.index
                .insert_unique(hasher.hash_one(strings.get_short(&u.id)), i as u32, |&j| {
                    hasher.hash_one(strings.get_short(&users[j as usize].id))
                });
        }
        self.text_index = self
            .texts
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        self.provider_index = self
            .providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as u16))
            .collect();
    }

    pub fn settings(&self) -> BotSettings {
        self.settings
    }

    /// Applies one event of this bot (each event once: the log de-duplicates).
    pub fn apply(&mut self, event: &Event) {
        if event.is_about_bot() {
            self.apply_about_bot(event);
            return;
        }
        let i = self.user_index(&event.user.id);
        self.apply_to(i as u32, event);
    }

    /// A role or tag defined, renamed or deleted; a broadcast started or cancelled.
    fn apply_about_bot(&mut self, event: &Event) {
        if let Some(AudienceChange::Label(label)) = &event.audience {
            self.audience.apply_label(Stamp::of(event), label);
            self.audience.note(&event.id);
        }
        if event.kind == EventKind::Broadcast {
            self.broadcasts.apply(event);
        }
    }

    /// The index of an event's user when known, with the first byte of its timeline
    /// read (so that memory is on its way before [`apply_to`](Self::apply_to) needs it).
    pub(crate) fn touch_user(&self, id: &str) -> Option<u32> {
        let i = self.find_user(id)?;
        std::hint::black_box(self.users[i as usize].timeline.first());
        Some(i)
    }

    /// Applies `event`, whose user is user number `i`.
    pub(crate) fn apply_to(&mut self, i: u32, event: &Event) {
        if event.is_about_bot() {
            self.apply_about_bot(event);
            return;
        }
        let i = i as usize;
        let ts = event.ts_millis();
        let provider = self.provider_id(&event.provider);
        self.offer_profile(i, ts, provider, &event.user);
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
        if let Some((broadcast, outcome)) = self.outbox.apply(i as u32, event) {
            self.broadcasts.count(&broadcast, outcome);
        }
        if let Some(AudienceChange::Edit(edit)) = &event.audience {
            let changed = self.audience.apply_edit(i as u32, Stamp::of(event), edit);
            self.audience.note(&event.id);
            if changed.name {
                self.index_name(i as u32);
            }
        }
        if event.kind == EventKind::Handoff {
            let mark = HandoffMark {
                ms: ts,
                id: event.id.as_str().into(),
                reason: event.text.as_deref().map(Into::into),
                by_bot: event.sender == Some(botwatch_event::Sender::Bot),
            };
            match self.handoffs.get(&(i as u32)) {
                Some(m) if (m.ms, &m.id) >= (mark.ms, &mark.id) => {}
                _ => {
                    self.handoffs.insert(i as u32, mark);
                }
            }
        }
        if event.kind == EventKind::ModeChanged
            && let Some(mode) = event.mode
        {
            let mark = ModeMark {
                ms: ts,
                id: event.id.as_str().into(),
                mode,
            };
            let i = i as u32;
            match self.modes.get(&i) {
                Some(m) if (m.ms, &m.id) >= (mark.ms, &mark.id) => {}
                _ => {
                    self.modes.insert(i, mark);
                }
            }
        }
    }

    /// The index of user `id`, if known.
    pub(crate) fn find_user(&self, id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(id);
        self.index
            .find(hash, |&i| {
                self.strings.get_short(&self.users[i as usize].id) == id
            })
            .copied()
    }

    fn user_index(&mut self, id: &str) -> usize {
        if let Some(i) = self.find_user(id) {
            return i as usize;
        }
        let i = self.users.len();
        let id_ref = self.strings.push_short(id);
        self.users.push(User {
            id: id_ref,
            name: StrRef::EMPTY,
            name_ms: NEVER,
            provider_ms: NEVER,
            last_ms: NEVER,
            messages: 0,
            sessions: 0,
            provider: 0,
            profile: None,
            timeline: Box::default(),
        });
        let (strings, users, hasher) = (&self.strings, &self.users, &self.hasher);
        self.index
            .insert_unique(hasher.hash_one(id), i as u32, |&j| {
                hasher.hash_one(strings.get_short(&users[j as usize].id))
            });
        i
    }

    fn offer_profile(&mut self, i: usize, ts: i64, provider: Option<u16>, info: &UserInfo) {
        let user = &mut self.users[i];
        if let Some(name) = info.name.as_deref() {
            let current = user
                .has_name()
                .then(|| (user.name_ms, self.strings.get(user.name)));
            if newer(current, (ts, name)) {
                if let Some((_, old)) = current.filter(|(_, c)| *c != name) {
                    self.garbage += old.len();
                }
                if current.is_none_or(|(_, c)| c != name) {
                    user.name = self.strings.push(name);
                    // A name an operator gave stands over the channels'.
                    if self.audience.name(i as u32).is_none() {
                        self.names.set(i as u32, name);
                    }
                }
                user.name_ms = ts;
            }
        }
        // Ties compare the providers' names, not their arrival-dependent numbers.
        if let Some(provider) = provider {
            let name = |p: u16| self.providers.get(usize::from(p)).map_or("", |p| &**p);
            let current =
                (user.provider_ms != NEVER).then(|| (user.provider_ms, name(user.provider)));
            if newer(current, (ts, name(provider))) {
                user.provider = provider;
                user.provider_ms = ts;
            }
        }
        let fields = [
            info.avatar.as_deref(),
            info.gender.as_deref(),
            info.lang.as_deref(),
        ];
        if fields.iter().any(Option::is_some) {
            let profile = user.profile.get_or_insert_with(Box::default);
            let slots = [&mut profile.avatar, &mut profile.gender, &mut profile.lang];
            for (slot, value) in slots.into_iter().zip(fields) {
                if let Some(value) = value {
                    self.garbage += offer(&mut self.strings, slot, ts, value);
                }
            }
        }
        // Replaced strings stay in the arena until it is compacted: when they are more
        // than what is live (and worth the pass).
        if self.garbage > COMPACT_AFTER && self.garbage > self.strings.len() / 2 {
            self.compact();
        }
    }

    /// The number of a provider; `None` once a bot has [`MAX_PROVIDERS`] (the user's
    /// provider then stays what it was).
    fn provider_id(&mut self, provider: &str) -> Option<u16> {
        if let Some(&p) = self.provider_index.get(provider) {
            return Some(p);
        }
        if self.providers.len() >= MAX_PROVIDERS {
            return None;
        }
        let p = self.providers.len() as u16;
        self.providers.push(provider.into());
        self.provider_index.insert(provider.into(), p);
        Some(p)
    }

    /// Copies every live string into a new arena (ids, names, profile fields) and
    /// rebuilds the name search: what renames and changed avatars left behind is gone.
    fn compact(&mut self) {
        let old = std::mem::take(&mut self.strings);
        let move_ref = |arena: &mut Arena, r: StrRef| arena.push(old.get(r));
        for u in &mut self.users {
            u.id = self.strings.push_short(old.get_short(&u.id));
            u.name = move_ref(&mut self.strings, u.name);
            if let Some(p) = u.profile.as_deref_mut() {
                for (_, r) in [&mut p.avatar, &mut p.gender, &mut p.lang]
                    .into_iter()
                    .flatten()
                {
                    *r = move_ref(&mut self.strings, *r);
                }
            }
        }
        self.garbage = 0;
        self.names = NameSearch::default();
        for (i, u) in self.users.iter().enumerate() {
            if u.has_name() {
                self.names.set(i as u32, self.strings.get(u.name));
            }
        }
        for (i, name) in self.audience.named_users() {
            self.names.set(i, name);
        }
    }

    /// Puts user `i`'s name as it stands (an operator's, else the channels') in the
    /// name search.
    fn index_name(&mut self, i: u32) {
        let u = &self.users[i as usize];
        match self.audience.name(i) {
            Some(name) => self.names.set(i, name),
            None if u.has_name() => self.names.set(i, self.strings.get(u.name)),
            None => self.names.set(i, ""),
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
        let timeout = self.settings.session_timeout_ms;
        let inbound = local_hour.is_some();
        let counts = self.slots.entry(slot_of(ts)).or_default();
        if inbound {
            counts.messages_in += 1;
        } else {
            counts.messages_out += 1;
        }
        let (groups, hours) = (&mut self.scratch_groups, &mut self.scratch_hours);
        let user = &mut self.users[i];
        user.messages = user.messages.saturating_add(1);
        user.last_ms = user.last_ms.max(ts);
        timeline::decode(&user.timeline, groups, hours);

        // First message ever: a user is new in the slot of their earliest message.
        let first = groups.first().map(|g| g.start);
        let earlier = first.is_none_or(|f| ts < f);

        // Sessions: the groups this message joins, extends or merges.
        let change = sessions::insert(groups, ts, inbound, timeout);
        let mut session_delta = [None; 3];
        for (k, g) in change.removed.iter().flatten().enumerate() {
            if g.is_session() {
                user.sessions = user.sessions.saturating_sub(1);
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
            && let Err(at) = hours.binary_search(&hour)
        {
            let day = day_of_hour(hour);
            let week = week_of_day(day);
            // Sorted hours: is any of them in [lo, hi)?
            let any_in = |lo: i32, hi: i32| {
                let p = hours.partition_point(|&h| h < lo);
                p < hours.len() && hours[p] < hi
            };
            let day_known = any_in(day * 24, day * 24 + 24);
            // Week w holds the days 7w-3 .. 7w+3 (weeks start on Monday).
            let week_known = any_in((7 * week - 3) * 24, (7 * week + 4) * 24);
            hours.insert(at, hour);
            became_active = Some((
                hour,
                (!day_known).then_some(day),
                (!week_known).then_some(week),
            ));
        }
        timeline::encode_into(&mut user.timeline, groups, hours);

        if earlier {
            if let Some(old) = first {
                let counts = self.slot(slot_of(old));
                counts.users_new = counts.users_new.saturating_sub(1);
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

    /// The figures of user number `i`.
    pub(crate) fn figures_of(&self, i: u32) -> UserFigures {
        let u = &self.users[i as usize];
        let text = |r: Option<(i64, StrRef)>| r.map(|(_, r)| self.strings.get(r).to_owned());
        let profile = u.profile.as_deref();
        UserFigures {
            id: self.strings.get_short(&u.id).to_owned(),
            name: self
                .audience
                .name(i)
                .map(str::to_owned)
                .or_else(|| u.has_name().then(|| self.strings.get(u.name).to_owned())),
            avatar: text(profile.and_then(|p| p.avatar)),
            gender: self
                .audience
                .gender(i)
                .map(str::to_owned)
                .or_else(|| text(profile.and_then(|p| p.gender))),
            lang: text(profile.and_then(|p| p.lang)),
            provider: (u.provider_ms != NEVER)
                .then(|| self.providers.get(u.provider as usize))
                .flatten()
                .map(|p| p.to_string()),
            first_seen_ms: timeline::first_start(&u.timeline),
            last_ms: (u.last_ms != NEVER).then_some(u.last_ms),
            messages: u64::from(u.messages),
            sessions: u64::from(u.sessions),
            role: self
                .audience
                .role_of(i)
                .and_then(|r| self.audience.label_name(r))
                .map(str::to_owned),
            tags: self.tag_names(i),
            subscriber: self.is_subscriber(i),
            fields: self.audience.fields(i),
            mode: self.mode_of(i),
            handoff: self.handoff_of(i).map(|m| Handoff {
                ms: m.ms,
                reason: m.reason.as_deref().map(str::to_owned),
                by_bot: m.by_bot,
            }),
        }
    }

    /// User `i`'s hand-off request while it stands: asked after the dialog's latest
    /// mode switch (taking the dialog over, or handing it back, answers it), and the
    /// dialog still in Auto.
    fn handoff_of(&self, i: u32) -> Option<&HandoffMark> {
        let mark = self.handoffs.get(&i)?;
        let switched = self.modes.get(&i);
        let standing = switched.is_none_or(|m| mark.ms > m.ms) && self.mode_of(i) == Mode::Auto;
        standing.then_some(mark)
    }

    /// The dialogs waiting for a human, the latest request first.
    pub fn handoffs(&self) -> Vec<UserFigures> {
        let mut waiting: Vec<(i64, u32)> = self
            .handoffs
            .iter()
            .filter(|&(&i, _)| self.handoff_of(i).is_some())
            .map(|(&i, m)| (m.ms, i))
            .collect();
        waiting.sort_unstable_by(|a, b| b.cmp(a));
        waiting
            .into_iter()
            .map(|(_, i)| self.figures_of(i))
            .collect()
    }

    /// User `i`'s tags by name, A to Z.
    fn tag_names(&self, i: u32) -> Vec<String> {
        let mut tags: Vec<String> = self
            .audience
            .tags_of(i)
            .into_iter()
            .filter_map(|t| self.audience.label_name(t))
            .map(str::to_owned)
            .collect();
        tags.sort();
        // Two labels may share a name (created at once): it is one tag to readers.
        tags.dedup();
        tags
    }

    /// Whether user `i` receives broadcasts to subscribers: everyone does until an
    /// operator clears the flag.
    pub(crate) fn is_subscriber(&self, i: u32) -> bool {
        self.audience.subscriber(i).unwrap_or(true)
    }

    /// The bot's roles or tags, by name.
    pub fn labels(&self, of: LabelOf) -> Vec<LabelInfo> {
        self.audience.labels(of)
    }

    /// Where user `id`'s message at `ms` stands (what analytics forwarding tells): the
    /// user's first message ever, the session holding it (its start) and whether it
    /// is that session's first message (a session the bot's message opened is not
    /// started by the user's answer: the figures keep whether a group has inbound
    /// messages, not which came first). Read from the figures as they are now, so the
    /// same whatever order messages came in.
    pub fn message_place(&self, id: &str, ms: i64) -> Option<MessagePlace> {
        let i = self.find_user(id)?;
        let u = &self.users[i as usize];
        let (mut groups, mut hours) = (Vec::new(), Vec::new());
        timeline::decode(&u.timeline, &mut groups, &mut hours);
        let group = groups
            .iter()
            .find(|g| g.start <= ms && ms <= g.end)
            .filter(|g| g.is_session());
        Some(MessagePlace {
            first: groups.first().is_some_and(|g| g.start == ms),
            session_start_ms: group.map(|g| g.start),
            starts_session: group.is_some_and(|g| g.start == ms),
        })
    }

    /// User `id`'s provider and mode (what a sender needs, without the rest of
    /// [`user`](Self::user)).
    pub fn provider_and_mode(&self, id: &str) -> Option<(Option<String>, Mode)> {
        let i = self.find_user(id)?;
        let u = &self.users[i as usize];
        let provider = (u.provider_ms != NEVER)
            .then(|| self.providers.get(u.provider as usize))
            .flatten()
            .map(|p| p.to_string());
        Some((provider, self.mode_of(i)))
    }

    /// The keys of the tags user `id` carries (what an edit that removes one names).
    pub fn tag_keys(&self, id: &str) -> Vec<String> {
        self.find_user(id)
            .map(|i| self.audience.tag_keys(i))
            .unwrap_or_default()
    }

    /// Whether audience event `id` (an edit, a role or tag) was applied lately: a
    /// request waits for it to read its own write.
    pub fn saw_audience_event(&self, id: &str) -> bool {
        self.audience.saw(id)
    }

    /// Where broadcast `id` stands (cheaper than [`broadcast`](Self::broadcast)).
    pub fn broadcast_state(&self, id: &str) -> Option<botwatch_event::BroadcastState> {
        self.broadcasts.state(id)
    }

    /// The ids of the broadcasts still to send (queued or running).
    pub fn open_broadcasts(&self) -> Vec<String> {
        self.broadcasts.open()
    }

    pub fn broadcast(&self, id: &str) -> Option<BroadcastFigures> {
        self.broadcasts.get(id)
    }

    /// The recipients broadcast `id` failed to reach and why, `limit` at most.
    pub fn broadcast_failures(&self, id: &str, limit: usize) -> Vec<(String, String)> {
        self.outbox
            .failures(id, limit)
            .into_iter()
            .map(|(u, reason)| {
                (
                    self.strings
                        .get_short(&self.users[u as usize].id)
                        .to_owned(),
                    reason,
                )
            })
            .collect()
    }

    /// Every broadcast, the latest first.
    pub fn broadcasts(&self) -> Vec<BroadcastFigures> {
        self.broadcasts.list()
    }

    /// Who answers user `i`: the bot, unless an operator switched the dialog to Manual.
    pub(crate) fn mode_of(&self, i: u32) -> Mode {
        self.modes.get(&i).map_or(Mode::Auto, |m| m.mode)
    }

    /// Who answers user `id` (Auto for a user the bot does not know).
    pub fn mode(&self, id: &str) -> Mode {
        self.find_user(id).map_or(Mode::Auto, |i| self.mode_of(i))
    }

    /// Where operator message `id` is on its way to the user, and why it failed; `None`
    /// for a message botwatch does not deliver (the bot's own, an adapter's).
    pub fn delivery(&self, id: &str) -> Option<(DeliveryState, Option<&str>)> {
        self.outbox.state(id)
    }

    /// Operator messages still to deliver, oldest first.
    pub fn pending_messages(&self) -> Vec<PendingMessage> {
        self.outbox.pending()
    }

    /// The figures of one user, if the bot knows them.
    pub fn user(&self, id: &str) -> Option<UserFigures> {
        self.find_user(id).map(|i| self.figures_of(i))
    }

    /// Every user the bot knows (from messages or profile updates).
    pub fn user_ids(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|u| self.strings.get_short(&u.id))
    }

    /// Messages counted so far, both directions.
    pub fn message_count(&self) -> u64 {
        self.slots
            .values()
            .map(|c| c.messages_in + c.messages_out)
            .sum()
    }

    /// How many users the bot knows.
    pub fn user_count(&self) -> usize {
        self.users.len()
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
        let first_slot = slot_of(start);
        let mut new_before: u64 = self
            .slots
            .iter()
            .filter(|&(&slot, _)| slot < first_slot)
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

#[cfg(test)]
mod tests {
    use super::*;
    use botwatch_event::{Direction, EventKind};

    fn message(n: i64, avatar: &str) -> Event {
        Event {
            id: format!("e{n}"),
            bot: "b".to_owned(),
            kind: EventKind::Message,
            direction: Some(Direction::In),
            provider: "web".to_owned(),
            user: UserInfo {
                id: "u1".to_owned(),
                name: Some(format!("name {}", n % 3)),
                avatar: Some(avatar.to_owned()),
                ..UserInfo::default()
            },
            text: Some("hi".to_owned()),
            attachments: Vec::new(),
            sender: None,
            mode: None,
            delivery: None,
            audience: None,
            broadcast: None,
            ts: chrono::DateTime::from_timestamp_millis(1_780_000_000_000 + n * 1000)
                .expect("time"),
        }
    }

    #[test]
    fn a_messages_place_first_and_session_start() {
        let mut f = BotFigures::new(BotSettings::default());
        let at = |n: i64| 1_780_000_000_000 + n * 1000;
        // The bot writes first at 0; the user answers at 10 and 20; later, at 4,000 s,
        // the user writes again (a new session: the timeout is 30 minutes).
        let mut out = message(0, "a");
        out.direction = Some(Direction::Out);
        for e in [out, message(10, "a"), message(20, "a"), message(4000, "a")] {
            f.apply(&e);
        }
        let place = |n| f.message_place("u1", at(n)).expect("known");
        assert!(place(0).first, "the first message ever, either way");
        assert_eq!(place(10).session_start_ms, Some(at(0)));
        assert!(!place(10).starts_session, "the bot's message opened it");
        assert!(!place(20).starts_session);
        assert!(place(4000).starts_session && !place(4000).first);
        assert_eq!(place(4000).session_start_ms, Some(at(4000)));
        assert_eq!(f.message_place("nobody", at(0)), None);
    }

    fn mode_change(n: i64, id: &str, mode: Mode) -> Event {
        Event {
            id: id.to_owned(),
            kind: EventKind::ModeChanged,
            direction: None,
            text: None,
            mode: Some(mode),
            delivery: None,
            audience: None,
            broadcast: None,
            ..message(n, "a")
        }
    }

    /// The latest change by event time wins, then the greater id, in whatever order
    /// the changes arrive; the users filter and snapshots keep it.
    #[test]
    fn a_handoff_stands_until_an_operator_switches_the_dialog() {
        let handoff = |n: i64, id: &str| Event {
            id: id.to_owned(),
            kind: EventKind::Handoff,
            direction: None,
            text: Some("I want a human".to_owned()),
            ..message(n, "a")
        };
        let mut figures = BotFigures::new(BotSettings::default());
        figures.apply(&message(1, "a"));
        assert_eq!(figures.user("u1").expect("u1").handoff, None);
        figures.apply(&handoff(10, "h-1"));
        assert_eq!(
            figures.user("u1").expect("u1").handoff,
            Some(Handoff {
                ms: 1_780_000_010_000,
                reason: Some("I want a human".to_owned()),
                by_bot: false
            })
        );
        assert_eq!(figures.handoffs().len(), 1);
        let bytes = postcard::to_stdvec(&figures).expect("bytes");
        let back: BotFigures = postcard::from_bytes(&bytes).expect("restored");
        assert_eq!(back.handoffs().len(), 1, "kept in snapshots");
        // Taken over: answered. Handed back: still answered (the request was before).
        figures.apply(&mode_change(20, "m-1", Mode::Manual));
        assert!(figures.handoffs().is_empty());
        figures.apply(&mode_change(30, "m-2", Mode::Auto));
        assert_eq!(figures.user("u1").expect("u1").handoff, None);
        // A new request after that stands again; one older than the switch does not.
        figures.apply(&handoff(25, "h-0"));
        assert!(figures.handoffs().is_empty());
        figures.apply(&handoff(40, "h-2"));
        assert_eq!(figures.handoffs().len(), 1);
        assert_eq!(figures.user("u1").expect("u1").messages, 1, "not a message");
    }

    #[test]
    fn a_dialogs_mode_is_its_latest_change_in_any_order() {
        let changes = [
            mode_change(10, "m-a", Mode::Manual),
            mode_change(20, "m-b", Mode::Auto),
            mode_change(30, "m-c", Mode::Manual),
            mode_change(30, "m-0", Mode::Auto),
        ];
        let orders: [[usize; 4]; 4] = [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]];
        for order in orders {
            let mut figures = BotFigures::new(BotSettings::default());
            figures.apply(&message(1, "a"));
            assert_eq!(figures.user("u1").expect("u1").mode, Mode::Auto);
            for &k in &order {
                figures.apply(&changes[k]);
            }
            let u = figures.user("u1").expect("u1");
            assert_eq!(u.mode, Mode::Manual, "order {order:?}");
            assert_eq!(u.messages, 1, "a mode change is not a message");
            let bytes = postcard::to_stdvec(&figures).expect("bytes");
            let back: BotFigures = postcard::from_bytes(&bytes).expect("restored");
            assert_eq!(back.user("u1").expect("u1").mode, Mode::Manual);
            let manual = back.users(&crate::UsersQuery {
                filter: crate::UserFilter {
                    modes: vec![Mode::Manual],
                    ..crate::UserFilter::default()
                },
                sort: crate::UserSort::Last,
                descending: true,
                limit: 10,
                after: None,
            });
            assert_eq!(manual.total, 1);
        }
    }

    #[test]
    fn replaced_strings_do_not_pile_up() {
        // A signed avatar URL that changes with every message, and a name that changes.
        let mut figures = BotFigures::new(BotSettings::default());
        let mut sizes = Vec::new();
        for round in 0..3i64 {
            for n in 0..20_000 {
                let n = round * 20_000 + n;
                figures.apply(&message(
                    n,
                    &format!("https://cdn.example/a.jpg?sig={n:0>64}"),
                ));
            }
            let bytes = postcard::to_stdvec(&figures).expect("bytes");
            figures = postcard::from_bytes(&bytes).expect("restored");
            sizes.push(bytes.len());
        }
        assert!(
            sizes.iter().all(|&s| s < 3 << 20),
            "the arena is compacted as it goes: {sizes:?}"
        );
        let u = figures.user("u1").expect("user");
        assert_eq!(u.messages, 60_000);
        assert_eq!(
            u.avatar.as_deref(),
            Some(format!("https://cdn.example/a.jpg?sig={:0>64}", 59_999).as_str())
        );
        assert_eq!(u.name.as_deref(), Some("name 2"));
        let page = figures.users(&crate::UsersQuery {
            filter: crate::UserFilter {
                search: Some("NAME 2".to_owned()),
                ..crate::UserFilter::default()
            },
            sort: crate::UserSort::Name,
            descending: false,
            limit: 10,
            after: None,
        });
        assert_eq!(page.total, 1, "the name search survives compaction");
    }

    #[test]
    fn a_snapshot_that_does_not_hold_together_is_refused() {
        let mut figures = BotFigures::new(BotSettings::default());
        figures.apply(&message(1, "a"));
        // The same state with its one provider gone: a user points past the list.
        let mut broken = figures.copy_for_snapshot();
        broken.providers.clear();
        let bytes = postcard::to_stdvec(&broken).expect("bytes");
        let refused = postcard::from_bytes::<BotFigures>(&bytes);
        assert!(refused.is_err(), "a user's provider is not known");
        let mut broken = figures.copy_for_snapshot();
        broken.texts.clear();
        let bytes = postcard::to_stdvec(&broken).expect("bytes");
        assert!(
            postcard::from_bytes::<BotFigures>(&bytes).is_err(),
            "a counted text is not known"
        );
    }
}
