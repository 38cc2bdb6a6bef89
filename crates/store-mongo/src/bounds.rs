//! How long anything waits for the server: every bound, its default and
//! where it can be set.
//!
//! A server that stops answering must cost a request a bounded time and end
//! in `StoreError::Unavailable` / `ViewError::Unavailable` (the API's 503 with
//! `Retry-After`), well inside the API's request timeout (30 s, a 408). The
//! Rust driver (3.x) has no socket timeout (`socketTimeoutMS` is refused at
//! parse: RUST-564, RUST-2321) and no client-side operation timeout
//! (`timeoutMS`, CSOT, is not implemented: RUST-582; the URI option is
//! refused as invalid), so a command on an open connection to a silent server
//! waits forever. Hence deadlines in this crate, as `tokio::time` timeouts
//! around the driver's futures, next to the driver's own bounds:
//!
//! | bound | default | set by |
//! |---|---|---|
//! | server selection | [`SERVER_SELECTION_TIMEOUT`] | URI `serverSelectionTimeoutMS` |
//! | TCP connect + handshake, and the monitor's checks | [`CONNECT_TIMEOUT`] | URI `connectTimeoutMS` |
//! | a commit's wait for a majority (`wtimeout`) | [`COMMIT_WTIMEOUT`] | URI `wtimeoutMS` |
//! | one append, all attempts and lookups | [`OPERATION_DEADLINE`] | constant |
//! | one slot or lease write (the projector's, not a request's) | [`VIEW_WRITE_DEADLINE`] | constant |
//! | of which kept for finding out a commit's outcome | [`LOOKUP_RESERVE`] | constant |
//! | one read (a query, the projector's reads, a non-transactional write) | [`READ_DEADLINE`] | constant |
//! | waiting for the append turn | [`APPEND_QUEUE_WAIT`] | constant |
//! | appends waiting for the turn | [`APPEND_QUEUE_MAX`] | constant |
//!
//! The driver's defaults are 30 s for server selection and 10 s for connect
//! (MongoDB connection string options); both are lowered here only when the
//! URI does not set them. A commit's write concern is majority with a
//! `wtimeout`: past it the server answers a write concern error, which the
//! driver labels `UnknownTransactionCommitResult` (the transactions spec),
//! and `txn` resolves the outcome (see `txn` and `events`).

use std::time::Duration;

use mongodb::options::ClientOptions;

/// How long the driver looks for a usable server before an operation fails
/// (the driver's default is 30 s).
pub const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening a connection may take; the driver also bounds its
/// monitor's checks with it, so a silent server is marked unknown after
/// about this long (the driver's default is 10 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a commit waits for a majority of the replica set before the
/// server answers a write concern timeout (the outcome is then unknown, and
/// resolved).
pub const COMMIT_WTIMEOUT: Duration = Duration::from_secs(5);
/// The most one append (queue included) takes, all its
/// attempts and any lookup of an unknown commit outcome included. Past it:
/// `Unavailable`.
pub const OPERATION_DEADLINE: Duration = Duration::from_secs(10);
/// The most one slot or lease write takes, all its attempts included: a
/// projector's commit of a large batch (thousands of rows) may take seconds
/// on a slow server, and no request waits for it. MongoDB's default
/// `transactionLifetimeLimitSeconds` (60 s): no transaction lives longer on
/// the server anyway.
pub const VIEW_WRITE_DEADLINE: Duration = Duration::from_secs(60);
/// The end of [`OPERATION_DEADLINE`] kept for finding out whether a commit
/// whose answer never came took effect: attempts stop this long before the
/// deadline.
pub const LOOKUP_RESERVE: Duration = Duration::from_secs(2);
/// The longest an append waits for the turn of the appends before it
/// (`events`); past it, `Unavailable` at once.
pub const APPEND_QUEUE_WAIT: Duration = Duration::from_secs(5);
/// The most appends that wait for the turn at once; one more is answered
/// `Unavailable` at once rather than queued behind a server that may not
/// answer.
pub const APPEND_QUEUE_MAX: usize = 128;

/// The most one read (or a single non-transactional write) takes, however
/// many round trips it makes. Past it: `Unavailable`, so a query against a
/// silent server answers 503 well inside the API's request timeout.
pub const READ_DEADLINE: Duration = Duration::from_secs(10);

/// Waits for a read as long as [`READ_DEADLINE`]; past it,
/// `DbError::Unavailable` saying what was not answered.
pub(crate) async fn read<T, E>(
    what: &str,
    future: impl std::future::Future<Output = Result<T, crate::error::DbError<E>>>,
) -> Result<T, crate::error::DbError<E>> {
    crate::txn::until(tokio::time::Instant::now() + READ_DEADLINE, what, future).await
}

/// The bounds one store uses, from its URI's options and the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub(crate) commit_wtimeout: Duration,
}

/// Fills in the driver's timeouts the URI leaves unset, and returns the
/// store's own bounds.
pub(crate) fn apply(options: &mut ClientOptions) -> Bounds {
    options
        .server_selection_timeout
        .get_or_insert(SERVER_SELECTION_TIMEOUT);
    options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
    let commit_wtimeout = options
        .write_concern
        .as_ref()
        .and_then(|concern| concern.w_timeout)
        .unwrap_or(COMMIT_WTIMEOUT);
    Bounds { commit_wtimeout }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_uri_sets_the_bounds_and_the_defaults_fill_in() {
        let mut options = ClientOptions::parse("mongodb://h/db").await.expect("uri");
        let bounds = apply(&mut options);
        assert_eq!(
            options.server_selection_timeout,
            Some(SERVER_SELECTION_TIMEOUT)
        );
        assert_eq!(options.connect_timeout, Some(CONNECT_TIMEOUT));
        assert_eq!(bounds.commit_wtimeout, COMMIT_WTIMEOUT);

        let mut options = ClientOptions::parse(
            "mongodb://h/db?serverSelectionTimeoutMS=1500&connectTimeoutMS=700&wtimeoutMS=2500",
        )
        .await
        .expect("uri");
        let bounds = apply(&mut options);
        assert_eq!(
            options.server_selection_timeout,
            Some(Duration::from_millis(1500))
        );
        assert_eq!(options.connect_timeout, Some(Duration::from_millis(700)));
        assert_eq!(bounds.commit_wtimeout, Duration::from_millis(2500));
    }
}
