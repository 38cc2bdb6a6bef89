//! A slot's documents: per-ticket rows written under a version guard, the
//! dashboard's counts, and the reads (by id, by id range, the list's page).
//!
//! The guard reads the stored versions first and then inserts, replaces
//! (conditioned on the version it read) or skips: inside a transaction any
//! failed write, a duplicate key included, aborts the whole transaction on a
//! real server, so an upsert-and-catch-the-duplicate guard cannot be used
//! there.

use std::collections::HashMap;

use domain::Status;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::{ClientSession, Collection};
use readmodel::{Dashboard, DashboardDelta, ListQuery, ListSort};

use super::{Result, corrupt};
use crate::codec::{self, Fields};
use crate::error::{DbError, is_duplicate_in};

/// The stored versions of the given ticket documents.
async fn stored_versions(
    collection: &Collection<Document>,
    ids: &[String],
    session: &mut ClientSession,
) -> Result<HashMap<String, i64>> {
    let documents: Vec<Document> = collection
        .find(doc! { "_id": { "$in": ids } })
        .projection(doc! { "version": 1 })
        .session(&mut *session)
        .await?
        .stream(session)
        .try_collect()
        .await?;
    documents
        .iter()
        .map(|document| {
            let fields = Fields::new(collection.name(), document);
            Ok((fields.str("_id")?.to_owned(), fields.i64("version")?))
        })
        .collect::<Result<_, String>>()
        .map_err(corrupt)
}

/// Writes each document unless the stored one is as new or newer.
pub(crate) async fn write_guarded(
    collection: &Collection<Document>,
    documents: &[Document],
    session: &mut ClientSession,
) -> Result<()> {
    if documents.is_empty() {
        return Ok(());
    }
    let name = collection.name();
    let ids: Vec<String> = documents
        .iter()
        .filter_map(|document| document.get_str("_id").ok().map(str::to_owned))
        .collect();
    let stored = stored_versions(collection, &ids, session).await?;
    let mut new = Vec::new();
    for document in documents {
        let fields = Fields::new(name, document);
        let (id, version) = (
            fields.str("_id").map_err(corrupt)?,
            fields.i64("version").map_err(corrupt)?,
        );
        match stored.get(id) {
            None => new.push(document.clone()),
            Some(&current) if current < version => {
                let replaced = collection
                    .replace_one(doc! { "_id": id, "version": current }, document)
                    .session(&mut *session)
                    .await?;
                if replaced.matched_count != 1 {
                    return Err(DbError::Retry(format!(
                        "{name} document {id} kept changing under concurrent commits"
                    )));
                }
            }
            Some(_) => {}
        }
    }
    if new.is_empty() {
        return Ok(());
    }
    match collection.insert_many(new).session(&mut *session).await {
        Ok(_) => Ok(()),
        // A concurrent commit created the document after this snapshot; the
        // next attempt sees it (and, normally, the checkpoint it moved).
        Err(e) if is_duplicate_in(&e, "_id_") => Err(DbError::Retry(format!(
            "{name} documents kept colliding with concurrent commits: {e}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Moves a dashboard slot's counts by `delta`; a count that would go below
/// zero means the rows and the counts disagree.
pub(crate) async fn add_to_counts(
    counts: &Collection<Document>,
    delta: &DashboardDelta,
    session: &mut ClientSession,
) -> Result<()> {
    for status in Status::ALL {
        let by = delta.get(status);
        if by == 0 {
            continue;
        }
        let inc = doc! { "$inc": { "count": by } };
        if by > 0 {
            // The migration seeds every count; the upsert only covers a
            // document deleted by hand.
            counts
                .update_one(doc! { "_id": status.as_str() }, inc)
                .upsert(true)
                .session(&mut *session)
                .await?;
            continue;
        }
        let moved = counts
            .update_one(
                doc! { "_id": status.as_str(), "count": { "$gte": -by } },
                inc,
            )
            .session(&mut *session)
            .await?;
        if moved.matched_count != 1 {
            return Err(corrupt(format!(
                "{} `{status}` count would go below zero (by {by}): \
                 the slot's rows and counts disagree",
                counts.name()
            )));
        }
    }
    Ok(())
}

/// A dashboard slot's counts; a missing status counts zero.
pub(crate) async fn read_counts(counts: &Collection<Document>) -> Result<Dashboard> {
    let documents: Vec<Document> = counts.find(doc! {}).await?.try_collect().await?;
    let mut dashboard = Dashboard::default();
    for document in &documents {
        let fields = Fields::new(counts.name(), document);
        let status = fields.status("_id").map_err(corrupt)?;
        let count = fields.u64("count").map_err(corrupt)?;
        match status {
            Status::Open => dashboard.open = count,
            Status::Triaged => dashboard.triaged = count,
            Status::Closed => dashboard.closed = count,
        }
    }
    Ok(dashboard)
}

/// The list's filter: the status, and rows strictly after the keyset
/// position in (created_at, _id) descending order.
pub(crate) fn list_filter(query: &ListQuery) -> Document {
    let mut filter = Document::new();
    if let Some(status) = query.status {
        filter.insert("status", status.as_str());
    }
    if let Some(agent) = &query.agent {
        filter.insert("agent", agent.as_str());
    }
    if let Some(customer) = &query.customer {
        filter.insert("customer", customer.as_str());
    }
    if let Some((key, id)) = query.after {
        // A range on the sort key plus a tie-break on _id: one index range scan.
        let field = query.sort.field.name();
        let key = codec::date(key);
        let (before, strictly) = if query.sort.descending {
            ("$lte", "$lt")
        } else {
            ("$gte", "$gt")
        };
        filter.insert(field, doc! { before: key });
        filter.insert(
            "$or",
            vec![
                Bson::Document(doc! { field: { strictly: key } }),
                Bson::Document(doc! { "_id": { strictly: codec::id(id) } }),
            ],
        );
    }
    filter
}

/// The list's sort: the sort key, then `_id`, both in the asked direction.
pub(crate) fn list_order(sort: ListSort) -> Document {
    let direction = if sort.descending { -1 } else { 1 };
    doc! { sort.field.name(): direction, "_id": direction }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    #[test]
    fn the_keyset_filter_is_strictly_after_in_sort_order() {
        let at = Utc
            .with_ymd_and_hms(2024, 5, 1, 9, 30, 0)
            .single()
            .expect("a valid time");
        let id = Uuid::nil();
        let query = ListQuery {
            status: Some(Status::Open),
            agent: None,
            customer: None,
            after: Some((at, id)),
            limit: 10,
            sort: ListSort::default(),
        };
        let date = codec::date(at);
        assert_eq!(
            list_filter(&query),
            doc! {
                "status": "open",
                "created_at": { "$lte": date },
                "$or": [
                    { "created_at": { "$lt": date } },
                    { "_id": { "$lt": "00000000-0000-0000-0000-000000000000" } },
                ],
            }
        );
    }
}
