//! How a reader waits for a projection's live checkpoint to move without
//! reading it over and over: [`ViewReader::watch_live_checkpoint`] hands out a
//! [`CheckpointWatch`], which returns when the checkpoint may have moved.
//!
//! A watch is only a prompt to read the checkpoint again, never the answer:
//! the answer is always [`ViewReader::checkpoint`]. A store prompts for what
//! it can see (its own commits and swaps at once; a backend that can follow
//! the database's changes also those of other processes) and says, with
//! [`CheckpointWatch::recheck`], how long a waiter may go without a prompt
//! before it reads anyway: a projector in another process commits without
//! telling this one.
//!
//! [`ViewReader::watch_live_checkpoint`]: crate::ViewReader::watch_live_checkpoint
//! [`ViewReader::checkpoint`]: crate::ViewReader::checkpoint

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::Projection;

/// How long a waiter goes without a prompt before it reads a live checkpoint
/// anyway, when the store cannot be prompted by a projector in another
/// process (SQLite; MongoDB without a change stream). It bounds how late
/// such a projector's commit is seen, and keeps a waiting read to a few
/// store reads a second.
pub const CHECKPOINT_RECHECK: Duration = Duration::from_millis(100);

/// Prompts that a projection's live checkpoint may have moved. Made by
/// [`crate::ViewReader::watch_live_checkpoint`] before the first read of the
/// checkpoint it guards, so a move between that read and the wait is not
/// missed.
#[async_trait]
pub trait CheckpointWatch: Send + Debug {
    /// Returns once the live checkpoint may have moved since the watch was
    /// made or this last returned. It may return when nothing moved (a
    /// waiter then reads the same checkpoint again), and may never return
    /// for a move the store could not see: wait on it together with a timer
    /// of [`CheckpointWatch::recheck`]. Cancel-safe: a wait dropped unfinished
    /// loses no prompt.
    async fn moved(&mut self);

    /// How long to wait for [`CheckpointWatch::moved`] before reading the
    /// checkpoint anyway. Asked before each wait: it may change while the
    /// watch lives (a change stream that opens or fails).
    fn recheck(&self) -> Duration;
}

/// The watch of a store that cannot prompt at all: it never returns, and a
/// waiter reads every [`CHECKPOINT_RECHECK`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Unprompted;

#[async_trait]
impl CheckpointWatch for Unprompted {
    async fn moved(&mut self) {
        std::future::pending::<()>().await;
    }

    fn recheck(&self) -> Duration {
        CHECKPOINT_RECHECK
    }
}

/// A store's prompts, one per projection, raised for what it sees: its own
/// live commits and swaps and, while a follower of the database's changes
/// runs ([`CheckpointPrompts::set_followed`]), those of other processes. Its
/// watches recheck every [`CHECKPOINT_RECHECK`], or every `followed_recheck`
/// (a longer safety net) while followed.
#[derive(Debug)]
pub struct CheckpointPrompts {
    /// A count of prompts per projection, in [`Projection::ALL`] order.
    moved: [watch::Sender<u64>; 3],
    followed: AtomicBool,
    followed_recheck: Duration,
}

impl Default for CheckpointPrompts {
    fn default() -> Self {
        Self::with_followed_recheck(CHECKPOINT_RECHECK)
    }
}

impl CheckpointPrompts {
    /// Prompts whose watches recheck every `followed_recheck` while a
    /// follower runs.
    pub fn with_followed_recheck(followed_recheck: Duration) -> Self {
        Self {
            moved: std::array::from_fn(|_| watch::Sender::new(0)),
            followed: AtomicBool::new(false),
            followed_recheck,
        }
    }

    fn of(&self, projection: Projection) -> &watch::Sender<u64> {
        let index = match projection {
            Projection::Detail => 0,
            Projection::List => 1,
            Projection::Dashboard => 2,
        };
        &self.moved[index]
    }

    /// The live checkpoint of `projection` may have moved: wakes its watches.
    pub fn moved(&self, projection: Projection) {
        self.of(projection)
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Any live checkpoint may have moved.
    pub fn all_moved(&self) {
        for projection in Projection::ALL {
            self.moved(projection);
        }
    }

    /// Whether a follower of the database's changes runs (its prompts cover
    /// other processes' commits); every watch is prompted, to take up the
    /// recheck that now applies and read what moved meanwhile.
    pub fn set_followed(&self, followed: bool) {
        self.followed.store(followed, Ordering::SeqCst);
        self.all_moved();
    }

    pub fn is_followed(&self) -> bool {
        self.followed.load(Ordering::SeqCst)
    }

    /// How many prompts `projection` has had.
    pub fn count(&self, projection: Projection) -> u64 {
        *self.of(projection).borrow()
    }

    /// A watch on `projection`'s live checkpoint.
    pub fn watch(self: &Arc<Self>, projection: Projection) -> Box<dyn CheckpointWatch> {
        Box::new(Prompted {
            moved: self.of(projection).subscribe(),
            prompts: Arc::clone(self),
        })
    }
}

#[derive(Debug)]
struct Prompted {
    moved: watch::Receiver<u64>,
    prompts: Arc<CheckpointPrompts>,
}

#[async_trait]
impl CheckpointWatch for Prompted {
    async fn moved(&mut self) {
        if self.moved.changed().await.is_err() {
            // Unreachable while `prompts` is held; were it not, the recheck
            // still bounds the wait.
            std::future::pending::<()>().await;
        }
    }

    fn recheck(&self) -> Duration {
        if self.prompts.is_followed() {
            self.prompts.followed_recheck
        } else {
            CHECKPOINT_RECHECK
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prompt raised after the watch was made and before it is awaited is
    /// kept; one for another projection wakes nobody here.
    #[tokio::test]
    async fn a_watch_keeps_a_prompt_for_its_own_projection() {
        let prompts = Arc::new(CheckpointPrompts::default());
        let mut list = prompts.watch(Projection::List);
        let mut detail = prompts.watch(Projection::Detail);
        prompts.moved(Projection::List);
        list.moved().await;
        let quiet = tokio::time::timeout(Duration::from_millis(20), detail.moved()).await;
        assert!(quiet.is_err(), "a list commit prompted the detail watch");
        let again = tokio::time::timeout(Duration::from_millis(20), list.moved()).await;
        assert!(again.is_err(), "one prompt is taken once");
        assert_eq!(list.recheck(), CHECKPOINT_RECHECK);
    }

    /// While followed, watches take the longer safety net; setting or
    /// clearing it prompts every watch.
    #[tokio::test]
    async fn following_prompts_everyone_and_sets_the_recheck() {
        let followed_recheck = Duration::from_secs(1);
        let prompts = Arc::new(CheckpointPrompts::with_followed_recheck(followed_recheck));
        let mut detail = prompts.watch(Projection::Detail);
        prompts.set_followed(true);
        detail.moved().await;
        assert_eq!(detail.recheck(), followed_recheck);
        prompts.set_followed(false);
        detail.moved().await;
        assert_eq!(detail.recheck(), CHECKPOINT_RECHECK);
    }
}
