//! The event store's cases: appends and reads, optimistic concurrency, the
//! global order, paging and tailing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use domain::Event;
use eventstore::{EventStore, Metadata, NewEvent, Payload, RecordedEvent, StoreError};
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use crate::fixtures::{
    PROMPTLY, append, at, base_time, envelope, envelopes, full_metadata, head, kept, keyed, note,
    opened, positions, read_all, read_stream, versions,
};

/// Asserts `result` is the conflict a stream at `actual` gives.
#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    ticket_id: Uuid,
    expected: u64,
    actual: u64,
) {
    match result {
        Err(StoreError::Conflict {
            ticket_id: t,
            expected: e,
            actual: a,
        }) => assert_eq!(
            (t, e, a),
            (ticket_id, expected, actual),
            "the conflict names the ticket, the expected and the actual version"
        ),
        other => panic!(
            "appending at version {expected} to a ticket at {actual} must conflict, got {other:?}"
        ),
    }
}

/// An empty append returns nothing and writes nothing, whatever the version.
pub async fn empty_append_writes_nothing(store: &dyn EventStore) {
    let ticket = Uuid::now_v7();
    let before = head(store).await;
    for expected in [0, 3] {
        let recorded = store
            .append(ticket, expected, Vec::new())
            .await
            .expect("an empty append succeeds");
        assert!(recorded.is_empty(), "an empty append returns no events");
    }
    assert_eq!(
        head(store).await,
        before,
        "an empty append moves no position"
    );
    assert!(read_stream(store, ticket).await.is_empty());
}

/// A new ticket's events come back in version order 1..n with increasing
/// positions and every envelope field intact (times to the microsecond).
pub async fn append_then_read_stream(store: &dyn EventStore) {
    let ticket = Uuid::now_v7();
    let mut new = vec![
        NewEvent::from_domain(
            &Event::TicketOpened {
                customer: "Zoë Ünicode".into(),
                subject: "Ça ne marche pas 🔥".into(),
                message: "line one\nline two\ttabbed \"quoted\" \\ backslash".into(),
            },
            base_time(),
            full_metadata("customer:zoe"),
        ),
        NewEvent::from_domain(&Event::TicketTriaged, at(1), Metadata::default()),
    ];
    // The store keeps any type, schema version and JSON payload as given; it
    // does not interpret them.
    new.push(NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "NoteAdded".into(),
        schema_version: 7,
        occurred_at: at(2) + chrono::Duration::nanoseconds(999),
        data: Payload::from_value(&serde_json::json!({
            "text": "a note",
            "extra": [1, -2, 2.5, null, true, {"nested": {"deep": "ü"}}],
            "big": 9_007_199_254_740_993_i64,
        })),
        metadata: Metadata {
            actor: Some("agent:bo".into()),
            ..Metadata::default()
        },
    });
    let recorded = append(store, ticket, 0, new.clone()).await;
    let stream = read_stream(store, ticket).await;
    assert_eq!(stream.len(), new.len(), "every appended event is read back");
    assert_eq!(
        versions(&stream),
        vec![1, 2, 3],
        "versions start at 1 and have no gaps"
    );
    assert!(
        stream.windows(2).all(|w| w[0].position < w[1].position),
        "positions increase with versions: {:?}",
        positions(&stream)
    );
    for (read, sent) in stream.iter().zip(&new) {
        assert_eq!(read.ticket_id, ticket);
        assert_eq!(read.event_id, sent.event_id, "event id");
        assert_eq!(read.event_type, sent.event_type, "event type");
        assert_eq!(read.schema_version, sent.schema_version, "schema version");
        assert!(
            kept(read.occurred_at, sent.occurred_at),
            "occurred_at is kept to the millisecond at least (truncated): read {}, sent {}",
            read.occurred_at,
            sent.occurred_at
        );
        assert_eq!(read.data, sent.data, "data");
        assert_eq!(read.metadata, sent.metadata, "metadata");
    }
    assert_eq!(
        stream[0].decode().expect("the first event decodes"),
        Event::TicketOpened {
            customer: "Zoë Ünicode".into(),
            subject: "Ça ne marche pas 🔥".into(),
            message: "line one\nline two\ttabbed \"quoted\" \\ backslash".into(),
        }
    );
    assert_eq!(recorded, stream, "append returns the events as read back");

    let more = append(store, ticket, 3, envelopes(&[note("later")], 3)).await;
    assert_eq!(
        versions(&more),
        vec![4],
        "a later append continues the versions"
    );
    assert!(more[0].position > stream[2].position, "and the positions");
}

/// What an append returns is exactly what `read_stream` and `read_all` return
/// later, field for field (so a fold of the append's result equals a fold of a
/// later read).
pub async fn append_returns_what_reads_return(store: &dyn EventStore) {
    let start = head(store).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let mut returned = Vec::new();
    returned.extend(append(store, a, 0, envelopes(&[opened("a"), note("n1")], 0)).await);
    returned.extend(append(store, b, 0, envelopes(&[opened("b")], 2)).await);
    returned.extend(append(store, a, 2, envelopes(&[Event::TicketClosed], 3)).await);
    returned.extend(
        append(
            store,
            b,
            1,
            envelopes(
                &[
                    Event::AgentAssigned {
                        agent: "ana".into(),
                    },
                    note("n2"),
                ],
                4,
            ),
        )
        .await,
    );
    let all = read_all(store, start, 1_000).await;
    assert_eq!(
        all, returned,
        "read_all returns what the appends returned, in order"
    );
    for ticket in [a, b] {
        let mine: Vec<RecordedEvent> = returned
            .iter()
            .filter(|e| e.ticket_id == ticket)
            .cloned()
            .collect();
        assert_eq!(
            read_stream(store, ticket).await,
            mine,
            "read_stream of {ticket}"
        );
    }
    let last = returned.last().expect("events were appended").position;
    assert_eq!(
        head(store).await,
        last,
        "head is the last appended position"
    );
}

/// Appending at a version other than the stream's conflicts, names the actual
/// version, and writes nothing.
pub async fn wrong_expected_version_conflicts(store: &dyn EventStore) {
    let ticket = Uuid::now_v7();
    let written = append(
        store,
        ticket,
        0,
        envelopes(&[opened("c"), Event::TicketTriaged], 0),
    )
    .await;
    let before = head(store).await;
    for expected in [0, 1, 3, 10] {
        let result = store
            .append(ticket, expected, envelopes(&[note("lost")], 5))
            .await;
        assert_conflict(result, ticket, expected, 2);
    }
    let fresh = Uuid::now_v7();
    let result = store.append(fresh, 1, envelopes(&[note("lost")], 5)).await;
    assert_conflict(result, fresh, 1, 0);

    assert_eq!(head(store).await, before, "a conflict writes nothing");
    assert_eq!(
        read_stream(store, ticket).await,
        written,
        "the stream is unchanged"
    );
    assert!(
        read_stream(store, fresh).await.is_empty(),
        "no stream was started"
    );
    assert!(
        read_all(store, before, 100).await.is_empty(),
        "no event was written"
    );
}

/// Eight appenders race on one ticket at the same version: exactly one wins,
/// the others conflict, and the stream stays gapless.
pub async fn concurrent_appends_to_one_ticket(store: Arc<dyn EventStore>) {
    const RACERS: usize = 8;
    let ticket = Uuid::now_v7();
    append(&*store, ticket, 0, envelopes(&[opened("race")], 0)).await;
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for racer in 0..RACERS {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        racers.spawn(async move {
            let events = envelopes(&[note(&format!("racer {racer}")), note("second")], 1);
            barrier.wait().await;
            store.append(ticket, 1, events).await
        });
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    while let Some(joined) = racers.join_next().await {
        match joined.expect("a racer panicked") {
            Ok(recorded) => winners.push(recorded),
            result @ Err(_) => {
                assert_conflict(result, ticket, 1, 3);
                conflicts += 1;
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one racer wins");
    assert_eq!(conflicts, RACERS - 1, "every other racer conflicts");
    let stream = read_stream(&*store, ticket).await;
    assert_eq!(versions(&stream), vec![1, 2, 3], "the stream is gapless");
    assert_eq!(
        stream[1..],
        winners[0][..],
        "the stream holds the winner's events"
    );
}

/// Many appenders on many tickets: the global positions are gap-free with no
/// duplicates, every stream is gapless, and a stream's positions follow its
/// versions.
pub async fn concurrent_appends_to_many_tickets(store: Arc<dyn EventStore>) {
    const WRITERS: usize = 8;
    const APPENDS: u64 = 6;
    let start = head(&*store).await;
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut writers = JoinSet::new();
    for writer in 0..WRITERS {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        writers.spawn(async move {
            let ticket = Uuid::now_v7();
            barrier.wait().await;
            let mut version = 0;
            let mut returned = append(
                &*store,
                ticket,
                0,
                envelopes(&[opened(&format!("w{writer}"))], 0),
            )
            .await;
            version += 1;
            for round in 0..APPENDS {
                // Alternate one- and two-event appends.
                let mut events = vec![note(&format!("w{writer} r{round}"))];
                if round % 2 == 1 {
                    events.push(Event::TicketTriaged);
                }
                let recorded = append(&*store, ticket, version, envelopes(&events, 1)).await;
                version += recorded.len() as u64;
                returned.extend(recorded);
            }
            (ticket, returned)
        });
    }
    let mut returned: HashMap<Uuid, Vec<RecordedEvent>> = HashMap::new();
    while let Some(joined) = writers.join_next().await {
        let (ticket, events) = joined.expect("a writer panicked");
        returned.insert(ticket, events);
    }
    let total: usize = returned.values().map(Vec::len).sum();
    let end = head(&*store).await;
    let all = read_all(&*store, start, total + 100).await;
    let expected: Vec<u64> = (start + 1..=start + total as u64).collect();
    assert_eq!(
        positions(&all),
        expected,
        "positions are gap-free, without duplicates"
    );
    assert_eq!(end, start + total as u64, "head is the last position");
    for (ticket, mine) in &returned {
        let stream = read_stream(&*store, *ticket).await;
        let expected: Vec<u64> = (1..=mine.len() as u64).collect();
        assert_eq!(versions(&stream), expected, "stream {ticket} is gapless");
        assert_eq!(
            &stream, mine,
            "stream {ticket} is what its appends returned"
        );
        assert!(
            stream.windows(2).all(|w| w[0].position < w[1].position),
            "stream {ticket}: positions follow versions"
        );
        let in_all: Vec<&RecordedEvent> = all.iter().filter(|e| e.ticket_id == *ticket).collect();
        assert_eq!(
            in_all,
            stream.iter().collect::<Vec<_>>(),
            "read_all holds stream {ticket}"
        );
    }
}

/// A multi-event append takes consecutive positions even under concurrency, and
/// a conflicting one writes none of its events.
pub async fn multi_event_append_is_atomic(store: Arc<dyn EventStore>) {
    const WRITERS: usize = 4;
    let start = head(&*store).await;
    let mut writers = JoinSet::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        writers.spawn(async move {
            let ticket = Uuid::now_v7();
            let mut batches = vec![
                append(
                    &*store,
                    ticket,
                    0,
                    envelopes(&[opened(&format!("m{writer}"))], 0),
                )
                .await,
            ];
            for round in 0..4u64 {
                let events = [note("a"), note("b"), note("c")];
                batches.push(append(&*store, ticket, 1 + 3 * round, envelopes(&events, 1)).await);
            }
            batches
        });
    }
    let mut batches = Vec::new();
    while let Some(joined) = writers.join_next().await {
        batches.extend(joined.expect("a writer panicked"));
    }
    let all = read_all(&*store, start, 1_000).await;
    for batch in &batches {
        let first = batch[0].position;
        let expected: Vec<u64> = (first..first + batch.len() as u64).collect();
        assert_eq!(
            positions(batch),
            expected,
            "one append's positions are consecutive"
        );
        let at = all
            .iter()
            .position(|e| e.position == first)
            .expect("read_all holds every append");
        assert_eq!(
            &all[at..at + batch.len()],
            &batch[..],
            "and read_all holds them together"
        );
    }

    let ticket = batches[0][0].ticket_id;
    let stream = read_stream(&*store, ticket).await;
    let before = head(&*store).await;
    let doomed = envelopes(&[note("x"), note("y"), Event::TicketClosed], 20);
    let doomed_ids: HashSet<Uuid> = doomed.iter().map(|e| e.event_id).collect();
    let result = store.append(ticket, 0, doomed).await;
    assert_conflict(result, ticket, 0, stream.len() as u64);
    assert_eq!(
        head(&*store).await,
        before,
        "a refused multi-event append moves no position"
    );
    assert_eq!(
        read_stream(&*store, ticket).await,
        stream,
        "and leaves the stream as it was"
    );
    let everything = read_all(&*store, 0, 100_000).await;
    assert!(
        everything.iter().all(|e| !doomed_ids.contains(&e.event_id)),
        "none of the refused events was written"
    );
}

/// Paging through `read_all` with `after`/`limit` visits every event exactly
/// once, in position order, in full pages.
pub async fn read_all_pages_cover_everything_once(store: &dyn EventStore) {
    let start = head(store).await;
    let tickets: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    for ticket in &tickets {
        append(store, *ticket, 0, envelopes(&[opened("p")], 0)).await;
    }
    for round in 0..4u64 {
        for ticket in &tickets {
            let events = if round % 2 == 0 {
                vec![note("one")]
            } else {
                vec![note("two"), note("three")]
            };
            let version = read_stream(store, *ticket).await.len() as u64;
            append(store, *ticket, version, envelopes(&events, 1)).await;
        }
    }
    let everything = read_all(store, start, 10_000).await;
    // Per ticket: the opening, then rounds of 1, 2, 1 and 2 notes.
    assert_eq!(everything.len(), 4 * 7, "all appended events");
    for page_size in [1, 5, 7, everything.len(), everything.len() + 1] {
        let mut after = start;
        let mut seen = Vec::new();
        loop {
            let page = read_all(store, after, page_size).await;
            let remaining = everything.len() - seen.len();
            assert_eq!(
                page.len(),
                page_size.min(remaining),
                "pages are full until the end"
            );
            if page.is_empty() {
                break;
            }
            assert!(page[0].position > after, "a page starts after `after`");
            after = page.last().expect("a non-empty page").position;
            seen.extend(page);
        }
        assert_eq!(
            seen, everything,
            "pages of {page_size} cover everything once, in order"
        );
    }
    let middle = everything[5].position;
    let window = read_all(store, middle, 3).await;
    assert_eq!(
        window[..],
        everything[6..9],
        "a window starts right after `after`"
    );
    assert!(
        read_all(store, head(store).await, 10).await.is_empty(),
        "nothing after the head"
    );
    assert!(
        read_all(store, start, 0).await.is_empty(),
        "a limit of 0 reads nothing"
    );
}

/// With no appends, the wait ends after `max_wait` and says so.
pub async fn wait_times_out_without_appends(store: &dyn EventStore) {
    let current = head(store).await;
    let max_wait = Duration::from_millis(300);
    let started = Instant::now();
    let woke = store
        .wait_for_events(current, max_wait)
        .await
        .expect("wait_for_events");
    let waited = started.elapsed();
    assert!(!woke, "no event was appended, yet the wait reported one");
    assert!(
        waited >= max_wait * 9 / 10,
        "the wait gave up early: after {waited:?} of {max_wait:?}"
    );
    assert!(waited < max_wait + PROMPTLY, "the wait overran: {waited:?}");
}

/// A waiter wakes promptly, well before `max_wait`, when another task appends.
pub async fn wait_wakes_on_an_append(store: Arc<dyn EventStore>) {
    let ticket = Uuid::now_v7();
    append(&*store, ticket, 0, envelopes(&[opened("w")], 0)).await;
    let current = head(&*store).await;
    let max_wait = Duration::from_secs(30);
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let woke = store.wait_for_events(current, max_wait).await;
            (woke, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter returned before any append"
    );
    let appended_at = Instant::now();
    append(&*store, ticket, 1, vec![envelope(&note("wake up"), at(1))]).await;
    let (woke, woke_at) = waiter.await.expect("the waiter panicked");
    assert!(woke.expect("wait_for_events"), "the waiter saw the append");
    let latency = woke_at.saturating_duration_since(appended_at);
    assert!(
        latency < PROMPTLY,
        "the waiter woke {latency:?} after the append"
    );
}

/// A wait for events after a position the head has already passed returns
/// true at once.
pub async fn wait_returns_at_once_when_behind(store: &dyn EventStore) {
    let before = head(store).await;
    append(store, Uuid::now_v7(), 0, envelopes(&[opened("b")], 0)).await;
    for after in [0, before] {
        let started = Instant::now();
        let woke = store
            .wait_for_events(after, Duration::from_secs(30))
            .await
            .expect("wait_for_events");
        assert!(woke, "events after {after} exist");
        assert!(started.elapsed() < PROMPTLY, "took {:?}", started.elapsed());
    }
}

/// An unknown ticket has an empty stream, not an error.
pub async fn unknown_ticket_has_empty_stream(store: &dyn EventStore) {
    append(store, Uuid::now_v7(), 0, envelopes(&[opened("other")], 0)).await;
    assert!(read_stream(store, Uuid::now_v7()).await.is_empty());
    assert!(read_stream(store, Uuid::nil()).await.is_empty());
}

/// `read_by_ticket` pages (after the last (ticket, version) seen) visit every
/// event exactly once, ordered by ticket id (byte order, which is the order of
/// the hyphenated text) then version, in full pages.
pub async fn read_by_ticket_pages_cover_everything_once(store: &dyn EventStore) {
    // Ids whose first bytes put digits and letters of the hex text in play.
    let fixed =
        |high: u128| Uuid::from_u128((high << 120) | 0x0000_0000_0000_7000_8000_0000_0000_0001);
    let tickets = [
        fixed(0xa0),
        fixed(0x0f),
        Uuid::now_v7(),
        fixed(0xff),
        fixed(0x9f),
    ];
    for (n, ticket) in tickets.iter().enumerate() {
        append(store, *ticket, 0, envelopes(&[opened(&format!("t{n}"))], 0)).await;
    }
    // Interleaved appends, so that position order is not ticket order.
    for round in 0..3u64 {
        for (n, ticket) in tickets.iter().enumerate() {
            if (n as u64 + round).is_multiple_of(2) {
                let version = read_stream(store, *ticket).await.len() as u64;
                let events = vec![note(&format!("r{round}")); 1 + n % 2];
                append(store, *ticket, version, envelopes(&events, 1)).await;
            }
        }
    }
    let mut expected = read_all(store, 0, 10_000).await;
    expected.sort_by_key(|event| (event.ticket_id, event.version));
    assert!(
        expected.len() > tickets.len() * 2,
        "several events per ticket"
    );
    let by_ticket = |after: Option<(Uuid, u64)>, limit: usize| async move {
        store
            .read_by_ticket(after, limit)
            .await
            .expect("read_by_ticket")
    };
    assert_eq!(
        by_ticket(None, 10_000).await,
        expected,
        "every event, by ticket id then version, as read_all reads them"
    );
    for page_size in [1, 2, 3, 5, expected.len(), expected.len() + 1] {
        let mut seen: Vec<RecordedEvent> = Vec::new();
        loop {
            let after = seen.last().map(|event| (event.ticket_id, event.version));
            let page = by_ticket(after, page_size).await;
            let remaining = expected.len() - seen.len();
            assert_eq!(
                page.len(),
                page_size.min(remaining),
                "pages of {page_size} are full until the end"
            );
            if page.is_empty() {
                break;
            }
            seen.extend(page);
        }
        assert_eq!(
            seen, expected,
            "pages of {page_size} cover every event once, in (ticket, version) order"
        );
    }
    let mut sorted = tickets;
    sorted.sort();
    let second = sorted[1];
    let first_of = |ticket: Uuid| {
        expected
            .iter()
            .position(|event| event.ticket_id == ticket)
            .expect("every ticket has events")
    };
    assert_eq!(
        by_ticket(Some((second, 0)), 2).await[..],
        expected[first_of(second)..first_of(second) + 2],
        "after (ticket, 0) starts at that ticket's first event"
    );
    assert_eq!(
        by_ticket(Some((second, 1)), 1).await[..],
        expected[first_of(second) + 1..first_of(second) + 2],
        "after (ticket, 1) starts at its second event"
    );
    let last_of_second = read_stream(store, second).await.len() as u64;
    assert_eq!(
        by_ticket(Some((second, last_of_second)), 1).await[..],
        expected[first_of(sorted[2])..first_of(sorted[2]) + 1],
        "after a ticket's last event comes the next ticket's first"
    );
    let between = Uuid::from_u128(second.as_u128() + 1);
    assert_eq!(
        by_ticket(Some((between, 0)), 1).await[..],
        expected[first_of(sorted[2])..first_of(sorted[2]) + 1],
        "`after` need not name a stored ticket"
    );
    let last = expected.last().expect("events");
    assert!(
        by_ticket(Some((last.ticket_id, last.version)), 10)
            .await
            .is_empty(),
        "nothing after the last event"
    );
    assert!(
        by_ticket(None, 0).await.is_empty(),
        "a limit of 0 reads nothing"
    );
}

/// An append whose first event carries an idempotency key records it: the key
/// finds that event, every event of the append carries the key, and an
/// unknown key finds nothing.
pub async fn idempotency_key_finds_its_append(store: &dyn EventStore) {
    assert_eq!(
        store.read_idempotent("never-used").await.expect("lookup"),
        None,
        "an unknown key finds nothing"
    );
    let ticket = Uuid::now_v7();
    append(store, ticket, 0, envelopes(&[opened("k")], 0)).await;
    let key = format!("retry-{}", Uuid::now_v7());
    let keyed_events: Vec<NewEvent> = [Event::TicketTriaged, note("with a key")]
        .iter()
        .zip(1..)
        .map(|(event, second)| NewEvent::from_domain(event, at(second), keyed(&key)))
        .collect();
    let recorded = append(store, ticket, 1, keyed_events).await;
    let found = store
        .read_idempotent(&key)
        .await
        .expect("lookup")
        .expect("the recorded key finds its append");
    assert_eq!(found, recorded[0], "the key finds the append's first event");
    assert!(
        recorded
            .iter()
            .all(|event| event.metadata.idempotency_key.as_deref() == Some(key.as_str())),
        "every event of the append carries the key in its metadata"
    );
    assert_eq!(
        found.metadata.request_digest.as_deref(),
        Some(format!("digest-of-{key}").as_str()),
        "the request digest is kept with the key"
    );
    // Appends without a key are not affected by each other.
    append(store, ticket, 3, envelopes(&[note("a"), note("b")], 3)).await;
    append(store, Uuid::now_v7(), 0, envelopes(&[opened("other")], 5)).await;
}

/// A key already recorded refuses a second append, to any ticket, and the
/// refused append writes nothing.
pub async fn idempotency_key_is_unique(store: &dyn EventStore) {
    let key = format!("once-{}", Uuid::now_v7());
    let first = Uuid::now_v7();
    let opening =
        |customer: &str| vec![NewEvent::from_domain(&opened(customer), at(0), keyed(&key))];
    append(store, first, 0, opening("first")).await;
    let before = head(store).await;
    let second = Uuid::now_v7();
    for (ticket, expected) in [(second, 0), (first, 1)] {
        let retried = store
            .append(
                ticket,
                expected,
                vec![NewEvent::from_domain(&note("again"), at(1), keyed(&key))],
            )
            .await;
        match retried {
            Err(StoreError::IdempotencyKeyTaken { key: taken }) => {
                assert_eq!(taken, key, "the error names the key");
            }
            other => panic!("a recorded key must refuse the append, got {other:?}"),
        }
    }
    assert_eq!(head(store).await, before, "a refused append writes nothing");
    assert!(read_stream(store, second).await.is_empty());
    assert_eq!(read_stream(store, first).await.len(), 1);
}

/// Racing appends that carry the same key (to different new tickets, as
/// retries of one `POST` reaching two instances would): exactly one commits.
pub async fn concurrent_appends_with_one_key_commit_once(store: Arc<dyn EventStore>) {
    const RACERS: usize = 6;
    let key = format!("race-{}", Uuid::now_v7());
    let start = Arc::new(Barrier::new(RACERS));
    let mut racers = JoinSet::new();
    for racer in 0..RACERS {
        let (store, start, key) = (store.clone(), start.clone(), key.clone());
        racers.spawn(async move {
            let event =
                NewEvent::from_domain(&opened(&format!("racer {racer}")), at(0), keyed(&key));
            start.wait().await;
            store.append(Uuid::now_v7(), 0, vec![event]).await
        });
    }
    let mut committed = Vec::new();
    while let Some(outcome) = racers.join_next().await {
        match outcome.expect("a racer panicked") {
            Ok(recorded) => committed.extend(recorded),
            Err(StoreError::IdempotencyKeyTaken { .. }) => {}
            Err(other) => panic!("a racer failed with {other:?}"),
        }
    }
    assert_eq!(
        committed.len(),
        1,
        "exactly one append with the key commits"
    );
    let found = store.read_idempotent(&key).await.expect("lookup");
    assert_eq!(
        found.as_ref(),
        committed.first(),
        "the key finds the winner"
    );
}
