//! The one query-string extractor, [`Query`], and the rules its values share.
//!
//! A handler's query is one struct that both derives `Deserialize` (read
//! here) and `IntoParams` (its `#[utoipa::path]` documents it), so what the
//! document lists is what the handler accepts. The struct is marked
//! `#[serde(deny_unknown_fields)]`; the extractor is strict on top of serde:
//!
//! - an unknown parameter, a repeated one, or one given with an empty value
//!   is refused with a 400 (`/problems/invalid-parameter`) naming it: a typo
//!   or a client's half-filled form never silently changes what is read;
//! - a value that breaks its rule is a 422 (`/problems/validation`) naming
//!   the parameter, as for body fields.
//!
//! Values are deserialised from the decoded text: numbers and booleans are
//! parsed from it, enums match their serde names, and a field can give its
//! own rule with `deserialize_with` (see [`min_position`]).

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use utoipa::IntoParams;

use crate::error::ApiError;

/// The query string, read strictly into `T` (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned + IntoParams,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(
                |_| ApiError::invalid_parameter("query", "the query string does not decode"),
            )?;
        read(pairs).map(Query)
    }
}

/// Reads decoded `(name, value)` pairs into `T`.
fn read<T: DeserializeOwned>(pairs: Vec<(String, String)>) -> Result<T, ApiError> {
    T::deserialize(Pairs {
        pairs: pairs.into_iter(),
        seen: Vec::new(),
        current: None,
    })
    .map_err(Fault::into_api_error)
}

/// Why a query was refused, as serde and the extractor found it.
#[derive(Debug)]
enum Fault {
    Unknown {
        name: String,
        expected: &'static [&'static str],
    },
    Empty(String),
    Repeated(String),
    /// A value breaks its rule; the parameter is named once known.
    Invalid {
        name: Option<String>,
        rule: String,
    },
}

impl Fault {
    fn into_api_error(self) -> ApiError {
        match self {
            Fault::Unknown { name, expected } => ApiError::invalid_parameter(
                name,
                format!("unknown query parameter; expected {}", one_of(expected)),
            ),
            Fault::Empty(name) => ApiError::invalid_parameter(
                name,
                "must not be empty; leave the parameter out instead",
            ),
            Fault::Repeated(name) => {
                ApiError::invalid_parameter(name, "must be given at most once")
            }
            Fault::Invalid { name, rule } => {
                ApiError::validation(name.unwrap_or_else(|| "query".into()), rule)
            }
        }
    }

    /// The fault, naming the parameter whose value caused it.
    fn at(self, parameter: &str) -> Self {
        match self {
            Fault::Invalid { name: None, rule } => Fault::Invalid {
                name: Some(parameter.to_owned()),
                rule,
            },
            other => other,
        }
    }
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names {
        [] => "none".into(),
        [only] => (*only).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Unknown { name, .. } => write!(formatter, "unknown query parameter {name}"),
            Fault::Empty(name) => write!(formatter, "query parameter {name} is empty"),
            Fault::Repeated(name) => write!(formatter, "query parameter {name} is repeated"),
            Fault::Invalid { rule, .. } => formatter.write_str(rule),
        }
    }
}

impl std::error::Error for Fault {}

impl de::Error for Fault {
    fn custom<M: fmt::Display>(message: M) -> Self {
        Fault::Invalid {
            name: None,
            rule: message.to_string(),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Fault::Unknown {
            name: field.to_owned(),
            expected,
        }
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Fault::custom(format!("must be {}", one_of(expected)))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Fault::Repeated(field.to_owned())
    }
}

/// The pairs as a map: unknown names are refused by the struct's
/// `deny_unknown_fields`, empty and repeated ones here.
struct Pairs {
    pairs: std::vec::IntoIter<(String, String)>,
    seen: Vec<String>,
    current: Option<(String, String)>,
}

impl<'de> Deserializer<'de> for Pairs {
    type Error = Fault;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> MapAccess<'de> for Pairs {
    type Error = Fault;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Fault> {
        let Some((name, value)) = self.pairs.next() else {
            return Ok(None);
        };
        let key = seed.deserialize(name.as_str().into_deserializer())?;
        if value.is_empty() {
            return Err(Fault::Empty(name));
        }
        if self.seen.contains(&name) {
            return Err(Fault::Repeated(name));
        }
        self.seen.push(name.clone());
        self.current = Some((name, value));
        Ok(Some(key))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Fault> {
        let (name, value) = self
            .current
            .take()
            .ok_or_else(|| de::Error::custom("a value was asked for before its name"))?;
        seed.deserialize(Value(value))
            .map_err(|fault| fault.at(&name))
    }
}

/// One decoded value.
struct Value(String);

macro_rules! parse_value {
    ($($method:ident => $visit:ident: $type:ty),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
                match self.0.parse::<$type>() {
                    Ok(value) => visitor.$visit(value),
                    Err(_) => Err(de::Error::invalid_value(de::Unexpected::Str(&self.0), &visitor)),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Value {
    type Error = Fault;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        visitor.visit_string(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fault> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Fault> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Fault> {
        self.0
            .into_deserializer()
            .deserialize_enum(name, variants, visitor)
    }

    parse_value! {
        deserialize_bool => visit_bool: bool,
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_f32 => visit_f32: f32,
        deserialize_f64 => visit_f64: f64,
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// A value read by `parse`, or refused with `rule`: the body of a field's
/// `deserialize_with`, for a rule serde's types do not say well.
pub(crate) fn parsed<'de, D, T>(
    deserializer: D,
    rule: impl fmt::Display,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    parse(&text)
        .map(Some)
        .ok_or_else(|| de::Error::custom(rule))
}

/// Digits only (no sign, no spaces), within `u64`.
pub(crate) fn whole_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `min_position`: a store position, as in `X-Event-Position`.
pub(crate) fn min_position<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    parsed(
        deserializer,
        "must be a non-negative whole number (an `X-Event-Position` from a write)",
        whole_number,
    )
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, PartialEq, Deserialize, IntoParams)]
    #[serde(deny_unknown_fields)]
    #[into_params(parameter_in = Query)]
    struct Sample {
        name: Option<String>,
        count: Option<u32>,
        #[serde(default, deserialize_with = "min_position")]
        min_position: Option<u64>,
    }

    fn sample(pairs: &[(&str, &str)]) -> Result<Sample, ApiError> {
        read(
            pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
        )
    }

    fn refusal(pairs: &[(&str, &str)]) -> (u16, String, String) {
        match sample(pairs) {
            Ok(read) => panic!("{pairs:?} was accepted as {read:?}"),
            Err(ApiError::InvalidParameter { field, detail }) => (400, field, detail),
            Err(ApiError::Validation { field, detail }) => (422, field, detail),
            Err(other) => panic!("{pairs:?}: {other:?}"),
        }
    }

    #[test]
    fn typed_values_are_read() {
        assert_eq!(sample(&[]).ok(), Some(Sample::default()));
        assert_eq!(
            sample(&[("count", "3"), ("name", "a b"), ("min_position", "7")]).ok(),
            Some(Sample {
                name: Some("a b".into()),
                count: Some(3),
                min_position: Some(7),
            })
        );
    }

    #[test]
    fn unknown_empty_and_repeated_parameters_are_400s_naming_them() {
        let (status, field, detail) = refusal(&[("colour", "red")]);
        assert_eq!((status, field.as_str()), (400, "colour"));
        assert!(
            detail.contains("expected name, count or min_position"),
            "{detail}"
        );
        assert_eq!(refusal(&[("name", "")]).0, 400);
        assert_eq!(refusal(&[("name", "")]).1, "name");
        assert_eq!(refusal(&[("count", "1"), ("count", "1")]).1, "count");
        assert_eq!(refusal(&[("count", "1"), ("count", "1")]).0, 400);
        // Unknown wins over empty: the name is the first thing wrong.
        assert!(refusal(&[("colour", "")]).2.contains("unknown"));
    }

    #[test]
    fn a_bad_value_is_a_422_naming_its_parameter() {
        let (status, field, _) = refusal(&[("count", "ten")]);
        assert_eq!((status, field.as_str()), (422, "count"));
        let (status, field, detail) = refusal(&[("min_position", "-1")]);
        assert_eq!((status, field.as_str()), (422, "min_position"));
        assert!(detail.contains("X-Event-Position"), "{detail}");
    }

    #[test]
    fn lists_of_names() {
        assert_eq!(one_of(&["a"]), "a");
        assert_eq!(one_of(&["a", "b"]), "a or b");
        assert_eq!(one_of(&["a", "b", "c"]), "a, b or c");
    }

    #[test]
    fn whole_numbers() {
        assert_eq!(whole_number("42"), Some(42));
        assert_eq!(whole_number("0"), Some(0));
        for bad in ["", "-1", "+3", "4.2", "1e3", " 1", "18446744073709551616"] {
            assert_eq!(whole_number(bad), None, "{bad}");
        }
    }
}
