//! The projector: follows the event store by global position and keeps the read
//! models current, and the operations around that: rebuild, verify, status and
//! dead letters.
//!
//! The projections themselves are pure and live in `readmodel`; this crate owns
//! the loops around them. Each projection (detail, list, dashboard) runs on its
//! own: a runner takes the projection's live lease (or waits as a standby while
//! another process holds it), heartbeats it, and repeats one step: read a batch
//! after the checkpoint, load the rows it touches, fold, commit rows and
//! checkpoint in one transaction through the [`ViewStore`] with its fence.
//! Because the commit is guarded by the fence and by the checkpoint it started
//! from, and every row by its ticket version, a crash, a stale runner or a
//! rebuild's swap at any point neither loses nor double-applies an event.
//!
//! An event a projection cannot apply becomes a dead letter; the policy
//! ([`DeadLetterPolicy`]) stops the projection there until ops skip or retry
//! it, or skips it at once. [`rebuild`] fills a projection's shadow slot from
//! the whole history while the live slot serves, [`verify`] is the oracle
//! that compares a slot with the fold of the history, and [`status`] is what
//! ops and `/readyz` see.
//!
//! Metrics go through the `metrics` facade (a no-op unless the process
//! installed a recorder): the live runner records [`BATCH_SIZE`] per
//! committed batch, and [`record_status`] turns a [`StatusReport`] into the
//! position, lag and dead-letter gauges, so a scrape can refresh them from
//! the store whichever process runs the projector.

mod batch;
mod bulk;
mod lease;
mod live;
mod rebuild;
mod status;
mod verify;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use eventstore::{EventStore, Position, StoreError};
use readmodel::{
    DeadLetter, DeadLetterState, Projection, ProjectionError, RunState, Target, ViewError,
    ViewStore,
};
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, KnownCheckpoint, apply_batch};
use crate::live::LiveRunner;

pub use lease::holder_name;
pub use rebuild::{
    LogProgress, Progress, RebuildError, RebuildOptions, RebuildOutcome, eta, rebuild,
};
pub use status::{
    ProjectionReport, RebuildActivity, ShadowReport, StatusReport, VersionReport, lag, live_state,
    record_status, status,
};
pub use verify::{
    Difference, DifferenceKind, FieldDifference, VerifyOptions, VerifyReport, verify,
};

/// Histogram, labelled by `projection`: events per batch the live runner
/// committed.
pub const BATCH_SIZE: &str = "projector_batch_size";

/// The holder name `catch_up` takes leases with: fixed, so a catch-up that
/// died holding a lease does not block the next one.
pub const CATCH_UP_HOLDER: &str = "projector-catch-up";

/// What a projection does with an event it cannot apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeadLetterPolicy {
    /// Record it and stop the projection there ("stopped on error") until ops
    /// skip or retry it: nothing is silently wrong.
    #[default]
    Stop,
    /// Record it as skipped and carry on.
    Skip,
}

impl DeadLetterPolicy {
    pub fn name(self) -> &'static str {
        match self {
            DeadLetterPolicy::Stop => "stop",
            DeadLetterPolicy::Skip => "skip",
        }
    }
}

impl FromStr for DeadLetterPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stop" => Ok(DeadLetterPolicy::Stop),
            "skip" => Ok(DeadLetterPolicy::Skip),
            other => Err(format!(
                "unknown dead-letter policy `{other}`: expected stop or skip"
            )),
        }
    }
}

/// The default of [`ProjectorConfig::max_linger`].
pub const DEFAULT_MAX_LINGER: Duration = Duration::from_millis(20);

/// The batch size from which a live runner pauses as long as its batch took
/// (see [`linger`]); smaller batches pause in proportion.
pub const LINGER_FULL_AT: usize = 64;

/// How long a live runner pauses after a batch that took `took` and applied
/// `applied` of at most `batch_size` events: `took` scaled by how close the
/// batch came to [`LINGER_FULL_AT`] events, at most `max`; none after a full
/// batch (a backlog: read on at once) or when under a millisecond (the
/// timer's grain).
///
/// Why: in one SQLite file the projector's commits and the appends take
/// turns at the one write lock. Without a pause, under write load the three
/// runners go straight from one small batch to the next, hold the lock much
/// of the time, and write the same index pages again for a few events each
/// time. Pausing about as long as the batch took caps a runner's share of the
/// time near half, and lets the next batch gather what arrived meanwhile:
/// fewer, larger commits, where several events of one ticket become one row
/// write. Scaling by the batch's size keeps light traffic (a few events per
/// batch) unpaused, so the read model stays as fresh as before. Measured
/// with `ticket-bench commands` (in-process projector, 64 connections):
/// from about 6,600 to 8,600-9,700 commands/s, and about half the command
/// latency at 5,000 events/s, with the lag at 1,000 events/s unchanged
/// (README, Performance).
pub fn linger(took: Duration, applied: usize, batch_size: usize, max: Duration) -> Duration {
    if applied >= batch_size {
        return Duration::ZERO;
    }
    let fill = (applied as f64 / LINGER_FULL_AT as f64).min(1.0);
    let pause = took.mul_f64(fill).min(max);
    if pause < Duration::from_millis(1) {
        Duration::ZERO
    } else {
        pause
    }
}

/// How the runners batch, wait and hold their leases.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Most events folded into one transaction.
    pub batch_size: usize,
    /// The longest pause after a batch that was not full (see
    /// [`linger`]); zero reads again at once.
    pub max_linger: Duration,
    /// Longest single wait for new events before checking again; wake-ups from
    /// the store normally end the wait much sooner.
    pub idle_wait: Duration,
    /// Pause after a transient store failure before trying again.
    pub retry_backoff: Duration,
    /// How long a live lease lasts without a heartbeat (heartbeats come every
    /// third of it): a killed runner's standby takes over within this.
    pub lease_ttl: Duration,
    /// How often a standby tries to take the lease.
    pub standby_poll: Duration,
    pub dead_letter_policy: DeadLetterPolicy,
    /// How often a projection stopped at a dead letter looks whether ops
    /// skipped it or asked for a retry.
    pub dead_letter_poll: Duration,
    /// Whether `run` rebuilds (blue/green) a projection whose live slot was
    /// built by an older projection version than this build's.
    pub rebuild_outdated: bool,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            max_linger: DEFAULT_MAX_LINGER,
            idle_wait: Duration::from_secs(1),
            retry_backoff: Duration::from_millis(500),
            lease_ttl: Duration::from_secs(10),
            standby_poll: Duration::from_secs(1),
            dead_letter_policy: DeadLetterPolicy::Stop,
            dead_letter_poll: Duration::from_secs(1),
            rebuild_outdated: true,
        }
    }
}

/// Why the projector stopped or a step failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error(transparent)]
    Events(#[from] StoreError),
    #[error(transparent)]
    Views(#[from] ViewError),
    /// An event the projection cannot apply (recorded as a dead letter).
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// Another holder has the lease this operation needs.
    #[error("{projection} is held by {holder}: stop it first, or wait for its lease to expire")]
    LeaseHeld {
        projection: Projection,
        holder: String,
    },
    /// The data kept changing under a check that needs it still.
    #[error("{0}")]
    Unsettled(String),
}

impl ProjectorError {
    /// A failure that may pass by itself (a busy or unreachable database, another
    /// runner's commit): worth retrying, not worth stopping for.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProjectorError::Events(StoreError::Unavailable(_))
                | ProjectorError::Views(ViewError::Unavailable(_))
                | ProjectorError::Views(ViewError::CheckpointMoved { .. })
        )
    }
}

/// Moves events from an event store into a view store: one runner per
/// projection, each under its own lease.
#[derive(Debug, Clone)]
pub struct Projector {
    events: Arc<dyn EventStore>,
    views: Arc<dyn ViewStore>,
    config: ProjectorConfig,
    holder: String,
}

impl Projector {
    pub fn new(
        events: Arc<dyn EventStore>,
        views: Arc<dyn ViewStore>,
        config: ProjectorConfig,
    ) -> Self {
        Self {
            events,
            views,
            config,
            holder: holder_name(),
        }
    }

    /// The name this projector's runners hold leases under.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Applies batches to every projection's live slot until each reflects
    /// every event that existed when it was called, or later ones; returns the
    /// lowest checkpoint reached. Takes each live lease under
    /// [`CATCH_UP_HOLDER`] for the while (failing with `LeaseHeld` when a
    /// running daemon has one) and releases it. An event a projection cannot
    /// apply is recorded as a dead letter; under the stop policy the call
    /// fails with it.
    pub async fn catch_up(&self) -> Result<Position, ProjectorError> {
        let head = self.events.head().await?;
        let mut reached = Position::MAX;
        for projection in Projection::ALL {
            let acquired = self
                .views
                .acquire_lease(
                    projection,
                    Target::Live,
                    CATCH_UP_HOLDER,
                    self.config.lease_ttl,
                )
                .await?;
            let Some(fence) = acquired else {
                let holder = self
                    .views
                    .status(projection)
                    .await?
                    .live_lease
                    .map_or_else(|| "another runner".to_owned(), |lease| lease.holder);
                return Err(ProjectorError::LeaseHeld { projection, holder });
            };
            let result = self.catch_up_one(&fence, head).await;
            if let Err(error) = self.views.release_lease(&fence).await {
                tracing::warn!(%projection, %error, "could not release the catch-up lease");
            }
            reached = reached.min(result?);
        }
        Ok(reached)
    }

    async fn catch_up_one(
        &self,
        fence: &readmodel::Fence,
        head: Position,
    ) -> Result<Position, ProjectorError> {
        let projection = fence.projection;
        let mut beat = Instant::now();
        let mut known = KnownCheckpoint::default();
        loop {
            if beat.elapsed() >= self.config.lease_ttl / 3 {
                self.views
                    .heartbeat(fence, self.config.lease_ttl, RunState::Running, None)
                    .await?;
                beat = Instant::now();
            }
            let step = apply_batch(
                &*self.events,
                &*self.views,
                fence,
                self.config.batch_size,
                &mut known,
            )
            .await;
            match step {
                Ok(Batch::Idle { checkpoint }) => return Ok(checkpoint),
                Ok(Batch::Applied { to, failed, .. }) => {
                    if let Some(failed) = failed {
                        let state = match self.config.dead_letter_policy {
                            DeadLetterPolicy::Stop => DeadLetterState::Pending,
                            DeadLetterPolicy::Skip => DeadLetterState::Skipped,
                        };
                        let letter = DeadLetter::new(
                            projection,
                            &failed.event,
                            failed.error.to_string(),
                            state,
                            Utc::now(),
                        );
                        self.views.put_dead_letter(&letter).await?;
                        if self.config.dead_letter_policy == DeadLetterPolicy::Stop {
                            return Err(failed.error.into());
                        }
                        continue;
                    }
                    if to >= head {
                        return Ok(to);
                    }
                }
                Err(ProjectorError::Views(ViewError::CheckpointMoved { .. })) => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Follows the store until `shutdown` is cancelled: one runner per
    /// projection (active under its lease, or standby), plus, when configured,
    /// a blue/green rebuild of each projection whose live slot was built by an
    /// older projection version. Each runner commits its batch in flight and
    /// releases its lease before this returns. An event a projection cannot
    /// apply is a dead letter, handled by the policy; store failures are
    /// logged and retried.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), ProjectorError> {
        tracing::info!(
            holder = %self.holder,
            batch_size = self.config.batch_size,
            lease_ttl = ?self.config.lease_ttl,
            dead_letter_policy = self.config.dead_letter_policy.name(),
            "projector started"
        );
        let mut tasks = tokio::task::JoinSet::new();
        if self.config.rebuild_outdated {
            let projector = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { projector.rebuild_outdated(&shutdown).await });
        }
        for projection in Projection::ALL {
            let runner = LiveRunner {
                events: self.events.clone(),
                views: self.views.clone(),
                projection,
                config: self.config.clone(),
                holder: self.holder.clone(),
            };
            let shutdown = shutdown.clone();
            tasks.spawn(async move { runner.run(shutdown).await });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined {
                tracing::error!(%error, "a projector task panicked");
            }
        }
        tracing::info!("projector stopped");
        Ok(())
    }

    /// Rebuilds, one after the other, the projections whose live slot is
    /// older than this build's projection version.
    async fn rebuild_outdated(&self, shutdown: &CancellationToken) {
        let progress = LogProgress::new(Duration::from_secs(2));
        for projection in Projection::ALL {
            if shutdown.is_cancelled() {
                return;
            }
            let stored = match self.views.status(projection).await {
                Ok(status) => status.live.version,
                Err(error) => {
                    tracing::warn!(%projection, %error, "cannot read the projection's version; not checking whether it needs a rebuild");
                    continue;
                }
            };
            let code = projection.version();
            if stored >= code {
                continue;
            }
            tracing::info!(%projection, stored, code, "the live slot was built by an older projection version: rebuilding it while it keeps serving");
            let options = RebuildOptions {
                batch_size: self.config.batch_size,
                lease_ttl: self.config.lease_ttl,
                holder: self.holder.clone(),
                retry_backoff: self.config.retry_backoff,
                max_rate: None,
                by_ticket: true,
                verify: VerifyOptions::default(),
            };
            match rebuild(
                self.events.clone(),
                self.views.clone(),
                projection,
                &options,
                &progress,
                shutdown,
            )
            .await
            {
                Ok(_) => {}
                Err(RebuildError::Busy { holder, .. }) => {
                    tracing::info!(%projection, %holder, "another process is rebuilding it");
                }
                Err(RebuildError::Interrupted { .. }) => return,
                Err(error) => {
                    tracing::error!(%projection, %error, "rebuild failed; the live slot keeps serving the old version");
                }
            }
        }
    }
}

/// What changing a dead letter's state found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterChange {
    /// Whether there was such a dead letter.
    pub found: bool,
    /// The live slot's checkpoint: a retry of a dead letter below it (passed
    /// by the skip policy) takes a rebuild to apply.
    pub live_checkpoint: Position,
}

/// Sets a dead letter's state (what `dead-letters retry|skip` do): a
/// projection stopped at it picks the change up within a second.
pub async fn set_dead_letter(
    views: &dyn ViewStore,
    projection: Projection,
    position: Position,
    state: DeadLetterState,
) -> Result<DeadLetterChange, ProjectorError> {
    let found = views
        .set_dead_letter_state(projection, position, state)
        .await?;
    let live_checkpoint = views.checkpoint(projection, Target::Live).await?;
    Ok(DeadLetterChange {
        found,
        live_checkpoint,
    })
}

/// Serialises a projection as its name.
pub(crate) fn serialize_projection<S: serde::Serializer>(
    projection: &Projection,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(projection.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_policies_parse_by_name() {
        for policy in [DeadLetterPolicy::Stop, DeadLetterPolicy::Skip] {
            assert_eq!(policy.name().parse(), Ok(policy));
        }
        assert!("ignore".parse::<DeadLetterPolicy>().is_err());
    }

    #[test]
    fn a_runner_lingers_in_proportion_to_how_full_its_batch_was() {
        let ms = Duration::from_millis;
        let cap = ms(20);
        assert_eq!(linger(ms(6), LINGER_FULL_AT, 500, cap), ms(6));
        assert_eq!(linger(ms(6), 200, 500, cap), ms(6));
        assert_eq!(linger(ms(6), LINGER_FULL_AT / 2, 500, cap), ms(3));
        assert_eq!(linger(ms(50), 499, 500, cap), cap);
        // Light traffic: a pause under a millisecond is none.
        assert_eq!(linger(ms(2), 3, 500, cap), Duration::ZERO);
        // A full batch means a backlog: no pause.
        assert_eq!(linger(ms(6), 500, 500, cap), Duration::ZERO);
        // A zero cap turns lingering off.
        assert_eq!(linger(ms(6), 100, 500, Duration::ZERO), Duration::ZERO);
    }
}
