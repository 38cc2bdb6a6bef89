//! The list cursor: the sort key of a page's last row, made opaque.
//!
//! Format: base64url (no padding) of `<created_at RFC 3339, full precision>|<id>`.
//! Clients must treat it as opaque; it only has to round-trip through this module.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// Why a cursor could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("not base64url")]
    NotBase64,
    #[error("not a cursor this service issued")]
    Malformed,
}

pub(crate) fn encode(created_at: DateTime<Utc>, id: Uuid) -> String {
    let key = format!(
        "{}|{id}",
        created_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    );
    URL_SAFE_NO_PAD.encode(key)
}

pub(crate) fn decode(cursor: &str) -> Result<(DateTime<Utc>, Uuid), CursorError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| CursorError::NotBase64)?;
    let text = String::from_utf8(bytes).map_err(|_| CursorError::Malformed)?;
    let (created_at, id) = text.split_once('|').ok_or(CursorError::Malformed)?;
    let created_at = DateTime::parse_from_rfc3339(created_at)
        .map_err(|_| CursorError::Malformed)?
        .with_timezone(&Utc);
    let id = Uuid::try_parse(id).map_err(|_| CursorError::Malformed)?;
    Ok((created_at, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_to_the_nanosecond() {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("time");
        let id = Uuid::now_v7();
        let cursor = encode(at, id);
        assert!(
            cursor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "URL-safe without escaping: {cursor}"
        );
        assert_eq!(decode(&cursor), Ok((at, id)));
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
        ] {
            assert_eq!(
                decode(&URL_SAFE_NO_PAD.encode(text)),
                Err(CursorError::Malformed),
                "{text}"
            );
        }
    }
}
