//! The botwatch service as a library: [`Server::open`] opens the storage,
//! [`Server::serve`] answers HTTP on a listener until the shutdown token fires.
//! The binary only parses arguments; tests start the same server on port 0.

mod audience;
pub mod auth;
mod broadcasts;
pub mod channels;
mod client;
mod config;
mod dashboard;
mod error;
mod figures;
mod follower;
pub mod forward;
#[doc(hidden)]
pub mod fuzzing;
mod handoff;
mod health;
mod history;
mod ingest;
mod integrity;
pub mod live;
mod metrics;
mod modes;
pub mod openapi;
pub mod outbox;
mod retention;
pub mod routes;
mod session;
mod settings;
pub mod snapshot;
mod start;
mod users;
mod vault;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use botwatch_log::{AnyLog, EventLog, StorageConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::{info, warn};

pub use config::{Config, ConfigError, GA_ENDPOINT, MIXPANEL_ENDPOINT, TELEGRAM_API};
pub use error::ApiError;
pub use integrity::{Cleared, Integrity, clear_data_loss, recorded_data_loss};
pub use metrics::Metrics;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub log: Arc<AnyLog>,
    pub aggregator: botwatch_aggregator::AggregatorHandle,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<auth::Auth>,
    pub limits: Arc<botwatch_event::Limits>,
    /// Ingest requests that may hold a body in memory at once (each up to 4 MiB).
    pub ingest_slots: Arc<tokio::sync::Semaphore>,
    /// A request body must arrive within this time (a slow sender holds a slot).
    pub body_timeout: Duration,
    pub integrity: Arc<Integrity>,
    /// The live hub's topics (deltas made on the aggregator's thread).
    pub hub: Arc<botwatch_live::Hub>,
    /// Live connections this node may still take.
    pub live_slots: Arc<tokio::sync::Semaphore>,
    /// Web chat connections this node may still take.
    pub chat_slots: Arc<tokio::sync::Semaphore>,
    /// Web chats open per client address.
    pub chats_per_address: Arc<channels::webchat::ChatsPerAddress>,
    /// Cancelled when the server stops: live connections close (1001).
    pub live_stop: CancellationToken,
    /// Bots whose overview and statistics topics wait for the next flush.
    pub live_dirty: Arc<live::Dirty>,
    /// Origins besides the server's own whose pages may open live WebSockets.
    pub allowed_origins: Arc<Vec<String>>,
    /// Seals and opens the secrets in settings.
    pub vault: Arc<vault::Vault>,
    /// Proxies whose `X-Forwarded-For` / `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Arc<Vec<client::Network>>,
    /// Outbound calls (bots' webhooks, Telegram); one pool of connections for all.
    pub http: reqwest::Client,
    /// This process's id among the deployment's nodes (made at start).
    pub node: Arc<str>,
    /// `BOTWATCH_PUBLIC_URL`: where users and bots reach this server (file addresses).
    pub public_url: Option<String>,
    /// `BOTWATCH_TELEGRAM_API`: the Bot API's base address.
    pub telegram_api: String,
    /// Each bot's hand-off phrases, as recently read.
    pub handoff_phrases: Arc<handoff::Phrases>,
    /// Operator messages being delivered: a graceful stop lets them finish (within
    /// the grace period) rather than leave them claimed without an outcome.
    pub deliveries: Arc<outbox::Deliveries>,
    /// The broadcasts this node sends.
    pub broadcast_runs: Arc<broadcasts::Runs>,
    /// The follower has read the log up to the head it found at start: until then the
    /// figures lack what was written before, and nothing is sent from them.
    pub caught_up: Arc<std::sync::atomic::AtomicBool>,
    /// Where the follower has read to (what the figures have applied).
    pub followed: Arc<std::sync::Mutex<botwatch_log::Position>>,
    /// Analytics forwarding's workers on this node and what they last did.
    pub forwarding: Arc<forward::Forwarding>,
    /// `BOTWATCH_GA_ENDPOINT`, `BOTWATCH_MIXPANEL_ENDPOINT`.
    pub ga_endpoint: String,
    pub mixpanel_endpoint: String,
}

/// How many live (WebSocket) connections one node holds at most.
pub const LIVE_CONNECTIONS: usize = 20_000;

/// How many web chat connections one node holds at most (apart from the dashboards').
pub const CHAT_CONNECTIONS: usize = 2_000;

/// How many ingest bodies may be in memory at once: 64 × 4 MiB at most.
pub const INGEST_SLOTS: usize = 64;

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (route, handler) in routes::table() {
        let guard =
            axum::middleware::from_fn_with_state((state.clone(), route.access), auth::guard);
        router = router.route(route.path, handler.route_layer(guard));
    }
    router
        .fallback(dashboard::serve)
        // Headers on every answer (a handler may set its own first).
        .layer(secure(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
        .layer(secure(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(secure(header::REFERRER_POLICY, "no-referrer"))
        .layer(secure(header::X_FRAME_OPTIONS, "DENY"))
        .layer(RequestBodyTimeoutLayer::new(state.body_timeout))
        .layer(CatchPanicLayer::custom(error::panic_response))
        // Request spans name the path without a Bot API token (the proxy's paths hold one).
        .layer(TraceLayer::new_for_http().make_span_with(
            |request: &axum::http::Request<axum::body::Body>| {
                tracing::debug_span!(
                    "request",
                    method = %request.method(),
                    path = %channels::telegram::redact_path(request.uri().path()),
                )
            },
        ))
        .with_state(state)
}

/// The Content-Security-Policy of every answer: the dashboard's own scripts, styles
/// and connections only, images also from https (users' avatars, pictures they sent);
/// no inline script, no plugins, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob: https:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn secure(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the event log: {0}")]
    Storage(#[from] botwatch_log::LogError),
    #[error("http server failed: {0}")]
    Http(#[from] std::io::Error),
    #[error("cannot read or make the secret key: {0}")]
    SecretKey(String),
    #[error("cannot open the accounts: {0}")]
    Accounts(#[from] botwatch_accounts::AccountsError),
    #[error("the aggregator stopped unexpectedly (see the log)")]
    AggregatorStopped,
    #[error("cannot make the HTTP client for webhooks: {0}")]
    HttpClient(String),
}

/// Where the accounts of a storage are kept: beside the embedded log in its directory,
/// or in the same Redis under the same prefix.
pub fn accounts_location(storage: &StorageConfig) -> botwatch_accounts::Location {
    match storage {
        StorageConfig::Embedded { dir } => botwatch_accounts::Location::Dir(dir.clone()),
        StorageConfig::Redis(redis) => botwatch_accounts::Location::Redis {
            url: redis.url.clone(),
            prefix: redis.prefix.clone(),
        },
    }
}

/// The vault of secrets in settings: `BOTWATCH_SECRET_KEY`, else (embedded) the key
/// file in the data directory, else (Redis) none, so secrets are refused.
fn open_vault(config: &Config) -> Result<vault::Vault, ServerError> {
    if let Some(key) = config.secret_key.as_deref().and_then(vault::parse_key) {
        return Ok(vault::Vault::with_key(&key));
    }
    match &config.storage {
        StorageConfig::Embedded { dir } => {
            vault::Vault::in_dir(dir).map_err(|e| ServerError::SecretKey(e.to_string()))
        }
        StorageConfig::Redis(_) => {
            info!("BOTWATCH_SECRET_KEY is not set: settings that hold secrets will be refused");
            Ok(vault::Vault::closed())
        }
    }
}

/// An opened service: storage ready, not yet answering.
pub struct Server {
    config: Config,
    state: AppState,
    aggregator_task: tokio::task::JoinHandle<()>,
    /// Where the follower starts: the snapshot's position, or the start of the log.
    start: follower::Start,
}

impl Server {
    /// Validates the configuration and opens the storage.
    pub async fn open(config: Config) -> Result<Server, ServerError> {
        config.validate()?;
        let log = AnyLog::open(&config.storage).await?;
        info!(backend = log.backend_name(), "storage open");
        let node = uuid::Uuid::now_v7().simple().to_string();
        let (start, restored) = start::restore(&log, &node).await?;
        let hub = Arc::new(botwatch_live::Hub::new(botwatch_live::HubConfig::default()));
        let dirty = Arc::new(live::Dirty::default());
        let (publisher, marks) = (hub.clone(), dirty.clone());
        let (aggregator, aggregator_task) = botwatch_aggregator::AggregatorHandle::spawn_with(
            restored,
            Box::new(move |state, events| live::on_applied(&publisher, &marks, state, events)),
        );
        let accounts =
            botwatch_accounts::AccountStore::open(&accounts_location(&config.storage)).await?;
        let auth = auth::Auth::new(
            config.admin_token.clone(),
            Arc::new(accounts),
            config.sessions,
            config.logins,
        );
        let state = AppState {
            log: Arc::new(log),
            aggregator,
            metrics: Arc::new(Metrics::new()),
            auth: Arc::new(auth),
            limits: Arc::new(botwatch_event::Limits::default()),
            ingest_slots: Arc::new(tokio::sync::Semaphore::new(INGEST_SLOTS)),
            body_timeout: config.body_timeout,
            integrity: Arc::new(Integrity::default()),
            hub,
            live_slots: Arc::new(tokio::sync::Semaphore::new(LIVE_CONNECTIONS)),
            chat_slots: Arc::new(tokio::sync::Semaphore::new(CHAT_CONNECTIONS)),
            chats_per_address: Arc::default(),
            live_stop: CancellationToken::new(),
            live_dirty: dirty,
            allowed_origins: Arc::new(config.allowed_origins.clone()),
            vault: Arc::new(open_vault(&config)?),
            trusted_proxies: Arc::new(
                config
                    .trusted_proxies
                    .iter()
                    .filter_map(|n| client::Network::parse(n))
                    .collect(),
            ),
            http: reqwest::Client::builder()
                .user_agent(concat!("botwatch/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ServerError::HttpClient(e.to_string()))?,
            node: node.as_str().into(),
            public_url: config.public_url.clone(),
            telegram_api: config.telegram_api.clone(),
            handoff_phrases: Arc::default(),
            deliveries: Arc::default(),
            broadcast_runs: broadcasts::runs(),
            caught_up: Arc::default(),
            followed: Arc::default(),
            forwarding: Arc::default(),
            ga_endpoint: config.ga_endpoint.clone(),
            mixpanel_endpoint: config.mixpanel_endpoint.clone(),
        };
        Ok(Server {
            config,
            state,
            aggregator_task,
            start,
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Answers HTTP on `listener` until `shutdown` is cancelled, then shuts down in
    /// order: stop accepting, finish requests in flight (within the grace period),
    /// stop the log follower, close the log.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), ServerError> {
        let Server {
            config,
            state,
            aggregator_task,
            start,
        } = self;
        if let Some(record) = &start.data_loss {
            state.integrity.set(record.clone(), &state.metrics);
        }
        if start.log_behind_snapshot {
            state.metrics.log_behind_snapshot.set(1);
        }
        // Stops on the caller's signal, or by itself when the aggregator dies (a bug:
        // better to stop and be restarted, which rebuilds every figure from the log,
        // than to answer with figures that no longer move).
        let shutdown = shutdown.child_token();
        let aggregator_died = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (shutdown, died) = (shutdown.clone(), aggregator_died.clone());
            tokio::spawn(async move {
                let ended = aggregator_task.await;
                if !shutdown.is_cancelled() {
                    tracing::error!(?ended, "the aggregator stopped; shutting down");
                    died.store(true, std::sync::atomic::Ordering::Relaxed);
                    shutdown.cancel();
                }
            });
        }
        let follower_stop = CancellationToken::new();
        let follower = tokio::spawn(follower::run(
            state.log.clone(),
            state.aggregator.clone(),
            state.metrics.clone(),
            state.integrity.clone(),
            start,
            follower::Options {
                caught_up: state.caught_up.clone(),
                followed: state.followed.clone(),
                snapshot_every: config.snapshot_every,
                retain_events: config.retain_events,
            },
            follower_stop.clone(),
        ));

        // Topics nobody has read for five minutes are forgotten; the whole-bot topics
        // are sent when they changed, at most every `FLUSH_EVERY`. A loss of data found
        // or cleared makes every topic's history stale: connected dashboards resync
        // (their connections watch it too), and one resuming later gets a snapshot.
        {
            let (hub, stop) = (state.hub.clone(), state.live_stop.clone());
            let (aggregator, dirty) = (state.aggregator.clone(), state.live_dirty.clone());
            let integrity = state.integrity.clone();
            let mut loss_shown = integrity.subscribe();
            tokio::spawn(async move {
                let mut sweep = tokio::time::interval(Duration::from_secs(30));
                let mut flush = tokio::time::interval(live::FLUSH_EVERY);
                flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = sweep.tick() => hub.sweep(Duration::from_secs(300)),
                        changed = loss_shown.changed() => match changed {
                            Ok(()) => hub.forget_history(),
                            Err(_) => return,
                        },
                        _ = flush.tick() => {
                            let (hub, dirty) = (hub.clone(), dirty.clone());
                            let loss = crate::integrity::DataLossItem::of(integrity.data_loss().as_ref());
                            if aggregator.query(move |a| live::flush(&hub, &dirty, a, loss)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
        // Operator messages nobody is delivering (a node stopped; a restart).
        let sweeping = tokio::spawn(outbox::sweep(state.clone(), state.live_stop.clone()));
        // Broadcasts: each run by one node at a time.
        let broadcasting = tokio::spawn(broadcasts::run(state.clone(), state.live_stop.clone()));
        // Analytics forwarding: each integration worked by one node at a time.
        let forwarding = tokio::spawn(forward::run(state.clone(), state.live_stop.clone()));
        let app = router(state.clone());
        let http_stop = shutdown.clone();
        // TCP_NODELAY: a live frame goes out when it is written, not after Nagle's wait.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let http = axum::serve(listener, app).with_graceful_shutdown(async move {
            http_stop.cancelled().await;
        });
        let mut http = tokio::spawn(http.into_future());

        shutdown.cancelled().await;
        info!("shutting down: no new connections; finishing requests in flight");
        state.live_stop.cancel();
        let finished = tokio::time::timeout(config.shutdown_grace, &mut http).await;
        if finished.is_err() {
            http.abort();
        }
        match finished {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "http server stopped with an error"),
            Ok(Err(e)) => warn!(error = %e, "http server task failed"),
            Err(_) => {
                warn!(grace = ?config.shutdown_grace, "requests still running after the grace period; dropping them")
            }
        }
        // Deliveries under way finish and record their outcome (Telegram's retry_after
        // can be longer than the grace: those are left to the sweeper's rules).
        state.deliveries.finish(config.shutdown_grace).await;
        // Nothing that writes to the storage outlives the stop (a restart in the same
        // process must find the embedded store free).
        let _ = tokio::time::timeout(config.shutdown_grace, broadcasting).await;
        let _ = tokio::time::timeout(config.shutdown_grace, sweeping).await;
        let _ = tokio::time::timeout(config.shutdown_grace, forwarding).await;
        // The follower takes a last snapshot as it stops.
        follower_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(30), follower).await;
        state.log.close().await;
        info!("stopped");
        if aggregator_died.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ServerError::AggregatorStopped);
        }
        Ok(())
    }
}

/// Opens the storage and serves until `shutdown` fires.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    Server::open(config).await?.serve(listener, shutdown).await
}
