//! The view store on the `ticket_details`, `ticket_list`, `dashboard` and
//! `checkpoints` collections.
//!
//! A commit is one transaction that first re-reads the checkpoint: if another
//! projector moved it since this batch was read, nothing is written. Ticket
//! documents are written under a version guard, so a document never goes back
//! to an older version whatever the order of commits. The guard reads the
//! stored versions first and then inserts, replaces (conditioned on the version
//! it read) or skips: inside a transaction any failed write, a duplicate key
//! included, aborts the whole transaction on a real server, so an
//! upsert-and-catch-the-duplicate guard cannot be used there.
//!
//! Commits through one store queue on an async mutex, as appends do (see
//! `events`): every commit writes the checkpoint document, so concurrent
//! commits could only abort each other.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::Utc;
use domain::Status;
use eventstore::Position;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::{ClientSession, Collection};
use readmodel::{
    Dashboard, DashboardDelta, ListQuery, ListSort, TicketDetail, TicketListRow, ViewChanges,
    ViewError, ViewStore,
};
use uuid::Uuid;

use crate::codec::{self, Fields};
use crate::error::{DbError, is_duplicate_in};
use crate::txn::Transaction;
use crate::{Inner, MongoStore};

type Result<T, E = DbError<ViewError>> = std::result::Result<T, E>;

/// The checkpoint document the [`ViewStore`] trait reads and moves.
const VIEWS_CHECKPOINT: &str = "views";

fn corrupt(what: String) -> DbError<ViewError> {
    DbError::Corrupt(what)
}

async fn checkpoint(
    checkpoints: &Collection<Document>,
    session: Option<&mut ClientSession>,
) -> Result<Position> {
    let find = checkpoints.find_one(doc! { "_id": VIEWS_CHECKPOINT });
    let stored = match session {
        Some(session) => find.session(session).await?,
        None => find.await?,
    };
    match stored {
        Some(stored) => Fields::new("checkpoints", &stored)
            .u64("position")
            .map_err(corrupt),
        None => Ok(0),
    }
}

/// The stored versions of the given ticket documents.
async fn stored_versions(
    collection: &Collection<Document>,
    name: &str,
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
            let fields = Fields::new(name, document);
            Ok((fields.str("_id")?.to_owned(), fields.i64("version")?))
        })
        .collect::<Result<_, String>>()
        .map_err(corrupt)
}

/// Writes each document unless the stored one is as new or newer.
async fn write_guarded(
    collection: &Collection<Document>,
    name: &str,
    documents: Vec<Document>,
    session: &mut ClientSession,
) -> Result<()> {
    let ids: Vec<String> = documents
        .iter()
        .filter_map(|document| document.get_str("_id").ok().map(str::to_owned))
        .collect();
    let stored = stored_versions(collection, name, &ids, session).await?;
    let mut new = Vec::new();
    for document in documents {
        let fields = Fields::new(name, &document);
        let (id, version) = (
            fields.str("_id").map_err(corrupt)?.to_owned(),
            fields.i64("version").map_err(corrupt)?,
        );
        match stored.get(&id) {
            None => new.push(document),
            Some(&current) if current < version => {
                let replaced = collection
                    .replace_one(doc! { "_id": &id, "version": current }, document)
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

async fn add_to_dashboard(
    dashboard: &Collection<Document>,
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
            dashboard
                .update_one(doc! { "_id": status.as_str() }, inc)
                .upsert(true)
                .session(&mut *session)
                .await?;
            continue;
        }
        let moved = dashboard
            .update_one(
                doc! { "_id": status.as_str(), "count": { "$gte": -by } },
                inc,
            )
            .session(&mut *session)
            .await?;
        if moved.matched_count != 1 {
            return Err(corrupt(format!(
                "dashboard `{status}` count would go below zero (by {by}): \
                 the views and their checkpoint disagree"
            )));
        }
    }
    Ok(())
}

fn list_filter(query: &ListQuery) -> Document {
    let mut filter = Document::new();
    if let Some(status) = query.status {
        filter.insert("status", status.as_str());
    }
    if let Some((created_at, id)) = query.after {
        // A range on created_at plus a tie-break on _id: one index range scan.
        let created_at = codec::date(created_at);
        filter.insert("created_at", doc! { "$lte": created_at });
        filter.insert(
            "$or",
            vec![
                Bson::Document(doc! { "created_at": { "$lt": created_at } }),
                Bson::Document(doc! { "_id": { "$lt": codec::id(id) } }),
            ],
        );
    }
    filter
}

impl MongoStore {
    async fn commit_in(&self, changes: &ViewChanges) -> Result<()> {
        let inner = &self.inner;
        let mut details = Vec::with_capacity(changes.tickets.len());
        let mut rows = Vec::with_capacity(changes.tickets.len());
        for detail in &changes.tickets {
            details.push(codec::detail_document(detail).map_err(corrupt)?);
            rows.push(codec::list_document(&TicketListRow::from(detail)).map_err(corrupt)?);
        }
        let _turn = inner.commit_turn.lock().await;
        let mut txn = Transaction::start(&inner.client, &inner.txn).await?;
        loop {
            let session = txn.begin().await?;
            let outcome = commit_attempt(inner, session, changes, &details, &rows).await;
            if let Some(()) = txn.settle(outcome).await? {
                return Ok(());
            }
        }
    }
}

/// One attempt of a commit, inside the transaction of `session`.
async fn commit_attempt(
    inner: &Inner,
    session: &mut ClientSession,
    changes: &ViewChanges,
    details: &[Document],
    rows: &[Document],
) -> Result<()> {
    let found = checkpoint(&inner.checkpoints, Some(&mut *session)).await?;
    if found != changes.from {
        return Err(DbError::Refused(ViewError::CheckpointMoved {
            expected: changes.from,
            found,
        }));
    }
    if !details.is_empty() {
        write_guarded(&inner.details, "ticket_details", details.to_vec(), session).await?;
        write_guarded(&inner.list, "ticket_list", rows.to_vec(), session).await?;
    }
    add_to_dashboard(&inner.dashboard, &changes.dashboard, session).await?;
    let to = codec::int(changes.to, "checkpoint").map_err(corrupt)?;
    inner
        .checkpoints
        .update_one(
            doc! { "_id": VIEWS_CHECKPOINT },
            doc! { "$set": { "position": to, "updated_at": codec::date(Utc::now()) } },
        )
        .upsert(true)
        .session(&mut *session)
        .await?;
    Ok(())
}

#[async_trait]
impl ViewStore for MongoStore {
    async fn checkpoint(&self) -> Result<Position, ViewError> {
        Ok(checkpoint(&self.inner.checkpoints, None).await?)
    }

    async fn load_tickets(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, TicketDetail>, ViewError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = ids.iter().map(|id| codec::id(*id)).collect();
        let documents: Vec<Document> = self
            .inner
            .details
            .find(doc! { "_id": { "$in": ids } })
            .await
            .map_err(DbError::<ViewError>::from)?
            .try_collect()
            .await
            .map_err(DbError::<ViewError>::from)?;
        let mut found = HashMap::with_capacity(documents.len());
        for document in &documents {
            let detail = codec::read_detail(document).map_err(ViewError::Corrupt)?;
            found.insert(detail.id, detail);
        }
        Ok(found)
    }

    async fn commit(&self, changes: ViewChanges) -> Result<(), ViewError> {
        Ok(self.commit_in(&changes).await?)
    }

    async fn ticket(&self, id: Uuid) -> Result<Option<TicketDetail>, ViewError> {
        let document = self
            .inner
            .details
            .find_one(doc! { "_id": codec::id(id) })
            .await
            .map_err(DbError::<ViewError>::from)?;
        Ok(document
            .as_ref()
            .map(codec::read_detail)
            .transpose()
            .map_err(ViewError::Corrupt)?)
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<TicketListRow>, ViewError> {
        match query.sort {
            ListSort::NewestFirst => {}
        }
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let limit = codec::clamp(query.limit as u64);
        let documents: Vec<Document> = self
            .inner
            .list
            .find(list_filter(query))
            .sort(doc! { "created_at": -1, "_id": -1 })
            .limit(limit)
            .batch_size(u32::try_from(limit).unwrap_or(u32::MAX))
            .await
            .map_err(DbError::<ViewError>::from)?
            .try_collect()
            .await
            .map_err(DbError::<ViewError>::from)?;
        documents
            .iter()
            .map(|document| codec::read_list_row(document).map_err(ViewError::Corrupt))
            .collect()
    }

    async fn dashboard(&self) -> Result<Dashboard, ViewError> {
        let documents: Vec<Document> = self
            .inner
            .dashboard
            .find(doc! {})
            .await
            .map_err(DbError::<ViewError>::from)?
            .try_collect()
            .await
            .map_err(DbError::<ViewError>::from)?;
        let mut dashboard = Dashboard::default();
        for document in &documents {
            let fields = Fields::new("dashboard", document);
            let status = fields.status("_id").map_err(ViewError::Corrupt)?;
            let count = fields.u64("count").map_err(ViewError::Corrupt)?;
            match status {
                Status::Open => dashboard.open = count,
                Status::Triaged => dashboard.triaged = count,
                Status::Closed => dashboard.closed = count,
            }
        }
        Ok(dashboard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn the_keyset_filter_is_strictly_after_in_sort_order() {
        let at = Utc
            .with_ymd_and_hms(2024, 5, 1, 9, 30, 0)
            .single()
            .expect("a valid time");
        let id = Uuid::nil();
        let query = ListQuery {
            status: Some(Status::Open),
            after: Some((at, id)),
            limit: 10,
            sort: ListSort::NewestFirst,
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
