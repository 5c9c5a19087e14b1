//! The demo's audience: once the simulated users are there, an operator's first touches
//! through the API any operator would use — tags ("Customers", "Ukrainians", "VIP") and
//! roles ("admin", "tester") for each bot, some users tagged and given a role, a few
//! with information fields, a few who unsubscribed. Running the demo again on the same
//! data changes nothing that is there already.

use std::time::Duration;

use serde_json::{Value, json};
use tracing::{info, warn};

/// Where botwatch is, and a token that may edit the audience.
#[derive(Clone)]
pub struct AudienceConfig {
    pub base_url: String,
    pub token: String,
    /// The bots to give an audience.
    pub bots: Vec<String>,
}

/// Seeds each bot's audience once it has a few users (waits for them, up to two
/// minutes).
pub async fn seed(config: AudienceConfig) {
    let http = reqwest::Client::new();
    for bot in &config.bots {
        match seed_bot(&http, &config, bot).await {
            Ok(n) => info!(bot, tagged = n, "demo audience ready"),
            Err(e) => warn!(bot, error = e, "the demo audience is not there"),
        }
    }
}

async fn call(
    http: &reqwest::Client,
    config: &AudienceConfig,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Result<(u16, Value), String> {
    let answer = http
        .request(method, format!("{}{path}", config.base_url))
        .bearer_auth(&config.token)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = answer.status().as_u16();
    Ok((status, answer.json().await.unwrap_or(Value::Null)))
}

async fn seed_bot(
    http: &reqwest::Client,
    config: &AudienceConfig,
    bot: &str,
) -> Result<u64, String> {
    let users_path = format!("/api/v1/bots/{bot}/users?limit=200&sort=name");
    let mut users = Vec::new();
    for _ in 0..120 {
        let (status, page) =
            call(http, config, reqwest::Method::GET, &users_path, Value::Null).await?;
        if status == 200 && page["total"].as_u64().unwrap_or(0) >= 5 {
            users = page["items"].as_array().cloned().unwrap_or_default();
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if users.is_empty() {
        return Err("no users within two minutes".to_owned());
    }
    for (kind, name) in [
        ("tags", "Customers"),
        ("tags", "Ukrainians"),
        ("tags", "VIP"),
        ("roles", "admin"),
        ("roles", "tester"),
    ] {
        let (status, answer) = call(
            http,
            config,
            reqwest::Method::POST,
            &format!("/api/v1/bots/{bot}/{kind}"),
            json!({"name": name}),
        )
        .await?;
        // 409: there from an earlier run.
        if status != 201 && status != 409 {
            return Err(format!("{kind} {name}: {status} {answer}"));
        }
    }
    let ids = |pick: &dyn Fn(usize, &Value) -> bool| -> Vec<String> {
        users
            .iter()
            .enumerate()
            .filter(|(n, u)| pick(*n, u))
            .filter_map(|(_, u)| u["id"].as_str().map(str::to_owned))
            .collect()
    };
    let ukrainian = |u: &Value| {
        u["name"].as_str().is_some_and(|n| {
            n.chars()
                .any(|c| matches!(c, 'і' | 'ї' | 'є' | 'ґ' | 'І' | 'Є'))
        })
    };
    let bulk = [
        (ids(&|n, _| n % 2 == 0), json!({"add_tags": ["Customers"]})),
        (
            ids(&|_, u| ukrainian(u)),
            json!({"add_tags": ["Ukrainians"]}),
        ),
        (ids(&|n, _| n % 4 == 1), json!({"add_tags": ["VIP"]})),
        (ids(&|n, _| n < 2), json!({"set": {"role": "admin"}})),
        (ids(&|n, _| n % 5 == 3), json!({"set": {"role": "tester"}})),
        (
            ids(&|n, _| n % 6 == 4),
            json!({"set": {"subscriber": false}}),
        ),
    ];
    let mut tagged = 0;
    for (chosen, mut change) in bulk {
        if chosen.is_empty() {
            continue;
        }
        change["ids"] = json!(chosen);
        let (status, answer) = call(
            http,
            config,
            reqwest::Method::POST,
            &format!("/api/v1/bots/{bot}/users/bulk"),
            change,
        )
        .await?;
        if status != 200 {
            return Err(format!("bulk edit: {status} {answer}"));
        }
        tagged += answer["updated"].as_u64().unwrap_or(0);
    }
    for (n, u) in users.iter().take(3).enumerate() {
        let Some(id) = u["id"].as_str() else { continue };
        let city = ["Київ", "Lviv", "Berlin"][n % 3];
        let fields = json!({"fields": {
            "phone": format!("+380 44 000 00 0{n}"),
            "email": format!("customer{n}@example.com"),
            "city": city,
        }});
        call(
            http,
            config,
            reqwest::Method::PATCH,
            &format!("/api/v1/bots/{bot}/users/{id}"),
            fields,
        )
        .await?;
    }
    Ok(tagged)
}
