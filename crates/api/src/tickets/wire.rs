//! The tickets resource's JSON shapes, private to the API and converted
//! explicitly: the HTTP contract does not move when a domain or view type does.

use chrono::{DateTime, Utc};
use domain::Status;
use eventstore::{Payload, RecordedEvent};
use query::Page;
use readmodel::{Note, TicketDetail, TicketListRow};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// A ticket status on the wire: one of `open`, `triaged`, `closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase", try_from = "String")]
#[schema(as = Status)]
pub(crate) enum StatusWire {
    Open,
    Triaged,
    Closed,
}

/// The one wording for a status that is not one of the three, in bodies and
/// query strings alike.
pub(super) const STATUS_RULE: &str = "must be one of open, triaged, closed";

impl StatusWire {
    pub(super) fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(StatusWire::Open),
            "triaged" => Some(StatusWire::Triaged),
            "closed" => Some(StatusWire::Closed),
            _ => None,
        }
    }
}

impl TryFrom<String> for StatusWire {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        StatusWire::parse(&text).ok_or_else(|| format!("unknown status `{text}`: {STATUS_RULE}"))
    }
}

impl From<StatusWire> for Status {
    fn from(status: StatusWire) -> Self {
        match status {
            StatusWire::Open => Status::Open,
            StatusWire::Triaged => Status::Triaged,
            StatusWire::Closed => Status::Closed,
        }
    }
}

impl From<Status> for StatusWire {
    fn from(status: Status) -> Self {
        match status {
            Status::Open => StatusWire::Open,
            Status::Triaged => StatusWire::Triaged,
            Status::Closed => StatusWire::Closed,
        }
    }
}

/// `POST /tickets`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a JSON object with customer, subject and message"
)]
pub(crate) struct OpenRequest {
    /// 1 to 200 characters after trimming.
    #[schema(min_length = 1, max_length = 200)]
    pub customer: String,
    /// 1 to 200 characters after trimming.
    #[schema(min_length = 1, max_length = 200)]
    pub subject: String,
    /// 1 to 10000 characters after trimming.
    #[schema(min_length = 1, max_length = 10000)]
    pub message: String,
}

/// `PATCH /tickets/{id}`: every field optional, but none may be `null` except
/// `agent`, where `null` unassigns and absence leaves the agent alone.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a JSON object with any of status, agent and note"
)]
pub(crate) struct ChangeRequest {
    /// The new status; a closed ticket cannot change status (409).
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub status: Option<StatusWire>,
    /// 1 to 100 characters to assign, `null` to unassign.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100)]
    pub agent: Option<Option<String>>,
    /// A note to add: 1 to 5000 characters, not blank.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, min_length = 1, max_length = 5000)]
    pub note: Option<String>,
}

/// A field that, when present, must hold a value (`null` is refused).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A field where absent (`None`, via `default`) and `null` (`Some(None)`) differ.
fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A ticket's detail.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Ticket)]
pub(crate) struct TicketResponse {
    id: Uuid,
    customer: String,
    subject: String,
    message: String,
    status: StatusWire,
    agent: Option<String>,
    notes: Vec<NoteResponse>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Note)]
struct NoteResponse {
    text: String,
    added_at: DateTime<Utc>,
}

impl From<TicketDetail> for TicketResponse {
    fn from(ticket: TicketDetail) -> Self {
        TicketResponse {
            id: ticket.id,
            customer: ticket.customer,
            subject: ticket.subject,
            message: ticket.message,
            status: ticket.status.into(),
            agent: ticket.agent,
            notes: ticket.notes.into_iter().map(NoteResponse::from).collect(),
            created_at: ticket.created_at,
            updated_at: ticket.updated_at,
            version: ticket.version,
        }
    }
}

impl From<Note> for NoteResponse {
    fn from(note: Note) -> Self {
        NoteResponse {
            text: note.text,
            added_at: note.added_at,
        }
    }
}

/// `GET /tickets`
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TicketPage)]
pub(crate) struct PageResponse {
    items: Vec<ListRowResponse>,
    next_cursor: Option<String>,
}

/// A row of the ticket list.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TicketListRow)]
struct ListRowResponse {
    id: Uuid,
    customer: String,
    subject: String,
    status: StatusWire,
    agent: Option<String>,
    preview: String,
    has_note: bool,
    last_note_preview: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: u64,
}

impl From<Page> for PageResponse {
    fn from(page: Page) -> Self {
        PageResponse {
            items: page.items.into_iter().map(ListRowResponse::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

impl From<TicketListRow> for ListRowResponse {
    fn from(row: TicketListRow) -> Self {
        ListRowResponse {
            id: row.id,
            customer: row.customer,
            subject: row.subject,
            status: row.status.into(),
            agent: row.agent,
            preview: row.preview,
            has_note: row.has_note,
            last_note_preview: row.last_note_preview,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        }
    }
}

/// `GET /tickets/{id}/events`
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TicketEvents)]
pub(crate) struct EventsResponse {
    events: Vec<EventResponse>,
}

/// One recorded event of the ticket's stream.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TicketEvent)]
struct EventResponse {
    version: u64,
    #[serde(rename = "type")]
    event_type: String,
    occurred_at: DateTime<Utc>,
    /// The event's payload, shaped by its `type`.
    #[schema(value_type = Object)]
    data: Payload,
    metadata: EventMetadataResponse,
}

/// Who and what caused an event; each field is `null` when the event has none.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = EventMetadata)]
struct EventMetadataResponse {
    actor: Option<String>,
    correlation_id: Option<uuid::Uuid>,
    causation_id: Option<uuid::Uuid>,
}

impl From<Vec<RecordedEvent>> for EventsResponse {
    fn from(events: Vec<RecordedEvent>) -> Self {
        EventsResponse {
            events: events
                .into_iter()
                .map(|event| EventResponse {
                    version: event.version,
                    event_type: event.event_type,
                    occurred_at: event.occurred_at,
                    data: event.data,
                    metadata: EventMetadataResponse {
                        actor: event.metadata.actor,
                        correlation_id: event.metadata.correlation_id,
                        causation_id: event.metadata.causation_id,
                    },
                })
                .collect(),
        }
    }
}

/// A sort key of `GET /tickets`.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ListSort)]
#[allow(dead_code)]
pub(crate) enum SortWire {
    CreatedAt,
    UpdatedAt,
}

/// The order of `GET /tickets`.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ListOrder)]
#[allow(dead_code)]
pub(crate) enum OrderWire {
    Asc,
    Desc,
}

/// The query of `GET /tickets`, for the OpenAPI document. The handler reads
/// the pairs itself (`list_params`): an empty value counts as absent, unknown
/// or repeated parameters are refused with a 422 naming them.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ListQuery {
    /// Only tickets with this status.
    status: Option<StatusWire>,
    /// Only tickets assigned to this agent.
    agent: Option<String>,
    /// Only tickets of this customer.
    customer: Option<String>,
    /// The sort key; `created_at` when absent.
    #[param(inline)]
    sort: Option<SortWire>,
    /// `desc` (newest first) when absent.
    #[param(inline)]
    order: Option<OrderWire>,
    /// Rows per page, 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// A `next_cursor` from a previous page (with the same filters and sort).
    cursor: Option<String>,
    /// Wait until the list has applied this store position (an `X-Event-Position`).
    #[param(minimum = 0)]
    min_position: Option<u64>,
}

/// The query of `GET /tickets/{id}`, for the OpenAPI document: at most one of
/// the three (a 422 otherwise).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ShowQuery {
    /// Wait until the detail view has applied this store position.
    #[param(minimum = 0)]
    min_position: Option<u64>,
    /// The ticket as it was after this version, from the event store.
    #[param(minimum = 1)]
    as_of_version: Option<u64>,
    /// The ticket as it was at this time (RFC 3339), from the event store.
    as_of: Option<DateTime<Utc>>,
}
