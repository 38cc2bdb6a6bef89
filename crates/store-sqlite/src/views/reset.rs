//! Emptying a shadow slot in short write transactions.
//!
//! A shadow slot is the retired live slot of the last rebuild: at 1,000,000
//! tickets it holds 1,000,000 rows, and the list's rows are in eight
//! secondary indexes besides. Deleting them in one transaction held SQLite's
//! write lock for seconds, and every append of the other process (`ticketd`)
//! waited that long or failed at its busy timeout. So the slot is emptied in
//! steps ([`step`]), each its own transaction that deletes rows for at most
//! [`STEP_BUDGET`], with a pause after each ([`pause_after`]) in which a
//! waiting writer gets the lock.
//!
//! Crash safety: the first step marks the slot as building from position 0
//! (`slots::restart_shadow`) before deleting anything, and a rebuild resumes
//! only a building shadow with a checkpoint above 0; so whatever step the
//! process dies after, the next rebuild empties the slot again from wherever
//! it was left. The last step (nothing left to delete) zeroes a dashboard
//! slot's counts, builds any indexes set aside for the slot (on the empty
//! table, where that costs nothing: see `indexes`) and marks the slot
//! building again. Every step checks the fence first, in its transaction.

use std::time::{Duration, Instant};

use readmodel::{Fence, Projection, Target};
use rusqlite::Connection;

use super::{Result, indexes, rows, slots};
use crate::error::DbError;

/// The longest one step deletes rows for, inside its transaction.
pub(crate) const STEP_BUDGET: Duration = Duration::from_millis(8);

/// Rows deleted per statement; a step runs statements until its budget is
/// spent.
const ROWS_PER_DELETE: i64 = 200;

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Rows were deleted and some may remain: take another step.
    Deleted,
    /// The slot is empty, its counts zeroed and its indexes in place.
    Empty,
}

/// The first step: checks the fence and marks the shadow building from 0,
/// so that a slot left half-emptied is never resumed.
pub(crate) fn begin(connection: &Connection, fence: &Fence) -> Result<()> {
    fence.require_shadow("a reset").map_err(DbError::Refused)?;
    slots::check_fence(connection, fence)?;
    let (slot, _) = slots::resolve(connection, fence.projection, Target::Shadow)?;
    slots::restart_shadow(connection, fence.projection, slot)
}

/// One step: deletes rows of the fenced shadow slot for up to
/// [`STEP_BUDGET`]; when none are left, finishes the reset.
pub(crate) fn step(connection: &Connection, fence: &Fence) -> Result<Step> {
    slots::check_fence(connection, fence)?;
    let projection = fence.projection;
    let (slot, _) = slots::resolve(connection, projection, Target::Shadow)?;
    let table = slots::rows_table(projection, slot);
    let started = Instant::now();
    // By the primary key, which every rows table has (the list's and the
    // dashboard's tickets have no rowid: migration 0009).
    let mut delete = connection.prepare_cached(&format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id LIMIT ?1)"
    ))?;
    let mut deleted_any = false;
    loop {
        let deleted = delete.execute([ROWS_PER_DELETE])?;
        deleted_any |= deleted > 0;
        if i64::try_from(deleted).unwrap_or(i64::MAX) < ROWS_PER_DELETE {
            break;
        }
        if started.elapsed() >= STEP_BUDGET {
            return Ok(Step::Deleted);
        }
    }
    if deleted_any {
        // The table may be empty now; the next step finds out and finishes
        // in a transaction of its own.
        return Ok(Step::Deleted);
    }
    if projection == Projection::Dashboard {
        rows::zero_counts(connection, slot)?;
    }
    indexes::build(connection, table)?;
    slots::restart_shadow(connection, projection, slot)?;
    Ok(Step::Empty)
}

/// How long to leave the write lock alone after a step that held it for
/// `held`. Twice as long when another connection committed since the last
/// step (`others_wrote`, from `PRAGMA data_version`): a writer waiting in
/// SQLite's busy handler polls after sleeps of 1, 2, 5, 10 ms and more, and
/// finds the lock free on a poll with the odds of the free share of the time;
/// with a third of it held, a wait of more than four polls is rare. On a
/// quiet store the pause is a quarter of the hold, enough for a first writer
/// to get in.
pub(crate) fn pause_after(held: Duration, others_wrote: bool) -> Duration {
    let pause = if others_wrote { held * 2 } else { held / 4 };
    pause.max(Duration::from_millis(1))
}

/// The connection's `data_version`: it changes when another connection
/// commits to the file.
pub(crate) fn data_version(connection: &Connection) -> Result<i64> {
    Ok(connection.query_row("PRAGMA data_version", [], |row| row.get(0))?)
}
