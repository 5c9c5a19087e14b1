//! `follow-bench`: how fast botwatch follows a Redis stream that adapters fill with
//! `XADD` — read, judge (validation, de-duplication, history index, dead letters) and
//! aggregate — beside a bare redis-rs consumer that only reads and acknowledges the
//! same entries (`XREADGROUP` + `XACK`), in the same run, on 127.0.0.1.

// The allocator `botwatch` itself runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use botwatch_aggregator::Aggregator;
use botwatch_log::{EventLog, Position, RedisConfig, RedisLog, StorageConfig};
use botwatch_server::{Config, Server};
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(about = "Following a Redis stream: botwatch beside a bare consumer")]
struct Args {
    #[arg(long, default_value_t = 300_000)]
    events: usize,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long, default_value_t = 2)]
    repeats: usize,
    /// Also follow live: a producer adds entries while a running `botwatch serve`
    /// (in-process, on Redis) follows them, beside a bare consumer following the
    /// same way; reports the sustained rate and the lag left when the producer stops.
    #[arg(long)]
    live: bool,
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
    fill_chunked(con, key, events, 500).await
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

/// What a bare consumer does per round: `XREADGROUP COUNT 1000` (blocking up to
/// `block_ms` when given) in the group `bare`, then `XACK` of what it got. Returns how
/// many entries that was.
async fn read_and_ack(
    con: &mut redis::aio::MultiplexedConnection,
    key: &str,
    block_ms: Option<u64>,
) -> Result<usize> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg("bare")
        .arg("c1")
        .arg("COUNT")
        .arg(1000);
    if let Some(ms) = block_ms {
        cmd.arg("BLOCK").arg(ms);
    }
    let reply: redis::streams::StreamReadReply = cmd
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
    if !ids.is_empty() {
        let _: () = redis::cmd("XACK")
            .arg(key)
            .arg("bare")
            .arg(&ids)
            .query_async(con)
            .await?;
    }
    Ok(ids.len())
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
        let n = read_and_ack(con, key, None).await?;
        if n == 0 {
            break;
        }
        read += n;
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

/// What a live run measured.
struct Live {
    /// Entries per second the producer managed.
    produced: f64,
    /// Entries per second from the first XADD to the last one consumed.
    sustained: f64,
    /// From the producer's last XADD to the consumer having everything.
    lag: Duration,
}

/// A producer adding `events` adapter entries in pipelined chunks of 100 while
/// `consumed` is polled every millisecond.
async fn produce_and_wait<F, Fut>(
    con: &mut redis::aio::MultiplexedConnection,
    key: &str,
    events: usize,
    consumed: F,
) -> Result<Live>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<usize>>,
{
    let started = Instant::now();
    fill_chunked(con, key, events, 100).await?;
    let produced_at = Instant::now();
    loop {
        let n = consumed().await?;
        if n >= events {
            break;
        }
        anyhow::ensure!(
            produced_at.elapsed() < Duration::from_secs(120),
            "consumed {n} of {events} two minutes after the producer stopped"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let done = Instant::now();
    Ok(Live {
        produced: events as f64 / (produced_at - started).as_secs_f64(),
        sustained: events as f64 / (done - started).as_secs_f64(),
        lag: done - produced_at,
    })
}

/// Live, bare: a consumer task loops XREADGROUP (BLOCK 100) + XACK while the producer
/// adds entries.
async fn live_bare(client: &redis::Client, key: &str, events: usize) -> Result<Live> {
    let mut con = client.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(key)
        .arg("bare")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut con)
        .await?;
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let mut reader = client.get_multiplexed_async_connection().await?;
    let stream = key.to_owned();
    let consumer = tokio::spawn(async move {
        while seen.load(Ordering::Relaxed) < events {
            let n = read_and_ack(&mut reader, &stream, Some(100)).await?;
            seen.fetch_add(n, Ordering::Relaxed);
        }
        anyhow::Ok(())
    });
    let live = produce_and_wait(&mut con, key, events, || {
        let n = count.load(Ordering::Relaxed);
        async move { Ok(n) }
    })
    .await?;
    consumer.await??;
    Ok(live)
}

/// Live, botwatch: `serve` on Redis (in-process, its own prefix) follows while the
/// producer adds entries; done when the aggregator has counted every message.
async fn live_botwatch(
    client: &redis::Client,
    url: &str,
    prefix: &str,
    events: usize,
) -> Result<Live> {
    let mut cfg = RedisConfig::new(url);
    cfg.prefix = prefix.to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let config = Config::new(listener.local_addr()?, StorageConfig::Redis(cfg));
    let server = Server::open(config).await?;
    let aggregator = server.state().aggregator.clone();
    let stop = CancellationToken::new();
    let serving = tokio::spawn(server.serve(listener, stop.clone()));
    let mut con = client.get_multiplexed_async_connection().await?;
    let live = produce_and_wait(&mut con, &format!("{prefix}events"), events, || {
        let aggregator = aggregator.clone();
        async move {
            let n = aggregator
                .query(|a| a.bot("helpdesk").map_or(0, |f| f.message_count()))
                .await?;
            Ok(n as usize)
        }
    })
    .await?;
    stop.cancel();
    serving.await??;
    Ok(live)
}

async fn fill_chunked(
    con: &mut redis::aio::MultiplexedConnection,
    key: &str,
    events: usize,
    chunk: usize,
) -> Result<()> {
    for chunk in (0..events).collect::<Vec<_>>().chunks(chunk) {
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
    if args.live {
        for round in 0..args.repeats {
            let prefix = format!("bwfollow:{}:live:{round}:", std::process::id());
            let b = live_bare(&client, &format!("{prefix}bare"), args.events).await?;
            let o = live_botwatch(&client, &args.redis_url, &prefix, args.events).await?;
            println!(
                "live round {round}: producer {:.0}/s and {:.0}/s; bare consumer {:.0} entries/s sustained, lag {} ms at the end; \
                 botwatch {:.0} events/s sustained, lag {} ms at the end; ratio {:.2}",
                b.produced,
                o.produced,
                b.sustained,
                b.lag.as_millis(),
                o.sustained,
                o.lag.as_millis(),
                o.sustained / b.sustained
            );
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
