//! Differential tests of the fast path against the slow path: over every event of
//! `tests.rs` and systematic mutations of them, the fast path either declines or
//! accepts an event that the slow path accepts as exactly the same event, and
//! `parse_batch` (fast path first) answers exactly what the slow path alone does.

use std::ops::RangeInclusive;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

use super::fast::{self, ATTACHMENT_KINDS, DIRECTIONS, SENDER_KINDS, chars_within};
use super::{
    BatchError, DIRECTION_CHARS, FieldError, KIND_CHARS, Limits, Problem, parse_batch,
    parse_event_value,
};
use crate::model::{Event, EventKind};

// ---------------------------------------------------------------------------
// The two paths side by side
// ---------------------------------------------------------------------------

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 10, 20, 0)
        .single()
        .expect("a valid, unambiguous UTC time")
}

/// What the slow path alone makes of one event's JSON text.
#[derive(Debug)]
enum Slow {
    /// Not even a JSON value to it: the whole batch is malformed.
    Malformed,
    Invalid(Vec<FieldError>),
    Valid(Box<Event>),
}

fn slow(raw: &str, limits: &Limits) -> (Slow, Option<Value>) {
    match serde_json::from_str::<Value>(raw) {
        Err(_) => (Slow::Malformed, None),
        Ok(value) => match parse_event_value(value.clone(), 0, now(), limits) {
            Ok(event) => (Slow::Valid(Box::new(event)), Some(value)),
            Err(faults) => (Slow::Invalid(faults), Some(value)),
        },
    }
}

/// Whether the server made the event's id (the input has no usable one), in which
/// case two parses of it differ in the id only.
fn id_is_generated(value: Option<&Value>) -> bool {
    value
        .and_then(|v| v.get("id"))
        .and_then(Value::as_str)
        .is_none()
}

/// `a == b`, except for server-made ids, which only have to look like one.
fn assert_same_event(a: &Event, b: &Event, generated_id: bool, raw: &str) {
    if generated_id {
        for e in [a, b] {
            assert!(
                uuid::Uuid::parse_str(&e.id).is_ok(),
                "not a server-made id: {e:?}"
            );
        }
        let blank = |e: &Event| Event {
            id: String::new(),
            ..e.clone()
        };
        assert_eq!(blank(a), blank(b), "for {}", shown(raw));
    } else {
        assert_eq!(a, b, "for {}", shown(raw));
    }
}

#[derive(Debug, Default)]
struct Tally {
    inputs: usize,
    slow_valid: usize,
    fast_accepted: usize,
    slow_invalid: usize,
    slow_malformed: usize,
}

/// What became of one input.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    fast_accepted: bool,
    slow_valid: bool,
}

/// Checks one event's JSON text through both paths and through `parse_batch`.
fn check(raw: &str, limits: &Limits, tally: &mut Tally) -> Outcome {
    let fast = fast::parse(raw, now(), limits);
    let (slow, value) = slow(raw, limits);
    let generated_id = id_is_generated(value.as_ref());

    tally.inputs += 1;
    match &slow {
        Slow::Valid(_) => tally.slow_valid += 1,
        Slow::Invalid(_) => tally.slow_invalid += 1,
        Slow::Malformed => tally.slow_malformed += 1,
    }
    match (&fast, &slow) {
        (Some(f), Slow::Valid(s)) => {
            tally.fast_accepted += 1;
            assert_same_event(f, s, generated_id, raw);
        }
        (Some(f), other) => panic!(
            "the fast path accepted {f:?}\nwhere the slow path says {other:?}\nfor {}",
            shown(raw)
        ),
        (None, _) => {}
    }

    // The whole pipeline: the event alone in a batch gets the slow path's answer.
    let body = format!("[{raw}]");
    let batch = parse_batch(body.as_bytes(), now(), limits);
    match (&slow, batch) {
        (Slow::Malformed, Err(BatchError::Malformed(_))) => {}
        (Slow::Invalid(faults), Err(BatchError::Invalid(got))) => {
            assert_eq!(&got, faults, "for {}", shown(raw));
            assert!(faults.iter().all(|f| f.problem == Problem::Invalid));
        }
        (Slow::Invalid(faults), Err(BatchError::TooLarge(got))) => {
            assert_eq!(&got, faults, "for {}", shown(raw));
            assert!(faults.iter().any(|f| f.problem == Problem::TooLarge));
        }
        (Slow::Valid(s), Ok(events)) => {
            assert_eq!(events.len(), 1);
            assert_same_event(&events[0], s, generated_id, raw);
        }
        (slow, batch) => panic!(
            "parse_batch says {batch:?}\nwhere the slow path says {slow:?}\nfor {}",
            shown(raw)
        ),
    }
    Outcome {
        fast_accepted: fast.is_some(),
        slow_valid: matches!(slow, Slow::Valid(_)),
    }
}

/// `raw`, shortened for a failure message.
fn shown(raw: &str) -> String {
    if raw.len() <= 600 {
        raw.to_owned()
    } else {
        let head: String = raw.chars().take(300).collect();
        let tail: String = {
            let mut t: Vec<char> = raw.chars().rev().take(200).collect();
            t.reverse();
            t.into_iter().collect()
        };
        format!("{head} …({} bytes)… {tail}", raw.len())
    }
}

// ---------------------------------------------------------------------------
// A JSON document that keeps member order and raw text, so that it can hold what
// `Value` cannot: duplicate keys, escaped keys, lone surrogates, deep nesting,
// numbers out of range.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Doc {
    /// A scalar, as JSON text.
    Raw(String),
    Arr(Vec<Doc>),
    /// Members with their keys as JSON text (quotes included).
    Obj(Vec<(String, Doc)>),
}

impl Doc {
    fn from_value(v: &Value) -> Doc {
        match v {
            Value::Array(items) => Doc::Arr(items.iter().map(Doc::from_value).collect()),
            Value::Object(map) => Doc::Obj(
                map.iter()
                    .map(|(k, v)| (quoted(k), Doc::from_value(v)))
                    .collect(),
            ),
            scalar => Doc::Raw(scalar.to_string()),
        }
    }

    fn raw(text: impl Into<String>) -> Doc {
        Doc::Raw(text.into())
    }

    fn json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Doc::Raw(text) => out.push_str(text),
            Doc::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Doc::Obj(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    /// Every position in the document: a path of member/item indices from the root.
    fn paths(&self) -> Vec<Vec<usize>> {
        let mut all = vec![Vec::new()];
        let children: Vec<&Doc> = match self {
            Doc::Raw(_) => Vec::new(),
            Doc::Arr(items) => items.iter().collect(),
            Doc::Obj(members) => members.iter().map(|(_, v)| v).collect(),
        };
        for (i, child) in children.into_iter().enumerate() {
            for mut path in child.paths() {
                path.insert(0, i);
                all.push(path);
            }
        }
        all
    }

    fn at(&self, path: &[usize]) -> &Doc {
        match (self, path.split_first()) {
            (_, None) => self,
            (Doc::Arr(items), Some((i, rest))) => items[*i].at(rest),
            (Doc::Obj(members), Some((i, rest))) => members[*i].1.at(rest),
            (Doc::Raw(_), Some(_)) => panic!("no children in a scalar"),
        }
    }

    fn at_mut(&mut self, path: &[usize]) -> &mut Doc {
        match path.split_first() {
            None => self,
            Some((i, rest)) => match self {
                Doc::Arr(items) => items[*i].at_mut(rest),
                Doc::Obj(members) => members[*i].1.at_mut(rest),
                Doc::Raw(_) => panic!("no children in a scalar"),
            },
        }
    }

    /// A copy with the value at `path` replaced.
    fn replaced(&self, path: &[usize], new: Doc) -> Doc {
        let mut doc = self.clone();
        *doc.at_mut(path) = new;
        doc
    }

    /// A copy with the object or array at `path` changed by `f`.
    fn edited(&self, path: &[usize], f: impl FnOnce(&mut Doc)) -> Doc {
        let mut doc = self.clone();
        f(doc.at_mut(path));
        doc
    }

    /// How many objects and arrays enclose the position `path`, itself included
    /// when it is one: the nesting depth serde_json counts.
    fn depth(&self, path: &[usize]) -> usize {
        let own = usize::from(!matches!(self, Doc::Raw(_)));
        match (self, path.split_first()) {
            (_, None) => own,
            (Doc::Arr(items), Some((i, rest))) => own + items[*i].depth(rest),
            (Doc::Obj(members), Some((i, rest))) => own + members[*i].1.depth(rest),
            (Doc::Raw(_), Some(_)) => panic!("no children in a scalar"),
        }
    }
}

fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// `n` nested arrays.
fn nest(n: usize) -> String {
    format!("{}{}", "[".repeat(n), "]".repeat(n))
}

// ---------------------------------------------------------------------------
// The corpus: every event of tests.rs …
// ---------------------------------------------------------------------------

/// The example event of API.md, verbatim (as in tests.rs).
const API_EXAMPLE: &str = r#"{
  "id": "tg-5532-000781",
  "bot": "helpdesk",
  "type": "message",
  "direction": "in",
  "provider": "telegram",
  "user": {"id": "5532", "name": "Олена К.", "avatar": "https://…/a.jpg",
           "gender": "female", "lang": "uk"},
  "text": "Where is my order?",
  "attachments": [
    {"type": "file", "url": "https://…/invoice.pdf", "name": "invoice.pdf",
     "mime": "application/pdf", "size": 48211},
    {"type": "card", "title": "Order #12", "subtitle": "Shipped", "image": "https://…",
     "buttons": [{"title": "Track", "payload": "track:12"}]}
  ],
  "sender": {"kind": "bot"},
  "ts": "2026-11-26T10:15:00.123Z"
}"#;

/// The events of the timing in the report: an inbound message …
const BENCH_IN: &str = r#"{"id":"bench-1-2","bot":"helpdesk","type":"message","direction":"in","provider":"telegram","user":{"id":"123456","name":"Олена К."},"text":"Hello! Where is my order #12345? It was supposed to arrive yesterday, tracking says it is still in the warehouse.","ts":"2026-11-26T10:15:00.123Z"}"#;
/// … and an outbound one with a sender and an attachment.
const BENCH_OUT: &str = r#"{"id":"bench-1-3","bot":"helpdesk","type":"message","direction":"out","provider":"telegram","user":{"id":"123456","name":"Олена К."},"text":"Your order #12345 left the warehouse this morning; here is the invoice.","attachments":[{"type":"file","url":"https://example.com/invoices/12345.pdf","name":"invoice-12345.pdf","mime":"application/pdf","size":48211}],"sender":{"kind":"operator","id":"op-7"},"ts":"2026-11-26T10:16:00.456Z"}"#;

fn msg_in() -> Value {
    json!({
        "id": "e-1",
        "bot": "helpdesk",
        "type": "message",
        "direction": "in",
        "provider": "telegram",
        "user": {"id": "5532"},
        "text": "hi",
        "ts": "2026-11-26T10:15:00.123Z"
    })
}

fn user_upsert() -> Value {
    json!({
        "bot": "helpdesk",
        "type": "user",
        "provider": "telegram",
        "user": {"id": "5532", "name": "Олена К.", "lang": "uk"},
        "ts": "2026-11-26T10:15:00Z"
    })
}

fn api_example() -> Value {
    serde_json::from_str(API_EXAMPLE).expect("the example is JSON")
}

fn with(mut v: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    match v.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(key.to_owned(), new);
        }
        Some(Value::Array(items)) => {
            let i: usize = key.parse().expect("an array index");
            items[i] = new;
        }
        _ => panic!("no object or array at {parent:?} in {v}"),
    }
    v
}

fn without(mut v: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    let removed = v
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|map| map.remove(key));
    assert!(removed.is_some(), "nothing at {pointer:?} in {v}");
    v
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Valid events of every kind: the bases of the mutations.
fn valid_bases() -> Vec<Value> {
    let out = with(msg_in(), "/direction", json!("out"));
    let url = "https://example.com/m";
    vec![
        msg_in(),
        out.clone(),
        with(
            out.clone(),
            "/sender",
            json!({"kind": "operator", "id": "op-1"}),
        ),
        with(out, "/sender", json!({"kind": "bot"})),
        user_upsert(),
        api_example(),
        with(api_example(), "/direction", json!("out")),
        with(
            with(api_example(), "/direction", json!("out")),
            "/sender",
            json!({"kind": "operator", "id": "op-7"}),
        ),
        with(
            msg_in(),
            "/attachments",
            json!([
                {"type": "file", "url": url},
                {"type": "image", "url": url, "mime": "image/png"},
                {"type": "audio", "url": url, "size": 0},
                {"type": "video", "url": url, "name": "clip.mp4"},
                {"type": "card", "title": "T"}
            ]),
        ),
        with(
            msg_in(),
            "/attachments",
            json!([{"type": "card", "title": "Order #12", "subtitle": "Shipped",
                    "image": "https://example.com/i.png",
                    "buttons": [{"title": "Track", "payload": "track:12"},
                                {"title": "Open", "url": "https://example.com/o"}]}]),
        ),
        serde_json::from_str(BENCH_IN).expect("JSON"),
        serde_json::from_str(BENCH_OUT).expect("JSON"),
    ]
}

/// Every event that tests.rs sends, as JSON text.
fn events_of_the_unit_tests() -> Vec<String> {
    let mut values: Vec<Value> = valid_bases();
    let out = with(msg_in(), "/direction", json!("out"));
    let kib = 1024;

    // Server-filled members.
    values.extend([
        without(msg_in(), "/id"),
        with(msg_in(), "/id", Value::Null),
        without(msg_in(), "/ts"),
        with(msg_in(), "/ts", Value::Null),
    ]);
    // Times.
    let mut times: Vec<Value> = [
        "2026-11-26T10:15:00Z",
        "2026-11-26T10:15:00.123456789Z",
        "2026-11-26T10:15:00.1239Z",
        "2026-11-26T10:15:00.999999Z",
        "2026-11-26T10:15:00.5Z",
        "2026-11-26T12:15:00.123+02:00",
        "2026-11-26T04:45:00-05:30",
        "2026-11-26T10:15:00.123+00:00",
        "2026-11-27T01:15:00+15:00",
        "2026-11-26T12:26:00+02:00",
        "2020-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "yesterday",
        "",
        "2026-11-26T10:15:00",
        "2026-11-26",
        "26.11.2026 10:15",
        "2026-13-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
    ]
    .into_iter()
    .map(|t| json!(t))
    .collect();
    for ahead in [
        Duration::zero(),
        Duration::seconds(1),
        Duration::minutes(4),
        Duration::minutes(5),
        Duration::minutes(5) + Duration::milliseconds(1),
        Duration::minutes(5) + Duration::seconds(1),
        Duration::minutes(6),
        Duration::days(365),
    ] {
        times.push(json!(rfc3339(now() + ahead)));
    }
    times.extend([
        json!(1_795_428_900),
        json!(1_795_428_900_123_i64),
        json!(true),
        json!({"seconds": 1}),
    ]);
    values.extend(times.into_iter().map(|t| with(msg_in(), "/ts", t)));

    // Every fault named.
    values.push(json!({
        "bot": "Help Desk!",
        "type": "message",
        "direction": "sideways",
        "provider": "telegram",
        "user": {"name": "no id"}
    }));
    for bad in [
        json!("sideways"),
        json!(""),
        json!("inbound!!"),
        json!(1),
        json!("IN"),
    ] {
        values.push(with(msg_in(), "/direction", bad));
    }
    for item in [
        json!(42),
        json!("text"),
        Value::Null,
        json!([]),
        json!(true),
    ] {
        values.push(item);
    }
    values.push(json!([1, 2]));
    values.push(json!({
        "bot": "helpdesk",
        "type": "message",
        "direction": "out",
        "provider": "telegram",
        "user": {"id": "5532", "avatar": "javascript:alert(1)"},
        "attachments": [
            {"type": "image"},
            {"type": "card", "title": "Order #12", "image": "ftp://example.com/a.png",
             "buttons": [{"payload": "track:12"}, {"title": "Ok", "url": "not a url"}]},
            {"type": "sticker", "url": "https://example.com/s.webp"},
            "a string",
            {"type": "file", "url": "https://example.com/f", "size": -1},
            {"url": "https://example.com/f"}
        ],
        "sender": {"kind": "alien"}
    }));
    for attachments in [
        json!([
            {"type": "file", "url": "https://example.com/a.pdf"},
            {"type": "card", "title": "Order #12", "buttons": [{"payload": "track:12"}]}
        ]),
        json!([{"type": "card", "title": "T", "buttons": [{"title": ""}]}]),
        json!([{"type": "card"}]),
        json!([{"type": "file"}]),
        json!([{"type": "image"}]),
        json!([{"type": "audio"}]),
        json!([{"type": "video"}]),
        json!([]),
        Value::Null,
    ] {
        values.push(with(msg_in(), "/attachments", attachments));
    }
    // URLs.
    for avatar in [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "file:///etc/passwd",
        "ftp://example.com/a.jpg",
        "//example.com/a.jpg",
        "example.com/a.jpg",
        "http://",
        "https://",
        "https:///a.jpg",
        "https://example.com/a b.jpg",
        "https://example.com/a\nb.jpg",
        "https://example.com/a\u{0}.jpg",
        " https://example.com/a.jpg",
        "",
        &format!("https://example.com/{}", "a".repeat(2048)),
        "https://example.com/a.jpg",
        "http://example.com/a.jpg",
        "https://cdn.example.com:8443/u/5532/a.jpg?size=64#x",
        "https://…/a.jpg",
        "https://?q=1",
        "https://#top",
    ] {
        values.push(with(msg_in(), "/user/avatar", json!(avatar)));
    }
    // Senders.
    for sender in [
        json!({"kind": "alien"}),
        json!({"kind": "Bot"}),
        json!({}),
        json!({"kind": 1}),
        json!({"kind": "operator"}),
        json!({"kind": "operator", "id": ""}),
        json!("bot"),
        json!(["bot"]),
        json!({"kind": "bot"}),
        json!({"kind": "operator", "id": "op-1"}),
        Value::Null,
    ] {
        values.push(with(out.clone(), "/sender", sender.clone()));
        values.push(with(msg_in(), "/sender", sender));
    }
    // Wrong JSON types.
    for (pointer, value) in [
        ("/id", json!(781)),
        ("/bot", json!(1)),
        ("/provider", json!(["telegram"])),
        ("/type", json!(1)),
        ("/user", json!("5532")),
        ("/user/id", json!(5532)),
        ("/user/name", json!(1)),
        ("/user/lang", json!(false)),
        ("/user/gender", json!({})),
        ("/text", json!(1)),
        ("/text", json!(["hi"])),
        ("/attachments", json!({"type": "file"})),
        ("/attachments", json!("https://example.com/a")),
        ("/attachments", json!([null])),
        ("/attachments", json!([{"type": 1}])),
        (
            "/attachments",
            json!([{"type": "file", "url": "https://e.com/f", "size": 1.5}]),
        ),
        (
            "/attachments",
            json!([{"type": "file", "url": "https://e.com/f", "size": "12"}]),
        ),
        (
            "/attachments",
            json!([{"type": "card", "title": "T", "buttons": "x"}]),
        ),
        (
            "/attachments",
            json!([{"type": "card", "title": "T", "buttons": [1]}]),
        ),
    ] {
        values.push(with(msg_in(), pointer, value));
    }
    // Required members.
    values.push(json!({}));
    values.push(json!({"bot": null, "type": null, "provider": null, "user": null}));
    for pointer in [
        "/bot",
        "/type",
        "/provider",
        "/user",
        "/user/id",
        "/direction",
    ] {
        values.push(without(msg_in(), pointer));
    }
    values.push(with(msg_in(), "/direction", Value::Null));
    // Limits on lists.
    let file = json!({"type": "file", "url": "https://example.com/f"});
    for n in [10, 11] {
        values.push(with(
            msg_in(),
            "/attachments",
            Value::Array(vec![file.clone(); n]),
        ));
        values.push(with(
            msg_in(),
            "/attachments",
            json!([{"type": "card", "title": "T", "buttons": vec![json!({"title": "Ok"}); n]}]),
        ));
    }
    // Lengths.
    for id in [
        "x".repeat(128),
        "x".repeat(129),
        String::new(),
        "ж".repeat(128),
    ] {
        values.push(with(msg_in(), "/id", json!(id)));
    }
    for id in [
        "u".repeat(256),
        "ж".repeat(256),
        "u".repeat(257),
        String::new(),
    ] {
        values.push(with(msg_in(), "/user/id", json!(id)));
    }
    for slug in [
        "Helpdesk",
        "help desk",
        "-help",
        "_help",
        "",
        "bot.1",
        "бот",
        &"a".repeat(65),
        &"a".repeat(64),
        "web-chat_2",
    ] {
        values.push(with(msg_in(), "/bot", json!(slug)));
        values.push(with(msg_in(), "/provider", json!(slug)));
    }
    // User events.
    for (pointer, value) in [
        ("/text", json!("hello")),
        ("/text", json!("")),
        ("/direction", json!("in")),
        ("/direction", json!("out")),
        (
            "/attachments",
            json!([{"type": "file", "url": "https://example.com/f"}]),
        ),
        ("/attachments", json!([])),
        ("/sender", json!({"kind": "bot"})),
        ("/sender", Value::Null),
    ] {
        values.push(with(user_upsert(), pointer, value));
    }
    values.push(with(
        with(
            with(user_upsert(), "/text", json!("hello")),
            "/direction",
            json!("out"),
        ),
        "/sender",
        json!({"kind": "bot"}),
    ));
    for kind in ["reaction", "Message", "", "mode_changed", "user"] {
        values.push(with(msg_in(), "/type", json!(kind)));
    }
    // Text sizes.
    for text in [
        "a".repeat(16 * kib),
        "a".repeat(16 * kib + 1),
        "é".repeat(8 * kib),
        "é".repeat(8 * kib + 1),
        "€".repeat(5462),
        "😀".repeat(4 * kib + 1),
        format!("{}ж", "a".repeat(16 * kib - 1)),
        format!("{}€", "a".repeat(16 * kib - 3)),
        "four".to_owned(),
        "fiver".to_owned(),
    ] {
        values.push(with(msg_in(), "/text", json!(text)));
    }

    let mut texts: Vec<String> = values.iter().map(Value::to_string).collect();
    texts.push(API_EXAMPLE.to_owned());
    texts.push(BENCH_IN.to_owned());
    texts.push(BENCH_OUT.to_owned());
    // Escaped text, 16 KiB once unescaped.
    texts.push(format!(
        r#"{{"bot":"helpdesk","type":"message","direction":"in","provider":"telegram","user":{{"id":"1"}},"text":"{}"}}"#,
        r"\n".repeat(16 * kib)
    ));
    // Surrogate escapes: lone ones are malformed, a pair is fine.
    for text in [r"\ud800", r"\udfff", r"a\ud83d", r"\ud83d\ude00"] {
        texts.push(
            with(msg_in(), "/text", json!("TEXT"))
                .to_string()
                .replace("TEXT", text),
        );
    }
    // Nesting in an unknown member: too deep, and moderate.
    for depth in [10_000, 50] {
        texts.push(
            with(msg_in(), "/extra", json!("NEST"))
                .to_string()
                .replace("\"NEST\"", &nest(depth)),
        );
    }
    texts.push(format!(
        "{}{}",
        r#"{"a":"#.repeat(10_000),
        "}".repeat(10_000)
    ));
    // Malformed bodies.
    for body in [
        "{",
        "[",
        "[1,",
        r#"{"bot": "helpdesk""#,
        r#"{"bot": "helpdesk",}"#,
        "[{}, ]",
        "{bot: 'helpdesk'}",
        "not json",
        "nul",
        r#"{"a": "\x"}"#,
        "{\"a\": \"line\nbreak\"}",
        "{}{}",
        "{} ,",
    ] {
        texts.push(body.to_owned());
    }
    // Padded with insignificant whitespace.
    let compact = msg_in().to_string();
    texts.push(format!("{{{}{}", " ".repeat(1000), &compact[1..]));
    texts.push(format!("\n\t {compact} \r\n"));
    texts
}

// ---------------------------------------------------------------------------
// … and systematic mutations of the valid ones
// ---------------------------------------------------------------------------

/// Scalars and shapes to put in place of any value.
fn replacements() -> Vec<String> {
    let mut r: Vec<String> = [
        "null",
        "true",
        "false",
        "0",
        "-0",
        "1",
        "-1",
        "1.0",
        "1.5",
        "1e3",
        "1E3",
        "-1e400",
        "1e400",
        "18446744073709551615",
        "18446744073709551616",
        "\"\"",
        "\" \"",
        "\"x\"",
        "\"IN\"",
        "\"in\"",
        "\"out\"",
        "\"bot\"",
        "\"operator\"",
        "\"message\"",
        "\"user\"",
        "\"card\"",
        "\"file\"",
        "\"https://example.com/x\"",
        "\"2026-11-26T10:15:00Z\"",
        r#""\u0000""#,
        r#""\ud800""#,
        r#""\udfff""#,
        r#""a\ud83d\ude00""#,
        "[]",
        "{}",
        "[null]",
        "[{}]",
        "{\"kind\":\"bot\"}",
        "{\"id\":\"5532\"}",
        r#"{"$serde_json::private::RawValue":"\"x\""}"#,
        r#"{"$serde_json::private::RawValue":"null"}"#,
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for n in [300, 17 * 1024] {
        r.push(quoted(&"x".repeat(n)));
    }
    r
}

/// Strings of every length that some rule has at its edge, in characters of 1, 2
/// and 4 bytes, and URLs around the 2048-byte limit.
fn edge_strings() -> Vec<String> {
    let mut s = Vec::new();
    for n in [
        0, 1, 2, 3, 4, 7, 8, 9, 16, 17, 32, 33, 35, 36, 64, 65, 127, 128, 129, 256, 257, 1024,
        1025, 2048, 2049,
    ] {
        s.push("a".repeat(n));
        s.push("ж".repeat(n));
        if n <= 257 {
            s.push("😀".repeat(n));
        }
    }
    for n in [2047, 2048, 2049] {
        let head = "https://example.com/";
        s.push(format!("{head}{}", "a".repeat(n - head.len())));
        s.push(format!("{head}{}ж", "a".repeat(n - head.len() - 2)));
    }
    s
}

/// One mutation: its JSON text, and whether the fast path may leave it to the slow
/// path even when it is valid (a repeated member, or a key starting with `$`).
struct Mutation {
    json: String,
    left_to_slow_path: bool,
}

/// Collects mutations; `push` for those that a valid event must pass on the fast
/// path, `push_left` for those it may decline.
#[derive(Default)]
struct Mutations(Vec<Mutation>);

impl Mutations {
    fn push(&mut self, json: String) {
        self.0.push(Mutation {
            json,
            left_to_slow_path: false,
        });
    }

    fn push_left(&mut self, json: String) {
        self.0.push(Mutation {
            json,
            left_to_slow_path: true,
        });
    }
}

/// The mutations of one document.
fn mutations(doc: &Doc) -> Vec<Mutation> {
    let mut out = Mutations::default();
    let replacements = replacements();
    let edge_strings = edge_strings();
    for path in doc.paths() {
        let here = doc.at(&path);
        let depth = doc.depth(&path);
        let text = here.json();

        // Another value in its place.
        for r in &replacements {
            let json = doc.replaced(&path, Doc::raw(r.clone())).json();
            if r.contains("\"$") {
                out.push_left(json);
            } else {
                out.push(json);
            }
        }
        out.push(doc.replaced(&path, Doc::Arr(vec![here.clone()])).json());
        out.push(
            doc.replaced(&path, Doc::Obj(vec![(quoted("k"), here.clone())]))
                .json(),
        );
        out.push(doc.replaced(&path, Doc::raw(quoted(&text))).json());
        // serde_json's private token: `Value` reads it as the value in the string.
        out.push_left(
            doc.replaced(
                &path,
                Doc::Obj(vec![(
                    quoted("$serde_json::private::RawValue"),
                    Doc::raw(quoted(&text)),
                )]),
            )
            .json(),
        );

        match here {
            Doc::Raw(raw) if raw.starts_with('"') => {
                let inner = &raw[1..raw.len() - 1];
                for variant in [
                    format!(r#""{inner}\ud800""#),
                    format!(r#""\udc00{inner}""#),
                    format!(r#""{inner}\ud83d\ude00""#),
                    format!(r#""{inner}\u0020""#),
                    format!(r#""{inner}\n""#),
                    format!(r#"" {inner}""#),
                    format!(r#""{inner}/""#),
                    format!(r#""{inner}\/""#),
                    quoted(&inner.to_uppercase()),
                ] {
                    out.push(doc.replaced(&path, Doc::raw(variant)).json());
                }
                // The first character escaped: the same string.
                if let Some(c) = inner.chars().next().filter(char::is_ascii_alphanumeric) {
                    let escaped = format!(r#""\u{:04x}{}""#, u32::from(c), &inner[1..]);
                    out.push(doc.replaced(&path, Doc::raw(escaped)).json());
                }
                for s in &edge_strings {
                    out.push(doc.replaced(&path, Doc::raw(quoted(s))).json());
                }
            }
            Doc::Obj(members) => {
                for (i, (key, value)) in members.iter().enumerate() {
                    // Without it.
                    out.push(doc.edited(&path, |d| drop(obj(d).remove(i))).json());
                    // Twice: the same, null first, null last, a different value last.
                    for (first, second) in [
                        (value.clone(), value.clone()),
                        (Doc::raw("null"), value.clone()),
                        (value.clone(), Doc::raw("null")),
                        (value.clone(), Doc::raw("\"x\"")),
                        (Doc::raw("\"x\""), value.clone()),
                    ] {
                        out.push_left(
                            doc.edited(&path, |d| {
                                let m = obj(d);
                                m[i].1 = first;
                                m.push((key.clone(), second));
                            })
                            .json(),
                        );
                    }
                    // The same key, escaped.
                    let plain = &key[1..key.len() - 1];
                    if let Some(c) = plain.chars().next() {
                        let escaped =
                            format!(r#""\u{:04x}{}""#, u32::from(c), &plain[c.len_utf8()..]);
                        out.push(doc.edited(&path, |d| obj(d)[i].0 = escaped).json());
                    }
                    // The same key in another case.
                    out.push(
                        doc.edited(&path, |d| obj(d)[i].0 = key.to_uppercase())
                            .json(),
                    );
                }
                // Unknown members, first and last; nesting right at the limit
                // (serde_json refuses a 128th level) and beyond.
                let mut extras: Vec<(String, String)> = [
                    ("extra", "\"x\"".to_owned()),
                    ("extra", "null".to_owned()),
                    ("extra", "{\"a\":[1,{\"b\":null}]}".to_owned()),
                    ("extra", r#""\ud800""#.to_owned()),
                    ("extra", r#"{"a":"\udfff"}"#.to_owned()),
                    ("extra", r#"{"\ud800":1}"#.to_owned()),
                    ("extra", "1e400".to_owned()),
                    ("extra", "-0".to_owned()),
                    ("extra", nest(50)),
                    ("$extra", "1".to_owned()),
                    ("$serde_json::private::RawValue", "\"{}\"".to_owned()),
                    ("$serde_json::private::Number", "\"1\"".to_owned()),
                    ("", "1".to_owned()),
                ]
                .into_iter()
                .map(|(k, v)| (quoted(k), v))
                .collect();
                for n in (127 - depth).saturating_sub(2)..=(128 - depth) {
                    extras.push((quoted("extra"), nest(n)));
                }
                for (key, value) in extras {
                    let left = key.starts_with("\"$");
                    let member = (key, Doc::raw(value));
                    for json in [
                        doc.edited(&path, |d| obj(d).insert(0, member.clone()))
                            .json(),
                        doc.edited(&path, |d| obj(d).push(member)).json(),
                    ] {
                        if left {
                            out.push_left(json);
                        } else {
                            out.push(json);
                        }
                    }
                }
            }
            Doc::Arr(items) => {
                for i in 0..items.len() {
                    out.push(doc.edited(&path, |d| drop(arr(d).remove(i))).json());
                    out.push(
                        doc.edited(&path, |d| {
                            let item = arr(d)[i].clone();
                            arr(d).insert(i, item);
                        })
                        .json(),
                    );
                }
                if let Some(first) = items.first() {
                    for n in [10, 11] {
                        out.push(doc.replaced(&path, Doc::Arr(vec![first.clone(); n])).json());
                    }
                }
                out.push(doc.edited(&path, |d| arr(d).push(Doc::raw("null"))).json());
            }
            Doc::Raw(_) => {}
        }
    }
    out.0
}

fn obj(d: &mut Doc) -> &mut Vec<(String, Doc)> {
    match d {
        Doc::Obj(members) => members,
        other => panic!("not an object: {other:?}"),
    }
}

fn arr(d: &mut Doc) -> &mut Vec<Doc> {
    match d {
        Doc::Arr(items) => items,
        other => panic!("not an array: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[test]
fn fast_path_agrees_with_the_slow_path_on_the_unit_test_events() {
    let strict = Limits {
        max_text_bytes: 4,
        max_future: Duration::zero(),
        ..Limits::default()
    };
    for limits in [Limits::default(), strict] {
        let mut tally = Tally::default();
        for raw in events_of_the_unit_tests() {
            let outcome = check(&raw, &limits, &mut tally);
            // None of these needs the slow path to be accepted.
            assert_eq!(
                outcome.fast_accepted,
                outcome.slow_valid,
                "for {}",
                shown(&raw)
            );
        }
        println!("unit test events, {limits:?}: {tally:?}");
        assert!(tally.fast_accepted > 0 && tally.slow_invalid > 0 && tally.slow_malformed > 0);
    }
}

#[test]
fn fast_path_agrees_with_the_slow_path_on_mutations() {
    let limits = Limits::default();
    let mut tally = Tally::default();
    let mut left = Tally::default();
    for base in valid_bases() {
        let doc = Doc::from_value(&base);
        for m in mutations(&doc) {
            if m.left_to_slow_path {
                check(&m.json, &limits, &mut left);
            } else {
                let outcome = check(&m.json, &limits, &mut tally);
                // Not vacuous: every valid event takes the fast path, except for
                // repeated members and `$` keys.
                assert_eq!(
                    outcome.fast_accepted,
                    outcome.slow_valid,
                    "for {}",
                    shown(&m.json)
                );
            }
        }
    }
    println!("mutations: {tally:?}\nleft to the slow path: {left:?}");
    assert!(tally.inputs > 20_000, "{tally:?}");
    assert!(tally.fast_accepted > 5_000, "{tally:?}");
    assert!(
        tally.slow_invalid > 5_000 && tally.slow_malformed > 500,
        "{tally:?}"
    );
    assert!(left.slow_valid > 1_000, "{left:?}");
}

#[test]
fn fast_path_takes_the_ordinary_valid_events() {
    let limits = Limits::default();
    let mut tally = Tally::default();
    let mut ordinary: Vec<String> = valid_bases().iter().map(Value::to_string).collect();
    ordinary.extend([API_EXAMPLE, BENCH_IN, BENCH_OUT].map(str::to_owned));
    let extra = |v: Value| with(msg_in(), "/extra", v).to_string();
    ordinary.extend([
        // Unknown members, even nested ones, and null for optional members.
        extra(json!({"trace": [1, 2.5, null, {"deep": [true]}]})),
        extra(json!("x")),
        with(msg_in(), "/user/extra", json!(1)).to_string(),
        with(msg_in(), "/attachments", Value::Null).to_string(),
        with(msg_in(), "/sender", Value::Null).to_string(),
        with(msg_in(), "/user/name", Value::Null).to_string(),
        without(msg_in(), "/id").to_string(),
        without(msg_in(), "/ts").to_string(),
        with(msg_in(), "/ts", json!("2026-11-26T12:15:00.123456+02:00")).to_string(),
        // An unknown member repeated: both paths ignore every one of them.
        format!(r#"{{"extra":1,{},"extra":[2]}}"#, &msg_in().to_string()[1..msg_in().to_string().len() - 1]),
        // The same text escaped.
        r#"{"b\u006ft":"helpdesk","type":"message","direction":"in","provider":"telegram","user":{"id":"5\u0035\u00332"},"text":"\u00e9\ud83d\ude00\n"}"#.to_owned(),
    ]);
    let depth_127 = with(msg_in(), "/extra", json!("NEST"))
        .to_string()
        .replace("\"NEST\"", &nest(126));
    ordinary.push(depth_127);
    for raw in &ordinary {
        let outcome = check(raw, &limits, &mut tally);
        assert!(outcome.fast_accepted, "declined {}", shown(raw));
    }
}

#[test]
fn fast_path_declines_what_serde_derive_would_take() {
    // Each of these is something a derived `Deserialize` for the model accepts (or
    // reads differently), so the fast path must leave it to the slow path.
    let out = with(msg_in(), "/direction", json!("out"));
    let deep = with(msg_in(), "/extra", json!("NEST"))
        .to_string()
        .replace("\"NEST\"", &nest(127));
    let cases = [
        with(out.clone(), "/sender", json!(["bot"])).to_string(),
        with(msg_in(), "/user", json!(["5532"])).to_string(),
        with(
            msg_in(),
            "/attachments",
            json!([["file", "https://example.com/f"]]),
        )
        .to_string(),
        deep,
        with(msg_in(), "/extra", json!("LONE"))
            .to_string()
            .replace("LONE", r"\ud800"),
        format!(r#"{{"bot":"x",{}"#, &msg_in().to_string()[1..]),
        format!(r#"{{"bot":"helpdesk",{}"#, &msg_in().to_string()[1..]),
        with(
            msg_in(),
            "/user",
            json!({"$serde_json::private::RawValue": "{\"id\":\"5532\"}"}),
        )
        .to_string(),
        format!(
            r#"{{"$serde_json::private::RawValue":{}}}"#,
            quoted(&msg_in().to_string())
        ),
    ];
    let mut tally = Tally::default();
    for raw in &cases {
        let outcome = check(raw, &Limits::default(), &mut tally);
        assert!(!outcome.fast_accepted, "took {raw}");
    }
    // Of these, the slow path refuses the first five and accepts the others.
    assert_eq!(tally.slow_valid, 4, "{tally:?}");
}

#[test]
fn closed_sets_fit_the_length_rules_the_slow_path_checks_first() {
    let fits = |names: &[&str], chars: RangeInclusive<usize>| {
        names.iter().all(|n| chars.contains(&n.chars().count()))
    };
    assert!(fits(&DIRECTIONS.map(|(n, _)| n), DIRECTION_CHARS));
    assert!(fits(&SENDER_KINDS.map(|(n, _)| n), KIND_CHARS));
    assert!(fits(&ATTACHMENT_KINDS.map(|(n, _)| n), KIND_CHARS));
    let attachment_names: Vec<&str> = ATTACHMENT_KINDS.iter().map(|(n, _)| *n).collect();
    assert_eq!(attachment_names, crate::model::Attachment::TYPES);
    assert_eq!(EventKind::ALL.len(), 2);
}

#[test]
fn chars_within_counts_like_chars_count() {
    let alphabet = ["a", "é", "€", "😀"];
    let mut strings = vec![String::new()];
    for len in 1..=9 {
        for seed in 0..alphabet.len().pow(3) {
            let s: String = (0..len)
                .map(|i| alphabet[(seed / alphabet.len().pow(i % 3)) % alphabet.len()])
                .collect();
            strings.push(s);
        }
    }
    for s in &strings {
        for start in 0..=6 {
            for end in start..=10 {
                let chars = start..=end;
                assert_eq!(
                    chars_within(s, &chars),
                    chars.contains(&s.chars().count()),
                    "{s:?} in {chars:?}"
                );
            }
        }
    }
}
