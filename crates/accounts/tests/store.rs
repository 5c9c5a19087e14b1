//! One contract, both backends: every test runs against the files of a temporary data
//! directory and against the real Redis on 127.0.0.1:6379 under its own key prefix.
//! Redis tests fail, never skip, when Redis does not answer.

use std::time::Duration;

use botwatch_accounts::{
    AccountStore, AccountsError, AuditEntry, Location, Role, Scope, Session, Token, User, digest,
};
use chrono::Utc;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// A store on each backend; the temporary directory lives as long as the test.
async fn stores() -> Vec<(
    &'static str,
    AccountStore,
    Location,
    Option<tempfile::TempDir>,
)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = Location::Dir(dir.path().to_path_buf());
    let redis = Location::Redis {
        url: REDIS_URL.into(),
        prefix: format!("test-accounts-{}:", uuid::Uuid::new_v4().simple()),
    };
    vec![
        ("file", open(&file).await, file, Some(dir)),
        ("redis", open(&redis).await, redis, None),
    ]
}

async fn open(location: &Location) -> AccountStore {
    AccountStore::open(location)
        .await
        .expect("the store opens (Redis must run on 127.0.0.1:6379 for these tests)")
}

/// Deletes what a test left in Redis (the directory goes with its `TempDir`).
async fn cleanup(location: &Location) {
    let Location::Redis { url, prefix } = location else {
        return;
    };
    let mut con = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut con)
            .await
            .expect("DEL");
    }
}

fn user(name: &str, role: Role) -> User {
    User {
        name: name.into(),
        role,
        password: "$argon2id$not-a-real-hash".into(),
        created: Utc::now(),
        generation: 0,
    }
}

#[tokio::test]
async fn users_are_added_once_updated_and_removed_and_a_second_handle_sees_it() {
    for (backend, store, location, _dir) in stores().await {
        store
            .add_user(user("ann", Role::Admin))
            .await
            .expect("the store answers");
        let again = store.add_user(user("ann", Role::Viewer)).await;
        assert!(
            matches!(again, Err(AccountsError::Exists(_))),
            "{backend}: {again:?}"
        );
        assert!(matches!(
            store.update_user(user("bob", Role::Viewer)).await,
            Err(AccountsError::NotFound(_))
        ));

        // Another process (the command line) opens the same store and changes it.
        let other = open(&location).await;
        let mut ann = other
            .user("ann")
            .await
            .expect("the store answers")
            .expect("ann");
        assert_eq!(ann.role, Role::Admin, "{backend}");
        ann.role = Role::Operator;
        ann.generation += 1;
        other
            .update_user(ann.clone())
            .await
            .expect("the store answers");
        other
            .add_user(user("bob", Role::Viewer))
            .await
            .expect("the store answers");

        assert_eq!(
            store.user("ann").await.expect("the store answers"),
            Some(ann),
            "{backend}"
        );
        let mut names: Vec<String> = store
            .users()
            .await
            .expect("the store answers")
            .into_iter()
            .map(|u| u.name)
            .collect();
        names.sort();
        assert_eq!(names, ["ann", "bob"], "{backend}");
        assert!(store.remove_user("bob").await.expect("the store answers"));
        assert!(!store.remove_user("bob").await.expect("the store answers"));
        assert_eq!(
            other.user("bob").await.expect("the store answers"),
            None,
            "{backend}"
        );
        assert!(matches!(
            store.add_user(user("bad name", Role::Viewer)).await,
            Err(AccountsError::Invalid(_))
        ));
        cleanup(&location).await;
    }
}

#[tokio::test]
async fn tokens_are_found_by_digest_only_and_removed_by_id() {
    for (backend, store, location, _dir) in stores().await {
        let (token, secret) = Token::issue("shop-bot", Scope::Ingest).expect("a token");
        assert!(secret.starts_with("bwt_"));
        store
            .add_token(token.clone())
            .await
            .expect("the store answers");
        assert_eq!(
            store
                .token(&digest(&secret))
                .await
                .expect("the store answers"),
            Some(token.clone()),
            "{backend}"
        );
        assert_eq!(
            store
                .token(&digest("bwt_guess"))
                .await
                .expect("the store answers"),
            None
        );
        assert!(
            store
                .tokens()
                .await
                .expect("the store answers")
                .iter()
                .all(|t| !format!("{t:?}").contains(&secret))
        );
        assert!(
            store
                .remove_token(&token.id)
                .await
                .expect("the store answers"),
            "{backend}"
        );
        assert_eq!(
            store
                .token(&digest(&secret))
                .await
                .expect("the store answers"),
            None,
            "{backend}"
        );
        assert!(Token::issue("Not A Slug", Scope::Read).is_err());
        cleanup(&location).await;
    }
}

#[tokio::test]
async fn sessions_expire_and_end() {
    for (backend, store, location, _dir) in stores().await {
        let session = Session {
            user: "ann".into(),
            generation: 3,
            created: Utc::now(),
            last_seen: Utc::now(),
        };
        store
            .put_session("d1", &session, Duration::from_secs(60))
            .await
            .expect("the store answers");
        store
            .put_session("d2", &session, Duration::from_millis(300))
            .await
            .expect("the store answers");
        assert_eq!(
            store.session("d1").await.expect("the store answers"),
            Some(session.clone()),
            "{backend}"
        );
        assert!(
            store
                .session("d2")
                .await
                .expect("the store answers")
                .is_some(),
            "{backend}"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            store.session("d2").await.expect("the store answers"),
            None,
            "{backend}: expired"
        );
        store.end_session("d1").await.expect("the store answers");
        assert_eq!(
            store.session("d1").await.expect("the store answers"),
            None,
            "{backend}: ended"
        );
        cleanup(&location).await;
    }
}

#[tokio::test]
async fn login_failures_count_within_their_window() {
    for (backend, store, location, _dir) in stores().await {
        let window = Duration::from_millis(400);
        assert_eq!(
            store.failures("user:ann").await.expect("the store answers"),
            0
        );
        assert_eq!(
            store
                .add_failure("user:ann", window)
                .await
                .expect("the store answers"),
            1
        );
        assert_eq!(
            store
                .add_failure("user:ann", window)
                .await
                .expect("the store answers"),
            2,
            "{backend}"
        );
        assert_eq!(
            store.failures("user:ann").await.expect("the store answers"),
            2,
            "{backend}"
        );
        assert_eq!(
            store
                .failures("addr:127.0.0.1")
                .await
                .expect("the store answers"),
            0,
            "{backend}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            store.failures("user:ann").await.expect("the store answers"),
            0,
            "{backend}: window over"
        );
        store
            .add_failure("user:ann", window)
            .await
            .expect("the store answers");
        store
            .clear_failures("user:ann")
            .await
            .expect("the store answers");
        assert_eq!(
            store.failures("user:ann").await.expect("the store answers"),
            0,
            "{backend}: cleared"
        );
        cleanup(&location).await;
    }
}

#[tokio::test]
async fn the_audit_log_reads_newest_first() {
    for (backend, store, location, _dir) in stores().await {
        assert!(
            store
                .audit_log(10)
                .await
                .expect("the store answers")
                .is_empty()
        );
        for n in 0..300 {
            store
                .record(&AuditEntry {
                    at: Utc::now(),
                    actor: "user:ann".into(),
                    action: "mode.switch".into(),
                    bot: Some("shop-bot".into()),
                    detail: serde_json::json!({"n": n, "text": "x".repeat(500)}),
                })
                .await
                .expect("the store answers");
        }
        let latest = store.audit_log(150).await.expect("the store answers");
        let ns: Vec<i64> = latest
            .iter()
            .map(|e| e.detail["n"].as_i64().expect("n"))
            .collect();
        assert_eq!(ns, (150..300).rev().collect::<Vec<_>>(), "{backend}");
        assert_eq!(
            store
                .audit_log(1000)
                .await
                .expect("the store answers")
                .len(),
            300,
            "{backend}"
        );
        cleanup(&location).await;
    }
}

/// Changes in quick succession, of the same length, are each seen by the next read —
/// of this handle and of another (the file's inode may be reused and its timestamp not
/// move within a clock tick).
#[tokio::test]
async fn quick_changes_of_the_same_size_are_all_seen() {
    for (backend, store, location, _dir) in stores().await {
        let other = open(&location).await;
        for n in 0..200u64 {
            let mut u = user("ann", Role::Viewer);
            u.generation = n % 10;
            u.password = format!("$argon2id$hash-{}", n % 10);
            if n == 0 {
                store.add_user(u.clone()).await.expect("add");
            } else {
                store.update_user(u.clone()).await.expect("update");
            }
            assert_eq!(
                store.user("ann").await.expect("read"),
                Some(u.clone()),
                "{backend} #{n}"
            );
            assert_eq!(
                other.user("ann").await.expect("read"),
                Some(u),
                "{backend} #{n}, other handle"
            );
        }
        cleanup(&location).await;
    }
}

/// Two writers at once (the command line and a server) never undo each other's changes.
#[tokio::test]
async fn interleaved_writers_lose_nothing() {
    for (backend, store, location, _dir) in stores().await {
        let other = open(&location).await;
        let (a, b) = tokio::join!(
            async {
                for n in 0..50 {
                    store
                        .add_user(user(&format!("a{n}"), Role::Viewer))
                        .await
                        .expect("add");
                }
            },
            async {
                for n in 0..50 {
                    other
                        .add_user(user(&format!("b{n}"), Role::Viewer))
                        .await
                        .expect("add");
                }
            }
        );
        let ((), ()) = (a, b);
        assert_eq!(store.users().await.expect("users").len(), 100, "{backend}");
        assert_eq!(other.users().await.expect("users").len(), 100, "{backend}");
        cleanup(&location).await;
    }
}
