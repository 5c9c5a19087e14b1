//! Unit tests of event validation: what a client sending events relies on
//! (API.md → "Event, version 1" and "Ingest over HTTP").

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

use super::{
    BatchError, FieldError, Limits, Problem, is_slug, is_url, parse_batch, parse_event,
    parse_event_value,
};
use crate::model::{
    Attachment, Button, Card, DeliveryState, Direction, Event, EventKind, Media, Mode, Sender,
    UserInfo,
};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// The example event of API.md, verbatim.
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

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn utc(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, h, m, s)
        .single()
        .expect("a valid, unambiguous UTC time")
}

/// The server's receive time in every test: a few minutes after the example's `ts`.
fn now() -> DateTime<Utc> {
    utc(10, 20, 0)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn batch_bytes(body: &[u8]) -> Result<Vec<Event>, BatchError> {
    parse_batch(body, now(), &Limits::default())
}

fn batch(body: &str) -> Result<Vec<Event>, BatchError> {
    batch_bytes(body.as_bytes())
}

/// An inbound message with only what is required, plus an id and a fixed time.
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

/// A profile upsert with only what is required.
fn user_upsert() -> Value {
    json!({
        "bot": "helpdesk",
        "type": "user",
        "provider": "telegram",
        "user": {"id": "5532", "name": "Олена К.", "lang": "uk"},
        "ts": "2026-11-26T10:15:00Z"
    })
}

/// `v` with the member at JSON pointer `pointer` set to `new` (parents must exist).
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

/// `v` without the member at JSON pointer `pointer`.
fn without(mut v: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    let removed = v
        .pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .and_then(|map| map.remove(key));
    assert!(removed.is_some(), "nothing at {pointer:?} in {v}");
    v
}

/// The one valid event of a single-event body.
fn one(event: &Value) -> Event {
    match batch(&event.to_string()) {
        Ok(mut events) => {
            assert_eq!(events.len(), 1, "one event in, one event out");
            events.remove(0)
        }
        Err(e) => panic!("expected a valid event, got {e:?}\nfor {event}"),
    }
}

fn invalid(body: &str) -> Vec<FieldError> {
    match batch(body) {
        Err(BatchError::Invalid(faults)) => {
            assert!(!faults.is_empty(), "Invalid must name at least one fault");
            assert!(
                faults.iter().all(|f| f.problem == Problem::Invalid),
                "{faults:?}"
            );
            faults
        }
        other => panic!("expected BatchError::Invalid, got {other:?}\nfor {body}"),
    }
}

fn too_large(body: &str) -> Vec<FieldError> {
    match batch(body) {
        Err(BatchError::TooLarge(faults)) => {
            assert!(!faults.is_empty(), "TooLarge must name at least one fault");
            faults
        }
        other => panic!(
            "expected BatchError::TooLarge, got {other:?}\nfor a body of {} bytes",
            body.len()
        ),
    }
}

fn malformed(body: &[u8]) -> String {
    match batch_bytes(body) {
        Err(BatchError::Malformed(reason)) => {
            assert!(!reason.is_empty(), "a malformed body gets a reason");
            reason
        }
        other => panic!(
            "expected BatchError::Malformed, got {other:?}\nfor {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ),
    }
}

/// The fields at fault (`None`: the event as a whole) of a single invalid event.
fn fault_fields(event: &Value) -> Vec<Option<String>> {
    let faults = invalid(&event.to_string());
    assert!(faults.iter().all(|f| f.index == 0), "{faults:?}");
    faults.into_iter().map(|f| f.field).collect()
}

/// Asserts that a single event is refused with exactly one fault, on `field`, and
/// returns its reason.
fn sole_fault(event: &Value, field: &str) -> String {
    let faults = invalid(&event.to_string());
    assert_eq!(
        faults.len(),
        1,
        "expected exactly one fault on {field:?}, got {faults:?}\nfor {event}"
    );
    assert_eq!(faults[0].index, 0);
    assert_eq!(faults[0].field.as_deref(), Some(field), "{faults:?}");
    faults[0].reason.clone()
}

fn some(s: &str) -> Option<String> {
    Some(s.to_owned())
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

/// `event` serialised to exactly `size` bytes by padding it with insignificant
/// whitespace after its opening brace.
fn padded_to(event: &Value, size: usize) -> String {
    let compact = event.to_string();
    assert!(
        compact.len() <= size,
        "event is already {} bytes",
        compact.len()
    );
    format!("{{{}{}", " ".repeat(size - compact.len()), &compact[1..])
}

// ---------------------------------------------------------------------------
// The API.md example and the canonical form
// ---------------------------------------------------------------------------

#[test]
fn api_example_event_parses_into_the_model() {
    let events = batch(API_EXAMPLE).expect("the API.md example is a valid event");
    assert_eq!(events.len(), 1);
    let e = &events[0];

    let expected = Event {
        id: "tg-5532-000781".to_owned(),
        bot: "helpdesk".to_owned(),
        kind: EventKind::Message,
        direction: Some(Direction::In),
        provider: "telegram".to_owned(),
        user: UserInfo {
            id: "5532".to_owned(),
            name: some("Олена К."),
            avatar: some("https://…/a.jpg"),
            gender: some("female"),
            lang: some("uk"),
        },
        text: some("Where is my order?"),
        attachments: vec![
            Attachment::File(Media {
                url: "https://…/invoice.pdf".to_owned(),
                name: some("invoice.pdf"),
                mime: some("application/pdf"),
                size: Some(48211),
            }),
            Attachment::Card(Card {
                title: "Order #12".to_owned(),
                subtitle: some("Shipped"),
                image: some("https://…"),
                buttons: vec![Button {
                    title: "Track".to_owned(),
                    payload: some("track:12"),
                    url: None,
                }],
            }),
        ],
        // The example sends `"sender": {"kind": "bot"}` on an inbound message; an
        // inbound message is from the user, so there is no sender to store.
        sender: None,
        mode: None,
        delivery: None,
        audience: None,
        broadcast: None,
        ts: utc(10, 15, 0) + Duration::milliseconds(123),
    };
    assert_eq!(e.user.name.as_deref(), Some("Олена К."));
    assert_eq!(e.ts_millis(), expected.ts.timestamp_millis());
    assert_eq!(*e, expected);
}

#[test]
fn api_example_as_outbound_message_parses() {
    // The same example as an outbound message, the only direction that may carry
    // a sender.
    let v: Value = serde_json::from_str(API_EXAMPLE).expect("the example is JSON");
    let v = with(v, "/direction", json!("out"));
    let e = one(&v);
    assert_eq!(e.direction, Some(Direction::Out));
    assert_eq!(e.sender, Some(Sender::Bot));
    assert_eq!(e.attachments.len(), 2);
    assert_eq!(e.user.name.as_deref(), Some("Олена К."));
}

#[test]
fn canonical_json_round_trips_to_an_equal_event() {
    let v: Value = serde_json::from_str(API_EXAMPLE).expect("the example is JSON");
    let operator = with(
        with(v.clone(), "/direction", json!("out")),
        "/sender",
        json!({"kind": "operator", "id": "op-7"}),
    );
    for event in [
        batch(API_EXAMPLE).expect("valid")[0].clone(),
        one(&operator),
        one(&msg_in()),
        one(&user_upsert()),
    ] {
        let json = event.to_json();
        let back: Event = serde_json::from_str(&json).expect("canonical JSON deserialises");
        assert_eq!(back, event, "{json}");
        // Serialising again gives exactly the same bytes: the stored form is stable.
        assert_eq!(back.to_json(), json);
        // And the canonical form is itself a valid event that validates to the same
        // event (a stored event re-ingested, e.g. from the Redis stream).
        let again = parse_event(json.as_bytes(), 0, now(), &Limits::default())
            .expect("canonical JSON is a valid event");
        assert_eq!(again, event, "{json}");
    }
}

#[test]
fn canonical_json_has_the_api_field_names() {
    let v: Value = serde_json::from_str(API_EXAMPLE).expect("the example is JSON");
    let e = one(&with(v, "/direction", json!("out")));
    let canon: Value = serde_json::from_str(&e.to_json()).expect("JSON");
    assert_eq!(
        canon,
        json!({
            "id": "tg-5532-000781",
            "bot": "helpdesk",
            "type": "message",
            "direction": "out",
            "provider": "telegram",
            "user": {"id": "5532", "name": "Олена К.", "avatar": "https://…/a.jpg",
                     "gender": "female", "lang": "uk"},
            "text": "Where is my order?",
            "attachments": [
                {"type": "file", "url": "https://…/invoice.pdf", "name": "invoice.pdf",
                 "mime": "application/pdf", "size": 48211},
                {"type": "card", "title": "Order #12", "subtitle": "Shipped",
                 "image": "https://…",
                 "buttons": [{"title": "Track", "payload": "track:12"}]}
            ],
            "sender": {"kind": "bot"},
            "ts": "2026-11-26T10:15:00.123Z"
        })
    );
    let operator = Event {
        sender: Some(Sender::Operator {
            id: "op-7".to_owned(),
        }),
        ..e
    };
    let canon: Value = serde_json::from_str(&operator.to_json()).expect("JSON");
    assert_eq!(canon["sender"], json!({"kind": "operator", "id": "op-7"}));
}

#[test]
fn canonical_json_leaves_out_absent_fields() {
    let e = one(&without(msg_in(), "/text"));
    let canon: Value = serde_json::from_str(&e.to_json()).expect("JSON");
    let keys = sorted(
        canon
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect(),
    );
    assert_eq!(
        keys,
        ["bot", "direction", "id", "provider", "ts", "type", "user"]
    );
    assert_eq!(canon["user"], json!({"id": "5532"}));

    let u = one(&user_upsert());
    let canon: Value = serde_json::from_str(&u.to_json()).expect("JSON");
    assert!(canon.get("direction").is_none(), "{canon}");
    assert!(canon.get("sender").is_none(), "{canon}");
    assert_eq!(canon["type"], "user");
}

#[test]
fn ts_is_serialised_in_utc_with_milliseconds() {
    let e = one(&msg_in());
    assert!(
        e.to_json().contains(r#""ts":"2026-11-26T10:15:00.123Z""#),
        "{}",
        e.to_json()
    );
    // A whole second still has three decimals.
    let e = one(&with(msg_in(), "/ts", json!("2026-11-26T10:15:00Z")));
    assert!(
        e.to_json().contains(r#""ts":"2026-11-26T10:15:00.000Z""#),
        "{}",
        e.to_json()
    );
}

#[test]
fn ts_is_truncated_to_milliseconds() {
    for (given, stored) in [
        ("2026-11-26T10:15:00.123456789Z", "2026-11-26T10:15:00.123Z"),
        ("2026-11-26T10:15:00.1239Z", "2026-11-26T10:15:00.123Z"),
        ("2026-11-26T10:15:00.999999Z", "2026-11-26T10:15:00.999Z"),
        ("2026-11-26T10:15:00.5Z", "2026-11-26T10:15:00.500Z"),
    ] {
        let e = one(&with(msg_in(), "/ts", json!(given)));
        assert_eq!(e.ts.timestamp_subsec_nanos() % 1_000_000, 0, "{given}");
        assert_eq!(
            e.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            stored
        );
        assert!(e.to_json().contains(&format!(r#""ts":"{stored}""#)));
        // Truncated, so the canonical form round-trips exactly.
        let back: Event = serde_json::from_str(&e.to_json()).expect("JSON");
        assert_eq!(back, e);
    }
}

#[test]
fn ts_with_an_offset_converts_to_utc() {
    for (given, stored) in [
        ("2026-11-26T12:15:00.123+02:00", "2026-11-26T10:15:00.123Z"),
        ("2026-11-26T04:45:00-05:30", "2026-11-26T10:15:00.000Z"),
        ("2026-11-26T10:15:00.123+00:00", "2026-11-26T10:15:00.123Z"),
        // Across midnight, and the date changes too.
        ("2026-11-27T01:15:00+15:00", "2026-11-26T10:15:00.000Z"),
    ] {
        let e = one(&with(msg_in(), "/ts", json!(given)));
        assert!(
            e.to_json().contains(&format!(r#""ts":"{stored}""#)),
            "{given} → {}",
            e.to_json()
        );
    }
    let e = one(&with(
        msg_in(),
        "/ts",
        json!("2026-11-26T12:15:00.123+02:00"),
    ));
    assert_eq!(e.ts, utc(10, 15, 0) + Duration::milliseconds(123));
    assert_eq!(e.ts_millis(), e.ts.timestamp_millis());
}

// ---------------------------------------------------------------------------
// What the server fills in
// ---------------------------------------------------------------------------

#[test]
fn missing_id_gets_a_generated_one() {
    let a = one(&without(msg_in(), "/id"));
    let b = one(&without(msg_in(), "/id"));
    let c = one(&with(msg_in(), "/id", Value::Null));
    for e in [&a, &b, &c] {
        assert!(!e.id.is_empty());
        assert!(e.id.chars().count() <= 128, "{}", e.id);
    }
    assert_ne!(a.id, b.id, "every generated id is different");
    assert_ne!(a.id, c.id);
    // The generated id is in the canonical form, so a reader sees the same id.
    let back: Event = serde_json::from_str(&a.to_json()).expect("JSON");
    assert_eq!(back.id, a.id);
    // A given id is kept as it is.
    assert_eq!(one(&msg_in()).id, "e-1");
}

#[test]
fn generated_ids_are_distinct_within_a_batch() {
    let body = Value::Array(vec![without(msg_in(), "/id"); 50]).to_string();
    let events = batch(&body).expect("valid");
    let ids: std::collections::HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 50);
}

#[test]
fn missing_ts_becomes_now() {
    let e = one(&without(msg_in(), "/ts"));
    assert_eq!(e.ts, now());
    let e = one(&with(msg_in(), "/ts", Value::Null));
    assert_eq!(e.ts, now());

    // The receive time is stored with millisecond precision like any other.
    let precise = now() + Duration::nanoseconds(123_456_789);
    let e = parse_event(
        without(msg_in(), "/ts").to_string().as_bytes(),
        0,
        precise,
        &Limits::default(),
    )
    .expect("valid");
    assert_eq!(e.ts, now() + Duration::milliseconds(123));
    assert!(e.to_json().contains(r#""ts":"2026-11-26T10:20:00.123Z""#));
}

#[test]
fn ts_up_to_five_minutes_ahead_is_accepted() {
    for ahead in [
        Duration::zero(),
        Duration::seconds(1),
        Duration::minutes(4),
        Duration::minutes(5),
    ] {
        let ts = now() + ahead;
        let e = one(&with(msg_in(), "/ts", json!(rfc3339(ts))));
        assert_eq!(e.ts, ts, "{ahead}");
    }
}

#[test]
fn ts_more_than_five_minutes_ahead_is_refused() {
    for ahead in [
        Duration::minutes(5) + Duration::milliseconds(1),
        Duration::minutes(5) + Duration::seconds(1),
        Duration::minutes(6),
        Duration::days(365),
    ] {
        let ts = rfc3339(now() + ahead);
        let reason = sole_fault(&with(msg_in(), "/ts", json!(ts)), "ts");
        assert!(reason.contains("future"), "{reason}");
    }
    // Also with an offset: 12:26+02:00 is 10:26Z, six minutes ahead.
    sole_fault(
        &with(msg_in(), "/ts", json!("2026-11-26T12:26:00+02:00")),
        "ts",
    );
}

#[test]
fn ts_in_the_past_is_accepted() {
    let e = one(&with(msg_in(), "/ts", json!("2020-01-01T00:00:00Z")));
    assert_eq!(e.ts.to_rfc3339(), "2020-01-01T00:00:00+00:00");
    let e = one(&with(msg_in(), "/ts", json!("1970-01-01T00:00:00Z")));
    assert_eq!(e.ts_millis(), 0);
}

#[test]
fn the_future_allowance_follows_the_limits() {
    let strict = Limits {
        max_future: Duration::zero(),
        ..Limits::default()
    };
    let ahead = with(
        msg_in(),
        "/ts",
        json!(rfc3339(now() + Duration::seconds(1))),
    );
    let faults = parse_event(ahead.to_string().as_bytes(), 0, now(), &strict)
        .expect_err("one second ahead with no allowance");
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].field.as_deref(), Some("ts"));
    let exact = with(msg_in(), "/ts", json!(rfc3339(now())));
    assert!(parse_event(exact.to_string().as_bytes(), 0, now(), &strict).is_ok());
}

#[test]
fn ts_that_is_not_an_rfc3339_utc_time_is_refused() {
    for bad in [
        json!("yesterday"),
        json!(""),
        json!("2026-11-26T10:15:00"),
        json!("2026-11-26"),
        json!("26.11.2026 10:15"),
        json!("2026-13-01T00:00:00Z"),
        json!("1969-12-31T23:59:59Z"),
        json!(1_795_428_900),
        json!(1_795_428_900_123_i64),
        json!(true),
        json!({"seconds": 1}),
    ] {
        sole_fault(&with(msg_in(), "/ts", bad), "ts");
    }
}

// ---------------------------------------------------------------------------
// Every fault named, with index and field
// ---------------------------------------------------------------------------

#[test]
fn batch_names_every_fault_with_index_and_field() {
    let good = msg_in();
    let bad = json!({
        "bot": "Help Desk!",
        "type": "message",
        "direction": "sideways",
        "provider": "telegram",
        "user": {"name": "no id"}
    });
    let body = format!("[{good}, {bad}, 42]");
    let faults = invalid(&body);

    let found: Vec<(usize, Option<&str>)> = faults
        .iter()
        .map(|f| (f.index, f.field.as_deref()))
        .collect();
    assert_eq!(
        sorted(found.clone()),
        vec![
            (1, Some("bot")),
            (1, Some("direction")),
            (1, Some("user.id")),
            (2, None),
        ],
        "{faults:#?}"
    );
    // Faults come in the order of the events.
    assert!(found.windows(2).all(|w| w[0].0 <= w[1].0), "{found:?}");
    // The valid event is not at fault, and every fault says why.
    assert!(faults.iter().all(|f| f.index != 0));
    assert!(faults.iter().all(|f| !f.reason.is_empty()));

    let reason = |field: Option<&str>| -> String {
        faults
            .iter()
            .find(|f| f.field.as_deref() == field)
            .map(|f| f.reason.clone())
            .expect("a fault on that field")
    };
    assert!(reason(Some("user.id")).contains("required"));
    assert!(reason(Some("direction")).contains("sideways"));
    assert!(reason(Some("bot")).contains("Help Desk!"));
    assert!(reason(None).contains("object"));
}

#[test]
fn a_bad_direction_is_one_fault_not_also_a_missing_one() {
    for bad in [json!("sideways"), json!(""), json!("inbound!!"), json!(1)] {
        sole_fault(&with(msg_in(), "/direction", bad), "direction");
    }
    sole_fault(&with(msg_in(), "/direction", json!("IN")), "direction");
}

#[test]
fn valid_batch_keeps_every_event_in_order() {
    let body = Value::Array(
        (0..5)
            .map(|i| with(msg_in(), "/id", json!(format!("e-{i}"))))
            .collect(),
    )
    .to_string();
    let events = batch(&body).expect("valid");
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["e-0", "e-1", "e-2", "e-3", "e-4"]);
}

#[test]
fn one_event_or_an_array_of_one_are_the_same() {
    let single = batch(&msg_in().to_string()).expect("valid");
    let array = batch(&format!("[{}]", msg_in())).expect("valid");
    assert_eq!(single, array);
    // Insignificant whitespace around the body is fine.
    let spaced = batch(&format!("\n\t [ {} ] \r\n", msg_in())).expect("valid");
    assert_eq!(spaced, array);
    let spaced = batch(&format!("  {}\n", msg_in())).expect("valid");
    assert_eq!(spaced, single);
}

#[test]
fn event_level_faults_have_no_field() {
    for (item, index) in [
        ("42", 1),
        ("\"text\"", 1),
        ("null", 1),
        ("[]", 1),
        ("true", 1),
    ] {
        let body = format!("[{}, {item}]", msg_in());
        let faults = invalid(&body);
        assert_eq!(faults.len(), 1, "{faults:?}");
        assert_eq!(faults[0].index, index);
        assert_eq!(faults[0].field, None);
    }
}

#[test]
fn nested_faults_are_named_by_their_path() {
    let event = json!({
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
    });
    assert_eq!(
        sorted(fault_fields(&event)),
        sorted(vec![
            some("user.avatar"),
            some("attachments[0].url"),
            some("attachments[1].image"),
            some("attachments[1].buttons[0].title"),
            some("attachments[1].buttons[1].url"),
            some("attachments[2].type"),
            some("attachments[3]"),
            some("attachments[4].size"),
            some("attachments[5].type"),
            some("sender.kind"),
        ])
    );
}

#[test]
fn card_button_without_title_is_named() {
    let event = with(
        msg_in(),
        "/attachments",
        json!([
            {"type": "file", "url": "https://example.com/a.pdf"},
            {"type": "card", "title": "Order #12", "buttons": [{"payload": "track:12"}]}
        ]),
    );
    let reason = sole_fault(&event, "attachments[1].buttons[0].title");
    assert!(reason.contains("required"), "{reason}");
    // Empty is not a title either.
    let event = with(
        msg_in(),
        "/attachments",
        json!([{"type": "card", "title": "T", "buttons": [{"title": ""}]}]),
    );
    sole_fault(&event, "attachments[0].buttons[0].title");
}

#[test]
fn card_needs_a_title() {
    let event = with(msg_in(), "/attachments", json!([{"type": "card"}]));
    sole_fault(&event, "attachments[0].title");
}

#[test]
fn avatar_must_be_an_http_url() {
    for bad in [
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
    ] {
        let event = with(msg_in(), "/user/avatar", json!(bad));
        sole_fault(&event, "user.avatar");
    }
    let too_long = format!("https://example.com/{}", "a".repeat(2048));
    sole_fault(
        &with(msg_in(), "/user/avatar", json!(too_long)),
        "user.avatar",
    );

    for good in [
        "https://example.com/a.jpg",
        "http://example.com/a.jpg",
        "https://cdn.example.com:8443/u/5532/a.jpg?size=64#x",
        "https://…/a.jpg",
    ] {
        let e = one(&with(msg_in(), "/user/avatar", json!(good)));
        assert_eq!(e.user.avatar.as_deref(), Some(good));
    }
}

#[test]
fn is_url_needs_a_host() {
    assert!(is_url("https://example.com"));
    assert!(is_url("http://a"));
    assert!(!is_url("https://"));
    assert!(!is_url("http://"));
    assert!(!is_url("https:///path"));
    assert!(!is_url("https://?q=1"));
    assert!(!is_url("https://#top"));
}

#[test]
fn sender_faults_are_named() {
    let out = with(msg_in(), "/direction", json!("out"));
    for (sender, field) in [
        (json!({"kind": "alien"}), "sender.kind"),
        (json!({"kind": "Bot"}), "sender.kind"),
        (json!({}), "sender.kind"),
        (json!({"kind": 1}), "sender.kind"),
        (json!({"kind": "operator"}), "sender.id"),
        (json!({"kind": "operator", "id": ""}), "sender.id"),
        (json!("bot"), "sender"),
        (json!(["bot"]), "sender"),
    ] {
        sole_fault(&with(out.clone(), "/sender", sender), field);
    }
}

#[test]
fn wrong_json_types_are_named() {
    for (pointer, value, field) in [
        ("/id", json!(781), "id"),
        ("/bot", json!(1), "bot"),
        ("/provider", json!(["telegram"]), "provider"),
        ("/type", json!(1), "type"),
        ("/user", json!("5532"), "user"),
        ("/user/id", json!(5532), "user.id"),
        ("/user/name", json!(1), "user.name"),
        ("/user/lang", json!(false), "user.lang"),
        ("/user/gender", json!({}), "user.gender"),
        ("/text", json!(1), "text"),
        ("/text", json!(["hi"]), "text"),
        ("/attachments", json!({"type": "file"}), "attachments"),
        (
            "/attachments",
            json!("https://example.com/a"),
            "attachments",
        ),
        ("/attachments", json!([null]), "attachments[0]"),
        ("/attachments", json!([{"type": 1}]), "attachments[0].type"),
        (
            "/attachments",
            json!([{"type": "file", "url": "https://e.com/f", "size": 1.5}]),
            "attachments[0].size",
        ),
        (
            "/attachments",
            json!([{"type": "file", "url": "https://e.com/f", "size": "12"}]),
            "attachments[0].size",
        ),
        (
            "/attachments",
            json!([{"type": "card", "title": "T", "buttons": "x"}]),
            "attachments[0].buttons",
        ),
        (
            "/attachments",
            json!([{"type": "card", "title": "T", "buttons": [1]}]),
            "attachments[0].buttons[0]",
        ),
    ] {
        sole_fault(&with(msg_in(), pointer, value), field);
    }
}

#[test]
fn every_required_field_is_named_when_missing() {
    assert_eq!(
        sorted(fault_fields(&json!({}))),
        sorted(vec![
            some("bot"),
            some("provider"),
            some("type"),
            some("user")
        ])
    );
    // Null counts as absent.
    let nulls = json!({"bot": null, "type": null, "provider": null, "user": null});
    assert_eq!(
        sorted(fault_fields(&nulls)),
        sorted(vec![
            some("bot"),
            some("provider"),
            some("type"),
            some("user")
        ])
    );
    for (pointer, field) in [
        ("/bot", "bot"),
        ("/type", "type"),
        ("/provider", "provider"),
        ("/user", "user"),
        ("/user/id", "user.id"),
    ] {
        let reason = sole_fault(&without(msg_in(), pointer), field);
        assert!(reason.contains("required"), "{field}: {reason}");
    }
}

#[test]
fn media_attachments_need_a_url() {
    for kind in ["file", "image", "audio", "video"] {
        let event = with(msg_in(), "/attachments", json!([{"type": kind}]));
        let reason = sole_fault(&event, "attachments[0].url");
        assert!(reason.contains("required"), "{reason}");
    }
}

#[test]
fn every_attachment_type_parses_to_its_variant() {
    let url = "https://example.com/m";
    let event = with(
        msg_in(),
        "/attachments",
        json!([
            {"type": "file", "url": url},
            {"type": "image", "url": url, "mime": "image/png"},
            {"type": "audio", "url": url, "size": 0},
            {"type": "video", "url": url, "name": "clip.mp4"},
            {"type": "card", "title": "T"}
        ]),
    );
    let e = one(&event);
    let media = |name: Option<&str>, mime: Option<&str>, size: Option<u64>| Media {
        url: url.to_owned(),
        name: name.map(str::to_owned),
        mime: mime.map(str::to_owned),
        size,
    };
    assert_eq!(
        e.attachments,
        vec![
            Attachment::File(media(None, None, None)),
            Attachment::Image(media(None, Some("image/png"), None)),
            Attachment::Audio(media(None, None, Some(0))),
            Attachment::Video(media(Some("clip.mp4"), None, None)),
            Attachment::Card(Card {
                title: "T".to_owned(),
                subtitle: None,
                image: None,
                buttons: Vec::new(),
            }),
        ]
    );
    let back: Event = serde_json::from_str(&e.to_json()).expect("JSON");
    assert_eq!(back, e);
}

#[test]
fn at_most_ten_attachments_and_ten_buttons() {
    let file = json!({"type": "file", "url": "https://example.com/f"});
    let e = one(&with(
        msg_in(),
        "/attachments",
        Value::Array(vec![file.clone(); 10]),
    ));
    assert_eq!(e.attachments.len(), 10);
    sole_fault(
        &with(msg_in(), "/attachments", Value::Array(vec![file; 11])),
        "attachments",
    );

    let button = json!({"title": "Ok"});
    let card =
        |n: usize| json!([{"type": "card", "title": "T", "buttons": vec![button.clone(); n]}]);
    let e = one(&with(msg_in(), "/attachments", card(10)));
    match &e.attachments[0] {
        Attachment::Card(c) => assert_eq!(c.buttons.len(), 10),
        other => panic!("expected a card, got {other:?}"),
    }
    sole_fault(
        &with(msg_in(), "/attachments", card(11)),
        "attachments[0].buttons",
    );
}

#[test]
fn empty_or_null_attachments_are_none() {
    let e = one(&with(msg_in(), "/attachments", json!([])));
    assert!(e.attachments.is_empty());
    let e = one(&with(msg_in(), "/attachments", Value::Null));
    assert!(e.attachments.is_empty());
}

#[test]
fn ids_have_their_documented_lengths() {
    // `id`: 1–128 characters.
    let e = one(&with(msg_in(), "/id", json!("x".repeat(128))));
    assert_eq!(e.id.len(), 128);
    sole_fault(&with(msg_in(), "/id", json!("x".repeat(129))), "id");
    sole_fault(&with(msg_in(), "/id", json!("")), "id");
    // Characters, not bytes.
    let cyr = "ж".repeat(128);
    assert_eq!(
        one(&with(msg_in(), "/id", json!(cyr))).id.chars().count(),
        128
    );

    // `user.id`: 1–256 characters.
    one(&with(msg_in(), "/user/id", json!("u".repeat(256))));
    one(&with(msg_in(), "/user/id", json!("ж".repeat(256))));
    sole_fault(
        &with(msg_in(), "/user/id", json!("u".repeat(257))),
        "user.id",
    );
    sole_fault(&with(msg_in(), "/user/id", json!("")), "user.id");
}

#[test]
fn bot_and_provider_must_be_slugs() {
    for bad in [
        "Helpdesk",
        "help desk",
        "-help",
        "_help",
        "",
        "bot.1",
        "бот",
    ] {
        sole_fault(&with(msg_in(), "/bot", json!(bad)), "bot");
        sole_fault(&with(msg_in(), "/provider", json!(bad)), "provider");
    }
    sole_fault(&with(msg_in(), "/bot", json!("a".repeat(65))), "bot");
    let e = one(&with(msg_in(), "/bot", json!("a".repeat(64))));
    assert_eq!(e.bot.len(), 64);
    let e = one(&with(msg_in(), "/provider", json!("web-chat_2")));
    assert_eq!(e.provider, "web-chat_2");
}

// ---------------------------------------------------------------------------
// Rules tying fields together
// ---------------------------------------------------------------------------

#[test]
fn message_without_direction_is_refused() {
    let reason = sole_fault(&without(msg_in(), "/direction"), "direction");
    assert!(reason.contains("required"), "{reason}");
    sole_fault(&with(msg_in(), "/direction", Value::Null), "direction");
}

#[test]
fn inbound_message_sender_is_accepted_but_not_stored() {
    // API.md's own example is an inbound message with `"sender": {"kind": "bot"}`;
    // it must be accepted. The author of an inbound message is the user, so the
    // stored event has no sender.
    for sender in [
        json!({"kind": "bot"}),
        json!({"kind": "operator", "id": "op-1"}),
        Value::Null,
    ] {
        let e = one(&with(msg_in(), "/sender", sender));
        assert_eq!(e.direction, Some(Direction::In));
        assert_eq!(e.sender, None);
        assert!(!e.to_json().contains("sender"), "{}", e.to_json());
    }
    // A sender that is not a sender at all is still a fault.
    sole_fault(
        &with(msg_in(), "/sender", json!({"kind": "alien"})),
        "sender.kind",
    );
    sole_fault(&with(msg_in(), "/sender", json!("bot")), "sender");
}

#[test]
fn outbound_message_without_sender_is_from_the_bot() {
    let e = one(&with(msg_in(), "/direction", json!("out")));
    assert_eq!(e.direction, Some(Direction::Out));
    assert_eq!(e.sender, Some(Sender::Bot));
    assert!(e.to_json().contains(r#""sender":{"kind":"bot"}"#));
}

#[test]
fn outbound_message_keeps_its_operator() {
    let event = with(
        with(msg_in(), "/direction", json!("out")),
        "/sender",
        json!({"kind": "operator", "id": "op-1"}),
    );
    let e = one(&event);
    assert_eq!(
        e.sender,
        Some(Sender::Operator {
            id: "op-1".to_owned()
        })
    );
}

#[test]
fn user_event_upserts_the_profile() {
    let e = one(&user_upsert());
    assert_eq!(e.kind, EventKind::User);
    assert_eq!(e.direction, None);
    assert_eq!(e.sender, None);
    assert_eq!(e.text, None);
    assert_eq!(
        e.user,
        UserInfo {
            id: "5532".to_owned(),
            name: some("Олена К."),
            avatar: None,
            gender: None,
            lang: some("uk"),
        }
    );
}

#[test]
fn user_event_refuses_message_fields() {
    for (pointer, value, field) in [
        ("/text", json!("hello"), "text"),
        ("/text", json!(""), "text"),
        ("/direction", json!("in"), "direction"),
        ("/direction", json!("out"), "direction"),
        (
            "/attachments",
            json!([{"type": "file", "url": "https://example.com/f"}]),
            "attachments",
        ),
        ("/sender", json!({"kind": "bot"}), "sender"),
    ] {
        let reason = sole_fault(&with(user_upsert(), pointer, value), field);
        assert!(reason.contains("message"), "{reason}");
    }
    // All of them at once: each is named.
    let all = with(
        with(
            with(user_upsert(), "/text", json!("hello")),
            "/direction",
            json!("out"),
        ),
        "/sender",
        json!({"kind": "bot"}),
    );
    assert_eq!(
        sorted(fault_fields(&all)),
        sorted(vec![some("direction"), some("sender"), some("text")])
    );
}

#[test]
fn unknown_type_is_refused() {
    for bad in ["reaction", "Message", "", "mode_changed"] {
        let reason = sole_fault(&with(msg_in(), "/type", json!(bad)), "type");
        assert!(
            reason.contains("message"),
            "lists the known types: {reason}"
        );
    }
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

#[test]
fn text_up_to_16_kib_is_accepted() {
    let text = "a".repeat(16 * KIB);
    let e = one(&with(msg_in(), "/text", json!(text)));
    assert_eq!(e.text.map(|t| t.len()), Some(16 * KIB));
}

#[test]
fn text_over_16_kib_is_too_large() {
    let event = with(msg_in(), "/text", json!("a".repeat(16 * KIB + 1)));
    let faults = too_large(&event.to_string());
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].index, 0);
    assert_eq!(faults[0].field.as_deref(), Some("text"));
    assert_eq!(faults[0].problem, Problem::TooLarge);
}

#[test]
fn text_is_measured_in_bytes() {
    // "é" is 2 bytes in UTF-8, "€" 3, "😀" 4.
    let fits = "é".repeat(8 * KIB);
    assert_eq!(fits.len(), 16 * KIB);
    one(&with(msg_in(), "/text", json!(fits)));

    for over in [
        "é".repeat(8 * KIB + 1),
        "€".repeat(5462),
        "😀".repeat(4 * KIB + 1),
        format!("{}ж", "a".repeat(16 * KIB - 1)),
    ] {
        assert!(over.len() > 16 * KIB && over.chars().count() <= 16 * KIB);
        let faults = too_large(&with(msg_in(), "/text", json!(over)).to_string());
        assert_eq!(faults.len(), 1, "{faults:?}");
        assert_eq!(faults[0].field.as_deref(), Some("text"));
    }
    let fits = format!("{}€", "a".repeat(16 * KIB - 3));
    one(&with(msg_in(), "/text", json!(fits)));
}

#[test]
fn text_is_measured_after_json_unescaping() {
    // 16 KiB of text written with escapes is 32 KiB on the wire, but still fits.
    let escaped = format!(
        r#"{{"bot":"helpdesk","type":"message","direction":"in","provider":"telegram","user":{{"id":"1"}},"text":"{}"}}"#,
        r"\n".repeat(16 * KIB)
    );
    assert!(escaped.len() > 32 * KIB);
    let e = batch(&escaped).expect("valid")[0].clone();
    assert_eq!(e.text.as_deref(), Some("\n".repeat(16 * KIB).as_str()));
}

#[test]
fn event_of_64_kib_is_accepted() {
    let body = padded_to(&msg_in(), 64 * KIB);
    assert_eq!(body.len(), 64 * KIB);
    let events = batch(&body).expect("an event of exactly 64 KiB is fine");
    assert_eq!(events[0].id, "e-1");
    let in_array = format!("[{body}]");
    assert!(batch(&in_array).is_ok());
}

#[test]
fn event_over_64_kib_is_too_large_as_a_whole() {
    let body = padded_to(&msg_in(), 64 * KIB + 1);
    let faults = too_large(&body);
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].index, 0);
    assert_eq!(faults[0].field, None);
    assert_eq!(faults[0].problem, Problem::TooLarge);

    // In a batch, it is named by its index.
    let body = format!("[{}, {body}]", msg_in());
    let faults = too_large(&body);
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!((faults[0].index, faults[0].field.as_deref()), (1, None));
}

#[test]
fn too_large_wins_over_invalid_and_still_names_every_fault() {
    let big = with(msg_in(), "/text", json!("a".repeat(16 * KIB + 1)));
    let bad = without(msg_in(), "/user");
    let body = format!("[{bad}, {big}]");
    let faults = too_large(&body);
    let found: Vec<(usize, Option<&str>, Problem)> = faults
        .iter()
        .map(|f| (f.index, f.field.as_deref(), f.problem))
        .collect();
    assert_eq!(
        found,
        vec![
            (0, Some("user"), Problem::Invalid),
            (1, Some("text"), Problem::TooLarge),
        ]
    );
}

#[test]
fn batch_of_1000_events_is_accepted() {
    let body = Value::Array(
        (0..1000)
            .map(|i| with(msg_in(), "/id", json!(format!("e-{i}"))))
            .collect(),
    )
    .to_string();
    let events = batch(&body).expect("1000 events are fine");
    assert_eq!(events.len(), 1000);
    assert_eq!(events[0].id, "e-0");
    assert_eq!(events[999].id, "e-999");
}

#[test]
fn batch_of_1001_events_is_too_large() {
    let body = Value::Array(vec![msg_in(); 1001]).to_string();
    let faults = too_large(&body);
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].field, None);
    assert_eq!(faults[0].problem, Problem::TooLarge);
    assert!(faults[0].reason.contains("1001"), "{}", faults[0].reason);
}

#[test]
fn body_of_4_mib_is_accepted() {
    let event = msg_in().to_string();
    let pad = 4 * MIB - event.len() - 2;
    let body = format!("[{event}{}]", " ".repeat(pad));
    assert_eq!(body.len(), 4 * MIB);
    assert_eq!(batch(&body).expect("exactly 4 MiB is fine").len(), 1);
}

#[test]
fn body_over_4_mib_is_too_large() {
    let event = msg_in().to_string();
    let pad = 4 * MIB - event.len() - 1;
    let body = format!("[{event}{}]", " ".repeat(pad));
    assert_eq!(body.len(), 4 * MIB + 1);
    let faults = too_large(&body);
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].field, None);
    assert_eq!(faults[0].problem, Problem::TooLarge);

    // A body over the limit is refused before it is read as JSON at all.
    let garbage = vec![b'x'; 4 * MIB + 1];
    match batch_bytes(&garbage) {
        Err(BatchError::TooLarge(_)) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn limits_are_taken_from_the_limits_given() {
    let small = Limits {
        max_text_bytes: 4,
        max_event_bytes: 400,
        max_batch_events: 2,
        max_batch_bytes: 1000,
        ..Limits::default()
    };
    let run = |body: &str| parse_batch(body.as_bytes(), now(), &small);
    let hi = with(msg_in(), "/text", json!("four"));
    assert!(run(&hi.to_string()).is_ok());
    assert!(matches!(
        run(&with(msg_in(), "/text", json!("fiver")).to_string()),
        Err(BatchError::TooLarge(_))
    ));
    assert!(run(&format!("[{hi},{hi}]")).is_ok());
    assert!(matches!(
        run(&format!("[{hi},{hi},{hi}]")),
        Err(BatchError::TooLarge(_))
    ));
    assert!(matches!(
        run(&padded_to(&hi, 401)),
        Err(BatchError::TooLarge(_))
    ));
    assert!(matches!(
        run(&format!("[{hi}{}]", " ".repeat(1000))),
        Err(BatchError::TooLarge(_))
    ));
}

// ---------------------------------------------------------------------------
// Malformed bodies
// ---------------------------------------------------------------------------

#[test]
fn malformed_json_is_malformed() {
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
        // Trailing content after the value.
        "{}{}",
        "[] []",
        "[{}] x",
        "{} ,",
    ] {
        malformed(body.as_bytes());
    }
}

#[test]
fn empty_body_is_malformed() {
    for body in ["", " ", "\n\t\r\n  "] {
        malformed(body.as_bytes());
    }
}

#[test]
fn json_scalar_body_is_malformed() {
    for body in ["42", "-1.5", "\"event\"", "null", "true", "false"] {
        let reason = malformed(body.as_bytes());
        assert!(
            reason.contains("object") || reason.contains("array"),
            "{reason}"
        );
    }
}

#[test]
fn invalid_utf8_is_malformed() {
    let event = msg_in().to_string();
    let at = event.find("\"hi\"").expect("the text") + 1;
    let bads: [&[u8]; 4] = [&[0xff], &[0xc3, 0x28], &[0xed, 0xa0, 0x80], &[0xe2, 0x82]];
    for bad in bads {
        let mut body = event.as_bytes()[..at].to_vec();
        body.extend_from_slice(bad);
        body.extend_from_slice(&event.as_bytes()[at..]);
        malformed(&body);
        let mut in_array = b"[".to_vec();
        in_array.extend_from_slice(&body);
        in_array.push(b']');
        malformed(&in_array);
    }
    malformed(&[0xff, 0xfe, b'{', b'}']);
}

#[test]
fn lone_surrogate_escape_is_malformed() {
    // Well-formed escapes that cannot be a UTF-8 string.
    for text in [r"\ud800", r"\udfff", r"a\ud83d"] {
        let body = with(msg_in(), "/text", json!("TEXT"))
            .to_string()
            .replace("TEXT", text);
        malformed(body.as_bytes());
        malformed(format!("[{body}]").as_bytes());
    }
    // A proper surrogate pair is fine.
    let body = with(msg_in(), "/text", json!("TEXT"))
        .to_string()
        .replace("TEXT", r"\ud83d\ude00");
    assert_eq!(batch(&body).expect("valid")[0].text.as_deref(), Some("😀"));
}

#[test]
fn deeply_nested_json_is_malformed() {
    let depth = 10_000;
    let open = "[".repeat(depth);
    let close = "]".repeat(depth);
    // Unterminated.
    malformed(open.as_bytes());
    // Well-formed, but nested beyond what is parsed.
    malformed(format!("{open}{close}").as_bytes());
    let objects = format!("{}{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    malformed(objects.as_bytes());
    // Nested inside an otherwise valid event, alone or in a batch.
    let event = with(msg_in(), "/extra", json!("NEST"))
        .to_string()
        .replace("\"NEST\"", &format!("{open}{close}"));
    malformed(event.as_bytes());
    malformed(format!("[{}, {event}]", msg_in()).as_bytes());
}

#[test]
fn moderately_nested_extra_fields_are_not_malformed() {
    let nest = format!("{}{}", "[".repeat(50), "]".repeat(50));
    let event = with(msg_in(), "/extra", json!("NEST"))
        .to_string()
        .replace("\"NEST\"", &nest);
    assert!(batch(&event).is_ok());
}

#[test]
fn empty_array_is_invalid() {
    for body in ["[]", " [ ] ", "[\n]"] {
        let faults = invalid(body);
        assert_eq!(faults.len(), 1, "{faults:?}");
        assert_eq!((faults[0].index, faults[0].field.as_deref()), (0, None));
    }
}

// ---------------------------------------------------------------------------
// One event at a time (the Redis stream path)
// ---------------------------------------------------------------------------

#[test]
fn parse_event_names_faults_with_the_given_index() {
    let bad = without(msg_in(), "/user/id");
    let faults = parse_event(bad.to_string().as_bytes(), 7, now(), &Limits::default())
        .expect_err("missing user.id");
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].index, 7);
    assert_eq!(faults[0].field.as_deref(), Some("user.id"));

    let faults = parse_event(b"not json", 3, now(), &Limits::default()).expect_err("not JSON");
    assert_eq!((faults[0].index, faults[0].field.as_deref()), (3, None));

    let big = padded_to(&msg_in(), 64 * KIB + 1);
    let faults = parse_event(big.as_bytes(), 2, now(), &Limits::default()).expect_err("too large");
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].index, 2);
    assert_eq!(faults[0].problem, Problem::TooLarge);
}

#[test]
fn parse_event_value_validates_like_a_batch() {
    let from_value = parse_event_value(msg_in(), 0, now(), &Limits::default()).expect("valid");
    assert_eq!(from_value, one(&msg_in()));

    let faults = parse_event_value(
        with(msg_in(), "/direction", json!("sideways")),
        4,
        now(),
        &Limits::default(),
    )
    .expect_err("bad direction");
    assert_eq!(
        (faults[0].index, faults[0].field.as_deref()),
        (4, Some("direction"))
    );
    let faults =
        parse_event_value(json!([1, 2]), 0, now(), &Limits::default()).expect_err("not an object");
    assert_eq!(faults[0].field, None);
}

#[test]
fn faults_serialise_as_the_api_details() {
    let faults = invalid(&format!(
        "[{}, 42, {}]",
        msg_in(),
        without(msg_in(), "/user/id")
    ));
    let details = serde_json::to_value(&faults).expect("serialisable");
    let details = details.as_array().expect("an array");
    assert_eq!(details.len(), 2);
    assert_eq!(details[0]["index"], 1);
    assert!(details[0].get("field").is_none(), "{}", details[0]);
    assert_eq!(details[1]["index"], 2);
    assert_eq!(details[1]["field"], "user.id");
    for d in details {
        assert!(d["reason"].as_str().is_some_and(|r| !r.is_empty()), "{d}");
        let keys = sorted(d.as_object().expect("an object").keys().cloned().collect());
        assert!(
            keys == ["index", "reason"] || keys == ["field", "index", "reason"],
            "{keys:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Slugs
// ---------------------------------------------------------------------------

#[test]
fn is_slug_edge_cases() {
    let longest = "a".repeat(64);
    let dashes = format!("x{}", "-".repeat(63));
    let too_long = "a".repeat(65);
    for good in [
        "a",
        "0",
        "helpdesk",
        "help-desk",
        "help_desk",
        "a-",
        "a_",
        "9lives",
        "a--b__c",
        &longest,
        &dashes,
    ] {
        assert!(is_slug(good), "{good:?} is a slug");
    }
    for bad in [
        "",
        &too_long,
        "-a",
        "_a",
        "-",
        "_",
        "A",
        "Helpdesk",
        "helpDesk",
        "help desk",
        " a",
        "a ",
        "a.b",
        "a/b",
        "a\n",
        "é",
        "бот",
        "a\u{0}",
    ] {
        assert!(!is_slug(bad), "{bad:?} is not a slug");
    }
}

#[test]
fn stream_entries_without_an_id_get_the_one_given_on_both_paths() {
    let limits = Limits::default();
    let no_id = without(msg_in(), "/id");
    // Valid and plain: the fast path.
    let fast = super::parse_event_with_id(no_id.to_string().as_bytes(), now(), &limits, || {
        "redis-1-0".to_owned()
    })
    .expect("valid");
    assert_eq!(fast.id, "redis-1-0");
    // A repeated member sends it the slow way: the same id all the same.
    let repeated = no_id.to_string().replacen('{', r#"{"text":"first","#, 1);
    let slow = super::parse_event_with_id(repeated.as_bytes(), now(), &limits, || {
        "redis-1-0".to_owned()
    })
    .expect("valid");
    assert_eq!(slow.id, "redis-1-0");
    // An id present wins; faults are still named.
    let with_id =
        super::parse_event_with_id(msg_in().to_string().as_bytes(), now(), &limits, || {
            "unused".to_owned()
        })
        .expect("valid");
    assert_ne!(with_id.id, "unused");
    let faults = super::parse_event_with_id(br#"{"bot":"Bad"}"#, now(), &limits, String::new)
        .expect_err("invalid");
    assert!(faults.iter().any(|f| f.field.as_deref() == Some("bot")));
}

/// `mode_changed` is botwatch's own: refused from bots and adapters, read back from
/// botwatch's log (`own_kinds`) with its mode.
#[test]
fn mode_changes_are_botwatchs_own_events() {
    let change = json!({
        "id": "m-1", "bot": "helpdesk", "type": "mode_changed", "provider": "telegram",
        "user": {"id": "5532"}, "mode": "manual",
        "sender": {"kind": "operator", "id": "anna"}, "ts": "2026-11-26T10:15:00.123Z"
    });
    let faults = invalid(&change.to_string());
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0].field.as_deref(), Some("type"));

    let own = Limits {
        own_kinds: true,
        ..Limits::default()
    };
    let read = |v: &Value| parse_event(v.to_string().as_bytes(), 0, now(), &own);
    let event = read(&change).expect("botwatch's own event");
    assert_eq!(
        (event.kind, event.mode),
        (EventKind::ModeChanged, Some(Mode::Manual))
    );
    assert_eq!(event.to_json(), read(&change).expect("again").to_json());
    let back: Event = serde_json::from_str(&event.to_json()).expect("canonical JSON reads back");
    assert_eq!(back, event);

    let faults = read(&without(change.clone(), "/mode")).expect_err("no mode");
    assert_eq!(faults[0].field.as_deref(), Some("mode"));
    let faults = read(&with(change, "/mode", json!("maybe"))).expect_err("bad mode");
    assert_eq!(faults[0].field.as_deref(), Some("mode"));

    // Any other kind ignores a `mode` field, like any field it does not know.
    let message = one(&with(msg_in(), "/mode", json!(5)));
    assert_eq!(message.mode, None);
}

/// An operator message botwatch writes is `pending`, and its outcome is a `delivery`
/// event: both read back from botwatch's log only; bots' `delivery` fields are ignored.
#[test]
fn deliveries_are_botwatchs_own() {
    let own = Limits {
        own_kinds: true,
        ..Limits::default()
    };
    let read = |v: &Value| parse_event(v.to_string().as_bytes(), 0, now(), &own);
    let operator_message = json!({
        "id": "op-1", "bot": "helpdesk", "type": "message", "direction": "out",
        "provider": "telegram", "user": {"id": "5532"}, "text": "Hello, Anna here",
        "sender": {"kind": "operator", "id": "anna"}, "delivery": {"state": "pending"},
        "ts": "2026-11-26T10:15:00.123Z"
    });
    let event = read(&operator_message).expect("an operator message botwatch wrote");
    assert_eq!(
        event.delivery.as_ref().map(|d| d.state),
        Some(DeliveryState::Pending)
    );
    let back: Event = serde_json::from_str(&event.to_json()).expect("canonical JSON reads back");
    assert_eq!(back, event);
    // From a bot, the same field is not botwatch's to trust: it is dropped.
    assert_eq!(one(&operator_message).delivery, None);
    // Only an operator's message can be pending.
    let by_bot = with(operator_message.clone(), "/sender", json!({"kind": "bot"}));
    let faults = read(&by_bot).expect_err("a bot's message is not delivered by botwatch");
    assert_eq!(faults[0].field.as_deref(), Some("delivery"));

    let outcome = json!({
        "id": "d-1", "bot": "helpdesk", "type": "delivery", "provider": "telegram",
        "user": {"id": "5532"},
        "delivery": {"message": "op-1", "state": "failed", "reason": "Forbidden: bot was blocked by the user"},
        "ts": "2026-11-26T10:15:01.000Z"
    });
    let faults = invalid(&outcome.to_string());
    assert_eq!(
        faults[0].field.as_deref(),
        Some("type"),
        "refused from bots"
    );
    let event = read(&outcome).expect("botwatch's own");
    let delivery = event.delivery.clone().expect("delivery");
    assert_eq!(delivery.message.as_deref(), Some("op-1"));
    assert_eq!(delivery.state, DeliveryState::Failed);
    assert!(
        delivery
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("blocked"))
    );
    assert_eq!(
        serde_json::from_str::<Event>(&event.to_json()).expect("reads back"),
        event
    );
    for bad in [
        without(outcome.clone(), "/delivery"),
        without(outcome.clone(), "/delivery/message"),
        with(outcome.clone(), "/delivery/state", json!("pending")),
        with(outcome.clone(), "/delivery/state", json!("lost")),
    ] {
        let faults = read(&bad).expect_err("a delivery without its parts");
        assert!(
            faults[0]
                .field
                .as_deref()
                .is_some_and(|f| f.starts_with("delivery")),
            "{faults:?}"
        );
    }
}

/// `handoff` is botwatch's own: refused from bots, read back from botwatch's log.
#[test]
fn handoffs_are_botwatchs_own() {
    let handoff = json!({
        "id": "handoff-1", "bot": "helpdesk", "type": "handoff", "provider": "telegram",
        "user": {"id": "5532"}, "text": "I want a human", "ts": "2026-11-26T10:15:00.123Z"
    });
    let faults = invalid(&handoff.to_string());
    assert_eq!(faults[0].field.as_deref(), Some("type"));
    let own = Limits {
        own_kinds: true,
        ..Limits::default()
    };
    let event = parse_event(handoff.to_string().as_bytes(), 0, now(), &own).expect("own");
    assert_eq!(event.kind, EventKind::Handoff);
    assert_eq!(event.text.as_deref(), Some("I want a human"));
    let back: Event = serde_json::from_str(&event.to_json()).expect("reads back");
    assert_eq!(back, event);
}

/// `audience` and `broadcast` are botwatch's own: refused from bots, read back from
/// botwatch's log with their payloads checked; events about the bot need no user.
#[test]
fn audience_and_broadcasts_are_botwatchs_own() {
    let edit = json!({
        "id": "aud-1", "bot": "helpdesk", "type": "audience", "provider": "telegram",
        "user": {"id": "5532"},
        "audience": {"op": "edit", "role": "r-1", "add_tags": ["t-1"], "subscriber": false,
                     "fields": {"phone": "+380"}},
        "ts": "2026-11-26T10:15:00.123Z"
    });
    let label = json!({
        "id": "aud-2", "bot": "helpdesk", "type": "audience", "provider": "botwatch",
        "user": {"id": ""},
        "audience": {"op": "label", "of": "tag", "key": "t-1", "name": "Клієнти"},
        "ts": "2026-11-26T10:15:00.123Z"
    });
    let broadcast = json!({
        "id": "broadcast-b1", "bot": "helpdesk", "type": "broadcast", "provider": "botwatch",
        "user": {"id": ""}, "text": "News",
        "broadcast": {"id": "b1", "state": "queued", "total": 3, "to": "all"},
        "ts": "2026-11-26T10:15:00.123Z"
    });
    for event in [&edit, &label, &broadcast] {
        let faults = invalid(&event.to_string());
        assert!(
            faults.iter().any(|f| f.field.as_deref() == Some("type")),
            "{faults:?}"
        );
    }
    let own = Limits {
        own_kinds: true,
        ..Limits::default()
    };
    let read = |v: &Value| parse_event(v.to_string().as_bytes(), 0, now(), &own);
    for event in [&edit, &label, &broadcast] {
        let e = read(event).expect("botwatch's own event");
        let back: Event = serde_json::from_str(&e.to_json()).expect("canonical JSON reads back");
        assert_eq!(back, e);
        assert_eq!(
            read(&serde_json::from_str(&e.to_json()).expect("json")).expect("again"),
            e
        );
    }
    assert!(read(&label).expect("label").is_about_bot());
    assert!(!read(&edit).expect("edit").is_about_bot());
    // Payloads are checked: a tag key with a space, a field too long, no payload.
    let faults = read(&with(edit.clone(), "/audience/add_tags", json!(["a b"]))).expect_err("key");
    assert_eq!(faults[0].field.as_deref(), Some("audience.add_tags"));
    let long = "x".repeat(2000);
    let faults =
        read(&with(edit.clone(), "/audience/fields/notes", json!(long))).expect_err("long");
    assert_eq!(faults[0].field.as_deref(), Some("audience.fields"));
    let faults = read(&without(edit, "/audience")).expect_err("no payload");
    assert_eq!(faults[0].field.as_deref(), Some("audience"));
    let faults = read(&with(broadcast, "/broadcast/state", json!("maybe"))).expect_err("state");
    assert_eq!(faults[0].field.as_deref(), Some("broadcast"));
}
