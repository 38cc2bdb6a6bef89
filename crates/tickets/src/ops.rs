//! The operations commands of `ticket-projector`: status, verify, rebuild and
//! dead letters. Each opens the store, calls the `projector` library and
//! prints for people (tables through [`crate::table`]) or, with `--json`, for
//! machines, on stdout.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use projector::{RebuildError, RebuildOptions, StatusReport, VerifyOptions};
use readmodel::{DeadLetter, DeadLetterState, Projection, Target};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::table::Table;
use crate::{Backend, StoreUrl};

async fn open(store: &StoreUrl) -> anyhow::Result<Backend> {
    Backend::open(store)
        .await
        .with_context(|| format!("opening the store {store}"))
}

/// `status [--json]`.
pub async fn status(store: &StoreUrl, as_json: bool) -> anyhow::Result<()> {
    let backend = open(store).await?;
    let report = projector::status(&*backend.events, &*backend.views)
        .await
        .context("reading the projections' status")?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", status_table(&report));
    }
    Ok(())
}

/// The status for people: one line per projection, then any errors and
/// outdated versions, then the head.
fn status_table(report: &StatusReport) -> String {
    let mut table = Table::new(&[
        "PROJECTION",
        "CHECKPOINT",
        "HEAD",
        "LAG",
        "LAG(s)",
        "STATE",
        "HOLDER",
        "HEARTBEAT",
        "DEAD",
        "SHADOW",
        "VERSION",
    ]);
    for p in &report.projections {
        let heartbeat = p.last_heartbeat.map_or_else(
            || "-".to_owned(),
            |at| format!("{:.1}s ago", age(report.now, at)),
        );
        let shadow = match (&p.shadow.rebuild, p.shadow.building) {
            (Some(rebuild), _) => format!(
                "{} @{} by {}",
                rebuild.state, p.shadow.checkpoint, rebuild.holder
            ),
            (None, true) => format!("building @{} (paused)", p.shadow.checkpoint),
            (None, false) => p.shadow.state.clone(),
        };
        table.row([
            p.projection.name().to_owned(),
            p.checkpoint.to_string(),
            p.head.to_string(),
            p.lag_events.to_string(),
            format!("{:.1}", p.lag_seconds),
            p.state.clone(),
            p.holder.clone().unwrap_or_else(|| "-".to_owned()),
            heartbeat,
            p.dead_letters_pending.to_string(),
            shadow,
            format!("{}/{}", p.version.stored, p.version.code),
        ]);
    }
    let mut out = table.render();
    out.push('\n');
    for p in &report.projections {
        if let Some(error) = &p.last_error {
            let _ = writeln!(out, "{}: last error: {error}", p.projection);
        }
        if p.version.stored < p.version.code {
            let _ = writeln!(
                out,
                "{}: stored version {} is older than this build's {}: the daemon rebuilds it at start-up",
                p.projection, p.version.stored, p.version.code
            );
        }
    }
    let _ = write!(
        out,
        "head {} at {} (database clock)",
        report.head,
        report.now.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    out
}

/// Seconds from `at` to `now`, never negative.
fn age(now: DateTime<Utc>, at: DateTime<Utc>) -> f64 {
    (now - at).num_milliseconds().max(0) as f64 / 1000.0
}

/// `verify [--projection …]`: fails when any projection differs.
pub async fn verify(
    store: &StoreUrl,
    projections: &[Projection],
    max_listed: usize,
) -> anyhow::Result<()> {
    let backend = open(store).await?;
    let options = VerifyOptions {
        max_listed,
        ..VerifyOptions::default()
    };
    let mut total = 0;
    for &projection in projections {
        let report = projector::verify(
            &*backend.events,
            &*backend.views,
            projection,
            Target::Live,
            &options,
        )
        .await
        .with_context(|| format!("verifying {projection}"))?;
        println!("{report}");
        total += report.total_differences;
    }
    if total > 0 {
        bail!("verify found {total} difference(s) between the views and the event history");
    }
    println!("verify: the views match the event history");
    Ok(())
}

/// `rebuild [--projection …]`, one projection after the other.
pub async fn rebuild(
    store: &StoreUrl,
    projections: &[Projection],
    batch_size: usize,
    lease_ttl: Duration,
    max_rate: Option<u32>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let backend = open(store).await?;
    let options = RebuildOptions {
        batch_size: batch_size.max(1),
        lease_ttl,
        max_rate,
        ..RebuildOptions::default()
    };
    tracing::info!(holder = %options.holder, batch_size = options.batch_size, "rebuild starting");
    let progress = crate::progress::rebuild_progress();
    for &projection in projections {
        let outcome = projector::rebuild(
            backend.events.clone(),
            backend.views.clone(),
            projection,
            &options,
            &*progress,
            &shutdown,
        )
        .await;
        match outcome {
            Ok(outcome) => {
                let start = match outcome.resumed_from {
                    Some(from) => format!("resumed at {from}"),
                    None => "from the start".to_owned(),
                };
                println!(
                    "{projection}: rebuilt {start}: {}; verified; swapped in at checkpoint {}",
                    outcome.timing(),
                    outcome.swapped_at
                );
            }
            Err(RebuildError::Differences(report)) => {
                println!("{report}");
                bail!(
                    "rebuild of {projection}: the shadow differs from the history in {} place(s); it was not swapped in",
                    report.total_differences
                );
            }
            Err(error) => return Err(error).context(format!("rebuild of {projection}")),
        }
    }
    Ok(())
}

/// `dead-letters list [--projection p] [--json]`.
pub async fn dead_letters(
    store: &StoreUrl,
    projection: Option<Projection>,
    as_json: bool,
) -> anyhow::Result<()> {
    let backend = open(store).await?;
    let letters = backend
        .views
        .dead_letters(projection)
        .await
        .context("reading dead letters")?;
    if as_json {
        let letters: Vec<_> = letters.iter().map(letter_json).collect();
        println!("{}", serde_json::to_string_pretty(&letters)?);
    } else {
        println!("{}", letters_table(&letters));
    }
    Ok(())
}

fn letter_json(letter: &DeadLetter) -> serde_json::Value {
    json!({
        "projection": letter.projection.name(),
        "position": letter.position,
        "ticket_id": letter.ticket_id,
        "version": letter.version,
        "event_type": letter.event_type,
        "state": letter.state.name(),
        "reason": letter.reason,
        "recorded_at": letter.recorded_at,
        "event": letter.event,
    })
}

fn letters_table(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters".to_owned();
    }
    let mut table = Table::new(&[
        "PROJECTION",
        "POSITION",
        "TICKET",
        "VERSION",
        "TYPE",
        "STATE",
        "RECORDED",
        "REASON",
    ]);
    for letter in letters {
        table.row([
            letter.projection.name().to_owned(),
            letter.position.to_string(),
            letter.ticket_id.to_string(),
            letter.version.to_string(),
            letter.event_type.clone(),
            letter.state.name().to_owned(),
            letter
                .recorded_at
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            letter.reason.clone(),
        ]);
    }
    table.render()
}

/// `dead-letters retry|skip <projection> <position>`.
pub async fn set_dead_letter(
    store: &StoreUrl,
    projection: Projection,
    position: u64,
    state: DeadLetterState,
) -> anyhow::Result<()> {
    let backend = open(store).await?;
    let change = projector::set_dead_letter(&*backend.views, projection, position, state)
        .await
        .context("updating the dead letter")?;
    if !change.found {
        bail!(
            "{projection} has no dead letter at position {position} (see `ticket-projector dead-letters list`)"
        );
    }
    let verb = match state {
        DeadLetterState::Retry => "retry",
        _ => "skip",
    };
    if change.live_checkpoint >= position {
        println!(
            "{projection} {position}: marked {}; the projection is already past it (checkpoint {}): `ticket-projector rebuild --projection {projection}` applies it again",
            state.name(),
            change.live_checkpoint
        );
    } else {
        println!(
            "{projection} {position}: marked {}; a projection stopped at it will {verb} it within a second",
            state.name()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use projector::{ProjectionReport, RebuildActivity, ShadowReport, VersionReport};

    use super::*;

    fn at(millis: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_700_000_000_000 + millis)
            .single()
            .expect("time")
    }

    fn report() -> StatusReport {
        let running = ProjectionReport {
            projection: Projection::Detail,
            checkpoint: 1200,
            head: 1234,
            lag_events: 34,
            lag_seconds: 0.25,
            state: "running".into(),
            holder: Some("host:42:0badcafe".into()),
            last_heartbeat: Some(at(-1500)),
            lease_expires_at: Some(at(8500)),
            last_error: Some("database is locked".into()),
            shadow: ShadowReport {
                state: "building".into(),
                building: true,
                checkpoint: 900,
                version: 3,
                rebuild: Some(RebuildActivity {
                    holder: "other:7:00000001".into(),
                    state: "rebuilding".into(),
                    last_heartbeat: at(-200),
                    last_error: None,
                }),
            },
            dead_letters_pending: 0,
            version: VersionReport { stored: 3, code: 3 },
        };
        let stopped = ProjectionReport {
            projection: Projection::Dashboard,
            checkpoint: 7,
            head: 1234,
            lag_events: 1227,
            lag_seconds: 12.0,
            state: "stopped".into(),
            holder: None,
            last_heartbeat: None,
            lease_expires_at: None,
            last_error: None,
            shadow: ShadowReport {
                state: "building".into(),
                building: true,
                checkpoint: 5,
                version: 2,
                rebuild: None,
            },
            dead_letters_pending: 2,
            version: VersionReport { stored: 1, code: 2 },
        };
        let retired = ProjectionReport {
            projection: Projection::List,
            shadow: ShadowReport {
                state: "retired".into(),
                building: false,
                checkpoint: 0,
                version: 0,
                rebuild: None,
            },
            ..stopped.clone()
        };
        StatusReport {
            head: 1234,
            now: at(0),
            projections: vec![running, retired, stopped],
        }
    }

    /// What the table printed before it moved here from the library.
    const STATUS_TABLE: &str = "\
PROJECTION  CHECKPOINT  HEAD  LAG   LAG(s)  STATE    HOLDER            HEARTBEAT  DEAD  SHADOW                               VERSION
detail      1200        1234  34    0.2     running  host:42:0badcafe  1.5s ago   0     rebuilding @900 by other:7:00000001  3/3
list        7           1234  1227  12.0    stopped  -                 -          2     retired                              1/2
dashboard   7           1234  1227  12.0    stopped  -                 -          2     building @5 (paused)                 1/2
detail: last error: database is locked
list: stored version 1 is older than this build's 2: the daemon rebuilds it at start-up
dashboard: stored version 1 is older than this build's 2: the daemon rebuilds it at start-up
head 1234 at 2023-11-14T22:13:20.000Z (database clock)";

    #[test]
    fn the_status_table_is_aligned_with_errors_and_outdated_versions_after_it() {
        assert_eq!(status_table(&report()), STATUS_TABLE);
    }
}
