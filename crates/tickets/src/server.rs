//! The HTTP/1 server loop: accepts connections up to a bound, serves each
//! with hyper under a header-read timeout, and drains them on shutdown.
//!
//! axum's `serve` sets no timer on hyper's connections, so a client that
//! opens a connection and sends its request head one byte a minute (or
//! nothing) holds a task and a file descriptor for ever, and it accepts
//! connections without bound. This loop is the little of `serve` the server
//! needs, plus both bounds:
//!
//! - `header_read_timeout`: hyper starts it whenever the connection waits for
//!   a request head, the first one and each one after a response on a
//!   keep-alive connection, so it is both the header-read timeout and the idle
//!   keep-alive timeout (the connection is closed when it runs out).
//! - `max_connections`: past it the loop stops accepting, and new connections
//!   wait in the kernel's accept backlog until one closes, rather than
//!   taking memory and tasks here.
//!
//! Each request carries the peer's address (`ConnectInfo`), which the API
//! uses to bound change streams per client when no principal is known.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The bounds on connections (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// How long a connection may take to send a request head, or stay idle
    /// between requests, before it is closed.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// How long the loop pauses after a failed accept (out of file descriptors,
/// say) before it tries again, so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets the
/// open connections finish their requests for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let draining = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);

    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Small responses go out at once rather than waiting for Nagle.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.oneshot(request).await.unwrap_or_else(|e| match e {})) }
        });
        let connection = draining.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                // A client that went away or timed out its head: routine.
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);

    tokio::select! {
        () = draining.shutdown() => {}
        () = tokio::time::sleep(grace) => tracing::warn!(
            ?grace,
            "requests still in flight after the shutdown grace period; closing their connections"
        ),
    }
}
