//! The pure heart of `verify`: one ticket's events folded with the
//! projection's own fold and compared with its stored row, field by field.

use std::cmp::Ordering;
use std::collections::HashSet;

use eventstore::{Position, RecordedEvent};
use readmodel::{FailedEvent, Projection, Rows, fold_batch};
use serde_json::Value;

use super::report::{DifferenceKind, FieldDifference};
use super::rows::Row;

/// What one ticket's comparison found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Same,
    Differs(DifferenceKind),
    /// The row is further on than the events at hand: read the stream again.
    NeedsNewerEvents,
}

/// Folds one ticket's events (in version order) with the projection's fold.
fn fold_ticket(
    projection: Projection,
    events: &[RecordedEvent],
    skipped: &HashSet<Position>,
) -> Result<Option<Row>, Box<FailedEvent>> {
    let outcome = fold_batch(projection, 0, Rows::empty(projection), events, skipped);
    if let Some(failed) = outcome.failed {
        return Err(Box::new(failed));
    }
    Ok(Row::all(outcome.changes.rows).into_iter().next())
}

fn unappliable(failed: Box<FailedEvent>) -> Verdict {
    Verdict::Differs(DifferenceKind::Unappliable {
        position: failed.event.position,
        reason: failed.error.to_string(),
    })
}

/// The pure heart of `verify`: one ticket's events (all of them known so far,
/// in version order; `complete` when just re-read) against its stored row.
pub(crate) fn compare(
    projection: Projection,
    checkpoint: Position,
    events: &[RecordedEvent],
    stored: Option<&Row>,
    skipped: &HashSet<Position>,
    complete: bool,
) -> Verdict {
    // A ticket's versions are in commit order, so the events at or below the
    // checkpoint are a prefix of its stream.
    let at_checkpoint = events.partition_point(|event| event.position <= checkpoint);
    let expected = match fold_ticket(projection, &events[..at_checkpoint], skipped) {
        Ok(expected) => expected,
        Err(failed) => return unappliable(failed),
    };
    let expected_version = expected.as_ref().map_or(0, Row::version);
    let Some(stored) = stored else {
        return match expected {
            None => Verdict::Same,
            Some(_) => Verdict::Differs(DifferenceKind::Missing { expected_version }),
        };
    };
    let stored_version = stored.version();
    match (stored_version.cmp(&expected_version), expected) {
        (Ordering::Less, _) => Verdict::Differs(DifferenceKind::Behind {
            stored_version,
            expected_version,
        }),
        (Ordering::Equal, Some(expected)) => compare_rows(stored, &expected),
        // Further on than the checkpoint: the slot moved on since the check
        // started. Compare with the fold up to the row's own version.
        _ => {
            let history_version = events.last().map_or(0, |event| event.version);
            if history_version < stored_version {
                return match (complete, history_version) {
                    (false, _) => Verdict::NeedsNewerEvents,
                    (true, 0) => Verdict::Differs(DifferenceKind::Extra { stored_version }),
                    (true, _) => Verdict::Differs(DifferenceKind::AheadOfHistory {
                        stored_version,
                        history_version,
                    }),
                };
            }
            let upto = events.partition_point(|event| event.version <= stored_version);
            match fold_ticket(projection, &events[..upto], skipped) {
                Ok(Some(expected)) => compare_rows(stored, &expected),
                Ok(None) => Verdict::Differs(DifferenceKind::Extra { stored_version }),
                Err(failed) => unappliable(failed),
            }
        }
    }
}

fn compare_rows(stored: &Row, expected: &Row) -> Verdict {
    if stored == expected {
        return Verdict::Same;
    }
    let as_json = |row: &Row| serde_json::to_value(row).unwrap_or(Value::Null);
    let (stored_json, expected_json) = (as_json(stored), as_json(expected));
    let fields = match (&stored_json, &expected_json) {
        (Value::Object(s), Value::Object(e)) => {
            let mut keys: Vec<&String> = s.keys().chain(e.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|key| s.get(*key) != e.get(*key))
                .map(|key| FieldDifference {
                    field: key.clone(),
                    stored: s.get(key).cloned().unwrap_or(Value::Null),
                    expected: e.get(key).cloned().unwrap_or(Value::Null),
                })
                .collect()
        }
        _ => vec![FieldDifference {
            field: "row".to_owned(),
            stored: stored_json,
            expected: expected_json,
        }],
    };
    Verdict::Differs(DifferenceKind::Mismatch {
        version: stored.version(),
        fields,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use domain::{Event, Status};
    use eventstore::{Metadata, NewEvent};
    use readmodel::TicketStatusRow;
    use uuid::Uuid;

    use super::*;

    fn recorded(ticket: Uuid, version: u64, position: Position, event: &Event) -> RecordedEvent {
        let at = Utc
            .timestamp_opt(1_700_000_000 + position as i64, 0)
            .single()
            .expect("time");
        let new = NewEvent::from_domain(event, at, Metadata::default());
        RecordedEvent {
            position,
            ticket_id: ticket,
            version,
            event_id: new.event_id,
            event_type: new.event_type,
            schema_version: new.schema_version,
            occurred_at: at,
            data: new.data,
            metadata: new.metadata,
        }
    }

    /// Ticket events at positions 10, 20, 30: opened, triaged, closed.
    fn history() -> (Uuid, Vec<RecordedEvent>) {
        let id = Uuid::now_v7();
        let events = [
            Event::TicketOpened {
                customer: "c".into(),
                subject: "s".into(),
                message: "m".into(),
            },
            Event::TicketTriaged,
            Event::TicketClosed,
        ];
        let recorded = events
            .iter()
            .enumerate()
            .map(|(i, e)| recorded(id, i as u64 + 1, (i as u64 + 1) * 10, e))
            .collect();
        (id, recorded)
    }

    fn folded(projection: Projection, events: &[RecordedEvent]) -> Row {
        fold_ticket(projection, events, &HashSet::new())
            .expect("folds")
            .expect("a row")
    }

    fn check(checkpoint: Position, events: &[RecordedEvent], stored: Option<&Row>) -> Verdict {
        compare(
            Projection::List,
            checkpoint,
            events,
            stored,
            &HashSet::new(),
            false,
        )
    }

    #[test]
    fn a_row_equal_to_the_fold_at_the_checkpoint_is_the_same() {
        let (_, events) = history();
        let row = folded(Projection::List, &events[..2]);
        assert_eq!(check(25, &events, Some(&row)), Verdict::Same);
        assert_eq!(check(5, &events, None), Verdict::Same, "not yet projected");
    }

    #[test]
    fn a_row_further_on_is_compared_at_its_own_version() {
        let (_, events) = history();
        let row = folded(Projection::List, &events);
        assert_eq!(
            check(15, &events, Some(&row)),
            Verdict::Same,
            "the daemon moved on"
        );
        assert_eq!(
            check(15, &events[..2], Some(&row)),
            Verdict::NeedsNewerEvents,
            "the events were read before the last one was appended"
        );
    }

    #[test]
    fn behind_missing_extra_and_beyond_the_history_are_differences() {
        let (id, events) = history();
        let early = folded(Projection::List, &events[..1]);
        assert_eq!(
            check(25, &events, Some(&early)),
            Verdict::Differs(DifferenceKind::Behind {
                stored_version: 1,
                expected_version: 2
            })
        );
        assert_eq!(
            check(25, &events, None),
            Verdict::Differs(DifferenceKind::Missing {
                expected_version: 2
            })
        );
        let stray = folded(Projection::List, &events);
        let verdict = compare(
            Projection::List,
            25,
            &[],
            Some(&stray),
            &HashSet::new(),
            true,
        );
        assert_eq!(
            verdict,
            Verdict::Differs(DifferenceKind::Extra { stored_version: 3 })
        );
        let verdict = compare(
            Projection::List,
            25,
            &events[..2],
            Some(&stray),
            &HashSet::new(),
            true,
        );
        assert_eq!(
            verdict,
            Verdict::Differs(DifferenceKind::AheadOfHistory {
                stored_version: 3,
                history_version: 2
            })
        );
        assert_eq!(stray.id(), id);
    }

    #[test]
    fn a_tampered_field_is_named_with_both_values() {
        let (_, events) = history();
        let Row::List(mut row) = folded(Projection::List, &events) else {
            panic!("a list row");
        };
        row.subject = "tampered".into();
        let verdict = check(30, &events, Some(&Row::List(row)));
        let Verdict::Differs(DifferenceKind::Mismatch { version, fields }) = verdict else {
            panic!("a mismatch: {verdict:?}");
        };
        assert_eq!(version, 3);
        assert_eq!(
            fields,
            vec![FieldDifference {
                field: "subject".into(),
                stored: Value::from("tampered"),
                expected: Value::from("s"),
            }]
        );
    }

    #[test]
    fn an_unappliable_event_below_the_checkpoint_is_a_difference_unless_skipped() {
        let (_, mut events) = history();
        events[1].event_type = "TicketMerged".into();
        let row = Row::Dashboard(TicketStatusRow {
            id: events[0].ticket_id,
            status: Status::Closed,
            version: 3,
        });
        let verdict = compare(
            Projection::Dashboard,
            30,
            &events,
            Some(&row),
            &HashSet::new(),
            false,
        );
        assert!(
            matches!(
                verdict,
                Verdict::Differs(DifferenceKind::Unappliable { position: 20, .. })
            ),
            "{verdict:?}"
        );
        let skipped = HashSet::from([20]);
        let verdict = compare(
            Projection::Dashboard,
            30,
            &events,
            Some(&row),
            &skipped,
            false,
        );
        assert_eq!(verdict, Verdict::Same);
    }
}
