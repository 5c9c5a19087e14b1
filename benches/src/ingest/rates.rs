//! `ingest-bench --rates`: how botwatch's ingest behaves as the offered load grows
//! (1,000 → 100,000 events/s; issue 10's growth curves), beside what Redis itself
//! does at the same load in the same round.
//!
//! Each measurement offers a fixed rate for `--seconds`: a batch of `--rate-batch`
//! events leaves every `batch / rate` seconds whether or not the previous ones were
//! answered (open loop), and a request's latency counts from when it was due, so a
//! server that falls behind shows it (no coordinated omission). Rows:
//! - `adapter XADD`: the same batches written straight into a Redis stream, one
//!   pipeline per batch (what an adapter without botwatch would pay);
//! - `http ingest, redis` / `embedded`: `POST /api/v1/events` to a `botwatch serve`
//!   process of its own (`--binary`), so its CPU time and resident memory are its own.
//!
//! Redis's CPU time comes from `INFO cpu`; the load client's time is in neither.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use tokio::sync::Mutex;

use super::process::{ServerProcess, cpu_and_rss, serve};
use super::{Args, event_json};

const TOKEN: &str = "bench-admin-token-0123456789";

/// One measurement at one offered rate.
#[derive(Debug, Clone)]
pub struct RateRow {
    pub row: &'static str,
    pub offered: u64,
    pub achieved: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// CPU time of the server process per second of the run (1.0 = one core); `None`
    /// for the adapter row, which has no server.
    pub server_cores: Option<f64>,
    pub redis_cores: Option<f64>,
    /// Resident memory of the server at the end of the run.
    pub server_rss_mib: Option<f64>,
    pub failed: u64,
}

/// The rows to run at each rate, for the rows `--only` names.
pub async fn run(args: &Args, rates: &[u64], rows: &[&str]) -> Result<Vec<RateRow>> {
    let mut out = Vec::new();
    for round in 0..args.repeats {
        for &rate in rates {
            for row in rows {
                let measured = match *row {
                    "xadd" => adapter_at(args, rate, round).await?,
                    "redis" => http_at(args, rate, round, true).await?,
                    "embedded" => http_at(args, rate, round, false).await?,
                    // The ceiling is printed by the throughput rows.
                    "rb" => continue,
                    other => bail!("unknown row {other:?}"),
                };
                println!(
                    "round {round}: {:>7} events/s offered  {:<22} {:>9.0} achieved  p50 {:>7.2} ms  p99 {:>8.2} ms  server {}  redis {}  rss {}  failed {}",
                    rate,
                    measured.row,
                    measured.achieved,
                    measured.p50_ms,
                    measured.p99_ms,
                    cores(measured.server_cores),
                    cores(measured.redis_cores),
                    measured
                        .server_rss_mib
                        .map_or("-".to_owned(), |m| format!("{m:.0} MiB")),
                    measured.failed,
                );
                out.push(measured);
            }
        }
    }
    Ok(out)
}

fn cores(c: Option<f64>) -> String {
    c.map_or("-".to_owned(), |c| format!("{:.0} %", c * 100.0))
}

/// Prints the rows as a table, one line per offered rate and row (medians over rounds).
pub fn print_table(rows: &[RateRow]) {
    println!();
    println!(
        "| offered events/s | row | achieved events/s | request p50 ms | request p99 ms | server CPU | Redis CPU | server RSS | failed |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut keys: Vec<(u64, &'static str)> = rows.iter().map(|r| (r.offered, r.row)).collect();
    keys.sort();
    keys.dedup();
    for (offered, row) in keys {
        let runs: Vec<&RateRow> = rows
            .iter()
            .filter(|r| r.offered == offered && r.row == row)
            .collect();
        let med = |f: &dyn Fn(&RateRow) -> Option<f64>| -> String {
            let mut v: Vec<f64> = runs.iter().filter_map(|r| f(r)).collect();
            if v.is_empty() {
                return "-".to_owned();
            }
            v.sort_by(f64::total_cmp);
            let all: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
            if v.len() == 1 {
                all[0].clone()
            } else {
                all.join(" · ")
            }
        };
        println!(
            "| {offered} | {row} | {} | {} | {} | {} | {} | {} | {} |",
            med(&|r| Some(r.achieved.round())),
            med(&|r| Some(r.p50_ms)),
            med(&|r| Some(r.p99_ms)),
            med(&|r| r.server_cores.map(|c| c * 100.0)),
            med(&|r| r.redis_cores.map(|c| c * 100.0)),
            med(&|r| r.server_rss_mib),
            runs.iter().map(|r| r.failed).sum::<u64>(),
        );
    }
    println!("\n(CPU in % of one core; several rounds are listed smallest first)");
}

/// Bodies for one run: every event id unique across rows, rates and rounds.
fn bodies(args: &Args, rate: u64, round: usize, tag: usize) -> Vec<Vec<String>> {
    let batches = (rate * args.seconds).div_ceil(args.rate_batch as u64) as usize;
    (0..batches)
        .map(|b| {
            (0..args.rate_batch)
                .map(|k| {
                    event_json(
                        100_000 + tag * 10_000 + round * 100 + (rate as usize % 97),
                        b * args.rate_batch + k,
                    )
                })
                .collect()
        })
        .collect()
}

/// Sends `bodies` at `rate` events per second through `send`; latencies from when each
/// batch was due. Returns (events/s achieved, histogram in µs, failed requests).
async fn paced<F, Fut>(
    rate: u64,
    batch: usize,
    bodies: Vec<Vec<String>>,
    send: F,
) -> Result<(f64, Histogram<u64>, u64)>
where
    F: Fn(Vec<String>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let every = Duration::from_secs_f64(batch as f64 / rate as f64);
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let send = Arc::new(send);
    let started = Instant::now();
    let total = bodies.len() * batch;
    let mut tasks = Vec::with_capacity(bodies.len());
    for (n, body) in bodies.into_iter().enumerate() {
        let due = started + every * n as u32;
        tokio::time::sleep_until(due.into()).await;
        let (latencies, failed, send) = (latencies.clone(), failed.clone(), send.clone());
        tasks.push(tokio::spawn(async move {
            if send(body).await.is_err() {
                failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            let micros = due.elapsed().as_micros() as u64;
            let _ = latencies.lock().await.record(micros.max(1));
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed();
    let h = latencies.lock().await.clone();
    Ok((
        total as f64 / elapsed.as_secs_f64(),
        h,
        failed.load(std::sync::atomic::Ordering::Relaxed),
    ))
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Redis's CPU time so far, in seconds (`INFO cpu`: user + sys, main and children).
async fn redis_cpu(con: &mut redis::aio::MultiplexedConnection) -> Result<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(con).await?;
    let mut total = 0.0;
    for line in info.lines() {
        if let Some((key, value)) = line.trim().split_once(':')
            && key.starts_with("used_cpu_")
            && !key.contains("main_thread")
        {
            total += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    Ok(total)
}

async fn adapter_at(args: &Args, rate: u64, round: usize) -> Result<RateRow> {
    let client = redis::Client::open(args.redis_url.as_str())?;
    let con = client.get_multiplexed_async_connection().await?;
    let mut info = con.clone();
    let key = format!("bwbench:rates:xadd:{}:{round}:{rate}", std::process::id());
    let bodies = bodies(args, rate, round, 1);
    let cpu_before = redis_cpu(&mut info).await?;
    let wall = Instant::now();
    let send_key = key.clone();
    let (achieved, h, failed) = paced(rate, args.rate_batch, bodies, move |events| {
        let mut con = con.clone();
        let key = send_key.clone();
        async move {
            let mut pipe = redis::pipe();
            for e in &events {
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("*")
                    .arg("event")
                    .arg(e)
                    .ignore();
            }
            pipe.query_async::<()>(&mut con).await?;
            Ok(())
        }
    })
    .await?;
    let redis_cores = (redis_cpu(&mut info).await? - cpu_before) / wall.elapsed().as_secs_f64();
    let _: () = redis::cmd("UNLINK")
        .arg(&key)
        .query_async(&mut info)
        .await?;
    Ok(RateRow {
        row: "adapter XADD",
        offered: rate,
        achieved,
        p50_ms: ms(&h, 0.5),
        p99_ms: ms(&h, 0.99),
        server_cores: None,
        redis_cores: Some(redis_cores),
        server_rss_mib: None,
        failed,
    })
}

async fn start_server(args: &Args, prefix: Option<&str>) -> Result<(ServerProcess, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let env = match prefix {
        Some(prefix) => vec![
            ("BOTWATCH_REDIS_URL", args.redis_url.as_str()),
            ("BOTWATCH_REDIS_PREFIX", prefix),
        ],
        None => Vec::new(),
    };
    Ok((serve(&args.binary, port, TOKEN, &env).await?, port))
}

/// CPU seconds and resident MiB of a process.
fn cpu_seconds_and_rss_mib(pid: u32) -> Result<(f64, f64)> {
    let (ticks, rss) = cpu_and_rss(pid)?;
    Ok((ticks as f64 / 100.0, rss as f64 / 1_048_576.0))
}

async fn http_at(args: &Args, rate: u64, round: usize, on_redis: bool) -> Result<RateRow> {
    let prefix = format!("bwbench:rates:{}:{round}:{rate}:", std::process::id());
    let (server, port) = start_server(args, on_redis.then_some(prefix.as_str())).await?;
    let pid = server.child.id();
    let redis_client = redis::Client::open(args.redis_url.as_str())?;
    let mut info = redis_client.get_multiplexed_async_connection().await?;
    let bodies = bodies(args, rate, round, if on_redis { 2 } else { 3 });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let url = format!("http://127.0.0.1:{port}/api/v1/events");
    let (cpu_before, _) = cpu_seconds_and_rss_mib(pid)?;
    let redis_before = redis_cpu(&mut info).await?;
    let wall = Instant::now();
    let (achieved, h, failed) = paced(rate, args.rate_batch, bodies, move |events| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http
                .post(&url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(format!("[{}]", events.join(",")))
                .send()
                .await?;
            if r.status().as_u16() != 202 {
                bail!("ingest answered {}", r.status());
            }
            Ok(())
        }
    })
    .await?;
    let seconds = wall.elapsed().as_secs_f64();
    let (cpu_after, rss) = cpu_seconds_and_rss_mib(pid)?;
    let redis_cores = (redis_cpu(&mut info).await? - redis_before) / seconds;
    drop(server);
    if on_redis {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut info)
            .await?;
        for chunk in keys.chunks(1000) {
            let _: () = redis::cmd("UNLINK")
                .arg(chunk)
                .query_async(&mut info)
                .await?;
        }
    }
    Ok(RateRow {
        row: if on_redis {
            "http ingest, redis"
        } else {
            "http ingest, embedded"
        },
        offered: rate,
        achieved,
        p50_ms: ms(&h, 0.5),
        p99_ms: ms(&h, 0.99),
        server_cores: Some((cpu_after - cpu_before) / seconds),
        redis_cores: on_redis.then_some(redis_cores),
        server_rss_mib: Some(rss),
        failed,
    })
}
