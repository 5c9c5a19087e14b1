//! `GET /api/v1/openapi.json` describes exactly the routes the router has, each with
//! who may call it, and every schema it refers to is in the document.

use botwatch_server::routes;
use botwatch_tests::{Backend, TestServer};
use serde_json::Value;

/// Every `$ref` in a JSON value.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route_and_only_those() {
    let s = TestServer::start(Backend::Embedded).await;
    // Public: no credentials.
    let response = s
        .client
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.expect("json");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );

    let mut described = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            described.push((method.to_uppercase(), path.clone()));
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses
                    .keys()
                    .any(|code| code.starts_with('2') || code == "101"),
                "{method} {path} has no success answer"
            );
            let security = operation["security"].as_array().expect("security stated");
            let route = routes::all()
                .into_iter()
                .find(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method));
            if let Some(route) = route {
                let public = route.access == botwatch_server::auth::Access::Public;
                assert_eq!(
                    security.is_empty(),
                    public,
                    "{method} {path}: security {security:?}"
                );
            }
        }
    }
    let mut table: Vec<(String, String)> = routes::all()
        .into_iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    described.sort();
    table.sort();
    assert_eq!(
        described, table,
        "the document's operations are the router's routes"
    );

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("ref {r}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} is not in the document"
        );
    }
    s.stop().await;
}

/// A query string the handlers cannot read (a parameter given twice) is refused like
/// every other bad parameter: 400 with the API's JSON error, as the document says, not
/// the plain text of axum's `Query`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_query_string_gets_the_apis_json_error() {
    let s = TestServer::start(Backend::Embedded).await;
    for path in [
        "/api/v1/audit?limit=1&limit=2",
        "/api/v1/bots/shop/dialogs?mode=auto&mode=manual",
        "/api/v1/bots/shop/stats?from=2026-01-01&to=2026-01-02&to=2026-01-03",
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_parameter")),
            "{path}: {body}"
        );
    }
    s.stop().await;
}

/// Every page size the document states is the server's: its maximum is taken, one more
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_page_limits_are_the_servers() {
    let s = TestServer::start(Backend::Embedded).await;
    let (_, doc) = s.get("/api/v1/openapi.json").await;
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let Some(parameters) = item["get"]["parameters"].as_array() else {
            continue;
        };
        let Some(limit) = parameters.iter().find(|p| p["name"] == "limit") else {
            continue;
        };
        let max = limit["schema"]["maximum"].as_u64().expect("a maximum");
        // A bot and a user that do not exist: the limit is read before they are looked up.
        let path = path.replace("{bot}", "nobody").replace("{user}", "nobody");
        let (taken, _) = s.get(&format!("{path}?limit={max}")).await;
        assert_ne!(taken, 400, "{path}?limit={max}");
        let (refused, _) = s.get(&format!("{path}?limit={}", max + 1)).await;
        assert_eq!(refused, 400, "{path}?limit={}", max + 1);
        checked += 1;
    }
    assert_eq!(checked, 5, "audit, dialogs, messages, top messages, users");
    s.stop().await;
}
