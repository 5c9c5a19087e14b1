//! A dashboard's live socket: the TCP stream of an upgraded `GET /api/v1/live`, written
//! by the hub's fan-out threads as frames are published.
//!
//! The write side is ours: every frame is a whole WebSocket frame made once by the hub
//! ([`Frame::wire`]) and shared by every socket. A fan-out thread hands it to
//! [`LiveSocket::take`], which writes it to the stream at once when nothing waits before
//! it and the kernel takes it (the common case: no task wakes, no copy), or else queues
//! it for the connection's task, which writes the queue with vectored writes as the
//! socket drains. Frames published faster than a fan-out thread hands them out reach
//! it together, and go to each socket in one vectored write. A socket more than [`MAX_WAITING`] frames behind is marked behind:
//! the fan-out stops queueing for it and the connection resyncs every subscription
//! with a snapshot once the queue is written, or closes with 1013 when the socket takes
//! nothing for a while. tungstenite reads the client's frames (masking, fragments,
//! limits, the close handshake) and writes the control frames through
//! [`LiveSocket::io`], into the same queue, in order.
//!
//! A subscription that is starting (its snapshot or missed deltas not yet queued) keeps
//! the frames handed to it aside; [`LiveSocket::go_live`] queues its lead frames, then
//! those set aside, in one step: no delta ever goes out before the snapshot it follows.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::Response;
use botwatch_live::{Frame, Member};
use bytes::{Buf, Bytes};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::warn;

use crate::error::ApiError;

/// Frames a socket may have waiting (or set aside while a subscription starts) before
/// it is behind and resynced: the hub's ring size, as for the web chat's readers.
pub(crate) const MAX_WAITING: usize = 1024;
/// Buffers one vectored write hands the kernel.
const WRITE_SLICES: usize = 64;

/// Where a subscription of the socket stands.
enum Subscription {
    /// Its snapshot (or missed deltas) is not queued yet: frames wait here.
    Starting(Vec<Arc<Frame>>),
    /// Frames go out as they come; `sent` is the last sequence number queued.
    Live { sent: u64 },
}

#[derive(Default)]
struct Out {
    /// Bytes the socket has not taken yet, in order (the first may be partly written).
    waiting: VecDeque<Bytes>,
    subscriptions: HashMap<u64, Subscription>,
    /// Too far behind: nothing more is queued until the connection resyncs.
    behind: bool,
    /// The stream failed a write: the connection ends.
    broken: bool,
}

pub(crate) struct LiveSocket {
    id: u64,
    stream: TcpStream,
    out: Mutex<Out>,
    /// Wakes the connection's task: bytes wait, the socket fell behind, or it broke.
    pub(super) wake: Notify,
}

impl LiveSocket {
    pub(super) fn new(stream: TcpStream) -> Arc<LiveSocket> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Arc::new(LiveSocket {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            stream,
            out: Mutex::new(Out::default()),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Out> {
        // Nothing is left half-done under this lock by a panic that matters here.
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `bytes` now when nothing waits before them, as far as the kernel takes
    /// them; queues the rest for the connection's task.
    fn push(&self, out: &mut Out, bytes: impl IntoIterator<Item = Bytes>) {
        if out.broken {
            return;
        }
        let was_empty = out.waiting.is_empty();
        out.waiting
            .extend(bytes.into_iter().filter(|b| !b.is_empty()));
        if !was_empty {
            return; // the connection's task is writing the queue
        }
        match self.write_waiting(out) {
            Ok(true) => {}
            Ok(false) => self.wake.notify_one(),
            Err(_) => {
                out.broken = true;
                self.wake.notify_one();
            }
        }
    }

    /// Writes what waits until the kernel takes no more (vectored, up to
    /// [`WRITE_SLICES`] buffers a call): whether all of it went.
    fn write_waiting(&self, out: &mut Out) -> io::Result<bool> {
        while !out.waiting.is_empty() {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let mut n = 0;
            for (slice, bytes) in slices.iter_mut().zip(&out.waiting) {
                *slice = IoSlice::new(bytes);
                n += 1;
            }
            match self.stream.try_write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut written) => {
                    while written > 0
                        && let Some(first) = out.waiting.front_mut()
                    {
                        if written >= first.len() {
                            written -= first.len();
                            out.waiting.pop_front();
                        } else {
                            first.advance(written);
                            written = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        // A burst's queue does not stay: an idle socket holds little room.
        if out.waiting.capacity() > 16 {
            out.waiting = VecDeque::new();
        }
        Ok(true)
    }

    /// Sends bytes of the connection's own (a snapshot, an error, a control frame).
    pub(super) fn send(&self, bytes: Bytes) {
        let mut out = self.lock();
        self.push(&mut out, [bytes]);
    }

    /// A subscription begins: frames handed to it wait until [`go_live`](Self::go_live).
    pub(super) fn starting(&self, subscription: u64) {
        self.lock()
            .subscriptions
            .insert(subscription, Subscription::Starting(Vec::new()));
    }

    /// Queues a starting subscription's `lead` (its snapshot, or the deltas it missed),
    /// standing at `seq`, then the frames after `seq` set aside meanwhile; from here on
    /// its frames go out as they come.
    pub(super) fn go_live(&self, subscription: u64, seq: u64, lead: Vec<Bytes>) {
        let mut out = self.lock();
        let Some(Subscription::Starting(aside)) = out.subscriptions.remove(&subscription) else {
            return; // ended meanwhile
        };
        let sent = aside.last().map_or(seq, |f| f.seq.max(seq));
        let after = aside
            .iter()
            .filter(|f| f.seq > seq)
            .map(|f| f.wire().clone());
        self.push(&mut out, lead.into_iter().chain(after));
        out.subscriptions
            .insert(subscription, Subscription::Live { sent });
    }

    /// A subscription ends: nothing more of it is queued.
    pub(super) fn end(&self, subscription: u64) {
        self.lock().subscriptions.remove(&subscription);
    }

    /// Whether the socket fell behind; it is not any more once asked (the connection
    /// ends every subscription and starts them again).
    pub(super) fn take_behind(&self) -> bool {
        std::mem::take(&mut self.lock().behind)
    }

    /// Writes everything waiting, waiting for the socket to take it.
    pub(super) async fn drain(&self) -> io::Result<()> {
        loop {
            {
                let mut out = self.lock();
                if out.broken {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                match self.write_waiting(&mut out) {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(e) => {
                        out.broken = true;
                        return Err(e);
                    }
                }
            }
            self.stream.writable().await?;
        }
    }

    /// Waits until the client's side has bytes (or closed).
    pub(super) async fn readable(&self) -> io::Result<()> {
        self.stream.readable().await
    }

    /// The stream as tungstenite reads it: reads never wait (they end in `WouldBlock`),
    /// writes (pongs, close frames) join the queue.
    pub(super) fn io(&self) -> SocketIo<'_> {
        SocketIo(self)
    }
}

impl Member for LiveSocket {
    fn id(&self) -> u64 {
        self.id
    }

    fn take(&self, subscription: u64, frames: &[Arc<Frame>]) {
        let mut out = self.lock();
        if out.behind || out.broken {
            return;
        }
        let waiting = out.waiting.len();
        let sent_before = match out.subscriptions.get_mut(&subscription) {
            None => return,
            Some(Subscription::Starting(aside)) if aside.len() + frames.len() <= MAX_WAITING => {
                aside.extend(frames.iter().cloned());
                return;
            }
            Some(Subscription::Live { sent }) if waiting + frames.len() <= MAX_WAITING => {
                let before = *sent;
                *sent = frames.last().map_or(before, |f| f.seq.max(before));
                before
            }
            Some(_) => {
                out.behind = true;
                self.wake.notify_one();
                return;
            }
        };
        let new = frames
            .iter()
            .filter(|f| f.seq > sent_before)
            .map(|f| f.wire().clone());
        self.push(&mut out, new);
    }
}

/// [`LiveSocket`] as a blocking-style stream for tungstenite.
pub(super) struct SocketIo<'a>(&'a LiveSocket);

impl io::Read for SocketIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.stream.try_read(buf)
    }
}

impl io::Write for SocketIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(Bytes::copy_from_slice(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A WebSocket upgrade whose TCP stream the server writes itself; a request that is no
/// upgrade gets the API's JSON error `not_a_websocket_upgrade` (405 for another method,
/// 426 when the connection cannot be upgraded, 400 otherwise).
pub struct RawUpgrade {
    on_upgrade: hyper::upgrade::OnUpgrade,
    accept: HeaderValue,
}

fn refused(status: StatusCode, why: &str) -> ApiError {
    ApiError::new(status, "not_a_websocket_upgrade", why.to_owned())
}

/// Whether header `name` holds `word` anywhere, in any case — as axum's own upgrade
/// checks `Connection`, and as the OpenAPI document says (`openapi::rules`).
fn header_holds(headers: &HeaderMap, name: header::HeaderName, word: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains(word))
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RawUpgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if parts.method != Method::GET {
            return Err(refused(
                StatusCode::METHOD_NOT_ALLOWED,
                "a WebSocket upgrade is a GET",
            ));
        }
        if !header_holds(&parts.headers, header::CONNECTION, "upgrade") {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "Connection header did not include 'upgrade'",
            ));
        }
        if !parts
            .headers
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "`Upgrade` header did not include 'websocket'",
            ));
        }
        if parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Version` header did not include '13'",
            ));
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY) else {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "`Sec-WebSocket-Key` header missing",
            ));
        };
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .map_err(|_| refused(StatusCode::BAD_REQUEST, "unusable `Sec-WebSocket-Key`"))?;
        let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return Err(refused(
                StatusCode::UPGRADE_REQUIRED,
                "WebSocket request couldn't be upgraded since no upgrade state was present",
            ));
        };
        Ok(RawUpgrade { on_upgrade, accept })
    }
}

impl RawUpgrade {
    /// Answers `101 Switching Protocols`, and once the client has it, runs `connection`
    /// with the TCP stream and whatever the client sent after its request.
    pub fn on_upgrade<F, Fut>(self, connection: F) -> Response
    where
        F: FnOnce(TcpStream, Bytes) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let RawUpgrade { on_upgrade, accept } = self;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => {
                    tracing::debug!(error = %e, "the WebSocket upgrade did not complete");
                    return;
                }
            };
            // The server's connections are TCP streams (see `Server::serve`): the
            // stream is taken back out of hyper's wrapping.
            match hyper_util::server::conn::auto::upgrade::downcast::<
                hyper_util::rt::TokioIo<TcpStream>,
            >(upgraded)
            {
                Ok(parts) => connection(parts.io.into_inner(), parts.read_buf).await,
                Err(_) => warn!("a live connection not over TCP: closed"),
            }
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    /// A socket over loopback, and the client's end of it.
    async fn pair() -> (Arc<LiveSocket>, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (server, _) = accepted.expect("accept");
        (LiveSocket::new(server), client.expect("connect"))
    }

    fn frames(topic: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<Arc<Frame>> {
        seqs.map(|seq| Arc::new(Frame::new(topic, seq, "delta", &seq)))
            .collect()
    }

    /// The sequence numbers in the frames the client reads, until `n` arrived.
    async fn read_seqs(client: &mut TcpStream, n: usize) -> Vec<(String, u64)> {
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        while seen.len() < n {
            let mut chunk = [0; 4096];
            let got = tokio::time::timeout(Duration::from_secs(10), client.read(&mut chunk))
                .await
                .expect("frames in time")
                .expect("read");
            assert!(got > 0, "closed after {seen:?}");
            buf.extend_from_slice(&chunk[..got]);
            // Frames here are short: a two-byte header, then the JSON.
            while buf.len() >= 2 && buf.len() >= 2 + usize::from(buf[1]) {
                let len = usize::from(buf[1]);
                assert_eq!(buf[0], 0x81, "a final text frame");
                let json: serde_json::Value =
                    serde_json::from_slice(&buf[2..2 + len]).expect("JSON");
                seen.push((
                    json["kind"].as_str().unwrap_or_default().to_owned(),
                    json["seq"].as_u64().unwrap_or_default(),
                ));
                buf.drain(..2 + len);
            }
        }
        seen
    }

    /// Deltas handed over while a subscription starts wait for its snapshot; those the
    /// snapshot already holds are dropped, the rest follow it in order, and after it
    /// deltas go out as they come.
    #[tokio::test]
    async fn a_starting_subscription_sends_its_snapshot_first_then_what_came_meanwhile() {
        let (socket, mut client) = pair().await;
        let all = frames("t", 1..=6);
        socket.starting(1);
        socket.take(1, &all[..2]); // seq 1, 2: in the snapshot taken at 2
        socket.take(1, &all[2..4]); // seq 3, 4: after it
        let snapshot = Frame::new("t", 2, "snapshot", &"whole");
        socket.go_live(1, 2, vec![snapshot.wire().clone()]);
        socket.take(1, &all[3..6]); // 4 again (already sent), 5, 6
        socket.end(1);
        socket.take(1, &frames("t", 7..=7)); // ended: nothing
        socket.send(Frame::new("t", 0, "error", &"last").wire().clone());
        let seen = read_seqs(&mut client, 6).await;
        let kinds_and_seqs: Vec<(&str, u64)> = seen.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        assert_eq!(
            kinds_and_seqs,
            [
                ("snapshot", 2),
                ("delta", 3),
                ("delta", 4),
                ("delta", 5),
                ("delta", 6),
                ("error", 0)
            ]
        );
    }

    /// A client that reads nothing: its socket's queue fills, it is marked behind once
    /// and takes nothing more; the connection is told, and what it queued still goes
    /// out in order when the client reads again.
    #[tokio::test]
    async fn a_socket_that_takes_nothing_falls_behind_without_blocking_the_fan_out() {
        let (socket, mut client) = pair().await;
        socket.starting(1);
        socket.go_live(1, 0, Vec::new());
        // Frames bigger than a loopback socket's buffers hold, many times over.
        let big = "x".repeat(16 * 1024);
        let mut seq = 0;
        let started = std::time::Instant::now();
        while !socket.take_behind() {
            seq += 1;
            assert!(seq < 100_000, "never behind");
            socket.take(1, &[Arc::new(Frame::new("t", seq, "delta", &big))]);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "taking frames never waits for the socket"
        );
        assert_eq!(socket.lock().waiting.len(), MAX_WAITING);
        // While behind (until the connection asks, as above), nothing more is queued.
        socket.lock().behind = true;
        socket.take(1, &[Arc::new(Frame::new("t", seq + 1, "delta", &big))]);
        assert_eq!(socket.lock().waiting.len(), MAX_WAITING);
        // The client reads again: everything queued arrives, whole and in order.
        let reader = tokio::spawn(async move {
            let mut total = 0usize;
            let mut buf = vec![0; 64 * 1024];
            loop {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), socket.drain())
            .await
            .expect("drained in time")
            .expect("drained");
        let frame_len = Frame::new("t", 1, "delta", &big).wire().len();
        drop(socket);
        let total = reader.await.expect("reader");
        // Every frame up to the one that found the queue full (sequence numbers grow
        // by a digit now and then: the total is checked against a range).
        let taken = (seq - 1) as usize;
        assert!(
            total >= taken * frame_len && total <= taken * (frame_len + 8),
            "{total} bytes for {taken} frames of about {frame_len}"
        );
    }
}
