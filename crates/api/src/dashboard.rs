//! The dashboard resource: ticket counts per status, from the read model.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use readmodel::{Dashboard, Projection};
use serde::Serialize;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{freshness_headers, min_position};
use crate::tickets::decode_query;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/dashboard", get(show))
}

#[derive(Debug, Serialize)]
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

async fn show(
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
