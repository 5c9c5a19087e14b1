//! What the tests of the real binary share.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

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
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut con)
            .await
            .expect("del");
    }
}
