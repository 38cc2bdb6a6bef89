//! The tickets resource's JSON shapes, private to the API and converted
//! explicitly: the HTTP contract does not move when a domain or view type does.

use chrono::{DateTime, Utc};
use domain::Status;
use eventstore::{Payload, RecordedEvent};
use query::{AsOf, ListParams, MAX_LIMIT, Page};
use readmodel::{ListSort, ListSortField, Note, TicketDetail, TicketListRow};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;
use crate::params;

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
const STATUS_RULE: &str = "must be one of open, triaged, closed";

impl StatusWire {
    fn parse(text: &str) -> Option<Self> {
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
pub(crate) enum SortWire {
    CreatedAt,
    UpdatedAt,
}

impl From<SortWire> for ListSortField {
    fn from(sort: SortWire) -> Self {
        match sort {
            SortWire::CreatedAt => ListSortField::CreatedAt,
            SortWire::UpdatedAt => ListSortField::UpdatedAt,
        }
    }
}

/// The order of `GET /tickets`.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ListOrder)]
pub(crate) enum OrderWire {
    Asc,
    Desc,
}

/// The query of `GET /tickets`, read by `params::Query` (unknown, repeated
/// and empty parameters are refused).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only tickets with this status.
    status: Option<StatusWire>,
    /// Only tickets assigned to this agent.
    #[param(min_length = 1)]
    agent: Option<String>,
    /// Only tickets of this customer.
    #[param(min_length = 1)]
    customer: Option<String>,
    /// The sort key; `created_at` when absent.
    #[param(inline)]
    sort: Option<SortWire>,
    /// `desc` (newest first) when absent.
    #[param(inline)]
    order: Option<OrderWire>,
    /// Rows per page, 1 to 200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    #[serde(default, deserialize_with = "limit")]
    limit: Option<u32>,
    /// A `next_cursor` from a previous page (with the same filters and sort).
    #[param(min_length = 1)]
    cursor: Option<String>,
    /// Wait until the list has applied this store position (an `X-Event-Position`).
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "params::min_position")]
    pub(super) min_position: Option<u64>,
}

fn limit<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    params::parsed(
        deserializer,
        format!("must be a whole number between 1 and {MAX_LIMIT}"),
        |text| params::whole_number(text).and_then(|limit| u32::try_from(limit).ok()),
    )
}

impl From<&ListQuery> for ListParams {
    fn from(query: &ListQuery) -> Self {
        let defaults = ListSort::default();
        ListParams {
            status: query.status.map(Into::into),
            agent: query.agent.clone(),
            customer: query.customer.clone(),
            sort: ListSort {
                field: query.sort.map_or(defaults.field, Into::into),
                descending: query.order.map_or(defaults.descending, |order| {
                    matches!(order, OrderWire::Desc)
                }),
            },
            limit: query.limit,
            cursor: query.cursor.clone(),
        }
    }
}

/// The query of `GET /tickets/{id}`: at most one of the three (a 422
/// otherwise), read by `params::Query`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ShowQuery {
    /// Wait until the detail view has applied this store position.
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "params::min_position")]
    min_position: Option<u64>,
    /// The ticket as it was after this version, from the event store.
    #[param(minimum = 1)]
    #[serde(default, deserialize_with = "as_of_version")]
    as_of_version: Option<u64>,
    /// The ticket as it was at this time (RFC 3339), from the event store.
    #[serde(default, deserialize_with = "as_of")]
    as_of: Option<DateTime<Utc>>,
}

fn as_of_version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    params::parsed(deserializer, "must be a whole number from 1", |text| {
        params::whole_number(text).filter(|version| *version >= 1)
    })
}

fn as_of<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    params::parsed(
        deserializer,
        "must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z",
        |text| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|time| time.with_timezone(&Utc))
        },
    )
}

/// What `GET /tickets/{id}` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ShowAt {
    /// The detail view, once it has applied this position (if given).
    Now { min_position: Option<u64> },
    /// The ticket as it was then, from its events.
    Then(AsOf),
}

impl ShowQuery {
    /// What to read; more than one of the three is a 422 naming the last.
    pub(super) fn at(self) -> Result<ShowAt, ApiError> {
        let given = [
            ("min_position", self.min_position.is_some()),
            ("as_of_version", self.as_of_version.is_some()),
            ("as_of", self.as_of.is_some()),
        ];
        if let Some((name, _)) = given.iter().filter(|(_, given)| *given).nth(1) {
            return Err(ApiError::validation(
                *name,
                "give at most one of min_position, as_of_version and as_of",
            ));
        }
        Ok(match (self.as_of_version, self.as_of) {
            (Some(version), _) => ShowAt::Then(AsOf::Version(version)),
            (None, Some(time)) => ShowAt::Then(AsOf::Time(time)),
            (None, None) => ShowAt::Now {
                min_position: self.min_position,
            },
        })
    }
}
