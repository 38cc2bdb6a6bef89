//! The prompt behind `ViewReader::watch_live_checkpoint`: one signal per
//! projection, raised after every live commit and swap through this store
//! (all its clones) has committed.
//!
//! SQLite cannot tell this process what another one commits, so a projector
//! running elsewhere on the same file (`ticket-projector` beside
//! `ticketd --no-projector`) is found by the waiters' recheck,
//! [`readmodel::CHECKPOINT_RECHECK`].

use std::time::Duration;

use async_trait::async_trait;
use readmodel::{CHECKPOINT_RECHECK, CheckpointWatch, Projection};
use tokio::sync::watch;

/// A count of prompts per projection, in [`Projection::ALL`] order.
#[derive(Debug)]
pub(crate) struct CheckpointMoves {
    moved: [watch::Sender<u64>; 3],
}

impl Default for CheckpointMoves {
    fn default() -> Self {
        CheckpointMoves {
            moved: std::array::from_fn(|_| watch::Sender::new(0)),
        }
    }
}

impl CheckpointMoves {
    fn of(&self, projection: Projection) -> &watch::Sender<u64> {
        let index = match projection {
            Projection::Detail => 0,
            Projection::List => 1,
            Projection::Dashboard => 2,
        };
        &self.moved[index]
    }

    /// The live checkpoint of `projection` moved: wakes its watches.
    pub(crate) fn moved(&self, projection: Projection) {
        self.of(projection)
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    pub(crate) fn watch(&self, projection: Projection) -> Box<dyn CheckpointWatch> {
        Box::new(Watch {
            moved: self.of(projection).subscribe(),
        })
    }
}

#[derive(Debug)]
struct Watch {
    moved: watch::Receiver<u64>,
}

#[async_trait]
impl CheckpointWatch for Watch {
    async fn moved(&mut self) {
        if self.moved.changed().await.is_err() {
            // The store is gone: nothing will prompt again.
            std::future::pending::<()>().await;
        }
    }

    fn recheck(&self) -> Duration {
        CHECKPOINT_RECHECK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prompt raised after the watch was made and before it is awaited is
    /// kept; one for another projection wakes nobody here.
    #[tokio::test]
    async fn a_watch_keeps_a_prompt_for_its_own_projection() {
        let moves = CheckpointMoves::default();
        let mut list = moves.watch(Projection::List);
        let mut detail = moves.watch(Projection::Detail);
        moves.moved(Projection::List);
        list.moved().await;
        let quiet =
            tokio::time::timeout(std::time::Duration::from_millis(20), detail.moved()).await;
        assert!(quiet.is_err(), "a list commit prompted the detail watch");
        let again = tokio::time::timeout(std::time::Duration::from_millis(20), list.moved()).await;
        assert!(again.is_err(), "one prompt is taken once");
    }
}
