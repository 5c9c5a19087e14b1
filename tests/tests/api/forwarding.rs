//! Analytics forwarding against stand-in GA4 and Mixpanel servers on 127.0.0.1: what
//! arrives (shape, batch limits), retries after 500 and 429, nothing twice across a
//! restart, and Active off stopping at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use botwatch_tests::{Backend, TestServer};
use serde_json::{Value, json};

use super::operator::configured;
use super::until_true;

/// A status to answer with, and the `Retry-After` seconds to send with it.
type Failure = (u16, Option<u64>);

/// What the stand-in received and took, and the failures it is told to answer first.
#[derive(Clone, Default)]
struct StandIn {
    /// Bodies answered with success: GA4 request bodies, or Mixpanel event arrays.
    taken: Arc<Mutex<Vec<(String, Value)>>>,
    /// Requests answered with a failure.
    refused: Arc<Mutex<u32>>,
    /// Statuses (and a Retry-After) to answer the next requests with, in order.
    failures: Arc<Mutex<Vec<Failure>>>,
    /// Every request fails with 503 while set.
    down: Arc<Mutex<bool>>,
    /// The next request's first record is refused the way Mixpanel's strict import
    /// does (400 naming it; the others are taken).
    refuse_first_record: Arc<Mutex<bool>>,
}

async fn collect(
    State(s): State<StandIn>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let fail = {
        let mut failures = s.failures.lock().expect("failures");
        if *s.down.lock().expect("down") {
            Some((503, None))
        } else if failures.is_empty() {
            None
        } else {
            Some(failures.remove(0))
        }
    };
    if let Some((status, retry_after)) = fail {
        *s.refused.lock().expect("refused") += 1;
        let mut response = (
            StatusCode::from_u16(status).expect("status"),
            "try again later",
        )
            .into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", secs.to_string().parse().expect("header"));
        }
        return response;
    }
    if std::mem::take(&mut *s.refuse_first_record.lock().expect("refuse")) {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let taken = body.as_array().map_or(0, |a| a.len().saturating_sub(1));
        s.taken.lock().expect("taken").push((
            "strict".to_owned(),
            Value::Array(
                body.as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .skip(1)
                    .collect(),
            ),
        ));
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"code": 400, "num_records_imported": taken, "status": "Bad Request",
                              "failed_records": [{"index": 0, "$insert_id": "x", "field": "properties.time",
                                                  "message": "'properties.time' is invalid"}]})),
        )
            .into_response();
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let said = format!("{} {auth}", query.unwrap_or_default());
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    s.taken.lock().expect("taken").push((said, body));
    (StatusCode::NO_CONTENT, "").into_response()
}

/// GA4's validation server: a body without events gets a message, as GA's does.
async fn validate(body: axum::body::Bytes) -> axum::Json<Value> {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let messages = if body["events"].as_array().is_some_and(|e| !e.is_empty()) {
        json!([])
    } else {
        json!([{"fieldPath": "events", "description": "events is required", "validationCode": "VALUE_REQUIRED"}])
    };
    axum::Json(json!({ "validationMessages": messages }))
}

async fn stand_in() -> (String, StandIn) {
    let s = StandIn::default();
    let app = axum::Router::new()
        .route("/mp/collect", axum::routing::post(collect))
        .route("/import", axum::routing::post(collect))
        .route("/debug/mp/collect", axum::routing::post(validate))
        .with_state(s.clone());
    let url = super::serve_stand_in(app).await;
    (url, s)
}

impl StandIn {
    /// GA4 events taken, each with the request's client id.
    fn ga_events(&self) -> Vec<(String, Value)> {
        self.taken
            .lock()
            .expect("taken")
            .iter()
            .flat_map(|(_, body)| {
                let client = body["client_id"].as_str().unwrap_or("").to_owned();
                body["events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |e| (client.clone(), e))
            })
            .collect()
    }

    /// Mixpanel events taken.
    fn mixpanel_events(&self) -> Vec<Value> {
        self.taken
            .lock()
            .expect("taken")
            .iter()
            .flat_map(|(_, body)| body.as_array().cloned().unwrap_or_default())
            .collect()
    }
}

fn said(id: &str, user: &str) -> Value {
    json!({"id": id, "bot": "shop", "type": "message", "direction": "in",
           "provider": "telegram", "user": {"id": user, "name": "Olena"}, "text": "my secret order"})
}

async fn with_integrations(
    backend: Backend,
    kept: Option<botwatch_tests::Kept>,
    ga: &str,
    mixpanel: &str,
) -> TestServer {
    let (ga, mixpanel) = (ga.to_owned(), mixpanel.to_owned());
    TestServer::start_with(backend, kept, move |c| {
        configured(c, "http://127.0.0.1:9");
        c.ga_endpoint = ga;
        c.mixpanel_endpoint = mixpanel;
    })
    .await
}

async fn activate(s: &TestServer, ga: bool, mixpanel: bool) {
    let (status, body) = s
        .put(
            "/api/v1/bots/shop/settings",
            json!({"integrations": {
                "google_analytics": {"measurement_id": "G-TEST1234", "api_secret": "ga-secret-1", "active": ga},
                "mixpanel": {"token": "mp-token-1", "active": mixpanel}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn events_go_to_both_services_in_their_shape_and_limits(backend: Backend) {
    let (ga_url, ga) = stand_in().await;
    let (mp_url, mp) = stand_in().await;
    let s = with_integrations(backend, None, &ga_url, &mp_url).await;
    // Before the integrations: never forwarded (they start from now).
    assert_eq!(s.ingest(said("before", "u0").to_string()).await.0, 202);
    s.wait_for_messages("shop", 1).await;
    activate(&s, true, true).await;
    let mut batch: Vec<Value> = (0..30).map(|n| said(&format!("a{n}"), "u1")).collect();
    batch.push(said("b0", "u2"));
    assert_eq!(s.ingest(Value::Array(batch).to_string()).await.0, 202);
    // u1: a new user, a session start and 30 messages; u2: a new user, a session
    // start and one message.
    until_true("GA4 has every event", || ga.ga_events().len() == 35).await;
    until_true("Mixpanel has every event", || {
        mp.mixpanel_events().len() == 35
    })
    .await;

    let taken = ga.taken.lock().expect("taken").clone();
    for (said, body) in &taken {
        assert!(
            said.contains("measurement_id=G-TEST1234") && said.contains("api_secret=ga-secret-1"),
            "{said}"
        );
        let events = body["events"].as_array().expect("events");
        assert!(events.len() <= 25, "at most 25 events a request");
        assert!(
            !body.to_string().contains("secret order"),
            "never a message's text"
        );
        assert!(!body.to_string().contains("Olena"), "never a name");
    }
    let names = |client: &str| -> Vec<String> {
        ga.ga_events()
            .into_iter()
            .filter(|(c, _)| c == client)
            .map(|(_, e)| e["name"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let clients: std::collections::BTreeSet<String> =
        ga.ga_events().into_iter().map(|(c, _)| c).collect();
    assert_eq!(clients.len(), 2, "one pseudonymous client per user");
    let u2 = clients
        .iter()
        .find(|c| names(c).len() == 3)
        .expect("u2's client");
    assert_eq!(
        names(u2),
        ["bot_new_user", "bot_session_start", "bot_message_in"]
    );
    let first = &ga.ga_events()[0].1;
    assert!(first["params"]["session_id"].is_string());
    assert_eq!(first["params"]["engagement_time_msec"], 100);
    assert!(
        first["timestamp_micros"]
            .as_i64()
            .is_some_and(|t| t > 1_700_000_000_000_000)
    );

    let events = mp.mixpanel_events();
    let ids: std::collections::BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["properties"]["$insert_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 35, "one $insert_id each");
    assert!(
        events
            .iter()
            .all(|e| e["properties"]["distinct_id"] == "u1"
                || e["properties"]["distinct_id"] == "u2")
    );
    // What Settings → Other shows.
    let (status, integrations) = s.get("/api/v1/bots/shop/integrations").await;
    assert_eq!(status, 200, "{integrations}");
    assert_eq!(
        integrations["google_analytics"]["pending"], 0,
        "{integrations}"
    );
    assert_eq!(
        integrations["google_analytics"]["sent"], 35,
        "{integrations}"
    );
    assert_eq!(integrations["google_analytics"]["active"], true);
    assert_eq!(integrations["mixpanel"]["last_ok"], true);
    assert!(
        !integrations.to_string().contains("ga-secret-1"),
        "no secret shown"
    );
    // A test event: GA4's validation answer, Mixpanel's import.
    for service in ["google_analytics", "mixpanel"] {
        let (status, answer) = s
            .post(
                &format!("/api/v1/bots/shop/integrations/{service}/test"),
                json!({}),
            )
            .await;
        assert_eq!(
            (status, &answer["ok"]),
            (200, &json!(true)),
            "{service}: {answer}"
        );
    }
    let auth = mp.taken.lock().expect("taken")[0].0.clone();
    assert!(
        auth.contains("strict=1") && auth.contains("Basic "),
        "{auth}"
    );
    s.stop().await;
}

async fn failures_are_tried_again_and_nothing_arrives_twice(backend: Backend) {
    let (ga_url, ga) = stand_in().await;
    let (mp_url, mp) = stand_in().await;
    let s = with_integrations(backend, None, &ga_url, &mp_url).await;
    activate(&s, true, true).await;
    // GA: two 500s, then a 429 that asks for a second; Mixpanel: a 429 without a time.
    *ga.failures.lock().expect("failures") = vec![(500, None), (500, None), (429, Some(1))];
    *mp.failures.lock().expect("failures") = vec![(429, None)];
    assert_eq!(s.ingest(said("r1", "u1").to_string()).await.0, 202);
    tokio::time::timeout(Duration::from_secs(20), async {
        while ga.ga_events().len() < 3 || mp.mixpanel_events().len() < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("taken after the failures");
    assert_eq!(*ga.refused.lock().expect("refused"), 3);
    assert_eq!(*mp.refused.lock().expect("refused"), 1);

    // A restart: what was forwarded is not forwarded again; what comes next is.
    let kept = s.stop_keeping().await;
    let s = with_integrations(backend, Some(kept), &ga_url, &mp_url).await;
    assert_eq!(s.ingest(said("r2", "u1").to_string()).await.0, 202);
    until_true("the new message forwarded", || {
        ga.ga_events().len() == 4 && mp.mixpanel_events().len() == 4
    })
    .await;
    // The same event offered again (a bot's retry): counted once, forwarded once.
    assert_eq!(s.ingest(said("r2", "u1").to_string()).await.0, 202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!((ga.ga_events().len(), mp.mixpanel_events().len()), (4, 4));
    s.stop().await;
}

async fn turning_active_off_stops_sending_at_once(backend: Backend) {
    let (ga_url, ga) = stand_in().await;
    let (mp_url, _mp) = stand_in().await;
    let s = with_integrations(backend, None, &ga_url, &mp_url).await;
    activate(&s, true, false).await;
    *ga.down.lock().expect("down") = true;
    assert_eq!(s.ingest(said("o1", "u1").to_string()).await.0, 202);
    until_true("GA tried", || *ga.refused.lock().expect("refused") >= 1).await;
    let (_, integrations) = s.get("/api/v1/bots/shop/integrations").await;
    assert_eq!(
        integrations["google_analytics"]["pending"], 1,
        "{integrations}"
    );
    assert_eq!(integrations["google_analytics"]["last_ok"], false);
    assert!(
        integrations["google_analytics"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("503")),
        "{integrations}"
    );
    activate(&s, false, false).await;
    *ga.down.lock().expect("down") = false;
    assert_eq!(s.ingest(said("o2", "u1").to_string()).await.0, 202);
    // The retry waits a second or two: long enough for one to come, had it not stopped.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        ga.ga_events().is_empty(),
        "nothing sent after Active went off"
    );
    // On again: what was held back goes out (nothing dropped).
    activate(&s, true, false).await;
    until_true("sent once on again", || ga.ga_events().len() == 4).await;
    s.stop().await;
}

/// History from before an integration was on goes out when asked for, after what is
/// live, once: Mixpanel takes any age, GA4 72 hours at most (older ones are skipped).
async fn a_backfill_sends_the_history_once(backend: Backend) {
    let (ga_url, ga) = stand_in().await;
    let (mp_url, mp) = stand_in().await;
    let s = with_integrations(backend, None, &ga_url, &mp_url).await;
    let day = |days: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let mut old = said("h1", "u1");
    old["ts"] = json!(day(0));
    // Five days back: outside GA's 72 hours, and far apart from the others (its own
    // session).
    let mut older = said("h0", "u1");
    older["ts"] = json!(day(5));
    assert_eq!(s.ingest(json!([older, old]).to_string()).await.0, 202);
    s.wait_for_messages("shop", 2).await;
    activate(&s, true, true).await;
    assert_eq!(s.ingest(said("live", "u2").to_string()).await.0, 202);
    until_true("the live message forwarded", || {
        ga.ga_events().len() == 3 && mp.mixpanel_events().len() == 3
    })
    .await;
    let from = (chrono::Utc::now() - chrono::Duration::days(10))
        .format("%Y-%m-%d")
        .to_string();
    for service in ["google_analytics", "mixpanel"] {
        let (status, body) = s
            .post(
                &format!("/api/v1/bots/shop/integrations/{service}/backfill"),
                json!({ "from": from }),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    // Mixpanel: h0 (new user, session, message) and h1 (a session, a message).
    until_true("the history in Mixpanel", || {
        mp.mixpanel_events().len() == 8
    })
    .await;
    // GA: h1's session start and message; h0's three are too old.
    until_true("the history in GA4", || ga.ga_events().len() == 5).await;
    super::until(&s, "/api/v1/bots/shop/integrations", |i| {
        i["google_analytics"]["skipped"] == 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        (ga.ga_events().len(), mp.mixpanel_events().len()),
        (5, 8),
        "once"
    );
    let (_, integrations) = s.get("/api/v1/bots/shop/integrations").await;
    assert_eq!(
        integrations["google_analytics"]["skipped"], 3,
        "{integrations}"
    );
    s.stop().await;
}

/// Mixpanel's strict import refuses one record of a batch and takes the rest: the
/// refused one is counted as skipped and forwarding goes on (it is not retried
/// forever, holding up everything after it).
async fn a_record_mixpanel_refuses_is_skipped_not_retried_forever(backend: Backend) {
    let (ga_url, _ga) = stand_in().await;
    let (mp_url, mp) = stand_in().await;
    let s = with_integrations(backend, None, &ga_url, &mp_url).await;
    activate(&s, false, true).await;
    *mp.refuse_first_record.lock().expect("refuse") = true;
    assert_eq!(s.ingest(said("p1", "u1").to_string()).await.0, 202);
    until_true("the rest of the batch taken", || {
        mp.mixpanel_events().len() == 2
    })
    .await;
    assert_eq!(s.ingest(said("p2", "u1").to_string()).await.0, 202);
    until_true("what came after forwarded", || {
        mp.mixpanel_events().len() == 3
    })
    .await;
    let (_, integrations) = s.get("/api/v1/bots/shop/integrations").await;
    assert_eq!(
        (
            &integrations["mixpanel"]["sent"],
            &integrations["mixpanel"]["skipped"]
        ),
        (&json!(3), &json!(1)),
        "{integrations}"
    );
    s.stop().await;
}

both_backends!(
    a_record_mixpanel_refuses_is_skipped_not_retried_forever,
    a_backfill_sends_the_history_once,
    events_go_to_both_services_in_their_shape_and_limits,
    failures_are_tried_again_and_nothing_arrives_twice,
    turning_active_off_stops_sending_at_once,
);
