//! Ending a dead process's abandoned transactions within seconds.
//!
//! A store process that dies (SIGKILL, a lost host) with a transaction open
//! cannot abort it. MongoDB keeps such a transaction, with its write locks,
//! until `transactionLifetimeLimitSeconds` (60 s by default) and then aborts
//! it; every append writes the one `counters` document, so until then every
//! other append meets a write conflict. MongoDB documents the way out:
//! `killSessions` kills the named sessions, which ends their in-progress
//! operations and aborts their open transactions, releasing the locks
//! ("killSessions" in the MongoDB manual). A user may kill its own sessions
//! without the `killAnySession` privilege; the server matches each UUID with
//! the hash of the calling user's credentials, so every store process must
//! authenticate as the same user (or hold `killAnySession`).
//!
//! So each store started with [`crate::MongoStore::connect`]:
//!
//! - has an owner id of its own (a new UUID per store) and a document in
//!   `session_owners` (migration `0008_session_owners`): `{_id: owner,
//!   heartbeat_at, lsids}`;
//! - registers the logical session id (lsid) of every session it runs a
//!   transaction on *before* that session's first transaction starts
//!   ([`Registry::register`], called from `txn`), so an lsid that can hold
//!   locks is always on record first. The driver pools server sessions, so a
//!   process has few distinct lsids; each is written once and then cached;
//! - heartbeats every [`HEARTBEAT_EVERY`]: sets `heartbeat_at` to the
//!   server's time (`clock`, never this process's clock, which another
//!   process would compare with its own) and rewrites `lsids` from the cache,
//!   with an upsert, so a store whose document was swept while it was merely
//!   paused is back on record with every lsid within a heartbeat;
//! - sweeps every [`SWEEP_EVERY`]: an owner whose heartbeat is older than
//!   [`OWNER_DEAD_AFTER`] by the server's clock is dead. The sweeper sends
//!   `killSessions` with its lsids (never an empty list: that would kill
//!   every session of the user), then deletes its document, on the condition
//!   that its heartbeat is still the one read, so an owner that came back in
//!   between keeps its record;
//! - deletes its own document when it stops cleanly
//!   ([`crate::MongoStore::shutdown`], and best effort on drop).
//!
//! Races. Two live stores sweeping the same dead owner at once is harmless:
//! `killSessions` of a session already killed or gone kills nothing, and the
//! second delete deletes nothing. A store that was paused longer than the
//! bound (or cut off from the primary) and comes back finds its sessions
//! killed: the next statement or commit of a transaction that was open then
//! gets `NoSuchTransaction`, which the server labels `TransientTransactionError`,
//! and `txn` runs the transaction again on the same session (MongoDB
//! documents that a killed session may be used again). A statement that was
//! running at the moment of the kill is interrupted instead (`Interrupted`,
//! not labelled transient): that one operation fails as unavailable, and its
//! transaction provably did not commit. Its next heartbeat finds its document
//! gone and writes it again, with every lsid (a warning says so).
//!
//! Nobody is judged dead because the server was out of reach: a store sweeps
//! only after its own heartbeats have succeeded without a break for
//! [`OWNER_DEAD_AFTER`], so after a failover or an outage, when every
//! heartbeat on record is old, every live store has had the time to write a
//! fresh one before anyone sweeps.
//!
//! Heartbeats, registrations and sweeps read and write the primary with
//! write concern `w: 1` and read concern `local`, unlike the rest of the
//! store: they are about who is alive now, not about durable data, and a
//! heartbeat that waited for a lagging majority would make a live process
//! look dead. A registration rolled back by a failover loses nothing: the
//! transactions on the old primary end with it.
//!
//! A server without `killSessions` (the jongodb test server answers
//! CommandNotFound) is reported once with a warning; the records are kept and
//! swept all the same. Stores opened with [`crate::MongoStore::open`] (tools,
//! tests) have no heartbeat and register nothing: a record without heartbeats
//! would be swept, and its live transactions killed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, Document, doc};
use mongodb::options::{Acknowledgment, CollectionOptions, ReadConcern, WriteConcern};
use mongodb::{Collection, Database};
use tokio::time::Instant;

use crate::clock::Clock;
use crate::codec;
use crate::error::{code, server_code};

/// The collection, from `migrations/mongodb/0008_session_owners.json`.
pub const SESSION_OWNERS: &str = "session_owners";

/// How often a store writes its heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// How often a store looks for dead owners.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// An owner whose heartbeat is older than this is dead. Five missed
/// heartbeats: a live process misses that many only when it is stalled or
/// cut off from the primary for seconds, and then its open transactions
/// block every append anyway. Short enough that a dead process's locks go
/// within [`OWNER_DEAD_AFTER`] + [`SWEEP_EVERY`] + a heartbeat (about 8 s)
/// rather than 60, which is inside one append's own deadline
/// (`OPERATION_DEADLINE`, 10 s) and far inside the API's 30 s request
/// timeout.
pub const OWNER_DEAD_AFTER: Duration = Duration::from_secs(5);

/// The most one heartbeat or one sweep may take; past it, it counts as
/// failed (the driver has no socket timeout).
const ROUND_TIMEOUT: Duration = Duration::from_secs(2);

/// An lsid not used by a transaction for this long is dropped from the
/// record: MongoDB's default `logicalSessionTimeoutMinutes`. Any transaction
/// this store starts ends within its own deadline (a minute at most) or is
/// aborted by the server at `transactionLifetimeLimitSeconds`, and the
/// driver hands out no pooled session within a minute of its timeout.
const LSID_IDLE: Duration = Duration::from_secs(30 * 60);

/// A gap between two successful heartbeats longer than this (the loop was
/// held up: a paused process) starts the streak that sweeping needs over.
const STREAK_GAP: Duration = Duration::from_secs(4);

// Checked at build time: the bound leaves room for several heartbeats.
const _: () = assert!(OWNER_DEAD_AFTER.as_millis() >= 4 * HEARTBEAT_EVERY.as_millis());
const _: () = assert!(ROUND_TIMEOUT.as_millis() < OWNER_DEAD_AFTER.as_millis());
const _: () = assert!(
    HEARTBEAT_EVERY.as_millis() + ROUND_TIMEOUT.as_millis() < STREAK_GAP.as_millis()
        && STREAK_GAP.as_millis() < OWNER_DEAD_AFTER.as_millis()
);

/// One store's owner id, its lsids and its record.
#[derive(Debug)]
pub(crate) struct Registry {
    owner: String,
    owners: Collection<Document>,
    /// Off for stores without a heartbeat ([`crate::MongoStore::open`]) and
    /// after [`Registry::close`].
    enabled: AtomicBool,
    /// The lsids on record (as far as this store knows), with when a
    /// transaction last started on each.
    lsids: Mutex<HashMap<Vec<u8>, Instant>>,
    /// Writes of the record take turns, so each writes the whole list and
    /// the record always holds what `lsids` held when it was written.
    writes: tokio::sync::Mutex<()>,
    /// Whether this store's record has been written: a later write that has
    /// to create it again found it swept.
    on_record: AtomicBool,
    /// Whether "no killSessions" has been reported.
    told_no_kill: AtomicBool,
}

/// What a sweep did, for the logs and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Swept {
    /// Dead owners whose records were deleted.
    pub owners: usize,
    /// Their lsids, sent to `killSessions`.
    pub lsids: usize,
}

impl Registry {
    pub(crate) fn new(db: &Database) -> Registry {
        let options = CollectionOptions::builder()
            .write_concern(WriteConcern::builder().w(Acknowledgment::Nodes(1)).build())
            .read_concern(ReadConcern::local())
            .build();
        Registry {
            owner: uuid::Uuid::now_v7().to_string(),
            owners: db.collection_with_options(SESSION_OWNERS, options),
            enabled: AtomicBool::new(false),
            lsids: Mutex::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
            on_record: AtomicBool::new(false),
            told_no_kill: AtomicBool::new(false),
        }
    }

    /// This store's owner id.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// Registers from now on (the heartbeat runs).
    pub(crate) fn enable(&self) {
        self.enabled.store(true, Ordering::SeqCst);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Instant>> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.lsids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts the session `lsid` (a driver session's `id()`: `{id: UUID}`) on
    /// record, unless it is already: to be called before every transaction
    /// starts on it. Once per lsid a round trip for the clock and one write.
    pub(crate) async fn register(
        &self,
        clock: &Clock,
        db: &Database,
        lsid: &Document,
    ) -> Result<(), mongodb::error::Error> {
        if !self.enabled.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Every driver session's id is `{id: UUID}` (binary subtype 4).
        let Some(Bson::Binary(Binary { bytes: id, .. })) = lsid.get("id") else {
            return Err(mongodb::error::Error::custom(format!(
                "a session id without a UUID cannot be registered: {lsid}"
            )));
        };
        if self.touch(id) {
            return Ok(());
        }
        let _turn = self.writes.lock().await;
        if self.touch(id) {
            return Ok(());
        }
        let mut lsids = self.listed();
        lsids.push(uuid(id));
        self.write(clock, db, lsids).await?;
        self.cache().insert(id.clone(), Instant::now());
        Ok(())
    }

    /// Marks `id` as used now, if it is on record.
    fn touch(&self, id: &Vec<u8>) -> bool {
        match self.cache().get_mut(id) {
            Some(used) => {
                *used = Instant::now();
                true
            }
            None => false,
        }
    }

    /// The cached lsids as BSON UUIDs.
    fn listed(&self) -> Vec<Bson> {
        self.cache().keys().map(|id| uuid(id)).collect()
    }

    /// Writes this store's record: the heartbeat, now, and exactly `lsids`.
    /// Call with `writes` held.
    async fn write(
        &self,
        clock: &Clock,
        db: &Database,
        lsids: Vec<Bson>,
    ) -> Result<(), mongodb::error::Error> {
        let now = clock.now(db).await?;
        let written = self
            .owners
            .update_one(
                doc! { "_id": &self.owner },
                doc! { "$set": { "heartbeat_at": codec::date(now), "lsids": lsids } },
            )
            .upsert(true)
            .await?;
        let created = written.upserted_id.is_some();
        if created && self.on_record.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                owner = %self.owner,
                "this store's session record had been swept as dead (no heartbeat for \
                 {OWNER_DEAD_AFTER:?}: paused, or cut off from the primary); its sessions \
                 were killed and their open transactions aborted; it is on record again"
            );
        }
        Ok(())
    }

    /// One heartbeat: the server's time, and the lsids still in use (those
    /// idle for [`LSID_IDLE`] are dropped from the record).
    pub(crate) async fn heartbeat(
        &self,
        clock: &Clock,
        db: &Database,
    ) -> Result<(), mongodb::error::Error> {
        if !self.enabled.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _turn = self.writes.lock().await;
        let lsids = {
            let mut cache = self.cache();
            cache.retain(|_, used| used.elapsed() < LSID_IDLE);
            cache.keys().map(|id| uuid(id)).collect()
        };
        self.write(clock, db, lsids).await
    }

    /// Ends the sessions of every other owner whose heartbeat is older than
    /// [`OWNER_DEAD_AFTER`] and deletes its record.
    pub(crate) async fn sweep(
        &self,
        clock: &Clock,
        db: &Database,
    ) -> Result<Swept, mongodb::error::Error> {
        let now = clock.now(db).await?;
        let dead_after = chrono::TimeDelta::from_std(OWNER_DEAD_AFTER)
            .map_err(|e| mongodb::error::Error::custom(e.to_string()))?;
        let cutoff = now - dead_after;
        let dead: Vec<Document> = self
            .owners
            .find(doc! {
                "_id": { "$ne": &self.owner },
                "heartbeat_at": { "$lt": codec::date(cutoff) },
            })
            .await?
            .try_collect()
            .await?;
        let mut swept = Swept::default();
        for owner in dead {
            let (Some(id), Some(heartbeat)) = (owner.get("_id"), owner.get("heartbeat_at")) else {
                continue;
            };
            let lsids: Vec<Document> = owner
                .get_array("lsids")
                .map(|lsids| {
                    lsids
                        .iter()
                        .filter(|lsid| matches!(lsid, Bson::Binary(_)))
                        .map(|lsid| doc! { "id": lsid.clone() })
                        .collect()
                })
                .unwrap_or_default();
            // Never an empty list: `killSessions: []` kills every session.
            if !lsids.is_empty() {
                let count = lsids.len();
                match kill_sessions(db, lsids).await {
                    Ok(()) => {}
                    Err(e) if server_code(&e) == Some(code::COMMAND_NOT_FOUND) => {
                        if !self.told_no_kill.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                database = db.name(),
                                "the server has no killSessions (a test server?): a dead \
                                 process's open transactions last until the server's \
                                 transactionLifetimeLimitSeconds; its records are deleted \
                                 all the same"
                            );
                        }
                    }
                    // Refused (not authorized, say): asking again will not
                    // help, and the server still ends the transactions at
                    // transactionLifetimeLimitSeconds.
                    Err(e) if server_code(&e).is_some() => {
                        tracing::warn!(
                            database = db.name(),
                            owner = %id,
                            error = %e,
                            "killSessions refused for a dead store's sessions (do all store \
                             processes authenticate as the same user?); deleting its record"
                        );
                    }
                    // Not answered: the record stays for the next sweep.
                    Err(e) => return Err(e),
                }
                swept.lsids += count;
            }
            let deleted = self
                .owners
                .delete_one(doc! { "_id": id.clone(), "heartbeat_at": heartbeat.clone() })
                .await?;
            if deleted.deleted_count == 1 {
                swept.owners += 1;
                tracing::info!(
                    database = db.name(),
                    owner = %id,
                    heartbeat_at = %heartbeat,
                    "ended the sessions of a store process that stopped heartbeating"
                );
            }
        }
        Ok(swept)
    }

    /// Stops registering and deletes this store's record: a clean stop.
    pub(crate) async fn close(&self) -> Result<(), mongodb::error::Error> {
        self.enabled.store(false, Ordering::SeqCst);
        let _turn = self.writes.lock().await;
        self.owners.delete_one(doc! { "_id": &self.owner }).await?;
        self.cache().clear();
        Ok(())
    }

    /// Whether [`Registry::close`] has run (or the store never registered).
    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Deletes the record without waiting, best effort: the drop of a store
    /// that was not shut down. Others sweep it within seconds otherwise.
    pub(crate) fn close_in_background(self: &Arc<Self>) {
        if !self.enabled.swap(false, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let owners = self.owners.clone();
        let owner = self.owner.clone();
        runtime.spawn(async move {
            let delete = owners.delete_one(doc! { "_id": owner });
            let _ = tokio::time::timeout(ROUND_TIMEOUT, delete).await;
        });
    }
}

/// `killSessions` for `lsids` (each `{id: UUID}`), on `admin`, at the primary.
async fn kill_sessions(db: &Database, lsids: Vec<Document>) -> Result<(), mongodb::error::Error> {
    db.client()
        .database("admin")
        .run_command(doc! { "killSessions": lsids })
        .await?;
    Ok(())
}

fn uuid(id: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Uuid,
        bytes: id.to_vec(),
    })
}

/// The heartbeat and sweep task of one store, until it is aborted. Holds
/// only what it needs, never the store, so the store's drop can end it.
pub(crate) async fn run(registry: Arc<Registry>, clock: Arc<Clock>, db: Database) {
    let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Since when this store's heartbeats have succeeded without a break.
    let mut streak_since: Option<Instant> = None;
    let mut last_ok: Option<Instant> = None;
    let mut last_sweep: Option<Instant> = None;
    let mut failing = false;
    loop {
        ticks.tick().await;
        if !registry.is_enabled() {
            return;
        }
        let beat = tokio::time::timeout(ROUND_TIMEOUT, registry.heartbeat(&clock, &db)).await;
        match beat {
            Ok(Ok(())) => {
                // A loop that was itself held up (a paused process) starts
                // its streak over, like one whose heartbeats failed.
                if last_ok.is_some_and(|at| at.elapsed() > STREAK_GAP) {
                    streak_since = None;
                }
                streak_since.get_or_insert_with(Instant::now);
                last_ok = Some(Instant::now());
                if std::mem::take(&mut failing) {
                    tracing::info!(owner = registry.owner(), "session heartbeats succeed again");
                }
            }
            Ok(Err(e)) => {
                streak_since = None;
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(owner = registry.owner(), error = %e, "a session heartbeat failed");
                }
            }
            Err(_) => {
                streak_since = None;
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(
                        owner = registry.owner(),
                        "a session heartbeat got no answer within {ROUND_TIMEOUT:?}"
                    );
                }
            }
        }
        let judge = streak_since.is_some_and(|since| since.elapsed() >= OWNER_DEAD_AFTER);
        let due = last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY);
        if judge && due {
            last_sweep = Some(Instant::now());
            match tokio::time::timeout(ROUND_TIMEOUT, registry.sweep(&clock, &db)).await {
                Ok(Ok(swept)) if swept.owners > 0 => {
                    tracing::debug!(
                        owner = registry.owner(),
                        dead_owners = swept.owners,
                        killed_lsids = swept.lsids,
                        "swept dead store processes"
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(owner = registry.owner(), error = %e, "a session sweep failed");
                }
                Err(_) => {
                    tracing::debug!(
                        owner = registry.owner(),
                        "a session sweep got no answer in time"
                    );
                }
            }
        }
    }
}
