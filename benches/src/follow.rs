//! `follow-bench`: how fast botwatch follows a Redis stream that adapters fill with
//! `XADD` — read, judge (validation, de-duplication, history index, dead letters) and
//! aggregate — beside a bare redis-rs consumer that only reads and acknowledges the
//! same entries (`XREADGROUP` + `XACK`), in the same run, on 127.0.0.1.

use std::time::Instant;

use anyhow::{Context, Result};
use botwatch_aggregator::Aggregator;
use botwatch_log::{EventLog, Position, RedisConfig, RedisLog};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Following a Redis stream: botwatch beside a bare consumer")]
struct Args {
    #[arg(long, default_value_t = 300_000)]
    events: usize,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long, default_value_t = 2)]
    repeats: usize,
}

fn event_json(n: usize) -> String {
    serde_json::json!({
        "id": format!("f-{n}"),
        "bot": "helpdesk",
        "type": "message",
        "direction": if n.is_multiple_of(2) { "in" } else { "out" },
        "provider": "telegram",
        "user": {"id": format!("{}", 100_000 + (n * 7919) % 50_000), "name": "Олена К."},
        "text": "Hello! Where is my order #12345? It was supposed to arrive yesterday.",
        "ts": "2026-11-26T10:15:00.123Z",
    })
    .to_string()
}

async fn fill(con: &mut redis::aio::MultiplexedConnection, key: &str, events: usize) -> Result<()> {
    for chunk in (0..events).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for &n in chunk {
            pipe.cmd("XADD")
                .arg(key)
                .arg("*")
                .arg("event")
                .arg(event_json(n))
                .ignore();
        }
        pipe.query_async::<()>(con).await?;
    }
    Ok(())
}

async fn delete_prefix(con: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Result<()> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(con)
        .await?;
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(con).await?;
    }
    Ok(())
}

/// Fills the stream through botwatch's own ingest path (`RedisLog::append`, batches of
/// 500): the entries HTTP ingest writes.
async fn ingest(url: &str, prefix: &str, events: usize) -> Result<()> {
    let mut cfg = RedisConfig::new(url);
    cfg.prefix = prefix.to_owned();
    let log = RedisLog::connect(cfg).await?;
    let limits = botwatch_event::Limits::default();
    for chunk in (0..events).collect::<Vec<_>>().chunks(500) {
        let batch = chunk
            .iter()
            .map(|&n| {
                botwatch_event::parse_event(
                    event_json(n).as_bytes(),
                    0,
                    chrono::Utc::now(),
                    &limits,
                )
                .map_err(|f| anyhow::anyhow!("{f:?}"))
            })
            .collect::<Result<Vec<_>>>()?;
        log.append(batch).await?;
    }
    log.close().await;
    Ok(())
}

/// Entries per second for the bare consumer: XREADGROUP COUNT 1000 + XACK.
async fn bare(
    con: &mut redis::aio::MultiplexedConnection,
    key: &str,
    events: usize,
) -> Result<f64> {
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg("bare")
        .arg("0")
        .query_async(con)
        .await?;
    let started = Instant::now();
    let mut read = 0;
    while read < events {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("bare")
            .arg("c1")
            .arg("COUNT")
            .arg(1000)
            .arg("STREAMS")
            .arg(key)
            .arg(">")
            .query_async(con)
            .await?;
        let ids: Vec<String> = reply
            .keys
            .into_iter()
            .flat_map(|k| k.ids.into_iter().map(|i| i.id))
            .collect();
        if ids.is_empty() {
            break;
        }
        read += ids.len();
        let _: () = redis::cmd("XACK")
            .arg(key)
            .arg("bare")
            .arg(&ids)
            .query_async(con)
            .await?;
    }
    Ok(read as f64 / started.elapsed().as_secs_f64())
}

/// Events per second for botwatch: read and judge through `RedisLog`, then apply.
async fn botwatch(url: &str, prefix: &str, events: usize) -> Result<f64> {
    let mut cfg = RedisConfig::new(url);
    cfg.prefix = prefix.to_owned();
    let log = RedisLog::connect(cfg).await?;
    let mut aggregator = Aggregator::default();
    let started = Instant::now();
    let mut after = Position::START;
    let mut applied = 0;
    while applied < events {
        let batch = log.read(after, 1000, None).await?;
        if batch.entries.is_empty() && batch.next == after {
            break;
        }
        let events: Vec<_> = batch.entries.into_iter().map(|e| e.event).collect();
        applied += events.len();
        aggregator.apply_all(&events);
        after = batch.next;
    }
    anyhow::ensure!(applied == events, "applied {applied} of {events}");
    Ok(applied as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.redis_url.starts_with("redis://127.")
            || args.redis_url.starts_with("redis://localhost"),
        "benchmarks only run against Redis on 127.0.0.1"
    );
    let client = redis::Client::open(args.redis_url.as_str())?;
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .context("Redis")?;
    println!(
        "# follow-bench: {} entries written by an adapter, {} rounds",
        args.events, args.repeats
    );
    let mut rows: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("written by an adapter (XADD)", Vec::new(), Vec::new()),
        (
            "ingested by botwatch (the HTTP ingest path)",
            Vec::new(),
            Vec::new(),
        ),
    ];
    for round in 0..args.repeats {
        for (kind, (label, bares, ours)) in rows.iter_mut().enumerate() {
            let prefix = format!("bwfollow:{}:{round}:{kind}:", std::process::id());
            let key = format!("{prefix}events");
            if kind == 0 {
                fill(&mut con, &key, args.events).await?;
            } else {
                ingest(&args.redis_url, &prefix, args.events).await?;
            }
            let b = bare(&mut con, &key, args.events).await?;
            let o = botwatch(&args.redis_url, &prefix, args.events).await?;
            println!(
                "round {round}, {label}: bare consumer {b:>9.0} entries/s   botwatch {o:>9.0} events/s   ratio {:.2}",
                o / b
            );
            bares.push(b);
            ours.push(o);
            delete_prefix(&mut con, &prefix).await?;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (label, bares, ours) in &mut rows {
        let (b, o) = (median(bares), median(ours));
        println!(
            "median, {label}: bare {b:.0}/s, botwatch {o:.0}/s, ratio {:.2} (target >= 0.80)",
            o / b
        );
    }
    Ok(())
}
