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
use std::time::Duration;

use async_trait::async_trait;

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
