//! Blue/green rebuilds: replay the whole history into a projection's shadow
//! slot while the live slot keeps serving, catch up, verify the shadow, swap.
//!
//! The shadow slot has its own lease, so one rebuild runs per projection; the
//! live runner never touches the shadow. A rebuild interrupted at any point
//! (SIGINT, SIGKILL) leaves the live slot as it was; the next one resumes from
//! the shadow's checkpoint when the shadow is still building at this build's
//! projection version, and starts over otherwise. After the swap the live
//! runner's next commit finds the checkpoint moved and carries on from the
//! swapped-in slot's checkpoint: no event is missed or applied twice.
//!
//! A rebuild runs beside a live service and never stalls its writes: every
//! write it makes to the shadow is a short transaction followed by a pause
//! (`pace`), the shadow keeps its indexes while it fills, and the store
//! empties a shadow in short transactions too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventstore::{EventStore, Position, StoreError};
use readmodel::{Projection, RunState, SlotState, Target, ViewError, ViewStore};
use tokio_util::sync::CancellationToken;

use crate::ProjectorError;
use crate::batch::{Batch, KnownCheckpoint, apply_batch};
use crate::bulk::{BulkPass, Pass};
use crate::dead_letter::DeadLetters;
use crate::lease::Held;
use crate::verify::{VerifyOptions, VerifyReport, verify};

pub(crate) mod pace;
use pace::Pace;

/// How a rebuild runs.
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// Most events folded into one shadow transaction by the global-order
    /// replay (fewer when the pace says so: see `pace`); the by-ticket pass
    /// reads this many at a time.
    pub batch_size: usize,
    /// The shadow lease's TTL (heartbeats every third of it).
    pub lease_ttl: Duration,
    /// The shadow lease's holder name.
    pub holder: String,
    /// Pause after a transient store failure.
    pub retry_backoff: Duration,
    /// Most events replayed per second (`None`: as fast as the store goes), so
    /// a rebuild on a busy production store leaves room for live traffic.
    /// A limit also turns the by-ticket pass off: it paces the global-order
    /// replay only.
    pub max_rate: Option<u32>,
    /// Start a fresh rebuild with the by-ticket pass (the `bulk` module), which
    /// writes every row once; off, every event is replayed in global order.
    pub by_ticket: bool,
    pub verify: VerifyOptions,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            // Ten times the live runner's: the by-ticket pass reads this many
            // events per round trip. The replay's commits are as big as the
            // pace allows, up to this.
            batch_size: 5000,
            lease_ttl: Duration::from_secs(10),
            holder: crate::holder_name(),
            retry_backoff: Duration::from_millis(500),
            max_rate: None,
            by_ticket: true,
            verify: VerifyOptions::default(),
        }
    }
}

/// Why a rebuild did not swap.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(
        "another rebuild holds the shadow of {projection}: {holder} (lease expires {expires_in:.1}s from now); wait for it to finish, or for its lease to expire if that process is gone"
    )]
    Busy {
        projection: Projection,
        holder: String,
        expires_in: f64,
    },
    #[error(
        "rebuild of {projection} interrupted at {checkpoint} of {head} events; the live views are untouched; run rebuild again to resume"
    )]
    Interrupted {
        projection: Projection,
        checkpoint: Position,
        head: Position,
    },
    #[error(
        "rebuild of {projection} stopped at event {position}, which cannot be applied: {reason}; skip it (`ticket-projector dead-letters skip {projection} {position}`) and run rebuild again"
    )]
    Stuck {
        projection: Projection,
        position: Position,
        reason: String,
    },
    #[error("the shadow differs from the history, so it was not swapped in:\n{0}")]
    Differences(Box<VerifyReport>),
    #[error("lost the shadow lease of {projection}: another rebuild took it over")]
    LeaseLost { projection: Projection },
    #[error(transparent)]
    Projector(#[from] ProjectorError),
}

impl From<ViewError> for RebuildError {
    fn from(error: ViewError) -> Self {
        RebuildError::Projector(error.into())
    }
}

impl From<StoreError> for RebuildError {
    fn from(error: StoreError) -> Self {
        RebuildError::Projector(error.into())
    }
}

/// What a finished rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildOutcome {
    pub projection: Projection,
    /// The shadow checkpoint this run resumed from, if it resumed.
    pub resumed_from: Option<Position>,
    /// Events folded by this run.
    pub replayed: u64,
    /// The checkpoint of the slot swapped in.
    pub swapped_at: Position,
    pub elapsed: Duration,
    /// Of `elapsed`: replaying into the shadow up to the head it found
    /// (the by-ticket pass, when it ran, and the global-order catch-up).
    pub replaying: Duration,
    /// Of `elapsed`: verifying the shadow.
    pub verifying: Duration,
    pub verify: VerifyReport,
}

impl RebuildOutcome {
    pub fn events_per_second(&self) -> f64 {
        self.replayed as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    /// `N events in 8.1s (R events/s; replay 5.0s, verify 3.0s)`:
    /// the part of a rebuild's summary ops read for its speed.
    pub fn timing(&self) -> String {
        format!(
            "{} events in {:.1}s ({:.0} events/s; replay {:.1}s, verify {:.1}s)",
            self.replayed,
            self.elapsed.as_secs_f64(),
            self.events_per_second(),
            self.replaying.as_secs_f64(),
            self.verifying.as_secs_f64(),
        )
    }
}

/// Told how a rebuild goes; the binaries draw a bar or log lines with it.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// Replay starts at `done` (above 0 when resuming) of `total` events.
    fn started(&self, projection: Projection, done: Position, total: Position, resumed: bool);
    /// The shadow's checkpoint reached `done`; the head is `total`.
    fn advanced(&self, projection: Projection, done: Position, total: Position);
    /// A step after the replay: `verifying`, `swapping`.
    fn phase(&self, projection: Projection, phase: &str);
    fn finished(&self, outcome: &RebuildOutcome);
}

/// Progress as log lines, at most one per `every` and projection.
#[derive(Debug)]
pub struct LogProgress {
    every: Duration,
    runs: Mutex<HashMap<Projection, Run>>,
}

#[derive(Debug, Clone, Copy)]
struct Run {
    started: Instant,
    from: Position,
    logged: Instant,
}

impl LogProgress {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            runs: Mutex::new(HashMap::new()),
        }
    }
}

impl Progress for LogProgress {
    fn started(&self, projection: Projection, done: Position, total: Position, resumed: bool) {
        let now = Instant::now();
        if let Ok(mut runs) = self.runs.lock() {
            runs.insert(
                projection,
                Run {
                    started: now,
                    from: done,
                    logged: now,
                },
            );
        }
        if resumed {
            tracing::info!("rebuild {projection}: resuming the shadow at {done} of {total} events");
        } else {
            tracing::info!("rebuild {projection}: replaying {total} events into the shadow");
        }
    }

    fn advanced(&self, projection: Projection, done: Position, total: Position) {
        let Ok(mut runs) = self.runs.lock() else {
            return;
        };
        let Some(run) = runs.get_mut(&projection) else {
            return;
        };
        if run.logged.elapsed() < self.every {
            return;
        }
        run.logged = Instant::now();
        let rate = rate(done.saturating_sub(run.from), run.started.elapsed());
        let percent = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        tracing::info!(
            "rebuild {projection}: {done}/{total} events ({percent:.0}%), {rate:.0} events/s, ETA {}",
            eta(total.saturating_sub(done), rate)
        );
    }

    fn phase(&self, projection: Projection, phase: &str) {
        tracing::info!("rebuild {projection}: {phase}");
    }

    fn finished(&self, outcome: &RebuildOutcome) {
        tracing::info!(
            projection = %outcome.projection,
            events = outcome.replayed,
            elapsed_ms = millis(outcome.elapsed),
            replay_ms = millis(outcome.replaying),
            verify_ms = millis(outcome.verifying),
            "rebuild {}: swapped in at checkpoint {}: {}",
            outcome.projection,
            outcome.swapped_at,
            outcome.timing(),
        );
    }
}

/// Whole milliseconds as a `u64`, which log formatters write as a number
/// (a `u128` they write as text).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-3)
}

/// A remaining time for people: `42s`, `3m05s`, `1h02m`.
pub fn eta(remaining: u64, rate: f64) -> String {
    if remaining == 0 {
        return "0s".to_owned();
    }
    if rate <= 0.0 {
        return "?".to_owned();
    }
    let seconds = (remaining as f64 / rate).ceil() as u64;
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Rebuilds one projection: replay into the shadow, catch up, verify, swap.
pub async fn rebuild(
    events: Arc<dyn EventStore>,
    views: Arc<dyn ViewStore>,
    projection: Projection,
    options: &RebuildOptions,
    progress: &dyn Progress,
    shutdown: &CancellationToken,
) -> Result<RebuildOutcome, RebuildError> {
    let mut restarts = 0;
    loop {
        let held = take_shadow(&views, projection, options).await?;
        let result = Rebuild {
            events: &*events,
            views: &*views,
            held: &held,
            options,
            progress,
            shutdown,
        }
        .run()
        .await;
        if let Err(error) = &result {
            held.set(RunState::Rebuilding, Some(error.to_string()));
        }
        let lost = matches!(result, Err(RebuildError::LeaseLost { .. }));
        if lost {
            held.stop_heartbeat().await;
        } else {
            // Released even on failure, so a rerun can resume at once.
            held.release().await;
        }
        let Err(error) = &result else {
            return result;
        };
        if restarts >= MAX_RESTARTS || shutdown.is_cancelled() {
            return result;
        }
        let Some(why) = lost_shadow(&*views, projection, &options.holder, lost).await else {
            return result;
        };
        restarts += 1;
        tracing::warn!(
            %projection,
            %error,
            "rebuild: {why}; taking the shadow again ({restarts} of {MAX_RESTARTS})"
        );
    }
}

/// Events in the global-order replay's first commit; later ones are sized
/// by its pace.
const REPLAY_FIRST_BATCH: usize = 100;

/// How many times one rebuild takes its shadow again after losing it with
/// nobody else holding it (see [`lost_shadow`]).
const MAX_RESTARTS: u32 = 3;

/// Acquires the shadow lease of `projection` and starts its heartbeat, or
/// says who holds it.
async fn take_shadow(
    views: &Arc<dyn ViewStore>,
    projection: Projection,
    options: &RebuildOptions,
) -> Result<Held, RebuildError> {
    let acquired = views
        .acquire_lease(
            projection,
            Target::Shadow,
            &options.holder,
            options.lease_ttl,
        )
        .await?;
    let Some(fence) = acquired else {
        let status = views.status(projection).await?;
        let (holder, expires_in) = status.shadow_lease.map_or_else(
            || ("another process".to_owned(), 0.0),
            |lease| {
                let left = (lease.expires_at - status.now).num_milliseconds().max(0);
                (lease.holder, left as f64 / 1000.0)
            },
        );
        return Err(RebuildError::Busy {
            projection,
            holder,
            expires_in,
        });
    };
    Ok(Held::start(
        views.clone(),
        fence,
        options.lease_ttl,
        RunState::Rebuilding,
    ))
}

/// Why a failed rebuild may take its shadow again, if it may: its lease was
/// lost but nobody else holds it (heartbeats that could not reach the store
/// for longer than the TTL, as through a long failover), or the shadow slot
/// is not building although the lease is this rebuild's (its state was
/// changed under it). Another holder's live lease is never taken: that
/// rebuild is left to finish, and the caller reports this one's error.
async fn lost_shadow(
    views: &dyn ViewStore,
    projection: Projection,
    holder: &str,
    lease_lost: bool,
) -> Option<&'static str> {
    let status = views.status(projection).await.ok()?;
    let taken_by_another = status
        .shadow_lease
        .as_ref()
        .is_some_and(|lease| lease.holder != holder && lease.expires_at > status.now);
    if taken_by_another {
        return None;
    }
    if lease_lost {
        return Some("the shadow lease was lost and nobody holds it");
    }
    (status.shadow.state != SlotState::Building)
        .then_some("the shadow slot is no longer building under this rebuild's lease")
}

struct Rebuild<'a> {
    events: &'a dyn EventStore,
    views: &'a dyn ViewStore,
    held: &'a Held,
    options: &'a RebuildOptions,
    progress: &'a dyn Progress,
    shutdown: &'a CancellationToken,
}

impl Rebuild<'_> {
    fn projection(&self) -> Projection {
        self.held.fence.projection
    }

    async fn run(&self) -> Result<RebuildOutcome, RebuildError> {
        let projection = self.projection();
        let started = Instant::now();
        let status = self.views.status(projection).await?;
        let resumed_from = (status.shadow.state == SlotState::Building
            && status.shadow.version == projection.version()
            && status.shadow.checkpoint > 0)
            .then_some(status.shadow.checkpoint);
        if resumed_from.is_none() {
            self.fenced(self.views.reset_shadow(&self.held.fence).await)?;
        }
        let from = resumed_from.unwrap_or(0);
        let head = self.events.head().await?;
        self.progress
            .started(projection, from, head, resumed_from.is_some());
        if resumed_from.is_none() && self.options.by_ticket && self.options.max_rate.is_none() {
            self.by_ticket(head).await?;
        }
        self.catch_up(head).await?;
        let replaying = started.elapsed();

        self.progress.phase(projection, "verifying the shadow");
        let report = verify(
            self.events,
            self.views,
            projection,
            Target::Shadow,
            &self.options.verify,
        )
        .await?;
        let verifying = started.elapsed() - replaying;
        if !report.is_clean() {
            // Resuming from a shadow that fails its check would only fail
            // again: empty it so the next rebuild starts over.
            self.fenced(self.views.reset_shadow(&self.held.fence).await)?;
            return Err(RebuildError::Differences(Box::new(report)));
        }
        // Events that arrived during the check (the live runner would apply
        // them after the swap anyway; this keeps a store without one current).
        let head = self.events.head().await?;
        let reached = self.catch_up(head).await?;

        self.progress.phase(projection, "swapping the shadow in");
        self.fenced(self.views.swap_shadow(&self.held.fence).await)?;
        let outcome = RebuildOutcome {
            projection,
            resumed_from,
            replayed: reached.saturating_sub(from),
            swapped_at: reached,
            elapsed: started.elapsed(),
            replaying,
            verifying,
            verify: report,
        };
        self.progress.finished(&outcome);
        Ok(outcome)
    }

    /// The first pass of a fresh rebuild ([`crate::bulk`]); when it gives up,
    /// the shadow is emptied again for the global-order replay.
    ///
    /// The shadow keeps its secondary indexes throughout. Setting them aside
    /// and building each in one sort at the end was quicker on a quiet
    /// store, but SQLite builds an index in one write transaction: seconds
    /// at a million tickets, during which a live service could not append.
    /// (Indexes a rebuild of an older version set aside are built when the
    /// shadow is emptied, on the empty table, or else at the swap.)
    async fn by_ticket(&self, head: Position) -> Result<(), RebuildError> {
        let projection = self.projection();
        let pass = BulkPass {
            events: self.events,
            views: self.views,
            fence: &self.held.fence,
            read_size: self.options.batch_size,
            shutdown: self.shutdown,
            lost: self.held.lost(),
        };
        let advanced = |folded: u64| self.progress.advanced(projection, folded, head);
        match pass.run(head, &advanced).await {
            Pass::Done => Ok(()),
            Pass::Interrupted => Err(RebuildError::Interrupted {
                projection,
                checkpoint: 0,
                head,
            }),
            Pass::LeaseLost => Err(RebuildError::LeaseLost { projection }),
            Pass::Abandoned { reason } => {
                tracing::warn!(
                    %projection,
                    "rebuild: the by-ticket pass gave up ({reason}); replaying in global order instead"
                );
                self.fenced(self.views.reset_shadow(&self.held.fence).await)?;
                Ok(())
            }
        }
    }

    fn fenced<T>(&self, result: Result<T, ViewError>) -> Result<T, RebuildError> {
        result.map_err(|error| match error {
            ViewError::LeaseLost { .. } => RebuildError::LeaseLost {
                projection: self.projection(),
            },
            other => other.into(),
        })
    }

    /// Replays into the shadow until its checkpoint reaches `head`, then
    /// follows the head a few rounds more; a store written faster than it
    /// can be replayed is left to the live runner after the swap.
    async fn catch_up(&self, head: Position) -> Result<Position, RebuildError> {
        let mut target = head;
        let mut reached = self.replay_to(target).await?;
        for _ in 0..3 {
            let head = self.events.head().await?;
            if head <= reached {
                break;
            }
            target = head;
            reached = self.replay_to(target).await?;
        }
        Ok(reached)
    }

    /// Sleeps as long as `events` take at `max_rate` (no-op when unlimited).
    async fn limit_rate(&self, events: u64) {
        let Some(rate) = self.options.max_rate.filter(|rate| *rate > 0) else {
            return;
        };
        let pause = Duration::from_secs_f64(events as f64 / f64::from(rate));
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }

    async fn replay_to(&self, target: Position) -> Result<Position, RebuildError> {
        let projection = self.projection();
        let mut failing = false;
        let mut known = KnownCheckpoint::default();
        let mut pace = Pace::new(REPLAY_FIRST_BATCH, 1, self.options.batch_size);
        loop {
            if self.shutdown.is_cancelled() {
                let checkpoint = self
                    .views
                    .checkpoint(projection, Target::Shadow)
                    .await
                    .unwrap_or(0);
                return Err(RebuildError::Interrupted {
                    projection,
                    checkpoint,
                    head: target,
                });
            }
            if self.held.lost().is_cancelled() {
                return Err(RebuildError::LeaseLost { projection });
            }
            let started = Instant::now();
            match apply_batch(
                self.events,
                self.views,
                &self.held.fence,
                pace.size(),
                &mut known,
            )
            .await
            {
                Ok(Batch::Idle { checkpoint }) => {
                    self.progress
                        .advanced(projection, checkpoint, target.max(checkpoint));
                    return Ok(checkpoint);
                }
                Ok(Batch::Applied {
                    from, to, failed, ..
                }) => {
                    failing = false;
                    // The batch's read and fold count as its commit here: a
                    // little smaller and a little more pause than needed.
                    let took = started.elapsed();
                    self.progress.advanced(projection, to, target.max(to));
                    self.limit_rate(to - from).await;
                    let head = self.events.head().await?;
                    let events = usize::try_from(to - from).unwrap_or(usize::MAX);
                    let pause = pace.committed(events, took, head);
                    if let Some(failed) = failed {
                        DeadLetters::new(self.views, projection)
                            .record_unless_known(&failed)
                            .await;
                        return Err(RebuildError::Stuck {
                            projection,
                            position: failed.event.position,
                            reason: failed.error.to_string(),
                        });
                    }
                    if to >= target {
                        return Ok(to);
                    }
                    tokio::select! {
                        () = self.shutdown.cancelled() => {}
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                Err(ProjectorError::Views(ViewError::LeaseLost { .. })) => {
                    return Err(RebuildError::LeaseLost { projection });
                }
                // Nobody else writes a leased shadow; re-read and go on.
                Err(ProjectorError::Views(ViewError::CheckpointMoved { .. })) => {}
                Err(error) if error.is_transient() => {
                    if !failing {
                        tracing::warn!(%projection, %error, "rebuild batch failed; retrying");
                    }
                    failing = true;
                    tokio::select! {
                        () = self.shutdown.cancelled() => {}
                        () = tokio::time::sleep(self.options.retry_backoff) => {}
                    }
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_reads_as_a_duration() {
        assert_eq!(eta(0, 0.0), "0s");
        assert_eq!(eta(10, 0.0), "?");
        assert_eq!(eta(100, 10.0), "10s");
        assert_eq!(eta(1850, 10.0), "3m05s");
        assert_eq!(eta(37_200, 10.0), "1h02m");
    }
}
