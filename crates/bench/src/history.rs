//! The workloads on the event history itself: `import` (seeding N tickets'
//! events, timed) and `replay` (reading every event in global order through
//! the sealing decorator, as every reader of the store does, and decoding
//! it to the domain event, timed).
//!
//! The bulk import writes events as given: in clear, as events from before
//! sealing are. [`import_sealed`] seeds the same tickets as `SealedEvents`
//! would have stored them, each personal field sealed with its customer's
//! key (one key per customer, made first, through the store's key store),
//! so that a replay of it pays for opening them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use async_trait::async_trait;
use eventstore::EventStore;
use sealing::{DataKey, KeyError, KeyStore, Keyring, SealedEvents, StoredKey};
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
    import_with(store, tickets, seed::CUSTOMERS, None).await
}

/// Each customer's key id and key, for sealing a seed.
type Keys = HashMap<String, (Uuid, DataKey)>;

/// How a sealed seed was made.
#[derive(Debug, Clone, Serialize)]
pub struct SealedImport {
    /// Distinct customers, one data key each.
    pub customers: u64,
    /// Making and storing their keys (`Keyring::key_for`, one at a time),
    /// before the import.
    pub keys_seconds: f64,
    /// The bulk import of the sealed events; the sealing runs on the
    /// generator's thread, a chunk ahead of the writes, as generation does.
    pub import: ImportResult,
}

/// Seeds `tickets` tickets with their personal fields sealed, ten tickets
/// per customer ([`seed::customers_for`]), each customer's tickets spread
/// over the whole history: keys made first, then the events sealed with
/// `sealing::sealed::seal_payload` (what `SealedEvents` stores) and bulk
/// imported.
pub async fn import_sealed(
    store: &StoreUrl,
    tickets: u64,
) -> anyhow::Result<(Seeded, SealedImport)> {
    let customers = seed::customers_for(tickets);
    let backend = tickets::Backend::open(store).await?;
    let keyring = Keyring::new(backend.keys.clone(), None);
    let started = Instant::now();
    let mut keys = Keys::with_capacity(usize::try_from(customers).unwrap_or(0));
    for n in 0..customers {
        let customer = seed::customer_of(n, customers);
        let key = keyring
            .key_for(&customer)
            .await
            .with_context(|| format!("making the key of {customer}"))?;
        keys.insert(customer, key);
    }
    let keys_seconds = started.elapsed().as_secs_f64();
    drop(backend);
    let seeded = import_with(store, tickets, customers, Some(Arc::new(keys))).await?;
    let import = seeded.import.clone();
    Ok((
        seeded,
        SealedImport {
            customers,
            keys_seconds,
            import,
        },
    ))
}

/// The chunk's events with their personal fields sealed with their
/// ticket's customer's key.
fn seal_chunk(chunk: &mut seed::Chunk, keys: &Keys) -> anyhow::Result<()> {
    let by_ticket: HashMap<Uuid, &(Uuid, DataKey)> = chunk
        .tickets
        .iter()
        .map(|t| {
            keys.get(&t.customer)
                .map(|key| (t.id, key))
                .with_context(|| format!("no key for {}", t.customer))
        })
        .collect::<anyhow::Result<_>>()?;
    for (ticket, event) in &mut chunk.events {
        if sealing::personal_fields(&event.event_type).is_empty() {
            continue;
        }
        let (key_id, key) = by_ticket
            .get(ticket)
            .with_context(|| format!("ticket {ticket} is not in its chunk"))?;
        event.data = sealing::sealed::seal_payload(&event.event_type, &event.data, *key_id, key)?;
    }
    Ok(())
}

/// Seeds `tickets` tickets of `customers` customers, sealed with `keys`
/// when given. Generation (and sealing) runs on its own thread, a chunk
/// ahead of the writes.
async fn import_with(
    store: &StoreUrl,
    tickets: u64,
    customers: u64,
    keys: Option<Arc<Keys>>,
) -> anyhow::Result<Seeded> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<seed::Chunk>>(2);
    let generator = std::thread::spawn(move || {
        let mut clock = Clock::default();
        let mut from = 0;
        while from < tickets {
            let to = (from + CHUNK).min(tickets);
            let mut chunk = seed::chunk_with(from, to, &mut clock, customers);
            let chunk = match &keys {
                Some(keys) => seal_chunk(&mut chunk, keys).map(|()| chunk),
                None => Ok(chunk),
            };
            if tx.blocking_send(chunk).is_err() {
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
                let chunk = chunk.context("sealing the seed")?;
                sample(&chunk, &mut sample_ids);
                events += chunk.events.len() as u64;
                sqlite.import(chunk.events).await.context("bulk import")?;
            }
            "bulk"
        }
        StoreUrl::Mongo(_) => {
            let backend = tickets::Backend::open(store).await?;
            while let Some(chunk) = rx.recv().await {
                let chunk = chunk.context("sealing the seed")?;
                sample(&chunk, &mut sample_ids);
                events += chunk.events.len() as u64;
                // Sealed already (or in clear, as imported events are).
                append_per_ticket(&backend.raw_events, chunk.events).await?;
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
    /// Keys read from the key store (the keyring's cache missed).
    pub key_loads: u64,
    /// The key store reads those keys took (a batch's misses are read at
    /// once).
    pub key_queries: u64,
    /// Time spent in those reads, summed (they overlap the decoding).
    pub key_load_seconds: f64,
}

/// A key store that counts and times the reads of keys by id: the
/// keyring's cache misses during a replay.
#[derive(Debug)]
struct CountedKeys {
    inner: Arc<dyn KeyStore>,
    loads: AtomicU64,
    queries: AtomicU64,
    nanos: AtomicU64,
}

#[async_trait]
impl KeyStore for CountedKeys {
    async fn by_customer(&self, customer: &str) -> Result<Option<StoredKey>, KeyError> {
        self.inner.by_customer(customer).await
    }

    async fn by_id(&self, key_id: Uuid) -> Result<Option<StoredKey>, KeyError> {
        let started = Instant::now();
        let key = self.inner.by_id(key_id).await;
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.queries.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        key
    }

    async fn by_ids(&self, key_ids: &[Uuid]) -> Result<Vec<StoredKey>, KeyError> {
        let started = Instant::now();
        let keys = self.inner.by_ids(key_ids).await;
        self.loads
            .fetch_add(key_ids.len() as u64, Ordering::Relaxed);
        self.queries.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        keys
    }

    async fn create(&self, key: StoredKey) -> Result<StoredKey, KeyError> {
        self.inner.create(key).await
    }

    async fn destroy(&self, key_id: Uuid) -> Result<bool, KeyError> {
        self.inner.destroy(key_id).await
    }
}

/// Reads every event in global order, `REPLAY_BATCH` at a time (the next
/// batch is read, and its sealed fields opened, while this one is decoded),
/// and decodes each to its domain event. The events are read as the system
/// reads them, through `SealedEvents` (its keyring's cache as in ticketd),
/// over a key store that counts the keys it loads. Fails on a gap or an
/// undecodable event: a replay must see them all.
pub async fn replay(store: &StoreUrl) -> anyhow::Result<ReplayResult> {
    let backend = tickets::Backend::open(store).await?;
    let keys = Arc::new(CountedKeys {
        inner: backend.keys.clone(),
        loads: AtomicU64::new(0),
        queries: AtomicU64::new(0),
        nanos: AtomicU64::new(0),
    });
    let keyring = Arc::new(Keyring::new(keys.clone(), None));
    let events: Arc<dyn EventStore> =
        Arc::new(SealedEvents::new(backend.raw_events.clone(), keyring));
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
        key_loads: keys.loads.load(Ordering::Relaxed),
        key_queries: keys.queries.load(Ordering::Relaxed),
        key_load_seconds: keys.nanos.load(Ordering::Relaxed) as f64 / 1e9,
    })
}
