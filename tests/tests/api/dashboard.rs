//! The dashboard comes from the binary: its pages at any of their addresses, its built
//! files with the right types and caching, and the API's 404s left as they were.

use botwatch_tests::{Backend, TestServer};
use reqwest::header;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_by_the_binary_at_every_page_address() {
    let s = TestServer::start(Backend::Embedded).await;
    let mut index = None;
    for path in [
        "/",
        "/login",
        "/bots/shop",
        "/bots/shop/dialogs/%D0%BE%D0%BB%D0%B5%D0%BD%D0%B0",
        "/bots/shop/statistics/messages",
    ] {
        let r = s.client.get(s.url(path)).send().await.expect("get");
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(h[header::CONTENT_TYPE], "text/html", "{path}");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache", "{path}");
        assert!(
            h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("csp")
                .contains("script-src 'self'"),
            "{path}"
        );
        let body = r.text().await.expect("body");
        assert!(body.contains(r#"<div id="app">"#), "{path}: {body}");
        index = Some(body);
    }

    // The script the page loads: JavaScript, cached for good, revalidated by its tag.
    let index = index.expect("index");
    let script = index
        .split('"')
        .find(|p| p.starts_with("/assets/") && p.ends_with(".js"))
        .unwrap_or_else(|| panic!("no script in {index}"));
    let r = s.client.get(s.url(script)).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/javascript");
    assert_eq!(
        r.headers()[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    let etag = r.headers()[header::ETAG].clone();
    assert!(r.bytes().await.expect("body").len() > 10_000);
    let again = s
        .client
        .get(s.url(script))
        .header(header::IF_NONE_MATCH, etag)
        .send()
        .await
        .expect("get");
    assert_eq!(again.status(), 304);

    // A missing built file is a 404, never the page (a script tag would get HTML).
    let r = s
        .client
        .get(s.url("/assets/missing-0000.js"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_paths_and_other_methods_still_answer_404_json() {
    let s = TestServer::start(Backend::Embedded).await;
    for (method, path) in [
        (reqwest::Method::GET, "/api/v1/nothing-here"),
        (reqwest::Method::POST, "/bots/shop"),
        (reqwest::Method::DELETE, "/"),
    ] {
        let r = s
            .client
            .request(method.clone(), s.url(path))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404, "{method} {path}");
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"], "not_found", "{method} {path}");
    }
}
