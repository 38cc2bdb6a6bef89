//! The dashboard resource: ticket counts per status, from the read model.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use readmodel::Dashboard;
use serde::Serialize;

use crate::AppState;
use crate::error::ApiError;

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

async fn show(State(state): State<AppState>) -> Result<Json<DashboardResponse>, ApiError> {
    let counts = state.queries.dashboard().await?;
    Ok(Json(counts.into()))
}
