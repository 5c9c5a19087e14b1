//! The HTTP API end to end: a real server on port 0, real HTTP, each test run against
//! the embedded store and against Redis.

use botwatch_tests::{ADMIN_TOKEN, Backend, TestServer};
use serde_json::{Value, json};

fn event(id: &str, user: &str, text: &str, ts: &str) -> Value {
    json!({
        "id": id, "bot": "helpdesk", "type": "message", "direction": "in",
        "provider": "telegram", "user": {"id": user, "name": "Олена К."},
        "text": text, "ts": ts
    })
}

fn history_ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn ingest_one_event_or_a_batch(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, body) = s
        .ingest(event("e1", "u1", "hi", "2026-11-26T10:00:00Z").to_string())
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 1, "dialogs": {"u1": {"mode": "auto"}}})
    );

    let batch = json!([
        event("e2", "u1", "where is my order?", "2026-11-26T10:00:01Z"),
        event("e3", "u2", "привіт", "2026-11-26T10:00:02Z"),
        {"id": "e4", "bot": "helpdesk", "type": "message", "direction": "out", "provider": "telegram",
         "user": {"id": "u1"}, "text": "On its way", "ts": "2026-11-26T10:00:03Z"},
    ]);
    let (status, body) = s.ingest(batch.to_string()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 3);
    assert_eq!(
        body["dialogs"],
        json!({"u1": {"mode": "auto"}, "u2": {"mode": "auto"}})
    );

    let (status, history) = s.get("/api/v1/bots/helpdesk/dialogs/u1/messages").await;
    assert_eq!(status, 200);
    assert_eq!(history_ids(&history), ["e4", "e2", "e1"]);
    let newest = &history["items"][0];
    assert_eq!(newest["direction"], "out");
    assert_eq!(newest["sender"], json!({"kind": "bot"}));
    assert_eq!(newest["ts"], "2026-11-26T10:00:03.000Z");
    assert_eq!(history["next"], Value::Null);
    s.stop().await;
}

async fn an_invalid_batch_names_every_fault_and_stores_nothing(backend: Backend) {
    let s = TestServer::start(backend).await;
    let batch = json!([
        event("ok", "u1", "fine", "2026-11-26T10:00:00Z"),
        {"id": "bad1", "bot": "Help Desk", "type": "message", "direction": "in", "provider": "telegram", "user": {"id": "u1"}},
        {"id": "bad2", "bot": "helpdesk", "type": "message", "provider": "telegram"},
    ]);
    let (status, body) = s.ingest(batch.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_events");
    let faults: Vec<(u64, String)> = body["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|d| {
            (
                d["index"].as_u64().expect("index"),
                d["field"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(faults.contains(&(1, "bot".into())), "{faults:?}");
    assert!(faults.contains(&(2, "user".into())), "{faults:?}");
    assert!(faults.contains(&(2, "direction".into())), "{faults:?}");
    assert!(
        faults.iter().all(|(i, _)| *i != 0),
        "the valid event has no fault"
    );
    let (_, history) = s.get("/api/v1/bots/helpdesk/dialogs/u1/messages").await;
    assert_eq!(
        history_ids(&history),
        Vec::<String>::new(),
        "nothing of the batch was stored"
    );

    // Fixed and sent again, the batch is taken.
    let fixed = json!([
        event("ok", "u1", "fine", "2026-11-26T10:00:00Z"),
        event("bad1", "u1", "now fine", "2026-11-26T10:00:01Z"),
    ]);
    let (status, _) = s.ingest(fixed.to_string()).await;
    assert_eq!(status, 202);
    let (_, history) = s.get("/api/v1/bots/helpdesk/dialogs/u1/messages").await;
    assert_eq!(history_ids(&history), ["bad1", "ok"]);
    s.stop().await;
}

async fn malformed_json_and_missing_credentials_are_refused(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, body) = s.ingest("{\"id\": ").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "malformed_json");

    let url = s.url("/api/v1/events");
    let body = event("e1", "u1", "hi", "2026-11-26T10:00:00Z").to_string();
    let none = s
        .client
        .post(&url)
        .body(body.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(none.status().as_u16(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = s
        .client
        .post(&url)
        .bearer_auth(format!("{ADMIN_TOKEN}x"))
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status().as_u16(), 401);
    let history = s
        .client
        .get(s.url("/api/v1/bots/helpdesk/dialogs/u1/messages"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        history.status().as_u16(),
        401,
        "reading needs credentials too"
    );
    s.stop().await;
}

async fn limits_answer_413(backend: Backend) {
    let s = TestServer::start(backend).await;
    let many: Vec<Value> = (0..1001)
        .map(|i| event(&format!("e{i}"), "u1", "x", "2026-11-26T10:00:00Z"))
        .collect();
    let (status, body) = s.ingest(Value::Array(many).to_string()).await;
    assert_eq!(status, 413, "{body}");

    let long_text = "я".repeat(8 * 1024 + 1); // 16 KiB + 2 bytes of UTF-8
    let (status, body) = s
        .ingest(event("long", "u1", &long_text, "2026-11-26T10:00:00Z").to_string())
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["details"][0]["field"], "text");

    // A body announced as over 4 MiB is refused before it is read.
    let status_line = raw_request(
        &s,
        &format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n[",
            4 * 1024 * 1024 + 1
        ),
    )
    .await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");

    let exactly: Vec<Value> = (0..1000)
        .map(|i| event(&format!("e{i}"), "u1", "x", "2026-11-26T10:00:00Z"))
        .collect();
    let (status, body) = s.ingest(Value::Array(exactly).to_string()).await;
    assert_eq!(status, 202, "1,000 events is within the limit: {body}");
    s.stop().await;
}

async fn a_body_that_never_arrives_gets_408(backend: Backend) {
    let s = TestServer::start(backend).await;
    let started = std::time::Instant::now();
    // 100 bytes announced, 10 sent, then nothing.
    let status_line = raw_request(
        &s,
        &format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
             Content-Length: 100\r\n\r\n[{{\"id\":\"1"
        ),
    )
    .await;
    assert!(status_line.starts_with("HTTP/1.1 408"), "{status_line}");
    assert!(started.elapsed() >= botwatch_tests::BODY_TIMEOUT);
    s.stop().await;
}

async fn retried_events_count_once(backend: Backend) {
    let s = TestServer::start(backend).await;
    let batch = json!([
        event("r1", "u1", "a", "2026-11-26T10:00:00Z"),
        event("r2", "u1", "b", "2026-11-26T10:00:01Z"),
    ])
    .to_string();
    for _ in 0..3 {
        let (status, body) = s.ingest(batch.clone()).await;
        assert_eq!(status, 202);
        assert_eq!(body["accepted"], 2, "a retry is accepted");
    }
    let (_, history) = s.get("/api/v1/bots/helpdesk/dialogs/u1/messages").await;
    assert_eq!(history_ids(&history), ["r2", "r1"]);
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("request");
    let text = metrics.text().await.expect("text");
    assert!(text.contains("botwatch_events_accepted_total 6"), "{text}");
    assert!(text.contains("botwatch_events_duplicate_total 4"), "{text}");
    s.stop().await;
}

async fn history_pages_newest_first(backend: Backend) {
    let s = TestServer::start(backend).await;
    let batch: Vec<Value> = (0..7)
        .map(|i| {
            event(
                &format!("m{i}"),
                "u1",
                "x",
                &format!("2026-11-26T10:00:0{i}Z"),
            )
        })
        .collect();
    s.ingest(Value::Array(batch).to_string()).await;
    let mut seen = Vec::new();
    let mut path = "/api/v1/bots/helpdesk/dialogs/u1/messages?limit=3".to_owned();
    loop {
        let (status, page) = s.get(&path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(history_ids(&page));
        match page["next"].as_str() {
            Some(next) => {
                path = format!("/api/v1/bots/helpdesk/dialogs/u1/messages?limit=3&before={next}")
            }
            None => break,
        }
    }
    assert_eq!(seen, ["m6", "m5", "m4", "m3", "m2", "m1", "m0"]);

    let (status, body) = s
        .get("/api/v1/bots/helpdesk/dialogs/u1/messages?before=garbage")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_parameter"))
    );
    let (status, _) = s
        .get("/api/v1/bots/helpdesk/dialogs/u1/messages?limit=0")
        .await;
    assert_eq!(status, 400);
    let (status, _) = s
        .get("/api/v1/bots/helpdesk/dialogs/u1/messages?limit=201")
        .await;
    assert_eq!(status, 400);
    let (status, _) = s
        .get("/api/v1/bots/Not%20A%20Bot/dialogs/u1/messages")
        .await;
    assert_eq!(status, 400);
    s.stop().await;
}

/// Polls `path` until `done` holds for its answer (figures follow the log).
async fn until(s: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    until_long(s, path, done, std::time::Duration::from_secs(10)).await
}

/// Reads `path` until its answer is 200 and `done` holds, `within` at most.
async fn until_long(
    s: &TestServer,
    path: &str,
    done: impl Fn(&Value) -> bool,
    within: std::time::Duration,
) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (status, body) = s.get(path).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < within,
            "{path} never got there: {status} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// [`until_true`] for a check that has to wait on something.
async fn until_true_async<F: std::future::Future<Output = bool>>(what: &str, done: impl Fn() -> F) {
    let started = std::time::Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{what}: not within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until `done` holds (10 s at most, then fails naming `what`).
async fn until_true(what: &str, done: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{what}: not within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn figures_follow_the_log(backend: Backend) {
    let s = TestServer::start(backend).await;
    let out = |id: &str, ts: &str| {
        json!({"id": id, "bot": "helpdesk", "type": "message", "direction": "out",
               "provider": "telegram", "user": {"id": "u1"}, "text": "On its way", "ts": ts})
    };
    let batch = json!([
        event("f1", "u1", "Where is my order?", "2026-11-26T10:00:00Z"),
        out("f2", "2026-11-26T10:00:05Z"),
        event(
            "f3",
            "u1",
            "  where IS my   order? ",
            "2026-11-26T10:20:00Z"
        ),
        event("f4", "u2", "Привіт", "2026-11-26T12:00:00Z"),
        // More than 30 minutes after the last message: a second session.
        event("f5", "u1", "thanks", "2026-11-26T11:00:00Z"),
    ]);
    let (status, _) = s.ingest(batch.to_string()).await;
    assert_eq!(status, 202);

    let dialog = until(&s, "/api/v1/bots/helpdesk/dialogs/u1", |d| {
        d["messages"] == 4
    })
    .await;
    assert_eq!(dialog["sessions"], 2);
    assert_eq!(dialog["mode"], "auto");
    assert_eq!(dialog["last"], "2026-11-26T11:00:00.000Z");
    assert_eq!(dialog["user"]["name"], "Олена К.");

    let (_, day) = s
        .get("/api/v1/bots/helpdesk/stats?from=2026-11-26&to=2026-11-26&bucket=day")
        .await;
    assert_eq!(day["tz"], "UTC");
    assert_eq!(
        day["buckets"],
        json!([{"start": "2026-11-26T00:00:00.000Z", "messages_in": 4, "messages_out": 1,
                "users_new": 2, "users_existing": 0, "users_active": 2, "sessions": 3}])
    );
    let (_, hours) = s
        .get("/api/v1/bots/helpdesk/stats?from=2026-11-26&to=2026-11-26&bucket=hour")
        .await;
    let hours = hours["buckets"].as_array().expect("buckets");
    assert_eq!(hours.len(), 24, "empty buckets are included");
    assert_eq!(hours[10]["messages_in"], 2);
    assert_eq!(hours[10]["messages_out"], 1);
    assert_eq!(
        hours[12]["users_existing"], 1,
        "u1 was first seen before 12:00"
    );

    let (_, top) = s
        .get("/api/v1/bots/helpdesk/top-messages?from=2026-11-26&to=2026-11-26")
        .await;
    assert_eq!(
        top,
        json!([{"text": "where is my order?", "count": 2}, {"text": "thanks", "count": 1},
               {"text": "привіт", "count": 1}])
    );
    let (_, bots) = s.get("/api/v1/bots").await;
    assert!(
        bots.as_array()
            .expect("bots")
            .contains(&json!({"id": "helpdesk"})),
        "{bots}"
    );

    for (path, status) in [
        (
            "/api/v1/bots/nobody/stats?from=2026-11-26&to=2026-11-26",
            404,
        ),
        ("/api/v1/bots/helpdesk/dialogs/stranger", 404),
        (
            "/api/v1/bots/helpdesk/stats?from=2026-11-27&to=2026-11-26",
            400,
        ),
        (
            "/api/v1/bots/helpdesk/stats?from=2026-11-26&to=2026-11-26&bucket=month",
            400,
        ),
        ("/api/v1/bots/helpdesk/stats?to=2026-11-26", 400),
        (
            "/api/v1/bots/helpdesk/stats?from=2026-01-01&to=2026-11-26&bucket=hour",
            400,
        ),
        ("/api/v1/bots/helpdesk/top-messages?limit=0", 400),
        (
            "/api/v1/bots/helpdesk/top-messages?from=2026-11-27&to=2026-11-26",
            400,
        ),
        ("/api/v1/bots/helpdesk/top-messages?from=2999-01-01", 200),
        (
            "/api/v1/bots/helpdesk/stats?from=%2B262142-12-31&to=%2B262142-12-31",
            400,
        ),
        ("/api/v1/bots/helpdesk/top-messages?to=-262143-01-01", 400),
    ] {
        assert_eq!(s.get(path).await.0, status, "{path}");
    }
    // None of that hurt the figures.
    let (status, dialog) = s.get("/api/v1/bots/helpdesk/dialogs/u1").await;
    assert_eq!((status, dialog["messages"].as_u64()), (200, Some(4)));
    s.stop().await;
}

async fn the_users_table_sorts_pages_filters_and_searches(backend: Backend) {
    let s = TestServer::start(backend).await;
    let user = |id: &str, name: &str, provider: &str, n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| {
                json!({"id": format!("{id}-{i}"), "bot": "crm", "type": "message",
                       "direction": "in", "provider": provider,
                       "user": {"id": id, "name": name, "gender": "female",
                                "avatar": "https://example.com/a.jpg", "lang": "uk"},
                       "text": "hi", "ts": format!("2026-11-26T10:{:02}:00Z", 10 * n + i)})
            })
            .collect()
    };
    let mut batch = Vec::new();
    batch.extend(user("u1", "Олена Коваль", "telegram", 3));
    batch.extend(user("u2", "John Smith", "viber", 1));
    batch.extend(user("u3", "ОЛЕГ", "viber", 2));
    batch.extend(user("u4", "Anna", "telegram", 4));
    let (status, _) = s.ingest(Value::Array(batch).to_string()).await;
    assert_eq!(status, 202);
    until(&s, "/api/v1/bots/crm/users", |b| b["total"] == 4).await;

    // Most messages first, two per page, the cursor carrying on.
    let (_, first) = s.get("/api/v1/bots/crm/users?sort=messages&limit=2").await;
    let ids = |b: &Value| -> Vec<String> {
        b["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|u| u["id"].as_str().expect("id").to_owned())
            .collect()
    };
    assert_eq!(ids(&first), ["u4", "u1"]);
    assert_eq!(first["items"][0]["messages"], 4);
    assert_eq!(first["items"][0]["gender"], "female");
    assert_eq!(first["items"][0]["mode"], "auto");
    let next = first["next"].as_str().expect("a next page");
    let (_, second) = s
        .get(&format!(
            "/api/v1/bots/crm/users?sort=messages&limit=2&cursor={next}"
        ))
        .await;
    assert_eq!(ids(&second), ["u3", "u2"]);
    assert_eq!(second["next"], Value::Null);
    // A cursor of another sort is refused, not misread.
    let (status, _) = s
        .get(&format!("/api/v1/bots/crm/users?sort=name&cursor={next}"))
        .await;
    assert_eq!(status, 400);

    // Any part of the name, any case, Cyrillic too; facets leave their own group out.
    let (_, found) = s
        .get("/api/v1/bots/crm/users?search=%D0%BE%D0%BB%D0%B5&provider=viber")
        .await;
    assert_eq!(ids(&found), ["u3"]);
    assert_eq!(found["total"], 1);
    assert_eq!(
        found["facets"]["provider"],
        json!({"telegram": 1, "viber": 1})
    );
    assert_eq!(found["facets"]["subscriber"], 1);
    let (_, by_name) = s
        .get("/api/v1/bots/crm/users?sort=name&provider=telegram&provider=viber")
        .await;
    assert_eq!(
        ids(&by_name),
        ["u4", "u2", "u3", "u1"],
        "A to Z, Latin before Cyrillic"
    );

    let (status, profile) = s.get("/api/v1/bots/crm/users/u1").await;
    assert_eq!(status, 200);
    assert_eq!(profile["name"], "Олена Коваль");
    assert_eq!(profile["lang"], "uk");
    assert_eq!(profile["auto_mode"], true);
    assert_eq!(profile["tags"], json!([]));
    assert_eq!(profile["first_seen"], "2026-11-26T10:30:00.000Z");
    for (path, status) in [
        ("/api/v1/bots/crm/users/nobody", 404),
        ("/api/v1/bots/nobody/users", 404),
        ("/api/v1/bots/crm/users?sort=age", 400),
        ("/api/v1/bots/crm/users?limit=1000", 400),
        ("/api/v1/bots/crm/users?cursor=garbage", 400),
    ] {
        assert_eq!(s.get(path).await.0, status, "{path}");
    }
    let anonymous = reqwest::get(s.url("/api/v1/bots/crm/users"))
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
    s.stop().await;
}

/// A recount (after a settings change) runs beside the follower: other bots' figures
/// stay live meanwhile, and the bot's own events ingested during it count once.
async fn figures_stay_live_while_a_bot_is_recounted(backend: Backend) {
    let s = TestServer::start(backend).await;
    let msg = |bot: &str, n: usize| {
        json!({"id": format!("{bot}-{n}"), "bot": bot, "type": "message", "direction": "in",
               "provider": "web", "user": {"id": format!("u{}", n % 500)}, "text": "hi",
               "ts": format!("2026-11-26T10:{:02}:{:02}Z", (n / 60) % 60, n % 60)})
    };
    const BEFORE: usize = 40_000;
    for chunk in (0..BEFORE).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<Value> = chunk.iter().map(|&n| msg("big", n)).collect();
        assert_eq!(s.ingest(Value::Array(batch).to_string()).await.0, 202);
    }
    let day = "/api/v1/bots/big/stats?from=2026-11-26&to=2026-11-26&bucket=day";
    until(&s, day, |b| b["buckets"][0]["messages_in"] == BEFORE).await;

    let (status, _) = s
        .put(
            "/api/v1/bots/big/settings",
            json!({"timezone": "Asia/Kolkata"}),
        )
        .await;
    assert_eq!(status, 200);
    let started = std::time::Instant::now();
    let metrics = || async {
        reqwest::get(s.url("/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    while !metrics().await.contains("botwatch_recounts_running 1") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "no recount started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // While the big bot is recounted, another bot's event shows, and the big bot's
    // figures are still the old ones, still counting.
    let other = json!([msg("other", 1)]);
    let during: Vec<Value> = (BEFORE..BEFORE + 300).map(|n| msg("big", n)).collect();
    assert_eq!(s.ingest(other.to_string()).await.0, 202);
    assert_eq!(s.ingest(Value::Array(during).to_string()).await.0, 202);
    until(&s, "/api/v1/bots/other/dialogs/u1", |d| d["messages"] == 1).await;
    let (_, mid) = s.get(day).await;
    assert_eq!(
        mid["tz"], "UTC",
        "the other bot's event showed while the big bot was still being recounted"
    );

    let done = until(&s, day, |b| b["tz"] == "Asia/Kolkata").await;
    assert_eq!(
        done["buckets"][0]["messages_in"],
        BEFORE + 300,
        "every event once, those ingested during the recount included"
    );
    s.stop().await;
}

/// Two PUTs at once, each with its own field: both take effect (each merges into what
/// the other stored), round after round.
async fn concurrent_settings_changes_both_take_effect(backend: Backend) {
    let s = TestServer::start(backend).await;
    for round in 0..20u64 {
        let name = format!("desk {round}");
        let timeout = 600 + round * 60;
        let path = "/api/v1/bots/race/settings";
        let (a, b) = tokio::join!(
            s.put(path, json!({ "name": name })),
            s.put(path, json!({ "session_timeout_secs": timeout }))
        );
        assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
        let (_, doc) = s.get(path).await;
        assert_eq!(
            (doc["name"].as_str(), doc["session_timeout_secs"].as_u64()),
            (Some(name.as_str()), Some(timeout)),
            "round {round}: {doc}"
        );
    }
    s.stop().await;
}

async fn settings_shape_the_figures(backend: Backend) {
    let s = TestServer::start(backend).await;
    let batch = json!([
        // 23:30 UTC on the 25th is 01:30 on the 26th in Kyiv.
        event("s1", "u1", "late", "2026-11-25T23:30:00Z"),
        event("s2", "u2", "a", "2026-11-25T10:00:00Z"),
        event("s3", "u2", "b", "2026-11-25T10:20:00Z"),
    ]);
    assert_eq!(s.ingest(batch.to_string()).await.0, 202);
    until(&s, "/api/v1/bots/helpdesk/dialogs/u2", |d| {
        d["sessions"] == 1
    })
    .await;
    let (status, doc) = s.get("/api/v1/bots/helpdesk/settings").await;
    assert_eq!(status, 200);
    assert_eq!(
        doc,
        json!({"name": null, "timezone": "UTC", "session_timeout_secs": 1800,
               "webhook_url": null, "webhook_secret": null,
               "channels": {"telegram": {"token": null, "webhook_secret": null, "forward_url": null},
                            "webchat": {"enabled": false}},
               "handoff_phrases": null,
               "integrations": {
                   "google_analytics": {"measurement_id": null, "api_secret": null, "active": false},
                   "mixpanel": {"token": null, "active": false}}})
    );

    let (status, doc) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"timezone": "Europe/Kyiv", "session_timeout_secs": 600}),
        )
        .await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["timezone"], "Europe/Kyiv");
    // Recounted: ten minutes is the new session timeout, and days are Kyiv's.
    until(&s, "/api/v1/bots/helpdesk/dialogs/u2", |d| {
        d["sessions"] == 2
    })
    .await;
    let stats = until(
        &s,
        "/api/v1/bots/helpdesk/stats?from=2026-11-25&to=2026-11-26&bucket=day",
        |b| b["tz"] == "Europe/Kyiv",
    )
    .await;
    let days = stats["buckets"].as_array().expect("buckets");
    assert_eq!(days[0]["start"], "2026-11-24T22:00:00.000Z");
    assert_eq!(
        (
            days[0]["messages_in"].as_u64(),
            days[1]["messages_in"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(days[0]["sessions"], 2);

    // A name alone changes no figure; PUT on a new bot creates it.
    let (status, doc) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"name": "Help desk"}),
        )
        .await;
    assert_eq!(
        (status, doc["timezone"].as_str()),
        (200, Some("Europe/Kyiv"))
    );
    let (status, _) = s
        .put(
            "/api/v1/bots/fresh-bot/settings",
            json!({"timezone": "Asia/Kolkata"}),
        )
        .await;
    assert_eq!(status, 200);
    until(&s, "/api/v1/bots", |b| {
        b.as_array()
            .is_some_and(|b| b.contains(&json!({"id": "fresh-bot"})))
    })
    .await;
    assert_eq!(
        s.get("/api/v1/bots/fresh-bot/settings").await.1["timezone"],
        "Asia/Kolkata"
    );

    for (body, field) in [
        (json!({"timezone": "Mars/Olympus"}), "timezone"),
        (json!({"session_timeout_secs": 0}), "session_timeout_secs"),
        (json!({"webhook_url": "javascript:alert(1)"}), "webhook_url"),
        (
            json!({"webhook_url": "https://example.org", "webhook_secret": null}),
            "webhook_secret",
        ),
        (json!({"channels": {"viber": {}}}), "channels.viber"),
    ] {
        let (status, e) = s.put("/api/v1/bots/helpdesk/settings", body).await;
        assert_eq!(status, 400, "{e}");
        assert!(
            e["message"].as_str().unwrap_or("").starts_with(field),
            "{e}"
        );
    }
    // A setting that needs another: the request's own fault when it takes that away
    // itself (400), the stored settings' when neither has it (409).
    let (status, e) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"integrations": {"mixpanel": {"active": true, "token": null}}}),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"integrations": {"mixpanel": {"active": true}}}),
        )
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (409, Some("unmet_need")),
        "{e}"
    );
    assert_eq!(s.get("/api/v1/bots/nobody/settings").await.0, 404);

    // Analytics secrets: sealed with the embedded store's key file; a Redis deployment
    // without BOTWATCH_SECRET_KEY refuses them rather than store them in clear.
    let ga = json!({"integrations": {"google_analytics": {
        "measurement_id": "G-TEST123", "api_secret": "a-secret-of-ga-4321", "active": true}}});
    let (status, doc) = s.put("/api/v1/bots/helpdesk/settings", ga).await;
    match backend {
        Backend::Embedded => {
            assert_eq!(status, 200, "{doc}");
            let shown = &doc["integrations"]["google_analytics"];
            assert_eq!(shown["api_secret"], "********4321");
            assert_eq!(shown["measurement_id"], "G-TEST123");
            assert_eq!(shown["active"], true);
            let (_, again) = s.get("/api/v1/bots/helpdesk/settings").await;
            assert_eq!(again["integrations"], doc["integrations"]);
        }
        Backend::Redis => {
            assert_eq!(
                (status, &doc["error"]),
                (409, &json!("no_secret_key")),
                "{doc}"
            );
        }
    }
    let (status, e) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"integrations": {"mixpanel": {"active": true}}}),
        )
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (409, Some("unmet_need")),
        "{e}"
    );
    s.stop().await;
}

async fn health_readiness_and_metrics(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, body) = s.get("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = s.get("/readyz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    let expected = match backend {
        Backend::Embedded => "embedded",
        Backend::Redis => "redis",
    };
    assert_eq!(body["storage"], expected);
    s.ingest(event("e1", "u1", "hi", "2026-11-26T10:00:00Z").to_string())
        .await;
    s.ingest("nope").await;
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/plain")
    );
    let text = metrics.text().await.expect("text");
    for name in [
        "botwatch_events_accepted_total 1",
        "botwatch_events_rejected_total{reason=\"malformed\"} 1",
        "botwatch_log_length 1",
        "botwatch_storage_ready 1",
        "botwatch_reader_lag_seconds",
        "botwatch_dead_letters_total",
        "botwatch_snapshots_total",
        "botwatch_snapshot_failures_total 0",
        "botwatch_data_lost 0",
        "botwatch_log_behind_snapshot 0",
        "botwatch_trimmed_entries_total 0",
    ] {
        assert!(text.contains(name), "missing {name:?} in\n{text}");
    }
    let (status, body) = s.get("/api/v1/nothing-here").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    s.stop().await;
}

/// Sends raw bytes and returns the status line of the answer.
async fn raw_request(s: &TestServer, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).await.expect("read");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(botwatch_tests::Backend::Embedded).await })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(botwatch_tests::Backend::Redis).await })*
        }
    };
}

both_backends!(
    ingest_one_event_or_a_batch,
    an_invalid_batch_names_every_fault_and_stores_nothing,
    malformed_json_and_missing_credentials_are_refused,
    limits_answer_413,
    a_body_that_never_arrives_gets_408,
    retried_events_count_once,
    history_pages_newest_first,
    figures_follow_the_log,
    the_users_table_sorts_pages_filters_and_searches,
    settings_shape_the_figures,
    concurrent_settings_changes_both_take_effect,
    figures_stay_live_while_a_bot_is_recounted,
    health_readiness_and_metrics,
);

#[path = "api/redis_outage.rs"]
mod redis_outage;

#[path = "api/data_loss.rs"]
mod data_loss;

#[path = "api/retention.rs"]
mod retention;

#[path = "api/live.rs"]
mod live;

#[path = "api/accounts.rs"]
mod accounts;

#[path = "api/openapi.rs"]
mod openapi;

#[path = "api/dashboard.rs"]
mod dashboard;

#[path = "api/modes.rs"]
mod modes;

#[path = "api/webhook.rs"]
mod webhook;

#[path = "api/telegram_stand_in.rs"]
mod telegram_stand_in;

#[path = "api/operator.rs"]
mod operator;

#[path = "api/telegram.rs"]
mod telegram;

#[path = "api/telegram_framework.rs"]
mod telegram_framework;

#[path = "api/handoff.rs"]
mod handoff;

#[path = "api/webchat.rs"]
mod webchat;

#[path = "api/audience.rs"]
mod audience;

#[path = "api/broadcasts.rs"]
mod broadcasts;

#[path = "api/forwarding.rs"]
mod forwarding;

/// Serves a stand-in (Telegram, a bot's webhook, GA, Mixpanel) on a free port of
/// 127.0.0.1 for the rest of the test; returns its base address.
pub async fn serve_stand_in(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
