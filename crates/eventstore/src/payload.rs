//! An event's payload, kept as the JSON text the store holds: spelled once
//! from the domain event on the way in, decoded once on the way out.
//!
//! A replay reads millions of payloads and decodes each exactly once, into a
//! domain event. Building a `serde_json::Value` on the way (a map, its keys,
//! its strings), only to walk and drop it, was the largest cost of a read
//! after SQLite's own. A [`Payload`] is one checked string instead; the codec
//! decodes the domain event straight from it.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One event's payload: valid JSON text (an object, for every payload this
/// code writes), as stored. Two payloads are equal when they hold the same
/// JSON value, however their text is spaced or their keys ordered.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Payload(Box<RawValue>);

impl Payload {
    /// Takes JSON text as it is, after checking that it is JSON.
    pub fn from_json(text: String) -> Result<Payload, serde_json::Error> {
        RawValue::from_string(text).map(Payload)
    }

    /// The payload a serialiser spelled.
    pub(crate) fn from_raw(raw: Box<RawValue>) -> Payload {
        Payload(raw)
    }

    /// The payload that spells `value`.
    pub fn from_value(value: &serde_json::Value) -> Payload {
        let raw = serde_json::value::to_raw_value(value)
            // A `Value` always serialises: its map keys are strings.
            .unwrap_or_else(|e| unreachable!("a JSON value serialises: {e}"));
        Payload(raw)
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// Parses the payload into a value, for callers that inspect or rewrite
    /// it (an upcast, a report); decoding a domain event does not need this.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.json())
            .unwrap_or_else(|e| unreachable!("a payload holds checked JSON: {e}"))
    }

    /// Whether the JSON is an object (and not, say, an array of its fields).
    pub fn is_object(&self) -> bool {
        // `RawValue` keeps no whitespace around the value it checked.
        self.json().starts_with('{')
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json() || self.to_value() == other.to_value()
    }
}

impl PartialEq<serde_json::Value> for Payload {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.to_value() == *other
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({})", self.json())
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_json_is_a_payload() {
        assert!(Payload::from_json("{\"text\":".to_owned()).is_err());
        assert!(Payload::from_json(String::new()).is_err());
        let payload = Payload::from_json("{\"text\":\"n\"}".to_owned()).unwrap();
        assert_eq!(payload.json(), "{\"text\":\"n\"}");
        assert_eq!(payload.to_value(), json!({"text": "n"}));
    }

    #[test]
    fn equality_is_of_the_value_not_the_spelling() {
        let spaced = Payload::from_json(" { \"b\": 1, \"a\": [true] } ".to_owned());
        let spaced = spaced.unwrap();
        let compact = Payload::from_value(&json!({"a": [true], "b": 1}));
        assert_eq!(spaced, compact);
        assert_eq!(spaced, json!({"a": [true], "b": 1}));
        assert_ne!(compact, Payload::from_value(&json!({"a": [false], "b": 1})));
        assert_ne!(compact, json!({"a": [true]}));
    }

    #[test]
    fn objects_are_told_from_other_json() {
        assert!(Payload::from_json(" {}".to_owned()).unwrap().is_object());
        assert!(
            !Payload::from_json("[\"c\"]".to_owned())
                .unwrap()
                .is_object()
        );
        assert!(!Payload::from_json("null".to_owned()).unwrap().is_object());
        assert!(!Payload::from_json("\"{\"".to_owned()).unwrap().is_object());
    }

    #[test]
    fn it_serialises_as_the_json_it_holds() {
        let payload = Payload::from_value(&json!({"agent": "ada"}));
        let outer = json!({"data": payload});
        assert_eq!(outer, json!({"data": {"agent": "ada"}}));
        assert_eq!(
            serde_json::to_string(&payload).unwrap(),
            "{\"agent\":\"ada\"}"
        );
    }
}
