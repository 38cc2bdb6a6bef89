//! The view store's cases: the checkpointed commit, the version guard, lookups
//! and the list's order, filter and keyset paging.
//!
//! Views are built the way the projector builds them: real events appended to
//! the event store, read back and folded with `readmodel::fold_batch`.

use std::collections::HashMap;

use domain::{Event, Status};
use eventstore::{EventStore, Position};
use readmodel::{
    Dashboard, DashboardDelta, ListQuery, ListSort, TicketDetail, TicketListRow, ViewChanges,
    ViewError, ViewStore, fold_batch,
};
use uuid::Uuid;

use crate::fixtures::{
    append, at, catch_up, envelopes, head, kept, note, opened, read_all, read_stream,
};

async fn ticket(views: &dyn ViewStore, id: Uuid) -> Option<TicketDetail> {
    views.ticket(id).await.expect("ticket")
}

async fn dashboard(views: &dyn ViewStore) -> Dashboard {
    views.dashboard().await.expect("dashboard")
}

async fn checkpoint(views: &dyn ViewStore) -> Position {
    views.checkpoint().await.expect("checkpoint")
}

fn query(status: Option<Status>, after: Option<&TicketListRow>, limit: usize) -> ListQuery {
    ListQuery {
        status,
        after: after.map(|row| (row.created_at, row.id)),
        limit,
        sort: ListSort::NewestFirst,
    }
}

async fn list(views: &dyn ViewStore, query: &ListQuery) -> Vec<TicketListRow> {
    views.list(query).await.expect("list")
}

/// Every row of the list, first page only (the cases keep fewer than 1000).
async fn list_all(views: &dyn ViewStore, status: Option<Status>) -> Vec<TicketListRow> {
    list(views, &query(status, None, 1_000)).await
}

fn ids(rows: &[TicketListRow]) -> Vec<Uuid> {
    rows.iter().map(|row| row.id).collect()
}

/// The detail view the fold makes of a ticket's whole stream.
async fn folded(events: &dyn EventStore, id: Uuid) -> TicketDetail {
    let stream = read_stream(events, id).await;
    let mut changes = fold_batch(0, HashMap::new(), &stream).expect("the stream folds");
    assert_eq!(changes.tickets.len(), 1, "one ticket folded");
    changes.tickets.remove(0)
}

/// Three tickets that end open, triaged and closed; A's history is long enough
/// to span several small batches.
struct Desk {
    a: Uuid,
    b: Uuid,
    c: Uuid,
}

async fn open_desk(events: &dyn EventStore) -> Desk {
    let desk = Desk {
        a: Uuid::now_v7(),
        b: Uuid::now_v7(),
        c: Uuid::now_v7(),
    };
    let long_note = format!("{}\n\nend", "a long note that goes on ".repeat(10));
    append(
        events,
        desk.a,
        0,
        envelopes(&[opened("a"), Event::TicketTriaged], 0),
    )
    .await;
    append(events, desk.b, 0, envelopes(&[opened("b")], 1)).await;
    append(
        events,
        desk.a,
        2,
        envelopes(
            &[
                Event::AgentAssigned {
                    agent: "ana".into(),
                },
                note("first"),
                note(&long_note),
            ],
            2,
        ),
    )
    .await;
    append(
        events,
        desk.c,
        0,
        envelopes(&[opened("c"), Event::TicketClosed], 5),
    )
    .await;
    desk
}

/// An empty backend: head and checkpoint at 0, no rows, zero counts.
pub async fn empty_store_starts_at_zero(events: &dyn EventStore, views: &dyn ViewStore) {
    assert_eq!(head(events).await, 0, "an empty event store's head is 0");
    assert!(
        read_all(events, 0, 10).await.is_empty(),
        "an empty event store has no events"
    );
    assert_eq!(checkpoint(views).await, 0, "the checkpoint starts at 0");
    assert_eq!(
        dashboard(views).await,
        Dashboard::default(),
        "the counts start at 0"
    );
    assert!(
        list_all(views, None).await.is_empty(),
        "the list starts empty"
    );
    assert_eq!(ticket(views, Uuid::now_v7()).await, None);
    let loaded = views
        .load_tickets(&[Uuid::now_v7()])
        .await
        .expect("load_tickets");
    assert!(loaded.is_empty(), "no ticket views yet");
}

/// Commits write the detail and list rows and the dashboard, and move the
/// checkpoint; the stored views are the fold of each ticket's events, and
/// `load_tickets` returns what was committed.
pub async fn commit_writes_views_and_moves_checkpoint(
    events: &dyn EventStore,
    views: &dyn ViewStore,
) {
    let desk = open_desk(events).await;
    let reached = catch_up(events, views, 3).await;
    assert_eq!(
        reached,
        head(events).await,
        "the views caught up with the head"
    );
    assert_eq!(
        checkpoint(views).await,
        reached,
        "the checkpoint moved with each commit"
    );

    for id in [desk.a, desk.b, desk.c] {
        let expected = folded(events, id).await;
        assert_eq!(
            ticket(views, id).await.as_ref(),
            Some(&expected),
            "detail of {id}"
        );
    }
    let a = ticket(views, desk.a).await.expect("ticket a");
    assert_eq!(
        (a.status, a.agent.as_deref(), a.notes.len(), a.version),
        (Status::Triaged, Some("ana"), 2, 5),
        "ticket a folded across batches"
    );
    assert!(kept(a.created_at, at(0)), "created_at {}", a.created_at);
    assert!(kept(a.updated_at, at(4)), "updated_at {}", a.updated_at);
    assert!(
        kept(a.notes[0].added_at, at(3)),
        "note times are kept to the millisecond at least: {}",
        a.notes[0].added_at
    );

    assert_eq!(
        dashboard(views).await,
        Dashboard {
            open: 1,
            triaged: 1,
            closed: 1
        }
    );
    let rows = list_all(views, None).await;
    assert_eq!(rows.len(), 3, "one list row per ticket");
    for row in &rows {
        let detail = ticket(views, row.id).await.expect("a detail for every row");
        assert_eq!(row, &TicketListRow::from(&detail), "list row of {}", row.id);
    }
    let row_a = rows.iter().find(|row| row.id == desk.a).expect("row a");
    assert!(row_a.has_note);
    assert!(
        row_a
            .last_note_preview
            .as_deref()
            .is_some_and(|p| p.ends_with('…'))
    );

    let unknown = Uuid::now_v7();
    let loaded = views
        .load_tickets(&[desk.a, unknown, desk.b])
        .await
        .expect("load_tickets");
    assert_eq!(loaded.len(), 2, "unknown tickets are absent");
    assert_eq!(loaded.get(&desk.a), ticket(views, desk.a).await.as_ref());
    assert_eq!(loaded.get(&desk.b), ticket(views, desk.b).await.as_ref());
    assert!(
        views
            .load_tickets(&[])
            .await
            .expect("load_tickets")
            .is_empty()
    );
}

/// A commit whose `from` is not the stored checkpoint answers `CheckpointMoved`
/// and changes nothing: rows, counts and checkpoint stay as they were.
pub async fn stale_commit_changes_nothing(events: &dyn EventStore, views: &dyn ViewStore) {
    let desk = open_desk(events).await;
    let reached = catch_up(events, views, 100).await;
    let rows_before = list_all(views, None).await;
    let dashboard_before = dashboard(views).await;
    let a_before = ticket(views, desk.a).await.expect("ticket a");

    // A batch folded by a projector that read after an older checkpoint: it
    // carries a newer ticket a, a brand-new ticket and a dashboard move.
    let mut newer_a = a_before.clone();
    newer_a.status = Status::Closed;
    newer_a.version += 10;
    let mut stranger = a_before.clone();
    stranger.id = Uuid::now_v7();
    let delta = DashboardDelta {
        open: 1,
        triaged: -1,
        closed: 1,
    };
    for from in [0, reached - 1, reached + 1] {
        let stale = ViewChanges {
            from,
            to: reached + 20,
            tickets: vec![newer_a.clone(), stranger.clone()],
            dashboard: delta,
        };
        match views.commit(stale).await {
            Err(ViewError::CheckpointMoved { expected, found }) => assert_eq!(
                (expected, found),
                (from, reached),
                "CheckpointMoved names the batch's `from` and the stored checkpoint"
            ),
            other => {
                panic!("a commit from {from} with the checkpoint at {reached} succeeded: {other:?}")
            }
        }
    }
    assert_eq!(
        checkpoint(views).await,
        reached,
        "the checkpoint did not move"
    );
    assert_eq!(
        ticket(views, desk.a).await,
        Some(a_before),
        "the detail row did not change"
    );
    assert_eq!(ticket(views, stranger.id).await, None, "no row was added");
    assert_eq!(
        list_all(views, None).await,
        rows_before,
        "the list did not change"
    );
    assert_eq!(
        dashboard(views).await,
        dashboard_before,
        "the counts did not change"
    );
}

/// An older state of a ticket never replaces a newer one (in the detail or the
/// list), while a newer one does.
pub async fn rows_never_go_back_a_version(events: &dyn EventStore, views: &dyn ViewStore) {
    let desk = open_desk(events).await;
    let reached = catch_up(events, views, 100).await;
    let current = ticket(views, desk.a).await.expect("ticket a");
    let current_row = TicketListRow::from(&current);

    let stream = read_stream(events, desk.a).await;
    let older = fold_batch(0, HashMap::new(), &stream[..2])
        .expect("the first two events fold")
        .tickets
        .remove(0);
    assert!(older.version < current.version);
    views
        .commit(ViewChanges {
            from: reached,
            to: reached,
            tickets: vec![older],
            dashboard: DashboardDelta::default(),
        })
        .await
        .expect("a commit of an older state succeeds, changing nothing");
    assert_eq!(
        ticket(views, desk.a).await.as_ref(),
        Some(&current),
        "the detail kept its version"
    );
    let row = list_all(views, None)
        .await
        .into_iter()
        .find(|row| row.id == desk.a)
        .expect("row a");
    assert_eq!(row, current_row, "the list row kept its version");

    // The guard is not a freeze: the next real event moves both rows on.
    append(
        events,
        desk.a,
        current.version,
        envelopes(&[Event::AgentUnassigned], 9),
    )
    .await;
    let moved_to = catch_up(events, views, 100).await;
    assert_eq!(moved_to, reached + 1);
    let newer = ticket(views, desk.a).await.expect("ticket a");
    assert_eq!(
        (newer.version, newer.agent.as_deref()),
        (current.version + 1, None)
    );
    let row = list_all(views, None)
        .await
        .into_iter()
        .find(|row| row.id == desk.a)
        .expect("row a");
    assert_eq!(
        row,
        TicketListRow::from(&newer),
        "the list row moved on too"
    );
}

/// Seven tickets whose creation times tie in groups, opened in an order that
/// is neither time order nor id order, ending in all three statuses.
struct Crowd {
    /// (id, creation second, final status), in the order they were opened.
    tickets: Vec<(Uuid, i64, Status)>,
}

impl Crowd {
    /// The ids newest first, ties by id descending: the order the list promises.
    fn expected(&self, status: Option<Status>) -> Vec<Uuid> {
        let mut tickets: Vec<&(Uuid, i64, Status)> = self
            .tickets
            .iter()
            .filter(|(_, _, s)| status.is_none_or(|wanted| *s == wanted))
            .collect();
        tickets.sort_by_key(|(id, second, _)| std::cmp::Reverse((*second, *id)));
        tickets.into_iter().map(|(id, _, _)| *id).collect()
    }
}

async fn gather_crowd(events: &dyn EventStore, views: &dyn ViewStore) -> Crowd {
    // High bits set apart so the id order is plain; ids are fixed because the
    // case needs their order, the store being fresh.
    let id = |n: u128| Uuid::from_u128((n << 120) | 0x0000_0000_0000_7000_8000_0000_0000_0042);
    let tickets = vec![
        (id(5), 10, Status::Open),
        (id(9), 0, Status::Triaged),
        (id(2), 10, Status::Closed),
        (id(7), 20, Status::Open),
        (id(3), 0, Status::Open),
        (id(8), 10, Status::Triaged),
        (id(1), 0, Status::Closed),
    ];
    for (ticket, second, status) in &tickets {
        let mut history = vec![opened(&format!("crowd {ticket}"))];
        match status {
            Status::Open => {}
            Status::Triaged => history.push(Event::TicketTriaged),
            Status::Closed => history.push(Event::TicketClosed),
        }
        append(events, *ticket, 0, envelopes(&history, *second)).await;
    }
    catch_up(events, views, 4).await;
    Crowd { tickets }
}

/// The list is newest first by creation time, ties broken by id descending,
/// and honours the limit.
pub async fn list_is_newest_first_with_ties_by_id(events: &dyn EventStore, views: &dyn ViewStore) {
    let crowd = gather_crowd(events, views).await;
    let rows = list_all(views, None).await;
    assert_eq!(
        ids(&rows),
        crowd.expected(None),
        "newest first, ties by id descending"
    );
    assert!(
        rows.windows(2)
            .all(|w| (w[0].created_at, w[0].id) > (w[1].created_at, w[1].id)),
        "strictly descending (created_at, id)"
    );
    let first_three = list(views, &query(None, None, 3)).await;
    assert_eq!(first_three[..], rows[..3], "the limit cuts the same order");
    assert_eq!(
        dashboard(views).await,
        Dashboard {
            open: 3,
            triaged: 2,
            closed: 2
        }
    );
}

/// A status filter keeps only that status's rows, in the same order.
pub async fn list_filters_by_status(events: &dyn EventStore, views: &dyn ViewStore) {
    let crowd = gather_crowd(events, views).await;
    for status in Status::ALL {
        let rows = list_all(views, Some(status)).await;
        assert!(
            rows.iter().all(|row| row.status == status),
            "only {status} rows"
        );
        assert_eq!(
            ids(&rows),
            crowd.expected(Some(status)),
            "every {status} row, in order"
        );
    }
}

/// Keyset paging (`after` = the last row's creation time and id) returns every
/// row exactly once across pages, in order, with and without a status filter,
/// including page breaks inside a group of equal creation times.
pub async fn list_pages_cover_every_row_once(events: &dyn EventStore, views: &dyn ViewStore) {
    let crowd = gather_crowd(events, views).await;
    for status in [None, Some(Status::Open), Some(Status::Closed)] {
        let expected = crowd.expected(status);
        for page_size in [1, 2, 3, expected.len(), expected.len() + 1] {
            let mut seen: Vec<TicketListRow> = Vec::new();
            loop {
                let page = list(views, &query(status, seen.last(), page_size)).await;
                let remaining = expected.len() - seen.len();
                assert_eq!(
                    page.len(),
                    page_size.min(remaining),
                    "pages of {page_size} ({status:?}) are full until the end"
                );
                if page.is_empty() {
                    break;
                }
                seen.extend(page);
            }
            assert_eq!(
                ids(&seen),
                expected,
                "pages of {page_size} ({status:?}) cover every row once"
            );
        }
    }
    let all = list_all(views, None).await;
    let last = all.last().expect("rows");
    assert!(
        list(views, &query(None, Some(last), 10)).await.is_empty(),
        "nothing after the last row"
    );
}
