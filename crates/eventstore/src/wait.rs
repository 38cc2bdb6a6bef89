//! The wait behind [`crate::EventStore::wait_for_events`], shared by the
//! backends: each supplies its signal, how often to look again, and how to
//! read the head.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::Position;

/// Waits until `head` answers more than `after` (true) or `max_wait` passes
/// (false). `head` is read at once, whenever `signal` changes, and at least
/// every `interval()`. The signal only ever says "look again"; subscribe it
/// before anything that could miss an append (a first read of the head), so
/// an append signalled in between still wakes the wait. A `max_wait` too
/// long to represent never times out.
pub async fn wait_for_head<S, E, Read>(
    mut signal: watch::Receiver<S>,
    after: Position,
    max_wait: Duration,
    mut interval: impl FnMut() -> Duration,
    mut head: impl FnMut() -> Read,
) -> Result<bool, E>
where
    Read: Future<Output = Result<Position, E>>,
{
    let deadline = Instant::now().checked_add(max_wait);
    loop {
        signal.borrow_and_update();
        if head().await? > after {
            return Ok(true);
        }
        let now = Instant::now();
        if deadline.is_some_and(|deadline| now >= deadline) {
            return Ok(false);
        }
        let interval = interval();
        let nap = deadline.map_or(interval, |deadline| interval.min(deadline - now));
        tokio::select! {
            // The sender outlives the wait in both backends, so `changed`
            // cannot fail; were it to, the sleep still bounds the wait.
            changed = signal.changed() => if changed.is_err() {
                tokio::time::sleep(nap).await;
            },
            () = tokio::time::sleep(nap) => {}
        }
    }
}
