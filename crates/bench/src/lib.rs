//! `ticket-bench`: named, reproducible workloads against the real binaries,
//! and the report they produce.
//!
//! Each workload starts `ticketd` / `ticket-projector` (release builds found
//! beside this executable) on a fresh store, seeds it with the same generated
//! tickets ([`seed`]) when it needs data, measures, and adds its figures to a
//! [`report::Report`]: JSON and Markdown under the output folder, with SVG
//! plots ([`plot`]) and each of the targets read as "meets" or
//! "misses". Nothing here asserts a speed: targets are read, not enforced.
//!
//! Modules: [`commands`] (HTTP writes, closed and open loop, projection lag),
//! [`history`] (bulk import, replay), [`rebuild`], [`reads`] (list pages,
//! details, dashboard), [`naive`] (the compute-on-read design),
//! [`under_load`] (a rebuild while writes keep coming), [`procs`]
//! (child processes and their memory), [`http`] (a one-connection client),
//! [`stores`] (fresh stores per workload), [`stats`], [`report`], [`plot`],
//! [`machine`].

pub mod commands;
pub mod history;
pub mod http;
pub mod machine;
pub mod naive;
pub mod peer;
pub mod plot;
pub mod procs;
pub mod reads;
pub mod rebuild;
pub mod report;
pub mod seed;
pub mod stats;
pub mod stores;
pub mod under_load;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::history::Seeded;
use crate::peer::Peer;
use crate::procs::Binaries;
use crate::report::{Meta, Ratio, Report};
use crate::stores::Stores;

/// A named workload (the CLI's subcommands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Closed loop at each concurrency, then the open loop for lag.
    Commands,
    /// List pages, details and dashboard at each size.
    Reads,
    Import,
    Replay,
    Rebuild,
    /// The naive design at each size, beside the read models for the ratio.
    Naive,
    /// `ticket-projector rebuild` of every projection under a steady write load.
    RebuildUnderLoad,
    All,
}

/// Everything a run needs, with the sizes already chosen.
#[derive(Debug)]
pub struct Settings {
    pub stores: Stores,
    pub binaries: Binaries,
    /// Tickets seeded for import, replay and rebuild; the largest read size.
    pub tickets: u64,
    /// Sizes for reads and naive (the plot's x axis); `tickets` is added.
    pub sizes: Vec<u64>,
    pub concurrency: Vec<usize>,
    /// Events (= commands) per second offered by the open loop.
    pub rate: u64,
    /// Commands per second offered while `rebuild-under-load` rebuilds.
    pub load_rate: u64,
    /// Connections the open loop spreads its commands over.
    pub connections: usize,
    /// Length of each closed-loop level and of the open loop.
    pub duration: Duration,
    /// Requests per read shape.
    pub samples: usize,
    pub out: PathBuf,
    pub smoke: bool,
    /// The MongoDB server is jongodb: label the figures a smoke run.
    pub smoke_server: bool,
    /// The Python interpreter for the `commands` workload's peer, and whether
    /// it was named on the command line (then it must work).
    pub peer_python: PathBuf,
    pub peer_python_given: bool,
    pub command: String,
    /// Logs and the naive database.
    pub work: tempfile::TempDir,
}

impl Settings {
    fn sizes(&self) -> Vec<u64> {
        let mut sizes: Vec<u64> = self
            .sizes
            .iter()
            .copied()
            .filter(|&n| n > 0 && n < self.tickets)
            .collect();
        sizes.push(self.tickets);
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }

    fn log(&self, name: &str) -> PathBuf {
        self.work.path().join(format!("{name}.log"))
    }
}

fn say(what: impl std::fmt::Display) {
    eprintln!("ticket-bench: {what}");
}

/// Runs `workload` and returns its report (targets read, plots not drawn).
pub async fn run(workload: Workload, settings: &Settings) -> anyhow::Result<Report> {
    let mut report = Report {
        meta: meta(settings),
        commands: Vec::new(),
        lag: None,
        peer: None,
        import: None,
        replay: None,
        sealed: None,
        rebuild: None,
        under_load: None,
        reads: Vec::new(),
        naive: Vec::new(),
        ratios: Vec::new(),
        targets: Vec::new(),
        plots: Vec::new(),
    };
    use Workload as W;
    if matches!(workload, W::Commands | W::All) {
        commands(settings, &mut report).await?;
    }
    let (replay, rebuild, reads, naive) = match workload {
        W::Commands | W::RebuildUnderLoad => (false, false, false, false),
        W::Import => (false, false, false, false),
        W::Replay => (true, false, false, false),
        W::Rebuild => (false, true, false, false),
        W::Reads => (false, true, true, false),
        W::Naive | W::All => (workload == W::All, true, true, true),
    };
    if !matches!(workload, W::Commands | W::RebuildUnderLoad) {
        // Reads need every size; the others only the largest.
        let sizes = if reads {
            settings.sizes()
        } else {
            vec![settings.tickets]
        };
        for &n in &sizes {
            let largest = n == settings.tickets;
            let store = settings.stores.fresh(&format!("seeded-{n}"));
            say(format_args!("importing {n} tickets into {store}"));
            let seeded = history::import(&store, n).await?;
            say(format_args!(
                "imported {} events at {:.0} events/s",
                seeded.events, seeded.import.events_per_second
            ));
            if largest {
                report.import = Some(seeded.import.clone());
            }
            if replay && largest {
                say("replaying");
                let clear = history::replay(&store).await?;
                say(format_args!(
                    "replayed {} events in clear at {:.0} events/s",
                    clear.events, clear.events_per_second
                ));
                report.replay = Some(clear);
                report.sealed = Some(sealed_history(settings, n).await?);
            }
            if rebuild {
                say(format_args!("rebuilding the views of {n} tickets"));
                let rebuilt = rebuild::rebuild(
                    &settings.binaries,
                    &store,
                    seeded.events,
                    settings.work.path(),
                )?;
                if largest {
                    report.rebuild = Some(rebuilt);
                }
            }
            if reads {
                read_at(settings, &seeded, naive, &mut report).await?;
            }
            if workload == W::All && largest {
                // Last on this store: the reads above saw exactly the seed.
                under_load(settings, &seeded, false, &mut report).await?;
            }
        }
    }
    if workload == W::RebuildUnderLoad {
        let n = settings.tickets;
        let store = settings.stores.fresh(&format!("under-load-{n}"));
        say(format_args!("importing {n} tickets into {store}"));
        let seeded = history::import(&store, n).await?;
        under_load(settings, &seeded, true, &mut report).await?;
    }
    report.targets = report::targets(&report);
    Ok(report)
}

/// The same tickets seeded sealed (ten per customer) into a store of their
/// own, and replayed: sealing's cost per replayed event, beside the replay
/// of the clear seed.
async fn sealed_history(settings: &Settings, n: u64) -> anyhow::Result<report::SealedHistory> {
    let store = settings.stores.fresh(&format!("sealed-{n}"));
    say(format_args!(
        "seeding {n} tickets sealed ({} customers) into {store}",
        seed::customers_for(n)
    ));
    let (seeded, made) = history::import_sealed(&store, n).await?;
    say(format_args!(
        "made {} keys in {:.1} s; imported {} sealed events at {:.0} events/s",
        made.customers, made.keys_seconds, seeded.events, made.import.events_per_second
    ));
    say("replaying the sealed events");
    let replay = history::replay(&store).await?;
    say(format_args!(
        "replayed {} sealed events at {:.0} events/s ({} keys loaded in {} reads, {:.2} s)",
        replay.events,
        replay.events_per_second,
        replay.key_loads,
        replay.key_queries,
        replay.key_load_seconds
    ));
    Ok(report::SealedHistory {
        customers: made.customers,
        keys_seconds: made.keys_seconds,
        import: made.import,
        replay,
    })
}

async fn commands(settings: &Settings, report: &mut Report) -> anyhow::Result<()> {
    for &c in &settings.concurrency {
        say(format_args!(
            "commands: closed loop, {c} connections, {:?}",
            settings.duration
        ));
        let store = settings.stores.fresh(&format!("commands-{c}"));
        let level = commands::closed_loop(
            &settings.binaries,
            &store.to_string(),
            &settings.log(&format!("ticketd-commands-{c}")),
            c,
            settings.duration,
        )
        .await
        .with_context(|| format!("closed loop at {c} connections"))?;
        say(format_args!(
            "  {:.0} commands/s, p50 {:.2} ms, p95 {:.2} ms; ticketd {:.0} µs CPU per command; {} customers",
            level.commands_per_second,
            level.latency.p50_ms,
            level.latency.p95_ms,
            level.ticketd_cpu_us_per_command,
            level.customers
        ));
        report.commands.push(level);
    }
    report.peer = peer(settings)?;
    say(format_args!(
        "commands: open loop at {} events/s for lag",
        settings.rate
    ));
    let store = settings.stores.fresh("lag");
    let lag = commands::open_loop(
        &settings.binaries,
        &store,
        &settings.log("ticketd-lag"),
        settings.rate,
        settings.connections,
        settings.duration,
    )
    .await
    .context("open loop")?;
    say(format_args!(
        "  lag p50 {:.2} ms, p95 {:.2} ms",
        lag.lag.p50_ms, lag.lag.p95_ms
    ));
    report.lag = Some(lag);
    Ok(())
}

/// The Python `eventsourcing` peer on a fresh SQLite file beside the stores,
/// for as long as a closed-loop level; `None` on MongoDB stores. A peer that
/// cannot run is skipped with the reason, unless `--peer-python` named it.
fn peer(settings: &Settings) -> anyhow::Result<Option<Peer>> {
    let Some(folder) = settings.stores.scratch() else {
        return Ok(None);
    };
    let python = &settings.peer_python;
    let ran = peer::check(python, settings.work.path()).and_then(|()| {
        say(format_args!(
            "commands: the Python eventsourcing peer, {:?}",
            settings.duration
        ));
        peer::run(
            python,
            settings.work.path(),
            &folder.join("peer-eventsourcing.db"),
            settings.duration,
        )
    });
    Ok(Some(match ran {
        Ok(result) => {
            say(format_args!(
                "  {:.0} commands/s (SQLite {} {}, eventsourcing {})",
                result.commands_per_second, result.journal_mode, result.synchronous, result.version
            ));
            Peer::Ran(result)
        }
        Err(error) if settings.peer_python_given => {
            return Err(error.context("the peer named by --peer-python"));
        }
        Err(error) => {
            let why = format!("{error:#}");
            say(format_args!("  peer skipped: {why}"));
            Peer::Skipped(why)
        }
    }))
}

/// `rebuild-under-load` on a seeded store; `prepare`: rebuild its views first,
/// as a running service's views would be current (reported as the `rebuild`
/// workload: the same rebuild without the load).
async fn under_load(
    settings: &Settings,
    seeded: &Seeded,
    prepare: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    if prepare {
        // Timed as the `rebuild` workload: the same rebuild on a quiet store.
        say("bringing the views up to date: the rebuild workload, no load");
        let quiet = rebuild::rebuild(
            &settings.binaries,
            &seeded.store,
            seeded.events,
            settings.work.path(),
        )
        .context("rebuilding the views before the measured rebuild")?;
        report.rebuild = Some(quiet);
    }
    say(format_args!(
        "rebuild of every projection under {} commands/s on {} connections",
        settings.load_rate, settings.connections
    ));
    let result = under_load::rebuild_under_load(
        &settings.binaries,
        &seeded.store,
        seeded.tickets,
        settings.load_rate,
        settings.connections,
        settings.work.path(),
    )
    .await
    .context("rebuild under load")?;
    say(format_args!(
        "  {} offered, {} failed; p99 {:.1} ms; rebuild {:.1} s",
        result.offered, result.failed, result.latency.p99_ms, result.rebuild_seconds
    ));
    report.under_load = Some(result);
    Ok(())
}

async fn read_at(
    settings: &Settings,
    seeded: &Seeded,
    naive: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let n = seeded.tickets;
    say(format_args!("reads at {n} tickets"));
    let reads = reads::reads(
        &settings.binaries,
        seeded,
        &settings.log(&format!("ticketd-reads-{n}")),
        settings.samples,
    )
    .await
    .with_context(|| format!("reads at {n} tickets"))?;
    if naive {
        say(format_args!("naive design at {n} tickets"));
        let file = settings.work.path().join(format!("naive-{n}.db"));
        let samples = settings.samples;
        let result = tokio::task::spawn_blocking(move || naive::naive(&file, n, samples))
            .await
            .context("joining the naive workload")??;
        report.ratios.push(Ratio::of(&reads, &result));
        report.naive.push(result);
    }
    report.reads.push(reads);
    Ok(())
}

fn meta(settings: &Settings) -> Meta {
    let mut notes = Vec::new();
    notes.push(format!(
        "seed: {} tickets (≈3.3 events each: open, then triage 3/4, agent 4/5, note 1/2, close 1/4); read sizes {:?}",
        settings.tickets,
        settings.sizes()
    ));
    notes.push(format!(
        "sealed seed (replay): the same tickets with their personal fields sealed, {} customers ({} tickets each, spread over the history), one data key each; commands: ticket n opened by customer n/{}",
        seed::customers_for(settings.tickets),
        seed::TICKETS_PER_CUSTOMER,
        seed::TICKETS_PER_CUSTOMER
    ));
    notes.push(format!(
        "closed loop: {:?} per level at {:?} connections; open loop: {} events/s on {} connections for {:?}",
        settings.duration, settings.concurrency, settings.rate, settings.connections, settings.duration
    ));
    notes.push(format!(
        "rebuild under load: {} commands/s offered on {} connections",
        settings.load_rate, settings.connections
    ));
    notes.push(
        "everything runs on the same machine: load generator, ticketd (with its in-process projector) and the store"
            .to_owned(),
    );
    Meta {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        commit: machine::git_commit(),
        machine: machine::Machine::here(),
        profile: settings.binaries.profile(),
        backend: settings.stores.backend().to_owned(),
        smoke_server: settings.smoke_server,
        smoke: settings.smoke,
        command: settings.command.clone(),
        notes,
    }
}

/// Writes `latest.json`, `latest.md` and the plots into the output folder.
pub fn write(report: &mut Report, out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    report.plots = plot::draw_all(report, out)?;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(out.join("latest.json"), json + "\n").context("writing latest.json")?;
    std::fs::write(out.join("latest.md"), report.markdown()).context("writing latest.md")?;
    Ok(())
}
