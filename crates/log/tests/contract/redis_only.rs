//! What only the Redis backend has: entries that adapters `XADD` straight into the
//! stream, validated when read.

use botwatch_log::{EventLog, Position};

use super::{Backend, Redis, at, ids, msg};

async fn xadd(b: &Redis, fields: &[(&str, &str)]) -> String {
    let mut con = b.raw().await;
    let mut cmd = redis::cmd("XADD");
    cmd.arg(format!("{}events", b.config().prefix)).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query_async(&mut con).await.expect("xadd")
}

/// Every entry of a stream: (stream id, fields in order).
async fn entries(b: &Redis, key: &str) -> Vec<(String, Vec<(String, String)>)> {
    redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut b.raw().await)
        .await
        .expect("xrange")
}

async fn dead_letters(b: &Redis) -> Vec<(String, String)> {
    entries(b, &format!("{}events:dead", b.config().prefix))
        .await
        .into_iter()
        .map(|(_, fields)| {
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (get("id"), get("reason"))
        })
        .collect()
}

#[tokio::test]
async fn invalid_entries_are_dead_lettered_once_and_never_block() {
    let b = Redis::new();
    let log = b.open().await;
    let bad_json = xadd(&b, &[("event", "{not json")]).await;
    let no_field = xadd(&b, &[("payload", "x")]).await;
    let bad_bot = xadd(
        &b,
        &[("event", r#"{"bot":"Bad Bot","type":"message","direction":"in","provider":"web","user":{"id":"u"}}"#)],
    )
    .await;
    let good = xadd(
        &b,
        &[("event", r#"{"id":"ok-1","bot":"b1","type":"message","direction":"in","provider":"web","user":{"id":"u"},"text":"hi"}"#)],
    )
    .await;

    let batch = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!(
        ids(&batch.entries),
        ["ok-1"],
        "the valid entry after three bad ones is read"
    );
    assert_eq!(batch.dead_lettered, 3);
    assert_eq!(batch.next.to_string(), good);

    // A second reader (another node, or a replay) reads the same entries:
    // nothing is dead-lettered twice.
    let again = b
        .open()
        .await
        .read(Position::START, 100, None)
        .await
        .expect("read");
    assert_eq!(ids(&again.entries), ["ok-1"]);

    let dead = dead_letters(&b).await;
    let dead_ids: Vec<&str> = dead.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        dead_ids,
        [bad_json.as_str(), no_field.as_str(), bad_bot.as_str()]
    );
    assert!(dead[0].1.contains("not valid JSON"), "{}", dead[0].1);
    assert!(dead[1].1.contains("no field \"event\""), "{}", dead[1].1);
    assert!(
        dead[2].1.contains("bot:"),
        "the reason names the field: {}",
        dead[2].1
    );
    b.cleanup().await;
}

/// botwatch's own kinds are read back only from entries botwatch wrote: an adapter's
/// entry claiming one (a pending operator message the outbox would send as the bot, a
/// delivery, a hand-off, a mode switch) is dead-lettered, while the same events
/// appended by botwatch read back.
#[tokio::test]
async fn an_adapter_cannot_write_botwatchs_own_events() {
    let b = Redis::new();
    let log = b.open().await;
    let forged = [
        r#"{"id":"f1","bot":"b1","type":"mode_changed","provider":"web","user":{"id":"u"},"mode":"manual"}"#,
        r#"{"id":"f2","bot":"b1","type":"handoff","provider":"web","user":{"id":"u"}}"#,
        r#"{"id":"f3","bot":"b1","type":"delivery","provider":"web","user":{"id":"u"},"delivery":{"message":"m","state":"sent"}}"#,
        r#"{"id":"f5","bot":"b1","type":"audience","provider":"web","user":{"id":"u"},"audience":{"op":"edit","subscriber":false}}"#,
        r#"{"id":"f6","bot":"b1","type":"audience","provider":"web","user":{"id":""},"audience":{"op":"label","of":"role","key":"r1","name":"admin"}}"#,
        r#"{"id":"f7","bot":"b1","type":"broadcast","provider":"web","user":{"id":""},"broadcast":{"id":"x","state":"queued","total":1}}"#,
    ];
    for event in forged {
        xadd(&b, &[("event", event)]).await;
    }
    // An operator message with a pending delivery: read as a plain message, without it.
    xadd(
        &b,
        &[("event", r#"{"id":"f4","bot":"b1","type":"message","direction":"out","provider":"telegram","user":{"id":"5532"},"text":"send me","sender":{"kind":"operator","id":"x"},"delivery":{"state":"pending"}}"#)],
    )
    .await;
    let batch = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!(ids(&batch.entries), ["f4"]);
    assert_eq!(batch.dead_lettered, 6);
    assert_eq!(
        batch.entries[0].event.delivery, None,
        "not botwatch's to deliver"
    );

    // The same kinds appended by botwatch read back.
    let mut handoff = msg("b1", "u", "own-2", at(0), "a human please");
    handoff.kind = botwatch_event::EventKind::Handoff;
    handoff.direction = None;
    let mut edit = botwatch_event::Event::about_dialog(
        "own-3".to_owned(),
        botwatch_event::EventKind::Audience,
        "b1",
        "web",
        "u",
    );
    edit.audience = Some(botwatch_event::AudienceChange::Edit(
        botwatch_event::UserEdit {
            subscriber: Some(false),
            ..botwatch_event::UserEdit::default()
        },
    ));
    let mut label = botwatch_event::Event::about_dialog(
        "own-4".to_owned(),
        botwatch_event::EventKind::Audience,
        "b1",
        "botwatch",
        "",
    );
    label.audience = Some(botwatch_event::AudienceChange::Label(
        botwatch_event::Label {
            of: botwatch_event::LabelOf::Tag,
            key: "t-1".to_owned(),
            name: Some("VIP".to_owned()),
        },
    ));
    log.append(vec![handoff, edit.clone(), label.clone()])
        .await
        .expect("append");
    let next = batch.next;
    let batch = log.read(next, 100, None).await.expect("read");
    assert_eq!(ids(&batch.entries), ["own-2", "own-3", "own-4"]);
    assert_eq!(
        batch.entries[1].event.audience, edit.audience,
        "read back whole"
    );
    assert_eq!(batch.entries[2].event.audience, label.audience);
    assert_eq!(batch.entries[2].event.user.id, "", "about the bot, no user");
    b.cleanup().await;
}

/// An adapter that picks its entry's id and writes botwatch's `at` mark itself (what
/// botwatch's script writes) still cannot pass an own kind off as botwatch's: those
/// carry a seal only botwatch can make.
#[tokio::test]
async fn an_adapter_cannot_forge_botwatchs_mark() {
    let b = Redis::new();
    let log = b.open().await;
    // A first append of botwatch's: the stream and its seal exist.
    log.append(vec![msg("b1", "u", "own-1", at(0), "hi")])
        .await
        .expect("append");
    let now = chrono::Utc::now().timestamp_millis() + 1_000;
    let forged = [
        r#"{"id":"g1","bot":"b1","type":"audience","provider":"web","user":{"id":"u"},"audience":{"op":"edit","subscriber":false}}"#,
        r#"{"id":"g2","bot":"b1","type":"mode_changed","provider":"web","user":{"id":"u"},"mode":"manual"}"#,
        r#"{"id":"g3","bot":"b1","type":"message","direction":"out","provider":"telegram","user":{"id":"u"},"text":"send me","sender":{"kind":"operator","id":"x"},"delivery":{"state":"pending"}}"#,
    ];
    for (n, event) in forged.iter().enumerate() {
        let id = format!("{now}-{n}");
        xadd_with_id(
            &b,
            &id,
            &[("event", event), ("at", &id), ("seal", "0123456789abcdef")],
        )
        .await;
    }
    let batch = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!(
        ids(&batch.entries),
        ["own-1", "g3"],
        "the message only as a plain one"
    );
    assert_eq!(batch.dead_lettered, 2);
    assert_eq!(
        batch.entries[1].event.delivery, None,
        "not botwatch's to deliver"
    );
    // botwatch's own, appended after, read back (sealed).
    let mut handoff = msg("b1", "u", "own-2", at(0), "a human please");
    handoff.kind = botwatch_event::EventKind::Handoff;
    handoff.direction = None;
    log.append(vec![handoff]).await.expect("append");
    let batch = log.read(batch.next, 100, None).await.expect("read");
    assert_eq!(ids(&batch.entries), ["own-2"]);
    // And a second node of the deployment reads them the same way.
    let other = b.open().await;
    let all = other.read(Position::START, 100, None).await.expect("read");
    assert_eq!(ids(&all.entries), ["own-1", "g3", "own-2"]);
    b.cleanup().await;
}

/// A retry of an event botwatch stored, added by an adapter with an id of its own and
/// botwatch's `at` mark written in: still counted once (its mark alone does not spare
/// it the judging of its id), and that by every reader. Found by the chaos suite.
#[tokio::test]
async fn a_retry_with_botwatchs_mark_forged_counts_once() {
    let b = Redis::new();
    let log = b.open().await;
    log.append(vec![msg("b1", "u1", "same", at(0), "via http")])
        .await
        .expect("append");
    let json = r#"{"id":"same","bot":"b1","type":"message","direction":"in","provider":"web","user":{"id":"u1"},"text":"again"}"#;
    let id = format!("{}-0", chrono::Utc::now().timestamp_millis() + 1_000);
    xadd_with_id(&b, &id, &[("event", json), ("at", &id)]).await;
    for reader in [&log, &b.open().await] {
        let batch = reader.read(Position::START, 100, None).await.expect("read");
        assert_eq!((ids(&batch.entries), batch.duplicates), (vec!["same"], 1));
        // Read on from the forged entry alone, as a follower would.
        let after = reader
            .read(batch.entries[0].position, 100, None)
            .await
            .expect("read");
        assert_eq!((ids(&after.entries), after.duplicates), (vec![], 1));
    }
    b.cleanup().await;
}

#[tokio::test]
async fn adapter_entries_are_deduplicated_against_ingested_ones() {
    let b = Redis::new();
    let log = b.open().await;
    log.append(vec![msg("b1", "u1", "same", at(0), "via http")])
        .await
        .expect("append");
    let json = r#"{"id":"same","bot":"b1","type":"message","direction":"in","provider":"web","user":{"id":"u1"},"text":"via xadd"}"#;
    xadd(&b, &[("event", json)]).await;
    // An adapter retrying its own XADD: the first copy counts.
    let json2 = r#"{"id":"twice","bot":"b1","type":"message","direction":"in","provider":"web","user":{"id":"u1"},"text":"first","ts":"2026-06-01T10:00:00Z"}"#;
    xadd(&b, &[("event", json2)]).await;
    xadd(&b, &[("event", json2)]).await;

    for reader in 0..2 {
        let batch = b
            .open()
            .await
            .read(Position::START, 100, None)
            .await
            .expect("read");
        assert_eq!(ids(&batch.entries), ["same", "twice"], "reader {reader}");
        assert_eq!(batch.entries[0].event.text.as_deref(), Some("via http"));
        assert_eq!(batch.duplicates, 2, "reader {reader}");
    }
    // Entries written by adapters join the dialog history once read.
    let history = log.history("b1", "u1", None, 10).await.expect("history");
    assert_eq!(
        ids(&history.entries),
        ["twice", "same"],
        "newest event time first"
    );
    b.cleanup().await;
}

#[tokio::test]
async fn adapter_entries_without_id_or_ts_get_them_from_the_stream_id() {
    let b = Redis::new();
    let log = b.open().await;
    let sid = xadd(
        &b,
        &[(
            "event",
            r#"{"bot":"b1","type":"message","direction":"in","provider":"web","user":{"id":"u1"}}"#,
        )],
    )
    .await;
    let first = log.read(Position::START, 10, None).await.expect("read");
    let second = b
        .open()
        .await
        .read(Position::START, 10, None)
        .await
        .expect("read");
    assert_eq!(first.entries[0].event.id, format!("redis-{sid}"));
    assert_eq!(
        first.entries[0].event, second.entries[0].event,
        "every reader derives the same event"
    );
    let pos: Position = sid.parse().expect("stream id");
    assert_eq!(first.entries[0].event.ts_millis(), pos.ms as i64);
    b.cleanup().await;
}

#[tokio::test]
async fn events_land_in_the_stream_named_by_the_api() {
    let b = Redis::new();
    let log = b.open().await;
    assert_eq!(log.events_key(), format!("{}events", b.config().prefix));
    assert_eq!(log.dead_key(), format!("{}events:dead", b.config().prefix));
    log.append(vec![msg("b1", "u1", "e1", at(0), "hi")])
        .await
        .expect("append");
    let mut con = b.raw().await;
    let len: u64 = redis::cmd("XLEN")
        .arg(log.events_key())
        .query_async(&mut con)
        .await
        .expect("xlen");
    assert_eq!(len, 1);
    let entries = entries(&b, log.events_key()).await;
    let (field, json) = &entries[0].1[0];
    assert_eq!(field, "event");
    let v: serde_json::Value = serde_json::from_str(json).expect("json");
    assert_eq!(v["id"], "e1");
    assert_eq!(v["type"], "message");
    b.cleanup().await;
}

#[tokio::test]
async fn a_verbatim_copy_of_an_ingested_entry_counts_once() {
    let b = Redis::new();
    let log = b.open().await;
    log.append(vec![msg("b1", "u1", "e1", at(0), "hi")])
        .await
        .expect("append");
    // The ingest script marks its entries with their own id; a copy made elsewhere in
    // the stream carries the mark of another position.
    let original = entries(&b, log.events_key()).await;
    let fields: Vec<(&str, &str)> = original[0]
        .1
        .iter()
        .map(|(f, v)| (f.as_str(), v.as_str()))
        .collect();
    assert!(
        fields
            .iter()
            .any(|(f, v)| *f == "at" && *v == original[0].0),
        "{fields:?}"
    );
    xadd(&b, &fields).await;
    let read = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!((ids(&read.entries), read.duplicates), (vec!["e1"], 1));
    let history = log.history("b1", "u1", None, 10).await.expect("history");
    assert_eq!(history.entries.len(), 1, "the copy is not in the history");
    b.cleanup().await;
}

#[tokio::test]
async fn a_replay_after_the_ids_are_forgotten_still_counts_once() {
    let b = Redis::new();
    let log = b.open().await;
    log.append(vec![msg("b1", "u1", "same", at(0), "via http")])
        .await
        .expect("append");
    let copy = r#"{"id":"same","bot":"b1","type":"message","direction":"in","provider":"web","user":{"id":"u1"},"text":"copy"}"#;
    xadd(&b, &[("event", copy)]).await;
    let first = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!((ids(&first.entries), first.duplicates), (vec!["same"], 1));

    // The dedup window has passed (its hashes expired) and a node replays the stream.
    b.delete_matching("dedup:*").await;
    let replay = b
        .open()
        .await
        .read(Position::START, 100, None)
        .await
        .expect("read");
    assert_eq!(ids(&replay.entries), ["same"]);
    assert_eq!(
        replay.entries[0].event.text.as_deref(),
        Some("via http"),
        "the first entry still owns the id"
    );
    assert_eq!(replay.duplicates, 1);
    let history = log.history("b1", "u1", None, 10).await.expect("history");
    assert_eq!(
        ids(&history.entries),
        ["same"],
        "the copy never enters the history"
    );
    b.cleanup().await;
}

#[tokio::test]
async fn an_adapter_entry_not_yet_read_still_owns_its_id() {
    let b = Redis::new();
    let log = b.open().await;
    let json = r#"{"id":"x1","bot":"b1","type":"message","direction":"in","provider":"web","user":{"id":"u1"},"text":"adapter"}"#;
    xadd(&b, &[("event", json)]).await;
    // HTTP ingest of the same id before any reader has seen the adapter's entry.
    let r = log
        .append(vec![msg("b1", "u1", "x1", at(0), "http")])
        .await
        .expect("append");
    assert_eq!((r.stored, r.duplicates), (1, 0), "ingest cannot know yet");
    let batch = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!(ids(&batch.entries), ["x1"], "counted once");
    assert_eq!(batch.duplicates, 1);
    let again = b
        .open()
        .await
        .read(Position::START, 100, None)
        .await
        .expect("read");
    assert_eq!(
        batch.entries[0].event.text, again.entries[0].event.text,
        "every reader keeps the same copy"
    );
    b.cleanup().await;
}

#[tokio::test]
async fn copies_of_entries_do_not_count() {
    let b = Redis::new();
    let log = b.open().await;
    log.append(vec![msg("b1", "u1", "orig", at(0), "hi")])
        .await
        .expect("append");
    // An adapter replays the stream into itself, fields and all.
    let entries = entries(&b, log.events_key()).await;
    let fields: Vec<(&str, &str)> = entries[0]
        .1
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    xadd(&b, &fields).await;
    let batch = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!((ids(&batch.entries), batch.duplicates), (vec!["orig"], 1));
    b.cleanup().await;
}

#[tokio::test]
async fn dead_letters_keep_the_original_fields() {
    let b = Redis::new();
    let log = b.open().await;
    let sid = xadd(&b, &[("payload", "kept"), ("other", "too")]).await;
    log.read(Position::START, 100, None).await.expect("read");
    let dead = entries(&b, log.dead_key()).await;
    let fields = &dead[0].1;
    assert_eq!(fields[0], ("id".to_owned(), sid));
    assert!(
        fields.contains(&("payload".to_owned(), "kept".to_owned())),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("other".to_owned(), "too".to_owned())),
        "{fields:?}"
    );
    b.cleanup().await;
}

/// Sleeps until 150 ms before a 2-second dedup window boundary on Redis's clock (the
/// one after, when this one is too close to be sure to act before it).
async fn sleep_until_just_before_a_window_boundary(b: &Redis) {
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut b.raw().await)
        .await
        .expect("time");
    let now_ms = secs * 1000 + micros / 1000;
    let to_boundary = 2000 - now_ms % 2000;
    let before = if to_boundary < 300 {
        to_boundary + 1850
    } else {
        to_boundary - 150
    };
    tokio::time::sleep(std::time::Duration::from_millis(before)).await;
}

#[tokio::test]
async fn an_adapters_entry_then_an_http_retry_in_the_next_window_counts_once() {
    let mut b = Redis::new();
    b.set_dedup_window(std::time::Duration::from_secs(2));
    let log = b.open().await;
    sleep_until_just_before_a_window_boundary(&b).await;
    // The adapter's entry, just before a window boundary, not judged by anyone yet…
    let same = r#"{"id":"same","bot":"b1","type":"message","direction":"in","provider":"web","user":{"id":"u1"},"text":"via adapter"}"#;
    xadd(&b, &[("event", same)]).await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // …and the same event retried over HTTP in the next window.
    log.append(vec![msg("b1", "u1", "same", at(0), "via http")])
        .await
        .expect("append");
    for reader in 0..2 {
        let batch = b
            .open()
            .await
            .read(Position::START, 100, None)
            .await
            .expect("read");
        assert_eq!(
            (ids(&batch.entries), batch.duplicates),
            (vec!["same"], 1),
            "reader {reader}"
        );
    }
    b.cleanup().await;
}

#[tokio::test]
async fn a_retry_in_the_next_dedup_window_is_still_recognised() {
    let mut b = Redis::new();
    b.set_dedup_window(std::time::Duration::from_secs(2));
    let log = b.open().await;
    // Append just before a window boundary (on Redis's clock), retry just after it.
    sleep_until_just_before_a_window_boundary(&b).await;
    log.append(vec![msg("b1", "u1", "w1", at(0), "hi")])
        .await
        .expect("append");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let r = log
        .append(vec![msg("b1", "u1", "w1", at(0), "hi")])
        .await
        .expect("append");
    assert_eq!((r.stored, r.duplicates), (0, 1));
    b.cleanup().await;
}

#[tokio::test]
async fn an_entry_with_thousands_of_fields_is_dead_lettered_without_blocking() {
    let b = Redis::new();
    let log = b.open().await;
    let names: Vec<String> = (0..5000).map(|i| format!("f{i}")).collect();
    let fields: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
    xadd(&b, &fields).await;
    let good = r#"{"id":"after","bot":"b1","type":"message","direction":"in","provider":"web","user":{"id":"u"}}"#;
    xadd(&b, &[("event", good)]).await;
    let batch = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!(
        (ids(&batch.entries), batch.dead_lettered),
        (vec!["after"], 1)
    );
    let dead = dead_letters(&b).await;
    assert_eq!(dead.len(), 1);
    b.cleanup().await;
}

#[tokio::test]
async fn an_explicit_id_ahead_of_the_clock_is_refused_loudly_not_silently() {
    let b = Redis::new();
    let log = b.open().await;
    log.append(vec![msg("b1", "u1", "before", at(0), "x")])
        .await
        .expect("append");
    // An adapter adds an entry with an id in the year 2286.
    let ahead = xadd_with_id(&b, "9999999999999-0", &[("event", "{}")]).await;
    let refused = log.append(vec![msg("b1", "u1", "after", at(1), "x")]).await;
    let Err(e) = refused else {
        panic!("ingest behind an entry from the future must fail");
    };
    assert!(e.to_string().contains("ahead of the clock"), "{e}");
    // Readers are not blocked by it: it is dead-lettered like any invalid entry.
    let batch = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!(
        (ids(&batch.entries), batch.dead_lettered),
        (vec!["before"], 1)
    );
    assert_eq!(batch.next.to_string(), ahead);
    b.cleanup().await;
}

#[tokio::test]
async fn ingest_goes_on_after_the_newest_entry_was_deleted() {
    let b = Redis::new();
    let log = b.open().await;
    // An adapter adds an entry ten minutes ahead of the clock (allowed), and somebody
    // deletes it: the stream's last id stays where it was, and new ids must pass it.
    let ahead_ms = chrono::Utc::now().timestamp_millis() + 600_000;
    let id = xadd_with_id(&b, &format!("{ahead_ms}-0"), &[("event", "{}")]).await;
    let mut con = b.raw().await;
    let _: () = redis::cmd("XDEL")
        .arg(log.events_key())
        .arg(&id)
        .query_async(&mut con)
        .await
        .expect("xdel");
    log.append(vec![msg("b1", "u1", "after", at(0), "x")])
        .await
        .expect("ingest after the deleted entry");
    let batch = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!(ids(&batch.entries), ["after"]);
    assert!(batch.entries[0].position.ms >= ahead_ms as u64);
    b.cleanup().await;
}

#[tokio::test]
async fn an_id_beyond_what_the_index_orders_is_dead_lettered() {
    let b = Redis::new();
    let log = b.open().await;
    let json = r#"{"id":"far","bot":"b1","type":"message","direction":"in","provider":"web","user":{"id":"u1"}}"#;
    xadd_with_id(&b, "1000000000000000-0", &[("event", json)]).await;
    let batch = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!((batch.entries.len(), batch.dead_lettered), (0, 1));
    let dead = dead_letters(&b).await;
    assert!(dead[0].1.contains("out of range"), "{:?}", dead[0]);
    b.cleanup().await;
}

/// An adapter's entry whose sequence number is past what readers take, a moment ahead
/// of the clock: botwatch's own next entries must not carry on its sequence (they
/// would be dead-lettered after ingest acknowledged them), but start the next
/// millisecond. Found by the chaos suite (`tests/tests/chaos/hostile.rs`).
#[tokio::test]
async fn ingest_after_an_id_past_the_readers_range_stays_within_it() {
    let b = Redis::new();
    let log = b.open().await;
    let ahead_ms = chrono::Utc::now().timestamp_millis() + 5_000;
    let json = r#"{"id":"odd","bot":"b1","type":"message","direction":"in","provider":"web","user":{"id":"u1"}}"#;
    xadd_with_id(&b, &format!("{ahead_ms}-10000000000"), &[("event", json)]).await;
    log.append(vec![
        msg("b1", "u1", "after-1", at(0), "x"),
        msg("b1", "u1", "after-2", at(1), "x"),
    ])
    .await
    .expect("append");
    let batch = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!(
        (ids(&batch.entries), batch.dead_lettered),
        (vec!["after-1", "after-2"], 1),
        "what ingest acknowledged is read, the adapter's odd entry dead-lettered"
    );
    assert_eq!(
        batch.entries[0].position.to_string(),
        format!("{}-0", ahead_ms + 1)
    );
    b.cleanup().await;
}

async fn xadd_with_id(b: &Redis, id: &str, fields: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(format!("{}events", b.config().prefix)).arg(id);
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query_async(&mut b.raw().await).await.expect("xadd")
}
