//! `aggregate-bench`: how fast the aggregator applies events on one core, and how much
//! memory it keeps per user (growth of the resident set while applying; events are
//! made in small chunks, so their memory is a small, reused part of it).
//!
//! Events are made in chunks outside the timed part; only `Aggregator::apply_all` (what
//! the aggregator task runs per batch) is timed.

use std::time::Instant;

use botwatch_aggregator::{Aggregator, BucketSize};
use botwatch_event::{Direction, Event, EventKind, UserInfo};
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
    let span_ms = args.days * 86_400_000;
    let tz: chrono_tz::Tz = chrono_tz::Tz::UTC;
    let before = resident_bytes();
    let mut aggregator = Aggregator::default();
    let mut applied = std::time::Duration::ZERO;
    let chunk = 20_000u64;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut done = 0;
    while done < args.events {
        let n = chunk.min(args.events - done);
        let events: Vec<Event> = (0..n)
            .map(|i| {
                let user = next() % args.users;
                let ts = start_ms + (next() % span_ms as u64) as i64;
                let inbound = next() % 2 == 0;
                Event {
                    id: format!("e{}", done + i),
                    bot: "bench".to_owned(),
                    kind: EventKind::Message,
                    direction: Some(if inbound {
                        Direction::In
                    } else {
                        Direction::Out
                    }),
                    provider: "telegram".to_owned(),
                    user: UserInfo {
                        id: format!("{}", 100_000_000 + user),
                        name: Some(format!("User {user}")),
                        ..UserInfo::default()
                    },
                    text: Some(TEXTS[(next() % 8) as usize].to_owned()),
                    attachments: Vec::new(),
                    sender: None,
                    ts: DateTime::from_timestamp_millis(ts).expect("time"),
                }
            })
            .collect();
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

    let t = Instant::now();
    let snapshot = aggregator.to_bytes().expect("snapshot");
    let written = t.elapsed();
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
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for _ in 0..50 {
            let t = Instant::now();
            std::hint::black_box(figures.stats(from, to, size));
            h.record(t.elapsed().as_micros() as u64).expect("record");
        }
        println!(
            "stats?bucket={name} over {} days: p50 {:.2} ms, p99 {:.2} ms",
            args.days,
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0
        );
    }
    let mut h = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..50 {
        let t = Instant::now();
        std::hint::black_box(figures.top_messages(from, to, 20));
        h.record(t.elapsed().as_micros() as u64).expect("record");
    }
    println!(
        "top-messages over {} days: p50 {:.2} ms, p99 {:.2} ms",
        args.days,
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0
    );
}
