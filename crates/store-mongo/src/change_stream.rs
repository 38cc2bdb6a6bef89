//! Change streams reduced to prompts: the one on `events` (wake-ups for
//! tailers), and the loop that follows any stream for a [`Listener`] (also
//! the view store's, on `projection_slots`).
//!
//! A background task (started by [`crate::MongoStore::connect`]) watches
//! inserts into `events` and raises the store's wake-up signal for each, so a
//! tailer in another process learns of an append within a round trip. The
//! stream is only a prompt: nothing is read from it, so nothing can be lost
//! through it. When it cannot open (a standalone server or a test server has
//! no change streams), loses its history (286), is invalidated, or the network
//! drops, the task says so once, waiters fall back to polling the head by
//! position, and the stream is reopened with a capped exponential backoff.
//! The backoff starts over only after a stream has proved itself (lived
//! [`Backoff::proven_after`] or delivered an insert): a stream that opens and
//! then fails at once (a server that accepts the `aggregate` but fails its
//! first `getMore`, a member stepping down over and over) counts as one more
//! failure, so it is not reopened in a tight loop.

use std::future::Future;
use std::time::Duration;

use futures::{Stream, StreamExt};
use mongodb::Collection;
use mongodb::bson::{Document, doc};
use mongodb::error::ErrorKind;
use tokio::time::Instant;

use crate::error::server_code;
use crate::wake::Wakeups;

/// How long the server holds a `getMore` on the stream open waiting for a
/// change. The driver's default costs about a second of latency per idle
/// round; this keeps the stream responsive without busy round trips.
pub const MAX_AWAIT: Duration = Duration::from_millis(150);

/// Server error codes that mean "no change streams here".
mod code {
    /// "The $changeStream stage is only supported on replica sets".
    pub const ONLY_ON_REPLICA_SETS: i32 = 40573;
    /// NotImplemented: jongodb's answer to `$changeStream`.
    pub const NOT_IMPLEMENTED: i32 = 238;
    /// CommandNotSupported.
    pub const COMMAND_NOT_SUPPORTED: i32 = 115;
    /// TypeMismatch: jongodb's answer to a database or cluster watch.
    pub const TYPE_MISMATCH: i32 = 14;
    /// ChangeStreamHistoryLost: the oplog no longer reaches the resume point.
    pub const HISTORY_LOST: i32 = 286;
}

/// The label servers put on a feature they lack.
const UNSUPPORTED_FEATURE: &str = "UnsupportedFeature";

/// What one change event asks of the follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnChange {
    /// An insert: something may be new.
    Wake,
    /// The stream is over (`invalidate`, or the collection or database was
    /// dropped or renamed): open a new one.
    Restart,
    /// Anything else (an event type this code does not expect).
    Ignore,
}

/// Classifies a change event document as MongoDB documents it
/// (`{_id: <token>, operationType: "insert", ns: {...}, documentKey: {...}}`).
pub(crate) fn classify_change(change: &Document) -> OnChange {
    match change.get_str("operationType") {
        Ok("insert") => OnChange::Wake,
        Ok("invalidate" | "drop" | "dropDatabase" | "rename") => OnChange::Restart,
        _ => OnChange::Ignore,
    }
}

/// What a failed stream asks of the follower. Every answer means "poll
/// meanwhile"; they differ in how they are reported and how soon the stream is
/// tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnFailure {
    /// The server has no change streams (standalone, a test server).
    Unsupported,
    /// The stream outlived its history: reopen from now (after the first
    /// pause, if the stream had proved itself).
    HistoryLost,
    /// The network, a step-down, a timeout, anything else.
    Retry,
}

/// The parts of a driver error the decision needs, so that the decision can be
/// tested without a server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Failure {
    pub code: Option<i32>,
    pub labels: Vec<String>,
    pub network: bool,
}

impl Failure {
    pub(crate) fn of(error: &mongodb::error::Error) -> Self {
        Failure {
            code: server_code(error),
            labels: error.labels().iter().cloned().collect(),
            network: matches!(
                error.kind.as_ref(),
                ErrorKind::Io(_)
                    | ErrorKind::ConnectionPoolCleared { .. }
                    | ErrorKind::ServerSelection { .. }
            ),
        }
    }
}

pub(crate) fn classify_failure(failure: &Failure) -> OnFailure {
    if failure
        .labels
        .iter()
        .any(|label| label == UNSUPPORTED_FEATURE)
    {
        return OnFailure::Unsupported;
    }
    match failure.code {
        Some(
            code::ONLY_ON_REPLICA_SETS
            | code::NOT_IMPLEMENTED
            | code::COMMAND_NOT_SUPPORTED
            | code::TYPE_MISMATCH,
        ) => OnFailure::Unsupported,
        Some(code::HISTORY_LOST) => OnFailure::HistoryLost,
        _ => OnFailure::Retry,
    }
}

/// How soon a failed stream is tried again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    /// The pause after the first failure, and after a proven stream ends.
    pub first: Duration,
    /// The longest pause; waiters poll meanwhile, so nothing waits on it.
    pub max: Duration,
    /// A stream that lived this long (or delivered an insert) proved the
    /// server can keep one open: when it ends, the pauses start over from
    /// `first`. One that ends sooner is one more failure in a row.
    pub proven_after: Duration,
}

pub(crate) const BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(500),
    max: Duration::from_secs(30),
    proven_after: Duration::from_secs(10),
};

/// The pauses between attempts to open the stream: doubling from
/// [`Backoff::first`] up to [`Backoff::max`], and back to `first` only after a
/// stream that proved itself. Opening successfully is not proof: a stream that
/// opens and fails at once must not reset the pause, or it would be reopened
/// every `first` forever.
#[derive(Debug, Clone)]
pub(crate) struct Reopen {
    backoff: Backoff,
    next: Duration,
}

impl Reopen {
    pub(crate) fn new(backoff: Backoff) -> Self {
        Reopen {
            backoff,
            next: backoff.first,
        }
    }

    /// A stream that opened has ended (failed, invalidated or closed) after
    /// `lived`, having delivered an insert or not.
    pub(crate) fn stream_ended(&mut self, lived: Duration, delivered: bool) {
        if delivered || lived >= self.backoff.proven_after {
            self.next = self.backoff.first;
        }
    }

    /// The pause to take before the next attempt; the one after it is twice
    /// as long, up to the cap.
    pub(crate) fn pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = pause.saturating_mul(2).min(self.backoff.max);
        pause
    }
}

/// Opens the stream of inserts into `events`, each event trimmed to what the
/// driver needs to track it.
pub(crate) async fn open(
    events: Collection<Document>,
) -> Result<
    impl Stream<Item = Result<Document, mongodb::error::Error>> + Unpin,
    mongodb::error::Error,
> {
    let stream = events
        .watch()
        .pipeline([
            doc! { "$match": { "operationType": "insert" } },
            doc! { "$project": { "operationType": 1, "ns": 1, "documentKey": 1 } },
        ])
        .max_await_time(MAX_AWAIT)
        .await?;
    Ok(stream.with_type::<Document>())
}

fn describe(failure: &Failure, error: &mongodb::error::Error) -> String {
    if failure.network {
        format!("network: {error}")
    } else {
        error.to_string()
    }
}

/// What a followed stream turns into: `Wakeups` for `events`, the view
/// store's checkpoint prompts for `projection_slots` (`views::moves`).
pub(crate) trait Listener {
    /// The collection followed, for the log.
    fn collection(&self) -> &'static str;
    /// What waiters do while no stream is open, for the log.
    fn fallback(&self) -> String;
    /// A stream opened (true) or ended (false); waiters should look again.
    fn set_live(&self, live: bool);
    /// A change that does not end the stream; true when it prompted anyone.
    fn changed(&self, change: &Document) -> bool;
}

impl<L: Listener> Listener for std::sync::Arc<L> {
    fn collection(&self) -> &'static str {
        (**self).collection()
    }

    fn fallback(&self) -> String {
        (**self).fallback()
    }

    fn set_live(&self, live: bool) {
        (**self).set_live(live);
    }

    fn changed(&self, change: &Document) -> bool {
        (**self).changed(change)
    }
}

impl Listener for Wakeups {
    fn collection(&self) -> &'static str {
        "events"
    }

    fn fallback(&self) -> String {
        format!("tailers poll every {:?}", crate::wake::POLL_INTERVAL)
    }

    fn set_live(&self, live: bool) {
        Wakeups::set_live(self, live);
        // Whatever was appended while no stream watched is found by the
        // waiters' next read of the head.
        self.notify();
    }

    fn changed(&self, change: &Document) -> bool {
        let wake = classify_change(change) == OnChange::Wake;
        if wake {
            self.notify();
        }
        wake
    }
}

/// Turns streams from `open` into the listener's prompts, forever (the task
/// is aborted when the store goes). Each kind of failure is logged once
/// until a stream opens again; every attempt after the first waits out a
/// [`Reopen`] pause.
pub(crate) async fn follow<L, Open, Opening, S>(listener: &L, backoff: Backoff, mut open: Open)
where
    L: Listener,
    Open: FnMut() -> Opening,
    Opening: Future<Output = Result<S, mongodb::error::Error>>,
    S: Stream<Item = Result<Document, mongodb::error::Error>> + Unpin,
{
    let collection = listener.collection();
    let mut reopen = Reopen::new(backoff);
    let mut reported: Option<OnFailure> = None;
    loop {
        let failed = match open().await {
            Err(error) => Some(error),
            Ok(mut stream) => {
                let opened = Instant::now();
                let mut delivered = false;
                listener.set_live(true);
                if reported.take().is_some() {
                    tracing::info!(
                        "change stream on {collection} is open again; prompts are prompt"
                    );
                } else {
                    tracing::debug!("change stream on {collection} is open");
                }
                let ended = loop {
                    match stream.next().await {
                        Some(Ok(change)) => {
                            if classify_change(&change) == OnChange::Restart {
                                break None;
                            }
                            delivered |= listener.changed(&change);
                        }
                        Some(Err(error)) => break Some(error),
                        None => break None,
                    }
                };
                listener.set_live(false);
                reopen.stream_ended(opened.elapsed(), delivered);
                if ended.is_none() {
                    tracing::info!("change stream on {collection} ended; reopening it");
                }
                ended
            }
        };
        if let Some(error) = failed {
            reported = Some(report(listener, &error, reported));
        }
        tokio::time::sleep(reopen.pause()).await;
    }
}

/// Logs a failure: a warning when its kind differs from the last one
/// reported, else a debug line. Returns its kind.
fn report(
    listener: &impl Listener,
    error: &mongodb::error::Error,
    reported: Option<OnFailure>,
) -> OnFailure {
    let collection = listener.collection();
    let failure = Failure::of(error);
    let decision = classify_failure(&failure);
    if reported == Some(decision) {
        tracing::debug!(%error, ?decision, "change stream on {collection} still failing");
        return decision;
    }
    let error = describe(&failure, error);
    let fallback = listener.fallback();
    match decision {
        OnFailure::Unsupported => tracing::warn!(
            %error,
            "server has no change streams on {collection}; {fallback}"
        ),
        OnFailure::HistoryLost => tracing::warn!(
            %error,
            "change stream on {collection} lost its history; reopening it ({fallback} meanwhile)"
        ),
        OnFailure::Retry => tracing::warn!(
            %error,
            "change stream on {collection} failed; {fallback} until it reopens"
        ),
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::time::Instant;

    fn command_error(code: i32) -> mongodb::error::Error {
        let command: mongodb::error::CommandError = mongodb::bson::deserialize_from_document(
            doc! { "code": code, "codeName": "Test", "errmsg": "test" },
        )
        .expect("a command error document");
        ErrorKind::Command(command).into()
    }

    fn network_error() -> mongodb::error::Error {
        ErrorKind::Io(Arc::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        )))
        .into()
    }

    /// A change event as the server sends it through our `$project`.
    fn change(operation: &str) -> Document {
        doc! {
            "_id": { "_data": "8263F0C1A2000000012B022C0100296E5A1004" },
            "operationType": operation,
            "ns": { "db": "tickets", "coll": "events" },
            "documentKey": { "_id": 42_i64 },
        }
    }

    #[test]
    fn inserts_wake_and_the_end_of_the_stream_restarts_it() {
        assert_eq!(classify_change(&change("insert")), OnChange::Wake);
        for over in ["invalidate", "drop", "dropDatabase", "rename"] {
            assert_eq!(classify_change(&change(over)), OnChange::Restart, "{over}");
        }
        assert_eq!(classify_change(&change("update")), OnChange::Ignore);
        assert_eq!(classify_change(&doc! {}), OnChange::Ignore);
    }

    #[test]
    fn failures_are_classified_by_code_label_and_kind() {
        let by_code = |code| {
            classify_failure(&Failure {
                code: Some(code),
                ..Failure::default()
            })
        };
        assert_eq!(by_code(40573), OnFailure::Unsupported, "standalone mongod");
        assert_eq!(
            by_code(238),
            OnFailure::Unsupported,
            "jongodb, collection watch"
        );
        assert_eq!(
            by_code(14),
            OnFailure::Unsupported,
            "jongodb, database watch"
        );
        assert_eq!(by_code(286), OnFailure::HistoryLost);
        assert_eq!(by_code(11600), OnFailure::Retry, "interrupted at shutdown");
        assert_eq!(
            classify_failure(&Failure {
                code: Some(1),
                labels: vec!["UnsupportedFeature".into()],
                network: false,
            }),
            OnFailure::Unsupported
        );
        let network = Failure::of(&network_error());
        assert!(network.network);
        assert_eq!(classify_failure(&network), OnFailure::Retry);
        assert_eq!(Failure::of(&command_error(286)).code, Some(286));
        assert_eq!(
            classify_failure(&Failure::of(&command_error(238))),
            OnFailure::Unsupported
        );
    }

    type Item = Result<Document, mongodb::error::Error>;

    /// A scripted server: each open takes the next answer; once the script is
    /// used up, opening fails as on a server without change streams.
    fn scripted(
        script: Vec<Result<Vec<Item>, mongodb::error::Error>>,
    ) -> impl FnMut() -> std::future::Ready<
        Result<futures::stream::Iter<std::vec::IntoIter<Item>>, mongodb::error::Error>,
    > {
        let mut script: VecDeque<_> = script.into();
        move || {
            let next = script
                .pop_front()
                .unwrap_or_else(|| Err(command_error(238)));
            std::future::ready(next.map(futures::stream::iter))
        }
    }

    const FAST: Backoff = Backoff {
        first: Duration::from_millis(5),
        max: Duration::from_millis(20),
        proven_after: Duration::from_secs(1),
    };

    #[test]
    fn the_pause_starts_over_only_after_a_stream_proved_itself() {
        let backoff = Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(8),
            proven_after: Duration::from_secs(10),
        };
        let mut reopen = Reopen::new(backoff);
        let secs = Duration::from_secs;
        assert_eq!(reopen.pause(), secs(1), "failing to open: doubling");
        assert_eq!(reopen.pause(), secs(2));
        assert_eq!(reopen.pause(), secs(4));
        // Opened, then failed at once: opening proves nothing.
        reopen.stream_ended(Duration::from_millis(30), false);
        assert_eq!(reopen.pause(), secs(8));
        reopen.stream_ended(Duration::ZERO, false);
        assert_eq!(reopen.pause(), secs(8), "capped");
        reopen.stream_ended(secs(9), false);
        assert_eq!(reopen.pause(), secs(8), "not long enough");
        // Lived long enough: the next failure is a first one.
        reopen.stream_ended(secs(10), false);
        assert_eq!(reopen.pause(), secs(1));
        assert_eq!(reopen.pause(), secs(2));
        // Delivered an insert, however soon it failed: proven too.
        reopen.stream_ended(Duration::from_millis(1), true);
        assert_eq!(reopen.pause(), secs(1));
    }

    /// When each open happened.
    type Opens = Arc<std::sync::Mutex<Vec<Instant>>>;
    type Opening = std::future::Ready<
        Result<futures::stream::Iter<std::vec::IntoIter<Item>>, mongodb::error::Error>,
    >;

    /// Opens of a scripted follower, timed.
    fn timed_opens(
        script: Vec<Result<Vec<Item>, mongodb::error::Error>>,
    ) -> (Opens, impl FnMut() -> Opening) {
        let opens = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut open = scripted(script);
        let recorded = Arc::clone(&opens);
        (opens, move || {
            recorded.lock().expect("opens").push(Instant::now());
            open()
        })
    }

    fn gaps(opens: &std::sync::Mutex<Vec<Instant>>) -> Vec<Duration> {
        opens
            .lock()
            .expect("opens")
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .collect()
    }

    /// A server whose streams open and fail at once: each reopen waits twice
    /// as long as the last, as if the stream had never opened. (Before, every
    /// successful open reset the pause, so such a stream was reopened every
    /// `first` forever.)
    #[tokio::test]
    async fn a_stream_that_fails_at_once_is_reopened_with_growing_pauses() {
        let backoff = Backoff {
            first: Duration::from_millis(5),
            max: Duration::from_millis(40),
            proven_after: Duration::from_secs(10),
        };
        let wakeups = Arc::new(Wakeups::default());
        let fails_at_once = || Ok(vec![Err(network_error())]);
        let (opens, open) = timed_opens((0..6).map(|_| fails_at_once()).collect());
        let follower = {
            let wakeups = Arc::clone(&wakeups);
            tokio::spawn(async move { follow(&wakeups, backoff, open).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        follower.abort();
        let gaps = gaps(&opens);
        assert!(gaps.len() >= 5, "reopened after each failure: {gaps:?}");
        let expected = [5, 10, 20, 40, 40].map(Duration::from_millis);
        for (gap, least) in gaps.iter().zip(expected) {
            assert!(
                *gap >= least,
                "pauses grow: {gaps:?}, expected {expected:?}"
            );
        }
        assert!(!wakeups.is_live());
    }

    /// After a run of failures, a stream that delivered an insert proves the
    /// server well: when it fails, the next attempt comes after `first`.
    #[tokio::test]
    async fn a_stream_that_delivered_resets_the_pause() {
        let backoff = Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_secs(5),
            proven_after: Duration::from_secs(10),
        };
        let wakeups = Arc::new(Wakeups::default());
        // Pauses 20, 40, 80, 160, 320 after these; the next would be 640.
        // A reset pause is 20 ms: the margin to 320 ms absorbs a loaded machine.
        let mut script: Vec<_> = (0..5).map(|_| Ok(vec![Err(network_error())])).collect();
        script.push(Ok(vec![Ok(change("insert")), Err(network_error())]));
        let (opens, open) = timed_opens(script);
        let follower = {
            let wakeups = Arc::clone(&wakeups);
            tokio::spawn(async move { follow(&wakeups, backoff, open).await })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while opens.lock().expect("opens").len() < 7 {
            assert!(
                Instant::now() < deadline,
                "never reopened: {:?}",
                gaps(&opens)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        follower.abort();
        let gaps = gaps(&opens);
        assert!(
            gaps[4] >= Duration::from_millis(320),
            "backed off before: {gaps:?}"
        );
        assert!(
            gaps[5] < Duration::from_millis(320),
            "reset by the delivering stream (would be 640 ms): {gaps:?}"
        );
    }

    /// A stream that delivers two inserts and then fails mid-flow: the
    /// follower wakes for each, then drops to polling (not live) and keeps
    /// trying to reopen.
    #[tokio::test]
    async fn a_stream_failing_mid_flow_leaves_waiters_polling() {
        let wakeups = Arc::new(Wakeups::default());
        let mut signal = wakeups.signal_for_tests();
        let follower = {
            let wakeups = Arc::clone(&wakeups);
            let open = scripted(vec![
                Ok(vec![
                    Ok(change("insert")),
                    Ok(change("insert")),
                    Err(network_error()),
                ]),
                Err(command_error(286)),
            ]);
            tokio::spawn(async move { follow(&wakeups, FAST, open).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!wakeups.is_live(), "a failed stream is not live");
        // Open, two inserts, the failure: at least four signals.
        assert!(*signal.borrow_and_update() >= 4);

        // An append nobody signals (another process, no stream) is still found
        // promptly, by polling.
        let head = Arc::new(AtomicU64::new(0));
        let appender = {
            let head = Arc::clone(&head);
            tokio::spawn(async move {
                for position in 1..=5 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    head.store(position, Ordering::SeqCst);
                }
            })
        };
        let mut seen = 0;
        let mut slowest = Duration::ZERO;
        while seen < 5 {
            let started = Instant::now();
            let read = || std::future::ready(Ok::<_, Infallible>(head.load(Ordering::SeqCst)));
            assert_eq!(
                wakeups.wait(seen, Duration::from_secs(5), read).await,
                Ok(true)
            );
            slowest = slowest.max(started.elapsed());
            seen = head.load(Ordering::SeqCst);
        }
        assert!(
            slowest < Duration::from_millis(20) + crate::wake::POLL_INTERVAL * 4,
            "polling found each append promptly (slowest {slowest:?})"
        );
        appender.await.expect("the appender");
        follower.abort();
    }

    /// A stream that the server invalidates is reopened, and is live again.
    #[tokio::test]
    async fn an_invalidated_stream_is_reopened() {
        let wakeups = Arc::new(Wakeups::default());
        let opens = Arc::new(AtomicU64::new(0));
        let follower = {
            let (wakeups, opens) = (Arc::clone(&wakeups), Arc::clone(&opens));
            let mut open = scripted(vec![Ok(vec![Ok(change("invalidate"))])]);
            tokio::spawn(async move {
                follow(&wakeups, FAST, move || {
                    opens.fetch_add(1, Ordering::SeqCst);
                    open()
                })
                .await;
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            opens.load(Ordering::SeqCst) >= 3,
            "reopened after the invalidate, and retried"
        );
        assert!(!wakeups.is_live());
        follower.abort();
    }
}
