//! The view store's cases: the fenced, checkpointed commit of each
//! projection's slot, the version guard, lookups, scans, and the list's order,
//! filter and keyset paging.
//!
//! Views are built the way the projector builds them: real events appended to
//! the event store, read back and folded with `readmodel::fold_batch`.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use domain::{Event, Status};
use eventstore::{EventStore, Position, RecordedEvent};
use readmodel::{
    CheckpointWatch, Dashboard, DashboardDelta, Fence, ListQuery, ListSort, Note, Projection,
    ProjectionWriter, Rows, SlotAdmin, SlotState, SlotStatus, Target, TicketDetail, TicketListRow,
    TicketStatusRow, ViewChanges, ViewError, ViewReader, ViewStore, fold_batch,
};
use uuid::Uuid;

use crate::fixtures::{
    append, at, catch_up, envelopes, fence, fold_into, head, kept, note, opened, read_all,
    read_stream,
};

pub(crate) async fn ticket(views: &dyn ViewReader, id: Uuid) -> Option<TicketDetail> {
    views.ticket(id).await.expect("ticket")
}

pub(crate) async fn dashboard(views: &dyn ViewReader) -> Dashboard {
    views.dashboard().await.expect("dashboard")
}

pub(crate) async fn checkpoint(
    views: &dyn ViewReader,
    projection: Projection,
    target: Target,
) -> Position {
    views
        .checkpoint(projection, target)
        .await
        .expect("checkpoint")
}

pub(crate) async fn counts(views: &dyn SlotAdmin, target: Target) -> Dashboard {
    views.counts(target).await.expect("counts")
}

/// Every row of a slot, by id (the cases keep far fewer than the limit).
pub(crate) async fn all_rows(
    views: &dyn SlotAdmin,
    projection: Projection,
    target: Target,
) -> Rows {
    let rows = views
        .scan_rows(projection, target, None, 10_000)
        .await
        .expect("scan_rows");
    assert_eq!(
        rows.projection(),
        projection,
        "scan_rows answers rows of the projection asked for"
    );
    rows
}

pub(crate) async fn load(
    views: &dyn ProjectionWriter,
    projection: Projection,
    target: Target,
    ids: &[Uuid],
) -> Rows {
    let rows = views
        .load_rows(projection, target, ids)
        .await
        .expect("load_rows");
    assert_eq!(
        rows.projection(),
        projection,
        "load_rows answers rows of the projection asked for"
    );
    let inputs = views
        .batch_inputs(projection, target, ids, 0, 0)
        .await
        .expect("batch_inputs");
    assert_eq!(
        by_id(inputs.rows),
        by_id(rows.clone()),
        "batch_inputs reads the rows load_rows reads"
    );
    assert!(inputs.skipped.is_empty(), "an empty range skips nothing");
    rows
}

/// Rows in id order, whatever order a store answered in.
fn by_id(rows: Rows) -> Rows {
    match rows {
        Rows::Detail(mut rows) => {
            rows.sort_by_key(|row| row.id);
            Rows::Detail(rows)
        }
        Rows::List(mut rows) => {
            rows.sort_by_key(|row| row.id);
            Rows::List(rows)
        }
        Rows::Dashboard(mut rows) => {
            rows.sort_by_key(|row| row.id);
            Rows::Dashboard(rows)
        }
    }
}

fn query(status: Option<Status>, after: Option<&TicketListRow>, limit: usize) -> ListQuery {
    ListQuery {
        status,
        agent: None,
        customer: None,
        after: after.map(|row| (row.created_at, row.id)),
        limit,
        sort: ListSort::default(),
    }
}

async fn list(views: &dyn ViewReader, query: &ListQuery) -> Vec<TicketListRow> {
    views.list(query).await.expect("list")
}

/// Every row of the list, first page only (the cases keep fewer than 1000).
pub(crate) async fn list_all(views: &dyn ViewReader, status: Option<Status>) -> Vec<TicketListRow> {
    list(views, &query(status, None, 1_000)).await
}

fn ids(rows: &[TicketListRow]) -> Vec<Uuid> {
    rows.iter().map(|row| row.id).collect()
}

/// Folds events into a projection's rows from nothing, failing the case if
/// they do not fold.
pub(crate) fn fold_fresh(projection: Projection, events: &[RecordedEvent]) -> Rows {
    let outcome = fold_batch(
        projection,
        0,
        Rows::empty(projection),
        events,
        &HashSet::new(),
    );
    if let Some(failed) = outcome.failed {
        panic!("{projection}: the events do not fold: {}", failed.error);
    }
    outcome.changes.rows
}

/// The detail view the fold makes of a ticket's whole stream.
async fn folded(events: &dyn EventStore, id: Uuid) -> TicketDetail {
    let stream = read_stream(events, id).await;
    let Rows::Detail(mut rows) = fold_fresh(Projection::Detail, &stream) else {
        unreachable!("a detail fold gives detail rows");
    };
    assert_eq!(rows.len(), 1, "one ticket folded");
    rows.remove(0)
}

/// A commit of `rows` from `from` to `to`, with no dashboard delta.
fn changes(projection: Projection, from: Position, to: Position, rows: Rows) -> ViewChanges {
    ViewChanges {
        projection,
        from,
        to,
        rows,
        dashboard: DashboardDelta::default(),
    }
}

pub(crate) async fn commit(views: &dyn ProjectionWriter, fence: &Fence, changes: ViewChanges) {
    let (projection, from, to) = (changes.projection, changes.from, changes.to);
    views.commit(fence, changes).await.unwrap_or_else(|e| {
        panic!(
            "a commit to {projection}/{} from {from} to {to} failed: {e}",
            fence.target.name()
        )
    });
}

/// Three tickets that end open, triaged and closed; A's history is long enough
/// to span several small batches. Positions: a 1-2, b 3, a 4-6, c 7-8 (in a
/// fresh store).
pub(crate) struct Desk {
    pub(crate) a: Uuid,
    pub(crate) b: Uuid,
    pub(crate) c: Uuid,
}

pub(crate) async fn open_desk(events: &dyn EventStore) -> Desk {
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

/// An empty backend: head and every checkpoint at 0, slot `a` live at
/// version 1 and the shadow retired at version 0, no leases, no rows, zero
/// counts, no dead letters.
pub async fn empty_store_starts_at_zero(events: &dyn EventStore, views: &dyn ViewStore) {
    assert_eq!(head(events).await, 0, "an empty event store's head is 0");
    assert!(
        read_all(events, 0, 10).await.is_empty(),
        "an empty event store has no events"
    );
    assert!(
        events
            .read_by_ticket(None, 10)
            .await
            .expect("read_by_ticket")
            .is_empty(),
        "an empty event store has no events by ticket"
    );
    for projection in Projection::ALL {
        for target in [Target::Live, Target::Shadow] {
            assert_eq!(
                checkpoint(views, projection, target).await,
                0,
                "the {projection}/{} checkpoint starts at 0",
                target.name()
            );
            assert!(
                all_rows(views, projection, target).await.is_empty(),
                "{projection}/{} starts empty",
                target.name()
            );
            assert!(
                load(views, projection, target, &[Uuid::now_v7()])
                    .await
                    .is_empty(),
                "no {projection} rows yet"
            );
        }
        let status = views.status(projection).await.expect("status");
        assert_eq!(status.projection, projection);
        assert_eq!(
            (status.live, status.shadow),
            (
                SlotStatus {
                    checkpoint: 0,
                    version: 1,
                    state: SlotState::Live
                },
                SlotStatus {
                    checkpoint: 0,
                    version: 0,
                    state: SlotState::Retired
                }
            ),
            "{projection}: the live slot at version 1, the shadow never built"
        );
        assert_eq!(
            (status.live_lease, status.shadow_lease),
            (None, None),
            "{projection}: no lease was ever taken"
        );
        assert_eq!(status.dead_letters_pending, 0);
    }
    for target in [Target::Live, Target::Shadow] {
        assert_eq!(
            counts(views, target).await,
            Dashboard::default(),
            "the counts start at 0"
        );
    }
    assert_eq!(
        dashboard(views).await,
        Dashboard::default(),
        "the dashboard starts at 0"
    );
    assert!(
        list_all(views, None).await.is_empty(),
        "the list starts empty"
    );
    assert_eq!(ticket(views, Uuid::now_v7()).await, None);
    assert!(
        views
            .dead_letters(None)
            .await
            .expect("dead_letters")
            .is_empty(),
        "no dead letters yet"
    );
}

/// Commits write every projection's rows and move its checkpoint; the stored
/// views are the fold of each ticket's events, and `load_rows` returns what
/// was committed.
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
    for projection in Projection::ALL {
        assert_eq!(
            checkpoint(views, projection, Target::Live).await,
            reached,
            "the {projection} checkpoint moved with each commit"
        );
    }

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
    let Rows::Detail(loaded) = by_id(
        load(
            views,
            Projection::Detail,
            Target::Live,
            &[desk.a, unknown, desk.b],
        )
        .await,
    ) else {
        unreachable!("checked by `load`");
    };
    assert_eq!(loaded.len(), 2, "unknown tickets are absent");
    for row in &loaded {
        assert_eq!(Some(row), ticket(views, row.id).await.as_ref());
    }
    let Rows::Dashboard(statuses) =
        load(views, Projection::Dashboard, Target::Live, &[desk.c]).await
    else {
        unreachable!("checked by `load`");
    };
    assert_eq!(
        statuses,
        vec![TicketStatusRow {
            id: desk.c,
            status: Status::Closed,
            version: 2
        }],
        "the dashboard keeps each ticket's status"
    );
    assert!(
        load(views, Projection::List, Target::Live, &[])
            .await
            .is_empty()
    );
}

/// The rows a stale commit would write: a newer state of `row`'s ticket and a
/// brand-new ticket, of `row`'s projection.
fn stale_rows(rows: Rows) -> Rows {
    let stranger = Uuid::now_v7();
    match rows {
        Rows::Detail(rows) => {
            let mut newer = rows[0].clone();
            newer.status = Status::Closed;
            newer.version += 10;
            let mut other = newer.clone();
            other.id = stranger;
            Rows::Detail(vec![newer, other])
        }
        Rows::List(rows) => {
            let mut newer = rows[0].clone();
            newer.status = Status::Closed;
            newer.version += 10;
            let mut other = newer.clone();
            other.id = stranger;
            Rows::List(vec![newer, other])
        }
        Rows::Dashboard(rows) => {
            let mut newer = rows[0];
            newer.status = Status::Closed;
            newer.version += 10;
            let mut other = newer;
            other.id = stranger;
            Rows::Dashboard(vec![newer, other])
        }
    }
}

/// A commit whose `from` is not the slot's checkpoint answers
/// `CheckpointMoved` and changes nothing: rows, counts and checkpoint stay as
/// they were, in every projection.
pub async fn stale_commit_changes_nothing(events: &dyn EventStore, views: &dyn ViewStore) {
    let desk = open_desk(events).await;
    let reached = catch_up(events, views, 100).await;
    let rows_before = list_all(views, None).await;
    let dashboard_before = dashboard(views).await;
    let a_before = ticket(views, desk.a).await.expect("ticket a");

    for projection in Projection::ALL {
        let fence = fence(views, projection, Target::Live).await;
        let stored = all_rows(views, projection, Target::Live).await;
        let current = load(views, projection, Target::Live, &[desk.a]).await;
        // A batch folded by a projector that read after another checkpoint.
        for from in [0, reached - 1, reached + 1] {
            let mut stale = changes(projection, from, reached + 20, stale_rows(current.clone()));
            if projection == Projection::Dashboard {
                stale.dashboard = DashboardDelta {
                    open: 1,
                    triaged: -1,
                    closed: 1,
                };
            }
            match views.commit(&fence, stale).await {
                Err(ViewError::CheckpointMoved { expected, found }) => assert_eq!(
                    (expected, found),
                    (from, reached),
                    "CheckpointMoved names the batch's `from` and the stored checkpoint"
                ),
                other => panic!(
                    "a {projection} commit from {from} with the checkpoint at {reached} \
                     succeeded: {other:?}"
                ),
            }
        }
        assert_eq!(
            checkpoint(views, projection, Target::Live).await,
            reached,
            "the {projection} checkpoint did not move"
        );
        assert_eq!(
            all_rows(views, projection, Target::Live).await,
            stored,
            "no {projection} row changed or was added"
        );
    }
    assert_eq!(
        ticket(views, desk.a).await,
        Some(a_before),
        "the detail row did not change"
    );
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

/// An older state of a ticket never replaces a newer one (in any projection),
/// while a newer one does.
pub async fn rows_never_go_back_a_version(events: &dyn EventStore, views: &dyn ViewStore) {
    let desk = open_desk(events).await;
    let reached = catch_up(events, views, 100).await;
    let current = ticket(views, desk.a).await.expect("ticket a");
    let stream = read_stream(events, desk.a).await;
    for projection in Projection::ALL {
        let before = all_rows(views, projection, Target::Live).await;
        let older = fold_fresh(projection, &stream[..2]);
        assert!(
            older.keys()[0].1 < current.version,
            "the first two events make an older row"
        );
        let fence = fence(views, projection, Target::Live).await;
        commit(views, &fence, changes(projection, reached, reached, older)).await;
        assert_eq!(
            all_rows(views, projection, Target::Live).await,
            before,
            "every {projection} row kept its version"
        );
    }
    let current_row = TicketListRow::from(&current);
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

    // The guard is not a freeze: the next real event moves the rows on.
    append(
        events,
        desk.a,
        current.version,
        envelopes(&[Event::AgentUnassigned, Event::TicketClosed], 9),
    )
    .await;
    let moved_to = catch_up(events, views, 100).await;
    assert_eq!(moved_to, reached + 2);
    let newer = ticket(views, desk.a).await.expect("ticket a");
    assert_eq!(
        (newer.version, newer.agent.as_deref()),
        (current.version + 2, None)
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
    assert_eq!(
        dashboard(views).await,
        Dashboard {
            open: 1,
            triaged: 0,
            closed: 2
        },
        "and the dashboard"
    );
}

/// Each projection has its own checkpoint (and rows): committing one moves
/// none of the others, and a stale `from` is judged against the projection's
/// own checkpoint.
pub async fn checkpoints_are_per_projection(events: &dyn EventStore, views: &dyn ViewStore) {
    let desk = open_desk(events).await;
    let end = head(events).await;
    let detail = fence(views, Projection::Detail, Target::Live).await;
    let reached = fold_into(events, views, &detail, 3, end).await;
    assert_eq!(reached, end);
    assert_eq!(
        checkpoint(views, Projection::Detail, Target::Live).await,
        end
    );
    for other in [Projection::List, Projection::Dashboard] {
        assert_eq!(
            checkpoint(views, other, Target::Live).await,
            0,
            "committing detail did not move {other}'s checkpoint"
        );
        assert!(
            all_rows(views, other, Target::Live).await.is_empty(),
            "nor write {other} rows"
        );
    }
    assert!(
        ticket(views, desk.a).await.is_some(),
        "the detail is served"
    );
    assert!(list_all(views, None).await.is_empty(), "the list is not");
    assert_eq!(dashboard(views).await, Dashboard::default());

    let list = fence(views, Projection::List, Target::Live).await;
    commit(
        views,
        &list,
        changes(Projection::List, 0, 2, Rows::empty(Projection::List)),
    )
    .await;
    assert_eq!(
        checkpoint(views, Projection::List, Target::Live).await,
        2,
        "an empty commit moves the checkpoint"
    );
    assert_eq!(
        checkpoint(views, Projection::Detail, Target::Live).await,
        end,
        "committing list did not move detail's checkpoint"
    );
    assert_eq!(
        checkpoint(views, Projection::Dashboard, Target::Live).await,
        0
    );
    for projection in Projection::ALL {
        assert_eq!(
            checkpoint(views, projection, Target::Shadow).await,
            0,
            "no shadow moved"
        );
    }
    let dashboard_fence = fence(views, Projection::Dashboard, Target::Live).await;
    let result = views
        .commit(
            &dashboard_fence,
            changes(
                Projection::Dashboard,
                2,
                3,
                Rows::empty(Projection::Dashboard),
            ),
        )
        .await;
    assert!(
        matches!(
            result,
            Err(ViewError::CheckpointMoved {
                expected: 2,
                found: 0
            })
        ),
        "dashboard's own checkpoint (0) judges a commit, not list's (2): {result:?}"
    );
    // A fence and changes of different projections are refused, whichever
    // checkpoint `from` matches.
    for from in [2, end] {
        let result = views
            .commit(
                &detail,
                changes(
                    Projection::List,
                    from,
                    end + 1,
                    Rows::empty(Projection::List),
                ),
            )
            .await;
        assert!(result.is_err(), "a detail fence committed list changes");
    }
    assert_eq!(checkpoint(views, Projection::List, Target::Live).await, 2);
    assert_eq!(
        checkpoint(views, Projection::Detail, Target::Live).await,
        end
    );
}

/// How long a case waits for a prompt before it calls it lost. A prompt for
/// a commit through the same store comes at once; this only bounds a hang
/// (`CheckpointWatch::moved` has no timer of its own, so only a prompt can
/// end the wait).
const PROMPT_LOST: Duration = Duration::from_secs(30);

/// Waits on `watch` until the checkpoint read after a prompt is `expected`:
/// a prompt may come when nothing moved, so one that does not show it yet
/// is waited past. Returns how many prompts it took.
async fn prompted_to(
    watch: &mut dyn CheckpointWatch,
    views: &dyn ViewReader,
    projection: Projection,
    expected: Position,
    what: &str,
) -> usize {
    let waiting = async {
        let mut prompts = 0;
        loop {
            watch.moved().await;
            prompts += 1;
            if checkpoint(views, projection, Target::Live).await == expected {
                return prompts;
            }
        }
    };
    tokio::time::timeout(PROMPT_LOST, waiting)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{projection}: {what} did not prompt the watch on the live checkpoint \
                 (waited {PROMPT_LOST:?} for it to read {expected})"
            )
        })
}

/// Every commit to a live slot and every swap through a store prompts the
/// watches on that projection's live checkpoint once it has committed, so
/// the checkpoint read after the prompt is the new one: a watch waiting
/// during a commit is woken by it, a prompt raised between making a watch
/// and waiting on it is kept, and a swap prompts with the former shadow's
/// checkpoint. A watch's recheck is short enough to find a projector in
/// another process and long enough not to be polling.
pub async fn live_checkpoint_moves_prompt_watchers(events: &dyn EventStore, views: &dyn ViewStore) {
    open_desk(events).await;
    let end = head(events).await;
    let shadow_end = 3;
    for projection in Projection::ALL {
        let live = fence(views, projection, Target::Live).await;

        let mut watch = views.watch_live_checkpoint(projection);
        let recheck = watch.recheck();
        assert!(
            (Duration::from_millis(20)..=Duration::from_secs(5)).contains(&recheck),
            "{projection}: a recheck of {recheck:?}"
        );
        // Waiting first, then the commits (`join!` polls in order).
        let ((), reached) = tokio::join!(
            async {
                prompted_to(&mut *watch, views, projection, 2, "a live commit").await;
            },
            fold_into(events, views, &live, 2, 2),
        );
        assert_eq!(reached, 2);

        let mut watch = views.watch_live_checkpoint(projection);
        assert_eq!(fold_into(events, views, &live, 4, end).await, end);
        prompted_to(
            &mut *watch,
            views,
            projection,
            end,
            "a commit made before the wait began",
        )
        .await;

        let rebuild = fence(views, projection, Target::Shadow).await;
        views.reset_shadow(&rebuild).await.expect("reset_shadow");
        assert_eq!(
            fold_into(events, views, &rebuild, 4, shadow_end).await,
            shadow_end
        );
        let mut watch = views.watch_live_checkpoint(projection);
        views.swap_shadow(&rebuild).await.expect("swap_shadow");
        prompted_to(&mut *watch, views, projection, shadow_end, "a swap").await;
    }
}

/// A whole-millisecond time, which every backend keeps exactly.
fn millis(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(3)
}

/// Rows made by hand, with every optional field both set and unset.
fn handmade(ids: [Uuid; 2], version: u64, closed: bool) -> [Rows; 3] {
    let status = if closed { Status::Closed } else { Status::Open };
    let details: Vec<TicketDetail> = ids
        .iter()
        .zip([true, false])
        .map(|(id, full)| TicketDetail {
            id: *id,
            customer: "Zoë Ünicode".into(),
            subject: "Ça ne marche pas 🔥".into(),
            message: "line one\nline two\t\"quoted\" \\ backslash".into(),
            status: if full { status } else { Status::Triaged },
            agent: full.then(|| "ana".to_owned()),
            notes: if full {
                vec![
                    Note {
                        text: "first".into(),
                        added_at: millis(at(2)),
                    },
                    Note {
                        text: "second\nnote".into(),
                        added_at: millis(at(3)),
                    },
                ]
            } else {
                Vec::new()
            },
            created_at: millis(at(0)),
            updated_at: millis(at(3)),
            version,
        })
        .collect();
    let list = details.iter().map(TicketListRow::from).collect();
    let statuses = details
        .iter()
        .map(|detail| TicketStatusRow {
            id: detail.id,
            status: detail.status,
            version: detail.version,
        })
        .collect();
    [
        Rows::Detail(details),
        Rows::List(list),
        Rows::Dashboard(statuses),
    ]
}

/// Rows of all three projections come back from `load_rows` exactly as
/// committed; the dashboard counts follow each delta; within one commit a
/// row at a lower version is left as stored while a higher one replaces it.
pub async fn rows_roundtrip_and_counts_follow_the_delta(
    _events: &dyn EventStore,
    views: &dyn ViewStore,
) {
    let ids = [Uuid::now_v7(), Uuid::now_v7()];
    let first = handmade(ids, 3, false);
    for rows in &first {
        let projection = rows.projection();
        let fence = fence(views, projection, Target::Live).await;
        let mut changes = changes(projection, 0, 5, rows.clone());
        if projection == Projection::Dashboard {
            changes.dashboard = DashboardDelta {
                open: 1,
                triaged: 1,
                closed: 0,
            };
        }
        commit(views, &fence, changes).await;
        assert_eq!(
            by_id(load(views, projection, Target::Live, &ids).await),
            by_id(rows.clone()),
            "{projection} rows roundtrip"
        );
        assert_eq!(checkpoint(views, projection, Target::Live).await, 5);
    }
    let expected = Dashboard {
        open: 1,
        triaged: 1,
        closed: 0,
    };
    assert_eq!(counts(views, Target::Live).await, expected);
    assert_eq!(dashboard(views).await, expected, "the query side agrees");
    let Rows::Detail(details) = &first[0] else {
        unreachable!("handmade detail rows");
    };
    assert_eq!(ticket(views, ids[0]).await.as_ref(), Some(&details[0]));

    // The first ticket moves on to version 4 (and closes); the second comes
    // again at version 2, older than the stored 3.
    let newer = handmade(ids, 4, true);
    let older = handmade(ids, 2, true);
    for (newer, older) in newer.iter().zip(&older) {
        let projection = newer.projection();
        let mixed = match (newer, older) {
            (Rows::Detail(n), Rows::Detail(o)) => Rows::Detail(vec![n[0].clone(), o[1].clone()]),
            (Rows::List(n), Rows::List(o)) => Rows::List(vec![n[0].clone(), o[1].clone()]),
            (Rows::Dashboard(n), Rows::Dashboard(o)) => Rows::Dashboard(vec![n[0], o[1]]),
            _ => unreachable!("handmade rows come in the same order"),
        };
        let mut changes = changes(projection, 5, 6, mixed);
        if projection == Projection::Dashboard {
            changes.dashboard = DashboardDelta {
                open: -1,
                triaged: 0,
                closed: 1,
            };
        }
        let fence = fence(views, projection, Target::Live).await;
        commit(views, &fence, changes).await;
        let stored = by_id(load(views, projection, Target::Live, &ids).await);
        let kept_first = by_id(first[projection_index(projection)].clone());
        let expected = match (newer, kept_first) {
            (Rows::Detail(n), Rows::Detail(k)) => Rows::Detail(vec![n[0].clone(), k[1].clone()]),
            (Rows::List(n), Rows::List(k)) => Rows::List(vec![n[0].clone(), k[1].clone()]),
            (Rows::Dashboard(n), Rows::Dashboard(k)) => Rows::Dashboard(vec![n[0], k[1]]),
            _ => unreachable!("same projection"),
        };
        assert_eq!(
            stored,
            by_id(expected),
            "{projection}: the newer row replaced the stored one, the older did not"
        );
    }
    let expected = Dashboard {
        open: 0,
        triaged: 1,
        closed: 1,
    };
    assert_eq!(
        counts(views, Target::Live).await,
        expected,
        "counts follow the delta"
    );
    assert_eq!(dashboard(views).await, expected);
    assert_eq!(
        counts(views, Target::Shadow).await,
        Dashboard::default(),
        "the shadow's counts are its own"
    );
}

fn projection_index(projection: Projection) -> usize {
    match projection {
        Projection::Detail => 0,
        Projection::List => 1,
        Projection::Dashboard => 2,
    }
}

/// `scan_rows` pages (after the last id seen) cover every row of a slot once,
/// by id ascending, for every projection; `counts` reads each slot's own.
pub async fn scan_rows_pages_cover_every_row_once(events: &dyn EventStore, views: &dyn ViewStore) {
    let crowd = gather_crowd(events, views).await;
    let mut expected_ids: Vec<Uuid> = crowd.tickets.iter().map(|(id, _, _)| *id).collect();
    expected_ids.sort();
    for projection in Projection::ALL {
        let all = all_rows(views, projection, Target::Live).await;
        let keys = all.keys();
        assert_eq!(
            keys.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            expected_ids,
            "{projection}: every row, by id ascending"
        );
        assert_eq!(
            all,
            by_id(load(views, projection, Target::Live, &expected_ids).await),
            "{projection}: a scan reads what load_rows reads"
        );
        for page_size in [1, 2, 3, keys.len(), keys.len() + 1] {
            let mut seen: Vec<(Uuid, u64)> = Vec::new();
            loop {
                let after = seen.last().map(|(id, _)| *id);
                let page = views
                    .scan_rows(projection, Target::Live, after, page_size)
                    .await
                    .expect("scan_rows");
                let remaining = keys.len() - seen.len();
                assert_eq!(
                    page.len(),
                    page_size.min(remaining),
                    "{projection}: pages of {page_size} are full until the end"
                );
                if page.is_empty() {
                    break;
                }
                seen.extend(page.keys());
            }
            assert_eq!(
                seen, keys,
                "{projection}: pages of {page_size} cover every row once, in id order"
            );
        }
        // `after` need not be a stored id.
        let between = Uuid::from_u128(expected_ids[2].as_u128() + 1);
        let rest = views
            .scan_rows(projection, Target::Live, Some(between), 100)
            .await
            .expect("scan_rows");
        assert_eq!(rest.keys(), keys[3..], "{projection}: a scan after any id");
        assert!(
            views
                .scan_rows(projection, Target::Live, None, 0)
                .await
                .expect("scan_rows")
                .is_empty(),
            "a limit of 0 reads nothing"
        );
        assert!(
            all_rows(views, projection, Target::Shadow).await.is_empty(),
            "{projection}: the shadow slot has rows of its own (none)"
        );
    }

    // A shadow dashboard with the first three events only: its counts are its own.
    let live_counts = Dashboard {
        open: 3,
        triaged: 2,
        closed: 2,
    };
    assert_eq!(counts(views, Target::Live).await, live_counts);
    assert_eq!(counts(views, Target::Shadow).await, Dashboard::default());
    let rebuild = views
        .acquire_lease(
            Projection::Dashboard,
            Target::Shadow,
            "rebuilder",
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("acquire_lease")
        .expect("the shadow lease is free");
    views.reset_shadow(&rebuild).await.expect("reset_shadow");
    let first_three = read_all(events, 0, 3).await;
    let filled = fold_into(events, views, &rebuild, 2, first_three[2].position).await;
    assert_eq!(filled, first_three[2].position);
    // Crowd tickets open in order: id(5) open, then id(9) opened and triaged.
    assert_eq!(
        counts(views, Target::Shadow).await,
        Dashboard {
            open: 1,
            triaged: 1,
            closed: 0
        },
        "the shadow counts follow the shadow's commits"
    );
    assert_eq!(
        all_rows(views, Projection::Dashboard, Target::Shadow)
            .await
            .len(),
        2
    );
    assert_eq!(
        counts(views, Target::Live).await,
        live_counts,
        "the live counts did not move"
    );
    assert_eq!(dashboard(views).await, live_counts);
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

/// A list row made directly (the filter and sort cases need many shapes of
/// row, not many histories).
fn list_row(
    n: u128,
    created: i64,
    updated: i64,
    status: Status,
    agent: Option<&str>,
    customer: &str,
) -> TicketListRow {
    TicketListRow {
        id: Uuid::from_u128((n << 96) | 0x0000_0000_0000_7000_8000_0000_0000_0042),
        customer: customer.to_owned(),
        subject: format!("subject {n}"),
        status,
        agent: agent.map(str::to_owned),
        preview: "preview".to_owned(),
        has_note: false,
        last_note_preview: None,
        created_at: at(created),
        updated_at: at(updated),
        version: 1,
    }
}

fn filtered(rows: &[TicketListRow], query: &ListQuery) -> Vec<Uuid> {
    let mut rows: Vec<&TicketListRow> = rows
        .iter()
        .filter(|row| query.status.is_none_or(|status| row.status == status))
        .filter(|row| query.agent.is_none() || row.agent == query.agent)
        .filter(|row| query.customer.as_ref().is_none_or(|c| &row.customer == c))
        .collect();
    rows.sort_by_key(|row| (query.sort.key(row), row.id));
    if query.sort.descending {
        rows.reverse();
    }
    rows.into_iter().map(|row| row.id).collect()
}

/// Pages through the list with `template`'s filters and sort, `page_size` at
/// a time, calling `between` after each page.
async fn page_all(
    views: &dyn ViewReader,
    template: &ListQuery,
    page_size: usize,
    mut between: impl AsyncFnMut(&[TicketListRow]),
) -> Vec<TicketListRow> {
    let mut seen: Vec<TicketListRow> = Vec::new();
    loop {
        let query = ListQuery {
            after: seen.last().map(|row| (template.sort.key(row), row.id)),
            limit: page_size,
            ..template.clone()
        };
        let page = list(views, &query).await;
        if page.is_empty() {
            return seen;
        }
        seen.extend(page);
        between(&seen).await;
    }
}

fn filter_combinations() -> Vec<(Option<Status>, Option<String>, Option<String>)> {
    let s = |v: &str| Some(v.to_owned());
    vec![
        (None, None, None),
        (Some(Status::Open), None, None),
        (Some(Status::Closed), None, None),
        (None, s("ana"), None),
        (None, s("bo"), None),
        (None, None, s("acme")),
        (None, None, s("globex")),
        (Some(Status::Open), s("ana"), None),
        (None, s("ana"), s("acme")),
        (Some(Status::Triaged), s("bo"), s("globex")),
        (Some(Status::Open), s("nobody"), None),
    ]
}

/// Every filter (alone and combined) and every sort and order pages through
/// every matching row exactly once, in (sort key, id) order, ties included.
pub async fn list_filters_and_sorts_page_every_match_once(
    _events: &dyn EventStore,
    views: &dyn ViewStore,
) {
    let statuses = [Status::Open, Status::Triaged, Status::Closed];
    let agents = [Some("ana"), Some("bo"), None];
    let customers = ["acme", "globex"];
    let rows: Vec<TicketListRow> = (1..=18u128)
        .map(|n| {
            let i = n as usize;
            list_row(
                n,
                (n % 4) as i64,
                20 - (n % 5) as i64,
                statuses[i % 3],
                agents[(i / 3) % 3],
                customers[i / 2 % 2],
            )
        })
        .collect();
    let fence = fence(views, Projection::List, Target::Live).await;
    commit(
        views,
        &fence,
        changes(Projection::List, 0, 1, Rows::List(rows.clone())),
    )
    .await;
    for sort in ListSort::all() {
        for (status, agent, customer) in filter_combinations() {
            let template = ListQuery {
                status,
                agent,
                customer,
                after: None,
                limit: 1,
                sort,
            };
            let expected = filtered(&rows, &template);
            for page_size in [1, 2, 5, 100] {
                let seen = page_all(views, &template, page_size, async |_| {}).await;
                assert_eq!(
                    ids(&seen),
                    expected,
                    "pages of {page_size} of {template:?} give every match once, in order"
                );
            }
        }
    }
}

/// Rows that do not change while a client pages appear exactly once, none
/// skipped, whatever changes and arrives between pages (a changed row may
/// move across the cursor when sorted by `updated_at`: it is exempt).
pub async fn list_paging_under_concurrent_writes_keeps_unchanged_rows_once(
    _events: &dyn EventStore,
    views: &dyn ViewStore,
) {
    for sort in ListSort::all() {
        for descending_filter in [None, Some(Status::Open)] {
            let fence = fence(views, Projection::List, Target::Live).await;
            let base: u128 = match (sort.field, sort.descending, descending_filter.is_some()) {
                (readmodel::ListSortField::CreatedAt, true, false) => 1000,
                (readmodel::ListSortField::CreatedAt, true, true) => 2000,
                (readmodel::ListSortField::CreatedAt, false, false) => 3000,
                (readmodel::ListSortField::CreatedAt, false, true) => 4000,
                (readmodel::ListSortField::UpdatedAt, true, false) => 5000,
                (readmodel::ListSortField::UpdatedAt, true, true) => 6000,
                (readmodel::ListSortField::UpdatedAt, false, false) => 7000,
                (readmodel::ListSortField::UpdatedAt, false, true) => 8000,
            };
            // Each round uses its own customer, so rounds do not see each other.
            let customer = format!("round {base}");
            let rows: Vec<TicketListRow> = (0..12u128)
                .map(|n| {
                    list_row(
                        base + n,
                        (n % 3) as i64,
                        10 + (n % 4) as i64,
                        if n % 2 == 0 {
                            Status::Open
                        } else {
                            Status::Triaged
                        },
                        Some("ana"),
                        &customer,
                    )
                })
                .collect();
            let from = checkpoint(views, Projection::List, Target::Live).await;
            commit(
                views,
                &fence,
                changes(Projection::List, from, from + 1, Rows::List(rows.clone())),
            )
            .await;
            let template = ListQuery {
                status: descending_filter,
                agent: None,
                customer: Some(customer.clone()),
                after: None,
                limit: 2,
                sort,
            };
            let mut changed: HashSet<Uuid> = HashSet::new();
            let mut step = 0u128;
            let seen = page_all(views, &template, 2, async |seen: &[TicketListRow]| {
                step += 1;
                let seen_ids: HashSet<Uuid> = seen.iter().map(|row| row.id).collect();
                // Touch one row not seen yet and one already seen, and add one.
                let mut writes = Vec::new();
                let touched: Vec<TicketListRow> = rows
                    .iter()
                    .filter(|row| !changed.contains(&row.id))
                    .filter(|row| !seen_ids.contains(&row.id))
                    .take(1)
                    .chain(
                        rows.iter()
                            .filter(|row| seen_ids.contains(&row.id) && !changed.contains(&row.id))
                            .take(1),
                    )
                    .cloned()
                    .collect();
                for row in touched {
                    let mut moved = row.clone();
                    moved.updated_at = at(100 + step as i64);
                    moved.version = 2;
                    changed.insert(moved.id);
                    writes.push(moved);
                }
                let mut arrived = list_row(
                    base + 500 + step,
                    (step % 3) as i64,
                    50,
                    Status::Open,
                    Some("ana"),
                    &customer,
                );
                arrived.created_at = at(step as i64 % 3);
                changed.insert(arrived.id);
                writes.push(arrived);
                let from = checkpoint(views, Projection::List, Target::Live).await;
                commit(
                    views,
                    &fence,
                    changes(Projection::List, from, from + 1, Rows::List(writes)),
                )
                .await;
            })
            .await;
            for row in rows.iter().filter(|row| !changed.contains(&row.id)) {
                if descending_filter.is_some_and(|status| row.status != status) {
                    continue;
                }
                let times = seen.iter().filter(|seen| seen.id == row.id).count();
                assert_eq!(
                    times, 1,
                    "{sort:?} {descending_filter:?}: an unchanged row appears exactly once"
                );
            }
            let unique: HashSet<Uuid> = seen.iter().map(|row| row.id).collect();
            if sort.field == readmodel::ListSortField::CreatedAt {
                assert_eq!(
                    unique.len(),
                    seen.len(),
                    "{sort:?}: no row twice when the sort key never changes"
                );
            }
        }
    }
}
