//! One event trace, two stores: the same seeded trace — several bots, hundreds of users,
//! messages in and out over many days and hours, some late, some sent twice (one id
//! counts once, with what was sent first), profile updates, odd user ids, texts that
//! normalise alike, settings changed mid-way (zones, session timeouts: recounts), mode
//! switches and audience edits — goes into a server on the embedded store and one on
//! Redis in the same batches. Then every figure endpoint's answer of one must equal the
//! other's, and both must show exactly what was acknowledged: each message once, none
//! missing.
//!
//! What is left out of the comparison, and why:
//! - a history page's `next`: the cursor names a position in the log (a redb sequence
//!   number, a Redis stream id), which differ by design; both are followed to the end;
//! - the `id` of a message sent without one: the server makes it (a UUID v7, from its
//!   clock); such messages are compared by everything else and counted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use botwatch_tests::{ADMIN_TOKEN, Backend, TestServer};
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::{Rng, long, report, segment};

const BOTS: [&str; 3] = ["shop", "clinic", "bank-ua"];
const PROVIDERS: [&str; 4] = ["telegram", "web", "whatsapp", "viber"];
/// What users write, most often the first: variants of one question that normalise to
/// the same top message (case, spaces, full-width letters, combining accents), several
/// scripts, emoji, control characters. None holds a hand-off phrase.
const ASKED: [&str; 24] = [
    "Where is my order?",
    "hi",
    "Привіт",
    "thanks",
    "  where IS my   order? ",
    "WHERE IS MY ORDER?",
    "ｈｉ",
    "price?",
    "Дякую!",
    "café",
    "cafe\u{301}",
    "Когда доставка?",
    "👍",
    "cancel my order",
    "Can I pay by card?",
    "لا أفهم",
    "日本語で大丈夫ですか",
    "ﬁle not found",
    "tab\there",
    "two\nlines",
    "nul \u{0} inside",
    "<script>alert(1)</script>",
    "=SUM(A1:A9)",
    "ok",
];
const ANSWERED: [&str; 6] = [
    "On its way",
    "Your order ships tomorrow",
    "Hello! How can I help?",
    "Готово",
    "You're welcome",
    "See you",
];
const NAMES: [&str; 8] = [
    "Олена К.",
    "John Smith",
    "Марія",
    "Zoë",
    "李雷",
    "O'Brien",
    "Ahmed",
    "  spaced  ",
];
/// The trace's first day (00:00 UTC).
const START: &str = "2026-08-01T00:00:00Z";

/// One thing done to both servers, in the same order.
enum Step {
    /// An ingest body (a JSON array).
    Batch(String),
    Settings(&'static str, Value),
    Label(&'static str, &'static str, &'static str),
    RenameTag(&'static str, &'static str, &'static str),
    DeleteRole(&'static str, &'static str),
    Patch(&'static str, String, Value),
    Bulk(&'static str, Value),
    Mode(&'static str, String, &'static str),
    /// Waits until the server counts these messages (in, out) per bot: what people do
    /// next (a bulk edit by filter) is decided on the figures as they stand.
    Settle(BTreeMap<String, (u64, u64)>),
}

/// What the figures must show for one user: the ids of the messages that count (the
/// first delivery of each) and how many were sent without an id.
#[derive(Default)]
struct Expected {
    ids: BTreeSet<String>,
    made: u64,
}

struct Trace {
    steps: Vec<Step>,
    /// Per bot and user.
    expected: BTreeMap<(String, String), Expected>,
    /// Per bot: messages in and out that count.
    totals: BTreeMap<String, (u64, u64)>,
    /// Per bot: every user the trace mentions (messages or profile updates).
    users: BTreeMap<String, BTreeSet<String>>,
    /// Per bot: its time zone at the end.
    zones: BTreeMap<String, String>,
    /// Events sent, retries included.
    sent: u64,
    days: i64,
}

struct Shape {
    events: usize,
    users_per_bot: usize,
    days: i64,
    max_batch: u64,
}

fn user_id(n: usize) -> String {
    match n % 9 {
        0 => format!("{n}"),
        1 => format!("tg-{n}"),
        2 => format!("Олена {n}"),
        3 => format!("a/b?c#d&e={n}"),
        4 => format!("{}{n}", "x".repeat(200)),
        5 => format!("🙂{n}"),
        6 => format!("user.{n}@example.org"),
        7 => format!("100%25 {n}+"),
        _ => format!("{n}.{n}"),
    }
}

fn ts_text(rng: &mut Rng, ms: i64) -> String {
    let t = Utc.timestamp_millis_opt(ms).single().expect("a time");
    match rng.below(10) {
        0 => t
            .with_timezone(&chrono::FixedOffset::east_opt(3 * 3600).expect("offset"))
            .to_rfc3339_opts(SecondsFormat::Millis, false),
        1 => t
            .with_timezone(&chrono::FixedOffset::west_opt(5 * 3600 + 1800).expect("offset"))
            .to_rfc3339_opts(SecondsFormat::Secs, false),
        2 => format!("{}456Z", t.format("%Y-%m-%dT%H:%M:%S%.3f")),
        _ => t.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

fn attachment(rng: &mut Rng, n: u64) -> Value {
    match rng.below(3) {
        0 => json!({"type": "file", "url": format!("https://files.example.org/{n}.pdf"),
                    "name": "invoice.pdf", "mime": "application/pdf", "size": n}),
        1 => json!({"type": "image", "url": format!("https://files.example.org/{n}.jpg")}),
        _ => json!({"type": "card", "title": format!("Order #{n}"), "subtitle": "Shipped",
                    "buttons": [{"title": "Track", "payload": format!("track:{n}")}]}),
    }
}

/// Makes the trace for `seed`.
fn generate(seed: u64, shape: &Shape) -> Trace {
    let mut rng = Rng::new(seed);
    let start = DateTime::parse_from_rfc3339(START)
        .expect("start")
        .timestamp_millis();
    let span_ms = shape.days * 86_400_000;
    // Each user's provider and name, fixed per bot (a few events say otherwise).
    let people: Vec<Vec<(String, &str, Option<&str>)>> = BOTS
        .iter()
        .enumerate()
        .map(|(b, _)| {
            (0..shape.users_per_bot)
                .map(|n| {
                    let id = user_id(n * 3 + b);
                    let provider = *rng.pick(&PROVIDERS);
                    let name = rng.chance(0.8).then(|| *rng.pick(&NAMES));
                    (id, provider, name)
                })
                .collect()
        })
        .collect();

    // Conversations: a user writes, the bot answers, seconds to half an hour apart
    // (so sessions split), at any hour, daytime more often.
    let mut events: Vec<(i64, Value)> = Vec::with_capacity(shape.events);
    let mut n: u64 = 0;
    while events.len() < shape.events {
        let b = rng.skewed(BOTS.len());
        let bot = BOTS[b];
        let (user, provider, name) = &people[b][rng.skewed(shape.users_per_bot)];
        let day = rng.below(shape.days as u64) as i64;
        let hour = if rng.chance(0.7) {
            rng.within(8..=21)
        } else {
            rng.below(24)
        } as i64;
        let mut ms = start + day * 86_400_000 + hour * 3_600_000 + rng.below(3_600_000) as i64;
        for k in 0..rng.within(1..=8) {
            n += 1;
            let inbound = k % 2 == 0 || rng.chance(0.2);
            let provider = if rng.chance(0.02) {
                *rng.pick(&PROVIDERS)
            } else {
                *provider
            };
            let mut e = json!({
                "id": format!("c-{n}"), "bot": bot, "type": "message",
                "direction": if inbound { "in" } else { "out" }, "provider": provider,
                "user": {"id": user}, "ts": ts_text(&mut rng, ms),
            });
            if inbound {
                let text = if rng.chance(0.001) {
                    "я".repeat(8 * 1024) // exactly 16 KiB, the limit
                } else {
                    ASKED[rng.skewed(ASKED.len())].to_owned()
                };
                e["text"] = json!(text);
                if let Some(name) = name {
                    e["user"]["name"] = json!(name);
                }
            } else {
                e["text"] = json!(ANSWERED[rng.skewed(ANSWERED.len())]);
                e["sender"] = if rng.chance(0.1) {
                    json!({"kind": "operator", "id": "op-7"})
                } else {
                    json!({"kind": "bot"})
                };
            }
            if rng.chance(0.05) {
                e["attachments"] = json!([attachment(&mut rng, n)]);
                if rng.chance(0.3) {
                    e.as_object_mut().expect("object").remove("text");
                }
            }
            if rng.chance(0.005) {
                e.as_object_mut().expect("object").remove("id");
            }
            events.push((ms, e));
            let longest = if rng.chance(0.1) { 3_600_000 } else { 600_000 };
            ms += rng.within(5_000..=longest) as i64;
            ms = ms.min(start + span_ms - 1);
        }
        if rng.chance(0.02) {
            // A profile update without a message.
            let mut u = json!({"id": user, "name": *rng.pick(&NAMES)});
            if rng.chance(0.5) {
                u["avatar"] = json!(format!("https://cdn.example.org/a/{n}.jpg"));
                u["gender"] = json!(*rng.pick(&["female", "male", "x"]));
                u["lang"] = json!(*rng.pick(&["uk", "en", "pt-BR"]));
            }
            events.push((
                ms,
                json!({"id": format!("p-{n}"), "bot": bot, "type": "user",
                       "provider": provider, "user": u, "ts": ts_text(&mut rng, ms)}),
            ));
        }
    }
    // In time order, as bots send; then some arrive late (hours to days).
    events.sort_by_key(|(ms, _)| *ms);
    let mut order: Vec<Value> = events.into_iter().map(|(_, e)| e).collect();
    let len = order.len();
    for i in 0..len {
        if rng.chance(0.1) {
            let to = (i + rng.within(1..=2000) as usize).min(len - 1);
            order.swap(i, to);
        }
    }

    // Batches, some shuffled; retries of events already sent (a few with another
    // text: the first delivery counts), and a few twice in one batch.
    let mut sent_before: Vec<Value> = Vec::new();
    let mut batches: Vec<Vec<Value>> = Vec::new();
    let mut rest = order.into_iter().peekable();
    while rest.peek().is_some() {
        let size = rng.within(1..=shape.max_batch) as usize;
        let mut batch: Vec<Value> = rest.by_ref().take(size).collect();
        let fresh = batch.len();
        for i in 0..fresh {
            if !sent_before.is_empty() && rng.chance(0.03) {
                let mut again = rng.pick(&sent_before).clone();
                if rng.chance(0.1) && again["type"] == "message" {
                    again["text"] = json!("sent again, changed");
                }
                batch.push(again);
            }
            if rng.chance(0.002) && batch[i].get("id").is_some() {
                batch.push(batch[i].clone());
            }
        }
        if rng.chance(0.3) {
            for i in (1..batch.len()).rev() {
                batch.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        sent_before.extend(batch.iter().filter(|e| e.get("id").is_some()).cloned());
        batches.push(batch);
    }

    // What counts: each id's first delivery.
    let mut trace = Trace {
        steps: Vec::new(),
        expected: BTreeMap::new(),
        totals: BTreeMap::new(),
        users: BTreeMap::new(),
        zones: BTreeMap::new(),
        sent: 0,
        days: shape.days,
    };
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for e in batches.iter().flatten() {
        trace.sent += 1;
        let bot = e["bot"].as_str().expect("bot").to_owned();
        let user = e["user"]["id"].as_str().expect("user").to_owned();
        trace
            .users
            .entry(bot.clone())
            .or_default()
            .insert(user.clone());
        let id = e.get("id").and_then(Value::as_str);
        if let Some(id) = id
            && !seen.insert((bot.clone(), id.to_owned()))
        {
            continue;
        }
        if e["type"] != "message" {
            continue;
        }
        let x = trace.expected.entry((bot.clone(), user)).or_default();
        match id {
            Some(id) => {
                x.ids.insert(id.to_owned());
            }
            None => x.made += 1,
        }
        let t = trace.totals.entry(bot).or_default();
        match e["direction"].as_str() {
            Some("in") => t.0 += 1,
            _ => t.1 += 1,
        }
    }

    // The steps: the batches, with changes made by people in between.
    let mut known: Vec<BTreeSet<String>> = vec![BTreeSet::new(); BOTS.len()];
    let total = batches.len();
    let mut so_far: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut counted: BTreeSet<(String, String)> = BTreeSet::new();
    let mut zones: BTreeMap<String, String> = BOTS
        .iter()
        .map(|b| ((*b).to_owned(), "UTC".to_owned()))
        .collect();
    for (i, batch) in batches.into_iter().enumerate() {
        for e in &batch {
            if e["type"] != "message" {
                continue;
            }
            let b = BOTS.iter().position(|b| e["bot"] == *b).expect("a bot");
            known[b].insert(e["user"]["id"].as_str().expect("user").to_owned());
            if let Some(id) = e.get("id").and_then(Value::as_str)
                && !counted.insert((BOTS[b].to_owned(), id.to_owned()))
            {
                continue;
            }
            let t = so_far.entry(BOTS[b].to_owned()).or_default();
            match e["direction"].as_str() {
                Some("in") => t.0 += 1,
                _ => t.1 += 1,
            }
        }
        trace
            .steps
            .push(Step::Batch(Value::Array(batch).to_string()));
        let at = |fraction: f64| i == (total as f64 * fraction) as usize;
        let some = |rng: &mut Rng, b: usize, n: usize| -> Vec<String> {
            let users: Vec<&String> = known[b].iter().collect();
            (0..n)
                .map(|_| (*rng.pick(&users)).clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        if at(0.25) {
            for (bot, settings) in [
                ("shop", json!({"timezone": "Europe/Kyiv"})),
                (
                    "clinic",
                    json!({"timezone": "Europe/Berlin", "session_timeout_secs": 600}),
                ),
            ] {
                trace.steps.push(Step::Settings(bot, settings));
            }
        }
        if at(0.4) {
            trace.steps.push(Step::Settle(so_far.clone()));
            for bot in BOTS {
                for (of, name) in [
                    ("tags", "VIP"),
                    ("tags", "Late payer"),
                    ("roles", "Admin"),
                    ("roles", "Staff"),
                ] {
                    trace.steps.push(Step::Label(bot, of, name));
                }
            }
            for (b, bot) in BOTS.iter().enumerate() {
                for user in some(&mut rng, b, 5) {
                    trace.steps.push(Step::Mode(bot, user, "manual"));
                }
                for (k, user) in some(&mut rng, b, 12).into_iter().enumerate() {
                    let patch = match k % 4 {
                        0 => json!({"tags": ["VIP"], "subscriber": true}),
                        1 => json!({"role": "Admin", "name": "Renamed by an operator"}),
                        2 => {
                            json!({"tags": ["VIP", "Late payer"], "fields": {"phone": "+380 44 000"}})
                        }
                        _ => json!({"role": "Staff", "gender": "female", "subscriber": false}),
                    };
                    trace.steps.push(Step::Patch(bot, user, patch));
                }
            }
        }
        if at(0.55) {
            trace.steps.push(Step::Settings(
                "bank-ua",
                json!({"timezone": "America/New_York", "session_timeout_secs": 3600}),
            ));
            trace.steps.push(Step::Settings(
                "shop",
                json!({"timezone": "Asia/Kolkata", "session_timeout_secs": 900}),
            ));
        }
        if at(0.7) {
            trace.steps.push(Step::Settle(so_far.clone()));
            for (b, bot) in BOTS.iter().enumerate() {
                trace.steps.push(Step::Bulk(
                    bot,
                    json!({"filter": {"provider": "web"}, "add_tags": ["Late payer"]}),
                ));
                trace.steps.push(Step::Bulk(
                    bot,
                    json!({"ids": some(&mut rng, b, 6), "set": {"role": "Staff", "subscriber": true},
                           "remove_tags": ["VIP"]}),
                ));
                for user in some(&mut rng, b, 3) {
                    trace.steps.push(Step::Mode(bot, user, "manual"));
                }
            }
        }
        if at(0.85) {
            trace.steps.push(Step::Settle(so_far.clone()));
            for bot in BOTS {
                trace.steps.push(Step::RenameTag(bot, "VIP", "Gold"));
                trace.steps.push(Step::DeleteRole(bot, "Admin"));
            }
            trace.steps.push(Step::Bulk(
                "clinic",
                json!({"filter": {"tag": "Gold"}, "set": {"auto_mode": false}}),
            ));
        }
    }
    for step in &trace.steps {
        if let Step::Settings(bot, s) = step
            && let Some(tz) = s["timezone"].as_str()
        {
            zones.insert((*bot).to_owned(), tz.to_owned());
        }
    }
    trace.zones = zones;
    trace
}

/// Waits until `s` knows `user` of `bot` (what was ingested is applied a moment later).
async fn until_known(s: &TestServer, bot: &str, user: &str) {
    let path = format!("/api/v1/bots/{bot}/dialogs/{}", segment(user));
    let started = Instant::now();
    loop {
        let (status, body) = s.get(&path).await;
        if status == 200 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{path}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Does one step to one server; the answer, to compare with the other's.
async fn apply(s: &TestServer, step: &Step) -> (u16, Value) {
    let ok = |what: &str, (status, body): (u16, Value)| {
        assert!((200..300).contains(&status), "{what}: {status} {body}");
        (status, body)
    };
    match step {
        Step::Batch(body) => {
            let (status, answer) = s.ingest(body.clone()).await;
            assert_eq!(status, 202, "{answer}");
            (status, answer)
        }
        Step::Settings(bot, settings) => ok(
            "settings",
            s.put(&format!("/api/v1/bots/{bot}/settings"), settings.clone())
                .await,
        ),
        Step::Label(bot, of, name) => ok(
            "label",
            s.post(&format!("/api/v1/bots/{bot}/{of}"), json!({"name": name}))
                .await,
        ),
        Step::RenameTag(bot, from, to) => ok(
            "rename",
            s.patch(
                &format!("/api/v1/bots/{bot}/tags/{}", segment(from)),
                json!({"name": to}),
            )
            .await,
        ),
        Step::DeleteRole(bot, name) => ok(
            "delete",
            s.delete(&format!("/api/v1/bots/{bot}/roles/{}", segment(name)))
                .await,
        ),
        Step::Patch(bot, user, patch) => {
            until_known(s, bot, user).await;
            ok(
                "patch",
                s.patch(
                    &format!("/api/v1/bots/{bot}/users/{}", segment(user)),
                    patch.clone(),
                )
                .await,
            )
        }
        Step::Bulk(bot, body) => ok(
            "bulk",
            s.post(&format!("/api/v1/bots/{bot}/users/bulk"), body.clone())
                .await,
        ),
        Step::Settle(totals) => {
            until_counted(s, totals).await;
            (200, Value::Null)
        }
        Step::Mode(bot, user, mode) => {
            until_known(s, bot, user).await;
            ok(
                "mode",
                s.put(
                    &format!("/api/v1/bots/{bot}/dialogs/{}/mode", segment(user)),
                    json!({"mode": mode}),
                )
                .await,
            )
        }
    }
}

/// The messages in and out `s` counts per bot, over all time (a week's buckets over
/// the years 1970 to 9999 would be too many: the trace's months, a day either side).
async fn totals(s: &TestServer, bot: &str) -> (u64, u64, Value) {
    let start = DateTime::parse_from_rfc3339(START).expect("start");
    let from = start.date_naive() - chrono::Duration::days(2);
    let to = from + chrono::Duration::days(5 * 366 - 1);
    let (_, stats) = s
        .get(&format!(
            "/api/v1/bots/{bot}/stats?from={from}&to={to}&bucket=week"
        ))
        .await;
    let sum = |name: &str| -> u64 {
        stats["buckets"]
            .as_array()
            .map(|b| b.iter().filter_map(|x| x[name].as_u64()).sum())
            .unwrap_or(0)
    };
    (sum("messages_in"), sum("messages_out"), stats["tz"].clone())
}

/// Waits until `s` counts `want` (in, out) messages of each bot.
async fn until_counted(s: &TestServer, want: &BTreeMap<String, (u64, u64)>) {
    let started = Instant::now();
    loop {
        let mut seen = Vec::new();
        for (bot, want) in want {
            let (got_in, got_out, _) = totals(s, bot).await;
            if (got_in, got_out) != *want {
                seen.push(format!("{bot}: {got_in} in, {got_out} out of {want:?}"));
            }
        }
        if seen.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?} never counted what was ingested: {seen:?}",
            s.backend
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn date(ms: i64) -> NaiveDate {
    Utc.timestamp_millis_opt(ms)
        .single()
        .expect("a time")
        .date_naive()
}

/// Waits until `s` counts every message of the trace, in every bot's final zone, with
/// no recount running.
async fn until_applied(s: &TestServer, trace: &Trace) {
    let started = Instant::now();
    let within = Duration::from_secs(if long() { 300 } else { 60 });
    loop {
        let mut seen = Vec::new();
        if !s.metrics().await.contains("botwatch_recounts_running 0") {
            seen.push("a recount is running".to_owned());
        }
        for (bot, want) in &trace.totals {
            let (got_in, got_out, tz) = totals(s, bot).await;
            if (got_in, got_out) != *want || tz != trace.zones[bot.as_str()] {
                seen.push(format!(
                    "{bot}: {got_in} in, {got_out} out, {tz} of {want:?}"
                ));
            }
        }
        if seen.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{:?} never applied the trace: {seen:?}",
            s.backend
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET with the admin token: status and body (JSON, or the text when it is not JSON).
async fn get(s: &TestServer, path: &str) -> (u16, Value) {
    let response = s
        .client
        .get(s.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Every page of a listing whose answer has `items` and a data-derived `next`
/// (appended as `cursor`).
async fn pages(s: &TestServer, path: &str, out: &mut BTreeMap<String, Value>) {
    let mut cursor: Option<String> = None;
    let join = if path.contains('?') { '&' } else { '?' };
    for page in 0.. {
        let url = match &cursor {
            Some(c) => format!("{path}{join}cursor={c}"),
            None => path.to_owned(),
        };
        let (status, body) = get(s, &url).await;
        assert_eq!(status, 200, "{url}: {body}");
        cursor = body["next"].as_str().map(str::to_owned);
        out.insert(format!("{path} #{page}"), body);
        if cursor.is_none() {
            return;
        }
    }
}

/// One dialog's whole history, newest first, following this server's own cursors; the
/// cursors are left out (they name log positions), ids the server made are masked.
async fn history(s: &TestServer, bot: &str, user: &str) -> Vec<Value> {
    let base = format!(
        "/api/v1/bots/{bot}/dialogs/{}/messages?limit=200",
        segment(user)
    );
    let mut items = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let url = match &before {
            Some(b) => format!("{base}&before={}", segment(b)),
            None => base.clone(),
        };
        let (status, body) = get(s, &url).await;
        assert_eq!(status, 200, "{url}: {body}");
        items.extend(body["items"].as_array().expect("items").iter().cloned());
        match body["next"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// Every figure the server answers for the trace, by request.
async fn figures(s: &TestServer, trace: &Trace, from: NaiveDate, to: NaiveDate) -> Answers {
    let mut out = BTreeMap::new();
    let mut paths = vec!["/api/v1/bots".to_owned()];
    for bot in BOTS {
        let b = format!("/api/v1/bots/{bot}");
        for tail in [
            "/settings",
            "/roles",
            "/tags",
            "/broadcasts",
            "/integrations",
        ] {
            paths.push(format!("{b}{tail}"));
        }
        paths.push(format!("{b}/stats?from={from}&to={to}&bucket=week"));
        let mut day = from;
        while day <= to {
            let end = (day + chrono::Duration::days(30)).min(to);
            paths.push(format!("{b}/stats?from={day}&to={end}&bucket=hour"));
            paths.push(format!("{b}/stats?from={day}&to={end}&bucket=day"));
            paths.push(format!("{b}/top-messages?from={day}&to={end}&limit=100"));
            day = end + chrono::Duration::days(1);
        }
        paths.push(format!("{b}/top-messages?from={from}&to={to}&limit=100"));
        for filter in [
            "",
            "?provider=web",
            "?provider=telegram&provider=viber&tag=Late%20payer",
            "?tag=Gold",
            "?role=Staff",
            "?subscriber=true",
            "?mode=manual",
            "?search=%D0%BE%D0%BB%D0%B5%D0%BD%D0%B0", // "олена"
        ] {
            paths.push(format!("{b}/users.csv{filter}"));
        }
    }
    let fetched: Vec<(String, (u16, Value))> = futures_util::stream::iter(paths)
        .map(|p| async move {
            let answer = get(s, &p).await;
            (p, answer)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (path, (status, body)) in fetched {
        out.insert(path, json!({"status": status, "body": body}));
    }
    for bot in BOTS {
        let b = format!("/api/v1/bots/{bot}");
        for sort in ["last", "messages", "sessions", "name"] {
            for order in ["desc", "asc"] {
                pages(
                    s,
                    &format!("{b}/users?sort={sort}&order={order}&limit=200"),
                    &mut out,
                )
                .await;
            }
        }
        for filter in [
            "provider=web",
            "provider=telegram&provider=viber&tag=Late%20payer",
            "tag=Gold",
            "role=Staff",
            "subscriber=true",
            "mode=manual",
            "search=%D0%BE%D0%BB%D0%B5%D0%BD%D0%B0",
            "search=a%2Fb",
        ] {
            pages(s, &format!("{b}/users?{filter}&limit=50"), &mut out).await;
        }
        for mode in ["", "&mode=auto", "&mode=manual"] {
            pages(s, &format!("{b}/dialogs?limit=200{mode}"), &mut out).await;
        }
    }
    // Per user: the profile, the dialog and its whole history.
    let users: Vec<(&str, &String)> = trace
        .users
        .iter()
        .flat_map(|(bot, users)| users.iter().map(move |u| (bot.as_str(), u)))
        .collect();
    let per_user: Vec<(String, Value)> = futures_util::stream::iter(users)
        .map(|(bot, user)| async move {
            let u = segment(user);
            let (ps, profile) = get(s, &format!("/api/v1/bots/{bot}/users/{u}")).await;
            let (ds, dialog) = get(s, &format!("/api/v1/bots/{bot}/dialogs/{u}")).await;
            let history = if ds == 200 {
                history(s, bot, user).await
            } else {
                Vec::new()
            };
            (
                format!("{bot} user {user:?}"),
                json!({"profile": [ps, profile], "dialog": [ds, dialog], "history": history}),
            )
        })
        .buffer_unordered(8)
        .collect()
        .await;
    out.extend(per_user);
    Answers(out)
}

struct Answers(BTreeMap<String, Value>);

impl Answers {
    /// Server-made message ids (messages sent without one) masked.
    fn masked(mut self) -> Answers {
        for (path, answer) in self.0.iter_mut() {
            if path.contains(" user ")
                && let Some(items) = answer["history"].as_array_mut()
            {
                for item in items {
                    if !item["id"].as_str().is_some_and(|id| id.starts_with("c-")) {
                        item["id"] = json!("(made by the server)");
                    }
                }
            }
        }
        self
    }
}

/// What `answers` show of the trace against what was acknowledged: how many messages
/// were lost and doubled, and the first few named.
fn recount(trace: &Trace, answers: &Answers) -> (u64, u64, Vec<String>) {
    let (mut lost, mut doubled, mut named) = (0, 0, Vec::new());
    for ((bot, user), want) in &trace.expected {
        let answer = &answers.0[&format!("{bot} user {user:?}")];
        let history = answer["history"].as_array().expect("history");
        let ids: Vec<&str> = history.iter().filter_map(|m| m["id"].as_str()).collect();
        let distinct: BTreeSet<&str> = ids.iter().copied().collect();
        let ours: BTreeSet<&str> = distinct
            .iter()
            .copied()
            .filter(|id| id.starts_with("c-"))
            .collect();
        let made = (distinct.len() - ours.len()) as u64;
        let want_ids: BTreeSet<&str> = want.ids.iter().map(String::as_str).collect();
        let counted = answer["dialog"][1]["messages"].as_u64().unwrap_or(0);
        let expected = want.ids.len() as u64 + want.made;
        if ours != want_ids
            || made != want.made
            || ids.len() != distinct.len()
            || counted != expected
        {
            named.push(format!(
                "{bot} {user:?}: missing {:?}, extra {:?}, {made} made of {}, {} shown, {counted} counted of {expected}",
                want_ids.difference(&ours).collect::<Vec<_>>(),
                ours.difference(&want_ids).collect::<Vec<_>>(),
                want.made,
                ids.len()
            ));
        }
        lost += want_ids.difference(&ours).count() as u64 + want.made.saturating_sub(made);
        doubled += (ids.len() - distinct.len()) as u64
            + ours.difference(&want_ids).count() as u64
            + made.saturating_sub(want.made);
        lost += expected.saturating_sub(counted);
        doubled += counted.saturating_sub(expected);
    }
    named.truncate(10);
    (lost, doubled, named)
}

/// Names the first differences of two sets of answers (at most 10).
fn differences(a: &Answers, b: &Answers) -> Vec<String> {
    let keys: BTreeSet<&String> = a.0.keys().chain(b.0.keys()).collect();
    keys.into_iter()
        .filter(|k| a.0.get(*k) != b.0.get(*k))
        .take(10)
        .map(|k| {
            let show = |v: Option<&Value>| {
                let s = v.map(Value::to_string).unwrap_or_default();
                s.chars().take(1500).collect::<String>()
            };
            format!(
                "{k}:\n  embedded: {}\n  redis:    {}",
                show(a.0.get(k)),
                show(b.0.get(k))
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_gives_the_same_figures_on_both_stores() {
    let shape = if long() {
        Shape {
            events: 200_000,
            users_per_bot: 2_000,
            days: 110,
            max_batch: 500,
        }
    } else {
        Shape {
            events: 5_000,
            users_per_bot: 150,
            days: 40,
            max_batch: 200,
        }
    };
    let seed = 0x7ac3_2026;
    let trace = generate(seed, &shape);
    let start = DateTime::parse_from_rfc3339(START)
        .expect("start")
        .timestamp_millis();
    // A day either side: the bots' zones move days across UTC's.
    let from = date(start) - chrono::Duration::days(1);
    let to = date(start + trace.days * 86_400_000);

    let embedded = TestServer::start(Backend::Embedded).await;
    let redis = TestServer::start(Backend::Redis).await;
    let started = Instant::now();
    for (i, step) in trace.steps.iter().enumerate() {
        let (a, b) = tokio::join!(apply(&embedded, step), apply(&redis, step));
        assert_eq!(a, b, "step {i}: the two stores answered differently");
    }
    let ingested = started.elapsed();
    tokio::join!(
        until_applied(&embedded, &trace),
        until_applied(&redis, &trace)
    );
    let applied = started.elapsed();
    let (a, b) = tokio::join!(
        figures(&embedded, &trace, from, to),
        figures(&redis, &trace, from, to)
    );
    let (lost_a, doubled_a, named_a) = recount(&trace, &a);
    let (lost_b, doubled_b, named_b) = recount(&trace, &b);
    let (a, b) = (a.masked(), b.masked());
    let counted: u64 = trace.totals.values().map(|(i, o)| i + o).sum();
    println!(
        "trace: {} events sent ({counted} messages count, {} users), {} steps; ingested in \
         {ingested:.1?}, applied after {applied:.1?}, {} answers compared in {:.1?}",
        trace.sent,
        trace.users.values().map(BTreeSet::len).sum::<usize>(),
        trace.steps.len(),
        a.0.len(),
        started.elapsed() - applied,
    );
    report(
        "same trace, embedded vs Redis",
        1,
        trace.sent,
        lost_a + lost_b,
        doubled_a + doubled_b,
        &format!(
            "all applied {:.1} s after the last answer",
            (applied - ingested).as_secs_f64()
        ),
    );
    assert_eq!(
        (lost_a, doubled_a),
        (0, 0),
        "embedded: messages acknowledged but missing, or counted twice: {named_a:#?}"
    );
    assert_eq!(
        (lost_b, doubled_b),
        (0, 0),
        "Redis: messages acknowledged but missing, or counted twice: {named_b:#?}"
    );
    let diff = differences(&a, &b);
    assert!(
        diff.is_empty(),
        "{} of {} answers differ; the first:\n{}",
        a.0.keys()
            .chain(b.0.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|k| a.0.get(*k) != b.0.get(*k))
            .count(),
        a.0.len(),
        diff.join("\n")
    );
    embedded.stop().await;
    redis.stop().await;
}
