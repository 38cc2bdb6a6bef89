//! The list cursor: the sort key of a page's last row, made opaque.
//!
//! Format: base64url (no padding) of
//! `<sort field>.<asc|desc>|<sort key RFC 3339, full precision>|<id>`. The
//! sort is in the cursor so that a cursor used with another sort is refused
//! rather than silently misread. Cursors of the first format
//! (`<created_at>|<id>`, before sorts existed) still read, as `created_at`
//! descending. Clients must treat it as opaque; it only has to round-trip
//! through this module.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use readmodel::{ListSort, ListSortField};
use uuid::Uuid;

/// Why a cursor could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("not base64url")]
    NotBase64,
    #[error("not a cursor this service issued")]
    Malformed,
    #[error("the cursor was made for sort={field}&order={order}; ask with the same sort and order")]
    OtherSort {
        field: &'static str,
        order: &'static str,
    },
}

/// A decoded cursor: the sort it was made for and the last row's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) sort: ListSort,
    pub(crate) key: DateTime<Utc>,
    pub(crate) id: Uuid,
}

pub(crate) fn order_name(descending: bool) -> &'static str {
    if descending { "desc" } else { "asc" }
}

pub(crate) fn encode(sort: ListSort, key: DateTime<Utc>, id: Uuid) -> String {
    let text = format!(
        "{}.{}|{}|{id}",
        sort.field.name(),
        order_name(sort.descending),
        key.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    );
    URL_SAFE_NO_PAD.encode(text)
}

pub(crate) fn decode(cursor: &str) -> Result<Cursor, CursorError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| CursorError::NotBase64)?;
    let text = String::from_utf8(bytes).map_err(|_| CursorError::Malformed)?;
    let parts: Vec<&str> = text.split('|').collect();
    let (sort, key, id) = match parts.as_slice() {
        [key, id] => (ListSort::default(), *key, *id),
        [sort, key, id] => (parse_sort(sort)?, *key, *id),
        _ => return Err(CursorError::Malformed),
    };
    let key = DateTime::parse_from_rfc3339(key)
        .map_err(|_| CursorError::Malformed)?
        .with_timezone(&Utc);
    let id = Uuid::try_parse(id).map_err(|_| CursorError::Malformed)?;
    Ok(Cursor { sort, key, id })
}

fn parse_sort(text: &str) -> Result<ListSort, CursorError> {
    let (field, order) = text.split_once('.').ok_or(CursorError::Malformed)?;
    let field = ListSortField::parse(field).ok_or(CursorError::Malformed)?;
    let descending = match order {
        "desc" => true,
        "asc" => false,
        _ => return Err(CursorError::Malformed),
    };
    Ok(ListSort { field, descending })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_to_the_nanosecond_with_its_sort() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("time");
        let id = Uuid::now_v7();
        for sort in ListSort::all() {
            let cursor = encode(sort, at, id);
            assert!(
                cursor
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "URL-safe without escaping: {cursor}"
            );
            assert_eq!(decode(&cursor), Ok(Cursor { sort, key: at, id }));
        }
    }

    #[test]
    fn a_first_format_cursor_reads_as_newest_first() {
        let id = Uuid::nil();
        let text = format!("2024-01-01T00:00:00Z|{id}");
        let cursor = decode(&URL_SAFE_NO_PAD.encode(text)).expect("a cursor");
        assert_eq!(cursor.sort, ListSort::default());
        assert_eq!(cursor.id, id);
    }

    #[test]
    fn anything_else_is_refused() {
        assert_eq!(decode("not a cursor!"), Err(CursorError::NotBase64));
        assert_eq!(decode("not-a-cursor"), Err(CursorError::Malformed));
        assert_eq!(decode(""), Err(CursorError::Malformed));
        for text in [
            "2024-01-01T00:00:00Z",
            "yesterday|0190a0b2-0000-7000-8000-000000000000",
            "2024-01-01T00:00:00Z|not-a-uuid",
            "title.asc|2024-01-01T00:00:00Z|0190a0b2-0000-7000-8000-000000000000",
            "created_at.up|2024-01-01T00:00:00Z|0190a0b2-0000-7000-8000-000000000000",
            "a|b|c|d",
        ] {
            assert_eq!(
                decode(&URL_SAFE_NO_PAD.encode(text)),
                Err(CursorError::Malformed),
                "{text}"
            );
        }
    }
}
