//! Leases on projection slots (`projection_leases`, `_id` =
//! `<projection>/<target>`), on the server's clock (see `clock`).
//!
//! Every lease change runs inside a transaction the caller opens (see
//! `views::write_lease`), like every other write to a collection that
//! transactions write: the fence check of each slot write increments the
//! lease document inside the slot write's transaction, and a lease change
//! made outside a transaction would meet those commits only through the
//! server's single-document write-conflict handling. Inside one, acquiring
//! reads the stored lease from the transaction's snapshot, decides, and
//! writes; a concurrent acquire, heartbeat, swap or fenced commit that writes
//! the same document makes one of the two transactions fail with a write
//! conflict, and it runs again on a fresh snapshot. A first lease is an
//! insert that a concurrent first lease turns into a duplicate key, and the
//! transaction runs again. Heartbeats and releases match on holder and token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mongodb::bson::{Bson, Document, doc};
use mongodb::{ClientSession, Collection};
use readmodel::{Fence, LeaseStatus, Projection, RunState, Target, ViewError};

use super::slots::lease_id;
use super::{Result, corrupt};
use crate::codec::{self, Fields};
use crate::error::{DbError, is_duplicate_key};

/// Longer leases are cut to this (ten years): one this long is a mistake, and
/// the cut keeps every expiry a valid date (as the SQLite backend does).
const MAX_TTL_MILLIS: u128 = 10 * 365 * 24 * 60 * 60 * 1000;

/// `now + ttl`, to the millisecond (what BSON dates hold), rounded up so
/// that a positive ttl never expires the lease at once.
fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    let millis = ttl.as_nanos().div_ceil(1_000_000).min(MAX_TTL_MILLIS);
    // At most ten years: always in range.
    let millis = i64::try_from(millis).unwrap_or(i64::MAX);
    now + chrono::Duration::milliseconds(millis)
}

/// What a new holder's lease says until its first heartbeat.
fn first_state(target: Target) -> RunState {
    match target {
        Target::Live => RunState::Running,
        Target::Shadow => RunState::Rebuilding,
    }
}

/// The stored lease, as far as acquiring needs it.
struct Stored {
    holder: String,
    token: i64,
    expires_at: Bson,
    expired: bool,
}

fn read_stored(document: &Document, now: DateTime<Utc>) -> Result<Stored> {
    let fields = Fields::new("projection_leases", document);
    let expires_at = fields.time("expires_at").map_err(corrupt)?;
    Ok(Stored {
        holder: fields.str("holder").map_err(corrupt)?.to_owned(),
        token: fields.i64("token").map_err(corrupt)?,
        expires_at: fields.get("expires_at").map_err(corrupt)?.clone(),
        expired: expires_at <= now,
    })
}

/// Takes the lease if there is none, it expired at `now`, or `holder` has it.
/// The token stays only for the same holder's unexpired lease; a new holder
/// starts with its target's first state and no error, the old holder's report
/// being about its own run.
pub(crate) async fn acquire(
    leases: &Collection<Document>,
    projection: Projection,
    target: Target,
    holder: &str,
    ttl: Duration,
    now: DateTime<Utc>,
    session: &mut ClientSession,
) -> Result<Option<Fence>> {
    let id = lease_id(projection, target);
    let expires_at = codec::date(expiry(now, ttl));
    let heartbeat_at = codec::date(now);
    let fence = |token: i64| {
        u64::try_from(token)
            .map(|token| Fence {
                projection,
                target,
                holder: holder.to_owned(),
                token,
            })
            .map_err(|_| corrupt(format!("projection_leases {id}: token {token} is negative")))
    };
    let stored = leases
        .find_one(doc! { "_id": &id })
        .session(&mut *session)
        .await?;
    let Some(stored) = stored else {
        let first = doc! {
            "_id": &id,
            "projection": projection.name(),
            "target": target.name(),
            "holder": holder,
            "token": 1_i64,
            "expires_at": expires_at,
            "heartbeat_at": heartbeat_at,
            "state": first_state(target).name(),
            "last_error": Bson::Null,
            "fenced_writes": 0_i64,
        };
        return match leases.insert_one(first).session(&mut *session).await {
            Ok(_) => fence(1).map(Some),
            // Another first lease committed after this snapshot: the
            // transaction runs again and reads it.
            Err(e) if is_duplicate_key(&e) => Err(DbError::Retry(format!(
                "the lease {id} kept being taken by concurrent first acquires"
            ))),
            Err(e) => Err(e.into()),
        };
    };
    let stored = read_stored(&stored, now)?;
    let same = stored.holder == holder;
    if !same && !stored.expired {
        return Ok(None);
    }
    let token = if same && !stored.expired {
        stored.token
    } else {
        stored.token + 1
    };
    let mut set = doc! {
        "holder": holder,
        "token": token,
        "expires_at": expires_at,
        "heartbeat_at": heartbeat_at,
    };
    if !same {
        set.insert("state", first_state(target).name());
        set.insert("last_error", Bson::Null);
    }
    let taken = leases
        .update_one(
            doc! {
                "_id": &id,
                "holder": &stored.holder,
                "token": stored.token,
                "expires_at": stored.expires_at,
            },
            doc! { "$set": set },
        )
        .session(&mut *session)
        .await?;
    if taken.matched_count == 1 {
        fence(token).map(Some)
    } else {
        Err(DbError::Retry(format!(
            "the lease {id} kept changing under concurrent acquires"
        )))
    }
}

/// Extends the fence's lease and records the report. Matches on holder and
/// token only: a lease that just expired is still the holder's to extend as
/// long as no one else took it (which would have raised the token).
pub(crate) async fn heartbeat(
    leases: &Collection<Document>,
    fence: &Fence,
    ttl: Duration,
    state: RunState,
    last_error: Option<&str>,
    now: DateTime<Utc>,
    session: &mut ClientSession,
) -> Result<()> {
    let lost = || DbError::Refused(ViewError::lease_lost(fence));
    let token = i64::try_from(fence.token).map_err(|_| lost())?;
    let updated = leases
        .update_one(
            doc! {
                "_id": lease_id(fence.projection, fence.target),
                "holder": &fence.holder,
                "token": token,
            },
            doc! { "$set": {
                "expires_at": codec::date(expiry(now, ttl)),
                "heartbeat_at": codec::date(now),
                "state": state.name(),
                "last_error": last_error.map_or(Bson::Null, |e| Bson::String(e.to_owned())),
            } },
        )
        .session(&mut *session)
        .await?;
    if updated.matched_count == 1 {
        Ok(())
    } else {
        Err(lost())
    }
}

/// Expires the fence's lease at `now`, if it is still the holder's and
/// unexpired; the next acquire (by anyone) then raises the token.
pub(crate) async fn release(
    leases: &Collection<Document>,
    fence: &Fence,
    now: DateTime<Utc>,
    session: &mut ClientSession,
) -> Result<()> {
    let Ok(token) = i64::try_from(fence.token) else {
        return Ok(());
    };
    let now = codec::date(now);
    leases
        .update_one(
            doc! {
                "_id": lease_id(fence.projection, fence.target),
                "holder": &fence.holder,
                "token": token,
                "expires_at": { "$gt": now },
            },
            doc! { "$set": { "expires_at": now } },
        )
        .session(&mut *session)
        .await?;
    Ok(())
}

/// The stored lease of a slot, if it was ever taken.
pub(crate) async fn status(
    leases: &Collection<Document>,
    projection: Projection,
    target: Target,
) -> Result<Option<LeaseStatus>> {
    let stored = leases
        .find_one(doc! { "_id": lease_id(projection, target) })
        .await?;
    stored
        .as_ref()
        .map(codec::read_lease)
        .transpose()
        .map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn expiries_are_milliseconds_rounded_up_and_capped() {
        let now = Utc
            .with_ymd_and_hms(2024, 5, 1, 9, 30, 0)
            .single()
            .expect("a valid time");
        let after = |ttl| (expiry(now, ttl) - now).num_milliseconds();
        assert_eq!(after(Duration::from_millis(1500)), 1500);
        assert_eq!(after(Duration::from_micros(1)), 1);
        assert_eq!(after(Duration::ZERO), 0);
        assert_eq!(after(Duration::MAX), 315_360_000_000, "ten years at most");
    }
}
