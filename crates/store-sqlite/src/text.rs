//! How values are spelled in the database: times and ids as text.
//!
//! Times are RFC 3339 UTC with exactly six fractional digits and a `Z`. The fixed
//! width makes text order equal time order, which the list's keyset paging and
//! its indexes rely on; the cost is that anything finer than a microsecond is
//! dropped on the way in. Ids are hyphenated lowercase UUIDs, whose text order is
//! the UUID's byte order (so `ORDER BY id` agrees with `Uuid`'s `Ord`).

use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::Row;
use uuid::Uuid;

const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// The stored spelling of a time, truncated to microseconds.
pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.format(TIME_FORMAT).to_string()
}

pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let parsed = NaiveDateTime::parse_from_str(text, TIME_FORMAT)
        .map_err(|e| format!("time `{text}` is not in the stored format: {e}"))?
        .and_utc();
    // The parser is lenient about widths; insist on the exact spelling so that
    // every stored time sorts correctly as text.
    if time(parsed) != text {
        return Err(format!("time `{text}` is not in the stored format"));
    }
    Ok(parsed)
}

pub(crate) fn id(id: Uuid) -> String {
    id.hyphenated().to_string()
}

pub(crate) fn parse_id(text: &str) -> Result<Uuid, String> {
    Uuid::try_parse(text).map_err(|e| format!("id `{text}` is not a UUID: {e}"))
}

/// Reads a column that holds a count or a position. SQLite integers are
/// signed; a negative one here is bad data, reported as rusqlite reports any
/// out-of-range integer.
pub(crate) fn get_unsigned(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(index)?;
    u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{SubsecRound, TimeZone};

    #[test]
    fn times_are_fixed_width_microseconds_and_roundtrip() {
        let at = Utc
            .with_ymd_and_hms(2024, 5, 1, 9, 30, 0)
            .single()
            .expect("a valid time")
            + chrono::Duration::nanoseconds(123_456_789);
        let text = time(at);
        assert_eq!(text, "2024-05-01T09:30:00.123456Z");
        assert_eq!(parse_time(&text), Ok(at.trunc_subsecs(6)));
        let whole = at.trunc_subsecs(0);
        assert_eq!(time(whole), "2024-05-01T09:30:00.000000Z");
    }

    #[test]
    fn text_order_is_time_order() {
        let early = Utc
            .timestamp_opt(1_000, 900_000_000)
            .single()
            .expect("time");
        let late = Utc.timestamp_opt(1_001, 0).single().expect("time");
        assert!(time(early) < time(late));
    }

    #[test]
    fn other_spellings_are_refused() {
        for text in [
            "2024-05-01T09:30:00Z",
            "2024-05-01T09:30:00.123Z",
            "2024-05-01T09:30:00.123456+00:00",
            "2024-05-01 09:30:00.123456Z",
        ] {
            assert!(parse_time(text).is_err(), "{text}");
        }
    }

    #[test]
    fn ids_are_lowercase_hyphenated_in_byte_order() {
        let a = Uuid::from_u128(0x0f00_0000_0000_0000_0000_0000_0000_00ab);
        let b = Uuid::from_u128(0xa000_0000_0000_0000_0000_0000_0000_0000);
        assert_eq!(id(a), "0f000000-0000-0000-0000-0000000000ab");
        assert_eq!(a < b, id(a) < id(b));
        assert_eq!(parse_id(&id(a)), Ok(a));
    }
}
