//! The dashboard resource: ticket counts per status, from the read model.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use readmodel::{Dashboard, Projection};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::wait_for;
use crate::params::{self, Query};

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/dashboard", get(show))
}

/// Ticket counts per status.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Dashboard)]
struct DashboardResponse {
    open: u64,
    triaged: u64,
    closed: u64,
    total: u64,
}

impl From<Dashboard> for DashboardResponse {
    fn from(counts: Dashboard) -> Self {
        DashboardResponse {
            open: counts.open,
            triaged: counts.triaged,
            closed: counts.closed,
            total: counts.total(),
        }
    }
}

/// The query of `GET /dashboard`, read by `params::Query`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DashboardQuery {
    /// Wait until the dashboard has applied this store position.
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "params::min_position")]
    min_position: Option<u64>,
}

/// Ticket counts per status, from the dashboard read model.
#[utoipa::path(
    get,
    path = "/dashboard",
    tag = "dashboard",
    params(DashboardQuery),
    responses(
        (status = 200, description = "Counts per status", body = DashboardResponse),
        (status = 400, description = "An unknown, repeated or empty query parameter, or a bad `X-Actor`"),
        (status = 422, description = "A query parameter breaks its rule"),
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    Query(query): Query<DashboardQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let headers = wait_for(&state.queries, Projection::Dashboard, query.min_position).await?;
    let counts = state.queries.dashboard().await?;
    Ok((headers, Json(DashboardResponse::from(counts))))
}
