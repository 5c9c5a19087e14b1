//! `ingest-bench`: how many events per second botwatch takes in, on each backend,
//! measured side by side with Redis's own ceiling in the same run.
//!
//! Rows, alternated A/B/A/B over `--repeats` rounds (the machine is noisy; compare
//! within a round and read the medians):
//! - `redis-benchmark XADD`, pipelined 16 deep and unpipelined, with the very payload
//!   botwatch stores (the event JSON under the field `event`);
//! - `adapter XADD`: a Rust adapter writing events straight into the stream,
//!   pipelined 16 deep over 4 connections;
//! - `http ingest (redis)` and `http ingest (embedded)`: `POST /api/v1/events` with
//!   batches of `--batch` events from `--concurrency` connections, against a server
//!   started in this process on 127.0.0.1 (de-duplication and durability included).
//!
//! Everything stays on 127.0.0.1 and stops by itself.

// The allocator `botwatch` itself runs with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use botwatch_log::{RedisConfig, StorageConfig};
use botwatch_server::{Config, Server};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(about = "HTTP ingest and Redis XADD throughput, side by side with redis-benchmark")]
struct Args {
    /// Events per measurement.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Events per HTTP request.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Rounds; each round measures every row once.
    #[arg(long, default_value_t = 2)]
    repeats: usize,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Rows to run (comma-separated): rb, xadd, redis, embedded.
    #[arg(long, default_value = "rb,xadd,redis,embedded")]
    only: String,
    /// Offered rates (events/s, comma-separated): measures each row at each fixed rate
    /// for `--seconds` instead of at full speed (growth curves; see `rates`).
    #[arg(long)]
    rates: Option<String>,
    /// Seconds per fixed-rate measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Events per request in fixed-rate measurements.
    #[arg(long, default_value_t = 100)]
    rate_batch: usize,
    /// The botwatch binary fixed-rate measurements start (`cargo build --release`).
    #[arg(long, default_value = "target/release/botwatch")]
    binary: std::path::PathBuf,
}

mod process;
#[path = "ingest/rates.rs"]
mod rates;

#[derive(Debug, Clone)]
struct Measurement {
    events_per_sec: f64,
    detail: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let redis_host = args
        .redis_url
        .strip_prefix("redis://")
        .context("--redis-url must be redis://HOST:PORT")?
        .trim_end_matches('/')
        .to_owned();
    if !(redis_host.starts_with("127.") || redis_host.starts_with("localhost")) {
        bail!("benchmarks only run against Redis on 127.0.0.1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args, redis_host))
}

async fn run(args: Args, redis_host: String) -> Result<()> {
    let rows: Vec<&str> = args.only.split(',').map(str::trim).collect();
    let sample = event_json(0, 0);
    if let Some(rates) = &args.rates {
        let rates = rates
            .split(',')
            .map(|r| {
                r.trim()
                    .parse::<u64>()
                    .context("--rates: events per second")
            })
            .collect::<Result<Vec<u64>>>()?;
        if rates.contains(&0) {
            bail!("--rates: a rate is at least 1 event per second");
        }
        println!(
            "# ingest-bench --rates: {} s per rate, batches of {}, {} rounds; payload {} bytes",
            args.seconds,
            args.rate_batch,
            args.repeats,
            sample.len()
        );
        // Redis's own ceiling for the payload, before and after: the limit beside the curve.
        let ceiling = |when: &str| -> Result<()> {
            if rows.contains(&"rb") {
                let m = redis_benchmark(&redis_host, args.events, 16, &sample)?;
                println!(
                    "redis-benchmark XADD, P16 ({when}): {:.0} events/s",
                    m.events_per_sec
                );
            }
            Ok(())
        };
        ceiling("before")?;
        let measured = rates::run(&args, &rates, &rows).await?;
        ceiling("after")?;
        rates::print_table(&measured);
        return Ok(());
    }
    println!(
        "# ingest-bench: {} events per row, batches of {}, {} connections, {} rounds; payload {} bytes",
        args.events,
        args.batch,
        args.concurrency,
        args.repeats,
        sample.len()
    );
    let mut results: BTreeMap<&'static str, Vec<Measurement>> = BTreeMap::new();
    for round in 0..args.repeats {
        for row in &rows {
            let (name, m) = match *row {
                "rb" => {
                    let p16 = redis_benchmark(&redis_host, args.events, 16, &sample)?;
                    record(&mut results, "redis-benchmark XADD, P16", p16, round);
                    (
                        "redis-benchmark XADD, P1",
                        redis_benchmark(&redis_host, args.events / 4, 1, &sample)?,
                    )
                }
                "xadd" => (
                    "adapter XADD (Rust, P16 x 4 conns)",
                    adapter_xadd(&args, round).await?,
                ),
                "redis" => ("http ingest, redis", http_ingest(&args, round, true).await?),
                "embedded" => (
                    "http ingest, embedded",
                    http_ingest(&args, round, false).await?,
                ),
                other => bail!("unknown row {other:?}"),
            };
            record(&mut results, name, m, round);
        }
    }
    println!();
    println!("| row | median events/s | runs | load avg |");
    println!("|---|---:|---|---|");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let mut medians = BTreeMap::new();
    for (name, runs) in &results {
        let mut rates: Vec<f64> = runs.iter().map(|m| m.events_per_sec).collect();
        rates.sort_by(f64::total_cmp);
        let median = if !rates.len().is_multiple_of(2) {
            rates[rates.len() / 2]
        } else {
            (rates[rates.len() / 2 - 1] + rates[rates.len() / 2]) / 2.0
        };
        medians.insert(*name, median);
        let each: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        println!("| {name} | {median:.0} | {} | {load} |", each.join(", "));
    }
    if let (Some(rb), Some(http)) = (
        medians.get("redis-benchmark XADD, P16"),
        medians.get("http ingest, redis"),
    ) {
        println!(
            "\nhttp ingest on redis / redis-benchmark XADD P16 = {:.2} (target >= 0.50)",
            http / rb
        );
    }
    if let Some(embedded) = medians.get("http ingest, embedded") {
        println!("http ingest on embedded = {embedded:.0} events/s (target >= 100000)");
    }
    Ok(())
}

fn record(
    results: &mut BTreeMap<&'static str, Vec<Measurement>>,
    name: &'static str,
    m: Measurement,
    round: usize,
) {
    println!(
        "round {round}: {name:<40} {:>10.0} events/s  {}",
        m.events_per_sec, m.detail
    );
    results.entry(name).or_default().push(m);
}

/// A realistic event, about the size adapters send.
fn event_json(writer: usize, n: usize) -> String {
    let users = ["Олена К.", "John Smith", "Марія", "Carlos Díaz"];
    json!({
        "id": format!("bench-{writer}-{n}"),
        "bot": "helpdesk",
        "type": "message",
        "direction": if n.is_multiple_of(2) { "in" } else { "out" },
        "provider": "telegram",
        "user": {"id": format!("{}", 100_000 + (n * 7919 + writer) % 50_000), "name": users[n % users.len()]},
        "text": "Hello! Where is my order #12345? It was supposed to arrive yesterday, tracking says it is still in the warehouse.",
        "ts": "2026-11-26T10:15:00.123Z",
    })
    .to_string()
}

fn redis_benchmark(
    host: &str,
    events: usize,
    pipeline: usize,
    payload: &str,
) -> Result<Measurement> {
    let (hostname, port) = host.split_once(':').unwrap_or((host, "6379"));
    let key = format!("bwbench:rb:{}", std::process::id());
    let out = Command::new("redis-benchmark")
        .args(["-h", hostname, "-p", port, "-c", "4", "-P"])
        .arg(pipeline.to_string())
        .arg("-n")
        .arg(events.to_string())
        .arg("--csv")
        .args(["XADD", &key, "*", "event", payload])
        .output()
        .context("redis-benchmark (from the redis-tools package) must be installed")?;
    let _ = Command::new("redis-cli")
        .args(["-h", hostname, "-p", port, "DEL", &key])
        .output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("\"XADD"))
        .with_context(|| format!("unexpected redis-benchmark output: {stdout}"))?;
    // The test name contains quotes; the 7 numbers at the end do not.
    let numbers: Vec<&str> = line.rsplitn(8, ',').collect();
    let rps: f64 = numbers
        .get(6)
        .map(|s| s.trim_matches('"'))
        .context("rps column")?
        .parse()
        .context("rps number")?;
    Ok(Measurement {
        events_per_sec: rps,
        detail: format!("(P{pipeline}, 4 conns)"),
    })
}

async fn adapter_xadd(args: &Args, round: usize) -> Result<Measurement> {
    let client = redis::Client::open(args.redis_url.as_str())?;
    let key = format!("bwbench:xadd:{}:{round}", std::process::id());
    let per_conn = args.events / 4;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..4 {
        let mut con = client.get_multiplexed_async_connection().await?;
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let payloads: Vec<String> = (0..per_conn).map(|n| event_json(c, n)).collect();
            for chunk in payloads.chunks(16) {
                let mut pipe = redis::pipe();
                for p in chunk {
                    pipe.cmd("XADD")
                        .arg(&key)
                        .arg("*")
                        .arg("event")
                        .arg(p)
                        .ignore();
                }
                pipe.query_async::<()>(&mut con).await?;
            }
            Ok::<_, redis::RedisError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let mut con = client.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut con).await?;
    Ok(Measurement {
        events_per_sec: (per_conn * 4) as f64 / elapsed.as_secs_f64(),
        detail: String::from("(payloads built inside the timed loop)"),
    })
}

async fn http_ingest(args: &Args, round: usize, on_redis: bool) -> Result<Measurement> {
    let token = "bench-admin-token-0123456789";
    let dir = tempfile::tempdir()?;
    let prefix = format!("bwbench:{}:{round}:", std::process::id());
    let storage = if on_redis {
        let mut cfg = RedisConfig::new(args.redis_url.clone());
        cfg.prefix = prefix.clone();
        StorageConfig::Redis(cfg)
    } else {
        StorageConfig::Embedded {
            dir: dir.path().to_owned(),
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = Config::new(addr, storage);
    config.admin_token = Some(token.to_owned());
    let server = Server::open(config).await?;
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(server.serve(listener, shutdown.clone()));

    // Bodies are made before the clock starts; every event id is unique.
    let batches = args.events / args.batch;
    let bodies: Vec<String> = (0..batches)
        .map(|b| {
            let events: Vec<String> = (0..args.batch)
                .map(|k| event_json(round * 1000 + b % 1000, b * args.batch + k))
                .collect();
            format!("[{}]", events.join(","))
        })
        .collect();
    let queue = Arc::new(Mutex::new(bodies.into_iter()));
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let url = format!("http://{addr}/api/v1/events");
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (queue, latencies, client, url) = (
            queue.clone(),
            latencies.clone(),
            client.clone(),
            url.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().await.next() else {
                    return Ok::<_, anyhow::Error>(());
                };
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .bearer_auth(token)
                    .body(body)
                    .send()
                    .await?;
                if r.status().as_u16() != 202 {
                    bail!(
                        "ingest answered {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                }
                let micros = t.elapsed().as_micros() as u64;
                latencies.lock().await.record(micros.max(1))?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
    if on_redis {
        let client = redis::Client::open(args.redis_url.as_str())?;
        let mut con = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut con)
            .await?;
        for chunk in keys.chunks(1000) {
            let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut con).await?;
        }
    }
    let h = latencies.lock().await;
    Ok(Measurement {
        events_per_sec: (batches * args.batch) as f64 / elapsed.as_secs_f64(),
        detail: format!(
            "(request p50 {:.1} ms, p99 {:.1} ms)",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0
        ),
    })
}
