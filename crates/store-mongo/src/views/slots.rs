//! A projection's two slots: the collections that hold each, which one is
//! live (`projection_slots`), the fence check every slot write starts with,
//! and a rebuild's slot moves.
//!
//! Both slots' collections exist from migration 0003 on; a slot's collection
//! is picked by name from the closed set below, never spelled from input.

use eventstore::Position;
use mongodb::bson::{Document, doc};
use mongodb::{ClientSession, Collection};
use readmodel::{Fence, Projection, SlotState, Slots, Target, ViewError};

use super::{Result, SLOTS, corrupt, find_all};
use crate::codec::{self, Fields};
use crate::error::DbError;

pub(crate) use readmodel::Slot;

/// The collection of a projection slot's per-ticket rows.
pub(crate) fn rows_collection(projection: Projection, slot: Slot) -> &'static str {
    slot.rows_name(projection)
}

/// The collection of a dashboard slot's counts.
pub(crate) fn counts_collection(slot: Slot) -> &'static str {
    slot.counts_name()
}

fn slot_id(projection: Projection, slot: Slot) -> String {
    format!("{projection}/{}", slot.name())
}

/// The `_id` of the lease of a projection's target (`detail/live`).
pub(crate) fn lease_id(projection: Projection, target: Target) -> String {
    format!("{projection}/{}", target.name())
}

/// Reads both slots of `projection`. A writer reads them inside the
/// transaction that acts on the answer, so a concurrent swap cannot slip in
/// between (it would write the same slot documents: a write conflict).
pub(crate) async fn read(
    slots: &Collection<Document>,
    projection: Projection,
    session: Option<&mut ClientSession>,
) -> Result<Slots> {
    let documents = find_all(
        slots,
        doc! { "projection": projection.name() },
        doc! { "_id": 1 },
        None,
        session,
    )
    .await?;
    let mut stored = Vec::new();
    for document in &documents {
        let fields = Fields::new(SLOTS, document);
        let name = fields.str("slot").map_err(corrupt)?;
        let slot = Slot::from_name(name)
            .ok_or_else(|| corrupt(fields.corrupt(format!("slot `{name}`"))))?;
        let status = codec::read_slot_status(&fields).map_err(corrupt)?;
        stored.push((slot, status));
    }
    Slots::from_stored(projection, stored).map_err(corrupt)
}

/// The live slot of `projection`: the query side's one look-up per call.
pub(crate) async fn live(slots: &Collection<Document>, projection: Projection) -> Result<Slot> {
    let document = slots
        .find_one(doc! { "projection": projection.name(), "state": SlotState::Live.name() })
        .await?
        .ok_or_else(|| corrupt(format!("{SLOTS} of {projection}: no slot is live")))?;
    let fields = Fields::new(SLOTS, &document);
    let name = fields.str("slot").map_err(corrupt)?;
    Slot::from_name(name).ok_or_else(|| corrupt(fields.corrupt(format!("slot `{name}`"))))
}

/// Refuses with `LeaseLost` unless `fence` is the stored lease of its slot
/// and unexpired at `now`. Run first inside every write transaction to a
/// slot. The check is a write (it counts the write in the lease's
/// `fenced_writes`): a takeover that commits meanwhile writes the same
/// document, so on a replica set one of the two transactions fails with a
/// write conflict and the slot write never lands under a lost lease.
pub(crate) async fn check_fence(
    leases: &Collection<Document>,
    fence: &Fence,
    now: chrono::DateTime<chrono::Utc>,
    session: &mut ClientSession,
) -> Result<()> {
    let lost = || DbError::Refused(ViewError::lease_lost(fence));
    // A token beyond BSON's integers was never stored.
    let token = i64::try_from(fence.token).map_err(|_| lost())?;
    let held = leases
        .update_one(
            doc! {
                "_id": lease_id(fence.projection, fence.target),
                "holder": &fence.holder,
                "token": token,
                "expires_at": { "$gt": codec::date(now) },
            },
            doc! { "$inc": { "fenced_writes": 1_i64 } },
        )
        .session(&mut *session)
        .await?;
    if held.matched_count == 1 {
        Ok(())
    } else {
        Err(lost())
    }
}

/// Updates one slot document, conditioned on what the transaction read of it;
/// a miss means a concurrent writer changed it after this snapshot.
async fn update_slot(
    slots: &Collection<Document>,
    projection: Projection,
    slot: Slot,
    expected: Document,
    set: Document,
    session: &mut ClientSession,
) -> Result<()> {
    let mut filter = doc! { "_id": slot_id(projection, slot) };
    filter.extend(expected);
    let updated = slots
        .update_one(filter, doc! { "$set": set })
        .session(&mut *session)
        .await?;
    if updated.matched_count == 1 {
        Ok(())
    } else {
        Err(DbError::Retry(format!(
            "{SLOTS} {} kept changing under concurrent writers",
            slot_id(projection, slot)
        )))
    }
}

pub(crate) async fn set_checkpoint(
    slots: &Collection<Document>,
    projection: Projection,
    slot: Slot,
    from: Position,
    to: Position,
    session: &mut ClientSession,
) -> Result<()> {
    let from = codec::int(from, "checkpoint").map_err(corrupt)?;
    let to = codec::int(to, "checkpoint").map_err(corrupt)?;
    update_slot(
        slots,
        projection,
        slot,
        doc! { "checkpoint": from },
        doc! { "checkpoint": to },
        session,
    )
    .await
}

/// A reset's first step: the shadow slot is retired at checkpoint 0, so
/// nothing swaps it in or resumes into it while it is emptied.
pub(crate) async fn set_aside(
    slots: &Collection<Document>,
    projection: Projection,
    slot: Slot,
    session: &mut ClientSession,
) -> Result<()> {
    update_slot(
        slots,
        projection,
        slot,
        doc! { "state": { "$ne": SlotState::Live.name() } },
        doc! {
            "state": SlotState::Retired.name(),
            "checkpoint": 0_i64,
        },
        session,
    )
    .await
}

/// The shadow slot starts over: building, at checkpoint 0, with the
/// projection's current version.
pub(crate) async fn restart(
    slots: &Collection<Document>,
    projection: Projection,
    slot: Slot,
    session: &mut ClientSession,
) -> Result<()> {
    update_slot(
        slots,
        projection,
        slot,
        doc! { "state": { "$ne": SlotState::Live.name() } },
        doc! {
            "state": SlotState::Building.name(),
            "checkpoint": 0_i64,
            "version": i64::from(projection.version()),
        },
        session,
    )
    .await
}

/// Makes the building shadow slot live and retires the live one, the old live
/// one first (the `one_live` index allows one live slot per projection).
pub(crate) async fn swap(
    slots_collection: &Collection<Document>,
    projection: Projection,
    slots: &Slots,
    session: &mut ClientSession,
) -> Result<()> {
    slots.check_swap(projection).map_err(DbError::Refused)?;
    update_slot(
        slots_collection,
        projection,
        slots.live.0,
        doc! { "state": SlotState::Live.name() },
        doc! { "state": SlotState::Retired.name() },
        session,
    )
    .await?;
    update_slot(
        slots_collection,
        projection,
        slots.shadow.0,
        doc! { "state": SlotState::Building.name() },
        doc! { "state": SlotState::Live.name() },
        session,
    )
    .await
}
