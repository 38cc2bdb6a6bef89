//! Waiting for new events: the in-process signal that appends and the change
//! stream raise, and this backend's intervals for `eventstore::wait_for_head`,
//! which falls back to polling by position.
//!
//! The signal only ever says "look again"; the answer is always a read of the
//! head position. A waiter subscribes before it reads, so a signal raised
//! between its read and its sleep still wakes it. While the change stream is
//! live the waiter also re-reads every [`LIVE_RECHECK`] (a safety net, should
//! a stream die quietly); while it is not, every [`POLL_INTERVAL`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventstore::Position;
use tokio::sync::watch;

/// How often a waiter reads the head when no change stream is live.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How often a waiter reads the head while the change stream is live.
pub const LIVE_RECHECK: Duration = Duration::from_secs(1);

/// "Something may have been appended", and whether a change stream is
/// watching for appends made elsewhere.
#[derive(Debug)]
pub(crate) struct Wakeups {
    signal: watch::Sender<u64>,
    live: AtomicBool,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            signal: watch::Sender::new(0),
            live: AtomicBool::new(false),
        }
    }
}

impl Wakeups {
    pub(crate) fn notify(&self) {
        self.signal
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    pub(crate) fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::SeqCst);
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// The signal's count of wake-ups so far.
    #[cfg(test)]
    pub(crate) fn signal_for_tests(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }

    /// Waits until `head` answers more than `after` (true) or `max_wait`
    /// passes (false). `head` is read at once, on every signal, and at least
    /// every [`LIVE_RECHECK`] or [`POLL_INTERVAL`] (as the stream is live or not).
    pub(crate) async fn wait<E, Read>(
        &self,
        after: Position,
        max_wait: Duration,
        head: impl FnMut() -> Read,
    ) -> Result<bool, E>
    where
        Read: Future<Output = Result<Position, E>>,
    {
        let interval = || {
            if self.is_live() {
                LIVE_RECHECK
            } else {
                POLL_INTERVAL
            }
        };
        eventstore::wait_for_head(self.signal.subscribe(), after, max_wait, interval, head).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use tokio::time::Instant;

    #[tokio::test]
    async fn answers_at_once_when_behind_and_times_out_when_not() {
        let wakeups = Wakeups::default();
        let head = AtomicU64::new(3);
        let read = || std::future::ready(Ok::<_, Infallible>(head.load(Ordering::SeqCst)));
        assert_eq!(
            wakeups.wait(2, Duration::from_secs(5), read).await,
            Ok(true)
        );
        let started = Instant::now();
        let read = || std::future::ready(Ok::<_, Infallible>(head.load(Ordering::SeqCst)));
        assert_eq!(
            wakeups.wait(3, Duration::from_millis(120), read).await,
            Ok(false)
        );
        assert!(started.elapsed() >= Duration::from_millis(120));
    }

    #[tokio::test]
    async fn a_signal_wakes_a_live_waiter_before_its_recheck() {
        let wakeups = Arc::new(Wakeups::default());
        wakeups.set_live(true);
        let head = Arc::new(AtomicU64::new(0));
        let appender = {
            let (wakeups, head) = (Arc::clone(&wakeups), Arc::clone(&head));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                head.store(1, Ordering::SeqCst);
                wakeups.notify();
            })
        };
        let started = Instant::now();
        let read = || std::future::ready(Ok::<_, Infallible>(head.load(Ordering::SeqCst)));
        assert_eq!(
            wakeups.wait(0, Duration::from_secs(10), read).await,
            Ok(true)
        );
        assert!(
            started.elapsed() < LIVE_RECHECK,
            "woken by the signal, not the recheck"
        );
        appender.await.expect("the appender");
    }

    #[tokio::test]
    async fn without_a_stream_an_unsignalled_append_is_found_by_polling() {
        let wakeups = Arc::new(Wakeups::default());
        let head = Arc::new(AtomicU64::new(0));
        let appender = {
            let head = Arc::clone(&head);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                head.store(1, Ordering::SeqCst);
            })
        };
        let started = Instant::now();
        let read = || std::future::ready(Ok::<_, Infallible>(head.load(Ordering::SeqCst)));
        assert_eq!(
            wakeups.wait(0, Duration::from_secs(10), read).await,
            Ok(true)
        );
        assert!(started.elapsed() < Duration::from_millis(30) + POLL_INTERVAL * 4);
        appender.await.expect("the appender");
    }
}
