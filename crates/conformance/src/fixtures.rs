//! Builders shared by the cases: real domain events in real envelopes, times
//! with digits below the microsecond, leases, and a minimal projector loop.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use domain::Event;
use eventstore::{EventStore, Metadata, NewEvent, Position, RecordedEvent};
use readmodel::{Fence, LeaseStore, Projection, ProjectionWriter, Target, fold_batch};
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
/// The idempotency key is fresh on every call: a recorded key is unique.
pub(crate) fn full_metadata(actor: &str) -> Metadata {
    Metadata {
        idempotency_key: Some(format!("key-{}", Uuid::now_v7())),
        request_digest: Some(format!("digest-{actor}")),
        ..metadata(actor)
    }
}

/// Metadata as a command without an idempotency key has it.
pub(crate) fn metadata(actor: &str) -> Metadata {
    Metadata {
        correlation_id: Some(Uuid::now_v7()),
        causation_id: Some(Uuid::now_v7()),
        actor: Some(actor.to_owned()),
        idempotency_key: None,
        request_digest: None,
    }
}

/// Metadata carrying the idempotency key `key`.
pub(crate) fn keyed(key: &str) -> Metadata {
    Metadata {
        idempotency_key: Some(key.to_owned()),
        request_digest: Some(format!("digest-of-{key}")),
        ..metadata("agent:ana")
    }
}

/// An envelope around a domain event at the given time.
pub(crate) fn envelope(event: &Event, occurred_at: DateTime<Utc>) -> NewEvent {
    NewEvent::from_domain(event, occurred_at, metadata("agent:ana"))
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

/// The holder name [`catch_up`] and [`fence`] take leases with.
pub const CATCH_UP_HOLDER: &str = "conformance";

/// How long the leases of [`catch_up`] and [`fence`] last: longer than any case.
pub const CATCH_UP_TTL: Duration = Duration::from_secs(120);

/// Takes (or re-takes, with the same token) the slot's lease as
/// [`CATCH_UP_HOLDER`], failing the case if another holder has it.
pub async fn fence(
    views: &(impl LeaseStore + ?Sized),
    projection: Projection,
    target: Target,
) -> Fence {
    views
        .acquire_lease(projection, target, CATCH_UP_HOLDER, CATCH_UP_TTL)
        .await
        .expect("acquire_lease")
        .unwrap_or_else(|| {
            panic!(
                "the {projection}/{} lease is held by another holder",
                target.name()
            )
        })
}

/// The projector's loop in miniature, for every projection's live slot: read
/// a batch after the slot's checkpoint, load the rows it touches, fold,
/// commit; until no events are left. Small batches make a ticket's history
/// span several commits. The live leases are taken as [`CATCH_UP_HOLDER`] and
/// kept (so [`fence`] gives a case the same fence). Returns the final
/// checkpoint, the same for every projection.
pub async fn catch_up(
    events: &dyn EventStore,
    views: &(impl ProjectionWriter + LeaseStore + ?Sized),
    batch_size: usize,
) -> Position {
    let mut reached = Vec::new();
    for projection in Projection::ALL {
        let fence = fence(views, projection, Target::Live).await;
        reached.push(fold_into(events, views, &fence, batch_size, Position::MAX).await);
    }
    assert!(
        reached.windows(2).all(|w| w[0] == w[1]),
        "every projection caught up to the same position: {reached:?}"
    );
    reached[0]
}

/// Folds the events after the fenced slot's checkpoint, up to and including
/// position `up_to`, into the slot in batches. Returns its checkpoint.
pub async fn fold_into(
    events: &dyn EventStore,
    views: &(impl ProjectionWriter + ?Sized),
    fence: &Fence,
    batch_size: usize,
    up_to: Position,
) -> Position {
    let (projection, target) = (fence.projection, fence.target);
    loop {
        let from = views
            .checkpoint(projection, target)
            .await
            .expect("checkpoint");
        let mut batch = events.read_all(from, batch_size).await.expect("read_all");
        batch.retain(|event| event.position <= up_to);
        let Some(last) = batch.last().map(|event| event.position) else {
            return from;
        };
        let mut ids: Vec<Uuid> = batch.iter().map(|event| event.ticket_id).collect();
        ids.sort();
        ids.dedup();
        let current = views
            .load_rows(projection, target, &ids)
            .await
            .expect("load_rows");
        let skipped = views
            .skipped_positions(projection, from, last)
            .await
            .expect("skipped_positions");
        let outcome = fold_batch(projection, from, current, &batch, &skipped);
        if let Some(failed) = outcome.failed {
            panic!(
                "{projection}: the rows loaded for the batch after {from} do not fold: {}",
                failed.error
            );
        }
        views
            .commit(fence, outcome.changes)
            .await
            .unwrap_or_else(|e| panic!("commit to {projection}/{}: {e}", target.name()));
    }
}
