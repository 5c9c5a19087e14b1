//! Malformed, oversized and hostile input, through both doors: `POST /api/v1/events`
//! (every one refused with a 4xx and the API's error body — a stable `error` code, and
//! per event `index`, `field`, `reason` — never a 5xx; nothing of a refused batch
//! stored; the server still healthy and taking valid events) and `XADD` straight into
//! the Redis stream (every invalid entry dead-lettered exactly once with its reason,
//! every valid entry around them counted once, the follower going on). The inputs are a
//! seeded mix of kinds, so a failure names its kind and repeats.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use botwatch_tests::{ADMIN_TOKEN, Backend, TestServer};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::{Rng, long, report, segment};

const BOT: &str = "hostile";

/// The fields a message must have (a path into the event, the name the answer gives).
const REQUIRED: &[(&[&str], &str)] = &[
    (&["bot"], "bot"),
    (&["type"], "type"),
    (&["provider"], "provider"),
    (&["user"], "user"),
    (&["user", "id"], "user.id"),
    (&["direction"], "direction"),
];

/// botwatch's own kinds, with plausible payloads: only botwatch writes them.
fn own_kinds() -> [(&'static str, Value); 5] {
    [
        ("mode_changed", json!({"mode": "manual"})),
        (
            "delivery",
            json!({"delivery": {"message": "m1", "state": "sent"}}),
        ),
        ("handoff", json!({})),
        (
            "audience",
            json!({"audience": {"op": "edit", "subscriber": false}}),
        ),
        (
            "broadcast",
            json!({"broadcast": {"id": "b1", "state": "queued", "total": 1}}),
        ),
    ]
}

/// A valid event of the bot, for `user`.
fn valid(id: &str, user: &str, text: &str) -> Value {
    json!({"id": id, "bot": BOT, "type": "message", "direction": "in", "provider": "web",
           "user": {"id": user, "name": "Тест"}, "text": text, "ts": "2026-11-20T10:00:00Z"})
}

/// What a hostile request must be answered with.
struct Want {
    status: u16,
    code: &'static str,
    /// A fault that must be among the details: (index, field; "" for the event as a
    /// whole).
    fault: Option<(usize, &'static str)>,
}

struct Request {
    kind: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    /// A body over the limit is announced with its length and only begun: the server
    /// answers before reading it (and closes, so a client still writing would see a
    /// broken pipe instead of the answer).
    announced: Option<usize>,
    want: Want,
}

fn bad(status: u16, code: &'static str, fault: Option<(usize, &'static str)>) -> Want {
    Want {
        status,
        code,
        fault,
    }
}

fn invalid(index: usize, field: &'static str) -> Want {
    bad(400, "invalid_events", Some((index, field)))
}

/// `[[[…]]]`, `depth` deep.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// An event with one member changed (`None`: removed), as JSON text.
fn changed(n: u64, path: &[&str], to: Option<Value>) -> String {
    let mut e = valid(&format!("h-{n}"), &format!("hu-{n}"), "x");
    let (last, parents) = path.split_last().expect("a path");
    let mut at = &mut e;
    for p in parents {
        at = &mut at[*p];
    }
    match to {
        Some(v) => at[*last] = v,
        None => {
            at.as_object_mut().expect("object").remove(*last);
        }
    }
    e.to_string()
}

/// One hostile request of a kind picked by `rng`.
fn hostile_request(rng: &mut Rng, n: u64) -> Request {
    let json = "application/json";
    let req = |kind, body: Vec<u8>, want| Request {
        kind,
        content_type: json,
        body,
        announced: None,
        want,
    };
    match rng.below(22) {
        0 => {
            // Bytes that are not UTF-8 inside a string, a key or between members.
            let bytes: &[&[u8]] = &[
                b"\xff",
                b"\xc3\x28",
                b"\x80",
                b"\xed\xa0\x80",
                b"\xc0\xaf",
                b"\xf8\x88\x80\x80\x80",
            ];
            let bad_bytes = *rng.pick(bytes);
            let text = valid(&format!("h-{n}"), &format!("hu-{n}"), "@@").to_string();
            let (before, after) = match rng.below(3) {
                0 => text.split_once("@@").expect("marker"),
                1 => text.split_once("provider").expect("key"),
                _ => text.split_once("hu-").expect("user"),
            };
            let mut body = before.as_bytes().to_vec();
            body.extend_from_slice(bad_bytes);
            body.extend_from_slice(after.as_bytes());
            req("bad UTF-8", body, bad(400, "malformed_json", None))
        }
        1 => {
            // serde_json refuses more than 128 levels; an event over 64 KiB is refused
            // for its size first.
            let depth = *rng.pick(&[129, 1_000, 20_000, 100_000]);
            if rng.chance(0.5) {
                // An array: its one element is the event.
                let want = match depth * 2 - 2 > 64 * 1024 {
                    true => bad(413, "too_large", Some((0, ""))),
                    false => bad(400, "malformed_json", None),
                };
                req("deep nesting", nested(depth).into_bytes(), want)
            } else {
                let body = changed(n, &["extra"], None).replacen(
                    '{',
                    &format!("{{\"extra\":{},", nested(depth)),
                    1,
                );
                let want = match body.len() > 64 * 1024 {
                    true => bad(413, "too_large", Some((0, ""))),
                    false => bad(400, "malformed_json", None),
                };
                req("deep nesting", body.into_bytes(), want)
            }
        }
        2 => {
            // Over the text limit (16 KiB), over the event limit (64 KiB), over the
            // body limit (4 MiB: refused before it is read).
            match rng.below(3) {
                0 => {
                    let len = 16 * 1024 + rng.within(1..=100) as usize;
                    let body = changed(n, &["text"], Some(json!("t".repeat(len))));
                    req(
                        "huge text",
                        body.into_bytes(),
                        bad(413, "too_large", Some((0, "text"))),
                    )
                }
                1 => {
                    let body = changed(
                        n,
                        &["extra"],
                        Some(json!("e".repeat(70_000 + rng.below(50_000) as usize))),
                    );
                    req(
                        "huge event",
                        body.into_bytes(),
                        bad(413, "too_large", Some((0, ""))),
                    )
                }
                _ => {
                    let len = 4 * 1024 * 1024 + rng.within(1..=60 * 1024 * 1024) as usize;
                    let body = changed(n, &["text"], Some(json!("b".repeat(64 * 1024))));
                    Request {
                        announced: Some(len),
                        ..req("huge body", body.into_bytes(), bad(413, "too_large", None))
                    }
                }
            }
        }
        3 => {
            let (path, limit, field): (&[&str], usize, &'static str) = match rng.below(3) {
                0 => (&["id"], 128, "id"),
                1 => (&["user", "id"], 256, "user.id"),
                _ => (&["bot"], 64, "bot"),
            };
            let over = if rng.chance(0.1) { 50_000 } else { 1_000 };
            let len = limit + rng.within(1..=over) as usize;
            let value = if field == "bot" {
                "b".repeat(len)
            } else {
                "й".repeat(len)
            };
            let body = changed(n, path, Some(json!(value)));
            // So long that the event is over 64 KiB: refused for its size first.
            let want = match body.len() > 64 * 1024 {
                true => bad(413, "too_large", Some((0, ""))),
                false => invalid(0, field),
            };
            req("id over its limit", body.into_bytes(), want)
        }
        4 => {
            let (path, field) = *rng.pick(REQUIRED);
            req(
                "missing field",
                changed(n, path, None).into_bytes(),
                invalid(0, field),
            )
        }
        5 => {
            let (path, value, field): (&[&str], Value, &'static str) = match rng.below(9) {
                0 => (&["id"], json!(42), "id"),
                1 => (&["bot"], json!(["shop"]), "bot"),
                2 => (&["user"], json!("u1"), "user"),
                3 => (&["text"], json!({"a": 1}), "text"),
                4 => (&["ts"], json!(1_790_000_000), "ts"),
                5 => (&["attachments"], json!("x"), "attachments"),
                6 => (&["direction"], json!(true), "direction"),
                7 => (&["user", "id"], json!(5532), "user.id"),
                _ => (&["sender"], json!("bot"), "sender"),
            };
            req(
                "wrong type",
                changed(n, path, Some(value)).into_bytes(),
                invalid(0, field),
            )
        }
        6 => {
            let (path, field) = *rng.pick(REQUIRED);
            req(
                "null",
                changed(n, path, Some(Value::Null)).into_bytes(),
                invalid(0, field),
            )
        }
        7 => {
            let kind = *rng.pick(&["reaction", "MESSAGE", "", "message ", "типа"]);
            req(
                "unknown type",
                changed(n, &["type"], Some(json!(kind))).into_bytes(),
                invalid(0, "type"),
            )
        }
        8 => {
            // botwatch's own kinds, with plausible payloads: only botwatch writes them.
            let (kind, extra) = rng.pick(&own_kinds()).clone();
            let mut e: Value =
                serde_json::from_str(&changed(n, &["type"], Some(json!(kind)))).expect("json");
            for (k, v) in extra.as_object().expect("object") {
                e[k] = v.clone();
            }
            req(
                "botwatch's own kind",
                e.to_string().into_bytes(),
                invalid(0, "type"),
            )
        }
        9 => {
            // More events than a batch may hold.
            let count = rng.within(1_001..=3_000);
            let batch: Vec<Value> = (0..count)
                .map(|i| valid(&format!("h-{n}-{i}"), &format!("hu-{n}"), "x"))
                .collect();
            req(
                "huge batch",
                Value::Array(batch).to_string().into_bytes(),
                bad(413, "too_large", Some((1_000, ""))),
            )
        }
        10 => {
            // A full batch with one bad event: refused whole, the bad one named.
            let count = rng.within(2..=1_000) as usize;
            let bad_at = rng.below(count as u64) as usize;
            let batch: Vec<Value> = (0..count)
                .map(|i| {
                    let mut e = valid(&format!("h-{n}-{i}"), &format!("hu-{n}"), "x");
                    if i == bad_at {
                        e["direction"] = json!("sideways");
                    }
                    e
                })
                .collect();
            let want = Want {
                status: 400,
                code: "invalid_events",
                fault: Some((bad_at, "direction")),
            };
            req(
                "one bad event in a batch",
                Value::Array(batch).to_string().into_bytes(),
                want,
            )
        }
        11 => {
            let (content_type, body) = *rng.pick(&[
                (
                    "application/x-www-form-urlencoded",
                    "id=h&bot=hostile&type=message",
                ),
                (
                    "application/xml",
                    "<event><id>h</id><bot>hostile</bot></event>",
                ),
                (
                    "multipart/form-data; boundary=x",
                    "--x\r\nContent-Disposition: form-data; name=\"event\"\r\n\r\n{}\r\n--x--\r\n",
                ),
                ("text/plain", "hello there"),
                ("application/octet-stream", "\u{1}\u{2}\u{3}binary"),
            ]);
            Request {
                content_type,
                ..req(
                    "not JSON (another content type)",
                    body.as_bytes().to_vec(),
                    bad(400, "malformed_json", None),
                )
            }
        }
        12 => {
            let body = *rng.pick(&["", "   \n\t  "]);
            req(
                "empty body",
                body.as_bytes().to_vec(),
                bad(400, "malformed_json", None),
            )
        }
        13 => {
            let (body, want) = match rng.below(6) {
                0 => ("42", bad(400, "malformed_json", None)),
                1 => ("\"an event\"", bad(400, "malformed_json", None)),
                2 => ("null", bad(400, "malformed_json", None)),
                3 => ("[]", bad(400, "invalid_events", Some((0, "")))),
                4 => ("[1, \"x\", null]", invalid(2, "")),
                _ => ("{}", invalid(0, "bot")),
            };
            req("not an event", body.as_bytes().to_vec(), want)
        }
        14 => {
            let ts = match rng.below(3) {
                0 => json!("2026-13-01T00:00:00Z"),
                1 => json!("yesterday"),
                _ => json!((chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339()),
            };
            req(
                "bad time",
                changed(n, &["ts"], Some(ts)).into_bytes(),
                invalid(0, "ts"),
            )
        }
        15 => {
            let text = valid(&format!("h-{n}"), &format!("hu-{n}"), "@@").to_string();
            let escape = *rng.pick(&["\\ud800", "\\udfff", "\\ud800\\u0041"]);
            let body = text.replacen("@@", escape, 1);
            req(
                "lone surrogate escape",
                body.into_bytes(),
                bad(400, "malformed_json", None),
            )
        }
        16 => {
            let e = valid(&format!("h-{n}"), &format!("hu-{n}"), "x").to_string();
            let body = match rng.below(3) {
                0 => format!("{e} trailing"),
                1 => format!("[{e}],"),
                _ => e[..e.len() / 2].to_owned(),
            };
            req(
                "truncated or trailing bytes",
                body.into_bytes(),
                bad(400, "malformed_json", None),
            )
        }
        17 => {
            // Raw control characters inside a string, and NUL bytes.
            let text = valid(&format!("h-{n}"), &format!("hu-{n}"), "@@").to_string();
            let body = match rng.below(3) {
                0 => text.replacen("@@", "a\u{1}b", 1),
                1 => text.replacen("@@", "line\nbreak", 1),
                _ => "\0\0\0\0".to_owned(),
            };
            req(
                "raw control characters",
                body.into_bytes(),
                bad(400, "malformed_json", None),
            )
        }
        18 => {
            let (path, value, field): (&[&str], Value, &'static str) = match rng.below(4) {
                0 => (
                    &["attachments"],
                    json!((0..11).map(|i| json!({"type": "image", "url": format!("https://x.example/{i}.png")})).collect::<Vec<_>>()),
                    "attachments",
                ),
                1 => (
                    &["attachments"],
                    json!([{"type": "file", "url": "javascript:alert(1)"}]),
                    "attachments[0].url",
                ),
                2 => (&["attachments"], json!([{"type": "sticker", "url": "https://x.example/s"}]), "attachments[0].type"),
                _ => (&["sender"], json!({"kind": "operator"}), "sender.id"),
            };
            req(
                "bad attachment or sender",
                changed(n, path, Some(value)).into_bytes(),
                invalid(0, field),
            )
        }
        19 => {
            let slug = *rng.pick(&["Help Desk", "../etc/passwd", "-leading", "UPPER", "ünï"]);
            let (path, field): (&[&str], &'static str) = if rng.chance(0.5) {
                (&["bot"], "bot")
            } else {
                (&["provider"], "provider")
            };
            req(
                "not a slug",
                changed(n, path, Some(json!(slug))).into_bytes(),
                invalid(0, field),
            )
        }
        20 => {
            // Members over their own limits (a name, a URL, a file's type, a card's title).
            let (path, value, field): (&[&str], Value, &'static str) = match rng.below(4) {
                0 => (
                    &["user", "name"],
                    json!("n".repeat(257 + rng.below(5_000) as usize)),
                    "user.name",
                ),
                1 => (
                    &["attachments"],
                    json!([{"type": "file", "url": format!("https://x.example/{}", "u".repeat(2_048))}]),
                    "attachments[0].url",
                ),
                2 => (
                    &["attachments"],
                    json!([{"type": "file", "url": "https://x.example/f", "mime": "m".repeat(200)}]),
                    "attachments[0].mime",
                ),
                _ => (
                    &["attachments"],
                    json!([{"type": "card", "title": "t".repeat(300)}]),
                    "attachments[0].title",
                ),
            };
            req(
                "a member over its limit",
                changed(n, path, Some(value)).into_bytes(),
                invalid(0, field),
            )
        }
        _ => {
            // Numbers serde would take as other types, huge numbers, a huge count of
            // members.
            let body = match rng.below(3) {
                0 => changed(
                    n,
                    &["attachments"],
                    Some(json!([{"type": "file", "url": "https://x.example/f", "size": -1}])),
                ),
                1 => changed(n, &["id"], None).replacen(
                    '{',
                    &format!("{{\"id\":1{},", "0".repeat(400)),
                    1,
                ),
                _ => {
                    let members: String = (0..3_000).map(|i| format!("\"k{i}\":{i},")).collect();
                    changed(n, &["bot"], None).replacen('{', &format!("{{{members}"), 1)
                }
            };
            // A number no 64-bit value holds is refused as JSON serde_json cannot read.
            let want = match body.contains("\"size\":-1") {
                true => invalid(0, "attachments[0].size"),
                false if body.contains("\"k2999\"") => invalid(0, "bot"),
                false => bad(400, "malformed_json", None),
            };
            req("odd numbers or many members", body.into_bytes(), want)
        }
    }
}

/// Sends one request; the status and the JSON answer (Null when it is not JSON).
async fn send(s: &TestServer, r: &Request) -> (u16, Value) {
    match r.announced {
        Some(length) => announce(s, length, &r.body).await,
        None => post(s, r.content_type, r.body.clone()).await,
    }
}

/// Announces a body of `length` bytes, sends `begun` of it and reads the answer.
async fn announce(s: &TestServer, length: usize, begun: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    // The server may answer and close before taking all of it.
    let _ = stream.write_all(begun).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no answer to an announced body: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

async fn post(s: &TestServer, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let response = s
        .client
        .post(s.url("/api/v1/events"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Whether `answer` is what `want` says; why not, when it is not.
fn check(want: &Want, status: u16, answer: &Value) -> Result<(), String> {
    if status >= 500 {
        return Err(format!("a server error: {status}"));
    }
    if status != want.status || answer["error"] != want.code {
        return Err(format!("expected {} {}", want.status, want.code));
    }
    if answer["message"].as_str().is_none_or(str::is_empty) {
        return Err("no message".to_owned());
    }
    let details = answer["details"].as_array().cloned().unwrap_or_default();
    for d in &details {
        if d["index"].as_u64().is_none() || d["reason"].as_str().is_none_or(str::is_empty) {
            return Err(format!("a detail without index or reason: {d}"));
        }
    }
    if let Some((index, field)) = want.fault {
        let named = details.iter().any(|d| {
            d["index"].as_u64() == Some(index as u64) && d["field"].as_str().unwrap_or("") == field
        });
        if !named {
            return Err(format!("no fault at index {index}, field {field:?}"));
        }
    }
    Ok(())
}

/// The bot's messages as the figures count them, per user.
async fn counted(s: &TestServer) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = s
            .get(&format!(
                "/api/v1/bots/{BOT}/users?limit=200&sort=name&order=asc{cursor}"
            ))
            .await;
        if status == 404 {
            return out;
        }
        assert_eq!(status, 200, "{page}");
        for u in page["items"].as_array().expect("items") {
            out.insert(
                u["id"].as_str().expect("id").to_owned(),
                u["messages"].as_u64().expect("messages"),
            );
        }
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return out,
        }
    }
}

/// Every message id in the history of `user`.
async fn history_ids(s: &TestServer, user: &str) -> Vec<String> {
    let base = format!(
        "/api/v1/bots/{BOT}/dialogs/{}/messages?limit=200",
        segment(user)
    );
    let mut ids = Vec::new();
    let mut before = String::new();
    loop {
        let (status, page) = s.get(&format!("{base}{before}")).await;
        assert_eq!(status, 200, "{page}");
        for m in page["items"].as_array().expect("items") {
            ids.push(m["id"].as_str().expect("id").to_owned());
        }
        match page["next"].as_str() {
            Some(next) => before = format!("&before={}", segment(next)),
            None => return ids,
        }
    }
}

/// What the server shows against the messages acknowledged, per user: how many were
/// lost and doubled, and the first few of them named.
async fn lost_and_doubled(
    s: &TestServer,
    acknowledged: &BTreeMap<String, BTreeSet<String>>,
) -> (u64, u64, Vec<String>) {
    let counts = counted(s).await;
    let (mut lost, mut doubled, mut named) = (0, 0, Vec::new());
    for (user, ids) in acknowledged {
        let shown = history_ids(s, user).await;
        let distinct: BTreeSet<String> = shown.iter().cloned().collect();
        for id in ids.difference(&distinct) {
            named.push(format!("{user}: {id} lost"));
        }
        lost += ids.difference(&distinct).count() as u64;
        doubled += (shown.len() - distinct.len()) as u64 + distinct.difference(ids).count() as u64;
        let n = counts.get(user).copied().unwrap_or(0);
        if n != ids.len() as u64 {
            named.push(format!("{user}: {n} counted, {} acknowledged", ids.len()));
        }
        lost += (ids.len() as u64).saturating_sub(n);
        doubled += n.saturating_sub(ids.len() as u64);
    }
    // Users nobody acknowledged a message of (a refused batch's) must not exist.
    for (user, n) in &counts {
        if !acknowledged.contains_key(user) {
            named.push(format!("{user}: {n} counted, none acknowledged"));
            doubled += n;
        }
    }
    named.truncate(10);
    (lost, doubled, named)
}

/// Waits until the figures count `n` messages of the bot in all (30 s at most; what
/// they count then is checked after), then a moment more for any that would come on
/// top; how long it took to reach `n`.
async fn until_counted(s: &TestServer, n: u64) -> Duration {
    let started = Instant::now();
    loop {
        let total: u64 = counted(s).await.values().sum();
        if total >= n || started.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    took
}

async fn hostile_requests_get_a_4xx_with_the_reason(backend: Backend) {
    let s = TestServer::start(backend).await;
    let total: u64 = if long() { 6_000 } else { 600 };
    let mut rng = Rng::new(0x4057_11e5 + backend as u64);
    let started = Instant::now();
    // Valid batches between the hostile requests: they must all count, once.
    let mut acknowledged: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut requests = Vec::new();
    for n in 0..total {
        requests.push(hostile_request(&mut rng, n));
    }
    let mut by_kind: BTreeMap<&'static str, (u64, BTreeSet<String>)> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (c, chunk) in requests.chunks(20).enumerate() {
        let answers: Vec<(u16, Value)> = futures_util::stream::iter(chunk)
            .map(|r| send(&s, r))
            .buffered(4)
            .collect()
            .await;
        for (r, (status, answer)) in chunk.iter().zip(answers) {
            let entry = by_kind.entry(r.kind).or_default();
            entry.0 += 1;
            entry.1.insert(format!(
                "{status} {}",
                answer["error"].as_str().unwrap_or("?")
            ));
            if let Err(why) = check(&r.want, status, &answer) {
                let shown: String = answer.to_string().chars().take(600).collect();
                wrong.push(format!("{} ({why}): got {status} {shown}", r.kind));
            }
        }
        let batch: Vec<Value> = (0..=c % 5)
            .map(|i| {
                let (id, user) = (format!("ok-{c}-{i}"), format!("vu-{}", c % 7));
                acknowledged
                    .entry(user.clone())
                    .or_default()
                    .insert(id.clone());
                valid(&id, &user, "a valid one between hostile ones")
            })
            .collect();
        let (status, answer) = s.ingest(Value::Array(batch).to_string()).await;
        assert_eq!(status, 202, "a valid batch after hostile ones: {answer}");
    }
    let elapsed = started.elapsed();
    for (kind, (count, answers)) in &by_kind {
        println!(
            "  {kind}: {count} × {}",
            answers.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    assert!(
        wrong.is_empty(),
        "{} of {total} answered wrongly:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );

    // Still healthy, still taking events; nothing of any refused request stored.
    let recovery = Instant::now();
    let (status, _) = s.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, _) = s
        .ingest(valid("ok-last", "vu-last", "still here").to_string())
        .await;
    assert_eq!(status, 202);
    acknowledged
        .entry("vu-last".to_owned())
        .or_default()
        .insert("ok-last".to_owned());
    let n: u64 = acknowledged.values().map(|ids| ids.len() as u64).sum();
    let recovered = recovery.elapsed() + until_counted(&s, n).await;
    let (lost, doubled, named) = lost_and_doubled(&s, &acknowledged).await;
    report(
        &format!("{total} hostile requests, {backend:?}"),
        1,
        total + n,
        lost,
        doubled,
        &format!(
            "none needed; {:.1} s for all, a valid event counted {} ms after",
            elapsed.as_secs_f64(),
            recovered.as_millis()
        ),
    );
    assert_eq!(
        (lost, doubled),
        (0, 0),
        "valid events lost or counted twice: {named:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_4xx_with_the_reason_embedded() {
    hostile_requests_get_a_4xx_with_the_reason(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_4xx_with_the_reason_redis() {
    hostile_requests_get_a_4xx_with_the_reason(Backend::Redis).await;
}

/// How a hostile entry is written.
enum Write {
    /// `XADD … *` with these fields.
    Fields(Vec<(Vec<u8>, Vec<u8>)>),
    /// `XADD` with an id of its own: `ahead_ms` past the stream's clock and this
    /// sequence number; with `mark`, the field `at` says that id (as botwatch's
    /// ingest script writes it).
    Explicit {
        fields: Vec<(Vec<u8>, Vec<u8>)>,
        ahead_ms: u64,
        seq: u64,
        mark: bool,
    },
    /// `XADD` and `XDEL` at once (a script): no reader ever sees it.
    Deleted(Vec<u8>),
}

struct Entry {
    kind: &'static str,
    write: Write,
    /// Words the dead letter's reason must hold; None: it is no dead letter.
    reason: Option<&'static str>,
}

fn field(name: &str, value: impl Into<Vec<u8>>) -> (Vec<u8>, Vec<u8>) {
    (name.as_bytes().to_vec(), value.into())
}

/// The limit an entry's event is read with (ingest's, plus room for what it adds).
const READ_LIMIT: usize = 64 * 1024 + 1024;

/// One hostile entry of a kind picked by `rng`.
fn hostile_entry(rng: &mut Rng, n: u64) -> Entry {
    let event = |v: Vec<u8>| Write::Fields(vec![field("event", v)]);
    let json_or_size = |len: usize| {
        if len > READ_LIMIT {
            "bytes"
        } else {
            "not valid JSON"
        }
    };
    match rng.below(12) {
        0 => {
            let body = *rng.pick(&[
                "{not json",
                "{\"id\": ",
                "[",
                "{\"bot\":\"hostile\",}",
                "nul\u{0}l",
            ]);
            Entry {
                kind: "bad JSON",
                write: event(body.into()),
                reason: Some("not valid JSON"),
            }
        }
        1 => {
            let text = valid(&format!("h-{n}"), &format!("hu-{n}"), "@@").to_string();
            let (before, after) = text.split_once("@@").expect("marker");
            let mut v = before.as_bytes().to_vec();
            let bad_bytes: [&[u8]; 3] = [b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80"];
            let picked: &[u8] = bad_bytes[rng.below(3) as usize];
            v.extend_from_slice(picked);
            v.extend_from_slice(after.as_bytes());
            Entry {
                kind: "bad UTF-8",
                write: event(v),
                reason: Some("not valid JSON"),
            }
        }
        2 => {
            let ok = valid(&format!("h-{n}"), &format!("hu-{n}"), "x").to_string();
            let fields = match rng.below(3) {
                0 => vec![field("payload", ok)],
                1 => vec![field("Event", ok), field("other", "x")],
                _ => vec![field("e\u{301}vent", ok)],
            };
            Entry {
                kind: "no field \"event\"",
                write: Write::Fields(fields),
                reason: Some("no field \"event\""),
            }
        }
        3 => Entry {
            kind: "empty event",
            write: event(Vec::new()),
            reason: Some("not valid JSON"),
        },
        4 => {
            let len = if rng.chance(0.05) {
                rng.within(1_000_000..=2_000_000)
            } else {
                rng.within(READ_LIMIT as u64 + 1..=300_000)
            } as usize;
            let v = valid(&format!("h-{n}"), &format!("hu-{n}"), &"o".repeat(len)).to_string();
            Entry {
                kind: "oversized",
                write: event(v.into()),
                reason: Some("bytes"),
            }
        }
        5 => {
            let (v, words) = match rng.below(4) {
                0 => (changed(n, &["bot"], Some(json!("Bad Bot"))), "bot:"),
                1 => (changed(n, &["user"], None), "user"),
                2 => (changed(n, &["direction"], Some(json!(7))), "direction"),
                _ => (
                    changed(n, &["ts"], Some(json!("2026-11-31T00:00:00Z"))),
                    "ts",
                ),
            };
            Entry {
                kind: "not a valid event",
                write: event(v.into()),
                reason: Some(words),
            }
        }
        6 | 7 => {
            // The four this case has always forged (not `broadcast`).
            let (kind, extra) = rng.pick(&own_kinds()[..4]).clone();
            let mut e: Value =
                serde_json::from_str(&changed(n, &["type"], Some(json!(kind)))).expect("json");
            for (k, v) in extra.as_object().expect("object") {
                e[k] = v.clone();
            }
            let fields = vec![field("event", e.to_string())];
            if rng.chance(0.5) {
                Entry {
                    kind: "botwatch's own kind",
                    write: Write::Fields(fields),
                    reason: Some("type"),
                }
            } else {
                // With botwatch's mark forged (an id of its own, `at` saying it).
                let write = Write::Explicit {
                    fields,
                    ahead_ms: 1,
                    seq: 0,
                    mark: true,
                };
                Entry {
                    kind: "botwatch's own kind, mark forged",
                    write,
                    reason: Some("type"),
                }
            }
        }
        8 => {
            let depth = *rng.pick(&[129, 1_000, 20_000, 100_000]);
            let v = nested(depth);
            let reason = Some(json_or_size(v.len()));
            Entry {
                kind: "deep nesting",
                write: event(v.into()),
                reason,
            }
        }
        9 => {
            let v = *rng.pick(&["[]", "42", "null", "\"event\"", "[{\"id\":\"x\"}]"]);
            Entry {
                kind: "not an object",
                write: event(v.into()),
                reason: Some("expected an object"),
            }
        }
        10 => {
            // An id past what readers take (sequence over ten digits), a moment ahead.
            let write = Write::Explicit {
                fields: vec![field(
                    "event",
                    valid(&format!("h-{n}"), &format!("hu-{n}"), "x").to_string(),
                )],
                ahead_ms: rng.within(1..=2_000),
                seq: 10_000_000_000 + rng.below(1_000),
                mark: false,
            };
            Entry {
                kind: "stream id out of range",
                write,
                reason: Some("out of range"),
            }
        }
        _ => {
            let v = valid(&format!("h-{n}"), &format!("hu-{n}"), "never read").to_string();
            Entry {
                kind: "deleted before it was read",
                write: Write::Deleted(v.into()),
                reason: None,
            }
        }
    }
}

/// The stream's clock: Redis's time, or its last id's when that is ahead (ms).
async fn stream_clock(con: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(con).await.expect("time");
    let info: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(con)
        .await
        .unwrap_or_default();
    let last = info
        .chunks(2)
        .find_map(|kv| match kv {
            [redis::Value::BulkString(k), redis::Value::BulkString(v)]
                if k == b"last-generated-id" =>
            {
                std::str::from_utf8(v)
                    .ok()?
                    .split('-')
                    .next()?
                    .parse::<u64>()
                    .ok()
            }
            _ => None,
        })
        .unwrap_or(0);
    (secs * 1000 + micros / 1000).max(last)
}

/// Writes `entry`; its stream id (None when it was deleted at once).
async fn write(
    con: &mut redis::aio::MultiplexedConnection,
    key: &str,
    entry: &Write,
) -> Option<String> {
    let xadd = |id: &str, fields: &[(Vec<u8>, Vec<u8>)]| {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(key).arg(id);
        for (k, v) in fields {
            cmd.arg(k).arg(v);
        }
        cmd
    };
    match entry {
        Write::Fields(fields) => Some(xadd("*", fields).query_async(con).await.expect("xadd")),
        Write::Explicit {
            fields,
            ahead_ms,
            seq,
            mark,
        } => {
            let id = format!("{}-{seq}", stream_clock(con, key).await + ahead_ms);
            let mut fields = fields.clone();
            if *mark {
                fields.push(field("at", id.clone()));
            }
            let added: String = xadd(&id, &fields).query_async(con).await.expect("xadd");
            assert_eq!(added, id);
            Some(id)
        }
        Write::Deleted(event) => {
            let script = redis::Script::new(
                "local id = redis.call('XADD', KEYS[1], '*', 'event', ARGV[1]) \
                 redis.call('XDEL', KEYS[1], id) return id",
            );
            let _: String = script
                .key(key)
                .arg(event.as_slice())
                .invoke_async(con)
                .await
                .expect("xadd, xdel");
            None
        }
    }
}

/// A stream entry's fields and values, as bytes.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

type Stream = Vec<(String, Fields)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_stream_entries_are_dead_lettered_once_and_the_rest_counted_once() {
    let s = TestServer::start(Backend::Redis).await;
    let key = format!("{}events", s.redis_prefix());
    let dead_key = format!("{key}:dead");
    let mut con = s.redis().await;
    let total: u64 = if long() { 4_000 } else { 400 };
    let mut rng = Rng::new(0x5eed_dead);
    let mut acknowledged: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut acknowledge = |user: String, id: String| {
        acknowledged.entry(user).or_default().insert(id);
    };
    let mut http_sent: Vec<Value> = Vec::new();
    // The hostile entries in stream order: (stream id, kind, reason's words, fields).
    let mut dead_expected: Vec<(String, &'static str, &'static str, Fields)> = Vec::new();
    let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
    let started = Instant::now();
    for n in 0..total {
        if rng.chance(0.5) {
            // An adapter's valid entry: sometimes without an id (the stream id makes
            // one), sometimes an id HTTP already delivered (counted once).
            let user = format!("vu-{}", rng.below(7));
            if !http_sent.is_empty() && rng.chance(0.15) {
                let again = rng.pick(&http_sent).clone();
                write(
                    &mut con,
                    &key,
                    &Write::Fields(vec![field("event", again.to_string())]),
                )
                .await;
            } else if rng.chance(0.1) {
                let mut e = valid("x", &user, "an adapter's, without an id");
                e.as_object_mut().expect("object").remove("id");
                let sid = write(
                    &mut con,
                    &key,
                    &Write::Fields(vec![field("event", e.to_string())]),
                )
                .await
                .expect("id");
                acknowledge(user, format!("redis-{sid}"));
            } else {
                let id = format!("ra-{n}");
                let e = valid(&id, &user, "an adapter's");
                write(
                    &mut con,
                    &key,
                    &Write::Fields(vec![field("event", e.to_string())]),
                )
                .await;
                acknowledge(user, id);
            }
        }
        if rng.chance(0.3) {
            let (id, user) = (format!("hv-{n}"), format!("vu-{}", rng.below(7)));
            let e = valid(&id, &user, "through HTTP");
            let (status, answer) = s.ingest(e.to_string()).await;
            assert_eq!(status, 202, "{answer}");
            acknowledge(user, id);
            http_sent.push(e);
        }
        if !http_sent.is_empty() && rng.chance(0.03) {
            // A retry of an event HTTP delivered, with botwatch's mark forged: still
            // counted once.
            let again = rng.pick(&http_sent).to_string();
            *kinds
                .entry("a retry with botwatch's mark forged")
                .or_default() += 1;
            let fields = vec![field("event", again)];
            let forged = Write::Explicit {
                fields,
                ahead_ms: 1,
                seq: 0,
                mark: true,
            };
            write(&mut con, &key, &forged).await;
        }
        let entry = hostile_entry(&mut rng, n);
        *kinds.entry(entry.kind).or_default() += 1;
        let sid = write(&mut con, &key, &entry.write).await;
        if let (Some(sid), Some(words)) = (sid, entry.reason) {
            let fields = match &entry.write {
                Write::Fields(f) => f.clone(),
                Write::Explicit { fields, mark, .. } => {
                    let mut f = fields.clone();
                    if *mark {
                        f.push(field("at", sid.clone()));
                    }
                    f
                }
                Write::Deleted(_) => unreachable!("no id"),
            };
            dead_expected.push((sid, entry.kind, words, fields));
        }
        if matches!(entry.write, Write::Explicit { mark: false, .. }) {
            // botwatch's own next entry, right after an id at the edge of the range.
            let (id, user) = (format!("hx-{n}"), format!("vu-{}", rng.below(7)));
            let (status, answer) = s
                .ingest(valid(&id, &user, "after an odd id").to_string())
                .await;
            assert_eq!(status, 202, "{answer}");
            acknowledge(user, id);
        }
    }
    // The follower goes on: an entry after all of them counts.
    let last_hostile = Instant::now();
    write(
        &mut con,
        &key,
        &Write::Fields(vec![field(
            "event",
            valid("ra-last", "vu-last", "the end").to_string(),
        )]),
    )
    .await;
    acknowledge("vu-last".to_owned(), "ra-last".to_owned());
    let n: u64 = acknowledged.values().map(|ids| ids.len() as u64).sum();
    let recovered = last_hostile.elapsed() + until_counted(&s, n).await;

    // Each hostile entry once in the dead letters, in stream order, with its reason
    // and its fields; nothing else there.
    let dead: Stream = redis::cmd("XRANGE")
        .arg(&dead_key)
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .expect("xrange");
    let mut wrong = Vec::new();
    let got_ids: Vec<&[u8]> = dead
        .iter()
        .map(|(_, f)| f.first().map(|(_, v)| v.as_slice()).unwrap_or(b""))
        .collect();
    let want_ids: Vec<&[u8]> = dead_expected
        .iter()
        .map(|(sid, ..)| sid.as_bytes())
        .collect();
    if got_ids != want_ids {
        let got: BTreeSet<&[u8]> = got_ids.iter().copied().collect();
        let missing: Vec<String> = dead_expected
            .iter()
            .filter(|(sid, ..)| !got.contains(sid.as_bytes()))
            .map(|(sid, kind, ..)| format!("{sid} ({kind})"))
            .collect();
        wrong.push(format!(
            "dead letters: {} expected, {} there ({} distinct); missing: {missing:?}",
            want_ids.len(),
            got_ids.len(),
            got.len()
        ));
    }
    for ((_, fields), (sid, kind, words, original)) in dead.iter().zip(&dead_expected) {
        let reason = fields
            .iter()
            .find(|(k, _)| k == b"reason")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        if !reason.contains(words) {
            wrong.push(format!(
                "{sid} ({kind}): reason {reason:?} does not say {words:?}"
            ));
        }
        if fields.get(2..) != Some(original.as_slice()) {
            wrong.push(format!(
                "{sid} ({kind}): the dead letter does not keep the entry's fields"
            ));
        }
    }
    let metrics = s.metrics().await;
    let dead_metric = format!("botwatch_dead_letters_total {}", dead_expected.len());
    if !metrics.lines().any(|l| l == dead_metric) {
        wrong.push(format!("metrics: no {dead_metric:?}"));
    }
    let applied_metric = format!("botwatch_reader_events_total {n}");
    if !metrics.lines().any(|l| l == applied_metric) {
        let said: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("botwatch_reader_events_total"))
            .collect();
        wrong.push(format!("metrics: {said:?}, expected {applied_metric:?}"));
    }
    let (lost, doubled, named) = lost_and_doubled(&s, &acknowledged).await;
    println!("  entries by kind: {kinds:?}");
    report(
        &format!("{total} hostile stream entries among {n} valid"),
        1,
        total + n,
        lost,
        doubled,
        &format!(
            "none needed (the follower went on); {:.1} s for all, the last entry counted {} ms after",
            started.elapsed().as_secs_f64() - recovered.as_secs_f64(),
            recovered.as_millis()
        ),
    );
    assert_eq!(
        (lost, doubled),
        (0, 0),
        "valid entries lost or counted twice: {named:?}"
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    s.stop().await;
}
