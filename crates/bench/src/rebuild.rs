//! The `rebuild` workload: `ticket-projector rebuild` on a seeded store, one
//! projection per process (list, dashboard, then detail), timed from spawn to
//! exit, with each process's peak memory.
//!
//! The wall time includes what an operator waits for: opening the store, the
//! replay into the shadow slot, the catch-up, the verify pass and the swap.
//! The target row ("list view + dashboard") divides the events by the two
//! processes' summed wall time; detail is reported beside it.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use tickets::StoreUrl;

use crate::procs::{Binaries, run_projector};
use crate::stats::per_second;

#[derive(Debug, Clone, Serialize)]
pub struct RebuildRun {
    pub projection: &'static str,
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub peak_rss_mb: f64,
    /// The line `ticket-projector` printed (its own rate excludes start-up).
    pub said: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildResult {
    pub events: u64,
    pub runs: Vec<RebuildRun>,
    /// Events / (list seconds + dashboard seconds).
    pub list_and_dashboard_events_per_second: f64,
    pub list_and_dashboard_peak_rss_mb: f64,
}

pub fn rebuild(
    binaries: &Binaries,
    store: &StoreUrl,
    events: u64,
    logs: &Path,
) -> anyhow::Result<RebuildResult> {
    let url = store.to_string();
    let mut runs = Vec::new();
    for projection in ["list", "dashboard", "detail"] {
        let log = logs.join(format!("rebuild-{projection}.log"));
        let finished = run_projector(
            binaries,
            &["rebuild", "--store", &url, "--projection", projection],
            &log,
        )
        .with_context(|| format!("rebuilding {projection}"))?;
        runs.push(RebuildRun {
            projection,
            events,
            seconds: finished.elapsed.as_secs_f64(),
            events_per_second: per_second(events, finished.elapsed),
            peak_rss_mb: finished.peak_rss_mb,
            said: finished.stdout.trim().to_owned(),
        });
    }
    let pair = &runs[..2];
    let seconds: f64 = pair.iter().map(|r| r.seconds).sum();
    Ok(RebuildResult {
        events,
        list_and_dashboard_events_per_second: if seconds > 0.0 {
            events as f64 / seconds
        } else {
            0.0
        },
        list_and_dashboard_peak_rss_mb: pair.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max),
        runs,
    })
}
