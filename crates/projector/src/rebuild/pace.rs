//! How a rebuild shares the store's write lock with the writers of a live
//! service.
//!
//! On SQLite one connection at a time may write, across processes, and a
//! writer that finds the lock taken waits in SQLite's busy handler: it sleeps
//! 1, 2, 5, 10, 15, 20, 25 ms … between tries, up to its busy timeout, with
//! no queue and no turn kept. A rebuild that commits back to back therefore
//! starves `ticketd`'s appends, however short each commit. Two rules keep a
//! rebuild out of their way:
//!
//! - each commit is sized to hold the lock for about [`TARGET`] while other
//!   writers are active, and [`QUIET_TARGET`] while none are: the rebuild
//!   measures how long its commits take per unit (a ticket's row in the
//!   by-ticket pass, an event in the global-order replay) and sizes the next
//!   one from that. A commit's time includes any wait for the lock, which
//!   says nothing of the commit's own cost, so the estimate is the least
//!   per-unit time of the last [`WINDOW`] commits: waits neither shrink the
//!   commits nor lengthen the pauses;
//! - after each commit it leaves the lock alone for a while: twice the
//!   estimated hold while other writers are active (the event store's head
//!   moved in the last second), so they find the lock free on about two
//!   tries in three; a quarter of it on a quiet store, so a first writer gets
//!   in and makes the head move.
//!
//! On MongoDB there is no such lock; the same pacing costs a rebuild the
//! pauses and nothing else.

use std::time::{Duration, Instant};

use eventstore::Position;

/// About how long one of a rebuild's commits should hold the write lock
/// while other writers are active.
pub(crate) const TARGET: Duration = Duration::from_millis(8);

/// The same on a quiet store: nobody waits for the lock, and bigger commits
/// spread each page a commit dirties (and logs) over more rows. The first
/// writer to come waits out at most one such commit; from the next commit on
/// the rebuild is back at [`TARGET`].
pub(crate) const QUIET_TARGET: Duration = Duration::from_millis(50);

/// How long after the head last moved other writers count as active.
const ACTIVE_FOR: Duration = Duration::from_secs(1);

/// Commits whose per-unit time the estimate takes the least of.
const WINDOW: usize = 16;

/// A rebuild's commit sizes and the pauses between its commits.
#[derive(Debug, Clone)]
pub(crate) struct Pace {
    size: usize,
    min: usize,
    max: usize,
    head: Option<Position>,
    active_until: Option<Instant>,
    /// Seconds per unit of the last [`WINDOW`] commits, oldest first.
    per_unit: std::collections::VecDeque<f64>,
}

impl Pace {
    /// Starts at `start` units per commit, never fewer than `min` nor more
    /// than `max`.
    pub(crate) fn new(start: usize, min: usize, max: usize) -> Self {
        let max = max.max(1);
        let min = min.clamp(1, max);
        Self {
            size: start.clamp(min, max),
            min,
            max,
            head: None,
            active_until: None,
            per_unit: std::collections::VecDeque::with_capacity(WINDOW),
        }
    }

    /// Units for the next commit.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Takes note of a commit of `units` that took `took`, with the event
    /// store's head seen after it; returns the pause before the next commit.
    pub(crate) fn committed(&mut self, units: usize, took: Duration, head: Position) -> Duration {
        let now = Instant::now();
        if self.head.is_some_and(|before| head > before) {
            self.active_until = Some(now + ACTIVE_FOR);
        }
        self.head = Some(head);
        if units == 0 {
            return Duration::from_millis(1);
        }
        if self.per_unit.len() == WINDOW {
            self.per_unit.pop_front();
        }
        self.per_unit
            .push_back(took.as_secs_f64().max(1e-7) / units as f64);
        let per_unit = self.per_unit.iter().copied().fold(f64::INFINITY, f64::min);
        let held = Duration::from_secs_f64(per_unit * units as f64);
        let active = self.active_until.is_some_and(|until| now < until);
        {
            let target = if active { TARGET } else { QUIET_TARGET };
            let ideal = (target.as_secs_f64() / per_unit) as usize;
            // At most grown by half per commit, and halved while quiet: one
            // slow commit (a checkpoint of the log, a busy disk) does not
            // swing it. Writers that have just come get the small commits
            // at once.
            let low = if active {
                self.min
            } else {
                (self.size / 2).max(self.min)
            };
            let high = (self.size + self.size / 2 + 1).min(self.max);
            self.size = ideal.clamp(low.min(high), high);
        }
        let pause = if active { held * 2 } else { held / 4 };
        pause.max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_sized_toward_the_target() {
        let mut pace = Pace::new(100, 1, 10_000);
        // On a quiet store: 100 units in twice the quiet target, so halved.
        pace.committed(100, QUIET_TARGET * 2, 0);
        assert_eq!(pace.size(), 50);
        // 50 units in a quarter of it: grown by half at most.
        pace.committed(50, QUIET_TARGET / 4, 0);
        assert_eq!(pace.size(), 76);
        // A commit that waited for the lock: the estimate keeps the best.
        pace.committed(76, Duration::from_secs(1), 0);
        assert_eq!(pace.size(), 115);
        // Never past the bounds.
        let mut pace = Pace::new(5, 4, 6);
        pace.committed(5, Duration::from_secs(1), 0);
        assert_eq!(pace.size(), 4);
        let mut pace = Pace::new(5, 4, 6);
        pace.committed(5, Duration::from_micros(1), 0);
        assert_eq!(pace.size(), 6);
    }

    #[test]
    fn writers_coming_shrink_the_next_commit_to_the_target_at_once() {
        let mut pace = Pace::new(1000, 1, 10_000);
        // Quiet: 1000 units in the quiet target stay 1000.
        pace.committed(1000, QUIET_TARGET, 10);
        assert_eq!(pace.size(), 1000);
        // The head moved: the next commit holds the lock for TARGET, not
        // half of what the last one did.
        pace.committed(1000, QUIET_TARGET, 11);
        let expected = (TARGET.as_secs_f64() / (QUIET_TARGET.as_secs_f64() / 1000.0)) as usize;
        assert_eq!(pace.size(), expected);
        assert!(expected < 500);
    }

    #[test]
    fn the_pause_is_longer_while_the_head_moves() {
        let mut pace = Pace::new(100, 1, 10_000);
        let took = Duration::from_millis(8);
        let near = |a: Duration, ms: u64| (a.as_secs_f64() * 1e3 - ms as f64).abs() < 1e-3;
        assert!(near(pace.committed(100, took, 10), 2));
        assert!(near(pace.committed(100, took, 10), 2));
        assert!(near(pace.committed(100, took, 11), 16));
        // Still active a moment later, though the head stood still; a
        // commit that waited for the lock pauses for the estimated hold.
        assert!(near(pace.committed(100, took * 10, 11), 16));
        assert!(near(pace.committed(0, took, 11), 1));
    }
}
