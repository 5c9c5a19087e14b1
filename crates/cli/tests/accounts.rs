//! `botwatch users …` and `botwatch tokens …` as an administrator types them, on an
//! embedded store without a server: what they print, and how they refuse bad input.

use std::process::{Output, Stdio};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

fn botwatch(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_botwatch"));
    cmd.arg("--data")
        .arg(dir)
        .env_remove("BOTWATCH_REDIS_URL")
        .env_remove("BOTWATCH_DATA")
        .env_remove("BOTWATCH_PASSWORD")
        .env("BOTWATCH_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs a command with `stdin` as its standard input.
async fn run(dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = botwatch(dir).args(args).spawn().expect("run botwatch");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    child.wait_with_output().await.expect("wait")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_tokens_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().expect("dir");
    let dir = dir.path();

    let short = run(
        dir,
        &["users", "add", "ann", "--role", "operator"],
        "short\n",
    )
    .await;
    assert!(!short.status.success());
    assert!(
        text(&short.stderr).contains("too short"),
        "{}",
        text(&short.stderr)
    );

    let added = run(
        dir,
        &["users", "add", "ann", "--role", "operator"],
        "long enough password\n",
    )
    .await;
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert_eq!(text(&added.stdout).trim(), "added ann (operator)");

    let again = run(
        dir,
        &["users", "add", "ann", "--role", "admin"],
        "long enough password\n",
    )
    .await;
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );

    let bad_role = run(dir, &["users", "add", "bob", "--role", "boss"], "").await;
    assert!(!bad_role.status.success());
    assert!(
        text(&bad_role.stderr).contains("viewer, operator or admin"),
        "{}",
        text(&bad_role.stderr)
    );

    let role = run(dir, &["users", "role", "ann", "--role", "admin"], "").await;
    assert!(role.status.success(), "{}", text(&role.stderr));
    let passwd = run(dir, &["users", "passwd", "ann"], "another long password\n").await;
    assert!(passwd.status.success(), "{}", text(&passwd.stderr));
    let listed = text(&run(dir, &["users", "list"], "").await.stdout);
    assert!(
        listed.starts_with("ann") && listed.contains("admin"),
        "{listed}"
    );

    let token = run(
        dir,
        &["tokens", "add", "--bot", "shop", "--scope", "read"],
        "",
    )
    .await;
    assert!(token.status.success(), "{}", text(&token.stderr));
    let secret = text(&token.stdout).trim().to_string();
    assert!(
        secret.starts_with("bwt_") && !secret.contains(' '),
        "only the token on stdout: {secret}"
    );
    let listed = text(&run(dir, &["tokens", "list"], "").await.stdout);
    let id = listed.split_whitespace().next().expect("an id").to_string();
    assert!(
        listed.contains("shop") && listed.contains("read") && !listed.contains(&secret),
        "{listed}"
    );
    let not_a_slug = run(
        dir,
        &["tokens", "add", "--bot", "Not A Bot", "--scope", "read"],
        "",
    )
    .await;
    assert!(!not_a_slug.status.success());

    assert!(
        run(dir, &["tokens", "remove", &id], "")
            .await
            .status
            .success()
    );
    let gone = run(dir, &["tokens", "remove", &id], "").await;
    assert!(!gone.status.success());
    assert!(
        text(&gone.stderr).contains("no token"),
        "{}",
        text(&gone.stderr)
    );
    assert!(
        run(dir, &["users", "remove", "ann"], "")
            .await
            .status
            .success()
    );
    assert!(text(&run(dir, &["users", "list"], "").await.stdout).contains("no users yet"));

    // Every change is in the audit log, none with a secret.
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).expect("audit log");
    let actions: Vec<&str> = audit
        .lines()
        .map(|l| {
            l.split("\"action\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
        })
        .collect();
    assert_eq!(
        actions,
        [
            "user.add",
            "user.role",
            "user.passwd",
            "token.add",
            "token.remove",
            "user.remove"
        ]
    );
    assert!(!audit.contains("long enough password") && !audit.contains(&secret));
}
