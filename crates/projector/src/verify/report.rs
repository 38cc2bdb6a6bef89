//! What `verify` reports: the [`VerifyReport`] of one slot, each
//! [`Difference`] it found, and how both read for people (their `Display`).

use std::fmt;

use eventstore::Position;
use readmodel::{Dashboard, Projection, Target};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// One way a slot differs from the fold of the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    #[serde(serialize_with = "crate::names::serialize_projection")]
    pub projection: Projection,
    /// The ticket, for row differences (none for the dashboard counts).
    pub ticket: Option<Uuid>,
    #[serde(flatten)]
    pub kind: DifferenceKind,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DifferenceKind {
    /// The history has the ticket at the checkpoint; the slot has no row.
    Missing { expected_version: u64 },
    /// The slot has a row for a ticket the history does not know.
    Extra { stored_version: u64 },
    /// The row is older than the slot's checkpoint says it should be.
    Behind {
        stored_version: u64,
        expected_version: u64,
    },
    /// The row is at a version the history does not have.
    AheadOfHistory {
        stored_version: u64,
        history_version: u64,
    },
    /// Same version, different content.
    Mismatch {
        version: u64,
        fields: Vec<FieldDifference>,
    },
    /// An event at or below the checkpoint that the fold cannot apply and that
    /// is not a skipped dead letter: the slot claims to be past it.
    Unappliable { position: Position, reason: String },
    /// The dashboard counts disagree with the sum of the status rows.
    Counts {
        stored: Dashboard,
        from_rows: Dashboard,
    },
}

/// One field of a row that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDifference {
    pub field: String,
    pub stored: Value,
    pub expected: Value,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let projection = self.projection;
        match self.ticket {
            Some(ticket) => write!(f, "{projection} {ticket}: ")?,
            None => write!(f, "{projection}: ")?,
        }
        match &self.kind {
            DifferenceKind::Missing { expected_version } => {
                write!(
                    f,
                    "row missing (the history has version {expected_version})"
                )
            }
            DifferenceKind::Extra { stored_version } => write!(
                f,
                "extra row at version {stored_version} (no such ticket in the history)"
            ),
            DifferenceKind::Behind {
                stored_version,
                expected_version,
            } => write!(
                f,
                "row at version {stored_version}, behind the checkpoint (the history has version {expected_version})"
            ),
            DifferenceKind::AheadOfHistory {
                stored_version,
                history_version,
            } => write!(
                f,
                "row at version {stored_version}, beyond the history (version {history_version})"
            ),
            DifferenceKind::Mismatch { version, fields } => {
                write!(f, "row at version {version} differs: ")?;
                for (n, field) in fields.iter().enumerate() {
                    if n > 0 {
                        f.write_str("; ")?;
                    }
                    write!(
                        f,
                        "{} stored {}, expected {}",
                        field.field,
                        short(&field.stored),
                        short(&field.expected)
                    )?;
                }
                Ok(())
            }
            DifferenceKind::Unappliable { position, reason } => write!(
                f,
                "the checkpoint is past event {position}, which cannot be applied: {reason}"
            ),
            DifferenceKind::Counts { stored, from_rows } => write!(
                f,
                "counts open/triaged/closed are {}/{}/{}, the status rows sum to {}/{}/{}",
                stored.open,
                stored.triaged,
                stored.closed,
                from_rows.open,
                from_rows.triaged,
                from_rows.closed
            ),
        }
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 80 {
        return text;
    }
    let cut: String = text.chars().take(79).collect();
    format!("{cut}…")
}

/// What `verify` found in one slot.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    #[serde(serialize_with = "crate::names::serialize_projection")]
    pub projection: Projection,
    #[serde(serialize_with = "crate::names::serialize_target")]
    pub target: Target,
    /// The slot's checkpoint when the check started.
    pub checkpoint: Position,
    /// Tickets in the history.
    pub tickets: u64,
    /// Rows in the slot.
    pub rows: u64,
    /// Whether the dashboard counts were compared with the status rows
    /// (always false for other projections).
    pub counts_checked: bool,
    /// The first differences found (at most `VerifyOptions::max_listed`).
    pub differences: Vec<Difference>,
    pub total_differences: u64,
    /// Things worth knowing that are not differences.
    pub notes: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.total_differences == 0
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.total_differences {
            0 => "ok".to_owned(),
            1 => "1 difference".to_owned(),
            n => format!("{n} differences"),
        };
        write!(
            f,
            "{} ({} slot, checkpoint {}): {} tickets, {} rows",
            self.projection,
            self.target.name(),
            self.checkpoint,
            self.tickets,
            self.rows
        )?;
        if self.counts_checked {
            f.write_str(", counts checked against the rows")?;
        }
        write!(f, ": {verdict}")?;
        for difference in &self.differences {
            write!(f, "\n  {difference}")?;
        }
        let unlisted = self.total_differences - self.differences.len() as u64;
        if unlisted > 0 {
            write!(f, "\n  … and {unlisted} more")?;
        }
        for note in &self.notes {
            write!(f, "\n  note: {note}")?;
        }
        Ok(())
    }
}

/// The first differences, and how many there are.
pub(super) struct Tally {
    pub(super) listed: Vec<Difference>,
    pub(super) total: u64,
    max: usize,
}

impl Tally {
    pub(super) fn new(max: usize) -> Self {
        Self {
            listed: Vec::new(),
            total: 0,
            max,
        }
    }

    pub(super) fn push(&mut self, difference: Difference) {
        self.total += 1;
        if self.listed.len() < self.max {
            self.listed.push(difference);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_lists_a_bounded_number_and_counts_all() {
        let mut tally = Tally::new(2);
        for _ in 0..5 {
            tally.push(Difference {
                projection: Projection::List,
                ticket: Some(Uuid::nil()),
                kind: DifferenceKind::Extra { stored_version: 1 },
            });
        }
        let report = VerifyReport {
            projection: Projection::List,
            target: Target::Live,
            checkpoint: 9,
            tickets: 0,
            rows: 5,
            counts_checked: false,
            differences: tally.listed,
            total_differences: tally.total,
            notes: Vec::new(),
        };
        let text = report.to_string();
        assert!(
            text.starts_with("list (live slot, checkpoint 9): 0 tickets, 5 rows: 5 differences"),
            "{text}"
        );
        assert!(text.ends_with("… and 3 more"), "{text}");
    }
}
