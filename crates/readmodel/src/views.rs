//! The view types, shaped for the queries that read them.

use chrono::{DateTime, Utc};
use domain::Status;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::preview::preview;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub text: String,
    pub added_at: DateTime<Utc>,
}

/// Everything a ticket's detail page shows, at `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketDetail {
    pub id: Uuid,
    pub customer: String,
    pub subject: String,
    pub message: String,
    pub status: Status,
    pub agent: Option<String>,
    pub notes: Vec<Note>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The version of the last event folded in.
    pub version: u64,
}

/// One row of the ticket list: previews instead of full texts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketListRow {
    pub id: Uuid,
    pub customer: String,
    pub subject: String,
    pub status: Status,
    pub agent: Option<String>,
    pub preview: String,
    pub has_note: bool,
    pub last_note_preview: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl From<&TicketDetail> for TicketListRow {
    fn from(detail: &TicketDetail) -> Self {
        TicketListRow {
            id: detail.id,
            customer: detail.customer.clone(),
            subject: detail.subject.clone(),
            status: detail.status,
            agent: detail.agent.clone(),
            preview: preview(&detail.message),
            has_note: !detail.notes.is_empty(),
            last_note_preview: detail.notes.last().map(|note| preview(&note.text)),
            created_at: detail.created_at,
            updated_at: detail.updated_at,
            version: detail.version,
        }
    }
}

/// Ticket counts per status. Counts are integers, never floats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dashboard {
    pub open: u64,
    pub triaged: u64,
    pub closed: u64,
}

impl Dashboard {
    pub fn total(&self) -> u64 {
        self.open + self.triaged + self.closed
    }

    pub fn count(&self, status: Status) -> u64 {
        match status {
            Status::Open => self.open,
            Status::Triaged => self.triaged,
            Status::Closed => self.closed,
        }
    }
}

/// How a batch moves the dashboard counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DashboardDelta {
    pub open: i64,
    pub triaged: i64,
    pub closed: i64,
}

impl DashboardDelta {
    /// Records a ticket moving from `from` (`None`: it is new) to `to`.
    pub fn moved(&mut self, from: Option<Status>, to: Status) {
        if from == Some(to) {
            return;
        }
        if let Some(from) = from {
            *self.slot(from) -= 1;
        }
        *self.slot(to) += 1;
    }

    pub fn get(&self, status: Status) -> i64 {
        match status {
            Status::Open => self.open,
            Status::Triaged => self.triaged,
            Status::Closed => self.closed,
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == DashboardDelta::default()
    }

    fn slot(&mut self, status: Status) -> &mut i64 {
        match status {
            Status::Open => &mut self.open,
            Status::Triaged => &mut self.triaged,
            Status::Closed => &mut self.closed,
        }
    }
}

/// The dashboard projection's memory of one ticket: its status at `version`,
/// from which the counts move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketStatusRow {
    pub id: Uuid,
    pub status: Status,
    pub version: u64,
}

/// Rows of one projection, as loaded from or written to a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rows {
    Detail(Vec<TicketDetail>),
    List(Vec<TicketListRow>),
    Dashboard(Vec<TicketStatusRow>),
}

impl Rows {
    /// No rows of the given projection's kind.
    pub fn empty(projection: crate::Projection) -> Rows {
        match projection {
            crate::Projection::Detail => Rows::Detail(Vec::new()),
            crate::Projection::List => Rows::List(Vec::new()),
            crate::Projection::Dashboard => Rows::Dashboard(Vec::new()),
        }
    }

    pub fn projection(&self) -> crate::Projection {
        match self {
            Rows::Detail(_) => crate::Projection::Detail,
            Rows::List(_) => crate::Projection::List,
            Rows::Dashboard(_) => crate::Projection::Dashboard,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Rows::Detail(rows) => rows.len(),
            Rows::List(rows) => rows.len(),
            Rows::Dashboard(rows) => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each row's ticket id and version, in order.
    pub fn keys(&self) -> Vec<(Uuid, u64)> {
        match self {
            Rows::Detail(rows) => rows.iter().map(|r| (r.id, r.version)).collect(),
            Rows::List(rows) => rows.iter().map(|r| (r.id, r.version)).collect(),
            Rows::Dashboard(rows) => rows.iter().map(|r| (r.id, r.version)).collect(),
        }
    }
}
