//! Emptying a shadow slot for a rebuild, in bounded steps.
//!
//! A slot can hold millions of rows. Deleting them in the one transaction
//! that restarts the slot would abort on a real server past the
//! transaction's limits (`transactionLifetimeLimitSeconds`, 60 s by default,
//! and the cache pressure of one huge write set), so a reset is three kinds
//! of step, each its own short transaction under the shadow's fence:
//!
//! 1. set the slot aside: `retired` at checkpoint 0, so that neither a swap
//!    (which needs `building`) nor a resumed rebuild (which needs `building`
//!    past 0) can use it while it is half empty;
//! 2. delete its rows [`BATCH`] ids at a time until none is left;
//! 3. zero the dashboard's counts and restart the slot: `building` at
//!    checkpoint 0 with the projection's current version.
//!
//! A rebuild that dies between the steps leaves a slot set aside, which the
//! next rebuild resets again; the live slot is never touched.

use futures::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::{ClientSession, Collection};

use super::Result;

/// Rows deleted per transaction: well inside a transaction's limits, and few
/// enough round trips for a million-row slot (a thousand steps).
pub(crate) const BATCH: i64 = 1000;

/// Up to [`BATCH`] ids of the slot's rows, in id order (outside any
/// transaction: the delete that follows checks the fence).
pub(crate) async fn next_ids(rows: &Collection<Document>) -> Result<Vec<String>> {
    let documents: Vec<Document> = rows
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .projection(doc! { "_id": 1 })
        .limit(BATCH)
        .batch_size(u32::try_from(BATCH).unwrap_or(1000))
        .await?
        .try_collect()
        .await?;
    Ok(documents
        .iter()
        .filter_map(|document| document.get_str("_id").ok().map(str::to_owned))
        .collect())
}

/// Deletes the rows with these ids, inside the transaction of `session`.
pub(crate) async fn delete(
    rows: &Collection<Document>,
    ids: &[String],
    session: &mut ClientSession,
) -> Result<()> {
    rows.delete_many(doc! { "_id": { "$in": ids } })
        .session(&mut *session)
        .await?;
    Ok(())
}

/// Sets a dashboard slot's counts to zero, inside the transaction of `session`.
pub(crate) async fn zero_counts(
    counts: &Collection<Document>,
    session: &mut ClientSession,
) -> Result<()> {
    counts
        .update_many(doc! {}, doc! { "$set": { "count": 0_i64 } })
        .session(&mut *session)
        .await?;
    Ok(())
}
