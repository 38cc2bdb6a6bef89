//! The tickets resource: open, change and read tickets, list them, and show a
//! ticket's raw history.
//!
//! Writes answer from the write side (the ticket as folded from its events right
//! after the append); reads come from the read models through the query side,
//! except `/events`, which reads the event store itself.

mod wire;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json as JsonResponse, Router};
use domain::{ChangeTicket, OpenTicket};
use query::{ListParams, MAX_LIMIT};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Context, Json, TicketId};
use wire::{
    ChangeRequest, EventsResponse, OpenRequest, PageResponse, STATUS_RULE, StatusWire,
    TicketResponse,
};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/tickets", get(list).post(open))
        .route("/tickets/{id}", get(show).patch(change))
        .route("/tickets/{id}/events", get(events))
}

async fn open(
    State(state): State<AppState>,
    Context(context): Context,
    Json(body): Json<OpenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let command = OpenTicket::new(&body.customer, &body.subject, &body.message)?;
    let outcome = state.commands.open(command, context).await?;
    let location = format!("/tickets/{}", outcome.ticket.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        JsonResponse(TicketResponse::from(outcome.ticket)),
    ))
}

async fn change(
    State(state): State<AppState>,
    TicketId(id): TicketId,
    Context(context): Context,
    Json(body): Json<ChangeRequest>,
) -> Result<JsonResponse<TicketResponse>, ApiError> {
    let command = ChangeTicket::new(
        body.status.map(Into::into),
        body.agent.as_ref().map(Option::as_deref),
        body.note.as_deref(),
    )?;
    let outcome = state.commands.change(id, command, context).await?;
    Ok(JsonResponse(outcome.ticket.into()))
}

async fn show(
    State(state): State<AppState>,
    TicketId(id): TicketId,
) -> Result<JsonResponse<TicketResponse>, ApiError> {
    let ticket = state.queries.ticket(id).await?;
    Ok(JsonResponse(ticket.into()))
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<JsonResponse<PageResponse>, ApiError> {
    let Query(pairs) = query
        .map_err(|_| ApiError::invalid_parameter("query", "the query string does not decode"))?;
    let params = list_params(pairs)?;
    let page = state.queries.list(params).await?;
    Ok(JsonResponse(page.into()))
}

async fn events(
    State(state): State<AppState>,
    TicketId(id): TicketId,
) -> Result<JsonResponse<EventsResponse>, ApiError> {
    let events = state.events.read_stream(id).await?;
    if events.is_empty() {
        return Err(ApiError::not_found("no ticket with this id"));
    }
    Ok(JsonResponse(events.into()))
}

/// Reads `status`, `limit` and `cursor`; an empty value counts as absent.
/// Unknown or repeated parameters are refused rather than silently ignored.
fn list_params(pairs: Vec<(String, String)>) -> Result<ListParams, ApiError> {
    let mut params = ListParams::default();
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in pairs {
        if seen.contains(&name) {
            return Err(ApiError::validation(name, "must be given at most once"));
        }
        seen.push(name.clone());
        if value.is_empty() {
            continue;
        }
        match name.as_str() {
            "status" => {
                let status = StatusWire::parse(&value)
                    .ok_or_else(|| ApiError::validation("status", STATUS_RULE))?;
                params.status = Some(status.into());
            }
            "limit" => {
                let limit = value.parse::<u32>().map_err(|_| {
                    ApiError::validation(
                        "limit",
                        format!("must be a whole number between 1 and {MAX_LIMIT}"),
                    )
                })?;
                params.limit = Some(limit);
            }
            "cursor" => params.cursor = Some(value),
            _ => {
                return Err(ApiError::validation(
                    name,
                    "unknown query parameter; expected status, limit or cursor",
                ));
            }
        }
    }
    Ok(params)
}
