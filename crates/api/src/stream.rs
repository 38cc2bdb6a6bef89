//! `GET /tickets/stream`: the list view's changes as Server-Sent Events.
//!
//! Thin on purpose: the feed itself (what counts as applied, the status after
//! each event, batching) is `query::ChangeFeed`. This module decides where a
//! stream starts (`Last-Event-ID`, else `?after`, else the List projection's
//! current checkpoint), turns each change into one SSE message whose `id:` is
//! the event's position, and ends the stream when the server shuts down or
//! the feed fails (the client reconnects with its `Last-Event-ID`).
//!
//! The stream opens with an id-only record (`id: <start>`, no data): clients
//! dispatch no message for it, but an `EventSource` records the id, so a
//! client that connected without a position and drops before the first change
//! still resumes from where it started.
//!
//! The middleware's request timeout does not cut a stream: it bounds the time
//! until the response head (tower-http's `TimeoutLayer` wraps the handler's
//! future, not the body), and this handler answers as soon as it knows where
//! to start. For the same reason the request log line and
//! `http_request_duration_seconds` record the time to the head, not the
//! stream's life; `ticket_streams_open` counts the streams being served.
//!
//! Streams are bounded: at most `HttpLimits::max_streams` open in all (503
//! past it) and `max_streams_per_client` per client (429 past it), a client
//! being its authenticated principal when there is one, else its address.
//! A stream resuming from far back is paced by the feed (see
//! `query::ChangeFeed`), so a client replaying a long history cannot take the
//! store's read capacity from everyone else.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use eventstore::Position;
use futures::StreamExt;
use query::{ListChange, Subscription};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::access::Caller;
use crate::error::ApiError;
use crate::middleware::HttpLimits;
use crate::params::{self, Query, whole_number};
use crate::tickets::StatusWire;

/// The header an SSE client resumes with: the last `id:` it received.
pub(crate) const LAST_EVENT_ID: &str = "last-event-id";
/// A comment line this often keeps idle proxies from closing the stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How long a client waits before reconnecting after the stream ends.
const RETRY: Duration = Duration::from_secs(1);
/// The `event:` of every change message.
const CHANGE_EVENT: &str = "ticket";
/// The gauge of streams being served.
const OPEN_STREAMS: &str = "ticket_streams_open";

pub(crate) fn routes(limits: HttpLimits) -> Router<AppState> {
    Router::new()
        .route("/tickets/stream", get(stream))
        .layer(Extension(Arc::new(StreamSlots::new(limits))))
}

/// Who holds how many of the open streams.
#[derive(Debug)]
pub(crate) struct StreamSlots {
    max: usize,
    max_per_client: usize,
    open: Mutex<HashMap<String, usize>>,
}

impl StreamSlots {
    fn new(limits: HttpLimits) -> Self {
        Self {
            max: limits.max_streams.max(1),
            max_per_client: limits.max_streams_per_client.max(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// One stream's place for `client`, or why there is none.
    fn take(self: &Arc<Self>, client: String) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let total: usize = open.values().sum();
        if total >= self.max {
            return Err(ApiError::Overloaded {
                detail: format!(
                    "the server serves as many change streams as it may ({}); retry after the Retry-After delay",
                    self.max
                ),
            });
        }
        let held = open.entry(client.clone()).or_default();
        if *held >= self.max_per_client {
            return Err(ApiError::TooManyStreams {
                detail: format!(
                    "this client already holds {} change streams, the most it may; close one, or retry after the Retry-After delay",
                    self.max_per_client
                ),
            });
        }
        *held += 1;
        Ok(StreamSlot {
            slots: Arc::clone(self),
            client,
        })
    }
}

/// A stream's place in [`StreamSlots`], given back when the stream ends.
#[derive(Debug)]
struct StreamSlot {
    slots: Arc<StreamSlots>,
    client: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = open.get_mut(&self.client) {
            *held -= 1;
            if *held == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// One change message's `data:`: a ticket's list row after one event.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TicketChange)]
pub(crate) struct ChangeMessage {
    /// The ticket id.
    id: Uuid,
    /// The ticket's version after the event.
    version: u64,
    /// The ticket's status after the event.
    status: StatusWire,
    /// The event's store position; also the message's SSE `id:`.
    position: u64,
}

impl From<ListChange> for ChangeMessage {
    fn from(change: ListChange) -> Self {
        ChangeMessage {
            id: change.id,
            version: change.version,
            status: change.status.into(),
            position: change.position,
        }
    }
}

/// The query of `GET /tickets/stream`, read by `params::Query`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StreamQuery {
    /// Start after this position, for clients that cannot set `Last-Event-ID`.
    #[param(minimum = 0)]
    #[serde(default, deserialize_with = "after")]
    after: Option<u64>,
}

fn after<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    params::parsed(
        deserializer,
        "must be a non-negative whole number (a position, as in `id:`)",
        whole_number,
    )
}

/// Streams the list view's changes: one message per event, once the list
/// projection has applied it.
#[utoipa::path(
    get,
    path = "/tickets/stream",
    tag = "tickets",
    params(
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this position (the last `id:` received); wins over `after`. Without either, the stream starts at the changes applied from now on"),
        StreamQuery,
    ),
    responses(
        (status = 200, description = "A never-ending `text/event-stream`: an id-only record with the start position, then one message per event applied to the list view, in position order (`id:` the event's position, `event: ticket`, `data:` a TicketChange), and a comment every 15 s. It ends when the server shuts down or a store fails; reconnect with `Last-Event-ID`",
            body = ChangeMessage, content_type = "text/event-stream"),
        (status = 400, description = "A malformed `Last-Event-ID`, an unknown, repeated or empty query parameter, or a bad `X-Actor`"),
        (status = 422, description = "A query parameter breaks its rule"),
        (status = 429, description = "This client holds as many open streams as it may (`/problems/too-many-streams`); retry after `Retry-After`"),
        (status = 503, description = "The server serves as many streams as it may, or is at its bound of requests in flight (`/problems/overloaded`), or the store is unavailable; retry after `Retry-After`"),
    )
)]
pub(crate) async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    Extension(slots): Extension<Arc<StreamSlots>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<impl IntoResponse, ApiError> {
    // An EventSource keeps its URL when it reconnects, so the header, which
    // it updates, must win over `?after`.
    let start = match last_event_id(&headers)?.or(query.after) {
        Some(position) => position,
        None => state.feed.checkpoint().await?,
    };
    // A principal is one client wherever it connects from; without one,
    // an address is.
    let client = match (&caller, peer) {
        (Caller::Principal(principal), _) => format!("principal:{}", principal.name),
        (Caller::Anyone, Some(Extension(ConnectInfo(peer)))) => format!("address:{}", peer.ip()),
        (Caller::Anyone, None) => "address:unknown".to_owned(),
    };
    let slot = slots.take(client)?;
    let scope = caller.customer_scope().map(|customer| CustomerScope {
        customer: customer.to_owned(),
        history: state.history.clone(),
        owned: HashMap::new(),
    });
    let opened = OpenStream::new(state.feed.subscribe(start), slot, scope);
    let opening = Event::default().id(start.to_string()).retry(RETRY);
    let changes = futures::stream::unfold(opened, next_message);
    let messages = futures::stream::once(async move { Ok(opening) })
        .chain(changes)
        .take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(messages).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// A subscription being served; counted in [`OPEN_STREAMS`] while it lives.
struct OpenStream {
    subscription: Subscription,
    started: Position,
    _slot: StreamSlot,
    /// For a customer: only its own tickets' changes are sent.
    scope: Option<CustomerScope>,
}

impl OpenStream {
    fn new(subscription: Subscription, slot: StreamSlot, scope: Option<CustomerScope>) -> Self {
        metrics::gauge!(OPEN_STREAMS).increment(1.0);
        let started = subscription.position();
        Self {
            subscription,
            started,
            _slot: slot,
            scope,
        }
    }

    /// The next change this stream may send.
    async fn next_change(&mut self) -> Result<ListChange, String> {
        loop {
            let change = self
                .subscription
                .next()
                .await
                .map_err(|error| error.to_string())?;
            match &mut self.scope {
                None => return Ok(change),
                Some(scope) => {
                    if scope.owns(change.id).await? {
                        return Ok(change);
                    }
                }
            }
        }
    }
}

/// Which tickets are one customer's: read from each ticket's opening event
/// once (a ticket's customer never changes), remembered in a bounded map.
struct CustomerScope {
    customer: String,
    history: Arc<query::History>,
    owned: HashMap<Uuid, bool>,
}

/// Tickets a scoped stream remembers; past it the map starts again.
const SCOPE_CAPACITY: usize = 4096;

impl CustomerScope {
    async fn owns(&mut self, ticket: Uuid) -> Result<bool, String> {
        if let Some(owned) = self.owned.get(&ticket) {
            return Ok(*owned);
        }
        let opened = self
            .history
            .ticket_as_of(ticket, query::AsOf::Version(1))
            .await
            .map_err(|error| error.to_string())?;
        let owned = opened.customer == self.customer;
        if self.owned.len() >= SCOPE_CAPACITY {
            self.owned.clear();
        }
        self.owned.insert(ticket, owned);
        Ok(owned)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        metrics::gauge!(OPEN_STREAMS).decrement(1.0);
        tracing::debug!(
            started = self.started,
            reached = self.subscription.position(),
            "change stream closed"
        );
    }
}

/// The next change as an SSE message; `None` ends the stream.
async fn next_message(mut open: OpenStream) -> Option<(Result<Event, Infallible>, OpenStream)> {
    match open.next_change().await {
        Ok(change) => {
            let message = Event::default()
                .id(change.position.to_string())
                .event(CHANGE_EVENT)
                .json_data(ChangeMessage::from(change));
            match message {
                Ok(message) => Some((Ok(message), open)),
                Err(error) => {
                    tracing::error!(%error, "a change message does not serialise; ending the stream");
                    None
                }
            }
        }
        Err(error) => {
            // Nothing is lost: the client reconnects with the last id it got.
            tracing::warn!(
                %error,
                reached = open.subscription.position(),
                "ending a change stream"
            );
            None
        }
    }
}

/// `Last-Event-ID`: absent or empty → none; one whole number → that
/// position; anything else → 400 naming the header.
fn last_event_id(headers: &HeaderMap) -> Result<Option<Position>, ApiError> {
    let invalid = || {
        ApiError::invalid_parameter(
            "Last-Event-ID",
            "must be one whole number: the `id:` of the last message received",
        )
    };
    let mut values = headers.get_all(LAST_EVENT_ID).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid());
    }
    let text = value.to_str().map_err(|_| invalid())?.trim();
    if text.is_empty() {
        // What a client sends when the server reset its id (`id:` alone).
        return Ok(None);
    }
    whole_number(text).map(Some).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(LAST_EVENT_ID, value.parse().expect("header value"));
        }
        headers
    }

    #[test]
    fn last_event_ids() {
        assert_eq!(last_event_id(&HeaderMap::new()).ok(), Some(None));
        assert_eq!(last_event_id(&header(&["42"])).ok(), Some(Some(42)));
        assert_eq!(last_event_id(&header(&["0"])).ok(), Some(Some(0)));
        assert_eq!(last_event_id(&header(&[""])).ok(), Some(None));
        for bad in ["-1", "4.2", "abc", "1e3", "+3", "18446744073709551616"] {
            assert!(last_event_id(&header(&[bad])).is_err(), "{bad}");
        }
        assert!(last_event_id(&header(&["1", "2"])).is_err());
    }
}
