//! How values are spelled in the database: times and ids as text.
//!
//! Times are RFC 3339 UTC with exactly six fractional digits and a `Z`. The fixed
//! width makes text order equal time order, which the list's keyset paging and
//! its indexes rely on; the cost is that anything finer than a microsecond is
//! dropped on the way in. Ids are hyphenated lowercase UUIDs, whose text order is
//! the UUID's byte order (so `ORDER BY id` agrees with `Uuid`'s `Ord`).

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, Timelike, Utc};
use rusqlite::Row;
use uuid::Uuid;

/// The stored spelling, as a chrono format (what `time` writes by hand).
#[cfg(test)]
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// The stored spelling of a time, truncated to microseconds.
///
/// Written field by field rather than through chrono's format string: every
/// stored row spells one or two times, and interpreting the format string
/// was a measurable share of a projection's CPU. Years outside 0–9999 (which
/// `%Y` spells differently) never occur and are refused on the way back.
pub(crate) fn time(at: DateTime<Utc>) -> String {
    // Written into its final size: `format!` starts small and grows the
    // text as it goes, several allocations for every stored time.
    let mut text = String::with_capacity(TIME_LEN);
    let _ = write!(
        text,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        // A leap second's nanoseconds run past 1e9; keep the spelling's width.
        (at.nanosecond() % 1_000_000_000) / 1_000
    );
    text
}

/// The length of a stored time: `2024-05-01T09:30:00.123456Z`.
const TIME_LEN: usize = 27;

/// Reads the stored spelling back; anything else (another width, offset or
/// separator) is refused, so that every stored time sorts correctly as text.
pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let refused = || format!("time `{text}` is not in the stored format");
    let bytes = text.as_bytes();
    // 2024-05-01T09:30:00.123456Z
    const SEPARATORS: [(usize, u8); 7] = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ];
    if bytes.len() != TIME_LEN
        || SEPARATORS.iter().any(|&(at, byte)| bytes[at] != byte)
        || bytes
            .iter()
            .enumerate()
            .any(|(at, byte)| !SEPARATORS.iter().any(|&(s, _)| s == at) && !byte.is_ascii_digit())
    {
        return Err(refused());
    }
    let number = |from: usize, to: usize| {
        bytes[from..to]
            .iter()
            .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'))
    };
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(number(0, 4)).map_err(|_| refused())?,
        number(5, 7),
        number(8, 10),
    );
    let time = NaiveTime::from_hms_micro_opt(
        number(11, 13),
        number(14, 16),
        number(17, 19),
        number(20, 26),
    );
    match (date, time) {
        (Some(date), Some(time)) => Ok(date.and_time(time).and_utc()),
        _ => Err(refused()),
    }
}

pub(crate) fn id(id: Uuid) -> String {
    // Spelled on the stack and copied once, rather than grown through
    // `Display` (several allocations for every stored id).
    id.hyphenated()
        .encode_lower(&mut Uuid::encode_buffer())
        .to_owned()
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

    /// The hand-written spelling is chrono's `TIME_FORMAT`, and reads back.
    #[test]
    fn the_spelling_is_the_documented_format() {
        let mut at = Utc
            .with_ymd_and_hms(1970, 1, 1, 0, 0, 0)
            .single()
            .expect("a valid time");
        // Steps of a prime number of microseconds cover every field's digits.
        for _ in 0..20_000 {
            at += chrono::Duration::microseconds(7_919_000_003);
            let text = time(at);
            assert_eq!(text, at.format(TIME_FORMAT).to_string());
            assert_eq!(parse_time(&text), Ok(at.trunc_subsecs(6)), "{text}");
        }
        for bad in [
            "2024-13-01T09:30:00.000000Z",
            "2024-02-30T09:30:00.000000Z",
            "2024-05-01T24:00:00.000000Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
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
