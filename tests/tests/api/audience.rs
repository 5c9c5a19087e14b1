//! The Audience: roles and tags per bot, edits of one user or many (recorded as events,
//! so they survive a restart and reach every node), filters that OR inside a group and
//! AND across groups, facet counts with each group's own filter left out, search by
//! any part of a name in any script, and the CSV export with its cells made safe.

use botwatch_tests::{Backend, TestServer};
use serde_json::{Value, json};

use super::until;

fn wrote(user: &str, name: &str, provider: &str) -> Value {
    json!({"id": uuid::Uuid::new_v4().to_string(), "bot": "crowd", "type": "message",
           "direction": "in", "provider": provider, "user": {"id": user, "name": name},
           "text": "hi"})
}

/// Six users: three on Telegram, two on Viber, one on the web chat.
async fn crowd(s: &TestServer) {
    let batch = json!([
        wrote("t1", "Олена Коваль", "telegram"),
        wrote("t2", "ОЛЕГ Петренко", "telegram"),
        wrote("t3", "John Smith", "telegram"),
        wrote("v1", "Ørjan Olsen", "viber"),
        wrote("v2", "Ann Lee", "viber"),
        wrote("w1", "Σωκράτης", "webchat"),
    ]);
    let (status, body) = s.ingest(batch.to_string()).await;
    assert_eq!(status, 202, "{body}");
    s.wait_for_messages("crowd", 6).await;
}

async fn label(s: &TestServer, kind: &str, name: &str) {
    let (status, body) = s
        .post(&format!("/api/v1/bots/crowd/{kind}"), json!({"name": name}))
        .await;
    assert_eq!(status, 201, "{body}");
}

async fn patch(s: &TestServer, user: &str, body: Value) -> Value {
    let (status, answer) = s
        .patch(&format!("/api/v1/bots/crowd/users/{user}"), body)
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn users(s: &TestServer, query: &str) -> Value {
    let (status, body) = s.get(&format!("/api/v1/bots/crowd/users?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

fn ids(page: &Value) -> Vec<String> {
    let mut ids: Vec<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// VIP: t1, t2, v1; Customers: t1, w1. Role admin: t2, v2; role tester: w1.
/// Not subscribers: t3, v1.
async fn labelled_crowd(s: &TestServer) {
    crowd(s).await;
    for (kind, name) in [
        ("tags", "VIP"),
        ("tags", "Customers"),
        ("roles", "admin"),
        ("roles", "tester"),
    ] {
        label(s, kind, name).await;
    }
    patch(s, "t1", json!({"tags": ["VIP", "Customers"]})).await;
    patch(s, "t2", json!({"tags": ["VIP"], "role": "admin"})).await;
    patch(s, "v1", json!({"tags": ["VIP"], "subscriber": false})).await;
    patch(s, "v2", json!({"role": "admin"})).await;
    patch(s, "w1", json!({"tags": ["Customers"], "role": "tester"})).await;
    patch(s, "t3", json!({"subscriber": false})).await;
}

async fn filters_or_inside_a_group_and_across_groups_with_facets_leaving_their_own_out(
    backend: Backend,
) {
    let s = TestServer::start(backend).await;
    labelled_crowd(&s).await;

    let all = users(&s, "").await;
    assert_eq!(all["total"], 6);
    assert_eq!(
        all["facets"],
        json!({"provider": {"telegram": 3, "viber": 2, "webchat": 1},
               "tag": {"Customers": 2, "VIP": 3},
               "role": {"admin": 2, "tester": 1},
               "subscriber": 4})
    );

    // OR inside a group.
    let page = users(&s, "tag=VIP&tag=Customers").await;
    assert_eq!(ids(&page), ["t1", "t2", "v1", "w1"]);
    // The tag group's own counts leave the tag filter out: what choosing another
    // tag would add.
    assert_eq!(page["facets"]["tag"], json!({"Customers": 2, "VIP": 3}));
    // Other groups count within the tag filter.
    assert_eq!(
        page["facets"]["provider"],
        json!({"telegram": 2, "viber": 1, "webchat": 1})
    );

    // AND across groups.
    let page = users(&s, "tag=VIP&provider=telegram").await;
    assert_eq!(ids(&page), ["t1", "t2"]);
    assert_eq!(
        page["facets"]["provider"],
        json!({"telegram": 2, "viber": 1, "webchat": 0}),
        "the VIPs per provider"
    );
    assert_eq!(
        page["facets"]["tag"],
        json!({"Customers": 1, "VIP": 2}),
        "telegram users per tag"
    );
    assert_eq!(page["facets"]["role"], json!({"admin": 1, "tester": 0}));
    assert_eq!(page["facets"]["subscriber"], 2);

    let page = users(&s, "role=admin&subscriber=true").await;
    assert_eq!(ids(&page), ["t2", "v2"]);
    let page = users(&s, "subscriber=false").await;
    assert_eq!(ids(&page), ["t3", "v1"]);
    assert_eq!(
        page["facets"]["subscriber"], 4,
        "the subscriber count leaves the subscriber filter out"
    );
    // A tag nobody defined matches nobody (never everybody).
    assert_eq!(users(&s, "tag=Nope").await["total"], 0);
    // Mode: a user switched to Manual through the edit.
    patch(&s, "v2", json!({"auto_mode": false})).await;
    assert_eq!(ids(&users(&s, "mode=manual").await), ["v2"]);
    s.stop().await;
}

async fn search_finds_any_part_of_a_name_in_any_case_and_script(backend: Backend) {
    let s = TestServer::start(backend).await;
    crowd(&s).await;
    for (search, expected) in [
        ("олен", vec!["t1"]),
        ("ОЛЕ", vec!["t1", "t2"]),
        ("коваль", vec!["t1"]),
        ("петренко", vec!["t2"]),
        ("SMI", vec!["t3"]),
        ("ørjan", vec!["v1"]),
        ("σωκράτης", vec!["w1"]),
        ("ΣΩΚΡΆΤΗΣ", vec!["w1"]),
        ("zzz", vec![]),
    ] {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("search", search)
            .finish();
        assert_eq!(ids(&users(&s, &query).await), expected, "{search}");
    }
    // Search and a filter together; facets follow the search.
    let page = users(&s, "search=%D0%BE%D0%BB%D0%B5&provider=telegram").await;
    assert_eq!(ids(&page), ["t1", "t2"]);
    assert_eq!(
        page["facets"]["provider"],
        json!({"telegram": 2, "viber": 0, "webchat": 0})
    );
    // A name an operator gave is searched, and stands over the channel's.
    patch(&s, "t3", json!({"name": "Іван Сміт"})).await;
    s.ingest(wrote("t3", "John Smith", "telegram").to_string())
        .await;
    s.wait_for_messages("crowd", 7).await;
    assert_eq!(
        ids(&users(&s, "search=%D1%96%D0%B2%D0%B0%D0%BD").await),
        ["t3"]
    );
    assert_eq!(users(&s, "search=smith").await["total"], 0);
    s.stop().await;
}

async fn edits_are_events_bots_read_and_a_restart_keeps(backend: Backend) {
    let s = TestServer::start(backend).await;
    crowd(&s).await;
    label(&s, "roles", "admin").await;
    label(&s, "tags", "VIP").await;

    // A role or tag the bot does not have is refused, naming it: 409, as the request
    // is well-formed and only what is stored is missing.
    let (status, body) = s
        .patch("/api/v1/bots/crowd/users/t1", json!({"role": "owner"}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("unknown_role"))
    );
    let (status, body) = s
        .patch("/api/v1/bots/crowd/users/t1", json!({"tags": ["Nope"]}))
        .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("unknown_tag")));
    let (status, _) = s
        .patch("/api/v1/bots/crowd/users/t1", json!({"colour": "red"}))
        .await;
    assert_eq!(status, 400, "unknown members are refused");
    let (status, _) = s
        .patch(
            "/api/v1/bots/crowd/users/nobody",
            json!({"subscriber": false}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .post("/api/v1/bots/crowd/tags", json!({"name": "VIP"}))
        .await;
    assert_eq!(status, 409, "a second VIP");
    let (status, _) = s
        .post("/api/v1/bots/crowd/tags", json!({"name": " padded"}))
        .await;
    assert_eq!(status, 400);

    let profile = patch(
        &s,
        "t1",
        json!({"role": "admin", "tags": ["VIP"], "subscriber": false, "gender": "female",
               "fields": {"phone": "+380 44 123 45 67", "email": "olena@example.com",
                          "city": "Київ"}}),
    )
    .await;
    assert_eq!(profile["role"], "admin");
    assert_eq!(profile["tags"], json!(["VIP"]));
    assert_eq!(profile["subscriber"], false);
    assert_eq!(profile["gender"], "female");
    assert_eq!(profile["fields"]["city"], "Київ");
    // A field removed, one kept.
    let profile = patch(&s, "t1", json!({"fields": {"city": null}})).await;
    assert_eq!(
        profile["fields"],
        json!({"email": "olena@example.com", "phone": "+380 44 123 45 67"})
    );
    let profile = patch(&s, "t1", json!({"auto_mode": false})).await;
    assert_eq!(
        (profile["mode"].as_str(), profile["auto_mode"].as_bool()),
        (Some("manual"), Some(false))
    );

    // Renaming a tag keeps it on its users; deleting a role takes it off them.
    let (status, body) = s
        .patch("/api/v1/bots/crowd/tags/VIP", json!({"name": "Gold"}))
        .await;
    assert_eq!((status, body["users"].as_u64()), (200, Some(1)), "{body}");
    let (status, _) = s.delete("/api/v1/bots/crowd/roles/admin").await;
    assert_eq!(status, 204);
    let (status, _) = s.delete("/api/v1/bots/crowd/roles/admin").await;
    assert_eq!(status, 404);
    let (_, roles) = s.get("/api/v1/bots/crowd/roles").await;
    assert_eq!(roles, json!([]));
    let (_, tags) = s.get("/api/v1/bots/crowd/tags").await;
    assert_eq!(tags, json!([{"name": "Gold", "users": 1}]));

    // A bot reads the profile (its read token would do; the admin token here).
    let expect = |p: &Value| {
        assert_eq!(p["role"], Value::Null, "{p}");
        assert_eq!(p["tags"], json!(["Gold"]));
        assert_eq!(p["subscriber"], false);
        assert_eq!(p["auto_mode"], false);
        assert_eq!(p["fields"]["phone"], "+380 44 123 45 67");
    };
    let (status, p) = s.get("/api/v1/bots/crowd/users/t1").await;
    assert_eq!(status, 200);
    expect(&p);

    // Every edit was audited.
    let (_, audit) = s.get("/api/v1/audit?limit=100").await;
    let actions: Vec<&str> = audit
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in ["user.edit", "tag.create", "tag.rename", "role.delete"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }

    // The edits are in the log: after a restart (snapshot or replay), the same.
    let kept = s.stop_keeping().await;
    let s = TestServer::start_with(backend, Some(kept), |_| {}).await;
    let p = until(&s, "/api/v1/bots/crowd/users/t1", |p| {
        p["tags"] == json!(["Gold"])
    })
    .await;
    expect(&p);
    assert_eq!(users(&s, "tag=Gold").await["total"], 1);
    s.stop().await;
}

async fn bulk_edits_by_ids_and_by_filter(backend: Backend) {
    let s = TestServer::start(backend).await;
    labelled_crowd(&s).await;
    let bulk = |body: Value| {
        let s = &s;
        async move {
            let (status, answer) = s.post("/api/v1/bots/crowd/users/bulk", body).await;
            assert_eq!(status, 200, "{answer}");
            answer["updated"].as_u64().expect("updated")
        }
    };
    // By ids (an unknown one is passed over).
    let n = bulk(json!({"ids": ["t3", "v2", "ghost"], "add_tags": ["VIP"],
                        "set": {"subscriber": true}}))
    .await;
    assert_eq!(n, 2);
    assert_eq!(
        ids(&users(&s, "tag=VIP").await),
        ["t1", "t2", "t3", "v1", "v2"]
    );
    assert_eq!(users(&s, "").await["facets"]["subscriber"], 5);

    // By filter: every Viber user loses VIP and gets the role tester.
    let n = bulk(
        json!({"filter": {"provider": "viber"}, "remove_tags": ["VIP"],
                        "set": {"role": "tester"}}),
    )
    .await;
    assert_eq!(n, 2);
    assert_eq!(ids(&users(&s, "tag=VIP").await), ["t1", "t2", "t3"]);
    assert_eq!(ids(&users(&s, "role=tester").await), ["v1", "v2", "w1"]);

    // A filter of several groups, and Auto mode off: Manual for those.
    let n = bulk(json!({"filter": {"tag": ["VIP"], "role": ["admin"]},
                        "set": {"auto_mode": false}}))
    .await;
    assert_eq!(n, 1);
    assert_eq!(ids(&users(&s, "mode=manual").await), ["t2"]);
    // Clearing a role for many.
    bulk(json!({"filter": {"role": "tester"}, "set": {"role": null}})).await;
    assert_eq!(users(&s, "role=tester").await["total"], 0);

    for (bad, why) in [
        (
            json!({"ids": ["t1"], "filter": {}, "set": {"subscriber": true}}),
            "both",
        ),
        (json!({"ids": ["t1"]}), "nothing to change"),
        (
            json!({"filter": {"colour": "red"}, "set": {"subscriber": true}}),
            "unknown filter",
        ),
    ] {
        let (status, answer) = s.post("/api/v1/bots/crowd/users/bulk", bad).await;
        assert_eq!(status, 400, "{why}: {answer}");
    }
    // Well-formed, but naming what the bot does not have: 409.
    for (unknown, code) in [
        (
            json!({"ids": ["t1"], "set": {"role": "owner"}}),
            "unknown_role",
        ),
        (json!({"ids": ["t1"], "add_tags": ["Nope"]}), "unknown_tag"),
    ] {
        let (status, answer) = s.post("/api/v1/bots/crowd/users/bulk", unknown).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (409, Some(code)),
            "{answer}"
        );
    }
    s.stop().await;
}

async fn csv_exports_the_selection_with_formulas_made_harmless(backend: Backend) {
    let s = TestServer::start(backend).await;
    crowd(&s).await;
    let batch = json!([
        wrote(
            "x1",
            "=HYPERLINK(\"http://evil.example\",\"click\")",
            "telegram"
        ),
        wrote("x2", "+1 (555) call me", "telegram"),
        wrote("x3", "-2+3", "telegram"),
        wrote("x4", "@SUM(A1:A9)", "telegram"),
        wrote("x5", "Comma, \"quote\"\nand a new line", "telegram"),
    ]);
    assert_eq!(s.ingest(batch.to_string()).await.0, 202);
    s.wait_for_messages("crowd", 11).await;
    label(&s, "tags", "VIP").await;
    patch(
        &s,
        "x1",
        json!({"tags": ["VIP"], "fields": {"note": "=cmd|' /C calc'!A0", "phone": "+380"}}),
    )
    .await;

    let response = s
        .client
        .get(s.url("/api/v1/bots/crowd/users.csv?provider=telegram"))
        .bearer_auth(botwatch_tests::ADMIN_TOKEN)
        .send()
        .await
        .expect("csv");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .expect("ascii")
            .contains("crowd-users.csv")
    );
    let text = response.text().await.expect("body");
    let text = text
        .strip_prefix('\u{feff}')
        .expect("a byte-order mark for spreadsheets");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "id",
            "name",
            "provider",
            "gender",
            "role",
            "tags",
            "subscriber",
            "mode",
            "messages",
            "sessions",
            "last",
            "first_seen",
            "note",
            "phone"
        ]
    );
    let rows: std::collections::BTreeMap<String, Vec<String>> = reader
        .records()
        .map(|r| {
            let r = r.expect("row");
            (r[0].to_owned(), r.iter().map(str::to_owned).collect())
        })
        .collect();
    assert_eq!(rows.len(), 8, "the Telegram users only: {rows:?}");
    assert_eq!(
        rows["x1"][1],
        "'=HYPERLINK(\"http://evil.example\",\"click\")"
    );
    assert_eq!(rows["x1"][5], "VIP");
    assert_eq!(rows["x1"][12], "'=cmd|' /C calc'!A0");
    assert_eq!(rows["x1"][13], "'+380");
    assert_eq!(rows["x2"][1], "'+1 (555) call me");
    assert_eq!(rows["x3"][1], "'-2+3");
    assert_eq!(rows["x4"][1], "'@SUM(A1:A9)");
    assert_eq!(
        rows["x5"][1], "Comma, \"quote\"\nand a new line",
        "quoted, whole"
    );
    assert_eq!(rows["t1"][1], "Олена Коваль");
    assert_eq!(rows["t1"][6], "true");
    assert_eq!(rows["t1"][7], "auto");
    s.stop().await;
}

async fn an_edit_on_one_node_is_seen_on_the_other(backend: Backend) {
    let s = TestServer::start(backend).await;
    crowd(&s).await;
    let other = s.second_node().await;
    label(&s, "tags", "VIP").await;
    patch(&s, "v1", json!({"tags": ["VIP"], "subscriber": false})).await;
    let p = until(&other, "/api/v1/bots/crowd/users/v1", |p| {
        p["tags"] == json!(["VIP"])
    })
    .await;
    assert_eq!(p["subscriber"], false);
    other.stop().await;
    s.stop().await;
}

/// What the log would refuse when read back is refused up front (it was answered 200
/// and then dead-lettered on Redis), and a user's fields are bounded in all.
async fn edits_the_log_would_refuse_are_refused_up_front(backend: Backend) {
    let s = TestServer::start(backend).await;
    crowd(&s).await;
    let long = "я".repeat(1024);
    let fields: serde_json::Map<String, Value> =
        (0..40).map(|n| (format!("f{n}"), json!(long))).collect();
    let (status, body) = s
        .patch("/api/v1/bots/crowd/users/t1", json!({"fields": fields}))
        .await;
    assert_eq!(status, 413, "{body}");
    let (_, p) = s.get("/api/v1/bots/crowd/users/t1").await;
    assert_eq!(p["fields"], json!({}), "nothing stored");
    // Fifty fields in two edits, then one more: refused, naming the bound.
    let some = |from: usize| -> serde_json::Map<String, Value> {
        (from..from + 25)
            .map(|n| (format!("f{n}"), json!("x")))
            .collect()
    };
    patch(&s, "t1", json!({"fields": some(0)})).await;
    patch(&s, "t1", json!({"fields": some(25)})).await;
    let (status, body) = s
        .patch(
            "/api/v1/bots/crowd/users/t1",
            json!({"fields": {"one_more": "x"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Replacing one (removing one, adding one) stays within the bound.
    patch(&s, "t1", json!({"fields": {"f0": null, "one_more": "x"}})).await;
    let filter: Vec<String> = (0..600).map(|n| format!("provider-{n}")).collect();
    let (status, body) = s
        .post(
            "/api/v1/bots/crowd/broadcasts",
            json!({"to": "all", "text": "x", "filter": {"provider": filter}}),
        )
        .await;
    assert_eq!(status, 400, "a filter too long to record: {body}");
    let (status, _) = s
        .post(
            "/api/v1/bots/crowd/users/bulk",
            json!({"ids": ["t1"], "add_tags": ["A"], "remove_tags": ["A"]}),
        )
        .await;
    assert_eq!(status, 400, "the same tag added and removed");
    s.stop().await;
}

/// Names created at once may end up on two labels: the name still acts as one tag
/// (listed once, counted once, deleted whole).
async fn a_name_created_twice_at_once_is_one_tag(backend: Backend) {
    let s = TestServer::start(backend).await;
    crowd(&s).await;
    let creates = (0..8).map(|_| s.post("/api/v1/bots/crowd/tags", json!({"name": "VIP"})));
    let statuses: Vec<u16> = futures_util::future::join_all(creates)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    assert!(statuses.contains(&201), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    let (_, tags) = s.get("/api/v1/bots/crowd/tags").await;
    assert_eq!(tags, json!([{"name": "VIP", "users": 0}]));
    patch(&s, "t1", json!({"tags": ["VIP"]})).await;
    patch(&s, "t2", json!({"tags": ["VIP"]})).await;
    let page = users(&s, "tag=VIP").await;
    assert_eq!(ids(&page), ["t1", "t2"]);
    assert_eq!(page["facets"]["tag"], json!({"VIP": 2}));
    let (status, _) = s.delete("/api/v1/bots/crowd/tags/VIP").await;
    assert_eq!(status, 204);
    let (_, tags) = s.get("/api/v1/bots/crowd/tags").await;
    assert_eq!(tags, json!([]), "every label of the name deleted");
    let (_, p) = s.get("/api/v1/bots/crowd/users/t1").await;
    assert_eq!(p["tags"], json!([]));
    s.stop().await;
}

both_backends!(
    edits_the_log_would_refuse_are_refused_up_front,
    a_name_created_twice_at_once_is_one_tag,
    filters_or_inside_a_group_and_across_groups_with_facets_leaving_their_own_out,
    search_finds_any_part_of_a_name_in_any_case_and_script,
    edits_are_events_bots_read_and_a_restart_keeps,
    bulk_edits_by_ids_and_by_filter,
    csv_exports_the_selection_with_formulas_made_harmless,
);

mod two_nodes {
    use super::*;

    #[tokio::test]
    async fn an_edit_on_one_node_is_seen_on_the_other_on_redis() {
        an_edit_on_one_node_is_seen_on_the_other(Backend::Redis).await;
    }
}
