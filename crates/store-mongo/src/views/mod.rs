//! The view store: each projection's two slots, their leases, the dead
//! letters, and the query side's reads of the live slots, behind each of
//! `readmodel`'s view-store roles (the slot bookkeeping, `readmodel::Slots`,
//! is shared with the SQLite backend).
//!
//! Every write to a slot (`commit`, `reset_shadow`, `swap_shadow`) is one
//! transaction that, in order: checks the fence against the stored lease on
//! the server's clock (`LeaseLost`), resolves the fence's target to a slot
//! from `projection_slots` (so "live" means the slot live at commit time),
//! checks the slot's checkpoint (`CheckpointMoved`), writes the rows under
//! the version guard and the dashboard's counts, and moves the slot's
//! document. On any error nothing is written.
//!
//! The query side resolves the live slot on every call (one `find_one` on
//! `projection_slots`, then the slot's collection), so a swap takes effect for
//! the next query.
//!
//! A live commit or a swap, once committed, prompts this store's waiters on
//! that projection's live checkpoint; a change stream on `projection_slots`
//! prompts them for other processes' commits where the server has change
//! streams, and their recheck finds those where it has not (`moves`).
//!
//! Writes to one (projection, target) through one store (all its clones) take
//! turns on an async mutex, a swap taking both of its projection's. Each such
//! write touches the same lease and slot documents, so on the server
//! concurrent ones could only abort each other and retry; queueing them loses
//! nothing. It also keeps the in-memory test server correct for in-process
//! concurrency: jongodb's transactions commit whole documents from their
//! snapshot without checking for conflicting writes, so a heartbeat racing a
//! commit's fence check could be lost there. Writers in other processes still
//! meet the server's write-conflict detection.

mod dead_letters;
mod leases;
mod moves;
mod reset;
mod rows;
mod slots;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use eventstore::Position;
use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::{ClientSession, Collection};
use readmodel::{
    CheckpointWatch, Dashboard, DeadLetter, DeadLetterState, DeadLetterStore, Fence, LeaseStore,
    ListQuery, Projection, ProjectionStatus, ProjectionWriter, Rows, RunState, SlotAdmin, Target,
    TicketDetail, TicketListRow, ViewChanges, ViewError, ViewReader,
};
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use crate::bounds::{self, OPERATION_DEADLINE, VIEW_WRITE_DEADLINE};
use crate::codec;
use crate::error::DbError;
use crate::txn::{self, Settled, Transaction};
use crate::{Inner, MongoStore};

use slots::Slot;

pub(crate) use moves::CheckpointMoves;

/// Collection names from `migrations/mongodb/0003_projection_slots.json`.
pub(crate) const SLOTS: &str = "projection_slots";
pub(crate) const LEASES: &str = "projection_leases";
pub(crate) const DEAD_LETTERS: &str = "dead_letters";

type Result<T, E = DbError<ViewError>> = std::result::Result<T, E>;

fn corrupt(what: String) -> DbError<ViewError> {
    DbError::Corrupt(what)
}

/// The queues of slot writes, one per (projection, target), and one queue
/// for the lease writes of every projection.
#[derive(Debug, Default)]
pub(crate) struct SlotTurns {
    turns: [[Mutex<()>; 2]; 3],
    leases: Mutex<()>,
}

impl SlotTurns {
    fn of(&self, projection: Projection, target: Target) -> &Mutex<()> {
        let p = match projection {
            Projection::Detail => 0,
            Projection::List => 1,
            Projection::Dashboard => 2,
        };
        let t = match target {
            Target::Live => 0,
            Target::Shadow => 1,
        };
        &self.turns[p][t]
    }
}

/// All documents `filter` matches, in `sort` order, up to `limit`, inside the
/// transaction of `session` if there is one.
pub(crate) async fn find_all(
    collection: &Collection<Document>,
    filter: Document,
    sort: Document,
    limit: Option<i64>,
    session: Option<&mut ClientSession>,
) -> Result<Vec<Document>, mongodb::error::Error> {
    let mut find = collection.find(filter).sort(sort);
    if let Some(limit) = limit {
        let batch = u32::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
        find = find.limit(limit).batch_size(batch);
    }
    match session {
        Some(session) => {
            find.session(&mut *session)
                .await?
                .stream(session)
                .try_collect()
                .await
        }
        None => find.await?.try_collect().await,
    }
}

fn rows_of(inner: &Inner, projection: Projection, slot: Slot) -> Collection<Document> {
    inner
        .db
        .collection(slots::rows_collection(projection, slot))
}

fn counts_of(inner: &Inner, slot: Slot) -> Collection<Document> {
    inner.db.collection(slots::counts_collection(slot))
}

/// What a slot write does once the fence is checked and the slots are read.
enum Write<'a> {
    Commit {
        changes: &'a ViewChanges,
        documents: &'a [Document],
    },
    /// A reset's first step (see `reset`).
    SetAside,
    /// A reset's middle steps: these rows of the slot go.
    Delete {
        slot: Slot,
        ids: &'a [String],
    },
    /// A reset's last step.
    Restart,
    Swap,
}

/// A change to a lease document (`leases`), made in a transaction of its own.
enum LeaseWrite<'a> {
    Acquire {
        projection: Projection,
        target: Target,
        holder: &'a str,
        ttl: Duration,
    },
    Heartbeat {
        fence: &'a Fence,
        ttl: Duration,
        state: RunState,
        last_error: Option<&'a str>,
    },
    Release {
        fence: &'a Fence,
    },
}

/// One attempt of a lease write, inside the transaction of `session`.
async fn lease_attempt(
    inner: &Inner,
    session: &mut ClientSession,
    write: &LeaseWrite<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Fence>> {
    let collection = &inner.leases;
    match *write {
        LeaseWrite::Acquire {
            projection,
            target,
            holder,
            ttl,
        } => leases::acquire(collection, projection, target, holder, ttl, now, session).await,
        LeaseWrite::Heartbeat {
            fence,
            ttl,
            state,
            last_error,
        } => leases::heartbeat(collection, fence, ttl, state, last_error, now, session)
            .await
            .map(|()| None),
        LeaseWrite::Release { fence } => leases::release(collection, fence, now, session)
            .await
            .map(|()| None),
    }
}

impl MongoStore {
    /// Runs `write` for `fence` in one transaction (retried as `txn` says),
    /// taking the turns of the slots it writes.
    async fn write_slot(&self, fence: &Fence, write: Write<'_>) -> Result<()> {
        let inner = &self.inner;
        // A swap also writes the live slot's document. Whoever takes both
        // turns takes the live one first.
        let _live_turn = match write {
            Write::Swap => Some(
                inner
                    .slot_turns
                    .of(fence.projection, Target::Live)
                    .lock()
                    .await,
            ),
            Write::Commit { .. } | Write::SetAside | Write::Delete { .. } | Write::Restart => None,
        };
        let _turn = inner
            .slot_turns
            .of(fence.projection, fence.target)
            .lock()
            .await;
        let deadline = Instant::now() + VIEW_WRITE_DEADLINE;
        let now = txn::until(deadline, "a read of its clock", async {
            Ok(inner.clock.now(&inner.db).await?)
        })
        .await?;
        let mut txn = Transaction::start(inner, deadline).await?;
        // Set once a commit's outcome is unknown. Running the write again is
        // then safe: a second commit of it cannot happen (a commit's
        // checkpoint check refuses it, a reset is idempotent, a swap refuses
        // a shadow slot that is not building), and the refusal is resolved.
        let mut uncertain = false;
        loop {
            let by = txn.attempt_deadline();
            let session = txn.begin().await?;
            let outcome = txn::until(
                by,
                "a view write",
                write_attempt(inner, session, fence, &write, now),
            )
            .await;
            match txn.settle(outcome).await {
                Ok(Settled::Committed(())) => return Ok(()),
                Ok(Settled::Again) => {}
                Ok(Settled::Unknown { why }) => {
                    tracing::warn!(
                        projection = %fence.projection,
                        "the commit of a view write went unanswered ({why}); running it again"
                    );
                    uncertain = true;
                }
                Err(error) if uncertain => {
                    return self.after_unknown(fence, &write, deadline, error).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The refusal of a slot write run again after its commit's outcome was
    /// unknown: the earlier commit's own doing is success.
    async fn after_unknown(
        &self,
        fence: &Fence,
        write: &Write<'_>,
        deadline: Instant,
        error: DbError<ViewError>,
    ) -> Result<()> {
        match (write, &error) {
            // The checkpoint is where the earlier commit moved it, under a
            // fence still held: that commit landed.
            (
                Write::Commit { changes, .. },
                DbError::Refused(ViewError::CheckpointMoved { found, .. }),
            ) if *found == changes.to => Ok(()),
            // The shadow slot is no longer building: it went live, by the
            // earlier swap (only the shadow fence's holder swaps).
            (Write::Swap, DbError::Refused(ViewError::Corrupt(_))) => {
                let read = txn::until(deadline, "a read of the slots", async {
                    slots::read(&self.inner.slots, fence.projection, None).await
                })
                .await?;
                if read.shadow.1.state == readmodel::SlotState::Retired {
                    Ok(())
                } else {
                    Err(error)
                }
            }
            _ => Err(error),
        }
    }

    /// Runs a lease write in one transaction (see `leases` for why one),
    /// in the turn of its (projection, target) and after any other lease
    /// write of this store. Lease writes are rare (a heartbeat every third
    /// of a TTL), so queueing them costs nothing, and it keeps a process's
    /// releases at shutdown, three at once, from meeting each other on a
    /// server whose transactions detect no conflicts (the test server; see
    /// docs/mongodb.md). A write whose commit went
    /// unanswered simply runs again: each is idempotent for its holder (an
    /// acquire finds its own unexpired lease and keeps the token; a
    /// heartbeat and a release match holder and token).
    async fn write_lease(
        &self,
        projection: Projection,
        target: Target,
        write: &LeaseWrite<'_>,
    ) -> Result<Option<Fence>> {
        let inner = &self.inner;
        let _turn = inner.slot_turns.of(projection, target).lock().await;
        let _leases = inner.slot_turns.leases.lock().await;
        let deadline = Instant::now() + OPERATION_DEADLINE;
        let now = txn::until(deadline, "a read of its clock", async {
            Ok(inner.clock.now(&inner.db).await?)
        })
        .await?;
        let mut txn = Transaction::start(inner, deadline).await?;
        loop {
            let by = txn.attempt_deadline();
            let session = txn.begin().await?;
            let outcome = txn::until(
                by,
                "a lease write",
                lease_attempt(inner, session, write, now),
            )
            .await;
            match txn.settle(outcome).await? {
                Settled::Committed(fence) => return Ok(fence),
                Settled::Again => {}
                Settled::Unknown { why } => {
                    tracing::warn!(
                        %projection,
                        "the commit of a lease write went unanswered ({why}); running it again"
                    );
                }
            }
        }
    }

    /// Empties the shadow slot of `fence` in bounded steps (see `reset`).
    async fn reset_in(&self, fence: &Fence) -> Result<()> {
        let projection = fence.projection;
        self.write_slot(fence, Write::SetAside).await?;
        let (slot, _) = *slots::read(&self.inner.slots, projection, None)
            .await?
            .get(Target::Shadow);
        let rows = rows_of(&self.inner, projection, slot);
        loop {
            let ids = reset::next_ids(&rows).await?;
            if ids.is_empty() {
                break;
            }
            self.write_slot(fence, Write::Delete { slot, ids: &ids })
                .await?;
        }
        self.write_slot(fence, Write::Restart).await
    }

    async fn commit_in(&self, fence: &Fence, changes: &ViewChanges) -> Result<()> {
        changes.check_fits(fence).map_err(DbError::Refused)?;
        let documents = codec::row_documents(&changes.rows).map_err(corrupt)?;
        self.write_slot(
            fence,
            Write::Commit {
                changes,
                documents: &documents,
            },
        )
        .await
    }
}

/// Waits for a read of the views (or a single non-transactional write) as
/// long as `bounds::READ_DEADLINE`; past it, `ViewError::Unavailable`.
async fn bounded<T>(
    what: &str,
    future: impl std::future::Future<Output = Result<T, ViewError>>,
) -> Result<T, ViewError> {
    bounds::read::<_, ViewError>(what, async { Ok(future.await) }).await?
}

/// One attempt of a slot write, inside the transaction of `session`.
async fn write_attempt(
    inner: &Inner,
    session: &mut ClientSession,
    fence: &Fence,
    write: &Write<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let projection = fence.projection;
    slots::check_fence(&inner.leases, fence, now, session).await?;
    let read = slots::read(&inner.slots, projection, Some(&mut *session)).await?;
    let (slot, status) = read.get(fence.target).clone();
    match write {
        Write::Commit { changes, documents } => {
            if status.checkpoint != changes.from {
                return Err(DbError::Refused(ViewError::CheckpointMoved {
                    expected: changes.from,
                    found: status.checkpoint,
                }));
            }
            rows::write_guarded(&rows_of(inner, projection, slot), documents, session).await?;
            if projection == Projection::Dashboard {
                rows::add_to_counts(&counts_of(inner, slot), &changes.dashboard, session).await?;
            }
            slots::set_checkpoint(
                &inner.slots,
                projection,
                slot,
                changes.from,
                changes.to,
                session,
            )
            .await
        }
        Write::SetAside => slots::set_aside(&inner.slots, projection, slot, session).await,
        Write::Delete { slot: of, ids } => {
            if *of != slot {
                return Err(corrupt(format!(
                    "{projection}'s shadow slot moved from {} to {} during its reset",
                    of.name(),
                    slot.name()
                )));
            }
            reset::delete(&rows_of(inner, projection, slot), ids, session).await
        }
        Write::Restart => {
            if projection == Projection::Dashboard {
                reset::zero_counts(&counts_of(inner, slot), session).await?;
            }
            slots::restart(&inner.slots, projection, slot, session).await
        }
        Write::Swap => {
            slots::swap(&inner.slots, projection, &read, session).await?;
            // The live slot changed under its lease holder, which may have
            // loaded rows from the old slot for a commit whose checkpoint the
            // new slot happens to share: a new token makes that commit fail
            // (LeaseLost), and the holder re-acquires and reloads.
            inner
                .leases
                .update_one(
                    doc! { "_id": slots::lease_id(projection, Target::Live) },
                    doc! { "$inc": { "token": 1_i64 } },
                )
                .session(&mut *session)
                .await
                .map_err(DbError::from)?;
            Ok(())
        }
    }
}

#[async_trait]
impl ViewReader for MongoStore {
    async fn ticket(&self, id: Uuid) -> Result<Option<TicketDetail>, ViewError> {
        bounded("a ticket's detail", async {
            let slot = slots::live(&self.inner.slots, Projection::Detail).await?;
            let collection = rows_of(&self.inner, Projection::Detail, slot);
            let document = collection
                .find_one(doc! { "_id": codec::id(id) })
                .await
                .map_err(DbError::<ViewError>::from)?;
            document
                .as_ref()
                .map(|document| codec::read_detail(collection.name(), document))
                .transpose()
                .map_err(ViewError::Corrupt)
        })
        .await
    }

    async fn list_nonempty(&self, query: &ListQuery) -> Result<Vec<TicketListRow>, ViewError> {
        bounded("the ticket list", async {
            let slot = slots::live(&self.inner.slots, Projection::List).await?;
            let collection = rows_of(&self.inner, Projection::List, slot);
            let documents = find_all(
                &collection,
                rows::list_filter(query),
                rows::list_order(query.sort),
                Some(codec::clamp(query.limit as u64)),
                None,
            )
            .await
            .map_err(DbError::<ViewError>::from)?;
            documents
                .iter()
                .map(|document| {
                    codec::read_list_row(collection.name(), document).map_err(ViewError::Corrupt)
                })
                .collect()
        })
        .await
    }

    async fn dashboard(&self) -> Result<Dashboard, ViewError> {
        bounded("the dashboard", async {
            let slot = slots::live(&self.inner.slots, Projection::Dashboard).await?;
            Ok(rows::read_counts(&counts_of(&self.inner, slot)).await?)
        })
        .await
    }

    async fn checkpoint(
        &self,
        projection: Projection,
        target: Target,
    ) -> Result<Position, ViewError> {
        bounded("a checkpoint", async {
            let read = slots::read(&self.inner.slots, projection, None).await?;
            Ok(read.get(target).1.checkpoint)
        })
        .await
    }

    fn watch_live_checkpoint(&self, projection: Projection) -> Box<dyn CheckpointWatch> {
        self.inner.checkpoints.watch(projection)
    }
}

#[async_trait]
impl ProjectionWriter for MongoStore {
    async fn load_rows_nonempty(
        &self,
        projection: Projection,
        target: Target,
        ids: &[Uuid],
    ) -> Result<Rows, ViewError> {
        bounded("view rows by id", async {
            let (slot, _) = *slots::read(&self.inner.slots, projection, None)
                .await?
                .get(target);
            let collection = rows_of(&self.inner, projection, slot);
            let ids: Vec<String> = ids.iter().map(|id| codec::id(*id)).collect();
            let documents = find_all(
                &collection,
                doc! { "_id": { "$in": ids } },
                doc! { "_id": 1 },
                None,
                None,
            )
            .await
            .map_err(DbError::<ViewError>::from)?;
            Ok(codec::read_rows(projection, collection.name(), &documents).map_err(corrupt)?)
        })
        .await
    }

    async fn skipped_positions_nonempty(
        &self,
        projection: Projection,
        after: Position,
        up_to: Position,
    ) -> Result<HashSet<Position>, ViewError> {
        bounded("the skipped dead letters", async {
            Ok(dead_letters::skipped(&self.inner.dead_letters, projection, after, up_to).await?)
        })
        .await
    }

    async fn commit(&self, fence: &Fence, changes: ViewChanges) -> Result<(), ViewError> {
        self.commit_in(fence, &changes).await?;
        if fence.target == Target::Live {
            self.inner.checkpoints.moved(fence.projection);
        }
        Ok(())
    }
}

#[async_trait]
impl SlotAdmin for MongoStore {
    async fn status(&self, projection: Projection) -> Result<ProjectionStatus, ViewError> {
        bounded("a projection's status", async {
            let inner = &self.inner;
            let read = slots::read(&inner.slots, projection, None).await?;
            let live_lease = leases::status(&inner.leases, projection, Target::Live).await?;
            let shadow_lease = leases::status(&inner.leases, projection, Target::Shadow).await?;
            let dead_letters_pending =
                dead_letters::pending(&inner.dead_letters, projection).await?;
            let now = inner
                .clock
                .now(&inner.db)
                .await
                .map_err(DbError::<ViewError>::from)?;
            Ok(ProjectionStatus {
                projection,
                live: read.live.1,
                shadow: read.shadow.1,
                live_lease,
                shadow_lease,
                dead_letters_pending,
                now,
            })
        })
        .await
    }

    async fn scan_rows_nonempty(
        &self,
        projection: Projection,
        target: Target,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Rows, ViewError> {
        bounded("view rows by id range", async {
            let (slot, _) = *slots::read(&self.inner.slots, projection, None)
                .await?
                .get(target);
            let collection = rows_of(&self.inner, projection, slot);
            let filter = after.map_or_else(Document::new, |after| {
                doc! { "_id": { "$gt": codec::id(after) } }
            });
            let documents = find_all(
                &collection,
                filter,
                doc! { "_id": 1 },
                Some(codec::clamp(limit as u64)),
                None,
            )
            .await
            .map_err(DbError::<ViewError>::from)?;
            Ok(codec::read_rows(projection, collection.name(), &documents).map_err(corrupt)?)
        })
        .await
    }

    async fn counts(&self, target: Target) -> Result<Dashboard, ViewError> {
        bounded("the dashboard counts", async {
            let (slot, _) = *slots::read(&self.inner.slots, Projection::Dashboard, None)
                .await?
                .get(target);
            Ok(rows::read_counts(&counts_of(&self.inner, slot)).await?)
        })
        .await
    }

    async fn reset_shadow(&self, fence: &Fence) -> Result<(), ViewError> {
        fence.require_shadow("a reset")?;
        Ok(self.reset_in(fence).await?)
    }

    async fn swap_shadow(&self, fence: &Fence) -> Result<(), ViewError> {
        fence.require_shadow("a swap")?;
        self.write_slot(fence, Write::Swap).await?;
        // The former shadow's checkpoint is the live one now.
        self.inner.checkpoints.moved(fence.projection);
        Ok(())
    }
}

#[async_trait]
impl LeaseStore for MongoStore {
    async fn acquire_lease(
        &self,
        projection: Projection,
        target: Target,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Fence>, ViewError> {
        let write = LeaseWrite::Acquire {
            projection,
            target,
            holder,
            ttl,
        };
        Ok(self.write_lease(projection, target, &write).await?)
    }

    async fn heartbeat(
        &self,
        fence: &Fence,
        ttl: Duration,
        state: RunState,
        last_error: Option<&str>,
    ) -> Result<(), ViewError> {
        let write = LeaseWrite::Heartbeat {
            fence,
            ttl,
            state,
            last_error,
        };
        self.write_lease(fence.projection, fence.target, &write)
            .await?;
        Ok(())
    }

    async fn release_lease(&self, fence: &Fence) -> Result<(), ViewError> {
        self.write_lease(
            fence.projection,
            fence.target,
            &LeaseWrite::Release { fence },
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl DeadLetterStore for MongoStore {
    async fn put_dead_letter(&self, letter: &DeadLetter) -> Result<(), ViewError> {
        bounded("a dead letter write", async {
            Ok(dead_letters::put(&self.inner.dead_letters, letter).await?)
        })
        .await
    }

    async fn dead_letters(
        &self,
        projection: Option<Projection>,
    ) -> Result<Vec<DeadLetter>, ViewError> {
        bounded("the dead letters", async {
            Ok(dead_letters::list(&self.inner.dead_letters, projection).await?)
        })
        .await
    }

    async fn set_dead_letter_state(
        &self,
        projection: Projection,
        position: Position,
        state: DeadLetterState,
    ) -> Result<bool, ViewError> {
        bounded("a dead letter change", async {
            Ok(
                dead_letters::set_state(&self.inner.dead_letters, projection, position, state)
                    .await?,
            )
        })
        .await
    }
}
