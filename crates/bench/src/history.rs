//! The workloads on the event history itself: `import` (seeding N tickets'
//! events, timed) and `replay` (reading every event in global order and
//! decoding it to the domain event, timed).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use eventstore::EventStore;
use serde::Serialize;
use tickets::StoreUrl;
use uuid::Uuid;

use crate::seed::{self, Clock};
use crate::stats::per_second;

/// Tickets per generated chunk, and per import transaction on SQLite.
const CHUNK: u64 = 10_000;
/// Detail ids kept from each chunk for the `reads` workload.
const SAMPLE_PER_CHUNK: usize = 200;
/// Events per `read_all` call of the replay.
const REPLAY_BATCH: usize = 10_000;
/// Tickets appended at once on MongoDB (one append per ticket).
const MONGO_PARALLEL: usize = 8;

#[derive(Debug, Clone, Serialize)]
pub struct ImportResult {
    pub tickets: u64,
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    /// `bulk` (one transaction per chunk) or `append` (the public API, one
    /// append per ticket).
    pub path: &'static str,
}

/// A seeded store: what the read workloads need to know of it.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub store: StoreUrl,
    pub tickets: u64,
    pub events: u64,
    /// Ticket ids spread over the store, for detail reads.
    pub sample_ids: Vec<Uuid>,
    pub import: ImportResult,
}

/// Seeds `tickets` tickets into a fresh store and times it. Generation runs
/// on its own thread, a chunk ahead of the writes.
pub async fn import(store: &StoreUrl, tickets: u64) -> anyhow::Result<Seeded> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<seed::Chunk>(2);
    let generator = std::thread::spawn(move || {
        let mut clock = Clock::default();
        let mut from = 0;
        while from < tickets {
            let to = (from + CHUNK).min(tickets);
            if tx.blocking_send(seed::chunk(from, to, &mut clock)).is_err() {
                return;
            }
            from = to;
        }
    });
    let started = Instant::now();
    let mut events = 0u64;
    let mut sample_ids = Vec::new();
    let path = match store {
        StoreUrl::Sqlite(file) => {
            let file = file.clone();
            let sqlite =
                tokio::task::spawn_blocking(move || store_sqlite::SqliteStore::open(&file))
                    .await
                    .context("joining the store opener")?
                    .context("opening the SQLite store")?;
            while let Some(chunk) = rx.recv().await {
                sample(&chunk, &mut sample_ids);
                events += chunk.events.len() as u64;
                sqlite.import(chunk.events).await.context("bulk import")?;
            }
            "bulk"
        }
        StoreUrl::Mongo(_) => {
            let backend = tickets::Backend::open(store).await?;
            while let Some(chunk) = rx.recv().await {
                sample(&chunk, &mut sample_ids);
                events += chunk.events.len() as u64;
                append_per_ticket(&backend.events, chunk.events).await?;
            }
            "append"
        }
    };
    let elapsed = started.elapsed();
    if generator.join().is_err() {
        bail!("the seed generator panicked");
    }
    let import = ImportResult {
        tickets,
        events,
        seconds: elapsed.as_secs_f64(),
        events_per_second: per_second(events, elapsed),
        path,
    };
    Ok(Seeded {
        store: store.clone(),
        tickets,
        events,
        sample_ids,
        import,
    })
}

fn sample(chunk: &seed::Chunk, ids: &mut Vec<Uuid>) {
    let step = (chunk.tickets.len() / SAMPLE_PER_CHUNK).max(1);
    ids.extend(chunk.tickets.iter().step_by(step).map(|t| t.id));
}

/// The public API's way: each ticket's events in one append at version 0.
async fn append_per_ticket(
    store: &Arc<dyn EventStore>,
    events: Vec<(Uuid, eventstore::NewEvent)>,
) -> anyhow::Result<()> {
    let mut streams: Vec<(Uuid, Vec<eventstore::NewEvent>)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for (ticket, event) in events {
        let slot = *index.entry(ticket).or_insert_with(|| {
            streams.push((ticket, Vec::new()));
            streams.len() - 1
        });
        streams[slot].1.push(event);
    }
    let mut running = tokio::task::JoinSet::new();
    for (ticket, events) in streams {
        if running.len() >= MONGO_PARALLEL
            && let Some(done) = running.join_next().await
        {
            done.context("joining an append")??;
        }
        let store = store.clone();
        running.spawn(async move { store.append(ticket, 0, events).await });
    }
    while let Some(done) = running.join_next().await {
        done.context("joining an append")??;
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayResult {
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub batch: usize,
}

/// Reads every event in global order, `REPLAY_BATCH` at a time (the next
/// batch is read while this one is decoded), and decodes each to its domain
/// event. Fails on a gap or an undecodable event: a replay must see them all.
pub async fn replay(store: &StoreUrl) -> anyhow::Result<ReplayResult> {
    let backend = tickets::Backend::open(store).await?;
    let events = backend.events;
    let started = Instant::now();
    let mut after = 0u64;
    let mut count = 0u64;
    let fetch = |after: u64| {
        let events = events.clone();
        tokio::spawn(async move { events.read_all(after, REPLAY_BATCH).await })
    };
    let mut next = fetch(after);
    loop {
        let batch = next.await.context("joining a read")??;
        let Some(last) = batch.last() else {
            break;
        };
        let last_position = last.position;
        next = fetch(last_position);
        for event in &batch {
            if event.position != after + 1 {
                bail!("replay: position {} follows {after}", event.position);
            }
            after = event.position;
            event
                .decode()
                .with_context(|| format!("replay: event at {}", event.position))?;
        }
        count += batch.len() as u64;
    }
    let elapsed = started.elapsed();
    Ok(ReplayResult {
        events: count,
        seconds: elapsed.as_secs_f64(),
        events_per_second: per_second(count, elapsed),
        batch: REPLAY_BATCH,
    })
}
