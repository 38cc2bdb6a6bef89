//! [`ProjectorError`]: why the projector stopped or a step failed, and which
//! failures are worth retrying.

use eventstore::StoreError;
use readmodel::{Projection, ProjectionError, ViewError};

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
