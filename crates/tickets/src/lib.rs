//! The composition root: turns configuration into running pieces.
//!
//! Both binaries (`ticketd`, `ticket-projector`) are thin `main`s over this
//! crate: it parses the store URL, opens the backend it names, wires the write
//! side, query side, projector and HTTP router together (plus `/readyz` and `/metrics`), runs
//! the projector's operations commands ([`ops`]), and owns process concerns
//! (logging, shutdown signals, progress output, text tables ([`table`])). No
//! business rule lives here.

pub mod backend;
pub mod cli;
pub mod erasure;
pub mod ops;
mod progress;
pub mod prometheus;
mod readiness;
pub mod server;
pub mod silence;
pub mod store_url;
pub mod table;
pub mod telemetry;
pub mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use projector::{Projector, ProjectorConfig};
use tokio_util::sync::CancellationToken;

pub use backend::Backend;
pub use store_url::StoreUrl;

/// Everything `ticketd` needs to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub store: StoreUrl,
    /// Run the projector inside the server process (the one-command setup).
    pub in_process_projector: bool,
    pub projector: ProjectorConfig,
    /// `/readyz` answers 503 while a projection lags more than this.
    pub ready_max_lag: Duration,
    /// The longest a read with `min_position` waits for its projection.
    pub read_wait_max: Duration,
    /// Body size limit and request timeout of the HTTP API.
    pub http: api::HttpLimits,
    /// How many connections are served at once, and how long one may take
    /// to send a request head or stay idle.
    pub connections: server::ConnectionLimits,
    /// How requests are authenticated.
    pub auth: tokens::AuthMode,
    /// With `auth` on: also accept JWTs this verifies.
    pub jwt: Option<auth::JwtVerifier>,
    /// After a shutdown signal, how long in-flight requests (and open
    /// change streams whose clients stopped reading) may take before their
    /// connections are closed anyway.
    pub shutdown_grace: Duration,
    /// How long the store may answer none of a kind of request's calls,
    /// while one waits, before more are refused at once (see [`silence`]);
    /// zero refuses nothing.
    pub store_silence: Duration,
}

/// Runs the HTTP server (and, if configured, the projector) until `shutdown`
/// is cancelled; in-flight requests and the projector's batch finish first.
pub async fn serve(config: ServerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let metrics = prometheus::install()?;
    let backend = Backend::open(&config.store)
        .await
        .with_context(|| format!("opening the store {}", config.store))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;

    let projector_task = config.in_process_projector.then(|| {
        let projector = Projector::new(
            backend.events.clone(),
            backend.views.clone(),
            config.projector.clone(),
        );
        let shutdown = shutdown.clone();
        tokio::spawn(async move { projector.run(shutdown).await })
    });

    // The request path's calls, refused at once while the store is silent;
    // the projector and the change feed use the store as it is.
    let events: Arc<dyn eventstore::EventStore> = Arc::new(silence::WatchedEvents::new(
        backend.events.clone(),
        config.store_silence,
    ));
    let views: Arc<dyn readmodel::ViewReader> = Arc::new(silence::WatchedViews::new(
        backend.views.clone(),
        config.store_silence,
    ));
    let state = api::AppState {
        commands: Arc::new(write::CommandService::new(events.clone())),
        queries: Arc::new(query::QueryService::new(views).with_read_wait_max(config.read_wait_max)),
        history: Arc::new(query::History::new(events)),
        feed: Arc::new(query::ChangeFeed::new(
            backend.events.clone(),
            backend.views.clone(),
        )),
        // Open change streams end when this fires; graceful shutdown would
        // otherwise wait for them forever.
        shutdown: shutdown.clone(),
        access: match config.auth {
            tokens::AuthMode::Off => api::Access::Open,
            tokens::AuthMode::Token => {
                let authenticator = auth::Authenticator::new(backend.tokens.clone());
                api::Access::Tokens(Arc::new(match config.jwt {
                    Some(jwt) => authenticator.with_jwt(jwt),
                    None => authenticator,
                }))
            }
        },
    };
    let app = api::router_with(
        state,
        config.http,
        readiness::router(backend.clone(), config.ready_max_lag)
            .merge(prometheus::router(backend.clone(), metrics))
            .merge(api::dead_letters::routes(Arc::new(
                projector::DeadLetterAdmin::new(backend.views.clone()),
            )))
            .merge(api::customers::routes(Arc::new(erasure::eraser(&backend)))),
    )
    // The web console at `/`: static files, public, outside the API's
    // middleware (its API calls are authenticated like any client's).
    .merge(web_console::router());

    tracing::info!(%local, store = %config.store, in_process_projector = config.in_process_projector, auth = ?config.auth, "ticketd serving");
    // The one line on stdout: scripts and tests read the bound address from it
    // (useful with `--listen 127.0.0.1:0`). Logs go to stderr.
    println!("listening on http://{local}");

    server::serve(
        listener,
        app,
        config.connections,
        shutdown.clone(),
        config.shutdown_grace,
    )
    .await;

    if let Some(task) = projector_task {
        shutdown.cancel();
        task.await
            .context("joining the in-process projector")?
            .context("in-process projector")?;
    }
    backend.close().await;
    tracing::info!("ticketd stopped");
    Ok(())
}

/// Runs the projector as its own process until `shutdown` is cancelled.
pub async fn run_projector(
    store: &StoreUrl,
    config: ProjectorConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let backend = Backend::open(store)
        .await
        .with_context(|| format!("opening the store {store}"))?;
    let projector = Projector::new(backend.events.clone(), backend.views.clone(), config);
    let outcome = projector.run(shutdown).await.context("projector");
    backend.close().await;
    outcome
}

/// Applies pending migrations to the store and reports what it did on stdout.
pub async fn migrate(store: &StoreUrl) -> anyhow::Result<()> {
    let applied = Backend::migrate(store)
        .await
        .with_context(|| format!("migrating the store {store}"))?;
    if applied.is_empty() {
        println!("{store}: schema is current");
    } else {
        let versions: Vec<String> = applied.iter().map(u32::to_string).collect();
        println!("{store}: applied migrations {}", versions.join(", "));
    }
    Ok(())
}

/// A token cancelled on the first SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; finishing in-flight work");
        cancel.cancel();
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        // Without a SIGTERM handler, Ctrl-C still works.
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
