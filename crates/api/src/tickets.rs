//! The tickets resource: open, change and read tickets, list them, and show a
//! ticket's raw history.
//!
//! Writes answer from the write side (the ticket as folded from its events right
//! after the append). Reads go through the query side: the read models, or,
//! for `/events` and the time-travel reads, the ticket's own events
//! (`query::History`).

mod wire;

use auth::Action;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json as JsonResponse, Router};
use domain::{ChangeTicket, OpenTicket};
use query::{AsOf, ListParams};
use readmodel::{Projection, TicketDetail};
use write::WriteOutcome;

use crate::AppState;
use crate::access::Caller;
use crate::error::ApiError;
use crate::extract::{
    Context, EVENT_POSITION, IDEMPOTENT_REPLAYED, IdempotencyKey, IfMatch, Json, TicketId, etag,
    wait_for,
};
use crate::params::Query;
pub(crate) use wire::StatusWire;
use wire::{
    ChangeRequest, EventsResponse, ListQuery, OpenRequest, PageResponse, ShowAt, ShowQuery,
    TicketResponse,
};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/tickets", get(list).post(open))
        .route("/tickets/{id}", get(show).patch(change))
        .route("/tickets/{id}/events", get(events))
}

/// Opens a ticket.
#[utoipa::path(
    post,
    path = "/tickets",
    tag = "tickets",
    request_body(content = OpenRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Opened: the ticket detail (version 1)", body = TicketResponse,
            headers(("Location" = String, description = "`/tickets/{id}` of the new ticket"))),
        (status = 400, description = "Malformed JSON, a bad `Idempotency-Key` or a bad `X-Actor`"),
        (status = 422, description = "A field breaks a rule, is missing, unknown or mistyped; or the `Idempotency-Key` was used for a different request"),
        (status = 409, description = "A write race lost after retries"),
    )
)]
pub(crate) async fn open(
    State(state): State<AppState>,
    caller: Caller,
    Context(mut context): Context,
    key: IdempotencyKey,
    Json(body, raw): Json<OpenRequest>,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(own) = caller.customer_scope()
        && body.customer.trim() != own
    {
        return Err(ApiError::Forbidden {
            field: Some("customer".into()),
            detail: format!("a customer token opens tickets for its own customer ({own:?}) only"),
        });
    }
    let command = OpenTicket::new(&body.customer, &body.subject, &body.message)?;
    context.idempotency = key.for_body(&raw);
    let commands = state.commands.clone();
    let outcome = to_the_end(async move { commands.open(command, context).await }).await?;
    let location = format!("/tickets/{}", outcome.ticket.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        written(outcome),
    ))
}

/// Changes a ticket: any of status, agent and note; all its events are
/// appended atomically.
#[utoipa::path(
    patch,
    path = "/tickets/{id}",
    tag = "tickets",
    params(
        ("id" = uuid::Uuid, Path, description = "The ticket id"),
        ("If-Match" = Option<String>, Header, description = "`*` or the strong entity tag of the version the change was made against, e.g. `\"3\"`; else 412"),
    ),
    request_body(content = ChangeRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The ticket detail after the change", body = TicketResponse),
        (status = 400, description = "Malformed JSON or id, malformed `If-Match` or `Idempotency-Key`, or a bad `X-Actor`"),
        (status = 404, description = "No ticket with this id"),
        (status = 409, description = "A closed ticket's status change, or a write race lost after retries"),
        (status = 412, description = "`If-Match` names a version the ticket is no longer at"),
        (status = 422, description = "A field breaks a rule, is unknown or mistyped; or the `Idempotency-Key` was used for a different request"),
    )
)]
pub(crate) async fn change(
    State(state): State<AppState>,
    caller: Caller,
    TicketId(id): TicketId,
    IfMatch(expected_version): IfMatch,
    Context(mut context): Context,
    key: IdempotencyKey,
    Json(body, raw): Json<ChangeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    if !caller.may(Action::WorkTicket) {
        let worked = [
            ("status", body.status.is_some()),
            ("agent", body.agent.is_some()),
        ];
        if let Some((field, _)) = worked.into_iter().find(|(_, given)| *given) {
            return Err(ApiError::Forbidden {
                field: Some(field.into()),
                detail: "this token's role may add notes only; status and agent are the agents'"
                    .into(),
            });
        }
    }
    require_own(&state, &caller, id).await?;
    let command = ChangeTicket::new(
        body.status.map(Into::into),
        body.agent.as_ref().map(Option::as_deref),
        body.note.as_deref(),
    )?;
    context.idempotency = key.for_body(&raw);
    let commands = state.commands.clone();
    let outcome = to_the_end(async move {
        commands
            .change(id, command, context, expected_version)
            .await
    })
    .await?;
    Ok(written(outcome))
}

/// Runs a fully received command on a task of its own, to its end.
///
/// A request's future is dropped when its client goes away or its time runs
/// out. Cut there, a command would stop wherever it was: on MongoDB inside
/// its transaction, so whether it committed would depend on the moment the
/// client left, and the cut session would have to be set aside. Detached, a
/// command the server has read is always carried through, committed (and
/// projected) or refused, whoever is still listening; a client that lost the
/// answer finds it by retrying with the same `Idempotency-Key`.
async fn to_the_end(
    command: impl Future<Output = Result<WriteOutcome, write::WriteError>> + Send + 'static,
) -> Result<WriteOutcome, ApiError> {
    match tokio::spawn(command).await {
        Ok(outcome) => Ok(outcome?),
        Err(failed) => Err(ApiError::Internal(Box::new(failed))),
    }
}

/// Another customer's ticket, to a customer: answered as if it did not
/// exist, so that a customer cannot learn which ticket ids are in use.
fn not_theirs() -> ApiError {
    ApiError::not_found("no ticket with this id")
}

/// The ticket, if the caller may see it.
fn visible(caller: &Caller, ticket: TicketDetail) -> Result<TicketDetail, ApiError> {
    match caller.customer_scope() {
        Some(own) if ticket.customer != own => Err(not_theirs()),
        _ => Ok(ticket),
    }
}

/// For a customer: the ticket exists and is its own (else a 404). Read from
/// the ticket's opening event, which the read models may not show yet, and
/// whose customer never changes.
async fn require_own(state: &AppState, caller: &Caller, id: uuid::Uuid) -> Result<(), ApiError> {
    if caller.customer_scope().is_some() {
        visible(
            caller,
            state.history.ticket_as_of(id, AsOf::Version(1)).await?,
        )?;
    }
    Ok(())
}

/// A write's answer: the ticket, its `ETag`, the store position of its last
/// event (for `min_position` on a later read), and whether it is a replay.
fn written(outcome: WriteOutcome) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    if let Ok(value) = etag(outcome.ticket.version).parse() {
        headers.insert(header::ETAG, value);
    }
    headers.insert(EVENT_POSITION, outcome.position.into());
    if outcome.replayed {
        headers.insert(
            IDEMPOTENT_REPLAYED,
            header::HeaderValue::from_static("true"),
        );
    }
    (headers, JsonResponse(TicketResponse::from(outcome.ticket)))
}

fn ticket_response(ticket: TicketDetail, mut headers: HeaderMap) -> impl IntoResponse {
    if let Ok(value) = etag(ticket.version).parse() {
        headers.insert(header::ETAG, value);
    }
    (headers, JsonResponse(TicketResponse::from(ticket)))
}

/// Reads a ticket from the detail read model, or (with `as_of_version` or
/// `as_of`) as it was then, folded from its events.
#[utoipa::path(
    get,
    path = "/tickets/{id}",
    tag = "tickets",
    params(("id" = uuid::Uuid, Path, description = "The ticket id"), ShowQuery),
    responses(
        (status = 200, description = "The ticket detail", body = TicketResponse,
            headers(("ETag" = String, description = "The ticket's version as a strong entity tag"))),
        (status = 400, description = "Malformed id, an unknown, repeated or empty query parameter, or a bad `X-Actor`"),
        (status = 404, description = "No ticket with this id (or not yet at that version or time)"),
        (status = 422, description = "A query parameter breaks its rule, or more than one of min_position, as_of_version, as_of is given"),
    )
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    TicketId(id): TicketId,
    Query(query): Query<ShowQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let min_position = match query.at()? {
        ShowAt::Then(as_of) => {
            let ticket = visible(&caller, state.history.ticket_as_of(id, as_of).await?)?;
            return Ok(ticket_response(ticket, HeaderMap::new()));
        }
        ShowAt::Now { min_position } => min_position,
    };
    let headers = wait_for(&state.queries, Projection::Detail, min_position).await?;
    let ticket = visible(&caller, state.queries.ticket(id).await?)?;
    Ok(ticket_response(ticket, headers))
}

/// Lists tickets, filtered, sorted and paged with a keyset cursor.
#[utoipa::path(
    get,
    path = "/tickets",
    tag = "tickets",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of list rows", body = PageResponse),
        (status = 400, description = "An undecodable cursor, an unknown, repeated or empty query parameter, or a bad `X-Actor`"),
        (status = 422, description = "A query parameter breaks its rule"),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let mut params = ListParams::from(&query);
    if let Some(own) = caller.customer_scope() {
        if params.customer.as_deref().is_some_and(|asked| asked != own) {
            return Err(ApiError::Forbidden {
                field: Some("customer".into()),
                detail: format!("a customer token lists its own customer's ({own:?}) tickets only"),
            });
        }
        params.customer = Some(own.to_owned());
    }
    let headers = wait_for(&state.queries, Projection::List, query.min_position).await?;
    let page = state.queries.list(params).await?;
    Ok((headers, JsonResponse(PageResponse::from(page))))
}

/// The ticket's history, from the event store, in version order.
#[utoipa::path(
    get,
    path = "/tickets/{id}/events",
    tag = "tickets",
    params(("id" = uuid::Uuid, Path, description = "The ticket id")),
    responses(
        (status = 200, description = "The ticket's events", body = EventsResponse),
        (status = 400, description = "Malformed id, or a bad `X-Actor`"),
        (status = 404, description = "No ticket with this id"),
    )
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    TicketId(id): TicketId,
) -> Result<JsonResponse<EventsResponse>, ApiError> {
    require_own(&state, &caller, id).await?;
    let events = state.history.events(id).await?;
    Ok(JsonResponse(events.into()))
}
