//! The event-store decorator that seals personal fields on the way in and
//! opens them on the way out, so that everything above the store (the write
//! side, the projector, the query side) sees plain events.
//!
//! Personal fields are the opening's `customer`, `subject` and `message`
//! and a note's `text`. A sealed field is stored as an object,
//! `{"key": "<key id>", "sealed": "<base64url>"}`, where a plain one is a
//! string; the event's type, ticket, version, times and every other field
//! stay in clear, so positions, statuses and counts survive an erasure.
//! Decoding a sealed payload without opening it fails (an object is not a
//! string), so a sealed value can never pass for text.
//!
//! A value whose key is destroyed opens as [`domain::ERASED`]. Plain events
//! from before sealing read as they are; an erasure rewrites them (see
//! `write::erasure`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eventstore::{EventStore, Forwarding, NewEvent, Payload, Position, RecordedEvent, StoreError};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::cipher::DataKey;
use crate::keys::{CACHE_ENTRIES, KeyError, Keyring};

pub use eventstore::personal_fields;

/// Whether a stored payload holds a sealed field: the text `"sealed":`
/// occurs in no JSON string (its quotes would be escaped), only as the key
/// of a sealed field's object.
pub fn is_sealed(data: &Payload) -> bool {
    data.json().contains("\"sealed\":")
}

/// The key id a sealed payload names, if it is sealed.
pub fn sealed_key(data: &Payload) -> Option<Uuid> {
    if !is_sealed(data) {
        return None;
    }
    let value = data.to_value();
    value
        .as_object()?
        .values()
        .find_map(|field| field.get("key")?.as_str()?.parse().ok())
}

/// The payload of an event of type `event_type` with its personal fields
/// sealed under the data key `key` whose id is `key_id`, as
/// [`SealedEvents`] stores it: each plain personal field becomes
/// `{"key": "<key id>", "sealed": "<base64url>"}`, every other field is left
/// as it is. For tools that write sealed events without a [`SealedEvents`]
/// (a bulk seed).
pub fn seal_payload(
    event_type: &str,
    data: &Payload,
    key_id: Uuid,
    key: &DataKey,
) -> Result<Payload, StoreError> {
    let mut fields = object(data, event_type)?;
    for name in personal_fields(event_type) {
        if let Some(Value::String(text)) = fields.get(*name) {
            let sealed = key.seal(name, text);
            fields.insert(
                (*name).to_owned(),
                serde_json::json!({ "key": key_id, "sealed": sealed }),
            );
        }
    }
    Ok(Payload::from_value(&Value::Object(fields)))
}

/// An [`EventStore`] that seals on append and opens on read (see the module
/// doc).
#[derive(Debug)]
pub struct SealedEvents {
    inner: Arc<dyn EventStore>,
    keyring: Arc<Keyring>,
    /// Each ticket's key, for sealing its notes without reading its opening.
    tickets: Mutex<HashMap<Uuid, Uuid>>,
}

impl SealedEvents {
    pub fn new(inner: Arc<dyn EventStore>, keyring: Arc<Keyring>) -> Self {
        Self {
            inner,
            keyring,
            tickets: Mutex::new(HashMap::new()),
        }
    }

    /// The keyring this store seals with.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The store underneath: sealed payloads as stored.
    pub fn raw(&self) -> &Arc<dyn EventStore> {
        &self.inner
    }

    fn remember_ticket(&self, ticket: Uuid, key: Uuid) {
        let mut tickets = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        if tickets.len() >= CACHE_ENTRIES {
            tickets.clear();
        }
        tickets.insert(ticket, key);
    }

    /// The key a ticket's notes are sealed with: its opening's.
    async fn ticket_key(&self, ticket: Uuid) -> Result<Uuid, StoreError> {
        let known = self
            .tickets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ticket)
            .copied();
        if let Some(key) = known {
            return Ok(key);
        }
        let stream = self.inner.read_stream(ticket).await?;
        let opening = stream.first().ok_or_else(|| {
            StoreError::Corrupt(format!("a note for ticket {ticket}, which has no events"))
        })?;
        let key = match sealed_key(&opening.data) {
            Some(key) => key,
            // An opening from before sealing: its customer is in clear.
            None => {
                let customer = opening.data.to_value()["customer"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("ticket {ticket}'s opening has no customer"))
                    })?;
                self.keyring.key_for(&customer).await.map_err(key_error)?.0
            }
        };
        self.remember_ticket(ticket, key);
        Ok(key)
    }

    /// The payload with its personal fields sealed under `key`; `Erased`
    /// when the key is destroyed (an erasure got there first).
    async fn seal(
        &self,
        ticket_id: Uuid,
        event: &NewEvent,
        key: Uuid,
    ) -> Result<Payload, StoreError> {
        let data_key = self
            .keyring
            .key(key)
            .await
            .map_err(key_error)?
            .ok_or(StoreError::Erased { ticket_id })?;
        seal_payload(&event.event_type, &event.data, key, &data_key)
    }

    /// The event with its sealed fields opened (or marked erased).
    async fn open(&self, mut event: RecordedEvent) -> Result<RecordedEvent, StoreError> {
        if personal_fields(&event.event_type).is_empty() || !is_sealed(&event.data) {
            return Ok(event);
        }
        let mut fields = object(&event.data, &event.event_type)?;
        for name in personal_fields(&event.event_type) {
            let Some(Value::Object(sealed)) = fields.get(*name) else {
                continue;
            };
            let (Some(key), Some(text)) = (
                sealed
                    .get("key")
                    .and_then(Value::as_str)
                    .and_then(|k| k.parse::<Uuid>().ok()),
                sealed.get("sealed").and_then(Value::as_str),
            ) else {
                return Err(StoreError::Corrupt(format!(
                    "event {} ({}): a sealed `{name}` without its key or value",
                    event.position, event.event_type
                )));
            };
            if event.event_type == "TicketOpened" {
                self.remember_ticket(event.ticket_id, key);
            }
            let opened = match self.keyring.key(key).await.map_err(key_error)? {
                Some(data_key) => data_key.open(name, text).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "event {} ({}): `{name}` does not open: {e}",
                        event.position, event.event_type
                    ))
                })?,
                None => domain::ERASED.to_owned(),
            };
            fields.insert((*name).to_owned(), Value::String(opened));
        }
        event.data = Payload::from_value(&Value::Object(fields));
        Ok(event)
    }

    async fn open_all(&self, events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut opened = Vec::with_capacity(events.len());
        for event in events {
            opened.push(self.open(event).await?);
        }
        Ok(opened)
    }
}

/// The type of the event that erases a ticket's personal fields.
const ERASURE: &str = "CustomerErased";

/// The event with every personal field, sealed or not, read as erased.
fn erased(mut event: RecordedEvent) -> Result<RecordedEvent, StoreError> {
    if personal_fields(&event.event_type).is_empty() {
        return Ok(event);
    }
    let mut fields = object(&event.data, &event.event_type)?;
    for name in personal_fields(&event.event_type) {
        if fields.contains_key(*name) {
            fields.insert((*name).to_owned(), Value::String(domain::ERASED.to_owned()));
        }
    }
    event.data = Payload::from_value(&Value::Object(fields));
    Ok(event)
}

fn object(data: &Payload, event_type: &str) -> Result<Map<String, Value>, StoreError> {
    match data.to_value() {
        Value::Object(fields) => Ok(fields),
        other => Err(StoreError::Corrupt(format!(
            "a {event_type} payload that is not an object: {other}"
        ))),
    }
}

fn key_error(error: KeyError) -> StoreError {
    match error {
        KeyError::Unavailable(cause) => StoreError::Unavailable(cause),
        other => StoreError::Corrupt(other.to_string()),
    }
}

#[async_trait]
impl Forwarding for SealedEvents {
    fn inner(&self) -> &dyn EventStore {
        self.inner.as_ref()
    }

    async fn append(
        &self,
        ticket_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut sealed = Vec::with_capacity(events.len());
        for event in &events {
            if personal_fields(&event.event_type).is_empty() {
                sealed.push(event.clone());
                continue;
            }
            let key = if event.event_type == "TicketOpened" {
                let customer = object(&event.data, &event.event_type)?
                    .get("customer")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| StoreError::Corrupt("an opening without a customer".into()))?;
                let (key, _) = self.keyring.key_for(&customer).await.map_err(key_error)?;
                self.remember_ticket(ticket_id, key);
                key
            } else {
                self.ticket_key(ticket_id).await?
            };
            let mut event_sealed = event.clone();
            event_sealed.data = self.seal(ticket_id, event, key).await?;
            sealed.push(event_sealed);
        }
        let recorded = self
            .inner
            .append(ticket_id, expected_version, sealed)
            .await?;
        // Answer with the plain payloads the caller gave, in the same order.
        Ok(recorded
            .into_iter()
            .zip(events)
            .map(|(mut recorded, event)| {
                recorded.data = event.data;
                recorded
            })
            .collect())
    }

    /// A stream with a `CustomerErased` reads erased in every personal
    /// field, without opening anything: its key may still be cached here
    /// for a few seconds after another process destroyed it.
    async fn read_stream(&self, ticket_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_stream(ticket_id).await?;
        if events.iter().any(|e| e.event_type == ERASURE) {
            return events.into_iter().map(erased).collect();
        }
        self.open_all(events).await
    }

    async fn read_idempotent(&self, key: &str) -> Result<Option<RecordedEvent>, StoreError> {
        match self.inner.read_idempotent(key).await? {
            Some(event) => Ok(Some(self.open(event).await?)),
            None => Ok(None),
        }
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_all(after, limit).await?;
        self.open_all(events).await
    }

    async fn read_by_ticket(
        &self,
        after: Option<(Uuid, u64)>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_by_ticket(after, limit).await?;
        self.open_all(events).await
    }
}
