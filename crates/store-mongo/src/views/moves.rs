//! The prompt behind `ViewReader::watch_live_checkpoint`: one signal per
//! projection, raised after every live commit and swap through this store
//! (all its clones) has committed and, while a change stream on
//! `projection_slots` is open, for every change to a projection's slot
//! documents, whichever process made it.
//!
//! The prompts are `readmodel::CheckpointPrompts`, as in the SQLite store.
//! The stream is only a prompt, like the one on `events`, and is followed by
//! the same loop (`change_stream::follow`, this module being its
//! `Listener`). A server without change streams (a standalone,
//! the test server) or a stream that fails leaves waiters on their recheck,
//! [`CHECKPOINT_RECHECK`], and the stream is opened again after a capped
//! backoff; no failure of it reaches a read. While it is open the recheck is
//! [`LIVE_RECHECK`], a safety net should a stream die quietly. A change
//! event carries the slot document's key (`list/a`), not its state, so a
//! shadow slot's commits prompt too: during a rebuild a waiter reads the
//! checkpoint again once per shadow commit.

use std::sync::Arc;

use futures::Stream;
use mongodb::Collection;
use mongodb::bson::{Document, doc};
use readmodel::{CHECKPOINT_RECHECK, CheckpointPrompts, CheckpointWatch, Projection};
use tokio::task::AbortHandle;

use crate::change_stream::{self, BACKOFF, Listener, MAX_AWAIT};
use crate::wake::LIVE_RECHECK;

/// The store's prompts, and the task that follows `projection_slots` (stopped
/// when the last clone of the store goes).
#[derive(Debug)]
pub(crate) struct CheckpointMoves {
    prompts: Arc<CheckpointPrompts>,
    follower: Option<AbortHandle>,
}

impl Default for CheckpointMoves {
    fn default() -> Self {
        Self {
            prompts: Arc::new(CheckpointPrompts::with_followed_recheck(LIVE_RECHECK)),
            follower: None,
        }
    }
}

impl Drop for CheckpointMoves {
    fn drop(&mut self) {
        if let Some(follower) = &self.follower {
            follower.abort();
        }
    }
}

impl CheckpointMoves {
    /// The live checkpoint of `projection` moved here: wakes its watches.
    pub(crate) fn moved(&self, projection: Projection) {
        self.prompts.moved(projection);
    }

    pub(crate) fn watch(&self, projection: Projection) -> Box<dyn CheckpointWatch> {
        self.prompts.watch(projection)
    }

    /// Starts following the changes to `slots` (`projection_slots`).
    pub(crate) fn follow_changes(&mut self, slots: Collection<Document>) {
        let listener = SlotChanges(Arc::clone(&self.prompts));
        let follower = tokio::spawn(async move {
            change_stream::follow(&listener, BACKOFF, move || open(slots.clone())).await;
        });
        if let Some(earlier) = self.follower.replace(follower.abort_handle()) {
            earlier.abort();
        }
    }
}

/// The prompts, as the follower of `projection_slots` raises them.
struct SlotChanges(Arc<CheckpointPrompts>);

impl Listener for SlotChanges {
    fn collection(&self) -> &'static str {
        "projection_slots"
    }

    fn fallback(&self) -> String {
        format!("waiting reads recheck every {CHECKPOINT_RECHECK:?}")
    }

    fn set_live(&self, live: bool) {
        self.0.set_followed(live);
    }

    /// Prompts the projection whose slot document `change` is about; all of
    /// them when the event names none this build knows.
    fn changed(&self, change: &Document) -> bool {
        match projection_of(change) {
            Some(projection) => self.0.moved(projection),
            None => self.0.all_moved(),
        }
        true
    }
}

/// The projection of a change event's slot document (`_id` `list/a`).
fn projection_of(change: &Document) -> Option<Projection> {
    let id = change
        .get_document("documentKey")
        .ok()?
        .get_str("_id")
        .ok()?;
    id.split_once('/')?.0.parse().ok()
}

/// Opens a stream of the changes to `projection_slots`, each trimmed to what
/// the driver needs to track it and the document's key.
async fn open(
    slots: Collection<Document>,
) -> Result<
    impl Stream<Item = Result<Document, mongodb::error::Error>> + Unpin,
    mongodb::error::Error,
> {
    let stream = slots
        .watch()
        .pipeline([doc! { "$project": { "operationType": 1, "ns": 1, "documentKey": 1 } }])
        .max_await_time(MAX_AWAIT)
        .await?;
    Ok(stream.with_type::<Document>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change_stream::{Backoff, follow};
    use futures::StreamExt;
    use mongodb::error::ErrorKind;
    use std::sync::atomic::Ordering;
    use std::time::Duration;
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
    fn change(operation: &str, id: &str) -> Document {
        doc! {
            "_id": { "_data": "8263F0C1A2000000012B022C0100296E5A1004" },
            "operationType": operation,
            "ns": { "db": "tickets", "coll": "projection_slots" },
            "documentKey": { "_id": id },
        }
    }

    const FAST: Backoff = Backoff {
        first: Duration::from_millis(5),
        max: Duration::from_millis(20),
        proven_after: Duration::from_secs(1),
    };

    type Item = Result<Document, mongodb::error::Error>;
    type Scripted = futures::stream::BoxStream<'static, Item>;

    /// Each open takes the next answer; once the script is used up, opening
    /// fails as on the test server.
    fn scripted(
        script: Vec<Result<Scripted, mongodb::error::Error>>,
    ) -> impl FnMut() -> std::future::Ready<Result<Scripted, mongodb::error::Error>> {
        let mut script: std::collections::VecDeque<_> = script.into();
        move || {
            std::future::ready(
                script
                    .pop_front()
                    .unwrap_or_else(|| Err(command_error(238))),
            )
        }
    }

    /// Changes, then the end of the stream.
    fn ending_with(changes: Vec<Item>) -> Scripted {
        futures::stream::iter(changes).boxed()
    }

    /// Whether `watch` is prompted within `within`: long when a prompt is
    /// expected (a loaded machine may be slow to run the follower), short
    /// when none is (a wrong prompt comes at once).
    async fn prompted(watch: &mut Box<dyn CheckpointWatch>, within: Duration) -> bool {
        tokio::time::timeout(within, watch.moved()).await.is_ok()
    }

    const EXPECTED: Duration = Duration::from_secs(10);
    const NOT_EXPECTED: Duration = Duration::from_millis(50);

    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + EXPECTED;
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn a_change_names_its_projection_by_the_slot_key() {
        assert_eq!(
            projection_of(&change("update", "list/a")),
            Some(Projection::List)
        );
        assert_eq!(
            projection_of(&change("replace", "dashboard/b")),
            Some(Projection::Dashboard)
        );
        assert_eq!(projection_of(&change("update", "nonsense")), None);
        assert_eq!(projection_of(&change("update", "other/a")), None);
        assert_eq!(projection_of(&doc! {}), None);
    }

    /// A live commit prompts its projection's watches, and a prompt raised
    /// before the wait is kept; others stay quiet.
    #[tokio::test]
    async fn a_commit_here_prompts_its_own_projection() {
        let moves = CheckpointMoves::default();
        let mut list = moves.watch(Projection::List);
        let mut detail = moves.watch(Projection::Detail);
        moves.moved(Projection::List);
        assert!(prompted(&mut list, EXPECTED).await);
        assert!(
            !prompted(&mut list, NOT_EXPECTED).await,
            "one prompt is taken once"
        );
        assert!(!prompted(&mut detail, NOT_EXPECTED).await);
        assert_eq!(list.recheck(), CHECKPOINT_RECHECK, "no stream: the recheck");
    }

    /// While the stream is open, each change prompts its projection and the
    /// recheck is the long safety net; when it fails, every watch is
    /// prompted and waiters go back to the short recheck.
    #[tokio::test]
    async fn an_open_stream_prompts_by_projection_and_its_failure_prompts_all() {
        let moves = Arc::new(CheckpointMoves::default());
        let mut list = moves.watch(Projection::List);
        let mut detail = moves.watch(Projection::Detail);
        let (fail, failing) = tokio::sync::oneshot::channel::<()>();
        let stream = futures::stream::iter(vec![Ok(change("update", "list/b"))])
            .chain(futures::stream::once(async move {
                let _ = failing.await;
                Err(network_error())
            }))
            .chain(futures::stream::pending())
            .boxed();
        let follower = {
            let listener = SlotChanges(Arc::clone(&moves.prompts));
            let open = scripted(vec![Ok(stream)]);
            tokio::spawn(async move { follow(&listener, FAST, open).await })
        };
        // Opening prompts everyone once; the change prompts List again.
        assert!(prompted(&mut detail, EXPECTED).await, "opening prompts");
        let list_prompts = || moves.prompts.count(Projection::List);
        until("the change was not followed", || list_prompts() >= 2).await;
        assert!(moves.prompts.is_followed());
        assert_eq!(
            list.recheck(),
            LIVE_RECHECK,
            "a live stream: the safety net"
        );
        assert!(prompted(&mut list, EXPECTED).await);
        assert!(
            !prompted(&mut detail, NOT_EXPECTED).await,
            "a list change left detail alone"
        );

        fail.send(()).expect("the stream waits");
        assert!(
            prompted(&mut detail, EXPECTED).await,
            "a failed stream prompts everyone"
        );
        until("the stream never failed", || !moves.prompts.is_followed()).await;
        assert_eq!(detail.recheck(), CHECKPOINT_RECHECK);
        follower.abort();
    }

    /// A server without change streams (the test server's code 238) leaves
    /// the follower trying again, never live; an invalidated stream is
    /// reopened.
    #[tokio::test]
    async fn without_change_streams_waiters_keep_the_recheck() {
        let moves = Arc::new(CheckpointMoves::default());
        let opens = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let follower = {
            let (listener, opens) = (SlotChanges(Arc::clone(&moves.prompts)), Arc::clone(&opens));
            let mut open = scripted(vec![
                Ok(ending_with(vec![Ok(change("invalidate", "list/a"))])),
                Err(command_error(238)),
            ]);
            tokio::spawn(async move {
                follow(&listener, FAST, move || {
                    opens.fetch_add(1, Ordering::SeqCst);
                    open()
                })
                .await;
            })
        };
        until("not reopened", || opens.load(Ordering::SeqCst) >= 4).await;
        assert!(!moves.prompts.is_followed());
        assert_eq!(moves.watch(Projection::List).recheck(), CHECKPOINT_RECHECK);
        follower.abort();
    }
}
