//! Between domain events and stored payloads.
//!
//! A stored payload is the event's fields as a JSON object; its type name and
//! schema version sit beside it in the envelope. Old schema versions are upcast
//! here, at the store boundary, so `domain::evolve` only ever sees current shapes.

use chrono::{DateTime, Utc};
use domain::Event;
use uuid::Uuid;

use crate::{Metadata, NewEvent, Payload, RecordedEvent};

/// A stored event this code cannot turn into a domain event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("event type `{event_type}` has no schema version {schema_version} in this code")]
    UnknownSchemaVersion {
        event_type: String,
        schema_version: u32,
    },
    #[error("payload of `{event_type}` does not decode: {reason}")]
    BadPayload { event_type: String, reason: String },
}

const KNOWN_TYPES: [&str; 8] = [
    "TicketOpened",
    "TicketTriaged",
    "TicketReopened",
    "TicketClosed",
    "AgentAssigned",
    "AgentUnassigned",
    "NoteAdded",
    "CustomerErased",
];

/// The fields of each event type's payload that hold a customer's personal
/// data (its words): sealed at rest with the customer's key (crate
/// `sealing`), left out of copies such as dead letters, and what an erasure
/// forgets. Other fields, and the envelope, are not personal.
pub fn personal_fields(event_type: &str) -> &'static [&'static str] {
    match event_type {
        "TicketOpened" => &["customer", "message", "subject"],
        "NoteAdded" => &["text"],
        _ => &[],
    }
}

impl NewEvent {
    /// Wraps a domain event in an envelope with a fresh time-ordered id.
    pub fn from_domain(event: &Event, occurred_at: DateTime<Utc>, metadata: Metadata) -> Self {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event.type_name().to_owned(),
            schema_version: event.schema_version(),
            occurred_at,
            data: encode(event),
            metadata,
        }
    }
}

/// The stored payload of a domain event: its fields as a JSON object, without
/// the type (the envelope carries it). Spelled straight from the fields, in
/// the order of their names.
fn encode(event: &Event) -> Payload {
    let json = match event {
        Event::TicketOpened {
            customer,
            subject,
            message,
        } => serde_json::value::to_raw_value(&fields::Opened {
            customer,
            subject,
            message,
        }),
        Event::AgentAssigned { agent } => {
            serde_json::value::to_raw_value(&fields::Assigned { agent })
        }
        Event::NoteAdded { text } => serde_json::value::to_raw_value(&fields::Noted { text }),
        Event::TicketTriaged
        | Event::TicketReopened
        | Event::TicketClosed
        | Event::AgentUnassigned => serde_json::value::to_raw_value(&fields::Empty {}),
        Event::CustomerErased { rewritten } => {
            serde_json::value::to_raw_value(&fields::Erased { rewritten })
        }
    };
    // Structs of strings always serialise.
    Payload::from_raw(json.unwrap_or_else(|e| unreachable!("a payload serialises: {e}")))
}

impl RecordedEvent {
    /// Decodes the payload, upcasting older schema versions first.
    pub fn decode(&self) -> Result<Event, DecodeError> {
        decode(&self.event_type, self.schema_version, &self.data)
    }
}

/// Decodes a stored payload of the given type and schema version.
pub fn decode(event_type: &str, schema_version: u32, data: &Payload) -> Result<Event, DecodeError> {
    if !KNOWN_TYPES.contains(&event_type) {
        return Err(DecodeError::UnknownType(event_type.to_owned()));
    }
    let data = upcast(event_type, schema_version, data)?;
    let bad = |reason: String| DecodeError::BadPayload {
        event_type: event_type.to_owned(),
        reason,
    };
    // Checked first: a derived struct would also read an array of its
    // fields in order, which is not a payload this code wrote.
    if !data.is_object() {
        return Err(bad(format!("expected a JSON object, got {data}")));
    }
    // Each type's fields straight from the stored text: no intermediate
    // value and no type tag added for the tagged enum, on the path every
    // replay takes.
    let json = data.json();
    let decoded = match event_type {
        "TicketOpened" => {
            serde_json::from_str::<fields::Opened<String>>(json).map(|opened| Event::TicketOpened {
                customer: opened.customer,
                subject: opened.subject,
                message: opened.message,
            })
        }
        "AgentAssigned" => serde_json::from_str::<fields::Assigned<String>>(json)
            .map(|a| Event::AgentAssigned { agent: a.agent }),
        "NoteAdded" => serde_json::from_str::<fields::Noted<String>>(json)
            .map(|n| Event::NoteAdded { text: n.text }),
        "TicketTriaged" => Ok(Event::TicketTriaged),
        "TicketReopened" => Ok(Event::TicketReopened),
        "TicketClosed" => Ok(Event::TicketClosed),
        "AgentUnassigned" => Ok(Event::AgentUnassigned),
        "CustomerErased" => {
            serde_json::from_str::<fields::Erased<Vec<u64>>>(json).map(|e| Event::CustomerErased {
                rewritten: e.rewritten,
            })
        }
        other => return Err(DecodeError::UnknownType(other.to_owned())),
    };
    decoded.map_err(|e| bad(e.to_string()))
}

/// The current shapes of the payloads: read as owned strings, written from
/// borrowed ones. Fields are declared in the order of their names, which is
/// the order every payload has been stored in.
mod fields {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub(super) struct Opened<S> {
        pub customer: S,
        pub message: S,
        pub subject: S,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Assigned<S> {
        pub agent: S,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Noted<S> {
        pub text: S,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Erased<V> {
        pub rewritten: V,
    }

    /// The payload of a type without fields.
    #[derive(Serialize)]
    pub(super) struct Empty {}
}

/// Brings a payload up to the current schema version of its type. Every type is
/// at version 1 today; a new version adds an arm here that rewrites the old shape
/// (through [`Payload::to_value`], into an owned payload), while current
/// payloads are only borrowed.
fn upcast<'a>(
    event_type: &str,
    schema_version: u32,
    data: &'a Payload,
) -> Result<std::borrow::Cow<'a, Payload>, DecodeError> {
    match schema_version {
        1 => Ok(std::borrow::Cow::Borrowed(data)),
        _ => Err(DecodeError::UnknownSchemaVersion {
            event_type: event_type.to_owned(),
            schema_version,
        }),
    }
}

/// Convenience for tests and tools: the envelope's metadata left empty.
impl From<&Event> for NewEvent {
    fn from(event: &Event) -> Self {
        NewEvent::from_domain(event, Utc::now(), Metadata::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(event: Event) {
        let new = NewEvent::from_domain(&event, Utc::now(), Metadata::default());
        assert!(new.data.is_object());
        // The payload is the tagged enum's JSON without its tag.
        let mut tagged = serde_json::to_value(&event).unwrap();
        let tag = tagged.as_object_mut().unwrap().remove("type");
        assert_eq!(tag, Some(serde_json::json!(event.type_name())));
        assert_eq!(new.data, tagged, "the type lives in the envelope");
        let decoded = decode(&new.event_type, new.schema_version, &new.data).unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn payloads_are_spelled_as_they_have_always_been_stored() {
        // Keys in the order of their names: the order of the serde_json map
        // this codec used to build, so old and new rows read alike.
        let opened = Event::TicketOpened {
            customer: "c".into(),
            subject: "s".into(),
            message: "m \"quoted\"".into(),
        };
        assert_eq!(
            encode(&opened).json(),
            r#"{"customer":"c","message":"m \"quoted\"","subject":"s"}"#
        );
        assert_eq!(encode(&Event::TicketClosed).json(), "{}");
        assert_eq!(
            encode(&Event::AgentAssigned { agent: "a".into() }).json(),
            r#"{"agent":"a"}"#
        );
    }

    #[test]
    fn every_event_roundtrips_through_the_stored_shape() {
        roundtrip(Event::TicketOpened {
            customer: "c".into(),
            subject: "s".into(),
            message: "m".into(),
        });
        roundtrip(Event::TicketTriaged);
        roundtrip(Event::TicketReopened);
        roundtrip(Event::TicketClosed);
        roundtrip(Event::AgentAssigned { agent: "a".into() });
        roundtrip(Event::AgentUnassigned);
        roundtrip(Event::CustomerErased { rewritten: vec![] });
        roundtrip(Event::CustomerErased {
            rewritten: vec![1, 3],
        });
        roundtrip(Event::NoteAdded { text: "n".into() });
    }

    fn payload(value: serde_json::Value) -> Payload {
        Payload::from_value(&value)
    }

    #[test]
    fn unknown_types_versions_and_payloads_are_named() {
        let empty = payload(serde_json::json!({}));
        assert_eq!(
            decode("TicketMerged", 1, &empty),
            Err(DecodeError::UnknownType("TicketMerged".into()))
        );
        assert!(matches!(
            decode("TicketClosed", 9, &empty),
            Err(DecodeError::UnknownSchemaVersion {
                schema_version: 9,
                ..
            })
        ));
        assert!(matches!(
            decode("NoteAdded", 1, &payload(serde_json::json!({"txt": 1}))),
            Err(DecodeError::BadPayload { .. })
        ));
        // The fields in order but not as an object: refused, not read as a tuple.
        assert!(matches!(
            decode(
                "TicketOpened",
                1,
                &payload(serde_json::json!(["c", "s", "m"]))
            ),
            Err(DecodeError::BadPayload { .. })
        ));
        assert!(matches!(
            decode("TicketClosed", 1, &payload(serde_json::json!(null))),
            Err(DecodeError::BadPayload { .. })
        ));
    }
}
