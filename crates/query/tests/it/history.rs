//! A ticket's history, read from the event store: its events and its past
//! states. No projector runs here: history never waits for the read models.

use std::time::Duration;

use domain::Status;
use eventstore::EventStore;
use query::{AsOf, History, HistoryError};
use uuid::Uuid;

use crate::Fixture;

fn history(fx: &Fixture) -> History {
    History::new(fx.store.clone())
}

#[tokio::test]
async fn as_of_folds_the_stream_up_to_that_point() {
    let fx = Fixture::new();
    let id = fx.open_many(1).await[0].id;
    fx.set_status(id, Status::Triaged).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    fx.set_status(id, Status::Closed).await;
    let stream = fx.store.read_stream(id).await.expect("read stream");
    let history = history(&fx);

    let first = history
        .ticket_as_of(id, AsOf::Version(1))
        .await
        .expect("version 1");
    assert_eq!((first.version, first.status), (1, Status::Open));
    let second = history
        .ticket_as_of(id, AsOf::Time(stream[1].occurred_at))
        .await
        .expect("at the triage");
    assert_eq!((second.version, second.status), (2, Status::Triaged));
    let latest = history
        .ticket_as_of(id, AsOf::Version(99))
        .await
        .expect("past the end");
    assert_eq!(latest.version, 3);

    let before = stream[0].occurred_at - chrono::Duration::seconds(1);
    let result = history.ticket_as_of(id, AsOf::Time(before)).await;
    assert!(matches!(result, Err(HistoryError::NotFound)), "{result:?}");
    let result = history.ticket_as_of(id, AsOf::Version(0)).await;
    assert!(matches!(result, Err(HistoryError::NotFound)), "{result:?}");
    let result = history.ticket_as_of(Uuid::now_v7(), AsOf::Version(1)).await;
    assert!(matches!(result, Err(HistoryError::NotFound)), "{result:?}");
}

#[tokio::test]
async fn events_are_the_stream_in_version_order() {
    let fx = Fixture::new();
    let id = fx.open_many(1).await[0].id;
    fx.set_status(id, Status::Closed).await;
    let history = history(&fx);

    let events = history.events(id).await.expect("events");
    let versions: Vec<u64> = events.iter().map(|event| event.version).collect();
    assert_eq!(versions, [1, 2]);
    assert!(events.iter().all(|event| event.ticket_id == id));

    let result = history.events(Uuid::now_v7()).await;
    assert!(matches!(result, Err(HistoryError::NotFound)), "{result:?}");
}
