//! The history side of `verify`: every event, read a page at a time in
//! (ticket id, version) order by one task, and handed to the comparison one
//! ticket at a time.

use std::collections::VecDeque;

use eventstore::{EventStore, RecordedEvent, StoreError};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Pages of history read ahead of the comparison.
pub(super) const HISTORY_PAGES_AHEAD: usize = 2;

/// Sends the history in (ticket id, version) order, a page at a time, until
/// it ends or the receiver is gone.
pub(super) async fn read_history(
    events: &dyn EventStore,
    page_size: usize,
    pages: mpsc::Sender<Vec<RecordedEvent>>,
) -> Result<(), StoreError> {
    let mut after = None;
    loop {
        let page = events.read_by_ticket(after, page_size).await?;
        let last_page = page.len() < page_size;
        if let Some(last) = page.last() {
            after = Some((last.ticket_id, last.version));
        }
        if !page.is_empty() && pages.send(page).await.is_err() {
            // The comparison stopped (it failed); nothing is waiting.
            return Ok(());
        }
        if last_page {
            return Ok(());
        }
    }
}

/// The history, one ticket at a time, in ticket id order, from the pages
/// [`read_history`] sends.
pub(super) struct TicketCursor {
    pages: mpsc::Receiver<Vec<RecordedEvent>>,
    page: VecDeque<RecordedEvent>,
}

impl TicketCursor {
    pub(super) fn new(pages: mpsc::Receiver<Vec<RecordedEvent>>) -> Self {
        Self {
            pages,
            page: VecDeque::new(),
        }
    }

    async fn fill(&mut self) {
        if self.page.is_empty()
            && let Some(page) = self.pages.recv().await
        {
            self.page.extend(page);
        }
    }

    /// The next ticket's events, in version order.
    pub(super) async fn next(&mut self) -> Option<(Uuid, Vec<RecordedEvent>)> {
        self.fill().await;
        let first = self.page.pop_front()?;
        let id = first.ticket_id;
        let mut events = vec![first];
        loop {
            self.fill().await;
            match self.page.front() {
                Some(event) if event.ticket_id == id => {
                    events.extend(self.page.pop_front());
                }
                _ => return Some((id, events)),
            }
        }
    }
}
