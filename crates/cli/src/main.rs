//! `botwatch`: the command line. It parses arguments and the environment, sets up
//! logging and signals, and hands over to the server library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use botwatch_log::{RedisConfig, StorageConfig};
use botwatch_server::{Config, Server};
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

mod accounts;

/// mimalloc: the aggregator makes and frees many small allocations (packed timelines,
/// event strings); glibc's allocator spent a third of the aggregation time on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "botwatch",
    version,
    about = "Watch chatbots at work: every message in and out, live, per bot",
    long_about = "botwatch ingests every message that bots receive and send on any messaging \
                  service and serves live figures, dialogs and statistics per bot.\n\n\
                  Storage is embedded (a directory, --data) unless --redis is given."
)]
struct Cli {
    #[command(flatten)]
    storage: StorageArgs,

    /// Log filter (tracing's env-filter syntax, e.g. `info`, `botwatch_server=debug`).
    #[arg(long, env = "BOTWATCH_LOG", default_value = "info", global = true)]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct StorageArgs {
    /// Directory of the embedded storage [default: ./botwatch-data; for `demo`:
    /// ./botwatch-demo-data].
    #[arg(long, env = "BOTWATCH_DATA", global = true)]
    data: Option<PathBuf>,

    /// Run on Redis instead of the embedded storage (redis://HOST:PORT[/DB]).
    #[arg(
        long,
        env = "BOTWATCH_REDIS_URL",
        global = true,
        hide_env_values = true
    )]
    redis: Option<String>,

    /// The aggregator writes a snapshot after this many events (and on stop).
    #[arg(
        long,
        env = "BOTWATCH_SNAPSHOT_EVERY",
        default_value_t = 1_000_000,
        global = true
    )]
    snapshot_every: u64,

    /// Redis only: after each snapshot, trim the stream to about this many entries,
    /// never below what a snapshot or a live node still needs. Unset: keep every event
    /// (dialog history and recounts after a settings change reach back only as far as
    /// the stream does).
    #[arg(long, env = "BOTWATCH_RETAIN_EVENTS", global = true)]
    retain_events: Option<u64>,

    /// Origins (http(s)://host[:port]) whose pages may open live WebSockets besides
    /// the server's own; comma-separated in the environment.
    #[arg(
        long = "allowed-origin",
        env = "BOTWATCH_ALLOWED_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    allowed_origins: Vec<String>,

    /// Reverse proxies (addresses or networks, e.g. 10.0.0.0/8) whose X-Forwarded-For
    /// and X-Forwarded-Proto name the client; comma-separated in the environment.
    /// Without one, the TCP peer is the client (login throttling counts per address).
    #[arg(
        long = "trusted-proxy",
        env = "BOTWATCH_TRUSTED_PROXIES",
        value_delimiter = ',',
        global = true
    )]
    trusted_proxies: Vec<String>,

    /// The address users and bots reach this server at, e.g. https://botwatch.example
    /// (files operators send are linked under it); the request's Host when unset.
    #[arg(long, env = "BOTWATCH_PUBLIC_URL", global = true)]
    public_url: Option<String>,

    /// Telegram's Bot API base address (a stand-in server in tests).
    #[arg(
        long,
        env = "BOTWATCH_TELEGRAM_API",
        default_value = botwatch_server::TELEGRAM_API,
        global = true
    )]
    telegram_api: String,

    /// Google Analytics' Measurement Protocol base address (a stand-in in tests).
    #[arg(
        long,
        env = "BOTWATCH_GA_ENDPOINT",
        default_value = botwatch_server::GA_ENDPOINT,
        global = true
    )]
    ga_endpoint: String,

    /// Mixpanel's API base address (a stand-in in tests).
    #[arg(
        long,
        env = "BOTWATCH_MIXPANEL_ENDPOINT",
        default_value = botwatch_server::MIXPANEL_ENDPOINT,
        global = true
    )]
    mixpanel_endpoint: String,

    /// Prefix of every Redis key (several deployments on one Redis; tests).
    #[arg(
        long,
        env = "BOTWATCH_REDIS_PREFIX",
        default_value = "botwatch:",
        global = true
    )]
    redis_prefix: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Run the service with a traffic simulator so there is something to watch.
    Demo(DemoArgs),
    /// Show or clear the record of a loss of data the service detected (it makes
    /// /readyz answer 503 data_lost until cleared).
    DataLoss {
        #[command(subcommand)]
        action: DataLossAction,
    },
    /// Dashboard users: add, list, remove, passwd, role.
    Users {
        #[command(subcommand)]
        action: accounts::UsersAction,
    },
    /// API tokens for programs, each for one bot: add, list, remove.
    Tokens {
        #[command(subcommand)]
        action: accounts::TokensAction,
    },
    /// Print the OpenAPI document of the HTTP API (what GET /api/v1/openapi.json
    /// answers); the dashboard's TypeScript types are generated from it.
    Openapi,
}

#[derive(Subcommand)]
enum DataLossAction {
    /// Print the recorded loss of data, if any.
    Show,
    /// Accept the loss: the figures carry on without what was lost. Running nodes on
    /// Redis notice within a second; stop the service first on the embedded store.
    Clear,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BOTWATCH_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

#[derive(Args)]
struct DemoArgs {
    /// Address to listen on.
    #[arg(long, env = "BOTWATCH_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Conversations the simulator runs at once.
    #[arg(long, default_value_t = 12)]
    dialogs: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("botwatch")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(cli.storage, args).await,
            Command::Demo(args) => demo(cli.storage, args).await,
            Command::DataLoss { action } => data_loss(cli.storage, action).await,
            Command::Users { action } => {
                accounts::users(account_store(cli.storage).await?, action).await
            }
            Command::Tokens { action } => {
                accounts::tokens(account_store(cli.storage).await?, action).await
            }
            Command::Openapi => {
                println!("{}", botwatch_server::openapi::json());
                Ok(())
            }
        }
    })
}

fn init_tracing(filter: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("bad log filter {filter:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

fn storage_config(args: StorageArgs, default_dir: &str) -> StorageConfig {
    match args.redis {
        Some(url) => {
            let mut redis = RedisConfig::new(url);
            redis.prefix = args.redis_prefix;
            StorageConfig::Redis(redis)
        }
        None => StorageConfig::Embedded {
            dir: args.data.unwrap_or_else(|| PathBuf::from(default_dir)),
        },
    }
}

/// The accounts of the storage `serve` would use.
async fn account_store(args: StorageArgs) -> Result<botwatch_accounts::AccountStore> {
    let storage = storage_config(args, "./botwatch-data");
    let location = botwatch_server::accounts_location(&storage);
    botwatch_accounts::AccountStore::open(&location)
        .await
        .with_context(|| format!("cannot open the accounts ({location})"))
}

fn secret_key_from_env() -> Option<String> {
    std::env::var("BOTWATCH_SECRET_KEY")
        .ok()
        .filter(|k| !k.is_empty())
}

fn admin_token_from_env() -> Option<String> {
    std::env::var("BOTWATCH_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
}

/// Cancelled on Ctrl-C or SIGTERM.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => info!("interrupted"),
            _ = term => info!("terminated"),
        }
        cancel.cancel();
    });
    token
}

/// Validates the configuration, opens the storage, then binds the port.
async fn start(config: Config) -> Result<(Server, TcpListener)> {
    config.validate().context("invalid configuration")?;
    let listen = config.listen;
    let server = Server::open(config)
        .await
        .context("cannot open the storage")?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    Ok((server, listener))
}

/// The server's configuration from the shared arguments.
fn server_config(storage: StorageArgs, listen: SocketAddr, default_dir: &str) -> Config {
    let (snapshot_every, retain_events) = (storage.snapshot_every, storage.retain_events);
    let origins = storage.allowed_origins.clone();
    let proxies = storage.trusted_proxies.clone();
    let (public_url, telegram_api) = (storage.public_url.clone(), storage.telegram_api.clone());
    let endpoints = (
        storage.ga_endpoint.clone(),
        storage.mixpanel_endpoint.clone(),
    );
    let mut config = Config::new(listen, storage_config(storage, default_dir));
    config.snapshot_every = snapshot_every;
    config.retain_events = retain_events;
    config.allowed_origins = origins;
    config.trusted_proxies = proxies;
    config.public_url = public_url;
    config.telegram_api = telegram_api;
    (config.ga_endpoint, config.mixpanel_endpoint) = endpoints;
    config
}

async fn serve(storage: StorageArgs, args: ServeArgs) -> Result<()> {
    let mut config = server_config(storage, args.listen, "./botwatch-data");
    config.admin_token = admin_token_from_env();
    config.secret_key = secret_key_from_env();
    if config.admin_token.is_none() {
        warn!("BOTWATCH_ADMIN_TOKEN is not set: every API request will be refused with 401");
    }
    let (server, listener) = start(config).await?;
    let addr = listener.local_addr().context("listener address")?;
    println!("botwatch listening on http://{addr}");
    server.serve(listener, shutdown_on_signals()).await?;
    Ok(())
}

async fn demo(storage: StorageArgs, args: DemoArgs) -> Result<()> {
    let mut config = server_config(storage, args.listen, "./botwatch-demo-data");
    let token = admin_token_from_env().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    config.admin_token = Some(token.clone());
    config.secret_key = secret_key_from_env();
    let data = match &config.storage {
        StorageConfig::Embedded { dir } => format!("{} (embedded)", dir.display()),
        StorageConfig::Redis(r) => format!("Redis, keys {}*", r.prefix),
    };
    let (server, listener) = start(config).await?;
    let addr = listener.local_addr().context("listener address")?;
    let shutdown = shutdown_on_signals();
    let demo_password = accounts::demo_admin(server.state().auth.accounts()).await?;

    let simulator = botwatch_demo::SimulatorConfig {
        base_url: format!("http://{addr}"),
        token: token.clone(),
        concurrent_dialogs: args.dialogs.max(1),
        ..botwatch_demo::SimulatorConfig::default()
    };
    let simulation = tokio::spawn(botwatch_demo::run(simulator, shutdown.clone()));
    let faq = botwatch_demo::faq::FaqConfig {
        base_url: format!("http://{addr}"),
        token: token.clone(),
    };
    // Tags, roles and a few edits, once the simulated users are there.
    tokio::spawn(botwatch_demo::audience::seed(
        botwatch_demo::audience::AudienceConfig {
            base_url: format!("http://{addr}"),
            token: token.clone(),
            bots: vec!["helpdesk".to_owned(), "shop".to_owned()],
        },
    ));
    // The FAQ bot calls the API, which answers once `serve` runs (below): start it
    // beside, and say where the web chat is when it is ready.
    let chat = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { botwatch_demo::faq::start(faq, shutdown).await })
    };

    println!("botwatch demo is running at http://{addr}");
    println!("  dashboard:   open http://{addr}/ in a browser and log in as below");
    println!("  storage:     {data}");
    println!(
        "  log in:      user {}, password {demo_password}",
        accounts::DEMO_ADMIN
    );
    println!(
        "               curl -s -c cookies -H 'content-type: application/json' \\\n                 \
         -d '{{\"username\":\"{}\",\"password\":\"{demo_password}\"}}' http://{addr}/api/v1/session",
        accounts::DEMO_ADMIN
    );
    println!("  admin token: {token}");
    println!("  figures:     curl -s http://{addr}/metrics | grep botwatch_events");
    println!(
        "  send one:    curl -s -H 'Authorization: Bearer {token}' -d \\\n                 \
         '{{\"bot\":\"mybot\",\"type\":\"message\",\"direction\":\"in\",\"provider\":\"web\",\"user\":{{\"id\":\"me\"}},\"text\":\"hi\"}}' \\\n                 \
         http://{addr}/api/v1/events"
    );
    println!(
        "  read it:     curl -s -H 'Authorization: Bearer {token}' \\\n                 \
         http://{addr}/api/v1/bots/mybot/dialogs/me/messages"
    );
    println!(
        "  web chat:    http://{addr}/chat/{} (a demo FAQ bot answers; take the dialog over \
         on the Dialogs page to answer yourself)",
        botwatch_demo::faq::FAQ_BOT
    );
    println!("Press Ctrl-C to stop.");
    tokio::spawn(async move {
        match chat.await {
            Ok(Ok(url)) => info!(url, "the demo FAQ bot answers the web chat"),
            Ok(Err(e)) => warn!(error = %e, "the demo FAQ bot is not running"),
            Err(e) => warn!(error = %e, "the demo FAQ bot failed to start"),
        }
    });
    server.serve(listener, shutdown.clone()).await?;
    match tokio::time::timeout(Duration::from_secs(5), simulation).await {
        Ok(Ok(Ok(stats))) => info!(
            events = stats.events_sent,
            failed = stats.requests_failed,
            "traffic simulator stopped"
        ),
        Ok(Ok(Err(e))) => warn!(error = %e, "traffic simulator failed"),
        Ok(Err(e)) => warn!(error = %e, "traffic simulator task failed"),
        Err(_) => warn!("traffic simulator did not stop in time"),
    }
    Ok(())
}

async fn data_loss(storage: StorageArgs, action: DataLossAction) -> Result<()> {
    let storage = storage_config(storage, "./botwatch-data");
    let open_hint = match &storage {
        StorageConfig::Embedded { dir } => format!(
            "cannot open the embedded store in {} (stop botwatch serve first)",
            dir.display()
        ),
        StorageConfig::Redis(r) => format!("cannot reach Redis (keys {}*)", r.prefix),
    };
    match action {
        DataLossAction::Show => {
            let record = botwatch_server::recorded_data_loss(&storage)
                .await
                .context(open_hint)?;
            match record {
                Some(r) => println!("data lost (recorded {}): {}", r.at, r.reason),
                None => println!("no loss of data recorded"),
            }
        }
        DataLossAction::Clear => {
            let cleared = botwatch_server::clear_data_loss(&storage)
                .await
                .context(open_hint)?;
            match cleared.record {
                Some(r) => println!("cleared (recorded {}): {}", r.at, r.reason),
                None => println!("no loss of data was recorded"),
            }
            if let Some(meta) = cleared.snapshot {
                println!(
                    "the snapshot now carries on from {} under the storage's epoch {}",
                    meta.position, meta.epoch
                );
            }
        }
    }
    Ok(())
}
