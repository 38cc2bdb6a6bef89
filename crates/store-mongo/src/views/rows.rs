//! A slot's documents: per-ticket rows written under a version guard, the
//! dashboard's counts, and the reads (by id, by id range, the list's page).
//!
//! The guard reads the stored versions first (one `find`) and then sends one
//! `update` command carrying a statement per row to write: a replacement
//! conditioned on the version it read (`{q: {_id, version: read}, u: row}`)
//! or, for a row the snapshot showed absent, an upsert; rows stored as new or
//! newer are skipped. Inside a transaction any failed write, a duplicate key
//! included, aborts the whole transaction on a real server, so an
//! upsert-and-catch-the-duplicate guard cannot be used there; and the reply
//! says how many statements matched or inserted, so a row that changed after
//! the snapshot is seen there and the transaction runs again.
//!
//! One command, not a round trip per row: a rebuild commits thousands of rows
//! in one transaction, and sequential round trips inside it would hold the
//! transaction open (and its snapshot pinned on the server) for as long as
//! they take. The command is sent raw (`run_command` in the caller's
//! session) because the Rust driver 3.x has no multi-statement bulk write on
//! one collection for servers before 8.0: `Client::bulk_write` needs 8.0, and
//! the product supports MongoDB 6.0 and later. A batch is split into several
//! commands only past the server's limits on one command (100,000 statements,
//! a 16 MiB command document). The dashboard's counts move in one more
//! `update` command.

use std::collections::HashMap;
use std::ops::Range;

use domain::Status;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc, rawdoc};
use mongodb::error::{ErrorKind, WriteError, WriteFailure};
use mongodb::{ClientSession, Collection};
use readmodel::{Dashboard, DashboardDelta, ListQuery, ListSort};

use super::{Result, corrupt};
use crate::codec::{self, Fields};
use crate::error::{DbError, is_duplicate_in};

/// The most statements one write command may carry: the server's
/// `maxWriteBatchSize` (100,000 on every version this product supports; its
/// `hello` reply says so too).
const MAX_STATEMENTS: usize = 100_000;

/// The most bytes of statements one write command may carry. A command sent
/// with `run_command` is one BSON document, so it must fit the server's
/// `maxBsonObjectSize` (16 MiB; the server allows 16 KiB more for a command's
/// own fields); the 48 MB message limit is for OP_MSG document sequences,
/// which `run_command` does not use. The margin keeps room for the command's
/// other fields and what the driver adds (`lsid`, `txnNumber`,
/// `$clusterTime`, ...).
const MAX_COMMAND_BYTES: usize = 16 * 1024 * 1024 - 64 * 1024;

/// What each statement adds to its command besides its own bytes: an array
/// element's type byte and key (the index in decimal, nul-terminated).
const ELEMENT_OVERHEAD: usize = 8;

/// The stored versions of the given ticket documents.
async fn stored_versions(
    collection: &Collection<Document>,
    ids: &[String],
    session: &mut ClientSession,
) -> Result<HashMap<String, i64>> {
    // All of them in the first batch (about 60 bytes each, far below the
    // 16 MiB a batch can hold), so the read is one round trip too.
    let batch = u32::try_from(ids.len()).unwrap_or(u32::MAX).max(1);
    let documents: Vec<Document> = collection
        .find(doc! { "_id": { "$in": ids } })
        .projection(doc! { "version": 1 })
        .batch_size(batch)
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

/// One statement of an `update` command, and whether it is an upsert.
struct Statement {
    bytes: RawDocumentBuf,
    upsert: bool,
}

/// What the server says one `update` command did.
#[derive(Debug)]
struct UpdateReply {
    /// Documents matched plus documents inserted by upserts.
    n: i64,
    /// The (command-relative) indexes of the statements that inserted.
    upserted: Vec<usize>,
    /// The first write error: the command stopped there (`ordered`), and in
    /// a transaction the server has aborted the transaction.
    write_error: Option<mongodb::error::Error>,
}

fn number(reply: &Document, key: &str) -> Option<i64> {
    match reply.get(key)? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(n) if n.fract() == 0.0 => Some(*n as i64),
        _ => None,
    }
}

/// Reads an `update` command's reply (`{n, nModified, upserted: [{index,
/// _id}], writeErrors: [{index, code, errmsg}], ok}`).
fn read_update_reply(collection: &str, reply: &Document) -> Result<UpdateReply, String> {
    let bad = |what: &str| format!("the update of {collection} answered {what}: {reply}");
    let n = number(reply, "n").ok_or_else(|| bad("no count"))?;
    let mut upserted = Vec::new();
    if let Ok(entries) = reply.get_array("upserted") {
        for entry in entries {
            let index = entry
                .as_document()
                .and_then(|entry| number(entry, "index"))
                .and_then(|index| usize::try_from(index).ok())
                .ok_or_else(|| bad("an upsert without an index"))?;
            upserted.push(index);
        }
    }
    upserted.sort_unstable();
    let write_error = match reply.get_array("writeErrors") {
        Ok(errors) => match errors.first() {
            Some(Bson::Document(first)) => {
                let write: WriteError = mongodb::bson::deserialize_from_document(first.clone())
                    .map_err(|e| bad(&format!("an unreadable write error ({e})")))?;
                Some(ErrorKind::Write(WriteFailure::WriteError(write)).into())
            }
            Some(_) => return Err(bad("a write error that is not a document")),
            None => None,
        },
        Err(_) => None,
    };
    Ok(UpdateReply {
        n,
        upserted,
        write_error,
    })
}

/// Runs one `update` command on `collection` with `statements`, in order,
/// inside the transaction of `session`.
async fn run_update(
    collection: &Collection<Document>,
    statements: &[Statement],
    session: &mut ClientSession,
) -> Result<UpdateReply, DbError<readmodel::ViewError>> {
    let mut updates = mongodb::bson::RawArrayBuf::new();
    for statement in statements {
        updates.push(statement.bytes.clone());
    }
    let command = rawdoc! {
        "update": collection.name(),
        "updates": updates,
        "ordered": true,
    };
    let database = collection.client().database(&collection.namespace().db);
    let reply = database
        .run_raw_command(command)
        .session(&mut *session)
        .await?;
    read_update_reply(collection.name(), &reply).map_err(corrupt)
}

/// Splits statements of the given sizes into consecutive runs that each fit
/// one command: at most `max_statements` and `max_bytes` of statements (a
/// statement larger than `max_bytes` goes alone, for the server to judge).
fn batches(sizes: &[usize], max_statements: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, &size) in sizes.iter().enumerate() {
        let size = size + ELEMENT_OVERHEAD;
        if i > start && (i - start >= max_statements || bytes + size > max_bytes) {
            runs.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        runs.push(start..sizes.len());
    }
    runs
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
    let mut statements = Vec::new();
    for document in documents {
        let fields = Fields::new(name, document);
        let (id, version) = (
            fields.str("_id").map_err(corrupt)?,
            fields.i64("version").map_err(corrupt)?,
        );
        let row = RawDocumentBuf::try_from(document)
            .map_err(|e| corrupt(format!("{name} document {id} cannot be encoded: {e}")))?;
        let statement = match stored.get(id) {
            None => Statement {
                bytes: rawdoc! { "q": { "_id": id }, "u": row, "upsert": true },
                upsert: true,
            },
            Some(&current) if current < version => Statement {
                bytes: rawdoc! { "q": { "_id": id, "version": current }, "u": row },
                upsert: false,
            },
            Some(_) => continue,
        };
        statements.push(statement);
    }
    let sizes: Vec<usize> = statements
        .iter()
        .map(|s| s.bytes.as_bytes().len())
        .collect();
    for run in batches(&sizes, MAX_STATEMENTS, MAX_COMMAND_BYTES) {
        let batch = &statements[run];
        let reply = match run_update(collection, batch, session).await {
            Ok(reply) => reply,
            // Some servers (jongodb) answer a duplicate key as a command error.
            Err(DbError::Mongo(e)) if is_duplicate_in(&e, "_id_") => {
                return Err(collided(name, &e));
            }
            Err(e) => return Err(e),
        };
        if let Some(e) = reply.write_error {
            // A concurrent commit created a row after this snapshot. Any other
            // write error (a validator's refusal, a write conflict) keeps its
            // own meaning: bad data, or a transient error to run again.
            return Err(if is_duplicate_in(&e, "_id_") {
                collided(name, &e)
            } else {
                DbError::Mongo(e)
            });
        }
        let upserts: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].upsert).collect();
        // Each statement must have touched exactly one document: a
        // replacement its row at the version read, an upsert a new row. A
        // replacement that matched nothing, or an upsert that matched instead
        // of inserting, means a concurrent commit changed the row after this
        // snapshot; the caller aborts, so nothing written here stays.
        if usize::try_from(reply.n).ok() != Some(batch.len()) || reply.upserted != upserts {
            return Err(DbError::Retry(format!(
                "{name} documents kept changing under concurrent commits \
                 ({} of {} statements matched or inserted, {} of {} upserts inserted)",
                reply.n,
                batch.len(),
                reply.upserted.len(),
                upserts.len()
            )));
        }
    }
    Ok(())
}

/// The next attempt sees the row a concurrent commit created (and,
/// normally, the checkpoint it moved).
fn collided(name: &str, e: &mongodb::error::Error) -> DbError<readmodel::ViewError> {
    DbError::Retry(format!(
        "{name} documents kept colliding with concurrent commits: {e}"
    ))
}

/// Moves a dashboard slot's counts by `delta`, in one `update` command; a
/// count that would go below zero means the rows and the counts disagree.
pub(crate) async fn add_to_counts(
    counts: &Collection<Document>,
    delta: &DashboardDelta,
    session: &mut ClientSession,
) -> Result<()> {
    let mut statements = Vec::new();
    let mut decrements = Vec::new();
    for status in Status::ALL {
        let by = delta.get(status);
        if by == 0 {
            continue;
        }
        let inc = rawdoc! { "$inc": { "count": by } };
        statements.push(if by > 0 {
            // The migration seeds every count; the upsert only covers a
            // document deleted by hand.
            Statement {
                bytes: rawdoc! { "q": { "_id": status.as_str() }, "u": inc, "upsert": true },
                upsert: true,
            }
        } else {
            decrements.push((status, by));
            Statement {
                bytes: rawdoc! {
                    "q": { "_id": status.as_str(), "count": { "$gte": -by } },
                    "u": inc,
                },
                upsert: false,
            }
        });
    }
    if statements.is_empty() {
        return Ok(());
    }
    let reply = run_update(counts, &statements, session).await?;
    if let Some(e) = reply.write_error {
        return Err(DbError::Mongo(e));
    }
    // Every increment matches or inserts; a decrement whose guard refused it
    // matches nothing and is not an error to the server, only a short count.
    if usize::try_from(reply.n).ok() != Some(statements.len()) {
        // The reply counts, it does not say which statement fell short; with
        // two decrements both are named.
        let which = match decrements.as_slice() {
            [(status, by)] => format!("`{status}` count would go below zero (by {by})"),
            several => format!(
                "{} would go below zero",
                several
                    .iter()
                    .map(|(status, by)| format!("`{status}` count (by {by})"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        };
        return Err(corrupt(format!(
            "{} {which}: the slot's rows and counts disagree",
            counts.name()
        )));
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
    fn batches_split_only_past_the_statement_and_byte_limits() {
        assert_eq!(batches(&[], 3, 1000), Vec::<Range<usize>>::new());
        assert_eq!(batches(&[10; 5], 100, 1000), vec![0..5]);
        assert_eq!(batches(&[10; 7], 3, 1000), vec![0..3, 3..6, 6..7]);
        // 92 + 8 bytes each: ten fit in 1,000, the eleventh does not.
        assert_eq!(batches(&[92; 11], 100, 1000), vec![0..10, 10..11]);
        // A statement bigger than the limit goes alone.
        assert_eq!(batches(&[10, 5000, 10], 100, 1000), vec![0..1, 1..2, 2..3]);
        let sizes = vec![1 << 20; 40];
        let runs = batches(&sizes, MAX_STATEMENTS, MAX_COMMAND_BYTES);
        assert_eq!(runs, vec![0..15, 15..30, 30..40]);
        let runs = batches(&vec![100; 250_000], MAX_STATEMENTS, MAX_COMMAND_BYTES);
        assert_eq!(runs, vec![0..100_000, 100_000..200_000, 200_000..250_000]);
    }

    #[test]
    fn an_update_reply_is_read_with_its_upserts_and_first_write_error() {
        let reply = doc! {
            "n": 3_i32,
            "nModified": 1_i32,
            "upserted": [{ "index": 2_i32, "_id": "b" }, { "index": 0_i32, "_id": "a" }],
            "ok": 1.0,
        };
        let read = read_update_reply("detail_a", &reply).expect("readable");
        assert_eq!((read.n, read.upserted), (3, vec![0, 2]));
        assert!(read.write_error.is_none());
        let reply = doc! {
            "n": 1_i64,
            "writeErrors": [{
                "index": 1_i32,
                "code": 11000_i32,
                "errmsg": "E11000 duplicate key error collection: t.detail_a index: _id_ dup key",
            }],
            "ok": 1.0,
        };
        let read = read_update_reply("detail_a", &reply).expect("readable");
        assert_eq!(read.n, 1);
        let error = read.write_error.expect("a write error");
        assert!(is_duplicate_in(&error, "_id_"), "{error}");
        assert!(read_update_reply("detail_a", &doc! { "ok": 1.0 }).is_err());
    }

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
