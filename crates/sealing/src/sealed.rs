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

use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eventstore::{EventStore, Forwarding, NewEvent, Payload, Position, RecordedEvent, StoreError};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::cipher::{CipherError, DataKey, KeyCipher};
use crate::keys::{CACHE_ENTRIES, IdMap, KeyError, Keyring};

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
    let plain = plain_fields(data, event_type)?;
    sealed_with(data, event_type, &plain, key_id, &key.cipher())
}

/// A personal field stored in clear: where its value (a JSON string) is in
/// the payload's text, and its text.
#[derive(Debug)]
struct Plain {
    name: &'static str,
    value: Range<usize>,
    text: String,
}

/// The personal fields of the payload that are strings (in clear), in the
/// order of its text; others (absent, null, sealed) are left out.
fn plain_fields(data: &Payload, event_type: &str) -> Result<Vec<Plain>, StoreError> {
    let json = data.json();
    let mut found = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_str(json);
    (&mut deserializer)
        .deserialize_map(PersonalValues {
            fields: personal_fields(event_type),
            found: &mut found,
        })
        .map_err(|e| {
            StoreError::Corrupt(format!("a {event_type} payload that is not an object: {e}"))
        })?;
    let mut plain = Vec::with_capacity(found.len());
    for (name, raw) in found {
        let value = raw.get();
        if !value.starts_with('"') {
            continue;
        }
        let text: String = serde_json::from_str(value)
            .map_err(|e| StoreError::Corrupt(format!("a {event_type} payload's `{name}`: {e}")))?;
        let start = value.as_ptr() as usize - json.as_ptr() as usize;
        plain.push(Plain {
            name,
            value: start..start + value.len(),
            text,
        });
    }
    Ok(plain)
}

/// The payload with its `plain` fields (found by [`plain_fields`]) sealed
/// with `cipher`, the key `key_id`'s: each becomes
/// `{"key":"<key id>","sealed":"<base64url>"}` in the text, every other
/// byte left as it was.
fn sealed_with(
    data: &Payload,
    event_type: &str,
    plain: &[Plain],
    key_id: Uuid,
    cipher: &KeyCipher,
) -> Result<Payload, StoreError> {
    let json = data.json();
    let mut text = String::with_capacity(json.len() * 2 + 64 * plain.len());
    let mut at = 0;
    for field in plain {
        text.push_str(&json[at..field.value.start]);
        text.push_str("{\"key\":\"");
        text.push_str(key_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()));
        text.push_str("\",\"sealed\":\"");
        text.push_str(&cipher.seal(field.name, &field.text));
        text.push_str("\"}");
        at = field.value.end;
    }
    text.push_str(&json[at..]);
    Payload::from_json(text)
        .map_err(|e| StoreError::Corrupt(format!("a {event_type} payload, sealed, not JSON: {e}")))
}

/// An [`EventStore`] that seals on append and opens on read (see the module
/// doc).
///
/// A clone is the same store: it shares the keyring and the tickets' keys.
#[derive(Debug, Clone)]
pub struct SealedEvents {
    inner: Arc<dyn EventStore>,
    keyring: Arc<Keyring>,
    /// Each ticket's key, for sealing its notes without reading its opening.
    tickets: Arc<Mutex<IdMap<Uuid>>>,
}

impl SealedEvents {
    pub fn new(inner: Arc<dyn EventStore>, keyring: Arc<Keyring>) -> Self {
        Self {
            inner,
            keyring,
            tickets: Arc::new(Mutex::new(IdMap::default())),
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

    /// Up to `limit` events read by `read` from `cursor` on, opened. A big
    /// read is made in parts: while one part's fields are opened (on a task
    /// of its own), the next part is read from the store, so that reading
    /// and opening overlap instead of following each other. The parts
    /// together are what one read of `limit` gives: each starts where the
    /// one before ended (`next`), and a part that comes back short ends it.
    async fn read_opened<C: Copy, R, F>(
        &self,
        mut cursor: C,
        limit: usize,
        read: R,
        next: fn(&RecordedEvent) -> C,
    ) -> Result<Vec<RecordedEvent>, StoreError>
    where
        R: Fn(C, usize) -> F,
        F: Future<Output = Result<Vec<RecordedEvent>, StoreError>>,
    {
        if limit < PARTED_READ_MIN {
            let events = read(cursor, limit).await?;
            return self.open_all(events, false).await;
        }
        let part = limit.div_ceil(PARTED_READ_PARTS);
        let mut opened = Vec::with_capacity(limit);
        let mut opening: Option<JoinHandle<Result<Vec<RecordedEvent>, StoreError>>> = None;
        let mut left = limit;
        loop {
            let size = part.min(left);
            let events = read(cursor, size).await?;
            let short = events.len() < size;
            left -= events.len();
            if let Some(last) = events.last() {
                cursor = next(last);
            }
            let this = self.clone();
            let started = tokio::spawn(async move { this.open_all(events, false).await });
            if let Some(before) = opening.replace(started) {
                opened.extend(joined(before).await?);
            }
            if short || left == 0 {
                break;
            }
        }
        if let Some(last) = opening {
            opened.extend(joined(last).await?);
        }
        Ok(opened)
    }

    /// The events with their sealed fields opened (or marked erased). The
    /// keys of the whole batch are found first, every one not cached loaded
    /// in one call to the key store, and each key's cipher is set up once
    /// for the batch. A payload is not parsed into a `Value`: its sealed
    /// fields are found in its text and replaced there by their opened text,
    /// every other byte left as stored. With `remember_tickets`, each
    /// opening's key is remembered for sealing its ticket's notes: a ticket's
    /// own stream is read before a note is appended to it; a replay's pages
    /// of the whole history are not, and would only churn that cache.
    async fn open_all(
        &self,
        mut events: Vec<RecordedEvent>,
        remember_tickets: bool,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        // The sealed fields of every event, in order: (event index, span).
        let mut spans: Vec<(usize, Span)> = Vec::new();
        for (index, event) in events.iter().enumerate() {
            let fields = personal_fields(&event.event_type);
            if fields.is_empty() || !is_sealed(&event.data) {
                continue;
            }
            let first = spans.len();
            find_sealed(event.data.json(), fields, index, &mut spans).map_err(|why| {
                StoreError::Corrupt(format!(
                    "event {} ({}): {why}",
                    event.position, event.event_type
                ))
            })?;
            if remember_tickets
                && event.event_type == "TicketOpened"
                && let Some((_, span)) = spans.get(first)
            {
                self.remember_ticket(event.ticket_id, span.key);
            }
        }
        if spans.is_empty() {
            return Ok(events);
        }
        // An event's fields share its key: one lookup per run of them.
        let mut key_ids: Vec<Uuid> = Vec::with_capacity(spans.len());
        for (_, span) in &spans {
            if key_ids.last() != Some(&span.key) {
                key_ids.push(span.key);
            }
        }
        let keys = Arc::new(self.keyring.keys(key_ids).await.map_err(key_error)?);
        if events.len() < PARALLEL_OPEN_MIN {
            return open_spans(events, &spans, &keys);
        }
        // A big batch (a replay's) is opened in two halves at once: the
        // half on a blocking thread, the other here.
        let middle = events.len() / 2;
        let later = events.split_off(middle);
        let split = spans.partition_point(|(index, _)| *index < middle);
        let later_spans: Vec<(usize, Span)> = spans
            .split_off(split)
            .into_iter()
            .map(|(index, span)| (index - middle, span))
            .collect();
        let shared = Arc::clone(&keys);
        let later = tokio::task::spawn_blocking(move || open_spans(later, &later_spans, &shared));
        let mut opened = open_spans(events, &spans, &keys)?;
        opened.extend(
            later
                .await
                .map_err(|e| StoreError::Unavailable(Box::new(e)))??,
        );
        Ok(opened)
    }
}

/// The smallest read made in parts, each opened while the next is read:
/// its parts are still as big as the smallest read a store splits in
/// halves read at once (SQLite's `read_all`), which smaller parts would lose.
const PARTED_READ_MIN: usize = 8192;
/// The parts of such a read.
const PARTED_READ_PARTS: usize = 2;

/// A part's opened events, once its task ends.
async fn joined(
    task: JoinHandle<Result<Vec<RecordedEvent>, StoreError>>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    task.await
        .map_err(|e| StoreError::Unavailable(Box::new(e)))?
}

/// The smallest batch opened in two halves at once.
const PARALLEL_OPEN_MIN: usize = 2048;

/// Each key's cipher for a batch; `None` for a destroyed key.
type Ciphers = IdMap<Option<KeyCipher>>;

/// The events with their sealed fields, at `spans`, opened with `keys`.
/// Each key's cipher is set up here, once, when its first field comes, so
/// the two halves of a big batch each set up their own keys' ciphers at
/// the same time (a key with fields in both halves is set up twice).
fn open_spans(
    mut events: Vec<RecordedEvent>,
    spans: &[(usize, Span)],
    keys: &IdMap<Option<DataKey>>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut ciphers = Ciphers::default();
    let mut buffer = Vec::new();
    let mut spans = spans;
    while let Some(&(index, _)) = spans.first() {
        let count = spans.iter().take_while(|(i, _)| *i == index).count();
        let (own, rest) = spans.split_at(count);
        spans = rest;
        for (_, span) in own {
            ciphers.entry(span.key).or_insert_with(|| {
                keys.get(&span.key)
                    .and_then(Option::as_ref)
                    .map(DataKey::cipher)
            });
        }
        let event = &mut events[index];
        let text =
            opened_text(event.data.json(), own, &ciphers, &mut buffer).map_err(|(name, e)| {
                StoreError::Corrupt(format!(
                    "event {} ({}): `{name}` does not open: {e}",
                    event.position, event.event_type
                ))
            })?;
        event.data = Payload::from_json(text).map_err(|e| {
            StoreError::Corrupt(format!(
                "event {} ({}): opened, not JSON: {e}",
                event.position, event.event_type
            ))
        })?;
    }
    Ok(events)
}

/// The payload's text with the sealed fields at `spans` (this payload's,
/// in order) replaced by their opened text, or by [`domain::ERASED`] where
/// their key is destroyed (`None`).
fn opened_text(
    json: &str,
    spans: &[(usize, Span)],
    ciphers: &Ciphers,
    buffer: &mut Vec<u8>,
) -> Result<String, (&'static str, CipherError)> {
    let mut text = String::with_capacity(json.len());
    let mut at = 0;
    for (_, span) in spans {
        text.push_str(&json[at..span.value.start]);
        match ciphers.get(&span.key).and_then(Option::as_ref) {
            Some(cipher) => {
                let opened = cipher
                    .open_in(span.name, &json[span.sealed.clone()], buffer)
                    .map_err(|e| (span.name, e))?;
                push_json_string(&mut text, opened);
            }
            None => push_json_string(&mut text, domain::ERASED),
        }
        at = span.value.end;
    }
    text.push_str(&json[at..]);
    Ok(text)
}

/// Where a sealed field is in a payload's text: the whole value (the
/// object, replaced by the opened text), and the sealed text inside it.
#[derive(Debug)]
struct Span {
    name: &'static str,
    key: Uuid,
    value: Range<usize>,
    sealed: Range<usize>,
}

/// A sealed field's object, borrowed from the payload's text (a key id and
/// base64url need no escapes).
#[derive(Deserialize)]
struct SealedField<'a> {
    key: &'a str,
    sealed: &'a str,
}

/// Pushes onto `spans` where each sealed personal field of the payload
/// `json` is, as `(index, span)`, in the order of the text. A personal field
/// that is not an object (a string: in clear) is left out.
fn find_sealed(
    json: &str,
    fields: &'static [&'static str],
    index: usize,
    spans: &mut Vec<(usize, Span)>,
) -> Result<(), String> {
    let offset = |inner: &str| inner.as_ptr() as usize - json.as_ptr() as usize;
    let mut found: Vec<(&'static str, &RawValue)> = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_str(json);
    (&mut deserializer)
        .deserialize_map(PersonalValues {
            fields,
            found: &mut found,
        })
        .map_err(|e| format!("a payload that is not an object: {e}"))?;
    // The fields of one payload share their key: its id is parsed once.
    let mut last: Option<(&str, Uuid)> = None;
    for (name, raw) in found {
        let value = raw.get();
        if !value.starts_with('{') {
            continue;
        }
        let sealed: SealedField<'_> = serde_json::from_str(value)
            .map_err(|e| format!("a sealed `{name}` without its key or value: {e}"))?;
        let key = match last {
            Some((text, key)) if text == sealed.key => key,
            _ => sealed
                .key
                .parse::<Uuid>()
                .map_err(|e| format!("a sealed `{name}` with a key that is not an id: {e}"))?,
        };
        last = Some((sealed.key, key));
        let start = offset(value);
        let sealed_start = offset(sealed.sealed);
        spans.push((
            index,
            Span {
                name,
                key,
                value: start..start + value.len(),
                sealed: sealed_start..sealed_start + sealed.sealed.len(),
            },
        ));
    }
    Ok(())
}

/// Collects the raw values of the personal fields of one object, skipping
/// the others without building them.
struct PersonalValues<'f, 'de> {
    fields: &'static [&'static str],
    found: &'f mut Vec<(&'static str, &'de RawValue)>,
}

impl<'de> Visitor<'de> for PersonalValues<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(field) = map.next_key_seed(FieldName(self.fields))? {
            match field {
                Some(name) => self.found.push((name, map.next_value()?)),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A key of the payload's object: which personal field it is, if any.
struct FieldName(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for FieldName {
    type Value = Option<&'static str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldName {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().copied().find(|field| *field == name))
    }
}

/// Pushes `text` as a JSON string (quoted and escaped as serde_json
/// escapes it).
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    let mut plain = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[plain..at]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{byte:04x}"));
        } else {
            out.push_str(escape);
        }
        plain = at + 1;
    }
    out.push_str(&text[plain..]);
    out.push('"');
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
            let plain = plain_fields(&event.data, &event.event_type)?;
            let key = if event.event_type == "TicketOpened" {
                let customer = plain
                    .iter()
                    .find(|field| field.name == "customer")
                    .ok_or_else(|| StoreError::Corrupt("an opening without a customer".into()))?;
                let (key, _) = self
                    .keyring
                    .key_for(&customer.text)
                    .await
                    .map_err(key_error)?;
                self.remember_ticket(ticket_id, key);
                key
            } else {
                self.ticket_key(ticket_id).await?
            };
            let data_key = self
                .keyring
                .key(key)
                .await
                .map_err(key_error)?
                .ok_or(StoreError::Erased { ticket_id })?;
            sealed.push(NewEvent {
                data: sealed_with(
                    &event.data,
                    &event.event_type,
                    &plain,
                    key,
                    &data_key.cipher(),
                )?,
                ..event.clone()
            });
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
        self.open_all(events, true).await
    }

    async fn read_idempotent(&self, key: &str) -> Result<Option<RecordedEvent>, StoreError> {
        match self.inner.read_idempotent(key).await? {
            Some(event) => Ok(self.open_all(vec![event], true).await?.pop()),
            None => Ok(None),
        }
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_opened(
            after,
            limit,
            |after, limit| self.inner.read_all(after, limit),
            |event| event.position,
        )
        .await
    }

    async fn read_by_ticket(
        &self,
        after: Option<(Uuid, u64)>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_opened(
            after,
            limit,
            |after, limit| self.inner.read_by_ticket(after, limit),
            |event| Some((event.ticket_id, event.version)),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_is_spelled_as_serde_json_spells_it() {
        for text in [
            "",
            "plain",
            "Printer \"on\" fire \\ 🔥\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f} é",
            "\"",
            "ends with \\",
        ] {
            let mut spelled = String::new();
            push_json_string(&mut spelled, text);
            let expected = serde_json::to_string(text).expect("a string");
            assert_eq!(spelled, expected, "{text:?}");
        }
    }

    #[test]
    fn a_sealed_payload_opens_in_its_text_and_reads_erased_without_its_key() {
        let key = DataKey::generate();
        let key_id = Uuid::now_v7();
        let plain = serde_json::json!({
            "ticket_id": "t-1",
            "customer": "Ada \"Countess\" Lovelace",
            "subject": "Printer on fire 🔥",
            "message": "line one\nline \\ two\u{1}",
            "priority": {"sealed": false, "key": 3},
            "tags": ["a", {"b": "sealed"}],
        });
        let sealed = seal_payload("TicketOpened", &Payload::from_value(&plain), key_id, &key)
            .expect("sealed");
        assert!(is_sealed(&sealed));
        let mut spans = Vec::new();
        find_sealed(
            sealed.json(),
            personal_fields("TicketOpened"),
            4,
            &mut spans,
        )
        .expect("found");
        assert_eq!(spans.len(), 3);
        assert!(
            spans
                .iter()
                .all(|(index, span)| *index == 4 && span.key == key_id)
        );
        let mut buffer = Vec::new();
        let ciphers = Ciphers::from_iter([(key_id, Some(key.cipher()))]);
        let opened = opened_text(sealed.json(), &spans, &ciphers, &mut buffer).expect("opens");
        assert_eq!(Payload::from_json(opened).expect("JSON"), plain);

        let erased = Ciphers::from_iter([(key_id, None)]);
        let opened = opened_text(sealed.json(), &spans, &erased, &mut buffer).expect("erased");
        let mut expected = plain.clone();
        for field in ["customer", "subject", "message"] {
            expected[field] = Value::String(domain::ERASED.to_owned());
        }
        assert_eq!(Payload::from_json(opened).expect("JSON"), expected);

        let other = Ciphers::from_iter([(key_id, Some(DataKey::generate().cipher()))]);
        assert!(matches!(
            opened_text(sealed.json(), &spans, &other, &mut buffer),
            Err((_, CipherError::Unopenable))
        ));
    }

    #[test]
    fn a_payload_in_clear_or_malformed_is_told_apart() {
        let mut spans = Vec::new();
        let clear = r#"{"customer":"acme","subject":"s","message":"m"}"#;
        find_sealed(clear, personal_fields("TicketOpened"), 0, &mut spans).expect("clear");
        assert!(spans.is_empty(), "nothing sealed in clear");
        for bad in [
            r#"{"text":{"sealed":"abc"}}"#,
            r#"{"text":{"key":"not an id","sealed":"abc"}}"#,
            r#"["text"]"#,
        ] {
            assert!(
                find_sealed(bad, personal_fields("NoteAdded"), 0, &mut spans).is_err(),
                "{bad}"
            );
        }
    }
}
