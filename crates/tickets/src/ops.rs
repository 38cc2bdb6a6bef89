//! The operations commands of `ticket-projector`: status, verify, rebuild and
//! dead letters. Each opens the store, calls the `projector` library and
//! prints for people (or, with `--json`, for machines) on stdout.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::SecondsFormat;
use projector::{RebuildError, RebuildOptions, VerifyOptions};
use readmodel::{DeadLetter, DeadLetterState, Projection, Target};
use serde_json::json;
use tokio_util::sync::CancellationToken;

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
        println!("{}", report.table());
    }
    Ok(())
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
    let mut rows = vec![
        [
            "PROJECTION",
            "POSITION",
            "TICKET",
            "VERSION",
            "TYPE",
            "STATE",
            "RECORDED",
            "REASON",
        ]
        .map(str::to_owned),
    ];
    for letter in letters {
        rows.push([
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
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|col| {
            rows.iter()
                .map(|row| row[col].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            row.iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
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
