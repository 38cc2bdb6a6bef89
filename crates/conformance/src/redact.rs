//! The one exception to the events' immutability: [`EventStore::redact`],
//! an erasure's rewrite of a payload stored in clear. It replaces that one
//! event's payload and nothing else, everywhere the event is read; there is
//! no such event, it is `Corrupt` and changes nothing.

use domain::{ERASED, Event};
use eventstore::{EventStore, NewEvent, Payload, RecordedEvent, StoreError};
use serde_json::json;
use uuid::Uuid;

use crate::fixtures::{
    append, at, full_metadata, head, metadata, note, opened, read_all, read_stream,
};

/// Every event in the store, read three ways, which must agree: in
/// position order, and per ticket (by `read_by_ticket` and by
/// `read_stream`) in (ticket, version) order.
async fn everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let all = read_all(store, 0, 1_000).await;
    let mut by_ticket = all.clone();
    by_ticket.sort_by_key(|event| (event.ticket_id, event.version));
    assert_eq!(
        store
            .read_by_ticket(None, 1_000)
            .await
            .expect("read_by_ticket"),
        by_ticket,
        "read_by_ticket reads what read_all reads"
    );
    let mut tickets: Vec<Uuid> = by_ticket.iter().map(|event| event.ticket_id).collect();
    tickets.dedup();
    let mut streams = Vec::new();
    for ticket in tickets {
        streams.extend(read_stream(store, ticket).await);
    }
    assert_eq!(streams, by_ticket, "read_stream reads what read_all reads");
    all
}

/// `events` with the payload of (ticket, version) replaced by `data`.
fn with_data(
    events: &[RecordedEvent],
    ticket_id: Uuid,
    version: u64,
    data: &Payload,
) -> Vec<RecordedEvent> {
    events
        .iter()
        .map(|event| {
            let mut event = event.clone();
            if (event.ticket_id, event.version) == (ticket_id, version) {
                event.data = data.clone();
            }
            event
        })
        .collect()
}

async fn redact(store: &dyn EventStore, ticket_id: Uuid, version: u64, data: &Payload) {
    store
        .redact(ticket_id, version, data.clone())
        .await
        .unwrap_or_else(|e| panic!("redacting {ticket_id} version {version}: {e}"));
}

/// Two tickets with interleaved positions; the first ticket's opening
/// carries an idempotency key. Returns (first ticket, second ticket).
async fn two_tickets(store: &dyn EventStore) -> (Uuid, Uuid) {
    let (acme, globex) = (Uuid::now_v7(), Uuid::now_v7());
    append(
        store,
        acme,
        0,
        vec![
            NewEvent::from_domain(&opened("acme"), at(0), full_metadata("customer:acme")),
            NewEvent::from_domain(
                &note("call me on 555-0100"),
                at(1),
                metadata("customer:acme"),
            ),
        ],
    )
    .await;
    append(
        store,
        globex,
        0,
        vec![NewEvent::from_domain(
            &opened("globex"),
            at(2),
            full_metadata("customer:globex"),
        )],
    )
    .await;
    append(
        store,
        acme,
        2,
        vec![NewEvent::from_domain(
            &note("my address is 1 Main St"),
            at(3),
            metadata("agent:ana"),
        )],
    )
    .await;
    (acme, globex)
}

/// Redacting an event's payload changes that payload only: its position,
/// id, ticket, version, type, schema version, time, metadata and recorded
/// idempotency key stay, other events stay, the head stays; and every read
/// (by position, by ticket, the stream, the idempotency key) sees the new
/// payload, which decodes as the domain event it spells. Redacting again
/// (an erasure run twice) succeeds, and a later payload replaces the
/// earlier.
pub async fn redact_rewrites_only_that_events_payload(store: &dyn EventStore) {
    let (acme, _globex) = two_tickets(store).await;
    let before = everything(store).await;
    let head_before = head(store).await;
    let opening = before
        .iter()
        .find(|event| (event.ticket_id, event.version) == (acme, 1))
        .expect("acme's opening")
        .clone();
    let key = opening
        .metadata
        .idempotency_key
        .clone()
        .expect("the opening carries a key");

    let erased = Payload::from_value(&json!({
        "customer": ERASED, "subject": ERASED, "message": ERASED,
    }));
    redact(store, acme, 1, &erased).await;
    let expected = with_data(&before, acme, 1, &erased);
    assert_ne!(expected, before, "the case changes a payload");
    assert_eq!(
        everything(store).await,
        expected,
        "only the opening's payload changed"
    );
    assert_eq!(
        head(store).await,
        head_before,
        "a redaction appends nothing"
    );
    let found = store
        .read_idempotent(&key)
        .await
        .expect("read_idempotent")
        .expect("the key still finds its append");
    assert_eq!(
        found,
        RecordedEvent {
            data: erased.clone(),
            ..opening.clone()
        },
        "the key finds the redacted event, all else as recorded"
    );
    assert_eq!(
        found.decode().expect("the redacted opening decodes"),
        Event::TicketOpened {
            customer: ERASED.into(),
            subject: ERASED.into(),
            message: ERASED.into(),
        },
        "the redacted payload is what is read"
    );

    // An erasure run again rewrites the same event to the same payload.
    redact(store, acme, 1, &erased).await;
    let text = Payload::from_value(&json!({ "text": ERASED }));
    redact(store, acme, 3, &text).await;
    let expected = with_data(&expected, acme, 3, &text);
    assert_eq!(
        everything(store).await,
        expected,
        "the second redaction changed the note's payload only"
    );

    // A later redaction of the same event replaces the earlier one.
    let later = Payload::from_value(&json!({
        "customer": "⟦gelöscht⟧ \"quoted\" \\ 🔥", "subject": "", "message": "line\nbreak",
    }));
    redact(store, acme, 1, &later).await;
    assert_eq!(
        everything(store).await,
        with_data(&expected, acme, 1, &later),
        "the latest redaction is what is read"
    );
    assert_eq!(head(store).await, head_before, "redactions append nothing");
}

/// Redacting an event that does not exist (a version past the stream's
/// end, version 0, an unknown ticket, a version beyond any database's
/// integers) answers `Corrupt`, and changes nothing.
pub async fn redacting_a_missing_event_is_corrupt_and_changes_nothing(store: &dyn EventStore) {
    let (acme, globex) = two_tickets(store).await;
    let before = everything(store).await;
    let head_before = head(store).await;
    let erased = Payload::from_value(&json!({ "text": ERASED }));
    for (ticket, version, what) in [
        (acme, 4, "a version past the stream's end"),
        (globex, 2, "a version past the other stream's end"),
        (acme, 0, "version 0"),
        (Uuid::now_v7(), 1, "an unknown ticket"),
        (acme, u64::MAX, "the largest version"),
        (acme, 1 << 63, "a version past i64"),
    ] {
        match store.redact(ticket, version, erased.clone()).await {
            Err(StoreError::Corrupt(_)) => {}
            other => {
                panic!("redacting {what} ({ticket}, {version}): expected Corrupt, got {other:?}")
            }
        }
    }
    assert_eq!(everything(store).await, before, "nothing changed");
    assert_eq!(head(store).await, head_before, "nothing appended");
}
