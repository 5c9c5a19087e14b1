//! Accounts end to end: the role × route matrix over every route of the router, login,
//! logout, CSRF, throttling, scoped tokens, and sessions ending live connections.

use std::time::Duration;

use botwatch_accounts::{Role, Scope, Token, User};
use botwatch_server::routes;
use botwatch_tests::{Backend, TestServer};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const PASSWORD: &str = "a long enough password";

async fn add_user(s: &TestServer, name: &str, role: Role) {
    let password = botwatch_accounts::hash_password(PASSWORD).expect("hash");
    s.state
        .auth
        .accounts()
        .add_user(User::new(name, role, password))
        .await
        .expect("add user");
}

async fn add_token(s: &TestServer, bot: &str, scope: Scope) -> String {
    let (token, secret) = Token::issue(bot, scope).expect("token");
    s.state
        .auth
        .accounts()
        .add_token(token)
        .await
        .expect("add token");
    secret
}

/// A logged-in browser: its cookie and CSRF value.
#[derive(Clone, Debug)]
struct Browser {
    cookie: String,
    csrf: String,
}

async fn login_as(s: &TestServer, name: &str, password: &str) -> reqwest::Response {
    s.client
        .post(s.url("/api/v1/session"))
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .expect("login request")
}

async fn login(s: &TestServer, name: &str) -> Browser {
    let response = login_as(s, name, PASSWORD).await;
    assert_eq!(response.status(), 200, "login of {name}");
    browser_of(response).await
}

/// The browser a successful login's answer makes: its cookie and CSRF value.
async fn browser_of(response: reqwest::Response) -> Browser {
    let cookie = response
        .headers()
        .get("set-cookie")
        .expect("a cookie")
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    let body: Value = response.json().await.expect("json");
    Browser {
        cookie,
        csrf: body["csrf"].as_str().expect("csrf").to_string(),
    }
}

/// Who sends a request in the matrix.
#[derive(Clone, Debug)]
enum Who {
    Anonymous,
    Browser(Browser),
    Bearer(String),
}

async fn request(
    s: &TestServer,
    who: &Who,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = s.client.request(method, s.url(path));
    if let Some(body) = body {
        r = r.json(&body);
    }
    r = match who {
        Who::Anonymous => r,
        Who::Browser(b) => r
            .header("cookie", &b.cookie)
            .header("x-botwatch-csrf", &b.csrf),
        Who::Bearer(token) => r.bearer_auth(token),
    };
    let response = r.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn event(bot: &str, id: &str) -> Value {
    json!({"id": id, "bot": bot, "type": "message", "direction": "in", "provider": "web",
           "user": {"id": "u1", "name": "Ann"}, "text": "hi"})
}

/// The expected status of each route for anonymous, viewer, operator, admin, and an
/// admin-scoped token of another bot — stated here independently of the server's table.
/// Requests that get past the access check are valid ones, so they succeed.
fn expected() -> Vec<(Method, &'static str, [u16; 5])> {
    use Method as M;
    // What reading a bot's data answers.
    const BOT_READ: [u16; 5] = [401, 200, 200, 200, 403];
    vec![
        (M::GET, "/healthz", [200, 200, 200, 200, 200]),
        (M::GET, "/readyz", [200, 200, 200, 200, 200]),
        (M::GET, "/metrics", [200, 200, 200, 200, 200]),
        (M::GET, "/api/v1/openapi.json", [200, 200, 200, 200, 200]),
        (M::GET, "/api/v1/session", [401, 200, 200, 200, 200]),
        (M::POST, "/api/v1/events", [401, 403, 403, 202, 403]),
        // Past the access check, a plain GET is not a WebSocket upgrade.
        (M::GET, "/api/v1/live", [401, 400, 400, 400, 400]),
        (M::GET, "/api/v1/bots", [401, 200, 200, 200, 200]),
        (M::GET, "/api/v1/bots/{bot}/stats", BOT_READ),
        (M::GET, "/api/v1/bots/{bot}/top-messages", BOT_READ),
        (M::GET, "/api/v1/bots/{bot}/users", BOT_READ),
        (M::GET, "/api/v1/bots/{bot}/users/{user}", BOT_READ),
        (M::GET, "/api/v1/bots/{bot}/users.csv", BOT_READ),
        (M::GET, "/api/v1/bots/{bot}/roles", BOT_READ),
        (M::GET, "/api/v1/bots/{bot}/tags", BOT_READ),
        (M::GET, "/api/v1/bots/{bot}/broadcasts", BOT_READ),
        // No broadcast has this id.
        (
            M::GET,
            "/api/v1/bots/{bot}/broadcasts/{id}",
            [401, 404, 404, 404, 403],
        ),
        // Editing the audience: operators and admins.
        (
            M::PATCH,
            "/api/v1/bots/{bot}/users/{user}",
            [401, 403, 200, 200, 403],
        ),
        (
            M::POST,
            "/api/v1/bots/{bot}/users/bulk",
            [401, 403, 200, 200, 403],
        ),
        (
            M::POST,
            "/api/v1/bots/{bot}/roles",
            [401, 403, 201, 201, 403],
        ),
        (
            M::POST,
            "/api/v1/bots/{bot}/tags",
            [401, 403, 201, 201, 403],
        ),
        (
            M::PATCH,
            "/api/v1/bots/{bot}/roles/{name}",
            [401, 403, 200, 200, 403],
        ),
        (
            M::PATCH,
            "/api/v1/bots/{bot}/tags/{name}",
            [401, 403, 200, 200, 403],
        ),
        // The operator deletes it; then it is gone for the admin.
        (
            M::DELETE,
            "/api/v1/bots/{bot}/roles/{name}",
            [401, 403, 204, 404, 403],
        ),
        (
            M::DELETE,
            "/api/v1/bots/{bot}/tags/{name}",
            [401, 403, 204, 404, 403],
        ),
        (
            M::POST,
            "/api/v1/bots/{bot}/broadcasts",
            [401, 403, 201, 201, 403],
        ),
        (
            M::DELETE,
            "/api/v1/bots/{bot}/broadcasts/{id}",
            [401, 403, 404, 404, 403],
        ),
        (M::GET, "/api/v1/bots/{bot}/dialogs", BOT_READ),
        (M::GET, "/api/v1/bots/{bot}/dialogs/{user}", BOT_READ),
        (
            M::GET,
            "/api/v1/bots/{bot}/dialogs/{user}/messages",
            BOT_READ,
        ),
        (M::GET, "/api/v1/bots/{bot}/settings", BOT_READ),
        (
            M::PUT,
            "/api/v1/bots/{bot}/dialogs/{user}/mode",
            [401, 403, 200, 200, 403],
        ),
        // After the switch to Manual above, so an operator's message is taken.
        (
            M::POST,
            "/api/v1/bots/{bot}/dialogs/{user}/messages",
            [401, 403, 202, 202, 403],
        ),
        // A bot's hand-off: the ingest right (admins have it; operators do not).
        (
            M::POST,
            "/api/v1/bots/{bot}/dialogs/{user}/handoff",
            [401, 403, 403, 202, 403],
        ),
        // Public: the file's id is the capability (no file has this one).
        (M::GET, "/api/v1/files/{id}", [404, 404, 404, 404, 404]),
        // Telegram's webhook: only its secret header admits a call (none is set here).
        (
            M::POST,
            "/channels/telegram/{bot}/webhook",
            [401, 401, 401, 401, 401],
        ),
        // The Bot API proxy: only the bot's token admits a call (none is set here).
        (
            M::POST,
            "/channels/telegram/{bot}/api/{bot_token}/{method_name}",
            [401, 401, 401, 401, 401],
        ),
        (
            M::GET,
            "/channels/telegram/{bot}/api/{bot_token}/{method_name}",
            [401, 401, 401, 401, 401],
        ),
        // The web chat is public, for bots that enable it (this one does not).
        (M::GET, "/chat/assets/{file}", [404, 404, 404, 404, 404]),
        (M::GET, "/chat/{bot}", [404, 404, 404, 404, 404]),
        // A plain GET without the chat user's id is no chat's upgrade.
        (M::GET, "/chat/{bot}/live", [400, 400, 400, 400, 400]),
        // Read access; no Telegram token is set here, so no file can be fetched.
        (
            M::GET,
            "/channels/telegram/{bot}/files/{file_id}",
            [401, 404, 404, 404, 403],
        ),
        (
            M::PUT,
            "/api/v1/bots/{bot}/settings",
            [401, 403, 403, 200, 403],
        ),
        (M::GET, "/api/v1/bots/{bot}/integrations", BOT_READ),
        // Admins; the bot has no GA4 settings, so the test is refused for that.
        (
            M::POST,
            "/api/v1/bots/{bot}/integrations/{service}/test",
            [401, 403, 403, 400, 403],
        ),
        (
            M::POST,
            "/api/v1/bots/{bot}/integrations/{service}/backfill",
            [401, 403, 403, 202, 403],
        ),
        (M::GET, "/api/v1/audit", [401, 403, 403, 200, 403]),
        // Last: they end or replace the session they are sent with.
        (M::DELETE, "/api/v1/session", [401, 204, 204, 204, 403]),
        (M::POST, "/api/v1/session", [200, 200, 200, 200, 200]),
    ]
}

fn body_for(method: &Method, path: &str) -> Option<Value> {
    match (method.as_str(), path) {
        ("POST", "/api/v1/events") => Some(event("helpdesk", &uuid::Uuid::new_v4().to_string())),
        ("PUT", "/api/v1/bots/{bot}/dialogs/{user}/mode") => Some(json!({"mode": "manual"})),
        ("POST", "/api/v1/bots/{bot}/dialogs/{user}/messages") => {
            Some(json!({"text": "An operator here"}))
        }
        ("PUT", _) => Some(json!({"timezone": "Europe/Kyiv"})),
        ("PATCH", "/api/v1/bots/{bot}/users/{user}") => Some(json!({"subscriber": true})),
        ("POST", "/api/v1/bots/{bot}/users/bulk") => {
            Some(json!({"ids": ["u1"], "set": {"subscriber": true}}))
        }
        ("POST", "/api/v1/bots/{bot}/roles" | "/api/v1/bots/{bot}/tags") => {
            Some(json!({"name": uuid::Uuid::new_v4().to_string()}))
        }
        // A rename to the name it has.
        ("PATCH", _) => Some(json!({"name": "matrix-label"})),
        ("POST", "/api/v1/bots/{bot}/broadcasts") => Some(json!({"to": "all", "text": "News"})),
        ("POST", "/api/v1/bots/{bot}/integrations/{service}/backfill") => {
            Some(json!({"from": "2026-11-01"}))
        }
        ("POST", "/api/v1/session") => Some(json!({"username": "matrix", "password": PASSWORD})),
        _ => None,
    }
}

async fn every_route_answers_each_role_as_the_matrix_says(backend: Backend) {
    let s = TestServer::start(backend).await;
    let mut table: Vec<(String, String)> = routes::all()
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let mut stated: Vec<(String, String)> = expected()
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    table.sort();
    stated.sort();
    assert_eq!(
        table, stated,
        "every route of the router needs a line in this test's matrix"
    );

    for (name, role) in [
        ("viewer", Role::Viewer),
        ("operator", Role::Operator),
        ("admin", Role::Admin),
        ("matrix", Role::Viewer),
    ] {
        add_user(&s, name, role).await;
    }
    let other_bot = add_token(&s, "other-bot", Scope::Admin).await;
    let (status, _) = s.ingest(event("helpdesk", "seed").to_string()).await;
    assert_eq!(status, 202);
    s.wait_for_messages("helpdesk", 1).await;
    for kind in ["roles", "tags"] {
        let path = format!("/api/v1/bots/helpdesk/{kind}");
        let (status, body) = s.post(&path, json!({"name": "matrix-label"})).await;
        assert_eq!(status, 201, "{body}");
    }

    let principals = [
        ("anonymous", Who::Anonymous),
        ("viewer", Who::Browser(login(&s, "viewer").await)),
        ("operator", Who::Browser(login(&s, "operator").await)),
        ("admin", Who::Browser(login(&s, "admin").await)),
        ("other bot's token", Who::Bearer(other_bot)),
    ];
    let mut wrong = Vec::new();
    for (method, template, statuses) in expected() {
        let mut path = template
            .replace("{bot}", "helpdesk")
            .replace("{user}", "u1")
            .replace("{name}", "matrix-label")
            .replace("{service}", "google_analytics")
            .replace("{id}", "0123456789abcdef0123456789abcdef");
        if template.ends_with("/stats") {
            path.push_str("?from=2026-11-01&to=2026-11-30");
        }
        for ((label, who), want) in principals.iter().zip(statuses) {
            let audited_before = audit_entries(&s).await;
            let (got, body) =
                request(&s, who, method.clone(), &path, body_for(&method, template)).await;
            if got != want {
                wrong.push(format!(
                    "{method} {template} as {label}: {got} (expected {want}) {body}"
                ));
            }
            // What a person does that changes something is in the audit log (the bots'
            // own traffic, ingest, is not a person's doing).
            let changed = method != Method::GET && (200..300).contains(&got);
            if changed
                && matches!(who, Who::Browser(_))
                && template != "/api/v1/events"
                && audit_entries(&s).await == audited_before
            {
                wrong.push(format!(
                    "{method} {template} as {label}: not in the audit log"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    s.stop().await;
}

async fn audit_entries(s: &TestServer) -> usize {
    s.state
        .auth
        .accounts()
        .audit_log(100_000)
        .await
        .expect("audit log")
        .len()
}

fn cookie_attributes(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get("set-cookie")
        .expect("set-cookie")
        .to_str()
        .expect("ascii")
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_string())
        .collect()
}

async fn login_sets_a_strict_cookie_and_logout_ends_the_session(backend: Backend) {
    let s = TestServer::start(backend).await;
    add_user(&s, "ann", Role::Operator).await;

    // A form posted from another site (text/plain shaped like JSON) logs nobody in.
    let form = s
        .client
        .post(s.url("/api/v1/session"))
        .header("content-type", "text/plain")
        .body(json!({"username": "ann", "password": PASSWORD, "x": "="}).to_string())
        .send()
        .await
        .expect("login");
    assert_eq!(form.status(), 415);
    assert!(form.headers().get("set-cookie").is_none());

    let wrong = login_as(&s, "ann", "not the password").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert_eq!(login_as(&s, "nobody", PASSWORD).await.status(), 401);

    let response = login_as(&s, "ann", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let attributes = cookie_attributes(&response);
    for wanted in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(
            attributes.iter().any(|a| a == wanted),
            "{wanted} in {attributes:?}"
        );
    }
    assert!(
        !attributes.iter().any(|a| a == "Secure"),
        "plain http: {attributes:?}"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["user"], "ann");
    assert_eq!(body["role"], "operator");

    // X-Forwarded-Proto from a peer that is no trusted proxy is ignored.
    let claims_tls = s
        .client
        .post(s.url("/api/v1/session"))
        .header("x-forwarded-proto", "https")
        .json(&json!({"username": "ann", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert!(!cookie_attributes(&claims_tls).iter().any(|a| a == "Secure"));

    let ann = login(&s, "ann").await;
    let (status, answer) = me(&s, &ann).await;
    assert_eq!(
        (status, &answer["user"], &answer["csrf"]),
        (200, &json!("ann"), &json!(ann.csrf))
    );

    // A new login from the same browser rotates the id: the old cookie is dead.
    let response = s
        .client
        .post(s.url("/api/v1/session"))
        .header("cookie", &ann.cookie)
        .json(&json!({"username": "ann", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 200);
    let rotated = browser_of(response).await;
    assert_ne!(rotated.cookie, ann.cookie);
    assert_eq!(
        me(&s, &ann).await.0,
        401,
        "the session before the new login has ended"
    );
    assert_eq!(me(&s, &rotated).await.0, 200, "the new one holds");

    let response = s
        .client
        .delete(s.url("/api/v1/session"))
        .header("cookie", &rotated.cookie)
        .header("x-botwatch-csrf", &rotated.csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status(), 204);
    let cleared = response
        .headers()
        .get("set-cookie")
        .expect("the cookie is cleared")
        .to_str()
        .expect("ascii");
    assert!(
        cleared.starts_with("botwatch_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert_eq!(me(&s, &rotated).await.0, 401, "logged out");
    s.stop().await;
}

async fn a_change_made_with_the_cookie_needs_the_csrf_header(backend: Backend) {
    let s = TestServer::start(backend).await;
    add_user(&s, "root", Role::Admin).await;
    let b = login(&s, "root").await;
    let put = |csrf: Option<&str>| {
        let mut r = s
            .client
            .put(s.url("/api/v1/bots/helpdesk/settings"))
            .header("cookie", &b.cookie)
            .json(&json!({"name": "Help desk"}));
        if let Some(csrf) = csrf {
            r = r.header("x-botwatch-csrf", csrf);
        }
        r.send()
    };
    let missing = put(None).await.expect("put");
    assert_eq!(missing.status(), 403);
    let body: Value = missing.json().await.expect("json");
    assert_eq!(body["error"], "csrf");
    assert_eq!(
        put(Some("0123456789abcdef0123456789abcdef"))
            .await
            .expect("put")
            .status(),
        403
    );
    assert_eq!(put(Some(&b.csrf)).await.expect("put").status(), 200);
    // Reading needs no CSRF value; a bearer token needs none either.
    let read = s
        .client
        .get(s.url("/api/v1/bots/helpdesk/settings"))
        .header("cookie", &b.cookie)
        .send()
        .await
        .expect("get");
    assert_eq!(read.status(), 200);
    let (status, _) = s
        .put("/api/v1/bots/helpdesk/settings", json!({"name": "Desk"}))
        .await;
    assert_eq!(status, 200);

    // The change is in the audit log, with who made it and which fields, not values.
    let (status, log) = request(&s, &Who::Browser(b), Method::GET, "/api/v1/audit", None).await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log[0]["actor"], "admin-token");
    assert_eq!(log[1]["actor"], "user:root");
    assert_eq!(log[1]["action"], "settings.update");
    assert_eq!(log[1]["bot"], "helpdesk");
    assert_eq!(log[1]["detail"], json!({"fields": ["name"]}));
    s.stop().await;
}

/// Behind a trusted proxy the client is the one it names: throttling counts per real
/// client, and a proxy that terminates TLS gets Secure cookies. A client that names
/// itself in X-Forwarded-For is not believed.
async fn behind_a_trusted_proxy_the_forwarded_client_counts(backend: Backend) {
    let login_from = |s: &TestServer, forwarded_for: &str, user: &str, password: &str| {
        s.client
            .post(s.url("/api/v1/session"))
            .header("x-forwarded-for", forwarded_for)
            .header("x-forwarded-proto", "https")
            .json(&json!({"username": user, "password": password}))
            .send()
    };
    let s = TestServer::start_with(backend, None, |c| {
        c.trusted_proxies = vec!["127.0.0.0/8".into()];
        c.logins.first_delay = Duration::from_millis(1);
        c.logins.refuse_after = 3;
    })
    .await;
    add_user(&s, "ann", Role::Viewer).await;
    let ok = login_from(&s, "203.0.113.9", "ann", PASSWORD)
        .await
        .expect("login");
    assert_eq!(ok.status(), 200);
    assert!(cookie_attributes(&ok).iter().any(|a| a == "Secure"));
    for user in ["x1", "x2", "x3"] {
        let r = login_from(&s, "198.51.100.1", user, "guess guess guess")
            .await
            .expect("login");
        assert_eq!(r.status(), 401);
    }
    let r = login_from(&s, "198.51.100.1", "x4", "guess guess guess")
        .await
        .expect("login");
    assert_eq!(r.status(), 429, "that client is refused");
    let r = login_from(&s, "203.0.113.9", "ann", PASSWORD)
        .await
        .expect("login");
    assert_eq!(
        r.status(),
        200,
        "another client behind the same proxy is not"
    );
    s.stop().await;

    // Without trust, forwarded addresses are the client's own claim and count for nothing.
    let s = TestServer::start_with(backend, None, |c| {
        c.logins.first_delay = Duration::from_millis(1);
        c.logins.refuse_after = 3;
    })
    .await;
    for (n, user) in ["x1", "x2", "x3"].iter().enumerate() {
        let r = login_from(&s, &format!("198.51.100.{n}"), user, "guess guess guess")
            .await
            .expect("login");
        assert_eq!(r.status(), 401);
    }
    let r = login_from(&s, "198.51.100.99", "x4", "guess guess guess")
        .await
        .expect("login");
    assert_eq!(r.status(), 429, "a new X-Forwarded-For buys no new guesses");
    s.stop().await;
}

async fn failed_logins_are_refused_after_a_while(backend: Backend) {
    let s = TestServer::start_with(backend, None, |c| {
        c.logins.first_delay = Duration::from_millis(1);
        c.logins.refuse_after = 5;
    })
    .await;
    add_user(&s, "ann", Role::Viewer).await;
    for _ in 0..5 {
        assert_eq!(login_as(&s, "ann", "guess guess guess").await.status(), 401);
    }
    let refused = login_as(&s, "ann", PASSWORD).await;
    assert_eq!(
        refused.status(),
        429,
        "even the right password, until the window ends"
    );
    assert!(refused.headers().get("retry-after").is_some());
    // The address is throttled too: guessing other names from it is refused as well.
    assert_eq!(login_as(&s, "bob", "guess guess guess").await.status(), 429);
    s.stop().await;
}

async fn tokens_act_only_for_their_bot_and_scope(backend: Backend) {
    let s = TestServer::start(backend).await;
    let ingest = add_token(&s, "shop", Scope::Ingest).await;
    let read = add_token(&s, "shop", Scope::Read).await;
    let post = |token: &str, bot: &str| {
        s.client
            .post(s.url("/api/v1/events"))
            .bearer_auth(token)
            .json(&event(bot, &uuid::Uuid::new_v4().to_string()))
            .send()
    };
    assert_eq!(post(&ingest, "shop").await.expect("post").status(), 202);
    assert_eq!(post(&ingest, "helpdesk").await.expect("post").status(), 403);
    assert_eq!(post(&read, "shop").await.expect("post").status(), 403);
    s.wait_for_messages("shop", 1).await;
    let get = |token: &str, path: &str| s.client.get(s.url(path)).bearer_auth(token).send();
    assert_eq!(
        get(&read, "/api/v1/bots/shop/users")
            .await
            .expect("get")
            .status(),
        200
    );
    assert_eq!(
        get(&ingest, "/api/v1/bots/shop/users")
            .await
            .expect("get")
            .status(),
        403
    );
    assert_eq!(
        get(&read, "/api/v1/bots/helpdesk/users")
            .await
            .expect("get")
            .status(),
        403
    );
    let bots: Value = get(&read, "/api/v1/bots")
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(bots, json!([{"id": "shop"}]));
    assert_eq!(
        get("bwt_not-a-token", "/api/v1/bots")
            .await
            .expect("get")
            .status(),
        401
    );
    // Revoked: refused at once.
    let id = s
        .state
        .auth
        .accounts()
        .tokens()
        .await
        .expect("tokens")
        .into_iter()
        .find(|t| t.scope == Scope::Read)
        .expect("read token")
        .id;
    assert!(
        s.state
            .auth
            .accounts()
            .remove_token(&id)
            .await
            .expect("remove")
    );
    assert_eq!(get(&read, "/api/v1/bots").await.expect("get").status(), 401);
    s.stop().await;
}

/// The close code a live connection ends with (`None` when it ends without a close
/// frame); fails when it stays open for 5 s.
async fn close_code(ws: &mut Socket) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the connection closes within 5 s")
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A live connection opened with a browser's session cookie.
async fn live_with_cookie(
    s: &TestServer,
    cookie: &str,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{}/api/v1/live", s.addr)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("cookie", HeaderValue::from_str(cookie).expect("header"));
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

/// Logs a browser out; the status.
async fn logout(s: &TestServer, b: &Browser) -> u16 {
    request(
        s,
        &Who::Browser(b.clone()),
        Method::DELETE,
        "/api/v1/session",
        None,
    )
    .await
    .0
}

async fn a_live_connection_ends_with_its_session(backend: Backend) {
    let s = TestServer::start(backend).await;
    add_user(&s, "ann", Role::Viewer).await;
    // With the session cookie the upgrade is accepted; ending the session closes it.
    let first = login(&s, "ann").await;
    let mut ws = live_with_cookie(&s, &first.cookie)
        .await
        .expect("upgrade with the cookie");
    assert_eq!(logout(&s, &first).await, 204);
    assert_eq!(close_code(&mut ws).await, Some(1008));
    assert!(
        live_with_cookie(&s, &first.cookie).await.is_err(),
        "the ended session cannot connect again"
    );

    // A password change ends the user's sessions the same way.
    let second = login(&s, "ann").await;
    let mut ws = live_with_cookie(&s, &second.cookie).await.expect("upgrade");
    let accounts = s.state.auth.accounts();
    let mut ann = accounts.user("ann").await.expect("user").expect("ann");
    ann.set_password(botwatch_accounts::hash_password("another long password").expect("hash"));
    accounts.update_user(ann).await.expect("update");
    assert_eq!(close_code(&mut ws).await, Some(1008));
    assert_eq!(me(&s, &second).await.0, 401);
    s.stop().await;
}

/// `GET /api/v1/session` as a browser: the status and the answer.
async fn me(s: &TestServer, b: &Browser) -> (u16, Value) {
    request(
        s,
        &Who::Browser(b.clone()),
        Method::GET,
        "/api/v1/session",
        None,
    )
    .await
}

/// A session ends when it is not used for the idle time, and at its absolute limit even
/// when in use.
async fn sessions_end_when_idle_or_too_old(backend: Backend) {
    let s = TestServer::start_with(backend, None, |c| {
        c.sessions.idle = Duration::from_millis(1200);
        c.sessions.absolute = Duration::from_secs(4);
    })
    .await;
    add_user(&s, "ann", Role::Viewer).await;

    // Used every 300 ms for 2.4 s (twice the idle time): still valid.
    let used = login(&s, "ann").await;
    for _ in 0..8 {
        assert_eq!(me(&s, &used).await.0, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Left alone past the idle time: ended.
    let idle = login(&s, "ann").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(me(&s, &idle).await.0, 401, "idle");
    // In use all along, but older than the absolute limit: ended.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!(me(&s, &used).await.0, 401, "past the absolute limit");
    s.stop().await;
}

/// Failed logins beyond the first few are answered slowly: guessing gets slow long
/// before it is refused.
async fn failed_logins_slow_down(backend: Backend) {
    let s = TestServer::start_with(backend, None, |c| {
        c.logins.slow_after = 2;
        c.logins.first_delay = Duration::from_millis(400);
    })
    .await;
    add_user(&s, "ann", Role::Viewer).await;
    for _ in 0..2 {
        assert_eq!(login_as(&s, "ann", "guess guess guess").await.status(), 401);
    }
    let started = std::time::Instant::now();
    assert_eq!(login_as(&s, "ann", "guess guess guess").await.status(), 401);
    let slowed = started.elapsed();
    assert!(
        slowed >= Duration::from_millis(400),
        "the third failure took {slowed:?}"
    );
    // The right password, still within the window: slowed too. It starts the user's
    // count afresh, not the address's: a login of one's own does not buy more guesses.
    let started = std::time::Instant::now();
    assert_eq!(login_as(&s, "ann", PASSWORD).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(800));
    add_user(&s, "bob", Role::Viewer).await;
    let started = std::time::Instant::now();
    assert_eq!(login_as(&s, "bob", "guess guess guess").await.status(), 401);
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "the address still counts"
    );
    s.stop().await;
}

/// Sessions are kept in the storage: they survive a restart of the server.
async fn a_session_survives_a_restart(backend: Backend) {
    let s = TestServer::start(backend).await;
    add_user(&s, "ann", Role::Viewer).await;
    let ann = login(&s, "ann").await;
    let kept = s.stop_keeping().await;
    let s = TestServer::start_with(backend, Some(kept), |_| {}).await;
    let (status, answer) = me(&s, &ann).await;
    assert_eq!((status, &answer["user"]), (200, &json!("ann")), "{answer}");
    s.stop().await;
}

/// Two nodes on one Redis: a login on one works on the other, and a logout on one
/// closes the session's live connection on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_works_on_every_node_and_ends_on_all() {
    let a = TestServer::start(Backend::Redis).await;
    let b = a.second_node().await;
    add_user(&a, "ann", Role::Operator).await;
    let ann = login(&a, "ann").await;
    let (status, answer) = me(&b, &ann).await;
    assert_eq!((status, &answer["user"]), (200, &json!("ann")), "{answer}");

    let mut ws = live_with_cookie(&b, &ann.cookie)
        .await
        .expect("upgrade on b");
    assert_eq!(logout(&a, &ann).await, 204);
    assert_eq!(close_code(&mut ws).await, Some(1008));
    assert_eq!(me(&b, &ann).await.0, 401);
    b.stop().await;
    a.stop().await;
}

/// A CSP without inline script, nosniff, no framing, no referrer — on pages, API
/// answers and errors alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let s = TestServer::start(Backend::Embedded).await;
    for path in ["/healthz", "/api/v1/bots", "/no/such/page"] {
        let response = s.client.get(s.url(path)).send().await.expect("get");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().expect("ascii").to_string())
                .unwrap_or_default()
        };
        let csp = header("content-security-policy");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
    s.stop().await;
}

both_backends!(
    every_route_answers_each_role_as_the_matrix_says,
    login_sets_a_strict_cookie_and_logout_ends_the_session,
    a_change_made_with_the_cookie_needs_the_csrf_header,
    failed_logins_are_refused_after_a_while,
    tokens_act_only_for_their_bot_and_scope,
    a_live_connection_ends_with_its_session,
    a_session_survives_a_restart,
    sessions_end_when_idle_or_too_old,
    failed_logins_slow_down,
    behind_a_trusted_proxy_the_forwarded_client_counts,
);
