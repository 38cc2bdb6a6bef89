//! The dashboard's own check: its counts must equal the sum of its status
//! rows, both read while the checkpoint stands still.

use eventstore::Position;
use readmodel::{Dashboard, DashboardDelta, Projection, SlotAdmin, Target, ViewError};

use super::VerifyOptions;
use super::report::{Difference, DifferenceKind};
use super::rows::{Row, RowCursor};
use crate::ProjectorError;

/// Compares the counts with the sum of the status rows, both read while the
/// checkpoint stood still. `None`: it never stood still long enough.
pub(super) async fn check_counts(
    views: &dyn SlotAdmin,
    target: Target,
    start: Position,
    merged: Dashboard,
    options: &VerifyOptions,
) -> Result<Option<Option<Difference>>, ProjectorError> {
    for attempt in 0..options.count_attempts.max(1) {
        let before = views.checkpoint(Projection::Dashboard, target).await?;
        let stored = views.counts(target).await?;
        // The rows summed during the merge are the rows at `start` if the
        // checkpoint has not moved since (every commit moves it).
        let from_rows = if attempt == 0 && before == start {
            merged
        } else {
            sum_status_rows(views, target, options.page_size.max(1)).await?
        };
        let after = views.checkpoint(Projection::Dashboard, target).await?;
        if before != after {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        return Ok(Some(counts_difference(stored, from_rows)));
    }
    Ok(None)
}

fn counts_difference(stored: Dashboard, from_rows: Dashboard) -> Option<Difference> {
    (stored != from_rows).then_some(Difference {
        projection: Projection::Dashboard,
        ticket: None,
        kind: DifferenceKind::Counts { stored, from_rows },
    })
}

async fn sum_status_rows(
    views: &dyn SlotAdmin,
    target: Target,
    page_size: usize,
) -> Result<Dashboard, ViewError> {
    let mut cursor = RowCursor::new(views, Projection::Dashboard, target, page_size);
    let mut delta = DashboardDelta::default();
    while let Some(row) = cursor.next().await? {
        if let Row::Dashboard(status) = row {
            delta.moved(None, status.status);
        }
    }
    Ok(counts_of(delta))
}

pub(super) fn counts_of(delta: DashboardDelta) -> Dashboard {
    Dashboard {
        open: delta.open.max(0) as u64,
        triaged: delta.triaged.max(0) as u64,
        closed: delta.closed.max(0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_must_equal_the_sum_of_the_rows() {
        let stored = Dashboard {
            open: 1,
            triaged: 2,
            closed: 3,
        };
        assert_eq!(counts_difference(stored, stored), None);
        let off = Dashboard {
            closed: 4,
            ..stored
        };
        let difference = counts_difference(stored, off).expect("a difference");
        assert_eq!(
            difference.to_string(),
            "dashboard: counts open/triaged/closed are 1/2/3, the status rows sum to 1/2/4"
        );
    }
}
