//! Reads through `sealing::SealedEvents` over a real SQLite file: a read big
//! enough to be made in parts (each part opened on a task of its own while
//! the next is read) gives exactly what small pages give, every sealed field
//! opened, by position and by ticket.

use std::sync::Arc;

use domain::Event;
use eventstore::{EventStore, NewEvent, RecordedEvent};
use sealing::{KeyStore, Keyring, SealedEvents, is_sealed};
use store_sqlite::SqliteStore;
use uuid::Uuid;

/// Tickets of four events each (an opening and three notes), ten per
/// customer: 10,000 events, past the size a read is made in parts at.
const TICKETS: usize = 2_500;

fn note(text: String) -> NewEvent {
    NewEvent::from(&Event::NoteAdded { text })
}

/// A page size that splits no big read into parts.
const PAGE: usize = 97;

async fn pages_by_position(events: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &RecordedEvent| e.position);
        let page = events.read_all(after, PAGE).await.expect("a page");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

async fn pages_by_ticket(events: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut all: Vec<RecordedEvent> = Vec::new();
    loop {
        let after = all.last().map(|e| (e.ticket_id, e.version));
        let page = events.read_by_ticket(after, PAGE).await.expect("a page");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_sealed_read_is_its_small_pages_put_together() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("tickets.db")).expect("open"));
    let keyring = Arc::new(Keyring::new(store.clone() as Arc<dyn KeyStore>, None));
    let sealed = SealedEvents::new(store.clone() as Arc<dyn EventStore>, keyring);

    for n in 0..TICKETS {
        let ticket = Uuid::now_v7();
        let opening = NewEvent::from(&Event::TicketOpened {
            customer: format!("customer-{}", n / 10),
            subject: format!("subject of {n}"),
            message: format!("message of {n}: \"quoted\"\nand a second line"),
        });
        let notes = (1..=3).map(|k| note(format!("note {k} of {n}")));
        sealed
            .append(ticket, 0, std::iter::once(opening).chain(notes).collect())
            .await
            .expect("append");
    }
    let events = TICKETS * 4;

    // Stored sealed, every event of a type with personal fields.
    let raw = pages_by_position(&*store).await;
    assert_eq!(raw.len(), events);
    assert!(raw.iter().all(|e| is_sealed(&e.data)), "stored sealed");

    // Read by position: small pages, then reads made in parts that end on
    // the limit (2 × 4,096) and on a short part (the last of 10,000).
    let paged = pages_by_position(&sealed).await;
    assert_eq!(paged.len(), events);
    let mut openings = 0;
    for event in &paged {
        match event.decode().expect("every event opens and decodes") {
            Event::TicketOpened {
                subject, message, ..
            } => {
                let n = subject.strip_prefix("subject of ").expect("opened subject");
                assert_eq!(
                    message,
                    format!("message of {n}: \"quoted\"\nand a second line")
                );
                openings += 1;
            }
            Event::NoteAdded { text } => assert!(text.starts_with("note "), "{text}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(openings, TICKETS);
    let first = sealed.read_all(0, 8_192).await.expect("a parted read");
    assert_eq!(first[..], paged[..8_192], "a read that ends on its limit");
    let middle = paged[999].position;
    let rest = sealed
        .read_all(middle, 10_000)
        .await
        .expect("a parted read");
    assert_eq!(rest[..], paged[1_000..], "a read that ends on a short part");

    // Read by ticket: the same.
    let by_ticket = pages_by_ticket(&sealed).await;
    assert_eq!(by_ticket.len(), events);
    let whole = sealed
        .read_by_ticket(None, 10_000)
        .await
        .expect("a parted read");
    assert_eq!(whole, by_ticket, "by ticket, in parts as in pages");
    let after = Some((by_ticket[1_001].ticket_id, by_ticket[1_001].version));
    let exact = sealed
        .read_by_ticket(after, 8_192)
        .await
        .expect("a parted read");
    assert_eq!(exact[..], by_ticket[1_002..1_002 + 8_192]);
}
