//! Multi-document transactions with the retries MongoDB asks clients to make.
//!
//! A transaction whose failure is labelled `TransientTransactionError` (a write
//! conflict, a primary step-down, a dropped connection) runs again from the
//! start, after a short growing pause with jitter, within a bounded number of
//! attempts and time. A commit whose outcome is unknown
//! (`UnknownTransactionCommitResult`) is retried as a commit. Every transaction
//! reads from a snapshot and commits with write concern majority.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mongodb::options::{ReadConcern, WriteConcern};
use mongodb::{Client, ClientSession};
use tokio::time::Instant;

use crate::error::{DbError, is_transient_transaction_error, is_unknown_commit_result};

/// Most runs of one transaction body.
const MAX_ATTEMPTS: u32 = 40;
/// No new attempt starts after this long.
const TIME_BUDGET: Duration = Duration::from_secs(10);
/// Most retries of one commit whose outcome is unknown.
const MAX_COMMIT_RETRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(50);

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

/// One transaction and its attempts. The body is the caller's code between
/// [`Transaction::begin`] and [`Transaction::settle`]:
///
/// ```ignore
/// let mut txn = Transaction::start(&client, &counters).await?;
/// let value = loop {
///     let session = txn.begin().await?;
///     let outcome = body(session).await;
///     if let Some(value) = txn.settle(outcome).await? {
///         break value;
///     }
/// };
/// ```
///
/// (A loop rather than a closure: an async closure borrowing the session
/// cannot yet be proven `Send` for the `async_trait` futures that call it.)
pub(crate) struct Transaction<'a> {
    session: ClientSession,
    counters: &'a TxnCounters,
    started: Instant,
    attempt: u32,
}

impl<'a> Transaction<'a> {
    pub(crate) async fn start(
        client: &Client,
        counters: &'a TxnCounters,
    ) -> Result<Transaction<'a>, mongodb::error::Error> {
        Ok(Transaction {
            session: client.start_session().await?,
            counters,
            started: Instant::now(),
            attempt: 0,
        })
    }

    /// Starts an attempt: a fresh transaction on a snapshot, to be committed
    /// with write concern majority.
    pub(crate) async fn begin(&mut self) -> Result<&mut ClientSession, mongodb::error::Error> {
        self.attempt += 1;
        self.session
            .start_transaction()
            .read_concern(ReadConcern::snapshot())
            .write_concern(WriteConcern::majority())
            .await?;
        Ok(&mut self.session)
    }

    /// Commits the attempt if its body succeeded, else aborts it. `Ok(Some)`:
    /// committed. `Ok(None)`: failed in a way worth another attempt, after the
    /// pause this already waited; run the body again. `Err`: failed for good.
    pub(crate) async fn settle<T, E>(
        &mut self,
        outcome: Result<T, DbError<E>>,
    ) -> Result<Option<T>, DbError<E>> {
        let failure = match outcome {
            Ok(value) => match commit(&mut self.session).await {
                Ok(()) => {
                    self.counters.committed.fetch_add(1, Ordering::Relaxed);
                    return Ok(Some(value));
                }
                Err(error) => DbError::Mongo(error),
            },
            Err(error) => {
                // Best effort: the server aborts an abandoned transaction
                // anyway when the session ends or the transaction times out.
                let _ = self.session.abort_transaction().await;
                error
            }
        };
        let retry = match &failure {
            DbError::Retry(_) => true,
            DbError::Mongo(error) => is_transient_transaction_error(error),
            DbError::Corrupt(_) | DbError::Refused(_) => false,
        };
        if !retry || self.attempt >= MAX_ATTEMPTS || self.started.elapsed() >= TIME_BUDGET {
            return Err(failure);
        }
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff(self.attempt)).await;
        Ok(None)
    }
}

async fn commit(session: &mut ClientSession) -> Result<(), mongodb::error::Error> {
    let mut retries = 0;
    loop {
        match session.commit_transaction().await {
            Err(error) if is_unknown_commit_result(&error) && retries < MAX_COMMIT_RETRIES => {
                retries += 1;
            }
            outcome => return outcome,
        }
    }
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
