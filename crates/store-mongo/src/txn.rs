//! Multi-document transactions with the retries MongoDB asks clients to make,
//! within a deadline.
//!
//! A transaction whose failure is labelled `TransientTransactionError` (a write
//! conflict, a primary step-down, a dropped connection) runs again from the
//! start, after a short growing pause with jitter, within a bounded number of
//! attempts and its deadline. A commit whose outcome is unknown
//! (`UnknownTransactionCommitResult`: a network error, a server selection
//! failure, a write concern timeout during `commitTransaction`) is retried as
//! a commit, as the MongoDB manual ("Transactions in Applications", the retry
//! logic for commit) and the drivers' transactions spec describe; the driver
//! itself retries a commit once, with `w: majority`. When the outcome is still
//! unknown after those retries, or when no answer comes before the commit's
//! deadline, [`Transaction::settle`] says so ([`Settled::Unknown`]) and the
//! caller decides: find out by reading (appends look their events up by
//! id), or run again where a second commit cannot happen (slot writes check
//! their checkpoint). Only a proven non-commit is ever reported as a plain
//! failure.
//!
//! Every transaction reads from a snapshot and commits with write concern
//! majority and the store's `wtimeout` (`bounds`). Every call to the server
//! here has a deadline (`bounds::OPERATION_DEADLINE`): the driver has no
//! socket timeout, so a silent server would otherwise hold a request forever.
//! Attempts, commits included, end [`crate::bounds::LOOKUP_RESERVE`] before
//! the deadline, which leaves the caller time to resolve an unknown outcome.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mongodb::bson::doc;
use mongodb::options::{ReadConcern, WriteConcern};
use mongodb::{Client, ClientSession};
use tokio::time::Instant;

use crate::Inner;
use crate::bounds::LOOKUP_RESERVE;
use crate::error::{DbError, is_transient_transaction_error, is_unknown_commit_result};

/// Most runs of one transaction body.
const MAX_ATTEMPTS: u32 = 40;
/// Most retries of one commit whose outcome is unknown, after the driver's own.
const MAX_COMMIT_RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(50);
/// An abort is best effort (the server aborts an abandoned transaction when
/// its session is reused or ends, or after `transactionLifetimeLimitSeconds`):
/// never wait long for one.
const ABORT_WAIT: Duration = Duration::from_millis(500);

/// Counts of transactions and their retries, for measurement and metrics.
#[derive(Debug, Default)]
pub(crate) struct TxnCounters {
    committed: AtomicU64,
    retries: AtomicU64,
}

/// How many transactions this store committed and how many extra attempts
/// (transient failures, write conflicts) they took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnStats {
    pub committed: u64,
    pub retries: u64,
}

impl TxnCounters {
    pub(crate) fn snapshot(&self) -> TxnStats {
        TxnStats {
            committed: self.committed.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

/// A pause that doubles per attempt up to [`MAX_BACKOFF`], with up to 100%
/// jitter so that colliding writers spread out.
fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1 << attempt.min(16))
        .min(MAX_BACKOFF);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
    base + Duration::from_nanos(u64::from(jitter) % nanos.max(1))
}

/// What became of an attempt's commit.
#[derive(Debug)]
pub(crate) enum Settled<T> {
    /// Committed: the body's value.
    Committed(T),
    /// Not committed, and worth another attempt (the pause is already
    /// waited): run the body again.
    Again,
    /// The commit was sent and nothing says whether it took effect: the
    /// driver's and this module's commit retries all ended unknown, or no
    /// answer came in time. `why` says what was last heard. The caller must find out, or make a second
    /// commit impossible, before reporting anything. Running the body again
    /// (on the same session, which makes the server abort the earlier
    /// transaction if it is still open) is allowed.
    Unknown { why: String },
}

/// Waits for `future` until `deadline`; past it, `DbError::Unavailable`
/// saying what was not answered.
pub(crate) async fn until<T, E>(
    deadline: Instant,
    what: &str,
    future: impl Future<Output = Result<T, DbError<E>>>,
) -> Result<T, DbError<E>> {
    match tokio::time::timeout_at(deadline, future).await {
        Ok(outcome) => outcome,
        Err(_) => Err(DbError::Unavailable(format!(
            "MongoDB did not answer {what} in time"
        ))),
    }
}

/// One transaction and its attempts. The body is the caller's code between
/// [`Transaction::begin`] and [`Transaction::settle`], bounded by
/// [`Transaction::attempt_deadline`]:
///
/// ```ignore
/// let mut txn = Transaction::start(inner, deadline).await?;
/// let value = loop {
///     let by = txn.attempt_deadline();
///     let session = txn.begin().await?;
///     let outcome = txn::until(by, "the append", body(session)).await;
///     match txn.settle(outcome).await? {
///         Settled::Committed(value) => break value,
///         Settled::Again => {}
///         Settled::Unknown { .. } => { /* find out, or run again */ }
///     }
/// };
/// ```
///
/// (A loop rather than a closure: an async closure borrowing the session
/// cannot yet be proven `Send` for the `async_trait` futures that call it.)
pub(crate) struct Transaction<'a> {
    /// Always `Some` until the drop (see `Drop`).
    session: Option<ClientSession>,
    client: Client,
    /// Whether an attempt was cut off by its deadline: its transaction may
    /// then be open on the server, or be opened by a command still on its
    /// way there.
    cut_off: bool,
    counters: &'a TxnCounters,
    commit_concern: WriteConcern,
    deadline: Instant,
    attempt: u32,
}

impl<'a> Transaction<'a> {
    /// A transaction of `inner`'s client, all of whose attempts end by
    /// `deadline`.
    pub(crate) async fn start<E>(
        inner: &'a Inner,
        deadline: Instant,
    ) -> Result<Transaction<'a>, DbError<E>> {
        // The session goes on record before any transaction starts on it, so
        // that if this process dies with the transaction open, another store
        // can kill the session and with it the transaction's locks (see
        // `sessions`). Once per pooled server session; then a cache look-up.
        let session = until(deadline, "a session start", async {
            let session = inner.client.start_session().await?;
            inner
                .sessions
                .register(&inner.clock, &inner.db, session.id())
                .await?;
            Ok(session)
        })
        .await?;
        Ok(Transaction {
            session: Some(session),
            client: inner.client.clone(),
            cut_off: false,
            counters: &inner.txn,
            commit_concern: WriteConcern::builder()
                .w(mongodb::options::Acknowledgment::Majority)
                .w_timeout(inner.bounds.commit_wtimeout)
                .build(),
            deadline,
            attempt: 0,
        })
    }

    /// The operation's deadline.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// When an attempt, its commit included, must be over: early enough to
    /// leave [`LOOKUP_RESERVE`] for resolving an unknown outcome.
    pub(crate) fn attempt_deadline(&self) -> Instant {
        self.deadline
            .checked_sub(LOOKUP_RESERVE)
            .unwrap_or(self.deadline)
    }

    /// Starts an attempt: a fresh transaction on a snapshot, to be committed
    /// with write concern majority.
    pub(crate) async fn begin<E>(&mut self) -> Result<&mut ClientSession, DbError<E>> {
        self.attempt += 1;
        let by = self.attempt_deadline();
        let concern = self.commit_concern.clone();
        let session = self.session()?;
        until(by, "a transaction start", async {
            Ok(session
                .start_transaction()
                .read_concern(ReadConcern::snapshot())
                .write_concern(concern)
                .await?)
        })
        .await?;
        self.session()
    }

    fn session<E>(&mut self) -> Result<&mut ClientSession, DbError<E>> {
        self.session
            .as_mut()
            .ok_or_else(|| DbError::Corrupt("a transaction without its session".into()))
    }

    /// Commits the attempt if its body succeeded, else aborts it. `Err`:
    /// failed for good, and provably not committed.
    pub(crate) async fn settle<T, E>(
        &mut self,
        outcome: Result<T, DbError<E>>,
    ) -> Result<Settled<T>, DbError<E>> {
        let failure = match outcome {
            Ok(value) => match self.commit().await {
                Commit::Done => {
                    self.counters.committed.fetch_add(1, Ordering::Relaxed);
                    return Ok(Settled::Committed(value));
                }
                Commit::Unknown(why) => return Ok(Settled::Unknown { why }),
                Commit::Failed(error) => DbError::Mongo(error),
            },
            Err(error) => {
                if matches!(error, DbError::Unavailable(_)) {
                    self.cut_off = true;
                }
                error
            }
        };
        // A session killed by another store's sweep (this process was paused
        // or cut off for longer than `sessions::OWNER_DEAD_AFTER`) lost its
        // open transaction: the next statement or the commit answers
        // NoSuchTransaction, which MongoDB labels TransientTransactionError,
        // so the attempt runs again here, on the same session (a killed
        // session may be used again). A statement running at the very moment
        // of the kill is interrupted (`Interrupted`, not labelled): that
        // failure is final, and its transaction provably did not commit.
        let retry = match &failure {
            DbError::Retry(_) => true,
            DbError::Mongo(error) => is_transient_transaction_error(error),
            DbError::Corrupt(_) | DbError::Refused(_) | DbError::Unavailable(_) => false,
        };
        if !retry || self.attempt >= MAX_ATTEMPTS || Instant::now() >= self.attempt_deadline() {
            // A transaction left open (a failed or cut-off body) is aborted
            // when the session drops: the driver sends abortTransaction in
            // the background, as long as the server takes, without holding
            // this caller.
            return Err(failure);
        }
        // Best effort, see ABORT_WAIT: the next attempt's new transaction
        // number ends an open one on the server anyway.
        if let Some(session) = &mut self.session {
            let _ = tokio::time::timeout(ABORT_WAIT, session.abort_transaction()).await;
        }
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff(self.attempt)).await;
        Ok(Settled::Again)
    }

    /// Sends `commitTransaction`, and again while its outcome is unknown (at
    /// most [`MAX_COMMIT_RETRIES`] more times, until the attempt deadline).
    async fn commit(&mut self) -> Commit {
        let by = self.attempt_deadline();
        let Some(session) = &mut self.session else {
            return Commit::Unknown("a transaction without its session".into());
        };
        let mut retries = 0;
        let mut uncertain: Option<String> = None;
        loop {
            match tokio::time::timeout_at(by, session.commit_transaction()).await {
                Ok(Ok(())) => return Commit::Done,
                Ok(Err(error)) if is_unknown_commit_result(&error) => {
                    if retries >= MAX_COMMIT_RETRIES || Instant::now() >= by {
                        return Commit::Unknown(error.to_string());
                    }
                    uncertain = Some(error.to_string());
                    retries += 1;
                }
                // Any failure after an unknown outcome is left to the caller
                // to resolve: the earlier send may have committed whatever
                // the later one is told.
                Ok(Err(error)) if uncertain.is_some() => {
                    let earlier = uncertain.unwrap_or_default();
                    return Commit::Unknown(format!("{earlier}; then {error}"));
                }
                // The server's answer to the first send: not committed (a
                // transient error runs the transaction again, see `settle`).
                Ok(Err(error)) => return Commit::Failed(error),
                Err(_) => {
                    return Commit::Unknown(format!(
                        "no answer to commitTransaction in time{}",
                        uncertain
                            .map(|earlier| format!(" (earlier: {earlier})"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
    }
}

impl Drop for Transaction<'_> {
    /// A session whose attempt was cut off may have an open transaction on
    /// the server, or one opened later by a command still on its way. Such
    /// a session is kept out of the driver's pool (see [`quarantine`]); any
    /// other goes back as usual (the driver aborts a transaction left open).
    fn drop(&mut self) {
        if !self.cut_off {
            return;
        }
        let Some(session) = self.session.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if QUARANTINED.fetch_add(1, Ordering::SeqCst) >= MAX_QUARANTINED {
            QUARANTINED.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        runtime.spawn(quarantine(self.client.clone(), session));
    }
}

/// Sessions held by [`quarantine`] now, in this process.
static QUARANTINED: AtomicUsize = AtomicUsize::new(0);
/// Most sessions held at once; past it a cut-off session is simply dropped.
const MAX_QUARANTINED: usize = 64;
/// How long a quarantined session is held at most: MongoDB's default
/// `transactionLifetimeLimitSeconds`, after which the server aborts an open
/// transaction itself.
const QUARANTINE: Duration = Duration::from_secs(60);

/// Holds a cut-off session out of the pool until its transaction is surely
/// over: waits until the server answers again, lets what was on its way
/// arrive, then aborts the transaction (by its own transaction number).
/// Without this the pool would hand the session to the next operation,
/// whose newer transaction number a MongoDB server takes as the end of the
/// open one, and which a server that does not (jongodb) refuses with
/// "transaction already in progress" for as long as the old one lives.
async fn quarantine(client: Client, mut session: ClientSession) {
    let until = Instant::now() + QUARANTINE;
    let admin = client.database("admin");
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ping = admin.run_command(doc! { "ping": 1 });
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), ping).await {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let abort = session.abort_transaction();
            let _ = tokio::time::timeout_at(until, abort).await;
            break;
        }
    }
    QUARANTINED.fetch_sub(1, Ordering::SeqCst);
}

enum Commit {
    Done,
    Unknown(String),
    Failed(mongodb::error::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..40 {
            let pause = backoff(attempt);
            assert!(pause >= FIRST_BACKOFF, "{pause:?}");
            assert!(pause <= MAX_BACKOFF * 2, "{pause:?}");
        }
        assert!(backoff(20) >= MAX_BACKOFF);
    }
}
