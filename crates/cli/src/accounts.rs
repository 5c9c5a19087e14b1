//! `botwatch users …` and `botwatch tokens …`: accounts on the same store as `serve`,
//! whether or not a server runs (a running one sees the change on its next request).

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, Result, bail};
use botwatch_accounts::{AccountStore, AccountsError, AuditEntry, Role, Scope, Token, User};
use clap::Subcommand;
use serde_json::json;

#[derive(Subcommand)]
pub enum UsersAction {
    /// Add a dashboard user. The password comes from BOTWATCH_PASSWORD, or is asked for.
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// List the users and their roles.
    List,
    /// Remove a user; their sessions end at once.
    Remove { name: String },
    /// Set a user's password (from BOTWATCH_PASSWORD, or asked for); their sessions end.
    Passwd { name: String },
    /// Change a user's role; their sessions end.
    Role {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
}

#[derive(Subcommand)]
pub enum TokensAction {
    /// Make an API token for one bot; it is printed once and kept only as a digest.
    Add {
        #[arg(long)]
        bot: String,
        #[arg(long, value_parser = parse_scope)]
        scope: Scope,
    },
    /// List the tokens (id, bot, scope, created), never the tokens themselves.
    List,
    /// Revoke a token by its id (from `tokens list`).
    Remove { id: String },
}

fn parse_role(s: &str) -> Result<Role, AccountsError> {
    s.parse()
}

fn parse_scope(s: &str) -> Result<Scope, AccountsError> {
    s.parse()
}

pub async fn users(store: AccountStore, action: UsersAction) -> Result<()> {
    match action {
        UsersAction::Add { name, role } => {
            botwatch_accounts::check_name(&name)?;
            if store.user(&name).await?.is_some() {
                bail!("user {name:?} already exists (use `botwatch users passwd` or `role`)");
            }
            let password = hashed(read_password()?).await?;
            store.add_user(User::new(&name, role, password)).await?;
            audit(&store, "user.add", json!({"name": name, "role": role})).await?;
            println!("added {name} ({})", role.as_str());
        }
        UsersAction::List => {
            let mut users = store.users().await?;
            users.sort_by(|a, b| a.name.cmp(&b.name));
            if users.is_empty() {
                println!("no users yet: botwatch users add NAME --role admin");
            }
            for u in users {
                println!(
                    "{:<24} {:<9} since {}",
                    u.name,
                    u.role.as_str(),
                    u.created.format("%Y-%m-%d")
                );
            }
        }
        UsersAction::Remove { name } => {
            if !store.remove_user(&name).await? {
                bail!("no user {name:?}");
            }
            audit(&store, "user.remove", json!({"name": name})).await?;
            println!("removed {name}");
        }
        UsersAction::Passwd { name } => {
            let mut user = existing(&store, &name).await?;
            user.set_password(hashed(read_password()?).await?);
            store.update_user(user).await?;
            audit(&store, "user.passwd", json!({"name": name})).await?;
            println!("password of {name} changed; their sessions have ended");
        }
        UsersAction::Role { name, role } => {
            let mut user = existing(&store, &name).await?;
            user.set_role(role);
            store.update_user(user).await?;
            audit(&store, "user.role", json!({"name": name, "role": role})).await?;
            println!("{name} is now {}; their sessions have ended", role.as_str());
        }
    }
    Ok(())
}

pub async fn tokens(store: AccountStore, action: TokensAction) -> Result<()> {
    match action {
        TokensAction::Add { bot, scope } => {
            let (token, secret) = Token::issue(&bot, scope)?;
            let id = token.id.clone();
            store.add_token(token).await?;
            audit(
                &store,
                "token.add",
                json!({"id": id, "bot": bot, "scope": scope}),
            )
            .await?;
            eprintln!(
                "token {id} for bot {bot}, scope {} (shown once, keep it safe):",
                scope.as_str()
            );
            println!("{secret}");
        }
        TokensAction::List => {
            let mut tokens = store.tokens().await?;
            tokens.sort_by(|a, b| (&a.bot, a.created).cmp(&(&b.bot, b.created)));
            if tokens.is_empty() {
                println!("no tokens yet: botwatch tokens add --bot BOT --scope ingest");
            }
            for t in tokens {
                println!(
                    "{}  {:<24} {:<7} since {}",
                    t.id,
                    t.bot,
                    t.scope.as_str(),
                    t.created.format("%Y-%m-%d")
                );
            }
        }
        TokensAction::Remove { id } => {
            if !store.remove_token(&id).await? {
                bail!("no token {id:?} (see `botwatch tokens list`)");
            }
            audit(&store, "token.remove", json!({"id": id})).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

/// The demo's admin user.
pub const DEMO_ADMIN: &str = "demo";

/// Makes (or, on a second run, resets) the demo's admin with a fresh random password,
/// and answers that password.
pub async fn demo_admin(store: &AccountStore) -> Result<String> {
    let password = botwatch_accounts::new_secret()?[..16].to_string();
    let hash = hashed(password.clone()).await?;
    match store.user(DEMO_ADMIN).await? {
        Some(mut user) => {
            user.set_password(hash);
            user.set_role(Role::Admin);
            store.update_user(user).await?;
        }
        None => {
            store
                .add_user(User::new(DEMO_ADMIN, Role::Admin, hash))
                .await?
        }
    }
    Ok(password)
}

/// Records a change made from the command line in the audit log.
async fn audit(store: &AccountStore, action: &str, detail: serde_json::Value) -> Result<()> {
    let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let bot = detail
        .get("bot")
        .and_then(|b| b.as_str())
        .map(str::to_string);
    let entry = AuditEntry::now(format!("cli:{who}"), action, bot.as_deref(), detail);
    store
        .record(&entry)
        .await
        .context("cannot write the audit log")
}

async fn existing(store: &AccountStore, name: &str) -> Result<User> {
    store
        .user(name)
        .await?
        .with_context(|| format!("no user {name:?}"))
}

/// Hashes off the async runtime (Argon2id takes tens of milliseconds).
async fn hashed(password: String) -> Result<String> {
    Ok(tokio::task::spawn_blocking(move || botwatch_accounts::hash_password(&password)).await??)
}

/// BOTWATCH_PASSWORD, else asked for twice on a terminal (not echoed), else one line of
/// standard input.
fn read_password() -> Result<String> {
    let password = match std::env::var("BOTWATCH_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ if std::io::stdin().is_terminal() => {
            let first = rpassword::prompt_password("password: ").context("read the password")?;
            let again = rpassword::prompt_password("again: ").context("read the password")?;
            if first != again {
                bail!("the two passwords differ");
            }
            first
        }
        _ => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("read the password from stdin")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    botwatch_accounts::check_password(&password)?;
    Ok(password)
}
