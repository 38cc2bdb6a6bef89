//! The HTTP surface: axum routes over the write side and the query side.
//!
//! This crate is thin on purpose. Each handler extracts its input (with the
//! app's own extractors, so every rejection is a problem+json body; the query
//! string through the one strict extractor, `params::Query`), makes one
//! service call and maps the answer to a private response type. Field rules live
//! in `domain` (the command constructors name the field they refuse), business
//! rules in `domain::decide`, paging rules in `query`; this crate only translates
//! between them and HTTP. All errors go through [`ApiError`], the one place where
//! a failure gets its status code and its problem+json body.
//!
//! The modules form a downward graph: `error` at the bottom, then
//! `middleware`, `extract` and `params`, then the resources (`tickets`,
//! `stream`, `dashboard`), and `openapi` on top, which only collects what the
//! others declare.
//!
//! Routes: `POST /tickets`, `GET /tickets`, `GET|PATCH /tickets/{id}`,
//! `GET /tickets/{id}/events`, `GET /tickets/stream` (the list view's changes
//! as Server-Sent Events, see `stream`), `GET /dashboard`, `GET /healthz`,
//! `GET /openapi.json`
//! (the OpenAPI 3.1 document of all of them, see [`openapi()`]). Unknown paths answer 404 and
//! unsupported methods 405, both as problem+json. The composition root adds
//! `/readyz`, `/metrics` and the dead-letter routes ([`dead_letters::routes`],
//! over the projector's service) through [`router_with`]'s `extra` routes, so
//! they share the middleware (request ids, logs, request metrics, the role
//! table).

pub mod access;
pub mod customers;
mod dashboard;
pub mod dead_letters;
mod error;
mod extract;
pub mod middleware;
mod openapi;
mod params;
mod stream;
mod tickets;

use std::sync::Arc;

use axum::Router;
use query::{ChangeFeed, History, QueryService};
use tokio_util::sync::CancellationToken;
use write::CommandService;

pub use access::{Access, Caller};
pub use error::ApiError;
pub use middleware::HttpLimits;
pub use openapi::{Readiness, openapi};

/// What the handlers share: services only, never a store.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The write side: every `POST` and `PATCH`.
    pub commands: Arc<CommandService>,
    /// The read models: detail, list and dashboard reads.
    pub queries: Arc<QueryService>,
    /// Tickets' events: `GET /tickets/{id}/events` and the time-travel reads.
    pub history: Arc<History>,
    /// The list view's changes, for `GET /tickets/stream`.
    pub feed: Arc<ChangeFeed>,
    /// Cancelled when the server shuts down: open streams end then, since
    /// graceful shutdown waits for every response to finish.
    pub shutdown: CancellationToken,
    /// How requests are authenticated (open, or bearer tokens).
    pub access: Access,
}

/// The whole HTTP API, with the default limits.
pub fn router(state: AppState) -> Router {
    router_with(state, HttpLimits::default(), Router::new())
}

/// The whole HTTP API held to `limits`, plus `extra` routes (such as the
/// composition root's `/readyz`) that get the same request ids, logs and limits.
pub fn router_with(state: AppState, limits: HttpLimits, extra: Router) -> Router {
    let access = state.access.clone();
    let app = Router::new()
        .merge(tickets::routes())
        .merge(stream::routes(limits))
        .merge(dashboard::routes())
        .with_state(state)
        .route("/healthz", axum::routing::get(middleware::healthz))
        .route("/openapi.json", axum::routing::get(openapi::serve))
        .merge(extra)
        // After every route, `extra`'s included: it applies to the routes
        // added so far, so a wrong method on `/readyz` is a problem too.
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback(error::no_route);
    middleware::apply(app, limits, access)
}
