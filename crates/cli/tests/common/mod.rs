//! What the tests of the real binary share.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The base URL a started `botwatch serve` prints as its first line on standard output
/// (which must be piped); fails when none comes within 30 s.
pub async fn listening_on(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the server starts within 30 s (Redis must run on 127.0.0.1:6379)")
        .expect("read stdout")
        .expect("a line on stdout");
    line.strip_prefix("botwatch listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned()
}

/// Removes every key of a test's Redis prefix (the test's own deployment).
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all use it"
)]
pub async fn remove_redis_keys(prefix: &str) {
    let client = redis::Client::open("redis://127.0.0.1:6379").expect("url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await
        .expect("keys");
    if !keys.is_empty() {
        // UNLINK: Redis frees them in the background (a DEL of a stream of a million
        // entries outlasts the connection's response timeout).
        let _: () = redis::cmd("UNLINK")
            .arg(keys)
            .query_async(&mut con)
            .await
            .expect("unlink");
    }
}

/// Where a test's `botwatch serve` keeps its data.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all use it"
)]
pub enum Storage {
    Embedded(tempfile::TempDir),
    Redis { prefix: String },
}

/// A running `botwatch serve` and its base URL.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all use it"
)]
pub struct Running {
    pub child: Child,
    pub base: String,
}

/// Starts the real binary's `serve` on a free port of 127.0.0.1, on `storage`, with
/// `env` (and logs at warn); killed when dropped.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all use it"
)]
pub async fn serve(storage: &Storage, env: &[(&str, &str)]) -> Running {
    match storage {
        Storage::Embedded(dir) => {
            let mut cmd = command(env);
            cmd.arg("--data").arg(dir.path());
            spawn(cmd).await
        }
        Storage::Redis { prefix } => serve_on_redis("redis://127.0.0.1:6379", prefix, env).await,
    }
}

/// [`serve`] on the Redis at `url` (a test's own: `botwatch_tests::PrivateRedis`).
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all use it"
)]
pub async fn serve_on_redis(url: &str, prefix: &str, env: &[(&str, &str)]) -> Running {
    let mut cmd = command(env);
    cmd.arg("--redis")
        .arg(url)
        .arg("--redis-prefix")
        .arg(prefix);
    spawn(cmd).await
}

#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all use it"
)]
fn command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_botwatch"));
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .env("BOTWATCH_LOG", "warn")
        .env_remove("BOTWATCH_REDIS_URL")
        .env_remove("BOTWATCH_DATA")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all use it"
)]
async fn spawn(mut cmd: Command) -> Running {
    let mut child = cmd.spawn().expect("start botwatch serve");
    let base = listening_on(&mut child).await;
    Running { child, base }
}

/// A request with `token`; the status and the JSON answer (null when not JSON).
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all use it"
)]
pub async fn call(
    token: &str,
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut r = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(body) = body {
        r = r.json(&body);
    }
    let answer = r.send().await.expect("request");
    let status = answer.status().as_u16();
    (
        status,
        answer.json().await.unwrap_or(serde_json::Value::Null),
    )
}

/// Serves a stand-in (Telegram, a bot's webhook, GA, Mixpanel) on a free port of
/// 127.0.0.1 for the rest of the test; returns its base address.
#[allow(
    dead_code,
    reason = "each test binary compiles this module; not all use it"
)]
pub async fn serve_stand_in(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
