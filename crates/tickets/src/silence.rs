//! Refusing at once while a store answers nothing.
//!
//! A request that meets a store which has stopped answering (MongoDB
//! unreachable, SQLite's write lock held by another process) waits for the
//! store's own bound before it answers 503: SQLite's busy timeout, MongoDB's
//! queue wait or operation deadline, 5 to 10 s. Every request arriving
//! meanwhile would queue behind it and wait as long, holding a connection and
//! an in-flight place each.
//!
//! A [`Silence`] watches one kind of call (appends, event reads, view reads:
//! on SQLite a held write lock stops appends while both kinds of reads still
//! answer). The store is *silent* for that kind when a call has been waiting
//! longer than the bound and no call of the kind has been answered for as
//! long. While it is silent, a new call is refused at once with
//! `Unavailable` (so 503 with `Retry-After`); the calls already waiting go on
//! to their own bound. Once no call waits any more, the next one goes
//! through as a probe: answered, the store is no longer silent.
//!
//! Only the request path of `ticketd` is watched. The projector waits out a
//! silent store with its own backoff, and the change feed's long reads are
//! meant to wait.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use eventstore::Forwarding;
use eventstore::{ContractError, EventStore, NewEvent, Position, RecordedEvent, StoreError};
use readmodel::{
    CheckpointWatch, Dashboard, ListQuery, Projection, Target, TicketDetail, TicketListRow,
    ViewError, ViewReader,
};
use tokio::time::Instant;
use uuid::Uuid;

/// What a refused call says: which calls, and for how long the store has
/// answered none of them.
#[derive(Debug, thiserror::Error)]
#[error(
    "the store has answered no {kind} for {silent_for:.1?} while one waits; refused at once \
     rather than queued behind it"
)]
pub struct Silent {
    kind: &'static str,
    silent_for: Duration,
}

/// Watches one kind of call to one store (see the module doc).
#[derive(Debug)]
pub struct Silence {
    kind: &'static str,
    bound: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// When each waiting call began, by a number of its own.
    waiting: HashMap<u64, Instant>,
    next: u64,
    /// When a call was last answered (by the store: a refusal of this
    /// module's or a bound running out is no answer).
    last_answer: Instant,
}

impl Silence {
    /// Watches calls of `kind` (named in the refusal); `bound` of zero
    /// refuses nothing.
    pub fn new(kind: &'static str, bound: Duration) -> Self {
        Self {
            kind,
            bound,
            state: Mutex::new(State {
                waiting: HashMap::new(),
                next: 0,
                last_answer: Instant::now(),
            }),
        }
    }

    /// Runs `call`, unless the store is silent for this kind of call.
    /// `answered` says whether an outcome came from the store (anything but
    /// `Unavailable`).
    pub async fn run<T, E: ContractError>(
        &self,
        call: impl Future<Output = Result<T, E>>,
        answered: impl Fn(&Result<T, E>) -> bool,
    ) -> Result<T, E> {
        let waiting = self
            .enter()
            .map_err(|silent| E::unavailable_boxed(Box::new(silent)))?;
        let outcome = call.await;
        if answered(&outcome) {
            waiting.answered();
        }
        outcome
    }

    fn enter(&self) -> Result<Waiting<'_>, Silent> {
        let now = Instant::now();
        let mut state = self.lock();
        let silent_for = now.saturating_duration_since(state.last_answer);
        let long_waiter = state
            .waiting
            .values()
            .any(|began| now.saturating_duration_since(*began) > self.bound);
        if !self.bound.is_zero() && long_waiter && silent_for > self.bound {
            return Err(Silent {
                kind: self.kind,
                silent_for,
            });
        }
        let id = state.next;
        state.next += 1;
        state.waiting.insert(id, now);
        Ok(Waiting { silence: self, id })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while it was held:
        // every change to it is a single insert, remove or assignment.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A call in progress; leaves the waiting set when dropped, also when the
/// call's future is dropped mid-way.
struct Waiting<'a> {
    silence: &'a Silence,
    id: u64,
}

impl Waiting<'_> {
    fn answered(&self) {
        self.silence.lock().last_answer = Instant::now();
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.silence.lock().waiting.remove(&self.id);
    }
}

fn store_answered<T>(outcome: &Result<T, StoreError>) -> bool {
    !matches!(outcome, Err(StoreError::Unavailable(_)))
}

fn view_answered<T>(outcome: &Result<T, ViewError>) -> bool {
    !matches!(outcome, Err(ViewError::Unavailable(_)))
}

/// An event store whose appends and reads are each watched by a
/// [`Silence`]; `wait_for_events`, a wait by design, is not.
pub struct WatchedEvents {
    inner: Arc<dyn EventStore>,
    appends: Silence,
    reads: Silence,
}

impl WatchedEvents {
    pub fn new(inner: Arc<dyn EventStore>, bound: Duration) -> Self {
        Self {
            inner,
            appends: Silence::new("append", bound),
            reads: Silence::new("event read", bound),
        }
    }
}

impl fmt::Debug for WatchedEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedEvents")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Forwarding for WatchedEvents {
    fn inner(&self) -> &dyn EventStore {
        self.inner.as_ref()
    }

    async fn append(
        &self,
        ticket_id: Uuid,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let append = self.inner.append(ticket_id, expected_version, events);
        self.appends.run(append, store_answered).await
    }

    async fn read_stream(&self, ticket_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        let read = self.inner.read_stream(ticket_id);
        self.reads.run(read, store_answered).await
    }

    async fn read_idempotent(&self, key: &str) -> Result<Option<RecordedEvent>, StoreError> {
        let read = self.inner.read_idempotent(key);
        self.reads.run(read, store_answered).await
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let read = self.inner.read_all(after, limit);
        self.reads.run(read, store_answered).await
    }

    async fn read_by_ticket(
        &self,
        after: Option<(Uuid, u64)>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let read = self.inner.read_by_ticket(after, limit);
        self.reads.run(read, store_answered).await
    }

    async fn head(&self) -> Result<Position, StoreError> {
        self.reads.run(self.inner.head(), store_answered).await
    }
}

/// The query side's view reads, watched by a [`Silence`].
pub struct WatchedViews {
    inner: Arc<dyn ViewReader>,
    reads: Silence,
}

impl WatchedViews {
    pub fn new(inner: Arc<dyn ViewReader>, bound: Duration) -> Self {
        Self {
            inner,
            reads: Silence::new("view read", bound),
        }
    }
}

impl fmt::Debug for WatchedViews {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedViews")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ViewReader for WatchedViews {
    async fn ticket(&self, id: Uuid) -> Result<Option<TicketDetail>, ViewError> {
        self.reads.run(self.inner.ticket(id), view_answered).await
    }

    async fn list_nonempty(&self, query: &ListQuery) -> Result<Vec<TicketListRow>, ViewError> {
        self.reads.run(self.inner.list(query), view_answered).await
    }

    async fn dashboard(&self) -> Result<Dashboard, ViewError> {
        self.reads.run(self.inner.dashboard(), view_answered).await
    }

    async fn checkpoint(
        &self,
        projection: Projection,
        target: Target,
    ) -> Result<Position, ViewError> {
        let read = self.inner.checkpoint(projection, target);
        self.reads.run(read, view_answered).await
    }

    fn watch_live_checkpoint(&self, projection: Projection) -> Box<dyn CheckpointWatch> {
        self.inner.watch_live_checkpoint(projection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_millis(100);

    /// A call that takes `wait`, then answers.
    async fn call(wait: Duration) -> Result<(), StoreError> {
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// A call that takes `wait`, then runs out of its own bound.
    async fn unanswered(wait: Duration) -> Result<(), StoreError> {
        tokio::time::sleep(wait).await;
        Err(StoreError::unavailable(std::io::Error::other("deadline")))
    }

    fn refused(outcome: &Result<(), StoreError>) -> bool {
        matches!(outcome, Err(StoreError::Unavailable(why)) if why.to_string().contains("refused at once"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waiting_past_the_bound_with_no_answer_meanwhile_refuses_new_ones() {
        let silence = Arc::new(Silence::new("append", BOUND));
        let stuck = {
            let silence = silence.clone();
            tokio::spawn(async move {
                silence
                    .run(unanswered(Duration::from_secs(5)), store_answered)
                    .await
            })
        };
        tokio::time::sleep(BOUND / 2).await;
        // Within the bound: a new call still goes through (and waits too).
        let early = silence.run(call(Duration::ZERO), store_answered).await;
        assert!(early.is_ok());
        // That answer counts: the store is not silent for another bound.
        tokio::time::sleep(BOUND).await;
        assert!(
            silence
                .run(call(Duration::ZERO), store_answered)
                .await
                .is_ok()
        );
        // Past the bound with no answer: refused at once, with no wait.
        tokio::time::sleep(BOUND * 2).await;
        let before = tokio::time::Instant::now();
        let outcome = silence
            .run(call(Duration::from_secs(1)), store_answered)
            .await;
        assert!(refused(&outcome), "{outcome:?}");
        assert_eq!(before.elapsed(), Duration::ZERO);
        // The stuck call runs out; nothing waits now, so the next call is a
        // probe that goes through, and its answer ends the silence.
        assert!(stuck.await.expect("the stuck call").is_err());
        let probe = silence
            .run(call(Duration::from_millis(10)), store_answered)
            .await;
        assert!(probe.is_ok());
        assert!(
            silence
                .run(call(Duration::ZERO), store_answered)
                .await
                .is_ok()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_call_does_not_refuse_others_while_calls_are_answered() {
        let silence = Arc::new(Silence::new("view read", BOUND));
        let slow = {
            let silence = silence.clone();
            tokio::spawn(async move { silence.run(call(BOUND * 10), store_answered).await })
        };
        for _ in 0..20 {
            tokio::time::sleep(BOUND / 4).await;
            assert!(
                silence
                    .run(call(Duration::from_millis(1)), store_answered)
                    .await
                    .is_ok()
            );
        }
        assert!(slow.await.expect("the slow call").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_call_stops_waiting_and_a_zero_bound_refuses_nothing() {
        let silence = Silence::new("append", BOUND);
        let dropped =
            tokio::time::timeout(BOUND / 2, silence.run(call(BOUND * 10), store_answered)).await;
        assert!(dropped.is_err(), "cut off");
        tokio::time::sleep(BOUND * 3).await;
        assert!(
            silence
                .run(call(Duration::ZERO), store_answered)
                .await
                .is_ok()
        );

        let off = Arc::new(Silence::new("append", Duration::ZERO));
        let stuck = {
            let off = off.clone();
            tokio::spawn(async move { off.run(unanswered(BOUND * 10), store_answered).await })
        };
        tokio::time::sleep(BOUND * 5).await;
        assert!(off.run(call(Duration::ZERO), store_answered).await.is_ok());
        stuck.abort();
    }
}
