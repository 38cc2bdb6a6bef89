//! A projection's two slots: the tables that hold each, which one is live, the
//! fence check every slot write starts with, and a rebuild's slot moves.
//!
//! Both slots' tables exist from the migration on; a slot's table is picked by
//! name from the closed set below, never spelled from input.

use eventstore::Position;
use readmodel::{Fence, Projection, SlotState, SlotStatus, Slots, Target, ViewError};
use rusqlite::Connection;

use super::{Result, sql_int};
use crate::error::DbError;
use crate::text;

pub(crate) use readmodel::Slot;

/// The table of a projection slot's per-ticket rows.
pub(crate) fn rows_table(projection: Projection, slot: Slot) -> &'static str {
    slot.rows_name(projection)
}

/// The table of a dashboard slot's counts.
pub(crate) fn counts_table(slot: Slot) -> &'static str {
    slot.counts_name()
}

/// Reads both slots of `projection`. Call it inside the transaction that acts
/// on the answer, so a concurrent swap cannot slip in between.
pub(crate) fn slots(connection: &Connection, projection: Projection) -> Result<Slots> {
    let corrupt =
        |what: String| DbError::Corrupt(format!("projection_slots of {projection}: {what}"));
    let mut statement = connection.prepare_cached(
        "SELECT slot, state, checkpoint, version FROM projection_slots WHERE projection = ?1",
    )?;
    let rows = statement.query_map([projection.name()], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            text::get_unsigned(row, 2)?,
            row.get::<_, i64>(3)?,
        ))
    })?;
    let mut stored = Vec::new();
    for row in rows {
        let (slot, state, checkpoint, version) = row?;
        let slot = Slot::from_name(&slot).ok_or_else(|| corrupt(format!("slot `{slot}`")))?;
        let state =
            SlotState::from_name(&state).ok_or_else(|| corrupt(format!("state `{state}`")))?;
        let version = u32::try_from(version)
            .map_err(|_| corrupt(format!("version {version} is out of range")))?;
        let status = SlotStatus {
            checkpoint,
            version,
            state,
        };
        stored.push((slot, status));
    }
    Slots::from_stored(projection, stored).map_err(DbError::Corrupt)
}

/// The slot `target` names now, with its status.
pub(crate) fn resolve(
    connection: &Connection,
    projection: Projection,
    target: Target,
) -> Result<(Slot, SlotStatus)> {
    Ok(slots(connection, projection)?.get(target).clone())
}

/// Refuses with `LeaseLost` unless `fence` is the stored, unexpired lease of
/// its slot. Run first inside every write transaction to a slot: the write
/// lock held from there on means no one can take the lease over before commit.
pub(crate) fn check_fence(connection: &Connection, fence: &Fence) -> Result<()> {
    let lost = || DbError::Refused(ViewError::lease_lost(fence));
    // A token beyond SQLite's integers was never stored.
    let token = i64::try_from(fence.token).map_err(|_| lost())?;
    let held: i64 = connection
        .prepare_cached(concat!(
            "SELECT count(*) FROM projection_leases
             WHERE projection = ?1 AND target = ?2 AND holder = ?3 AND token = ?4
               AND expires_at > ",
            now!()
        ))?
        .query_row(
            rusqlite::params![
                fence.projection.name(),
                fence.target.name(),
                fence.holder,
                token
            ],
            |row| row.get(0),
        )?;
    if held == 1 { Ok(()) } else { Err(lost()) }
}

pub(crate) fn set_checkpoint(
    connection: &Connection,
    projection: Projection,
    slot: Slot,
    checkpoint: Position,
) -> Result<()> {
    connection
        .prepare_cached(
            "UPDATE projection_slots SET checkpoint = ?3 WHERE projection = ?1 AND slot = ?2",
        )?
        .execute(rusqlite::params![
            projection.name(),
            slot.name(),
            sql_int(checkpoint, "checkpoint")?
        ])?;
    Ok(())
}

fn set_state(
    connection: &Connection,
    projection: Projection,
    slot: Slot,
    state: SlotState,
) -> Result<()> {
    connection
        .prepare_cached(
            "UPDATE projection_slots SET state = ?3 WHERE projection = ?1 AND slot = ?2",
        )?
        .execute(rusqlite::params![
            projection.name(),
            slot.name(),
            state.name()
        ])?;
    Ok(())
}

/// Marks the (already emptied) shadow slot as being built at the projection's
/// current version, from position 0.
pub(crate) fn restart_shadow(
    connection: &Connection,
    projection: Projection,
    slot: Slot,
) -> Result<()> {
    connection
        .prepare_cached(
            "UPDATE projection_slots SET state = 'building', checkpoint = 0, version = ?3
             WHERE projection = ?1 AND slot = ?2",
        )?
        .execute(rusqlite::params![
            projection.name(),
            slot.name(),
            projection.version()
        ])?;
    Ok(())
}

/// Makes the building shadow slot live and retires the live one. The old live
/// slot is retired first: the schema allows one live slot per projection.
pub(crate) fn swap(connection: &Connection, projection: Projection) -> Result<()> {
    let slots = slots(connection, projection)?;
    slots.check_swap(projection).map_err(DbError::Refused)?;
    set_state(connection, projection, slots.live.0, SlotState::Retired)?;
    set_state(connection, projection, slots.shadow.0, SlotState::Live)?;
    // The live slot changed under its lease holder, which may have loaded rows
    // from the old slot for a commit whose checkpoint the new slot happens to
    // share: a new token makes that commit fail (LeaseLost), and the holder
    // re-acquires (same holder: it keeps the new token) and reloads.
    connection
        .prepare_cached(
            "UPDATE projection_leases SET token = token + 1
             WHERE projection = ?1 AND target = 'live'",
        )
        .and_then(|mut statement| statement.execute([projection.name()]))
        .map_err(DbError::from)?;
    Ok(())
}
