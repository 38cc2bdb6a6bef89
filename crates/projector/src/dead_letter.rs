//! Dead letters: the policy for an event a projection cannot apply, and the
//! ops' side of it (`dead-letters retry|skip`).

use std::str::FromStr;

use eventstore::Position;
use readmodel::{DeadLetterState, Projection, Target, ViewStore};

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
