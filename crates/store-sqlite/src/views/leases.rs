//! Leases on projection slots, on the database's clock.
//!
//! Every lease time is computed by SQLite inside the statement that stores it
//! (`now!`, `now_plus_ttl!`), so processes whose clocks disagree still agree
//! on who holds a lease. Acquiring is one conditional upsert: the row is taken
//! only when it is free, expired, or already the caller's.

use std::time::Duration;

use readmodel::{Fence, LeaseStatus, Projection, RunState, Target, ViewError};
use rusqlite::{Connection, OptionalExtension};

use super::Result;
use crate::error::DbError;
use crate::text;

/// SQLite's date functions stop at the year 9999; a lease this long is a
/// mistake anyway, so longer ones are cut to it (ten years).
const MAX_TTL_MILLIS: u128 = 10 * 365 * 24 * 60 * 60 * 1000;

/// `ttl` as a date-function modifier (`+1.500 seconds`), to the millisecond
/// (the resolution of SQLite's clock), rounded up so that a positive ttl
/// never expires the lease at once.
fn ttl_modifier(ttl: Duration) -> String {
    let millis = ttl.as_nanos().div_ceil(1_000_000).min(MAX_TTL_MILLIS);
    format!("+{}.{:03} seconds", millis / 1000, millis % 1000)
}

/// What a new holder's lease says until its first heartbeat.
fn first_state(target: Target) -> RunState {
    match target {
        Target::Live => RunState::Running,
        Target::Shadow => RunState::Rebuilding,
    }
}

/// Takes the lease if there is no row, it expired, or `holder` has it. In
/// the update, every right-hand side reads the row as it was, and
/// `excluded.heartbeat_at` is this statement's now. The token stays only for
/// the same holder's unexpired lease; a new holder starts with a fresh state
/// and no error, the old holder's report being about its own run.
const ACQUIRE: &str = concat!(
    "INSERT INTO projection_leases
         (projection, target, holder, token, expires_at, heartbeat_at, state, last_error)
     VALUES (:projection, :target, :holder, 1, ",
    now_plus_ttl!(),
    ", ",
    now!(),
    ", :state, NULL)
     ON CONFLICT (projection, target) DO UPDATE SET
         token = CASE WHEN holder = excluded.holder AND expires_at > excluded.heartbeat_at
                      THEN token ELSE token + 1 END,
         state = CASE WHEN holder = excluded.holder THEN state ELSE excluded.state END,
         last_error = CASE WHEN holder = excluded.holder THEN last_error ELSE NULL END,
         holder = excluded.holder,
         expires_at = excluded.expires_at,
         heartbeat_at = excluded.heartbeat_at
     WHERE holder = excluded.holder OR expires_at <= excluded.heartbeat_at
     RETURNING token"
);

pub(crate) fn acquire(
    connection: &Connection,
    projection: Projection,
    target: Target,
    holder: &str,
    ttl: Duration,
) -> Result<Option<Fence>> {
    let token = connection
        .prepare_cached(ACQUIRE)?
        .query_row(
            rusqlite::named_params! {
                ":projection": projection.name(),
                ":target": target.name(),
                ":holder": holder,
                ":ttl": ttl_modifier(ttl),
                ":state": first_state(target).name(),
            },
            |row| text::get_unsigned(row, 0),
        )
        .optional()?;
    Ok(token.map(|token| Fence {
        projection,
        target,
        holder: holder.to_owned(),
        token,
    }))
}

/// A fence's token as stored; `None` for one SQLite cannot hold, which
/// therefore matches no row.
fn token(fence: &Fence) -> Option<i64> {
    i64::try_from(fence.token).ok()
}

/// Extends the fence's lease and records the report. Matches on holder and
/// token only: a lease that just expired is still the holder's to extend as
/// long as no one else took it (which would have raised the token).
pub(crate) fn heartbeat(
    connection: &Connection,
    fence: &Fence,
    ttl: Duration,
    state: RunState,
    last_error: Option<&str>,
) -> Result<()> {
    let lost = || DbError::Refused(ViewError::lease_lost(fence));
    let token = token(fence).ok_or_else(lost)?;
    let updated = connection
        .prepare_cached(concat!(
            "UPDATE projection_leases SET expires_at = ",
            now_plus_ttl!(),
            ", heartbeat_at = ",
            now!(),
            ", state = :state, last_error = :last_error
             WHERE projection = :projection AND target = :target
               AND holder = :holder AND token = :token"
        ))?
        .execute(rusqlite::named_params! {
            ":projection": fence.projection.name(),
            ":target": fence.target.name(),
            ":holder": fence.holder,
            ":token": token,
            ":ttl": ttl_modifier(ttl),
            ":state": state.name(),
            ":last_error": last_error,
        })?;
    if updated == 1 { Ok(()) } else { Err(lost()) }
}

/// Expires the fence's lease now, if it is still the holder's and unexpired;
/// the next acquire (by anyone) then raises the token.
pub(crate) fn release(connection: &Connection, fence: &Fence) -> Result<()> {
    let Some(token) = token(fence) else {
        return Ok(());
    };
    connection
        .prepare_cached(concat!(
            "UPDATE projection_leases SET expires_at = ",
            now!(),
            " WHERE projection = ?1 AND target = ?2 AND holder = ?3 AND token = ?4
               AND expires_at > ",
            now!()
        ))?
        .execute(rusqlite::params![
            fence.projection.name(),
            fence.target.name(),
            fence.holder,
            token
        ])?;
    Ok(())
}

/// The stored lease of a slot, if it was ever taken.
pub(crate) fn lease(
    connection: &Connection,
    projection: Projection,
    target: Target,
) -> Result<Option<LeaseStatus>> {
    let stored = connection
        .prepare_cached(
            "SELECT holder, token, expires_at, heartbeat_at, state, last_error
             FROM projection_leases WHERE projection = ?1 AND target = ?2",
        )?
        .query_row([projection.name(), target.name()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                text::get_unsigned(row, 1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, Option<String>>(5)?,
            ))
        })
        .optional()?;
    let Some((holder, token, expires_at, heartbeat_at, state, last_error)) = stored else {
        return Ok(None);
    };
    let corrupt = |what: String| {
        DbError::Corrupt(format!(
            "projection_leases row {projection}/{}: {what}",
            target.name()
        ))
    };
    Ok(Some(LeaseStatus {
        holder,
        token,
        expires_at: text::parse_time(&expires_at).map_err(corrupt)?,
        heartbeat_at: text::parse_time(&heartbeat_at).map_err(corrupt)?,
        state: RunState::from_name(&state)
            .ok_or_else(|| corrupt(format!("unknown state `{state}`")))?,
        last_error,
    }))
}

/// The database's clock.
pub(crate) fn now(connection: &Connection) -> Result<chrono::DateTime<chrono::Utc>> {
    let now: String = connection
        .prepare_cached(concat!("SELECT ", now!()))?
        .query_row([], |row| row.get(0))?;
    text::parse_time(&now).map_err(DbError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_milliseconds_rounded_up_and_capped() {
        assert_eq!(ttl_modifier(Duration::from_millis(1500)), "+1.500 seconds");
        assert_eq!(ttl_modifier(Duration::from_micros(1)), "+0.001 seconds");
        assert_eq!(ttl_modifier(Duration::ZERO), "+0.000 seconds");
        assert_eq!(
            ttl_modifier(Duration::MAX),
            "+315360000.000 seconds",
            "ten years at most"
        );
    }
}
