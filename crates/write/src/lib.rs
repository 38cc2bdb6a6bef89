//! The write side: turns commands into appended events.
//!
//! This crate owns command handling and nothing else (reads, the past states
//! of a ticket included, are the query side's): load a ticket's stream,
//! decode and fold it, let [`domain::decide`] apply the rules, and append the
//! resulting events in one atomic call guarded by the version the decision was
//! made on. It never updates read models: the projector does that from the store.
//!
//! Concurrency is optimistic and lives in the store (a unique ticket id +
//! version). When another writer appends first, the store answers
//! [`StoreError::Conflict`] and the command is decided again on the fresh
//! history: `decide` re-checks every rule, so a retry can neither skip a rule nor
//! apply a change twice. The retries are bounded ([`DEFAULT_MAX_ATTEMPTS`]) and
//! spaced by a small jittered pause; a command that still loses answers
//! [`WriteError::Conflict`].
//!
//! It records two counters through the `metrics` facade (a no-op unless the
//! process installed a recorder): [`EVENTS_APPENDED`] and [`APPEND_CONFLICTS`].
//!
//! Idempotency keys ([`Idempotency`]) make a retried command safe: the key is
//! stored with the events it caused (unique in the store), so a retry, in this
//! process or another, appends nothing and gets the first answer back.
//!
//! The ticket returned with a [`WriteOutcome`] is folded from the recorded
//! events with [`readmodel::project`], the fold the projector uses, so a write
//! response equals what the read model shows once it reaches that version.

pub mod erasure;
mod known;

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use domain::{ChangeTicket, Command, DomainError, Event, OpenTicket, TicketState, decide};
use eventstore::{EventStore, Metadata, NewEvent, Position, RecordedEvent, StoreError};
use readmodel::TicketDetail;
use uuid::Uuid;

use crate::known::{Known, KnownCache};

/// How many times a command is decided and appended before a lost race is
/// reported as [`WriteError::Conflict`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 25;

/// How many tickets the service remembers between commands (see
/// [`CommandService::with_cache_capacity`]).
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// Counter: events the write side appended (committed appends only).
pub const EVENTS_APPENDED: &str = "events_appended_total";
/// Counter: appends that lost a race to another writer, counted before the
/// retry (a command that wins on its third attempt counts two).
pub const APPEND_CONFLICTS: &str = "append_conflicts_total";

/// The longest pause between two attempts; the pause doubles from about a
/// millisecond up to this, and a random part of it is taken.
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// The longest idempotency key a store records.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Who asked, and as part of what: recorded in every event's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandContext {
    /// The request (or job) the command belongs to.
    pub correlation_id: Option<Uuid>,
    /// Who asked for the change.
    pub actor: Option<String>,
    /// The client's key for safe retries, when it sent one.
    pub idempotency: Option<Idempotency>,
}

/// A client's idempotency key and a digest of the request that carried it.
///
/// The first command with a key that appends events records the key with
/// them (unique in the store); a later command with the same key appends
/// nothing and is answered with what the first did, if its digest is the
/// same, or refused with [`WriteError::IdempotencyKeyReused`] if not. A
/// command that appends nothing (refused, or a change to what already is)
/// records no key, so a retry of it is decided afresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// 1 to [`MAX_IDEMPOTENCY_KEY_LEN`] bytes, chosen by the client.
    pub key: String,
    /// Whatever identifies "the same request" to the caller (the HTTP layer
    /// hashes the method, the path and the body).
    pub request_digest: String,
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    /// The ticket after the command, folded from its recorded events.
    pub ticket: TicketDetail,
    /// The global position of the last event appended; when the command
    /// changed nothing, the position of the ticket's last event.
    pub position: Position,
    /// How many events the command appended (0 when it changed nothing).
    /// For a replay, how many the original command appended.
    pub appended: usize,
    /// The answer repeats an earlier command with the same idempotency key;
    /// this one appended nothing.
    pub replayed: bool,
}

/// Why a command did not go through. Nothing was appended in any case.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The ticket has no events.
    #[error("the ticket does not exist")]
    NotFound,
    /// A rule refused the command; retrying the same command will not help.
    #[error("the command breaks a rule: {0}")]
    Rejected(#[source] DomainError),
    /// The client made its change against a version the ticket has moved on
    /// from (or not reached); retrying the same command will not help.
    #[error("the ticket is at version {actual}, not the expected {expected}")]
    VersionMismatch { expected: u64, actual: u64 },
    /// The idempotency key was recorded by a different request; nothing was
    /// appended, and retrying will not help.
    #[error("the idempotency key {key:?} was already used for a different request")]
    IdempotencyKeyReused { key: String },
    /// Other writers kept appending to the ticket first, past every retry.
    #[error("ticket {ticket_id} kept changing under the command; try again")]
    Conflict { ticket_id: Uuid },
    /// The event store failed or holds data this code cannot read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Handles ticket commands against an event store.
#[derive(Debug, Clone)]
pub struct CommandService {
    store: Arc<dyn EventStore>,
    max_attempts: u32,
    known: Arc<KnownCache>,
}

impl CommandService {
    /// A service that retries lost races up to [`DEFAULT_MAX_ATTEMPTS`] times
    /// and remembers up to [`DEFAULT_CACHE_CAPACITY`] tickets.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self {
            store,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            known: Arc::new(KnownCache::new(DEFAULT_CACHE_CAPACITY)),
        }
    }

    /// Sets how many tickets the service remembers between commands, so that
    /// a command on a recently written ticket is decided without reading its
    /// stream (0: read every time). The memory is a guess, checked by the
    /// append's expected version: another writer's append makes the next
    /// command here lose one race and read the stream (see `known`).
    pub fn with_cache_capacity(mut self, tickets: usize) -> Self {
        self.known = Arc::new(KnownCache::new(tickets));
        self
    }

    /// Sets how many times a command is attempted before
    /// [`WriteError::Conflict`] (at least once).
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Opens a new ticket under a fresh UUID v7.
    pub async fn open(
        &self,
        command: OpenTicket,
        context: CommandContext,
    ) -> Result<WriteOutcome, WriteError> {
        self.execute(Uuid::now_v7(), Command::Open(command), context, None)
            .await
    }

    /// Erases the customer's personal data from one ticket: appends
    /// `CustomerErased` (nothing when it is erased already). Part of an
    /// erasure of the customer (see [`erasure`]).
    pub async fn erase(
        &self,
        ticket_id: Uuid,
        rewritten: Vec<u64>,
        context: CommandContext,
    ) -> Result<WriteOutcome, WriteError> {
        self.execute(ticket_id, Command::Erase { rewritten }, context, None)
            .await
    }

    /// Changes an existing ticket's status, agent and/or notes.
    ///
    /// With `expected_version`, the change is made only if the ticket is at
    /// exactly that version when it is decided (checked on every attempt's
    /// freshly loaded stream); otherwise it answers
    /// [`WriteError::VersionMismatch`] and appends nothing. A mismatch is never
    /// retried: the client decided on a state that is gone.
    pub async fn change(
        &self,
        ticket_id: Uuid,
        command: ChangeTicket,
        context: CommandContext,
        expected_version: Option<u64>,
    ) -> Result<WriteOutcome, WriteError> {
        self.execute(
            ticket_id,
            Command::Change(command),
            context,
            expected_version,
        )
        .await
    }

    async fn execute(
        &self,
        ticket_id: Uuid,
        command: Command,
        context: CommandContext,
        expected_version: Option<u64>,
    ) -> Result<WriteOutcome, WriteError> {
        let idempotency = context.idempotency;
        // One id per command, kept across retries: every event it causes points at it.
        let metadata = Metadata {
            correlation_id: context.correlation_id,
            causation_id: Some(Uuid::now_v7()),
            actor: context.actor,
            idempotency_key: idempotency.as_ref().map(|i| i.key.clone()),
            request_digest: idempotency.as_ref().map(|i| i.request_digest.clone()),
        };
        for attempt in 1..=self.max_attempts {
            // Looked up on every attempt: a racing request with the same key
            // (here or in another instance) may have committed meanwhile.
            if let Some(idempotency) = &idempotency
                && let Some(replay) = self.replay(idempotency).await?
            {
                return Ok(replay);
            }
            match self
                .attempt(ticket_id, command.clone(), &metadata, expected_version)
                .await
            {
                Err(WriteError::Store(StoreError::Conflict {
                    expected, actual, ..
                })) => {
                    // What this service remembered is behind the store.
                    self.known.forget(ticket_id);
                    metrics::counter!(APPEND_CONFLICTS).increment(1);
                    tracing::debug!(%ticket_id, attempt, expected, actual, "lost a write race; deciding again");
                    if attempt < self.max_attempts {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                }
                // Another request with the key committed first: the next
                // round's lookup answers with what it did.
                Err(WriteError::Store(StoreError::IdempotencyKeyTaken { .. })) => {
                    tracing::debug!(%ticket_id, attempt, "a request with the same idempotency key committed first");
                }
                other => return other,
            }
        }
        tracing::warn!(%ticket_id, attempts = self.max_attempts, "gave up after losing every write race");
        Err(WriteError::Conflict { ticket_id })
    }

    /// What the command that recorded `idempotency`'s key did, as its answer
    /// then: the ticket folded up to that command's last event. `None` when
    /// the key is not recorded.
    async fn replay(&self, idempotency: &Idempotency) -> Result<Option<WriteOutcome>, WriteError> {
        let Some(first) = self.store.read_idempotent(&idempotency.key).await? else {
            return Ok(None);
        };
        if first.metadata.request_digest.as_deref() != Some(idempotency.request_digest.as_str()) {
            return Err(WriteError::IdempotencyKeyReused {
                key: idempotency.key.clone(),
            });
        }
        let key = Some(idempotency.key.as_str());
        // The command's events are the ones from `first` on that carry its
        // key: appended together, so contiguous.
        let upto: Vec<RecordedEvent> = self
            .store
            .read_stream(first.ticket_id)
            .await?
            .into_iter()
            .take_while(|event| {
                event.version < first.version || event.metadata.idempotency_key.as_deref() == key
            })
            .collect();
        let last = upto
            .last()
            .filter(|last| last.version >= first.version)
            .ok_or_else(|| {
                corrupt(format!(
                    "ticket {}: the event recording idempotency key {:?} is not in its stream",
                    first.ticket_id, idempotency.key
                ))
            })?;
        Ok(Some(WriteOutcome {
            position: last.position,
            appended: usize::try_from(last.version + 1 - first.version).unwrap_or(usize::MAX),
            ticket: detail(first.ticket_id, &upto)?,
            replayed: true,
        }))
    }

    /// The ticket as stored: its stream, read and folded.
    async fn load(&self, ticket_id: Uuid) -> Result<Option<Known>, WriteError> {
        let recorded = self.store.read_stream(ticket_id).await?;
        let history = decode_all(&recorded)?;
        Known::from_stream(&recorded, &history).map_err(corrupt)
    }

    /// One decide → append round, on what the service remembers of the
    /// ticket or, failing that, on its stream.
    async fn attempt(
        &self,
        ticket_id: Uuid,
        command: Command,
        metadata: &Metadata,
        expected_version: Option<u64>,
    ) -> Result<WriteOutcome, WriteError> {
        // A new ticket's id was minted for this command: there is no stream
        // to read (the append at version 0 would refuse one anyway).
        let remembered = match command {
            Command::Open(_) => None,
            Command::Change(_) => self.known.get(ticket_id),
            // Always decided on the stream as stored.
            Command::Erase { .. } => None,
        };
        let from_memory = remembered.is_some();
        let mut known = match remembered {
            Some(known) => Some(known),
            None if matches!(command, Command::Open(_)) => None,
            None => self.load(ticket_id).await?,
        };
        let version_of = |known: &Option<Known>| known.as_ref().map_or(0, |known| known.version);
        // A missing ticket stays a NotFound (from `decide`), not a mismatch.
        let mismatch = |known: &Option<Known>| {
            expected_version
                .filter(|expected| version_of(known) != 0 && *expected != version_of(known))
        };
        if from_memory && mismatch(&known).is_some() {
            // The client may know a newer version than this service does.
            known = self.load(ticket_id).await?;
        }
        if let Some(expected) = mismatch(&known) {
            return Err(WriteError::VersionMismatch {
                expected,
                actual: version_of(&known),
            });
        }
        let state = known
            .as_ref()
            .map_or(TicketState::Missing, |known| known.state.clone());
        let decided = decide(&state, command).map_err(|error| match error {
            DomainError::NotFound => WriteError::NotFound,
            other => WriteError::Rejected(other),
        })?;
        if decided.is_empty() {
            let known = known.ok_or_else(|| {
                corrupt(format!(
                    "ticket {ticket_id}: nothing to append to no ticket"
                ))
            })?;
            return Ok(WriteOutcome {
                position: known.position,
                ticket: known.detail,
                appended: 0,
                replayed: false,
            });
        }
        // Never before the ticket's last event, even if this clock is behind the
        // one that wrote it: a ticket's times only move forward.
        let occurred_at = known
            .as_ref()
            .map_or_else(now, |known| now().max(known.occurred_at));
        let new_events = decided
            .iter()
            .map(|event| NewEvent::from_domain(event, occurred_at, metadata.clone()))
            .collect();
        let appended = match self
            .store
            .append(ticket_id, version_of(&known), new_events)
            .await
        {
            Ok(appended) => appended,
            Err(error) => {
                self.known.forget(ticket_id);
                return Err(error.into());
            }
        };
        let count = appended.len();
        metrics::counter!(EVENTS_APPENDED).increment(count as u64);
        let after = Known::after(known.as_ref(), &appended, &decided)
            .map_err(corrupt)?
            .ok_or_else(|| corrupt(format!("ticket {ticket_id} has no events after a write")))?;
        self.known.put(ticket_id, after.clone());
        Ok(WriteOutcome {
            position: after.position,
            ticket: after.detail,
            appended: count,
            replayed: false,
        })
    }
}

/// The current time at millisecond precision: every backend stores that exactly
/// (BSON dates hold milliseconds), so the time a write answers with is the time
/// a read shows later.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

fn decode_all(recorded: &[RecordedEvent]) -> Result<Vec<Event>, WriteError> {
    recorded
        .iter()
        .map(|event| {
            event.decode().map_err(|error| {
                corrupt(format!(
                    "ticket {} event at version {} does not decode: {error}",
                    event.ticket_id, event.version
                ))
            })
        })
        .collect()
}

/// Folds a ticket's whole stream into its detail view, as the projector does.
fn detail(ticket_id: Uuid, recorded: &[RecordedEvent]) -> Result<TicketDetail, WriteError> {
    known::fold_detail(None, recorded)
        .map_err(corrupt)?
        .ok_or_else(|| corrupt(format!("ticket {ticket_id} has no events")))
}

fn corrupt(message: String) -> WriteError {
    WriteError::Store(StoreError::Corrupt(message))
}

/// A random pause in `0..=cap`, where the cap doubles with each lost attempt
/// (1, 2, 4 … ms) up to [`MAX_BACKOFF`]: racing writers spread out instead of
/// colliding again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let cap = Duration::from_millis(1u64 << attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF);
    let cap_micros = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX);
    // A freshly keyed std hasher is a cheap, good-enough source of jitter.
    let random = RandomState::new().hash_one(attempt);
    Duration::from_micros(random % (cap_micros + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_cap() {
        for attempt in 1..40 {
            let pause = backoff(attempt);
            assert!(pause <= MAX_BACKOFF, "attempt {attempt}: {pause:?}");
            assert!(pause <= Duration::from_millis(1 << (attempt - 1).min(16)));
        }
    }

    #[test]
    fn times_are_kept_to_the_millisecond() {
        assert_eq!(now().timestamp_subsec_nanos() % 1_000_000, 0);
    }
}
