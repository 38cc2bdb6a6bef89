//! The view store: every projection in two slots (`slots`), their rows
//! (`rows`), the leases that fence their writers (`leases`) and the dead
//! letters (`dead_letters`), behind each of `readmodel`'s view-store roles.
//! The semantics are those of `docs/projection-store-semantics.md`, shared
//! with the MongoDB backend, as is the slot bookkeeping (`readmodel::Slots`).
//!
//! Every write is one `BEGIN IMMEDIATE` transaction that first checks the
//! writer's fence and then resolves the slot it writes: holding the write lock
//! from the first read, nothing (another holder, a swap) can change either
//! before the commit. Every read that resolves a slot (the query side, a
//! checkpoint, rows) does so in the same read transaction as it reads the
//! slot, so it never mixes two slots.
//!
//! A live commit or a swap, once committed, prompts this store's waiters on
//! that projection's live checkpoint (`readmodel::CheckpointPrompts`); commits
//! from other processes are found by the waiters' recheck: SQLite cannot
//! tell this process what another one commits.

/// The database clock's now, spelled as every stored time is (`text`):
/// SQLite's `'now'` has millisecond resolution, padded to six fractional
/// digits. One statement sees one `'now'` however often it names it.
macro_rules! now {
    () => {
        "(strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z')"
    };
}

/// The database clock's now plus the statement's `:ttl` parameter, a modifier
/// such as `+1.500 seconds`.
macro_rules! now_plus_ttl {
    () => {
        "(strftime('%Y-%m-%dT%H:%M:%f', 'now', :ttl) || '000Z')"
    };
}

mod dead_letters;
mod indexes;
mod leases;
mod reset;
mod rows;
mod slots;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use eventstore::Position;
use readmodel::{
    BatchInputs, CheckpointWatch, Dashboard, DeadLetter, DeadLetterState, DeadLetterStore, Fence,
    LeaseStore, ListQuery, Projection, ProjectionStatus, ProjectionWriter, Rows, RunState,
    SlotAdmin, Target, TicketDetail, TicketListRow, ViewChanges, ViewError, ViewReader,
};
use rusqlite::{Connection, TransactionBehavior};
use uuid::Uuid;

use crate::SqliteStore;
use crate::error::DbError;

type Result<T, E = DbError<ViewError>> = std::result::Result<T, E>;

fn sql_int(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| DbError::Corrupt(format!("{what} {value} exceeds SQLite's integer range")))
}

/// Runs `job` in one read transaction: one snapshot of the file throughout.
fn reading<T>(connection: &Connection, job: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let tx = connection.unchecked_transaction()?;
    let value = job(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// Runs `job` in one `BEGIN IMMEDIATE` transaction, committed only if it
/// succeeds: on any error nothing is written.
fn writing<T>(
    connection: &mut Connection,
    job: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let value = job(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// Like [`writing`], for a transaction of derived data only (view rows and
/// their checkpoint): committed without waiting for an fsync.
///
/// The file stays `synchronous=FULL` for everything else; this transaction
/// alone runs at `NORMAL`, where a WAL commit is written but not synced. A
/// power cut can then lose the newest view commits, never half of one: rows
/// and checkpoint go together, so the projector resumes from the older
/// checkpoint and applies those events again. Nothing is lost that the event
/// log cannot give back, and the next synced commit (any append) makes these
/// durable too. It spares the writer one fsync per projection batch, which
/// under write load is most of the syncs after group commit.
fn writing_derived<T>(
    connection: &mut Connection,
    job: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    let outcome = writing(connection, job);
    // Restored whatever the outcome: appends must stay synced.
    let restored = connection.pragma_update(None, "synchronous", "FULL");
    let value = outcome?;
    restored?;
    Ok(value)
}

fn commit(connection: &Connection, fence: &Fence, changes: &ViewChanges) -> Result<()> {
    let projection = fence.projection;
    slots::check_fence(connection, fence)?;
    let (slot, status) = slots::resolve(connection, projection, fence.target)?;
    if status.checkpoint != changes.from {
        return Err(DbError::Refused(ViewError::CheckpointMoved {
            expected: changes.from,
            found: status.checkpoint,
        }));
    }
    rows::write_rows(connection, slot, &changes.rows)?;
    if projection == Projection::Dashboard {
        rows::add_to_counts(connection, slot, &changes.dashboard)?;
    }
    slots::set_checkpoint(connection, projection, slot, changes.to)
}

fn swap_shadow(connection: &Connection, fence: &Fence) -> Result<()> {
    fence.require_shadow("a swap").map_err(DbError::Refused)?;
    slots::check_fence(connection, fence)?;
    let (slot, _) = slots::resolve(connection, fence.projection, Target::Shadow)?;
    indexes::build(connection, slots::rows_table(fence.projection, slot))?;
    slots::swap(connection, fence.projection)
}

/// The rows table of the shadow slot `fence` holds, for setting its indexes
/// aside or building them again.
fn fenced_shadow_table(connection: &Connection, fence: &Fence) -> Result<&'static str> {
    fence
        .require_shadow("setting indexes aside or building them")
        .map_err(DbError::Refused)?;
    slots::check_fence(connection, fence)?;
    let (slot, _) = slots::resolve(connection, fence.projection, Target::Shadow)?;
    Ok(slots::rows_table(fence.projection, slot))
}

fn status(connection: &Connection, projection: Projection) -> Result<ProjectionStatus> {
    let slots = slots::slots(connection, projection)?;
    Ok(ProjectionStatus {
        projection,
        live: slots.live.1,
        shadow: slots.shadow.1,
        live_lease: leases::lease(connection, projection, Target::Live)?,
        shadow_lease: leases::lease(connection, projection, Target::Shadow)?,
        dead_letters_pending: dead_letters::pending(connection, projection)?,
        now: leases::now(connection)?,
    })
}

/// The live slot of `projection`, for the query side.
fn live(connection: &Connection, projection: Projection) -> Result<slots::Slot> {
    Ok(slots::resolve(connection, projection, Target::Live)?.0)
}

#[async_trait]
impl ViewReader for SqliteStore {
    async fn ticket(&self, id: Uuid) -> Result<Option<TicketDetail>, ViewError> {
        Ok(self
            .read(move |connection| {
                reading(connection, |tx| {
                    rows::ticket(tx, live(tx, Projection::Detail)?, id)
                })
            })
            .await?)
    }

    async fn list_nonempty(&self, query: &ListQuery) -> Result<Vec<TicketListRow>, ViewError> {
        let query = query.clone();
        Ok(self
            .read(move |connection| {
                reading(connection, |tx| {
                    rows::list(tx, live(tx, Projection::List)?, &query)
                })
            })
            .await?)
    }

    async fn dashboard(&self) -> Result<Dashboard, ViewError> {
        Ok(self
            .read(|connection| {
                reading(connection, |tx| {
                    rows::counts(tx, live(tx, Projection::Dashboard)?)
                })
            })
            .await?)
    }

    async fn checkpoint(
        &self,
        projection: Projection,
        target: Target,
    ) -> Result<Position, ViewError> {
        Ok(self
            .read(move |connection| {
                Ok(slots::resolve(connection, projection, target)?.1.checkpoint)
            })
            .await?)
    }

    fn watch_live_checkpoint(&self, projection: Projection) -> Box<dyn CheckpointWatch> {
        self.shared.checkpoints.watch(projection)
    }
}

#[async_trait]
impl ProjectionWriter for SqliteStore {
    async fn load_rows_nonempty(
        &self,
        projection: Projection,
        target: Target,
        ids: &[Uuid],
    ) -> Result<Rows, ViewError> {
        let ids = ids.to_vec();
        Ok(self
            .read(move |connection| {
                reading(connection, |tx| {
                    let (slot, _) = slots::resolve(tx, projection, target)?;
                    rows::load_rows(tx, projection, slot, &ids)
                })
            })
            .await?)
    }

    async fn skipped_positions_nonempty(
        &self,
        projection: Projection,
        after: Position,
        up_to: Position,
    ) -> Result<HashSet<Position>, ViewError> {
        Ok(self
            .read(move |connection| dead_letters::skipped(connection, projection, after, up_to))
            .await?)
    }

    async fn batch_inputs(
        &self,
        projection: Projection,
        target: Target,
        ids: &[Uuid],
        after: Position,
        up_to: Position,
    ) -> Result<BatchInputs, ViewError> {
        let ids = ids.to_vec();
        // One trip to a reader connection instead of two: the live projector
        // asks for every batch of every projection.
        Ok(self
            .read(move |connection| {
                reading(connection, |tx| {
                    // No ids or an empty range read nothing: no shortcuts
                    // needed, as a batch always has both.
                    let (slot, _) = slots::resolve(tx, projection, target)?;
                    Ok(BatchInputs {
                        rows: rows::load_rows(tx, projection, slot, &ids)?,
                        skipped: dead_letters::skipped(tx, projection, after, up_to)?,
                    })
                })
            })
            .await?)
    }

    async fn commit(&self, fence: &Fence, changes: ViewChanges) -> Result<(), ViewError> {
        changes.check_fits(fence)?;
        let (projection, target) = (fence.projection, fence.target);
        let fence = fence.clone();
        self.write(move |connection, _| {
            writing_derived(connection, |tx| commit(tx, &fence, &changes))
        })
        .await?;
        if target == Target::Live {
            self.shared.checkpoints.moved(projection);
        }
        Ok(())
    }
}

#[async_trait]
impl SlotAdmin for SqliteStore {
    async fn status(&self, projection: Projection) -> Result<ProjectionStatus, ViewError> {
        Ok(self
            .read(move |connection| reading(connection, |tx| status(tx, projection)))
            .await?)
    }

    async fn scan_rows_nonempty(
        &self,
        projection: Projection,
        target: Target,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Rows, ViewError> {
        Ok(self
            .read(move |connection| {
                reading(connection, |tx| {
                    let (slot, _) = slots::resolve(tx, projection, target)?;
                    rows::scan_rows(tx, projection, slot, after, limit)
                })
            })
            .await?)
    }

    async fn counts(&self, target: Target) -> Result<Dashboard, ViewError> {
        Ok(self
            .read(move |connection| {
                reading(connection, |tx| {
                    let (slot, _) = slots::resolve(tx, Projection::Dashboard, target)?;
                    rows::counts(tx, slot)
                })
            })
            .await?)
    }

    /// In short transactions with pauses between them (see `reset`): the
    /// slot may hold every ticket's row.
    async fn reset_shadow(&self, fence: &Fence) -> Result<(), ViewError> {
        let begun = fence.clone();
        let mut seen = self
            .write(move |connection, _| {
                writing(connection, |tx| reset::begin(tx, &begun))?;
                reset::data_version(connection)
            })
            .await?;
        loop {
            let step = fence.clone();
            let (done, held, version) = self
                .write(move |connection, _| {
                    let started = std::time::Instant::now();
                    let done = writing_derived(connection, |tx| reset::step(tx, &step))?;
                    let held = started.elapsed();
                    Ok::<_, DbError<ViewError>>((done, held, reset::data_version(connection)?))
                })
                .await?;
            if done == reset::Step::Empty {
                return Ok(());
            }
            // `data_version` moves only for other connections' commits.
            let others_wrote = version != seen;
            seen = version;
            // A step deletes for at most its budget; the rest of `held` was
            // a wait for the lock, which needs no pause to make up for.
            let held = held.min(reset::STEP_BUDGET * 2);
            tokio::time::sleep(reset::pause_after(held, others_wrote)).await;
        }
    }

    async fn defer_shadow_indexes(&self, fence: &Fence) -> Result<(), ViewError> {
        let fence = fence.clone();
        Ok(self
            .write(move |connection, _| {
                writing(connection, |tx| {
                    indexes::defer(tx, fenced_shadow_table(tx, &fence)?)
                })
            })
            .await?)
    }

    async fn build_shadow_indexes(&self, fence: &Fence) -> Result<(), ViewError> {
        let fence = fence.clone();
        Ok(self
            .write(move |connection, _| {
                writing(connection, |tx| {
                    indexes::build(tx, fenced_shadow_table(tx, &fence)?)
                })
            })
            .await?)
    }

    async fn swap_shadow(&self, fence: &Fence) -> Result<(), ViewError> {
        let projection = fence.projection;
        let fence = fence.clone();
        self.write(move |connection, _| writing(connection, |tx| swap_shadow(tx, &fence)))
            .await?;
        // The former shadow's checkpoint is the live one now.
        self.shared.checkpoints.moved(projection);
        Ok(())
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn acquire_lease(
        &self,
        projection: Projection,
        target: Target,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Fence>, ViewError> {
        let holder = holder.to_owned();
        Ok(self
            .write(move |connection, _| {
                writing(connection, |tx| {
                    leases::acquire(tx, projection, target, &holder, ttl)
                })
            })
            .await?)
    }

    async fn heartbeat(
        &self,
        fence: &Fence,
        ttl: Duration,
        state: RunState,
        last_error: Option<&str>,
    ) -> Result<(), ViewError> {
        let fence = fence.clone();
        let last_error = last_error.map(str::to_owned);
        Ok(self
            .write(move |connection, _| {
                writing(connection, |tx| {
                    leases::heartbeat(tx, &fence, ttl, state, last_error.as_deref())
                })
            })
            .await?)
    }

    async fn release_lease(&self, fence: &Fence) -> Result<(), ViewError> {
        let fence = fence.clone();
        Ok(self
            .write(move |connection, _| writing(connection, |tx| leases::release(tx, &fence)))
            .await?)
    }
}

#[async_trait]
impl DeadLetterStore for SqliteStore {
    async fn put_dead_letter(&self, letter: &DeadLetter) -> Result<(), ViewError> {
        let letter = letter.clone();
        Ok(self
            .write(move |connection, _| writing(connection, |tx| dead_letters::put(tx, &letter)))
            .await?)
    }

    async fn dead_letters(
        &self,
        projection: Option<Projection>,
    ) -> Result<Vec<DeadLetter>, ViewError> {
        Ok(self
            .read(move |connection| dead_letters::list(connection, projection))
            .await?)
    }

    async fn set_dead_letter_state(
        &self,
        projection: Projection,
        position: Position,
        state: DeadLetterState,
    ) -> Result<bool, ViewError> {
        Ok(self
            .write(move |connection, _| {
                writing(connection, |tx| {
                    dead_letters::set_state(tx, projection, position, state)
                })
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::slots::{Slot, counts_table, rows_table};
    use super::*;
    use crate::query_plans::{plan, plans};

    /// Every list shape, in both slots, is one index range scan in index
    /// order: no full scan of the table, no sort step.
    #[tokio::test]
    async fn list_and_lookups_use_the_indexes_in_both_slots() {
        let (plans, list_plans) = plans(|connection| {
            let mut plans = Vec::new();
            let mut list_plans = Vec::new();
            for slot in Slot::BOTH {
                for shape in list_shapes() {
                    let list_plan = plan(connection, &rows::list_sql(slot, shape));
                    plans.push((slot, shape.index(slot), list_plan.clone()));
                    list_plans.push((slot, shape, list_plan));
                }
                for projection in Projection::ALL {
                    let table = rows_table(projection, slot);
                    // The list and the dashboard's tickets are WITHOUT ROWID
                    // (migration 0009): their rows live in the key's B-tree.
                    let key = match projection {
                        Projection::Detail => format!("INDEX sqlite_autoindex_{table}_1"),
                        Projection::List | Projection::Dashboard => "PRIMARY KEY".to_owned(),
                    };
                    plans.push((
                        slot,
                        key,
                        plan(
                            connection,
                            &format!(
                                "SELECT id FROM {table} \
                                 WHERE id IN (SELECT value FROM json_each(?1))"
                            ),
                        ),
                    ));
                }
            }
            (plans, list_plans)
        })
        .await;
        for (slot, index, plan) in &plans {
            let index = if index.starts_with("INDEX") || index == "PRIMARY KEY" {
                index.clone()
            } else {
                format!("INDEX {index}")
            };
            assert!(
                plan.contains(&index),
                "slot {slot:?}: {index} unused: {plan}"
            );
        }
        // An unfiltered first page walks its sort index from one end (LIMIT
        // stops it); every other list shape seeks into its index: a filter
        // prefix, a cursor, both. Extra filters are checked on the rows the
        // seek yields (see migration 0004).
        for (slot, shape, plan) in &list_plans {
            let list = rows_table(Projection::List, *slot);
            let index = shape.index(*slot);
            assert!(
                !plan.contains("TEMP B-TREE"),
                "a sort step: {shape:?}: {plan}"
            );
            if !(shape.status || shape.agent || shape.customer || shape.after) {
                assert_eq!(
                    plan,
                    &format!("SCAN {list} USING INDEX {index}"),
                    "{shape:?}"
                );
            } else {
                assert!(
                    plan.contains(&format!("SEARCH {list} USING INDEX {index}")),
                    "not a seek: {shape:?}: {plan}"
                );
                assert!(
                    !plan.contains(&format!("SCAN {list}")),
                    "a scan: {shape:?}: {plan}"
                );
            }
        }
    }

    /// Every combination of filters, sort, order and cursor.
    fn list_shapes() -> Vec<rows::ListShape> {
        let mut shapes = Vec::new();
        for filters in 0..8u8 {
            for sort in readmodel::ListSort::all() {
                for after in [false, true] {
                    shapes.push(rows::ListShape {
                        status: filters & 1 != 0,
                        agent: filters & 2 != 0,
                        customer: filters & 4 != 0,
                        sort,
                        after,
                    });
                }
            }
        }
        shapes
    }

    /// The writers' small lookups are keyed: slots, leases, counts, dead
    /// letters, and the id-ordered scan walks the primary key.
    #[tokio::test]
    async fn slot_lease_and_dead_letter_lookups_are_keyed() {
        let plans = plans(|connection| {
            let mut plans = vec![
                plan(
                    connection,
                    "SELECT slot FROM projection_slots WHERE projection = ?1",
                ),
                plan(
                    connection,
                    "SELECT token FROM projection_leases WHERE projection = ?1 AND target = ?2",
                ),
                plan(
                    connection,
                    "SELECT position FROM dead_letters
                     WHERE projection = ?1 AND position > ?2 AND position <= ?3",
                ),
            ];
            for slot in Slot::BOTH {
                plans.push(plan(
                    connection,
                    &format!(
                        "UPDATE {} SET count = count + 1 WHERE status = ?1",
                        counts_table(slot)
                    ),
                ));
                for projection in Projection::ALL {
                    plans.push(plan(
                        connection,
                        &format!(
                            "SELECT id FROM {} WHERE id > ?1 ORDER BY id LIMIT ?2",
                            rows_table(projection, slot)
                        ),
                    ));
                }
            }
            plans
        })
        .await;
        for plan in &plans {
            assert!(plan.starts_with("SEARCH"), "not a keyed search: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "a sort step: {plan}");
        }
    }
}

#[cfg(test)]
mod durability_tests {
    use super::*;

    fn synchronous(connection: &Connection) -> i64 {
        connection
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .expect("pragma")
    }

    /// A derived-data transaction runs unsynced, and the connection is back
    /// to FULL afterwards whether the transaction committed or failed.
    #[test]
    fn derived_writes_leave_the_connection_fully_synced() {
        let mut connection = Connection::open_in_memory().expect("a database");
        connection
            .pragma_update(None, "synchronous", "FULL")
            .expect("FULL");
        let during = writing_derived(&mut connection, |tx| Ok(synchronous(tx))).expect("commits");
        assert_eq!(during, 1, "NORMAL inside");
        assert_eq!(synchronous(&connection), 2, "FULL after a commit");
        let failed: Result<()> = writing_derived(&mut connection, |_| {
            Err(DbError::Refused(ViewError::Corrupt("on purpose".into())))
        });
        assert!(failed.is_err());
        assert_eq!(synchronous(&connection), 2, "FULL after a failure");
    }
}
