//! `live-bench`: how fast and how cheaply botwatch's live hub delivers to many
//! dashboards, measured end to end: an event ingested over HTTP → log → aggregator →
//! hub → every client subscribed to that dialog.
//!
//! `botwatch serve` runs as a child process (embedded storage, a temp directory), so
//! its CPU time is its own (from `/proc/PID/stat`); this tool opens `--clients`
//! WebSocket clients on `bot/bench/dialog/u1`, waits for their snapshots, then
//! ingests `--rate` single-event requests per second for `--seconds`. Each event's
//! text is the wall-clock time it was sent (ns); each client records the latency of
//! every delta it gets (hdrhistogram). Reported: latency p50/p99/p999, completion
//! time (first send → last delivery), delivered %, CPU µs per delivery of the server
//! and of this tool, the server's memory per idle connection, and the load average.
//!
//! `--peers soketi` also drives Soketi (a Pusher-protocol server; install it with
//! `npm install` in `benches/peers/soketi`) with the same broadcast: the same clients
//! on one channel, the same events published through its HTTP API, in the same run,
//! alternating with botwatch. For Soketi the path is publish → client (no log, no
//! aggregator), for botwatch ingest → log → aggregator → hub → client.
//! Everything stays on 127.0.0.1.

mod process;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use process::{ServerProcess, cpu_and_rss};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const TOKEN: &str = "live-bench-token";

#[derive(Parser, Debug)]
#[command(about = "Live hub: event-to-client latency and CPU per delivery")]
struct Args {
    /// Client counts to measure, comma-separated.
    #[arg(long, default_value = "100,1000")]
    clients: String,
    /// Events per second ingested during a measurement; several (comma-separated)
    /// make a sweep that stops for a server once its p99 passes `--max-p99-ms`.
    #[arg(long, default_value = "20")]
    rate: String,
    /// Extra clients that subscribe and then read nothing (comma-separated counts, each
    /// measured): the others' latency shows whether a stuck client holds them up.
    #[arg(long, default_value = "0")]
    stuck: String,
    /// The p99 at which a sweep stops raising the rate for a server.
    #[arg(long, default_value_t = 250.0)]
    max_p99_ms: f64,
    /// Clients per source address (127.0.0.1, .2, …): one address has about 28,000
    /// ephemeral ports here.
    #[arg(long, default_value_t = 20_000)]
    clients_per_address: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The botwatch binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/botwatch")]
    binary: PathBuf,
    /// botwatch's port; 0 picks a free one for every measurement (a server of the
    /// previous measurement may still hold its port while it stops).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Peers measured beside botwatch, comma-separated: soketi, sockudo.
    #[arg(long, default_value = "")]
    peers: String,
    /// Rounds: each measures botwatch and every peer once.
    #[arg(long, default_value_t = 1)]
    repeats: usize,
    /// How long the clients sit idle before the server's memory is read: allocators
    /// give what the connections' set-up used back to the system after a delay
    /// (mimalloc: 1 s), so a read taken sooner counts it as the connections'.
    #[arg(long, default_value_t = 500)]
    settle_ms: u64,
    /// Also measure the kernel's floor for each size and rate: one thread writing a
    /// frame of this many bytes to every client's loopback socket (0: not measured).
    #[arg(long, default_value_t = 0)]
    floor_bytes: usize,
    /// Also print (to stderr) each event's first and last client's latency.
    #[arg(long)]
    per_event: bool,
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Botwatch,
    Soketi,
    Sockudo,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Botwatch => "botwatch",
            Target::Soketi => "soketi",
            Target::Sockudo => "sockudo",
        }
    }

    /// The port of a Pusher-protocol peer.
    fn pusher_port(self) -> u16 {
        match self {
            Target::Sockudo => SOCKUDO_PORT,
            _ => SOKETI_PORT,
        }
    }
}

const SOCKUDO_PORT: u16 = 6002;

const SOKETI_PORT: u16 = 6001;
const PUSHER_APP: (&str, &str, &str) = ("app-id", "app-key", "app-secret");

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

async fn start_soketi() -> Result<ServerProcess> {
    let dir = tempfile::tempdir()?;
    let root = PathBuf::from("benches/peers/soketi");
    if !root
        .join("node_modules/@soketi/soketi/bin/server.js")
        .exists()
    {
        bail!("Soketi is not installed: run `npm install` in benches/peers/soketi first");
    }
    let child = Command::new("node")
        .arg("node_modules/@soketi/soketi/bin/server.js")
        .arg("start")
        .arg("--config=soketi.json")
        .current_dir(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start Soketi (run `npm install` in benches/peers/soketi first)")?;
    let server = ServerProcess { child, _dir: dir };
    let http = reqwest::Client::new();
    for _ in 0..300 {
        let up = http
            .get(format!("http://127.0.0.1:{SOKETI_PORT}/"))
            .send()
            .await;
        if up.is_ok_and(|r| r.status().is_success()) {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("Soketi did not answer on port {SOKETI_PORT} within 30 s")
}

/// Sockudo (`cargo install sockudo --locked --no-default-features --features local`),
/// configured as PEERS.md says.
async fn start_sockudo() -> Result<ServerProcess> {
    let dir = tempfile::tempdir()?;
    let (app, key, secret) = PUSHER_APP;
    let child = Command::new("sockudo")
        .env("HOST", "127.0.0.1")
        .env("PORT", SOCKUDO_PORT.to_string())
        .env("METRICS_ENABLED", "false")
        .env("RATE_LIMITER_ENABLED", "false")
        .env("SOCKUDO_DEFAULT_APP_ID", app)
        .env("SOCKUDO_DEFAULT_APP_KEY", key)
        .env("SOCKUDO_DEFAULT_APP_SECRET", secret)
        .env("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "100000")
        .env(
            "SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND",
            "100000",
        )
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start sockudo (install it as BENCHMARKS.md says)")?;
    let server = ServerProcess { child, _dir: dir };
    for _ in 0..300 {
        if pusher_client(std::net::Ipv4Addr::LOCALHOST, SOCKUDO_PORT, None)
            .await
            .is_ok()
        {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("Sockudo did not answer on port {SOCKUDO_PORT} within 30 s")
}

/// Publishes to the Pusher channel `bench` through the signed HTTP API.
async fn pusher_publish(http: &reqwest::Client, port: u16, data: &str) -> Result<()> {
    use hmac::Mac;
    use md5::Digest;
    let (app, key, secret) = PUSHER_APP;
    let body = json!({"name": "ev", "channels": ["bench"], "data": data}).to_string();
    let md5 = hex(&md5::Md5::digest(body.as_bytes()));
    let path = format!("/apps/{app}/events");
    let query = format!(
        "auth_key={key}&auth_timestamp={}&auth_version=1.0&body_md5={md5}",
        now_ns() / 1_000_000_000
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(format!("POST\n{path}\n{query}").as_bytes());
    let signature = hex(&mac.finalize().into_bytes());
    let r = http
        .post(format!(
            "http://127.0.0.1:{port}{path}?{query}&auth_signature={signature}"
        ))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!(
            "publish answered {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn start_server(args: &Args, port: u16) -> Result<ServerProcess> {
    process::serve(&args.binary, port, TOKEN, &[]).await
}

fn event(n: u64, sent_ns: u64) -> Value {
    json!({"id": format!("b{n}"), "bot": "bench", "type": "message", "direction": "in",
           "provider": "web", "user": {"id": "u1"}, "text": sent_ns.to_string()})
}

async fn ingest(http: &reqwest::Client, port: u16, body: &Value) -> Result<()> {
    let r = http
        .post(format!("http://127.0.0.1:{port}/api/v1/events"))
        .bearer_auth(TOKEN)
        .json(body)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("ingest answered {}", r.status());
    }
    Ok(())
}

/// The send time carried in a botwatch dialog delta's message text, or in a Pusher
/// event's data.
fn sent_at(frame: &str) -> Option<u64> {
    let rest = match frame.split_once(r#""kind":"delta""#) {
        Some((_, delta)) => delta.split_once(r#""text":""#)?.1,
        None => {
            frame
                .split_once(r#""event":"ev""#)?
                .1
                .split_once(r#""data":""#)?
                .1
        }
    };
    rest.split('"').next()?.parse().ok()
}

/// A WebSocket connection to 127.0.0.1:`port` from the source address `from`.
async fn connect(
    from: std::net::Ipv4Addr,
    port: u16,
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    receive_buffer: Option<u32>,
) -> Result<Socket> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(bytes) = receive_buffer {
        // Before connecting, so the window the server sees is small from the start.
        socket.set_recv_buffer_size(bytes)?;
    }
    socket
        .bind((from, 0).into())
        .with_context(|| format!("bind {from}"))?;
    let stream = socket
        .connect((std::net::Ipv4Addr::LOCALHOST, port).into())
        .await?;
    stream.set_nodelay(true)?;
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0);
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
    Ok(ws)
}

/// CPU ticks (utime + stime) of the calling thread.
fn thread_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
    // The name (in parentheses) may hold spaces: the fields after it are fixed.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// The most clients the floor measures (it holds both ends of every socket).
const FLOOR_MAX_CLIENTS: usize = 9_000;

/// The least CPU any hub spends per delivery when every delivery is its own write, as
/// at light load: one thread writes a WebSocket text frame of `bytes` to each of
/// `clients` loopback sockets, `rate` times a second, for `seconds`. On loopback the
/// receiving side's TCP work is charged to the writer, as it is to a server. Returns
/// µs of that thread's CPU per write.
async fn write_floor(
    clients: usize,
    rate: u64,
    seconds: u64,
    per_address: usize,
    bytes: usize,
) -> Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let mut writers = Vec::with_capacity(clients);
    let mut readers = Vec::with_capacity(clients);
    for n in 0..clients {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind((source_address(n, per_address), 0).into())?;
        let (client, accepted) = tokio::join!(
            socket.connect((std::net::Ipv4Addr::LOCALHOST, port).into()),
            listener.accept()
        );
        let (mut client, (server, _)) = (client?, accepted?);
        server.set_nodelay(true)?;
        let server = server.into_std()?;
        server.set_nonblocking(false)?;
        writers.push(server);
        readers.push(tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 16 * 1024];
            let mut got = 0u64;
            while let Ok(n) = client.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            got
        }));
    }
    // A text frame as a server sends it: unmasked, a 16-bit length past 125 bytes.
    let mut frame = vec![0x81u8];
    if bytes <= 125 {
        frame.push(bytes as u8);
    } else {
        frame.push(126);
        frame.extend_from_slice(&(bytes.min(65_535) as u16).to_be_bytes());
    }
    frame.resize(frame.len() + bytes.min(65_535), b'x');
    let rounds = rate * seconds;
    let frame_len = frame.len() as u64;
    let ticks = tokio::task::spawn_blocking(move || -> Result<u64> {
        use std::io::Write;
        let start = Instant::now();
        let before = thread_ticks()?;
        for round in 0..rounds {
            for w in &mut writers {
                w.write_all(&frame)?;
            }
            let due = start + Duration::from_secs_f64((round + 1) as f64 / rate as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        Ok(thread_ticks()? - before)
    })
    .await??;
    let mut received = 0;
    for r in readers {
        received += r.await?;
    }
    if received != frame_len * rounds * clients as u64 {
        bail!(
            "the floor's readers got {received} bytes, not {}",
            frame_len * rounds * clients as u64
        );
    }
    // 100 ticks per second.
    Ok(ticks as f64 * 10_000.0 / (rounds * clients as u64) as f64)
}

/// The source address of client `n`: 127.0.0.1 for the first `per_address`, then .2, …
fn source_address(n: usize, per_address: usize) -> std::net::Ipv4Addr {
    let k = (n / per_address.max(1)).min(253) as u8;
    std::net::Ipv4Addr::new(127, 0, 0, 1 + k)
}

/// A Pusher client subscribed to `bench`.
async fn pusher_client(
    from: std::net::Ipv4Addr,
    port: u16,
    receive_buffer: Option<u32>,
) -> Result<Socket> {
    let (_, key, _) = PUSHER_APP;
    let url = format!("ws://127.0.0.1:{port}/app/{key}?protocol=7&client=js&version=8.4.0");
    let mut ws = connect(from, port, url.into_client_request()?, receive_buffer).await?;
    let mut subscribed = false;
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            other => bail!("Pusher handshake: {other:?}"),
        };
        if text.contains("pusher:connection_established") && !subscribed {
            ws.send(Message::text(
                json!({"event": "pusher:subscribe", "data": {"channel": "bench"}}).to_string(),
            ))
            .await?;
            subscribed = true;
        } else if text.contains("pusher_internal:subscription_succeeded") {
            return Ok(ws);
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn client(
    from: std::net::Ipv4Addr,
    port: u16,
    receive_buffer: Option<u32>,
) -> Result<Socket> {
    let mut request = format!("ws://127.0.0.1:{port}/api/v1/live").into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {TOKEN}"))?,
    );
    let mut ws = connect(from, port, request, receive_buffer).await?;
    ws.send(Message::text(
        json!({"op": "subscribe", "topic": "bot/bench/dialog/u1"}).to_string(),
    ))
    .await?;
    // The snapshot.
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(_))) => return Ok(ws),
            Some(Ok(_)) => continue,
            other => bail!("no snapshot: {other:?}"),
        }
    }
}

/// What the stuck clients' sockets took from the kernel: a few KiB.
const STUCK_RECEIVE_BUFFER: u32 = 4096;

/// What became of the stuck clients, read after the measurement: closed with a code,
/// resynced with a later snapshot, or still open with neither.
async fn stuck_outcome(sockets: Vec<Socket>) -> String {
    if sockets.is_empty() {
        return "-".into();
    }
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for mut ws in sockets {
        let mut outcome = "open".to_string();
        loop {
            match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.contains(r#""kind":"snapshot""#) => {
                    outcome = "resynced".into();
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    outcome = match frame {
                        Some(f) => format!("closed {}", u16::from(f.code)),
                        None => "closed".into(),
                    };
                    break;
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => {
                    if outcome == "open" {
                        outcome = "cut off".into();
                    }
                    break;
                }
                Err(_) => break,
            }
        }
        *outcomes.entry(outcome).or_default() += 1;
    }
    outcomes
        .iter()
        .map(|(outcome, n)| format!("{n} {outcome}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A counter's value in a Prometheus text exposition (0 when absent).
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

struct Row {
    target: Target,
    clients: usize,
    stuck: usize,
    stuck_outcome: String,
    rate: u64,
    deliveries_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    /// Per event, its first client's latency (median over events).
    first_ms: f64,
    /// Per event, its last client's latency (median and worst over events).
    last_ms: (f64, f64),
    completion_s: f64,
    delivered_pct: f64,
    server_us: f64,
    tool_us: f64,
    idle_bytes: f64,
    load: String,
}

async fn measure(
    args: &Args,
    target: Target,
    (clients, stuck): (usize, usize),
    rate: u64,
) -> Result<Row> {
    let port = match args.port {
        0 => std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
        port => port,
    };
    let server = match target {
        Target::Botwatch => start_server(args, port).await?,
        Target::Soketi => start_soketi().await?,
        Target::Sockudo => start_sockudo().await?,
    };
    let pid = server.child.id();
    let http = reqwest::Client::new();
    if target == Target::Botwatch {
        // The dialog exists before anyone subscribes.
        ingest(&http, port, &event(0, now_ns())).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let (_, rss_before) = cpu_and_rss(pid)?;
    let mut sockets = Vec::with_capacity(clients);
    for chunk in (0..clients + stuck).collect::<Vec<_>>().chunks(200) {
        let opened = futures_util::future::join_all(chunk.iter().map(|&n| async move {
            let from = source_address(n, args.clients_per_address);
            // A stuck client's kernel takes only a few KiB, so the server meets it at once.
            let receive_buffer = (n >= clients).then_some(STUCK_RECEIVE_BUFFER);
            match target {
                Target::Botwatch => client(from, port, receive_buffer).await,
                Target::Soketi | Target::Sockudo => {
                    pusher_client(from, target.pusher_port(), receive_buffer).await
                }
            }
        }))
        .await;
        for ws in opened {
            sockets.push(ws?);
        }
    }
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let (_, rss_idle) = cpu_and_rss(pid)?;
    let idle_bytes = (rss_idle.saturating_sub(rss_before)) as f64 / (clients + stuck) as f64;
    // The stuck ones: held open, never read, until the measurement ends.
    let stuck_sockets = sockets.split_off(clients);

    let events = rate * args.seconds;
    let delivered = Arc::new(AtomicU64::new(0));
    let last_delivery = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::with_capacity(clients);
    for mut ws in sockets {
        let (delivered, last_delivery) = (delivered.clone(), last_delivery.clone());
        readers.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            // (sent, received) of each delivery: per event, when its first and last
            // client had it.
            let mut times = Vec::with_capacity(events as usize);
            let mut got = 0u64;
            while got < events {
                let frame = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => t,
                    Ok(Some(Ok(_))) => continue,
                    _ => break,
                };
                if frame.as_str().contains("pusher:ping") {
                    let pong = json!({"event": "pusher:pong", "data": {}}).to_string();
                    let _ = ws.send(Message::text(pong)).await;
                    continue;
                }
                let received = now_ns();
                // The message's text is the first `"text":"` of a dialog delta (the
                // tool stays cheap: no JSON tree per frame).
                if let Some(sent) = sent_at(frame.as_str()) {
                    let _ = h.record(received.saturating_sub(sent) / 1000);
                    times.push((sent, received));
                    got += 1;
                    delivered.fetch_add(1, Ordering::Relaxed);
                    last_delivery.fetch_max(received, Ordering::Relaxed);
                }
            }
            // The socket goes back with the figures: every client stays connected until
            // the last one is done, so a server does not tear down the finished ones
            // while it still writes to the others.
            (h, times, ws)
        }));
    }

    // Every reader task polled once and waiting before the clock starts: the first
    // deliveries must not wait for the tool's own start-up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (server_before, _) = cpu_and_rss(pid)?;
    let tool_before = cpu_and_rss(std::process::id())?.0;
    let started_ns = now_ns();
    let started = Instant::now();
    let every = Duration::from_nanos(1_000_000_000 / rate.max(1));
    // Each event is sent on time by a task of its own: a slow answer does not delay
    // the next event (the server's group commit takes the overlap).
    let mut sends = tokio::task::JoinSet::new();
    for n in 1..=events {
        let due = started + every * (n as u32 - 1);
        tokio::time::sleep_until(due.into()).await;
        let http = http.clone();
        sends.spawn(async move {
            match target {
                Target::Botwatch => ingest(&http, port, &event(n, now_ns())).await,
                Target::Soketi | Target::Sockudo => {
                    pusher_publish(&http, target.pusher_port(), &now_ns().to_string()).await
                }
            }
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent??;
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut per_event: std::collections::HashMap<u64, (u64, u64)> = Default::default();
    let mut finished = Vec::with_capacity(readers.len());
    for r in readers {
        let (h, times, ws) = r.await?;
        finished.push(ws);
        all.add(h)?;
        for (sent, received) in times {
            let e = per_event.entry(sent).or_insert((received, received));
            e.0 = e.0.min(received);
            e.1 = e.1.max(received);
        }
    }
    // Per event: its first client's latency (the way in: ingest, log, aggregator, hub)
    // and its last client's (the fan-out and the clients' reading on top).
    let ms = |ns: u64| ns as f64 / 1e6;
    if std::env::var_os("LIVE_BENCH_EVENTS").is_some() {
        let mut each: Vec<_> = per_event.iter().collect();
        each.sort();
        for (s, (f, l)) in each {
            eprintln!(
                "event at {:.3} s: first {:.1} ms, last {:.1} ms",
                ms(s - started_ns) / 1e3,
                ms(f - s),
                ms(l - s)
            );
        }
    }
    let mut first: Vec<f64> = per_event.iter().map(|(s, (f, _))| ms(f - s)).collect();
    let mut last: Vec<f64> = per_event.iter().map(|(s, (_, l))| ms(l - s)).collect();
    first.sort_by(f64::total_cmp);
    last.sort_by(f64::total_cmp);
    let median = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(0.0);
    let (server_after, _) = cpu_and_rss(pid)?;
    let tool_after = cpu_and_rss(std::process::id())?.0;
    drop(finished);
    let deliveries = delivered.load(Ordering::Relaxed);
    let expected = events * clients as u64;
    let per = |ticks: u64| ticks as f64 * 10_000.0 / deliveries.max(1) as f64;
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let mut stuck_outcome = stuck_outcome(stuck_sockets).await;
    if target == Target::Botwatch && stuck > 0 {
        // What the server says it did: the client alone cannot tell a 1013 it never
        // received (the close frame waits behind the data it does not read) from a reset.
        let metrics = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        stuck_outcome += &format!(
            " (server: {} resynced, {} closed 1013)",
            counter(&metrics, "botwatch_live_resyncs"),
            counter(&metrics, "botwatch_live_closed_slow")
        );
    }
    drop(server);
    let completion_s = (last_delivery
        .load(Ordering::Relaxed)
        .saturating_sub(started_ns)) as f64
        / 1e9;
    Ok(Row {
        target,
        clients,
        stuck,
        stuck_outcome,
        rate,
        deliveries_per_s: deliveries as f64 / completion_s.max(1e-9),
        p50_ms: all.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: all.value_at_quantile(0.99) as f64 / 1000.0,
        p999_ms: all.value_at_quantile(0.999) as f64 / 1000.0,
        first_ms: median(&first),
        last_ms: (median(&last), last.last().copied().unwrap_or(0.0)),
        completion_s,
        delivered_pct: deliveries as f64 * 100.0 / expected.max(1) as f64,
        server_us: per(server_after - server_before),
        tool_us: per(tool_after - tool_before),
        idle_bytes,
        load,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let rates: Vec<u64> = args
        .rate
        .split(',')
        .map(|r| r.trim().parse().context("--rate"))
        .collect::<Result<_>>()?;
    println!(
        "# live-bench: one topic (botwatch: a dialog; Pusher: a channel), {} events/s for {} s, every client subscribed",
        args.rate, args.seconds
    );
    println!(
        "| server | clients | stuck | stuck became | events/s | deliveries/s | p50 ms | p99 ms | p999 ms | first client ms | last client ms (median · worst) | completion s | delivered % | server µs/delivery | tool µs/delivery | server bytes/idle connection | load avg |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let stucks: Vec<usize> = args
        .stuck
        .split(',')
        .map(|n| n.trim().parse().context("--stuck"))
        .collect::<Result<_>>()?;
    let mut targets = vec![Target::Botwatch];
    for peer in args
        .peers
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        targets.push(match peer {
            "soketi" => Target::Soketi,
            "sockudo" => Target::Sockudo,
            other => bail!("unknown peer {other:?} (known: soketi, sockudo)"),
        });
    }
    // Per round, clients and server: the most deliveries/s with every delivery made
    // and p99 within `--max-p99-ms`.
    let mut saturation: Vec<(usize, usize, Target, f64)> = Vec::new();
    for round in 0..args.repeats.max(1) {
        for clients in args.clients.split(',') {
            let clients: usize = clients.trim().parse().context("--clients")?;
            let mut saturated = Vec::new();
            for (&rate, &stuck) in rates
                .iter()
                .flat_map(|r| stucks.iter().map(move |s| (r, s)))
            {
                for &target in &targets {
                    if saturated.contains(&target) {
                        continue;
                    }
                    let r = measure(&args, target, (clients, stuck), rate).await?;
                    println!(
                        "| {} | {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} · {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {:.0} | {} |",
                        r.target.name(),
                        r.clients,
                        r.stuck,
                        r.stuck_outcome,
                        r.rate,
                        r.deliveries_per_s,
                        r.p50_ms,
                        r.p99_ms,
                        r.p999_ms,
                        r.first_ms,
                        r.last_ms.0,
                        r.last_ms.1,
                        r.completion_s,
                        r.delivered_pct,
                        r.server_us,
                        r.tool_us,
                        r.idle_bytes,
                        r.load
                    );
                    if r.p99_ms > args.max_p99_ms || r.delivered_pct < 99.99 {
                        saturated.push(target);
                        continue;
                    }
                    match saturation
                        .iter_mut()
                        .find(|s| (s.0, s.1, s.2) == (round, clients, target))
                    {
                        Some(s) => s.3 = s.3.max(r.deliveries_per_s),
                        None => saturation.push((round, clients, target, r.deliveries_per_s)),
                    }
                }
            }
        }
    }
    if args.floor_bytes > 0 {
        println!(
            "\n# the floor: one thread, one write(2) of a {}-byte frame per client and event",
            args.floor_bytes
        );
        println!("| clients | events/s | writes/s | CPU µs per write |");
        println!("|---:|---:|---:|---:|");
        for clients in args.clients.split(',') {
            let clients: usize = clients.trim().parse().context("--clients")?;
            if clients > FLOOR_MAX_CLIENTS {
                // Both ends of every socket live in this process: 2 descriptors each,
                // and a process holds about 20,000 here.
                println!("| {clients} | | | not measured: more than {FLOOR_MAX_CLIENTS} clients |");
                continue;
            }
            for &rate in &rates {
                let us = write_floor(
                    clients,
                    rate,
                    args.seconds,
                    args.clients_per_address,
                    args.floor_bytes,
                )
                .await?;
                println!(
                    "| {clients} | {rate} | {} | {us:.1} |",
                    clients as u64 * rate
                );
            }
        }
    }
    if rates.len() > 1 {
        println!(
            "\n# the most deliveries/s with p99 <= {} ms and every delivery made",
            args.max_p99_ms
        );
        for (round, clients, target, best) in saturation {
            println!(
                "round {} · {} clients · {}: {best:.0} deliveries/s",
                round + 1,
                clients,
                target.name()
            );
        }
    }
    Ok(())
}
