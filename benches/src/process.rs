//! A server the benchmarks run as a process of its own (so its CPU time and memory are
//! its own), and reading those from `/proc`. Shared by `live-bench` and `ingest-bench`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A child process, killed when dropped, with the temporary directory it works in.
pub struct ServerProcess {
    pub child: Child,
    pub _dir: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process, in clock ticks (100 per second here), and its RSS in
/// bytes.
pub fn cpu_and_rss(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let rss_pages = fields[21].parse::<u64>()?;
    Ok((ticks, rss_pages * 4096))
}

/// Starts `binary serve` on 127.0.0.1:`port` with a data directory of its own, the
/// admin `token` and `env`, and waits until `/readyz` answers 200 (30 s at most).
pub async fn serve(
    binary: &Path,
    port: u16,
    token: &str,
    env: &[(&str, &str)],
) -> Result<ServerProcess> {
    let dir = tempfile::tempdir()?;
    let child = Command::new(binary)
        .arg("serve")
        .arg("--data")
        .arg(dir.path())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("BOTWATCH_ADMIN_TOKEN", token)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {} (cargo build --release)", binary.display()))?;
    let server = ServerProcess { child, _dir: dir };
    let http = reqwest::Client::new();
    for _ in 0..300 {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("botwatch did not become ready on port {port}")
}
