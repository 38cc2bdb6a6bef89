//! The MongoDB backend: the event store and the projections' slots, leases and
//! dead letters in one database.
//!
//! [`MongoStore`] implements both [`eventstore::EventStore`] and
//! [`readmodel::ViewStore`]. Production runs it on a replica set (a single-node
//! one will do): appends and slot writes are multi-document transactions, and
//! tailers wake through a change stream.
//!
//! - The global position is the events' `_id`, taken from a counter document
//!   inside each append's transaction, so it is gap-free and in commit order
//!   (`events`).
//! - Each projection has two slots (collections per slot, a document per slot
//!   in `projection_slots` saying which is live); every slot write resolves
//!   the slot, checks its lease's fence and the slot's checkpoint, and writes
//!   rows under a version guard, in one transaction (`views`).
//! - Lease times are the server's clock (`clock`).
//! - The change stream on `events` is only a prompt wake-up; the truth is a
//!   read by position, and without a stream waiters poll (`change_stream`,
//!   `wake`).
//! - The schema comes from the versioned files in `migrations/mongodb/`,
//!   applied at [`MongoStore::connect`] (`migrate`).
//! - Ids are UUID strings, times BSON dates: milliseconds (`codec`).
//! - Every wait for the server is bounded (`bounds`), and a commit whose
//!   outcome is unknown is found out, never reported as a failure (`txn`,
//!   `events`).
//! - Every store process registers the sessions it runs transactions on and
//!   heartbeats; the others `killSessions` a dead one's, so its abandoned
//!   transactions stop blocking writes within seconds (`sessions`).
//!
//! Modules: `codec` (document shapes), `error` (failures, server codes and
//! their mapping), `bounds` (time bounds), `txn` (transactions and their
//! retries), `clock`, `events`, `views` (slots, rows, leases, dead letters),
//! `sessions` (registered sessions, heartbeats, the sweep of dead processes),
//! `tokens` (the API tokens, [`auth::TokenStore`]),
//! `migrate`, `wake`, `change_stream`, and, behind the `testing` feature,
//! `testing` (a server for tests) and `fault_proxy` (a TCP proxy that
//! injects network faults).

mod bounds;
mod change_stream;
mod clock;
mod codec;
mod error;
mod events;
#[cfg(feature = "testing")]
pub mod fault_proxy;
mod keys;
mod migrate;
mod sessions;
#[cfg(feature = "testing")]
pub mod testing;
mod tokens;
mod txn;
mod views;
mod wake;

use std::sync::Arc;

use eventstore::StoreError;
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, DatabaseOptions, ReadConcern, WriteConcern};
use mongodb::{Client, Collection, Database};
use tokio::task::AbortHandle;

use crate::wake::Wakeups;

pub use bounds::{
    APPEND_QUEUE_MAX, APPEND_QUEUE_WAIT, COMMIT_WTIMEOUT, CONNECT_TIMEOUT, LOOKUP_RESERVE,
    OPERATION_DEADLINE, SERVER_SELECTION_TIMEOUT, VIEW_WRITE_DEADLINE,
};
pub use change_stream::MAX_AWAIT;
pub use clock::ClockSource;
pub use error::OpenError;
pub use migrate::{AppliedMigration, STALE_CLAIM, migrations};
pub use sessions::{HEARTBEAT_EVERY, OWNER_DEAD_AFTER, SESSION_OWNERS, SWEEP_EVERY};
pub use txn::TxnStats;
pub use wake::{LIVE_RECHECK, POLL_INTERVAL};

/// Receives the driver's command events (see `MongoStore::open_observed`).
type CommandObserver = mongodb::event::EventHandler<mongodb::event::command::CommandEvent>;

/// The database used when the URI names none.
pub const DEFAULT_DATABASE: &str = "tickets";

/// The MongoDB backend. Cloning is cheap: clones share the client (and its
/// connection pool), the wake-up signal and the change-stream task.
#[derive(Clone)]
pub struct MongoStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    db: Database,
    events: Collection<Document>,
    counters: Collection<Document>,
    slots: Collection<Document>,
    leases: Collection<Document>,
    dead_letters: Collection<Document>,
    wakeups: Arc<Wakeups>,
    txn: txn::TxnCounters,
    clock: Arc<clock::Clock>,
    /// The sessions this store runs transactions on, on record for the
    /// sweep of dead processes (see `sessions`).
    sessions: Arc<sessions::Registry>,
    /// Appends through this store take turns, in a bounded queue (see
    /// `events`).
    append_turn: events::AppendTurn,
    /// Time bounds from the URI and the defaults (`bounds`).
    bounds: bounds::Bounds,
    /// Writes to a projection slot and its lease through this store take
    /// turns, one queue per (projection, target) (see `views`).
    slot_turns: views::SlotTurns,
    /// Prompts for waiters on a live checkpoint, and the task that follows
    /// `projection_slots` for them (see `views`).
    checkpoints: views::CheckpointMoves,
    /// The change-stream task, stopped when the last clone goes.
    follower: Option<AbortHandle>,
    /// The session heartbeat and sweep task, stopped by
    /// [`MongoStore::shutdown`] or when the last clone goes.
    heartbeat: Option<AbortHandle>,
}

/// Every read outside a transaction sees only majority-committed data, and
/// every write outside one waits for a majority: a tailer must never apply an
/// event that a failover can roll back, because the new primary would give
/// its position to another event that the tailer would then never read
/// (ARCHITECTURE.md, "MongoDB: read and write concerns"). Transactions set
/// their own (snapshot, majority) in `txn`. Set on the database handle so
/// that no collection can be opened without them. A write waits for its
/// majority at most `wtimeout` (see `bounds`).
fn concerns(wtimeout: std::time::Duration) -> DatabaseOptions {
    let majority = WriteConcern::builder()
        .w(mongodb::options::Acknowledgment::Majority)
        .w_timeout(wtimeout)
        .build();
    DatabaseOptions::builder()
        .read_concern(ReadConcern::majority())
        .write_concern(majority)
        .build()
}

impl Inner {
    async fn open(uri: &str, observer: Option<CommandObserver>) -> Result<Inner, OpenError> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| OpenError::Uri(Box::new(e)))?;
        options.command_event_handler = observer;
        let bounds = bounds::apply(&mut options);
        if options.app_name.is_none() {
            options.app_name = Some("tickets".into());
        }
        let name = options
            .default_database
            .clone()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        let hosts = options
            .hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let client = Client::with_options(options).map_err(|e| OpenError::Uri(Box::new(e)))?;
        let db = client.database_with_options(&name, concerns(bounds.commit_wtimeout));
        db.run_command(doc! { "ping": 1 })
            .await
            .map_err(|source| OpenError::Unreachable {
                hosts,
                source: Box::new(source),
            })?;
        Ok(Inner {
            sessions: Arc::new(sessions::Registry::new(&db)),
            events: db.collection("events"),
            counters: db.collection("counters"),
            slots: db.collection(views::SLOTS),
            leases: db.collection(views::LEASES),
            dead_letters: db.collection(views::DEAD_LETTERS),
            client,
            db,
            wakeups: Arc::new(Wakeups::default()),
            txn: txn::TxnCounters::default(),
            clock: Arc::default(),
            append_turn: events::AppendTurn::default(),
            bounds,
            slot_turns: views::SlotTurns::default(),
            checkpoints: views::CheckpointMoves::default(),
            follower: None,
            heartbeat: None,
        })
    }

    /// Runs an empty read-only transaction, so that a server without
    /// transactions is refused at start-up with a clear message rather than
    /// at the first append.
    async fn check_transactions(&self) -> Result<(), OpenError> {
        let refused = |source| OpenError::NoTransactions {
            database: self.db.name().to_owned(),
            source: Box::new(source),
        };
        let mut session = self.client.start_session().await.map_err(refused)?;
        self.sessions
            .register(&self.clock, &self.db, session.id())
            .await
            .map_err(|source| OpenError::Mongo {
                database: self.db.name().to_owned(),
                step: "registering this store's session".into(),
                source: Box::new(source),
            })?;
        session.start_transaction().await.map_err(refused)?;
        self.slots
            .find_one(doc! {})
            .session(&mut session)
            .await
            .map_err(refused)?;
        session.commit_transaction().await.map_err(refused)?;
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(follower) = &self.follower {
            follower.abort();
        }
        if let Some(heartbeat) = &self.heartbeat {
            heartbeat.abort();
        }
        self.sessions.close_in_background();
    }
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("database", &self.inner.db.name())
            .field("change_stream_live", &self.inner.wakeups.is_live())
            .field("transactions", &self.inner.txn.snapshot())
            .field("clock", &self.inner.clock.source())
            .finish_non_exhaustive()
    }
}

impl MongoStore {
    /// Connects to the server `uri` names, pings it, brings the schema up to
    /// date, starts following the change streams on `events` and
    /// `projection_slots`, and starts this store's session heartbeat and the
    /// sweep of dead store processes' sessions (see [`MongoStore::shutdown`]).
    ///
    /// The URI is parsed by the driver: replica sets, credentials, TLS and
    /// timeout options are as the driver accepts them. The database is the
    /// URI's path (`mongodb://host/tickets_prod`), [`DEFAULT_DATABASE`] when
    /// the path is empty. Safe to call from several processes at once.
    pub async fn connect(uri: &str) -> Result<MongoStore, OpenError> {
        Self::connect_with(uri, None).await
    }

    /// [`MongoStore::connect`], with every command the driver sends
    /// (heartbeats and sweeps included) reported to `observer`.
    #[cfg(feature = "testing")]
    pub async fn connect_observed(
        uri: &str,
        observer: CommandObserver,
    ) -> Result<MongoStore, OpenError> {
        Self::connect_with(uri, Some(observer)).await
    }

    async fn connect_with(
        uri: &str,
        observer: Option<CommandObserver>,
    ) -> Result<MongoStore, OpenError> {
        let mut inner = Inner::open(uri, observer).await?;
        migrate::apply(&inner.db).await?;
        inner.sessions.enable();
        inner.check_transactions().await?;
        let heartbeat = tokio::spawn(sessions::run(
            Arc::clone(&inner.sessions),
            Arc::clone(&inner.clock),
            inner.db.clone(),
        ));
        inner.heartbeat = Some(heartbeat.abort_handle());
        let wakeups = Arc::clone(&inner.wakeups);
        let events = inner.events.clone();
        let follower = tokio::spawn(async move {
            change_stream::follow(&wakeups, change_stream::BACKOFF, move || {
                change_stream::open(events.clone())
            })
            .await;
        });
        inner.follower = Some(follower.abort_handle());
        let slots = inner.slots.clone();
        inner.checkpoints.follow_changes(slots);
        Ok(MongoStore {
            inner: Arc::new(inner),
        })
    }

    /// Connects and pings, and nothing else: no migrations, no change streams
    /// (waits poll), no session heartbeat (its transactions are not on
    /// record, so a sweep cannot end them if it dies). For tools such as a
    /// `migrate` command, which then calls [`MongoStore::migrate`].
    pub async fn open(uri: &str) -> Result<MongoStore, OpenError> {
        Ok(MongoStore {
            inner: Arc::new(Inner::open(uri, None).await?),
        })
    }

    /// [`MongoStore::open`], with every command the driver sends reported to
    /// `observer`: tests count a write's round trips with it.
    #[cfg(feature = "testing")]
    pub async fn open_observed(
        uri: &str,
        observer: CommandObserver,
    ) -> Result<MongoStore, OpenError> {
        Ok(MongoStore {
            inner: Arc::new(Inner::open(uri, Some(observer)).await?),
        })
    }

    /// Applies the migrations this build knows and the database lacks, each
    /// exactly once even with several starters at once. Returns the versions
    /// this call applied (empty: the schema was current).
    pub async fn migrate(&self) -> Result<Vec<u32>, OpenError> {
        migrate::apply(&self.inner.db).await
    }

    /// The migrations recorded in the database, in version order.
    pub async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>, StoreError> {
        migrate::applied(&self.inner.db)
            .await
            .map_err(StoreError::Corrupt)
    }

    /// The database this store uses.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    /// Whether a change stream currently wakes waiters (false: they poll).
    pub fn change_stream_live(&self) -> bool {
        self.inner.wakeups.is_live()
    }

    /// Where lease times come from: the server's clock once it has been
    /// asked (see [`ClockSource`]).
    pub fn clock_source(&self) -> ClockSource {
        self.inner.clock.source()
    }

    /// A clean stop: ends this store's session heartbeat and deletes its
    /// session record, so other store processes have nothing of it to sweep.
    /// Call it on a graceful shutdown, once no more writes will come; a store
    /// dropped without it deletes its record in the background, best effort,
    /// and the others sweep whatever is left within seconds. Transactions
    /// through the store afterwards still work, with their sessions not on
    /// record.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        if let Some(heartbeat) = &self.inner.heartbeat {
            heartbeat.abort();
        }
        let close = self.inner.sessions.close();
        match tokio::time::timeout(OPERATION_DEADLINE, close).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Unavailable(Box::new(e))),
            Err(_) => Err(StoreError::Unavailable(
                format!(
                    "MongoDB did not answer the delete of this store's session record \
                     within {OPERATION_DEADLINE:?}"
                )
                .into(),
            )),
        }
    }

    /// This store's owner id in `session_owners` (see [`MongoStore::shutdown`]).
    pub fn session_owner(&self) -> &str {
        self.inner.sessions.owner()
    }

    /// Transactions committed through this store (all clones) and their retries.
    pub fn txn_stats(&self) -> TxnStats {
        self.inner.txn.snapshot()
    }
}
