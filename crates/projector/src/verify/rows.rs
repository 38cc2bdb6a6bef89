//! The slot side of `verify`: a stored row of any projection ([`Row`]), and
//! a slot's rows read a page at a time in id order ([`RowCursor`]).

use std::collections::VecDeque;

use readmodel::{
    Projection, Rows, SlotAdmin, Target, TicketDetail, TicketListRow, TicketStatusRow, ViewError,
};
use serde::Serialize;
use uuid::Uuid;

/// One stored row of any projection.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum Row {
    Detail(TicketDetail),
    List(TicketListRow),
    Dashboard(TicketStatusRow),
}

impl Row {
    pub(super) fn id(&self) -> Uuid {
        match self {
            Row::Detail(row) => row.id,
            Row::List(row) => row.id,
            Row::Dashboard(row) => row.id,
        }
    }

    pub(super) fn version(&self) -> u64 {
        match self {
            Row::Detail(row) => row.version,
            Row::List(row) => row.version,
            Row::Dashboard(row) => row.version,
        }
    }

    pub(super) fn all(rows: Rows) -> Vec<Row> {
        match rows {
            Rows::Detail(rows) => rows.into_iter().map(Row::Detail).collect(),
            Rows::List(rows) => rows.into_iter().map(Row::List).collect(),
            Rows::Dashboard(rows) => rows.into_iter().map(Row::Dashboard).collect(),
        }
    }
}

/// A slot's rows in id order.
pub(super) struct RowCursor<'a> {
    views: &'a dyn SlotAdmin,
    projection: Projection,
    target: Target,
    page: VecDeque<Row>,
    after: Option<Uuid>,
    exhausted: bool,
    page_size: usize,
}

impl<'a> RowCursor<'a> {
    pub(super) fn new(
        views: &'a dyn SlotAdmin,
        projection: Projection,
        target: Target,
        page_size: usize,
    ) -> Self {
        Self {
            views,
            projection,
            target,
            page: VecDeque::new(),
            after: None,
            exhausted: false,
            page_size,
        }
    }

    pub(super) async fn next(&mut self) -> Result<Option<Row>, ViewError> {
        if self.page.is_empty() && !self.exhausted {
            let rows = Row::all(
                self.views
                    .scan_rows(self.projection, self.target, self.after, self.page_size)
                    .await?,
            );
            self.exhausted = rows.len() < self.page_size;
            if let Some(last) = rows.last() {
                self.after = Some(last.id());
            }
            self.page.extend(rows);
        }
        Ok(self.page.pop_front())
    }
}
