//! The traffic generator: a pure, seeded state machine with no clock and no IO.
//!
//! It runs `concurrent_dialogs` dialog slots on a virtual timeline. Each slot picks a
//! bot, a provider and a user (sometimes one who talked to that bot before), follows
//! a scenario (user message, bot answer 0.3–2 s later, the next user message 2–15 s
//! later, all × pace), sometimes chains a second scenario, sometimes gives up midway,
//! and then idles — now and then for long — before starting over with someone else.
//! [`Traffic::next_step`] hands out what is due next, in virtual-time order; the HTTP
//! sender sleeps until then and stamps `ts`. The same seed gives the same steps.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::names::{self, Lang, Person, pick};
use crate::script::{BOTS, Scenario, Turn};

/// Seconds (before × pace) of the bot's reaction to a user message.
const REPLY_SECS: (f64, f64) = (0.3, 2.0);
/// Seconds (before × pace) a user reads and types before the next message.
const THINK_SECS: (f64, f64) = (2.0, 15.0);
/// Seconds (before × pace) a slot rests between two dialogs.
const REST_SECS: (f64, f64) = (1.0, 6.0);
/// Seconds (before × pace) of the occasional long idle between dialogs.
const IDLE_SECS: (f64, f64) = (30.0, 120.0);
/// Percent chance that a slot idles long after a dialog.
const IDLE_PERCENT: u32 = 15;
/// Percent chance that a user leaves in the middle of a scenario.
const ABANDON_PERCENT: u32 = 7;
/// Percent chance that the user goes on with another scenario (at most twice).
const CHAIN_PERCENT: u32 = 30;
const MAX_CHAINED: u32 = 2;
/// Percent chance that a new dialog is with someone who talked to the bot before.
const RETURNING_PERCENT: u32 = 35;
/// Percent chance that a Ukrainian/Russian speaker follows their language's script.
const NATIVE_SCRIPT_PERCENT: u32 = 80;

/// Direction of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    In,
    Out,
}

/// One event, complete but for `ts` (stamped when it is sent).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub(crate) bot: &'static str,
    pub(crate) user_id: String,
    pub(crate) direction: Direction,
    body: Map<String, Value>,
}

impl Event {
    /// The event as JSON (API.md, "Event, version 1") with `ts` set.
    pub(crate) fn to_json(&self, ts: DateTime<Utc>) -> Value {
        let mut body = self.body.clone();
        body.insert(
            "ts".into(),
            ts.to_rfc3339_opts(SecondsFormat::Millis, true).into(),
        );
        Value::Object(body)
    }
}

/// What one dialog slot emits at one moment of the virtual timeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    /// Offset from the start of the run (virtual time).
    pub(crate) at: Duration,
    /// The slot that emitted it.
    pub(crate) slot: usize,
    /// Never empty.
    pub(crate) events: Vec<Event>,
}

/// A running dialog of one slot.
#[derive(Debug, Clone)]
struct Dialog {
    bot: usize,
    provider: &'static str,
    user: usize,
    /// Index into the bot's scenarios.
    scenario: usize,
    /// Order number this dialog talks about.
    order: String,
    chained: u32,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Pick someone and send the first message.
    Start,
    /// The user sends turn N.
    User(usize),
    /// The bot answers turn N.
    Bot(usize),
}

#[derive(Debug, Clone)]
struct Slot {
    phase: Phase,
    dialog: Option<Dialog>,
}

/// The generator. See the module documentation.
#[derive(Debug)]
pub(crate) struct Traffic {
    rng: fastrand::Rng,
    pace: f64,
    id_prefix: String,
    counter: u64,
    people: Vec<Person>,
    slots: Vec<Slot>,
    /// (due, slot): the earliest first, ties by slot number.
    queue: BinaryHeap<Reverse<(Duration, usize)>>,
    /// (bot, provider, person) of running dialogs.
    busy: HashSet<(usize, &'static str, usize)>,
    /// Who has talked to (bot, provider) before, in order of first talk.
    seen: HashMap<(usize, &'static str), Vec<usize>>,
    /// (bot slug, user id) of dialogs the server reports in manual mode.
    manual: HashSet<(String, String)>,
}

impl Traffic {
    /// A generator of `dialogs` concurrent dialogs (at least one), pauses × `pace`
    /// (anything but a finite positive number counts as 0), event ids
    /// `{id_prefix}{counter}`.
    pub(crate) fn new(seed: u64, dialogs: usize, pace: f64, id_prefix: String) -> Traffic {
        let mut rng = fastrand::Rng::with_seed(seed);
        let pace = if pace.is_finite() && pace > 0.0 {
            pace
        } else {
            0.0
        };
        let dialogs = dialogs.max(1);
        let mut queue = BinaryHeap::with_capacity(dialogs);
        for slot in 0..dialogs {
            // Stagger the first messages over a few seconds.
            let at = scaled(rng.f64() * 5.0, pace);
            queue.push(Reverse((at, slot)));
        }
        Traffic {
            rng,
            pace,
            id_prefix,
            counter: 0,
            people: names::pool(),
            slots: vec![
                Slot {
                    phase: Phase::Start,
                    dialog: None,
                };
                dialogs
            ],
            queue,
            busy: HashSet::new(),
            seen: HashMap::new(),
            manual: HashSet::new(),
        }
    }

    /// When the next step is due and which slot it is from, without producing it.
    pub(crate) fn peek(&self) -> Option<(Duration, usize)> {
        self.queue.peek().map(|Reverse(next)| *next)
    }

    /// Produces the next step in virtual-time order. `None` never happens in
    /// practice (every slot always has a next step).
    pub(crate) fn next_step(&mut self) -> Option<Step> {
        loop {
            let Reverse((at, slot)) = self.queue.pop()?;
            let (events, delay) = self.advance(slot);
            self.queue.push(Reverse((at.saturating_add(delay), slot)));
            if !events.is_empty() {
                return Some(Step { at, slot, events });
            }
        }
    }

    /// Records what the server said about a dialog's mode: the bot must not answer a
    /// user in manual mode (an operator does).
    pub(crate) fn set_manual(&mut self, bot: &str, user_id: &str, manual: bool) {
        let key = (bot.to_owned(), user_id.to_owned());
        if manual {
            self.manual.insert(key);
        } else {
            self.manual.remove(&key);
        }
    }

    /// Runs one phase of a slot: the events it emits and the pause until its next.
    fn advance(&mut self, slot: usize) -> (Vec<Event>, Duration) {
        let Some(state) = self.slots.get(slot).cloned() else {
            return (Vec::new(), Duration::MAX);
        };
        match (state.phase, state.dialog) {
            (Phase::User(turn), Some(dialog)) => {
                let events = self.user_says(&dialog, turn);
                self.set(slot, Phase::Bot(turn), Some(dialog));
                (events, self.pause(REPLY_SECS))
            }
            (Phase::Bot(turn), Some(dialog)) => {
                let events = self.bot_answers(&dialog, turn);
                let turns = self.scenario(&dialog).turns.len();
                if turn + 1 < turns {
                    if self.rng.u32(..100) < ABANDON_PERCENT {
                        let rest = self.end_dialog(slot, &dialog);
                        return (events, rest);
                    }
                    self.set(slot, Phase::User(turn + 1), Some(dialog));
                    return (events, self.pause(THINK_SECS));
                }
                if dialog.chained < MAX_CHAINED && self.rng.u32(..100) < CHAIN_PERCENT {
                    let lang = self.scenario(&dialog).lang;
                    let next = Dialog {
                        scenario: self.pick_scenario(dialog.bot, lang, Some(dialog.scenario)),
                        chained: dialog.chained + 1,
                        ..dialog
                    };
                    self.set(slot, Phase::User(0), Some(next));
                    return (events, self.pause(THINK_SECS));
                }
                let rest = self.end_dialog(slot, &dialog);
                (events, rest)
            }
            _ => {
                let dialog = self.start_dialog();
                let events = self.user_says(&dialog, 0);
                self.set(slot, Phase::Bot(0), Some(dialog));
                (events, self.pause(REPLY_SECS))
            }
        }
    }

    fn set(&mut self, slot: usize, phase: Phase, dialog: Option<Dialog>) {
        if let Some(state) = self.slots.get_mut(slot) {
            *state = Slot { phase, dialog };
        }
    }

    /// Picks bot, provider, user and scenario of a new dialog and marks it busy.
    fn start_dialog(&mut self) -> Dialog {
        let total: u32 = BOTS.iter().map(|b| b.weight).sum();
        let mut roll = self.rng.u32(..total.max(1));
        let mut bot = 0;
        for (i, candidate) in BOTS.iter().enumerate() {
            if roll < candidate.weight {
                bot = i;
                break;
            }
            roll -= candidate.weight;
        }
        let providers = BOTS.get(bot).map_or(&[][..], |b| b.providers);
        let provider = pick(&mut self.rng, providers);
        let user = self.pick_user(bot, provider);
        let writes = self.people.get(user).map_or(Lang::En, |p| p.writes);
        let lang = if writes != Lang::En && self.rng.u32(..100) < NATIVE_SCRIPT_PERCENT {
            writes
        } else {
            Lang::En
        };
        let scenario = self.pick_scenario(bot, lang, None);
        self.busy.insert((bot, provider, user));
        Dialog {
            bot,
            provider,
            user,
            scenario,
            order: self.rng.u32(1000..100_000).to_string(),
            chained: 0,
        }
    }

    /// Someone not in a dialog with (bot, provider) right now; sometimes a returning
    /// user. With more slots than people, a busy person is accepted.
    fn pick_user(&mut self, bot: usize, provider: &'static str) -> usize {
        if self.rng.u32(..100) < RETURNING_PERCENT
            && let Some(seen) = self.seen.get(&(bot, provider))
            && !seen.is_empty()
        {
            for _ in 0..5 {
                if let Some(&user) = seen.get(self.rng.usize(..seen.len()))
                    && !self.busy.contains(&(bot, provider, user))
                {
                    return user;
                }
            }
        }
        let people = self.people.len().max(1);
        let mut user = self.rng.usize(..people);
        for _ in 0..people {
            if !self.busy.contains(&(bot, provider, user)) {
                break;
            }
            user = (user + 1) % people;
        }
        user
    }

    /// A scenario of `bot` in `lang` (English when it has none), other than `not`
    /// when there is a choice.
    fn pick_scenario(&mut self, bot: usize, lang: Lang, not: Option<usize>) -> usize {
        let scenarios = BOTS.get(bot).map_or(&[][..], |b| b.scenarios);
        let of = |lang: Lang| -> Vec<usize> {
            (0..scenarios.len())
                .filter(|&i| scenarios.get(i).is_some_and(|s| s.lang == lang))
                .collect()
        };
        let mut candidates = of(lang);
        if candidates.is_empty() {
            candidates = of(Lang::En);
        }
        if candidates.len() > 1 {
            candidates.retain(|&i| Some(i) != not);
        }
        pick(&mut self.rng, &candidates)
    }

    /// Closes a slot's dialog; returns the rest before the slot's next dialog.
    fn end_dialog(&mut self, slot: usize, dialog: &Dialog) -> Duration {
        self.busy
            .remove(&(dialog.bot, dialog.provider, dialog.user));
        let seen = self.seen.entry((dialog.bot, dialog.provider)).or_default();
        if !seen.contains(&dialog.user) {
            seen.push(dialog.user);
        }
        self.set(slot, Phase::Start, None);
        if self.rng.u32(..100) < IDLE_PERCENT {
            self.pause(IDLE_SECS)
        } else {
            self.pause(REST_SECS)
        }
    }

    fn scenario(&self, dialog: &Dialog) -> &'static Scenario {
        static EMPTY: Scenario = Scenario {
            lang: Lang::En,
            turns: &[],
        };
        BOTS.get(dialog.bot)
            .and_then(|b| b.scenarios.get(dialog.scenario))
            .unwrap_or(&EMPTY)
    }

    fn turn(&self, dialog: &Dialog, turn: usize) -> Option<&'static Turn> {
        self.scenario(dialog).turns.get(turn)
    }

    fn user_says(&mut self, dialog: &Dialog, turn: usize) -> Vec<Event> {
        let Some(turn) = self.turn(dialog, turn) else {
            return Vec::new();
        };
        let text = pick(&mut self.rng, turn.user);
        let attachments = turn.user_attach.iter().map(|a| a.to_json(&dialog.order));
        vec![self.message(dialog, Direction::In, text, attachments.collect())]
    }

    fn bot_answers(&mut self, dialog: &Dialog, turn: usize) -> Vec<Event> {
        let Some(turn) = self.turn(dialog, turn) else {
            return Vec::new();
        };
        let user_id = names::user_id(dialog.user, dialog.provider);
        let bot = BOTS.get(dialog.bot).map_or("", |b| b.slug);
        if self.manual.contains(&(bot.to_owned(), user_id)) {
            // An operator has the dialog; the bot keeps quiet.
            return Vec::new();
        }
        let attachments = turn.bot_attach.iter().map(|a| a.to_json(&dialog.order));
        vec![self.message(dialog, Direction::Out, turn.bot, attachments.collect())]
    }

    /// A message event of `dialog`; `{name}` and `{order}` in `text` filled in.
    fn message(
        &mut self,
        dialog: &Dialog,
        direction: Direction,
        text: &str,
        attachments: Vec<Value>,
    ) -> Event {
        let bot = BOTS.get(dialog.bot).map_or("", |b| b.slug);
        let person = self.people.get(dialog.user);
        let user = person.map_or_else(
            || serde_json::json!({ "id": names::user_id(dialog.user, dialog.provider) }),
            |p| p.to_json(dialog.provider),
        );
        let first_name = person.map_or("there", |p| p.first_name);
        let text = text
            .replace("{name}", first_name)
            .replace("{order}", &dialog.order);

        self.counter += 1;
        let mut body = Map::new();
        body.insert(
            "id".into(),
            format!("{}{}", self.id_prefix, self.counter).into(),
        );
        body.insert("bot".into(), bot.into());
        body.insert("type".into(), "message".into());
        body.insert(
            "direction".into(),
            match direction {
                Direction::In => "in",
                Direction::Out => "out",
            }
            .into(),
        );
        body.insert("provider".into(), dialog.provider.into());
        body.insert("user".into(), user);
        body.insert("text".into(), text.into());
        if !attachments.is_empty() {
            body.insert("attachments".into(), Value::Array(attachments));
        }
        if direction == Direction::Out {
            body.insert("sender".into(), serde_json::json!({ "kind": "bot" }));
        }
        Event {
            bot,
            user_id: names::user_id(dialog.user, dialog.provider),
            direction,
            body,
        }
    }

    /// A random pause within `(min, max)` seconds, × pace.
    fn pause(&mut self, (min, max): (f64, f64)) -> Duration {
        let secs = min + self.rng.f64() * (max - min);
        scaled(secs, self.pace)
    }
}

/// `secs × pace` as a duration (zero when pace is 0; capped when absurdly long).
fn scaled(secs: f64, pace: f64) -> Duration {
    Duration::try_from_secs_f64(secs * pace).unwrap_or(Duration::from_secs(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn fixed_ts() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 10, 15, 0)
            .single()
            .expect("valid time")
            + chrono::Duration::milliseconds(123)
    }

    fn steps(traffic: &mut Traffic, n: usize) -> Vec<Step> {
        (0..n)
            .map(|_| traffic.next_step().expect("endless"))
            .collect()
    }

    fn is_slug(s: &str) -> bool {
        let mut chars = s.chars();
        s.len() <= 64
            && chars
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    }

    fn is_cyrillic(s: &str) -> bool {
        s.chars().any(|c| ('\u{0400}'..='\u{04FF}').contains(&c))
    }

    /// Checks one rendered event against API.md, "Event, version 1".
    fn check_event(v: &Value) {
        let obj = v.as_object().expect("an object");
        let s = |key: &str| obj.get(key).and_then(Value::as_str).unwrap_or_default();
        let id = s("id");
        assert!(!id.is_empty() && id.chars().count() <= 128, "{v}");
        assert!(is_slug(s("bot")), "{v}");
        assert!(is_slug(s("provider")), "{v}");
        let bot = BOTS
            .iter()
            .find(|b| b.slug == s("bot"))
            .expect("a known bot");
        assert!(bot.providers.contains(&s("provider")), "{v}");
        assert_eq!(s("type"), "message");
        let user = obj.get("user").and_then(Value::as_object).expect("user");
        let user_id = user.get("id").and_then(Value::as_str).expect("user.id");
        assert!((1..=256).contains(&user_id.chars().count()), "{v}");
        assert!(user.get("name").and_then(Value::as_str).is_some(), "{v}");
        if let Some(gender) = user.get("gender") {
            assert!(gender == "male" || gender == "female", "{v}");
        }
        if let Some(lang) = user.get("lang") {
            assert!(["en", "uk", "ru"].contains(&lang.as_str().unwrap_or_default()));
        }
        if let Some(avatar) = user.get("avatar") {
            assert!(
                avatar
                    .as_str()
                    .is_some_and(|a| a.starts_with("https://example.org/")),
                "{v}"
            );
        }
        match s("direction") {
            "in" => assert!(obj.get("sender").is_none(), "{v}"),
            "out" => assert_eq!(obj.get("sender"), Some(&serde_json::json!({"kind": "bot"}))),
            other => panic!("direction {other:?}"),
        }
        let text = s("text");
        assert!(!text.trim().is_empty() && text.len() <= 16 * 1024, "{v}");
        assert!(!text.contains('{'), "unfilled placeholder: {v}");
        for a in obj
            .get("attachments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match a.get("type").and_then(Value::as_str) {
                Some("file") => {
                    assert!(a["url"].as_str().is_some_and(|u| u.starts_with("https://")));
                    assert!(a["name"].is_string() && a["mime"].is_string() && a["size"].is_u64());
                }
                Some("card") => {
                    assert!(a["title"].as_str().is_some_and(|t| !t.contains('{')));
                    assert!(a["buttons"].as_array().is_some_and(|b| !b.is_empty()));
                    for b in a["buttons"].as_array().into_iter().flatten() {
                        assert!(b["title"].is_string() && b["payload"].is_string());
                        assert!(!b["payload"].as_str().unwrap_or("{").contains('{'));
                    }
                }
                other => panic!("attachment type {other:?}"),
            }
        }
        let ts = s("ts");
        // 2026-11-26T10:15:00.123Z: RFC 3339, UTC, milliseconds.
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(
            ts.ends_with('Z') && ts.as_bytes().get(19) == Some(&b'.'),
            "{ts}"
        );
        DateTime::parse_from_rfc3339(ts).expect("RFC 3339");
        assert!(serde_json::to_vec(v).expect("serialises").len() <= 64 * 1024);
    }

    #[test]
    fn events_have_the_api_shape() {
        let mut traffic = Traffic::new(7, 12, 1.0, "demo-7-".into());
        let mut bots = HashSet::new();
        let mut pairs = HashSet::new();
        let (mut ins, mut outs, mut cards, mut files) = (0, 0, 0, 0);
        for step in steps(&mut traffic, 5_000) {
            for event in &step.events {
                for ts in [fixed_ts(), Utc::now()] {
                    check_event(&event.to_json(ts));
                }
                let v = event.to_json(fixed_ts());
                assert_eq!(v["bot"], event.bot);
                assert_eq!(v["user"]["id"], event.user_id.as_str());
                assert_eq!(v["ts"], "2026-11-26T10:15:00.123Z");
                bots.insert(event.bot);
                pairs.insert((event.bot, v["provider"].as_str().unwrap_or("").to_owned()));
                match event.direction {
                    Direction::In => ins += 1,
                    Direction::Out => outs += 1,
                }
                for a in v["attachments"].as_array().into_iter().flatten() {
                    match a["type"].as_str() {
                        Some("card") => cards += 1,
                        _ => files += 1,
                    }
                }
            }
        }
        assert_eq!(bots.len(), BOTS.len(), "every bot talks");
        let expected: usize = BOTS.iter().map(|b| b.providers.len()).sum();
        assert_eq!(pairs.len(), expected, "every provider of every bot is used");
        assert!(ins > 1_000 && outs > 1_000, "in {ins}, out {outs}");
        assert!(cards > 50 && files > 50, "cards {cards}, files {files}");
    }

    #[test]
    fn ids_are_unique_over_a_long_run() {
        let mut traffic = Traffic::new(1, 50, 1.0, "demo-1-".into());
        let mut ids = HashSet::new();
        let mut total = 0;
        for step in steps(&mut traffic, 100_000) {
            for event in step.events {
                total += 1;
                let id = event.to_json(fixed_ts())["id"]
                    .as_str()
                    .expect("id")
                    .to_owned();
                assert!(id.starts_with("demo-1-"));
                assert!(ids.insert(id), "duplicate id");
            }
        }
        assert_eq!(ids.len(), total);
    }

    #[test]
    fn same_seed_same_traffic() {
        let render = |seed: u64| -> Vec<(Duration, usize, Vec<Value>)> {
            let mut traffic = Traffic::new(seed, 12, 1.0, format!("demo-{seed}-"));
            steps(&mut traffic, 3_000)
                .into_iter()
                .map(|s| {
                    let events = s.events.iter().map(|e| e.to_json(fixed_ts())).collect();
                    (s.at, s.slot, events)
                })
                .collect()
        };
        assert_eq!(render(42), render(42));
        let other: Vec<_> = render(43).into_iter().map(|(_, _, e)| e).collect();
        let this: Vec<_> = render(42).into_iter().map(|(_, _, e)| e).collect();
        assert_ne!(this, other, "another seed, other traffic");
    }

    #[test]
    fn cyrillic_names_and_texts_appear() {
        let mut traffic = Traffic::new(3, 12, 1.0, "x-".into());
        let (mut names, mut texts) = (0, 0);
        for step in steps(&mut traffic, 2_000) {
            for event in step.events {
                let v = event.to_json(fixed_ts());
                names += usize::from(is_cyrillic(v["user"]["name"].as_str().unwrap_or("")));
                texts += usize::from(is_cyrillic(v["text"].as_str().unwrap_or("")));
            }
        }
        assert!(names > 100, "Cyrillic names: {names}");
        assert!(texts > 100, "Cyrillic texts: {texts}");
    }

    #[test]
    fn top_messages_repeat() {
        let mut traffic = Traffic::new(5, 12, 1.0, "x-".into());
        let mut counts: HashMap<String, usize> = HashMap::new();
        for step in steps(&mut traffic, 4_000) {
            for event in step.events.iter().filter(|e| e.direction == Direction::In) {
                let v = event.to_json(fixed_ts());
                let text = v["text"].as_str().unwrap_or("").trim().to_lowercase();
                *counts.entry(text).or_default() += 1;
            }
        }
        for common in ["where is my order?", "привіт", "price", "/start"] {
            assert!(
                counts.get(common).copied().unwrap_or(0) >= 20,
                "{common}: {counts:?}"
            );
        }
    }

    #[test]
    fn pace_scales_pauses() {
        let mut fast = Traffic::new(9, 12, 0.0, "x-".into());
        assert!(steps(&mut fast, 1_000).iter().all(|s| s.at.is_zero()));

        // At pace 1, per slot: an answer follows the user's message after 0.3–2 s,
        // the user's next message follows an answer after ≥ 1 s.
        let mut real = Traffic::new(9, 12, 1.0, "x-".into());
        let all = steps(&mut real, 3_000);
        for pair in all.windows(2) {
            assert!(pair[0].at <= pair[1].at, "steps come in time order");
        }
        let mut last: HashMap<usize, (Duration, Direction)> = HashMap::new();
        let mut answers = 0;
        for step in &all {
            let direction = step.events[0].direction;
            if let Some(&(at, Direction::In)) = last.get(&step.slot)
                && direction == Direction::Out
            {
                let gap = step.at - at;
                assert!(
                    gap >= Duration::from_millis(300) && gap <= Duration::from_secs(2),
                    "{gap:?}"
                );
                answers += 1;
            }
            if let Some(&(at, Direction::Out)) = last.get(&step.slot) {
                assert!(step.at - at >= Duration::from_secs(1));
            }
            last.insert(step.slot, (step.at, direction));
        }
        assert!(answers > 1_000);
        let span = all.last().map(|s| s.at).unwrap_or_default();
        assert!(span > Duration::from_secs(600), "realistic pace: {span:?}");
    }

    #[test]
    fn sessions_split_and_users_return() {
        let mut traffic = Traffic::new(11, 12, 1.0, "x-".into());
        // Per (bot, user id): virtual times of inbound messages.
        let mut times: HashMap<(&str, String), Vec<Duration>> = HashMap::new();
        for step in steps(&mut traffic, 20_000) {
            for event in step.events {
                if event.direction == Direction::In {
                    times
                        .entry((event.bot, event.user_id.clone()))
                        .or_default()
                        .push(step.at);
                }
            }
        }
        // A user "returns" when two of their messages to one bot are far apart
        // (more than a dialog's longest think pause).
        let returning = times
            .values()
            .filter(|t| t.windows(2).any(|w| w[1] - w[0] > Duration::from_secs(60)))
            .count();
        assert!(returning > 20, "returning users: {returning}");
        assert!(times.len() > 200, "users: {}", times.len());
    }

    #[test]
    fn no_answers_in_manual_mode() {
        // One slot, so the same dialog goes on for a while.
        let mut traffic = Traffic::new(13, 1, 1.0, "x-".into());
        let first = traffic.next_step().expect("endless").events[0].clone();
        assert_eq!(first.direction, Direction::In);
        let is_theirs = |e: &Event| e.bot == first.bot && e.user_id == first.user_id;
        // An operator takes the dialog as soon as the user writes.
        traffic.set_manual(first.bot, &first.user_id, true);
        let theirs: Vec<Event> = steps(&mut traffic, 200)
            .into_iter()
            .flat_map(|s| s.events)
            .filter(|e| is_theirs(e))
            .collect();
        assert!(!theirs.is_empty(), "the user goes on writing");
        assert!(theirs.iter().all(|e| e.direction == Direction::In));
        // Back to auto: the bot answers its users again.
        traffic.set_manual(first.bot, &first.user_id, false);
        assert!(traffic.manual.is_empty());
        let outs = steps(&mut traffic, 200)
            .into_iter()
            .flat_map(|s| s.events)
            .filter(|e| e.direction == Direction::Out)
            .count();
        assert!(outs > 50);
    }

    #[test]
    fn a_single_slot_and_odd_pace_work() {
        for pace in [f64::NAN, -1.0, f64::INFINITY, 1e300] {
            let mut traffic = Traffic::new(1, 0, pace, "x-".into());
            for step in steps(&mut traffic, 200) {
                assert_eq!(step.slot, 0);
                assert!(!step.events.is_empty());
            }
        }
    }
}
