//! The view store on the `ticket_details`, `ticket_list`, `dashboard` and
//! `checkpoints` tables.
//!
//! A commit is one `BEGIN IMMEDIATE` transaction that first re-reads the
//! checkpoint: if another projector moved it since this batch was read, nothing
//! is written. Ticket rows are upserted under a version guard, so a row never
//! goes back to an older version whatever the order of commits.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::Status;
use eventstore::Position;
use readmodel::{
    Dashboard, DashboardDelta, ListQuery, ListSort, Note, TicketDetail, TicketListRow, ViewChanges,
    ViewError, ViewStore,
};
use rusqlite::{Connection, OptionalExtension, Row, ToSql, TransactionBehavior};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::SqliteStore;
use crate::error::DbError;
use crate::text;

type Result<T, E = DbError<ViewError>> = std::result::Result<T, E>;

/// The checkpoint row the [`ViewStore`] trait reads and moves.
const VIEWS_CHECKPOINT: &str = "views";

const DETAIL_COLUMNS: &str =
    "id, customer, subject, message, status, agent, notes, created_at, updated_at, version";

const LIST_COLUMNS: &str = "id, customer, subject, status, agent, preview, has_note, \
                            last_note_preview, created_at, updated_at, version";

/// A note as the `notes` JSON array spells it (times as in every other column).
#[derive(Serialize, Deserialize)]
struct StoredNote {
    text: String,
    added_at: String,
}

/// Decoding of one stored ticket row, naming the table and the ticket.
struct Decoder<'a> {
    table: &'static str,
    id: &'a str,
}

impl Decoder<'_> {
    fn corrupt(&self, what: impl std::fmt::Display) -> DbError<ViewError> {
        DbError::Corrupt(format!("{} row {}: {what}", self.table, self.id))
    }

    fn id(&self) -> Result<Uuid> {
        text::parse_id(self.id).map_err(|e| self.corrupt(e))
    }

    fn status(&self, status: &str) -> Result<Status> {
        status
            .parse()
            .map_err(|_| self.corrupt(format!("unknown status `{status}`")))
    }

    fn time(&self, at: &str) -> Result<DateTime<Utc>> {
        text::parse_time(at).map_err(|e| self.corrupt(e))
    }

    fn version(&self, version: i64) -> Result<u64> {
        u64::try_from(version).map_err(|_| self.corrupt(format!("version {version} is negative")))
    }
}

fn read_detail(row: &Row<'_>) -> Result<TicketDetail> {
    let id: String = row.get(0)?;
    let decoder = Decoder {
        table: "ticket_details",
        id: &id,
    };
    let status: String = row.get(4)?;
    let notes: String = row.get(6)?;
    let created_at: String = row.get(7)?;
    let updated_at: String = row.get(8)?;
    let notes = serde_json::from_str::<Vec<StoredNote>>(&notes)
        .map_err(|e| decoder.corrupt(format!("notes: {e}")))?
        .into_iter()
        .map(|note| {
            Ok(Note {
                added_at: decoder.time(&note.added_at)?,
                text: note.text,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TicketDetail {
        id: decoder.id()?,
        customer: row.get(1)?,
        subject: row.get(2)?,
        message: row.get(3)?,
        status: decoder.status(&status)?,
        agent: row.get(5)?,
        notes,
        created_at: decoder.time(&created_at)?,
        updated_at: decoder.time(&updated_at)?,
        version: decoder.version(row.get(9)?)?,
    })
}

fn read_list_row(row: &Row<'_>) -> Result<TicketListRow> {
    let id: String = row.get(0)?;
    let decoder = Decoder {
        table: "ticket_list",
        id: &id,
    };
    let status: String = row.get(3)?;
    let created_at: String = row.get(8)?;
    let updated_at: String = row.get(9)?;
    Ok(TicketListRow {
        id: decoder.id()?,
        customer: row.get(1)?,
        subject: row.get(2)?,
        status: decoder.status(&status)?,
        agent: row.get(4)?,
        preview: row.get(5)?,
        has_note: row.get(6)?,
        last_note_preview: row.get(7)?,
        created_at: decoder.time(&created_at)?,
        updated_at: decoder.time(&updated_at)?,
        version: decoder.version(row.get(10)?)?,
    })
}

fn sql_int(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| DbError::Corrupt(format!("{what} {value} exceeds SQLite's integer range")))
}

fn checkpoint(connection: &Connection) -> Result<Position> {
    let position = connection
        .prepare_cached("SELECT position FROM checkpoints WHERE projection = ?1")?
        .query_row([VIEWS_CHECKPOINT], |row| text::get_unsigned(row, 0))
        .optional()?;
    Ok(position.unwrap_or(0))
}

/// Upserts of a newer row only: `excluded.version > version` keeps a row from
/// ever moving back, should an older state arrive after a newer one.
const UPSERT_DETAIL: &str = "INSERT INTO ticket_details (id, customer, subject, message, status, \
     agent, notes, created_at, updated_at, version)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
     ON CONFLICT (id) DO UPDATE SET
         customer = excluded.customer, subject = excluded.subject,
         message = excluded.message, status = excluded.status, agent = excluded.agent,
         notes = excluded.notes, created_at = excluded.created_at,
         updated_at = excluded.updated_at, version = excluded.version
     WHERE excluded.version > ticket_details.version";

const UPSERT_LIST_ROW: &str = "INSERT INTO ticket_list (id, customer, subject, status, agent, \
     preview, has_note, last_note_preview, created_at, updated_at, version)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
     ON CONFLICT (id) DO UPDATE SET
         customer = excluded.customer, subject = excluded.subject,
         status = excluded.status, agent = excluded.agent, preview = excluded.preview,
         has_note = excluded.has_note, last_note_preview = excluded.last_note_preview,
         created_at = excluded.created_at, updated_at = excluded.updated_at,
         version = excluded.version
     WHERE excluded.version > ticket_list.version";

fn write_ticket(connection: &Connection, detail: &TicketDetail) -> Result<()> {
    let id = text::id(detail.id);
    let version = sql_int(detail.version, "version")?;
    let notes: Vec<StoredNote> = detail
        .notes
        .iter()
        .map(|note| StoredNote {
            text: note.text.clone(),
            added_at: text::time(note.added_at),
        })
        .collect();
    let notes = serde_json::to_string(&notes)
        .map_err(|e| DbError::Corrupt(format!("cannot encode the notes of ticket {id}: {e}")))?;
    connection
        .prepare_cached(UPSERT_DETAIL)?
        .execute(rusqlite::params![
            id,
            detail.customer,
            detail.subject,
            detail.message,
            detail.status.as_str(),
            detail.agent,
            notes,
            text::time(detail.created_at),
            text::time(detail.updated_at),
            version,
        ])?;
    let row = TicketListRow::from(detail);
    connection
        .prepare_cached(UPSERT_LIST_ROW)?
        .execute(rusqlite::params![
            id,
            row.customer,
            row.subject,
            row.status.as_str(),
            row.agent,
            row.preview,
            row.has_note,
            row.last_note_preview,
            text::time(row.created_at),
            text::time(row.updated_at),
            version,
        ])?;
    Ok(())
}

fn add_to_dashboard(connection: &Connection, delta: &DashboardDelta) -> Result<()> {
    let mut update =
        connection.prepare_cached("UPDATE dashboard SET count = count + ?1 WHERE status = ?2")?;
    for status in Status::ALL {
        let by = delta.get(status);
        if by == 0 {
            continue;
        }
        match update.execute(rusqlite::params![by, status.as_str()]) {
            Ok(1) => {}
            Ok(_) => return Err(DbError::Corrupt(format!("dashboard has no `{status}` row"))),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                return Err(DbError::Corrupt(format!(
                    "dashboard `{status}` count would go below zero (by {by}): \
                     the views and their checkpoint disagree"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn commit(connection: &mut Connection, changes: &ViewChanges) -> Result<()> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = checkpoint(&tx)?;
    if found != changes.from {
        return Err(DbError::Refused(ViewError::CheckpointMoved {
            expected: changes.from,
            found,
        }));
    }
    for detail in &changes.tickets {
        write_ticket(&tx, detail)?;
    }
    add_to_dashboard(&tx, &changes.dashboard)?;
    tx.prepare_cached(
        "INSERT INTO checkpoints (projection, position, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (projection) DO UPDATE SET
             position = excluded.position, updated_at = excluded.updated_at",
    )?
    .execute(rusqlite::params![
        VIEWS_CHECKPOINT,
        sql_int(changes.to, "checkpoint")?,
        text::time(Utc::now())
    ])?;
    tx.commit()?;
    Ok(())
}

fn load_tickets(connection: &Connection, ids: &[Uuid]) -> Result<HashMap<Uuid, TicketDetail>> {
    // The ids travel as one JSON array so that a single cached statement serves
    // any number of them.
    let ids: Vec<String> = ids.iter().map(|id| text::id(*id)).collect();
    let ids = serde_json::to_string(&ids)
        .map_err(|e| DbError::Corrupt(format!("cannot encode ids: {e}")))?;
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {DETAIL_COLUMNS} FROM ticket_details WHERE id IN (SELECT value FROM json_each(?1))"
    ))?;
    let mut rows = statement.query([ids])?;
    let mut found = HashMap::new();
    while let Some(row) = rows.next()? {
        let detail = read_detail(row)?;
        found.insert(detail.id, detail);
    }
    Ok(found)
}

fn ticket(connection: &Connection, id: Uuid) -> Result<Option<TicketDetail>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {DETAIL_COLUMNS} FROM ticket_details WHERE id = ?1"
    ))?;
    let mut rows = statement.query([text::id(id)])?;
    rows.next()?.map(read_detail).transpose()
}

/// The list's SQL, one static text per shape so each is prepared once. The
/// keyset condition is spelled as a range on `created_at` plus a tie-break on
/// `id`, which the planner turns into a range scan of the index.
fn list_sql(by_status: bool, after: bool) -> String {
    let mut conditions = Vec::new();
    if by_status {
        conditions.push("status = :status");
    }
    if after {
        conditions.push("created_at <= :created_at AND (created_at < :created_at OR id < :id)");
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    format!(
        "SELECT {LIST_COLUMNS} FROM ticket_list {filter} ORDER BY created_at DESC, id DESC LIMIT :limit"
    )
}

fn list(connection: &Connection, query: &ListQuery) -> Result<Vec<TicketListRow>> {
    match query.sort {
        ListSort::NewestFirst => {}
    }
    let status = query.status.map(Status::as_str);
    let after = query.after.map(|(at, id)| (text::time(at), text::id(id)));
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let mut params: Vec<(&str, &dyn ToSql)> = vec![(":limit", &limit)];
    if let Some(status) = &status {
        params.push((":status", status));
    }
    if let Some((created_at, id)) = &after {
        params.push((":created_at", created_at));
        params.push((":id", id));
    }
    let mut statement = connection.prepare_cached(&list_sql(status.is_some(), after.is_some()))?;
    let mut rows = statement.query(params.as_slice())?;
    let mut page = Vec::new();
    while let Some(row) = rows.next()? {
        page.push(read_list_row(row)?);
    }
    Ok(page)
}

fn dashboard(connection: &Connection) -> Result<Dashboard> {
    let mut statement = connection.prepare_cached("SELECT status, count FROM dashboard")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, text::get_unsigned(row, 1)?))
    })?;
    let mut dashboard = Dashboard::default();
    for row in rows {
        let (status, count) = row?;
        let slot = match status.parse::<Status>() {
            Ok(Status::Open) => &mut dashboard.open,
            Ok(Status::Triaged) => &mut dashboard.triaged,
            Ok(Status::Closed) => &mut dashboard.closed,
            Err(_) => {
                return Err(DbError::Corrupt(format!(
                    "dashboard has a row for `{status}`"
                )));
            }
        };
        *slot = count;
    }
    Ok(dashboard)
}

#[async_trait]
impl ViewStore for SqliteStore {
    async fn checkpoint(&self) -> Result<Position, ViewError> {
        Ok(self.read(checkpoint).await?)
    }

    async fn load_tickets(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, TicketDetail>, ViewError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = ids.to_vec();
        Ok(self
            .read(move |connection| load_tickets(connection, &ids))
            .await?)
    }

    async fn commit(&self, changes: ViewChanges) -> Result<(), ViewError> {
        Ok(self
            .write(move |connection, _| commit(connection, &changes))
            .await?)
    }

    async fn ticket(&self, id: Uuid) -> Result<Option<TicketDetail>, ViewError> {
        Ok(self.read(move |connection| ticket(connection, id)).await?)
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<TicketListRow>, ViewError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let query = query.clone();
        Ok(self
            .read(move |connection| list(connection, &query))
            .await?)
    }

    async fn dashboard(&self) -> Result<Dashboard, ViewError> {
        Ok(self.read(dashboard).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(connection: &Connection, sql: &str) -> String {
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        // EXPLAIN wants every parameter bound; NULLs do for the plan.
        let nulls = vec![rusqlite::types::Null; statement.parameter_count()];
        let rows = statement
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .expect("plan rows");
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .expect("plan")
            .join("; ")
    }

    /// Every list shape is one index range scan in index order: no full scan of
    /// the table, no sort step.
    #[tokio::test]
    async fn list_and_lookups_use_the_indexes() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let store = SqliteStore::open(&dir.path().join("t.db")).expect("open");
        let plans = store
            .read(|connection| {
                let mut plans = Vec::new();
                for (by_status, after) in
                    [(false, false), (false, true), (true, false), (true, true)]
                {
                    let index = if by_status {
                        "ticket_list_status_newest"
                    } else {
                        "ticket_list_newest"
                    };
                    plans.push((index, plan(connection, &list_sql(by_status, after))));
                }
                plans.push((
                    "sqlite_autoindex_ticket_details",
                    plan(
                        connection,
                        &format!(
                            "SELECT {DETAIL_COLUMNS} FROM ticket_details \
                             WHERE id IN (SELECT value FROM json_each(?1))"
                        ),
                    ),
                ));
                Ok::<_, DbError<ViewError>>(plans)
            })
            .await
            .map_err(ViewError::from)
            .expect("plans");
        for (index, plan) in &plans {
            assert!(
                plan.contains(&format!("INDEX {index}")),
                "{index} unused: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "a sort step: {plan}");
        }
        // The first unfiltered page walks the index from the top (LIMIT stops
        // it); every other shape seeks into it: a status prefix, a cursor, both.
        let (_, first_page) = &plans[0];
        assert_eq!(
            first_page,
            "SCAN ticket_list USING INDEX ticket_list_newest"
        );
        for (_, plan) in &plans[1..] {
            assert!(plan.contains("SEARCH ticket_"), "not a seek: {plan}");
            assert!(!plan.contains("SCAN ticket_"), "a scan: {plan}");
        }
    }
}
