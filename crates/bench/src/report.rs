//! The report: every workload's figures, the issue's targets read against
//! them ("meets" / "misses", never an assertion), the ratios against the
//! naive design, and their JSON and Markdown forms.

use std::fmt::Write as _;

use serde::Serialize;

use crate::commands::{ClosedLoop, OpenLoop};
use crate::history::{ImportResult, ReplayResult};
use crate::machine::Machine;
use crate::naive::NaiveResult;
use crate::peer::Peer;
use crate::reads::ReadsResult;
use crate::rebuild::RebuildResult;
use crate::stats::{median, speedup};
use crate::under_load::UnderLoadResult;

/// Where and how the figures were taken.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub date: String,
    pub commit: String,
    pub machine: Machine,
    /// The cargo profile of ticketd/ticket-projector; only `release` counts.
    pub profile: String,
    pub backend: String,
    /// The figures come from a smoke server (jongodb), not from MongoDB.
    pub smoke_server: bool,
    /// `--smoke`: sizes too small to mean anything; the run only proves the
    /// tool works.
    pub smoke: bool,
    pub command: String,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub meta: Meta,
    pub commands: Vec<ClosedLoop>,
    pub lag: Option<OpenLoop>,
    /// The Python `eventsourcing` library's SQLite recorder on the same
    /// commands (SQLite stores only).
    pub peer: Option<Peer>,
    pub import: Option<ImportResult>,
    /// Replay of the seed in clear (events from before sealing).
    pub replay: Option<ReplayResult>,
    /// The same tickets seeded sealed, and replayed.
    pub sealed: Option<SealedHistory>,
    pub rebuild: Option<RebuildResult>,
    pub under_load: Option<UnderLoadResult>,
    pub reads: Vec<ReadsResult>,
    pub naive: Vec<NaiveResult>,
    pub ratios: Vec<Ratio>,
    pub targets: Vec<TargetRow>,
    /// The plots drawn for this report, by file name (see [`PLOTS`]).
    pub plots: Vec<String>,
}

/// How many times faster our read models answer than the naive design, at
/// one size: naive in-process time over ticketd's server-side time (both
/// without HTTP), and over the client-side round trip (with it).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Ratio {
    pub tickets: u64,
    pub dashboard_server: Option<f64>,
    pub dashboard_client: Option<f64>,
    /// The smallest ratio over all list shapes.
    pub list_min_server: Option<f64>,
    pub list_median_server: Option<f64>,
    pub list_min_client: Option<f64>,
}

impl Ratio {
    /// Ratios of p50 latencies, shape by shape.
    pub fn of(ours: &ReadsResult, naive: &NaiveResult) -> Ratio {
        let pair = |name: &str, server: bool| {
            let theirs = naive.shape(name)?.latency.p50_ms;
            let ours = ours.shape(name)?;
            let ours = if server { ours.server } else { ours.client };
            speedup(theirs, ours.p50_ms)
        };
        let lists = |server: bool| -> Vec<f64> {
            ours.lists()
                .filter_map(|shape| pair(&shape.name, server))
                .collect()
        };
        let min = |values: Vec<f64>| values.into_iter().reduce(f64::min);
        Ratio {
            tickets: ours.tickets,
            dashboard_server: pair("dashboard", true),
            dashboard_client: pair("dashboard", false),
            list_min_server: min(lists(true)),
            list_median_server: median(&lists(true)),
            list_min_client: min(lists(false)),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Meets,
    Misses,
}

/// The seed with its personal fields sealed (ten tickets per customer, one
/// data key each), its import and its replay.
#[derive(Debug, Clone, Serialize)]
pub struct SealedHistory {
    pub customers: u64,
    /// Making and storing the customers' keys before the import.
    pub keys_seconds: f64,
    pub import: ImportResult,
    pub replay: ReplayResult,
}

/// One target of the issue read against one measured figure.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TargetRow {
    pub workload: String,
    pub metric: String,
    pub measured: f64,
    pub target: f64,
    pub unit: String,
    pub better: Better,
    pub verdict: Verdict,
    /// Where the measurement departs from the target's conditions.
    pub note: String,
}

pub fn verdict(measured: f64, target: f64, better: Better) -> Verdict {
    let meets = match better {
        Better::Higher => measured >= target,
        Better::Lower => measured <= target,
    };
    if meets {
        Verdict::Meets
    } else {
        Verdict::Misses
    }
}

fn row(
    workload: &str,
    metric: &str,
    measured: f64,
    target: f64,
    unit: &str,
    better: Better,
    note: String,
) -> TargetRow {
    TargetRow {
        workload: workload.to_owned(),
        metric: metric.to_owned(),
        measured,
        target,
        unit: unit.to_owned(),
        better,
        verdict: verdict(measured, target, better),
        note,
    }
}

/// The issue's targets, each read against what this report measured; a
/// workload that did not run has no rows.
pub fn targets(report: &Report) -> Vec<TargetRow> {
    use Better::{Higher, Lower};
    let mut rows = Vec::new();
    let count = |n: u64| group(n as f64);

    let at_64 = report
        .commands
        .iter()
        .find(|level| level.concurrency == 64)
        .or_else(|| report.commands.iter().max_by_key(|level| level.concurrency));
    if let Some(level) = at_64 {
        let note = if level.concurrency == 64 {
            String::new()
        } else {
            format!("at {} connections, not 64", level.concurrency)
        };
        let w = "commands (closed loop)";
        rows.push(row(
            w,
            "ticketd CPU per command",
            level.ticketd_cpu_us_per_command,
            70.0,
            "µs",
            Lower,
            format!(
                "{note}{}its projector included",
                if note.is_empty() { "" } else { "; " }
            ),
        ));
        rows.push(row(
            w,
            "p50 latency",
            level.latency.p50_ms,
            3.0,
            "ms",
            Lower,
            note.clone(),
        ));
        rows.push(row(
            w,
            "p95 latency",
            level.latency.p95_ms,
            8.0,
            "ms",
            Lower,
            note.clone(),
        ));
        if let Some(Peer::Ran(peer)) = &report.peer {
            rows.push(row(
                w,
                "commands/s vs Python eventsourcing",
                level.commands_per_second / peer.commands_per_second.max(f64::MIN_POSITIVE),
                10.0,
                "×",
                Higher,
                format!(
                    "{} vs {} commands/s; the peer in-process on one thread, SQLite {} {}{}",
                    group(level.commands_per_second),
                    group(peer.commands_per_second),
                    peer.journal_mode,
                    peer.synchronous,
                    if note.is_empty() {
                        String::new()
                    } else {
                        format!("; {note}")
                    }
                ),
            ));
        }
    }
    if let Some(import) = &report.import {
        rows.push(row(
            "import",
            "throughput",
            import.events_per_second,
            150_000.0,
            "events/s",
            Higher,
            format!("{} events, {} path", count(import.events), import.path),
        ));
    }
    if let Some(replay) = &report.replay {
        rows.push(row(
            "replay",
            "read + decode",
            replay.events_per_second,
            1_000_000.0,
            "events/s",
            Higher,
            format!("{} events in clear", count(replay.events)),
        ));
    }
    if let Some(sealed) = &report.sealed {
        let vs_clear = report.replay.as_ref().map_or(String::new(), |clear| {
            format!(
                "; {:+.0}% vs clear",
                100.0 * (sealed.replay.events_per_second / clear.events_per_second - 1.0)
            )
        });
        rows.push(row(
            "replay, sealed",
            "read + open + decode",
            sealed.replay.events_per_second,
            1_000_000.0,
            "events/s",
            Higher,
            format!(
                "{} events, {} customers' keys{vs_clear}",
                count(sealed.replay.events),
                count(sealed.customers)
            ),
        ));
    }
    if let Some(rebuild) = &report.rebuild {
        let note = if rebuild.events >= 10_000_000 {
            String::new()
        } else {
            format!("at {} events (target: 10 M)", count(rebuild.events))
        };
        rows.push(row(
            "rebuild list + dashboard",
            "throughput",
            rebuild.list_and_dashboard_events_per_second,
            250_000.0,
            "events/s",
            Higher,
            format!(
                "{} events, wall time of both processes",
                count(rebuild.events)
            ),
        ));
        rows.push(row(
            "rebuild list + dashboard",
            "peak RSS",
            rebuild.list_and_dashboard_peak_rss_mb,
            150.0,
            "MB",
            Lower,
            note,
        ));
    }
    if let Some(load) = &report.under_load {
        let w = "rebuild under load";
        let note = format!(
            "{} commands/s offered during a rebuild of every projection; {}",
            group(load.rate as f64),
            size_note(load.tickets)
        );
        rows.push(row(
            w,
            "failed writes",
            load.failed_in_all as f64,
            0.0,
            "writes",
            Lower,
            note.clone(),
        ));
        rows.push(row(
            w,
            "command p99",
            load.latency.p99_ms,
            50.0,
            "ms",
            Lower,
            note,
        ));
    }
    if let Some(lag) = &report.lag {
        let note = if lag.target_events_per_second == 5_000 {
            format!("{:.0} events/s achieved", lag.events_per_second)
        } else {
            format!(
                "at {} events/s offered ({:.0} achieved), not 5,000",
                lag.target_events_per_second, lag.events_per_second
            )
        };
        rows.push(row(
            "projection lag (open loop)",
            "p95",
            lag.lag.p95_ms,
            20.0,
            "ms",
            Lower,
            note,
        ));
    }
    if let Some(reads) = report.reads.iter().max_by_key(|r| r.tickets) {
        let note = size_note(reads.tickets);
        let worst = |server: bool| {
            reads
                .lists()
                .map(|s| {
                    if server {
                        s.server.p95_ms
                    } else {
                        s.client.p95_ms
                    }
                })
                .fold(0.0, f64::max)
        };
        let w = "queries";
        rows.push(row(
            w,
            "list page, worst shape, p95 client",
            worst(false),
            2.0,
            "ms",
            Lower,
            note.clone(),
        ));
        rows.push(row(
            w,
            "list page, worst shape, p95 server",
            worst(true),
            1.0,
            "ms",
            Lower,
            note.clone(),
        ));
        if let Some(dashboard) = reads.shape("dashboard") {
            rows.push(row(
                w,
                "dashboard p95 client",
                dashboard.client.p95_ms,
                2.0,
                "ms",
                Lower,
                note.clone(),
            ));
            rows.push(row(
                w,
                "dashboard p95 server",
                dashboard.server.p95_ms,
                1.0,
                "ms",
                Lower,
                note.clone(),
            ));
        }
        rows.push(row(
            "ticketd",
            "idle RSS",
            reads.idle.rss_mb,
            60.0,
            "MB",
            Lower,
            note.clone(),
        ));
        rows.push(row(
            "ticketd",
            "ready after start",
            reads.ready_ms,
            200.0,
            "ms",
            Lower,
            note,
        ));
    }
    if let Some(ratio) = report.ratios.iter().max_by_key(|r| r.tickets) {
        let note = format!("server-side p50 vs naive p50; {}", size_note(ratio.tickets));
        if let Some(dashboard) = ratio.dashboard_server {
            rows.push(row(
                "naive vs read models",
                "dashboard speed-up",
                dashboard,
                1_000.0,
                "×",
                Higher,
                note.clone(),
            ));
        }
        if let Some(list) = ratio.list_min_server {
            rows.push(row(
                "naive vs read models",
                "list speed-up, worst shape",
                list,
                50.0,
                "×",
                Higher,
                note,
            ));
        }
    }
    rows
}

fn size_note(tickets: u64) -> String {
    if tickets >= 1_000_000 {
        format!("at {} tickets", group(tickets as f64))
    } else {
        format!("at {} tickets (target: 1,000,000)", group(tickets as f64))
    }
}

/// A whole number with thousands separators: 1234567 → "1,234,567".
pub fn group(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

/// A latency in ms with a precision that suits it.
pub fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn measured(row: &TargetRow) -> String {
    match row.unit.as_str() {
        "ms" => format!("{} ms", ms(row.measured)),
        "×" => times(row.measured),
        "MB" => format!("{:.1} MB", row.measured),
        unit => format!("{} {unit}", group(row.measured)),
    }
}

fn target(row: &TargetRow) -> String {
    let op = match row.better {
        Better::Higher => "≥",
        Better::Lower => "≤",
    };
    match row.unit.as_str() {
        "×" => format!("{op} {}×", group(row.target)),
        "ms" | "MB" => format!("{op} {} {}", row.target, row.unit),
        unit => format!("{op} {} {unit}", group(row.target)),
    }
}

/// A speed-up: one decimal below 10×, whole above.
pub fn times(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.1}×")
    } else {
        format!("{}×", group(value))
    }
}

fn opt_ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), times)
}

/// The SVG plots the report links, by file name.
pub const PLOTS: [(&str, &str); 3] = [
    (
        "throughput.svg",
        "Commands/s against connections (closed loop)",
    ),
    (
        "lag.svg",
        "Projection lag, cumulative distribution (open loop)",
    ),
    (
        "queries.svg",
        "Query latency against tickets: read models vs naive",
    ),
];

impl Report {
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.meta;
        let _ = writeln!(md, "# ticket-bench results\n");
        if m.smoke {
            let _ = writeln!(
                md,
                "> **Smoke run**: sizes too small to mean anything; this only shows the tool works.\n"
            );
        }
        if m.profile != "release" {
            let _ = writeln!(
                md,
                "> **{} build**: the binaries were not built with `--release`; the figures are meaningless.\n",
                m.profile
            );
        }
        if m.smoke_server {
            let _ = writeln!(
                md,
                "> **Smoke server**: taken on jongodb, a wire-protocol test server; these are not MongoDB's figures.\n"
            );
        }
        let _ = writeln!(md, "- date: {}", m.date);
        let _ = writeln!(md, "- commit: `{}`", m.commit);
        let _ = writeln!(
            md,
            "- machine: {}, {} cores, {} GB RAM, {} {}",
            m.machine.cpu, m.machine.cores, m.machine.memory_gb, m.machine.os, m.machine.kernel
        );
        let _ = writeln!(
            md,
            "- store: {}; binaries: {} profile",
            m.backend, m.profile
        );
        let _ = writeln!(md, "- command: `{}`", m.command);
        for note in &m.notes {
            let _ = writeln!(md, "- {note}");
        }

        let _ = writeln!(md, "\n## Targets\n");
        let _ = writeln!(
            md,
            "| workload | metric | measured | target | verdict | note |"
        );
        let _ = writeln!(md, "|---|---|---:|---:|---|---|");
        for row in &self.targets {
            let verdict = match row.verdict {
                Verdict::Meets => "meets",
                Verdict::Misses => "**misses**",
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {verdict} | {} |",
                row.workload,
                row.metric,
                measured(row),
                target(row),
                row.note
            );
        }

        if !self.commands.is_empty() {
            let _ = writeln!(
                md,
                "\n## Commands, closed loop (create + 4 updates per ticket)\n"
            );
            let _ = writeln!(
                md,
                "| connections | commands/s | p50 ms | p95 ms | p99 ms | max ms | commands | errors | ticketd peak RSS | ticketd CPU per command | customers (keys) |"
            );
            let _ = writeln!(
                md,
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for l in &self.commands {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} MB | {:.0} µs | {} |",
                    l.concurrency,
                    group(l.commands_per_second),
                    ms(l.latency.p50_ms),
                    ms(l.latency.p95_ms),
                    ms(l.latency.p99_ms),
                    ms(l.latency.max_ms),
                    group(l.commands as f64),
                    l.errors,
                    l.ticketd.peak_rss_mb,
                    l.ticketd_cpu_us_per_command,
                    group(l.customers as f64)
                );
            }
        }
        match &self.peer {
            Some(Peer::Ran(peer)) => {
                let _ = writeln!(md, "\n## Peer: Python `eventsourcing` on SQLite\n");
                let _ = writeln!(
                    md,
                    "The same five commands per ticket, each loading the ticket from its events and saving one event in its own transaction, by `eventsourcing` {} in-process on one thread (no HTTP), SQLite journal {} with synchronous {}: {} commands/s ({} commands, {} errors in {:.1} s).",
                    peer.version,
                    peer.journal_mode,
                    peer.synchronous,
                    group(peer.commands_per_second),
                    group(peer.commands as f64),
                    peer.errors,
                    peer.seconds
                );
            }
            Some(Peer::Skipped(why)) => {
                let _ = writeln!(md, "\n## Peer: Python `eventsourcing` on SQLite\n");
                let _ = writeln!(md, "Not run: {why}.");
            }
            None => {}
        }
        if let Some(lag) = &self.lag {
            let _ = writeln!(md, "\n## Projection lag, open loop\n");
            let _ = writeln!(
                md,
                "{} events/s offered on {} connections for {:.0} s; {} achieved, {} writes, {} errors, {} never seen.\n",
                group(lag.target_events_per_second as f64),
                lag.connections,
                lag.seconds,
                group(lag.events_per_second),
                group(lag.commands as f64),
                lag.errors,
                lag.never_seen
            );
            let _ = writeln!(md, "| | p50 ms | p95 ms | p99 ms | max ms |");
            let _ = writeln!(md, "|---|---:|---:|---:|---:|");
            for (name, s) in [
                ("lag (ack → visible in all views)", &lag.lag),
                ("command latency", &lag.latency),
            ] {
                let _ = writeln!(
                    md,
                    "| {name} | {} | {} | {} | {} |",
                    ms(s.p50_ms),
                    ms(s.p95_ms),
                    ms(s.p99_ms),
                    ms(s.max_ms)
                );
            }
            let _ = writeln!(md, "\nticketd peak RSS {:.1} MB.", lag.ticketd.peak_rss_mb);
        }
        if let Some(load) = &self.under_load {
            let _ = writeln!(md, "\n## Rebuild under load\n");
            let _ = writeln!(
                md,
                "`ticket-projector rebuild` of every projection at {} tickets ({} events) while `ticketd` (its projector on) took {} commands/s offered on {} connections, open loop, each command timed from its scheduled start. The rebuild took {:.1} s ({} events/s over the three projections; peak RSS {:.1} MB).\n",
                group(load.tickets as f64),
                group(load.events as f64),
                group(load.rate as f64),
                load.connections,
                load.rebuild_seconds,
                group(load.rebuild_events_per_second),
                load.rebuild_peak_rss_mb
            );
            let _ = writeln!(
                md,
                "| commands | offered | acknowledged | failed | p50 ms | p95 ms | p99 ms | max ms |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
            let _ = writeln!(
                md,
                "| during the rebuild | {} | {} | {} | {} | {} | {} | {} |",
                group(load.offered as f64),
                group(load.acknowledged as f64),
                load.failed,
                ms(load.latency.p50_ms),
                ms(load.latency.p95_ms),
                ms(load.latency.p99_ms),
                ms(load.latency.max_ms)
            );
            let outside = &load.latency_outside;
            let _ = writeln!(
                md,
                "| the {:.0} s before and after | {} | | {} | {} | {} | {} | {} |",
                2.0 * crate::under_load::MARGIN.as_secs_f64(),
                group(outside.count as f64),
                load.failed_in_all - load.failed,
                ms(outside.p50_ms),
                ms(outside.p95_ms),
                ms(outside.p99_ms),
                ms(outside.max_ms)
            );
            let _ = writeln!(md, "\n```\n{}\n```", load.said);
        }
        if self.import.is_some()
            || self.replay.is_some()
            || self.sealed.is_some()
            || self.rebuild.is_some()
        {
            let _ = writeln!(md, "\n## Event history\n");
            let _ = writeln!(
                md,
                "| workload | events | seconds | events/s | peak RSS | of which |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---|");
            if let Some(i) = &self.import {
                let _ = writeln!(
                    md,
                    "| import ({} tickets, {} path) | {} | {:.2} | {} | | |",
                    group(i.tickets as f64),
                    i.path,
                    group(i.events as f64),
                    i.seconds,
                    group(i.events_per_second)
                );
            }
            if let Some(r) = &self.replay {
                let _ = writeln!(
                    md,
                    "| replay in clear (read_all by {}, decode) | {} | {:.2} | {} | | |",
                    group(r.batch as f64),
                    group(r.events as f64),
                    r.seconds,
                    group(r.events_per_second)
                );
            }
            if let Some(sealed) = &self.sealed {
                let i = &sealed.import;
                let _ = writeln!(
                    md,
                    "| import, sealed ({} tickets, {} customers, {} path) | {} | {:.2} | {} | | {} keys made first in {:.1} s (not in the import's time) |",
                    group(i.tickets as f64),
                    group(sealed.customers as f64),
                    i.path,
                    group(i.events as f64),
                    i.seconds,
                    group(i.events_per_second),
                    group(sealed.customers as f64),
                    sealed.keys_seconds
                );
                let r = &sealed.replay;
                let _ = writeln!(
                    md,
                    "| replay, sealed (read_all by {}, open, decode) | {} | {:.2} | {} | | {} keys loaded (cache misses) in {} key store reads, {:.2} s in those reads |",
                    group(r.batch as f64),
                    group(r.events as f64),
                    r.seconds,
                    group(r.events_per_second),
                    group(r.key_loads as f64),
                    group(r.key_queries as f64),
                    r.key_load_seconds
                );
            }
            if let Some(rebuild) = &self.rebuild {
                for run in &rebuild.runs {
                    let _ = writeln!(
                        md,
                        "| `ticket-projector rebuild --projection {}` | {} | {:.2} | {} | {:.1} MB | replay {:.1} s, verify {:.1} s |",
                        run.projection,
                        group(run.events as f64),
                        run.seconds,
                        group(run.events_per_second),
                        run.peak_rss_mb,
                        run.replay_seconds,
                        run.verify_seconds
                    );
                }
            }
        }
        for reads in &self.reads {
            let naive = self.naive.iter().find(|n| n.tickets == reads.tickets);
            let _ = writeln!(
                md,
                "\n## Queries at {} tickets ({} events)\n",
                group(reads.tickets as f64),
                group(reads.events as f64)
            );
            let _ = writeln!(
                md,
                "ticketd: ready {:.0} ms after start; RSS {:.1} MB idle, {:.1} MB after the reads (peak {:.1} MB).\n",
                reads.ready_ms, reads.idle.rss_mb, reads.after.rss_mb, reads.after.peak_rss_mb
            );
            let _ = writeln!(
                md,
                "| query | client p50 | client p95 | server p50 | server p95 | naive p50 | speed-up (server) |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
            for shape in &reads.shapes {
                let theirs = naive
                    .and_then(|n| n.shape(&shape.name))
                    .map(|s| s.latency.p50_ms);
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    shape.name,
                    ms(shape.client.p50_ms),
                    ms(shape.client.p95_ms),
                    ms(shape.server.p50_ms),
                    ms(shape.server.p95_ms),
                    theirs.map_or_else(|| "–".to_owned(), ms),
                    opt_ratio(theirs.and_then(|t| speedup(t, shape.server.p50_ms)))
                );
            }
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(md, "\n## Read models vs the naive design (p50 ratios)\n");
            let _ = writeln!(
                md,
                "| tickets | dashboard (server) | dashboard (client) | list, worst shape (server) | list, median shape (server) | list, worst shape (client) |"
            );
            let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|");
            for r in &self.ratios {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} |",
                    group(r.tickets as f64),
                    opt_ratio(r.dashboard_server),
                    opt_ratio(r.dashboard_client),
                    opt_ratio(r.list_min_server),
                    opt_ratio(r.list_median_server),
                    opt_ratio(r.list_min_client)
                );
            }
        }
        if !self.plots.is_empty() {
            let _ = writeln!(md, "\n## Plots\n");
        }
        for (file, title) in PLOTS {
            if self.plots.iter().any(|p| p == file) {
                let _ = writeln!(md, "![{title}]({file})\n");
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_the_direction() {
        assert_eq!(verdict(20_000.0, 20_000.0, Better::Higher), Verdict::Meets);
        assert_eq!(verdict(19_999.0, 20_000.0, Better::Higher), Verdict::Misses);
        assert_eq!(verdict(5.0, 5.0, Better::Lower), Verdict::Meets);
        assert_eq!(verdict(5.1, 5.0, Better::Lower), Verdict::Misses);
    }

    #[test]
    fn numbers_are_spelled_for_people() {
        assert_eq!(group(1_234_567.4), "1,234,567");
        assert_eq!(group(999.0), "999");
        assert_eq!(group(1000.0), "1,000");
        assert_eq!(group(0.2), "0");
        assert_eq!(ms(0.12345), "0.123");
        assert_eq!(ms(2.5), "2.50");
        assert_eq!(ms(12.34), "12.3");
        assert_eq!(ms(1234.0), "1234");
        assert_eq!(times(0.25), "0.2×");
        assert_eq!(times(1234.4), "1,234×");
    }
}
