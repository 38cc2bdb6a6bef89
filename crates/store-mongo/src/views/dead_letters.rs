//! Dead letters (`dead_letters`, `_id` = `<projection>/<position>`): events a
//! projection could not apply, with the reason, the whole event (as a BSON
//! document, spelled as `codec` spells event payloads) and what ops decided.

use std::collections::HashSet;

use eventstore::Position;
use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::{Document, doc};
use readmodel::{DeadLetter, DeadLetterState, Projection};

use super::{Result, corrupt};
use crate::codec::{self, Fields};

/// Inserts the letter, or updates the one at its (projection, position): the
/// reason, time, event and state change; what the event was does not.
pub(crate) async fn put(dead_letters: &Collection<Document>, letter: &DeadLetter) -> Result<()> {
    let position = codec::int(letter.position, "position").map_err(corrupt)?;
    let version = codec::int(letter.version, "version").map_err(corrupt)?;
    dead_letters
        .update_one(
            doc! { "_id": codec::dead_letter_id(letter.projection, letter.position) },
            doc! {
                "$set": {
                    "reason": &letter.reason,
                    "recorded_at": codec::date(letter.recorded_at),
                    "event": codec::to_bson(&letter.event),
                    "state": letter.state.name(),
                },
                "$setOnInsert": {
                    "projection": letter.projection.name(),
                    "position": position,
                    "ticket_id": codec::id(letter.ticket_id),
                    "version": version,
                    "event_type": &letter.event_type,
                },
            },
        )
        .upsert(true)
        .await?;
    Ok(())
}

/// Dead letters of one projection or all, by projection name then position.
pub(crate) async fn list(
    dead_letters: &Collection<Document>,
    projection: Option<Projection>,
) -> Result<Vec<DeadLetter>> {
    let filter = projection.map_or_else(Document::new, |p| doc! { "projection": p.name() });
    let documents: Vec<Document> = dead_letters
        .find(filter)
        .sort(doc! { "projection": 1, "position": 1 })
        .await?
        .try_collect()
        .await?;
    documents
        .iter()
        .map(|document| codec::read_dead_letter(document).map_err(corrupt))
        .collect()
}

/// Sets a dead letter's state; `false` when there is none at that place.
pub(crate) async fn set_state(
    dead_letters: &Collection<Document>,
    projection: Projection,
    position: Position,
    state: DeadLetterState,
) -> Result<bool> {
    let updated = dead_letters
        .update_one(
            doc! { "_id": codec::dead_letter_id(projection, position) },
            doc! { "$set": { "state": state.name() } },
        )
        .await?;
    Ok(updated.matched_count == 1)
}

/// Positions in (`after`, `up_to`] of the projection's skipped dead letters.
pub(crate) async fn skipped(
    dead_letters: &Collection<Document>,
    projection: Projection,
    after: Position,
    up_to: Position,
) -> Result<HashSet<Position>> {
    let documents: Vec<Document> = dead_letters
        .find(doc! {
            "projection": projection.name(),
            "state": DeadLetterState::Skipped.name(),
            "position": { "$gt": codec::clamp(after), "$lte": codec::clamp(up_to) },
        })
        .await?
        .try_collect()
        .await?;
    documents
        .iter()
        .map(|document| {
            Fields::new("dead_letters", document)
                .u64("position")
                .map_err(corrupt)
        })
        .collect()
}

/// How many of the projection's dead letters wait for ops (pending or retry).
pub(crate) async fn pending(
    dead_letters: &Collection<Document>,
    projection: Projection,
) -> Result<u64> {
    Ok(dead_letters
        .count_documents(doc! {
            "projection": projection.name(),
            "state": { "$in": [DeadLetterState::Pending.name(), DeadLetterState::Retry.name()] },
        })
        .await?)
}
