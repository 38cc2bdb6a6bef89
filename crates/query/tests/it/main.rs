//! The query side against a real SQLite store, filled through the write side
//! and the projector.

mod feed;
mod history;

use std::sync::Arc;

use domain::{ChangeTicket, OpenTicket, Status};
use projector::{Projector, ProjectorConfig};
use query::{DEFAULT_LIMIT, ListParams, MAX_LIMIT, QueryError, QueryService};
use readmodel::{Dashboard, TicketDetail};
use store_sqlite::SqliteStore;
use uuid::Uuid;
use write::{CommandContext, CommandService};

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    commands: CommandService,
    queries: QueryService,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            Arc::new(SqliteStore::open(&dir.path().join("tickets.db")).expect("open store"));
        Self {
            _dir: dir,
            commands: CommandService::new(store.clone()),
            queries: QueryService::new(store.clone()),
            store,
        }
    }

    /// Opens `n` tickets, oldest first.
    async fn open_many(&self, n: usize) -> Vec<TicketDetail> {
        let mut tickets = Vec::new();
        for i in 0..n {
            let command =
                OpenTicket::new(&format!("customer {i}"), "subject", "message").expect("open");
            let outcome = self
                .commands
                .open(command, CommandContext::default())
                .await
                .expect("open");
            tickets.push(outcome.ticket);
        }
        tickets
    }

    async fn set_status(&self, id: Uuid, status: Status) -> TicketDetail {
        let command = ChangeTicket::new(Some(status), None, None).expect("change");
        self.commands
            .change(id, command, CommandContext::default(), None)
            .await
            .expect("change")
            .ticket
    }

    async fn catch_up(&self) {
        Projector::new(
            self.store.clone(),
            self.store.clone(),
            ProjectorConfig::default(),
        )
        .catch_up()
        .await
        .expect("catch up");
    }

    /// Every row, following `next_cursor`; also returns the page sizes seen.
    async fn all_pages(&self, status: Option<Status>, limit: u32) -> (Vec<Uuid>, Vec<usize>) {
        let mut ids = Vec::new();
        let mut sizes = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .queries
                .list(ListParams {
                    status,
                    limit: Some(limit),
                    cursor,
                    ..ListParams::default()
                })
                .await
                .expect("page");
            sizes.push(page.items.len());
            for row in &page.items {
                if let Some(status) = status {
                    assert_eq!(row.status, status);
                }
                ids.push(row.id);
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return (ids, sizes),
            }
        }
    }
}

fn newest_first(tickets: &[TicketDetail]) -> Vec<Uuid> {
    tickets.iter().rev().map(|t| t.id).collect()
}

#[tokio::test]
async fn paging_returns_every_row_once_newest_first() {
    let fx = Fixture::new();
    let tickets = fx.open_many(7).await;
    fx.catch_up().await;

    let (ids, sizes) = fx.all_pages(None, 3).await;
    assert_eq!(ids, newest_first(&tickets));
    assert_eq!(sizes, [3, 3, 1]);

    let (ids, sizes) = fx.all_pages(None, 7).await;
    assert_eq!(ids, newest_first(&tickets));
    assert_eq!(sizes, [7], "a page that holds the rest has no next cursor");

    let (ids, sizes) = fx.all_pages(None, 1).await;
    assert_eq!(ids, newest_first(&tickets));
    assert_eq!(sizes, [1; 7]);
}

#[tokio::test]
async fn a_cursor_keeps_its_place_when_tickets_are_added() {
    let fx = Fixture::new();
    let tickets = fx.open_many(4).await;
    fx.catch_up().await;
    let first = fx
        .queries
        .list(ListParams {
            limit: Some(2),
            ..ListParams::default()
        })
        .await
        .expect("first page");
    fx.open_many(3).await;
    fx.catch_up().await;

    let second = fx
        .queries
        .list(ListParams {
            limit: Some(2),
            cursor: first.next_cursor,
            ..ListParams::default()
        })
        .await
        .expect("second page");
    let ids: Vec<Uuid> = second.items.iter().map(|row| row.id).collect();
    assert_eq!(ids, [tickets[1].id, tickets[0].id]);
    assert_eq!(second.next_cursor, None);
}

#[tokio::test]
async fn the_status_filter_pages_too() {
    let fx = Fixture::new();
    let tickets = fx.open_many(6).await;
    for ticket in [&tickets[0], &tickets[2], &tickets[5]] {
        fx.set_status(ticket.id, Status::Triaged).await;
    }
    fx.set_status(tickets[1].id, Status::Closed).await;
    fx.catch_up().await;

    let (triaged, sizes) = fx.all_pages(Some(Status::Triaged), 2).await;
    assert_eq!(triaged, [tickets[5].id, tickets[2].id, tickets[0].id]);
    assert_eq!(sizes, [2, 1]);
    let (closed, _) = fx.all_pages(Some(Status::Closed), 50).await;
    assert_eq!(closed, [tickets[1].id]);
    let (open, _) = fx.all_pages(Some(Status::Open), 50).await;
    assert_eq!(open, [tickets[4].id, tickets[3].id]);
}

#[tokio::test]
async fn limits_default_to_50_and_stay_within_1_to_200() {
    let fx = Fixture::new();
    let tickets = fx.open_many(DEFAULT_LIMIT as usize + 1).await;
    fx.catch_up().await;

    let page = fx
        .queries
        .list(ListParams::default())
        .await
        .expect("default");
    assert_eq!(page.items.len(), DEFAULT_LIMIT as usize);
    assert!(page.next_cursor.is_some());
    let page = fx
        .queries
        .list(ListParams {
            limit: Some(MAX_LIMIT),
            ..ListParams::default()
        })
        .await
        .expect("max");
    assert_eq!(page.items.len(), tickets.len());
    assert_eq!(page.next_cursor, None);

    for limit in [0, MAX_LIMIT + 1, u32::MAX] {
        let result = fx
            .queries
            .list(ListParams {
                limit: Some(limit),
                ..ListParams::default()
            })
            .await;
        assert!(
            matches!(result, Err(QueryError::InvalidLimit { limit: l, max: MAX_LIMIT }) if l == limit),
            "{limit}: {result:?}"
        );
    }
}

#[tokio::test]
async fn a_cursor_that_does_not_decode_is_invalid() {
    let fx = Fixture::new();
    for cursor in ["not-a-cursor", "%%%", "MjAyNA"] {
        let result = fx
            .queries
            .list(ListParams {
                cursor: Some(cursor.into()),
                ..ListParams::default()
            })
            .await;
        assert!(
            matches!(result, Err(QueryError::InvalidCursor { .. })),
            "{cursor}: {result:?}"
        );
    }
}

#[tokio::test]
async fn a_ticket_reads_as_written_and_an_unknown_one_is_not_found() {
    let fx = Fixture::new();
    let tickets = fx.open_many(1).await;
    let written = fx.set_status(tickets[0].id, Status::Triaged).await;
    fx.catch_up().await;

    assert_eq!(
        fx.queries.ticket(written.id).await.expect("ticket"),
        written
    );
    let missing = fx.queries.ticket(Uuid::now_v7()).await;
    assert!(matches!(missing, Err(QueryError::NotFound)), "{missing:?}");
}

#[tokio::test]
async fn the_dashboard_counts_tickets_per_status() {
    let fx = Fixture::new();
    assert_eq!(
        fx.queries.dashboard().await.expect("empty"),
        Dashboard::default()
    );
    let tickets = fx.open_many(4).await;
    fx.set_status(tickets[0].id, Status::Triaged).await;
    fx.set_status(tickets[1].id, Status::Closed).await;
    fx.catch_up().await;

    let dashboard = fx.queries.dashboard().await.expect("dashboard");
    assert_eq!(
        dashboard,
        Dashboard {
            open: 2,
            triaged: 1,
            closed: 1
        }
    );
    assert_eq!(dashboard.total(), 4);
}
