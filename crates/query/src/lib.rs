//! The query side: reads served from the read models, never from the events.
//!
//! This crate owns the read requests (ticket detail, the paged ticket list, the
//! dashboard) and their validation: page-size bounds and the opaque list cursor.
//! It holds no business rule and computes nothing a projection already computed;
//! every answer comes straight from a [`ViewStore`].
//!
//! The list pages with a keyset cursor rather than an offset: rows are ordered
//! newest first by (`created_at`, `id`), and a cursor names the last row of a
//! page, so a page never repeats or skips a row when tickets are added between
//! two requests. The cursor is opaque to clients (base64url of
//! `created_at|id`): only its round trip is promised.

mod cursor;

use std::sync::Arc;

use domain::Status;
use readmodel::{
    Dashboard, ListQuery, ListSort, TicketDetail, TicketListRow, ViewError, ViewStore,
};
use uuid::Uuid;

pub use cursor::CursorError;

/// The page size when a request names none.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page size a request may ask for.
pub const MAX_LIMIT: u32 = 200;

/// One list request, as a client gave it (validated by [`QueryService::list`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    /// Only tickets with this status.
    pub status: Option<Status>,
    /// Rows per page, `1..=MAX_LIMIT`; [`DEFAULT_LIMIT`] when absent.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

/// One page of list rows, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<TicketListRow>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Why a read did not answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The read model has no such ticket (yet: it may still be projecting).
    #[error("the ticket does not exist")]
    NotFound,
    /// The page size is out of bounds.
    #[error("limit must be between 1 and {max} (got {limit})")]
    InvalidLimit { limit: u32, max: u32 },
    /// The cursor is not one this service handed out.
    #[error("cursor is not valid: {source}")]
    InvalidCursor { source: CursorError },
    /// The view store failed; the read may be retried.
    #[error(transparent)]
    Unavailable(#[from] ViewError),
}

/// Reads the read models.
#[derive(Debug, Clone)]
pub struct QueryService {
    views: Arc<dyn ViewStore>,
}

impl QueryService {
    pub fn new(views: Arc<dyn ViewStore>) -> Self {
        Self { views }
    }

    /// One ticket's detail view.
    pub async fn ticket(&self, id: Uuid) -> Result<TicketDetail, QueryError> {
        self.views.ticket(id).await?.ok_or(QueryError::NotFound)
    }

    /// One page of the ticket list, newest first.
    pub async fn list(&self, params: ListParams) -> Result<Page, QueryError> {
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(QueryError::InvalidLimit {
                limit,
                max: MAX_LIMIT,
            });
        }
        let after = params
            .cursor
            .as_deref()
            .map(cursor::decode)
            .transpose()
            .map_err(|source| QueryError::InvalidCursor { source })?;
        let page_size = limit as usize;
        let query = ListQuery {
            status: params.status,
            after,
            // One row more than asked tells whether another page follows.
            limit: page_size + 1,
            sort: ListSort::NewestFirst,
        };
        let mut items = self.views.list(&query).await?;
        let next_cursor = if items.len() > page_size {
            items.truncate(page_size);
            items
                .last()
                .map(|row| cursor::encode(row.created_at, row.id))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// Ticket counts per status.
    pub async fn dashboard(&self) -> Result<Dashboard, QueryError> {
        Ok(self.views.dashboard().await?)
    }
}
