//! Builders shared by the cases: real domain events in real envelopes, times
//! with digits below the microsecond, and a minimal projector loop.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use domain::Event;
use eventstore::{EventStore, Metadata, NewEvent, Position, RecordedEvent};
use readmodel::{ViewStore, fold_batch};
use uuid::Uuid;

/// A fixed instant with nanoseconds, so that precision loss shows.
pub(crate) fn base_time() -> DateTime<Utc> {
    let whole = Utc
        .with_ymd_and_hms(2024, 5, 1, 9, 30, 0)
        .single()
        .expect("a valid time");
    whole + chrono::Duration::nanoseconds(123_456_789)
}

/// `base_time` plus whole seconds.
pub(crate) fn at(seconds: i64) -> DateTime<Utc> {
    base_time() + chrono::Duration::seconds(seconds)
}

/// What a store promises to keep of a time: at least the millisecond (BSON
/// dates hold no more), truncated, never rounded up. Finer digits may survive
/// (SQLite keeps microseconds); the write side sends whole milliseconds, so
/// every backend then stores the same time exactly.
pub(crate) fn kept(read: DateTime<Utc>, sent: DateTime<Utc>) -> bool {
    read.trunc_subsecs(3) == sent.trunc_subsecs(3) && read <= sent
}

pub(crate) fn opened(customer: &str) -> Event {
    Event::TicketOpened {
        customer: customer.to_owned(),
        subject: format!("{customer}: printer on fire"),
        message: format!("Dear support,\n\n{customer}'s printer is on fire. Again."),
    }
}

pub(crate) fn note(text: &str) -> Event {
    Event::NoteAdded {
        text: text.to_owned(),
    }
}

/// Metadata with every field set, so that each one's roundtrip is checked.
pub(crate) fn full_metadata(actor: &str) -> Metadata {
    Metadata {
        correlation_id: Some(Uuid::now_v7()),
        causation_id: Some(Uuid::now_v7()),
        actor: Some(actor.to_owned()),
        idempotency_key: Some(format!("key-{actor}")),
    }
}

/// An envelope around a domain event at the given time.
pub(crate) fn envelope(event: &Event, occurred_at: DateTime<Utc>) -> NewEvent {
    NewEvent::from_domain(event, occurred_at, full_metadata("agent:ana"))
}

/// Envelopes for `events`, one second apart from `start`.
pub(crate) fn envelopes(events: &[Event], start: i64) -> Vec<NewEvent> {
    events
        .iter()
        .zip(start..)
        .map(|(event, second)| envelope(event, at(second)))
        .collect()
}

/// Appends, failing the case on any error.
pub(crate) async fn append(
    store: &dyn EventStore,
    ticket_id: Uuid,
    expected_version: u64,
    events: Vec<NewEvent>,
) -> Vec<RecordedEvent> {
    store
        .append(ticket_id, expected_version, events)
        .await
        .unwrap_or_else(|e| panic!("append to {ticket_id} at {expected_version} failed: {e}"))
}

pub(crate) async fn head(store: &dyn EventStore) -> Position {
    store.head().await.expect("head")
}

pub(crate) async fn read_stream(store: &dyn EventStore, ticket_id: Uuid) -> Vec<RecordedEvent> {
    store.read_stream(ticket_id).await.expect("read_stream")
}

pub(crate) async fn read_all(
    store: &dyn EventStore,
    after: Position,
    limit: usize,
) -> Vec<RecordedEvent> {
    store.read_all(after, limit).await.expect("read_all")
}

pub(crate) fn positions(events: &[RecordedEvent]) -> Vec<Position> {
    events.iter().map(|event| event.position).collect()
}

pub(crate) fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.version).collect()
}

/// A bound for "promptly": far below the waits the cases allow, far above any
/// reasonable wake-up latency.
pub(crate) const PROMPTLY: Duration = Duration::from_secs(3);

/// The projector's loop in miniature: read a batch after the checkpoint, load
/// the tickets it touches, fold, commit; until no events are left. Small
/// batches make a ticket's history span several commits. Returns the final
/// checkpoint.
pub async fn catch_up(
    events: &dyn EventStore,
    views: &dyn ViewStore,
    batch_size: usize,
) -> Position {
    loop {
        let from = views.checkpoint().await.expect("checkpoint");
        let batch = events.read_all(from, batch_size).await.expect("read_all");
        if batch.is_empty() {
            return from;
        }
        let mut ids: Vec<Uuid> = batch.iter().map(|event| event.ticket_id).collect();
        ids.sort();
        ids.dedup();
        let current = views.load_tickets(&ids).await.expect("load_tickets");
        let changes = fold_batch(from, current, &batch)
            .unwrap_or_else(|e| panic!("the views loaded for batch after {from} do not fold: {e}"));
        views.commit(changes).await.expect("commit");
    }
}
