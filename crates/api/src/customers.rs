//! A customer's right to erasure over HTTP: `DELETE /customers/{customer}`,
//! for admins, as `ticketd erase-customer` does from the command line.
//!
//! The route calls [`write::erasure::Eraser`], the one home of what an
//! erasure does (find the customer's tickets, append `CustomerErased` to
//! each, rewrite words stored in clear, destroy the key, then scrub the
//! store's files once the read models show it). Like the dead-letter routes
//! it carries that service as its own state and is merged in by the
//! composition root, which owns the stores it holds.
//!
//! The erasure runs on a task of its own: a client that goes away or a
//! request that times out never stops it half-way (and a half-done erasure
//! is finished by asking again).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::delete;
use serde::Serialize;
use utoipa::ToSchema;
use write::erasure::{Eraser, ErasureError, ErasureReport};

use crate::error::ApiError;
use crate::extract::Context;

/// The route.
pub const ERASE: &str = "/customers/{customer}";

/// How long an erasure waits for the read models to show it before it
/// answers (well inside the request timeout); past it the answer says the
/// views follow.
const VIEWS_WAIT: Duration = Duration::from_secs(10);

/// The erasure route over `eraser` (see the module docs).
pub fn routes(eraser: Arc<Eraser>) -> Router {
    Router::new().route(ERASE, delete(erase)).with_state(eraser)
}

/// What an erasure did.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Erasure)]
pub(crate) struct ErasureResponse {
    /// The customer's tickets.
    #[schema(minimum = 0)]
    tickets: usize,
    /// Of them, the ones erased by this request (the rest were before).
    #[schema(minimum = 0)]
    newly_erased: usize,
    /// Events stored in clear (before sealing) whose words were rewritten.
    #[schema(minimum = 0)]
    rewritten: usize,
    /// Whether the customer's key was destroyed now.
    key_destroyed: bool,
    /// The position of the last `CustomerErased` appended (0 when none):
    /// pass it as `min_position` to read views that show the erasure.
    #[schema(minimum = 0)]
    position: u64,
    /// Whether the read models already show the erasure and the store's
    /// files were scrubbed; if not, the projector rewrites the rows when it
    /// reaches `position`.
    views_scrubbed: bool,
}

impl From<ErasureReport> for ErasureResponse {
    fn from(report: ErasureReport) -> Self {
        ErasureResponse {
            tickets: report.tickets,
            newly_erased: report.newly_erased,
            rewritten: report.rewritten,
            key_destroyed: report.key_destroyed,
            position: report.position,
            views_scrubbed: report.views_scrubbed,
        }
    }
}

/// Erases a customer: its name, subjects, messages and notes become
/// unreadable in every event and view, for good; ids, statuses and counts
/// stay, and its tickets take no more changes. Asking again finishes an
/// erasure that stopped half-way, and is a 404 once there is nothing left.
#[utoipa::path(
    delete,
    path = "/customers/{customer}",
    tag = "customers",
    params(("customer" = String, Path, description = "The customer, as its tickets name it")),
    responses(
        (status = 200, description = "Erased", body = ErasureResponse),
        (status = 400, description = "An empty or over-long customer"),
        (status = 404, description = "No ticket of this customer and no key: nothing to erase"),
    )
)]
pub(crate) async fn erase(
    State(eraser): State<Arc<Eraser>>,
    Path(customer): Path<String>,
    Context(context): Context,
) -> Result<axum::Json<ErasureResponse>, ApiError> {
    let customer = customer.trim().to_owned();
    if customer.is_empty() || customer.chars().count() > domain::LIMITS.customer {
        return Err(ApiError::invalid_parameter(
            "customer",
            format!(
                "must be 1 to {} characters after trimming",
                domain::LIMITS.customer
            ),
        ));
    }
    let report = tokio::spawn(async move { eraser.erase(&customer, context, VIEWS_WAIT).await })
        .await
        .map_err(|failed| ApiError::Internal(Box::new(failed)))?
        .map_err(|error| match error {
            ErasureError::Write(error) => ApiError::from(error),
            ErasureError::Store(error) => ApiError::from(error),
            ErasureError::Keys(sealing::KeyError::Unavailable(cause)) => {
                ApiError::Unavailable(cause)
            }
            ErasureError::Keys(other) => ApiError::Internal(Box::new(other)),
        })?;
    if report.tickets == 0 && !report.key_destroyed {
        return Err(ApiError::not_found(
            "no ticket of this customer and no key: nothing to erase",
        ));
    }
    Ok(axum::Json(report.into()))
}
