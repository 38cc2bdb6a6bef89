//! What the write side knows of a ticket between commands, and the bounded
//! cache that keeps it.
//!
//! Deciding a command needs the ticket's folded state and its version;
//! answering needs its detail view. Reading and folding the whole stream for
//! every command costs a database read per write, so the service keeps the
//! result of its last command per ticket ([`Known`]) in a small cache and
//! reads the stream only on a miss.
//!
//! The cache is only ever a guess: another instance (or another process on
//! the same SQLite file) may have appended since. That is safe because the
//! append is guarded by the version the decision was made on: a stale entry
//! loses the append with a conflict, is forgotten, and the retry decides on
//! the stream as stored. An `If-Match` that disagrees with a cached version
//! is checked again against the store before it is refused.
//!
//! The bound is a two-generation map: new entries go to the young map; when
//! it holds half the capacity it becomes the old one (the previous old one is
//! dropped), and a hit in the old map moves the entry back. Recently used
//! tickets stay; memory stays under `capacity` entries; no LRU list to keep.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use domain::{Event, TicketState, evolve, fold};
use eventstore::{Position, RecordedEvent};
use readmodel::{TicketDetail, project};
use uuid::Uuid;

/// A ticket after its event at `version`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Known {
    pub(crate) version: u64,
    /// The global position of the ticket's last event.
    pub(crate) position: Position,
    /// When the ticket's last event occurred.
    pub(crate) occurred_at: DateTime<Utc>,
    /// The folded state `decide` works on.
    pub(crate) state: TicketState,
    /// The detail view, as the projector folds it.
    pub(crate) detail: TicketDetail,
}

impl Known {
    /// Folds a stream (in version order, decoded as `history`); `None` for an
    /// empty stream.
    pub(crate) fn from_stream(
        recorded: &[RecordedEvent],
        history: &[Event],
    ) -> Result<Option<Known>, String> {
        let Some(last) = recorded.last() else {
            return Ok(None);
        };
        let detail = fold_detail(None, recorded)?
            .ok_or_else(|| format!("ticket {}: its events fold to no ticket", last.ticket_id))?;
        Ok(Some(Known {
            version: last.version,
            position: last.position,
            occurred_at: last.occurred_at,
            state: fold(history),
            detail,
        }))
    }

    /// The ticket after `appended`, the recorded form of `decided`.
    pub(crate) fn after(
        known: Option<&Known>,
        appended: &[RecordedEvent],
        decided: &[Event],
    ) -> Result<Option<Known>, String> {
        let Some(last) = appended.last() else {
            return Ok(known.cloned());
        };
        let state = decided.iter().fold(
            known.map_or(TicketState::Missing, |known| known.state.clone()),
            evolve,
        );
        let detail = fold_detail(known.map(|known| known.detail.clone()), appended)?
            .ok_or_else(|| format!("ticket {}: its events fold to no ticket", last.ticket_id))?;
        Ok(Some(Known {
            version: last.version,
            position: last.position,
            occurred_at: last.occurred_at,
            state,
            detail,
        }))
    }
}

/// Folds `recorded` into `view`, as the projector does.
pub(crate) fn fold_detail(
    mut view: Option<TicketDetail>,
    recorded: &[RecordedEvent],
) -> Result<Option<TicketDetail>, String> {
    for event in recorded {
        if let Some(next) = project(view.as_ref(), event)
            .map_err(|error| format!("ticket {}: {error}", event.ticket_id))?
        {
            view = Some(next);
        }
    }
    Ok(view)
}

/// A bounded map of the tickets this service wrote last.
#[derive(Debug)]
pub(crate) struct KnownCache {
    /// Entries per generation; 0 turns the cache off.
    half: usize,
    generations: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    young: HashMap<Uuid, Known>,
    old: HashMap<Uuid, Known>,
}

impl KnownCache {
    /// A cache of at most `capacity` tickets (0: no cache).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            half: capacity.div_ceil(2),
            generations: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Generations> {
        // Every operation leaves the maps consistent; a panic elsewhere
        // while holding the lock cannot break them.
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, ticket_id: Uuid) -> Option<Known> {
        if self.half == 0 {
            return None;
        }
        let mut generations = self.lock();
        if let Some(known) = generations.young.get(&ticket_id) {
            return Some(known.clone());
        }
        let known = generations.old.remove(&ticket_id)?;
        self.insert(&mut generations, ticket_id, known.clone());
        Some(known)
    }

    /// Keeps `known` unless a newer version of the ticket is already kept
    /// (commands on one ticket may finish out of order).
    pub(crate) fn put(&self, ticket_id: Uuid, known: Known) {
        if self.half == 0 {
            return;
        }
        let mut generations = self.lock();
        let newer_kept = generations
            .young
            .get(&ticket_id)
            .or_else(|| generations.old.get(&ticket_id))
            .is_some_and(|kept| kept.version >= known.version);
        if !newer_kept {
            generations.old.remove(&ticket_id);
            self.insert(&mut generations, ticket_id, known);
        }
    }

    pub(crate) fn forget(&self, ticket_id: Uuid) {
        let mut generations = self.lock();
        generations.young.remove(&ticket_id);
        generations.old.remove(&ticket_id);
    }

    fn insert(&self, generations: &mut Generations, ticket_id: Uuid, known: Known) {
        generations.young.insert(ticket_id, known);
        if generations.young.len() >= self.half {
            generations.old = std::mem::take(&mut generations.young);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let generations = self.lock();
        generations.young.len() + generations.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(version: u64) -> Known {
        let at = Utc::now();
        Known {
            version,
            position: version,
            occurred_at: at,
            state: TicketState::Missing,
            detail: TicketDetail {
                id: Uuid::nil(),
                customer: "c".into(),
                subject: "s".into(),
                message: "m".into(),
                status: domain::Status::Open,
                agent: None,
                notes: Vec::new(),
                version,
                created_at: at,
                updated_at: at,
            },
        }
    }

    #[test]
    fn the_cache_stays_bounded_and_keeps_what_is_used() {
        let cache = KnownCache::new(10);
        let hot = Uuid::now_v7();
        cache.put(hot, known(1));
        for _ in 0..100 {
            cache.put(Uuid::now_v7(), known(1));
            assert!(cache.get(hot).is_some(), "a ticket in use stays");
            assert!(cache.len() <= 10, "{}", cache.len());
        }
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let cache = KnownCache::new(10);
        let id = Uuid::now_v7();
        cache.put(id, known(3));
        cache.put(id, known(2));
        assert_eq!(cache.get(id).map(|k| k.version), Some(3));
        cache.put(id, known(4));
        assert_eq!(cache.get(id).map(|k| k.version), Some(4));
        cache.forget(id);
        assert_eq!(cache.get(id), None);
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let cache = KnownCache::new(0);
        let id = Uuid::now_v7();
        cache.put(id, known(1));
        assert_eq!(cache.get(id), None);
    }
}
