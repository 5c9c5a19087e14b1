//! The live WebSocket end to end: refusals at the upgrade, snapshots then deltas, and
//! resuming with `since` without a gap or a duplicate.

use botwatch_tests::{ADMIN_TOKEN, Backend, TestServer};

use super::until;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

pub(super) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(super) async fn connect(
    s: &TestServer,
    token: Option<&str>,
    origin: Option<&str>,
) -> Result<Socket, WsError> {
    connect_at(s, "/api/v1/live", token, origin).await
}

/// A WebSocket to `path` of the server, with a bearer token and an Origin if given.
pub(super) async fn connect_at(
    s: &TestServer,
    path: &str,
    token: Option<&str>,
    origin: Option<&str>,
) -> Result<Socket, WsError> {
    let mut request = format!("ws://{}{path}", s.addr)
        .into_client_request()
        .expect("request");
    if let Some(token) = token {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
    }
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(origin).expect("header"));
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

pub(super) async fn send(ws: &mut Socket, frame: Value) {
    ws.send(Message::text(frame.to_string()))
        .await
        .expect("send");
}

/// The next JSON frame (pings are answered by the library).
pub(super) async fn next(ws: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("open")
            .expect("a frame");
        if let Message::Text(t) = frame {
            return serde_json::from_str(t.as_str()).expect("json");
        }
    }
}

fn message(id: &str, user: &str, minute: u32) -> Value {
    json!({"id": id, "bot": "helpdesk", "type": "message", "direction": "in",
           "provider": "telegram", "user": {"id": user, "name": "Олена"},
           "text": format!("text {id}"), "ts": format!("2026-11-26T10:{minute:02}:00Z")})
}

fn status_of(e: WsError) -> u16 {
    match e {
        WsError::Http(response) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

async fn refusals_at_the_upgrade(backend: Backend) {
    let s = TestServer::start(backend).await;
    let none = connect(&s, None, None).await.expect_err("no credentials");
    assert_eq!(status_of(none), 401);
    let wrong = connect(&s, Some("not-the-token"), None)
        .await
        .expect_err("bad token");
    assert_eq!(status_of(wrong), 401);
    let foreign = connect(&s, Some(ADMIN_TOKEN), Some("https://evil.example"))
        .await
        .expect_err("foreign origin");
    assert_eq!(status_of(foreign), 403);
    // A request that is no upgrade gets the API's JSON error, like every refusal.
    let (status, body) = s.get("/api/v1/live").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("not_a_websocket_upgrade")),
        "{body}"
    );
    // An origin on the allow-list may connect; others still may not.
    let listed = TestServer::start_with(backend, None, |c| {
        c.allowed_origins = vec!["https://dash.example.com".to_owned()];
    })
    .await;
    connect(&listed, Some(ADMIN_TOKEN), Some("https://dash.example.com"))
        .await
        .expect("an allowed origin");
    let other = connect(&listed, Some(ADMIN_TOKEN), Some("https://evil.example"))
        .await
        .expect_err("not on the list");
    assert_eq!(status_of(other), 403);
    listed.stop().await;
    let same = format!("http://{}", s.addr);
    let mut ws = connect(&s, Some(ADMIN_TOKEN), Some(&same))
        .await
        .expect("same origin");
    // Client frames are at most 64 KiB: a bigger one ends the connection.
    let mut big = connect(&s, Some(ADMIN_TOKEN), None).await.expect("connect");
    let huge = json!({"op": "subscribe", "topic": "x".repeat(70 * 1024)});
    let _ = big.send(Message::text(huge.to_string())).await;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match big.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "a frame over 64 KiB closes the connection");
    // Topics are checked on subscribe.
    send(&mut ws, json!({"op": "subscribe", "topic": "nonsense"})).await;
    let answer = next(&mut ws).await;
    assert_eq!(
        (answer["kind"].as_str(), answer["data"]["error"].as_str()),
        (Some("error"), Some("unknown_topic"))
    );
    s.stop().await;
}

fn ids_of(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            f["data"]["message"]["id"]
                .as_str()
                .expect("a message id")
                .to_owned()
        })
        .collect()
}

async fn a_dialog_streams_and_resumes_without_gaps(backend: Backend) {
    let s = TestServer::start(backend).await;
    let batch = json!([message("m1", "u1", 1), message("m2", "u1", 2)]);
    assert_eq!(s.ingest(batch.to_string()).await.0, 202);
    // Wait until the figures have them, so the snapshot does.
    until(&s, "/api/v1/bots/helpdesk/dialogs/u1", |d| {
        d["messages"] == 2
    })
    .await;
    let topic = "bot/helpdesk/dialog/u1";
    let mut ws = connect(&s, Some(ADMIN_TOKEN), None).await.expect("connect");
    send(&mut ws, json!({"op": "subscribe", "topic": topic})).await;
    let snapshot = next(&mut ws).await;
    assert_eq!(snapshot["kind"], "snapshot");
    assert_eq!(snapshot["data"]["dialog"]["messages"], 2);
    assert_eq!(
        snapshot["data"]["messages"].as_array().map(Vec::len),
        Some(2)
    );
    let start = snapshot["seq"].as_u64().expect("seq");

    // Live: three messages, three deltas, one by one.
    for (i, minute) in [(3, 3), (4, 4), (5, 5)] {
        let id = format!("m{i}");
        assert_eq!(
            s.ingest(json!([message(&id, "u1", minute)]).to_string())
                .await
                .0,
            202
        );
    }
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(next(&mut ws).await);
    }
    assert_eq!(ids_of(&live), ["m3", "m4", "m5"]);
    let seqs: Vec<u64> = live
        .iter()
        .map(|f| f["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, [start + 1, start + 2, start + 3]);
    assert_eq!(live[2]["data"]["dialog"]["messages"], 5);
    drop(ws);

    // Away for two messages; back with `since`: exactly those two, then live again.
    let batch = json!([message("m6", "u1", 6), message("m7", "u1", 7)]);
    assert_eq!(s.ingest(batch.to_string()).await.0, 202);
    until(&s, "/api/v1/bots/helpdesk/dialogs/u1", |d| {
        d["messages"] == 7
    })
    .await;
    let mut ws = connect(&s, Some(ADMIN_TOKEN), None)
        .await
        .expect("reconnect");
    send(
        &mut ws,
        json!({"op": "subscribe", "topic": topic, "since": start + 3}),
    )
    .await;
    let missed = vec![next(&mut ws).await, next(&mut ws).await];
    assert_eq!(ids_of(&missed), ["m6", "m7"]);
    assert!(missed.iter().all(|f| f["kind"] == "delta"));
    assert_eq!(missed[1]["seq"].as_u64(), Some(start + 5));
    assert_eq!(
        s.ingest(json!([message("m8", "u1", 8)]).to_string())
            .await
            .0,
        202
    );
    let after = next(&mut ws).await;
    assert_eq!(
        (ids_of(std::slice::from_ref(&after)), after["seq"].as_u64()),
        (vec!["m8".to_owned()], Some(start + 6))
    );

    // A `since` this node never reached gets a snapshot, not silence.
    send(
        &mut ws,
        json!({"op": "subscribe", "topic": topic, "since": start + 1000}),
    )
    .await;
    let fresh = next(&mut ws).await;
    assert_eq!(
        (fresh["kind"].as_str(), fresh["seq"].as_u64()),
        (Some("snapshot"), Some(start + 6))
    );
    assert_eq!(fresh["data"]["dialog"]["messages"], 8);
    s.stop().await;
}

async fn the_dialogs_list_moves_a_dialog_to_the_top(backend: Backend) {
    let s = TestServer::start(backend).await;
    assert_eq!(
        s.ingest(json!([message("a1", "u1", 1), message("a2", "u2", 2)]).to_string())
            .await
            .0,
        202
    );
    until(&s, "/api/v1/bots/helpdesk/dialogs", |d| {
        d["items"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    let mut ws = connect(&s, Some(ADMIN_TOKEN), None).await.expect("connect");
    send(
        &mut ws,
        json!({"op": "subscribe", "topic": "bot/helpdesk/dialogs"}),
    )
    .await;
    let snapshot = next(&mut ws).await;
    let first: Vec<&str> = snapshot["data"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["user"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(first, ["u2", "u1"]);
    assert_eq!(snapshot["data"]["items"][0]["preview"]["text"], "text a2");
    assert_eq!(
        s.ingest(json!([message("a3", "u1", 3)]).to_string())
            .await
            .0,
        202
    );
    let delta = next(&mut ws).await;
    assert_eq!(delta["kind"], "delta");
    assert_eq!(delta["data"]["dialog"]["user"]["id"], "u1");
    assert_eq!(delta["data"]["dialog"]["preview"]["text"], "text a3");
    assert_eq!(delta["data"]["dialog"]["messages"], 2);
    s.stop().await;
}

/// When the test's messages happen: a minute and a half ago (the overview and
/// statistics topics show the last 30 days of the bot's zone, whatever day it is).
fn when() -> chrono::DateTime<chrono::Utc> {
    static WHEN: std::sync::OnceLock<chrono::DateTime<chrono::Utc>> = std::sync::OnceLock::new();
    *WHEN.get_or_init(|| chrono::Utc::now() - chrono::Duration::seconds(90))
}

fn recent(id: &str, user: &str, inbound: bool) -> Value {
    json!({"id": id, "bot": "helpdesk", "type": "message",
           "direction": if inbound { "in" } else { "out" },
           "provider": "telegram", "user": {"id": user, "name": "Олена"},
           "text": "Where is my order?",
           "ts": when().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)})
}

/// The day bucket of the test's messages (the bot's zone is UTC).
fn today(buckets: &Value) -> &Value {
    let day = format!("{}T00:00:00.000Z", when().date_naive());
    buckets
        .as_array()
        .and_then(|b| b.iter().find(|b| b["start"] == day.as_str()))
        .expect("a bucket for the messages' day")
}

async fn the_overview_and_statistics_move_with_each_batch(backend: Backend) {
    let s = TestServer::start(backend).await;
    assert_eq!(
        s.ingest(json!([recent("o1", "u1", true)]).to_string())
            .await
            .0,
        202
    );
    until(&s, "/api/v1/bots/helpdesk/dialogs/u1", |d| {
        d["messages"] == 1
    })
    .await;
    let mut ws = connect(&s, Some(ADMIN_TOKEN), None).await.expect("connect");
    send(
        &mut ws,
        json!({"op": "subscribe", "topic": "bot/helpdesk/overview"}),
    )
    .await;
    let overview = next(&mut ws).await;
    assert_eq!(overview["kind"], "snapshot");
    assert_eq!(overview["data"]["users"][0]["id"], "u1");
    assert_eq!(overview["data"]["days"].as_array().map(Vec::len), Some(30));
    assert_eq!(today(&overview["data"]["days"])["messages_in"], 1);
    assert_eq!(
        overview["data"]["top"][0],
        json!({"text": "where is my order?", "count": 1})
    );
    send(
        &mut ws,
        json!({"op": "subscribe", "topic": "bot/helpdesk/stats"}),
    )
    .await;
    let stats = next(&mut ws).await;
    assert_eq!(
        (stats["kind"].as_str(), stats["data"]["tz"].as_str()),
        (Some("snapshot"), Some("UTC"))
    );
    assert_eq!(stats["data"]["hour"].as_array().map(Vec::len), Some(24));
    assert_eq!(today(&stats["data"]["day"])["users_new"], 1);

    // One batch: a new user writes, the bot answers the first one.
    let batch = json!([recent("o2", "u2", true), recent("o3", "u1", false)]);
    assert_eq!(s.ingest(batch.to_string()).await.0, 202);
    let mut frames = [next(&mut ws).await, next(&mut ws).await];
    frames.sort_by_key(|f| f["topic"].as_str().map(str::to_owned));
    let (overview, stats) = (&frames[0], &frames[1]);
    assert_eq!(
        (overview["topic"].as_str(), overview["kind"].as_str()),
        (Some("bot/helpdesk/overview"), Some("delta"))
    );
    let day = today(&overview["data"]["days"]);
    assert_eq!(
        (
            day["messages_in"].as_u64(),
            day["messages_out"].as_u64(),
            day["users_new"].as_u64()
        ),
        (Some(2), Some(1), Some(2))
    );
    let users: Vec<&str> = overview["data"]["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["id"].as_str().expect("id"))
        .collect();
    assert_eq!(users.len(), 2, "{users:?}");
    assert_eq!(stats["topic"], "bot/helpdesk/stats");
    let day = today(&stats["data"]["day"]);
    assert_eq!(
        (day["messages_in"].as_u64(), day["users_active"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(!stats["data"]["hour"].as_array().expect("hours").is_empty());
    s.stop().await;
}

/// Two nodes on one Redis: a dashboard on one sees what is ingested on the other.
async fn a_dashboard_on_one_node_sees_events_ingested_on_another() {
    let a = TestServer::start(Backend::Redis).await;
    let b = a.second_node().await;
    let mut ws = connect(&b, Some(ADMIN_TOKEN), None)
        .await
        .expect("connect to b");
    send(
        &mut ws,
        json!({"op": "subscribe", "topic": "bot/helpdesk/dialog/u9"}),
    )
    .await;
    let snapshot = next(&mut ws).await;
    assert_eq!(snapshot["kind"], "snapshot");
    assert_eq!(
        a.ingest(json!([message("x1", "u9", 1)]).to_string())
            .await
            .0,
        202
    );
    let delta = next(&mut ws).await;
    assert_eq!(ids_of(std::slice::from_ref(&delta)), ["x1"]);
    b.stop().await;
    a.stop().await;
}

/// Reads a dialog topic's frames from sequence `from` until sequence `n`: deltas one by
/// one, a snapshot wherever the client fell behind; or until the server closes it for
/// being too slow (1013). Returns (snapshots seen, closed). Asserts that there is never
/// a gap.
async fn follow_to(ws: &mut Socket, from: u64, n: u64) -> (u64, bool) {
    let (mut last, mut snapshots) = (from, 0u64);
    while last < n {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next())
            .await
            .expect("a frame within 30 s");
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(close))) => {
                let code = close.map(|c| u16::from(c.code));
                assert_eq!(code, Some(1013), "closed as too slow, told to resume");
                return (snapshots, true);
            }
            Some(Ok(_)) => continue,
            other => panic!("unexpected end: {other:?}"),
        };
        let f: Value = serde_json::from_str(text.as_str()).expect("json");
        let got = f["seq"].as_u64().expect("seq");
        if f["kind"] == "snapshot" {
            snapshots += 1;
        } else {
            assert_eq!(got, last + 1, "no gap without a snapshot");
        }
        last = got;
    }
    (snapshots, false)
}

/// One client reads nothing while another follows: the other reaches the end (the
/// stuck one never holds it up); the stuck one, when it reads again, finds a snapshot
/// where it fell behind, or was closed with 1013 — never a gap.
async fn a_stuck_client_never_holds_up_the_others(backend: Backend) {
    let s = TestServer::start(backend).await;
    let topic = "bot/helpdesk/dialog/u1";
    let mut fast = connect(&s, Some(ADMIN_TOKEN), None).await.expect("connect");
    let mut stuck = connect(&s, Some(ADMIN_TOKEN), None).await.expect("connect");
    let mut start = 0;
    for ws in [&mut fast, &mut stuck] {
        send(ws, json!({"op": "subscribe", "topic": topic})).await;
        let snapshot = next(ws).await;
        assert_eq!(snapshot["kind"], "snapshot");
        start = snapshot["seq"].as_u64().expect("seq");
    }
    // Far more than the topic's ring (1,024 frames) and the sockets' buffers hold.
    const N: u64 = 12_000;
    let long = "x".repeat(600);
    let ingest = async {
        for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
            let batch: Vec<Value> = chunk
                .iter()
                .map(|n| {
                    let mut m = message(&format!("s{n}"), "u1", 1);
                    m["text"] = json!(format!("{n} {long}"));
                    m
                })
                .collect();
            assert_eq!(s.ingest(Value::Array(batch).to_string()).await.0, 202);
        }
    };
    let ((), (_, fast_closed)) = tokio::join!(ingest, follow_to(&mut fast, start, start + N));
    assert!(!fast_closed, "the reading client is never closed");
    let (snapshots, closed) = follow_to(&mut stuck, start, start + N).await;
    assert!(
        snapshots > 0 || closed,
        "the stuck client fell behind the ring, so it must have been resynced or closed"
    );
    let metrics = reqwest::get(s.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let counted = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        counted("botwatch_live_resyncs_total ") >= snapshots
            && counted("botwatch_live_closed_slow_total ") >= u64::from(closed),
        "{metrics}"
    );
    s.stop().await;
}

/// `botwatch_live_connections` counts the connections open now: one up when a client
/// connects, one down when it goes (the count lives with the connection's state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connections_gauge_follows_clients_in_and_out() {
    let s = TestServer::start(Backend::Embedded).await;
    let open = |metrics: String| {
        metrics.lines().find_map(|l| {
            l.strip_prefix("botwatch_live_connections ")?
                .trim()
                .parse::<i64>()
                .ok()
        })
    };
    let mut first = connect(&s, Some(ADMIN_TOKEN), None).await.expect("connect");
    let mut second = connect(&s, Some(ADMIN_TOKEN), None).await.expect("connect");
    for ws in [&mut first, &mut second] {
        send(
            ws,
            json!({"op": "subscribe", "topic": "bot/helpdesk/dialog/u1"}),
        )
        .await;
        assert_eq!(next(ws).await["kind"], "snapshot");
    }
    assert_eq!(open(s.metrics().await), Some(2));
    first.close(None).await.expect("close");
    super::until_true_async("one connection left", || async {
        open(s.metrics().await) == Some(1)
    })
    .await;
    drop(second);
    super::until_true_async("no connection left", || async {
        open(s.metrics().await) == Some(0)
    })
    .await;
    s.stop().await;
}

mod embedded {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_client_never_holds_up_the_others() {
        super::a_stuck_client_never_holds_up_the_others(botwatch_tests::Backend::Embedded).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_overview_and_statistics_move_with_each_batch() {
        super::the_overview_and_statistics_move_with_each_batch(botwatch_tests::Backend::Embedded)
            .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refusals_at_the_upgrade() {
        super::refusals_at_the_upgrade(botwatch_tests::Backend::Embedded).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dialog_streams_and_resumes_without_gaps() {
        super::a_dialog_streams_and_resumes_without_gaps(botwatch_tests::Backend::Embedded).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dialogs_list_moves_a_dialog_to_the_top() {
        super::the_dialogs_list_moves_a_dialog_to_the_top(botwatch_tests::Backend::Embedded).await
    }
}

mod redis {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_overview_and_statistics_move_with_each_batch() {
        super::the_overview_and_statistics_move_with_each_batch(botwatch_tests::Backend::Redis)
            .await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dashboard_on_one_node_sees_events_ingested_on_another() {
        super::a_dashboard_on_one_node_sees_events_ingested_on_another().await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dialog_streams_and_resumes_without_gaps() {
        super::a_dialog_streams_and_resumes_without_gaps(botwatch_tests::Backend::Redis).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dialogs_list_moves_a_dialog_to_the_top() {
        super::the_dialogs_list_moves_a_dialog_to_the_top(botwatch_tests::Backend::Redis).await
    }
}
