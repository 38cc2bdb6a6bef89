//! `ticket-bench`: runs a named workload against the real binaries and
//! writes the report (see the `bench` library).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bench::procs::Binaries;
use bench::stores::Stores;
use bench::{Settings, Workload};
use clap::{Parser, Subcommand};
use tickets::cli::parse_duration;

/// Benchmarks ticketd and ticket-projector: throughput, latency percentiles,
/// projection lag, peak memory, and the ratio against a naive read path.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    workload: Command,

    /// Where the stores go: sqlite (fresh temporary files, the default),
    /// sqlite://FOLDER, or mongodb://HOST/DATABASE (fresh databases named
    /// after it).
    #[arg(long, global = true)]
    store: Option<String>,

    /// Tickets seeded for import, replay, rebuild, and the largest read size
    /// [default: 1000000; smoke: 2000].
    #[arg(long, global = true)]
    tickets: Option<u64>,

    /// Smaller sizes for reads and naive, comma-separated [default:
    /// 10000,100000; smoke: 500].
    #[arg(long, global = true, value_delimiter = ',')]
    sizes: Option<Vec<u64>>,

    /// Closed-loop connection counts, comma-separated [default: 1,4,16,64;
    /// smoke: 1,4].
    #[arg(long, global = true, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,

    /// Events per second the open loop offers [default: 5000; smoke: 300].
    #[arg(long, global = true)]
    rate: Option<u64>,

    /// Commands per second offered while `rebuild-under-load` rebuilds
    /// [default: 500; smoke: 100].
    #[arg(long, global = true)]
    load_rate: Option<u64>,

    /// Connections of the open loops [default: 64; smoke: 8].
    #[arg(long, global = true)]
    connections: Option<usize>,

    /// Length of each closed-loop level and of the open loop (e.g. 10s)
    /// [default: 10s; smoke: 1s].
    #[arg(long, global = true, value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Requests per read query shape [default: 200; smoke: 20].
    #[arg(long, global = true)]
    samples: Option<usize>,

    /// Folder for latest.json, latest.md and the SVG plots.
    #[arg(long, global = true, default_value = "bench/results")]
    out: PathBuf,

    /// Folder of the ticketd and ticket-projector binaries [default: this
    /// executable's folder].
    #[arg(long, global = true)]
    bin_dir: Option<PathBuf>,

    /// Small sizes: seconds, not minutes. Proves the tool works; the figures
    /// mean nothing.
    #[arg(long, global = true)]
    smoke: bool,

    /// The MongoDB server is jongodb: the report labels its figures a smoke
    /// run, not MongoDB's performance.
    #[arg(long, global = true)]
    jongodb: bool,

    /// Python interpreter that runs the `commands` workload's peer, the
    /// `eventsourcing` library (`pip install eventsourcing`) [default:
    /// python3, and the peer is skipped, with the reason, if it cannot run;
    /// named here, it must run].
    #[arg(long, global = true)]
    peer_python: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum Command {
    /// HTTP ticket workload: closed loop per concurrency, open loop for lag.
    Commands,
    /// List pages (every filter, sort, order), details, dashboard.
    Reads,
    /// Bulk import of the seed's events.
    Import,
    /// Read every event in global order and decode it.
    Replay,
    /// `ticket-projector rebuild` of list, dashboard and detail.
    Rebuild,
    /// The compute-on-read design beside the read models, for the ratio.
    Naive,
    /// `ticket-projector rebuild` of every projection while ticketd takes a
    /// steady write load: failed writes and command latency during it.
    RebuildUnderLoad,
    /// Every workload.
    All,
}

/// The full-size value, or the smoke one under `--smoke`.
fn pick<T>(smoke: bool, full: T, small: T) -> T {
    if smoke { small } else { full }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let workload = match args.workload {
        Command::Commands => Workload::Commands,
        Command::Reads => Workload::Reads,
        Command::Import => Workload::Import,
        Command::Replay => Workload::Replay,
        Command::Rebuild => Workload::Rebuild,
        Command::Naive => Workload::Naive,
        Command::RebuildUnderLoad => Workload::RebuildUnderLoad,
        Command::All => Workload::All,
    };
    let smoke = args.smoke;
    let settings = Settings {
        stores: Stores::parse(args.store.as_deref())?,
        binaries: Binaries::locate(args.bin_dir.as_deref())?,
        tickets: args.tickets.unwrap_or(pick(smoke, 1_000_000, 2_000)),
        sizes: args
            .sizes
            .unwrap_or_else(|| pick(smoke, vec![10_000, 100_000], vec![500])),
        concurrency: args
            .concurrency
            .unwrap_or_else(|| pick(smoke, vec![1, 4, 16, 64], vec![1, 4])),
        rate: args.rate.unwrap_or(pick(smoke, 5_000, 300)),
        load_rate: args.load_rate.unwrap_or(pick(smoke, 500, 100)),
        connections: args.connections.unwrap_or(pick(smoke, 64, 8)),
        duration: args.duration.unwrap_or(pick(
            smoke,
            Duration::from_secs(10),
            Duration::from_secs(1),
        )),
        samples: args.samples.unwrap_or(pick(smoke, 200, 20)),
        out: args.out.clone(),
        smoke,
        smoke_server: args.jongodb,
        peer_python_given: args.peer_python.is_some(),
        peer_python: args.peer_python.unwrap_or_else(|| PathBuf::from("python3")),
        command: std::iter::once("ticket-bench".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        work: tempfile::Builder::new()
            .prefix("ticket-bench-work")
            .tempdir()
            .context("creating a work folder")?,
    };
    let mut report = bench::run(workload, &settings).await?;
    bench::write(&mut report, &settings.out)?;
    print!("{}", report.markdown());
    eprintln!(
        "ticket-bench: wrote latest.json, latest.md and plots to {}",
        settings.out.display()
    );
    Ok(())
}
