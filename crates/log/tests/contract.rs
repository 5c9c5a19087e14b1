//! One contract, every backend: each test below runs against the embedded store and
//! against the real Redis on 127.0.0.1:6379 (its own key prefix per test). Redis tests
//! fail, never skip, when Redis does not answer.

use std::time::{Duration, Instant};

use botwatch_event::{
    Attachment, Button, Card, Direction, Event, EventKind, Media, Sender, UserInfo,
};
use botwatch_log::{
    Claim, ClaimStore, EmbeddedLog, EventLog, FileStore, HistoryCursor, IntegrityStore, Position,
    ProgressStore, RedisConfig, RedisLog, Saved, SettingsStore, SnapshotMeta, SnapshotStore,
    StoredFile,
};
use chrono::{DateTime, TimeZone, Utc};

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A backend under test: opens the log (again, after a restart) on the same storage.
pub trait Backend: Send + Sync {
    type Log: EventLog
        + SettingsStore
        + SnapshotStore
        + IntegrityStore
        + ClaimStore
        + FileStore
        + ProgressStore
        + Clone;
    fn open(&self) -> impl std::future::Future<Output = Self::Log> + Send;
    fn cleanup(&self) -> impl std::future::Future<Output = ()> + Send;
}

pub struct Embedded(tempfile::TempDir);

impl Embedded {
    pub fn new() -> Embedded {
        Embedded(tempfile::tempdir().expect("temp dir"))
    }
}

impl Default for Embedded {
    fn default() -> Self {
        Embedded::new()
    }
}

impl Backend for Embedded {
    type Log = EmbeddedLog;
    async fn open(&self) -> EmbeddedLog {
        EmbeddedLog::open(self.0.path())
            .await
            .expect("open embedded log")
    }
    async fn cleanup(&self) {}
}

pub struct Redis(RedisConfig);

impl Default for Redis {
    fn default() -> Self {
        Redis::new()
    }
}

impl Redis {
    pub fn new() -> Redis {
        let mut cfg = RedisConfig::new(REDIS_URL);
        cfg.prefix = format!("bwtest:{}:", uuid::Uuid::now_v7());
        Redis(cfg)
    }

    pub fn config(&self) -> &RedisConfig {
        &self.0
    }

    /// Deletes this test's keys that match `pattern` (after the prefix).
    pub async fn delete_matching(&self, pattern: &str) {
        let mut con = self.raw().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}{pattern}", self.0.prefix))
            .query_async(&mut con)
            .await
            .expect("keys");
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut con)
                .await
                .expect("del");
        }
    }

    pub fn set_dedup_window(&mut self, window: Duration) {
        self.0.dedup_window = window;
    }

    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(REDIS_URL)
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("Redis must run on 127.0.0.1:6379 for these tests (see README: Tests)")
    }
}

impl Backend for Redis {
    type Log = RedisLog;
    async fn open(&self) -> RedisLog {
        RedisLog::connect(self.0.clone())
            .await
            .expect("Redis must run on 127.0.0.1:6379 for these tests (see README: Tests)")
    }
    async fn cleanup(&self) {
        self.delete_matching("*").await;
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_780_000_000 + secs, 0)
        .single()
        .expect("valid time")
}

fn msg(bot: &str, user: &str, id: &str, ts: DateTime<Utc>, text: &str) -> Event {
    Event {
        id: id.to_owned(),
        bot: bot.to_owned(),
        kind: EventKind::Message,
        direction: Some(Direction::In),
        provider: "telegram".to_owned(),
        user: UserInfo {
            id: user.to_owned(),
            ..UserInfo::default()
        },
        text: Some(text.to_owned()),
        attachments: Vec::new(),
        sender: None,
        mode: None,
        delivery: None,
        audience: None,
        broadcast: None,
        ts,
    }
}

fn ids(entries: &[botwatch_log::LogEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.event.id.as_str()).collect()
}

pub async fn append_then_read_in_order<B: Backend>(b: B) {
    let log = b.open().await;
    let r = log
        .append(vec![
            msg("b1", "u1", "e1", at(0), "hello"),
            msg("b1", "u2", "e2", at(1), "привіт"),
            msg("b1", "u1", "e3", at(2), "again"),
        ])
        .await
        .expect("append");
    assert_eq!((r.stored, r.duplicates), (3, 0));
    let all = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!(ids(&all.entries), ["e1", "e2", "e3"]);
    assert!(
        all.entries
            .windows(2)
            .all(|w| w[0].position < w[1].position)
    );
    assert_eq!(all.next, all.entries[2].position);
    let rest = log
        .read(all.entries[1].position, 100, None)
        .await
        .expect("read");
    assert_eq!(ids(&rest.entries), ["e3"]);
    assert_eq!(all.entries[1].event.text.as_deref(), Some("привіт"));
    b.cleanup().await;
}

pub async fn duplicate_ids_count_once<B: Backend>(b: B) {
    let log = b.open().await;
    let r = log
        .append(vec![
            msg("b1", "u1", "a", at(0), "1"),
            msg("b1", "u1", "b", at(1), "2"),
            msg("b1", "u1", "a", at(2), "retry of a"),
        ])
        .await
        .expect("append");
    assert_eq!((r.stored, r.duplicates), (2, 1));
    let r = log
        .append(vec![
            msg("b1", "u1", "b", at(1), "2"),
            msg("b1", "u1", "c", at(3), "3"),
        ])
        .await
        .expect("append");
    assert_eq!((r.stored, r.duplicates), (1, 1));
    // The same id under another bot is another event.
    let r = log
        .append(vec![msg("b2", "u1", "a", at(4), "other bot")])
        .await
        .expect("append");
    assert_eq!((r.stored, r.duplicates), (1, 0));
    let all = log.read(Position::START, 100, None).await.expect("read");
    assert_eq!(ids(&all.entries), ["a", "b", "c", "a"]);
    assert_eq!(
        all.entries[0].event.text.as_deref(),
        Some("1"),
        "the first copy wins"
    );
    let history = log.history("b1", "u1", None, 100).await.expect("history");
    assert_eq!(ids(&history.entries), ["c", "b", "a"]);
    b.cleanup().await;
}

pub async fn reads_page_by_max<B: Backend>(b: B) {
    let log = b.open().await;
    let events = (0..10)
        .map(|i| msg("b1", "u1", &format!("e{i}"), at(i), "x"))
        .collect();
    log.append(events).await.expect("append");
    let mut after = Position::START;
    let mut seen = Vec::new();
    loop {
        let batch = log.read(after, 4, None).await.expect("read");
        if batch.entries.is_empty() {
            assert_eq!(
                batch.next, after,
                "an empty read does not move the position"
            );
            break;
        }
        assert!(batch.entries.len() <= 4);
        after = batch.next;
        seen.extend(batch.entries.into_iter().map(|e| e.event.id));
    }
    let expected: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
    assert_eq!(seen, expected);
    b.cleanup().await;
}

pub async fn read_waits_for_new_events<B: Backend>(b: B) {
    let log = b.open().await;
    let started = Instant::now();
    let empty = log
        .read(Position::START, 10, Some(Duration::from_millis(200)))
        .await
        .expect("read");
    assert!(empty.entries.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(150), "it waited");

    let writer = log.clone();
    let append = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        writer
            .append(vec![msg("b1", "u1", "late", at(0), "x")])
            .await
            .expect("append");
    });
    let started = Instant::now();
    let got = log
        .read(Position::START, 10, Some(Duration::from_secs(4)))
        .await
        .expect("read");
    assert_eq!(ids(&got.entries), ["late"]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "woken by the append, not the timeout"
    );
    append.await.expect("append task");
    b.cleanup().await;
}

pub async fn history_is_newest_first_and_pages<B: Backend>(b: B) {
    let log = b.open().await;
    // u1's dialog, with two messages in the same second (ties keep log order),
    // interleaved with another user and another bot, and one message arriving late.
    log.append(vec![
        msg("b1", "u1", "m1", at(10), "1"),
        msg("b1", "u2", "x1", at(11), "other user"),
        msg("b1", "u1", "m2", at(20), "2"),
        msg("b1", "u1", "m3", at(20), "3"),
        msg("b2", "u1", "y1", at(21), "other bot"),
        msg("b1", "u1", "m4", at(30), "4"),
    ])
    .await
    .expect("append");
    log.append(vec![msg("b1", "u1", "m0", at(5), "arrived late")])
        .await
        .expect("append");
    log.append(vec![msg("b1", "u1", "m5", at(40), "5")])
        .await
        .expect("append");

    let mut before: Option<HistoryCursor> = None;
    let mut pages = Vec::new();
    loop {
        // Pages of 3: the first ends on m3, which shares its event time with m2, so
        // the cursor has to split a tie.
        let page = log.history("b1", "u1", before, 3).await.expect("history");
        pages.push(
            ids(&page.entries)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        );
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
        assert!(pages.len() < 10, "paging ends");
    }
    let flat: Vec<String> = pages.concat();
    assert_eq!(flat, ["m5", "m4", "m3", "m2", "m1", "m0"]);
    assert_eq!(
        pages.len(),
        2,
        "two full pages and no empty third one: {pages:?}"
    );
    let none = log
        .history("b1", "nobody", None, 10)
        .await
        .expect("history");
    assert!(none.entries.is_empty() && none.next.is_none());
    b.cleanup().await;
}

pub async fn events_round_trip_exactly<B: Backend>(b: B) {
    let log = b.open().await;
    let mut event = msg(
        "helpdesk",
        "5532",
        "tg-5532-000781",
        at(0),
        "Where is my order?",
    );
    event.direction = Some(Direction::Out);
    event.sender = Some(Sender::Operator {
        id: "anna".to_owned(),
    });
    event.user = UserInfo {
        id: "5532".to_owned(),
        name: Some("Олена К.".to_owned()),
        avatar: Some("https://example.org/a.jpg".to_owned()),
        gender: Some("female".to_owned()),
        lang: Some("uk".to_owned()),
    };
    event.ts = DateTime::from_timestamp_millis(1_780_000_000_123).expect("time");
    event.attachments = vec![
        Attachment::File(Media {
            url: "https://example.org/invoice.pdf".to_owned(),
            name: Some("invoice.pdf".to_owned()),
            mime: Some("application/pdf".to_owned()),
            size: Some(48_211),
        }),
        Attachment::Card(Card {
            title: "Order #12".to_owned(),
            subtitle: Some("Shipped".to_owned()),
            image: None,
            buttons: vec![Button {
                title: "Track".to_owned(),
                payload: Some("track:12".to_owned()),
                url: None,
            }],
        }),
    ];
    log.append(vec![event.clone()]).await.expect("append");
    let all = log.read(Position::START, 10, None).await.expect("read");
    assert_eq!(all.entries.len(), 1);
    assert_eq!(all.entries[0].event, event);
    let history = log
        .history("helpdesk", "5532", None, 10)
        .await
        .expect("history");
    assert_eq!(history.entries[0].event, event);
    b.cleanup().await;
}

pub async fn everything_survives_a_restart<B: Backend>(b: B) {
    let log = b.open().await;
    log.append(vec![
        msg("b1", "u1", "a", at(0), "1"),
        msg("b1", "u1", "b", at(1), "2"),
    ])
    .await
    .expect("append");
    let before = log.stats().await.expect("stats");
    assert_eq!(before.length, 2);
    log.close().await;
    drop(log);

    let log = b.open().await;
    let after = log.stats().await.expect("stats");
    assert_eq!(after, before);
    let r = log
        .append(vec![
            msg("b1", "u1", "a", at(0), "retried after restart"),
            msg("b1", "u1", "c", at(2), "3"),
        ])
        .await
        .expect("append");
    assert_eq!(
        (r.stored, r.duplicates),
        (1, 1),
        "ids are remembered across restarts"
    );
    let all = log.read(Position::START, 10, None).await.expect("read");
    assert_eq!(ids(&all.entries), ["a", "b", "c"]);
    assert!(
        all.entries[2].position > before.head,
        "positions keep growing"
    );
    let history = log.history("b1", "u1", None, 10).await.expect("history");
    assert_eq!(ids(&history.entries), ["c", "b", "a"]);
    log.ready().await.expect("ready");
    b.cleanup().await;
}

pub async fn appends_after_close_are_refused<B: Backend>(b: B) {
    let log = b.open().await;
    log.append(vec![msg("b1", "u1", "a", at(0), "1")])
        .await
        .expect("append");
    log.close().await;
    let refused = log.append(vec![msg("b1", "u1", "b", at(1), "2")]).await;
    assert!(
        matches!(refused, Err(botwatch_log::LogError::Closed)),
        "{refused:?}"
    );
    assert!(log.ready().await.is_err(), "a closed log is not ready");
    drop(log);
    let log = b.open().await;
    let all = log.read(Position::START, 10, None).await.expect("read");
    assert_eq!(ids(&all.entries), ["a"]);
    b.cleanup().await;
}

pub async fn settings_are_kept_and_versioned<B: Backend>(b: B) {
    let log = b.open().await;
    assert_eq!(log.settings("b1").await.expect("get"), None);
    let v0 = log.settings_version().await.expect("version");
    let kyiv = r#"{"timezone":"Europe/Kyiv"}"#;
    assert!(log.put_settings("b1", None, kyiv).await.expect("put"));
    assert!(
        log.put_settings("b2", None, r#"{"timezone":"UTC"}"#)
            .await
            .expect("put")
    );
    assert!(
        log.put_settings("b1", Some(kyiv), r#"{"timezone":"Asia/Kolkata"}"#)
            .await
            .expect("put")
    );
    let v1 = log.settings_version().await.expect("version");
    // A change made from a document that is no longer the stored one stores nothing.
    for stale in [None, Some(kyiv)] {
        assert!(
            !log.put_settings("b1", stale, r#"{"timezone":"UTC"}"#)
                .await
                .expect("put"),
            "{stale:?}"
        );
    }
    assert_eq!(log.settings_version().await.expect("version"), v1);
    assert!(v1 >= v0 + 3, "every change bumps the version: {v0} -> {v1}");
    assert_eq!(
        log.settings("b1").await.expect("get").as_deref(),
        Some(r#"{"timezone":"Asia/Kolkata"}"#)
    );
    log.close().await;
    drop(log);
    let log = b.open().await;
    let mut all = log.all_settings().await.expect("all");
    all.sort();
    assert_eq!(
        all,
        [
            ("b1".to_owned(), r#"{"timezone":"Asia/Kolkata"}"#.to_owned()),
            ("b2".to_owned(), r#"{"timezone":"UTC"}"#.to_owned())
        ]
    );
    assert_eq!(log.settings_version().await.expect("version"), v1);
    b.cleanup().await;
}

pub async fn the_newest_snapshot_is_kept<B: Backend>(b: B) {
    let log = b.open().await;
    assert_eq!(log.load_snapshot().await.expect("load"), None);
    let (epoch, _) = log.ensure_epoch().await.expect("epoch");
    let meta = |ms| SnapshotMeta {
        position: Position::new(ms, 0),
        epoch: epoch.clone(),
    };
    let saved = log.save_snapshot(&meta(1), b"first".to_vec()).await;
    assert_eq!(saved.expect("save"), Saved::Stored);
    let saved = log.save_snapshot(&meta(2), vec![0, 1, 2, 255]).await;
    assert_eq!(saved.expect("save"), Saved::Stored);
    log.close().await;
    drop(log);
    let log = b.open().await;
    assert_eq!(
        log.load_snapshot().await.expect("load"),
        Some(vec![0, 1, 2, 255])
    );
    b.cleanup().await;
}

pub async fn the_epoch_is_made_once_and_kept<B: Backend>(b: B) {
    let log = b.open().await;
    assert_eq!(log.watch(None).await.expect("watch").epoch, None);
    let (epoch, made) = log.ensure_epoch().await.expect("epoch");
    assert!(made && !epoch.is_empty());
    assert_eq!(
        log.ensure_epoch().await.expect("epoch"),
        (epoch.clone(), false)
    );
    log.close().await;
    drop(log);
    let log = b.open().await;
    assert_eq!(
        log.ensure_epoch().await.expect("epoch"),
        (epoch.clone(), false)
    );
    assert_eq!(log.watch(None).await.expect("watch").epoch, Some(epoch));
    b.cleanup().await;
}

pub async fn a_data_loss_is_kept_until_cleared<B: Backend>(b: B) {
    let log = b.open().await;
    assert_eq!(log.watch(None).await.expect("watch").data_loss, None);
    let first = log.record_data_loss("epoch changed").await.expect("record");
    assert_eq!(first.reason, "epoch changed");
    let again = log.record_data_loss("stream behind").await.expect("record");
    assert_eq!(again, first, "the first record stays");
    log.close().await;
    drop(log);
    let log = b.open().await;
    assert_eq!(
        log.watch(None).await.expect("watch").data_loss,
        Some(first.clone())
    );
    assert_eq!(
        log.clear_data_loss().await.expect("clear"),
        Some(first.clone())
    );
    let watch = log.watch(None).await.expect("watch");
    assert_eq!((watch.data_loss, watch.cleared), (None, Some(first)));
    assert_eq!(log.clear_data_loss().await.expect("clear"), None);
    b.cleanup().await;
}

pub async fn concurrent_appends_are_all_kept<B: Backend>(b: B) {
    let log = b.open().await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let batch = (0..4)
                    .map(|k| msg("b1", &format!("u{t}"), &format!("t{t}-{i}-{k}"), at(i), "x"))
                    .collect();
                log.append(batch).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let all = log.read(Position::START, 10_000, None).await.expect("read");
    assert_eq!(all.entries.len(), 8 * 25 * 4);
    let mut unique: Vec<&str> = ids(&all.entries);
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 800);
    assert_eq!(log.stats().await.expect("stats").length, 800);
    b.cleanup().await;
}

/// A claim is first-come and durable: the second claimer (another node, or the same
/// one after a restart) learns who holds it — what sends an operator message once.
pub async fn leases_are_held_by_one_and_run_out<B: Backend>(b: B) {
    let log = b.open().await;
    let long = std::time::Duration::from_secs(60);
    let short = std::time::Duration::from_millis(300);
    assert!(log.lease("run:b1", "node-a", short).await.expect("lease"));
    assert!(!log.lease("run:b1", "node-b", long).await.expect("lease"));
    assert!(
        log.lease("run:b1", "node-a", short).await.expect("lease"),
        "kept by its holder"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(
        log.lease("run:b1", "node-b", long).await.expect("lease"),
        "taken over once it ran out"
    );
    assert!(!log.lease("run:b1", "node-a", short).await.expect("lease"));
    log.close().await;
    drop(log);
    let log = b.open().await;
    assert!(
        !log.lease("run:b1", "node-c", long).await.expect("lease"),
        "held across a restart"
    );
    b.cleanup().await;
}

pub async fn progress_is_kept_and_replaced_whole<B: Backend>(b: B) {
    let log = b.open().await;
    assert_eq!(log.progress("forward:ga:shop").await.expect("read"), None);
    log.put_progress("forward:ga:shop", r#"{"position":"1-0"}"#)
        .await
        .expect("put");
    log.put_progress("forward:ga:shop", r#"{"position":"2-0"}"#)
        .await
        .expect("put");
    log.put_progress("forward:mixpanel:shop", "{}")
        .await
        .expect("put");
    log.close().await;
    drop(log);
    let log = b.open().await;
    assert_eq!(
        log.progress("forward:ga:shop")
            .await
            .expect("read")
            .as_deref(),
        Some(r#"{"position":"2-0"}"#),
        "the latest, kept across a restart"
    );
    assert_eq!(
        log.progress("forward:mixpanel:shop")
            .await
            .expect("read")
            .as_deref(),
        Some("{}")
    );
    b.cleanup().await;
}

pub async fn claims_are_first_come_and_kept<B: Backend>(b: B) {
    let log = b.open().await;
    assert_eq!(
        log.claim("outbox:b1:m1", "node-a@1").await.expect("claim"),
        Claim::Won
    );
    assert_eq!(
        log.claim("outbox:b1:m1", "node-b@2").await.expect("claim"),
        Claim::Held("node-a@1".to_owned())
    );
    // Claims race: exactly one of many wins.
    let mut racers = Vec::new();
    for n in 0..8 {
        let log = log.clone();
        racers.push(tokio::spawn(async move {
            log.claim("outbox:b1:m2", &format!("node-{n}"))
                .await
                .expect("claim")
        }));
    }
    let mut won = 0;
    for r in racers {
        if r.await.expect("task") == Claim::Won {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    log.close().await;
    drop(log);
    let log = b.open().await;
    assert_eq!(
        log.claim("outbox:b1:m1", "node-c@3").await.expect("claim"),
        Claim::Held("node-a@1".to_owned()),
        "kept across a restart"
    );
    assert_eq!(
        log.claim("outbox:b1:m3", "node-c@3").await.expect("claim"),
        Claim::Won
    );
    b.cleanup().await;
}

/// A stored file comes back byte for byte, with its name and type, after a restart.
pub async fn files_are_kept_whole<B: Backend>(b: B) {
    let log = b.open().await;
    let file = StoredFile {
        name: "рахунок 12.pdf".to_owned(),
        mime: "application/pdf".to_owned(),
        bytes: (0..=255u8).cycle().take(70_000).collect(),
    };
    log.put_file("f1", &file).await.expect("put");
    assert_eq!(log.file("nope").await.expect("get"), None);
    log.close().await;
    drop(log);
    let log = b.open().await;
    assert_eq!(log.file("f1").await.expect("get"), Some(file));
    b.cleanup().await;
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Embedded::new()).await })*
        }
        mod redis_streams {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Redis::new()).await })*
        }
    };
}

contract!(
    append_then_read_in_order,
    duplicate_ids_count_once,
    reads_page_by_max,
    read_waits_for_new_events,
    history_is_newest_first_and_pages,
    events_round_trip_exactly,
    everything_survives_a_restart,
    concurrent_appends_are_all_kept,
    appends_after_close_are_refused,
    settings_are_kept_and_versioned,
    the_newest_snapshot_is_kept,
    the_epoch_is_made_once_and_kept,
    a_data_loss_is_kept_until_cleared,
    claims_are_first_come_and_kept,
    leases_are_held_by_one_and_run_out,
    progress_is_kept_and_replaced_whole,
    files_are_kept_whole,
);

#[path = "contract/redis_only.rs"]
mod redis_only;

#[path = "contract/retention.rs"]
mod retention;
