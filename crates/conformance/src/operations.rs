//! The projector operations' cases: leases and the fence they put on every
//! slot write, heartbeats, the shadow slot's rebuild and swap, dead letters.
//!
//! Lease expiry is real time on the database's clock: the cases take short
//! leases and sleep well past them.

use std::collections::HashSet;
use std::time::Duration;

use chrono::SubsecRound;
use domain::Event;
use eventstore::{EventStore, Position};
use readmodel::{
    Dashboard, DeadLetter, DeadLetterState, Fence, LeaseStore, Projection, ProjectionWriter, Rows,
    RunState, SlotState, SlotStatus, Target, TicketListRow, ViewChanges, ViewError, ViewReader,
    ViewStore, fold_batch,
};
use uuid::Uuid;

use crate::fixtures::{append, at, envelopes, fence, fold_into, head, note, opened, read_all};
use crate::views::{all_rows, checkpoint, counts, dashboard, list_all, load, open_desk, ticket};

/// A lease short enough to let expire in a case.
const SHORT: Duration = Duration::from_millis(500);
/// Comfortably past [`SHORT`], whatever the clocks' resolution.
const PAST_SHORT: Duration = Duration::from_millis(1_100);
/// A lease that outlives any case.
const LONG: Duration = Duration::from_secs(60);

async fn acquire(
    views: &dyn LeaseStore,
    projection: Projection,
    target: Target,
    holder: &str,
    ttl: Duration,
) -> Option<Fence> {
    views
        .acquire_lease(projection, target, holder, ttl)
        .await
        .expect("acquire_lease")
}

#[track_caller]
fn assert_lease_lost(result: Result<(), ViewError>, fence: &Fence, what: &str) {
    match result {
        Err(ViewError::LeaseLost {
            projection,
            target,
            token,
        }) => assert_eq!(
            (projection, target, token),
            (fence.projection, fence.target.name(), fence.token),
            "LeaseLost names the fence"
        ),
        other => panic!(
            "{what} with {}'s stale token {} must fail with LeaseLost, got {other:?}",
            fence.holder, fence.token
        ),
    }
}

/// The batch after `from` of up to `limit` events, folded into the slot's
/// loaded rows.
async fn next_batch(
    events: &dyn EventStore,
    views: &dyn ProjectionWriter,
    projection: Projection,
    target: Target,
    from: Position,
    limit: usize,
) -> ViewChanges {
    let batch = read_all(events, from, limit).await;
    let ids: Vec<Uuid> = batch.iter().map(|event| event.ticket_id).collect();
    let current = load(views, projection, target, &ids).await;
    let outcome = fold_batch(projection, from, current, &batch, &HashSet::new());
    assert!(outcome.failed.is_none(), "the batch folds");
    outcome.changes
}

async fn end_of(views: &dyn ViewReader, projection: Projection) -> Position {
    checkpoint(views, projection, Target::Live).await
}

/// Leases: the first is token 1; another holder is refused while it is held;
/// its holder re-takes it with the same token; once it expires another holder
/// takes it with the next token, and the old holder's commit and heartbeat
/// then fail with `LeaseLost`, writing nothing; a release hands it over at
/// once; a re-take after a release or expiry is a new token; an expired
/// lease fences nothing, but nobody having taken it, its holder can extend it;
/// every projection's live and shadow leases are independent.
pub async fn leases_fence_every_write(events: &dyn EventStore, views: &dyn ViewStore) {
    let p = Projection::List;
    open_desk(events).await;

    let first = acquire(views, p, Target::Live, "first", SHORT)
        .await
        .expect("a free lease is taken");
    assert_eq!(
        first,
        Fence {
            projection: p,
            target: Target::Live,
            holder: "first".into(),
            token: 1
        },
        "the first lease ever has token 1"
    );
    assert_eq!(
        acquire(views, p, Target::Live, "second", LONG).await,
        None,
        "a held lease is refused to another holder"
    );
    assert_eq!(
        acquire(views, p, Target::Live, "first", SHORT).await,
        Some(first.clone()),
        "its holder re-takes it with the same token"
    );
    let batch = next_batch(events, views, p, Target::Live, 0, 3).await;
    let after_first = batch.to;
    views
        .commit(&first, batch)
        .await
        .expect("the holder commits");

    tokio::time::sleep(PAST_SHORT).await;
    let second = acquire(views, p, Target::Live, "second", LONG)
        .await
        .expect("an expired lease is taken over");
    assert_eq!(second.token, 2, "a new holder gets the next token");
    let rows_before = all_rows(views, p, Target::Live).await;
    let stale = next_batch(events, views, p, Target::Live, after_first, 100).await;
    assert!(!stale.rows.is_empty(), "the stale batch would write rows");
    assert_lease_lost(
        views.commit(&first, stale.clone()).await,
        &first,
        "a commit",
    );
    assert_eq!(
        checkpoint(views, p, Target::Live).await,
        after_first,
        "the lost lease's commit did not move the checkpoint"
    );
    assert_eq!(
        all_rows(views, p, Target::Live).await,
        rows_before,
        "nor write rows"
    );
    assert_lease_lost(
        views.heartbeat(&first, LONG, RunState::Running, None).await,
        &first,
        "a heartbeat",
    );
    let status = views.status(p).await.expect("status");
    let lease = status.live_lease.expect("the live lease");
    assert_eq!(
        (lease.holder.as_str(), lease.token),
        ("second", 2),
        "the lost holder's heartbeat changed nothing"
    );
    assert_eq!(
        acquire(views, p, Target::Live, "first", LONG).await,
        None,
        "the old holder cannot take it back while it is held"
    );
    views
        .commit(&second, stale)
        .await
        .expect("the new holder commits the same batch");

    views.release_lease(&second).await.expect("release_lease");
    let third = acquire(views, p, Target::Live, "third", LONG)
        .await
        .expect("a released lease is free at once");
    assert_eq!(third.token, 3, "the token grows on every hand-over");
    let rest = next_batch(
        events,
        views,
        p,
        Target::Live,
        checkpoint(views, p, Target::Live).await,
        100,
    )
    .await;
    assert_lease_lost(
        views.commit(&second, rest).await,
        &second,
        "a commit after release",
    );
    views
        .release_lease(&second)
        .await
        .expect("releasing a lost lease does nothing, and succeeds");
    assert_eq!(
        acquire(views, p, Target::Live, "fourth", LONG).await,
        None,
        "a stale release did not free the current holder's lease"
    );

    // The same holder taking its lease again after a release gets a new
    // token: its old fence is stale.
    views.release_lease(&third).await.expect("release_lease");
    let third_again = acquire(views, p, Target::Live, "third", SHORT)
        .await
        .expect("a released lease is free");
    assert_eq!(
        third_again.token, 4,
        "a re-take after a release is a new token"
    );
    let nothing = next_batch(events, views, p, Target::Live, end_of(views, p).await, 100).await;
    assert_lease_lost(
        views.commit(&third, nothing.clone()).await,
        &third,
        "a commit with the holder's old token",
    );
    assert_lease_lost(
        views.heartbeat(&third, LONG, RunState::Idle, None).await,
        &third,
        "a heartbeat with the holder's old token",
    );
    // An expired lease fences no write, even if nobody took it over, until
    // its holder extends it.
    tokio::time::sleep(PAST_SHORT).await;
    assert_lease_lost(
        views.commit(&third_again, nothing.clone()).await,
        &third_again,
        "a commit with an expired lease",
    );
    views
        .heartbeat(&third_again, LONG, RunState::Idle, None)
        .await
        .expect("a heartbeat extends a just-expired lease nobody took");
    views
        .commit(&third_again, nothing)
        .await
        .expect("the extended lease fences writes again");

    // Independent leases: the shadow of the same projection, and another
    // projection's live slot, start at token 1.
    let rebuilder = acquire(views, p, Target::Shadow, "rebuilder", SHORT)
        .await
        .expect("the shadow lease is its own");
    assert_eq!(rebuilder.token, 1);
    let detail = acquire(views, Projection::Detail, Target::Live, "fourth", LONG)
        .await
        .expect("another projection's lease is its own");
    assert_eq!(detail.token, 1);

    // A lease that expired but was not taken over is still its holder's to
    // extend; extended, it is held again.
    tokio::time::sleep(PAST_SHORT).await;
    assert_lease_lost(
        views.reset_shadow(&rebuilder).await,
        &rebuilder,
        "a reset with an expired lease",
    );
    views
        .heartbeat(&rebuilder, LONG, RunState::Rebuilding, None)
        .await
        .expect("a heartbeat extends a just-expired lease nobody took");
    assert_eq!(
        acquire(views, p, Target::Shadow, "other", LONG).await,
        None,
        "the extended lease is held"
    );
    views
        .reset_shadow(&rebuilder)
        .await
        .expect("the extended lease fences writes again");

    // The shadow's writes are fenced too.
    views
        .release_lease(&rebuilder)
        .await
        .expect("release_lease");
    let other = acquire(views, p, Target::Shadow, "other", LONG)
        .await
        .expect("taken over");
    assert_eq!(other.token, 2);
    let shadow_before = views.status(p).await.expect("status").shadow;
    assert_lease_lost(views.reset_shadow(&rebuilder).await, &rebuilder, "a reset");
    assert_lease_lost(views.swap_shadow(&rebuilder).await, &rebuilder, "a swap");
    let status = views.status(p).await.expect("status");
    assert_eq!(
        status.shadow, shadow_before,
        "the lost fence changed no slot"
    );
    assert_eq!(status.live.state, SlotState::Live);
}

/// A heartbeat records the holder's state and last error with its time, and
/// extends the lease: `status` shows them, on the database's clock. A lease
/// taken by a new holder starts as running (live) or rebuilding (shadow) with
/// no error; one re-taken by its holder keeps the holder's last report.
pub async fn heartbeat_records_state_and_last_error(
    _events: &dyn EventStore,
    views: &dyn ViewStore,
) {
    let p = Projection::Dashboard;
    let daemon = acquire(views, p, Target::Live, "daemon-1", LONG)
        .await
        .expect("a free lease");
    let status = views.status(p).await.expect("status");
    let taken = status.live_lease.expect("the lease is shown once taken");
    assert_eq!(
        (
            taken.holder.as_str(),
            taken.token,
            taken.state,
            &taken.last_error
        ),
        ("daemon-1", 1, RunState::Running, &None),
        "a first live lease says running, with no error"
    );
    assert!(
        taken.expires_at > status.now,
        "expires after now: {} <= {}",
        taken.expires_at,
        status.now
    );
    assert!(taken.heartbeat_at <= status.now);
    assert_eq!(
        status.shadow_lease, None,
        "the shadow lease was never taken"
    );

    let reports = [
        (RunState::Idle, None),
        (
            RunState::Stopped,
            Some("event at position 7 cannot be decoded"),
        ),
        (RunState::Running, None),
        (RunState::Rebuilding, Some("a second error")),
    ];
    let mut last_beat = taken.heartbeat_at;
    for (state, error) in reports {
        tokio::time::sleep(Duration::from_millis(20)).await;
        views
            .heartbeat(&daemon, Duration::from_secs(30), state, error)
            .await
            .expect("heartbeat");
        let status = views.status(p).await.expect("status");
        let lease = status.live_lease.expect("the live lease");
        assert_eq!(
            (lease.state, lease.last_error.as_deref()),
            (state, error),
            "the heartbeat's state and last error are shown"
        );
        assert_eq!((lease.holder.as_str(), lease.token), ("daemon-1", 1));
        assert!(
            lease.heartbeat_at > last_beat && lease.heartbeat_at <= status.now,
            "heartbeat_at moves on and is not after now: {} then {}, now {}",
            last_beat,
            lease.heartbeat_at,
            status.now
        );
        assert!(
            lease.expires_at > status.now
                && lease.expires_at <= status.now + chrono::Duration::seconds(30),
            "the lease was extended by the ttl from the heartbeat: expires {}, now {}",
            lease.expires_at,
            status.now
        );
        assert!(
            lease.expires_at >= lease.heartbeat_at + chrono::Duration::milliseconds(29_999),
            "expires_at is heartbeat_at plus the ttl: {} and {}",
            lease.heartbeat_at,
            lease.expires_at
        );
        last_beat = lease.heartbeat_at;
    }
    // Re-taken by its holder, a lease keeps the holder's last report; taken
    // over, it starts afresh (running for a live slot, no error).
    acquire(views, p, Target::Live, "daemon-1", LONG)
        .await
        .expect("its holder re-takes it");
    let lease = views
        .status(p)
        .await
        .expect("status")
        .live_lease
        .expect("the live lease");
    assert_eq!(
        (lease.state, lease.last_error.as_deref()),
        (RunState::Rebuilding, Some("a second error")),
        "a re-take keeps the holder's report"
    );
    views.release_lease(&daemon).await.expect("release_lease");
    acquire(views, p, Target::Live, "daemon-2", LONG)
        .await
        .expect("a released lease is free");
    let lease = views
        .status(p)
        .await
        .expect("status")
        .live_lease
        .expect("the live lease");
    assert_eq!(
        (
            lease.holder.as_str(),
            lease.token,
            lease.state,
            lease.last_error
        ),
        ("daemon-2", 2, RunState::Running, None),
        "a new holder does not inherit the old one's report"
    );

    let other = views.status(Projection::Detail).await.expect("status");
    assert_eq!(
        (other.live_lease, other.shadow_lease),
        (None, None),
        "another projection's leases are its own"
    );
}

/// What the query side serves of one projection.
#[derive(Debug, PartialEq)]
enum Served {
    Detail(Vec<Option<readmodel::TicketDetail>>),
    List(Vec<TicketListRow>),
    Dashboard(Dashboard),
}

async fn served(views: &dyn ViewReader, projection: Projection, ids: &[Uuid]) -> Served {
    match projection {
        Projection::Detail => {
            let mut details = Vec::new();
            for id in ids {
                details.push(ticket(views, *id).await);
            }
            Served::Detail(details)
        }
        Projection::List => Served::List(list_all(views, None).await),
        Projection::Dashboard => Served::Dashboard(dashboard(views).await),
    }
}

/// What the query side serves from `rows` (and, for the dashboard, `counts`).
fn serving(rows: &Rows, counts: Dashboard, ids: &[Uuid]) -> Served {
    match rows {
        Rows::Detail(rows) => Served::Detail(
            ids.iter()
                .map(|id| rows.iter().find(|row| row.id == *id).cloned())
                .collect(),
        ),
        Rows::List(rows) => {
            let mut rows = rows.clone();
            rows.sort_by_key(|row| std::cmp::Reverse((row.created_at, row.id)));
            Served::List(rows)
        }
        Rows::Dashboard(_) => Served::Dashboard(counts),
    }
}

/// A rebuild: `reset_shadow` empties the shadow and marks it building at the
/// projection's version; its commits do not change what the query side
/// serves; `swap_shadow` makes it live (rows, checkpoint, version) and retires
/// the old live slot, whose holder's fence stops writing (the swap renews the live token) and,
/// once re-acquired, gets `CheckpointMoved` for a batch read before; a
/// second reset empties the new shadow (the old live rows) completely.
pub async fn shadow_rebuild_swaps_what_queries_read(
    events: &dyn EventStore,
    views: &dyn ViewStore,
) {
    let desk = open_desk(events).await;
    let ids = [desk.a, desk.b, desk.c];
    let end = head(events).await;
    // The shadow is rebuilt from the events up to b's opening (a at version 2,
    // b at 1, no c), so that the two slots serve visibly different views.
    let shadow_end = read_all(events, 0, 3).await[2].position;
    for projection in Projection::ALL {
        let daemon = fence(views, projection, Target::Live).await;
        assert_eq!(fold_into(events, views, &daemon, 4, end).await, end);
        let live_rows = all_rows(views, projection, Target::Live).await;
        let live_counts = counts(views, Target::Live).await;
        let before = served(views, projection, &ids).await;
        assert_eq!(
            before,
            serving(&live_rows, live_counts, &ids),
            "{projection}: the query side serves the live slot"
        );

        let rebuild = acquire(views, projection, Target::Shadow, "rebuilder", LONG)
            .await
            .expect("the shadow lease is free");
        let lease = views
            .status(projection)
            .await
            .expect("status")
            .shadow_lease
            .expect("the shadow lease");
        assert_eq!(
            (lease.holder.as_str(), lease.state),
            ("rebuilder", RunState::Rebuilding),
            "a first shadow lease says rebuilding"
        );
        let result = views.reset_shadow(&daemon).await;
        assert!(result.is_err(), "a reset with the live fence is refused");
        views.reset_shadow(&rebuild).await.expect("reset_shadow");
        let status = views.status(projection).await.expect("status");
        assert_eq!(
            status.shadow,
            SlotStatus {
                checkpoint: 0,
                version: projection.version(),
                state: SlotState::Building
            },
            "{projection}: a reset shadow is building from 0 at the current version"
        );
        assert_eq!(
            status.live,
            SlotStatus {
                checkpoint: end,
                version: 1,
                state: SlotState::Live
            },
            "{projection}: the reset left the live slot alone"
        );

        assert_eq!(
            fold_into(events, views, &rebuild, 2, shadow_end).await,
            shadow_end
        );
        assert_eq!(
            checkpoint(views, projection, Target::Shadow).await,
            shadow_end
        );
        assert_eq!(checkpoint(views, projection, Target::Live).await, end);
        assert_eq!(
            served(views, projection, &ids).await,
            before,
            "{projection}: commits to the shadow do not change what queries read"
        );
        let shadow_rows = all_rows(views, projection, Target::Shadow).await;
        let shadow_counts = counts(views, Target::Shadow).await;
        assert_eq!(
            shadow_rows.len(),
            2,
            "{projection}: the shadow holds a and b"
        );

        views.swap_shadow(&rebuild).await.expect("swap_shadow");
        let after = served(views, projection, &ids).await;
        assert_eq!(
            after,
            serving(&shadow_rows, shadow_counts, &ids),
            "{projection}: after the swap the query side serves the former shadow"
        );
        assert_ne!(after, before, "{projection}: and that is another view");
        assert_eq!(
            checkpoint(views, projection, Target::Live).await,
            shadow_end,
            "{projection}: the live checkpoint is the former shadow's"
        );
        assert_eq!(all_rows(views, projection, Target::Live).await, shadow_rows);
        assert_eq!(all_rows(views, projection, Target::Shadow).await, live_rows);
        let status = views.status(projection).await.expect("status");
        assert_eq!(
            (status.live, status.shadow),
            (
                SlotStatus {
                    checkpoint: shadow_end,
                    version: projection.version(),
                    state: SlotState::Live
                },
                SlotStatus {
                    checkpoint: end,
                    version: 1,
                    state: SlotState::Retired
                }
            ),
            "{projection}: checkpoints and versions stay with their slots"
        );
        assert!(
            matches!(
                views.swap_shadow(&rebuild).await,
                Err(ViewError::Corrupt(_))
            ),
            "{projection}: a retired shadow cannot be swapped in"
        );

        // The daemon read its batch after the old live checkpoint.
        let late = ViewChanges {
            projection,
            from: end,
            to: end,
            rows: Rows::empty(projection),
            dashboard: Default::default(),
        };
        // The swap renewed the live lease's token: the daemon may have loaded
        // its rows from the old slot, so its fence no longer writes.
        match views.commit(&daemon, late.clone()).await {
            Err(ViewError::LeaseLost { token, .. }) => assert_eq!(token, daemon.token),
            other => panic!("{projection}: a commit with the pre-swap fence: {other:?}"),
        }
        let stale_token = daemon.token;
        let daemon = fence(views, projection, Target::Live).await;
        assert_eq!(
            daemon.token,
            stale_token + 1,
            "{projection}: the same holder re-acquires, with the new token"
        );
        match views.commit(&daemon, late).await {
            Err(ViewError::CheckpointMoved { expected, found }) => {
                assert_eq!((expected, found), (end, shadow_end));
            }
            other => panic!("{projection}: a commit after the old live checkpoint: {other:?}"),
        }
        // It carries on from the new live checkpoint, into the new live slot.
        assert_eq!(fold_into(events, views, &daemon, 4, end).await, end);
        assert_eq!(
            served(views, projection, &ids).await,
            before,
            "{projection}: caught up again, the new live slot serves the same views"
        );

        // A second rebuild starts from an empty shadow: the old live rows go.
        views.reset_shadow(&rebuild).await.expect("reset_shadow");
        assert!(
            all_rows(views, projection, Target::Shadow).await.is_empty(),
            "{projection}: the reset emptied the old live rows"
        );
        assert_eq!(checkpoint(views, projection, Target::Shadow).await, 0);
        if projection == Projection::Dashboard {
            assert_eq!(
                counts(views, Target::Shadow).await,
                Dashboard::default(),
                "the reset zeroed the shadow's counts"
            );
        }
        assert_eq!(
            views.status(projection).await.expect("status").shadow.state,
            SlotState::Building
        );
        assert_eq!(
            served(views, projection, &ids).await,
            before,
            "{projection}: the live slot is untouched by the reset"
        );
    }
}

/// Dead letters: put inserts then updates (reason, time, event, state) at the
/// same (projection, position); lists are ordered by projection name then
/// position; states are set (false when missing); skipped positions are read
/// in a half-open window; `status` counts pending and retry only.
pub async fn dead_letters_are_kept_and_counted(events: &dyn EventStore, views: &dyn ViewStore) {
    let ticket = Uuid::now_v7();
    append(
        events,
        ticket,
        0,
        envelopes(
            &[
                opened("dl"),
                note("one"),
                Event::TicketTriaged,
                note("two"),
                Event::TicketClosed,
                note("three"),
            ],
            0,
        ),
    )
    .await;
    let recorded = read_all(events, 0, 100).await;
    let time = |second: i64| at(second).trunc_subsecs(3);
    let letter = |projection, index: usize, state| {
        DeadLetter::new(
            projection,
            &recorded[index],
            format!("cannot apply event {index}"),
            state,
            time(index as i64),
        )
    };
    let letters = [
        letter(Projection::List, 2, DeadLetterState::Pending),
        letter(Projection::Detail, 4, DeadLetterState::Pending),
        letter(Projection::Detail, 1, DeadLetterState::Pending),
        letter(Projection::Dashboard, 3, DeadLetterState::Pending),
        letter(Projection::Detail, 3, DeadLetterState::Pending),
        letter(Projection::Detail, 5, DeadLetterState::Pending),
    ];
    for letter in &letters {
        views
            .put_dead_letter(letter)
            .await
            .expect("put_dead_letter");
    }
    let all = views.dead_letters(None).await.expect("dead_letters");
    let mut expected = letters.to_vec();
    expected
        .sort_by(|x, y| (x.projection.name(), x.position).cmp(&(y.projection.name(), y.position)));
    assert_eq!(
        all, expected,
        "every dead letter, as put, by projection name then position"
    );

    // A second put at the same place updates it.
    let mut again = letters[1].clone();
    again.reason = "still cannot apply it".into();
    again.recorded_at = time(60);
    again.state = DeadLetterState::Retry;
    again.event["retried"] = serde_json::json!(true);
    views
        .put_dead_letter(&again)
        .await
        .expect("put_dead_letter");
    let detail = views
        .dead_letters(Some(Projection::Detail))
        .await
        .expect("dead_letters");
    let positions: Vec<Position> = detail.iter().map(|l| l.position).collect();
    let p = |index: usize| recorded[index].position;
    assert_eq!(
        positions,
        vec![p(1), p(3), p(4), p(5)],
        "one projection's, by position, the updated one still once"
    );
    assert_eq!(
        detail.iter().find(|l| l.position == p(4)),
        Some(&again),
        "the second put updated reason, time, event and state"
    );
    assert_eq!(
        views
            .dead_letters(Some(Projection::Dashboard))
            .await
            .expect("dead_letters"),
        vec![letters[3].clone()]
    );

    for (index, state) in [
        (1, DeadLetterState::Skipped),
        (3, DeadLetterState::Resolved),
        (5, DeadLetterState::Skipped),
    ] {
        assert!(
            views
                .set_dead_letter_state(Projection::Detail, p(index), state)
                .await
                .expect("set_dead_letter_state"),
            "an existing dead letter's state is set"
        );
    }
    assert!(
        !views
            .set_dead_letter_state(Projection::Detail, p(2), DeadLetterState::Skipped)
            .await
            .expect("set_dead_letter_state"),
        "no detail dead letter at that position (list has one)"
    );
    assert!(
        !views
            .set_dead_letter_state(Projection::Detail, 10_000, DeadLetterState::Retry)
            .await
            .expect("set_dead_letter_state"),
        "no dead letter at all"
    );
    assert!(
        views
            .set_dead_letter_state(Projection::List, p(2), DeadLetterState::Skipped)
            .await
            .expect("set_dead_letter_state")
    );
    let states: Vec<(Position, DeadLetterState)> = views
        .dead_letters(Some(Projection::Detail))
        .await
        .expect("dead_letters")
        .iter()
        .map(|l| (l.position, l.state))
        .collect();
    assert_eq!(
        states,
        vec![
            (p(1), DeadLetterState::Skipped),
            (p(3), DeadLetterState::Resolved),
            (p(4), DeadLetterState::Retry),
            (p(5), DeadLetterState::Skipped),
        ]
    );

    let skipped = |after: Position, up_to: Position| async move {
        views
            .skipped_positions(Projection::Detail, after, up_to)
            .await
            .expect("skipped_positions")
    };
    assert_eq!(skipped(0, p(5)).await, HashSet::from([p(1), p(5)]));
    assert_eq!(
        skipped(p(1), p(5)).await,
        HashSet::from([p(5)]),
        "`after` is excluded"
    );
    assert_eq!(
        skipped(0, p(1)).await,
        HashSet::from([p(1)]),
        "`up_to` is included"
    );
    assert_eq!(skipped(p(1), p(4)).await, HashSet::new(), "none in between");
    let inputs = views
        .batch_inputs(Projection::Detail, Target::Live, &[], 0, p(5))
        .await
        .expect("batch_inputs");
    assert_eq!(
        (inputs.rows, inputs.skipped),
        (Rows::Detail(Vec::new()), HashSet::from([p(1), p(5)])),
        "batch_inputs reads the skipped positions skipped_positions reads"
    );
    assert_eq!(
        views
            .skipped_positions(Projection::List, 0, 100)
            .await
            .expect("skipped_positions"),
        HashSet::from([p(2)]),
        "another projection's skips are its own"
    );

    let pending = |projection| async move {
        views
            .status(projection)
            .await
            .expect("status")
            .dead_letters_pending
    };
    assert_eq!(
        pending(Projection::Detail).await,
        1,
        "pending and retry count, skipped and resolved do not"
    );
    assert_eq!(pending(Projection::Dashboard).await, 1);
    assert_eq!(pending(Projection::List).await, 0);
    views
        .put_dead_letter(&letter(Projection::Detail, 0, DeadLetterState::Pending))
        .await
        .expect("put_dead_letter");
    assert_eq!(pending(Projection::Detail).await, 2);
}
