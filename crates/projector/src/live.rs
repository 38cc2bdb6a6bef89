//! The live loop of one projection: wait as a standby until the live slot's
//! lease is free, then apply batches under it until shutdown or until the
//! lease is lost; and how long it pauses between batches ([`linger`]).

use std::sync::Arc;
use std::time::Duration;

use eventstore::{EventStore, Position};
use readmodel::{Projection, RunState, Target, ViewError, ViewStore};
use tokio_util::sync::CancellationToken;

use crate::batch::{Batch, KnownCheckpoint, apply_batch};
use crate::dead_letter::{AfterStop, DeadLetters};
use crate::lease::Held;
use crate::{DeadLetterPolicy, ProjectorConfig, ProjectorError};

/// Histogram, labelled by `projection`: events per batch the live runner
/// committed.
pub const BATCH_SIZE: &str = "projector_batch_size";

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
/// batch) unpaused, so the read model stays as fresh as before.
/// `ticket-bench commands` measures what it gains.
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

/// Why a holder gave its lease up.
enum Exit {
    Shutdown,
    LeaseLost,
}

/// One projection's runner.
#[derive(Debug, Clone)]
pub(crate) struct LiveRunner {
    pub events: Arc<dyn EventStore>,
    pub views: Arc<dyn ViewStore>,
    pub projection: Projection,
    pub config: ProjectorConfig,
    pub holder: String,
}

impl LiveRunner {
    /// Runs until `shutdown`: standby while another holder has the lease,
    /// active while this one has it. The lease is released on the way out,
    /// after the batch in flight is committed.
    pub async fn run(&self, shutdown: CancellationToken) {
        let projection = self.projection;
        let mut standby_logged = false;
        let mut failing = false;
        while !shutdown.is_cancelled() {
            let acquired = self
                .views
                .acquire_lease(
                    projection,
                    Target::Live,
                    &self.holder,
                    self.config.lease_ttl,
                )
                .await;
            match acquired {
                Ok(Some(fence)) => {
                    standby_logged = false;
                    failing = false;
                    tracing::info!(%projection, holder = %fence.holder, token = fence.token, "lease acquired: applying events");
                    let held = Held::start(
                        self.views.clone(),
                        fence,
                        self.config.lease_ttl,
                        RunState::Running,
                    );
                    match self.hold(&held, &shutdown).await {
                        Exit::Shutdown => {
                            held.release().await;
                            tracing::info!(%projection, "lease released");
                            return;
                        }
                        Exit::LeaseLost => {
                            held.stop_heartbeat().await;
                            self.log_lease_lost().await;
                        }
                    }
                }
                Ok(None) => {
                    if !standby_logged {
                        let holder = self.current_holder().await;
                        tracing::info!("standby: {holder} holds {projection}");
                        standby_logged = true;
                    }
                    pause(&shutdown, self.config.standby_poll).await;
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(%projection, %error, "cannot take the lease; retrying");
                    }
                    failing = true;
                    pause(&shutdown, self.config.retry_backoff).await;
                }
            }
        }
    }

    /// Says why the lease was lost. A lease also expires under a holder
    /// whose heartbeats cannot be written (a full disk, an unreachable
    /// store); nobody took it then, and the holder takes it again as soon
    /// as the store accepts writes. Telling that apart from a takeover
    /// points ops at the store rather than at a second projector.
    async fn log_lease_lost(&self) {
        let projection = self.projection;
        let holder = self.current_holder().await;
        if holder == self.holder {
            tracing::warn!(%projection, "lease lost: it expired before a heartbeat could renew it (could the store be written?); taking it again");
        } else {
            tracing::warn!(%projection, %holder, "lease lost: taken over; back to standby");
        }
    }

    async fn current_holder(&self) -> String {
        match self.views.status(self.projection).await {
            Ok(status) => status
                .live_lease
                .map_or_else(|| "another runner".to_owned(), |lease| lease.holder),
            Err(_) => "another runner".to_owned(),
        }
    }

    /// Applies batches while the lease is held.
    async fn hold(&self, held: &Held, shutdown: &CancellationToken) -> Exit {
        let projection = self.projection;
        let mut failing: Option<String> = None;
        let dead_letters = DeadLetters::new(&*self.views, projection);
        // Dead letters this runner may pass by applying them: passing one
        // resolves it.
        let mut unresolved = dead_letters.unresolved().await;
        // The dead letter the projection is stopped at (stop policy).
        let mut stopped_at: Option<Position> = None;
        let mut known = KnownCheckpoint::default();
        loop {
            if shutdown.is_cancelled() {
                return Exit::Shutdown;
            }
            if held.lost().is_cancelled() {
                return Exit::LeaseLost;
            }
            if let Some(position) = stopped_at {
                if dead_letters.after_stop(position, &mut unresolved).await == AfterStop::Wait {
                    self.wait(held, shutdown, self.config.dead_letter_poll)
                        .await;
                    continue;
                }
                stopped_at = None;
                held.set(RunState::Running, None);
            }
            let batch_started = std::time::Instant::now();
            match apply_batch(
                &*self.events,
                &*self.views,
                &held.fence,
                self.config.batch_size,
                &mut known,
            )
            .await
            {
                Ok(Batch::Idle { checkpoint }) => {
                    failing = None;
                    held.set(RunState::Idle, None);
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = held.lost().cancelled() => {}
                        // An error here surfaces on the next batch.
                        _ = self.events.wait_for_events(checkpoint, self.config.idle_wait) => {}
                    }
                }
                Ok(Batch::Applied {
                    from,
                    to,
                    committed,
                    skipped,
                    failed,
                }) => {
                    failing = None;
                    if committed > 0 {
                        metrics::histogram!(BATCH_SIZE, "projection" => projection.name())
                            .record(committed as f64);
                    }
                    tracing::debug!(%projection, from, to, "batch committed");
                    dead_letters
                        .resolve_passed(&mut unresolved, to, &skipped)
                        .await;
                    let Some(failed) = failed else {
                        held.set(RunState::Running, None);
                        let pause = linger(
                            batch_started.elapsed(),
                            committed,
                            self.config.batch_size,
                            self.config.max_linger,
                        );
                        if !pause.is_zero() {
                            self.wait(held, shutdown, pause).await;
                        }
                        continue;
                    };
                    let policy = self.config.dead_letter_policy;
                    match dead_letters.record(&failed, policy).await {
                        Ok(()) if policy == DeadLetterPolicy::Skip => {}
                        Ok(()) => {
                            unresolved.insert(failed.event.position);
                            stopped_at = Some(failed.event.position);
                            held.set(RunState::Stopped, Some(failed.error.to_string()));
                        }
                        Err(error) => {
                            tracing::warn!(%projection, %error, "cannot record the dead letter; retrying");
                            self.wait(held, shutdown, self.config.retry_backoff).await;
                        }
                    }
                }
                Err(ProjectorError::Views(ViewError::LeaseLost { .. })) => return Exit::LeaseLost,
                Err(ProjectorError::Views(ViewError::CheckpointMoved { expected, found })) => {
                    // A rebuild swapped its slot in (or another writer
                    // committed): carry on from the live checkpoint as it is now.
                    tracing::info!(%projection, expected, found, "checkpoint moved; continuing from the live slot's checkpoint");
                }
                Err(error) => {
                    let message = error.to_string();
                    if failing.as_deref() != Some(&message) {
                        if error.is_transient() {
                            tracing::warn!(%projection, %error, "batch failed; retrying");
                        } else {
                            tracing::error!(%projection, %error, "batch failed; retrying");
                        }
                    }
                    failing = Some(message.clone());
                    let state = if error.is_transient() {
                        RunState::Running
                    } else {
                        RunState::Stopped
                    };
                    held.set(state, Some(message));
                    let backoff = if error.is_transient() {
                        self.config.retry_backoff
                    } else {
                        self.config.retry_backoff * 10
                    };
                    self.wait(held, shutdown, backoff).await;
                }
            }
        }
    }

    async fn wait(&self, held: &Held, shutdown: &CancellationToken, pause: Duration) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = held.lost().cancelled() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

async fn pause(shutdown: &CancellationToken, pause: Duration) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = tokio::time::sleep(pause) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
