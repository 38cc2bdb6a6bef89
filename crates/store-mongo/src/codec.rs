//! How values are spelled in documents, and the documents of each collection.
//!
//! - Ids (event, ticket, correlation, causation) are hyphenated lowercase UUID
//!   strings: their order is the UUID's byte order, so `_id` sorts agree with
//!   `Uuid`'s `Ord` (and with the SQLite backend).
//! - Times are BSON dates, which hold milliseconds: a time is truncated to the
//!   millisecond on the way in, and appends return it truncated, exactly as it
//!   will be read back.
//! - Positions, versions and schema versions are 64-bit integers.
//! - Event payloads are JSON objects stored as BSON documents (integers as
//!   64-bit integers, integers above `i64::MAX` as Decimal128, other numbers
//!   as doubles); a dead letter's copy of its event is spelled the same way.
//! - Slot rows have one shape per projection, whichever slot holds them; the
//!   collection's name goes into error messages.

use chrono::{DateTime, Utc};
use domain::Status;
use eventstore::{Metadata, NewEvent, Payload, Position, RecordedEvent};
use mongodb::bson::{self, Bson, Document, doc};
use readmodel::{
    DeadLetter, DeadLetterState, LeaseStatus, Note, Projection, Rows, RunState, SlotState,
    SlotStatus, TicketDetail, TicketListRow, TicketStatusRow,
};
use uuid::Uuid;

/// Field names of the `events` collection.
pub(crate) mod event {
    pub const POSITION: &str = "_id";
    pub const EVENT_ID: &str = "event_id";
    pub const TICKET_ID: &str = "ticket_id";
    pub const VERSION: &str = "version";
    pub const EVENT_TYPE: &str = "event_type";
    pub const SCHEMA_VERSION: &str = "schema_version";
    pub const OCCURRED_AT: &str = "occurred_at";
    pub const DATA: &str = "data";
    pub const METADATA: &str = "metadata";
}

pub(crate) fn id(id: Uuid) -> String {
    id.hyphenated().to_string()
}

/// A time as a BSON date stores it: truncated to the millisecond.
#[cfg(test)]
pub(crate) fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    // In range by construction: the milliseconds come from a valid time.
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}

pub(crate) fn date(at: DateTime<Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(at.timestamp_millis())
}

/// Positions, versions and counts are unsigned in the contract and 64-bit
/// signed in BSON; the values stay far below the limit.
pub(crate) fn int(value: u64, what: &str) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("{what} {value} exceeds BSON's integer range"))
}

/// Saturates rather than fails: a bound above every stored value means "none".
pub(crate) fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A JSON value as BSON.
pub(crate) fn to_bson(value: &serde_json::Value) -> Bson {
    use serde_json::Value;
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Bson::Int64(i)
            } else if let Some(u) = n.as_u64() {
                // Above i64::MAX: Decimal128 keeps every digit.
                u.to_string()
                    .parse()
                    .map_or(Bson::Double(u as f64), Bson::Decimal128)
            } else {
                Bson::Double(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(to_bson).collect()),
        Value::Object(map) => Bson::Document(to_document(map)),
    }
}

pub(crate) fn to_document(map: &serde_json::Map<String, serde_json::Value>) -> Document {
    map.iter().map(|(k, v)| (k.clone(), to_bson(v))).collect()
}

/// BSON written by [`to_bson`] back as JSON.
pub(crate) fn to_json(value: &Bson) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match value {
        Bson::Null => Value::Null,
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Int32(i) => Value::from(*i),
        Bson::Int64(i) => Value::from(*i),
        Bson::Double(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("{f} is not a JSON number"))?,
        Bson::Decimal128(d) => {
            let text = d.to_string();
            text.parse::<u64>()
                .map(Value::from)
                .map_err(|_| format!("decimal {text} is not an integer this store writes"))?
        }
        Bson::String(s) => Value::String(s.clone()),
        Bson::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Bson::Document(document) => Value::Object(
            document
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => return Err(format!("{:?} has no JSON equivalent", other.element_type())),
    })
}

/// Typed reads of one stored document, with errors that name it.
pub(crate) struct Fields<'a> {
    pub(crate) document: &'a Document,
    /// "collection document-id", for messages.
    pub(crate) what: String,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(collection: &str, document: &'a Document) -> Self {
        let id = document
            .get("_id")
            .map_or_else(|| "(no _id)".to_owned(), |id| id.to_string());
        Fields {
            document,
            what: format!("{collection} document {id}"),
        }
    }

    pub(crate) fn corrupt(&self, what: impl std::fmt::Display) -> String {
        format!("{}: {what}", self.what)
    }

    pub(crate) fn get(&self, key: &str) -> Result<&'a Bson, String> {
        self.document
            .get(key)
            .ok_or_else(|| self.corrupt(format!("`{key}` is missing")))
    }

    fn wrong(&self, key: &str, expected: &str, found: &Bson) -> String {
        self.corrupt(format!(
            "`{key}` is {:?}, not {expected}",
            found.element_type()
        ))
    }

    pub(crate) fn str(&self, key: &str) -> Result<&'a str, String> {
        match self.get(key)? {
            Bson::String(s) => Ok(s),
            other => Err(self.wrong(key, "a string", other)),
        }
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.document.get(key) {
            None | Some(Bson::Null) => Ok(None),
            Some(Bson::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong(key, "a string or null", other)),
        }
    }

    pub(crate) fn bool(&self, key: &str) -> Result<bool, String> {
        match self.get(key)? {
            Bson::Boolean(b) => Ok(*b),
            other => Err(self.wrong(key, "a boolean", other)),
        }
    }

    pub(crate) fn i64(&self, key: &str) -> Result<i64, String> {
        match self.get(key)? {
            Bson::Int64(i) => Ok(*i),
            Bson::Int32(i) => Ok(i64::from(*i)),
            other => Err(self.wrong(key, "an integer", other)),
        }
    }

    pub(crate) fn u64(&self, key: &str) -> Result<u64, String> {
        let value = self.i64(key)?;
        u64::try_from(value).map_err(|_| self.corrupt(format!("`{key}` is negative ({value})")))
    }

    pub(crate) fn uuid(&self, key: &str) -> Result<Uuid, String> {
        self.parse_uuid(key, self.str(key)?)
    }

    pub(crate) fn opt_uuid(&self, key: &str) -> Result<Option<Uuid>, String> {
        self.opt_str(key)?
            .map(|text| self.parse_uuid(key, text))
            .transpose()
    }

    fn parse_uuid(&self, key: &str, text: &str) -> Result<Uuid, String> {
        Uuid::try_parse(text)
            .map_err(|e| self.corrupt(format!("`{key}` `{text}` is not a UUID: {e}")))
    }

    pub(crate) fn time(&self, key: &str) -> Result<DateTime<Utc>, String> {
        match self.get(key)? {
            Bson::DateTime(at) => DateTime::from_timestamp_millis(at.timestamp_millis())
                .ok_or_else(|| self.corrupt(format!("`{key}` {at} is out of range"))),
            other => Err(self.wrong(key, "a date", other)),
        }
    }

    pub(crate) fn status(&self, key: &str) -> Result<Status, String> {
        let text = self.str(key)?;
        text.parse()
            .map_err(|_| self.corrupt(format!("unknown status `{text}`")))
    }

    pub(crate) fn document(&self, key: &str) -> Result<&'a Document, String> {
        match self.get(key)? {
            Bson::Document(d) => Ok(d),
            other => Err(self.wrong(key, "a document", other)),
        }
    }

    pub(crate) fn array(&self, key: &str) -> Result<&'a bson::Array, String> {
        match self.get(key)? {
            Bson::Array(items) => Ok(items),
            other => Err(self.wrong(key, "an array", other)),
        }
    }
}

fn metadata_document(metadata: &Metadata) -> Document {
    let mut document = Document::new();
    if let Some(correlation) = metadata.correlation_id {
        document.insert("correlation_id", id(correlation));
    }
    if let Some(causation) = metadata.causation_id {
        document.insert("causation_id", id(causation));
    }
    if let Some(actor) = &metadata.actor {
        document.insert("actor", actor.as_str());
    }
    if let Some(key) = &metadata.idempotency_key {
        document.insert("idempotency_key", key.as_str());
    }
    if let Some(digest) = &metadata.request_digest {
        document.insert("request_digest", digest.as_str());
    }
    document
}

fn read_metadata(document: &Document, what: &str) -> Result<Metadata, String> {
    let fields = Fields {
        document,
        what: format!("{what} metadata"),
    };
    Ok(Metadata {
        correlation_id: fields.opt_uuid("correlation_id")?,
        causation_id: fields.opt_uuid("causation_id")?,
        actor: fields.opt_str("actor")?.map(str::to_owned),
        idempotency_key: fields.opt_str("idempotency_key")?.map(str::to_owned),
        request_digest: fields.opt_str("request_digest")?.map(str::to_owned),
    })
}

/// The document of an event about to be appended at `position` and `version`.
pub(crate) fn event_document(
    position: Position,
    ticket_id: Uuid,
    version: u64,
    new: &NewEvent,
) -> Result<Document, String> {
    let serde_json::Value::Object(data) = new.data.to_value() else {
        return Err(format!(
            "the payload of event {} ({}) is not a JSON object",
            new.event_id, new.event_type
        ));
    };
    Ok(doc! {
        event::POSITION: int(position, "position")?,
        event::EVENT_ID: id(new.event_id),
        event::TICKET_ID: id(ticket_id),
        event::VERSION: int(version, "version")?,
        event::EVENT_TYPE: new.event_type.as_str(),
        event::SCHEMA_VERSION: i64::from(new.schema_version),
        event::OCCURRED_AT: date(new.occurred_at),
        event::DATA: to_document(&data),
        event::METADATA: metadata_document(&new.metadata),
    })
}

/// An event document as every read returns it. Appends decode the documents
/// they insert with this too, so an append's result equals a later read.
pub(crate) fn read_event(document: &Document) -> Result<RecordedEvent, String> {
    let fields = Fields::new("events", document);
    let schema_version = fields.i64(event::SCHEMA_VERSION)?;
    Ok(RecordedEvent {
        position: fields.u64(event::POSITION)?,
        ticket_id: fields.uuid(event::TICKET_ID)?,
        version: fields.u64(event::VERSION)?,
        event_id: fields.uuid(event::EVENT_ID)?,
        event_type: fields.str(event::EVENT_TYPE)?.to_owned(),
        schema_version: u32::try_from(schema_version).map_err(|_| {
            fields.corrupt(format!("schema version {schema_version} is out of range"))
        })?,
        occurred_at: fields.time(event::OCCURRED_AT)?,
        data: to_json(&Bson::Document(fields.document(event::DATA)?.clone()))
            .map(|data| Payload::from_value(&data))
            .map_err(|e| fields.corrupt(format!("data: {e}")))?,
        metadata: read_metadata(fields.document(event::METADATA)?, &fields.what)?,
    })
}

fn opt_string(value: Option<&str>) -> Bson {
    value.map_or(Bson::Null, |s| Bson::String(s.to_owned()))
}

/// The document of a ticket in a detail slot (`detail_a`, `detail_b`).
pub(crate) fn detail_document(detail: &TicketDetail) -> Result<Document, String> {
    let notes: bson::Array = detail
        .notes
        .iter()
        .map(|note| {
            Bson::Document(doc! { "text": note.text.as_str(), "added_at": date(note.added_at) })
        })
        .collect();
    Ok(doc! {
        "_id": id(detail.id),
        "customer": detail.customer.as_str(),
        "subject": detail.subject.as_str(),
        "message": detail.message.as_str(),
        "status": detail.status.as_str(),
        "agent": opt_string(detail.agent.as_deref()),
        "notes": notes,
        "created_at": date(detail.created_at),
        "updated_at": date(detail.updated_at),
        "version": int(detail.version, "version")?,
    })
}

/// A detail slot's document; `collection` names it in errors.
pub(crate) fn read_detail(collection: &str, document: &Document) -> Result<TicketDetail, String> {
    let fields = Fields::new(collection, document);
    let notes = fields
        .array("notes")?
        .iter()
        .enumerate()
        .map(|(index, note)| {
            let Bson::Document(note) = note else {
                return Err(fields.corrupt(format!("note {index} is not a document")));
            };
            let note_fields = Fields {
                document: note,
                what: format!("{} note {index}", fields.what),
            };
            Ok(Note {
                text: note_fields.str("text")?.to_owned(),
                added_at: note_fields.time("added_at")?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(TicketDetail {
        id: fields.uuid("_id")?,
        customer: fields.str("customer")?.to_owned(),
        subject: fields.str("subject")?.to_owned(),
        message: fields.str("message")?.to_owned(),
        status: fields.status("status")?,
        agent: fields.opt_str("agent")?.map(str::to_owned),
        notes,
        created_at: fields.time("created_at")?,
        updated_at: fields.time("updated_at")?,
        version: fields.u64("version")?,
    })
}

/// The document of a ticket in a list slot (`list_a`, `list_b`).
pub(crate) fn list_document(row: &TicketListRow) -> Result<Document, String> {
    Ok(doc! {
        "_id": id(row.id),
        "customer": row.customer.as_str(),
        "subject": row.subject.as_str(),
        "status": row.status.as_str(),
        "agent": opt_string(row.agent.as_deref()),
        "preview": row.preview.as_str(),
        "has_note": row.has_note,
        "last_note_preview": opt_string(row.last_note_preview.as_deref()),
        "created_at": date(row.created_at),
        "updated_at": date(row.updated_at),
        "version": int(row.version, "version")?,
    })
}

/// A list slot's document; `collection` names it in errors.
pub(crate) fn read_list_row(
    collection: &str,
    document: &Document,
) -> Result<TicketListRow, String> {
    let fields = Fields::new(collection, document);
    Ok(TicketListRow {
        id: fields.uuid("_id")?,
        customer: fields.str("customer")?.to_owned(),
        subject: fields.str("subject")?.to_owned(),
        status: fields.status("status")?,
        agent: fields.opt_str("agent")?.map(str::to_owned),
        preview: fields.str("preview")?.to_owned(),
        has_note: fields.bool("has_note")?,
        last_note_preview: fields.opt_str("last_note_preview")?.map(str::to_owned),
        created_at: fields.time("created_at")?,
        updated_at: fields.time("updated_at")?,
        version: fields.u64("version")?,
    })
}

/// The document of a ticket in a dashboard slot (`dashboard_tickets_a`, `_b`).
pub(crate) fn status_row_document(row: &TicketStatusRow) -> Result<Document, String> {
    Ok(doc! {
        "_id": id(row.id),
        "status": row.status.as_str(),
        "version": int(row.version, "version")?,
    })
}

/// A dashboard slot's ticket document; `collection` names it in errors.
pub(crate) fn read_status_row(
    collection: &str,
    document: &Document,
) -> Result<TicketStatusRow, String> {
    let fields = Fields::new(collection, document);
    Ok(TicketStatusRow {
        id: fields.uuid("_id")?,
        status: fields.status("status")?,
        version: fields.u64("version")?,
    })
}

/// The documents of rows, in order.
pub(crate) fn row_documents(rows: &Rows) -> Result<Vec<Document>, String> {
    match rows {
        Rows::Detail(rows) => rows.iter().map(detail_document).collect(),
        Rows::List(rows) => rows.iter().map(list_document).collect(),
        Rows::Dashboard(rows) => rows.iter().map(status_row_document).collect(),
    }
}

/// Documents of a `projection` slot's `collection` as that projection's rows.
pub(crate) fn read_rows(
    projection: Projection,
    collection: &str,
    documents: &[Document],
) -> Result<Rows, String> {
    Ok(match projection {
        Projection::Detail => Rows::Detail(
            documents
                .iter()
                .map(|d| read_detail(collection, d))
                .collect::<Result<_, _>>()?,
        ),
        Projection::List => Rows::List(
            documents
                .iter()
                .map(|d| read_list_row(collection, d))
                .collect::<Result<_, _>>()?,
        ),
        Projection::Dashboard => Rows::Dashboard(
            documents
                .iter()
                .map(|d| read_status_row(collection, d))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// A `projection_slots` document's slot status.
pub(crate) fn read_slot_status(fields: &Fields<'_>) -> Result<SlotStatus, String> {
    let state = fields.str("state")?;
    let version = fields.i64("version")?;
    Ok(SlotStatus {
        checkpoint: fields.u64("checkpoint")?,
        version: u32::try_from(version)
            .map_err(|_| fields.corrupt(format!("version {version} is out of range")))?,
        state: SlotState::from_name(state)
            .ok_or_else(|| fields.corrupt(format!("unknown slot state `{state}`")))?,
    })
}

/// A `projection_leases` document as the status reports it.
pub(crate) fn read_lease(document: &Document) -> Result<LeaseStatus, String> {
    let fields = Fields::new("projection_leases", document);
    let state = fields.str("state")?;
    Ok(LeaseStatus {
        holder: fields.str("holder")?.to_owned(),
        token: fields.u64("token")?,
        expires_at: fields.time("expires_at")?,
        heartbeat_at: fields.time("heartbeat_at")?,
        state: RunState::from_name(state)
            .ok_or_else(|| fields.corrupt(format!("unknown run state `{state}`")))?,
        last_error: fields.opt_str("last_error")?.map(str::to_owned),
    })
}

/// A `dead_letters` document's `_id`: its projection and position.
pub(crate) fn dead_letter_id(projection: Projection, position: Position) -> String {
    format!("{projection}/{position}")
}

pub(crate) fn read_dead_letter(document: &Document) -> Result<DeadLetter, String> {
    let fields = Fields::new("dead_letters", document);
    let projection = fields.str("projection")?;
    let state = fields.str("state")?;
    Ok(DeadLetter {
        projection: projection
            .parse()
            .map_err(|e| fields.corrupt(format!("{e}")))?,
        position: fields.u64("position")?,
        ticket_id: fields.uuid("ticket_id")?,
        version: fields.u64("version")?,
        event_type: fields.str("event_type")?.to_owned(),
        reason: fields.str("reason")?.to_owned(),
        event: to_json(fields.get("event")?).map_err(|e| fields.corrupt(format!("event: {e}")))?,
        state: DeadLetterState::from_name(state)
            .ok_or_else(|| fields.corrupt(format!("unknown dead-letter state `{state}`")))?,
        recorded_at: fields.time("recorded_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 9, 30, 0)
            .single()
            .expect("a valid time")
            + chrono::Duration::nanoseconds(123_456_789)
    }

    #[test]
    fn json_payloads_roundtrip() {
        let data = serde_json::json!({
            "text": "ü 🔥",
            "extra": [1, -2, 2.5, 1.0, null, true, {"nested": {"deep": "x"}}],
            "big": 9_007_199_254_740_993_i64,
            "huge": u64::MAX,
            "min": i64::MIN,
        });
        assert_eq!(to_json(&to_bson(&data)), Ok(data));
    }

    #[test]
    fn times_are_truncated_to_the_millisecond() {
        let at = time();
        assert_eq!(truncate(at).timestamp_subsec_nanos(), 123_000_000);
        assert_eq!(date(at).timestamp_millis(), at.timestamp_millis());
        let before_epoch = Utc.timestamp_opt(-1, 999_999_999).single().expect("valid");
        assert_eq!(truncate(before_epoch).timestamp_subsec_nanos(), 999_000_000);
    }

    #[test]
    fn an_event_document_reads_back_as_the_truncated_event() {
        let new = NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "NoteAdded".into(),
            schema_version: 3,
            occurred_at: time(),
            data: Payload::from_value(&serde_json::json!({"text": "n"})),
            metadata: Metadata {
                correlation_id: Some(Uuid::now_v7()),
                causation_id: None,
                actor: Some("agent:ana".into()),
                idempotency_key: Some("k".into()),
                request_digest: Some("d".into()),
            },
        };
        let ticket = Uuid::now_v7();
        let document = event_document(7, ticket, 2, &new).expect("encodes");
        let read = read_event(&document).expect("decodes");
        assert_eq!(
            read,
            RecordedEvent {
                position: 7,
                ticket_id: ticket,
                version: 2,
                event_id: new.event_id,
                event_type: new.event_type.clone(),
                schema_version: 3,
                occurred_at: truncate(new.occurred_at),
                data: new.data.clone(),
                metadata: new.metadata.clone(),
            }
        );
        let not_an_object = NewEvent {
            data: Payload::from_value(&serde_json::json!([1])),
            ..new
        };
        assert!(event_document(8, ticket, 3, &not_an_object).is_err());
    }

    #[test]
    fn views_roundtrip_and_bad_documents_are_named() {
        let at = truncate(time());
        let detail = TicketDetail {
            id: Uuid::now_v7(),
            customer: "c".into(),
            subject: "s".into(),
            message: "m".into(),
            status: Status::Triaged,
            agent: Some("a".into()),
            notes: vec![Note {
                text: "n".into(),
                added_at: at,
            }],
            created_at: at,
            updated_at: at,
            version: 4,
        };
        let document = detail_document(&detail).expect("encodes");
        assert_eq!(read_detail("detail_a", &document), Ok(detail.clone()));
        let row = TicketListRow::from(&detail);
        assert_eq!(
            read_list_row("list_a", &list_document(&row).expect("encodes")),
            Ok(row)
        );

        let mut bad = document;
        bad.insert("status", "lost");
        let error = read_detail("detail_b", &bad).expect_err("an unknown status");
        assert!(
            error.contains("detail_b document") && error.contains("lost"),
            "{error}"
        );
    }
}
