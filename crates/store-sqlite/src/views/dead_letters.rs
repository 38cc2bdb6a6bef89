//! Dead letters: events a projection could not apply, kept per projection and
//! position with the reason and the whole event, and what ops decided.

use std::collections::HashSet;

use eventstore::Position;
use readmodel::{DeadLetter, DeadLetterState, Projection};
use rusqlite::{Connection, Row};

use super::{Result, sql_int};
use crate::error::DbError;
use crate::text;

const COLUMNS: &str =
    "projection, position, ticket_id, version, event_type, reason, event, state, recorded_at";

/// Inserts the letter, or updates the one at its (projection, position): the
/// reason, time, event and state change; what the event was does not.
pub(crate) fn put(connection: &Connection, letter: &DeadLetter) -> Result<()> {
    let event = serde_json::to_string(&letter.event).map_err(|e| {
        DbError::Corrupt(format!(
            "cannot encode the dead letter at {}/{}: {e}",
            letter.projection, letter.position
        ))
    })?;
    connection
        .prepare_cached(&format!(
            "INSERT INTO dead_letters ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (projection, position) DO UPDATE SET
                 reason = excluded.reason, recorded_at = excluded.recorded_at,
                 event = excluded.event, state = excluded.state"
        ))?
        .execute(rusqlite::params![
            letter.projection.name(),
            sql_int(letter.position, "position")?,
            text::id(letter.ticket_id),
            sql_int(letter.version, "version")?,
            letter.event_type,
            letter.reason,
            event,
            letter.state.name(),
            text::time(letter.recorded_at),
        ])?;
    Ok(())
}

fn read(row: &Row<'_>) -> Result<DeadLetter> {
    let projection: String = row.get(0)?;
    let position = text::get_unsigned(row, 1)?;
    let corrupt = |what: String| {
        DbError::Corrupt(format!("dead_letters row {projection}/{position}: {what}"))
    };
    let ticket_id: String = row.get(2)?;
    let event: String = row.get(6)?;
    let state: String = row.get(7)?;
    let recorded_at: String = row.get(8)?;
    Ok(DeadLetter {
        projection: projection.parse().map_err(|e| corrupt(format!("{e}")))?,
        position,
        ticket_id: text::parse_id(&ticket_id).map_err(corrupt)?,
        version: text::get_unsigned(row, 3)?,
        event_type: row.get(4)?,
        reason: row.get(5)?,
        event: serde_json::from_str(&event).map_err(|e| corrupt(format!("event: {e}")))?,
        state: DeadLetterState::from_name(&state)
            .ok_or_else(|| corrupt(format!("unknown state `{state}`")))?,
        recorded_at: text::parse_time(&recorded_at).map_err(corrupt)?,
    })
}

/// Dead letters of one projection or all, by projection name then position.
pub(crate) fn list(
    connection: &Connection,
    projection: Option<Projection>,
) -> Result<Vec<DeadLetter>> {
    // `?1 IS NULL` keeps one statement for both; the table is small.
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE ?1 IS NULL OR projection = ?1
         ORDER BY projection, position"
    ))?;
    let mut rows = statement.query([projection.map(Projection::name)])?;
    let mut letters = Vec::new();
    while let Some(row) = rows.next()? {
        letters.push(read(row)?);
    }
    Ok(letters)
}

/// Sets a dead letter's state; `false` when there is none at that place.
pub(crate) fn set_state(
    connection: &Connection,
    projection: Projection,
    position: Position,
    state: DeadLetterState,
) -> Result<bool> {
    let Ok(position) = i64::try_from(position) else {
        return Ok(false);
    };
    let updated = connection
        .prepare_cached(
            "UPDATE dead_letters SET state = ?3 WHERE projection = ?1 AND position = ?2",
        )?
        .execute(rusqlite::params![projection.name(), position, state.name()])?;
    Ok(updated == 1)
}

/// Positions in (`after`, `up_to`] of the projection's skipped dead letters.
pub(crate) fn skipped(
    connection: &Connection,
    projection: Projection,
    after: Position,
    up_to: Position,
) -> Result<HashSet<Position>> {
    let clamp = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let mut statement = connection.prepare_cached(
        "SELECT position FROM dead_letters
         WHERE projection = ?1 AND position > ?2 AND position <= ?3 AND state = 'skipped'",
    )?;
    let rows = statement.query_map(
        rusqlite::params![projection.name(), clamp(after), clamp(up_to)],
        |row| text::get_unsigned(row, 0),
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many of the projection's dead letters wait for ops (pending or retry).
pub(crate) fn pending(connection: &Connection, projection: Projection) -> Result<u64> {
    Ok(connection
        .prepare_cached(
            "SELECT count(*) FROM dead_letters
             WHERE projection = ?1 AND state IN ('pending', 'retry')",
        )?
        .query_row([projection.name()], |row| text::get_unsigned(row, 0))?)
}
