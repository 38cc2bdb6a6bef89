//! The envelope every event travels in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Payload, Position};

/// Who and what caused an event, for audit and tracing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The request (or job) this event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The message that directly caused this event (for a command, the command's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Who asked for the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The client's idempotency key, when it sent one. Every event of the
    /// command carries it; the store records it as unique on the first one
    /// (see [`EventStore::append`](crate::EventStore::append)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// A digest of the request that carried `idempotency_key`, so that a
    /// retry can be told from a different request reusing the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<String>,
}

/// An event on its way into the store: everything but the ticket id, the version
/// and the position, which the append decides.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub occurred_at: DateTime<Utc>,
    /// The payload, a JSON object.
    pub data: Payload,
    pub metadata: Metadata,
}

/// An event as stored. Immutable once written.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub position: Position,
    pub ticket_id: Uuid,
    /// 1 for the ticket's first event, then gap-free.
    pub version: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub occurred_at: DateTime<Utc>,
    /// The payload as stored; [`RecordedEvent::decode`] reads the domain
    /// event from it.
    pub data: Payload,
    pub metadata: Metadata,
}
