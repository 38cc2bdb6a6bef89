//! `ticket-projector`: the projector as its own daemon, and the operations
//! around it: rebuild, verify, status, dead letters.

use std::time::Duration;

use anyhow::Context;
use clap::{Args as ClapArgs, Parser, Subcommand};
use projector::{DeadLetterPolicy, ProjectorConfig, RebuildOptions};
use readmodel::{DeadLetterState, Projection};
use tickets::cli::{Projections, parse_duration, parse_duration_or_zero};
use tickets::telemetry::LogFormat;
use tickets::{StoreUrl, store_url::DEFAULT_STORE};

/// Follows the event store and keeps the read models current.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,

    /// Log line format on stderr: pretty or json (one object per line).
    #[arg(
        long,
        env = "TICKETS_LOG_FORMAT",
        default_value = "pretty",
        global = true
    )]
    log_format: LogFormat,

    /// A file holding the master key that wraps customers' data keys at
    /// rest: 32 bytes as 64 hex digits or base64 (e.g. `openssl rand -hex
    /// 32`). Every process on a store needs the same one once keys are
    /// wrapped with it; keys made before it still open.
    #[arg(long, env = "TICKETS_MASTER_KEY_FILE", global = true)]
    master_key_file: Option<std::path::PathBuf>,
}

#[derive(Debug, ClapArgs)]
struct Store {
    /// Event store: sqlite://PATH or mongodb://HOST/DATABASE
    #[arg(long, env = "TICKETS_STORE", default_value = DEFAULT_STORE)]
    store: StoreUrl,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Follow the store until SIGINT/SIGTERM, one runner per projection under
    /// its lease (standby while another process holds it); the batch in flight
    /// is committed and the leases released first.
    Run {
        #[command(flatten)]
        store: Store,

        /// Most events folded into one transaction.
        #[arg(long, env = "TICKETS_PROJECTOR_BATCH", default_value_t = ProjectorConfig::default().batch_size)]
        batch_size: usize,

        /// Longest pause after a batch that was not full (0ms: none)
        /// [default: 20ms on SQLite, 0ms on MongoDB]. Under write load each
        /// projection pauses about as long as its batch took, leaving SQLite's
        /// write lock to the appends and gathering bigger batches; light
        /// traffic is not paused.
        #[arg(long, env = "TICKETS_PROJECTOR_MAX_LINGER", value_parser = parse_duration_or_zero)]
        max_linger: Option<Duration>,

        /// Lease TTL (e.g. 10s, 500ms): a killed daemon's standby takes over within it.
        #[arg(long, env = "TICKETS_LEASE_TTL", default_value = "10s", value_parser = parse_duration)]
        lease_ttl: Duration,

        /// What to do with an event a projection cannot apply: stop there
        /// until `dead-letters retry|skip`, or skip it at once.
        #[arg(long, env = "TICKETS_DEAD_LETTER_POLICY", default_value = "stop")]
        dead_letter_policy: DeadLetterPolicy,
    },
    /// Replay the whole history into a shadow slot while the live views serve,
    /// catch up, verify, and swap it in. Rerunning after an interruption resumes.
    Rebuild {
        #[command(flatten)]
        store: Store,

        /// detail, list, dashboard or all.
        #[arg(long, default_value = "all")]
        projection: Projections,

        /// Most events folded into one shadow transaction. Larger than the
        /// live runner's: nobody waits on a rebuild's single events, and
        /// fewer, bigger commits write each index page fewer times.
        #[arg(long, env = "TICKETS_REBUILD_BATCH", default_value_t = RebuildOptions::default().batch_size)]
        batch_size: usize,

        /// The shadow lease's TTL: a killed rebuild's lease frees itself within it.
        #[arg(long, env = "TICKETS_LEASE_TTL", default_value = "10s", value_parser = parse_duration)]
        lease_ttl: Duration,

        /// Most events replayed per second, to leave the store room for live
        /// traffic (default: unlimited).
        #[arg(long, env = "TICKETS_REBUILD_MAX_RATE")]
        max_rate: Option<u32>,
    },
    /// Fold the history and compare it row by row with the live views; exit
    /// non-zero when they differ.
    Verify {
        #[command(flatten)]
        store: Store,

        /// detail, list, dashboard or all.
        #[arg(long, default_value = "all")]
        projection: Projections,

        /// Differences listed per projection (all are counted).
        #[arg(long, default_value_t = 20)]
        max_listed: usize,
    },
    /// Per projection: checkpoint, head, lag, state, holder, heartbeat, last
    /// error, shadow slot, dead letters, versions.
    Status {
        #[command(flatten)]
        store: Store,

        /// A JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Events a projection could not apply.
    DeadLetters {
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
    /// Apply pending schema migrations to the store and exit.
    Migrate {
        #[command(flatten)]
        store: Store,
    },
}

#[derive(Debug, Subcommand)]
enum DeadLetterCommand {
    /// List dead letters (all states), by projection and position.
    List {
        #[command(flatten)]
        store: Store,

        /// Only this projection's.
        #[arg(long)]
        projection: Option<Projection>,

        #[arg(long)]
        json: bool,
    },
    /// Ask the projection stopped at it to apply it again.
    Retry {
        #[command(flatten)]
        store: Store,
        projection: Projection,
        position: u64,
    },
    /// Pass it by: the projection treats it as changing nothing.
    Skip {
        #[command(flatten)]
        store: Store,
        projection: Projection,
        position: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tickets::telemetry::init_logging(args.log_format);
    tickets::backend::use_master_key_file(args.master_key_file.as_deref())?;
    match args.command {
        Command::Run {
            store,
            batch_size,
            max_linger,
            lease_ttl,
            dead_letter_policy,
        } => {
            let config = ProjectorConfig {
                batch_size: batch_size.max(1),
                max_linger: max_linger.unwrap_or_else(|| store.store.default_max_linger()),
                lease_ttl,
                dead_letter_policy,
                ..ProjectorConfig::default()
            };
            let shutdown = tickets::shutdown_on_signals();
            tickets::run_projector(&store.store, config, shutdown)
                .await
                .context("ticket-projector run")
        }
        Command::Rebuild {
            store,
            projection,
            batch_size,
            lease_ttl,
            max_rate,
        } => {
            let shutdown = tickets::shutdown_on_signals();
            tickets::ops::rebuild(
                &store.store,
                &projection.0,
                batch_size,
                lease_ttl,
                max_rate,
                shutdown,
            )
            .await
        }
        Command::Verify {
            store,
            projection,
            max_listed,
        } => tickets::ops::verify(&store.store, &projection.0, max_listed).await,
        Command::Status { store, json } => tickets::ops::status(&store.store, json).await,
        Command::DeadLetters { command } => match command {
            DeadLetterCommand::List {
                store,
                projection,
                json,
            } => tickets::ops::dead_letters(&store.store, projection, json).await,
            DeadLetterCommand::Retry {
                store,
                projection,
                position,
            } => {
                tickets::ops::set_dead_letter(
                    &store.store,
                    projection,
                    position,
                    DeadLetterState::Retry,
                )
                .await
            }
            DeadLetterCommand::Skip {
                store,
                projection,
                position,
            } => {
                tickets::ops::set_dead_letter(
                    &store.store,
                    projection,
                    position,
                    DeadLetterState::Skipped,
                )
                .await
            }
        },
        Command::Migrate { store } => tickets::migrate(&store.store).await,
    }
}
