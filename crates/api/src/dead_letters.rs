//! The projections' dead letters, for admins: list them, and retry or skip
//! one, as `ticket-projector dead-letters list|retry|skip` do.
//!
//! The routes call [`projector::DeadLetterAdmin`], the projector's own
//! service for ops, never a store: what a retry or a skip means (a
//! projection stopped at the letter picks the change up within a second; one
//! already past it needs a rebuild) stays in the projector's `dead_letter`
//! module, the one home of the dead-letter policy, for the CLI and HTTP
//! alike. The routes carry that service as their own state rather than as a
//! field of [`crate::AppState`]: like `/readyz`, they are the composition
//! root's to add (it owns the store the service holds), through
//! [`routes`] merged into [`crate::router_with`]'s `extra`, so they get the
//! same middleware and role table. A dead letter is named by its projection
//! and its store position, as on the command line.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use projector::{DeadLetterAdmin, ProjectorError};
use readmodel::{DeadLetter, DeadLetterState, Projection};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;
use crate::params::Query;

/// The list route.
pub const LIST: &str = "/projections/dead-letters";
/// The retry route.
pub const RETRY: &str = "/projections/{projection}/dead-letters/{position}/retry";
/// The skip route.
pub const SKIP: &str = "/projections/{projection}/dead-letters/{position}/skip";

/// The dead-letter routes over `admin` (see the module docs).
pub fn routes(admin: Arc<DeadLetterAdmin>) -> Router {
    Router::new()
        .route(LIST, get(list))
        .route(RETRY, post(retry))
        .route(SKIP, post(skip))
        .with_state(admin)
}

/// A projection, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ProjectionName)]
pub(crate) enum ProjectionName {
    Detail,
    List,
    Dashboard,
}

impl From<ProjectionName> for Projection {
    fn from(name: ProjectionName) -> Self {
        match name {
            ProjectionName::Detail => Projection::Detail,
            ProjectionName::List => Projection::List,
            ProjectionName::Dashboard => Projection::Dashboard,
        }
    }
}

impl From<Projection> for ProjectionName {
    fn from(projection: Projection) -> Self {
        match projection {
            Projection::Detail => ProjectionName::Detail,
            Projection::List => ProjectionName::List,
            Projection::Dashboard => ProjectionName::Dashboard,
        }
    }
}

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = DeadLetterState)]
enum StateName {
    /// The projection stopped at it (or skipped it by policy) and waits for ops.
    Pending,
    /// Ops asked to apply it again; it is pending again if that fails.
    Retry,
    /// Passed by: the projection treats it as changing nothing.
    Skipped,
    /// A retry applied it.
    Resolved,
}

impl From<DeadLetterState> for StateName {
    fn from(state: DeadLetterState) -> Self {
        match state {
            DeadLetterState::Pending => StateName::Pending,
            DeadLetterState::Retry => StateName::Retry,
            DeadLetterState::Skipped => StateName::Skipped,
            DeadLetterState::Resolved => StateName::Resolved,
        }
    }
}

/// An event a projection could not apply, with the reason; the fields of
/// `ticket-projector dead-letters list --json`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DeadLetter)]
struct LetterResponse {
    projection: ProjectionName,
    /// The event's store position: with the projection, the dead letter's name.
    #[schema(minimum = 0)]
    position: u64,
    ticket_id: Uuid,
    /// The event's version in its ticket's stream.
    #[schema(minimum = 1)]
    version: u64,
    /// The stored event type, e.g. one a newer writer added.
    event_type: String,
    state: StateName,
    /// Why the projection could not apply it.
    reason: String,
    /// When it was last recorded (a failed retry records it again).
    recorded_at: DateTime<Utc>,
    /// The whole stored event.
    #[schema(value_type = Object)]
    event: serde_json::Value,
}

impl From<DeadLetter> for LetterResponse {
    fn from(letter: DeadLetter) -> Self {
        LetterResponse {
            projection: letter.projection.into(),
            position: letter.position,
            ticket_id: letter.ticket_id,
            version: letter.version,
            event_type: letter.event_type,
            state: letter.state.into(),
            reason: letter.reason,
            recorded_at: letter.recorded_at,
            event: letter.event,
        }
    }
}

/// Dead letters, by projection then position, in every state.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DeadLetters)]
struct ListResponse {
    dead_letters: Vec<LetterResponse>,
}

/// A dead letter after a retry or skip was asked for.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DeadLetterChange)]
struct ChangeResponse {
    dead_letter: LetterResponse,
    /// The projection's live checkpoint.
    #[schema(minimum = 0)]
    live_checkpoint: u64,
    /// Whether the live checkpoint is already at or past the letter (the
    /// `skip` policy passed it): then no projection is stopped at it, and a
    /// retry takes `ticket-projector rebuild --projection P` to apply it.
    already_passed: bool,
}

/// The query of `GET /projections/dead-letters`, read by `params::Query`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this projection's dead letters.
    projection: Option<ProjectionName>,
}

/// The path of a dead letter: `{projection}` a projection's name, else a 400
/// naming `projection`; `{position}` a whole number, else a 400 naming
/// `position`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LetterPath {
    projection: Projection,
    position: u64,
}

impl<S> FromRequestParts<S> for LetterPath
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((projection, position)) =
            Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::invalid_parameter("position", "the path does not decode"))?;
        let projection = projection.parse::<Projection>().map_err(|_| {
            ApiError::invalid_parameter("projection", "must be one of detail, list or dashboard")
        })?;
        let position = position.parse::<u64>().map_err(|_| {
            ApiError::invalid_parameter("position", "must be a store position: a whole number")
        })?;
        Ok(LetterPath {
            projection,
            position,
        })
    }
}

fn projector_error(error: ProjectorError) -> ApiError {
    match error {
        ProjectorError::Views(error) => error.into(),
        ProjectorError::Events(error) => error.into(),
        other => ApiError::Internal(Box::new(other)),
    }
}

/// The projections' dead letters (admins only).
#[utoipa::path(
    get,
    path = "/projections/dead-letters",
    tag = "projections",
    params(ListQuery),
    responses(
        (status = 200, description = "Dead letters, by projection then position, in every state", body = ListResponse),
        (status = 400, description = "An unknown, repeated or empty query parameter, or a bad `X-Actor`"),
        (status = 422, description = "`projection` is not detail, list or dashboard"),
    )
)]
pub(crate) async fn list(
    State(admin): State<Arc<DeadLetterAdmin>>,
    Query(query): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let letters = admin
        .list(query.projection.map(Projection::from))
        .await
        .map_err(projector_error)?;
    Ok(axum::Json(ListResponse {
        dead_letters: letters.into_iter().map(LetterResponse::from).collect(),
    }))
}

/// Asks the projection to apply the dead letter again (after an upgrade or a
/// fix); a projection stopped at it does within a second, and if it fails
/// again the letter is pending again.
#[utoipa::path(
    post,
    path = "/projections/{projection}/dead-letters/{position}/retry",
    tag = "projections",
    params(
        ("projection" = ProjectionName, Path, description = "The projection: detail, list or dashboard"),
        ("position" = u64, Path, minimum = 0, description = "The dead letter's store position"),
    ),
    responses(
        (status = 200, description = "Marked `retry`", body = ChangeResponse),
        (status = 400, description = "`projection` is not a projection's name, `position` not a whole number, or a bad `X-Actor`"),
        (status = 404, description = "The projection has no dead letter at this position"),
    )
)]
pub(crate) async fn retry(
    State(admin): State<Arc<DeadLetterAdmin>>,
    path: LetterPath,
) -> Result<impl IntoResponse, ApiError> {
    change(&admin, path, DeadLetterState::Retry).await
}

/// Passes the dead letter by: a projection stopped at it carries on within a
/// second, the ticket's row moving to the letter's version with nothing else
/// changed.
#[utoipa::path(
    post,
    path = "/projections/{projection}/dead-letters/{position}/skip",
    tag = "projections",
    params(
        ("projection" = ProjectionName, Path, description = "The projection: detail, list or dashboard"),
        ("position" = u64, Path, minimum = 0, description = "The dead letter's store position"),
    ),
    responses(
        (status = 200, description = "Marked `skipped`", body = ChangeResponse),
        (status = 400, description = "`projection` is not a projection's name, `position` not a whole number, or a bad `X-Actor`"),
        (status = 404, description = "The projection has no dead letter at this position"),
    )
)]
pub(crate) async fn skip(
    State(admin): State<Arc<DeadLetterAdmin>>,
    path: LetterPath,
) -> Result<impl IntoResponse, ApiError> {
    change(&admin, path, DeadLetterState::Skipped).await
}

async fn change(
    admin: &DeadLetterAdmin,
    LetterPath {
        projection,
        position,
    }: LetterPath,
    state: DeadLetterState,
) -> Result<axum::Json<ChangeResponse>, ApiError> {
    let Some((letter, change)) = admin
        .set(projection, position, state)
        .await
        .map_err(projector_error)?
    else {
        return Err(ApiError::not_found(format!(
            "{projection} has no dead letter at position {position} (see GET /projections/dead-letters)"
        )));
    };
    Ok(axum::Json(ChangeResponse {
        dead_letter: letter.into(),
        live_checkpoint: change.live_checkpoint,
        already_passed: change.live_checkpoint >= position,
    }))
}
