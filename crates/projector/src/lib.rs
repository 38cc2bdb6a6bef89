//! The projector: follows the event store by global position and keeps the read
//! models current.
//!
//! The projections themselves are pure and live in `readmodel`; this crate owns
//! the loop around them: read a batch after the checkpoint, load the views it
//! touches, fold, and commit views and checkpoint in one transaction through the
//! [`ViewStore`]. Because the commit is guarded by the checkpoint it started
//! from, and every view row by its ticket version, a crash or a second runner at
//! any point neither loses nor double-applies an event.

use std::sync::Arc;
use std::time::Duration;

use eventstore::{EventStore, Position, StoreError};
use readmodel::{ProjectionError, ViewError, ViewStore, fold_batch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How the runner batches and waits.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Most events folded into one transaction.
    pub batch_size: usize,
    /// Longest single wait for new events before checking again; wake-ups from
    /// the store normally end the wait much sooner.
    pub idle_wait: Duration,
    /// Pause after a transient store failure before trying again.
    pub retry_backoff: Duration,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            idle_wait: Duration::from_secs(1),
            retry_backoff: Duration::from_millis(500),
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
    /// An event the projection cannot apply: the projector stops rather than
    /// leave a view silently wrong.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
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

/// Moves events from an event store into a view store.
#[derive(Debug, Clone)]
pub struct Projector {
    events: Arc<dyn EventStore>,
    views: Arc<dyn ViewStore>,
    config: ProjectorConfig,
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
        }
    }

    /// Applies one batch after the stored checkpoint. Returns how many events the
    /// batch held (0: the views are caught up with the store).
    pub async fn step(&self) -> Result<usize, ProjectorError> {
        let from = self.views.checkpoint().await?;
        let batch = self.events.read_all(from, self.config.batch_size).await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let mut ids: Vec<Uuid> = batch.iter().map(|event| event.ticket_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let current = self.views.load_tickets(&ids).await?;
        let changes = fold_batch(from, current, &batch)?;
        self.views.commit(changes).await?;
        Ok(batch.len())
    }

    /// Applies batches until the views reflect every event that existed when it
    /// was called, or later ones. Returns the checkpoint reached.
    pub async fn catch_up(&self) -> Result<Position, ProjectorError> {
        let head = self.events.head().await?;
        loop {
            let checkpoint = self.views.checkpoint().await?;
            if checkpoint >= head {
                return Ok(checkpoint);
            }
            self.step().await?;
        }
    }

    /// Follows the store until `shutdown` is cancelled. A batch in flight is
    /// finished and committed before it returns. Transient failures are logged and
    /// retried; a projection error stops it (with the error) so nothing is
    /// silently skipped.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), ProjectorError> {
        tracing::info!(batch_size = self.config.batch_size, "projector started");
        let mut failing = false;
        while !shutdown.is_cancelled() {
            match self.step().await {
                Ok(0) => {
                    failing = false;
                    self.wait_for_events(&shutdown).await;
                }
                Ok(applied) => {
                    failing = false;
                    tracing::debug!(applied, "batch committed");
                }
                Err(error) if error.is_transient() => {
                    // Log a failure once, not once per retry.
                    if !failing {
                        tracing::warn!(%error, "projector step failed; retrying");
                    }
                    failing = true;
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(self.config.retry_backoff) => {}
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "projector stopped: an event cannot be applied");
                    return Err(error);
                }
            }
        }
        tracing::info!("projector stopped");
        Ok(())
    }

    async fn wait_for_events(&self, shutdown: &CancellationToken) {
        let Ok(checkpoint) = self.views.checkpoint().await else {
            return;
        };
        tokio::select! {
            () = shutdown.cancelled() => {}
            // An error here surfaces on the next step; nothing to do with it now.
            _ = self.events.wait_for_events(checkpoint, self.config.idle_wait) => {}
        }
    }
}
