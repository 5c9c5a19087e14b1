//! `aggregate-bench`: how fast the aggregator applies events on one core, and how much
//! memory it keeps per user (growth of the resident set while applying; events are
//! made in small chunks, so their memory is a small, reused part of it).
//!
//! Events are made in chunks outside the timed part; only `Aggregator::apply_all` (what
//! the aggregator task runs per batch) is timed.

use std::time::Instant;

use botwatch_aggregator::{Aggregator, BucketSize, UserFilter, UserSort, UsersQuery};
use botwatch_event::{Direction, Event, EventKind, UserInfo};
use botwatch_log::{
    AnyLog, EventLog, IntegrityStore, Position, SnapshotMeta, SnapshotStore, StorageConfig,
};
use botwatch_server::snapshot;
use chrono::{DateTime, NaiveDate};
use clap::Parser;
use hdrhistogram::Histogram;

// The allocator `botwatch` itself runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resident memory of this process, in bytes (Linux).
fn resident_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[derive(Parser, Debug)]
#[command(about = "Aggregator throughput on one core and memory per user")]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Days the events spread over.
    #[arg(long, default_value_t = 90)]
    days: i64,
    /// Events a cold start replays after its snapshot (serve's default
    /// `--snapshot-every` is the most there can be).
    #[arg(long, default_value_t = 1_000_000)]
    replay: u64,
}

/// Random traffic: uniform users, times over the days, half inbound.
struct Traffic {
    rng: u64,
    users: u64,
    start_ms: i64,
    span_ms: u64,
}

impl Traffic {
    fn new(args: &Args, start_ms: i64) -> Traffic {
        Traffic {
            rng: 0x2545_f491_4f6c_dd1d,
            users: args.users,
            start_ms,
            span_ms: args.days as u64 * 86_400_000,
        }
    }

    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Events number `first` .. `first + n`.
    fn chunk(&mut self, first: u64, n: u64) -> Vec<Event> {
        (0..n)
            .map(|i| {
                let user = self.next() % self.users;
                let ts = self.start_ms + (self.next() % self.span_ms) as i64;
                let inbound = self.next().is_multiple_of(2);
                Event {
                    id: format!("e{}", first + i),
                    bot: "bench".to_owned(),
                    kind: EventKind::Message,
                    direction: Some(if inbound {
                        Direction::In
                    } else {
                        Direction::Out
                    }),
                    provider: if user.is_multiple_of(3) {
                        "viber"
                    } else {
                        "telegram"
                    }
                    .to_owned(),
                    user: UserInfo {
                        id: format!("{}", 100_000_000 + user),
                        name: Some(if user.is_multiple_of(5) {
                            format!("Користувач {user}")
                        } else {
                            format!("User {user}")
                        }),
                        ..UserInfo::default()
                    },
                    text: Some(TEXTS[(self.next() % 8) as usize].to_owned()),
                    attachments: Vec::new(),
                    sender: None,
                    mode: None,
                    delivery: None,
                    audience: None,
                    broadcast: None,
                    ts: DateTime::from_timestamp_millis(ts).expect("time"),
                }
            })
            .collect()
    }
}

const TEXTS: [&str; 8] = [
    "Where is my order?",
    "привіт",
    "price",
    "/start",
    "Hello",
    "thanks",
    "Добрий день",
    "help",
];

fn main() {
    let args = Args::parse();
    let start_ms = 1_780_000_000_000i64;
    let tz: chrono_tz::Tz = chrono_tz::Tz::UTC;
    let before = resident_bytes();
    let mut aggregator = Aggregator::default();
    let mut applied = std::time::Duration::ZERO;
    let chunk = 20_000u64;
    let mut traffic = Traffic::new(&args, start_ms);
    let mut done = 0;
    while done < args.events {
        let n = chunk.min(args.events - done);
        let events = traffic.chunk(done, n);
        let t = Instant::now();
        aggregator.apply_all(&events);
        applied += t.elapsed();
        done += n;
    }
    let bytes = resident_bytes() - before;
    println!(
        "applied {} events for {} users in {:.2} s: {:.0} events/s on one core",
        args.events,
        args.users,
        applied.as_secs_f64(),
        args.events as f64 / applied.as_secs_f64()
    );
    println!(
        "aggregator memory: {:.1} MiB resident growth, {:.0} bytes per user",
        bytes as f64 / 1_048_576.0,
        bytes as f64 / args.users as f64
    );
    audience(&mut aggregator, args.users, start_ms);

    let t = Instant::now();
    let copy = aggregator.copy_for_snapshot();
    let copied = t.elapsed();
    let t = Instant::now();
    let snapshot = copy.to_bytes().expect("snapshot");
    let written = t.elapsed();
    drop(copy);
    println!(
        "snapshot copy (the only part that holds up applying): {:.2} s",
        copied.as_secs_f64()
    );
    let t = Instant::now();
    let restored = Aggregator::from_bytes(&snapshot).expect("restore");
    let loaded = t.elapsed();
    drop(restored);
    println!(
        "snapshot: {:.1} MiB, encoded in {:.2} s, decoded in {:.2} s",
        snapshot.len() as f64 / 1_048_576.0,
        written.as_secs_f64(),
        loaded.as_secs_f64()
    );
    let figures = aggregator.bot("bench").expect("the bot");
    let from = DateTime::from_timestamp_millis(start_ms)
        .expect("time")
        .with_timezone(&tz)
        .date_naive();
    let to: NaiveDate = from + chrono::Duration::days(args.days - 1);
    for (name, size) in [("day", BucketSize::Day), ("week", BucketSize::Week)] {
        report_p99(
            &format!("stats?bucket={name} over {} days", args.days),
            || figures.stats(from, to, size),
        );
    }
    report_p99(&format!("top-messages over {} days", args.days), || {
        figures.top_messages(from, to, 20)
    });
    let query = |sort, search: Option<&str>| UsersQuery {
        filter: UserFilter {
            search: search.map(str::to_owned),
            ..UserFilter::default()
        },
        sort,
        descending: true,
        limit: 50,
        after: None,
    };
    let filtered = |sort, filter: UserFilter| UsersQuery {
        filter,
        sort,
        descending: true,
        limit: 50,
        after: None,
    };
    for (label, q) in [
        ("users?sort=messages", query(UserSort::Messages, None)),
        ("users?sort=last", query(UserSort::Last, None)),
        ("users?sort=name&order=desc", query(UserSort::Name, None)),
        (
            "users?search=er 4711 (few hits)",
            query(UserSort::Last, Some("er 4711")),
        ),
        (
            "users?search=77 (many hits)",
            query(UserSort::Last, Some("77")),
        ),
        (
            "users?search=КОРИСТ (a fifth, Cyrillic)",
            query(UserSort::Messages, Some("КОРИСТ")),
        ),
        (
            "users?tag=Tag 1",
            filtered(
                UserSort::Last,
                UserFilter {
                    tags: vec!["Tag 1".into()],
                    ..UserFilter::default()
                },
            ),
        ),
        (
            "users?tag=Tag 1&tag=Tag 2&provider=viber",
            filtered(
                UserSort::Last,
                UserFilter {
                    tags: vec!["Tag 1".into(), "Tag 2".into()],
                    providers: vec!["viber".into()],
                    ..UserFilter::default()
                },
            ),
        ),
        (
            "users?role=Role 0&subscriber=true&sort=name",
            filtered(
                UserSort::Name,
                UserFilter {
                    roles: vec!["Role 0".into()],
                    subscriber: Some(true),
                    ..UserFilter::default()
                },
            ),
        ),
        (
            "users?search=КОРИСТ&tag=Tag 3",
            filtered(
                UserSort::Messages,
                UserFilter {
                    search: Some("КОРИСТ".into()),
                    tags: vec!["Tag 3".into()],
                    ..UserFilter::default()
                },
            ),
        ),
    ] {
        let total = figures.users(&q).total;
        report_p99(&format!("{label} [{total} match]"), || figures.users(&q));
    }
    report_p99("dialogs, first page", || figures.dialogs(None, 50, None));
    // The physical floor beside the scans: one pass summing as many bytes as a scan
    // reads per user (the 80-byte record and the 16-byte audience summary).
    let records = vec![1u64; args.users as usize * 96 / 8];
    report_p99(
        &format!(
            "floor: one pass over {:.1} MiB (96 bytes per user)",
            (records.len() * 8) as f64 / 1_048_576.0
        ),
        || {
            std::hint::black_box(&records)
                .iter()
                .fold(0u64, |a, &x| a.wrapping_add(x))
        },
    );
    drop(records);
    let subscribers_tagged = UserFilter {
        tags: vec!["Tag 1".into()],
        subscriber: Some(true),
        ..UserFilter::default()
    };
    let chosen = figures.select(&subscribers_tagged).len();
    report_p99(
        &format!("select (bulk, broadcast, CSV): subscribers with Tag 1 [{chosen}]"),
        || figures.select(&subscribers_tagged),
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(cold_start(
        &snapshot,
        &mut traffic,
        args.events,
        args.replay,
    ));
}

/// Operators' audience on top of the traffic: 8 tags and 4 roles; a third of the users
/// carry a tag, a seventh a second one, a tenth a role, a ninth are not subscribers
/// (about half the users edited, one `audience` event each, applied like the log's).
fn audience(aggregator: &mut Aggregator, users: u64, start_ms: i64) {
    use botwatch_event::{AudienceChange, Label, LabelOf, UserEdit};
    let at = |n: u64| DateTime::from_timestamp_millis(start_ms + n as i64).expect("time");
    let mut events = Vec::new();
    for (of, prefix, count) in [(LabelOf::Tag, "t", 8), (LabelOf::Role, "r", 4)] {
        for n in 0..count {
            let mut e = Event::about_dialog(
                format!("label-{prefix}{n}"),
                EventKind::Audience,
                "bench",
                "botwatch",
                "",
            );
            e.audience = Some(AudienceChange::Label(Label {
                of,
                key: format!("{prefix}{n}"),
                name: Some(format!(
                    "{}{n}",
                    if of == LabelOf::Tag { "Tag " } else { "Role " }
                )),
            }));
            e.ts = at(n);
            events.push(e);
        }
    }
    aggregator.apply_all(&events);
    let before = resident_bytes();
    let mut applied = std::time::Duration::ZERO;
    let mut edited = 0u64;
    let mut chunk = Vec::with_capacity(20_000);
    for u in 0..users {
        let mut edit = UserEdit::default();
        if u % 3 == 0 {
            edit.add_tags.push(format!("t{}", u % 8));
        }
        if u % 7 == 0 {
            edit.add_tags.push(format!("t{}", (u / 7) % 8));
        }
        if u % 10 == 0 {
            edit.role = Some(format!("r{}", (u / 10) % 4));
        }
        if u % 9 == 0 {
            edit.subscriber = Some(false);
        }
        if edit == UserEdit::default() {
            continue;
        }
        let provider = if u.is_multiple_of(3) {
            "viber"
        } else {
            "telegram"
        };
        let mut e = Event::about_dialog(
            format!("aud-{u}"),
            EventKind::Audience,
            "bench",
            provider,
            &format!("{}", 100_000_000 + u),
        );
        e.audience = Some(AudienceChange::Edit(edit));
        e.ts = at(u);
        chunk.push(e);
        edited += 1;
        if chunk.len() == 20_000 {
            let t = Instant::now();
            aggregator.apply_all(&chunk);
            applied += t.elapsed();
            chunk.clear();
        }
    }
    let t = Instant::now();
    aggregator.apply_all(&chunk);
    applied += t.elapsed();
    let bytes = resident_bytes() - before;
    println!(
        "audience: {edited} users edited in {:.2} s ({:.0} edits/s), {:.1} MiB resident growth ({:.0} bytes per edited user)",
        applied.as_secs_f64(),
        edited as f64 / applied.as_secs_f64(),
        bytes as f64 / 1_048_576.0,
        bytes as f64 / edited as f64
    );
}

/// Runs `f` 5 times to warm up, then 200 times, and prints the p50 and p99 of the
/// 200 (with 50 runs the p99 was only the slowest run).
fn report_p99<T>(label: &str, mut f: impl FnMut() -> T) {
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..5 {
        std::hint::black_box(f());
    }
    for _ in 0..200 {
        let t = Instant::now();
        std::hint::black_box(f());
        h.record(t.elapsed().as_micros() as u64).expect("record");
    }
    println!(
        "{label}: p50 {:.2} ms, p99 {:.2} ms",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0
    );
}

/// Cold start as `serve` does it: the snapshot read from the embedded store's data
/// directory and decoded (checksum, state, indexes), then the events after it read
/// back from the log (JSON decoded) and applied. `replay` events are appended first:
/// the most a restart replays is `--snapshot-every` (1,000,000 by default).
async fn cold_start(state: &[u8], traffic: &mut Traffic, first: u64, replay: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = AnyLog::open(&StorageConfig::Embedded {
        dir: dir.path().to_owned(),
    })
    .await
    .expect("embedded log");
    let mut written = 0;
    while written < replay {
        let n = 1000.min(replay - written);
        log.append(traffic.chunk(first + written, n))
            .await
            .expect("append");
        written += n;
    }
    // The snapshot covers everything before the appended events.
    let meta = SnapshotMeta {
        position: Position::default(),
        epoch: log.ensure_epoch().await.expect("epoch").0,
    };
    log.save_snapshot(&meta, snapshot::encode(&meta, state))
        .await
        .expect("save the snapshot");

    let t = Instant::now();
    let bytes = log
        .load_snapshot()
        .await
        .expect("load")
        .expect("a snapshot");
    let read = t.elapsed();
    let (meta, mut aggregator) = snapshot::decode(&bytes).expect("decode");
    let mut position = meta.position;
    let decoded = t.elapsed();
    let mut replayed = 0;
    loop {
        let batch = log.read(position, 1000, None).await.expect("read");
        if batch.entries.is_empty() {
            break;
        }
        replayed += batch.entries.len();
        let events: Vec<Event> = batch.entries.into_iter().map(|e| e.event).collect();
        aggregator.apply_all(&events);
        position = batch.next;
    }
    let total = t.elapsed();
    println!(
        "cold start: {:.2} s (snapshot read {:.2} s, decoded {:.2} s, {replayed} events replayed in {:.2} s)",
        total.as_secs_f64(),
        read.as_secs_f64(),
        (decoded - read).as_secs_f64(),
        (total - decoded).as_secs_f64()
    );
    log.close().await;
}
