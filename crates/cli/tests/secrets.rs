//! Nothing secret in clear: canary values (a user's password, an API token, the admin
//! token, an analytics API secret, a webhook secret) go in through the real command line and the real server, are used for real
//! (logins, failed logins, ingest, reads), and afterwards none of them is found in the
//! data directory, in Redis, or in anything the processes printed at debug level.
//! The users and tokens are made with `botwatch users|tokens` while the server runs.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

mod common;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

enum Storage {
    Embedded(tempfile::TempDir),
    Redis { prefix: String },
}

impl Storage {
    fn args(&self, cmd: &mut Command) {
        match self {
            Storage::Embedded(dir) => {
                cmd.arg("--data").arg(dir.path());
            }
            Storage::Redis { prefix } => {
                cmd.args(["--redis", REDIS_URL, "--redis-prefix", prefix]);
                // Redis keeps no key file: the nodes share this one.
                cmd.env("BOTWATCH_SECRET_KEY", "ab".repeat(32));
            }
        }
    }
}

fn botwatch(storage: &Storage) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_botwatch"));
    cmd.env_remove("BOTWATCH_REDIS_URL")
        .env_remove("BOTWATCH_DATA")
        .env_remove("BOTWATCH_PASSWORD")
        .env_remove("BOTWATCH_SECRET_KEY")
        .env("BOTWATCH_LOG", "debug")
        // Nothing listens there: the Bot API proxy's call fails at once.
        .env("BOTWATCH_TELEGRAM_API", "http://127.0.0.1:9")
        .kill_on_drop(true);
    storage.args(&mut cmd);
    cmd
}

/// Runs a command line to its end: its standard output and error, both kept as logs.
async fn run(mut cmd: Command, logs: &mut String) -> String {
    let out = cmd.output().await.expect("run botwatch");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    logs.push_str(&stderr);
    assert!(out.status.success(), "{cmd:?}: {stdout}{stderr}");
    stdout
}

/// A running `serve`: its address and a task reading its standard error (read all the
/// while, so a chatty server never blocks on a full pipe).
async fn serve(
    storage: &Storage,
    admin_token: &str,
) -> (Child, String, tokio::task::JoinHandle<String>) {
    let mut cmd = botwatch(storage);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env("BOTWATCH_ADMIN_TOKEN", admin_token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start botwatch serve");
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let base = common::listening_on(&mut child).await;
    (child, base, stderr)
}

/// Everything the storage holds, as bytes: every file under the data directory, or
/// every key under the prefix with its whole value.
async fn stored_bytes(storage: &Storage) -> Vec<u8> {
    match storage {
        Storage::Embedded(dir) => {
            let mut all = Vec::new();
            let mut stack = vec![dir.path().to_path_buf()];
            while let Some(path) = stack.pop() {
                for entry in std::fs::read_dir(&path).expect("read dir") {
                    let entry = entry.expect("entry");
                    if entry.file_type().expect("type").is_dir() {
                        stack.push(entry.path());
                    } else {
                        all.extend(std::fs::read(entry.path()).expect("read file"));
                    }
                }
            }
            assert!(!all.is_empty(), "the data directory holds something");
            all
        }
        Storage::Redis { prefix } => {
            let mut con = redis::Client::open(REDIS_URL)
                .expect("url")
                .get_multiplexed_async_connection()
                .await
                .expect("Redis");
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{prefix}*"))
                .query_async(&mut con)
                .await
                .expect("KEYS");
            assert!(!keys.is_empty(), "Redis holds something under {prefix}");
            let mut all = Vec::new();
            for key in keys {
                all.extend(key.as_bytes());
                let kind: String = redis::cmd("TYPE")
                    .arg(&key)
                    .query_async(&mut con)
                    .await
                    .expect("TYPE");
                let value: redis::Value = match kind.as_str() {
                    "string" => redis::cmd("GET").arg(&key).query_async(&mut con).await,
                    "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut con).await,
                    "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut con).await,
                    "zset" => {
                        redis::cmd("ZRANGE")
                            .arg(&key)
                            .arg(0)
                            .arg(-1)
                            .arg("WITHSCORES")
                            .query_async(&mut con)
                            .await
                    }
                    "list" => {
                        redis::cmd("LRANGE")
                            .arg(&key)
                            .arg(0)
                            .arg(-1)
                            .query_async(&mut con)
                            .await
                    }
                    "stream" => {
                        redis::cmd("XRANGE")
                            .arg(&key)
                            .arg("-")
                            .arg("+")
                            .query_async(&mut con)
                            .await
                    }
                    other => panic!("a key of type {other}: {key}"),
                }
                .expect("read a key");
                all.extend(format!("{value:?}").into_bytes());
            }
            let _: () = redis::cmd("DEL")
                .arg(
                    redis::cmd("KEYS")
                        .arg(format!("{prefix}*"))
                        .query_async::<Vec<String>>(&mut con)
                        .await
                        .expect("KEYS"),
                )
                .query_async(&mut con)
                .await
                .expect("DEL");
            all
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn no_canary_is_kept_or_logged_in_clear(storage: Storage) {
    let password = format!("canary-password-{}", uuid::Uuid::new_v4().simple());
    let api_secret = format!("canary-ga-secret-{}", uuid::Uuid::new_v4().simple());
    let webhook_secret = format!("canary-webhook-{}", uuid::Uuid::new_v4().simple());
    let admin_token = format!("canary-admin-{}", uuid::Uuid::new_v4().simple());
    let telegram_token = format!("123456:canary-telegram-{}", uuid::Uuid::new_v4().simple());
    let telegram_secret = format!("canary-tg-secret-{}", uuid::Uuid::new_v4().simple());
    let mut logs = String::new();

    let (mut server, base, stderr) = serve(&storage, &admin_token).await;
    // Accounts made by the command line while the server runs.
    let mut add = botwatch(&storage);
    add.args(["users", "add", "ann", "--role", "admin"])
        .env("BOTWATCH_PASSWORD", &password);
    run(add, &mut logs).await;
    let mut tokens = botwatch(&storage);
    tokens.args(["tokens", "add", "--bot", "shop", "--scope", "ingest"]);
    let token = run(tokens, &mut logs).await.trim().to_string();
    assert!(token.starts_with("bwt_"), "{token}");
    let mut list = botwatch(&storage);
    list.args(["tokens", "list"]);
    let listed = run(list, &mut logs).await;
    assert!(
        listed.contains("shop") && !listed.contains(&token),
        "{listed}"
    );

    let http = reqwest::Client::new();
    let login = |name: &str, password: &str| {
        http.post(format!("{base}/api/v1/session"))
            .json(&json!({"username": name, "password": password}))
            .send()
    };
    assert_eq!(login("ann", &password).await.expect("login").status(), 200);
    // Secrets typed into the wrong field or for the wrong user are not logged either.
    assert_eq!(login("ann", &token).await.expect("login").status(), 401);
    assert_eq!(
        login(&password, &password).await.expect("login").status(),
        401
    );
    let ingest = http
        .post(format!("{base}/api/v1/events"))
        .bearer_auth(&token)
        .json(
            &json!({"bot": "shop", "type": "message", "direction": "in", "provider": "web",
                      "user": {"id": "u1"}, "text": "hi"}),
        )
        .send()
        .await
        .expect("ingest");
    assert_eq!(ingest.status(), 202);
    let read = http
        .get(format!("{base}/api/v1/bots"))
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), 200);
    let wrong = http
        .get(format!("{base}/api/v1/bots"))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .expect("read");
    assert_eq!(wrong.status(), 401);

    // An analytics secret: stored sealed, shown masked.
    let settings = format!("{base}/api/v1/bots/shop/settings");
    let put = http
        .put(&settings)
        .bearer_auth(&admin_token)
        .json(&json!({"integrations": {"google_analytics": {
            "measurement_id": "G-CANARY1", "api_secret": api_secret, "active": true}},
            "webhook_url": "http://127.0.0.1:9/hook", "webhook_secret": webhook_secret}))
        .send()
        .await
        .expect("put settings");
    assert_eq!(put.status(), 200);
    let shown = http
        .get(&settings)
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("get settings")
        .text()
        .await
        .expect("body");
    assert!(!shown.contains(&api_secret), "{shown}");
    let tail = &api_secret[api_secret.len() - 4..];
    assert!(shown.contains(&format!("********{tail}")), "{shown}");
    assert!(!shown.contains(&webhook_secret), "{shown}");

    // Telegram's token and webhook secret: sealed, masked, and out of every log line
    // even when a framework calls the Bot API proxy with the token in the path.
    let put = http
        .put(&settings)
        .bearer_auth(&admin_token)
        .json(&json!({"channels": {"telegram": {"token": telegram_token,
            "webhook_secret": telegram_secret}}}))
        .send()
        .await
        .expect("put settings");
    assert_eq!(put.status(), 200);
    let proxied = http
        .post(format!(
            "{base}/channels/telegram/shop/api/bot{telegram_token}/getMe"
        ))
        .send()
        .await
        .expect("proxy");
    assert_eq!(
        proxied.status(),
        502,
        "Telegram (a closed port) is out of reach"
    );
    let said = proxied.text().await.expect("body");
    assert!(!said.contains(&telegram_token), "{said}");

    let pid = server.id().expect("pid");
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    tokio::time::timeout(Duration::from_secs(15), server.wait())
        .await
        .expect("stops")
        .expect("wait");
    let stderr = stderr.await.expect("stderr");
    assert!(
        stderr.contains("logged in"),
        "the server logged at debug level: {stderr}"
    );
    logs.push_str(&stderr);

    let stored = stored_bytes(&storage).await;
    for (what, canary) in [
        ("password", &password),
        ("token", &token),
        ("admin token", &admin_token),
        ("analytics secret", &api_secret),
        ("webhook secret", &webhook_secret),
        ("Telegram token", &telegram_token),
        ("Telegram webhook secret", &telegram_secret),
    ] {
        assert!(!contains(&stored, canary), "the {what} is stored in clear");
        assert!(!logs.contains(canary.as_str()), "the {what} is in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_no_canary_is_kept_or_logged_in_clear() {
    no_canary_is_kept_or_logged_in_clear(Storage::Embedded(tempfile::tempdir().expect("dir")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_no_canary_is_kept_or_logged_in_clear() {
    let prefix = format!("bwtest-secrets:{}:", uuid::Uuid::now_v7());
    no_canary_is_kept_or_logged_in_clear(Storage::Redis { prefix }).await;
}
