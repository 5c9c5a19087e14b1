//! The chaos suite (issue 10): botwatch under faults, each case ending in an exact
//! comparison — what was acknowledged against what the service shows, or a recount.
//!
//! The short form runs with every `cargo test` (and so in CI); the long form, with
//! more runs and more events, runs on demand: `CHAOS=long cargo test -p botwatch-tests
//! --test chaos -- --nocapture`. Each case prints one row of the results table
//! (BENCHMARKS.md → Chaos): case, runs, events, lost, doubled, recovery time.

/// Whether the long form was asked for.
pub fn long() -> bool {
    std::env::var("CHAOS").is_ok_and(|v| v == "long")
}

/// Prints one row of the results table.
pub fn report(case: &str, runs: usize, events: u64, lost: u64, doubled: u64, recovery: &str) {
    println!("| {case} | {runs} | {events} | {lost} | {doubled} | {recovery} |");
}

/// A dashboard's WebSocket, as the chaos cases open it.
pub type LiveSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to the server's `/api/v1/live` with the admin token.
pub async fn connect(s: &botwatch_tests::TestServer) -> LiveSocket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/api/v1/live", s.addr)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_str(&format!(
            "Bearer {}",
            botwatch_tests::ADMIN_TOKEN
        ))
        .expect("header"),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("connect")
        .0
}

/// A small seeded generator (SplitMix64): the same seed makes the same trace or mix of
/// inputs on every machine, so a failure is repeated by running the case again.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `range`.
    pub fn within(&mut self, range: std::ops::RangeInclusive<u64>) -> u64 {
        range.start() + self.below(range.end() - range.start() + 1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An index in `0..n`, small ones far more often (about Zipf's law), as users,
    /// bots and phrases are used.
    pub fn skewed(&mut self, n: usize) -> usize {
        let u = ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64).max(1e-12);
        ((n as f64 + 1.0).powf(u) - 1.0).floor().min(n as f64 - 1.0) as usize
    }
}

/// `s` as one segment of a URL path (everything but unreserved characters escaped).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the client knows of one topic.
#[derive(Default)]
pub struct Followed {
    /// The last `seq` applied (a snapshot's, or a delta's).
    pub seq: Option<u64>,
    pub snapshots: u64,
    pub deltas: u64,
}

impl Followed {
    /// Applies a frame: a delta must carry exactly the next `seq`.
    pub fn apply(&mut self, topic: &str, frame: &serde_json::Value) {
        let seq = frame["seq"].as_u64().expect("seq");
        match frame["kind"].as_str() {
            Some("snapshot") => {
                self.snapshots += 1;
                self.seq = Some(seq);
            }
            Some("delta") => {
                let last = self.seq.expect("a delta before any snapshot");
                assert_eq!(
                    seq,
                    last + 1,
                    "{topic}: after {last} came {seq} (a gap or a repeat)"
                );
                self.deltas += 1;
                self.seq = Some(seq);
            }
            other => panic!("{topic}: unexpected frame {other:?}: {frame}"),
        }
    }
}

#[path = "chaos/trace.rs"]
mod trace;

#[path = "chaos/hostile.rs"]
mod hostile;

#[path = "chaos/live.rs"]
mod live;

#[path = "chaos/redis_faults.rs"]
mod redis_faults;

#[path = "chaos/hostile_frames.rs"]
mod hostile_frames;
