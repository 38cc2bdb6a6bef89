//! The rows of each projection in a slot's tables: how they are spelled,
//! written under the version guard, loaded, scanned, counted and listed.

use chrono::{DateTime, Utc};
use domain::Status;
use readmodel::{
    Dashboard, DashboardDelta, ListQuery, ListSort, ListSortField, Note, Projection, Rows,
    TicketDetail, TicketListRow, TicketStatusRow, ViewError,
};
use rusqlite::{Connection, Row, ToSql};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::slots::{Slot, counts_table, rows_table};
use super::{Result, sql_int};
use crate::error::DbError;
use crate::text;

/// A note as the `notes` JSON array spells it (times as in every other column).
#[derive(Serialize, Deserialize)]
struct StoredNote {
    text: String,
    added_at: String,
}

/// Decoding of one stored row, naming the table and the ticket.
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

/// A projection's per-ticket row and its table layout (the same in both slots).
trait StoredRow: Sized {
    const PROJECTION: Projection;
    /// The selected columns, `id` first.
    const COLUMNS: &'static str;

    /// The `SET` list of the upsert's `DO UPDATE`.
    const UPDATES: &'static str;

    /// The `SET` list for a row whose columns that never change otherwise
    /// did change: an erased customer's (see [`StoredRow::rewrites_all`]).
    const ALL_UPDATES: &'static str = Self::UPDATES;

    /// Whether this row must be written with [`StoredRow::ALL_UPDATES`].
    fn rewrites_all(&self) -> bool {
        false
    }

    fn read(row: &Row<'_>, table: &'static str) -> Result<Self>;

    /// Runs the upsert (prepared from [`upsert_sql`]) for this row.
    fn upsert(&self, statement: &mut rusqlite::CachedStatement<'_>) -> Result<()>;

    fn wrap(rows: Vec<Self>) -> Rows;
}

/// The upsert of a row into `table`: it writes the row unless the stored one
/// is at the same or a newer version. That guard, `excluded.version >
/// version`, keeps a row from ever moving back, should an older state arrive
/// after a newer one.
fn upsert_sql(table: &str, columns: &str, updates: &str) -> String {
    let count = columns.split(',').count();
    let placeholders: Vec<String> = (1..=count).map(|n| format!("?{n}")).collect();
    format!(
        "INSERT INTO {table} ({columns}) VALUES ({})
         ON CONFLICT (id) DO UPDATE SET {updates}
         WHERE excluded.version > {table}.version",
        placeholders.join(", ")
    )
}

impl StoredRow for TicketDetail {
    const PROJECTION: Projection = Projection::Detail;
    const COLUMNS: &'static str =
        "id, customer, subject, message, status, agent, notes, created_at, updated_at, version";
    const UPDATES: &'static str = "customer = excluded.customer, subject = excluded.subject, \
         message = excluded.message, status = excluded.status, agent = excluded.agent, \
         notes = excluded.notes, created_at = excluded.created_at, \
         updated_at = excluded.updated_at, version = excluded.version";

    fn read(row: &Row<'_>, table: &'static str) -> Result<Self> {
        let id: String = row.get(0)?;
        let decoder = Decoder { table, id: &id };
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

    fn upsert(&self, statement: &mut rusqlite::CachedStatement<'_>) -> Result<()> {
        let id = text::id(self.id);
        let notes: Vec<StoredNote> = self
            .notes
            .iter()
            .map(|note| StoredNote {
                text: note.text.clone(),
                added_at: text::time(note.added_at),
            })
            .collect();
        let notes = serde_json::to_string(&notes).map_err(|e| {
            DbError::Corrupt(format!("cannot encode the notes of ticket {id}: {e}"))
        })?;
        statement.execute(rusqlite::params![
            id,
            self.customer,
            self.subject,
            self.message,
            self.status.as_str(),
            self.agent,
            notes,
            text::time(self.created_at),
            text::time(self.updated_at),
            sql_int(self.version, "version")?,
        ])?;
        Ok(())
    }

    fn wrap(rows: Vec<Self>) -> Rows {
        Rows::Detail(rows)
    }
}

impl StoredRow for TicketListRow {
    const PROJECTION: Projection = Projection::List;
    const COLUMNS: &'static str = "id, customer, subject, status, agent, preview, has_note, \
                                   last_note_preview, created_at, updated_at, version";
    // `customer`, `subject` and `created_at` come from the opening event and
    // never change, so an update leaves them out: SQLite then skips the
    // indexes built only on them (`newest`, `customer_created`), two of the
    // slot's eight secondary indexes, on every event after the first.
    const UPDATES: &'static str = "status = excluded.status, agent = excluded.agent, \
         preview = excluded.preview, has_note = excluded.has_note, \
         last_note_preview = excluded.last_note_preview, updated_at = excluded.updated_at, \
         version = excluded.version";
    // An erasure is the one event that changes `customer` and `subject`.
    const ALL_UPDATES: &'static str = "customer = excluded.customer, \
         subject = excluded.subject, status = excluded.status, agent = excluded.agent, \
         preview = excluded.preview, has_note = excluded.has_note, \
         last_note_preview = excluded.last_note_preview, updated_at = excluded.updated_at, \
         version = excluded.version";

    fn rewrites_all(&self) -> bool {
        self.customer == domain::ERASED
    }

    fn read(row: &Row<'_>, table: &'static str) -> Result<Self> {
        let id: String = row.get(0)?;
        let decoder = Decoder { table, id: &id };
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

    fn upsert(&self, statement: &mut rusqlite::CachedStatement<'_>) -> Result<()> {
        statement.execute(rusqlite::params![
            text::id(self.id),
            self.customer,
            self.subject,
            self.status.as_str(),
            self.agent,
            self.preview,
            self.has_note,
            self.last_note_preview,
            text::time(self.created_at),
            text::time(self.updated_at),
            sql_int(self.version, "version")?,
        ])?;
        Ok(())
    }

    fn wrap(rows: Vec<Self>) -> Rows {
        Rows::List(rows)
    }
}

impl StoredRow for TicketStatusRow {
    const PROJECTION: Projection = Projection::Dashboard;
    const COLUMNS: &'static str = "id, status, version";
    const UPDATES: &'static str = "status = excluded.status, version = excluded.version";

    fn read(row: &Row<'_>, table: &'static str) -> Result<Self> {
        let id: String = row.get(0)?;
        let decoder = Decoder { table, id: &id };
        let status: String = row.get(1)?;
        Ok(TicketStatusRow {
            id: decoder.id()?,
            status: decoder.status(&status)?,
            version: decoder.version(row.get(2)?)?,
        })
    }

    fn upsert(&self, statement: &mut rusqlite::CachedStatement<'_>) -> Result<()> {
        statement.execute(rusqlite::params![
            text::id(self.id),
            self.status.as_str(),
            sql_int(self.version, "version")?,
        ])?;
        Ok(())
    }

    fn wrap(rows: Vec<Self>) -> Rows {
        Rows::Dashboard(rows)
    }
}

fn collect<R: StoredRow>(
    statement: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
    table: &'static str,
) -> Result<Vec<R>> {
    let mut rows = statement.query(params)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        found.push(R::read(row, table)?);
    }
    Ok(found)
}

fn load<R: StoredRow>(connection: &Connection, slot: Slot, ids: &str) -> Result<Rows> {
    let table = rows_table(R::PROJECTION, slot);
    // The ids travel as one JSON array so that a single cached statement serves
    // any number of them.
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {} FROM {table} WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id",
        R::COLUMNS
    ))?;
    collect(&mut statement, [ids], table).map(R::wrap)
}

/// The slot's stored rows of the given tickets, by id.
pub(crate) fn load_rows(
    connection: &Connection,
    projection: Projection,
    slot: Slot,
    ids: &[Uuid],
) -> Result<Rows> {
    let ids: Vec<String> = ids.iter().map(|id| text::id(*id)).collect();
    let ids = serde_json::to_string(&ids)
        .map_err(|e| DbError::Corrupt(format!("cannot encode ids: {e}")))?;
    match projection {
        Projection::Detail => load::<TicketDetail>(connection, slot, &ids),
        Projection::List => load::<TicketListRow>(connection, slot, &ids),
        Projection::Dashboard => load::<TicketStatusRow>(connection, slot, &ids),
    }
}

fn scan<R: StoredRow>(
    connection: &Connection,
    slot: Slot,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Rows> {
    let table = rows_table(R::PROJECTION, slot);
    // Every stored id is 36 characters, so all sort after the empty text.
    let after = after.map(text::id).unwrap_or_default();
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {} FROM {table} WHERE id > ?1 ORDER BY id LIMIT ?2",
        R::COLUMNS
    ))?;
    collect(&mut statement, rusqlite::params![after, limit], table).map(R::wrap)
}

/// Up to `limit` of the slot's rows with ids above `after`, by id.
pub(crate) fn scan_rows(
    connection: &Connection,
    projection: Projection,
    slot: Slot,
    after: Option<Uuid>,
    limit: usize,
) -> Result<Rows> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match projection {
        Projection::Detail => scan::<TicketDetail>(connection, slot, after, limit),
        Projection::List => scan::<TicketListRow>(connection, slot, after, limit),
        Projection::Dashboard => scan::<TicketStatusRow>(connection, slot, after, limit),
    }
}

/// Upserts every row into the slot's table of their projection.
pub(crate) fn write_rows(connection: &Connection, slot: Slot, rows: &Rows) -> Result<()> {
    let table = rows_table(rows.projection(), slot);
    match rows {
        Rows::Detail(rows) => upsert_all(connection, table, rows),
        Rows::List(rows) => upsert_all(connection, table, rows),
        Rows::Dashboard(rows) => upsert_all(connection, table, rows),
    }
}

/// Upserts `rows` with one statement, its SQL spelled once per call.
fn upsert_all<R: StoredRow>(connection: &Connection, table: &str, rows: &[R]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut statement = connection.prepare_cached(&upsert_sql(table, R::COLUMNS, R::UPDATES))?;
    rows.iter()
        .filter(|row| !row.rewrites_all())
        .try_for_each(|row| row.upsert(&mut statement))?;
    if rows.iter().any(StoredRow::rewrites_all) {
        let mut statement =
            connection.prepare_cached(&upsert_sql(table, R::COLUMNS, R::ALL_UPDATES))?;
        rows.iter()
            .filter(|row| row.rewrites_all())
            .try_for_each(|row| row.upsert(&mut statement))?;
    }
    Ok(())
}

/// Zeroes a dashboard slot's counts (its rows emptied: see `reset`).
pub(crate) fn zero_counts(connection: &Connection, slot: Slot) -> Result<()> {
    connection
        .prepare_cached(&format!("UPDATE {} SET count = 0", counts_table(slot)))?
        .execute([])?;
    Ok(())
}

/// Moves a dashboard slot's counts by `delta`.
pub(crate) fn add_to_counts(
    connection: &Connection,
    slot: Slot,
    delta: &DashboardDelta,
) -> Result<()> {
    let table = counts_table(slot);
    let mut update = connection.prepare_cached(&format!(
        "UPDATE {table} SET count = count + ?1 WHERE status = ?2"
    ))?;
    for status in Status::ALL {
        let by = delta.get(status);
        if by == 0 {
            continue;
        }
        match update.execute(rusqlite::params![by, status.as_str()]) {
            Ok(1) => {}
            Ok(_) => return Err(DbError::Corrupt(format!("{table} has no `{status}` row"))),
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                return Err(DbError::Corrupt(format!(
                    "{table} `{status}` count would go below zero (by {by}): \
                     the rows and their checkpoint disagree"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A dashboard slot's counts.
pub(crate) fn counts(connection: &Connection, slot: Slot) -> Result<Dashboard> {
    let table = counts_table(slot);
    let mut statement = connection.prepare_cached(&format!("SELECT status, count FROM {table}"))?;
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
                    "{table} has a row for `{status}`"
                )));
            }
        };
        *slot = count;
    }
    Ok(dashboard)
}

/// One ticket's detail from a detail slot.
pub(crate) fn ticket(
    connection: &Connection,
    slot: Slot,
    id: Uuid,
) -> Result<Option<TicketDetail>> {
    let table = rows_table(Projection::Detail, slot);
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {} FROM {table} WHERE id = ?1",
        TicketDetail::COLUMNS
    ))?;
    collect(&mut statement, [text::id(id)], table).map(|mut found| found.pop())
}

/// Which of a list query's optional parts are present: what decides its SQL
/// text and its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListShape {
    pub(crate) status: bool,
    pub(crate) agent: bool,
    pub(crate) customer: bool,
    pub(crate) sort: ListSort,
    pub(crate) after: bool,
}

impl ListShape {
    pub(crate) fn of(query: &ListQuery) -> Self {
        ListShape {
            status: query.status.is_some(),
            agent: query.agent.is_some(),
            customer: query.customer.is_some(),
            sort: query.sort,
            after: query.after.is_some(),
        }
    }

    /// The index the query walks (migrations 0003, 0004 and 0009): the one
    /// of its most selective filter (customer, then agent, then status) and
    /// its sort key, else the sort key's own. The other filters are checked
    /// on the rows that index yields.
    pub(crate) fn index(self, slot: Slot) -> String {
        let table = rows_table(Projection::List, slot);
        let filter = if self.customer {
            Some("customer")
        } else if self.agent {
            Some("agent")
        } else if self.status {
            Some("status")
        } else {
            None
        };
        match (filter, self.sort.field) {
            (None, ListSortField::CreatedAt) => format!("{table}_newest"),
            (None, ListSortField::UpdatedAt) => format!("{table}_updated"),
            (Some("status"), ListSortField::CreatedAt) => format!("{table}_status_newest"),
            (Some(filter), ListSortField::CreatedAt) => format!("{table}_{filter}_created"),
            (Some(filter), ListSortField::UpdatedAt) => format!("{table}_{filter}_updated"),
        }
    }
}

/// The list's SQL, one text per slot and shape so each is prepared once. The
/// keyset condition is spelled as a range on the sort key plus a tie-break on
/// `id`, which the planner turns into a range seek of the shape's index
/// (named with `INDEXED BY`, so a planner's change of mind is an error, not a
/// silent full scan).
pub(crate) fn list_sql(slot: Slot, shape: ListShape) -> String {
    let table = rows_table(Projection::List, slot);
    let key = shape.sort.field.name();
    let (direction, before, strictly) = if shape.sort.descending {
        ("DESC", "<=", "<")
    } else {
        ("ASC", ">=", ">")
    };
    let mut conditions = Vec::new();
    if shape.status {
        conditions.push("status = :status".to_owned());
    }
    if shape.agent {
        conditions.push("agent = :agent".to_owned());
    }
    if shape.customer {
        conditions.push("customer = :customer".to_owned());
    }
    if shape.after {
        conditions.push(format!(
            "{key} {before} :key AND ({key} {strictly} :key OR id {strictly} :id)"
        ));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    format!(
        "SELECT {} FROM {table} INDEXED BY {} {filter} \
         ORDER BY {key} {direction}, id {direction} LIMIT :limit",
        TicketListRow::COLUMNS,
        shape.index(slot),
    )
}

/// A page of a list slot.
pub(crate) fn list(
    connection: &Connection,
    slot: Slot,
    query: &ListQuery,
) -> Result<Vec<TicketListRow>> {
    let status = query.status.map(Status::as_str);
    let after = query.after.map(|(at, id)| (text::time(at), text::id(id)));
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let mut params: Vec<(&str, &dyn ToSql)> = vec![(":limit", &limit)];
    if let Some(status) = &status {
        params.push((":status", status));
    }
    if let Some(agent) = &query.agent {
        params.push((":agent", agent));
    }
    if let Some(customer) = &query.customer {
        params.push((":customer", customer));
    }
    if let Some((key, id)) = &after {
        params.push((":key", key));
        params.push((":id", id));
    }
    let mut statement = connection.prepare_cached(&list_sql(slot, ListShape::of(query)))?;
    collect(
        &mut statement,
        params.as_slice(),
        rows_table(Projection::List, slot),
    )
}
