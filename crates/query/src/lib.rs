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
use tokio::time::Instant;
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
    /// The checkpoint is the projector's progress (written with the rows it
    /// covers), which is what the read must wait for, whichever process runs
    /// the projector. It is read once, then again only when the store
    /// prompts that it may have moved ([`ViewReader::watch_live_checkpoint`]:
    /// a commit or swap through this store, or one the store saw elsewhere)
    /// or when the watch's recheck interval passes without a prompt (a
    /// projector in another process that the store cannot follow), and once
    /// more at the bound.
    pub async fn wait_for(
        &self,
        projection: Projection,
        min_position: Position,
    ) -> Result<Freshness, QueryError> {
        // A bound too long to represent never passes.
        let deadline = Instant::now().checked_add(self.read_wait_max);
        // Made before the first read, so a commit between that read and the
        // wait still prompts.
        let mut watch = self.views.watch_live_checkpoint(projection);
        loop {
            let checkpoint = self.views.checkpoint(projection, Target::Live).await?;
            let behind = min_position.saturating_sub(checkpoint);
            let now = Instant::now();
            if behind == 0 || deadline.is_some_and(|deadline| now >= deadline) {
                return Ok(Freshness { checkpoint, behind });
            }
            // Whichever comes first of the bound and the recheck, if either
            // is representable.
            let wake = [deadline, now.checked_add(watch.recheck())]
                .into_iter()
                .flatten()
                .min();
            match wake {
                Some(wake) => {
                    tokio::select! {
                        () = watch.moved() => {}
                        () = tokio::time::sleep_until(wake) => {}
                    }
                }
                None => watch.moved().await,
            }
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

#[cfg(test)]
mod tests {
    //! `wait_for` against a real SQLite store, through a wrapper that counts
    //! the checkpoint reads. (This crate does not use `async-trait`, so the
    //! wrapper spells out the boxed futures the role traits are made of.)

    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use readmodel::{
        CHECKPOINT_RECHECK, CheckpointWatch, DashboardDelta, LeaseStore, ProjectionWriter, Rows,
        ViewChanges,
    };
    use store_sqlite::SqliteStore;

    use super::*;

    type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

    /// A store that counts finished `checkpoint` reads and can stretch its
    /// watches' recheck, so that only a prompt can end a wait early.
    #[derive(Debug)]
    struct Counting {
        inner: SqliteStore,
        reads: AtomicUsize,
        recheck: Option<Duration>,
    }

    impl ViewReader for Counting {
        fn ticket<'life0, 'async_trait>(
            &'life0 self,
            id: Uuid,
        ) -> Boxed<'async_trait, Result<Option<TicketDetail>, ViewError>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            self.inner.ticket(id)
        }

        fn list_nonempty<'life0, 'life1, 'async_trait>(
            &'life0 self,
            query: &'life1 ListQuery,
        ) -> Boxed<'async_trait, Result<Vec<TicketListRow>, ViewError>>
        where
            'life0: 'async_trait,
            'life1: 'async_trait,
            Self: 'async_trait,
        {
            self.inner.list_nonempty(query)
        }

        fn dashboard<'life0, 'async_trait>(
            &'life0 self,
        ) -> Boxed<'async_trait, Result<Dashboard, ViewError>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            self.inner.dashboard()
        }

        fn checkpoint<'life0, 'async_trait>(
            &'life0 self,
            projection: Projection,
            target: Target,
        ) -> Boxed<'async_trait, Result<Position, ViewError>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let read = self.inner.checkpoint(projection, target).await;
                self.reads.fetch_add(1, Ordering::SeqCst);
                read
            })
        }

        fn watch_live_checkpoint(&self, projection: Projection) -> Box<dyn CheckpointWatch> {
            let inner = self.inner.watch_live_checkpoint(projection);
            match self.recheck {
                Some(recheck) => Box::new(Stretched { inner, recheck }),
                None => inner,
            }
        }
    }

    /// The store's watch with another recheck interval.
    #[derive(Debug)]
    struct Stretched {
        inner: Box<dyn CheckpointWatch>,
        recheck: Duration,
    }

    impl CheckpointWatch for Stretched {
        fn moved<'life0, 'async_trait>(&'life0 mut self) -> Boxed<'async_trait, ()>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            self.inner.moved()
        }

        fn recheck(&self) -> Duration {
            self.recheck
        }
    }

    fn counting(recheck: Option<Duration>) -> (tempfile::TempDir, Arc<Counting>) {
        let dir = tempfile::tempdir().expect("a temp dir");
        let inner = SqliteStore::open(&dir.path().join("tickets.db")).expect("open a store");
        let store = Arc::new(Counting {
            inner,
            reads: AtomicUsize::new(0),
            recheck,
        });
        (dir, store)
    }

    /// Moves the live List checkpoint from 0 to `to` with an empty batch, as
    /// the projector commits.
    async fn commit_list(store: &SqliteStore, to: Position) {
        let fence = store
            .acquire_lease(
                Projection::List,
                Target::Live,
                "test",
                Duration::from_secs(60),
            )
            .await
            .expect("acquire_lease")
            .expect("the lease is free");
        let changes = ViewChanges {
            projection: Projection::List,
            from: 0,
            to,
            rows: Rows::empty(Projection::List),
            dashboard: DashboardDelta::default(),
        };
        store.commit(&fence, changes).await.expect("commit");
    }

    /// While nothing commits, a waiting read reads the checkpoint once, then
    /// once per recheck interval and once at its bound: a handful of reads,
    /// not one every few milliseconds.
    #[tokio::test]
    async fn a_waiting_read_rereads_only_at_the_recheck_while_nothing_moves() {
        let (_dir, store) = counting(None);
        let wait = Duration::from_millis(600);
        let queries = QueryService::new(store.clone()).with_read_wait_max(wait);
        let freshness = queries
            .wait_for(Projection::List, 5)
            .await
            .expect("wait_for");
        assert_eq!(
            freshness,
            Freshness {
                checkpoint: 0,
                behind: 5
            }
        );
        let reads = store.reads.load(Ordering::SeqCst);
        let most = 2 + wait.as_millis() / CHECKPOINT_RECHECK.as_millis();
        assert!(
            (2..=most as usize).contains(&reads),
            "{reads} checkpoint reads in {wait:?} (at most {most}: the first, one per recheck, the last)"
        );
    }

    /// A read waiting with a recheck and a bound of an hour is answered by a
    /// commit through the store: the commit's prompt wakes it, and it reads
    /// the checkpoint again once.
    #[tokio::test]
    async fn a_commit_through_the_store_wakes_a_waiting_read() {
        let hour = Duration::from_secs(3600);
        let (_dir, store) = counting(Some(hour));
        let queries = QueryService::new(store.clone()).with_read_wait_max(hour);
        let waiting = tokio::spawn(async move { queries.wait_for(Projection::List, 3).await });
        // Let the wait's first read finish first (a commit before it would
        // answer the wait at once, which proves nothing).
        while store.reads.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        commit_list(&store.inner, 3).await;
        let freshness = tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .expect("the commit woke the wait")
            .expect("the waiting task")
            .expect("wait_for");
        assert_eq!(
            freshness,
            Freshness {
                checkpoint: 3,
                behind: 0
            }
        );
        assert_eq!(
            store.reads.load(Ordering::SeqCst),
            2,
            "one read before the commit, one after its prompt"
        );
    }

    /// A read that is already satisfied reads once and does not wait.
    #[tokio::test]
    async fn a_read_already_reached_answers_after_one_read() {
        let (_dir, store) = counting(Some(Duration::from_secs(3600)));
        commit_list(&store.inner, 4).await;
        let queries =
            QueryService::new(store.clone()).with_read_wait_max(Duration::from_secs(3600));
        let freshness = queries
            .wait_for(Projection::List, 4)
            .await
            .expect("wait_for");
        assert_eq!(freshness.behind, 0);
        assert_eq!(store.reads.load(Ordering::SeqCst), 1);
    }
}
