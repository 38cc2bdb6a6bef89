//! The query side: every read the service answers.
//!
//! Three services, one concern each:
//! - [`QueryService`]: the read requests served from the read models (ticket
//!   detail, the paged ticket list, the dashboard) and their validation:
//!   page-size bounds and the opaque list cursor. Every answer comes straight
//!   from a [`ViewReader`].
//! - [`History`]: a ticket's raw events and the ticket as it was at a past
//!   version or time, read from the event log (the read models keep only the
//!   present).
//! - [`ChangeFeed`]: the list view's changes, which follows the List
//!   projection's checkpoint and reads the events it has applied.
//!
//! It holds no business rule and computes nothing a projection already
//! computed; the only fold here is the projector's own ([`readmodel::project`]).
//!
//! The list pages with a keyset cursor rather than an offset: rows are ordered
//! by (sort key, `id`) (`created_at` or `updated_at`, either direction; newest
//! created first by default), and a cursor names the last row of a page, so a
//! page never repeats or skips a row that did not change between two requests.
//! A row that changes while a client pages may move across the cursor when the
//! list is sorted by `updated_at` (then it shows up again, or not at all): that
//! is the row's new place, not a paging fault. The cursor is opaque to clients
//! and carries the sort it was made for: only its round trip is promised.

mod cursor;
mod feed;
mod history;

use std::sync::Arc;
use std::time::Duration;

use domain::Status;
use eventstore::Position;
use readmodel::{
    Dashboard, ListQuery, ListSort, Projection, Target, TicketDetail, TicketListRow, ViewError,
    ViewReader,
};
use uuid::Uuid;

pub use cursor::CursorError;
pub use feed::{
    ChangeFeed, DEFAULT_FEED_BATCH, DEFAULT_FEED_POLL, FeedError, ListChange, Subscription,
};
pub use history::{AsOf, History, HistoryError};

/// The page size when a request names none.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page size a request may ask for.
pub const MAX_LIMIT: u32 = 200;

/// How long a read with a minimum position waits for its projection when the
/// service is not told otherwise.
pub const DEFAULT_READ_WAIT_MAX: Duration = Duration::from_secs(2);

/// How often a waiting read looks at its projection's checkpoint.
const READ_WAIT_POLL: Duration = Duration::from_millis(5);

/// How far the projection serving a read had got when the read answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// The live checkpoint of the projection: the last event it reflects.
    pub checkpoint: Position,
    /// How many positions short of the asked minimum it still was (0 when it
    /// reached it).
    pub behind: u64,
}

impl Freshness {
    /// The projection had not reached the asked position within the bound.
    pub fn is_stale(&self) -> bool {
        self.behind > 0
    }
}

/// One list request, as a client gave it (validated by [`QueryService::list`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    /// Only tickets with this status.
    pub status: Option<Status>,
    /// Only tickets assigned to this agent (exact match).
    pub agent: Option<String>,
    /// Only tickets of this customer (exact match).
    pub customer: Option<String>,
    /// The order of the rows; newest created first by default.
    pub sort: ListSort,
    /// Rows per page, `1..=MAX_LIMIT`; [`DEFAULT_LIMIT`] when absent.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

/// One page of list rows, in the asked order.
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
    views: Arc<dyn ViewReader>,
    read_wait_max: Duration,
}

impl QueryService {
    pub fn new(views: Arc<dyn ViewReader>) -> Self {
        Self {
            views,
            read_wait_max: DEFAULT_READ_WAIT_MAX,
        }
    }

    /// Sets how long [`QueryService::wait_for`] waits at most.
    pub fn with_read_wait_max(mut self, read_wait_max: Duration) -> Self {
        self.read_wait_max = read_wait_max;
        self
    }

    /// Waits until the live slot of `projection` reflects every event up to
    /// `min_position`, or the configured bound passes, and says how far it
    /// got. Past the bound this is not an error: the caller answers with what
    /// the read model holds and tells its client the data is stale.
    ///
    /// It polls the checkpoint every few milliseconds: the checkpoint is the
    /// projector's progress (written with the rows it covers), which is what
    /// the read must wait for, whichever process runs the projector.
    pub async fn wait_for(
        &self,
        projection: Projection,
        min_position: Position,
    ) -> Result<Freshness, QueryError> {
        let deadline = tokio::time::Instant::now() + self.read_wait_max;
        loop {
            let checkpoint = self.views.checkpoint(projection, Target::Live).await?;
            let behind = min_position.saturating_sub(checkpoint);
            if behind == 0 || tokio::time::Instant::now() >= deadline {
                return Ok(Freshness { checkpoint, behind });
            }
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + READ_WAIT_POLL))
                .await;
        }
    }

    /// One ticket's detail view.
    pub async fn ticket(&self, id: Uuid) -> Result<TicketDetail, QueryError> {
        self.views.ticket(id).await?.ok_or(QueryError::NotFound)
    }

    /// One page of the ticket list, filtered and in the asked order.
    pub async fn list(&self, params: ListParams) -> Result<Page, QueryError> {
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(QueryError::InvalidLimit {
                limit,
                max: MAX_LIMIT,
            });
        }
        let sort = params.sort;
        let after = params
            .cursor
            .as_deref()
            .map(cursor::decode)
            .transpose()
            .map_err(|source| QueryError::InvalidCursor { source })?;
        let after = match after {
            Some(cursor) if cursor.sort != sort => {
                return Err(QueryError::InvalidCursor {
                    source: CursorError::OtherSort {
                        field: cursor.sort.field.name(),
                        order: cursor::order_name(cursor.sort.descending),
                    },
                });
            }
            Some(cursor) => Some((cursor.key, cursor.id)),
            None => None,
        };
        let page_size = limit as usize;
        let query = ListQuery {
            status: params.status,
            agent: params.agent,
            customer: params.customer,
            after,
            // One row more than asked tells whether another page follows.
            limit: page_size + 1,
            sort,
        };
        let mut items = self.views.list(&query).await?;
        let next_cursor = if items.len() > page_size {
            items.truncate(page_size);
            items
                .last()
                .map(|row| cursor::encode(sort, sort.key(row), row.id))
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
