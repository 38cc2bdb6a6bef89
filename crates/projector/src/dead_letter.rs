//! Dead letters: events a projection cannot apply. Everything the projector
//! does with them is here: the policy ([`DeadLetterPolicy`]) and how each
//! loop records one (the live runner and `catch_up` by the policy, a rebuild
//! always as pending), how a live runner stopped at one learns that ops
//! skipped or retried it, how one it applies after all becomes resolved, and
//! the ops' side (`dead-letters retry|skip`, and [`DeadLetterAdmin`], the
//! same for a server's HTTP routes).

use std::collections::{BTreeSet, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono::Utc;
use eventstore::Position;
use readmodel::{
    DeadLetter, DeadLetterState, FailedEvent, Projection, Target, ViewError, ViewStore,
};

use crate::ProjectorError;

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

impl DeadLetterPolicy {
    /// The state a dead letter is recorded in under this policy.
    fn recorded_state(self) -> DeadLetterState {
        match self {
            DeadLetterPolicy::Stop => DeadLetterState::Pending,
            DeadLetterPolicy::Skip => DeadLetterState::Skipped,
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

/// The ops' side of dead letters as a service that holds its store, for a
/// server: `ticketd`'s `/projections/dead-letters` routes (crate `api`)
/// call this rather than a store, so listing, retrying and skipping over
/// HTTP does exactly what `ticket-projector dead-letters list|retry|skip`
/// does, with the policy kept here.
#[derive(Debug, Clone)]
pub struct DeadLetterAdmin {
    views: Arc<dyn ViewStore>,
}

impl DeadLetterAdmin {
    pub fn new(views: Arc<dyn ViewStore>) -> Self {
        Self { views }
    }

    /// Dead letters, of one projection or all, by projection then position,
    /// in every state (as `dead-letters list` shows them).
    pub async fn list(
        &self,
        projection: Option<Projection>,
    ) -> Result<Vec<DeadLetter>, ProjectorError> {
        Ok(self.views.dead_letters(projection).await?)
    }

    /// Sets a dead letter's state, as [`set_dead_letter`] does, and returns
    /// the letter as it now is (`None` when there is no such dead letter).
    pub async fn set(
        &self,
        projection: Projection,
        position: Position,
        state: DeadLetterState,
    ) -> Result<Option<(DeadLetter, DeadLetterChange)>, ProjectorError> {
        let change = set_dead_letter(&*self.views, projection, position, state).await?;
        if !change.found {
            return Ok(None);
        }
        let letter = self
            .list(Some(projection))
            .await?
            .into_iter()
            .find(|letter| letter.position == position);
        Ok(letter.map(|letter| (letter, change)))
    }
}

/// One projection's dead letters, as its loops see them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeadLetters<'a> {
    views: &'a dyn ViewStore,
    projection: Projection,
}

/// What a projection stopped at a dead letter does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterStop {
    /// Still pending (or its state could not be read): stay stopped.
    Wait,
    /// Ops skipped it: carry on past it.
    Skipped,
    /// Ops asked for a retry (or the letter is gone): apply it again.
    Retry,
}

impl<'a> DeadLetters<'a> {
    pub fn new(views: &'a dyn ViewStore, projection: Projection) -> Self {
        Self { views, projection }
    }

    /// Records a dead letter for the event a fold stopped at, in the state
    /// `policy` gives it, and tells ops: a warning for a skipped event, an
    /// error naming the commands that move a stopped projection on.
    pub async fn record(
        &self,
        failed: &FailedEvent,
        policy: DeadLetterPolicy,
    ) -> Result<(), ViewError> {
        let projection = self.projection;
        let reason = failed.error.to_string();
        let letter = DeadLetter::new(
            projection,
            &failed.event,
            reason.clone(),
            policy.recorded_state(),
            Utc::now(),
        );
        self.views.put_dead_letter(&letter).await?;
        let position = failed.event.position;
        let event_type = &failed.event.event_type;
        match policy {
            DeadLetterPolicy::Skip => {
                tracing::warn!(%projection, position, %event_type, %reason, "event skipped (dead-letter policy skip)");
            }
            DeadLetterPolicy::Stop => tracing::error!(
                %projection, position, %event_type, %reason,
                "projection stopped at an event it cannot apply; see `ticket-projector dead-letters list`, then `retry` or `skip` {projection} {position}"
            ),
        }
        Ok(())
    }

    /// What a rebuild stuck at an event records: a pending dead letter, so
    /// ops can act on it, unless there is one already at that position (one
    /// the live runner recorded, or ops already set to retry, stays as it
    /// is). A failure to record is logged: the rebuild fails either way.
    pub async fn record_unless_known(&self, failed: &FailedEvent) {
        let projection = self.projection;
        let known = match self.views.dead_letters(Some(projection)).await {
            Ok(letters) => letters
                .iter()
                .any(|letter| letter.position == failed.event.position),
            Err(_) => false,
        };
        if known {
            return;
        }
        let letter = DeadLetter::new(
            projection,
            &failed.event,
            failed.error.to_string(),
            DeadLetterState::Pending,
            Utc::now(),
        );
        if let Err(error) = self.views.put_dead_letter(&letter).await {
            tracing::warn!(%projection, %error, "cannot record the dead letter");
        }
    }

    /// What a live runner stopped at the dead letter at `position` does next,
    /// by the state ops left it in. A retried letter (or one that is gone)
    /// is added to `unresolved`, so that applying it resolves it.
    pub async fn after_stop(
        &self,
        position: Position,
        unresolved: &mut BTreeSet<Position>,
    ) -> AfterStop {
        let projection = self.projection;
        match self.state(position).await {
            Ok(Some(DeadLetterState::Pending)) | Err(_) => AfterStop::Wait,
            Ok(Some(DeadLetterState::Skipped)) => {
                tracing::info!(%projection, position, "dead letter skipped: carrying on");
                AfterStop::Skipped
            }
            Ok(state) => {
                tracing::info!(%projection, position, "dead letter retried: applying it again");
                if state != Some(DeadLetterState::Retry) {
                    unresolved.insert(position);
                }
                AfterStop::Retry
            }
        }
    }

    async fn state(&self, position: Position) -> Result<Option<DeadLetterState>, ViewError> {
        let letters = self.views.dead_letters(Some(self.projection)).await?;
        Ok(letters
            .into_iter()
            .find(|letter| letter.position == position)
            .map(|letter| letter.state))
    }

    /// The dead letters a live runner may pass by applying them: pending or
    /// retried ones above the live checkpoint. Passing one resolves it.
    pub async fn unresolved(&self) -> BTreeSet<Position> {
        let checkpoint = self
            .views
            .checkpoint(self.projection, Target::Live)
            .await
            .unwrap_or(0);
        match self.views.dead_letters(Some(self.projection)).await {
            Ok(letters) => letters
                .into_iter()
                .filter(|letter| {
                    letter.position > checkpoint
                        && matches!(
                            letter.state,
                            DeadLetterState::Pending | DeadLetterState::Retry
                        )
                })
                .map(|letter| letter.position)
                .collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    /// Marks the dead letters of `unresolved` that a batch committed up to
    /// `to` applied as resolved (those it passed as `skipped` are not).
    pub async fn resolve_passed(
        &self,
        unresolved: &mut BTreeSet<Position>,
        to: Position,
        skipped: &HashSet<Position>,
    ) {
        let passed: Vec<Position> = unresolved.range(..=to).copied().collect();
        for position in passed {
            unresolved.remove(&position);
            if skipped.contains(&position) {
                continue;
            }
            match self
                .views
                .set_dead_letter_state(self.projection, position, DeadLetterState::Resolved)
                .await
            {
                Ok(_) => {
                    tracing::info!(projection = %self.projection, position, "dead letter applied: resolved")
                }
                Err(error) => {
                    tracing::warn!(projection = %self.projection, position, %error, "cannot mark the dead letter resolved")
                }
            }
        }
    }
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
}
