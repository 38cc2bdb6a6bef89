//! What ops see of a projection: slots, leases, run state, dead letters.

use chrono::{DateTime, Utc};
use eventstore::{Position, RecordedEvent};
use uuid::Uuid;

use crate::projection::{Projection, RunState};

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Served by the query side.
    Live,
    /// Being filled by a rebuild (resumable from its checkpoint).
    Building,
    /// A former live slot, kept until the next rebuild resets it.
    Retired,
}

impl SlotState {
    pub fn name(self) -> &'static str {
        match self {
            SlotState::Live => "live",
            SlotState::Building => "building",
            SlotState::Retired => "retired",
        }
    }

    pub fn from_name(name: &str) -> Option<SlotState> {
        [SlotState::Live, SlotState::Building, SlotState::Retired]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStatus {
    pub checkpoint: Position,
    /// The projection version the slot was (or is being) built with.
    pub version: u32,
    pub state: SlotState,
}

/// A lease as stored, with the holder's last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    pub holder: String,
    pub token: u64,
    pub expires_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub state: RunState,
    pub last_error: Option<String>,
}

/// Everything the store knows about one projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStatus {
    pub projection: Projection,
    pub live: SlotStatus,
    pub shadow: SlotStatus,
    /// The live slot's lease (the daemon applying events), if ever taken.
    pub live_lease: Option<LeaseStatus>,
    /// The shadow slot's lease (a rebuild), if ever taken.
    pub shadow_lease: Option<LeaseStatus>,
    /// Dead letters not yet skipped or resolved.
    pub dead_letters_pending: u64,
    /// The database's clock when the status was read: compare lease expiries
    /// and heartbeats with this, not with the caller's clock.
    pub now: DateTime<Utc>,
}

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterState {
    /// The projection stopped at it (or skipped it, by policy) and waits for ops.
    Pending,
    /// Ops asked to apply it again (after a fix or upgrade).
    Retry,
    /// Ops (or the skip policy) chose to pass it by: the projection treats it
    /// as changing nothing.
    Skipped,
    /// A retry applied it.
    Resolved,
}

impl DeadLetterState {
    pub fn name(self) -> &'static str {
        match self {
            DeadLetterState::Pending => "pending",
            DeadLetterState::Retry => "retry",
            DeadLetterState::Skipped => "skipped",
            DeadLetterState::Resolved => "resolved",
        }
    }

    pub fn from_name(name: &str) -> Option<DeadLetterState> {
        [
            DeadLetterState::Pending,
            DeadLetterState::Retry,
            DeadLetterState::Skipped,
            DeadLetterState::Resolved,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// An event a projection could not apply, kept with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub projection: Projection,
    pub position: Position,
    pub ticket_id: Uuid,
    pub version: u64,
    pub event_type: String,
    pub reason: String,
    /// The whole stored event as JSON, so it can be inspected without the store.
    pub event: serde_json::Value,
    pub state: DeadLetterState,
    pub recorded_at: DateTime<Utc>,
}

/// What a dead letter keeps of a personal field: the words themselves stay
/// in the event store, sealed with the customer's key, so that erasing the
/// customer forgets them here too.
pub const LEFT_OUT: &str = "[personal: left out, see the event store]";

/// The event's payload with its personal fields ([`eventstore::personal_fields`])
/// replaced by [`LEFT_OUT`].
fn without_personal_fields(event: &RecordedEvent) -> serde_json::Value {
    let mut data = event.data.to_value();
    if let serde_json::Value::Object(fields) = &mut data {
        for field in eventstore::personal_fields(&event.event_type) {
            if let Some(value) = fields.get_mut(*field) {
                *value = serde_json::Value::String(LEFT_OUT.to_owned());
            }
        }
    }
    data
}

impl DeadLetter {
    /// A dead letter of `event`: its envelope and payload, personal fields
    /// left out (see [`LEFT_OUT`]).
    pub fn new(
        projection: Projection,
        event: &RecordedEvent,
        reason: String,
        state: DeadLetterState,
        recorded_at: DateTime<Utc>,
    ) -> Self {
        DeadLetter {
            projection,
            position: event.position,
            ticket_id: event.ticket_id,
            version: event.version,
            event_type: event.event_type.clone(),
            reason,
            event: serde_json::json!({
                "position": event.position,
                "ticket_id": event.ticket_id,
                "version": event.version,
                "event_id": event.event_id,
                "type": event.event_type,
                "schema_version": event.schema_version,
                "occurred_at": event.occurred_at,
                "data": without_personal_fields(event),
                "metadata": event.metadata,
            }),
            state,
            recorded_at,
        }
    }
}
