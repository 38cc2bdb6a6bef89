//! The dashboard resource: ticket counts per status, from the read model.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use readmodel::{Dashboard, Projection};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{freshness_headers, min_position};
use crate::openapi::Problem;
use crate::tickets::decode_query;

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

/// The query of `GET /dashboard`, for the OpenAPI document (the handler
/// reads the pairs itself and refuses unknown ones).
#[derive(Debug, serde::Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct DashboardQuery {
    /// Wait until the dashboard has applied this store position.
    #[param(minimum = 0)]
    min_position: Option<u64>,
}

/// Ticket counts per status, from the dashboard read model.
#[utoipa::path(
    get,
    path = "/dashboard",
    tag = "dashboard",
    params(DashboardQuery),
    responses(
        (status = 200, description = "Counts per status", body = DashboardResponse,
            headers(
                ("X-Read-Position" = u64, description = "With `min_position`: the position the read model had applied"),
                ("X-Read-Stale" = String, description = "With `min_position`, when the wait bound passed first: `behind=K`"),
            )),
        (status = 400, description = "An undecodable query string, or a bad `X-Actor`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad, unknown or repeated query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let mut min = None;
    for (name, value) in decode_query(query)? {
        match name.as_str() {
            "min_position" if min.is_some() => {
                return Err(ApiError::validation(name, "must be given at most once"));
            }
            "min_position" if value.is_empty() => {}
            "min_position" => min = Some(min_position(&value)?),
            _ => {
                return Err(ApiError::validation(
                    name,
                    "unknown query parameter; expected min_position",
                ));
            }
        }
    }
    let freshness = match min {
        Some(position) => Some(
            state
                .queries
                .wait_for(Projection::Dashboard, position)
                .await?,
        ),
        None => None,
    };
    let counts = state.queries.dashboard().await?;
    Ok((
        freshness_headers(freshness),
        Json(DashboardResponse::from(counts)),
    ))
}
