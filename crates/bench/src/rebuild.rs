//! The `rebuild` workload: `ticket-projector rebuild` on a seeded store, one
//! projection per process (list, dashboard, then detail), timed from spawn to
//! exit, with each process's peak memory.
//!
//! The wall time includes what an operator waits for: opening the store, the
//! replay into the shadow slot, the catch-up, the verify pass and the swap.
//! The target row ("list view + dashboard") divides the events by the two
//! processes' summed wall time; detail is reported beside it. Each run also
//! reports the projector's own split of its time, from the closing line of
//! its JSON log: replaying into the shadow (with its indexes in place), and
//! verifying it.

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
    /// Of the projector's own time: replaying into the shadow.
    pub replay_seconds: f64,
    /// Of the projector's own time: verifying the shadow.
    pub verify_seconds: f64,
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
            &[
                "rebuild",
                "--store",
                &url,
                "--projection",
                projection,
                "--log-format",
                "json",
            ],
            &log,
        )
        .with_context(|| format!("rebuilding {projection}"))?;
        let lines = std::fs::read_to_string(&log)
            .with_context(|| format!("reading the rebuild's log {}", log.display()))?;
        let phases = phases(&lines).with_context(|| {
            format!("no line with replay_ms and verify_ms in {}", log.display())
        })?;
        runs.push(RebuildRun {
            projection,
            events,
            seconds: finished.elapsed.as_secs_f64(),
            events_per_second: per_second(events, finished.elapsed),
            peak_rss_mb: finished.peak_rss_mb,
            replay_seconds: phases.0,
            verify_seconds: phases.1,
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

/// The replay and verify seconds of the rebuild's closing JSON log line
/// (`replay_ms`, `verify_ms`).
fn phases(log: &str) -> Option<(f64, f64)> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|line| {
            let fields = &line["fields"];
            Some((
                fields["replay_ms"].as_f64()? / 1000.0,
                fields["verify_ms"].as_f64()? / 1000.0,
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_come_from_the_line_that_has_them() {
        let log = concat!(
            r#"{"level":"INFO","fields":{"message":"rebuild list: verifying the shadow"}}"#,
            "\n",
            "not json\n",
            r#"{"level":"INFO","fields":{"message":"rebuild list: swapped in","replay_ms":8500,"verify_ms":11250}}"#,
            "\n",
        );
        assert_eq!(phases(log), Some((8.5, 11.25)));
        assert_eq!(phases("{}\n"), None);
    }
}
