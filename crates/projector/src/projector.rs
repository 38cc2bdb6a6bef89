//! [`Projector`]: the projections of one process. `run` starts a live runner
//! per projection (each under its own lease, or a standby while another
//! process holds it) and, when configured, rebuilds the projections whose
//! live slot an older projection version built; `catch_up` applies what is
//! there once, under fixed leases (the other crates' tests drive the read
//! side with it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventstore::{EventStore, Position};
use readmodel::{Projection, RunState, Target, ViewError, ViewStore};
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, KnownCheckpoint, apply_batch};
use crate::dead_letter::DeadLetters;
use crate::live::{DEFAULT_MAX_LINGER, LiveRunner};
use crate::rebuild::{LogProgress, RebuildError, RebuildOptions, rebuild};
use crate::verify::VerifyOptions;
use crate::{DeadLetterPolicy, ProjectorError, holder_name};

/// The holder name `catch_up` takes leases with: fixed, so a catch-up that
/// died holding a lease does not block the next one.
pub const CATCH_UP_HOLDER: &str = "projector-catch-up";

/// How the runners batch, wait and hold their leases.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Most events folded into one transaction.
    pub batch_size: usize,
    /// The longest pause after a batch that was not full (see
    /// [`crate::linger`]); zero reads again at once.
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
        let dead_letters = DeadLetters::new(&*self.views, fence.projection);
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
                        let policy = self.config.dead_letter_policy;
                        dead_letters.record(&failed, policy).await?;
                        if policy == DeadLetterPolicy::Stop {
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
