//! A botwatch server started in-process on port 0, on either backend, for end-to-end
//! tests over real HTTP.

use std::net::SocketAddr;

use botwatch_log::{RedisConfig, StorageConfig};
use botwatch_server::{AppState, Config, Server};
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Shorter than in production, so the slow-body test is quick.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
}

/// What a stopped server stored, to start another on (`stop_keeping`, `start_with`).
pub struct Kept {
    backend: Backend,
    dir: Option<tempfile::TempDir>,
    redis_prefix: Option<String>,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    pub backend: Backend,
    redis_prefix: Option<String>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
    redis_url: String,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        TestServer::start_on(backend, REDIS_URL).await
    }

    /// Starts a server; on Redis, the one at `redis_url`.
    pub async fn start_on(backend: Backend, redis_url: &str) -> TestServer {
        TestServer::start_full(backend, None, redis_url, |_| {}).await
    }

    /// Starts a server with `configure` applied to its configuration; on what `kept`
    /// holds (a stopped server's storage) when given, else on fresh storage.
    pub async fn start_with(
        backend: Backend,
        kept: Option<Kept>,
        configure: impl FnOnce(&mut Config),
    ) -> TestServer {
        TestServer::start_full(backend, kept, REDIS_URL, configure).await
    }

    async fn start_full(
        backend: Backend,
        kept: Option<Kept>,
        redis_url: &str,
        configure: impl FnOnce(&mut Config),
    ) -> TestServer {
        let kept = kept.unwrap_or(Kept {
            backend,
            dir: None,
            redis_prefix: None,
        });
        assert_eq!(kept.backend, backend, "kept storage of another backend");
        let (storage, dir, redis_prefix) = match backend {
            Backend::Embedded => {
                let dir = kept
                    .dir
                    .unwrap_or_else(|| tempfile::tempdir().expect("temp dir"));
                let storage = StorageConfig::Embedded {
                    dir: dir.path().to_owned(),
                };
                (storage, Some(dir), None)
            }
            Backend::Redis => {
                let mut cfg = RedisConfig::new(redis_url);
                cfg.prefix = kept
                    .redis_prefix
                    .unwrap_or_else(|| format!("bwtest:{}:", uuid::Uuid::now_v7()));
                let prefix = cfg.prefix.clone();
                (StorageConfig::Redis(cfg), None, Some(prefix))
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = Config::new(addr, storage);
        config.admin_token = Some(ADMIN_TOKEN.to_owned());
        config.body_timeout = BODY_TIMEOUT;
        configure(&mut config);
        let server = Server::open(config)
            .await
            .expect("open the server (Redis must run on 127.0.0.1:6379 for Redis tests)");
        let state = server.state().clone();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            server.serve(listener, stop).await.expect("serve");
        });
        TestServer {
            addr,
            client: reqwest::Client::new(),
            state,
            backend,
            redis_prefix,
            shutdown,
            task: Some(task),
            _dir: dir,
            redis_url: redis_url.to_owned(),
        }
    }

    /// The storage this server runs on.
    pub fn storage(&self) -> StorageConfig {
        match (&self.redis_prefix, &self._dir) {
            (Some(prefix), _) => {
                let mut cfg = RedisConfig::new(self.redis_url.as_str());
                cfg.prefix = prefix.clone();
                StorageConfig::Redis(cfg)
            }
            (None, Some(dir)) => StorageConfig::Embedded {
                dir: dir.path().to_owned(),
            },
            (None, None) => unreachable!("a server runs on some storage"),
        }
    }

    /// Another node of the same deployment: a server on this one's Redis keys.
    pub async fn second_node(&self) -> TestServer {
        self.second_node_with(|_| {}).await
    }

    /// [`second_node`](Self::second_node) with `configure` applied to its configuration.
    pub async fn second_node_with(&self, configure: impl FnOnce(&mut Config)) -> TestServer {
        let kept = Kept {
            backend: Backend::Redis,
            dir: None,
            redis_prefix: Some(self.redis_prefix().to_owned()),
        };
        TestServer::start_full(Backend::Redis, Some(kept), &self.redis_url, configure).await
    }

    /// Waits until the figures count `n` messages of `bot` (in + out, summed over its
    /// users); fails after 10 s saying how many they counted.
    pub async fn wait_for_messages(&self, bot: &str, n: u64) {
        let started = std::time::Instant::now();
        loop {
            let (_, page) = self
                .get(&format!("/api/v1/bots/{bot}/users?limit=200"))
                .await;
            let total: u64 = page["items"]
                .as_array()
                .map(|users| users.iter().filter_map(|u| u["messages"].as_u64()).sum())
                .unwrap_or(0);
            if total == n {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "counted {total}, expected {n}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The prefix of this server's Redis keys.
    pub fn redis_prefix(&self) -> &str {
        self.redis_prefix.as_deref().expect("a Redis server")
    }

    /// A connection of the test's own to this server's Redis.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis_url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("Redis must run on 127.0.0.1:6379 for these tests (see README)")
    }

    /// Stops the server (it writes its last snapshot) and keeps what it stored.
    pub async fn stop_keeping(mut self) -> Kept {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
        Kept {
            backend: self.backend,
            dir: self._dir.take(),
            redis_prefix: self.redis_prefix.take(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends a request with the admin token; the status and the JSON answer (null when
    /// the answer is not JSON).
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
        let response = request
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let json = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// POSTs a body to the ingest endpoint.
    pub async fn ingest(&self, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        let request = self
            .client
            .post(self.url("/api/v1/events"))
            .header("content-type", "application/json")
            .body(body);
        self.send(request).await
    }

    /// What `/metrics` says (Prometheus text).
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send(self.client.put(self.url(path)).json(&body)).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send(self.client.post(self.url(path)).json(&body))
            .await
    }

    pub async fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send(self.client.patch(self.url(path)).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(self.client.delete(self.url(path))).await
    }

    /// Stops the server and removes what it stored in Redis.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
        if let Some(prefix) = &self.redis_prefix {
            let client = redis::Client::open(self.redis_url.as_str()).expect("url");
            if let Ok(mut con) = client.get_multiplexed_async_connection().await {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{prefix}*"))
                    .query_async(&mut con)
                    .await
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<(), _> =
                        redis::cmd("UNLINK").arg(keys).query_async(&mut con).await;
                }
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A Redis of the test's own, on a free port, with an append-only file: killed,
/// paused and started again under a running server.
pub struct PrivateRedis {
    pub port: u16,
    /// `always` or `everysec`.
    appendfsync: &'static str,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl PrivateRedis {
    pub async fn start(appendfsync: &'static str) -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut redis = PrivateRedis {
            port,
            appendfsync,
            dir: tempfile::tempdir().expect("dir"),
            child: None,
        };
        redis.spawn().await;
        redis
    }

    /// Starts it (again, on the same port and files).
    pub async fn spawn(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", self.appendfsync])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed for the tests (see README)");
        self.child = Some(child);
        let started = std::time::Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("kill redis");
            child.wait().await.expect("wait");
        }
    }

    /// Sends it a signal (`STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(|c| c.id())
            .expect("a running redis-server");
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// What resending one ingest until it was acknowledged took, as an adapter does it:
/// a 503 or no answer is tried again after 50 ms with the same body (and ids).
#[derive(Debug, Default, Clone, Copy)]
pub struct Resent {
    /// Answers that were 503 `storage_unavailable`.
    pub refused: u64,
    /// Requests that got no answer (a connection cut, a client timeout).
    pub unanswered: u64,
    /// The longest wait for any answer.
    pub slowest: std::time::Duration,
}

impl Resent {
    /// What a Redis pause must look like to adapters: ingests refused (503), every one
    /// answered, and promptly: within Redis's response timeout (2 s) and a margin, not
    /// after a hang nor after several timeouts in a row.
    pub fn assert_refused_promptly(&self) {
        assert!(self.refused > 0, "ingest refused while Redis was paused");
        assert_eq!(self.unanswered, 0, "every request answered");
        assert!(
            self.slowest < std::time::Duration::from_secs(3),
            "answers come promptly (slowest {:?}), not after a hang",
            self.slowest
        );
    }

    /// Adds up what two runs of resending took.
    pub fn add(&mut self, other: Resent) {
        self.refused += other.refused;
        self.unanswered += other.unanswered;
        self.slowest = self.slowest.max(other.slowest);
    }
}

/// Posts the JSON `body` to `url` with `token` until it is answered 202; panics on any
/// other answer than 202 or 503 (a refusal the test did not mean).
pub async fn ingest_until_accepted(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &str,
) -> Resent {
    let mut resent = Resent::default();
    loop {
        let started = std::time::Instant::now();
        let answer = client
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await;
        resent.slowest = resent.slowest.max(started.elapsed());
        match answer.map(|r| r.status().as_u16()) {
            Ok(202) => return resent,
            Ok(503) => resent.refused += 1,
            Ok(other) => panic!("ingest answered {other}"),
            Err(_) => resent.unanswered += 1,
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
