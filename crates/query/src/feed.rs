//! The list view's change feed: one [`ListChange`] per event the live List
//! projection has applied, in position order, resumable from any position.
//!
//! Every event changes its ticket's list row (at least its version), so the
//! feed is the event log cut at the List projection's live checkpoint: an
//! event is handed out only once that checkpoint has reached its position.
//! The checkpoint is the projector's progress (committed with the rows it
//! covers), so a change is never announced before `GET /tickets` can show
//! it, whichever process runs the projector, and never because a write
//! happened in this process.
//!
//! Cost: the checkpoint is read at most once per poll interval per process,
//! however many subscriptions wait on it ([`ChangeFeed::checkpoint`] shares
//! the last read); each subscription then reads the new events with one
//! `read_all` per batch. The status after an event comes from the event when
//! it sets one; otherwise from a small bounded per-subscription cache of each
//! ticket's last (version, status), and on a miss from folding that ticket's
//! stream (one `read_stream`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::{Event, Status, Ticket, TicketState, evolve};
use eventstore::{EventStore, Position, RecordedEvent, StoreError};
use readmodel::{Projection, Target, ViewError, ViewReader};
use tokio::time::Instant;
use uuid::Uuid;

/// How often waiting subscriptions look at the List checkpoint.
pub const DEFAULT_FEED_POLL: Duration = Duration::from_millis(25);
/// Most events a subscription reads from the store at once.
pub const DEFAULT_FEED_BATCH: usize = 200;
/// How many events a second one subscription reads while it catches up
/// from far back (more than one batch behind the checkpoint).
pub const DEFAULT_REPLAY_RATE: u32 = 5_000;
/// Tickets whose last status a subscription remembers.
const STATUS_CACHE_CAPACITY: usize = 4096;

/// One applied change to the list view: the ticket's row after the event at
/// `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListChange {
    /// The event's global position: where a client resumes after.
    pub position: Position,
    pub id: Uuid,
    /// The ticket's version after the event.
    pub version: u64,
    /// The ticket's status after the event.
    pub status: Status,
}

/// Why the feed stopped. Either way the subscription is over: the client
/// subscribes again after the last position it received.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The event store failed while reading the changes.
    #[error("reading events for the change feed: {0}")]
    Events(#[from] StoreError),
    /// The view store failed while reading the List checkpoint.
    #[error("reading the list checkpoint for the change feed: {0}")]
    Views(#[from] ViewError),
}

/// The source of [`Subscription`]s, shared by all of them (one per process).
#[derive(Debug)]
pub struct ChangeFeed {
    events: Arc<dyn EventStore>,
    views: Arc<dyn ViewReader>,
    poll: Duration,
    batch: usize,
    /// Events a second a catching-up subscription reads, at most.
    replay_rate: u32,
    /// The last checkpoint read and when: subscriptions waiting together
    /// share one read per poll interval. Never held across an await.
    last_checkpoint: Mutex<Option<(Instant, Position)>>,
}

impl ChangeFeed {
    pub fn new(events: Arc<dyn EventStore>, views: Arc<dyn ViewReader>) -> Self {
        Self {
            events,
            views,
            poll: DEFAULT_FEED_POLL,
            batch: DEFAULT_FEED_BATCH,
            replay_rate: DEFAULT_REPLAY_RATE,
            last_checkpoint: Mutex::new(None),
        }
    }

    /// Sets how often waiting subscriptions look at the checkpoint.
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Sets how many events a subscription reads at once (at least one).
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }

    /// Sets how many events a second a subscription reads while it catches
    /// up from far back (at least one). A client resuming a long history is
    /// paced so that it cannot take the store's read capacity from others;
    /// a subscription within one batch of the checkpoint is not paced.
    pub fn with_replay_rate(mut self, events_per_second: u32) -> Self {
        self.replay_rate = events_per_second.max(1);
        self
    }

    /// The live List checkpoint: the last position the list view reflects.
    /// A value read less than a poll interval ago is reused.
    pub async fn checkpoint(&self) -> Result<Position, FeedError> {
        if let Some((read_at, position)) = *self.last_read()
            && read_at.elapsed() < self.poll
        {
            return Ok(position);
        }
        // Read without holding the lock: a subscription whose client stops
        // reading is parked wherever it awaits, and must not hold up the
        // others. Subscriptions that find the value stale at the same
        // moment may each read it; that is the rare case.
        let position = self
            .views
            .checkpoint(Projection::List, Target::Live)
            .await?;
        *self.last_read() = Some((Instant::now(), position));
        Ok(position)
    }

    fn last_read(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Position)>> {
        // The value is a plain copy: a panic elsewhere cannot leave it torn.
        self.last_checkpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The changes after `after`, as the List projection applies them.
    pub fn subscribe(self: &Arc<Self>, after: Position) -> Subscription {
        Subscription {
            feed: Arc::clone(self),
            after,
            read_to: after,
            checkpoint: after,
            pending: VecDeque::new(),
            statuses: StatusCache::default(),
            paced_until: None,
        }
    }
}

/// One client's place in the feed.
#[derive(Debug)]
pub struct Subscription {
    feed: Arc<ChangeFeed>,
    /// The position of the last change handed out.
    after: Position,
    /// The last position read from the store (`pending` holds the changes
    /// in (`after`, `read_to`]).
    read_to: Position,
    /// The List checkpoint last seen: nothing above it is read.
    checkpoint: Position,
    pending: VecDeque<ListChange>,
    statuses: StatusCache,
    /// While catching up: the earliest the next batch may be read.
    paced_until: Option<Instant>,
}

impl Subscription {
    /// The position of the last change handed out (where it started, before
    /// the first).
    pub fn position(&self) -> Position {
        self.after
    }

    /// The next change, waiting as long as the List projection has not
    /// applied one. Cancel-safe: dropping the future loses no change.
    pub async fn next(&mut self) -> Result<ListChange, FeedError> {
        loop {
            if let Some(change) = self.pending.pop_front() {
                self.after = change.position;
                return Ok(change);
            }
            if self.read_to < self.checkpoint {
                self.pace().await;
                if self.read_batch().await? {
                    continue;
                }
                // The store showed nothing below a checkpoint it must cover
                // (a replica behind?): look again after a pause.
                tokio::time::sleep(self.feed.poll).await;
                continue;
            }
            let checkpoint = self.feed.checkpoint().await?;
            if checkpoint > self.read_to {
                self.checkpoint = checkpoint;
            } else {
                // A checkpoint below ours (a rebuild swapped in a slot that
                // had not got as far) is waited out like an unmoved one.
                tokio::time::sleep(self.feed.poll).await;
            }
        }
    }

    /// Waits, while more than a batch behind the checkpoint, until the
    /// replay rate allows the next batch, and books that batch's time.
    /// Cancel-safe: a cancelled wait leaves the booking as it was.
    async fn pace(&mut self) {
        let batch = self.feed.batch as u64;
        if self.checkpoint - self.read_to <= batch {
            self.paced_until = None;
            return;
        }
        if let Some(until) = self.paced_until {
            tokio::time::sleep_until(until).await;
        }
        let spacing = Duration::from_secs_f64(batch as f64 / f64::from(self.feed.replay_rate));
        self.paced_until = Some(Instant::now() + spacing);
    }

    /// Reads the next batch up to the checkpoint into `pending`; false when
    /// the store had nothing to give. State changes only after every await,
    /// so a cancelled call leaves the subscription as it was.
    async fn read_batch(&mut self) -> Result<bool, FeedError> {
        let room = (self.checkpoint - self.read_to).min(self.feed.batch as u64) as usize;
        let events = self.feed.events.read_all(self.read_to, room).await?;
        let mut changes = Vec::with_capacity(events.len());
        let mut last = self.read_to;
        let checkpoint = self.checkpoint;
        for event in events
            .iter()
            .take_while(|event| event.position <= checkpoint)
        {
            if let Some(change) = self.change_for(event).await? {
                changes.push(change);
            }
            last = event.position;
        }
        self.pending.extend(changes);
        let progressed = last > self.read_to;
        self.read_to = last;
        Ok(progressed)
    }

    /// The list row's (version, status) after `event`; `None` when the
    /// ticket has no row (an unreadable first event the projection skipped).
    async fn change_for(&mut self, event: &RecordedEvent) -> Result<Option<ListChange>, FeedError> {
        // An event this build cannot decode is behind the checkpoint only
        // because ops skipped it: it moves the version and nothing else.
        let decoded = event.decode().ok();
        let status = match decoded.as_ref().and_then(status_change) {
            Some(status) => Some(status),
            None => {
                let previous = if event.version <= 1 {
                    Some(TicketState::Missing)
                } else {
                    self.statuses
                        .get(event.ticket_id, event.version - 1)
                        .map(exists)
                };
                match previous {
                    Some(state) => status_of(&match &decoded {
                        Some(decoded) => evolve(state, decoded),
                        None => state,
                    }),
                    None => self.fold_status(event.ticket_id, event.version).await?,
                }
            }
        };
        let Some(status) = status else {
            return Ok(None);
        };
        self.statuses.put(event.ticket_id, event.version, status);
        Ok(Some(ListChange {
            position: event.position,
            id: event.ticket_id,
            version: event.version,
            status,
        }))
    }

    /// The ticket's status after its event `version`, folded from its stream.
    async fn fold_status(&self, id: Uuid, version: u64) -> Result<Option<Status>, FeedError> {
        let stream = self.feed.events.read_stream(id).await?;
        let state = stream
            .iter()
            .take_while(|event| event.version <= version)
            .filter_map(|event| event.decode().ok())
            .fold(TicketState::Missing, |state, event| evolve(state, &event));
        Ok(status_of(&state))
    }
}

/// The status an event sets whatever the ticket's status was before. An
/// opening is left out: it only counts on a ticket that does not exist yet.
fn status_change(event: &Event) -> Option<Status> {
    match event {
        Event::TicketOpened { .. } => None,
        other => other.new_status(),
    }
}

fn exists(status: Status) -> TicketState {
    // Only the status is folded here; the agent and notes do not decide it.
    TicketState::Exists(Ticket {
        status,
        agent: None,
        notes: 0,
        erased: false,
    })
}

fn status_of(state: &TicketState) -> Option<Status> {
    match state {
        TicketState::Missing => None,
        TicketState::Exists(ticket) => Some(ticket.status),
    }
}

/// Each ticket's last seen (version, status), bounded: when full, the
/// ticket entered longest ago is forgotten (a miss only costs a fold).
#[derive(Debug)]
struct StatusCache {
    entries: HashMap<Uuid, (u64, Status)>,
    order: VecDeque<Uuid>,
    capacity: usize,
}

impl Default for StatusCache {
    fn default() -> Self {
        Self::with_capacity(STATUS_CACHE_CAPACITY)
    }
}

impl StatusCache {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The status after `version`, if that is the version remembered.
    fn get(&self, id: Uuid, version: u64) -> Option<Status> {
        self.entries
            .get(&id)
            .filter(|(known, _)| *known == version)
            .map(|(_, status)| *status)
    }

    fn put(&mut self, id: Uuid, version: u64, status: Status) {
        if let Some(entry) = self.entries.get_mut(&id) {
            *entry = (version, status);
            return;
        }
        if self.entries.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(id, (version, status));
        self.order.push_back(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_answers_only_for_the_version_it_holds() {
        let id = Uuid::now_v7();
        let mut cache = StatusCache::with_capacity(2);
        cache.put(id, 3, Status::Triaged);
        assert_eq!(cache.get(id, 3), Some(Status::Triaged));
        assert_eq!(cache.get(id, 2), None);
        cache.put(id, 4, Status::Closed);
        assert_eq!(cache.get(id, 4), Some(Status::Closed));
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_the_oldest() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let mut cache = StatusCache::with_capacity(2);
        for id in &ids {
            cache.put(*id, 1, Status::Open);
        }
        assert_eq!(cache.entries.len(), 2);
        assert_eq!(cache.get(ids[0], 1), None);
        assert_eq!(cache.get(ids[1], 1), Some(Status::Open));
        assert_eq!(cache.get(ids[2], 1), Some(Status::Open));
    }

    #[test]
    fn an_opening_sets_no_status_on_its_own() {
        let opened = Event::TicketOpened {
            customer: "c".into(),
            subject: "s".into(),
            message: "m".into(),
        };
        assert_eq!(status_change(&opened), None);
        assert_eq!(
            status_of(&evolve(TicketState::Missing, &opened)),
            Some(Status::Open)
        );
        assert_eq!(status_change(&Event::TicketClosed), Some(Status::Closed));
        assert_eq!(status_change(&Event::AgentUnassigned), None);
    }
}
